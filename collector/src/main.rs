//! `rie-collector` command line. Exit codes: 0 success, 1 runtime failure, 2 a problem in the
//! user's files or flags (config, inventory, certificates), with a message naming the fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rie_collector::config::CollectorConfig;
use rie_collector::inventory::{self, GenerateOptions};
use rie_collector::pki;
use rie_collector::store::{self, credentials};
use rie_common::{LogArgs, UserError};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "rie-collector",
    version,
    about = "RIE telemetry collector: receives site probes' batches, stores rollups, serves the API"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the configuration comes from: a file, then flags and environment on top.
#[derive(Args, Clone)]
struct ConfigArgs {
    #[arg(long, env = "RIE_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "RIE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "RIE_INVENTORY")]
    inventory: Option<PathBuf>,
    #[arg(long, env = "RIE_PKI_DIR")]
    pki_dir: Option<PathBuf>,
    #[arg(long, env = "RIE_PROBE_LISTEN")]
    probe_listen: Option<SocketAddr>,
    #[arg(long, env = "RIE_API_LISTEN")]
    api_listen: Option<SocketAddr>,
    #[arg(long, env = "RIE_NETFLOW_LISTEN")]
    netflow_listen: Option<SocketAddr>,
    /// UDP address for sFlow v5 agents (`sflow.listen`); an address alone listens on 6343.
    #[arg(long, env = "RIE_SFLOW_LISTEN", value_parser = rie_collector::ingest::sflow_udp::parse_listen)]
    sflow_listen: Option<SocketAddr>,
    /// Cost model for reports and /api/v1/indicators (`costs` in the config).
    #[arg(long, env = "RIE_COSTS")]
    costs: Option<PathBuf>,
    /// Price catalogue of the resilience planner (`backup_prices` in the config).
    #[arg(long, env = "RIE_BACKUP_PRICES")]
    backup_prices: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector.
    Serve(ConfigArgs),
    /// Generate or check an inventory.
    Inventory {
        #[command(subcommand)]
        cmd: InventoryCmd,
    },
    /// Manage the CA and the collector's server certificate.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
    /// API tokens for programs (Grafana, Prometheus, scripts): create, list, revoke.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Local accounts of people, for sites without single sign-on: create, list, set-role,
    /// reset-password, disable.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Central check plans: check a plan file, store it for a scope, list what is stored
    /// (see docs/plans.md).
    Plan {
        #[command(subcommand)]
        cmd: PlanCmd,
    },
    /// Issue a new token for a site and write its ready-to-use probe config (replaces, and so
    /// revokes, the site's previous token).
    ProbeConfig {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[arg(long)]
        site: String,
        #[arg(long)]
        out: PathBuf,
        /// Address the probe dials (default: probes.public_address from the config); repeat it
        /// for several collectors sharing one database: the probe tries them in order, with
        /// failover (`collector.addresses`).
        #[arg(long)]
        address: Vec<String>,
        /// Enrol the site with the token of this existing probe config instead of a new one
        /// (e.g. a config written against an earlier database), so that copies of it stay valid.
        #[arg(long, value_name = "PROBE_CONFIG")]
        token_from: Option<PathBuf>,
    },
    /// Store maintenance: copy a SQLite store into PostgreSQL (see docs/scaling.md).
    Store {
        #[command(subcommand)]
        cmd: StoreCmd,
    },
    /// Cost and resilience indicators for a period, as CSV, JSON or a French HTML page
    /// (see docs/indicators.md).
    Report(ReportArgs),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct ReportArgs {
    #[command(subcommand)]
    what: Option<ReportCmd>,
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Month (2026-10), quarter (2026-Q4) or year (2026), UTC.
    #[arg(long, required = true)]
    period: Option<String>,
    /// site, ministry, departement, region, technology or national.
    #[arg(long, default_value = "national")]
    by: String,
    /// csv, json or html.
    #[arg(long, default_value = "csv")]
    format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `fr`: CSV with `;` separator and decimal comma.
    #[arg(long, default_value = "en")]
    locale: String,
}

#[derive(Subcommand)]
enum ReportCmd {
    /// Resilience investment plan: the yearly cost of adding (or diversifying) a backup link
    /// on each site that lacks a diverse one, against the agent-hours its outages of the
    /// period cost a year, ranked (see docs/resilience-plan.md).
    Resilience(Box<ResilienceArgs>),
}

#[derive(Args)]
struct ResilienceArgs {
    #[command(flatten)]
    cfg: ConfigArgs,
    /// Start of the episodes measured: a date (2026-10-01, midnight UTC) or RFC 3339 time.
    #[arg(long)]
    from: String,
    /// End (excluded), same forms; a future end is measured up to now.
    #[arg(long)]
    to: String,
    /// csv, json or html.
    #[arg(long, default_value = "csv")]
    format: String,
    /// Only the sites of this ministry (its name as in the inventory).
    #[arg(long)]
    ministry: Option<String>,
    /// Only the sites of this région (e.g. Bretagne).
    #[arg(long)]
    region: Option<String>,
    /// net (net yearly benefit) or per_euro (benefit per euro of yearly cost).
    #[arg(long, default_value = "net")]
    rank_by: String,
    /// Only the first N investments (the national totals still cover all of them).
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// `fr`: CSV with `;` separator and decimal comma.
    #[arg(long, default_value = "en")]
    locale: String,
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Copy every table of a stopped collector's SQLite store into a PostgreSQL database
    /// (schema applied first), resumably, then print both sides' totals (flows, packets,
    /// bytes, outage seconds, batches, rows per table) and exit 1 if any differ.
    ///
    /// The source is opened read-only and must have this release's schema version. A target
    /// that already holds store rows is refused (exit 2) unless they are a copy of this same
    /// source in progress: an interrupted run, run again, continues where it stopped.
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// sqlite:PATH, the rie.db of the collector's data_dir (stop the collector first).
    #[arg(long, value_name = "sqlite:PATH")]
    from: String,
    /// postgres:URL, e.g. postgres:postgresql://rie@db1:5432/rie?sslmode=verify-full
    /// (the URL as in [store.postgres] url).
    #[arg(long, value_name = "postgres:URL")]
    to: String,
    /// File holding the database password (as store.postgres.password_file).
    #[arg(long, conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// Environment variable holding the database password (as store.postgres.password_env),
    /// e.g. PGPASSWORD.
    #[arg(long)]
    password_env: Option<String>,
    /// PEM bundle of the CAs of the database servers (as store.postgres.root_cert).
    #[arg(long)]
    root_cert: Option<PathBuf>,
    /// Delete the target's store rows first when it holds any that are not a copy of this
    /// source in progress (or a finished copy of it), then copy.
    #[arg(long)]
    force: bool,
    /// Rows per chunk (one PostgreSQL transaction with its progress record each).
    #[arg(long, default_value_t = store::migrate::DEFAULT_CHUNK_ROWS)]
    chunk_rows: usize,
    /// For tests of resumption: stop as if interrupted after N chunks (exit 1).
    #[arg(long, hide = true)]
    stop_after_chunks: Option<u64>,
}

#[derive(Subcommand)]
enum InventoryCmd {
    /// Write a realistic synthetic national inventory (sites.csv, links.csv).
    Generate {
        #[arg(long, default_value_t = 14_000)]
        sites: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate an inventory directory and print its figures.
    Check {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print its secret, once (only its hash is stored).
    Create {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// noc, finance, admin, metrics, ministry:<name as in sites.csv>, technician:<site>.
        #[arg(long)]
        role: String,
        /// What the token is for (shown by `token list`, usable with `token revoke`).
        #[arg(long)]
        name: String,
        /// Validity, e.g. 90d, 12h; none: until revoked.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Revoke a token by id or name; effective within a second on every collector.
    Revoke {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The token's id or name.
        which: String,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Create an account; prints a generated password once (or reads one from stdin).
    Create {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The login name: lower-case letters, digits, '.', '_', '@', '-'.
        name: String,
        /// noc, finance, admin, ministry:<name as in sites.csv>, technician:<site>.
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List accounts (never their passwords).
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Change an account's role; its open sessions end within a second.
    SetRole {
        #[command(flatten)]
        cfg: ConfigArgs,
        name: String,
        #[arg(long)]
        role: String,
    },
    /// Give an account a new password (printed once, or read from stdin); its open sessions end.
    ResetPassword {
        #[command(flatten)]
        cfg: ConfigArgs,
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account for good; its open sessions end within a second.
    Disable {
        #[command(flatten)]
        cfg: ConfigArgs,
        name: String,
    },
}

#[derive(Subcommand)]
enum PlanCmd {
    /// Validate a plan file (exit 2 with the file, key and fix when it is wrong); nothing is
    /// stored.
    Check { file: PathBuf },
    /// Validate a plan file and store it as the plan of a scope, under the next version; the
    /// collectors push the new effective plans to the probes concerned within seconds.
    Add {
        #[command(flatten)]
        cfg: ConfigArgs,
        file: PathBuf,
        /// national, ministry:NAME (as in sites.csv), departement:NN or site:ID.
        #[arg(long)]
        scope: String,
    },
    /// List the stored plans, newest last.
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Validate a plan file, store it for a scope and release it in stages: a canary spread
    /// over ministries, technologies and départements, then cumulative waves; a wave starts
    /// only while refused and degraded/down/silent sites stay within --max-bad, otherwise the
    /// rollout halts by itself (the running collectors drive it; progress in
    /// /api/v1/plans/rollouts).
    Rollout {
        #[command(flatten)]
        cfg: ConfigArgs,
        file: PathBuf,
        /// national, ministry:NAME, departement:NN or site:ID.
        #[arg(long, default_value = "national")]
        scope: String,
        /// Share of the scope's sites in the canary (at least one site).
        #[arg(long, default_value = "1%")]
        canary: String,
        /// Cumulative shares released by the waves after the canary; the last is 100%.
        #[arg(long, default_value = "10%,50%,100%")]
        waves: String,
        /// Time each wave (the canary included) runs before the next starts.
        #[arg(long, default_value = "10m")]
        wave_interval: String,
        /// Refused and bad sites allowed among the released ones before the rollout halts.
        #[arg(long, default_value = "2%")]
        max_bad: String,
        /// A site always in the canary (repeat for several), before the picked ones.
        #[arg(long = "canary-site")]
        canary_sites: Vec<String>,
    },
    /// Return every site of a rollout's scope to the plan it had before: that plan is stored
    /// again under a new version (versions only grow) and the rollout marked rolled back.
    Rollback {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The rollout (default: the latest still running or halted, else the latest).
        #[arg(long)]
        rollout: Option<i64>,
    },
    /// List the rollouts and where they are (per-wave progress: /api/v1/plans/rollouts).
    Rollouts {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Create the CA and the collector's server certificate.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// DNS name or IP address probes use to reach the collector (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        #[arg(long)]
        force: bool,
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
        Cmd::Serve(args) => {
            let cfg = build_config(&args)?;
            rie_common::runtime()
                .context("starting the async runtime")?
                .block_on(serve(cfg))
        }
        Cmd::Inventory {
            cmd: InventoryCmd::Generate { sites, seed, out },
        } => {
            inventory::check_generated_sites(sites).map_err(UserError)?;
            let s = inventory::generate(&GenerateOptions::new(sites, seed), &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} and {}: {} sites, {} agents (median site {}, largest {}), {} links, {} dual-homed ({:.1} %), {} overseas sites, {} départements/collectivités, {} ministries",
                out.join("sites.csv").display(),
                out.join("links.csv").display(),
                s.sites, s.agents, s.median_site_agents, s.largest_site_agents, s.links, s.dual_homed,
                100.0 * s.dual_homed as f64 / s.sites.max(1) as f64, s.overseas_sites, s.departements, s.ministries
            );
            println!(
                "links by technology: {:?}; access cost {:.2} €/year, {:.2} €/agent/year",
                s.links_by_technology,
                s.annual_link_cost_cents as f64 / 100.0,
                s.annual_link_cost_cents as f64 / 100.0 / s.agents.max(1) as f64
            );
            Ok(())
        }
        Cmd::Inventory {
            cmd: InventoryCmd::Check { dir },
        } => {
            let inv = inventory::load_dir(&dir).map_err(|e| UserError(e.to_string()))?;
            println!(
                "{}: valid; {} sites, {} agents, {} links, {} dual-homed, {} with site prefixes",
                dir.display(),
                inv.sites.len(),
                inv.total_agents(),
                inv.links.len(),
                inv.dual_homed_sites(),
                inv.sites.iter().filter(|s| !s.prefixes.is_empty()).count()
            );
            Ok(())
        }
        Cmd::Pki {
            cmd: PkiCmd::Init { dir, names, force },
        } => {
            pki::init(&dir, &names, force).map_err(|e| match e {
                pki::PkiError::Exists(_) => anyhow::Error::new(UserError(e.to_string())),
                other => other.into(),
            })?;
            println!(
                "wrote {} (give to probes), {} and {} (keep secret); server certificate valid for localhost, 127.0.0.1, ::1{}",
                dir.join(pki::CA_CERT).display(),
                dir.join(pki::CA_KEY).display(),
                dir.join(pki::SERVER_KEY).display(),
                names.iter().map(|n| format!(", {n}")).collect::<String>()
            );
            Ok(())
        }
        Cmd::Report(args) => report(args),
        Cmd::Store {
            cmd: StoreCmd::Migrate(args),
        } => migrate(args),
        Cmd::ProbeConfig {
            cfg,
            site,
            out,
            address,
            token_from,
        } => probe_config(&build_config(&cfg)?, &site, &out, address, token_from),
        Cmd::Token { cmd } => token(cmd),
        Cmd::Account { cmd } => account(cmd),
        Cmd::Plan { cmd } => plan(cmd),
    }
}

/// Reads a plan file and checks it (with the inventory and the stored plans when given);
/// errors name the file, the key and the fix.
fn read_plan(
    file: &std::path::Path,
    scope: Option<&rie_plan::Scope>,
    inventory: Option<&inventory::Inventory>,
    stored: &[store::plans::PlanRow],
) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| UserError(format!("{}: {e}", file.display())))?;
    rie_collector::plans::check_file(&text, scope, inventory, stored)
        .map_err(|e| UserError(format!("{}: {e}", file.display())))?;
    Ok(text)
}

/// `rie-collector plan …`.
fn plan(cmd: PlanCmd) -> anyhow::Result<()> {
    use rie_collector::plans::rollout;
    use rie_collector::store::plans;
    let who = || std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let rollout_error = |e: rollout::RolloutError| -> anyhow::Error {
        match e {
            rollout::RolloutError::Store(e) => e.into(),
            e => UserError(e.to_string()).into(),
        }
    };
    match cmd {
        PlanCmd::Check { file } => {
            read_plan(&file, None, None, &[])?;
            println!("{}: valid plan", file.display());
            Ok(())
        }
        PlanCmd::Add { cfg, file, scope } => {
            let cfg = build_config(&cfg)?;
            let scope =
                rie_plan::Scope::parse(&scope).map_err(|e| UserError(format!("--scope: {e}")))?;
            let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
            let (_rt, reader) = open_store(&cfg)?;
            let stored = plans::list(&reader)?;
            // Checked before anything is stored: a refused file leaves the store as it was.
            let text = read_plan(&file, Some(&scope), Some(&inv), &stored)?;
            if let Some(r) = rollout::holding(&reader, &scope)? {
                return Err(UserError(format!(
                    "rollout {} of {scope} is {}: a plan added now would bypass it; roll it back first (`plan rollback --rollout {}`), then add or roll out the new plan",
                    r.id,
                    r.state.as_str(),
                    r.id
                ))
                .into());
            }
            let hash = rie_plan::content_hash(&text);
            let version = plans::insert(
                &reader,
                scope.kind(),
                scope.value(),
                &hash,
                &text,
                rie_common::now_ms(),
            )?;
            cli_audit(&reader, "plan_add");
            println!("stored {} as plan version {version} for {scope} (sha256 {hash}); the collectors push it within seconds", file.display());
            Ok(())
        }
        PlanCmd::Rollout {
            cfg,
            file,
            scope,
            canary,
            waves,
            wave_interval,
            max_bad,
            canary_sites,
        } => {
            let cfg = build_config(&cfg)?;
            let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| UserError(format!("{}: {e}", file.display())))?;
            let (_rt, reader) = open_store(&cfg)?;
            let params = rollout::RolloutParams {
                scope,
                canary,
                waves,
                wave_interval,
                max_bad,
                canary_sites,
            };
            let r = rollout::start(&reader, &inv, &text, &params, &who()).map_err(|e| match e {
                rollout::RolloutError::PlanFile(m) => {
                    UserError(format!("{}: {m}", file.display())).into()
                }
                rollout::RolloutError::Invalid(m) => UserError(format!("--{m}")).into(),
                e => rollout_error(e),
            })?;
            cli_audit(&reader, "plan_rollout");
            let (order, counts) = rollout::plan_of(&inv, &r).unwrap_or_default();
            println!(
                "rollout {} started: {} stored as plan version {} for {} ({} sites; previous plan {}); canary {} sites now, then {} every {}; halts above {} refused or bad",
                r.id,
                file.display(),
                r.version,
                r.scope,
                order.len(),
                if r.previous_version == 0 { "none".to_string() } else { format!("version {}", r.previous_version) },
                counts.first().copied().unwrap_or(0),
                counts.iter().skip(1).map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
                params.wave_interval,
                params.max_bad
            );
            Ok(())
        }
        PlanCmd::Rollback { cfg, rollout: id } => {
            let cfg = build_config(&cfg)?;
            let (_rt, reader) = open_store(&cfg)?;
            let r = rollout::rollback(&reader, id, &who()).map_err(rollout_error)?;
            cli_audit(&reader, "plan_rollback");
            println!(
                "rollout {} rolled back: plan version {} (the text of version {}) stored for {}; the collectors push it to every site within seconds",
                r.id, r.rollback_version, r.previous_version, r.scope
            );
            Ok(())
        }
        PlanCmd::Rollouts { cfg } => {
            let cfg = build_config(&cfg)?;
            let (_rt, reader) = open_store(&cfg)?;
            println!(
                "{:>4}  {:<24}  {:>7}  {:<12}  {:<16}  reason",
                "id", "scope", "version", "state", "wave"
            );
            for (r, _) in rollout::list(&reader)? {
                println!(
                    "{:>4}  {:<24}  {:>7}  {:<12}  {:<16}  {}",
                    r.id,
                    r.scope,
                    r.version,
                    r.state.as_str(),
                    r.wave_name(r.wave),
                    r.reason
                );
            }
            Ok(())
        }
        PlanCmd::List { cfg } => {
            let cfg = build_config(&cfg)?;
            let (_rt, reader) = open_store(&cfg)?;
            println!(
                "{:>7}  {:<32}  {:<20}  sha256",
                "version", "scope", "created"
            );
            for r in plans::list(&reader)? {
                let scope = rie_plan::Scope::from_parts(&r.scope_kind, &r.scope_value)
                    .map_or(r.scope_kind.clone(), |s| s.to_string());
                println!(
                    "{:>7}  {:<32}  {:<20}  {}",
                    r.version,
                    scope,
                    rie_collector::indicators::rfc3339(r.created_ms),
                    r.hash
                );
            }
            Ok(())
        }
    }
}

/// The password of an account command: the first line of stdin, or a generated one (then
/// printed once).
fn account_password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    use rie_collector::auth::local;
    if !from_stdin {
        return Ok((local::new_password(), true));
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    local::validate_password(&p).map_err(|e| UserError(e.to_string()))?;
    Ok((p, false))
}

/// `rie-collector account …`: like `token`, on the store the config names.
fn account(cmd: AccountCmd) -> anyhow::Result<()> {
    use rie_collector::auth::local::{self, LocalError, Update};
    use rie_collector::auth::Role;
    use rie_collector::store::api_accounts;
    let cfg = match &cmd {
        AccountCmd::Create { cfg, .. }
        | AccountCmd::List { cfg }
        | AccountCmd::SetRole { cfg, .. }
        | AccountCmd::ResetPassword { cfg, .. }
        | AccountCmd::Disable { cfg, .. } => build_config(cfg)?,
    };
    let (_rt, reader) = open_store(&cfg)?;
    let now = rie_common::now_ms();
    let role_of = |text: &str| -> anyhow::Result<Role> {
        let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
        Ok(Role::parse(text, &inv).map_err(|e| UserError(format!("--role: {e}")))?)
    };
    let user = |e: LocalError| -> anyhow::Error {
        match e {
            LocalError::Store(e) => e.into(),
            e => UserError(e.to_string()).into(),
        }
    };
    let ended = |n: u64| {
        if n > 0 {
            format!("; {n} open session(s) ended")
        } else {
            String::new()
        }
    };
    match cmd {
        AccountCmd::Create {
            name,
            role,
            password_stdin,
            ..
        } => {
            let role = role_of(&role)?;
            let (password, generated) = account_password(password_stdin)?;
            local::create(&reader, &name, &role, &password, now).map_err(user)?;
            cli_audit(&reader, "account_create");
            eprintln!("account {name} (role {role}) created; it logs in on the status page with its name and password");
            if generated {
                eprintln!(
                    "its password is printed once, below: hand it over by a separate channel"
                );
                println!("{password}");
            }
        }
        AccountCmd::List { .. } => {
            println!(
                "{:<32}  {:<28}  {:<20}  {:<20}  state",
                "name", "role", "created", "changed"
            );
            for a in api_accounts::list(&reader)? {
                let time = rie_collector::indicators::rfc3339;
                println!(
                    "{:<32}  {:<28}  {:<20}  {:<20}  {}",
                    a.name,
                    a.role,
                    time(a.created_ms),
                    time(a.changed_ms),
                    if a.disabled_ms.is_some() {
                        "disabled"
                    } else {
                        "active"
                    }
                );
            }
        }
        AccountCmd::SetRole { name, role, .. } => {
            let role = role_of(&role)?;
            let n = local::update(&reader, &name, Update::Role(&role), now).map_err(user)?;
            cli_audit(&reader, "account_set_role");
            println!("account {name} now has role {role}{}", ended(n));
        }
        AccountCmd::ResetPassword {
            name,
            password_stdin,
            ..
        } => {
            let (password, generated) = account_password(password_stdin)?;
            let n =
                local::update(&reader, &name, Update::Password(&password), now).map_err(user)?;
            cli_audit(&reader, "account_reset_password");
            eprintln!("account {name}: new password set{}", ended(n));
            if generated {
                eprintln!("it is printed once, below");
                println!("{password}");
            }
        }
        AccountCmd::Disable { name, .. } => {
            let n = local::update(&reader, &name, Update::Disable, now).map_err(user)?;
            cli_audit(&reader, "account_disable");
            println!("account {name} disabled{}", ended(n));
        }
    }
    Ok(())
}

/// `rie-collector token …`: on the store the config names, from the main thread (the
/// PostgreSQL read side runs on its own runtime).
fn token(cmd: TokenCmd) -> anyhow::Result<()> {
    use rie_collector::auth;
    use rie_collector::store::api_tokens;
    let cfg = match &cmd {
        TokenCmd::Create { cfg, .. } | TokenCmd::List { cfg } | TokenCmd::Revoke { cfg, .. } => {
            build_config(cfg)?
        }
    };
    let (_rt, reader) = open_store(&cfg)?;
    let now = rie_common::now_ms();
    match cmd {
        TokenCmd::Create {
            role,
            name,
            expires,
            ..
        } => {
            let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
            let role =
                auth::Role::parse(&role, &inv).map_err(|e| UserError(format!("--role: {e}")))?;
            if name.trim().is_empty() || name.len() > 100 {
                return Err(UserError(
                    "--name: give the token a name of 1 to 100 characters, e.g. grafana".into(),
                )
                .into());
            }
            let expires_ms = match expires.as_deref() {
                None => None,
                Some(e) => {
                    Some(now + auth::parse_validity(e).map_err(UserError)?.as_millis() as i64)
                }
            };
            let (id, text) = auth::issue_token(&reader, &name, &role, now, expires_ms)?;
            cli_audit(&reader, "token_create");
            eprintln!("token {id} ({name}, role {role}) created; its secret is printed once, below: keep it in the program's secret store");
            println!("{text}");
        }
        TokenCmd::List { .. } => {
            println!(
                "{:<12}  {:<24}  {:<28}  {:<20}  {:<20}  state",
                "id", "name", "role", "created", "expires"
            );
            for t in api_tokens::list(&reader)? {
                let state = match (t.revoked_ms, t.expires_ms) {
                    (Some(_), _) => "revoked",
                    (None, Some(e)) if e <= now => "expired",
                    _ => "valid",
                };
                let when = |ms: Option<i64>| {
                    ms.map_or_else(|| "-".to_string(), rie_collector::indicators::rfc3339)
                };
                println!(
                    "{:<12}  {:<24}  {:<28}  {:<20}  {:<20}  {state}",
                    t.id,
                    t.name,
                    t.role,
                    rie_collector::indicators::rfc3339(t.created_ms),
                    when(t.expires_ms)
                );
            }
        }
        TokenCmd::Revoke { which, .. } => {
            let n = api_tokens::revoke(&reader, &which, now)?;
            cli_audit(&reader, "token_revoke");
            if n == 0 {
                return Err(UserError(format!(
                    "no valid token with id or name {which:?}; see `rie-collector token list`"
                ))
                .into());
            }
            println!("revoked {n} token(s) named or numbered {which:?}; refused everywhere within a second");
        }
    }
    Ok(())
}

/// The store of `cfg` for a command, with the runtime its PostgreSQL client runs on (keep
/// it alive as long as the reader).
fn open_store(cfg: &CollectorConfig) -> anyhow::Result<(tokio::runtime::Runtime, store::Reader)> {
    let rt = rie_common::runtime().context("starting the async runtime")?;
    let reader = store::api_tokens::open(&cfg.store, &cfg.data_dir, rt.handle())?;
    Ok((rt, reader))
}

fn build_config(a: &ConfigArgs) -> anyhow::Result<CollectorConfig> {
    let mut cfg = match &a.config {
        Some(p) => CollectorConfig::load(p).map_err(|e| UserError(e.to_string()))?,
        None => CollectorConfig::default(),
    };
    if let Some(v) = &a.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = &a.inventory {
        cfg.inventory = v.clone();
    }
    if let Some(v) = &a.pki_dir {
        cfg.tls.pki_dir = v.clone();
    }
    if let Some(v) = a.probe_listen {
        cfg.probes.listen = v;
    }
    if let Some(v) = a.api_listen {
        cfg.api.listen = v;
    }
    if let Some(v) = &a.costs {
        cfg.costs = Some(v.clone());
    }
    if let Some(v) = &a.backup_prices {
        cfg.backup_prices = Some(v.clone());
    }
    if let Some(v) = a.netflow_listen {
        cfg.netflow.listen = Some(v);
    }
    if let Some(v) = a.sflow_listen {
        cfg.sflow.listen = Some(v);
    }
    cfg.validate().map_err(|e| UserError(e.to_string()))?;
    Ok(cfg)
}

async fn serve(cfg: CollectorConfig) -> anyhow::Result<()> {
    rie_common::raise_fd_limit(cfg.probes.max_connections as u64 + 1_024);
    let shutdown = CancellationToken::new();
    rie_common::cancel_on_signal(shutdown.clone());
    let running = rie_collector::run(cfg, shutdown).await?;
    // Printed on stdout so that scripts and tests can find the bound addresses.
    let mut line = format!(
        "listening probes={} api={}",
        running.probe_addr, running.api_addr
    );
    if let Some(nf) = running.netflow_addr {
        line.push_str(&format!(" netflow={nf}"));
    }
    if let Some(sf) = running.sflow_addr {
        line.push_str(&format!(" sflow={sf}"));
    }
    println!("{line}");
    running.wait().await;
    Ok(())
}

fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    let source = a.from.strip_prefix("sqlite:").ok_or_else(|| {
        UserError(format!(
            "--from {}: expected sqlite:PATH, e.g. --from sqlite:/var/lib/rie-collector/rie.db",
            a.from
        ))
    })?;
    let url = a.to.strip_prefix("postgres:").ok_or_else(|| {
        UserError(format!(
            "--to {}: expected postgres:URL, e.g. --to postgres:postgresql://rie@db1:5432/rie",
            store::config::mask_url(&a.to)
        ))
    })?;
    let target = store::config::PostgresConfig {
        url: url.to_string(),
        password_file: a.password_file,
        password_env: a.password_env,
        root_cert: a.root_cert,
        pool_size: 2,
    };
    target
        .validate()
        .map_err(|(_, message)| UserError(format!("--to: {message}")))?;
    if a.chunk_rows == 0 {
        return Err(UserError("--chunk-rows 0: give at least 1, e.g. 5000".into()).into());
    }
    let opts = store::migrate::MigrateOptions {
        source: PathBuf::from(source),
        target,
        force: a.force,
        chunk_rows: a.chunk_rows,
        stop_after_chunks: a.stop_after_chunks,
    };
    // The PostgreSQL session and readers run on this runtime (`Handle::block_on`), from the
    // main thread, outside any async task, as that requires.
    let rt = rie_common::runtime().context("starting the async runtime")?;
    let report = store::migrate::run(&opts, rt.handle(), &mut |table| eprintln!("copied {table}"))
        .map_err(|e| {
            if e.is_user_error() {
                anyhow::Error::new(UserError(e.to_string()))
            } else {
                anyhow::Error::new(e)
            }
        })?;
    print!("{}", report.table());
    println!(
        "migrated {} to {}: {} rows in {} chunks by this run{}; every total equal",
        opts.source.display(),
        opts.target.masked_url(),
        report.rows_copied,
        report.chunks,
        if report.resumed {
            " (resumed an interrupted run)"
        } else {
            ""
        }
    );
    Ok(())
}

fn parse_locale(s: &str) -> anyhow::Result<rie_collector::reports::Locale> {
    use rie_collector::reports::Locale;
    match s {
        "en" => Ok(Locale::En),
        "fr" => Ok(Locale::Fr),
        other => Err(UserError(format!("--locale {other}: choose en or fr")).into()),
    }
}

/// The store's read side for a report command, on the configured backend. `rt` must outlive
/// the reader (the PostgreSQL side runs its queries on it).
fn report_reader(
    cfg: &CollectorConfig,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<store::Reader> {
    Ok(match (&cfg.store.backend, &cfg.store.postgres) {
        (store::config::Backend::Postgres, Some(pg)) => {
            let reader = store::Reader::open_postgres(pg, rt.handle())?;
            reader.ping()?;
            reader
        }
        _ => {
            let db = cfg.db_path();
            if !db.exists() {
                return Err(UserError(format!(
                    "{}: no collector database here; point --data-dir (or data_dir in the config) at the collector's data directory",
                    db.display()
                ))
                .into());
            }
            store::Reader::open(&db)?
        }
    })
}

fn write_out(out: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("writing the report to standard output")?;
        }
    }
    Ok(())
}

fn report_resilience(a: ResilienceArgs) -> anyhow::Result<()> {
    use rie_collector::indicators::resilience_plan::{
        self as plan, BackupPrices, Filter, RankBy, Span,
    };
    use rie_collector::reports::{self, Format};
    let span = Span::parse(&a.from, &a.to).map_err(|e| UserError(format!("--from/--to: {e}")))?;
    let format = Format::parse(&a.format)
        .ok_or_else(|| UserError(format!("--format {}: choose csv, json or html", a.format)))?;
    let rank_by = RankBy::parse(&a.rank_by)
        .ok_or_else(|| UserError(format!("--rank-by {}: choose net or per_euro", a.rank_by)))?;
    let locale = parse_locale(&a.locale)?;
    let cfg = build_config(&a.cfg)?;
    let prices = BackupPrices::load_or_default(cfg.backup_prices.as_deref())
        .map_err(|e| UserError(e.to_string()))?;
    let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
    let rt = rie_common::runtime().context("starting the async runtime")?;
    let reader = report_reader(&cfg, &rt)?;
    let filter = Filter {
        ministry: a.ministry,
        region: a.region,
    };
    let mut p = plan::report(
        &reader,
        &inv,
        &prices,
        &span,
        rie_common::now_ms(),
        &filter,
        rank_by,
    )?;
    if let Some(n) = a.top {
        p.investments.truncate(n);
    }
    let text = reports::render_plan(&p, format, locale)?;
    write_out(a.out.as_deref(), &text)?;
    cli_audit(&reader, "export");
    Ok(())
}

/// Records this command in the audit trail (exports, token changes). Best effort: a report
/// read from a read-only replica cannot write, and says so rather than failing.
fn cli_audit(reader: &store::Reader, action: &str) {
    let row = store::audit::AuditRow {
        at_ms: rie_common::now_ms(),
        actor: std::env::var("USER").unwrap_or_else(|_| "cli".into()),
        role: "local".into(),
        source: "cli".into(),
        action: action.into(),
        target: std::env::args()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(512)
            .collect(),
        outcome: "ok".into(),
    };
    if let Err(e) = store::audit::insert(reader, &[row]) {
        eprintln!("warning: not recorded in the audit trail: {e}");
    }
}

fn report(a: ReportArgs) -> anyhow::Result<()> {
    use rie_collector::indicators::{CostModel, GroupBy, Period};
    use rie_collector::reports::{self, Format};
    if let Some(ReportCmd::Resilience(r)) = a.what {
        return report_resilience(*r);
    }
    let period_arg = a.period.unwrap_or_default();
    let period = Period::parse(&period_arg).map_err(|e| UserError(format!("--period: {e}")))?;
    let group_by = GroupBy::parse(&a.by).ok_or_else(|| {
        UserError(format!(
            "--by {}: choose site, ministry, departement, region, technology or national",
            a.by
        ))
    })?;
    let format = Format::parse(&a.format)
        .ok_or_else(|| UserError(format!("--format {}: choose csv, json or html", a.format)))?;
    let locale = parse_locale(&a.locale)?;
    let cfg = build_config(&a.cfg)?;
    let model =
        CostModel::load_or_default(cfg.costs.as_deref()).map_err(|e| UserError(e.to_string()))?;
    let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
    // The PostgreSQL read side runs its queries on a runtime (`Handle::block_on`); this
    // command is on the main thread, outside any async task, as that requires.
    let rt = rie_common::runtime().context("starting the async runtime")?;
    let reader = report_reader(&cfg, &rt)?;
    let progress = reports::Progress::start(format!("report {}", period.label));
    let text = reports::build(
        &reader,
        &reports::Request {
            inventory: &inv,
            model: &model,
            period: &period,
            now_ms: rie_common::now_ms(),
            group_by,
            format,
            locale,
        },
        &|s| progress.stage(s),
    )?;
    progress.finish();
    write_out(a.out.as_deref(), &text)?;
    cli_audit(&reader, "export");
    Ok(())
}

/// The `[collector] token` of a probe config file, for `probe-config --token-from`.
fn token_of(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| UserError(format!("--token-from {}: {e}", file.display())))?;
    let v: toml::Value = toml::from_str(&text)
        .map_err(|e| UserError(format!("--token-from {}: {e}", file.display())))?;
    v.get("collector")
        .and_then(|c| c.get("token"))
        .and_then(toml::Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            UserError(format!(
                "--token-from {}: no [collector] token; give a file written by `rie-collector probe-config`",
                file.display()
            ))
            .into()
        })
}

