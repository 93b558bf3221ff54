//! Attacks on the agent, each performed for real against the binary, and the legitimate
//! path beside it: idle connections that would starve it of descriptors, runaway output
//! with nobody reading, a standby shell that dies as soon as it starts, a sandbox that
//! must end at its deadline, and tenant envs that must not configure the agent.

mod common;

use std::io::Read;
use std::net::TcpStream as StdTcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use sandstream_proto::v1::{AttachRequest, EventKind, ExitStatus, ListRequest};
use tokio_stream::StreamExt;

fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// Replaces `path` by rename, as the runtime does.
fn write_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Waits up to `within` for the agent to exit by itself.
async fn exits_within(agent: &mut Agent, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = agent.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Reads from a raw socket until the peer closes it; how long that took.
fn time_until_closed(mut sock: StdTcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    sock.set_read_timeout(Some(limit)).expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the agent did not close the connection within {limit:?}: {e}"),
        }
    }
}

// ---- 1. unauthenticated connections ----

#[tokio::test]
async fn five_thousand_idle_connections_do_not_starve_a_real_client() {
    // The agent gets the descriptor limit runc gives a sandbox (1024, soft and hard).
    let mut agent = Agent::start_customized(agent_bin(), &[], &[], |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: in the forked child before exec; setrlimit is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).map_err(std::io::Error::from));
        }
    });
    // The attacker (this test) needs room for 5,000 sockets.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let want = hard.max(16_384);
    setrlimit(Resource::RLIMIT_NOFILE, want, want).expect("raise the test's descriptor limit (needs root)");
    let mut idle = Vec::with_capacity(5000);
    for _ in 0..5000 {
        idle.push(tokio::net::TcpStream::connect(agent.addr).await.expect("connect"));
    }
    let attempt = async {
        let mut client = client_with_token(agent.addr, TOKEN).await;
        for _ in 0..5 {
            let got = run(&mut client, "echo ok").await;
            assert_eq!((got.stdout_str().as_str(), got.end().exit_code), ("ok\n", 0));
        }
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .expect("a client with the token must get through 5,000 idle connections promptly");
    assert!(agent.try_wait().is_none(), "the agent died");
    drop(idle);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_a_few_seconds() {
    let agent = Agent::start(&[]);
    let sock = StdTcpStream::connect(agent.addr).expect("connect");
    let took = time_until_closed(sock, Duration::from_secs(8));
    assert!(took >= Duration::from_secs(2), "closed after {took:?}, before the grace");
    // The positive control: a client that authenticates is served.
    let mut client = agent.client().await;
    assert_eq!(run(&mut client, "echo ok").await.stdout_str(), "ok\n");
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed_after_the_pre_auth_deadline() {
    let agent = Agent::start(&[]);
    // A valid HTTP/2 start (preface and SETTINGS), then silence: never a request.
    let mut sock = StdTcpStream::connect(agent.addr).expect("connect");
    std::io::Write::write_all(&mut sock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .expect("preface");
    // Garbage after a valid start is an HTTP/2 error: closed at once.
    let mut garbage = StdTcpStream::connect(agent.addr).expect("connect");
    std::io::Write::write_all(&mut garbage, b"GET / HTTP/1.1\r\n\r\n").expect("garbage");
    let garbage_took = time_until_closed(garbage, Duration::from_secs(12));
    assert!(garbage_took < Duration::from_secs(12));
    // An authenticated client on its own connection meanwhile.
    let mut client = agent.client().await;
    assert_eq!(run(&mut client, "echo ok").await.stdout_str(), "ok\n");
    let took = time_until_closed(sock, Duration::from_secs(14));
    assert!(took >= Duration::from_secs(8), "closed after {took:?}, before the 10 s deadline");
}

// ---- 2. output limit from the request ----

async fn assert_runaway_is_cut_at(client: &mut Client, end: &sandstream_proto::v1::CommandOutput, limit: u64) {
    assert!(end.output_limit_reached, "{end:?}");
    assert!(end.truncated, "{end:?}");
    assert_eq!(end.stdout_bytes + end.stderr_bytes, limit, "exactly the limit is recorded");
    assert_eq!((end.status, end.signal), (ExitStatus::Signaled as i32, 9), "{end:?}");
    assert!(end.error.contains("limit"), "{}", end.error);
    // No process of the command is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_members(end.pid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(group_members(end.pid), Vec::<u32>::new(), "processes of the command survived");
    let listed = client.list(ListRequest {}).await.expect("list").into_inner();
    let info = listed.commands.iter().find(|c| c.command_id == end.command_id).expect("listed");
    assert!(info.output_limit_reached && !info.running);
}

#[tokio::test]
async fn execute_with_an_output_limit_kills_a_runaway_command_at_exactly_the_limit() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let limit = 1 << 20;
    let mut req = bytes_request("while true; do echo 1; done & while true; do echo 2 >&2; done");
    req.output_limit_bytes = limit;
    let started = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(30), execute(&mut client, req)).await.expect("ends quickly");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!((got.stdout.len() + got.stderr.len()) as u64, limit, "the client got exactly the limit");
    let end = got.end().clone();
    assert_runaway_is_cut_at(&mut client, &end, limit).await;
}

#[tokio::test]
async fn start_with_an_output_limit_kills_a_runaway_command_nobody_reads() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let limit = 1 << 20;
    let mut req = bytes_request("while true; do echo 1; done");
    req.output_limit_bytes = limit;
    let id = client.start(req).await.expect("start").into_inner().command_id;
    // Nobody reads: the agent alone enforces the limit.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = client.list(ListRequest {}).await.expect("list").into_inner();
        if listed.commands.iter().any(|c| c.command_id == id && !c.running) {
            break;
        }
        assert!(Instant::now() < deadline, "the runaway command still runs");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stream = client
        .attach(AttachRequest { command_id: id, encoding: 1, ..Default::default() })
        .await
        .expect("attach")
        .into_inner();
    let mut got = Collected::default();
    while let Some(msg) = stream.next().await {
        got.push(msg.expect("message"));
    }
    assert_eq!(got.stdout.len() as u64, limit);
    assert!(got.stdout.chunks(2).all(|c| c == b"1\n"), "the recorded output is the command's");
    let end = got.end().clone();
    assert_runaway_is_cut_at(&mut client, &end, limit).await;
}

