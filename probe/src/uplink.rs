//! Reliable delivery of batches to the collectors: every batch goes into an [`Outbox`] (the
//! disk spool on a real probe) and stays there until acknowledged. The uplink reconnects,
//! resends what was not acknowledged, paces the replay of a backlog (`replay_rate`) so that
//! 14,000 probes coming back together do not flatten the collectors, and sends heartbeats when
//! idle.
//!
//! Failover between collectors ([`Failover`]): the collectors are stateless and share one
//! database (a hello is answered with the stream's mark from the database, and a batch is
//! stored once whichever collector receives it), so any of them serves any site. The probe
//!
//! - stays on the collector that works, as long as its session holds;
//! - after a failure (connection refused or timed out, TLS or hello failure, refusal, or a
//!   session lost) tries the next address of the list at once, wrapping around;
//! - backs off (exponential, full jitter, `reconnect_min`..`reconnect_max`) only when a whole
//!   round of the list failed, and then starts the next round at the first (preferred)
//!   address: the order of the list is the operator's preference, and probes come back to
//!   their first collector after an outage of everything, not one by one while it still serves.
//!
//! Not chosen: returning to the first address at every reconnect. When the first collector
//! comes back after a crash, the probes that moved stay where they are, so the returning
//! collector does not take thousands of handshakes at once; a probe restart (or a restart of the
//! collector they moved to) spreads the sites by their lists again.
//!
//! A session "held" when the collector answered at least one batch or heartbeat: a collector
//! that accepts hellos and then drops every connection counts as failing, so that a round of
//! such failures backs off instead of reconnecting in a loop. A refusal in a failed round (a
//! configuration problem: token, unknown site) makes the backoff the slowest one.
//!
//! May import `rie-proto`, `rie-common`, and the probe's `session` and `spool`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rie_common::now_ms;
use rie_proto::{
    Batch, Heartbeat, Hello, Message, ProbeHealth, SiteId, HEALTH_INTERVAL_MS, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::session::{Session, SessionError, Target};
use crate::spool::{Outbox, OutboxState};

/// Who the probe is.
#[derive(Clone)]
pub struct Identity {
    pub site: SiteId,
    pub token: String,
    pub stream: u64,
    pub protocol_version: u16,
    pub probe_version: String,
}

impl Identity {
    pub fn new(site: SiteId, token: String, stream: u64) -> Self {
        Self {
            site,
            token,
            stream,
            protocol_version: PROTOCOL_VERSION,
            probe_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub fn hello(&self) -> Hello {
        Hello {
            protocol_version: self.protocol_version,
            site: self.site.clone(),
            token: self.token.clone(),
            probe_version: self.probe_version.clone(),
            probe_time_ms: now_ms(),
            stream: self.stream,
        }
    }
}

/// Timing and limits of the uplink.
#[derive(Debug, Clone)]
pub struct Settings {
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub heartbeat_interval: Duration,
    pub max_in_flight: usize,
    /// Most batches sent per second; only a backlog ever reaches it.
    pub replay_rate: f64,
}

/// Counters readable while the uplink runs (demo summary, `status`).
#[derive(Debug, Default)]
pub struct Stats {
    pub connected: AtomicBool,
    pub batches_acked: AtomicU64,
    pub duplicates_acked: AtomicU64,
    pub reconnects: AtomicU64,
    pub last_ack_ms: AtomicI64,
    pub last_ack_seq: AtomicU64,
    pub connected_since_ms: AtomicI64,
    /// Address of the collector the uplink is connected to, or trying now.
    pub collector: Mutex<String>,
    /// Times the uplink moved to another collector of the list.
    pub failovers: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    pub outbox: Mutex<OutboxState>,
    /// The measurement sources' part of the health report (capture drops, relay counters),
    /// kept current by the runner; the spool's part is read from the outbox when sent.
    pub sources: Mutex<ProbeHealth>,
}

impl Stats {
    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    fn set_outbox(&self, o: &dyn Outbox) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = o.state();
    }

    fn set_collector(&self, address: &str) {
        address.clone_into(&mut self.collector.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Address of the collector in use (connected, or being tried).
    pub fn collector(&self) -> String {
        self.collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_sources(&self, h: ProbeHealth) {
        *self.sources.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }

    /// The health report sent to the collector: the sources' counters and the outbox now.
    fn health(&self, out: &dyn Outbox) -> ProbeHealth {
        let o = out.state();
        ProbeHealth {
            spool_batches: o.batches as u64,
            spool_bytes: o.bytes,
            spool_oldest_ms: o.oldest_ms,
            spool_dropped: o.dropped,
            ..*self.sources.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    pub fn outbox(&self) -> OutboxState {
        self.outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long a stopping probe waits for the acks of batches already sent.
const DRAIN: Duration = Duration::from_secs(3);

/// Why a connection ended.
enum End {
    /// Shutdown requested, or the producer is finished and everything is acknowledged.
    Done,
    /// The session broke; `held` when the collector had answered a batch or heartbeat on it.
    Lost { error: SessionError, held: bool },
}

/// What the uplink does after an attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Try the collector at this index of the list now.
    Next(usize),
    /// Every collector of the list failed in a row: back off, then start again at this index
    /// (the first, preferred one).
    Backoff(usize),
}

/// The failover policy over a list of `n` collectors (see the module doc): which address to
/// try, pure state without I/O so that its order is tested on its own.
#[derive(Debug, Clone)]
pub struct Failover {
    n: usize,
    current: usize,
    /// Failed attempts in a row since the last session that held.
    failed: usize,
}

impl Failover {
    /// Starts on the first address of `n` (at least 1).
    pub fn new(n: usize) -> Self {
        Self {
            n: n.max(1),
            current: 0,
            failed: 0,
        }
    }

    /// Index of the collector to use now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// A session with the current collector held: stay on it; a later failure starts a new
    /// round from here.
    pub fn held(&mut self) {
        self.failed = 0;
    }

    /// The attempt on the current collector failed (or its session was lost before it held).
    pub fn failed(&mut self) -> Step {
        self.failed += 1;
        if self.failed >= self.n {
            self.failed = 0;
            self.current = 0;
            Step::Backoff(0)
        } else {
            self.current = (self.current + 1) % self.n;
            Step::Next(self.current)
        }
    }
}

/// Delivers batches from `batches` (through `out`, which numbers them) to the collectors of
/// `targets` (in order of preference, at least one; see [`Failover`]) until shutdown, or until
/// `batches` is closed and everything is acknowledged. `id.stream` must be `out.stream()`.
pub async fn run<O: Outbox>(
    targets: Vec<Target>,
    id: Identity,
    settings: Settings,
    mut batches: mpsc::Receiver<Batch>,
    mut out: O,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    debug_assert_eq!(id.stream, out.stream());
    let Some(first) = targets.first() else {
        warn!(site = %id.site, "no collector address: nothing is sent");
        return;
    };
    stats.set_outbox(&out);
    stats.set_collector(&first.address);
    let mut producer_open = true;
    let mut backoff = settings.reconnect_min;
    let mut failover = Failover::new(targets.len());
    // A refusal in the current round: the round's backoff is the slowest.
    let mut refused_in_round = false;
    loop {
        if shutdown.is_cancelled() || (!producer_open && out.is_empty()) {
            break;
        }
        let current = &targets[failover.current() % targets.len()];
        let opened = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = Session::open(current, id.hello()) => s,
        };
        match opened {
            Ok(mut session) => {
                if let Some(last) = session.welcome.last_stored_seq {
                    // Stored before a lost ack (perhaps through another collector): not resent.
                    out.ack(last);
                    stats.set_outbox(&out);
                }
                stats.connected.store(true, Ordering::Relaxed);
                stats.connected_since_ms.store(now_ms(), Ordering::Relaxed);
                stats.set_error(None);
                debug!(site = %id.site, collector = %current.address, "connected to collector");
                let end = serve(
                    &mut session,
                    &mut out,
                    &mut batches,
                    &mut producer_open,
                    &settings,
                    &stats,
                    &shutdown,
                )
                .await;
                stats.connected.store(false, Ordering::Relaxed);
                match end {
                    End::Done => {
                        session.close().await;
                        break;
                    }
                    End::Lost { error, held } => {
                        warn!(site = %id.site, collector = %current.address, error = %error, "connection to collector lost");
                        stats.set_error(Some(format!("{}: {error}", current.address)));
                        if held {
                            failover.held();
                            backoff = settings.reconnect_min;
                            refused_in_round = false;
                        }
                    }
                }
            }
            Err(SessionError::Refused(r)) => {
                // A configuration problem (token, site) or an overloaded collector: another
                // collector may serve, but a round of refusals is retried slowly.
                warn!(site = %id.site, collector = %current.address, code = ?r.code, reason = %r.reason, "collector refused this probe");
                stats.set_error(Some(format!("{} refused: {}", current.address, r.reason)));
                refused_in_round = true;
            }
            Err(e) => {
                info!(site = %id.site, collector = %current.address, error = %e, "collector unreachable");
                stats.set_error(Some(e.to_string()));
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        let from = current.address.clone();
        match failover.failed() {
            Step::Next(i) => {
                let to = &targets[i % targets.len()].address;
                info!(site = %id.site, from = %from, to = %to, "moving to the next collector");
                stats.failovers.fetch_add(1, Ordering::Relaxed);
                stats.set_collector(to);
                // Straight to the next collector: one failing is no reason to wait.
                continue;
            }
            Step::Backoff(i) => {
                let to = &targets[i % targets.len()].address;
                if targets.len() > 1 {
                    info!(site = %id.site, collectors = targets.len(), next = %to, "every collector failed; backing off, then starting again at the first");
                    if *to != from {
                        stats.failovers.fetch_add(1, Ordering::Relaxed);
                    }
                }
                stats.set_collector(to);
                if std::mem::take(&mut refused_in_round) {
                    backoff = settings.reconnect_max;
                }
            }
        }
        // Full jitter: sleep a random time up to the backoff.
        let pause = backoff.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
        backoff = (backoff * 2).min(settings.reconnect_max);
        let until = Instant::now() + pause;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(until) => break,
                b = batches.recv(), if producer_open => match b {
                    Some(b) => {
                        out.append(b);
                        stats.set_outbox(&out);
                    }
                    None => producer_open = false,
                },
            }
        }
    }
    if !out.is_empty() {
        info!(site = %id.site, batches = out.len(), "stopping with unacknowledged batches (kept in the spool)");
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve<O: Outbox>(
    s: &mut Session,
    out: &mut O,
    batches: &mut mpsc::Receiver<Batch>,
    producer_open: &mut bool,
    settings: &Settings,
    stats: &Stats,
    shutdown: &CancellationToken,
) -> End {
    let mut in_flight = 0usize;
    let mut last_sent = Instant::now();
    let mut last_heard = Instant::now();
    let silence_limit = settings.heartbeat_interval * 3;
    // On shutdown, wait a little for what is already on its way to be acknowledged.
    let mut drain_until: Option<Instant> = None;
    let pace = Duration::from_secs_f64(1.0 / settings.replay_rate.max(0.1));
    let mut next_send = Instant::now();
    // The collector answered a batch or a heartbeat: the session did real work.
    let mut held = false;
    // The health report goes at once, then at least every HEALTH_INTERVAL_MS (with the idle
    // heartbeats too, which cost nothing more).
    let health_every = Duration::from_millis(HEALTH_INTERVAL_MS.unsigned_abs());
    let mut health_at = Instant::now() + health_every;
    // First the backlog as it stands, before any of it is sent: the centre sees what this
    // connection has to catch up.
    let hb = Heartbeat {
        probe_time_ms: now_ms(),
        health: Some(stats.health(out)),
    };
    if let Err(error) = s.send(&Message::Heartbeat(hb)).await {
        return End::Lost { error, held };
    }
    let lost = |error: SessionError, held: bool| End::Lost { error, held };
    loop {
        while in_flight < out.len()
            && in_flight < settings.max_in_flight
            && Instant::now() >= next_send
        {
            let Some(batch) = out.get(in_flight) else {
                // Unreadable and dropped by the outbox: look at the next one.
                stats.set_outbox(out);
                continue;
            };
            if let Err(e) = s.send(&Message::Batch(batch)).await {
                return lost(e, held);
            }
            in_flight += 1;
            last_sent = Instant::now();
            next_send = next_send.max(last_sent - pace) + pace;
        }
        if out.is_empty() && (!*producer_open || drain_until.is_some()) {
            return End::Done;
        }
        let can_send = in_flight < out.len() && in_flight < settings.max_in_flight;
        let heartbeat_at = last_sent + settings.heartbeat_interval;
        tokio::select! {
            _ = shutdown.cancelled(), if drain_until.is_none() => {
                drain_until = Some(Instant::now() + DRAIN);
                continue;
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                return End::Done;
            }
            _ = tokio::time::sleep_until(next_send), if can_send => {}
            b = batches.recv(), if *producer_open && drain_until.is_none() => match b {
                Some(b) => {
                    out.append(b);
                    stats.set_outbox(out);
                }
                None => *producer_open = false,
            },
            m = s.recv() => {
                last_heard = Instant::now();
                match m {
                    Ok(Some(Message::Ack(ack))) => {
                        held = true;
                        let before = out.len();
                        out.ack(ack.seq);
                        in_flight = in_flight.saturating_sub(before - out.len());
                        stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                        if ack.duplicate {
                            stats.duplicates_acked.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.last_ack_ms.store(now_ms(), Ordering::Relaxed);
                        stats.last_ack_seq.store(ack.seq, Ordering::Relaxed);
                        stats.set_outbox(out);
                    }
                    Ok(Some(Message::HeartbeatAck(_))) => held = true,
                    Ok(Some(other)) => return lost(SessionError::Protocol(format!("unexpected {}", other.kind())), held),
                    Ok(None) => return lost(SessionError::Protocol("collector closed the connection".into()), held),
                    Err(e) => return lost(e, held),
                }
            }
            _ = tokio::time::sleep_until(heartbeat_at.min(health_at)) => {
                let hb = Heartbeat { probe_time_ms: now_ms(), health: Some(stats.health(out)) };
                if let Err(e) = s.send(&Message::Heartbeat(hb)).await {
                    return lost(e, held);
                }
                last_sent = Instant::now();
                health_at = last_sent + health_every;
            }
            _ = tokio::time::sleep_until(last_heard + silence_limit) => {
                return lost(SessionError::Timeout(silence_limit), held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_collector_backs_off_after_every_failure() {
        let mut f = Failover::new(1);
        assert_eq!(f.current(), 0);
        assert_eq!(f.failed(), Step::Backoff(0));
        f.held();
        assert_eq!(f.failed(), Step::Backoff(0));
    }

    #[test]
    fn failures_move_down_the_list_and_a_failed_round_restarts_at_the_first() {
        let mut f = Failover::new(3);
        // A, B and C in turn without pause, then a backoff and A again.
        assert_eq!(f.failed(), Step::Next(1));
        assert_eq!(f.failed(), Step::Next(2));
        assert_eq!(f.failed(), Step::Backoff(0));
        assert_eq!(f.current(), 0);
        // A fails, B works: the probe stays on B as long as its sessions hold.
        assert_eq!(f.failed(), Step::Next(1));
        f.held();
        f.held();
        assert_eq!(f.current(), 1);
        // B lost: C, then A (wrapping around), then a full round has failed.
        assert_eq!(f.failed(), Step::Next(2));
        assert_eq!(f.failed(), Step::Next(0));
        assert_eq!(f.failed(), Step::Backoff(0));
    }

    #[test]
    fn a_session_lost_on_the_last_collector_wraps_to_the_first() {
        let mut f = Failover::new(2);
        assert_eq!(f.failed(), Step::Next(1));
        f.held();
        // B lost after holding: A at once (not a failed round: B had worked).
        assert_eq!(f.failed(), Step::Next(0));
        f.held();
        assert_eq!(f.current(), 0);
    }
}
