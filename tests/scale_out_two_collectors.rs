#![allow(clippy::unwrap_used)]
//! Scale-out with two collectors on loopback: each site is owned by exactly one (rendezvous
//! hashing over `[cluster] members`); a probe pointed at the other one is redirected in the
//! hello answer and its batches are stored exactly once, on the owner; and the national totals
//! (the sum over the members) equal those of a single collector fed the same batches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rie_collector::cluster;
use rie_e2e::*;
use rie_probe::spool::{MemoryOutbox, Outbox};
use rie_probe::uplink::{self, Identity, Settings, Stats};
use serde_json::Value;

const SITES: [&str; 3] = ["S1", "S2", "S3"];

/// The tests of this file take turns: one test's collectors on ephemeral ports must not grab
/// the ports [`free_ports`] released for the other's members.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Distinct, site-specific batches: totals tell whose they are and whether any was doubled.
fn batches_of(i: u64) -> Vec<Value> {
    (1..=5)
        .map(|k| {
            batch(
                k,
                vec![
                    flow(
                        MINUTE + 60 * k as i64,
                        6,
                        i * 10 + k,
                        i * 1_000 + k * 7,
                        i * 100_000 + k * 1_234,
                    ),
                    flow(MINUTE + 60 * k as i64, 17, k, k * 3, k * 555 + i),
                ],
            )
        })
        .collect()
}

/// Delivers `batches` for `site` through the probe's real uplink (reconnects, redirects,
/// exactly-once outbox), dialing `address`; returns when every batch is acknowledged.
fn deliver(
    probe_config: &std::path::Path,
    address: SocketAddr,
    site: &str,
    batches: &[Value],
) -> Arc<Stats> {
    let resolved = rie_probe::config::ProbeConfig::load(probe_config)
        .unwrap()
        .resolve()
        .unwrap();
    let mut target = resolved.target;
    target.address = address.to_string();
    let out = MemoryOutbox::new(1_000);
    let id = Identity::new(
        rie_proto::SiteId::new(site).unwrap(),
        resolved.token,
        out.stream(),
    );
    let settings = Settings {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        heartbeat_interval: Duration::from_secs(5),
        max_in_flight: 4,
        replay_rate: 1_000.0,
    };
    let stats = Arc::new(Stats::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    for b in batches {
        tx.try_send(serde_json::from_value(b.clone()).unwrap())
            .unwrap();
    }
    drop(tx);
    let shutdown = tokio_util::sync::CancellationToken::new();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            uplink::run(target, id, settings, rx, out, stats.clone(), shutdown),
        )
        .await
        .expect("every batch acknowledged within 30 s")
    });
    stats
}

