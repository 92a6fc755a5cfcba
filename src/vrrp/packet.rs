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

/// Declares a wire enum that keeps values it does not know (smoltcp's `enum_with_unknown!`).
macro_rules! wire_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vattr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
            /// A value this codec does not know, kept as received.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> $name {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> $ty {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

wire_enum! {
    /// The Version nibble (RFC 9568 §5.2.1, RFC 3768 §5.3.1).
    pub enum Version(u8) {
        /// VRRPv2, RFC 3768: IPv4 only, interval in seconds, checksum without pseudo-header.
        V2 = 2,
        /// VRRPv3, RFC 9568: IPv4 and IPv6, interval in centiseconds.
        V3 = 3,
    }
}

wire_enum! {
    /// The Type nibble (RFC 9568 §5.2.2): only ADVERTISEMENT is defined.
    pub enum MsgType(u8) {
        /// An ADVERTISEMENT, the only VRRP message.
        Advertisement = 1,
    }
}

wire_enum! {
    /// The VRRPv2 Auth Type octet (RFC 2338 §5.3.6; RFC 3768 reserved 1 and 2).
    pub enum AuthType(u8) {
        /// No authentication.
        None = 0,
        /// Simple text password in the Authentication Data (keepalived `auth_type PASS`).
        SimplePassword = 1,
        /// IPsec AH (keepalived `auth_type AH`): deprecated, unsupported.
        IpAh = 2,
    }
}

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

/// A zero-copy view of one VRRP message.
///
/// VRRPv3 (RFC 9568 §5.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |(rsvd) |     Max Adver Int     |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                                                               |
/// +                                                               +
/// |                       IPvX Address(es)                        |
/// +                                                               +
/// +                                                               +
/// +                                                               +
/// +                                                               +
/// |                                                               |
/// +                                                               +
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// VRRPv2 (RFC 3768 §5.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version| Type  | Virtual Rtr ID|   Priority    | Count IP Addrs|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |   Auth Type   |   Adver Int   |          Checksum             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (1)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                            .                                  |
/// |                            .                                  |
/// |                            .                                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         IP Address (n)                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (1)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Authentication Data (2)                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// The bytes alone do not say whether the addresses are IPv4 or IPv6, so the view
/// carries the [`Family`] it was received in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    family: Family,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length: getters may panic (see the module doc).
    pub const fn new_unchecked(buffer: T, family: Family) -> Packet<T> {
        Packet { buffer, family }
    }

    /// Wraps a buffer after [`Packet::check_len`], so every getter is safe.
    pub fn new_checked(buffer: T, family: Family) -> Result<Packet<T>, DecodeError> {
        let packet = Packet::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer holds the fixed header and everything Count and the version
    /// imply ([`Packet::msg_len`]). A longer buffer passes; [`Repr::parse`] wants the
    /// exact length.
    pub fn check_len(&self) -> Result<(), DecodeError> {
        let have = self.buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have,
            });
        }
        let need = self.msg_len();
        if have < need {
            return Err(DecodeError::AddressCount {
                count: self.addr_count(),
                need,
                have,
            });
        }
        Ok(())
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The family the view reads addresses in.
    pub const fn family(&self) -> Family {
        self.family
    }

    /// The message length the header implies: the fixed part, Count addresses of the
    /// view's family and, for VRRPv2, the authentication data.
    pub fn msg_len(&self) -> usize {
        let auth = match self.version() {
            Version::V2 => AUTH_LEN,
            _ => 0,
        };
        HEADER_LEN + usize::from(self.addr_count()) * self.family.addr_len() + auth
    }

    /// The Version nibble.
    pub fn version(&self) -> Version {
        Version::from(self.buffer.as_ref()[field::VER_TYPE] >> 4)
    }

    /// The Type nibble.
    pub fn msg_type(&self) -> MsgType {
        MsgType::from(self.buffer.as_ref()[field::VER_TYPE] & 0x0f)
    }

    /// The Virtual Rtr ID, 0 included.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// The Priority.
    pub fn priority(&self) -> Priority {
        Priority::new(self.buffer.as_ref()[field::PRIORITY])
    }

    /// The Count IPvX Addr field.
    pub fn addr_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// VRRPv2: the Auth Type.
    pub fn v2_auth_type(&self) -> AuthType {
        AuthType::from(self.buffer.as_ref()[field::V2_AUTH_TYPE])
    }

    /// VRRPv2: the Adver Int, in whole seconds.
    pub fn v2_advert_int(&self) -> u8 {
        self.buffer.as_ref()[field::V2_ADVERT_INT]
    }

    /// VRRPv3: the 4 reserved bits, sent as zero and ignored on receipt (RFC 9568 §5.2.6).
    pub fn v3_rsvd(&self) -> u8 {
        self.buffer.as_ref()[field::V3_MAX_ADVERT_INT.start] >> 4
    }

    /// VRRPv3: the Max Adver Int, in centiseconds (12 bits).
    pub fn v3_max_advert_int(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::V3_MAX_ADVERT_INT];
        u16::from_be_bytes([b[0], b[1]]) & 0x0fff
    }

    /// The Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The `index`th address, read in the view's family.
    pub fn addr(&self, index: usize) -> IpAddr {
        match self.family {
            Family::Ipv4 => IpAddr::V4(self.addr_v4(index)),
            Family::Ipv6 => IpAddr::V6(self.addr_v6(index)),
        }
    }

    /// The `index`th address, read as IPv4.
    pub fn addr_v4(&self, index: usize) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::addr(index, 4)];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The `index`th address, read as IPv6.
    pub fn addr_v6(&self, index: usize) -> Ipv6Addr {
        let mut octets = [0; 16];
        octets.copy_from_slice(&self.buffer.as_ref()[field::addr(index, 16)]);
        Ipv6Addr::from(octets)
    }

    /// The Count addresses, read in the view's family.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..usize::from(self.addr_count())).map(|i| self.addr(i))
    }

    /// VRRPv2: the Authentication Data after the Count addresses.
    pub fn v2_auth_data(&self) -> [u8; AUTH_LEN] {
        let mut data = [0; AUTH_LEN];
        data.copy_from_slice(
            &self.buffer.as_ref()[field::v2_auth_data(usize::from(self.addr_count()))],
        );
        data
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the Version nibble, keeping the Type.
    pub fn set_version(&mut self, version: Version) {
        let b = &mut self.buffer.as_mut()[field::VER_TYPE];
        *b = (u8::from(version) << 4) | (*b & 0x0f);
    }

    /// Sets the Type nibble, keeping the Version.
    pub fn set_msg_type(&mut self, msg_type: MsgType) {
        let b = &mut self.buffer.as_mut()[field::VER_TYPE];
        *b = (*b & 0xf0) | (u8::from(msg_type) & 0x0f);
    }

    /// Sets the Virtual Rtr ID.
    pub fn set_vrid(&mut self, vrid: u8) {
        self.buffer.as_mut()[field::VRID] = vrid;
    }

    /// Sets the Priority.
    pub fn set_priority(&mut self, priority: Priority) {
        self.buffer.as_mut()[field::PRIORITY] = priority.get();
    }

    /// Sets Count IPvX Addr.
    pub fn set_addr_count(&mut self, count: u8) {
        self.buffer.as_mut()[field::COUNT] = count;
    }

    /// VRRPv2: sets the Auth Type.
    pub fn set_v2_auth_type(&mut self, auth_type: AuthType) {
        self.buffer.as_mut()[field::V2_AUTH_TYPE] = auth_type.into();
    }

    /// VRRPv2: sets the Adver Int, in whole seconds.
    pub fn set_v2_advert_int(&mut self, secs: u8) {
        self.buffer.as_mut()[field::V2_ADVERT_INT] = secs;
    }

    /// VRRPv3: sets the Max Adver Int (low 12 bits of `cs`) and zeroes the reserved bits.
    pub fn set_v3_max_advert_int(&mut self, cs: u16) {
        self.buffer.as_mut()[field::V3_MAX_ADVERT_INT]
            .copy_from_slice(&(cs & 0x0fff).to_be_bytes());
    }

    /// Sets the Checksum field.
    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// Writes the `index`th address as IPv4 (4-byte slots).
    pub fn set_addr_v4(&mut self, index: usize, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::addr(index, 4)].copy_from_slice(&addr.octets());
    }

    /// Writes the `index`th address as IPv6 (16-byte slots).
    pub fn set_addr_v6(&mut self, index: usize, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::addr(index, 16)].copy_from_slice(&addr.octets());
    }

    /// VRRPv2: writes the Authentication Data after Count addresses (set Count first).
    pub fn set_v2_auth_data(&mut self, data: &[u8; AUTH_LEN]) {
        let range = field::v2_auth_data(usize::from(self.addr_count()));
        self.buffer.as_mut()[range].copy_from_slice(data);
    }

    /// Computes and writes the checksum over the first [`Packet::msg_len`] bytes, as
    /// the version and `policy` say (`Ignore` writes 0). Set every other field first.
    pub fn fill_checksum(&mut self, ip: &IpPair, policy: Checksum) {
        let len = self.msg_len();
        let version = self.version();
        let value = expected_checksum(&self.buffer.as_ref()[..len], version, ip, policy);
        self.set_checksum(value.unwrap_or(0));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

// === impl AddrList ===

/// The virtual addresses of one advertisement: at most [`MAX_ADDRS`], in order. Up to
/// [`INLINE_ADDRS`] are stored inline, so decoding the usual advert (one to a few VIPs,
/// 100 a second at a 10 ms interval) allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddrList<A>(SmallVec<[A; INLINE_ADDRS]>);

/// How many addresses an [`AddrList`] holds without allocating.
pub const INLINE_ADDRS: usize = 4;

impl<A: Serialize> Serialize for AddrList<A> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(s)
    }
}

