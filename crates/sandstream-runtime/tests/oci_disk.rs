//! The `oci` backend's disk limit, as root against a real OCI runtime (runc, or the one
//! SANDSTREAM_OCI_RUNTIME names): a sandbox's writable layer (its home, the agent's
//! output spool, anything it writes outside its tmpfs /tmp) holds at most its disk's
//! bytes and inodes; past them writes fail with ENOSPC inside, and the host pays at
//! most the limit. Same prerequisites as tests/oci.rs.

use std::path::PathBuf;

mod support;

use sandstream_runtime::{DISK_INODES_PER_MB, Egress, Limits, OciConfig, OciRuntime, Runtime, Sandbox, SandboxSpec};
use support::disk::{host_free, make_files, room_comes_back_after_rm, sh, write_past_the_limit};
use support::lock::sandbox_tests_lock;
use support::{busybox_template, static_agent};

const LIMIT_MB: u32 = 64;
const ENOSPC: &[&str] = &["No space left"];

/// Runs `f` to completion from inside a test's runtime (a callback cannot be async).
fn block_on<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f))
            .join()
            .expect("join")
    })
}

struct Fixture {
    _dir: tempfile::TempDir,
    state: PathBuf,
    runtime: OciRuntime,
    template: PathBuf,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

fn fixture() -> Option<Fixture> {
    let agent = static_agent()?;
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    let lock = sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = busybox_template(dir.path());
    let state = dir.path().join("state");
    let runtime = std::env::var("SANDSTREAM_OCI_RUNTIME").unwrap_or_else(|_| "runc".into());
    let cfg = OciConfig { runtime: runtime.into(), ..OciConfig::new(state.clone(), agent) };
    let runtime = OciRuntime::new(cfg).expect("runtime");
    Some(Fixture { _dir: dir, state, runtime, template, _lock: lock })
}

/// Kills its sandbox when dropped.
struct Guard<'a>(&'a OciRuntime, Sandbox);

impl std::ops::Deref for Guard<'_> {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.1
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill(&self.1.id);
    }
}

impl Fixture {
    fn create(&self, disk_mb: u32) -> Guard<'_> {
        let spec = SandboxSpec {
            template: self.template.clone(),
            limits: Limits::default().with_disk_mb(disk_mb),
            env: Vec::new(),
            egress: Egress::Allow,
        };
        Guard(&self.runtime, self.runtime.create(&spec).expect("create sandbox"))
    }

    /// Blocks the host has allocated for everything in sandbox `id`'s state dir.
    fn host_bytes_of(&self, id: &str) -> u64 {
        let out =
            std::process::Command::new("du").args(["-s", "-B1", "-x"]).arg(self.state.join(id)).output().expect("du");
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().and_then(|n| n.parse().ok()).expect("du")
    }
}

/// 200 MiB into a 64 MiB disk, by `dd` then by `fallocate`: each stops with ENOSPC at
/// the limit, the host's free space drops by about the limit at most (the sandbox's
/// files take at most the limit on the host), a write under the limit works, and
/// after `rm` writing works again. Another sandbox meanwhile writes as usual.
#[tokio::test]
async fn writing_past_the_disk_limit_is_enospc_and_costs_the_host_at_most_the_limit() {
    let Some(f) = fixture() else { return };
    let sb = f.create(LIMIT_MB);
    let other = f.create(LIMIT_MB);
    let limit_mb = u64::from(LIMIT_MB);
    let limit = limit_mb << 20;

    let df = sh(&sb, "df -k / | tail -n 1").await;
    let size_kib: u64 = df.stdout.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("df size");
    assert!(size_kib <= limit >> 10 && size_kib > (limit >> 10) * 9 / 10, "df / inside shows the limit: {df:?}");
    let under =
        sh(&sb, "dd if=/dev/zero of=/home/user/small bs=1M count=32 2>&1 && rm /home/user/small && echo ok").await;
    assert!(under.stdout.ends_with("ok\n"), "32 MiB under a 64 MiB limit: {under:?}");

    let (free_before, _) = host_free(&f.state);
    let mut full = (0, 0);
    let written = write_past_the_limit(&sb, "dd if=/dev/zero of=f bs=1M count=200", limit_mb, ENOSPC, || {
        full = (host_free(&f.state).0, f.host_bytes_of(&sb.id));
        // Meanwhile another sandbox writes as usual.
        let busy = block_on(sh(&other, "dd if=/dev/zero of=/home/user/f bs=1M count=32 2>&1 && echo ok"));
        assert!(busy.stdout.ends_with("ok\n"), "another sandbox writes while this one is full: {busy:?}");
    })
    .await;
    assert!(written > limit / 2, "most of the disk is usable: {written} bytes");
    let (free_full, on_host) = full;
    // Exact: what the sandbox's files take on the host. Loose: the host's free space,
    // which other processes (a build) may use meanwhile, but never 200 MiB.
    assert!(on_host <= limit + (1 << 20), "the sandbox's files take {on_host} bytes on the host");
    let dropped = free_before.saturating_sub(free_full);
    assert!(dropped < 150 << 20, "the host's free space dropped by {dropped} bytes for a {LIMIT_MB} MiB disk");
    room_comes_back_after_rm(&sb).await;

    write_past_the_limit(&sb, "fallocate -l 200M f", limit_mb, ENOSPC, || {}).await;
    room_comes_back_after_rm(&sb).await;
}

/// A 64 MiB disk holds 64 × 64 inodes: creating 10,000 files stops with ENOSPC near
/// 4,096 (the filesystem, the upper layer and the agent's spool take a few); the files
/// cost the host no inodes (they are in the sandbox's image file), and after removing
/// them files can be made again.
#[tokio::test]
async fn creating_files_past_the_inode_limit_is_enospc() {
    let Some(f) = fixture() else { return };
    let sb = f.create(LIMIT_MB);
    let inodes = u64::from(LIMIT_MB) * DISK_INODES_PER_MB;
    let (_, inodes_before) = host_free(&f.state);
    let (made, error) = make_files(&sb, 10_000).await;
    assert!(error.contains("No space left"), "stopped by: {error:?} after {made} files");
    assert!(u64::from(made) <= inodes && u64::from(made) > inodes - 64, "{made} files with {inodes} inodes");
    let (_, inodes_after) = host_free(&f.state);
    // Loose, as other processes make files meanwhile; but never thousands in a moment.
    assert!(
        inodes_before.saturating_sub(inodes_after) < 1000,
        "{made} files in the sandbox took {} inodes of the host",
        inodes_before.saturating_sub(inodes_after)
    );
    let again = sh(&sb, ": > /home/user/one && echo ok").await;
    assert_eq!(again.stdout, "ok\n", "{again:?}");
}

/// Limits under the minimum are refused before anything is made.
#[test]
fn a_disk_under_the_minimum_is_refused() {
    let Some(f) = fixture() else { return };
    let spec = SandboxSpec {
        template: f.template.clone(),
        limits: Limits::default().with_disk_mb(8),
        env: Vec::new(),
        egress: Egress::Allow,
    };
    let err = f.runtime.create(&spec).expect_err("8 MiB is under the minimum");
    assert!(err.to_string().contains("disk must be at least 16 MiB"), "{err}");
    assert!(f.runtime.list().expect("list").is_empty());
}
