//! The standby shell, driven over real gRPC: a command handed to the already-started
//! bash gives the same bytes and exit codes as one run by a fresh `bash -c`, the
//! standby is really used (and `--standby-shell false` turns it off), it is replaced
//! when killed, it never outlives the agent.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use sandstream_proto::v1::{EventKind, ExitStatus, ListRequest, SignalRequest};
use tokio_stream::StreamExt;

/// Pids of the agent's children running the standby bootstrap (`__ss_f` is in it):
/// the waiting standby, and a former one still running the command it was handed.
fn standby_shells(agent_pid: u32) -> Vec<u32> {
    live_processes()
        .into_iter()
        .filter(|(_, f)| f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(agent_pid))
        .map(|(pid, _)| pid)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("__ss_f")
        })
        .collect()
}

/// Waits until the agent has a standby shell that is none of `not`, and returns its pid.
async fn wait_for_standby(agent: &Agent, not: &[u32]) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = standby_shells(agent.pid()).into_iter().find(|p| !not.contains(p)) {
            // The process exists once exec'd; the agent files it a moment later.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return pid;
        }
        assert!(Instant::now() < deadline, "no standby shell appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn started_pid(got: &Collected) -> u32 {
    got.events.iter().find(|e| e.kind == EventKind::Started as i32).expect("a STARTED message").pid
}

/// Whether a live (not zombie) process `pid` runs the standby bootstrap.
fn runs_bootstrap(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ") && String::from_utf8_lossy(&cmdline).contains("__ss_f")
}

#[tokio::test]
async fn a_command_run_by_the_standby_shell_gives_the_same_bytes_as_a_cold_one() {
    let warm = Agent::start(&[]);
    let cold = Agent::start(&["--standby-shell", "false"]);
    let mut warm_client = warm.client().await;
    let mut cold_client = cold.client().await;
    // More than a pipe holds, every byte value (NULs too): all of it must reach `cat`.
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("echo hi; echo err >&2; exit 3", vec![]),
        ("nosuchcmd_xyz", vec![]),
        ("cat", all_bytes.clone()),
        ("read -r line; echo \"got $line\"; cat", b"first\nrest\0of it".to_vec()),
        ("echo $0", vec![]),
        // Quotes, backslashes and a newline; the line number on the second line.
        (
            "printf '%s|' 'it'\\''s' \"say \\\"hi\\\"\" 'back\\slash' \"a\\\\b\" $'tab\\there'; echo\necho \"line $LINENO\"",
            vec![],
        ),
        // Nothing of the bootstrap is visible: no variable, no function, no positional
        // parameter; `$BASH_EXECUTION_STRING` and `$_` are what a cold shell has.
        (
            "echo \"[${__ss_cmd-unset}] [${__ss_u-unset}] [$(declare -F)] [$#] [$SECONDS]\"; echo \"$BASH_EXECUTION_STRING\"",
            vec![],
        ),
        ("echo \"[$_]\"", vec![]),
        ("true\nnosuchcmd_on_line_2 arg; echo \"status $?\" >&2", vec![]),
        ("kill -TERM $$; echo not reached", vec![]),
        ("exec sh -c 'echo \"exec $#\"; exit 7'", vec![]),
    ];
    let mut runs = 0;
    for (command, stdin) in cases {
        let standby = wait_for_standby(&warm, &[]).await;
        let mut req = bytes_request(command);
        req.stdin = stdin.clone();
        let got = execute(&mut warm_client, req.clone()).await;
        runs += 1;
        assert_eq!(started_pid(&got), standby, "{command:?} was not run by the standby shell");
        let want = execute(&mut cold_client, req).await;
        assert_eq!(got.stdout_str(), want.stdout_str(), "stdout of {command:?}");
        assert_eq!(got.stdout, want.stdout, "stdout bytes of {command:?}");
        assert_eq!(got.stderr, want.stderr, "stderr of {command:?}: {:?} vs {:?}", got.stderr_str(), want.stderr_str());
        let (g, w) = (got.end(), want.end());
        assert_eq!((g.status, g.exit_code, g.signal), (w.status, w.exit_code, w.signal), "end of {command:?}");
        match command {
            "nosuchcmd_xyz" => {
                assert_eq!(g.exit_code, 127);
                assert_eq!(got.stderr_str(), "/bin/bash: line 1: nosuchcmd_xyz: command not found\n");
            }
            "cat" => assert_eq!(got.stdout, all_bytes),
            "echo $0" => assert_eq!(got.stdout_str(), "/bin/bash\n"),
            c if c.starts_with("printf") => {
                assert_eq!(got.stdout_str(), "it's|say \"hi\"|back\\slash|a\\b|tab\there|\nline 2\n")
            }
            c if c.contains("__ss_cmd") => {
                assert_eq!(got.stdout_str(), format!("[unset] [unset] [] [0] [0]\n{command}\n"))
            }
            c if c.starts_with("kill") => assert_eq!((g.status, g.signal), (ExitStatus::Signaled as i32, 15)),
            _ => {}
        }
    }

    // The one difference: a syntax error is reported by `eval`, not by `-c`.
    let standby = wait_for_standby(&warm, &[]).await;
    let got = run(&mut warm_client, "echo before; if then").await;
    runs += 1;
    assert_eq!(started_pid(&got), standby);
    let want = run(&mut cold_client, "echo before; if then").await;
    assert_eq!(
        want.stderr_str(),
        "/bin/bash: -c: line 1: syntax error near unexpected token `then'\n/bin/bash: -c: line 1: `echo before; if then'\n"
    );
    assert_eq!(got.stderr_str(), want.stderr_str().replace("bash: -c: ", "bash: eval: "));
    assert_eq!((got.stdout.as_slice(), got.end().exit_code), (want.stdout.as_slice(), want.end().exit_code));

    // The standby is not a command: List shows only what was run.
    let standby = wait_for_standby(&warm, &[]).await;
    let list = warm_client.list(ListRequest {}).await.expect("list").into_inner();
    assert_eq!(list.commands.len(), runs);
    assert!(list.commands.iter().all(|c| c.pid != standby && !c.running), "{list:?}");
    assert!(standby_shells(cold.pid()).is_empty(), "--standby-shell false still started one");
}