#[tokio::test]
async fn a_command_under_its_output_limit_is_unaffected() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut req = bytes_request("head -c 1000 /dev/zero; echo done >&2");
    req.output_limit_bytes = 1 << 20;
    let got = execute(&mut client, req).await;
    let end = got.end();
    assert_eq!((got.stdout.len(), got.stderr_str().as_str()), (1000, "done\n"));
    assert_eq!((end.status, end.exit_code), (ExitStatus::Exited as i32, 0));
    assert!(!end.output_limit_reached && !end.truncated && end.error.is_empty(), "{end:?}");
}

// ---- 3. standby refills back off ----

#[tokio::test]
async fn a_standby_shell_that_dies_at_once_is_restarted_with_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let starts = dir.path().join("starts");
    // A `bash` whose standby (the bootstrap script) dies at once, as the OOM killer
    // kills every new process in a sandbox whose memory is full; commands run normally.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let fake_bash = bin.join("bash");
    std::fs::write(
        &fake_bash,
        format!(
            "#!/bin/sh\ncase \"$2\" in *__ss_f*) echo x >> {}; exit 137;; esac\nexec /bin/bash \"$@\"\n",
            starts.display()
        ),
    )
    .expect("write fake bash");
    std::fs::set_permissions(&fake_bash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let agent = Agent::start(&["--shell", fake_bash.to_str().expect("utf-8 path")]);
    let mut client = agent.client().await;
    let began = Instant::now();
    let (mut commands, mut lost) = (0, 0);
    while began.elapsed() < Duration::from_secs(4) {
        let got = run(&mut client, "echo ok").await;
        match (got.stdout_str().as_str(), got.end().exit_code) {
            ("ok\n", 0) => commands += 1,
            // Handed to a standby in the moment before it died (as under the OOM killer).
            ("", 137) => lost += 1,
            other => panic!("unexpected result {other:?}"),
        }
    }
    let started = std::fs::read_to_string(&starts).unwrap_or_default().lines().count();
    assert!(lost <= started, "{lost} commands lost to {started} dying standby shells");
    // 50 ms doubling: 50+100+200+400+800+1600 ms is 3.15 s, so about 7 starts in 4 s;
    // without the backoff there is one per command.
    assert!(commands >= 20, "only {commands} commands ran in 4 s");
    assert!(started <= 12, "{started} standby shells started for {commands} commands in 4 s");
}

// ---- 4. the sandbox's own deadline ----

