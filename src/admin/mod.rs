//! The admin endpoint: metrics, liveness, readiness, status and operator controls.
//!
//! ```text
//!  GET  /metrics   Prometheus text 0.0.4, or OpenMetrics when the scraper asks for it
//!  GET  /healthz   200 while the runtime and the election thread answer within 1 s
//!  GET  /readyz    200 once the config is loaded, the listeners are bound and VRRP runs
//!  GET  /status    the status document (JSON, versioned: see [`status`])
//!  POST /control/handover | /control/resume            (loopback clients only)
//!  POST /control/drain    | /control/undrain   body: {"backend": "NAME"}
//!  POST /debug/stall-election  body: {"seconds": N}  (tests only: refused unless the
//!  POST /debug/dns-clock       body: {"seconds": N}   daemon started with
//!                                                     APIVIP_FAULT_INJECTION=1)
//! ```
//!
//! Everything it shows is read at request time from what the daemon already keeps:
//! the health view, the proxy's atomic counters, the checkers' counters, the bounded
//! history and a report the election thread makes when asked. Nothing here is on the
//! proxy's or the election's hot path. The server has its own connection limit and
//! timeouts, and reports from the election thread are shared between requests for
//! [`REPORT_REUSE`], so a flood of requests wakes that thread at most a few times a
//! second and never delays the election or the proxy.

pub mod client;
pub mod metrics;
pub mod server;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{BackendId, Config, FrontendKind};
use crate::events::{unix_ms, EventKind, History};
use crate::health::state::FailureKind;
use crate::health::stats::{reason_label, HealthStats, TRANSITION_TARGETS};
use crate::health::{HealthPublisher, HealthView};
use crate::proxy::FrontendProxy;
use crate::vrrp::io::shell::{VrrpHandle, VrrpReport};
use crate::vrrp::io::vip::{VipConfig, Vips};
use status::{
    BackendCounters, BackendDoc, DaemonInfo, FrontendDoc, PeerDoc, StatusDoc, VipDoc, VrrpCounters,
    VrrpDoc,
};

/// How long a report of the election thread is shared between requests.
pub const REPORT_REUSE: Duration = Duration::from_millis(250);

/// How long the election thread may take to answer before `/healthz` says it stalled.
pub const ELECTION_BOUND: Duration = Duration::from_secs(1);

/// The longest a handover request waits for its outcome (below the admin connection
/// timeout and the CLI's); past it, the answer says the handover is still running.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(45);

/// The VRRP state changes a node can go through, exported at 0 before they happen.
const VRRP_TRANSITIONS: [(crate::vrrp::machine::State, crate::vrrp::machine::Reason); 14] = {
    use crate::vrrp::machine::{Reason as R, State as S};
    [
        (S::Backup, R::Startup),
        (S::Master, R::OwnerStartup),
        (S::Master, R::MasterDown),
        (S::Master, R::MasterResigned),
        (S::Master, R::Preempt),
        (S::Backup, R::HigherPriority),
        (S::Backup, R::Maintenance),
        (S::Initialize, R::Shutdown),
        (S::Initialize, R::HandoverDone),
        (S::Initialize, R::HandoverTimedOut),
        (S::Fault, R::Fault),
        (S::Backup, R::FaultCleared),
        (S::Master, R::FaultCleared),
        (S::Backup, R::SyncGroup),
    ]
};

/// The environment variable that enables test-only fault injection when set to `1` at
/// start (`POST /debug/stall-election`, `POST /debug/dns-clock`). Tests use it to
/// stall the election thread and watch `/healthz` and the systemd watchdog react, and
/// to sign DNS updates with a wrong clock (BADTIME); a production daemon never sets
/// it, and without it the endpoints are refused.
pub const FAULT_INJECTION_ENV: &str = "APIVIP_FAULT_INJECTION";

/// Whether [`FAULT_INJECTION_ENV`] is set to `1` in this process's environment.
pub fn fault_injection_requested() -> bool {
    std::env::var_os(FAULT_INJECTION_ENV).is_some_and(|v| v == "1")
}

/// The controls an operator can use, as metrics labels.
pub const CONTROLS: [&str; 4] = ["handover", "resume", "drain", "undrain"];

