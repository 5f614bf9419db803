//! Server-side sessions of people logged in with OpenID Connect: the `rie_session` cookie
//! (256 random bits, hex; `HttpOnly`, `SameSite=Lax`, `Secure` under TLS, `Path=/`), whose
//! SHA-256 names a row of `store::api_sessions`; the idle and absolute timeouts; revocation
//! at logout. Rows are read through a one-second cache, like API tokens, so that a logout on
//! any collector of a shared database takes effect everywhere within a second (at once on
//! the collector that served it). The last use is written at most every [`TOUCH_EVERY`] (or a
//! tenth of the idle timeout, if shorter), not at every request.
//!
//! Also the short-lived `rie_login` cookie that binds a login in progress to its browser.
//! May import `store` (rows) and `auth`; `api` imports it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore;

use super::{hash_secret, Principal, Role};
use crate::inventory::Inventory;
use crate::store::api_sessions::{self, SessionRow};
use crate::store::{Reader, StoreError};

pub const COOKIE: &str = "rie_session";
pub const LOGIN_COOKIE: &str = "rie_login";

/// How long a login may take between `/auth/login` and `/auth/callback`.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// The last use is written at most this often.
pub const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The longest `Cookie` header read; a longer one is refused as malformed.
pub const MAX_COOKIE_HEADER: usize = 4096;

const CACHE_TTL: Duration = Duration::from_secs(1);
const MAX_CACHED: usize = 10_000;

/// Why a session cookie was refused; the gate counts these by the same reasons as tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    Malformed,
    Unknown,
    /// Absolute or idle timeout.
    Expired,
    Revoked,
    /// The role stored no longer parses against the inventory.
    Forbidden,
    StoreDown,
}

pub struct Sessions {
    reader: Arc<Reader>,
    inventory: Arc<Inventory>,
    idle: Duration,
    absolute: Duration,
    secure: bool,
    cache: Mutex<HashMap<String, (Option<SessionRow>, Instant)>>,
}

/// A new random cookie value (64 hex digits) and its SHA-256.
pub fn new_secret() -> (String, String) {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let v = hex::encode(b);
    let h = hash_secret(&v);
    (v, h)
}

/// The value of cookie `name` in the request's `Cookie` headers: Ok(None) when absent,
/// Err(()) when the header is oversized or not text, or the value is not 64 hex digits.
#[allow(clippy::result_unit_err)]
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let mut found = None;
    for h in headers.get_all(header::COOKIE) {
        let text = h.to_str().map_err(|_| ())?;
        if text.len() > MAX_COOKIE_HEADER {
            return Err(());
        }
        for part in text.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name {
                    found = Some(v);
                }
            }
        }
    }
    match found {
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Some(v)),
        Some(_) => Err(()),
        None => Ok(None),
    }
}

