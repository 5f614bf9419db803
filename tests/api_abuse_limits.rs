//! Abuse resistance with real clients: past `auth.max_failures_per_minute` failed
//! authentications, an address gets 429 (even with a good token) while another address is
//! unaffected; past the same number of failed probe hellos, a probe address's connections are
//! closed at accept, even with the right token; each is logged once per address, not per
//! attempt, and counted. Oversized request headers get 431 before any route.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rie_e2e::{batch, flow, send_batches, Collector, MINUTE};

/// (status, Retry-After) of GET `path` on `c` with `token`, from local address `from` (curl
/// binds it; every 127.0.0.0/8 address is loopback).
fn curl(c: &Collector, path: &str, token: &str, from: &str) -> (u16, Option<String>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--interface",
            from,
            "-H",
        ])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(c.url(path))
        .output()
        .expect("curl is needed: apt-get install curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head}"));
    let retry = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .map(|v| v.trim().to_string());
    (status, retry)
}

#[test]
fn failed_logins_and_hellos_are_limited_per_address() {
    let c = Collector::start_with_config("[auth]\nrequired = true\nmax_failures_per_minute = 5\n");
    let good = c.use_token("admin");
    let bad = format!("rie_000000000000_{}", "0".repeat(64));
    for _ in 0..5 {
        assert_eq!(curl(&c, "/api/v1/sites", &bad, "127.0.0.1").0, 401);
    }
    // Blocked: even the good token, from this address, for the rest of the minute.
    assert_eq!(
        curl(&c, "/api/v1/sites", &good, "127.0.0.1"),
        (429, Some("60".to_string()))
    );
    assert_eq!(curl(&c, "/api/v1/sites", &bad, "127.0.0.1").0, 429);
    // Another address is not affected.
    assert_eq!(curl(&c, "/api/v1/sites", &good, "127.0.0.2").0, 200);
    // Public routes stay public.
    assert_eq!(curl(&c, "/healthz", &bad, "127.0.0.1").0, 200);

    // Probe hellos: five wrong tokens from 127.0.0.1, then the right one is closed at accept.
    let cfg = c.probe_config("S1");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let token_line = text.lines().find(|l| l.starts_with("token = ")).unwrap();
    let wrong = cfg.with_extension("wrong.toml");
    std::fs::write(
        &wrong,
        text.replace(token_line, &format!("token = \"{}\"", "f".repeat(64))),
    )
    .unwrap();
    let b = batch(1, vec![flow(MINUTE, 6, 1, 2, 300)]);
    for _ in 0..5 {
        let out = send_batches(&wrong, 1, std::slice::from_ref(&b));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused"), "{err}");
    }
    let out = send_batches(&cfg, 1, std::slice::from_ref(&b));
    assert!(
        !out.status.success(),
        "the right token from a blocked address: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Counted (read from 127.0.0.2: 127.0.0.1 is still blocked).
    let metrics = Command::new("curl")
        .args(["-s", "--interface", "127.0.0.2", "-H"])
        .arg(format!("Authorization: Bearer {good}"))
        .arg(c.url("/metrics"))
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let value = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(
        value("rie_collector_api_auth_failures_total{reason=\"unknown\"}"),
        5
    );
    assert_eq!(
        value("rie_collector_api_auth_failures_total{reason=\"rate_limited\"}"),
        2
    );
    assert_eq!(
        value("rie_collector_auth_failures_total{reason=\"bad_token\"}"),
        5
    );
    assert_eq!(
        value("rie_collector_auth_failures_total{reason=\"rate_limited\"}"),
        1
    );
    // Logged once per address: the crossing for the API; the first and the crossing for the
    // probe hellos — not one line per attempt.
    let log = c.log();
    assert_eq!(
        log.matches("too many failed authentications").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("probe refused").count(), 2, "{log}");
}

#[test]
fn oversized_headers_get_431() {
    let c = Collector::start();
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("X-Filler: {}", "a".repeat(20_000)))
        .arg(c.url("/api/v1/sites"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "431");
    let ok = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("X-Filler: {}", "a".repeat(10_000)))
        .arg(c.url("/api/v1/sites"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
}
