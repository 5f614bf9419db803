//! Probe connections: TLS accept, hello and authentication, then batches in and acks out.
//!
//! One task per connection (a semaphore caps them at `probes.max_connections`). Batches go to
//! the commit stage (`crate::commit`) through a bounded channel; when it is full the task waits, stops reading,
//! and TCP pushes back on the probe. A connection may have up to [`WINDOW`] batches waiting
//! for their commit; acks go back in order. Any bad frame closes that connection only, and is
//! counted in `rie_collector_frame_errors_total`.
//!
//! Sessions opening and closing are logged per probe at debug level only: with 14,000 probes,
//! one line each would bury everything else at every restart. At info level the listener
//! writes one summary line per [`SUMMARY_EVERY`] in which sessions opened or closed.

use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use rie_common::now_ms;
use rie_proto::{
    Ack, HeartbeatAck, Hello, Message, RefuseCode, Refused, Welcome, MIN_SUPPORTED_VERSION,
    PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::limit::{Failure, FailureLimiter};
use crate::commit::{BatchWrite, DedupIndex, Request, Stored};
use crate::metrics::Metrics;
use crate::sites::SiteRegistry;
use crate::store::credentials::Verdict;
use crate::store::Reader;

/// Batches a connection may have in the store queue before it stops reading.
pub const WINDOW: usize = 16;

/// How often the listener logs the sessions opened and closed since its last summary.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// What every connection task needs.
pub struct Context {
    pub cfg: ProbesConfig,
    pub acceptor: TlsAcceptor,
    pub sites: Arc<SiteRegistry>,
    pub reader: Arc<Reader>,
    pub dedup: Arc<DedupIndex>,
    pub commit: mpsc::Sender<Request>,
    pub metrics: Arc<Metrics>,
    /// Failed hellos per source address: past the limit, the address's connections are
    /// closed at accept, before any TLS work, for the rest of the minute.
    pub hello_limiter: Arc<FailureLimiter>,
}

/// Accepts probe connections until `shutdown`; connection tasks go on `tracker` so that the
/// caller can wait for them to finish their pending acks.
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(ctx.cfg.max_connections));
    let mut backoff = Duration::from_millis(10);
    tracker.spawn(summarise(ctx.metrics.clone(), shutdown.clone()));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (sock, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning (mini-redis).
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        if ctx.hello_limiter.is_blocked(peer.ip()) {
            ctx.metrics
                .auth_failures
                .with_label_values(&["rate_limited"])
                .inc();
            continue;
        }
        let _ = sock.set_nodelay(true);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            handle(ctx, sock, peer, shutdown).await;
        });
    }
    debug!("probe listener stopped");
}

/// Logs, every [`SUMMARY_EVERY`] in which something changed, the sessions opened and closed;
/// a last time at shutdown.
async fn summarise(metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut summary = SessionSummary::new(&metrics);
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => summary.log(&metrics),
        }
    }
    summary.log(&metrics);
}

/// Counts of sessions at the last summary, to log only what changed since.
struct SessionSummary {
    opened: u64,
    closed: u64,
}

impl SessionSummary {
    fn new(m: &Metrics) -> Self {
        let (opened, closed) = Self::counts(m);
        Self { opened, closed }
    }

    fn counts(m: &Metrics) -> (u64, u64) {
        let c = |event: &str| m.probe_sessions.with_label_values(&[event]).get();
        (c("opened"), c("closed"))
    }

    fn log(&mut self, m: &Metrics) {
        let (opened, closed) = Self::counts(m);
        if (opened, closed) != (self.opened, self.closed) {
            info!(
                open = m.probe_connections.get(),
                opened = opened - self.opened,
                closed = closed - self.closed,
                "probe sessions since the last summary"
            );
        }
        (self.opened, self.closed) = (opened, closed);
    }
}

fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    msg: &Message,
) -> Result<(), std::io::Error> {
    let body = rie_proto::encode(msg).map_err(std::io::Error::other)?;
    framed.send(body.as_slice()).await
}

