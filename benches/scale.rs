//! Scale (issue 14): apivip against HAProxy (`mode tcp`, `nbthread` = apivip's worker
//! threads) in the same run, on two workloads, with the ratios apivip/HAProxy.
//!
//! - `watch`: N idle WATCH-like connections with a trickle of events, for N in
//!   `APIVIP_BENCH_SCALE_NS` (1000,5000,9800). Each client connects through the proxy,
//!   sends a ~256-byte WATCH request and reads a first ~300-byte event; the holder
//!   backend (this binary re-executed) then sends a 300-byte event on each connection
//!   every `APIVIP_BENCH_SCALE_EVENT_SECS` (10) seconds, spread evenly (N/10 events a
//!   second in all, round-robin on a 1 ms tick), which the clients read. Measured: the
//!   proxy's VmRSS once all N are open and settled minus its VmRSS before any
//!   connection (and again after the trickle window, the figure the fit uses), its
//!   descriptors (/proc/PID/fd), and its CPU over `APIVIP_BENCH_SECS` of trickle as
//!   CPU-% and CPU-µs per event delivered. Then a least-squares line of RSS growth vs N
//!   and CPU vs N per proxy: bytes per connection (the slope), the intercept, and an
//!   extrapolation to 100,000 connections (RSS in MiB, CPU %, descriptors, 10,000
//!   events/s at the default trickle), and what each would need there. One
//!   measurement's µs per event includes the proxy's fixed cost (health checks, timers);
//!   the slope's is the cost of one more event.
//! - `accept`: a reconnect storm of TLS-sized connections. A client (this binary
//!   re-executed: a tokio current-thread runtime, `APIVIP_BENCH_STORM_CONCURRENCY` (200)
//!   connections in flight) connects, sends a 2 KiB "ClientHello", reads the 4 KiB
//!   "ServerHello" the backend answers, and closes, over and over. Measured over
//!   `APIVIP_BENCH_SECS`: completed connections per second through apivip, HAProxy and
//!   direct (no proxy), the mean connection time, and the proxy's CPU per connection,
//!   with its CPU ceiling (1e6 / µs per connection × the cores its threads may use).
//!   When a proxy uses less CPU than its threads could, the client and the backend set
//!   the rate (the direct path shows their limit) and the report says so: the CPU per
//!   connection then compares the proxies, not conn/s. The client closes with
//!   SO_LINGER 0 (a reset), so no TIME_WAIT lands on the client's ephemeral ports (all
//!   from 127.0.0.1); the proxy's own connections to the backend reuse TIME_WAIT ports
//!   through the kernel's `tcp_tw_reuse` (2 = loopback, the default; the header prints
//!   it).
//!
//! The descriptor limit caps N: the bench raises RLIMIT_NOFILE's soft limit to the hard
//! one (children inherit it); the proxy holds 2 descriptors per connection, the client
//! process and the holder N each. N is capped per proxy at what it can hold, and the
//! report says where it was: HAProxy at `maxconn` = N + 50 with 2 `maxconn` + 200 within
//! the limit (9,850 at 20,000); apivip at its descriptor budget
//! (`apivip::proxy::descriptor_budget`: the limit less a 256-descriptor reserve and
//! 2 × 256 for each frontend's pipe pool (apiserver and etcd are both counted, so that
//! a reload adding etcd still fits), halved: 9,360 at 20,000), past which it refuses clients
//! (reason `fd_budget`). Set `APIVIP_BENCH_SCALE_NS` to measure both at the same N.
//!
//! apivip's config: `per_source_max_connections: 0` (its default, 1,000 per source,
//! would refuse the 1,001st client: every client here is 127.0.0.1) and
//! `per_source_rate: 0` (already the default: no new-connection rate limit per
//! source), as HAProxy has neither by default; `max_connections` N + 50 (within its
//! budget); its other defaults stand (`first_byte_timeout` 10 s: both workloads speak
//! first; apivip then connects the backend only once the client has spoken, where
//! HAProxy connects at once).
//!
//! CPU: `se.sum_exec_runtime` of every thread (`/proc/PID/task/*/sched`, exact), with
//! utime + stime from `/proc/PID/stat` (whole 10 ms ticks, dead threads included)
//! beside it as a cross-check. Every measurement waits for a quiet machine first (up to
//! `APIVIP_BENCH_QUIET_MAX_SECS`, 120) and reports the CPU other processes used
//! meanwhile (`other load cores`; flagged above 0.15).
//!
//! Knobs (environment variables):
//! - `APIVIP_BENCH_SCALE_NS` (1000,5000,9800), `APIVIP_BENCH_SCALE_EVENT_SECS` (10),
//!   `APIVIP_BENCH_SECS` (10: the trickle window and the storm), `APIVIP_BENCH_ROUNDS`
//!   (1; medians over rounds, the order of the paths rotating from round to round);
//!   `APIVIP_BENCH_QUICK=1`: N = 500,1000 and 3 s;
//! - `APIVIP_BENCH_WORKLOADS`: a subset of `watch,accept`; `APIVIP_BENCH_PATHS`: a
//!   subset of `direct,haproxy,apivip` (direct only in `accept`);
//! - `APIVIP_BENCH_THREADS`: threads of both proxies (HAProxy `nbthread`, apivip
//!   `TOKIO_WORKER_THREADS`; default one per CPU the proxy may use);
//!   `APIVIP_BENCH_HAPROXY_THREADS` sets HAProxy's alone;
//! - `APIVIP_BENCH_PIN=1`: proxies on CPU 1; holder, backend and clients on CPU 0;
//! - `APIVIP_BENCH_STORM_CONCURRENCY` (200), `APIVIP_BENCH_STORM_THREADS` (1: a
//!   current-thread runtime; more: a multi-thread runtime with that many workers);
//! - `APIVIP_BENCH_QUIET_MAX_SECS` (120; quick 20);
//! - `APIVIP_REQUIRE_NETNS=1`: a missing HAProxy or a failed measurement is a failure
//!   instead of a skip.
//!
//! `cargo bench --bench scale`. Needs haproxy (Debian package); without it, prints why
//! and exits 0. Only loopback traffic; every child is killed by PID when its guard
//! drops, also on panic.

#[path = "proxy_common/mod.rs"]
mod proxy_common;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ChildStdin, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use proxy_common::{
    clk_tck, command, cpu_ns, cpu_ticks, env_flag, env_parse, fd_count, fit_line, fmt_value,
    free_port, median, raise_fd_limit, rss_kib, status_field, version_line, wait_listening,
    wait_quiet, which, OtherLoad, Proc, QUIET_CORES,
};

