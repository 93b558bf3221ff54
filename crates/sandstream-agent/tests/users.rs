//! The request's `user`: the agent (root here, as in a sandbox) runs each command as the
//! user it names, resolved in /etc/passwd and /etc/group, with that user's groups, home
//! and variables; an unknown name runs nothing. The agent runs in a mount namespace of
//! its own where both files are the test's, so the host's are neither read nor changed.

mod common;

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use common::*;
use nix::libc;
use sandstream_proto::v1::{ExecuteRequest, ListRequest};
use tonic::Code;

/// An agent running as root with `--run-as 65534:65534` (the default user), seeing the
/// test's passwd and group files.
struct Users {
    agent: Agent,
    files: tempfile::TempDir,
}

const GROUP: &str = "root:x:0:\ndev:x:1500:\ndocker:x:2001:other,dev\naudio:x:2002:dev\nbroken:x:\nempty:x:2003:\n";

impl Users {
    fn start(env: &[(&str, &str)]) -> Users {
        Users::start_with(env, false)
    }

    /// With `fifo_passwd`, the agent's /etc/passwd is a FIFO (as root inside a sandbox
    /// could make it), which a plain open would block on.
    fn start_with(env: &[(&str, &str)], fifo_passwd: bool) -> Users {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root (user switching, a mount namespace)");
        let files = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(files.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let home = files.path().join("devhome");
        std::fs::create_dir_all(home.join("sub")).expect("home");
        for dir in [&home, &home.join("sub")] {
            std::os::unix::fs::chown(dir, Some(1234), Some(1500)).expect("chown");
        }
        let passwd = files.path().join("passwd");
        let group = files.path().join("group");
        std::fs::write(&group, GROUP).expect("group");
        if fifo_passwd {
            nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
        } else {
            Users::write_passwd(&passwd, &home, None);
        }
        let cstr = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        let (passwd_c, group_c) = (cstr(&passwd), cstr(&group));
        let agent = Agent::start_customized(
            PathBuf::from(env!("CARGO_BIN_EXE_sandstream-agent")),
            &["--run-as", "65534:65534"],
            env,
            move |cmd| {
                if fifo_passwd {
                    // Whatever the test's own environment holds: bash without SHELL
                    // looks itself up in /etc/passwd at start and would block on the FIFO.
                    cmd.env_remove("SHELL");
                }
                // SAFETY: in the forked child before exec: system calls on strings
                // prepared beforehand. A private mount namespace, so the binds over
                // /etc/passwd and /etc/group are the agent's alone.
                unsafe {
                    cmd.pre_exec(move || {
                        let fail = || Err(std::io::Error::last_os_error());
                        if libc::unshare(libc::CLONE_NEWNS) != 0 {
                            return fail();
                        }
                        let none = std::ptr::null();
                        if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none.cast()) != 0 {
                            return fail();
                        }
                        for (src, dst) in [(&passwd_c, c"/etc/passwd"), (&group_c, c"/etc/group")] {
                            if libc::mount(src.as_ptr(), dst.as_ptr(), none, libc::MS_BIND, none.cast()) != 0 {
                                return fail();
                            }
                        }
                        Ok(())
                    });
                }
            },
        );
        for dir in [agent.dir.path().to_path_buf(), agent.workdir()] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let users = Users { agent, files };
        if !fifo_passwd {
            // `work`, whose home is the agent's workdir, known only now (the file is the
            // same inode the agent sees, rewritten in place).
            Users::write_passwd(&users.files.path().join("passwd"), &users.home(), Some(&users.agent.workdir()));
        }
        users
    }

    fn write_passwd(path: &Path, home: &Path, work: Option<&Path>) {
        let mut text = format!(
            "root:x:0:0:root:/root:/bin/bash\nthis line is malformed\ndev:x:1234:1500:Dev:{}:/bin/sh\n",
            home.display()
        );
        if let Some(work) = work {
            text.push_str(&format!("work:x:1235:1235::{}:/bin/sh\n", work.display()));
        }
        std::fs::write(path, text).expect("passwd");
    }

    fn home(&self) -> PathBuf {
        self.files.path().join("devhome")
    }
}

fn as_user(user: &str, command: &str) -> ExecuteRequest {
    ExecuteRequest { user: user.into(), ..bytes_request(command) }
}

const WHO: &str = "id -u; id -g; awk '/^Groups:/ { $1 = \"\"; print \"groups\" $0 }' /proc/self/status; \
                   echo \"$HOME $USER $LOGNAME\"; pwd";

/// What [`WHO`] prints.
fn who(uid: u32, gid: u32, groups: &str, vars: &str, cwd: &Path) -> String {
    format!("{uid}\n{gid}\ngroups{groups}\n{vars}\n{}\n", cwd.display())
}

#[tokio::test]
async fn commands_run_as_the_named_user_with_its_groups_home_and_variables() {
    user_field(&[]).await;
}

#[tokio::test]
async fn commands_started_with_fork_run_as_the_named_user_the_same() {
    user_field(&[("SANDSTREAM_AGENT_SPAWN", "fork")]).await;
}

