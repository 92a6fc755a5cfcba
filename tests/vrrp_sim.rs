//! Two or three VRRP instances on a simulated multicast link, with an injected clock.
//!
//! The link carries real bytes: every `SendAdvert` is encoded with `Repr::emit` (with
//! the checksum) and decoded with `Repr::from_bytes` by each receiver, after a fixed
//! delay. Time jumps to the next wakeup (a timer of some node or a packet arrival),
//! and every run is bounded in steps (quinn-proto's `Pair::step` / `drive_bounded`).
//! Nodes can crash (they stop, their later packets never leave), be frozen and thawed
//! (SIGSTOP/SIGCONT: what was sent to them waits), lose their link or source address
//! (FAULT), have the VIP removed behind their back; a client follows the last
//! gratuitous ARP it heard; links can be cut and healed, health can flip, shutdown can be planned and an operator can put a node in
//! maintenance and resume it, a node can be reconfigured (reload); the VIP holders are
//! logged so
//! that gaps (nobody holds the VIP) and overlaps (two hold it) are measured exactly.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use apivip::vrrp::machine::{
    Action, Instance, InstanceConfig, LinkState, Reason, Received, State, SyncInput, VersionConfig,
};
use apivip::vrrp::packet::{Checksum, Family, IpPair, Packet, Repr, MULTICAST_V4};
use apivip::vrrp::sync::SyncGroup;
use apivip::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};

const DELAY: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const MAX_STEPS: usize = 100_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1 + i as u8)
}

/// Skew_Time for VRRPv3 with a 1s interval, or VRRPv2 (always in seconds).
fn skew(priority: u8) -> Duration {
    SECOND * u32::from(256 - u16::from(priority)) / 256
}

fn config(i: usize, version: VersionConfig, priority: u8) -> InstanceConfig {
    let mut config = InstanceConfig::new(
        Vrid::new_unchecked(51),
        version,
        IpAddr::V4(addr(i)),
        vec![IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1))],
    );
    config.base_priority = Priority::new(priority);
    config
}

fn v3() -> VersionConfig {
    VersionConfig::V3 {
        interval: Centisecs::new_unchecked(100),
    }
}

struct Node {
    instance: Instance,
    holds_vip: bool,
    crashed: bool,
    /// Stopped (SIGSTOP, a paused VM): no timer fires and nothing is delivered to it
    /// until it is thawed; what was sent to it meanwhile waits for it.
    frozen: bool,
}

struct InFlight {
    at: Instant,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
    ttl: u8,
    /// Sent by a node (not injected): must be accepted.
    genuine: bool,
}

/// Something a node did, at an instant.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Holds(bool),
    /// A reload added (true) or removed one VIP while Master.
    Vip(IpAddr, bool),
    Sent(Priority),
    Changed(State, State, Reason),
    Exit,
}

struct Net {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    in_flight: Vec<InFlight>,
    /// Directed links that lose every packet.
    cut: Vec<(usize, usize)>,
    /// The node a client's neighbour entry for the VIP points at: the last one whose
    /// gratuitous ARP it heard.
    client: Option<usize>,
    /// Since when the client has pointed at a node without the VIP (its connects
    /// vanish), and the longest such stretch so far.
    misdirected_since: Option<Instant>,
    misdirected: Duration,
    /// Extra delay of every advert delivered to node `i` (a loaded host whose
    /// softirqs and election thread run late).
    lag: Vec<Duration>,
    log: Vec<(Instant, usize, Event)>,
    /// The virtual router (link) of each instance: adverts reach only the others of
    /// the same one. All 0 unless the test says otherwise.
    router: Vec<usize>,
    /// Sync groups: the rule and its members (instance indices of one host), as the
    /// supervisor runs them, without delay.
    groups: Vec<(SyncGroup, Vec<usize>)>,
    /// Random loss of every advert sent: the generator and the share lost.
    loss: Option<(fastrand::Rng, f64)>,
    /// Per directed link: adverts lost in a row now, and the longest such run.
    lost_runs: std::collections::HashMap<(usize, usize), (u32, u32)>,
}

impl Net {
    fn new(configs: Vec<InstanceConfig>) -> Net {
        let t0 = Instant::now();
        let nodes: Vec<Node> = configs
            .into_iter()
            .map(|c| Node {
                instance: Instance::try_new(c).unwrap(),
                holds_vip: false,
                crashed: false,
                frozen: false,
            })
            .collect();
        let router = vec![0; nodes.len()];
        let lag = vec![Duration::ZERO; nodes.len()];
        Net {
            t0,
            now: t0,
            nodes,
            in_flight: Vec::new(),
            cut: Vec::new(),
            client: None,
            misdirected_since: None,
            misdirected: Duration::ZERO,
            lag,
            log: Vec::new(),
            router,
            groups: Vec::new(),
            loss: None,
            lost_runs: std::collections::HashMap::new(),
        }
    }

    /// Healthy instances on the routers `router[i]`, grouped by `groups` (each a
    /// host's members), started at `t0`; members wait for their group from the start,
    /// as the shell makes them.
    fn start_grouped(
        configs: Vec<InstanceConfig>,
        router: Vec<usize>,
        groups: Vec<Vec<usize>>,
    ) -> Net {
        let mut net = Net::new(configs);
        net.router = router;
        net.groups = groups
            .into_iter()
            .map(|members| (SyncGroup::new(members.len()), members))
            .collect();
        for i in 0..net.nodes.len() {
            let now = net.now;
            net.nodes[i].instance.handle_health(now, true);
            if net.groups.iter().any(|(_, m)| m.contains(&i)) {
                net.nodes[i].instance.handle_sync(now, SyncInput::WAIT);
            }
        }
        for i in 0..net.nodes.len() {
            let now = net.now;
            net.nodes[i].instance.handle_startup(now);
            net.flush(i);
        }
        net
    }

    /// Performs node `i`'s actions, then lets its sync group (if any) react.
    fn flush(&mut self, i: usize) {
        self.perform(i);
        let Some(g) = self.groups.iter().position(|(_, m)| m.contains(&i)) else {
            return;
        };
        for _ in 0..100 {
            let members = self.groups[g].1.clone();
            let postures: Vec<_> = members
                .iter()
                .map(|&m| {
                    if self.nodes[m].crashed {
                        apivip::vrrp::machine::Posture::Stopped
                    } else {
                        self.nodes[m].instance.posture()
                    }
                })
                .collect();
            let inputs = self.groups[g].0.update_all(&postures);
            if inputs.is_empty() {
                return;
            }
            for (j, input) in inputs {
                let m = members[j];
                if !self.nodes[m].crashed {
                    self.nodes[m].instance.handle_sync(self.now, input);
                    self.perform(m);
                }
            }
        }
        panic!("sync group {g} did not settle");
    }

