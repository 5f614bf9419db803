//! Outputs of the collector besides its own store and API: each sink receives what the commit
//! stage committed (never before: a sink sees only data that is durable here) and keeps its
//! own backlog, so that a slow or absent destination never slows ingest.
//!
//! May import: `commit` (the [`Sink`] fan-out interface and what it carries), `sites`,
//! `inventory`, `metrics`, `store` (reads). Nothing below imports a sink.

pub mod influx;
pub mod line;

use crate::commit::{CommitHook, Committed, Sink};

/// The InfluxDB sink as the commit stage sees it: new batches through its intake channel,
/// NetFlow minutes read back from the store by the sink itself.
pub struct InfluxFanout {
    pub sink: influx::InfluxSink,
    pub hook: CommitHook,
}

impl Sink for InfluxFanout {
    fn batches(&self, committed: Committed) {
        // A stopped sink is not the commit stage's problem: the data is committed.
        let _ = self.hook.send(committed);
    }

    fn netflow_minutes(&self, minutes: Vec<(usize, i64)>) {
        self.sink.minutes_committed(minutes);
    }
}
