//! Login of people through an OpenID Connect provider (LemonLDAP::NG, ProConnect, Keycloak…):
//! the `[auth.oidc]` and `[auth.roles]` configuration, provider discovery, the authorization
//! request (code flow, PKCE S256, `state`, `nonce`, `acr_values`), the code exchange, the ID
//! token's checks (signature against the provider's JWKS, cached and fetched again when a
//! token names an unknown `kid`; issuer, audience, expiry, nonce), the optional (signed)
//! userinfo, the mapping of claims to a [`Role`], and the RP-initiated logout URL.
//!
//! The protocol is the `openidconnect` crate's: no JWT is parsed or checked by hand here.
//! Sessions are `session`'s business, routes `api`'s. May import `auth` (roles), `inventory`
//! (to check the configured roles), `store` (nothing directly), `metrics` types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJsonWebKeySet, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::reqwest::async_http_client;
use openidconnect::{
    AuthenticationContextClass, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, IdToken, IdTokenFields, IssuerUrl,
    LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use super::Role;
use crate::inventory::Inventory;

/// Claims beyond the standard ones (ProConnect's `usual_name`, `siret`, `idp_id`, a
/// provider's `groups`…): kept whole, for the role mapping and `/auth/me`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl openidconnect::AdditionalClaims for ExtraClaims {}

type Fields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
    CoreJsonWebKeyType,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type Client = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
    CoreJsonWebKeyType,
    CoreJsonWebKeyUse,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenType,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
>;
type ProviderIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
    CoreJsonWebKeyType,
>;

/// Signature algorithms accepted for ID tokens and signed userinfo (never HS*, never none).
const ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
];

/// The JWKS is fetched again for an unknown `kid` at most this often (a flood of tokens with
/// random key ids must not become a flood of requests to the provider).
const JWKS_REFETCH: Duration = Duration::from_secs(10);

/// The longest wait for one answer of the provider (discovery, token, JWKS, userinfo): a
/// provider that hangs is a provider down, at start-up as at login.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// The callback path: `redirect_url` must end with it.
pub const CALLBACK_PATH: &str = "/auth/callback";

// --- configuration ---

/// `[auth.oidc]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer, exactly as its discovery document says (`iss` of its tokens).
    pub issuer: String,
    pub client_id: String,
    /// The client secret, or (better) `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// This collector's callback as registered at the provider: `https://HOST/auth/callback`.
    pub redirect_url: String,
    /// Where the provider sends the browser after logout (registered there too); the status
    /// page when absent.
    #[serde(default)]
    pub post_logout_redirect_url: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Authentication levels asked for (ProConnect: `eidas1`).
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Read the userinfo endpoint too: `off`, `json`, or `signed` (a JWT checked against the
    /// JWKS, as ProConnect answers).
    #[serde(default)]
    pub userinfo: UserInfoMode,
    /// A signed userinfo must carry `iss` and `aud` (this provider's, this client's), as
    /// ProConnect's does. Some providers (LemonLDAP::NG 2.16) sign it without them: `false`
    /// then, the signature and the subject (the ID token's) still checked.
    #[serde(default = "default_true")]
    pub userinfo_iss_aud: bool,
    /// The claim that names the person in sessions and logs.
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// A session unused this long ends.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after login, used or not.
    #[serde(default = "default_absolute", with = "humantime_serde")]
    pub session_absolute: Duration,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("client_secret_file", &self.client_secret_file)
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("acr_values", &self.acr_values)
            .field("userinfo", &self.userinfo)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserInfoMode {
    #[default]
    Off,
    Json,
    Signed,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn default_true() -> bool {
    true
}
fn default_name_claim() -> String {
    "email".into()
}
pub(crate) fn default_idle() -> Duration {
    Duration::from_secs(30 * 60)
}
pub(crate) fn default_absolute() -> Duration {
    Duration::from_secs(12 * 3600)
}

/// `[auth.roles]`: how claims become a role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// Tried in order; the first that matches gives the role. No match: the login is refused.
    #[serde(default)]
    pub map: Vec<RoleRule>,
}

/// `[[auth.roles.map]] claim = "groups", value = "noc", role = "noc"`: the claim equals the
/// value, or is a list holding it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub claim: String,
    pub value: String,
    pub role: String,
}

