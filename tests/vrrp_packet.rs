//! Property tests of the VRRP codec: every valid advertisement survives emit then
//! parse unchanged, emitted bytes survive parse then emit unchanged, and no input
//! (random bytes, mutated valid messages, random IPv4 datagrams) makes a parser panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use apivip::vrrp::packet::{
    checksum_v2, checksum_v4, checksum_v6, parse_ipv4_datagram, AddrList, AdvertV2, AdvertV3, Auth,
    Checksum, DecodeError, Family, IpPair, Ipv4Meta, Packet, Repr, VirtualAddrs, MAX_ADDRS,
};
use apivip::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};
use proptest::prelude::*;

// === strategies ===

fn vrid() -> impl Strategy<Value = Vrid> {
    (1..=255u8).prop_map(Vrid::new_unchecked)
}

fn priority() -> impl Strategy<Value = Priority> {
    any::<u8>().prop_map(Priority::new)
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> + Clone {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> + Clone {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

/// Mostly short lists, as deployed; sometimes up to the 255 the Count field allows.
fn addr_list<A: std::fmt::Debug + Clone>(
    addr: impl Strategy<Value = A> + Clone,
) -> impl Strategy<Value = AddrList<A>> {
    prop_oneof![
        4 => prop::collection::vec(addr.clone(), 0..=4),
        1 => prop::collection::vec(addr, 0..=MAX_ADDRS),
    ]
    .prop_map(|v| AddrList::try_new(v).expect("at most MAX_ADDRS"))
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::None),
        prop::collection::vec(any::<u8>(), 1..=8)
            .prop_map(|p| Auth::Password(Password::try_new(&p).expect("1 to 8 bytes"))),
        // Any 8 bytes may arrive on the wire, trailing non-zero bytes included.
        any::<[u8; 8]>().prop_map(|p| Auth::Password(Password::from_wire(p))),
    ]
}

fn advert_v2() -> impl Strategy<Value = Repr> {
    (vrid(), priority(), 1..=255u8, auth(), addr_list(ipv4())).prop_map(
        |(vrid, priority, secs, auth, addrs)| {
            Repr::V2(AdvertV2 {
                vrid,
                priority,
                advert_int: Secs::new_unchecked(secs),
                auth,
                addrs,
            })
        },
    )
}

fn advert_v3() -> impl Strategy<Value = Repr> {
    let addrs = prop_oneof![
        addr_list(ipv4()).prop_map(VirtualAddrs::V4),
        addr_list(ipv6()).prop_map(VirtualAddrs::V6),
    ];
    (vrid(), priority(), 1..=4095u16, addrs).prop_map(|(vrid, priority, cs, addrs)| {
        Repr::V3(AdvertV3 {
            vrid,
            priority,
            max_advert_int: Centisecs::new_unchecked(cs),
            addrs,
        })
    })
}

/// A valid advertisement with source and destination of its family.
fn advert_with_ip() -> impl Strategy<Value = (Repr, IpPair)> {
    let v4 = (ipv4(), ipv4()).prop_map(|(src, dst)| IpPair::V4 { src, dst });
    let v6 = (ipv6(), ipv6()).prop_map(|(src, dst)| IpPair::V6 { src, dst });
    (prop_oneof![advert_v2(), advert_v3()], v4, v6).prop_map(|(repr, v4, v6)| {
        let ip = match repr.family() {
            Family::Ipv4 => v4,
            Family::Ipv6 => v6,
        };
        (repr, ip)
    })
}

fn ip_pair() -> impl Strategy<Value = IpPair> {
    prop_oneof![
        (ipv4(), ipv4()).prop_map(|(src, dst)| IpPair::V4 { src, dst }),
        (ipv6(), ipv6()).prop_map(|(src, dst)| IpPair::V6 { src, dst }),
    ]
}

fn policy() -> impl Strategy<Value = Checksum> {
    prop_oneof![
        Just(Checksum::Verify),
        Just(Checksum::Ignore),
        Just(Checksum::NoPseudoHeader)
    ]
}

/// One way to damage a message.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Set { at: usize, value: u8 },
    Truncate { to: usize },
    Append { bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|to| Mutation::Truncate { to }),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(|bytes| Mutation::Append { bytes }),
    ]
}