const APIVIP: &str = env!("CARGO_BIN_EXE_apivip");
const ROLE_ENV: &str = "APIVIP_BENCH_ROLE";
const PORT_ENV: &str = "APIVIP_BENCH_PORT";
const TARGET_ENV: &str = "APIVIP_BENCH_TARGET";
const N_ENV: &str = "APIVIP_BENCH_N";
const EVENT_SECS_ENV: &str = "APIVIP_BENCH_SCALE_EVENT_SECS";
const CONCURRENCY_ENV: &str = "APIVIP_BENCH_STORM_CONCURRENCY";
const STORM_THREADS_ENV: &str = "APIVIP_BENCH_STORM_THREADS";

/// A WATCH client's request, padded to this length.
const REQUEST_LEN: usize = 256;
/// One watch event.
const EVENT_LEN: usize = 300;
/// The storm client's "ClientHello" and the backend's "ServerHello".
const CLIENT_HELLO_LEN: usize = 2048;
const SERVER_HELLO_LEN: usize = 4096;
/// WATCH connections being opened at once.
const OPEN_IN_FLIGHT: usize = 64;
/// The extrapolation's connection count.
const FAR_N: f64 = 100_000.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("watch-holder") => watch_holder_main(),
        Ok("watch-client") => watch_client_main(),
        Ok("hello-server") => hello_server_main(),
        Ok("storm-client") => storm_client_main(),
        _ => bench_main(),
    }
}

// ---------------------------------------------------------------------------
// Child roles (this binary re-executed).

fn watch_request() -> Vec<u8> {
    let mut r = b"GET /api/v1/namespaces/default/pods?watch=1&resourceVersion=12345&allowWatchBookmarks=true HTTP/1.1\r\nHost: apiserver\r\nAccept: application/json\r\nX-Pad: "
        .to_vec();
    r.resize(REQUEST_LEN - 4, b'x');
    r.extend_from_slice(b"\r\n\r\n");
    r
}

fn watch_event() -> Vec<u8> {
    let mut e = br#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"bench","namespace":"default","resourceVersion":"12346"},"status":{"phase":"Running","pad":""#
        .to_vec();
    e.resize(EVENT_LEN - 5, b'x');
    e.extend_from_slice(b"\"}}}\n");
    e
}

fn current_thread_runtime(role: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{role}: runtime: {e}"))
}

/// Accepts on `127.0.0.1:$APIVIP_BENCH_PORT`; reads each connection's WATCH request and
/// answers with a first event; then sends `$APIVIP_BENCH_N / $EVENT_SECS` events a second
/// in all, round-robin over the connections, so each gets one every `EVENT_SECS`
/// (once all N are open). A connection whose write fails is dropped.
fn watch_holder_main() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port: u16 = env_parse(PORT_ENV).expect("watch-holder: APIVIP_BENCH_PORT");
    let n: usize = env_parse(N_ENV).expect("watch-holder: APIVIP_BENCH_N");
    let event_secs: f64 = env_parse(EVENT_SECS_ENV)
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(10.0);
    let rate = n as f64 / event_secs;
    let event: Arc<[u8]> = watch_event().into();
    current_thread_runtime("watch-holder").block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("watch-holder: bind");
        let conns: Arc<Mutex<Vec<tokio::net::TcpStream>>> = Arc::default();
        let (c, ev) = (Arc::clone(&conns), Arc::clone(&event));
        tokio::spawn(async move {
            // 1 ms (the timer's resolution): events spread evenly, not in bursts.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let start = Instant::now();
            let (mut sent, mut cursor) = (0u64, 0usize);
            loop {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                let mut v = c.lock().expect("lock");
                while sent < due && !v.is_empty() {
                    if cursor >= v.len() {
                        cursor = 0;
                    }
                    match v[cursor].try_write(&ev) {
                        Ok(k) if k == ev.len() => cursor += 1,
                        // Full socket buffer: skip this one this time.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => cursor += 1,
                        // Gone, or a partial write (the framing is lost): drop it.
                        _ => {
                            v.swap_remove(cursor);
                        }
                    }
                    sent += 1;
                }
                sent = sent.max(due);
            }
        });
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let (conns, event) = (Arc::clone(&conns), Arc::clone(&event));
            tokio::spawn(async move {
                let mut req = vec![0u8; REQUEST_LEN];
                let read = tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut req));
                // Health checks connect and close without a request.
                if !matches!(read.await, Ok(Ok(_))) || !req.starts_with(b"GET ") {
                    return;
                }
                if s.write_all(&event).await.is_ok() {
                    conns.lock().expect("lock").push(s);
                }
            });
        }
    });
}

/// Answers each line on stdin with `line()`, until stdin closes; then exits.
async fn answer_stdin(line: impl Fn() -> String) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {
        println!("{}", line());
    }
    std::process::exit(0);
}

fn first_error(slot: &Mutex<Option<String>>, e: impl std::fmt::Display) {
    let mut s = slot.lock().expect("lock");
    if s.is_none() {
        *s = Some(e.to_string());
    }
}

/// Opens `$APIVIP_BENCH_N` WATCH connections to `$APIVIP_BENCH_TARGET`
/// ([`OPEN_IN_FLIGHT`] at a time: connect, request, first event), prints
/// `open OK FAILED FIRST-ERROR`, then reads every event; each line on stdin is answered
/// with `EVENTS CLOSED` (events read in all, connections that ended).
fn watch_client_main() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target: SocketAddr = env_parse(TARGET_ENV).expect("watch-client: APIVIP_BENCH_TARGET");
    let n: usize = env_parse(N_ENV).expect("watch-client: APIVIP_BENCH_N");
    current_thread_runtime("watch-client").block_on(async move {
        let bytes = Arc::new(AtomicU64::new(0));
        let opened = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(OPEN_IN_FLIGHT));
        let request: Arc<[u8]> = watch_request().into();
        for _ in 0..n {
            let permit = Arc::clone(&gate).acquire_owned().await.expect("semaphore");
            let (bytes, opened, failed, closed, error, request) = (
                Arc::clone(&bytes),
                Arc::clone(&opened),
                Arc::clone(&failed),
                Arc::clone(&closed),
                Arc::clone(&error),
                Arc::clone(&request),
            );
            tokio::spawn(async move {
                let open = async {
                    let mut s = tokio::net::TcpStream::connect(target).await?;
                    s.write_all(&request).await?;
                    let mut first = [0u8; EVENT_LEN];
                    s.read_exact(&mut first).await?;
                    Ok::<_, std::io::Error>(s)
                };
                let mut s = match tokio::time::timeout(Duration::from_secs(30), open).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        first_error(&error, e);
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Err(_) => {
                        first_error(&error, "no first event within 30 s");
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                bytes.fetch_add(EVENT_LEN as u64, Ordering::Relaxed);
                opened.fetch_add(1, Ordering::Relaxed);
                drop(permit);
                let mut buf = [0u8; 1024];
                while let Ok(k @ 1..) = s.read(&mut buf).await {
                    bytes.fetch_add(k as u64, Ordering::Relaxed);
                }
                closed.fetch_add(1, Ordering::Relaxed);
            });
        }
        while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "open {} {} {}",
            opened.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
            error.lock().expect("lock").as_deref().unwrap_or("-")
        );
        answer_stdin(|| {
            format!(
                "{} {}",
                bytes.load(Ordering::Relaxed) / EVENT_LEN as u64,
                closed.load(Ordering::Relaxed)
            )
        })
        .await;
    });
}