fn url_ok(
    key: &'static str,
    text: &str,
) -> Result<openidconnect::url::Url, (&'static str, String)> {
    let u = openidconnect::url::Url::parse(text).map_err(|e| {
        (
            key,
            format!("{text:?} is not a URL ({e}); write e.g. \"https://sso.example.gouv.fr/\""),
        )
    })?;
    let loopback = matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
        return Err((
            key,
            format!("{text:?} must be https (plain http only on loopback, for tests)"),
        ));
    }
    Ok(u)
}

impl OidcConfig {
    /// Checks what can be checked without I/O.
    ///
    /// # Errors
    /// The key at fault and how to fix it.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        url_ok("auth.oidc.issuer", &self.issuer)?;
        let r = url_ok("auth.oidc.redirect_url", &self.redirect_url)?;
        if r.path() != CALLBACK_PATH {
            return Err((
                "auth.oidc.redirect_url",
                format!(
                    "{:?} must end with {CALLBACK_PATH} (this collector's callback), e.g. \"https://rie-telemetry.example.gouv.fr{CALLBACK_PATH}\"",
                    self.redirect_url
                ),
            ));
        }
        if let Some(p) = &self.post_logout_redirect_url {
            url_ok("auth.oidc.post_logout_redirect_url", p)?;
        }
        if self.client_id.trim().is_empty() {
            return Err((
                "auth.oidc.client_id",
                "is empty; write the client id the provider gave at registration".into(),
            ));
        }
        match (&self.client_secret, &self.client_secret_file) {
            (None, None) => {
                return Err((
                    "auth.oidc.client_secret_file",
                    "is missing; name the file holding the client secret (or set client_secret)"
                        .into(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err((
                    "auth.oidc.client_secret",
                    "is set together with client_secret_file; keep one".into(),
                ))
            }
            _ => {}
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err((
                "auth.oidc.scopes",
                "must include \"openid\", e.g. scopes = [\"openid\", \"email\", \"profile\"]"
                    .into(),
            ));
        }
        if self.session_idle.is_zero() || self.session_idle > self.session_absolute {
            return Err((
                "auth.oidc.session_idle",
                "must be more than 0 and at most session_absolute, e.g. session_idle = \"30m\", session_absolute = \"12h\"".into(),
            ));
        }
        Ok(())
    }
}

// --- errors and metrics ---

/// Why the login machinery could not start: a configuration to fix.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct OidcStartError {
    pub key: String,
    pub message: String,
}

/// Why a login failed; [`LoginError::reason`] is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the identity provider does not answer ({0}); existing sessions and API tokens keep working; try again later")]
    ProviderDown(String),
    #[error("the identity provider refused the authorization code ({0})")]
    CodeRefused(String),
    #[error("the provider's answer has no ID token")]
    NoIdToken,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token's signature does not verify against the provider's keys ({0})")]
    BadSignature(String),
    #[error("the ID token is not for this collector ({0})")]
    BadClaims(String),
    #[error("the userinfo answer was refused ({0})")]
    UserInfo(String),
    #[error(
        "no [[auth.roles.map]] rule matches this person's claims; ask an administrator for a role"
    )]
    NoRole,
}

impl LoginError {
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::ProviderDown(_) => "provider_down",
            LoginError::CodeRefused(_) => "code_refused",
            LoginError::NoIdToken => "no_id_token",
            LoginError::Expired => "expired",
            LoginError::BadSignature(_) => "bad_signature",
            LoginError::BadClaims(_) => "bad_claims",
            LoginError::UserInfo(_) => "userinfo",
            LoginError::NoRole => "no_role",
        }
    }
}

/// Logins by result, and JWKS fetches.
pub struct OidcMetrics {
    pub logins: IntCounterVec,
    pub jwks_fetches: IntCounter,
}

