//! Live site states shared between collectors on one PostgreSQL: the write transaction of
//! every group that changes `site_status` rows notifies [`CHANNEL`] with the site ids
//! (`NOTIFY` is transactional: heard only once the group is committed, never for a rolled
//! back one), and [`run`] — one task per collector, on a session of its own — listens, reads
//! the changed rows and hands them to the caller.
//!
//! Owns: the channel name, the payload format (site ids joined by commas, split below
//! PostgreSQL's 8000-byte payload limit), the listening session (reconnected with backoff),
//! and the reloads that cover what a notification cannot: a full read of `site_status` after
//! each (re)connection (notifications sent while no session listened are lost) and a slow
//! periodic one as a safety net. May import `super` (connection set-up); it knows nothing of
//! sites' live logic: what to do with a row newer than the one held is the caller's rule.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::super::config::PostgresConfig;

/// The notification channel of site state changes.
pub const CHANNEL: &str = "rie_site_state";

/// `application_name` of the listening session.
pub const APPLICATION_NAME: &str = "rie-collector site-state listener";

/// Bytes of one payload at most (PostgreSQL refuses 8000 and more).
const MAX_PAYLOAD: usize = 7900;

/// One row of `site_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteStatus {
    pub site: String,
    pub json: String,
    /// Collector clock at the commit that wrote it (Unix ms): the row's version.
    pub updated_ms: i64,
}

/// The payloads announcing `sites` (several when the ids do not fit in one).
pub fn payloads(sites: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for s in sites {
        if !cur.is_empty() && cur.len() + 1 + s.len() > MAX_PAYLOAD {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(s);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Site ids of a payload.
pub fn sites_of(payload: &str) -> impl Iterator<Item = &str> {
    payload.split(',').filter(|s| !s.is_empty())
}

/// Listens until `stop`: each batch of changed rows, and each full reload, goes to `deliver`
/// (called on this task: keep it short). Errors are logged and the session reopened after a
/// backoff of 200 ms doubling up to 10 s.
pub async fn run(
    cfg: PostgresConfig,
    full_reload_every: Duration,
    mut deliver: impl FnMut(Vec<SiteStatus>) + Send,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !stop.is_cancelled() {
        match session(&cfg, full_reload_every, &mut deliver, &stop).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(db = %cfg.masked_url(), error = %e, retry_in = ?backoff,
                    "site state listener lost its session; reconnecting, then reloading every site");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Why a listening session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Setup(#[from] super::super::StoreError),
    #[error(transparent)]
    Pg(#[from] tokio_postgres::Error),
    #[error("the session closed")]
    Closed,
}

async fn session(
    cfg: &PostgresConfig,
    full_reload_every: Duration,
    deliver: &mut (impl FnMut(Vec<SiteStatus>) + Send),
    stop: &CancellationToken,
) -> Result<(), SessionError> {
    let (mut config, tls) = super::prepare(cfg)?;
    super::keepalives(&mut config);
    // Named in pg_stat_activity, for operators (and the test that cuts it).
    config.application_name(APPLICATION_NAME);
    let (client, mut connection) = config
        .connect(tls)
        .await
        .map_err(|e| super::connect_error(cfg, e))?;
    // The connection is polled here, not by `connect`'s spawned task: notifications arrive
    // as its messages.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let pump = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "site state listener session ended");
                    break;
                }
            }
        }
    });
    let res = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Listening first, then reading: a change committed in between is both read and
        // notified (read twice, harmless), never missed.
        deliver(all(&client).await?);
        let mut reload = tokio::time::interval(full_reload_every);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reload.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = reload.tick() => deliver(all(&client).await?),
                p = rx.recv() => {
                    let Some(first) = p else { return Err(SessionError::Closed) };
                    let mut ids: Vec<String> = sites_of(&first).map(str::to_string).collect();
                    while let Ok(more) = rx.try_recv() {
                        ids.extend(sites_of(&more).map(str::to_string));
                    }
                    ids.sort_unstable();
                    ids.dedup();
                    deliver(some(&client, &ids).await?);
                }
            }
        }
    }
    .await;
    pump.abort();
    res
}