    /// Every node reports health `healthy[i]`, then starts, at `t0`.
    fn start(configs: Vec<InstanceConfig>, healthy: bool) -> Net {
        let mut net = Net::new(configs);
        for i in 0..net.nodes.len() {
            if healthy {
                net.nodes[i].instance.handle_health(net.now, true);
            }
            net.nodes[i].instance.handle_startup(net.now);
            net.flush(i);
        }
        net
    }

    /// Two healthy VRRPv3 nodes (1 s adverts) with these priorities, run for 10 s: the
    /// election is over.
    fn settled_pair(priorities: [u8; 2]) -> Net {
        let mut net = Net::start(
            vec![
                config(0, v3(), priorities[0]),
                config(1, v3(), priorities[1]),
            ],
            true,
        );
        net.run_until(SECOND * 10);
        net
    }

    fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// Performs node `i`'s actions; adverts go on the wire as bytes.
    fn perform(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].instance.poll_action() {
            let event = match action {
                Action::SendAdvert { priority } => {
                    let repr = self.nodes[i].instance.advert(priority);
                    let mut bytes = vec![0xa5; repr.buffer_len()];
                    repr.emit(
                        &mut Packet::new_unchecked(&mut bytes[..], Family::Ipv4),
                        &ip_pair(i),
                        Checksum::Verify,
                    );
                    for to in 0..self.nodes.len() {
                        if to != i
                            && self.router[to] == self.router[i]
                            && !self.cut.contains(&(i, to))
                            && !self.lose(i, to)
                        {
                            self.in_flight.push(InFlight {
                                at: self.now + DELAY + self.lag[to],
                                from: i,
                                to,
                                bytes: bytes.clone(),
                                ttl: 255,
                                genuine: true,
                            });
                        }
                    }
                    Event::Sent(priority)
                }
                Action::AddVips => {
                    assert!(!self.nodes[i].holds_vip, "node {i} adds VIPs twice");
                    self.nodes[i].holds_vip = true;
                    Event::Holds(true)
                }
                Action::RemoveVips => {
                    assert!(self.nodes[i].holds_vip, "node {i} removes VIPs it lacks");
                    self.nodes[i].holds_vip = false;
                    Event::Holds(false)
                }
                Action::AddVip { addr } => Event::Vip(addr, true),
                Action::RemoveVip { addr } => Event::Vip(addr, false),
                Action::Announce => {
                    self.client = Some(i);
                    continue;
                }
                Action::StateChanged { from, to, reason } => Event::Changed(from, to, reason),
                Action::Exit => Event::Exit,
            };
            self.log.push((self.now, i, event));
        }
        self.track_client();
    }

    /// Measures how long the client points at a node that does not hold the VIP.
    fn track_client(&mut self) {
        let lost = self.client.is_some_and(|c| !self.nodes[c].holds_vip);
        match (lost, self.misdirected_since) {
            (true, None) => self.misdirected_since = Some(self.now),
            (false, Some(since)) => {
                self.misdirected = self.misdirected.max(self.now - since);
                self.misdirected_since = None;
            }
            _ => {}
        }
    }

    /// Whether the random loss takes this advert from `from` to `to`; keeps the runs.
    fn lose(&mut self, from: usize, to: usize) -> bool {
        let Some((rng, share)) = &mut self.loss else {
            return false;
        };
        let lost = rng.f64() < *share;
        let (now, longest) = self.lost_runs.entry((from, to)).or_default();
        *now = if lost { *now + 1 } else { 0 };
        *longest = (*longest).max(*now);
        lost
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| !n.crashed && !n.frozen)
            .filter_map(|n| n.instance.poll_timeout());
        let packets = self
            .in_flight
            .iter()
            .filter(|p| !self.nodes[p.to].frozen)
            .map(|p| p.at);
        timers.chain(packets).min()
    }

    /// One step: jump to the next wakeup if it is not after `limit`, deliver what is
    /// due, fire due timers. Returns false when nothing is due by `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        let Some(next) = self.next_wakeup().filter(|t| *t <= limit) else {
            return false;
        };
        // A thawed node's timers and waiting packets are due in the past: now.
        self.now = next.max(self.now);
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|p| p.at <= self.now && !self.nodes[p.to].frozen);
        self.in_flight = later;
        for p in due {
            if self.nodes[p.to].crashed {
                continue;
            }
            let received = Received {
                src: IpAddr::V4(addr(p.from)),
                ttl_or_hop_limit: p.ttl,
                result: Repr::from_bytes(&p.bytes, &ip_pair(p.from), Checksum::Verify),
            };
            let verdict = self.nodes[p.to].instance.handle_advert(self.now, received);
            if p.genuine {
                assert_eq!(verdict, Ok(()), "node {} dropped an advert", p.to);
            }
            self.flush(p.to);
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].crashed && !self.nodes[i].frozen {
                self.nodes[i].instance.handle_timeout(self.now);
                self.flush(i);
            }
        }
        true
    }

    /// Runs until `offset` after t0, bounded in steps.
    fn run_until(&mut self, offset: Duration) {
        let limit = self.at(offset);
        let mut steps = 0;
        while self.step(limit) {
            steps += 1;
            assert!(steps < MAX_STEPS, "no quiescence after {MAX_STEPS} steps");
        }
        self.now = limit;
    }

    /// The node stops: its timers and later packets are gone, and its VIPs with it.
    fn crash(&mut self, i: usize) {
        self.nodes[i].crashed = true;
        if self.nodes[i].holds_vip {
            self.nodes[i].holds_vip = false;
            self.log.push((self.now, i, Event::Holds(false)));
        }
        self.track_client();
    }

    /// Puts raw bytes on the wire from node `from`'s address to node `to`.
    fn inject(&mut self, from: usize, to: usize, bytes: Vec<u8>, ttl: u8) {
        self.in_flight.push(InFlight {
            at: self.now + DELAY,
            from,
            to,
            bytes,
            ttl,
            genuine: false,
        });
    }

    /// Stops node `i` (SIGSTOP): it keeps its state and the VIP, does nothing.
    fn freeze(&mut self, i: usize) {
        self.nodes[i].frozen = true;
    }

    /// Resumes node `i` (SIGCONT): what was sent to it meanwhile is delivered at once,
    /// then its timers that ran out fire.
    fn thaw(&mut self, i: usize) {
        self.nodes[i].frozen = false;
    }

    /// The shell read node `i`'s interface: `link`.
    fn link(&mut self, i: usize, link: LinkState) {
        self.nodes[i].instance.handle_link(self.now, link);
        self.flush(i);
    }

    /// Someone removed the VIP from node `i`'s interface and its shell noticed.
    fn remove_vip_behind_its_back(&mut self, i: usize) {
        assert!(self.nodes[i].holds_vip);
        self.nodes[i].holds_vip = false;
        self.log.push((self.now, i, Event::Holds(false)));
        self.nodes[i].instance.handle_vips_missing(self.now);
        self.flush(i);
    }

    fn partition(&mut self, a: usize, b: usize) {
        self.cut.push((a, b));
        self.cut.push((b, a));
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn set_health(&mut self, i: usize, can_serve: bool) {
        self.nodes[i].instance.handle_health(self.now, can_serve);
        self.flush(i);
    }

    fn shutdown(&mut self, i: usize) {
        self.nodes[i].instance.handle_shutdown(self.now);
        self.flush(i);
    }

    /// `apivip handover` on node `i`; the control must be accepted.
    fn maintenance(&mut self, i: usize) {
        self.nodes[i].instance.handle_maintenance(self.now).unwrap();
        self.flush(i);
    }

    /// A reload on node `i`: `change` edits its configuration, which must be accepted.
    fn reconfigure(&mut self, i: usize, change: impl FnOnce(&mut InstanceConfig)) {
        let mut config = self.nodes[i].instance.config().clone();
        change(&mut config);
        self.nodes[i]
            .instance
            .handle_reconfigure(self.now, config)
            .unwrap();
        self.flush(i);
    }

    /// `apivip resume` on node `i`; the control must be accepted.
    fn resume(&mut self, i: usize) {
        self.nodes[i].instance.handle_resume(self.now).unwrap();
        self.flush(i);
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].holds_vip)
            .collect()
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| !self.nodes[*i].crashed && self.nodes[*i].instance.state() == State::Master)
            .collect()
    }

    /// When node `i` last did `event` (exactly).
    fn last(&self, i: usize, event: &Event) -> Option<Instant> {
        self.log
            .iter()
            .rev()
            .find(|(_, n, e)| *n == i && e == event)
            .map(|(t, _, _)| *t)
    }

    /// `holder` alone holds the VIP now, and from `since` on the VIP was never unheld
    /// nor held twice.
    fn assert_held_alone(&self, holder: usize, since: Instant) {
        assert_eq!(self.holders(), [holder]);
        assert_eq!(
            self.gap_and_overlap(since, self.now),
            (Duration::ZERO, Duration::ZERO)
        );
    }

    /// The longest stretch within [from, to) with no VIP holder, and the longest with
    /// two or more, replayed from the log.
    fn gap_and_overlap(&self, from: Instant, to: Instant) -> (Duration, Duration) {
        let mut holds = vec![false; self.nodes.len()];
        let (mut gap, mut overlap) = (Duration::ZERO, Duration::ZERO);
        let mut since = self.t0;
        let mut measure = |start: Instant, end: Instant, holds: &[bool]| {
            let (start, end) = (start.max(from), end.min(to));
            if end <= start {
                return;
            }
            match holds.iter().filter(|h| **h).count() {
                0 => gap = gap.max(end - start),
                1 => {}
                _ => overlap = overlap.max(end - start),
            }
        };
        let changes: Vec<_> = self
            .log
            .iter()
            .filter_map(|(t, i, e)| match e {
                Event::Holds(h) => Some((*t, *i, *h)),
                _ => None,
            })
            .collect();
        let mut k = 0;
        while k < changes.len() {
            let t = changes[k].0;
            measure(since, t, &holds);
            // Apply every change at this instant together.
            while k < changes.len() && changes[k].0 == t {
                holds[changes[k].1] = changes[k].2;
                k += 1;
            }
            since = t;
        }
        measure(since, to, &holds);
        (gap, overlap)
    }
}

