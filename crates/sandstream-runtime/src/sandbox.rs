//! What every sandbox has, whichever backend runs it: where the agent, its token and the
//! user's home are inside, how the agent is started, and its base environment.

use crate::types::Sandbox;

/// Where the agent binary and its token appear inside every sandbox (read-only binds:
/// the agent is never baked into templates and the sandbox cannot replace it).
pub(crate) const AGENT_PATH: &str = "/.sandstream/agent";
pub(crate) const TOKEN_PATH: &str = "/.sandstream/token";
/// User code runs as this uid/gid, never as root.
pub(crate) const USER_ID: u32 = 1000;
pub(crate) const WORKDIR: &str = "/home/user";
pub(crate) const AGENT_PORT: u16 = 50052;
/// Where the host's CA bundle is bound, when it is.
pub(crate) const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The agent's command line as PID 1 of sandbox `id`.
pub(crate) fn agent_args(id: &str) -> Vec<String> {
    vec![
        AGENT_PATH.into(),
        "--listen".into(),
        format!("0.0.0.0:{AGENT_PORT}"),
        "--token-file".into(),
        TOKEN_PATH.into(),
        "--sandbox-id".into(),
        id.into(),
        "--workdir".into(),
        WORKDIR.into(),
        "--run-as".into(),
        format!("{USER_ID}:{USER_ID}"),
    ]
}

/// The agent's environment (which its commands inherit): the defaults, the CA variable
/// when the host's bundle is bound, then the spec's own variables.
pub(crate) fn agent_env(spec_env: &[(String, String)], host_ca_bound: bool) -> Vec<String> {
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOME={WORKDIR}"),
        "USER=user".into(),
        "LANG=C.UTF-8".into(),
        "SANDSTREAM_LOG=info".into(),
    ];
    if host_ca_bound {
        // Node ships its own CA list; this adds the host's.
        env.push(format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE_PATH}"));
    }
    env.extend(spec_env.iter().map(|(k, v)| format!("{k}={v}")));
    env
}

/// `Runtime::recover` for any backend: each of `ids` is adopted if it still runs, and
/// removed otherwise.
pub(crate) fn recover_each(
    ids: Vec<String>,
    adopt: impl Fn(&str) -> Option<Sandbox>,
    destroy: impl Fn(&str),
) -> Vec<Sandbox> {
    let mut alive = Vec::new();
    for id in ids {
        match adopt(&id) {
            Some(sb) => {
                tracing::info!(sandbox_id = %id, agent = %sb.agent_addr, "sandbox found running again");
                alive.push(sb);
            }
            None => {
                tracing::info!(sandbox_id = %id, "sandbox left by a previous run is not running; removing it");
                destroy(&id);
            }
        }
    }
    alive
}
