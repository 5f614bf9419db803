//! The Grafana dashboards of `dashboards/` hold together and every one of their queries returns
//! data from real servers:
//! - static checks: panel ids unique per dashboard, datasources chosen by the `ds_prom` /
//!   `ds_influx` variables (no datasource uid, no host written anywhere, provisioning included),
//!   every `$variable` of a query defined by the dashboard or built into Grafana;
//! - PromQL: a real Prometheus (Debian `prometheus`) started on loopback with
//!   `configs/prometheus` (recording rules included) scrapes a real collector fed through the
//!   probe protocol (sites on backup, down and up, an invalid record, a refused token, a bad
//!   frame); each query variable resolves to at least one value, every panel query returns a
//!   non-empty result with the first value of each variable, and every metric a query names
//!   exists (so `or vector(0)` cannot hide a misspelt name);
//! - the alert rules, evaluated by that Prometheus on the collector's real series, put the
//!   expected alerts in pending state with their routing labels and French annotations;
//! - InfluxQL: a real InfluxDB 1.x (Debian `influxdb`) filled by a real collector's InfluxDB
//!   sink (schema in `docs/schema.md`) from what S1 sent through the probe protocol (an
//!   incident, a minute of traffic, link checks), and by its finance duty (`cost`,
//!   `cost_top_site`, `resilience_plan`); every panel query returns series, the finance figures equal the report
//!   of the month to the cent (national by hand, the rest against `/api/v1/indicators`).

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use rie_e2e::{send_batches, send_ok, wait_for, Collector, Guard};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn require(bin: &str, pkg: &str) {
    let ok = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "{bin} not found: install it with `apt-get install {pkg}`"
    );
}

/// A dashboard file, parsed.
struct Dashboard {
    file: String,
    json: Value,
}

