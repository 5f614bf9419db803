//! Wires the collector together: inventory, store, probe listener, API, under one cancellation
//! token. `main` and the tests start the collector through [`run`] the same way.
//!
//! Owns: the order of start-up (config check, inventory, PKI, store open and resume, commit
//! stage thread, sinks, compactor, the shared-database duties of `duties`, the finance duty,
//! listeners) and of
//! shutdown (inputs stop, the commit stage drains its queue, sinks flush). May import every module of the crate; only `main` and the
//! tests (and `rie-sim`) import it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::commit::{self, CommitStage, Request};
use crate::config::CollectorConfig;
use crate::ingest::probe_stream;
use crate::inventory::{self, Inventory, InventoryError};
use crate::metrics::Metrics;
use crate::pki::{self, PkiError};
use crate::sinks::influx::InfluxSink;
use crate::sites::SiteRegistry;
use crate::store::{self, StoreError};
use crate::{api, config::ConfigError};

/// Why the collector could not start. Config and inventory errors are the user's to fix
/// (exit code 2); the others are environment problems.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Influx(#[from] crate::sinks::influx::SinkError),
    #[error(transparent)]
    Oidc(#[from] crate::auth::oidc::OidcStartError),
    #[error(transparent)]
    Netflow(#[from] crate::ingest::netflow_udp::NetflowStartError),
    #[error(transparent)]
    Sflow(#[from] crate::ingest::sflow_udp::SflowStartError),
    #[error(
        "data_dir {path}: {source}; create it or set data_dir (--data-dir) to a writable directory"
    )]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} ({what}): {source}; free the port or set another address")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// True when the fix is in the user's files (config, inventory, certificates).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            StartError::Config(_)
                | StartError::DataDir { .. }
                | StartError::Inventory(_)
                | StartError::Pki(_)
                | StartError::Oidc(_)
                | StartError::Influx(crate::sinks::influx::SinkError::Client(_))
        ) || matches!(self, StartError::Store(e) if e.is_user_error())
    }
}

/// True when `e` is a [`StartError`] whose fix is in the user's files: for a binary's
/// [`rie_common::exit_code`].
pub fn is_user_start_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<StartError>()
        .is_some_and(StartError::is_user_error)
}

/// A started collector.
pub struct Running {
    pub probe_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// UDP address of the NetFlow input, when `netflow.listen` is set.
    pub netflow_addr: Option<SocketAddr>,
    /// UDP address of the sFlow input, when `sflow.listen` is set.
    pub sflow_addr: Option<SocketAddr>,
    pub sites: Arc<SiteRegistry>,
    pub metrics: Arc<Metrics>,
    /// The InfluxDB sink when `[influx]` is configured (e.g. to queue episode points).
    pub influx: Option<InfluxSink>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The commit stage thread: joined at shutdown once every input has stopped sending.
    commit_stage: std::thread::JoinHandle<()>,
    netflow: Option<std::thread::JoinHandle<()>>,
    sflow: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for shutdown to be requested and completed: connections answer what they have,
    /// the NetFlow lanes flush, the commit stage drains its queue and commits, then this returns.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        self.tracker.wait().await;
        let commit_stage = self.commit_stage;
        let _ = tokio::task::spawn_blocking(move || commit_stage.join()).await;
        for input in [self.netflow, self.sflow].into_iter().flatten() {
            let _ = tokio::task::spawn_blocking(move || input.join()).await;
        }
        if let Some(sink) = self.influx {
            sink.finish().await;
        }
        info!("collector stopped");
    }
}

/// Loads the inventory for `cfg`.
///
/// # Errors
/// [`InventoryError`] naming file, line and column.
pub fn load_inventory(cfg: &CollectorConfig) -> Result<Inventory, InventoryError> {
    inventory::load_dir(&cfg.inventory)
}

/// Binds `addr`; returns the listener and the address it got (port 0 picks a free one).
async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Bind { addr, what, source };
    let l = TcpListener::bind(addr).await.map_err(err)?;
    let local = l.local_addr().map_err(err)?;
    Ok((l, local))
}

