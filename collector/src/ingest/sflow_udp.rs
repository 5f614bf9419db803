//! sFlow v5 sent by switches and routers (`--sflow-listen`, `[sflow]`, UDP 6343 by default):
//! one UDP socket read by one thread, which decodes each datagram (`rie_flow::sflow`, cheap:
//! no templates), attributes it to a site, sums flow samples into the same minute rows as
//! NetFlow and probe batches (so the three sum in one table), and hands them to the commit
//! stage every `flush_interval` as a [`NetflowWrite`] (no templates), exactly as a NetFlow
//! lane does. Counter samples become per-link metrics.
//!
//! Owns: the sFlow socket, attribution of agents to sites and of ifIndexes to links, the
//! sFlow metrics (declared here, registered in the collector's registry at start). May import
//! `commit` (the requests it sends), `inventory`, `metrics` and `rie_flow`.
//!
//! Design constraints:
//! - **Attribution** is by the datagram's agent address, else by its UDP source address,
//!   looked up in the inventory's `netflow_exporters` (a router's export addresses, whatever
//!   the protocol): the agent address is what identifies an sFlow agent behind a relay or
//!   NAT, the source address covers agents that announce a loopback or private agent id.
//! - **Unknown sources are dropped**, unlike NetFlow's `unknown` bucket: a datagram whose
//!   agent and source are in no site is counted in
//!   `rie_collector_sflow_unknown_source_datagrams_total{source}` and never stored. The
//!   `source` label is the address for the first [`SOURCE_LABELS`](super::source_labels::SOURCE_LABELS) distinct addresses,
//!   then `other`: a spoofing flood cannot grow the label set.
//! - **Bad input is isolated**: a malformed datagram (or the part of it that is) is counted in
//!   `rie_collector_sflow_decode_errors_total{site, reason}` (site of the agent, or
//!   `unknown`; reasons from `rie_flow::sflow::DecodeReason`) and the rest of it, and every
//!   other agent's data, goes on.
//! - **Acknowledgement** is as for NetFlow: none to the agent (UDP); what is summed counts
//!   once committed; a graceful stop commits first, a crash loses at most `flush_interval`.
//! - **When the commit stage is behind** the thread waits for its reply (it blocks, it does
//!   not drop): the socket buffer absorbs the pause, and what overflows it is the kernel's
//!   count (`RcvbufErrors` in `/proc/net/snmp`). One thread is enough: an sFlow datagram
//!   carries a few samples to decode, no templates, and the agents' rates are bounded by
//!   their sampling.
//! - **Counter samples** (generic interface counters) of an ifIndex that the inventory maps to
//!   a link (`links.csv` `sflow_ifindex`) feed `rie_collector_sflow_link_*{site, link}`:
//!   octets, errors and discards per direction (counters, deltas already corrected for 32-bit
//!   wraps and agent restarts), utilisation over the last counter interval and the speed
//!   (gauges). Unmapped interfaces are counted in
//!   `rie_collector_sflow_unmapped_counter_samples_total`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{GaugeVec, IntCounter, IntCounterVec, Opts, Registry};
use rie_flow::aggregate::{direction_in, Talkers};
use rie_flow::netflow::{Aggregator, FlowRecord};
use rie_flow::sflow::{CounterDelta, DecodeReason, Decoder, DecoderConfig};
use rie_proto::{Direction, TopTalker};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::source_labels::SourceLabels;
use crate::commit::{NetflowWrite, Request};
use crate::inventory::Inventory;
use crate::metrics::Metrics;

/// The `site` label of datagrams from agents in no site (counted, then dropped).
const UNKNOWN_AGENT: &str = "unknown";

/// The port sFlow agents send to by default (IANA).
pub const DEFAULT_PORT: u16 = 6343;

/// Why the sFlow input could not start.
#[derive(Debug, thiserror::Error)]
pub enum SflowStartError {
    #[error(
        "cannot listen on {addr} (sflow.listen): {source}; free the port or set another address"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the sFlow thread: {0}")]
    Thread(std::io::Error),
}

