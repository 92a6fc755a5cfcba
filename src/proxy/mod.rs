//! The L4 proxy: listeners, backend choice with connect retry, forwarding, and closing
//! connections to backends that went down.
//!
//! ```text
//!  accept loop --(permit)--> connection task: pick (balance) -> connect (retry) -> forward
//!       ^                                   |                                  ^
//!   listeners (IP_FREEBIND)          Slot.active (least-conn)       Slot generation token
//!                                                                         |
//!  HealthView --> health watcher: Up/Down per slot; on Down, cancel the generation
//!                 (at once when unreachable, after `not_ready_grace` when not ready)
//! ```

pub mod admission;
pub mod balance;
pub mod forward;
pub mod outage;
pub mod rebalance;
pub mod splice;
pub mod workers;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Frontend;
use crate::health::{DownCause, HealthView, Status};
use admission::Admission;
use balance::{Candidate, Pick};
pub use forward::Mode;
use outage::Outage;
use rebalance::{Rebalancer, Standing};
use splice::PipePool;

/// Counters of one frontend (read by tests, logs and, later, metrics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections accepted.
    pub accepted: AtomicU64,
    /// Clients closed at once because `max_connections` was reached.
    pub rejected_limit: AtomicU64,
    /// Backend connects that failed (each retried on another backend).
    pub connect_failures: AtomicU64,
    /// Connects tried on a backend that was not healthy (no healthy one left).
    pub fallback_attempts: AtomicU64,
    /// Clients closed because no backend accepted.
    pub no_backend: AtomicU64,
    /// Connections closed because their backend went down.
    pub closed_on_down: AtomicU64,
    /// Connections currently proxied.
    pub active: AtomicUsize,
    /// Whether a local outage holds the closes now (see [`outage`]).
    pub local_outage: AtomicBool,
    /// Clients refused or closed by the abuse limits, by [`Refused`] reason.
    pub refused: [AtomicU64; Refused::ALL.len()],
    /// Connections closed to move them to a less loaded backend (see [`rebalance`]).
    pub rebalanced: AtomicU64,
    /// Rate-limits the warnings about refused and failed clients (one per
    /// [`LOG_EVERY`]), so that a flood never floods the journal.
    log_gate: LogGate,
}

/// Why a client was refused or closed by the abuse limits (the metrics' `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source holds `per_source_max_connections` already.
    SourceLimit,
    /// Its source used up `per_source_rate`.
    SourceRate,
    /// It sent nothing within `first_byte_timeout`.
    FirstByteTimeout,
    /// One side finished and the other stayed silent for `half_close_timeout`.
    HalfCloseTimeout,
    /// Taking it could run the process out of file descriptors.
    FdBudget,
    /// It had sent nothing for at least [`EVICTABLE_AFTER`] when the frontend was full
    /// and a new client came: closed to make room.
    EvictedSilent,
}

impl Refused {
    /// Every reason, in counter order.
    pub const ALL: [Refused; 6] = [
        Refused::SourceLimit,
        Refused::SourceRate,
        Refused::FirstByteTimeout,
        Refused::HalfCloseTimeout,
        Refused::FdBudget,
        Refused::EvictedSilent,
    ];

    /// The metrics label.
    pub const fn label(self) -> &'static str {
        match self {
            Refused::SourceLimit => "source_limit",
            Refused::SourceRate => "source_rate",
            Refused::FirstByteTimeout => "first_byte_timeout",
            Refused::HalfCloseTimeout => "half_close_timeout",
            Refused::FdBudget => "fd_budget",
            Refused::EvictedSilent => "evicted_silent",
        }
    }
}

/// How often at most one frontend logs a warning about refused or failed clients.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A warning at most every [`LOG_EVERY`], with the count of those left out since.
#[derive(Debug, Default)]
struct LogGate {
    /// Milliseconds since [`clock_origin`] of the last warning, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

fn clock_origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(std::time::Instant::now)
}

impl LogGate {
    /// `Some(left out since the last one)` when a warning may be logged now.
    fn pass(&self) -> Option<u64> {
        let now = clock_origin().elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Stats {
    /// Counts a refusal and logs it, rate-limited.
    fn refuse(&self, kind: crate::config::FrontendKind, why: Refused, peer: SocketAddr) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(left_out) = self.log_gate.pass() {
            tracing::warn!(frontend = %kind, %peer, reason = why.label(), similar_left_out = left_out,
                "client refused or closed (warnings like this are logged once every 10s)");
        }
    }

    /// A refusal count by reason.
    pub fn refused(&self, why: Refused) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }
}

/// Counters of one backend (relaxed atomics: the metrics read them at scrape time).
/// Aligned to its own cache lines, so that the byte counters every forwarding wakeup
/// adds to do not share a line with the fields every connect reads (`healthy`,
/// `drained`, `active`).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct BackendStats {
    /// Connects that succeeded (connections proxied).
    pub connections: AtomicU64,
    /// Connects refused by the backend.
    pub connect_refused: AtomicU64,
    /// Connects that timed out (`connect_timeout`).
    pub connect_timeout: AtomicU64,
    /// Connects that failed otherwise (reset, unreachable, ...).
    pub connect_other: AtomicU64,
    /// Connects that succeeded just after the backend was declared unreachable, and
    /// were dropped.
    pub connect_went_down: AtomicU64,
    /// Connects to this backend made after another backend failed for the same client.
    pub retries: AtomicU64,
    /// Connections closed because this backend went down (or its grace ran out).
    pub closed_on_down: AtomicU64,
    /// Bytes from clients to this backend.
    pub bytes_sent: AtomicU64,
    /// Bytes from this backend to clients.
    pub bytes_received: AtomicU64,
}

/// One backend as the proxy sees it. Shared by every generation of its frontend
/// (a reload keeps the slots of the masters it keeps), so counters, active
/// connections and the close-on-down generation survive a reload.
#[derive(Debug)]
struct Slot {
    name: String,
    addr: SocketAddr,
    healthy: AtomicBool,
    /// Drained by an operator: not even a fallback.
    drained: AtomicBool,
    active: AtomicUsize,
    stats: BackendStats,
    /// Cancelled to close every connection made in this generation; a child of
    /// `stop`, so that a hard stop closes them too.
    generation: Mutex<CancellationToken>,
    /// The frontend's hard stop: the parent of every generation.
    stop: CancellationToken,
    /// The routing status last applied (see [`FrontendProxy::apply_status`]).
    status: Mutex<Status>,
    /// A pending close (a not-ready grace, or an unreachable backend's deferral):
    /// cancelled when the status changes again. Never holds a cancelled token: whoever
    /// takes one out cancels it while holding the lock.
    grace: Mutex<Option<CancellationToken>>,
    /// Removed by a reload: no health change or drain applies to it any more (an old
    /// generation's watcher may still run for a moment).
    retired: AtomicBool,
    /// Turned lost during a local outage: its close waits for the outage's end.
    held: AtomicBool,
    /// When it last returned (down, then up), in ms since [`clock_origin`] plus one;
    /// 0 when it did not (slow start).
    returned: AtomicU64,
    /// Its connections the rebalancer may move (only while `rebalance` is on), by id.
    tracked: Mutex<std::collections::HashMap<u64, Arc<Tracked>>>,
}

