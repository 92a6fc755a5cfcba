//! The checker shell: one task per backend runs its probe on a jittered interval,
//! feeds the rise/fall machine and publishes transitions.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::health::probe::{ProbeSetupError, Prober};
use crate::health::state::{Outcome, RiseFall};
use crate::health::{jittered, HealthPublisher};

/// Builds every prober (so certificate errors surface before anything starts).
pub fn build_probers(config: &Config) -> Result<Vec<Prober>, ProbeSetupError> {
    config
        .frontends
        .iter()
        .map(|f| Prober::new(&f.check, &format!("{}.check", f.name)))
        .collect()
}

/// Starts one checker task per backend of every frontend on `tracker`.
pub fn spawn_checkers(
    config: &Config,
    probers: Vec<Prober>,
    publisher: &HealthPublisher,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    for (fi, (frontend, prober)) in config.frontends.iter().zip(probers).enumerate() {
        for (bi, backend) in frontend.backends.iter().enumerate() {
            let task = CheckTask {
                frontend: frontend.name.clone(),
                frontend_index: fi,
                backend: backend.name.clone(),
                backend_index: bi,
                addr: backend.addr,
                prober: prober.clone(),
                interval: frontend.check.interval,
                timeout: frontend.check.timeout,
                jitter_percent: frontend.check.jitter_percent,
                machine: RiseFall::new(frontend.check.rise, frontend.check.fall),
                publisher: publisher.clone(),
            };
            tracker.spawn(task.run(cancel.clone()));
        }
    }
}

struct CheckTask {
    frontend: String,
    frontend_index: usize,
    backend: String,
    backend_index: usize,
    addr: std::net::SocketAddr,
    prober: Prober,
    interval: Duration,
    timeout: Duration,
    jitter_percent: u8,
    machine: RiseFall,
    publisher: HealthPublisher,
}

impl CheckTask {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            let outcome = tokio::select! {
                o = self.prober.probe(self.addr, self.timeout) => o,
                _ = cancel.cancelled() => return,
            };
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
            if t.to.is_up() {
                tracing::info!(frontend = %self.frontend, backend = %self.backend, addr = %self.addr,
                    from = %t.from, to = %t.to, "backend is up");
            } else {
                tracing::warn!(frontend = %self.frontend, backend = %self.backend, addr = %self.addr,
                    from = %t.from, to = %t.to, reason, "backend is down");
            }
            self.publisher
                .publish(self.frontend_index, self.backend_index, t.to, reason);
        } else if let Outcome::Inconclusive { reason } = outcome {
            tracing::warn!(frontend = %self.frontend, backend = %self.backend, reason = %reason,
                "probe could not run for a local reason; not counted against the backend");
        } else if let Outcome::Failure { reason, .. } = outcome {
            tracing::debug!(frontend = %self.frontend, backend = %self.backend, reason = %reason, "probe failed");
        }
    }
}
