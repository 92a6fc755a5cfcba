//! systemd integration: the `sd_notify` protocol for `Type=notify` (or `notify-reload`)
//! units with `WatchdogSec=`, through the `sd-notify` crate.
//!
//! ```text
//!  supervisor::run ─ Supervisor::start returned (listeners bound, checkers spawned,
//!                    election thread running) ─> READY=1 + STATUS=<line>
//!  status task (runtime) ─ health view changed / election status changed
//!                    ─> STATUS=<line>, only when the line differs
//!  "apivip-watchdog" thread ─ every WatchdogSec/2: hands Daemon::liveness to the
//!                    runtime, waits for the answer (bounded) ─> WATCHDOG=1 if it was Ok
//!  SIGTERM / SIGINT ─> STOPPING=1 (the watchdog thread ends)
//!  reload (the supervisor) ─> reloading(): RELOADING=1 + MONOTONIC_USEC, then ready()
//! ```
//!
//! Without `NOTIFY_SOCKET` every function here does nothing (and costs an environment
//! lookup). A failed send is logged once, never fatal: apivip serves the same with or
//! without a service manager.
//!
//! # Why the watchdog pings from a thread of its own
//!
//! `WATCHDOG=1` means "the runtime and the election thread both answer". The check is
//! [`Daemon::liveness`] (the one behind `/healthz`): the runtime runs a task within 1 s,
//! and the election thread answers a report request within 1 s (a report less than
//! 250 ms old is reused, so the watchdog wakes that thread no more than the admin
//! endpoint does). The check must run *on* the runtime (that is what it proves), but the
//! decision to ping is taken on a plain thread that only waits for the check's answer,
//! with a bound: a stalled runtime never answers, so no ping; a stalled election thread
//! makes the check fail, so no ping. A ping loop written as a runtime task would go
//! quiet too, but could not say why, and a timer that never fires cannot log.
//!
//! The `STATUS=` line ([`status_line`]) is pure and tested exactly; the VRRP role comes
//! from the status the election thread publishes on every change (an `ArcSwap` read and
//! a watch channel), so keeping the line current never wakes that thread.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::admin::Daemon;
use crate::health::HealthSnapshot;
use crate::vrrp::io::shell::VrrpStatus;
use crate::vrrp::machine::State;

/// Whether a service manager listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Set once a send failed (logged once, then at debug level).
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        let first = !SEND_FAILED.swap(true, Ordering::Relaxed);
        let what: Vec<String> = states.iter().map(ToString::to_string).collect();
        if first {
            tracing::warn!(error = %e, sent = ?what, "systemd: cannot notify the service manager (NOTIFY_SOCKET)");
        } else {
            tracing::debug!(error = %e, sent = ?what, "systemd: cannot notify the service manager");
        }
    }
}

/// `READY=1`: start-up (or a reload) is complete.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// `READY=1` with a status line, sent once at start.
fn ready_with_status(line: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(line)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (systemd 253+ wants the timestamp for
/// `Type=notify-reload`, older versions ignore it). Call [`ready`] when the reload is
/// done, whether it applied or was refused.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: a graceful stop began.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: handing over, then draining connections"),
    ]);
}

/// `STATUS=<line>`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The election's part of [`status_line`].
#[derive(Debug, Clone, Copy)]
pub struct Role<'a> {
    /// What the election thread published last.
    pub status: &'a VrrpStatus,
    /// The configured VIPs.
    pub vips: &'a [(IpAddr, u8)],
}