/// Accepts on `127.0.0.1:$APIVIP_BENCH_PORT`; on each connection reads a ClientHello
/// ([`CLIENT_HELLO_LEN`] bytes), answers a ServerHello ([`SERVER_HELLO_LEN`]) and waits
/// until the client closes.
fn hello_server_main() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port: u16 = env_parse(PORT_ENV).expect("hello-server: APIVIP_BENCH_PORT");
    current_thread_runtime("hello-server").block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("hello-server: bind");
        let answer: Arc<[u8]> = vec![0x16u8; SERVER_HELLO_LEN].into();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut hello = [0u8; CLIENT_HELLO_LEN];
                if s.read_exact(&mut hello).await.is_err() || s.write_all(&answer).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while let Ok(1..) = s.read(&mut buf).await {}
            });
        }
    });
}

/// Keeps `$APIVIP_BENCH_STORM_CONCURRENCY` connections to `$APIVIP_BENCH_TARGET` in
/// flight, each: connect, ClientHello, read the ServerHello, close with a reset. Each
/// line on stdin is answered with `COMPLETED FAILED SUM-NS FIRST-ERROR` (SUM-NS: the
/// completed connections' connect-to-answer times added up).
fn storm_client_main() {
    let target: SocketAddr = env_parse(TARGET_ENV).expect("storm-client: APIVIP_BENCH_TARGET");
    let concurrency: usize = env_parse(CONCURRENCY_ENV).unwrap_or(200).max(1);
    let threads: usize = env_parse(STORM_THREADS_ENV).unwrap_or(1).max(1);
    let rt = if threads == 1 {
        current_thread_runtime("storm-client")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("storm-client: runtime")
    };
    rt.block_on(async move {
        let completed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let sum_ns = Arc::new(AtomicU64::new(0));
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let hello: Arc<[u8]> = vec![0x16u8; CLIENT_HELLO_LEN].into();
        for _ in 0..concurrency {
            let (completed, failed, sum_ns, error, hello) = (
                Arc::clone(&completed),
                Arc::clone(&failed),
                Arc::clone(&sum_ns),
                Arc::clone(&error),
                Arc::clone(&hello),
            );
            tokio::spawn(async move {
                loop {
                    let start = Instant::now();
                    match one_hello(target, &hello).await {
                        Ok(()) => {
                            sum_ns.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            first_error(&error, e);
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            });
        }
        answer_stdin(|| {
            format!(
                "{} {} {} {}",
                completed.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
                sum_ns.load(Ordering::Relaxed),
                error.lock().expect("lock").as_deref().unwrap_or("-")
            )
        })
        .await;
    });
}

async fn one_hello(target: SocketAddr, hello: &[u8]) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(target),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out (5 s)"))??;
    // Closing sends a reset: no TIME_WAIT on this side's ephemeral ports.
    socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
    s.write_all(hello).await?;
    let mut answer = [0u8; SERVER_HELLO_LEN];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut answer))
        .await
        .map_err(|_| std::io::Error::other("no ServerHello within 5 s"))??;
    Ok(())
}

// ---------------------------------------------------------------------------
// Settings.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    Direct,
    Haproxy,
    Apivip,
}

impl Via {
    const ALL: [Via; 3] = [Via::Direct, Via::Haproxy, Via::Apivip];

    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Haproxy => "haproxy",
            Via::Apivip => "apivip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    Watch,
    Accept,
}

impl Workload {
    const ALL: [Workload; 2] = [Workload::Watch, Workload::Accept];

    fn name(self) -> &'static str {
        match self {
            Workload::Watch => "watch",
            Workload::Accept => "accept",
        }
    }
}

#[derive(Debug)]
struct Settings {
    fd_limit: u64,
    pin: bool,
    /// Threads of both proxies (HAProxy's may differ: `APIVIP_BENCH_HAPROXY_THREADS`).
    apivip_threads: usize,
    haproxy_threads: usize,
    rounds: usize,
    secs: u64,
    ns: Vec<usize>,
    event_secs: f64,
    /// How long after the last connection opened before the "open" RSS is read.
    settle: Duration,
    storm_concurrency: usize,
    storm_threads: usize,
    quiet_max: Duration,
    paths: Vec<Via>,
    workloads: Vec<Workload>,
}

impl Settings {
    fn load_cpus(&self) -> Option<&'static str> {
        self.pin.then_some("0")
    }

    fn proxy_cpus(&self) -> Option<&'static str> {
        self.pin.then_some("1")
    }

    /// CPUs `via`'s threads can run on at once: its threads, at most the CPUs it may
    /// use (1 pinned).
    fn proxy_cores(&self, via: Via) -> usize {
        let cpus = if self.pin {
            1
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        };
        match via {
            Via::Haproxy => self.haproxy_threads.min(cpus),
            Via::Apivip => self.apivip_threads.min(cpus),
            Via::Direct => 0,
        }
    }

    /// The largest N `via` can hold under the descriptor limit.
    fn max_conns(&self, via: Via) -> usize {
        let limit = self.fd_limit as usize;
        match via {
            // maxconn = N + 50 and 2 maxconn + 200 within the limit.
            Via::Haproxy => (limit.saturating_sub(200) / 2).saturating_sub(50),
            Via::Apivip => {
                apivip::proxy::descriptor_budget(
                    self.fd_limit,
                    apivip::config::FrontendKind::ALL.len(),
                )
                .connections
            }
            // The client process and the holder hold N each.
            Via::Direct => limit.saturating_sub(200),
        }
    }
}

fn env_list<T: Copy>(name: &str, all: &[T], key: impl Fn(T) -> &'static str) -> Vec<T> {
    match std::env::var(name) {
        Ok(list) => list
            .split(',')
            .filter_map(|p| all.iter().copied().find(|v| key(*v) == p.trim()))
            .collect(),
        Err(_) => all.to_vec(),
    }
}

