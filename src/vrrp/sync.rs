//! Sync groups: several VRRP instances of one node that move together (keepalived's
//! `vrrp_sync_group`), e.g. the IPv4 and the IPv6 VIP of a dual-stack control plane,
//! or the API VIP and a VIP on another interface. Sans-IO: the supervisor feeds every
//! member's [`Posture`] in and passes the [`SyncInput`]s out to the members'
//! [`Instance::handle_sync`](super::machine::Instance::handle_sync).
//!
//! # The rule
//!
//! - **Fault**: a member in FAULT for a reason of its own puts every other member in
//!   FAULT ([`Fault::SyncGroup`](super::machine::Fault::SyncGroup)); they hand their
//!   VIPs off and come back when it clears.
//! - **Master only together**: a member may be Master only while every other member
//!   wants to be ([`Posture::wants_master`]: Master, or a Backup whose
//!   Master_Down_Timer ran out, [`Posture::Ready`]). So when one member leaves Master
//!   (a higher priority heard, a fault), the others leave too, each with a priority-0
//!   advert so that the node taking over the first one takes them as well; and a
//!   member whose timer runs out waits until the others' have. keepalived does the
//!   same ("prefer backup state to avoid thrashing", `vrrp_sync_can_goto_master`):
//!   otherwise two nodes that each win one member would pull the group back and forth.
//!
//! A member that stopped (startup not yet run, exited) does not want Master, so a group
//! takes over only once every member runs.

use super::machine::{Posture, SyncInput};

/// One sync group's members (by index) and what each was last told.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    postures: Vec<Posture>,
    told: Vec<Option<SyncInput>>,
}