/// A started sFlow input.
pub struct SflowInput {
    pub addr: SocketAddr,
    pub thread: std::thread::JoinHandle<()>,
}

/// Metrics of the sFlow input, registered in the collector's registry by
/// [`SflowMetrics::register`] when the input starts.
#[derive(Clone)]
pub struct SflowMetrics {
    /// Datagrams received, by the site of their agent (`unknown`: dropped).
    pub datagrams: IntCounterVec,
    /// Datagrams or parts of them that could not be used, by agent site and reason.
    pub decode_errors: IntCounterVec,
    /// Datagrams from sources in no site, by source address (bounded, then `other`).
    pub unknown_source: IntCounterVec,
    /// Flow samples turned into flow records.
    pub flow_samples: IntCounter,
    /// Flow samples of non-IP frames (ARP, LLDP...), left out.
    pub non_ip_samples: IntCounter,
    /// Samples missing from the agents' sample sequences, by site.
    pub lost_samples: IntCounterVec,
    /// Samples the agents report having dropped themselves, by site.
    pub agent_drops: IntCounterVec,
    /// Frames the agents saw on sampled sources (sample pool deltas), by site.
    pub pool_frames: IntCounterVec,
    /// Datagrams missing from the agents' datagram sequences, by site.
    pub lost_datagrams: IntCounterVec,
    /// Agent restarts seen (sequence or uptime backwards), by site.
    pub agent_restarts: IntCounterVec,
    /// Counter samples read.
    pub counter_samples: IntCounter,
    /// Interface counter deltas of an ifIndex no link of the site declares.
    pub unmapped_counter_samples: IntCounter,
    /// Octets / errors / discards per site link and direction (`in`, `out`), from counter
    /// samples.
    pub link_octets: IntCounterVec,
    pub link_errors: IntCounterVec,
    pub link_discards: IntCounterVec,
    /// Utilisation of a site link over the last counter interval, per direction (0..1).
    pub link_utilisation: GaugeVec,
    /// Interface speed of a site link as its agent reports it, bit/s.
    pub link_speed: GaugeVec,
    /// Minute rows committed to the store.
    pub rows_committed: IntCounter,
}

