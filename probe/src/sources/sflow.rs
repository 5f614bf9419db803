//! sFlow relay: the site's router or switch sends sFlow v5 to the probe (`[sflow]`), which
//! decodes it (`rie_flow::sflow`), sums the flow samples (scaled by their sampling rate) into
//! minute aggregates with the direction decided against the site's prefixes, counts the top
//! remote prefixes like the capture meter, and hands both to the producer at each batch, as the
//! NetFlow relay does: spooled and acknowledged like capture data. Every datagram received is
//! the site's (the probe serves one site), whatever its agent address. Interface counter
//! samples are read (for sequence and restart tracking) but not relayed: the collector takes
//! them from agents that send to it directly (docs/sflow.md).
//!
//! What is not yet in a batch is in memory: a crash of the probe loses at most one batch
//! interval of relayed traffic; a graceful stop flushes it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rie_flow::aggregate::Prefixes;
use rie_flow::sflow::{Decoder, DecoderConfig};
use rie_proto::{FlowAggregate, TopTalker};
use tracing::{info, warn};

use super::netflow::Sums;

#[derive(Debug, thiserror::Error)]
#[error("sflow.listen = {addr}: {source}; free the port or set another address")]
pub struct SflowRelayError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Counters of the relay.
#[derive(Debug, Default)]
pub struct SflowStats {
    pub datagrams: AtomicU64,
    pub samples: AtomicU64,
    pub decode_errors: AtomicU64,
    pub lost_samples: AtomicU64,
}

/// The running relay.
pub struct SflowRelay {
    agg: Arc<Mutex<Sums>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<SflowStats>,
    pub addr: SocketAddr,
}

impl SflowRelay {
    /// Binds `listen` and starts decoding; `top_talkers` as `[meter] top_talkers`.
    ///
    /// # Errors
    /// [`SflowRelayError`] naming the key and the fix.
    pub fn start(
        listen: SocketAddr,
        prefixes: Prefixes,
        top_talkers: usize,
    ) -> Result<Self, SflowRelayError> {
        let err = |source| SflowRelayError {
            addr: listen,
            source,
        };
        let socket = super::netflow::bind(listen).map_err(err)?;
        let addr = socket.local_addr().map_err(err)?;
        // A site has a router and a few switches: small limits.
        let mut decoder = Decoder::new(&DecoderConfig {
            max_agents: 64,
            max_sources_per_agent: 256,
        });
        let agg = Arc::new(Mutex::new(Sums::new(top_talkers)));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SflowStats::default());
        let thread = {
            let (agg, stop, stats) = (agg.clone(), stop.clone(), stats.clone());
            std::thread::spawn(move || {
                info!(sflow = %addr, "sFlow relay listening");
                let mut buf = vec![0u8; 65_536];
                let (mut flows, mut counters) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let n = match socket.recv_from(&mut buf) {
                        Ok((n, _)) => n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            continue
                        }
                        Err(e) => {
                            warn!(error = %e, "sFlow socket error");
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            continue;
                        }
                    };
                    flows.clear();
                    counters.clear();
                    let d =
                        decoder.decode(&buf[..n], rie_common::now_ms(), &mut flows, &mut counters);
                    stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    stats.samples.fetch_add(d.flow_samples, Ordering::Relaxed);
                    stats
                        .decode_errors
                        .fetch_add(d.errors.len() as u64, Ordering::Relaxed);
                    stats
                        .lost_samples
                        .fetch_add(d.lost_samples, Ordering::Relaxed);
                    agg.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(&flows, &prefixes);
                }
            })
        };
        Ok(Self {
            agg,
            stop,
            thread: Some(thread),
            stats,
            addr,
        })
    }

    /// Everything decoded since the last call, as batch records, with their top talkers.
    pub fn take(&self) -> (Vec<FlowAggregate>, Vec<TopTalker>) {
        self.agg.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Stops listening and returns what is left.
    pub fn stop_and_flush(mut self) -> (Vec<FlowAggregate>, Vec<TopTalker>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// A datagram exported by pmacctd (7 samples of ICMP, 84 IP bytes, 1-in-1) sent to the
    /// relay comes out as one minute aggregate of 7 flows, 7 packets, 588 bytes.
    #[test]
    fn relayed_samples_come_out_as_minute_aggregates() {
        let relay =
            SflowRelay::start("127.0.0.1:0".parse().unwrap(), Prefixes(Vec::new()), 10).unwrap();
        let data = include_bytes!("../../../flow/src/sflow/testdata/pmacctd_sfprobe_1.bin");
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(data, relay.addr).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while relay.stats.samples.load(Ordering::Relaxed) < 7 {
            assert!(Instant::now() < end, "the relay decoded nothing");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (flows, _) = relay.stop_and_flush();
        let sum = flows.iter().fold((0, 0, 0), |a, f| {
            (a.0 + f.flows, a.1 + f.packets, a.2 + f.bytes)
        });
        assert_eq!(sum, (7, 7, 7 * 84));
        assert_eq!(flows[0].exporter.as_deref(), Some("127.0.0.1"));
    }
}
