//! A probe facing a "collector" that answers garbage, or a protocol version it does not speak,
//! does not crash and does not lose data: it says why in its status, keeps spooling, backs off,
//! and delivers everything, exactly once, when the real collector takes the address back.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rie_e2e::{Collector, Probe};
use rie_proto::{Message, Welcome};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// A TLS server with the collector's own certificate that answers every hello with `reply`.
async fn impostor(
    addr: SocketAddr,
    pki: std::path::PathBuf,
    reply: Vec<u8>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor =
        tokio_rustls::TlsAcceptor::from(rie_collector::pki::server_config(&pki).unwrap());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let serve = async {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let (acceptor, reply) = (acceptor.clone(), reply.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let mut f = Framed::new(tls, LengthDelimitedCodec::new());
                if f.next().await.is_some() {
                    let _ = f.send(reply.as_slice()).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = stop => {}
    }
}

async fn wait_error(p: &Probe, needle: &str) -> serde_json::Value {
    for _ in 0..100 {
        let st = p.status();
        if st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(needle))
        {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "probe never reported {needle:?}; status {}\n{}",
        p.status(),
        p.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_wrong_versions_are_survived_and_nothing_is_lost() {
    let mut c = Collector::start();
    let addr = c.probe_addr;
    let pki = c.dir.path().join("pki");
    let mut p = Probe::start(
        &c,
        "S1",
        "200ms",
        Some("seed = 5\nagents = 30\nprimary_link = \"S1-P\"\nincident_rate = 0.0"),
    );
    tokio::task::block_in_place(|| {
        c.wait_until("first batches", Duration::from_secs(15), |c| {
            c.metric("rie_collector_probe_batches_total") >= 2.0
        })
    });
    tokio::task::block_in_place(|| c.kill9());

    // 1. Garbage instead of a welcome.
    let (stop, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(impostor(
        addr,
        pki.clone(),
        vec![0xc1, 0xff, 0x00, 0x13],
        rx,
    ));
    let st = wait_error(&p, "protocol error").await;
    assert_eq!(st["running"], true);
    stop.send(()).unwrap();
    server.await.unwrap();

    // 2. A welcome in a protocol version the probe does not speak.
    let welcome = rie_proto::encode(&Message::Welcome(Welcome {
        protocol_version: 99,
        collector_time_ms: 0,
        last_stored_seq: None,
    }))
    .unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(impostor(addr, pki, welcome, rx));
    let st = wait_error(&p, "protocol version 99").await;
    assert!(st["spool"]["batches"].as_u64().unwrap() > 0, "{st}");
    stop.send(()).unwrap();
    server.await.unwrap();

    // 3. Stop the probe with its backlog on disk, bring the real collector back on the same
    //    address, start the probe again: the spool drains, nothing twice.
    assert_eq!(p.terminate(), Some(0));
    tokio::task::block_in_place(|| c.restart());
    p.write_config("200ms", None);
    p.spawn();
    let st = tokio::task::block_in_place(|| {
        p.wait_status("the spool to drain", Duration::from_secs(30), |s| {
            s["running"] == true
                && s["spool"]["batches"] == 0
                && s["spool"]["last_acked"].as_u64() > Some(0)
        })
    });
    let n = st["spool"]["last_acked"].as_u64().unwrap();
    tokio::task::block_in_place(|| {
        assert_eq!(
            c.get("/api/v1/sites/S1")["probe"]["batches_stored"].as_u64(),
            Some(n)
        );
        assert_eq!(c.metric("rie_collector_sequence_gaps_total"), 0.0);
    });
}
