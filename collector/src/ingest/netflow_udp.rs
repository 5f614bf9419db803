//! NetFlow v5/v9/IPFIX exported directly by routers (`--netflow-listen`, `[netflow]`): one UDP
//! socket with a large receive buffer, read by one thread (up to [`BATCH`] datagrams per
//! `recvmmsg` system call) that hands each datagram to one of `decode_threads` lanes, chosen
//! by exporter address and observation domain, so that each decode thread owns the state of
//! its exporters (templates, held data, announced sampling).
//! A decode thread attributes each datagram to a site by its source address (inventory
//! `netflow_exporters`), decides each record's direction against that site's
//! `site_prefixes` (none: `unknown`), sums records into minute rows and the top remote
//! prefixes per site and minute (the probe meter's [`Talkers`], so the definition is the
//! capture path's), and hands them to the commit stage every `flush_interval`
//! ([`NetflowWrite`]); once committed, the commit stage fans the minutes touched out to the
//! sinks (InfluxDB writes them like a probe batch's).
//!
//! Design constraints:
//! - **What an acknowledgement means for UDP**: nothing is acknowledged to an exporter and
//!   no exporter ever resends. A record counts once the commit stage has committed the group
//!   that carries it; until then it is in memory. A graceful stop (SIGTERM) commits everything first; a crash loses
//!   at most the last `flush_interval` of traffic, and never counts anything twice (each
//!   in-memory sum is sent in exactly one flush, and put back only if that flush's group
//!   failed).
//! - **Unknown sources**: a datagram from an address in no site's `netflow_exporters` is
//!   dropped before decoding (its templates never enter the decoder's state) and never
//!   stored; it is counted in `rie_collector_netflow_unknown_source_datagrams_total{source}`,
//!   by address for the first [`SOURCE_LABELS`] addresses, then `other` (a bounded label set
//!   whatever is spoofed). Declare the router in the inventory to take its traffic.
//! - **Isolation**: a malformed datagram is counted in `rie_collector_decode_errors_total`
//!   and, per exporter and reason, in `rie_collector_netflow_malformed_datagrams_total`
//!   (same bounded labels); what decoded before the fault is kept, it affects only its own
//!   exporter's scope, and the loop never stops on input.
//! - **Exact under load**: every datagram the socket delivers is decoded and summed; what
//!   the kernel drops because the receive buffer was full is read from the socket
//!   (`SO_RXQ_OVFL`: each datagram carries the socket's drop count) into
//!   `rie_collector_netflow_kernel_drops_total`, so sent = stored + kernel drops, and the NOC
//!   tells collector loss from network loss.
//! - **Hot path**: per datagram, one exporter → site lookup, counters already resolved (no
//!   label lookup), the decoder's fast path for data of compiled templates
//!   (`rie_flow::netflow`); per record, no allocation, no metric, no log: the direction scan,
//!   the minute sum and the site's talkers (looked up once per datagram).
//! - **Direction** costs one hash lookup per datagram (exporter → site, already needed for
//!   attribution) and a scan of that site's few prefixes per record: no national prefix
//!   table, so 14,000 sites cost nothing per record.
//! - **One writer.** A lane never writes the store: its flush waits for the commit stage's
//!   reply (the bounded channel is the backpressure; the socket buffer absorbs the pause), and
//!   its rows are the same additive minute rows as probe batches', so NetFlow and probe
//!   traffic sum in one table. The sampling correction applied is kept beside it
//!   (`netflow_sampling`).

use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rie_flow::aggregate::{direction_in, Talkers};
use rie_flow::netflow::{Aggregator, DecodeReason, Decoder, DecoderConfig, FlowRecord};
use rie_proto::{Direction, TopTalker};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::netflow_templates::TemplateCache;
use super::source_labels::{SourceLabels, SOURCE_LABELS};
use crate::commit::{NetflowWrite, Request};
use crate::inventory::Inventory;
use crate::metrics::{Metrics, NetflowMetrics};
use crate::store::TemplateChange;

