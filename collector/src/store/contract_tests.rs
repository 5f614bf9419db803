//! The store contract (`store` module comment) checked on **both** backends with the same
//! assertions: each test runs on SQLite and on a real PostgreSQL 15 server (`rie-testpg`),
//! opened through [`super::open_backend`] exactly as the collector opens them.

use super::*;
use rie_proto::PortClass;

/// One opened backend and what keeps it alive.
struct Backend {
    name: &'static str,
    opened: Opened,
    _dir: tempfile::TempDir,
    _pg: Option<rie_testpg::PgServer>,
}

/// SQLite, then PostgreSQL; PostgreSQL calls run on `rt` (tests are plain threads).
fn both(rt: &tokio::runtime::Runtime) -> Vec<Backend> {
    let open = |cfg: StoreConfig, pg| {
        let dir = tempfile::tempdir().unwrap();
        let opened = open_backend(&cfg, dir.path(), rt.handle()).unwrap();
        (opened, dir, pg)
    };
    let (sqlite, d1, _) = open(StoreConfig::default(), None);
    let server = rie_testpg::PgServer::start();
    let cfg = StoreConfig {
        backend: config::Backend::Postgres,
        postgres: Some(postgres::test_support::config(server.url())),
        ..StoreConfig::default()
    };
    let (pg, d2, server) = open(cfg, Some(server));
    vec![
        Backend {
            name: "sqlite",
            opened: sqlite,
            _dir: d1,
            _pg: None,
        },
        Backend {
            name: "postgres",
            opened: pg,
            _dir: d2,
            _pg: server,
        },
    ]
}

use postgres::test_support::runtime;

fn flow(minute: i64, exporter: &str, class: PortClass, bytes: i64) -> FlowRow {
    FlowRow {
        minute,
        site: "S1".into(),
        exporter: exporter.into(),
        protocol: 6,
        direction: 1,
        port_class: class,
        flows: 1,
        packets: 2,
        bytes,
    }
}

fn link(sent: i64, received: i64, rtt_max_us: Option<i64>) -> LinkRow {
    LinkRow {
        minute: 60,
        site: "S1".into(),
        link: "S1-P".into(),
        sent,
        received,
        rtt_sum_us: rtt_max_us.unwrap_or(0),
        rtt_n: i64::from(rtt_max_us.is_some()),
        rtt_max_us,
    }
}

fn mark(seq: u64) -> StreamMark {
    StreamMark {
        site: "S1".into(),
        stream: u64::MAX - 1,
        seq,
        updated_ms: seq as i64,
    }
}

/// Points 1, 2 and 4: a group is visible whole once `write` returns, and every additive row
/// adds to the row with its key (probe and NetFlow sum into one minute, `max` for the RTT).
#[test]
fn groups_add_up_exactly_on_both_backends() {
    let rt = runtime();
    for mut b in both(&rt) {
        let set = |n: i64| WriteSet {
            flows: vec![
                flow(60, "", PortClass::Web, 100 * n),
                flow(60, "192.0.2.1", PortClass::Web, 7),
                flow(120, "", PortClass::Dns, 1),
            ],
            talkers: vec![TalkerRow {
                minute: 60,
                site: "S1".into(),
                prefix: "10.1.0.0/24".into(),
                bytes: 10 * n,
                packets: n,
            }],
            links: vec![link(5, 5, Some(900 * n)), link(5, 0, None)],
            marks: vec![mark(n as u64)],
            now_ms: n,
            ..WriteSet::default()
        };
        b.opened.store.write(&set(1)).unwrap();
        b.opened.store.write(&set(2)).unwrap();
        let r = &b.opened.reader;
        let t = r.flow_totals(0, 600, Some("S1"), None).unwrap();
        assert_eq!((t.flows, t.packets, t.bytes), (6, 12, 316), "{}", b.name);
        assert_eq!(t.by_port_class["web"].bytes, 314, "{}", b.name);
        let netflow = r.flow_totals(0, 600, None, Some("192.0.2.1")).unwrap();
        assert_eq!(netflow.bytes, 14, "{}", b.name);
        assert_eq!(
            r.top_talkers("S1", 0, 600, 5).unwrap(),
            vec![TalkerTotal {
                prefix: "10.1.0.0/24".into(),
                bytes: 30,
                packets: 3
            }],
            "{}",
            b.name
        );
        let l = r.link_minutes("S1", 0, 600).unwrap();
        assert_eq!(
            l.iter()
                .map(|l| (l.sent, l.received, l.rtt_sum_us, l.rtt_n, l.rtt_max_us))
                .collect::<Vec<_>>(),
            vec![(20, 10, 2700, 2, Some(1800))],
            "{}",
            b.name
        );
        assert_eq!(
            r.stream_mark("S1", u64::MAX - 1).unwrap(),
            Some(2),
            "{}",
            b.name
        );
    }
}

