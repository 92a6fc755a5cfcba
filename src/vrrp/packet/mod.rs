//! VRRP advertisements on the wire: VRRPv3 over IPv4 and IPv6 (RFC 9568 §5) and
//! VRRPv2 over IPv4 (RFC 3768 §5) with keepalived's simple password.
//!
//! Two layers, as in smoltcp's `wire` module:
//! - [`Packet`] is a zero-copy view over the bytes of one VRRP message (no IP header).
//!   Its getters return fields as they are on the wire; its setters (on `AsMut`
//!   buffers) write them.
//! - [`Repr`] is what a message means, validated and owned: [`Repr::parse`] checks a
//!   view and [`Repr::emit`] writes one back.
//!
//! Files, as smoltcp's `wire/` splits them: `header.rs` (the view and its byte
//! ranges), `repr.rs` (the meaning, parse and emit), `ipv4.rs` (the IPv4 header a raw
//! socket delivers), `checksum.rs`, and `tests.rs` (round trips and real keepalived
//! captures). [`datagram`] is the receive side the election uses: the checksum
//! dialect per version, keepalived's old unicast checksum retried, and a cache.
//!
//! [`parse_ipv4_datagram`] reads what an IPv4 raw socket of protocol 112 receives,
//! IPv4 header included, and returns the TTL so the caller can check it is 255
//! (RFC 9568 §7.1). An IPv6 raw socket gets no header (the hop limit arrives as
//! ancillary data), so [`Repr::from_bytes`] on the payload is enough there.
//!
//! # Panics
//!
//! - Parsing never panics, whatever the bytes: [`Repr::parse`], [`Repr::from_bytes`],
//!   [`parse_ipv4_datagram`], [`Ipv4Meta::split`], [`Packet::new_checked`],
//!   [`Packet::check_len`] and the checksum helpers return a [`DecodeError`] instead.
//! - [`Packet`] getters read the buffer without checking, as in smoltcp: they panic
//!   if the buffer is too short for the field. After [`Packet::new_checked`] (or an
//!   `Ok` from [`Packet::check_len`]) every getter is safe for the message's version,
//!   with address indices below [`Packet::addr_count`]. Setters panic if the buffer
//!   is too short for the field they write.
//! - [`Repr::emit`] panics only if the buffer is shorter than [`Repr::buffer_len`].
//!
//! # Checksums
//!
//! The checksum is the 16-bit one's complement of the one's complement sum (RFC 1071)
//! of:
//! - VRRPv3 (RFC 9568 §5.2.8): a pseudo-header and then the whole VRRP message. For
//!   IPv4 the pseudo-header is source, destination, a zero octet, protocol 112 and
//!   the VRRP length in 16 bits (the UDP pseudo-header of RFC 768); for IPv6 it is
//!   source, destination, the VRRP length in 32 bits, three zero octets and next
//!   header 112 (RFC 8200 §8.1).
//! - VRRPv2 (RFC 3768 §5.3.8): the VRRP message alone, authentication data included.
//!
//! Who computes it is a [`Checksum`] policy passed to [`Repr::parse`] and
//! [`Repr::emit`]: an IPv6 raw socket with `IPV6_CHECKSUM` at offset
//! [`CHECKSUM_OFFSET`] has the kernel fill and verify it ([`Checksum::Ignore`]); an
//! IPv4 raw socket leaves it to us ([`Checksum::Verify`]). [`checksum_v4`],
//! [`checksum_v6`] and [`checksum_v2`] compute it for any message.
//!
//! # Compatibility notes and deviations
//!
//! - **Unicast VRRPv3 over IPv4**: keepalived (1.3.6 and later) puts the unicast peer
//!   in the pseudo-header's destination, as the RFC asks (checked against captured
//!   adverts in the tests). Older versions, and newer ones with `old_unicast_checksum`,
//!   put 224.0.0.18 there even when sending unicast; keepalived itself retries a failed
//!   unicast checksum that way (unless `old_unicast_checksum never`). To do the same,
//!   parse again with [`MULTICAST_V4`] as the destination in the [`IpPair`].
//! - **VRRPv3 checksums without the pseudo-header**: some implementations (holo-vrrp,
//!   and keepalived with `v3_checksum_as_v2`) sum the IPv4 VRRPv3 message alone.
//!   [`Checksum::NoPseudoHeader`] speaks that dialect.
//! - **Count 0**: RFC 9568 §5.2.5 says the minimum is 1, but keepalived advertises an
//!   instance without virtual addresses with Count 0; both directions accept it.
//! - **VRRPv2 authentication**: RFC 3768 §5.3.6 reserved auth types 1 and 2 and says to
//!   ignore the Authentication Data; keepalived still implements RFC 2338's simple
//!   text password (type 1). Type 0 and 1 parse; type 2 (IPsec AH, deprecated; its
//!   datagrams are IP protocol 51, not 112) and unknown types are
//!   [`DecodeError::UnsupportedAuthType`]. Checking the password against the
//!   configured one is the state machine's job (the codec cannot know it).
//! - **Exact length**: the message length must be exactly what Count implies
//!   (8 + 4·n, + 8 for VRRPv2, or 8 + 16·n for IPv6). keepalived also tolerates
//!   Ethernet padding, which a raw socket never sees: Linux trims the datagram to the
//!   IPv4 total length, and [`Ipv4Meta::split`] ignores bytes past it too. keepalived
//!   2.4's non-standard `auth_hmac` trailer therefore fails as
//!   [`DecodeError::AddressCount`].
//! - **VRRPv2 over IPv6**: keepalived without `vrrp_strict` lets an IPv6 instance run
//!   VRRPv2; RFC 3768 is IPv4-only and this codec refuses it
//!   ([`DecodeError::BadAddressFamily`]).
//! - **Receive checks left to the caller** (they need configuration or socket data):
//!   TTL/hop limit 255, VRID configured here, password match, the address list, and
//!   for IPv6 that the first address is link-local (RFC 9568 §5.2.9).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::units::{Centisecs, Password, Priority, RangeError, Secs, Vrid};