fn settings(fd_limit: u64) -> Settings {
    let quick = env_flag("APIVIP_BENCH_QUICK");
    let pin = env_flag("APIVIP_BENCH_PIN");
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads: usize = env_parse("APIVIP_BENCH_THREADS").unwrap_or(if pin { 1 } else { cpus });
    let ns = std::env::var("APIVIP_BENCH_SCALE_NS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|x| x.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            if quick {
                vec![500, 1000]
            } else {
                vec![1000, 5000, 9800]
            }
        });
    Settings {
        fd_limit,
        pin,
        apivip_threads: threads.max(1),
        haproxy_threads: env_parse("APIVIP_BENCH_HAPROXY_THREADS")
            .unwrap_or(threads)
            .max(1),
        rounds: env_parse("APIVIP_BENCH_ROUNDS").unwrap_or(1).max(1),
        secs: env_parse("APIVIP_BENCH_SECS")
            .unwrap_or(if quick { 3 } else { 10 })
            .max(1),
        ns,
        event_secs: env_parse(EVENT_SECS_ENV)
            .filter(|s: &f64| *s > 0.0)
            .unwrap_or(10.0),
        settle: Duration::from_secs(if quick { 1 } else { 2 }),
        storm_concurrency: env_parse(CONCURRENCY_ENV).unwrap_or(200).max(1),
        storm_threads: env_parse(STORM_THREADS_ENV).unwrap_or(1).max(1),
        quiet_max: Duration::from_secs(
            env_parse("APIVIP_BENCH_QUIET_MAX_SECS").unwrap_or(if quick { 20 } else { 120 }),
        ),
        paths: env_list("APIVIP_BENCH_PATHS", &Via::ALL, Via::name),
        workloads: env_list("APIVIP_BENCH_WORKLOADS", &Workload::ALL, Workload::name),
    }
}

// ---------------------------------------------------------------------------
// Processes.

/// A re-executed client role, driven over its stdin and stdout.
struct Driven {
    proc: Proc,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Driven {
    fn start(name: &str, cmd: &mut Command, dir: &Path) -> Result<Driven, String> {
        let mut proc = Proc::spawn_with(name, cmd, dir, true)?;
        let stdin = proc.child.stdin.take();
        let stdout = proc.child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Driven { proc, stdin, lines })
    }

    fn line(&mut self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(_) => {
                self.proc.check_alive()?;
                Err(format!(
                    "{}: no answer within {} s",
                    self.proc.name,
                    timeout.as_secs()
                ))
            }
        }
    }

    /// Asks for the counters: the answer's fields.
    fn ask(&mut self) -> Result<Vec<String>, String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "?")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.proc.name))?;
        let l = self.line(Duration::from_secs(10))?;
        Ok(l.split_whitespace().map(str::to_owned).collect())
    }
}

fn num(fields: &[String], i: usize) -> Result<f64, String> {
    fields
        .get(i)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot parse field {i} of {fields:?}"))
}

/// The fields from `i` on, joined (an error message).
fn rest(fields: &[String], i: usize) -> String {
    fields.get(i..).map(|f| f.join(" ")).unwrap_or_default()
}

fn start_server(
    role: &str,
    s: &Settings,
    dir: &Path,
    tag: &str,
    envs: &[(&str, String)],
) -> Result<(Proc, SocketAddr), String> {
    let port = free_port();
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = command(me, s.load_cpus());
    cmd.env(ROLE_ENV, role).env(PORT_ENV, port.to_string());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn(&format!("{role}-{tag}"), &mut cmd, dir)?;
    wait_listening(port, &mut p)?;
    Ok((p, ([127, 0, 0, 1], port).into()))
}

fn haproxy_config(listen: u16, backend: SocketAddr, threads: usize, maxconn: usize) -> String {
    format!(
        "global\n    nbthread {threads}\n    maxconn {maxconn}\n\n\
         defaults\n    mode tcp\n    maxconn {maxconn}\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\n\
         frontend fe\n    bind 127.0.0.1:{listen}\n    default_backend be\n\n\
         backend be\n    server s1 {backend} check inter 1s\n",
    )
}

/// No per-source limits (every client here is 127.0.0.1; HAProxy has none by default).
fn apivip_config(listen: u16, backend: SocketAddr, maxconn: usize) -> String {
    format!(
        "backends:\n  - name: b1\n    address: {backend}\n\
         apiserver:\n  listen: 127.0.0.1:{listen}\n  max_connections: {maxconn}\n\
         \x20 per_source_max_connections: 0\n  per_source_rate: 0\n\
         \x20 check: {{kind: tcp, interval: 1s}}\n\
         admin: {{listen: '127.0.0.1:0'}}\n"
    )
}

/// Starts `via` in front of `backend` for up to `conns` connections; `None` for direct.
fn start_proxy(
    via: Via,
    backend: SocketAddr,
    conns: usize,
    haproxy: &Path,
    s: &Settings,
    dir: &Path,
    tag: &str,
) -> Result<(Option<Proc>, SocketAddr), String> {
    if via == Via::Direct {
        return Ok((None, backend));
    }
    let port = free_port();
    let name = format!("{}-{tag}", via.name());
    let mut proc = match via {
        Via::Haproxy => {
            let cfg = dir.join(format!("{name}.cfg"));
            let text = haproxy_config(port, backend, s.haproxy_threads, conns + 50);
            std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
            Proc::spawn(
                &name,
                command(haproxy, s.proxy_cpus())
                    .arg("-db")
                    .arg("-f")
                    .arg(&cfg),
                dir,
            )?
        }
        Via::Apivip => {
            let cfg = dir.join(format!("{name}.yaml"));
            let maxconn = (conns + 50).min(s.max_conns(Via::Apivip));
            std::fs::write(&cfg, apivip_config(port, backend, maxconn))
                .map_err(|e| e.to_string())?;
            Proc::spawn(
                &name,
                command(APIVIP, s.proxy_cpus())
                    .env("TOKIO_WORKER_THREADS", s.apivip_threads.to_string())
                    .env_remove("RUST_LOG")
                    .arg("run")
                    .arg("-c")
                    .arg(&cfg),
                dir,
            )?
        }
        Via::Direct => unreachable!(),
    };
    wait_listening(port, &mut proc)?;
    // Let the first health check mark the backend up in both proxies (1 s interval).
    std::thread::sleep(Duration::from_millis(1200));
    proc.check_alive()?;
    Ok((Some(proc), ([127, 0, 0, 1], port).into()))
}

