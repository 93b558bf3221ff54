//! Where the `oci` backend keeps things in its state directory, `STATE/`:
//!
//! - `sb-XXXXXXXXXX/`, one per sandbox (0700, [`Layout`]): `slot` (its network slot,
//!   written first, so a destroy finds it whatever else is missing), `disk.img` (its own
//!   filesystem, sized to its disk limit: `crate::disk`) and `disk/` (where that is
//!   mounted, holding `upper/` and `work/`, its private overlay layers), `rootfs/` (where
//!   the overlay of the read-only template and `upper/` is mounted; both mounts are in
//!   the container's mount namespace only: the host's mount table does not grow with the
//!   sandboxes), `token` and `ctl` (links to the sandbox's token and control directory in
//!   `.binds`), `config.json` (the bundle's spec: `bundle.rs`), `agent.log` (the agent's
//!   stdout and stderr, and the OCI runtime's own until it hands them over), `pid` (the
//!   container's init on the host, written by the OCI runtime).
//! - `.binds/`: the tmpfs every bind's source is in (`crate::binds`).
//! - `.disks/`: blank filesystems to copy disk images from, one per size (`crate::disk`).
//!
//! This module only names those paths and reads and writes the small files; what is
//! mounted on them is `rootfs.rs`'s.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The blank disk images' directory in the state directory.
pub(crate) fn blanks(state_dir: &Path) -> PathBuf {
    state_dir.join(".disks")
}

/// The paths of one sandbox's directory, `STATE/sb-XXXXXXXXXX/`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub(crate) fn new(state_dir: &Path, id: &str) -> Layout {
        Layout { dir: state_dir.join(id) }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn slot(&self) -> PathBuf {
        self.dir.join("slot")
    }

    pub(crate) fn disk_image(&self) -> PathBuf {
        self.dir.join("disk.img")
    }

    /// Where the disk image's filesystem is mounted.
    pub(crate) fn disk(&self) -> PathBuf {
        self.dir.join("disk")
    }

    /// The overlay's upper layer, in the sandbox's own filesystem.
    pub(crate) fn upper(&self) -> PathBuf {
        self.disk().join("upper")
    }

    /// The overlay's work directory, beside its upper layer.
    pub(crate) fn work(&self) -> PathBuf {
        self.disk().join("work")
    }

    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub(crate) fn token(&self) -> PathBuf {
        self.dir.join("token")
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub(crate) fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }

    pub(crate) fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// Makes the sandbox's directory (0700; an existing one is an error) with its `slot`
    /// file, then the mount points `disk/` and `rootfs/` (0755).
    pub(crate) fn create(&self, slot: u32) -> Result<()> {
        let mkdir = |p: &Path, mode: u32| {
            std::fs::DirBuilder::new().mode(mode).create(p).map_err(|e| Error::io(format!("create {}", p.display()), e))
        };
        mkdir(&self.dir, 0o700)?;
        std::fs::write(self.slot(), slot.to_string()).map_err(|e| Error::io("write slot", e))?;
        mkdir(&self.disk(), 0o755)?;
        mkdir(&self.rootfs(), 0o755)
    }

    /// The network slot the sandbox holds, if its file says.
    pub(crate) fn read_slot(&self) -> Option<u32> {
        read_number(&self.slot())
    }

    /// Removes the `slot` file: a slot is given back once, and a sandbox directory kept
    /// after that (its container would not stop) must no longer name it.
    pub(crate) fn forget_slot(&self) {
        let _ = std::fs::remove_file(self.slot());
    }

    /// The container's init on the host, as the OCI runtime wrote it.
    pub(crate) fn read_pid(&self) -> Option<u32> {
        read_number(&self.pid())
    }

    pub(crate) fn read_token(&self) -> Option<String> {
        Some(std::fs::read_to_string(self.token()).ok()?.trim().to_string())
    }

    /// What the agent and the OCI runtime wrote to `agent.log`, for error messages.
    pub(crate) fn agent_log_text(&self) -> String {
        std::fs::read_to_string(self.agent_log()).unwrap_or_default()
    }
}

fn read_number(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_sandbox_dir_is_made_once_with_its_slot_and_mount_points() {
        let state = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(state.path(), "sb-0123456789");
        assert_eq!(layout.read_slot(), None);
        layout.create(7).expect("create");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(layout.dir()), 0o700, "only root enters a sandbox's state");
        assert_eq!((mode(&layout.disk()), mode(&layout.rootfs())), (0o755, 0o755));
        assert_eq!(layout.read_slot(), Some(7));
        let again = layout.create(8).expect_err("made twice");
        assert!(again.to_string().starts_with(&format!("create {}", layout.dir().display())), "{again}");
        layout.forget_slot();
        assert_eq!(layout.read_slot(), None);

        std::fs::write(layout.pid(), "not a pid").expect("write");
        assert_eq!(layout.read_pid(), None, "a garbled pid file names no process");
        std::fs::write(layout.pid(), "4242\n").expect("write");
        assert_eq!(layout.read_pid(), Some(4242));
        assert_eq!(layout.upper(), state.path().join("sb-0123456789/disk/upper"));
        assert_eq!(blanks(state.path()), state.path().join(".disks"));
    }
}
