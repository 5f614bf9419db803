//! Real PostgreSQL 15 servers for tests (dev-only; never a mock, never skipped).
//!
//! API:
//! - [`PgServer::start`]: a fresh cluster in a temp dir owned by `postgres` (`initdb -A trust
//!   -E UTF8 --locale=C.UTF-8`, run through `runuser -u postgres --` when the test runs as
//!   root), on a free loopback port (`listen_addresses='127.0.0.1'`), its socket in the temp
//!   dir, with a database `rie`. Loopback logins of user `postgres` are trusted; any other
//!   role logs in with `scram-sha-256` (so wrong-password tests are real).
//! - [`PgServer::url`] (`postgresql://postgres@127.0.0.1:PORT/rie`), [`PgServer::port`],
//!   [`PgServer::psql`] (runs SQL as `postgres` on `rie`, returns unaligned output).
//! - [`PgServer::kill9`] (SIGKILL the postmaster), [`PgServer::stop`] (fast shutdown),
//!   [`PgServer::start_again`] (same data dir and port); `Drop` stops the server and removes
//!   the dir.
//! - [`PgServer::start_sync_pair`]: a primary with `synchronous_standby_names='FIRST 1
//!   (standby1)'` and a standby made by `pg_basebackup -R -X stream`, returned once
//!   `pg_stat_replication.sync_state = 'sync'`; [`PgServer::promote`] on the standby.
//!
//! Every wait has a timeout and panics with the server log. A missing server binary panics
//! with "PostgreSQL 15 server missing: apt-get install postgresql-15".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// One running PostgreSQL server.
pub struct PgServer {
    /// Owns the temp dir (removed on drop, after the server stops).
    _dir: Option<tempfile::TempDir>,
    base: PathBuf,
    data: PathBuf,
    port: u16,
    running: bool,
}

fn is_root() -> bool {
    // `id -u` rather than libc: this crate forbids unsafe code.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as `postgres` when we are root.
fn pg_cmd(program: &str) -> Command {
    let path = format!("{BIN}/{program}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut c: Command, what: &str) -> String {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn new_base() -> tempfile::TempDir {
    assert!(
        Path::new(&format!("{BIN}/postgres")).exists(),
        "PostgreSQL 15 server missing: apt-get install postgresql-15"
    );
    let dir = tempfile::Builder::new()
        .prefix("rie-testpg-")
        .tempdir()
        .expect("temp dir");
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.arg("postgres:").arg(dir.path());
                c
            },
            "chown the temp dir to postgres",
        );
    }
    dir
}

impl PgServer {
    /// Starts a fresh server with a database `rie`.
    ///
    /// # Panics
    /// When the server binary is missing or the server does not start in 30 s.
    pub fn start() -> PgServer {
        let dir = new_base();
        let base = dir.path().to_path_buf();
        let data = base.join("p");
        Self::initdb(&data);
        let mut s = PgServer {
            _dir: Some(dir),
            base,
            data,
            port: free_port(),
            running: false,
        };
        s.configure("");
        s.start_server();
        s.psql_db("postgres", "CREATE DATABASE rie");
        s
    }

    fn initdb(data: &Path) {
        let mut c = pg_cmd("initdb");
        c.args([
            "-N",
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "-D",
        ])
        .arg(data);
        run(c, "initdb");
        // Trust for `postgres` (the tests' superuser) and replication, passwords for others.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host replication all 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
    }

    fn configure(&self, extra: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(
            f,
            "listen_addresses='127.0.0.1'\nport={}\nunix_socket_directories='{}'\nfsync=on\n{extra}",
            self.port,
            self.base.display()
        )
        .expect("write postgresql.conf");
    }

