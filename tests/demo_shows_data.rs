//! The README's demo command works: collector and simulated probes through the real protocol,
//! every site reporting within seconds, a clean stop, and a terminal a newcomer can read: at
//! the default log level a handful of lines whatever the number of sites (one summary of the
//! probes connecting, not one line per probe).

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rie_e2e::bin;

#[test]
fn demo_reports_every_site_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("rie-sim"))
        .env_remove("RUST_LOG")
        .args([
            "demo",
            "--sites",
            "60",
            "--interval",
            "1s",
            "--duration",
            "9s",
            "--api-listen",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("rie-telemetry demo: 60 sites"), "{stdout}");
    assert!(
        stdout.contains("/api/v1/sites") && stdout.contains("/metrics"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sites reporting 60/60 (probes connected 60)"),
        "{stdout}"
    );
    let stored: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo stopped: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("final line");
    // 60 probes × about 9 one-second intervals; staggered starts and incidents take some.
    assert!(stored >= 60 * 5, "{stdout}");
    assert!(dir.path().join("data/rie.db").exists());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("WARN"), "{stderr}");
    // Every probe connected, said once.
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("60 probes connected in "))
            .count(),
        1,
        "{stdout}"
    );
    // The log at info: start, session summaries (one per 10 s), stop; no line per probe.
    assert!(!stderr.contains("probe connected"), "{stderr}");
    assert!(stderr.lines().count() <= 8, "{stderr}");
    // stdout: the banner (8 lines), the connected line, one summary per 5 s, the last line.
    assert!(stdout.lines().count() <= 12, "{stdout}");
}