fn dashboards() -> Vec<Dashboard> {
    let mut out: Vec<Dashboard> = std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| Dashboard {
            file: p.file_name().unwrap().to_string_lossy().into_owned(),
            json: serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    let names: Vec<&str> = out.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(
        names,
        [
            "rie-collecteur.json",
            "rie-finance.json",
            "rie-ministere.json",
            "rie-national.json",
            "rie-site.json"
        ]
    );
    out
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for q in p["panels"].as_array().into_iter().flatten() {
            out.push(q);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Lang {
    PromQl,
    InfluxQl,
}

/// `(dashboard, panel title, language, query)` of every target of every panel.
fn queries(ds: &[Dashboard]) -> Vec<(String, String, Lang, String)> {
    let mut out = Vec::new();
    for d in ds {
        for p in panels(&d.json) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let uid = t["datasource"]["uid"].as_str().unwrap_or_default();
                let (lang, q) = match uid {
                    "${ds_prom}" => (Lang::PromQl, t["expr"].as_str()),
                    "${ds_influx}" => (Lang::InfluxQl, t["query"].as_str()),
                    other => panic!(
                        "{}: panel {:?} uses datasource {other:?}, not $ds_prom or $ds_influx",
                        d.file, p["title"]
                    ),
                };
                let q = q.unwrap_or_else(|| panic!("{}: {:?} has no query", d.file, p["title"]));
                out.push((
                    d.file.clone(),
                    p["title"].as_str().unwrap().to_string(),
                    lang,
                    q.to_string(),
                ));
            }
        }
    }
    out
}

/// Names after `$` or inside `${...}` in a query.
fn variables_in(q: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = q.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = i + 1 + usize::from(braced);
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start {
                out.insert(q[start..j].to_string());
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

const BUILTINS: [&str; 4] = ["timeFilter", "__interval", "__rate_interval", "__range"];

/// Grafana's built-in variables as the test evaluates them (last hour, 1-minute steps).
fn with_builtins(q: &str) -> String {
    q.replace("$timeFilter", "time > now() - 1h")
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

#[test]
fn dashboards_are_consistent() {
    let ds = dashboards();
    for d in &ds {
        let vars = d.json["templating"]["list"].as_array().unwrap();
        let names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert!(
            names.contains("ds_prom") && names.contains("ds_influx"),
            "{}",
            d.file
        );
        for v in vars.iter().filter(|v| v["type"] == "datasource") {
            assert!(
                ["prometheus", "influxdb"].contains(&v["query"].as_str().unwrap()),
                "{}: {v}",
                d.file
            );
        }
        let mut ids = BTreeSet::new();
        for p in panels(&d.json) {
            let id = p["id"].as_u64().unwrap();
            assert!(ids.insert(id), "{}: panel id {id} used twice", d.file);
            assert!(!p["title"].as_str().unwrap().is_empty());
        }
        assert!(ids.len() >= 6, "{}: only {} panels", d.file, ids.len());
        // Queries use only variables the dashboard defines or that Grafana provides.
        for (_, title, _, q) in queries(std::slice::from_ref(d)) {
            for v in variables_in(&q) {
                assert!(
                    names.contains(v.as_str()) || BUILTINS.contains(&v.as_str()),
                    "{}: panel {title:?} uses undefined variable ${v}",
                    d.file
                );
            }
        }
    }
    // No host anywhere: dashboards and provisioning take their addresses from outside.
    let mut files: Vec<PathBuf> = ds
        .iter()
        .map(|d| root().join("dashboards").join(&d.file))
        .collect();
    for sub in ["datasources", "dashboards"] {
        files.push(root().join(format!("dashboards/provisioning/{sub}/rie.yaml")));
    }
    for f in files {
        // Comments may show an example; the settings themselves may not.
        let text: String = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(
            !text.contains("://") && !text.contains("localhost") && !text.contains("127.0.0.1"),
            "{} names a host",
            f.display()
        );
    }
    let prov = std::fs::read_to_string(root().join("dashboards/provisioning/datasources/rie.yaml"))
        .unwrap();
    assert!(prov.contains("url: $RIE_PROMETHEUS_URL") && prov.contains("url: $RIE_INFLUXDB_URL"));
}

// ---- Prometheus side ----------------------------------------------------------------------

struct Prometheus {
    url: String,
    _dir: tempfile::TempDir,
    _child: Guard,
}

impl Prometheus {
    /// Starts Prometheus with `configs/prometheus` (rules included), scraping `target` every
    /// second and evaluating rules every second.
    fn start(target: &str, token: &str) -> Self {
        require("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        for sub in ["rules", "targets"] {
            std::fs::create_dir_all(conf.join(sub)).unwrap();
        }
        let src = root().join("configs/prometheus");
        for f in ["rules/recording.yml", "rules/alerts.yml"] {
            std::fs::copy(src.join(f), conf.join(f)).unwrap();
        }
        let main = std::fs::read_to_string(src.join("prometheus.yml"))
            .unwrap()
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace("scrape_timeout: 10s", "scrape_timeout: 1s");
        // The scrape sends the collector's `metrics` token from its file, as configured.
        let token_file = conf.join("rie-collector.token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        assert!(
            main.contains("/etc/prometheus/rie-collector.token"),
            "{main}"
        );
        let main = main.replace(
            "/etc/prometheus/rie-collector.token",
            &token_file.display().to_string(),
        );
        std::fs::write(conf.join("prometheus.yml"), main).unwrap();
        std::fs::write(
            conf.join("targets/collector.yml"),
            format!("- targets: [\"{target}\"]\n"),
        )
        .unwrap();
        std::fs::write(conf.join("targets/alertmanager.yml"), "[]\n").unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Guard(
            Command::new("prometheus")
                .arg(format!(
                    "--config.file={}",
                    conf.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{port}");
        wait_for("Prometheus ready", Duration::from_secs(30), || {
            ureq::get(&format!("{url}/-/ready")).call().is_ok()
        });
        Self {
            url,
            _dir: dir,
            _child: child,
        }
    }

    /// Instant query; returns the result vector (panics on a query error).
    fn query(&self, q: &str) -> Vec<Value> {
        let v: Value = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", q)
            .call()
            .unwrap_or_else(|e| panic!("PromQL {q:?}: {e}"))
            .into_json()
            .unwrap();
        assert_eq!(v["status"], "success", "{q}: {v}");
        match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            // Scalars (e.g. `time()`) are one value.
            other => vec![other.clone()],
        }
    }

    fn label_values(&self, metric: &str, label: &str) -> Vec<String> {
        let v: Value = ureq::get(&format!("{}/api/v1/label/{label}/values", self.url))
            .query("match[]", metric)
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }
}

/// A batch reporting `links` as (id, up, active), changed at `at_ms`.
fn links_batch(seq: u64, at_ms: i64, links: &[(&str, bool, bool)]) -> Value {
    json!({
        "seq": seq, "created_ms": at_ms,
        "links": links.iter().map(|(l, up, active)| json!({
            "link": l, "up": up, "active": active, "changed_ms": at_ms
        })).collect::<Vec<_>>()
    })
}

/// Feeds the collector through the real protocol: S1 on backup (with RTT and loss measured on
/// its backup link and some traffic), S3 down, S2 up; plus one record with a bad exporter
/// address, one refused token and one malformed frame, so that every error family has series.
fn feed(c: &Collector) {
    let now_ms = rie_common::now_ms() / 1000 * 1000;
    let minute = rie_common::now_ms() / 1000 / 60 * 60;
    let s1 = c.probe_config("S1");
    let mut b = links_batch(1, now_ms, &[("S1-P", false, false), ("S1-B", true, true)]);
    b["samples"] = json!([{
        "link": "S1-B", "check": "icmp", "target": "10.255.0.1", "start": rie_common::now_ms() / 1000 - 10,
        "interval_s": 10, "sent": 10, "received": 10, "rtt_avg_us": 42_000
    }]);
    b["flows"] = json!([
        rie_e2e::flow(minute, 6, 3, 40, 52_000),
        {"minute": minute, "protocol": 17, "direction": "inbound", "exporter": "router",
         "flows": 1, "packets": 1, "bytes": 100}
    ]);
    send_ok(&s1, 1, &[b]);
    send_ok(
        &c.probe_config("S3"),
        1,
        &[links_batch(
            1,
            now_ms,
            &[("S3-P", false, false), ("S3-B", false, false)],
        )],
    );
    send_ok(
        &c.probe_config("S2"),
        1,
        &[links_batch(1, now_ms, &[("S2-P", true, true)])],
    );
    // A refused token.
    let text = std::fs::read_to_string(&s1).unwrap();
    let token = text.lines().find(|l| l.starts_with("token = ")).unwrap();
    let wrong = s1.with_file_name("wrong-token.toml");
    std::fs::write(
        &wrong,
        text.replace(token, "token = \"00000000000000000000000000000000\""),
    )
    .unwrap();
    assert!(!send_batches(&wrong, 2, &[rie_e2e::batch(1, vec![])])
        .status
        .success());
    // A malformed frame after a good hello.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = rie_probe::config::ProbeConfig::load(&s1).unwrap();
        let r = cfg.resolve().unwrap();
        let id = rie_probe::uplink::Identity::new(cfg.site_id.clone(), r.token.clone(), 3);
        let mut s = rie_probe::session::Session::open(r.preferred(), id.hello())
            .await
            .unwrap();
        s.send_raw(&[0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1])
            .await
            .unwrap();
        let _ = s.recv().await;
    });
    for (series, want) in [
        (
            "rie_collector_invalid_records_total{reason=\"bad_exporter\"}",
            1.0,
        ),
        (
            "rie_collector_auth_failures_total{reason=\"bad_token\"}",
            1.0,
        ),
        (
            "rie_collector_frame_errors_total{reason=\"malformed\"}",
            1.0,
        ),
    ] {
        assert_eq!(c.metric(series), want, "{series}");
    }
}

/// Metric names (and recorded series) a PromQL query reads.
fn metric_names(q: &str) -> BTreeSet<String> {
    q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.contains("rie_") || *w == "up")
        .map(str::to_string)
        .collect()
}

/// First value of each query variable of `d` (Grafana's default pick, values sorted).
fn resolve_prom_vars(d: &Dashboard, p: &Prometheus) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for v in d.json["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        assert_eq!(v["datasource"]["uid"], "${ds_prom}", "{}: {v}", d.file);
        let def = v["definition"].as_str().unwrap();
        let args = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{}: variable query {def:?} is not label_values", d.file));
        let (metric, label) = args.split_once(", ").unwrap();
        let mut values = p.label_values(metric, label);
        values.sort();
        assert!(
            !values.is_empty(),
            "{}: variable {def} has no value",
            d.file
        );
        out.insert(v["name"].as_str().unwrap().to_string(), values[0].clone());
    }
    out
}

fn substitute(q: &str, vars: &BTreeMap<String, String>) -> String {
    let mut q = with_builtins(q);
    for (k, v) in vars {
        q = q
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    q
}

#[test]
fn promql_panels_return_data_from_a_real_prometheus() {
    // The collector requires tokens, as in production: Prometheus scrapes with a `metrics`
    // token read from its credentials file, the test reads with an admin one.
    let c = Collector::start_with_config("[auth]\nrequired = true\n");
    c.use_token("admin");
    let scrape_token = c.create_token("metrics", "prometheus");
    feed(&c);
    let prom = Prometheus::start(&c.api_addr.to_string(), &scrape_token);
    // Two scrapes for rates, then the recording rules once more.
    wait_for(
        "scrapes and recording rules",
        Duration::from_secs(60),
        || {
            !prom
                .query("rate(rie_collector_probe_batches_total[1m])")
                .is_empty()
                && !prom.query(":rie_sites:count").is_empty()
        },
    );
    // The recording rules on real series: S3 (Justice, 120 agents) down, 3 sites.
    assert_eq!(prom.query(":rie_agents_down:sum")[0]["value"][1], "120");
    assert_eq!(prom.query(":rie_sites:count")[0]["value"][1], "3");
    // The finance duty's gauges, by hand on the fixture inventory (see the InfluxDB side).
    wait_for("finance gauges", Duration::from_secs(30), || {
        !prom
            .query("rie_finance_cost_per_agent_year_euros{by=\"national\"}")
            .is_empty()
    });
    assert_eq!(
        prom.query("max(rie_finance_cost_per_agent_year_euros{by=\"national\"})")[0]["value"][1],
        "73.37"
    );
    assert_eq!(
        prom.query("rie_finance_reference_cost_per_agent_year_euros")[0]["value"][1],
        "100"
    );

    // The alert rules match the collector's real series and labels: S3 down and S1 on backup
    // are pending (their `for` has not elapsed), with the routing labels and the agents.
    wait_for("pending alerts", Duration::from_secs(30), || {
        prom.query("ALERTS{alertstate=\"pending\"}").len() >= 2
    });
    let mut pending: Vec<(String, String, String, String, String)> = prom
        .query("ALERTS{alertstate=\"pending\"}")
        .iter()
        .map(|a| {
            let l = |k: &str| a["metric"][k].as_str().unwrap_or_default().to_string();
            (
                l("alertname"),
                l("site"),
                l("ministry"),
                l("departement"),
                l("severity"),
            )
        })
        // On a slow machine the sites may pass the collector's 35 s of silence meanwhile.
        .filter(|a| a.0 != "RieProbeSilent")
        .collect();
    pending.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        pending,
        [
            (
                s("RieSiteDown"),
                s("S3"),
                s("Justice"),
                s("2A"),
                s("critical")
            ),
            (
                s("RieSiteOnBackupLong"),
                s("S1"),
                s("Intérieur"),
                s("35"),
                s("warning")
            ),
        ]
    );
    let rules: Value = ureq::get(&format!("{}/api/v1/alerts", prom.url))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let down = rules["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "RieSiteDown")
        .unwrap();
    assert_eq!(
        down["annotations"]["summary"],
        "Site S3 injoignable (120 agents)"
    );

    let ds = dashboards();
    let mut checked = 0;
    for d in &ds {
        let vars = resolve_prom_vars(d, &prom);
        for (file, title, lang, q) in queries(std::slice::from_ref(d)) {
            if lang != Lang::PromQl {
                continue;
            }
            let q = substitute(&q, &vars);
            let r = prom.query(&q);
            assert!(!r.is_empty(), "{file}: panel {title:?}: no data for {q}");
            for m in metric_names(&q) {
                let sel = format!("{{__name__=\"{m}\"}}");
                assert!(
                    !prom.query(&sel).is_empty(),
                    "{file}: panel {title:?} reads {m}, which does not exist"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} PromQL queries");
}

// ---- InfluxDB side ------------------------------------------------------------------------

struct Influx {
    url: String,
    _dir: tempfile::TempDir,
    _child: Guard,
}

impl Influx {
    fn start() -> Self {
        let ok = Command::new("influxd")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            ok,
            "influxd not found: install it with `apt-get install influxdb`"
        );
        let dir = tempfile::tempdir().unwrap();
        let (http, rpc) = (free_port(), free_port());
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n"
        );
        std::fs::write(dir.path().join("influxdb.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("influxd.log")).unwrap();
        let child = Guard(
            Command::new("influxd")
                .arg("-config")
                .arg(dir.path().join("influxdb.conf"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{http}");
        wait_for("influxd ready", Duration::from_secs(30), || {
            ureq::get(&format!("{url}/ping")).call().is_ok()
        });
        Self {
            url,
            _dir: dir,
            _child: child,
        }
    }

    fn query(&self, q: &str) -> Value {
        ureq::post(&format!("{}/query", self.url))
            .query("db", "rie")
            .query("epoch", "s")
            .send_form(&[("q", q)])
            .unwrap_or_else(|e| panic!("InfluxQL {q:?}: {e}"))
            .into_json()
            .unwrap()
    }
}

/// A collector writing to `influx` (v1 API): site states, health and episodes every second,
/// a minute's traffic one second after it is complete, the finance duty every second with a
/// top list of two sites.
fn influx_collector(influx: &Influx) -> Collector {
    Collector::start_with_config(&format!(
        "[influx]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"rie\"\ninstance = \"test\"\n\
         flush_interval = \"200ms\"\nretry_min = \"100ms\"\nretry_max = \"400ms\"\n\
         traffic_delay = \"1s\"\nhealth_interval = \"1s\"\nsite_state_interval = \"5s\"\n\
         [finance]\ninterval = \"1s\"\ntop_sites = 2\n",
        influx.url
    ))
}

/// S1's traffic of a complete minute (TCP and UDP, inbound), checks of both its links, and its
/// primary failing now (the backup carries: an open failover, no outage).
fn s1_traffic_and_checks(seq: u64, now_s: i64) -> Value {
    let minute = now_s / 60 * 60 - 120;
    let sample = |link: &str, rtt_avg_us: u32| {
        json!({"link": link, "check": "icmp", "target": "10.255.0.1", "start": now_s - 20,
               "interval_s": 10, "sent": 10, "received": 9, "rtt_avg_us": rtt_avg_us,
               "rtt_max_us": 80_000, "rtt_p95_us": 70_000, "jitter_us": 3_200})
    };
    let mut b = rie_e2e::s1_links(
        seq,
        now_s * 1000,
        (false, false, now_s * 1000 - 5_000),
        (true, true, now_s * 1000 - 5_000),
    );
    b["flows"] = json!([
        rie_e2e::flow(minute, 6, 3, 53, 52_000),
        rie_e2e::flow(minute, 17, 1, 2, 1_500)
    ]);
    b["samples"] = json!([sample("S1-P", 42_500), sample("S1-B", 61_000)]);
    b
}

/// `[tags, values]` of each series of `q`'s first result (`values` of its first row, the time
/// column left out).
fn rows(influx: &Influx, q: &str) -> Vec<(Value, Vec<Value>)> {
    let r = influx.query(q);
    let res = &r["results"][0];
    assert!(res["error"].is_null(), "{q}: {r}");
    res["series"]
        .as_array()
        .unwrap_or_else(|| panic!("no series for {q}: {r}"))
        .iter()
        .map(|s| {
            let mut v = s["values"][0].as_array().unwrap().clone();
            v.remove(0);
            (s["tags"].clone(), v)
        })
        .collect()
}

/// Cents of a report field as the euros written to InfluxDB.
fn eur(v: &Value) -> f64 {
    v.as_i64().unwrap() as f64 / 100.0
}

/// Numbers as `f64` (InfluxDB writes the float 14.0 as `14`).
fn nums(v: &[Value]) -> Vec<f64> {
    v.iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("{x} is not a number")))
        .collect()
}

/// What the collector's finance duty wrote is the report of the month, to the cent: national
/// by hand, per ministry, per region and the top list against `/api/v1/indicators`.
fn finance_points_match_the_report(influx: &Influx, c: &Collector, month: &str) {
    let fields = "last(\"agents\"), last(\"cost_per_agent_year_eur\"), last(\"resilience_cost_per_agent_year_eur\"), \
                  last(\"agent_hours_lost\"), last(\"agent_hours_lost_cost_eur\"), last(\"total_cost_eur\"), \
                  last(\"reference_eur_per_agent_year\"), last(\"resilience_share_pct\")";
    let q = |scope: &str, by: &str| {
        format!(
            "SELECT {fields} FROM \"cost\" WHERE \"scope\" = '{scope}' AND time > now() - 1h{by}"
        )
    };
    // National, by hand (see `finance::tests::lines_of_the_fixture_month`): one month of links
    // (2,872.69 €) and the fixture's share of the national costs (3 of 14,000 sites: 642.85 €)
    // = 3,515.54 €; × 12 / 575 agents = 73.37 €/agent/year; backups 3.34 €/agent/year
    // (4.5523 %); S1's two-minute outage × 420 agents = 14 agent-hours, at the planner's
    // 41.54 €/h = 581.56 €.
    let national = rows(influx, &q("national", ""));
    assert_eq!(
        nums(&national[0].1),
        [575.0, 73.37, 3.34, 14.0, 581.56, 3515.54, 100.0, 4.5523]
    );
    for by in ["ministry", "region"] {
        let api = c.get(&format!("/api/v1/indicators?period={month}&group_by={by}"));
        let want: BTreeMap<String, Vec<f64>> = api["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["group"].as_str().unwrap().to_string(),
                    vec![
                        g["agents"].as_f64().unwrap(),
                        eur(&g["cost_per_agent_year_cents"]),
                        eur(&g["resilience_cost_per_agent_year_cents"]),
                        g["agent_hours_lost"].as_f64().unwrap(),
                    ],
                )
            })
            .collect();
        let got: BTreeMap<String, Vec<f64>> = rows(influx, &q(by, &format!(" GROUP BY \"{by}\"")))
            .into_iter()
            .map(|(tags, v)| (tags[by].as_str().unwrap().to_string(), nums(&v[..4])))
            .collect();
        assert_eq!(got, want, "{by}");
        assert_eq!(got.len(), 3, "{by}");
    }
    let interieur = rows(influx, &q("ministry", " GROUP BY \"ministry\""))
        .into_iter()
        .find(|(t, _)| t["ministry"] == "Intérieur")
        .unwrap();
    assert_eq!(nums(&interieur.1[3..5]), [14.0, 581.56]);
    // The two sites with the highest cost per agent, as the report's per-site rows rank them.
    let api = c.get(&format!("/api/v1/indicators?period={month}&group_by=site"));
    let mut sites: Vec<&Value> = api["groups"].as_array().unwrap().iter().collect();
    sites.sort_by_key(|g| std::cmp::Reverse(g["cost_per_agent_year_cents"].as_i64().unwrap()));
    let want: Vec<(String, f64)> = sites[..2]
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_string(),
                eur(&g["cost_per_agent_year_cents"]),
            )
        })
        .collect();
    let got: Vec<(String, f64)> = rows(
        influx,
        "SELECT last(\"site\"), last(\"cost_per_agent_year_eur\") FROM \"cost_top_site\" WHERE time > now() - 1h GROUP BY \"rank\"",
    )
    .into_iter()
    .map(|(_, v)| (v[0].as_str().unwrap().to_string(), v[1].as_f64().unwrap()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(got[0].0, "S2", "35 agents: the highest cost per agent");

    // The planner's ranking, as the API gives it for the span the points name.
    let plan = rows(
        influx,
        "SELECT last(\"site\"), last(\"yearly_cost_eur\"), last(\"value_per_year_eur\"), \
         last(\"net_benefit_per_year_eur\"), last(\"span_from_s\"), last(\"span_to_s\") \
         FROM \"resilience_plan\" WHERE time > now() - 1h GROUP BY \"rank\"",
    );
    let (from, to) = (
        plan[0].1[4].as_i64().unwrap(),
        plan[0].1[5].as_i64().unwrap(),
    );
    assert_eq!(to - from, 30 * 86_400, "the last 30 days");
    let api = c.get(&format!(
        "/api/v1/indicators/resilience-plan?from={}&to={}",
        rie_e2e::rfc3339(from * 1000),
        rie_e2e::rfc3339(to * 1000)
    ));
    let want: Vec<(String, Vec<f64>)> = api["investments"]
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|r| {
            (
                r["site"].as_str().unwrap().to_string(),
                vec![
                    eur(&r["yearly_cost_cents"]),
                    eur(&r["value_per_year_cents"]),
                    eur(&r["net_benefit_per_year_cents"]),
                ],
            )
        })
        .collect();
    let got: Vec<(String, Vec<f64>)> = plan
        .iter()
        .map(|(_, v)| (v[0].as_str().unwrap().to_string(), nums(&v[1..4])))
        .collect();
    assert_eq!(got, want);
    // S2 (single-homed, measured through its link checks) is the one candidate: S1's and
    // S3's backups are already diverse.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "S2");
}

#[test]
fn influxql_panels_return_data_from_a_real_influxdb() {
    let influx = Influx::start();
    let r = influx.query("CREATE DATABASE rie");
    assert!(r["results"][0]["error"].is_null(), "{r}");
    // Every point comes from the collector itself: S1's incident, traffic and checks reach it
    // through the probe protocol, its InfluxDB sink writes what it stored, and its finance duty
    // the month's figures computed from the same store.
    let mut now_s = rie_common::now_ms() / 1000;
    let month = rie_collector::finance::current_month(now_s * 1000);
    if now_s - 600 < month.start_ms / 1000 {
        // The incident must lie in the month the duty reports: wait out a month's first minutes.
        std::thread::sleep(Duration::from_secs(
            (month.start_ms / 1000 + 600 - now_s) as u64,
        ));
        now_s = rie_common::now_ms() / 1000;
    }
    let month = rie_collector::finance::current_month(now_s * 1000);
    let c = influx_collector(&influx);
    c.use_token("admin");
    let mut batches = rie_e2e::s1_incident((now_s - 600) * 1000).to_vec();
    batches.push(s1_traffic_and_checks(7, now_s));
    send_ok(&c.probe_config("S1"), 1, &batches);
    // S2 measured (a link check), never down: the planner's one candidate.
    send_ok(
        &c.probe_config("S2"),
        1,
        &[json!({"seq": 1, "created_ms": now_s * 1000, "samples": [{
            "link": "S2-P", "check": "icmp", "target": "10.255.0.1", "start": now_s - 20,
            "interval_s": 10, "sent": 10, "received": 10, "rtt_avg_us": 600_000}]})],
    );
    let value = |q: &str| influx.query(q)["results"][0]["series"][0]["values"][0][1].clone();
    wait_for("the collector's points", Duration::from_secs(60), || {
        value("SELECT last(\"agent_hours_lost\") FROM \"cost\" WHERE \"scope\" = 'national'")
            == 14.0
            && value("SELECT count(\"bytes\") FROM \"site_traffic\" WHERE \"site\" = 'S1'") == 2
            && value("SELECT count(\"duration_s\") FROM \"episode\" WHERE \"kind\" = 'failover' AND \"open\" = 1") == 1
            && value("SELECT last(\"site\") FROM \"resilience_plan\"") == "S2"
    });
    finance_points_match_the_report(&influx, &c, &month.label);
    // What the probe sent, exactly: S1's minute of TCP and its backup link's RTT. (The
    // incident's episodes, recorded already closed, are not in InfluxDB: the sink writes
    // episodes open, or closed within a minute of its scan; see docs/schema.md.)
    assert_eq!(
        value("SELECT sum(\"bytes\") FROM \"site_traffic\" WHERE \"site\" = 'S1' AND \"protocol\" = 'tcp'"),
        52_000
    );
    assert_eq!(
        value("SELECT mean(\"rtt_avg_ms\") FROM \"link_check\" WHERE \"link\" = 'S1-B'"),
        61.0
    );
    // The values the Prometheus variables would give (first of each, sorted).
    let vars: BTreeMap<String, String> = [
        ("site".to_string(), "S1".to_string()),
        ("ministry".to_string(), "Intérieur".to_string()),
    ]
    .into();
    let measurements: BTreeSet<&str> = [
        "site_traffic",
        "link_check",
        "site_state",
        "episode",
        "collector",
        "cost",
        "cost_top_site",
        "resilience_plan",
    ]
    .into();
    let mut checked = 0;
    for (file, title, lang, q) in queries(&dashboards()) {
        if lang != Lang::InfluxQl {
            continue;
        }
        let from = q
            .split("FROM \"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        assert!(
            measurements.contains(from),
            "{file}: {title:?} reads {from}"
        );
        let q = substitute(&q, &vars);
        let r = influx.query(&q);
        let res = &r["results"][0];
        assert!(res["error"].is_null(), "{file}: panel {title:?}: {q}: {r}");
        let series = res["series"].as_array();
        assert!(
            series.is_some_and(|s| !s.is_empty()
                && s.iter()
                    .all(|x| !x["values"].as_array().unwrap().is_empty())),
            "{file}: panel {title:?}: no data for {q}: {r}"
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} InfluxQL queries");
}
