//! Login of people against a real OpenID Connect provider: LemonLDAP::NG (Debian
//! `lemonldap-ng`) with its provider enabled, started here on loopback with its own
//! temporary configuration (`tests/data/lemonldap/mkconf.py`). Between the collector and the
//! provider sits a loopback relay that forwards every byte, and on demand replaces the ID
//! token of a token answer or the signed userinfo: the attacker on the back channel that an
//! expired or foreign-signed token would need.
//!
//! People log in through the real authorization endpoint without a browser (login form,
//! code, callback), get a session cookie, read exactly what the role mapped from the
//! provider's claims allows, log out (the session is refused afterwards, and the browser is
//! sent to the provider's end-session endpoint). Refused: a replayed callback, a replayed code
//! at the provider, a wrong `state`, an expired ID token, a lower `acr`, ID tokens signed by a
//! key not in the JWKS (known and unknown `kid`), a re-signed userinfo, a tampered, malformed
//! or oversized cookie, an oversized callback query, a person matching no role rule. A
//! provider that goes down: existing sessions keep working, a callback says so (503). A
//! misconfigured provider or client stops the start with the key and the fix; sessions serve
//! every collector of a shared PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rie_e2e::{free_ports, Collector};
use serde_json::Value;

const INSTALL: &str = "LemonLDAP::NG is needed: DEBIAN_FRONTEND=noninteractive apt-get install -y lemonldap-ng (plackup, openssl and python3 too)";

/// What the relay does to the next token answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tamper {
    None,
    /// The provider's own claims, `exp` in the past, signed with the provider's real key.
    Expired,
    /// Valid claims signed with another key, under the provider's key id.
    ForeignKnownKid,
    /// Valid claims signed with another key, under a key id the JWKS does not have.
    ForeignUnknownKid,
    /// The provider's own claims and key, but a lower authentication level (`acr`).
    WrongAcr,
    /// The signed userinfo answer re-signed with another key.
    ForeignUserInfo,
    /// Connections are closed at once: the provider is down.
    Down,
}

struct Provider {
    child: Child,
    dir: tempfile::TempDir,
    issuer: String,
    tamper: Arc<Mutex<Tamper>>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(INSTALL);
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RS256 JWT of `claims` under `kid`, signed with the PEM key at `key`.
fn sign(claims: &Value, kid: &str, key: &Path) -> String {
    let header = serde_json::json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = openssl(
        &["dgst", "-sha256", "-sign", &key.display().to_string()],
        input.as_bytes(),
    );
    format!("{input}.{}", B64.encode(sig))
}

fn payload(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).expect("jwt payload");
    serde_json::from_slice(&B64.decode(p).expect("base64")).expect("json")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Reads one HTTP request (head and `Content-Length` body).
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Forwards one request to the provider (one connection each: its server is HTTP/1.0) and
/// answers, the ID token replaced as `tamper` says.
fn relay(mut client: TcpStream, upstream: SocketAddr, tamper: Tamper, key: &Path, foreign: &Path) {
    let Some(req) = read_request(&mut client) else {
        return;
    };
    if tamper == Tamper::Down {
        return;
    }
    let is_token = req.starts_with(b"POST /oauth2/token");
    let is_userinfo =
        req.starts_with(b"GET /oauth2/userinfo") || req.starts_with(b"POST /oauth2/userinfo");
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    // Ask the provider to close after its answer, whatever the client asked.
    let text = String::from_utf8_lossy(&req).replace("Connection: keep-alive", "Connection: close");
    let _ = up.write_all(text.as_bytes());
    let mut resp = Vec::new();
    let _ = up.read_to_end(&mut resp);
    if is_userinfo && tamper == Tamper::ForeignUserInfo {
        if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..end]).to_string();
            let jwt = String::from_utf8_lossy(&resp[end + 4..]).trim().to_string();
            let forged = sign(&payload(&jwt), "test-key-1", foreign);
            let head: Vec<&str> = head
                .lines()
                .filter(|l| !l.to_lowercase().starts_with("content-length"))
                .collect();
            resp = format!(
                "{}\r\nContent-Length: {}\r\n\r\n{forged}",
                head.join("\r\n"),
                forged.len()
            )
            .into_bytes();
        }
    }
    if is_token && !matches!(tamper, Tamper::None | Tamper::ForeignUserInfo) {
        if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&resp[..end]).to_string();
            let mut body: Value = serde_json::from_slice(&resp[end + 4..]).unwrap_or(Value::Null);
            if let Some(real) = body["id_token"].as_str().map(str::to_string) {
                let mut claims = payload(&real);
                let forged = match tamper {
                    Tamper::Expired => {
                        claims["iat"] = (now() - 1200).into();
                        claims["exp"] = (now() - 600).into();
                        sign(&claims, "test-key-1", key)
                    }
                    Tamper::WrongAcr => {
                        claims["acr"] = "loa-0".into();
                        sign(&claims, "test-key-1", key)
                    }
                    Tamper::ForeignKnownKid => sign(&claims, "test-key-1", foreign),
                    _ => sign(&claims, "rogue-key", foreign),
                };
                body["id_token"] = forged.into();
                let body = body.to_string();
                let head: Vec<&str> = head
                    .lines()
                    .filter(|l| !l.to_lowercase().starts_with("content-length"))
                    .collect();
                resp = format!(
                    "{}\r\nContent-Length: {}\r\n\r\n{body}",
                    head.join("\r\n"),
                    body.len()
                )
                .into_bytes();
            }
        }
    }
    let _ = client.write_all(&resp);
}