/// Why the NetFlow input could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetflowStartError {
    #[error(
        "cannot listen on {addr} (netflow.listen): {source}; free the port or set another address"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Decoder(#[from] rie_flow::netflow::DecoderConfigError),
    #[error("cannot start the NetFlow thread: {0}")]
    Thread(std::io::Error),
}

/// A started NetFlow input.
pub struct NetflowInput {
    pub addr: SocketAddr,
    pub thread: std::thread::JoinHandle<()>,
}

/// Binds the UDP socket with the configured receive buffer (SO_RCVBUF). The buffer absorbs
/// bursts and the pauses of the decode threads (a commit); Linux caps the request at
/// `net.core.rmem_max` (often 208 KiB or 4 MiB), silently: the granted size is read back and
/// a warning names the sysctl to raise.
fn bind(addr: SocketAddr, rcvbuf: usize) -> Result<UdpSocket, NetflowStartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| NetflowStartError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if let Err(e) = socket.set_recv_buffer_size(rcvbuf) {
        tracing::warn!(error = %e, "cannot size the NetFlow receive buffer");
    }
    // Linux reports double what it grants (the doubled part is its bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if let Some(warning) = clamp_warning(rcvbuf, granted) {
        tracing::warn!(requested = rcvbuf, granted, "{warning}");
    }
    socket.bind(&addr.into()).map_err(err)?;
    let socket: UdpSocket = socket.into();
    // Each datagram then carries the socket's drop count (`rie_collector_netflow_kernel_drops_total`).
    if let Err(e) = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RxqOvfl, &1) {
        tracing::warn!(error = %e, "cannot enable SO_RXQ_OVFL: kernel drops of the NetFlow socket will not be counted");
    }
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(err)?;
    Ok(socket)
}

/// The NetFlow templates the input starts from.
pub struct Templates<'a> {
    /// What the store had at start-up.
    pub persisted: &'a [TemplateChange],
    /// A database other collectors write too: a template missing here is read from it.
    pub shared: Option<Arc<crate::store::Reader>>,
}

