//! The `rie-sim` binary answers with its subcommands. (This test also makes `cargo test
//! --workspace` build the binary the end-to-end tests in the top-level `tests/` start.)

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_lists_demo_and_loadgen() {
    let out = Command::new(env!("CARGO_BIN_EXE_rie-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("demo") && text.contains("loadgen"), "{text}");
}

#[test]
fn zero_sites_is_a_user_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_rie-sim"))
        .args(["demo", "--sites", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--sites 0: choose 1 to 60000"), "{text}");
}
