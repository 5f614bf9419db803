//! Central check plans on the probe (see `docs/plans.md`): the plan the collector pushes
//! replaces the `[checks]` of the probe's file, is applied live and survives restarts.
//!
//! Owns the plan in force and its file, `plan.json` next to the spool directory (the last plan
//! applied: version, hash, text). Receiving a plan ([`Plans::offer`], called by the uplink):
//!
//! 1. it is checked: its hash, its text parsed and validated by `rie-plan` (the same code as
//!    `rie-collector plan check`; an unknown check kind is refused here), every link of a role
//!    that has targets bound to an interface the router has;
//! 2. it is written to `plan.json` atomically (temporary file, fsync, rename, fsync of the
//!    directory), so that a crash leaves the previous plan or the new one, never half;
//! 3. its check jobs start into the same sample buffer, and the jobs of the plan before stop
//!    once their interval in progress is measured: no sample is lost, no batch is touched (the
//!    producer and the uplink run on), and nothing restarts.
//!
//! A plan refused at any step leaves the plan in force running; the reason goes back to the
//! collector. At start-up ([`Plans::start`]) the persisted plan, if readable and runnable,
//! is in force before the collector is reached; otherwise the file's `[checks]`.
//!
//! May import `rie-plan`, `rie-proto`, `rie-common`, and the probe's `checks`, `links` and
//! `uplink` (the [`PlanSink`] it implements).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rie_plan::{content_hash, EffectivePlan};
use rie_proto::{LinkRole, Plan};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::checks::{Checker, ChecksConfig, LinkConfig, Target, TargetConfig};
use crate::links::Sources;
use crate::uplink::PlanSink;

/// The file a plan is kept in, next to the spool directory.
pub fn plan_file(spool_dir: &Path) -> PathBuf {
    spool_dir.with_file_name("plan.json")
}

/// What `plan.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisted {
    pub version: u64,
    pub hash: String,
    pub toml: String,
    pub applied_ms: i64,
}

/// The checks in force, for the status file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InForce {
    /// 0: the probe file's own `[checks]`.
    pub version: u64,
    pub hash: String,
    /// `local` (the probe file), `persisted` (plan.json at start-up) or `collector`.
    pub source: String,
    /// `kind label over link`, one per check job.
    pub checks: Vec<String>,
    /// The last plan refused, and why.
    #[serde(default)]
    pub last_refused: Option<(u64, String)>,
}

pub struct Plans {
    file: PathBuf,
    links: Vec<LinkConfig>,
    kernel: Sources,
    checker: Checker,
    changed: Arc<Notify>,
    shutdown: CancellationToken,
    state: Mutex<State>,
}

struct State {
    /// Cancelled when the next plan takes over.
    retire: CancellationToken,
    in_force: InForce,
}

