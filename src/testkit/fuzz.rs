//! Fuzz targets: one function per target, taking any bytes.
//!
//! The coverage-guided fuzzer (`fuzz/`, run by `scripts/fuzz.sh`) calls these from one tiny
//! binary per target, and `tests/fuzz_corpus.rs` replays every file of `fuzz/corpus/<target>/`
//! through them, so the same checks run under the fuzzer and in `cargo test`.
//!
//! Each function returns normally for every input, whatever the bytes, and panics only
//! when an invariant is broken (the fuzzer reports a panic as a crash):
//!
//! - [`packet`]: the VRRP codec ([`Repr::from_bytes`] read as IPv4 and IPv6 with every
//!   [`Checksum`] policy) and the raw-socket IPv4 header ([`Ipv4Meta::split`],
//!   [`parse_ipv4_datagram`]). Whatever decodes is emitted again and must decode to the
//!   same [`Repr`], and emitting that gives the same bytes.
//! - [`machine`]: one [`Instance`] driven by a sequence of events decoded from the bytes
//!   (see [`MACHINE_EVENTS`]), its actions drained after each and checked against what a
//!   shell relies on (see [`machine`]).
//! - [`dns`]: DNS replies ([`decode_reply`]: raw bytes, and genuine signed replies
//!   damaged by the bytes, which must never authenticate other content) and the votes
//!   ([`Vote::parse`] round trips; the rule never leaves the name empty).
//! - [`config`]: the YAML loader ([`Config::from_yaml_with`], missing certificate files
//!   as warnings). A config that loads must build its election and must not differ from
//!   itself.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::diff::ReloadPlan;
use crate::config::{Config, ConfigError, MissingFiles};
use crate::dns::votes::{self, Vote};
use crate::dns::wire::{self, decode_reply, signed_reply, Algorithm, Key, Rdata, Reply};
use crate::vrrp::machine::{
    Action, Instance, InstanceConfig, LinkState, Posture, Reason, Received, State, SyncInput,
    VersionConfig,
};
use crate::vrrp::packet::datagram::{self, Parser};
use crate::vrrp::packet::{
    checksum_v2, checksum_v4, checksum_v6, parse_ipv4_datagram, AddrList, AdvertV2, AdvertV3, Auth,
    Checksum, Family, IpPair, Ipv4Meta, Packet, Repr, Version, VirtualAddrs, IP_PROTOCOL,
    MULTICAST_V4, MULTICAST_V6, TTL,
};
use crate::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};

/// The checksum policies every message is read with.
const POLICIES: [Checksum; 3] = [Checksum::Verify, Checksum::Ignore, Checksum::NoPseudoHeader];

// === packet ===

/// The VRRP codec and the raw-socket IPv4 header parser.
///
/// `data` is read three ways: as the IPv4 datagram an IPv4 raw socket returns (header
/// included), and as a bare VRRP message in IPv4 and in IPv6, each with every checksum
/// policy. Invariants: nothing panics; [`Ipv4Meta::split`] returns the TTL, addresses and
/// payload it was given, only for protocol 112; [`parse_ipv4_datagram`] agrees with
/// `split` followed by [`Repr::from_bytes`]; a decoded message is as long as
/// [`Repr::buffer_len`] says, emits and decodes back to the same [`Repr`], and emitting
/// is deterministic.
pub fn packet(data: &[u8]) {
    match Ipv4Meta::split(data) {
        Ok((meta, msg)) => {
            let header_len = usize::from(data[0] & 0x0f) * 4;
            let total_len = usize::from(u16::from_be_bytes([data[2], data[3]]));
            assert_eq!(data[9], IP_PROTOCOL, "split accepted another protocol");
            assert_eq!(meta.ttl, data[8], "split returned another TTL");
            assert_eq!(
                meta.src.octets(),
                data[12..16],
                "split returned another source"
            );
            assert_eq!(
                meta.dst.octets(),
                data[16..20],
                "split returned another destination"
            );
            assert_eq!(
                msg,
                &data[header_len..total_len],
                "split returned another payload"
            );
            let via_split = Repr::from_bytes(msg, &meta.ip_pair(), Checksum::Verify);
            assert_eq!(
                parse_ipv4_datagram(data).map(|(_, repr)| repr),
                via_split,
                "parse_ipv4_datagram disagrees with split + from_bytes"
            );
            for policy in POLICIES {
                round_trip(msg, &meta.ip_pair(), policy);
            }
            // keepalived's old unicast checksum: the retry with the group as destination.
            let old_style = IpPair::V4 {
                src: meta.src,
                dst: MULTICAST_V4,
            };
            round_trip(msg, &old_style, Checksum::Verify);
        }
        Err(e) => assert_eq!(
            parse_ipv4_datagram(data).map(|_| ()),
            Err(e),
            "parse_ipv4_datagram disagrees with split"
        ),
    }
    let v4 = IpPair::V4 {
        src: Ipv4Addr::new(198, 18, 0, 2),
        dst: MULTICAST_V4,
    };
    let v6 = IpPair::V6 {
        src: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2),
        dst: MULTICAST_V6,
    };
    for ip in [v4, v6] {
        for policy in POLICIES {
            round_trip(data, &ip, policy);
        }
    }
    // The received-datagram parser (checksum dialect per version, the old unicast
    // checksum retry, the one-entry cache): any message, a pure function of its inputs.
    let unicast = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
    let from4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    let from6 = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));
    for version in [Version::V2, Version::V3] {
        let mut parser = Parser::new(version);
        for (src, dst) in [
            (from4, IpAddr::V4(MULTICAST_V4)),
            (from4, unicast),
            (from6, IpAddr::V6(MULTICAST_V6)),
            (from4, from6),
        ] {
            let fresh = datagram::parse(version, data, src, dst);
            assert_eq!(
                parser.parse(data, src, dst),
                fresh,
                "the parser disagrees with parse"
            );
            assert_eq!(
                parser.parse(data, src, dst),
                fresh,
                "the parser's cache disagrees"
            );
        }
    }
    // The checksum helpers take any length.
    let _ = checksum_v2(data);
    let _ = checksum_v4(Ipv4Addr::UNSPECIFIED, MULTICAST_V4, data);
    let _ = checksum_v6(Ipv6Addr::UNSPECIFIED, MULTICAST_V6, data);
}

