//! Shared helpers for the integration tests (`mod support;`).
//!
//! - [`netns`]: the topology helper (bridge + master and client namespaces), root only.
//! - [`etcd`]: a real etcd member with TLS and client-certificate auth.
//! - [`connect`]: a client connecting to the VIP over and over, counting failures.
//! - [`daemon`]: `apivip` as a child process (killed on drop) and its output, line by line.
//! - [`dns`]: DNS failover nodes (imitation apiservers, apivip supervisors, a real BIND)
//!   and cuttable links between them.
//! - [`kubectl`]: real `kubectl` 1.20 WATCH clients (restarted when they exit, counted).
//! - [`notify`]: a stand-in for systemd's `NOTIFY_SOCKET` that keeps every datagram.
//! - [`vrrp`]: for the VRRP tests in namespaces: `apivip run` on a master, gratuitous ARPs.
//! - [`chaos`]: for the chaos tests: link impairment (netem or a userspace relay), a VIP
//!   holder monitor, an ARP prober, a recording client, protocol-112 floods.
//! - skip/fail policy: [`require_root`], [`require_bin`] (skip, or fail when
//!   `APIVIP_REQUIRE_NETNS=1`).
//! - HTTPS clients: [`https_get`], [`https_get_with`], [`https_get_blocking`], and
//!   [`wait_until`] for deadline-bounded polling.
#![allow(dead_code, unreachable_pub)]

pub mod chaos;
pub mod cluster;
pub mod connect;
pub mod daemon;
pub mod dashboard;
pub mod dns;
pub mod echo;
pub mod etcd;
pub mod kubectl;
pub mod notify;
pub mod vrrp;
/// The topology helper lives in the library (`apivip demo` uses it too).
pub mod netns {
    #[allow(unused_imports)]
    pub use apivip::testkit::netns::*;
}

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::Response;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream as TokioTcpStream;
use tokio_rustls::TlsConnector;

/// Default timeout of the HTTPS helpers.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a missing capability must fail the test (`APIVIP_REQUIRE_NETNS=1`, set by CI).
pub fn must_not_skip() -> bool {
    std::env::var("APIVIP_REQUIRE_NETNS").is_ok_and(|v| v == "1")
}

/// Prints `SKIP {test}: {why}`, or panics when `APIVIP_REQUIRE_NETNS=1`.
pub fn skip_or_fail(test: &str, why: &str) {
    if must_not_skip() {
        panic!("{test}: {why}, and APIVIP_REQUIRE_NETNS=1 forbids skipping");
    }
    eprintln!("SKIP {test}: {why}");
}

/// True when running as root. Otherwise prints `SKIP {test}: needs root (...)` and returns
/// false, or panics when `APIVIP_REQUIRE_NETNS=1`.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    skip_or_fail(
        test,
        "needs root (network namespaces, veth, raw sockets); run as root or in CI with APIVIP_REQUIRE_NETNS=1",
    );
    false
}

/// Finds `bin` in `PATH` (plus `/usr/sbin` and `/sbin`); an argument containing `/` is
/// checked as is.
pub fn which(bin: &str) -> Option<PathBuf> {
    fn is_exec(p: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(bin))
        .find(|p| is_exec(p))
}

/// The path of `bin`, or `None` after printing `SKIP {test}: needs {bin}` (panics instead
/// when `APIVIP_REQUIRE_NETNS=1`).
pub fn require_bin(test: &str, bin: &str) -> Option<PathBuf> {
    let found = which(bin);
    if found.is_none() {
        skip_or_fail(
            test,
            &format!("needs `{bin}` in PATH (install its Debian package)"),
        );
    }
    found
}

/// Polls `cond` every 10 ms until it returns true or `timeout` passes; returns its last
/// answer. For conditions, never for deciding a result by sleeping.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Blocking variant of [`wait_until`].
pub fn wait_until_blocking(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client config (ring) trusting the CA in `ca_pem`, presenting `identity`
/// (certificate PEM, key PEM) when given.
pub fn client_config(
    ca_pem: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(|e| format!("{ca_pem:?}: {e}"))? {
        let cert = cert.map_err(|e| format!("{ca_pem:?}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{ca_pem:?}: {e}"))?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{cert:?}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{cert:?}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key:?}: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| e.to_string())?
        }
    };
    Ok(Arc::new(config))
}

/// Opens a TLS connection to `addr` (server name = the IP) and sends one HTTP/1.1 GET.
/// Returns the response head and the (not yet read) body.
pub async fn https_request(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<Response<Incoming>, String> {
    let tcp = TokioTcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("GET {path} from {addr}: {e}"))
}

/// GET `path` from `addr` over TLS with `config`; (status, body), within [`HTTP_TIMEOUT`].
pub async fn https_get_with(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let fut = async {
        let resp = https_request(addr, config, path).await?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body of {path} from {addr}: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, fut)
        .await
        .map_err(|_| format!("GET {path} from {addr}: timed out after {HTTP_TIMEOUT:?}"))?
}

/// GET `path` from `addr` over TLS trusting the CA in `ca_path`; (status, body), within
/// [`HTTP_TIMEOUT`].
pub async fn https_get(
    addr: SocketAddr,
    ca_path: &Path,
    path: &str,
) -> Result<(u16, String), String> {
    https_get_with(addr, client_config(ca_path, None)?, path).await
}

/// Blocking GET (no runtime needed) with `Connection: close`; (status, body), within
/// [`HTTP_TIMEOUT`]. Understands `Content-Length`, chunked and read-to-EOF bodies.
pub fn https_get_blocking(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let ctx = |e: &dyn std::fmt::Display| format!("GET {path} from {addr}: {e}");
    let tcp = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| ctx(&e))?;
    tcp.set_read_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| ctx(&e))?;
    tcp.set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| ctx(&e))?;
    let conn = rustls::ClientConnection::new(config, ServerName::IpAddress(addr.ip().into()))
        .map_err(|e| ctx(&e))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).map_err(|e| ctx(&e))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A peer closing without close_notify after a complete response.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(ctx(&e)),
        }
    }
    parse_http_response(&raw).map_err(|e| ctx(&e))
}

fn parse_http_response(raw: &[u8]) -> Result<(u16, String), String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response head")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if k == "content-length" {
            length = v.parse::<usize>().ok();
        }
    }
    let mut body = &raw[head_end + 4..];
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("truncated chunk size")?;
            let size_str = String::from_utf8_lossy(&body[..line_end]);
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size_str:?}"))?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            if body.len() < size {
                return Err("truncated chunk".into());
            }
            out.extend_from_slice(&body[..size]);
            body = body.get(size + 2..).unwrap_or_default();
        }
        out
    } else if let Some(n) = length {
        body.get(..n).ok_or("truncated body")?.to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// From Prometheus text: the value of the sample `name` whose labels include every one of `labels`.
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labelset, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| labelset.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().ok())?
    })
}
