//! Shared by the runtime's integration tests and benchmark: the static agent's path,
//! a busybox template, a gRPC client call to a sandbox's agent, and test peers in
//! network namespaces (`netns`).
#![allow(dead_code)]

pub mod netns;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{EventKind, ExecuteRequest, OutputEncoding};
use tokio_stream::StreamExt;

/// The static agent from scripts/build-agent.sh, named by SANDSTREAM_STATIC_AGENT.
/// Under CI its absence fails the test; elsewhere the test is skipped with a message.
pub fn static_agent() -> Option<PathBuf> {
    match std::env::var_os("SANDSTREAM_STATIC_AGENT") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => panic!("SANDSTREAM_STATIC_AGENT is not set; run scripts/test.sh"),
        None => {
            eprintln!("skipped: SANDSTREAM_STATIC_AGENT is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// A busybox root filesystem (mode 755) with a root-only /etc/shadow and a user 1000.
pub fn busybox_template(dir: &Path) -> PathBuf {
    let root = dir.join("template");
    for d in ["bin", "etc", "home", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod template");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    let out = std::process::Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .output()
        .expect("chroot");
    assert!(out.status.success(), "busybox --install: {out:?}");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("group");
    std::fs::write(root.join("etc/shadow"), "root:TEMPLATE-SECRET:19000:0:99999:7:::\n").expect("shadow");
    std::fs::set_permissions(root.join("etc/shadow"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    root
}

#[derive(Debug, Default)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    /// The agent's END `error` sentence.
    pub error: String,
    pub oom_killed: bool,
}

/// Runs `command` in the sandbox whose agent is at `addr`, and collects its output.
pub async fn exec_with_token(
    addr: SocketAddr,
    token: &str,
    command: &str,
    timeout_ms: i64,
) -> Result<Out, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().expect("ascii");
    let mut client = ExecServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", auth.clone());
        Ok(req)
    });
    let req = ExecuteRequest {
        command: command.into(),
        timeout: timeout_ms,
        encoding: OutputEncoding::Bytes as i32,
        ..Default::default()
    };
    let mut stream = client.execute(req).await?.into_inner();
    let mut out = Out::default();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        match EventKind::try_from(msg.kind) {
            Ok(EventKind::Output) if msg.channel == 1 => out.stderr.push_str(&String::from_utf8_lossy(&msg.data)),
            Ok(EventKind::Output) => out.stdout.push_str(&String::from_utf8_lossy(&msg.data)),
            Ok(EventKind::End) => {
                out.exit_code = msg.exit_code;
                out.error = msg.error;
                out.oom_killed = msg.oom_killed;
            }
            _ => {}
        }
    }
    Ok(out)
}
