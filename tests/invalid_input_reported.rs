//! Bad inventory and configuration files stop the collector with exit code 2 and a message
//! naming the file, the line (and column) and the fix.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use rie_e2e::{bin, fixture};

fn serve_with(inventory: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("rie-collector"))
        .arg("serve")
        .arg("--inventory")
        .arg(inventory)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--pki-dir")
        .arg(dir.path().join("pki"))
        .args([
            "--probe-listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn broken_inventory(edit: impl Fn(&str) -> String, file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["sites.csv", "links.csv"] {
        let text = std::fs::read_to_string(fixture("inventory").join(f)).unwrap();
        let text = if f == file { edit(&text) } else { text };
        std::fs::write(dir.path().join(f), text).unwrap();
    }
    dir
}

#[test]
fn invalid_inventory_line_is_reported_with_its_position() {
    let inv = broken_inventory(|t| t.replace(",973,35,", ",973,trente-cinq,"), "sites.csv");
    let (code, err) = serve_with(inv.path(), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("sites.csv: line 3, column 5 (agents): \"trente-cinq\" is not a valid number; write e.g. 42"),
        "{err}"
    );

    let inv = broken_inventory(
        |t| format!("{t}S4-P,S4,primary,SFR,fibre,100,300\n"),
        "links.csv",
    );
    let (code, err) = serve_with(inv.path(), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("links.csv: line 7, column 2 (site_id): site S4 is not in"),
        "{err}"
    );

    let inv = broken_inventory(|t| t.replace("S3,Tribunal", "S1,Tribunal"), "sites.csv");
    let (code, err) = serve_with(inv.path(), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("sites.csv: line 4, column 1 (site_id): duplicate site id S1: already defined on line 2"), "{err}");
}

#[test]
fn invalid_config_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("collector.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"/tmp/x\"\n\n[probes]\nmax_connection = 10\n",
    )
    .unwrap();
    let (code, err) = serve_with(&fixture("inventory"), &["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("collector.toml") && err.contains("line 4") && err.contains("max_connection"),
        "{err}"
    );

    // Missing certificates are the user's to fix too, with the command that makes them.
    let (code, err) = serve_with(&fixture("inventory"), &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("server.pem") && err.contains("pki init"),
        "{err}"
    );
}
