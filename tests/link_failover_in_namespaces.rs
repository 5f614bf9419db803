//! A real probe on a site router with two access links (network namespaces and veth pairs),
//! checking the core over each link with ICMP, TCP, HTTP and DNS (dnsmasq) bound to the link's interface, while
//! the test cuts and degrades links. The collector must show each state within seconds and keep
//! the episodes with the times the test made them happen:
//! - primary interface down → on backup (failover), back → up;
//! - primary interface up but the core unreachable over it → on backup (found by the checks
//!   alone: the backup's checks still pass because they leave by the backup);
//! - both links cut → down (outage), and the probe still reports over a management path;
//! - half the packets lost on the primary → degraded;
//! - both links cut while the probe cannot report either: the outage is rebuilt afterwards from
//!   the probe's spool, with the times it happened, not the time it was replayed.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rie_common::now_ms;
use rie_e2e::site_net::{SiteNet, CORE_POP, MGMT_COLLECTOR};
use rie_e2e::{fixture, parse_rfc3339_ms, Collector, Probe};
use serde_json::Value;

fn state(c: &Collector) -> String {
    c.get("/api/v1/sites/S1")["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits for `want` and returns when it was first seen.
fn wait_state(c: &Collector, p: &Probe, want: &str, within: Duration) {
    let end = Instant::now() + within;
    loop {
        if state(c) == want {
            return;
        }
        assert!(
            Instant::now() < end,
            "S1 not {want} within {within:?}: {}\nprobe log:\n{}",
            c.get("/api/v1/sites/S1"),
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn episodes(c: &Collector) -> Vec<Value> {
    c.get("/api/v1/sites/S1/episodes?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z")
        .as_array()
        .unwrap()
        .clone()
}

/// The episode's start and end fall in the windows in which the test caused them (detection
/// takes up to one link poll or one check interval), and its duration is end − start.
fn assert_episode(e: &Value, kind: &str, start: (i64, i64), end: Option<(i64, i64)>) {
    assert_eq!(e["kind"], kind, "{e}");
    let s = parse_rfc3339_ms(&e["start"]);
    assert!(
        (start.0 - 100..=start.1).contains(&s),
        "{kind} started at {s}, caused in [{}, {}]: {e}",
        start.0,
        start.1
    );
    if let Some((a, b)) = end {
        let t = parse_rfc3339_ms(&e["end"]);
        assert!(
            (a - 100..=b).contains(&t),
            "{kind} ended at {t}, caused in [{a}, {b}]: {e}"
        );
        assert_eq!(e["duration_s"].as_i64().unwrap(), (t - s) / 1000, "{e}");
    } else {
        assert!(e["end"].is_null(), "{e}");
    }
}

#[test]
fn failover_outage_and_degradation_seen_by_real_checks() {
    let net = SiteNet::new("avail");
    let _http = net.core_http();
    let _dns = net.core_dns();
    let c = Collector::start_on(
        &fixture("inventory"),
        SocketAddr::new(MGMT_COLLECTOR.parse().unwrap(), 0),
    );
    let mut p = Probe::prepare(&c, "S1", "1s", None);
    let mut cfg = std::fs::read_to_string(&p.config).unwrap();
    // The collector's certificate names localhost; the probe dials it on the management veth.
    cfg = cfg.replace(
        "[collector]\n",
        "[collector]\nserver_name = \"localhost\"\n",
    );
    cfg.push_str(&format!(
        r#"
[[links]]
id = "S1-P"
role = "primary"
interface = "{}"

[[links]]
id = "S1-B"
role = "backup"
interface = "{}"

[checks]
interval = "2s"
attempts = 8
timeout = "400ms"

[[checks.targets]]
kind = "icmp"
target = "{CORE_POP}"
name = "core-pop"

[[checks.targets]]
kind = "tcp"
target = "{CORE_POP}:8080"
name = "core-tcp"

[[checks.targets]]
kind = "http"
target = "http://{CORE_POP}:8080/"
name = "core-http"

[[checks.targets]]
kind = "dns"
target = "{CORE_POP}"
query = "rie.gouv.fr"
name = "core-dns"
"#,
        net.primary_if, net.backup_if
    ));
    std::fs::write(&p.config, cfg).unwrap();
    p.spawn_in_netns(&net.site);

    // Both links measured, nothing lost on clean veths.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let site = c.get("/api/v1/sites/S1");
        let links = site["links"].as_array().unwrap();
        let measured = links
            .iter()
            .all(|l| l["loss_ratio"] == 0.0 && l["rtt_avg_ms"].as_f64().is_some_and(|r| r > 0.0));
        if site["state"] == "up" && measured {
            assert_eq!(links[0]["active"], true, "{site}");
            assert_eq!(links[1]["active"], false, "{site}");
            break;
        }
        assert!(
            Instant::now() < end,
            "links never measured: {site}\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(episodes(&c).is_empty(), "{:?}", episodes(&c));

    // 1. The primary's interface goes down: failover at once (link poll: 1 s).
    let cut = now_ms();
    net.set_link(true, false);
    wait_state(&c, &p, "on_backup", Duration::from_secs(5));
    let seen = now_ms();
    assert_episode(&episodes(&c)[0], "failover", (cut, seen), None);
    assert_eq!(episodes(&c)[0]["link"], "S1-P");
    // The technician's checklist on the router says which link is cut, in French by default.
    let out = SiteNet::exec(&net.site, rie_e2e::bin("rie-probe").to_str().unwrap())
        .args(["check", "--config"])
        .arg(&p.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains("Lien jusqu'au cœur de réseau") && l.contains(id))
            .unwrap_or_else(|| panic!("no link line for {id}: {text}"))
            .to_string()
    };
    assert!(line("S1-P").starts_with('✘'), "{text}");
    assert!(line("S1-B").starts_with('✔'), "{text}");
    assert!(
        line("S1-B").contains("core-pop") && line("S1-B").contains("core-http"),
        "{text}"
    );
    // Back: the primary carries again once its checks pass (one check interval).
    let back = now_ms();
    net.set_link(true, true);
    wait_state(&c, &p, "up", Duration::from_secs(8));
    assert_episode(
        &episodes(&c)[0],
        "failover",
        (cut, seen),
        Some((back, now_ms())),
    );

    // 2. The primary's interface stays up but the core drops everything from it: only the
    // checks can tell, and the backup's checks, bound to the backup, still pass. The partly
    // lost check intervals in which the drop starts and stops are one batch each: not enough
    // for `degraded` (sites.degraded_after = 2), so the history shows the failover alone.
    // Let a full check interval pass first: the interval in which the primary came back was
    // partly lost, and two partly lost intervals in a row are a degradation.
    std::thread::sleep(Duration::from_secs(3));
    let cut = now_ms();
    net.core_loss(true, 100);
    wait_state(&c, &p, "on_backup", Duration::from_secs(8));
    let seen = now_ms();
    let site = c.get("/api/v1/sites/S1");
    assert_eq!(site["links"][0]["up"], false, "{site}");
    assert_eq!(site["links"][1]["up"], true, "{site}");
    let back = now_ms();
    net.core_loss(true, 0);
    wait_state(&c, &p, "up", Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(3));
    let eps = episodes(&c);
    assert_eq!(eps.len(), 2, "{eps:?}");
    assert_episode(&eps[1], "failover", (cut, seen), Some((back, now_ms())));
    assert_eq!(eps[1]["link"], "S1-P");
    let before_outage = eps.len();

    // 3. Both links cut (backup first: no failover in between): outage, reported over the
    // management path while it lasts.
    net.set_link(false, false);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(&c), "up");
    let cut = now_ms();
    net.set_link(true, false);
    wait_state(&c, &p, "down", Duration::from_secs(5));
    let seen = now_ms();
    assert_eq!(episodes(&c).len(), before_outage + 1);
    assert_episode(&episodes(&c)[before_outage], "outage", (cut, seen), None);
    assert!(episodes(&c)[before_outage]["link"].is_null());
    let back = now_ms();
    net.set_link(true, true);
    wait_state(&c, &p, "up", Duration::from_secs(8));
    assert_episode(
        &episodes(&c)[before_outage],
        "outage",
        (cut, seen),
        Some((back, now_ms())),
    );
    net.set_link(false, true);

    // 4. Half the primary's packets lost: degraded (threshold 5 %), with the loss in the cause.
    let cut = now_ms();
    net.core_loss(true, 50);
    wait_state(&c, &p, "degraded", Duration::from_secs(10));
    let seen = now_ms();
    let eps = episodes(&c);
    let degraded = &eps[before_outage + 1];
    assert_episode(degraded, "degraded", (cut, seen), None);
    assert_eq!(degraded["link"], "S1-P");
    assert!(
        degraded["cause"].as_str().unwrap().starts_with("pertes "),
        "{degraded}"
    );
    let back = now_ms();
    net.core_loss(true, 0);
    wait_state(&c, &p, "up", Duration::from_secs(10));
    // Random loss may dip under the threshold for an interval and split the episode; the last
    // one closes when the loss stops.
    let eps = episodes(&c);
    assert!(eps[before_outage + 1..]
        .iter()
        .all(|e| e["kind"] == "degraded" && e["link"] == "S1-P"));
    assert_episode(
        eps.last().unwrap(),
        "degraded",
        (cut, back),
        Some((back, now_ms())),
    );

    // 5. An outage during which the probe cannot report at all (its path to the collector is
    // cut too): it keeps measuring into its spool, and the replay after the outage rebuilds the
    // outage with the times it happened.
    let before = episodes(&c).len();
    net.set_mgmt(false);
    net.set_link(false, false);
    let cut = now_ms();
    net.set_link(true, false);
    std::thread::sleep(Duration::from_secs(4));
    let back = now_ms();
    net.set_link(true, true);
    net.set_link(false, true);
    std::thread::sleep(Duration::from_secs(4));
    let restored = now_ms();
    net.set_mgmt(true);
    let end = Instant::now() + Duration::from_secs(15);
    let outage = loop {
        let eps = episodes(&c);
        if let Some(o) = eps[before..]
            .iter()
            .find(|e| e["kind"] == "outage" && !e["end"].is_null())
        {
            break o.clone();
        }
        assert!(
            Instant::now() < end,
            "outage not rebuilt from the spool: {eps:?}\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Detection still within one link poll of the cut, recovery within one check interval:
    // both long before the spool reached the collector (`restored`).
    assert_episode(
        &outage,
        "outage",
        (cut, cut + 1_500),
        Some((back, back + 4_000)),
    );
    assert!(parse_rfc3339_ms(&outage["end"]) < restored, "{outage}");
    wait_state(&c, &p, "up", Duration::from_secs(10));

    // The probe's own view for the technician.
    let st = p.status();
    assert_eq!(st["links"][0]["up"], true, "{st}");
    assert_eq!(st["links"][0]["active"], true, "{st}");
}
