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
        addrs: VirtualAddrs::V4(AddrList::try_new(vec![Ipv4Addr::new(198, 18, 0, 100)]).unwrap()),
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
