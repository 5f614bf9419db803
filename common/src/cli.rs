//! Process plumbing shared by the `rie-probe`, `rie-collector` and `rie-sim` binaries: log
//! set-up and the shutdown signal.

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The logging flags both binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log verbosity (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info", env = "RIE_LOG_LEVEL")]
    pub log_level: String,
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "RIE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    pub fn init(&self) {
        init_logs(&self.log_level, self.log_format);
    }
}

/// Structured logs on stderr at `level`; `RUST_LOG` overrides it.
pub fn init_logs(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM (systemd's stop).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
