//! Helpers for the chaos topology tests (`tests/vrrp_chaos.rs`, root): what breaks the
//! VRRP segment and what watches it.
//!
//! - [`Impairment`]: loss, delay, jitter (reordering) and duplication on a master's link.
//!   `tc netem` where the kernel has `sch_netem`; otherwise a userspace relay spliced
//!   into the link inside the bridge namespace (the master's bridge port leaves the
//!   bridge, a new veth pair joins it, and a thread copies frames between the two with
//!   the impairment, fixing the checksums veth offload leaves unfinished), so the test
//!   runs the same on kernels without netem.
//! - [`VipMonitor`]: `ip -o monitor address` in every master namespace, each event
//!   stamped on arrival: who held the VIP when, and every episode of two holders.
//! - [`ArpProbe`]: ARP requests for the VIP every few milliseconds from a namespace of
//!   its own; the MACs that answer each one (two MACs: two holders, as a client sees it).
//! - [`ClientLog`]: TCP connects to the VIP every 5 ms from the client namespace, every
//!   attempt recorded with its time, to say when a client reached the VIP again.
//! - [`Flood`]: a raw-socket sender of protocol-112 packets as fast as one thread can.
//! - [`advert_v3`]: a VRRPv3 IPv4 advert with any field chosen (forgeries).
//! - [`Serial`]: the chaos tests run one at a time (they measure time on 2 shared cores).

use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netns::{netem_supported, Node, Topology};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Joins the calling thread to `ns`'s network namespace.
fn enter(ns: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Serial

/// Held by each chaos test for its whole run: they measure wall-clock recovery on a
/// small machine, and a flood or a soak next to them would measure the machine.
pub struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Serial {
    pub fn take() -> Serial {
        static LOCK: Mutex<()> = Mutex::new(());
        Serial(lock(&LOCK))
    }
}

// ---------------------------------------------------------------------------------------
// Impairment

/// What to do to the frames on a link, as `tc netem` would: `loss` and `duplicate` in
/// percent, every frame delayed by `delay` plus a uniform random `0..jitter` (frames
/// overtake each other when the jitter is larger than their spacing: reordering).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Netem {
    pub loss: f64,
    pub duplicate: f64,
    pub delay: Duration,
    pub jitter: Duration,
}

impl Netem {
    /// The same impairment as a `tc netem` argument list.
    pub fn tc_spec(&self) -> String {
        let mut s = String::new();
        if !self.delay.is_zero() || !self.jitter.is_zero() {
            s += &format!(
                "delay {}us {}us distribution uniform ",
                self.delay.as_micros(),
                self.jitter.as_micros() / 2
            );
        }
        if self.loss > 0.0 {
            s += &format!("loss {}% ", self.loss);
        }
        if self.duplicate > 0.0 {
            s += &format!("duplicate {}% ", self.duplicate);
        }
        s.trim_end().to_owned()
    }
}

/// An impairment of some masters' links (both directions). Dropping it (or
/// [`Impairment::clear`]) restores clean links.
pub struct Impairment {
    inner: ImpairKind,
}

enum ImpairKind {
    Netem {
        topo_links: Vec<(String, String, String, String)>,
    },
    Relays(Vec<Relay>),
}

impl Impairment {
    /// Impairs the links of masters `links` with `spec`, in both directions.
    pub fn start(topo: &Topology, links: &[usize], spec: Netem) -> std::io::Result<Impairment> {
        if netem_supported() {
            let mut topo_links = Vec::new();
            for &i in links {
                topo.netem(i, &spec.tc_spec())?;
                let m = topo.master(i);
                topo_links.push((
                    m.ns.clone(),
                    m.ifname.clone(),
                    topo.bridge_ns().to_owned(),
                    topo.bridge_port(i).to_owned(),
                ));
            }
            return Ok(Impairment {
                inner: ImpairKind::Netem { topo_links },
            });
        }
        let mut relays = Vec::new();
        for &i in links {
            relays.push(Relay::splice(topo, i, spec)?);
        }
        Ok(Impairment {
            inner: ImpairKind::Relays(relays),
        })
    }

