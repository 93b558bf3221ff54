//! The host's cgroup filesystem, tuned for containers that come and go.
//!
//! Every container start moves its init into the sandbox's cgroups: the OCI runtime
//! writes the pid into `cgroup.procs` in each hierarchy. By default the first such move
//! takes the kernel's host-wide threadgroup lock for writing, which waits for an RCU
//! grace period: 5 ms per create on an idle 2-core VM, up to 25 ms under load. Mounted
//! with `favordynmods` (Linux 6.0 and later), the kernel keeps that lock ready for
//! writers, and a move takes 0.3 ms. The kernel's price is slightly costlier forks and
//! exits. The option is global, whichever hierarchy carries it; on Linux 6.18 it cannot
//! be turned off again until reboot.

use crate::host::run;

/// The mount point of the cgroup filesystem to remount with `favordynmods`, from
/// /proc/self/mountinfo: the cgroup v2 one, else the first v1 one; None when the host
/// has no cgroup filesystem or one already has the option.
fn remount_target(mountinfo: &str) -> Option<&str> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let (Some(point), mut fs) = (left.split(' ').nth(4), right.split(' ')) else { continue };
        let (Some(fstype), Some(options)) = (fs.next(), fs.nth(1)) else { continue };
        if fstype == "cgroup2" || fstype == "cgroup" {
            if options.split(',').any(|o| o == "favordynmods") {
                return None;
            }
            mounts.push((fstype == "cgroup2", point));
        }
    }
    mounts.iter().find(|(v2, _)| *v2).or(mounts.first()).map(|(_, point)| *point)
}

/// Remounts the host's cgroup filesystem with `favordynmods` unless it has it already.
/// Only creates get faster, so a kernel without the option is logged, not an error.
pub(crate) fn favor_dynamic_changes() {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let Some(point) = remount_target(&mountinfo) else { return };
    // mount(8) keeps the mount's own flags (nosuid, nodev, ...) on a remount.
    match run("mount", &["-o", "remount,favordynmods", point]) {
        Ok(_) => tracing::info!(
            mount = point,
            "cgroup filesystem remounted with favordynmods: cgroup moves no longer wait for an RCU grace period"
        ),
        Err(e) => {
            tracing::warn!(mount = point, error = %e, "could not remount the cgroup filesystem with favordynmods (Linux 6.0+); every create waits for an RCU grace period")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::remount_target;

    const HYBRID: &str = "\
25 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 24 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn picks_cgroup_v2_then_v1_and_nothing_once_set() {
        assert_eq!(remount_target(HYBRID), Some("/sys/fs/cgroup/unified"));
        let v1_only: String = HYBRID.lines().filter(|l| !l.contains("cgroup2")).map(|l| format!("{l}\n")).collect();
        assert_eq!(remount_target(&v1_only), Some("/sys/fs/cgroup/cpu"));
        let set = HYBRID.replace("rw,nsdelegate", "rw,nsdelegate,favordynmods");
        assert_eq!(remount_target(&set), None);
        let set_on_v1 = HYBRID.replace("rw,cpu", "rw,cpu,favordynmods");
        assert_eq!(remount_target(&set_on_v1), None);
        assert_eq!(remount_target("25 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"), None);
        assert_eq!(remount_target("garbage\n - \n"), None);
    }
}
