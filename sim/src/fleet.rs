//! The simulated fleet both jobs run: credentials issued per site, one simulated probe per
//! site (a `rie-flow` simulator feeding a real `rie-probe` producer and uplink over TLS), and
//! the [`Recorder`] that times every batch from send to acknowledgement.
//!
//! May import `rie-collector` (store, credentials, inventory, PKI types), `rie-probe`,
//! `rie-flow`, `rie-common`, `rie-proto`; `demo` and `loadgen` import it, never the reverse.

use rie_collector::inventory::{self};
use rie_collector::store::{self, credentials};
use rie_collector::{pki, StartError};
use rie_common::now_ms;
use rie_flow::simulate::{SimulateConfig, Simulator};
use rie_probe::runner::produce;
use rie_probe::session::{client_tls, Target};
use rie_probe::spool::MemoryOutbox;
use rie_probe::spool::{Outbox, OutboxState};
use rie_probe::uplink::PlanSink;
use rie_probe::uplink::{self, Identity, Settings, Stats};
use rie_proto::Batch;
use rie_proto::{CheckKind, LinkRole, Plan, SiteId, Technology};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo directory {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("demo set-up: {0}")]
    Setup(String),
}

/// Typical RTT to the core by access technology, ms.
fn rtt_of(t: Technology) -> f64 {
    match t {
        Technology::Fibre => 12.0,
        Technology::Xdsl => 28.0,
        Technology::FourG => 45.0,
        Technology::FiveG => 25.0,
        Technology::Satellite => 600.0,
    }
}

/// Issues a fresh token for each of `sites` in the store `store_cfg` names (SQLite: the
/// `rie.db` of `data_dir`), in one transaction (replacing, and so revoking, their previous
/// tokens). PostgreSQL runs on `handle`: call it off async tasks.
///
/// # Errors
/// Database errors.
pub fn issue_tokens(
    store_cfg: &store::StoreConfig,
    data_dir: &std::path::Path,
    handle: &tokio::runtime::Handle,
    sites: &[inventory::Site],
) -> Result<Vec<String>, store::StoreError> {
    let issued: Vec<(String, String)> = sites
        .iter()
        .map(|s| (s.credential_ref.clone(), credentials::new_token()))
        .collect();
    credentials::issue(store_cfg, data_dir, handle, &issued, now_ms())?;
    Ok(issued.into_iter().map(|(_, t)| t).collect())
}

/// One simulated probe per site of `sites` (in order, zipped with `tokens`), its links and RTT
/// from the inventory; sites without a primary link are left out.
pub fn sim_sites(
    inv: &inventory::Inventory,
    sites: &[inventory::Site],
    tokens: Vec<String>,
    seed: u64,
    incident_rate: f64,
) -> Vec<SimSite> {
    sites
        .iter()
        .zip(tokens)
        .enumerate()
        .filter_map(|(i, (site, token))| {
            let links: Vec<_> = inv.links_of(&site.id).collect();
            let primary = links.iter().find(|l| l.role == LinkRole::Primary)?;
            Some(SimSite {
                token,
                sim: SimulateConfig {
                    seed: seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                    agents: site.agents,
                    primary_link: primary.id.clone(),
                    backup_link: links
                        .iter()
                        .find(|l| l.role == LinkRole::Backup)
                        .map(|l| l.id.clone()),
                    rtt_ms: rtt_of(primary.technology),
                    incident_rate,
                },
                site: site.id.clone(),
            })
        })
        .collect()
}

/// What the probe process simulates: one entry per site, with its credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbePlan {
    /// Collector probe addresses (`host:port`, certificates naming `localhost`), all on one
    /// database. Probe `i` lists them starting at `i mod n` ([`rotated`]), so that the fleet
    /// spreads over them and each probe fails over to the others.
    pub addresses: Vec<String>,
    pub ca_pem: String,
    pub interval_ms: u64,
    pub sites: Vec<SimSite>,
    /// Protocol version the simulated probes speak (1: a probe one version behind, which is
    /// sent no plan and runs its local checks).
    #[serde(default = "current_version")]
    pub protocol_version: u16,
    /// Check kinds these simulated probes cannot run, as an older probe build: a plan that
    /// uses one is refused with the reason.
    #[serde(default)]
    pub lacks_checks: Vec<CheckKind>,
}

fn current_version() -> u16 {
    rie_proto::PROTOCOL_VERSION
}