/// Decodes `msg`; if it decodes, checks the length, emits it again and decodes that.
/// Returns what the first decode gave.
fn round_trip(msg: &[u8], ip: &IpPair, policy: Checksum) -> Option<Repr> {
    let repr = Repr::from_bytes(msg, ip, policy).ok()?;
    assert_eq!(
        repr.buffer_len(),
        msg.len(),
        "a decoded message is not as long as its Repr: {repr:?}"
    );
    assert_eq!(repr.family(), ip.family(), "decoded in another family");
    let emitted = emit(&repr, ip, policy);
    let again = Repr::from_bytes(&emitted, ip, policy)
        .unwrap_or_else(|e| panic!("{repr:?} emitted with {policy:?} does not decode: {e}"));
    assert_eq!(again, repr, "decode(emit(decode(x))) != decode(x)");
    assert_eq!(
        emit(&again, ip, policy),
        emitted,
        "emitting the same Repr twice gave other bytes"
    );
    Some(repr)
}

/// `repr` on the wire, into a buffer pre-filled with 0xa5 so that unwritten bytes show.
fn emit(repr: &Repr, ip: &IpPair, policy: Checksum) -> Vec<u8> {
    let mut buf = vec![0xa5; repr.buffer_len()];
    repr.emit(
        &mut Packet::new_unchecked(&mut buf[..], repr.family()),
        ip,
        policy,
    );
    buf
}

// === machine ===

/// One input of the machine target: reads what it needs from the bytes, feeds the
/// instance, and leaves the checks to [`Driver::input`].
pub type MachineEvent = fn(&mut Driver, &mut Bytes<'_>);

/// The events of the machine target. One byte picks the next event (modulo the length
/// of this table); the event reads the rest of what it needs. **To add an input** (a
/// fault, a received datagram parsed from raw bytes, ...), write a `Driver` method of
/// type [`MachineEvent`] that feeds it through [`Driver::input`], and add one line at the
/// end; the invariants then hold for it too. (Event bytes below the old length keep
/// their meaning; old corpus files still replay, some bytes as other events.)
pub const MACHINE_EVENTS: &[(&str, MachineEvent)] = &[
    ("advert", Driver::advert),
    ("raw advert", Driver::raw_advert),
    ("advance", Driver::advance),
    ("next timeout", Driver::next_timeout),
    ("health", Driver::health),
    ("maintenance", Driver::maintenance),
    ("resume", Driver::resume),
    ("reconfigure", Driver::reconfigure),
    ("shutdown", Driver::shutdown),
    ("link", Driver::link),
    ("vip add failed", Driver::vip_add_failed),
    ("vips missing", Driver::vips_missing),
    ("rx dropped", Driver::rx_dropped),
    ("sync", Driver::sync),
];

/// How many timer expiries one input may drive before the run stops (returning, not
/// failing): at a 10 ms interval, 50 s of simulated time. It bounds the time one
/// execution takes, so that the fuzzer stays fast.
const TIMER_BUDGET: u32 = 5_000;

/// The VRRP election machine, driven by events decoded from `data`.
///
/// The first byte picks the address family and the starting configuration (of
/// [`Driver::configs`]), the second whether the node can serve before it starts; then
/// [`Instance::handle_startup`] and one event per [`MACHINE_EVENTS`] entry picked by the
/// next byte, until the bytes run out. Adverts are built with the codec from fuzzed
/// fields (version, VRID, source, TTL, priority, interval, addresses, password), or
/// decoded from raw bytes. Time only moves forward, and every timer due on the way
/// fires at its deadline, as the shell's timer does.
///
/// Invariants (a panic names the broken one):
/// - Master is entered only when the Master_Down_Timer fires (reasons `MasterDown`,
///   `MasterResigned`, `Preempt`, from Backup, with a deadline that was due) or by the
///   owner (priority 255) at startup or when its fault clears: never by an advert, a
///   control or a reload, so never twice without a Master_Down in between.
/// - The VIPs the actions put on the interface (`AddVips`, `AddVip`, `RemoveVip`,
///   `RemoveVips`) never go on twice or off when absent, are held exactly while Master,
///   and are then the configured VIPs (only `handle_vips_missing` adds them again); only
///   a Master announces and advertises, and a priority-0 advert leaves Master.
/// - Every `StateChanged` starts from the state the previous one entered, and the
///   instance's state and Master count agree with them.
/// - A dropped advert, a refused control and a refused reload change nothing: no action,
///   no timer, no state.
/// - An early `handle_timeout` does nothing; after an input at `now`, `poll_timeout` is
///   not before `now`, and time moves on after at most [`SAME_INSTANT_FIRES`] expiries
///   at one instant (a timer re-armed at `now` repeats, e.g. announcements with
///   `announce_interval` 0, but never forever).
/// - Nothing comes out after `Exit`, and no timer runs.
pub fn machine(data: &[u8]) {
    let mut bytes = Bytes(data);
    let mut driver = Driver::start(&mut bytes);
    while !bytes.is_empty() && driver.budget > 0 {
        let (_, event) = MACHINE_EVENTS[usize::from(bytes.u8()) % MACHINE_EVENTS.len()];
        event(&mut driver, &mut bytes);
    }
}

/// The rest of a fuzz input, read front to back; reads past the end give zeros.
#[derive(Debug)]
pub struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// The next `n` bytes, fewer if fewer are left.
    pub fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// The next `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let got = self.take(N);
        out[..got.len()].copy_from_slice(got);
        out
    }
}

