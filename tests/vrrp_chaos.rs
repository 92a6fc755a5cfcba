//! Chaos on the VRRP segment (root, network namespaces): what a client of the VIP
//! notices when the network, the kernel or a hostile neighbour misbehaves (issue 11).
//!
//! Two `apivip run` nodes (masters 0 and 1, 100 ms adverts, the proxy on :8443 in front
//! of an `apivip demo` apiserver on each) and a client namespace that connects to
//! VIP:8443 every 5 ms throughout, recording every attempt. Master 2's namespace runs
//! no daemon: it is the third namespace on the segment, where floods, forgeries and the
//! ARP prober come from.
//!
//! The tests assert behaviour, not how long they wait: every wait is a condition with a
//! generous deadline. Bounds are asserted only where the issue states one, relative to
//! the advert interval; each test prints what it measured. The tests take a lock
//! ([`Serial`]) and run one after another: they measure recovery in wall-clock time.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::chaos::{
    self, advert_v3, mac_text, ArpProbe, ClientLog, Flood, Impairment, Netem, Serial, VipMonitor,
};
use support::metric_sample as metric;
use support::netns::{NsProcess, Topology};
use support::vrrp::{self, need};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
const MCAST: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VRID: u8 = 51;
const PORT: u16 = 8443;
/// The configured advert interval.
const INTERVAL: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(20);
/// The daemons' nodes (masters 0 and 1); master 2 is the third namespace.
const NODES: usize = 2;
const THIRD: usize = 2;

fn vip() -> IpAddr {
    IpAddr::V4(VIP)
}

/// Master_Down_Interval of a backup at `prio` (RFC 9568 §6.1): 3 x interval + skew.
fn master_down(prio: u8) -> Duration {
    INTERVAL * 3 + INTERVAL.mul_f64(f64::from(256 - u32::from(prio)) / 256.0)
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Two daemons, their apiservers, a client, a third namespace.
struct Chaos {
    topo: Topology,
    dir: tempfile::TempDir,
    _apis: Vec<NsProcess>,
    nodes: Vec<Option<NsProcess>>,
    prios: Vec<u8>,
    extra: Vec<String>,
}

impl Chaos {
    /// Starts the nodes in `order` (the first one alone until it holds the VIP) with
    /// priorities `prios`, `extra(topo, i)` appended to node `i`'s `vrrp:` section,
    /// and waits until `holder` holds the VIP alone.
    fn start(
        prios: [u8; NODES],
        order: [usize; NODES],
        holder: usize,
        extra: impl Fn(&Topology, usize) -> String,
    ) -> Chaos {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::new(NODES + 1).unwrap();
        let apis = (0..NODES)
            .map(|i| vrrp::start_demo(topo.master(i), dir.path(), i))
            .collect();
        let extra: Vec<String> = (0..NODES).map(|i| extra(&topo, i)).collect();
        let mut c = Chaos {
            topo,
            dir,
            _apis: apis,
            nodes: (0..NODES).map(|_| None).collect(),
            prios: prios.to_vec(),
            extra,
        };
        for (k, &i) in order.iter().enumerate() {
            c.restart(i);
            if k == 0 {
                assert!(
                    support::wait_until_blocking(DEADLINE, || c.holders() == vec![i]),
                    "node {i}, started first, never held the VIP: {:?}\n{}",
                    c.holders(),
                    c.logs()
                );
            }
        }
        assert!(
            support::wait_until_blocking(DEADLINE, || c.holders() == vec![holder]),
            "node {holder} never held the VIP alone: {:?}\n{}",
            c.holders(),
            c.logs()
        );
        c
    }

    /// (Re)starts `apivip run` on node `i` with its config.
    fn restart(&mut self, i: usize) {
        let m = self.topo.master(i);
        let backends: String = (0..NODES)
            .map(|k| {
                format!(
                    "  - {{name: master-{k}, address: '{}:6443'}}\n",
                    self.topo.master(k).ipv4
                )
            })
            .collect();
        let config = self.dir.path().join(format!("apivip-{i}.yaml"));
        std::fs::write(
            &config,
            format!(
                "backends:\n{backends}apiserver:\n  listen: 0.0.0.0:{PORT}\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms}}\nvrrp:\n  interface: {}\n  address: {}\n  vrid: {VRID}\n  priority: {}\n  advert_interval: 100ms\n  vips: [{VIP}/24]\n  handover_timeout: 1s\n  track: proxy\n{}shutdown: {{drain_timeout: 1s}}\n",
                m.ifname, m.ipv4, self.prios[i], self.extra[i]
            ),
        )
        .unwrap();
        self.nodes[i] = Some(vrrp::run_node(m, self.dir.path(), i, &config));
    }

    fn node(&self, i: usize) -> &NsProcess {
        self.nodes[i].as_ref().expect("node running")
    }

    fn holders(&self) -> Vec<usize> {
        let all = self.topo.holders_of(vip()).unwrap_or_default();
        all.into_iter().filter(|&i| i < NODES).collect()
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, n.as_ref()?)))
            .map(|(i, n)| format!("--- node {i}\n{}", vrrp::tail(&n.log(), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn client(&self) -> ClientLog {
        let client = ClientLog::start(self.topo.client(), SocketAddr::new(vip(), PORT));
        assert!(
            client.wait_ok_streak(40, DEADLINE),
            "the client does not reach the VIP: {}\n{}",
            client.summary(Instant::now()),
            self.logs()
        );
        client
    }

    fn monitor(&self) -> VipMonitor {
        VipMonitor::start(&self.topo, NODES, vip())
    }

    /// Node `i`'s metrics (Prometheus text), from its admin endpoint.
    fn metrics(&self, i: usize) -> String {
        vrrp::metrics(self.topo.master(i))
    }

    /// How many state changes node `i` logged.
    fn state_changes(&self, i: usize) -> usize {
        self.node(i)
            .log()
            .lines()
            .filter(|l| l.contains("state changed"))
            .count()
    }

    /// Which node the client's neighbour entry for the VIP points at (`ip neigh`), with
    /// the entry's state: what the client's next packet to the VIP reaches.
    fn client_neigh(&self) -> String {
        let out = self
            .topo
            .client()
            .exec(&["ip", "neigh", "show", &VIP.to_string()])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let who = (0..NODES)
            .find(|&i| out.contains(&vrrp::mac(self.topo.master(i))))
            .map_or("no node".to_owned(), |i| format!("node {i}"));
        format!("{who} ({out})")
    }

    /// Waits until exactly one node holds the VIP; that node.
    fn wait_one_holder(&self, timeout: Duration) -> Option<usize> {
        let mut h = Vec::new();
        support::wait_until_blocking(timeout, || {
            h = self.holders();
            h.len() == 1
        });
        (h.len() == 1).then(|| h[0])
    }
}

/// The new metrics of issue 11, printed when present (asserted by the lead's own tests).
fn print_new_metrics(c: &Chaos, i: usize) {
    let m = c.metrics(i);
    let found: Vec<&str> = m
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && [
                    "apivip_vrrp_split_brain_total",
                    "apivip_vrrp_vip_restored_total",
                    "apivip_vrrp_faults_total",
                    "apivip_vrrp_kernel_drops_total",
                ]
                .iter()
                .any(|n| l.starts_with(n))
        })
        .collect();
    println!(
        "node {i} issue-11 metrics: {}",
        if found.is_empty() {
            "none exported".to_owned()
        } else {
            found.join("; ")
        }
    );
}