    /// Which mechanism is in use, for the test's output.
    pub fn mechanism(&self) -> &'static str {
        match self.inner {
            ImpairKind::Netem { .. } => "tc netem",
            ImpairKind::Relays(_) => "userspace relay (this kernel has no sch_netem)",
        }
    }

    /// Frames (forwarded, dropped, duplicated) by the relays so far; zeros under netem.
    pub fn counts(&self) -> (u64, u64, u64) {
        match &self.inner {
            ImpairKind::Netem { .. } => (0, 0, 0),
            ImpairKind::Relays(r) => r.iter().fold((0, 0, 0), |acc, r| {
                let c = &r.counters;
                (
                    acc.0 + c.forwarded.load(Ordering::Relaxed),
                    acc.1 + c.dropped.load(Ordering::Relaxed),
                    acc.2 + c.duplicated.load(Ordering::Relaxed),
                )
            }),
        }
    }

    /// Removes the impairment at once: every link clean again. Frames still delayed
    /// are dropped, as `tc qdisc del` drops a netem queue.
    pub fn clear(&mut self) {
        match &mut self.inner {
            ImpairKind::Netem { topo_links } => {
                for (ns, dev, bns, port) in topo_links.drain(..) {
                    for (n, d) in [(ns, dev), (bns, port)] {
                        let _ = Command::new("tc")
                            .args(["-n", &n, "qdisc", "del", "dev", &d, "root"])
                            .stdin(Stdio::null())
                            .stderr(Stdio::null())
                            .status();
                    }
                }
            }
            ImpairKind::Relays(r) => {
                for relay in r {
                    *lock(&relay.spec) = Netem::default();
                }
            }
        }
    }
}

impl Drop for Impairment {
    fn drop(&mut self) {
        self.clear();
        // Relays unsplice themselves on drop.
    }
}

#[derive(Default)]
struct RelayCounters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
}

/// Master `i`'s bridge port taken off the bridge; a new veth pair (`{port}r` on the
/// bridge, `{port}q` its peer) put in its place; two threads copy frames port <-> q.
struct Relay {
    bridge_ns: String,
    bridge: String,
    port: String,
    q: String,
    spec: Arc<Mutex<Netem>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<RelayCounters>,
}

