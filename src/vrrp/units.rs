//! VRRP values as types, range-checked and converted in one place.
//!
//! VRRPv2 carries the advertisement interval in whole seconds in one octet (RFC 3768
//! §5.3.7); VRRPv3 carries the maximum advertisement interval in centiseconds in 12
//! bits (RFC 9568 §5.2.7). They are two types, [`Secs`] and [`Centisecs`], so a number
//! written as one can never be read as the other (holo-vrrp keeps one
//! `advertise_interval: u16` for both and its timer reads it as seconds; STYLE.md §5).
//! Both become a [`Duration`] here and nowhere else.

use std::fmt;
use std::num::NonZeroU8;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A value outside what a VRRP field can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// VRID 0 is not a virtual router; pick 1..=255, the same on every router of the VRID.
    #[error("VRID 0 is invalid; use 1..=255, the same on every router that shares the VIP")]
    ZeroVrid,
    /// Priority 0 only signals "the Active Router resigns"; configure 1..=254 (255 = owner).
    #[error("priority 0 is reserved for resigning (RFC 9568 §5.2.4); use 1..=254, or 255 for the address owner")]
    ZeroPriority,
    /// An advertisement interval of zero would flood the link; use at least 10ms (v3) or 1s (v2).
    #[error(
        "advertisement interval must be above zero: at least 10ms with VRRPv3, 1s with VRRPv2"
    )]
    ZeroInterval,
    /// The interval does not fit the field: at most 40.95s (v3) or 255s (v2).
    #[error("advertisement interval {got:?} is longer than the field holds ({max:?})")]
    IntervalTooLong {
        /// The interval asked for.
        got: Duration,
        /// The longest the field can carry.
        max: Duration,
    },
    /// The interval is not a whole number of the field's unit (10ms for v3, 1s for v2).
    #[error("advertisement interval {got:?} is not a whole multiple of {unit:?}, the unit the field counts in")]
    IntervalNotWhole {
        /// The interval asked for.
        got: Duration,
        /// The unit of the field.
        unit: Duration,
    },
    /// A VRRPv2 simple password must not be empty (keepalived refuses it too).
    #[error("the VRRPv2 auth_pass is empty; set 1 to 8 bytes")]
    EmptyPassword,
    /// A VRRPv2 simple password has at most 8 bytes; keepalived silently truncates longer ones.
    #[error("the VRRPv2 auth_pass has {len} bytes; at most 8 fit (keepalived would truncate it to the first 8)")]
    PasswordTooLong {
        /// The length given.
        len: usize,
    },
    /// One advertisement carries at most 255 addresses (the Count field is one octet).
    #[error(
        "{count} virtual addresses do not fit one advertisement; the Count field holds at most 255"
    )]
    TooManyAddrs {
        /// The number of addresses given.
        count: usize,
    },
}

// === impl Vrid ===

/// A virtual router identifier, 1..=255 (RFC 9568 §5.2.3; 0 is invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Vrid(NonZeroU8);

impl Vrid {
    /// A VRID known to be valid, for constants. Panics (at compile time in a `const`) on 0.
    pub const fn new_unchecked(id: u8) -> Vrid {
        match NonZeroU8::new(id) {
            Some(id) => Vrid(id),
            None => panic!("VRID 0 is invalid"),
        }
    }

    /// Validates a VRID: 0 is refused.
    pub const fn try_new(id: u8) -> Result<Vrid, RangeError> {
        match NonZeroU8::new(id) {
            Some(id) => Ok(Vrid(id)),
            None => Err(RangeError::ZeroVrid),
        }
    }

    /// The VRID as on the wire.
    pub const fn get(self) -> u8 {
        self.0.get()
    }
}

impl TryFrom<u8> for Vrid {
    type Error = RangeError;
    fn try_from(id: u8) -> Result<Vrid, RangeError> {
        Vrid::try_new(id)
    }
}