fn ip_pair(i: usize) -> IpPair {
    IpPair::V4 {
        src: addr(i),
        dst: MULTICAST_V4,
    }
}

/// Three nodes start together: the highest priority becomes the only master, at
/// exactly its Master_Down_Interval (3 x 1s + skew), and stays the only holder.
#[test]
fn highest_priority_becomes_the_only_master() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 20);
    assert_eq!(net.masters(), [1]);
    assert_eq!(net.holders(), [1]);
    let elected = net.at(SECOND * 3 + skew(150));
    assert_eq!(net.last(1, &Event::Holds(true)), Some(elected));
    let (gap, overlap) = net.gap_and_overlap(elected, net.now);
    assert_eq!((gap, overlap), (Duration::ZERO, Duration::ZERO));
    for i in [0, 2] {
        assert_eq!(net.nodes[i].instance.state(), State::Backup);
        assert_eq!(net.nodes[i].instance.master_ip(), Some(IpAddr::V4(addr(1))));
        assert_eq!(net.nodes[i].instance.stats().adverts_received, 17);
    }
}

/// The master crashes: the next-highest backup takes the VIP exactly
/// 3 x interval + skew after it heard the last advert; the third stays Backup.
#[test]
fn crash_takeover_after_master_down_interval() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(500));
    net.crash(1);
    let last_sent = net.last(1, &Event::Sent(Priority::new(150))).unwrap();
    net.run_until(SECOND * 30);
    let takeover = last_sent + DELAY + SECOND * 3 + skew(120);
    assert_eq!(net.last(2, &Event::Holds(true)), Some(takeover));
    assert_eq!(
        net.last(
            2,
            &Event::Changed(State::Backup, State::Master, Reason::MasterDown)
        ),
        Some(takeover)
    );
    assert_eq!(net.masters(), [2]);
    assert_eq!(net.holders(), [2]);
    assert_eq!(net.nodes[0].instance.state(), State::Backup);
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 5), net.now);
    assert_eq!(gap, takeover - net.at(SECOND * 10 + ms(500)));
    assert_eq!(overlap, Duration::ZERO);
}