/// Points 3 and 8: marks are raised with their group; a group whose marks are at or behind
/// the stored ones is refused whole (no rows, no state), naming the stored marks.
#[test]
fn a_group_behind_the_stored_marks_stores_nothing_on_both_backends() {
    let rt = runtime();
    for mut b in both(&rt) {
        let set = |seqs: &[u64]| WriteSet {
            flows: vec![flow(60, "", PortClass::Web, 1000)],
            marks: seqs.iter().map(|&s| mark(s)).collect(),
            site_states: vec![SiteStateRow {
                site: "S1".into(),
                json: format!("{seqs:?}"),
            }],
            now_ms: 1,
            ..WriteSet::default()
        };
        let store = &mut b.opened.store;
        store.write(&set(&[4, 5])).unwrap();
        match store.write(&set(&[5, 6])) {
            Err(StoreError::StaleMarks(m)) => assert_eq!(m, vec![mark(5)], "{}", b.name),
            other => panic!("{}: expected StaleMarks, got {other:?}", b.name),
        }
        let loaded = store.load().unwrap();
        assert_eq!(loaded.marks, vec![mark(5)], "{}", b.name);
        assert_eq!(loaded.site_states[0].json, "[4, 5]", "{}", b.name);
        let bytes = |b: &Backend| {
            b.opened
                .reader
                .flow_totals(0, 600, None, None)
                .unwrap()
                .bytes
        };
        assert_eq!(bytes(&b), 1000, "{}", b.name);
        b.opened.store.write(&set(&[6, 7])).unwrap();
        assert_eq!(
            b.opened.store.load().unwrap().marks,
            vec![mark(7)],
            "{}",
            b.name
        );
        assert_eq!(bytes(&b), 2000, "{}", b.name);
    }
}

/// What a restarted collector resumes from is exactly what was committed: the latest state
/// per site, open silent episodes only, templates announced and not withdrawn; episodes
/// opened and closed in one group read back closed.
#[test]
fn load_gives_back_the_committed_state_on_both_backends() {
    let rt = runtime();
    let mut seen = Vec::new();
    for mut b in both(&rt) {
        let state = |site: &str, json: &str| SiteStateRow {
            site: site.into(),
            json: json.into(),
        };
        let open = |site: &str, kind, start_ms| EpisodeChange::Open {
            site: site.into(),
            kind,
            link: None,
            start_ms,
            cause: "test".into(),
        };
        let template = |id, body: Option<&[u8]>| TemplateChange {
            scope: "192.0.2.1/0".into(),
            kind: 9,
            template_id: id,
            body: body.map(<[u8]>::to_vec),
        };
        let store = &mut b.opened.store;
        store
            .write(&WriteSet {
                site_states: vec![state("S1", "old"), state("S2", "two")],
                episodes: vec![
                    open("S1", EpisodeKind::Silent, 1000),
                    open("S2", EpisodeKind::Silent, 2000),
                    open("S2", EpisodeKind::Outage, 2500),
                ],
                templates: vec![template(256, Some(b"a")), template(257, Some(b"b"))],
                now_ms: 3000,
                ..WriteSet::default()
            })
            .unwrap();
        store
            .write(&WriteSet {
                site_states: vec![state("S1", "new")],
                episodes: vec![
                    EpisodeChange::Close {
                        site: "S2".into(),
                        kind: EpisodeKind::Silent,
                        start_ms: 2000,
                        end_ms: 4000,
                    },
                    open("S3", EpisodeKind::Degraded, 4100),
                    EpisodeChange::Close {
                        site: "S3".into(),
                        kind: EpisodeKind::Degraded,
                        start_ms: 4100,
                        end_ms: 4200,
                    },
                ],
                templates: vec![template(257, None), template(256, Some(b"a2"))],
                now_ms: 5000,
                ..WriteSet::default()
            })
            .unwrap();
        let mut loaded = store.load().unwrap();
        loaded.site_states.sort_by(|a, b| a.site.cmp(&b.site));
        assert_eq!(
            loaded.site_states,
            vec![state("S1", "new"), state("S2", "two")],
            "{}",
            b.name
        );
        assert_eq!(
            loaded.open_silent,
            vec![("S1".to_string(), 1000)],
            "{}",
            b.name
        );
        assert_eq!(
            loaded.templates,
            vec![template(256, Some(b"a2"))],
            "{}",
            b.name
        );
        let r = &b.opened.reader;
        let s3 = r.episodes("S3", 0, 10_000).unwrap();
        assert_eq!(
            s3.iter()
                .map(|e| (e.start_ms, e.end_ms))
                .collect::<Vec<_>>(),
            vec![(4100, Some(4200))],
            "{}",
            b.name
        );
        seen.push(format!(
            "{:?}",
            (
                r.episodes("S2", 0, 10_000).unwrap(),
                r.episodes_touching(0, 10_000).unwrap().len()
            )
        ));
    }
    assert_eq!(seen[0], seen[1]);
}

