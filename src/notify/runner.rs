//! The hook runner: a thin tokio shell around [`plan`].
//!
//! ```text
//!  History::record (election thread, checkers; never waits)
//!        | broadcast (FEED_CAPACITY)
//!        v
//!  dispatcher task: plan(notice) -> push each Run on its hook's queue
//!        |  one bounded queue per hook (QUEUE_CAPACITY; full: the oldest is dropped, counted)
//!        v
//!  one worker per hook: spawn, wait up to notify.timeout, else SIGKILL its process group
//! ```
//!
//! A hook's runs are strictly sequential, so a later change never overtakes an earlier
//! one for the same hook; different hooks run independently, so a hanging hook delays
//! only its own queue. Nothing waits for a hook but that hook's worker.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plan::{plan, Context, Run};
use crate::config::notify::Notify;
use crate::config::Config;
use crate::events::History;

/// Runs waiting per hook; when full, the oldest waiting run is dropped (and counted):
/// the newest state is the one that matters.
pub const QUEUE_CAPACITY: usize = 32;

/// How a run ended, as the `result` label of `apivip_notify_runs_total`.
pub const RESULTS: [&str; 4] = ["ok", "failed", "timeout", "error"];

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Ok,
    /// Another exit status, or killed by a signal it was not sent by apivip.
    Failed,
    /// Still running at `notify.timeout` (or at the shutdown bound): killed.
    Timeout,
    /// Could not be started.
    Error,
}

impl Outcome {
    fn index(self) -> usize {
        self as usize
    }
}

/// One hook's counters.
#[derive(Debug)]
pub struct HookStats {
    /// The hook's name (`master`, `backup[1]`).
    pub name: String,
    /// The key it was configured under.
    pub on: &'static str,
    /// The configured command line.
    pub command: String,
    runs: [AtomicU64; RESULTS.len()],
    dropped: AtomicU64,
}

