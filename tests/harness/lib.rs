//! Test harness for the end-to-end tests in `tests/`: starts the real `rie-collector`,
//! `rie-probe` and `rie-sim` binaries (built by `cargo test --workspace`) on loopback with a
//! fresh PKI, database and the small inventory of `tests/data/inventory`, and reads the
//! collector's API and metrics. Nothing here is a mock: every test talks TLS to a real collector process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod influx;
pub mod netflow;
pub mod pg_fleet;

/// Path of a workspace binary next to the test executable (`target/<profile>/NAME`).
///
/// # Panics
/// When the binary is missing, with the command that builds it.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: run the README's test command (`cargo test --workspace`), which builds it",
        path.display()
    );
    path
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

pub mod site_net;

/// A collector process with its own directory (PKI, database, inventory).
pub struct Collector {
    pub dir: tempfile::TempDir,
    pub probe_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// NetFlow UDP address, for a collector started with [`Collector::start_netflow`].
    pub netflow_addr: Option<SocketAddr>,
    child: Option<Child>,
    stderr_log: PathBuf,
    extra_args: Vec<String>,
    /// The PostgreSQL server holding this collector's store when the suite runs on that
    /// backend ([`postgres_suite`]); dropped (stopped) after the collector process.
    pg: Option<rie_testpg::PgServer>,
    /// API token sent by [`Collector::get`] and [`Collector::metric`] ([`Collector::use_token`]).
    token: std::sync::Mutex<Option<String>>,
}

/// Whether the suite runs on the PostgreSQL store: `RIE_TEST_STORE=postgres` (the README's test
/// command runs the end-to-end suite once per backend). Then every collector the harness
/// starts without a `backend` of its own gets a PostgreSQL 15 server of its own, started on
/// loopback in a temporary directory.
///
/// # Panics
/// On any other value than `sqlite` or `postgres`.
pub fn postgres_suite() -> bool {
    match std::env::var("RIE_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("RIE_TEST_STORE={other:?}: use sqlite (default) or postgres"),
    }
}

/// `toml` with the store moved to the PostgreSQL database at `url`: into its own `[store]`
/// table when it has one (TOML forbids two), else a new one at the end (after every top-level key).
fn with_postgres_store(toml: &str, url: &str) -> String {
    let mut toml = match toml.find("[store]\n") {
        Some(i) => {
            let at = i + "[store]\n".len();
            format!("{}backend = \"postgres\"\n{}", &toml[..at], &toml[at..])
        }
        None => format!("{toml}\n[store]\nbackend = \"postgres\"\n"),
    };
    toml += &format!("\n[store.postgres]\nurl = \"{url}\"\n");
    toml
}

impl Collector {
    /// Initialises a PKI and starts a collector on the fixture inventory.
    pub fn start() -> Self {
        Self::start_with_inventory(&fixture("inventory"))
    }

    pub fn start_with_inventory(inventory: &Path) -> Self {
        Self::start_inner(inventory, SocketAddr::from(([127, 0, 0, 1], 0)), false)
    }

    /// Starts a collector on the fixture inventory with `config_toml` as its `--config` file
    /// (flags for directories and addresses still apply on top).
    pub fn start_with_config(config_toml: &str) -> Self {
        Self::start_full(
            &fixture("inventory"),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            false,
            Some(config_toml),
        )
    }

    /// A collector with `config_toml` as its config whose API listens on `api_listen` (an
    /// address that must be known before start, e.g. an OpenID Connect redirect URL).
    pub fn start_with_config_on_api(config_toml: &str, api_listen: SocketAddr) -> Self {
        Self::start_pki(
            &fixture("inventory"),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            false,
            Some(config_toml),
            None,
            Some(api_listen),
        )
    }

    /// A collector with `config_toml` as its config and the PKI copied from `pki_from` (one CA
    /// for several collectors sharing one database), or a new one.
    pub fn start_sharing_pki(config_toml: &str, pki_from: Option<&Collector>) -> Self {
        Self::start_pki(
            &fixture("inventory"),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            false,
            Some(config_toml),
            pki_from.map(|c| c.dir.path().join("pki")).as_deref(),
            None,
        )
    }

    /// A NetFlow collector (as [`Collector::start_netflow_with_config`]) with the PKI copied
    /// from `pki_from`: several collectors on one database, exporters sending to either.
    pub fn start_netflow_sharing_pki(
        inventory: &Path,
        config_toml: &str,
        pki_from: Option<&Collector>,
    ) -> Self {
        Self::start_pki(
            inventory,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            true,
            Some(config_toml),
            pki_from.map(|c| c.dir.path().join("pki")).as_deref(),
            None,
        )
    }

    /// [`Collector::start_sharing_pki`] on the inventory in `inventory` (e.g. a generated one)
    /// instead of the fixture's.
    pub fn start_sharing_pki_on(
        inventory: &Path,
        config_toml: &str,
        pki_from: Option<&Collector>,
    ) -> Self {
        Self::start_pki(
            inventory,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            false,
            Some(config_toml),
            pki_from.map(|c| c.dir.path().join("pki")).as_deref(),
            None,
        )
    }

