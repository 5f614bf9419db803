//! A plan message the probe cannot decode closes nothing: the probe answers `PlanRefused` with
//! the plan's version and the reason, keeps the checks in force, and applies the next good plan
//! on the same connection. Played by a collector stand-in that speaks version 2 with the
//! collector's own certificate.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rie_e2e::{Collector, Probe};
use rie_proto::{Message, Plan, PlanApplied, PlanRefused, Welcome};
use serde_json::json;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Sends what the probe answered to each plan, in order, on `answered`, then keeps the
/// connection open until `stop`.
async fn stand_in(
    listener: tokio::net::TcpListener,
    pki: std::path::PathBuf,
    plan: &str,
    answered: tokio::sync::oneshot::Sender<Vec<Message>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor =
        tokio_rustls::TlsAcceptor::from(rie_collector::pki::server_config(&pki).unwrap());
    let (sock, _) = listener.accept().await.unwrap();
    let tls = acceptor.accept(sock).await.unwrap();
    let mut f = Framed::new(tls, LengthDelimitedCodec::new());
    let hello = rie_proto::decode(&f.next().await.unwrap().unwrap()).unwrap();
    assert!(
        matches!(&hello, Message::Hello(h) if h.protocol_version == 2),
        "{hello:?}"
    );
    let welcome = Message::Welcome(Welcome {
        protocol_version: 2,
        collector_time_ms: rie_common::now_ms(),
        last_stored_seq: None,
    });
    f.send(rie_proto::encode(&welcome).unwrap().as_slice())
        .await
        .unwrap();
    // Version 9: its `toml` is a number, so the message does not decode.
    let bad =
        rmp_serde::to_vec_named(&json!({"Plan": {"version": 9, "hash": "h", "toml": 5}})).unwrap();
    f.send(bad.as_slice()).await.unwrap();
    let mut answers = Vec::new();
    let mut good_sent = false;
    while answers.len() < 2 {
        let m = tokio::time::timeout(Duration::from_secs(10), f.next())
            .await
            .expect("an answer within 10 s")
            .expect("connection kept open")
            .unwrap();
        // Batches and heartbeats are left unacknowledged (the probe keeps them spooled).
        if let a @ (Message::PlanRefused(_) | Message::PlanApplied(_)) =
            rie_proto::decode(&m).unwrap()
        {
            answers.push(a);
        }
        if answers.len() == 1 && !good_sent {
            let good = Message::Plan(Plan {
                version: 10,
                hash: rie_plan::content_hash(plan),
                toml: plan.into(),
            });
            f.send(rie_proto::encode(&good).unwrap().as_slice())
                .await
                .unwrap();
            good_sent = true;
        }
    }
    answered.send(answers).unwrap();
    let _ = stop.await;
    drop(f);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_plan_is_refused_and_the_connection_kept() {
    let mut c = Collector::start();
    let (addr, pki) = (c.probe_addr, c.dir.path().join("pki"));
    tokio::task::block_in_place(|| c.kill9());
    let mut p = tokio::task::block_in_place(|| Probe::prepare(&c, "S1", "1s", None));
    let mut text = std::fs::read_to_string(&p.config).unwrap();
    text.push_str("\n[[links]]\nid = \"S1-P\"\nrole = \"primary\"\n");
    std::fs::write(&p.config, text).unwrap();
    let plan = "[primary]\ninterval = \"5s\"\n[[primary.targets]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:9\"\nname = \"discard\"\n";
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (answered, answers) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(stand_in(listener, pki, plan, answered, stopped));
    p.spawn();
    let answers = answers.await.unwrap();
    let Message::PlanRefused(PlanRefused { version, reason }) = &answers[0] else {
        panic!("{answers:?}");
    };
    assert_eq!(*version, 9);
    assert!(
        reason.starts_with("plan message cannot be decoded: "),
        "{reason}"
    );
    assert_eq!(
        answers[1],
        Message::PlanApplied(PlanApplied {
            version: 10,
            hash: rie_plan::content_hash(plan),
        })
    );
    let st = tokio::task::block_in_place(|| {
        p.wait_status("plan 10 in force", Duration::from_secs(5), |s| {
            s["plan"]["version"] == 10
        })
    });
    assert_eq!(st["plan"]["checks"], json!(["tcp discard over S1-P"]));
    // One session from start to end: the bad plan closed nothing.
    assert_eq!(st["reconnects"], 0, "{st}");
    assert_eq!(st["connected"], true, "{st}");
    stop.send(()).unwrap();
    server.await.unwrap();
}
