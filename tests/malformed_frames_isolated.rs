//! Malformed or oversized frames close only the offending connection, are counted, and never
//! stop another probe's data.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use rie_e2e::{Collector, MINUTE};
use rie_probe::config::ProbeConfig;
use rie_probe::session::Session;
use rie_probe::uplink::Identity;
use rie_proto::{Batch, Direction, FlowAggregate, Message};

async fn open(cfg: &Path, stream: u64) -> Session {
    let cfg = ProbeConfig::load(cfg).unwrap();
    let r = cfg.resolve().unwrap();
    let id = Identity::new(cfg.site_id.clone(), r.token.clone(), stream);
    Session::open(r.preferred(), id.hello()).await.unwrap()
}

fn batch(seq: u64, bytes: u64) -> Message {
    Message::Batch(Batch {
        top_talkers: Vec::new(),
        seq,
        created_ms: 0,
        flows: vec![FlowAggregate {
            minute: MINUTE,
            protocol: 6,
            direction: Direction::Outbound,
            exporter: None,
            flows: 1,
            packets: 1,
            bytes,
            sampling_rate: 1,
            port_class: rie_proto::PortClass::Unknown,
        }],
        samples: vec![],
        links: vec![],
    })
}

async fn ack_of(s: &mut Session) -> u64 {
    match s.recv().await.unwrap() {
        Some(Message::Ack(a)) => a.seq,
        other => panic!("expected ack, got {other:?}"),
    }
}

/// True when the collector closed the connection (EOF or reset) instead of answering.
async fn closed(s: &mut Session) -> bool {
    !matches!(s.recv().await, Ok(Some(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_their_connection_only() {
    let c = Collector::start();
    let good_cfg = c.probe_config("S1");
    let bad_cfg = c.probe_config("S3");

    let mut good = open(&good_cfg, 1).await;
    good.send(&batch(1, 100)).await.unwrap();
    assert_eq!(ack_of(&mut good).await, 1);

    // A length prefix of 4 GiB - 1: over the limit.
    let mut oversized = open(&bad_cfg, 1).await;
    oversized.send_raw(&u32::MAX.to_be_bytes()).await.unwrap();
    assert!(closed(&mut oversized).await);

    // A well-framed body that is not a message.
    let mut garbage = open(&bad_cfg, 2).await;
    garbage
        .send_raw(&[0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1])
        .await
        .unwrap();
    assert!(closed(&mut garbage).await);

    // A valid message of the wrong kind after hello.
    let mut unexpected = open(&bad_cfg, 3).await;
    unexpected
        .send(&Message::Ack(rie_proto::Ack {
            seq: 1,
            duplicate: false,
        }))
        .await
        .unwrap();
    assert!(closed(&mut unexpected).await);

    // The good probe goes on, on the same connection.
    good.send(&batch(2, 250)).await.unwrap();
    assert_eq!(ack_of(&mut good).await, 2);

    let c = tokio::task::spawn_blocking(move || {
        assert_eq!(
            c.metric("rie_collector_frame_errors_total{reason=\"oversized\"}"),
            1.0
        );
        assert_eq!(
            c.metric("rie_collector_frame_errors_total{reason=\"malformed\"}"),
            1.0
        );
        assert_eq!(
            c.metric("rie_collector_frame_errors_total{reason=\"unexpected\"}"),
            1.0
        );
        let t = c.totals(None);
        assert_eq!(
            (t["flows"].as_u64(), t["bytes"].as_u64()),
            (Some(2), Some(350))
        );
        assert_eq!(c.totals(Some("S3"))["flows"].as_u64(), Some(0));
        c
    })
    .await
    .unwrap();
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_versions_one_behind_are_served_newer_ones_refused_with_reason() {
    let c = Collector::start();
    let cfg_path = c.probe_config("S1");
    let cfg = ProbeConfig::load(&cfg_path).unwrap();
    let r = cfg.resolve().unwrap();

    let mut old = Identity::new(cfg.site_id.clone(), r.token.clone(), 1);
    old.protocol_version = rie_proto::MIN_SUPPORTED_VERSION;
    let mut s = Session::open(r.preferred(), old.hello()).await.unwrap();
    assert_eq!(s.welcome.protocol_version, rie_proto::MIN_SUPPORTED_VERSION);
    s.send(&batch(1, 10)).await.unwrap();
    assert_eq!(ack_of(&mut s).await, 1);

    let mut future = Identity::new(cfg.site_id.clone(), r.token.clone(), 2);
    future.protocol_version = rie_proto::PROTOCOL_VERSION + 1;
    match Session::open(r.preferred(), future.hello()).await {
        Err(rie_probe::session::SessionError::Refused(r)) => {
            assert_eq!(r.code, rie_proto::RefuseCode::UnsupportedVersion);
            assert!(r.reason.contains("upgrade the collector"), "{}", r.reason);
        }
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, got a welcome"),
    }
    let c = tokio::task::spawn_blocking(move || {
        assert_eq!(
            c.metric("rie_collector_auth_failures_total{reason=\"unsupported_version\"}"),
            1.0
        );
        c
    })
    .await
    .unwrap();
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_does_not_trust_the_collector_ca_does_not_connect() {
    let c = Collector::start();
    let cfg_path = c.probe_config("S1");
    // Another CA, as if the probe had been enrolled with another collector.
    let other = tempfile::tempdir().unwrap();
    rie_e2e::run_ok(
        std::process::Command::new(rie_e2e::bin("rie-collector"))
            .args(["pki", "init", "--dir"])
            .arg(other.path()),
    );
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let start = text.find("ca_cert = '''").unwrap();
    let foreign = format!(
        "{}ca_cert_file = \"{}\"\n",
        &text[..start],
        other.path().join("ca.pem").display()
    );
    let foreign_path = cfg_path.with_file_name("foreign.toml");
    std::fs::write(&foreign_path, foreign).unwrap();
    let cfg = ProbeConfig::load(&foreign_path).unwrap();
    let r = cfg.resolve().unwrap();
    let id = Identity::new(cfg.site_id.clone(), r.token.clone(), 1);
    match Session::open(r.preferred(), id.hello()).await {
        Err(rie_probe::session::SessionError::Tls { .. }) => {}
        Err(e) => panic!("expected a TLS failure, got {e}"),
        Ok(_) => panic!("connected to a collector signed by another CA"),
    }
    drop(c);
}