/// A connection the rebalancer may move.
#[derive(Debug)]
struct Tracked {
    opened: std::time::Instant,
    /// Wakeups that moved data (see [`forward::Counters::activity`]).
    activity: AtomicU64,
    /// The rebalancer's last look: the activity it saw, and since when it stayed so.
    seen: Mutex<(u64, std::time::Instant)>,
    /// Cancelled to close it (moved to a less loaded backend); a child of its
    /// backend's generation, so that it also closes with the others.
    moved: CancellationToken,
    /// Chosen to move already: not chosen again while it closes.
    moving: AtomicBool,
}

/// Keeps a connection in its backend's [`Slot::tracked`] while it lives.
struct Tracking<'a> {
    slot: &'a Slot,
    id: u64,
    conn: Arc<Tracked>,
}

impl<'a> Tracking<'a> {
    fn new(slot: &'a Slot, generation: &CancellationToken) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let now = std::time::Instant::now();
        let conn = Arc::new(Tracked {
            opened: now,
            activity: AtomicU64::new(0),
            seen: Mutex::new((0, now)),
            moved: generation.child_token(),
            moving: AtomicBool::new(false),
        });
        lock(&slot.tracked).insert(id, Arc::clone(&conn));
        Tracking { slot, id, conn }
    }
}

impl Drop for Tracking<'_> {
    fn drop(&mut self) {
        lock(&self.slot.tracked).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slot {
    fn new(name: String, addr: SocketAddr, stop: &CancellationToken) -> Self {
        Slot {
            name,
            addr,
            healthy: AtomicBool::new(false),
            drained: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            stats: BackendStats::default(),
            generation: Mutex::new(stop.child_token()),
            stop: stop.clone(),
            status: Mutex::new(Status::Unknown),
            grace: Mutex::new(None),
            retired: AtomicBool::new(false),
            held: AtomicBool::new(false),
            returned: AtomicU64::new(0),
            tracked: Mutex::default(),
        }
    }

    /// Looks at every tracked connection (how long each has been idle) and returns
    /// them as the rebalancer sees them when `collect`.
    fn sample(
        &self,
        now: std::time::Instant,
        collect: bool,
    ) -> Vec<(rebalance::Conn, Arc<Tracked>)> {
        let tracked = lock(&self.tracked);
        let mut out = Vec::with_capacity(if collect { tracked.len() } else { 0 });
        for (&id, conn) in tracked.iter() {
            let activity = conn.activity.load(Ordering::Relaxed);
            let idle_since = {
                let mut seen = lock(&conn.seen);
                if seen.0 != activity {
                    *seen = (activity, now);
                }
                seen.1
            };
            if collect && !conn.moving.load(Ordering::Relaxed) {
                let c = rebalance::Conn {
                    id,
                    age: now.saturating_duration_since(conn.opened),
                    idle: now.saturating_duration_since(idle_since),
                };
                out.push((c, Arc::clone(conn)));
            }
        }
        out
    }

    /// Closes this backend's connections after `after` (at once when zero), unless
    /// the status changes first.
    fn close_after(
        self: &Arc<Self>,
        kind: crate::config::FrontendKind,
        after: Duration,
        why: &'static str,
    ) {
        let recovered = CancellationToken::new();
        if let Some(old) = lock(&self.grace).replace(recovered.clone()) {
            old.cancel();
        }
        let slot = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = recovered.cancelled() => {}
                _ = tokio::time::sleep(after) => {
                    {
                        // Whoever takes a pending close out of `grace` cancels it under
                        // this lock: not cancelled means still pending, and it is done.
                        let mut pending = lock(&slot.grace);
                        if recovered.is_cancelled() {
                            return;
                        }
                        pending.take();
                    }
                    tracing::info!(frontend = %kind, backend = %slot.name, "grace over: closing connections to a {why} backend");
                    slot.rotate().cancel();
                }
            }
        });
    }

    /// Closes the connections of this unreachable backend: at once when `defer` is zero,
    /// else after `defer` (see [`outage::Outage::defer`]) unless its status changes
    /// first. `context` says why in the log.
    fn close_unreachable(
        self: &Arc<Self>,
        kind: crate::config::FrontendKind,
        defer: Duration,
        context: &str,
    ) {
        if defer.is_zero() {
            tracing::info!(frontend = %kind, backend = %self.name, context, "closing connections to an unreachable backend");
            self.rotate().cancel();
        } else {
            tracing::info!(frontend = %kind, backend = %self.name, context,
                after = %crate::units::format_duration(defer),
                "unreachable backend: closing its connections after the outage window, unless most masters turn down with it (this node's own outage) or it answers again first");
            self.close_after(kind, defer, "unreachable");
        }
    }

    /// Its share of new connections: ramping up for `slow_start` after it returned.
    fn weight(&self, slow_start: Option<Duration>) -> u16 {
        let returned = self.returned.load(Ordering::Relaxed);
        if returned == 0 || slow_start.is_none() {
            return balance::FULL_WEIGHT;
        }
        let now = clock_origin().elapsed().as_millis() as u64 + 1;
        balance::ramp(
            Duration::from_millis(now.saturating_sub(returned)),
            slow_start,
        )
    }

    fn generation(&self) -> CancellationToken {
        self.generation
            .lock()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Starts a new generation and returns the old one (for the caller to cancel).
    fn rotate(&self) -> CancellationToken {
        let mut g = self.generation.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *g, self.stop.child_token())
    }
}

/// A frontend's shared state: its backends and counters.
#[derive(Debug)]
pub struct FrontendProxy {
    cfg: Frontend,
    slots: Vec<Arc<Slot>>,
    cursor: Arc<AtomicUsize>,
    pipes: Arc<PipePool>,
    mode: Mode,
    /// The health generation this frontend's slots are numbered for (see
    /// [`crate::health::HealthSnapshot::generation`]).
    health_generation: u64,
    /// Counters (shared by every generation of the frontend).
    pub stats: Arc<Stats>,
    /// Per-source admission, when a per-source limit is set (shared by the generations
    /// with the same limits).
    admission: Option<Arc<Mutex<Admission>>>,
    /// Connections waiting for their first byte, oldest first (shared by generations).
    waiting: Arc<Mutex<std::collections::VecDeque<Arc<Waiter>>>>,
    /// The local-outage detector: carried on by the next generation when a reload keeps
    /// the same masters in the same order, so that a reload during an outage does not
    /// end its hold.
    outage: Arc<Mutex<Outage>>,
    /// Whether `outage` comes from the generation before.
    outage_carried: bool,
    /// The hard stop (the supervisor's): ends every connection now.
    stop: CancellationToken,
}

/// How long a client must have stayed silent before a full frontend may close it to
/// make room: far more than the round trip a real client's ClientHello takes.
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// A connection waiting for its client's first byte.
#[derive(Debug)]
struct Waiter {
    since: std::time::Instant,
    /// Cancelled to close it (the frontend is full and it stayed silent).
    evict: CancellationToken,
    /// It spoke or ended: nothing to evict.
    done: AtomicBool,
}

/// A connection counted in its source's admission entry until it ends.
struct Admitted {
    table: Arc<Mutex<Admission>>,
    source: admission::Source,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.table).release(self.source, std::time::Instant::now());
    }
}

/// The admission table for `cfg`: `None` without per-source limits. Sized beyond the
/// connection limit, so that sources with open connections always fit.
fn admission_for(cfg: &Frontend) -> Option<Arc<Mutex<Admission>>> {
    cfg.per_source.any().then(|| {
        Arc::new(Mutex::new(Admission::new(
            cfg.per_source,
            cfg.max_connections.saturating_add(1024),
        )))
    })
}

/// The current generation of a frontend: the accept loops read it per connection, a
/// reload swaps it.
pub type FrontendCell = Arc<arc_swap::ArcSwap<FrontendProxy>>;