/// A time since the start of a run, as messages show it.
#[derive(Debug, Clone, Copy)]
struct At(Duration);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {:?}", self.0)
    }
}

/// Which input is being handled, for the Master-entry rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Timeout,
    /// `handle_vips_missing`: the only input that may add the VIPs while they are held.
    VipsMissing,
    /// `handle_sync`: may make a [`Posture::Ready`] member Master.
    Sync,
    Other,
}

/// The addresses of one family: this node, two peers (one below it, one above, for
/// tie-breaks), a stranger that is not a unicast peer, and two VIPs.
struct Addrs {
    me: IpAddr,
    lower: IpAddr,
    higher: IpAddr,
    stranger: IpAddr,
    vips: [IpAddr; 2],
    /// The multicast group.
    group: IpAddr,
}

fn addrs(family: Family) -> Addrs {
    let v4 = |d: u8| IpAddr::V4(Ipv4Addr::new(198, 18, 0, d));
    let v6 = |d: u16| IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, d));
    match family {
        Family::Ipv4 => Addrs {
            me: v4(10),
            lower: v4(5),
            higher: v4(20),
            stranger: v4(30),
            vips: [
                IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
                IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
            ],
            group: IpAddr::V4(MULTICAST_V4),
        },
        Family::Ipv6 => Addrs {
            me: v6(0x10),
            lower: v6(0x5),
            higher: v6(0x20),
            stranger: v6(0x30),
            vips: [
                IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, 1)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 1)),
            ],
            group: IpAddr::V6(MULTICAST_V6),
        },
    }
}

const VRID: Vrid = Vrid::new_unchecked(51);

/// The configurations of one family the machine starts with and is reloaded with: the
/// defaults, fast and weighted with a preempt delay, no preemption and no handover,
/// unicast, the owner, another VIP list, VRRPv2 with and without a password (IPv4; IPv6
/// gets VRRPv3 at other intervals), another primary address, and two that a reload must
/// refuse (another VRID, another family).
fn configs(family: Family) -> Vec<InstanceConfig> {
    let a = addrs(family);
    let v3 = |cs| VersionConfig::V3 {
        interval: Centisecs::new_unchecked(cs),
    };
    let base = |version| InstanceConfig::new(VRID, version, a.me, vec![a.vips[0]]);
    let mut out = Vec::new();
    out.push(base(v3(100)));
    let mut fast = base(v3(1));
    fast.base_priority = Priority::new(200);
    fast.health_weight = 150;
    fast.preempt_delay = Duration::from_millis(50);
    out.push(fast);
    let mut calm = base(v3(100));
    calm.preempt = false;
    calm.handover_timeout = Duration::ZERO;
    out.push(calm);
    let mut unicast = base(v3(20));
    unicast.base_priority = Priority::new(50);
    unicast.peers = Some(vec![a.lower, a.higher]);
    out.push(unicast);
    let mut owner = base(v3(100));
    owner.base_priority = Priority::OWNER;
    out.push(owner);
    let mut two_vips = base(v3(100));
    two_vips.vips = a.vips.to_vec();
    two_vips.health_weight = 99;
    out.push(two_vips);
    match family {
        Family::Ipv4 => {
            out.push(base(VersionConfig::V2 {
                interval: Secs::new_unchecked(1),
                auth: Some(Password::from_wire(*b"s3cret\0\0")),
            }));
            out.push(base(VersionConfig::V2 {
                interval: Secs::new_unchecked(1),
                auth: None,
            }));
        }
        Family::Ipv6 => {
            out.push(base(v3(50)));
            out.push(base(v3(4095)));
        }
    }
    let mut moved = base(v3(100));
    moved.primary_ip = a.stranger;
    out.push(moved);
    // Priority 255 is accepted only from the named owner.
    let mut owned = base(v3(100));
    owned.owner = Some(a.higher);
    out.push(owned);
    // One announcement and no interval (repeats with no interval are refused by
    // validation).
    let mut eager = base(v3(100));
    eager.announce_count = 1;
    eager.announce_interval = Duration::ZERO;
    out.push(eager);
    // Refused by a reload: another virtual router.
    out.push(InstanceConfig::new(
        Vrid::new_unchecked(52),
        v3(100),
        a.me,
        vec![a.vips[0]],
    ));
    let other = addrs(match family {
        Family::Ipv4 => Family::Ipv6,
        Family::Ipv6 => Family::Ipv4,
    });
    out.push(InstanceConfig::new(
        VRID,
        v3(100),
        other.me,
        vec![other.vips[0]],
    ));
    out
}