    /// Starts a collector whose probe listener binds `probe_listen` (port 0: any free one).
    pub fn start_on(inventory: &Path, probe_listen: SocketAddr) -> Self {
        Self::start_inner(inventory, probe_listen, false)
    }

    /// A collector with its NetFlow input on an ephemeral UDP port of 127.0.0.1, committing
    /// NetFlow aggregates every 200 ms.
    pub fn start_netflow(inventory: &Path) -> Self {
        Self::start_inner(inventory, SocketAddr::from(([127, 0, 0, 1], 0)), true)
    }

    /// Like [`Collector::start_netflow`], with `config_toml` as its config; a `[netflow]`
    /// table in it gets the 200 ms `flush_interval` added.
    pub fn start_netflow_with_config(inventory: &Path, config_toml: &str) -> Self {
        Self::start_full(
            inventory,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            true,
            Some(config_toml),
        )
    }

    fn start_inner(inventory: &Path, probe_listen: SocketAddr, netflow: bool) -> Self {
        Self::start_full(inventory, probe_listen, netflow, None)
    }

    fn start_full(
        inventory: &Path,
        probe_listen: SocketAddr,
        netflow: bool,
        config_toml: Option<&str>,
    ) -> Self {
        Self::start_pki(inventory, probe_listen, netflow, config_toml, None, None)
    }

    fn start_pki(
        inventory: &Path,
        probe_listen: SocketAddr,
        netflow: bool,
        config_toml: Option<&str>,
        pki_from: Option<&Path>,
        api_listen: Option<SocketAddr>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let inv = dir.path().join("inventory");
        std::fs::create_dir_all(&inv).expect("mkdir");
        for f in ["sites.csv", "links.csv"] {
            std::fs::copy(inventory.join(f), inv.join(f)).expect("copy inventory");
        }
        if let Some(from) = pki_from {
            std::fs::create_dir_all(dir.path().join("pki")).expect("mkdir pki");
            for e in std::fs::read_dir(from).expect("pki dir") {
                let e = e.expect("pki entry");
                std::fs::copy(e.path(), dir.path().join("pki").join(e.file_name()))
                    .expect("copy pki");
            }
        } else {
            let out = run_ok(
                Command::new(bin("rie-collector"))
                    .args(["pki", "init", "--dir"])
                    .arg(dir.path().join("pki")),
            );
            assert!(out.contains("ca.pem"), "{out}");
        }
        let mut c = Self {
            stderr_log: dir.path().join("collector.log"),
            dir,
            probe_addr: probe_listen,
            api_addr: api_listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            netflow_addr: None,
            child: None,
            extra_args: Vec::new(),
            pg: None,
            token: std::sync::Mutex::new(None),
        };
        let mut toml = config_toml.unwrap_or_default().to_string();
        // A test that chose its backend (several collectors on one database) keeps it.
        if postgres_suite() && !toml.contains("backend =") {
            let server = rie_testpg::PgServer::start();
            toml = with_postgres_store(&toml, &server.url());
            c.pg = Some(server);
        }
        if netflow {
            let keys = "flush_interval = \"200ms\"\n";
            // Into the config's own [netflow] table when it has one (TOML forbids two).
            toml = match toml.find("[netflow]\n") {
                Some(i) => {
                    let at = i + "[netflow]\n".len();
                    format!("{}{keys}{}", &toml[..at], &toml[at..])
                }
                None => format!("{toml}\n[netflow]\n{keys}"),
            };
            c.netflow_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        if !toml.is_empty() {
            let cfg = c.dir.path().join("collector.toml");
            std::fs::write(&cfg, toml).expect("config");
            c.extra_args = vec!["--config".into(), cfg.display().to_string()];
        }
        c.spawn();
        c
    }

    /// Flags shared by every command that reads the collector's files and store: its
    /// directories and, when it has one, its config file (the store backend it names).
    pub fn config_args(&self) -> Vec<String> {
        let d = self.dir.path();
        let mut args = vec![
            "--data-dir".into(),
            d.join("data").display().to_string(),
            "--inventory".into(),
            d.join("inventory").display().to_string(),
            "--pki-dir".into(),
            d.join("pki").display().to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Runs `sql` (plain SQL both backends accept) on this collector's store: the SQLite file,
    /// or its PostgreSQL database. For tests that lay down history by hand.
    ///
    /// # Panics
    /// When the SQL fails.
    pub fn sql(&self, sql: &str) {
        match &self.pg {
            Some(pg) => {
                pg.psql(sql);
            }
            None => {
                let conn = rie_collector::store::open(&self.dir.path().join("data/rie.db"))
                    .expect("open the collector database");
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("{e}: {sql}"));
            }
        }
    }

    /// The one integer `sql` answers, read from this collector's store (either backend).
    ///
    /// # Panics
    /// When the SQL fails or does not answer one integer.
    pub fn sql_i64(&self, sql: &str) -> i64 {
        match &self.pg {
            Some(pg) => {
                let out = pg.psql(sql);
                out.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("{sql}: {out:?} is not one integer: {e}"))
            }
            None => {
                let conn = rie_collector::store::open(&self.dir.path().join("data/rie.db"))
                    .expect("open the collector database");
                conn.query_row(sql, [], |r| r.get(0))
                    .unwrap_or_else(|e| panic!("{e}: {sql}"))
            }
        }
    }

    /// This collector's config file, when it has one (always on the PostgreSQL suite): for
    /// tools that must reach its store (`rie-sim loadgen --collector-config`).
    pub fn config_file(&self) -> Option<PathBuf> {
        self.extra_args
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| self.extra_args.get(i + 1))
            .map(PathBuf::from)
    }

