//! Reliable delivery of batches to the collector: every batch goes into an [`Outbox`] (the
//! disk spool on a real probe) and stays there until acknowledged. The uplink reconnects with
//! exponential backoff and full jitter, resends what was not acknowledged, paces the replay of
//! a backlog (`replay_rate`) so that 14,000 probes coming back together do not flatten the
//! collector, and sends heartbeats when idle.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rie_common::now_ms;
use rie_proto::{Batch, Heartbeat, Hello, Message, RefuseCode, SiteId, PROTOCOL_VERSION};
use rustls_pki_types::ServerName;
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
    pub last_error: Mutex<Option<String>>,
    pub outbox: Mutex<OutboxState>,
}

impl Stats {
    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    fn set_outbox(&self, o: &dyn Outbox) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = o.state();
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    Lost(SessionError),
}

/// Delivers batches from `batches` (through `out`, which numbers them) until shutdown, or until
/// `batches` is closed and everything is acknowledged. `id.stream` must be `out.stream()`.
pub async fn run<O: Outbox>(
    target: Target,
    id: Identity,
    settings: Settings,
    mut batches: mpsc::Receiver<Batch>,
    mut out: O,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    debug_assert_eq!(id.stream, out.stream());
    stats.set_outbox(&out);
    let mut producer_open = true;
    let mut backoff = settings.reconnect_min;
    // Collector named by a redirect (scale-out): used until a connection to it fails, then the
    // configured address again, which redirects anew if the cluster has not changed.
    let mut redirected: Option<Target> = None;
    loop {
        if shutdown.is_cancelled() || (!producer_open && out.is_empty()) {
            break;
        }
        let current = redirected.as_ref().unwrap_or(&target);
        let opened = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = Session::open(current, id.hello()) => s,
        };
        match opened {
            Ok(mut session) => {
                backoff = settings.reconnect_min;
                if let Some(last) = session.welcome.last_stored_seq {
                    // Stored before a lost ack: not resent.
                    out.ack(last);
                    stats.set_outbox(&out);
                }
                stats.connected.store(true, Ordering::Relaxed);
                stats.connected_since_ms.store(now_ms(), Ordering::Relaxed);
                stats.set_error(None);
                debug!(site = %id.site, "connected to collector");
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
                    End::Lost(e) => {
                        warn!(site = %id.site, error = %e, "connection to collector lost");
                        stats.set_error(Some(e.to_string()));
                    }
                }
            }
            Err(SessionError::Refused(r))
                if r.code == RefuseCode::Redirect && r.redirect.is_some() =>
            {
                let to = r.redirect.unwrap_or_default();
                match (&redirected, redirect_target(&target, &to)) {
                    // A redirect from a member we were redirected to: the members disagree
                    // (a configuration being rolled out). Back to the configured address, slowly.
                    (Some(_), _) | (None, None) => {
                        warn!(site = %id.site, from = %current.address, to = %to, "collector redirect not followed (redirect loop or bad address); retrying the configured collector");
                        stats.set_error(Some(format!("redirect to {to} not followed")));
                        redirected = None;
                        backoff = settings.reconnect_max;
                    }
                    (None, Some(t)) => {
                        info!(site = %id.site, from = %target.address, to = %to, "collector redirects this site; following");
                        redirected = Some(t);
                        // Straight to the owner: the redirect is not a failure.
                        continue;
                    }
                }
            }
            Err(SessionError::Refused(r)) => {
                redirected = None;
                // A refusal is a configuration problem: retry, but slowly.
                warn!(site = %id.site, code = ?r.code, reason = %r.reason, "collector refused this probe");
                stats.set_error(Some(format!("refused: {}", r.reason)));
                backoff = settings.reconnect_max;
            }
            Err(e) => {
                if redirected.take().is_some() {
                    info!(site = %id.site, error = %e, "collector named by the redirect unreachable; back to the configured collector");
                }
                info!(site = %id.site, error = %e, "collector unreachable");
                stats.set_error(Some(e.to_string()));
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
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

/// The configured target with the address of a redirect; the certificate name becomes the
/// redirect's host (each collector has its own name in its certificate). `None` if `to` is not
/// `host:port` or its host is not a valid name.
fn redirect_target(configured: &Target, to: &str) -> Option<Target> {
    let (host, port) = to.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(host.to_string()).ok()?;
    Some(Target {
        address: to.to_string(),
        server_name,
        ..configured.clone()
    })
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
                return End::Lost(e);
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
                    Ok(Some(Message::HeartbeatAck(_))) => {}
                    Ok(Some(other)) => return End::Lost(SessionError::Protocol(format!("unexpected {}", other.kind()))),
                    Ok(None) => return End::Lost(SessionError::Protocol("collector closed the connection".into())),
                    Err(e) => return End::Lost(e),
                }
            }
            _ = tokio::time::sleep_until(heartbeat_at) => {
                if let Err(e) = s.send(&Message::Heartbeat(Heartbeat { probe_time_ms: now_ms() })).await {
                    return End::Lost(e);
                }
                last_sent = Instant::now();
            }
            _ = tokio::time::sleep_until(last_heard + silence_limit) => {
                return End::Lost(SessionError::Timeout(silence_limit));
            }
        }
    }
}
