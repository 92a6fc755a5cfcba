//! The proxy under abuse and overload, against HAProxy in the same run (issue 13;
//! `BENCHMARKS.md`, "Proxy under abuse and overload").
//!
//! - `lockout`: silent clients (connect, never send) are opened in steps of
//!   `APIVIP_BENCH_STEP` (250) up to `APIVIP_BENCH_SILENT_MAX` (9,000), from one
//!   address (127.0.0.10) or spread over many (127.0.1.x, 250 each); after each step a
//!   real client from 127.0.0.2 connects, sends 4 bytes and must get them echoed within
//!   1 s. Reported: the silent count at which the real client was first refused. Peers:
//!   HAProxy with the kubeadm HA guide's settings (`maxconn 3000`, `timeout client
//!   35s`), HAProxy at its best (a stick table capping each source at 1,000
//!   connections, `tcp-request inspect-delay 10s` rejecting clients that sent nothing,
//!   `maxconn 8000`), apivip with its defaults.
//! - `storm`: `APIVIP_BENCH_CONNS` (5,000) connections over two masters (the third
//!   is down already), each a client that reconnects at once when closed; then the
//!   second master "dies": its port closes and its connections hang (a host gone, no
//!   reset), so the proxy must close them. Reported: the peak of reconnects per second
//!   on the survivor (100 ms buckets × 10) and how long until every client is back.
//!   Peers: HAProxy with `on-marked-down shutdown-sessions`, apivip with
//!   `close_rate: 0` (all at once) and with its default (1,000/s).
//!
//! `cargo bench --bench abuse` (release build); `APIVIP_BENCH_ONLY=lockout|storm`.
//! Needs haproxy (Debian package); without it, prints why and exits 0.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const APIVIP: &str = env!("CARGO_BIN_EXE_apivip");

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn haproxy() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A child process, killed (by PID) and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An echo backend: accepts until its port is closed; its connections echo until
/// frozen (then they hang: no reset, no data, like a host that went away).
struct Echo {
    addr: SocketAddr,
    accepts: Arc<Mutex<Vec<Instant>>>,
    frozen: Arc<AtomicBool>,
    listener: tokio::task::JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepts = Arc::new(Mutex::new(Vec::new()));
        let frozen = Arc::new(AtomicBool::new(false));
        let (a, f) = (Arc::clone(&accepts), Arc::clone(&frozen));
        let listener = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                a.lock().expect("lock").push(Instant::now());
                let f = Arc::clone(&f);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || f.load(Ordering::Relaxed) {
                            break;
                        }
                        if s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                    if f.load(Ordering::Relaxed) {
                        // Hang: keep the socket, say nothing.
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                });
            }
        });
        Echo {
            addr,
            accepts,
            frozen,
            listener,
        }
    }

    /// The host goes away: the port closes, open connections hang.
    fn die(&self) {
        self.frozen.store(true, Ordering::Relaxed);
        self.listener.abort();
    }
}

async fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(src, 0))?;
    s.connect(to).await
}

/// Connects from 127.0.0.2, sends 4 bytes, expects them back within 1 s.
async fn real_client(to: SocketAddr) -> bool {
    let io = async {
        let mut s = connect_from("127.0.0.2".parse().expect("ip"), to).await?;
        s.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await?;
        Ok::<_, std::io::Error>(b == *b"ping")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), io).await,
        Ok(Ok(true))
    )
}

