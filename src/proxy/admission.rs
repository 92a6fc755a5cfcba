//! Per-source admission: a cap on one source's open connections and a token bucket for
//! its new connections. Sans-IO: the accept loop asks with the source and an injected
//! `Instant`, and tells when a connection it admitted ends.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host is given a /64; counting single
//! IPv6 addresses would let it take 2^64 shares). The table is bounded: when it is full,
//! sources with no open connection are forgotten (their bucket refills in the meantime
//! anyway), so a scan of many addresses cannot grow memory without limit. A source that
//! still finds the table full of sources with open connections is admitted untracked:
//! the frontend's global `max_connections` bounds those.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The limits for one source; `None` turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections one source may hold open at once.
    pub max_connections: Option<u32>,
    /// New connections per second one source may open, and its burst.
    pub rate: Option<Rate>,
}

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// New connections per second.
    pub per_second: u32,
    /// New connections allowed at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.max_connections.is_some() || self.rate.is_some()
    }
}

/// Why a source was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It holds `max_connections` already.
    Connections,
    /// Its new-connection rate is used up.
    Rate,
}

/// The source key: an IPv4 address, or an IPv6 address with its low 64 bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(u128);

impl Source {
    /// The source of a client address (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                // Set bit 32 of the (cleared) host part: IPv4 keys are below 2^32, so
                // no IPv6 prefix, `::/64` included, equals one.
                None => Source((u128::from(v6) & !u128::from(u64::MAX)) | (1 << 32)),
            },
        }
    }
}

/// Tokens are kept in thousandths, so refills are exact integer arithmetic.
const MILLI: u64 = 1000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    open: u32,
    /// Tokens in thousandths.
    tokens: u64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The admission table of one frontend.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    capacity: usize,
    table: HashMap<Source, Entry>,
}

impl Admission {
    /// A table for `limits`, holding at most `capacity` sources.
    pub fn new(limits: Limits, capacity: usize) -> Self {
        Admission {
            limits,
            capacity: capacity.max(1),
            table: HashMap::new(),
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Sources tracked now.
    pub fn sources(&self) -> usize {
        self.table.len()
    }

    fn full_bucket(&self) -> u64 {
        self.limits
            .rate
            .map_or(0, |r| u64::from(r.burst.max(1)) * MILLI)
    }

    fn refill(rate: Option<Rate>, full: u64, e: &mut Entry, now: Instant) {
        let Some(rate) = rate else { return };
        let elapsed = now.saturating_duration_since(e.at);
        // Millitokens earned: per_second tokens a second is per_second millitokens a ms.
        let earned = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(rate.per_second));
        if earned > 0 {
            e.tokens = e.tokens.saturating_add(earned).min(full);
            // Keep the sub-millisecond remainder for the next refill.
            e.at += Duration::from_millis(elapsed.as_millis() as u64);
        }
    }

    /// Asks to admit a new connection from `src` at `now`. On `Ok(true)` the caller
    /// calls [`Admission::release`] when the connection ends; on `Ok(false)` (not
    /// tracked: the table is full) it must not.
    pub fn admit(&mut self, src: Source, now: Instant) -> Result<bool, Refusal> {
        if !self.limits.any() {
            return Ok(false);
        }
        if !self.table.contains_key(&src) && self.table.len() >= self.capacity {
            self.forget_idle(now);
            if self.table.len() >= self.capacity {
                return Ok(false);
            }
        }
        let full = self.full_bucket();
        let (rate, max) = (self.limits.rate, self.limits.max_connections);
        let e = self.table.entry(src).or_insert(Entry {
            open: 0,
            tokens: full,
            at: now,
        });
        Self::refill(rate, full, e, now);
        if max.is_some_and(|m| e.open >= m) {
            return Err(Refusal::Connections);
        }
        if rate.is_some() {
            if e.tokens < MILLI {
                return Err(Refusal::Rate);
            }
            e.tokens -= MILLI;
        }
        e.open += 1;
        Ok(true)
    }

    /// A connection admitted with `Ok(true)` ended.
    pub fn release(&mut self, src: Source, now: Instant) {
        let full = self.full_bucket();
        let rate = self.limits.rate;
        if let Some(e) = self.table.get_mut(&src) {
            e.open = e.open.saturating_sub(1);
            Self::refill(rate, full, e, now);
            if e.open == 0 && e.tokens >= full {
                self.table.remove(&src);
            }
        }
    }

    /// Forgets the sources with no open connection: the ones whose bucket is full
    /// first; when that frees nothing, all of them (a little lenience for a source
    /// that was rate-limited, rather than a table without bound).
    fn forget_idle(&mut self, now: Instant) {
        let full = self.full_bucket();
        let rate = self.limits.rate;
        self.table.retain(|_, e| {
            Self::refill(rate, full, e, now);
            e.open > 0 || e.tokens < full
        });
        if self.table.len() >= self.capacity {
            self.table.retain(|_, e| e.open > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)))
    }

    fn limits(max: Option<u32>, rate: Option<(u32, u32)>) -> Limits {
        Limits {
            max_connections: max,
            rate: rate.map(|(per_second, burst)| Rate { per_second, burst }),
        }
    }