/// How many of [`configs`] are only for refused reloads (at the end).
const REFUSED_CONFIGS: usize = 2;

/// How many times `handle_timeout` may find a timer due again at the same instant: more
/// than every bounded repetition (at most 100 announcements) means a busy loop.
pub const SAME_INSTANT_FIRES: u32 = 1_000;

/// The machine under test, the time, and what its actions did so far.
#[derive(Debug)]
pub struct Driver {
    instance: Instance,
    /// The configurations events pick from (same family first, see [`configs`]).
    configs: Vec<InstanceConfig>,
    family: Family,
    t0: Instant,
    now: Instant,
    /// The state the last `StateChanged` entered.
    state: State,
    /// The VIPs on the interface, as the actions put them there.
    held: Option<BTreeSet<IpAddr>>,
    /// How many times Master was entered.
    masters: u64,
    exited: bool,
    /// Timer expiries left (see [`TIMER_BUDGET`]).
    budget: u32,
    /// How many actions the last input produced.
    last_actions: usize,
    /// The last input's actions (a buffer reused across inputs).
    actions: Vec<Action>,
    /// The received-datagram parser, as the shell keeps one per instance.
    parser: Parser,
    /// The last sync-group input, once the run made the instance a member.
    sync: Option<SyncInput>,
    /// The posture before the input being checked.
    posture_before: Posture,
}

impl Driver {
    /// Reads the family, the starting configuration and the health, then starts.
    fn start(bytes: &mut Bytes<'_>) -> Driver {
        let pick = bytes.u8();
        let family = if pick & 0x80 == 0 {
            Family::Ipv4
        } else {
            Family::Ipv6
        };
        let configs = configs(family);
        let config = configs[usize::from(pick & 0x7f) % (configs.len() - REFUSED_CONFIGS)].clone();
        let parser = Parser::new(config.version.version());
        let instance = Instance::try_new(config)
            .unwrap_or_else(|e| panic!("a prepared configuration is invalid: {e}"));
        // Any origin: the machine only compares and adds.
        let t0 = Instant::now();
        let mut driver = Driver {
            instance,
            configs,
            family,
            t0,
            now: t0,
            state: State::Initialize,
            held: None,
            masters: 0,
            exited: false,
            budget: TIMER_BUDGET,
            last_actions: 0,
            actions: Vec::new(),
            parser,
            sync: None,
            posture_before: Posture::Stopped,
        };
        let can_serve = bytes.bool();
        driver.input(Kind::Other, |i, now| i.handle_health(now, can_serve));
        driver.input(Kind::Startup, |i, now| i.handle_startup(now));
        driver
    }

    /// Feeds one input at `self.now`, drains the actions and checks every invariant.
    fn input<R>(&mut self, kind: Kind, feed: impl FnOnce(&mut Instance, Instant) -> R) -> R {
        let now = self.now;
        let due_before = self.instance.poll_timeout();
        let state_before = self.instance.state();
        self.posture_before = self.instance.posture();
        let out = feed(&mut self.instance, now);
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        while let Some(action) = self.instance.poll_action() {
            actions.push(action);
        }
        self.check_actions(kind, now, due_before, &actions);
        self.last_actions = actions.len();
        let early_acted = !actions.is_empty();
        self.actions = actions;
        let at = self.at(now);
        if self.exited {
            assert!(
                self.instance.poll_timeout().is_none(),
                "{at}: a timer runs after Exit"
            );
            return out;
        }
        assert_eq!(
            self.instance.state(),
            self.state,
            "{at}: state() disagrees with the StateChanged actions"
        );
        assert_eq!(
            self.instance.stats().master_transitions,
            self.masters,
            "{at}: the Master counter disagrees with the transitions"
        );
        match (&self.held, self.state) {
            (Some(held), State::Master) => {
                // The configured VIPs are distinct (validated): same length and all
                // held is the same set, without allocating on every input.
                let configured = &self.instance.config().vips;
                assert!(
                    held.len() == configured.len() && configured.iter().all(|v| held.contains(v)),
                    "{at}: Master holds {held:?}, the configured VIPs are {configured:?}"
                );
            }
            (None, State::Master) => panic!("{at}: Master without the VIPs"),
            // A Backup that lost them lingers until the new Master's next advert.
            (Some(_), State::Backup) if self.instance.holds_vips() => {}
            (Some(held), state) => panic!("{at}: {state} still holds the VIPs {held:?}"),
            (None, _) => assert!(
                !self.instance.holds_vips(),
                "{at}: holds_vips() but the actions removed them"
            ),
        }
        if let Some(next) = self.instance.poll_timeout() {
            assert!(
                next >= now,
                "{at}: poll_timeout {:?} is before the input's now",
                self.at(next)
            );
        }
        if kind == Kind::Timeout && due_before.is_none_or(|due| due > now) {
            assert!(
                !early_acted,
                "{at}: an early handle_timeout acted: {:?}",
                self.actions
            );
            assert_eq!(
                self.instance.state(),
                state_before,
                "{at}: an early handle_timeout changed the state"
            );
        }
        if self.sync.is_some_and(|s| !s.may_master) && self.state == State::Master {
            assert!(
                self.instance.is_handing_over(),
                "{at}: Master although its sync group holds it back"
            );
        }
        let _ = self.instance.masters_heard(now);
        out
    }

