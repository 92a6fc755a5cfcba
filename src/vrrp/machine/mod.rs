//! The election state machine of one VRRP instance (RFC 9568 §6 for VRRPv3, RFC 3768
//! §6 for VRRPv2), sans-IO: no sockets, no runtime, no clock. Every input carries
//! `now`; the shell performs the [`Action`]s and wakes the machine at
//! [`Instance::poll_timeout`].
//!
//! # Call order
//!
//! ```text
//!  shell                                   Instance
//!  -----                                   --------
//!  try_new(config)            ------->     Initialize
//!  [handle_health(now, ok)]   ------->     sets the priority before the first election
//!  handle_startup(now)        ------->     Backup (or Master if priority 255)
//!  loop {
//!    decoded packet           ------->     handle_advert(now, Received { .. })
//!    timer at poll_timeout()  ------->     handle_timeout(now)    (early = no-op)
//!    health flips             ------->     handle_health(now, can_serve)
//!    `apivip handover`        ------->     handle_maintenance(now)  (Err: HTTP 409)
//!    `apivip resume`          ------->     handle_resume(now)       (Err: HTTP 409)
//!    reload (SIGHUP)          ------->     handle_reconfigure(now, config)  (Err: refused)
//!    netlink: link, addresses ------->     handle_link(now, LinkState)      (FAULT in/out)
//!    its sync group's wish    ------->     handle_sync(now, SyncInput)      (gate, FAULT)
//!    AddVips failed           ------->     handle_vip_add_failed(now)
//!    a held VIP disappeared   ------->     handle_vips_missing(now)
//!    SIGTERM                  ------->     handle_shutdown(now)
//!    while let Some(a) = poll_action()     SendAdvert / AddVips / RemoveVips /
//!        perform a                         AddVip / RemoveVip / Announce /
//!                                          StateChanged / Exit
//!    re-arm the timer at poll_timeout()
//!  }
//! ```
//!
//! # Timers
//!
//! - Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time (RFC 9568 §6.1).
//!   A Backup that has seen gaps in the Active Router's adverts waits up to 3
//!   intervals longer ([`Instance::backup_down_interval`], lossy-link hysteresis).
//! - Skew_Time = (256 - Priority) x Master_Adver_Interval / 256 for VRRPv3, and
//!   (256 - Priority) / 256 seconds for VRRPv2 (RFC 3768 §6.1), with the priority
//!   this node has now (lowered while it cannot serve).
//! - A VRRPv3 Backup learns Master_Adver_Interval from every advert it accepts; a
//!   VRRPv2 one uses its configured interval and drops adverts with another.
//! - Announcements repeat on the Announce timer: a Master announces on taking the VIPs
//!   (and on re-asserting itself, on restoring a removed VIP, on a reload adding one),
//!   `announce_count` times, the second after [`EARLY_REPEAT`], then every
//!   `announce_interval`; then every `announce_refresh` (if not zero) while Master;
//!   leaving Master stops them. The shell sends each [`Action::Announce`] once.
//!
//! # Received adverts (RFC 9568 §7.1, RFC 3768 §7.1)
//!
//! Checked in this order; the first failure drops the advert with a [`DropReason`]
//! and one counter in [`Stats`], and **changes no timer and no state**: a decode
//! error, TTL/hop limit not 255, another version or family, another VRID, our own
//! source address, a source that is not a unicast peer, VRRPv2 authentication or
//! interval, priority 255 from an address that is not the configured owner, and an
//! address list that differs from ours unless the sender is the owner.
//!
//! # Faults
//!
//! [`State::Fault`] (keepalived's FAULT; RFC 9568 has no such state) takes the node out
//! of the election while a [`Fault`] holds: the interface gone, down or without
//! carrier, the source address missing ([`Instance::handle_link`], from netlink), or
//! the VIPs failing to be added ([`Instance::handle_vip_add_failed`], cleared by the
//! machine after three intervals so that it tries again). A Master sends a
//! priority-0 advert (Backups take over after Skew_Time if the link still carries
//! it) and removes the VIPs; in Fault nothing is sent, adverts are ignored and no
//! election timer runs. When the last fault clears the node starts again as at
//! startup: Backup (the owner Master), Master_Down_Interval with the configured
//! interval. A Master that finds a VIP gone from the interface
//! ([`Instance::handle_vips_missing`]) adds it back and announces it again.
//!
//! # Sync groups
//!
//! An instance in a sync group (keepalived's `vrrp_sync_group`; the group's rule is
//! [`crate::vrrp::sync`]) gets [`Instance::handle_sync`] from its group and reports
//! [`Instance::posture`]. While the group does not let it be Master, a Master resigns
//! (priority 0, the VIPs removed, [`Reason::SyncGroup`]) and a Backup whose
//! Master_Down_Timer runs out (or the owner at startup) does not take over: it waits,
//! [`Posture::Ready`], with no timer running, until the group lets it (then it becomes
//! Master for the reason its timer had) or an advert it accepts restarts its timer. A
//! sibling's fault is [`Fault::SyncGroup`]. An instance never told anything is alone:
//! nothing changes for it.
//!
//! # Planned handover
//!
//! keepalived resigns on SIGTERM with a priority-0 advert and removes the VIPs at
//! once, so nobody holds them until a Backup's skew time passes. Here
//! [`Instance::handle_shutdown`] as Master keeps the VIPs and keeps advertising,
//! with priority 1. A preempting Backup discards these lower-priority adverts, its
//! Master_Down_Timer runs out and it takes over; when its first advert arrives, this
//! node (by the ordinary Master rule: a higher priority is heard) removes the VIPs and
//! emits [`Action::Exit`]. The VIPs are held by both nodes for one link delay and by
//! none at no time. If nobody takes over within `handover_timeout` (every Backup has
//! preemption off, or there is none), it falls back to what RFC 9568 §6.4.3 does on
//! Shutdown: a priority-0 advert, remove the VIPs, exit.
//!
//! A node that merely cannot serve goes the same way without exiting: its priority
//! drops by `health_weight`, it advertises that at once, and it keeps the VIPs until
//! a Backup with a higher priority takes over and is heard.
//!
//! # Maintenance
//!
//! [`Instance::handle_maintenance`] (`apivip handover`) is the same handshake without
//! the exit. Until [`Instance::handle_resume`] the node's priority is 1 everywhere:
//! in its adverts, when it compares a received one as Backup, and in its skew. As
//! Master it keeps the VIPs, advertises priority 1 at once and waits (at most
//! `handover_timeout`, [`Instance::is_handing_over`] is true): when a preempting
//! Backup has taken over and its advert is heard, it removes the VIPs and becomes
//! Backup ([`Reason::Maintenance`]), still in the election at priority 1. If nobody
//! takes over in time (or `handover_timeout` is 0) it stays Master at priority 1
//! ([`Instance::maintenance_timed_out`]): availability first, the VIPs are never
//! released to nobody; a node that preempts later still takes them the ordinary
//! way. As Backup it only lowers its priority. [`Instance::handle_resume`] restores
//! the effective priority (base, or base - `health_weight` while unable to serve);
//! a Master advertises it at once, and a Backup with preemption takes the VIPs back
//! by the ordinary rules (it discards the now lower-priority adverts until its
//! Master_Down_Timer runs out). [`Instance::handle_shutdown`] works as usual during
//! maintenance (a maintenance handover under way becomes the shutdown's, with its
//! deadline); [`Instance::handle_health`] is recorded but takes effect on resume.
//! Controls that cannot apply now are refused with a [`ControlRefused`] and change
//! nothing.
//!
//! # Reconfiguration
//!
//! [`Instance::handle_reconfigure`] applies a reloaded configuration in place:
//! priority, preemption and its delay, VIPs, interval, version and password, unicast
//! peers, primary address, health weight and handover timeout. Only the VRID and the
//! address family make another virtual router; those are refused
//! ([`ReconfigureRefused`]) and the caller replaces the instance. The RFCs have no
//! such event; what was chosen, by RFC 9568's own rules:
//!
//! - The change itself never releases the VIPs and never sends priority 0 (0 is not
//!   a configurable priority; it means "I stop", RFC 9568 §6.4.3 Shutdown). A Master
//!   advertises its new priority at once and keeps the VIPs until an advert with a
//!   higher priority arrives (§6.4.3): a lower priority that still wins changes
//!   nothing else; one that loses to a preempting Backup is a planned handover (the
//!   Backup takes over after its Master_Down_Interval, this node releases the VIPs
//!   when it hears it); one that loses only to non-preempting Backups stays Master,
//!   as §6.4.2 prescribes for them. A Master does not act on priorities it heard
//!   earlier ([`Instance::peers`]): Backups do not advertise, so those are stale, and
//!   a node that still claims Master is answered by its next advert.
//! - A Backup's Master_Down_Timer is recomputed from when it was started, with the
//!   new priority and interval (Skew_Time depends on both).
//! - After a change of the VIPs, adverts with the previous VIP list are still
//!   accepted until one with the new list is, so that nodes can be reloaded one by
//!   one (see [`Instance::handle_reconfigure`]).
//!
//! # Deviations from the RFCs
//!
//! - On becoming Master the addresses are announced (gratuitous ARP / NA) *before* the
//!   first ADVERTISEMENT, not after it: a handing-over holder releases the VIP when it
//!   hears that advert, and hosts must already point at the new holder by then.
//! - **Planned handover** instead of an immediate priority-0 advert on shutdown (see
//!   above). `handover_timeout: 0` restores the RFC behaviour.
//! - **Maintenance** (not in the RFC; see above): an operator sets the priority to 1
//!   without leaving the election.
//! - **Skew_Time is exact**: computed in nanoseconds from the formula, not truncated to
//!   whole centiseconds; keepalived computes it in microseconds, so the two agree to
//!   the microsecond (1s interval, priority 100: 609.375ms).
//! - **Health-weighted priority**: the priority used everywhere (adverts, comparisons,
//!   skew) is the configured one minus `health_weight` while the node cannot serve,
//!   never below 1, so the node never leaves the election. Until the shell reports
//!   health, the node counts as unable to serve (a freshly started node does not
//!   preempt a healthy master before its own checks ran).
//! - **Preempt delay** (not in the RFC; keepalived `preempt_delay`): a preempting
//!   Backup that hears a lower-priority Active Router first treats its adverts as if
//!   preemption were off for `preempt_delay` (restarting its Master_Down_Timer), then
//!   discards them as the RFC says. So a preemption comes `preempt_delay` +
//!   Master_Down_Interval after the first lower-priority advert, and a crash of the
//!   lower-priority router is still detected after Master_Down_Interval: no separate
//!   timer is needed. Hearing a higher or equal priority resets the delay.
//! - **A Master re-asserts itself on hearing a lower priority** (keepalived's
//!   `vrrp_state_master_rx`): instead of only discarding the advert, it announces the
//!   VIPs again and sends an advert, at most once per Master_Down_Interval. A router
//!   that just lost the VIP may have sent one last gratuitous ARP before it heard the
//!   new holder (its repetitions run every `announce_interval`, and after a recent
//!   takeover they line up with the adverts); without this, clients would keep its MAC
//!   until the new holder's next repetition. After a healed partition it pulls clients
//!   back at once.
//!   Counted in [`Stats::split_brains`]. The RFC says discard; keepalived does the
//!   same as here.
//! - **A Master that lost soon after announcing lingers**: when a Master hears a
//!   higher priority less than half a (learned) Master_Adver_Interval, and at most
//!   [`LINGER_MAX`], after it announced the VIPs, it becomes Backup but keeps the VIPs
//!   until the new Master's next advert (at most as long again), then releases them ([`Instance::holds_vips`],
//!   [`Stats::lingers`]). Two Backups that preempt together (the lower one's
//!   Master_Down_Timer trails by Skew_Time differences of a few milliseconds at fast
//!   intervals, less than a loaded host's delivery delay) both announce; clients
//!   follow the later announcement, the loser's, and the winner moves them back only
//!   when it hears the loser's claim (the re-assertion above), which can be after the
//!   loser heard the winner. The RFC releases at once: a connect sent in between
//!   reached a node without the VIP (seen in CI as one timed-out connect across a
//!   handover). The re-assertion's announcement comes before its advert, so when
//!   that advert is heard clients have moved. While lingering the node answers ARP
//!   for the VIPs too; a client that resolves then and picks it is moved by the
//!   winner's repeated announcements, which go on after the linger ends (it lasts at
//!   most [`LINGER_MAX`], 100 ms; the second repeat comes 210 ms after a takeover,
//!   and a re-assertion repeats for a second).
//! - **Announcements are refreshed** every `announce_refresh` while Master
//!   (keepalived's `garp_master_refresh`; the daemon's default is 1 s, the machine's
//!   zero). Under heavy loss a Backup that missed three adverts takes the VIPs for a
//!   moment and announces them; its gratuitous ARP may reach clients while its advert
//!   (its claim) never reaches the Master, which then has no reason to re-announce.
//!   Measured with 30 % loss and 50 ms delay on both nodes' links: the Backup held the
//!   VIP for 6 ms, its one advert was lost, its two gratuitous ARPs were not, and after
//!   the impairment ended a client kept its MAC for 7.3 s (its neighbour entry went
//!   STALE, DELAY 5 s, three unanswered unicast probes, then a broadcast); 3.6 to
//!   20.7 s in earlier runs. The refresh bounds that by `announce_refresh`. The RFC
//!   asks for announcements on becoming Master only. No refresh while handing over or
//!   while the priority is lowered (a takeover is expected: the new holder's
//!   announcements must be the last ones clients hear).
//! - **Priority 255 only from the configured owner** (`owner`): RFC 9568 lets any
//!   advert with priority 255 win at once, and skips the address-list check for it,
//!   so one forged packet would take the VIP; others are dropped
//!   ([`DropReason::NotTheOwner`]).
//! - **The learned interval is bounded**: a VRRPv3 Backup learns at most
//!   [`MAX_LEARNED_FACTOR`] x its configured interval (RFC 9568 §6.4.2 learns any
//!   value, up to 40.95 s), so a forged or broken advert leaves the VIPs unheld for
//!   at most 3 x 4 intervals + skew instead of two minutes.
//! - **FAULT state** (see above), as keepalived has.
//! - **Lossy-link hysteresis** (not in the RFC, nor in keepalived): a Backup that
//!   sees gaps in the Active Router's adverts adds one Master_Adver_Interval to its
//!   Master_Down_Interval per gap, at most [`MAX_EXTRA_INTERVALS`], and takes one away
//!   after every [`DECAY_ADVERTS`] adverts in a row without a gap. RFC 9568 takes
//!   over after three adverts lost in a row: at 5 % loss and 100 ms adverts that
//!   moves the VIP needlessly in about 7 % of minutes; at the full extension six in
//!   a row are needed (once in 64 million adverts). A link that loses nothing keeps
//!   the RFC timing exactly; after loss, a real crash is detected at most 3 intervals
//!   later. The wait never exceeds 3 x [`MAX_LEARNED_FACTOR`] configured intervals
//!   plus Skew_Time (the bound below). Backups with different histories may wait
//!   differently: a lower-priority one may take over first after a crash, and a
//!   preempting higher-priority one then takes the VIP from it by the ordinary rules.
//! - **Sync groups** (see above; keepalived's `vrrp_sync_group`, not in the RFC): a
//!   Backup whose Master_Down_Timer ran out may wait for its group instead of taking
//!   over, and a Master may resign because another instance of its node lost.
//! - **Address list mismatch drops the advert** (the RFC's optional check, with its
//!   mandatory drop unless the sender is the owner), as keepalived does.
//! - **Our own adverts** (source = `primary_ip`, e.g. multicast loopback) are dropped
//!   and counted.
//! - **Discarded adverts may never arrive** ([`Instance::priority_floor`]): once a
//!   preempting Backup has discarded a lower-priority advert, it tells the shell that
//!   further ones change nothing, and the shell drops them in the socket's kernel
//!   filter, so that a flood of valid lower-priority adverts cannot crowd the Active
//!   Router's adverts out of the receive queue (a false takeover). The RFC discards
//!   them too; they are then only missing from `adverts_received` and the peer list.
//! - **Exit is final**: after [`Action::Exit`] every input is ignored; build a new
//!   [`Instance`] to run again. RFC 9568 lets Initialize start again.

