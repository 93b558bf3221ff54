//! A sandbox's disk: a filesystem of its own, whose size and inode count are its limits.
//!
//! The host's root filesystem is ext4 without project quotas, and this host's kernel
//! has no quota formats at all (`CONFIG_QFMT_V2` and `CONFIG_XFS_QUOTA` are off), so no
//! quota can be set on a directory. Instead each `oci` sandbox's writable layer (the
//! overlay's upper and work dirs) lives in an ext4 filesystem of its own, in a sparse
//! file of exactly its limit (`STATE/sb-…/disk.img`), formatted with exactly its inode
//! count and reached through a loop device. The kernel then enforces both limits as it
//! would on any full disk: ENOSPC inside the sandbox, and the host loses at most the
//! image's size in blocks and one inode.
//!
//! Even where quotas exist, a filesystem of its own is the sounder limit here: overlayfs
//! writes to the upper layer with the credentials of whoever mounted it (root, with
//! `CAP_SYS_RESOURCE`), which generic quotas (ext4) let past their hard limits; and the
//! project id a quota would hang on can be changed by a file's owner through
//! `FS_IOC_FSSETXATTR` or `file_setattr` from the initial user namespace, which
//! sandboxes are in.
//!
//! The image is formatted without a journal (a sandbox does not survive a reboot, so
//! there is nothing to replay), with no blocks reserved for root and lazily initialised
//! inode tables, never zeroed later: about 0.4 MiB written for 64 MiB, 4 MiB for 10 GiB.
//! The loop device is attached with `LO_FLAGS_AUTOCLEAR` (it detaches itself when its
//! filesystem is last unmounted) and direct I/O (the sandbox's pages are cached once, in
//! its own memory cgroup, not a second time in the host's page cache on its behalf); the
//! filesystem is mounted with `discard`, so deleting files inside gives the blocks back
//! to the host. It is mounted only in the private mount namespace of the thread that
//! starts the container (`oci::rootfs::enter_private_mounts`), never on the host: it goes when the
//! container does, and the loop device with it.
//!
//! **The host never reads the filesystem a sandbox wrote**: it only creates the image
//! before the sandbox runs and deletes the file after the sandbox is gone.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::error::{Error, Result};
use crate::types::Limits;

/// `<linux/loop.h>`: `LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE` and the flags used here.
const LOOP_CTL_GET_FREE: u64 = 0x4C82;
const LOOP_CONFIGURE: u64 = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_FLAGS_DIRECT_IO: u32 = 16;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// Blank filesystems kept, one per disk size asked for lately: each is a few MiB, and
/// sizes are the caller's to choose, so they must not pile up.
const BLANKS_KEPT: usize = 8;

/// Makes `image` (new, 0600) a sparse file of `limits.disk_bytes` holding an empty ext4
/// filesystem with `limits.disk_inodes` inodes, its root owned by root with mode 755: a
/// copy of the blank one kept in `blanks` for these limits, formatted on first use.
/// `mkfs.ext4` takes 25-30 ms for 10 GiB; copying its 4 MiB of data takes about 2.
pub(crate) fn make(image: &Path, limits: &Limits, blanks: &Path) -> Result<()> {
    let blank = blanks.join(format!("{}-{}.img", limits.disk_bytes, limits.disk_inodes));
    if let Ok(from) = File::open(&blank) {
        // Used: kept by `prune` over the blanks of sizes not asked for since.
        let _ = from.set_modified(std::time::SystemTime::now());
        return copy_sparse(&from, &blank, image);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(blanks)
        .map_err(|e| Error::io(format!("create {}", blanks.display()), e))?;
    // Formatted aside and renamed: a concurrent create never copies half a blank.
    let new = blanks.join(format!(".new-{}", crate::sandbox::random_hex(5)?));
    let made = format(&new, limits).and_then(|()| {
        let from = File::open(&new).map_err(|e| Error::io(format!("open {}", new.display()), e))?;
        std::fs::rename(&new, &blank).map_err(|e| Error::io(format!("rename to {}", blank.display()), e))?;
        Ok(from)
    });
    if made.is_err() {
        let _ = std::fs::remove_file(&new);
    }
    let from = made?;
    prune(blanks);
    copy_sparse(&from, &blank, image)
}

/// Deletes all but the [`BLANKS_KEPT`] newest blanks (a copy under way keeps its file
/// open, and so its data).
fn prune(blanks: &Path) {
    let Ok(entries) = std::fs::read_dir(blanks) else { return };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".img"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    let excess = found.len().saturating_sub(BLANKS_KEPT);
    for (_, path) in found.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
}

/// Copies `src` (the file at `from`) to `to` (new, 0600), its data only: holes stay
/// holes.
fn copy_sparse(src: &File, from: &Path, to: &Path) -> Result<()> {
    let fail = |e: std::io::Error| Error::io(format!("copy {} to {}", from.display(), to.display()), e);
    let dst = OpenOptions::new().write(true).create_new(true).mode(0o600).open(to).map_err(fail)?;
    let len = src.metadata().map_err(fail)?.len();
    dst.set_len(len).map_err(fail)?;
    let mut at: i64 = 0;
    while (at as u64) < len {
        let data = match nix::unistd::lseek(src, at, nix::unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(Errno::ENXIO) => break,
            Err(e) => return Err(fail(e.into())),
        };
        let hole = nix::unistd::lseek(src, data, nix::unistd::Whence::SeekHole).map_err(|e| fail(e.into()))?;
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            let left = (hole - off_in) as usize;
            let n = nix::fcntl::copy_file_range(src, Some(&mut off_in), &dst, Some(&mut off_out), left)
                .map_err(|e| fail(e.into()))?;
            if n == 0 {
                break;
            }
        }
        at = hole;
    }
    Ok(())
}