impl FrontendProxy {
    /// Shared state for `cfg`, numbered for the health view's `health_generation`;
    /// every backend starts not healthy (unknown). Cancelling `stop` ends every
    /// connection at once (the hard stop).
    pub fn new(
        cfg: Frontend,
        mode: Mode,
        health_generation: u64,
        pipes: usize,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let slots = cfg
            .backends
            .iter()
            .map(|b| Arc::new(Slot::new(b.name.clone(), b.addr, &stop)))
            .collect();
        Arc::new(FrontendProxy {
            slots,
            cursor: Arc::new(AtomicUsize::new(0)),
            pipes: Arc::new(PipePool::new(pipes)),
            mode,
            health_generation,
            stats: Arc::new(Stats::default()),
            admission: admission_for(&cfg),
            waiting: Arc::default(),
            outage: Arc::new(Mutex::new(Outage::new(
                cfg.backends.len(),
                local_outage_window(&cfg),
                LOCAL_OUTAGE_HOLD,
            ))),
            outage_carried: false,
            stop,
            cfg,
        })
    }

    /// The next generation for a reloaded `cfg`: the masters `map` keeps share their
    /// slots (counters, connections, health); added ones start unknown. The masters
    /// it removes are retired: no new connections, existing ones closed after the new
    /// `not_ready_grace`. The caller swaps the result into the [`FrontendCell`] and
    /// runs a [`watch_health`] for it.
    pub fn reconfigure(
        self: &Arc<Self>,
        cfg: Frontend,
        map: &crate::config::diff::BackendMap,
        health_generation: u64,
    ) -> Arc<Self> {
        let slots = cfg
            .backends
            .iter()
            .zip(&map.old_of_new)
            .map(|(b, old)| match old.and_then(|i| self.slots.get(i)) {
                Some(s) => Arc::clone(s),
                None => Arc::new(Slot::new(b.name.clone(), b.addr, &self.stop)),
            })
            .collect();
        for &i in &map.removed {
            if let Some(slot) = self.slots.get(i) {
                Self::retire(slot, cfg.kind, cfg.not_ready_grace);
            }
        }
        // The same limits keep the table (and what each source holds); new limits (or a
        // new max_connections, which sizes the table) start a new one (connections
        // admitted by the old one release into it).
        let admission = if cfg.per_source == self.cfg.per_source
            && cfg.max_connections == self.cfg.max_connections
        {
            self.admission.clone()
        } else {
            admission_for(&cfg)
        };
        let same_masters = map.old_of_new.len() == self.slots.len()
            && map
                .old_of_new
                .iter()
                .enumerate()
                .all(|(i, o)| *o == Some(i));
        let outage = if same_masters {
            lock(&self.outage).set_window(local_outage_window(&cfg));
            Arc::clone(&self.outage)
        } else {
            Arc::new(Mutex::new(Outage::new(
                cfg.backends.len(),
                local_outage_window(&cfg),
                LOCAL_OUTAGE_HOLD,
            )))
        };
        Arc::new(FrontendProxy {
            slots,
            cursor: Arc::clone(&self.cursor),
            pipes: Arc::clone(&self.pipes),
            mode: self.mode,
            health_generation,
            stats: Arc::clone(&self.stats),
            admission,
            waiting: Arc::clone(&self.waiting),
            outage,
            outage_carried: same_masters,
            stop: self.stop.clone(),
            cfg,
        })
    }

    /// Retires every backend (the frontend is removed by a reload).
    pub fn retire_all(&self) {
        for slot in &self.slots {
            Self::retire(slot, self.cfg.kind, self.cfg.not_ready_grace);
        }
    }

    /// A backend removed from the config: no new connections, its connections
    /// closed after `grace`.
    fn retire(slot: &Arc<Slot>, kind: crate::config::FrontendKind, grace: Duration) {
        {
            let mut status = lock(&slot.status);
            slot.retired.store(true, Ordering::Relaxed);
            *status = Status::Down(DownCause::NotReady);
        }
        slot.drained.store(true, Ordering::Relaxed);
        slot.healthy.store(false, Ordering::Relaxed);
        let open = slot.active.load(Ordering::Relaxed);
        tracing::info!(frontend = %kind, backend = %slot.name, open,
            grace = %crate::units::format_duration(grace),
            "backend removed from the config: no new connections; closing existing ones after the grace");
        slot.close_after(kind, grace, "removed");
    }

    /// The frontend's config.
    pub fn config(&self) -> &Frontend {
        &self.cfg
    }

