//! Choosing a backend: a pure function of the candidates' state.
//!
//! The proxy asks for one backend per connect attempt, passing which backends were
//! already tried for this client. Healthy backends come first, by policy; when every
//! healthy one was tried (or none is healthy: bootstrap, total outage), the rest are
//! offered once each in turn, so a client is only refused when nothing accepts.

use crate::config::Balance;

/// What the balancer knows about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Whether health checks say it is up (and it is not drained).
    pub healthy: bool,
    /// An operator drained it: never chosen, not even as a fallback.
    pub drained: bool,
    /// Its active proxied connections.
    pub active: usize,
    /// Its share of new connections in thousandths: 1000, or less while it ramps up
    /// after returning (slow start); 0 is treated as 1.
    pub weight: u16,
}

/// A full weight.
pub const FULL_WEIGHT: u16 = 1000;

/// The slow-start weight of a backend up for `up_for` of a `window`: from 1/1000 to
/// [`FULL_WEIGHT`], linearly; full without a window.
pub fn ramp(up_for: std::time::Duration, window: Option<std::time::Duration>) -> u16 {
    match window {
        Some(w) if !w.is_zero() && up_for < w => {
            let permille = up_for.as_millis() * u128::from(FULL_WEIGHT) / w.as_millis().max(1);
            (permille as u16).clamp(1, FULL_WEIGHT)
        }
        _ => FULL_WEIGHT,
    }
}

impl Candidate {
    /// Least-connections load with the weight: a backend at 10% counts its
    /// connections ten times, so it takes new ones until it holds a tenth of the
    /// others' (the `+ 1` makes an empty backend at low weight still count).
    fn load(&self) -> u64 {
        (self.active as u64 + 1) * u64::from(FULL_WEIGHT) / u64::from(self.weight.max(1))
    }
}

/// Which kind of choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// A healthy backend.
    Healthy(usize),
    /// No untried healthy backend is left: an unhealthy one is tried anyway.
    Fallback(usize),
}

impl Pick {
    /// The chosen index.
    pub fn index(self) -> usize {
        match self {
            Pick::Healthy(i) | Pick::Fallback(i) => i,
        }
    }
}