impl From<Vrid> for u8 {
    fn from(id: Vrid) -> u8 {
        id.get()
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

// === impl Priority ===

/// A router's priority in one virtual router (RFC 9568 §5.2.4).
///
/// Every octet is a valid priority on the wire: 0 means the Active Router resigns,
/// 255 that the sender owns the virtual addresses. [`Priority::try_new`] is for values
/// a router is configured with, where 0 is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(u8);

impl Priority {
    /// Sent once by an Active Router that stops, so a Backup takes over after only its skew time.
    pub const RESIGN: Priority = Priority(0);
    /// The default for a Backup router (RFC 9568 §5.2.4; keepalived's default too).
    pub const DEFAULT: Priority = Priority(100);
    /// The router that owns the virtual addresses.
    pub const OWNER: Priority = Priority(255);

    /// Any priority as read from the wire, including 0 and 255.
    pub const fn new(priority: u8) -> Priority {
        Priority(priority)
    }

    /// Validates a configured priority: 1..=255; 0 is only ever sent to resign.
    pub const fn try_new(priority: u8) -> Result<Priority, RangeError> {
        match priority {
            0 => Err(RangeError::ZeroPriority),
            p => Ok(Priority(p)),
        }
    }

    /// The priority as on the wire.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Whether this advert announces that the Active Router resigns (priority 0).
    pub const fn is_resign(self) -> bool {
        self.0 == 0
    }

    /// Whether the sender owns the virtual addresses (priority 255).
    pub const fn is_owner(self) -> bool {
        self.0 == 255
    }
}

impl From<u8> for Priority {
    fn from(priority: u8) -> Priority {
        Priority(priority)
    }
}

impl From<Priority> for u8 {
    fn from(priority: Priority) -> u8 {
        priority.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// === impl Centisecs ===

/// The VRRPv3 Max Adver Int: centiseconds in 12 bits, 1..=4095 (10ms to 40.95s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Centisecs(u16);

impl Centisecs {
    /// The shortest interval, 10ms.
    pub const MIN: Centisecs = Centisecs(1);
    /// The longest interval the 12-bit field holds, 40.95s.
    pub const MAX: Centisecs = Centisecs(0x0fff);
    /// The RFC 9568 default, 1s.
    pub const DEFAULT: Centisecs = Centisecs(100);
    /// One centisecond.
    pub const UNIT: Duration = Duration::from_millis(10);

    /// An interval known to be valid, for constants. Panics on 0 or above 4095.
    pub const fn new_unchecked(cs: u16) -> Centisecs {
        match Centisecs::try_new(cs) {
            Ok(cs) => cs,
            Err(_) => panic!("a VRRPv3 interval is 1..=4095 centiseconds"),
        }
    }

    /// Validates an interval in centiseconds: 1..=4095.
    pub const fn try_new(cs: u16) -> Result<Centisecs, RangeError> {
        if cs == 0 {
            Err(RangeError::ZeroInterval)
        } else if cs > Centisecs::MAX.0 {
            Err(RangeError::IntervalTooLong {
                got: Duration::from_millis(cs as u64 * 10),
                max: Centisecs::MAX.to_duration(),
            })
        } else {
            Ok(Centisecs(cs))
        }
    }

    /// The interval in centiseconds, as on the wire.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The interval as a [`Duration`].
    pub const fn to_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64 * 10)
    }
}

impl TryFrom<u16> for Centisecs {
    type Error = RangeError;
    fn try_from(cs: u16) -> Result<Centisecs, RangeError> {
        Centisecs::try_new(cs)
    }
}

impl From<Centisecs> for u16 {
    fn from(cs: Centisecs) -> u16 {
        cs.0
    }
}

/// Exact: a duration that is not a whole number of centiseconds is refused, not rounded.
impl TryFrom<Duration> for Centisecs {
    type Error = RangeError;
    fn try_from(d: Duration) -> Result<Centisecs, RangeError> {
        let units = whole_units(d, Centisecs::UNIT, Centisecs::MAX.to_duration())?;
        // `whole_units` bounded it by MAX (4095), so it fits a u16.
        Centisecs::try_new(units as u16)
    }
}

impl From<Centisecs> for Duration {
    fn from(cs: Centisecs) -> Duration {
        cs.to_duration()
    }
}

impl fmt::Display for Centisecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}cs", self.0)
    }
}

// === impl Secs ===

/// The VRRPv2 Adver Int: whole seconds in one octet, 1..=255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Secs(NonZeroU8);

impl Secs {
    /// The RFC 3768 default, 1s (keepalived's `advert_int` default too).
    pub const DEFAULT: Secs = Secs::new_unchecked(1);
    /// The longest interval the field holds, 255s.
    pub const MAX: Secs = Secs::new_unchecked(255);
    /// One second.
    pub const UNIT: Duration = Duration::from_secs(1);

