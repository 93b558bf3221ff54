//! The static agent runs in a root filesystem with no libc at all: a chroot holding
//! only the agent and a static busybox as /bin/sh. Needs root (chroot) and the binary
//! from scripts/build-agent.sh, named by SANDSTREAM_STATIC_AGENT; scripts/test.sh
//! provides both, and under CI a missing one fails the test rather than skipping it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;

fn static_agent() -> Option<PathBuf> {
    match std::env::var_os("SANDSTREAM_STATIC_AGENT") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => panic!("SANDSTREAM_STATIC_AGENT is not set; run scripts/test.sh"),
        None => {
            eprintln!("skipped: SANDSTREAM_STATIC_AGENT is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// True when the ELF file has a PT_INTERP header, i.e. needs a dynamic loader.
fn has_interpreter(path: &Path) -> bool {
    let elf = std::fs::read(path).expect("read agent");
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| u32::from_le_bytes(elf[phoff + i * phentsize..][..4].try_into().expect("4 bytes")) == 3)
}

#[tokio::test]
async fn the_static_agent_serves_from_a_rootfs_without_libc() {
    let Some(agent) = static_agent() else { return };
    assert!(!has_interpreter(&agent), "{} is dynamically linked", agent.display());
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (chroot)");

    let root = tempfile::tempdir().expect("tempdir");
    for d in ["bin", "work", "spool"] {
        std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.path().join("bin/busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", root.path().join("bin/sh")).expect("symlink");
    std::fs::copy(&agent, root.path().join("sandstream-agent")).expect("copy agent");
    let libs: Vec<_> = ["lib", "lib64", "usr"].iter().filter(|d| root.path().join(d).exists()).collect();
    assert!(libs.is_empty(), "the rootfs must hold no libraries");

    let mut child = // env_clear also clears PATH for the lookup, so name chroot in full.
    std::process::Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/sandstream-agent", "--listen", "127.0.0.1:0", "--spool-dir", "/spool", "--workdir", "/work"])
        .env_clear()
        .env("SANDSTREAM_AGENT_TOKEN", TOKEN)
        .env("SANDSTREAM_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("chroot");
    let addr = read_listen_line(&mut child);
    let _agent = KillOnDrop(child);
    let mut client = client_with_token(addr, TOKEN).await;
    let got = run(&mut client, "echo \"static $0 in $PWD\"; echo e >&2; exit 7").await;
    assert_eq!(got.stdout_str(), "static /bin/sh in /work\n");
    assert_eq!(got.stderr_str(), "e\n");
    assert_eq!(got.end().exit_code, 7);
}
