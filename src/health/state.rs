//! The rise/fall machine: consecutive probe results in, status transitions out.
//!
//! Sans-IO: no clock, no sockets. The shell feeds every probe [`Outcome`] to
//! [`RiseFall::handle_outcome`] and acts on the [`Transition`] it returns.
//!
//! Rules (hysteresis, as in HAProxy's `rise`/`fall`):
//! - The first result decides at once (`Unknown` -> `Up` or `Down`), so a node that
//!   starts with healthy masters balances after one probe, not `rise` probes.
//! - `Up` turns `Down` after `fall` consecutive failures; `Down` turns `Up` after `rise`
//!   consecutive successes. A result of the other kind resets the count.
//! - A down backend remembers *why*: [`DownCause::Unreachable`] (refused, reset,
//!   connect timed out, TLS failure), [`DownCause::NotReady`] (it answered, but not
//!   ready: the graceful-shutdown case) or [`DownCause::Unresponsive`] (it accepted the
//!   connection but the check timed out: overloaded or hung, no proof it is gone). It
//!   falls as `Unreachable` only when the last `fall` failures were all unreachable;
//!   one answer "not ready" among them means it is draining; otherwise it is
//!   unresponsive. An unresponsive backend escalates to `Unreachable` like a draining
//!   one. A draining backend escalates to `Unreachable` after `fall` consecutive
//!   unreachable results (a single slow `/readyz` during shutdown does not cut its
//!   connections); an unreachable one that answers "not ready" again turns `NotReady`.
//! - An [`Outcome::Inconclusive`] result (the probe could not run: this node is out of
//!   file descriptors or ports) changes nothing: a local problem is not a backend's.

use std::fmt;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend passed.
    Success,
    /// The backend failed; `reason` is logged with the transition.
    Failure {
        /// Whether it stopped answering or answered "not ready".
        cause: DownCause,
        /// What kind of failure, for metrics.
        kind: FailureKind,
        /// A human-readable reason (`connection refused`, `HTTP 500`, ...).
        reason: String,
    },
    /// The probe could not run for a local reason (EMFILE, no free port); says
    /// nothing about the backend.
    Inconclusive {
        /// Why.
        reason: String,
    },
}

/// The kind of a failed probe: a bounded set, for metrics labels (the free-text
/// reason goes to logs and status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The probe did not finish within the check timeout.
    Timeout,
    /// The connect was refused.
    Refused,
    /// The connection was reset or closed early.
    Reset,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The server answered with a non-2xx HTTP status (kube-apiserver not ready).
    HttpStatus,
    /// etcd answered that it is not healthy.
    EtcdUnhealthy,
    /// Anything else (unreachable network, HTTP protocol error, ...).
    Other,
}

impl FailureKind {
    /// Every kind, in label order.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Timeout,
        FailureKind::Refused,
        FailureKind::Reset,
        FailureKind::Tls,
        FailureKind::HttpStatus,
        FailureKind::EtcdUnhealthy,
        FailureKind::Other,
    ];

    /// The metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Refused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Tls => "tls",
            FailureKind::HttpStatus => "http_status",
            FailureKind::EtcdUnhealthy => "etcd_unhealthy",
            FailureKind::Other => "other",
        }
    }

    /// Its position in [`FailureKind::ALL`] (for counter arrays).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Why a backend is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownCause {
    /// It does not answer: connect refused or reset, probe timed out, TLS failed.
    /// Its connections are closed at once.
    Unreachable,
    /// It answers but is not ready (kube-apiserver's graceful shutdown, etcd
    /// unhealthy). It gets no new connections; existing ones get a grace period.
    NotReady,
    /// It accepts connections but the check did not finish in time (overloaded, or
    /// hung). A timeout is no proof it is gone: no new connections; existing ones
    /// get the same grace as [`DownCause::NotReady`].
    Unresponsive,
}

/// A backend's health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// No probe has finished yet.
    #[default]
    Unknown,
    /// Healthy: receives new connections.
    Up,
    /// Unhealthy, with the cause of the last failure.
    Down(DownCause),
}

impl Status {
    /// Whether new connections may be balanced to it.
    pub fn is_up(self) -> bool {
        self == Status::Up
    }
}

