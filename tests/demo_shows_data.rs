//! The README's demo command works: collector and simulated probes through the real protocol,
//! every site reporting within seconds, a clean stop, and a terminal a newcomer can read: at
//! the default log level a handful of lines whatever the number of sites (one summary of the
//! probes connecting, not one line per probe). The API requires a token and the demo prints
//! a login link with one: while the demo runs, the link's token reads the API, no token gets
//! 401.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use rie_e2e::bin;

#[test]
fn demo_reports_every_site_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("rie-sim"))
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The banner, read while the demo runs: the status line holds the login link.
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let link = loop {
        let mut line = String::new();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "no status line: {banner}"
        );
        banner.push_str(&line);
        if let Some(rest) = line.trim().strip_prefix("status   ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let (base, token) = link.split_once("/#token=").unwrap();
    let sites = format!("{base}/api/v1/sites");
    let with = ureq::get(&sites)
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(with.status(), 200);
    let listed: serde_json::Value = with.into_json().unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(60));
    match ureq::get(&sites).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("without the token: {other:?}"),
    }
    let mut rest = String::new();
    lines.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let stdout = format!("{banner}{rest}");
    let out = (status, stderr);
    assert!(out.0.success(), "{stdout}\n{}", out.1);
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
    let stderr = out.1;
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
    // stdout: the banner (9 lines), the connected line, one summary per 5 s, the last line.
    assert!(stdout.lines().count() <= 13, "{stdout}");
}