fn probe_config(
    cfg: &CollectorConfig,
    site: &str,
    out: &std::path::Path,
    addresses: Vec<String>,
    token_from: Option<PathBuf>,
) -> anyhow::Result<()> {
    let inv = inventory::load_dir(&cfg.inventory).map_err(|e| UserError(e.to_string()))?;
    let id =
        rie_proto::SiteId::new(site).map_err(|e| UserError(format!("--site {site:?}: {e}")))?;
    let s = inv.site(&id).ok_or_else(|| {
        UserError(format!(
            "--site {site}: not in the inventory {}",
            cfg.inventory.display()
        ))
    })?;
    let addresses = if addresses.is_empty() {
        vec![cfg.probes.public_address.clone()]
    } else {
        addresses
    };
    for address in &addresses {
        if rie_common::split_host_port(address).is_none() {
            return Err(UserError(format!(
                "--address {address:?}: expected host:port, e.g. collector.rie.gouv.fr:7443"
            ))
            .into());
        }
    }
    // One collector: `address`; several: `addresses`, tried in order with failover.
    let address_line = match addresses.as_slice() {
        [one] => format!("address = {one:?}"),
        many => format!(
            "addresses = [{}]",
            many.iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let ca = pki::ca_pem(&cfg.tls.pki_dir).map_err(|e| UserError(e.to_string()))?;
    let token = match &token_from {
        None => credentials::new_token(),
        Some(f) => token_of(f)?,
    };
    // The PostgreSQL backend runs on a runtime; this command is called from the main thread,
    // outside any async task, as `Handle::block_on` requires.
    let rt = rie_common::runtime().context("starting the async runtime")?;
    credentials::issue(
        &cfg.store,
        &cfg.data_dir,
        rt.handle(),
        &[(s.credential_ref.clone(), token.clone())],
        rie_common::now_ms(),
    )?;
    let text = format!(
        "# rie-probe configuration for site {id} ({name}), written by rie-collector probe-config.\n\
         # Holds the site's secret token: keep this file readable by the probe user only.\n\
         site_id = \"{id}\"\n\
         data_dir = \"/var/lib/rie-probe\"\n\
         batch_interval = \"10s\"\n\n\
         [collector]\n\
         {address_line}\n\
         token = \"{token}\"\n\
         ca_cert = '''\n{ca}'''\n",
        name = s.name.replace('\n', " "),
    );
    pki::write_with_mode(out, text.as_bytes(), 0o600)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} for site {id} ({}); the previous token of this site no longer works",
        out.display(),
        s.name
    );
    Ok(())
}
