//! Probes: one attempt to learn whether a backend is healthy.
//!
//! A [`Prober`] is built once from a [`Check`] (loading certificates, so bad PEM fails
//! at start with the key path named) and then run against a backend address. Every
//! failure is classified by [`DownCause`]: not answering properly (refused, reset,
//! connect timeout, TLS failure, broken HTTP) is `Unreachable`; accepting the
//! connection but not answering within the timeout is `Unresponsive`; answering "not
//! ready" (HTTP non-2xx, etcd `health` not `"true"`) is `NotReady`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{Check, CheckKind, HttpsCheck};
use crate::health::state::{DownCause, FailureKind, Outcome};

/// The largest health response body read.
const MAX_BODY: usize = 64 * 1024;

/// Why a check could not be set up (bad certificate files).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{key}: {path:?}: {message}")]
    Pem {
        /// The config key that named the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificates (e.g. key does not match certificate).
    #[error("{key}: {message}")]
    Tls {
        /// The config key.
        key: String,
        /// rustls' message.
        message: String,
    },
}

/// A ready-to-run health probe.
#[derive(Clone)]
pub enum Prober {
    /// TCP connect.
    Tcp,
    /// HTTPS GET.
    Https(Arc<HttpsProber>),
}

/// The HTTPS part of a prober.
pub struct HttpsProber {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
    path: String,
    etcd: bool,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prober::Tcp => f.write_str("Prober::Tcp"),
            Prober::Https(h) => write!(f, "Prober::Https({}, etcd: {})", h.path, h.etcd),
        }
    }
}

impl Prober {
    /// Builds a prober; `key` is the config path of the check (`apiserver.check`).
    pub fn new(check: &Check, key: &str) -> Result<Prober, ProbeSetupError> {
        match &check.kind {
            CheckKind::Tcp => Ok(Prober::Tcp),
            CheckKind::Https(h) => Ok(Prober::Https(Arc::new(HttpsProber::new(h, key, false)?))),
            CheckKind::Etcd(h) => Ok(Prober::Https(Arc::new(HttpsProber::new(h, key, true)?))),
        }
    }

    /// Runs one probe against `addr`, bounded by `timeout`.
    /// A timeout after the connect succeeded is [`DownCause::Unresponsive`] (the port
    /// accepts; the master is slow or hung), one before it `Unreachable`.
    pub async fn probe(&self, addr: SocketAddr, timeout: Duration) -> Outcome {
        let connected = std::sync::atomic::AtomicBool::new(false);
        match tokio::time::timeout(timeout, self.probe_unbounded(addr, &connected)).await {
            Ok(outcome) => outcome,
            Err(_) if connected.load(std::sync::atomic::Ordering::Relaxed) => Outcome::Failure {
                cause: DownCause::Unresponsive,
                kind: FailureKind::Timeout,
                reason: format!(
                    "connected, but no answer within {}",
                    crate::units::format_duration(timeout)
                ),
            },
            Err(_) => unreachable_because(
                FailureKind::Timeout,
                format!(
                    "connect timed out after {}",
                    crate::units::format_duration(timeout)
                ),
            ),
        }
    }

    async fn probe_unbounded(
        &self,
        addr: SocketAddr,
        connected: &std::sync::atomic::AtomicBool,
    ) -> Outcome {
        let tcp = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) if is_local_error(&e) => {
                return Outcome::Inconclusive {
                    reason: format!("connect: {e}"),
                }
            }
            Err(e) => return unreachable_because(io_kind(&e), format!("connect: {e}")),
        };
        connected.store(true, std::sync::atomic::Ordering::Relaxed);
        match self {
            Prober::Tcp => Outcome::Success,
            Prober::Https(h) => h.probe(tcp, addr).await,
        }
    }
}

/// Errors that say this node cannot open a connection, not that the backend is down.
fn is_local_error(e: &std::io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

fn unreachable_because(kind: FailureKind, reason: String) -> Outcome {
    Outcome::Failure {
        cause: DownCause::Unreachable,
        kind,
        reason,
    }
}

fn not_ready_because(kind: FailureKind, reason: String) -> Outcome {
    Outcome::Failure {
        cause: DownCause::NotReady,
        kind,
        reason,
    }
}

/// The kind of a failed connect or read.
fn io_kind(e: &std::io::Error) -> FailureKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => FailureKind::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            FailureKind::Reset
        }
        K::TimedOut => FailureKind::Timeout,
        _ => FailureKind::Other,
    }
}

/// The kind of a failed HTTP exchange: a reset or refused connection underneath, or a
/// protocol error.
fn http_kind(e: &(dyn std::error::Error + 'static)) -> FailureKind {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_kind(io);
        }
        cur = err.source();
    }
    let text = e.to_string();
    if text.contains("connection closed") || text.contains("IncompleteMessage") {
        FailureKind::Reset
    } else {
        FailureKind::Other
    }
}

/// Loads every certificate in a PEM file.
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ProbeSetupError> {
    let pem_err = |message: String| ProbeSetupError::Pem {
        key: key.to_owned(),
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err(
            "holds no CERTIFICATE block; expected a PEM certificate".into(),
        ));
    }
    Ok(certs)
}

