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
use std::net::IpAddr;
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

pub use rie_plan::{ChecksConfig, Target, TargetConfig};

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

/// Runs the checks: samples accumulate in `samples` (taken by the batch producer),
/// reachability per link in `reach`, and `changed` is notified when a link's reachability
/// flips so that the state change is sent at once. Cloning shares the same state: a new check
/// plan starts its jobs into the same samples ([`Checker::spawn`]) while the jobs of the plan
/// before finish their interval in progress, so that a change of plan loses no sample.
#[derive(Clone, Default)]
pub struct Checker {
    pub samples: Arc<Mutex<Vec<AvailabilitySample>>>,
    pub reach: Reach,
}

impl Checker {
    /// Starts one task per (target, link), until `shutdown`.
    pub fn start(
        cfg: &ChecksConfig,
        targets: Vec<(TargetConfig, Target)>,
        links: &[LinkConfig],
        changed: Arc<tokio::sync::Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        let c = Self::default();
        c.spawn(cfg, targets, links, changed, shutdown.clone(), shutdown);
        c
    }

    /// Starts one task per (target, link) of `links` into this checker's state. Each task
    /// stops at once at `shutdown`, and at `retire` once the interval it is measuring is
    /// complete and its sample taken.
    pub fn spawn(
        &self,
        cfg: &ChecksConfig,
        targets: Vec<(TargetConfig, Target)>,
        links: &[LinkConfig],
        changed: Arc<tokio::sync::Notify>,
        retire: CancellationToken,
        shutdown: CancellationToken,
    ) {
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
                let (samples, reach, answered, changed, retire, shutdown) = (
                    self.samples.clone(),
                    self.reach.clone(),
                    answered.clone(),
                    changed.clone(),
                    retire.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(async move {
                    job.run(ti, samples, reach, answered, changed, retire, shutdown)
                        .await
                });
            }
        }
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
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self,
        index: usize,
        samples: Arc<Mutex<Vec<AvailabilitySample>>>,
        reach: Reach,
        answered: Arc<Mutex<HashMap<LinkId, HashMap<usize, bool>>>>,
        changed: Arc<tokio::sync::Notify>,
        retire: CancellationToken,
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
            // Retired (a new plan is in force): the interval's sample is taken, stop here.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = retire.cancelled() => return,
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
}
