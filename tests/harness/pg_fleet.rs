//! Helpers of the PostgreSQL high-availability tests: a fleet of real `rie-probe run`
//! processes (one per fixture site, simulated sources with distinct seeds) streaming to a
//! collector, the exact totals each must have produced (the simulator replayed with the same
//! seed: a probe's n-th batch is the simulator's n-th measurement), and what PostgreSQL
//! itself holds (sums and stream marks read with `psql`, not through the collector).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rie_flow::simulate::{SimulateConfig, Simulator};
use rie_proto::LinkId;

use crate::{Collector, Probe};

/// (flows, packets, bytes).
pub type Counts = (u64, u64, u64);

/// Batch interval of every fleet probe.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// The fixture sites, their seed and links.
pub const SITES: [(&str, u64, &str, Option<&str>); 3] = [
    ("S1", 11, "S1-P", Some("S1-B")),
    ("S2", 12, "S2-P", None),
    ("S3", 13, "S3-P", Some("S3-B")),
];

fn simulate_toml(seed: u64, primary: &str, backup: Option<&str>) -> String {
    let mut s =
        format!("seed = {seed}\nagents = 80\nprimary_link = \"{primary}\"\nincident_rate = 0.0\n");
    if let Some(b) = backup {
        s.push_str(&format!("backup_link = \"{b}\"\n"));
    }
    s
}

/// (flows, packets, bytes) of the first `n` batches of a fleet site's simulated source.
pub fn expected(site: &str, n: u64) -> Counts {
    let (_, seed, primary, backup) = SITES
        .iter()
        .find(|s| s.0 == site)
        .copied()
        .unwrap_or_else(|| panic!("{site} is not a fleet site"));
    let link = |l: &str| LinkId::new(l).expect("fixture link id");
    let mut sim = Simulator::new(SimulateConfig {
        seed,
        agents: 80,
        primary_link: link(primary),
        backup_link: backup.map(link),
        rtt_ms: 15.0,
        incident_rate: 0.0,
    });
    let mut t = (0, 0, 0);
    for _ in 0..n {
        for f in sim.measure(0, INTERVAL).flows {
            t = (t.0 + f.flows, t.1 + f.packets, t.2 + f.bytes);
        }
    }
    t
}

/// One streaming probe per fixture site.
pub struct Fleet {
    pub probes: Vec<(&'static str, Probe)>,
}

impl Fleet {
    /// Starts a probe for every site of [`SITES`] on collector `c`.
    pub fn start(c: &Collector) -> Self {
        Self::start_on(&SITES.map(|_| c))
    }

    /// Starts the probe of `SITES[i]` on `collectors[i]`.
    pub fn start_on(collectors: &[&Collector; 3]) -> Self {
        Self::start_full(collectors, None)
    }

    /// Like [`Fleet::start`], the probes sending a backlog at up to `rate` batches/s
    /// (`spool.replay_rate`) instead of their default.
    pub fn start_with_replay_rate(c: &Collector, rate: f64) -> Self {
        Self::start_full(&SITES.map(|_| c), Some(rate))
    }

    fn start_full(collectors: &[&Collector; 3], replay_rate: Option<f64>) -> Self {
        let probes = SITES
            .iter()
            .zip(collectors)
            .map(|((site, seed, p, b), c)| {
                let sim = simulate_toml(*seed, p, *b);
                let mut probe = Probe::prepare(c, site, "100ms", Some(&sim));
                if let Some(rate) = replay_rate {
                    // Before `[simulate]`, which `Probe::write_config` replaces.
                    let text = std::fs::read_to_string(&probe.config).expect("probe config");
                    let text = text.replacen(
                        "\n[simulate]\n",
                        &format!("\n[spool]\nreplay_rate = {rate:.1}\n\n[simulate]\n"),
                        1,
                    );
                    assert!(text.contains("[spool]"), "{text}");
                    std::fs::write(&probe.config, text).expect("write probe config");
                }
                probe.spawn();
                (*site, probe)
            })
            .collect();
        Self { probes }
    }

    /// Sum over the probes of the batches they had acknowledged at their last status write.
    pub fn acked(&self) -> u64 {
        self.probes
            .iter()
            .map(|(_, p)| p.status()["spool"]["last_acked"].as_u64().unwrap_or(0))
            .sum()
    }

    /// Sum over the probes of the batches waiting in their spools.
    pub fn spooled(&self) -> u64 {
        self.probes
            .iter()
            .map(|(_, p)| p.status()["spool"]["batches"].as_u64().unwrap_or(0))
            .sum()
    }