impl Status {
    /// A short label for metrics and the status document: `unknown`, `up`,
    /// `not_ready`, `unreachable` or `unresponsive`.
    pub const fn label(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Down(DownCause::Unreachable) => "unreachable",
            Status::Down(DownCause::NotReady) => "not_ready",
            Status::Down(DownCause::Unresponsive) => "unresponsive",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Down(DownCause::Unreachable) => "down (unreachable)",
            Status::Down(DownCause::NotReady) => "down (not ready)",
            Status::Down(DownCause::Unresponsive) => "down (unresponsive)",
        })
    }
}

/// A status change, returned by [`RiseFall::handle_outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transition {
    /// The status before.
    pub from: Status,
    /// The status now.
    pub to: Status,
}

/// Per-backend rise/fall hysteresis.
#[derive(Debug, Clone)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    status: Status,
    /// Consecutive results that argue against the current status.
    streak: u32,
    /// Consecutive `Unreachable` failures (decides the cause of a fall, and escalation).
    unreachable: u32,
    /// Whether a failure since the last success answered "not ready" (decides between
    /// `NotReady` and `Unresponsive` for a fall that was not all unreachable).
    answered: bool,
}

impl RiseFall {
    /// A machine in `Unknown`. `rise` and `fall` below 1 are treated as 1 (config
    /// validation refuses them).
    pub fn new(rise: u32, fall: u32) -> Self {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            status: Status::Unknown,
            streak: 0,
            unreachable: 0,
            answered: false,
        }
    }

    /// A machine that continues at `status` (a reload kept the backend, maybe with
    /// new thresholds): the streaks start over.
    pub fn resume(rise: u32, fall: u32, status: Status) -> Self {
        RiseFall {
            status,
            ..RiseFall::new(rise, fall)
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Feeds one probe result; returns the transition if the status changed.
    pub fn handle_outcome(&mut self, outcome: &Outcome) -> Option<Transition> {
        let from = self.status;
        let failed = match outcome {
            Outcome::Inconclusive { .. } => return None,
            Outcome::Success => None,
            Outcome::Failure { cause, .. } => Some(*cause),
        };
        self.unreachable = match failed {
            Some(DownCause::Unreachable) => self.unreachable.saturating_add(1),
            _ => 0,
        };
        self.answered = match failed {
            None => false,
            Some(DownCause::NotReady) => true,
            Some(_) => self.answered,
        };
        let all_unreachable = self.unreachable >= self.fall;
        let to = match (from, failed) {
            (Status::Unknown, None) => Status::Up,
            (Status::Unknown, Some(cause)) => Status::Down(cause),
            (Status::Up, None) => {
                self.streak = 0;
                Status::Up
            }
            (Status::Up, Some(_)) => {
                self.streak += 1;
                if self.streak < self.fall {
                    Status::Up
                } else if all_unreachable {
                    Status::Down(DownCause::Unreachable)
                } else if self.answered {
                    Status::Down(DownCause::NotReady)
                } else {
                    Status::Down(DownCause::Unresponsive)
                }
            }
            (Status::Down(_), None) => {
                self.streak += 1;
                if self.streak >= self.rise {
                    Status::Up
                } else {
                    from
                }
            }
            (Status::Down(_), Some(DownCause::NotReady)) => {
                self.streak = 0;
                Status::Down(DownCause::NotReady)
            }
            // Draining and slow: still draining. Otherwise it accepts connections
            // again, but does not answer in time.
            (Status::Down(DownCause::NotReady), Some(DownCause::Unresponsive)) => {
                self.streak = 0;
                Status::Down(DownCause::NotReady)
            }
            (Status::Down(_), Some(DownCause::Unresponsive)) => {
                self.streak = 0;
                Status::Down(DownCause::Unresponsive)
            }
            (Status::Down(current), Some(DownCause::Unreachable)) => {
                self.streak = 0;
                if all_unreachable {
                    Status::Down(DownCause::Unreachable)
                } else {
                    Status::Down(current)
                }
            }
        };
        if to == from {
            return None;
        }
        self.status = to;
        self.streak = 0;
        Some(Transition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Outcome {
        Outcome::Success
    }
    fn refused() -> Outcome {
        Outcome::Failure {
            cause: DownCause::Unreachable,
            kind: FailureKind::Refused,
            reason: "connection refused".into(),
        }
    }
    fn slow() -> Outcome {
        Outcome::Failure {
            cause: DownCause::Unresponsive,
            kind: FailureKind::Timeout,
            reason: "connected, but no answer within 1s".into(),
        }
    }
    fn not_ready() -> Outcome {
        Outcome::Failure {
            cause: DownCause::NotReady,
            kind: FailureKind::HttpStatus,
            reason: "HTTP 500".into(),
        }
    }

    /// Feeds a sequence and returns the status after each step.
    fn run(m: &mut RiseFall, seq: &[Outcome]) -> Vec<Status> {
        seq.iter()
            .map(|o| {
                let _ = m.handle_outcome(o);
                m.status()
            })
            .collect()
    }

    #[test]
    fn first_result_decides_at_once() {
        let mut m = RiseFall::new(3, 3);
        assert_eq!(
            m.handle_outcome(&ok()),
            Some(Transition {
                from: Status::Unknown,
                to: Status::Up
            })
        );
        let mut m = RiseFall::new(3, 3);
        assert_eq!(
            m.handle_outcome(&not_ready()).map(|t| t.to),
            Some(Status::Down(DownCause::NotReady))
        );
    }

    #[test]
    fn up_falls_after_exactly_fall_failures() {
        let mut m = RiseFall::new(2, 3);
        let s = run(&mut m, &[ok(), refused(), refused(), refused()]);
        assert_eq!(
            s,
            [
                Status::Up,
                Status::Up,
                Status::Up,
                Status::Down(DownCause::Unreachable)
            ]
        );
    }

    #[test]
    fn a_success_resets_the_fall_count() {
        let mut m = RiseFall::new(2, 2);
        let s = run(&mut m, &[ok(), refused(), ok(), refused(), ok()]);
        assert!(s.iter().all(|s| *s == Status::Up), "{s:?}");
    }

    #[test]
    fn down_rises_after_exactly_rise_successes() {
        let mut m = RiseFall::new(3, 1);
        let s = run(&mut m, &[refused(), ok(), ok(), ok()]);
        assert_eq!(
            s,
            [
                Status::Down(DownCause::Unreachable),
                Status::Down(DownCause::Unreachable),
                Status::Down(DownCause::Unreachable),
                Status::Up
            ]
        );
    }

    #[test]
    fn a_failure_resets_the_rise_count() {
        let mut m = RiseFall::new(2, 1);
        let s = run(&mut m, &[refused(), ok(), refused(), ok(), ok()]);
        assert_eq!(s[3], Status::Down(DownCause::Unreachable));
        assert_eq!(s[4], Status::Up);
    }

    #[test]
    fn one_not_ready_answer_among_the_failures_means_draining() {
        let mut m = RiseFall::new(1, 2);
        assert_eq!(
            run(&mut m, &[ok(), refused(), not_ready()])[2],
            Status::Down(DownCause::NotReady)
        );
        let mut m = RiseFall::new(1, 2);
        assert_eq!(
            run(&mut m, &[ok(), not_ready(), refused()])[2],
            Status::Down(DownCause::NotReady)
        );
        let mut m = RiseFall::new(1, 2);
        assert_eq!(
            run(&mut m, &[ok(), refused(), refused()])[2],
            Status::Down(DownCause::Unreachable)
        );
    }

    #[test]
    fn one_slow_answer_while_draining_does_not_escalate() {
        let mut m = RiseFall::new(2, 2);
        let s = run(
            &mut m,
            &[
                ok(),
                not_ready(),
                not_ready(),
                refused(),
                not_ready(),
                refused(),
                refused(),
            ],
        );
        assert_eq!(
            s[2..],
            [
                Status::Down(DownCause::NotReady),
                Status::Down(DownCause::NotReady),
                Status::Down(DownCause::NotReady),
                Status::Down(DownCause::NotReady),
                Status::Down(DownCause::Unreachable)
            ]
        );
    }

    #[test]
    fn inconclusive_results_change_nothing() {
        let local = Outcome::Inconclusive {
            reason: "EMFILE".into(),
        };
        let mut m = RiseFall::new(2, 2);
        assert_eq!(m.handle_outcome(&local), None);
        assert_eq!(m.status(), Status::Unknown);
        let s = run(&mut m, &[ok(), refused(), local.clone(), refused()]);
        assert_eq!(s[2], Status::Up, "an inconclusive result is not a failure");
        assert_eq!(
            s[3],
            Status::Down(DownCause::Unreachable),
            "nor does it reset the count"
        );
    }

    #[test]
    fn a_draining_backend_that_stops_answering_escalates() {
        // fall = 1: one unreachable result escalates.
        let mut m = RiseFall::new(2, 1);
        let _ = m.handle_outcome(&ok());
        assert_eq!(
            m.handle_outcome(&not_ready()).map(|t| t.to),
            Some(Status::Down(DownCause::NotReady))
        );
        assert_eq!(
            m.handle_outcome(&refused()),
            Some(Transition {
                from: Status::Down(DownCause::NotReady),
                to: Status::Down(DownCause::Unreachable)
            })
        );
        // The same cause again is no transition.
        assert_eq!(m.handle_outcome(&refused()), None);
    }

    #[test]
    fn rise_and_fall_of_one_flip_on_every_change() {
        let mut m = RiseFall::new(1, 1);
        let s = run(&mut m, &[ok(), refused(), ok(), not_ready(), ok()]);
        assert_eq!(
            s,
            [
                Status::Up,
                Status::Down(DownCause::Unreachable),
                Status::Up,
                Status::Down(DownCause::NotReady),
                Status::Up
            ]
        );
    }

    #[test]
    fn transitions_report_every_change_and_only_changes() {
        // Exhaustive over all sequences of length 6 with rise=2, fall=2: the reported
        // transitions replay to the same final status, and none has from == to.
        let alphabet = [
            ok(),
            refused(),
            not_ready(),
            Outcome::Inconclusive {
                reason: "local".into(),
            },
        ];
        let mut seq = vec![0usize; 6];
        loop {
            let mut m = RiseFall::new(2, 2);
            let mut replay = Status::Unknown;
            for &i in &seq {
                if let Some(t) = m.handle_outcome(&alphabet[i]) {
                    assert_eq!(t.from, replay);
                    assert_ne!(t.from, t.to);
                    replay = t.to;
                }
            }
            assert_eq!(replay, m.status());
            // Next sequence.
            let mut k = 0;
            while k < seq.len() {
                seq[k] += 1;
                if seq[k] < alphabet.len() {
                    break;
                }
                seq[k] = 0;
                k += 1;
            }
            if k == seq.len() {
                break;
            }
        }
    }

    /// A master that accepts connections but times out is unresponsive, not gone: it
    /// falls as such (its connections get the grace), stays draining when it was, and
    /// escalates to unreachable only after `fall` unreachable results in a row.
    #[test]
    fn timeouts_after_connect_fall_as_unresponsive_and_escalate_like_not_ready() {
        let unresponsive = Status::Down(DownCause::Unresponsive);
        let unreachable = Status::Down(DownCause::Unreachable);
        let draining = Status::Down(DownCause::NotReady);
        let mut m = RiseFall::new(2, 2);
        assert_eq!(
            run(
                &mut m,
                &[
                    ok(),
                    slow(),
                    slow(),
                    refused(),
                    slow(),
                    refused(),
                    refused()
                ]
            ),
            vec![
                Status::Up,
                Status::Up,
                unresponsive,
                unresponsive,
                unresponsive,
                unresponsive,
                unreachable
            ]
        );
        // A mix of timeouts and refusals is not all unreachable: unresponsive.
        let mut m = RiseFall::new(2, 2);
        assert_eq!(
            run(&mut m, &[ok(), refused(), slow()]),
            vec![Status::Up, Status::Up, unresponsive]
        );
        // One "not ready" answer among them: draining, and slow answers keep it so.
        let mut m = RiseFall::new(2, 2);
        assert_eq!(
            run(&mut m, &[ok(), not_ready(), slow(), slow()]),
            vec![Status::Up, Status::Up, draining, draining]
        );
        // The first result decides at once, as for the other causes.
        let mut m = RiseFall::new(2, 2);
        assert_eq!(run(&mut m, &[slow()]), vec![unresponsive]);
        // An unreachable master whose port accepts again, but slowly.
        let mut m = RiseFall::new(2, 2);
        assert_eq!(
            run(&mut m, &[refused(), slow()]),
            vec![unreachable, unresponsive]
        );
        assert_eq!(unresponsive.label(), "unresponsive");
    }
}