/// Planned handover: the VIP is never unheld, two nodes hold it only for the link
/// delay, no priority-0 advert is needed, and the old master exits.
#[test]
fn planned_handover_has_no_gap() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(300));
    net.shutdown(1);
    let shutdown_at = net.now;
    net.run_until(SECOND * 30);
    assert_eq!(
        net.log.iter().filter(|(_, _, e)| *e == Event::Exit).count(),
        1
    );
    assert!(net.nodes[1].instance.has_exited());
    assert_eq!(net.nodes[1].instance.stats().priority_zero_sent, 0);
    assert_eq!(net.holders(), [2]);
    assert_eq!(net.masters(), [2]);
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 4), net.now);
    assert_eq!(gap, Duration::ZERO);
    assert!(overlap <= DELAY, "two holders for {overlap:?}");
    assert!(overlap < SECOND);
    // The takeover came within one Master_Down_Interval of the last full advert.
    let released = net.last(1, &Event::Holds(false)).unwrap();
    assert!(
        released - shutdown_at <= SECOND * 4,
        "{:?}",
        released - shutdown_at
    );
    assert_eq!(
        net.last(
            1,
            &Event::Changed(State::Master, State::Initialize, Reason::HandoverDone)
        ),
        Some(released)
    );
}

/// Nobody preempts (the backup runs with preemption off): after handover_timeout the
/// master resigns with priority 0 and the backup takes over after its skew time.
#[test]
fn handover_falls_back_to_priority_zero() {
    let mut nopreempt = config(0, v3(), 100);
    nopreempt.preempt = false;
    let mut leaving = config(1, v3(), 150);
    leaving.handover_timeout = SECOND * 10;
    let mut net = Net::start(vec![nopreempt, leaving], true);
    net.run_until(SECOND * 10);
    net.shutdown(1);
    let shutdown_at = net.now;
    net.run_until(SECOND * 40);
    let released = net.last(1, &Event::Holds(false)).unwrap();
    assert_eq!(released, shutdown_at + SECOND * 10);
    assert_eq!(net.nodes[1].instance.stats().priority_zero_sent, 1);
    let taken = net.last(0, &Event::Holds(true)).unwrap();
    assert_eq!(taken, released + DELAY + skew(100));
    assert_eq!(net.holders(), [0]);
    let (gap, _) = net.gap_and_overlap(net.at(SECOND * 5), net.now);
    assert_eq!(gap, DELAY + skew(100));
}

/// A partition makes two masters; after the heal, the higher one (here: equal
/// priority, higher address) is heard within one interval and the other yields.
#[test]
fn partition_heals_to_one_master_within_an_interval() {
    for priorities in [[100, 100], [150, 100], [100, 150]] {
        let mut net = Net::settled_pair(priorities);
        let winner = if priorities[0] > priorities[1] { 0 } else { 1 };
        assert_eq!(net.holders(), [winner], "{priorities:?}");
        net.partition(0, 1);
        net.run_until(SECOND * 20 + ms(123));
        assert_eq!(
            net.holders(),
            [0, 1],
            "{priorities:?}: both hold during the partition"
        );
        net.heal();
        let healed = net.now;
        net.run_until(SECOND * 40);
        assert_eq!(net.holders(), [winner], "{priorities:?}");
        assert_eq!(net.masters(), [winner], "{priorities:?}");
        let (gap, overlap) = net.gap_and_overlap(healed, net.now);
        assert_eq!(gap, Duration::ZERO, "{priorities:?}");
        assert!(overlap <= SECOND + DELAY, "{priorities:?}: {overlap:?}");
        let (gap, overlap) = net.gap_and_overlap(healed + SECOND + DELAY, net.now);
        assert_eq!(
            (gap, overlap),
            (Duration::ZERO, Duration::ZERO),
            "{priorities:?}"
        );
    }
}

/// The master's health fails: its priority drops below a healthy backup's, which
/// takes over; the VIP is released only when the new holder is heard.
#[test]
fn unhealthy_master_loses_vip_to_healthy_node() {
    let configs = [(0, 200), (1, 250), (2, 220)]
        .map(|(i, p)| {
            let mut c = config(i, v3(), p);
            c.health_weight = 100;
            c
        })
        .to_vec();
    let mut net = Net::start(configs, true);
    net.run_until(SECOND * 10);
    assert_eq!(net.holders(), [1]);
    net.set_health(1, false);
    net.run_until(SECOND * 30);
    assert_eq!(net.holders(), [2]);
    assert_eq!(net.nodes[1].instance.state(), State::Backup);
    assert_eq!(net.nodes[0].instance.state(), State::Backup);
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 5), net.now);
    assert_eq!(gap, Duration::ZERO);
    assert!(overlap <= DELAY);
    assert_eq!(
        net.last(
            2,
            &Event::Changed(State::Backup, State::Master, Reason::Preempt)
        ),
        net.last(2, &Event::Holds(true))
    );
}

/// Bootstrap: no node can serve yet (no apiserver is up), so all run at base - weight
/// and the highest base priority holds the VIP. As nodes become healthy, the VIP
/// moves to the highest healthy one.
#[test]
fn all_unhealthy_highest_base_priority_holds_the_vip() {
    let configs = [(0, 200), (1, 250), (2, 220)]
        .map(|(i, p)| {
            let mut c = config(i, v3(), p);
            c.health_weight = 100;
            c
        })
        .to_vec();
    let mut net = Net::start(configs, false);
    net.run_until(SECOND * 10);
    assert_eq!(net.holders(), [1]);
    assert_eq!(
        net.nodes[1].instance.effective_priority(),
        Priority::new(150)
    );
    net.set_health(2, true);
    net.run_until(SECOND * 20);
    assert_eq!(net.holders(), [2]);
    net.set_health(1, true);
    net.run_until(SECOND * 30);
    assert_eq!(net.holders(), [1]);
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 5), net.now);
    assert_eq!(gap, Duration::ZERO);
    assert!(overlap <= DELAY);
}

/// VRRPv2 as keepalived runs it (1s, PASS auth): election and crash takeover at
/// 3 x 1s + (256 - priority)/256 s.
#[test]
fn v2_with_password_elects_and_takes_over() {
    let v2 = VersionConfig::V2 {
        interval: Secs::new_unchecked(1),
        auth: Some(Password::try_new(b"k8s-vip").unwrap()),
    };
    let mut net = Net::start(vec![config(0, v2, 100), config(1, v2, 150)], true);
    net.run_until(SECOND * 10);
    assert_eq!(net.holders(), [1]);
    assert_eq!(
        net.last(1, &Event::Holds(true)),
        Some(net.at(SECOND * 3 + skew(150)))
    );
    net.crash(1);
    let last_sent = net.last(1, &Event::Sent(Priority::new(150))).unwrap();
    net.run_until(SECOND * 20);
    assert_eq!(
        net.last(0, &Event::Holds(true)),
        Some(last_sent + DELAY + SECOND * 3 + skew(100))
    );
}