    /// Active connections per backend, in config order.
    pub fn active_per_backend(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|s| s.active.load(Ordering::Relaxed))
            .collect()
    }

    /// Drains (or undrains) a backend for new connections at once; the health watcher
    /// then closes its connections after the grace.
    pub fn set_drained(&self, i: usize, drained: bool) {
        if let Some(s) = self.slots.get(i) {
            s.drained.store(drained, Ordering::Relaxed);
        }
    }

    /// A backend's counters and active connections, by its index in the frontend.
    pub fn backend_stats(&self, i: usize) -> Option<(&BackendStats, usize)> {
        self.slots
            .get(i)
            .map(|s| (&s.stats, s.active.load(Ordering::Relaxed)))
    }

    /// Which backends of `f` are lost: down for a reason that closes at once or after
    /// the grace, and not taken out by an operator or a reload.
    fn lost(&self, f: &crate::health::FrontendHealth) -> Vec<bool> {
        f.backends
            .iter()
            .zip(&self.slots)
            .map(|(b, slot)| {
                !b.drained
                    && !slot.retired.load(Ordering::Relaxed)
                    && matches!(
                        b.status,
                        Status::Down(DownCause::Unreachable | DownCause::Unresponsive)
                    )
            })
            .collect()
    }

    /// A local outage started: the closes already pending for lost backends (the first
    /// ones to turn down, before the outage was recognised: deferred or in their grace)
    /// are held too.
    fn hold_pending(&self) {
        for slot in &self.slots {
            let status = *lock(&slot.status);
            if !matches!(
                status,
                Status::Down(DownCause::Unreachable | DownCause::Unresponsive)
            ) {
                continue;
            }
            if let Some(pending) = lock(&slot.grace).take() {
                pending.cancel();
                slot.held.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Applies the closes a local outage held, to the backends still lost: an
    /// unreachable one's after `defer` (it may be about to report up, like the others
    /// did), an unresponsive one's after the grace.
    fn release_held(&self, defer: Duration) {
        for slot in &self.slots {
            if !slot.held.swap(false, Ordering::Relaxed) {
                continue;
            }
            if !self.cfg.close_on_down && !slot.drained.load(Ordering::Relaxed) {
                continue;
            }
            let status = *lock(&slot.status);
            match status {
                Status::Down(DownCause::Unreachable) => {
                    slot.close_unreachable(self.cfg.kind, defer, "held during the local outage");
                }
                Status::Down(DownCause::Unresponsive) => {
                    slot.close_after(self.cfg.kind, self.cfg.not_ready_grace, "unresponsive");
                }
                _ => {}
            }
        }
    }

    /// Connects to a backend for one client: healthy ones first by policy, each tried
    /// at most once; then the others once each.
    ///
    /// The backend's generation is taken *before* connecting and the connection is
    /// counted from then on (least-connections sees connects in flight). A connect that
    /// succeeds after its backend was declared unreachable (its generation cancelled
    /// meanwhile) is dropped and the next backend tried, so no connection escapes
    /// close-on-down.
    async fn connect(&self) -> Option<Connected<'_>> {
        let n = self.slots.len();
        let cursor = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut tried = vec![false; n];
        loop {
            let cands: Vec<Candidate> = self
                .slots
                .iter()
                .map(|s| Candidate {
                    healthy: s.healthy.load(Ordering::Relaxed),
                    drained: s.drained.load(Ordering::Relaxed),
                    active: s.active.load(Ordering::Relaxed),
                    weight: s.weight(self.cfg.slow_start),
                })
                .collect();
            let pick = balance::pick(self.cfg.balance, cursor, &cands, &tried)?;
            let i = pick.index();
            tried[i] = true;
            if let Pick::Fallback(_) = pick {
                self.stats.fallback_attempts.fetch_add(1, Ordering::Relaxed);
            }
            let slot = &self.slots[i];
            if tried.iter().filter(|&&t| t).count() > 1 {
                slot.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let generation = slot.generation();
            let lease = Lease::new(self, i);
            let attempt =
                tokio::time::timeout(self.cfg.connect_timeout, TcpStream::connect(slot.addr)).await;
            match attempt {
                Ok(Ok(stream)) if !generation.is_cancelled() => {
                    slot.stats.connections.fetch_add(1, Ordering::Relaxed);
                    return Some(Connected {
                        lease,
                        stream,
                        generation,
                    });
                }
                Ok(Ok(_)) => {
                    slot.stats.connect_went_down.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(frontend = %self.cfg.kind, backend = %slot.name, "backend went down during the connect; trying the next backend");
                }
                Ok(Err(e)) => {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    let counter = if e.kind() == io::ErrorKind::ConnectionRefused {
                        &slot.stats.connect_refused
                    } else {
                        &slot.stats.connect_other
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(frontend = %self.cfg.kind, backend = %slot.name, error = %e, "connect failed; trying the next backend");
                }
                Err(_) => {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    slot.stats.connect_timeout.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(frontend = %self.cfg.kind, backend = %slot.name, "connect timed out; trying the next backend");
                }
            }
        }
    }

    /// Applies one backend's routing status (no-op when it did not change).
    ///
    /// Into `Down(Unreachable)` (from anything, fallback connections included): close
    /// at once. Into `Down(NotReady)` or `Down(Unresponsive)` from `Up` or `Unknown`:
    /// close after the grace, unless it recovers first; between those two the grace
    /// keeps running. `Down(Unreachable)` -> either: nothing left to close.
    ///
    /// With `hold` (a local outage, see [`outage`]), a backend that turns lost keeps
    /// its connections; [`FrontendProxy::release_held`] applies the close later.
    /// Otherwise an unreachable backend's close waits `defer` (the outage window: the
    /// other masters' checks may fail a moment later, making it a local outage).
    fn apply_status(&self, i: usize, to: Status, hold: bool, defer: Duration) {
        let Some(slot) = self.slots.get(i) else {
            return;
        };
        let from = {
            let mut status = lock(&slot.status);
            if slot.retired.load(Ordering::Relaxed) {
                return;
            }
            std::mem::replace(&mut *status, to)
        };
        if from == to {
            return;
        }
        slot.healthy.store(to.is_up(), Ordering::Relaxed);
        let lost = matches!(
            to,
            Status::Down(DownCause::Unreachable | DownCause::Unresponsive)
        );
        // Not an operator's drain: the outage detector does not count those either.
        if hold && lost && !slot.drained.load(Ordering::Relaxed) {
            // Closed when the outage ends, if still due.
            slot.held.store(true, Ordering::Relaxed);
            return;
        }
        // A held backend was never closed and has no grace running: it is handled as
        // if it came from up below.
        let was_held = slot.held.swap(false, Ordering::Relaxed);
        // Back from down: new connections ramp up over `slow_start` (not at start,
        // from unknown, where every backend starts together).
        let returned = matches!(from, Status::Down(_)) && to == Status::Up;
        slot.returned.store(
            if returned {
                clock_origin().elapsed().as_millis() as u64 + 1
            } else {
                0
            },
            Ordering::Relaxed,
        );
        if returned {
            if let Some(window) = self.cfg.slow_start {
                tracing::info!(frontend = %self.cfg.kind, backend = %slot.name,
                    window = %crate::units::format_duration(window),
                    "backend up again: its share of new connections ramps up over the slow start");
            }
        }
        let graced = |s: Status| {
            matches!(
                s,
                Status::Down(DownCause::NotReady | DownCause::Unresponsive)
            )
        };
        if graced(from) && graced(to) && !was_held && lock(&slot.grace).is_some() {
            // Not ready <-> unresponsive: its grace keeps running.
            return;
        }
        // Any other change ends a pending grace or deferred close: recovered (keep the
        // connections), escalated (closed below) or restarted (a new timer below).
        let had_pending = {
            let mut grace = lock(&slot.grace);
            grace.take().map(|pending| pending.cancel()).is_some()
        };
        // A drain closes the connections after the grace even where `close_on_down`
        // is off: the operator asked for it.
        if !self.cfg.close_on_down && !slot.drained.load(Ordering::Relaxed) {
            return;
        }
        match to {
            Status::Up | Status::Unknown => {}
            Status::Down(DownCause::Unreachable) => {
                slot.close_unreachable(self.cfg.kind, defer, "turned unreachable");
            }
            Status::Down(cause @ (DownCause::NotReady | DownCause::Unresponsive)) => {
                if from == Status::Down(DownCause::Unreachable) && !was_held && !had_pending {
                    // Closed already.
                    return;
                }
                let after = self.cfg.not_ready_grace;
                let why = if cause == DownCause::NotReady {
                    "not-ready"
                } else {
                    "unresponsive"
                };
                tracing::info!(frontend = %self.cfg.kind, backend = %slot.name,
                    grace = %crate::units::format_duration(after),
                    "backend {why}: no new connections; closing existing ones after the grace");
                slot.close_after(self.cfg.kind, after, why);
            }
        }
    }
}

/// A connection being made or proxied to one backend: counted in the backend's and
/// the frontend's active connections for as long as it lives.
struct Lease<'a> {
    fe: &'a FrontendProxy,
    slot: usize,
}

impl<'a> Lease<'a> {
    fn new(fe: &'a FrontendProxy, slot: usize) -> Self {
        fe.slots[slot].active.fetch_add(1, Ordering::Relaxed);
        fe.stats.active.fetch_add(1, Ordering::Relaxed);
        Lease { fe, slot }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.fe.slots[self.slot]
            .active
            .fetch_sub(1, Ordering::Relaxed);
        self.fe.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A successful backend connect.
struct Connected<'a> {
    lease: Lease<'a>,
    stream: TcpStream,
    /// Cancelled when the backend's connections must close.
    generation: CancellationToken,
}

/// Follows the health view and applies every change of this frontend's backends,
/// until `cancel` or until the view moves to another generation (a reload: the new
/// generation has its own watcher).
pub async fn watch_health(fe: Arc<FrontendProxy>, mut view: HealthView, cancel: CancellationToken) {
    let mut snap = view.current_and_mark_seen();
    if !fe.outage_carried {
        // A generation with other masters ends what an old one held, and the backends
        // lost already are not lost "at the same moment" as later ones. (With the same
        // masters, the detector goes on where the last generation left it.)
        let mut outage = lock(&fe.outage);
        fe.release_held(outage.defer());
        fe.stats.local_outage.store(false, Ordering::Relaxed);
        if let Some(f) = snap.frontend(fe.cfg.kind) {
            outage.resume(&fe.lost(f), std::time::Instant::now());
        }
    }
    let mut rebalancer = fe.cfg.rebalance.map(Rebalancer::new);
    let mut ticker = tokio::time::interval(REBALANCE_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether `snap` is new (not a rebalancing tick's wakeup).
    let mut fresh = true;
    loop {
        if snap.generation != fe.health_generation {
            return;
        }
        if !std::mem::replace(&mut fresh, true) {
            // A rebalancing tick: the health view did not change.
        } else if let Some(f) = snap.frontend(fe.cfg.kind) {
            let mut outage = lock(&fe.outage);
            let n = f.backends.len().min(fe.slots.len());
            let lost = fe.lost(f);
            let change = outage.observe(&lost, std::time::Instant::now());
            fe.stats
                .local_outage
                .store(outage.holding(), Ordering::Relaxed);
            let down = lost.iter().filter(|l| **l).count();
            match change {
                outage::Change::None => {}
                outage::Change::Started => tracing::warn!(frontend = %fe.cfg.kind, down, of = n,
                    hold = %crate::units::format_duration(LOCAL_OUTAGE_HOLD),
                    "most masters turned down at the same moment from this node: probably this node's own network; keeping their connections for now"),
                outage::Change::Recovered => tracing::info!(frontend = %fe.cfg.kind, down, of = n,
                    "local outage over: the masters answer again; closing what is still due"),
                outage::Change::Expired => tracing::warn!(frontend = %fe.cfg.kind, down, of = n,
                    "local outage lasted the whole hold: treating the masters as down; closing their connections"),
            }
            for (i, b) in f.backends.iter().enumerate().take(n) {
                if fe.slots[i].retired.load(Ordering::Relaxed) {
                    continue;
                }
                fe.slots[i].drained.store(b.drained, Ordering::Relaxed);
                fe.apply_status(i, b.routing_status(), outage.holding(), outage.defer());
            }
            match change {
                outage::Change::Started => fe.hold_pending(),
                outage::Change::Recovered | outage::Change::Expired => {
                    fe.release_held(outage.defer())
                }
                outage::Change::None => {}
            }
        }
        let (deadline, holding) = {
            let outage = lock(&fe.outage);
            (outage.deadline(), outage.holding())
        };
        snap = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            s = view.changed() => match s { Some(s) => s, None => return },
            // The hold runs out: look again at the same snapshot.
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            } => snap,
            _ = ticker.tick(), if rebalancer.is_some() => {
                if let Some(r) = rebalancer.as_mut() {
                    fe.rebalance_tick(r, holding);
                }
                fresh = false;
                snap
            }
        };
    }
}

/// How often the rebalancer looks at the spread (and at which connections are idle).
pub const REBALANCE_TICK: Duration = Duration::from_millis(500);

impl FrontendProxy {
    /// One rebalancing tick: plans the moves and closes the connections chosen.
    fn rebalance_tick(&self, r: &mut Rebalancer, holding: bool) {
        let Some(settings) = self.cfg.rebalance else {
            return;
        };
        let now = std::time::Instant::now();
        let standing: Vec<Standing> = self
            .slots
            .iter()
            .map(|s| {
                let out = holding
                    || s.retired.load(Ordering::Relaxed)
                    || s.drained.load(Ordering::Relaxed)
                    || s.held.load(Ordering::Relaxed)
                    || !s.healthy.load(Ordering::Relaxed);
                if out {
                    Standing::Out
                } else if s.weight(self.cfg.slow_start) < balance::FULL_WEIGHT {
                    Standing::Ramping
                } else {
                    // Only the connections it can move (opened while it is on).
                    Standing::In(lock(&s.tracked).len())
                }
            })
            .collect();
        let plan = r.tick(&standing, now);
        let spread = || {
            self.slots
                .iter()
                .zip(&standing)
                .map(|(s, st)| match st {
                    Standing::In(n) => format!("{}={n}", s.name),
                    Standing::Ramping => format!("{}=ramping", s.name),
                    Standing::Out => format!("{}=out", s.name),
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        match plan.phase {
            None => {}
            Some(rebalance::Phase::Started) => {
                tracing::info!(frontend = %self.cfg.kind, connections = %spread(),
                rate_percent = settings.rate * 100.0, min_age = %crate::units::format_duration(settings.min_age),
                "connections unevenly spread across the masters: moving some from the most loaded, the longest idle first")
            }
            Some(rebalance::Phase::Done) => {
                tracing::info!(frontend = %self.cfg.kind, connections = %spread(),
                "connections spread evenly again: rebalancing done")
            }
            Some(rebalance::Phase::Paused) => {
                tracing::info!(frontend = %self.cfg.kind, connections = %spread(),
                "rebalancing paused: fewer than two masters up, one still ramping up, or a local outage")
            }
        }
        for (slot, &k) in self.slots.iter().zip(&plan.moves) {
            let conns = slot.sample(now, k > 0);
            if k == 0 {
                continue;
            }
            let candidates: Vec<rebalance::Conn> = conns.iter().map(|(c, _)| *c).collect();
            let chosen = rebalance::choose(&candidates, k, settings.min_age);
            for &i in &chosen {
                let conn = &conns[i].1;
                conn.moving.store(true, Ordering::Relaxed);
                conn.moved.cancel();
            }
            r.unused(k - chosen.len());
            tracing::debug!(frontend = %self.cfg.kind, backend = %slot.name, moving = chosen.len(), planned = k, "rebalancing: closing connections to move them");
        }
    }
}

/// How long a local outage holds the closes at most (see [`outage`]).
pub const LOCAL_OUTAGE_HOLD: Duration = Duration::from_secs(30);

/// Masters that turn down within one check interval and timeout of each other, from
/// this node, turned down "at the same moment": their checks failed together.
fn local_outage_window(cfg: &Frontend) -> Duration {
    (cfg.check.interval + cfg.check.timeout).max(Duration::from_secs(1))
}

/// How long one connection of a backend that went down waits before it is closed:
/// uniform (by `unit`, in `[0, 1)`) over the time `rate` needs for the `open`
/// connections closing with it, at most [`crate::config::frontend::MAX_CLOSE_SPREAD`]. So the
/// closes, and the clients' reconnects to the other masters, come at about `rate` a
/// second instead of all in one instant. `None`: at once.
pub fn close_delay(open: usize, rate: Option<u32>, unit: f64) -> Duration {
    let Some(rate) = rate.filter(|r| *r > 0) else {
        return Duration::ZERO;
    };
    let spread = Duration::from_secs_f64(open as f64 / f64::from(rate))
        .min(crate::config::frontend::MAX_CLOSE_SPREAD);
    spread.mul_f64(unit.clamp(0.0, 1.0))
}

/// What the descriptor limit allows the proxy: connections (each holds two sockets) and
/// pipes per frontend (two descriptors each, lent to bulk bursts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Connections of all frontends together.
    pub connections: usize,
    /// Pipes of one frontend's pool.
    pub pipes_per_frontend: usize,
}

/// Descriptors kept for everything but proxied connections: the runtime, listeners,
/// health checks, the admin endpoint, VRRP and netlink sockets, DNS, logs.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// The budget for a descriptor limit of `limit` and `frontends` frontends: the
/// reserve and the pipe pools first (a pool gets limit/32 pipes, 4 to 256), two
/// descriptors a connection with the rest (at least 1), so that connections and
/// pipes together can never run the process into EMFILE.
pub fn descriptor_budget(limit: u64, frontends: usize) -> Budget {
    let pipes = (limit / 32).clamp(4, 256);
    let fixed = RESERVED_DESCRIPTORS + 2 * pipes * frontends.max(1) as u64;
    Budget {
        connections: usize::try_from((limit.saturating_sub(fixed) / 2).max(1))
            .unwrap_or(usize::MAX),
        pipes_per_frontend: pipes as usize,
    }
}

/// The budget for this process's current soft descriptor limit.
pub fn current_budget(frontends: usize) -> Budget {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    descriptor_budget(limit, frontends)
}

/// What a frontend's accept loop takes a permit from for each client: its own
/// `max_connections`, and the descriptor budget all frontends share.
#[derive(Debug, Clone)]
pub struct Permits {
    /// Sized to the frontend's `max_connections`.
    pub connections: Arc<Semaphore>,
    /// Sized to [`Budget::connections`], shared.
    pub descriptors: Arc<Semaphore>,
}

/// Binds a listener that may bind an address this node does not own yet (IP_FREEBIND,
/// for a VIP), with SO_REUSEADDR; IPv6 listeners are IPv6-only so `0.0.0.0` and `[::]`
/// can both be listed.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with(addr, true, 4096)
}

/// Binds a plain listener (SO_REUSEADDR, IPv6-only, no IP_FREEBIND): the admin
/// endpoint, which must fail at start when its address does not exist.
pub fn bind_plain(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_with(addr, false, 128)
}

/// Like [`bind`] (`plain: false`) or [`bind_plain`] (`plain: true`), without a runtime:
/// binds ports that need `CAP_NET_BIND_SERVICE` before the capabilities are dropped
/// and the runtime starts ([`crate::supervisor::Prebound`]).
pub fn bind_std(addr: SocketAddr, plain: bool) -> io::Result<std::net::TcpListener> {
    if plain {
        bind_socket(addr, false, 128)
    } else {
        bind_socket(addr, true, 4096)
    }
}

fn bind_with(addr: SocketAddr, freebind: bool, backlog: i32) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_socket(addr, freebind, backlog)?)
}

fn bind_socket(
    addr: SocketAddr,
    freebind: bool,
    backlog: i32,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        if freebind {
            socket.set_freebind_v6(true)?;
        }
    } else if freebind {
        socket.set_freebind_v4(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let ka = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = SockRef::from(stream).set_tcp_keepalive(&ka);
}

/// Accepts on `listener` until `stop_accepting`; each connection runs on `tracker`
/// and ends early when the frontend's hard stop is cancelled. While accept fails for want of
/// resources (EMFILE, ENFILE, ENOBUFS, ENOMEM), the frontend's `accept_error` in the
/// health view says why, so the node stops claiming it can serve; the first accept
/// that works again clears it.
pub async fn serve(
    cell: FrontendCell,
    listener: Listening,
    permits: Permits,
    health: crate::health::HealthPublisher,
    tracker: TaskTracker,
    stop_accepting: CancellationToken,
    on: Option<OnPool>,
) {
    // Starts true: the first accept that works clears an error another loop of this
    // frontend left (one stopped by a reload while failing). Shared by the loops of one
    // listener (one per worker), since any of them may take the connection that shows
    // accepting works again.
    let failing = on.as_ref().map_or_else(
        || Arc::new(AtomicBool::new(true)),
        |o| Arc::clone(&o.failing),
    );
    let kind = cell.load().cfg.kind;
    // A loop that ends while failing takes its error with it.
    let _clear = ClearOnDrop(&health, kind);
    let listener = match listener {
        Listening::Registered(l) => l,
        // Registered with the reactor of the runtime this loop runs on.
        Listening::Unregistered(l) => match TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(frontend = %kind, error = %e, "cannot accept on a proxy worker; the others accept");
                return;
            }
        },
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop_accepting.cancelled() => return,
        };
        let fe = cell.load_full();
        let (client, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                if is_resource_error(&e) {
                    // Set on every failure (a no-op while set): another listener of
                    // the frontend may have cleared it meanwhile.
                    if health.set_accept_error(fe.cfg.kind, Some(e.to_string())) {
                        tracing::error!(frontend = %fe.cfg.kind, error = %e,
                            "accept fails for want of resources: this node no longer claims it can serve until accepts work again");
                    }
                    failing.store(true, Ordering::Relaxed);
                } else if let Some(left_out) = fe.stats.log_gate.pass() {
                    tracing::warn!(frontend = %fe.cfg.kind, error = %e, similar_left_out = left_out, "accept failed");
                }
                // Back off instead of spinning on a listener that stays readable.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop_accepting.cancelled() => return,
                }
                continue;
            }
        };
        if failing.load(Ordering::Relaxed)
            && failing.swap(false, Ordering::Relaxed)
            && health.set_accept_error(fe.cfg.kind, None)
        {
            tracing::info!(frontend = %fe.cfg.kind, "accept works again: this node can serve again");
        }
        fe.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let Some(permit) = fe.permit_or_evict(&permits.connections).await else {
            fe.stats.rejected_limit.fetch_add(1, Ordering::Relaxed);
            if let Some(left_out) = fe.stats.log_gate.pass() {
                tracing::warn!(frontend = %fe.cfg.kind, %peer, limit = fe.cfg.max_connections, similar_left_out = left_out,
                    "connection limit reached; closing the client (warnings like this are logged once every 10s)");
            }
            reset(&client);
            continue;
        };
        // A full descriptor budget makes room the same way (silent clients would
        // otherwise lock real ones out through the budget).
        let Some(descriptors) = fe.permit_or_evict(&permits.descriptors).await else {
            fe.stats.refuse(fe.cfg.kind, Refused::FdBudget, peer);
            reset(&client);
            continue;
        };
        // After the global limits, so that a full frontend counts as such.
        let Some(admitted) = fe.admit(peer) else {
            reset(&client);
            continue;
        };
        let Some(on) = &on else {
            tracker.spawn(async move {
                handle(&fe, client, peer).await;
                drop((permit, descriptors, admitted));
            });
            continue;
        };
        let target = on.pool.pick(on.me);
        let counted = on.pool.enter(target);
        if target == on.me {
            tracker.spawn(async move {
                handle(&fe, client, peer).await;
                drop((permit, descriptors, admitted, counted));
            });
            continue;
        }
        // Handed to a less loaded worker: registered with its reactor there.
        let client = match client.into_std() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(frontend = %fe.cfg.kind, %peer, error = %e, "cannot hand a connection to another worker");
                continue;
            }
        };
        tracker.spawn_on(
            async move {
                match TcpStream::from_std(client) {
                    Ok(client) => handle(&fe, client, peer).await,
                    Err(e) => {
                        tracing::debug!(frontend = %fe.cfg.kind, %peer, error = %e, "cannot take a connection from another worker");
                    }
                }
                drop((permit, descriptors, admitted, counted));
            },
            on.pool.handle(target),
        );
    }
}