fn apply(msg: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        match m {
            Mutation::Flip { at, mask } if !msg.is_empty() => {
                let i = at % msg.len();
                msg[i] ^= mask;
            }
            Mutation::Set { at, value } if !msg.is_empty() => {
                let i = at % msg.len();
                msg[i] = *value;
            }
            Mutation::Truncate { to } => msg.truncate(to % (msg.len() + 1)),
            Mutation::Append { bytes } => msg.extend_from_slice(bytes),
            _ => {}
        }
    }
}

// === helpers ===

fn emit(repr: &Repr, ip: &IpPair, policy: Checksum) -> Vec<u8> {
    let mut buf = vec![0xa5; repr.buffer_len()];
    repr.emit(
        &mut Packet::new_unchecked(&mut buf[..], repr.family()),
        ip,
        policy,
    );
    buf
}

/// An IPv4 header around `msg`, as a raw socket returns it.
fn ipv4_datagram(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, msg: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + msg.len()).expect("fits");
    let mut d = vec![0x45, 0xc0];
    d.extend_from_slice(&total.to_be_bytes());
    d.extend_from_slice(&[0, 1, 0, 0, ttl, 112, 0, 0]);
    d.extend_from_slice(&src.octets());
    d.extend_from_slice(&dst.octets());
    d.extend_from_slice(msg);
    d
}

