//! The Patroni deployment example of `deploy/patroni/` (etcd, two PostgreSQL nodes managed by
//! Patroni in strict synchronous mode, HAProxy leading one port to the primary), started by
//! its own `start.sh` on loopback in a temp dir: a collector writing through HAProxy with
//! three probes streaming, then `patronictl switchover` to the standby. The collector follows
//! the primary by itself; the new primary then holds exactly what the probes produced, each
//! batch once, and the demoted node, back as a standby, holds the same. Prints the time to the
//! first acknowledgement after the switchover.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rie_e2e::pg_fleet::{assert_exact, batches_acked_by, pg_sums, time_to_first_ack, Fleet};
use rie_e2e::{free_ports, Collector};

const PASSWORD: &str = "collector-test-pw";
const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/patroni")
}

/// The stack of `start.sh`, stopped by `stop.sh` when dropped (also after a panic or a
/// failed start).
struct Stack {
    dir: tempfile::TempDir,
    pg_ports: [u16; 2],
    api_ports: [u16; 2],
    haproxy_port: u16,
}

impl Stack {
    fn start() -> Stack {
        let missing: Vec<&str> = ["patroni", "patronictl", "etcd", "haproxy"]
            .into_iter()
            .filter(|b| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {b}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{missing:?} missing: apt-get install patroni etcd-server etcd-client haproxy"
        );
        let dir = tempfile::Builder::new()
            .prefix("rie-patroni-")
            .tempdir()
            .unwrap();
        let p = free_ports::<7>().map(|a| a.port());
        let stack = Stack {
            dir,
            pg_ports: [p[0], p[1]],
            api_ports: [p[2], p[3]],
            haproxy_port: p[6],
        };
        let out = Command::new(deploy_dir().join("start.sh"))
            .arg(stack.dir.path())
            .env("PG_PORTS", format!("{} {}", p[0], p[1]))
            .env("API_PORTS", format!("{} {}", p[2], p[3]))
            .env("ETCD_CLIENT_PORT", p[4].to_string())
            .env("ETCD_PEER_PORT", p[5].to_string())
            .env("HAPROXY_PORT", p[6].to_string())
            .env("SUPERUSER_PASSWORD", PASSWORD)
            .env("REPLICATION_PASSWORD", "replication-test-pw")
            // Test timings (recipe): a lease of 10 s checked every second.
            .env("TTL", "10")
            .env("LOOP_WAIT", "1")
            .env("RETRY_TIMEOUT", "4")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "start.sh failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        stack
    }

    fn patroni_config(&self) -> PathBuf {
        self.dir.path().join("n1.yml")
    }

    /// The node (0 or 1) whose Patroni says it is the primary.
    fn leader(&self) -> Option<usize> {
        self.api_ports.iter().position(|p| {
            ureq::get(&format!("http://127.0.0.1:{p}/primary"))
                .call()
                .is_ok()
        })
    }

    /// SQL on database `rie` of node `i`, unaligned.
    fn psql(&self, i: usize, sql: &str) -> String {
        let out = Command::new(PSQL)
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
                "-U",
            ])
            .args(["postgres", "-d", "rie", "-p", &self.pg_ports[i].to_string()])
            .args(["-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql on node {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait(&self, what: &str, timeout: Duration, f: impl Fn() -> bool) {
        let end = Instant::now() + timeout;
        while !f() {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        ["etcd", "n1", "n2", "haproxy"]
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{n}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                format!(
                    "--- {n}.log\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new(deploy_dir().join("stop.sh"))
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn switchover_through_haproxy_nothing_lost_nothing_twice() {
    let stack = Stack::start();
    assert_eq!(stack.leader(), Some(0), "the first node bootstraps");
    let c = Collector::start_with_config(&format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\n\
         url = \"postgresql://postgres:{PASSWORD}@127.0.0.1:{}/rie\"\n",
        stack.haproxy_port
    ));
    let mut fleet = Fleet::start(&c);
    c.wait_until("batches from every probe", Duration::from_secs(30), |_| {
        fleet
            .probes
            .iter()
            .all(|(_, p)| p.status()["spool"]["last_acked"].as_u64() >= Some(10))
    });

    let started = Instant::now();
    let out = Command::new("patronictl")
        .arg("-c")
        .arg(stack.patroni_config())
        .args([
            "switchover",
            "--leader",
            "n1",
            "--candidate",
            "n2",
            "--force",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "patronictl switchover: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.logs()
    );
    // patronictl returns once n2 holds the leader key: n1 is read-only by then, so every
    // acknowledgement from here on was committed on n2.
    let switched = started.elapsed();
    let before = batches_acked_by(&c);
    let first_ack = time_to_first_ack(&c, before, started, Duration::from_secs(60));
    println!(
        "switchover: patronictl returned after {:.3} s; first acknowledgement {:.3} s after \
         the switchover began ({:.3} s after patronictl returned)",
        switched.as_secs_f64(),
        first_ack.as_secs_f64(),
        (first_ack - switched).as_secs_f64()
    );
    assert_eq!(stack.leader(), Some(1), "n2 is the primary");
    let resumed = fleet.acked();
    c.wait_until(
        "20 more batches after the switchover",
        Duration::from_secs(30),
        |_| fleet.acked() >= resumed + 20,
    );

    let produced = fleet.drain(Duration::from_secs(60));
    println!("produced per site: {produced:?}");
    assert_exact(&produced, |sql| stack.psql(1, sql));
    rie_e2e::pg_fleet::assert_collector_agrees(&[&c], &produced);
    assert_eq!(c.metric("rie_collector_store_up"), 1.0);
    // The demoted node rejoined as a standby and holds the same.
    let on_primary = pg_sums(|sql| stack.psql(1, sql));
    stack.wait(
        "the demoted node to replay everything",
        Duration::from_secs(30),
        || {
            Command::new(PSQL)
                .args([
                    "-X",
                    "-At",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "rie",
                ])
                .args(["-p", &stack.pg_ports[0].to_string(), "-c", "SELECT 1"])
                .env("PGPASSWORD", PASSWORD)
                .output()
                .is_ok_and(|o| o.status.success())
                && pg_sums(|sql| stack.psql(0, sql)) == on_primary
        },
    );
    assert_eq!(stack.psql(0, "SELECT pg_is_in_recovery()").trim(), "t");
}
