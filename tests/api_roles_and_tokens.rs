//! Who may read what, walked route by route: every route of the router (its list comes from
//! the collector itself, `api::policies`, so a new route without a row in [`EXPECTED`] fails
//! this test) is requested with no credentials, with a bad token, and with a token of each
//! role (`token create`), and each answer's status is asserted exactly; a scoped role's
//! answers name no site outside its scope, and its national totals are those of its sites,
//! exactly. Then tokens: `token list` never shows a secret, a revoked token is refused within
//! a second (two collectors sharing one PostgreSQL: revoked through one, refused by both), an
//! expired one is refused, malformed headers get 401 and are counted, and 401 carries
//! `WWW-Authenticate`.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use rie_e2e::{batch, bin, expected_totals, flow, run_ok, send_ok, Collector, MINUTE};
use rie_testpg::PgServer;
use serde_json::Value;

/// Roles of the test, by label: (role given to `token create`, sites it may see).
const ROLES: &[(&str, &str, &[&str])] = &[
    ("noc", "noc", &["S1", "S2", "S3"]),
    ("interieur", "ministry:Intérieur", &["S1"]),
    ("finance", "finance", &[]),
    ("tech-s2", "technician:S2", &["S2"]),
    ("admin", "admin", &["S1", "S2", "S3"]),
    ("metrics", "metrics", &[]),
];

/// Who may read each route (labels of [`ROLES`]; "public" for everyone, without a token).
/// Written out by hand: the test compares the collector's behaviour with this table.
const EXPECTED: &[(&str, &[&str])] = &[
    ("/healthz", &["public"]),
    ("/", &["public"]),
    ("/assets/app.js", &["public"]),
    ("/assets/app.css", &["public"]),
    ("/metrics", &["metrics", "admin"]),
    ("/api/v1/sites", &["noc", "interieur", "tech-s2", "admin"]),
    (
        "/api/v1/sites/{site_id}",
        &["noc", "interieur", "tech-s2", "admin"],
    ),
    (
        "/api/v1/sites/{site_id}/episodes",
        &["noc", "interieur", "tech-s2", "admin"],
    ),
    (
        "/api/v1/sites/{site_id}/links/history",
        &["noc", "interieur", "tech-s2", "admin"],
    ),
    (
        "/api/v1/sites/{site_id}/top_talkers",
        &["noc", "interieur", "admin"],
    ),
    ("/api/v1/flows/totals", &["noc", "interieur", "admin"]),
    // A site's effective check plan: a ministry for its own sites only.
    (
        "/api/v1/sites/{site_id}/plan",
        &["noc", "interieur", "admin"],
    ),
    ("/api/v1/plans", &["noc", "admin"]),
    ("/api/v1/plans/rollouts", &["noc", "admin"]),
    // Writes (POST, [`admin_write`]): starting a rollout, rolling one back.
    ("/api/v1/admin/plans/rollouts", &["admin", "post"]),
    (
        "/api/v1/admin/plans/rollouts/{rollout_id}/rollback",
        &["admin", "post"],
    ),
    ("/api/v1/national/traffic", &["noc", "interieur", "admin"]),
    ("/assets/traffic.js", &["public"]),
    ("/assets/fleet.js", &["public"]),
    ("/api/v1/fleet", &["noc", "interieur", "tech-s2", "admin"]),
    ("/api/v1/indicators", &["finance", "admin"]),
    ("/api/v1/indicators/resilience-plan", &["finance", "admin"]),
    ("/api/v1/audit", &["admin"]),
    ("/api/v1/status", &["noc", "interieur", "tech-s2", "admin"]),
    (
        "/api/v1/status/sites",
        &["noc", "interieur", "tech-s2", "admin"],
    ),
    // Login routes: public, each answers for itself ([`login_route`]).
    ("/auth/login", &["login"]),
    ("/auth/callback", &["login"]),
    ("/auth/local", &["login"]),
    ("/auth/logout", &["login"]),
    ("/auth/me", &["login"]),
];

