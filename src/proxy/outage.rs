//! Telling this node's own outage from the masters': when most masters turn down
//! at the same moment as seen from here, the likelier cause is this node's network
//! (a cable, a switch port, a full conntrack table), not most masters failing at once.
//! Closing every connection then would only add a reconnect storm to the outage, so
//! the proxy holds its closes for a while (Envoy's panic threshold, HAProxy has none).
//!
//! Sans-IO: the proxy's health watcher feeds which backends are lost (down, not by an
//! operator's drain or a graceful not-ready) with an injected `Instant`, and asks
//! whether closes are held; [`Outage::deadline`] tells it when to ask again.
//!
//! Rules:
//! - With at least two backends, a **local outage** starts when more than half of
//!   them are lost and all of those turned lost within `window` of each other.
//! - It ends when no more than half are lost (the lost ones that remain are closed
//!   then, as they would have been), or `hold` after it started: a local blip is
//!   short, and a longer one is closed as the masters' after all.
//! - After the hold ran out, no new local outage starts until the majority is
//!   recovered once.
//! - The masters' checks fail one by one, not in one instant: the first one lost is
//!   seen alone for a moment, and the last one back after the others. So the close of
//!   a backend that turns lost, or stays lost when an outage ends, waits
//!   [`Outage::defer`] (the window), and is held or cancelled if the others follow.

use std::time::{Duration, Instant};

/// How much longer than the window a close waits (see [`Outage::defer`]).
pub const DEFER_MARGIN: Duration = Duration::from_millis(250);

/// What changed with one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// A local outage started: hold the closes.
    Started,
    /// It ended because the masters came back: apply the closes still due.
    Recovered,
    /// It ended because `hold` ran out: apply the closes still due.
    Expired,
}

/// The local-outage detector of one frontend.
#[derive(Debug, Clone)]
pub struct Outage {
    window: Duration,
    hold: Duration,
    /// When each backend turned lost (in config order), `None` while not lost.
    lost_since: Vec<Option<Instant>>,
    /// When the current local outage started.
    since: Option<Instant>,
    /// The hold ran out: no new outage until the majority recovered.
    spent: bool,
}

impl Outage {
    /// A detector for `n` backends.
    pub fn new(n: usize, window: Duration, hold: Duration) -> Self {
        Outage {
            window,
            hold,
            lost_since: vec![None; n],
            since: None,
            spent: false,
        }
    }

    /// Starts from backends found lost already at `now` (a new generation after a
    /// reload): they turned lost at some earlier time, so none is "at the same moment"
    /// as a later loss, and a majority of them starts no outage until it recovers.
    pub fn resume(&mut self, lost: &[bool], now: Instant) {
        let earlier = now.checked_sub(self.window * 2).unwrap_or(now);
        self.lost_since = lost.iter().map(|l| l.then_some(earlier)).collect();
        let n = lost.len();
        self.spent = n >= 2 && self.lost_since.iter().flatten().count() * 2 > n;
        self.since = None;
    }

    /// Whether closes are held now.
    pub fn holding(&self) -> bool {
        self.since.is_some()
    }

    /// When the hold runs out, while holding.
    pub fn deadline(&self) -> Option<Instant> {
        self.since.map(|s| s + self.hold)
    }

    /// How long the close of a backend lost now should wait, for a local outage to be
    /// recognised (or to end with it back): the window; zero where none can start (a
    /// single backend, or the hold ran out and the majority has not recovered).
    pub fn defer(&self) -> Duration {
        if self.lost_since.len() < 2 || self.spent {
            Duration::ZERO
        } else {
            // A loss right at the window's end still counts as the same moment.
            self.window + DEFER_MARGIN
        }
    }