    /// The PostgreSQL server of this collector's store, on the PostgreSQL suite.
    pub fn postgres(&self) -> Option<&rie_testpg::PgServer> {
        self.pg.as_ref()
    }

    /// Starts the process on the same addresses as before (ephemeral ones the first time).
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_log)
            .expect("log file");
        let mut child = Command::new(bin("rie-collector"))
            .arg("serve")
            .args(self.config_args())
            .args([
                "--probe-listen",
                &self.probe_addr.to_string(),
                "--api-listen",
                &self.api_addr.to_string(),
            ])
            .args(
                self.netflow_addr
                    .iter()
                    .flat_map(|a| ["--netflow-listen".to_string(), a.to_string()]),
            )
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn rie-collector");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let addr = |key: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|a| a.parse().ok())
        };
        match (addr("probes="), addr("api=")) {
            (Some(p), Some(a)) => (self.probe_addr, self.api_addr) = (p, a),
            _ => panic!("collector did not start: {line:?}\n{}", self.log()),
        }
        if self.netflow_addr.is_some() {
            self.netflow_addr = addr("netflow=");
            assert!(self.netflow_addr.is_some(), "no netflow= in {line:?}");
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate(&mut self.child)
    }

    /// Sends `signal` (`STOP`, `CONT`...) to the running process: SIGSTOP makes a member that
    /// accepts connections (the kernel does) but never answers, as a hung machine does.
    pub fn signal(&self, signal: &str) {
        let c = self.child.as_ref().expect("collector running");
        send_signal(c.id(), signal);
    }

    /// SIGTERM (the collector commits what it holds), then start again on the same files.
    pub fn restart_graceful(&mut self) {
        assert_eq!(self.terminate(), Some(0), "{}", self.log());
        self.spawn();
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM (clean shutdown, exit code asserted 0), then start again on the same files.
    pub fn restart_gracefully(&mut self) {
        assert_eq!(self.terminate(), Some(0), "{}", self.log());
        self.spawn();
    }

    /// Issues a token for `site` and writes its probe config; returns the file.
    pub fn probe_config(&self, site: &str) -> PathBuf {
        let out = self.dir.path().join(format!("probe-{site}.toml"));
        run_ok(
            Command::new(bin("rie-collector"))
                .arg("probe-config")
                .args(self.config_args())
                // With the collector's own config: credentials go to its configured store.
                .args([
                    "--site",
                    site,
                    "--address",
                    &self.probe_addr.to_string(),
                    "--out",
                ])
                .arg(&out),
        );
        out
    }

    /// Enrols `site` on this collector with the token of `probe_config` (`probe-config
    /// --token-from`), pointed at this collector's address. Returns the file it writes.
    pub fn probe_config_sharing(&self, site: &str, probe_config: &Path) -> PathBuf {
        let out = self.dir.path().join(format!("probe-{site}-shared.toml"));
        run_ok(
            Command::new(bin("rie-collector"))
                .arg("probe-config")
                .args(self.config_args())
                // With the collector's own config: credentials go to its configured store.
                .args(["--site", site, "--address", &self.probe_addr.to_string()])
                .arg("--token-from")
                .arg(probe_config)
                .arg("--out")
                .arg(&out),
        );
        out
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api_addr)
    }

    /// Creates an API token of `role` (`rie-collector token create`), returns it, and sends it
    /// from now on with [`Collector::get`] and [`Collector::metric`]: for collectors whose API
    /// requires authentication.
    pub fn use_token(&self, role: &str) -> String {
        let t = self.create_token(role, &format!("harness-{role}"));
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(t.clone());
        t
    }

    /// Creates an API token of `role` named `name`; returns the secret line.
    pub fn create_token(&self, role: &str, name: &str) -> String {
        run_ok(
            Command::new(bin("rie-collector"))
                .args(["token", "create", "--role", role, "--name", name])
                .args(self.config_args()),
        )
        .trim()
        .to_string()
    }

    /// `account create NAME --role ROLE`: the generated password, printed once.
    pub fn create_account(&self, name: &str, role: &str) -> String {
        run_ok(
            Command::new(bin("rie-collector"))
                .args(["account", "create", name, "--role", role])
                .args(self.config_args()),
        )
        .trim()
        .to_string()
    }

    /// A GET request to `path`, with the token of [`Collector::use_token`] if any.
    pub fn request(&self, path: &str) -> ureq::Request {
        let req = ureq::get(&self.url(path));
        match self
            .token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
        {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    pub fn get(&self, path: &str) -> Value {
        self.request(path)
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .into_json()
            .expect("JSON body")
    }

    /// Flow totals over all time, optionally for one site.
    pub fn totals(&self, site: Option<&str>) -> Value {
        let mut q =
            "/api/v1/flows/totals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z".to_string();
        if let Some(s) = site {
            q.push_str("&site=");
            q.push_str(s);
        }
        self.get(&q)
    }

    /// Value of one sample of `/metrics`, e.g. `rie_collector_auth_failures_total{reason="bad_token"}`.
    pub fn metric(&self, series: &str) -> f64 {
        self.metric_opt(series)
            .unwrap_or_else(|| panic!("no series {series} in /metrics"))
    }

    /// Like [`Self::metric`], `None` while the series is absent: a labelled series appears
    /// only once its first sample is counted, so waits on one must not fail before that.
    pub fn metric_opt(&self, series: &str) -> Option<f64> {
        let text = self
            .request("/metrics")
            .call()
            .expect("metrics")
            .into_string()
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Polls `f` until it returns true or `timeout` passes.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}\n--- collector log ---\n{}",
            self.log()
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// SIGKILL and reap a child process, if it runs.
fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        c.kill().expect("kill");
        c.wait().expect("wait");
    }
}