fn rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<SiteStatus>, tokio_postgres::Error> {
    rows.into_iter()
        .map(|r| {
            Ok(SiteStatus {
                site: r.try_get(0)?,
                json: r.try_get(1)?,
                updated_ms: r.try_get(2)?,
            })
        })
        .collect()
}

async fn all(client: &tokio_postgres::Client) -> Result<Vec<SiteStatus>, tokio_postgres::Error> {
    rows(
        client
            .query(
                "SELECT site_id, live_json, updated_ms FROM site_status",
                &[],
            )
            .await?,
    )
}

async fn some(
    client: &tokio_postgres::Client,
    ids: &[String],
) -> Result<Vec<SiteStatus>, tokio_postgres::Error> {
    rows(
        client
            .query(
                "SELECT site_id, live_json, updated_ms FROM site_status WHERE site_id = ANY($1)",
                &[&ids],
            )
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SiteStateRow, Store, WriteSet};

    /// A committed state is delivered by its notification; a row written while the listening
    /// session is down (its notification lost) is delivered by the full reload that follows
    /// the reconnection.
    #[test]
    fn notified_rows_arrive_and_a_reconnection_reloads_what_was_missed() {
        let server = rie_testpg::PgServer::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = PostgresConfig {
            url: server.url(),
            password_file: None,
            password_env: None,
            root_cert: None,
            pool_size: 2,
        };
        let mut store = super::super::PgStore::open(&cfg, rt.handle()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        rt.spawn(run(
            cfg.clone(),
            Duration::from_secs(3600),
            move |rows| {
                let _ = tx.send(rows);
            },
            stop.clone(),
        ));
        let next = || rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The first full read: nothing stored yet.
        assert_eq!(next(), vec![]);
        let row = |site: &str, json: &str, ms| SiteStatus {
            site: site.into(),
            json: json.into(),
            updated_ms: ms,
        };
        store
            .write(&WriteSet {
                site_states: vec![SiteStateRow {
                    site: "S1".into(),
                    json: "{\"batches_stored\":1}".into(),
                }],
                now_ms: 10,
                ..WriteSet::default()
            })
            .unwrap();
        assert_eq!(next(), vec![row("S1", "{\"batches_stored\":1}", 10)]);
        // The same site again, at an earlier clock: its version still grows.
        store
            .write(&WriteSet {
                site_states: vec![SiteStateRow {
                    site: "S1".into(),
                    json: "{\"batches_stored\":2}".into(),
                }],
                now_ms: 5,
                ..WriteSet::default()
            })
            .unwrap();
        assert_eq!(next(), vec![row("S1", "{\"batches_stored\":2}", 11)]);
        // S2 is written without a notification, and the listening session is cut in the same
        // transaction: only the reload after the reconnection can deliver it.
        server.psql(&format!(
            "INSERT INTO site_status(site_id, live_json, updated_ms) VALUES ('S2', '{{}}', 20);
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = '{APPLICATION_NAME}'"
        ));
        let mut got = next();
        got.sort_by(|a, b| a.site.cmp(&b.site));
        assert_eq!(
            got,
            vec![row("S1", "{\"batches_stored\":2}", 11), row("S2", "{}", 20)]
        );
        stop.cancel();
    }

    #[test]
    fn payloads_stay_under_the_limit_and_keep_every_id() {
        let ids: Vec<String> = (0..14_000).map(|i| format!("S{i:05}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let p = payloads(&refs);
        // 14,000 ids of 6 bytes plus commas: 97,999 bytes, in payloads of at most 7900.
        assert_eq!(p.len(), 13);
        assert!(p.iter().all(|x| x.len() <= MAX_PAYLOAD));
        let back: Vec<&str> = p.iter().flat_map(|x| sites_of(x)).collect();
        assert_eq!(back, refs);
        assert_eq!(payloads(&[]), Vec::<String>::new());
    }
}