impl<A> AddrList<A> {
    /// Checks the list fits the Count field.
    pub fn try_new(addrs: Vec<A>) -> Result<AddrList<A>, RangeError> {
        if addrs.len() > MAX_ADDRS {
            return Err(RangeError::TooManyAddrs { count: addrs.len() });
        }
        Ok(AddrList(SmallVec::from_vec(addrs)))
    }

    /// No addresses (keepalived sends Count 0 for an instance without VIPs).
    pub fn empty() -> AddrList<A> {
        AddrList(SmallVec::new())
    }

    /// The Count field for this list.
    pub fn count(&self) -> u8 {
        // `try_new` bounded the length by MAX_ADDRS (255).
        self.0.len() as u8
    }

    /// The addresses.
    pub fn into_vec(self) -> Vec<A> {
        self.0.into_vec()
    }
}

impl<A> Deref for AddrList<A> {
    type Target = [A];
    fn deref(&self) -> &[A] {
        &self.0
    }
}

impl<A> TryFrom<Vec<A>> for AddrList<A> {
    type Error = RangeError;
    fn try_from(addrs: Vec<A>) -> Result<AddrList<A>, RangeError> {
        AddrList::try_new(addrs)
    }
}

impl<'de, A: Deserialize<'de>> Deserialize<'de> for AddrList<A> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AddrList<A>, D::Error> {
        AddrList::try_new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

// === impl Repr ===

/// VRRPv2 authentication, as the sender set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// Auth Type 0; the Authentication Data is sent as zeros and ignored on receipt.
    None,
    /// Auth Type 1 with its 8-byte password (keepalived `auth_type PASS`).
    Password(Password),
}

/// A VRRPv2 advertisement (RFC 3768): IPv4 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertV2 {
    /// The virtual router.
    pub vrid: Vrid,
    /// The sender's priority; 0 when it resigns.
    pub priority: Priority,
    /// Adver Int, in whole seconds (RFC 3768 §5.3.7).
    pub advert_int: Secs,
    /// The authentication the sender used.
    pub auth: Auth,
    /// The virtual addresses.
    pub addrs: AddrList<Ipv4Addr>,
}

/// A VRRPv3 advertisement (RFC 9568), IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvertV3 {
    /// The virtual router.
    pub vrid: Vrid,
    /// The sender's priority; 0 when it resigns.
    pub priority: Priority,
    /// Max Adver Int, in centiseconds (RFC 9568 §5.2.7).
    pub max_advert_int: Centisecs,
    /// The virtual addresses; their family is the message's.
    pub addrs: VirtualAddrs,
}

/// The addresses of a VRRPv3 advertisement, of one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VirtualAddrs {
    /// IPv4 addresses.
    V4(AddrList<Ipv4Addr>),
    /// IPv6 addresses; the first is the virtual router's link-local address.
    V6(AddrList<Ipv6Addr>),
}

impl VirtualAddrs {
    /// The family of the addresses.
    pub const fn family(&self) -> Family {
        match self {
            VirtualAddrs::V4(_) => Family::Ipv4,
            VirtualAddrs::V6(_) => Family::Ipv6,
        }
    }

    /// The Count field for these addresses.
    pub fn count(&self) -> u8 {
        match self {
            VirtualAddrs::V4(a) => a.count(),
            VirtualAddrs::V6(a) => a.count(),
        }
    }
}

/// A validated VRRP advertisement. The interval is typed per version, so seconds and
/// centiseconds cannot be confused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Repr {
    /// VRRPv2.
    V2(AdvertV2),
    /// VRRPv3.
    V3(AdvertV3),
}

