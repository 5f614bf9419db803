//! Delivery to InfluxDB: the HTTP writer (v2 through the `influxdb2` crate, v1/3.x
//! `/write?db=` with reqwest, gzip, HTTP/1.1 only), the classification of answers (retry or
//! refused), the backoff with jitter, and the sender task that drains the backlog in order.
//!
//! Imports the configuration, [`SinkError`] and the shared queue (`Shared`) from the sink;
//! the lines it sends are opaque (encoding is `encode.rs`).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::{InfluxApi, InfluxConfig, Shared, SinkError};

/// Outcome of one write request.
#[derive(Debug)]
enum WriteError {
    /// Network, timeout, 5xx, 408, 429: send again later.
    Retry(String),
    /// Other 4xx: InfluxDB has written what it could and refuses the rest; not retried.
    Rejected(String),
}

pub(super) enum HttpWriter {
    V2 {
        client: influxdb2::Client,
        bucket: String,
    },
    V1 {
        client: reqwest::Client,
        url: String,
        query: Vec<(&'static str, String)>,
        auth: Option<(String, String)>,
    },
}

/// One request body for `influxdb2`'s writer: lines already rendered.
struct Body(String);

impl influxdb2::models::WriteDataPoint for Body {
    fn write_data_point_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(self.0.as_bytes())?;
        w.write_all(b"\n")
    }
}

impl HttpWriter {
    pub(super) fn new(cfg: &InfluxConfig, url: &str) -> Result<Self, SinkError> {
        // HTTP/1.1 only: InfluxDB's write API needs nothing more, and it keeps reqwest 0.11's
        // h2 0.3 (RUSTSEC-2026-0258, no 0.3 fix) out of every connection (docs/dependencies.md).
        let mut http = reqwest::ClientBuilder::new()
            .http1_only()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout);
        if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                SinkError::Client(format!("influx.ca_cert {}: {e}", path.display()))
            })?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                SinkError::Client(format!("influx.ca_cert {}: {e}", path.display()))
            })?;
            http = http.tls_built_in_root_certs(false).add_root_certificate(ca);
        }
        match cfg.api {
            InfluxApi::V2 => {
                let client = influxdb2::ClientBuilder::with_builder(
                    http,
                    url,
                    cfg.org.clone(),
                    cfg.token.0.clone(),
                )
                .gzip(true)
                .build()
                .map_err(|e| SinkError::Client(e.to_string()))?;
                Ok(Self::V2 {
                    client,
                    bucket: cfg.bucket.clone(),
                })
            }
            InfluxApi::V1 => {
                let mut query = vec![("db", cfg.database.clone()), ("precision", "s".into())];
                if let Some(rp) = &cfg.retention_policy {
                    query.push(("rp", rp.clone()));
                }
                Ok(Self::V1 {
                    client: http.build().map_err(|e| SinkError::Client(e.to_string()))?,
                    url: format!("{}/write", url.trim_end_matches('/')),
                    query,
                    auth: cfg.username.clone().map(|u| (u, cfg.password.0.clone())),
                })
            }
        }
    }

    async fn write(&self, body: String) -> Result<(), WriteError> {
        match self {
            Self::V2 { client, bucket } => {
                let points = futures_util::stream::iter([Body(body)]);
                client
                    .write_with_precision(
                        bucket,
                        points,
                        influxdb2::api::write::TimestampPrecision::Seconds,
                    )
                    .await
                    .map_err(|e| match e {
                        influxdb2::RequestError::Http { status, text } => {
                            classify(status.as_u16(), text)
                        }
                        other => WriteError::Retry(other.to_string()),
                    })
            }
            Self::V1 {
                client,
                url,
                query,
                auth,
            } => {
                use std::io::Write as _;
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(body.as_bytes())
                    .and_then(|()| gz.write_all(b"\n"))
                    .map_err(|e| WriteError::Retry(e.to_string()))?;
                let gz = gz.finish().map_err(|e| WriteError::Retry(e.to_string()))?;
                let mut req = client
                    .post(url.as_str())
                    .query(query)
                    .header("Content-Encoding", "gzip")
                    .body(gz);
                if let Some((u, p)) = auth {
                    req = req.basic_auth(u, Some(p));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| WriteError::Retry(e.to_string()))?;
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let text = resp.text().await.unwrap_or_default();
                Err(classify(status, text))
            }
        }
    }
}

