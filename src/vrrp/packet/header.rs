//! The zero-copy view of one VRRP message ([`Packet`]) and its byte ranges.

use super::*;

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
    pub(super) buffer: T,
    pub(super) family: Family,
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
