//! Who may read what on the HTTP side: roles and their scope, the access rule of each route,
//! API tokens (`rie_<id>_<secret>`, stored hashed by `store::api_tokens`), and the gate that
//! checks every request against its route's rule ([`gate`]).
//!
//! Roles (the text form is what tokens store and `--role` takes):
//! - `noc`: every site's status, flows, episodes, national views; no finance;
//! - `ministry:<name>`: the same for the sites of that ministry (its name as in the inventory);
//!   another ministry's site answers 404, as if it did not exist;
//! - `finance`: cost and resilience indicators and reports; no traffic, no top talkers;
//! - `technician:<site>`: one site's status, links and episodes;
//! - `admin`: everything;
//! - `metrics`: `/metrics` only (Prometheus).
//!
//! People log in through OpenID Connect (`oidc`) and get a server-side session (`session`);
//! their role comes from the provider's claims by `[auth.roles]`.
//!
//! May import `store` (token and session rows), `inventory` (scopes), `metrics`; `api`
//! imports it.

pub mod audit;
pub mod gate;
pub mod limit;
pub mod local;
pub mod oidc;
pub mod session;

use std::fmt;

use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::inventory::Inventory;
use rie_proto::SiteId;

/// A role with its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Noc,
    Ministry(String),
    Finance,
    Technician(SiteId),
    Admin,
    Metrics,
}

/// A role without its scope: what a route's rule lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Noc,
    Ministry,
    Finance,
    Technician,
    Admin,
    Metrics,
}

impl Role {
    /// Parses the text form, checking the scope against `inv` (a ministry with no site, or a
    /// site not in the inventory, is refused: a typo would give a token that sees nothing).
    ///
    /// # Errors
    /// A message that says what is accepted.
    pub fn parse(text: &str, inv: &Inventory) -> Result<Self, String> {
        let role = match text.split_once(':') {
            None => match text {
                "noc" => Role::Noc,
                "finance" => Role::Finance,
                "admin" => Role::Admin,
                "metrics" => Role::Metrics,
                _ => return Err(format!("unknown role {text:?}; use noc, finance, admin, metrics, ministry:<name> or technician:<site>")),
            },
            Some(("ministry", m)) => {
                if !inv.sites.iter().any(|s| s.ministry == m) {
                    return Err(format!(
                        "no site of the inventory belongs to ministry {m:?}; write its name as in sites.csv"
                    ));
                }
                Role::Ministry(m.to_string())
            }
            Some(("technician", s)) => {
                let id = SiteId::new(s).map_err(|e| format!("technician:{s}: {e}"))?;
                if inv.site(&id).is_none() {
                    return Err(format!("technician:{s}: no such site in the inventory"));
                }
                Role::Technician(id)
            }
            Some((k, _)) => {
                return Err(format!(
                    "unknown scoped role {k:?}; use ministry:<name> or technician:<site>"
                ))
            }
        };
        Ok(role)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Role::Noc => Kind::Noc,
            Role::Ministry(_) => Kind::Ministry,
            Role::Finance => Kind::Finance,
            Role::Technician(_) => Kind::Technician,
            Role::Admin => Kind::Admin,
            Role::Metrics => Kind::Metrics,
        }
    }

    /// True when the role sees only some sites.
    pub fn is_scoped(&self) -> bool {
        matches!(self, Role::Ministry(_) | Role::Technician(_))
    }

    /// Whether the inventory's site number `index` is within the role's scope.
    pub fn sees_site_at(&self, inv: &Inventory, index: usize) -> bool {
        match self {
            Role::Ministry(m) => inv.sites.get(index).is_some_and(|s| &s.ministry == m),
            Role::Technician(id) => inv.sites.get(index).is_some_and(|s| &s.id == id),
            _ => true,
        }
    }

    /// Whether `site` is within the role's scope.
    pub fn sees_site(&self, inv: &Inventory, site: &str) -> bool {
        match self {
            // The inventory's index, not a scan: lists call this once per site.
            Role::Ministry(m) => SiteId::new(site)
                .ok()
                .and_then(|id| inv.site(&id))
                .is_some_and(|s| &s.ministry == m),
            Role::Technician(id) => id.as_str() == site,
            _ => true,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Noc => f.write_str("noc"),
            Role::Ministry(m) => write!(f, "ministry:{m}"),
            Role::Finance => f.write_str("finance"),
            Role::Technician(s) => write!(f, "technician:{s}"),
            Role::Admin => f.write_str("admin"),
            Role::Metrics => f.write_str("metrics"),
        }
    }
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, or `open` when the API runs without authentication.
    pub name: String,
    pub role: Role,
}

/// The rule of one route: the roles that may read it (none: public), and whether its path
/// names a site (`{site_id}`), which a scoped role must see or get 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub roles: &'static [Kind],
    pub site_param: bool,
    /// Every granted request is written to the audit trail (finance data, exports).
    pub audited: bool,
}

impl Access {
    /// Anyone, with or without a token (health checks, the page's static files).
    pub const PUBLIC: Access = Access {
        roles: &[],
        site_param: false,
        audited: false,
    };

    pub const fn roles(roles: &'static [Kind]) -> Self {
        Self {
            roles,
            site_param: false,
            audited: false,
        }
    }

