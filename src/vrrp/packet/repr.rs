//! What a VRRP message means ([`Repr`]), validated and owned: parse and emit.

use super::*;

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