/// Binds `cfg.listen` and starts the input thread; it stops (after a last flush) when
/// `shutdown` is cancelled. `templates` are the ones the store had (and, with a database other
/// collectors write too, where a missing one is read); flushes go to `commit`.
///
/// # Errors
/// [`NetflowStartError`] for the port, the database or the decoder limits.
pub fn start(
    cfg: &NetflowConfig,
    listen: SocketAddr,
    templates: Templates<'_>,
    commit: mpsc::Sender<Request>,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<NetflowInput, NetflowStartError> {
    let socket = bind(listen, cfg.receive_buffer_bytes)?;
    let addr = socket
        .local_addr()
        .map_err(|source| NetflowStartError::Bind {
            addr: listen,
            source,
        })?;
    let nf = NetflowMetrics::register(&metrics.registry);
    let templates = match templates.shared {
        Some(reader) => TemplateCache::read_through(
            templates.persisted,
            reader,
            nf.templates_from_store.clone(),
        ),
        None => TemplateCache::load(templates.persisted),
    };
    nf.templates_persisted.set(templates.len() as i64);
    let rcvbuf = socket2::SockRef::from(&socket)
        .recv_buffer_size()
        .unwrap_or(0);
    let n = cfg.decode_threads.max(1);
    let labels = Arc::new(SourceLabels::default());
    let mut lanes = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    for i in 0..n {
        let decoder = Decoder::new(
            &DecoderConfig {
                max_exporters: cfg.max_exporters,
                ..DecoderConfig::default()
            },
            Some(templates.clone()),
        )?;
        let (tx, rx) = std::sync::mpsc::sync_channel(LANE_DEPTH);
        let mut worker = Worker {
            decoder,
            inventory: inventory.clone(),
            counters: Counters::new(&nf, &metrics, labels.clone()),
            site_packets: HashMap::new(),
            nf: nf.clone(),
            commit: commit.clone(),
            templates: templates.clone(),
            agg: Aggregator::default(),
            talkers: HashMap::new(),
            top_talkers: cfg.top_talkers,
            flush_every: cfg.flush_interval,
            shown: (0, 0),
        };
        workers.push(
            std::thread::Builder::new()
                .name(format!("netflow-{i}"))
                .spawn(move || worker.run(&rx))
                .map_err(NetflowStartError::Thread)?,
        );
        lanes.push(tx);
    }
    tracing::info!(netflow = %addr, receive_buffer = rcvbuf, templates = templates.len(), decode_threads = n, "NetFlow input listening");
    let thread = std::thread::Builder::new()
        .name("netflow-recv".into())
        .spawn(move || receive(&socket, lanes, &shutdown, workers, &nf.kernel_drops))
        .map_err(NetflowStartError::Thread)?;
    Ok(NetflowInput { addr, thread })
}

/// Batches (of at most [`BATCH`] datagrams) waiting per decode thread: up to 2,048
/// datagrams. When a lane is full the receiver waits, and the kernel's socket buffer absorbs
/// the burst.
const LANE_DEPTH: usize = 64;

/// The lane of a datagram: by exporter address and observation domain / source id, so that
/// one exporter scope is always decoded by the same thread, which owns its templates and
/// held data.
fn lane_of(exporter: IpAddr, data: &[u8], lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let domain = match data.get(..2) {
        Some([0, 9]) => data.get(16..20),
        Some([0, 10]) => data.get(12..16),
        _ => None,
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    exporter.hash(&mut h);
    domain.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}

/// The warning to log when the kernel granted less receive buffer than requested.
fn clamp_warning(requested: usize, granted: usize) -> Option<String> {
    (granted < requested).then(|| {
        format!(
            "the kernel granted a NetFlow receive buffer of {granted} bytes instead of the {requested} \
             requested (netflow.receive_buffer_bytes): bursts may be dropped before the collector \
             reads them; raise the cap with `sysctl -w net.core.rmem_max={requested}` (and in \
             /etc/sysctl.d/ to keep it) and restart the collector"
        )
    })
}

/// Datagrams (exporter, bytes) handed to a decode thread together.
type Datagrams = Vec<(IpAddr, Vec<u8>)>;
type Lane = std::sync::mpsc::SyncSender<Datagrams>;

/// Hands the datagrams of one `recvmmsg` batch to the lanes of their exporter scopes, in
/// arrival order within each lane, one channel message per lane (not per datagram: a decode
/// thread is woken once per batch). When a lane is full the receiver waits for it (the
/// kernel's socket buffer absorbs the wait): nothing is dropped here.
fn hand(lanes: &[Lane], batch: &Batch) {
    let mut per_lane: Vec<Datagrams> = vec![Vec::new(); lanes.len()];
    for (from, data) in batch.datagrams() {
        let exporter = from.ip().to_canonical();
        per_lane[lane_of(exporter, data, lanes.len())].push((exporter, data.to_vec()));
    }
    for (lane, datagrams) in lanes.iter().zip(per_lane) {
        if !datagrams.is_empty() {
            // A lane only closes when its thread died (a bug): nothing else to do than go on.
            let _ = lane.send(datagrams);
        }
    }
}

/// Datagrams read per `recvmmsg` call: one system call instead of up to 32 when datagrams
/// queue up (a burst, or the receiver back from a wait), the moment when a `recvfrom` per
/// datagram would let the socket buffer overflow.
const BATCH: usize = 32;

/// Largest UDP payload (IPv4: 65,507 bytes); NetFlow exporters stay under the path MTU.
const MAX_DATAGRAM: usize = 65_536;

/// Buffers for one `recvmmsg` call (`nix`'s safe wrapper), reused from call to call.
struct Batch {
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    bufs: Vec<Vec<u8>>,
    /// Sender and length of the datagram in `bufs[i]`, for the last call.
    got: Vec<(Option<SocketAddr>, usize)>,
    /// The socket's drop count carried by the last call's datagrams (`SO_RXQ_OVFL`: the
    /// kernel's count when the datagram was queued; absent while it is 0).
    drops: Option<u32>,
}

impl Batch {
    fn new() -> Self {
        Self {
            headers: nix::sys::socket::MultiHeaders::preallocate(
                BATCH,
                Some(nix::cmsg_space!(u32)),
            ),
            bufs: vec![vec![0u8; MAX_DATAGRAM]; BATCH],
            got: Vec::with_capacity(BATCH),
            drops: None,
        }
    }

    /// Reads up to [`BATCH`] datagrams: waits for the first one (at most the socket's read
    /// timeout, unless `wait` is false), then takes those already queued without waiting
    /// (`MSG_WAITFORONE`). Returns how many were read.
    fn recv(&mut self, socket: &UdpSocket, wait: bool) -> nix::Result<usize> {
        use nix::sys::socket::{recvmmsg, MsgFlags};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        self.got.clear();
        // nix 0.31's `recvmmsg` does not reset each header's control length, which the kernel
        // lowers to what it wrote (0 when a datagram carries no drop count yet): fresh
        // headers for every call, or the drop count would never be seen again.
        self.headers =
            nix::sys::socket::MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u32)));
        let flags = if wait {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
            self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
        let msgs = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            flags,
            None,
        )?;
        self.drops = None;
        for m in msgs {
            if let Ok(cmsgs) = m.cmsgs() {
                for c in cmsgs {
                    if let nix::sys::socket::ControlMessageOwned::RxqOvfl(n) = c {
                        self.drops = Some(self.drops.map_or(n, |d| d.max(n)));
                    }
                }
            }
            self.got
                .push((m.address.and_then(|a| std_addr(&a)), m.bytes));
        }
        Ok(self.got.len())
    }

    /// The datagrams of the last call, in arrival order.
    fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got
            .iter()
            .zip(&self.bufs)
            .filter_map(|(&(from, n), b)| Some((from?, &b[..n.min(b.len())])))
    }
}

