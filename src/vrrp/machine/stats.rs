//! Why received adverts are dropped, the counters (RFC 6527 statistics, named after
//! them where one exists), and the table of peers heard: what the admin API shows
//! about the receive path.

use std::net::IpAddr;
use std::time::Instant;

use serde::Serialize;

use crate::vrrp::packet::{DecodeError, Family, Version};
use crate::vrrp::units::{Priority, Secs, Vrid};

/// Why a received advert was dropped. A dropped advert only bumps a counter: it
/// changes no timer and no state (keepalived 2.2.7 restarts its advert timer on
/// every packet for the VRID, so a stream of bad packets silences the master).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum DropReason {
    /// The shell could not decode it.
    #[error("undecodable advert: {0}")]
    Decode(DecodeError),
    /// The TTL / hop limit is not 255, so it may come from off the link (RFC 9568
    /// §7.1); keepalived IPv6 unicast peers need `unicast_ttl 255`.
    #[error(
        "TTL/hop limit {got}, want 255 (for keepalived IPv6 unicast peers set unicast_ttl 255)"
    )]
    Ttl {
        /// The TTL / hop limit received.
        got: u8,
    },
    /// The sender runs the other VRRP version; configure the same version everywhere.
    #[error("advert is VRRP version {got:?}, this instance runs the other version")]
    VersionMismatch {
        /// The version received.
        got: Version,
    },
    /// The addresses are of the other family.
    #[error("advert carries {got:?} addresses, this instance runs the other family")]
    FamilyMismatch {
        /// The family received.
        got: Family,
    },
    /// Another virtual router on the same link (RFC 9568 §7.1: discard).
    #[error("advert for VRID {got}, not ours")]
    OtherVrid {
        /// The VRID received.
        got: Vrid,
    },
    /// Our own advert, looped back.
    #[error("our own advert")]
    OwnAdvert,
    /// Unicast mode and the source is not a configured peer.
    #[error("advert from {src}, which is not a configured unicast peer")]
    NotAPeer {
        /// The source.
        src: IpAddr,
    },
    /// VRRPv2: the authentication type or password differs (RFC 2338 §7.1).
    #[error("VRRPv2 authentication does not match: check auth_type and auth_pass on every node")]
    AuthMismatch,
    /// VRRPv2: the sender's interval differs from ours (RFC 3768 §7.1: MUST discard).
    #[error(
        "VRRPv2 advert interval {got}, ours is {want}: every node must use the same advert_int"
    )]
    IntervalMismatch {
        /// The interval received.
        got: Secs,
        /// The configured interval.
        want: Secs,
    },
    /// The address list differs from ours and the sender is not the owner (RFC 9568
    /// §7.1, RFC 3768 §7.1).
    #[error("advert lists other virtual addresses than ours: give every node the same VIPs")]
    AddressList,
    /// Priority 255 (the address owner, which always wins) from an address the
    /// configuration does not name as the owner (`vrrp.owner`): forged or
    /// misconfigured. Dropped so that one packet cannot take the VIP.
    #[error("priority 255 from {src}, which is not the configured address owner (vrrp.owner)")]
    NotTheOwner {
        /// The source.
        src: IpAddr,
    },
}

/// Counters of one instance, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Adverts that passed every check (whatever the state machine then did).
    pub adverts_received: u64,
    /// Adverts this instance asked to send.
    pub adverts_sent: u64,
    /// Valid adverts with priority 0 (`vrrpv3StatisticsRcvdPriZeroPackets`).
    pub priority_zero_received: u64,
    /// Priority-0 adverts sent (`vrrpv3StatisticsSentPriZeroPackets`).
    pub priority_zero_sent: u64,
    /// Transitions to Master (`vrrpv3StatisticsMasterTransitions`).
    pub master_transitions: u64,
    /// Adverts from another node claiming master (priority > 0), accepted by the
    /// receive checks, received while this node is Master. A preemption or a
    /// handover adds one or two; a lasting split brain (e.g. a one-way link) adds one
    /// per advert interval. Not a drop: not part of [`Stats::dropped`].
    pub master_conflicts: u64,
    /// Split brains ended: as Master, an advert from a node that also claims master
    /// with a lower priority (or an equal one from a lower address) was heard, and this
    /// node re-asserted itself (advert and announcement at once). Rate-limited to one
    /// per Master_Down_Interval, as the re-assertion is.
    pub split_brains: u64,
    /// Times this node, having lost the VIPs to a higher priority soon after it
    /// announced them, kept them until the new Master's next advert (see the machine's
    /// module doc, "Deviations").
    pub lingers: u64,
    /// Adverts of the Active Router this node missed as Backup: counted from the gaps
    /// between the ones it accepted (more than 1.5 intervals apart). Each gap also
    /// lengthens its Master_Down_Interval for a while (lossy-link hysteresis).
    pub adverts_missed: u64,
    /// VIPs found missing while Master (removed by someone else) and added back.
    pub vips_restored: u64,
    /// Times a fault took this node out of the election.
    pub faults: u64,
    /// Datagrams the kernel dropped on the VRRP socket (receive buffer full:
    /// `SO_RXQ_OVFL`), as the shell reported them.
    pub rx_dropped: u64,
    /// Times each [`Fault`](super::Fault) started, indexed in [`Fault::ALL`](super::Fault::ALL) order.
    pub fault_causes: [u64; 6],
    /// Bad checksum (`vrrpv3RouterChecksumErrors`).
    pub checksum_errors: u64,
    /// Version not 2 or 3, or not ours (`vrrpv3RouterVersionErrors`).
    pub version_errors: u64,
    /// VRID 0 or another VRID (`vrrpv3RouterVrIdErrors`).
    pub vrid_errors: u64,
    /// TTL / hop limit not 255 (`vrrpv3StatisticsIpTtlErrors`).
    pub ttl_errors: u64,
    /// Type not ADVERTISEMENT, or IP protocol not 112 (`vrrpv3StatisticsRcvdInvalidTypePackets`).
    pub invalid_type: u64,
    /// Truncated, malformed IPv4 header, or a length that disagrees with Count
    /// (`vrrpv3StatisticsPacketLengthErrors`).
    pub length_errors: u64,
    /// Address family not ours, or VRRPv2 over IPv6.
    pub family_errors: u64,
    /// Address list not ours (`vrrpv3StatisticsAddressListErrors`).
    pub address_list_errors: u64,
    /// Interval 0, or a VRRPv2 interval not ours (VRRP-MIB `vrrpStatsAdvertiseIntervalErrors`).
    pub interval_errors: u64,
    /// VRRPv2 auth type unsupported or password wrong (VRRP-MIB `vrrpStatsAuthFailures`).
    pub auth_errors: u64,
    /// Unicast mode: source not a configured peer.
    pub non_peer: u64,
    /// Our own adverts looped back.
    pub own_adverts: u64,
    /// Priority 255 from an address that is not the configured address owner.
    pub not_owner: u64,
}

