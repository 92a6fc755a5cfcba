//! The IPv4 header an IPv4 raw socket of protocol 112 delivers with each message.

use super::*;

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