impl SflowMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Panics
    /// When called twice on one registry (names must be unique): the collector calls it once.
    pub fn register(registry: &Registry) -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let one = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let m = Self {
            datagrams: vec(
                "rie_collector_sflow_datagrams_total",
                "sFlow datagrams received, by the site of their agent (unknown: dropped).",
                &["site"],
            ),
            decode_errors: vec(
                "rie_collector_sflow_decode_errors_total",
                "sFlow datagrams or samples that could not be used, by agent site and reason.",
                &["site", "reason"],
            ),
            unknown_source: vec(
                "rie_collector_sflow_unknown_source_datagrams_total",
                "sFlow datagrams from an agent and source in no site: dropped (source label bounded, then other).",
                &["source"],
            ),
            flow_samples: one(
                "rie_collector_sflow_flow_samples_total",
                "sFlow flow samples counted (each scaled by its sampling rate).",
            ),
            non_ip_samples: one(
                "rie_collector_sflow_non_ip_samples_total",
                "sFlow flow samples of non-IP frames (ARP, LLDP...), left out.",
            ),
            lost_samples: vec(
                "rie_collector_sflow_lost_samples_total",
                "sFlow samples missing from the agents' sample sequences, by site.",
                &["site"],
            ),
            agent_drops: vec(
                "rie_collector_sflow_agent_drops_total",
                "sFlow samples the agents report having dropped, by site.",
                &["site"],
            ),
            pool_frames: vec(
                "rie_collector_sflow_pool_frames_total",
                "Frames the sFlow agents saw on sampled sources (sample pool deltas), by site.",
                &["site"],
            ),
            lost_datagrams: vec(
                "rie_collector_sflow_lost_datagrams_total",
                "sFlow datagrams missing from the agents' sequences, by site.",
                &["site"],
            ),
            agent_restarts: vec(
                "rie_collector_sflow_agent_restarts_total",
                "sFlow agent restarts seen (sequence or uptime backwards), by site.",
                &["site"],
            ),
            counter_samples: one(
                "rie_collector_sflow_counter_samples_total",
                "sFlow counter samples read.",
            ),
            unmapped_counter_samples: one(
                "rie_collector_sflow_unmapped_counter_samples_total",
                "sFlow interface counters of an ifIndex no link of the site declares (sflow_ifindex).",
            ),
            link_octets: vec(
                "rie_collector_sflow_link_octets_total",
                "Octets through a site link per direction, from sFlow interface counters.",
                &["site", "link", "direction"],
            ),
            link_errors: vec(
                "rie_collector_sflow_link_errors_total",
                "Errors on a site link per direction, from sFlow interface counters.",
                &["site", "link", "direction"],
            ),
            link_discards: vec(
                "rie_collector_sflow_link_discards_total",
                "Discards on a site link per direction, from sFlow interface counters.",
                &["site", "link", "direction"],
            ),
            link_utilisation: gauge(
                "rie_collector_sflow_link_utilisation_ratio",
                "Utilisation of a site link over the last sFlow counter interval (0..1).",
                &["site", "link", "direction"],
            ),
            link_speed: gauge(
                "rie_collector_sflow_link_speed_bps",
                "Interface speed of a site link as its sFlow agent reports it, bit/s.",
                &["site", "link"],
            ),
            rows_committed: one(
                "rie_collector_sflow_rows_committed_total",
                "Minute rows of sFlow traffic committed to the store.",
            ),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 18] = [
            Box::new(m.datagrams.clone()),
            Box::new(m.decode_errors.clone()),
            Box::new(m.unknown_source.clone()),
            Box::new(m.flow_samples.clone()),
            Box::new(m.non_ip_samples.clone()),
            Box::new(m.lost_samples.clone()),
            Box::new(m.agent_drops.clone()),
            Box::new(m.pool_frames.clone()),
            Box::new(m.lost_datagrams.clone()),
            Box::new(m.agent_restarts.clone()),
            Box::new(m.counter_samples.clone()),
            Box::new(m.unmapped_counter_samples.clone()),
            Box::new(m.link_octets.clone()),
            Box::new(m.link_errors.clone()),
            Box::new(m.link_discards.clone()),
            Box::new(m.link_utilisation.clone()),
            Box::new(m.link_speed.clone()),
            Box::new(m.rows_committed.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        for r in DecodeReason::ALL {
            m.decode_errors
                .with_label_values(&[UNKNOWN_AGENT, r.as_str()]);
        }
        m
    }
}

/// Binds `listen` (receive buffer `cfg.receive_buffer_bytes`) and starts the input thread; it
/// stops, after a last commit, when `shutdown` is cancelled.
///
/// # Errors
/// [`SflowStartError`] for the port or the thread.
pub fn start(
    cfg: &SflowConfig,
    listen: SocketAddr,
    commit: mpsc::Sender<Request>,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<SflowInput, SflowStartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| SflowStartError::Bind {
        addr: listen,
        source,
    };
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )
    .map_err(err)?;
    if let Err(e) = socket.set_recv_buffer_size(cfg.receive_buffer_bytes) {
        tracing::warn!(error = %e, "cannot size the sFlow receive buffer");
    }
    socket.bind(&listen.into()).map_err(err)?;
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(err)?;
    let addr = socket.local_addr().map_err(err)?;
    let sf = SflowMetrics::register(&metrics.registry);
    let mut worker = Worker {
        decoder: Decoder::new(&DecoderConfig {
            max_agents: cfg.max_agents,
            ..DecoderConfig::default()
        }),
        inventory,
        metrics,
        sf,
        commit,
        agg: Aggregator::default(),
        talkers: HashMap::new(),
        top_talkers: cfg.top_talkers,
        sources: SourceLabels::default(),
    };
    let flush_every = cfg.flush_interval;
    tracing::info!(sflow = %addr, "sFlow input listening");
    let thread = std::thread::Builder::new()
        .name("sflow".into())
        .spawn(move || worker.run(&socket, flush_every, &shutdown))
        .map_err(SflowStartError::Thread)?;
    Ok(SflowInput { addr, thread })
}

