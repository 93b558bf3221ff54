//! The agent as PID 1 of its own PID namespace, as in a sandbox: orphaned processes are
//! reaped (no zombies pile up) and SIGTERM reaches the agent. Needs root (unshare).

mod common;

use std::process::Stdio;

use common::*;

#[tokio::test]
async fn as_pid_1_it_reaps_orphans_and_forwards_sigterm() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (unshare --pid)");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_sandstream-agent"))
        .args(["--listen", "127.0.0.1:0", "--workdir", "/", "--spool-dir"])
        .arg(dir.path().join("spool"))
        .arg("--node-preload")
        .arg(dir.path().join("node-stdio.cjs"))
        .env("SANDSTREAM_AGENT_TOKEN", TOKEN)
        .env("SANDSTREAM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare");
    let addr = read_listen_line(&mut child);
    // unshare --kill-child takes the whole namespace down when it dies.
    let mut child = KillOnDrop(child);
    let mut client = client_with_token(addr, TOKEN).await;

    let who = run(&mut client, "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $PPID").await;
    assert!(who.stdout_str().starts_with(env!("CARGO_BIN_EXE_sandstream-agent")), "{}", who.stdout_str());
    // Twenty orphans: each subshell exits at once, leaving its child to be reparented to PID 1.
    let orphans = run(
        &mut client,
        "for i in $(seq 20); do (sleep 0.1 &); done; sleep 1; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
    )
    .await;
    assert_eq!(orphans.stdout_str().trim(), "0", "zombies left: stderr {}", orphans.stderr_str());

    // SIGTERM to the namespace's init (unshare forwards nothing; signal PID 1 directly).
    let unshare_pid = child.0.id();
    let init_pid = std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
        .expect("children of unshare")
        .trim()
        .to_string();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid.parse().expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal init");
    drop(client);
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await.expect("join").expect("wait");
    assert!(status.success(), "unshare/agent exit status {status:?}");
}
