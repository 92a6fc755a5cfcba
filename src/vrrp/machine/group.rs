//! Sync groups (keepalived's `vrrp_sync_group`): what one member tells the group
//! ([`Posture`]) and what the group tells a member ([`SyncInput`]). The group's rule
//! lives in [`crate::vrrp::sync`]; the machine only obeys it.

use serde::Serialize;

use super::fsm::Reason;

/// Where a member of a sync group stands, as the group sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Posture {
    /// Not in the election: before startup, or after exit.
    Stopped,
    /// In FAULT for a reason of its own (not only because a sibling is).
    Fault,
    /// Backup and content to stay so: an Active Router it accepts is heard.
    Backup,
    /// Backup whose Master_Down_Timer ran out (or the owner at startup) while the
    /// group kept it from taking over: it would be Master if the group let it.
    Ready,
    /// Master.
    Master,
}

impl Posture {
    /// Whether this member would hold its VIPs now if the group let it.
    pub const fn wants_master(self) -> bool {
        matches!(self, Posture::Ready | Posture::Master)
    }

    /// A short name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Posture::Stopped => "stopped",
            Posture::Fault => "fault",
            Posture::Backup => "backup",
            Posture::Ready => "ready",
            Posture::Master => "master",
        }
    }
}

/// What the group asks of one member (level-triggered: the whole wish each time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SyncInput {
    /// Every other member wants Master: this one may take over (or stay Master).
    /// When false a Master leaves (a priority-0 advert, the VIPs removed) and a Backup
    /// whose Master_Down_Timer runs out waits ([`Posture::Ready`]).
    pub may_master: bool,
    /// Another member is in FAULT: this one is too ([`Fault::SyncGroup`](super::Fault::SyncGroup)).
    pub sibling_fault: bool,
}

impl SyncInput {
    /// What a member is told before the group has heard from everyone: wait.
    pub const WAIT: SyncInput = SyncInput {
        may_master: false,
        sibling_fault: false,
    };
}

/// A member's side of the group: what it was last told, and whether it waits to
/// become Master (with the reason it would give).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gate {
    pub(super) input: SyncInput,
    pub(super) ready: Option<Reason>,
}
