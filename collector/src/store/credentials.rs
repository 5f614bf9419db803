//! Probe credentials: each site's probe presents a random secret token; the collector keeps
//! only its SHA-256, keyed by the site's `credential_ref` from the inventory. Tokens are 256-bit
//! random values, so a fast hash is enough (no password stretching needed: there is nothing to
//! brute-force), and issuing a new token for a site replaces, and so revokes, the old one.

use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

/// A new random token: 32 bytes, hex-encoded.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Stores the hash of `token` for `credential_ref`, replacing any previous one.
///
/// # Errors
/// Database errors.
pub fn store(
    conn: &Connection,
    credential_ref: &str,
    token: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO probe_credentials(credential_ref, token_sha256, issued_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(credential_ref) DO UPDATE SET token_sha256 = excluded.token_sha256, issued_ms = excluded.issued_ms",
        params![credential_ref, hash_token(token), now_ms],
    )?;
    Ok(())
}

/// Issues `tokens` (credential ref, token) in the store `cfg` names, in one transaction: what
/// `probe-config` and the simulator's fleet enrol with, on either backend. Migrates the schema
/// first (or refuses a newer one). PostgreSQL runs on `handle`: call it from a plain thread or
/// `spawn_blocking`, never from an async task.
///
/// # Errors
/// [`StoreError`]: the database cannot be opened or written.
pub fn issue(
    cfg: &super::StoreConfig,
    data_dir: &std::path::Path,
    handle: &tokio::runtime::Handle,
    tokens: &[(String, String)],
    now_ms: i64,
) -> Result<(), super::StoreError> {
    match cfg.backend {
        super::config::Backend::Postgres => {
            let pg = cfg.postgres.as_ref().ok_or(super::StoreError::PgSetup {
                key: "store.postgres.url",
                message: "store.backend = \"postgres\" needs [store.postgres] with a url".into(),
            })?;
            drop(super::postgres::PgStore::open(pg, handle)?);
            super::postgres::read::PgReader::open(pg, handle)?.store_tokens(tokens, now_ms)
        }
        super::config::Backend::Sqlite => {
            let mut conn = super::open(&data_dir.join("rie.db"))?;
            let tx = conn.transaction()?;
            for (credential_ref, token) in tokens {
                store(&tx, credential_ref, token, now_ms)?;
            }
            tx.commit()?;
            Ok(())
        }
    }
}

/// Outcome of checking a presented token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// No credential was ever issued for this site.
    NotEnrolled,
    Mismatch,
}

/// Checks `token` against the stored hash for `credential_ref`.
///
/// # Errors
/// Database errors.
pub fn verify(conn: &Connection, credential_ref: &str, token: &str) -> rusqlite::Result<Verdict> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT token_sha256 FROM probe_credentials WHERE credential_ref = ?1",
            [credential_ref],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match stored {
        None => Verdict::NotEnrolled,
        // Comparing digests, not secrets: timing reveals nothing about the token.
        Some(h) if h == hash_token(token) => Verdict::Accepted,
        Some(_) => Verdict::Mismatch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_token_is_accepted_and_no_token_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        assert_eq!(
            verify(&conn, "probe-S1", "x").unwrap(),
            Verdict::NotEnrolled
        );
        let t1 = new_token();
        store(&conn, "probe-S1", &t1, 1).unwrap();
        assert_eq!(verify(&conn, "probe-S1", &t1).unwrap(), Verdict::Accepted);
        let t2 = new_token();
        store(&conn, "probe-S1", &t2, 2).unwrap();
        assert_eq!(verify(&conn, "probe-S1", &t1).unwrap(), Verdict::Mismatch);
        assert_eq!(verify(&conn, "probe-S1", &t2).unwrap(), Verdict::Accepted);
        let stored: String = conn
            .query_row("SELECT token_sha256 FROM probe_credentials", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_ne!(stored, t2);
        assert_eq!(stored.len(), 64);
    }
}