impl Repr {
    /// Parses and validates one VRRP message, exactly as long as its header implies.
    ///
    /// Checks run in this order, so each message has one drop reason:
    /// 1. the fixed header is there ([`DecodeError::Truncated`]);
    /// 2. the version is 2 or 3 (RFC 9568 §7.1 "MUST verify the VRRP version");
    /// 3. the family fits: VRRPv2 is IPv4 only, and `ip` agrees with the view;
    /// 4. the type is ADVERTISEMENT (RFC 9568 §5.2.2);
    /// 5. the length is what Count implies (RFC 9568 §7.1 "MUST verify that the
    ///    received packet contains the complete VRRP packet");
    /// 6. the checksum, unless `checksum` is [`Checksum::Ignore`] (RFC 9568 §7.1);
    /// 7. the VRID is not 0;
    /// 8. VRRPv2: the auth type is none or simple password;
    /// 9. the interval is not 0.
    ///
    /// Never panics.
    pub fn parse<T>(
        packet: &Packet<&T>,
        ip: &IpPair,
        checksum: Checksum,
    ) -> Result<Repr, DecodeError>
    where
        T: AsRef<[u8]> + ?Sized,
    {
        let bytes = packet.buffer.as_ref();
        let have = bytes.len();
        if have < HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN,
                have,
            });
        }
        let version = packet.version();
        if !matches!(version, Version::V2 | Version::V3) {
            return Err(DecodeError::BadVersion(version.into()));
        }
        let family = packet.family();
        if ip.family() != family || (version == Version::V2 && family != Family::Ipv4) {
            return Err(DecodeError::BadAddressFamily);
        }
        match packet.msg_type() {
            MsgType::Advertisement => {}
            other => return Err(DecodeError::BadType(other.into())),
        }
        let need = packet.msg_len();
        if have != need {
            return Err(DecodeError::AddressCount {
                count: packet.addr_count(),
                need,
                have,
            });
        }
        if let Some(want) = expected_checksum(bytes, version, ip, checksum) {
            let got = packet.checksum();
            if !checksum_matches(got, want) {
                return Err(DecodeError::BadChecksum { got, want });
            }
        }
        let vrid = Vrid::try_new(packet.vrid()).map_err(|_| DecodeError::BadVrid)?;
        let priority = packet.priority();
        let count = usize::from(packet.addr_count());
        if version == Version::V2 {
            let auth = match packet.v2_auth_type() {
                AuthType::None => Auth::None,
                AuthType::SimplePassword => {
                    Auth::Password(Password::from_wire(packet.v2_auth_data()))
                }
                other => return Err(DecodeError::UnsupportedAuthType(other.into())),
            };
            let advert_int =
                Secs::try_new(packet.v2_advert_int()).map_err(|_| DecodeError::ZeroInterval)?;
            let addrs = AddrList((0..count).map(|i| packet.addr_v4(i)).collect());
            return Ok(Repr::V2(AdvertV2 {
                vrid,
                priority,
                advert_int,
                auth,
                addrs,
            }));
        }
        let max_advert_int = Centisecs::try_new(packet.v3_max_advert_int())
            .map_err(|_| DecodeError::ZeroInterval)?;
        let addrs = match family {
            Family::Ipv4 => {
                VirtualAddrs::V4(AddrList((0..count).map(|i| packet.addr_v4(i)).collect()))
            }
            Family::Ipv6 => {
                VirtualAddrs::V6(AddrList((0..count).map(|i| packet.addr_v6(i)).collect()))
            }
        };
        Ok(Repr::V3(AdvertV3 {
            vrid,
            priority,
            max_advert_int,
            addrs,
        }))
    }

    /// [`Repr::parse`] over bytes, read in the family of `ip`. Never panics.
    pub fn from_bytes(msg: &[u8], ip: &IpPair, checksum: Checksum) -> Result<Repr, DecodeError> {
        Repr::parse(&Packet::new_unchecked(msg, ip.family()), ip, checksum)
    }

    /// The number of bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::V2(a) => HEADER_LEN + a.addrs.len() * 4 + AUTH_LEN,
            Repr::V3(a) => HEADER_LEN + usize::from(a.addrs.count()) * a.addrs.family().addr_len(),
        }
    }

    /// Writes the message into the first [`Repr::buffer_len`] bytes of `packet`,
    /// leaving the rest alone, with the checksum `checksum` asks for. The VRRPv3
    /// pseudo-header is built from `ip` as given (give it the family of the
    /// addresses). Reserved bits and unused authentication data are written as zero.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`Repr::buffer_len`]; never otherwise.
    pub fn emit<T>(&self, packet: &mut Packet<T>, ip: &IpPair, checksum: Checksum)
    where
        T: AsRef<[u8]> + AsMut<[u8]>,
    {
        let len = self.buffer_len();
        let have = packet.buffer.as_ref().len();
        assert!(
            have >= len,
            "VRRP emit: buffer has {have} bytes, the message needs {len} (Repr::buffer_len)"
        );
        let family = match self {
            Repr::V2(_) => Family::Ipv4,
            Repr::V3(a) => a.addrs.family(),
        };
        let mut out = Packet::new_unchecked(&mut packet.buffer.as_mut()[..len], family);
        out.set_msg_type(MsgType::Advertisement);
        out.set_checksum(0);
        match self {
            Repr::V2(a) => {
                out.set_version(Version::V2);
                out.set_vrid(a.vrid.get());
                out.set_priority(a.priority);
                out.set_addr_count(a.addrs.count());
                out.set_v2_advert_int(a.advert_int.get());
                for (i, addr) in a.addrs.iter().enumerate() {
                    out.set_addr_v4(i, *addr);
                }
                match &a.auth {
                    Auth::None => {
                        out.set_v2_auth_type(AuthType::None);
                        out.set_v2_auth_data(&[0; AUTH_LEN]);
                    }
                    Auth::Password(password) => {
                        out.set_v2_auth_type(AuthType::SimplePassword);
                        out.set_v2_auth_data(password.as_bytes());
                    }
                }
            }
            Repr::V3(a) => {
                out.set_version(Version::V3);
                out.set_vrid(a.vrid.get());
                out.set_priority(a.priority);
                out.set_addr_count(a.addrs.count());
                out.set_v3_max_advert_int(a.max_advert_int.get());
                match &a.addrs {
                    VirtualAddrs::V4(addrs) => {
                        for (i, addr) in addrs.iter().enumerate() {
                            out.set_addr_v4(i, *addr);
                        }
                    }
                    VirtualAddrs::V6(addrs) => {
                        for (i, addr) in addrs.iter().enumerate() {
                            out.set_addr_v6(i, *addr);
                        }
                    }
                }
            }
        }
        out.fill_checksum(ip, checksum);
    }

    /// The protocol version.
    pub const fn version(&self) -> Version {
        match self {
            Repr::V2(_) => Version::V2,
            Repr::V3(_) => Version::V3,
        }
    }

    /// The family of the virtual addresses.
    pub const fn family(&self) -> Family {
        match self {
            Repr::V2(_) => Family::Ipv4,
            Repr::V3(a) => a.addrs.family(),
        }
    }

    /// The virtual router.
    pub const fn vrid(&self) -> Vrid {
        match self {
            Repr::V2(a) => a.vrid,
            Repr::V3(a) => a.vrid,
        }
    }

    /// The sender's priority.
    pub const fn priority(&self) -> Priority {
        match self {
            Repr::V2(a) => a.priority,
            Repr::V3(a) => a.priority,
        }
    }

    /// The advertisement interval the sender uses, converted by its version's unit.
    pub const fn advert_interval(&self) -> std::time::Duration {
        match self {
            Repr::V2(a) => a.advert_int.to_duration(),
            Repr::V3(a) => a.max_advert_int.to_duration(),
        }
    }

    /// The number of virtual addresses.
    pub fn addr_count(&self) -> u8 {
        match self {
            Repr::V2(a) => a.addrs.count(),
            Repr::V3(a) => a.addrs.count(),
        }
    }
}

// === impl Ipv4Meta ===

/// What the caller needs from the IPv4 header of a received advertisement.
///
/// IPv4 header (RFC 791 §3.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Version|  IHL  |Type of Service|          Total Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Identification        |Flags|      Fragment Offset    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Time to Live |    Protocol   |         Header Checksum       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       Source Address                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Destination Address                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Options                    |    Padding    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv4Meta {
    /// The sender; compared with the local address when priorities tie.
    pub src: Ipv4Addr,
    /// 224.0.0.18, or this router for unicast; part of the VRRPv3 pseudo-header.
    pub dst: Ipv4Addr,
    /// Must be 255 for multicast adverts (RFC 9568 §7.1); the caller checks it.
    pub ttl: u8,
}

mod ipv4_field {
    //! Byte offsets of the IPv4 header (RFC 791 §3.1).

    use std::ops::Range;

    /// Version and IHL.
    pub(super) const VER_IHL: usize = 0;
    /// Total Length.
    pub(super) const TOTAL_LEN: Range<usize> = 2..4;
    /// Flags and Fragment Offset.
    pub(super) const FLAGS_FRAG: Range<usize> = 6..8;
    /// Time to Live.
    pub(super) const TTL: usize = 8;
    /// Protocol.
    pub(super) const PROTOCOL: usize = 9;
    /// Source Address.
    pub(super) const SRC: Range<usize> = 12..16;
    /// Destination Address.
    pub(super) const DST: Range<usize> = 16..20;
}