/// The listening socket an accept loop accepts on.
#[derive(Debug)]
pub enum Listening {
    /// Registered with the runtime the loop runs on already.
    Registered(TcpListener),
    /// To be registered by the loop, on the runtime it runs on (a worker's).
    Unregistered(std::net::TcpListener),
}

/// Where an accept loop runs: worker `me` of `pool` ([`workers`]).
#[derive(Debug, Clone)]
pub struct OnPool {
    /// The workers.
    pub pool: Arc<workers::Pool>,
    /// The worker this loop runs on.
    pub me: usize,
    /// Whether accepting on this listener failed for want of resources, shared by its
    /// loops on every worker.
    pub failing: Arc<AtomicBool>,
}

/// Clears a frontend's accept error when an accept loop ends.
struct ClearOnDrop<'a>(
    &'a crate::health::HealthPublisher,
    crate::config::FrontendKind,
);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set_accept_error(self.1, None);
    }
}

/// Errors of accept that mean this process or system is out of a resource, not that
/// one client went away.
fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Closes a client with a reset, so that it sees the refusal at once rather than an
/// EOF later.
fn reset(client: &TcpStream) {
    let _ = SockRef::from(client).set_linger(Some(Duration::ZERO));
}

impl FrontendProxy {
    /// Applies the per-source limits to a new client: `None` (counted and logged) when
    /// refused; otherwise what keeps it counted until it ends.
    fn admit(&self, peer: SocketAddr) -> Option<Option<Admitted>> {
        let Some(table) = &self.admission else {
            return Some(None);
        };
        let source = admission::Source::of(peer.ip());
        let verdict = lock(table).admit(source, std::time::Instant::now());
        match verdict {
            Ok(true) => Some(Some(Admitted {
                table: Arc::clone(table),
                source,
            })),
            Ok(false) => Some(None),
            Err(why) => {
                let why = match why {
                    admission::Refusal::Connections => Refused::SourceLimit,
                    admission::Refusal::Rate => Refused::SourceRate,
                };
                self.stats.refuse(self.cfg.kind, why, peer);
                None
            }
        }
    }