/// Picks the next backend to try, or `None` when every backend was tried.
///
/// `cursor` rotates the starting point (round-robin, and the tie-break among equally
/// loaded backends); the caller advances it once per client. `tried[i]` is true for
/// backends already tried for this client.
pub fn pick(
    policy: Balance,
    cursor: usize,
    candidates: &[Candidate],
    tried: &[bool],
) -> Option<Pick> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    let order = (0..n).map(|k| (cursor + k) % n);
    let untried = |i: &usize| !tried.get(*i).copied().unwrap_or(false);
    let healthy = order
        .clone()
        .filter(untried)
        .filter(|&i| candidates[i].healthy && !candidates[i].drained);
    let chosen = match policy {
        // A ramping backend takes its turn only for its share of cursors (spread by a
        // multiplicative hash), unless it is the only one left.
        Balance::RoundRobin => healthy
            .clone()
            .find(|&i| {
                let w = u64::from(candidates[i].weight.min(FULL_WEIGHT));
                w >= u64::from(FULL_WEIGHT)
                    || (cursor as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1000 < w
            })
            .or_else(|| healthy.clone().next()),
        // `min_by_key` keeps the first minimum, so ties go to the cursor's order.
        Balance::LeastConnections => healthy.min_by_key(|&i| candidates[i].load()),
    };
    if let Some(i) = chosen {
        return Some(Pick::Healthy(i));
    }
    order
        .clone()
        .filter(|&i| !candidates[i].drained)
        .find(untried)
        .map(Pick::Fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(healthy: bool, active: usize) -> Candidate {
        Candidate {
            healthy,
            drained: false,
            active,
            weight: FULL_WEIGHT,
        }
    }

    #[test]
    fn the_ramp_grows_linearly_over_the_window() {
        use std::time::Duration;
        let w = Some(Duration::from_secs(10));
        assert_eq!(ramp(Duration::ZERO, w), 1);
        assert_eq!(ramp(Duration::from_secs(1), w), 100);
        assert_eq!(ramp(Duration::from_secs(5), w), 500);
        assert_eq!(ramp(Duration::from_secs(10), w), FULL_WEIGHT);
        assert_eq!(ramp(Duration::from_secs(60), w), FULL_WEIGHT);
        assert_eq!(ramp(Duration::ZERO, None), FULL_WEIGHT);
        assert_eq!(ramp(Duration::ZERO, Some(Duration::ZERO)), FULL_WEIGHT);
    }

    /// A master back with no connections at 10% weight takes new ones only until it
    /// holds about a tenth of the others', instead of every new one.
    #[test]
    fn least_connections_ramps_a_returned_master() {
        let mut cands = [c(true, 100), c(true, 100), c(true, 0)];
        cands[2].weight = 100;
        let mut got = [0usize; 3];
        for cur in 0..100 {
            let i = pick(Balance::LeastConnections, cur, &cands, &[false; 3])
                .unwrap()
                .index();
            cands[i].active += 1;
            got[i] += 1;
        }
        // Without the ramp it would have taken all 100.
        assert!(got[2] < 20, "{got:?}");
        assert!(cands[2].active * 10 <= cands[0].active + 10, "{cands:?}");
        // At full weight it is level again.
        cands[2].weight = FULL_WEIGHT;
        let i = pick(Balance::LeastConnections, 0, &cands, &[false; 3]).unwrap();
        assert_eq!(i, Pick::Healthy(2));
    }

    #[test]
    fn round_robin_gives_a_ramping_master_its_share_and_never_refuses_it_alone() {
        let mut cands = [c(true, 0), c(true, 0), c(true, 0)];
        cands[1].weight = 250;
        let mut got = [0usize; 3];
        for cur in 0..3000 {
            got[pick(Balance::RoundRobin, cur, &cands, &[false; 3])
                .unwrap()
                .index()] += 1;
        }
        // Full share would be 1,000; at 25% about 250.
        assert!((150..400).contains(&got[1]), "{got:?}");
        // The only healthy one is chosen whatever its weight.
        let alone = [
            c(false, 0),
            Candidate {
                weight: 1,
                ..c(true, 0)
            },
        ];
        for cur in 0..10 {
            assert_eq!(
                pick(Balance::RoundRobin, cur, &alone, &[false; 2]),
                Some(Pick::Healthy(1))
            );
        }
    }

    #[test]
    fn least_connections_prefers_the_idlest_healthy() {
        let cands = [c(true, 5), c(true, 2), c(false, 0), c(true, 3)];
        assert_eq!(
            pick(Balance::LeastConnections, 0, &cands, &[false; 4]),
            Some(Pick::Healthy(1))
        );
    }

    #[test]
    fn least_connections_ties_rotate_with_the_cursor() {
        let cands = [c(true, 1), c(true, 1), c(true, 1)];
        let picks: Vec<_> = (0..3)
            .map(|cur| {
                pick(Balance::LeastConnections, cur, &cands, &[false; 3])
                    .unwrap()
                    .index()
            })
            .collect();
        assert_eq!(picks, [0, 1, 2]);
    }

    #[test]
    fn round_robin_skips_unhealthy() {
        let cands = [c(true, 0), c(false, 0), c(true, 9)];
        let picks: Vec<_> = (0..4)
            .map(|cur| pick(Balance::RoundRobin, cur, &cands, &[false; 3]).unwrap())
            .collect();
        assert_eq!(
            picks,
            [
                Pick::Healthy(0),
                Pick::Healthy(2),
                Pick::Healthy(2),
                Pick::Healthy(0)
            ]
        );
    }

    #[test]
    fn a_retry_goes_to_another_healthy_backend_first() {
        let cands = [c(true, 0), c(false, 0), c(true, 4)];
        let tried = [true, false, false];
        assert_eq!(
            pick(Balance::LeastConnections, 0, &cands, &tried),
            Some(Pick::Healthy(2))
        );
    }

    #[test]
    fn with_no_healthy_left_every_backend_is_tried_once() {
        let cands = [c(false, 0), c(false, 0), c(true, 0)];
        let mut tried = [false; 3];
        let mut seq = Vec::new();
        while let Some(p) = pick(Balance::LeastConnections, 1, &cands, &tried) {
            tried[p.index()] = true;
            seq.push(p);
        }
        assert_eq!(
            seq,
            [Pick::Healthy(2), Pick::Fallback(1), Pick::Fallback(0)]
        );
    }

    #[test]
    fn a_drained_backend_is_never_picked_not_even_as_a_fallback() {
        let drained = Candidate {
            drained: true,
            ..c(true, 0)
        };
        let cands = [drained, c(true, 3), c(false, 0)];
        let mut tried = [false; 3];
        let mut seq = Vec::new();
        while let Some(p) = pick(Balance::LeastConnections, 0, &cands, &tried) {
            tried[p.index()] = true;
            seq.push(p);
        }
        assert_eq!(seq, [Pick::Healthy(1), Pick::Fallback(2)]);
        assert_eq!(pick(Balance::RoundRobin, 0, &[drained], &[false]), None);
    }

    #[test]
    fn nothing_to_pick() {
        assert_eq!(pick(Balance::RoundRobin, 0, &[], &[]), None);
        assert_eq!(pick(Balance::RoundRobin, 7, &[c(true, 0)], &[true]), None);
    }

    proptest::proptest! {
        /// Every backend is offered exactly once per client, healthy ones first.
        #[test]
        fn each_backend_once_healthy_first(
            health in proptest::collection::vec(proptest::bool::ANY, 0..8),
            active in proptest::collection::vec(0usize..5, 8),
            cursor in 0usize..16,
            rr in proptest::bool::ANY,
        ) {
            let cands: Vec<_> = health.iter().zip(&active).map(|(&h, &a)| c(h, a)).collect();
            let policy = if rr { Balance::RoundRobin } else { Balance::LeastConnections };
            let mut tried = vec![false; cands.len()];
            let mut seen_fallback = false;
            let mut count = 0;
            while let Some(p) = pick(policy, cursor, &cands, &tried) {
                proptest::prop_assert!(!tried[p.index()]);
                tried[p.index()] = true;
                count += 1;
                match p {
                    Pick::Healthy(i) => {
                        proptest::prop_assert!(!seen_fallback);
                        proptest::prop_assert!(cands[i].healthy);
                    }
                    Pick::Fallback(i) => {
                        seen_fallback = true;
                        proptest::prop_assert!(!cands[i].healthy);
                    }
                }
            }
            proptest::prop_assert_eq!(count, cands.len());
        }
    }
}