/// What a login route answers on this collector (no `[auth.oidc]`), with a token of any role
/// or without (`None`). With a provider, `tests/oidc_login_lemonldap.rs` checks them.
fn login_route(path: &str, token: Option<&str>) -> u16 {
    match path {
        // Not configured: 404 saying so.
        "/auth/login" | "/auth/callback" => 404,
        // A password login is a POST of a form (`tests/local_accounts.rs`).
        "/auth/local" => 405,
        // Clears the cookie and redirects to the status page (followed: 200).
        "/auth/logout" => 200,
        // Who is asking: any token, no role needed.
        "/auth/me" => {
            if token.is_some() {
                200
            } else {
                401
            }
        }
        other => panic!("{other} is not a login route"),
    }
}

/// The query each route needs to answer 200.
fn query(path: &str) -> &'static str {
    match path {
        "/api/v1/flows/totals" | "/api/v1/sites/{site_id}/top_talkers" => {
            "?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
        }
        "/api/v1/sites/{site_id}/episodes" => "?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        "/api/v1/indicators" => "?period=2026",
        "/api/v1/audit" => "?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        _ => "",
    }
}

/// GET with an optional `Authorization` value: (status, WWW-Authenticate, body).
fn get(c: &Collector, path: &str, auth: Option<&str>) -> (u16, Option<String>, String) {
    request(c, "GET", path, auth, None)
}

