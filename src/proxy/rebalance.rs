//! Rebalancing after recovery: a paced move of long-lived connections from the most
//! loaded masters to the least loaded ones (a master that came back).
//!
//! Kubernetes clients hold their connections for hours (WATCH streams, HTTP/2), so a
//! master that returns after an outage or an upgrade gets only the new connections and
//! stays nearly idle while the others carry everything (Kubernetes issue 48610; the
//! apiserver's `--goaway-chance` exists for it). An L4 proxy cannot move a stream; it
//! can close one, and the client reconnects, to the least loaded master under
//! least-connections. So the moves are closes, and they must be few and slow: each
//! costs its client a reconnect (and perhaps a re-list).
//!
//! Sans-IO: the proxy's health watcher calls [`Rebalancer::tick`] periodically with
//! each backend's standing and open connections and an injected `Instant`; the plan
//! says how many connections to close on each backend, and [`choose`] picks which.
//!
//! Rules:
//! - Only backends that are up, not drained and not ramping take part. While one ramps
//!   (slow start), nothing moves: the ramp already sends it new connections.
//! - The spread is within bound when the most and the least loaded backends differ by
//!   at most `spread` of the mean, or by one connection (whole connections cannot do
//!   better). Moving starts only past twice the bound (so the churn of a small cluster
//!   starts nothing) and stops as soon as the bound is reached.
//! - At most `rate` of the taking-part connections move per second (a token budget,
//!   capped at one second's worth, starting empty at each imbalance).
//! - Each move closes one connection of the most loaded backend, counted as landing on
//!   the least loaded one (where least-connections sends the reconnect).
//! - A closed connection's client needs a moment to reconnect. Until it has (the total
//!   grew back), or for [`SETTLE`] at most, the move counts as in flight: added to the
//!   least loaded backends before planning, so that slow reconnects do not make the
//!   spread look worse than it is and draw more moves.
//! - Of a backend's connections, only those at least `min_age` old move, the longest
//!   idle first: a client that just reconnected is never moved again, and a quiet
//!   stream costs its client least.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a move counts as in flight at most: its client should have reconnected by
/// then (informers and kubelets reconnect within about a second).
pub const SETTLE: Duration = Duration::from_secs(5);

/// What an operator sets (`rebalance:` of a frontend).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The share (0 to 1) of the taking-part connections moved per second at most.
    pub rate: f64,
    /// Connections younger than this are never moved.
    pub min_age: Duration,
    /// The bound (a share of the mean, 0 to 1) within which the spread counts as even.
    pub spread: f64,
}

/// One backend at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Down, drained or removed: its connections are neither moved nor counted.
    Out,
    /// Up, but its slow start still ramps: nothing moves until it ends.
    Ramping,
    /// Taking part, with this many open connections.
    In(usize),
}

/// A state change worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The spread went out of bound: moving starts.
    Started,
    /// The spread is within bound again.
    Done,
    /// Moving stopped before the spread was even: fewer than two backends take part,
    /// or one ramps.
    Paused,
}

/// One tick's decisions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Connections to close, per backend (in the order given).
    pub moves: Vec<usize>,
    /// A change of phase, to log.
    pub phase: Option<Phase>,
}

/// The rebalancer of one frontend.
#[derive(Debug, Clone)]
pub struct Rebalancer {
    settings: Settings,
    /// Moves allowed now (fractional: the rate accrues between ticks).
    budget: f64,
    /// The most `budget` may hold: one second's worth at the last tick.
    cap: f64,
    last: Option<Instant>,
    moving: bool,
    /// Moves whose clients have not reconnected yet: when, and how many.
    in_flight: VecDeque<(Instant, usize)>,
    /// The connections taking part after the last tick's moves.
    expected: usize,
}

impl Rebalancer {
    /// A rebalancer that moves nothing until the spread goes out of bound.
    pub fn new(settings: Settings) -> Self {
        Rebalancer {
            settings,
            budget: 0.0,
            cap: 1.0,
            last: None,
            moving: false,
            in_flight: VecDeque::new(),
            expected: 0,
        }
    }

    /// Whether it is moving connections now.
    pub fn moving(&self) -> bool {
        self.moving
    }

