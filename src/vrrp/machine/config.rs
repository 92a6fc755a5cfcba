//! What one VRRP instance is configured with, checked once by
//! [`Instance::try_new`](super::Instance::try_new).

use std::net::IpAddr;
use std::time::Duration;

use crate::vrrp::packet::{Family, Version};
use crate::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};

/// The protocol version with the settings only that version has, so an interval
/// cannot be read in the wrong unit and a password cannot be set on VRRPv3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionConfig {
    /// VRRPv3 (RFC 9568): IPv4 or IPv6. A Backup learns the Active Router's interval
    /// from its adverts, so routers may differ.
    V3 {
        /// Advertisement_Interval, in centiseconds as on the wire.
        interval: Centisecs,
    },
    /// VRRPv2 (RFC 3768) as keepalived speaks it: IPv4 only, whole seconds, every
    /// router of the VRID configured with the same interval (adverts with another
    /// one are dropped, RFC 3768 §7.1).
    V2 {
        /// Advertisement_Interval, in whole seconds as on the wire.
        interval: Secs,
        /// keepalived `auth_type PASS`; `None` sends and accepts Auth Type 0 only.
        auth: Option<Password>,
    },
}

impl VersionConfig {
    /// The configured Advertisement_Interval.
    pub const fn interval(&self) -> Duration {
        match self {
            VersionConfig::V3 { interval } => interval.to_duration(),
            VersionConfig::V2 { interval, .. } => interval.to_duration(),
        }
    }

    /// The Version nibble this instance sends and accepts.
    pub const fn version(&self) -> Version {
        match self {
            VersionConfig::V3 { .. } => Version::V3,
            VersionConfig::V2 { .. } => Version::V2,
        }
    }
}

/// How many times the configured advert interval a Backup learns at most (see
/// [`InstanceConfig::max_learned_interval`]). VRRPv3 lets routers of one VRID use
/// different intervals; a Master at up to about 12 times a Backup's interval is still
/// not declared down by it (3 x 4 intervals + skew).
pub const MAX_LEARNED_FACTOR: u32 = 4;

/// One virtual router on one interface: what this node needs to take part in the
/// election for the VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// The virtual router; the same on every node that shares the VIPs.
    pub vrid: Vrid,
    /// VRRPv3 or VRRPv2, with the interval typed per version.
    pub version: VersionConfig,
    /// This node's priority while it can serve: 1..=254, or 255 if it owns the VIPs
    /// (it then takes them at once on startup and always preempts).
    pub base_priority: Priority,
    /// The virtual addresses, all of the family of `primary_ip`. Adverts must list
    /// the same set (RFC 9568 §7.1), or they are dropped.
    pub vips: Vec<IpAddr>,
    /// This node's own address on the interface: the source of its adverts, the
    /// tie-break when priorities are equal (the higher address wins), and how our
    /// own adverts looped back are recognised. Its family is the instance's family.
    pub primary_ip: IpAddr,
    /// Unicast mode: only adverts from these sources are accepted, others are dropped
    /// and counted. `None` is multicast mode, where any source on the link counts.
    pub peers: Option<Vec<IpAddr>>,
    /// Preempt_Mode (RFC 9568 §6.1): whether this node, as a Backup, takes over from an
    /// Active Router with a lower priority. The owner (255) always preempts.
    pub preempt: bool,
    /// How long a Backup with preemption on keeps accepting a lower-priority Active
    /// Router after it first hears one, before it lets its Master_Down_Timer run out.
    /// Not in the RFC (keepalived `preempt_delay`); it never delays a crash takeover.
    pub preempt_delay: Duration,
    /// How much the priority drops while this node cannot serve (its apiserver or
    /// proxy is unhealthy). Must be below `base_priority`, so an unhealthy node stays
    /// in the election (the bootstrap case) and unhealthy nodes keep their order. To
    /// make every healthy node beat every unhealthy one, set it above the spread of
    /// base priorities across the nodes (max - min).
    pub health_weight: u8,
    /// How long a planned handover (see [`Instance::handle_shutdown`]) may wait for a
    /// new holder before it falls back to a priority-0 advert. At least
    /// [`InstanceConfig::min_handover_timeout`]; zero resigns at once, as keepalived
    /// does on SIGTERM.
    ///
    /// [`Instance::handle_shutdown`]: super::Instance::handle_shutdown
    pub handover_timeout: Duration,
    /// The node that owns the VIPs (priority 255), if another node does: the only
    /// source whose priority-255 adverts are accepted (others are dropped and
    /// counted). A node with priority 255 is the owner itself.
    pub owner: Option<IpAddr>,
    /// How many times the VIPs are announced (gratuitous ARP / unsolicited NA) each
    /// time this node starts holding them, re-asserts itself or restores them: the
    /// first at once, the second after at most [`EARLY_REPEAT`](super::EARLY_REPEAT),
    /// the others every `announce_interval`. 0 counts as 1: a new holder always
    /// announces.
    pub announce_count: u32,
    /// The time between two repeated announcements.
    pub announce_interval: Duration,
    /// While Master, the VIPs are announced again this long after the last
    /// announcement, for as long as it holds them (keepalived's `garp_master_refresh`);
    /// zero: never. See the machine's module doc ("Deviations").
    pub announce_refresh: Duration,
}

