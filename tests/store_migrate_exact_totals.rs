//! `rie-collector store migrate` moves a SQLite store filled by real probes into a fresh
//! PostgreSQL 15 server, exactly: a collector on SQLite receives a replayed link incident
//! (episodes), a stream of traffic batches and a real `rie-probe run` with simulated traffic and
//! link incidents; history the probes cannot make (compacted tiers, NetFlow templates and
//! sampling) is laid down by hand so that every table holds rows. The collector stops, and the
//! real binary copies the file: once stopped on purpose after a few chunks, once SIGKILLed in
//! the middle, then run to the end. Each time the progress recorded equals the rows present;
//! the end totals printed are equal and equal to what SQLite and PostgreSQL sum themselves (and a
//! row slipped into the target makes them differ: exit 1); a second run is refused (exit 2)
//! until `--force`. A collector then started on the PostgreSQL
//! database recognises the probe's old batch as a duplicate (marks migrated), accepts its token
//! (hashes migrated) and opens new episodes after the copied ones (ids carried on).

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rie_collector::store::migrate::TABLES;
use rie_common::now_ms;
use rie_e2e::{batch, bin, flow, rfc3339, s1_incident, s1_links, send_ok, Collector, Probe};
use rie_testpg::PgServer;

const SIM: &str =
    "seed = 5\nagents = 120\nprimary_link = \"S3-P\"\nbackup_link = \"S3-B\"\nincident_rate = 0.3";
const PASSWORD_VAR: &str = "RIE_TEST_MIGRATE_PASSWORD";

/// Traffic batches of S1 on stream 8, one minute each, with distinct counters.
fn traffic(seqs: std::ops::RangeInclusive<u64>) -> Vec<serde_json::Value> {
    let base = 1_790_000_040 - 3 * 86_400;
    seqs.map(|k| {
        let minute = base + 60 * k as i64;
        let mut b = batch(
            k,
            vec![
                flow(minute, 6, k, 10 * k + 1, 1_000 * k + 17),
                flow(minute, 17, 2 * k, 3 * k, 555 * k + 3),
            ],
        );
        b["top_talkers"] = serde_json::json!([
            {"minute": minute, "prefix": "192.0.2.0/24", "bytes": 900 * k, "packets": 9 * k}
        ]);
        b
    })
    .collect()
}

fn stored(c: &Collector, site: &str) -> u64 {
    c.get(&format!("/api/v1/sites/{site}"))["probe"]["batches_stored"]
        .as_u64()
        .unwrap_or(0)
}

fn migrate_cmd(db: &Path, pg: &PgServer, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin("rie-collector"));
    cmd.args(["store", "migrate", "--from"])
        .arg(format!("sqlite:{}", db.display()))
        .arg("--to")
        .arg(format!(
            "postgres:postgresql://rie_migrate@127.0.0.1:{}/rie",
            pg.port()
        ))
        .args(["--password-env", PASSWORD_VAR])
        .args(extra)
        .env(PASSWORD_VAR, "m1grate-pw");
    cmd
}

fn migrate(db: &Path, pg: &PgServer, extra: &[&str]) -> Output {
    migrate_cmd(db, pg, extra).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One integer from SQLite (the source file, read-only).
fn sqlite_i64(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .unwrap()
        .unwrap_or(0)
}

fn sqlite_text(db: &Path, sql: &str) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.join("\n")
}

fn pg_i64(pg: &PgServer, sql: &str) -> i64 {
    let out = pg.psql(sql);
    let out = out.trim();
    if out.is_empty() {
        0
    } else {
        out.parse()
            .unwrap_or_else(|e| panic!("{sql}: {out:?}: {e}"))
    }
}

/// Rows per table in the target, and the rows its progress records say were copied.
fn target_rows(pg: &PgServer) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let mut rows = BTreeMap::new();
    for t in TABLES {
        rows.insert(
            t.to_string(),
            pg_i64(pg, &format!("SELECT count(*) FROM {t}")),
        );
    }
    let progress = pg
        .psql("SELECT table_name || ' ' || rows_copied FROM migration_progress")
        .lines()
        .map(|l| {
            let (t, n) = l.split_once(' ').unwrap();
            (t.to_string(), n.parse().unwrap())
        })
        .collect();
    (rows, progress)
}