    /// An interval known to be valid, for constants. Panics on 0.
    pub const fn new_unchecked(secs: u8) -> Secs {
        match NonZeroU8::new(secs) {
            Some(secs) => Secs(secs),
            None => panic!("a VRRPv2 interval is 1..=255 seconds"),
        }
    }

    /// Validates an interval in seconds: 0 is refused.
    pub const fn try_new(secs: u8) -> Result<Secs, RangeError> {
        match NonZeroU8::new(secs) {
            Some(secs) => Ok(Secs(secs)),
            None => Err(RangeError::ZeroInterval),
        }
    }

    /// The interval in seconds, as on the wire.
    pub const fn get(self) -> u8 {
        self.0.get()
    }

    /// The interval as a [`Duration`].
    pub const fn to_duration(self) -> Duration {
        Duration::from_secs(self.0.get() as u64)
    }
}

impl TryFrom<u8> for Secs {
    type Error = RangeError;
    fn try_from(secs: u8) -> Result<Secs, RangeError> {
        Secs::try_new(secs)
    }
}

impl From<Secs> for u8 {
    fn from(secs: Secs) -> u8 {
        secs.get()
    }
}

/// Exact: a duration that is not a whole number of seconds is refused, not rounded
/// (keepalived rounds `advert_int 1.5` to 2s with VRRPv2 and logs a warning).
impl TryFrom<Duration> for Secs {
    type Error = RangeError;
    fn try_from(d: Duration) -> Result<Secs, RangeError> {
        let units = whole_units(d, Secs::UNIT, Secs::MAX.to_duration())?;
        // `whole_units` bounded it by MAX (255), so it fits a u8.
        Secs::try_new(units as u8)
    }
}

impl From<Secs> for Duration {
    fn from(secs: Secs) -> Duration {
        secs.to_duration()
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.get())
    }
}

/// `d` as a whole number of `unit`s, 1..=`max`/`unit`.
fn whole_units(d: Duration, unit: Duration, max: Duration) -> Result<u128, RangeError> {
    if d.is_zero() {
        return Err(RangeError::ZeroInterval);
    }
    if d > max {
        return Err(RangeError::IntervalTooLong { got: d, max });
    }
    let (nanos, unit_nanos) = (d.as_nanos(), unit.as_nanos());
    if nanos % unit_nanos != 0 {
        return Err(RangeError::IntervalNotWhole { got: d, unit });
    }
    Ok(nanos / unit_nanos)
}

// === impl Password ===

/// A VRRPv2 simple text password (keepalived `auth_type PASS`, RFC 2338 §5.3.10):
/// up to 8 bytes, zero-padded to the 8-byte Authentication Data field.
///
/// Equality compares all 8 bytes without stopping at the first difference, as
/// keepalived does (`memcmp_constant_time` over `auth_data`). `Debug` hides the bytes.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password([u8; Password::LEN]);

impl Password {
    /// The size of the Authentication Data field.
    pub const LEN: usize = 8;

    /// Validates a configured password: 1 to 8 bytes, zero-padded.
    pub fn try_new(password: &[u8]) -> Result<Password, RangeError> {
        if password.is_empty() {
            return Err(RangeError::EmptyPassword);
        }
        if password.len() > Password::LEN {
            return Err(RangeError::PasswordTooLong {
                len: password.len(),
            });
        }
        let mut data = [0; Password::LEN];
        data[..password.len()].copy_from_slice(password);
        Ok(Password(data))
    }

    /// The Authentication Data field as received, all 8 bytes.
    pub const fn from_wire(data: [u8; Password::LEN]) -> Password {
        Password(data)
    }

    /// The 8 bytes as sent.
    pub const fn as_bytes(&self) -> &[u8; Password::LEN] {
        &self.0
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Password) -> bool {
        // No early exit: the time taken does not say how many leading bytes matched.
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
    }
}