/// The sum of every sample of the counter family `name` (`None`: not exported, as
/// before issue 11's metrics).
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// When node `i` exports the counter `name` (issue 11's metrics), asserts that it
/// counted at least one; behaviour is asserted first, this only checks the count.
fn assert_counted_if_exported(c: &Chaos, i: usize, name: &str, what: &str) {
    let m = c.metrics(i);
    if let Some(n) = metric_sum(&m, name) {
        assert!(n >= 1.0, "node {i}: {what}, but {name} is {n}\n{m}");
    }
}

/// Asserts that every two-holder episode (outside `excluded`) lasted at most one advert
/// interval.
fn assert_no_long_dual(
    c: &Chaos,
    mon: &VipMonitor,
    excluded: &[(usize, Instant, Instant)],
    what: &str,
) {
    let duals = mon.duals(excluded);
    let longest = duals.iter().map(|d| d.len).max().unwrap_or_default();
    println!(
        "{what}: {} two-holder episode(s), longest {}",
        duals.len(),
        secs(longest)
    );
    let long: Vec<_> = duals.iter().filter(|d| d.len > INTERVAL).collect();
    assert!(
        long.is_empty(),
        "{what}: two holders for longer than one advert interval ({INTERVAL:?}): {:?}\n{}\n{}",
        long.iter()
            .map(|d| format!(
                "{:?} at +{} for {}",
                d.nodes,
                secs(d.start.saturating_duration_since(mon.started())),
                secs(d.len)
            ))
            .collect::<Vec<_>>(),
        mon.describe(),
        c.logs()
    );
}

// ---------------------------------------------------------------------------------------
// Impairment of the segment

