//! One authenticated connection to the collector: TCP, TLS verified against the configured CA,
//! hello, and framed messages after that. Used by the uplink, by `send-batch`, and by tests
//! that need to speak the protocol (or break it on purpose).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rie_proto::{Hello, Message, Refused, Welcome, MAX_FRAME_LEN};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// TLS client settings that trust only the given CA (PEM): the collector's private CA, never
/// the system store, so a certificate from any public CA is refused.
///
/// # Errors
/// A message for the technician when the PEM holds no usable certificate.
pub fn client_tls(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| {
            "not a PEM certificate; copy ca.pem from the collector's pki directory".to_string()
        })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no certificate; copy ca.pem from the collector's pki directory".into());
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Where and how to reach the collector.
#[derive(Clone)]
pub struct Target {
    pub address: String,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {address} failed: {source} (is ca_cert the collector's CA, and server_name in its certificate?)")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("collector refused the probe ({:?}): {}", .0.code, .0.reason)]
    Refused(Refused),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer from the collector within {0:?}")]
    Timeout(Duration),
    /// A plan message whose version could be read but not the rest: answered with a refusal,
    /// the connection kept.
    #[error("plan {version} cannot be decoded: {reason}")]
    BadPlan { version: u64, reason: String },
}

/// Just enough of a plan frame to answer it: its version.
#[derive(serde::Deserialize)]
enum PlanHead {
    Plan { version: u64 },
}

pub struct Session {
    framed: Framed<TlsStream<TcpStream>, LengthDelimitedCodec>,
    pub welcome: Welcome,
}

impl Session {
    /// Connects, sends `hello` and waits for the collector's answer.
    ///
    /// # Errors
    /// [`SessionError`]; `Refused` carries the collector's reason and fix.
    pub async fn open(target: &Target, hello: Hello) -> Result<Self, SessionError> {
        let t = target.connect_timeout;
        let tcp = tokio::time::timeout(t, TcpStream::connect(&target.address))
            .await
            .map_err(|_| SessionError::Timeout(t))?
            .map_err(|source| SessionError::Connect {
                address: target.address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            t,
            TlsConnector::from(target.tls.clone()).connect(target.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| SessionError::Timeout(t))?
        .map_err(|source| SessionError::Tls {
            address: target.address.clone(),
            source,
        })?;
        let codec = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .max_frame_length(MAX_FRAME_LEN)
            .new_codec();
        let mut s = Self {
            framed: Framed::new(tls, codec),
            welcome: Welcome {
                protocol_version: 0,
                collector_time_ms: 0,
                last_stored_seq: None,
            },
        };
        let version = hello.protocol_version;
        // Stamped as it leaves, after TCP and TLS: the collector measures the clock offset on
        // it, and a handshake slowed by a reconnect storm must not look like a wrong clock.
        let hello = Hello {
            probe_time_ms: rie_common::now_ms(),
            ..hello
        };
        s.send(&Message::Hello(hello)).await?;
        match tokio::time::timeout(t, s.recv()).await {
            Err(_) => Err(SessionError::Timeout(t)),
            Ok(Ok(Some(Message::Welcome(w)))) if w.protocol_version != version => {
                Err(SessionError::Protocol(format!(
                    "collector answered in protocol version {}, this probe speaks {version}: upgrade the older side",
                    w.protocol_version
                )))
            }
            Ok(Ok(Some(Message::Welcome(w)))) => {
                s.welcome = w;
                Ok(s)
            }
            Ok(Ok(Some(Message::Refused(r)))) => Err(SessionError::Refused(r)),
            Ok(Ok(Some(other))) => Err(SessionError::Protocol(format!(
                "expected welcome, got {}",
                other.kind()
            ))),
            Ok(Ok(None)) => Err(SessionError::Protocol(
                "collector closed the connection after hello".into(),
            )),
            Ok(Err(e)) => Err(e),
        }
    }

    /// # Errors
    /// I/O errors, or a message too large to frame.
    pub async fn send(&mut self, msg: &Message) -> Result<(), SessionError> {
        let body = rie_proto::encode(msg).map_err(|e| SessionError::Protocol(e.to_string()))?;
        self.framed.send(body.as_slice()).await?;
        Ok(())
    }

    /// Writes raw bytes on the TLS stream, bypassing framing (tests of malformed input).
    ///
    /// # Errors
    /// I/O errors.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        use tokio::io::AsyncWriteExt;
        let io = self.framed.get_mut();
        io.write_all(bytes).await?;
        io.flush().await?;
        Ok(())
    }

    /// Flushes and closes the connection (TLS close_notify), so the collector logs a clean end.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            SinkExt::<&[u8]>::close(&mut self.framed),
        )
        .await;
    }

    /// Next message, or `None` when the collector closed the connection.
    ///
    /// # Errors
    /// I/O errors and undecodable frames.
    pub async fn recv(&mut self) -> Result<Option<Message>, SessionError> {
        match self.framed.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(bytes)) => rie_proto::decode(&bytes).map(Some).map_err(|e| {
                match rmp_serde::from_slice::<PlanHead>(&bytes) {
                    Ok(PlanHead::Plan { version }) => SessionError::BadPlan {
                        version,
                        reason: e.to_string(),
                    },
                    Err(_) => SessionError::Protocol(e.to_string()),
                }
            }),
        }
    }
}