    /// Checks one input's actions, in order, and records their effect.
    fn check_actions(
        &mut self,
        kind: Kind,
        now: Instant,
        due_before: Option<Instant>,
        actions: &[Action],
    ) {
        let at = self.at(now);
        for (i, action) in actions.iter().enumerate() {
            assert!(!self.exited, "{at}: {action:?} after Exit");
            match *action {
                Action::StateChanged { from, to, reason } => {
                    assert_eq!(
                        from, self.state,
                        "{at}: {action:?} but the state was {}",
                        self.state
                    );
                    assert_ne!(from, to, "{at}: a transition to the same state");
                    if to == State::Master {
                        let by_timer = kind == Kind::Timeout
                            && from == State::Backup
                            && matches!(
                                reason,
                                Reason::MasterDown | Reason::MasterResigned | Reason::Preempt
                            )
                            && due_before.is_some_and(|due| due <= now);
                        // A sync group lets a member that was waiting for it.
                        let by_group = kind == Kind::Sync
                            && from == State::Backup
                            && self.posture_before == Posture::Ready;
                        let owner = self.instance.effective_priority().is_owner();
                        let by_owner = owner
                            && ((kind == Kind::Startup
                                && from == State::Initialize
                                && reason == Reason::OwnerStartup)
                                || (from == State::Fault && reason == Reason::FaultCleared));
                        assert!(
                            by_timer || by_owner || by_group,
                            "{at}: Master entered by {kind:?} ({reason}, from {from}), not by the Master_Down_Timer, an owner's (re)start or its sync group"
                        );
                        self.masters += 1;
                    }
                    self.state = to;
                }
                Action::AddVips => {
                    assert!(
                        self.held.is_none() || kind == Kind::VipsMissing,
                        "{at}: AddVips while holding them"
                    );
                    assert_eq!(self.state, State::Master, "{at}: AddVips outside Master");
                    self.held = Some(self.instance.config().vips.iter().copied().collect());
                }
                Action::RemoveVips => {
                    assert!(self.held.is_some(), "{at}: RemoveVips without holding them");
                    self.held = None;
                }
                Action::AddVip { addr } => {
                    let held = self.held.as_mut();
                    let held =
                        held.unwrap_or_else(|| panic!("{at}: AddVip {addr} without the VIPs"));
                    assert!(held.insert(addr), "{at}: AddVip {addr} already held");
                }
                Action::RemoveVip { addr } => {
                    let held = self.held.as_mut();
                    let held =
                        held.unwrap_or_else(|| panic!("{at}: RemoveVip {addr} without the VIPs"));
                    assert!(held.remove(&addr), "{at}: RemoveVip {addr} not held");
                    if held.is_empty() {
                        // A lingering Backup reloaded: every old VIP released.
                        self.held = None;
                    }
                }
                Action::Announce => {
                    assert!(
                        self.held.is_some() && self.state == State::Master,
                        "{at}: Announce without holding the VIPs"
                    );
                }
                Action::SendAdvert { priority } => {
                    assert_eq!(
                        self.state,
                        State::Master,
                        "{at}: a {} advertises",
                        self.state
                    );
                    if priority.is_resign() {
                        // Resigning (shutdown, a failed handover, a fault): Master is
                        // left in the same input.
                        assert!(
                            actions[i..].iter().any(|a| matches!(
                                a,
                                Action::StateChanged {
                                    from: State::Master,
                                    ..
                                }
                            )),
                            "{at}: a priority-0 advert without leaving Master: {:?}",
                            &actions[i..]
                        );
                    }
                }
                Action::Exit => {
                    assert_eq!(
                        i + 1,
                        actions.len(),
                        "{at}: actions after Exit: {actions:?}"
                    );
                    assert!(
                        self.instance.has_exited(),
                        "{at}: Exit but has_exited() is false"
                    );
                    self.exited = true;
                }
            }
        }
    }

    /// `when` as an offset from the start, for messages (formatted only if one is shown).
    fn at(&self, when: Instant) -> At {
        At(when.saturating_duration_since(self.t0))
    }

    /// Moves time to `to`, firing every timer due on the way at its deadline.
    fn advance_to(&mut self, to: Instant) {
        let mut same_instant = 0;
        while let Some(due) = self.instance.poll_timeout() {
            if due > to {
                break;
            }
            if self.budget == 0 {
                // Out of budget: the run ends here (see `machine`), before time would
                // pass a due timer.
                return;
            }
            self.budget -= 1;
            if due <= self.now {
                same_instant += 1;
                assert!(
                    same_instant <= SAME_INSTANT_FIRES,
                    "{}: timers keep firing without time passing (busy loop): {:?}",
                    self.at(self.now),
                    self.instance
                );
            } else {
                same_instant = 0;
            }
            self.now = due.max(self.now);
            self.input(Kind::Timeout, |i, now| i.handle_timeout(now));
        }
        self.now = to.max(self.now);
    }

    // --- events ---

    /// Time passes: 0-63 ms, 0-630 ms in 10s, 0-6.3 s in 100s, or 0-63 s.
    fn advance(&mut self, bytes: &mut Bytes<'_>) {
        let b = bytes.u8();
        let n = u64::from(b & 0x3f);
        let step = match b >> 6 {
            0 => Duration::from_millis(n),
            1 => Duration::from_millis(n * 10),
            2 => Duration::from_millis(n * 100),
            _ => Duration::from_secs(n),
        };
        self.advance_to(self.now + step);
    }