mod config;
mod fault;
mod floor;
mod fsm;
mod group;
mod loss;
mod stats;
mod timer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

pub use self::config::{ConfigError, InstanceConfig, VersionConfig, MAX_LEARNED_FACTOR};
pub use self::fault::{Fault, Faults, LinkState};
pub use self::fsm::{Action, ControlRefused, Reason, ReconfigureRefused, State, StateChange};
use self::group::Gate;
pub use self::group::{Posture, SyncInput};
use self::loss::LossMeter;
pub use self::loss::{DECAY_ADVERTS, MAX_EXTRA_INTERVALS};
use self::stats::PeerTable;
pub use self::stats::{DropReason, Peer, Stats};
use self::timer::{Timer, TimerTable};
use crate::vrrp::packet::{
    AddrList, AdvertV2, AdvertV3, Auth, DecodeError, Repr, VirtualAddrs, TTL,
};
use crate::vrrp::units::Priority;

/// The priority advertised during a planned handover: the lowest that still says
/// "I hold the VIPs", so that any preempting Backup with a higher one takes over.
const HANDOVER_PRIORITY: Priority = Priority::new(1);

/// The priority of a node in maintenance: the lowest that keeps it in the election.
const MAINTENANCE_PRIORITY: Priority = Priority::new(1);

