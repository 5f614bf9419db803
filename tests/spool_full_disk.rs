//! A full disk under the spool (a 32 KiB tmpfs mounted by the test) while the collector is
//! away: the probe keeps running, holds batches in memory, says so in its status, frees space as
//! acknowledgements come once the collector is back, and loses nothing.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rie_e2e::{Collector, Probe};

/// A small tmpfs, unmounted when dropped. Needs root.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn stored(c: &Collector) -> u64 {
    c.get("/api/v1/sites/S1")["probe"]["batches_stored"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn full_disk_under_the_spool_loses_nothing() {
    let mut c = Collector::start();
    let mut p = Probe::prepare(
        &c,
        "S1",
        "100ms",
        Some("seed = 9\nagents = 60\nprimary_link = \"S1-P\"\nincident_rate = 0.0"),
    );
    let _disk = Tmpfs::mount(p.data_dir.join("spool"), "32k");
    p.spawn();
    c.wait_until("first batches", Duration::from_secs(15), |c| stored(c) >= 2);

    c.kill9();
    let st = p.wait_status("the disk to fill", Duration::from_secs(30), |s| {
        s["spool"]["write_errors"].as_u64() > Some(0)
    });
    assert_eq!(st["running"], true);
    assert!(p.log().contains("cannot write to the spool"), "{}", p.log());

    c.restart();
    p.wait_status("the backlog to drain", Duration::from_secs(30), |s| {
        s["connected"] == true && s["spool"]["batches"].as_u64() <= Some(1)
    });
    // Space came back as acknowledged segments were deleted: the spool writes to disk again.
    let before = p.status()["spool"]["write_errors"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        p.status()["spool"]["write_errors"].as_u64().unwrap(),
        before,
        "still failing after space was freed"
    );

    assert_eq!(p.terminate(), Some(0));
    let st = p.status();
    let n = st["spool"]["last_acked"].as_u64().unwrap();
    assert_eq!(st["spool"]["dropped"], 0, "{st}");
    assert_eq!(stored(&c), n, "every batch stored once");
    assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);
}