fn classify(status: u16, text: String) -> WriteError {
    let msg = format!(
        "HTTP {status}: {}",
        text.chars().take(500).collect::<String>()
    );
    if (400..500).contains(&status) && status != 408 && status != 429 {
        WriteError::Rejected(msg)
    } else {
        WriteError::Retry(msg)
    }
}

/// `N` of InfluxDB's "partial write: ... dropped=N" answer.
fn partial_write_dropped(msg: &str) -> Option<usize> {
    let rest = &msg[msg.find("dropped=")? + "dropped=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn backoff(cfg: &InfluxConfig, failures: u32) -> Duration {
    let exp = cfg
        .retry_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    exp.min(cfg.retry_max)
        .mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

pub(super) async fn sender(shared: Arc<Shared>, writer: HttpWriter, stop: CancellationToken) {
    let cfg = shared.cfg.clone();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(cfg.flush_interval) => {}
        }
        loop {
            let chunk = match shared.with_queue(|q| Ok((q.take()?, 0))) {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the InfluxDB backlog");
                    break;
                }
            };
            let result = writer.write(chunk.body.clone()).await;
            let m = &shared.metrics;
            let requeue = match result {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "InfluxDB reachable again; sending the backlog");
                    }
                    failures = 0;
                    m.written.inc_by(chunk.points as u64);
                    shared.with_queue(|q| Ok((q.done(&chunk)?, 0)))
                }
                Err(WriteError::Rejected(msg)) => {
                    // InfluxDB writes the valid lines of a request and reports the others
                    // ("partial write: ... dropped=N"); without that count, all were refused.
                    let refused =
                        partial_write_dropped(&msg).map_or(chunk.points, |n| n.min(chunk.points));
                    m.write_errors.inc();
                    m.rejected.inc_by(refused as u64);
                    m.written.inc_by((chunk.points - refused) as u64);
                    tracing::error!(error = %msg, refused, points = chunk.points, "InfluxDB refused points (not retried); the error quotes the offending line");
                    shared.with_queue(|q| Ok((q.done(&chunk)?, 0)))
                }
                Err(WriteError::Retry(msg)) => {
                    failures += 1;
                    m.write_errors.inc();
                    m.retried.inc_by(chunk.points as u64);
                    let wait = backoff(&cfg, failures);
                    // Logged at failures 1, 2, 4, 8...: a long outage does not flood the log.
                    if failures.is_power_of_two() {
                        tracing::warn!(error = %msg, failures, retry_in = ?wait, "InfluxDB write failed; keeping points");
                    }
                    if let Err(e) = shared.with_queue(|q| Ok(((), q.failed(&chunk)?))) {
                        tracing::error!(error = %e, "cannot keep failed InfluxDB points on disk");
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            if let Err(e) = requeue {
                tracing::error!(error = %e, "cannot update the InfluxDB backlog");
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_write_count() {
        let msg = r#"HTTP 400: {"error":"partial write: field type conflict: input field \"bytes\" on measurement \"site_traffic\" is type integer, already exists as type float dropped=3"}"#;
        assert_eq!(partial_write_dropped(msg), Some(3));
        assert_eq!(partial_write_dropped("HTTP 400: bad"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let c = InfluxConfig::default();
        for _ in 0..50 {
            let d = backoff(&c, 1);
            assert!(d >= c.retry_min / 2 && d <= c.retry_min, "{d:?}");
            let d = backoff(&c, 30);
            assert!(d >= c.retry_max / 2 && d <= c.retry_max, "{d:?}");
        }
    }
}
