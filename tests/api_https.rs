//! The API over HTTPS (`[api.tls]`), against real clients (curl and a rustls connection held
//! open):
//! - the status page, the JSON API and `/metrics` answer over TLS with the security headers
//!   (HSTS, the content policy, nosniff, no framing); plain HTTP on that port gets no answer;
//! - the certificate is replaced on disk and SIGHUP sent: new connections get the new one (a
//!   client trusting only the old CA is refused), while a connection opened before the reload
//!   keeps working; then the old certificate written back is picked up without a signal (file
//!   change);
//! - listening on a non-loopback address without TLS, or `behind_proxy` without trusted
//!   proxies, stops the collector at start-up with the file, the key and the fix.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rie_e2e::{bin, fixture, free_ports, run_ok, wait_for, Guard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// `curl` over HTTPS trusting only `ca`: (status line and headers, body), or None when the
/// TLS handshake or the request fails.
fn curl(ca: &Path, url: &str) -> Option<(String, String)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-D", "-", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl is needed: apt-get install curl");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

fn pki_init(dir: &Path) {
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["pki", "init", "--dir"])
            .arg(dir),
    );
}

/// Replaces `to` with `from` atomically (write beside, rename), as a certificate renewal does.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// An HTTPS connection held open: one request at a time, keep-alive.
struct Held {
    rt: tokio::runtime::Runtime,
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl Held {
    fn open(ca: &Path, addr: std::net::SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca).unwrap();
        for c in rustls_pemfile_certs(&pem) {
            roots.add(c).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tls = rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect("127.0.0.1".try_into().unwrap(), tcp)
                .await
                .unwrap()
        });
        Self { rt, tls }
    }

    /// GET `path` on the held connection; returns the status code.
    fn get(&mut self, path: &str) -> u16 {
        let tls = &mut self.tls;
        self.rt.block_on(async {
            let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            tls.write_all(req.as_bytes()).await.unwrap();
            // Read the head, then exactly Content-Length bytes of body.
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") {
                let n = tls.read(&mut byte).await.unwrap();
                assert_eq!(n, 1, "connection closed: {}", String::from_utf8_lossy(&buf));
                buf.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&buf).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            let mut body = vec![0u8; len];
            tls.read_exact(&mut body).await.unwrap();
            head[9..12].parse().unwrap()
        })
    }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        pki_init(&dir.path().join("pki"));
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes the collector config with `api` as its `[api]` table.
    fn config(&self, api: &str) -> PathBuf {
        let probes = free_ports::<1>()[0];
        let cfg = self.path("collector.toml");
        std::fs::write(
            &cfg,
            format!(
                "data_dir = \"{}\"\ninventory = \"{}\"\n\n[probes]\nlisten = \"{probes}\"\n\n[tls]\npki_dir = \"{}\"\n\n[api]\n{api}\n",
                self.path("data").display(),
                fixture("inventory").display(),
                self.path("pki").display(),
            ),
        )
        .unwrap();
        cfg
    }

    fn serve(&self, cfg: &Path) -> Command {
        let mut c = Command::new(bin("rie-collector"));
        c.env_remove("RIE_CONFIG")
            .args(["serve", "--config"])
            .arg(cfg)
            .stdout(Stdio::null());
        c
    }
}

