//! A probe streaming without pause while the collector is SIGKILLed twice loses nothing and
//! counts nothing twice: the collector's totals equal, to the byte, what the probe produced.
//! The probe side is the real uplink (reconnect, resend of unacknowledged batches, welcome's
//! last stored sequence); the collector is the real process.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rie_e2e::{Collector, MINUTE};
use rie_probe::config::ProbeConfig;
use rie_probe::session::Session;
use rie_probe::spool::{MemoryOutbox, Outbox};
use rie_probe::uplink::{self, Identity, Settings, Stats};
use rie_proto::{Batch, Direction, FlowAggregate, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BATCHES: u64 = 300;

fn batch(seq: u64) -> Batch {
    // Counters that differ per batch, so a lost or doubled batch shows in every total.
    let flows = (0..3u64)
        .map(|k| FlowAggregate {
            minute: MINUTE + 60 * (seq / 50) as i64,
            protocol: [6, 17, 1][k as usize],
            direction: Direction::Inbound,
            exporter: None,
            flows: 1 + (seq * 7 + k) % 5,
            packets: 10 + (seq * 13 + k) % 97,
            bytes: 1_000 + (seq * 7_919 + k * 104_729) % 65_521,
            sampling_rate: 1,
            port_class: rie_proto::PortClass::Unknown,
        })
        .collect();
    Batch {
        top_talkers: Vec::new(),
        seq,
        created_ms: 0,
        flows,
        samples: vec![],
        links: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_through_two_sigkills_is_exact() {
    let mut c = Collector::start();
    let cfg = ProbeConfig::load(&c.probe_config("S1")).unwrap();
    let r = cfg.resolve().unwrap();
    let settings = Settings {
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(400),
        heartbeat_interval: Duration::from_secs(1),
        max_in_flight: 8,
        replay_rate: 1_000.0,
    };
    let out = MemoryOutbox::new(10_000);
    let stream = out.stream();
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel(16);
    let up = tokio::spawn(uplink::run(
        r.targets,
        Identity::new(cfg.site_id.clone(), r.token, stream),
        settings,
        rx,
        out,
        stats.clone(),
        None,
        CancellationToken::new(),
    ));

    let (mut flows, mut packets, mut bytes) = (0u64, 0u64, 0u64);
    for seq in 1..=BATCHES {
        let b = batch(seq);
        for f in &b.flows {
            (flows, packets, bytes) = (flows + f.flows, packets + f.packets, bytes + f.bytes);
        }
        tx.send(b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(4)).await;
        if seq == 100 || seq == 200 {
            tokio::task::block_in_place(|| c.restart());
        }
    }
    drop(tx);
    // The uplink returns once everything it was given is acknowledged.
    tokio::time::timeout(Duration::from_secs(60), up)
        .await
        .unwrap()
        .unwrap();
    assert!(stats.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    assert_eq!(stats.outbox().dropped, 0);

    let check = |c: &Collector| {
        let t = c.totals(Some("S1"));
        assert_eq!(
            (
                t["flows"].as_u64(),
                t["packets"].as_u64(),
                t["bytes"].as_u64()
            ),
            (Some(flows), Some(packets), Some(bytes)),
            "{t}"
        );
        let site = c.get("/api/v1/sites/S1");
        assert_eq!(
            site["probe"]["batches_stored"].as_u64(),
            Some(BATCHES),
            "{site}"
        );
    };
    tokio::task::block_in_place(|| {
        check(&c);
        assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);
    });

    // Whatever a confused probe resends after the crashes, even everything and ignoring the
    // welcome's last stored sequence, is acknowledged as duplicate and changes nothing: the
    // dedup marks survived both SIGKILLs with the data.
    let r = cfg.resolve().unwrap();
    let id = Identity::new(cfg.site_id.clone(), r.token.clone(), stream);
    let mut s = Session::open(r.preferred(), id.hello()).await.unwrap();
    assert_eq!(s.welcome.last_stored_seq, Some(BATCHES));
    for seq in 1..=BATCHES {
        s.send(&Message::Batch(batch(seq))).await.unwrap();
        match s.recv().await.unwrap() {
            Some(Message::Ack(a)) => assert_eq!((a.seq, a.duplicate), (seq, true)),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    tokio::task::block_in_place(|| {
        check(&c);
        assert_eq!(
            c.metric("rie_collector_duplicate_batches_total"),
            BATCHES as f64
        );
    });
}
