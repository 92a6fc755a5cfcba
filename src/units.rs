//! Units as types, parsed and converted in one place.
//!
//! Durations in the config are written like `200ms`, `1s`, `1m30s`, `2h`. They are
//! parsed here and nowhere else.

use std::fmt;
use std::time::Duration;

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration; expected a number with a unit such as 200ms, 1s or 1m")]
    Empty,
    /// A number was not followed by one of the known units.
    #[error("unknown or missing unit in {0:?}; expected ms, s, m or h (e.g. 200ms, 1s, 1m30s)")]
    BadUnit(String),
    /// A part had no digits.
    #[error("bad number in {0:?}; expected digits before the unit (e.g. 200ms)")]
    BadNumber(String),
    /// The value is too large to represent.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses `200ms`, `1s`, `1.5s`, `1m30s`, `2h`, `0s` into a [`Duration`].
///
/// A bare number without a unit is refused on purpose: `interval: 1` is ambiguous.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num.chars().filter(|&c| c == '.').count() > 1 || num == "." {
            return Err(DurationError::BadNumber(text.to_owned()));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale_ns: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(DurationError::BadUnit(text.to_owned())),
        };
        let value: f64 = num
            .parse()
            .map_err(|_| DurationError::BadNumber(text.to_owned()))?;
        let ns = value * scale_ns;
        if !ns.is_finite() || ns > 1e18 {
            return Err(DurationError::Overflow(text.to_owned()));
        }
        total = total
            .checked_add(Duration::from_nanos(ns.round() as u64))
            .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
        rest = next;
    }
    Ok(total)
}

/// Formats a duration the way the config writes it (`200ms`, `1s`, `1m30s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        _ => format!("{s}s"),
    }
}

/// A duration read from the config: deserializes from strings like `200ms`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDuration(pub Duration);

impl fmt::Debug for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_operators_write() {
        let cases: &[(&str, Duration)] = &[
            ("200ms", Duration::from_millis(200)),
            ("1s", Duration::from_secs(1)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("2h", Duration::from_secs(7200)),
            ("0s", Duration::ZERO),
            (" 10ms ", Duration::from_millis(10)),
            ("250us", Duration::from_micros(250)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn refuses_ambiguous_or_broken_input() {
        for bad in [
            "", "1", "s", "1x", "ms", "1..2s", "-1s", "1s2", ".s", "1e3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["200ms", "1s", "1m30s", "2h", "5m", "0ms", "250us"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }
}