/// Age in ms of the shell running `AGE`, from its output.
const AGE: &str = "echo $(cut -d' ' -f22 /proc/$$/stat) $(cut -d' ' -f1 /proc/uptime) $(getconf CLK_TCK || echo 100)";

async fn shell_age_after_a_pause(agent: &Agent) -> f64 {
    let mut client = agent.client().await;
    assert_eq!(run(&mut client, "true").await.end().exit_code, 0);
    // A standby started after that command is at least this old when the next one comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = run(&mut client, AGE).await;
    let fields: Vec<f64> = got.stdout_str().split_whitespace().map(|f| f.parse().expect("a number")).collect();
    let [started_ticks, uptime_s, ticks_per_s] = fields[..] else { panic!("unexpected output {:?}", got.stdout_str()) };
    uptime_s * 1000.0 - started_ticks * 1000.0 / ticks_per_s
}

#[tokio::test]
async fn the_standby_shell_is_really_used_and_the_flag_turns_it_off() {
    let warm = Agent::start(&[]);
    let age = shell_age_after_a_pause(&warm).await;
    assert!(age > 300.0, "the command's shell is {age} ms old: it was started for it, not waiting");

    let cold = Agent::start(&["--standby-shell", "false"]);
    let age = shell_age_after_a_pause(&cold).await;
    assert!(age < 300.0, "with --standby-shell false the shell is {age} ms old");
    assert!(standby_shells(cold.pid()).is_empty());

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_sandstream-agent")).arg("--help").output().expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for text in
        ["--standby-shell <STANDBY_SHELL>", "[env: SANDSTREAM_AGENT_STANDBY_SHELL=]", "[default: true]", "true, false"]
    {
        assert!(help.contains(text), "--help lacks {text}: {help}");
    }
}

