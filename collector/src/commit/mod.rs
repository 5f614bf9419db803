//! The commit stage: the collector's one writer. Every input reaches the store through it —
//! probe batches ([`BatchWrite`], from `ingest::probe_stream`), NetFlow flushes
//! ([`NetflowWrite`], from `ingest::netflow_udp`'s decode lanes) and the periodic silence scan
//! ([`Request::SilenceScan`]) — and what it committed fans out from it once: to the live site
//! registry (`sites`), the dedup index, the episode tracker (`episodes`), and the sinks
//! ([`Sink`]: InfluxDB).
//!
//! Owns: grouping, dedup by stream mark, the clock correction of probe timestamps, turning
//! inputs into store rows (`rows`), and the order "commit, then reply, then fan out".
//! May import: `store` (the [`Store`] interface and its row types), `sites`, `episodes`,
//! `inventory`, `metrics`, `duties` (whether this collector is the leader). Never imports
//! `ingest`, `sinks` or `api`: they import it.
//!
//! Design constraints:
//! - **Group commit.** One thread takes every request waiting in the bounded channel (up to
//!   `store.commit_max_batches`), builds one [`WriteSet`] and pays one fsync for all of them.
//! - **Ack after durable.** A reply leaves only after [`Store::write`] returned; a failed
//!   group replies an error to every request in it (probes resend, NetFlow lanes keep their
//!   sums for the next flush), and nothing of it reaches the registry or the sinks.
//! - **Dedup is a high-water mark**, not a set: a probe sends each stream's batches in order,
//!   so `seq <= last_stored` means "already stored"; the mark is written in the same group as
//!   the data (store contract, point 3). Batches of one stream in one group chain on the
//!   marks of the group.
//! - **A failed batch holds its stream back.** After a group fails, later batches of its
//!   streams are refused (not stored, not acknowledged) until the failed batch is stored by the
//!   probe's resend: otherwise one the failed connection had queued could commit first and
//!   move the mark past it.
//! - **Sinks never block the writer**: [`Sink`] implementations queue and bound their own
//!   memory.
//! - **Silence is scanned once** among collectors sharing a database: only the leader
//!   ([`Leadership`]) opens and closes `silent` episodes, after reloading the open ones from
//!   the store each time it gains the leadership. Every collector sharing a database writes
//!   the state of the sites whose probe is connected to it when only heartbeats keep them
//!   alive ([`CommitStage::share_seen`]), so that the leader, which may not hold their
//!   connection, does not take them for silent.

pub mod rows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rie_proto::{Batch, FlowAggregate, SiteId, TopTalker};
use tokio::sync::{mpsc, oneshot};

use crate::duties::Leadership;
use crate::episodes::{self, SilenceTracker};
use crate::metrics::Metrics;
use crate::sites::{SiteLive, SiteRegistry};
use crate::store::{
    Loaded, SamplingRow, SiteStateRow, Store, StoreError, StreamMark, TemplateChange, WriteSet,
};

/// What the commit stage takes.
pub enum Request {
    Batch(BatchWrite),
    Netflow(NetflowWrite),
    /// Opens and closes `silent` episodes from the registry's view of who stopped reporting
    /// (no batch can report silence), on the leader only; on a shared database, also stores
    /// the state of heartbeat-only sites connected here ([`CommitStage::share_seen`]). Sent
    /// every second by a ticker.
    SilenceScan,
}

/// Outcome of a stored batch, sent back to the connection that will ack it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New,
    Duplicate,
}

/// A batch on its way to the commit stage.
pub struct BatchWrite {
    pub site_idx: usize,
    pub site: SiteId,
    pub stream: u64,
    pub batch: Batch,
    pub received_ms: i64,
    pub reply: oneshot::Sender<Result<Stored, String>>,
}

/// What one NetFlow decode lane summed since its last flush.
pub struct NetflowWrite {
    /// Minute aggregates by site (inventory index: datagrams of exporters of no site are
    /// dropped before decoding); each carries its exporter address.
    pub flows: Vec<(usize, FlowAggregate)>,
    /// Top remote prefixes per site and minute.
    pub talkers: Vec<(usize, TopTalker)>,
    /// Templates announced or withdrawn since the last flush (written in the same group as
    /// the traffic they helped decode).
    pub templates: Vec<TemplateChange>,
    /// Rows stored, or why the group failed (the lane then keeps its sums).
    pub reply: oneshot::Sender<Result<u64, String>>,
}