    /// A reload changed the check: the window follows it.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Feeds which backends are lost now (`lost[i]`, config order) at `now`.
    pub fn observe(&mut self, lost: &[bool], now: Instant) -> Change {
        self.lost_since.resize(lost.len(), None);
        for (since, &l) in self.lost_since.iter_mut().zip(lost) {
            match (l, *since) {
                (true, None) => *since = Some(now),
                (false, Some(_)) => *since = None,
                _ => {}
            }
        }
        let n = lost.len();
        let times: Vec<Instant> = self.lost_since.iter().flatten().copied().collect();
        let majority = n >= 2 && times.len() * 2 > n;
        if let Some(since) = self.since {
            if !majority {
                self.since = None;
                return Change::Recovered;
            }
            if now.saturating_duration_since(since) >= self.hold {
                self.since = None;
                self.spent = true;
                return Change::Expired;
            }
            return Change::None;
        }
        if !majority {
            self.spent = false;
            return Change::None;
        }
        if self.spent {
            return Change::None;
        }
        let (first, last) = (times.iter().min(), times.iter().max());
        match (first, last) {
            (Some(first), Some(last)) if last.saturating_duration_since(*first) <= self.window => {
                self.since = Some(now);
                Change::Started
            }
            _ => Change::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(1);
    const HOLD: Duration = Duration::from_secs(30);

    fn ms(t: Instant, ms: u64) -> Instant {
        t + Duration::from_millis(ms)
    }

    #[test]
    fn closes_wait_the_window_while_an_outage_can_start() {
        let t = Instant::now();
        let mut o = Outage::new(3, WINDOW, HOLD);
        assert_eq!(o.defer(), WINDOW + DEFER_MARGIN, "the others may follow");
        o.observe(&[true, false, false], t);
        assert_eq!(o.defer(), WINDOW + DEFER_MARGIN);
        o.observe(&[true, true, true], ms(t, 100));
        assert!(o.holding());
        assert_eq!(
            o.observe(&[true, true, true], ms(t, 30_200)),
            Change::Expired
        );
        assert_eq!(o.defer(), Duration::ZERO, "spent: the masters are down");
        assert_eq!(Outage::new(1, WINDOW, HOLD).defer(), Duration::ZERO);
    }

    #[test]
    fn most_masters_lost_at_once_is_local_until_they_return() {
        let t = Instant::now();
        let mut o = Outage::new(3, WINDOW, HOLD);
        assert_eq!(o.observe(&[true, false, false], t), Change::None);
        assert!(!o.holding(), "one of three is the master's problem");
        assert_eq!(o.observe(&[true, true, false], ms(t, 400)), Change::Started);
        assert!(o.holding());
        assert_eq!(o.deadline(), Some(ms(t, 400) + HOLD));
        assert_eq!(o.observe(&[true, true, true], ms(t, 600)), Change::None);
        assert_eq!(o.observe(&[false, true, true], ms(t, 2000)), Change::None);
        assert_eq!(
            o.observe(&[false, false, true], ms(t, 2500)),
            Change::Recovered
        );
        assert!(!o.holding());
    }

    #[test]
    fn masters_lost_one_after_another_are_theirs() {
        let t = Instant::now();
        let mut o = Outage::new(3, WINDOW, HOLD);
        // One down for maintenance, a second fails much later: two real failures.
        assert_eq!(o.observe(&[true, false, false], t), Change::None);
        assert_eq!(o.observe(&[true, true, false], ms(t, 60_000)), Change::None);
        assert!(!o.holding());
    }

    #[test]
    fn half_is_not_most_and_one_backend_is_never_local() {
        let t = Instant::now();
        let mut o = Outage::new(4, WINDOW, HOLD);
        assert_eq!(o.observe(&[true, true, false, false], t), Change::None);
        let mut one = Outage::new(1, WINDOW, HOLD);
        assert_eq!(one.observe(&[true], t), Change::None);
        let mut two = Outage::new(2, WINDOW, HOLD);
        assert_eq!(two.observe(&[true, true], t), Change::Started);
    }

    #[test]
    fn losses_found_at_a_reload_are_not_simultaneous_with_later_ones() {
        let t = Instant::now() + Duration::from_secs(3600);
        // One lost before the reload; a second a moment after it: two real failures.
        let mut o = Outage::new(3, WINDOW, HOLD);
        o.resume(&[true, false, false], t);
        assert_eq!(o.observe(&[true, true, false], ms(t, 100)), Change::None);
        // A majority lost at the reload starts nothing until it recovers.
        let mut o = Outage::new(3, WINDOW, HOLD);
        o.resume(&[true, true, true], t);
        assert_eq!(o.observe(&[true, true, true], ms(t, 100)), Change::None);
        assert_eq!(o.observe(&[false, false, false], ms(t, 5000)), Change::None);
        assert_eq!(o.observe(&[true, true, true], ms(t, 6000)), Change::Started);
    }

    #[test]
    fn the_hold_runs_out_and_does_not_start_again_until_recovered() {
        let t = Instant::now();
        let mut o = Outage::new(3, WINDOW, HOLD);
        assert_eq!(o.observe(&[true, true, true], t), Change::Started);
        assert_eq!(o.observe(&[true, true, true], t + HOLD), Change::Expired);
        assert!(!o.holding());
        assert_eq!(o.observe(&[true, true, true], t + HOLD * 2), Change::None);
        assert!(!o.holding(), "spent until the majority recovers");
        assert_eq!(o.observe(&[false, false, true], t + HOLD * 3), Change::None);
        // The third has been lost since the start: a new loss of the other two is not
        // "at the same moment" as its.
        assert_eq!(
            o.observe(&[true, true, true], t + HOLD * 3 + WINDOW),
            Change::None
        );
        assert_eq!(
            o.observe(&[false, false, false], t + HOLD * 4),
            Change::None
        );
        assert_eq!(
            o.observe(&[true, true, true], t + HOLD * 5),
            Change::Started
        );
    }

    proptest::proptest! {
        /// Whatever the sequence: closes are only held while more than half are lost,
        /// never longer than the hold, and never with fewer than two backends.
        #[test]
        fn holds_only_a_majority_and_never_past_the_hold(
            n in 1usize..6,
            steps in proptest::collection::vec((proptest::collection::vec(proptest::bool::ANY, 6), 0u64..5_000), 1..60),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut o = Outage::new(n, WINDOW, HOLD);
            let mut started: Option<Instant> = None;
            for (lost, step) in steps {
                now += Duration::from_millis(step);
                let lost = &lost[..n];
                match o.observe(lost, now) {
                    Change::Started => started = Some(now),
                    Change::Recovered | Change::Expired => started = None,
                    Change::None => {}
                }
                if o.holding() {
                    proptest::prop_assert!(n >= 2);
                    proptest::prop_assert!(lost.iter().filter(|l| **l).count() * 2 > n);
                    let s = started.expect("started");
                    proptest::prop_assert!(now.duration_since(s) < HOLD);
                }
            }
        }
    }
}