#[tokio::test]
async fn a_standby_shell_killed_from_inside_the_sandbox_is_replaced() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    let first = wait_for_standby(&agent, &[]).await;
    // Run by `first`, the command waits for the next standby (the agent's other child
    // running the bootstrap) and kills it.
    let killer = "for i in $(seq 250); do s=$(pgrep -P $PPID -f __ss_f | grep -vx $$); [ -n \"$s\" ] && break; \
                  sleep 0.02; done; kill -9 $s && echo \"killed $s\"";
    let got = run(&mut client, killer).await;
    assert_eq!(started_pid(&got), first);
    assert_eq!(got.end().exit_code, 0, "stderr: {}", got.stderr_str());
    let victim: u32 =
        got.stdout_str().trim().strip_prefix("killed ").and_then(|p| p.parse().ok()).expect("the killed pid");

    // The next command finds it dead, or still dying when the CPU is busy (the kill is
    // pending), and runs in a new shell, correctly.
    let got = run(&mut client, "echo after; echo e >&2; exit 5").await;
    assert_ne!(started_pid(&got), victim, "{got:?}");
    assert_eq!((got.stdout_str().as_str(), got.stderr_str().as_str(), got.end().exit_code), ("after\n", "e\n", 5));

    // A new standby replaces it and runs the one after.
    let next = wait_for_standby(&agent, &[victim]).await;
    let got = run(&mut client, "echo again; exit 6").await;
    assert_eq!(started_pid(&got), next);
    assert_eq!((got.stdout_str().as_str(), got.end().exit_code), ("again\n", 6));
}

#[tokio::test]
async fn env_cwd_and_long_commands_start_cold_and_a_timeout_kills_the_standby_group() {
    let agent = Agent::start(&[]);
    let mut client = agent.client().await;
    std::fs::create_dir(agent.workdir().join("sub")).expect("mkdir");
    let standby = wait_for_standby(&agent, &[]).await;

    let mut req = bytes_request("pwd; echo \"$GREETING\"");
    req.env.insert("GREETING".into(), "héllo".into());
    let got = execute(&mut client, req).await;
    assert_eq!(got.stdout_str(), format!("{}\nhéllo\n", agent.workdir().display()));
    assert_ne!(started_pid(&got), standby);

    let mut req = bytes_request("pwd");
    req.cwd = "sub".into();
    let got = execute(&mut client, req).await;
    assert_eq!(got.stdout_str(), format!("{}\n", agent.workdir().join("sub").display()));
    assert_ne!(started_pid(&got), standby);

    let long = format!(": {}; echo long", "x".repeat(70_000));
    let got = run(&mut client, &long).await;
    assert_eq!(got.stdout_str(), "long\n");
    assert_ne!(started_pid(&got), standby);
    // None of them took it.
    assert_eq!(standby_shells(agent.pid()), vec![standby]);

    // A timeout kills the whole group of a standby-served command: bash, sh and both sleeps.
    let (pgid, _) = timeout_kills_the_group(&mut client, 4).await;
    assert_eq!(pgid, standby, "the standby ran it");
}

