//! One received datagram as the election reads it: the checksum dialect of the
//! instance's version, keepalived's old unicast checksum, and a one-entry cache for
//! the repeats a Backup hears 100 times a second.
//!
//! The socket hands over the VRRP message with its IP source, destination and TTL /
//! hop limit; [`Parser::parse`] turns that into what the machine's
//! [`Received`](crate::vrrp::machine::Received) carries. [`policy`] is the same
//! choice for sending, so what is sent and what is accepted cannot disagree.

use std::net::IpAddr;

use super::{Checksum, DecodeError, IpPair, Repr, Version, MULTICAST_V4};

/// The pseudo-header and checksum policy of a message between `src` and `dst` for
/// an instance of `version`: VRRPv3 over the IPv4/IPv6 pseudo-header (the socket
/// sets no `IPV6_CHECKSUM`, so the codec does it for both), VRRPv2 over the message
/// alone.
pub fn policy(version: Version, src: IpAddr, dst: IpAddr) -> (IpPair, Checksum) {
    let policy = match version {
        Version::V2 => Checksum::NoPseudoHeader,
        _ => Checksum::Verify,
    };
    (ip_pair(src, dst), policy)
}

/// The two addresses as an [`IpPair`]. Mixed families cannot arrive on one socket;
/// if they do, the pair is built from the source alone (the checksum then fails and
/// the message is dropped as undecodable).
pub fn ip_pair(src: IpAddr, dst: IpAddr) -> IpPair {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 { src, dst },
        (IpAddr::V4(src), _) => IpPair::V4 { src, dst: src },
        (IpAddr::V6(src), _) => IpPair::V6 { src, dst: src },
    }
}

