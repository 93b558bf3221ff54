//! The OCI runtime's command line, behind [`OciCli`]: the four calls the `oci` backend
//! makes (`run --detach`, `state`, `kill`, `delete --force`), which runc, crun, runsc
//! and youki all take. [`Binary`] runs the configured binary; the tests' recording
//! double is in `fake.rs`. Containers live in the binary's default state root (runc's
//! `/run/runc`): no `--root` is passed.

use std::fmt::Debug;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::host::{run, run_quiet};

/// What the `oci` backend asks of the OCI runtime. Each call names the container by the
/// sandbox's id.
pub(crate) trait OciCli: Send + Sync + Debug {
    /// Creates and starts the container of bundle directory `bundle` in one process
    /// (`run --detach`: one fork of the runtime instead of `create` and `start`), its
    /// init's pid written to `pid_file`. `log` is made anew and gets the runtime's
    /// stdout and stderr, which it hands over to the container's init (the agent); a
    /// failure's error carries what the log holds.
    fn run(&self, id: &str, bundle: &Path, pid_file: &Path, log: &Path) -> Result<()>;
    /// The container's state, as the runtime's JSON (`status` is `running` for a live
    /// one); an error for a container the runtime does not know.
    fn state(&self, id: &str) -> Result<String>;
    /// Sends SIGKILL to the container's init. Best effort: a failure is logged.
    fn kill(&self, id: &str);
    /// Deletes the container, stopping it first if need be (`delete --force`); its
    /// cgroup and the runtime's state for it go with it. Best effort: a failure is
    /// logged.
    fn delete(&self, id: &str);
}

/// Whether `state` (the JSON [`OciCli::state`] gives) is that of a running container.
pub(crate) fn is_running(state: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(state)
        .is_ok_and(|s| s.get("status").and_then(|s| s.as_str()) == Some("running"))
}

/// The OCI runtime binary at `path` (a name is looked up in `PATH`).
#[derive(Debug)]
pub(crate) struct Binary {
    path: PathBuf,
}

impl Binary {
    pub(crate) fn new(path: PathBuf) -> Binary {
        Binary { path }
    }

    /// Its name in error messages.
    fn name(&self) -> &str {
        self.path.to_str().unwrap_or("runc")
    }
}

impl OciCli for Binary {
    fn run(&self, id: &str, bundle: &Path, pid_file: &Path, log: &Path) -> Result<()> {
        let out = File::create(log).map_err(|e| Error::io(format!("create {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io(format!("open {}", log.display()), e))?;
        // Not /dev/null: crun hands the init its stdio by chowning each to root inside
        // the sandbox (runc skips /dev/null), which gave the host's own /dev/null to the
        // mapped root of every sandbox, free to chmod it for the whole host. An empty
        // pipe reads end-of-file as /dev/null does.
        let (stdin, _) = std::io::pipe().map_err(|e| Error::io("create the runtime's stdin", e))?;
        let status = Command::new(&self.path)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(stdin)
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| Error::Command { command: format!("{} run", self.name()), detail: e.to_string() })?;
        if !status.success() {
            let detail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(Error::Command { command: format!("{} run --detach {id}", self.name()), detail });
        }
        Ok(())
    }

    fn state(&self, id: &str) -> Result<String> {
        run(self.name(), &["state", id])
    }

    fn kill(&self, id: &str) {
        run_quiet(self.name(), &["kill", id, "KILL"]);
    }

    fn delete(&self, id: &str) {
        run_quiet(self.name(), &["delete", "--force", id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in OCI runtime: a script that appends its arguments to `args`, says
    /// something on stdout and stderr, and exits with `exit`.
    fn script(dir: &Path, exit: i32) -> PathBuf {
        let path = dir.join("fake-runtime");
        let body = format!(
            "#!/bin/sh\necho \"$@\" >> {}\necho 'runtime says hello'\necho 'runtime complains' >&2\nexit {exit}\n",
            dir.join("args").display()
        );
        std::fs::write(&path, body).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn the_binary_gets_each_call_s_arguments_and_its_output_goes_to_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = Binary::new(script(dir.path(), 0));
        let (bundle, pid, log) = (dir.path().join("sb"), dir.path().join("sb/pid"), dir.path().join("agent.log"));
        std::fs::write(&log, "an earlier run's log").expect("write");
        bin.run("sb-0123456789", &bundle, &pid, &log).expect("run");
        bin.kill("sb-0123456789");
        bin.delete("sb-0123456789");
        let state = bin.state("sb-0123456789").expect("state");
        assert_eq!(state, "runtime says hello\n", "state is the runtime's stdout");
        let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
        let want = format!(
            "run --detach --bundle {} --pid-file {} sb-0123456789\nkill sb-0123456789 KILL\n\
             delete --force sb-0123456789\nstate sb-0123456789\n",
            bundle.display(),
            pid.display()
        );
        assert_eq!(args, want);
        let logged = std::fs::read_to_string(&log).expect("log");
        assert_eq!(logged, "runtime says hello\nruntime complains\n", "the log is made anew");
    }

    #[test]
    fn a_failed_run_says_which_container_and_what_the_runtime_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = Binary::new(script(dir.path(), 1));
        let log = dir.path().join("agent.log");
        let err = bin.run("sb-0123456789", dir.path(), &dir.path().join("pid"), &log).expect_err("exit 1");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("`{} run --detach sb-0123456789` failed: ", bin.name())), "{shown}");
        assert!(shown.contains("runtime complains"), "{shown}");
        assert!(bin.state("sb-0123456789").is_err(), "a failing state is an error");
    }

    #[test]
    fn only_a_running_status_counts_as_running() {
        assert!(is_running(r#"{"ociVersion":"1.0.2","id":"sb-1","pid":42,"status":"running"}"#));
        assert!(!is_running(r#"{"id":"sb-1","status":"stopped"}"#));
        assert!(!is_running("not json"));
    }
}
