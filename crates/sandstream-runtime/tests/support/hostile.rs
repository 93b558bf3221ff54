//! `hostile.c`, built static and put in a busybox template: the attacks busybox cannot
//! make (directories nested past PATH_MAX, io_uring, AF_VSOCK, personality flags).

use std::path::{Path, PathBuf};

/// Builds `hostile.c` with `gcc -static` into `dir` and copies it to `template`'s
/// `/bin/hostile`; returns the copy's path on the host.
pub fn install(dir: &Path, template: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/hostile.c");
    let built = dir.join("hostile");
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&built)
        .arg(&source)
        .output()
        .expect("gcc runs (scripts/setup.sh installs it)");
    assert!(out.status.success(), "gcc -static hostile.c: {}", String::from_utf8_lossy(&out.stderr));
    let installed = template.join("bin/hostile");
    std::fs::copy(&built, &installed).expect("copy hostile into the template");
    std::fs::set_permissions(&installed, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    installed
}

/// What `hostile seccomp` prints once the filter refuses io_uring, AF_VSOCK and every
/// personality value but those Docker's default profile allows, while AF_INET sockets
/// and the allowed personality values (0xffffffff only asks) still work.
pub const SECCOMP_REFUSED: &str = "io_uring_setup EPERM\nio_uring_enter EPERM\nio_uring_register EPERM\nvsock EPERM\n\
inet ok\n\
personality 0x0 ok\npersonality 0x8 ok\npersonality 0x20000 ok\npersonality 0x20008 ok\npersonality 0xffffffff ok\n\
personality 0x40000 EPERM\npersonality 0x400000 EPERM\npersonality 0x1 EPERM\npersonality 0x100000008 EPERM\n";

