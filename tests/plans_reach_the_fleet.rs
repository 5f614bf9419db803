//! Central check plans with real processes: one collector, 200 simulated probes (three
//! `rie-sim loadgen` processes: 190 current probes, 5 speaking only protocol version 1, 5 of
//! a build without HTTP checks) and two real `rie-probe` processes.
//!
//! - a national plan reaches every probe that speaks version 2, and the time until all of
//!   them report it applied is measured (printed); version-1 probes are sent nothing and are
//!   shown as `previous_protocol`;
//! - a ministry override changes the effective plan of that ministry's sites only, and the
//!   API says which scope each value came from;
//! - a plan with an HTTP check is refused by the probes that lack it, with their reason in
//!   the API, and applied by the others;
//! - an invalid plan file is refused before anything is stored;
//! - a probe that is sent a plan and never answers is shown as `pending`;
//! - a real probe killed, then restarted with the collector unreachable, runs its kept plan.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use rie_e2e::{
    batch, bin, flow, generated_inventory, plan_sites_in_state, run_ok, send_ok, wait_for,
    Collector, Loadgen, Probe, MINUTE,
};
use serde_json::Value;

/// Sites of the test inventory: 190 + 5 + 5 simulated, 2 real probes, 1 one-shot sender.
const SITES: usize = 203;

fn connected(c: &Collector) -> u64 {
    c.get("/healthz")["probes_connected"].as_u64().unwrap()
}

fn counts(c: &Collector) -> Value {
    c.get("/api/v1/plans")["sites"].clone()
}

fn count(c: &Collector, state: &str) -> u64 {
    counts(c)[state].as_u64().unwrap()
}

fn add_plan(c: &Collector, dir: &std::path::Path, name: &str, text: &str, scope: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["plan", "add"])
            .arg(&file)
            .args(["--scope", scope])
            .args(c.config_args()),
    )
}

fn in_state(c: &Collector, state: &str) -> Vec<(String, u64, u64)> {
    plan_sites_in_state(c, state)
}

