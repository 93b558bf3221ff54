//! What a sandbox may ask for: the defaults a create without options gets (the warm
//! pool holds sandboxes with these), the ranges and their checks, and the name rules.
//! Each check's error names the field and the limit, and is the message a 400 carries.

use std::collections::BTreeMap;

/// A sandbox's CPU when the caller does not say: 2 cores, as E2B's default sandbox has.
/// A limit of 1 core throttled the agent and its shell in bursts of back-to-back short
/// commands (BENCHMARKS.md); cores beyond the host's are shared fairly anyway.
pub const DEFAULT_CPU_MILLIS: u32 = 2000;
/// A sandbox's memory when the caller does not say (E2B's default too).
pub const DEFAULT_MEMORY_MB: u32 = 512;
/// A sandbox's process limit (processes and threads, the agent's included) when the
/// caller does not say.
pub const DEFAULT_PIDS: u32 = 256;
/// A sandbox's disk when the caller does not say: 10 GiB, as E2B's default sandbox has.
pub const DEFAULT_DISK_MB: u32 = 10 * 1024;
/// The smallest disk a sandbox may have (the filesystem's own metadata takes about 1 MiB).
pub const MIN_DISK_MB: u32 = 16;
/// A runner's largest disk (`--max-disk-mb`) when not configured: 50 GiB.
pub const DEFAULT_MAX_DISK_MB: u32 = 50 * 1024;
/// The largest disk the server lets a create ask for (1 TiB); each runner has its own,
/// usually lower, maximum.
pub const DISK_MB_LIMIT: u32 = 1024 * 1024;

/// The process limits a create may ask for.
pub const PIDS_RANGE: std::ops::RangeInclusive<u32> = 8..=32_768;
/// The range of a sandbox's time to live, in milliseconds.
pub const TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 1000..=24 * 3600 * 1000;
/// Most metadata entries, and the longest key and value, in bytes.
pub const METADATA_LIMITS: (usize, usize, usize) = (64, 256, 4096);
/// Most env entries a sandbox may have, and most bytes of all of them together
/// (`KEY=VALUE` and a NUL each, as the runtime writes them).
pub const ENV_LIMITS: (usize, usize) = (256, 64 << 10);

/// The name of the built-in template, which cannot be imported over.
pub const DEFAULT_TEMPLATE: &str = "default";

/// Whether `name` can name a template: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn is_valid_template_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a disk size against `MIN_DISK_MB..=max`.
pub fn check_disk_mb(mb: u32, max: u32) -> Result<(), String> {
    if (MIN_DISK_MB..=max).contains(&mb) {
        return Ok(());
    }
    Err(format!("diskMb must be between {MIN_DISK_MB} and {max}, got {mb}"))
}

/// Checks a time to live against [`TIMEOUT_MS_RANGE`].
pub fn check_timeout_ms(ms: u64) -> Result<(), String> {
    if TIMEOUT_MS_RANGE.contains(&ms) {
        return Ok(());
    }
    Err(format!("timeoutMs must be between {} and {}, got {ms}", TIMEOUT_MS_RANGE.start(), TIMEOUT_MS_RANGE.end()))
}

/// Checks a process limit against [`PIDS_RANGE`].
pub fn check_pids(pids: u32) -> Result<(), String> {
    if PIDS_RANGE.contains(&pids) {
        return Ok(());
    }
    Err(format!("pids must be between {} and {}, got {pids}", PIDS_RANGE.start(), PIDS_RANGE.end()))
}

/// Checks metadata against [`METADATA_LIMITS`].
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), String> {
    let (entries, key, value) = METADATA_LIMITS;
    if metadata.len() > entries || metadata.iter().any(|(k, v)| k.len() > key || v.len() > value) {
        return Err(format!("metadata: at most {entries} entries, keys up to {key} and values up to {value} bytes"));
    }
    Ok(())
}

/// Checks a sandbox's env: [`ENV_LIMITS`], names `[A-Za-z_][A-Za-z0-9_]*`, no NUL in
/// values. Before this a 1 MiB value reached the OCI runtime, which could not start the
/// agent: a 500 after the runner waited 10 s for it.
pub fn check_envs(envs: &BTreeMap<String, String>) -> Result<(), String> {
    let (entries, bytes) = ENV_LIMITS;
    if envs.len() > entries {
        return Err(format!("envs: at most {entries} entries, got {}", envs.len()));
    }
    if let Some(k) = envs.keys().find(|k| !is_env_name(k)) {
        return Err(format!("env name {k:?} must be letters, digits and _, not starting with a digit"));
    }
    if let Some(k) = envs.iter().find(|(_, v)| v.contains('\0')).map(|(k, _)| k) {
        return Err(format!("env {k}: values cannot contain NUL"));
    }
    let total: usize = envs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    if total > bytes {
        return Err(format!("envs: at most {bytes} bytes in all (KEY=VALUE and a NUL each), got {total}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envs_are_checked_against_their_limits() {
        let ok: BTreeMap<String, String> = [("FOO".into(), "bar".into()), ("_x1".into(), String::new())].into();
        assert_eq!(check_envs(&ok), Ok(()));
        for bad in ["", "1A", "A-B", "A=B", "A B", "Ä"] {
            let e = check_envs(&[(bad.to_string(), "v".to_string())].into()).expect_err(bad);
            assert!(e.contains("env name"), "{e}");
        }
        let nul = check_envs(&[("A".into(), "a\0b".into())].into()).expect_err("NUL");
        assert!(nul.contains("NUL"), "{nul}");
        let big = check_envs(&[("A".into(), "x".repeat(1 << 20))].into()).expect_err("1 MiB");
        assert!(big.contains("65536 bytes"), "{big}");
        let many: BTreeMap<String, String> = (0..257).map(|i| (format!("V{i}"), String::new())).collect();
        assert!(check_envs(&many).expect_err("257").contains("at most 256 entries"));
        let full: BTreeMap<String, String> = [("A".into(), "x".repeat((64 << 10) - 3))].into();
        assert_eq!(check_envs(&full), Ok(()), "exactly at the limit");
    }

    #[test]
    fn a_disk_size_is_checked_against_the_minimum_and_the_given_maximum() {
        assert_eq!(check_disk_mb(16, 1024), Ok(()));
        assert_eq!(check_disk_mb(1024, 1024), Ok(()));
        assert_eq!(check_disk_mb(15, 1024), Err("diskMb must be between 16 and 1024, got 15".to_string()));
        assert_eq!(check_disk_mb(1025, 1024), Err("diskMb must be between 16 and 1024, got 1025".to_string()));
        assert_eq!(check_disk_mb(DEFAULT_DISK_MB, DEFAULT_MAX_DISK_MB), Ok(()), "the defaults agree");
    }

    #[test]
    fn template_names_are_short_and_plain() {
        for ok in ["default", "py-3_12", &"a".repeat(64)] {
            assert!(is_valid_template_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "..", "a b", "ü", &"a".repeat(65)] {
            assert!(!is_valid_template_name(bad), "{bad}");
        }
    }
}