/// Rows copied after `chunks` chunks of `chunk` rows, following the copy's order: a table of
/// n rows takes n / chunk + 1 chunks (a short or empty last one says it is done).
fn rows_after_chunks(counts: &BTreeMap<String, i64>, chunk: i64, mut chunks: i64) -> i64 {
    let mut rows = 0;
    for t in TABLES {
        let n = counts[*t];
        for i in 0..=n / chunk {
            if chunks == 0 {
                return rows;
            }
            chunks -= 1;
            rows += chunk.min(n - i * chunk);
        }
    }
    rows
}

/// The `name  source  target  equal` lines of the printed comparison.
fn printed_totals(stdout: &str) -> BTreeMap<String, (String, String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 4 && matches!(*w.last().unwrap(), "equal" | "DIFFERENT")).then(|| {
                let n = w.len();
                (
                    w[..n - 3].join(" "),
                    (
                        w[n - 3].to_string(),
                        w[n - 2].to_string(),
                        w[n - 1].to_string(),
                    ),
                )
            })
        })
        .collect()
}

#[test]
fn a_sqlite_store_moves_to_postgres_exactly_and_resumably() {
    // --- A collector on SQLite, filled by real probe processes. ---
    let mut c = Collector::start_with_config("[store]\nbackend = \"sqlite\"\n");
    let cfg_s1 = c.probe_config("S1");
    let t0 = now_ms() / 1000 * 1000 - 900_000;
    let [b1, b2, b3, b4, b5, _] = s1_incident(t0);
    assert_eq!(send_ok(&cfg_s1, 7, &[b1, b2, b3.clone(), b4, b5]).len(), 5);
    assert_eq!(send_ok(&cfg_s1, 8, &traffic(1..=300)).len(), 300);
    let mut p = Probe::start(&c, "S3", "100ms", Some(SIM));
    c.wait_until("40 batches of S3", Duration::from_secs(60), |c| {
        stored(c, "S3") >= 40
    });
    assert_eq!(p.terminate(), Some(0), "{}", p.log());
    assert_eq!(c.terminate(), Some(0), "{}", c.log());

    // History the probes cannot write in a few seconds: compacted tiers, NetFlow state.
    let day = (t0 / 1000) / 86_400 * 86_400 - 30 * 86_400;
    c.sql(&format!(
        "INSERT INTO flow_5min VALUES ({d5}, 'S2', '', 6, 1, 4, 40, 40000);
         INSERT INTO flow_hour VALUES ({h}, 'S2', '10.0.2.1', 17, 2, 5, 50, 50000);
         INSERT INTO flow_day VALUES ({day}, 'S2', '', 1, 0, 6, 60, 60000);
         INSERT INTO flow_class_5min VALUES ({d5}, 'S2', '', 6, 1, 'web', 4, 40, 40000);
         INSERT INTO flow_class_hour VALUES ({h}, 'S2', '10.0.2.1', 17, 2, 'dns', 5, 50, 50000);
         INSERT INTO flow_class_day VALUES ({day}, 'S2', '', 1, 0, 'unknown', 6, 60, 60000);
         INSERT INTO link_5min VALUES ({d5}, 'S2', 'S2-P', 5, 50, 49, 700000, 49, 30000);
         INSERT INTO link_hour VALUES ({h}, 'S2', 'S2-P', 12, 120, 118, 1700000, 118, NULL);
         INSERT INTO link_day VALUES ({day}, 'S2', 'S2-P', 24, 240, 230, 3000000, 230, 90000);
         INSERT INTO top_talker_5min VALUES ({d5}, 'S2', '10.9.0.0/16', 9000, 9);
         INSERT INTO top_talker_hour VALUES ({h}, 'S2', '10.9.0.0/16', 19000, 19);
         INSERT INTO top_talker_day VALUES ({day}, 'S2', '10.9.0.0/16', 29000, 29);
         INSERT INTO netflow_templates VALUES ('v9:10.0.2.1:0/0', 1, 256, x'000102feff', 1700000000000);
         INSERT INTO netflow_sampling VALUES ({h}, 'S2', '10.0.2.1', 100, 7);
         INSERT INTO api_tokens VALUES ('0123456789ab', 'grafana', 'noc', '{sha}', 1700000000000, NULL, NULL);
         INSERT INTO audit_log VALUES (1, 1700000000000, 'cli', '-', '-', 'token.create', 'grafana', 'ok');
         INSERT INTO api_sessions VALUES ('{sha}', 'agent@example.gouv.fr', 'noc', 'agent', '{{}}', 'x.y.z', 1700000000000, 1700000000000, 1700043200000, NULL);
         INSERT INTO api_logins VALUES ('{sha}', 'state', 'nonce', 'verifier', 1700000000000);
         INSERT INTO api_accounts VALUES ('corr.interieur', 'ministry:Intérieur', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g', 1700000000000, 1700000000000, NULL);
         INSERT INTO plans VALUES (1, 'national', '', '{sha}', '[primary]\ninterval = \"10s\"\n', 1700000000000);
         INSERT INTO plan_status VALUES ('S2', 1, 'refused', 'no interface wwan0', 1700000000000);
         INSERT INTO plan_rollouts VALUES (1, 3, '{{\"scope\":\"national\",\"version\":1,\"previous_version\":0,\"canary_permille\":10,\"waves_permille\":[100,500,1000],\"canary_sites\":[],\"wave_interval_ms\":600000,\"max_bad_permille\":20,\"state\":\"done\",\"wave\":3,\"started_ms\":1700000000000,\"wave_started_ms\":1700001800000,\"reason\":\"\",\"rollback_version\":0,\"started_by\":\"cli\"}}', 1700002400000);",
        sha = "ab".repeat(32),
        d5 = day + 86_400,
        h = day + 2 * 86_400,
    ));
    let db = c.dir.path().join("data/rie.db");
    let counts: BTreeMap<String, i64> = TABLES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                sqlite_i64(&db, &format!("SELECT count(*) FROM {t}")),
            )
        })
        .collect();
    for (t, n) in &counts {
        assert!(
            *n > 0,
            "source table {t} is empty: the copy of it would not be tested"
        );
    }
    assert!(counts["episodes"] >= 3, "{counts:?}");
    assert!(counts["flow_minute"] >= 600, "{counts:?}");
    let total_rows: i64 = counts.values().sum();
    let src_bytes = sqlite_i64(&db, "SELECT sum(bytes) FROM flow_rollup");
    let src_packets = sqlite_i64(&db, "SELECT sum(packets) FROM flow_rollup");
    let src_flows = sqlite_i64(&db, "SELECT sum(flows) FROM flow_rollup");
    let src_sent = sqlite_i64(&db, "SELECT sum(sent) FROM link_rollup");
    let src_outage_ms = sqlite_i64(
        &db,
        "SELECT sum(end_ms - start_ms) FROM episodes WHERE kind = 'outage' AND end_ms IS NOT NULL",
    );
    // S1's replayed outage alone is 120 s.
    assert!(src_outage_ms >= 120_000, "{src_outage_ms}");
    let src_open = sqlite_i64(&db, "SELECT count(*) FROM episodes WHERE end_ms IS NULL");
    let src_batches = sqlite_i64(&db, "SELECT sum(last_seq) FROM probe_streams");
    let src_hashes = sqlite_text(
        &db,
        "SELECT credential_ref || ':' || token_sha256 FROM probe_credentials ORDER BY 1",
    );
    let src_file = std::fs::read(&db).unwrap();

    // --- A fresh PostgreSQL with a password-protected owner of the database. ---
    let pg = PgServer::start();
    pg.psql("CREATE ROLE rie_migrate LOGIN PASSWORD 'm1grate-pw'; ALTER DATABASE rie OWNER TO rie_migrate;");

    // A wrong source scheme is the user's to fix.
    let out = Command::new(bin("rie-collector"))
        .args(["store", "migrate", "--from"])
        .arg(&db)
        .args(["--to", "postgres:postgresql://x@127.0.0.1/rie"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("expected sqlite:PATH"),
        "{:?}",
        text(&out)
    );

    // 0. The comparison can fail: a row the source does not have, slipped into the target in
    // the middle of a migration, makes the end totals differ (exit 1, the figure named).
    let out = migrate(&db, &pg, &["--stop-after-chunks", "1"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    pg.psql("INSERT INTO top_talker_day VALUES (86400, 'S9', '10.0.0.0/8', 5, 1)");
    let out = migrate(&db, &pg, &[]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("differ: rows top_talker_day 1 vs 2") && err.contains("DIFFERENT"),
        "{err}"
    );

    // 1. Stopped on purpose after 40 chunks of 3 rows (--force: the target holds a finished
    // copy, which is deleted first).
    let out = migrate(
        &db,
        &pg,
        &["--force", "--chunk-rows", "3", "--stop-after-chunks", "40"],
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stopped after 40 chunk(s)"), "{err}");
    let (rows, progress) = target_rows(&pg);
    assert_eq!(rows, progress, "progress must equal the rows present");
    let want = rows_after_chunks(&counts, 3, 40);
    assert_eq!(rows.values().sum::<i64>(), want);
    assert!(want > 0 && want < total_rows);

    // 2. SIGKILLed in the middle of a run of one row per chunk.
    let mut child = migrate_cmd(&db, &pg, &["--chunk-rows", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    while pg_i64(&pg, "SELECT sum(rows_copied) FROM migration_progress") < want + 50 {
        assert!(Instant::now() < end, "the resumed run copies nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed: give it more rows"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let (rows, progress) = target_rows(&pg);
    assert_eq!(
        rows, progress,
        "progress must equal the rows present after SIGKILL"
    );
    let copied: i64 = rows.values().sum();
    eprintln!("first run stopped at {want} rows, the killed one at {copied} of {total_rows}");
    assert!(
        copied > want && copied < total_rows,
        "{copied} of {total_rows}"
    );

    // 3. Run again to the end: exit 0, both sides' totals printed and equal.
    let out = migrate(&db, &pg, &[]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{err}");
    eprintln!("{stdout}");
    assert!(stdout.contains("resumed an interrupted run"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} rows in", total_rows - copied)),
        "{stdout}"
    );
    let printed = printed_totals(&stdout);
    let expect = |name: &str, value: String| {
        assert_eq!(
            printed.get(name),
            Some(&(value.clone(), value, "equal".to_string())),
            "{name}:\n{stdout}"
        );
    };
    expect("flows", src_flows.to_string());
    expect("packets", src_packets.to_string());
    expect("bytes", src_bytes.to_string());
    expect("batches (stream marks)", src_batches.to_string());
    expect("episodes", counts["episodes"].to_string());
    expect("open episodes", src_open.to_string());
    if src_open == 0 {
        expect(
            "outage seconds",
            format!("{}.{:03}", src_outage_ms / 1000, src_outage_ms % 1000),
        );
    }
    for (t, n) in &counts {
        expect(&format!("rows {t}"), n.to_string());
    }
    assert!(!stdout.contains("DIFFERENT"), "{stdout}");

    // PostgreSQL's own sums, outside the collector's read path.
    assert_eq!(pg_i64(&pg, "SELECT sum(bytes) FROM flow_rollup"), src_bytes);
    assert_eq!(
        pg_i64(&pg, "SELECT sum(packets) FROM flow_rollup"),
        src_packets
    );
    assert_eq!(pg_i64(&pg, "SELECT sum(flows) FROM flow_rollup"), src_flows);
    assert_eq!(pg_i64(&pg, "SELECT sum(sent) FROM link_rollup"), src_sent);
    assert_eq!(
        pg_i64(
            &pg,
            "SELECT sum(end_ms - start_ms) FROM episodes WHERE kind = 'outage' AND end_ms IS NOT NULL"
        ),
        src_outage_ms
    );
    assert_eq!(
        pg_i64(&pg, "SELECT sum(last_seq) FROM probe_streams"),
        src_batches
    );
    assert_eq!(
        pg.psql("SELECT credential_ref || ':' || token_sha256 FROM probe_credentials ORDER BY 1")
            .trim(),
        src_hashes
    );
    assert_eq!(
        pg.psql("SELECT encode(body, 'hex') FROM netflow_templates")
            .trim(),
        "000102feff"
    );
    assert_eq!(
        pg.psql("SELECT rtt_max_us IS NULL FROM link_hour").trim(),
        "t"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        src_file,
        "the source was modified"
    );

    // 4. A second run is refused, naming the fix; with --force it copies again, exactly.
    let out = migrate(&db, &pg, &[]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already holds a complete copy of this source") && err.contains("--force"),
        "{err}"
    );
    let out = migrate(&db, &pg, &["--force"]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{err}");
    assert!(
        stdout.contains(&format!("{total_rows} rows in")),
        "{stdout}"
    );
    assert!(!stdout.contains("resumed"), "{stdout}");
    assert_eq!(pg_i64(&pg, "SELECT sum(bytes) FROM flow_rollup"), src_bytes);
    let (rows, _) = target_rows(&pg);
    assert_eq!(rows, counts);

    // 5. A collector on the migrated PostgreSQL database, same PKI: the probe's token still
    // works, its old batch is a duplicate, its new ones are stored and open new episodes.
    let pg_cfg = format!(
        "[store]\nbackend = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n",
        pg.url()
    );
    let d = Collector::start_sharing_pki(&pg_cfg, Some(&c));
    let all = d.totals(None);
    assert_eq!(all["bytes"].as_i64(), Some(src_bytes), "{all}");
    assert_eq!(all["packets"].as_i64(), Some(src_packets), "{all}");
    let text_cfg = std::fs::read_to_string(&cfg_s1).unwrap();
    let moved: String = text_cfg
        .lines()
        .map(|l| {
            if l.starts_with("address = ") {
                format!("address = \"{}\"\n", d.probe_addr)
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let cfg_d = c.dir.path().join("probe-S1-on-postgres.toml");
    std::fs::write(&cfg_d, moved).unwrap();
    assert_eq!(send_ok(&cfg_d, 7, &[b3]), [(3, true)]);
    assert_eq!(send_ok(&cfg_d, 8, &traffic(300..=300)), [(300, true)]);
    let s = 1000;
    let b6 = s1_links(
        6,
        t0 + 501 * s,
        (true, true, t0 + 500 * s),
        (true, false, t0 + 500 * s),
    );
    let b7 = s1_links(
        7,
        t0 + 601 * s,
        (false, false, t0 + 600 * s),
        (true, true, t0 + 600 * s + 300),
    );
    assert_eq!(send_ok(&cfg_d, 7, &[b6, b7]), [(6, false), (7, false)]);
    assert_eq!(d.metric("rie_collector_duplicate_batches_total"), 2.0);
    assert_eq!(d.totals(None)["bytes"].as_i64(), Some(src_bytes));
    let eps = d.get(&format!(
        "/api/v1/sites/S1/episodes?from={}&to={}",
        rfc3339(t0 - 3_600_000),
        rfc3339(now_ms() + 1000)
    ));
    let eps = eps.as_array().unwrap();
    // The replay's failover, outage and failover (now closed at +500 s), and the new one.
    assert_eq!(eps.len(), 4, "{eps:?}");
    assert_eq!(eps[2]["duration_s"], 100, "{eps:?}");
    assert_eq!(eps[3]["start"], rfc3339(t0 + 600 * s), "{eps:?}");
    assert_eq!(
        pg_i64(&pg, "SELECT count(*) FROM episodes"),
        counts["episodes"] + 1
    );
}