impl SyncGroup {
    /// A group of `members` instances, none started yet.
    pub fn new(members: usize) -> SyncGroup {
        SyncGroup {
            postures: vec![Posture::Stopped; members],
            told: vec![None; members],
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.postures.len()
    }

    /// Whether the group has no member.
    pub fn is_empty(&self) -> bool {
        self.postures.is_empty()
    }

    /// The postures last reported, by member.
    pub fn postures(&self) -> &[Posture] {
        &self.postures
    }

    /// Member `member` now stands at `posture` (an index out of range is ignored).
    /// Returns the inputs to deliver, each to its member: only those that differ from
    /// what that member was last told (every member on the first call).
    pub fn update(&mut self, member: usize, posture: Posture) -> Vec<(usize, SyncInput)> {
        if let Some(p) = self.postures.get_mut(member) {
            *p = posture;
        }
        self.tell()
    }

    /// Every member's posture at once (`postures[i]` for member `i`; missing ones
    /// are left as they were): what a coordinator that reads all of them after any
    /// change calls, so that no input is computed from a half-read group (a fresh
    /// coordinator would otherwise see the members it has not read yet as stopped,
    /// and take a Master out of its group for nothing).
    pub fn update_all(&mut self, postures: &[Posture]) -> Vec<(usize, SyncInput)> {
        for (p, &new) in self.postures.iter_mut().zip(postures) {
            *p = new;
        }
        self.tell()
    }

    /// The inputs that differ from what each member was last told.
    fn tell(&mut self) -> Vec<(usize, SyncInput)> {
        let mut out = Vec::new();
        for i in 0..self.postures.len() {
            let want = self.wish(i);
            if self.told[i] != Some(want) {
                self.told[i] = Some(want);
                out.push((i, want));
            }
        }
        out
    }

    /// What member `i` should be told, from the others' postures.
    fn wish(&self, i: usize) -> SyncInput {
        let others = || {
            self.postures
                .iter()
                .enumerate()
                .filter(move |&(j, _)| j != i)
                .map(|(_, p)| *p)
        };
        SyncInput {
            may_master: others().all(Posture::wants_master),
            sibling_fault: others().any(|p| p == Posture::Fault),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: SyncInput = SyncInput::WAIT;
    const GO: SyncInput = SyncInput {
        may_master: true,
        sibling_fault: false,
    };
    const FAULT: SyncInput = SyncInput {
        may_master: false,
        sibling_fault: true,
    };

    #[test]
    fn members_are_told_to_wait_until_every_other_wants_master() {
        let mut g = SyncGroup::new(3);
        assert_eq!(
            g.update(0, Posture::Backup),
            [(0, WAIT), (1, WAIT), (2, WAIT)]
        );
        assert_eq!(g.update(1, Posture::Backup), []);
        assert_eq!(g.update(2, Posture::Backup), []);
        assert_eq!(g.update(0, Posture::Ready), []);
        // Members 0 and 1 ready: member 2 may go, the other two still wait for it.
        assert_eq!(g.update(1, Posture::Ready), [(2, GO)]);
        assert_eq!(g.update(2, Posture::Ready), [(0, GO), (1, GO)]);
        assert_eq!(g.update(0, Posture::Master), []);
        assert_eq!(g.update(1, Posture::Master), []);
        assert_eq!(g.update(2, Posture::Master), []);
    }

    #[test]
    fn one_member_leaving_master_takes_the_others_out() {
        let mut g = SyncGroup::new(2);
        g.update(0, Posture::Master);
        g.update(1, Posture::Master);
        assert_eq!(g.update(0, Posture::Backup), [(1, WAIT)]);
        // Member 1 leaves too: member 0 may take over again only once 1 wants to.
        assert_eq!(g.update(1, Posture::Backup), [(0, WAIT)]);
        // Member 1's timer ran out first: member 0 may take over when its own does,
        // and then member 1 may too.
        assert_eq!(g.update(1, Posture::Ready), [(0, GO)]);
        assert_eq!(g.update(0, Posture::Ready), [(1, GO)]);
    }

    #[test]
    fn a_fault_of_one_member_faults_the_others_and_clears_with_it() {
        let mut g = SyncGroup::new(3);
        for m in 0..3 {
            g.update(m, Posture::Master);
        }
        // Member 1 faults: the others are faulted (and may not be Master); member 1
        // itself is told nothing new yet (the others still want Master).
        assert_eq!(g.update(1, Posture::Fault), [(0, FAULT), (2, FAULT)]);
        // Out only because of the group, the others report Backup (the machine's
        // posture): that is no fault of their own, so nobody faults member 1, but it
        // may no longer take over alone.
        assert_eq!(g.update(0, Posture::Backup), [(1, WAIT)]);
        assert_eq!(g.update(2, Posture::Backup), []);
        // The fault clears: nobody is faulted, and nobody may take over yet.
        assert_eq!(g.update(1, Posture::Backup), [(0, WAIT), (2, WAIT)]);
    }

    #[test]
    fn a_group_read_at_once_keeps_its_masters() {
        // A coordinator restarted (a reload) over two Masters tells them to stay.
        let mut g = SyncGroup::new(2);
        assert_eq!(
            g.update_all(&[Posture::Master, Posture::Master]),
            [(0, GO), (1, GO)]
        );
        assert_eq!(g.update_all(&[Posture::Master, Posture::Master]), []);
        assert_eq!(
            g.update_all(&[Posture::Master, Posture::Backup]),
            [(0, WAIT)]
        );
    }

    #[test]
    fn a_stopped_member_holds_the_group_back_and_a_group_of_one_is_free() {
        let mut g = SyncGroup::new(2);
        g.update(0, Posture::Ready);
        assert_eq!(g.postures(), [Posture::Ready, Posture::Stopped]);
        assert_eq!(g.update(0, Posture::Ready), []);
        let mut alone = SyncGroup::new(1);
        assert_eq!(alone.update(0, Posture::Backup), [(0, GO)]);
        assert_eq!(alone.update(7, Posture::Fault), []);
        assert_eq!(alone.len(), 1);
        assert!(!alone.is_empty());
    }
}
