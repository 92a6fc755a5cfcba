//! Health: one source of truth.
//!
//! Checkers ([`checker`]) probe every backend of every frontend with a [`probe::Prober`]
//! and feed the results to a [`state::RiseFall`] machine. Transitions are published in
//! one [`HealthView`] (a `tokio::sync::watch` of a [`HealthSnapshot`]). The proxy, and
//! later the VRRP priority tracker, the DNS updater and the metrics, read that view;
//! nothing else probes.

pub mod checker;
pub mod probe;
pub mod state;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::{BackendId, Config, FrontendKind};
pub use state::{DownCause, Outcome, Status};

/// Health of every backend of every frontend, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSnapshot {
    /// Which config this snapshot is numbered for: 0 at start, one more per reload
    /// that renumbers or re-checks backends. Checkers and proxy watchers of an older
    /// generation never act on a newer one.
    pub generation: u64,
    /// In config order.
    pub frontends: Vec<FrontendHealth>,
}

/// One frontend's backends.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendHealth {
    /// The frontend.
    pub kind: FrontendKind,
    /// In config order (the same index as `Frontend::backends`).
    pub backends: Vec<BackendHealth>,
    /// Why its listeners cannot accept (out of descriptors or memory), while they
    /// cannot: this node cannot serve through the proxy meanwhile.
    pub accept_error: Option<String>,
}

/// One backend's health.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendHealth {
    /// Its identity.
    pub id: BackendId,
    /// The backend's name.
    pub name: String,
    /// Where it is probed.
    pub addr: SocketAddr,
    /// Its status.
    pub status: Status,
    /// Why it has this status (the last probe's failure, or `ok`).
    pub reason: String,
    /// When the status last changed (wall clock, for operators).
    pub since: Option<SystemTime>,
    /// An operator drained it (`apivip drain`): no new connections, existing ones
    /// closed after `not_ready_grace`, whatever its health says.
    pub drained: bool,
}

impl BackendHealth {
    /// Whether it may get new connections: healthy and not drained.
    pub fn is_serving(&self) -> bool {
        self.status.is_up() && !self.drained
    }

    /// The status the proxy acts on: a drained backend is treated as not ready (no
    /// new connections; existing ones get the grace), unless it is unreachable anyway
    /// (its connections close at once).
    pub fn routing_status(&self) -> Status {
        match self.status {
            Status::Down(DownCause::Unreachable) => self.status,
            _ if self.drained => Status::Down(DownCause::NotReady),
            other => other,
        }
    }
}

impl HealthSnapshot {
    /// Every backend `Unknown`, as at start.
    pub fn initial(config: &Config) -> Self {
        HealthSnapshot {
            generation: 0,
            frontends: config
                .frontends
                .iter()
                .map(|f| FrontendHealth {
                    kind: f.kind,
                    backends: f
                        .backends
                        .iter()
                        .map(|b| BackendHealth {
                            id: b.id,
                            name: b.name.clone(),
                            addr: b.addr,
                            status: Status::Unknown,
                            reason: "not probed yet".to_owned(),
                            since: None,
                            drained: false,
                        })
                        .collect(),
                    accept_error: None,
                })
                .collect(),
        }
    }

    /// The snapshot for a reloaded `config`, numbered `generation`: every master the
    /// plan keeps keeps its status, reason, time and drain; added ones are `Unknown`.
    pub fn reloaded(
        &self,
        config: &Config,
        plan: &crate::config::diff::ReloadPlan,
        generation: u64,
    ) -> Self {
        use crate::config::diff::FrontendChange;
        let mut next = HealthSnapshot::initial(config);
        next.generation = generation;
        for f in &mut next.frontends {
            let (Some(old), Some(FrontendChange::Kept { backends: map, .. })) = (
                self.frontend(f.kind),
                plan.frontends.iter().find(|c| c.kind() == f.kind),
            ) else {
                continue;
            };
            f.accept_error.clone_from(&old.accept_error);
            for (b, from) in f.backends.iter_mut().zip(&map.old_of_new) {
                if let Some(o) = from.and_then(|i| old.backends.get(i)) {
                    b.status = o.status;
                    b.reason.clone_from(&o.reason);
                    b.since = o.since;
                    b.drained = o.drained;
                }
            }
        }
        next
    }

    /// The frontend of this kind.
    pub fn frontend(&self, kind: FrontendKind) -> Option<&FrontendHealth> {
        self.frontends.iter().find(|f| f.kind == kind)
    }

    /// The backend with this identity.
    pub fn backend(&self, id: BackendId) -> Option<&BackendHealth> {
        self.frontend(id.frontend)?.backends.get(id.master)
    }

    fn backend_mut(&mut self, id: BackendId) -> Option<&mut BackendHealth> {
        self.frontends
            .iter_mut()
            .find(|f| f.kind == id.frontend)?
            .backends
            .get_mut(id.master)
    }
}

