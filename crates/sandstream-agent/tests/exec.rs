//! The agent binary, driven over real gRPC: what a client of `ExecService` sees.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sandstream_proto::v1::{
    AttachRequest, CloseStdinRequest, EventKind, ExecuteRequest, ExitStatus, ListRequest, OutputEncoding,
    SignalRequest, WriteStdinRequest,
};
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test]
async fn stdout_and_stderr_stay_apart_and_byte_exact() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let got = run(&mut client, "printf 'out1\\n'; printf 'err1\\n' >&2; printf 'out2'; printf 'err2' >&2").await;
    assert_eq!(got.stdout, b"out1\nout2");
    assert_eq!(got.stderr, b"err1\nerr2");
    let end = got.end();
    assert_eq!((end.exit_code, end.status), (0, ExitStatus::Exited as i32));
    assert_eq!((end.stdout_bytes, end.stderr_bytes), (9, 9));
    assert!(got.events.iter().any(|e| e.kind == EventKind::Started as i32 && e.pid > 0), "{:?}", got.events);
}

#[tokio::test]
async fn exit_codes_0_1_and_127_for_a_missing_command() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    assert_eq!(run(&mut client, "true").await.end().exit_code, 0);
    assert_eq!(run(&mut client, "false").await.end().exit_code, 1);
    assert_eq!(run(&mut client, "exit 42").await.end().exit_code, 42);
    let missing = run(&mut client, "no-such-command-sandstream").await;
    assert_eq!(missing.end().exit_code, 127);
    assert_eq!(missing.end().status, ExitStatus::Exited as i32);
    assert!(
        missing.stderr_str().contains("no-such-command-sandstream: command not found"),
        "stderr: {}",
        missing.stderr_str()
    );
}

#[tokio::test]
async fn a_signal_death_is_reported_as_such() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let got = run(&mut client, "kill -TERM $$").await;
    let end = got.end();
    assert_eq!((end.status, end.signal, end.exit_code), (ExitStatus::Signaled as i32, 15, 143));
    assert!(end.error.contains("SIGTERM"), "{}", end.error);
}

#[tokio::test]
async fn non_utf8_bytes_and_carriage_returns_round_trip() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let got = run(&mut client, r"printf '\377\376\000\200 10%%\r 50%%\r100%%\n'; printf '\303' >&2").await;
    assert_eq!(got.stdout, b"\xff\xfe\x00\x80 10%\r 50%\r100%\n");
    assert_eq!(got.stderr, b"\xc3");
}

#[tokio::test]
async fn one_gib_streams_with_a_matching_checksum() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    // tee sends the random bytes to stdout and to sha256sum, whose digest goes to stderr.
    let got = run(&mut client, "{ head -c 1073741824 /dev/urandom | tee /dev/fd/3 | sha256sum >&2; } 3>&1").await;
    assert_eq!(got.end().exit_code, 0, "stderr: {}", got.stderr_str());
    assert_eq!(got.stdout.len(), 1 << 30);
    let digest = hex::encode(Sha256::digest(&got.stdout));
    let reported = got.stderr_str();
    assert_eq!(reported.split_whitespace().next(), Some(digest.as_str()));
    assert_eq!(got.end().stdout_bytes, 1 << 30);
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let started = Instant::now();
    // sh and both sleeps at least.
    let (_, got) = timeout_kills_the_group(&mut client, 3).await;
    let end = got.end();
    assert!(end.error.contains("timed out after 700 ms"), "{}", end.error);
    assert!(started.elapsed() < Duration::from_secs(20), "the command outlived its timeout");
}

#[tokio::test]
async fn missing_or_wrong_token_is_refused_and_nothing_runs() {
    let agent = Agent::start(&[]);
    let marker = agent.workdir().join("ran");
    let cmd = format!("touch {}", marker.display());
    for token in ["", "wrong-token-0123456789abcdef"] {
        let mut client = client_with_token(agent.addr, token).await;
        let err = client.execute(bytes_request(&cmd)).await.expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        let err = client.start(bytes_request(&cmd)).await.expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        let err = client.list(ListRequest {}).await.expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    }
    assert!(!marker.exists(), "a refused request ran its command");
    // The right token works on the same agent.
    let mut client = agent.client().await;
    assert_eq!(run(&mut client, &cmd).await.end().exit_code, 0);
    assert!(marker.exists());
}

