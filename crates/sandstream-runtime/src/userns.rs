//! The host ids sandboxes run as: one range of [`MAPPED_IDS`] uids and gids per host,
//! the system account `sandstream`'s range in /etc/subuid and /etc/subgid (as Docker's
//! userns-remap takes `dockremap`'s). Inside a sandbox's user namespace uid `u` is host
//! uid `uid_base + u` (root is `uid_base`, `user` is `uid_base + 1000`), gid likewise.
//!
//! Why a range reserved in the subordinate id files rather than one picked at run time:
//! those files are where a host records which uids belong to whom, so `useradd`,
//! `usermod --add-subuids`, Docker and rootless tools all stay clear of it, and an
//! operator finds it there. The range overlaps no other entry of either file and no
//! uid or gid of /etc/passwd or /etc/group when it is chosen, so **no host file is owned
//! by it except sandbox files** (the template's mapped copy, the sandboxes' own layers
//! and bind sources). One range serves every sandbox of the host; their other
//! namespaces, not their uids, keep them apart.
//!
//! [`ensure_mapped_ids`] (the `oci` backend's preflight) creates the account and the
//! entries when missing, under an exclusive lock so that concurrent runtimes agree on
//! one range; [`mapped_ids`] only reads them.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// The account whose subordinate ranges sandboxes use.
pub const MAPPED_ACCOUNT: &str = "sandstream";
/// Ids in the range: container ids 0..65535, as many as a Debian root filesystem uses
/// (`nobody` is 65534).
pub const MAPPED_IDS: u32 = 65536;
/// The lowest base chosen: where `useradd` starts subordinate ranges (`SUB_UID_MIN`).
const FIRST_BASE: u64 = 100_000;
const SUBUID: &str = "/etc/subuid";
const SUBGID: &str = "/etc/subgid";
/// Held while the entries are read and written, by every runtime on the host.
const LOCK: &str = "/run/sandstream/subid.lock";

/// The host ids a sandbox's ids map to: container uid `u` is host uid `uid_base + u`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappedIds {
    pub uid_base: u32,
    pub gid_base: u32,
}

impl MappedIds {
    /// The host uid of container uid `u`.
    pub fn uid(&self, u: u32) -> u32 {
        self.uid_base + u
    }

    /// The host gid of container gid `g`.
    pub fn gid(&self, g: u32) -> u32 {
        self.gid_base + g
    }
}

/// The host's range for sandboxes, as /etc/subuid and /etc/subgid give it for
/// [`MAPPED_ACCOUNT`]; an error when either has none (a runtime's start makes them).
pub fn mapped_ids() -> Result<MappedIds> {
    let uid = read_entry(SUBUID)?;
    let gid = read_entry(SUBGID)?;
    match (uid, gid) {
        (Some(uid_base), Some(gid_base)) => Ok(MappedIds { uid_base, gid_base }),
        _ => Err(Error::InvalidSpec(format!(
            "{SUBUID} and {SUBGID} give {MAPPED_ACCOUNT} no range of {MAPPED_IDS} ids (an oci runtime's start adds it)"
        ))),
    }
}

/// [`mapped_ids`], first creating the account and its ranges when missing (the same
/// base in both files when it is free in both).
pub fn ensure_mapped_ids() -> Result<MappedIds> {
    let dir = Path::new(LOCK).parent().unwrap_or(Path::new("/run"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(|e| Error::io(format!("open {LOCK}"), e))?;
    let _held =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| Error::io(format!("lock {LOCK}"), e.into()))?;
    if let Ok(ids) = mapped_ids() {
        return Ok(ids);
    }
    ensure_account()?;
    let (uids, gids) = (read_text(SUBUID)?, read_text(SUBGID)?);
    let taken: Vec<(u64, u64)> = ranges(&uids)
        .into_iter()
        .chain(ranges(&gids))
        .chain(ids_in("/etc/passwd", 2).into_iter().map(|u| (u, 1)))
        .chain(ids_in("/etc/group", 2).into_iter().map(|g| (g, 1)))
        .collect();
    let base = free_base(&taken)?;
    for (file, text) in [(SUBUID, &uids), (SUBGID, &gids)] {
        if entry(text).is_none() {
            append(file, text, base)?;
        }
    }
    let ids = mapped_ids()?;
    tracing::info!(uid_base = ids.uid_base, gid_base = ids.gid_base, "sandboxes' user namespace range reserved");
    Ok(ids)
}

fn read_text(file: &str) -> Result<String> {
    match std::fs::read_to_string(file) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::io(format!("read {file}"), e)),
    }
}

fn read_entry(file: &str) -> Result<Option<u32>> {
    entry(&read_text(file)?).transpose()
}