    /// Waits for the client's first byte (`first_byte_timeout`): `false` when it timed
    /// out or was evicted (counted and logged) or the client left without a byte.
    async fn first_byte(&self, client: &TcpStream, peer: SocketAddr) -> bool {
        let Some(limit) = self.cfg.first_byte_timeout else {
            return true;
        };
        let waiter = Arc::new(Waiter {
            since: std::time::Instant::now(),
            evict: CancellationToken::new(),
            done: AtomicBool::new(false),
        });
        {
            let mut q = lock(&self.waiting);
            // Entries of clients that spoke leave from the front; ones behind a silent
            // client are dropped once they could outnumber the connections.
            while q.front().is_some_and(|w| w.done.load(Ordering::Relaxed)) {
                q.pop_front();
            }
            if q.len() >= self.cfg.max_connections.saturating_mul(2).max(64) {
                q.retain(|w| !w.done.load(Ordering::Relaxed));
            }
            q.push_back(Arc::clone(&waiter));
        }
        let mut byte = [0u8; 1];
        let spoke = tokio::select! {
            r = tokio::time::timeout(limit, client.peek(&mut byte)) => match r {
                Ok(Ok(n)) => n > 0,
                Ok(Err(_)) => false,
                Err(_) => {
                    self.stats
                        .refuse(self.cfg.kind, Refused::FirstByteTimeout, peer);
                    reset(client);
                    false
                }
            },
            () = waiter.evict.cancelled() => {
                self.stats.refuse(self.cfg.kind, Refused::EvictedSilent, peer);
                reset(client);
                false
            }
        };
        waiter.done.store(true, Ordering::Relaxed);
        spoke
    }

