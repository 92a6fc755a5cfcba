//! What a reload does to the VRRP instance: the change between two validated `vrrp:`
//! sections, sans-IO. The daemon's config diff calls [`classify`]; an in-place change
//! goes to [`VrrpHandle::reconfigure`](super::shell::VrrpHandle::reconfigure), a
//! replacement is a planned handover of the running instance followed by a new one.

use std::net::IpAddr;

use crate::config::Vrrp;
use crate::vrrp::units::Vrid;

/// How a running instance follows a changed `vrrp:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VrrpChange {
    /// Nothing differs: leave the instance alone.
    Unchanged,
    /// Apply with [`VrrpHandle::reconfigure`](super::shell::VrrpHandle::reconfigure):
    /// the VIPs stay unless the new priority loses the election.
    InPlace,
    /// Another virtual router (or another socket): hand the running instance over and
    /// start a new one.
    Replace(ReplaceReason),
}

/// Why a change cannot be applied to the running instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplaceReason {
    /// `vrrp.vrid` changed: the VRID names the virtual router on the link.
    #[error("vrrp.vrid changes from {from} to {to}")]
    Vrid {
        /// The running VRID.
        from: Vrid,
        /// The new one.
        to: Vrid,
    },
    /// `vrrp.interface` changed: the socket, the VIPs and the announcements live on it.
    #[error("vrrp.interface changes from {from} to {to}")]
    Interface {
        /// The running interface.
        from: String,
        /// The new one.
        to: String,
    },
    /// `vrrp.address` changed family: IPv4 and IPv6 use other sockets, groups and VIPs.
    #[error("vrrp.address changes family ({from} -> {to})")]
    Family {
        /// The running address.
        from: IpAddr,
        /// The new one.
        to: IpAddr,
    },
}

/// Classifies the change from the running section `old` to the reloaded `new` (both
/// validated). The VRID, the interface and the address family cannot change in place;
/// everything else can (priority, preemption, VIPs and prefixes, interval, version,
/// password, peers, address, health weight, handover timeout, announcements, track).
pub fn classify(old: &Vrrp, new: &Vrrp) -> VrrpChange {
    if old.instance.vrid != new.instance.vrid {
        return VrrpChange::Replace(ReplaceReason::Vrid {
            from: old.instance.vrid,
            to: new.instance.vrid,
        });
    }
    if old.interface != new.interface {
        return VrrpChange::Replace(ReplaceReason::Interface {
            from: old.interface.clone(),
            to: new.interface.clone(),
        });
    }
    if old.instance.family() != new.instance.family() {
        return VrrpChange::Replace(ReplaceReason::Family {
            from: old.instance.primary_ip,
            to: new.instance.primary_ip,
        });
    }
    if old == new {
        VrrpChange::Unchanged
    } else {
        VrrpChange::InPlace
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{BackendId, FrontendKind, Track};
    use crate::vrrp::machine::{InstanceConfig, VersionConfig};
    use crate::vrrp::units::{Centisecs, Password, Priority, Secs};

    fn base() -> Vrrp {
        let vip: IpAddr = "198.18.0.5".parse().unwrap();
        Vrrp {
            interface: "eth0".into(),
            instance: InstanceConfig::new(
                Vrid::new_unchecked(51),
                VersionConfig::V3 {
                    interval: Centisecs::new_unchecked(10),
                },
                "198.18.0.11".parse().unwrap(),
                vec![vip],
            ),
            vips: vec![(vip, 24)],
            announce_count: 5,
            announce_interval: Duration::from_millis(200),
            track: Track::Proxy,
        }
    }

    fn changed(f: impl FnOnce(&mut Vrrp)) -> Vrrp {
        let mut v = base();
        f(&mut v);
        v
    }

    #[test]
    fn identical_sections_are_unchanged() {
        assert_eq!(classify(&base(), &base()), VrrpChange::Unchanged);
    }

    /// Every field but the VRID, the interface and the family applies in place.
    #[test]
    fn every_other_field_changes_in_place() {
        let second: IpAddr = "198.18.0.6".parse().unwrap();
        let cases: Vec<(&str, Vrrp)> = vec![
            (
                "priority",
                changed(|v| v.instance.base_priority = Priority::new(90)),
            ),
            ("preempt", changed(|v| v.instance.preempt = false)),
            (
                "preempt_delay",
                changed(|v| v.instance.preempt_delay = Duration::from_secs(5)),
            ),
            (
                "vips",
                changed(|v| {
                    v.instance.vips.push(second);
                    v.vips.push((second, 24));
                }),
            ),
            ("vip prefix", changed(|v| v.vips[0].1 = 32)),
            (
                "interval",
                changed(|v| {
                    v.instance.version = VersionConfig::V3 {
                        interval: Centisecs::new_unchecked(100),
                    }
                }),
            ),
            (
                "version and password",
                changed(|v| {
                    v.instance.version = VersionConfig::V2 {
                        interval: Secs::new_unchecked(1),
                        auth: Some(Password::try_new(b"secret").unwrap()),
                    }
                }),
            ),
            (
                "unicast peers",
                changed(|v| v.instance.peers = Some(vec!["198.18.0.12".parse().unwrap()])),
            ),
            (
                "address, same family",
                changed(|v| v.instance.primary_ip = "198.18.0.21".parse().unwrap()),
            ),
            ("health_weight", changed(|v| v.instance.health_weight = 20)),
            (
                "handover_timeout",
                changed(|v| v.instance.handover_timeout = Duration::ZERO),
            ),
            ("announce_count", changed(|v| v.announce_count = 1)),
            (
                "announce_interval",
                changed(|v| v.announce_interval = Duration::from_secs(1)),
            ),
            (
                "track (a renumbered backend too)",
                changed(|v| {
                    v.track = Track::Backend(BackendId {
                        frontend: FrontendKind::Apiserver,
                        master: 2,
                    })
                }),
            ),
        ];
        for (what, new) in cases {
            assert_eq!(classify(&base(), &new), VrrpChange::InPlace, "{what}");
            assert_eq!(classify(&new, &base()), VrrpChange::InPlace, "{what} back");
        }
    }

    /// The VRID, the interface and the family each make a replacement, with the
    /// values in the reason; the VRID is reported first when several change.
    #[test]
    fn vrid_interface_and_family_replace_the_instance() {
        let vrid = changed(|v| v.instance.vrid = Vrid::new_unchecked(52));
        assert_eq!(
            classify(&base(), &vrid),
            VrrpChange::Replace(ReplaceReason::Vrid {
                from: Vrid::new_unchecked(51),
                to: Vrid::new_unchecked(52),
            })
        );
        let interface = changed(|v| v.interface = "eth1".into());
        let VrrpChange::Replace(reason) = classify(&base(), &interface) else {
            panic!("an interface change must replace the instance");
        };
        assert_eq!(
            reason.to_string(),
            "vrrp.interface changes from eth0 to eth1"
        );
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        let family = changed(|v| {
            v.instance.primary_ip = "2001:db8::11".parse().unwrap();
            v.instance.vips = vec![v6];
            v.vips = vec![(v6, 64)];
        });
        assert!(matches!(
            classify(&base(), &family),
            VrrpChange::Replace(ReplaceReason::Family { .. })
        ));
        let both = changed(|v| {
            v.instance.vrid = Vrid::new_unchecked(52);
            v.interface = "eth1".into();
        });
        assert!(matches!(
            classify(&base(), &both),
            VrrpChange::Replace(ReplaceReason::Vrid { .. })
        ));
    }
}
