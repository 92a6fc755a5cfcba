//! A reloaded `vrrp:` section applied to running elections in network namespaces
//! (root): three masters elect the VIP, a client connects to it all along, and one
//! node after another is reconfigured through [`VrrpHandle::reconfigure`], the call
//! the daemon's reload makes. What a client of the VIP notices is measured: a lower
//! priority that still wins moves nothing, one below a preempting backup is a
//! planned handover, a VIP added or removed appears or goes on the holder only (and
//! is announced), a new advert interval moves nothing.
//!
//! Each master runs the election in-process ([`spawn_dedicated`], as the supervisor
//! does) on a thread that joined its namespace, with a TCP listener on :6443 as the
//! service behind the VIP. Dropping a node aborts its election (the VIPs are removed)
//! and the topology's drop removes the namespaces.

mod support;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use apivip::config::{BackendId, FrontendKind, Track, Vrrp};
use apivip::events::History;
use apivip::health::{
    self, BackendHealth, DownCause, FrontendHealth, HealthPublisher, HealthSnapshot, Status,
};
use apivip::vrrp::io::shell::{spawn_dedicated, VrrpHandle, VrrpReport};
use apivip::vrrp::machine::{InstanceConfig, Reason, State, VersionConfig};
use apivip::vrrp::units::{Centisecs, Priority, Vrid};
use support::connect::ConnectLoop;
use support::netns::{NsProcess, Topology};
use support::vrrp::{self, need};
use tokio_util::sync::CancellationToken;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 6);
const PORT: u16 = 6443;
const VRID: u8 = 51;
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a reload or a report may take the election thread.
const BOUND: Duration = Duration::from_secs(5);

fn vip() -> IpAddr {
    IpAddr::V4(VIP)
}

/// The section of master `i` with priority `prio`, 100 ms adverts and `vips` (/24).
fn section(topo: &Topology, i: usize, prio: u8, vips: &[Ipv4Addr]) -> Vrrp {
    let m = topo.master(i);
    let mut instance = InstanceConfig::new(
        Vrid::new_unchecked(VRID),
        VersionConfig::V3 {
            interval: Centisecs::new_unchecked(10),
        },
        IpAddr::V4(m.ipv4),
        vips.iter().map(|&v| IpAddr::V4(v)).collect(),
    );
    instance.base_priority = Priority::new(prio);
    // Long enough for 1 s adverts too (at least 4 intervals).
    instance.handover_timeout = Duration::from_secs(10);
    Vrrp {
        name: format!("vrid-{}", instance.vrid.get()),
        sync_group: None,
        interface: m.ifname.clone(),
        instance,
        vips: vips.iter().map(|&v| (IpAddr::V4(v), 24)).collect(),
        track: Track::Backend(BACKEND),
    }
}

/// The backend each node tracks (its own service), healthy.
const BACKEND: BackendId = BackendId {
    frontend: FrontendKind::Apiserver,
    master: 0,
};

/// A second backend, not ready: what a reload may renumber the track to.
const OTHER: BackendId = BackendId {
    frontend: FrontendKind::Apiserver,
    master: 1,
};

/// Each node's health view: [`BACKEND`] up, [`OTHER`] not ready.
fn health_at_start() -> HealthSnapshot {
    let backend = |id: BackendId, name: &str, status| BackendHealth {
        id,
        name: name.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], PORT)),
        status,
        reason: "test".into(),
        since: None,
        drained: false,
    };
    HealthSnapshot {
        generation: 0,
        frontends: vec![FrontendHealth {
            kind: FrontendKind::Apiserver,
            accept_error: None,
            backends: vec![
                backend(BACKEND, "self", Status::Up),
                backend(OTHER, "other", Status::Down(DownCause::NotReady)),
            ],
        }],
    }
}

/// One master's election, running in its namespace.
struct Node {
    handle: VrrpHandle,
    /// Its health view's write side.
    health: HealthPublisher,
    abort: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The section it runs now.
    cfg: Vrrp,
}