/// How many advert intervals a peer counts as a master in
/// [`Instance::masters_heard`] after its last advert: what a Backup waits before it
/// declares the master down (without the skew).
const MASTER_HEARD_INTERVALS: u32 = 3;

/// How long [`Fault::VipAddFailed`] keeps a node out of the election before it tries
/// again, in configured advert intervals (at least [`FAULT_RETRY_MIN`]): long enough
/// for a Backup to take over and be heard.
const FAULT_RETRY_INTERVALS: u32 = 3;

/// The shortest retry after a failed VIP addition.
const FAULT_RETRY_MIN: Duration = Duration::from_secs(1);

/// Linux's default neighbour `locktime` (`net.ipv4.neigh.*.locktime`, 1 s): an ARP
/// that would change an entry updated less than this before is ignored.
const NEIGH_LOCKTIME: Duration = Duration::from_secs(1);

/// The shortest spacing of the announcements that follow a lower-priority claim heard
/// as Master (see `Instance::repeats_after_claim`).
const MIN_CLAIM_REPEAT: Duration = Duration::from_millis(10);

/// The longest a Master that lost the VIPs soon after announcing them keeps them as
/// Backup, waiting for the new Master's next advert, and how recent that announcement
/// must be (see the module doc, "Deviations"): longer than a loaded host's delivery
/// delay (5 to 10 ms seen in CI; beyond [`EARLY_REPEAT`] the new Master's first repeat
/// moves clients back anyway), shorter than the new Master's second repeat (210 ms
/// after its takeover with the defaults), so that a client that resolved the VIP to
/// this node meanwhile is moved by it.
pub const LINGER_MAX: Duration = Duration::from_millis(100);

/// The delay of the first repeated announcement: longer than the router we took over
/// from takes to hear our advert on a LAN, far shorter than a client's connect
/// timeout. That router may have sent one of its own repeats just before it heard us
/// (its repeats line up with its adverts, and a takeover comes just before one of
/// those), leaving clients on it after it dropped the VIP; seen in the
/// handover/resume topology test as one timed-out connect until the next repeat,
/// 200 ms later.
pub const EARLY_REPEAT: Duration = Duration::from_millis(10);

/// One received advertisement as the shell saw it. Decode errors are inputs too, so
/// that they are counted with the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The IP source address: the sender's primary address.
    pub src: IpAddr,
    /// The IPv4 TTL or IPv6 hop limit; must be 255.
    pub ttl_or_hop_limit: u8,
    /// What the codec made of the message.
    pub result: Result<Repr, DecodeError>,
}

/// What the running Master_Down_Timer was armed for, so that a reconfiguration can
/// recompute it from the same start with the new priority and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownWait {
    /// Master_Down_Interval (an accepted advert, or becoming Backup).
    Interval,
    /// Skew_Time (the Active Router resigned with priority 0).
    Skew,
}

/// Where the instance is in its life, beside the RFC state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Taking part in the election.
    Running,
    /// Master after `handle_shutdown`: advertising priority 1 until a new holder is
    /// heard or the handover deadline passes, then exit.
    HandingOver,
    /// Master after `handle_maintenance`: advertising priority 1 until a new holder
    /// is heard (then Backup) or the handover deadline passes (then stay Master).
    MaintenanceHandover,
    /// [`Action::Exit`] was emitted; inputs are ignored.
    Exited,
}

/// One VRRP instance: inputs through `handle_*`, outputs through `poll_*`.
///
/// - Inputs: [`handle_startup`](Instance::handle_startup),
///   [`handle_advert`](Instance::handle_advert),
///   [`handle_timeout`](Instance::handle_timeout),
///   [`handle_health`](Instance::handle_health),
///   [`handle_maintenance`](Instance::handle_maintenance),
///   [`handle_resume`](Instance::handle_resume),
///   [`handle_reconfigure`](Instance::handle_reconfigure),
///   [`handle_shutdown`](Instance::handle_shutdown). Each takes `now`, which must
///   not go backwards.
/// - Outputs: [`poll_action`](Instance::poll_action) until `None` after every input,
///   then [`poll_timeout`](Instance::poll_timeout) for the next wakeup.
/// - Inspection for the admin API: [`state`](Instance::state),
///   [`last_change`](Instance::last_change), [`stats`](Instance::stats),
///   [`peers`](Instance::peers), [`in_maintenance`](Instance::in_maintenance), ...
#[derive(Debug)]
pub struct Instance {
    config: InstanceConfig,
    /// The VIPs as they go into adverts.
    addrs: VirtualAddrs,
    /// The VIPs sorted, to compare with received address lists.
    sorted_vips: Vec<IpAddr>,
    /// After a reconfiguration changed the VIPs: the previous set (sorted), still
    /// accepted in received adverts until one lists the new set (see
    /// [`Instance::handle_reconfigure`]).
    previous_vips: Option<Vec<IpAddr>>,
    /// When the running Master_Down_Timer was started, and for what.
    down_armed: Option<(Instant, DownWait)>,
    state: State,
    phase: Phase,
    can_serve: bool,
    /// Operator maintenance (`handle_maintenance` until `handle_resume`): priority 1.
    maintenance: bool,
    /// A maintenance handover found no taker; still Master at priority 1.
    maintenance_timed_out: bool,
    /// Master_Adver_Interval (RFC 9568 §6.1): learned from the Active Router (VRRPv3).
    master_adver_interval: Duration,
    /// What to report if the Master_Down_Timer fires now.
    down_cause: Reason,
    /// Preempt delay: until when a lower-priority Active Router is still accepted.
    preempt_hold_until: Option<Instant>,
    /// A Master re-asserts itself (advert + announcement) on hearing a lower priority
    /// at most once until then.
    reassert_after: Option<Instant>,
    /// Repeated announcements still to make (the Announce timer runs while above 0).
    announce_left: u32,
    /// When this node last announced the VIPs (gratuitous ARP / NA).
    last_announced: Option<Instant>,
    /// A Master that lost to a higher priority soon after it announced the VIPs keeps
    /// them as Backup until the next advert of the router it lost to (this address;
    /// see the module doc, "Deviations"); the `Linger` timer bounds it.
    lingering: Option<IpAddr>,
    /// What keeps the node out of the election now (State::Fault while not empty).
    faults: Faults,
    /// `handle_startup` ran (a fault before it only delays the start).
    started: bool,
    /// A Backup extended its Master_Down_Timer for datagrams the kernel dropped since
    /// the last accepted advert (at most once: see [`Instance::handle_rx_dropped`]).
    extended_for_drops: bool,
    /// Gaps in the Active Router's adverts seen as Backup: the lossy-link extension
    /// of Master_Down_Interval (see [`Instance::backup_down_interval`]).
    loss: LossMeter,
    /// Membership of a sync group: what the group last said, and whether this
    /// member waits for it to become Master. `None` while alone (no gate).
    gate: Option<Gate>,
    /// The source of the last accepted advert from the Active Router (or our own
    /// address while Master).
    master_ip: Option<IpAddr>,
    timers: TimerTable,
    actions: VecDeque<Action>,
    stats: Stats,
    /// The senders of accepted adverts, for the admin API.
    peers: PeerTable,
    last_change: Option<StateChange>,
}

// === impl Instance ===

impl Instance {
    /// Validates `config` and builds an instance in [`State::Initialize`].
    pub fn try_new(config: InstanceConfig) -> Result<Instance, ConfigError> {
        config.validate()?;
        let (addrs, sorted_vips) = advert_addrs(&config)?;
        Ok(Instance {
            master_adver_interval: config.version.interval(),
            config,
            addrs,
            sorted_vips,
            previous_vips: None,
            down_armed: None,
            state: State::Initialize,
            phase: Phase::Running,
            can_serve: false,
            maintenance: false,
            maintenance_timed_out: false,
            down_cause: Reason::MasterDown,
            preempt_hold_until: None,
            reassert_after: None,
            announce_left: 0,
            last_announced: None,
            lingering: None,
            faults: Faults::NONE,
            started: false,
            extended_for_drops: false,
            loss: LossMeter::default(),
            gate: None,
            master_ip: None,
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            stats: Stats::default(),
            peers: PeerTable::new(),
            last_change: None,
        })
    }

