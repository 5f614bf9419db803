//! The collector's own metrics, served at `/metrics`. All names live here, registered in one
//! registry; label values come from bounded sets (reasons, results), never from input text.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    pub registry: Registry,
    /// Open, authenticated probe connections.
    pub probe_connections: IntGauge,
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
    pub store_commits: IntCounter,
    pub store_errors: IntCounter,
    pub store_commit_seconds: Histogram,
    pub store_batches_per_commit: Histogram,
    pub sites: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Panics
    /// Never in practice: names are static and unique, which is all registration checks.
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            probe_connections: IntGauge::new(
                "rie_collector_probe_connections",
                "Open, authenticated probe connections.",
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
            sites: IntGaugeVec::new(
                Opts::new("rie_collector_sites", "Sites by current state."),
                &["state"],
            )
            .expect("valid metric"),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 14] = [
            Box::new(m.probe_connections.clone()),
            Box::new(m.probe_batches.clone()),
            Box::new(m.duplicate_batches.clone()),
            Box::new(m.sequence_gaps.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.frame_errors.clone()),
            Box::new(m.invalid_records.clone()),
            Box::new(m.heartbeats.clone()),
            Box::new(m.store_commits.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.store_commit_seconds.clone()),
            Box::new(m.store_batches_per_commit.clone()),
            Box::new(m.sites.clone()),
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
        ] {
            m.auth_failures.with_label_values(&[r]);
        }
        for r in ["oversized", "malformed", "unexpected", "io", "tls"] {
            m.frame_errors.with_label_values(&[r]);
        }
        m
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