/// The one-line `STATUS=`: the VRRP role of each election (when there are any) and,
/// per frontend, how many backends are up, e.g.
/// `master for 198.18.0.5; apiserver 3/3 up, etcd 2/3 up`. Drained backends are
/// named (`apiserver 3/3 up (1 drained)`): up, but given no new connections.
pub fn status_line(roles: &[Role<'_>], health: &HealthSnapshot) -> String {
    let mut parts = Vec::new();
    let mut elections = Vec::new();
    for r in roles {
        let vips: Vec<String> = r.vips.iter().map(|(a, _)| a.to_string()).collect();
        let vips = vips.join(",");
        elections.push(match r.status.state {
            State::Master => format!("master for {vips}"),
            State::Backup => match r.status.master {
                Some(m) => format!("backup for {vips} (master {m})"),
                None => format!("backup for {vips}"),
            },
            State::Initialize => format!("not in the election for {vips} (initialize)"),
            State::Fault => format!("fault: out of the election for {vips}"),
        });
    }
    if !elections.is_empty() {
        parts.push(elections.join(", "));
    }
    let frontends: Vec<String> = health
        .frontends
        .iter()
        .map(|f| {
            let up = f.backends.iter().filter(|b| b.status.is_up()).count();
            let drained = f.backends.iter().filter(|b| b.drained).count();
            let mut s = format!("{} {up}/{} up", f.kind.as_str(), f.backends.len());
            if drained > 0 {
                s.push_str(&format!(" ({drained} drained)"));
            }
            s
        })
        .collect();
    if !frontends.is_empty() {
        parts.push(frontends.join(", "));
    }
    parts.join("; ")
}

/// The current line for `daemon`.
fn current_line(daemon: &Daemon) -> String {
    let running = daemon.running();
    let statuses: Vec<_> = running
        .vrrp
        .iter()
        .filter_map(|h| {
            let v = running.config.vrrp.iter().find(|v| v.name == h.name)?;
            Some((h.status.load_full(), v))
        })
        .collect();
    let roles: Vec<Role<'_>> = statuses
        .iter()
        .map(|(s, v)| Role {
            status: s,
            vips: &v.vips,
        })
        .collect();
    status_line(&roles, &daemon.health.current())
}

/// The running notifications: the status task and the watchdog thread. Dropping it
/// (or [`Notifier::stop`]) ends both.
#[derive(Debug)]
pub struct Notifier {
    status_task: CancellationToken,
    /// Dropping the sender wakes and ends the watchdog thread.
    watchdog: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    /// Set (under the lock the thread holds while it pings) when stopped: once
    /// [`Notifier::stop`] returned, no `WATCHDOG=1` follows.
    stopped: Arc<Mutex<bool>>,
}

impl Notifier {
    /// Sends `READY=1` with the status line and starts keeping `STATUS=` current and,
    /// when systemd asks for it (`WATCHDOG_USEC`, for this PID), the watchdog pings.
    /// Call it on the runtime, once [`crate::supervisor::Supervisor::start`] returned.
    /// Without `NOTIFY_SOCKET` it starts nothing.
    pub fn start(daemon: Arc<Daemon>) -> Notifier {
        let status_task = CancellationToken::new();
        let stopped = Arc::new(Mutex::new(false));
        if !enabled() {
            return Notifier {
                status_task,
                watchdog: None,
                stopped,
            };
        }
        let first = current_line(&daemon);
        ready_with_status(&first);
        tracing::info!(status = %first, "systemd: ready");
        tokio::spawn(keep_status(Arc::clone(&daemon), first, status_task.clone()));
        let watchdog = sd_notify::watchdog_enabled().and_then(|timeout| {
            let period = timeout / 2;
            let (tx, rx) = mpsc::channel();
            let rt = tokio::runtime::Handle::current();
            let stopped = Arc::clone(&stopped);
            let spawned = std::thread::Builder::new()
                .name("apivip-watchdog".into())
                .spawn(move || watchdog(&rt, &daemon, period, &rx, &stopped));
            match spawned {
                Ok(join) => {
                    tracing::info!(
                        timeout = %crate::units::format_duration(timeout),
                        every = %crate::units::format_duration(period),
                        "systemd: watchdog enabled"
                    );
                    Some((tx, join))
                }
                Err(e) => {
                    tracing::error!(error = %e, "systemd: cannot start the watchdog thread; systemd will restart apivip when WatchdogSec= runs out");
                    None
                }
            }
        });
        Notifier {
            status_task,
            watchdog,
            stopped,
        }
    }

    /// Ends the status updates and the watchdog pings (at a graceful stop): no
    /// `WATCHDOG=1` is sent once this returns. The watchdog thread ends on its own,
    /// after the check it may be waiting for.
    pub fn stop(self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.status_task.cancel();
        // Dropping the sender wakes the thread, which ends. Not joined: this may run on
        // the runtime, and the thread may be waiting for a check the runtime runs.
        self.watchdog.take();
    }
}

/// How often the status task looks for an election a reload replaced (a pointer
/// comparison; the election thread is not involved).
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// Sends `STATUS=` whenever the line changes: on a health change or a change the
/// election thread published.
async fn keep_status(daemon: Arc<Daemon>, mut last: String, cancel: CancellationToken) {
    let mut health = daemon.health.clone();
    let mut health_open = true;
    // The elections whose changes are watched (a reload may replace them), and their
    // receivers while those threads run.
    let mut watched: Vec<Arc<ArcSwap<VrrpStatus>>> = Vec::new();
    let mut vrrp: Vec<tokio::sync::watch::Receiver<()>> = Vec::new();
    let mut tick = tokio::time::interval(RESUBSCRIBE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let running = daemon.running();
        let now = &running.vrrp;
        let same = now.len() == watched.len()
            && now
                .iter()
                .zip(&watched)
                .all(|(h, w)| Arc::ptr_eq(&h.status, w));
        if !same {
            watched = now.iter().map(|h| Arc::clone(&h.status)).collect();
            vrrp = now.iter().map(|h| h.status_changed.clone()).collect();
        }
        drop(running);
        let line = current_line(&daemon);
        if line != last {
            status(&line);
            tracing::debug!(status = %line, "systemd: status");
            last = line;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = health.changed(), if health_open => {
                // The publisher is gone: nothing will change any more.
                health_open = changed.is_some();
            }
            (i, ended) = async {
                use futures_util::FutureExt;
                let waits = vrrp.iter_mut().enumerate().map(|(i, r)| r.changed().map(move |c| (i, c.is_err())).boxed());
                futures_util::future::select_all(waits).await.0
            }, if !vrrp.is_empty() => {
                // An election thread ended: its status will not change any more.
                if ended {
                    vrrp.remove(i);
                }
            }
            _ = tick.tick() => {}
        }
    }
}

/// The longest the watchdog waits for one liveness check: both of its bounds, and a
/// little more for scheduling.
const CHECK_BOUND: Duration = Duration::from_millis(2_500);

/// The watchdog thread: every `period`, runs [`Daemon::liveness`] on `rt` and pings
/// only when it answered `Ok` within [`CHECK_BOUND`]. Ends when `stop`'s sender is
/// dropped.
fn watchdog(
    rt: &tokio::runtime::Handle,
    daemon: &Arc<Daemon>,
    period: Duration,
    stop: &mpsc::Receiver<()>,
    stopped: &Mutex<bool>,
) {
    let mut next = Instant::now();
    let mut failing = false;
    loop {
        match stop.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The notifier stopped (or was dropped).
            _ => return,
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let d = Arc::clone(daemon);
        rt.spawn(async move {
            let _ = tx.send(d.liveness().await);
        });
        let result = match rx.recv_timeout(CHECK_BOUND) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err("the runtime did not answer the liveness check within 2.5s")
            }
            // The runtime shut down and dropped the task.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match result {
            Ok(()) => {
                let stopped = stopped.lock().unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    // Stopped while checking: no ping after STOPPING=1.
                    return;
                }
                send(&[NotifyState::Watchdog]);
                drop(stopped);
                if failing {
                    tracing::info!("systemd: watchdog pings resume");
                    failing = false;
                }
            }
            Err(why) => {
                if !failing {
                    tracing::error!(reason = why, "systemd: watchdog pings stop until it answers again (systemd restarts apivip when WatchdogSec= runs out)");
                    failing = true;
                }
            }
        }
        next += period;
        let now = Instant::now();
        if next < now {
            // A slow check: skip the ticks it overran rather than ping in a burst.
            next = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::health::{BackendHealth, Status};

    fn snapshot(yaml: &str) -> HealthSnapshot {
        let c = Config::from_yaml(yaml, std::path::Path::new("t.yaml")).unwrap();
        HealthSnapshot::initial(&c)
    }

    fn set(snap: &mut HealthSnapshot, f: usize, i: usize, up: bool, drained: bool) {
        let b: &mut BackendHealth = &mut snap.frontends[f].backends[i];
        b.status = if up {
            Status::Up
        } else {
            Status::Down(crate::health::DownCause::Unreachable)
        };
        b.drained = drained;
    }

    const THREE: &str = "backends: [{address: 198.18.0.11}, {address: 198.18.0.12}, {address: 198.18.0.13}]\napiserver: {check: {kind: tcp}}\netcd: {listen: 127.0.0.1:2379, check: {kind: tcp}}\n";

    #[test]
    fn the_line_names_the_role_the_vips_and_backends_up_per_frontend() {
        let mut snap = snapshot(THREE);
        for i in 0..3 {
            set(&mut snap, 0, i, true, false);
        }
        set(&mut snap, 1, 0, true, false);
        set(&mut snap, 1, 1, true, false);
        let vips = [("198.18.0.5".parse().unwrap(), 24)];
        let mut status = VrrpStatus {
            state: State::Master,
            priority: 150,
            master: None,
            posture: crate::vrrp::machine::Posture::Master,
        };
        let line = |s: &VrrpStatus, snap: &HealthSnapshot| {
            status_line(
                &[Role {
                    status: s,
                    vips: &vips,
                }],
                snap,
            )
        };
        assert_eq!(
            line(&status, &snap),
            "master for 198.18.0.5; apiserver 3/3 up, etcd 2/3 up"
        );
        status.state = State::Backup;
        status.master = Some("198.18.0.12".parse().unwrap());
        assert_eq!(
            line(&status, &snap),
            "backup for 198.18.0.5 (master 198.18.0.12); apiserver 3/3 up, etcd 2/3 up"
        );
        status.master = None;
        status.state = State::Initialize;
        set(&mut snap, 0, 2, true, true);
        assert_eq!(
            line(&status, &snap),
            "not in the election for 198.18.0.5 (initialize); apiserver 3/3 up (1 drained), etcd 2/3 up"
        );
    }

    #[test]
    fn without_an_election_the_line_has_the_backends_only() {
        let mut snap = snapshot(
            "backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]\napiserver: {check: {kind: tcp}}\n",
        );
        assert_eq!(status_line(&[], &snap), "apiserver 0/2 up");
        set(&mut snap, 0, 1, true, false);
        assert_eq!(status_line(&[], &snap), "apiserver 1/2 up");
    }

    #[test]
    fn several_vips_are_listed() {
        let snap = snapshot(THREE);
        let vips = [
            ("198.18.0.5".parse().unwrap(), 24),
            ("2001:db8::5".parse().unwrap(), 64),
        ];
        let s = VrrpStatus {
            state: State::Master,
            priority: 255,
            master: None,
            posture: crate::vrrp::machine::Posture::Master,
        };
        assert!(status_line(
            &[Role {
                status: &s,
                vips: &vips
            }],
            &snap
        )
        .starts_with("master for 198.18.0.5,2001:db8::5; "));
    }
}
