//! Counters of one backend's checks, for metrics: failures by kind, transitions by
//! target state and reason, and a histogram of probe durations. Relaxed atomics,
//! written by the backend's checker task once per probe, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{BackendId, Config};
use crate::health::state::{DownCause, FailureKind, Status};

/// The check counters of every backend, built once from the config.
#[derive(Debug, Clone, Default)]
pub struct HealthStats {
    by_backend: Vec<(BackendId, String, Arc<CheckStats>)>,
}

impl HealthStats {
    /// Zeroed counters for every backend of `config`.
    pub fn new(config: &Config) -> Self {
        HealthStats {
            by_backend: config
                .backends()
                .map(|b| (b.id, b.name.clone(), Arc::new(CheckStats::default())))
                .collect(),
        }
    }

    /// The counters for a reloaded `config`: masters the plan keeps keep theirs.
    pub fn reloaded(&self, config: &Config, plan: &crate::config::diff::ReloadPlan) -> Self {
        use crate::config::diff::FrontendChange;
        HealthStats {
            by_backend: config
                .backends()
                .map(|b| {
                    let old = plan
                        .frontends
                        .iter()
                        .find_map(|c| match c {
                            FrontendChange::Kept { kind, backends, .. }
                                if *kind == b.id.frontend =>
                            {
                                backends.old_of_new.get(b.id.master).copied().flatten()
                            }
                            _ => None,
                        })
                        .and_then(|i| {
                            self.get(BackendId {
                                frontend: b.id.frontend,
                                master: i,
                            })
                        });
                    let stats = old.cloned().unwrap_or_default();
                    (b.id, b.name.clone(), stats)
                })
                .collect(),
        }
    }

    /// One backend's counters.
    pub fn get(&self, id: BackendId) -> Option<&Arc<CheckStats>> {
        self.by_backend
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, s)| s)
    }

    /// Every backend's identity, name and counters, in config order.
    pub fn iter(&self) -> impl Iterator<Item = (BackendId, &str, &CheckStats)> {
        self.by_backend
            .iter()
            .map(|(id, name, s)| (*id, name.as_str(), &**s))
    }
}

/// Upper bounds of the probe duration histogram, in seconds.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The states a transition can go to, as metrics labels.
pub const TRANSITION_TARGETS: [&str; 4] = ["up", "not_ready", "unreachable", "unresponsive"];

/// A transition's reason label: `ok` for a transition up, else the failure kind.
pub const fn reason_label(reason: Option<FailureKind>) -> &'static str {
    match reason {
        None => "ok",
        Some(k) => k.as_str(),
    }
}

/// The checks of one backend.
#[derive(Debug, Default)]
pub struct CheckStats {
    /// Failed probes, by [`FailureKind::index`].
    failures: [AtomicU64; FailureKind::ALL.len()],
    /// Transitions by target (`TRANSITION_TARGETS`) and reason (0: ok, then
    /// [`FailureKind::index`] + 1).
    transitions: [[AtomicU64; FailureKind::ALL.len() + 1]; TRANSITION_TARGETS.len()],
    /// Probe durations: one count per bucket (the last is +Inf), not cumulative.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    /// Sum of probe durations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// One histogram, read at once: cumulative buckets as Prometheus wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationHistogram {
    /// Sum of the observations, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
    /// (upper bound, cumulative count), the last bound +Inf.
    pub buckets: Vec<(f64, u64)>,
}

impl CheckStats {
    /// Records one finished probe (not inconclusive ones: they say nothing about the
    /// backend).
    pub fn record_probe(&self, took: Duration, failure: Option<FailureKind>) {
        let secs = took.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(kind) = failure {
            self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a transition into `to` because of `reason` (`None`: checks passed).
    pub fn record_transition(&self, to: Status, reason: Option<FailureKind>) {
        let target = match to {
            Status::Up => 0,
            Status::Down(DownCause::NotReady) => 1,
            Status::Down(DownCause::Unreachable) => 2,
            Status::Down(DownCause::Unresponsive) => 3,
            Status::Unknown => return,
        };
        let r = reason.map_or(0, |k| k.index() + 1);
        self.transitions[target][r].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed probes of this kind.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind.index()].load(Ordering::Relaxed)
    }

    /// Transitions into `TRANSITION_TARGETS[target]` with this reason.
    pub fn transitions(&self, target: usize, reason: Option<FailureKind>) -> u64 {
        let r = reason.map_or(0, |k| k.index() + 1);
        self.transitions
            .get(target)
            .map_or(0, |t| t[r].load(Ordering::Relaxed))
    }

    /// The probe durations so far.
    pub fn durations(&self) -> DurationHistogram {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let bound = DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        DurationHistogram {
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_into_cumulative_buckets() {
        let s = CheckStats::default();
        s.record_probe(Duration::from_micros(500), None);
        s.record_probe(Duration::from_millis(30), Some(FailureKind::HttpStatus));
        s.record_probe(Duration::from_secs(9), Some(FailureKind::Timeout));
        let h = s.durations();
        assert_eq!(h.count, 3);
        assert!((h.sum - 9.0305).abs() < 1e-9);
        let at = |bound: f64| h.buckets.iter().find(|b| b.0 == bound).unwrap().1;
        assert_eq!(at(0.001), 1);
        assert_eq!(at(0.025), 1);
        assert_eq!(at(0.05), 2);
        assert_eq!(at(5.0), 2);
        assert_eq!(at(f64::INFINITY), 3);
        assert_eq!(s.failures(FailureKind::Timeout), 1);
        assert_eq!(s.failures(FailureKind::HttpStatus), 1);
        assert_eq!(s.failures(FailureKind::Refused), 0);
    }

    #[test]
    fn transitions_are_counted_by_target_and_reason() {
        let s = CheckStats::default();
        s.record_transition(Status::Up, None);
        s.record_transition(
            Status::Down(DownCause::Unreachable),
            Some(FailureKind::Refused),
        );
        s.record_transition(
            Status::Down(DownCause::Unreachable),
            Some(FailureKind::Refused),
        );
        s.record_transition(Status::Unknown, None);
        assert_eq!(s.transitions(0, None), 1);
        assert_eq!(s.transitions(2, Some(FailureKind::Refused)), 2);
        assert_eq!(s.transitions(1, Some(FailureKind::Refused)), 0);
    }
}
