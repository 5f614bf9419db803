//! rie-common: process plumbing every rie-telemetry binary needs the same way.
//!
//! It owns:
//! - [`now_ms`], the one wall-clock reading (Unix milliseconds) the probe, the collector, the
//!   simulator and the tests use;
//! - `config_file`: the TOML files people edit (probe and collector configs, the cost model),
//!   read the same way everywhere, with a [`ConfigFileError`] that names the file, then the
//!   line or the key ([`read_toml`]);
//! - [`split_host_port`], the one reading of a `host:port` address (config keys, the
//!   address a probe dials);
//! - `cli`: the logging flags and set-up ([`LogArgs`], [`init_logs`]) and the shutdown signal
//!   ([`wait_for_signal`], [`cancel_on_signal`], Ctrl-C or SIGTERM), the runtime ([`runtime`])
//!   and the open-file limit a national fleet needs ([`raise_fd_limit`]).
//!
//! It may import only external crates (tokio and tokio-util for the runtime and the signal,
//! tracing, tracing-subscriber, rlimit, clap, toml, serde, thiserror), none of ours: every other crate of the workspace may then use it.

mod cli;
mod config_file;

pub use cli::{
    cancel_on_signal, exit_code, init_logs, raise_fd_limit, runtime, wait_for_signal, LogArgs,
    LogFormat, UserError,
};
pub use config_file::{read_toml, ConfigFileError};

/// Wall clock, Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Splits `host:port` (with `[v6]:port` support); `None` when malformed.
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a.b:7443"), Some(("a.b".into(), 7443)));
        assert_eq!(split_host_port("[::1]:7443"), Some(("::1".into(), 7443)));
        assert_eq!(split_host_port("a.b"), None);
    }
}
