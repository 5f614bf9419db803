//! The audit trail's writer: the gate (and the CLI, directly) hand it [`AuditRow`]s; a task
//! writes them to the store in batches (`store::audit`) off the request path, and deletes rows
//! past the retention once an hour. Reads of finance data wait for room in the queue (they are
//! rare, and must not go unrecorded); failed authentications, which a flood can multiply, are
//! dropped when the queue is full, and counted.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use crate::store::audit::AuditRow;
use crate::store::{audit, Reader};

/// Rows waiting for the writer at most.
const QUEUE: usize = 4_096;
/// Rows per store transaction at most.
const BATCH: usize = 512;

pub struct AuditMetrics {
    pub rows: IntCounterVec,
    pub dropped: IntCounter,
}

impl AuditMetrics {
    /// # Panics
    /// Never in practice: names are static and unique.
    pub fn new() -> Self {
        Self {
            rows: IntCounterVec::new(
                Opts::new(
                    "rie_collector_audit_rows_total",
                    "Audit trail rows written, by action.",
                ),
                &["action"],
            )
            .expect("valid metric"),
            dropped: IntCounter::new(
                "rie_collector_audit_dropped_total",
                "Failed-authentication audit rows dropped because the audit queue was full (a flood); reads of finance data are never dropped.",
            )
            .expect("valid metric"),
        }
    }

    /// # Errors
    /// A name already registered.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.rows.clone()))?;
        registry.register(Box::new(self.dropped.clone()))
    }
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The gate's handle on the writer.
#[derive(Clone)]
pub struct Auditor {
    tx: mpsc::Sender<AuditRow>,
    metrics: Arc<AuditMetrics>,
}

impl Auditor {
    /// Starts the writer on `reader`, keeping rows `retention` long; it stops at `shutdown`
    /// after writing what is queued.
    pub fn start(
        reader: Arc<Reader>,
        retention: Duration,
        metrics: AuditMetrics,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let metrics = Arc::new(metrics);
        let task = tokio::spawn(write(reader, rx, retention, metrics.clone(), shutdown));
        (Self { tx, metrics }, task)
    }

    /// A writer-less auditor that drops everything: for unit tests of the gate.
    pub fn discard() -> Self {
        let (tx, _) = mpsc::channel(1);
        Self {
            tx,
            metrics: Arc::new(AuditMetrics::new()),
        }
    }

    /// Queues `row`, waiting for room: for events that must be recorded.
    pub async fn record(&self, row: AuditRow) {
        let _ = self.tx.send(row).await;
    }

    /// Queues `row` if there is room; counts it as dropped otherwise.
    pub fn record_if_room(&self, row: AuditRow) {
        if self.tx.try_send(row).is_err() {
            self.metrics.dropped.inc();
        }
    }
}

async fn write(
    reader: Arc<Reader>,
    mut rx: mpsc::Receiver<AuditRow>,
    retention: Duration,
    metrics: Arc<AuditMetrics>,
    shutdown: CancellationToken,
) {
    let mut expiry = tokio::time::interval(Duration::from_secs(3_600));
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => break },
            _ = expiry.tick() => {
                let reader = reader.clone();
                let before = rie_common::now_ms() - retention.as_millis() as i64;
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || audit::expire(&reader, before)).await {
                    warn!(error = %e, "audit rows past retention not deleted; next try in an hour");
                }
                continue;
            }
            _ = shutdown.cancelled() => break,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        store(&reader, batch, &metrics).await;
    }
    // At shutdown: what is queued.
    let mut rest = Vec::new();
    while let Ok(r) = rx.try_recv() {
        rest.push(r);
    }
    store(&reader, rest, &metrics).await;
}

async fn store(reader: &Arc<Reader>, batch: Vec<AuditRow>, metrics: &AuditMetrics) {
    if batch.is_empty() {
        return;
    }
    let actions: Vec<String> = batch.iter().map(|r| r.action.clone()).collect();
    let r = reader.clone();
    // A store outage: retried a few times, then the rows are logged rather than lost silently.
    for attempt in 0..5u32 {
        let rows = batch.clone();
        let r2 = r.clone();
        match tokio::task::spawn_blocking(move || audit::insert(&r2, &rows)).await {
            Ok(Ok(())) => {
                for a in &actions {
                    metrics.rows.with_label_values(&[a]).inc();
                }
                return;
            }
            Ok(Err(e)) if attempt < 4 => {
                warn!(error = %e, "audit rows not written yet; retrying");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
            _ => break,
        }
    }
    for row in &batch {
        warn!(?row, "audit row could not be stored");
    }
}
