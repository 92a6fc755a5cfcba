//! The bounded in-memory history of what changed: VRRP state changes, backend
//! transitions and operator controls, each with its time and reason. `apivip status`
//! shows the newest ones; nothing is written per packet or per connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Events kept; older ones are dropped first.
pub const CAPACITY: usize = 100;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The VRRP instance changed state.
    Vrrp,
    /// A backend's health changed.
    Backend,
    /// An operator control (handover, resume, drain, undrain).
    Control,
}

/// One thing that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What it is about.
    pub kind: EventKind,
    /// What changed, e.g. `backup -> master` or `apiserver/m1 up -> unreachable`.
    pub what: String,
    /// Why, e.g. `master_down` or `connect: Connection refused`.
    pub reason: String,
}

/// The shared history (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct History {
    inner: Arc<Mutex<VecDeque<Event>>>,
}

/// Milliseconds since the Unix epoch of `t` (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl History {
    /// Records an event that happened now.
    pub fn push(&self, kind: EventKind, what: impl Into<String>, reason: impl Into<String>) {
        self.push_at(SystemTime::now(), kind, what, reason);
    }

    /// Records an event that happened at `at`.
    pub fn push_at(
        &self,
        at: SystemTime,
        kind: EventKind,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) {
        let event = Event {
            at_ms: unix_ms(at),
            kind,
            what: what.into(),
            reason: reason.into(),
        };
        let mut q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == CAPACITY {
            q.pop_front();
        }
        q.push_back(event);
    }

    /// The newest `n` events, oldest first.
    pub fn latest(&self, n: usize) -> Vec<Event> {
        let q = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        q.iter().skip(q.len().saturating_sub(n)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_events_in_order() {
        let h = History::default();
        for i in 0..CAPACITY + 5 {
            h.push(EventKind::Control, format!("e{i}"), "test");
        }
        let all = h.latest(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].what, "e5");
        let last = h.latest(2);
        assert_eq!(
            last.iter().map(|e| e.what.as_str()).collect::<Vec<_>>(),
            [format!("e{}", CAPACITY + 3), format!("e{}", CAPACITY + 4)]
        );
    }
}
