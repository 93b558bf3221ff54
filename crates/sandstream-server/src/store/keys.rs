//! Keys and sessions in SQLite.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::error::Result;
use super::interface::KeyStore;
use super::rows::{KeyRow, Principal, key_row, principal_row};

impl KeyStore for Store {
    fn insert_key(&self, id: &str, name: &str, hash: &str, admin: bool, now: i64) -> Result<()> {
        self.db().execute(
            "INSERT INTO keys (id, name, hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, name, hash, admin, now],
        )?;
        Ok(())
    }

    fn admin_key_exists(&self) -> Result<bool> {
        Ok(self
            .db()
            .query_row("SELECT COUNT(*) FROM keys WHERE admin = 1 AND revoked = 0", [], |r| r.get::<_, i64>(0))?
            > 0)
    }

    fn key_by_hash(&self, hash: &str) -> Result<Option<Principal>> {
        Ok(self
            .db()
            .query_row("SELECT id, admin FROM keys WHERE hash = ?1 AND revoked = 0", [hash], principal_row)
            .optional()?)
    }

    fn list_keys(&self) -> Result<Vec<KeyRow>> {
        let db = self.db();
        let mut st = db.prepare("SELECT id, name, admin, created_at, revoked FROM keys ORDER BY created_at")?;
        let rows = st.query_map([], key_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn revoke_key(&self, id: &str) -> Result<bool> {
        let db = self.db();
        let n = db.execute("UPDATE keys SET revoked = 1 WHERE id = ?1 AND revoked = 0", [id])?;
        db.execute("DELETE FROM sessions WHERE key_id = ?1", [id])?;
        Ok(n > 0)
    }

    fn insert_session(&self, hash: &str, key_id: &str, kind: &str, expires_at: i64) -> Result<()> {
        self.db().execute(
            "INSERT INTO sessions (hash, key_id, kind, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, key_id, kind, expires_at],
        )?;
        Ok(())
    }

    fn session(&self, hash: &str, kind: &str, now: i64) -> Result<Option<Principal>> {
        let db = self.db();
        let found = db
            .query_row(
                "SELECT k.id, k.admin FROM sessions s JOIN keys k ON k.id = s.key_id
                 WHERE s.hash = ?1 AND s.kind = ?2 AND s.expires_at > ?3 AND k.revoked = 0",
                params![hash, kind, now],
                principal_row,
            )
            .optional()?;
        if kind == "login" {
            // Only the login link: a session read as a login link must not end.
            db.execute("DELETE FROM sessions WHERE hash = ?1 AND kind = 'login'", [hash])?;
        }
        Ok(found)
    }

    fn delete_session(&self, hash: &str) -> Result<bool> {
        Ok(self.db().execute("DELETE FROM sessions WHERE hash = ?1 AND kind = 'session'", [hash])? > 0)
    }
}
