//! The collector's own metrics, served at `/metrics`. All names live here, registered in one
//! registry; label values come from bounded sets (reasons, results), never from input text.
//!
//! Owns the one Prometheus registry and the collector-wide series; imports no other module of
//! the crate (a component's own series, like the InfluxDB sink's, are declared beside it and
//! registered here at start-up).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Open, authenticated probe connections.
    pub probe_connections: IntGauge,
    /// Probe sessions opened and closed (after authentication): what the periodic connection
    /// summary in the log reports instead of one line per probe.
    pub probe_sessions: IntCounterVec,
    /// Batches stored (first delivery only).
    pub probe_batches: IntCounter,
    /// Batches received again after being stored (acknowledged again, not counted twice).
    pub duplicate_batches: IntCounter,
    /// Batches whose sequence skipped ahead (the probe dropped data, e.g. spool budget).
    pub sequence_gaps: IntCounter,
    pub auth_failures: IntCounterVec,
    pub frame_errors: IntCounterVec,
    /// Records inside otherwise valid batches that were unusable and left out.
    pub invalid_records: IntCounterVec,
    pub heartbeats: IntCounter,
    /// Check plans sent to probes.
    pub plans_sent: IntCounter,
    /// Probes' answers to check plans, by answer (`applied`, `refused`).
    pub plan_answers: IntCounterVec,
    pub store_commits: IntCounter,
    pub store_errors: IntCounter,
    /// Groups refused because another writer had already stored their stream marks (store
    /// contract point 8): nothing stored, nothing acknowledged, the probes resend.
    pub store_stale_mark_conflicts: IntCounter,
    pub store_commit_seconds: Histogram,
    pub store_batches_per_commit: Histogram,
    /// 1 while the store answers (last write and last health check succeeded), 0 during an
    /// outage; with the start of the outage and its cause for `/healthz` ([`StoreHealth`]).
    pub store_up: IntGauge,
    /// Unix time (s) at which the current store outage began; 0 while the store is up.
    pub store_down_since: IntGauge,
    pub store_health: StoreHealth,
    pub sites: IntGaugeVec,
    /// Flow records taken into the rollups, by source: `probe` (the aggregates in probe batches,
    /// capture or relayed NetFlow) and `netflow` (records exported directly to the collector).
    pub flow_records: IntCounterVec,
    /// 1 on the collector that runs the duties that run once (`duties`), 0 on the others.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: names are static and unique, which is all registration checks.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            leader: IntGauge::new(
                "rie_collector_leader",
                "1 when this collector runs the duties that run once (silence episodes, compaction): always with SQLite, the holder of the advisory lock with PostgreSQL.",
            )
            .expect("valid metric"),
            probe_connections: IntGauge::new(
                "rie_collector_probe_connections",
                "Open, authenticated probe connections.",
            )
            .expect("valid metric"),
            probe_sessions: IntCounterVec::new(
                Opts::new(
                    "rie_collector_probe_sessions_total",
                    "Authenticated probe sessions, by event: opened, closed.",
                ),
                &["event"],
            )
            .expect("valid metric"),
            probe_batches: IntCounter::new(
                "rie_collector_probe_batches_total",
                "Probe batches durably stored (first delivery).",
            )
            .expect("valid metric"),
            duplicate_batches: IntCounter::new(
                "rie_collector_duplicate_batches_total",
                "Probe batches received again after being stored; acknowledged, not counted twice.",
            )
            .expect("valid metric"),
            sequence_gaps: IntCounter::new(
                "rie_collector_sequence_gaps_total",
                "Batches whose sequence number skipped ahead of the last stored one.",
            )
            .expect("valid metric"),
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "rie_collector_auth_failures_total",
                    "Probe hellos refused, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            frame_errors: IntCounterVec::new(
                Opts::new(
                    "rie_collector_frame_errors_total",
                    "Probe connections closed on a bad frame, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            invalid_records: IntCounterVec::new(
                Opts::new(
                    "rie_collector_invalid_records_total",
                    "Records left out of stored batches because they were unusable, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            heartbeats: IntCounter::new(
                "rie_collector_heartbeats_total",
                "Probe heartbeats received.",
            )
            .expect("valid metric"),
            plans_sent: IntCounter::new(
                "rie_collector_plans_sent_total",
                "Check plans sent to probes (after the welcome, and at each change of a site's plan).",
            )
            .expect("valid metric"),
            plan_answers: IntCounterVec::new(
                Opts::new(
                    "rie_collector_plan_answers_total",
                    "Probes' answers to check plans, by answer.",
                ),
                &["answer"],
            )
            .expect("valid metric"),
            store_commits: IntCounter::new(
                "rie_collector_store_commits_total",
                "Group commits of the embedded store.",
            )
            .expect("valid metric"),
            store_errors: IntCounter::new(
                "rie_collector_store_errors_total",
                "Failed group commits (their batches were not acknowledged).",
            )
            .expect("valid metric"),
            store_stale_mark_conflicts: IntCounter::new(
                "rie_collector_store_stale_mark_conflicts_total",
                "Group commits refused because another writer had stored their stream marks.",
            )
            .expect("valid metric"),
            store_commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "rie_collector_store_commit_seconds",
                    "Duration of a group commit, fsync included.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .expect("valid metric"),
            store_batches_per_commit: Histogram::with_opts(
                HistogramOpts::new(
                    "rie_collector_store_batches_per_commit",
                    "Batches made durable by one group commit.",
                )
                .buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                ]),
            )
            .expect("valid metric"),
            store_up: IntGauge::new(
                "rie_collector_store_up",
                "1 while the store accepts writes and answers health checks, 0 during an outage.",
            )
            .expect("valid metric"),
            store_down_since: IntGauge::new(
                "rie_collector_store_down_since_seconds",
                "Unix time at which the current store outage began (0: the store is up).",
            )
            .expect("valid metric"),
            store_health: StoreHealth::default(),
            sites: IntGaugeVec::new(
                Opts::new("rie_collector_sites", "Sites by current state."),
                &["state"],
            )
            .expect("valid metric"),
            flow_records: IntCounterVec::new(
                Opts::new(
                    "rie_collector_flow_records_total",
                    "Flow records taken into the rollups, by source (probe aggregates, direct NetFlow records).",
                ),
                &["source"],
            )
            .expect("valid metric"),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 22] = [
            Box::new(m.leader.clone()),
            Box::new(m.probe_connections.clone()),
            Box::new(m.probe_sessions.clone()),
            Box::new(m.probe_batches.clone()),
            Box::new(m.duplicate_batches.clone()),
            Box::new(m.sequence_gaps.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.frame_errors.clone()),
            Box::new(m.invalid_records.clone()),
            Box::new(m.heartbeats.clone()),
            Box::new(m.plans_sent.clone()),
            Box::new(m.plan_answers.clone()),
            Box::new(m.store_commits.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.store_stale_mark_conflicts.clone()),
            Box::new(m.store_commit_seconds.clone()),
            Box::new(m.store_batches_per_commit.clone()),
            Box::new(m.store_up.clone()),
            Box::new(m.store_down_since.clone()),
            Box::new(m.sites.clone()),
            Box::new(m.flow_records.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        // Reasons are pre-created so that dashboards and alerts see 0 rather than no series.
        for r in [
            "bad_token",
            "not_enrolled",
            "unknown_site",
            "unsupported_version",
            "no_hello",
            "rate_limited",
        ] {
            m.auth_failures.with_label_values(&[r]);
        }
        for s in ["probe", "netflow"] {
            m.flow_records.with_label_values(&[s]);
        }
        for r in ["oversized", "malformed", "unexpected", "io", "tls"] {
            m.frame_errors.with_label_values(&[r]);
        }
        m.store_up.set(1);
        m
    }

    /// A store write (`by_write`: the commit stage) or health check failed with `reason` at
    /// `now_ms`: the store is down, since the first failure of this outage.
    pub fn store_failed(&self, by_write: bool, reason: String, now_ms: i64) {
        let mut down = self.store_health.lock();
        let since_ms = down.as_ref().map_or(now_ms, |d| d.since_ms);
        *down = Some(StoreDown {
            since_ms,
            reason,
            by_write: by_write || down.as_ref().is_some_and(|d| d.by_write),
        });
        self.store_up.set(0);
        self.store_down_since.set(since_ms.div_euclid(1000));
    }

    /// A store write (`by_write`) or health check succeeded. A health check does not end an
    /// outage that a failed write began: only the next successful write does (the probes'
    /// redelivery brings one).
    pub fn store_ok(&self, by_write: bool) {
        let mut down = self.store_health.lock();
        if down.as_ref().is_some_and(|d| by_write || !d.by_write) {
            *down = None;
            self.store_up.set(1);
            self.store_down_since.set(0);
        }
    }

    /// Text exposition of everything registered.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Metrics of the NetFlow/IPFIX input (`ingest::netflow_udp`), registered in the collector's
/// registry by [`NetflowMetrics::register`] when the input starts.
#[derive(Clone)]
pub struct NetflowMetrics {
    /// Datagrams received, by NetFlow version (`5`, `9`, `10` for IPFIX, `other`).
    pub datagrams: IntCounterVec,
    /// Datagrams or parts of datagrams that could not be used, by reason
    /// (`rie_flow::netflow::DecodeReason`).
    pub decode_errors: IntCounterVec,
    /// Flow records decoded, by version.
    pub records: IntCounterVec,
    /// NetFlow export packets (datagrams) received, by the site of their exporter
    /// (`unknown` for exporters no site declares): which routers export, and how much.
    pub packets_by_site: IntCounterVec,
    /// Datagrams from addresses in no site's `netflow_exporters`, by source address (the
    /// first [`crate::ingest::source_labels::SOURCE_LABELS`] addresses seen, then `other`):
    /// dropped before decoding, never stored.
    pub unknown_source_datagrams: IntCounterVec,
    /// Datagrams of inventory exporters that could not be used in full, by exporter address
    /// (bounded like `unknown_source_datagrams`) and reason (`DecodeReason`): the NOC sees
    /// which router sends what; the rest of the datagram, and other exporters, go on.
    pub malformed_datagrams: IntCounterVec,
    /// Datagrams the kernel dropped on the NetFlow socket (receive buffer full), read from
    /// the socket itself (`SO_RXQ_OVFL`): loss at the collector's door, not in the network.
    pub kernel_drops: IntCounter,
    /// Flowsets held until their template arrives, over all exporters.
    pub pending_flowsets: IntGauge,
    /// Exporter scopes (address × domain) whose templates are in memory.
    pub exporters: IntGauge,
    /// Templates kept in the store (survive a restart).
    pub templates_persisted: IntGauge,
    /// Templates read from the shared store on a miss: announced to another collector
    /// sharing the database (or before this one started), decoded here at once.
    pub templates_from_store: IntCounter,
    /// Minute rows committed to the store.
    pub rows_committed: IntCounter,
    /// Flow records by the direction decided against their site's `site_prefixes`
    /// (`inbound`, `outbound`, `unknown`).
    pub records_by_direction: IntCounterVec,
    /// Flow records of inventory sites that have no `site_prefixes`: their direction is
    /// `unknown` for want of prefixes (add them to the inventory), not because of the traffic.
    pub no_prefix_records: IntCounter,
}

impl NetflowMetrics {
    /// Creates the metrics and registers them in `registry`.
    ///
    /// # Panics
    /// When called twice on one registry (names must be unique): the collector calls it once.
    pub fn register(registry: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        let m = Self {
            datagrams: counter_vec(
                "rie_collector_netflow_datagrams_total",
                "NetFlow/IPFIX datagrams received, by version (5, 9, 10 = IPFIX, other).",
                "version",
            ),
            decode_errors: counter_vec(
                "rie_collector_decode_errors_total",
                "NetFlow/IPFIX datagrams or flowsets that could not be used, by reason.",
                "reason",
            ),
            records: counter_vec(
                "rie_collector_netflow_records_total",
                "NetFlow/IPFIX flow records decoded, by version.",
                "version",
            ),
            packets_by_site: counter_vec(
                "rie_collector_netflow_packets_total",
                "NetFlow/IPFIX export packets received, by the site of the exporter (unknown: none).",
                "exporter_site",
            ),
            unknown_source_datagrams: counter_vec(
                "rie_collector_netflow_unknown_source_datagrams_total",
                "NetFlow/IPFIX datagrams from addresses of no inventory site, dropped, by source (first 64, then other).",
                "source",
            ),
            malformed_datagrams: IntCounterVec::new(
                Opts::new(
                    "rie_collector_netflow_malformed_datagrams_total",
                    "NetFlow/IPFIX datagrams of inventory exporters not usable in full, by exporter (first 64, then other) and reason.",
                ),
                &["exporter", "reason"],
            )
            .expect("valid metric"),
            kernel_drops: IntCounter::new(
                "rie_collector_netflow_kernel_drops_total",
                "NetFlow/IPFIX datagrams dropped by the kernel on the collector's socket (receive buffer full).",
            )
            .expect("valid metric"),
            pending_flowsets: IntGauge::new(
                "rie_collector_netflow_pending_flowsets",
                "NetFlow v9/IPFIX flowsets held until their template arrives.",
            )
            .expect("valid metric"),
            exporters: IntGauge::new(
                "rie_collector_netflow_exporters",
                "Exporter scopes (address x observation domain) with templates in memory.",
            )
            .expect("valid metric"),
            templates_persisted: IntGauge::new(
                "rie_collector_netflow_templates_persisted",
                "NetFlow v9/IPFIX templates kept in the store across restarts.",
            )
            .expect("valid metric"),
            templates_from_store: IntCounter::new(
                "rie_collector_netflow_templates_from_store_total",
                "NetFlow v9/IPFIX templates read from the shared store on a miss (announced to another collector).",
            )
            .expect("valid metric"),
            rows_committed: IntCounter::new(
                "rie_collector_netflow_rows_committed_total",
                "Minute rows of NetFlow traffic committed to the store.",
            )
            .expect("valid metric"),
            records_by_direction: counter_vec(
                "rie_collector_netflow_direction_records_total",
                "NetFlow/IPFIX flow records by direction against the site's prefixes.",
                "direction",
            ),
            no_prefix_records: IntCounter::new(
                "rie_collector_netflow_no_prefix_records_total",
                "NetFlow/IPFIX flow records of inventory sites without site_prefixes (direction unknown).",
            )
            .expect("valid metric"),
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 14] = [
            Box::new(m.datagrams.clone()),
            Box::new(m.decode_errors.clone()),
            Box::new(m.records.clone()),
            Box::new(m.packets_by_site.clone()),
            Box::new(m.unknown_source_datagrams.clone()),
            Box::new(m.malformed_datagrams.clone()),
            Box::new(m.kernel_drops.clone()),
            Box::new(m.pending_flowsets.clone()),
            Box::new(m.exporters.clone()),
            Box::new(m.templates_persisted.clone()),
            Box::new(m.templates_from_store.clone()),
            Box::new(m.rows_committed.clone()),
            Box::new(m.records_by_direction.clone()),
            Box::new(m.no_prefix_records.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        for v in ["5", "9", "10", "other"] {
            m.datagrams.with_label_values(&[v]);
        }
        for r in rie_flow::netflow::DecodeReason::ALL {
            m.decode_errors.with_label_values(&[r.as_str()]);
        }
        for d in ["inbound", "outbound", "unknown"] {
            m.records_by_direction.with_label_values(&[d]);
        }
        m
    }
}

/// The current store outage, if any: shared by the commit stage (writes) and `/healthz`
/// (pings).
#[derive(Default)]
pub struct StoreHealth(std::sync::Mutex<Option<StoreDown>>);

impl StoreHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<StoreDown>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outage in progress.
    pub fn down(&self) -> Option<StoreDown> {
        self.lock().clone()
    }
}

/// A store outage in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreDown {
    /// When its first failure happened (Unix ms).
    pub since_ms: i64,
    /// The latest failure's error (names the server by its masked URL).
    pub reason: String,
    /// A write failed during it (only a successful write ends it).
    pub by_write: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_keeps_its_start_and_only_a_write_ends_a_write_failure() {
        let m = Metrics::new();
        assert_eq!((m.store_up.get(), m.store_health.down()), (1, None));
        m.store_failed(false, "ping: refused".into(), 5_000);
        m.store_failed(true, "commit: gone".into(), 9_000);
        let down = m.store_health.down().unwrap();
        assert_eq!(
            (down.since_ms, down.reason.as_str(), down.by_write),
            (5_000, "commit: gone", true)
        );
        assert_eq!((m.store_up.get(), m.store_down_since.get()), (0, 5));
        // A ping answering again does not clear a failed write: the next write does.
        m.store_ok(false);
        assert_eq!(m.store_up.get(), 0);
        m.store_ok(true);
        assert_eq!((m.store_up.get(), m.store_down_since.get()), (1, 0));
        assert_eq!(m.store_health.down(), None);
        // A ping failure alone is ended by a ping.
        m.store_failed(false, "ping: refused".into(), 20_000);
        m.store_ok(false);
        assert_eq!((m.store_up.get(), m.store_health.down()), (1, None));
    }
}