/// Waits until `to` accepts and echoes.
async fn wait_serving(to: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if real_client(to).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

enum Peer {
    HaproxyAnchor,
    HaproxyBest,
    HaproxyShutdownSessions,
    Apivip(&'static str),
}

impl Peer {
    fn name(&self) -> String {
        match self {
            Peer::HaproxyAnchor => "haproxy (kubeadm guide)".into(),
            Peer::HaproxyBest => "haproxy (stick table + inspect-delay)".into(),
            Peer::HaproxyShutdownSessions => "haproxy (shutdown-sessions)".into(),
            Peer::Apivip("") => "apivip (defaults)".into(),
            Peer::Apivip(extra) => format!(
                "apivip ({})",
                extra.lines().map(str::trim).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn start(&self, dir: &Path, port: u16, backends: &[SocketAddr]) -> Proc {
        let (bin, args, text) = match self {
            Peer::Apivip(extra) => {
                let list: String = backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("  - {{name: m{i}, address: '{b}'}}\n"))
                    .collect();
                (
                    PathBuf::from(APIVIP),
                    vec!["run".to_owned(), "--config".to_owned()],
                    format!(
                        "backends:\n{list}admin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: '127.0.0.1:{port}'\n{extra}  check: {{kind: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2}}\n"
                    ),
                )
            }
            haproxy_peer => {
                let servers: String = backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        format!(
                            "    server m{i} {b} check inter 200ms fall 2 rise 1{}\n",
                            if matches!(haproxy_peer, Peer::HaproxyShutdownSessions) {
                                " on-marked-down shutdown-sessions"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                let (maxconn, timeouts, front) = match haproxy_peer {
                    Peer::HaproxyAnchor => (3000, "    timeout client 35s\n    timeout server 35s\n", ""),
                    Peer::HaproxyBest => (
                        8000,
                        "    timeout client 1h\n    timeout server 1h\n",
                        "    stick-table type ip size 100k expire 30s store conn_cur\n    tcp-request connection track-sc0 src\n    tcp-request connection reject if { sc0_conn_cur gt 1000 }\n    tcp-request inspect-delay 10s\n    tcp-request content accept if { req.len gt 0 }\n    tcp-request content reject\n",
                    ),
                    _ => (9000, "    timeout client 1h\n    timeout server 1h\n", ""),
                };
                (
                    haproxy().expect("haproxy"),
                    vec!["-db".to_owned(), "-f".to_owned()],
                    format!(
                        "global\n    maxconn 9000\n\ndefaults\n    mode tcp\n    maxconn {maxconn}\n    timeout connect 5s\n{timeouts}\nfrontend fe\n    bind 127.0.0.1:{port}\n    maxconn {maxconn}\n{front}    default_backend be\n\nbackend be\n    balance leastconn\n{servers}"
                    ),
                )
            }
        };
        let cfg = dir.join(format!("{port}.cfg"));
        std::fs::write(&cfg, text).expect("config");
        let log = std::fs::File::create(dir.join(format!("{port}.log"))).expect("log");
        let child = Command::new(bin)
            .args(&args)
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the proxy");
        Proc(child)
    }
}

/// The silent count at which a real client was first refused (`None`: never, up to
/// the maximum).
async fn lockout(peer: &Peer, dir: &Path, spread: bool) -> Option<usize> {
    let echo = Echo::start().await;
    let port = free_port();
    let _proxy = peer.start(dir, port, &[echo.addr]);
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(wait_serving(to).await, "{} never served", peer.name());
    let (step, max) = (
        env_num("APIVIP_BENCH_STEP", 250),
        env_num("APIVIP_BENCH_SILENT_MAX", 9000),
    );
    let mut silent = Vec::new();
    let mut opened = 0;
    while opened < max {
        for k in 0..step {
            let i = opened + k;
            let src: IpAddr = if spread {
                format!("127.0.1.{}", 1 + i / 250).parse().expect("ip")
            } else {
                "127.0.0.10".parse().expect("ip")
            };
            // A refused one may fail here already; it counts as opened all the same.
            if let Ok(s) = connect_from(src, to).await {
                silent.push(s);
            }
        }
        opened += step;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !real_client(to).await && !real_client(to).await {
            return Some(opened);
        }
    }
    None
}

/// (peak reconnects per second on the survivor, time until every client is back).
async fn storm(peer: &Peer, dir: &Path) -> (u64, Duration) {
    let conns = env_num("APIVIP_BENCH_CONNS", 5000);
    let masters = [
        Echo::start().await,
        Echo::start().await,
        Echo::start().await,
    ];
    let port = free_port();
    let addrs: Vec<SocketAddr> = masters.iter().map(|m| m.addr).collect();
    let _proxy = peer.start(dir, port, &addrs);
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    masters[2].die();
    assert!(wait_serving(to).await, "{} never served", peer.name());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..conns {
        let (connected, stop) = (Arc::clone(&connected), Arc::clone(&stop));
        let src: IpAddr = format!("127.0.2.{}", 1 + i % 200).parse().expect("ip");
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from(src, to).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let mut b = [0u8; 4];
                if s.write_all(b"ping").await.is_err() || s.read_exact(&mut b).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                connected.fetch_add(1, Ordering::Relaxed);
                // Wait until the proxy closes it.
                let _ = s.read(&mut b).await;
                connected.fetch_sub(1, Ordering::Relaxed);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected.load(Ordering::Relaxed) < conns as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = masters[0].accepts.lock().expect("lock").len();
    let died = Instant::now();
    masters[1].die();
    // Every client back, on the survivor.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut back = None;
    while Instant::now() < deadline {
        let on_survivor = masters[0].accepts.lock().expect("lock").len() - before;
        if on_survivor >= conns / 2 && connected.load(Ordering::Relaxed) >= conns as u64 {
            back = Some(died.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.abort();
    }
    let accepts: Vec<Instant> = masters[0].accepts.lock().expect("lock")[before..].to_vec();
    // Peak over any 1 s window, in 100 ms steps.
    let mut peak = 0u64;
    let mut t = died;
    while t < died + Duration::from_secs(30) {
        let n = accepts
            .iter()
            .filter(|a| **a >= t && **a < t + Duration::from_secs(1))
            .count() as u64;
        peak = peak.max(n);
        t += Duration::from_millis(100);
    }
    (peak, back.unwrap_or(Duration::MAX))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if haproxy().is_none() {
        println!("SKIP abuse: needs haproxy (Debian package haproxy)");
        return;
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let only = std::env::var("APIVIP_BENCH_ONLY").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if only.is_empty() || only == "lockout" {
        println!(
            "\n## Silent-client lockout (a real client from another address after each step)\n"
        );
        println!("| proxy | silent from one address | silent from many (250 each) |");
        println!("|---|---:|---:|");
        let max = env_num("APIVIP_BENCH_SILENT_MAX", 9000);
        for peer in [Peer::HaproxyAnchor, Peer::HaproxyBest, Peer::Apivip("")] {
            let one = rt.block_on(lockout(&peer, dir.path(), false));
            let many = rt.block_on(lockout(&peer, dir.path(), true));
            let show =
                |r: Option<usize>| r.map_or(format!("not locked out at {max}"), |n| format!("{n}"));
            println!("| {} | {} | {} |", peer.name(), show(one), show(many));
        }
    }
    if only.is_empty() || only == "storm" {
        let conns = env_num("APIVIP_BENCH_CONNS", 5000);
        println!("\n## Reconnect storm: a second master dies with {conns} connections open\n");
        println!("| proxy | peak reconnects/s on the survivor | all back after |");
        println!("|---|---:|---:|");
        for peer in [
            Peer::HaproxyShutdownSessions,
            Peer::Apivip("  per_source_max_connections: 0\n  close_rate: 0\n"),
            Peer::Apivip("  per_source_max_connections: 0\n"),
        ] {
            let (peak, back) = rt.block_on(storm(&peer, dir.path()));
            println!("| {} | {peak} | {:.2} s |", peer.name(), back.as_secs_f64());
        }
    }
}
