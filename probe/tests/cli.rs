//! The `rie-probe` command line: configuration problems exit with code 2 and name the file and
//! key, so a technician knows what to fix.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn probe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rie-probe"))
}

#[test]
fn config_errors_exit_2_naming_file_and_key() {
    let out = probe()
        .args(["run", "--config", "/nonexistent/probe.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/probe.toml: cannot read"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.toml");
    std::fs::write(
        &cfg,
        format!(
            "site_id = \"S1\"\ndata_dir = \"{}\"\n[collector]\naddress = \"127.0.0.1:7443\"\ntoken = \"t\"\nca_cert = \"not a certificate\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = probe()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("probe.toml: key `collector.ca_cert`") && err.contains("ca.pem"),
        "{err}"
    );

    std::fs::write(&cfg, "site_id = \"S1\"\nbatch_interval = \"often\"\n").unwrap();
    let out = probe()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("batch_interval"),
        "{err}"
    );
}
