//! The `docker` backend's disk limit, as root against a real Docker Engine whose storage
//! can limit a container's writable layer (scripts/docker.sh's: btrfs): past the limit
//! writes fail inside (EDQUOT), and the host pays at most about the limit. Docker limits
//! bytes only: there is no separate inode limit (each file's metadata counts in the
//! bytes). Same prerequisites as tests/docker.rs.

use std::path::PathBuf;

mod support;

use sandstream_runtime::{DockerRuntime, Egress, Limits, Runtime, Sandbox, SandboxSpec};
use support::disk::{host_free, room_comes_back_after_rm, sh, write_past_the_limit};
use support::lock::sandbox_tests_lock;
use support::{busybox_template, static_agent};

const LIMIT_MB: u32 = 64;

/// Runs `f` to completion from inside a test's runtime (a callback cannot be async).
fn block_on<T: Send>(f: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f))
            .join()
            .expect("join")
    })
}

struct Fixture {
    runtime: DockerRuntime,
    template: PathBuf,
    _dir: tempfile::TempDir,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.runtime.list().unwrap_or_default() {
            let _ = self.runtime.kill(&id);
        }
        if let Err(e) = self.runtime.remove_template_image(&self.template) {
            eprintln!("could not remove the test's template image: {e}");
        }
    }
}

fn fixture() -> Option<Fixture> {
    let agent = static_agent()?;
    assert!(nix::unistd::geteuid().is_root(), "these tests need root");
    let lock = sandbox_tests_lock(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let template = busybox_template(dir.path());
    let cfg = support::docker::config(dir.path().join("state"), agent);
    let runtime = DockerRuntime::new(cfg).expect("runtime (scripts/docker.sh starts a suitable Engine)");
    Some(Fixture { runtime, template, _dir: dir, _lock: lock })
}

impl Fixture {
    fn create(&self, disk_mb: u32) -> Sandbox {
        let spec = SandboxSpec {
            template: self.template.clone(),
            limits: Limits::default().with_disk_mb(disk_mb),
            env: Vec::new(),
            egress: Egress::Allow,
        };
        self.runtime.create(&spec).expect("create sandbox")
    }
}

/// 200 MiB into a 64 MiB disk: stopped at the limit, the host's free space drops by far
/// less than 200 MiB, another sandbox writes as usual, and after `rm` writing works
/// again.
#[tokio::test]
async fn writing_past_the_disk_limit_fails_and_costs_the_host_at_most_the_limit() {
    let Some(f) = fixture() else { return };
    let sb = f.create(LIMIT_MB);
    let other = f.create(LIMIT_MB);
    let limit_mb = u64::from(LIMIT_MB);
    let under =
        sh(&sb, "dd if=/dev/zero of=/home/user/small bs=1M count=32 2>&1 && rm /home/user/small && echo ok").await;
    assert!(under.stdout.ends_with("ok\n"), "32 MiB under a 64 MiB limit: {under:?}");

    let data_root = std::path::Path::new("/var/lib");
    let (free_before, _) = host_free(data_root);
    let errors = ["Disk quota exceeded", "No space left"];
    let mut free_full = 0;
    let written = write_past_the_limit(&sb, "dd if=/dev/zero of=f bs=1M count=200", limit_mb, &errors, || {
        free_full = host_free(data_root).0;
        let busy = block_on(sh(&other, "dd if=/dev/zero of=/home/user/f bs=1M count=32 2>&1 && echo ok"));
        assert!(busy.stdout.ends_with("ok\n"), "another sandbox writes while this one is full: {busy:?}");
    })
    .await;
    assert!(written > (limit_mb << 20) / 2, "most of the disk is usable: {written} bytes");
    let dropped = free_before.saturating_sub(free_full);
    assert!(dropped < 150 << 20, "the host's free space dropped by {dropped} bytes for a {LIMIT_MB} MiB disk");
    room_comes_back_after_rm(&sb).await;
    write_past_the_limit(&sb, "fallocate -l 200M f", limit_mb, &errors, || {}).await;
    room_comes_back_after_rm(&sb).await;
}