fn std_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// The receiving thread: reads datagrams in batches and hands each to its lane until
/// shutdown, then drains the socket, closes the lanes and waits for the decode threads' last
/// commit.
fn receive(
    socket: &UdpSocket,
    lanes: Vec<Lane>,
    shutdown: &CancellationToken,
    workers: Vec<std::thread::JoinHandle<()>>,
    kernel_drops: &prometheus::IntCounter,
) {
    use nix::errno::Errno;
    let mut batch = Batch::new();
    let mut drops = DropCount::default();
    while !shutdown.is_cancelled() {
        match batch.recv(socket, true) {
            Ok(_) => {
                kernel_drops.inc_by(drops.delta(batch.drops));
                hand(&lanes, &batch);
            }
            // The read timeout (200 ms) passed: look at `shutdown` again.
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "NetFlow socket error");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    // Datagrams already in the socket buffer were received by the kernel: take them too.
    while let Ok(n) = batch.recv(socket, false) {
        if n == 0 {
            break;
        }
        kernel_drops.inc_by(drops.delta(batch.drops));
        hand(&lanes, &batch);
    }
    // Closing the lanes tells each decode thread to commit and stop.
    drop(lanes);
    for w in workers {
        let _ = w.join();
    }
    tracing::info!("NetFlow input stopped, aggregates committed");
}

/// The socket's cumulative drop count as last seen, turned into increments.
#[derive(Default)]
struct DropCount(u32);

impl DropCount {
    /// What was dropped since the last count seen (`seen`: the kernel's cumulative count, a
    /// 32-bit counter that wraps).
    fn delta(&mut self, seen: Option<u32>) -> u64 {
        let Some(n) = seen else { return 0 };
        let d = n.wrapping_sub(self.0);
        // Datagrams of one batch may carry older counts than an earlier batch's maximum
        // (queued before): never count backwards.
        if d == 0 || d > u32::MAX / 2 {
            return 0;
        }
        self.0 = n;
        u64::from(d)
    }
}

/// The counters a decode thread touches per datagram, resolved once (a labelled metric's
/// lookup hashes its labels and takes a lock).
struct Counters {
    /// By version: 5, 9, 10, other.
    datagrams: [prometheus::IntCounter; 4],
    records: [prometheus::IntCounter; 4],
    flow_records: prometheus::IntCounter,
    /// Direction::as_i64: 0 unknown, 1 inbound, 2 outbound.
    by_direction: [prometheus::IntCounter; 3],
    no_prefix: prometheus::IntCounter,
    decode_errors: HashMap<DecodeReason, prometheus::IntCounter>,
    /// Per source: (unknown source datagrams) and (malformed datagrams by reason), resolved
    /// on first use; bounded by [`SOURCE_LABELS`] + 1 addresses' worth.
    unknown: HashMap<IpAddr, prometheus::IntCounter>,
    malformed: HashMap<(IpAddr, DecodeReason), prometheus::IntCounter>,
    labels: Arc<SourceLabels>,
    nf: NetflowMetrics,
}

impl Counters {
    fn new(nf: &NetflowMetrics, metrics: &Metrics, labels: Arc<SourceLabels>) -> Self {
        let v = |m: &prometheus::IntCounterVec| {
            ["5", "9", "10", "other"].map(|l| m.with_label_values(&[l]))
        };
        Self {
            datagrams: v(&nf.datagrams),
            records: v(&nf.records),
            flow_records: metrics.flow_records.with_label_values(&["netflow"]),
            by_direction: ["unknown", "inbound", "outbound"]
                .map(|l| nf.records_by_direction.with_label_values(&[l])),
            no_prefix: nf.no_prefix_records.clone(),
            decode_errors: DecodeReason::ALL
                .into_iter()
                .map(|r| (r, nf.decode_errors.with_label_values(&[r.as_str()])))
                .collect(),
            unknown: HashMap::new(),
            malformed: HashMap::new(),
            labels,
            nf: nf.clone(),
        }
    }

    fn version_index(version: u16) -> usize {
        match version {
            5 => 0,
            9 => 1,
            10 => 2,
            _ => 3,
        }
    }

    fn unknown_source(&mut self, from: IpAddr) {
        if !self.unknown.contains_key(&from) && self.unknown.len() > SOURCE_LABELS {
            // Beyond the bound, addresses share `other` without a map entry each.
            let l = self.labels.label(from);
            self.nf
                .unknown_source_datagrams
                .with_label_values(&[&l])
                .inc();
            return;
        }
        let (labels, nf) = (&self.labels, &self.nf);
        self.unknown
            .entry(from)
            .or_insert_with(|| {
                let l = labels.label(from);
                nf.unknown_source_datagrams.with_label_values(&[&l])
            })
            .inc();
    }

    fn malformed(&mut self, from: IpAddr, reason: DecodeReason) {
        if let Some(c) = self.decode_errors.get(&reason) {
            c.inc();
        }
        let key = (from, reason);
        if !self.malformed.contains_key(&key)
            && self.malformed.len() > (SOURCE_LABELS + 1) * DecodeReason::ALL.len()
        {
            let l = self.labels.label(from);
            self.nf
                .malformed_datagrams
                .with_label_values(&[&l, reason.as_str()])
                .inc();
            return;
        }
        let (labels, nf) = (&self.labels, &self.nf);
        self.malformed
            .entry(key)
            .or_insert_with(|| {
                let l = labels.label(from);
                nf.malformed_datagrams
                    .with_label_values(&[&l, reason.as_str()])
            })
            .inc();
    }
}

struct Worker {
    decoder: Decoder,
    inventory: Arc<Inventory>,
    counters: Counters,
    /// `rie_collector_netflow_packets_total{exporter_site}` by site index, resolved once.
    site_packets: HashMap<usize, prometheus::IntCounter>,
    nf: NetflowMetrics,
    /// The commit stage: every flush goes there, and waits for its reply.
    commit: mpsc::Sender<Request>,
    templates: Arc<TemplateCache>,
    agg: Aggregator,
    /// Remote prefixes per site (inventory index) and minute since the last commit.
    talkers: HashMap<usize, Talkers>,
    /// `[netflow] top_talkers`: kept per site and minute at each commit.
    top_talkers: usize,
    flush_every: Duration,
    /// What this thread last added to the shared gauges (pending flowsets, exporters).
    shown: (i64, i64),
}

impl Worker {
    fn run(&mut self, rx: &std::sync::mpsc::Receiver<Datagrams>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut records = Vec::new();
        let mut next_flush = Instant::now() + self.flush_every;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(datagrams) => {
                    for (exporter, data) in datagrams {
                        self.datagram(exporter, &data, &mut records);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if Instant::now() >= next_flush {
                self.flush();
                next_flush = Instant::now() + self.flush_every;
            }
        }
        self.flush();
    }

    fn datagram(&mut self, exporter: IpAddr, data: &[u8], records: &mut Vec<FlowRecord>) {
        // A handle of our own, so that the site's prefixes can be borrowed while `self` is
        // updated below (one atomic increment per datagram).
        let inventory = self.inventory.clone();
        let Some(i) = inventory.site_index_of_exporter(&exporter) else {
            // Not an inventory router: dropped before the decoder sees it (no template of
            // its enters the state), never stored.
            self.counters.unknown_source(exporter);
            return;
        };
        records.clear();
        let d = self.decoder.decode(exporter, data, records);
        let v = Counters::version_index(d.version);
        self.counters.datagrams[v].inc();
        let site = &inventory.sites[i];
        let (packets, nf) = (&mut self.site_packets, &self.nf);
        packets
            .entry(i)
            .or_insert_with(|| nf.packets_by_site.with_label_values(&[site.id.as_str()]))
            .inc();
        for e in &d.errors {
            self.counters.malformed(exporter, *e);
        }
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        self.counters.records[v].inc_by(n);
        self.counters.flow_records.inc_by(n);
        let prefixes = &site.prefixes[..];
        if prefixes.is_empty() {
            // Same rule as the probe, but no prefix to decide with: unknown, no talkers.
            self.counters.no_prefix.inc_by(n);
            self.counters.by_direction[0].inc_by(n);
            for r in records.iter() {
                self.agg.add(r, Direction::Unknown);
            }
            return;
        }
        let top = self.top_talkers;
        let talkers = self.talkers.entry(i).or_insert_with(|| Talkers::new(top));
        // Counted per datagram, not per record.
        let mut by_dir = [0u64; 3];
        for r in records.iter() {
            // Same rule as the probe: source inside → outbound, destination inside → inbound.
            let dir = direction_in(prefixes, r.src.as_ref(), r.dst.as_ref());
            by_dir[dir.as_i64() as usize] += 1;
            self.agg.add(r, dir);
            if matches!(dir, Direction::Inbound | Direction::Outbound) {
                let minute = r.start_ms.div_euclid(60_000) * 60;
                talkers.add(minute, dir, r.src, r.dst, r.bytes, r.packets);
            }
        }
        for (c, k) in self.counters.by_direction.iter().zip(by_dir) {
            if k > 0 {
                c.inc_by(k);
            }
        }
    }

    /// Hands the aggregates and changed templates to the commit stage and waits for the
    /// group that carries them; on failure keeps them for the next attempt.
    fn flush(&mut self) {
        // Each thread adds its own share to the shared gauges.
        let now = (
            self.decoder.pending_flowsets() as i64,
            self.decoder.exporters() as i64,
        );
        self.nf.pending_flowsets.add(now.0 - self.shown.0);
        self.nf.exporters.add(now.1 - self.shown.1);
        self.shown = now;
        let taken = self.agg.take();
        let talkers: Vec<(usize, Vec<TopTalker>)> = self
            .talkers
            .drain()
            .map(|(idx, mut t)| (idx, t.take_top()))
            .collect();
        let dirty = self.templates.take_dirty();
        if taken.is_empty() && dirty.is_empty() && talkers.is_empty() {
            return;
        }
        let (reply, answer) = oneshot::channel();
        let write = NetflowWrite {
            flows: taken
                .iter()
                .filter_map(|(exporter, aggs)| {
                    // Only inventory exporters are summed (see `datagram`), and the
                    // inventory does not change under a running input.
                    let idx = self.inventory.site_index_of_exporter(exporter)?;
                    Some(aggs.iter().map(move |a| (idx, a.clone())))
                })
                .flatten()
                .collect(),
            talkers: talkers
                .iter()
                .flat_map(|(idx, list)| list.iter().map(|t| (*idx, t.clone())))
                .collect(),
            templates: TemplateCache::changes(&dirty),
            reply,
        };
        // Waits while the commit stage is behind: backpressure down to the socket buffer.
        let outcome = match self.commit.blocking_send(Request::Netflow(write)) {
            Ok(()) => answer
                .blocking_recv()
                .unwrap_or_else(|_| Err("the commit stage has stopped".into())),
            Err(_) => Err("the commit stage has stopped".into()),
        };
        match outcome {
            Ok(rows) => {
                self.nf.rows_committed.inc_by(rows);
                self.nf.templates_persisted.set(self.templates.len() as i64);
            }
            Err(e) => {
                tracing::error!(error = %e, "NetFlow flush not committed; kept in memory for the next attempt");
                for (exporter, aggs) in &taken {
                    for a in aggs {
                        self.agg.restore(*exporter, a);
                    }
                }
                // Only the top N of each minute come back: the rest was already "other".
                for (idx, list) in &talkers {
                    let t = self
                        .talkers
                        .entry(*idx)
                        .or_insert_with(|| Talkers::new(self.top_talkers));
                    for tt in list {
                        t.restore(tt);
                    }
                }
                self.templates.restore_dirty(dirty);
            }
        }
    }
}

// --- configuration (`[netflow]` of the collector config file) ---

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetflowConfig {
    /// UDP address for NetFlow v5/v9/IPFIX exported directly by routers; off when absent.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// How often the minute aggregates held in memory are committed to the store: the most a
    /// crash can lose (UDP has no acknowledgement, so exporters never resend).
    #[serde(default = "default_netflow_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Receive buffer asked of the kernel (capped by `net.core.rmem_max`): absorbs bursts
    /// while a commit runs.
    #[serde(default = "default_netflow_rcvbuf")]
    pub receive_buffer_bytes: usize,
    /// Exporters (address × observation domain) whose templates are kept in memory.
    #[serde(default = "default_netflow_exporters")]
    pub max_exporters: usize,
    /// Threads decoding datagrams, each owning a share of the exporters.
    #[serde(default = "default_netflow_threads")]
    pub decode_threads: usize,
    /// Top remote prefixes (IPv4 /24, IPv6 /48) kept per site and minute at each commit, like
    /// the probe's `[meter] top_talkers`; 0 keeps none. Needs the site's `site_prefixes`.
    #[serde(default = "default_netflow_top_talkers")]
    pub top_talkers: usize,
}

impl Default for NetflowConfig {
    fn default() -> Self {
        Self {
            listen: None,
            flush_interval: default_netflow_flush(),
            receive_buffer_bytes: default_netflow_rcvbuf(),
            max_exporters: default_netflow_exporters(),
            decode_threads: default_netflow_threads(),
            top_talkers: default_netflow_top_talkers(),
        }
    }
}

fn default_netflow_top_talkers() -> usize {
    10
}

fn default_netflow_flush() -> Duration {
    Duration::from_secs(5)
}

fn default_netflow_rcvbuf() -> usize {
    16 * 1024 * 1024
}

fn default_netflow_exporters() -> usize {
    20_000
}

fn default_netflow_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

impl NetflowConfig {
    /// Checks values that parse but cannot work; `Err((key, message))` names the key in the
    /// collector's config file and a right value.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_exporters < 1 {
            return Err((
                "netflow.max_exporters",
                "must be at least 1; e.g. 20000 (one per router, with room)".into(),
            ));
        }
        if !(1..=64).contains(&self.decode_threads) {
            return Err((
                "netflow.decode_threads",
                "must be between 1 and 64; e.g. 4".into(),
            ));
        }
        if self.top_talkers > 1000 {
            return Err((
                "netflow.top_talkers",
                "must be at most 1000 (0 keeps none); e.g. 10".into(),
            ));
        }
        if self.flush_interval < Duration::from_millis(100) {
            return Err((
                "netflow.flush_interval",
                "must be at least 100ms; e.g. \"5s\"".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_always_takes_the_same_lane_and_scopes_spread() {
        let ip: IpAddr = "10.0.1.1".parse().unwrap();
        let v9 = |domain: u32| {
            let mut d = vec![0, 9];
            d.extend_from_slice(&[0; 14]);
            d.extend_from_slice(&domain.to_be_bytes());
            d
        };
        assert_eq!(lane_of(ip, &v9(7), 4), lane_of(ip, &v9(7), 4));
        // Same exporter, same domain, other payload: same lane.
        let mut other = v9(7);
        other.extend_from_slice(&[1, 2, 3]);
        assert_eq!(lane_of(ip, &v9(7), 4), lane_of(ip, &other, 4));
        let used: std::collections::HashSet<usize> =
            (0..64).map(|d| lane_of(ip, &v9(d), 4)).collect();
        assert_eq!(
            used.len(),
            4,
            "domains of one exporter spread over the lanes"
        );
        assert_eq!(lane_of(ip, &[], 1), 0);
    }

    #[test]
    fn a_clamped_receive_buffer_names_the_sysctl_to_raise() {
        assert_eq!(clamp_warning(16 << 20, 16 << 20), None);
        assert_eq!(clamp_warning(1 << 20, 4 << 20), None);
        let w = clamp_warning(16_777_216, 4_194_304).unwrap();
        assert!(w.contains("4194304 bytes instead of the 16777216"), "{w}");
        assert!(w.contains("sysctl -w net.core.rmem_max=16777216"), "{w}");
    }

    /// The socket's drop count reaches the receiver: a receive buffer of a few datagrams,
    /// a burst nobody reads, then the datagrams read and one more sent; the count carried
    /// equals what `/proc/net/udp` shows for the socket, and turns into that many drops.
    #[test]
    fn the_kernel_drop_count_comes_with_the_datagrams() {
        let rx = bind("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
        let to = rx.local_addr().unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..200 {
            tx.send_to(&[7u8; 1200], to).unwrap();
        }
        let port = format!(":{:04X}", to.port());
        let proc_drops = || -> u32 {
            std::fs::read_to_string("/proc/net/udp")
                .unwrap()
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f[1].ends_with(&port)
                        .then(|| f[f.len() - 1].parse().unwrap())
                })
                .unwrap()
        };
        let dropped = proc_drops();
        assert!(dropped > 150 && dropped < 200, "{dropped}");
        let mut batch = Batch::new();
        let mut count = DropCount::default();
        let mut received = 0;
        let mut counted = 0;
        while let Ok(n) = batch.recv(&rx, false) {
            received += n;
            counted += count.delta(batch.drops);
        }
        // Queued before the drops: they carry no count.
        assert_eq!(received as u32, 200 - dropped);
        assert_eq!(counted, 0);
        tx.send_to(&[8u8; 100], to).unwrap();
        assert_eq!(batch.recv(&rx, true).unwrap(), 1);
        assert_eq!(batch.drops, Some(dropped));
        assert_eq!(count.delta(batch.drops), u64::from(dropped));
        // Seen again: counted once.
        tx.send_to(&[8u8; 100], to).unwrap();
        assert_eq!(batch.recv(&rx, true).unwrap(), 1);
        assert_eq!(count.delta(batch.drops), 0);
    }

    /// One `recvmmsg` call returns the queued datagrams of several senders, in order, with
    /// their sources, an empty datagram included; with nothing queued, a non-waiting call
    /// returns EAGAIN and a waiting one times out the same way.
    #[test]
    fn a_batch_reads_queued_datagrams_in_order_with_their_sources() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut sent = Vec::new();
        for i in 0..40u8 {
            let (s, data) = if i % 3 == 0 {
                (&b, vec![])
            } else {
                (&a, vec![i; usize::from(i) * 30])
            };
            s.send_to(&data, to).unwrap();
            sent.push((s.local_addr().unwrap(), data));
        }
        let mut batch = Batch::new();
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < sent.len() {
            let n = batch.recv(&rx, true).unwrap();
            assert!(n <= BATCH);
            got.extend(batch.datagrams().map(|(f, d)| (f, d.to_vec())));
            calls += 1;
        }
        assert_eq!(got, sent);
        // 40 datagrams already queued: two calls (32 + 8), not 40.
        assert_eq!(calls, 2);
        assert_eq!(
            batch.recv(&rx, false).unwrap_err(),
            nix::errno::Errno::EAGAIN
        );
        assert_eq!(
            batch.recv(&rx, true).unwrap_err(),
            nix::errno::Errno::EAGAIN
        );
    }
}