/// SIGTERM a child process and wait for it; returns its exit code.
fn terminate(child: &mut Option<Child>) -> Option<i32> {
    let mut c = child.take()?;
    let st = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(st.success());
    c.wait().expect("wait").code()
}

/// `N` distinct free loopback addresses, for collectors whose addresses must be in their
/// configs before they start (cluster members): held bound until all are picked, released
/// on return. Tests of one file that use them should take turns, so that one test's
/// collectors on ephemeral ports cannot grab another's released ports.
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local address"))
}

/// Polls `f` every 100 ms until it returns true; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command that must succeed; returns its stdout.
/// `kill -SIGNAL pid`. For `STOP`, returns only once every thread of the process is
/// stopped: `kill` returns when the signal is queued, and a thread still running for a few
/// milliseconds after that (on a loaded machine) would read what a test means to pile up in
/// a socket buffer.
pub fn send_signal(pid: u32, signal: &str) {
    run_ok(Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]));
    if signal != "STOP" {
        return;
    }
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                // The state follows the command name, which is in parentheses.
                .map(|st| {
                    st.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('T'))
                })
                .unwrap_or(true)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !all_stopped() {
        assert!(
            Instant::now() < deadline,
            "process {pid} did not stop on SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minute bucket start used by test batches (2026-09-21T14:14:00Z).
pub const MINUTE: i64 = 1_790_000_040;

/// One flow aggregate as JSON (the batch file format of `rie-probe send-batch`).
pub fn flow(minute: i64, protocol: u8, flows: u64, packets: u64, bytes: u64) -> Value {
    serde_json::json!({
        "minute": minute, "protocol": protocol, "direction": "inbound",
        "flows": flows, "packets": packets, "bytes": bytes
    })
}

pub fn batch(seq: u64, flows: Vec<Value>) -> Value {
    serde_json::json!({ "seq": seq, "created_ms": MINUTE * 1000, "flows": flows })
}

/// Unix milliseconds as RFC 3339, the way the API writes times.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("time in range")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// Unix milliseconds of an RFC 3339 time in a JSON answer.
pub fn parse_rfc3339_ms(v: &Value) -> i64 {
    let t = time::OffsetDateTime::parse(
        v.as_str().expect("a time string"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A batch (send-batch JSON) reporting S1's two links of the fixture inventory:
/// (up, active, changed_ms) for the primary S1-P then the backup S1-B.
pub fn s1_links(seq: u64, created_ms: i64, p: (bool, bool, i64), b: (bool, bool, i64)) -> Value {
    serde_json::json!({
        "seq": seq, "created_ms": created_ms,
        "links": [
            {"link": "S1-P", "up": p.0, "active": p.1, "changed_ms": p.2},
            {"link": "S1-B", "up": b.0, "active": b.1, "changed_ms": b.2},
        ]
    })
}

/// A past incident on S1, replayed as the probe's spool would after the site comes back
/// (`t0` in Unix ms, whole seconds): primary fails at +60 s (the backup takes over 400 ms later:
/// failover), the backup fails at +180 s (outage), both back at +300 s, the primary fails again
/// at +400 s (failover), back at +500 s. Each batch is closed one second after its event.
pub fn s1_incident(t0: i64) -> [Value; 6] {
    let s = 1000;
    [
        s1_links(1, t0, (true, true, t0), (true, false, t0)),
        s1_links(
            2,
            t0 + 61 * s,
            (false, false, t0 + 60 * s),
            (true, true, t0 + 60 * s + 400),
        ),
        s1_links(
            3,
            t0 + 181 * s,
            (false, false, t0 + 60 * s),
            (false, false, t0 + 180 * s),
        ),
        s1_links(
            4,
            t0 + 301 * s,
            (true, true, t0 + 300 * s),
            (true, false, t0 + 300 * s),
        ),
        s1_links(
            5,
            t0 + 401 * s,
            (false, false, t0 + 400 * s),
            (true, true, t0 + 400 * s),
        ),
        s1_links(
            6,
            t0 + 501 * s,
            (true, true, t0 + 500 * s),
            (true, false, t0 + 500 * s),
        ),
    ]
}

/// Runs `rie-probe send-batch` with `batches` on `stream`; returns the raw output.
pub fn send_batches(config: &Path, stream: u64, batches: &[Value]) -> Output {
    let file = config.with_extension(format!("batches-{}.json", unique()));
    std::fs::write(&file, serde_json::to_vec(batches).expect("json")).expect("write batches");
    Command::new(bin("rie-probe"))
        .args(["send-batch", "--stream", &stream.to_string(), "--config"])
        .arg(config)
        .arg("--batch")
        .arg(&file)
        .output()
        .expect("run rie-probe")
}

/// Like [`send_batches`], requiring success; returns the acks as `(seq, duplicate)`.
pub fn send_ok(config: &Path, stream: u64, batches: &[Value]) -> Vec<(u64, bool)> {
    let out = send_batches(config, stream, batches);
    assert!(
        out.status.success(),
        "send-batch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("send-batch JSON");
    v["acks"]
        .as_array()
        .expect("acks")
        .iter()
        .map(|a| {
            (
                a["seq"].as_u64().expect("seq"),
                a["duplicate"].as_bool().expect("dup"),
            )
        })
        .collect()
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Sums flows, packets and bytes of the given batches, by protocol and overall: the expected
/// answer of `/api/v1/flows/totals`, computed from what the test sent.
pub fn expected_totals(batches: &[Value]) -> Value {
    let mut by: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    let mut by_class: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    let mut by_dir: std::collections::BTreeMap<String, [u64; 3]> = Default::default();
    for b in batches {
        for f in b["flows"].as_array().into_iter().flatten() {
            // Records without `port_class` are what a probe older than classes sends.
            let class = f["port_class"].as_str().unwrap_or("unknown").to_string();
            let dir = f["direction"].as_str().unwrap_or("unknown").to_string();
            for e in [
                by.entry(f["protocol"].to_string()).or_default(),
                by_class.entry(class).or_default(),
                by_dir.entry(dir).or_default(),
            ] {
                for (i, k) in ["flows", "packets", "bytes"].iter().enumerate() {
                    e[i] += f[*k].as_u64().expect("counter");
                }
            }
        }
    }
    let counts = |m: &std::collections::BTreeMap<String, [u64; 3]>| {
        m.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::json!({"flows": v[0], "packets": v[1], "bytes": v[2]}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
    };
    let total = |i: usize| by.values().map(|v| v[i]).sum::<u64>();
    serde_json::json!({
        "flows": total(0), "packets": total(1), "bytes": total(2),
        "by_protocol": counts(&by), "by_port_class": counts(&by_class),
        "by_direction": counts(&by_dir)
    })
}

/// A generated inventory of `sites` sites (`rie-collector inventory generate --seed`), in a
/// temp dir kept with it, and the inventory as the collector reads it.
pub fn generated_inventory(
    sites: usize,
    seed: u64,
) -> (tempfile::TempDir, rie_collector::inventory::Inventory) {
    let dir = tempfile::tempdir().expect("temp dir");
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["inventory", "generate", "--sites", &sites.to_string()])
            .args(["--seed", &seed.to_string(), "--out"])
            .arg(dir.path()),
    );
    let inv = rie_collector::inventory::load_dir(dir.path()).expect("generated inventory");
    (dir, inv)
}

/// Each site's `(site, effective_version, reported_version)` among those in plan `state`
/// (`/api/v1/plans?state=`).
pub fn plan_sites_in_state(c: &Collector, state: &str) -> Vec<(String, u64, u64)> {
    c.get(&format!("/api/v1/plans?state={state}"))["sites_in_state"]
        .as_array()
        .expect("sites_in_state")
        .iter()
        .map(|s| {
            (
                s["site"].as_str().unwrap_or_default().to_string(),
                s["effective_version"].as_u64().unwrap_or(0),
                s["reported_version"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// `rie-sim loadgen` with the collector's address, CA, data directory (tokens), store config
/// and inventory: add the load flags (`--probes`, `--interval`...).
pub fn loadgen_command(c: &Collector) -> Command {
    let d = c.dir.path();
    let mut cmd = Command::new(bin("rie-sim"));
    cmd.args(["--log-level", "warn", "loadgen"])
        .args(["--address", &c.probe_addr.to_string(), "--ca"])
        .arg(d.join("pki/ca.pem"))
        .arg("--data-dir")
        .arg(d.join("data"))
        // Tokens go to the collector's configured store (PostgreSQL on that suite).
        .args(
            c.config_file()
                .iter()
                .flat_map(|f| ["--collector-config".into(), f.display().to_string()]),
        )
        .arg("--inventory")
        .arg(d.join("inventory"));
    cmd
}

/// A load generator running in the background (its log in the collector's directory);
/// killed when dropped.
pub struct Loadgen(Child);

impl Loadgen {
    /// `rie-sim loadgen` over sites `skip..skip + probes`, a batch every `interval`, for 10
    /// minutes at most, with `extra` flags.
    pub fn start(
        c: &Collector,
        skip: usize,
        probes: usize,
        interval: &str,
        extra: &[&str],
    ) -> Self {
        let child = loadgen_command(c)
            .args(["--probes", &probes.to_string(), "--skip", &skip.to_string()])
            .args([
                "--interval",
                interval,
                "--duration",
                "600s",
                "--warmup",
                "1s",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(c.dir.path().join(format!("loadgen-{skip}.log")))
                    .expect("loadgen log"),
            )
            .spawn()
            .expect("rie-sim runs");
        Self(child)
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `rie-probe run` process for one site, with its own data directory.
pub struct Probe {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl Probe {
    /// Writes a run config for `site` (from `probe-config`) with `interval` and, when given, a
    /// `[simulate]` section (TOML body), then starts the probe.
    pub fn start(c: &Collector, site: &str, interval: &str, simulate: Option<&str>) -> Self {
        let mut p = Self::prepare(c, site, interval, simulate);
        p.spawn();
        p
    }

    /// Like [`Probe::start`] without starting it (to prepare its directories first).
    pub fn prepare(c: &Collector, site: &str, interval: &str, simulate: Option<&str>) -> Self {
        let config = c.probe_config(site);
        let data_dir = c.dir.path().join(format!("probe-data-{site}"));
        let p = Self {
            config,
            data_dir,
            child: None,
        };
        p.write_config(interval, simulate);
        p
    }

    pub fn write_config(&self, interval: &str, simulate: Option<&str>) {
        let text = std::fs::read_to_string(&self.config).expect("probe config");
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("[simulate]") {
                break;
            }
            let line = if line.starts_with("data_dir = ") {
                format!("data_dir = \"{}\"", self.data_dir.display())
            } else if line.starts_with("batch_interval = ") {
                format!("batch_interval = \"{interval}\"")
            } else {
                line.to_string()
            };
            out.push_str(&line);
            out.push('\n');
        }
        if !out.contains("reconnect_min") {
            out.push_str("reconnect_min = \"100ms\"\nreconnect_max = \"500ms\"\n");
        }
        if let Some(sim) = simulate {
            out.push_str("\n[simulate]\n");
            out.push_str(sim);
            out.push('\n');
        }
        std::fs::write(&self.config, out).expect("write probe config");
    }

    /// A probe for site `idx` of `inv` (batches every `interval`) with its primary link
    /// (no interface: nothing to bind) and one local TCP check of `target` every `check`.
    pub fn with_tcp_check(
        c: &Collector,
        inv: &rie_collector::inventory::Inventory,
        idx: usize,
        interval: &str,
        check: &str,
        target: &str,
    ) -> Self {
        let site = &inv.sites[idx];
        let p = Self::prepare(c, site.id.as_str(), interval, None);
        let link = inv
            .links_of(&site.id)
            .find(|l| l.role == rie_proto::LinkRole::Primary)
            .expect("a primary link")
            .id
            .to_string();
        let mut text = std::fs::read_to_string(&p.config).expect("probe config");
        text.push_str(&format!(
            "\n[[links]]\nid = \"{link}\"\nrole = \"primary\"\n\n[checks]\ninterval = \"{check}\"\nattempts = 2\ntimeout = \"500ms\"\n[[checks.targets]]\nkind = \"tcp\"\ntarget = \"{target}\"\nname = \"local-file\"\n"
        ));
        std::fs::write(&p.config, text).expect("probe config written");
        p
    }

    pub fn spawn(&mut self) {
        self.spawn_with(Command::new(bin("rie-probe")));
    }

    /// Starts the probe inside network namespace `ns`.
    pub fn spawn_in_netns(&mut self, ns: &str) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(bin("rie-probe"));
        self.spawn_with(cmd);
    }

    fn spawn_with(&mut self, mut cmd: Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("probe log");
        self.child = Some(
            cmd.args(["run", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn rie-probe"),
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// The probe's `status.json`, or `Null` before it first writes it.
    pub fn status(&self) -> Value {
        std::fs::read(self.data_dir.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }

    pub fn wait_status(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + timeout;
        loop {
            let st = self.status();
            if f(&st) {
                return st;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; status: {st}\nprobe log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        terminate(&mut self.child)
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the running probe.
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.as_ref().expect("probe running").id(), signal);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Two network namespaces joined by a veth pair (`a` 10.99.0.1/24 and fd99::1/64, `b`
/// 10.99.0.2/24 and fd99::2/64), created for one test and removed when dropped. Needs root
/// (`ip netns`); fails with the reason otherwise, never skips.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
    pub veth_a: String,
    pub veth_b: String,
}

impl NetnsPair {
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let a = format!("rie-{tag}-a-{id}");
        let b = format!("rie-{tag}-b-{id}");
        let veth_a = format!("rva{id}");
        let veth_b = format!("rvb{id}");
        let pair = Self {
            a: a.clone(),
            b: b.clone(),
            veth_a: veth_a.clone(),
            veth_b: veth_b.clone(),
        };
        let ip = site_net::ip;
        ip(&["netns", "add", &a]);
        ip(&["netns", "add", &b]);
        ip(&[
            "link", "add", &veth_a, "netns", &a, "type", "veth", "peer", "name", &veth_b, "netns",
            &b,
        ]);
        for (ns, dev, v4, v6) in [
            (&a, &veth_a, "10.99.0.1/24", "fd99::1/64"),
            (&b, &veth_b, "10.99.0.2/24", "fd99::2/64"),
        ] {
            // A quiet link: no router solicitations, no duplicate-address probes, so that
            // only the test's own traffic crosses it (captures compared packet for packet).
            // The multicast listener reports the kernel sends when the link comes up cannot be
            // turned off; a 1 ms report interval sends them all in one burst at link-up,
            // which `wait_link_settled` waits out, instead of spread over the next seconds
            // (where one fell between tcpdump's start and the probe's).
            let quiet = [
                format!("net.ipv6.conf.{dev}.router_solicitations=0"),
                format!("net.ipv6.conf.{dev}.accept_dad=0"),
                format!("net.ipv6.conf.{dev}.accept_ra=0"),
                format!("net.ipv6.conf.{dev}.mldv1_unsolicited_report_interval=1"),
                format!("net.ipv6.conf.{dev}.mldv2_unsolicited_report_interval=1"),
            ];
            let st = Command::new("ip")
                .args(["netns", "exec", ns, "sysctl", "-qw"])
                .args(&quiet)
                .status()
                .expect("sysctl (procps) is needed");
            assert!(st.success(), "sysctl {quiet:?} in {ns} failed");
            ip(&["-n", ns, "addr", "add", v4, "dev", dev]);
            ip(&["-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, dev) in [(&a, &veth_a), (&b, &veth_b)] {
            wait_link_settled(ns, dev);
        }
        pair
    }

    /// A command to run inside namespace `ns`.
    pub fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

/// Waits until `dev` in `ns` has its link-local address (the kernel adds it once the carrier
/// is up, joins its multicast groups and reports them), then lets the report burst pass.
fn wait_link_settled(ns: &str, dev: &str) {
    let start = Instant::now();
    loop {
        let out = Command::new("ip")
            .args(["-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link"])
            .output()
            .expect("ip");
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("inet6 fe80") && !text.contains("tentative") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{dev} in {ns} got no link-local address: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

impl NetnsPair {
    /// Starts tcpdump on `a`'s veth, writing `pcap`, and waits until it captures. Immediate mode:
    /// libpcap's ring would otherwise hold the last packets back when tcpdump is stopped.
    pub fn tcpdump(&self, pcap: &Path) -> Guard {
        let mut g = Guard(
            Self::exec(&self.a, "tcpdump")
                .args([
                    "-i",
                    &self.veth_a,
                    "--immediate-mode",
                    "-U",
                    "-n",
                    "-Z",
                    "root",
                    "-w",
                ])
                .arg(pcap)
                .stderr(Stdio::piped())
                .spawn()
                .expect("tcpdump is needed: apt-get install tcpdump"),
        );
        let mut line = String::new();
        BufReader::new(g.0.stderr.take().expect("stderr"))
            .read_line(&mut line)
            .expect("tcpdump output");
        assert!(line.contains("listening on"), "tcpdump: {line}");
        g
    }

    /// Python's HTTP server in namespace `b` on 10.99.0.2:8080, serving `dir`.
    pub fn http_server(&self, dir: &Path) -> Guard {
        Guard(
            Self::exec(&self.b, "python3")
                .args([
                    "-m",
                    "http.server",
                    "8080",
                    "--bind",
                    "10.99.0.2",
                    "--directory",
                ])
                .arg(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 is needed"),
        )
    }

    /// Stops a tcpdump started by [`NetnsPair::tcpdump`] cleanly (SIGINT: it writes out what
    /// it has).
    pub fn stop_tcpdump(mut g: Guard) {
        let st = Command::new("kill")
            .args(["-INT", &g.id().to_string()])
            .status()
            .expect("kill");
        assert!(st.success());
        g.0.wait().expect("wait tcpdump");
    }
}

/// Runs `rie-probe replay --summary json --pcap PCAP` (plus `extra` arguments), requires
/// success, and returns the summary with the command's stderr.
pub fn replay_json(pcap: &Path, extra: &[&str]) -> (Value, String) {
    let out = Command::new(bin("rie-probe"))
        .args(["replay", "--summary", "json", "--pcap"])
        .arg(pcap)
        .args(extra)
        .output()
        .expect("run rie-probe replay");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "replay failed: {stderr}");
    (
        serde_json::from_slice(&out.stdout).expect("replay summary JSON"),
        stderr,
    )
}

/// `by_protocol` of a totals answer as protocol → (packets, bytes).
pub fn by_protocol(totals: &Value) -> std::collections::BTreeMap<String, (u64, u64)> {
    totals["by_protocol"]
        .as_object()
        .expect("by_protocol")
        .iter()
        .map(|(p, c)| {
            let n = |k: &str| c[k].as_u64().expect("counter");
            (p.clone(), (n("packets"), n("bytes")))
        })
        .collect()
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A child process killed and reaped when dropped, so a failing test leaves nothing running
/// (a leftover child holding the test's stdout would stall the whole run).
pub struct Guard(pub Child);

impl Guard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A legacy pcap file (microsecond timestamps, Ethernet) built frame by frame, with the packets
/// and IP bytes per protocol it holds: the expected answer, known from construction.
/// The Ethernet header of the tests' crafted frames (its addresses do not matter to IP counts).
pub fn eth() -> etherparse::PacketBuilderStep<etherparse::Ethernet2Header> {
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
}

pub struct Capture {
    pub bytes: Vec<u8>,
    /// protocol → (packets, IP bytes)
    pub expected: std::collections::BTreeMap<u8, (u64, u64)>,
    snaplen: usize,
}

impl Capture {
    pub fn new(snaplen: usize) -> Self {
        // Legacy pcap header, microsecond timestamps, Ethernet.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(snaplen as u32).to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        Self {
            bytes,
            expected: std::collections::BTreeMap::new(),
            snaplen,
        }
    }

    /// Appends a frame at `t_us`; `ip` = (protocol, IP length) when it carries IP.
    /// Asserts that a totals answer (`replay --summary json` or `/api/v1/flows/totals`) holds
    /// exactly `flows` flows and this capture's packets and bytes, in all and per protocol.
    pub fn assert_totals(&self, flows: u64, got: &Value) {
        let packets: u64 = self.expected.values().map(|v| v.0).sum();
        let bytes: u64 = self.expected.values().map(|v| v.1).sum();
        assert_eq!(
            (
                got["flows"].as_u64(),
                got["packets"].as_u64(),
                got["bytes"].as_u64()
            ),
            (Some(flows), Some(packets), Some(bytes)),
            "{got}"
        );
        let expected: std::collections::BTreeMap<String, (u64, u64)> = self
            .expected
            .iter()
            .map(|(p, v)| (p.to_string(), *v))
            .collect();
        assert_eq!(by_protocol(got), expected, "{got}");
    }

    /// An ICMP echo request from `src` to `dst` (84 IP bytes), counted in `expected`.
    pub fn icmp_echo(&mut self, t_us: u64, src: [u8; 4], dst: [u8; 4], id: u16, seq: u16) {
        let mut f = Vec::new();
        eth()
            .ipv4(src, dst, 64)
            .icmpv4_echo_request(id, seq)
            .write(&mut f, &[0u8; 56])
            .expect("frame");
        self.frame(t_us, &f, Some((1, 84)));
    }

    pub fn frame(&mut self, t_us: u64, frame: &[u8], ip: Option<(u8, u64)>) {
        let cap = frame.len().min(self.snaplen);
        self.bytes
            .extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(cap as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&frame[..cap]);
        if let Some((proto, len)) = ip {
            let e = self.expected.entry(proto).or_default();
            e.0 += 1;
            e.1 += len;
        }
    }
}

/// tshark's own totals: protocol → (packets, IP bytes). The protocol is the first transport
/// protocol after the outer IP header (so an ICMP error quoting a UDP header stays ICMP).
pub fn tshark_totals(pcap: &std::path::Path) -> std::collections::BTreeMap<String, (u64, u64)> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.protocols",
            "-e",
            "ip.proto",
            "-e",
            "ip.len",
            "-e",
            "ipv6.nxt",
            "-e",
            "ipv6.plen",
        ])
        .output()
        .expect("tshark is needed: apt-get install tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('|').collect();
        let first = |s: &str| s.split(',').next().unwrap_or("").to_string();
        let (proto_field, len) = if !f[2].is_empty() {
            (first(f[1]), first(f[2]).parse::<u64>().expect("ip.len"))
        } else if !f[4].is_empty() {
            (
                first(f[3]),
                first(f[4]).parse::<u64>().expect("ipv6.plen") + 40,
            )
        } else {
            continue; // not IP (ARP)
        };
        let tokens: Vec<&str> = f[0].split(':').collect();
        let ip_at = tokens
            .iter()
            .position(|t| *t == "ip" || *t == "ipv6")
            .expect("an IP frame has an ip or ipv6 layer");
        let proto = tokens[ip_at + 1..]
            .iter()
            .find_map(|t| match *t {
                "tcp" => Some("6".to_string()),
                "udp" => Some("17".to_string()),
                "icmp" => Some("1".to_string()),
                "icmpv6" => Some("58".to_string()),
                _ => None,
            })
            .unwrap_or(proto_field);
        let e = totals.entry(proto).or_default();
        e.0 += 1;
        e.1 += len;
    }
    totals
}