/// 5 % loss on the holder's link (both directions; every advert the backup should hear
/// crosses it once) at 100 ms adverts: the VIP does not move in 60 s.
///
/// An RFC-exact router takes over after three adverts lost in a row: at 5 % that is
/// 1.25e-4 per advert, a needless move in about 7 % of 60 s runs (600 adverts). The
/// backup's lossy-link hysteresis (the machine's module doc) waits up to three
/// intervals longer once it has seen adverts go missing, which it must have counted
/// here (`apivip_vrrp_adverts_missed`). The test reports the relay's losses.
#[test]
fn five_percent_loss_moves_no_vip_in_60_s() {
    let name = "five_percent_loss_moves_no_vip_in_60_s";
    if !need(name, &["curl", "tc"]) {
        return;
    }
    let _serial = Serial::take();
    let c = Chaos::start([150, 100], [0, 1], 0, |_, _| String::new());
    let client = c.client();
    let mon = c.monitor();
    let before: Vec<usize> = (0..NODES).map(|i| c.state_changes(i)).collect();
    let imp = Impairment::start(
        &c.topo,
        &[0],
        Netem {
            loss: 5.0,
            ..Netem::default()
        },
    )
    .unwrap();
    let t0 = Instant::now();
    let mut moved = None;
    while t0.elapsed() < Duration::from_secs(60) {
        let h = c.holders();
        if h != vec![0] {
            moved = Some((t0.elapsed(), h));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = imp.counts();
    println!(
        "{name}: {} for {}; relay frames forwarded/dropped/duplicated {counts:?}; client {}",
        imp.mechanism(),
        secs(t0.elapsed()),
        client.summary(t0)
    );
    drop(imp);
    assert!(
        moved.is_none(),
        "the VIP moved under 5 % loss: {moved:?}\n{}\n{}",
        mon.describe(),
        c.logs()
    );
    assert!(
        mon.events().is_empty(),
        "the VIP was added or removed under 5 % loss\n{}\n{}",
        mon.describe(),
        c.logs()
    );
    let after: Vec<usize> = (0..NODES).map(|i| c.state_changes(i)).collect();
    assert_eq!(before, after, "state changes under 5 % loss\n{}", c.logs());
    let m = c.metrics(1);
    let missed = metric_sum(&m, "apivip_vrrp_adverts_missed_total").unwrap_or(0.0);
    println!("{name}: the backup counted {missed} missed adverts");
    assert!(
        missed >= 1.0,
        "the backup saw no advert go missing under 5 % loss\n{m}"
    );
}

/// 30 % loss, 50 ms delay (+ up to 40 ms jitter: reordering) and 10 % duplication on
/// both nodes' links for 5 s (the VIP may flap meanwhile); once the impairment is
/// removed, exactly one node holds the VIP within one advert interval and the client
/// reaches it within [`CLIENT_BACK_AFTER_IMPAIRMENT`].
#[test]
fn heavy_impairment_removed_leaves_one_holder_within_an_interval() {
    let name = "heavy_impairment_removed_leaves_one_holder_within_an_interval";
    if !need(name, &["curl", "tc"]) {
        return;
    }
    let _serial = Serial::take();
    let c = Chaos::start([150, 100], [0, 1], 0, |_, _| String::new());
    let client = c.client();
    let mon = c.monitor();
    let mut cap = c
        .topo
        .capture(
            c.topo.client(),
            "arp",
            &c.dir.path().join("client-arp.pcap"),
        )
        .unwrap();
    let mut imp = Impairment::start(
        &c.topo,
        &[0, 1],
        Netem {
            loss: 30.0,
            duplicate: 10.0,
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(40),
        },
    )
    .unwrap();
    let t_imp = Instant::now();
    // 5 s of impairment, sampling who holds the VIP.
    let mut seen = std::collections::BTreeSet::new();
    while t_imp.elapsed() < Duration::from_secs(5) {
        seen.insert(c.holders());
        std::thread::sleep(Duration::from_millis(50));
    }
    imp.clear();
    let t_clear = Instant::now();
    // Poll the holders: the first time exactly one holds it, and whether that lasts.
    let mut one_at = None;
    while t_clear.elapsed() < Duration::from_secs(5) {
        let h = c.holders();
        if h.len() == 1 {
            one_at.get_or_insert(t_clear.elapsed());
        } else {
            one_at = None;
        }
        if one_at.is_some_and(|t| t_clear.elapsed() > t + Duration::from_secs(1)) {
            break;
        }
    }
    let neigh_cleared = c.client_neigh();
    // "Clients reach it" (issue 11). During the impairment the backup may take the VIP
    // for a few milliseconds and announce it; its gratuitous ARP can reach the client
    // while its advert never reaches the master, which then has no reason to announce
    // (seen: the client on the loser's MAC for 3.6 to 20.7 s, until its neighbour entry
    // was probed). The holder refreshes its announcement every second
    // (`announce_refresh`, default 1 s), so the client's entry points at it at most 1 s
    // after the impairment ends; its connect that failed meanwhile times out after
    // 300 ms. Bound: 2 s.
    let back = client.wait_back_after(t_clear, 40, Duration::from_secs(60));
    println!(
        "{name}: the client's neighbour entry for the VIP 1 s after clearing: {neigh_cleared}; at the end {}",
        c.client_neigh()
    );
    let counts = imp.counts();
    let mechanism = imp.mechanism();
    drop(imp);
    // The two-holder episode the clearing ended (if any), from the monitor's stamps.
    let dual_after = mon
        .duals(&[])
        .iter()
        .filter(|d| d.start + d.len > t_clear)
        .map(|d| (d.start + d.len).saturating_duration_since(t_clear))
        .max();
    println!(
        "{name}: {}; holders seen during the impairment {seen:?}; relay frames forwarded/dropped/duplicated {counts:?}; exactly one holder {} after clearing (polled; monitor: two holders until +{}); client back after {} ({})",
        mechanism,
        one_at.map_or("never".to_owned(), secs),
        dual_after.map_or("-".to_owned(), secs),
        secs(client.back_after(t_clear)),
        client.summary(t_clear)
    );
    let one_at = one_at.unwrap_or_else(|| {
        panic!(
            "no single holder for 1 s within 5 s of removing the impairment: {:?}\n{}\n{}",
            c.holders(),
            mon.describe(),
            c.logs()
        )
    });
    assert!(
        one_at <= INTERVAL,
        "exactly one holder only {} after removing the impairment (bound: one interval, {INTERVAL:?})\n{}\n{}",
        secs(one_at),
        mon.describe(),
        c.logs()
    );
    let macs: Vec<String> = (0..NODES)
        .map(|i| format!("node {i} = {}", vrrp::mac(c.topo.master(i))))
        .collect();
    let arp = cap.stop_and_read().unwrap_or_default();
    assert!(
        back,
        "the client did not reach the VIP again: {}\nARP seen by the client ({}):\n{}\n{}",
        client.summary(t_clear),
        macs.join(", "),
        vrrp::tail(&arp, 60),
        c.logs()
    );
    let took = client.back_after(t_clear);
    println!(
        "{name}: the client reached the VIP again {} after the impairment was removed",
        secs(took)
    );
    assert!(
        took <= CLIENT_BACK_AFTER_IMPAIRMENT,
        "the client reached the VIP only {} after the impairment was removed (bound {}): {}\nARP seen by the client ({}):\n{}\n{}",
        secs(took),
        secs(CLIENT_BACK_AFTER_IMPAIRMENT),
        client.summary(t_clear),
        macs.join(", "),
        vrrp::tail(&arp, 60),
        c.logs()
    );
}

/// How soon after the impairment ends the client must reach the VIP again: the
/// holder's announcement refresh (1 s) plus the 300 ms timeout of the connect that was
/// failing, with room for a loaded machine.
const CLIENT_BACK_AFTER_IMPAIRMENT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------
// A stalled holder

/// SIGSTOP of the holder for longer than Master_Down_Interval (the other node takes
/// over and announces itself), then SIGCONT: one holder within one interval, and the
/// client connecting every 5 ms throughout reaches the VIP again within one second.
fn stalled_holder(name: &str, stalled_is_higher: bool) {
    if !need(name, &["curl"]) {
        return;
    }
    let _serial = Serial::take();
    // Node 0 always has 150, node 1 100. Stalled higher: node 0 holds. Stalled lower:
    // node 1 starts first and holds; node 0 does not preempt it.
    let (c, stalled, other) = if stalled_is_higher {
        (
            Chaos::start([150, 100], [0, 1], 0, |_, _| String::new()),
            0,
            1,
        )
    } else {
        (
            Chaos::start([150, 100], [1, 0], 1, |_, i| {
                if i == 0 {
                    "  preempt: false\n".to_owned()
                } else {
                    String::new()
                }
            }),
            1,
            0,
        )
    };
    let client = c.client();
    let mon = c.monitor();
    let neigh_before = c.client_neigh();
    let t_stop = Instant::now();
    c.node(stalled).kill(Signal::SIGSTOP).unwrap();
    // A nested guard: SIGCONT on every path out, so the topology can kill it.
    struct Cont<'a>(&'a NsProcess);
    impl Drop for Cont<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill(Signal::SIGCONT);
        }
    }
    let cont = Cont(c.node(stalled));
    let took_over = support::wait_until_blocking(DEADLINE, || c.holders().contains(&other));
    assert!(
        took_over,
        "node {other} did not take over from the stalled node {stalled}\n{}",
        c.logs()
    );
    // The client served through the new holder, and the stall well past
    // Master_Down_Interval (a stopped node's kernel still completes handshakes on its
    // listener: the client may not have noticed the stall at all).
    let t_took = Instant::now();
    assert!(
        client.wait_back_after(t_took, 40, DEADLINE),
        "the client never reached the VIP during the stall: {}\n{}",
        client.summary(t_stop),
        c.logs()
    );
    let long_enough = master_down(c.prios[other]) * 3;
    while t_stop.elapsed() < long_enough {
        std::thread::sleep(Duration::from_millis(10));
    }
    let stalled_for = t_stop.elapsed();
    let neigh_stalled = c.client_neigh();
    let t_cont = Instant::now();
    drop(cont);
    let one = c.wait_one_holder(DEADLINE);
    let back = client.wait_back_after(t_cont, 100, DEADLINE);
    let dual_end = mon
        .duals(&[])
        .iter()
        .filter(|d| d.start + d.len > t_cont)
        .map(|d| (d.start + d.len).saturating_duration_since(t_cont))
        .max()
        .unwrap_or_default();
    let took = client.back_after(t_cont);
    let failed_after = client.failures_between(t_cont, Instant::now()).len();
    println!(
        "{name}: the client's neighbour entry for the VIP: before the stall {neigh_before}; during it {neigh_stalled}; after SIGCONT {}",
        c.client_neigh()
    );
    println!(
        "{name}: stalled node {stalled} for {}; after SIGCONT: holder {one:?}, two holders until +{}, client back after {} ({failed_after} failed connects after SIGCONT; {})",
        secs(stalled_for),
        secs(dual_end),
        secs(took),
        client.summary(t_cont)
    );
    print_new_metrics(&c, stalled);
    print_new_metrics(&c, other);
    assert!(
        one.is_some(),
        "no single holder after SIGCONT: {:?}\n{}",
        c.holders(),
        c.logs()
    );
    assert!(
        dual_end <= INTERVAL,
        "two holders until {} after SIGCONT (bound: one interval)\n{}\n{}",
        secs(dual_end),
        mon.describe(),
        c.logs()
    );
    assert!(
        back,
        "the client never reached the VIP again after SIGCONT: {}\n{}",
        client.summary(t_cont),
        c.logs()
    );
    assert!(
        took <= Duration::from_secs(1),
        "the client reached the VIP again only {} after SIGCONT ({failed_after} failed connects; bound 1 s): {}\n{}\n{}",
        secs(took),
        client.summary(t_cont),
        mon.describe(),
        c.logs()
    );
    // Node 0 (150) holds at the end and heard node 1 claim master with a lower priority.
    assert_counted_if_exported(
        &c,
        0,
        "apivip_vrrp_split_brain_total",
        "it ended a split brain",
    );
}