/// The keepalived 2.2.7 pitfall: a stream of rejected packets (TTL 64, bad checksum)
/// every 100ms, even ones claiming a higher priority, must not silence the master or
/// move the VIP: they are counted and change no timer.
#[test]
fn rejected_packet_storm_changes_nothing() {
    let mut net = Net::start(vec![config(0, v3(), 100), config(1, v3(), 150)], true);
    net.run_until(SECOND * 10);
    assert_eq!(net.holders(), [1]);
    let sent_before = net.nodes[1].instance.stats().adverts_sent;
    let forged = net.nodes[0].instance.advert(Priority::new(254));
    let mut good = vec![0; forged.buffer_len()];
    forged.emit(
        &mut Packet::new_unchecked(&mut good[..], Family::Ipv4),
        &ip_pair(0),
        Checksum::Verify,
    );
    let mut bad_checksum = good.clone();
    bad_checksum[7] ^= 0xff;
    for k in 0..200u32 {
        net.run_until(SECOND * 10 + ms(100) * k);
        for to in [0, 1] {
            let from = 1 - to;
            net.inject(from, to, good.clone(), 64);
            net.inject(from, to, bad_checksum.clone(), 255);
        }
    }
    net.run_until(SECOND * 31);
    assert_eq!(net.holders(), [1]);
    assert_eq!(net.masters(), [1]);
    let stats = net.nodes[1].instance.stats();
    assert_eq!(stats.adverts_sent - sent_before, 21);
    assert_eq!((stats.ttl_errors, stats.checksum_errors), (200, 200));
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 5), net.now);
    assert_eq!((gap, overlap), (Duration::ZERO, Duration::ZERO));
}

/// Maintenance: A (150) holds the VIP; `handover` makes it advertise priority 1, B
/// (100) preempts after its Master_Down_Interval and A releases the VIP when it hears
/// B, so nobody is without the VIP and both hold it for one link delay. A stays a
/// Backup at priority 1; `resume` gives it 150 back and it preempts B by the ordinary
/// rule, Master_Down_Interval (with the priority-1 skew it had when it armed the
/// timer) after the last advert of B it accepted.
#[test]
fn maintenance_moves_the_vip_and_resume_takes_it_back() {
    let mut net = Net::start(vec![config(0, v3(), 150), config(1, v3(), 100)], true);
    net.run_until(SECOND * 10 + ms(300));
    assert_eq!(net.holders(), [0]);
    let last_full = net.last(0, &Event::Sent(Priority::new(150))).unwrap();
    net.maintenance(0);
    let maintenance_at = net.now;
    assert_eq!(
        net.last(0, &Event::Sent(Priority::new(1))),
        Some(maintenance_at)
    );
    assert!(net.nodes[0].instance.is_handing_over());

    // B discards the priority-1 adverts and takes over when its timer, armed by A's
    // last full advert, runs out; A hears B one link delay later.
    net.run_until(SECOND * 20);
    let b_takes = last_full + DELAY + SECOND * 3 + skew(100);
    assert_eq!(net.last(1, &Event::Holds(true)), Some(b_takes));
    assert_eq!(
        net.last(
            1,
            &Event::Changed(State::Backup, State::Master, Reason::Preempt)
        ),
        Some(b_takes)
    );
    assert_eq!(net.last(0, &Event::Holds(false)), Some(b_takes + DELAY));
    assert_eq!(
        net.last(
            0,
            &Event::Changed(State::Master, State::Backup, Reason::Maintenance)
        ),
        Some(b_takes + DELAY)
    );
    // Between the control and the release A advertised priority 1 only.
    let a_sent: Vec<_> = net
        .log
        .iter()
        .filter(|(t, n, _)| *n == 0 && *t >= maintenance_at)
        .filter_map(|(_, _, e)| match e {
            Event::Sent(p) => Some(p.get()),
            _ => None,
        })
        .collect();
    assert_eq!(a_sent, [1, 1, 1]);
    assert_eq!(net.holders(), [1]);
    assert_eq!(net.masters(), [1]);
    let a = &net.nodes[0].instance;
    assert!(a.in_maintenance() && !a.is_handing_over() && !a.maintenance_timed_out());
    assert_eq!(a.state(), State::Backup);
    assert_eq!(a.effective_priority(), Priority::new(1));
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 4), net.now);
    assert_eq!((gap, overlap), (Duration::ZERO, DELAY));

    // Resume: A's priority is 150 again; B's adverts are discarded from now on.
    let b_last = net.last(1, &Event::Sent(Priority::new(100))).unwrap();
    assert!(b_last + DELAY < net.now);
    let logged = net.log.len();
    net.resume(0);
    assert_eq!(net.log.len(), logged, "a Backup resumes silently");
    net.run_until(SECOND * 40);
    let a_back = b_last + DELAY + SECOND * 3 + skew(1);
    assert_eq!(net.last(0, &Event::Holds(true)), Some(a_back));
    assert_eq!(
        net.last(
            0,
            &Event::Changed(State::Backup, State::Master, Reason::Preempt)
        ),
        Some(a_back)
    );
    assert_eq!(net.last(1, &Event::Holds(false)), Some(a_back + DELAY));
    assert_eq!(
        net.last(
            1,
            &Event::Changed(State::Master, State::Backup, Reason::HigherPriority)
        ),
        Some(a_back + DELAY)
    );
    assert_eq!(net.holders(), [0]);
    assert_eq!(net.masters(), [0]);
    let (gap, overlap) = net.gap_and_overlap(net.at(SECOND * 4), net.now);
    assert_eq!((gap, overlap), (Duration::ZERO, DELAY));
    // Each change of holder was seen once by the node that held the VIP.
    for i in [0, 1] {
        let instance = &net.nodes[i].instance;
        assert_eq!(instance.stats().master_conflicts, 1, "node {i}");
        assert_eq!(instance.masters_heard(net.now), 1, "node {i}");
        assert_eq!(instance.peers().len(), 1, "node {i}");
        assert_eq!(
            instance.peers()[0].addr,
            IpAddr::V4(addr(1 - i)),
            "node {i}"
        );
    }
    assert_eq!(
        net.nodes[1].instance.peers()[0].priority,
        Priority::new(150)
    );
}

// === reload (handle_reconfigure) ===