impl InstanceConfig {
    /// A configuration with the defaults: priority 100, multicast, preemption on
    /// without delay, no health weight, a handover timeout of ten intervals, and five
    /// announcements 200 ms apart, not refreshed.
    pub fn new(
        vrid: Vrid,
        version: VersionConfig,
        primary_ip: IpAddr,
        vips: Vec<IpAddr>,
    ) -> InstanceConfig {
        InstanceConfig {
            vrid,
            version,
            base_priority: Priority::DEFAULT,
            vips,
            primary_ip,
            peers: None,
            preempt: true,
            preempt_delay: Duration::ZERO,
            health_weight: 0,
            handover_timeout: version.interval() * 10,
            owner: None,
            announce_count: 5,
            announce_interval: Duration::from_millis(200),
            announce_refresh: Duration::ZERO,
        }
    }

    /// The address family of the instance: the family of `primary_ip`.
    pub fn family(&self) -> Family {
        match self.primary_ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The shortest `handover_timeout` that can succeed: a preempting Backup takes
    /// over at most 3 x interval + skew (< 4 x interval) after the last full-priority
    /// advert, so anything shorter always ends in the priority-0 fallback.
    pub fn min_handover_timeout(&self) -> Duration {
        self.version.interval() * 4
    }

    /// The longest Master_Adver_Interval a VRRPv3 Backup learns from an advert:
    /// [`MAX_LEARNED_FACTOR`] times the configured interval. A larger one (up to
    /// 40.95 s on the wire, forged or misconfigured) is taken as this, so that one
    /// advert cannot leave the VIPs unheld for minutes.
    pub fn max_learned_interval(&self) -> std::time::Duration {
        self.version.interval() * MAX_LEARNED_FACTOR
    }

    /// The longest a planned handover ([`Instance::handle_shutdown`] as Master) runs
    /// until [`Action::Exit`](super::Action::Exit): `handover_timeout`, then the
    /// priority-0 fallback; two intervals more cover the adverts in flight. With
    /// `handover_timeout` 0 it resigns at once, so two intervals.
    ///
    /// [`Instance::handle_shutdown`]: super::Instance::handle_shutdown
    pub fn handover_bound(&self) -> Duration {
        self.handover_timeout + self.version.interval() * 2
    }

    /// Checks everything [`Instance::try_new`](super::Instance::try_new) relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let family = self.family();
        if self.base_priority.is_resign() {
            return Err(ConfigError::ZeroPriority);
        }
        if matches!(self.version, VersionConfig::V2 { .. }) && family != Family::Ipv4 {
            return Err(ConfigError::V2OverIpv6);
        }
        if self.vips.is_empty() {
            return Err(ConfigError::NoVips);
        }
        if self.vips.len() > crate::vrrp::packet::MAX_ADDRS {
            return Err(ConfigError::TooManyVips {
                count: self.vips.len(),
            });
        }
        for (i, vip) in self.vips.iter().enumerate() {
            if family_of(vip) != family {
                return Err(ConfigError::MixedFamily { addr: *vip });
            }
            if self.vips[..i].contains(vip) {
                return Err(ConfigError::DuplicateVip { addr: *vip });
            }
        }
        if self.vips.contains(&self.primary_ip) && !self.base_priority.is_owner() {
            return Err(ConfigError::PrimaryIsVip {
                addr: self.primary_ip,
            });
        }
        if let Some(peers) = &self.peers {
            if peers.is_empty() {
                return Err(ConfigError::NoPeers);
            }
            for peer in peers {
                if family_of(peer) != family {
                    return Err(ConfigError::MixedFamily { addr: *peer });
                }
                if *peer == self.primary_ip {
                    return Err(ConfigError::PeerIsSelf { addr: *peer });
                }
            }
        }
        if let Some(owner) = self.owner {
            if family_of(&owner) != family {
                return Err(ConfigError::MixedFamily { addr: owner });
            }
            if owner == self.primary_ip || self.base_priority.is_owner() {
                return Err(ConfigError::OwnerIsSelf { addr: owner });
            }
        }
        if self.health_weight >= self.base_priority.get() {
            return Err(ConfigError::WeightNotBelowPriority {
                weight: self.health_weight,
                priority: self.base_priority,
            });
        }
        if self.announce_count > 1 && self.announce_interval.is_zero() {
            return Err(ConfigError::ZeroAnnounceInterval {
                count: self.announce_count,
            });
        }
        let min = self.min_handover_timeout();
        if !self.handover_timeout.is_zero() && self.handover_timeout < min {
            return Err(ConfigError::HandoverTooShort {
                got: self.handover_timeout,
                min,
            });
        }
        Ok(())
    }
}