/// The IP protocol number of VRRP (RFC 9568 §5.1.1.4).
pub const IP_PROTOCOL: u8 = 112;
/// The IPv4 multicast group advertisements go to (RFC 9568 §5.1.1.2).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group advertisements go to (RFC 9568 §5.1.2.2).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The TTL / hop limit sent and required on receipt: a router on the path would have
/// lowered it, so 255 proves the sender is on the link (RFC 9568 §5.1.1.3, §7.1).
pub const TTL: u8 = 255;
/// The fixed part of every VRRP message, before the addresses.
pub const HEADER_LEN: usize = 8;
/// The VRRPv2 Authentication Data after the addresses.
pub const AUTH_LEN: usize = Password::LEN;
/// The byte offset of the checksum, for `IPV6_CHECKSUM`.
pub const CHECKSUM_OFFSET: usize = 6;
/// The most addresses one advertisement carries (Count is one octet).
pub const MAX_ADDRS: usize = 255;

mod field {
    //! Byte ranges of the VRRP message (RFC 9568 §5.1, RFC 3768 §5.1).
    use std::ops::Range;

    /// Version (high nibble) and Type (low nibble).
    pub(super) const VER_TYPE: usize = 0;
    /// Virtual Rtr ID.
    pub(super) const VRID: usize = 1;
    /// Priority.
    pub(super) const PRIORITY: usize = 2;
    /// Count IPvX Addr.
    pub(super) const COUNT: usize = 3;
    /// VRRPv2: Auth Type.
    pub(super) const V2_AUTH_TYPE: usize = 4;
    /// VRRPv2: Adver Int, seconds.
    pub(super) const V2_ADVERT_INT: usize = 5;
    /// VRRPv3: rsvd (4 bits) and Max Adver Int (12 bits, centiseconds).
    pub(super) const V3_MAX_ADVERT_INT: Range<usize> = 4..6;
    /// Checksum.
    pub(super) const CHECKSUM: Range<usize> = 6..8;
    /// The first address.
    pub(super) const ADDRS: usize = 8;

    /// The `index`th address, `len` bytes each.
    pub(super) const fn addr(index: usize, len: usize) -> Range<usize> {
        ADDRS + index * len..ADDRS + (index + 1) * len
    }

    /// VRRPv2: Authentication Data, after `count` IPv4 addresses.
    pub(super) const fn v2_auth_data(count: usize) -> Range<usize> {
        let start = ADDRS + count * 4;
        start..start + super::AUTH_LEN
    }
}

mod checksum;
pub mod datagram;
mod header;
mod ipv4;
mod repr;
#[cfg(test)]
mod tests;

