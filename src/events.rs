//! The bounded in-memory history of what changed: VRRP state changes, backend
//! transitions and operator controls, each with its time and reason. `apivip status`
//! shows the newest ones; nothing is written per packet or per connection.
//!
//! VRRP state changes and backend transitions are also published, as a [`Notice`] with
//! their fields, to every [`History::subscribe`]r (the notify hooks). Publishing never
//! waits: it is a `tokio::sync::broadcast` send, so the election thread and the
//! checkers cost the same with or without subscribers; a subscriber that falls
//! [`FEED_CAPACITY`] notices behind loses the oldest ones and is told how many.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::config::BackendId;
use crate::health::Status;
use crate::vrrp::machine::State;

/// Events kept; older ones are dropped first.
pub const CAPACITY: usize = 100;

/// Notices a subscriber may fall behind before it loses the oldest.
pub const FEED_CAPACITY: usize = 1024;

/// A change, with its fields, for the subscribers (see [`History::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The VRRP instance changed state.
    Vrrp {
        /// The instance's name (`vrrp[].name`).
        instance: String,
        /// The virtual router.
        vrid: u8,
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// The priority advertised after the change.
        priority: u8,
    },
    /// A backend's health changed.
    Backend {
        /// Its identity.
        id: BackendId,
        /// Its name.
        name: String,
        /// Where it is probed.
        addr: SocketAddr,
        /// The status left.
        from: Status,
        /// The status entered.
        to: Status,
    },
}

impl Change {
    /// The history's kind and text for it.
    fn describe(&self) -> (EventKind, String) {
        match self {
            Change::Vrrp {
                instance, from, to, ..
            } => (EventKind::Vrrp, format!("{instance}: {from} -> {to}")),
            Change::Backend {
                id, name, from, to, ..
            } => (
                EventKind::Backend,
                format!("{}/{name}: {from} -> {to}", id.frontend),
            ),
        }
    }
}

/// A published change: what subscribers receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Wall-clock time, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What changed.
    pub change: Change,
    /// Why (the same text as the history's event).
    pub reason: String,
}

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
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Mutex<VecDeque<Event>>>,
    feed: broadcast::Sender<Arc<Notice>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            inner: Arc::default(),
            feed: broadcast::Sender::new(FEED_CAPACITY),
        }
    }
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

    /// Records a VRRP or backend change that happened now and publishes it to the
    /// subscribers. Never waits for them.
    pub fn record(&self, change: Change, reason: impl Into<String>) {
        let at = SystemTime::now();
        let reason = reason.into();
        let (kind, what) = change.describe();
        self.push_at(at, kind, what, reason.clone());
        // No subscriber is not an error.
        let _ = self.feed.send(Arc::new(Notice {
            at_ms: unix_ms(at),
            change,
            reason,
        }));
    }

    /// Every change [`History::record`]ed from now on, in order. A receiver that falls
    /// [`FEED_CAPACITY`] behind gets `RecvError::Lagged(n)` once and loses the `n`
    /// oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notice>> {
        self.feed.subscribe()
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

    #[test]
    fn recorded_changes_reach_subscribers_in_order_and_the_history() {
        let h = History::default();
        // Recording without a subscriber is fine.
        h.record(vrrp(State::Initialize, State::Backup), "startup");
        let mut rx = h.subscribe();
        h.record(vrrp(State::Backup, State::Master), "master_down");
        h.record(vrrp(State::Master, State::Backup), "higher_priority");
        let a = rx.try_recv().unwrap();
        let b = rx.try_recv().unwrap();
        assert_eq!(a.change, vrrp(State::Backup, State::Master));
        assert_eq!(a.reason, "master_down");
        assert_eq!(b.reason, "higher_priority");
        assert!(rx.try_recv().is_err());
        let texts: Vec<String> = h.latest(3).into_iter().map(|e| e.what).collect();
        assert_eq!(
            texts,
            [
                "vrid-51: initialize -> backup",
                "vrid-51: backup -> master",
                "vrid-51: master -> backup"
            ]
        );
    }

    #[test]
    fn a_subscriber_that_falls_behind_loses_the_oldest_and_is_told_how_many() {
        let h = History::default();
        let mut rx = h.subscribe();
        for _ in 0..FEED_CAPACITY + 3 {
            h.record(vrrp(State::Backup, State::Master), "master_down");
        }
        assert_eq!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(3))
        );
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, FEED_CAPACITY);
    }

    fn vrrp(from: State, to: State) -> Change {
        Change::Vrrp {
            instance: "vrid-51".to_owned(),
            vrid: 51,
            from,
            to,
            priority: 100,
        }
    }
}
