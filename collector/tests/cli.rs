//! The `rie-collector` command line as a user meets it: generated inventories are reproducible
//! and valid, exit codes follow the contract (2 for the user's files).

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rie-collector"))
}

#[test]
fn inventory_generate_is_reproducible_and_checks_valid() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        let out = collector()
            .args([
                "inventory",
                "generate",
                "--sites",
                "500",
                "--seed",
                "42",
                "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("500 sites"));
    }
    for f in ["sites.csv", "links.csv"] {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs for the same seed"
        );
    }
    let out = collector()
        .args(["inventory", "check", "--dir"])
        .arg(a.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid; 500 sites"), "{text}");
    // The generator gives every site its prefixes.
    assert!(
        text.trim_end().ends_with(", 500 with site prefixes"),
        "{text}"
    );
}

#[test]
fn user_errors_exit_with_code_2_and_say_the_fix() {
    let missing = collector()
        .args(["inventory", "check", "--dir", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/sites.csv"));

    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    assert!(collector()
        .args(["pki", "init", "--dir"])
        .arg(&pki)
        .status()
        .unwrap()
        .success());
    let again = collector()
        .args(["pki", "init", "--dir"])
        .arg(&pki)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        "[netflow]\nlisten = \"127.0.0.1:0\"\nmax_exporters = 0\n",
    )
    .unwrap();
    let netflow = collector()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(netflow.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&netflow.stderr).contains("netflow.max_exporters"));
}