    /// The shell's timer fires, exactly at the deadline, or a call a little early (a
    /// no-op) or late.
    fn next_timeout(&mut self, bytes: &mut Bytes<'_>) {
        let Some(due) = self.instance.poll_timeout() else {
            return;
        };
        match bytes.u8() % 3 {
            0 => self.advance_to(due),
            1 => {
                // Early: nothing may happen (checked in `input`).
                let early = due - Duration::from_nanos(1);
                if early >= self.now {
                    self.now = early;
                    self.input(Kind::Timeout, |i, now| i.handle_timeout(now));
                }
            }
            _ => self.advance_to(due + Duration::from_millis(1)),
        }
    }

    /// Whether the node can serve.
    fn health(&mut self, bytes: &mut Bytes<'_>) {
        let can_serve = bytes.bool();
        self.input(Kind::Other, |i, now| i.handle_health(now, can_serve));
    }

    /// `apivip handover`.
    fn maintenance(&mut self, _: &mut Bytes<'_>) {
        let _ = self.refusable(|i, now| i.handle_maintenance(now).is_ok());
    }

    /// `apivip resume`.
    fn resume(&mut self, _: &mut Bytes<'_>) {
        let _ = self.refusable(|i, now| i.handle_resume(now).is_ok());
    }

    /// What netlink says about the interface: four flags from one byte (mostly healthy).
    fn link(&mut self, bytes: &mut Bytes<'_>) {
        let b = bytes.u8();
        let link = LinkState {
            exists: b & 0x01 == 0,
            up: b & 0x02 == 0,
            carrier: b & 0x04 == 0,
            source_present: b & 0x08 == 0,
        };
        self.input(Kind::Other, |i, now| i.handle_link(now, link));
    }

    /// Adding the VIPs failed.
    fn vip_add_failed(&mut self, _: &mut Bytes<'_>) {
        self.input(Kind::Other, |i, now| i.handle_vip_add_failed(now));
    }

    /// A VIP went missing from the interface.
    fn vips_missing(&mut self, _: &mut Bytes<'_>) {
        self.input(Kind::VipsMissing, |i, now| i.handle_vips_missing(now));
    }

    /// What the sync group says: two flags from one byte.
    fn sync(&mut self, bytes: &mut Bytes<'_>) {
        let b = bytes.u8();
        let input = SyncInput {
            may_master: b & 0x01 != 0,
            sibling_fault: b & 0x02 != 0,
        };
        self.sync = Some(input);
        self.input(Kind::Sync, |i, now| i.handle_sync(now, input));
    }

    /// The kernel dropped datagrams (SO_RXQ_OVFL).
    fn rx_dropped(&mut self, bytes: &mut Bytes<'_>) {
        let dropped = u64::from(bytes.u8());
        self.input(Kind::Other, |i, now| i.handle_rx_dropped(now, dropped));
    }

    /// A reload with one of the prepared configurations.
    fn reconfigure(&mut self, bytes: &mut Bytes<'_>) {
        let config = self.configs[usize::from(bytes.u8()) % self.configs.len()].clone();
        let version = config.version.version();
        if self.refusable(|i, now| i.handle_reconfigure(now, config).is_ok())
            && version != self.parser.version()
        {
            self.parser.set_version(version);
        }
    }

    /// SIGTERM.
    fn shutdown(&mut self, _: &mut Bytes<'_>) {
        self.input(Kind::Other, |i, now| i.handle_shutdown(now));
    }

    /// An input that may be refused (`feed` returns whether it was applied): a refusal
    /// changes nothing.
    fn refusable(&mut self, feed: impl FnOnce(&mut Instance, Instant) -> bool) -> bool {
        let before = (self.instance.poll_timeout(), self.instance.state());
        let applied = self.input(Kind::Other, feed);
        if !applied {
            let at = self.at(self.now);
            assert_eq!(
                (self.instance.poll_timeout(), self.instance.state()),
                before,
                "{at}: a refused control or reload changed a timer or the state"
            );
            assert_eq!(
                self.last_actions, 0,
                "{at}: a refused control or reload acted"
            );
        }
        applied
    }