/// Loads the private key in a PEM file.
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ProbeSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| ProbeSetupError::Pem {
        key: key.to_owned(),
        path: path.to_owned(),
        message: format!("no usable private key: {e}"),
    })
}

/// The ring provider, named explicitly so no process default is needed.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl HttpsProber {
    fn new(h: &HttpsCheck, key: &str, etcd: bool) -> Result<Self, ProbeSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        match &h.ca {
            Some(path) => {
                for cert in load_certs(&format!("{key}.ca"), path)? {
                    roots.add(cert).map_err(|e| ProbeSetupError::Pem {
                        key: format!("{key}.ca"),
                        path: path.clone(),
                        message: format!("not a usable CA certificate: {e}"),
                    })?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // System bundles hold a few certificates rustls cannot parse; skip them.
                    let _ = roots.add(cert);
                }
            }
        }
        let tls_err = |e: rustls::Error| ProbeSetupError::Tls {
            key: key.to_owned(),
            message: e.to_string(),
        };
        let builder = ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(roots);
        let mut config = match &h.client_cert {
            Some((cert, pkey)) => {
                let chain = load_certs(&format!("{key}.client_cert"), cert)?;
                let pkey = load_key(&format!("{key}.client_key"), pkey)?;
                builder
                    .with_client_auth_cert(chain, pkey)
                    .map_err(|e| ProbeSetupError::Tls {
                        key: format!("{key}.client_key"),
                        message: format!("does not fit client_cert: {e}"),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let server_name = match &h.server_name {
            Some(n) => Some(
                ServerName::try_from(n.clone()).map_err(|e| ProbeSetupError::Tls {
                    key: format!("{key}.server_name"),
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        Ok(HttpsProber {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            path: h.path.clone(),
            etcd,
        })
    }

    async fn probe(&self, tcp: TcpStream, addr: SocketAddr) -> Outcome {
        let _ = tcp.set_nodelay(true);
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let tls = match self.connector.connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => {
                let kind = match io_kind(&e) {
                    FailureKind::Other => FailureKind::Tls,
                    k => k,
                };
                return unreachable_because(kind, format!("TLS: {}", tls_cause(&e)));
            }
        };
        let io = hyper_util::rt::TokioIo::new(tls);
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
            Ok(x) => x,
            Err(e) => return unreachable_because(http_kind(&e), format!("HTTP: {}", chain(&e))),
        };
        let conn_task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::get(&self.path)
            .header(hyper::header::HOST, addr.to_string())
            .header(hyper::header::USER_AGENT, "apivip-health")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new());
        let request = match request {
            Ok(r) => r,
            Err(e) => return unreachable_because(FailureKind::Other, format!("bad request: {e}")),
        };
        let outcome = match sender.send_request(request).await {
            Ok(resp) => {
                let status = resp.status();
                let body = Limited::new(resp.into_body(), MAX_BODY).collect().await;
                match body {
                    Ok(b) => self.judge(status, &b.to_bytes()),
                    Err(e) => unreachable_because(
                        http_kind(&*e),
                        format!("HTTP {status}, body: {}", chain(&*e)),
                    ),
                }
            }
            Err(e) => unreachable_because(http_kind(&e), format!("HTTP: {}", chain(&e))),
        };
        conn_task.abort();
        outcome
    }

    fn judge(&self, status: hyper::StatusCode, body: &[u8]) -> Outcome {
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let first = text.lines().find(|l| l.starts_with("[-]")).unwrap_or("");
            let detail = if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            };
            return not_ready_because(
                FailureKind::HttpStatus,
                format!("HTTP {}{detail}", status.as_u16()),
            );
        }
        if self.etcd {
            return judge_etcd(body);
        }
        Outcome::Success
    }
}

/// etcd's `/health` answers `{"health":"true","reason":""}`.
fn judge_etcd(body: &[u8]) -> Outcome {
    #[derive(serde::Deserialize)]
    struct EtcdHealth {
        health: String,
        #[serde(default)]
        reason: String,
    }
    match serde_json::from_slice::<EtcdHealth>(body) {
        Ok(h) if h.health == "true" => Outcome::Success,
        Ok(h) => not_ready_because(
            FailureKind::EtcdUnhealthy,
            format!("etcd health {:?} {}", h.health, h.reason),
        ),
        Err(e) => not_ready_because(
            FailureKind::EtcdUnhealthy,
            format!("etcd /health is not the expected JSON: {e}"),
        ),
    }
}

/// An error with its causes, e.g. "connection error: received fatal alert: BadCertificate".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// The innermost cause of a TLS error, e.g. "invalid peer certificate: UnknownIssuer".
fn tls_cause(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_health_is_read_from_the_json() {
        assert_eq!(
            judge_etcd(br#"{"health":"true","reason":""}"#),
            Outcome::Success
        );
        assert!(matches!(
            judge_etcd(br#"{"health":"false","reason":"NOSPACE"}"#),
            Outcome::Failure { cause: DownCause::NotReady, kind: FailureKind::EtcdUnhealthy, ref reason } if reason.contains("NOSPACE")
        ));
        assert!(matches!(
            judge_etcd(b"ok"),
            Outcome::Failure {
                cause: DownCause::NotReady,
                ..
            }
        ));
    }
}
