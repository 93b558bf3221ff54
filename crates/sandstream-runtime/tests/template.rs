//! The default template, built for real by mmdebstrap from this host's apt sources (or
//! reused from the cache under target/), runs Python and Node, and `pip install` of a
//! small package from the registry works inside a sandbox. Needs root, network access to
//! the package registries, and what scripts/test.sh installs.

use std::path::PathBuf;

mod support;

use sandstream_runtime::{Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec, ensure_default_template};
use support::{exec_with_token, static_agent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_template_runs_python_node_and_pip_install() {
    let Some(agent) = static_agent() else { return };
    // The same cache as `sandstream up` (scripts/test.sh sets it), so one build serves all.
    let cache = std::env::var_os("SANDSTREAM_CACHE_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("templates"), PathBuf::from);
    let mut lines = 0usize;
    let template = tokio::task::block_in_place(|| {
        ensure_default_template(&cache, |line| {
            lines += 1;
            eprintln!("template: {line}");
        })
    })
    .expect("default template");
    assert!(lines >= 1, "building or finding the template reports progress");
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = OciRuntime::new(OciConfig::new(dir.path().join("state"), agent)).expect("runtime");
    let spec = SandboxSpec { template, limits: Limits::default(), env: vec![], egress: Egress::Allow };
    let sb = tokio::task::block_in_place(|| runtime.create(&spec)).expect("create");

    let run = |cmd: &'static str| exec_with_token(sb.agent_addr, &sb.token, cmd, 300_000);
    let got = run("python3 -c 'import sys; print(sys.version_info[:2] >= (3, 9))'; node -e 'console.log(6 * 7)'; npm --version >/dev/null && echo npm-ok").await.expect("execute");
    assert_eq!((got.stdout.as_str(), got.exit_code), ("True\n42\nnpm-ok\n", 0), "stderr: {}", got.stderr);

    // A real install from the package registry, through the sandbox's NAT egress.
    let got = run(
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --disable-pip-version-check -q six==1.16.0 && /tmp/venv/bin/python -c 'import six; print(six.__version__)'",
    )
    .await
    .expect("execute");
    let killed = tokio::task::block_in_place(|| runtime.kill(&sb.id));
    assert_eq!(
        (got.stdout.as_str(), got.exit_code),
        ("1.16.0\n", 0),
        "pip install inside the sandbox failed: {}",
        got.stderr
    );
    killed.expect("kill");
}