/// The master's priority lowered but still the highest: it keeps the VIP, advertises
/// the new priority at once, and the backups accept it; nothing moves.
#[test]
fn reload_lower_but_winning_priority_keeps_the_vip() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(300));
    assert_eq!(net.holders(), [1]);
    let logged = net.log.len();
    net.reconfigure(1, |c| c.base_priority = Priority::new(130));
    let reload_at = net.now;
    assert_eq!(
        net.log[logged..],
        [(reload_at, 1, Event::Sent(Priority::new(130)))]
    );
    net.run_until(SECOND * 30);
    net.assert_held_alone(1, net.at(SECOND * 4));
    assert_eq!(net.masters(), [1]);
    // Adverts every second from the reload on.
    assert_eq!(
        net.last(1, &Event::Sent(Priority::new(130))),
        Some(reload_at + SECOND * 19)
    );
    for i in [0, 2] {
        let peer = net.nodes[i].instance.peers()[0];
        assert_eq!(peer.priority, Priority::new(130), "node {i}");
        assert_eq!(net.nodes[i].instance.state(), State::Backup);
    }
}

/// The master's priority lowered below a preempting backup's: a planned handover.
/// The backup discards the lower adverts, takes over Master_Down_Interval after the
/// last one it accepted, and the old master releases the VIP when it hears it: never
/// nobody, two holders for one link delay.
#[test]
fn reload_below_a_preempting_backup_hands_the_vip_over_without_a_gap() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(300));
    let last_full = net.last(1, &Event::Sent(Priority::new(150))).unwrap();
    net.reconfigure(1, |c| c.base_priority = Priority::new(110));
    net.run_until(SECOND * 30);
    let takeover = last_full + DELAY + SECOND * 3 + skew(120);
    assert_eq!(
        net.last(
            2,
            &Event::Changed(State::Backup, State::Master, Reason::Preempt)
        ),
        Some(takeover)
    );
    assert_eq!(
        net.last(
            1,
            &Event::Changed(State::Master, State::Backup, Reason::HigherPriority)
        ),
        Some(takeover + DELAY)
    );
    assert_eq!(net.holders(), [2]);
    assert_eq!(net.masters(), [2]);
    assert_eq!(
        net.gap_and_overlap(net.at(SECOND * 4), net.now),
        (Duration::ZERO, DELAY)
    );
    assert_eq!(net.nodes[1].instance.stats().priority_zero_sent, 0);
    // Node 0 (100) still accepts node 1's 110 as a master would be accepted: no move
    // to node 0 at any time.
    assert_eq!(net.nodes[0].instance.state(), State::Backup);
}

/// A backup raised above the master with preemption: it preempts by the ordinary
/// rule, its Master_Down_Timer recomputed with the new skew from the last advert it
/// accepted.
#[test]
fn reload_raising_a_backup_preempts_with_the_new_skew() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(300));
    let last_heard = net.last(1, &Event::Sent(Priority::new(150))).unwrap() + DELAY;
    net.reconfigure(2, |c| c.base_priority = Priority::new(200));
    assert_eq!(
        net.nodes[2].instance.poll_timeout(),
        Some(last_heard + SECOND * 3 + skew(200))
    );
    net.run_until(SECOND * 30);
    let takeover = last_heard + SECOND * 3 + skew(200);
    assert_eq!(
        net.last(
            2,
            &Event::Changed(State::Backup, State::Master, Reason::Preempt)
        ),
        Some(takeover)
    );
    assert_eq!(net.holders(), [2]);
    assert_eq!(
        net.gap_and_overlap(net.at(SECOND * 4), net.now),
        (Duration::ZERO, DELAY)
    );
}

/// A second VIP, reloaded on every node one by one, the backups first: no advert is
/// dropped at any time (the simulation fails on a dropped genuine advert), nothing
/// moves, the master adds the new VIP at its reload; removing it again the same way
/// removes it.
#[test]
fn reload_of_the_vips_node_by_node_moves_nothing() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(300));
    let second = IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2));
    for (i, at) in [(0, 10_300), (2, 12_000), (1, 15_000)] {
        net.run_until(ms(at));
        net.reconfigure(i, |c| c.vips.push(second));
    }
    let added_at = net.at(ms(15_000));
    assert_eq!(net.last(1, &Event::Vip(second, true)), Some(added_at));
    net.run_until(SECOND * 20);
    for i in [0, 2] {
        assert!(
            !net.nodes[i].instance.accepts_previous_vips(),
            "node {i} heard the new list"
        );
    }
    for (i, at) in [(0, 20_500), (2, 21_000), (1, 22_000)] {
        net.run_until(ms(at));
        net.reconfigure(i, |c| c.vips.retain(|v| *v != second));
    }
    assert_eq!(
        net.last(1, &Event::Vip(second, false)),
        Some(net.at(ms(22_000)))
    );
    net.run_until(SECOND * 30);
    net.assert_held_alone(1, net.at(SECOND * 4));
    assert_eq!(net.masters(), [1]);
    for i in 0..3 {
        assert_eq!(
            net.nodes[i].instance.stats().address_list_errors,
            0,
            "node {i}"
        );
    }
    // Only the master touched the interface, once each way.
    let vip_events: Vec<_> = net
        .log
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Vip(..)))
        .map(|(_, i, e)| (*i, e.clone()))
        .collect();
    assert_eq!(
        vip_events,
        [
            (1, Event::Vip(second, true)),
            (1, Event::Vip(second, false))
        ]
    );
}

/// A longer advert interval on the master (VRRPv3): the backups learn it from the
/// advert sent at the reload and wait the longer Master_Down_Interval; nothing moves.
#[test]
fn reload_of_the_interval_moves_nothing() {
    let mut net = Net::start(
        vec![
            config(0, v3(), 100),
            config(1, v3(), 150),
            config(2, v3(), 120),
        ],
        true,
    );
    net.run_until(SECOND * 10 + ms(300));
    let reload_at = net.now;
    net.reconfigure(1, |c| {
        c.version = VersionConfig::V3 {
            interval: Centisecs::new_unchecked(300),
        };
        // At least 4 intervals, or the machine refuses the section.
        c.handover_timeout = SECOND * 30;
    });
    assert_eq!(
        net.last(1, &Event::Sent(Priority::new(150))),
        Some(reload_at)
    );
    net.run_until(SECOND * 40);
    net.assert_held_alone(1, net.at(SECOND * 4));
    assert_eq!(
        net.last(1, &Event::Sent(Priority::new(150))),
        Some(reload_at + SECOND * 27)
    );
    for i in [0, 2] {
        assert_eq!(
            net.nodes[i].instance.master_adver_interval(),
            SECOND * 3,
            "node {i}"
        );
    }
}