#[test]
fn sigstop_of_the_higher_priority_holder_then_sigcont_pulls_clients_back_within_a_second() {
    stalled_holder(
        "sigstop_of_the_higher_priority_holder_then_sigcont_pulls_clients_back_within_a_second",
        true,
    );
}

#[test]
fn sigstop_of_a_lower_priority_holder_then_sigcont_pulls_clients_back_within_a_second() {
    stalled_holder(
        "sigstop_of_a_lower_priority_holder_then_sigcont_pulls_clients_back_within_a_second",
        false,
    );
}

// ---------------------------------------------------------------------------------------
// Faults of the holder's interface and addresses

/// What a fault test does to node 0 (the holder, priority 150; node 1 has 100).
enum Fault {
    /// `ip link set IF down`, later up.
    LinkDown,
    /// `ip addr del VIP/24 dev IF` (nothing to undo).
    VipDeleted,
    /// `ip addr flush dev IF`, then the node's own addresses added back at once (a
    /// network manager re-applying its config).
    Flush,
    /// `ip link del IF` (the veth pair), later re-created with the same names.
    LinkDeleted,
    /// The advert source address (the node's own IPv4) deleted, later added back.
    SourceDeleted,
}

/// Injects `fault` on the holder: the VIP moves to node 1 or stays on (is restored
/// to) node 0, with one holder and the client back within Master_Down_Interval + 1 s;
/// when the fault is undone, node 0 (the higher priority) holds the VIP again, and
/// again the client is back within Master_Down_Interval + 1 s. Two holders, not
/// counting node 0 while its link is down or gone, never last longer than one
/// interval.
fn holder_fault(name: &str, fault: Fault) {
    if !need(name, &["curl"]) {
        return;
    }
    let _serial = Serial::take();
    let c = Chaos::start([150, 100], [0, 1], 0, |_, _| String::new());
    let client = c.client();
    let mon = c.monitor();
    let m0 = c.topo.master(0).clone();
    let bound = master_down(100) + Duration::from_secs(1);
    let vip24 = format!("{VIP}/24");
    let src24 = format!("{}/24", m0.ipv4);
    let t_fault = Instant::now();
    match fault {
        Fault::LinkDown => chaos::ip_in(&c.topo, 0, &["link", "set", &m0.ifname, "down"]),
        Fault::VipDeleted => chaos::ip_in(&c.topo, 0, &["addr", "del", &vip24, "dev", &m0.ifname]),
        Fault::Flush => chaos::ip_in(&c.topo, 0, &["addr", "flush", "dev", &m0.ifname])
            .and_then(|()| chaos::add_own_addresses(&c.topo, 0)),
        Fault::LinkDeleted => chaos::delete_link(&c.topo, 0),
        Fault::SourceDeleted => {
            chaos::ip_in(&c.topo, 0, &["addr", "del", &src24, "dev", &m0.ifname])
        }
    }
    .unwrap();
    let undo = !matches!(fault, Fault::VipDeleted | Fault::Flush);
    // Phase 1: someone holds the VIP and the client reaches it. Node 0 with its link
    // down or gone holds it for nobody.
    let cut = matches!(fault, Fault::LinkDown | Fault::LinkDeleted);
    let reachable = || -> Vec<usize> {
        c.holders()
            .into_iter()
            .filter(|&i| !(cut && i == 0))
            .collect()
    };
    let held = support::wait_until_blocking(Duration::from_secs(10), || reachable().len() == 1);
    let holder1 = reachable();
    let back1 = client.wait_back_after(t_fault, 100, Duration::from_secs(10));
    let took1 = client.back_after(t_fault);
    println!(
        "{name}: after the fault: holders {holder1:?}, client back after {} ({})",
        secs(took1),
        client.summary(t_fault)
    );
    assert!(
        held,
        "no single holder within 10 s of the fault: {holder1:?}\n{}\n{}",
        mon.describe(),
        c.logs()
    );
    assert!(
        back1,
        "the client did not reach the VIP within 10 s of the fault: {}\n{}\n{}",
        client.summary(t_fault),
        mon.describe(),
        c.logs()
    );
    assert!(
        took1 <= bound,
        "the client reached the VIP only {} after the fault (bound {}): {}\n{}\n{}",
        secs(took1),
        secs(bound),
        client.summary(t_fault),
        mon.describe(),
        c.logs()
    );
    let mut excluded = Vec::new();
    if undo {
        let t_undo = Instant::now();
        match fault {
            Fault::LinkDown => chaos::ip_in(&c.topo, 0, &["link", "set", &m0.ifname, "up"]),
            Fault::LinkDeleted => chaos::recreate_link(&c.topo, 0),
            Fault::SourceDeleted => {
                chaos::ip_in(&c.topo, 0, &["addr", "add", &src24, "dev", &m0.ifname])
            }
            Fault::VipDeleted | Fault::Flush => unreachable!(),
        }
        .unwrap();
        if matches!(fault, Fault::LinkDown | Fault::LinkDeleted) {
            excluded.push((0, t_fault, t_undo));
        }
        // Phase 2: node 0 (higher priority, preempting) returns to the election.
        let back_on_0 = support::wait_until_blocking(DEADLINE, || c.holders() == vec![0]);
        let holders2 = c.holders();
        let back2 = client.wait_back_after(t_undo, 100, Duration::from_secs(10));
        let took2 = client.back_after(t_undo);
        println!(
            "{name}: after the fault was undone: holders {holders2:?}, client back after {} ({})",
            secs(took2),
            client.summary(t_undo)
        );
        print_new_metrics(&c, 0);
        assert_no_long_dual(&c, &mon, &excluded, name);
        assert!(
            back_on_0,
            "node 0 did not return to the election (it has the higher priority and preempts) within {DEADLINE:?} of the fault clearing: holders {holders2:?}\n{}\n{}",
            mon.describe(),
            c.logs()
        );
        assert!(
            back2,
            "the client did not reach the VIP within 10 s after the fault was undone: {}\n{}\n{}",
            client.summary(t_undo),
            mon.describe(),
            c.logs()
        );
        assert!(
            took2 <= bound,
            "the client reached the VIP only {} after the fault was undone (bound {}): {}\n{}\n{}",
            secs(took2),
            secs(bound),
            client.summary(t_undo),
            mon.describe(),
            c.logs()
        );
        let what = "the fault took it out of the election";
        assert_counted_if_exported(&c, 0, "apivip_vrrp_faults_total", what);
    } else {
        print_new_metrics(&c, 0);
        assert_no_long_dual(&c, &mon, &excluded, name);
        if holder1 == vec![0] {
            // Restored in place, or (a flush also takes the advert source address, and
            // netlink reports that within milliseconds) out of the election while the
            // source was gone and back by the ordinary election afterwards.
            let m = c.metrics(0);
            let restored = metric_sum(&m, "apivip_vrrp_vip_restored_total").unwrap_or(0.0);
            let faults = metric_sum(&m, "apivip_vrrp_faults_total").unwrap_or(0.0);
            assert!(
                restored >= 1.0 || (matches!(fault, Fault::Flush) && faults >= 1.0),
                "node 0: its VIP came back after someone removed it, but neither \
                 apivip_vrrp_vip_restored_total ({restored}) nor a fault ({faults}) was counted\n{m}"
            );
        }
    }
}

