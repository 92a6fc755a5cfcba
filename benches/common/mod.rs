//! Shared by the VRRP benches (`failover_compare`, `vrrp_faults`), included by each as
//! `#[path = "common/mod.rs"] mod common;` beside `tests/support` (`mod support;` at the
//! bench's root, whose topology helper, processes and log tails this builds on).
//!
//! - the topology both benches use: master 0 (priority 150) and master 1 (priority 100)
//!   with the VIP 198.18.0.5/24 on VRID 51, and a TCP acceptor on each master (this
//!   binary re-executed, [`run_role`], [`spawn_acceptors`]);
//! - [`Pair`]: the two masters' daemons (apivip or keepalived, [`start_keepalived`]) on
//!   one topology: who holds the VIP, waiting until master 0 holds it steadily, logs;
//! - [`Client`]: a thread in the client namespace starting a TCP connect to the VIP at a
//!   fixed period, every attempt recorded;
//! - CPU time of a process tree ([`tree_cpu`]) from schedstat and from utime + stime;
//! - the run's header (versions, kernel), environment knobs and report formatting.
#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::support::netns::{Node, NsProcess, Topology};
use crate::support::vrrp::tail;

/// The apivip binary of this build.
pub const APIVIP: &str = env!("CARGO_BIN_EXE_apivip");
/// Set to `acceptor` when this binary is re-executed as a master's TCP acceptor.
pub const ROLE_ENV: &str = "APIVIP_BENCH_ROLE";
/// The address the acceptor listens on.
pub const LISTEN_ENV: &str = "APIVIP_BENCH_LISTEN";
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
/// The port clients connect to on the VIP.
pub const PORT: u16 = 8443;
pub const VRID: u8 = 51;
/// Master 0 holds the VIP, master 1 is its backup.
pub const PRIORITIES: [u8; 2] = [150, 100];
/// Every client connect gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------
// The acceptor role: this binary re-executed in a master namespace.

/// When this process was started as an acceptor (`APIVIP_BENCH_ROLE=acceptor`): accepts
/// on `$APIVIP_BENCH_LISTEN` and closes every connection at once, forever. Returns false
/// otherwise (the bench itself runs).
pub fn run_role() -> bool {
    if std::env::var(ROLE_ENV).as_deref() != Ok("acceptor") {
        return false;
    }
    let addr: SocketAddr = std::env::var(LISTEN_ENV)
        .expect("APIVIP_BENCH_LISTEN")
        .parse()
        .expect("APIVIP_BENCH_LISTEN is an address");
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    println!("acceptor listening on {addr}");
    for conn in listener.incoming() {
        drop(conn);
    }
    true
}

/// What every VRRP bench does first: runs the acceptor role when re-executed as one,
/// answers `--list` (`cargo bench -- --list`, `cargo test --benches` probing: nothing to
/// list), and checks for root and keepalived (skip, or fail with
/// `APIVIP_REQUIRE_NETNS=1`). Returns keepalived's path when the bench should run.
pub fn prelude(name: &str) -> Option<std::path::PathBuf> {
    if run_role() || std::env::args().any(|a| a == "--list") {
        return None;
    }
    if !crate::support::require_root(name) {
        return None;
    }
    crate::support::require_bin(name, "keepalived")
}

/// An acceptor on each master of `topo`, listening on `listen(master)`, logging to
/// `dir/acceptor-I.log`; returns once each listens.
pub fn spawn_acceptors(
    topo: &Topology,
    dir: &Path,
    listen: impl Fn(&Node) -> SocketAddr,
) -> Result<Vec<NsProcess>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut acceptors = Vec::new();
    for (i, m) in topo.masters().iter().enumerate() {
        let mut cmd = m.command(&exe);
        cmd.env(ROLE_ENV, "acceptor")
            .env(LISTEN_ENV, listen(m).to_string());
        let p = m
            .spawn_command(cmd, &dir.join(format!("acceptor-{i}.log")))
            .map_err(|e| format!("acceptor {i}: {e}"))?;
        if !p.wait_for_log("listening", Duration::from_secs(10)) {
            return Err(format!("acceptor {i} did not start: {}", p.log()));
        }
        acceptors.push(p);
    }
    Ok(acceptors)
}

// ---------------------------------------------------------------------------
// The daemons

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Keepalived,
    Apivip,
    /// `APIVIP_BENCH_BEFORE_BIN` of `failover_compare`: another build of apivip.
    ApivipBefore,
}

impl Daemon {
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Keepalived => "keepalived",
            Daemon::Apivip => "apivip",
            Daemon::ApivipBefore => "apivip-before",
        }
    }
}