#[test]
fn sites_land_on_exactly_one_collector_and_national_totals_match_one_collector() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let [pa, pb, aa, ab] = free_ports();
    let members = vec![pa.to_string(), pb.to_string()];
    let toml = |me: SocketAddr| {
        format!(
            "[cluster]\nmembers = [\"{pa}\", \"{pb}\"]\nself = \"{me}\"\n\
             api_members = [\"http://{aa}\", \"http://{ab}\"]\n"
        )
    };
    // One CA for the cluster: the first member creates it, the second copies it.
    let a = Collector::start_member(&toml(pa), pa, aa, None);
    let b = Collector::start_member(&toml(pb), pb, ab, Some(&a));
    let single = Collector::start();

    for (i, site) in SITES.iter().enumerate() {
        let batches = batches_of(i as u64 + 1);
        let cfg = a.probe_config(site);
        // One enrolment for the cluster: b accepts the token a issued (both hold it).
        let shared = b.probe_config_sharing(site, &cfg);
        let token = |f: &std::path::Path| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .find(|l| l.starts_with("token"))
                .unwrap()
                .to_string()
        };
        assert_eq!(token(&shared), token(&cfg));
        let owner = cluster::owner(&members, site).unwrap();
        // Dial the member that does NOT own the site: the hello must redirect.
        let wrong = if owner == pa.to_string() { pb } else { pa };
        let stats = deliver(&cfg, wrong, site, &batches);
        assert_eq!(
            stats
                .batches_acked
                .load(std::sync::atomic::Ordering::Relaxed),
            5,
            "{site}"
        );
        assert_eq!(
            stats
                .duplicates_acked
                .load(std::sync::atomic::Ordering::Relaxed),
            0,
            "{site}"
        );

        let (own, other) = if owner == pa.to_string() {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert_eq!(
            own.totals(Some(site)),
            expected_totals(&batches),
            "{site} on its owner {owner}"
        );
        assert_eq!(
            other.totals(Some(site))["flows"],
            0,
            "{site} must not be on the other member"
        );
        assert!(other
            .log()
            .contains("site belongs to another collector: redirected"));

        let single_cfg = single.probe_config(site);
        send_ok(&single_cfg, 1, &batches);
    }
    // Each hello to the wrong member was redirected once: a member redirects exactly the
    // sites it does not own (absent series: none redirected yet).
    let redirected = |c: &Collector| {
        let text = ureq::get(&c.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("rie_collector_auth_failures_total{reason=\"redirected\"} ")
            })
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let not_owned_by = |m: SocketAddr| {
        SITES
            .iter()
            .filter(|s| cluster::owner(&members, s).unwrap() != m.to_string())
            .count() as f64
    };
    assert_eq!(redirected(&a), not_owned_by(pa));
    assert_eq!(redirected(&b), not_owned_by(pb));
    assert_eq!(not_owned_by(pa) + not_owned_by(pb), 3.0);

    // National totals: the sum over the members equals the single collector's, exactly.
    let (ta, tb, ts) = (a.totals(None), b.totals(None), single.totals(None));
    for k in ["flows", "packets", "bytes"] {
        assert_eq!(
            ta[k].as_u64().unwrap() + tb[k].as_u64().unwrap(),
            ts[k].as_u64().unwrap(),
            "{k}: {ta} + {tb} vs {ts}"
        );
    }
    let all: Vec<Value> = (1..=3).flat_map(batches_of).collect();
    assert_eq!(ts, expected_totals(&all));

    // Through the fan-out of either member's API: the single collector's answer, exactly,
    // for all sites and for one site.
    let window = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    for c in [&a, &b] {
        assert_eq!(c.get(&format!("/api/v1/cluster/flows/totals?{window}")), ts);
        assert_eq!(
            c.get(&format!("/api/v1/cluster/flows/totals?{window}&site=S2")),
            single.totals(Some("S2"))
        );
    }
    // The national status picture from either member: each site's state comes from its owner
    // (each member shows the other's sites as unknown in its own picture).
    let ids: Vec<String> = a.get("/api/v1/status/sites")["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[0].as_str().unwrap().to_string())
        .collect();
    let local = |c: &Collector| {
        c.get("/api/v1/status")["states"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (la, lb) = (local(&a), local(&b));
    let owned_by_a = |id: &str| cluster::owner(&members, id).unwrap() == pa.to_string();
    let national: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            char::from(if owned_by_a(id) {
                la.as_bytes()[i]
            } else {
                lb.as_bytes()[i]
            })
        })
        .collect();
    for site in SITES {
        let i = ids.iter().position(|id| id == site).unwrap();
        assert_eq!(
            &national[i..=i],
            "0",
            "{site} is up on its owner: {national}"
        );
        let other = if owned_by_a(site) { &lb } else { &la };
        assert_eq!(&other[i..=i], "5", "{site} is unknown to the other member");
    }
    let owned = ids.iter().filter(|id| owned_by_a(id)).count();
    assert_eq!(a.get("/api/v1/status")["owned_sites"], owned);
    assert_eq!(b.get("/api/v1/status")["owned_sites"], ids.len() - owned);
    for c in [&a, &b] {
        let n = c.get("/api/v1/cluster/status");
        assert_eq!(n["states"], national.as_str(), "{n}");
        assert_eq!(n["unreachable"], serde_json::json!([]), "{n}");
    }

    // A bad query is the caller's error (400), not a member's failure.
    let e = ureq::get(&a.url("/api/v1/cluster/flows/totals?from=yesterday&to=now")).call();
    assert!(matches!(e, Err(ureq::Error::Status(400, _))), "{e:?}");
    // A member down: no partial national total, a 502 naming the member.
    let mut b = b;
    b.kill9();
    match ureq::get(&a.url(&format!("/api/v1/cluster/flows/totals?{window}"))).call() {
        Err(ureq::Error::Status(502, r)) => {
            let body = r.into_string().unwrap();
            assert!(body.contains(&ab.to_string()), "{body}");
        }
        other => panic!("expected 502, got {other:?}"),
    }
    // The status picture goes on without it: its sites unknown, the member named.
    let n = a.get("/api/v1/cluster/status");
    let blind: String = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if owned_by_a(id) {
                char::from(national.as_bytes()[i])
            } else {
                '5'
            }
        })
        .collect();
    assert_eq!(n["states"], blind.as_str(), "{n}");
    assert_eq!(
        n["unreachable"],
        serde_json::json!([format!("http://{ab}")]),
        "{n}"
    );
    // A single collector has no cluster endpoint to answer from.
    let e = ureq::get(&single.url(&format!("/api/v1/cluster/flows/totals?{window}"))).call();
    assert!(matches!(e, Err(ureq::Error::Status(404, _))), "{e:?}");
    let e = ureq::get(&single.url("/api/v1/cluster/status")).call();
    assert!(matches!(e, Err(ureq::Error::Status(404, _))), "{e:?}");
}