/// The status page's national traffic read: bytes by direction per site over `[from, to)`
/// (rows counted where they start, minutes outside left out, probe and NetFlow summed), equal
/// on both backends.
#[test]
fn national_traffic_by_site_on_both_backends() {
    let rt = runtime();
    let row = |minute: i64, site: &str, exporter: &str, direction: i64, bytes: i64| FlowRow {
        minute,
        site: site.into(),
        exporter: exporter.into(),
        protocol: 6,
        direction,
        port_class: PortClass::Web,
        flows: 1,
        packets: 1,
        bytes,
    };
    for mut b in both(&rt) {
        let set = WriteSet {
            flows: vec![
                row(600, "S1", "", 1, 1000),
                row(600, "S1", "", 2, 200),
                row(600, "S1", "192.0.2.1", 1, 30),
                row(660, "S2", "", 2, 5000),
                row(840, "S2", "", 0, 7),
                row(900, "S1", "", 1, 1),
                row(540, "S3", "", 1, 99),
            ],
            now_ms: 1,
            ..WriteSet::default()
        };
        b.opened.store.write(&set).unwrap();
        let r = &b.opened.reader;
        let d = |inbound, outbound, unknown| DirectionBytes {
            inbound,
            outbound,
            unknown,
        };
        assert_eq!(
            r.traffic_by_site(600, 900).unwrap(),
            vec![
                ("S1".to_string(), d(1030, 200, 0)),
                ("S2".into(), d(0, 5000, 7))
            ],
            "{}",
            b.name
        );
        assert_eq!(
            r.traffic_by_site(900, 960).unwrap(),
            vec![("S1".to_string(), d(1, 0, 0))],
            "{}",
            b.name
        );
        assert_eq!(r.traffic_by_site(0, 60).unwrap(), vec![], "{}", b.name);
    }
}

/// API tokens (`api_tokens`): what is inserted reads back the same, the list is in creation
/// order, revocation by id or name marks live tokens only and says how many.
#[test]
fn api_tokens_read_back_and_revoke_on_both_backends() {
    use super::api_tokens::{self, TokenRow};
    let rt = runtime();
    for b in both(&rt) {
        let r = &b.opened.reader;
        let row = |id: &str, name: &str, created_ms| TokenRow {
            id: id.into(),
            name: name.into(),
            role: "ministry:Intérieur".into(),
            secret_sha256: format!("{id:0>64}"),
            created_ms,
            expires_ms: Some(created_ms + 1_000),
            revoked_ms: None,
        };
        let (a, g1, g2) = (
            row("aa", "alpha", 5),
            row("bb", "grafana", 7),
            row("cc", "grafana", 9),
        );
        for t in [&g2, &a, &g1] {
            api_tokens::insert(r, t).unwrap();
        }
        assert!(api_tokens::insert(r, &a).is_err(), "{}: id taken", b.name);
        assert_eq!(
            api_tokens::get(r, "aa").unwrap(),
            Some(a.clone()),
            "{}",
            b.name
        );
        assert_eq!(api_tokens::get(r, "zz").unwrap(), None, "{}", b.name);
        assert_eq!(
            api_tokens::list(r).unwrap(),
            vec![a.clone(), g1.clone(), g2.clone()],
            "{}",
            b.name
        );
        assert_eq!(
            api_tokens::revoke(r, "grafana", 50).unwrap(),
            2,
            "{}",
            b.name
        );
        assert_eq!(
            api_tokens::revoke(r, "grafana", 60).unwrap(),
            0,
            "{}",
            b.name
        );
        assert_eq!(api_tokens::revoke(r, "aa", 70).unwrap(), 1, "{}", b.name);
        let revoked: Vec<Option<i64>> = api_tokens::list(r)
            .unwrap()
            .iter()
            .map(|t| t.revoked_ms)
            .collect();
        assert_eq!(revoked, vec![Some(70), Some(50), Some(50)], "{}", b.name);
    }
}
