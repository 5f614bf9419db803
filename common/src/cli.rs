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

/// Cancels `shutdown` on Ctrl-C or SIGTERM (from a task on the current runtime), logging it.
pub fn cancel_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing acknowledged work");
        shutdown.cancel();
    });
}

/// The multi-threaded runtime every binary's `main` starts.
///
/// # Errors
/// The OS refused threads or an epoll instance.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// 14,000 probes need 14,000 sockets (twice that for the demo, which holds both ends): lifts
/// the open-file limit to `want`, the hard one too when allowed (root, CAP_SYS_RESOURCE), and
/// warns naming the fix when it stays below.
pub fn raise_fd_limit(want: u64) {
    let hard = rlimit::Resource::NOFILE.get().map_or(0, |(_, h)| h);
    if hard < want && rlimit::Resource::NOFILE.set(want, want).is_ok() {
        return;
    }
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < want => tracing::warn!(
            limit = n,
            wanted = want,
            "open-file limit is low for this many probes; raise it (ulimit -n, or LimitNOFILE= in the unit)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

/// An error the user fixes in their files or flags (the binaries exit with code 2 on it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// The exit code of a failed command whose error and causes are `chain`: 2 when one of them
/// is the user's to fix (a [`UserError`], or what `also_user` recognises), else 1.
pub fn exit_code<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
    also_user: impl Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> std::process::ExitCode {
    if chain
        .into_iter()
        .any(|c| c.is::<UserError>() || also_user(c))
    {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::FAILURE
    }
}