/// A request with an optional `Authorization` value and JSON body.
fn request(
    c: &Collector,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut req = ureq::request(method, &c.url(path));
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    let sent = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match sent {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let status = resp.status();
    let challenge = resp.header("www-authenticate").map(String::from);
    (status, challenge, resp.into_string().unwrap_or_default())
}

fn token(c: &Collector, args: &[&str]) -> String {
    run_ok(
        Command::new(bin("rie-collector"))
            .arg("token")
            .args(args)
            .args(c.config_args()),
    )
    .trim()
    .to_string()
}

fn create(c: &Collector, role: &str, name: &str) -> String {
    c.create_token(role, name)
}

/// An admin write route: POST without a token is 401, with any other role 403, and as
/// admin it reaches the handler (an empty body is refused with the missing field; rolling
/// back rollout 1, which does not exist, is 404 naming it).
fn admin_write(c: &Collector, path: &str, tokens: &BTreeMap<&str, String>) {
    let url = path.replace("{rollout_id}", "1");
    let (status, _, body) = request(c, "POST", &url, None, Some("{}"));
    assert_eq!(status, 401, "POST {url} without a token: {body}");
    for (label, _, _) in ROLES {
        let (status, _, body) = request(c, "POST", &url, Some(&bearer(&tokens[label])), Some("{}"));
        if *label != "admin" {
            assert_eq!(status, 403, "POST {url} as {label}: {body}");
            continue;
        }
        if path.ends_with("/rollback") {
            assert_eq!(
                (status, body.as_str()),
                (
                    404,
                    "{\"error\":\"no rollout 1; `plan rollouts` lists them\"}"
                ),
                "POST {url}"
            );
        } else {
            assert_eq!(status, 422, "POST {url} as admin: {body}");
            assert!(body.contains("missing field `toml`"), "POST {url}: {body}");
        }
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn every_route_answers_each_role_exactly_and_scopes_hold() {
    let c = Collector::start_with_config("[auth]\nrequired = true\n");
    // Traffic on S1 (Intérieur) and S2 (Finances): a ministry's totals are its sites' only.
    let b1 = batch(1, vec![flow(MINUTE, 6, 3, 40, 12_345)]);
    let b2 = batch(1, vec![flow(MINUTE, 17, 5, 70, 54_321)]);
    send_ok(&c.probe_config("S1"), 1, std::slice::from_ref(&b1));
    send_ok(&c.probe_config("S2"), 1, std::slice::from_ref(&b2));

    let tokens: BTreeMap<&str, String> = ROLES
        .iter()
        .map(|(label, role, _)| (*label, create(&c, role, label)))
        .collect();

    // The router's routes are exactly those of the table above.
    let routes: Vec<&str> = rie_collector::api::policies()
        .iter()
        .map(|(p, _)| *p)
        .collect();
    let mut listed: Vec<&str> = EXPECTED.iter().map(|(p, _)| *p).collect();
    let mut served = routes.clone();
    listed.sort_unstable();
    served.sort_unstable();
    assert_eq!(
        served, listed,
        "a route without a row here, or a row without a route"
    );

    let all_sites = ["S1", "S2", "S3"];
    for (path, allowed) in EXPECTED {
        if allowed.contains(&"post") {
            admin_write(&c, path, &tokens);
            continue;
        }
        if allowed.contains(&"login") {
            let (status, _, body) = get(&c, path, None);
            assert_eq!(
                status,
                login_route(path, None),
                "{path} without a token: {body}"
            );
            for (label, _, _) in ROLES {
                let (status, _, body) = get(&c, path, Some(&bearer(&tokens[label])));
                let expected = login_route(path, Some(label));
                assert_eq!(status, expected, "{path} as {label}: {body}");
            }
            continue;
        }
        let public = allowed.contains(&"public");
        // A site path is tried with each site: a scoped role gets 404 outside its scope.
        let sites: Vec<&str> = if path.contains("{site_id}") {
            all_sites.to_vec()
        } else {
            vec![""]
        };
        for site in sites {
            let url = format!("{}{}", path.replace("{site_id}", site), query(path));
            // No credentials.
            let (status, challenge, body) = get(&c, &url, None);
            if public {
                assert_eq!(status, 200, "{url} without a token: {body}");
            } else {
                assert_eq!(status, 401, "{url} without a token: {body}");
                assert_eq!(
                    challenge.as_deref(),
                    Some("Bearer realm=\"rie-collector\""),
                    "{url}"
                );
                assert!(
                    !body.contains("S1") && !body.contains("agents"),
                    "{url}: {body}"
                );
            }
            for (label, role, scope) in ROLES {
                let (status, _, body) = get(&c, &url, Some(&bearer(&tokens[label])));
                let expected = if public {
                    200
                } else if !allowed.contains(label) {
                    403
                } else if !site.is_empty() && !scope.contains(&site) {
                    404
                } else {
                    200
                };
                assert_eq!(status, expected, "{url} as {label}: {body}");
                if expected == 403 {
                    assert_eq!(body, "{\"error\":\"forbidden for this role\"}", "{url}");
                }
                // A scoped role's answers name no other site.
                if !public && role.contains(':') && status == 200 {
                    for other in all_sites.iter().filter(|s| !scope.contains(s)) {
                        assert!(
                            !body.contains(&format!("\"{other}\""))
                                && !body.contains(&format!("{other}-")),
                            "{url} as {label} names {other}: {body}"
                        );
                    }
                }
            }
        }
    }

    // The scoped national totals are exactly those of the scope's sites.
    let totals = |label: &str| -> Value {
        let (s, _, body) = get(
            &c,
            &format!("/api/v1/flows/totals{}", query("/api/v1/flows/totals")),
            Some(&bearer(&tokens[label])),
        );
        assert_eq!(s, 200);
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(
        totals("interieur"),
        expected_totals(std::slice::from_ref(&b1))
    );
    assert_eq!(totals("noc"), expected_totals(&[b1.clone(), b2.clone()]));
    // The list of sites: its own only.
    let (_, _, body) = get(&c, "/api/v1/sites", Some(&bearer(&tokens["interieur"])));
    let ids: Vec<String> = serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["S1"]);
    // The status page's two national endpoints list the scope's sites only, in the same
    // order, so that the page's indices agree.
    for (label, ids) in [
        ("interieur", vec!["S1"]),
        ("tech-s2", vec!["S2"]),
        ("noc", vec!["S1", "S2", "S3"]),
    ] {
        let (_, _, body) = get(&c, "/api/v1/status/sites", Some(&bearer(&tokens[label])));
        let v: Value = serde_json::from_str(&body).unwrap();
        let got: Vec<&str> = v["sites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap())
            .collect();
        assert_eq!(got, ids, "{label}");
        let (_, _, body) = get(&c, "/api/v1/status", Some(&bearer(&tokens[label])));
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["states"].as_str().unwrap().len(),
            ids.len(),
            "{label}: {v}"
        );
    }
    // A site outside the scope named in the totals' query answers as unknown.
    let (s, _, body) = get(
        &c,
        &format!(
            "/api/v1/flows/totals{}&site=S2",
            query("/api/v1/flows/totals")
        ),
        Some(&bearer(&tokens["interieur"])),
    );
    assert_eq!(
        (s, body.as_str()),
        (404, "{\"error\":\"no site \\\"S2\\\" in the inventory\"}")
    );
    // The same answer as a site that does not exist at all, for anyone.
    let (s, _, body) = get(&c, "/api/v1/sites/S9", Some(&bearer(&tokens["noc"])));
    assert_eq!(
        (s, body.as_str()),
        (404, "{\"error\":\"no site \\\"S9\\\" in the inventory\"}")
    );
    let (s, _, body) = get(&c, "/api/v1/sites/S2", Some(&bearer(&tokens["interieur"])));
    assert_eq!(
        (s, body.as_str()),
        (404, "{\"error\":\"no site \\\"S2\\\" in the inventory\"}")
    );

    // Bad credentials: 401 with the invalid_token challenge, counted by reason.
    let good = &tokens["noc"];
    let wrong_secret = format!(
        "{}{}",
        &good[..good.len() - 1],
        if good.ends_with('0') { '1' } else { '0' }
    );
    let unknown = format!("rie_000000000000_{}", &good[good.len() - 64..]);
    let long = format!("Bearer {}", "x".repeat(5_000));
    for (auth, what) in [
        ("Basic dXNlcjpwYXNz".to_string(), "basic"),
        (bearer("not-a-token"), "garbage"),
        (long, "oversized"),
        (bearer(&wrong_secret), "wrong secret"),
        (bearer(&unknown), "unknown id"),
    ] {
        let (status, challenge, body) = get(&c, "/api/v1/sites", Some(&auth));
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"rie-collector\", error=\"invalid_token\""),
            "{what}"
        );
        assert_eq!(body, "{\"error\":\"invalid token\"}", "{what}");
    }
    let metrics = get(&c, "/metrics", Some(&bearer(&tokens["metrics"]))).2;
    let count = |reason: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "rie_collector_api_auth_failures_total{{reason=\"{reason}\"}} "
                ))
            })
            .map_or(0, |v| v.parse().unwrap())
    };
    assert_eq!(count("malformed"), 3, "{metrics}");
    assert_eq!(count("wrong_secret"), 1);
    assert_eq!(count("unknown"), 1);
    let routes_needing_auth: u64 = EXPECTED
        .iter()
        .filter(|(_, a)| !a.contains(&"public") && !a.contains(&"login"))
        .map(|(p, _)| if p.contains("{site_id}") { 3 } else { 1 })
        .sum();
    assert_eq!(count("missing"), routes_needing_auth);

    // `token list`: ids, names and roles; no secret.
    let list = token(&c, &["list"]);
    for (label, role, _) in ROLES {
        assert!(list.contains(label) && list.contains(role), "{list}");
        let secret = &tokens[label][tokens[label].len() - 64..];
        assert!(!list.contains(secret), "{list}");
    }
    // Expired: a token valid for one minute is refused once its expiry has passed (written
    // in the past here through the store, as time would).
    let short = token(
        &c,
        &[
            "create",
            "--role",
            "noc",
            "--name",
            "short",
            "--expires",
            "1m",
        ],
    );
    assert_eq!(get(&c, "/api/v1/sites", Some(&bearer(&short))).0, 200);
    c.sql("UPDATE api_tokens SET expires_ms = 1 WHERE name = 'short'");
    let start = Instant::now();
    while get(&c, "/api/v1/sites", Some(&bearer(&short))).0 == 200 {
        assert!(start.elapsed() < Duration::from_secs(3), "expiry not seen");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&c, "/api/v1/sites", Some(&bearer(&short))).0, 401);
    // Bad role or validity: refused with the fix.
    for (args, hint) in [
        (
            vec!["--role", "ministry:Nowhere", "--name", "x"],
            "as in sites.csv",
        ),
        (
            vec!["--role", "technician:S9", "--name", "x"],
            "no such site",
        ),
        (vec!["--role", "boss", "--name", "x"], "use noc, finance"),
        (
            vec!["--role", "noc", "--name", "x", "--expires", "3w"],
            "e.g. 90d",
        ),
    ] {
        let out = Command::new(bin("rie-collector"))
            .args(["token", "create"])
            .args(&args)
            .args(c.config_args())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(hint), "{args:?}: {err}");
    }

    // The audit trail, read by admin: every finance read (granted or not), every failed
    // authentication, every token created from the command line.
    let audit_url = "/api/v1/audit?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    let trail = || -> Vec<Value> {
        let (s, _, body) = get(&c, audit_url, Some(&bearer(&tokens["admin"])));
        assert_eq!(s, 200, "{body}");
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let start = Instant::now();
    let mut rows = trail();
    // The writer batches off the request path: the last rows land within moments.
    while rows.iter().filter(|r| r["action"] == "auth_failed").count() < 5 {
        assert!(start.elapsed() < Duration::from_secs(5), "{rows:?}");
        std::thread::sleep(Duration::from_millis(100));
        rows = trail();
    }
    let pick = |action: &str, outcome: &str| -> Vec<(String, String, String, String)> {
        rows.iter()
            .filter(|r| r["action"] == action && r["outcome"] == outcome)
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (s("actor"), s("role"), s("source"), s("target"))
            })
            .collect()
    };
    let plan = "/api/v1/indicators/resilience-plan";
    // In request order: route by route, each role in turn.
    let granted: Vec<(String, String, String, String)> = ["/api/v1/indicators?period=2026", plan]
        .iter()
        .flat_map(|target| {
            ["finance", "admin"].map(|who| {
                (
                    who.to_string(),
                    who.to_string(),
                    "127.0.0.1".to_string(),
                    target.to_string(),
                )
            })
        })
        .collect();
    let mut reads = pick("read", "ok");
    reads.retain(|r| r.3 != audit_url);
    assert_eq!(reads, granted);
    // The admin's writes are recorded as writes, the refused ones with the role that tried.
    let writes: Vec<String> = pick("write", "ok")
        .into_iter()
        .map(|r| format!("{} {}", r.0, r.3))
        .collect();
    assert_eq!(
        writes,
        [
            "admin /api/v1/admin/plans/rollouts",
            "admin /api/v1/admin/plans/rollouts/1/rollback"
        ]
    );
    assert_eq!(pick("write", "forbidden").len(), 2 * (ROLES.len() - 1));
    // Refused finance reads, with the role that tried: noc, interieur, tech-s2, metrics.
    let forbidden: Vec<String> = pick("read", "forbidden")
        .into_iter()
        .filter(|r| r.3.starts_with("/api/v1/indicators?"))
        .map(|r| r.0)
        .collect();
    assert_eq!(forbidden, ["noc", "interieur", "tech-s2", "metrics"]);
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r["action"] == "auth_failed")
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        failed,
        // Three malformed headers, a wrong secret, an unknown id, then the expired token
        // twice (the poll that saw it refused, and the check after).
        [
            "malformed",
            "malformed",
            "malformed",
            "wrong_secret",
            "unknown",
            "expired",
            "expired"
        ]
    );
    let created = rows
        .iter()
        .filter(|r| r["action"] == "token_create" && r["source"] == "cli")
        .count();
    assert_eq!(created, ROLES.len() + 1);
    // The same trail as JSON lines, for a SIEM.
    let (s, _, lines) = get(
        &c,
        &format!("{audit_url}&format=jsonl"),
        Some(&bearer(&tokens["admin"])),
    );
    assert_eq!(s, 200);
    let parsed: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        parsed.len() >= rows.len(),
        "{} lines, {} rows",
        parsed.len(),
        rows.len()
    );
    assert_eq!(parsed[..rows.len()], rows[..]);
}

