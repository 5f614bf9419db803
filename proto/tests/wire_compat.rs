//! Wire compatibility of the probe protocol.
//!
//! - Golden fixtures (`tests/data/vN/*.msgpack`): bytes a version-N peer sends. They must keep
//!   decoding to the same values for as long as version N is supported, whatever fields later
//!   versions add. Write them only for a new protocol version, into its new folder:
//!   `RIE_BLESS=2 cargo test -p rie-proto --test wire_compat` (version 2: the v1 set with
//!   version 2 in hello and welcome, plus the plan messages).
//! - A newer peer's extra fields are ignored; an older peer's missing optional fields default.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rie_proto::*;
use serde_json::json;

fn fixtures() -> Vec<(&'static str, Message)> {
    let site = SiteId::new("S00042").unwrap();
    let link = LinkId::new("S00042-P").unwrap();
    vec![
        (
            "hello",
            Message::Hello(Hello {
                protocol_version: 1,
                site: site.clone(),
                token: "0123456789abcdef".into(),
                probe_version: "0.1.0".into(),
                probe_time_ms: 1_790_000_040_123,
                stream: 0x1234_5678_9abc,
            }),
        ),
        (
            "welcome",
            Message::Welcome(Welcome {
                protocol_version: 1,
                collector_time_ms: 1_790_000_040_456,
                last_stored_seq: Some(41),
            }),
        ),
        (
            "refused",
            Message::Refused(Refused {
                code: RefuseCode::BadToken,
                reason: "token refused".into(),
            }),
        ),
        (
            "batch",
            Message::Batch(Batch {
                top_talkers: Vec::new(),
                seq: 42,
                created_ms: 1_790_000_050_000,
                flows: vec![FlowAggregate {
                    minute: 1_790_000_040,
                    protocol: 6,
                    direction: Direction::Inbound,
                    exporter: Some("10.0.42.1".into()),
                    flows: 12,
                    packets: 3_400,
                    bytes: 2_901_337,
                    sampling_rate: 1,
                    port_class: rie_proto::PortClass::Unknown,
                }],
                samples: vec![AvailabilitySample {
                    link: link.clone(),
                    check: CheckKind::Icmp,
                    target: "core".into(),
                    start: 1_790_000_040,
                    interval_s: 10,
                    sent: 10,
                    received: 9,
                    rtt_min_us: Some(11_000),
                    rtt_avg_us: Some(12_500),
                    rtt_max_us: Some(19_000),
                    rtt_p95_us: Some(18_000),
                    jitter_us: Some(700),
                }],
                links: vec![LinkStatus {
                    link,
                    up: true,
                    active: true,
                    changed_ms: None,
                }],
            }),
        ),
        (
            "ack",
            Message::Ack(Ack {
                seq: 42,
                duplicate: false,
            }),
        ),
        (
            "heartbeat",
            Message::Heartbeat(Heartbeat {
                probe_time_ms: 1_790_000_060_000,
                health: None,
            }),
        ),
        (
            "heartbeat_ack",
            Message::HeartbeatAck(HeartbeatAck {
                probe_time_ms: 1_790_000_060_000,
                collector_time_ms: 1_790_000_060_020,
            }),
        ),
    ]
}

/// Version 2: hello and welcome say 2; the plan messages are new.
fn fixtures_v2() -> Vec<(&'static str, Message)> {
    let mut all = fixtures();
    for (_, m) in &mut all {
        match m {
            Message::Hello(h) => h.protocol_version = 2,
            Message::Welcome(w) => w.protocol_version = 2,
            _ => {}
        }
    }
    let toml = "[primary]\ninterval = \"10s\"\n".to_string();
    all.extend([
        (
            "plan",
            Message::Plan(Plan {
                version: 7,
                hash: "4be4b6e7a7d4c16c2e2e4e4b5f0bd3f7b3e0b6f2a9a4d6c1b3e5f7a9c1d3e5f7".into(),
                toml,
            }),
        ),
        (
            "plan_applied",
            Message::PlanApplied(PlanApplied {
                version: 7,
                hash: "4be4b6e7a7d4c16c2e2e4e4b5f0bd3f7b3e0b6f2a9a4d6c1b3e5f7a9c1d3e5f7".into(),
            }),
        ),
        (
            "plan_refused",
            Message::PlanRefused(PlanRefused {
                version: 8,
                reason: "unknown variant `twamp`".into(),
            }),
        ),
    ]);
    all
}

fn dir(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/v{version}"))
}

#[test]
fn version_1_fixtures_decode_to_the_same_values() {
    check_fixtures(1, fixtures());
}

#[test]
fn version_2_fixtures_decode_to_the_same_values() {
    check_fixtures(2, fixtures_v2());
}

#[test]
fn this_build_speaks_2_and_serves_1() {
    assert_eq!(PROTOCOL_VERSION, 2);
    assert_eq!(MIN_SUPPORTED_VERSION, 1);
    assert_eq!(PLAN_VERSION, 2);
}