/// What the running config made: replaced as a whole by a reload.
#[derive(Debug)]
pub struct Running {
    /// The running config.
    pub config: Arc<Config>,
    /// The proxy's frontends (their current generation).
    pub frontends: Vec<Arc<FrontendProxy>>,
    /// Where each frontend listens (real ports).
    pub listen: Vec<(FrontendKind, Vec<SocketAddr>)>,
    /// The checkers' counters.
    pub check_stats: HealthStats,
    /// The running elections (each handle names its instance), in config order.
    pub vrrp: Vec<VrrpHandle>,
    /// Reads which VIPs are on each instance's interface (netlink), by instance name.
    pub vips: Vec<(String, Vips)>,
    /// The DNS publisher, with `dns:`.
    pub dns: Option<crate::dns::io::shell::DnsHandle>,
}

/// The outcome of the last reload, for the status document.
#[derive(Debug, Clone)]
pub struct ReloadRecord {
    /// When it ended.
    pub at: SystemTime,
    /// Whether the new file was applied in full.
    pub ok: bool,
    /// Whether the new file is the running config (also when `ok` is false: applied
    /// except for the error in the last line).
    pub applied: bool,
    /// What changed (applied) or why not (every error, file:key:value).
    pub lines: Vec<String>,
}

/// Where reload requests go (the daemon's main loop), each answered with the outcome.
pub type ReloadTx = tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<ReloadRecord>>;

/// What the admin endpoint reads and steers: built once by the supervisor.
#[derive(Debug)]
pub struct Daemon {
    running: arc_swap::ArcSwap<Running>,
    /// Health (read) and drains (write).
    pub health: HealthView,
    /// To drain and undrain.
    pub publisher: HealthPublisher,
    /// Events.
    pub history: History,
    /// Asks the supervisor to reload the config file (`POST /control/reload`).
    reload: Mutex<Option<ReloadTx>>,
    /// The last reload's outcome.
    last_reload: Mutex<Option<ReloadRecord>>,
    /// When the process started.
    pub started: SystemTime,
    /// Controls by (control, refused).
    controls: [[AtomicU64; 2]; CONTROLS.len()],
    /// Config reloads: success, failure.
    pub reloads: [AtomicU64; 2],
    /// The last election reports (one per running instance, in `Running::vrrp`
    /// order) and when they were read (see [`REPORT_REUSE`]).
    report: tokio::sync::Mutex<Option<(Instant, Vec<Option<VrrpReport>>)>>,
    /// The last status document and when it was built (see [`Daemon::status`]).
    doc: tokio::sync::Mutex<Option<(Instant, Arc<StatusDoc>)>>,
    /// A control that changes the election is running (one at a time).
    control_running: Mutex<bool>,
    /// The notify hooks' counters.
    pub notify: Arc<crate::notify::NotifyStats>,
    /// Test-only fault injection was enabled at start ([`FAULT_INJECTION_ENV`]).
    fault_injection: bool,
    /// The proxy's worker threads, checked by [`Daemon::liveness`].
    workers: Option<Arc<crate::proxy::workers::Pool>>,
}

