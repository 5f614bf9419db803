//! Which collector sharing a PostgreSQL runs the duties that must run once (silence episodes,
//! compaction): the one holding the session-level advisory lock [`LOCK_KEY`], taken with
//! `pg_try_advisory_lock` on a session of its own. The others retry every
//! [`RETRY`]. PostgreSQL releases the lock when the holder's session ends, so a collector
//! killed with SIGKILL (or cut from the network) hands the duties over:
//! - the server learns that the holder is gone from the socket (closed by the kernel at once
//!   when the process dies), or, when the holder's host or network died silently, from TCP
//!   keepalives set on this session on the server side (`SET tcp_keepalives_*`: idle 5 s,
//!   probes every 2 s, 3 lost: about 11 s);
//! - the holder learns that it lost the server from its own keepalives (the same figures, on
//!   the client socket) and a check query every [`RETRY`] bounded by a timeout: it then steps
//!   down. When the holder is only cut from the server, the server may release the lock a
//!   few seconds before the holder notices: the duties are idempotent enough for that (an
//!   episode opened twice by two scans in those seconds is the only overlap; see
//!   docs/scaling.md).
//!
//! Owns: the lock key and the session. May import `super` (connection set-up). The caller
//! decides what "leader" switches on.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::config::PostgresConfig;

/// "rie-lead" in ASCII.
pub const LOCK_KEY: i64 = 0x7269_652d_6c65_6164;

/// How often a follower tries the lock, and a leader checks its session.
pub const RETRY: Duration = Duration::from_secs(2);

/// Server-side keepalives of the lock session (see the module comment).
const SERVER_KEEPALIVES: &str =
    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3;";

/// Campaigns until `stop`: `on_change(true)` when this collector takes the lock,
/// `on_change(false)` when its session is lost (it may be taken elsewhere by then).
pub async fn run(
    cfg: PostgresConfig,
    mut on_change: impl FnMut(bool) + Send,
    stop: CancellationToken,
) {
    let mut leader = false;
    let mut client: Option<tokio_postgres::Client> = None;
    let mut tick = tokio::time::interval(RETRY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if client
            .as_ref()
            .is_none_or(tokio_postgres::Client::is_closed)
        {
            client = match open(&cfg).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(db = %cfg.masked_url(), error = %e, "leader election: cannot reach PostgreSQL; retrying");
                    None
                }
            };
        }
        let held = match &client {
            Some(c) => try_lock(c, leader).await,
            None => Err("no session".to_string()),
        };
        match held {
            Ok(now) => {
                if now != leader {
                    leader = now;
                    tracing::info!(
                        leader,
                        "leader election: this collector {} the duties that run once",
                        if leader { "now runs" } else { "no longer runs" }
                    );
                    on_change(leader);
                }
            }
            Err(e) => {
                // The session (and with it the lock, if held) is gone or unusable.
                client = None;
                if leader {
                    leader = false;
                    tracing::warn!(error = %e, "leader election: lock session lost; stepping down");
                    on_change(false);
                }
            }
        }
    }
    if leader {
        on_change(false);
    }
    // Dropping the client ends the session: the lock goes at once to the next collector.
}

async fn open(cfg: &PostgresConfig) -> Result<tokio_postgres::Client, super::super::StoreError> {
    let (mut config, tls) = super::prepare(cfg)?;
    super::keepalives(&mut config);
    // Named in pg_stat_activity: an operator finds the leader's session (and its pid).
    config.application_name("rie-collector leader lock");
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|e| super::connect_error(cfg, e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(SERVER_KEEPALIVES)
        .await
        .map_err(|source| super::super::StoreError::Postgres {
            url: cfg.masked_url(),
            source,
        })?;
    Ok(client)
}

/// A leader checks its session; a follower tries the lock. `Ok(true)`: this session holds it.
async fn try_lock(client: &tokio_postgres::Client, held: bool) -> Result<bool, String> {
    let q = async {
        if held {
            client.simple_query("SELECT 1").await.map(|_| true)
        } else {
            client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
                .await
                .and_then(|r| r.try_get::<_, bool>(0))
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), q).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}