fn client_command(role: &str, target: SocketAddr, s: &Settings) -> Result<Command, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = command(me, s.load_cpus());
    cmd.env(ROLE_ENV, role).env(TARGET_ENV, target.to_string());
    Ok(cmd)
}

/// Process CPU in seconds: (exact, from ticks).
struct Cpu {
    pid: u32,
    ns: Option<u64>,
    ticks: Option<u64>,
    start: Instant,
}

impl Cpu {
    fn start(pid: u32) -> Cpu {
        Cpu {
            pid,
            ns: cpu_ns(pid),
            ticks: cpu_ticks(pid),
            start: Instant::now(),
        }
    }

    /// (CPU seconds exact or else from ticks, CPU seconds from ticks, wall seconds).
    fn stop(&self, tck: f64) -> (f64, f64, f64) {
        let wall = self.start.elapsed().as_secs_f64();
        let ticks = match (self.ticks, cpu_ticks(self.pid)) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / tck,
            _ => f64::NAN,
        };
        let exact = match (self.ns, cpu_ns(self.pid)) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => ticks,
        };
        (exact, ticks, wall)
    }
}

// ---------------------------------------------------------------------------
// Workloads.

/// Named values of one measurement.
type Sample = Vec<(&'static str, f64)>;

fn waited_quiet(s: &Settings, tck: f64) {
    let waited = wait_quiet(tck, s.quiet_max);
    if waited > Duration::from_secs(5) {
        println!(
            "    (waited {:.0} s for other processes to calm down)",
            waited.as_secs_f64()
        );
    }
}

/// One `watch` measurement: `n` connections through a fresh `via` to a fresh holder.
fn run_watch(
    via: Via,
    n: usize,
    haproxy: &Path,
    s: &Settings,
    tck: f64,
    dir: &Path,
    tag: &str,
) -> Result<Sample, String> {
    waited_quiet(s, tck);
    let (holder, hold_addr) = start_server(
        "watch-holder",
        s,
        dir,
        tag,
        &[
            (N_ENV, n.to_string()),
            (EVENT_SECS_ENV, s.event_secs.to_string()),
        ],
    )?;
    let (proxy, addr) = start_proxy(via, hold_addr, n, haproxy, s, dir, tag)?;
    let mut proxy = proxy.ok_or("watch needs a proxy")?;
    let pid = proxy.pid();
    let rss0 = rss_kib(pid).ok_or("no VmRSS")?;
    let fds0 = fd_count(pid);
    let opened = Instant::now();
    let mut client = Driven::start(
        &format!("watch-client-{tag}"),
        client_command("watch-client", addr, s)?.env(N_ENV, n.to_string()),
        dir,
    )?;
    let open = client.line(Duration::from_secs(60 + n as u64 / 50))?;
    let open_secs = opened.elapsed().as_secs_f64();
    let f: Vec<&str> = open.splitn(4, ' ').collect();
    if f.first() != Some(&"open") || f.get(1).and_then(|v| v.parse::<usize>().ok()) != Some(n) {
        proxy.check_alive()?;
        return Err(format!(
            "not all {n} connections opened: {open}; proxy log:\n{}",
            proxy_common::tail(&proxy.log)
        ));
    }
    std::thread::sleep(s.settle);
    let rss_open = rss_kib(pid).ok_or("no VmRSS")?;
    let fds = fd_count(pid);
    if fds < 2 * n {
        return Err(format!(
            "the proxy holds {fds} descriptors, expected >= {}",
            2 * n
        ));
    }
    let load = OtherLoad::start(vec![pid, holder.pid(), client.proc.pid()]);
    let before = client.ask()?;
    let cpu = Cpu::start(pid);
    std::thread::sleep(Duration::from_secs(s.secs));
    let (cpu_s, cpu_ticks_s, wall) = cpu.stop(tck);
    let after = client.ask()?;
    let other = load.cores(tck);
    let rss_end = rss_kib(pid).ok_or("no VmRSS")?;
    let threads = status_field(pid, "Threads:").unwrap_or(0);
    proxy.check_alive()?;
    let events = num(&after, 0)? - num(&before, 0)?;
    let closed = num(&after, 1)?;
    if closed > 0.0 {
        return Err(format!("{closed} connection(s) closed during the trickle"));
    }
    // The proxy first (its connections end with it), then the client and the holder.
    drop(proxy);
    drop(client);
    drop(holder);
    let growth = rss_end as f64 - rss0 as f64;
    Ok(vec![
        ("conns", n as f64),
        ("open s", open_secs),
        ("RSS base KiB", rss0 as f64),
        ("RSS growth open KiB", rss_open as f64 - rss0 as f64),
        ("RSS growth KiB", growth),
        ("B per conn", growth * 1024.0 / n as f64),
        ("fds base", fds0 as f64),
        ("fds", fds as f64),
        ("threads", threads as f64),
        ("events/s", events / wall),
        ("CPU %", cpu_s / wall * 100.0),
        ("CPU % (ticks)", cpu_ticks_s / wall * 100.0),
        (
            "us per event",
            if events > 0.0 {
                cpu_s * 1e6 / events
            } else {
                f64::NAN
            },
        ),
        ("other load cores", other),
    ])
}

/// One `accept` measurement through a fresh `via` to the shared hello server.
#[allow(clippy::too_many_arguments)]
fn run_accept(
    via: Via,
    backend: SocketAddr,
    backend_pid: u32,
    haproxy: &Path,
    s: &Settings,
    tck: f64,
    dir: &Path,
    tag: &str,
) -> Result<Sample, String> {
    waited_quiet(s, tck);
    let conns = s.storm_concurrency * 2 + 100;
    let (mut proxy, addr) = start_proxy(via, backend, conns, haproxy, s, dir, tag)?;
    let mut client = Driven::start(
        &format!("storm-client-{tag}"),
        client_command("storm-client", addr, s)?
            .env(CONCURRENCY_ENV, s.storm_concurrency.to_string())
            .env(STORM_THREADS_ENV, s.storm_threads.to_string()),
        dir,
    )?;
    // Warm up: every connection slot in use, the proxy's buffers allocated.
    std::thread::sleep(Duration::from_secs(1));
    let mut pids = vec![backend_pid, client.proc.pid()];
    pids.extend(proxy.as_ref().map(Proc::pid));
    let load = OtherLoad::start(pids);
    let before = client.ask()?;
    let cpu = proxy.as_ref().map(|p| Cpu::start(p.pid()));
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(s.secs));
    let cpu = cpu.map(|c| c.stop(tck));
    let after = client.ask()?;
    let wall = start.elapsed().as_secs_f64();
    let other = load.cores(tck);
    if let Some(p) = proxy.as_mut() {
        p.check_alive()?;
    }
    drop(client);
    drop(proxy);
    let done = num(&after, 0)? - num(&before, 0)?;
    let failed = num(&after, 1)? - num(&before, 1)?;
    let sum_ns = num(&after, 2)? - num(&before, 2)?;
    if done <= 0.0 {
        return Err(format!(
            "no connection completed; client: {}",
            rest(&after, 3)
        ));
    }
    let mut sample: Sample = vec![
        ("conn/s", done / wall),
        ("failed/s", failed / wall),
        ("mean conn ms", sum_ns / done / 1e6),
    ];
    if failed > 0.0 {
        println!("    first client error: {}", rest(&after, 3));
    }
    if let Some((cpu_s, cpu_ticks_s, cpu_wall)) = cpu {
        sample.push(("proxy CPU cores", cpu_s / cpu_wall));
        sample.push(("proxy CPU cores (ticks)", cpu_ticks_s / cpu_wall));
        sample.push(("proxy us per conn", cpu_s * 1e6 / done));
    }
    sample.push(("other load cores", other));
    Ok(sample)
}

