//! The default template, built for real by mmdebstrap from this host's apt sources (or
//! reused from the cache under target/), runs Python and Node, and `pip install` of a
//! small package from the registry works inside a sandbox. Needs root, network access to
//! the package registries, and what scripts/test.sh installs.

use std::path::PathBuf;

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{EventKind, ExecuteRequest, OutputEncoding};
use sandstream_runtime::{Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec, ensure_default_template};
use tokio_stream::StreamExt;

async fn exec(addr: std::net::SocketAddr, token: &str, command: &str) -> (String, String, i32) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
    let mut client = ExecServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", auth.clone());
        Ok(r)
    });
    let req = ExecuteRequest {
        command: command.into(),
        timeout: 300_000,
        encoding: OutputEncoding::Bytes as i32,
        ..Default::default()
    };
    let mut stream = client.execute(req).await.expect("execute").into_inner();
    let (mut out, mut err, mut code) = (String::new(), String::new(), -1);
    while let Some(m) = stream.next().await {
        let m = m.expect("message");
        match EventKind::try_from(m.kind) {
            Ok(EventKind::Output) if m.channel == 1 => err.push_str(&String::from_utf8_lossy(&m.data)),
            Ok(EventKind::Output) => out.push_str(&String::from_utf8_lossy(&m.data)),
            Ok(EventKind::End) => code = m.exit_code,
            _ => {}
        }
    }
    (out, err, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_template_runs_python_node_and_pip_install() {
    let Some(agent) = std::env::var_os("SANDSTREAM_STATIC_AGENT").map(PathBuf::from) else {
        assert!(std::env::var_os("CI").is_none(), "SANDSTREAM_STATIC_AGENT is not set; run scripts/test.sh");
        eprintln!("skipped: SANDSTREAM_STATIC_AGENT is not set");
        return;
    };
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("templates");
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

    let (out, err, code) = exec(sb.agent_addr, &sb.token, "python3 -c 'import sys; print(sys.version_info[:2] >= (3, 9))'; node -e 'console.log(6 * 7)'; npm --version >/dev/null && echo npm-ok").await;
    assert_eq!((out.as_str(), code), ("True\n42\nnpm-ok\n", 0), "stderr: {err}");

    // A real install from the package registry, through the sandbox's NAT egress.
    let (out, err, code) = exec(
        sb.agent_addr,
        &sb.token,
        "python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --disable-pip-version-check -q six==1.16.0 && /tmp/venv/bin/python -c 'import six; print(six.__version__)'",
    )
    .await;
    let killed = tokio::task::block_in_place(|| runtime.kill(&sb.id));
    assert_eq!((out.as_str(), code), ("1.16.0\n", 0), "pip install inside the sandbox failed: {err}");
    killed.expect("kill");
}