/// Runs `program` (which prints "ready") on `agent`, sends it `signals`, and returns what
/// the command stream delivered (after a SIGKILL if it was still running 300 ms later).
async fn signalled(agent: &Agent, program: &str, signals: &[i32]) -> (Collected, bool) {
    let mut client = agent.client().await;
    let mut stream = client.execute(bytes_request(program)).await.expect("execute").into_inner();
    let mut got = Collected::default();
    while got.stdout != b"ready\n" {
        got.push(stream.next().await.expect("output").expect("ok"));
    }
    let id = got.events[0].command_id.clone();
    for &signal in signals {
        client.signal(SignalRequest { command_id: id.clone(), signal }).await.expect("signal");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = client.list(ListRequest {}).await.expect("list").into_inner();
    let running = list.commands.iter().any(|c| c.command_id == id && c.running);
    if running {
        client.signal(SignalRequest { command_id: id, signal: 9 }).await.expect("kill");
    }
    while let Some(msg) = stream.next().await {
        got.push(msg.expect("ok"));
    }
    (got, running)
}

#[tokio::test]
async fn signals_reach_the_program_of_a_standby_served_command_as_under_a_cold_shell() {
    let warm = Agent::start(&[]);
    let cold = Agent::start(&["--standby-shell", "false"]);
    // A program that ignores TERM and HUP keeps running, in both; a cold `bash -c` exec'd
    // it, and the standby shell waits for it instead of dying of the signals.
    let ignores = "sh -c 'trap \"\" TERM HUP; echo ready; while :; do sleep 0.05; done'";
    let standby = wait_for_standby(&warm, &[]).await;
    for (agent, served_by) in [(&warm, Some(standby)), (&cold, None)] {
        let (got, running) = signalled(agent, ignores, &[15, 1]).await;
        assert!(running, "the command ended although its program ignores the signals: {:?}", got.end());
        assert_eq!((got.end().status, got.end().signal), (ExitStatus::Signaled as i32, 9));
        if let Some(standby) = served_by {
            assert_eq!(started_pid(&got), standby);
        }
    }
    // A program that handles TERM finishes its work in both. The documented difference:
    // the standby shell then dies of TERM, where the cold command reports the program's
    // own exit status.
    let handles = "sh -c 'trap \"echo bye; exit 0\" TERM; echo ready; while :; do sleep 0.05; done'";
    let (got, running) = signalled(&warm, handles, &[15]).await;
    assert!(!running);
    assert_eq!(got.stdout_str(), "ready\nbye\n");
    assert_eq!((got.end().status, got.end().signal, got.end().exit_code), (ExitStatus::Signaled as i32, 15, 143));
    let (got, running) = signalled(&cold, handles, &[15]).await;
    assert!(!running);
    assert_eq!(got.stdout_str(), "ready\nbye\n");
    assert_eq!((got.end().status, got.end().exit_code), (ExitStatus::Exited as i32, 0));
}

#[tokio::test]
async fn graceful_shutdown_leaves_no_standby_shell_behind() {
    // A standby the agent left behind would become this process's child when the agent
    // exits (and then exit by itself, reading end-of-file); one the agent killed and
    // reaped never does.
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    let mut agent = Agent::start(&["--shutdown-grace-ms", "2000"]);
    let first = wait_for_standby(&agent, &[]).await;
    let mut client = agent.client().await;
    // Run by `first`, a command that ignores SIGTERM keeps the agent shutting down for
    // the whole grace; the standby started after it must be gone long before.
    let stubborn = client.start(bytes_request("trap '' TERM; sleep 30")).await.expect("start").into_inner();
    assert_eq!(stubborn.pid, first);
    let standby = wait_for_standby(&agent, &[first]).await;
    let agent_pid = agent.pid();
    agent.send_sigterm();
    let deadline = Instant::now() + Duration::from_secs(1);
    while runs_bootstrap(standby) {
        assert!(Instant::now() < deadline, "the standby shell {standby} still runs 1 s into the shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(std::path::Path::new(&format!("/proc/{agent_pid}")).exists(), "the agent should still be in its grace");
    drop(client);
    let status = tokio::task::spawn_blocking(move || agent.wait()).await.expect("join");
    assert!(status.success(), "agent exit status {status:?}");
    let reaped = waitpid(nix::unistd::Pid::from_raw(standby as i32), Some(WaitPidFlag::WNOHANG));
    assert_eq!(reaped, Err(nix::errno::Errno::ECHILD), "the agent left its standby shell {standby} behind");
    assert!(group_members(standby).is_empty() && group_members(first).is_empty());
    assert!(standby_shells(agent_pid).is_empty());
}

#[tokio::test]
async fn a_standby_shell_exits_125_by_itself_when_the_agent_dies() {
    // The dead agent's children become this process's, so it can read the exit status.
    nix::sys::prctl::set_child_subreaper(true).expect("subreaper");
    let mut agent = Agent::start(&[]);
    let standby = wait_for_standby(&agent, &[]).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.pid() as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill agent");
    let _ = agent.wait();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match waitpid(nix::unistd::Pid::from_raw(standby as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                assert!(Instant::now() < deadline, "the standby shell outlived the agent by 5 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(WaitStatus::Exited(_, code)) => {
                assert_eq!(code, 125, "it read end-of-file before a command");
                break;
            }
            other => panic!("unexpected wait result {other:?}"),
        }
    }
}
