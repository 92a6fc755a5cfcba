//! The checker shell: one task per backend runs its probe on a jittered interval,
//! feeds the rise/fall machine and publishes transitions.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::sync::Arc;

use crate::config::Config;
use crate::events::{Change, History};
use crate::health::probe::{ProbeSetupError, Prober};
use crate::health::state::{Outcome, RiseFall};
use crate::health::stats::{CheckStats, HealthStats};
use crate::health::{jittered, HealthPublisher};

/// Builds every prober (so certificate errors surface before anything starts).
pub fn build_probers(config: &Config) -> Result<Vec<Prober>, ProbeSetupError> {
    config
        .frontends
        .iter()
        .map(|f| Prober::new(&f.check, &format!("{}.check", f.kind)))
        .collect()
}

/// Where the checkers report besides the health view: counters and the history.
#[derive(Debug, Clone, Default)]
pub struct Observers {
    /// Per-backend check counters.
    pub stats: HealthStats,
    /// Transitions are recorded here.
    pub history: History,
}

/// Starts one checker task per backend of every frontend on `tracker`, numbered for
/// `start`'s generation. A backend whose status in `start` is known (a reload kept it)
/// resumes at that status and probes after one interval, so a changed check applies
/// from the next probe; the others probe at once.
pub fn spawn_checkers(
    config: &Config,
    probers: Vec<Prober>,
    publisher: &HealthPublisher,
    observers: &Observers,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    start: &crate::health::HealthSnapshot,
) {
    for (frontend, prober) in config.frontends.iter().zip(probers) {
        for backend in &frontend.backends {
            let known = start
                .backend(backend.id)
                .map_or(crate::health::Status::Unknown, |b| b.status);
            let task = CheckTask {
                generation: start.generation,
                resume: known != crate::health::Status::Unknown,
                id: backend.id,
                backend: backend.name.clone(),
                addr: backend.addr,
                prober: prober.clone(),
                interval: frontend.check.interval,
                timeout: frontend.check.timeout,
                jitter_percent: frontend.check.jitter_percent,
                machine: RiseFall::resume(frontend.check.rise, frontend.check.fall, known),
                publisher: publisher.clone(),
                stats: observers.stats.get(backend.id).cloned().unwrap_or_default(),
                history: observers.history.clone(),
            };
            tracker.spawn(task.run(cancel.clone()));
        }
    }
}

struct CheckTask {
    generation: u64,
    /// Resumed at a known status: the first probe waits one interval.
    resume: bool,
    id: crate::config::BackendId,
    backend: String,
    addr: std::net::SocketAddr,
    prober: Prober,
    interval: Duration,
    timeout: Duration,
    jitter_percent: u8,
    machine: RiseFall,
    publisher: HealthPublisher,
    stats: Arc<CheckStats>,
    history: History,
}

impl CheckTask {
    async fn run(mut self, cancel: CancellationToken) {
        if self.resume {
            let wait = jittered(self.interval, self.jitter_percent, fastrand::f64());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return,
            }
        }
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                o = self.prober.probe(self.addr, self.timeout) => o,
            };
            if !matches!(outcome, Outcome::Inconclusive { .. }) {
                let failure = match &outcome {
                    Outcome::Failure { kind, .. } => Some(*kind),
                    _ => None,
                };
                self.stats.record_probe(started.elapsed(), failure);
            }
            self.handle(&outcome);
            let wait = jittered(self.interval, self.jitter_percent, fastrand::f64());
            tokio::select! {
                _ = tokio::time::sleep_until(started + wait) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    fn handle(&mut self, outcome: &Outcome) {
        let reason = match outcome {
            Outcome::Success => "ok",
            Outcome::Failure { reason, .. } | Outcome::Inconclusive { reason } => reason.as_str(),
        };
        if let Some(t) = self.machine.handle_outcome(outcome) {
            let kind = match outcome {
                Outcome::Failure { kind, .. } => Some(*kind),
                _ => None,
            };
            self.stats.record_transition(t.to, kind);
            self.history.record(
                Change::Backend {
                    id: self.id,
                    name: self.backend.clone(),
                    addr: self.addr,
                    from: t.from,
                    to: t.to,
                },
                reason,
            );
            if t.to.is_up() {
                tracing::info!(frontend = %self.id.frontend, backend = %self.backend, addr = %self.addr,
                    from = %t.from, to = %t.to, "backend is up");
            } else {
                tracing::warn!(frontend = %self.id.frontend, backend = %self.backend, addr = %self.addr,
                    from = %t.from, to = %t.to, reason, "backend is down");
            }
            self.publisher
                .publish(self.generation, self.id, t.to, reason);
        } else if let Outcome::Inconclusive { reason } = outcome {
            tracing::warn!(frontend = %self.id.frontend, backend = %self.backend, reason = %reason,
                "probe could not run for a local reason; not counted against the backend");
        } else if let Outcome::Failure { reason, .. } = outcome {
            tracing::debug!(frontend = %self.id.frontend, backend = %self.backend, reason = %reason, "probe failed");
        }
    }
}