#[test]
fn a_revoked_token_is_refused_by_every_collector_within_a_second() {
    let pg = PgServer::start();
    let cfg = format!(
        "[auth]\nrequired = true\n[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    );
    let a = Collector::start_with_config(&cfg);
    let b = Collector::start_sharing_pki(&cfg, Some(&a));
    let t = create(&a, "noc", "grafana");
    for c in [&a, &b] {
        assert_eq!(get(c, "/api/v1/sites", Some(&bearer(&t))).0, 200);
    }
    let out = token(&a, &["revoke", "grafana"]);
    assert!(out.contains("revoked 1 token"), "{out}");
    let revoked = Instant::now();
    let mut refused_after = Vec::new();
    for c in [&a, &b] {
        while get(c, "/api/v1/sites", Some(&bearer(&t))).0 == 200 {
            std::thread::sleep(Duration::from_millis(20));
        }
        refused_after.push(revoked.elapsed());
        assert_eq!(get(c, "/api/v1/sites", Some(&bearer(&t))).0, 401);
    }
    println!("revocation seen after {refused_after:?}");
    assert!(
        refused_after
            .iter()
            .all(|d| *d <= Duration::from_millis(1_200)),
        "{refused_after:?}"
    );
    // Revoking again: nothing left to revoke, said so.
    let out = Command::new(bin("rie-collector"))
        .args(["token", "revoke", "grafana"])
        .args(a.config_args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token list"));
}