    /// An advert built with the codec from fuzzed fields, then decoded by it.
    ///
    /// Flag byte: bit 0 the other version, bit 1 a fuzzed VRID, bit 2 a fuzzed TTL, bit 3 a
    /// fuzzed interval, bits 4-5 the addresses (ours, the other VIP list, ours repeated,
    /// fuzzed), bit 6 a fuzzed VRRPv2 password, bit 7 the other family's addresses.
    fn advert(&mut self, bytes: &mut Bytes<'_>) {
        let flags = bytes.u8();
        let src = self.source(bytes);
        let ttl = if flags & 0x04 == 0 { TTL } else { bytes.u8() };
        let config = self.instance.config().clone();
        let vrid = if flags & 0x02 == 0 {
            config.vrid
        } else {
            Vrid::try_new(bytes.u8()).unwrap_or(VRID)
        };
        let priority = Priority::new(bytes.u8());
        let family = if flags & 0x80 == 0 {
            self.family
        } else {
            other(self.family)
        };
        let a = addrs(family);
        let mut vips: Vec<IpAddr> = match (flags >> 4) & 3 {
            0 if family == self.family => config.vips.clone(),
            0 | 1 => vec![a.vips[1], a.vips[0]],
            2 => {
                let mut v = config.vips.clone();
                v.push(v[0]);
                v
            }
            _ => (0..bytes.u8() % 4)
                .map(|_| fuzzed_addr(family, bytes))
                .collect(),
        };
        vips.retain(|v| family_of(*v) == family);
        let v2 = matches!(config.version, VersionConfig::V2 { .. }) != (flags & 0x01 == 1);
        let repr = if v2 && family == Family::Ipv4 {
            let advert_int = match (flags & 0x08 == 0, config.version) {
                (true, VersionConfig::V2 { interval, .. }) => interval,
                _ => Secs::try_new(bytes.u8()).unwrap_or(Secs::new_unchecked(1)),
            };
            let auth = match (flags & 0x40 == 0, config.version) {
                (true, VersionConfig::V2 { auth, .. }) => auth.map_or(Auth::None, Auth::Password),
                _ => match bytes.u8() % 3 {
                    0 => Auth::None,
                    _ => Auth::Password(Password::from_wire(bytes.array())),
                },
            };
            Repr::V2(AdvertV2 {
                vrid,
                priority,
                advert_int,
                auth,
                addrs: AddrList::try_new(vips.iter().filter_map(as_v4).collect())
                    .unwrap_or_else(|_| AddrList::empty()),
            })
        } else {
            let max_advert_int = match (flags & 0x08 == 0, config.version) {
                (true, VersionConfig::V3 { interval }) => interval,
                _ => Centisecs::try_new(bytes.u16() & 0x0fff)
                    .unwrap_or(Centisecs::new_unchecked(100)),
            };
            let addrs = match family {
                Family::Ipv4 => VirtualAddrs::V4(
                    AddrList::try_new(vips.iter().filter_map(as_v4).collect())
                        .unwrap_or_else(|_| AddrList::empty()),
                ),
                Family::Ipv6 => VirtualAddrs::V6(
                    AddrList::try_new(vips.iter().filter_map(as_v6).collect())
                        .unwrap_or_else(|_| AddrList::empty()),
                ),
            };
            Repr::V3(AdvertV3 {
                vrid,
                priority,
                max_advert_int,
                addrs,
            })
        };
        // Sent as a peer sends it, received as the shell receives it.
        let dst = match config.peers {
            Some(_) => a.me,
            None => a.group,
        };
        let (ip, policy) = datagram::policy(repr.version(), src, dst);
        let wire = emit(&repr, &ip, policy);
        let result = self.parser.parse(&wire, src, dst);
        if family_of(src) == repr.family() && repr.version() == self.parser.version() {
            assert_eq!(
                result.as_ref(),
                Ok(&repr),
                "the datagram parser does not read back what the codec sent"
            );
        }
        self.received(Received {
            src,
            ttl_or_hop_limit: ttl,
            result,
        });
    }

    /// Raw bytes as an advert: a length, then the message, sent to the group (or to this
    /// node), decoded by the received-datagram parser as the shell does, or by the
    /// codec with the checksum ignored (so that fuzzed messages get past it).
    fn raw_advert(&mut self, bytes: &mut Bytes<'_>) {
        let flags = bytes.u8();
        let src = self.source(bytes);
        let ttl = if flags & 0x01 == 0 { TTL } else { bytes.u8() };
        let len = usize::from(bytes.u8() % 64);
        let msg = bytes.take(len).to_vec();
        let dst = if flags & 0x02 == 0 {
            addrs(self.family).group
        } else {
            addrs(self.family).me
        };
        let result = if flags & 0x04 == 0 {
            self.parser.parse(&msg, src, dst)
        } else {
            Repr::from_bytes(&msg, &datagram::ip_pair(src, dst), Checksum::Ignore)
        };
        self.received(Received {
            src,
            ttl_or_hop_limit: ttl,
            result,
        });
    }

    /// The source of an advert: this node, a lower or higher peer, a stranger, the other
    /// family, or fuzzed.
    fn source(&mut self, bytes: &mut Bytes<'_>) -> IpAddr {
        let a = addrs(self.family);
        match bytes.u8() % 8 {
            0 | 1 => a.higher,
            2 | 3 => a.lower,
            4 => a.me,
            5 => a.stranger,
            6 => addrs(other(self.family)).higher,
            _ => fuzzed_addr(self.family, bytes),
        }
    }

    /// Hands a received advert to the machine; a dropped one must change nothing.
    fn received(&mut self, received: Received) {
        let before = (self.instance.poll_timeout(), self.instance.state());
        let dropped = self
            .input(Kind::Other, |i, now| i.handle_advert(now, received))
            .err();
        if let Some(reason) = dropped {
            let at = self.at(self.now);
            assert_eq!(
                (self.instance.poll_timeout(), self.instance.state()),
                before,
                "{at}: a dropped advert ({reason}) changed a timer or the state"
            );
            assert_eq!(
                self.last_actions, 0,
                "{at}: a dropped advert ({reason}) acted"
            );
        }
    }
}

fn fuzzed_addr(family: Family, bytes: &mut Bytes<'_>) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(bytes.array::<4>())),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(bytes.array::<16>())),
    }
}

fn other(family: Family) -> Family {
    match family {
        Family::Ipv4 => Family::Ipv6,
        Family::Ipv6 => Family::Ipv4,
    }
}

fn family_of(addr: IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

fn as_v4(addr: &IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    }
}

fn as_v6(addr: &IpAddr) -> Option<Ipv6Addr> {
    match addr {
        IpAddr::V6(a) => Some(*a),
        IpAddr::V4(_) => None,
    }
}

// === config ===

/// The file name config errors are reported against. Relative, so that certificate
/// paths in fuzzed configs resolve to files that do not exist (warnings).
const CONFIG_SOURCE: &str = "apivip.yaml";