/// A simulated probe's answer to check plans: checked as a real probe checks them (hash,
/// `rie-plan` parsing and validation), refused when a role uses a check kind of
/// `lacks`, and otherwise applied (simulated probes measure with their simulator, so applying
/// is remembering the version).
pub struct SimPlans {
    lacks: Vec<CheckKind>,
    pub applied: AtomicU64,
}

impl SimPlans {
    pub fn new(lacks: Vec<CheckKind>) -> Self {
        Self {
            lacks,
            applied: AtomicU64::new(0),
        }
    }
}

impl PlanSink for SimPlans {
    fn offer(&self, msg: &Plan) -> Result<(), String> {
        let v = msg.version;
        if rie_plan::content_hash(&msg.toml) != msg.hash {
            return Err(format!("plan {v}: its text does not match its hash"));
        }
        let plan = rie_plan::EffectivePlan::from_wire(&msg.toml, v)
            .map_err(|e| format!("plan {v} cannot run on this probe: {e}"))?;
        for role in [LinkRole::Primary, LinkRole::Backup] {
            if let Some(t) = plan
                .role(role)
                .checks
                .targets
                .iter()
                .find(|t| self.lacks.contains(&t.kind))
            {
                return Err(format!(
                    "plan {v} has a {} check ({} target {}), which this probe build cannot run: upgrade the probe, or leave {} checks out of this scope's plan",
                    t.kind.as_str(),
                    role.as_str(),
                    t.label(),
                    t.kind.as_str()
                ));
            }
        }
        self.applied.store(v, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimSite {
    pub site: SiteId,
    pub token: String,
    pub sim: SimulateConfig,
}

/// Starts `rie-sim demo-probes` on a plan file. The probes live in their own process so
/// that each side of 14,000 connections has its own file-descriptor budget, as in real life.
pub async fn spawn_probe_process(
    plan: &ProbePlan,
    dir: &std::path::Path,
) -> Result<tokio::process::Child, DemoError> {
    let path = dir.join("probe-plan.json");
    let io = |source| DemoError::Io {
        dir: path.display().to_string(),
        source,
    };
    // It holds every site's token: owner-only.
    let json = serde_json::to_vec(plan).map_err(|e| DemoError::Setup(e.to_string()))?;
    pki::write_with_mode(&path, &json, 0o600).map_err(io)?;
    let exe = std::env::current_exe().map_err(io)?;
    tokio::process::Command::new(exe)
        .args(["--log-level", "warn", "demo-probes", "--plan"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io)
}

/// Body of `rie-sim demo-probes`: runs every simulated probe of the plan until stdin
/// closes (the demo stopping, or dying) or `shutdown`.
///
/// # Errors
/// [`DemoError::Setup`] when the plan is unusable.
pub async fn run_probes(plan: ProbePlan, shutdown: CancellationToken) -> Result<(), DemoError> {
    let stdin_closed = shutdown.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        stdin_closed.cancel();
    });
    let tasks = spawn_probes(plan, None, shutdown.clone(), shutdown.clone())?;
    shutdown.cancelled().await;
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    Ok(())
}

/// Starts one simulated probe (producer + uplink) per site of the plan, spread over the first
/// seconds as a real fleet would arrive. Producers stop on `stop_producing`, uplinks on
/// `shutdown` (after delivering what they hold, within the uplink's drain time). When
/// `recorder` is given, every batch's send-to-ack latency is recorded (load generator).
///
/// # Errors
/// [`DemoError::Setup`] when the plan is unusable.
pub fn spawn_probes(
    plan: ProbePlan,
    recorder: Option<Arc<Recorder>>,
    stop_producing: CancellationToken,
    shutdown: CancellationToken,
) -> Result<tokio_util::task::TaskTracker, DemoError> {
    if plan.addresses.is_empty() {
        return Err(DemoError::Setup(
            "no collector address: give at least one --collector host:port".into(),
        ));
    }
    let server_name =
        ServerName::try_from("localhost").map_err(|e| DemoError::Setup(e.to_string()))?;
    let tls = client_tls(plan.ca_pem.as_bytes()).map_err(DemoError::Setup)?;
    let targets: Vec<Target> = plan
        .addresses
        .iter()
        .map(|address| Target {
            address: address.clone(),
            server_name: server_name.clone(),
            tls: tls.clone(),
            connect_timeout: Duration::from_secs(30),
        })
        .collect();
    let interval = Duration::from_millis(plan.interval_ms.max(100));
    let settings = Settings {
        reconnect_min: Duration::from_secs(1),
        reconnect_max: Duration::from_secs(30),
        heartbeat_interval: interval * 2,
        max_in_flight: 8,
        replay_rate: 20.0,
    };
    // Spread the connections over a few seconds, as a real fleet would arrive.
    let spread = interval.min(Duration::from_secs(5));
    let n = plan.sites.len().max(1);
    let tasks = tokio_util::task::TaskTracker::new();
    let (version, lacks) = (plan.protocol_version, plan.lacks_checks);
    for (i, s) in plan.sites.into_iter().enumerate() {
        let out = Timed::new(MemoryOutbox::new(1_000), recorder.clone());
        let mut id = Identity::new(s.site, s.token, out.stream());
        id.protocol_version = version;
        let plans: Arc<dyn PlanSink> = Arc::new(SimPlans::new(lacks.clone()));
        let (tx, rx) = mpsc::channel(16);
        let delay = spread.mul_f64(i as f64 / n as f64);
        let (targets, settings, shutdown) =
            (rotated(&targets, i), settings.clone(), shutdown.clone());
        let stop_producing = stop_producing.clone();
        let sim = Simulator::new(s.sim);
        let inner = tasks.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            inner.spawn(uplink::run(
                targets,
                id,
                settings,
                rx,
                out,
                Arc::new(Stats::default()),
                Some(plans),
                shutdown.clone(),
            ));
            produce(Some(sim), None, interval, tx, None, stop_producing).await;
        });
    }
    Ok(tasks)
}

