//! Availability checks of each access link: ICMP echo, TCP connect, DNS resolution and HTTP(S)
//! GET towards configured targets (core points of presence, resolvers, the internet gateway),
//! each bound to one link (interface and/or source address), so that the backup is measured
//! while traffic flows over the primary.
//!
//! Every `interval`, each (target, link) pair runs `attempts` attempts spread over the interval
//! and yields one [`AvailabilitySample`] (sent, received, RTT min/avg/max/p95, jitter). The last
//! result per link also says whether the link reaches the core, which the link monitor
//! (`crate::links`) combines with the interface and routing state.

mod dns;
mod http;
mod icmp;
mod tcp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rie_proto::{AvailabilitySample, CheckKind, LinkId, LinkRole};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// One access link of the site, as the probe binds its checks to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The link's id in the national inventory, e.g. "S00042-P".
    pub id: LinkId,
    #[serde(default = "primary")]
    pub role: LinkRole,
    /// Router interface of the link, e.g. "eth1": checks are bound to it (SO_BINDTODEVICE,
    /// needs CAP_NET_RAW) and its state and default route are watched.
    #[serde(default)]
    pub interface: Option<String>,
    /// Source address of the link, when checks must leave from it (policy routing).
    #[serde(default)]
    pub source: Option<IpAddr>,
}

fn primary() -> LinkRole {
    LinkRole::Primary
}

/// What is checked, how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// One sample per target and link per interval.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Attempts per interval (pings, connects, queries, requests), spread over the interval.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// An attempt without an answer within this is lost.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            attempts: default_attempts(),
            timeout: default_timeout(),
            targets: Vec::new(),
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_attempts() -> u32 {
    5
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

/// One target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub kind: CheckKind,
    /// icmp: an address; tcp: `address:port`; dns: the resolver, `address[:port]`;
    /// http: a URL `http://host[:port]/path` or `https://...`.
    pub target: String,
    /// Label in reports, e.g. "core-rennes"; defaults to `target`.
    #[serde(default)]
    pub name: Option<String>,
    /// dns only: the name to resolve (an A record), e.g. "rie.gouv.fr".
    #[serde(default)]
    pub query: Option<String>,
    /// Links to check this target over; empty: every link.
    #[serde(default)]
    pub links: Vec<LinkId>,
}

/// A target ready to probe (validated at start-up).
#[derive(Debug, Clone)]
pub enum Target {
    Icmp(IpAddr),
    Tcp(SocketAddr),
    Dns { resolver: SocketAddr, name: String },
    Http(http::Url),
}

impl TargetConfig {
    /// Parses the target for its kind; the message says what a right value looks like.
    ///
    /// # Errors
    /// A message for the config error.
    pub fn parse(&self) -> Result<Target, String> {
        let t = self.target.trim();
        match self.kind {
            CheckKind::Icmp => t
                .parse()
                .map(Target::Icmp)
                .map_err(|_| format!("{t:?} is not an IP address; e.g. \"10.255.0.1\"")),
            CheckKind::Tcp => t
                .parse()
                .map(Target::Tcp)
                .map_err(|_| format!("{t:?} is not address:port; e.g. \"10.255.0.1:443\"")),
            CheckKind::Dns => {
                let resolver = t
                    .parse::<SocketAddr>()
                    .or_else(|_| t.parse::<IpAddr>().map(|a| SocketAddr::new(a, 53)))
                    .map_err(|_| {
                        format!("{t:?} is not a resolver address; e.g. \"10.255.0.53\"")
                    })?;
                let name =
                    self.query.clone().filter(|q| dns::valid_name(q)).ok_or(
                        "dns checks need `query`, a name to resolve; e.g. \"rie.gouv.fr\"",
                    )?;
                Ok(Target::Dns { resolver, name })
            }
            CheckKind::Http => http::Url::parse(t).map(Target::Http),
        }
    }

    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.target.clone())
    }
}

/// Where an attempt leaves from.
#[derive(Debug, Clone, Default)]
pub struct Binding {
    pub interface: Option<String>,
    pub source: Option<IpAddr>,
}