impl Plans {
    pub fn new(
        file: PathBuf,
        links: Vec<LinkConfig>,
        kernel: Sources,
        checker: Checker,
        changed: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            file,
            links,
            kernel,
            checker,
            changed,
            state: Mutex::new(State {
                retire: shutdown.child_token(),
                in_force: InForce::default(),
            }),
            shutdown,
        }
    }

    /// Starts the persisted plan when there is a runnable one, else the file's `[checks]`
    /// (`local`, already parsed by `ProbeConfig::resolve`).
    pub fn start(&self, local: &ChecksConfig, local_targets: Vec<(TargetConfig, Target)>) {
        match self.load_persisted() {
            Ok(Some((p, plan))) => {
                info!(version = p.version, file = %self.file.display(), "running the check plan kept from the last run");
                self.run(&plan, &p.hash, "persisted");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(file = %self.file.display(), error = %e, "kept check plan unusable; running the probe file's [checks] until the collector sends one")
            }
        }
        let mut st = self.lock();
        let labels = jobs(&local_targets, &self.links);
        self.checker.spawn(
            local,
            local_targets,
            &self.links,
            self.changed.clone(),
            st.retire.clone(),
            self.shutdown.clone(),
        );
        st.in_force = InForce {
            source: "local".into(),
            checks: labels,
            ..InForce::default()
        };
    }

    /// The checks in force.
    pub fn in_force(&self) -> InForce {
        self.lock().in_force.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn load_persisted(&self) -> Result<Option<(Persisted, EffectivePlan)>, String> {
        let bytes = match std::fs::read(&self.file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let p: Persisted = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let plan = self.check(p.version, &p.hash, &p.toml)?;
        Ok(Some((p, plan)))
    }

    /// Whether this probe can run the plan.
    fn check(&self, version: u64, hash: &str, text: &str) -> Result<EffectivePlan, String> {
        if content_hash(text) != hash {
            return Err(format!(
                "plan {version}: its text does not match its hash {hash} (damaged in transit or on disk)"
            ));
        }
        let plan = EffectivePlan::from_wire(text, version)
            .map_err(|e| format!("plan {version} cannot run on this probe: {e}"))?;
        for role in [LinkRole::Primary, LinkRole::Backup] {
            if plan.role(role).checks.targets.is_empty() {
                continue;
            }
            for l in self.links.iter().filter(|l| l.role == role) {
                if let Some(i) = &l.interface {
                    if self.kernel.interface(i).is_none() {
                        return Err(format!(
                            "plan {version} has {} checks, but link {} is bound to interface {i}, which this router does not have: fix `interface` of that [[links]] entry in the probe config",
                            role.as_str(),
                            l.id
                        ));
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Starts `plan`'s jobs and retires the ones in force.
    fn run(&self, plan: &EffectivePlan, hash: &str, source: &str) {
        let mut st = self.lock();
        st.retire.cancel();
        st.retire = self.shutdown.child_token();
        let mut labels = Vec::new();
        for role in [LinkRole::Primary, LinkRole::Backup] {
            let r = plan.role(role);
            let links: Vec<LinkConfig> = self
                .links
                .iter()
                .filter(|l| l.role == role)
                .cloned()
                .collect();
            // Validated by `check`: every target parses.
            let targets: Vec<(TargetConfig, Target)> = r
                .checks
                .targets
                .iter()
                .filter_map(|t| Some((t.clone(), t.parse().ok()?)))
                .collect();
            labels.extend(jobs(&targets, &links));
            self.checker.spawn(
                &r.checks,
                targets,
                &links,
                self.changed.clone(),
                st.retire.clone(),
                self.shutdown.clone(),
            );
        }
        let last_refused = st.in_force.last_refused.take();
        st.in_force = InForce {
            version: plan.version,
            hash: hash.to_string(),
            source: source.into(),
            checks: labels,
            last_refused,
        };
    }

    fn persist(&self, p: &Persisted) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(p).map_err(std::io::Error::other)?;
        let tmp = self.file.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.file)?;
        if let Some(dir) = self.file.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl PlanSink for Plans {
    fn offer(&self, msg: &Plan) -> Result<(), String> {
        let result = (|| -> Result<(), String> {
            {
                let st = self.lock();
                if st.in_force.version == msg.version && st.in_force.hash == msg.hash {
                    // Sent again after a reconnect: already running.
                    return Ok(());
                }
            }
            let plan = self.check(msg.version, &msg.hash, &msg.toml)?;
            let p = Persisted {
                version: msg.version,
                hash: msg.hash.clone(),
                toml: msg.toml.clone(),
                applied_ms: rie_common::now_ms(),
            };
            self.persist(&p).map_err(|e| {
                format!(
                    "plan {}: cannot keep it in {} ({e}); the plan in force stays",
                    msg.version,
                    self.file.display()
                )
            })?;
            self.run(&plan, &msg.hash, "collector");
            Ok(())
        })();
        if let Err(reason) = &result {
            self.lock().in_force.last_refused = Some((msg.version, reason.clone()));
        }
        result
    }
}

/// `kind label over link` for each (target, link) job, as `Checker::spawn` starts them.
fn jobs(targets: &[(TargetConfig, Target)], links: &[LinkConfig]) -> Vec<String> {
    let mut out = Vec::new();
    for (t, _) in targets {
        for l in links
            .iter()
            .filter(|l| t.links.is_empty() || t.links.contains(&l.id))
        {
            out.push(format!("{} {} over {}", t.kind.as_str(), t.label(), l.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rie_proto::LinkId;

    fn plans(dir: &Path, interface: Option<&str>) -> Plans {
        let links = vec![
            LinkConfig {
                id: LinkId::new("S1-P").unwrap(),
                role: LinkRole::Primary,
                interface: None,
                source: None,
            },
            LinkConfig {
                id: LinkId::new("S1-B").unwrap(),
                role: LinkRole::Backup,
                interface: interface.map(String::from),
                source: None,
            },
        ];
        let kernel = Sources {
            sys_class_net: dir.join("sys"),
            proc_net: dir.join("proc"),
        };
        Plans::new(
            dir.join("plan.json"),
            links,
            kernel,
            Checker::default(),
            Arc::new(Notify::new()),
            CancellationToken::new(),
        )
    }

    fn msg(version: u64, toml: &str) -> Plan {
        Plan {
            version,
            hash: content_hash(toml),
            toml: toml.into(),
        }
    }

    const PLAN: &str = "[primary]\ninterval = \"10s\"\n[[primary.targets]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:9\"\nname = \"core\"\n[backup]\n[[backup.targets]]\nkind = \"icmp\"\ntarget = \"127.0.0.1\"\n";

    #[tokio::test]
    async fn a_plan_is_applied_kept_and_reloaded_and_a_bad_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/eth2")).unwrap();
        std::fs::write(dir.path().join("sys/eth2/operstate"), "up\n").unwrap();
        let p = plans(dir.path(), Some("eth2"));
        p.start(&ChecksConfig::default(), vec![]);
        assert_eq!(p.in_force().source, "local");
        p.offer(&msg(3, PLAN)).unwrap();
        let f = p.in_force();
        assert_eq!((f.version, f.source.as_str()), (3, "collector"));
        assert_eq!(f.checks, ["tcp core over S1-P", "icmp 127.0.0.1 over S1-B"]);
        // Sent again after a reconnect: nothing changes.
        p.offer(&msg(3, PLAN)).unwrap();
        // An unknown check kind: refused, plan 3 stays.
        let e = p
            .offer(&msg(
                4,
                "[primary]\n[[primary.targets]]\nkind = \"twamp\"\ntarget = \"x\"\n",
            ))
            .unwrap_err();
        assert_eq!(e, "plan 4 cannot run on this probe: line 3, column 8: unknown variant `twamp`, expected one of `icmp`, `tcp`, `dns`, `http`");
        // A wrong hash: refused.
        let mut bad = msg(5, PLAN);
        bad.hash = content_hash("other");
        assert!(p
            .offer(&bad)
            .unwrap_err()
            .contains("does not match its hash"));
        let f = p.in_force();
        assert_eq!(f.version, 3);
        assert_eq!(f.last_refused.as_ref().map(|r| r.0), Some(5));
        // A fresh start reads plan 3 back from its file.
        let again = plans(dir.path(), Some("eth2"));
        again.start(&ChecksConfig::default(), vec![]);
        let f = again.in_force();
        assert_eq!((f.version, f.source.as_str()), (3, "persisted"));
        assert_eq!(f.checks.len(), 2);
    }

    #[tokio::test]
    async fn a_plan_for_a_missing_interface_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = plans(dir.path(), Some("eth9"));
        p.start(&ChecksConfig::default(), vec![]);
        let e = p.offer(&msg(1, PLAN)).unwrap_err();
        assert_eq!(e, "plan 1 has backup checks, but link S1-B is bound to interface eth9, which this router does not have: fix `interface` of that [[links]] entry in the probe config");
        assert_eq!(p.in_force().source, "local");
        assert!(!dir.path().join("plan.json").exists());
    }
}