/// keepalived for master `i` of `topo` at `interval`, VRRPv3 multicast, alone in the
/// foreground with its own pid files (`-n -l -D -p -r -c -b`), config and log in `dir`.
pub fn start_keepalived(
    keepalived: &Path,
    topo: &Topology,
    dir: &Path,
    i: usize,
    interval: Duration,
) -> Result<NsProcess, String> {
    let m = topo.master(i);
    let state = if i == 0 { "MASTER" } else { "BACKUP" };
    let conf = dir.join(format!("keepalived-{i}.conf"));
    let text = format!(
        "global_defs {{\n  router_id bench{i}\n  vrrp_version 3\n}}\n\nvrrp_instance VI_1 {{\n  state {state}\n  interface {}\n  virtual_router_id {VRID}\n  priority {}\n  advert_int {}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
        m.ifname,
        PRIORITIES[i],
        interval.as_secs_f64()
    );
    std::fs::write(&conf, text).map_err(|e| e.to_string())?;
    let mut cmd = m.command(keepalived);
    cmd.args(["-n", "-l", "-D", "-f"]).arg(&conf);
    for (flag, n) in [
        ("-p", "main"),
        ("-r", "vrrp"),
        ("-c", "checkers"),
        ("-b", "bfd"),
    ] {
        cmd.arg(flag)
            .arg(dir.join(format!("keepalived-{i}-{n}.pid")));
    }
    m.spawn_command(cmd, &dir.join(format!("keepalived-{i}.log")))
        .map_err(|e| format!("keepalived {i}: {e}"))
}

// ---------------------------------------------------------------------------
// A pair of masters

/// Two masters on a fresh topology, each with its daemon (and whatever else the bench
/// runs there).
pub struct Pair {
    pub daemon: Daemon,
    pub interval: Duration,
    /// Per master: the VRRP daemon.
    pub daemons: Vec<NsProcess>,
    /// Per master, when the daemon does not listen itself (keepalived in
    /// `failover_compare`): the `apivip run` proxy beside it.
    pub listeners: Vec<NsProcess>,
    pub acceptors: Vec<NsProcess>,
    // Dropped after the processes (declaration order): kills leftovers, deletes the
    // namespaces.
    pub topo: Topology,
    pub dir: tempfile::TempDir,
}

impl Pair {
    /// A temp dir named `prefix...` and a fresh topology of two masters and a client.
    pub fn scratch(prefix: &str) -> Result<(tempfile::TempDir, Topology), String> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| e.to_string())?;
        let topo = Topology::new(2).map_err(|e| format!("topology: {e}"))?;
        Ok((dir, topo))
    }

    /// Which masters hold the VIP.
    pub fn holders(&self) -> Vec<usize> {
        self.topo.holders_of(VIP.into()).unwrap_or_default()
    }

    /// Waits until master 0 alone holds the VIP (and, with a client, the client has
    /// connected for 300 ms without a failure), then three more intervals (plus 200 ms)
    /// so the backup has heard the master.
    pub fn wait_steady(&self, client: Option<&Client>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30) + self.interval * 10;
        loop {
            if self.holders() == [0]
                && client.is_none_or(|c| c.clean_for(Duration::from_millis(300)))
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "master 0 never held the VIP steadily (holders {:?})\n{}",
                    self.holders(),
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(self.interval * 3 + Duration::from_millis(200));
        match self.holders().as_slice() {
            [0] => Ok(()),
            h => Err(format!("holders changed to {h:?}\n{}", self.logs())),
        }
    }

    /// Signals master `i`'s daemon and everything in its process group (keepalived's
    /// parent and its VRRP child).
    pub fn signal(&self, i: usize, sig: Signal) -> Result<(), String> {
        let pid = i32::try_from(self.daemons[i].pid()).map_err(|e| e.to_string())?;
        nix::sys::signal::killpg(Pid::from_raw(pid), sig).map_err(|e| format!("{sig}: {e}"))
    }

    /// The tails of the daemons' (and listeners') logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, p) in self.daemons.iter().enumerate() {
            out += &format!("--- {} {i}\n{}\n", self.daemon.name(), tail(&p.log(), 40));
        }
        for (i, p) in self.listeners.iter().enumerate() {
            out += &format!("--- proxy {i}\n{}\n", tail(&p.log(), 10));
        }
        out
    }

    /// Ends the pair; with `keep_logs`, keeps its temp dir and says where.
    pub fn keep(self, keep_logs: bool, what: &str) {
        if keep_logs {
            let path = self.dir.keep();
            eprintln!("  [{what}] logs kept in {}", path.display());
        }
    }
}

// ---------------------------------------------------------------------------
// The client

#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    pub start: Instant,
    pub end: Instant,
    pub ok: bool,
    /// Why it failed: `timeout`, or the connect error's kind.
    pub error: Option<&'static str>,
}

