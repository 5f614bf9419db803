//! 200 probes (the real uplink, in this process, each with its own stream, token and spool)
//! stream through two stateless collectors that share one real PostgreSQL 15: half list
//! collector A first, half B first. A is killed with SIGKILL mid-stream; the probes that were
//! on A move to B at once (their session is lost, the next address of their list is tried
//! without backoff), B answers each hello with the stream's mark from the database, and the
//! probes resend what A had not acknowledged. After the probes drain, PostgreSQL holds every
//! batch the probes produced exactly once: each batch has a minute of its own, so a lost batch
//! or a doubled one shows in its own rows, and the sums equal what was produced. The time from
//! the kill to the survivor's first acknowledgement of a moved probe is printed.
//!
//! A real `rie-probe run` process whose first listed collector does not answer moves to the
//! second and says so in its log, its status file, `metrics.prom` and `rie-probe status`.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_e2e::{bin, free_ports, run_ok, Collector, Probe};
use rie_probe::config::ProbeConfig;
use rie_probe::spool::{MemoryOutbox, Outbox};
use rie_probe::uplink::{self, Identity, Settings, Stats};
use rie_proto::{Batch, Direction, FlowAggregate};
use rie_testpg::PgServer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PROBES: usize = 200;
const BATCHES: u64 = 30;
const INTERVAL: Duration = Duration::from_millis(300);
/// Flows per batch, each its own (protocol, direction) row of the batch's minute.
const FLOWS: u64 = 3;

/// Batch `seq` of probe `p`: minute `base + 60 * seq` (one minute per batch), counters that
/// differ per probe and per batch.
fn batch(p: u64, seq: u64, base: i64) -> Batch {
    let flows = (0..FLOWS)
        .map(|k| FlowAggregate {
            minute: base + 60 * seq as i64,
            protocol: [6, 17, 1][k as usize],
            direction: Direction::Inbound,
            exporter: None,
            flows: 1 + (p * 3 + seq * 7 + k) % 5,
            packets: 10 + (p * 31 + seq * 13 + k) % 97,
            bytes: 1_000 + (p * 1_009 + seq * 7_919 + k * 104_729) % 65_521,
            sampling_rate: 1,
            port_class: rie_proto::PortClass::Unknown,
        })
        .collect();
    Batch {
        top_talkers: Vec::new(),
        seq,
        created_ms: rie_common::now_ms(),
        flows,
        samples: vec![],
        links: vec![],
    }
}

/// (flows, packets, bytes) of a batch.
fn sums(b: &Batch) -> (u64, u64, u64) {
    b.flows.iter().fold((0, 0, 0), |(f, p, by), a| {
        (f + a.flows, p + a.packets, by + a.bytes)
    })
}

struct SimProbe {
    site: String,
    stats: Arc<Stats>,
    first: String,
}