/// The read side of the health view: cheap to clone, every reader sees every change.
#[derive(Debug, Clone)]
pub struct HealthView {
    rx: watch::Receiver<Arc<HealthSnapshot>>,
}

/// The write side, held by the checkers.
#[derive(Debug, Clone)]
pub struct HealthPublisher {
    tx: Arc<watch::Sender<Arc<HealthSnapshot>>>,
}

/// A new view with every backend `Unknown`.
pub fn channel(initial: HealthSnapshot) -> (HealthPublisher, HealthView) {
    let (tx, rx) = watch::channel(Arc::new(initial));
    (HealthPublisher { tx: Arc::new(tx) }, HealthView { rx })
}

impl HealthView {
    /// The current snapshot.
    pub fn current(&self) -> Arc<HealthSnapshot> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change; `None` when the publisher is gone.
    pub async fn changed(&mut self) -> Option<Arc<HealthSnapshot>> {
        self.rx.changed().await.ok()?;
        Some(self.rx.borrow_and_update().clone())
    }

    /// Marks the current snapshot as seen and returns it.
    pub fn current_and_mark_seen(&mut self) -> Arc<HealthSnapshot> {
        self.rx.borrow_and_update().clone()
    }
}

impl HealthPublisher {
    /// Records a backend's new status and reason; readers are woken. Ignored when
    /// the view moved to another `generation` (a checker of a reloaded config).
    pub fn publish(&self, generation: u64, id: BackendId, status: Status, reason: &str) {
        self.tx.send_if_modified(|snap| {
            if snap.generation != generation {
                return false;
            }
            match Arc::make_mut(snap).backend_mut(id) {
                Some(b) => {
                    b.status = status;
                    b.reason = reason.to_owned();
                    b.since = Some(SystemTime::now());
                    true
                }
                None => false,
            }
        });
    }

    /// Replaces the whole snapshot with `next(current)` in one step (a reload), so
    /// that no change published meanwhile is lost; readers are woken. Returns the new
    /// snapshot.
    pub fn reload(&self, next: impl FnOnce(&HealthSnapshot) -> HealthSnapshot) -> HealthSnapshot {
        let mut out = None;
        self.tx.send_modify(|snap| {
            let n = next(snap);
            out = Some(n.clone());
            *snap = Arc::new(n);
        });
        out.unwrap_or_else(|| self.tx.borrow().as_ref().clone())
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<HealthSnapshot> {
        self.tx.borrow().clone()
    }

    /// Drains (`true`) or undrains a backend; readers are woken only if it changed.
    /// Returns whether it changed (`None`: no such backend).
    pub fn set_drained(&self, id: BackendId, drained: bool) -> Option<bool> {
        let mut changed = None;
        self.tx.send_if_modified(|snap| {
            let current = snap.backend(id).map(|b| b.drained);
            changed = current.map(|c| c != drained);
            if changed != Some(true) {
                return false;
            }
            if let Some(b) = Arc::make_mut(snap).backend_mut(id) {
                b.drained = drained;
            }
            true
        });
        changed
    }

    /// Sets or clears a frontend's accept error; readers are woken only if it changed
    /// between set and clear (returned).
    pub fn set_accept_error(&self, kind: FrontendKind, error: Option<String>) -> bool {
        self.tx.send_if_modified(|snap| {
            let Some(f) = snap.frontend(kind) else {
                return false;
            };
            if f.accept_error.is_some() == error.is_some() {
                return false;
            }
            if let Some(f) = Arc::make_mut(snap)
                .frontends
                .iter_mut()
                .find(|f| f.kind == kind)
            {
                f.accept_error = error;
            }
            true
        })
    }

    /// A reader of this publisher's view.
    pub fn subscribe(&self) -> HealthView {
        HealthView {
            rx: self.tx.subscribe(),
        }
    }
}

/// The wait before the next probe: `interval` shortened or lengthened by up to
/// `jitter_percent` percent, with `unit` a uniform random number in `[0, 1)`.
///
/// Pure so that it can be tested; the shell passes a random `unit`.
pub fn jittered(interval: Duration, jitter_percent: u8, unit: f64) -> Duration {
    let spread = interval.as_secs_f64() * f64::from(jitter_percent.min(100)) / 100.0;
    let offset = (unit.clamp(0.0, 1.0) * 2.0 - 1.0) * spread;
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_percent() {
        let i = Duration::from_secs(1);
        assert_eq!(jittered(i, 0, 0.9), i);
        assert_eq!(jittered(i, 10, 0.0), Duration::from_millis(900));
        assert_eq!(jittered(i, 10, 0.5), i);
        let hi = jittered(i, 10, 0.999_999);
        assert!(hi <= Duration::from_millis(1100) && hi > Duration::from_millis(1099));
    }
}