impl OidcMetrics {
    /// # Panics
    /// Never in practice: the names are static and unique.
    pub fn new() -> Self {
        Self {
            logins: IntCounterVec::new(
                Opts::new(
                    "rie_collector_oidc_logins_total",
                    "OpenID Connect logins by result: ok, or the reason of a refusal (no_login, login_expired, state_mismatch, provider_error, malformed, code_refused, no_id_token, expired, bad_signature, bad_claims, userinfo, no_role, provider_down, store_down).",
                ),
                &["result"],
            )
            .expect("valid metric"),
            jwks_fetches: IntCounter::new(
                "rie_collector_oidc_jwks_fetches_total",
                "Fetches of the provider's JWKS (at start-up, then for a token naming an unknown key).",
            )
            .expect("valid metric"),
        }
    }

    /// # Errors
    /// A name already registered.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.logins.clone()))?;
        registry.register(Box::new(self.jwks_fetches.clone()))
    }
}

impl Default for OidcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

// --- the provider ---

struct Provider {
    metadata: ProviderMetadataWithLogout,
    client: Client,
}

/// A started login: where to send the browser, and what the callback needs.
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// A person the provider vouched for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub name: String,
    pub role: Role,
    /// Every claim of the ID token (and of the userinfo when read).
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub id_token: String,
}

pub struct Oidc {
    cfg: OidcConfig,
    secret: ClientSecret,
    roles: Vec<(String, String, Role)>,
    /// None until discovery succeeds (a provider down at start-up is tried again at the next
    /// login).
    provider: tokio::sync::RwLock<Option<Provider>>,
    last_jwks_fetch: Mutex<Option<Instant>>,
    pub metrics: OidcMetrics,
    /// Cookies carry `Secure` (the API is served over TLS, here or at a proxy).
    pub secure: bool,
}