    #[test]
    fn off_admits_everything_untracked() {
        let mut a = Admission::new(limits(None, None), 10);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(a.admit(v4(1), t), Ok(false));
        }
        assert_eq!(a.sources(), 0);
    }

    #[test]
    fn caps_open_connections_per_source_and_frees_on_release() {
        let mut a = Admission::new(limits(Some(2), None), 10);
        let t = Instant::now();
        assert_eq!(a.admit(v4(1), t), Ok(true));
        assert_eq!(a.admit(v4(1), t), Ok(true));
        assert_eq!(a.admit(v4(1), t), Err(Refusal::Connections));
        // Another source is not affected.
        assert_eq!(a.admit(v4(2), t), Ok(true));
        a.release(v4(1), t);
        assert_eq!(a.admit(v4(1), t), Ok(true));
        a.release(v4(1), t);
        a.release(v4(1), t);
        a.release(v4(2), t);
        assert_eq!(
            a.sources(),
            0,
            "sources with nothing open and no rate state are dropped"
        );
    }

    #[test]
    fn rate_allows_the_burst_then_refills_at_the_rate() {
        let mut a = Admission::new(limits(None, Some((10, 3))), 10);
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(a.admit(v4(1), t), Ok(true));
            a.release(v4(1), t);
        }
        assert_eq!(a.admit(v4(1), t), Err(Refusal::Rate));
        // 10/s: one token per 100 ms, earned in 99 ms steps too (remainders kept).
        assert_eq!(
            a.admit(v4(1), t + Duration::from_millis(99)),
            Err(Refusal::Rate)
        );
        assert_eq!(a.admit(v4(1), t + Duration::from_millis(100)), Ok(true));
        assert_eq!(
            a.admit(v4(1), t + Duration::from_millis(150)),
            Err(Refusal::Rate)
        );
        assert_eq!(a.admit(v4(1), t + Duration::from_millis(200)), Ok(true));
        // A long pause refills to the burst, not beyond.
        let later = t + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(a.admit(v4(1), later), Ok(true));
        }
        assert_eq!(a.admit(v4(1), later), Err(Refusal::Rate));
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let a1: IpAddr = "2001:db8:0:1::10".parse().unwrap();
        let a2: IpAddr = "2001:db8:0:1:ffff::20".parse().unwrap();
        let b: IpAddr = "2001:db8:0:2::10".parse().unwrap();
        assert_eq!(Source::of(a1), Source::of(a2));
        assert_ne!(Source::of(a1), Source::of(b));
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 18, 0, 1).to_ipv6_mapped());
        assert_eq!(Source::of(mapped), v4(1));
        // No IPv6 prefix collides with an IPv4 key, `::/64` (`::1`) included.
        for v4 in [
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(0, 0, 0, 1),
            Ipv4Addr::BROADCAST,
        ] {
            for v6 in [Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST] {
                assert_ne!(Source::of(IpAddr::V6(v6)), Source::of(IpAddr::V4(v4)));
            }
        }
        let mut a = Admission::new(limits(Some(1), None), 10);
        let t = Instant::now();
        assert_eq!(a.admit(Source::of(a1), t), Ok(true));
        assert_eq!(a.admit(Source::of(a2), t), Err(Refusal::Connections));
        assert_eq!(a.admit(Source::of(b), t), Ok(true));
    }

    #[test]
    fn the_table_stays_bounded_under_a_scan() {
        let mut a = Admission::new(limits(Some(1), Some((1, 1))), 4);
        let t = Instant::now();
        for i in 0..=255u8 {
            let s = v4(i);
            assert_eq!(a.admit(s, t), Ok(true), "source {i}");
            a.release(s, t);
            assert!(a.sources() <= 4);
        }
        // Four sources holding connections fill it: a fifth is admitted untracked.
        let mut b = Admission::new(limits(Some(1), None), 4);
        for i in 0..4 {
            assert_eq!(b.admit(v4(i), t), Ok(true));
        }
        assert_eq!(b.admit(v4(9), t), Ok(false));
        assert_eq!(b.sources(), 4);
    }

    proptest::proptest! {
        /// Whatever the sequence: a source never holds more than the cap; while the table
        /// has room for every source, none gets more than burst + rate * time new
        /// connections; the table never grows beyond its capacity.
        #[test]
        fn never_exceeds_its_limits(
            roomy in proptest::bool::ANY,
            ops in proptest::collection::vec((0u8..6, 0u64..400, proptest::bool::ANY), 1..400),
        ) {
            let (max, per_second, burst) = (3u32, 5u32, 4u32);
            let capacity = if roomy { 16 } else { 4 };
            let mut a = Admission::new(limits(Some(max), Some((per_second, burst))), capacity);
            let start = Instant::now();
            let mut now = start;
            let mut open: HashMap<u8, Vec<bool>> = HashMap::new();
            let mut admitted: HashMap<u8, u64> = HashMap::new();
            for (src, step_ms, close) in ops {
                now += Duration::from_millis(step_ms);
                let s = v4(src);
                let conns = open.entry(src).or_default();
                if close {
                    if conns.pop() == Some(true) {
                        a.release(s, now);
                    }
                    continue;
                }
                if let Ok(tracked) = a.admit(s, now) {
                    conns.push(tracked);
                    *admitted.entry(src).or_default() += 1;
                    let tracked_open = conns.iter().filter(|t| **t).count() as u32;
                    proptest::prop_assert!(tracked_open <= max);
                    if roomy {
                        proptest::prop_assert!(tracked);
                        let elapsed_ms = now.duration_since(start).as_millis() as u64;
                        proptest::prop_assert!(
                            admitted[&src] <= u64::from(burst) + elapsed_ms * u64::from(per_second) / 1000
                        );
                    }
                }
                proptest::prop_assert!(a.sources() <= capacity);
            }
        }
    }
}