    /// A permit of `limit`; when it is full, makes room by closing the longest-silent
    /// client (whose task gives its permits back at once) and waits a moment for it.
    async fn permit_or_evict(
        &self,
        limit: &Arc<Semaphore>,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match Arc::clone(limit).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if self.evict_silent() => tokio::time::timeout(
                Duration::from_millis(100),
                Arc::clone(limit).acquire_owned(),
            )
            .await
            .ok()
            .and_then(Result::ok),
            Err(_) => None,
        }
    }

    /// The frontend is full: closes the client that has been silent the longest, if
    /// it has been silent for [`EVICTABLE_AFTER`]. Returns whether one was closed.
    fn evict_silent(&self) -> bool {
        let now = std::time::Instant::now();
        let mut q = lock(&self.waiting);
        while let Some(w) = q.front() {
            if w.done.load(Ordering::Relaxed) || w.evict.is_cancelled() {
                q.pop_front();
                continue;
            }
            if now.saturating_duration_since(w.since) < EVICTABLE_AFTER {
                return false;
            }
            w.done.store(true, Ordering::Relaxed);
            w.evict.cancel();
            q.pop_front();
            return true;
        }
        false
    }
}

/// How a proxied connection was closed from our side.
enum Closed {
    /// Its backend went down (after the paced delay).
    Down,
    /// Moved to a less loaded backend (rebalancing).
    Moved,
    /// The hard stop.
    Stop,
}