/// Reads every field a checked view offers; it must not panic.
fn read_all(p: &Packet<&[u8]>) {
    let _ = (
        p.version(),
        p.msg_type(),
        p.vrid(),
        p.priority(),
        p.checksum(),
    );
    let _ = (
        p.v2_auth_type(),
        p.v2_advert_int(),
        p.v3_rsvd(),
        p.v3_max_advert_int(),
    );
    let _ = p.addrs().count();
    if p.version() == apivip::vrrp::packet::Version::V2 {
        let _ = p.v2_auth_data();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// parse(emit(repr)) == repr, under every policy that round-trips.
    #[test]
    fn parse_of_emit_is_identity((repr, ip) in advert_with_ip()) {
        for policy in [Checksum::Verify, Checksum::NoPseudoHeader, Checksum::Ignore] {
            let bytes = emit(&repr, &ip, policy);
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert_eq!(Repr::from_bytes(&bytes, &ip, policy), Ok(repr.clone()));
        }
    }

    /// emit(parse(bytes)) == bytes for the bytes emit produces.
    #[test]
    fn emit_of_parse_is_identity((repr, ip) in advert_with_ip()) {
        let bytes = emit(&repr, &ip, Checksum::Verify);
        let parsed = Repr::from_bytes(&bytes, &ip, Checksum::Verify).unwrap();
        prop_assert_eq!(emit(&parsed, &ip, Checksum::Verify), bytes);
    }

    /// The checksum written is the one the public helpers compute for that message.
    #[test]
    fn emitted_checksum_matches_the_helpers((repr, ip) in advert_with_ip()) {
        let bytes = emit(&repr, &ip, Checksum::Verify);
        let field = u16::from_be_bytes([bytes[6], bytes[7]]);
        let want = match (&repr, ip) {
            (Repr::V2(_), _) => checksum_v2(&bytes),
            (_, IpPair::V4 { src, dst }) => checksum_v4(src, dst, &bytes),
            (_, IpPair::V6 { src, dst }) => checksum_v6(src, dst, &bytes),
        };
        prop_assert_eq!(field, want);
    }

    /// IPv4 datagrams round-trip through the raw-socket parser, TTL reported.
    #[test]
    fn ipv4_datagrams_round_trip(
        (repr, _) in advert_with_ip(), src in ipv4(), dst in ipv4(), ttl in any::<u8>(),
    ) {
        prop_assume!(repr.family() == Family::Ipv4);
        let ip = IpPair::V4 { src, dst };
        let d = ipv4_datagram(src, dst, ttl, &emit(&repr, &ip, Checksum::Verify));
        prop_assert_eq!(parse_ipv4_datagram(&d), Ok((Ipv4Meta { src, dst, ttl }, repr)));
    }

    /// Changing any single byte of a valid message is caught: the checksum covers
    /// every byte (a one-byte change moves the sum by less than 0xffff), and the
    /// fields it does not cover fail their own checks first.
    #[test]
    fn single_byte_changes_are_caught(
        (repr, ip) in advert_with_ip(), at in any::<usize>(), mask in 1..=255u8,
    ) {
        let mut bytes = emit(&repr, &ip, Checksum::Verify);
        let i = at % bytes.len();
        bytes[i] ^= mask;
        let got = Repr::from_bytes(&bytes, &ip, Checksum::Verify);
        prop_assert!(got.is_err(), "byte {} ^ {:#x} accepted: {:?}", i, mask, got);
    }

    /// Parsers never panic on arbitrary bytes, in either family, under any policy.
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600), ip in ip_pair(), policy in policy(),
    ) {
        let _ = Repr::from_bytes(&bytes, &ip, policy);
        let _ = parse_ipv4_datagram(&bytes);
        let _ = Ipv4Meta::split(&bytes);
        let localhost = Ipv4Addr::LOCALHOST;
        let _ = (checksum_v2(&bytes), checksum_v4(localhost, localhost, &bytes));
        for family in [Family::Ipv4, Family::Ipv6] {
            if let Ok(p) = Packet::new_checked(&bytes[..], family) {
                read_all(&p);
            }
        }
    }

    /// Parsers never panic on valid messages damaged in arbitrary ways; whatever
    /// parses is a valid advert that emits to a message of its own length.
    #[test]
    fn parse_never_panics_on_mutated_messages(
        (repr, ip) in advert_with_ip(),
        mutations in prop::collection::vec(mutation(), 1..6),
        policy in policy(),
    ) {
        let mut bytes = emit(&repr, &ip, Checksum::Verify);
        apply(&mut bytes, &mutations);
        if let Ok(p) = Packet::new_checked(&bytes[..], ip.family()) {
            read_all(&p);
        }
        if let Ok(parsed) = Repr::from_bytes(&bytes, &ip, policy) {
            prop_assert_eq!(parsed.buffer_len(), bytes.len());
            let _ = emit(&parsed, &ip, policy);
        }
        if let IpPair::V4 { src, dst } = ip {
            let mut d = ipv4_datagram(src, dst, 255, &emit(&repr, &ip, Checksum::Verify));
            apply(&mut d, &mutations);
            let _ = parse_ipv4_datagram(&d);
        }
    }

    /// Damaged IPv4 headers are refused or parsed, never a panic.
    #[test]
    fn ipv4_header_damage_never_panics(
        head in prop::collection::vec(any::<u8>(), 0..64), (repr, ip) in advert_with_ip(),
    ) {
        let mut d = head;
        d.extend_from_slice(&emit(&repr, &ip, Checksum::Verify));
        let _ = parse_ipv4_datagram(&d);
    }
}

#[test]
fn a_message_too_short_for_its_count_is_an_address_count_error() {
    // Count 255 of IPv6 addresses in a 8-byte message.
    let msg = [0x31, 1, 100, 255, 0, 100, 0, 0];
    let ip = IpPair::V6 {
        src: Ipv6Addr::LOCALHOST,
        dst: Ipv6Addr::LOCALHOST,
    };
    assert_eq!(
        Repr::from_bytes(&msg, &ip, Checksum::Ignore),
        Err(DecodeError::AddressCount {
            count: 255,
            need: 8 + 255 * 16,
            have: 8
        })
    );
}