#[test]
fn holder_link_down_and_up_moves_the_vip_and_back_and_clients_follow() {
    holder_fault(
        "holder_link_down_and_up_moves_the_vip_and_back_and_clients_follow",
        Fault::LinkDown,
    );
}

#[test]
fn vip_deleted_on_the_holder_is_restored_or_moves_and_clients_follow() {
    holder_fault(
        "vip_deleted_on_the_holder_is_restored_or_moves_and_clients_follow",
        Fault::VipDeleted,
    );
}

#[test]
fn addresses_flushed_on_the_holder_restore_or_move_the_vip_and_clients_follow() {
    holder_fault(
        "addresses_flushed_on_the_holder_restore_or_move_the_vip_and_clients_follow",
        Fault::Flush,
    );
}

#[test]
fn holder_interface_deleted_and_recreated_moves_the_vip_and_back() {
    holder_fault(
        "holder_interface_deleted_and_recreated_moves_the_vip_and_back",
        Fault::LinkDeleted,
    );
}

#[test]
fn advert_source_address_removed_from_the_holder_moves_the_vip_and_back() {
    holder_fault(
        "advert_source_address_removed_from_the_holder_moves_the_vip_and_back",
        Fault::SourceDeleted,
    );
}

// ---------------------------------------------------------------------------------------
// Floods

/// What a flood sends.
struct FloodKind {
    /// The metrics label of the drops it must cause (`None`: accepted as valid).
    reason: Option<&'static str>,
    vrid: u8,
    prio: u8,
    ttl: u32,
    unicast: bool,
    /// Sent to the VRRP group (both nodes hear it), not to the backup's address.
    to_group: bool,
}