#[tokio::test]
async fn the_agent_shuts_down_by_itself_at_the_deadline_and_its_commands_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deadline");
    write_by_rename(&file, &format!("{}\n", now_ms() + 2000));
    let mut agent = Agent::start(&["--deadline-file", file.to_str().expect("utf-8")]);
    let mut client = agent.client().await;
    let sleeper = client.start(bytes_request("sleep 1000")).await.expect("start").into_inner();
    let status = exits_within(&mut agent, Duration::from_secs(10)).await.expect("the agent ended at its deadline");
    assert!(status.success(), "{status:?}");
    assert_eq!(group_members(sleeper.pid), Vec::<u32>::new(), "sleep 1000 survived the agent");
}

#[tokio::test]
async fn a_later_deadline_written_to_the_file_keeps_the_agent_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deadline");
    let mut agent = Agent::start(&["--deadline-file", file.to_str().expect("utf-8")]);
    let mut client = agent.client().await;
    // No file yet: no deadline. Then one 2 s ahead, garbage (ignored), and a later one.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first = now_ms() + 3000;
    write_by_rename(&file, &first.to_string());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    write_by_rename(&file, "not a number");
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_by_rename(&file, &format!("  {}  ", now_ms() + 5000));
    // Well past the first deadline (and a check after it), the agent still serves.
    while now_ms() < first + 2500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent.try_wait().is_none(), "the agent ended at the deadline that was moved");
    assert_eq!(run(&mut client, "echo alive").await.stdout_str(), "alive\n");
    assert!(exits_within(&mut agent, Duration::from_secs(10)).await.is_some(), "the later deadline ends it");
}

#[tokio::test]
async fn as_pid_1_the_deadline_ends_the_whole_sandbox() {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (unshare --pid)");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("deadline");
    write_by_rename(&file, &(now_ms() + 2000).to_string());
    let mut child = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(agent_bin())
        .args(["--listen", "127.0.0.1:0", "--workdir", "/", "--spool-dir"])
        .arg(dir.path().join("spool"))
        .arg("--node-preload")
        .arg(dir.path().join("node-stdio.cjs"))
        .arg("--deadline-file")
        .arg(&file)
        .env("SANDSTREAM_AGENT_TOKEN", TOKEN)
        .env("SANDSTREAM_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let addr = read_listen_line(&mut child);
    let mut child = KillOnDrop(child);
    let mut client = client_with_token(addr, TOKEN).await;
    client.start(bytes_request("sleep 1000")).await.expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the sandbox outlived its deadline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- 5. tenant envs reach commands, never the agent ----

#[tokio::test]
async fn the_command_env_file_reaches_commands_but_never_configures_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("envs");
    std::fs::write(
        &file,
        b"FOO=bar\0SANDSTREAM_AGENT_OUTPUT_CAP=1\0SANDSTREAM_LOG=trace\0no-equals-sign\0PATH=/usr/bin:/bin\0",
    )
    .expect("write env file");
    let agent = Agent::start_with_env(
        &["--command-env-file", file.to_str().expect("utf-8")],
        // Variables that configure the agent must not reach commands either.
        &[("SANDSTREAM_AGENT_SECRET_KNOB", "hidden")],
    );
    let mut client = agent.client().await;
    let got = run(
        &mut client,
        "printf 0123456789; echo \" FOO=$FOO LOG=$SANDSTREAM_LOG\"; env | grep -c ^SANDSTREAM_AGENT_SECRET || true",
    )
    .await;
    assert_eq!(got.stdout_str(), "0123456789 FOO=bar LOG=trace\n0\n", "stderr: {}", got.stderr_str());
    let end = got.end();
    assert!(!end.truncated && end.error.is_empty(), "the tenant's cap of 1 byte applied to the agent: {end:?}");
    // Also for a command with its own env (not run by the standby shell).
    let mut req = bytes_request("echo $FOO $BAZ");
    req.env.insert("BAZ".into(), "qux".into());
    assert_eq!(execute(&mut client, req).await.stdout_str(), "bar qux\n");
}

#[tokio::test]
async fn a_missing_command_env_file_means_no_extra_envs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(&["--command-env-file", dir.path().join("absent").to_str().expect("utf-8")]);
    let mut client = agent.client().await;
    assert_eq!(run(&mut client, "echo \"[${FOO-unset}]\"").await.stdout_str(), "[unset]\n");
    let started = run(&mut client, "true").await;
    assert_eq!(started.events.first().map(|e| e.kind), Some(EventKind::Started as i32));
}
