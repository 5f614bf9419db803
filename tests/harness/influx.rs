//! Real time-series servers for the InfluxDB sink tests, on loopback with their own data
//! directories: VictoriaMetrics (Debian `victoria-metrics`, accepts `/api/v2/write`) and
//! InfluxDB 1.x (Debian `influxdb`, `/write?db=` and InfluxQL). Each can be stopped and started
//! again on the same port and data, to play an outage. A missing server fails the test with
//! the package to install.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Guard;

fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} not found: install it with `apt-get install {package}` (the InfluxDB sink tests need a real server)"
    );
}

/// A free loopback port (bound then released; the server binds it right after).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_http_ok(url: &str, what: &str, log: &Path) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if ureq::get(url)
            .timeout(Duration::from_secs(1))
            .call()
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn wait_tcp(port: u16, what: &str, log: &Path) {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn stop_gracefully(child: &mut Option<Guard>) {
    if let Some(mut g) = child.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &g.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if matches!(g.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Guard's drop kills it if SIGTERM was not enough.
    }
}

/// One series read back: labels (tags) and (timestamp seconds → value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: BTreeMap<i64, f64>,
    /// Samples returned, duplicates included (a dedup failure shows here).
    pub samples: usize,
}

/// VictoriaMetrics with deduplication (equal timestamps collapse, as InfluxDB overwrites) and
/// no query latency offset, so a force flush makes writes readable at once.
pub struct VictoriaMetrics {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Guard>,
    /// HTTPS with this (certificate, key) when set.
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl VictoriaMetrics {
    pub fn start() -> Self {
        require("victoria-metrics", "victoria-metrics");
        let mut vm = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            child: None,
            tls: None,
        };
        vm.resume();
        vm
    }

    /// Serving HTTPS with `cert` (valid for `localhost`) and `key`. Only the write path is
    /// used then ([`Self::export`] speaks plain HTTP).
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        require("victoria-metrics", "victoria-metrics");
        let mut vm = Self {
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            child: None,
            tls: Some((cert.to_path_buf(), key.to_path_buf())),
        };
        vm.resume();
        vm
    }

    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        let log = self.dir.path().join("vm.log");
        let mut cmd = Command::new("victoria-metrics");
        if let Some((cert, key)) = &self.tls {
            cmd.arg("-tls")
                .arg(format!("-tlsCertFile={}", cert.display()))
                .arg(format!("-tlsKeyFile={}", key.display()));
        }
        let child = cmd
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .args([
                "-dedup.minScrapeInterval=1ms",
                "-search.latencyOffset=0s",
                "-retentionPeriod=100y",
                "-loggerLevel=ERROR",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn victoria-metrics");
        self.child = Some(Guard(child));
        if self.tls.is_some() {
            wait_tcp(self.port, "victoria-metrics", &log);
        } else {
            wait_http_ok(&format!("{}/health", self.url()), "victoria-metrics", &log);
        }
    }

    /// Stops it (SIGTERM: VictoriaMetrics flushes what it holds in memory, as a restarted
    /// server would); the port refuses connections until [`Self::resume`].
    pub fn stop(&mut self) {
        stop_gracefully(&mut self.child);
    }

    /// Every series whose name matches the regex `name_re`, after a force flush.
    pub fn export(&self, name_re: &str) -> Vec<Series> {
        ureq::get(&format!("{}/internal/force_flush", self.url()))
            .call()
            .expect("force flush");
        let body = ureq::post(&format!("{}/api/v1/export", self.url()))
            .send_form(&[("match[]", &format!("{{__name__=~\"{name_re}\"}}"))])
            .expect("export")
            .into_string()
            .expect("body");
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("export JSON line");
                let labels = v["metric"]
                    .as_object()
                    .expect("metric")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let ts = v["timestamps"].as_array().expect("timestamps");
                let vals = v["values"].as_array().expect("values");
                Series {
                    labels,
                    samples: ts.len(),
                    points: ts
                        .iter()
                        .zip(vals)
                        .map(|(t, v)| (t.as_i64().expect("ts") / 1000, v.as_f64().expect("value")))
                        .collect(),
                }
            })
            .collect()
    }
}

/// InfluxDB 1.x (`influxd`) with a temporary configuration on two loopback ports.
pub struct Influxd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Guard>,
}

impl Influxd {
    /// Starts it and creates `database`.
    pub fn start(database: &str) -> Self {
        require("influxd", "influxdb");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n",
            rpc = free_port()
        );
        std::fs::write(dir.path().join("influxdb.conf"), conf).expect("write conf");
        let mut i = Self {
            dir,
            port,
            child: None,
        };
        i.resume();
        i.query_post(&format!("CREATE DATABASE \"{database}\""));
        i
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn resume(&mut self) {
        let log = self.dir.path().join("influxd.log");
        let child = Command::new("influxd")
            .arg("-config")
            .arg(self.dir.path().join("influxdb.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn influxd");
        self.child = Some(Guard(child));
        wait_http_ok(&format!("{}/ping", self.url()), "influxd", &log);
    }

    pub fn stop(&mut self) {
        stop_gracefully(&mut self.child);
    }

    fn query_post(&self, q: &str) -> Value {
        ureq::post(&format!("{}/query", self.url()))
            .send_form(&[("q", q)])
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .into_json()
            .expect("JSON")
    }

    /// Runs an InfluxQL query on `db`, times in Unix seconds.
    pub fn query(&self, db: &str, q: &str) -> Value {
        ureq::get(&format!("{}/query", self.url()))
            .query("db", db)
            .query("epoch", "s")
            .query("q", q)
            .call()
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .into_json()
            .expect("JSON")
    }

    /// Rows of `SELECT ... FROM measurement WHERE ...` as (time, column → value) maps.
    pub fn rows(&self, db: &str, q: &str) -> Vec<BTreeMap<String, Value>> {
        let v = self.query(db, q);
        let mut out = Vec::new();
        for s in v["results"][0]["series"].as_array().into_iter().flatten() {
            let cols: Vec<String> = s["columns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c.as_str().expect("column").to_string())
                .collect();
            for row in s["values"].as_array().expect("values") {
                let mut m: BTreeMap<String, Value> = s["tags"]
                    .as_object()
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                for (c, v) in cols.iter().zip(row.as_array().expect("row")) {
                    m.insert(c.clone(), v.clone());
                }
                out.push(m);
            }
        }
        out
    }
}