#[tokio::test]
async fn cwd_env_and_a_missing_cwd() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    std::fs::create_dir(agent.workdir().join("sub")).expect("mkdir");
    let mut req = bytes_request("pwd; echo \"$GREETING\"");
    req.cwd = "sub".into();
    req.env.insert("GREETING".into(), "héllo wörld".into());
    let got = execute(&mut client, req).await;
    assert_eq!(got.stdout_str(), format!("{}\nhéllo wörld\n", agent.workdir().join("sub").display()));

    let mut req = bytes_request("echo should-not-run");
    req.cwd = "/no/such/dir".into();
    let err = client.execute(req).await.expect_err("bad cwd");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "cwd /no/such/dir does not exist");

    let err = client.execute(bytes_request("   ")).await.expect_err("empty command");
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "command is empty"));
    let mut req = bytes_request("true");
    req.timeout = -5;
    assert_eq!(client.execute(req).await.expect_err("negative timeout").code(), Code::InvalidArgument);
}

/// The agent starts shells itself (clone with a shared address space, `spawn.rs`): the
/// shell must come out as the `--run-as` user with no supplementary groups, in its own
/// process group, with no signal blocked or ignored, whether it started cold (cwd given)
/// or as the standby shell (default cwd). The same through the fork fallback.
#[tokio::test]
async fn shells_run_as_the_run_as_user_in_their_own_group_with_clean_signals() {
    shells_start_clean(&[]).await;
}

#[tokio::test]
async fn shells_started_with_fork_run_the_same() {
    shells_start_clean(&[("SANDSTREAM_AGENT_SPAWN", "fork")]).await;
}

async fn shells_start_clean(env: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (--run-as)");
    let agent = Agent::start_with_env(&["--run-as", "65534:65534"], env);
    for dir in [agent.dir.path().to_path_buf(), agent.workdir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // Out of memory, the kernel kills the shells before the agent.
    let agent_oom = format!("/proc/{}/oom_score_adj", agent.pid());
    let mut client = agent.client().await;
    let script = "id -u; id -g; awk '/^Groups:/ { print \"groups\", NF - 1 } /^Sig(Blk|Ign):/' /proc/self/status; \
                  read -r _ _ _ _ pgrp _ < /proc/$$/stat; [ \"$pgrp\" = $$ ] && echo own-group; \
                  echo oom $(cat /proc/self/oom_score_adj); pwd";
    let expected = |cwd: &str| {
        format!(
            "65534\n65534\ngroups 0\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\nown-group\noom 500\n{cwd}\n"
        )
    };
    let mut cold = bytes_request(script);
    cold.cwd = "/".into();
    let got = execute(&mut client, cold).await;
    assert_eq!((got.stdout_str().as_str(), got.stderr_str().as_str()), (expected("/").as_str(), ""));
    // The first standby may have started before the chmod and failed; by the third
    // default-cwd command one has started after it.
    for _ in 0..3 {
        let got = run(&mut client, script).await;
        let work = agent.workdir().display().to_string();
        assert_eq!((got.stdout_str().as_str(), got.stderr_str().as_str()), (expected(&work).as_str(), ""));
    }
    assert_eq!(std::fs::read_to_string(&agent_oom).expect("agent's score").trim(), "0");
}

#[tokio::test]
async fn the_agent_token_never_reaches_user_code() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let got = run(&mut client, "env").await;
    assert!(!got.stdout_str().contains(TOKEN), "token leaked into the command's environment");
    assert!(!got.stdout_str().contains("SANDSTREAM_AGENT_TOKEN"));
}

