//! NetFlow relay: the site router exports NetFlow v5/v9/IPFIX to the probe, which decodes it
//! (`rie_flow::netflow`), sums it into minute aggregates with the direction decided against the
//! site's prefixes, counts the top remote prefixes per minute like the capture meter
//! ([`Talkers`], `[meter] top_talkers`), and hands both to the producer at each batch, so that
//! they are spooled and acknowledged like capture data. One thread owns the socket and the
//! decoder state.
//!
//! What is not yet in a batch is in memory: a crash of the probe loses at most one batch
//! interval of relayed traffic (the router does not resend); a graceful stop flushes it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rie_proto::{FlowAggregate, TopTalker};
use tracing::{info, warn};

use rie_flow::aggregate::{Prefixes, Talkers};
use rie_flow::netflow::{Aggregator, Decoder, DecoderConfig, FlowRecord};

#[derive(Debug, thiserror::Error)]
pub enum NetflowRelayError {
    #[error("netflow.listen = {addr}: {source}; free the port or set another address")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Decoder(#[from] rie_flow::netflow::DecoderConfigError),
}

/// Counters the status file shows.
#[derive(Debug, Default)]
pub struct RelayStats {
    pub datagrams: AtomicU64,
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
}

/// What a relay's decoding thread sums between two batches (the NetFlow and sFlow relays).
#[derive(Debug, Default)]
pub(crate) struct Sums {
    flows: Aggregator,
    talkers: Talkers,
}

impl Sums {
    pub(crate) fn new(top_talkers: usize) -> Self {
        Self {
            flows: Aggregator::default(),
            talkers: Talkers::new(top_talkers),
        }
    }

    /// Adds a datagram's records, each with its direction against the site's prefixes, to
    /// the flows and the top talkers of its minute.
    pub(crate) fn add(&mut self, records: &[FlowRecord], prefixes: &Prefixes) {
        for r in records {
            let dir = prefixes.direction_of(r.src.as_ref(), r.dst.as_ref());
            self.flows.add(r, dir);
            let minute = r.start_ms.div_euclid(60_000) * 60;
            self.talkers
                .add(minute, dir, r.src, r.dst, r.bytes, r.packets);
        }
    }

    /// Everything added since the last call, as batch records, with their top talkers.
    pub(crate) fn take(&mut self) -> (Vec<FlowAggregate>, Vec<TopTalker>) {
        let flows = self.flows.take().into_values().flatten().collect();
        (flows, self.talkers.take_top())
    }
}

/// The running relay.
pub struct NetflowRelay {
    agg: Arc<Mutex<Sums>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<RelayStats>,
    pub addr: SocketAddr,
}

/// Binds `addr` with a receive buffer large enough for a router's bursts.
///
/// # Errors
/// The bind error.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(4 * 1024 * 1024);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(socket)
}

impl NetflowRelay {
    /// Binds and starts decoding.
    ///
    /// # Errors
    /// [`NetflowRelayError`] naming the key and the fix.
    /// `top_talkers`: remote prefixes kept per minute (`[meter] top_talkers`, 0: none).
    pub fn start(
        listen: SocketAddr,
        prefixes: Prefixes,
        top_talkers: usize,
    ) -> Result<Self, NetflowRelayError> {
        let socket = bind(listen).map_err(|source| NetflowRelayError::Bind {
            addr: listen,
            source,
        })?;
        let addr = socket
            .local_addr()
            .map_err(|source| NetflowRelayError::Bind {
                addr: listen,
                source,
            })?;
        // A site has one router or two: small limits.
        let mut decoder = Decoder::new(
            &DecoderConfig {
                max_exporters: 64,
                ..DecoderConfig::default()
            },
            None,
        )?;
        let agg = Arc::new(Mutex::new(Sums::new(top_talkers)));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RelayStats::default());
        let thread = {
            let (agg, stop, stats) = (agg.clone(), stop.clone(), stats.clone());
            std::thread::spawn(move || {
                info!(netflow = %addr, "NetFlow relay listening");
                let mut buf = vec![0u8; 65_536];
                let mut records = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (n, from) = match socket.recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            continue
                        }
                        Err(e) => {
                            warn!(error = %e, "NetFlow socket error");
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    };
                    records.clear();
                    let d = decoder.decode(from.ip().to_canonical(), &buf[..n], &mut records);
                    stats.datagrams.fetch_add(1, Ordering::Relaxed);
                    stats
                        .records
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    stats
                        .decode_errors
                        .fetch_add(d.errors.len() as u64, Ordering::Relaxed);
                    agg.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(&records, &prefixes);
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

    /// Everything decoded since the last call, as batch records, with the top talkers of
    /// those records (both taken under one lock, so that talkers never run ahead of flows).
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
