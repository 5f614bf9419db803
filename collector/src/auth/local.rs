//! Local accounts of people, for sites and services without single sign-on: a name, a role
//! (the same roles as tokens and OpenID Connect), and a password kept as an Argon2id hash
//! (`store::api_accounts`). `rie-collector account create|list|set-role|reset-password|disable`
//! manages them; `POST /auth/local` (`api::login`) checks a password and opens the same
//! server-side session as an OpenID Connect login (`session`), with subject `local:<name>`, so
//! that a role change, a password reset or a disable revokes that account's sessions at once
//! (within a second on every collector: the session cache).
//!
//! Why Argon2id, when tokens use a plain SHA-256: a token's secret is 256 random bits, a
//! person's password is not, and a stolen table must not give the passwords back. Checking
//! costs about 20 MiB and tens of milliseconds of CPU, so checks run off the async workers and
//! at most [`CONCURRENT_CHECKS`] at a time: a flood of wrong passwords queues behind the
//! per-address failure limit and that bound, and never starves the API. An unknown name costs
//! the same check against a fixed hash, so that timing does not tell which names exist.
//!
//! May import `store` (account and session rows), `inventory` (roles); `api` imports it.

use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use prometheus::{IntCounterVec, Opts, Registry};
use rand::Rng;

use super::Role;
use crate::inventory::Inventory;
use crate::store::api_accounts::{self, AccountRow, Change};
use crate::store::{api_sessions, Reader, StoreError};

/// Password checks running at once, at most.
pub const CONCURRENT_CHECKS: usize = 2;

/// Sessions of local accounts carry this subject prefix.
pub const SUBJECT_PREFIX: &str = "local:";

/// Shortest password accepted from a person (a generated one is 20 characters).
pub const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 256;

/// Why an account operation or a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A name, role or password the command refuses; the message says what is accepted.
    #[error("{0}")]
    Invalid(String),
    #[error("no live account named {0:?}; see `rie-collector account list`")]
    NoSuchAccount(String),
    #[error(
        "an account named {0:?} already exists; choose another name or use `account set-role`"
    )]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks an account name: 1 to 64 of `a-z 0-9 . _ @ -`.
///
/// # Errors
/// [`LocalError::Invalid`] saying what is accepted.
pub fn validate_name(name: &str) -> Result<(), LocalError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LocalError::Invalid(format!(
            "account name {name:?}: use 1 to 64 lower-case letters, digits, '.', '_', '@' or '-', e.g. noc.cayenne"
        )))
    }
}

/// Checks a password chosen by a person.
///
/// # Errors
/// [`LocalError::Invalid`] saying what is accepted.
pub fn validate_password(password: &str) -> Result<(), LocalError> {
    let n = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        Ok(())
    } else {
        Err(LocalError::Invalid(format!(
            "the password has {n} characters; give {MIN_PASSWORD} to {MAX_PASSWORD}, or leave out --password-stdin to get a generated one"
        )))
    }
}

/// A generated password: 20 characters of an alphabet without look-alikes (about 114 bits).
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// The Argon2id hash of `password` in PHC form (a fresh salt inside).
///
/// # Errors
/// [`LocalError::Invalid`] when hashing fails (it does not with these parameters).
pub fn hash_password(password: &str) -> Result<String, LocalError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| LocalError::Invalid(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches `phc`; for an unknown account (`None`) the same work against a
/// fixed hash, then false.
pub fn verify(phc: Option<&str>, password: &str) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not an account").unwrap_or_default());
    let text = phc.unwrap_or(dummy);
    let ok = PasswordHash::new(text).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    });
    ok && phc.is_some()
}

/// Creates an account; returns its row.
///
/// # Errors
/// [`LocalError`]: a bad name or password, a name taken, the store's.
pub fn create(
    reader: &Reader,
    name: &str,
    role: &Role,
    password: &str,
    now_ms: i64,
) -> Result<AccountRow, LocalError> {
    validate_name(name)?;
    validate_password(password)?;
    if api_accounts::get(reader, name)?.is_some() {
        return Err(LocalError::Exists(name.to_string()));
    }
    let row = AccountRow {
        name: name.to_string(),
        role: role.to_string(),
        password_phc: hash_password(password)?,
        created_ms: now_ms,
        changed_ms: now_ms,
        disabled_ms: None,
    };
    api_accounts::insert(reader, &row)?;
    Ok(row)
}

/// What an account change does.
pub enum Update<'a> {
    Role(&'a Role),
    Password(&'a str),
    Disable,
}

/// Changes a live account and revokes its open sessions (they carry the old role or were
/// opened with the old password); returns how many sessions were revoked.
///
/// # Errors
/// [`LocalError`]: no such live account, a bad password, the store's.
pub fn update(
    reader: &Reader,
    name: &str,
    update: Update<'_>,
    now_ms: i64,
) -> Result<u64, LocalError> {
    let (role_text, phc);
    let change = match update {
        Update::Role(r) => {
            role_text = r.to_string();
            Change::Role(&role_text)
        }
        Update::Password(p) => {
            validate_password(p)?;
            phc = hash_password(p)?;
            Change::Password(&phc)
        }
        Update::Disable => Change::Disable,
    };
    if !api_accounts::update(reader, name, change, now_ms)? {
        return Err(LocalError::NoSuchAccount(name.to_string()));
    }
    Ok(api_sessions::revoke_subject(
        reader,
        &format!("{SUBJECT_PREFIX}{name}"),
        now_ms,
    )?)
}

/// Why a password login was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Unknown name, wrong password or disabled account: one answer for all three.
    Refused,
    /// The stored role no longer parses against the inventory.
    Forbidden,
    StoreDown,
}