struct Worker {
    decoder: Decoder,
    inventory: Arc<Inventory>,
    metrics: Arc<Metrics>,
    sf: SflowMetrics,
    commit: mpsc::Sender<Request>,
    agg: Aggregator,
    /// Remote prefixes per site (inventory index) and minute since the last commit.
    talkers: HashMap<usize, Talkers>,
    top_talkers: usize,
    /// Unknown source addresses that have a label value of their own.
    sources: SourceLabels,
}

impl Worker {
    fn run(&mut self, socket: &UdpSocket, flush_every: Duration, shutdown: &CancellationToken) {
        let mut buf = vec![0u8; 65_536];
        let (mut flows, mut counters) = (Vec::new(), Vec::new());
        let mut next_flush = Instant::now() + flush_every;
        let mut stopping = false;
        loop {
            if shutdown.is_cancelled() && !stopping {
                // Take what the kernel already holds, without waiting, then stop.
                stopping = true;
                let _ = socket.set_nonblocking(true);
            }
            match socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let now_ms = rie_common::now_ms();
                    self.datagram(
                        from.ip().to_canonical(),
                        &buf[..n],
                        now_ms,
                        &mut flows,
                        &mut counters,
                    );
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stopping {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "sFlow socket error");
                    if stopping {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if Instant::now() >= next_flush {
                self.flush();
                next_flush = Instant::now() + flush_every;
            }
        }
        self.flush();
        tracing::info!("sFlow input stopped, aggregates committed");
    }

    fn datagram(
        &mut self,
        source: IpAddr,
        data: &[u8],
        now_ms: i64,
        flows: &mut Vec<FlowRecord>,
        counters: &mut Vec<CounterDelta>,
    ) {
        flows.clear();
        counters.clear();
        let d = self.decoder.decode(data, now_ms, flows, counters);
        let inventory = self.inventory.clone();
        // The address the inventory knows this agent by: its agent address, else its source.
        let known = d
            .agent
            .map(|a| a.to_canonical())
            .filter(|a| inventory.site_index_of_exporter(a).is_some())
            .or_else(|| inventory.site_index_of_exporter(&source).map(|_| source));
        let idx = known.and_then(|a| inventory.site_index_of_exporter(&a));
        let site = idx.map_or(UNKNOWN_AGENT, |i| inventory.sites[i].id.as_str());
        self.sf.datagrams.with_label_values(&[site]).inc();
        for e in &d.errors {
            self.sf
                .decode_errors
                .with_label_values(&[site, e.as_str()])
                .inc();
        }
        let Some(idx) = idx else {
            let label = self.sources.label(source);
            self.sf.unknown_source.with_label_values(&[&label]).inc();
            return;
        };
        for (metric, n) in [
            (&self.sf.lost_samples, d.lost_samples),
            (&self.sf.agent_drops, d.agent_drops),
            (&self.sf.pool_frames, d.pool_frames),
            (&self.sf.lost_datagrams, d.lost_datagrams),
            (&self.sf.agent_restarts, u64::from(d.restarted)),
        ] {
            if n > 0 {
                metric.with_label_values(&[site]).inc_by(n);
            }
        }
        self.sf.flow_samples.inc_by(d.flow_samples);
        self.sf.non_ip_samples.inc_by(d.non_ip_samples);
        self.sf.counter_samples.inc_by(d.counter_samples);
        self.metrics
            .flow_records
            .with_label_values(&["sflow"])
            .inc_by(flows.len() as u64);
        let prefixes = &inventory.sites[idx].prefixes[..];
        for r in flows.iter_mut() {
            // Stored under the address the inventory knows (the site's exporter column).
            if let Some(a) = known {
                r.exporter = a;
            }
            let dir = if prefixes.is_empty() {
                Direction::Unknown
            } else {
                direction_in(prefixes, r.src.as_ref(), r.dst.as_ref())
            };
            self.agg.add(r, dir);
            if matches!(dir, Direction::Inbound | Direction::Outbound) {
                let minute = r.start_ms.div_euclid(60_000) * 60;
                self.talkers
                    .entry(idx)
                    .or_insert_with(|| Talkers::new(self.top_talkers))
                    .add(minute, dir, r.src, r.dst, r.bytes, r.packets);
            }
        }
        for c in counters.iter() {
            self.counters(idx, site, c);
        }
    }

    /// One interface's counter delta, onto its link's metrics.
    fn counters(&self, idx: usize, site: &str, c: &CounterDelta) {
        let Some(link) = self.inventory.link_of_ifindex(idx, c.if_index) else {
            self.sf.unmapped_counter_samples.inc();
            return;
        };
        let link = link.id.as_str();
        for (dir, octets, errors, discards) in [
            ("in", c.in_octets, c.in_errors, c.in_discards),
            ("out", c.out_octets, c.out_errors, c.out_discards),
        ] {
            let labels = [site, link, dir];
            self.sf
                .link_octets
                .with_label_values(&labels)
                .inc_by(octets);
            self.sf
                .link_errors
                .with_label_values(&labels)
                .inc_by(errors);
            self.sf
                .link_discards
                .with_label_values(&labels)
                .inc_by(discards);
            if let Some(u) = utilisation(octets, c.if_speed, c.interval_ms) {
                self.sf.link_utilisation.with_label_values(&labels).set(u);
            }
        }
        self.sf
            .link_speed
            .with_label_values(&[site, link])
            .set(c.if_speed as f64);
    }

    /// Hands the sums to the commit stage and waits for the group; on failure keeps them.
    fn flush(&mut self) {
        let taken = self.agg.take();
        let talkers: Vec<(usize, Vec<TopTalker>)> = self
            .talkers
            .drain()
            .map(|(idx, mut t)| (idx, t.take_top()))
            .collect();
        if taken.is_empty() && talkers.is_empty() {
            return;
        }
        let (reply, answer) = oneshot::channel();
        let inventory = self.inventory.clone();
        let write = NetflowWrite {
            flows: taken
                .iter()
                .filter_map(|(agent, aggs)| {
                    // Every agent summed here was attributed to a site (the others were
                    // dropped); its agent address or its source is a site's exporter.
                    let idx = inventory.site_index_of_exporter(agent)?;
                    Some(aggs.iter().map(move |a| (idx, a.clone())))
                })
                .flatten()
                .collect(),
            talkers: talkers
                .iter()
                .flat_map(|(idx, list)| list.iter().map(|t| (*idx, t.clone())))
                .collect(),
            templates: Vec::new(),
            reply,
        };
        let outcome = match self.commit.blocking_send(Request::Netflow(write)) {
            Ok(()) => answer
                .blocking_recv()
                .unwrap_or_else(|_| Err("the commit stage has stopped".into())),
            Err(_) => Err("the commit stage has stopped".into()),
        };
        match outcome {
            Ok(rows) => self.sf.rows_committed.inc_by(rows),
            Err(e) => {
                tracing::error!(error = %e, "sFlow flush not committed; kept in memory for the next attempt");
                for (agent, aggs) in &taken {
                    for a in aggs {
                        self.agg.restore(*agent, a);
                    }
                }
                for (idx, list) in &talkers {
                    let t = self
                        .talkers
                        .entry(*idx)
                        .or_insert_with(|| Talkers::new(self.top_talkers));
                    for tt in list {
                        t.restore(tt);
                    }
                }
            }
        }
    }
}

/// Share of a link's capacity used: `octets` over `interval_ms` at `speed` bit/s; `None`
/// when the speed or the interval is unknown.
fn utilisation(octets: u64, speed: u64, interval_ms: u64) -> Option<f64> {
    (speed > 0 && interval_ms > 0)
        .then(|| (octets as f64 * 8.0 * 1000.0) / (speed as f64 * interval_ms as f64))
}

// --- configuration (`[sflow]` of the collector config file) ---

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowConfig {
    /// UDP address for sFlow v5 agents; off when absent. An address without a port listens on
    /// 6343 (e.g. `"0.0.0.0"`).
    #[serde(default, deserialize_with = "listen_opt")]
    pub listen: Option<SocketAddr>,
    /// How often the minute aggregates are committed (the most a crash loses).
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Receive buffer asked of the kernel (capped by `net.core.rmem_max`).
    #[serde(default = "default_rcvbuf")]
    pub receive_buffer_bytes: usize,
    /// Agents (address × sub-agent) whose sequences and counter baselines are kept.
    #[serde(default = "default_agents")]
    pub max_agents: usize,
    /// Top remote prefixes kept per site and minute (needs `site_prefixes`); 0 keeps none.
    #[serde(default = "default_top_talkers")]
    pub top_talkers: usize,
}

impl Default for SflowConfig {
    fn default() -> Self {
        Self {
            listen: None,
            flush_interval: default_flush(),
            receive_buffer_bytes: default_rcvbuf(),
            max_agents: default_agents(),
            top_talkers: default_top_talkers(),
        }
    }
}

fn default_flush() -> Duration {
    Duration::from_secs(5)
}
fn default_rcvbuf() -> usize {
    8 * 1024 * 1024
}
fn default_agents() -> usize {
    50_000
}
fn default_top_talkers() -> usize {
    10
}

/// `ADDR:PORT`, or an address alone on the default port 6343 (`0.0.0.0`, `::`).
///
/// # Errors
/// A message with an example of a right value.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        })
        .map_err(|_| {
            format!(
                "{s:?} is not an address; write e.g. \"0.0.0.0\" (port 6343) or \"0.0.0.0:6343\""
            )
        })
}