fn check_fixtures(version: u16, all: Vec<(&'static str, Message)>) {
    let bless = std::env::var("RIE_BLESS").ok() == Some(version.to_string());
    let dir = || dir(version);
    if bless {
        std::fs::create_dir_all(dir()).unwrap();
    }
    for (name, msg) in &all {
        let path = dir().join(format!("{name}.msgpack"));
        if bless {
            std::fs::write(&path, encode(msg).unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&decode(&bytes).unwrap(), msg, "{name}");
    }
    let files = std::fs::read_dir(dir()).unwrap().count();
    assert_eq!(files, all.len(), "every fixture file is checked");
}

/// Encodes a JSON value as a MessagePack map, the way a peer built from other code would.
fn raw(v: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&v).unwrap()
}

#[test]
fn fields_from_a_newer_peer_are_ignored() {
    let bytes = raw(json!({"Batch": {
        "seq": 7, "created_ms": 1, "added_in_v2": {"anything": [1, 2, 3]},
        "flows": [{"minute": 60, "protocol": 17, "direction": "outbound",
                   "flows": 1, "packets": 2, "bytes": 3, "new_counter": 99}],
    }}));
    match decode(&bytes).unwrap() {
        Message::Batch(b) => {
            assert_eq!(b.seq, 7);
            assert_eq!(b.flows[0].bytes, 3);
            assert_eq!(b.flows[0].sampling_rate, 1);
            assert_eq!(b.flows[0].port_class, PortClass::Unknown);
            assert!(b.samples.is_empty() && b.links.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let refused = raw(json!({"Refused": {"code": "some_future_code", "reason": "r"}}));
    assert_eq!(
        decode(&refused).unwrap(),
        Message::Refused(Refused {
            code: RefuseCode::Other,
            reason: "r".into(),
        })
    );
}

/// A redirect from a collector of the removed sharded cluster (code `redirect`, field
/// `redirect`, both once sent by version-1 collectors): this build decodes it as a refusal with
/// the unknown code `Other` and the field ignored, so a probe treats it as a failed attempt and
/// tries its next collector; it never mistakes it for a welcome.
#[test]
fn a_redirect_from_a_cluster_collector_decodes_as_a_refusal() {
    let bytes = raw(json!({"Refused": {
        "code": "redirect",
        "reason": "site S00042 is served by collector b:7443",
        "redirect": "b:7443"}}));
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Refused(Refused {
            code: RefuseCode::Other,
            reason: "site S00042 is served by collector b:7443".into(),
        })
    );
}

/// A heartbeat with the probe's health (added after v1) is the v1 heartbeat plus one field: a
/// collector built with the v1 message (as below) reads its clock and ignores the rest, and
/// without health the bytes are exactly v1's.
#[test]
fn a_heartbeat_with_health_is_read_by_a_version_1_collector() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct V1Heartbeat {
        probe_time_ms: i64,
    }
    #[derive(serde::Deserialize, Debug, PartialEq)]
    enum V1Message {
        Heartbeat(V1Heartbeat),
    }
    let health = rie_proto::ProbeHealth {
        spool_batches: 12,
        spool_bytes: 34_567,
        spool_oldest_ms: Some(1_790_000_000_000),
        spool_dropped: 1,
        capture_kernel_drops: Some(3),
        relay_datagrams: None,
        relay_errors: None,
        sflow_datagrams: Some(4),
        sflow_errors: Some(0),
    };
    let msg = Message::Heartbeat(Heartbeat {
        probe_time_ms: 77,
        health: Some(health),
    });
    let bytes = encode(&msg).unwrap();
    assert_eq!(decode(&bytes).unwrap(), msg);
    let old: V1Message = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(old, V1Message::Heartbeat(V1Heartbeat { probe_time_ms: 77 }));
    let plain = encode(&Message::Heartbeat(Heartbeat {
        probe_time_ms: 1_790_000_060_000,
        health: None,
    }))
    .unwrap();
    assert_eq!(
        plain,
        std::fs::read(dir(1).join("heartbeat.msgpack")).unwrap()
    );
}

#[test]
fn optional_fields_an_older_peer_leaves_out_take_their_defaults() {
    let bytes = raw(json!({"Ack": {"seq": 5}}));
    assert_eq!(
        decode(&bytes).unwrap(),
        Message::Ack(Ack {
            seq: 5,
            duplicate: false
        })
    );
    let sample = raw(json!({"Batch": {"seq": 1, "created_ms": 0, "samples": [
        {"link": "L", "check": "dns", "target": "resolver", "start": 0, "interval_s": 10, "sent": 3, "received": 3}
    ]}}));
    match decode(&sample).unwrap() {
        Message::Batch(b) => assert_eq!(b.samples[0].rtt_avg_us, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_required_field_is_an_error_not_a_zero() {
    let bytes = raw(json!({"Batch": {"created_ms": 0}}));
    let e = decode(&bytes).unwrap_err();
    assert!(e.to_string().contains("seq"), "{e}");
}