/// `list` starting at its element `i mod len` and wrapping around: probe `i`'s collectors in
/// order of preference.
pub fn rotated<T: Clone>(list: &[T], i: usize) -> Vec<T> {
    let k = if list.is_empty() { 0 } else { i % list.len() };
    list[k..].iter().chain(&list[..k]).cloned().collect()
}

/// Counters shared by every simulated probe.
#[derive(Default)]
pub struct Recorder {
    pub produced: AtomicU64,
    pub acked: AtomicU64,
    /// Set once the warm-up is over: later latencies are the steady state's.
    pub(crate) steady: std::sync::atomic::AtomicBool,
    /// (latency µs, steady) since the last [`Recorder::take`].
    latencies: Mutex<Vec<(u32, bool)>>,
}

impl Recorder {
    fn record(&self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let steady = self.steady.load(Ordering::Relaxed);
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((us, steady));
    }

    /// The latencies recorded since the last call.
    pub(crate) fn take(&self) -> Vec<(u32, bool)> {
        std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// An outbox that times each batch from its first send to its acknowledgement.
pub struct Timed<O> {
    inner: O,
    sent: BTreeMap<u64, Instant>,
    rec: Option<Arc<Recorder>>,
}

impl<O: Outbox> Timed<O> {
    pub fn new(inner: O, rec: Option<Arc<Recorder>>) -> Self {
        Self {
            inner,
            sent: BTreeMap::new(),
            rec,
        }
    }
}

impl<O: Outbox> Outbox for Timed<O> {
    fn stream(&self) -> u64 {
        self.inner.stream()
    }
    fn append(&mut self, batch: Batch) -> u64 {
        if let Some(r) = &self.rec {
            r.produced.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.append(batch)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&mut self, i: usize) -> Option<Batch> {
        let b = self.inner.get(i)?;
        if self.rec.is_some() {
            self.sent.entry(b.seq).or_insert_with(Instant::now);
        }
        Some(b)
    }
    fn ack(&mut self, seq: u64) {
        let before = self.inner.len();
        self.inner.ack(seq);
        if let Some(r) = &self.rec {
            r.acked
                .fetch_add((before - self.inner.len()) as u64, Ordering::Relaxed);
            let later = self.sent.split_off(&(seq + 1));
            for (_, at) in std::mem::replace(&mut self.sent, later) {
                r.record(at.elapsed());
            }
        }
    }
    fn state(&self) -> OutboxState {
        self.inner.state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_spread_over_the_collectors_in_turn() {
        let list = ["a", "b", "c"];
        assert_eq!(rotated(&list, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&list, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&list, 5), ["c", "a", "b"]);
        assert_eq!(rotated(&["a"], 7), ["a"]);
        assert!(rotated::<&str>(&[], 3).is_empty());
    }
}
