//! The proxy under abuse, on loopback (see `tests/abuse.rs`): plain TCP echo backends
//! (the proxy is L4) behind apivip in-process (`Supervisor`, the same code `apivip run`
//! runs), and clients bound to chosen loopback addresses.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use apivip::config::FrontendKind;
use apivip::health::Status;
use apivip::proxy::Refused;
use apivip::supervisor::Supervisor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::wait_until;

pub const DEADLINE: Duration = Duration::from_secs(20);

/// What an echo backend does once its client finished sending.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum AfterEof {
    /// Closes at once (a normal server).
    Close,
    /// Keeps the connection open and says nothing (a stuck peer).
    Hold,
    /// Sends one byte every 100 ms for `TRICKLE` bytes, then closes (a stream that
    /// goes on after the client finished sending).
    Trickle,
}

/// Bytes an [`AfterEof::Trickle`] backend sends after its client's EOF.
pub const TRICKLE: usize = 12;

/// A TCP echo backend.
pub struct Backend {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start(after_eof: AfterEof) -> Backend {
        Self::start_at("127.0.0.1:0".parse().unwrap(), after_eof)
            .await
            .unwrap()
    }

    /// An echo backend on `addr` (one that was used before: a restarted master).
    pub async fn start_at(addr: SocketAddr, after_eof: AfterEof) -> std::io::Result<Backend> {
        let l = TcpListener::bind(addr).await?;
        let addr = l.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    // Out of descriptors (tests/fd_limit.rs): try again shortly.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    match after_eof {
                        AfterEof::Close => {}
                        // Silent, and the connection kept (EOF is not a close).
                        AfterEof::Hold => tokio::time::sleep(Duration::from_secs(60)).await,
                        AfterEof::Trickle => {
                            for _ in 0..TRICKLE {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                if s.write_all(b"t").await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Ok(Backend { addr, task })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Proxy {
    _dir: tempfile::TempDir,
    pub sup: Supervisor,
    pub addr: SocketAddr,
    /// The proxy workers, when it runs on them (declared after `sup`, so that they stop
    /// after it).
    pub workers: Option<apivip::proxy::workers::Workers>,
}

impl Proxy {
    /// apivip in front of `backend`, with `extra` keys (indented by 2) in `apiserver:`.
    pub async fn start(backend: &Backend, extra: &str) -> Proxy {
        Self::start_with(backend, extra, 0).await
    }

    /// Like [`Proxy::start`], with the connections on `workers` proxy workers, as
    /// `apivip run` runs them (0: on the test's runtime).
    pub async fn start_with(backend: &Backend, extra: &str, workers: usize) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "backends:\n  - name: b0\n    address: '{}'\nadmin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: '127.0.0.1:0'\n{extra}  check: {{kind: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2}}\n",
            backend.addr
        );
        let path = dir.path().join("apivip.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = apivip::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let workers =
            (workers > 0).then(|| apivip::proxy::workers::Workers::start(workers).unwrap());
        let sup = match &workers {
            Some(w) => Supervisor::start_on_workers(&config, w.pool()).await,
            None => Supervisor::start(&config).await,
        }
        .unwrap();
        let addr = sup.listen_addrs(FrontendKind::Apiserver)[0];
        let p = Proxy {
            _dir: dir,
            sup,
            addr,
            workers,
        };
        assert!(
            wait_until(DEADLINE, || async {
                p.sup.health().current().frontends[0].backends[0].status == Status::Up
            })
            .await,
            "the backend never turned up"
        );
        p
    }

    pub fn fe(&self) -> Arc<apivip::proxy::FrontendProxy> {
        self.sup.frontend(FrontendKind::Apiserver).unwrap()
    }

    pub fn refused(&self, why: Refused) -> u64 {
        self.fe().stats.refused(why)
    }

    /// Connections the proxy made to the backend (health checks are not counted).
    pub fn proxied(&self) -> u64 {
        self.fe()
            .backend_stats(0)
            .map_or(0, |(s, _)| s.connections.load(Ordering::Relaxed))
    }

    pub fn active(&self) -> usize {
        self.fe().stats.active.load(Ordering::Relaxed)
    }
}

/// A client connection from `src` (any port).
pub async fn connect_from(src: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0))?;
    socket.connect(to).await
}

/// Sends `ping` and reads it back: whether the connection is served.
pub async fn round_trip(s: &mut TcpStream) -> bool {
    let io = async {
        s.write_all(b"ping").await?;
        let mut back = [0u8; 4];
        s.read_exact(&mut back).await?;
        Ok::<_, std::io::Error>(back == *b"ping")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), io).await,
        Ok(Ok(true))
    )
}

/// A fresh connection from `src` that is served.
pub async fn served_from(src: &str, to: SocketAddr) -> bool {
    match connect_from(src, to).await {
        Ok(mut s) => round_trip(&mut s).await,
        Err(_) => false,
    }
}

/// Waits until the proxy closed `s` (EOF or reset), at most `within`.
pub async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}
