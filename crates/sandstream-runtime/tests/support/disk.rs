//! Disk-limit checks shared by the backends' tests: what a user inside a sandbox with a
//! small disk sees when writing past it, and what the host pays.

use std::path::Path;

use sandstream_runtime::Sandbox;

use super::{Out, exec_with_token};

pub async fn sh(sb: &Sandbox, command: &str) -> Out {
    exec_with_token(sb.agent_addr, &sb.token, command, 60_000).await.expect("execute in sandbox")
}

/// Free bytes and free inodes of the filesystem holding `path`, for unprivileged users.
pub fn host_free(path: &Path) -> (u64, u64) {
    nix::unistd::sync();
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    (s.blocks_available() * s.fragment_size(), s.files_available())
}

/// `what` (a shell command that writes file `f` in /home/user) in `sb`, whose disk is
/// `limit_mb`: it fails with one of `errors` (ENOSPC, or EDQUOT) after writing at most
/// the limit. Its results go to the tmpfs /tmp: with the disk full, the agent cannot
/// spool a command's output either (the command runs, its END says the output was cut),
/// so they are read by a later command once `f` is removed. `while_full` runs on the
/// host in between. Returns the bytes `f` got.
pub async fn write_past_the_limit(
    sb: &Sandbox,
    what: &str,
    limit_mb: u64,
    errors: &[&str],
    while_full: impl FnOnce(),
) -> u64 {
    let full =
        sh(sb, &format!("cd /home/user && {{ {what}; }} 2>/tmp/err; echo $? >/tmp/rc; sync; stat -c %s f >/tmp/size"))
            .await;
    assert!(full.error.is_empty() || full.error.contains("No space left"), "{full:?}");
    while_full();
    let out = sh(sb, "rm -f /home/user/f; cat /tmp/rc /tmp/size /tmp/err").await;
    let mut lines = out.stdout.lines();
    let rc = lines.next().unwrap_or_else(|| panic!("no rc: {out:?}"));
    assert_ne!(rc, "0", "writing past the limit must fail: {out:?}");
    let written: u64 = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no size: {out:?}"));
    assert!(errors.iter().any(|e| out.stdout.contains(e)), "expected one of {errors:?}: {out:?}");
    assert!(written <= limit_mb << 20, "{written} bytes written with a {limit_mb} MiB disk");
    written
}

/// Once the file is gone, its room is back: 8 MiB fit again.
pub async fn room_comes_back_after_rm(sb: &Sandbox) {
    let out = sh(sb, "cd /home/user && dd if=/dev/zero of=g bs=1M count=8 2>&1 && rm g && echo again").await;
    assert!(out.stdout.ends_with("again\n"), "writing after rm: {out:?}");
}

/// Up to `count` empty files in /home/user/many, then removed; how many were made and
/// the error that stopped them, if any.
pub async fn make_files(sb: &Sandbox, count: u32) -> (u32, String) {
    // As in `write_past_the_limit`, read once there is room again.
    let script = format!(
        "mkdir -p /home/user/many && cd /home/user/many && i=0; \
         while [ $i -lt {count} ]; do {{ echo -n >f$i; }} 2>/tmp/err || break; i=$((i+1)); done; echo $i >/tmp/made"
    );
    sh(sb, &script).await;
    let out = sh(sb, "rm -r /home/user/many; cat /tmp/made /tmp/err").await;
    let mut lines = out.stdout.lines();
    let made = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("made: {out:?}"));
    (made, lines.collect::<Vec<_>>().join("\n"))
}