impl Stats {
    /// Counts one dropped advert under its reason.
    pub(super) fn record_drop(&mut self, reason: &DropReason) {
        let counter = match reason {
            DropReason::Decode(e) => match e {
                DecodeError::Truncated { .. }
                | DecodeError::BadIpv4Header { .. }
                | DecodeError::AddressCount { .. } => &mut self.length_errors,
                DecodeError::BadProtocol(_) | DecodeError::BadType(_) => &mut self.invalid_type,
                DecodeError::BadVersion(_) => &mut self.version_errors,
                DecodeError::BadAddressFamily => &mut self.family_errors,
                DecodeError::BadChecksum { .. } => &mut self.checksum_errors,
                DecodeError::BadVrid => &mut self.vrid_errors,
                DecodeError::UnsupportedAuthType(_) => &mut self.auth_errors,
                DecodeError::ZeroInterval => &mut self.interval_errors,
            },
            DropReason::Ttl { .. } => &mut self.ttl_errors,
            DropReason::VersionMismatch { .. } => &mut self.version_errors,
            DropReason::FamilyMismatch { .. } => &mut self.family_errors,
            DropReason::OtherVrid { .. } => &mut self.vrid_errors,
            DropReason::OwnAdvert => &mut self.own_adverts,
            DropReason::NotAPeer { .. } => &mut self.non_peer,
            DropReason::AuthMismatch => &mut self.auth_errors,
            DropReason::IntervalMismatch { .. } => &mut self.interval_errors,
            DropReason::AddressList => &mut self.address_list_errors,
            DropReason::NotTheOwner { .. } => &mut self.not_owner,
        };
        *counter += 1;
    }

    /// Dropped adverts by reason, with the metrics label of each reason.
    pub fn drops_by_reason(&self) -> [(&'static str, u64); 13] {
        [
            ("checksum", self.checksum_errors),
            ("version", self.version_errors),
            ("vrid", self.vrid_errors),
            ("ttl", self.ttl_errors),
            ("invalid_type", self.invalid_type),
            ("length", self.length_errors),
            ("family", self.family_errors),
            ("address_list", self.address_list_errors),
            ("interval", self.interval_errors),
            ("auth", self.auth_errors),
            ("not_a_peer", self.non_peer),
            ("own_advert", self.own_adverts),
            ("not_owner", self.not_owner),
        ]
    }

    /// Every dropped advert, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.drops_by_reason().iter().map(|(_, n)| n).sum()
    }
}

/// How many peers [`PeerTable`] keeps: more than a control plane has nodes.
pub(super) const MAX_PEERS: usize = 16;

/// One node heard on the link, for the admin API (`apivip status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its primary address (the source of its adverts).
    pub addr: IpAddr,
    /// The priority of its last advert (0: it resigned).
    pub priority: Priority,
    /// When its last advert arrived (the `now` of that input).
    pub last_heard: Instant,
    /// How many of its adverts passed the receive checks.
    pub adverts: u64,
}

/// The senders of accepted adverts, at most [`MAX_PEERS`]; when full, a new sender
/// replaces the one heard longest ago.
#[derive(Debug, Clone)]
pub(super) struct PeerTable {
    // Updated per advert (100 a second at a 10 ms interval): the capacity is
    // reserved once, at the first insert, so the hot path never allocates; a linear
    // scan over 16 entries is cheaper than hashing.
    peers: Vec<Peer>,
}

impl PeerTable {
    pub(super) const fn new() -> PeerTable {
        PeerTable { peers: Vec::new() }
    }

    /// Records one advert from `addr` with `priority`, received at `now`.
    pub(super) fn record(&mut self, addr: IpAddr, priority: Priority, now: Instant) {
        if let Some(peer) = self.peers.iter_mut().find(|p| p.addr == addr) {
            peer.priority = priority;
            peer.last_heard = now;
            peer.adverts += 1;
            return;
        }
        let peer = Peer {
            addr,
            priority,
            last_heard: now,
            adverts: 1,
        };
        if self.peers.len() < MAX_PEERS {
            if self.peers.capacity() == 0 {
                self.peers.reserve_exact(MAX_PEERS);
            }
            self.peers.push(peer);
        } else if let Some(oldest) = self.peers.iter_mut().min_by_key(|p| p.last_heard) {
            *oldest = peer;
        }
    }

    /// Every peer, in the order first heard (an evicted entry's slot is reused).
    pub(super) fn as_slice(&self) -> &[Peer] {
        &self.peers
    }
}
