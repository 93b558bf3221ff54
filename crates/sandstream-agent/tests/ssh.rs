//! SSH into the agent with the stock OpenSSH clients (`ssh`, `scp`, `sftp`, `sshpass`;
//! scripts/setup.sh installs them): logins by password and by key from the access file,
//! remote commands with their exit codes and both streams, a terminal, file copies both
//! ways, local port forwarding, and every refusal. Runs as root (the login user is root:
//! the host has no `user`).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "correct-horse-battery-staple-0123456789";

struct Ssh {
    agent: Agent,
    access: PathBuf,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Ssh {
    /// An agent serving SSH, whose access file lets root in with [`PASSWORD`] for an hour.
    fn start() -> Ssh {
        let dir = tempfile::tempdir().expect("tempdir");
        let access = dir.keep().join("access");
        let ssh = |access: &Path| {
            Agent::start(&["--ssh-listen", "127.0.0.1:0", "--ssh-access-file", access.to_str().expect("utf-8")])
        };
        let s = Ssh { agent: ssh(&access), access };
        s.grant(&format!("password root {} {}\n", now_ms() + 3_600_000, sha256_hex(PASSWORD.as_bytes())));
        s
    }

    /// Replaces the access file (as the runtime does: a new file renamed into place).
    fn grant(&self, text: &str) {
        let tmp = self.access.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write access file");
        std::fs::rename(&tmp, &self.access).expect("rename access file");
    }

    fn port(&self) -> String {
        self.agent.ssh_addr.expect("ssh address").port().to_string()
    }

    /// OpenSSH's options for a test: no host key checks, no config of the machine's.
    fn options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=20",
        ]
        .map(String::from)
        .to_vec()
    }

    /// `ssh` with a password through sshpass.
    fn ssh_password(&self, password: &str, user: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("sshpass");
        cmd.args(["-p", password, "ssh"]).args(self.options()).args([
            "-o",
            "PubkeyAuthentication=no",
            "-p",
            &self.port(),
            &format!("{user}@127.0.0.1"),
        ]);
        cmd.args(args);
        cmd
    }

    fn ssh(&self, args: &[&str]) -> Command {
        self.ssh_password(PASSWORD, "root", args)
    }
}

fn output(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run an OpenSSH client")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_remote_command_runs_as_the_user_with_both_streams_and_its_exit_code() {
    let s = Ssh::start();
    let out = output(s.ssh(&["id -un; echo to-stderr >&2; exit 3"]));
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "root\n");
    assert_eq!(text(&out.stderr), "to-stderr\n");
    // Input reaches the command and its end closes the command's stdin.
    let mut cmd = s.ssh(&["wc -c; cat >/dev/null; echo done"]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("ssh");
    child.stdin.take().expect("stdin").write_all(&[7u8; 100_000]).expect("write");
    let out = child.wait_with_output().expect("ssh");
    assert_eq!(text(&out.stdout), "100000\ndone\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_terminal_session_has_a_pts_and_a_login_shell() {
    let s = Ssh::start();
    let out = output(s.ssh(&["-tt", "tty; echo cols=$(tput cols 2>/dev/null || stty size)"]));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("/dev/pts/"), "{stdout:?}");
    // Without -t there is no terminal.
    let out = output(s.ssh(&["tty"]));
    assert_eq!(text(&out.stdout), "not a tty\n");
    assert_eq!(out.status.code(), Some(1));
    // A shell with no command reads its commands from the channel.
    let mut child = s.ssh(&[]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("ssh");
    child.stdin.take().expect("stdin").write_all(b"echo $((6*7))\nexit 5\n").expect("write");
    let out = child.wait_with_output().expect("ssh");
    assert_eq!(text(&out.stdout), "42\n");
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn wrong_expired_revoked_and_unknown_credentials_are_refused() {
    let s = Ssh::start();
    // ssh fails with 255; sshpass says 5 when it sees the password asked for again.
    let denied = |out: Output, what: &str| {
        assert!(matches!(out.status.code(), Some(5 | 255)), "{what}: {:?} {}", out.status, text(&out.stderr));
        assert!(out.stdout.is_empty(), "{what}: ran something");
    };
    denied(output(s.ssh_password("wrong", "root", &["echo in"])), "wrong password");
    // The password is root's, not another user's.
    denied(output(s.ssh_password(PASSWORD, "nobody", &["echo in"])), "another user");
    // Expired.
    s.grant(&format!("password root {} {}\n", now_ms() - 1, sha256_hex(PASSWORD.as_bytes())));
    denied(output(s.ssh(&["echo in"])), "expired");
    // Revoked: the file no longer has it.
    s.grant("");
    denied(output(s.ssh(&["echo in"])), "revoked");
    // Positive control: granted again, it works at once, with no restart.
    s.grant(&format!("password root 0 {}\n", sha256_hex(PASSWORD.as_bytes())));
    let out = output(s.ssh(&["echo back"]));
    assert_eq!(text(&out.stdout), "back\n", "{}", text(&out.stderr));
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}

#[test]
fn a_listed_public_key_logs_in_and_another_does_not() {
    let s = Ssh::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, public) = keygen(dir.path(), "listed");
    let (stranger, _) = keygen(dir.path(), "stranger");
    s.grant(&format!("key root 0 {public}\n"));
    let with_key = |key: &Path| {
        let mut cmd = Command::new("ssh");
        cmd.args(s.options()).args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"]).arg(key).args([
            "-p",
            &s.port(),
            "root@127.0.0.1",
            "echo key works",
        ]);
        output(cmd)
    };
    let out = with_key(&key);
    assert_eq!(text(&out.stdout), "key works\n", "{}", text(&out.stderr));
    let out = with_key(&stranger);
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("Permission denied"), "{}", text(&out.stderr));
}

