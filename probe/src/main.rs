//! `rie-probe` command line. Exit codes: 0 success, 1 runtime failure, 2 configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rie_common::{wait_for_signal, LogArgs};
use rie_probe::config::ProbeConfig;
use rie_probe::session::{Session, SessionError};
use rie_probe::status::Lang;
use rie_probe::uplink::Identity;
use rie_proto::{Batch, Message};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "rie-probe",
    version,
    about = "RIE site probe: meters traffic and link availability, streams them to the collector"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SummaryFormat {
    Json,
    Text,
}

/// The probe's configuration file.
#[derive(clap::Args)]
struct ConfigArg {
    #[arg(
        long = "config",
        env = "RIE_PROBE_CONFIG",
        default_value = "/etc/rie-probe/probe.toml"
    )]
    path: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the probe: measure, batch, send to the collector.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Installation checklist for the technician: ✔/✘ per item, with the fix. Exit code 1 when
    /// a blocking check fails.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "fr", env = "RIE_LANG")]
        lang: Lang,
    },
    /// Run a pcap or pcapng file through the flow meter and print what it counted; with
    /// --config, also send the minute aggregates to the collector (as new data, on a new stream).
    Replay {
        #[arg(long)]
        pcap: PathBuf,
        /// Output format of the summary.
        #[arg(long, value_enum, default_value = "json")]
        summary: SummaryFormat,
        /// Probe config: its [meter] settings apply, and the result goes to its collector.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the running probe's state: connection, last acknowledgement, spool, links.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the raw status as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "fr", env = "RIE_LANG")]
        lang: Lang,
    },
    /// Send batches from a JSON file (an array of batches) and print the collector's acks;
    /// for reproducing a problem by hand.
    SendBatch {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        batch: PathBuf,
        /// Sequence stream to use (defaults to a fresh random one).
        #[arg(long)]
        stream: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli.log.init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        match cli.cmd {
            Cmd::Run { config } => cmd_run(config.path).await,
            Cmd::SendBatch {
                config,
                batch,
                stream,
            } => cmd_send(config.path, batch, stream).await,
            Cmd::Status { config, json, lang } => cmd_status(&config.path, json, lang),
            Cmd::Replay {
                pcap,
                summary,
                config,
            } => cmd_replay(&pcap, summary, config.as_deref()).await,
            Cmd::Check { config, lang } => {
                let lines = rie_probe::check::run(&config.path, lang).await;
                for l in &lines {
                    println!("{}", l.render());
                }
                if rie_probe::check::passed(&lines) {
                    println!("{}", lang.t("La sonde peut fonctionner.", "The probe can work."));
                    ExitCode::SUCCESS
                } else {
                    println!("{}", lang.t("Au moins un point bloquant (✘ ci-dessus) : la sonde ne peut pas fonctionner.", "At least one blocking item (✘ above): the probe cannot work."));
                    ExitCode::FAILURE
                }
            }
        }
    })
}

fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