    /// Stops production (SIGTERM: what is unacknowledged stays in the spool), restarts every
    /// probe without a source so that it only empties its spool, and returns each site's
    /// number of batches produced, all acknowledged.
    pub fn drain(&mut self, timeout: Duration) -> BTreeMap<&'static str, u64> {
        for (site, p) in &mut self.probes {
            assert_eq!(p.terminate(), Some(0), "probe {site}:\n{}", p.log());
            p.write_config("100ms", None);
            p.spawn();
        }
        self.probes
            .iter()
            .map(|(site, p)| {
                let st = p.wait_status("the spool to empty", timeout, |s| {
                    s["running"] == true
                        && s["spool"]["batches"] == 0
                        && s["spool"]["last_acked"].as_u64() > Some(0)
                });
                assert_eq!(st["spool"]["dropped"], 0, "{site}: {st}");
                (*site, st["spool"]["last_acked"].as_u64().unwrap_or(0))
            })
            .collect()
    }
}

/// Per site: (flows, packets, bytes) in `flow_minute`, read with `psql`.
pub fn pg_sums(psql: impl Fn(&str) -> String) -> BTreeMap<String, Counts> {
    psql("SELECT site_id, sum(flows), sum(packets), sum(bytes) FROM flow_minute GROUP BY site_id ORDER BY site_id")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|e| panic!("{l}: {e}"));
            (f[0].to_string(), (n(1), n(2), n(3)))
        })
        .collect()
}

/// Per site: (number of streams, highest `last_seq`) in `probe_streams`.
pub fn pg_marks(psql: impl Fn(&str) -> String) -> BTreeMap<String, (u64, u64)> {
    psql("SELECT site_id, count(*), max(last_seq) FROM probe_streams GROUP BY site_id ORDER BY site_id")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap_or_else(|e| panic!("{l}: {e}"));
            (f[0].to_string(), (n(1), n(2)))
        })
        .collect()
}

/// Asserts that PostgreSQL holds exactly what the probes produced: sums equal to the
/// simulator's, one stream per site whose mark is the last batch produced.
pub fn assert_exact(produced: &BTreeMap<&'static str, u64>, psql: impl Fn(&str) -> String) {
    let sums = pg_sums(&psql);
    let marks = pg_marks(&psql);
    for (site, n) in produced {
        assert_eq!(
            sums.get(*site).copied(),
            Some(expected(site, *n)),
            "{site}: sums in PostgreSQL vs the {n} batches produced"
        );
        assert_eq!(
            marks.get(*site).copied(),
            Some((1, *n)),
            "{site}: one stream whose mark is the last batch produced"
        );
    }
}

/// The collectors' own view agrees with what the fleet produced (`drain`): each reads the
/// exact totals, none saw a hole in a stream, and together they counted at most what was
/// produced as stored. The exact "stored once" proof is [`assert_exact`] on the database: a
/// collector counts a batch as stored when its commit returned, so one whose session broke at
/// COMMIT after the commit happened (in doubt) is stored without being counted (its resend is
/// answered as a duplicate, or the probe learns the mark at its next hello). Never more than
/// produced.
pub fn assert_collector_agrees(collectors: &[&Collector], produced: &BTreeMap<&'static str, u64>) {
    for (i, c) in collectors.iter().enumerate() {
        for (site, n) in produced {
            let t = c.totals(Some(site));
            let count = |k: &str| t[k].as_u64().expect("a count");
            assert_eq!(
                (count("flows"), count("packets"), count("bytes")),
                expected(site, *n),
                "{site}: totals read by collector {i}"
            );
        }
        assert_eq!(
            c.metric("rie_collector_sequence_gaps_total"),
            0.0,
            "collector {i}"
        );
    }
    let counted: f64 = collectors
        .iter()
        .map(|c| c.metric("rie_collector_probe_batches_total"))
        .sum();
    let total = produced.values().sum::<u64>() as f64;
    assert!(counted <= total, "{counted} counted, {total} produced");
    println!("{counted} of {total} batches counted as stored by the collectors");
}

/// Batches stored or acknowledged as duplicates by `c` (the commit stage's count; an ack
/// leaves microseconds after it).
pub fn batches_acked_by(c: &Collector) -> f64 {
    c.metric("rie_collector_probe_batches_total")
        + c.metric("rie_collector_duplicate_batches_total")
}

/// Polls `c` every 20 ms until it acknowledges a batch beyond `before`; returns the time
/// from `since`.
pub fn time_to_first_ack(
    c: &Collector,
    before: f64,
    since: Instant,
    timeout: Duration,
) -> Duration {
    loop {
        if let Ok(r) = ureq::get(&c.url("/metrics")).call() {
            if let Ok(text) = r.into_string() {
                let v = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .unwrap_or(0.0)
                };
                let now = v("rie_collector_probe_batches_total")
                    + v("rie_collector_duplicate_batches_total");
                if now > before {
                    return since.elapsed();
                }
            }
        }
        assert!(
            since.elapsed() < timeout,
            "no acknowledgement within {timeout:?}\n--- collector log ---\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