async fn handle(ctx: Arc<Context>, sock: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let timeout = ctx.cfg.handshake_timeout;
    let tls = match tokio::time::timeout(timeout, ctx.acceptor.accept(sock)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            ctx.metrics.frame_errors.with_label_values(&["tls"]).inc();
            return;
        }
        Err(_) => {
            ctx.metrics.frame_errors.with_label_values(&["tls"]).inc();
            return;
        }
    };
    let mut framed = Framed::new(tls, codec(ctx.cfg.max_frame_bytes));
    let hello = match tokio::time::timeout(timeout, framed.next()).await {
        Ok(Some(Ok(bytes))) => match rie_proto::decode(&bytes) {
            Ok(Message::Hello(h)) => h,
            Ok(other) => {
                warn!(%peer, kind = other.kind(), "first frame is not a hello");
                ctx.metrics
                    .auth_failures
                    .with_label_values(&["no_hello"])
                    .inc();
                return;
            }
            Err(e) => {
                warn!(%peer, error = %e, "malformed hello");
                ctx.metrics
                    .frame_errors
                    .with_label_values(&["malformed"])
                    .inc();
                return;
            }
        },
        Ok(Some(Err(e))) => {
            count_io_error(&ctx.metrics, &e);
            warn!(%peer, error = %e, "bad first frame");
            return;
        }
        Ok(None) | Err(_) => {
            ctx.metrics
                .auth_failures
                .with_label_values(&["no_hello"])
                .inc();
            return;
        }
    };
    // The clock offset is measured on the hello's arrival, not after authentication, which
    // waits on the store and, under a reconnect storm, on the CPU.
    let offset_ms = hello.probe_time_ms - now_ms();
    let site_idx = match authenticate(&ctx, &hello).await {
        Ok(idx) => idx,
        Err((code, label, reason)) => {
            // One line per address and minute, not per attempt: a misconfigured or hostile
            // peer retrying in a loop must not flood the log.
            match ctx.hello_limiter.failed(peer.ip()) {
                Failure::First => {
                    warn!(%peer, site = %hello.site, reason = %reason, "probe refused")
                }
                Failure::Crossed => {
                    warn!(%peer, site = %hello.site, reason = %reason, "probe refused again and again: its address is refused for a minute")
                }
                Failure::Counted | Failure::Blocked => {
                    debug!(%peer, site = %hello.site, reason = %reason, "probe refused")
                }
            }
            ctx.metrics.auth_failures.with_label_values(&[label]).inc();
            let refused = Refused { code, reason };
            let _ = send(&mut framed, &Message::Refused(refused)).await;
            return;
        }
    };
    // The database's mark, not only this collector's memory: with several collectors on one
    // database, another one may have stored later batches of this stream (the probe moved).
    let reader = ctx.reader.clone();
    let (site, stream) = (hello.site.as_str().to_string(), hello.stream);
    match tokio::task::spawn_blocking(move || reader.stream_mark(&site, stream)).await {
        Ok(Ok(Some(seq))) => ctx.dedup.raise(&hello.site, hello.stream, seq),
        Ok(Ok(None)) => {}
        // The commit's own check under a row lock still refuses a stale batch.
        Ok(Err(e)) => warn!(site = %hello.site, error = %e, "stream mark not read at hello"),
        Err(e) => warn!(site = %hello.site, error = %e, "stream mark read failed"),
    }
    let last_stored_seq = ctx.dedup.last(&hello.site, hello.stream);
    let now = now_ms();
    let welcome = Welcome {
        protocol_version: hello.protocol_version,
        collector_time_ms: now,
        last_stored_seq,
    };
    if let Err(e) = send(&mut framed, &Message::Welcome(welcome)).await {
        count_io_error(&ctx.metrics, &e);
        return;
    }
    ctx.sites.on_hello(
        site_idx,
        hello.protocol_version,
        &hello.probe_version,
        offset_ms,
        now,
    );
    if offset_ms.unsigned_abs() > ctx.sites.thresholds().max_clock_offset.as_millis() as u64 {
        warn!(site = %hello.site, offset_ms, "probe clock is off; its timestamps are corrected, but check the router's NTP");
    }
    ctx.metrics.probe_connections.inc();
    ctx.metrics
        .probe_sessions
        .with_label_values(&["opened"])
        .inc();
    debug!(site = %hello.site, %peer, version = hello.protocol_version, probe = %hello.probe_version, stream = hello.stream, "probe connected");
    let reason = session(&ctx, &mut framed, &hello, site_idx, &shutdown).await;
    // Flush and send TLS close_notify, so the probe sees a clean close rather than a cut.
    let _ =
        tokio::time::timeout(Duration::from_secs(1), SinkExt::<&[u8]>::close(&mut framed)).await;
    ctx.metrics.probe_connections.dec();
    ctx.metrics
        .probe_sessions
        .with_label_values(&["closed"])
        .inc();
    ctx.sites.on_disconnect(site_idx);
    debug!(site = %hello.site, %peer, reason, "probe disconnected");
}