impl From<&LinkConfig> for Binding {
    fn from(l: &LinkConfig) -> Self {
        Self {
            interface: l.interface.clone(),
            source: l.source,
        }
    }
}

/// Why an attempt failed (logged at debug level; a failed attempt is a lost probe).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// One attempt of `target` over `bind`: the round-trip time, or why it failed.
///
/// # Errors
/// [`AttemptError`].
pub async fn attempt(
    target: &Target,
    bind: &Binding,
    timeout: Duration,
    seq: u16,
) -> Result<Duration, AttemptError> {
    let started = Instant::now();
    let run = async {
        match target {
            Target::Icmp(addr) => icmp::ping(*addr, bind, seq, timeout).await,
            Target::Tcp(addr) => tcp::connect(*addr, bind).await.map(drop),
            Target::Dns { resolver, name } => dns::resolve(*resolver, name, bind, seq).await,
            Target::Http(url) => http::get(url, bind).await,
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(AttemptError::Timeout(timeout)),
    }
}

/// RTT statistics of one interval, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RttStats {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
    pub p95: u32,
    /// Mean absolute difference between consecutive answers (RFC 3550's idea, unsmoothed).
    pub jitter: u32,
}

/// Statistics of the answered attempts, in the order they were made; `None` when none answered.
pub fn rtt_stats(rtts_us: &[u32]) -> Option<RttStats> {
    if rtts_us.is_empty() {
        return None;
    }
    let mut sorted = rtts_us.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    let sum: u64 = sorted.iter().map(|&r| u64::from(r)).sum();
    // Nearest-rank percentile: the smallest value with at least 95 % of answers at or below it.
    let rank = (n * 95).div_ceil(100).max(1);
    let jitter = if n > 1 {
        let d: u64 = rtts_us
            .windows(2)
            .map(|w| u64::from(w[0].abs_diff(w[1])))
            .sum();
        (d / (n as u64 - 1)) as u32
    } else {
        0
    };
    Some(RttStats {
        min: sorted[0],
        avg: (sum / n as u64) as u32,
        max: sorted[n - 1],
        p95: sorted[rank - 1],
        jitter,
    })
}

/// Whether each link reached the core in its last complete interval (any target answered).
pub type Reach = Arc<Mutex<HashMap<LinkId, bool>>>;

/// Runs the checks until `shutdown`: samples accumulate in `samples` (taken by the batch
/// producer), reachability per link in `reach`, and `changed` is notified when a link's
/// reachability flips so that the state change is sent at once.
pub struct Checker {
    pub samples: Arc<Mutex<Vec<AvailabilitySample>>>,
    pub reach: Reach,
}