impl Node {
    fn start(topo: &Topology, i: usize, cfg: Vrrp) -> Node {
        let path = format!("/run/netns/{}", topo.master(i).ns);
        let (tx, rx) = std::sync::mpsc::channel();
        let start_cfg = cfg.clone();
        let thread = std::thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(("0.0.0.0", PORT))
                    .await
                    .expect("bind :6443");
                tokio::spawn(async move {
                    while let Ok((conn, _)) = listener.accept().await {
                        drop(conn);
                    }
                });
                let (publisher, view) = health::channel(health_at_start());
                let abort = CancellationToken::new();
                match spawn_dedicated(start_cfg, view, false, abort.clone(), History::default())
                    .await
                {
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                    Ok((handle, done)) => {
                        let _ = tx.send(Ok((handle, abort, publisher)));
                        // Ends on abort (the node's drop), which removes the VIPs.
                        let _ = done.await;
                    }
                }
            });
        });
        let (handle, abort, health) = rx
            .recv_timeout(DEADLINE)
            .expect("the election did not start")
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        Node {
            handle,
            health,
            abort,
            thread: Some(thread),
            cfg,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.abort.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Three masters with priorities 100, 150, 120 (node 1 holds the VIP), and a runtime
/// to call their handles from the test thread.
struct Cluster {
    nodes: Vec<Node>,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    // Dropped last: the nodes' threads are in its namespaces.
    topo: Topology,
}

impl Cluster {
    /// The cluster for test `name`, which needs root and `bins`: None (the test skips,
    /// or fails under `APIVIP_REQUIRE_NETNS=1`) without them.
    fn start_for(name: &str, bins: &[&str]) -> Option<Cluster> {
        need(name, bins).then(Cluster::start)
    }

    fn start() -> Cluster {
        let topo = Topology::new(3).unwrap();
        let nodes = [(0, 100), (1, 150), (2, 120)]
            .iter()
            .map(|&(i, p)| Node::start(&topo, i, section(&topo, i, p, &[VIP])))
            .collect();
        let c = Cluster {
            nodes,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            dir: tempfile::tempdir().unwrap(),
            topo,
        };
        assert!(
            support::wait_until_blocking(DEADLINE, || c.holders(vip()) == vec![1]),
            "the highest priority (node 1) never held the VIP alone: {:?}\n{}",
            c.holders(vip()),
            c.reports()
        );
        c
    }

    fn holders(&self, addr: IpAddr) -> Vec<usize> {
        self.topo.holders_of(addr).unwrap_or_default()
    }

    fn report(&self, i: usize) -> VrrpReport {
        self.rt
            .block_on(self.nodes[i].handle.report(BOUND))
            .unwrap_or_else(|| panic!("node {i}: the election thread does not answer"))
    }

    /// Every node's report, for failure messages.
    fn reports(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                let r = self.rt.block_on(self.nodes[i].handle.report(BOUND));
                format!("--- node {i}: {r:#?}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Reloads node `i` with its section edited by `change`; must be applied.
    fn reload(&mut self, i: usize, change: impl FnOnce(&mut Vrrp)) {
        let mut cfg = self.nodes[i].cfg.clone();
        change(&mut cfg);
        let r = self
            .rt
            .block_on(self.nodes[i].handle.reconfigure(cfg.clone(), false, BOUND));
        assert!(r.is_ok(), "node {i}: reload refused: {r:?}");
        self.nodes[i].cfg = cfg;
    }

    /// The priority node `from` last heard from node `about`.
    fn heard_priority(&self, from: usize, about: usize) -> Option<u8> {
        let addr = IpAddr::V4(self.topo.master(about).ipv4);
        self.report(from)
            .peers
            .iter()
            .find(|p| p.addr == addr)
            .map(|p| p.priority)
    }

    /// How often node `i` entered `state` for `reason` so far.
    fn transitions(&self, i: usize, state: State, reason: Reason) -> u64 {
        self.report(i)
            .transitions
            .iter()
            .filter(|(s, r, _)| (*s, *r) == (state, reason))
            .map(|(_, _, n)| n)
            .sum()
    }

    /// How often each node became Master so far (a node started a little later than
    /// another may have been preempted once at startup: tests compare counts).
    fn times_master_all(&self) -> Vec<u64> {
        (0..self.nodes.len())
            .map(|i| self.times_master(i))
            .collect()
    }

    /// Node 1 still holds the VIP alone, and no node became Master since `before`
    /// ([`Self::times_master_all`]).
    fn assert_unmoved(&self, before: &[u64]) {
        assert_eq!(self.holders(vip()), vec![1], "{}", self.reports());
        assert_eq!(
            self.times_master_all(),
            before,
            "a node changed state\n{}",
            self.reports()
        );
    }

    /// How often node `i` became Master so far.
    fn times_master(&self, i: usize) -> u64 {
        self.report(i)
            .transitions
            .iter()
            .filter(|(s, _, _)| *s == State::Master)
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// A connect loop to VIP:6443 with some traffic through it already.
fn client(c: &Cluster) -> ConnectLoop {
    let client = ConnectLoop::start(&c.topo, SocketAddr::new(vip(), PORT));
    assert!(
        client.wait_more(60),
        "no connects to the VIP succeed\n{}",
        c.reports()
    );
    client
}

/// The holder's priority lowered but still the highest: it keeps the VIP, the
/// backups hear the new priority, and no connect fails.
#[test]
fn lower_but_winning_priority_keeps_the_vip_without_a_failed_connect() {
    let name = "lower_but_winning_priority_keeps_the_vip_without_a_failed_connect";
    let Some(mut c) = Cluster::start_for(name, &[]) else {
        return;
    };
    let client = client(&c);
    let before = c.times_master_all();
    c.reload(1, |v| v.instance.base_priority = Priority::new(130));
    let heard = support::wait_until_blocking(DEADLINE, || {
        [0, 2].iter().all(|&i| c.heard_priority(i, 1) == Some(130))
    });
    let more = client.wait_more(60);
    let report = client.finish();
    println!("{name}: {}", report.summary());
    assert!(
        heard,
        "the backups never heard priority 130\n{}",
        c.reports()
    );
    assert!(more, "connects stopped succeeding\n{}", c.reports());
    report.assert_none_failed(&c.reports());
    c.assert_unmoved(&before);
    let holder = c.report(1);
    assert_eq!(holder.state, State::Master);
    assert_eq!((holder.priority, holder.effective_priority), (130, 130));
}

/// The holder's priority lowered below a preempting backup's: a planned handover to
/// that backup (no priority 0, the old holder releases the VIP when it hears the new
/// one), with no failed connect beyond the one reset a move may cause.
#[test]
fn priority_below_a_preempting_backup_hands_the_vip_over() {
    let name = "priority_below_a_preempting_backup_hands_the_vip_over";
    let Some(mut c) = Cluster::start_for(name, &[]) else {
        return;
    };
    let client = client(&c);
    let yielded = c.transitions(1, State::Backup, Reason::HigherPriority);
    let preempted = c.transitions(2, State::Master, Reason::Preempt);
    c.reload(1, |v| v.instance.base_priority = Priority::new(110));
    let moved = support::wait_until_blocking(DEADLINE, || c.holders(vip()) == vec![2]);
    let more = moved && client.wait_more(60);
    let report = client.finish();
    println!("{name}: {}", report.summary());
    assert!(
        moved,
        "the VIP did not move to node 2: {:?}\n{}",
        c.holders(vip()),
        c.reports()
    );
    assert!(
        more,
        "connects stopped succeeding after the move\n{}",
        c.reports()
    );
    report.assert_only_move_resets(1, &c.reports());
    let old = c.report(1);
    assert_eq!(old.state, State::Backup, "{}", c.reports());
    assert_eq!(old.stats.priority_zero_sent, 0);
    assert_eq!(
        c.transitions(1, State::Backup, Reason::HigherPriority),
        yielded + 1
    );
    assert_eq!(
        c.transitions(2, State::Master, Reason::Preempt),
        preempted + 1
    );
    assert_eq!(c.report(0).state, State::Backup);
}

/// A second VIP, reloaded on the backups first and then on the holder: it appears on
/// the holder only, at its reload, and is announced with a gratuitous ARP; clients
/// reach it. Removed the same way, it goes. Nothing moves, no advert is dropped, no
/// connect to the first VIP fails.
#[test]
fn a_vip_added_and_removed_on_every_node_appears_and_goes_on_the_holder_only() {
    let name = "a_vip_added_and_removed_on_every_node_appears_and_goes_on_the_holder_only";
    let Some(mut c) = Cluster::start_for(name, &["tcpdump"]) else {
        return;
    };
    let client = client(&c);
    let before = c.times_master_all();
    let vip2 = IpAddr::V4(VIP2);
    let pcap = c.dir.path().join("client-arp.pcap");
    let mut cap = c.topo.capture(c.topo.client(), "arp", &pcap).unwrap();
    let add = |v: &mut Vrrp| {
        v.instance.vips.push(vip2);
        v.vips.push((vip2, 24));
    };
    for i in [0, 2] {
        c.reload(i, add);
        assert!(
            c.holders(vip2).is_empty(),
            "a backup added the VIP\n{}",
            c.reports()
        );
    }
    c.reload(1, add);
    // `reconfigure` returns once the holder has added it.
    assert_eq!(c.holders(vip2), vec![1], "{}", c.reports());
    vrrp::assert_garp(DEADLINE, &mut cap, c.topo.master(1), VIP2);
    let reached = c
        .topo
        .client()
        .run_in(move || {
            std::net::TcpStream::connect_timeout(
                &SocketAddr::new(vip2, PORT),
                Duration::from_secs(3),
            )
        })
        .unwrap();
    assert!(reached.is_ok(), "no connect to the new VIP: {reached:?}");

    let remove = |v: &mut Vrrp| {
        v.instance.vips.retain(|a| *a != vip2);
        v.vips.retain(|(a, _)| *a != vip2);
    };
    for i in [0, 2] {
        c.reload(i, remove);
    }
    assert_eq!(
        c.holders(vip2),
        vec![1],
        "removed before the holder's reload"
    );
    c.reload(1, remove);
    assert!(c.holders(vip2).is_empty(), "{}", c.reports());
    let more = client.wait_more(60);
    let report = client.finish();
    assert!(more, "connects stopped succeeding\n{}", c.reports());
    report.assert_none_failed(&c.reports());
    c.assert_unmoved(&before);
    for i in 0..3 {
        let r = c.report(i);
        assert_eq!(
            r.stats.address_list_errors,
            0,
            "node {i} dropped adverts\n{}",
            c.reports()
        );
    }
}

/// The advert interval from 100 ms to 1 s, the holder first: the backups learn it
/// from its next advert and wait the longer Master_Down_Interval; nothing moves while
/// several of the new intervals pass (far more than the old 3.6 intervals), and no
/// connect fails.
#[test]
fn a_new_advert_interval_moves_nothing() {
    let name = "a_new_advert_interval_moves_nothing";
    let Some(mut c) = Cluster::start_for(name, &[]) else {
        return;
    };
    let client = client(&c);
    let before = c.times_master_all();
    let one_second = |v: &mut Vrrp| {
        v.instance.version = VersionConfig::V3 {
            interval: Centisecs::new_unchecked(100),
        }
    };
    for i in [1, 0, 2] {
        c.reload(i, one_second);
    }
    let learned = support::wait_until_blocking(DEADLINE, || {
        [0, 2]
            .iter()
            .all(|&i| c.report(i).advert_interval == Duration::from_secs(1))
    });
    assert!(
        learned,
        "the backups never learned the 1 s interval\n{}",
        c.reports()
    );
    // Four adverts at the new interval: longer than a backup's new Master_Down_Interval
    // (3 s + skew), so a backup that ignored them would have taken over.
    let sent = c.report(1).stats.adverts_sent;
    let waited =
        support::wait_until_blocking(DEADLINE, || c.report(1).stats.adverts_sent >= sent + 4);
    let report = client.finish();
    assert!(waited, "the holder stopped advertising\n{}", c.reports());
    report.assert_none_failed(&c.reports());
    c.assert_unmoved(&before);
}

/// A changed VRID or interface cannot be applied in place: the reload is refused
/// with an error saying the instance must be replaced, and nothing changes.
#[test]
fn a_changed_vrid_is_refused_and_changes_nothing() {
    let name = "a_changed_vrid_is_refused_and_changes_nothing";
    let Some(c) = Cluster::start_for(name, &[]) else {
        return;
    };
    let mut cfg = c.nodes[1].cfg.clone();
    cfg.instance.vrid = Vrid::new_unchecked(52);
    let r =
        c.rt.block_on(c.nodes[1].handle.reconfigure(cfg, false, BOUND));
    let e = r.expect_err("a VRID change must be refused");
    assert!(
        matches!(e, apivip::vrrp::io::shell::ReconfigureError::Replace(_)),
        "{e:?}"
    );
    assert!(e.to_string().contains("replace the instance"), "{e}");
    let mut cfg = c.nodes[1].cfg.clone();
    cfg.interface = "nosuch0".into();
    let e =
        c.rt.block_on(c.nodes[1].handle.reconfigure(cfg, false, BOUND))
            .expect_err("an interface change must be refused");
    assert!(
        e.to_string().contains("interface") && e.to_string().contains("nosuch0"),
        "{e}"
    );
    let r = c.report(1);
    assert_eq!((r.state, r.priority), (State::Master, 150));
    assert_eq!(c.holders(vip()), vec![1]);
}

/// The track changes with the rest of the section (a reload that renumbered the
/// backends): the holder now tracks a backend that is not ready, so its priority
/// drops by the health weight below a preempting backup's and the VIP moves; once
/// that backend is up, the node follows it (not the old one) and takes the VIP back.
#[test]
fn a_new_track_applies_with_the_section_and_is_followed_afterwards() {
    let name = "a_new_track_applies_with_the_section_and_is_followed_afterwards";
    let Some(mut c) = Cluster::start_for(name, &[]) else {
        return;
    };
    let client = client(&c);
    c.reload(1, |v| {
        v.track = Track::Backend(OTHER);
        v.instance.health_weight = 50;
    });
    let r = c.report(1);
    assert!(!r.can_serve, "{r:#?}");
    assert_eq!(
        (r.effective_priority, r.lowered_by),
        (100, Some("cannot_serve"))
    );
    let moved = support::wait_until_blocking(DEADLINE, || c.holders(vip()) == vec![2]);
    assert!(moved, "the VIP did not move to node 2\n{}", c.reports());
    // The old tracked backend going down changes nothing now.
    c.nodes[1]
        .health
        .publish(0, BACKEND, Status::Down(DownCause::Unreachable), "test");
    c.nodes[1].health.publish(0, OTHER, Status::Up, "test");
    let back = support::wait_until_blocking(DEADLINE, || c.holders(vip()) == vec![1]);
    let more = back && client.wait_more(60);
    let report = client.finish();
    assert!(back, "node 1 did not take the VIP back\n{}", c.reports());
    assert!(more, "connects stopped succeeding\n{}", c.reports());
    let r = c.report(1);
    assert!(r.can_serve && r.effective_priority == 150, "{r:#?}");
    report.assert_only_move_resets(2, &c.reports());
}

// ---------------------------------------------------------------------------------------
// End to end: `apivip run` on every master, `apivip reload` (what SIGHUP does).

const BIN: &str = env!("CARGO_BIN_EXE_apivip");

/// A TCP listener on :6443 in every master's namespace, accepting until dropped.
struct Services {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Services {
    fn start(topo: &Topology) -> Services {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..topo.masters().len())
            .map(|i| {
                let listener = topo
                    .master(i)
                    .run_in(|| std::net::TcpListener::bind(("0.0.0.0", PORT)))
                    .unwrap()
                    .unwrap();
                listener.set_nonblocking(true).unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((conn, _)) => drop(conn),
                            Err(_) => std::thread::sleep(Duration::from_millis(1)),
                        }
                    }
                })
            })
            .collect();
        Services { stop, threads }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Writes master `i`'s config: VIP only, tracking its own service on :6443.
fn write_config(topo: &Topology, dir: &std::path::Path, i: usize, prio: u8) -> std::path::PathBuf {
    let m = topo.master(i);
    let path = dir.join(format!("apivip-{i}.yaml"));
    std::fs::write(
        &path,
        format!(
            "backends:\n  - {{name: self, address: '{ip}:{PORT}'}}\napiserver:\n  listen: []\n  check: {{kind: tcp, interval: 100ms, timeout: 100ms, rise: 1}}\nvrrp:\n  interface: {ifname}\n  address: {ip}\n  vrid: {VRID}\n  priority: {prio}\n  advert_interval: 100ms\n  vips: [{VIP}/24]\n  handover_timeout: 1s\n  track: backend:self\nshutdown: {{drain_timeout: 1s}}\n",
            ip = m.ipv4,
            ifname = m.ifname,
        ),
    )
    .unwrap();
    path
}

/// `apivip run` on each master `i` with priority `prio` (config from [`write_config`],
/// debug logs), once node 1 (the highest priority) holds the VIP alone.
fn run_daemons(topo: &Topology, dir: &std::path::Path, prios: &[(usize, u8)]) -> Vec<NsProcess> {
    let nodes: Vec<_> = prios
        .iter()
        .map(|&(i, prio)| {
            let config = write_config(topo, dir, i, prio);
            vrrp::run_node(topo.master(i), dir, i, &config)
        })
        .collect();
    let holders = || topo.holders_of(vip()).unwrap_or_default();
    assert!(
        support::wait_until_blocking(DEADLINE, || holders() == vec![1]),
        "node 1 never held the VIP alone: {:?}\n{}",
        holders(),
        daemon_logs(&nodes)
    );
    nodes
}

/// The last 40 lines of each daemon's log, for failure messages.
fn daemon_logs(nodes: &[NsProcess]) -> String {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("--- node {i}\n{}", vrrp::tail(&n.log(), 40)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `apivip reload` on the holder with a lower priority that still wins: applied to the
/// running election (not a restart of it), no failed connect, the VIP stays, and a
/// backup's `apivip status` shows the new priority.
#[test]
fn apivip_reload_applies_a_priority_in_place() {
    let name = "apivip_reload_applies_a_priority_in_place";
    if !need(name, &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(3).unwrap();
    let _services = Services::start(&topo);
    let nodes = run_daemons(&topo, dir.path(), &[(0, 100), (1, 150), (2, 120)]);
    let logs = || daemon_logs(&nodes);
    let holders = || topo.holders_of(vip()).unwrap_or_default();
    let client = ConnectLoop::start(&topo, SocketAddr::new(vip(), PORT));
    assert!(client.wait_more(60), "no connects succeed\n{}", logs());
    write_config(&topo, dir.path(), 1, 130);
    let out = topo.master(1).exec(&[BIN, "reload"]).unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "apivip reload failed: {said}\n{}",
        logs()
    );
    let peer_priority = || {
        let out = topo.master(0).exec(&[BIN, "status", "--json"]).ok()?;
        let doc: apivip::admin::status::StatusDoc = serde_json::from_slice(&out.stdout).ok()?;
        let m1 = topo.master(1).ipv4.to_string();
        doc.vrrp?
            .peers
            .iter()
            .find(|p| p.address == m1)
            .map(|p| p.priority)
    };
    let heard = support::wait_until_blocking(DEADLINE, || peer_priority() == Some(130));
    let more = client.wait_more(60);
    let report = client.finish();
    assert!(
        heard,
        "node 0 never heard priority 130: {:?}\n{}",
        peer_priority(),
        logs()
    );
    assert!(more, "connects stopped succeeding\n{}", logs());
    report.assert_none_failed(&logs());
    assert_eq!(holders(), vec![1], "{}", logs());
    let log1 = nodes[1].log();
    assert!(log1.contains("vrrp: reload applied"), "{}", logs());
    assert!(!log1.contains("replacing the election"), "{}", logs());
    assert_eq!(
        log1.matches("vrrp: state changed").count(),
        2,
        "node 1 changed state other than at startup\n{}",
        logs()
    );
}

/// `apivip reload` on the holder with an interface that does not exist: the election is
/// replaced (a planned handover to the backup), the new one cannot start; the reload
/// says the file is applied except for that, `/readyz` says no election runs, the same
/// file reloaded again tries again, and the original file brings the election back
/// (the node takes the VIP back with its higher priority).
#[test]
fn a_replaced_election_that_cannot_start_is_reported_and_started_by_the_next_reload() {
    let name = "a_replaced_election_that_cannot_start_is_reported_and_started_by_the_next_reload";
    if !need(name, &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(2).unwrap();
    let _services = Services::start(&topo);
    let nodes = run_daemons(&topo, dir.path(), &[(0, 100), (1, 150)]);
    let logs = || daemon_logs(&nodes);
    let holders = || topo.holders_of(vip()).unwrap_or_default();
    let good = std::fs::read_to_string(dir.path().join("apivip-1.yaml")).unwrap();
    let bad = good.replace(
        &format!("interface: {}", topo.master(1).ifname),
        "interface: apv-absent0",
    );
    assert_ne!(good, bad);
    let reload = |text: &str| {
        std::fs::write(dir.path().join("apivip-1.yaml"), text).unwrap();
        let cfg = dir.path().join("apivip-1.yaml");
        let out = topo
            .master(1)
            .exec(&[BIN, "reload", "-c", cfg.to_str().unwrap()])
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said)
    };
    let (ok, said) = reload(&bad);
    assert!(!ok, "{said}");
    assert!(said.contains("applied, except"), "{said}\n{}", logs());
    assert!(said.contains("apv-absent0"), "{said}");
    assert!(
        support::wait_until_blocking(DEADLINE, || holders() == vec![0]),
        "the backup did not take the VIP: {:?}\n{}",
        holders(),
        logs()
    );
    let readyz = || {
        let out = topo
            .master(1)
            .exec(&["curl", "-s", "http://127.0.0.1:9469/readyz"])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(readyz().contains("no election runs"), "{}", readyz());
    // The same file again: the election is tried again (and fails the same way).
    let (ok, said) = reload(&bad);
    assert!(!ok && said.contains("apv-absent0"), "{said}");
    // The original file: the election runs again and takes the VIP back.
    let (ok, said) = reload(&good);
    assert!(ok, "{said}\n{}", logs());
    assert!(
        support::wait_until_blocking(DEADLINE, || holders() == vec![1]),
        "node 1 did not take the VIP back: {:?}\n{}",
        holders(),
        logs()
    );
    assert!(!readyz().contains("no election runs"), "{}", readyz());
}
