//! The Prometheus files of `configs/prometheus/` pass Prometheus's own checker: `promtool check
//! config` (scrape config), `promtool check rules` (recording and alert rules) and `promtool test
//! rules` (unit tests of every rule), and the unit tests cover every alert both firing and not
//! firing.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/prometheus")
}

/// Runs promtool in `configs/prometheus`; fails with the install hint when it is missing.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): install it with `apt-get install prometheus`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

fn files(sub: &str, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir().join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .map(|n| format!("{sub}/{n}"))
        .collect();
    v.sort();
    v
}

/// Where `prometheus.yml` expects the collector's API token.
const TOKEN_FILE: &str = "/etc/prometheus/rie-collector.token";

#[test]
fn scrape_config_is_valid() {
    // promtool checks that the token file exists: a copy of the configuration pointing at
    // one in a temporary directory (the dashboards test scrapes with a real token).
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["rules", "targets"] {
        std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        for f in files(sub, ".yml") {
            std::fs::copy(dir().join(&f), tmp.path().join(&f)).unwrap();
        }
    }
    let token = tmp.path().join("rie-collector.token");
    std::fs::write(&token, "rie_000000000000_0000\n").unwrap();
    let main = std::fs::read_to_string(dir().join("prometheus.yml")).unwrap();
    assert!(main.contains(TOKEN_FILE), "{main}");
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        main.replace(TOKEN_FILE, &token.display().to_string()),
    )
    .unwrap();
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(tmp.path())
        .output()
        .expect("promtool not runnable: install it with `apt-get install prometheus`");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 2 rule files found"), "{text}");
}

#[test]
fn rules_are_valid() {
    let rules = files("rules", ".yml");
    assert_eq!(rules, ["rules/alerts.yml", "rules/recording.yml"]);
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    let out = promtool(&args);
    assert!(out.contains("SUCCESS: 14 rules found"), "{out}");
    assert!(out.contains("SUCCESS: 16 rules found"), "{out}");
}

#[test]
fn rule_unit_tests_pass() {
    let tests = files("tests", ".test.yml");
    assert_eq!(tests.len(), 4, "{tests:?}");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = promtool(&args);
    assert_eq!(out.matches("SUCCESS").count(), 4, "{out}");
}

/// Every alert of `rules/alerts.yml` has a unit test where it fires and one where it does not,
/// and every alert carries the routing labels.
#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let alerts_text = std::fs::read_to_string(dir().join("rules/alerts.yml")).unwrap();
    let alerts: BTreeSet<String> = alerts_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(str::to_string)
        .collect();
    assert_eq!(alerts.len(), 14, "{alerts:?}");
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for f in files("tests", ".test.yml") {
        let text = std::fs::read_to_string(dir().join(f)).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(name) = l.strip_prefix("alertname: ") {
                match lines.get(i + 1).copied() {
                    Some("exp_alerts: []") => quiet.insert(name.to_string()),
                    Some("exp_alerts:") => firing.insert(name.to_string()),
                    other => panic!("unexpected line after alertname {name}: {other:?}"),
                };
            }
        }
    }
    assert_eq!(firing, alerts, "alerts without a firing test");
    assert_eq!(quiet, alerts, "alerts without a not-firing test");
    // Routing: each alert sets severity; alerts not built on site series set ministry.
    assert_eq!(alerts_text.matches("severity: ").count(), alerts.len());
}

/// Runs amtool in `configs/prometheus`; fails with the install hint when it is missing.
fn amtool(args: &[&str]) -> String {
    let out = Command::new("amtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("amtool not runnable ({e}): install it with `apt-get install prometheus-alertmanager`")
        });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "amtool {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The example Alertmanager config is valid and routes by ministry: a ministry's alerts go to
/// its team, critical ones to the central NOC as well, the platform's to its operators.
#[test]
fn alertmanager_example_routes_by_ministry() {
    let out = amtool(&["check-config", "alertmanager.yml"]);
    assert!(
        out.contains("SUCCESS") && out.contains("3 inhibit rules"),
        "{out}"
    );
    for (labels, receivers) in [
        (
            ["ministry=Justice", "severity=critical"],
            "noc-central,min-justice",
        ),
        (["ministry=Justice", "severity=warning"], "min-justice"),
        (
            ["ministry=Économie et Finances", "severity=warning"],
            "min-economie",
        ),
        (
            ["ministry=exploitation", "severity=critical"],
            "exploitation",
        ),
        (
            ["ministry=interministeriel", "severity=critical"],
            "noc-central",
        ),
        (["ministry=Inconnu", "severity=warning"], "noc-central"),
    ] {
        let mut args = vec!["config", "routes", "test", "--config.file=alertmanager.yml"];
        args.extend(labels);
        assert_eq!(amtool(&args).trim(), receivers, "{labels:?}");
    }
    // Every ministry label a site alert can carry has its own route: the inventory's ministries.
    let text = std::fs::read_to_string(dir().join("alertmanager.yml")).unwrap();
    let inv = rie_collector::inventory::load_dir(&dir().join("../inventory")).unwrap();
    let ministries: BTreeSet<&str> = inv.sites.iter().map(|s| s.ministry.as_str()).collect();
    assert_eq!(ministries.len(), 12, "{ministries:?}");
    for m in ministries {
        assert!(
            text.contains(&format!("ministry=\"{m}\"")),
            "no route for {m}"
        );
    }
}
