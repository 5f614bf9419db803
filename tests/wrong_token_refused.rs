//! A probe with a wrong or unknown credential is refused with a reason, counted, and nothing it
//! sends is stored.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use rie_e2e::{batch, flow, send_batches, Collector, MINUTE};

fn refused(c: &Collector, cfg: &std::path::Path, expect: &str) {
    let out = send_batches(cfg, 1, &[batch(1, vec![flow(MINUTE, 6, 1, 1, 100)])]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refused probe must fail");
    assert!(
        stderr.contains(expect),
        "stderr: {stderr}\ncollector: {}",
        c.log()
    );
}

#[test]
fn wrong_token_unknown_site_and_unenrolled_site_are_refused() {
    let c = Collector::start();
    let good = c.probe_config("S1");
    let text = std::fs::read_to_string(&good).unwrap();
    let token_line = text.lines().find(|l| l.starts_with("token = ")).unwrap();

    let wrong = good.with_file_name("wrong.toml");
    std::fs::write(
        &wrong,
        text.replace(token_line, "token = \"00000000000000000000000000000000\""),
    )
    .unwrap();
    refused(&c, &wrong, "token refused for site S1");
    assert_eq!(
        c.metric("rie_collector_auth_failures_total{reason=\"bad_token\"}"),
        1.0
    );

    // S2 exists but no credential was issued for it; S1's token does not open S2.
    let other_site = good.with_file_name("s2.toml");
    std::fs::write(
        &other_site,
        text.replace("site_id = \"S1\"", "site_id = \"S2\""),
    )
    .unwrap();
    refused(&c, &other_site, "no credential was issued for site S2");
    assert_eq!(
        c.metric("rie_collector_auth_failures_total{reason=\"not_enrolled\"}"),
        1.0
    );

    let unknown = good.with_file_name("s99.toml");
    std::fs::write(
        &unknown,
        text.replace("site_id = \"S1\"", "site_id = \"S99\""),
    )
    .unwrap();
    refused(&c, &unknown, "site S99 is not in the collector's inventory");
    assert_eq!(
        c.metric("rie_collector_auth_failures_total{reason=\"unknown_site\"}"),
        1.0
    );

    let zero = c.totals(None);
    assert_eq!(
        (zero["flows"].as_u64(), zero["bytes"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(c.metric("rie_collector_probe_batches_total"), 0.0);
    for s in c.get("/api/v1/sites").as_array().unwrap() {
        assert_eq!(s["state"], "unknown", "{s}");
    }
    assert!(
        c.log().contains("probe refused"),
        "refusals are logged with their reason"
    );
}

#[test]
fn reissuing_a_probe_config_revokes_the_old_token() {
    let c = Collector::start();
    use std::os::unix::fs::PermissionsExt;
    let first = c.probe_config("S1");
    let old = first.with_file_name("old.toml");
    std::fs::copy(&first, &old).unwrap();
    // Someone loosened the file's permissions; re-issuing over it must tighten them again.
    std::fs::set_permissions(&first, std::fs::Permissions::from_mode(0o644)).unwrap();
    let second = c.probe_config("S1");
    assert_eq!(second, first);
    let mode = std::fs::metadata(&second).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a probe config holds a secret");
    refused(&c, &old, "token refused for site S1");
}
