//! rie-common: process plumbing every rie-telemetry binary needs the same way.
//!
//! It owns:
//! - [`now_ms`], the one wall-clock reading (Unix milliseconds) the probe, the collector, the
//!   simulator and the tests use;
//! - `config_file`: the TOML files people edit (probe and collector configs, the cost model),
//!   read the same way everywhere, with a [`ConfigFileError`] that names the file, then the
//!   line or the key ([`read_toml`]);
//! - `cli`: the logging flags and set-up ([`LogArgs`], [`init_logs`]) and the shutdown signal
//!   ([`wait_for_signal`], Ctrl-C or SIGTERM).
//!
//! It may import only external crates (tokio for the signal, tracing-subscriber, clap, toml,
//! serde, thiserror), none of ours: every other crate of the workspace may then use it.

mod cli;
mod config_file;

pub use cli::{init_logs, wait_for_signal, LogArgs, LogFormat};
pub use config_file::{read_toml, ConfigFileError};

/// Wall clock, Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