/// The holder is frozen (SIGSTOP, a paused VM) until the other node took over, then
/// thawed: within one advert interval exactly one node holds the VIP and clients (who
/// follow the last gratuitous ARP) point at it. Without the re-assertion, a thawed
/// holder that wins keeps the VIP silently while clients point at the node that just
/// gave it up (measured as 7.8 s of failed connects before the fix).
#[test]
fn a_thawed_holder_leaves_one_holder_and_clients_on_it_within_an_interval() {
    for priorities in [[150, 100], [100, 150], [100, 100]] {
        let mut net = Net::settled_pair(priorities);
        let stalled = net.holders()[0];
        let other = 1 - stalled;
        assert_eq!(net.client, Some(stalled));
        net.freeze(stalled);
        net.run_until(SECOND * 20);
        assert_eq!(net.masters(), [0, 1], "{priorities:?}: both claim master");
        assert_eq!(net.client, Some(other), "{priorities:?}");
        let thawed = net.now;
        net.thaw(stalled);
        net.run_until(SECOND * 20 + SECOND + DELAY * 2);
        let holders = net.holders();
        assert_eq!(holders.len(), 1, "{priorities:?}: {holders:?}");
        assert_eq!(
            net.client,
            Some(holders[0]),
            "{priorities:?}: clients on the loser"
        );
        let (_, overlap) = net.gap_and_overlap(thawed, net.now);
        assert!(overlap <= DELAY * 2, "{priorities:?}: {overlap:?}");
        let split_brains: u64 = net
            .nodes
            .iter()
            .map(|n| n.instance.stats().split_brains)
            .sum();
        assert!(split_brains >= 1, "{priorities:?}: not counted");
        net.run_until(SECOND * 40);
        assert_eq!(net.holders(), holders, "{priorities:?}");
        assert_eq!(net.client, Some(holders[0]), "{priorities:?}");
    }
}

/// The holder loses its advert source address (the link still works): it hands off
/// with priority 0, so the backup takes over after Skew_Time, not Master_Down_Interval;
/// when the address is back it rejoins as Backup and preempts by the ordinary rules.
/// A holder whose link goes down (nothing gets through) is replaced after
/// Master_Down_Interval and comes back the same way.
#[test]
fn a_faulted_holder_hands_off_and_rejoins_when_the_fault_clears() {
    let mut net = Net::start(vec![config(0, v3(), 150), config(1, v3(), 100)], true);
    net.run_until(SECOND * 10);
    assert_eq!(net.holders(), [0]);
    let at = net.now;
    let no_source = LinkState {
        source_present: false,
        ..LinkState::HEALTHY
    };
    net.link(0, no_source);
    assert_eq!(net.nodes[0].instance.state(), State::Fault);
    net.run_until(SECOND * 12);
    assert_eq!(net.holders(), [1]);
    let took_over = net.last(1, &Event::Holds(true)).unwrap();
    assert_eq!(took_over, at + DELAY + skew(100));
    assert_eq!(net.client, Some(1));
    let cleared = net.now;
    net.link(0, LinkState::HEALTHY);
    assert_eq!(net.nodes[0].instance.state(), State::Backup);
    net.run_until(SECOND * 20);
    assert_eq!(net.holders(), [0], "preempted back");
    assert_eq!(net.client, Some(0));
    assert_eq!(net.gap_and_overlap(cleared, net.now).0, Duration::ZERO);

    // Link down: nothing leaves the node, the backup waits Master_Down_Interval from
    // the last advert it heard.
    net.partition(0, 1);
    let last_advert = net.last(0, &Event::Sent(Priority::new(150))).unwrap();
    let link_down = LinkState {
        up: false,
        carrier: false,
        ..LinkState::HEALTHY
    };
    net.link(0, link_down);
    net.run_until(SECOND * 30);
    assert_eq!(net.holders(), [1]);
    let took_over = net.last(1, &Event::Holds(true)).unwrap();
    assert_eq!(took_over, last_advert + DELAY + SECOND * 3 + skew(100));
    net.heal();
    net.link(0, LinkState::HEALTHY);
    net.run_until(SECOND * 40);
    assert_eq!(net.holders(), [0]);
    assert_eq!(net.masters(), [0]);
}

/// Someone flushes the VIP from the holder's interface: it is added back and
/// announced at once, and nothing else moves.
#[test]
fn a_vip_removed_from_the_holder_is_restored_and_announced() {
    let mut net = Net::start(vec![config(0, v3(), 150), config(1, v3(), 100)], true);
    net.run_until(SECOND * 10);
    assert_eq!(net.holders(), [0]);
    net.client = None;
    net.remove_vip_behind_its_back(0);
    assert_eq!(net.holders(), [0]);
    assert_eq!(net.client, Some(0), "announced again");
    assert_eq!(net.nodes[0].instance.stats().vips_restored, 1);
    let at = net.now;
    net.run_until(SECOND * 20);
    assert_eq!(net.masters(), [0]);
    net.assert_held_alone(0, at);
}

// === sync groups ===

/// Two hosts with an instance on each of two virtual routers (A: instances 0 and 1,
/// B: 2 and 3), each host's pair in a sync group: host 0 has instances 0 (A) and 2
/// (B) at priorities `h0`, host 1 instances 1 (A) and 3 (B) at `h1`. Run for 10 s.
fn two_groups(h0: [u8; 2], h1: [u8; 2]) -> Net {
    let mut net = Net::start_grouped(
        vec![
            config(0, v3(), h0[0]),
            config(1, v3(), h1[0]),
            config(2, v3(), h0[1]),
            config(3, v3(), h1[1]),
        ],
        vec![0, 0, 1, 1],
        vec![vec![0, 2], vec![1, 3]],
    );
    net.run_until(SECOND * 10);
    net
}

/// When instance `i` last entered `to`.
fn entered(net: &Net, i: usize, to: State) -> Option<Instant> {
    net.log
        .iter()
        .rev()
        .find(|(_, n, e)| *n == i && matches!(e, Event::Changed(_, t, _) if *t == to))
        .map(|(t, _, _)| *t)
}

#[test]
fn a_sync_group_takes_both_vips_on_one_host_at_the_same_instant() {
    let net = two_groups([150, 150], [100, 100]);
    assert_eq!(net.holders(), [0, 2]);
    // Each member waited for the other: both became Master at the later one's
    // Master_Down_Interval (3 s + skew of 150 at 1 s adverts).
    let down = SECOND * 3 + skew(150);
    assert_eq!(entered(&net, 0, State::Master), Some(net.at(down)));
    assert_eq!(entered(&net, 2, State::Master), Some(net.at(down)));
    assert_eq!(net.masters(), [0, 2]);
}

