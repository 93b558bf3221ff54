//! Sandbox tokens at rest. A token opens its sandbox's agent, which the server hands out
//! on `/connection`, so the server must be able to read it back: it is stored sealed
//! (XChaCha20-Poly1305, a fresh random nonce each time) with a key kept outside the
//! database, in `token-key` (mode 0600) in the data dir. A copy of the database alone (a
//! backup, a dump, a file another host user could once read) hands out no working token.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// What a sealed value starts with; anything else is a value stored before sealing
/// (read as it is, and sealed when written again).
const PREFIX: &str = "seal1:";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("token key {path}: {source}")]
    Key { path: String, source: std::io::Error },
    #[error("token key {0} is not {KEY_LEN} bytes of hex")]
    BadKey(String),
    #[error("random bytes: {0}")]
    Random(String),
    #[error("a sealed value of {0} does not open with this data dir's token key")]
    Open(String),
}

/// Seals and opens values with the data dir's key. `context` binds a sealed value to
/// what it belongs to (the sandbox id), so one row's value cannot be moved to another.
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The key in `path`, created (0600, random) when missing.
    pub(crate) fn from_key_file(path: &Path) -> Result<Sealer, SealError> {
        let err = |source| SealError::Key { path: path.display().to_string(), source };
        let key = match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = hex::decode(text.trim()).map_err(|_| SealError::BadKey(path.display().to_string()))?;
                if key.len() != KEY_LEN {
                    return Err(SealError::BadKey(path.display().to_string()));
                }
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; KEY_LEN];
                getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
                let mut f =
                    std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(path).map_err(err)?;
                f.write_all(format!("{}\n", hex::encode(&key)).as_bytes()).map_err(err)?;
                f.sync_all().map_err(err)?;
                key
            }
            Err(e) => return Err(err(e)),
        };
        Ok(Sealer::new(&key))
    }

    pub(crate) fn new(key: &[u8]) -> Sealer {
        let mut k = [0u8; KEY_LEN];
        let n = key.len().min(KEY_LEN);
        k[..n].copy_from_slice(&key[..n]);
        Sealer { cipher: XChaCha20Poly1305::new(&k.into()) }
    }

    /// `value` sealed for `context`, as text for a TEXT column.
    pub(crate) fn seal(&self, context: &str, value: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: value.as_bytes(), aad: context.as_bytes() })
            .map_err(|_| SealError::Random("encryption failed".into()))?;
        Ok(format!("{PREFIX}{}{}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// The value `stored` holds for `context`: opened when sealed, as it is when stored
    /// before sealing existed.
    pub(crate) fn open(&self, context: &str, stored: &str) -> Result<String, SealError> {
        let Some(body) = stored.strip_prefix(PREFIX) else { return Ok(stored.to_string()) };
        let bad = || SealError::Open(context.to_string());
        let bytes = hex::decode(body).map_err(|_| bad())?;
        if bytes.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: context.as_bytes() })
            .map_err(|_| bad())?;
        String::from_utf8(plain).map_err(|_| bad())
    }

    /// Whether `stored` is sealed (not a value from before sealing).
    pub(crate) fn is_sealed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let s = Sealer::new(&[7u8; 32]);
        let sealed = s.seal("sb-0000000001", "token-abc").expect("seal");
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.contains("token-abc"), "{sealed}");
        assert_eq!(s.open("sb-0000000001", &sealed).expect("open"), "token-abc");
        // Another row's context, another key, or a changed byte: refused.
        assert!(s.open("sb-0000000002", &sealed).is_err());
        assert!(Sealer::new(&[8u8; 32]).open("sb-0000000001", &sealed).is_err());
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        assert!(s.open("sb-0000000001", &String::from_utf8(tampered).expect("hex")).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, s.seal("sb-0000000001", "token-abc").expect("seal"));
        // A value stored before sealing reads as it is.
        assert_eq!(s.open("sb-0000000001", "plain-token").expect("plain"), "plain-token");
    }

    #[test]
    fn the_key_file_is_made_private_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token-key");
        let a = Sealer::from_key_file(&path).expect("create");
        let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(&path).expect("stat")) & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = a.seal("x", "v").expect("seal");
        let b = Sealer::from_key_file(&path).expect("read");
        assert_eq!(b.open("x", &sealed).expect("open"), "v");
        std::fs::write(&path, "not hex").expect("write");
        assert!(matches!(Sealer::from_key_file(&path), Err(SealError::BadKey(_))));
    }
}