#[test]
fn probes_fail_over_to_the_surviving_collector_and_every_batch_is_stored_once() {
    let pg = PgServer::start();
    let cfg = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    );
    let inv_dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["inventory", "generate", "--sites", &PROBES.to_string()])
            .arg("--out")
            .arg(inv_dir.path()),
    );
    let mut a = Collector::start_sharing_pki_on(inv_dir.path(), &cfg, None);
    let b = Collector::start_sharing_pki_on(inv_dir.path(), &cfg, Some(&a));
    let (addr_a, addr_b) = (a.probe_addr.to_string(), b.probe_addr.to_string());

    // One token per site in the shared database, through the store's own call (the one
    // `probe-config` and the simulator make).
    let inv = rie_collector::inventory::load_dir(inv_dir.path()).unwrap();
    assert_eq!(inv.sites.len(), PROBES);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rie_collector::config::CollectorConfig::load(&a.config_file().unwrap())
        .unwrap()
        .store;
    let issued: Vec<(String, String)> = inv
        .sites
        .iter()
        .map(|s| {
            (
                s.credential_ref.clone(),
                rie_collector::store::credentials::new_token(),
            )
        })
        .collect();
    rie_collector::store::credentials::issue(
        &store,
        &a.dir.path().join("data"),
        rt.handle(),
        &issued,
        rie_common::now_ms(),
    )
    .unwrap();
    let tokens: Vec<String> = issued.into_iter().map(|(_, t)| t).collect();

    // The two address lists, through the probe's own config parsing.
    let targets = |first: &str, second: &str| {
        let p = inv_dir.path().join(format!("probe-{first}.toml"));
        std::fs::write(
            &p,
            format!(
                "site_id = \"S1\"\n[collector]\naddresses = [\"{first}\", \"{second}\"]\n\
                 ca_cert_file = \"{}\"\ntoken = \"unused\"\nconnect_timeout = \"2s\"\n",
                a.dir.path().join("pki/ca.pem").display()
            ),
        )
        .unwrap();
        ProbeConfig::load(&p).unwrap().resolve().unwrap().targets
    };
    let (a_first, b_first) = (targets(&addr_a, &addr_b), targets(&addr_b, &addr_a));
    let settings = Settings {
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(2),
        max_in_flight: 8,
        replay_rate: 1_000.0,
    };
    let now_s = rie_common::now_ms() / 1000;
    // Every batch's minute within the last hour: in the minute table, whatever the retention.
    let base = (now_s / 60) * 60 - 60 * (BATCHES as i64 + 5);

    let mut expected: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
    let mut total = (0u64, 0u64, 0u64);
    let mut probes = Vec::new();
    let mut uplinks = Vec::new();
    let mut producers = Vec::new();
    let _guard = rt.enter();
    for (i, (site, token)) in inv.sites.iter().zip(tokens).enumerate() {
        let p = i as u64;
        for seq in 1..=BATCHES {
            let s = sums(&batch(p, seq, base));
            expected.insert((site.id.to_string(), base + 60 * seq as i64), s);
            total = (total.0 + s.0, total.1 + s.1, total.2 + s.2);
        }
        let targets = if i % 2 == 0 {
            a_first.clone()
        } else {
            b_first.clone()
        };
        let out = MemoryOutbox::new(10_000);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(16);
        let id = Identity::new(site.id.clone(), token, out.stream());
        probes.push(SimProbe {
            site: site.id.to_string(),
            stats: stats.clone(),
            first: targets[0].address.clone(),
        });
        uplinks.push(rt.spawn(uplink::run(
            targets,
            id,
            settings.clone(),
            rx,
            out,
            stats,
            None,
            CancellationToken::new(),
        )));
        // Spread over the first interval, as a fleet's batches are.
        let offset = INTERVAL.mul_f64(i as f64 / PROBES as f64);
        producers.push(rt.spawn(async move {
            tokio::time::sleep(offset).await;
            for seq in 1..=BATCHES {
                tx.send(batch(p, seq, base)).await.unwrap();
                tokio::time::sleep(INTERVAL).await;
            }
        }));
    }
    let acked = |probes: &[SimProbe]| -> u64 {
        probes
            .iter()
            .map(|p| p.stats.batches_acked.load(Ordering::Relaxed))
            .sum()
    };

    // Mid-stream (about a third of the batches acknowledged): kill A.
    let until = Instant::now() + Duration::from_secs(60);
    while acked(&probes) < PROBES as u64 * BATCHES / 3 {
        assert!(
            Instant::now() < until,
            "probes too slow: {} acked",
            acked(&probes)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let on_a: Vec<bool> = probes
        .iter()
        .map(|p| p.stats.collector() == addr_a && p.stats.connected.load(Ordering::Relaxed))
        .collect();
    // Each probe stays on its first collector while it works.
    for (i, p) in probes.iter().enumerate() {
        assert_eq!(
            on_a[i],
            p.first == addr_a,
            "probe {} on {}",
            p.site,
            p.stats.collector()
        );
    }
    a.kill9();
    let killed = Instant::now();
    // Right after the kill: nothing acknowledged from here on comes from A.
    let acked_before: Vec<u64> = probes
        .iter()
        .map(|p| p.stats.last_ack_seq.load(Ordering::Relaxed))
        .collect();
    let acks_at_kill: Vec<u64> = probes
        .iter()
        .map(|p| p.stats.batches_acked.load(Ordering::Relaxed))
        .collect();
    assert!(
        producers.iter().any(|p| !p.is_finished()),
        "the kill must be mid-stream"
    );

    // The first acknowledgement by B of each probe that was on A.
    let mut first_ack: Vec<Option<Duration>> = vec![None; PROBES];
    // And when each was first seen connected to B (welcome received).
    let mut welcomed: Vec<Option<Duration>> = vec![None; PROBES];
    while first_ack
        .iter()
        .zip(&on_a)
        .any(|(f, on)| *on && f.is_none())
    {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "probes on the killed collector did not move"
        );
        for (i, p) in probes.iter().enumerate() {
            if on_a[i]
                && welcomed[i].is_none()
                && p.stats.collector() == addr_b
                && p.stats.connected.load(Ordering::Relaxed)
            {
                welcomed[i] = Some(killed.elapsed());
            }
            if on_a[i]
                && first_ack[i].is_none()
                && p.stats.collector() == addr_b
                && p.stats.batches_acked.load(Ordering::Relaxed) > acks_at_kill[i]
            {
                first_ack[i] = Some(killed.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut moved: Vec<Duration> = first_ack.into_iter().flatten().collect();
    moved.sort();
    let mut connected: Vec<Duration> = welcomed.into_iter().flatten().collect();
    connected.sort();
    println!(
        "kill -9 of collector A → first acknowledgement by B of a probe that was on A: {} ms; \
         all {} moved probes acknowledged by B within {} ms (median {} ms); \
         seen connected to B from {} ms (median {} ms, {} seen)",
        moved[0].as_millis(),
        moved.len(),
        moved[moved.len() - 1].as_millis(),
        moved[moved.len() / 2].as_millis(),
        connected.first().map_or(0, Duration::as_millis),
        connected
            .get(connected.len() / 2)
            .map_or(0, Duration::as_millis),
        connected.len()
    );

    // Drain: each uplink returns once its producer is done and everything is acknowledged.
    rt.block_on(async {
        for p in producers {
            p.await.unwrap();
        }
        for u in uplinks {
            tokio::time::timeout(Duration::from_secs(60), u)
                .await
                .expect("uplink drained")
                .unwrap();
        }
    });
    for (i, p) in probes.iter().enumerate() {
        assert_eq!(p.stats.collector(), addr_b, "probe {}", p.site);
        assert_eq!(p.stats.outbox().dropped, 0, "probe {}", p.site);
        // One move for a probe that was on A, none for one that was on B.
        assert_eq!(
            p.stats.failovers.load(Ordering::Relaxed),
            u64::from(on_a[i]),
            "probe {}",
            p.site
        );
    }

    // PostgreSQL's own rows: every batch once, with its exact counters.
    let rows = pg.psql(
        "SELECT site_id, minute, count(*), sum(flows), sum(packets), sum(bytes) FROM flow_minute \
         GROUP BY site_id, minute ORDER BY site_id, minute",
    );
    let mut stored: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
    for line in rows.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(f[2].parse::<u64>().unwrap(), FLOWS, "{line}");
        let v = (
            f[3].parse().unwrap(),
            f[4].parse().unwrap(),
            f[5].parse().unwrap(),
        );
        assert!(
            stored
                .insert((f[0].to_string(), f[1].parse().unwrap()), v)
                .is_none(),
            "{line}"
        );
    }
    let lost: Vec<_> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    let doubled_or_wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| stored.get(*k).is_some_and(|s| s != *v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} batches lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        doubled_or_wrong.is_empty(),
        "{} batches stored twice or altered: {:?}",
        doubled_or_wrong.len(),
        &doubled_or_wrong[..doubled_or_wrong.len().min(5)]
    );
    assert_eq!(stored.len(), PROBES * BATCHES as usize);
    // Batches acknowledged before the kill are among them (checked one by one).
    let acked_before_kill: u64 = acked_before.iter().sum();
    for (p, upto) in probes.iter().zip(&acked_before) {
        for seq in 1..=*upto {
            assert!(stored.contains_key(&(p.site.clone(), base + 60 * seq as i64)));
        }
    }
    let sum = pg.psql("SELECT sum(flows), sum(packets), sum(bytes) FROM flow_minute");
    let s: Vec<u64> = sum
        .trim()
        .split('|')
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert_eq!((s[0], s[1], s[2]), total);
    assert_eq!(
        pg.psql("SELECT count(*), sum(last_seq) FROM probe_streams")
            .trim()
            .replace(' ', ""),
        format!("{PROBES}|{}", PROBES as u64 * BATCHES)
    );
    assert_eq!(b.metric("rie_collector_sequence_gaps_total"), 0.0);
    println!(
        "{} batches from {PROBES} probes stored once ({} acknowledged before the kill); \
         flows {} packets {} bytes {}",
        stored.len(),
        acked_before_kill,
        total.0,
        total.1,
        total.2
    );
}

#[test]
fn a_probe_process_moves_past_a_dead_collector_and_says_where_it_is() {
    let c = Collector::start();
    let [dead] = free_ports::<1>();
    let live = c.probe_addr.to_string();
    let mut p = Probe::prepare(
        &c,
        "S1",
        "500ms",
        Some("seed = 5\nagents = 40\nprimary_link = \"S1-P\"\nincident_rate = 0.0"),
    );
    let text = std::fs::read_to_string(&p.config).unwrap();
    let listed = text.replace(
        &format!("address = \"{live}\""),
        &format!("addresses = [\"{dead}\", \"{live}\"]"),
    );
    assert_ne!(listed, text, "no address line in\n{text}");
    std::fs::write(&p.config, listed).unwrap();
    p.spawn();
    let st = p.wait_status(
        "a batch acknowledged through the second collector",
        Duration::from_secs(20),
        |s| s["connected"] == true && s["batches_acked"].as_u64() >= Some(1),
    );
    assert_eq!(st["collector"], live.as_str(), "{st}");
    assert_eq!(
        st["collectors"],
        serde_json::json!([dead.to_string(), live.clone()]),
        "{st}"
    );
    // One move: the dead one refused the connection, the live one has held since.
    assert_eq!(st["failovers"], 1, "{st}");
    let log = without_colours(&p.log());
    assert!(
        log.contains(&format!(
            "moving to the next collector site=S1 from={dead} to={live}"
        )),
        "{log}"
    );
    let out = Command::new(bin("rie-probe"))
        .args(["status", "--lang", "en", "--config"])
        .arg(&p.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{live} — connected for")), "{text}");
    assert!(
        text.contains(&format!(
            "Configured collectors  {dead}, {live} (1 failover(s) since start)"
        )),
        "{text}"
    );
    let metrics = std::fs::read_to_string(p.data_dir.join("metrics.prom")).unwrap();
    assert!(
        metrics.contains("rie_probe_collector_failovers_total{site=\"S1\"} 1"),
        "{metrics}"
    );
}

/// The log without its ANSI colour sequences (`ESC [ ... m`).
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `probe-config` with `--address` repeated writes the list the probe fails over along, in
/// the order given, and the probe takes it (it connects through the second when the first is
/// dead).
#[test]
fn probe_config_writes_the_list_of_collectors() {
    let c = Collector::start();
    let dead = free_ports::<1>()[0].to_string();
    let live = c.probe_addr.to_string();
    let out = c.dir.path().join("two-collectors.toml");
    rie_e2e::run_ok(
        std::process::Command::new(rie_e2e::bin("rie-collector"))
            .arg("probe-config")
            .args(c.config_args())
            .args(["--site", "S1", "--address", &dead, "--address", &live])
            .arg("--out")
            .arg(&out),
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains(&format!("addresses = [\"{dead}\", \"{live}\"]\n")),
        "{text}"
    );
    assert!(!text.contains("\naddress ="), "{text}");
    let b = rie_e2e::batch(1, vec![rie_e2e::flow(rie_e2e::MINUTE, 6, 1, 2, 345)]);
    let acks = rie_e2e::send_ok(&out, 7, &[b]);
    assert_eq!(acks, vec![(1, false)]);
    assert_eq!(c.totals(Some("S1"))["bytes"], 345);
}