/// The YAML config loader, on `data` as text (invalid UTF-8 replaced, as a file read
/// would refuse it).
///
/// Invariants: nothing panics; every error line names the file; a config that loads
/// builds its VRRP instance (validation admits nothing the election refuses), and a
/// reload from it to itself plans no change.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let source = Path::new(CONFIG_SOURCE);
    match Config::from_yaml_with(&text, source, MissingFiles::Warn) {
        Ok((config, _warnings)) => {
            for vrrp in &config.vrrp {
                if let Err(e) = Instance::try_new(vrrp.instance.clone()) {
                    panic!("a validated config builds no VRRP instance: {e}");
                }
            }
            let plan = ReloadPlan::between(&config, &config);
            let changes = plan.describe(&config, &config);
            assert!(
                changes.is_empty(),
                "a config differs from itself: {changes:?}"
            );
            let _ = config.warning_lines();
        }
        Err(e) => {
            for line in e.lines() {
                assert!(
                    line.starts_with(CONFIG_SOURCE),
                    "a config error does not name the file: {line}"
                );
            }
            if let ConfigError::Invalid { issues, .. } = &e {
                assert!(!issues.is_empty(), "Invalid without an issue");
            }
        }
    }
}

/// The signing time of the [`dns`] target (fixed: runs are deterministic).
const DNS_NOW: u64 = 1_764_633_600;

/// DNS replies and votes. The first byte picks the case:
///
/// - 0: the bytes as a reply to a signed query;
/// - 1: a genuine signed reply (one A record) with the rest of the bytes XORed in from
///   the offset in the second byte: whatever [`decode_reply`] makes of it, an
///   authenticated answer carries the genuine RCODE and records (a MAC that verifies
///   over other content is a forgery accepted);
/// - 2: a genuine signed reply whose answers are A records taken from the bytes: it
///   authenticates, with exactly those records;
/// - otherwise: the bytes, split at zero bytes, as a TXT record's strings: a vote that
///   parses writes back to the same vote, and with it (and a published set from the
///   second byte) the rule publishes at least one of three masters.
///
/// Nothing panics.
pub fn dns(data: &[u8]) {
    let Some((&case, rest)) = data.split_first() else {
        return;
    };
    let name = hickory_proto::rr::Name::from_ascii("api.cluster.example.").expect("literal");
    let key = Key::new(
        &hickory_proto::rr::Name::from_ascii("fuzz-key.").expect("literal"),
        Algorithm::HmacSha256,
        b"apivip-fuzz-secret-of-32-bytes!!".to_vec(),
    )
    .expect("a valid key");
    let sent = wire::sign(
        wire::query(7, &name, hickory_proto::rr::RecordType::A),
        &key,
        DNS_NOW,
    )
    .expect("signing a query");
    match case {
        0 => {
            let _ = decode_reply(rest, &sent, &key, DNS_NOW);
        }
        1 => {
            let records = vec![(name.clone(), Rdata::A(Ipv4Addr::new(198, 18, 0, 11)))];
            let rcode = hickory_proto::op::ResponseCode::NoError;
            let mut bytes =
                signed_reply(&sent, &key, DNS_NOW, rcode, &records).expect("a genuine reply");
            let Some((&offset, xor)) = rest.split_first() else {
                return;
            };
            let len = bytes.len();
            for (i, b) in xor.iter().enumerate() {
                bytes[(usize::from(offset) + i) % len] ^= b;
            }
            if let Reply::Answer(a) = decode_reply(&bytes, &sent, &key, DNS_NOW) {
                assert_eq!(
                    a.rcode, rcode,
                    "a damaged reply authenticated another RCODE"
                );
                assert_eq!(
                    a.records, records,
                    "a damaged reply authenticated other records"
                );
            }
        }
        2 => {
            let records: Vec<_> = rest
                .chunks_exact(4)
                .take(16)
                .map(|c| {
                    (
                        name.clone(),
                        Rdata::A(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
                    )
                })
                .collect();
            let rcode = hickory_proto::op::ResponseCode::NoError;
            let bytes = signed_reply(&sent, &key, DNS_NOW, rcode, &records).expect("a reply");
            match decode_reply(&bytes, &sent, &key, DNS_NOW) {
                Reply::Answer(a) => assert_eq!(a.records, records, "records changed on the way"),
                other => panic!("a genuine reply did not authenticate: {other:?}"),
            }
        }
        _ => {
            let (published, strings) = rest.split_first().map_or((0, rest), |(p, s)| (*p, s));
            let txt: Vec<Vec<u8>> = strings.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
            let vote = Vote::parse(&txt);
            if let Some(v) = &vote {
                assert_eq!(
                    Vote::parse(&v.to_txt()).as_ref(),
                    Some(v),
                    "a vote changed on the way"
                );
            }
            let masters: Vec<String> = ["m1", "m2", "m3"].map(String::from).to_vec();
            let published: BTreeSet<String> = masters
                .iter()
                .enumerate()
                .filter(|(i, _)| published & (1 << i) != 0)
                .map(|(_, m)| m.clone())
                .collect();
            let cfg = vote.as_ref().map_or("x", |v| v.cfg.as_str()).to_owned();
            let votes: Vec<Vote> = vote.into_iter().collect();
            for quorum in 1..=3 {
                let w = votes::wanted(&masters, quorum, &cfg, &votes, &published);
                assert!(!w.masters.is_empty(), "the name left empty: {w:?}");
                assert!(w.masters.is_subset(&masters.iter().cloned().collect()));
            }
        }
    }
}