#[tokio::test]
async fn a_hundred_concurrent_commands_over_one_connection() {
    let agent = Agent::start(&[]);
    let client = agent.client().await; // one Channel = one HTTP/2 connection
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let mut client = client.clone();
        tasks.spawn(async move {
            let got =
                run(&mut client, &format!("seq 1 {}; echo err{i} >&2; sleep 0.2; exit {}", 1000 + i, i % 7)).await;
            let expected: String = (1..=1000 + i).map(|n| format!("{n}\n")).collect();
            assert_eq!(got.stdout_str(), expected, "command {i}");
            assert_eq!(got.stderr_str(), format!("err{i}\n"));
            assert_eq!(got.end().exit_code, (i % 7) as i32);
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        r.expect("command task");
        done += 1;
    }
    assert_eq!(done, 100);
}

#[tokio::test]
async fn a_client_cut_mid_stream_resumes_from_its_offsets() {
    let agent = Agent::start(&[]);
    let proxy = Proxy::start(agent.addr).await;
    let mut client = client_with_token(proxy.addr, TOKEN).await;
    let script = "for i in $(seq 1 150); do seq $((i*10000)) $((i*10000+9999)); echo \"warn $i\" >&2; sleep 0.01; done";
    let mut expected_out = String::new();
    let mut expected_err = String::new();
    for i in 1..=150u64 {
        for n in i * 10000..=i * 10000 + 9999 {
            expected_out.push_str(&format!("{n}\n"));
        }
        expected_err.push_str(&format!("warn {i}\n"));
    }

    let mut got = Collected::default();
    let mut stream = client.execute(bytes_request(script)).await.expect("execute").into_inner();
    let mut command_id = String::new();
    let mut cuts = 0;
    loop {
        match stream.next().await {
            Some(Ok(msg)) => {
                if msg.kind == EventKind::Started as i32 {
                    command_id = msg.command_id.clone();
                }
                got.push(msg);
                if got.end.is_some() {
                    break;
                }
                // Cut the network twice while output is still flowing.
                if (cuts == 0 && got.stdout.len() > 2_000_000) || (cuts == 1 && got.stdout.len() > 6_000_000) {
                    cuts += 1;
                    proxy.cut();
                }
            }
            Some(Err(_)) | None => {
                // Reconnect (the channel dials the proxy again) and resume where we stopped.
                assert!(!command_id.is_empty());
                let req = AttachRequest {
                    command_id: command_id.clone(),
                    stdout_offset: got.stdout.len() as u64,
                    stderr_offset: got.stderr.len() as u64,
                    encoding: OutputEncoding::Bytes as i32,
                };
                stream = loop {
                    match client.attach(req.clone()).await {
                        Ok(s) => break s.into_inner(),
                        Err(e) if e.code() == Code::Unavailable => tokio::time::sleep(Duration::from_millis(50)).await,
                        Err(e) => panic!("attach failed: {e}"),
                    }
                };
            }
        }
    }
    assert_eq!(cuts, 2, "the test must actually cut the connection");
    assert_eq!(got.stdout_str(), expected_out);
    assert_eq!(got.stderr_str(), expected_err);
    assert_eq!(got.end().exit_code, 0);
}

#[tokio::test]
async fn a_client_that_reads_nothing_leaves_agent_memory_bounded() {
    let agent = Agent::start(&[]);
    let (rss_before, _) = agent.rss_kib();
    let mut slow = agent.client().await;
    let mut observer = agent.client().await; // its own connection
    let mut stream = slow.execute(bytes_request("head -c 500000000 /dev/zero")).await.expect("execute").into_inner();
    let first = stream.next().await.expect("started").expect("ok");
    // Read nothing more until the command has written all 500 MB.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = observer.list(ListRequest {}).await.expect("list").into_inner();
        let c = list.commands.iter().find(|c| c.command_id == first.command_id).expect("listed");
        if !c.running {
            assert_eq!(c.stdout_bytes, 500_000_000);
            break;
        }
        assert!(Instant::now() < deadline, "command did not finish while the client was not reading");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss, peak) = agent.rss_kib();
    eprintln!("agent RSS before {rss_before} KiB, after {rss} KiB, peak {peak} KiB");
    assert!(peak < rss_before + 64 * 1024, "agent peak RSS {peak} KiB grew with unread output");
    // And the slow client still receives every byte.
    let mut got = Collected::default();
    got.push(first);
    while let Some(msg) = stream.next().await {
        got.push(msg.expect("ok"));
    }
    assert_eq!(got.stdout.len(), 500_000_000);
    assert!(got.stdout.iter().all(|b| *b == 0));
}