// ---------------------------------------------------------------------------
// Results.

/// (path, nominal N or 0 for `accept`) -> metric -> one value per round.
type Results = BTreeMap<(Via, usize), BTreeMap<&'static str, Vec<f64>>>;

fn get(r: &Results, via: Via, n: usize, m: &str) -> Option<f64> {
    r.get(&(via, n))
        .and_then(|ms| ms.get(m))
        .map(|v| median(v))
        .filter(|v| v.is_finite())
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), fmt_value)
}

/// Counts as integers, everything else by [`fmt_value`].
fn fmt_metric(metric: &str, v: f64) -> String {
    match metric {
        "conns" | "fds" | "fds base" | "threads" => format!("{v:.0}"),
        _ => fmt_value(v),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    }
}

fn print_line(via: Via, w: Workload, tag: &str, r: &Result<Sample, String>) {
    match r {
        Ok(sample) => {
            let line: Vec<String> = sample
                .iter()
                .map(|(k, v)| format!("{k} {}", fmt_metric(k, *v)))
                .collect();
            let noisy = sample
                .iter()
                .any(|(k, v)| *k == "other load cores" && *v > QUIET_CORES);
            println!(
                "  {:<8} {:<6} {tag}: {}{}",
                via.name(),
                w.name(),
                line.join(", "),
                if noisy { "  [NOISY]" } else { "" }
            );
        }
        Err(e) => println!("  {:<8} {:<6} {tag}: FAILED: {e}", via.name(), w.name()),
    }
}

/// The watch report: per N with the ratios, then the fits and their extrapolation to
/// [`FAR_N`].
fn report_watch(r: &Results, s: &Settings, proxies: &[Via]) {
    println!(
        "\n## Idle WATCH-like connections, a {EVENT_LEN}-byte event on each every {} s (medians over {} round(s))\n",
        s.event_secs, s.rounds
    );
    println!("| N | path | conns measured | RSS base MiB | RSS growth open MiB | RSS growth MiB | B/conn | fds | CPU % | CPU % (ticks) | us/event | events/s | other load |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &s.ns {
        for &via in proxies {
            let g = |m: &str| get(r, via, n, m);
            if g("conns").is_none() {
                println!("| {n} | {} | failed | | | | | | | | | | |", via.name());
                continue;
            }
            println!(
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                via.name(),
                g("conns").map_or("-".into(), |c| fmt_metric("conns", c)),
                show(g("RSS base KiB").map(|k| k / 1024.0)),
                show(g("RSS growth open KiB").map(|k| k / 1024.0)),
                show(g("RSS growth KiB").map(|k| k / 1024.0)),
                show(g("B per conn")),
                g("fds").map_or("-".into(), |c| fmt_metric("fds", c)),
                show(g("CPU %")),
                show(g("CPU % (ticks)")),
                show(g("us per event")),
                show(g("events/s")),
                show(g("other load cores")),
            );
        }
        if proxies.contains(&Via::Apivip) && proxies.contains(&Via::Haproxy) {
            let a = |m: &str| get(r, Via::Apivip, n, m);
            let h = |m: &str| get(r, Via::Haproxy, n, m);
            let same_n = a("conns") == h("conns");
            // CPU per connection when the two held different N.
            let per_conn = |g: &dyn Fn(&str) -> Option<f64>| Some(g("CPU %")? / g("conns")?);
            println!(
                "| {n} | apivip/haproxy | {} | {} | {} | {} | {} | {} | {} | | {} | {} | |",
                if same_n { "same N" } else { "N differs" },
                ratio(a("RSS base KiB"), h("RSS base KiB")),
                ratio(a("RSS growth open KiB"), h("RSS growth open KiB")),
                ratio(a("RSS growth KiB"), h("RSS growth KiB")),
                ratio(a("B per conn"), h("B per conn")),
                ratio(a("fds"), h("fds")),
                if same_n {
                    ratio(a("CPU %"), h("CPU %"))
                } else {
                    format!("{} per conn", ratio(per_conn(&a), per_conn(&h)))
                },
                ratio(a("us per event"), h("us per event")),
                ratio(a("events/s"), h("events/s")),
            );
        }
    }
    for &via in proxies {
        let measured: Vec<String> =
            s.ns.iter()
                .filter_map(|&n| {
                    let c = get(r, via, n, "conns")? as usize;
                    (c != n).then(|| format!("{n} -> {c}"))
                })
                .collect();
        if !measured.is_empty() {
            println!(
                "\n{} measured at fewer connections than asked ({}): its limit under RLIMIT_NOFILE {} is {} connections{}",
                via.name(),
                measured.join(", "),
                s.fd_limit,
                s.max_conns(via),
                match via {
                    Via::Apivip => " (its descriptor budget: (limit - 256 reserved - 2 x 256 pipes) / 2; beyond it apivip refuses clients, reason fd_budget)",
                    Via::Haproxy => " (maxconn = N + 50, 2 descriptors per connection + 200 spare)",
                    Via::Direct => "",
                }
            );
        }
    }

    println!(
        "\n### Least-squares fit over N (x: connections measured; RSS after the trickle window)\n"
    );
    println!("| path | points | B/conn (slope) | intercept KiB | RSS base MiB | RSS @100k MiB | CPU % per 1k conns (slope) | CPU intercept % | CPU % @100k | us/event (slope) | fds base | fds @100k | events/s @100k |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut fits = BTreeMap::new();
    for &via in proxies {
        let pts = |m: &str| -> Vec<(f64, f64)> {
            s.ns.iter()
                .filter_map(|&n| Some((get(r, via, n, "conns")?, get(r, via, n, m)?)))
                .collect()
        };
        let rss = pts("RSS growth KiB");
        let cpu = pts("CPU %");
        let (Some((rs, ri)), Some((cs, ci))) = (fit_line(&rss), fit_line(&cpu)) else {
            println!("| {} | 0 | | | | | | | | | | | |", via.name());
            continue;
        };
        let base_kib = median(
            &s.ns
                .iter()
                .filter_map(|&n| get(r, via, n, "RSS base KiB"))
                .collect::<Vec<_>>(),
        );
        let fds_base = median(
            &s.ns
                .iter()
                .filter_map(|&n| get(r, via, n, "fds base"))
                .collect::<Vec<_>>(),
        );
        // RSS in KiB: slope KiB per connection.
        let b_per_conn = rs * 1024.0;
        let rss_far = (base_kib + ri + rs * FAR_N) / 1024.0;
        let cpu_far = ci + cs * FAR_N;
        // Each connection brings 1/event_secs events a second.
        let us_per_event = cs / 100.0 * s.event_secs * 1e6;
        let fds_far = 2.0 * FAR_N + fds_base;
        fits.insert(via, (b_per_conn, rss_far, cpu_far, us_per_event, fds_far));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            via.name(),
            rss.len(),
            fmt_value(b_per_conn),
            fmt_value(ri),
            fmt_value(base_kib / 1024.0),
            fmt_value(rss_far),
            fmt_value(cs * 1000.0),
            fmt_value(ci),
            fmt_value(cpu_far),
            fmt_value(us_per_event),
            fmt_value(fds_base),
            fmt_value(fds_far),
            fmt_value(FAR_N / s.event_secs),
        );
    }
    if let (Some(a), Some(h)) = (fits.get(&Via::Apivip), fits.get(&Via::Haproxy)) {
        println!(
            "| apivip/haproxy | | {} | | | {} | | | {} | {} | | {} | |",
            ratio(Some(a.0), Some(h.0)),
            ratio(Some(a.1), Some(h.1)),
            ratio(Some(a.2), Some(h.2)),
            ratio(Some(a.3), Some(h.3)),
            ratio(Some(a.4), Some(h.4)),
        );
    }
}

