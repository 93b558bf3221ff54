//! SSH access to a sandbox: the credentials the server hands its runner, their checks,
//! and the line each becomes in the sandbox's access file (the agent's format: `ssh`
//! in the agent crate, and PROTOCOL.md "SSH").

use serde::{Deserialize, Serialize};

/// The users a credential may log in as: the sandbox's user, or root inside it.
pub const SSH_USERS: [&str; 2] = ["user", "root"];
/// Most public keys a sandbox is created with.
pub const MAX_SSH_KEYS: usize = 16;
/// Most bytes of one public key line (an RSA-16384 key is about 2.8 KB).
pub const MAX_SSH_KEY_BYTES: usize = 8192;
/// Most credentials one sandbox's access file holds: a password credential is added per
/// `ssh-access` call; past this the oldest passwords give way.
pub const MAX_SSH_CREDENTIALS: usize = 64;

/// What proves a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub enum SshSecret {
    /// The SHA-256 of a password, 64 lowercase hex digits: the password itself is never
    /// stored, by the server, the runner or the sandbox.
    PasswordSha256(String),
    /// An OpenSSH public key line: `ALGORITHM BASE64 [COMMENT]`.
    PublicKey(String),
}

/// One credential of a sandbox's SSH access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshCredential {
    /// Who it logs in as ([`SSH_USERS`]).
    pub user: String,
    /// When it stops working (milliseconds since the Unix epoch); absent: as long as the
    /// sandbox lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub secret: SshSecret,
}

/// `POST /sandboxes/{id}/ssh-access` on a runner's control API: credentials added to the
/// sandbox's access file (expired ones are dropped from it at the same time).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddSshAccess {
    pub credentials: Vec<SshCredential>,
}

/// Checks an OpenSSH public key line as given at create: one line of
/// `ALGORITHM BASE64 [COMMENT]` with a known algorithm. The agent parses it in full; a
/// key it cannot parse lets no one in.
pub fn check_public_key(line: &str) -> Result<(), String> {
    const ALGORITHMS: [&str; 8] = [
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-dss",
    ];
    if line.len() > MAX_SSH_KEY_BYTES {
        return Err(format!("sshKeys: a key is at most {MAX_SSH_KEY_BYTES} bytes, got {}", line.len()));
    }
    if line.contains(|c: char| c.is_control()) {
        return Err("sshKeys: a key is one line, without control characters".into());
    }
    let mut words = line.split(' ');
    let (algorithm, data) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if !ALGORITHMS.contains(&algorithm) || data.is_empty() {
        return Err(format!(
            "sshKeys: {:?} is not an OpenSSH public key (`ssh-ed25519 AAAA… comment`, as in ~/.ssh/id_ed25519.pub)",
            truncate(line)
        ));
    }
    let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
    if data.len() < 16 || !data.chars().all(base64) {
        return Err(format!("sshKeys: the key data of {:?} is not base64", truncate(line)));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

impl SshCredential {
    /// Checks what the access file's format needs: a known user, a sane expiry, and a
    /// secret of the right shape.
    pub fn check(&self) -> Result<(), String> {
        if !SSH_USERS.contains(&self.user.as_str()) {
            return Err(format!("SSH user must be one of {SSH_USERS:?}, got {:?}", self.user));
        }
        if self.expires_at.is_some_and(|t| t <= 0) {
            return Err("an SSH credential's expiresAt must be a positive time".into());
        }
        match &self.secret {
            SshSecret::PasswordSha256(h) => {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err("passwordSha256 must be 64 lowercase hex digits".into());
                }
                Ok(())
            }
            SshSecret::PublicKey(line) => check_public_key(line),
        }
    }

    /// Whether it no longer works at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now_ms)
    }

    /// Its line in the access file (without the newline); call [`SshCredential::check`]
    /// first.
    pub fn access_line(&self) -> String {
        let expires = self.expires_at.unwrap_or(0);
        match &self.secret {
            SshSecret::PasswordSha256(h) => format!("password {} {expires} {h}", self.user),
            SshSecret::PublicKey(k) => format!("key {} {expires} {k}", self.user),
        }
    }

    /// The credential a line of the access file holds (the inverse of
    /// [`SshCredential::access_line`]); None for anything else.
    pub fn from_access_line(line: &str) -> Option<SshCredential> {
        let mut f = line.splitn(4, ' ');
        let (kind, user, expires, rest) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let expires: i64 = expires.parse().ok()?;
        let secret = match kind {
            "password" => SshSecret::PasswordSha256(rest.to_string()),
            "key" => SshSecret::PublicKey(rest.to_string()),
            _ => return None,
        };
        let c = SshCredential { user: user.to_string(), expires_at: (expires != 0).then_some(expires), secret };
        c.check().ok().map(|()| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl4b2VzdGVzdGtleWRhdGExMjM0NTY3ODkwYWJj me@laptop";

    #[test]
    fn lines_go_both_ways_and_bad_ones_are_refused() {
        let pw = SshCredential {
            user: "user".into(),
            expires_at: Some(1_700_000_000_000),
            secret: SshSecret::PasswordSha256("ab".repeat(32)),
        };
        let key = SshCredential { user: "root".into(), expires_at: None, secret: SshSecret::PublicKey(KEY.into()) };
        for c in [&pw, &key] {
            assert_eq!(c.check(), Ok(()));
            assert_eq!(SshCredential::from_access_line(&c.access_line()).as_ref(), Some(c));
        }
        assert_eq!(key.access_line(), format!("key root 0 {KEY}"));
        assert!(pw.expired(1_700_000_000_000) && !pw.expired(1_699_999_999_999) && !key.expired(i64::MAX));
        let bad_user = SshCredential { user: "admin".into(), ..key.clone() };
        assert!(bad_user.check().expect_err("admin").contains("one of"));
        let bad_hash = SshCredential { secret: SshSecret::PasswordSha256("AB".repeat(32)), ..pw.clone() };
        assert!(bad_hash.check().is_err());
        for line in [
            "ssh-ed25519",
            "ssh-foo AAAAC3NzaC1lZDI1NTE5AAAA",
            "ssh-ed25519 AAAA\nkey root 0 x",
            "ssh-ed25519 !!!!!!!!!!!!!!!!!!",
        ] {
            assert!(check_public_key(line).is_err(), "{line:?}");
        }
    }
}