async fn cmd_run(config: PathBuf) -> ExitCode {
    let cfg = match ProbeConfig::load(&config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        signal.cancel();
    });
    match rie_probe::run(cfg, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ rie_probe::runner::RunError::Config(_)) => config_error(e),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn cmd_send(config: PathBuf, batch: PathBuf, stream: Option<u64>) -> ExitCode {
    let cfg = match ProbeConfig::load(&config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let resolved = match cfg.resolve() {
        Ok(r) => r,
        Err(e) => return config_error(e),
    };
    let batches: Vec<Batch> = match std::fs::read(&batch)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => return config_error(format!("{}: {e}", batch.display())),
    };
    let stream = stream.unwrap_or_else(rie_probe::spool::random_stream);
    let id = Identity::new(cfg.site_id.clone(), resolved.token, stream);
    match send_all(&resolved.targets, &id, batches).await {
        Ok(acks) => {
            println!("{}", serde_json::json!({ "stream": stream, "acks": acks }));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends `batches` on one session with the first collector of `targets` that accepts the
/// hello (in the configured order), waiting for each ack.
async fn send_all(
    targets: &[rie_probe::session::Target],
    id: &Identity,
    batches: Vec<Batch>,
) -> Result<Vec<serde_json::Value>, SessionError> {
    let mut opened = Err(SessionError::Protocol("no collector address".into()));
    for t in targets {
        opened = Session::open(t, id.hello()).await;
        match &opened {
            Ok(_) => break,
            Err(e) if targets.len() > 1 => {
                eprintln!("{}: {e}; trying the next collector", t.address)
            }
            Err(_) => {}
        }
    }
    let mut s = opened?;
    let mut acks = Vec::new();
    for b in batches {
        let seq = b.seq;
        s.send(&Message::Batch(b)).await?;
        loop {
            match s.recv().await? {
                Some(Message::Ack(a)) if a.seq == seq => {
                    acks.push(serde_json::json!({ "seq": a.seq, "duplicate": a.duplicate }));
                    break;
                }
                // A one-shot sender runs no checks: it leaves a plan unanswered (the
                // collector shows the site's plan as pending, not applied).
                Some(Message::Plan(_)) => {}
                other => {
                    return Err(SessionError::Protocol(format!(
                        "expected ack for {seq}, got {:?}",
                        other.map(|m| m.kind())
                    )))
                }
            }
        }
    }
    Ok(acks)
}

/// Exit codes: 0 running and connected, 1 running but not connected or not running, 2 no
/// readable status (config error, or the probe never ran with this data_dir).
fn cmd_status(config: &std::path::Path, json: bool, lang: Lang) -> ExitCode {
    let cfg = match ProbeConfig::load(config) {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let path = rie_probe::runner::status_path(&cfg.data_dir);
    let st: rie_probe::runner::Status = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "{}: {e} — {}",
                path.display(),
                lang.t(
                    "la sonde n'a jamais tourné avec ce data_dir ? Lancez `rie-probe run`",
                    "has the probe ever run with this data_dir? Start `rie-probe run`"
                )
            );
            return ExitCode::from(2);
        }
    };
    let (text, ok) = rie_probe::status::render(&st, lang);
    if json {
        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        print!("{text}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn cmd_replay(
    pcap: &std::path::Path,
    format: SummaryFormat,
    config: Option<&std::path::Path>,
) -> ExitCode {
    let cfg = match config.map(ProbeConfig::load).transpose() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let meter = cfg.as_ref().map(|c| c.meter.clone()).unwrap_or_default();
    let mut agg = rie_flow::aggregate::Aggregator::new(rie_flow::aggregate::Prefixes(
        meter.site_prefixes.clone(),
    ))
    .with_top_talkers(meter.top_talkers);
    let s = match rie_probe::meter::pcap::replay(pcap, meter.table(), |r| agg.add(r)) {
        Ok(s) => s,
        Err(e) => return config_error(e),
    };
    match format {
        SummaryFormat::Json => println!("{}", serde_json::json!(s)),
        SummaryFormat::Text => {
            println!(
                "{} flows, {} packets, {} bytes (IP), {} frames skipped, {} evictions",
                s.flows, s.packets, s.bytes, s.skipped_frames, s.evictions
            );
            for (p, c) in &s.by_protocol {
                println!(
                    "  protocol {p:>3}: {} flows, {} packets, {} bytes",
                    c.flows, c.packets, c.bytes
                );
            }
        }
    }
    let Some(cfg) = cfg else {
        return ExitCode::SUCCESS;
    };
    let resolved = match cfg.resolve() {
        Ok(r) => r,
        Err(e) => return config_error(e),
    };
    let now = rie_common::now_ms();
    let mut talkers = agg.take_top_talkers();
    let mut batches: Vec<Batch> = agg
        .take()
        .chunks(1_000)
        .enumerate()
        .map(|(i, chunk)| Batch {
            top_talkers: Vec::new(),
            seq: i as u64 + 1,
            created_ms: now,
            flows: chunk.to_vec(),
            samples: vec![],
            links: vec![],
        })
        .collect();
    // Top talkers ride in the first batch (a capture with only unmetered frames has none).
    if let Some(first) = batches.first_mut() {
        first.top_talkers = std::mem::take(&mut talkers);
    }
    let id = Identity::new(
        cfg.site_id.clone(),
        resolved.token,
        rie_probe::spool::random_stream(),
    );
    match send_all(&resolved.targets, &id, batches).await {
        Ok(acks) => {
            eprintln!(
                "sent to {} in {} batch(es)",
                cfg.collector_addresses().join(" or "),
                acks.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