impl Sessions {
    pub fn new(
        reader: Arc<Reader>,
        inventory: Arc<Inventory>,
        idle: Duration,
        absolute: Duration,
        secure: bool,
    ) -> Self {
        Self {
            reader,
            inventory,
            idle,
            absolute,
            secure,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<SessionRow>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a session for this person; returns the cookie value.
    ///
    /// # Errors
    /// The store's.
    pub async fn create(
        &self,
        name: String,
        role: &Role,
        subject: String,
        claims_json: String,
        id_token: String,
    ) -> Result<String, StoreError> {
        let (value, hash) = new_secret();
        let now = rie_common::now_ms();
        let row = SessionRow {
            id_sha256: hash,
            name,
            role: role.to_string(),
            subject,
            claims_json,
            id_token,
            created_ms: now,
            last_seen_ms: now,
            expires_ms: now + ms(self.absolute),
            revoked_ms: None,
        };
        let reader = self.reader.clone();
        blocking(move || api_sessions::insert(&reader, &row)).await?;
        Ok(value)
    }

    async fn row(&self, hash: &str) -> Result<Option<SessionRow>, SessionRefusal> {
        let now = Instant::now();
        if let Some((row, at)) = self.lock().get(hash) {
            if now.duration_since(*at) < CACHE_TTL {
                return Ok(row.clone());
            }
        }
        let reader = self.reader.clone();
        let key = hash.to_string();
        let row = blocking(move || api_sessions::get(&reader, &key))
            .await
            .map_err(|_| SessionRefusal::StoreDown)?;
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(hash.to_string(), (row.clone(), now));
        Ok(row)
    }

    /// The live session of a cookie value, and its principal.
    ///
    /// # Errors
    /// [`SessionRefusal`].
    pub async fn check(&self, value: &str) -> Result<(SessionRow, Principal), SessionRefusal> {
        let hash = hash_secret(value);
        let row = self.row(&hash).await?.ok_or(SessionRefusal::Unknown)?;
        let now = rie_common::now_ms();
        if row.revoked_ms.is_some_and(|r| r <= now) {
            return Err(SessionRefusal::Revoked);
        }
        if row.expires_ms <= now || row.last_seen_ms + ms(self.idle) <= now {
            return Err(SessionRefusal::Expired);
        }
        let role =
            Role::parse(&row.role, &self.inventory).map_err(|_| SessionRefusal::Forbidden)?;
        let touch_every = ms(TOUCH_EVERY.min(self.idle / 10));
        if now - row.last_seen_ms >= touch_every {
            let reader = self.reader.clone();
            let key = hash.clone();
            // Best effort: a failed write only shortens the session.
            if blocking(move || api_sessions::touch(&reader, &key, now))
                .await
                .is_ok()
            {
                if let Some((Some(r), _)) = self.lock().get_mut(&hash) {
                    r.last_seen_ms = now;
                }
            }
        }
        let principal = Principal {
            name: row.name.clone(),
            role,
        };
        Ok((row, principal))
    }

    /// Revokes the session of a cookie value; returns its row when it was live.
    ///
    /// # Errors
    /// The store's.
    pub async fn revoke(&self, value: &str) -> Result<Option<SessionRow>, StoreError> {
        let hash = hash_secret(value);
        let reader = self.reader.clone();
        let key = hash.clone();
        let row = blocking(move || {
            let row = api_sessions::get(&reader, &key)?;
            let live = api_sessions::revoke(&reader, &key, rie_common::now_ms())?;
            Ok(row.filter(|_| live))
        })
        .await?;
        self.lock().remove(&hash);
        Ok(row)
    }

    /// `Set-Cookie` for a new session.
    pub fn set_cookie(&self, value: &str) -> HeaderValue {
        self.cookie_header(COOKIE, value, "/", self.absolute.as_secs())
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie_header(COOKIE, "", "/", 0)
    }

    /// `Set-Cookie` for a login in progress (sent back to `/auth/callback` only).
    pub fn set_login_cookie(&self, value: &str) -> HeaderValue {
        self.cookie_header(LOGIN_COOKIE, value, "/auth", LOGIN_TTL.as_secs())
    }

    pub fn clear_login_cookie(&self) -> HeaderValue {
        self.cookie_header(LOGIN_COOKIE, "", "/auth", 0)
    }

    fn cookie_header(&self, name: &str, value: &str, path: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        );
        // Only hex digits, digits and fixed ASCII: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

/// Runs a store call off the async workers (the PostgreSQL read side blocks).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::Closed)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_strictly() {
        let mut h = HeaderMap::new();
        assert_eq!(cookie(&h, COOKIE), Ok(None));
        let v = "a".repeat(64);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={v}")).unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Ok(Some(v.as_str())));
        for bad in [
            format!("{COOKIE}={}", "a".repeat(63)),
            format!("{COOKIE}={}g", "a".repeat(63)),
            format!("{COOKIE}={}; pad={}", "a".repeat(64), "x".repeat(5000)),
        ] {
            h.insert(header::COOKIE, HeaderValue::from_str(&bad).unwrap());
            assert_eq!(cookie(&h, COOKIE), Err(()), "{bad}");
        }
    }

    fn sessions(dir: &std::path::Path, secure: bool) -> Sessions {
        let inv = crate::inventory::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/inventory"),
        )
        .unwrap();
        drop(crate::store::SqliteStore::open(&dir.join("rie.db")).unwrap());
        let reader = Arc::new(Reader::open(&dir.join("rie.db")).unwrap());
        Sessions::new(
            reader,
            Arc::new(inv),
            Duration::from_secs(60),
            Duration::from_secs(3600),
            secure,
        )
    }