/// A thread in the client namespace starting a TCP connect to `VIP:PORT` every period
/// (each with [`CONNECT_TIMEOUT`], closed with RST when it connects), until dropped or
/// finished.
pub struct Client {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl Client {
    pub fn start(client: &Node, every: Duration) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::with_capacity(16_384)));
        let (stop2, attempts2) = (stop.clone(), attempts.clone());
        let node = client.clone();
        let thread = std::thread::spawn(move || {
            node.run_in(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(client_loop(stop2, attempts2, every));
                Ok(())
            })
            .map_err(|e| format!("client namespace: {e}"))?
        });
        Client {
            stop,
            attempts,
            thread: Some(thread),
        }
    }

    /// Every attempt that has ended so far.
    pub fn snapshot(&self) -> Vec<Attempt> {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether at least 10 connects ended in the last `span`, all of them successful,
    /// and the client has been connecting for at least that long.
    pub fn clean_for(&self, span: Duration) -> bool {
        let now = Instant::now();
        let a = self.snapshot();
        if a.first().is_none_or(|f| now.duration_since(f.start) < span) {
            return false;
        }
        let recent: Vec<&Attempt> = a
            .iter()
            .filter(|x| now.duration_since(x.end) <= span)
            .collect();
        recent.len() >= 10 && recent.iter().all(|x| x.ok)
    }

    /// The first successful connect that started at or after `after`, waiting up to
    /// `timeout` for it.
    pub fn wait_success_after(&self, after: Instant, timeout: Duration) -> Option<Attempt> {
        let first = |a: Vec<Attempt>| {
            a.into_iter()
                .filter(|a| a.ok && a.start >= after)
                .min_by_key(|a| a.end)
        };
        let deadline = Instant::now() + timeout;
        loop {
            if first(self.snapshot()).is_some() {
                // Later-started connects can end earlier: let in-flight ones finish.
                std::thread::sleep(CONNECT_TIMEOUT + Duration::from_millis(10));
                return first(self.snapshot());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the client and returns every attempt (an error if its thread failed).
    pub fn finish(mut self) -> Result<Vec<Attempt>, String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| "client thread panicked".to_owned())??;
        }
        Ok(self.snapshot())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn client_loop(stop: Arc<AtomicBool>, attempts: Arc<Mutex<Vec<Attempt>>>, every: Duration) {
    let target = SocketAddr::from((VIP, PORT));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        let attempts = attempts.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let r =
                tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target)).await;
            let end = Instant::now();
            let ok = matches!(r, Ok(Ok(_)));
            let error = match &r {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => "refused",
                    std::io::ErrorKind::ConnectionReset => "reset",
                    std::io::ErrorKind::HostUnreachable => "host unreachable",
                    std::io::ErrorKind::NetworkUnreachable => "network unreachable",
                    _ => "other error",
                }),
                Err(_) => Some("timeout"),
            };
            if let Ok(Ok(stream)) = r {
                // RST on close: no TIME_WAIT, no lingering connection through a proxy.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            attempts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Attempt {
                    start,
                    end,
                    ok,
                    error,
                });
        });
    }
    // Let the connects in flight end.
    tokio::time::sleep(CONNECT_TIMEOUT + Duration::from_millis(20)).await;
}

// ---------------------------------------------------------------------------
// CPU time

/// `root` and all its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut procs = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // Field 4 of /proc/PID/stat.
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                procs.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut k = 0;
    while k < tree.len() {
        let p = tree[k];
        for &(pid, ppid) in &procs {
            if ppid == p && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
        k += 1;
    }
    tree
}

/// The fields of /proc/PID/stat after the command name (which may contain spaces),
/// field 3 (state) first.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Nanoseconds on a CPU of every thread of `pid`, from /proc/PID/task/*/schedstat (the
/// scheduler's own clock, exact; utime + stime in /proc/PID/stat are sampled at the
/// timer tick, which for a daemon waking 100 times a second on a timer is biased by
/// where its wakeups fall against the tick).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid)
        .map(|f| {
            [11, 12]
                .iter()
                .filter_map(|&i| f.get(i)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// (schedstat ns, utime + stime ticks) of `root` and all its descendants.
pub fn tree_cpu(root: u32) -> (u64, u64) {
    tree(root)
        .into_iter()
        .map(|p| (cpu_ns(p), cpu_ticks(p)))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

// ---------------------------------------------------------------------------
// Header, knobs, report

/// The first line `bin arg` prints (stdout, then stderr).
pub fn version(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .output()
        .map(|o| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            text.lines().next().unwrap_or_default().trim().to_owned()
        })
        .unwrap_or_default()
}

/// The running kernel's release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// `$key` as a number, `default` when unset or not a number.
pub fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// `$key` (or `default`) split at commas, trimmed, empty items left out.
pub fn env_list(key: &str, default: &str) -> Vec<String> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `$key` (or `default`) as a list of milliseconds.
pub fn env_intervals(key: &str, default: &str) -> Vec<Duration> {
    env_list(key, default)
        .iter()
        .filter_map(|s| s.parse().ok())
        .map(Duration::from_millis)
        .collect()
}

/// Whether `$APIVIP_BENCH_KEEP_LOGS` is `1`.
pub fn keep_logs() -> bool {
    std::env::var("APIVIP_BENCH_KEEP_LOGS").is_ok_and(|v| v == "1")
}

/// The lower median (for an even count).
pub fn median<T: Copy + Ord>(v: &[T]) -> Option<T> {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len().saturating_sub(1) / 2).copied()
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn fmt_interval(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