#[test]
fn a_fault_of_one_member_moves_the_whole_group_at_once() {
    let mut net = two_groups([150, 150], [100, 100]);
    let t = net.now;
    net.link(
        0,
        LinkState {
            up: false,
            carrier: false,
            ..LinkState::HEALTHY
        },
    );
    // Instance 0 faulted, its sibling 2 with it; both resigned with priority 0.
    assert_eq!(net.nodes[2].instance.state(), State::Fault);
    assert_eq!(net.holders(), Vec::<usize>::new());
    net.run_until(SECOND * 20);
    assert_eq!(net.holders(), [1, 3]);
    // Host 1's members took over together, one skew time (priority 100) after the
    // resignations arrived.
    let took = t + DELAY + skew(100);
    assert_eq!(entered(&net, 1, State::Master), Some(took));
    assert_eq!(entered(&net, 3, State::Master), Some(took));
    // The fault clears: host 0 (150) preempts both back, together.
    let cleared = net.now;
    net.link(0, LinkState::HEALTHY);
    assert_eq!(net.nodes[2].instance.state(), State::Backup);
    net.run_until(SECOND * 30);
    assert_eq!(net.holders(), [0, 2]);
    let back = entered(&net, 0, State::Master).unwrap();
    assert!(back > cleared);
    assert_eq!(entered(&net, 2, State::Master), Some(back));
}

#[test]
fn a_group_that_wins_only_one_router_does_not_thrash() {
    // Host 0 wins router A (150 > 100) but loses B (50 < 100): neither host's group can
    // have both, so the first to hold them keeps them; nothing moves afterwards.
    let mut net = two_groups([150, 50], [100, 100]);
    let holders = net.holders();
    assert!(holders == [0, 2] || holders == [1, 3], "{holders:?}");
    let settled = net.log.len();
    net.run_until(SECOND * 120);
    assert_eq!(net.holders(), holders);
    let changes: Vec<_> = net.log[settled..]
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Changed(..) | Event::Holds(_)))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
}

#[test]
fn a_crashed_host_loses_both_vips_to_the_other_group_together() {
    let mut net = two_groups([150, 150], [100, 100]);
    let t = net.now;
    net.crash(0);
    net.crash(2);
    net.run_until(SECOND * 20);
    assert_eq!(net.holders(), [1, 3]);
    // Master_Down_Interval after the last advert each heard: both adverts were sent at
    // the same instants, so both take over at the same one.
    let one = entered(&net, 1, State::Master).unwrap();
    assert_eq!(entered(&net, 3, State::Master), Some(one));
    assert!(one - t <= SECOND * 3 + skew(100) + DELAY, "{:?}", one - t);
}

/// 5 % random loss at 100 ms adverts for 60 s, 300 seeded runs of a settled pair. An
/// RFC-exact Backup takes over whenever three adverts in a row are lost: the runs are
/// chosen by seed, not tuned, and about 7 % of them contain such a run. The lossy-link
/// hysteresis (a Backup that has seen gaps waits up to three intervals longer) must
/// turn nearly all of those into no move; the Backup counts every advert it missed
/// while listening.
#[test]
fn five_percent_loss_rarely_moves_the_vip() {
    let fast = VersionConfig::V3 {
        interval: Centisecs::new_unchecked(10),
    };
    let (mut moved, mut rfc_would_move) = (Vec::new(), 0);
    for seed in 0..300 {
        let mut net = Net::start(vec![config(0, fast, 150), config(1, fast, 100)], true);
        net.run_until(SECOND * 2);
        assert_eq!(net.holders(), [0]);
        net.loss = Some((fastrand::Rng::with_seed(seed), 0.05));
        net.run_until(SECOND * 62);
        let runs = net.lost_runs.get(&(0, 1)).copied().unwrap_or_default();
        if runs.1 >= 3 {
            rfc_would_move += 1;
        }
        let backup = net.nodes[1].instance.stats();
        assert!(backup.adverts_missed >= 1, "seed {seed}: no loss counted");
        if backup.master_transitions > 0 {
            moved.push((seed, runs.1));
        }
    }
    println!("300 runs: an RFC-exact backup would have moved the VIP in {rfc_would_move}, apivip moved it in {moved:?}");
    assert!(
        rfc_would_move >= 10,
        "the loss is not hostile enough to show anything"
    );
    assert!(moved.len() <= 2, "moved in {moved:?}");
}

/// Three nodes at 100 ms adverts (150, 140, 130, health weight 50); the holder's
/// apiserver turns not ready, so both others preempt it. Every node runs late (a
/// loaded host: adverts reach the election threads 5 to 60 ms after they were sent,
/// more than the 3.9 ms by which node 2's Master_Down_Timer trails node 1's), so node 2
/// takes the VIP too before it hears node 1, and announces it; node 1 hears that claim
/// only after node 2 heard node 1. Seen once in a CI run as a connect that timed out.
/// Clients follow the last announcement: they must never be left on a node without
/// the VIP, and node 1 ends as the only holder.
#[test]
fn two_preempting_backups_never_leave_clients_on_a_node_without_the_vip() {
    let fast = VersionConfig::V3 {
        interval: Centisecs::new_unchecked(10),
    };
    for lag in [ms(5), ms(8), ms(20), ms(60)] {
        let configs = [150, 140, 130]
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut c = config(i, fast, p);
                c.health_weight = 50;
                c
            })
            .collect();
        let mut net = Net::start(configs, true);
        net.run_until(SECOND * 2);
        assert_eq!(net.holders(), [0]);
        assert_eq!(net.client, Some(0));
        net.lag = vec![lag; 3];
        let t = net.now;
        net.set_health(0, false);
        net.run_until(SECOND * 5);
        assert_eq!(net.holders(), [1], "lag {lag:?}");
        assert_eq!(net.client, Some(1), "lag {lag:?}");
        assert_eq!(net.misdirected_since, None, "lag {lag:?}");
        assert!(
            entered(&net, 2, State::Master).is_some_and(|at| at > t),
            "lag {lag:?}: node 2 never took the VIP: the race is not exercised"
        );
        assert_eq!(
            net.misdirected,
            Duration::ZERO,
            "lag {lag:?}: clients pointed at a node without the VIP"
        );
        // Node 2 kept the VIP until node 1's next advert: at most one interval.
        assert!(net.nodes[2].instance.stats().lingers >= 1, "lag {lag:?}");
        let (gap, overlap) = net.gap_and_overlap(t, net.now);
        assert_eq!(gap, Duration::ZERO, "lag {lag:?}");
        assert!(overlap <= ms(100) + lag * 2, "lag {lag:?}: {overlap:?}");
    }
}