#[tokio::test]
async fn a_seed_only_client_gets_text_lines_and_an_end() {
    use sandstream_proto::seed::ExecuteRequest as SeedRequest;
    use sandstream_proto::seed::exec_service_client::ExecServiceClient as SeedClient;
    let agent = Agent::start(&[]);
    let mut client = SeedClient::with_interceptor(channel(agent.addr).await, Bearer(TOKEN.into()));
    let req = SeedRequest {
        command: "echo 'héllo ☃'; echo oops >&2; printf 'a\\r b'; exit 3".into(),
        cwd: String::new(),
        env: Default::default(),
        timeout: 10_000,
    };
    let mut stream = client.execute(req).await.expect("execute").into_inner();
    let (mut out, mut err, mut end) = (String::new(), String::new(), None);
    while let Some(msg) = stream.next().await {
        let msg = msg.expect("ok");
        assert!(end.is_none(), "nothing may follow the end message");
        if msg.end {
            end = Some(msg.exit_code);
        } else if msg.channel == 1 {
            err.push_str(&msg.line);
        } else {
            out.push_str(&msg.line);
        }
    }
    assert_eq!(out, "héllo ☃\na\r b");
    assert_eq!(err, "oops\n");
    assert_eq!(end, Some(3));

    // The seed's OpenSession with the token in the request field.
    use sandstream_proto::seed::OpenSessionRequest;
    let mut plain = SeedClient::new(channel(agent.addr).await);
    let mut session = plain
        .open_session(OpenSessionRequest { sandbox_id: String::new(), token: TOKEN.into() })
        .await
        .expect("session opens with the field token")
        .into_inner();
    assert!(session.next().await.expect("first message").is_ok());
    let err = plain
        .open_session(OpenSessionRequest { sandbox_id: String::new(), token: "nope-nope-nope-nope".into() })
        .await
        .expect_err("bad field token");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn background_commands_list_attach_stdin_and_signal() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut req = bytes_request("while read -r line; do echo \"got:$line\"; done; echo eof");
    req.keep_stdin_open = true;
    let started = client.start(req).await.expect("start").into_inner();
    assert!(started.pid > 0 && !started.command_id.is_empty());
    client
        .write_stdin(WriteStdinRequest { command_id: started.command_id.clone(), data: b"one\ntwo\n".to_vec().into() })
        .await
        .expect("write stdin");
    client.close_stdin(CloseStdinRequest { command_id: started.command_id.clone() }).await.expect("close stdin");
    let err = client
        .write_stdin(WriteStdinRequest { command_id: started.command_id.clone(), data: b"late".to_vec().into() })
        .await
        .expect_err("stdin closed");
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A command that stops reading (here it closes fd 0 and waits) refuses writes with
    // FAILED_PRECONDITION and a sentence saying why, not an internal error.
    let mut req = bytes_request("exec 0<&-; sleep 5");
    req.keep_stdin_open = true;
    let deaf = client.start(req).await.expect("start").into_inner();
    let mut refused = None;
    for _ in 0..100 {
        let write = WriteStdinRequest { command_id: deaf.command_id.clone(), data: b"x".to_vec().into() };
        match client.write_stdin(write).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("writes to a closed stdin must be refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("no longer reads its stdin"), "{}", err.message());
    client.signal(SignalRequest { command_id: deaf.command_id.clone(), signal: 9 }).await.expect("kill");

    let attach = |id: &str| AttachRequest {
        command_id: id.into(),
        encoding: OutputEncoding::Bytes as i32,
        ..Default::default()
    };
    let mut got = Collected::default();
    let mut s = client.attach(attach(&started.command_id)).await.expect("attach").into_inner();
    while let Some(m) = s.next().await {
        got.push(m.expect("ok"));
    }
    assert_eq!(got.stdout_str(), "got:one\ngot:two\neof\n");

    // A long-running one, killed by a signal; list shows both states.
    let sleeper = client.start(bytes_request("sleep 300")).await.expect("start").into_inner();
    let list = client.list(ListRequest {}).await.expect("list").into_inner();
    let find = |id: &str| list.commands.iter().find(|c| c.command_id == id).cloned().expect("listed");
    assert!(find(&sleeper.command_id).running);
    assert!(!find(&started.command_id).running);
    assert_eq!(find(&started.command_id).command, "while read -r line; do echo \"got:$line\"; done; echo eof");
    client.signal(SignalRequest { command_id: sleeper.command_id.clone(), signal: 0 }).await.expect("kill");
    let mut got = Collected::default();
    let mut s = client.attach(attach(&sleeper.command_id)).await.expect("attach").into_inner();
    while let Some(m) = s.next().await {
        got.push(m.expect("ok"));
    }
    assert_eq!((got.end().status, got.end().signal), (ExitStatus::Signaled as i32, 9));
    let err =
        client.signal(SignalRequest { command_id: sleeper.command_id.clone(), signal: 15 }).await.expect_err("gone");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = client.attach(attach("no-such-id")).await.expect_err("unknown");
    assert_eq!((err.code(), err.message()), (Code::NotFound, "command no-such-id not found"));
    let mut past = attach(&started.command_id);
    past.stdout_offset = 10_000;
    assert_eq!(client.attach(past).await.expect_err("past the end").code(), Code::OutOfRange);
}

#[tokio::test]
async fn stdin_bytes_given_up_front_are_delivered_then_closed() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let mut req = bytes_request("wc -c; cat");
    req.stdin = vec![b'x'; 100_000];
    let got = execute(&mut client, req).await;
    assert_eq!(got.stdout_str().trim(), "100000");
}

#[tokio::test]
async fn keepalives_flow_while_a_command_is_silent() {
    let agent = Agent::start(&["--keepalive-ms", "150"]);
    let mut client = agent.client().await;
    let got = run(&mut client, "sleep 1; echo done").await;
    let keepalives = got.events.iter().filter(|e| e.kind == EventKind::Keepalive as i32).count();
    assert!(keepalives >= 3, "expected keepalives during a 1 s silence, got {keepalives}");
    assert_eq!(got.stdout_str(), "done\n");
}

#[tokio::test]
async fn output_past_the_cap_is_cut_with_a_clear_marker() {
    let agent = Agent::start(&["--output-cap-bytes", "1000"]);
    let mut client = agent.client().await;
    let got = run(&mut client, "head -c 5000 /dev/zero; echo after").await;
    assert_eq!(got.stdout.len(), 1000);
    let marker = got.events.iter().find(|e| e.kind == EventKind::Truncated as i32).expect("a truncation event");
    assert!(marker.error.contains("cap of 1000 bytes"), "{}", marker.error);
    let end = got.end();
    assert!(end.truncated && end.exit_code == 0 && end.stdout_bytes == 1000, "{end:?}");
    // The end message has the final count: 4000 zeros and "after\n" were dropped.
    assert!(end.error.contains("4006 later bytes were dropped"), "{}", end.error);
}

#[tokio::test]
async fn sigterm_ends_running_commands_and_the_agent_exits_cleanly() {
    let mut agent = Agent::start(&["--shutdown-grace-ms", "500"]);
    let mut client = agent.client().await;
    let ignores_term = "python3 -c 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(300)'";
    let mut stream = client.execute(bytes_request(ignores_term)).await.expect("execute").into_inner();
    let started = stream.next().await.expect("started").expect("ok");
    let mut got = Collected::default();
    while got.stdout != b"1\n" {
        got.push(stream.next().await.expect("output").expect("ok"));
    }
    agent.send_sigterm();
    while let Some(Ok(m)) = stream.next().await {
        got.push(m);
    }
    drop(client);
    let status = tokio::task::spawn_blocking(move || agent.wait()).await.expect("join");
    assert!(status.success(), "agent exit status {status:?}");
    // The command ignored SIGTERM, so the agent escalated to SIGKILL.
    assert_eq!(got.end().signal, 9);
    assert!(group_members(started.pid).is_empty(), "a command outlived the agent");
}

#[tokio::test]
async fn bad_encoding_and_unknown_signal_are_invalid_arguments() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let req = ExecuteRequest { command: "true".into(), encoding: 99, ..Default::default() };
    assert_eq!(client.execute(req).await.expect_err("encoding").code(), Code::InvalidArgument);
    let s = client.start(bytes_request("sleep 5")).await.expect("start").into_inner();
    let err = client.signal(SignalRequest { command_id: s.command_id, signal: 4242 }).await.expect_err("signal");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_background_child_that_keeps_writing_cannot_hold_the_command_open() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    // The shell exits at once; its child keeps the pipe open and never falls silent.
    let started = Instant::now();
    let got = run(&mut client, "(while :; do echo spam; sleep 0.01; done) & echo main done").await;
    assert_eq!((got.end().status, got.end().exit_code), (ExitStatus::Exited as i32, 0));
    assert!(got.stdout_str().starts_with("main done\n") || got.stdout_str().contains("main done\n"));
    assert!(started.elapsed() < Duration::from_secs(30), "the command never ended");
    // A deadline that falls while such a straggler holds the command open kills it,
    // without calling the command timed out (its shell exited by itself).
    // It ignores SIGPIPE, so only the deadline can end it.
    let mut req = bytes_request("(trap '' PIPE; while :; do echo spam; sleep 0.01; done) & echo $!");
    req.timeout = 500;
    let mut stream = client.execute(req).await.expect("execute").into_inner();
    let mut got = Collected::default();
    while let Some(m) = stream.next().await {
        got.push(m.expect("ok"));
    }
    assert_eq!(got.end().status, ExitStatus::Exited as i32);
    // The loop's first "spam" may come before the pid: the two race after the fork.
    let straggler: u32 = got.stdout_str().lines().find_map(|l| l.parse().ok()).expect("pid of the background loop");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{straggler}")).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive =
        std::fs::read_to_string(format!("/proc/{straggler}/stat")).map(|s| !s.contains(") Z ")).unwrap_or(false);
    assert!(!alive, "the background loop outlived the command's deadline");
}

#[tokio::test]
async fn the_spool_directory_is_private_to_the_agent() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    run(&mut client, "echo something to spool").await;
    let meta = std::fs::metadata(agent.dir.path().join("spool")).expect("spool dir");
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(agent.dir.path().join("spool")).expect("list").flatten() {
        assert_eq!(entry.metadata().expect("meta").permissions().mode() & 0o777, 0o600);
    }
}