/// Newly stored batches of one commit, on the collector's clock, with the inventory index of
/// their site.
pub type Committed = Vec<(usize, Batch)>;
/// Channel of a sink that takes [`Committed`] groups (unbounded on purpose: the commit stage
/// never waits on a sink; the sink bounds its own memory).
pub type CommitHook = mpsc::UnboundedSender<Committed>;

/// Where committed data fans out beyond the registry: the InfluxDB sink.
pub trait Sink: Send {
    /// New batches of a committed group, as stored (timestamps on the collector's clock).
    fn batches(&self, committed: Committed);
    /// (site index, minute) pairs that NetFlow rows of a committed group touched, each once.
    fn netflow_minutes(&self, minutes: Vec<(usize, i64)>);
}

/// Highest stored sequence per (site, stream); shared so that a hello can tell the probe
/// where it stands without a round-trip through the commit stage.
#[derive(Default)]
pub struct DedupIndex(Mutex<HashMap<(SiteId, u64), u64>>);

impl DedupIndex {
    pub fn last(&self, site: &SiteId, stream: u64) -> Option<u64> {
        self.lock().get(&(site.clone(), stream)).copied()
    }

    /// Raises the mark of `(site, stream)` to at least `seq`: a mark another collector sharing
    /// the database committed (returned by the store as `StaleMarks`), so that batches up to it
    /// are acknowledged as duplicates. Held in
    /// memory only: the database holds the mark itself. Never lowers a mark.
    pub fn raise(&self, site: &SiteId, stream: u64, seq: u64) {
        let mut m = self.lock();
        let e = m.entry((site.clone(), stream)).or_insert(seq);
        if *e < seq {
            *e = seq;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(SiteId, u64), u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the collector resumes from, read through the store at start-up.
pub struct Resumed {
    pub dedup: Arc<DedupIndex>,
    pub silence: SilenceTracker,
    /// Persisted NetFlow templates, for the decode lanes.
    pub templates: Vec<TemplateChange>,
}

/// Loads the dedup marks and open silent episodes, and restores each site's persisted live
/// state into `sites`.
///
/// # Errors
/// Store errors.
pub fn resume(store: &mut dyn Store, sites: &SiteRegistry) -> Result<Resumed, StoreError> {
    let Loaded {
        marks,
        site_states,
        open_silent,
        templates,
    } = store.load()?;
    let mut map = HashMap::new();
    for m in marks {
        if let Ok(site) = SiteId::new(m.site) {
            map.insert((site, m.stream), m.seq);
        }
    }
    let index = |site: String| {
        SiteId::new(site)
            .ok()
            .and_then(|s| sites.inventory.site_index(&s))
    };
    for row in site_states {
        match (index(row.site), serde_json::from_str::<SiteLive>(&row.json)) {
            (Some(idx), Ok(live)) => sites.restore(idx, live),
            // A site removed from the inventory keeps its rows; it is just not shown.
            (None, _) => {}
            (Some(_), Err(e)) => {
                tracing::warn!(error = %e, "unreadable persisted site state, starting fresh")
            }
        }
    }
    let silence = SilenceTracker::new(
        open_silent
            .into_iter()
            .filter_map(|(site, start)| Some((index(site)?, start))),
    );
    Ok(Resumed {
        dedup: Arc::new(DedupIndex(Mutex::new(map))),
        silence,
        templates,
    })
}

/// The commit stage; runs on its own thread until every sender is gone, so that shutdown
/// drains the queue before returning.
pub struct CommitStage {
    store: Box<dyn Store>,
    dedup: Arc<DedupIndex>,
    sites: Arc<SiteRegistry>,
    silence: SilenceTracker,
    metrics: Arc<Metrics>,
    max_group: usize,
    sinks: Vec<Box<dyn Sink>>,
    leadership: Arc<Leadership>,
    /// The leadership epoch whose open silent episodes `silence` holds.
    silence_epoch: u64,
    /// With a shared database: how stale the stored sign of life of a site connected here may
    /// get before a scan writes the site's state (heartbeats alone are not stored otherwise).
    share_seen: Option<std::time::Duration>,
    /// Last sign of life stored per site, for `share_seen`.
    stored_seen: HashMap<usize, i64>,
    /// Streams whose batch `seq` failed to store (group error: not acknowledged), with when:
    /// later batches of the stream are refused until `seq` or an earlier one is stored again
    /// (the probe resends from it), or for [`UNSTORED_HOLD`]. Without this, a batch the
    /// failed connection had already queued could commit on the next session (after a
    /// reconnect to a new primary) and move the stream mark past the failed one, which the
    /// probe would then drop as stored: an acknowledged-as-stored batch lost.
    unstored: HashMap<(SiteId, u64), (u64, Instant)>,
}

/// How long later batches of a stream are refused after one of its batches failed to store.
/// Longer than a failed connection's queued batches take to reach the commit stage; a probe
/// whose spool dropped the failed batch meanwhile (disk budget) is held back at most this long.
const UNSTORED_HOLD: Duration = Duration::from_secs(30);

/// What one request of a group will get once the group is committed.
enum Plan {
    New {
        stream: u64,
        seq: u64,
        gap: bool,
        /// Valid flow aggregates stored (counted once the commit succeeded).
        flow_records: u64,
    },
    Duplicate,
    /// An earlier batch of the stream failed to store and was not stored since.
    Refused,
    Netflow {
        rows: u64,
        minutes: Vec<(usize, i64)>,
    },
    Silence,
}

impl CommitStage {
    pub fn new(
        store: Box<dyn Store>,
        dedup: Arc<DedupIndex>,
        silence: SilenceTracker,
        sites: Arc<SiteRegistry>,
        metrics: Arc<Metrics>,
        max_group: usize,
    ) -> Self {
        let leadership = Leadership::alone();
        Self {
            store,
            dedup,
            sites,
            silence,
            metrics,
            max_group: max_group.max(1),
            sinks: Vec::new(),
            unstored: HashMap::new(),
            silence_epoch: leadership.epoch(),
            leadership,
            share_seen: None,
            stored_seen: HashMap::new(),
        }
    }

    /// Scans silence only while `leadership` says so (the default: always, as with SQLite).
    pub fn leadership(mut self, leadership: Arc<Leadership>) -> Self {
        self.silence_epoch = leadership.epoch();
        self.leadership = leadership;
        self
    }

    /// On a database shared with other collectors: at each silence tick, stores the state of
    /// sites connected here whose stored sign of life is older than `every`.
    pub fn share_seen(mut self, every: std::time::Duration) -> Self {
        self.share_seen = Some(every);
        self
    }

    /// Whether this group may scan silence: the leader's, with the open silent episodes of
    /// its epoch loaded (reloaded through [`Store::load`] after a gain of the leadership).
    fn silence_ready(&mut self) -> bool {
        if !self.leadership.is_leader() {
            return false;
        }
        let epoch = self.leadership.epoch();
        if epoch == self.silence_epoch {
            return true;
        }
        match self.store.load() {
            Ok(loaded) => {
                let inv = &self.sites.inventory;
                let open: Vec<(usize, i64)> = loaded
                    .open_silent
                    .into_iter()
                    .filter_map(|(site, start)| {
                        let idx = inv.site_index(&SiteId::new(site).ok()?)?;
                        Some((idx, start))
                    })
                    .collect();
                tracing::info!(
                    open_silent = open.len(),
                    "leader: open silent episodes reloaded from the store; scanning silence here"
                );
                self.silence = SilenceTracker::new(open);
                self.silence_epoch = epoch;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader: cannot reload open silent episodes; retrying at the next tick");
                false
            }
        }
    }

    /// Adds a sink that receives what each group committed.
    pub fn sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Runs until the channel is closed and drained.
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut group = Vec::with_capacity(self.max_group);
        while let Some(first) = rx.blocking_recv() {
            group.push(first);
            while group.len() < self.max_group {
                match rx.try_recv() {
                    Ok(w) => group.push(w),
                    Err(_) => break,
                }
            }
            self.commit_group(&mut group);
        }
        self.store.close();
        tracing::info!("commit stage stopped, queue drained");
    }

    fn commit_group(&mut self, group: &mut Vec<Request>) {
        let started = Instant::now();
        let now_ms = rie_common::now_ms();
        let mut set = WriteSet {
            now_ms,
            ..WriteSet::default()
        };
        // Live state per site as it evolves through the group.
        let mut live: HashMap<usize, SiteLive> = HashMap::new();
        let mut silence = None;
        let refused = self.refuse_after_failures(group);
        let ticked = group.iter().any(|r| matches!(r, Request::SilenceScan));
        let scan_silence = ticked && self.silence_ready();
        let plans: Vec<Plan> = {
            // Marks moved by this group, visible to later batches of the same group.
            let mut pending: HashMap<(SiteId, u64), u64> = HashMap::new();
            let dedup = self.dedup.lock();
            group
                .iter_mut()
                .zip(&refused)
                .map(|(req, refused)| match req {
                    Request::Batch(_) if *refused => Plan::Refused,
                    Request::Batch(w) => {
                        let last = pending
                            .get(&(w.site.clone(), w.stream))
                            .copied()
                            .or_else(|| dedup.get(&(w.site.clone(), w.stream)).copied());
                        self.plan_batch(w, last, &mut set, &mut live, &mut pending)
                    }
                    Request::Netflow(n) => self.plan_netflow(n, &mut set),
                    Request::SilenceScan => {
                        if scan_silence && silence.is_none() {
                            silence =
                                Some(self.silence.scan(&self.sites, now_ms, &mut set.episodes));
                        }
                        Plan::Silence
                    }
                })
                .collect()
        };
        if let (true, Some(every)) = (ticked, self.share_seen) {
            let every = every.as_millis() as i64;
            for (idx, seen) in self.sites.connected_seen() {
                let stored = self.stored_seen.get(&idx).copied().unwrap_or(i64::MIN);
                if !live.contains_key(&idx) && seen.saturating_sub(stored) >= every {
                    live.insert(idx, self.sites.current(idx));
                }
            }
        }
        for (idx, next) in &mut live {
            next.version_ms = now_ms;
            match serde_json::to_string(next) {
                Ok(json) => set.site_states.push(SiteStateRow {
                    site: self.sites.inventory.sites[*idx].id.as_str().to_string(),
                    json,
                }),
                Err(e) => tracing::error!(error = %e, "site state not serialisable"),
            }
        }
        let batches = plans
            .iter()
            .filter(|p| matches!(p, Plan::New { .. } | Plan::Duplicate))
            .count();
        let written = if set.is_empty() {
            Ok(())
        } else {
            self.store.write(&set)
        };
        match written {
            Ok(()) => {
                if !set.is_empty() {
                    self.metrics.store_ok(true);
                    self.metrics.store_commits.inc();
                    self.metrics
                        .store_commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics
                        .store_batches_per_commit
                        .observe(batches as f64);
                }
                self.fan_out(group, plans, live, silence);
            }
            Err(e) => {
                if let StoreError::StaleMarks(marks) = &e {
                    // Another writer stored these batches: learn its marks, so that the
                    // probes' redelivery is answered as a duplicate.
                    self.metrics.store_stale_mark_conflicts.inc();
                    for m in marks {
                        if let Ok(site) = SiteId::new(m.site.clone()) {
                            self.dedup.raise(&site, m.stream, m.seq);
                        }
                    }
                }
                self.metrics.store_errors.inc();
                tracing::error!(error = %e, requests = group.len(), "group commit failed; nothing acknowledged");
                let at = Instant::now();
                for req in group.iter() {
                    if let Request::Batch(w) = req {
                        let e = self
                            .unstored
                            .entry((w.site.clone(), w.stream))
                            .or_insert((w.batch.seq, at));
                        *e = (e.0.min(w.batch.seq), at);
                    }
                }
                let msg = e.to_string();
                // A conflict with another writer is no outage. Anything else (server gone,
                // failover, commit in doubt) is: the stage goes on, and each group retries
                // the session until one commits.
                if !matches!(e, StoreError::StaleMarks(_)) {
                    self.metrics.store_failed(true, msg.clone(), now_ms);
                }
                for req in group.drain(..) {
                    match req {
                        Request::Batch(w) => {
                            let _ = w.reply.send(Err(msg.clone()));
                        }
                        Request::Netflow(n) => {
                            let _ = n.reply.send(Err(msg.clone()));
                        }
                        Request::SilenceScan => {}
                    }
                }
            }
        }
    }

    /// Which batches of `group` to refuse: those past a failed, not yet stored batch of their
    /// stream (see `unstored`). A batch at or before the failed one, or the failed one known
    /// stored, ends the hold.
    fn refuse_after_failures(&mut self, group: &[Request]) -> Vec<bool> {
        let now = Instant::now();
        self.unstored
            .retain(|_, (_, at)| now.duration_since(*at) < UNSTORED_HOLD);
        group
            .iter()
            .map(|req| {
                let Request::Batch(w) = req else {
                    return false;
                };
                let key = (w.site.clone(), w.stream);
                // Stored after all: by another collector sharing the database, or by a commit
                // that was in doubt (the mark learned at the probe's hello, or from a
                // stale-mark refusal).
                let stored = |failed: u64| {
                    self.dedup
                        .last(&w.site, w.stream)
                        .is_some_and(|last| last >= failed)
                };
                match self.unstored.get(&key) {
                    Some(&(failed, _)) if w.batch.seq > failed && !stored(failed) => {
                        tracing::warn!(site = %w.site, stream = w.stream, seq = w.batch.seq, failed, "batch refused: an earlier batch of its stream is not stored yet");
                        true
                    }
                    Some(_) => {
                        self.unstored.remove(&key);
                        false
                    }
                    None => false,
                }
            })
            .collect()
    }

    /// Rows of one batch, unless its stream mark says it is already stored.
    fn plan_batch(
        &self,
        w: &mut BatchWrite,
        last: Option<u64>,
        set: &mut WriteSet,
        live: &mut HashMap<usize, SiteLive>,
        pending: &mut HashMap<(SiteId, u64), u64>,
    ) -> Plan {
        if last.is_some_and(|l| w.batch.seq <= l) {
            return Plan::Duplicate;
        }
        let gap = last.map_or(w.batch.seq > 1, |l| w.batch.seq > l + 1);
        let site = w.site.as_str();
        // Several batches of one site in a group chain on the state this group built. The
        // state advances on the probe's own times (it applies the clock offset itself).
        let base = live
            .remove(&w.site_idx)
            .unwrap_or_else(|| self.sites.current(w.site_idx));
        let (mut next, transition) = self
            .sites
            .advance(w.site_idx, base, &w.batch, w.received_ms);
        if let Some(t) = &transition {
            episodes::record_transition(site, &mut next, t, &mut set.episodes);
        }
        live.insert(w.site_idx, next);
        // Probe timestamps move to the collector's clock; the batch is then stored, and
        // handed to the sinks, as it is stored.
        Shift::of(self.sites.clock_correction_ms(w.site_idx)).apply(&mut w.batch);
        let mut flow_records = 0u64;
        for f in &w.batch.flows {
            if let Some(row) = rows::flow_row(site, f, &self.metrics) {
                flow_records += 1;
                set.flows.push(row);
            }
        }
        set.talkers.extend(
            w.batch
                .top_talkers
                .iter()
                .filter_map(|t| rows::talker_row(site, t, &self.metrics)),
        );
        let links: Vec<_> = self.sites.inventory.links_of(&w.site).collect();
        set.links.extend(w.batch.samples.iter().filter_map(|s| {
            let known = links.iter().any(|l| l.id == s.link);
            rows::link_row(site, s, known, &self.metrics)
        }));
        set.marks.push(StreamMark {
            site: site.to_string(),
            stream: w.stream,
            seq: w.batch.seq,
            updated_ms: w.received_ms,
        });
        pending.insert((w.site.clone(), w.stream), w.batch.seq);
        Plan::New {
            stream: w.stream,
            seq: w.batch.seq,
            gap,
            flow_records,
        }
    }

    /// Rows of one NetFlow flush.
    fn plan_netflow(&self, n: &mut NetflowWrite, set: &mut WriteSet) -> Plan {
        let inv = &self.sites.inventory;
        let mut rows = 0;
        let mut minutes = Vec::new();
        for (idx, a) in &n.flows {
            let site = inv.sites[*idx].id.as_str();
            let Some(row) = rows::flow_row(site, a, &self.metrics) else {
                continue;
            };
            if a.sampling_rate > 1 {
                set.sampling.push(SamplingRow {
                    minute: row.minute,
                    site: site.to_string(),
                    exporter: row.exporter.clone(),
                    rate: i64::from(a.sampling_rate),
                    flows: row.flows,
                });
            }
            minutes.push((*idx, row.minute));
            set.flows.push(row);
            rows += 1;
        }
        for (idx, t) in &n.talkers {
            let Some(site) = inv.sites.get(*idx) else {
                continue;
            };
            if let Some(row) = rows::talker_row(site.id.as_str(), t, &self.metrics) {
                set.talkers.push(row);
            }
        }
        set.templates.append(&mut n.templates);
        minutes.sort_unstable();
        minutes.dedup();
        Plan::Netflow { rows, minutes }
    }

    /// After a successful commit: dedup marks and live states first (so that a probe's next
    /// hello sees them), then the replies, then the sinks.
    fn fan_out(
        &mut self,
        group: &mut Vec<Request>,
        plans: Vec<Plan>,
        live: HashMap<usize, SiteLive>,
        silence: Option<episodes::SilenceScan>,
    ) {
        {
            let mut dedup = self.dedup.lock();
            for (req, plan) in group.iter().zip(&plans) {
                if let (Request::Batch(w), Plan::New { stream, seq, .. }) = (req, plan) {
                    dedup.insert((w.site.clone(), *stream), *seq);
                }
            }
        }
        for (idx, next) in live {
            if let Some(seen) = next.last_seen_ms {
                self.stored_seen.insert(idx, seen);
            }
            self.sites.apply(idx, next);
        }
        if let Some(scan) = silence {
            self.silence.confirm(scan);
        }
        let mut committed = Vec::new();
        let mut minutes = Vec::new();
        for (req, plan) in group.drain(..).zip(plans) {
            match (req, plan) {
                (
                    Request::Batch(w),
                    Plan::New {
                        gap, flow_records, ..
                    },
                ) => {
                    self.metrics
                        .flow_records
                        .with_label_values(&["probe"])
                        .inc_by(flow_records);
                    self.metrics.probe_batches.inc();
                    if gap {
                        self.metrics.sequence_gaps.inc();
                    }
                    let _ = w.reply.send(Ok(Stored::New));
                    committed.push((w.site_idx, w.batch));
                }
                (Request::Batch(w), Plan::Refused) => {
                    let _ = w.reply.send(Err(format!(
                        "batch {} not stored: an earlier batch of its stream is not stored yet; resend from it",
                        w.batch.seq
                    )));
                }
                (Request::Batch(w), _) => {
                    self.metrics.duplicate_batches.inc();
                    let _ = w.reply.send(Ok(Stored::Duplicate));
                }
                (Request::Netflow(n), Plan::Netflow { rows, minutes: m }) => {
                    let _ = n.reply.send(Ok(rows));
                    minutes.extend(m);
                }
                _ => {}
            }
        }
        minutes.sort_unstable();
        minutes.dedup();
        for sink in &self.sinks {
            if !committed.is_empty() {
                sink.batches(committed.clone());
            }
            if !minutes.is_empty() {
                sink.netflow_minutes(minutes.clone());
            }
        }
    }
}

/// How a batch's timestamps move to the collector's clock: flow minutes by whole minutes only
/// (so that a well-synchronised probe's buckets stay exactly as counted), samples by seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Shift {
    minute_shift: i64,
    second_shift: i64,
}

impl Shift {
    fn of(correction_ms: i64) -> Self {
        Self {
            minute_shift: (correction_ms as f64 / 60_000.0).round() as i64 * 60,
            second_shift: (correction_ms as f64 / 1000.0).round() as i64,
        }
    }