impl Daemon {
    /// The daemon's state for the admin endpoint.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        running: Running,
        health: HealthView,
        publisher: HealthPublisher,
        history: History,
    ) -> Self {
        Daemon {
            running: arc_swap::ArcSwap::from_pointee(running),
            health,
            publisher,
            history,
            reload: Mutex::new(None),
            last_reload: Mutex::new(None),
            started: process_start(),
            controls: Default::default(),
            reloads: Default::default(),
            report: tokio::sync::Mutex::new(None),
            doc: tokio::sync::Mutex::new(None),
            control_running: Mutex::new(false),
            notify: Arc::default(),
            fault_injection: false,
            workers: None,
        }
    }

    /// With the proxy's worker threads, which [`Daemon::liveness`] checks too.
    pub fn with_workers(mut self, workers: Option<Arc<crate::proxy::workers::Pool>>) -> Self {
        self.workers = workers;
        self
    }

    /// With the notify hooks' counters (status and metrics show them).
    pub fn with_notify(mut self, stats: Arc<crate::notify::NotifyStats>) -> Self {
        self.notify = stats;
        self
    }

    /// Enables the test-only fault injection endpoint (see [`FAULT_INJECTION_ENV`]).
    pub fn with_fault_injection(mut self, enabled: bool) -> Self {
        self.fault_injection = enabled;
        self
    }

    /// Whether the test-only fault injection endpoint is enabled.
    pub fn fault_injection(&self) -> bool {
        self.fault_injection
    }

    /// Liveness, as `/healthz` and the systemd watchdog see it: the runtime runs a
    /// task, and the election thread (when there is one) answers, each within
    /// [`ELECTION_BOUND`]. `Err` says which did not. The election's answer is the
    /// shared report ([`REPORT_REUSE`]), so frequent callers do not wake that thread
    /// more often.
    pub async fn liveness(&self) -> Result<(), &'static str> {
        let runtime = tokio::time::timeout(ELECTION_BOUND, tokio::spawn(async {})).await;
        if !matches!(runtime, Ok(Ok(()))) {
            return Err("the runtime did not run a task within 1s");
        }
        // At once, so that the whole check stays within the watchdog's bound.
        let workers = async {
            match &self.workers {
                Some(w) => w.answer(ELECTION_BOUND).await,
                None => true,
            }
        };
        let (workers, reports) = tokio::join!(workers, self.vrrp_reports());
        if !workers {
            return Err("a proxy worker thread did not run a task within 1s");
        }
        if reports.iter().any(Option::is_none) {
            return Err("the election thread did not answer within 1s");
        }
        Ok(())
    }

    /// Sends `POST /control/reload` requests to `tx` from now on.
    pub fn serve_reloads(&self, tx: ReloadTx) {
        *self.reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// What the running config made.
    pub fn running(&self) -> Arc<Running> {
        self.running.load_full()
    }

    /// Replaces what the config made (a reload applied) and forgets cached reports.
    pub async fn set_running(&self, running: Running) {
        self.running.store(Arc::new(running));
        self.invalidate().await;
    }

    /// Records a reload's outcome (counted, and shown in the status document).
    pub async fn record_reload(&self, record: ReloadRecord) {
        self.reloads[usize::from(!record.ok)].fetch_add(1, Ordering::Relaxed);
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
        self.invalidate().await;
    }

    /// The last reload's outcome.
    pub fn last_reload(&self) -> Option<ReloadRecord> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `apivip reload`: asks the supervisor to reload the config file and waits for
    /// the outcome.
    pub async fn reload(&self, who: &str) -> Result<ReloadRecord, (u16, String)> {
        let tx = self
            .reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(tx) = tx else {
            return Err((
                409,
                "this process does not reload its config (not `apivip run`)".to_owned(),
            ));
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        tracing::info!(who, "control: reload");
        tx.try_send(reply).map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                (409, "a reload is already running".to_owned())
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => {
                (503, "the daemon is stopping".to_owned())
            }
        })?;
        outcome
            .await
            .map_err(|_| (503, "the daemon is stopping".to_owned()))
    }

    /// The elections' reports, one per running instance (in `Running::vrrp` order):
    /// fresh ones, or ones read less than [`REPORT_REUSE`] ago; `None` for a thread
    /// that did not answer within [`ELECTION_BOUND`]. The instances are asked at once.
    pub async fn vrrp_reports(&self) -> Vec<Option<VrrpReport>> {
        let run = self.running();
        if run.vrrp.is_empty() {
            return Vec::new();
        }
        let mut cached = self.report.lock().await;
        if let Some((at, reports)) = &*cached {
            if at.elapsed() < REPORT_REUSE && reports.len() == run.vrrp.len() {
                return reports.clone();
            }
        }
        let reports =
            futures_util::future::join_all(run.vrrp.iter().map(|h| h.report(ELECTION_BOUND))).await;
        *cached = Some((Instant::now(), reports.clone()));
        reports
    }

    /// The report of the first running instance (the only one in most configs).
    pub async fn vrrp_report(&self) -> Option<VrrpReport> {
        self.vrrp_reports().await.into_iter().next().flatten()
    }

    /// Why the daemon is not ready (empty: ready): listeners bound and the elections
    /// running.
    pub async fn not_ready(&self) -> Vec<String> {
        let reports = self.vrrp_reports().await;
        self.not_ready_with(&reports)
    }

    fn not_ready_with(&self, reports: &[Option<VrrpReport>]) -> Vec<String> {
        let run = self.running();
        let snap = self.health.current();
        let mut why = Vec::new();
        for f in &run.config.frontends {
            let bound = run
                .listen
                .iter()
                .find(|(k, _)| *k == f.kind)
                .map_or(0, |(_, a)| a.len());
            if bound < f.listen.len() {
                why.push(format!("{}: not every listener is bound", f.kind));
            }
            if let Some(e) = snap.frontend(f.kind).and_then(|h| h.accept_error.as_ref()) {
                why.push(format!("{}: accept fails: {e}", f.kind));
            }
        }
        // `vrrp` alone when there is one instance, as before several.
        let key = |name: &str| {
            if run.config.vrrp.len() > 1 {
                format!("vrrp {name}")
            } else {
                "vrrp".to_owned()
            }
        };
        for (i, h) in run.vrrp.iter().enumerate() {
            match reports.get(i).and_then(Option::as_ref) {
                None => why.push(format!(
                    "{}: the election thread does not answer",
                    key(&h.name)
                )),
                Some(r) if r.state == crate::vrrp::machine::State::Initialize => {
                    why.push(format!("{}: not running (initialize)", key(&h.name)))
                }
                Some(_) => {}
            }
        }
        for v in &run.config.vrrp {
            if !run.vrrp.iter().any(|h| h.name == v.name) {
                why.push(format!(
                    "{}: configured, but no election runs (the last reload could not start it)",
                    key(&v.name)
                ));
            }
        }
        why
    }

    /// Counts a control.
    pub fn count_control(&self, control: &str, ok: bool) {
        if let Some(i) = CONTROLS.iter().position(|c| *c == control) {
            self.controls[i][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks an election control as running until the guard is dropped (also when the
    /// request is abandoned: the client went away); `None` if one already runs.
    fn begin_control(&self) -> Option<ControlGuard<'_>> {
        let mut running = self
            .control_running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *running {
            return None;
        }
        *running = true;
        Some(ControlGuard(self))
    }

    /// Every backend of the master named `name` (one per frontend).
    pub fn backends_named(&self, name: &str) -> Vec<BackendId> {
        let run = self.running();
        run.config
            .backends()
            .filter(|b| b.name == name)
            .map(|b| b.id)
            .collect()
    }

    /// The status document: one built less than [`REPORT_REUSE`] ago, or a new one.
    /// Sharing it bounds what a flood of `/status` and `/metrics` requests costs (a
    /// netlink dump and a walk over every counter per build); controls invalidate it.
    pub async fn status(&self) -> Arc<StatusDoc> {
        let mut cached = self.doc.lock().await;
        if let Some((at, doc)) = &*cached {
            if at.elapsed() < REPORT_REUSE {
                return Arc::clone(doc);
            }
        }
        let doc = Arc::new(self.build_status().await);
        *cached = Some((Instant::now(), Arc::clone(&doc)));
        doc
    }

    /// Forgets the shared status document (after a control changed something).
    pub async fn invalidate(&self) {
        *self.doc.lock().await = None;
        *self.report.lock().await = None;
    }

    async fn build_status(&self) -> StatusDoc {
        let run = self.running();
        let reports = self.vrrp_reports().await;
        let mut vrrp_instances = Vec::with_capacity(run.config.vrrp.len());
        for v in &run.config.vrrp {
            let report = run
                .vrrp
                .iter()
                .position(|h| h.name == v.name)
                .and_then(|i| reports.get(i).cloned().flatten());
            vrrp_instances.push(self.vrrp_doc(v, report.as_ref()).await);
        }
        let not_ready = self.not_ready_with(&reports);
        let snap = self.health.current();
        let mut frontends = Vec::new();
        for fe in &run.frontends {
            let cfg = fe.config();
            let listen = run
                .listen
                .iter()
                .find(|(k, _)| *k == cfg.kind)
                .map(|(_, a)| a.iter().map(ToString::to_string).collect())
                .unwrap_or_default();
            let fh = snap.frontend(cfg.kind);
            let mut backends = Vec::new();
            for (i, b) in cfg.backends.iter().enumerate() {
                let h = fh.and_then(|f| f.backends.get(i));
                let (stats, active) = match fe.backend_stats(i) {
                    Some((s, a)) => (Some(s), a),
                    None => (None, 0),
                };
                let mut counters = BackendCounters::default();
                if let Some(s) = stats {
                    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                    counters.connections = load(&s.connections);
                    for (reason, a) in [
                        ("refused", &s.connect_refused),
                        ("timeout", &s.connect_timeout),
                        ("other", &s.connect_other),
                        ("went_down", &s.connect_went_down),
                    ] {
                        counters.connect_failures.insert(reason.to_owned(), load(a));
                    }
                    counters.connect_retries = load(&s.retries);
                    counters.closed_on_down = load(&s.closed_on_down);
                    counters.sent_bytes = load(&s.bytes_sent);
                    counters.received_bytes = load(&s.bytes_received);
                }
                if let Some(cs) = run.check_stats.get(b.id) {
                    for k in FailureKind::ALL {
                        counters
                            .check_failures
                            .insert(k.as_str().to_owned(), cs.failures(k));
                    }
                    for (t, to) in TRANSITION_TARGETS.iter().enumerate() {
                        for reason in std::iter::once(None).chain(FailureKind::ALL.map(Some)) {
                            // Every pair, zeros included: a counter that appears only
                            // with its first event hides that event from increase().
                            counters.transitions.insert(
                                format!("{to}/{}", reason_label(reason)),
                                cs.transitions(t, reason),
                            );
                        }
                    }
                }
                let health = h.map_or("unknown", |h| h.status.label());
                let drained = h.is_some_and(|h| h.drained);
                backends.push(BackendDoc {
                    name: b.name.clone(),
                    address: b.addr.to_string(),
                    health: health.to_owned(),
                    state: if drained { "draining" } else { health }.to_owned(),
                    drained,
                    since_ms: h.and_then(|h| h.since).map(unix_ms),
                    reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                    active_connections: active,
                    counters,
                });
            }
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            frontends.push(FrontendDoc {
                name: cfg.kind.as_str().to_owned(),
                listen,
                active_connections: fe.stats.active.load(Ordering::Relaxed),
                max_connections: cfg.max_connections,
                connections_total: load(&fe.stats.accepted),
                rejected_total: load(&fe.stats.rejected_limit),
                no_backend_total: load(&fe.stats.no_backend),
                fallback_connects_total: load(&fe.stats.fallback_attempts),
                refused: crate::proxy::Refused::ALL
                    .iter()
                    .map(|r| (r.label().to_owned(), fe.stats.refused(*r)))
                    .collect(),
                accept_error: fh.and_then(|f| f.accept_error.clone()),
                local_outage: fe.stats.local_outage.load(Ordering::Relaxed),
                rebalanced_total: load(&fe.stats.rebalanced),
                backends,
            });
        }
        let mut controls = BTreeMap::new();
        for (i, c) in CONTROLS.iter().enumerate() {
            for (j, result) in ["ok", "refused"].iter().enumerate() {
                controls.insert(
                    format!("{c}/{result}"),
                    self.controls[i][j].load(Ordering::Relaxed),
                );
            }
        }
        let reloads = [("success", 0), ("failure", 1)]
            .into_iter()
            .map(|(k, i)| (k.to_owned(), self.reloads[i].load(Ordering::Relaxed)))
            .collect();
        StatusDoc {
            version: status::VERSION,
            daemon: DaemonInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                commit: env!("APIVIP_COMMIT").to_owned(),
                config: run.config.source.display().to_string(),
                started_ms: unix_ms(self.started),
                now_ms: unix_ms(SystemTime::now()),
            },
            ready: not_ready.is_empty(),
            not_ready,
            vrrp: vrrp_instances.first().cloned(),
            vrrp_instances,
            frontends,
            events: self.history.latest(20),
            controls,
            reloads,
            last_reload: self.last_reload().map(|r| status::ReloadDoc {
                ok: r.ok,
                applied: r.applied,
                at_ms: unix_ms(r.at),
                lines: r.lines,
            }),
            notify: self
                .notify
                .hooks()
                .iter()
                .map(|h| status::HookDoc {
                    name: h.name.clone(),
                    on: h.on.to_owned(),
                    command: h.command.clone(),
                    runs: h
                        .runs()
                        .iter()
                        .map(|(r, n)| ((*r).to_owned(), *n))
                        .collect(),
                    dropped: h.dropped(),
                })
                .collect(),
            dns: run.dns.as_ref().and_then(|h| dns_doc(h, &run.config)),
        }
    }

    async fn vrrp_doc(&self, v: &crate::config::Vrrp, report: Option<&VrrpReport>) -> VrrpDoc {
        let run = self.running();
        let vip_cfg: Vec<VipConfig> = v
            .vips
            .iter()
            .map(|&(addr, prefix_len)| VipConfig { addr, prefix_len })
            .collect();
        let present = match run.vips.iter().find(|(name, _)| *name == v.name) {
            Some((_, vips)) => tokio::time::timeout(Duration::from_secs(1), vips.present(&vip_cfg))
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        let vips = v
            .vips
            .iter()
            .map(|(a, p)| VipDoc {
                address: format!("{a}/{p}"),
                present: present.as_ref().map(|list| list.contains(a)),
            })
            .collect();
        let now = SystemTime::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut doc = VrrpDoc {
            name: v.name.clone(),
            sync_group: v.sync_group.clone(),
            family: match v.instance.family() {
                crate::vrrp::packet::Family::Ipv4 => "ipv4",
                crate::vrrp::packet::Family::Ipv6 => "ipv6",
            }
            .to_owned(),
            vrid: v.instance.vrid.get(),
            interface: v.interface.clone(),
            state: "unknown".to_owned(),
            since_ms: None,
            reason: None,
            faults: Vec::new(),
            priority: v.instance.base_priority.get(),
            effective_priority: 0,
            lowered_by: None,
            can_serve: false,
            maintenance: false,
            handing_over: false,
            master: None,
            vips,
            peers: Vec::new(),
            masters_heard: 0,
            advert_interval_ms: ms(v.instance.version.interval()),
            master_down_interval_ms: 0,
            counters: VrrpCounters::default(),
        };
        let Some(r) = report else {
            return doc;
        };
        doc.state = r.state.to_string();
        doc.since_ms = r.since.map(|(t, _)| unix_ms(t));
        doc.reason = r.since.map(|(_, why)| why.as_str().to_owned());
        doc.faults = r.faults.iter().map(|f| (*f).to_owned()).collect();
        doc.effective_priority = r.effective_priority;
        doc.lowered_by = r.lowered_by.map(str::to_owned);
        doc.can_serve = r.can_serve;
        doc.maintenance = r.maintenance;
        doc.handing_over = r.handing_over;
        doc.master = r.master.map(|m| m.to_string());
        doc.peers = r
            .peers
            .iter()
            .map(|p| PeerDoc {
                address: p.addr.to_string(),
                priority: p.priority,
                last_heard_ms_ago: ms(now.duration_since(p.last_heard).unwrap_or_default()),
                adverts: p.adverts,
            })
            .collect();
        doc.masters_heard = r.masters_heard;
        doc.advert_interval_ms = ms(r.advert_interval);
        doc.master_down_interval_ms = ms(r.master_down_interval);
        let s = &r.stats;
        doc.counters = VrrpCounters {
            adverts_sent: s.adverts_sent,
            adverts_received: s.adverts_received,
            dropped: s
                .drops_by_reason()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            priority_zero_sent: s.priority_zero_sent,
            priority_zero_received: s.priority_zero_received,
            master_conflicts: s.master_conflicts,
            split_brains: s.split_brains,
            lingers: s.lingers,
            adverts_missed: s.adverts_missed,
            vips_restored: s.vips_restored,
            kernel_drops: s.rx_dropped,
            kernel_filtered: r.kernel_filtered,
            faults: crate::vrrp::machine::Fault::ALL
                .iter()
                .zip(s.fault_causes)
                .map(|(f, n)| (f.as_str().to_owned(), n))
                .collect(),
            // The transitions that can happen, at 0 until they do (see above), and any
            // other that did.
            transitions: VRRP_TRANSITIONS
                .iter()
                .map(|(to, why)| (format!("{to}/{}", why.as_str()), 0))
                .chain(
                    r.transitions
                        .iter()
                        .map(|(to, why, n)| (format!("{to}/{}", why.as_str()), *n)),
                )
                .collect(),
        };
        doc
    }

    /// `apivip handover`: gives the VIPs away and stays a Backup at priority 1, every
    /// instance of this node. Waits until other nodes hold the VIPs (or the handovers
    /// timed out) and says what happened, per instance when there are several.
    pub async fn handover(&self, who: &str) -> Result<String, (u16, String)> {
        let run = self.running();
        if run.vrrp.is_empty() {
            return Err((
                409,
                "no vrrp section in the config: there is no VIP to hand over".to_owned(),
            ));
        }
        let Some(_running) = self.begin_control() else {
            return Err((409, "another handover or resume is running".to_owned()));
        };
        let started = Instant::now();
        let mut refusals = Vec::new();
        for (i, h) in run.vrrp.iter().enumerate() {
            match h.maintenance(ELECTION_BOUND).await {
                Ok(()) => {}
                // Nothing changed yet: refuse the whole control.
                Err(e) if i == 0 => return Err(refused(e, "handover")),
                Err(e) => refusals.push(format!("{}: {}", h.name, refused(e, "handover").1)),
            }
        }
        self.history
            .push(EventKind::Control, "handover", format!("asked by {who}"));
        tracing::info!(who, "control: handover (maintenance until resume)");
        // Wait for the outcome, watching the state the election threads publish on
        // every change (no wakeup of those threads): bounded by the handover timeout
        // and a few adverts, and by the admin connection's own timeout.
        let bound = run
            .config
            .vrrp
            .iter()
            .map(|v| {
                v.instance.handover_timeout
                    + v.instance.version.interval() * 4
                    + Duration::from_secs(1)
            })
            .max()
            .unwrap_or_default()
            .min(HANDOVER_WAIT);
        let holding = || {
            run.vrrp
                .iter()
                .any(|h| h.status.load().state == crate::vrrp::machine::State::Master)
        };
        while holding() && started.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = crate::units::format_duration(started.elapsed());
        self.invalidate().await;
        let outcome = |r: Option<VrrpReport>| {
            match r {
            Some(r) if r.handing_over => format!(
                "handover: still waiting for another node after {took}; `apivip status` shows when it is done"
            ),
            Some(r) if r.state == crate::vrrp::machine::State::Master => format!(
                "handover: no other node took the VIP within {took}; this node keeps it (priority 1, maintenance) until `apivip resume`"
            ),
            Some(r) => format!(
                "handover: done in {took}; this node is {} at priority {} until `apivip resume`{}",
                r.state,
                r.effective_priority,
                r.master.map(|m| format!("; master is {m}")).unwrap_or_default()
            ),
            None => "handover: started; the election thread did not report".to_owned(),
        }
        };
        let reports = self.vrrp_reports().await;
        Ok(per_instance(
            &run.vrrp,
            reports.into_iter().map(outcome),
            refusals,
        ))
    }

    /// `apivip resume`: leaves maintenance, every instance of this node.
    pub async fn resume(&self, who: &str) -> Result<String, (u16, String)> {
        let run = self.running();
        if run.vrrp.is_empty() {
            return Err((
                409,
                "no vrrp section in the config: nothing to resume".to_owned(),
            ));
        }
        let Some(running) = self.begin_control() else {
            return Err((
                409,
                "a handover is running; resume when it has finished".to_owned(),
            ));
        };
        let mut refusals = Vec::new();
        let mut resumed = 0;
        for h in &run.vrrp {
            match h.resume(ELECTION_BOUND).await {
                Ok(()) => resumed += 1,
                Err(e) => refusals.push((h.name.clone(), refused(e, "resume"))),
            }
        }
        drop(running);
        if resumed == 0 {
            // Nothing changed: the first refusal is the answer.
            if let Some((_, e)) = refusals.first() {
                return Err(e.clone());
            }
        }
        self.invalidate().await;
        self.history
            .push(EventKind::Control, "resume", format!("asked by {who}"));
        tracing::info!(who, "control: resume");
        let reports = self.vrrp_reports().await;
        let outcome = |(r, v): (Option<VrrpReport>, Option<&crate::config::Vrrp>)| {
            format!(
                "resume: maintenance over; priority {}{}",
                r.map_or_else(
                    || "restored".to_owned(),
                    |r| r.effective_priority.to_string()
                ),
                if v.is_some_and(|v| v.instance.preempt) {
                    "; preemption takes the VIP back if this node has the highest priority"
                } else {
                    ""
                }
            )
        };
        let configs = run
            .vrrp
            .iter()
            .map(|h| run.config.vrrp.iter().find(|v| v.name == h.name));
        let refusals = refusals
            .into_iter()
            .map(|(name, (_, e))| format!("{name}: {e}"))
            .collect();
        Ok(per_instance(
            &run.vrrp,
            reports.into_iter().zip(configs).map(outcome),
            refusals,
        ))
    }

    /// `apivip drain NAME` / `apivip undrain NAME`.
    pub fn drain(&self, name: &str, drained: bool, who: &str) -> Result<String, (u16, String)> {
        let run = self.running();
        let ids = self.backends_named(name);
        let verb = if drained { "drain" } else { "undrain" };
        if ids.is_empty() {
            let names: Vec<&str> = run
                .config
                .frontend(FrontendKind::Apiserver)
                .map(|f| f.backends.iter().map(|b| b.name.as_str()).collect())
                .unwrap_or_default();
            return Err((
                404,
                format!("no backend named {name:?}; backends: {}", names.join(", ")),
            ));
        }
        let mut changed = false;
        for id in &ids {
            // The proxy stops choosing it before this answers; the health view then
            // closes its connections after the grace (and shows it in status).
            if let Some(fe) = run
                .frontends
                .iter()
                .find(|f| f.config().kind == id.frontend)
            {
                fe.set_drained(id.master, drained);
            }
            changed |= self.publisher.set_drained(*id, drained) == Some(true);
        }
        if !changed {
            return Ok(format!(
                "{verb} {name}: already {}",
                if drained { "drained" } else { "not drained" }
            ));
        }
        self.history.push(
            EventKind::Control,
            format!("{verb} {name}"),
            format!("asked by {who}"),
        );
        tracing::info!(who, backend = name, "control: {verb}");
        let active: usize = ids
            .iter()
            .filter_map(|id| {
                let fe = run
                    .frontends
                    .iter()
                    .find(|f| f.config().kind == id.frontend)?;
                fe.backend_stats(id.master).map(|(_, a)| a)
            })
            .sum();
        Ok(if drained {
            let grace = run
                .config
                .frontend(FrontendKind::Apiserver)
                .map(|f| f.not_ready_grace)
                .unwrap_or_default();
            format!(
                "drain {name}: no new connections; its {active} open connection(s) close after the {} grace",
                crate::units::format_duration(grace)
            )
        } else {
            format!("undrain {name}: gets new connections again while healthy")
        })
    }
}

/// Ends a running control when dropped.
struct ControlGuard<'a>(&'a Daemon);

impl Drop for ControlGuard<'_> {
    fn drop(&mut self) {
        *self
            .0
            .control_running
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = false;
    }
}