impl Oidc {
    /// Reads the secret, checks the role rules against the inventory, and discovers the
    /// provider. A provider that does not answer is not an error (logins say so until it
    /// does); one that answers with a wrong document or another issuer is.
    ///
    /// # Errors
    /// [`OidcStartError`] naming the key and the fix.
    pub async fn start(
        cfg: OidcConfig,
        roles: &RolesConfig,
        inventory: &Inventory,
        secure: bool,
    ) -> Result<Self, OidcStartError> {
        let err = |key: &str, message: String| OidcStartError {
            key: key.to_string(),
            message,
        };
        cfg.validate().map_err(|(k, m)| err(k, m))?;
        let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| {
                    err(
                        "auth.oidc.client_secret_file",
                        format!(
                            "{}: {e}; write the client secret in that file (mode 0600)",
                            path.display()
                        ),
                    )
                })?
                .trim()
                .to_string(),
            (None, None) => String::new(),
        };
        if roles.map.is_empty() {
            return Err(err(
                "auth.roles.map",
                "is empty while [auth.oidc] is set: nobody could get a role; add e.g. [[auth.roles.map]] claim = \"groups\", value = \"noc\", role = \"noc\"".into(),
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in roles.map.iter().enumerate() {
            let role = Role::parse(&r.role, inventory)
                .map_err(|m| err(&format!("auth.roles.map[{i}].role"), m))?;
            if role == Role::Metrics {
                return Err(err(
                    &format!("auth.roles.map[{i}].role"),
                    "metrics is for Prometheus's token, not for people; use noc, finance, admin, ministry:<name> or technician:<site>".into(),
                ));
            }
            rules.push((r.claim.clone(), r.value.clone(), role));
        }
        let oidc = Self {
            secret: ClientSecret::new(secret),
            roles: rules,
            provider: tokio::sync::RwLock::new(None),
            last_jwks_fetch: Mutex::new(None),
            metrics: OidcMetrics::new(),
            secure,
            cfg,
        };
        match oidc.discover().await {
            Ok(p) => *oidc.provider.write().await = Some(p),
            Err(Discovery::Down(e)) => {
                tracing::warn!(issuer = %oidc.cfg.issuer, error = %e, "identity provider unreachable at start-up; logins will say so until it answers");
            }
            Err(Discovery::Wrong(m)) => return Err(err("auth.oidc.issuer", m)),
        }
        Ok(oidc)
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    async fn discover(&self) -> Result<Provider, Discovery> {
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| Discovery::Wrong(format!("{:?}: {e}", self.cfg.issuer)))?;
        let metadata = tokio::time::timeout(
            PROVIDER_TIMEOUT,
            ProviderMetadataWithLogout::discover_async(issuer, async_http_client),
        )
        .await
        .map_err(|_| Discovery::Down(format!("no answer within {PROVIDER_TIMEOUT:?}")))?
        .map_err(|e| match e {
                openidconnect::DiscoveryError::Request(e) => Discovery::Down(e.to_string()),
                other => Discovery::Wrong(format!(
                    "the discovery document at {}/.well-known/openid-configuration is not usable ({}); write the issuer exactly as the provider publishes it",
                    self.cfg.issuer.trim_end_matches('/'),
                    chain(&other)
                )),
            })?;
        self.metrics.jwks_fetches.inc();
        let client = self.client(&metadata)?;
        Ok(Provider { metadata, client })
    }

    fn client(&self, metadata: &ProviderMetadataWithLogout) -> Result<Client, Discovery> {
        let redirect = RedirectUrl::new(self.cfg.redirect_url.clone())
            .map_err(|e| Discovery::Wrong(e.to_string()))?;
        Ok(Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.cfg.client_id.clone()),
            Some(self.secret.clone()),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider, discovered now if it was not.
    async fn provider(&self) -> Result<tokio::sync::RwLockReadGuard<'_, Provider>, LoginError> {
        {
            let guard = self.provider.read().await;
            if let Ok(p) = tokio::sync::RwLockReadGuard::try_map(guard, Option::as_ref) {
                return Ok(p);
            }
        }
        let p = self.discover().await.map_err(|e| match e {
            Discovery::Down(m) | Discovery::Wrong(m) => LoginError::ProviderDown(m),
        })?;
        let mut w = self.provider.write().await;
        *w = Some(p);
        let r = tokio::sync::RwLockWriteGuard::downgrade(w);
        tokio::sync::RwLockReadGuard::try_map(r, Option::as_ref)
            .map_err(|_| LoginError::ProviderDown("not discovered".into()))
    }

    /// The authorization request: code flow, PKCE S256, fresh `state` and `nonce`.
    ///
    /// # Errors
    /// [`LoginError::ProviderDown`] when the provider was never discovered and still does not
    /// answer.
    pub async fn begin(&self) -> Result<Started, LoginError> {
        let p = self.provider().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = p
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for s in self.cfg.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        for a in &self.cfg.acr_values {
            req = req.add_auth_context_value(AuthenticationContextClass::new(a.clone()));
        }
        let (url, state, nonce) = req.url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code, checks the ID token (and the userinfo when configured), maps the
    /// claims to a role.
    ///
    /// # Errors
    /// [`LoginError`]: each refusal with its reason.
    pub async fn finish(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, LoginError> {
        tokio::time::timeout(
            PROVIDER_TIMEOUT * 3,
            self.finish_inner(code, nonce, pkce_verifier),
        )
        .await
        .map_err(|_| {
            LoginError::ProviderDown(format!("no answer within {:?}", PROVIDER_TIMEOUT * 3))
        })?
    }

    async fn finish_inner(
        &self,
        code: &str,
        nonce: &str,
        pkce_verifier: &str,
    ) -> Result<Identity, LoginError> {
        let tokens = {
            let p = self.provider().await?;
            p.client
                .exchange_code(AuthorizationCode::new(code.to_string()))
                .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
                .request_async(async_http_client)
                .await
                .map_err(|e| match e {
                    RequestTokenError::Request(e) => LoginError::ProviderDown(e.to_string()),
                    RequestTokenError::ServerResponse(r) => {
                        LoginError::CodeRefused(r.error().to_string())
                    }
                    other => LoginError::CodeRefused(chain(&other)),
                })?
        };
        let id_token = tokens.id_token().ok_or(LoginError::NoIdToken)?.clone();
        let nonce = Nonce::new(nonce.to_string());
        let mut claims = match self.verify(&id_token, &nonce).await {
            Err(LoginError::BadSignature(m)) if m == NO_KEY => {
                // A key the cached JWKS does not hold: the provider may have rotated its keys.
                if self.refresh_jwks().await? {
                    self.verify(&id_token, &nonce).await?
                } else {
                    return Err(LoginError::BadSignature(m));
                }
            }
            other => other?,
        };
        if self.cfg.userinfo != UserInfoMode::Off {
            let p = self.provider().await?;
            let subject = claims
                .get("sub")
                .and_then(|s| s.as_str())
                .map(|s| openidconnect::SubjectIdentifier::new(s.to_string()));
            let info: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> = p
                .client
                .user_info(tokens.access_token().clone(), subject)
                .map_err(|e| LoginError::UserInfo(e.to_string()))?
                .require_signed_response(self.cfg.userinfo == UserInfoMode::Signed)
                .require_issuer_match(self.cfg.userinfo_iss_aud)
                .require_audience_match(self.cfg.userinfo_iss_aud)
                .request_async(async_http_client)
                .await
                .map_err(|e| LoginError::UserInfo(chain(&e)))?;
            if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&info) {
                claims.extend(m);
            }
        }
        let role = self.role_of(&claims).ok_or(LoginError::NoRole)?;
        let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let subject = text("sub").unwrap_or_default();
        let name = text(&self.cfg.name_claim).unwrap_or_else(|| subject.clone());
        Ok(Identity {
            subject,
            name,
            role,
            claims,
            id_token: id_token.to_string(),
        })
    }

    async fn verify(
        &self,
        id_token: &ProviderIdToken,
        nonce: &Nonce,
    ) -> Result<serde_json::Map<String, serde_json::Value>, LoginError> {
        let p = self.provider().await?;
        let mut verifier = p.client.id_token_verifier().set_allowed_algs(ALGS.to_vec());
        if !self.cfg.acr_values.is_empty() {
            // The level asked for must be the level obtained (ProConnect's `eidas1`).
            let asked = self.cfg.acr_values.clone();
            verifier = verifier.set_auth_context_verifier_fn(move |acr| match acr {
                Some(a) if asked.iter().any(|x| x == a.as_str()) => Ok(()),
                Some(a) => Err(format!("acr {:?} is not one of {asked:?}", a.as_str())),
                None => Err(format!("no acr claim; asked for {asked:?}")),
            });
        }
        let claims = id_token.claims(&verifier, nonce).map_err(|e| match e {
            ClaimsVerificationError::Expired(_) => LoginError::Expired,
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => LoginError::BadSignature(NO_KEY.into()),
            ClaimsVerificationError::SignatureVerification(s) => {
                LoginError::BadSignature(s.to_string())
            }
            ClaimsVerificationError::NoSignature => LoginError::BadSignature(e.to_string()),
            other => LoginError::BadClaims(other.to_string()),
        })?;
        match serde_json::to_value(claims) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(LoginError::BadClaims("claims are not an object".into())),
        }
    }

    /// Fetches the JWKS again (at most every [`JWKS_REFETCH`]); true when it was fetched.
    async fn refresh_jwks(&self) -> Result<bool, LoginError> {
        {
            let mut last = self
                .last_jwks_fetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let uri = {
            let p = self.provider().await?;
            p.metadata.jwks_uri().clone()
        };
        let jwks = CoreJsonWebKeySet::fetch_async(&uri, async_http_client)
            .await
            .map_err(|e| LoginError::ProviderDown(chain(&e)))?;
        self.metrics.jwks_fetches.inc();
        let mut w = self.provider.write().await;
        if let Some(p) = w.as_mut() {
            p.metadata = p.metadata.clone().set_jwks(jwks);
            p.client = self
                .client(&p.metadata)
                .map_err(|_| LoginError::ProviderDown("client".into()))?;
        }
        Ok(true)
    }

    /// The first rule whose claim matches.
    pub fn role_of(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Option<Role> {
        self.roles.iter().find_map(|(claim, value, role)| {
            let hit = match claims.get(claim) {
                Some(serde_json::Value::String(s)) => s == value,
                Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(value)),
                Some(serde_json::Value::Number(n)) => n.to_string() == *value,
                Some(serde_json::Value::Bool(b)) => b.to_string() == *value,
                _ => false,
            };
            hit.then(|| role.clone())
        })
    }

    /// The provider's logout URL for a session that logged in with `id_token`, when the
    /// provider publishes an `end_session_endpoint`.
    pub async fn logout_url(&self, id_token: &str) -> Option<String> {
        let guard = self.provider.read().await;
        let p = guard.as_ref()?;
        let endpoint = p
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut req =
            LogoutRequest::from(endpoint).set_client_id(ClientId::new(self.cfg.client_id.clone()));
        if let Ok(t) = id_token.parse::<ProviderIdToken>() {
            req = req.set_id_token_hint(&t);
        }
        if let Some(u) = self
            .cfg
            .post_logout_redirect_url
            .as_ref()
            .and_then(|u| openidconnect::url::Url::parse(u).ok())
        {
            req = req.set_post_logout_redirect_uri(PostLogoutRedirectUrl::from_url(u));
        }
        Some(req.http_get_url().to_string())
    }

    /// The claims shown by `/auth/me`: what names the person and places them (ProConnect's
    /// included), never the tokens.
    pub fn shown_claims(
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> BTreeMap<String, serde_json::Value> {
        const SHOWN: &[&str] = &[
            "sub",
            "email",
            "name",
            "given_name",
            "family_name",
            "usual_name",
            "preferred_username",
            "siret",
            "idp_id",
            "acr",
            "groups",
        ];
        claims
            .iter()
            .filter(|(k, _)| SHOWN.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

const NO_KEY: &str = "no key of the provider's JWKS matches the token's key id";

enum Discovery {
    /// No answer (connection refused, timeout): try again later.
    Down(String),
    /// An answer that cannot be right: a configuration to fix.
    Wrong(String),
}

/// An error with its sources, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OidcConfig {
        toml::from_str(
            r#"issuer = "https://sso.example.gouv.fr"
client_id = "rie"
client_secret = "s3cret"
redirect_url = "https://rie.example.gouv.fr/auth/callback""#,
        )
        .unwrap()
    }

    #[test]
    fn config_is_checked_with_key_and_fix() {
        assert!(cfg().validate().is_ok());
        assert!(!format!("{:?}", cfg()).contains("s3cret"));
        let mut c = cfg();
        c.issuer = "http://sso.example.gouv.fr".into();
        assert_eq!(c.validate().unwrap_err().0, "auth.oidc.issuer");
        let mut c = cfg();
        c.redirect_url = "https://rie.example.gouv.fr/callback".into();
        let (k, m) = c.validate().unwrap_err();
        assert_eq!(k, "auth.oidc.redirect_url");
        assert!(m.contains("/auth/callback"), "{m}");
        let mut c = cfg();
        c.client_secret = None;
        assert_eq!(c.validate().unwrap_err().0, "auth.oidc.client_secret_file");
        let mut c = cfg();
        c.scopes = vec!["email".into()];
        assert_eq!(c.validate().unwrap_err().0, "auth.oidc.scopes");
        let mut c = cfg();
        c.session_idle = Duration::from_secs(13 * 3600);
        assert_eq!(c.validate().unwrap_err().0, "auth.oidc.session_idle");
    }

    #[test]
    fn the_collector_config_carries_oidc_and_roles() {
        let text = r#"[auth]
required = true

[auth.oidc]
issuer = "https://sso.example.gouv.fr"
client_id = "rie-telemetry"
client_secret_file = "/etc/rie-collector/oidc-secret"
redirect_url = "https://rie-telemetry.example.gouv.fr/auth/callback"
acr_values = ["eidas1"]
userinfo = "signed"
session_idle = "30m"
session_absolute = "12h"

[[auth.roles.map]]
claim = "groups"
value = "noc"
role = "noc"
"#;
        let cfg: crate::config::CollectorConfig = toml::from_str(text).unwrap();
        cfg.validate().unwrap();
        let o = cfg.auth.oidc.as_ref().unwrap();
        assert_eq!(o.session_idle, Duration::from_secs(1800));
        assert_eq!(o.userinfo, UserInfoMode::Signed);
        assert_eq!(cfg.auth.roles.map.len(), 1);
        let bad: crate::config::CollectorConfig =
            toml::from_str(&text.replace("/auth/callback", "/cb")).unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("auth.oidc.redirect_url"), "{e}");
        assert!(toml::from_str::<crate::config::CollectorConfig>(
            &text.replace("userinfo", "user_info")
        )
        .is_err());
    }
}