    /// The batch as it was stored.
    fn apply(self, batch: &mut rie_proto::Batch) {
        for f in &mut batch.flows {
            f.minute -= self.minute_shift;
        }
        for t in &mut batch.top_talkers {
            t.minute -= self.minute_shift;
        }
        for s in &mut batch.samples {
            s.start -= self.second_shift;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Among collectors sharing a database: a follower opens no silent episode but stores the
    /// state of a site connected to it (its last sign of life, which the leader reads); once
    /// the leader, it reloads the open silent episodes and opens the one that is due, once.
    #[test]
    fn only_the_leader_scans_silence_and_every_collector_shares_its_sites_signs_of_life() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rie.db");
        let store = crate::store::SqliteStore::open(&path).unwrap();
        let sites = Arc::new(crate::sites::tests::registry());
        let metrics = Arc::new(Metrics::new());
        let leadership = Leadership::follower(metrics.leader.clone());
        let mut stage = CommitStage::new(
            Box::new(store),
            Arc::default(),
            SilenceTracker::default(),
            sites.clone(),
            metrics.clone(),
            10,
        )
        .leadership(leadership.clone())
        .share_seen(std::time::Duration::from_secs(1));
        // S1's probe is connected here but was last heard from a minute ago (35 s: silent).
        let seen = rie_common::now_ms() - 60_000;
        sites.on_hello(0, 1, "p", 0, seen);
        let db = rusqlite::Connection::open(&path).unwrap();
        let status = || -> Vec<(String, Option<i64>)> {
            let mut st = db
                .prepare("SELECT site_id, live_json FROM site_status")
                .unwrap();
            st.query_map([], |r| {
                let json: String = r.get(1)?;
                let live: SiteLive = serde_json::from_str(&json).unwrap();
                Ok((r.get(0)?, live.last_seen_ms))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
        };
        let silent = || -> i64 {
            db.query_row(
                "SELECT count(*) FROM episodes WHERE kind = 'silent' AND end_ms IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        stage.commit_group(&mut vec![Request::SilenceScan]);
        assert_eq!(status(), vec![("S1".to_string(), Some(seen))]);
        assert_eq!(silent(), 0);
        assert_eq!(metrics.leader.get(), 0);
        // Nothing new to share: no second write (the row's version stays).
        let version = sites.current(0).version_ms;
        stage.commit_group(&mut vec![Request::SilenceScan]);
        assert_eq!(sites.current(0).version_ms, version);

        leadership.set(true);
        assert_eq!(metrics.leader.get(), 1);
        stage.commit_group(&mut vec![Request::SilenceScan]);
        stage.commit_group(&mut vec![Request::SilenceScan]);
        assert_eq!(silent(), 1);
        // Leadership lost and regained: the open episode is reloaded, not opened again.
        leadership.set(false);
        stage.commit_group(&mut vec![Request::SilenceScan]);
        leadership.set(true);
        stage.silence = SilenceTracker::default();
        stage.commit_group(&mut vec![Request::SilenceScan]);
        assert_eq!(silent(), 1);
    }

    #[test]
    fn the_sink_gets_batches_shifted_as_they_were_stored() {
        // Within 30 s a probe's minutes stay as counted; past it they move by whole minutes,
        // samples by seconds: the InfluxDB sink must read back the minute the store wrote.
        assert_eq!(
            Shift::of(29_000),
            Shift {
                minute_shift: 0,
                second_shift: 29
            }
        );
        assert_eq!(
            Shift::of(95_000),
            Shift {
                minute_shift: 120,
                second_shift: 95
            }
        );
        assert_eq!(
            Shift::of(-45_000),
            Shift {
                minute_shift: -60,
                second_shift: -45
            }
        );
        let mut b: rie_proto::Batch = serde_json::from_value(serde_json::json!({
            "seq": 1, "created_ms": 0,
            "flows": [{"minute": 600, "protocol": 6, "direction": "inbound", "flows": 1, "packets": 1, "bytes": 40}],
            "top_talkers": [{"minute": 600, "prefix": "10.0.0.0/24", "bytes": 40, "packets": 1}],
            "samples": [{"link": "S1-P", "check": "icmp", "target": "t", "start": 605, "interval_s": 10, "sent": 1, "received": 1}]
        }))
        .unwrap();
        Shift::of(95_000).apply(&mut b);
        assert_eq!(b.flows[0].minute, 480);
        assert_eq!(b.top_talkers[0].minute, 480);
        assert_eq!(b.samples[0].start, 510);
    }
}
