//! Staged rollout of a check plan with real processes: one collector, 38 simulated probes
//! (`rie-sim loadgen`) and two real `rie-probe` processes, on 40 sites.
//!
//! - a national plan is stored and applied everywhere (the plan to return to);
//! - a rollout of a plan that breaks the checks (a TCP target nothing listens on) reaches
//!   the canary only: the two real probes, named as canary sites; their sites go down after
//!   applying it and the rollout halts by itself, naming them, before any wave; the 38 other
//!   sites keep the previous plan; the metrics and the API say so; `plan add` on the held
//!   scope is refused;
//! - `plan rollback` stores the previous plan again under a new version and every site,
//!   the canary included, applies it; the canary's sites come back up;
//! - a good plan rolled out through the admin API goes canary → 50% → 100% → done, each
//!   wave's sites counted exactly, and reaches every site.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use rie_e2e::{
    bin, generated_inventory, plan_sites_in_state, run_ok, wait_for, Collector, Loadgen, Probe,
};
use serde_json::Value;

const SITES: usize = 40;
/// Sites of the real probes (the last two of the inventory).
const REAL: [usize; 2] = [38, 39];

fn plan_text(target: &str, name: &str) -> String {
    format!(
        "[primary]\ninterval = \"1s\"\nattempts = 2\ntimeout = \"300ms\"\nmax_rtt_ms = 150\n[[primary.targets]]\nkind = \"tcp\"\ntarget = \"{target}\"\nname = \"{name}\"\n"
    )
}

fn applied(c: &Collector) -> Vec<(String, u64, u64)> {
    plan_sites_in_state(c, "applied")
}

fn applied_at(c: &Collector, version: u64) -> usize {
    applied(c)
        .iter()
        .filter(|(_, e, r)| *e == version && *r == version)
        .count()
}

fn latest_rollout(c: &Collector) -> Value {
    c.get("/api/v1/plans/rollouts")["rollouts"][0].clone()
}