/// A control's answer: one line per instance, named when there are several, then
/// what was refused.
fn per_instance(
    handles: &[VrrpHandle],
    lines: impl Iterator<Item = String>,
    refusals: Vec<String>,
) -> String {
    let mut out: Vec<String> = if handles.len() == 1 {
        lines.collect()
    } else {
        handles
            .iter()
            .zip(lines)
            .map(|(h, line)| format!("{}: {line}", h.name))
            .collect()
    };
    out.extend(refusals.into_iter().map(|r| format!("refused: {r}")));
    out.join("\n")
}

fn refused(e: Option<crate::vrrp::machine::ControlRefused>, what: &str) -> (u16, String) {
    match e {
        Some(e) => (409, format!("{what} refused: {e}")),
        None => (503, format!("{what}: the election thread did not answer")),
    }
}

/// When this process started (from /proc; now if unreadable).
fn process_start() -> SystemTime {
    fn read() -> Option<SystemTime> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Field 22 (starttime, clock ticks after boot), counted after the command,
        // which is in parentheses and may contain spaces.
        let after = stat.rsplit_once(')')?.1;
        let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
        let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
        let up: f64 = uptime.split_whitespace().next()?.parse().ok()?;
        let age = up - ticks as f64 / hz as f64;
        SystemTime::now().checked_sub(Duration::from_secs_f64(age.max(0.0)))
    }
    read().unwrap_or_else(SystemTime::now)
}