    // --- inspection ---

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the VIPs are on this node's interface: while Master, and while a
    /// Backup that just lost them lingers (see the module doc, "Deviations").
    pub fn holds_vips(&self) -> bool {
        self.state == State::Master || self.lingering.is_some()
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The last state change, with its time and reason.
    pub fn last_change(&self) -> Option<&StateChange> {
        self.last_change.as_ref()
    }

    /// What keeps this node out of the election now ([`State::Fault`] while not
    /// empty, once started).
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Where this instance stands for its sync group ([`Instance::handle_sync`]).
    pub fn posture(&self) -> Posture {
        if self.phase == Phase::Exited {
            return Posture::Stopped;
        }
        match self.state {
            State::Initialize => Posture::Stopped,
            State::Master => Posture::Master,
            State::Fault if !self.faults.without(Fault::SyncGroup).is_empty() => Posture::Fault,
            // Out only because a sibling is: not a cause of its own.
            State::Fault => Posture::Backup,
            State::Backup if self.gate.is_some_and(|g| g.ready.is_some()) => Posture::Ready,
            State::Backup => Posture::Backup,
        }
    }

    /// Whether the shell last reported that this node can serve.
    pub fn can_serve(&self) -> bool {
        self.can_serve
    }

    /// Whether the node is in maintenance ([`Instance::handle_maintenance`] until
    /// [`Instance::handle_resume`]).
    pub fn in_maintenance(&self) -> bool {
        self.maintenance
    }

    /// Whether the last maintenance handover found no taker within
    /// `handover_timeout` (at once if it is 0), so this node still holds the VIPs at
    /// priority 1. Cleared when it leaves Master (a node took over after all) and on
    /// [`Instance::handle_resume`].
    pub fn maintenance_timed_out(&self) -> bool {
        self.maintenance_timed_out
    }

    /// The nodes heard on the link: the sender of every advert that passed the
    /// receive checks, in any state, at most 16 (the one heard longest ago makes
    /// room for a new one).
    pub fn peers(&self) -> &[Peer] {
        self.peers.as_slice()
    }

    /// How many nodes claim master as far as this node knows at `now`: the peers
    /// whose last advert had a priority above 0 and arrived at most
    /// 3 x Master_Adver_Interval before `now`, plus this node if it is Master. Above
    /// 1 for longer than a handover means a split brain.
    pub fn masters_heard(&self, now: Instant) -> usize {
        let window = self.master_adver_interval * MASTER_HEARD_INTERVALS;
        let peers = self
            .peers()
            .iter()
            .filter(|p| {
                !p.priority.is_resign() && now.saturating_duration_since(p.last_heard) <= window
            })
            .count();
        peers + usize::from(self.state == State::Master)
    }

    /// The priority this node has now: the configured one, lowered by
    /// `health_weight` while it cannot serve, never below 1; 1 in maintenance.
    pub fn effective_priority(&self) -> Priority {
        if self.maintenance {
            return MAINTENANCE_PRIORITY;
        }
        let base = self.config.base_priority.get();
        if self.can_serve {
            return self.config.base_priority;
        }
        Priority::new(base.saturating_sub(self.config.health_weight).max(1))
    }

    /// The priority this node's adverts carry now (also what an incoming advert is
    /// compared with while Master): the effective priority, or 1 during a handover
    /// or in maintenance.
    pub fn advertised_priority(&self) -> Priority {
        match self.phase {
            Phase::HandingOver | Phase::MaintenanceHandover => HANDOVER_PRIORITY,
            Phase::Running | Phase::Exited => self.effective_priority(),
        }
    }

    /// Master_Adver_Interval: the configured interval, or as learned from the Active
    /// Router (VRRPv3).
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// Skew_Time for the current priority and Master_Adver_Interval.
    pub fn skew_time(&self) -> Duration {
        let unit = match self.config.version {
            VersionConfig::V3 { .. } => self.master_adver_interval,
            // RFC 3768 §6.1: Skew_Time = (256 - Priority) / 256, in seconds.
            VersionConfig::V2 { .. } => Duration::from_secs(1),
        };
        let weight = 256 - u128::from(self.effective_priority().get());
        // At most 255 x 40.95s (or 1s) in nanoseconds: fits u64 after dividing.
        Duration::from_nanos((weight * unit.as_nanos() / 256) as u64)
    }

    /// Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// What a Backup waits after an accepted advert before it declares the master
    /// down: Master_Down_Interval, plus one Master_Adver_Interval for each recent gap
    /// in the Active Router's adverts (at most [`MAX_EXTRA_INTERVALS`]; the lossy-link
    /// hysteresis, see the module doc), never more than 3 x the longest interval a
    /// Backup learns plus Skew_Time. Master_Down_Interval on a link that lost nothing.
    pub fn backup_down_interval(&self) -> Duration {
        let intervals = self.master_adver_interval * (3 + self.loss.extra_intervals());
        let bound = self.config.max_learned_interval() * 3;
        intervals.min(bound).max(self.master_adver_interval * 3) + self.skew_time()
    }

    /// Intervals the lossy-link hysteresis adds to Master_Down_Interval now (0 to
    /// [`MAX_EXTRA_INTERVALS`]).
    pub fn loss_extra_intervals(&self) -> u32 {
        self.loss.extra_intervals()
    }

    /// The address of the current Active Router as far as this node knows: the source
    /// of the last advert it accepted, or its own address while Master.
    pub fn master_ip(&self) -> Option<IpAddr> {
        self.master_ip
    }

    /// Whether a planned handover (shutdown or maintenance) is under way: Master,
    /// advertising priority 1, waiting for a new holder.
    pub fn is_handing_over(&self) -> bool {
        matches!(self.phase, Phase::HandingOver | Phase::MaintenanceHandover)
    }

    /// Whether [`Action::Exit`] was emitted.
    pub fn has_exited(&self) -> bool {
        self.phase == Phase::Exited
    }

    /// The advertisement to send for [`Action::SendAdvert`] with `priority`.
    pub fn advert(&self, priority: Priority) -> Repr {
        match self.config.version {
            VersionConfig::V2 { interval, auth } => Repr::V2(AdvertV2 {
                vrid: self.config.vrid,
                priority,
                advert_int: interval,
                auth: auth.map_or(Auth::None, Auth::Password),
                addrs: match &self.addrs {
                    VirtualAddrs::V4(addrs) => addrs.clone(),
                    // `validate` refuses VRRPv2 over IPv6.
                    VirtualAddrs::V6(_) => AddrList::empty(),
                },
            }),
            VersionConfig::V3 { interval } => Repr::V3(AdvertV3 {
                vrid: self.config.vrid,
                priority,
                max_advert_int: interval,
                addrs: self.addrs.clone(),
            }),
        }
    }

    // --- outputs ---

    /// The next action for the shell, in order; call until `None` after each input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Instance::handle_timeout`] must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    // --- inputs ---

    /// Startup (RFC 9568 §6.4.1): the owner (priority 255) becomes Master at once;
    /// everyone else becomes Backup and waits Master_Down_Interval. A no-op unless in
    /// Initialize and never started.
    pub fn handle_startup(&mut self, now: Instant) {
        if self.state != State::Initialize || self.phase != Phase::Running || self.started {
            return;
        }
        self.started = true;
        if !self.faults.is_empty() {
            self.change_state(now, State::Fault, Reason::Fault);
        } else if self.effective_priority().is_owner() {
            self.take_over(now, Reason::OwnerStartup);
        } else {
            self.master_adver_interval = self.config.version.interval();
            self.change_state(now, State::Backup, Reason::Startup);
        }
    }

    /// A received advertisement. A dropped one returns why (for rate-limited logging)
    /// and only bumps a counter: no timer, no state changes.
    pub fn handle_advert(&mut self, now: Instant, received: Received) -> Result<(), DropReason> {
        if self.phase == Phase::Exited {
            return Ok(());
        }
        let src = received.src;
        let repr = match self.check(received) {
            Ok(repr) => repr,
            Err(reason) => {
                self.stats.record_drop(&reason);
                return Err(reason);
            }
        };
        self.stats.adverts_received += 1;
        let priority = repr.priority();
        if priority.is_resign() {
            self.stats.priority_zero_received += 1;
        } else if self.state == State::Master {
            self.stats.master_conflicts += 1;
        }
        self.peers.record(src, priority, now);
        if self.previous_vips.is_some() && same_vips(&repr, &self.sorted_vips) {
            // The sender has the new VIPs too: the transition is over.
            self.previous_vips = None;
        }
        if self.lingering == Some(src) {
            // The new Master advertised again: sent after it heard our claim (if it
            // did), so after the announcement its re-assertion puts first.
            self.end_linger();
        }
        match self.state {
            // Not running: nothing listens (RFC 9568 §6.4.1 has no advert event).
            State::Initialize | State::Fault => {}
            State::Backup => self.backup_advert(now, src, &repr),
            State::Master => self.master_advert(now, src, &repr),
        }
        Ok(())
    }

    /// Fires every timer whose deadline is not after `now`. Calling it early, or
    /// again, does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        for timer in Timer::ALL {
            if !self.timers.is_expired(timer, now) {
                continue;
            }
            self.timers.stop(timer);
            match timer {
                Timer::Handover => match self.phase {
                    Phase::MaintenanceHandover => {
                        // Nobody took over: keep the VIPs (availability first), stay
                        // Master at priority 1, still in maintenance.
                        self.phase = Phase::Running;
                        self.maintenance_timed_out = true;
                    }
                    Phase::HandingOver | Phase::Running | Phase::Exited => {
                        self.resign(now, Reason::HandoverTimedOut)
                    }
                },
                // RFC 9568 §6.4.2: "If the Master_Down_Timer fires".
                Timer::MasterDown => {
                    let reason = self.down_cause;
                    self.take_over(now, reason);
                }
                // RFC 9568 §6.4.3: "If the Adver_Timer fires": send, reset.
                Timer::Adver => self.send_advert(now),
                Timer::FaultRetry => {
                    self.faults.set(Fault::VipAddFailed, false);
                    self.apply_faults(now);
                }
                // The new Master's next advert was lost or is late: release anyway.
                Timer::Linger => self.end_linger(),
                Timer::Announce => {
                    // With none left this is the refresh: not while handing over, nor
                    // while this node's priority is lowered (unable to serve, in
                    // maintenance): a preempting Backup may take over any moment, and
                    // a refresh just before that would, by Linux's 1 s neighbour
                    // locktime, hide the new holder's announcements from clients (seen:
                    // a timed-out connect across a health-driven handover).
                    let refresh = self.announce_left == 0;
                    let lowered = self.advertised_priority() < self.config.base_priority;
                    if !refresh || (self.phase == Phase::Running && !lowered) {
                        self.actions.push_back(Action::Announce);
                        self.last_announced = Some(now);
                    }
                    self.announce_left = self.announce_left.saturating_sub(1);
                    if self.announce_left > 0 {
                        self.timers
                            .set(Timer::Announce, now + self.config.announce_interval);
                    } else if !self.config.announce_refresh.is_zero() {
                        // Only a Master runs this timer (leaving Master stops it).
                        self.timers
                            .set(Timer::Announce, now + self.config.announce_refresh);
                    }
                }
            }
        }
    }

    /// Whether this node can serve now (its apiserver or proxy is healthy). Lowers or
    /// restores the priority by `health_weight`. As Master, a changed priority is
    /// advertised at once; as Backup it changes what is preempted and the next skew.
    /// Call it before [`Instance::handle_startup`] to set the initial priority; until
    /// then the node counts as unable to serve. In maintenance it is recorded and
    /// takes effect on [`Instance::handle_resume`].
    pub fn handle_health(&mut self, now: Instant, can_serve: bool) {
        if self.phase == Phase::Exited || can_serve == self.can_serve {
            return;
        }
        let before = self.advertised_priority();
        self.can_serve = can_serve;
        if self.state == State::Master && self.advertised_priority() != before {
            self.send_advert(now);
        }
    }

    /// Planned shutdown. As Master: start the handover (keep the VIPs, advertise
    /// priority 1 until a new holder is heard, at most `handover_timeout`, then resign
    /// with priority 0); with `handover_timeout` 0, resign at once. Otherwise no VIPs
    /// are held: [`Action::Exit`] at once. Repeated calls do nothing. During a
    /// maintenance handover, that handover becomes the shutdown's (same deadline).
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.phase == Phase::MaintenanceHandover {
            // Already advertising priority 1 with the Handover timer running: only
            // what happens at the end changes (exit instead of Backup, resign on
            // timeout instead of staying).
            self.phase = Phase::HandingOver;
            return;
        }
        if self.phase != Phase::Running {
            return;
        }
        match self.state {
            State::Master if self.config.handover_timeout.is_zero() => {
                self.resign(now, Reason::Shutdown);
            }
            State::Master => {
                self.phase = Phase::HandingOver;
                self.timers
                    .set(Timer::Handover, now + self.config.handover_timeout);
                self.send_advert(now);
            }
            State::Backup | State::Fault => {
                // RFC 9568 §6.4.2 Shutdown: cancel the timer, to Initialize.
                self.change_state(now, State::Initialize, Reason::Shutdown);
                self.exit();
            }
            State::Initialize => self.exit(),
        }
    }

    /// Operator maintenance (`apivip handover`): the priority becomes 1 everywhere
    /// until [`Instance::handle_resume`]. As Master: keep the VIPs, advertise
    /// priority 1 at once and wait for a preempting Backup to take over and be heard,
    /// then remove the VIPs and become Backup ([`Reason::Maintenance`]); if nobody
    /// takes over within `handover_timeout` (or it is 0), stay Master at priority 1
    /// ([`Instance::maintenance_timed_out`]). As Backup (or before startup): only the
    /// priority drops. Refused while a handover runs, when already in maintenance
    /// and after exit; a refused control changes nothing.
    pub fn handle_maintenance(&mut self, now: Instant) -> Result<(), ControlRefused> {
        self.control_allowed()?;
        if self.maintenance {
            return Err(ControlRefused::AlreadyInMaintenance);
        }
        let before = self.advertised_priority();
        self.maintenance = true;
        self.maintenance_timed_out = false;
        if self.state != State::Master {
            return Ok(());
        }
        if self.config.handover_timeout.is_zero() {
            // No wait (never resign): stay Master at priority 1, as after a timeout.
            self.maintenance_timed_out = true;
            if self.advertised_priority() != before {
                self.send_advert(now);
            }
        } else {
            self.phase = Phase::MaintenanceHandover;
            self.timers
                .set(Timer::Handover, now + self.config.handover_timeout);
            self.send_advert(now);
        }
        Ok(())
    }

    /// Ends maintenance (`apivip resume`): the effective priority comes back (base,
    /// or base - `health_weight` while unable to serve). As Master a changed priority
    /// is advertised at once; as Backup with preemption, the node takes the VIPs back
    /// by the ordinary rules. Refused while a handover runs, when not in maintenance
    /// and after exit; a refused control changes nothing.
    pub fn handle_resume(&mut self, now: Instant) -> Result<(), ControlRefused> {
        self.control_allowed()?;
        if !self.maintenance {
            return Err(ControlRefused::NotInMaintenance);
        }
        let before = self.advertised_priority();
        self.maintenance = false;
        self.maintenance_timed_out = false;
        if self.state == State::Master && self.advertised_priority() != before {
            self.send_advert(now);
        }
        Ok(())
    }

    /// A changed configuration, applied in place (a reload): everything but the VRID
    /// and the address family may change, and the VIPs are never given up for the
    /// change itself. Refused (changing nothing) when the VRID or family differs (a
    /// new virtual router: replace the instance), when `config` does not validate,
    /// while a handover runs and after exit. An unchanged `config` does nothing.
    ///
    /// - **Master** stays Master whatever the new priority: the priority, interval,
    ///   VIPs and version go out in one advert at once (Adver_Timer restarted), also
    ///   when the source or the unicast peers changed. A preempting Backup that now
    ///   has the higher priority discards these adverts and takes over when its
    ///   Master_Down_Timer runs out; its first advert then makes this node release
    ///   the VIPs by the ordinary rule (RFC 9568 §6.4.3), so the VIPs move as in a
    ///   planned handover, with no moment where nobody holds them. A Backup without
    ///   preemption accepts the lower priority and nothing moves. Newly listed VIPs
    ///   are added ([`Action::AddVip`]) and announced ([`Action::Announce`]); VIPs
    ///   no longer listed are removed ([`Action::RemoveVip`]).
    /// - **Backup** holds no VIPs: nothing on the interface. The running
    ///   Master_Down_Timer is recomputed from when it was started, with the new
    ///   priority (skew) and interval, and fires at once if that is already past; a
    ///   raised priority with preemption then preempts by the ordinary rules. A
    ///   VRRPv3 Backup that has heard the Active Router keeps the interval learned
    ///   from it (RFC 9568 §6.4.2); otherwise Master_Adver_Interval becomes the new
    ///   configured interval.
    /// - **Initialize**: the configuration is replaced, nothing else.
    ///
    /// A changed preemption mode or delay restarts the preempt delay. In maintenance
    /// the new priority takes effect on [`Instance::handle_resume`].
    ///
    /// **Changing the VIPs on every node**: adverts must list the receiver's VIPs
    /// (RFC 9568 §7.1), so while some nodes have the old list and some the new, they
    /// would drop each other's adverts and both become Master. After a change of the
    /// VIPs this node therefore also accepts adverts that list its previous VIPs,
    /// until it accepts one listing the new VIPs (every sender it hears has caught
    /// up). Reconfigure the Backups first and the Master last: nothing moves. A node
    /// not yet reconfigured still drops adverts with the new list, so reconfiguring
    /// the Master first lets a Backup take over until it has the new list too. The
    /// same holds for a VRRPv2 interval or password, which every node must share
    /// (RFC 3768 §7.1): there is no transition for those.
    pub fn handle_reconfigure(
        &mut self,
        now: Instant,
        config: InstanceConfig,
    ) -> Result<(), ReconfigureRefused> {
        self.control_allowed()?;
        if config.vrid != self.config.vrid {
            return Err(ReconfigureRefused::VridChanged {
                from: self.config.vrid,
                to: config.vrid,
            });
        }
        if config.family() != self.config.family() {
            return Err(ReconfigureRefused::FamilyChanged {
                from: self.config.primary_ip,
                to: config.primary_ip,
            });
        }
        config.validate()?;
        let (addrs, sorted_vips) = advert_addrs(&config)?;
        if config == self.config {
            return Ok(());
        }
        let advert_before = self.advert(self.advertised_priority());
        if self.lingering.take().is_some() {
            // Released by address: the shell's list is already the new one.
            self.timers.stop(Timer::Linger);
            for &addr in &self.sorted_vips {
                self.actions.push_back(Action::RemoveVip { addr });
            }
        }
        let old = std::mem::replace(&mut self.config, config);
        let old_vips = std::mem::replace(&mut self.sorted_vips, sorted_vips);
        if old_vips != self.sorted_vips {
            self.previous_vips = Some(old_vips.clone());
        }
        self.addrs = addrs;
        if old.preempt != self.config.preempt || old.preempt_delay != self.config.preempt_delay {
            self.preempt_hold_until = None;
        }
        if !self.config.preempt && self.down_cause == Reason::Preempt {
            // No longer discarding a lower priority: if the timer fires, the Active
            // Router went silent.
            self.down_cause = Reason::MasterDown;
        }
        let keeps_learned = self.state == State::Backup
            && self.master_ip.is_some()
            && matches!(old.version, VersionConfig::V3 { .. })
            && matches!(self.config.version, VersionConfig::V3 { .. });
        if !keeps_learned {
            self.master_adver_interval = self.config.version.interval();
        }
        match self.state {
            State::Master => {
                self.master_ip = Some(self.config.primary_ip);
                let mut added = false;
                for &addr in &self.config.vips {
                    if old_vips.binary_search(&addr).is_err() {
                        added = true;
                        self.actions.push_back(Action::AddVip { addr });
                    }
                }
                for &addr in &old_vips {
                    if self.sorted_vips.binary_search(&addr).is_err() {
                        self.actions.push_back(Action::RemoveVip { addr });
                    }
                }
                if added {
                    self.announce(now);
                }
                let to_others_changed =
                    old.primary_ip != self.config.primary_ip || old.peers != self.config.peers;
                if to_others_changed || self.advert(self.advertised_priority()) != advert_before {
                    self.send_advert(now);
                }
            }
            State::Backup => {
                if let (Some((from, wait)), Some(_)) =
                    (self.down_armed, self.timers.get(Timer::MasterDown))
                {
                    self.arm_master_down(from, wait);
                    if self.timers.is_expired(Timer::MasterDown, now) {
                        self.timers.set(Timer::MasterDown, now);
                    }
                }
            }
            State::Initialize | State::Fault => {}
        }
        Ok(())
    }

    /// What the shell read about the interface (netlink). Its faults replace the
    /// link faults known so far: any fault takes the node out of the election
    /// ([`State::Fault`]); when the last one clears it comes back as Backup (the
    /// owner as Master), as at startup. A Master hands the VIPs off with a
    /// priority-0 advert (if the link still carries it, Backups take over after
    /// Skew_Time) and removes them. Before [`Instance::handle_startup`] the faults are
    /// only recorded.
    pub fn handle_link(&mut self, now: Instant, link: LinkState) {
        if self.phase == Phase::Exited {
            return;
        }
        // The link's faults only: a failed VIP addition and a sibling's fault are
        // cleared by their own inputs.
        let mut faults = link.faults();
        for other in [Fault::VipAddFailed, Fault::SyncGroup] {
            faults.set(other, self.faults.contains(other));
        }
        self.set_faults(faults);
        self.apply_faults(now);
    }

    /// The VIPs could not be added ([`Action::AddVips`] failed, or they did not
    /// appear): a fault like the others, cleared by the machine itself after three
    /// advert intervals (at least a second), so that another node takes over
    /// meanwhile and this one tries again afterwards.
    pub fn handle_vip_add_failed(&mut self, now: Instant) {
        if self.phase == Phase::Exited {
            return;
        }
        let mut faults = self.faults;
        faults.set(Fault::VipAddFailed, true);
        self.set_faults(faults);
        let retry = (self.config.version.interval() * FAULT_RETRY_INTERVALS).max(FAULT_RETRY_MIN);
        self.timers.set(Timer::FaultRetry, now + retry);
        self.apply_faults(now);
    }

    /// Some VIP is not on the interface although this node holds them (someone ran
    /// `ip addr flush`, a network manager re-applied its configuration). As Master:
    /// add them back ([`Action::AddVips`]) and announce them again, counted in
    /// [`Stats::vips_restored`]. Otherwise nothing (the shell may have read the
    /// interface just before a transition).
    pub fn handle_vips_missing(&mut self, now: Instant) {
        if self.phase == Phase::Exited || self.state != State::Master {
            return;
        }
        self.stats.vips_restored += 1;
        self.actions.push_back(Action::AddVips);
        self.announce(now);
    }

    /// The kernel dropped `dropped` datagrams for this socket (its receive buffer was
    /// full: a flood of protocol-112 packets), read at `now`. One of them may have been
    /// the Active Router's advert, so a Backup whose Master_Down_Timer runs on an
    /// accepted advert restarts it once (counted in [`Stats::rx_dropped`]); it does so
    /// at most once per accepted advert, so a flood delays the takeover after a real
    /// crash by at most one Master_Down_Interval, and cannot postpone it forever.
    /// Nothing else changes.
    pub fn handle_rx_dropped(&mut self, now: Instant, dropped: u64) {
        if dropped == 0 || self.phase == Phase::Exited {
            return;
        }
        self.stats.rx_dropped += dropped;
        let on_advert =
            matches!(self.down_armed, Some((_, DownWait::Interval))) && self.master_ip.is_some();
        if self.state == State::Backup && on_advert && !self.extended_for_drops {
            self.extended_for_drops = true;
            self.arm_master_down(now, DownWait::Interval);
        }
    }

    /// What this instance's sync group wants of it (keepalived's `vrrp_sync_group`;
    /// the group's rule is in [`crate::vrrp::sync`]). The first call makes the
    /// instance a member: from then on it becomes Master only while `may_master`
    /// holds; when its Master_Down_Timer runs out (or the owner starts) while not,
    /// it waits as Backup ([`Posture::Ready`]) and takes over when the group lets it.
    /// A Master told `may_master: false` leaves at once: a priority-0 advert (the
    /// Backups of that virtual router take over after Skew_Time), the VIPs removed,
    /// Backup ([`Reason::SyncGroup`]). `sibling_fault` puts the member in FAULT
    /// ([`Fault::SyncGroup`]) until it clears. During a shutdown handover nothing
    /// changes but what is recorded.
    pub fn handle_sync(&mut self, now: Instant, input: SyncInput) {
        if self.phase == Phase::Exited {
            return;
        }
        let gate = self.gate.get_or_insert(Gate { input, ready: None });
        gate.input = input;
        if self.faults.contains(Fault::SyncGroup) != input.sibling_fault {
            let mut faults = self.faults;
            faults.set(Fault::SyncGroup, input.sibling_fault);
            self.set_faults(faults);
            self.apply_faults(now);
        }
        match self.state {
            State::Master if !input.may_master => match self.phase {
                Phase::Running | Phase::MaintenanceHandover => {
                    self.phase = Phase::Running;
                    self.timers.stop(Timer::Handover);
                    // As on a fault: Backups take over after Skew_Time.
                    self.push_advert(Priority::RESIGN);
                    self.master_adver_interval = self.config.version.interval();
                    self.change_state(now, State::Backup, Reason::SyncGroup);
                }
                Phase::HandingOver | Phase::Exited => {}
            },
            State::Backup if input.may_master => {
                if let Some(reason) = self.gate.and_then(|g| g.ready) {
                    self.change_state(now, State::Master, reason);
                }
            }
            State::Initialize | State::Backup | State::Master | State::Fault => {}
        }
    }

    /// Whether adverts listing the VIPs this node had before its last reconfiguration
    /// are still accepted (see [`Instance::handle_reconfigure`]).
    pub fn accepts_previous_vips(&self) -> bool {
        self.previous_vips.is_some()
    }

    // --- internals ---

    /// Replaces the fault set, counting the faults that start.
    fn set_faults(&mut self, faults: Faults) {
        for (i, fault) in Fault::ALL.into_iter().enumerate() {
            if faults.contains(fault) && !self.faults.contains(fault) {
                self.stats.fault_causes[i] += 1;
            }
        }
        self.faults = faults;
    }

    /// Enters or leaves [`State::Fault`] as the fault set says.
    fn apply_faults(&mut self, now: Instant) {
        if !self.started || self.phase == Phase::Exited {
            return;
        }
        match (self.faults.is_empty(), self.state) {
            (false, State::Fault | State::Initialize)
            | (true, State::Backup | State::Master | State::Initialize) => {}
            (false, State::Master) => match self.phase {
                Phase::HandingOver => self.resign(now, Reason::Fault),
                Phase::MaintenanceHandover | Phase::Running => {
                    self.phase = Phase::Running;
                    self.timers.stop(Timer::Handover);
                    // RFC 9568 §6.4.3 Shutdown's message: Backups take over after
                    // Skew_Time instead of Master_Down_Interval.
                    self.push_advert(Priority::RESIGN);
                    self.change_state(now, State::Fault, Reason::Fault);
                }
                Phase::Exited => {}
            },
            (false, State::Backup) => self.change_state(now, State::Fault, Reason::Fault),
            (true, State::Fault) => {
                if self.effective_priority().is_owner() {
                    self.take_over(now, Reason::FaultCleared);
                } else {
                    self.master_adver_interval = self.config.version.interval();
                    self.change_state(now, State::Backup, Reason::FaultCleared);
                }
            }
        }
    }

    /// The refusals common to every operator control.
    fn control_allowed(&self) -> Result<(), ControlRefused> {
        match self.phase {
            Phase::Running => Ok(()),
            Phase::HandingOver | Phase::MaintenanceHandover => Err(ControlRefused::HandoverRunning),
            Phase::Exited => Err(ControlRefused::Exited),
        }
    }

    /// Receive checks (RFC 9568 §7.1, RFC 3768 §7.1), in the order the module doc lists.
    fn check(&self, received: Received) -> Result<Repr, DropReason> {
        let repr = received.result.map_err(DropReason::Decode)?;
        if received.ttl_or_hop_limit != TTL {
            return Err(DropReason::Ttl {
                got: received.ttl_or_hop_limit,
            });
        }
        if repr.version() != self.config.version.version() {
            return Err(DropReason::VersionMismatch {
                got: repr.version(),
            });
        }
        if repr.family() != self.config.family() {
            return Err(DropReason::FamilyMismatch { got: repr.family() });
        }
        if repr.vrid() != self.config.vrid {
            return Err(DropReason::OtherVrid { got: repr.vrid() });
        }
        if received.src == self.config.primary_ip {
            return Err(DropReason::OwnAdvert);
        }
        if let Some(peers) = &self.config.peers {
            if !peers.contains(&received.src) {
                return Err(DropReason::NotAPeer { src: received.src });
            }
        }
        if let (Repr::V2(advert), VersionConfig::V2 { interval, auth }) =
            (&repr, &self.config.version)
        {
            let auth_ok = match (auth, &advert.auth) {
                (None, Auth::None) => true,
                (Some(want), Auth::Password(got)) => want == got,
                _ => false,
            };
            if !auth_ok {
                return Err(DropReason::AuthMismatch);
            }
            if advert.advert_int != *interval {
                return Err(DropReason::IntervalMismatch {
                    got: advert.advert_int,
                    want: *interval,
                });
            }
        }
        if repr.priority().is_owner() && self.config.owner != Some(received.src) {
            return Err(DropReason::NotTheOwner { src: received.src });
        }
        if !repr.priority().is_owner()
            && !same_vips(&repr, &self.sorted_vips)
            && !self
                .previous_vips
                .as_deref()
                .is_some_and(|previous| same_vips(&repr, previous))
        {
            return Err(DropReason::AddressList);
        }
        Ok(repr)
    }

    /// RFC 9568 §6.4.2, "If an ADVERTISEMENT is received" in Backup.
    fn backup_advert(&mut self, now: Instant, src: IpAddr, repr: &Repr) {
        let priority = repr.priority();
        if priority.is_resign() {
            // "Set the Master_Down_Timer to Skew_Time."
            self.down_cause = Reason::MasterResigned;
            self.master_ip = None;
            self.arm_master_down(now, DownWait::Skew);
            return;
        }
        let local = self.effective_priority();
        // RFC 9568 §6.1 Preempt_Mode: the owner always preempts.
        let preempt = self.config.preempt || local.is_owner();
        if priority < local && preempt {
            if !self.config.preempt_delay.is_zero() {
                let until = *self
                    .preempt_hold_until
                    .get_or_insert(now + self.config.preempt_delay);
                if now < until {
                    self.accept_master(now, src, repr);
                    return;
                }
            }
            // "else: Discard the ADVERTISEMENT": the Master_Down_Timer runs out.
            self.down_cause = Reason::Preempt;
            return;
        }
        if priority >= local {
            self.preempt_hold_until = None;
        }
        // "If Preempt_Mode is False, or if the Priority in the ADVERTISEMENT is
        // greater than or equal to the local Priority".
        self.accept_master(now, src, repr);
    }

    /// Learns the interval (VRRPv3) and restarts the Master_Down_Timer.
    fn accept_master(&mut self, now: Instant, src: IpAddr, repr: &Repr) {
        self.extended_for_drops = false;
        self.learn_interval(repr);
        self.stats.adverts_missed += self.loss.on_advert(now, src, self.master_adver_interval);
        self.master_ip = Some(src);
        self.down_cause = Reason::MasterDown;
        self.arm_master_down(now, DownWait::Interval);
    }

    /// "Set Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT"
    /// (VRRPv3 only; RFC 3768 has no learning).
    fn learn_interval(&mut self, repr: &Repr) {
        if let Repr::V3(a) = repr {
            self.master_adver_interval = a
                .max_advert_int
                .to_duration()
                .min(self.config.max_learned_interval());
        }
    }

    /// RFC 9568 §6.4.3, "If an ADVERTISEMENT is received" in Master (Active).
    fn master_advert(&mut self, now: Instant, src: IpAddr, repr: &Repr) {
        let priority = repr.priority();
        if priority.is_resign() {
            // "Send an ADVERTISEMENT. Reset the Adver_Timer."
            self.send_advert(now);
            return;
        }
        let local = self.advertised_priority();
        if priority > local || (priority == local && src > self.config.primary_ip) {
            self.learn_interval(repr);
            match self.phase {
                Phase::HandingOver => {
                    // The new holder is heard: release the VIPs and finish.
                    self.change_state(now, State::Initialize, Reason::HandoverDone);
                    self.master_ip = Some(src);
                    self.exit();
                }
                Phase::MaintenanceHandover => {
                    // The new holder is heard: release the VIPs, stay in the
                    // election at priority 1.
                    self.phase = Phase::Running;
                    self.timers.stop(Timer::Handover);
                    self.change_state(now, State::Backup, Reason::Maintenance);
                    self.master_ip = Some(src);
                }
                Phase::Running | Phase::Exited => {
                    // See the module doc ("Deviations"): lost soon after announcing.
                    let recent = self
                        .last_announced
                        .is_some_and(|at| now.saturating_duration_since(at) < self.linger_bound());
                    if recent && self.phase == Phase::Running {
                        self.lingering = Some(src);
                    }
                    self.change_state(now, State::Backup, Reason::HigherPriority);
                    self.master_ip = Some(src);
                }
            }
        }
        // "else: Discard the ADVERTISEMENT." Deviation (keepalived's
        // `vrrp_state_master_rx`): re-send the advert and announce the VIPs, at most
        // once per Master_Down_Interval. The sender still thinks it is master: its
        // last gratuitous ARP, sent just before it heard us, may have pulled clients
        // back to it, and it is about to drop the VIP.
        else if self.phase == Phase::Running
            && self.reassert_after.is_none_or(|after| now >= after)
        {
            self.reassert_after = Some(now + self.master_down_interval());
            self.stats.split_brains += 1;
            self.announce(now);
            self.announce_left = self.announce_left.max(self.repeats_after_claim());
            self.send_advert(now);
        } else if self.phase == Phase::Running {
            // Rate-limited, but the other node still claims master and may still send
            // gratuitous ARPs: keep announcing until `announce_count` repetitions after
            // the last claim heard, so that ours come last (seen under 30 % loss with
            // reordering: the loser's last ARP came after our re-assertion and clients
            // stayed on it for seconds).
            self.announce_left = self.announce_left.max(self.repeats_after_claim());
            let next = now + self.config.announce_interval;
            // Not running, or only the refresh, later.
            if self.announce_left > 0 && self.timers.get(Timer::Announce).is_none_or(|t| t > next) {
                self.timers.set(Timer::Announce, next);
            }
        }
    }

    /// Starts the Master_Down_Timer at `from` for `wait`: Master_Down_Interval or
    /// Skew_Time with the priority and Master_Adver_Interval of now.
    fn arm_master_down(&mut self, from: Instant, wait: DownWait) {
        let span = match wait {
            DownWait::Interval => self.backup_down_interval(),
            DownWait::Skew => self.skew_time(),
        };
        self.down_armed = Some((from, wait));
        self.timers.set(Timer::MasterDown, from + span);
        if let Some(gate) = &mut self.gate {
            gate.ready = None;
        }
    }

    /// Becomes Master for `reason` (the Master_Down_Timer ran out, or the owner
    /// starts), unless a sync group holds this member back: then it waits as Backup,
    /// [`Posture::Ready`], until [`Instance::handle_sync`] lets it or an advert it
    /// accepts restarts its Master_Down_Timer.
    fn take_over(&mut self, now: Instant, reason: Reason) {
        if self.gate.is_none_or(|g| g.input.may_master) {
            self.change_state(now, State::Master, reason);
            return;
        }
        if self.state != State::Backup {
            let via = if self.state == State::Fault {
                Reason::FaultCleared
            } else {
                Reason::Startup
            };
            self.master_adver_interval = self.config.version.interval();
            self.change_state(now, State::Backup, via);
        }
        self.timers.stop(Timer::MasterDown);
        self.down_armed = None;
        if let Some(gate) = &mut self.gate {
            gate.ready = Some(reason);
        }
    }

    /// Announces the VIPs now and starts the repetitions: `announce_count` in all,
    /// the second after at most [`EARLY_REPEAT`], the others `announce_interval` apart.
    /// A series already running is restarted.
    fn announce(&mut self, now: Instant) {
        self.last_announced = Some(now);
        self.actions.push_back(Action::Announce);
        self.announce_left = self.config.announce_count.saturating_sub(1);
        if self.announce_left > 0 {
            let first = self.config.announce_interval.min(EARLY_REPEAT);
            self.timers.set(Timer::Announce, now + first);
        } else if !self.config.announce_refresh.is_zero() {
            self.timers
                .set(Timer::Announce, now + self.config.announce_refresh);
        } else {
            self.timers.stop(Timer::Announce);
        }
    }

    /// How many repeated announcements follow a lower-priority claim heard as Master:
    /// `announce_count` - 1, and at least enough to go on for [`NEIGH_LOCKTIME`] plus
    /// one `announce_interval`: Linux ignores an ARP that would change a neighbour
    /// entry updated less than `locktime` (1 s) before, so an announcement that
    /// follows the other node's last gratuitous ARP too closely changes nothing.
    ///
    /// With `announce_interval` 0 (only allowed with one announcement) there is nothing
    /// to spread over time: no repetition (found by fuzzing: 1,001 announcements at one
    /// instant). Intervals below [`MIN_CLAIM_REPEAT`] count as that, so the burst stays
    /// bounded (at most 101 repetitions over the locktime).
    fn repeats_after_claim(&self) -> u32 {
        let count = self.config.announce_count.saturating_sub(1);
        if self.config.announce_interval.is_zero() {
            return count;
        }
        let interval = self.config.announce_interval.max(MIN_CLAIM_REPEAT);
        let cover = (NEIGH_LOCKTIME.as_nanos() / interval.as_nanos()) as u32 + 1;
        count.max(cover)
    }

    /// Sends an advert with the current advertised priority and restarts the
    /// Adver_Timer.
    fn send_advert(&mut self, now: Instant) {
        let priority = self.advertised_priority();
        self.push_advert(priority);
        self.timers
            .set(Timer::Adver, now + self.config.version.interval());
    }

    fn push_advert(&mut self, priority: Priority) {
        self.stats.adverts_sent += 1;
        if priority.is_resign() {
            self.stats.priority_zero_sent += 1;
        }
        self.actions.push_back(Action::SendAdvert { priority });
    }

    /// RFC 9568 §6.4.3 Shutdown: priority 0, release the VIPs, then exit.
    fn resign(&mut self, now: Instant, reason: Reason) {
        self.push_advert(Priority::RESIGN);
        self.change_state(now, State::Initialize, reason);
        self.exit();
    }

    fn exit(&mut self) {
        self.end_linger();
        self.phase = Phase::Exited;
        self.timers.stop_all();
        self.actions.push_back(Action::Exit);
    }

    /// How recent an announcement makes a Master that loses linger, and how long it
    /// lingers at most: half the (learned) Master_Adver_Interval, at most
    /// [`LINGER_MAX`].
    fn linger_bound(&self) -> Duration {
        (self.master_adver_interval / 2).min(LINGER_MAX)
    }

    /// Releases the VIPs a Backup kept after losing them (if it does).
    fn end_linger(&mut self) {
        if self.lingering.take().is_some() {
            self.timers.stop(Timer::Linger);
            self.actions.push_back(Action::RemoveVips);
        }
    }

    /// Every transition goes through here: exit actions of the old state, the
    /// record for the admin API, then entry actions of the new one.
    fn change_state(&mut self, now: Instant, to: State, reason: Reason) {
        let from = self.state;
        if from == to {
            return;
        }
        // A lingering Backup that becomes Master again still has the VIPs.
        let mut kept_vips = false;
        match from {
            State::Master => {
                self.timers.stop(Timer::Adver);
                self.timers.stop(Timer::Announce);
                self.announce_left = 0;
                self.maintenance_timed_out = false;
                // Lost to a higher priority soon after announcing (`master_advert`
                // decided): clients may follow our announcement, sent after the new
                // Master's; they are moved back by its re-assertion, which it sends on
                // hearing our claim, before its next advert. Keep the VIPs until that
                // advert (or one of its intervals) so that no connect reaches a node
                // without them meanwhile.
                if self.lingering.is_some() {
                    self.stats.lingers += 1;
                    self.timers.set(Timer::Linger, now + self.linger_bound());
                } else {
                    self.actions.push_back(Action::RemoveVips);
                }
            }
            State::Backup => {
                kept_vips = self.lingering.is_some();
                if to == State::Master {
                    self.lingering = None;
                    self.timers.stop(Timer::Linger);
                } else {
                    self.end_linger();
                }
                self.timers.stop(Timer::MasterDown);
                self.loss.forget_stream();
                if let Some(gate) = &mut self.gate {
                    gate.ready = None;
                }
            }
            State::Initialize | State::Fault => {}
        }
        self.state = to;
        self.last_change = Some(StateChange {
            at: now,
            from,
            to,
            reason,
        });
        self.actions
            .push_back(Action::StateChanged { from, to, reason });
        self.preempt_hold_until = None;
        self.reassert_after = None;
        match to {
            State::Master => {
                // RFC 9568 §6.4.1 / §6.4.2: send an ADVERTISEMENT, announce the
                // addresses, set the Adver_Timer. Deviation in order only: the
                // announcement goes first, so that hosts learn the new holder before
                // the advert makes a handing-over holder release the VIP; otherwise a
                // connect sent in between reaches a node that just dropped the VIP
                // and waits for a SYN retransmit (seen as a 1 s stall in tests).
                self.stats.master_transitions += 1;
                self.master_ip = Some(self.config.primary_ip);
                if !kept_vips {
                    self.actions.push_back(Action::AddVips);
                }
                self.announce(now);
                self.send_advert(now);
            }
            State::Backup => {
                // Master_Adver_Interval is set by the caller (startup: configured;
                // from Master: learned from the advert).
                self.down_cause = Reason::MasterDown;
                self.arm_master_down(now, DownWait::Interval);
            }
            State::Initialize => {
                self.timers.stop(Timer::MasterDown);
                self.timers.stop(Timer::Adver);
            }
            State::Fault => {
                self.stats.faults += 1;
                self.master_ip = None;
                self.timers.stop(Timer::MasterDown);
                self.timers.stop(Timer::Adver);
            }
        }
    }
}

