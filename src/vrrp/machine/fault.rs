//! Faults: what keeps this node out of the election (keepalived's FAULT state; RFC
//! 9568 has none). The shell reports what it reads from netlink as a [`LinkState`]
//! and failed VIP additions; the machine decides.

use std::fmt;

use serde::Serialize;

/// Why this node cannot take part in the election now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Fault {
    /// The interface does not exist (deleted; the node waits for it to come back).
    InterfaceGone,
    /// The interface is administratively down.
    LinkDown,
    /// The interface is up but has no carrier (cable, switch port, the other end of a
    /// veth).
    NoCarrier,
    /// The address adverts are sent from is not on the interface.
    NoSourceAddress,
    /// Adding the VIPs failed (a netlink error, or they did not appear). Cleared by the
    /// machine itself after a while, so that the node tries again.
    VipAddFailed,
    /// Another instance of this node's sync group is in FAULT (keepalived's
    /// `vrrp_sync_group`): the group leaves the election together.
    SyncGroup,
}

impl Fault {
    /// Every fault, in the order they are reported.
    pub const ALL: [Fault; 6] = [
        Fault::InterfaceGone,
        Fault::LinkDown,
        Fault::NoCarrier,
        Fault::NoSourceAddress,
        Fault::VipAddFailed,
        Fault::SyncGroup,
    ];

    /// A short name for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Fault::InterfaceGone => "interface_gone",
            Fault::LinkDown => "link_down",
            Fault::NoCarrier => "no_carrier",
            Fault::NoSourceAddress => "no_source_address",
            Fault::VipAddFailed => "vip_add_failed",
            Fault::SyncGroup => "sync_group",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Fault`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Faults(u8);

impl Faults {
    /// No fault.
    pub const NONE: Faults = Faults(0);

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `fault` is in the set.
    pub const fn contains(self, fault: Fault) -> bool {
        self.0 & fault.bit() != 0
    }

    /// Adds or removes `fault`.
    pub fn set(&mut self, fault: Fault, on: bool) {
        if on {
            self.0 |= fault.bit();
        } else {
            self.0 &= !fault.bit();
        }
    }

    /// The set without `fault`.
    pub fn without(mut self, fault: Fault) -> Faults {
        self.set(fault, false);
        self
    }

    /// The faults in the set, in [`Fault::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for fault in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(fault.as_str())?;
        }
        Ok(())
    }
}

/// What the shell read about the interface (by name, so that a re-created interface
/// is found again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LinkState {
    /// An interface of that name exists.
    pub exists: bool,
    /// It is administratively up (`IFF_UP`).
    pub up: bool,
    /// It has carrier (`IFF_LOWER_UP`, operational state not down).
    pub carrier: bool,
    /// The source address of the adverts is configured on it.
    pub source_present: bool,
}

impl LinkState {
    /// A present, up interface with carrier and the source address.
    pub const HEALTHY: LinkState = LinkState {
        exists: true,
        up: true,
        carrier: true,
        source_present: true,
    };

    /// The faults this state means: a missing interface is only that (the rest
    /// follows from it).
    pub fn faults(&self) -> Faults {
        let mut faults = Faults::NONE;
        if !self.exists {
            faults.set(Fault::InterfaceGone, true);
            return faults;
        }
        faults.set(Fault::LinkDown, !self.up);
        faults.set(Fault::NoCarrier, self.up && !self.carrier);
        faults.set(Fault::NoSourceAddress, !self.source_present);
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_states_map_to_faults() {
        assert!(LinkState::HEALTHY.faults().is_empty());
        let gone = LinkState {
            exists: false,
            up: false,
            carrier: false,
            source_present: false,
        };
        assert_eq!(
            gone.faults().iter().collect::<Vec<_>>(),
            [Fault::InterfaceGone]
        );
        let down = LinkState {
            up: false,
            carrier: false,
            ..LinkState::HEALTHY
        };
        assert_eq!(down.faults().iter().collect::<Vec<_>>(), [Fault::LinkDown]);
        let no_carrier = LinkState {
            carrier: false,
            source_present: false,
            ..LinkState::HEALTHY
        };
        assert_eq!(
            no_carrier.faults().to_string(),
            "no_carrier,no_source_address"
        );
        let mut f = Faults::NONE;
        f.set(Fault::VipAddFailed, true);
        f.set(Fault::LinkDown, true);
        f.set(Fault::LinkDown, false);
        assert_eq!(f.iter().collect::<Vec<_>>(), [Fault::VipAddFailed]);
    }
}