    /// The plan for `now`, from every backend's standing.
    pub fn tick(&mut self, backends: &[Standing], now: Instant) -> Plan {
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |l| now.saturating_duration_since(l));
        self.last = Some(now);
        let mut plan = Plan {
            moves: vec![0; backends.len()],
            phase: None,
        };
        let taking_part: Vec<(usize, usize)> = backends
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Standing::In(n) => Some((i, *n)),
                _ => None,
            })
            .collect();
        let total: usize = taking_part.iter().map(|(_, n)| n).sum();
        // Connections that came since the last tick are taken for moved clients back.
        let mut arrived = total.saturating_sub(self.expected);
        self.expected = total;
        while let Some((at, n)) = self.in_flight.front_mut() {
            if now.saturating_duration_since(*at) >= SETTLE {
                self.in_flight.pop_front();
            } else if arrived >= *n {
                arrived -= *n;
                self.in_flight.pop_front();
            } else {
                *n -= arrived;
                break;
            }
        }
        let ramping = backends.contains(&Standing::Ramping);
        if ramping || taking_part.len() < 2 {
            plan.phase = self.stop(Phase::Paused);
            return plan;
        }
        let mut counts = taking_part;
        let in_flight: usize = self.in_flight.iter().map(|(_, n)| n).sum();
        for _ in 0..in_flight {
            let least = extreme(&counts, false);
            counts[least].1 += 1;
        }
        let mean = (total + in_flight) as f64 / counts.len() as f64;
        let allowed = (self.settings.spread * mean).max(1.0);
        if within(&counts, allowed) {
            plan.phase = self.stop(Phase::Done);
            return plan;
        }
        // Hysteresis: a spread just past the bound (the churn of a small cluster) does
        // not start moving; twice the bound does, and moving goes on down to the bound.
        if !self.moving && within(&counts, 2.0 * allowed) {
            return plan;
        }
        if !self.moving {
            // The budget accrues from here on.
            self.moving = true;
            self.budget = 0.0;
            plan.phase = Some(Phase::Started);
            return plan;
        }
        let per_second = self.settings.rate * (total + in_flight) as f64;
        self.cap = per_second.max(1.0);
        self.budget = (self.budget + per_second * elapsed.as_secs_f64()).min(self.cap);
        while self.budget >= 1.0 && !within(&counts, allowed) {
            let most = extreme(&counts, true);
            let least = extreme(&counts, false);
            counts[most].1 -= 1;
            counts[least].1 += 1;
            plan.moves[counts[most].0] += 1;
            self.budget -= 1.0;
        }
        let moved: usize = plan.moves.iter().sum();
        if moved > 0 {
            self.in_flight.push_back((now, moved));
            self.expected = self.expected.saturating_sub(moved);
        }
        plan
    }

    /// Gives back `n` planned moves of the last tick that found no connection old
    /// enough to close.
    pub fn unused(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.budget = (self.budget + n as f64).min(self.cap);
        self.expected += n;
        if let Some((_, last)) = self.in_flight.back_mut() {
            *last = last.saturating_sub(n);
            if *last == 0 {
                self.in_flight.pop_back();
            }
        }
    }

    fn stop(&mut self, why: Phase) -> Option<Phase> {
        self.budget = 0.0;
        std::mem::replace(&mut self.moving, false).then_some(why)
    }
}

/// Whether the most and the least loaded of `counts` differ by at most `allowed`.
fn within(counts: &[(usize, usize)], allowed: f64) -> bool {
    let max = counts.iter().map(|c| c.1).max().unwrap_or(0);
    let min = counts.iter().map(|c| c.1).min().unwrap_or(0);
    (max - min) as f64 <= allowed
}

/// The position in `counts` of the most (or least) loaded backend; ties: the first.
fn extreme(counts: &[(usize, usize)], most: bool) -> usize {
    let mut best = 0;
    for (i, c) in counts.iter().enumerate() {
        if (most && c.1 > counts[best].1) || (!most && c.1 < counts[best].1) {
            best = i;
        }
    }
    best
}

/// One open connection of a backend, as [`choose`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// Its identity (the caller's).
    pub id: u64,
    /// How long it has been open.
    pub age: Duration,
    /// How long no data moved on it.
    pub idle: Duration,
}

