//! Simulated measurements for demos, load tests and end-to-end tests: plausible office traffic
//! scaled by the site's agent count, ICMP checks per link, and incidents (primary failure,
//! packet loss) drawn from a seeded generator so that a run can be replayed. (Probe silence is
//! not simulated here: a silent probe sends no heartbeat either, which is the uplink's part.)
//! Never enabled on a real site: the probe logs a warning when it is.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rie_proto::{AvailabilitySample, CheckKind, Direction, FlowAggregate, LinkId, LinkStatus};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateConfig {
    #[serde(default)]
    pub seed: u64,
    /// Agents on the site: traffic scales with it.
    #[serde(default = "default_agents")]
    pub agents: u32,
    pub primary_link: LinkId,
    #[serde(default)]
    pub backup_link: Option<LinkId>,
    /// Typical round-trip time to the core, ms (satellite sites: about 600).
    #[serde(default = "default_rtt")]
    pub rtt_ms: f64,
    /// Chance per interval that an incident starts (0 disables incidents).
    #[serde(default = "default_incident_rate")]
    pub incident_rate: f64,
}

fn default_agents() -> u32 {
    50
}
fn default_rtt() -> f64 {
    15.0
}
fn default_incident_rate() -> f64 {
    0.002
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incident {
    PrimaryDown,
    Loss,
}

/// Measurements of one interval.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    pub flows: Vec<FlowAggregate>,
    pub samples: Vec<AvailabilitySample>,
    pub links: Vec<LinkStatus>,
}

pub struct Simulator {
    cfg: SimulateConfig,
    rng: ChaCha8Rng,
    incident: Option<(Incident, u32)>,
}

impl Simulator {
    pub fn new(cfg: SimulateConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Self {
            cfg,
            rng,
            incident: None,
        }
    }

    /// Measurements of the interval that ended at `now_ms`.
    pub fn measure(&mut self, now_ms: i64, interval: Duration) -> Content {
        self.step_incident();
        let incident = self.incident.map(|(i, _)| i);
        let secs = interval.as_secs_f64();
        let minute = now_ms.div_euclid(60_000) * 60;
        // About 20 kB/s per agent on average, ±50 %.
        let total =
            (f64::from(self.cfg.agents) * 20_000.0 * secs * self.rng.gen_range(0.5..1.5)) as u64;
        let mut flows = Vec::new();
        for (protocol, share) in [(6u8, 0.80), (17, 0.17), (1, 0.01), (50, 0.02)] {
            for (direction, dshare) in [(Direction::Inbound, 0.75), (Direction::Outbound, 0.25)] {
                let bytes = (total as f64 * share * dshare) as u64;
                if bytes == 0 {
                    continue;
                }
                let avg_packet = if protocol == 1 { 84 } else { 900 };
                flows.push(FlowAggregate {
                    minute,
                    protocol,
                    direction,
                    exporter: None,
                    flows: (bytes / 40_000).max(1),
                    packets: (bytes / avg_packet).max(1),
                    bytes,
                    sampling_rate: 1,
                    port_class: rie_proto::PortClass::Unknown,
                });
            }
        }
        let primary_down = incident == Some(Incident::PrimaryDown);
        let mut links = vec![LinkStatus {
            link: self.cfg.primary_link.clone(),
            up: !primary_down,
            active: !primary_down,
            changed_ms: None,
        }];
        if let Some(b) = &self.cfg.backup_link {
            links.push(LinkStatus {
                link: b.clone(),
                up: true,
                active: primary_down,
                changed_ms: None,
            });
        }
        let start = now_ms.div_euclid(1000) - secs as i64;
        let samples = links
            .iter()
            .map(|l| {
                let sent = 10u32;
                let received = match (l.up, incident) {
                    (false, _) => 0,
                    (true, Some(Incident::Loss)) if l.active => 10 - self.rng.gen_range(1..=3),
                    _ => 10,
                };
                let rtt = (self.cfg.rtt_ms * self.rng.gen_range(0.9..1.3) * 1000.0) as u32;
                AvailabilitySample {
                    link: l.link.clone(),
                    check: CheckKind::Icmp,
                    target: "core".into(),
                    start,
                    interval_s: secs as u32,
                    sent,
                    received,
                    rtt_min_us: (received > 0).then_some(rtt * 9 / 10),
                    rtt_avg_us: (received > 0).then_some(rtt),
                    rtt_max_us: (received > 0).then_some(rtt * 13 / 10),
                    rtt_p95_us: (received > 0).then_some(rtt * 12 / 10),
                    jitter_us: (received > 0).then_some(rtt / 20),
                }
            })
            .collect();
        Content {
            flows,
            samples,
            links,
        }
    }

    fn step_incident(&mut self) {
        match &mut self.incident {
            Some((_, left)) if *left > 1 => *left -= 1,
            Some(_) => self.incident = None,
            None if self.cfg.incident_rate > 0.0
                && self.rng.gen_bool(self.cfg.incident_rate.min(1.0)) =>
            {
                let kind = if self.rng.gen_bool(0.6) {
                    Incident::PrimaryDown
                } else {
                    Incident::Loss
                };
                self.incident = Some((kind, self.rng.gen_range(6..30)));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(seed: u64, rate: f64) -> SimulateConfig {
        SimulateConfig {
            seed,
            agents: 100,
            primary_link: LinkId::new("S1-P").unwrap(),
            backup_link: Some(LinkId::new("S1-B").unwrap()),
            rtt_ms: 15.0,
            incident_rate: rate,
        }
    }

    #[test]
    fn same_seed_same_measurements() {
        let run = |seed| {
            let mut s = Simulator::new(cfg(seed, 0.1));
            (0..50)
                .map(|i| s.measure(i * 10_000, Duration::from_secs(10)))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn traffic_scales_with_agents_and_primary_failure_moves_to_backup() {
        let mut s = Simulator::new(cfg(1, 0.0));
        let c = s.measure(60_000, Duration::from_secs(10));
        let bytes: u64 = c.flows.iter().map(|f| f.bytes).sum();
        // 100 agents × 20 kB/s × 10 s × [0.5, 1.5)
        assert!((10_000_000..30_000_000).contains(&bytes), "{bytes}");
        assert!(c.links[0].active && !c.links[1].active);
        s.incident = Some((Incident::PrimaryDown, 3));
        let c = s.measure(70_000, Duration::from_secs(10));
        assert!(!c.links[0].up && c.links[1].active);
        assert_eq!(c.samples[0].received, 0);
    }
}