    fn start_server(&mut self) {
        let mut c = pg_cmd("pg_ctl");
        c.args(["-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(self.base.join(format!("{}.log", self.port)))
            .args(["-w", "-t", "30", "start"]);
        run(c, "pg_ctl start");
        self.running = true;
    }

    /// `postgresql://postgres@127.0.0.1:PORT/rie`.
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/rie", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` on database `rie` as `postgres`; unaligned, tuples only.
    ///
    /// # Panics
    /// When psql fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("rie", sql)
    }

    fn psql_db(&self, db: &str, sql: &str) -> String {
        let mut c = Command::new(format!("{BIN}/psql"));
        c.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", db, "-c", sql]);
        run(c, "psql")
    }

    /// SIGKILL of the postmaster (a crash).
    pub fn kill9(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.data.join("postmaster.pid")) {
            if let Some(pid) = pid.lines().next() {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
        self.running = false;
    }

    /// Fast shutdown, waited for (30 s).
    pub fn stop(&mut self) {
        if self.running {
            let mut c = pg_cmd("pg_ctl");
            c.arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "30", "stop"]);
            let _ = c.output();
            self.running = false;
        }
    }

    /// Starts a stopped or killed server again on its data dir and port (crash recovery after
    /// [`PgServer::kill9`]).
    ///
    /// # Panics
    /// When it does not start in 30 s.
    pub fn start_again(&mut self) {
        assert!(!self.running, "the server is already running");
        self.start_server();
    }

    /// A synchronous primary/standby pair (recipe (a)): returns once the standby is `sync`.
    ///
    /// # Panics
    /// When either server does not start or the standby is not sync within 30 s.
    pub fn start_sync_pair() -> (PgServer, PgServer) {
        let dir = new_base();
        let base = dir.path().to_path_buf();
        let mut primary = PgServer {
            _dir: Some(dir),
            base: base.clone(),
            data: base.join("p"),
            port: free_port(),
            running: false,
        };
        Self::initdb(&primary.data);
        primary.configure("synchronous_commit=on");
        primary.start_server();
        // Before the standby is required: with it required, this commit would wait for it.
        primary.psql_db("postgres", "CREATE DATABASE rie");
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1)'");
        primary.psql("SELECT pg_reload_conf()");
        let mut standby = PgServer {
            _dir: None,
            base: base.clone(),
            data: base.join("s"),
            port: free_port(),
            running: false,
        };
        let mut c = pg_cmd("pg_basebackup");
        c.arg("-d")
            .arg(format!(
                "host=127.0.0.1 port={} user=postgres application_name=standby1",
                primary.port
            ))
            .arg("-D")
            .arg(&standby.data)
            .args(["-R", "-X", "stream", "-c", "fast"]);
        run(c, "pg_basebackup");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(standby.data.join("postgresql.auto.conf"))
                .expect("open postgresql.auto.conf");
            writeln!(f, "port={}\nsynchronous_standby_names=''", standby.port)
                .expect("write postgresql.auto.conf");
        }
        standby.start_server();
        wait_until("the standby to be sync", Duration::from_secs(30), || {
            primary
                .psql("SELECT sync_state FROM pg_stat_replication")
                .trim()
                == "sync"
        });
        (primary, standby)
    }

    /// Promotes a standby to primary (waited for).
    ///
    /// # Panics
    /// When `pg_ctl promote` fails.
    pub fn promote(&self) {
        let mut c = pg_cmd("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "30", "promote"]);
        run(c, "pg_ctl promote");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_pair_replicates_and_the_standby_takes_over() {
        let (mut primary, standby) = PgServer::start_sync_pair();
        primary.psql("CREATE TABLE t(v BIGINT); INSERT INTO t VALUES (41), (1)");
        assert_eq!(standby.psql("SELECT sum(v) FROM t"), "42\n");
        primary.kill9();
        standby.promote();
        standby.psql("INSERT INTO t VALUES (8)");
        assert_eq!(standby.psql("SELECT sum(v) FROM t"), "50\n");
        assert!(standby.url().ends_with(&format!(":{}/rie", standby.port())));
    }
}