/// Decodes one received message for an instance of `version`. A VRRPv3 IPv4 unicast
/// advert whose checksum fails is tried once more with the multicast group in the
/// pseudo-header, as keepalived before 1.3.6 (and with `old_unicast_checksum`)
/// computes it; keepalived retries the same way. Never panics.
pub fn parse(version: Version, msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Repr, DecodeError> {
    let (pair, checksum) = policy(version, src, dst);
    let first = Repr::from_bytes(msg, &pair, checksum);
    match (&first, pair) {
        (Err(DecodeError::BadChecksum { .. }), IpPair::V4 { src, dst })
            if dst != MULTICAST_V4 && checksum == Checksum::Verify =>
        {
            let old = IpPair::V4 {
                src,
                dst: MULTICAST_V4,
            };
            Repr::from_bytes(msg, &old, Checksum::Verify).or(first)
        }
        _ => first,
    }
}

/// [`parse`] with the last result kept: decoding is a pure function of the bytes, the
/// two addresses and the version, and a Backup at 10 ms adverts hears the same
/// message 100 times a second.
#[derive(Debug, Clone)]
pub struct Parser {
    version: Version,
    last: Option<Last>,
}

#[derive(Debug, Clone)]
struct Last {
    bytes: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    result: Result<Repr, DecodeError>,
}

impl Parser {
    /// A parser for an instance of `version`.
    pub fn new(version: Version) -> Parser {
        Parser {
            version,
            last: None,
        }
    }

    /// The version it decodes for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Decodes `msg` from `src` to `dst` (see [`parse`]).
    pub fn parse(&mut self, msg: &[u8], src: IpAddr, dst: IpAddr) -> Result<Repr, DecodeError> {
        if let Some(last) = &self.last {
            if last.src == src && last.dst == dst && last.bytes == msg {
                return last.result.clone();
            }
        }
        let result = parse(self.version, msg, src, dst);
        match &mut self.last {
            Some(last) => {
                last.bytes.clear();
                last.bytes.extend_from_slice(msg);
                last.src = src;
                last.dst = dst;
                last.result = result.clone();
            }
            None => {
                self.last = Some(Last {
                    bytes: msg.to_vec(),
                    src,
                    dst,
                    result: result.clone(),
                })
            }
        }
        result
    }

    /// Starts decoding for `version` (a reload), forgetting the cached result.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::vrrp::packet::{AddrList, AdvertV2, AdvertV3, Auth, Packet, VirtualAddrs};
    use crate::vrrp::units::{Centisecs, Priority, Secs, Vrid};

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);

    fn v3() -> Repr {
        Repr::V3(AdvertV3 {
            vrid: Vrid::new_unchecked(51),
            priority: Priority::new(150),
            max_advert_int: Centisecs::new_unchecked(100),
            addrs: VirtualAddrs::V4(AddrList::try_new(vec![VIP]).unwrap()),
        })
    }

    fn emit(repr: &Repr, pair: IpPair, checksum: Checksum) -> Vec<u8> {
        let mut msg = vec![0u8; repr.buffer_len()];
        repr.emit(
            &mut Packet::new_unchecked(&mut msg[..], repr.family()),
            &pair,
            checksum,
        );
        msg
    }

    #[test]
    fn what_is_sent_is_what_is_accepted_for_each_version_and_destination() {
        let v2 = Repr::V2(AdvertV2 {
            vrid: Vrid::new_unchecked(51),
            priority: Priority::new(100),
            advert_int: Secs::new_unchecked(1),
            auth: Auth::None,
            addrs: AddrList::try_new(vec![VIP]).unwrap(),
        });
        for (version, repr) in [(Version::V3, v3()), (Version::V2, v2)] {
            for dst in [IpAddr::V4(MULTICAST_V4), IpAddr::V4(B)] {
                let (pair, checksum) = policy(version, IpAddr::V4(A), dst);
                let msg = emit(&repr, pair, checksum);
                assert_eq!(parse(version, &msg, IpAddr::V4(A), dst), Ok(repr.clone()));
            }
        }
    }

    #[test]
    fn an_old_keepalived_unicast_checksum_is_accepted_and_a_wrong_one_is_not() {
        let repr = v3();
        // keepalived < 1.3.6 sums the multicast group into a unicast advert.
        let old = emit(
            &repr,
            IpPair::V4 {
                src: A,
                dst: MULTICAST_V4,
            },
            Checksum::Verify,
        );
        assert_eq!(
            parse(Version::V3, &old, IpAddr::V4(A), IpAddr::V4(B)),
            Ok(repr.clone())
        );
        // Only for unicast: the retry is the multicast pseudo-header itself.
        let other = emit(&repr, IpPair::V4 { src: A, dst: VIP }, Checksum::Verify);
        assert!(matches!(
            parse(Version::V3, &other, IpAddr::V4(A), IpAddr::V4(B)),
            Err(DecodeError::BadChecksum { .. })
        ));
        assert!(matches!(
            parse(Version::V3, &other, IpAddr::V4(A), IpAddr::V4(MULTICAST_V4)),
            Err(DecodeError::BadChecksum { .. })
        ));
        // VRRPv2 has no pseudo-header, so there is nothing to retry.
        assert!(parse(Version::V2, &old, IpAddr::V4(A), IpAddr::V4(B)).is_err());
    }

    #[test]
    fn mixed_families_fail_the_checksum_instead_of_panicking() {
        let repr = v3();
        let msg = emit(&repr, IpPair::V4 { src: A, dst: B }, Checksum::Verify);
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert!(parse(Version::V3, &msg, IpAddr::V4(A), v6).is_err());
        assert!(parse(Version::V3, &msg, v6, IpAddr::V4(A)).is_err());
    }

    #[test]
    fn the_parser_caches_one_result_keyed_by_bytes_and_addresses() {
        let repr = v3();
        let (pair, checksum) = policy(Version::V3, IpAddr::V4(A), IpAddr::V4(MULTICAST_V4));
        let msg = emit(&repr, pair, checksum);
        let mut parser = Parser::new(Version::V3);
        let multicast = IpAddr::V4(MULTICAST_V4);
        assert_eq!(
            parser.parse(&msg, IpAddr::V4(A), multicast),
            Ok(repr.clone())
        );
        assert_eq!(
            parser.parse(&msg, IpAddr::V4(A), multicast),
            Ok(repr.clone())
        );
        // Another source: the pseudo-header differs, so the checksum fails.
        assert!(parser.parse(&msg, IpAddr::V4(B), multicast).is_err());
        assert_eq!(parser.parse(&msg, IpAddr::V4(A), multicast), Ok(repr));
        // Another version decodes the same bytes by its own rules.
        parser.set_version(Version::V2);
        assert!(parser.parse(&msg, IpAddr::V4(A), multicast).is_err());
        assert_eq!(parser.version(), Version::V2);
    }
}
