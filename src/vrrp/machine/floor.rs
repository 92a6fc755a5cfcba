//! The priority floor: which received adverts a Backup discards without effect, so
//! that the shell may drop them in the kernel before they take receive-buffer space
//! (issue 11, a flood of valid lower-priority adverts).
//!
//! A preempting Backup discards an advert whose priority is below its own (RFC 9568
//! §6.4.2: "Discard the ADVERTISEMENT"). The first one it discards after an accepted
//! advert records that the next takeover is a preemption ([`Reason::Preempt`]); every
//! further one changes nothing at all but two things seen only through the admin API:
//! `adverts_received` and the sender's entry in [`Instance::peers`]. A flood of such
//! adverts from a third node, as fast as a machine sends them, fills the socket's
//! receive queue faster than any thread reads it, and the kernel then drops the
//! Active Router's genuine adverts behind the flood: the Backup takes over although
//! the Master is alive (measured: 12,000 adverts a second of priority 50 against a
//! Backup at 100 moved the VIP within a second, the queue full at 2 MiB).
//! [`Instance::priority_floor`] says when that is the case, so the shell can install
//! the floor in the socket's kernel filter.

use std::time::Instant;

use super::{Instance, Phase, Reason, State};
use crate::vrrp::units::Priority;

// === impl Instance ===

impl Instance {
    /// The priority floor at `now`: `Some(floor)` when an advert that passes the receive
    /// checks with a priority in `1..floor` changes nothing but `adverts_received` and
    /// the peer table, so a shell may drop such adverts before the machine sees them
    /// (priority 0, and every priority from `floor` up, must still reach it).
    ///
    /// That holds for a Backup that preempts (configured, or the owner), past its preempt
    /// delay, that has already discarded a lower-priority advert since it last accepted
    /// one (so the reason of a takeover, [`Reason::Preempt`], is already recorded), and
    /// that accepts no previous VIP list after a reconfiguration (an advert with the new
    /// list ends that transition). The floor is the effective priority. `None` in every
    /// other case: a Master needs every lower-priority claim (it re-asserts itself), a
    /// non-preempting Backup accepts them. Ask again after every input.
    pub fn priority_floor(&self, now: Instant) -> Option<Priority> {
        // Not while lingering: the new Master's next advert releases the VIPs.
        if self.phase != Phase::Running
            || self.state != State::Backup
            || self.lingering.is_some()
            || self.down_cause != Reason::Preempt
            || self.previous_vips.is_some()
        {
            return None;
        }
        let local = self.effective_priority();
        if !(self.config.preempt || local.is_owner()) {
            return None;
        }
        // Within the preempt delay lower priorities are accepted (they restart the
        // Master_Down_Timer); once it has run out they are discarded until a higher or
        // equal priority is heard, which also ends `Reason::Preempt`.
        if !self.config.preempt_delay.is_zero()
            && self.preempt_hold_until.is_none_or(|until| now < until)
        {
            return None;
        }
        (local.get() > 1).then_some(local)
    }
}

#[cfg(test)]
mod tests;