/// A protocol-112 flood from the third namespace, as fast as one thread sends, at the
/// backup (node 1, priority 100) while the master (node 0, 150) is alive, for 5 s: no
/// takeover and no state change; the backup's admin `/healthz` answers 200 and
/// `apivip status` works during the flood; its drop counter for the flood's reason
/// grows; SIGTERM during the flood ends it within a second.
fn flood(name: &str, kind: FloodKind) {
    if !need(name, &["curl"]) {
        return;
    }
    let _serial = Serial::take();
    let unicast = kind.unicast;
    let c = Chaos::start([150, 100], [0, 1], 0, move |topo, i| {
        if unicast {
            format!("  unicast_peers: [{}]\n", topo.master(1 - i).ipv4)
        } else {
            String::new()
        }
    });
    let mon = c.monitor();
    let changes: Vec<usize> = (0..NODES).map(|i| c.state_changes(i)).collect();
    let third = c.topo.master(THIRD);
    let backup_ip = c.topo.master(1).ipv4;
    let reason_count = |m: &str| {
        kind.reason.map_or_else(
            || metric(m, "apivip_vrrp_adverts_received_total", &[]).unwrap_or(0.0),
            |r| metric(m, "apivip_vrrp_adverts_dropped_total", &[("reason", r)]).unwrap_or(0.0),
        )
    };
    let before_metrics = c.metrics(1);
    let before = reason_count(&before_metrics);
    let filtered = |m: &str| metric_sum(m, "apivip_vrrp_kernel_filtered_total").unwrap_or(0.0);
    let filtered_before = filtered(&before_metrics);
    let dst = if kind.to_group { MCAST } else { backup_ip };
    let packet = advert_v3(third.ipv4, dst, kind.vrid, kind.prio, 10, &[VIP]);
    let master_before = c.metrics(0);
    let mut fl = Flood::start(third, dst, kind.ttl, packet).unwrap();
    let t0 = Instant::now();
    let mut health = Vec::new();
    let mut status_ok = 0;
    let mut status_fail = Vec::new();
    while t0.elapsed() < Duration::from_secs(5) {
        let t = Instant::now();
        let h = c.topo.master(1).exec(&[
            "curl",
            "-sS",
            "--max-time",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1:9469/healthz",
        ]);
        let code = h.map_or(String::new(), |o| {
            String::from_utf8_lossy(&o.stdout).into_owned()
        });
        health.push((code, t.elapsed()));
        let s = c.topo.master(1).exec(&[BIN, "status"]).unwrap();
        let text = String::from_utf8_lossy(&s.stdout).into_owned();
        if s.status.success() && text.contains(": BACKUP") {
            status_ok += 1;
        } else {
            status_fail.push(format!(
                "exit {:?}: {text}{}",
                s.status.code(),
                String::from_utf8_lossy(&s.stderr)
            ));
        }
        assert_eq!(
            c.holders(),
            vec![0],
            "{name}: the VIP moved during the flood ({} sent)\n{}\n{}",
            fl.sent(),
            mon.describe(),
            c.logs()
        );
    }
    let sent_by_then = fl.sent();
    let during = c.metrics(1);
    let after = reason_count(&during);
    let filtered_during = filtered(&during) - filtered_before;
    let master_changes = c.state_changes(0);
    let backup_changes = c.state_changes(1);
    // SIGTERM to the backup while the flood goes on.
    let t_term = Instant::now();
    c.node(1).kill(Signal::SIGTERM).unwrap();
    let exited = c.node(1).wait_timeout(DEADLINE).unwrap();
    let term_took = t_term.elapsed();
    let (sent, rate) = fl.stop();
    let slowest = health.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let bad_health: Vec<_> = health.iter().filter(|(c, _)| c != "200").collect();
    println!(
        "{name}: {sent} packets in {} ({rate:.0}/s); /healthz {} checks, {} not 200, slowest {}; `apivip status` {status_ok} ok, {} not; {} {} -> {after} ; SIGTERM handled in {}",
        secs(t0.elapsed()),
        health.len(),
        bad_health.len(),
        secs(slowest),
        status_fail.len(),
        kind.reason
            .map_or("apivip_vrrp_adverts_received_total".to_owned(), |r| format!(
                "apivip_vrrp_adverts_dropped_total{{reason={r}}}"
            )),
        before,
        secs(term_took)
    );
    for l in during.lines().filter(|l| {
        l.starts_with("apivip_vrrp_adverts_dropped_total") || l.starts_with("apivip_vrrp_kernel")
    }) {
        println!("  {l}");
    }
    // What the master did meanwhile (it hears a flood sent to the group).
    let master_after = c.metrics(0);
    let counters: Vec<String> = [
        "apivip_vrrp_adverts_received_total",
        "apivip_vrrp_adverts_sent_total",
        "apivip_vrrp_split_brain_total",
        "apivip_vrrp_kernel_drops_total",
    ]
    .iter()
    .map(|n| {
        let get = |m: &str| metric_sum(m, n).unwrap_or(0.0);
        format!("{n} {} -> {}", get(&master_before), get(&master_after))
    })
    .collect();
    println!("  master: {}", counters.join("; "));
    let changed: Vec<String> = (0..NODES)
        .flat_map(|i| {
            c.node(i)
                .log()
                .lines()
                .filter(|l| l.contains("state changed"))
                .map(|l| format!("node {i}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        (master_changes, backup_changes),
        (changes[0], changes[1]),
        "state changes during the flood:\n{}\n{status_fail:?}",
        changed.join("\n")
    );
    assert!(
        mon.events().is_empty(),
        "the VIP was added or removed during the flood\n{}",
        mon.describe()
    );
    assert!(
        bad_health.is_empty(),
        "the backup's /healthz failed during the flood: {bad_health:?}\n{}",
        c.logs()
    );
    assert!(
        status_fail.is_empty() && status_ok > 0,
        "`apivip status` on the backup failed during the flood: {status_fail:?}"
    );
    if kind.reason.is_some() {
        // What the election can never accept is dropped by the kernel filter on its
        // socket (src/vrrp/io/socket.rs): none of it reaches the election, so its drop
        // counter stays where it was ...
        assert_eq!(
            after, before,
            "flood datagrams reached the election past the kernel filter\n{during}"
        );
        // ... and counted: the tally lags by at most one wakeup of the election thread.
        println!(
            "{name}: apivip_vrrp_kernel_filtered_total +{filtered_during} of {sent_by_then} sent"
        );
        assert!(
            filtered_during >= sent_by_then as f64 / 2.0,
            "the kernel filter's drops are not counted: +{filtered_during} of {sent_by_then} sent\n{during}"
        );
    } else {
        assert!(
            after > before,
            "the backup's counter did not grow: {before} -> {after}\n{during}"
        );
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "the backup did not exit 0 after SIGTERM during the flood: {exited:?}\n{}",
        c.logs()
    );
    assert!(
        term_took <= Duration::from_secs(1),
        "SIGTERM during the flood took {} (bound 1 s)\n{}",
        secs(term_took),
        c.logs()
    );
}

#[test]
fn flood_of_another_vrid_at_the_backup_changes_nothing() {
    flood(
        "flood_of_another_vrid_at_the_backup_changes_nothing",
        FloodKind {
            reason: Some("vrid"),
            vrid: VRID + 1,
            prio: 200,
            ttl: 255,
            unicast: false,
            to_group: false,
        },
    );
}

#[test]
fn flood_with_ttl_1_at_the_backup_changes_nothing() {
    flood(
        "flood_with_ttl_1_at_the_backup_changes_nothing",
        FloodKind {
            reason: Some("ttl"),
            vrid: VRID,
            prio: 200,
            ttl: 1,
            unicast: false,
            to_group: false,
        },
    );
}

#[test]
fn flood_from_a_non_peer_in_unicast_mode_changes_nothing() {
    flood(
        "flood_from_a_non_peer_in_unicast_mode_changes_nothing",
        FloodKind {
            reason: Some("not_a_peer"),
            vrid: VRID,
            prio: 200,
            ttl: 255,
            unicast: true,
            to_group: false,
        },
    );
}

/// Valid adverts of our VRID with priority 50 (below both nodes) pass the fixed kernel
/// filter. The backup discards them (it preempts); once it has discarded one, it drops
/// the rest in the kernel (its priority floor), so the flood cannot push the master's
/// adverts out of its receive queue. Before that, ~12,000 a second moved the VIP within
/// a second: the receive queue full (2 MiB), the master's adverts dropped behind it.
#[test]
fn flood_of_valid_lower_priority_adverts_at_the_backup_changes_nothing() {
    flood(
        "flood_of_valid_lower_priority_adverts_at_the_backup_changes_nothing",
        FloodKind {
            reason: None,
            vrid: VRID,
            prio: 50,
            ttl: 255,
            unicast: false,
            to_group: false,
        },
    );
}

/// The same flood sent to the VRRP group: the master hears it too. It re-asserts itself
/// (an advert and announcements) at most once per Master_Down_Interval and keeps
/// announcing every `announce_interval` while claims go on, never per datagram; it
/// needs none of these adverts in time, so its receive queue may overflow.
#[test]
fn flood_of_valid_lower_priority_adverts_to_the_group_changes_nothing() {
    flood(
        "flood_of_valid_lower_priority_adverts_to_the_group_changes_nothing",
        FloodKind {
            reason: None,
            vrid: VRID,
            prio: 50,
            ttl: 255,
            unicast: false,
            to_group: true,
        },
    );
}

// ---------------------------------------------------------------------------------------
// Forged adverts

/// The longest a forged advert may leave clients without the VIP: the learned interval
/// bounded to 4 x the configured one, Master_Down_Interval at most 3 x that, plus 1 s.
fn forged_bound() -> Duration {
    INTERVAL * 3 * 4 + Duration::from_secs(1)
}

/// Priority 255 (address owner) adverts of our VRID every 100 ms for 3 s from the third
/// namespace, whose address is no configured owner: clients never lose the VIP for
/// longer than the bound.
#[test]
fn forged_priority_255_from_a_non_owner_takes_the_vip_for_at_most_the_bound() {
    let name = "forged_priority_255_from_a_non_owner_takes_the_vip_for_at_most_the_bound";
    if !need(name, &["curl"]) {
        return;
    }
    let _serial = Serial::take();
    let c = Chaos::start([150, 100], [0, 1], 0, |_, _| String::new());
    let client = c.client();
    let mon = c.monitor();
    let third = c.topo.master(THIRD);
    let packet = advert_v3(third.ipv4, MCAST, VRID, 255, 10, &[VIP]);
    let t0 = Instant::now();
    chaos::send_adverts(third, MCAST, 255, &packet, 30, INTERVAL).unwrap();
    let sent_for = t0.elapsed();
    let back = client.wait_back_after(t0, 100, DEADLINE);
    let lost = client.failures_between(t0, Instant::now());
    let span = match (lost.first(), lost.last()) {
        (Some(f), Some(l)) => l.at - f.at,
        _ => Duration::ZERO,
    };
    println!(
        "{name}: 30 forged adverts over {}; client without the VIP for {} ({} failed connects), back {} after the first; holders now {:?}",
        secs(sent_for),
        secs(span),
        lost.len(),
        secs(client.back_after(t0)),
        c.holders()
    );
    assert!(
        back,
        "the client did not reach the VIP again: {}\n{}",
        client.summary(t0),
        c.logs()
    );
    assert!(
        span <= forged_bound(),
        "forged priority 255 from a non-owner cut clients off for {} (bound {}): {}\n{}\n{}",
        secs(span),
        secs(forged_bound()),
        client.summary(t0),
        mon.describe(),
        c.logs()
    );
}

/// One forged advert (sent three times) of priority 254 with the longest interval
/// (40.95 s): the holder yields to it, and clients must reach the VIP again within the
/// bound.
#[test]
fn forged_long_interval_advert_leaves_the_vip_unheld_for_at_most_the_bound() {
    let name = "forged_long_interval_advert_leaves_the_vip_unheld_for_at_most_the_bound";
    if !need(name, &["curl"]) {
        return;
    }
    let _serial = Serial::take();
    let c = Chaos::start([150, 100], [0, 1], 0, |_, _| String::new());
    let client = c.client();
    let mon = c.monitor();
    let third = c.topo.master(THIRD);
    let packet = advert_v3(third.ipv4, MCAST, VRID, 254, 4095, &[VIP]);
    let t0 = Instant::now();
    chaos::send_adverts(third, MCAST, 255, &packet, 3, Duration::from_millis(10)).unwrap();
    // Generous: the bound plus 8 s, not the 2 minutes the forged interval asks for.
    let back = client.wait_back_after(t0, 100, forged_bound() + Duration::from_secs(8));
    let lost = client.failures_between(t0, Instant::now());
    let span = match (lost.first(), lost.last()) {
        (Some(f), Some(l)) => l.at - f.at,
        _ => Duration::ZERO,
    };
    println!(
        "{name}: client without the VIP for {}{} ({} failed connects); holders now {:?}",
        secs(span),
        if back { "" } else { " and counting" },
        lost.len(),
        c.holders()
    );
    assert!(
        back && span <= forged_bound(),
        "a forged 40.95 s interval left clients without the VIP for {}{} (bound {}): {}\n{}\n{}",
        secs(span),
        if back { "" } else { " and counting" },
        secs(forged_bound()),
        client.summary(t0),
        mon.describe(),
        c.logs()
    );
}

// ---------------------------------------------------------------------------------------
// Soak

/// 100 cycles of kill -9 of the holder (node 0, priority 150), the backup taking over,
/// and node 0 restarted (it removes the VIP its crash left, then preempts). A monitor
/// of `ip addr` events and an ARP prober in the third namespace look for two holders;
/// outside the crash window (from the kill until the restarted node removed its stale
/// VIP: a dead process cannot) two holders never last longer than one interval. Client
/// failures are counted per cycle and printed.
#[test]
fn kill_9_and_restart_soak_never_leaves_two_holders_beyond_an_interval() {
    let name = "kill_9_and_restart_soak_never_leaves_two_holders_beyond_an_interval";
    if !need(name, &["curl"]) {
        return;
    }
    const CYCLES: usize = 100;
    let _serial = Serial::take();
    let mut c = Chaos::start([150, 100], [0, 1], 0, |_, _| String::new());
    let client = c.client();
    let mon = c.monitor();
    let probe = ArpProbe::start(c.topo.master(THIRD), VIP, Duration::from_millis(10)).unwrap();
    let t_start = Instant::now();
    // (kill, restart, settled) per cycle.
    let mut cycles: Vec<(Instant, Instant, Instant)> = Vec::new();
    for k in 0..CYCLES {
        let t_kill = Instant::now();
        c.node(0).kill_hard();
        assert!(
            support::wait_until_blocking(DEADLINE, || c.holders().contains(&1)),
            "cycle {k}: node 1 did not take over\n{}",
            c.logs()
        );
        let t_restart = Instant::now();
        c.restart(0);
        let settled = support::wait_until_blocking(DEADLINE, || c.holders() == vec![0])
            && client.wait_back_after(t_restart, 20, DEADLINE);
        assert!(
            settled,
            "cycle {k}: node 0 did not take the VIP back, or the client did not follow: {:?} {}\n{}",
            c.holders(),
            client.summary(t_kill),
            c.logs()
        );
        cycles.push((t_kill, t_restart, Instant::now()));
    }
    let elapsed = t_start.elapsed();
    // The crash windows: from the kill until node 0's VIP is deleted after its restart.
    let events = mon.events();
    let crash_windows: Vec<(usize, Instant, Instant)> = cycles
        .iter()
        .map(|&(kill, restart, settled)| {
            let cleaned = events
                .iter()
                .find(|e| e.node == 0 && !e.added && e.at >= restart && e.at <= settled)
                .map_or(restart, |e| e.at);
            (0, kill, cleaned)
        })
        .collect();
    let per_cycle: Vec<usize> = cycles
        .iter()
        .enumerate()
        .map(|(k, &(kill, _, _))| {
            let end = cycles.get(k + 1).map_or(Instant::now(), |n| n.0);
            client.failures_between(kill, end).len()
        })
        .collect();
    let arp = probe.report();
    let arp_outside: Vec<&(Instant, Vec<[u8; 6]>)> = arp
        .duals
        .iter()
        .filter(|(t, _)| !crash_windows.iter().any(|&(_, a, b)| *t >= a && *t <= b))
        .collect();
    let crash_lens: Vec<Duration> = crash_windows.iter().map(|&(_, a, b)| b - a).collect();
    let total_fail: usize = per_cycle.iter().sum();
    println!(
        "{name}: {CYCLES} cycles in {}; client failures per cycle {per_cycle:?} (total {total_fail}, max {}, {})",
        secs(elapsed),
        per_cycle.iter().max().unwrap_or(&0),
        client.summary(t_start)
    );
    println!(
        "{name}: crash windows (kill -> stale VIP removed) mean {}, max {}; ARP probes {} ({} one MAC, {} two MACs of which {} outside crash windows, longest two-MAC run {})",
        secs(crash_lens.iter().sum::<Duration>() / CYCLES as u32),
        secs(crash_lens.iter().max().copied().unwrap_or_default()),
        arp.probes,
        arp.answered,
        arp.duals.len(),
        arp_outside.len(),
        secs(arp.longest_dual(Duration::from_millis(10)))
    );
    assert_no_long_dual(&c, &mon, &crash_windows, name);
    // ARP view outside the crash windows: consecutive two-MAC probes spanning more
    // than one interval.
    let outside = support::chaos::ArpReport {
        duals: arp_outside.iter().map(|x| (*x).clone()).collect(),
        ..Default::default()
    };
    let longest = outside.longest_dual(Duration::from_millis(10));
    assert!(
        longest <= INTERVAL,
        "ARP replies from two MACs for {} outside the crash windows: {:?}",
        secs(longest),
        arp_outside
            .iter()
            .take(10)
            .map(|(t, m)| format!(
                "+{} {:?}",
                secs(t.saturating_duration_since(t_start)),
                m.iter().map(mac_text).collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
    );
}
