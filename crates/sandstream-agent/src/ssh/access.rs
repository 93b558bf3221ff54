//! Who may log in over SSH: the access file the runtime writes (`--ssh-access-file`),
//! read again at every attempt, so a new or revoked credential applies at once.
//!
//! One entry per line, fields split by single spaces; `#` starts a comment line:
//!
//! ```text
//! password USER EXPIRES_MS SHA256_HEX_OF_THE_PASSWORD
//! key USER EXPIRES_MS ALGORITHM BASE64 [COMMENT]
//! ```
//!
//! `EXPIRES_MS` is a Unix time in milliseconds after which the entry no longer works
//! (`0`: as long as the sandbox lives). Passwords are stored as their SHA-256 only: the
//! service hands out long random ones, so the file never holds what logs in.
//! Unreadable or malformed lines are skipped (and logged); a missing file lets no one in.

use std::path::Path;

use russh::keys::PublicKey;
use sha2::{Digest, Sha256};

/// The largest access file read; past it, nothing is read and no one gets in.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug)]
enum Secret {
    Password([u8; 32]),
    Key(Box<PublicKey>),
}

#[derive(Debug)]
struct Entry {
    user: String,
    expires_ms: i64,
    secret: Secret,
}

/// The entries of one reading of the file.
#[derive(Debug, Default)]
pub(crate) struct Access {
    entries: Vec<Entry>,
}

impl Access {
    /// Reads `path`; a missing, unreadable or oversized file is no entries.
    pub(crate) fn read(path: &Path) -> Access {
        use std::io::Read;
        let mut text = String::new();
        let read = std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text));
        match read {
            Ok(n) if n as u64 > MAX_FILE_BYTES => {
                tracing::warn!(path = %path.display(), "the SSH access file is over 1 MiB; no one may log in");
                Access::default()
            }
            Ok(_) => Access::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Access::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the SSH access file; no one may log in");
                Access::default()
            }
        }
    }

    pub(crate) fn parse(text: &str) -> Access {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Some(entry) => entries.push(entry),
                None => tracing::warn!(line = n + 1, "skipping a malformed line of the SSH access file"),
            }
        }
        Access { entries }
    }

    /// Whether `password` logs `user` in at `now_ms`. Every password entry is compared
    /// in full, whatever matched before, so the time taken says nothing.
    pub(crate) fn password_ok(&self, user: &str, password: &str, now_ms: i64) -> bool {
        let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let mut ok = false;
        for e in &self.entries {
            if let Secret::Password(hash) = &e.secret {
                let same = constant_time_eq(hash, &given);
                ok |= same && e.user == user && live(e.expires_ms, now_ms);
            }
        }
        ok
    }

    /// Whether `key` logs `user` in at `now_ms`.
    pub(crate) fn key_ok(&self, user: &str, key: &PublicKey, now_ms: i64) -> bool {
        self.entries.iter().any(|e| match &e.secret {
            Secret::Key(k) => e.user == user && live(e.expires_ms, now_ms) && k.key_data() == key.key_data(),
            Secret::Password(_) => false,
        })
    }
}

fn live(expires_ms: i64, now_ms: i64) -> bool {
    expires_ms == 0 || now_ms < expires_ms
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.splitn(4, ' ');
    let kind = fields.next()?;
    let user = fields.next().filter(|u| !u.is_empty() && u.len() <= 256)?.to_string();
    let expires_ms: i64 = fields.next()?.parse().ok().filter(|e| *e >= 0)?;
    let rest = fields.next()?;
    let secret = match kind {
        "password" => {
            let bytes = hex_32(rest.trim())?;
            Secret::Password(bytes)
        }
        "key" => Secret::Key(Box::new(PublicKey::from_openssh(rest.trim()).ok()?)),
        _ => return None,
    };
    Some(Entry { user, expires_ms, secret })
}

fn hex_32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(seed: u8) -> PublicKey {
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]);
        russh::keys::PrivateKey::from(pair).public_key().clone()
    }

    fn hash(p: &str) -> String {
        Sha256::digest(p.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_password_works_for_its_user_until_it_expires() {
        let a = Access::parse(&format!(
            "# comment\npassword user 2000 {}\npassword root 0 {}\n",
            hash("s3cret"),
            hash("r00t")
        ));
        assert!(a.password_ok("user", "s3cret", 1999));
        assert!(!a.password_ok("user", "s3cret", 2000), "expired");
        assert!(!a.password_ok("root", "s3cret", 1000), "another user's entry");
        assert!(!a.password_ok("user", "s3cre", 1000), "wrong password");
        assert!(a.password_ok("root", "r00t", i64::MAX), "0 never expires");
        assert!(!a.password_ok("user", "r00t", 1000), "root's password is not user's");
    }

    #[test]
    fn a_key_works_for_its_user_only() {
        let key = public(1);
        let other = public(2);
        let line = key.to_openssh().expect("openssh");
        let a = Access::parse(&format!("key user 0 {line} a comment\n"));
        assert!(a.key_ok("user", &key, 5));
        assert!(!a.key_ok("root", &key, 5));
        assert!(!a.key_ok("user", &other, 5));
        assert!(!a.password_ok("user", "", 5), "a key entry is no password");
    }

    #[test]
    fn malformed_lines_are_skipped_and_the_rest_still_works() {
        let text = format!(
            "password user 0 nothex\npassword user -5 {h}\nkey user 0 garbage\nfoo user 0 x\npassword  0 {h}\npassword user 0 {h}\n",
            h = hash("pw")
        );
        let a = Access::parse(&text);
        assert_eq!(a.entries.len(), 1);
        assert!(a.password_ok("user", "pw", 1));
    }

    #[test]
    fn a_missing_file_lets_no_one_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Access::read(&dir.path().join("absent"));
        assert!(!a.password_ok("user", "", 1));
        std::fs::write(dir.path().join("big"), vec![b'#'; (MAX_FILE_BYTES + 10) as usize]).expect("write");
        assert!(Access::read(&dir.path().join("big")).entries.is_empty());
    }
}