#[test]
fn https_with_security_headers_and_certificate_reload_without_dropping_connections() {
    let s = Setup::new();
    // The API's certificate: the one `pki init` issues for localhost and 127.0.0.1, copied
    // where a renewal would overwrite it.
    let (cert, key) = (s.path("api.pem"), s.path("api.key"));
    install(&s.path("pki/server.pem"), &cert);
    install(&s.path("pki/server.key"), &key);
    let ca_a = s.path("pki/ca.pem");
    let api = free_ports::<1>()[0];
    let cfg = s.config(&format!(
        "listen = \"{api}\"\n\n[api.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let log = s.path("collector.log");
    let collector = Guard(
        s.serve(&cfg)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = |p: &str| format!("https://{api}{p}");
    wait_for("the collector over HTTPS", Duration::from_secs(15), || {
        curl(&ca_a, &url("/healthz")).is_some()
    });

    for path in ["/", "/api/v1/sites", "/metrics", "/healthz"] {
        let (head, body) = curl(&ca_a, &url(path)).unwrap();
        let h = head.to_lowercase();
        assert!(h.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            h.contains("strict-transport-security: max-age=31536000; includesubdomains"),
            "{path}: {head}"
        );
        assert!(
            h.contains(&format!(
                "content-security-policy: {}",
                rie_collector::api::serve::CSP.to_lowercase()
            )),
            "{path}: {head}"
        );
        assert!(h.contains("x-content-type-options: nosniff"), "{head}");
        assert!(h.contains("x-frame-options: deny"), "{head}");
        assert!(!body.is_empty(), "{path}");
    }
    // The sites of the fixture inventory, over TLS.
    let (_, sites) = curl(&ca_a, &url("/api/v1/sites")).unwrap();
    let sites: serde_json::Value = serde_json::from_str(&sites).unwrap();
    assert_eq!(sites.as_array().map(Vec::len), Some(3), "{sites}");
    // Plain HTTP on the HTTPS port: no HTTP answer.
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{api}/healthz"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");

    // A connection opened before the reload.
    let mut held = Held::open(&ca_a, api);
    assert_eq!(held.get("/healthz"), 200);

    // Renewal with another CA's certificate, then SIGHUP.
    pki_init(&s.path("pki-b"));
    let ca_b = s.path("pki-b/ca.pem");
    install(&s.path("pki-b/server.pem"), &cert);
    install(&s.path("pki-b/server.key"), &key);
    run_ok(Command::new("kill").args(["-HUP", &collector.id().to_string()]));
    wait_for("the new certificate", Duration::from_secs(15), || {
        curl(&ca_b, &url("/healthz")).is_some()
    });
    assert!(
        curl(&ca_a, &url("/healthz")).is_none(),
        "the old certificate is still served"
    );
    // The connection opened before goes on, on its own session.
    assert_eq!(held.get("/healthz"), 200);
    assert_eq!(held.get("/api/v1/sites"), 200);

    // Back to the first certificate, without a signal: the file change is seen.
    install(&s.path("pki/server.pem"), &cert);
    install(&s.path("pki/server.key"), &key);
    wait_for("the file change", Duration::from_secs(15), || {
        curl(&ca_a, &url("/healthz")).is_some()
    });
    assert!(curl(&ca_b, &url("/healthz")).is_none());
    assert_eq!(held.get("/healthz"), 200);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("API certificate reloaded") && text.contains("SIGHUP"),
        "{text}"
    );
    assert!(text.contains("file change"), "{text}");
}

#[test]
fn clear_text_off_loopback_is_refused_at_start_up() {
    let s = Setup::new();
    let port = free_ports::<1>()[0].port();
    for (api, key, fix) in [
        (
            format!("listen = \"0.0.0.0:{port}\""),
            "api.listen",
            "[api.tls]",
        ),
        (
            format!("listen = \"0.0.0.0:{port}\"\nbehind_proxy = true"),
            "api.trusted_proxies",
            "trusted_proxies = [",
        ),
    ] {
        let cfg = s.config(&api);
        let out = s.serve(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{api}: {err}");
        assert!(
            err.contains(&cfg.display().to_string()) && err.contains(key) && err.contains(fix),
            "{api}: {err}"
        );
    }
    // A TLS certificate that is not one: refused with the file's name.
    let bogus = s.path("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let cfg = s.config(&format!(
        "listen = \"127.0.0.1:{port}\"\n\n[api.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        bogus.display(),
        s.path("pki/server.key").display()
    ));
    let out = s.serve(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bogus.pem"), "{err}");
}