/// Which `k` of `conns` to close, as positions in `conns`: only those at least
/// `min_age` old, the longest idle first (ties: the oldest, then the lowest id).
pub fn choose(conns: &[Conn], k: usize, min_age: Duration) -> Vec<usize> {
    let mut old: Vec<usize> = (0..conns.len())
        .filter(|&i| conns[i].age >= min_age)
        .collect();
    old.sort_unstable_by(|&a, &b| {
        let (a, b) = (&conns[a], &conns[b]);
        b.idle
            .cmp(&a.idle)
            .then(b.age.cmp(&a.age))
            .then(a.id.cmp(&b.id))
    });
    old.truncate(k);
    old
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SETTINGS: Settings = Settings {
        rate: 0.1,
        min_age: Duration::from_secs(60),
        spread: 0.1,
    };

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    #[test]
    fn an_even_spread_moves_nothing() {
        let t0 = Instant::now();
        let mut r = Rebalancer::new(SETTINGS);
        let even = [Standing::In(100), Standing::In(95), Standing::In(104)];
        for s in 0..10 {
            assert_eq!(r.tick(&even, secs(t0, f64::from(s))).moves, vec![0, 0, 0]);
        }
        assert!(!r.moving());
        // Whole connections: 1, 0 is as even as it gets.
        let one = [Standing::In(1), Standing::In(0)];
        assert_eq!(r.tick(&one, secs(t0, 20.0)).moves, vec![0, 0]);
    }

    #[test]
    fn a_returned_master_gets_moves_from_the_most_loaded_at_the_rate() {
        let t0 = Instant::now();
        let mut r = Rebalancer::new(SETTINGS);
        // 300 connections, 10 %/s: 30 a second at most.
        let state = [Standing::In(160), Standing::In(140), Standing::In(0)];
        let first = r.tick(&state, t0);
        assert_eq!(first.phase, Some(Phase::Started));
        assert_eq!(first.moves, vec![0, 0, 0], "the budget starts empty");
        let next = r.tick(&state, secs(t0, 0.5));
        assert_eq!(next.phase, None);
        // 15 moves, all from the most loaded (160 -> 145, still above 140).
        assert_eq!(next.moves, vec![15, 0, 0]);
        // A long gap accrues one second's worth at most.
        let after_gap = r.tick(&state, secs(t0, 60.0));
        // 20 to even the two loaded ones, then alternating.
        assert_eq!(after_gap.moves, vec![25, 5, 0]);
    }

    #[test]
    fn moving_stops_once_within_the_bound() {
        let t0 = Instant::now();
        let mut r = Rebalancer::new(SETTINGS);
        r.tick(&[Standing::In(100), Standing::In(0)], t0);
        // Mean 50, bound 5: from 100/0 it would take 48 moves; the budget holds one
        // second's worth (10) however long since the last tick.
        let plan = r.tick(&[Standing::In(100), Standing::In(0)], secs(t0, 2.0));
        assert_eq!(plan.moves, vec![10, 0]);
        // The simulated moves stop at the bound, not past it.
        let plan = r.tick(&[Standing::In(56), Standing::In(44)], secs(t0, 10.0));
        assert_eq!(plan.moves, vec![4, 0]);
        let done = r.tick(&[Standing::In(52), Standing::In(48)], secs(t0, 11.0));
        assert_eq!(done.phase, Some(Phase::Done));
        assert_eq!(done.moves, vec![0, 0]);
        assert!(!r.moving());
    }

    #[test]
    fn moves_whose_clients_have_not_reconnected_yet_are_counted_as_landed() {
        let t0 = Instant::now();
        let s = Settings {
            rate: 1.0,
            ..SETTINGS
        };
        let mut r = Rebalancer::new(s);
        r.tick(&[Standing::In(100), Standing::In(0)], t0);
        // Mean 50, bound 5: 48 moves make it 52/48.
        let plan = r.tick(&[Standing::In(100), Standing::In(0)], secs(t0, 1.0));
        assert_eq!(plan.moves, vec![48, 0]);
        // Closed, not reconnected yet: 52/0 is 52/48 with the 48 in flight.
        let plan = r.tick(&[Standing::In(52), Standing::In(0)], secs(t0, 1.5));
        assert_eq!(plan.moves, vec![0, 0]);
        // Half of them came back.
        let plan = r.tick(&[Standing::In(52), Standing::In(24)], secs(t0, 2.0));
        assert_eq!(plan.moves, vec![0, 0]);
        // The others never did: after SETTLE, the spread is what it looks like.
        let plan = r.tick(&[Standing::In(52), Standing::In(24)], secs(t0, 7.0));
        assert_eq!(plan.phase, Some(Phase::Started));
        let plan = r.tick(&[Standing::In(52), Standing::In(24)], secs(t0, 8.0));
        assert_eq!(plan.moves, vec![13, 0], "39/37 is within 3.8");
    }

    #[test]
    fn nothing_moves_while_one_ramps_or_fewer_than_two_take_part() {
        let t0 = Instant::now();
        let mut r = Rebalancer::new(SETTINGS);
        r.tick(&[Standing::In(100), Standing::In(0)], t0);
        assert!(r.moving());
        let ramp = r.tick(&[Standing::In(100), Standing::Ramping], secs(t0, 5.0));
        assert_eq!(ramp.phase, Some(Phase::Paused));
        assert_eq!(ramp.moves, vec![0, 0]);
        // Down and drained backends neither give nor take.
        let out = r.tick(
            &[Standing::In(100), Standing::Out, Standing::Out],
            secs(t0, 6.0),
        );
        assert_eq!(out.moves, vec![0, 0, 0]);
        assert_eq!(out.phase, None, "paused already");
        let two = r.tick(
            &[Standing::In(100), Standing::Out, Standing::In(10)],
            secs(t0, 7.0),
        );
        assert_eq!(two.phase, Some(Phase::Started));
        assert_eq!(two.moves, vec![0, 0, 0], "the budget restarts empty");
        let more = r.tick(
            &[Standing::In(100), Standing::Out, Standing::In(10)],
            secs(t0, 8.0),
        );
        assert_eq!(more.moves, vec![11, 0, 0]);
    }

    #[test]
    fn unused_moves_are_given_back() {
        let t0 = Instant::now();
        let mut r = Rebalancer::new(SETTINGS);
        let state = [Standing::In(100), Standing::In(0)];
        r.tick(&state, t0);
        assert_eq!(r.tick(&state, secs(t0, 0.5)).moves, vec![5, 0]);
        // None was old enough: the next tick may try them again.
        r.unused(5);
        assert_eq!(r.tick(&state, secs(t0, 1.0)).moves, vec![10, 0]);
    }

    #[test]
    fn the_longest_idle_old_enough_connections_are_chosen() {
        let c = |id, age, idle| Conn {
            id,
            age: Duration::from_secs(age),
            idle: Duration::from_secs(idle),
        };
        let conns = [
            c(1, 600, 5),
            c(2, 30, 30), // too young, however idle
            c(3, 900, 300),
            c(4, 120, 100),
            c(5, 700, 100), // as idle as 4, older
        ];
        let min_age = Duration::from_secs(60);
        let ids = |k| -> Vec<u64> {
            choose(&conns, k, min_age)
                .into_iter()
                .map(|i| conns[i].id)
                .collect()
        };
        assert_eq!(ids(2), vec![3, 5]);
        assert_eq!(ids(10), vec![3, 5, 4, 1]);
        assert!(ids(0).is_empty());
    }

    proptest! {
        /// Whatever the counts: never more moves than the budget allows, never from a
        /// backend that does not take part, never so many that the spread inverts,
        /// and moves only from backends above the mean.
        #[test]
        fn moves_are_bounded_and_only_from_the_loaded(
            counts in proptest::collection::vec(proptest::option::of(0usize..2000), 2..6),
            rate in 0.001f64..1.0,
            spread in 0.0f64..0.5,
            gap_ms in 0u64..5000,
        ) {
            let t0 = Instant::now();
            let s = Settings { rate, min_age: Duration::ZERO, spread };
            let mut r = Rebalancer::new(s);
            let standing: Vec<Standing> =
                counts.iter().map(|c| c.map_or(Standing::Out, Standing::In)).collect();
            r.tick(&standing, t0);
            let plan = r.tick(&standing, t0 + Duration::from_millis(gap_ms));
            let taking: Vec<usize> = counts.iter().flatten().copied().collect();
            let total: usize = taking.iter().sum();
            let moved: usize = plan.moves.iter().sum();
            let per_second = rate * total as f64;
            prop_assert!(moved as f64 <= per_second.max(1.0) + 1e-9);
            if taking.len() >= 2 {
                let mean = total as f64 / taking.len() as f64;
                for (i, m) in plan.moves.iter().enumerate() {
                    if *m > 0 {
                        let n = counts[i].expect("moves only from backends taking part");
                        prop_assert!(n as f64 > mean, "moved from {n}, mean {mean}");
                        prop_assert!(*m <= n);
                    }
                }
            } else {
                prop_assert_eq!(moved, 0);
            }
        }
    }
}