/// The DNS publisher's part of the status document.
fn dns_doc(h: &crate::dns::io::shell::DnsHandle, config: &Config) -> Option<status::DnsDoc> {
    use crate::dns::publisher::View;
    // What the publisher runs with: a reload applies `dns:` at the next restart.
    let d = match &h.config {
        Some(d) => d.as_ref(),
        None => config.dns.as_ref()?,
    };
    let s = h.status();
    let now = std::time::Instant::now();
    let wall = SystemTime::now();
    let at_ms = |t: std::time::Instant| unix_ms(wall - now.saturating_duration_since(t));
    let addrs = |names: &[String]| -> Vec<String> {
        d.masters
            .iter()
            .filter(|m| names.contains(&m.name))
            .flat_map(|m| m.addrs.iter().map(ToString::to_string))
            .collect()
    };
    let requests = h
        .counters
        .requests
        .lock()
        .map(|m| {
            m.iter()
                .map(|((what, result), n)| (format!("{what}/{result}"), *n))
                .collect()
        })
        .unwrap_or_default();
    let (added, removed) = h.counters.changes.lock().map(|c| *c).unwrap_or_default();
    Some(status::DnsDoc {
        name: d.name.to_ascii(),
        zone: d.zone.to_ascii(),
        servers: d.servers.iter().map(ToString::to_string).collect(),
        node: h.node.clone(),
        published: s.published.clone(),
        published_addresses: addrs(&s.published),
        wanted: s.wanted.clone(),
        view: s
            .view
            .iter()
            .map(|(m, v)| {
                let v = match v {
                    View::Up => "up",
                    View::Down => "down",
                    View::Unknown => "unknown",
                };
                (m.clone(), v.to_owned())
            })
            .collect(),
        votes: s
            .votes
            .iter()
            .map(|(node, seq, expired)| status::DnsVoteDoc {
                node: node.clone(),
                seq: *seq,
                expired: *expired,
            })
            .collect(),
        last_write: s.last_write.as_ref().map(|(t, r)| status::DnsWriteDoc {
            at_ms: at_ms(*t),
            result: r.clone(),
        }),
        last_error: s
            .last_error
            .as_ref()
            .map(|f| format!("{}: {}", f.kind, f.detail)),
        requests,
        records_added: added,
        records_removed: removed,
    })
}