fn listen_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_listen(&s).map(Some).map_err(serde::de::Error::custom)
}

impl SflowConfig {
    /// Checks values that parse but cannot work; `Err((key, message))`.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_agents < 1 {
            return Err((
                "sflow.max_agents",
                "must be at least 1; e.g. 50000 (routers and switches, with room)".into(),
            ));
        }
        if self.top_talkers > 1000 {
            return Err((
                "sflow.top_talkers",
                "must be at most 1000 (0 keeps none); e.g. 10".into(),
            ));
        }
        if self.flush_interval < Duration::from_millis(100) {
            return Err((
                "sflow.flush_interval",
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
    fn an_address_alone_listens_on_the_sflow_port() {
        assert_eq!(
            parse_listen("0.0.0.0").unwrap(),
            "0.0.0.0:6343".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:9000").unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert!(parse_listen("router")
            .unwrap_err()
            .contains("\"0.0.0.0:6343\""));
        let cfg: SflowConfig = toml::from_str("listen = \"127.0.0.1\"").unwrap();
        assert_eq!(cfg.listen, Some("127.0.0.1:6343".parse().unwrap()));
    }

    #[test]
    fn utilisation_is_bits_over_capacity_and_interval() {
        // 375 MB in 30 s on 1 Gbit/s: 10 %.
        assert_eq!(utilisation(375_000_000, 1_000_000_000, 30_000), Some(0.1));
        assert_eq!(utilisation(1, 0, 30_000), None);
        assert_eq!(utilisation(1, 1, 0), None);
    }
}
