//! The VRRP checksums: v3 over the IPv4/IPv6 pseudo-header, v2 over the message.

use super::*;

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
pub(super) fn expected_checksum(
    msg: &[u8],
    version: Version,
    ip: &IpPair,
    policy: Checksum,
) -> Option<u16> {
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
pub(super) fn checksum_matches(got: u16, want: u16) -> bool {
    got == want || (want == 0 && got == 0xffff)
}

/// The sum of the IPv4 pseudo-header (RFC 768): src, dst, zero, protocol, length.
pub(super) fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u64 {
    let sum = sum_words(0, &src.octets());
    let sum = sum_words(sum, &dst.octets());
    sum + u64::from(IP_PROTOCOL) + (len as u64 & 0xffff)
}

/// The sum of the IPv6 pseudo-header (RFC 8200 §8.1): src, dst, 32-bit length, next header.
pub(super) fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> u64 {
    let sum = sum_words(0, &src.octets());
    let sum = sum_words(sum, &dst.octets());
    let len = len as u64 & 0xffff_ffff;
    sum + (len >> 16) + (len & 0xffff) + u64::from(IP_PROTOCOL)
}

/// Adds `msg` as big-endian 16-bit words with its checksum field (bytes 6..8) as zero.
pub(super) fn sum_msg(sum: u64, msg: &[u8]) -> u64 {
    let split = msg.len().min(field::CHECKSUM.start);
    let sum = sum_words(sum, &msg[..split]);
    match msg.get(field::CHECKSUM.end..) {
        // 8 is even, so the words after the field stay aligned.
        Some(rest) => sum_words(sum, rest),
        None => sum,
    }
}

/// Adds big-endian 16-bit words; an odd last byte is padded with zero (RFC 1071).
pub(super) fn sum_words(mut sum: u64, bytes: &[u8]) -> u64 {
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
pub(super) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