/// A frame waiting for its departure time (earliest first in the heap).
struct Held {
    due: Instant,
    seq: u64,
    frame: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

impl Relay {
    fn splice(topo: &Topology, i: usize, spec: Netem) -> std::io::Result<Relay> {
        let bridge_ns = topo.bridge_ns().to_owned();
        let bridge = topo.bridge().to_owned();
        let port = topo.bridge_port(i).to_owned();
        // Port names are at most 15 characters; ours are short enough plus one.
        let q = format!("{}q", &port[..port.len().min(14)]);
        let r = format!("{}r", &port[..port.len().min(14)]);
        ip(&[
            "-n", &bridge_ns, "link", "add", "name", &q, "type", "veth", "peer", "name", &r,
        ])?;
        let mut relay = Relay {
            bridge_ns: bridge_ns.clone(),
            bridge: bridge.clone(),
            port: port.clone(),
            q: q.clone(),
            spec: Arc::new(Mutex::new(spec)),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            counters: Arc::new(RelayCounters::default()),
        };
        ip(&["-n", &bridge_ns, "link", "set", &r, "master", &bridge, "up"])?;
        ip(&["-n", &bridge_ns, "link", "set", &q, "up"])?;
        ip(&["-n", &bridge_ns, "link", "set", &port, "nomaster"])?;
        ip(&["-n", &bridge_ns, "link", "set", &port, "up"])?;
        // One socket per interface, shared by both directions: a socket never receives
        // what it sent itself, so the relay hears no echo of its own frames.
        let (p_name, q_name) = (port.clone(), q);
        let ns = bridge_ns.clone();
        let (p_chan, q_chan) = std::thread::spawn(move || {
            enter(&ns)?;
            Ok::<_, std::io::Error>((channel(&p_name)?, channel(&q_name)?))
        })
        .join()
        .map_err(|_| std::io::Error::other("relay setup panicked"))??;
        let ((p_tx, p_rx), (q_tx, q_rx)) = (p_chan, q_chan);
        for (mut rx, mut tx) in [(p_rx, q_tx), (q_rx, p_tx)] {
            let spec = relay.spec.clone();
            let stop = relay.stop.clone();
            let counters = relay.counters.clone();
            relay.threads.push(std::thread::spawn(move || {
                let mut held = BinaryHeap::<Held>::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(frame) = rx.next() {
                        let s = *lock(&spec);
                        let now = Instant::now();
                        if s.loss > 0.0 && fastrand::f64() * 100.0 < s.loss {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let copies =
                                if s.duplicate > 0.0 && fastrand::f64() * 100.0 < s.duplicate {
                                    counters.duplicated.fetch_add(1, Ordering::Relaxed);
                                    2
                                } else {
                                    1
                                };
                            for _ in 0..copies {
                                let jitter = s.jitter.mul_f64(fastrand::f64());
                                seq += 1;
                                let mut frame = frame.to_vec();
                                fix_l4_checksum(&mut frame);
                                held.push(Held {
                                    due: now + s.delay + jitter,
                                    seq,
                                    frame,
                                });
                            }
                        }
                    }
                    let clean = *lock(&spec) == Netem::default();
                    let now = Instant::now();
                    while held.peek().is_some_and(|h| clean || h.due <= now) {
                        let h = held.pop().expect("peeked");
                        if h.due <= now {
                            let _ = tx.send_to(&h.frame, None);
                            counters.forwarded.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // Cleared: what is still delayed is dropped, as deleting a
                            // netem qdisc drops its queue.
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        Ok(relay)
    }
}

/// Recomputes the TCP/UDP (and ICMPv6) checksum of an IPv4 or IPv6 frame. A veth
/// leaves checksums to the receiver (offload: the field holds only the pseudo-header
/// sum), and a frame copied by the relay through another veth would arrive with a wrong
/// one; a right checksum stays as it was.
fn fix_l4_checksum(f: &mut [u8]) {
    fn fold(mut sum: u32, data: &[u8]) -> u32 {
        for w in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        sum
    }
    fn finish(mut sum: u32) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
    if f.len() < 14 {
        return;
    }
    let (l3, ethertype) = (14, u16::from_be_bytes([f[12], f[13]]));
    let (proto, l4, end, pseudo) = match ethertype {
        0x0800 if f.len() >= l3 + 20 => {
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
            let frag = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]) & 0x3fff;
            if frag != 0 || total < ihl || l3 + total > f.len() {
                return;
            }
            let proto = f[l3 + 9];
            let len = total - ihl;
            let mut p = fold(0, &f[l3 + 12..l3 + 20]);
            p += u32::from(proto) + len as u32;
            (proto, l3 + ihl, l3 + total, p)
        }
        0x86dd if f.len() >= l3 + 40 => {
            let len = usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]));
            if l3 + 40 + len > f.len() {
                return;
            }
            let proto = f[l3 + 6];
            let mut p = fold(0, &f[l3 + 8..l3 + 40]);
            p += u32::from(proto) + len as u32;
            (proto, l3 + 40, l3 + 40 + len, p)
        }
        _ => return,
    };
    let at = match proto {
        6 => 16,
        17 => 6,
        58 if ethertype == 0x86dd => 2,
        _ => return,
    };
    if l4 + at + 2 > end {
        return;
    }
    // An IPv4 UDP checksum of zero means "none": leave it.
    if proto == 17 && ethertype == 0x0800 && f[l4 + at..l4 + at + 2] == [0, 0] {
        return;
    }
    f[l4 + at] = 0;
    f[l4 + at + 1] = 0;
    let mut sum = finish(fold(pseudo, &f[l4..end]));
    if sum == 0 && proto == 17 {
        sum = 0xffff;
    }
    f[l4 + at..l4 + at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// An AF_PACKET channel on interface `name` of the current thread's namespace, with a
/// 1 ms read timeout (the relay's scheduling tick).
fn channel(
    name: &str,
) -> std::io::Result<(
    Box<dyn pnet_datalink::DataLinkSender>,
    Box<dyn pnet_datalink::DataLinkReceiver>,
)> {
    let iface = pnet_datalink::interfaces()
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| std::io::Error::other(format!("no interface {name}")))?;
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(1)),
        read_buffer_size: 65536,
        write_buffer_size: 65536,
        promiscuous: true,
        ..Default::default()
    };
    match pnet_datalink::channel(&iface, config)? {
        pnet_datalink::Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(std::io::Error::other("not an Ethernet channel")),
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Deleting q deletes its peer on the bridge; the port goes back on the bridge.
        let _ = ip(&["-n", &self.bridge_ns, "link", "del", &self.q]);
        let _ = ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &self.port,
            "master",
            &self.bridge,
            "up",
        ]);
    }
}