/// Password logins: the bound on concurrent checks and their counter.
pub struct LocalLogins {
    checks: tokio::sync::Semaphore,
    pub logins: IntCounterVec,
}

impl LocalLogins {
    /// # Panics
    /// Never in practice: the name is static and unique.
    pub fn new() -> Self {
        Self {
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            logins: IntCounterVec::new(
                Opts::new(
                    "rie_collector_local_logins_total",
                    "Password logins of local accounts (POST /auth/local), by result: ok, refused (unknown name, wrong password or disabled account), forbidden (role no longer valid), rate_limited, malformed, store_down.",
                ),
                &["result"],
            )
            .expect("valid metric"),
        }
    }

    /// Registers the series in the collector's registry.
    ///
    /// # Errors
    /// A name already registered.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.logins.clone()))
    }

    /// Checks `name` and `password`; the account's principal name and role when they match a
    /// live account.
    ///
    /// # Errors
    /// [`LoginRefusal`].
    pub async fn authenticate(
        &self,
        reader: std::sync::Arc<Reader>,
        inventory: &Inventory,
        name: String,
        password: String,
    ) -> Result<(String, Role), LoginRefusal> {
        let _permit = self
            .checks
            .acquire()
            .await
            .map_err(|_| LoginRefusal::StoreDown)?;
        let row = tokio::task::spawn_blocking(move || {
            let row = api_accounts::get(&reader, &name)?;
            let live = row.filter(|r| r.disabled_ms.is_none());
            let ok = verify(live.as_ref().map(|r| r.password_phc.as_str()), &password);
            Ok::<_, StoreError>(live.filter(|_| ok))
        })
        .await
        .map_err(|_| LoginRefusal::StoreDown)?
        .map_err(|_| LoginRefusal::StoreDown)?
        .ok_or(LoginRefusal::Refused)?;
        let role = Role::parse(&row.role, inventory).map_err(|_| LoginRefusal::Forbidden)?;
        Ok((row.name, role))
    }
}

impl Default for LocalLogins {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let p = new_password();
        assert_eq!(p.chars().count(), 20);
        assert_ne!(p, new_password());
        let h = hash_password(&p).unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains(&p));
        assert!(verify(Some(&h), &p));
        assert!(!verify(Some(&h), &format!("{p}x")));
        assert!(!verify(None, &p));
        assert!(!verify(Some("not a hash"), &p));
        // A fresh salt each time.
        assert_ne!(h, hash_password(&p).unwrap());
    }

    #[test]
    fn names_and_passwords_are_checked() {
        validate_name("noc.cayenne").unwrap();
        validate_name("j.dupont@interieur").unwrap();
        for bad in ["", "Noc", "a b", &"x".repeat(65), "é"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_password("short").is_err());
        validate_password("twelve chars").unwrap();
    }

    #[test]
    fn changes_revoke_the_account_sessions_and_disable_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::store::SqliteStore::open(&dir.path().join("rie.db")).unwrap());
        let reader = Reader::open(&dir.path().join("rie.db")).unwrap();
        let pw = "correct horse battery";
        create(&reader, "noc.cayenne", &Role::Noc, pw, 1_000).unwrap();
        assert!(matches!(
            create(&reader, "noc.cayenne", &Role::Noc, pw, 1_000),
            Err(LocalError::Exists(_))
        ));
        let session = |id: &str| api_sessions::SessionRow {
            id_sha256: id.into(),
            name: "noc.cayenne".into(),
            role: "noc".into(),
            subject: "local:noc.cayenne".into(),
            claims_json: "{}".into(),
            id_token: String::new(),
            created_ms: 1_000,
            last_seen_ms: 1_000,
            expires_ms: 9_999_999,
            revoked_ms: None,
        };
        api_sessions::insert(&reader, &session("a")).unwrap();
        api_sessions::insert(&reader, &session("b")).unwrap();
        assert_eq!(
            update(&reader, "noc.cayenne", Update::Role(&Role::Admin), 2_000).unwrap(),
            2
        );
        let row = api_accounts::get(&reader, "noc.cayenne").unwrap().unwrap();
        assert_eq!((row.role.as_str(), row.changed_ms), ("admin", 2_000));
        assert_eq!(
            api_sessions::get(&reader, "a").unwrap().unwrap().revoked_ms,
            Some(2_000)
        );
        assert_eq!(
            update(&reader, "noc.cayenne", Update::Disable, 3_000).unwrap(),
            0
        );
        assert!(matches!(
            update(
                &reader,
                "noc.cayenne",
                Update::Password("another long one"),
                4_000
            ),
            Err(LocalError::NoSuchAccount(_))
        ));
        let row = api_accounts::get(&reader, "noc.cayenne").unwrap().unwrap();
        assert_eq!(row.disabled_ms, Some(3_000));
        assert!(verify(Some(&row.password_phc), pw));
    }
}
