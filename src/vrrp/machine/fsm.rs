//! States, transition reasons and the actions the machine asks its shell to perform.

use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;

use crate::vrrp::units::Priority;

/// The state of one VRRP instance (RFC 9568 §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    /// Not running: before [`Instance::handle_startup`](super::Instance::handle_startup)
    /// and after shutdown. Adverts are ignored.
    Initialize,
    /// Watching the Active Router; takes over when its Master_Down_Timer runs out.
    Backup,
    /// Holding the VIPs and advertising. RFC 9568 calls it "Active"; keepalived, the
    /// logs operators know and RFC 3768 say "Master".
    Master,
    /// Out of the election until a fault clears (the interface down or gone, no
    /// carrier, no source address, the VIPs could not be added): holds no VIP, sends
    /// nothing, ignores adverts. keepalived's FAULT; not in RFC 9568.
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        })
    }
}

/// Why a state changed; the admin API and the logs show it. The reasons for becoming
/// Master follow RFC 6527's `vrrpv3StatisticsNewMasterReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Reason {
    /// `handle_startup` (RFC 9568 §6.4.1) with a priority below 255: Backup.
    Startup,
    /// `handle_startup` as the address owner (priority 255): Master at once.
    OwnerStartup,
    /// The Master_Down_Timer ran out: no advert from an Active Router for
    /// Master_Down_Interval (RFC 6527 `masterNoResponse`).
    MasterDown,
    /// The Active Router resigned with priority 0 and the skew time passed (RFC 6527
    /// `priority`).
    MasterResigned,
    /// The Active Router has a lower priority and preemption is on, so its adverts
    /// were discarded until the Master_Down_Timer ran out (RFC 6527 `preempted`).
    Preempt,
    /// An advert with a higher priority (or an equal one from a higher address)
    /// arrived while Master (RFC 9568 §6.4.3).
    HigherPriority,
    /// `handle_shutdown` while not holding the VIPs, or with `handover_timeout` 0.
    Shutdown,
    /// Planned handover finished: the new holder was heard.
    HandoverDone,
    /// Planned handover timed out; the VIPs were released with a priority-0 advert.
    HandoverTimedOut,
    /// Maintenance handover finished (`handle_maintenance` as Master): the new holder
    /// was heard, the VIPs were released, and this node stays in the election as
    /// Backup with priority 1 until `handle_resume`.
    Maintenance,
    /// A fault took this node out of the election ([`Instance::faults`] says which).
    ///
    /// [`Instance::faults`]: super::Instance::faults
    Fault,
    /// Every fault cleared: back in the election (Backup, or Master for the owner).
    FaultCleared,
    /// Another instance of this node's sync group left Master or cannot take over,
    /// so this one left Master too (a priority-0 advert first): the group moves
    /// together ([`Instance::handle_sync`](super::Instance::handle_sync)).
    SyncGroup,
}

impl Reason {
    /// A short name for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Startup => "startup",
            Reason::OwnerStartup => "owner_startup",
            Reason::MasterDown => "master_down",
            Reason::MasterResigned => "master_resigned",
            Reason::Preempt => "preempt",
            Reason::HigherPriority => "higher_priority",
            Reason::Shutdown => "shutdown",
            Reason::HandoverDone => "handover_done",
            Reason::HandoverTimedOut => "handover_timed_out",
            Reason::Maintenance => "maintenance",
            Reason::Fault => "fault",
            Reason::FaultCleared => "fault_cleared",
            Reason::SyncGroup => "sync_group",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an operator control ([`Instance::handle_maintenance`],
/// [`Instance::handle_resume`]) was refused. A refused control changes nothing; the
/// message is one line, for the body of an HTTP 409.
///
/// [`Instance::handle_maintenance`]: super::Instance::handle_maintenance
/// [`Instance::handle_resume`]: super::Instance::handle_resume
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlRefused {
    /// A shutdown or maintenance handover is under way; retry when it has ended (at
    /// most `handover_timeout` after it started).
    #[error("a handover is under way; retry when it has ended (at most handover_timeout)")]
    HandoverRunning,
    /// The node is already in maintenance; `apivip resume` ends it.
    #[error("already in maintenance; `apivip resume` ends it")]
    AlreadyInMaintenance,
    /// The node is not in maintenance; `apivip handover` starts it.
    #[error("not in maintenance; `apivip handover` starts it")]
    NotInMaintenance,
    /// The instance has shut down; nothing can be controlled any more.
    #[error("the VRRP instance has shut down")]
    Exited,
}

/// Why [`Instance::handle_reconfigure`](super::Instance::handle_reconfigure) refused a
/// new configuration. A refused configuration changes nothing: the instance runs on
/// with the old one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconfigureRefused {
    /// The VRID identifies the virtual router: another VRID is another router. Replace
    /// the instance (planned handover of the old one, then start the new one).
    #[error("the VRID changes ({from} -> {to}): another virtual router; replace the instance (hand the old one over, then start the new one)")]
    VridChanged {
        /// The running VRID.
        from: crate::vrrp::units::Vrid,
        /// The configured one.
        to: crate::vrrp::units::Vrid,
    },
    /// IPv4 and IPv6 instances use different sockets and addresses: replace the instance.
    #[error("the address family changes ({from} -> {to}): replace the instance (hand the old one over, then start the new one)")]
    FamilyChanged {
        /// The running primary address.
        from: IpAddr,
        /// The configured one.
        to: IpAddr,
    },
    /// The new configuration cannot run (see [`ConfigError`](super::ConfigError)).
    #[error("{0}")]
    Invalid(#[from] super::ConfigError),
    /// Not now: a handover is under way, or the instance has exited.
    #[error("{0}")]
    Control(#[from] ControlRefused),
}

/// The last transition, kept for the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateChange {
    /// When it happened (the `now` of the input that caused it).
    pub at: Instant,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

/// Something the shell must do, drained with
/// [`Instance::poll_action`](super::Instance::poll_action) in order.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// Send one advertisement with this priority. Build it with
    /// [`Instance::advert`](super::Instance::advert); the priority differs from the
    /// configured one while unhealthy (health weight), during a handover (1) and when
    /// resigning (0).
    SendAdvert {
        /// The Priority field to send.
        priority: Priority,
    },
    /// Configure the VIPs on the interface (and accept traffic for them).
    AddVips,
    /// Remove the VIPs from the interface.
    RemoveVips,
    /// Reconfigured while Master: add this newly listed VIP to the interface (the
    /// others stay). An [`Action::Announce`] follows.
    AddVip {
        /// The address; its prefix length is the shell's.
        addr: IpAddr,
    },
    /// Reconfigured while Master: remove this VIP, no longer listed, from the interface.
    RemoveVip {
        /// The address.
        addr: IpAddr,
    },
    /// Announce the VIPs once: gratuitous ARP for IPv4, unsolicited Neighbor
    /// Advertisement (Override flag) for IPv6. The machine emits the repetitions
    /// itself (`announce_count`, `announce_interval`), so the shell only sends.
    Announce,
    /// The state changed; log it and update metrics.
    StateChanged {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// Shutdown finished: the VIPs are released (or were never held) and the process
    /// may exit. The instance ignores every input afterwards.
    Exit,
}