fn site_state(c: &Collector, site: &str) -> String {
    c.get(&format!("/api/v1/sites/{site}"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn waves(r: &Value) -> Vec<(String, u64, bool, u64, u64, u64, u64)> {
    r["progress"]["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["sites"].as_u64().unwrap(),
                w["released"].as_bool().unwrap(),
                w["applied"].as_u64().unwrap(),
                w["pending"].as_u64().unwrap(),
                w["refused"].as_u64().unwrap(),
                w["bad"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_canary_that_breaks_the_checks_halts_the_rollout_and_rollback_restores_the_plan() {
    let (gen, inv) = generated_inventory(SITES, 7);
    let c = Collector::start_with_inventory(gen.path());
    let work = tempfile::tempdir().unwrap();
    let site = |i: usize| inv.sites[i].id.as_str().to_string();
    let api_target = format!("127.0.0.1:{}", c.api_addr.port());
    // A port nothing listens on: connections are refused at once.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };

    let mut probes: Vec<Probe> = REAL
        .iter()
        .map(|&i| Probe::with_tcp_check(&c, &inv, i, "1s", "1s", &api_target))
        .collect();
    for p in &mut probes {
        p.spawn();
    }
    let _sim = Loadgen::start(&c, 0, SITES - REAL.len(), "2s", &[]);
    wait_for("40 probes connected", Duration::from_secs(60), || {
        c.get("/healthz")["probes_connected"].as_u64().unwrap() == SITES as u64
    });

    // The plan to return to: stored and applied everywhere; the real probes' sites are up.
    let good = work.path().join("good.toml");
    std::fs::write(&good, plan_text(&api_target, "national-api")).unwrap();
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["plan", "add"])
            .arg(&good)
            .args(["--scope", "national"])
            .args(c.config_args()),
    );
    wait_for("40 sites on plan 1", Duration::from_secs(30), || {
        applied_at(&c, 1) == SITES
    });
    for &i in &REAL {
        wait_for("real probe's site up", Duration::from_secs(30), || {
            site_state(&c, &site(i)) == "up"
        });
    }

    // A plan whose check cannot succeed, rolled out with the real probes as canary.
    let broken = work.path().join("broken.toml");
    std::fs::write(&broken, plan_text(&closed, "broken-target")).unwrap();
    let out = run_ok(
        Command::new(bin("rie-collector"))
            .args(["plan", "rollout"])
            .arg(&broken)
            .args(["--canary", "5%", "--waves", "50%,100%"])
            .args(["--wave-interval", "8s", "--max-bad", "0%"])
            .args([
                "--canary-site",
                &site(REAL[0]),
                "--canary-site",
                &site(REAL[1]),
            ])
            .args(c.config_args()),
    );
    assert_eq!(
        out.trim(),
        format!(
            "rollout 1 started: {} stored as plan version 2 for national (40 sites; previous plan version 1); canary 2 sites now, then 20, 40 every 8s; halts above 0% refused or bad",
            broken.display()
        )
    );
    let t0 = Instant::now();
    wait_for("the rollout to halt", Duration::from_secs(30), || {
        latest_rollout(&c)["state"] == "halted"
    });
    let halted_after = t0.elapsed();
    eprintln!(
        "canary on a broken plan: rollout halted {} ms after it started",
        halted_after.as_millis()
    );
    let r = latest_rollout(&c);
    // Halted during the canary: no wave ever started.
    assert_eq!(r["wave"], 0, "{r}");
    assert_eq!(r["version"], 2, "{r}");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("halted in canary: 2 of 2 released sites refused the plan or turned degraded, down or silent after applying it (0 refused, 2 bad), over the 0% allowed: "),
        "{reason}"
    );
    for &i in &REAL {
        assert!(
            reason.contains(&format!("{} (down since ", site(i))),
            "{reason}"
        );
    }
    assert_eq!(
        waves(&r),
        vec![
            ("canary".into(), 2, true, 0, 0, 0, 2),
            ("wave 1 (50%)".into(), 18, false, 0, 0, 0, 0),
            ("wave 2 (100%)".into(), 20, false, 0, 0, 0, 0),
        ]
    );
    assert_eq!(r["progress"]["released"], 2);
    // Past the wave interval: still halted, and the 38 other sites kept plan 1.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(halted_after));
    let r = latest_rollout(&c);
    assert_eq!(
        (r["state"].as_str(), r["wave"].as_u64()),
        (Some("halted"), Some(0))
    );
    assert_eq!(applied_at(&c, 1), SITES - 2);
    let canary: Vec<String> = applied(&c)
        .into_iter()
        .filter(|(_, e, r)| *e == 2 && *r == 2)
        .map(|(s, _, _)| s)
        .collect();
    let mut real: Vec<String> = REAL.iter().map(|&i| site(i)).collect();
    real.sort();
    assert_eq!(canary, real);
    for series in [
        ("rie_plan_rollout_halted", 1.0),
        ("rie_plan_rollout_id", 1.0),
        ("rie_plan_rollout_wave", 0.0),
        ("rie_plan_rollout_sites{state=\"bad\"}", 2.0),
        ("rie_plan_rollout_sites{state=\"applied\"}", 0.0),
        ("rie_plan_rollout_sites{state=\"waiting\"}", 38.0),
    ] {
        assert_eq!(c.metric(series.0), series.1, "{}", series.0);
    }
    // A plan added on the held scope would bypass the rollout: refused, nothing stored.
    let o = Command::new(bin("rie-collector"))
        .args(["plan", "add"])
        .arg(&good)
        .args(["--scope", "national"])
        .args(c.config_args())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rollout 1 of national is halted: a plan added now would bypass it; roll it back first (`plan rollback --rollout 1`)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(c.get("/api/v1/plans")["latest_version"], 2);

    // Rollback: the previous plan again, as version 3, everywhere.
    let out = run_ok(
        Command::new(bin("rie-collector"))
            .args(["plan", "rollback"])
            .args(c.config_args()),
    );
    assert_eq!(
        out.trim(),
        "rollout 1 rolled back: plan version 3 (the text of version 1) stored for national; the collectors push it to every site within seconds"
    );
    wait_for("40 sites on plan 3", Duration::from_secs(30), || {
        applied_at(&c, 3) == SITES
    });
    let plans = c.get("/api/v1/plans");
    assert_eq!(plans["plans"][2]["toml"], plans["plans"][0]["toml"]);
    assert_eq!(plans["plans"][2]["hash"], plans["plans"][0]["hash"]);
    for &i in &REAL {
        wait_for("canary site up again", Duration::from_secs(30), || {
            site_state(&c, &site(i)) == "up"
        });
    }
    let r = latest_rollout(&c);
    assert_eq!(r["state"], "rolled_back");
    assert_eq!(r["rollback_version"], 3);
    wait_for("halted gauge back to 0", Duration::from_secs(5), || {
        c.metric("rie_plan_rollout_halted") == 0.0
    });
    // Nothing left to roll back.
    let o = Command::new(bin("rie-collector"))
        .args(["plan", "rollback", "--rollout", "1"])
        .args(c.config_args())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("rollout 1 was already rolled back (plan version 3)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A good plan through the admin API: every wave in turn, then done.
    let body = serde_json::json!({
        "toml": plan_text(&api_target, "national-api-v2"),
        "scope": "national",
        "canary": "5%",
        "waves": "50%,100%",
        "wave_interval": "3s",
        "max_bad": "0%",
    });
    let resp = ureq::post(&c.url("/api/v1/admin/plans/rollouts"))
        .send_json(body)
        .unwrap();
    assert_eq!(resp.status(), 201);
    let started: Value = resp.into_json().unwrap();
    assert_eq!(
        (
            started["id"].as_u64(),
            started["version"].as_u64(),
            started["state"].as_str()
        ),
        (Some(2), Some(4), Some("running"))
    );
    let t1 = Instant::now();
    let mut seen_waves = Vec::new();
    wait_for(
        "the second rollout to finish",
        Duration::from_secs(60),
        || {
            let r = latest_rollout(&c);
            let w = r["wave"].as_u64().unwrap();
            if seen_waves.last() != Some(&w) {
                seen_waves.push(w);
            }
            r["state"] == "done"
        },
    );
    let done_after = t1.elapsed();
    assert_eq!(seen_waves, vec![0, 1, 2]);
    // Three intervals of 3 s: the canary's, wave 1's and wave 2's.
    assert!(done_after >= Duration::from_millis(8_500), "{done_after:?}");
    wait_for("40 sites on plan 4", Duration::from_secs(30), || {
        applied_at(&c, 4) == SITES
    });
    let r = latest_rollout(&c);
    assert_eq!(
        waves(&r),
        vec![
            ("canary".into(), 2, true, 2, 0, 0, 0),
            ("wave 1 (50%)".into(), 18, true, 18, 0, 0, 0),
            ("wave 2 (100%)".into(), 20, true, 20, 0, 0, 0),
        ]
    );
    // Without authentication the caller is `open`.
    assert_eq!(r["started_by"], "api:open");
    // A bad request names the field.
    let err = ureq::post(&c.url("/api/v1/admin/plans/rollouts"))
        .send_json(serde_json::json!({ "toml": plan_text(&api_target, "x"), "waves": "10%,50%" }))
        .unwrap_err();
    match err {
        ureq::Error::Status(400, r) => assert_eq!(
            r.into_string().unwrap(),
            "{\"error\":\"waves: \\\"10%,50%\\\" must end with 100% (e.g. 10%,50%,100%), or the rollout would never finish\"}"
        ),
        e => panic!("{e}"),
    }
}