/// Makes `image` (new, 0600) a sparse file of `limits.disk_bytes` holding an empty ext4
/// filesystem with `limits.disk_inodes` inodes, its root owned by root with mode 755.
fn format(image: &Path, limits: &Limits) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(image)
        .map_err(|e| Error::io(format!("create {}", image.display()), e))?;
    file.set_len(limits.disk_bytes).map_err(|e| Error::io(format!("size {}", image.display()), e))?;
    drop(file);
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-m", "0", "-N"])
        .arg(limits.disk_inodes.to_string())
        .args(["-E", "lazy_itable_init=1,nodiscard,root_owner=0:0"])
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command { command: "mkfs.ext4".into(), detail: format!("{e} (install e2fsprogs)") })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("mkfs.ext4 {}", image.display()),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// A loop device attached to an image; detached by the kernel once nothing holds it
/// (this handle dropped and its filesystem unmounted everywhere).
pub(crate) struct LoopDevice {
    path: PathBuf,
    _device: File,
}

/// Attaches `image` to a free loop device (autoclear, direct I/O).
pub(crate) fn attach(image: &Path) -> Result<LoopDevice> {
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| Error::io(format!("open {}", image.display()), e))?;
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| Error::io("open /dev/loop-control", e))?;
    // Another process may take the free device between the two calls: try the next.
    // Direct I/O is refused where the backing file cannot do it (tmpfs): then without.
    let mut flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { nix::libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        let n = Errno::result(n).map_err(|e| Error::io("find a free loop device", e.into()))?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        };
        let name = image.as_os_str().as_encoded_bytes();
        let len = name.len().min(63);
        info.lo_file_name[..len].copy_from_slice(&name[..len]);
        let config = LoopConfig { fd: backing.as_raw_fd() as u32, block_size: 0, info, reserved: [0; 8] };
        // SAFETY: `config` is a valid `struct loop_config` that outlives the call; the
        // kernel only reads it.
        let r = unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &config as *const LoopConfig) };
        match Errno::result(r) {
            Ok(_) => return Ok(LoopDevice { path, _device: device }),
            Err(Errno::EBUSY) => continue,
            Err(Errno::EINVAL) if flags & LO_FLAGS_DIRECT_IO != 0 => flags &= !LO_FLAGS_DIRECT_IO,
            Err(e) => return Err(Error::io(format!("attach {} to {}", image.display(), path.display()), e.into())),
        }
    }
    Err(Error::io(format!("attach {}", image.display()), std::io::Error::other("every free loop device was taken")))
}

/// Mounts the filesystem on `device` at `target` (nosuid, nodev, noatime, discard). Call
/// only in a private mount namespace: see the module's documentation. `noinit_itable`:
/// the inode tables are never zeroed in the background (they need not be: the
/// filesystem is new and unused tables are marked so), which would write a 10 GiB
/// disk's 160 MiB of them to the host for nothing.
pub(crate) fn mount(device: &LoopDevice, target: &Path) -> Result<()> {
    nix::mount::mount(
        Some(device.path.as_path()),
        target,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
        Some("discard,noinit_itable"),
    )
    .map_err(|e| Error::io(format!("mount {} on {}", device.path.display(), target.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_copy_has_the_same_bytes_and_keeps_the_holes() {
        use std::io::{Read, Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("from");
        let mut f = File::create(&from).expect("create");
        f.set_len(64 << 20).expect("size");
        f.write_all(b"head").expect("write");
        f.seek(SeekFrom::Start(32 << 20)).expect("seek");
        f.write_all(b"middle").expect("write");
        drop(f);
        let to = dir.path().join("to");
        copy_sparse(&File::open(&from).expect("open"), &from, &to).expect("copy");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        File::open(&from).expect("open").read_to_end(&mut a).expect("read");
        File::open(&to).expect("open").read_to_end(&mut b).expect("read");
        assert!(a == b, "same bytes");
        let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&to).expect("stat"));
        assert!(blocks * 512 < 1 << 20, "holes kept: {blocks} blocks");
        assert!(copy_sparse(&File::open(&from).expect("open"), &from, &to).is_err(), "never over a file");
    }

    #[test]
    fn prune_keeps_the_newest_blanks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t0 = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..BLANKS_KEPT as u64 + 3 {
            let f = File::create(dir.path().join(format!("{i}-1.img"))).expect("create");
            f.set_modified(t0 + std::time::Duration::from_secs(i)).expect("mtime");
        }
        std::fs::write(dir.path().join(".new-x"), "").expect("a blank being formatted");
        prune(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = (3..BLANKS_KEPT as u64 + 3).map(|i| format!("{i}-1.img")).collect();
        want.push(".new-x".into());
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn loop_structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
