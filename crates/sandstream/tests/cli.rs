//! The `sandstream` command line as a user meets it.

use std::process::Command;

fn sandstream() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sandstream"));
    c.env_remove("SANDSTREAM_AGENT_TOKEN").env_remove("SANDSTREAM_AGENT_TOKEN_FILE");
    c
}

#[test]
fn help_lists_the_subcommands() {
    let out = sandstream().arg("--help").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("agent"), "{text}");
    let out = sandstream().args(["agent", "--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in
        ["--listen", "--token-file", "--spool-dir", "--output-cap-bytes", "--run-as", "[default: 0.0.0.0:50052]"]
    {
        assert!(text.contains(flag), "agent --help lacks {flag}: {text}");
    }
}

#[test]
fn runner_disk_flags_are_listed_and_checked_before_anything_starts() {
    let out = sandstream().args(["runner", "--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--default-disk-mb", "[default: 10240]", "--max-disk-mb", "[default: 51200]"] {
        assert!(text.contains(flag), "runner --help lacks {flag}: {text}");
    }
    for cmd in [&["runner", "--server", "http://127.0.0.1:9", "--secret", "s"][..], &["up"]] {
        let out = sandstream()
            .args(cmd)
            .args(["--default-disk-mb", "20000", "--max-disk-mb", "10000", "--listen", "127.0.0.1:1"])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("diskMb must be between 16 and 10000, got 20000"), "{cmd:?}: {err}");
    }
}

#[test]
fn bad_agent_config_exits_2_before_binding_anything() {
    // Port 1 would need privileges to bind as non-root, and nothing must be bound at all:
    // the error comes from validation first.
    let out = sandstream().args(["agent", "--listen", "127.0.0.1:1"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no sandbox token"), "{err}");
    let out = sandstream().args(["agent", "--token", "0123456789abcdef0", "--run-as", "nobody"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--run-as takes UID:GID"));
    let out = sandstream().args(["agent", "--listen", "not-an-address"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'not-an-address'"));
}

#[test]
fn runner_flow_bound_is_listed_and_checked_before_anything_starts() {
    let out = sandstream().args(["runner", "--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--max-flows-per-sandbox", "[default: 4096]"] {
        assert!(text.contains(flag), "runner --help lacks {flag}: {text}");
    }
    for value in ["0", "1000001"] {
        let out = sandstream()
            .args(["up", "--max-flows-per-sandbox", value, "--listen", "127.0.0.1:1"])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--max-flows-per-sandbox") && err.contains("1..=1000000"), "{value}: {err}");
    }
}

#[test]
fn cp_help_says_both_directions_and_its_flags() {
    let out = sandstream().args(["cp", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for said in [
        "LOCAL SANDBOX:PATH",
        "SANDBOX:PATH LOCAL",
        "<SRC>",
        "<DEST>",
        "--server",
        "--api-key",
        "--user",
        "SANDSTREAM_API_URL",
    ] {
        assert!(text.contains(said), "cp --help lacks {said}: {text}");
    }
    let out = sandstream().args(["server", "--help"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--max-file-upload-bytes") && text.contains("[default: 4294967296]"), "{text}");
}

#[test]
fn cp_fails_clearly_and_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = sandstream()
            .args(["cp", "--api-key", "k", "--server", "http://127.0.0.1:9"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("run");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(&["a", "b"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("neither a nor b names a sandbox: one must be SANDBOX:PATH"), "{err}");
    let (code, err) = run(&["sb-0123456789:/x", "sb-0123456789:/y"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("both ends are in sandboxes"), "{err}");
    let (code, err) = run(&["sb-0123456789:/x", "here"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("reach http://127.0.0.1:9"), "{err}");
    assert!(!dir.path().join("here").exists());
}

#[test]
fn sandbox_help_says_what_each_command_prints() {
    let help = |args: &[&str]| {
        let out = sandstream().args(args).arg("--help").output().expect("run");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = help(&["sandbox"]);
    for said in ["create", "list", "kill", "SANDSTREAM_API_URL", "SANDSTREAM_API_KEY", "--server", "--api-key"] {
        assert!(text.contains(said), "sandbox --help lacks {said}: {text}");
    }
    let text = help(&["sandbox", "create"]);
    for said in ["prints its id alone on stdout", "--template", "--timeout <SECS>", "--cpu", "--memory-mb", "--disk-mb"]
    {
        assert!(text.contains(said), "sandbox create --help lacks {said}: {text}");
    }
    assert!(text.contains("--env <K=V>") && text.contains("--metadata <K=V>"), "{text}");
    let text = help(&["sandbox", "list"]);
    for said in ["ID, TEMPLATE, STATE", "--json"] {
        assert!(text.contains(said), "sandbox list --help lacks {said}: {text}");
    }
    let text = help(&["sandbox", "kill"]);
    for said in ["<ID>...", "Exits 1 when any could not be killed"] {
        assert!(text.contains(said), "sandbox kill --help lacks {said}: {text}");
    }
}

#[test]
fn exec_help_says_its_exit_codes_and_flags() {
    let out = sandstream().args(["exec", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for said in [
        "sandstream exec ID -- CMD…",
        "Usage: sandstream exec [OPTIONS] <ID> <CMD>...",
        "exits with its exit code",
        "128+N",
        "124 when --timeout did",
        "125 when sandstream could not run",
        "Ctrl-C (SIGINT)",
        "a second one kills it",
        "One argument is a shell line",
        "--cwd <CWD>",
        "--env <K=V>",
        "--user <USER>",
        "--timeout <SECS>",
        "-i, --interactive",
        "--server",
        "--api-key",
        "SANDSTREAM_API_URL",
    ] {
        assert!(text.contains(said), "exec --help lacks {said}: {text}");
    }
}

#[test]
fn shell_help_says_raw_mode_resizes_and_exit_codes() {
    let out = sandstream().args(["shell", "--help"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for said in [
        "sandstream shell ID [-- CMD…]",
        "Usage: sandstream shell [OPTIONS] <ID> [CMD]...",
        "login shell",
        "80x24 when there is none",
        "TERM from this environment",
        "raw mode",
        "its settings come back",
        "its end closes nothing",
        "SIGWINCH",
        "resumed without losing or repeating output",
        "Exits with the shell's exit code (128+N",
        "125 when sandstream could not start it",
        "--cwd <CWD>",
        "--env <K=V>",
        "--user <USER>",
        "--server",
        "--api-key",
        "SANDSTREAM_API_URL",
    ] {
        assert!(text.contains(said), "shell --help lacks {said}: {text}");
    }
}

#[test]
fn user_commands_fail_with_one_line_and_their_exit_codes() {
    let run = |args: &[&str]| {
        let out = sandstream()
            .args(args)
            .env("SANDSTREAM_API_URL", "http://127.0.0.1:9")
            .env("SANDSTREAM_API_KEY", "k")
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [&["sandbox", "list"][..], &["sandbox", "create"], &["sandbox", "kill", "sb-0123456789"]] {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert_eq!(out, "", "{args:?}");
        assert!(err.contains("reach http://127.0.0.1:9"), "{args:?}: {err}");
    }
    // Nothing ran: 125, never an exit code a command could have given.
    let (code, out, err) = run(&["exec", "sb-0123456789", "--", "true"]);
    assert_eq!((code, out.as_str()), (Some(125), ""), "{err}");
    assert!(err.starts_with("sandstream: reach http://127.0.0.1:9") && err.lines().count() == 1, "{err}");
    let (code, _, err) = run(&["exec", "sb-0123456789"]);
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("<CMD>..."), "{err}");
    let (code, out, err) = run(&["shell", "sb-0123456789"]);
    assert_eq!((code, out.as_str()), (Some(125), ""), "{err}");
    assert!(err.starts_with("sandstream: reach http://127.0.0.1:9") && err.lines().count() == 1, "{err}");
    let (code, _, err) = run(&["shell", "--no-such-flag", "sb-0123456789"]);
    assert_eq!(code, Some(125), "{err}");
    let (code, _, err) = run(&["sandbox", "kill"]);
    assert_eq!(code, Some(2), "{err}");
}
