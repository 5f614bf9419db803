//! Local accounts of people, for sites without single sign-on (`rie-collector account …`,
//! `POST /auth/local`): a password login opens a session cookie that reads only what the
//! account's role allows — a ministry's national traffic is exactly its sites' — and every
//! refusal (unknown name, wrong password, malformed form, too many failures from one address)
//! gets its exact status, is counted and audited; a role change or a disable ends the
//! account's open sessions within a second. Runs on the backend the suite selects.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rie_e2e::{bin, run_ok, send_ok, Collector};
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

/// POST /auth/local: (status, Location, the session cookie's value if one was set, body).
fn login(c: &Collector, body: &str, accept: &str) -> (u16, Option<String>, Option<String>, String) {
    let resp = match agent()
        .post(&c.url("/auth/local"))
        .set("Content-Type", "application/x-www-form-urlencoded")
        .set("Accept", accept)
        .set("X-Forwarded-For", "192.0.2.10")
        .send_string(body)
    {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("login: {e}"),
    };
    let status = resp.status();
    let location = resp.header("location").map(String::from);
    let cookie = resp.all("set-cookie").into_iter().find_map(|c| {
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax"),
            "cookie flags: {c}"
        );
        assert!(c.contains("Secure"), "behind a TLS proxy: {c}");
        c.strip_prefix("rie_session=")
            .and_then(|v| v.split(';').next())
            .filter(|v| !v.is_empty())
            .map(String::from)
    });
    (
        status,
        location,
        cookie,
        resp.into_string().unwrap_or_default(),
    )
}

fn form(name: &str, password: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!("name={}&password={}", enc(name), enc(password))
}

/// GET with the session cookie: (status, body).
fn get(c: &Collector, path: &str, session: &str) -> (u16, String) {
    match agent()
        .get(&c.url(path))
        .set("Cookie", &format!("rie_session={session}"))
        .set("X-Forwarded-For", "192.0.2.10")
        .call()
    {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{path}: {e}"),
    }
}

fn account(c: &Collector, args: &[&str]) -> String {
    run_ok(
        Command::new(bin("rie-collector"))
            .arg("account")
            .args(args)
            .args(c.config_args()),
    )
}

/// Traffic of the current minute, in bytes, for one site.
fn traffic_now(c: &Collector, site: &str, seq: u64, bytes: u64) {
    let minute = rie_common::now_ms() / 60_000 * 60;
    let b = json!({ "seq": seq, "created_ms": minute * 1000, "flows": [{
        "minute": minute, "protocol": 6, "direction": "inbound",
        "flows": 1, "packets": 10, "bytes": bytes
    }]});
    send_ok(&c.probe_config(site), 1, &[b]);
}