impl Ipv4Meta {
    /// An IPv4 header without options.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Splits an IPv4 datagram, as a Linux raw socket returns it (Total Length in
    /// network order, header included), into its header facts and the VRRP message.
    ///
    /// Checks the version, the IHL, the total length, that it is not a fragment (the
    /// kernel reassembles before a raw socket sees it), and protocol 112. Bytes past
    /// the total length (link padding) are ignored. The header checksum is left to
    /// the kernel, which drops bad ones before delivery. Never panics.
    pub fn split(datagram: &[u8]) -> Result<(Ipv4Meta, &[u8]), DecodeError> {
        let have = datagram.len();
        if have < Ipv4Meta::MIN_HEADER_LEN {
            return Err(DecodeError::Truncated {
                need: Ipv4Meta::MIN_HEADER_LEN,
                have,
            });
        }
        let ver_ihl = datagram[ipv4_field::VER_IHL];
        if ver_ihl >> 4 != 4 {
            return Err(DecodeError::BadIpv4Header {
                reason: "version is not 4",
            });
        }
        let header_len = usize::from(ver_ihl & 0x0f) * 4;
        if header_len < Ipv4Meta::MIN_HEADER_LEN {
            return Err(DecodeError::BadIpv4Header {
                reason: "IHL below 5",
            });
        }
        if have < header_len {
            return Err(DecodeError::Truncated {
                need: header_len,
                have,
            });
        }
        let total = &datagram[ipv4_field::TOTAL_LEN];
        let total_len = usize::from(u16::from_be_bytes([total[0], total[1]]));
        if total_len < header_len {
            return Err(DecodeError::BadIpv4Header {
                reason: "total length below the header length",
            });
        }
        if have < total_len {
            return Err(DecodeError::Truncated {
                need: total_len,
                have,
            });
        }
        let frag = &datagram[ipv4_field::FLAGS_FRAG];
        // More Fragments set, or a non-zero offset (the reserved and DF bits may be set).
        if u16::from_be_bytes([frag[0], frag[1]]) & 0x3fff != 0 {
            return Err(DecodeError::BadIpv4Header {
                reason: "a fragment",
            });
        }
        let protocol = datagram[ipv4_field::PROTOCOL];
        if protocol != IP_PROTOCOL {
            return Err(DecodeError::BadProtocol(protocol));
        }
        let addr = |r: std::ops::Range<usize>| {
            let b = &datagram[r];
            Ipv4Addr::new(b[0], b[1], b[2], b[3])
        };
        let meta = Ipv4Meta {
            src: addr(ipv4_field::SRC),
            dst: addr(ipv4_field::DST),
            ttl: datagram[ipv4_field::TTL],
        };
        Ok((meta, &datagram[header_len..total_len]))
    }

    /// The addresses for the VRRPv3 pseudo-header.
    pub const fn ip_pair(&self) -> IpPair {
        IpPair::V4 {
            src: self.src,
            dst: self.dst,
        }
    }
}

/// Parses what an IPv4 raw socket of protocol 112 receives: the IPv4 header, then one
/// VRRP message, whose checksum is verified (nobody else checks it for IPv4).
///
/// To keep the header facts when the message is bad (to count errors per sender), or
/// to verify with another policy, use [`Ipv4Meta::split`] and [`Repr::from_bytes`].
/// Never panics.
pub fn parse_ipv4_datagram(datagram: &[u8]) -> Result<(Ipv4Meta, Repr), DecodeError> {
    let (meta, msg) = Ipv4Meta::split(datagram)?;
    let repr = Repr::from_bytes(msg, &meta.ip_pair(), Checksum::Verify)?;
    Ok((meta, repr))
}

// === checksums ===

/// The VRRPv3 checksum of `msg` sent over IPv4 from `src` to `dst`: the value for
/// its Checksum field. Bytes 6..8 of `msg` (the field itself) count as zero, so the
/// result does not depend on what they hold. The length in the pseudo-header is
/// `msg.len()` (its low 16 bits). Never panics.
pub fn checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
    !fold(sum_msg(pseudo_v4(src, dst, msg.len()), msg))
}

/// The VRRPv3 checksum of `msg` sent over IPv6 from `src` to `dst`: the value for
/// its Checksum field, computed as the kernel does with `IPV6_CHECKSUM`. Bytes 6..8 of
/// `msg` count as zero. Never panics.
pub fn checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    !fold(sum_msg(pseudo_v6(src, dst, msg.len()), msg))
}

/// The VRRPv2 checksum of `msg`: over the message alone, no pseudo-header. Bytes 6..8
/// of `msg` count as zero. Never panics.
pub fn checksum_v2(msg: &[u8]) -> u16 {
    !fold(sum_msg(0, msg))
}

/// The checksum `policy` wants for `msg`, or `None` when nobody here checks it.
fn expected_checksum(msg: &[u8], version: Version, ip: &IpPair, policy: Checksum) -> Option<u16> {
    match (policy, version, ip) {
        (Checksum::Ignore, _, _) => None,
        (Checksum::NoPseudoHeader, _, _) | (Checksum::Verify, Version::V2, _) => {
            Some(checksum_v2(msg))
        }
        (Checksum::Verify, _, IpPair::V4 { src, dst }) => Some(checksum_v4(*src, *dst, msg)),
        (Checksum::Verify, _, IpPair::V6 { src, dst }) => Some(checksum_v6(*src, *dst, msg)),
    }
}

/// Whether a received checksum is the wanted one. One's complement has two zeros:
/// a sender may write 0xffff where the sum asks for 0x0000 (RFC 1071 receivers sum the
/// whole message and accept both), so that pair matches too.
fn checksum_matches(got: u16, want: u16) -> bool {
    got == want || (want == 0 && got == 0xffff)
}

/// The sum of the IPv4 pseudo-header (RFC 768): src, dst, zero, protocol, length.
fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u64 {
    let sum = sum_words(0, &src.octets());
    let sum = sum_words(sum, &dst.octets());
    sum + u64::from(IP_PROTOCOL) + (len as u64 & 0xffff)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): src, dst, 32-bit length, next header.
fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> u64 {
    let sum = sum_words(0, &src.octets());
    let sum = sum_words(sum, &dst.octets());
    let len = len as u64 & 0xffff_ffff;
    sum + (len >> 16) + (len & 0xffff) + u64::from(IP_PROTOCOL)
}

/// Adds `msg` as big-endian 16-bit words with its checksum field (bytes 6..8) as zero.
fn sum_msg(sum: u64, msg: &[u8]) -> u64 {
    let split = msg.len().min(field::CHECKSUM.start);
    let sum = sum_words(sum, &msg[..split]);
    match msg.get(field::CHECKSUM.end..) {
        // 8 is even, so the words after the field stay aligned.
        Some(rest) => sum_words(sum, rest),
        None => sum,
    }
}