    /// `roles`, for a route whose path names a site.
    pub const fn site(roles: &'static [Kind]) -> Self {
        Self {
            roles,
            site_param: true,
            audited: false,
        }
    }

    /// The same rule, each granted request written to the audit trail.
    pub const fn audited(self) -> Self {
        Self {
            audited: true,
            ..self
        }
    }

    pub fn is_public(&self) -> bool {
        self.roles.is_empty()
    }

    pub fn allows(&self, role: &Role) -> bool {
        self.is_public() || self.roles.contains(&role.kind())
    }
}

// --- configuration (`[auth]` of the collector config file) ---

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Whether every non-public route needs a token. Default: required unless the API listens
    /// on loopback without a proxy in front (a single machine, the demo), where it stays open.
    #[serde(default)]
    pub required: Option<bool>,
    /// Login of people through an OpenID Connect provider (`[auth.oidc]`; off when absent).
    #[serde(default)]
    pub oidc: Option<oidc::OidcConfig>,
    /// How the provider's claims give a role (`[[auth.roles.map]]`).
    #[serde(default)]
    pub roles: oidc::RolesConfig,
    /// Failed authentications (API) or hellos (probes) per source address and minute before
    /// the address is refused for the rest of the minute; 0: no limit.
    #[serde(default = "default_max_failures")]
    pub max_failures_per_minute: u32,
    /// Days the audit trail is kept.
    #[serde(default = "default_audit_days")]
    pub audit_retention_days: u32,
}

fn default_max_failures() -> u32 {
    30
}
fn default_audit_days() -> u32 {
    400
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: None,
            oidc: None,
            roles: Default::default(),
            max_failures_per_minute: default_max_failures(),
            audit_retention_days: default_audit_days(),
        }
    }
}

impl AuthConfig {
    /// # Errors
    /// The offending key and its fix.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=3_660).contains(&self.audit_retention_days) {
            return Err((
                "auth.audit_retention_days",
                format!(
                    "{} is not 1 to 3660; e.g. 400 (a year and a month)",
                    self.audit_retention_days
                ),
            ));
        }
        Ok(())
    }

    /// The effective rule for an API listening on `listen`, `behind_proxy` or not.
    pub fn required(&self, listen: std::net::SocketAddr, behind_proxy: bool) -> bool {
        self.required
            .unwrap_or(!listen.ip().is_loopback() || behind_proxy)
    }
}

// --- tokens ---

/// Creates a token of `role` named `name` in the store (only the secret's hash is kept);
/// returns (id, the text the client presents, shown once). Used by `token create` and the demo.
///
/// # Errors
/// Database errors.
pub fn issue_token(
    reader: &crate::store::Reader,
    name: &str,
    role: &Role,
    now_ms: i64,
    expires_ms: Option<i64>,
) -> Result<(String, String), crate::store::StoreError> {
    let (id, secret, text) = new_token();
    crate::store::api_tokens::insert(
        reader,
        &crate::store::api_tokens::TokenRow {
            id: id.clone(),
            name: name.to_string(),
            role: role.to_string(),
            secret_sha256: hash_secret(&secret),
            created_ms: now_ms,
            expires_ms,
            revoked_ms: None,
        },
    )?;
    Ok((id, text))
}

/// A new token: (id, secret, the text the client presents).
pub fn new_token() -> (String, String, String) {
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let text = format!("rie_{id}_{secret}");
    (id, secret, text)
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Splits `rie_<12 hex>_<64 hex>` into (id, secret); None for anything else.
pub fn parse_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("rie_")?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 12) && hex(secret, 64)).then_some((id, secret))
}

/// Equality of two digests in time independent of where they differ.
pub fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Parses a validity such as `90d`, `12h` or `30m`.
///
/// # Errors
/// A message with an example.
pub fn parse_validity(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("--expires {text:?}: write a number of days, hours or minutes, e.g. 90d");
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        _ => return Err(bad()),
    };
    if n == 0 || n > 3_660 * 86_400 / secs {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_compare() {
        let (id, secret, text) = new_token();
        assert_eq!(parse_token(&text), Some((id.as_str(), secret.as_str())));
        for bad in [
            "",
            "rie_",
            "rie_abc_def",
            "xyz_0123456789ab_",
            &text[..text.len() - 1],
            &format!("{text}0"),
            &text.replace("rie_", "RIE_"),
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        let h = hash_secret(&secret);
        assert!(same_digest(&h, &hash_secret(&secret)));
        assert!(!same_digest(&h, &hash_secret("other")));
        assert!(!same_digest(&h, &h[1..]));
    }

    #[test]
    fn validity() {
        assert_eq!(parse_validity("90d").unwrap().as_secs(), 90 * 86_400);
        assert_eq!(parse_validity("12h").unwrap().as_secs(), 12 * 3_600);
        for bad in ["", "d", "0d", "90", "90w", "-1d", "99999d"] {
            assert!(parse_validity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_only_on_loopback_without_a_proxy() {
        let c = AuthConfig::default();
        assert!(!c.required("127.0.0.1:8480".parse().unwrap(), false));
        assert!(c.required("127.0.0.1:8480".parse().unwrap(), true));
        assert!(c.required("0.0.0.0:8443".parse().unwrap(), false));
        let forced = AuthConfig {
            required: Some(true),
            ..AuthConfig::default()
        };
        assert!(forced.required("127.0.0.1:8480".parse().unwrap(), false));
    }
}