#[test]
fn scp_and_sftp_copy_files_both_ways_byte_for_byte() {
    let s = Ssh::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = vec![0u8; 20 << 20];
    getrandom::fill(&mut data).expect("random");
    let local = dir.path().join("up.bin");
    std::fs::write(&local, &data).expect("write");
    let remote = dir.path().join("remote.bin");
    let back = dir.path().join("back.bin");
    let scp = |from: &str, to: &str| {
        let mut cmd = Command::new("sshpass");
        cmd.args(["-p", PASSWORD, "scp"]).args(s.options()).args([
            "-o",
            "PubkeyAuthentication=no",
            "-P",
            &s.port(),
            from,
            to,
        ]);
        output(cmd)
    };
    let out = scp(local.to_str().expect("utf-8"), &format!("root@127.0.0.1:{}", remote.display()));
    assert_eq!(out.status.code(), Some(0), "scp up: {}", text(&out.stderr));
    assert_eq!(sha256_hex(&std::fs::read(&remote).expect("remote copy")), sha256_hex(&data));
    let out = scp(&format!("root@127.0.0.1:{}", remote.display()), back.to_str().expect("utf-8"));
    assert_eq!(out.status.code(), Some(0), "scp down: {}", text(&out.stderr));
    assert_eq!(sha256_hex(&std::fs::read(&back).expect("copy back")), sha256_hex(&data));

    // sftp with its commands on stdin (-b would forbid the password): put, then get.
    let via_sftp = dir.path().join("via-sftp.bin");
    let fetched = dir.path().join("fetched.bin");
    let commands =
        format!("put {} {}\nget {} {}\n", local.display(), via_sftp.display(), via_sftp.display(), fetched.display());
    let mut cmd = Command::new("sshpass");
    cmd.args(["-p", PASSWORD, "sftp"]).args(s.options()).args(["-o", "PubkeyAuthentication=no", "-P", &s.port()]);
    cmd.arg("root@127.0.0.1").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("sftp");
    child.stdin.take().expect("stdin").write_all(commands.as_bytes()).expect("commands");
    let out = child.wait_with_output().expect("sftp");
    assert_eq!(out.status.code(), Some(0), "sftp: {}", text(&out.stderr));
    assert_eq!(sha256_hex(&std::fs::read(&via_sftp).expect("put")), sha256_hex(&data));
    assert_eq!(sha256_hex(&std::fs::read(&fetched).expect("fetched")), sha256_hex(&data));
}

#[test]
fn local_forwarding_reaches_a_port_where_the_agent_runs() {
    let s = Ssh::start();
    // An echo server beside the agent (in a sandbox: inside the sandbox).
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = server.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let local = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let local_port = local.local_addr().expect("addr").port();
    drop(local);
    let forward = format!("{local_port}:127.0.0.1:{target}");
    let mut tunnel = s.ssh(&["-N", "-o", "ExitOnForwardFailure=yes", "-L", &forward]).spawn().expect("ssh -L");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", local_port)) {
            Ok(c) => break c,
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => panic!("the tunnel never opened: {e}"),
        }
    };
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
    conn.write_all(b"through the tunnel").expect("write");
    let mut got = [0u8; 18];
    conn.read_exact(&mut got).expect("echo");
    assert_eq!(&got, b"through the tunnel");
    // A port nothing listens on: the forwarded connection is refused and closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut tunnel2 = s.ssh(&["-N", "-L", &format!("{}:127.0.0.1:{closed}", local_port + 1)]).spawn().expect("ssh -L");
    std::thread::sleep(std::time::Duration::from_secs(1));
    if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", local_port + 1)) {
        c.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
        let mut buf = [0u8; 1];
        assert_eq!(c.read(&mut buf).unwrap_or(0), 0, "nothing answers through a refused forward");
    }
    let _ = tunnel.kill();
    let _ = tunnel2.kill();
    let _ = tunnel.wait();
    let _ = tunnel2.wait();
}

#[tokio::test]
async fn three_thousand_idle_connections_do_not_keep_a_real_login_out() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let dir = tempfile::tempdir().expect("tempdir");
    let access = dir.path().join("access");
    std::fs::write(&access, format!("password root 0 {}\n", sha256_hex(PASSWORD.as_bytes()))).expect("access");
    // The agent gets the descriptor limit runc gives a sandbox (1024, soft and hard).
    let extra = ["--ssh-listen", "127.0.0.1:0", "--ssh-access-file", access.to_str().expect("utf-8")];
    let mut agent =
        Agent::start_customized(PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")), &extra, &[], |cmd| {
            use std::os::unix::process::CommandExt;
            // SAFETY: in the forked child before exec; setrlimit is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).map_err(std::io::Error::from));
            }
        });
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let want = hard.max(16_384);
    setrlimit(Resource::RLIMIT_NOFILE, want, want).expect("raise the test's descriptor limit (needs root)");
    let ssh_addr = agent.ssh_addr.expect("ssh address");
    let mut idle = Vec::with_capacity(3000);
    for _ in 0..3000 {
        idle.push(tokio::net::TcpStream::connect(ssh_addr).await.expect("connect"));
    }
    let s = Ssh { agent, access };
    let t0 = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let out = output(s.ssh(&["echo still in"]));
        (out, s)
    });
    let (out, s) = tokio::time::timeout(std::time::Duration::from_secs(60), out)
        .await
        .expect("a real login must get through 3,000 idle connections")
        .expect("join");
    assert_eq!(text(&out.stdout), "still in\n", "{}", text(&out.stderr));
    eprintln!("logged in through 3,000 idle connections in {:?}", t0.elapsed());
    agent = s.agent;
    assert!(agent.try_wait().is_none(), "the agent died");
    drop(idle);
}
