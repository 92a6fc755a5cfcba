//! The instance's timers: a closed enum and a fixed table (quinn-proto's `TimerTable`).

use std::time::Instant;

/// One timer of the machine. At most one of `MasterDown` (Backup) and `Adver`
/// (Master) runs at a time; `Handover` runs beside `Adver` during a planned handover
/// (shutdown or maintenance), `Announce` beside `Adver` while announcements repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Timer {
    /// The bound on a planned handover; when it fires, a shutdown handover resigns with
    /// priority 0 and a maintenance handover stays Master at priority 1.
    Handover,
    /// Master_Down_Timer (RFC 9568 §6.2): a Backup takes over when it fires.
    MasterDown,
    /// Adver_Timer (RFC 9568 §6.2): a Master advertises when it fires.
    Adver,
    /// The next repeated announcement (gratuitous ARP / NA) of a Master.
    Announce,
    /// Clears [`Fault::VipAddFailed`](super::Fault::VipAddFailed), so that the node
    /// tries again.
    FaultRetry,
    /// The bound on how long a Master that just lost to a higher priority keeps the
    /// VIPs as Backup (see `Instance::lingering`).
    Linger,
}

impl Timer {
    /// Every timer, in the order expiries are handled at one instant: a handover that
    /// timed out ends the instance (or the maintenance handover) before an advert
    /// would be sent.
    pub(super) const ALL: [Timer; 6] = [
        Timer::Handover,
        Timer::MasterDown,
        Timer::Adver,
        Timer::Announce,
        Timer::FaultRetry,
        Timer::Linger,
    ];

    const fn index(self) -> usize {
        match self {
            Timer::Handover => 0,
            Timer::MasterDown => 1,
            Timer::Adver => 2,
            Timer::Announce => 3,
            Timer::FaultRetry => 4,
            Timer::Linger => 5,
        }
    }
}

/// The deadline of each timer, if it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TimerTable {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Starts (or restarts) `timer` to fire at `at`.
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Stops `timer`.
    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// Stops every timer.
    pub(super) fn stop_all(&mut self) {
        self.deadlines = [None; Timer::ALL.len()];
    }

    /// The deadline of `timer`, if it runs.
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    /// Whether `timer` runs and its deadline is not after `now`.
    pub(super) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline of all.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}