/// Adds big-endian 16-bit words; an odd last byte is padded with zero (RFC 1071).
fn sum_words(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds the carries back in (end-around carry).
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real keepalived 2.2.7 adverts, captured with tcpdump in a network namespace
    // (interface va, 198.18.0.2/24, fe80::d4f1:18ff:fe6f:cade), laid out as RFC rows.

    /// `vrrp_version 3`, VRID 51, priority 100, `advert_int 1`, VIP 198.18.0.100,
    /// multicast: the IPv4 header and the VRRPv3 message.
    const V3_V4_DATAGRAM: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, // IPv4, IHL 5, TOS 0xc0 (keepalived), total length 32
        0x00, 0x01, 0x00, 0x00, // id 1, no fragment
        0xff, 0x70, 0x14, 0x86, // TTL 255, protocol 112, header checksum
        198, 18, 0, 2, // source
        224, 0, 0, 18, // destination: the VRRP group
        0x31, 51, 100, 1, // version 3, type 1, VRID 51, priority 100, count 1
        0x00, 0x64, 0xfd, 0x4c, // rsvd 0, max adver int 100cs, checksum 0xfd4c
        198, 18, 0, 100, // the VIP
    ];

    /// The same instance sent to a unicast peer 198.18.0.3 (VRID 54, priority 90):
    /// keepalived puts the unicast destination in the pseudo-header.
    const V3_V4_UNICAST_DATAGRAM: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, //
        0x00, 0x01, 0x00, 0x00, //
        0xff, 0x70, 0x2e, 0x83, //
        198, 18, 0, 2, // source
        198, 18, 0, 3, // destination: the unicast peer
        0x31, 54, 90, 1, // version 3, type 1, VRID 54, priority 90, count 1
        0x00, 0x64, 0x21, 0x47, // max adver int 100cs, checksum 0x2147
        198, 18, 0, 100, //
    ];

    /// `vrrp_version 3`, VRID 52, priority 150, `advert_int 0.5`, VIPs fe80::1:52 and
    /// 2001:db8::100: the VRRP message as an IPv6 raw socket returns it.
    const V3_V6_MSG: [u8; 40] = [
        0x31, 52, 150, 2, // version 3, type 1, VRID 52, priority 150, count 2
        0x00, 0x32, 0x55, 0x9c, // max adver int 50cs, checksum 0x559c
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, 0x52, // fe80::1:52
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // 2001:db8::100
    ];
    const V3_V6_SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xd4f1, 0x18ff, 0xfe6f, 0xcade);

    /// `vrrp_version 2`, VRID 53, priority 200, `advert_int 2`, `auth_type PASS`,
    /// `auth_pass s3cret`, VIPs 198.18.0.100 and .101.
    const V2_PASS_DATAGRAM: [u8; 44] = [
        0x45, 0xc0, 0x00, 0x2c, // total length 44
        0x00, 0x01, 0x00, 0x00, //
        0xff, 0x70, 0x14, 0x7a, //
        198, 18, 0, 2, //
        224, 0, 0, 18, //
        0x21, 53, 200, 2, // version 2, type 1, VRID 53, priority 200, count 2
        0x01, 0x02, 0x4c, 0xbd, // auth type 1 (PASS), adver int 2s, checksum 0x4cbd
        198, 18, 0, 100, //
        198, 18, 0, 101, //
        b's', b'3', b'c', b'r', // authentication data: the password,
        b'e', b't', 0, 0, // zero-padded to 8 bytes
    ];

    fn src_v4() -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, 2)
    }

    fn mcast_v4() -> IpPair {
        IpPair::V4 {
            src: src_v4(),
            dst: MULTICAST_V4,
        }
    }

    fn v6_pair() -> IpPair {
        IpPair::V6 {
            src: V3_V6_SRC,
            dst: MULTICAST_V6,
        }
    }

    fn vrrp_part(datagram: &[u8]) -> &[u8] {
        &datagram[20..]
    }

    /// RFC 1071 written out the plain way, independent of the codec: 32-bit sum of
    /// 16-bit words, carries folded once at the end, complemented.
    fn reference_checksum(bytes: &[u8]) -> u16 {
        let mut padded = bytes.to_vec();
        if padded.len() % 2 == 1 {
            padded.push(0);
        }
        let mut sum: u32 = 0;
        for i in (0..padded.len()).step_by(2) {
            sum += (u32::from(padded[i]) << 8) | u32::from(padded[i + 1]);
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn zero_checksum_field(msg: &[u8]) -> Vec<u8> {
        let mut m = msg.to_vec();
        m[6] = 0;
        m[7] = 0;
        m
    }

    fn reference_v4(src: Ipv4Addr, dst: Ipv4Addr, msg: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 112]);
        bytes.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&zero_checksum_field(msg));
        reference_checksum(&bytes)
    }

    fn reference_v6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 112]);
        bytes.extend_from_slice(&zero_checksum_field(msg));
        reference_checksum(&bytes)
    }

    fn v3_v4_repr() -> Repr {
        Repr::V3(AdvertV3 {
            vrid: Vrid::new_unchecked(51),
            priority: Priority::new(100),
            max_advert_int: Centisecs::new_unchecked(100),
            addrs: VirtualAddrs::V4(
                AddrList::try_new(vec![Ipv4Addr::new(198, 18, 0, 100)]).unwrap(),
            ),
        })
    }

    fn v3_v6_repr() -> Repr {
        Repr::V3(AdvertV3 {
            vrid: Vrid::new_unchecked(52),
            priority: Priority::new(150),
            max_advert_int: Centisecs::new_unchecked(50),
            addrs: VirtualAddrs::V6(
                AddrList::try_new(vec![
                    "fe80::1:52".parse().unwrap(),
                    "2001:db8::100".parse().unwrap(),
                ])
                .unwrap(),
            ),
        })
    }

    fn v2_pass_repr() -> Repr {
        Repr::V2(AdvertV2 {
            vrid: Vrid::new_unchecked(53),
            priority: Priority::new(200),
            advert_int: Secs::new_unchecked(2),
            auth: Auth::Password(Password::try_new(b"s3cret").unwrap()),
            addrs: AddrList::try_new(vec![
                Ipv4Addr::new(198, 18, 0, 100),
                Ipv4Addr::new(198, 18, 0, 101),
            ])
            .unwrap(),
        })
    }

    /// Rewrites the checksum after a test changed a field, so the field is what fails.
    fn refill(msg: &mut [u8], ip: &IpPair) {
        let family = ip.family();
        let version = Packet::new_unchecked(&*msg, family).version();
        let value = expected_checksum(msg, version, ip, Checksum::Verify).unwrap();
        Packet::new_unchecked(msg, family).set_checksum(value);
    }

    // --- the captured checksums, against the independent reference ---

    #[test]
    fn captured_checksums_match_the_reference_and_the_helpers() {
        let m = vrrp_part(&V3_V4_DATAGRAM);
        assert_eq!(reference_v4(src_v4(), MULTICAST_V4, m), 0xfd4c);
        assert_eq!(checksum_v4(src_v4(), MULTICAST_V4, m), 0xfd4c);

        let m = vrrp_part(&V3_V4_UNICAST_DATAGRAM);
        let peer = Ipv4Addr::new(198, 18, 0, 3);
        assert_eq!(reference_v4(src_v4(), peer, m), 0x2147);
        assert_eq!(checksum_v4(src_v4(), peer, m), 0x2147);

        assert_eq!(reference_v6(V3_V6_SRC, MULTICAST_V6, &V3_V6_MSG), 0x559c);
        assert_eq!(checksum_v6(V3_V6_SRC, MULTICAST_V6, &V3_V6_MSG), 0x559c);

        let m = vrrp_part(&V2_PASS_DATAGRAM);
        assert_eq!(reference_checksum(&zero_checksum_field(m)), 0x4cbd);
        assert_eq!(checksum_v2(m), 0x4cbd);
    }

    #[test]
    fn checksum_helpers_ignore_the_field_and_never_panic_on_short_input() {
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        let want = checksum_v4(src_v4(), MULTICAST_V4, &m);
        m[6] = 0x12;
        m[7] = 0x34;
        assert_eq!(checksum_v4(src_v4(), MULTICAST_V4, &m), want);
        for n in 0..=m.len() {
            let part = &m[..n];
            assert_eq!(
                checksum_v2(part),
                reference_checksum(&zero_if_long(part)),
                "{n}"
            );
            let _ = checksum_v6(V3_V6_SRC, MULTICAST_V6, part);
        }
    }

    fn zero_if_long(part: &[u8]) -> Vec<u8> {
        let mut v = part.to_vec();
        for b in v.iter_mut().skip(6).take(2) {
            *b = 0;
        }
        v
    }

    // --- symmetric codec tests: deconstruct, construct, parse, emit ---

    #[test]
    fn deconstruct_v3_v4() {
        let p = Packet::new_checked(vrrp_part(&V3_V4_DATAGRAM), Family::Ipv4).unwrap();
        assert_eq!(p.version(), Version::V3);
        assert_eq!(p.msg_type(), MsgType::Advertisement);
        assert_eq!(p.vrid(), 51);
        assert_eq!(p.priority(), Priority::new(100));
        assert_eq!(p.addr_count(), 1);
        assert_eq!(p.v3_rsvd(), 0);
        assert_eq!(p.v3_max_advert_int(), 100);
        assert_eq!(p.checksum(), 0xfd4c);
        assert_eq!(p.msg_len(), 12);
        assert_eq!(
            p.addrs().collect::<Vec<_>>(),
            vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100))]
        );
    }

    #[test]
    fn construct_v3_v4() {
        let mut buf = [0xa5; 12];
        let mut p = Packet::new_unchecked(&mut buf[..], Family::Ipv4);
        p.set_version(Version::V3);
        p.set_msg_type(MsgType::Advertisement);
        p.set_vrid(51);
        p.set_priority(Priority::new(100));
        p.set_addr_count(1);
        p.set_v3_max_advert_int(100);
        p.set_addr_v4(0, Ipv4Addr::new(198, 18, 0, 100));
        p.fill_checksum(&mcast_v4(), Checksum::Verify);
        assert_eq!(&buf[..], vrrp_part(&V3_V4_DATAGRAM));
    }

    #[test]
    fn parse_v3_v4() {
        let (meta, repr) = parse_ipv4_datagram(&V3_V4_DATAGRAM).unwrap();
        assert_eq!(
            meta,
            Ipv4Meta {
                src: src_v4(),
                dst: MULTICAST_V4,
                ttl: 255
            }
        );
        assert_eq!(repr, v3_v4_repr());
        assert_eq!(repr.advert_interval(), std::time::Duration::from_secs(1));
        assert_eq!(repr.family(), Family::Ipv4);
    }

    #[test]
    fn emit_v3_v4() {
        let repr = v3_v4_repr();
        assert_eq!(repr.buffer_len(), 12);
        let mut buf = [0xa5; 12];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::Verify,
        );
        assert_eq!(&buf[..], vrrp_part(&V3_V4_DATAGRAM));
    }

    #[test]
    fn v3_v4_unicast_checksum_uses_the_unicast_destination() {
        let (meta, repr) = parse_ipv4_datagram(&V3_V4_UNICAST_DATAGRAM).unwrap();
        assert_eq!(meta.dst, Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(repr.vrid().get(), 54);
        let mut buf = [0xa5; 12];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &meta.ip_pair(),
            Checksum::Verify,
        );
        assert_eq!(&buf[..], vrrp_part(&V3_V4_UNICAST_DATAGRAM));
        // A pre-1.3.6 keepalived peer would have used 224.0.0.18 here instead.
        assert!(matches!(
            Repr::from_bytes(&buf, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::BadChecksum { got: 0x2147, .. })
        ));
    }

    #[test]
    fn deconstruct_v3_v6() {
        let p = Packet::new_checked(&V3_V6_MSG[..], Family::Ipv6).unwrap();
        assert_eq!(p.version(), Version::V3);
        assert_eq!(p.vrid(), 52);
        assert_eq!(p.priority().get(), 150);
        assert_eq!(p.addr_count(), 2);
        assert_eq!(p.v3_max_advert_int(), 50);
        assert_eq!(p.checksum(), 0x559c);
        assert_eq!(p.addr_v6(1), "2001:db8::100".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn construct_v3_v6() {
        let mut buf = [0xa5; 40];
        let mut p = Packet::new_unchecked(&mut buf[..], Family::Ipv6);
        p.set_version(Version::V3);
        p.set_msg_type(MsgType::Advertisement);
        p.set_vrid(52);
        p.set_priority(Priority::new(150));
        p.set_addr_count(2);
        p.set_v3_max_advert_int(50);
        p.set_addr_v6(0, "fe80::1:52".parse().unwrap());
        p.set_addr_v6(1, "2001:db8::100".parse().unwrap());
        p.fill_checksum(&v6_pair(), Checksum::Verify);
        assert_eq!(buf, V3_V6_MSG);
    }

    #[test]
    fn parse_and_emit_v3_v6() {
        for policy in [Checksum::Verify, Checksum::Ignore] {
            let repr = Repr::from_bytes(&V3_V6_MSG, &v6_pair(), policy).unwrap();
            assert_eq!(repr, v3_v6_repr());
        }
        assert_eq!(
            v3_v6_repr().advert_interval(),
            std::time::Duration::from_millis(500)
        );
        let mut buf = [0xa5; 40];
        v3_v6_repr().emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv6),
            &v6_pair(),
            Checksum::Verify,
        );
        assert_eq!(buf, V3_V6_MSG);
        // With IPV6_CHECKSUM the kernel fills it in: emit leaves 0.
        v3_v6_repr().emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv6),
            &v6_pair(),
            Checksum::Ignore,
        );
        assert_eq!(&buf[6..8], &[0, 0]);
        assert_eq!(buf[8..], V3_V6_MSG[8..]);
    }

    #[test]
    fn deconstruct_v2_pass() {
        let p = Packet::new_checked(vrrp_part(&V2_PASS_DATAGRAM), Family::Ipv4).unwrap();
        assert_eq!(p.version(), Version::V2);
        assert_eq!(p.msg_type(), MsgType::Advertisement);
        assert_eq!(p.vrid(), 53);
        assert_eq!(p.priority().get(), 200);
        assert_eq!(p.addr_count(), 2);
        assert_eq!(p.v2_auth_type(), AuthType::SimplePassword);
        assert_eq!(p.v2_advert_int(), 2);
        assert_eq!(p.checksum(), 0x4cbd);
        assert_eq!(p.addr_v4(1), Ipv4Addr::new(198, 18, 0, 101));
        assert_eq!(&p.v2_auth_data(), b"s3cret\0\0");
        assert_eq!(p.msg_len(), 24);
    }

    #[test]
    fn construct_v2_pass() {
        let mut buf = [0xa5; 24];
        let mut p = Packet::new_unchecked(&mut buf[..], Family::Ipv4);
        p.set_version(Version::V2);
        p.set_msg_type(MsgType::Advertisement);
        p.set_vrid(53);
        p.set_priority(Priority::new(200));
        p.set_addr_count(2);
        p.set_v2_auth_type(AuthType::SimplePassword);
        p.set_v2_advert_int(2);
        p.set_addr_v4(0, Ipv4Addr::new(198, 18, 0, 100));
        p.set_addr_v4(1, Ipv4Addr::new(198, 18, 0, 101));
        p.set_v2_auth_data(b"s3cret\0\0");
        p.fill_checksum(&mcast_v4(), Checksum::Verify);
        assert_eq!(&buf[..], vrrp_part(&V2_PASS_DATAGRAM));
    }

    #[test]
    fn parse_and_emit_v2_pass() {
        let (meta, repr) = parse_ipv4_datagram(&V2_PASS_DATAGRAM).unwrap();
        assert_eq!(meta.ttl, 255);
        assert_eq!(repr, v2_pass_repr());
        assert_eq!(repr.advert_interval(), std::time::Duration::from_secs(2));
        let mut buf = [0xa5; 24];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::Verify,
        );
        assert_eq!(&buf[..], vrrp_part(&V2_PASS_DATAGRAM));
    }

    #[test]
    fn v2_password_must_match_all_eight_bytes() {
        let Repr::V2(AdvertV2 {
            auth: Auth::Password(got),
            ..
        }) = parse_ipv4_datagram(&V2_PASS_DATAGRAM).unwrap().1
        else {
            panic!("expected a VRRPv2 PASS advert");
        };
        assert_eq!(got, Password::try_new(b"s3cret").unwrap());
        assert_ne!(got, Password::try_new(b"s3cre").unwrap());
        assert_ne!(got, Password::try_new(b"s3cret!").unwrap());
        // A sender that pads with something other than zeros does not match.
        let mut d = V2_PASS_DATAGRAM;
        d[43] = b'x';
        refill(&mut d[20..], &mcast_v4());
        let Repr::V2(a) = parse_ipv4_datagram(&d).unwrap().1 else {
            panic!("expected v2")
        };
        assert_ne!(
            a.auth,
            Auth::Password(Password::try_new(b"s3cret").unwrap())
        );
    }

    #[test]
    fn v2_without_auth_ignores_and_zeroes_the_auth_data() {
        let mut m = vrrp_part(&V2_PASS_DATAGRAM).to_vec();
        m[4] = 0; // auth type none; the old password stays in the data
        refill(&mut m, &mcast_v4());
        let repr = Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify).unwrap();
        let Repr::V2(a) = &repr else {
            panic!("expected v2")
        };
        assert_eq!(a.auth, Auth::None);
        let mut buf = [0xa5; 24];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::Verify,
        );
        assert_eq!(&buf[16..], &[0; 8]);
    }

    #[test]
    fn keepalived_resign_advert_parses_with_priority_zero() {
        let mut d = V3_V4_DATAGRAM;
        d[22] = 0; // priority 0, as keepalived sends on SIGTERM
        d[26..28].copy_from_slice(&0x614d_u16.to_be_bytes()); // its captured checksum
        let (_, repr) = parse_ipv4_datagram(&d).unwrap();
        assert!(repr.priority().is_resign());
    }

    #[test]
    fn emit_writes_exactly_buffer_len_bytes() {
        for (repr, ip) in [
            (v3_v4_repr(), mcast_v4()),
            (v3_v6_repr(), v6_pair()),
            (v2_pass_repr(), mcast_v4()),
        ] {
            let len = repr.buffer_len();
            let mut buf = vec![0xa5; len + 7];
            repr.emit(
                &mut Packet::new_unchecked(&mut buf[..], repr.family()),
                &ip,
                Checksum::Verify,
            );
            assert!(buf[len..].iter().all(|&b| b == 0xa5));
            assert_eq!(
                Repr::from_bytes(&buf[..len], &ip, Checksum::Verify),
                Ok(repr)
            );
        }
    }

    #[test]
    #[should_panic(expected = "Repr::buffer_len")]
    fn emit_panics_only_on_a_short_buffer() {
        let mut buf = [0; 11];
        v3_v4_repr().emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::Verify,
        );
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt_and_zero_on_send() {
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[4] |= 0xf0;
        refill(&mut m, &mcast_v4());
        assert_eq!(Packet::new_unchecked(&m[..], Family::Ipv4).v3_rsvd(), 0x0f);
        let repr = Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify).unwrap();
        assert_eq!(repr, v3_v4_repr());
        let mut buf = [0xa5; 12];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::Verify,
        );
        assert_eq!(&buf[..], vrrp_part(&V3_V4_DATAGRAM));
    }

    #[test]
    fn count_zero_is_accepted_as_keepalived_sends_it() {
        let repr = Repr::V3(AdvertV3 {
            vrid: Vrid::new_unchecked(9),
            priority: Priority::DEFAULT,
            max_advert_int: Centisecs::DEFAULT,
            addrs: VirtualAddrs::V4(AddrList::empty()),
        });
        let mut buf = [0xa5; 8];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::Verify,
        );
        assert_eq!(buf[3], 0);
        assert_eq!(
            Repr::from_bytes(&buf, &mcast_v4(), Checksum::Verify),
            Ok(repr)
        );
    }

    #[test]
    fn checksum_policies() {
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[7] ^= 0x01;
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::BadChecksum {
                got: 0xfd4d,
                want: 0xfd4c
            })
        );
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Ignore),
            Ok(v3_v4_repr())
        );

        // The v3_checksum_as_v2 dialect: the message alone.
        let repr = v3_v4_repr();
        let mut buf = [0; 12];
        repr.emit(
            &mut Packet::new_unchecked(&mut buf[..], Family::Ipv4),
            &mcast_v4(),
            Checksum::NoPseudoHeader,
        );
        assert_eq!(
            u16::from_be_bytes([buf[6], buf[7]]),
            reference_checksum(&zero_checksum_field(&buf))
        );
        assert_eq!(
            Repr::from_bytes(&buf, &mcast_v4(), Checksum::NoPseudoHeader),
            Ok(repr)
        );
        assert!(matches!(
            Repr::from_bytes(&buf, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::BadChecksum { .. })
        ));
    }

    #[test]
    fn negative_zero_checksum_is_accepted() {
        // Find a message whose checksum is 0x0000, then send it as 0xffff (one's
        // complement -0): an RFC 1071 receiver (keepalived, the kernel) accepts both.
        let mut m = vrrp_part(&V2_PASS_DATAGRAM).to_vec();
        let found = (0..=u16::MAX).find(|&v| {
            m[18..20].copy_from_slice(&v.to_be_bytes()); // inside the password
            checksum_v2(&m) == 0
        });
        let v = found.expect("some value makes the checksum zero");
        m[18..20].copy_from_slice(&v.to_be_bytes());
        m[6..8].copy_from_slice(&0xffff_u16.to_be_bytes());
        assert!(Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify).is_ok());
        m[6..8].copy_from_slice(&0x0000_u16.to_be_bytes());
        assert!(Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify).is_ok());
    }

    // --- malformed input ---

    #[test]
    fn truncated_at_every_length() {
        let cases: [(&[u8], IpPair); 3] = [
            (vrrp_part(&V3_V4_DATAGRAM), mcast_v4()),
            (&V3_V6_MSG, v6_pair()),
            (vrrp_part(&V2_PASS_DATAGRAM), mcast_v4()),
        ];
        for (msg, ip) in cases {
            for n in 0..msg.len() {
                let got = Repr::from_bytes(&msg[..n], &ip, Checksum::Verify);
                let want = if n < HEADER_LEN {
                    DecodeError::Truncated { need: 8, have: n }
                } else {
                    DecodeError::AddressCount {
                        count: msg[3],
                        need: msg.len(),
                        have: n,
                    }
                };
                assert_eq!(got, Err(want), "{n} bytes");
                let checked = Packet::new_checked(&msg[..n], ip.family()).map(|_| ());
                assert_eq!(checked, Err(want), "{n} bytes");
            }
        }
        for d in [&V3_V4_DATAGRAM[..], &V2_PASS_DATAGRAM[..]] {
            for n in 0..d.len() {
                let got = parse_ipv4_datagram(&d[..n]);
                let need = if n < 20 { 20 } else { d.len() };
                assert_eq!(
                    got,
                    Err(DecodeError::Truncated { need, have: n }),
                    "{n} bytes"
                );
            }
        }
    }

    #[test]
    fn wrong_version() {
        for nibble in [0u8, 1, 4, 15] {
            let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
            m[0] = (nibble << 4) | 1;
            assert_eq!(
                Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
                Err(DecodeError::BadVersion(nibble))
            );
        }
        // A v3 message announced as v2 is too short for v2's auth data.
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[0] = 0x21;
        assert!(matches!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::AddressCount {
                need: 20,
                have: 12,
                ..
            })
        ));
    }

    #[test]
    fn wrong_type() {
        for t in [0u8, 2, 15] {
            let mut m = V3_V6_MSG;
            m[0] = 0x30 | t;
            assert_eq!(
                Repr::from_bytes(&m, &v6_pair(), Checksum::Ignore),
                Err(DecodeError::BadType(t))
            );
        }
    }

    #[test]
    fn bad_checksum_reports_both_values() {
        let mut m = vrrp_part(&V2_PASS_DATAGRAM).to_vec();
        m[9] ^= 0xff; // corrupt an address
        let want = reference_checksum(&zero_checksum_field(&m));
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::BadChecksum { got: 0x4cbd, want })
        );
        let mut m = V3_V6_MSG;
        m[39] ^= 1;
        let want = reference_v6(V3_V6_SRC, MULTICAST_V6, &m);
        assert_eq!(
            Repr::from_bytes(&m, &v6_pair(), Checksum::Verify),
            Err(DecodeError::BadChecksum { got: 0x559c, want })
        );
    }

    #[test]
    fn count_mismatch() {
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[3] = 2;
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::AddressCount {
                count: 2,
                need: 16,
                have: 12
            })
        );
        m[3] = 0;
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::AddressCount {
                count: 0,
                need: 8,
                have: 12
            })
        );
        // Trailing bytes (a keepalived 2.4 auth_hmac trailer, say) are refused too.
        let mut long = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        long.extend_from_slice(&[0; 4]);
        assert!(matches!(
            Repr::from_bytes(&long, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::AddressCount {
                count: 1,
                need: 12,
                have: 16
            })
        ));
    }

    #[test]
    fn v3_ipv6_count_against_length() {
        // Count 3 but two IPv6 addresses.
        let mut m = V3_V6_MSG;
        m[3] = 3;
        assert_eq!(
            Repr::from_bytes(&m, &v6_pair(), Checksum::Ignore),
            Err(DecodeError::AddressCount {
                count: 3,
                need: 56,
                have: 40
            })
        );
        // Count 1 but two IPv6 addresses.
        m[3] = 1;
        assert_eq!(
            Repr::from_bytes(&m, &v6_pair(), Checksum::Ignore),
            Err(DecodeError::AddressCount {
                count: 1,
                need: 24,
                have: 40
            })
        );
        // Read as IPv4, count 2 means 8 address bytes, not 32.
        let ip = IpPair::V4 {
            src: src_v4(),
            dst: MULTICAST_V4,
        };
        assert_eq!(
            Repr::from_bytes(&V3_V6_MSG, &ip, Checksum::Ignore),
            Err(DecodeError::AddressCount {
                count: 2,
                need: 16,
                have: 40
            })
        );
    }

    #[test]
    fn interval_zero() {
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[4] = 0;
        m[5] = 0;
        refill(&mut m, &mcast_v4());
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::ZeroInterval)
        );
        let mut m = vrrp_part(&V2_PASS_DATAGRAM).to_vec();
        m[5] = 0;
        refill(&mut m, &mcast_v4());
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::ZeroInterval)
        );
        // Only the reserved bits set: still zero.
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[4] = 0xf0;
        m[5] = 0;
        refill(&mut m, &mcast_v4());
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::ZeroInterval)
        );
    }

    #[test]
    fn vrid_zero() {
        let mut m = vrrp_part(&V3_V4_DATAGRAM).to_vec();
        m[1] = 0;
        refill(&mut m, &mcast_v4());
        assert_eq!(
            Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::BadVrid)
        );
    }

    #[test]
    fn v2_auth_types() {
        for (t, want) in [
            (2u8, Err(DecodeError::UnsupportedAuthType(2))),
            (3, Err(DecodeError::UnsupportedAuthType(3))),
            (255, Err(DecodeError::UnsupportedAuthType(255))),
        ] {
            let mut m = vrrp_part(&V2_PASS_DATAGRAM).to_vec();
            m[4] = t;
            refill(&mut m, &mcast_v4());
            assert_eq!(Repr::from_bytes(&m, &mcast_v4(), Checksum::Verify), want);
            assert_eq!(
                Packet::new_unchecked(&m[..], Family::Ipv4).v2_auth_type(),
                AuthType::from(t)
            );
        }
        assert_eq!(AuthType::from(2), AuthType::IpAh);
        assert_eq!(u8::from(AuthType::Unknown(9)), 9);
    }

    #[test]
    fn v2_over_ipv6_is_refused() {
        let mut m = vec![0x21, 1, 100, 1, 0, 1, 0, 0];
        m.extend_from_slice(&[0; 16]);
        assert_eq!(
            Repr::from_bytes(&m, &v6_pair(), Checksum::Ignore),
            Err(DecodeError::BadAddressFamily)
        );
        // And a view whose family disagrees with the IpPair.
        let p = Packet::new_unchecked(vrrp_part(&V3_V4_DATAGRAM), Family::Ipv6);
        assert_eq!(
            Repr::parse(&p, &mcast_v4(), Checksum::Verify),
            Err(DecodeError::BadAddressFamily)
        );
    }

    #[test]
    fn ipv4_header_checks() {
        let mut d = V3_V4_DATAGRAM;
        d[0] = 0x65;
        assert!(matches!(
            parse_ipv4_datagram(&d),
            Err(DecodeError::BadIpv4Header { .. })
        ));
        let mut d = V3_V4_DATAGRAM;
        d[0] = 0x44;
        assert!(matches!(
            parse_ipv4_datagram(&d),
            Err(DecodeError::BadIpv4Header { .. })
        ));
        let mut d = V3_V4_DATAGRAM;
        d[3] = 19; // total length below the header
        assert!(matches!(
            parse_ipv4_datagram(&d),
            Err(DecodeError::BadIpv4Header { .. })
        ));
        let mut d = V3_V4_DATAGRAM;
        d[6] = 0x20; // More Fragments
        assert!(matches!(
            parse_ipv4_datagram(&d),
            Err(DecodeError::BadIpv4Header { .. })
        ));
        let mut d = V3_V4_DATAGRAM;
        d[6] = 0x40; // Don't Fragment is fine
        assert!(parse_ipv4_datagram(&d).is_ok());
        let mut d = V3_V4_DATAGRAM;
        d[9] = 51; // IPsec AH
        assert_eq!(parse_ipv4_datagram(&d), Err(DecodeError::BadProtocol(51)));
        let mut d = V3_V4_DATAGRAM;
        d[3] = 40; // total length beyond the bytes
        assert_eq!(
            parse_ipv4_datagram(&d),
            Err(DecodeError::Truncated { need: 40, have: 32 })
        );
        let mut d = V3_V4_DATAGRAM;
        d[8] = 64; // the TTL is reported, not judged
        assert_eq!(parse_ipv4_datagram(&d).unwrap().0.ttl, 64);
    }

    #[test]
    fn ipv4_options_and_link_padding() {
        // IHL 6: one 4-byte option (Router Alert), total length 36.
        let mut d = V3_V4_DATAGRAM[..20].to_vec();
        d[0] = 0x46;
        d[3] = 36;
        d.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        d.extend_from_slice(vrrp_part(&V3_V4_DATAGRAM));
        // Ethernet padding after the datagram is ignored.
        d.extend_from_slice(&[0; 10]);
        let (meta, repr) = parse_ipv4_datagram(&d).unwrap();
        assert_eq!(meta.src, src_v4());
        assert_eq!(repr, v3_v4_repr());
    }

    #[test]
    fn unknown_wire_values_are_kept() {
        assert_eq!(Version::from(7), Version::Unknown(7));
        assert_eq!(u8::from(Version::V3), 3);
        assert_eq!(MsgType::from(1), MsgType::Advertisement);
        assert_eq!(MsgType::from(2), MsgType::Unknown(2));
    }

    #[test]
    fn addr_list_is_bounded_by_the_count_field() {
        assert!(AddrList::try_new(vec![Ipv4Addr::LOCALHOST; 255]).is_ok());
        assert_eq!(
            AddrList::try_new(vec![Ipv4Addr::LOCALHOST; 256]),
            Err(RangeError::TooManyAddrs { count: 256 })
        );
        assert!(serde_json::from_str::<AddrList<Ipv4Addr>>(
            &serde_json::to_string(&vec!["1.2.3.4"; 256]).unwrap()
        )
        .is_err());
    }

    #[test]
    fn repr_and_errors_serialize_for_golden_files() {
        for repr in [v3_v4_repr(), v3_v6_repr(), v2_pass_repr()] {
            let json = serde_json::to_string(&repr).unwrap();
            assert_eq!(serde_json::from_str::<Repr>(&json).unwrap(), repr, "{json}");
        }
        let err = serde_json::to_string(&DecodeError::BadChecksum { got: 1, want: 2 }).unwrap();
        assert_eq!(err, r#"{"BadChecksum":{"got":1,"want":2}}"#);
        assert_eq!(
            serde_json::to_string(&DecodeError::BadVrid).unwrap(),
            r#""BadVrid""#
        );
    }
}