/// Whether the advert lists the VIPs `ours` (sorted), in any order.
fn same_vips(repr: &Repr, ours: &[IpAddr]) -> bool {
    // Runs for every advert (100 a second at a 10 ms interval): no allocation. Our
    // VIPs are distinct (`validate`), so the lists are the same set exactly when the
    // counts match, every received address is ours and none repeats.
    fn same<A: Copy + PartialEq>(got: &[A], ours: &[IpAddr], ip: impl Fn(A) -> IpAddr) -> bool {
        got.len() == ours.len()
            && got
                .iter()
                .enumerate()
                .all(|(i, &a)| ours.binary_search(&ip(a)).is_ok() && !got[..i].contains(&a))
    }
    match repr {
        Repr::V2(a) => same(&a.addrs, ours, IpAddr::V4),
        Repr::V3(a) => match &a.addrs {
            VirtualAddrs::V4(addrs) => same(addrs, ours, IpAddr::V4),
            VirtualAddrs::V6(addrs) => same(addrs, ours, IpAddr::V6),
        },
    }
}

/// The VIPs of a validated `config` as adverts carry them, and sorted.
fn advert_addrs(config: &InstanceConfig) -> Result<(VirtualAddrs, Vec<IpAddr>), ConfigError> {
    let too_many = |_| ConfigError::TooManyVips {
        count: config.vips.len(),
    };
    let addrs = match config.family() {
        crate::vrrp::packet::Family::Ipv4 => VirtualAddrs::V4(
            AddrList::try_new(config.vips.iter().filter_map(as_v4).collect()).map_err(too_many)?,
        ),
        crate::vrrp::packet::Family::Ipv6 => VirtualAddrs::V6(
            AddrList::try_new(config.vips.iter().filter_map(as_v6).collect()).map_err(too_many)?,
        ),
    };
    let mut sorted = config.vips.clone();
    sorted.sort_unstable();
    Ok((addrs, sorted))
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
