//! `rie-sim` command line: the demo (collector plus simulated probes on loopback) and the load
//! generator (simulated probes against a running collector). Exit codes: 0 success, 1 runtime
//! failure, 2 a problem in the user's flags, with a message naming the fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rie_common::{LogArgs, UserError};
use rie_sim::demo::{self, DemoOptions};
use rie_sim::fleet;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "rie-sim",
    version,
    about = "RIE telemetry simulator: the demo (collector plus simulated probes) and the load generator"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Collector plus simulated probes on loopback, through the real protocol: data in a minute.
    Demo {
        #[arg(long, default_value_t = 300)]
        sites: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this long (default: run until Ctrl-C).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Where to put inventory, PKI and database (default: a folder under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8480")]
        api_listen: SocketAddr,
        /// Chance per probe and interval that an incident starts.
        #[arg(long, default_value_t = 0.001)]
        incident_rate: f64,
    },
    /// API under a flood: p50/p99 of authenticated requests without, then during, a flood of
    /// bad ones (JSON report on stdout).
    ApiFlood(rie_sim::api_flood::FloodOptions),
    /// Load test: simulated probes against a running collector through the real TLS protocol;
    /// prints batches/s, ack latency percentiles and losses (JSON report on stdout).
    Loadgen {
        #[arg(long, default_value_t = 14_000)]
        probes: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        interval: Duration,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Latencies of the first part (the fleet connecting) are reported apart.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        warmup: Duration,
        /// Collector probe address (its certificate must name `localhost`); repeat it, or give a
        /// comma-separated list, for several collectors on one database: probe i starts on the
        /// (i mod n)-th and fails over to the others.
        #[arg(
            long = "collector",
            visible_alias = "address",
            required = true,
            value_delimiter = ','
        )]
        collectors: Vec<String>,
        /// The collector's CA certificate (pki/ca.pem).
        #[arg(long)]
        ca: PathBuf,
        /// The collector's data directory: tokens for the simulated sites are issued in its rie.db.
        #[arg(long)]
        data_dir: PathBuf,
        /// The collector's config file: tokens are issued in the store its [store] names
        /// (PostgreSQL included); without it, the SQLite rie.db of --data-dir.
        #[arg(long)]
        collector_config: Option<PathBuf>,
        /// The collector's inventory; its first --probes sites are simulated.
        #[arg(long)]
        inventory: PathBuf,
        /// The collector's /metrics URL, to count the batches it stored (repeat it, or a
        /// comma-separated list, for several collectors: summed).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 0.001)]
        incident_rate: f64,
        /// Simulate the sites after the first N of the inventory (several load generators on
        /// one inventory, e.g. one of older probes).
        #[arg(long, default_value_t = 0)]
        skip: usize,
        /// Protocol version the simulated probes speak: 1 for probes one version behind
        /// (sent no check plan, shown as such).
        #[arg(long, default_value_t = rie_proto::PROTOCOL_VERSION)]
        protocol_version: u16,
        /// A check kind the simulated probes cannot run (repeatable: icmp, tcp, dns, http), as
        /// an older probe build: plans using it are refused with the reason.
        #[arg(long = "lacks-check", value_parser = parse_kind)]
        lacks_checks: Vec<rie_proto::CheckKind>,
    },
    /// Internal: the demo's simulated probes, in their own process.
    #[command(hide = true)]
    DemoProbes {
        #[arg(long)]
        plan: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            rie_common::exit_code(e.chain(), rie_collector::is_user_start_error)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::DemoProbes { plan } => {
            let text =
                std::fs::read(&plan).with_context(|| format!("reading {}", plan.display()))?;
            let plan: fleet::ProbePlan =
                serde_json::from_slice(&text).context("demo probe plan")?;
            rie_common::raise_fd_limit(plan.sites.len() as u64 + 1_024);
            until_signal(|shutdown| fleet::run_probes(plan, shutdown))
        }
        Cmd::Loadgen {
            probes,
            interval,
            duration,
            warmup,
            collectors,
            ca,
            data_dir,
            collector_config,
            inventory,
            metrics,
            seed,
            incident_rate,
            skip,
            protocol_version,
            lacks_checks,
        } => {
            let store = match &collector_config {
                Some(p) => {
                    rie_collector::config::CollectorConfig::load(p)
                        .map_err(|e| UserError(e.to_string()))?
                        .store
                }
                None => rie_collector::store::StoreConfig::default(),
            };
            rie_collector::inventory::check_generated_sites(probes).map_err(UserError)?;
            if !(rie_proto::MIN_SUPPORTED_VERSION..=rie_proto::PROTOCOL_VERSION)
                .contains(&protocol_version)
            {
                return Err(UserError(format!(
                    "--protocol-version {protocol_version}: this build speaks {} to {}",
                    rie_proto::MIN_SUPPORTED_VERSION,
                    rie_proto::PROTOCOL_VERSION
                ))
                .into());
            }
            rie_common::raise_fd_limit(probes as u64 + 1_024);
            let opts = rie_sim::loadgen::LoadgenOptions {
                probes,
                interval,
                duration,
                warmup,
                addresses: collectors,
                ca,
                data_dir,
                store,
                inventory,
                metrics_urls: metrics,
                seed,
                incident_rate,
                skip,
                protocol_version,
                lacks_checks,
            };
            until_signal(|shutdown| async move {
                let report = rie_sim::loadgen::run(opts, shutdown).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
                Ok::<_, rie_sim::loadgen::LoadgenError>(())
            })
        }
        Cmd::ApiFlood(opts) => until_signal(|_shutdown| async move {
            let report = rie_sim::api_flood::run(opts).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            Ok::<_, reqwest::Error>(())
        }),
        Cmd::Demo {
            sites,
            seed,
            interval,
            duration,
            dir,
            api_listen,
            incident_rate,
        } => {
            rie_collector::inventory::check_generated_sites(sites).map_err(UserError)?;
            rie_common::raise_fd_limit(sites as u64 + 1_024);
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("rie-demo"));
            let opts = DemoOptions {
                sites,
                seed,
                interval,
                duration,
                dir,
                api_listen,
                incident_rate,
            };
            until_signal(|shutdown| demo::run(opts, shutdown))
        }
    }
}

fn parse_kind(s: &str) -> Result<rie_proto::CheckKind, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?} is not a check kind; use icmp, tcp, dns or http"))
}

/// Runs `task` on a fresh runtime with a shutdown token that Ctrl-C or SIGTERM cancels.
fn until_signal<F, Fut, E>(task: F) -> anyhow::Result<()>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    rie_common::runtime()
        .context("starting the async runtime")?
        .block_on(async move {
            let shutdown = CancellationToken::new();
            rie_common::cancel_on_signal(shutdown.clone());
            task(shutdown).await.map_err(anyhow::Error::from)
        })
}