async fn handle(fe: &FrontendProxy, client: TcpStream, peer: SocketAddr) {
    let connected = tokio::select! {
        // Boxed: waiting for the first byte and connecting happen once; their state
        // should not stay in the task of a connection that then idles for hours.
        c = Box::pin(async {
            if fe.first_byte(&client, peer).await {
                Some(fe.connect().await)
            } else {
                None
            }
        }) => c,
        _ = fe.stop.cancelled() => return,
    };
    let Some(connected) = connected else {
        return;
    };
    let Some(Connected {
        lease,
        stream: backend,
        generation,
    }) = connected
    else {
        fe.stats.no_backend.fetch_add(1, Ordering::Relaxed);
        if let Some(left_out) = fe.stats.log_gate.pass() {
            tracing::warn!(frontend = %fe.cfg.kind, similar_left_out = left_out,
                "no backend accepted the connection; closing the client (warnings like this are logged once every 10s)");
        }
        reset(&client);
        return;
    };
    let slot = &fe.slots[lease.slot];
    tune(&client);
    tune(&backend);
    let tracking = fe
        .cfg
        .rebalance
        .is_some()
        .then(|| Tracking::new(slot, &generation));
    let timeouts = forward::Timeouts {
        idle: fe.cfg.idle_timeout,
        half_close: fe.cfg.half_close_timeout,
    };
    // One wait for every close from our side: the generation (a child of the hard
    // stop), or a tracked connection's own token (a child of the generation).
    let closing = tracking.as_ref().map_or(&generation, |t| &t.conn.moved);
    tokio::select! {
        r = forward::forward(&client, &backend, fe.mode, &fe.pipes, timeouts, forward::Counters {
            upstream: &slot.stats.bytes_sent,
            downstream: &slot.stats.bytes_received,
            activity: tracking.as_ref().map(|t| &t.conn.activity),
        }) => {
            match r {
                Ok(forward::Ended::HalfClosed) => fe.stats.refuse(fe.cfg.kind, Refused::HalfCloseTimeout, peer),
                Ok(_) => {}
                Err(e) => tracing::trace!(frontend = %fe.cfg.kind, backend = %slot.name, error = %e, "connection ended with an error"),
            }
        }
        closed = async {
            closing.cancelled().await;
            if fe.stop.is_cancelled() {
                return Closed::Stop;
            }
            if !generation.is_cancelled() {
                return Closed::Moved;
            }
            let delay = close_delay(
                slot.active.load(Ordering::Relaxed),
                fe.cfg.close_rate,
                fastrand::f64(),
            );
            if !delay.is_zero() {
                // Boxed: only connections being closed pay for the timer.
                let stopped = Box::pin(async {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => false,
                        () = fe.stop.cancelled() => true,
                    }
                })
                .await;
                if stopped {
                    return Closed::Stop;
                }
            }
            Closed::Down
        } => match closed {
            Closed::Down => {
                fe.stats.closed_on_down.fetch_add(1, Ordering::Relaxed);
                slot.stats.closed_on_down.fetch_add(1, Ordering::Relaxed);
            }
            Closed::Moved => {
                fe.stats.rebalanced.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(frontend = %fe.cfg.kind, backend = %slot.name, %peer, "closing a connection to move it to a less loaded backend");
            }
            Closed::Stop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_spread_at_the_rate_over_at_most_the_cap() {
        let rate = Some(1000);
        // 5,000 connections at 1,000/s: spread over 5 s.
        assert_eq!(close_delay(5000, rate, 0.0), Duration::ZERO);
        assert_eq!(close_delay(5000, rate, 0.5), Duration::from_millis(2500));
        // 50,000 would take 50 s: capped, they close faster.
        assert_eq!(
            close_delay(50_000, rate, 0.999_999_9),
            Duration::from_secs(5).mul_f64(0.999_999_9)
        );
        // A few connections close at once.
        assert!(close_delay(3, rate, 0.99) < Duration::from_millis(3));
        // No rate: all at once.
        assert_eq!(close_delay(5000, None, 0.7), Duration::ZERO);
        assert_eq!(close_delay(5000, Some(0), 0.7), Duration::ZERO);
    }

    /// A flood of refusals logs one warning, then nothing until [`LOG_EVERY`] has passed;
    /// the next warning says how many were left out.
    #[test]
    fn warnings_are_rate_limited_and_count_what_they_left_out() {
        let gate = LogGate::default();
        assert_eq!(gate.pass(), Some(0));
        for _ in 0..1000 {
            assert_eq!(gate.pass(), None);
        }
        // As if LOG_EVERY had passed (the gate compares against the last warning).
        gate.last.store(0, Ordering::Relaxed);
        assert_eq!(gate.pass(), Some(1000));
        assert_eq!(gate.pass(), None);
    }

    #[test]
    fn the_budget_keeps_the_reserve_and_bounds_the_pipes() {
        let b = descriptor_budget(20_000, 2);
        assert_eq!(b.pipes_per_frontend, 256);
        assert_eq!(b.connections, (20_000 - 256 - 2 * 2 * 256) / 2);
        // Every descriptor accounted for fits the limit.
        for limit in [64u64, 320, 1024, 4096, 65_536, 1 << 20] {
            let b = descriptor_budget(limit, 2);
            let used = RESERVED_DESCRIPTORS
                + 2 * 2 * b.pipes_per_frontend as u64
                + 2 * b.connections as u64;
            assert!(
                used <= limit || b.connections == 1,
                "limit {limit}: {b:?} uses {used}"
            );
            assert!(b.connections >= 1);
        }
    }

    fn three(grace: &str) -> Arc<FrontendProxy> {
        let yaml = format!(
            "backends: [{{address: 198.18.0.11}}, {{address: 198.18.0.12}}, {{address: 198.18.0.13}}]\napiserver: {{not_ready_grace: {grace}, check: {{kind: tcp}}}}\n"
        );
        let c = crate::config::Config::from_yaml(&yaml, std::path::Path::new("t.yaml")).unwrap();
        let fe = FrontendProxy::new(
            c.frontends[0].clone(),
            Mode::Auto,
            0,
            4,
            CancellationToken::new(),
        );
        for i in 0..3 {
            fe.apply_status(i, Status::Up, false, Duration::ZERO);
        }
        fe
    }

    /// A backend held during a local outage was never closed: whatever it turns next
    /// (not ready, unresponsive), its close is due, not skipped as "closed already" or
    /// "grace running".
    #[tokio::test]
    async fn a_held_backend_that_changes_again_is_still_closed() {
        let fe = three("1h");
        let first = fe.slots[0].generation();
        fe.apply_status(
            0,
            Status::Down(DownCause::Unreachable),
            true,
            Duration::ZERO,
        );
        assert!(!first.is_cancelled(), "held: not closed during the outage");
        fe.apply_status(0, Status::Down(DownCause::NotReady), false, Duration::ZERO);
        assert!(lock(&fe.slots[0].grace).is_some(), "its grace must start");

        let fe = three("1h");
        fe.apply_status(
            1,
            Status::Down(DownCause::Unresponsive),
            true,
            Duration::ZERO,
        );
        fe.apply_status(1, Status::Down(DownCause::NotReady), false, Duration::ZERO);
        assert!(lock(&fe.slots[1].grace).is_some(), "its grace must start");

        // Held, still lost when the outage ends: closed then.
        let fe = three("1h");
        let gen = fe.slots[2].generation();
        fe.apply_status(
            2,
            Status::Down(DownCause::Unreachable),
            true,
            Duration::ZERO,
        );
        fe.release_held(Duration::ZERO);
        assert!(gen.is_cancelled(), "closed when the hold ends");
        assert!(!fe.slots[2].held.load(Ordering::Relaxed));
    }

    /// An unreachable backend's close waits the outage window: cancelled when it
    /// answers again, held when the others follow, and still due when it turns not
    /// ready instead (it was never closed).
    #[tokio::test]
    async fn an_unreachable_close_is_deferred_and_can_be_cancelled_or_held() {
        let defer = Duration::from_secs(3600);
        let fe = three("1h");
        let gen = fe.slots[0].generation();
        fe.apply_status(0, Status::Down(DownCause::Unreachable), false, defer);
        assert!(!gen.is_cancelled(), "closed at once despite the deferral");
        let pending = lock(&fe.slots[0].grace).clone().expect("a deferred close");
        fe.apply_status(0, Status::Up, false, defer);
        assert!(pending.is_cancelled(), "back up: the close is off");
        assert!(!gen.is_cancelled());

        let fe = three("1h");
        fe.apply_status(0, Status::Down(DownCause::Unreachable), false, defer);
        // The others follow: a local outage holds the first one's close too.
        fe.apply_status(1, Status::Down(DownCause::Unreachable), true, defer);
        fe.hold_pending();
        assert!(lock(&fe.slots[0].grace).is_none());
        assert!(fe.slots[0].held.load(Ordering::Relaxed));
        // The outage ends with it still unreachable: closed after the deferral again.
        fe.release_held(defer);
        assert!(lock(&fe.slots[0].grace).is_some(), "its close is due again");

        let fe = three("1h");
        fe.apply_status(2, Status::Down(DownCause::Unreachable), false, defer);
        fe.apply_status(2, Status::Down(DownCause::NotReady), false, defer);
        assert!(
            lock(&fe.slots[2].grace).is_some(),
            "never closed: the not-ready grace must run"
        );
        // Without a deferral (a single backend, or the hold ran out): at once.
        let fe = three("1h");
        let gen = fe.slots[1].generation();
        fe.apply_status(
            1,
            Status::Down(DownCause::Unreachable),
            false,
            Duration::ZERO,
        );
        assert!(gen.is_cancelled());
    }

    /// Not ready <-> unresponsive keeps the running grace (it is not restarted).
    #[tokio::test]
    async fn between_not_ready_and_unresponsive_the_grace_keeps_running() {
        let fe = three("1h");
        fe.apply_status(0, Status::Down(DownCause::NotReady), false, Duration::ZERO);
        let pending = lock(&fe.slots[0].grace).clone().unwrap();
        fe.apply_status(
            0,
            Status::Down(DownCause::Unresponsive),
            false,
            Duration::ZERO,
        );
        assert!(!pending.is_cancelled(), "the grace was restarted");
        fe.apply_status(0, Status::Up, false, Duration::ZERO);
        assert!(
            pending.is_cancelled(),
            "recovered: the grace ends, nothing closes"
        );
    }
}
