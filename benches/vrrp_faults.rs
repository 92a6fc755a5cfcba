//! VRRP under faults (issue 11): an apivip pair and a keepalived pair on the same
//! topology (two masters and a client in network namespaces, `tests/support/netns.rs`;
//! the pair, client, keepalived and CPU helpers shared with `failover_compare` are in
//! `benches/common/mod.rs`), in the same run, compared as ratios. Root only; `BENCHMARKS.md` ("VRRP under faults")
//! records a run.
//!
//! Per daemon and run, a fresh topology: master 0 (priority 150) holds the VIP
//! 198.18.0.5, master 1 (priority 100, preempting) is its backup, VRRPv3 multicast, the
//! same priorities and interval for both daemons. Each master runs a tiny TCP acceptor on
//! `0.0.0.0:8443` (this binary re-executed, role `acceptor`), so a connect to
//! `VIP:8443` succeeds only on a node that holds the VIP. apivip runs VIP-only (no proxy,
//! `track: backend:self`, a TCP check of its own acceptor every second); keepalived runs
//! alone. The client namespace starts a TCP connect to `VIP:8443` every 5 ms (timeout
//! 50 ms).
//!
//! Scenarios (`APIVIP_BENCH_SCENARIOS`, default `split,partition,flood,cpu`):
//! - **split**: SIGSTOP of master 0's daemon (its process group: keepalived's parent and
//!   VRRP child) until master 1 holds the VIP and the client has connected to it for
//!   300 ms, then SIGCONT. Figures from SIGCONT: **recovery**, until the end of the first
//!   successful connect after the last failed one (0 if none failed); the **failed**
//!   connects; **one holder**, until master 0 alone holds the VIP.
//! - **partition**: an nftables rule on the bridge drops IP protocol 112 between all
//!   ports (the data path stays up) until both masters hold the VIP and the client has
//!   connected to master 1 for 300 ms; then the rule goes. The same figures from the heal.
//! - **flood**: at 100 ms adverts, the client namespace sends protocol 112 datagrams to
//!   224.0.0.18 at a stepped rate for `APIVIP_BENCH_FLOOD_SECS` each step: `invalid`
//!   (alternately another VRID and our VRID with a wrong checksum) or `lower` (valid
//!   adverts of our VRID and VIP, priority 50, from the client's address). Figure: the
//!   highest rate at which the backup never took over (no VIP seen on master 1, no
//!   transition to master in its log) and master 0 kept the VIP. Steps stop at the first
//!   failure; `max` is as fast as one sending thread goes (the rate reached is printed).
//! - **cpu**: both pairs at 10 ms adverts, side by side, no client, for
//!   `APIVIP_BENCH_CPU_SECS`: CPU time of each daemon's process tree, from
//!   `/proc/PID/task/*/schedstat` (exact) and from utime + stime in `/proc/PID/stat`
//!   (clock ticks), scaled to CPU seconds per 60 s.
//!
//! Knobs: `APIVIP_BENCH_RUNS` (10), `APIVIP_BENCH_INTERVALS` (`100,1000`, ms, for split
//! and partition), `APIVIP_BENCH_FLOOD_RATES` (`10,100,1000,5000,20000,50000,max` per second),
//! `APIVIP_BENCH_FLOOD_SECS` (10), `APIVIP_BENCH_CPU_SECS` (30), `APIVIP_BENCH_KEEP_LOGS=1`,
//! `APIVIP_REQUIRE_NETNS=1` (missing root, keepalived or nft fails instead of skipping).

#[path = "common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apivip::vrrp::io::socket::{Delivery, VrrpSocket};
use apivip::vrrp::packet::{AddrList, AdvertV3, Checksum, IpPair, Packet, Repr, VirtualAddrs};
use apivip::vrrp::units::{Centisecs, Priority, Vrid};
use common::{
    env_intervals, env_list, env_num, fmt_interval, median, ms, Attempt, Client, Daemon, Pair,
    APIVIP, CONNECT_TIMEOUT, PORT, PRIORITIES, VIP, VRID,
};
use nix::sys::signal::Signal;
use support::netns::{Node, Topology};