impl Eq for Password {}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrid_refuses_zero_only() {
        assert_eq!(Vrid::try_new(0), Err(RangeError::ZeroVrid));
        for id in [1, 51, 255] {
            assert_eq!(Vrid::try_new(id).map(Vrid::get), Ok(id));
        }
        assert_eq!(Vrid::new_unchecked(7).get(), 7);
    }

    #[test]
    fn priority_accepts_every_wire_value_but_config_refuses_zero() {
        assert!(Priority::new(0).is_resign());
        assert!(Priority::new(255).is_owner());
        assert!(!Priority::DEFAULT.is_owner() && !Priority::DEFAULT.is_resign());
        assert_eq!(Priority::try_new(0), Err(RangeError::ZeroPriority));
        assert_eq!(Priority::try_new(255), Ok(Priority::OWNER));
        assert_eq!(Priority::try_new(1).map(Priority::get), Ok(1));
    }

    #[test]
    fn centisecs_from_durations() {
        let ms = Duration::from_millis;
        let cases: &[(Duration, Result<u16, RangeError>)] = &[
            (ms(10), Ok(1)),
            (ms(100), Ok(10)),
            (ms(1000), Ok(100)),
            (ms(40_950), Ok(4095)),
            (Duration::ZERO, Err(RangeError::ZeroInterval)),
            (
                ms(40_960),
                Err(RangeError::IntervalTooLong {
                    got: ms(40_960),
                    max: ms(40_950),
                }),
            ),
            (
                ms(15),
                Err(RangeError::IntervalNotWhole {
                    got: ms(15),
                    unit: ms(10),
                }),
            ),
            (
                Duration::from_nanos(1),
                Err(RangeError::IntervalNotWhole {
                    got: Duration::from_nanos(1),
                    unit: ms(10),
                }),
            ),
        ];
        for (d, want) in cases {
            assert_eq!(Centisecs::try_from(*d).map(Centisecs::get), *want, "{d:?}");
        }
    }

    #[test]
    fn centisecs_range_and_duration() {
        assert_eq!(Centisecs::try_new(0), Err(RangeError::ZeroInterval));
        assert!(matches!(
            Centisecs::try_new(4096),
            Err(RangeError::IntervalTooLong { .. })
        ));
        assert_eq!(Centisecs::DEFAULT.to_duration(), Duration::from_secs(1));
        assert_eq!(Centisecs::MAX.to_duration(), Duration::from_millis(40_950));
        for cs in [1, 7, 100, 4095] {
            let c = Centisecs::try_new(cs).unwrap();
            assert_eq!(Centisecs::try_from(c.to_duration()), Ok(c));
        }
    }

    #[test]
    fn secs_from_durations() {
        let s = Duration::from_secs;
        let cases: &[(Duration, Result<u8, RangeError>)] = &[
            (s(1), Ok(1)),
            (s(255), Ok(255)),
            (Duration::ZERO, Err(RangeError::ZeroInterval)),
            (
                s(256),
                Err(RangeError::IntervalTooLong {
                    got: s(256),
                    max: s(255),
                }),
            ),
            (
                Duration::from_millis(1500),
                Err(RangeError::IntervalNotWhole {
                    got: Duration::from_millis(1500),
                    unit: s(1),
                }),
            ),
        ];
        for (d, want) in cases {
            assert_eq!(Secs::try_from(*d).map(Secs::get), *want, "{d:?}");
        }
        assert_eq!(Secs::try_new(0), Err(RangeError::ZeroInterval));
        assert_eq!(Secs::DEFAULT.to_duration(), s(1));
    }

    /// The same number means 100x more time as v2 seconds than as v3 centiseconds:
    /// the types keep the two apart.
    #[test]
    fn the_two_interval_units_differ() {
        assert_eq!(Secs::new_unchecked(1).to_duration(), Duration::from_secs(1));
        assert_eq!(
            Centisecs::new_unchecked(1).to_duration(),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn password_is_zero_padded_and_compared_over_eight_bytes() {
        let p = Password::try_new(b"s3cret").unwrap();
        assert_eq!(p.as_bytes(), b"s3cret\0\0");
        assert_eq!(p, Password::from_wire(*b"s3cret\0\0"));
        assert_ne!(p, Password::try_new(b"s3cre").unwrap());
        assert_ne!(p, Password::from_wire(*b"s3cret\0X"));
        assert_eq!(Password::try_new(b""), Err(RangeError::EmptyPassword));
        assert_eq!(
            Password::try_new(b"123456789"),
            Err(RangeError::PasswordTooLong { len: 9 })
        );
        assert!(Password::try_new(b"12345678").is_ok());
        assert_eq!(format!("{p:?}"), "Password(..)");
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Vrid>("0").is_err());
        assert_eq!(serde_json::from_str::<Vrid>("51").unwrap().get(), 51);
        assert!(serde_json::from_str::<Centisecs>("4096").is_err());
        assert!(serde_json::from_str::<Secs>("0").is_err());
        assert_eq!(serde_json::to_string(&Centisecs::DEFAULT).unwrap(), "100");
    }
}
