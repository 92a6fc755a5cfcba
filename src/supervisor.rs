//! The supervisor: builds every task from a [`Config`], and stops them in order.
//!
//! Start: probers are built first (certificate errors fail before anything binds),
//! then listeners are bound (a busy port fails start), then the checkers, the health
//! watchers and the accept loops run. Stop (SIGTERM, SIGINT): stop accepting, let
//! connections finish up to `shutdown.drain_timeout`, close the rest, stop checkers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, FrontendKind};
use crate::health::{self, checker, HealthSnapshot, HealthView};
use crate::proxy::{self, FrontendProxy, Mode};

/// Why apivip could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A health check's certificates are unusable.
    #[error(transparent)]
    Probe(#[from] health::probe::ProbeSetupError),
    /// The VRRP election could not start (capabilities, interface, netlink).
    #[error(transparent)]
    Vrrp(#[from] crate::vrrp::io::shell::VrrpError),
    /// The election thread ended or stopped answering while running: apivip exits
    /// non-zero so that the service manager restarts it (a restart removes a VIP this
    /// run may have left).
    #[error("vrrp: {0}; exiting so that the service manager restarts apivip")]
    ElectionLost(String),
    /// The DNS publisher could not start (which master this node is, the key).
    #[error("dns: {0}")]
    Dns(String),
    /// A listen address could not be bound.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        /// The config key.
        key: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One frontend as it runs: its current generation, connection limit and listeners.
#[derive(Debug)]
struct RunningFrontend {
    kind: FrontendKind,
    cell: proxy::FrontendCell,
    /// Sized for the current generation's `max_connections`.
    permits: Arc<Semaphore>,
    listeners: Vec<Listener>,
    /// Ends this generation's health watcher.
    watcher: CancellationToken,
}

/// A bound listener's accept loop.
#[derive(Debug)]
struct Listener {
    /// As configured (port 0 stays 0).
    configured: SocketAddr,
    /// As bound (the real port).
    local: SocketAddr,
    /// Ends this accept loop only.
    stop: CancellationToken,
}

/// One running election (a VRRP instance).
#[derive(Debug)]
struct RunningVrrp {
    /// The instance's name (`vrrp[].name`): its identity across reloads.
    name: String,
    handle: crate::vrrp::io::shell::VrrpHandle,
    done: tokio::sync::oneshot::Receiver<()>,
    /// How long a handover may take before the VIP is released anyway.
    bound: Duration,
    /// Releases the VIP at once (this instance only).
    abort: CancellationToken,
}

/// Why a reload did not fully apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailed {
    /// `false`: nothing changed (a bad file, a listener that cannot bind, an added
    /// election that cannot start). `true`: the file is applied except for what the
    /// last line says (an election that could not be changed or restarted).
    pub applied: bool,
    /// The changes applied (when `applied`) and the errors.
    pub lines: Vec<String>,
}

/// A reload request from the admin endpoint, answered with the outcome.
pub type ReloadRequest = tokio::sync::oneshot::Sender<crate::admin::ReloadRecord>;

/// A running apivip.
#[derive(Debug)]
pub struct Supervisor {
    config: Arc<Config>,
    mode: Mode,
    frontends: Vec<RunningFrontend>,
    health: HealthView,
    publisher: health::HealthPublisher,
    observers: checker::Observers,
    /// Ends the current generation's checkers.
    checkers: CancellationToken,
    /// Ends the accept loops.
    stop_accepting: CancellationToken,
    /// Closes every proxied connection.
    hard_stop: CancellationToken,
    /// Ends checkers and watchers.
    background: CancellationToken,
    connections: TaskTracker,
    /// The VRRP elections, in config order.
    vrrp: Vec<RunningVrrp>,
    /// Ends the sync groups' coordinators (restarted whenever the elections change).
    sync_groups: CancellationToken,
    /// The accept loops, waited for before draining so that the count is final.
    acceptors: TaskTracker,
    tasks: TaskTracker,
    /// What the admin endpoint reads and steers.
    daemon: Arc<crate::admin::Daemon>,
    /// The admin endpoint's listeners.
    admin: Vec<Listener>,
    /// The notify hooks.
    notifier: crate::notify::Notifier,
    /// The DNS publisher, with `dns:`.
    dns: Option<crate::dns::io::shell::DnsHandle>,
    /// What the descriptor limit allows the proxy (read once at start).
    budget: proxy::Budget,
    /// Sized to `budget.connections`, shared by every frontend's accept loops.
    descriptors: Arc<Semaphore>,
    /// The proxy's worker threads ([`proxy::workers`]); without them, connections run
    /// on the runtime the supervisor runs on.
    workers: Option<Arc<proxy::workers::Pool>>,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections open when accepting stopped.
    pub open_at_start: usize,
    /// Connections still open at the deadline (closed by force).
    pub closed_at_deadline: usize,
}

/// Warns when the connection limits together exceed what the descriptor limit allows:
/// the budget then refuses clients before `max_connections` does.
fn warn_over_budget(config: &Config, budget: proxy::Budget) {
    let wanted: usize = config.frontends.iter().map(|f| f.max_connections).sum();
    if wanted > budget.connections {
        tracing::warn!(
            max_connections = wanted,
            fd_budget = budget.connections,
            "the descriptor limit allows fewer connections than max_connections together; \
             clients beyond the budget are refused (reason fd_budget): raise LimitNOFILE or lower max_connections"
        );
    } else {
        tracing::debug!(fd_budget = budget.connections, "descriptor budget");
    }
}

/// Binds every address of `listen` (`key` names them in errors), or takes its
/// listener from `prebound`; on an error the ones bound so far are closed (dropped).
fn bind_all(
    key: &str,
    listen: &[SocketAddr],
    all: &[SocketAddr],
    plain: bool,
    prebound: &mut Prebound,
) -> Result<Vec<(SocketAddr, tokio::net::TcpListener)>, StartError> {
    let mut bound = Vec::new();
    for addr in listen {
        let i = all.iter().position(|a| a == addr).unwrap_or(0);
        let key = crate::config::listen_key(key, i, all.len());
        let l = match prebound.take(*addr) {
            Some(l) => tokio::net::TcpListener::from_std(l),
            None if plain => proxy::bind_plain(*addr),
            None => proxy::bind(*addr),
        }
        .map_err(|source| StartError::Bind {
            key,
            addr: *addr,
            source,
        })?;
        bound.push((*addr, l));
    }
    Ok(bound)
}

impl Supervisor {
    /// Starts everything `config` describes.
    pub async fn start(config: &Config) -> Result<Supervisor, StartError> {
        Self::start_with_mode(config, Mode::Auto).await
    }

    /// Like [`Supervisor::start`] with a chosen forwarding mode (benchmarks).
    pub async fn start_with_mode(config: &Config, mode: Mode) -> Result<Supervisor, StartError> {
        Self::start_with(config, checker::build_probers(config)?, mode).await
    }

    /// Starts with probers already built by [`checker::build_probers`] (the daemon
    /// builds them once, when it validates the config).
    pub async fn start_with(
        config: &Config,
        probers: Vec<health::probe::Prober>,
        mode: Mode,
    ) -> Result<Supervisor, StartError> {
        Self::start_prebound(config, probers, mode, Prebound::default(), None).await
    }

    /// Like [`Supervisor::start`], with the connections on `workers` (thread-per-core,
    /// as the daemon runs them).
    pub async fn start_on_workers(
        config: &Config,
        workers: Arc<proxy::workers::Pool>,
    ) -> Result<Supervisor, StartError> {
        let probers = checker::build_probers(config)?;
        Self::start_prebound(
            config,
            probers,
            Mode::Auto,
            Prebound::default(),
            Some(workers),
        )
        .await
    }

    /// Like [`Supervisor::start_with`], using the listeners in `prebound` (bound before
    /// the capabilities were dropped) for their addresses and binding the others.
    pub async fn start_prebound(
        config: &Config,
        probers: Vec<health::probe::Prober>,
        mode: Mode,
        mut prebound: Prebound,
        workers: Option<Arc<proxy::workers::Pool>>,
    ) -> Result<Supervisor, StartError> {
        let mut bound = Vec::new();
        for f in &config.frontends {
            bound.push(bind_all(
                &format!("{}.listen", f.kind),
                &f.listen,
                &f.listen,
                false,
                &mut prebound,
            )?);
        }
        let admin_bound = bind_all(
            "admin.listen",
            &config.admin.listen,
            &config.admin.listen,
            true,
            &mut prebound,
        )?;
        let initial = HealthSnapshot::initial(config);
        let (publisher, view) = health::channel(initial.clone());
        let background = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let observers = checker::Observers {
            stats: health::stats::HealthStats::new(config),
            history: crate::events::History::default(),
        };
        // Subscribed before the checkers and the election start, so the hooks see the
        // first transitions too.
        let notifier = crate::notify::Notifier::spawn(config, &observers.history);
        let checkers = background.child_token();
        let tasks = TaskTracker::new();
        checker::spawn_checkers(
            config, probers, &publisher, &observers, &tasks, &checkers, &initial,
        );
        // Both frontends' pools are counted, so that a reload adding etcd still fits.
        let budget = proxy::current_budget(FrontendKind::ALL.len());
        warn_over_budget(config, budget);
        let mut sup = Supervisor {
            budget,
            descriptors: Arc::new(Semaphore::new(budget.connections)),
            config: Arc::new(config.clone()),
            mode,
            frontends: Vec::new(),
            health: view.clone(),
            publisher: publisher.clone(),
            observers: observers.clone(),
            checkers,
            stop_accepting: CancellationToken::new(),
            hard_stop,
            background,
            connections: TaskTracker::new(),
            vrrp: Vec::new(),
            sync_groups: CancellationToken::new(),
            acceptors: TaskTracker::new(),
            tasks,
            // Replaced below, once the election runs.
            daemon: Arc::new(crate::admin::Daemon::new(
                crate::admin::Running {
                    config: Arc::new(config.clone()),
                    frontends: Vec::new(),
                    listen: Vec::new(),
                    check_stats: observers.stats.clone(),
                    vrrp: Vec::new(),
                    vips: Vec::new(),
                    dns: None,
                },
                view.clone(),
                publisher.clone(),
                observers.history.clone(),
            )),
            admin: Vec::new(),
            notifier,
            dns: None,
            workers,
        };
        for (f, listeners) in config.frontends.iter().zip(bound) {
            let fe = FrontendProxy::new(
                f.clone(),
                mode,
                initial.generation,
                budget.pipes_per_frontend,
                sup.hard_stop.clone(),
            );
            let watcher = sup.background.child_token();
            sup.tasks.spawn(proxy::watch_health(
                Arc::clone(&fe),
                publisher.subscribe(),
                watcher.clone(),
            ));
            let mut running = RunningFrontend {
                kind: f.kind,
                cell: Arc::new(arc_swap::ArcSwap::new(fe)),
                permits: Arc::new(Semaphore::new(f.max_connections)),
                listeners: Vec::new(),
                watcher,
            };
            for (addr, l) in listeners {
                sup.accept(&mut running, addr, l);
            }
            sup.frontends.push(running);
        }
        for v in &config.vrrp {
            match sup.spawn_vrrp(v, config.proxy_listens()).await {
                Ok(r) => sup.vrrp.push(r),
                Err(e) => {
                    // Nothing runs half-started: the elections already up release
                    // their VIPs (they hold none yet, or only just) and end.
                    for started in std::mem::take(&mut sup.vrrp) {
                        started.abort.cancel();
                        let _ = started.done.await;
                    }
                    return Err(e);
                }
            }
        }
        sup.start_sync_groups();
        if let Some(d) = &config.dns {
            sup.dns = Some(sup.spawn_dns(config, d)?);
        }
        let vips = vips_reader(config).await;
        let fault_injection = crate::admin::fault_injection_requested();
        if fault_injection {
            tracing::warn!(
                "fault injection is enabled ({}=1): test-only controls are accepted; never set it in production",
                crate::admin::FAULT_INJECTION_ENV
            );
        }
        sup.daemon = Arc::new(
            crate::admin::Daemon::new(
                sup.running(vips),
                view,
                publisher,
                observers.history.clone(),
            )
            .with_notify(sup.notifier.stats())
            .with_fault_injection(fault_injection)
            .with_workers(sup.workers.clone()),
        );
        for (addr, l) in admin_bound {
            sup.serve_admin(addr, l);
        }
        Ok(sup)
    }

    /// Starts the DNS publisher as the master this node is.
    fn spawn_dns(
        &self,
        config: &Config,
        dns: &crate::config::dns::Dns,
    ) -> Result<crate::dns::io::shell::DnsHandle, StartError> {
        use crate::dns::io::shell;
        let backends: Vec<(String, std::net::IpAddr)> = config
            .frontends
            .iter()
            .find(|f| f.kind == FrontendKind::Apiserver)
            .map(|f| {
                f.backends
                    .iter()
                    .map(|b| (b.name.clone(), b.addr.ip()))
                    .collect()
            })
            .unwrap_or_default();
        let node = shell::find_node(dns.node.as_deref(), &shell::local_addresses(), &backends)
            .map_err(StartError::Dns)?;
        let (handle, _task) = shell::spawn(
            dns.clone(),
            node,
            self.publisher.subscribe(),
            self.background.child_token(),
        )
        .map_err(StartError::Dns)?;
        Ok(handle)
    }

    /// Runs the accept loop of a bound listener of `fe`.
    fn accept(&self, fe: &mut RunningFrontend, configured: SocketAddr, l: tokio::net::TcpListener) {
        let local = l.local_addr().unwrap_or(configured);
        tracing::info!(frontend = %fe.kind, addr = %local, "listening");
        let stop = self.stop_accepting.child_token();
        let serve = |l, on| {
            proxy::serve(
                Arc::clone(&fe.cell),
                l,
                proxy::Permits {
                    connections: Arc::clone(&fe.permits),
                    descriptors: Arc::clone(&self.descriptors),
                },
                self.publisher.clone(),
                self.connections.clone(),
                stop.clone(),
                on,
            )
        };
        match &self.workers {
            None => {
                self.acceptors
                    .spawn(serve(proxy::Listening::Registered(l), None));
            }
            Some(pool) => match l.into_std() {
                // One accept loop per worker, each on its own duplicate of the socket,
                // registered with that worker's reactor.
                Ok(std) => {
                    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
                    // The last worker takes the socket itself, the others a duplicate.
                    let last = pool.len() - 1;
                    let mut sockets = Vec::with_capacity(pool.len());
                    for me in 0..last {
                        match std.try_clone() {
                            Ok(d) => sockets.push((me, d)),
                            Err(e) => {
                                tracing::error!(frontend = %fe.kind, addr = %local, worker = me, error = %e,
                                    "cannot share the listener with a proxy worker; it accepts on the others");
                            }
                        }
                    }
                    sockets.push((last, std));
                    for (me, socket) in sockets {
                        let on = proxy::OnPool {
                            pool: Arc::clone(pool),
                            me,
                            failing: Arc::clone(&failing),
                        };
                        self.acceptors.spawn_on(
                            serve(proxy::Listening::Unregistered(socket), Some(on)),
                            pool.handle(me),
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(frontend = %fe.kind, addr = %local, error = %e,
                        "cannot move the listener to the proxy workers");
                }
            },
        }
        fe.listeners.push(Listener {
            configured,
            local,
            stop,
        });
    }

    /// Runs the admin endpoint on a bound listener.
    fn serve_admin(&mut self, configured: SocketAddr, l: tokio::net::TcpListener) {
        let local = l.local_addr().unwrap_or(configured);
        if !local.ip().is_loopback() {
            tracing::warn!(addr = %local, "admin endpoint listens on a non-loopback address: metrics and status are readable from the network (controls stay loopback-only)");
        }
        tracing::info!(addr = %local, "admin endpoint listening");
        let stop = self.background.child_token();
        self.tasks.spawn(crate::admin::server::serve(
            l,
            Arc::clone(&self.daemon),
            stop.clone(),
            self.background.clone(),
            self.tasks.clone(),
        ));
        self.admin.push(Listener {
            configured,
            local,
            stop,
        });
    }

    async fn spawn_vrrp(
        &self,
        v: &crate::config::Vrrp,
        proxy_listening: bool,
    ) -> Result<RunningVrrp, StartError> {
        let abort = self.hard_stop.child_token();
        let (handle, done) = crate::vrrp::io::shell::spawn_dedicated(
            v.clone(),
            self.publisher.subscribe(),
            proxy_listening,
            abort.clone(),
            self.observers.history.clone(),
        )
        .await?;
        Ok(RunningVrrp {
            name: v.name.clone(),
            handle,
            done,
            bound: handover_bound(v),
            abort,
        })
    }

    /// (Re)starts one coordinator per sync group of the running config, over the
    /// running elections (see [`crate::vrrp::sync`]); an election in no group is told
    /// it is alone (it may have been in one before a reload).
    fn start_sync_groups(&mut self) {
        self.sync_groups.cancel();
        self.sync_groups = self.background.child_token();
        let mut groups: Vec<(String, Vec<crate::vrrp::io::shell::VrrpHandle>)> = Vec::new();
        for r in &self.vrrp {
            let group = self
                .config
                .vrrp
                .iter()
                .find(|v| v.name == r.name)
                .and_then(|v| v.sync_group.clone());
            match group {
                None => {
                    r.handle.sync(crate::vrrp::machine::SyncInput {
                        may_master: true,
                        sibling_fault: false,
                    });
                }
                Some(g) => match groups.iter_mut().find(|(n, _)| *n == g) {
                    Some((_, members)) => members.push(r.handle.clone()),
                    None => groups.push((g, vec![r.handle.clone()])),
                },
            }
        }
        for (name, members) in groups {
            self.tasks
                .spawn(run_sync_group(name, members, self.sync_groups.clone()));
        }
    }

    /// What the admin endpoint reads for the running config.
    fn running(&self, vips: Vec<(String, crate::vrrp::io::vip::Vips)>) -> crate::admin::Running {
        crate::admin::Running {
            config: Arc::clone(&self.config),
            frontends: self.frontends.iter().map(|f| f.cell.load_full()).collect(),
            listen: self
                .frontends
                .iter()
                .map(|f| (f.kind, f.listeners.iter().map(|l| l.local).collect()))
                .collect(),
            check_stats: self.observers.stats.clone(),
            vrrp: self.vrrp.iter().map(|v| v.handle.clone()).collect(),
            vips,
            dns: self.dns.clone(),
        }
    }

    /// The addresses a frontend listens on (with the real port when 0 was configured).
    pub fn listen_addrs(&self, frontend: FrontendKind) -> Vec<SocketAddr> {
        self.frontends
            .iter()
            .find(|f| f.kind == frontend)
            .map(|f| f.listeners.iter().map(|l| l.local).collect())
            .unwrap_or_default()
    }

    /// Where the admin endpoint listens (real ports; empty when it is off).
    pub fn admin_addrs(&self) -> Vec<SocketAddr> {
        self.admin.iter().map(|l| l.local).collect()
    }

    /// What the admin endpoint reads and steers (status, controls).
    pub fn daemon(&self) -> Arc<crate::admin::Daemon> {
        Arc::clone(&self.daemon)
    }

    /// The DNS publisher, with `dns:`.
    pub fn dns(&self) -> Option<&crate::dns::io::shell::DnsHandle> {
        self.dns.as_ref()
    }

    /// The health view.
    pub fn health(&self) -> HealthView {
        self.health.clone()
    }

    /// A frontend's proxy state (counters, active connections): its current generation.
    pub fn frontend(&self, kind: FrontendKind) -> Option<Arc<FrontendProxy>> {
        self.frontends
            .iter()
            .find(|f| f.kind == kind)
            .map(|f| f.cell.load_full())
    }

    /// Why a running election is lost, if one is: its thread ended, or has not
    /// answered a report for [`ELECTION_STALL_LIMIT`] (`unanswered_since` keeps when
    /// each instance stopped answering, by name, across calls).
    async fn election_lost(&self, unanswered_since: &mut Vec<(String, Instant)>) -> Option<String> {
        unanswered_since.retain(|(name, _)| self.vrrp.iter().any(|v| v.name == *name));
        let answers = futures_util::future::join_all(
            self.vrrp
                .iter()
                .map(|v| v.handle.report(Duration::from_millis(500))),
        )
        .await;
        for (v, answer) in self.vrrp.iter().zip(answers) {
            if v.handle.status_changed.has_changed().is_err() {
                return Some(format!("{}: the election thread ended", v.name));
            }
            if answer.is_some() {
                unanswered_since.retain(|(name, _)| *name != v.name);
                continue;
            }
            let since = match unanswered_since.iter().find(|(name, _)| *name == v.name) {
                Some((_, since)) => *since,
                None => {
                    unanswered_since.push((v.name.clone(), Instant::now()));
                    continue;
                }
            };
            let quiet = since.elapsed();
            if quiet >= ELECTION_STALL_LIMIT {
                return Some(format!(
                    "{}: the election thread has not answered for {}",
                    v.name,
                    crate::units::format_duration(quiet)
                ));
            }
        }
        None
    }

    /// The running config.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }

    /// Reloads the config file the running config came from (SIGHUP, `apivip
    /// reload`): see [`Supervisor::reload_with`]. The outcome is logged, counted and
    /// kept for the status document.
    pub async fn reload(&mut self) -> crate::admin::ReloadRecord {
        let path = self.config.source.clone();
        tracing::info!(config = %path.display(), "reloading the configuration");
        let loaded = crate::config::load(&path)
            .map_err(|e| e.lines())
            .and_then(|c| {
                checker::build_probers(&c)
                    .map(|p| (c, p))
                    .map_err(|e| vec![format!("{}: {e}", path.display())])
            });
        let result = match loaded {
            Ok((config, probers)) => {
                let warnings = config.warning_lines();
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                self.reload_with(config, probers).await.map(|mut lines| {
                    lines.extend(warnings);
                    lines
                })
            }
            Err(lines) => Err(ReloadFailed {
                applied: false,
                lines,
            }),
        };
        let record = match result {
            Ok(lines) => {
                if lines.is_empty() {
                    tracing::info!("reload: nothing changed");
                }
                for l in &lines {
                    tracing::info!(change = %l, "reload: applied");
                }
                let changes = lines.iter().filter(|l| !l.contains(": warning: ")).count();
                self.observers.history.push(
                    crate::events::EventKind::Control,
                    "reload",
                    format!("applied ({changes} changes)"),
                );
                crate::admin::ReloadRecord {
                    at: std::time::SystemTime::now(),
                    ok: true,
                    applied: true,
                    lines,
                }
            }
            Err(ReloadFailed { applied, lines }) => {
                let what = if applied {
                    "applied with an error"
                } else {
                    "refused"
                };
                for l in &lines {
                    if applied {
                        tracing::error!(line = %l, "reload: applied with an error");
                    } else {
                        tracing::error!(error = %l, "reload: refused; the running configuration stays");
                    }
                }
                self.observers.history.push(
                    crate::events::EventKind::Control,
                    "reload",
                    format!("{what}: {}", lines.last().map(String::as_str).unwrap_or("")),
                );
                crate::admin::ReloadRecord {
                    at: std::time::SystemTime::now(),
                    ok: false,
                    applied,
                    lines,
                }
            }
        };
        self.daemon.record_reload(record.clone()).await;
        record
    }

    /// Applies a validated `config` whose probers are built. Returns one line per
    /// change; an error (a new listener that cannot bind, an election that cannot
    /// start) leaves everything as it was, apart from a replaced election.
    ///
    /// Order: bind every new listener first (nothing changes when one fails), start
    /// an added election, then swap health, checkers and the proxy's frontends,
    /// then close the listeners that went away, then change the election.
    pub async fn reload_with(
        &mut self,
        config: Config,
        probers: Vec<health::probe::Prober>,
    ) -> Result<Vec<String>, ReloadFailed> {
        use crate::config::diff::{FrontendChange, ReloadPlan, VrrpChange};
        let old = Arc::clone(&self.config);
        let plan = ReloadPlan::between(&old, &config);
        let mut lines = plan.describe(&old, &config);
        let err = |e: StartError| ReloadFailed {
            applied: false,
            lines: vec![format!("{}: {e}", config.source.display())],
        };
        // 1. Bind.
        let mut new_listeners = Vec::new();
        for f in &config.frontends {
            let added: Vec<SocketAddr> = match plan.frontends.iter().find(|c| c.kind() == f.kind) {
                Some(FrontendChange::Kept { listen, .. }) => listen.added.clone(),
                _ => f.listen.clone(),
            };
            new_listeners.push(
                bind_all(
                    &format!("{}.listen", f.kind),
                    &added,
                    &f.listen,
                    false,
                    // The capability to bind ports below 1024 is gone by now.
                    &mut Prebound::default(),
                )
                .map_err(err)?,
            );
        }
        let admin_bound = bind_all(
            "admin.listen",
            &plan.admin.added,
            &config.admin.listen,
            true,
            &mut Prebound::default(),
        )
        .map_err(err)?;
        // 2. Elections that start now must start before anything else changes.
        let mut vrrp_started: Vec<RunningVrrp> = Vec::new();
        for v in &config.vrrp {
            if *plan.vrrp_change(&v.name) == VrrpChange::Added {
                match self.spawn_vrrp(v, config.proxy_listens()).await {
                    Ok(r) => vrrp_started.push(r),
                    Err(e) => {
                        for r in vrrp_started {
                            r.abort.cancel();
                            let _ = r.done.await;
                        }
                        return Err(err(e));
                    }
                }
            }
        }
        // 3. Health and checkers: a new generation, when a master or a check changed
        // (otherwise the checkers keep running, streaks and all).
        let health_changed = plan.frontends.iter().any(|c| match c {
            FrontendChange::Kept {
                backends, check, ..
            } => *check || backends.is_changed(),
            FrontendChange::Added(_) | FrontendChange::Removed(_) => true,
        });
        let generation = if health_changed {
            self.checkers.cancel();
            // Atomically: a transition an old checker publishes meanwhile is carried
            // over; after this, old checkers can no longer publish.
            let snapshot = self
                .publisher
                .reload(|current| current.reloaded(&config, &plan, current.generation + 1));
            self.observers.stats = self.observers.stats.reloaded(&config, &plan);
            self.checkers = self.background.child_token();
            checker::spawn_checkers(
                &config,
                probers,
                &self.publisher,
                &self.observers,
                &self.tasks,
                &self.checkers,
                &snapshot,
            );
            snapshot.generation
        } else {
            self.health.current().generation
        };
        // 4. The proxy's frontends.
        let mut frontends = Vec::new();
        let mut old_frontends: Vec<RunningFrontend> = std::mem::take(&mut self.frontends);
        for (f, bound) in config.frontends.iter().zip(new_listeners) {
            let watcher = self.background.child_token();
            let mut running = match old_frontends.iter().position(|o| o.kind == f.kind) {
                Some(i) => {
                    let mut o = old_frontends.remove(i);
                    let Some(FrontendChange::Kept {
                        backends, listen, ..
                    }) = plan.frontends.iter().find(|c| c.kind() == f.kind)
                    else {
                        unreachable!("a frontend in both configs is kept");
                    };
                    o.watcher.cancel();
                    let current = o.cell.load_full();
                    resize(
                        &o.permits,
                        current.config().max_connections,
                        f.max_connections,
                    );
                    o.cell
                        .store(current.reconfigure(f.clone(), backends, generation));
                    o.watcher = watcher.clone();
                    // Listeners that went away stop accepting; their connections stay.
                    o.listeners.retain(|l| {
                        let gone = listen.removed.contains(&l.configured);
                        if gone {
                            tracing::info!(frontend = %f.kind, addr = %l.local, "no longer listening (reload)");
                            l.stop.cancel();
                        }
                        !gone
                    });
                    o
                }
                None => RunningFrontend {
                    kind: f.kind,
                    cell: Arc::new(arc_swap::ArcSwap::new(FrontendProxy::new(
                        f.clone(),
                        self.mode,
                        generation,
                        self.budget.pipes_per_frontend,
                        self.hard_stop.clone(),
                    ))),
                    permits: Arc::new(Semaphore::new(f.max_connections)),
                    listeners: Vec::new(),
                    watcher: watcher.clone(),
                },
            };
            self.tasks.spawn(proxy::watch_health(
                running.cell.load_full(),
                self.publisher.subscribe(),
                watcher,
            ));
            for (addr, l) in bound {
                self.accept(&mut running, addr, l);
            }
            // Keep the configured order.
            running
                .listeners
                .sort_by_key(|l| f.listen.iter().position(|a| *a == l.configured));
            frontends.push(running);
        }
        for gone in old_frontends {
            for l in &gone.listeners {
                l.stop.cancel();
            }
            gone.watcher.cancel();
            gone.cell.load().retire_all();
        }
        self.frontends = frontends;
        // 5. Admin listeners.
        for (addr, l) in admin_bound {
            self.serve_admin(addr, l);
        }
        self.admin.retain(|l| {
            let gone = plan.admin.removed.contains(&l.configured);
            if gone {
                l.stop.cancel();
            }
            !gone
        });
        // What the admin endpoint reads (drain resolves names with it) follows the new
        // health generation at once, not after the election's change.
        self.config = Arc::new(config.clone());
        self.daemon
            .set_running(self.running(self.daemon.running().vips.clone()))
            .await;
        // 6. The elections, instance by instance (by name): removed ones hand their
        // VIPs over first, then the others change in place, are replaced or start.
        let mut vrrp_failed = Vec::new();
        for (name, change) in &plan.vrrp {
            if *change == VrrpChange::Removed {
                if let Some(i) = self.vrrp.iter().position(|r| r.name == *name) {
                    stop_vrrp(self.vrrp.remove(i)).await;
                }
            }
        }
        let proxy_listens = config.proxy_listens();
        let mut running = Vec::with_capacity(config.vrrp.len());
        for v in &config.vrrp {
            let change = plan.vrrp_change(&v.name);
            let old = self
                .vrrp
                .iter()
                .position(|r| r.name == v.name)
                .map(|i| self.vrrp.remove(i));
            let started = vrrp_started
                .iter()
                .position(|r| r.name == v.name)
                .map(|i| vrrp_started.remove(i));
            let (kept, failed) = self
                .apply_vrrp(
                    v,
                    change,
                    old,
                    started,
                    proxy_listens,
                    &config.source,
                    &mut lines,
                )
                .await;
            running.extend(kept);
            vrrp_failed.extend(failed);
        }
        // Anything left is no longer configured (a renamed instance was matched above
        // as removed and added).
        for left in std::mem::take(&mut self.vrrp) {
            stop_vrrp(left).await;
        }
        self.vrrp = running;
        self.start_sync_groups();
        // New VIPs, instance name and timeout; new hooks only at a restart (the plan
        // says so).
        self.notifier.reconfigure(&config);
        let vips = if plan.vrrp_unchanged() {
            self.daemon.running().vips.clone()
        } else {
            vips_reader(&self.config).await
        };
        self.daemon.set_running(self.running(vips)).await;
        if vrrp_failed.is_empty() {
            Ok(lines)
        } else {
            Err(ReloadFailed {
                applied: true,
                lines: lines.into_iter().chain(vrrp_failed).collect(),
            })
        }
    }

    /// Applies one instance's part of a reload: `old` is its running election (if
    /// any), `started` the one step 2 started for it (when added). Returns the election
    /// that runs afterwards and the error line when it could not be applied.
    #[allow(clippy::too_many_arguments)]
    async fn apply_vrrp(
        &self,
        v: &crate::config::Vrrp,
        change: &crate::config::diff::VrrpChange,
        old: Option<RunningVrrp>,
        started: Option<RunningVrrp>,
        proxy_listens: bool,
        source: &std::path::Path,
        lines: &mut Vec<String>,
    ) -> (Option<RunningVrrp>, Option<String>) {
        use crate::config::diff::VrrpChange;
        use crate::vrrp::io::shell::ReconfigureError;
        let key = format!("vrrp {}", v.name);
        // A running election takes the section again: its track follows the health
        // view's new generation (step 3), and in-place changes apply.
        let reconfigure = |r: &RunningVrrp| {
            let handle = r.handle.clone();
            let v = v.clone();
            async move {
                handle
                    .reconfigure(v, proxy_listens, RECONFIGURE_BOUND)
                    .await
            }
        };
        let mut replace = false;
        let mut failed = None;
        let mut keep = None;
        match (change, old, started) {
            (VrrpChange::Added, _, Some(r)) => {
                if let Err(e) = reconfigure(&r).await {
                    tracing::warn!(instance = %v.name, error = %e, "vrrp: the new election did not take the new health view");
                }
                keep = Some(r);
            }
            // Configured, but no election runs (a replacement failed to start): start it.
            (_, None, _) => replace = true,
            (VrrpChange::Unchanged | VrrpChange::Added | VrrpChange::Removed, Some(r), _) => {
                if let Err(e) = reconfigure(&r).await {
                    tracing::warn!(instance = %v.name, error = %e, "vrrp: the election did not take the new health view");
                }
                keep = Some(r);
            }
            (VrrpChange::InPlace, Some(mut r), _) => match reconfigure(&r).await {
                Ok(()) => {
                    r.bound = handover_bound(v);
                    keep = Some(r);
                }
                Err(ReconfigureError::Refused(e)) => {
                    // A handover or maintenance runs: replacing the election would end
                    // it. Keep the running election as it is and say so.
                    failed = Some(format!(
                        "{}: {key}: not applied: {e}; the election keeps its previous settings (after `apivip resume`, reload again)",
                        source.display()
                    ));
                    keep = Some(r);
                }
                Err(e) => {
                    // A socket that cannot open, no answer: apply it the other way.
                    tracing::warn!(instance = %v.name, error = %e, "vrrp: cannot apply in place; replacing the election");
                    stop_vrrp(r).await;
                    replace = true;
                }
            },
            (VrrpChange::Replace(_), Some(r), _) => {
                stop_vrrp(r).await;
                replace = true;
            }
        }
        if replace {
            lines.push(format!("{key}: the election is started anew with this section (after a planned handover of the running one, if any)"));
            match self.spawn_vrrp(v, proxy_listens).await {
                Ok(r) => keep = Some(r),
                Err(e) => {
                    // Everything else is applied: keep it, and say that no election runs.
                    failed = Some(format!(
                        "{}: {key}: {e}; the rest of the file is applied, but this node takes no part in this election until a reload or restart succeeds",
                        source.display()
                    ));
                }
            }
        }
        (keep, failed)
    }

    /// Stops accepting, waits up to `drain` for connections to end, closes the rest and
    /// stops every task.
    pub async fn shutdown(self, drain: Duration) -> DrainReport {
        self.shutdown_or_force(drain, std::future::pending()).await
    }

    /// Like [`Supervisor::shutdown`], but closes every connection at once when `force`
    /// completes (a second SIGTERM or Ctrl-C during the drain).
    pub async fn shutdown_or_force(
        self,
        drain: Duration,
        force: impl std::future::Future<Output = ()>,
    ) -> DrainReport {
        tokio::pin!(force);
        // First hand the VIPs over while the proxy keeps serving, so that clients
        // connecting to a VIP never find nobody holding it. Every instance at once.
        self.sync_groups.cancel();
        let handovers = futures_util::future::join_all(self.vrrp.into_iter().map(|v| async move {
            v.handle.handover.cancel();
            let mut done = v.done;
            if tokio::time::timeout(v.bound, &mut done).await.is_err() {
                tracing::warn!(instance = %v.name, "vrrp: handover did not finish in time; releasing the VIP");
                v.abort.cancel();
                let _ = done.await;
            }
        }));
        tokio::select! {
            _ = handovers => {}
            _ = &mut force => {
                // Aborting: every election is a child of the hard stop.
                self.hard_stop.cancel();
            }
        }
        self.stop_accepting.cancel();
        self.acceptors.close();
        self.acceptors.wait().await;
        self.connections.close();
        let open_at_start = self.connections.len();
        tracing::info!(open = open_at_start, drain = %crate::units::format_duration(drain), "stopped accepting; draining connections");
        let drained = tokio::select! {
            r = tokio::time::timeout(drain, self.connections.wait()) => r.is_ok(),
            _ = &mut force => {
                tracing::warn!("second stop signal: closing every connection now");
                false
            }
        };
        let closed_at_deadline = if drained { 0 } else { self.connections.len() };
        if !drained && closed_at_deadline > 0 {
            tracing::warn!(
                open = closed_at_deadline,
                "closing the remaining connections"
            );
        }
        self.hard_stop.cancel();
        self.connections.wait().await;
        // The hooks of the last changes (the stop hook) run, bounded by one timeout.
        let bound = self.config.notify.timeout + Duration::from_secs(1);
        self.notifier.finish(bound).await;
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        DrainReport {
            open_at_start,
            closed_at_deadline,
        }
    }
}

/// Changes a frontend's connection limit in place: more permits at once; fewer as
/// connections end (never closing one).
fn resize(permits: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        permits.add_permits(to - from);
    } else if to < from {
        let mut owed = from - to;
        owed -= permits.forget_permits(owed);
        if owed > 0 {
            let permits = Arc::clone(permits);
            tokio::spawn(async move {
                if let Ok(p) = permits.acquire_many_owned(owed as u32).await {
                    p.forget();
                }
            });
        }
    }
}

/// How long an in-place reload of the election may take: the election thread applies
/// it between two packets (netlink for changed VIPs included).
const RECONFIGURE_BOUND: Duration = Duration::from_secs(5);

/// How long the handover of `v` may take: the machine's own bound, and a second for
/// netlink (removing the VIPs) and the thread to end.
fn handover_bound(v: &crate::config::Vrrp) -> Duration {
    v.instance.handover_bound() + Duration::from_secs(1)
}

/// Hands the VIP over and waits for the election to end (bounded; then releases it).
async fn stop_vrrp(v: RunningVrrp) {
    v.handle.handover.cancel();
    let mut done = v.done;
    if tokio::time::timeout(v.bound, &mut done).await.is_err() {
        tracing::warn!(instance = %v.name, "vrrp: handover did not finish in time; releasing the VIP");
        v.abort.cancel();
        let _ = done.await;
    }
}

/// The netlink readers of the VIPs, by instance name, for the status document.
async fn vips_reader(config: &Config) -> Vec<(String, crate::vrrp::io::vip::Vips)> {
    let mut out = Vec::new();
    for v in &config.vrrp {
        match crate::vrrp::io::vip::Vips::new(&v.interface, None).await {
            Ok(vips) => out.push((v.name.clone(), vips)),
            Err(e) => {
                tracing::warn!(instance = %v.name, error = %e, "admin: cannot read the interface's addresses; status shows VIP presence as unknown");
            }
        }
    }
    out
}

/// Runs the coordinator of sync group `name` until `stop`: reads every member's
/// posture whenever one publishes a change, and tells each member what the group
/// wants of it ([`crate::vrrp::sync::SyncGroup`] decides).
async fn run_sync_group(
    name: String,
    members: Vec<crate::vrrp::io::shell::VrrpHandle>,
    stop: CancellationToken,
) {
    use futures_util::FutureExt;
    let mut group = crate::vrrp::sync::SyncGroup::new(members.len());
    let mut changes: Vec<Option<tokio::sync::watch::Receiver<()>>> = members
        .iter()
        .map(|h| Some(h.status_changed.clone()))
        .collect();
    loop {
        // Every member's posture first: an input is never computed from a half-read
        // group.
        let postures: Vec<_> = members
            .iter()
            .zip(&changes)
            .map(|(h, c)| match c {
                Some(_) => h.status.load().posture,
                None => crate::vrrp::machine::Posture::Stopped,
            })
            .collect();
        {
            for (j, input) in group.update_all(&postures) {
                tracing::info!(
                    sync_group = %name,
                    instance = %members[j].name,
                    may_master = input.may_master,
                    sibling_fault = input.sibling_fault,
                    postures = ?group.postures(),
                    "vrrp: sync group"
                );
                members[j].sync(input);
            }
        }
        let ended = {
            let waits: Vec<_> = changes
                .iter_mut()
                .enumerate()
                .filter_map(|(i, c)| {
                    c.as_mut()
                        .map(|c| c.changed().map(move |r| (i, r.is_err())).boxed())
                })
                .collect();
            if waits.is_empty() {
                stop.cancelled().await;
                return;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                ((i, ended), _, _) = futures_util::future::select_all(waits) => ended.then_some(i),
            }
        };
        if let Some(i) = ended {
            // The member's thread ended: it is stopped for the group.
            changes[i] = None;
        }
    }
}

/// Listeners bound before the runtime starts: those whose port needs
/// `CAP_NET_BIND_SERVICE` (below `net.ipv4.ip_unprivileged_port_start`), bound while
/// the process still has it, so that [`crate::privileges`] can drop it before any
/// thread exists (capabilities are per thread). [`Supervisor::start_prebound`] uses
/// them in place of binding. A reload cannot bind such a port any more (its error says
/// permission denied): moving to one needs a restart.
#[derive(Debug, Default)]
pub struct Prebound {
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
}

impl Prebound {
    /// Binds every listen address of `config` (frontends and admin) whose port is
    /// non-zero and below `unprivileged_start`, with the same socket options as at
    /// start. A failure names the config key, as at start.
    pub fn bind_privileged(config: &Config, unprivileged_start: u16) -> Result<Self, StartError> {
        let privileged = |a: &SocketAddr| a.port() != 0 && a.port() < unprivileged_start;
        let mut wanted: Vec<(String, SocketAddr, bool)> = Vec::new();
        for f in &config.frontends {
            for (i, a) in f.listen.iter().enumerate() {
                let key =
                    crate::config::listen_key(&format!("{}.listen", f.kind), i, f.listen.len());
                wanted.push((key, *a, false));
            }
        }
        for (i, a) in config.admin.listen.iter().enumerate() {
            let key = crate::config::listen_key("admin.listen", i, config.admin.listen.len());
            wanted.push((key, *a, true));
        }
        let mut listeners = Vec::new();
        for (key, addr, plain) in wanted.into_iter().filter(|(_, a, _)| privileged(a)) {
            let l = proxy::bind_std(addr, plain).map_err(|source| StartError::Bind {
                key,
                addr,
                source,
            })?;
            listeners.push((addr, l));
        }
        Ok(Prebound { listeners })
    }

    /// The addresses bound.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(a, _)| *a).collect()
    }

    fn take(&mut self, addr: SocketAddr) -> Option<std::net::TcpListener> {
        let i = self.listeners.iter().position(|(a, _)| *a == addr)?;
        Some(self.listeners.swap_remove(i).1)
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully; a second signal during
/// the drain closes every connection at once. SIGHUP and `apivip reload` reload the
/// config file (see [`Supervisor::reload`]). Under systemd ([`crate::systemd`]) it
/// sends `READY=1` once started, keeps `STATUS=` current, pings the watchdog while the
/// runtime and the election thread answer, wraps each reload in `RELOADING=1` /
/// `READY=1`, and sends `STOPPING=1` at the stop signal.
///
/// The signal handlers are installed before anything starts, so a SIGTERM during
/// start-up is a graceful stop too.
pub async fn run(
    config: Config,
    probers: Vec<health::probe::Prober>,
    prebound: Prebound,
    workers: Option<Arc<proxy::workers::Pool>>,
) -> Result<DrainReport, StartError> {
    let mut signals = StopSignals::install();
    let mut sup =
        Supervisor::start_prebound(&config, probers, Mode::Auto, prebound, workers).await?;
    // Listeners are bound, checkers spawned and the election thread runs: READY=1.
    let notifier = crate::systemd::Notifier::start(sup.daemon());
    // One request at a time: a second one while a reload runs is refused.
    let (tx, mut requests) = tokio::sync::mpsc::channel::<ReloadRequest>(1);
    sup.daemon().serve_reloads(tx);
    let mut election_check = tokio::time::interval(ELECTION_CHECK_INTERVAL);
    election_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered_since = Vec::new();
    loop {
        tokio::select! {
            _ = election_check.tick() => {
                if let Some(why) = sup.election_lost(&mut unanswered_since).await {
                    tracing::error!(reason = %why, "vrrp: the election is lost; removing the VIPs and exiting non-zero");
                    notifier.stop();
                    crate::systemd::stopping();
                    let config = sup.config();
                    for (name, vips) in vips_reader(&config).await {
                        let list = vip_configs(&config, &name);
                        match tokio::time::timeout(Duration::from_secs(2), vips.remove(&list)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::error!(instance = %name, error = %e, "vrrp: cannot remove the VIPs"),
                            Err(_) => tracing::error!(instance = %name, "vrrp: removing the VIPs timed out"),
                        }
                    }
                    return Err(StartError::ElectionLost(why));
                }
            }
            hup = signals.wait() => {
                if !hup {
                    break;
                }
                tracing::info!("SIGHUP: reloading the configuration");
                crate::systemd::reloading();
                sup.reload().await;
                crate::systemd::ready();
            }
            Some(reply) = requests.recv() => {
                crate::systemd::reloading();
                let record = sup.reload().await;
                crate::systemd::ready();
                let _ = reply.send(record);
            }
        }
    }
    notifier.stop();
    crate::systemd::stopping();
    let drain = sup.config().shutdown.drain_timeout;
    Ok(sup.shutdown_or_force(drain, signals.next()).await)
}

/// How often the supervisor checks that the election thread runs and answers.
const ELECTION_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long the election thread may leave reports unanswered before apivip exits:
/// `/healthz` and the systemd watchdog ping stop after 1 s already; this also covers a
/// static pod whose liveness probe is slow or absent. Every netlink call of the thread
/// is bounded (2 s), so only a bug stalls it this long.
pub const ELECTION_STALL_LIMIT: Duration = Duration::from_secs(10);

/// The VIPs of `config`'s instance `name` as netlink adds them.
fn vip_configs(config: &Config, name: &str) -> Vec<crate::vrrp::io::vip::VipConfig> {
    config
        .vrrp
        .iter()
        .filter(|v| v.name == name)
        .flat_map(|v| &v.vips)
        .map(|&(addr, prefix_len)| crate::vrrp::io::vip::VipConfig { addr, prefix_len })
        .collect()
}

/// SIGTERM, SIGINT and SIGHUP streams.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let open = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(signal = name, error = %e, "cannot handle signal");
                None
            }
        };
        StopSignals {
            term: open(SignalKind::terminate(), "SIGTERM"),
            int: open(SignalKind::interrupt(), "SIGINT"),
            hup: open(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// Waits for the next signal: `true` for SIGHUP, `false` for SIGTERM or SIGINT.
    async fn wait(&mut self) -> bool {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.term) => { tracing::info!("SIGTERM: shutting down"); false }
            _ = recv(&mut self.int) => { tracing::info!("SIGINT: shutting down"); false }
            _ = recv(&mut self.hup) => true,
        }
    }

    /// Waits for the next SIGTERM or SIGINT (a SIGHUP meanwhile is ignored: the
    /// daemon is stopping).
    async fn next(&mut self) {
        while self.wait().await {
            tracing::warn!("SIGHUP while stopping: not reloading");
        }
    }
}