#[test]
fn plans_reach_the_fleet_and_are_refused_with_reasons() {
    let (gen, inv) = generated_inventory(SITES, 7);
    let c = Collector::start_with_inventory(gen.path());
    let work = tempfile::tempdir().unwrap();
    let site = |i: usize| inv.sites[i].id.as_str().to_string();
    let api_target = format!("127.0.0.1:{}", c.api_addr.port());

    // The two real probes: one link each (no interface: nothing to bind), local TCP checks.
    let real: Vec<usize> = vec![200, 201];
    let mut probes: Vec<Probe> = real
        .iter()
        .map(|&i| Probe::with_tcp_check(&c, &inv, i, "1s", "2s", &api_target))
        .collect();
    for p in &mut probes {
        p.spawn();
    }
    // One at a time: each issues its sites' tokens in the store first.
    let _current = Loadgen::start(&c, 0, 190, "5s", &[]);
    wait_for("190 simulated probes", Duration::from_secs(60), || {
        connected(&c) >= 192
    });
    let _v1 = Loadgen::start(&c, 190, 5, "5s", &["--protocol-version", "1"]);
    wait_for("195 simulated probes", Duration::from_secs(30), || {
        connected(&c) >= 197
    });
    let _no_http = Loadgen::start(&c, 195, 5, "5s", &["--lacks-check", "http"]);
    wait_for("200 simulated probes", Duration::from_secs(30), || {
        connected(&c) == 202 && count(&c, "previous_protocol") == 5
    });
    let before = counts(&c);
    assert_eq!(before["no_plan"], 198, "{before}");
    for p in &probes {
        let st = p.wait_status("local checks", Duration::from_secs(10), |s| {
            s["plan"]["source"] == "local"
        });
        assert_eq!(st["plan"]["version"], 0);
    }

    // An invalid plan file is refused before anything is stored.
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[primary]\nattempts = 0\n").unwrap();
    let o = Command::new(bin("rie-collector"))
        .args(["plan", "add"])
        .arg(&bad)
        .args(["--scope", "national"])
        .args(c.config_args())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}: key `primary.attempts` must be between 1 and 100; e.g. 5",
            bad.display()
        )),
        "{err}"
    );
    let o = Command::new(bin("rie-collector"))
        .args(["plan", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(c.get("/api/v1/plans")["latest_version"], 0);
    // The README's example plan is valid.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/plans/national.example.toml");
    let out = run_ok(
        Command::new(bin("rie-collector"))
            .args(["plan", "check"])
            .arg(&example),
    );
    assert_eq!(out, format!("{}: valid plan\n", example.display()));

    // 1. A national plan reaches every version-2 probe.
    let national = format!(
        "[primary]\ninterval = \"2s\"\nattempts = 2\ntimeout = \"500ms\"\nmax_rtt_ms = 150\n[[primary.targets]]\nkind = \"tcp\"\ntarget = \"{api_target}\"\nname = \"national-api\"\n"
    );
    let checked = run_ok(
        Command::new(bin("rie-collector"))
            .args(["plan", "check"])
            .arg({
                let f = work.path().join("national.toml");
                std::fs::write(&f, &national).unwrap();
                f
            }),
    );
    assert!(
        checked.ends_with("national.toml: valid plan\n"),
        "{checked}"
    );
    let t0 = Instant::now();
    let out = add_plan(&c, work.path(), "national.toml", &national, "national");
    assert!(
        out.starts_with(&format!(
            "stored {} as plan version 1 for national",
            work.path().join("national.toml").display()
        )),
        "{out}"
    );
    wait_for(
        "197 probes applying plan 1",
        Duration::from_secs(30),
        || count(&c, "applied") == 197,
    );
    let elapsed = t0.elapsed();
    eprintln!(
        "national plan applied by 197 probes (190 + 5 simulated, 2 real) {} ms after `plan add` returned",
        elapsed.as_millis()
    );
    let after = counts(&c);
    assert_eq!(after["previous_protocol"], 5, "{after}");
    assert_eq!(after["not_sent"], 1, "{after}");
    assert_eq!(after["pending"], 0, "{after}");
    for p in &probes {
        let st = p.wait_status("plan 1 in the status file", Duration::from_secs(5), |s| {
            s["plan"]["version"] == 1
        });
        assert_eq!(st["plan"]["source"], "collector");
        let link = st["plan"]["checks"][0].as_str().unwrap().to_string();
        assert!(link.starts_with("tcp national-api over "), "{st}");
        assert_eq!(st["plan"]["checks"].as_array().unwrap().len(), 1, "{st}");
    }
    // A version-1 probe: nothing sent, its own checks run, and the API says so.
    let v1 = c.get(&format!("/api/v1/sites/{}/plan", site(190)));
    assert_eq!(v1["status"]["state"], "previous_protocol", "{v1}");
    assert_eq!(v1["effective"]["version"], 1, "{v1}");

    // 2. A ministry override changes only that ministry's sites.
    let ministry = inv.sites[200].ministry.clone();
    add_plan(
        &c,
        work.path(),
        "ministry.toml",
        "[primary]\ninterval = \"3s\"\n",
        &format!("ministry:{ministry}"),
    );
    let of_ministry = |i: usize| inv.sites[i].ministry == ministry;
    // Version-2 probes of the ministry: simulated ones outside 190..195, and the real ones.
    let expected_v2: Vec<String> = (0..202)
        .filter(|&i| of_ministry(i) && !(190..195).contains(&i))
        .map(site)
        .collect();
    assert!(expected_v2.len() >= 2, "{ministry}: {expected_v2:?}");
    wait_for(
        "the ministry's probes applying plan 2",
        Duration::from_secs(30),
        || {
            in_state(&c, "applied")
                .iter()
                .filter(|(_, e, r)| *e == 2 && *r == 2)
                .count()
                == expected_v2.len()
        },
    );
    let applied = in_state(&c, "applied");
    assert_eq!(applied.len(), 197);
    for (s, eff, rep) in &applied {
        let i = inv.sites.iter().position(|x| x.id.as_str() == s).unwrap();
        let want = if of_ministry(i) { 2 } else { 1 };
        assert_eq!(
            (*eff, *rep),
            (want, want),
            "site {s} (ministry {})",
            inv.sites[i].ministry
        );
    }
    let a = c.get(&format!("/api/v1/sites/{}/plan", site(200)));
    let e = &a["effective"];
    assert_eq!(e["version"], 2, "{a}");
    assert_eq!(e["primary"]["checks"]["interval"], "3s", "{a}");
    assert_eq!(
        e["sources"]["primary.interval"],
        format!("ministry:{ministry}")
    );
    assert_eq!(e["sources"]["primary.attempts"], "national");
    assert_eq!(e["sources"]["primary.targets"], "national");
    assert_eq!(e["sources"]["backup.targets"], "default");
    assert_eq!(e["primary"]["thresholds"]["max_rtt_ms"], 150);
    assert_eq!(a["status"]["state"], "applied");
    probes[0].wait_status("plan 2 on the real probe", Duration::from_secs(5), |s| {
        s["plan"]["version"] == 2
    });

    // 3. An HTTP check: refused by the probes of a build without it, with the reason.
    let with_http = format!(
        "{national}[backup]\n[[backup.targets]]\nkind = \"http\"\ntarget = \"http://{api_target}/healthz\"\nname = \"portal\"\n"
    );
    add_plan(
        &c,
        work.path(),
        "national-http.toml",
        &with_http,
        "national",
    );
    wait_for("plan 3 answered", Duration::from_secs(30), || {
        let n = counts(&c);
        n["refused"] == 5 && n["applied"] == 192
    });
    let refused = c.get(&format!("/api/v1/sites/{}/plan", site(197)));
    assert_eq!(refused["status"]["state"], "refused", "{refused}");
    assert_eq!(refused["status"]["reported_version"], 3);
    assert_eq!(
        refused["status"]["reason"],
        "plan 3 has a http check (backup target portal), which this probe build cannot run: upgrade the probe, or leave http checks out of this scope's plan"
    );
    let refused_sites: Vec<String> = in_state(&c, "refused").into_iter().map(|r| r.0).collect();
    assert_eq!(refused_sites, (195..200).map(site).collect::<Vec<_>>());

    // A probe that is sent a plan and never answers: pending, not applied.
    let lone = c.probe_config(&site(202));
    send_ok(&lone, 77, &[batch(1, vec![flow(MINUTE, 6, 1, 2, 3)])]);
    let pending = c.get(&format!("/api/v1/sites/{}/plan", site(202)));
    assert_eq!(pending["status"]["state"], "pending", "{pending}");
    assert_eq!(pending["status"]["reported_version"], 3);
    assert_eq!(count(&c, "pending"), 1);

    // 4. A real probe killed, restarted while the collector is unreachable: its kept plan runs.
    probes[0].wait_status("plan 3 on the real probe", Duration::from_secs(5), |s| {
        s["plan"]["version"] == 3
    });
    probes[0].kill9();
    let mut c = c;
    c.kill9();
    probes[0].spawn();
    let st = probes[0].wait_status("the kept plan", Duration::from_secs(10), |s| {
        s["plan"]["source"] == "persisted"
    });
    assert_eq!(st["plan"]["version"], 3, "{st}");
    assert_eq!(st["connected"], false, "{st}");
    assert!(
        st["plan"]["checks"][0]
            .as_str()
            .unwrap()
            .starts_with("tcp national-api over "),
        "{st}"
    );
    assert!(probes[0]
        .log()
        .contains("running the check plan kept from the last run"));
}