/// Starts LemonLDAP::NG on `llng_port` with the client `rie` redirecting to `redirect`,
/// behind a relay whose address is the issuer.
fn start_provider(redirect: &str) -> Provider {
    for tool in ["plackup", "openssl", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} not found. {INSTALL}");
    }
    assert!(
        Path::new("/usr/share/lemonldap-ng/portal/htdocs/index.psgi").exists(),
        "{INSTALL}"
    );
    let dir = tempfile::tempdir().unwrap();
    let relay_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay_listener.local_addr().unwrap();
    let [llng] = free_ports::<1>();
    let issuer = format!("http://{relay_addr}");
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lemonldap/mkconf.py");
    let out = Command::new("python3")
        .arg(&conf)
        .arg(dir.path())
        .arg(llng.port().to_string())
        .env("LLNG_ISSUER", &issuer)
        .env("LLNG_REDIRECT", redirect)
        .output()
        .expect(INSTALL);
    assert!(
        out.status.success(),
        "mkconf: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::File::create(dir.path().join("portal.log")).unwrap();
    let child = Command::new("plackup")
        .args(["-s", "HTTP::Server::PSGI", "--host", "127.0.0.1", "--port"])
        .arg(llng.port().to_string())
        .args([
            "-E",
            "deployment",
            "/usr/share/lemonldap-ng/portal/htdocs/index.psgi",
        ])
        .env("LLNG_DEFAULTCONFFILE", dir.path().join("lemonldap-ng.ini"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect(INSTALL);
    let foreign = dir.path().join("foreign.key");
    openssl(
        &["genrsa", "-out", &foreign.display().to_string(), "2048"],
        b"",
    );
    let tamper = Arc::new(Mutex::new(Tamper::None));
    {
        let (tamper, key, foreign) = (
            tamper.clone(),
            dir.path().join("oidc-sig.key"),
            foreign.clone(),
        );
        std::thread::spawn(move || {
            for c in relay_listener.incoming().flatten() {
                let t = *tamper.lock().unwrap();
                let (key, foreign) = (key.clone(), foreign.clone());
                std::thread::spawn(move || relay(c, llng, t, &key, &foreign));
            }
        });
    }
    let p = Provider {
        child,
        dir,
        issuer,
        tamper,
    };
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = ureq::get(&format!("{}/.well-known/openid-configuration", p.issuer))
            .call()
            .is_ok();
        if ok {
            break;
        }
        assert!(
            Instant::now() < end,
            "LemonLDAP::NG did not answer within 30 s:\n{}",
            std::fs::read_to_string(p.dir.path().join("portal.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

/// A browser: cookies by name (one site at a time is enough here), no redirect followed.
#[derive(Default)]
struct Browser {
    cookies: Vec<(String, String)>,
}

struct Answer {
    status: u16,
    location: String,
    body: String,
}

impl Browser {
    fn agent() -> ureq::Agent {
        ureq::AgentBuilder::new().redirects(0).build()
    }

    fn keep(&mut self, r: &ureq::Response) {
        for sc in r.all("set-cookie") {
            let kv = sc.split(';').next().unwrap_or_default();
            if let Some((k, v)) = kv.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() && !sc.contains("Max-Age=0") {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn answer(&mut self, r: Result<ureq::Response, ureq::Error>, url: &str) -> Answer {
        let r = match r {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{url}: {e}"),
        };
        self.keep(&r);
        Answer {
            status: r.status(),
            location: r.header("location").unwrap_or_default().to_string(),
            body: r.into_string().unwrap_or_default(),
        }
    }

    fn get(&mut self, url: &str) -> Answer {
        let mut req = Self::agent().get(url);
        if !self.cookies.is_empty() {
            req = req.set("Cookie", &self.header());
        }
        let r = req.call();
        self.answer(r, url)
    }

    fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Answer {
        let mut req = Self::agent().post(url);
        if !self.cookies.is_empty() {
            req = req.set("Cookie", &self.header());
        }
        let r = req.send_form(form);
        self.answer(r, url)
    }
}

/// The value of the hidden input `name` of an HTML form.
fn hidden(form: &str, name: &str) -> Option<String> {
    let at = form.find(&format!("name=\"{name}\""))?;
    let start = form[..at].rfind("<input")?;
    let end = at + form[at..].find('>')?;
    let tag = &form[start..end];
    let v = tag.find("value=\"")? + 7;
    let len = tag[v..].find('"')?;
    Some(tag[v..v + len].replace("&amp;", "&"))
}

/// The browser starts a login at the collector and signs in at the provider as `user` (or
/// is let through by its provider session); returns the callback URL the provider sent it to.
fn authorize(c: &Collector, b: &mut Browser, provider: &mut Browser, user: &str) -> String {
    let start = b.get(&c.url("/auth/login"));
    assert_eq!(start.status, 303, "{}", start.body);
    assert!(b.cookie("rie_login").is_some());
    let authz = start.location;
    for p in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "scope=openid",
    ] {
        assert!(authz.contains(p), "{p} missing from {authz}");
    }
    let form = provider.get(&authz);
    let at_provider = if form.status == 200 {
        let mut fields: Vec<(&str, String)> = ["url", "token", "skin"]
            .iter()
            .filter_map(|n| hidden(&form.body, n).map(|v| (*n, v)))
            .collect();
        fields.push(("user", user.to_string()));
        fields.push(("password", user.to_string()));
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        provider.post(&authz, &f)
    } else {
        form
    };
    assert_eq!(
        at_provider.status, 302,
        "login at the provider: {}",
        at_provider.body
    );
    assert!(
        at_provider.location.starts_with(&c.url("/auth/callback?")),
        "{}",
        at_provider.location
    );
    at_provider.location
}

/// A full login: returns the session cookie's value.
fn login(c: &Collector, b: &mut Browser, provider: &mut Browser, user: &str) -> String {
    let cb = authorize(c, b, provider, user);
    let done = b.get(&cb);
    assert_eq!(done.status, 303, "callback: {}", done.body);
    assert_eq!(done.location, "/");
    b.cookie("rie_session").expect("session cookie")
}

fn with_cookie(c: &Collector, path: &str, cookie: &str) -> (u16, String) {
    let r = ureq::get(&c.url(path)).set("Cookie", cookie).call();
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn replace_param(url: &str, key: &str, value: &str) -> String {
    let (base, q) = url.split_once('?').unwrap();
    let q: Vec<String> = q
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == key => format!("{k}={value}"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", q.join("&"))
}

#[test]
fn people_log_in_with_lemonldap_and_forgeries_are_refused() {
    let [api] = free_ports::<1>();
    let redirect = format!("http://{api}/auth/callback");
    let provider_ctl = start_provider(&redirect);
    let issuer = provider_ctl.issuer.clone();
    let config = format!(
        r#"[auth]
required = true

[auth.oidc]
issuer = "{issuer}"
client_id = "rie"
client_secret = "rie-secret"
redirect_url = "{redirect}"
scopes = ["openid", "email", "profile", "ministry"]
acr_values = ["loa-1"]
userinfo = "signed"
# LemonLDAP::NG 2.16 signs the userinfo without iss and aud.
userinfo_iss_aud = false

[[auth.roles.map]]
claim = "groups"
value = "timelords"
role = "noc"

# A rule on another claim than groups: one person.
[[auth.roles.map]]
claim = "email"
value = "rtyler@badwolf.org"
role = "finance"
"#
    );
    let c = Collector::start_with_config_on_api(&config, api);
    c.use_token("metrics");
    assert_eq!(c.metric("rie_collector_oidc_jwks_fetches_total"), 1.0);

    // dwho (groups timelords) logs in: a session cookie with the right attributes.
    let mut b = Browser::default();
    let mut at_idp = Browser::default();
    let start = Browser::agent().get(&c.url("/auth/login")).call().unwrap();
    // The level asked for (checked against the ID token's `acr` on return).
    let authz = start.header("location").unwrap_or_default();
    assert!(authz.contains("acr_values=loa-1"), "{authz}");
    let set = start.header("set-cookie").unwrap_or_default().to_string();
    assert!(
        set.starts_with("rie_login=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Lax")
            && set.contains("Path=/auth"),
        "{set}"
    );
    let cb = authorize(&c, &mut b, &mut at_idp, "dwho");
    let r = Browser::agent()
        .get(&cb)
        .set("Cookie", &b.header())
        .call()
        .unwrap();
    assert_eq!(r.status(), 303);
    let set: Vec<&str> = r.all("set-cookie");
    let session_set = set
        .iter()
        .find(|s| s.starts_with("rie_session="))
        .expect("session cookie");
    assert!(
        session_set.contains("HttpOnly")
            && session_set.contains("SameSite=Lax")
            && session_set.contains("Path=/")
            && session_set.contains("Max-Age=43200")
            && !session_set.contains("Secure"),
        "{session_set}"
    );
    b.keep(&r);
    let dwho = format!("rie_session={}", b.cookie("rie_session").unwrap());

    // A replayed callback: the login in progress served once.
    let replay = b.get(&cb);
    assert_eq!(replay.status, 400, "{}", replay.body);

    // What noc may read, exactly; nothing of finance.
    let (s, me) = with_cookie(&c, "/auth/me", &dwho);
    assert_eq!(
        (s, me.as_str()),
        (200, r#"{"name":"dwho@badwolf.org","role":"noc"}"#)
    );
    assert_eq!(with_cookie(&c, "/api/v1/sites", &dwho).0, 200);
    assert_eq!(with_cookie(&c, "/api/v1/status", &dwho).0, 200);
    assert_eq!(
        with_cookie(&c, "/api/v1/indicators?period=2026", &dwho).0,
        403
    );
    assert_eq!(with_cookie(&c, "/metrics", &dwho).0, 403);

    // rtyler (by e-mail) is finance: the reverse.
    let mut b2 = Browser::default();
    let mut at_idp2 = Browser::default();
    let rtyler = format!("rie_session={}", login(&c, &mut b2, &mut at_idp2, "rtyler"));
    assert_eq!(
        with_cookie(&c, "/api/v1/indicators?period=2026", &rtyler).0,
        200
    );
    assert_eq!(with_cookie(&c, "/api/v1/sites", &rtyler).0, 403);
    assert_eq!(
        with_cookie(&c, "/auth/me", &rtyler).1,
        r#"{"name":"rtyler@badwolf.org","role":"finance"}"#
    );

    // msmith (earthlings, like rtyler) matches no rule: no role, no session.
    let mut b3 = Browser::default();
    let mut at_idp3 = Browser::default();
    let cb3 = authorize(&c, &mut b3, &mut at_idp3, "msmith");
    let refused = b3.get(&cb3);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("[[auth.roles.map]]"),
        "{}",
        refused.body
    );
    assert_eq!(b3.cookie("rie_session"), None);

    // A replayed code, through a new login of the same browser: refused by the provider.
    let code = cb
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let fresh = authorize(&c, &mut b, &mut at_idp, "dwho");
    let replayed = b.get(&replace_param(&fresh, "code", &code));
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert!(replayed.body.contains("invalid_grant"), "{}", replayed.body);

    // A wrong state.
    let fresh = authorize(&c, &mut b, &mut at_idp, "dwho");
    let wrong = b.get(&replace_param(&fresh, "state", "forged-state"));
    assert_eq!(wrong.status, 400, "{}", wrong.body);

    // Forged ID tokens on the back channel: expired (the provider's key), foreign key under
    // the provider's key id, foreign key under an unknown key id (the JWKS is fetched again).
    // And the signed userinfo re-signed with another key.
    for (tamper, reason, fetches) in [
        (Tamper::Expired, "expired", 1.0),
        (Tamper::ForeignUserInfo, "userinfo", 1.0),
        (Tamper::WrongAcr, "bad_claims", 1.0),
        (Tamper::ForeignKnownKid, "bad_signature", 1.0),
        (Tamper::ForeignUnknownKid, "bad_signature", 2.0),
    ] {
        let cb = authorize(&c, &mut b, &mut at_idp, "dwho");
        *provider_ctl.tamper.lock().unwrap() = tamper;
        let r = b.get(&cb);
        *provider_ctl.tamper.lock().unwrap() = Tamper::None;
        assert_eq!(r.status, 401, "{tamper:?}: {}", r.body);
        assert!(
            b.cookie("rie_session")
                .is_some_and(|v| format!("rie_session={v}") == dwho),
            "no new session for {tamper:?}"
        );
        assert_eq!(
            c.metric("rie_collector_oidc_jwks_fetches_total"),
            fetches,
            "{tamper:?} ({reason})"
        );
    }

    // Tampered, malformed and oversized cookies.
    let mut tampered = dwho.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(with_cookie(&c, "/api/v1/sites", &tampered).0, 401);
    assert_eq!(
        with_cookie(&c, "/api/v1/sites", "rie_session=not-hex").0,
        401
    );
    let big = format!("{dwho}; pad={}", "x".repeat(5000));
    assert_eq!(with_cookie(&c, "/api/v1/sites", &big).0, 401);
    assert_eq!(with_cookie(&c, "/auth/me", &tampered).0, 401);
    // An oversized callback query.
    let long = b.get(&c.url(&format!("/auth/callback?state={}", "a".repeat(9000))));
    assert_eq!(long.status, 400);

    // The provider goes down: the session keeps working; a callback says so.
    let cb = authorize(&c, &mut b, &mut at_idp, "dwho");
    *provider_ctl.tamper.lock().unwrap() = Tamper::Down;
    assert_eq!(with_cookie(&c, "/api/v1/sites", &dwho).0, 200);
    let down = b.get(&cb);
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains("does not answer"), "{}", down.body);
    *provider_ctl.tamper.lock().unwrap() = Tamper::None;

    // Logout: revoked here, then the provider's end-session endpoint with the ID token hint.
    let disc: Value = ureq::get(&format!("{issuer}/.well-known/openid-configuration"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let end_session = disc["end_session_endpoint"]
        .as_str()
        .expect("end_session_endpoint");
    let out = b.get(&c.url("/auth/logout"));
    assert_eq!(out.status, 303);
    assert!(out.location.starts_with(end_session), "{}", out.location);
    assert!(out.location.contains("id_token_hint="), "{}", out.location);
    assert_eq!(b.cookie("rie_session"), None);
    assert_eq!(with_cookie(&c, "/api/v1/sites", &dwho).0, 401);
    assert_eq!(with_cookie(&c, "/auth/me", &dwho).0, 401);
    // The other person's session is untouched.
    assert_eq!(
        with_cookie(&c, "/api/v1/indicators?period=2026", &rtyler).0,
        200
    );

    // Every result counted exactly.
    let logins = |r: &str| {
        c.metric(&format!(
            "rie_collector_oidc_logins_total{{result=\"{r}\"}}"
        ))
    };
    assert_eq!(logins("ok"), 2.0);
    assert_eq!(logins("no_login"), 1.0);
    assert_eq!(logins("code_refused"), 1.0);
    assert_eq!(logins("state_mismatch"), 1.0);
    assert_eq!(logins("expired"), 1.0);
    assert_eq!(logins("bad_signature"), 2.0);
    assert_eq!(logins("malformed"), 1.0);
    assert_eq!(logins("provider_down"), 1.0);
    assert_eq!(logins("userinfo"), 1.0);
    assert_eq!(logins("no_role"), 1.0);
    assert_eq!(logins("bad_claims"), 1.0);
    let failures = |r: &str| {
        c.metric(&format!(
            "rie_collector_api_auth_failures_total{{reason=\"{r}\"}}"
        ))
    };
    assert_eq!(failures("unknown"), 1.0);
    assert_eq!(failures("malformed"), 2.0);
    assert_eq!(failures("revoked"), 1.0);
}

/// `[auth.oidc]` with `oidc` as its body, and one role rule `role`.
fn oidc_config(dir: &Path, api: SocketAddr, oidc: &str, role: &str) -> std::path::PathBuf {
    let cfg = dir.join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\ninventory = \"{}\"\n\n[probes]\nlisten = \"127.0.0.1:0\"\n\n[tls]\npki_dir = \"{}\"\n\n[api]\nlisten = \"{api}\"\n\n[auth]\nrequired = true\n\n[auth.oidc]\n{oidc}\n\n[[auth.roles.map]]\nclaim = \"groups\"\nvalue = \"timelords\"\nrole = \"{role}\"\n",
            dir.join("data").display(),
            rie_e2e::fixture("inventory").display(),
            dir.join("pki").display(),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_misconfigured_provider_or_client_stops_the_start_with_the_key_and_fix() {
    let [api] = free_ports::<1>();
    let redirect = format!("http://{api}/auth/callback");
    let provider = start_provider(&redirect);
    let dir = tempfile::tempdir().unwrap();
    rie_e2e::run_ok(
        Command::new(rie_e2e::bin("rie-collector"))
            .args(["pki", "init", "--dir"])
            .arg(dir.path().join("pki")),
    );
    let client = format!(
        "client_id = \"rie\"\nclient_secret = \"rie-secret\"\nredirect_url = \"{redirect}\""
    );
    let iss = &provider.issuer;
    for (oidc, role, key, fix) in [
        // Another issuer than the provider's own (a trailing slash is another issuer).
        (format!("issuer = \"{iss}/\"\n{client}"), "noc", "auth.oidc.issuer", "write the issuer exactly as the provider publishes it"),
        // No provider document at all there.
        (format!("issuer = \"{iss}/realms/nowhere\"\n{client}"), "noc", "auth.oidc.issuer", "write the issuer exactly"),
        // A callback this collector does not serve.
        (format!("issuer = \"{iss}\"\nclient_id = \"rie\"\nclient_secret = \"rie-secret\"\nredirect_url = \"http://{api}/callback\""), "noc", "auth.oidc.redirect_url", "must end with /auth/callback"),
        // No secret.
        (format!("issuer = \"{iss}\"\nclient_id = \"rie\"\nredirect_url = \"{redirect}\""), "noc", "auth.oidc.client_secret_file", "name the file"),
        // A role that does not exist.
        (format!("issuer = \"{iss}\"\n{client}"), "ministry:Nowhere", "auth.roles.map[0].role", "write its name as in sites.csv"),
        // A plain-http provider off loopback.
        (format!("issuer = \"http://sso.example.gouv.fr\"\n{client}"), "noc", "auth.oidc.issuer", "must be https"),
    ] {
        let cfg = oidc_config(dir.path(), api, &oidc, role);
        let out = Command::new(rie_e2e::bin("rie-collector"))
            .env_remove("RIE_CONFIG")
            .args(["serve", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{oidc}: {err}");
        assert!(
            err.contains(&cfg.display().to_string()) && err.contains(key) && err.contains(fix),
            "{oidc}: {err}"
        );
    }
    drop(provider);

    // A provider that does not answer at start-up is no configuration error: the collector
    // starts, API tokens work, and a login says the provider does not answer.
    let [api, nowhere] = free_ports::<2>();
    let c = Collector::start_with_config_on_api(
        &format!(
            "[auth]\nrequired = true\n\n[auth.oidc]\nissuer = \"http://{nowhere}\"\nclient_id = \"rie\"\nclient_secret = \"rie-secret\"\nredirect_url = \"http://{api}/auth/callback\"\n\n[[auth.roles.map]]\nclaim = \"groups\"\nvalue = \"noc\"\nrole = \"noc\"\n"
        ),
        api,
    );
    c.use_token("admin");
    assert_eq!(c.get("/api/v1/sites").as_array().map(Vec::len), Some(3));
    let r = Browser::default().get(&c.url("/auth/login"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("does not answer"), "{}", r.body);
    assert_eq!(
        c.metric("rie_collector_oidc_logins_total{result=\"provider_down\"}"),
        1.0
    );
}

#[test]
fn a_session_serves_every_collector_of_a_shared_postgresql_and_logout_ends_it_everywhere() {
    let pg = rie_testpg::PgServer::start();
    let [api] = free_ports::<1>();
    let redirect = format!("http://{api}/auth/callback");
    let provider = start_provider(&redirect);
    let config = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n\n[auth]\nrequired = true\n\n[auth.oidc]\nissuer = \"{}\"\nclient_id = \"rie\"\nclient_secret = \"rie-secret\"\nredirect_url = \"{redirect}\"\nscopes = [\"openid\", \"email\", \"ministry\"]\n\n[[auth.roles.map]]\nclaim = \"groups\"\nvalue = \"timelords\"\nrole = \"noc\"\n",
        pg.url(),
        provider.issuer
    );
    let a = Collector::start_with_config_on_api(&config, api);
    let b = Collector::start_with_config(&config);
    let mut browser = Browser::default();
    let mut at_idp = Browser::default();
    let session = format!(
        "rie_session={}",
        login(&a, &mut browser, &mut at_idp, "dwho")
    );
    for c in [&a, &b] {
        assert_eq!(with_cookie(c, "/api/v1/sites", &session).0, 200);
        assert_eq!(
            with_cookie(c, "/api/v1/indicators?period=2026", &session).0,
            403
        );
    }
    // Logged out through A: A refuses at once, B within a second (its cache).
    let out = browser.get(&a.url("/auth/logout"));
    assert_eq!(out.status, 303);
    let at = Instant::now();
    assert_eq!(with_cookie(&a, "/api/v1/sites", &session).0, 401);
    loop {
        let s = with_cookie(&b, "/api/v1/sites", &session).0;
        if s == 401 {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            at.elapsed() < Duration::from_millis(1500),
            "B still serves the session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        pg.psql("SELECT count(*) FROM api_sessions WHERE revoked_ms IS NOT NULL")
            .trim(),
        "1"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM api_logins").trim(), "0");
}