#[test]
fn a_local_account_logs_in_reads_its_scope_and_is_ended_by_a_change() {
    // Behind a proxy (this test, on 127.0.0.1): logins come "from" the address the proxy
    // names, so that the limit they reach does not refuse the admin's reads from 127.0.0.1.
    let c = Collector::start_with_config(
        "[auth]\nrequired = true\nmax_failures_per_minute = 10\n\
         [api]\nbehind_proxy = true\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    c.use_token("admin");
    traffic_now(&c, "S1", 1, 4_200);
    traffic_now(&c, "S2", 1, 3_500);

    let password = c.create_account("corr.interieur", "ministry:Intérieur");
    assert_eq!(password.len(), 20, "{password}");
    // The list shows the account, never the password or its hash.
    let list = account(&c, &["list"]);
    assert!(
        list.contains("corr.interieur")
            && list.contains("ministry:Intérieur")
            && list.contains("active"),
        "{list}"
    );
    assert!(
        !list.contains(&password) && !list.contains("argon2"),
        "{list}"
    );
    // A second account of that name is refused.
    let out = Command::new(bin("rie-collector"))
        .args(["account", "create", "corr.interieur", "--role", "noc"])
        .args(c.config_args())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    // Wrong password and unknown name: one answer, no cookie.
    let refused = (
        401,
        None,
        None,
        "{\"error\":\"wrong name or password\"}".to_string(),
    );
    assert_eq!(
        login(&c, &form("corr.interieur", "wrong password!"), "*/*"),
        refused
    );
    assert_eq!(login(&c, &form("nobody", &password), "*/*"), refused);
    // A browser's form is sent back to the page, which says why.
    let (s, to, cookie, _) = login(&c, &form("corr.interieur", "nope"), "text/html,*/*");
    assert_eq!(
        (s, to.as_deref(), cookie),
        (303, Some("/#login=refused"), None)
    );
    // Not a form: 400.
    assert_eq!(login(&c, "password-only", "*/*").0, 400);

    // The right password: a session, redirected to the page.
    let (s, to, cookie, _) = login(&c, &form("corr.interieur", &password), "text/html");
    assert_eq!((s, to.as_deref()), (303, Some("/")));
    let session = cookie.expect("a session cookie");
    assert_eq!(
        get(&c, "/auth/me", &session),
        (
            200,
            "{\"name\":\"corr.interieur\",\"role\":\"ministry:Intérieur\"}".to_string()
        )
    );
    let (s, body) = get(&c, "/api/v1/sites", &session);
    let ids: Vec<String> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((s, ids), (200, vec!["S1".to_string()]));
    assert_eq!(get(&c, "/api/v1/sites/S2", &session).0, 404);
    assert_eq!(get(&c, "/api/v1/indicators?period=2026", &session).0, 403);
    // National traffic: the ministry's sites only, exactly; the NOC's covers both.
    let national = |auth: Option<&str>| -> Value {
        let (s, body) = match auth {
            Some(cookie) => get(&c, "/api/v1/national/traffic?window=1h", cookie),
            None => {
                let r = c
                    .request("/api/v1/national/traffic?window=1h")
                    .call()
                    .unwrap();
                (r.status(), r.into_string().unwrap())
            }
        };
        assert_eq!(s, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let mine = national(Some(&session));
    assert_eq!(mine["totals"]["inbound_bytes"], json!(4_200), "{mine}");
    let top: Vec<&str> = mine["top_sites_by_traffic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["S1"]);
    assert!(!mine.to_string().contains("\"S2\""), "{mine}");
    assert_eq!(national(None)["totals"]["inbound_bytes"], json!(7_700));

    // A role change ends the open session within a second, on the next request.
    let out = account(
        &c,
        &["set-role", "corr.interieur", "--role", "technician:S3"],
    );
    assert!(out.contains("1 open session(s) ended"), "{out}");
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(get(&c, "/api/v1/sites", &session).0, 401);
    let (_, _, cookie, _) = login(&c, &form("corr.interieur", &password), "*/*");
    let session = cookie.unwrap();
    assert_eq!(
        get(&c, "/auth/me", &session).1,
        "{\"name\":\"corr.interieur\",\"role\":\"technician:S3\"}"
    );
    // Disabled: the session ends and the password no longer opens one.
    account(&c, &["disable", "corr.interieur"]);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(get(&c, "/api/v1/sites/S3", &session).0, 401);
    assert_eq!(login(&c, &form("corr.interieur", &password), "*/*").0, 401);

    // Failures so far from this address: 7 (wrong, unknown, browser, malformed, the two
    // ended sessions, disabled). Three more reach the limit of 10; then 429, with no
    // password check at all.
    for _ in 0..3 {
        assert_eq!(login(&c, &form("x", "y"), "*/*").0, 401);
    }
    let (s, _, _, body) = login(&c, &form("x", "y"), "*/*");
    assert_eq!(s, 429, "{body}");
    let m = |r: &str| {
        c.metric(&format!(
            "rie_collector_local_logins_total{{result=\"{r}\"}}"
        ))
    };
    assert_eq!(
        [m("ok"), m("refused"), m("malformed"), m("rate_limited")],
        [2.0, 7.0, 1.0, 1.0]
    );
    // The audit trail has every failed login and both logins, with the account named (its
    // writer runs behind the requests: wait for the last row).
    let audit = || -> Vec<Value> {
        let r = c
            .request("/api/v1/audit?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")
            .call()
            .unwrap();
        serde_json::from_str::<Value>(&r.into_string().unwrap())
            .unwrap()
            .as_array()
            .cloned()
            .unwrap()
    };
    let of = |rows: &[Value], action: &str| -> Vec<(String, String)> {
        rows.iter()
            .filter(|e| e["action"] == action)
            .map(|e| {
                (
                    e["actor"].as_str().unwrap().to_string(),
                    e["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    rie_e2e::wait_for("the audit rows", Duration::from_secs(5), || {
        of(&audit(), "login_failed").len() == 8
    });
    let rows = audit();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        of(&rows, "login"),
        [s("corr.interieur", "ok"), s("corr.interieur", "ok")]
    );
    let mut failed = of(&rows, "login_failed");
    failed.sort();
    assert_eq!(
        failed,
        [
            s("-", "malformed"),
            s("corr.interieur", "refused"),
            s("corr.interieur", "refused"),
            s("corr.interieur", "refused"),
            s("nobody", "refused"),
            s("x", "refused"),
            s("x", "refused"),
            s("x", "refused"),
        ]
    );
    for action in ["account_create", "account_set_role", "account_disable"] {
        assert_eq!(of(&rows, action).len(), 1, "{action}");
    }
}