fn family_of(addr: &IpAddr) -> Family {
    match addr {
        IpAddr::V4(_) => Family::Ipv4,
        IpAddr::V6(_) => Family::Ipv6,
    }
}

/// Why an [`InstanceConfig`] cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Priority 0 only signals a resigning Active Router; configure 1..=254 (255 = owner).
    #[error("priority 0 is reserved for resigning (RFC 9568 §5.2.4); use 1..=254, or 255 for the address owner")]
    ZeroPriority,
    /// VRRPv2 runs over IPv4 only; use version 3 for an IPv6 instance.
    #[error("VRRPv2 runs over IPv4 only (RFC 3768); use VRRPv3 for an IPv6 primary address")]
    V2OverIpv6,
    /// An instance floats at least one address; list the VIPs.
    #[error("no virtual addresses: list at least one VIP")]
    NoVips,
    /// One advertisement carries at most 255 addresses; split them over several VRIDs.
    #[error(
        "{count} virtual addresses do not fit one advertisement (at most 255); use several VRIDs"
    )]
    TooManyVips {
        /// How many were given.
        count: usize,
    },
    /// Every VIP and peer must be of the primary address's family; use one instance per family.
    #[error(
        "{addr} is not of the family of the primary address; run one instance per address family"
    )]
    MixedFamily {
        /// The offending address.
        addr: IpAddr,
    },
    /// A VIP is listed twice; remove the duplicate.
    #[error("virtual address {addr} is listed twice")]
    DuplicateVip {
        /// The duplicated address.
        addr: IpAddr,
    },
    /// The node's own address is a VIP, which only the owner (priority 255) may do.
    #[error("the primary address {addr} is also a VIP; only the address owner (priority 255) may float its own address")]
    PrimaryIsVip {
        /// The primary address.
        addr: IpAddr,
    },
    /// Unicast mode with no peers would accept no adverts; list the peers or use multicast.
    #[error("unicast peers are configured but empty; list the other nodes or leave peers unset for multicast")]
    NoPeers,
    /// The node's own address is listed as a peer; list only the other nodes.
    #[error("{addr} is this node's own primary address; list only the other nodes as peers")]
    PeerIsSelf {
        /// The address.
        addr: IpAddr,
    },
    /// `owner` names this node, or this node has priority 255: a node with priority
    /// 255 is the owner itself, and another owner would be a second one.
    #[error("owner {addr} names another node as the address owner, but this node is the owner (priority 255) or has that address: remove owner, or lower the priority")]
    OwnerIsSelf {
        /// The owner given.
        addr: IpAddr,
    },
    /// An unhealthy node must stay in the election (priority >= 1); lower the weight.
    #[error("health_weight {weight} is not below the priority {priority}: an unhealthy node would leave the election; use a weight below the priority")]
    WeightNotBelowPriority {
        /// The weight given.
        weight: u8,
        /// The base priority.
        priority: Priority,
    },
    /// Repeated announcements need time between them.
    #[error("announce_interval 0 with announce_count {count}: repeated announcements need an interval; set announce_interval (e.g. 200ms) or announce_count 1")]
    ZeroAnnounceInterval {
        /// The count given.
        count: u32,
    },
    /// A handover this short always ends in the priority-0 fallback; use at least 4 x the interval, or 0.
    #[error("handover_timeout {got:?} is shorter than a backup needs to take over ({min:?}, 4 x the advert interval); raise it, or set 0 to resign at once")]
    HandoverTooShort {
        /// The timeout given.
        got: Duration,
        /// The shortest that can succeed.
        min: Duration,
    },
}
