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
        Balance::RoundRobin => healthy.clone().next(),
        // `min_by_key` keeps the first minimum, so ties go to the cursor's order.
        Balance::LeastConnections => healthy.min_by_key(|&i| candidates[i].active),
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
            healthy: true,
            drained: true,
            active: 0,
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