pub use checksum::*;
pub use header::*;
pub use ipv4::*;
pub use repr::*;

/// The address family a message travels in; it fixes the size of each address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4: 4-byte addresses.
    Ipv4,
    /// IPv6: 16-byte addresses.
    Ipv6,
}

impl Family {
    /// The size of one address.
    pub const fn addr_len(self) -> usize {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }
}

/// The IP source and destination around a VRRP message. They make the VRRPv3
/// pseudo-header and fix the address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpPair {
    /// An IPv4 datagram.
    V4 {
        /// The sender's address.
        src: Ipv4Addr,
        /// 224.0.0.18, or the peer for unicast.
        dst: Ipv4Addr,
    },
    /// An IPv6 datagram.
    V6 {
        /// The sender's link-local address.
        src: Ipv6Addr,
        /// ff02::12, or the peer for unicast.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// The family of the two addresses.
    pub const fn family(&self) -> Family {
        match self {
            IpPair::V4 { .. } => Family::Ipv4,
            IpPair::V6 { .. } => Family::Ipv6,
        }
    }
}

/// Who takes care of the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Checksum {
    /// The codec: parse verifies it, emit fills it in, as each version specifies.
    Verify,
    /// Someone else, e.g. the kernel with `IPV6_CHECKSUM`: parse skips it, emit writes 0.
    Ignore,
    /// The codec, summing the message alone for VRRPv3 too (keepalived
    /// `v3_checksum_as_v2`, holo-vrrp): for peers that leave out the pseudo-header.
    NoPseudoHeader,
}

/// Why a message was not a valid advertisement. Each one is a drop reason the state
/// machine counts (RFC 9568 §7.1; RFC 6527 statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the fixed VRRP header, the IPv4 header or the IPv4 total length.
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated {
        /// How many bytes the part needs.
        need: usize,
        /// How many there are.
        have: usize,
    },
    /// The IPv4 header is malformed (version, IHL, total length, or a fragment).
    #[error("malformed IPv4 header: {reason}")]
    BadIpv4Header {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The IP protocol is not 112; 51 is keepalived `auth_type AH`, which apivip does not speak.
    #[error("IP protocol {0} is not VRRP (112); 51 means the peer uses auth_type AH, which is unsupported: use PASS or none")]
    BadProtocol(u8),
    /// The Version is neither 2 nor 3: give every router of the VRID the same version.
    #[error("VRRP version {0} is not 2 or 3; every router of a VRID must run the same version")]
    BadVersion(u8),
    /// VRRPv2 over IPv6 (RFC 3768 is IPv4-only), or the view and the `IpPair` disagree.
    #[error("wrong address family: VRRPv2 runs over IPv4 only (give the peer's IPv6 instance version 3)")]
    BadAddressFamily,
    /// The Type is not 1 (ADVERTISEMENT); RFC 9568 §5.2.2 says to discard it.
    #[error("VRRP type {0} is not 1 (ADVERTISEMENT)")]
    BadType(u8),
    /// The message length is not what Count IPvX Addr implies.
    #[error(
        "Count IPvX Addr is {count}, which needs a {need}-byte message, but it has {have} bytes"
    )]
    AddressCount {
        /// The Count field.
        count: u8,
        /// The length Count implies.
        need: usize,
        /// The length received.
        have: usize,
    },
    /// The checksum does not match; with keepalived unicast peers, check `old_unicast_checksum`.
    #[error("bad VRRP checksum {got:#06x}, want {want:#06x} (for keepalived unicast peers compare old_unicast_checksum and v3_checksum_as_v2)")]
    BadChecksum {
        /// The checksum in the message.
        got: u16,
        /// The checksum computed here.
        want: u16,
    },
    /// The VRID is 0, which no virtual router has.
    #[error("VRID 0 is invalid")]
    BadVrid,
    /// VRRPv2 auth type other than none (0) or PASS (1): AH (2) is deprecated, others unknown.
    #[error(
        "VRRPv2 auth type {0} is unsupported; use auth_type PASS (1) or no authentication (0)"
    )]
    UnsupportedAuthType(u8),
    /// The advertisement interval is 0, which would mean "advertise continuously".
    #[error("advertisement interval 0 is invalid; the sender's advert_int must be at least 10ms (v3) or 1s (v2)")]
    ZeroInterval,
}

// === impl Packet ===
