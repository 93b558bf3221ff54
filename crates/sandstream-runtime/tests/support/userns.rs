//! Root inside an `oci` sandbox, for the tests of its user namespace: commands made root
//! by `asroot.c` (setuid root in the test template), keeping the agent's privileges,
//! until the agent's requests can name their user; and the host's view of the files a
//! sandbox makes.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::Out;

/// The OCI runtime binary under test: SANDSTREAM_OCI_RUNTIME, or runc.
pub fn oci_runtime() -> String {
    std::env::var("SANDSTREAM_OCI_RUNTIME").unwrap_or_else(|_| "runc".into())
}

/// Builds `asroot.c` and installs it setuid root in `template`'s `/bin/asroot`.
pub fn install_asroot(dir: &std::path::Path, template: &std::path::Path) {
    let installed = super::install_static_c("asroot", dir, template);
    std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).expect("chmod");
}

/// Runs `script` (`sh`) as root inside `sb` (a template with `asroot`), through the
/// agent as every command runs: exit code, stdout and stderr.
pub async fn as_root(sb: &sandstream_runtime::Sandbox, script: &str) -> Out {
    let command = format!("/bin/asroot /bin/sh <<'SANDSTREAM_EOF'\n{script}\nSANDSTREAM_EOF");
    super::exec_with_token(sb.agent_addr, &sb.token, &command, 120_000).await.expect("execute in sandbox")
}

/// Path `inside` of the sandbox whose init is host process `init_pid`, as the host
/// reaches it (through the init's root).
pub fn host_path(init_pid: u32, inside: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{init_pid}/root{inside}"))
}

/// The owner (uid, gid) the host sees on `path`, links not followed.
pub fn host_owner(path: &std::path::Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (md.uid(), md.gid())
}

/// The host pid of the init of container `id`, from the OCI runtime's state.
pub fn init_pid(id: &str) -> u32 {
    let out = std::process::Command::new(oci_runtime()).args(["state", id]).output().expect("runtime state");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state json");
    u32::try_from(state["pid"].as_u64().expect("pid")).expect("pid")
}