const CONNECT_EVERY: Duration = Duration::from_millis(5);
/// How long the client must connect without a failure to count as recovered.
const CLEAN: Duration = Duration::from_secs(1);
const NAME: &str = "vrrp_faults";

fn main() {
    let Some(keepalived) = common::prelude(NAME) else {
        return;
    };
    if support::require_bin(NAME, "nft").is_none() {
        return;
    }
    let cfg = Cfg::from_env(keepalived);
    cfg.print_header();
    let mut recoveries = Vec::new();
    for scenario in ["split", "partition"] {
        if !cfg.has(scenario) {
            continue;
        }
        for &interval in &cfg.intervals {
            for daemon in [Daemon::Keepalived, Daemon::Apivip] {
                let mut row = RecoveryRow {
                    scenario,
                    daemon,
                    interval,
                    runs: Vec::new(),
                    errors: 0,
                };
                for run in 0..cfg.runs {
                    match recovery_run(&cfg, scenario, daemon, interval) {
                        Ok(r) => {
                            eprintln!(
                                "  {scenario} {} {} run {run}: recovery {}, {} failed, one holder after {}",
                                daemon.name(),
                                fmt_interval(interval),
                                ms(r.recovery),
                                r.failed,
                                r.one_holder.map_or("-".into(), ms)
                            );
                            row.runs.push(r);
                        }
                        Err(e) => {
                            eprintln!(
                                "  {scenario} {} {} run {run} FAILED: {e}",
                                daemon.name(),
                                fmt_interval(interval)
                            );
                            row.errors += 1;
                        }
                    }
                }
                recoveries.push(row);
            }
        }
    }
    let mut floods = Vec::new();
    if cfg.has("flood") {
        for kind in [FloodKind::Invalid, FloodKind::Lower] {
            for daemon in [Daemon::Keepalived, Daemon::Apivip] {
                floods.push(flood_steps(&cfg, daemon, kind));
            }
        }
    }
    let cpu = if cfg.has("cpu") {
        cpu_run(&cfg)
            .map_err(|e| eprintln!("  cpu FAILED: {e}"))
            .ok()
    } else {
        None
    };
    print_report(&recoveries, &floods, cpu.as_ref(), cfg.cpu_secs);
}

// ---------------------------------------------------------------------------
// Configuration

struct Cfg {
    keepalived: PathBuf,
    scenarios: Vec<String>,
    runs: usize,
    intervals: Vec<Duration>,
    flood_rates: Vec<Option<u64>>,
    flood_secs: u64,
    cpu_secs: u64,
    keep_logs: bool,
}

impl Cfg {
    fn from_env(keepalived: PathBuf) -> Cfg {
        Cfg {
            keepalived,
            scenarios: env_list("APIVIP_BENCH_SCENARIOS", "split,partition,flood,cpu"),
            runs: env_num("APIVIP_BENCH_RUNS", 10) as usize,
            intervals: env_intervals("APIVIP_BENCH_INTERVALS", "100,1000"),
            flood_rates: env_list(
                "APIVIP_BENCH_FLOOD_RATES",
                "10,100,1000,5000,20000,50000,max",
            )
            .iter()
            .map(|s| s.parse().ok())
            .collect(),
            flood_secs: env_num("APIVIP_BENCH_FLOOD_SECS", 10),
            cpu_secs: env_num("APIVIP_BENCH_CPU_SECS", 30),
            keep_logs: common::keep_logs(),
        }
    }

    fn has(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }

    fn print_header(&self) {
        println!("# VRRP under faults");
        println!(
            "- {}; {}; kernel {}",
            common::version(&self.keepalived, "--version"),
            common::version(Path::new(APIVIP), "version"),
            common::kernel()
        );
        println!(
            "- scenarios {}, runs {}, intervals {}, flood rates {} for {} s each, cpu {} s; client: a TCP connect to {VIP}:{PORT} every {} ms, timeout {} ms",
            self.scenarios.join(","),
            self.runs,
            self.intervals.iter().map(|d| fmt_interval(*d)).collect::<Vec<_>>().join(","),
            self.flood_rates
                .iter()
                .map(|r| r.map_or("max".into(), |r| r.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            self.flood_secs,
            self.cpu_secs,
            CONNECT_EVERY.as_millis(),
            CONNECT_TIMEOUT.as_millis()
        );
    }
}

// ---------------------------------------------------------------------------
// A pair of masters

/// Master 0 and 1 of a fresh topology: an acceptor on `0.0.0.0:8443` and the daemon on
/// each.
fn start_pair(cfg: &Cfg, daemon: Daemon, interval: Duration) -> Result<Pair, String> {
    let (dir, topo) = Pair::scratch("apivip-faults-")?;
    let d = dir.path();
    let acceptors = common::spawn_acceptors(&topo, d, |_| {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT))
    })?;
    let mut daemons = Vec::new();
    for (i, prio) in PRIORITIES.into_iter().enumerate() {
        let m = topo.master(i);
        let p = match daemon {
            Daemon::Apivip | Daemon::ApivipBefore => {
                let conf = d.join(format!("apivip-{i}.yaml"));
                let text = format!(
                    "backends:\n  - {{name: self, address: '{ip}:{PORT}'}}\napiserver:\n  listen: []\n  check: {{kind: tcp, interval: 1s, timeout: 500ms}}\nvrrp:\n  interface: {ifname}\n  address: {ip}\n  vrid: {VRID}\n  version: 3\n  priority: {prio}\n  advert_interval: {iv}ms\n  vips: [{VIP}/24]\n  track: backend:self\n",
                    ip = m.ipv4,
                    ifname = m.ifname,
                    prio = prio,
                    iv = interval.as_millis()
                );
                std::fs::write(&conf, text).map_err(|e| e.to_string())?;
                m.spawn(
                    APIVIP,
                    ["run", "-c", &conf.display().to_string()],
                    &d.join(format!("apivip-{i}.log")),
                )
                .map_err(|e| format!("apivip {i}: {e}"))?
            }
            Daemon::Keepalived => common::start_keepalived(&cfg.keepalived, &topo, d, i, interval)?,
        };
        daemons.push(p);
    }
    Ok(Pair {
        daemon,
        interval,
        daemons,
        listeners: Vec::new(),
        acceptors,
        topo,
        dir,
    })
}

/// How many times master `i`'s daemon logged a transition to master so far.
fn master_transitions(pair: &Pair, i: usize) -> usize {
    let log = pair.daemons[i].log();
    match pair.daemon {
        Daemon::Keepalived => log.matches("Entering MASTER STATE").count(),
        Daemon::Apivip | Daemon::ApivipBefore => log
            .lines()
            .filter(|l| l.contains("state changed") && l.contains("to=Master"))
            .count(),
    }
}

/// An nftables table in the bridge namespace that drops IP protocol 112 between all
/// bridge ports (a VRRP-only partition); removed on drop.
struct VrrpCut {
    bridge_ns: String,
    table: String,
}

impl VrrpCut {
    fn new(topo: &Topology) -> Result<VrrpCut, String> {
        let table = format!("vrrpcut{}", std::process::id());
        let script = format!(
            "table bridge {table} {{\n  chain cut {{\n    type filter hook forward priority 0; policy accept;\n    ip protocol 112 drop\n  }}\n}}\n"
        );
        let out = Command::new("ip")
            .args(["netns", "exec", topo.bridge_ns(), "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().map(|mut s| s.write_all(script.as_bytes()));
                c.wait_with_output()
            })
            .map_err(|e| format!("nft: {e}"))?;
        if !out.status.success() {
            return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(VrrpCut {
            bridge_ns: topo.bridge_ns().to_owned(),
            table,
        })
    }
}

impl Drop for VrrpCut {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.bridge_ns,
                "nft",
                "delete",
                "table",
                "bridge",
            ])
            .arg(&self.table)
            .output();
    }
}