/// A site changes owner when a member is added: the probe keeps its stream, the old owner keeps
/// what it acknowledged, the new owner (no high-water mark for the stream) gets exactly the
/// rest, and the national total is every batch once.
#[test]
fn a_site_moving_to_a_new_member_is_stored_once_across_the_two() {
    let site = "S1";
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // Pick b's address so that adding it moves S1 to b (rendezvous: about one try in two).
    let ([pa, pb, aa, ab], members) = loop {
        let p = free_ports();
        let members = vec![p[0].to_string(), p[1].to_string()];
        if cluster::owner(&members, site).unwrap() == p[1].to_string() {
            break (p, members);
        }
    };
    let one = format!("[cluster]\nmembers = [\"{pa}\"]\nself = \"{pa}\"\n");
    let two = |me: SocketAddr| {
        format!(
            "[cluster]\nmembers = [\"{}\", \"{}\"]\nself = \"{me}\"\n\
             api_members = [\"http://{aa}\", \"http://{ab}\"]\n",
            members[0], members[1]
        )
    };
    let mut a = Collector::start_member(&one, pa, aa, None);
    let b = Collector::start_member(&two(pb), pb, ab, Some(&a));
    let cfg = a.probe_config(site);
    b.probe_config_sharing(site, &cfg);

    // The probe's uplink runs across the change, on one stream (its outbox).
    let resolved = rie_probe::config::ProbeConfig::load(&cfg)
        .unwrap()
        .resolve()
        .unwrap();
    let out = MemoryOutbox::new(1_000);
    let id = Identity::new(
        rie_proto::SiteId::new(site).unwrap(),
        resolved.token,
        out.stream(),
    );
    let settings = Settings {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(300),
        heartbeat_interval: Duration::from_secs(5),
        max_in_flight: 4,
        replay_rate: 1_000.0,
    };
    let stats = Arc::new(Stats::default());
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let uplink = {
        let stats = stats.clone();
        let target = resolved.target;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(uplink::run(
                target,
                id,
                settings,
                rx,
                out,
                stats,
                tokio_util::sync::CancellationToken::new(),
            ));
        })
    };
    let all = batches_of(7);
    let acked = || {
        stats
            .batches_acked
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for b in &all[..3] {
        tx.blocking_send(serde_json::from_value(b.clone()).unwrap())
            .unwrap();
    }
    a.wait_until(
        "3 batches acknowledged by a",
        Duration::from_secs(20),
        |_| acked() == 3,
    );
    // b joins: a is restarted with the two-member list and no longer owns S1.
    std::fs::write(a.dir.path().join("collector.toml"), two(pa)).unwrap();
    a.restart_gracefully();
    for b in &all[3..] {
        tx.blocking_send(serde_json::from_value(b.clone()).unwrap())
            .unwrap();
    }
    drop(tx);
    let t0 = std::time::Instant::now();
    while !uplink.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "uplink did not deliver: {}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    uplink.join().unwrap();
    assert_eq!(acked(), 5);
    assert_eq!(
        stats
            .duplicates_acked
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // The old owner keeps the first three, the new one has the last two, none is in both.
    assert_eq!(a.totals(Some(site)), expected_totals(&all[..3]));
    assert_eq!(b.totals(Some(site)), expected_totals(&all[3..]));
    let window = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    assert_eq!(
        b.get(&format!("/api/v1/cluster/flows/totals?{window}")),
        expected_totals(&all)
    );
    assert!(a
        .log()
        .contains("site belongs to another collector: redirected"));
}