type Refusal = (RefuseCode, &'static str, String);

async fn authenticate(ctx: &Context, hello: &Hello) -> Result<usize, Refusal> {
    let v = hello.protocol_version;
    if !(MIN_SUPPORTED_VERSION..=PROTOCOL_VERSION).contains(&v) {
        return Err((
            RefuseCode::UnsupportedVersion,
            "unsupported_version",
            format!("probe speaks protocol version {v}; this collector serves versions {MIN_SUPPORTED_VERSION} to {PROTOCOL_VERSION}: upgrade the {}", if v < MIN_SUPPORTED_VERSION { "probe" } else { "collector" }),
        ));
    }
    let Some(idx) = ctx.sites.inventory.site_index(&hello.site) else {
        return Err((
            RefuseCode::UnknownSite,
            "unknown_site",
            format!(
                "site {} is not in the collector's inventory; check site_id in the probe config",
                hello.site
            ),
        ));
    };
    let cred = ctx.sites.inventory.sites[idx].credential_ref.clone();
    let reader = ctx.reader.clone();
    let token = hello.token.clone();
    let verdict = tokio::task::spawn_blocking(move || reader.verify_token(&cred, &token)).await;
    match verdict {
        Ok(Ok(Verdict::Accepted)) => Ok(idx),
        Ok(Ok(Verdict::NotEnrolled)) => Err((
            RefuseCode::BadToken,
            "not_enrolled",
            format!("no credential was issued for site {}; run `rie-collector probe-config --site {}` and install the file it writes", hello.site, hello.site),
        )),
        Ok(Ok(Verdict::Mismatch)) => Err((
            RefuseCode::BadToken,
            "bad_token",
            format!("token refused for site {}; it was replaced or mistyped: install the latest probe config for this site", hello.site),
        )),
        Ok(Err(e)) => Err((RefuseCode::Overloaded, "store", format!("collector cannot check credentials now ({e}); retry later"))),
        Err(e) => Err((RefuseCode::Overloaded, "store", format!("collector cannot check credentials now ({e}); retry later"))),
    }
}

fn count_io_error(metrics: &Metrics, e: &std::io::Error) {
    // LengthDelimitedCodec reports an over-limit length prefix as InvalidData.
    let reason = if e.kind() == std::io::ErrorKind::InvalidData {
        "oversized"
    } else {
        "io"
    };
    metrics.frame_errors.with_label_values(&[reason]).inc();
}

type PendingAck = std::pin::Pin<
    Box<dyn std::future::Future<Output = (u64, Option<Result<Stored, String>>)> + Send>,
>;

/// Serves one authenticated probe; returns why it ended.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Context,
    framed: &mut Framed<S, LengthDelimitedCodec>,
    hello: &Hello,
    site_idx: usize,
    shutdown: &CancellationToken,
) -> &'static str {
    let mut pending: FuturesOrdered<PendingAck> = FuturesOrdered::new();
    let mut draining = false;
    loop {
        if draining && pending.is_empty() {
            return "collector shutting down";
        }
        tokio::select! {
            biased;
            Some((seq, res)) = pending.next(), if !pending.is_empty() => {
                let duplicate = match res {
                    Some(Ok(Stored::New)) => false,
                    Some(Ok(Stored::Duplicate)) => true,
                    // Not stored: close without ack, the probe will send it again.
                    Some(Err(_)) | None => return "store error",
                };
                if let Err(e) = send(framed, &Message::Ack(Ack { seq, duplicate })).await {
                    count_io_error(&ctx.metrics, &e);
                    return "write error";
                }
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
            }
            frame = tokio::time::timeout(ctx.cfg.idle_timeout, framed.next()), if !draining && pending.len() < WINDOW => {
                let bytes = match frame {
                    Err(_) => return "idle timeout",
                    Ok(None) => return "closed by probe",
                    Ok(Some(Err(e))) => {
                        count_io_error(&ctx.metrics, &e);
                        warn!(site = %hello.site, error = %e, "frame error, closing connection");
                        return "frame error";
                    }
                    Ok(Some(Ok(b))) => b,
                };
                let received_ms = now_ms();
                match rie_proto::decode(&bytes) {
                    Ok(Message::Batch(batch)) => {
                        let seq = batch.seq;
                        let (tx, rx) = oneshot::channel();
                        let write = BatchWrite {
                            site_idx,
                            site: hello.site.clone(),
                            stream: hello.stream,
                            batch,
                            received_ms,
                            reply: tx,
                        };
                        // Waits when the store is behind: backpressure, not buffering.
                        if ctx.commit.send(Request::Batch(write)).await.is_err() {
                            return "store stopped";
                        }
                        pending.push_back(Box::pin(async move { (seq, rx.await.ok()) }));
                    }
                    Ok(Message::Heartbeat(hb)) => {
                        ctx.metrics.heartbeats.inc();
                        ctx.sites.on_heartbeat(site_idx, hb.probe_time_ms - received_ms, hb.health, received_ms);
                        let ack = HeartbeatAck { probe_time_ms: hb.probe_time_ms, collector_time_ms: received_ms };
                        if let Err(e) = send(framed, &Message::HeartbeatAck(ack)).await {
                            count_io_error(&ctx.metrics, &e);
                            return "write error";
                        }
                    }
                    Ok(other) => {
                        warn!(site = %hello.site, kind = other.kind(), "unexpected message, closing connection");
                        ctx.metrics.frame_errors.with_label_values(&["unexpected"]).inc();
                        return "unexpected message";
                    }
                    Err(e) => {
                        warn!(site = %hello.site, error = %e, "malformed frame, closing connection");
                        ctx.metrics.frame_errors.with_label_values(&["malformed"]).inc();
                        return "malformed frame";
                    }
                }
            }
        }
    }
}