/// The MAC address the client's neighbour entry for the VIP holds, if any.
fn client_mac(topo: &Topology) -> Option<String> {
    let out = topo
        .client()
        .exec(&["ip", "-j", "neigh", "show", &VIP.to_string()])
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json.as_array()?
        .iter()
        .find_map(|n| Some(n["lladdr"].as_str()?.to_owned()))
}

// ---------------------------------------------------------------------------
// Split and partition

#[derive(Debug, Clone, Copy)]
struct Recovery {
    /// From SIGCONT / the heal to the end of the first successful connect after the
    /// last failed one (zero if none failed).
    recovery: Duration,
    /// Connects started after SIGCONT / the heal that failed.
    failed: usize,
    /// From SIGCONT / the heal until master 0 alone held the VIP (polled every 20 ms).
    one_holder: Option<Duration>,
}

fn recovery_run(
    cfg: &Cfg,
    scenario: &str,
    daemon: Daemon,
    interval: Duration,
) -> Result<Recovery, String> {
    let pair = start_pair(cfg, daemon, interval)?;
    let client = Client::start(pair.topo.client(), CONNECT_EVERY);
    pair.wait_steady(Some(&client))?;
    let cut = if scenario == "split" {
        pair.signal(0, Signal::SIGSTOP)?;
        None
    } else {
        Some(VrrpCut::new(&pair.topo)?)
    };
    // The fault lasts until both hold the VIP (the frozen or cut-off node keeps it),
    // the client's neighbour entry for the VIP has master 1's MAC (its gratuitous ARP
    // moved the client: the client now points at the node that will lose), and the
    // client reaches master 1.
    let want: &[usize] = &[0, 1];
    let mac1 = Some(support::vrrp::mac(pair.topo.master(1)));
    let deadline = Instant::now() + interval * 10 + Duration::from_secs(10);
    let mut moved = false;
    while Instant::now() < deadline {
        if pair.holders() == want
            && client_mac(&pair.topo).is_some_and(|m| Some(m) == mac1)
            && client.clean_for(Duration::from_millis(300))
        {
            moved = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !moved {
        let holders = pair.holders();
        let _ = pair.signal(0, Signal::SIGCONT);
        return Err(format!(
            "master 1 never took over during the {scenario} (holders {holders:?}, client's MAC for the VIP {:?}, master 1's {mac1:?})\n{}",
            client_mac(&pair.topo),
            pair.logs()
        ));
    }
    let t0 = Instant::now();
    match cut {
        None => pair.signal(0, Signal::SIGCONT)?,
        Some(cut) => drop(cut),
    }
    let limit = Duration::from_secs(60) + interval * 10;
    let mut one_holder = None;
    let mut recovered = false;
    while t0.elapsed() < limit {
        if one_holder.is_none() && pair.holders() == [0] {
            one_holder = Some(t0.elapsed());
        }
        if one_holder.is_some() && client.clean_for(CLEAN) {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let attempts = client.snapshot();
    drop(client);
    if !recovered {
        return Err(format!(
            "no recovery within {limit:?} (holders {:?}, one holder after {one_holder:?})\n{}",
            pair.holders(),
            pair.logs()
        ));
    }
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.start >= t0).collect();
    let failed = after.iter().filter(|a| !a.ok).count();
    let recovery = match after.iter().filter(|a| !a.ok).map(|a| a.start).max() {
        None => Duration::ZERO,
        Some(last_failure) => after
            .iter()
            .filter(|a| a.ok && a.start > last_failure)
            .map(|a| a.end)
            .min()
            .map_or(limit, |e| e.duration_since(t0)),
    };
    pair.keep(cfg.keep_logs, scenario);
    Ok(Recovery {
        recovery,
        failed,
        one_holder,
    })
}

struct RecoveryRow {
    scenario: &'static str,
    daemon: Daemon,
    interval: Duration,
    runs: Vec<Recovery>,
    errors: usize,
}

// ---------------------------------------------------------------------------
// Flood

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FloodKind {
    /// Alternately another VRID and our VRID with a wrong checksum.
    Invalid,
    /// Valid adverts of our VRID and VIP at priority 50.
    Lower,
}

impl FloodKind {
    fn name(self) -> &'static str {
        match self {
            FloodKind::Invalid => "invalid",
            FloodKind::Lower => "lower",
        }
    }
}

fn advert(vrid: u8, priority: u8, src: Ipv4Addr) -> Vec<u8> {
    let repr = Repr::V3(AdvertV3 {
        vrid: Vrid::new_unchecked(vrid),
        priority: Priority::new(priority),
        max_advert_int: Centisecs::new_unchecked(10),
        addrs: VirtualAddrs::V4(AddrList::try_new(vec![VIP]).expect("one VIP")),
    });
    let mut buf = vec![0u8; repr.buffer_len()];
    let ip = IpPair::V4 {
        src,
        dst: apivip::vrrp::packet::MULTICAST_V4,
    };
    repr.emit(
        &mut Packet::new_unchecked(&mut buf[..], repr.family()),
        &ip,
        Checksum::Verify,
    );
    buf
}

#[derive(Debug, Clone)]
struct FloodStep {
    /// What was asked (`None`: as fast as possible).
    rate: Option<u64>,
    /// Datagrams per second actually sent.
    sent_rate: f64,
    /// Whether master 1 took over (or master 0 lost the VIP).
    takeover: bool,
}

struct FloodRow {
    daemon: Daemon,
    kind: FloodKind,
    steps: Vec<FloodStep>,
    error: Option<String>,
}

impl FloodRow {
    /// The highest rate sent without a takeover (the rate reached, for `max`).
    fn highest_ok(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| !s.takeover)
            .map(|s| s.sent_rate)
            .fold(None, |m, r| Some(m.map_or(r, |m: f64| m.max(r))))
    }
}

fn flood_steps(cfg: &Cfg, daemon: Daemon, kind: FloodKind) -> FloodRow {
    let mut row = FloodRow {
        daemon,
        kind,
        steps: Vec::new(),
        error: None,
    };
    let interval = Duration::from_millis(100);
    let pair = match start_pair(cfg, daemon, interval).and_then(|p| {
        p.wait_steady(None)?;
        Ok(p)
    }) {
        Ok(p) => p,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    for &rate in &cfg.flood_rates {
        let before = master_transitions(&pair, 1);
        let client = pair.topo.client().clone();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let sender = std::thread::spawn(move || {
            let node = client.clone();
            node.run_in(move || flood(&client, kind, rate, &stop2, &sent2))
                .map_err(|e| format!("client namespace: {e}"))?
        });
        let t0 = Instant::now();
        let mut takeover = false;
        while t0.elapsed() < Duration::from_secs(cfg.flood_secs) {
            if pair.holders() != [0] {
                takeover = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        let elapsed = t0.elapsed().as_secs_f64();
        if let Ok(Err(e)) | Err(e) = sender
            .join()
            .map_err(|_| "flood thread panicked".to_owned())
        {
            row.error = Some(e);
            break;
        }
        takeover |= master_transitions(&pair, 1) > before;
        let step = FloodStep {
            rate,
            sent_rate: sent.load(Ordering::SeqCst) as f64 / elapsed,
            takeover,
        };
        eprintln!(
            "  flood {} {} at {}: sent {:.0}/s, takeover {}",
            daemon.name(),
            kind.name(),
            rate.map_or("max".into(), |r| r.to_string()),
            step.sent_rate,
            step.takeover
        );
        row.steps.push(step);
        if takeover {
            if cfg.keep_logs {
                eprintln!("{}", pair.logs());
            }
            break;
        }
        // Let the pair settle before the next step.
        std::thread::sleep(Duration::from_secs(1));
    }
    pair.keep(cfg.keep_logs, "flood");
    row
}

/// Sends the flood (on a thread in the client namespace) at `rate` per second (`None`: flat out)
/// until `stop`, counting what left in `sent`.
fn flood(
    client: &Node,
    kind: FloodKind,
    rate: Option<u64>,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> Result<(), String> {
    let src = client.ipv4;
    let sock = VrrpSocket::open(&client.ifname, IpAddr::V4(src), Delivery::Multicast)
        .map_err(|e| format!("flood socket: {e}"))?;
    let msgs: Vec<Vec<u8>> = match kind {
        FloodKind::Invalid => {
            let mut bad_sum = advert(VRID, 200, src);
            bad_sum[6] ^= 0xff;
            vec![advert(VRID + 1, 200, src), bad_sum]
        }
        FloodKind::Lower => vec![advert(VRID, 50, src)],
    };
    let dst = IpAddr::V4(apivip::vrrp::packet::MULTICAST_V4);
    let t0 = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(rate) = rate {
            let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
            if n >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
        }
        match sock.send_to(&msgs[(n % msgs.len() as u64) as usize], dst) {
            Ok(()) => {
                n += 1;
                sent.store(n, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(format!("flood send: {e}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// CPU

struct Cpu {
    secs: u64,
    /// (daemon, master CPU s, backup CPU s) per 60 s, from schedstat and from utime+stime.
    schedstat: Vec<(Daemon, f64, f64)>,
    ticks: Vec<(Daemon, f64, f64)>,
}

fn cpu_run(cfg: &Cfg) -> Result<Cpu, String> {
    let interval = Duration::from_millis(10);
    let pairs: Vec<Pair> = [Daemon::Keepalived, Daemon::Apivip]
        .into_iter()
        .map(|d| start_pair(cfg, d, interval))
        .collect::<Result<_, _>>()?;
    for p in &pairs {
        p.wait_steady(None)
            .map_err(|e| format!("{}: {e}", p.daemon.name()))?;
    }
    let sample = |p: &Pair| -> Vec<(u64, u64)> {
        p.daemons
            .iter()
            .map(|d| common::tree_cpu(d.pid()))
            .collect()
    };
    let first: Vec<_> = pairs.iter().map(sample).collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(cfg.cpu_secs));
    let last: Vec<_> = pairs.iter().map(sample).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut schedstat = Vec::new();
    let mut ticks = Vec::new();
    for (k, p) in pairs.iter().enumerate() {
        if p.holders() != [0] {
            eprintln!(
                "  cpu: {} holders changed: {:?}",
                p.daemon.name(),
                p.holders()
            );
        }
        let d = |i: usize| {
            (
                (last[k][i].0 - first[k][i].0) as f64 / 1e9 * 60.0 / elapsed,
                (last[k][i].1 - first[k][i].1) as f64 / tck * 60.0 / elapsed,
            )
        };
        let (m, b) = (d(0), d(1));
        schedstat.push((p.daemon, m.0, b.0));
        ticks.push((p.daemon, m.1, b.1));
    }
    for p in pairs {
        p.keep(cfg.keep_logs, "cpu");
    }
    Ok(Cpu {
        secs: cfg.cpu_secs,
        schedstat,
        ticks,
    })
}

// ---------------------------------------------------------------------------
// Report

fn ratio(a: f64, k: f64) -> String {
    if k > 0.0 {
        format!("{:.2}", a / k)
    } else if a == 0.0 {
        "1 (both 0)".into()
    } else {
        "inf (keepalived 0)".into()
    }
}

fn print_report(rows: &[RecoveryRow], floods: &[FloodRow], cpu: Option<&Cpu>, cpu_secs: u64) {
    let _ = cpu_secs;
    if !rows.is_empty() {
        println!();
        println!("| scenario | interval | daemon | recovery median (min-max) | failed connects median (max) | one holder after, median (max) | runs | errors |");
        println!("|---|---|---|---|---|---|---|---|");
        for r in rows {
            let rec: Vec<Duration> = r.runs.iter().map(|x| x.recovery).collect();
            let failed: Vec<usize> = r.runs.iter().map(|x| x.failed).collect();
            let one: Vec<Duration> = r.runs.iter().filter_map(|x| x.one_holder).collect();
            let opt = |d: Option<Duration>| d.map_or("-".into(), ms);
            println!(
                "| {} | {} | {} | {} ({}-{}) | {} ({}) | {} ({}) | {} | {} |",
                r.scenario,
                fmt_interval(r.interval),
                r.daemon.name(),
                opt(median(&rec)),
                opt(rec.iter().min().copied()),
                opt(rec.iter().max().copied()),
                median(&failed).map_or("-".into(), |m| m.to_string()),
                failed.iter().max().map_or("-".into(), |m| m.to_string()),
                opt(median(&one)),
                opt(one.iter().max().copied()),
                r.runs.len(),
                r.errors
            );
        }
        println!();
        println!("Ratios apivip / keepalived (medians; target: recovery <= keepalived and <= 1 interval):");
        for pair in rows.chunks(2) {
            let [k, a] = pair else { continue };
            let med = |r: &RecoveryRow| {
                median(&r.runs.iter().map(|x| x.recovery).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .as_secs_f64()
            };
            let fail = |r: &RecoveryRow| {
                median(&r.runs.iter().map(|x| x.failed).collect::<Vec<_>>()).unwrap_or(0) as f64
            };
            if k.runs.is_empty() || a.runs.is_empty() {
                println!(
                    "- {} at {}: not measured (failed runs)",
                    k.scenario,
                    fmt_interval(k.interval)
                );
                continue;
            }
            let within = med(a) <= a.interval.as_secs_f64();
            println!(
                "- {} at {}: recovery {}, failed connects {}; apivip within one interval: {}",
                k.scenario,
                fmt_interval(k.interval),
                ratio(med(a), med(k)),
                ratio(fail(a), fail(k)),
                if within { "yes" } else { "no" }
            );
        }
    }
    if !floods.is_empty() {
        println!();
        println!("| flood | daemon | steps (rate sent/s: takeover?) | highest rate without takeover | error |");
        println!("|---|---|---|---|---|");
        for f in floods {
            let steps: Vec<String> = f
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{}{:.0}: {}",
                        if s.rate.is_none() { "max " } else { "" },
                        s.sent_rate,
                        if s.takeover { "TAKEOVER" } else { "ok" }
                    )
                })
                .collect();
            println!(
                "| {} | {} | {} | {} | {} |",
                f.kind.name(),
                f.daemon.name(),
                steps.join(", "),
                f.highest_ok()
                    .map_or("none".into(), |r| format!("{r:.0}/s")),
                f.error
                    .as_deref()
                    .map_or("", |e| e.lines().next().unwrap_or(""))
            );
        }
        println!();
        println!("Ratios apivip / keepalived, highest flood rate without takeover (target >= 1):");
        for pair in floods.chunks(2) {
            let [k, a] = pair else { continue };
            println!(
                "- {}: {}",
                k.kind.name(),
                ratio(a.highest_ok().unwrap_or(0.0), k.highest_ok().unwrap_or(0.0))
            );
        }
    }
    if let Some(c) = cpu {
        println!();
        println!(
            "CPU at 10 ms adverts over {} s, CPU seconds per 60 s (master / backup):",
            c.secs
        );
        for (label, rows) in [("schedstat", &c.schedstat), ("utime+stime", &c.ticks)] {
            for (d, m, b) in rows {
                println!("- {label} {}: {m:.3} / {b:.3}", d.name());
            }
            if let [(_, km, kb), (_, am, ab)] = rows.as_slice() {
                println!(
                    "- {label} ratio apivip/keepalived (target <= 1): master {}, backup {}",
                    ratio(*am, *km),
                    ratio(*ab, *kb)
                );
            }
        }
    }
}
