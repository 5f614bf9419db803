//! Link states sent through the real protocol become site states, episodes and per-site
//! Prometheus series, dated by the probe's events (not by when the batches arrive), and they
//! survive a collector SIGKILL: a site on backup when the collector died is still on backup,
//! with the same start, when it comes back, and its episode closes when the primary returns.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rie_common::now_ms;
use rie_e2e::{rfc3339, s1_incident, send_ok, Collector};
use serde_json::{json, Value};

fn episodes(c: &Collector, from_ms: i64, to_ms: i64) -> Vec<Value> {
    c.get(&format!(
        "/api/v1/sites/S1/episodes?from={}&to={}",
        rfc3339(from_ms),
        rfc3339(to_ms)
    ))
    .as_array()
    .unwrap()
    .clone()
}

fn summary(eps: &[Value]) -> Vec<(String, String, Value, i64, Value)> {
    eps.iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["start"].as_str().unwrap().to_string(),
                e["end"].clone(),
                e["duration_s"].as_i64().unwrap(),
                e["link"].clone(),
            )
        })
        .collect()
}

const LABELS: &str = r#"site="S1",ministry="Intérieur",departement="35",region="Bretagne""#;

#[test]
fn episodes_follow_states_and_survive_a_collector_kill() {
    let mut c = Collector::start();
    let cfg = c.probe_config("S1");
    // Whole seconds, ten minutes ago: the batches replay a past incident, as a probe's spool
    // does after the site comes back.
    let t0 = now_ms() / 1000 * 1000 - 600_000;
    let s = 1000;
    let [b1, b2, b3, b4, b5, back] = s1_incident(t0);
    let batches = [b1, b2, b3, b4, b5];
    let acks = send_ok(&cfg, 7, &batches);
    assert_eq!(acks.len(), 5);

    let eps = episodes(&c, t0 - 3_600_000, now_ms() + 1000);
    let s3 = |off: i64| rfc3339(t0 + off * s);
    let got = summary(&eps);
    assert_eq!(got.len(), 3, "{eps:?}");
    assert_eq!(
        got[0],
        (
            "failover".into(),
            s3(60),
            json!(s3(180)),
            120,
            json!("S1-P")
        )
    );
    assert_eq!(
        got[1],
        ("outage".into(), s3(180), json!(s3(300)), 120, Value::Null)
    );
    assert_eq!(
        (&got[2].0, &got[2].1, &got[2].2, &got[2].4),
        (
            &"failover".to_string(),
            &s3(400),
            &Value::Null,
            &json!("S1-P")
        )
    );
    assert_eq!(
        eps[2]["cause"],
        "lien principal S1-P en panne ; le secours S1-B porte le trafic"
    );
    assert_eq!(
        eps[1]["cause"],
        "aucun lien n'atteint le cœur de réseau (S1-P, S1-B en panne)"
    );
    // A window that only overlaps the outage returns only the outage.
    let only = episodes(&c, t0 + 200 * s, t0 + 250 * s);
    assert_eq!(summary(&only), vec![got[1].clone()]);

    let site = c.get("/api/v1/sites/S1");
    assert_eq!(site["state"], "on_backup");
    assert_eq!(site["state_since"], s3(400));
    assert_eq!(c.metric(&format!("rie_site_on_backup{{{LABELS}}}")), 1.0);
    assert_eq!(c.metric(&format!("rie_site_up{{{LABELS}}}")), 1.0);
    assert_eq!(c.metric(&format!("rie_site_state{{{LABELS}}}")), 2.0);
    assert_eq!(c.metric(&format!("rie_site_agents{{{LABELS}}}")), 420.0);
    assert_eq!(
        c.metric(&format!(
            r#"rie_link_up{{{LABELS},link="S1-P",role="primary"}}"#
        )),
        0.0
    );
    assert_eq!(
        c.metric(&format!(
            r#"rie_link_up{{{LABELS},link="S1-B",role="backup"}}"#
        )),
        1.0
    );
    // S2 never reported: state unknown (5), and no claim about being up.
    assert_eq!(
        c.metric(
            r#"rie_site_state{site="S2",ministry="Économie et Finances",departement="973",region="Guyane"}"#
        ),
        5.0
    );

    // SIGKILL and restart: the site is still on backup since the same instant.
    c.restart();
    let site = c.get("/api/v1/sites/S1");
    assert_eq!(site["state"], "on_backup", "{site}");
    assert_eq!(site["state_since"], s3(400));
    assert_eq!(
        summary(&episodes(&c, t0 - 3_600_000, now_ms() + 1000)).len(),
        3
    );

    // The primary comes back: the open failover closes at the probe's event time.
    send_ok(&cfg, 7, &[back]);
    let eps = episodes(&c, t0 - 3_600_000, now_ms() + 1000);
    let got = summary(&eps);
    assert_eq!(
        got[2],
        (
            "failover".into(),
            s3(400),
            json!(s3(500)),
            100,
            json!("S1-P")
        )
    );
    c.wait_until("S1 up again", Duration::from_secs(5), |c| {
        c.get("/api/v1/sites/S1")["state"] == "up"
    });
    assert_eq!(c.metric(&format!("rie_site_on_backup{{{LABELS}}}")), 0.0);

    // Errors name the parameter and give an example.
    let err = ureq::get(&c.url("/api/v1/sites/S1/episodes?from=yesterday"))
        .call()
        .unwrap_err();
    let body = match err {
        ureq::Error::Status(400, r) => r.into_string().unwrap(),
        e => panic!("expected 400, got {e}"),
    };
    assert!(
        body.contains(r#"from=\"yesterday\" is not an RFC 3339 time"#),
        "{body}"
    );
    let err = ureq::get(&c.url("/api/v1/sites/NOPE/episodes")).call();
    assert!(matches!(err, Err(ureq::Error::Status(404, _))));
}