async fn user_field(env: &[(&str, &str)]) {
    let users = Users::start(env);
    let mut client = users.agent.client().await;
    let home = users.home();
    let got = |c: &Collected| (c.stdout_str(), c.stderr_str(), c.end().exit_code);

    // By name and by uid: the passwd ids, the groups that list it, its home as cwd.
    let dev = who(1234, 1500, " 1500 2001 2002", &format!("{} dev dev", home.display()), &home);
    for user in ["dev", "1234"] {
        assert_eq!(got(&execute(&mut client, as_user(user, WHO)).await), (dev.clone(), String::new(), 0), "{user}");
    }
    // A relative cwd resolves against its home; the request's env still wins.
    let mut req = as_user("dev", "pwd; echo $HOME");
    req.cwd = "sub".into();
    req.env.insert("HOME".into(), "/elsewhere".into());
    assert_eq!(got(&execute(&mut client, req).await).0, format!("{}/sub\n/elsewhere\n", home.display()));
    // Root: uid 0, its own home and variables.
    let root = execute(&mut client, as_user("root", "id -u; id -g; echo \"$HOME $USER $LOGNAME\"; pwd")).await;
    assert_eq!(got(&root), ("0\n0\n/root root root\n/root\n".into(), String::new(), 0));
    // A uid with no passwd entry: that uid and gid, no other group, home /, no name.
    let stranger = who(4242, 4242, " 4242", "/", Path::new("/"));
    let mut req = as_user("4242", WHO.replace("$USER $LOGNAME", "${USER-unset} ${LOGNAME-unset}").as_str());
    req.cwd = "/".into();
    assert_eq!(got(&execute(&mut client, req).await).0, stranger.replace("/\n/\n", "/ unset unset\n/\n"));

    // The positive control: no user is the --run-as default, with no group, as before.
    let default =
        run(&mut client, "id -u; id -g; awk '/^Groups:/ { $1 = \"\"; print \"groups\" $0 }' /proc/self/status; pwd")
            .await;
    assert_eq!(default.stdout_str(), format!("65534\n65534\ngroups\n{}\n", users.agent.workdir().display()));

    // `work`'s home is the workdir, so its commands would qualify for the standby shell
    // if the user were not looked at: the standby runs as the default user. Several in a
    // row, so one finds a standby waiting.
    for _ in 0..3 {
        assert_eq!(
            got(&execute(&mut client, as_user("work", "id -u; pwd")).await).0,
            format!("1235\n{}\n", users.agent.workdir().display())
        );
        assert_eq!(run(&mut client, "id -u").await.stdout_str(), "65534\n");
    }

    // List says who each ran as: the name, empty for the default user.
    let listed = client.list(ListRequest {}).await.expect("list").into_inner().commands;
    let by_user = |u: &str| listed.iter().filter(|c| c.user == u).count();
    assert_eq!((by_user("dev"), by_user("root"), by_user("4242"), by_user("work"), by_user("")), (3, 1, 1, 3, 4));
}

#[tokio::test]
async fn an_unknown_user_is_refused_by_name_and_nothing_runs() {
    let users = Users::start(&[]);
    let mut client = users.agent.client().await;
    let marker = users.home().join("ran");
    let touch = format!("touch {}", marker.display());
    for user in ["nosuch", "dev2", "-1", "4294967295", "de:v"] {
        let err = client.execute(as_user(user, &touch)).await.expect_err("unknown user");
        assert_eq!((err.code(), err.message()), (Code::InvalidArgument, format!("unknown user {user}").as_str()));
        let err = client.start(as_user(user, &touch)).await.expect_err("unknown user");
        assert_eq!((err.code(), err.message()), (Code::InvalidArgument, format!("unknown user {user}").as_str()));
    }
    let err = client.execute(as_user(&"x".repeat(300), &touch)).await.expect_err("long name");
    assert_eq!((err.code(), err.message()), (Code::InvalidArgument, "user name is longer than 256 bytes"));
    assert!(!marker.exists(), "a command ran for an unknown user");
    let listed = client.list(ListRequest {}).await.expect("list").into_inner().commands;
    assert!(listed.is_empty(), "{listed:?}");
    // The positive control: the same command as a known user runs.
    assert_eq!(execute(&mut client, as_user("dev", &touch)).await.end().exit_code, 0);
    assert!(marker.exists());
}

#[tokio::test]
async fn a_passwd_that_is_no_regular_file_fails_the_lookup_without_hanging_the_agent() {
    let users = Users::start_with(&[], true);
    let mut client = users.agent.client().await;
    let err = client.execute(as_user("dev", "true")).await.expect_err("fifo");
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, "cannot look up user dev: /etc/passwd is not a regular file")
    );
    // The agent still serves, and the default user's shell needs no lookup: the agent
    // gives commands SHELL, so bash does not read /etc/passwd to find it.
    let ran = tokio::time::timeout(std::time::Duration::from_secs(60), run(&mut client, "id -u; echo $SHELL"))
        .await
        .expect("the default user's command hung on the FIFO");
    assert_eq!(ran.stdout_str(), "65534\n/bin/bash\n");
}
