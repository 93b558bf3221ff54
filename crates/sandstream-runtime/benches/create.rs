//! Sandbox creation, side by side with `docker run` on the same machine; prints numbers,
//! asserts nothing. As root, with the static agent:
//!
//!   SANDSTREAM_STATIC_AGENT=$(./scripts/build-agent.sh) cargo bench -p sandstream-runtime --bench create
//!
//! Measures create → first `Execute("true")` answered → kill, on a busybox template. If a
//! Docker daemon answers, the same template is imported as an image and
//! `docker run --rm IMAGE true` is timed too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandstream_proto::v1::exec_service_client::ExecServiceClient;
use sandstream_proto::v1::{ExecuteRequest, OutputEncoding};
use sandstream_runtime::{Egress, Limits, OciConfig, OciRuntime, Runtime, SandboxSpec};
use tokio_stream::StreamExt;

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    println!("{name:<48} n={:<4} p50={:.1} ms  p90={:.1} ms  p99={:.1} ms", v.len(), at(0.5), at(0.9), at(0.99));
}

async fn first_execute(addr: std::net::SocketAddr, token: &str) {
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
    let req = ExecuteRequest { command: "true".into(), encoding: OutputEncoding::Bytes as i32, ..Default::default() };
    let mut s = client.execute(req).await.expect("execute").into_inner();
    while let Some(m) = s.next().await {
        if m.expect("message").end {
            return;
        }
    }
    panic!("no end message");
}

fn busybox_template(root: &std::path::Path) {
    for d in ["bin", "etc", "home", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    let ok = std::process::Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .status()
        .expect("chroot");
    assert!(ok.success());
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
        .expect("passwd");
}

fn docker_ok() -> bool {
    std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::main]
async fn main() {
    let agent = PathBuf::from(
        std::env::var("SANDSTREAM_STATIC_AGENT").expect("set SANDSTREAM_STATIC_AGENT (scripts/build-agent.sh)"),
    );
    let n: usize = std::env::var("SANDSTREAM_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = dir.path().join("template");
    busybox_template(&template);
    let runtime = OciRuntime::new(OciConfig::new(dir.path().join("state"), agent)).expect("runtime");
    let spec =
        SandboxSpec { template: template.clone(), limits: Limits::default(), env: vec![], egress: Egress::Allow };

    let (mut to_ready, mut to_first, mut kills) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let sb = tokio::task::block_in_place(|| runtime.create(&spec)).expect("create");
        to_ready.push(t.elapsed());
        first_execute(sb.agent_addr, &sb.token).await;
        to_first.push(t.elapsed());
        let k = Instant::now();
        tokio::task::block_in_place(|| runtime.kill(&sb.id)).expect("kill");
        kills.push(k.elapsed());
    }
    report("sandstream create -> agent accepting", to_ready);
    report("sandstream create -> first Execute(\"true\") done", to_first);
    report("sandstream kill (everything removed)", kills);

    if docker_ok() {
        let tar = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("tar -C {} -c . | docker import - sandstream-bench-busybox >/dev/null", template.display()))
            .status()
            .expect("docker import");
        assert!(tar.success());
        let mut runs = Vec::new();
        for _ in 0..n.min(30) {
            let t = Instant::now();
            let s = std::process::Command::new("docker")
                .args(["run", "--rm", "sandstream-bench-busybox", "true"])
                .status()
                .expect("docker run");
            assert!(s.success());
            runs.push(t.elapsed());
        }
        report("docker run --rm IMAGE true (same template)", runs);
        let _ = std::process::Command::new("docker").args(["rmi", "-f", "sandstream-bench-busybox"]).output();
    } else {
        println!("docker: no daemon answers `docker info`; start dockerd to compare");
    }
}