impl HookStats {
    /// Runs so far, by [`RESULTS`].
    pub fn runs(&self) -> [(&'static str, u64); RESULTS.len()] {
        std::array::from_fn(|i| (RESULTS[i], self.runs[i].load(Ordering::Relaxed)))
    }

    /// Runs dropped unrun (the queue was full, or the feed lagged).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Every hook's counters, in config order.
#[derive(Debug, Default)]
pub struct NotifyStats {
    hooks: Vec<HookStats>,
}

impl NotifyStats {
    /// Zeroed counters for every configured hook.
    pub fn new(notify: &Notify) -> Self {
        NotifyStats {
            hooks: notify
                .hooks
                .iter()
                .map(|h| HookStats {
                    name: h.name.clone(),
                    on: h.on.key(),
                    command: std::iter::once(h.program.display().to_string())
                        .chain(h.args.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(" "),
                    runs: Default::default(),
                    dropped: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// The hooks' counters.
    pub fn hooks(&self) -> &[HookStats] {
        &self.hooks
    }
}

/// One hook's waiting runs.
#[derive(Debug, Default)]
struct Queue {
    runs: Mutex<VecDeque<Run>>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Queue {
    /// Queues `run`; returns the run dropped to make room, if any.
    fn push(&self, run: Run) -> Option<Run> {
        let dropped = {
            let mut q = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            let dropped = (q.len() >= QUEUE_CAPACITY).then(|| q.pop_front()).flatten();
            q.push_back(run);
            dropped
        };
        self.wake.notify_one();
        dropped
    }

    fn pop(&self) -> Option<Run> {
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// The running hooks: started by the supervisor, finished at shutdown.
#[derive(Debug)]
pub struct Notifier {
    stats: Arc<NotifyStats>,
    /// Stop taking new changes; run what is queued.
    finish: CancellationToken,
    /// Kill what runs now and drop what is queued.
    kill: CancellationToken,
    tasks: TaskTracker,
    /// What the dispatcher plans with; a reload swaps it.
    inputs: Arc<ArcSwap<Inputs>>,
}

/// The plan's inputs.
#[derive(Debug)]
struct Inputs {
    notify: Notify,
    ctx: Context,
}

impl Notifier {
    /// Subscribes to `history` and starts one worker per hook (nothing when there are
    /// no hooks). Call before the sources start, so the first changes are seen.
    pub fn spawn(config: &Config, history: &History) -> Notifier {
        let stats = Arc::new(NotifyStats::new(&config.notify));
        let inputs = Arc::new(ArcSwap::from_pointee(Inputs {
            notify: config.notify.clone(),
            ctx: Context::from_config(config),
        }));
        let n = Notifier {
            stats: Arc::clone(&stats),
            finish: CancellationToken::new(),
            kill: CancellationToken::new(),
            tasks: TaskTracker::new(),
            inputs: Arc::clone(&inputs),
        };
        n.tasks.close();
        let hooks = config.notify.hooks.len();
        if hooks == 0 {
            return n;
        }
        let queues: Arc<Vec<Queue>> = Arc::new((0..hooks).map(|_| Queue::default()).collect());
        for i in 0..hooks {
            n.tasks.spawn(worker(
                i,
                Arc::clone(&queues),
                Arc::clone(&stats),
                n.kill.clone(),
            ));
        }
        let mut feed = history.subscribe();
        let finish = n.finish.clone();
        n.tasks.spawn(async move {
            let dispatch = |notice: &crate::events::Notice| {
                let inputs = inputs.load();
                for run in plan(&inputs.notify, &inputs.ctx, notice) {
                    let i = run.hook;
                    if let Some(old) = queues[i].push(run) {
                        stats.hooks[i].dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(hook = %stats.hooks[i].name, dropped = %old.what,
                            "notify: the hook's queue is full (it runs slower than changes come); dropped its oldest waiting run");
                    }
                }
            };
            let lagged = |n: u64| {
                tracing::warn!(
                    lost = n,
                    "notify: changes were lost before reaching the hooks"
                );
                for h in &stats.hooks {
                    h.dropped.fetch_add(n, Ordering::Relaxed);
                }
            };
            loop {
                tokio::select! {
                    biased;
                    r = feed.recv() => match r {
                        Ok(notice) => dispatch(&notice),
                        Err(RecvError::Lagged(n)) => lagged(n),
                        // Every History handle is gone: nothing more will come.
                        Err(RecvError::Closed) => break,
                    },
                    _ = finish.cancelled() => {
                        // What was recorded before the finish still runs (the stop hook).
                        loop {
                            match feed.try_recv() {
                                Ok(notice) => dispatch(&notice),
                                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => lagged(n),
                                Err(_) => break,
                            }
                        }
                        break;
                    }
                }
            }
            for q in queues.iter() {
                q.close();
            }
        });
        n
    }

    /// After a reload: the new VIPs, interface, instance name and timeout apply to the
    /// next changes. The hooks themselves stay those this notifier started with (a
    /// changed list applies at the next restart; the reload plan says so).
    pub fn reconfigure(&self, config: &Config) {
        let old = self.inputs.load();
        let notify = if config.notify.hooks == old.notify.hooks {
            config.notify.clone()
        } else {
            old.notify.clone()
        };
        self.inputs.store(Arc::new(Inputs {
            notify,
            ctx: Context::from_config(config),
        }));
    }

    /// The hooks' counters (for status and metrics).
    pub fn stats(&self) -> Arc<NotifyStats> {
        Arc::clone(&self.stats)
    }

    /// Stops taking new changes and lets the queued runs finish, for at most `bound`;
    /// then kills what still runs and drops the rest (counted as dropped).
    pub async fn finish(self, bound: Duration) {
        self.finish.cancel();
        if tokio::time::timeout(bound, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(bound = %crate::units::format_duration(bound),
                "notify: hooks still running at shutdown; killing them");
            self.kill.cancel();
            self.tasks.wait().await;
        }
    }
}

async fn worker(
    i: usize,
    queues: Arc<Vec<Queue>>,
    stats: Arc<NotifyStats>,
    kill: CancellationToken,
) {
    let q = &queues[i];
    let hs = &stats.hooks[i];
    loop {
        if kill.is_cancelled() {
            let mut left = 0;
            while q.pop().is_some() {
                left += 1;
            }
            hs.dropped.fetch_add(left, Ordering::Relaxed);
            return;
        }
        match q.pop() {
            Some(run) => {
                let outcome = run_one(&hs.name, &run, &kill).await;
                hs.runs[outcome.index()].fetch_add(1, Ordering::Relaxed);
            }
            None if q.closed.load(Ordering::Acquire) => {
                // A run pushed just before the close is in the queue: take it first.
                if q.runs.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                    return;
                }
            }
            None => {
                tokio::select! {
                    _ = q.wake.notified() => {}
                    _ = kill.cancelled() => {}
                }
            }
        }
    }
}

/// Runs one hook in a process group of its own; kills the group at `timeout` or when
/// `kill` fires.
async fn run_one(hook: &str, run: &Run, kill: &CancellationToken) -> Outcome {
    let timeout = run.timeout;
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&run.program);
    cmd.args(&run.args)
        .envs(run.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .process_group(0);
    // systemd's channel to apivip is not the hook's: a hook must not speak for it.
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
    ] {
        cmd.env_remove(var);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(hook, program = %run.program.display(), event = %run.what, error = %e,
                "notify: cannot start the hook");
            return Outcome::Error;
        }
    };
    let pid = child.id();
    let killed = |why: &str| {
        // The child is not reaped yet, so its PID (and group ID) is still ours.
        if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tracing::warn!(hook, pid, event = %run.what, timeout = %crate::units::format_duration(timeout),
            "notify: {why}; killed it and its process group");
    };
    let status = tokio::select! {
        s = child.wait() => s,
        _ = tokio::time::sleep(timeout) => {
            killed("the hook ran past notify.timeout");
            let _ = child.wait().await;
            return Outcome::Timeout;
        }
        _ = kill.cancelled() => {
            killed("the hook was still running at shutdown");
            let _ = child.wait().await;
            return Outcome::Timeout;
        }
    };
    let took = crate::units::format_duration(started.elapsed());
    match status {
        Ok(s) if s.success() => {
            tracing::info!(hook, event = %run.what, took = %took, "notify: hook ran");
            Outcome::Ok
        }
        Ok(s) => {
            tracing::warn!(hook, event = %run.what, took = %took, status = %s, "notify: hook failed");
            Outcome::Failed
        }
        Err(e) => {
            tracing::error!(hook, event = %run.what, error = %e, "notify: cannot wait for the hook");
            Outcome::Error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize) -> Run {
        Run {
            hook: 0,
            program: "/bin/true".into(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(1),
            what: format!("change {n}"),
        }
    }

    #[test]
    fn a_full_queue_drops_its_oldest_run_and_keeps_the_order_of_the_rest() {
        let q = Queue::default();
        for i in 0..QUEUE_CAPACITY {
            assert_eq!(q.push(run(i)), None);
        }
        assert_eq!(
            q.push(run(QUEUE_CAPACITY)).map(|r| r.what),
            Some("change 0".into())
        );
        let mut left = Vec::new();
        while let Some(r) = q.pop() {
            left.push(r.what);
        }
        let want: Vec<String> = (1..=QUEUE_CAPACITY)
            .map(|i| format!("change {i}"))
            .collect();
        assert_eq!(left, want);
    }
}