// --- configuration (`[probes]` of the collector config file) ---

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbesConfig {
    /// Address the probe listener binds.
    #[serde(default = "default_probe_listen")]
    pub listen: SocketAddr,
    /// Address probes dial, written into the probe configs `probe-config` produces
    /// (`host:port`; the host must be in the server certificate).
    #[serde(default = "default_public_address")]
    pub public_address: String,
    /// Upper bound on simultaneous probe connections (the RIE has about 14,000 sites).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time allowed for the TLS handshake and the hello.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no frame for this long is closed (probes heartbeat well within it).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest frame accepted, bytes.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        Self {
            listen: default_probe_listen(),
            public_address: default_public_address(),
            max_connections: default_max_connections(),
            handshake_timeout: default_handshake_timeout(),
            idle_timeout: default_idle_timeout(),
            max_frame_bytes: default_max_frame(),
        }
    }
}

fn default_probe_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}

fn default_public_address() -> String {
    "localhost:7443".into()
}

fn default_max_connections() -> usize {
    20_000
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(90)
}

fn default_max_frame() -> usize {
    rie_proto::MAX_FRAME_LEN
}

impl ProbesConfig {
    /// Checks values that parse but cannot work; `Err((key, message))` names the key in the
    /// collector's config file and a right value.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_connections == 0 {
            return Err((
                "probes.max_connections",
                "must be at least 1; e.g. 20000".into(),
            ));
        }
        if !(1024..=rie_proto::MAX_FRAME_LEN).contains(&self.max_frame_bytes) {
            return Err((
                "probes.max_frame_bytes",
                format!("must be between 1024 and {}", rie_proto::MAX_FRAME_LEN),
            ));
        }
        if rie_common::split_host_port(&self.public_address).is_none() {
            return Err((
                "probes.public_address",
                format!(
                    "{:?} is not host:port; e.g. \"collector.rie.gouv.fr:7443\"",
                    self.public_address
                ),
            ));
        }
        Ok(())
    }
}