/// The account's base in a subordinate id file's `text`: its first entry of at least
/// [`MAPPED_IDS`] ids (a shorter one is an error: some sandbox uid would be unmapped).
fn entry(text: &str) -> Option<Result<u32>> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        if f.next() != Some(MAPPED_ACCOUNT) {
            return None;
        }
        let (start, count) = (f.next()?.parse::<u32>().ok()?, f.next()?.parse::<u32>().ok()?);
        if count < MAPPED_IDS || start.checked_add(MAPPED_IDS).is_none() {
            return Some(Err(Error::InvalidSpec(format!(
                "{MAPPED_ACCOUNT}'s subordinate range {start}:{count} is not {MAPPED_IDS} ids"
            ))));
        }
        Some(Ok(start))
    })
}

/// Every `start:count` range of a subordinate id file.
fn ranges(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':').skip(1);
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// Field `field` (0-based) of every line of a colon-separated file, as numbers.
fn ids_in(file: &str, field: usize) -> Vec<u64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines().filter_map(|l| l.split(':').nth(field)?.parse().ok()).collect()
}

/// The lowest base from [`FIRST_BASE`] up, in steps of [`MAPPED_IDS`], whose range
/// overlaps none of `taken` (`(start, count)` each).
fn free_base(taken: &[(u64, u64)]) -> Result<u32> {
    let mut base = FIRST_BASE;
    while base + u64::from(MAPPED_IDS) < u64::from(u32::MAX) {
        let end = base + u64::from(MAPPED_IDS);
        match taken.iter().filter(|(s, c)| *s < end && base < s + c).map(|(s, c)| s + c).max() {
            None => return Ok(base as u32),
            // Past the highest range in the way, rounded up to a step.
            Some(past) => {
                base = FIRST_BASE + (past - FIRST_BASE).div_ceil(u64::from(MAPPED_IDS)) * u64::from(MAPPED_IDS)
            }
        }
    }
    Err(Error::InvalidSpec(format!("no free range of {MAPPED_IDS} ids for {MAPPED_ACCOUNT}")))
}

fn append(file: &str, text: &str, base: u32) -> Result<()> {
    let fail = |e| Error::io(format!("add {MAPPED_ACCOUNT}'s range to {file}"), e);
    let mut f = File::options().create(true).append(true).open(file).map_err(fail)?;
    let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    f.write_all(format!("{sep}{MAPPED_ACCOUNT}:{base}:{MAPPED_IDS}\n").as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// Creates the system account (no home, no login shell) when the host has none.
fn ensure_account() -> Result<()> {
    let known = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(MAPPED_ACCOUNT));
    if known {
        return Ok(());
    }
    let out = Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"])
        .args(["--shell", "/usr/sbin/nologin", "--comment", "Sandstream sandboxes' user namespaces"])
        .arg(MAPPED_ACCOUNT)
        .output()
        .map_err(|e| Error::Command { command: "useradd".into(), detail: e.to_string() })?;
    // 9: the name was taken meanwhile (by another tool: this runtime holds the lock).
    if out.status.success() || out.status.code() == Some(9) {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("useradd --system {MAPPED_ACCOUNT}"),
        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_overlaps_no_other_entry_nor_any_account() {
        assert_eq!(free_base(&[]).expect("free"), 100_000);
        assert_eq!(free_base(&[(0, 1), (65534, 1)]).expect("free"), 100_000, "nobody is below");
        // A user's range where useradd puts it: the next step.
        assert_eq!(free_base(&[(100_000, 65536)]).expect("free"), 165_536);
        // Ranges of other sizes, overlapping steps: past the highest in the way.
        assert_eq!(free_base(&[(100_000, 65536), (150_000, 100_000)]).expect("free"), 296_608);
        assert_eq!(free_base(&[(100_000, 65536), (300_000, 10)]).expect("free"), 165_536, "a gap that fits");
        assert_eq!(free_base(&[(120_000, 1)]).expect("free"), 165_536, "an account's uid in the way");
    }

    #[test]
    fn the_account_s_entry_is_read_and_a_short_one_refused() {
        let text = "alice:100000:65536\nsandstream:231072:65536\n";
        assert_eq!(entry(text).expect("entry").expect("valid"), 231_072);
        assert!(entry("alice:100000:65536\n").is_none());
        assert!(entry("sandstream:100000:1000\n").expect("entry").is_err(), "too few ids");
        assert_eq!(ranges(text), [(100_000, 65536), (231_072, 65536)]);
        let ids = MappedIds { uid_base: 231_072, gid_base: 300_000 };
        assert_eq!((ids.uid(1000), ids.gid(0)), (232_072, 300_000));
    }
}