/// Starts the collector; it runs until `shutdown` is cancelled.
///
/// # Errors
/// [`StartError`] for bad config, inventory, certificates, database or ports.
pub async fn run(cfg: CollectorConfig, shutdown: CancellationToken) -> Result<Running, StartError> {
    cfg.validate()?;
    let inventory = Arc::new(load_inventory(&cfg)?);
    let costs = Arc::new(crate::indicators::CostModel::load_or_default(
        cfg.costs.as_deref(),
    )?);
    let backup_prices = Arc::new(
        crate::indicators::resilience_plan::BackupPrices::load_or_default(
            cfg.backup_prices.as_deref(),
        )?,
    );
    let tls = pki::server_config(&cfg.tls.pki_dir)?;
    let metrics_early = Arc::new(Metrics::new());
    let api_tls = cfg.api.tls.as_ref().map(api::serve::load_tls).transpose()?;
    // Provider discovery at start-up: a wrong issuer or client stops the collector here.
    let login = match &cfg.auth.oidc {
        None => None,
        Some(o) => {
            let secure = cfg.api.tls.is_some() || cfg.api.behind_proxy;
            let oidc =
                crate::auth::oidc::Oidc::start(o.clone(), &cfg.auth.roles, &inventory, secure)
                    .await
                    .map_err(|e| {
                        let file = cfg.source.as_ref().map_or_else(
                            || "command line".to_string(),
                            |p| p.display().to_string(),
                        );
                        ConfigError::invalid(file, &e.key, e.message)
                    })?;
            if let Err(e) = oidc.metrics.register(&metrics_early.registry) {
                tracing::warn!(error = %e, "OpenID Connect metrics not registered");
            }
            Some(Arc::new(oidc))
        }
    };
    // Holds the SQLite store, or only the InfluxDB sink's backlog on PostgreSQL.
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| StartError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    let db = cfg.db_path();
    let metrics = metrics_early;
    let sites = Arc::new(SiteRegistry::new(inventory.clone(), cfg.sites.clone()));
    // Opened off the async task: the PostgreSQL backend bridges with `Handle::block_on`.
    let (opened, resumed) = {
        let (store_cfg, data_dir, sites) = (cfg.store.clone(), cfg.data_dir.clone(), sites.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut opened = store::open_backend(&store_cfg, &data_dir, &handle)?;
            let resumed = commit::resume(opened.store.as_mut(), &sites)?;
            Ok::<_, StoreError>((opened, resumed))
        })
        .await
        .map_err(|_| StoreError::Closed)??
    };
    let store::Opened {
        store,
        reader,
        backend,
    } = opened;
    let commit::Resumed {
        dedup,
        silence,
        templates,
    } = resumed;
    metrics
        .registry
        .register(Box::new(crate::site_gauges::SiteGauges::new(sites.clone())))
        .expect("site gauge names are unique");

    let (probe_listener, probe_addr) = bind(cfg.probes.listen, "probes.listen").await?;
    let (api_listener, api_addr) = bind(cfg.api.listen, "api.listen").await?;

    let tracker = TaskTracker::new();
    let (commit_tx, commit_rx) = mpsc::channel(cfg.store.queue);
    // Alone on SQLite, this collector is the leader; sharing PostgreSQL, it follows the
    // others' site states and campaigns for the duties that run once (`duties`).
    let shared_pg = match (backend, &cfg.store.postgres) {
        (store::config::Backend::Postgres, Some(pg)) => Some(pg.clone()),
        _ => None,
    };
    let mut stage = CommitStage::new(
        store,
        dedup.clone(),
        silence,
        sites.clone(),
        metrics.clone(),
        cfg.store.commit_max_batches,
    );
    let leadership = match &shared_pg {
        Some(_) => crate::duties::Leadership::follower(metrics.leader.clone()),
        None => crate::duties::Leadership::always(metrics.leader.clone()),
    };
    stage = stage.leadership(leadership.clone());
    if shared_pg.is_some() {
        // A quarter of the silence threshold: a heartbeat-only site is stored well before
        // another collector would take it for silent.
        stage =
            stage.share_seen((cfg.sites.silent_after / 4).max(std::time::Duration::from_secs(1)));
    }
    let influx = crate::sinks::influx::start(
        &cfg.influx,
        &cfg.data_dir,
        reader.clone(),
        sites.clone(),
        &metrics,
        &shutdown,
        &tracker,
    )?;
    let influx = match influx {
        Some((sink, hook)) => {
            stage = stage.sink(Box::new(crate::sinks::InfluxFanout {
                sink: sink.clone(),
                hook,
            }));
            Some(sink)
        }
        None => None,
    };
    let thread_err = |e: std::io::Error| StoreError::Open {
        path: db.display().to_string(),
        source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
    };
    let commit_stage = std::thread::Builder::new()
        .name("commit-stage".into())
        .spawn(move || stage.run(commit_rx))
        .map_err(thread_err)?;

    // Silence has no input of its own: a ticker asks the commit stage to scan once a second.
    // `try_send`: when the queue is full the stage is busy and the next tick comes soon.
    let ticker_tx = commit_tx.clone();
    let ticker_stop = shutdown.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker_stop.cancelled() => break,
                _ = tick.tick() => {
                    let _ = ticker_tx.try_send(Request::SilenceScan);
                }
            }
        }
    });

    // Compaction runs once among collectors sharing a database: on the leader.
    let compactor = match &shared_pg {
        Some(pg) => {
            let (pg, handle, retention) = (
                pg.clone(),
                tokio::runtime::Handle::current(),
                cfg.store.retention.clone(),
            );
            tokio::task::spawn_blocking(move || {
                store::retention::Compactor::postgres(&pg, &handle, retention)
            })
            .await
            .map_err(|_| StoreError::Closed)??
        }
        None => store::retention::Compactor::new(store::open(&db)?, cfg.store.retention.clone())
            .map_err(StoreError::Sql)?,
    };
    let compactor = {
        let leadership = leadership.clone();
        compactor.only_while(move || leadership.is_leader())
    };
    let compactor_stop = shutdown.clone();
    std::thread::Builder::new()
        .name("store-compaction".into())
        .spawn(move || compactor.run(compactor_stop))
        .map_err(thread_err)?;

    let netflow = match cfg.netflow.listen {
        Some(listen) => Some(crate::ingest::netflow_udp::start(
            &cfg.netflow,
            listen,
            crate::ingest::netflow_udp::Templates {
                persisted: &templates,
                // Several collectors may share PostgreSQL: templates another one committed.
                shared: (backend == store::config::Backend::Postgres).then(|| reader.clone()),
            },
            commit_tx.clone(),
            inventory.clone(),
            metrics.clone(),
            shutdown.clone(),
        )?),
        None => None,
    };
    let netflow_addr = netflow.as_ref().map(|n| n.addr);
    let netflow = netflow.map(|n| n.thread);
    let sflow = match cfg.sflow.listen {
        Some(listen) => Some(crate::ingest::sflow_udp::start(
            &cfg.sflow,
            listen,
            commit_tx.clone(),
            inventory.clone(),
            metrics.clone(),
            shutdown.clone(),
        )?),
        None => None,
    };
    let sflow_addr = sflow.as_ref().map(|s| s.addr);
    let sflow = sflow.map(|s| s.thread);

    // Late in the start: what follows cannot fail, so a failed start leaves no listener or
    // campaign behind.
    if let Some(pg) = &shared_pg {
        crate::duties::start_shared(pg, sites.clone(), leadership.clone(), &shutdown, &tracker);
    }
    crate::finance::start(
        crate::finance::Duty {
            cfg: cfg.finance.clone(),
            reader: reader.clone(),
            inventory: inventory.clone(),
            model: costs.clone(),
            prices: backup_prices.clone(),
            influx: influx.clone(),
            leadership: leadership.clone(),
            metrics: crate::finance::FinanceMetrics::register(&metrics.registry),
        },
        &shutdown,
        &tracker,
    );

    // Check plans: loaded now, then watched for changes by any collector or `plan add`.
    let (plan_book, plan_status_rx) =
        crate::plans::PlanBook::new(inventory.clone(), reader.clone());
    let plan_book = Arc::new(plan_book);
    // A site's plan gives the degraded thresholds of its links, by role.
    sites.use_plan_thresholds(plan_book.clone());
    {
        let b = plan_book.clone();
        match tokio::task::spawn_blocking(move || b.reload()).await {
            Ok(Ok(v)) if v > 0 => info!(version = v, "check plans loaded"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "check plans not read at start; retried every second")
            }
            Err(e) => tracing::warn!(error = %e, "check plans not read at start"),
        }
    }
    tracker.spawn(crate::plans::watch(plan_book.clone(), shutdown.clone()));
    // Staged rollouts: every collector looks; a wave is written once (revision check).
    tracker.spawn(crate::plans::rollout::drive(
        plan_book.clone(),
        sites.clone(),
        crate::plans::rollout::RolloutMetrics::register(&metrics.registry),
        shutdown.clone(),
    ));
    tracker.spawn(crate::plans::StatusWriter::run(
        reader.clone(),
        plan_status_rx,
        shutdown.clone(),
    ));

    let ctx = Arc::new(probe_stream::Context {
        cfg: cfg.probes.clone(),
        acceptor: TlsAcceptor::from(tls),
        sites: sites.clone(),
        reader: reader.clone(),
        dedup: dedup.clone(),
        commit: commit_tx,
        metrics: metrics.clone(),
        hello_limiter: Arc::new(crate::auth::limit::FailureLimiter::new(
            cfg.auth.max_failures_per_minute,
            std::time::Duration::from_secs(60),
        )),
        plans: plan_book.clone(),
    });
    tracker.spawn(probe_stream::run(
        probe_listener,
        ctx,
        shutdown.clone(),
        tracker.clone(),
    ));

    let auth_metrics = crate::auth::gate::AuthMetrics::new();
    if let Err(e) = auth_metrics.register(&metrics.registry) {
        tracing::warn!(error = %e, "authentication metrics not registered");
    }
    let audit_metrics = crate::auth::audit::AuditMetrics::new();
    if let Err(e) = audit_metrics.register(&metrics.registry) {
        tracing::warn!(error = %e, "audit metrics not registered");
    }
    let (auditor, audit_task) = crate::auth::audit::Auditor::start(
        reader.clone(),
        std::time::Duration::from_secs(86_400 * u64::from(cfg.auth.audit_retention_days)),
        audit_metrics,
        shutdown.clone(),
    );
    tracker.spawn(async move {
        let _ = audit_task.await;
    });
    let mut gate = crate::auth::gate::Gate::new(
        cfg.auth.required(cfg.api.listen, cfg.api.behind_proxy),
        reader.clone(),
        inventory.clone(),
        auth_metrics,
    )
    .with(
        auditor,
        cfg.auth.max_failures_per_minute,
        if cfg.api.behind_proxy {
            cfg.api.trusted_proxies.clone()
        } else {
            Vec::new()
        },
    );
    // Sessions of people: a provider's login or a local account's. With a provider, its
    // timeouts apply to both; without, the same defaults.
    let (idle, absolute, secure) = match &login {
        Some(oidc) => (
            oidc.config().session_idle,
            oidc.config().session_absolute,
            oidc.secure,
        ),
        None => (
            crate::auth::oidc::default_idle(),
            crate::auth::oidc::default_absolute(),
            cfg.api.tls.is_some() || cfg.api.behind_proxy,
        ),
    };
    gate = gate.with_sessions(Arc::new(crate::auth::session::Sessions::new(
        reader.clone(),
        inventory.clone(),
        idle,
        absolute,
        secure,
    )));
    let local = Arc::new(crate::auth::local::LocalLogins::new());
    if let Err(e) = local.register(&metrics.registry) {
        tracing::warn!(error = %e, "local login metrics not registered");
    }
    let gate = Arc::new(gate);
    let app = api::router(api::AppState {
        sites: sites.clone(),
        reader,
        metrics: metrics.clone(),
        costs,
        gate,
        backup_prices,
        national: Default::default(),
        login,
        local,
        plans: plan_book,
    });
    tracker.spawn(api::serve::serve(
        api_listener,
        app,
        cfg.api.clone(),
        api_tls,
        shutdown.clone(),
    ));
    info!(
        probes = %probe_addr,
        api = %api_addr,
        sites = inventory.sites.len(),
        agents = inventory.total_agents(),
        db = %cfg.db_path().display(),
        "collector started"
    );
    Ok(Running {
        probe_addr,
        api_addr,
        netflow_addr,
        sflow_addr,
        sites,
        metrics,
        influx,
        shutdown,
        tracker,
        commit_stage,
        netflow,
        sflow,
    })
}