fn report_accept(r: &Results, s: &Settings, paths: &[Via]) {
    println!(
        "\n## Accept rate: {} connections in flight, each connect + {CLIENT_HELLO_LEN} B ClientHello + {SERVER_HELLO_LEN} B ServerHello + reset (medians over {} round(s))\n",
        s.storm_concurrency, s.rounds
    );
    println!("| path | conn/s | failed/s | mean conn ms | proxy CPU cores | proxy CPU cores (ticks) | proxy us/conn | proxy CPU ceiling conn/s | bound by | other load |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    let mut client_bound = false;
    for &via in paths {
        let g = |m: &str| get(r, via, 0, m);
        let cores = s.proxy_cores(via) as f64;
        // Below 90 % of the cores its threads may use, the proxy waited for the client
        // or the backend (or lost its CPUs to other processes): they set the rate.
        let bound = match (via, g("proxy CPU cores")) {
            (Via::Direct, _) => "client + backend",
            (_, Some(c)) if c < 0.9 * cores => {
                client_bound = true;
                "not the proxy's CPU"
            }
            (_, Some(_)) => "proxy CPU",
            (_, None) => "-",
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {bound} | {} |",
            via.name(),
            show(g("conn/s")),
            show(g("failed/s")),
            show(g("mean conn ms")),
            show(g("proxy CPU cores")),
            show(g("proxy CPU cores (ticks)")),
            show(g("proxy us per conn")),
            show(ceiling(r, s, via)),
            show(g("other load cores")),
        );
    }
    if client_bound {
        println!(
            "\nA proxy used less CPU than its threads could: the client and the backend (direct shows \
             their limit) or other processes (other load) bound the rate, so conn/s ratios understate \
             the proxies' difference; proxy us/conn \
             and the CPU ceiling (1e6 / us per conn x the cores its threads may use) compare the proxies. \
             APIVIP_BENCH_PIN=1 gives the proxy a CPU of its own."
        );
    }
    let g = |via: Via, m: &str| get(r, via, 0, m);
    println!(
        "\napivip/haproxy: conn/s {}, mean conn time {}, proxy us/conn {}; apivip/direct conn/s {}, haproxy/direct conn/s {}",
        ratio(g(Via::Apivip, "conn/s"), g(Via::Haproxy, "conn/s")),
        ratio(g(Via::Apivip, "mean conn ms"), g(Via::Haproxy, "mean conn ms")),
        ratio(
            g(Via::Apivip, "proxy us per conn"),
            g(Via::Haproxy, "proxy us per conn")
        ),
        ratio(g(Via::Apivip, "conn/s"), g(Via::Direct, "conn/s")),
        ratio(g(Via::Haproxy, "conn/s"), g(Via::Direct, "conn/s")),
    );
}

/// The connections a second `via` could accept on the cores its threads may use, at
/// the CPU per connection measured: 1e6 / us per conn x cores.
fn ceiling(r: &Results, s: &Settings, via: Via) -> Option<f64> {
    let us = get(r, via, 0, "proxy us per conn").filter(|u| *u > 0.0)?;
    Some(1e6 / us * s.proxy_cores(via) as f64)
}

/// What 100,000 connections would take, from the fits and the accept rate.
fn report_far(r: &Results, s: &Settings, proxies: &[Via]) {
    let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\n## At {} connections ({} events/s at one event per connection every {} s)\n",
        FAR_N,
        FAR_N / s.event_secs,
        s.event_secs
    );
    println!(
        "  this machine: MemTotal {} MiB, {cpus} CPUs, RLIMIT_NOFILE {} (fs.nr_open {})",
        mem_total_mib.map_or("?".into(), fmt_value),
        s.fd_limit,
        nr_open.map_or("?".into(), |v| v.to_string())
    );
    for &via in proxies {
        let pts = |m: &str| -> Vec<(f64, f64)> {
            s.ns.iter()
                .filter_map(|&n| Some((get(r, via, n, "conns")?, get(r, via, n, m)?)))
                .collect()
        };
        let mut parts = Vec::new();
        if let (Some((rs, ri)), Some(base)) = (
            fit_line(&pts("RSS growth KiB")),
            s.ns.iter().find_map(|&n| get(r, via, n, "RSS base KiB")),
        ) {
            parts.push(format!(
                "memory {} MiB",
                fmt_value((base + ri + rs * FAR_N) / 1024.0)
            ));
        }
        let fds = match via {
            // The smallest limit whose budget holds FAR_N.
            Via::Apivip => {
                let (mut lo, mut hi) = (1u64, 1u64 << 24);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if apivip::proxy::descriptor_budget(
                        mid,
                        apivip::config::FrontendKind::ALL.len(),
                    )
                    .connections as f64
                        >= FAR_N
                    {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                Some(lo as f64)
            }
            _ => {
                s.ns.iter()
                    .find_map(|&n| get(r, via, n, "fds base"))
                    .map(|b| 2.0 * FAR_N + b)
            }
        };
        if let Some(fds) = fds {
            parts.push(format!(
                "descriptors: needs RLIMIT_NOFILE >= {} ({})",
                fmt_value(fds),
                if fds <= s.fd_limit as f64 {
                    "have it"
                } else {
                    "this machine's limit is lower"
                }
            ));
        }
        if let Some((cs, ci)) = fit_line(&pts("CPU %")) {
            parts.push(format!(
                "CPU {} % of one core for the trickle",
                fmt_value(ci + cs * FAR_N)
            ));
        }
        if let Some(rate) = get(r, via, 0, "conn/s") {
            parts.push(format!(
                "all reconnecting: {} s at the accept rate measured",
                fmt_value(FAR_N / rate)
            ));
        }
        if let Some(c) = ceiling(r, s, via) {
            parts.push(format!(
                "{} s at its CPU ceiling ({} conn/s on {} core(s))",
                fmt_value(FAR_N / c),
                fmt_value(c),
                s.proxy_cores(via)
            ));
        }
        println!("  {}: {}", via.name(), parts.join("; "));
    }
}

// ---------------------------------------------------------------------------

fn bench_main() {
    let require = env_flag("APIVIP_REQUIRE_NETNS");
    let Some(haproxy) = which("haproxy") else {
        let why = "scale: skipped: haproxy is not installed (apt-get install haproxy)";
        if require {
            panic!("{why}, and APIVIP_REQUIRE_NETNS=1 forbids skipping");
        }
        println!("{why}");
        return;
    };
    let fd_limit = raise_fd_limit();
    let s = settings(fd_limit);
    let tck = clk_tck();
    let dir = tempfile::Builder::new()
        .prefix("apivip-bench-scale-")
        .tempdir()
        .expect("a temp dir");
    let sysctl = |k: &str| {
        std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join("-"))
            .unwrap_or_else(|_| "?".into())
    };
    println!(
        "scale: {} round(s), {} s windows, N = {:?}, an event every {} s per connection, RLIMIT_NOFILE {fd_limit}",
        s.rounds, s.secs, s.ns, s.event_secs
    );
    println!(
        "  cpus: {}; kernel {}; net.ipv4.tcp_tw_reuse {}, ip_local_port_range {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sysctl("kernel.osrelease"),
        sysctl("net.ipv4.tcp_tw_reuse"),
        sysctl("net.ipv4.ip_local_port_range"),
    );
    println!("  {}", version_line(&haproxy, &["-v"]));
    println!("  {}", version_line(Path::new(APIVIP), &["version"]));
    println!(
        "  HAProxy nbthread {}; apivip TOKIO_WORKER_THREADS={}; most connections: haproxy {}, apivip {}",
        s.haproxy_threads,
        s.apivip_threads,
        s.max_conns(Via::Haproxy),
        s.max_conns(Via::Apivip)
    );
    println!("  apivip: per_source_max_connections 0 and per_source_rate 0 (no per-source limits; every client is 127.0.0.1)");
    println!(
        "  accept: {} in flight, storm client on {} thread(s), closes with SO_LINGER 0 (reset), all from 127.0.0.1",
        s.storm_concurrency, s.storm_threads
    );
    if s.pin {
        println!("  pinned: proxies on CPU 1; holder, backend and clients on CPU 0");
    } else {
        println!("  not pinned: proxies, backends and clients share every CPU");
    }

    let proxies: Vec<Via> = s
        .paths
        .iter()
        .copied()
        .filter(|v| *v != Via::Direct)
        .collect();
    let mut results: Results = BTreeMap::new();
    let mut failures = Vec::new();
    let mut record = |via: Via, n: usize, w: Workload, tag: &str, r: Result<Sample, String>| {
        print_line(via, w, tag, &r);
        match r {
            Ok(sample) => {
                let e = results.entry((via, n)).or_default();
                for (k, v) in sample {
                    e.entry(k).or_default().push(v);
                }
            }
            Err(e) => failures.push(format!("{} {} {tag}: {e}", via.name(), w.name())),
        }
    };
    for round in 0..s.rounds {
        println!("\nround {}", round + 1);
        for &w in &s.workloads {
            match w {
                Workload::Watch => {
                    for &n in &s.ns {
                        let mut order = proxies.clone();
                        let len = order.len().max(1);
                        order.rotate_left(round % len);
                        for &via in &order {
                            let conns = n.min(s.max_conns(via));
                            let tag = format!("r{}-n{n}", round + 1);
                            let r = run_watch(via, conns, &haproxy, &s, tck, dir.path(), &tag);
                            record(via, n, w, &tag, r);
                        }
                    }
                }
                Workload::Accept => {
                    let tag = format!("r{}", round + 1);
                    let server = start_server("hello-server", &s, dir.path(), &tag, &[]);
                    let (server, addr) = match server {
                        Ok(x) => x,
                        Err(e) => {
                            for &via in &s.paths {
                                record(via, 0, w, &tag, Err(e.clone()));
                            }
                            continue;
                        }
                    };
                    let mut order = s.paths.clone();
                    let len = order.len().max(1);
                    order.rotate_left(round % len);
                    for &via in &order {
                        let r = run_accept(
                            via,
                            addr,
                            server.pid(),
                            &haproxy,
                            &s,
                            tck,
                            dir.path(),
                            &tag,
                        );
                        record(via, 0, w, &tag, r);
                    }
                    drop(server);
                }
            }
        }
    }
    if s.workloads.contains(&Workload::Watch) {
        report_watch(&results, &s, &proxies);
    }
    if s.workloads.contains(&Workload::Accept) {
        report_accept(&results, &s, &s.paths);
    }
    report_far(&results, &s, &proxies);
    if !failures.is_empty() {
        println!("\n{} measurement(s) failed:", failures.len());
        for f in &failures {
            println!("  {f}");
        }
        if require {
            panic!("scale: measurements failed");
        }
    }
}