// ---------------------------------------------------------------------------------------
// VipMonitor

/// One address event for the VIP in master `node`'s namespace.
#[derive(Debug, Clone, Copy)]
pub struct VipEvent {
    pub at: Instant,
    pub node: usize,
    pub added: bool,
}

/// A time when two or more masters held the VIP.
#[derive(Debug, Clone)]
pub struct Dual {
    pub start: Instant,
    pub len: Duration,
    pub nodes: Vec<usize>,
}

/// `ip -o monitor address` in each master namespace (children killed by PID on drop),
/// plus the state when it started: who holds the VIP, over time.
pub struct VipMonitor {
    vip: IpAddr,
    start: Instant,
    initial: Vec<bool>,
    events: Arc<Mutex<Vec<VipEvent>>>,
    children: Vec<Child>,
}

impl VipMonitor {
    /// Watches `vip` on masters `0..n` of `topo`.
    pub fn start(topo: &Topology, n: usize, vip: IpAddr) -> VipMonitor {
        let events = Arc::new(Mutex::new(Vec::new()));
        let needle = match vip {
            IpAddr::V4(v) => format!(" inet {v}/"),
            IpAddr::V6(v) => format!(" inet6 {v}/"),
        };
        let mut children = Vec::new();
        for node in 0..n {
            let mut child = Command::new("ip")
                .args(["-o", "-n", &topo.master(node).ns, "monitor", "address"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("ip monitor");
            let out = child.stdout.take().expect("piped");
            let (events, needle) = (events.clone(), needle.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if line.contains(&needle) {
                        lock(&events).push(VipEvent {
                            at: Instant::now(),
                            node,
                            added: !line.starts_with("Deleted"),
                        });
                    }
                }
            });
            children.push(child);
        }
        // The monitors subscribe as they start; a change racing this snapshot shows as
        // an event after it, which wins.
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        let initial = (0..n).map(|i| topo.master(i).holds(vip)).collect();
        VipMonitor {
            vip,
            start,
            initial,
            events,
            children,
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<VipEvent> {
        lock(&self.events).clone()
    }

    /// The episodes with two or more holders so far, leaving out master `node` during
    /// each `(node, from, to)` of `excluded` (a node whose link is down holds the VIP
    /// for nobody). An episode still open ends now.
    pub fn duals(&self, excluded: &[(usize, Instant, Instant)]) -> Vec<Dual> {
        let mut evs: Vec<(Instant, usize, bool)> = self
            .events()
            .into_iter()
            .filter(|e| e.at >= self.start)
            .map(|e| (e.at, e.node, e.added))
            .collect();
        // Exclusion windows as synthetic edges on a separate mask.
        let mut marks: Vec<(Instant, usize, bool)> = Vec::new();
        for &(node, from, to) in excluded {
            marks.push((from.max(self.start), node, true));
            marks.push((to.max(self.start), node, false));
        }
        let now = Instant::now();
        let mut held = self.initial.clone();
        let mut masked = vec![0usize; held.len()];
        let mut all: Vec<(Instant, u8, usize, bool)> = evs
            .drain(..)
            .map(|(t, n, a)| (t, 0u8, n, a))
            .chain(marks.into_iter().map(|(t, n, a)| (t, 1u8, n, a)))
            .collect();
        all.sort_by_key(|e| (e.0, e.1));
        let mut out = Vec::new();
        let mut open: Option<(Instant, Vec<usize>)> = None;
        let holders = |held: &[bool], masked: &[usize]| -> Vec<usize> {
            (0..held.len())
                .filter(|&i| held[i] && masked[i] == 0)
                .collect()
        };
        let mut step = |t: Instant,
                        held: &[bool],
                        masked: &[usize],
                        open: &mut Option<(Instant, Vec<usize>)>| {
            let h = holders(held, masked);
            match (open.take(), h.len() >= 2) {
                (None, true) => *open = Some((t, h)),
                (Some((s, mut n)), true) => {
                    for x in h {
                        if !n.contains(&x) {
                            n.push(x);
                        }
                    }
                    *open = Some((s, n));
                }
                (Some((s, n)), false) => out.push(Dual {
                    start: s,
                    len: t - s,
                    nodes: n,
                }),
                (None, false) => {}
            }
        };
        step(self.start, &held, &masked, &mut open);
        for (t, kind, node, on) in all {
            if node >= held.len() {
                continue;
            }
            if kind == 0 {
                held[node] = on;
            } else if on {
                masked[node] += 1;
            } else {
                masked[node] = masked[node].saturating_sub(1);
            }
            step(t, &held, &masked, &mut open);
        }
        if let Some((s, n)) = open {
            out.push(Dual {
                start: s,
                len: now - s,
                nodes: n,
            });
        }
        out
    }

    /// The events as text (offsets from the start), for a failure message.
    pub fn describe(&self) -> String {
        let mut s = format!("VIP {} held at start by {:?}\n", self.vip, self.initial);
        for e in self.events() {
            s += &format!(
                "  {:>8.3}s node {} {}\n",
                e.at.saturating_duration_since(self.start).as_secs_f64(),
                e.node,
                if e.added { "added" } else { "deleted" }
            );
        }
        s
    }

    /// When the monitor started.
    pub fn started(&self) -> Instant {
        self.start
    }
}

impl Drop for VipMonitor {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// ArpProbe

/// What an [`ArpProbe`] saw.
#[derive(Debug, Default, Clone)]
pub struct ArpReport {
    /// Requests sent.
    pub probes: u64,
    /// Probes answered by one MAC.
    pub answered: u64,
    /// (time of the probe, MACs) of each probe answered by two or more MACs.
    pub duals: Vec<(Instant, Vec<[u8; 6]>)>,
}

impl ArpReport {
    /// The longest run of consecutive two-MAC probes, as the time from its first probe
    /// to one probe period after its last (what a client could see of it).
    pub fn longest_dual(&self, period: Duration) -> Duration {
        let mut best = Duration::ZERO;
        let mut run: Option<(Instant, Instant)> = None;
        for &(t, _) in &self.duals {
            run = match run {
                Some((s, last)) if t - last <= period * 2 => Some((s, t)),
                _ => Some((t, t)),
            };
            let (s, last) = run.expect("set");
            best = best.max(last - s + period);
        }
        best
    }

    /// The two-MAC probes within `[from, to)`.
    pub fn duals_between(&self, from: Instant, to: Instant) -> usize {
        self.duals
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .count()
    }
}

/// ARP requests for a VIP every `period` from `node` (a namespace that is not a VRRP
/// node), broadcast; every reply's sender MAC recorded per probe.
pub struct ArpProbe {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<ArpReport>>,
    handle: Option<JoinHandle<()>>,
}

impl ArpProbe {
    pub fn start(node: &Node, vip: Ipv4Addr, period: Duration) -> std::io::Result<ArpProbe> {
        let mac = super::vrrp::mac(node);
        let mac: Vec<u8> = mac
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).unwrap_or(0))
            .collect();
        let mac: [u8; 6] = mac
            .try_into()
            .map_err(|_| std::io::Error::other("bad MAC"))?;
        let (ns, ifname, src) = (node.ns.clone(), node.ifname.clone(), node.ipv4);
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(ArpReport::default()));
        let (stop2, report2) = (stop.clone(), report.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let chan = enter(&ns).and_then(|()| channel(&ifname));
            let (mut tx, mut rx) = match chan {
                Ok(c) => {
                    let _ = ready_tx.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut req = Vec::with_capacity(42);
            req.extend_from_slice(&[0xff; 6]);
            req.extend_from_slice(&mac);
            req.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            req.extend_from_slice(&mac);
            req.extend_from_slice(&src.octets());
            req.extend_from_slice(&[0; 6]);
            req.extend_from_slice(&vip.octets());
            while !stop2.load(Ordering::Relaxed) {
                let sent_at = Instant::now();
                let _ = tx.send_to(&req, None);
                let mut macs: Vec<[u8; 6]> = Vec::new();
                while sent_at.elapsed() < period {
                    let Ok(f) = rx.next() else { continue };
                    // Ethernet + ARP reply (op 2) from the VIP.
                    if f.len() >= 42
                        && f[12..14] == [0x08, 0x06]
                        && f[20..22] == [0, 2]
                        && f[28..32] == vip.octets()
                    {
                        let sha: [u8; 6] = f[22..28].try_into().expect("6 bytes");
                        if !macs.contains(&sha) {
                            macs.push(sha);
                        }
                    }
                }
                let mut r = lock(&report2);
                r.probes += 1;
                match macs.len() {
                    0 => {}
                    1 => r.answered += 1,
                    _ => r.duals.push((sent_at, macs)),
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("ARP probe thread died"))??;
        Ok(ArpProbe {
            stop,
            report,
            handle: Some(handle),
        })
    }

    /// What it saw so far.
    pub fn report(&self) -> ArpReport {
        lock(&self.report).clone()
    }
}

impl Drop for ArpProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A MAC as text.
pub fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ---------------------------------------------------------------------------------------
// ClientLog

/// One connect to the VIP.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it started.
    pub at: Instant,
    /// `None` when it connected; the error otherwise.
    pub err: Option<String>,
}

/// TCP connects to `addr` from a namespace every 5 ms (300 ms connect timeout), each
/// attempt recorded, until dropped.
pub struct ClientLog {
    stop: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    handle: Option<JoinHandle<()>>,
}

impl ClientLog {
    pub fn start(node: &Node, addr: SocketAddr) -> ClientLog {
        let ns = node.ns.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let (stop2, attempts2) = (stop.clone(), attempts.clone());
        let handle = std::thread::spawn(move || {
            enter(&ns).expect("join the client namespace");
            while !stop2.load(Ordering::Relaxed) {
                let at = Instant::now();
                let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300))
                    .err()
                    .map(|e| e.to_string());
                lock(&attempts2).push(Attempt { at, err });
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ClientLog {
            stop,
            attempts,
            handle: Some(handle),
        }
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        lock(&self.attempts).clone()
    }

    /// Waits until the last `n` attempts all connected (up to `timeout`).
    pub fn wait_ok_streak(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until_blocking(timeout, || {
            let a = lock(&self.attempts);
            a.len() >= n && a[a.len() - n..].iter().all(|x| x.err.is_none())
        })
    }

    /// Waits until `n` more attempts started after `t` connected, each after the last
    /// failure after `t`: the client is back (up to `timeout`).
    pub fn wait_back_after(&self, t: Instant, n: usize, timeout: Duration) -> bool {
        super::wait_until_blocking(timeout, || {
            let a = lock(&self.attempts);
            let tail: Vec<&Attempt> = a.iter().filter(|x| x.at >= t).collect();
            let streak = tail.iter().rev().take_while(|x| x.err.is_none()).count();
            streak >= n
        })
    }

    /// Failed attempts started within `[from, to)`.
    pub fn failures_between(&self, from: Instant, to: Instant) -> Vec<Attempt> {
        lock(&self.attempts)
            .iter()
            .filter(|x| x.at >= from && x.at < to && x.err.is_some())
            .cloned()
            .collect()
    }

    /// How long after `t` the client was back: the end of the last failed attempt that
    /// started after `t` (its start plus its 300 ms timeout at most, or the next
    /// attempt's start), relative to `t`; zero when none failed.
    pub fn back_after(&self, t: Instant) -> Duration {
        let a = lock(&self.attempts);
        let mut back = Duration::ZERO;
        for (k, x) in a.iter().enumerate() {
            if x.at >= t && x.err.is_some() {
                let end = a.get(k + 1).map_or(x.at, |n| n.at);
                back = back.max(end - t);
            }
        }
        back
    }

    /// One line: attempts, failures, first and last failure relative to `t0`.
    pub fn summary(&self, t0: Instant) -> String {
        let a = lock(&self.attempts);
        let fails: Vec<&Attempt> = a.iter().filter(|x| x.err.is_some()).collect();
        let rel = |x: &Attempt| {
            if x.at >= t0 {
                format!("+{:.3}s", (x.at - t0).as_secs_f64())
            } else {
                format!("-{:.3}s", (t0 - x.at).as_secs_f64())
            }
        };
        format!(
            "{} connects, {} failed{}",
            a.len(),
            fails.len(),
            match (fails.first(), fails.last()) {
                (Some(f), Some(l)) => format!(
                    " (first {} {:?}, last {} {:?})",
                    rel(f),
                    f.err.as_deref().unwrap_or(""),
                    rel(l),
                    l.err.as_deref().unwrap_or("")
                ),
                _ => String::new(),
            }
        )
    }
}

impl Drop for ClientLog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Adverts and floods

/// The VRRPv3 IPv4 checksum over the pseudo-header (RFC 9568 §5.2.8).
pub fn checksum_v3(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
    let mut data = Vec::new();
    data.extend_from_slice(&src.octets());
    data.extend_from_slice(&dst.octets());
    data.extend_from_slice(&[0, 112]);
    data.extend_from_slice(&u16::try_from(msg.len()).expect("short").to_be_bytes());
    data.extend_from_slice(msg);
    if data.len() % 2 == 1 {
        data.push(0);
    }
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A VRRPv3 IPv4 advert from `src` to `dst`: `vrid`, `prio`, interval in centiseconds
/// (12 bits), `vips`, good checksum.
pub fn advert_v3(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    vrid: u8,
    prio: u8,
    interval_cs: u16,
    vips: &[Ipv4Addr],
) -> Vec<u8> {
    let iv = interval_cs & 0x0fff;
    let mut msg = vec![
        0x31,
        vrid,
        prio,
        u8::try_from(vips.len()).expect("few VIPs"),
        (iv >> 8) as u8,
        (iv & 0xff) as u8,
        0,
        0,
    ];
    for v in vips {
        msg.extend_from_slice(&v.octets());
    }
    let sum = checksum_v3(src, dst, &msg);
    msg[6..8].copy_from_slice(&sum.to_be_bytes());
    msg
}

/// A raw protocol-112 socket in `ns` (the kernel writes the IPv4 header: source = the
/// namespace's address on the route to `dst`).
pub fn raw_112(node: &Node) -> std::io::Result<socket2::Socket> {
    let (ns, ifname, addr) = (node.ns.clone(), node.ifname.clone(), node.ipv4);
    std::thread::spawn(move || {
        enter(&ns)?;
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(112)),
        )?;
        // Multicast leaves by the namespace's one interface (it has no default route).
        s.bind_device(Some(ifname.as_bytes()))?;
        s.set_multicast_if_v4(&addr)?;
        s.set_multicast_ttl_v4(255)?;
        Ok(s)
    })
    .join()
    .map_err(|_| std::io::Error::other("socket thread panicked"))?
}

/// Sends `packet` to `dst` with `ttl` from `node`, `count` times, `every` apart.
pub fn send_adverts(
    node: &Node,
    dst: Ipv4Addr,
    ttl: u32,
    packet: &[u8],
    count: usize,
    every: Duration,
) -> std::io::Result<()> {
    let s = raw_112(node)?;
    s.set_ttl_v4(ttl)?;
    s.set_multicast_ttl_v4(ttl)?;
    let to = socket2::SockAddr::from(SocketAddrV4::new(dst, 0));
    for k in 0..count {
        s.send_to(packet, &to)?;
        if k + 1 < count {
            std::thread::sleep(every);
        }
    }
    Ok(())
}

/// Protocol-112 packets sent as fast as one thread can, from a namespace, until
/// stopped.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    started: Instant,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl Flood {
    /// Floods `dst` with `packet` (the VRRP message), IP TTL `ttl`, from `node`.
    pub fn start(node: &Node, dst: Ipv4Addr, ttl: u32, packet: Vec<u8>) -> std::io::Result<Flood> {
        let s = raw_112(node)?;
        s.set_ttl_v4(ttl)?;
        s.set_multicast_ttl_v4(ttl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        let to = socket2::SockAddr::from(SocketAddrV4::new(dst, 0));
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    match s.send_to(&packet, &to) {
                        Ok(_) => {
                            sent2.fetch_add(1, Ordering::Relaxed);
                        }
                        // A full queue: the machine's rate; keep going.
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        });
        Ok(Flood {
            stop,
            sent,
            started: Instant::now(),
            handle: Some(handle),
        })
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops it; (packets sent, per second).
    pub fn stop(&mut self) -> (u64, f64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if let Ok(Err(e)) = h.join() {
                eprintln!("flood sender stopped on an error: {e}");
            }
        }
        let n = self.sent();
        (n, n as f64 / self.started.elapsed().as_secs_f64())
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Links

/// Deletes master `i`'s interface (its veth pair, bridge port included).
pub fn delete_link(topo: &Topology, i: usize) -> std::io::Result<()> {
    let m = topo.master(i);
    ip(&["-n", &m.ns, "link", "del", &m.ifname])
}

/// Re-creates master `i`'s veth pair as the topology built it: same names, joined to
/// the bridge, the master's addresses, up.
pub fn recreate_link(topo: &Topology, i: usize) -> std::io::Result<()> {
    let m = topo.master(i);
    let (bns, port) = (topo.bridge_ns(), topo.bridge_port(i));
    ip(&[
        "link", "add", "name", &m.ifname, "netns", &m.ns, "type", "veth", "peer", "name", port,
        "netns", bns,
    ])?;
    ip(&[
        "-n",
        bns,
        "link",
        "set",
        port,
        "master",
        topo.bridge(),
        "up",
    ])?;
    add_own_addresses(topo, i)?;
    ip(&["-n", &m.ns, "link", "set", &m.ifname, "up"])
}

/// Adds master `i`'s own addresses back (after a flush), as a network manager would.
pub fn add_own_addresses(topo: &Topology, i: usize) -> std::io::Result<()> {
    let m = topo.master(i);
    let v4 = format!("{}/{}", m.ipv4, super::netns::V4_PREFIX);
    let v6 = format!("{}/{}", m.ipv6, super::netns::V6_PREFIX);
    ip(&["-n", &m.ns, "addr", "add", &v4, "dev", &m.ifname])?;
    ip(&["-n", &m.ns, "addr", "add", &v6, "dev", &m.ifname, "nodad"])
}

/// Runs `ip -n NS args...` in master `i`'s namespace.
pub fn ip_in(topo: &Topology, i: usize, args: &[&str]) -> std::io::Result<()> {
    let mut all = vec!["-n", topo.master(i).ns.as_str()];
    all.extend_from_slice(args);
    ip(&all)
}