    /// A stored session of cookie `value`, last used `idle_ms` ago, ending in `left_ms`.
    fn stored(s: &Sessions, value: &str, idle_ms: i64, left_ms: i64, revoked: bool) {
        let now = rie_common::now_ms();
        let row = SessionRow {
            id_sha256: hash_secret(value),
            name: "agent@example.gouv.fr".into(),
            role: "noc".into(),
            subject: "agent".into(),
            claims_json: "{}".into(),
            id_token: String::new(),
            created_ms: now - 1_000_000,
            last_seen_ms: now - idle_ms,
            expires_ms: now + left_ms,
            revoked_ms: revoked.then_some(now - 1),
        };
        api_sessions::insert(s.reader(), &row).unwrap();
    }

    #[tokio::test]
    async fn sessions_end_when_idle_at_their_end_and_at_logout() {
        let dir = tempfile::tempdir().unwrap();
        let s = sessions(dir.path(), false);
        let value = s
            .create(
                "agent@example.gouv.fr".into(),
                &Role::Finance,
                "agent".into(),
                "{}".into(),
                "t".into(),
            )
            .await
            .unwrap();
        let (_, p) = s.check(&value).await.unwrap();
        assert_eq!(
            (p.name.as_str(), p.role),
            ("agent@example.gouv.fr", Role::Finance)
        );

        let (idle, ended, revoked, used) = (
            "1".repeat(64),
            "2".repeat(64),
            "3".repeat(64),
            "4".repeat(64),
        );
        stored(&s, &idle, 60_001, 3_000_000, false);
        stored(&s, &ended, 0, -1, false);
        stored(&s, &revoked, 0, 3_000_000, true);
        stored(&s, &used, 30_000, 3_000_000, false);
        assert_eq!(s.check(&idle).await.unwrap_err(), SessionRefusal::Expired);
        assert_eq!(s.check(&ended).await.unwrap_err(), SessionRefusal::Expired);
        assert_eq!(
            s.check(&revoked).await.unwrap_err(),
            SessionRefusal::Revoked
        );
        assert_eq!(
            s.check(&"5".repeat(64)).await.unwrap_err(),
            SessionRefusal::Unknown
        );
        // Used 30 s ago (more than a tenth of the idle timeout): the use is recorded.
        let before = rie_common::now_ms();
        s.check(&used).await.unwrap();
        let row = api_sessions::get(s.reader(), &hash_secret(&used))
            .unwrap()
            .unwrap();
        assert!(
            row.last_seen_ms >= before,
            "{} < {before}",
            row.last_seen_ms
        );

        // Logout: refused at once on this collector (no wait for the cache).
        assert!(s.revoke(&value).await.unwrap().is_some());
        assert_eq!(s.check(&value).await.unwrap_err(), SessionRefusal::Revoked);
        assert!(s.revoke(&value).await.unwrap().is_none());
    }

    #[test]
    fn cookies_are_secure_under_tls() {
        let dir = tempfile::tempdir().unwrap();
        let v = "a".repeat(64);
        assert_eq!(
            sessions(dir.path(), true).set_cookie(&v).to_str().unwrap(),
            format!("rie_session={v}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure")
        );
        assert_eq!(
            sessions(dir.path(), false)
                .set_login_cookie(&v)
                .to_str()
                .unwrap(),
            format!("rie_login={v}; Path=/auth; Max-Age=600; HttpOnly; SameSite=Lax")
        );
        assert_eq!(
            sessions(dir.path(), true).clear_cookie().to_str().unwrap(),
            "rie_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