impl Checker {
    /// Starts one task per (target, link).
    pub fn start(
        cfg: &ChecksConfig,
        targets: Vec<(TargetConfig, Target)>,
        links: &[LinkConfig],
        changed: Arc<tokio::sync::Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let reach: Reach = Arc::new(Mutex::new(HashMap::new()));
        // Per link, which targets answered in their last interval.
        let answered: Arc<Mutex<HashMap<LinkId, HashMap<usize, bool>>>> = Arc::default();
        for (ti, (tc, target)) in targets.into_iter().enumerate() {
            for link in links
                .iter()
                .filter(|l| tc.links.is_empty() || tc.links.contains(&l.id))
            {
                let job = Job {
                    kind: tc.kind,
                    label: tc.label(),
                    target: target.clone(),
                    link: link.id.clone(),
                    bind: Binding::from(link),
                    interval: cfg.interval,
                    attempts: cfg.attempts,
                    timeout: cfg.timeout,
                };
                let (samples, reach, answered, changed, shutdown) = (
                    samples.clone(),
                    reach.clone(),
                    answered.clone(),
                    changed.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(async move {
                    job.run(ti, samples, reach, answered, changed, shutdown)
                        .await
                });
            }
        }
        Self { samples, reach }
    }

    pub fn take_samples(&self) -> Vec<AvailabilitySample> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

struct Job {
    kind: CheckKind,
    label: String,
    target: Target,
    link: LinkId,
    bind: Binding,
    interval: Duration,
    attempts: u32,
    timeout: Duration,
}

impl Job {
    async fn run(
        self,
        index: usize,
        samples: Arc<Mutex<Vec<AvailabilitySample>>>,
        reach: Reach,
        answered: Arc<Mutex<HashMap<LinkId, HashMap<usize, bool>>>>,
        changed: Arc<tokio::sync::Notify>,
        shutdown: CancellationToken,
    ) {
        let spacing = self.interval / self.attempts.max(1);
        let mut seq: u16 = 0;
        loop {
            let start_ms = rie_common::now_ms();
            let started = tokio::time::Instant::now();
            let mut rtts = Vec::with_capacity(self.attempts as usize);
            for i in 0..self.attempts {
                let at = started + spacing * i;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(at) => {}
                }
                seq = seq.wrapping_add(1);
                match attempt(&self.target, &self.bind, self.timeout, seq).await {
                    Ok(rtt) => rtts.push(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX)),
                    Err(e) => {
                        tracing::debug!(link = %self.link, target = %self.label, error = %e, "check attempt failed")
                    }
                }
            }
            let stats = rtt_stats(&rtts);
            let sample = AvailabilitySample {
                link: self.link.clone(),
                check: self.kind,
                target: self.label.clone(),
                start: start_ms.div_euclid(1000),
                interval_s: u32::try_from(self.interval.as_secs()).unwrap_or(u32::MAX),
                sent: self.attempts,
                received: rtts.len() as u32,
                rtt_min_us: stats.map(|s| s.min),
                rtt_avg_us: stats.map(|s| s.avg),
                rtt_max_us: stats.map(|s| s.max),
                rtt_p95_us: stats.map(|s| s.p95),
                jitter_us: stats.map(|s| s.jitter),
            };
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
            // The link reaches the core while any of its targets answers.
            let ok = {
                let mut a = answered.lock().unwrap_or_else(|p| p.into_inner());
                let per = a.entry(self.link.clone()).or_default();
                per.insert(index, !rtts.is_empty());
                per.values().any(|v| *v)
            };
            let prev = reach
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.link.clone(), ok);
            if prev != Some(ok) {
                changed.notify_one();
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(started + self.interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_statistics_are_exact() {
        assert_eq!(rtt_stats(&[]), None);
        let s = rtt_stats(&[10, 30, 20, 40]).unwrap();
        assert_eq!(
            s,
            RttStats {
                min: 10,
                avg: 25,
                max: 40,
                p95: 40,
                jitter: (20 + 10 + 20) / 3,
            }
        );
        let hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(rtt_stats(&hundred).unwrap().p95, 95);
        assert_eq!(rtt_stats(&[7]).unwrap().jitter, 0);
    }

    #[test]
    fn targets_parse_per_kind_with_a_useful_error() {
        let t = |kind, target: &str, query: Option<&str>| TargetConfig {
            kind,
            target: target.into(),
            name: None,
            query: query.map(String::from),
            links: vec![],
        };
        assert!(matches!(
            t(CheckKind::Icmp, "10.255.0.1", None).parse(),
            Ok(Target::Icmp(_))
        ));
        assert!(t(CheckKind::Icmp, "core", None)
            .parse()
            .unwrap_err()
            .contains("e.g."));
        assert!(matches!(
            t(CheckKind::Dns, "10.0.0.53", Some("rie.gouv.fr")).parse(),
            Ok(Target::Dns { resolver, .. }) if resolver.port() == 53
        ));
        assert!(t(CheckKind::Dns, "10.0.0.53", None)
            .parse()
            .unwrap_err()
            .contains("query"));
        assert!(t(CheckKind::Tcp, "10.0.0.1", None).parse().is_err());
        assert!(matches!(
            t(CheckKind::Http, "http://10.0.0.1:8080/health", None).parse(),
            Ok(Target::Http(_))
        ));
        assert!(t(CheckKind::Http, "ftp://x", None).parse().is_err());
    }
}
