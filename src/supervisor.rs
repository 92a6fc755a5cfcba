//! The supervisor: builds every task from a [`Config`], and stops them in order.
//!
//! Start: probers are built first (certificate errors fail before anything binds),
//! then listeners are bound (a busy port fails start), then the checkers, the health
//! watchers and the accept loops run. Stop (SIGTERM, SIGINT): stop accepting, let
//! connections finish up to `shutdown.drain_timeout`, close the rest, stop checkers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    Vrrp(#[from] crate::vrrp::shell::VrrpError),
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

/// A running apivip.
#[derive(Debug)]
pub struct Supervisor {
    frontends: Vec<Arc<FrontendProxy>>,
    listen: HashMap<FrontendKind, Vec<SocketAddr>>,
    health: HealthView,
    /// Ends the accept loops.
    stop_accepting: CancellationToken,
    /// Closes every proxied connection.
    hard_stop: CancellationToken,
    /// Ends checkers and watchers.
    background: CancellationToken,
    connections: TaskTracker,
    /// The VRRP election, when configured.
    vrrp: Option<(
        crate::vrrp::shell::VrrpHandle,
        tokio::sync::oneshot::Receiver<()>,
        Duration,
    )>,
    /// The accept loops, waited for before draining so that the count is final.
    acceptors: TaskTracker,
    tasks: TaskTracker,
    /// What the admin endpoint reads and steers.
    daemon: Arc<crate::admin::Daemon>,
    /// Where the admin endpoint listens (real ports).
    admin: Vec<SocketAddr>,
    /// The notify hooks.
    notifier: crate::notify::Notifier,
    /// How long shutdown waits for the last hooks (the stop hook).
    notify_bound: Duration,
}

/// What a shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections open when accepting stopped.
    pub open_at_start: usize,
    /// Connections still open at the deadline (closed by force).
    pub closed_at_deadline: usize,
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
        let mut bound = Vec::new();
        let mut listen = HashMap::new();
        for (fi, f) in config.frontends.iter().enumerate() {
            let mut addrs = Vec::new();
            for (i, addr) in f.listen.iter().enumerate() {
                let key = if f.listen.len() == 1 {
                    format!("{}.listen", f.kind)
                } else {
                    format!("{}.listen[{i}]", f.kind)
                };
                let l = proxy::bind(*addr).map_err(|source| StartError::Bind {
                    key,
                    addr: *addr,
                    source,
                })?;
                let local = l.local_addr().unwrap_or(*addr);
                addrs.push(local);
                bound.push((fi, l));
            }
            listen.insert(f.kind, addrs);
        }
        let mut admin_listeners = Vec::new();
        for (i, addr) in config.admin.listen.iter().enumerate() {
            let key = if config.admin.listen.len() == 1 {
                "admin.listen".to_owned()
            } else {
                format!("admin.listen[{i}]")
            };
            let l = crate::proxy::bind_plain(*addr).map_err(|source| StartError::Bind {
                key,
                addr: *addr,
                source,
            })?;
            admin_listeners.push(l);
        }
        let (publisher, view) = health::channel(HealthSnapshot::initial(config));
        let tasks = TaskTracker::new();
        let acceptors = TaskTracker::new();
        let connections = TaskTracker::new();
        let background = CancellationToken::new();
        let stop_accepting = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let observers = checker::Observers {
            stats: health::stats::HealthStats::new(config),
            history: crate::events::History::default(),
        };
        // Subscribed before the checkers and the election start, so the hooks see the
        // first transitions too.
        let notifier = crate::notify::Notifier::spawn(config, &observers.history);
        checker::spawn_checkers(config, probers, &publisher, &observers, &tasks, &background);
        let mut frontends = Vec::new();
        let mut permits = Vec::new();
        for f in &config.frontends {
            let fe = FrontendProxy::new(f.clone(), mode);
            tasks.spawn(proxy::watch_health(
                Arc::clone(&fe),
                publisher.subscribe(),
                background.clone(),
            ));
            permits.push(Arc::new(Semaphore::new(f.max_connections)));
            frontends.push(fe);
        }
        for (fi, listener) in bound {
            let fe = &frontends[fi];
            tracing::info!(frontend = %fe.config().kind,
                addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
            acceptors.spawn(proxy::serve(
                Arc::clone(fe),
                listener,
                Arc::clone(&permits[fi]),
                connections.clone(),
                stop_accepting.clone(),
                hard_stop.clone(),
            ));
        }
        let vrrp = match &config.vrrp {
            None => None,
            Some(v) => {
                let proxy_listening = config
                    .frontends
                    .iter()
                    .any(|f| f.kind == FrontendKind::Apiserver && !f.listen.is_empty());
                let (handle, task) = crate::vrrp::shell::spawn_dedicated(
                    v.clone(),
                    publisher.subscribe(),
                    proxy_listening,
                    hard_stop.clone(),
                    observers.history.clone(),
                )
                .await?;
                // The handover waits for a new holder, bounded by the machine's own
                // timeout; a little more for the last adverts and netlink.
                let bound = v.instance.handover_timeout
                    + v.instance.version.interval() * 2
                    + Duration::from_secs(1);
                Some((handle, task, bound))
            }
        };
        let vips = match &config.vrrp {
            Some(v) => match crate::vrrp::vip::Vips::new(&v.interface, None).await {
                Ok(vips) => Some(vips),
                Err(e) => {
                    tracing::warn!(error = %e, "admin: cannot read the interface's addresses; status shows VIP presence as unknown");
                    None
                }
            },
            None => None,
        };
        let daemon = Arc::new(
            crate::admin::Daemon::new(
                Arc::new(config.clone()),
                view.clone(),
                publisher.clone(),
                frontends.clone(),
                listen.iter().map(|(k, a)| (*k, a.clone())).collect(),
                observers.stats.clone(),
                observers.history.clone(),
                vrrp.as_ref().map(|(h, _, _)| h.clone()),
                vips,
            )
            .with_notify(notifier.stats()),
        );
        let mut admin = Vec::new();
        for l in admin_listeners {
            let local = l.local_addr().ok();
            if let Some(a) = local {
                if !a.ip().is_loopback() {
                    tracing::warn!(addr = %a, "admin endpoint listens on a non-loopback address: metrics and status are readable from the network (controls stay loopback-only)");
                }
                tracing::info!(addr = %a, "admin endpoint listening");
                admin.push(a);
            }
            tasks.spawn(crate::admin::server::serve(
                l,
                Arc::clone(&daemon),
                background.clone(),
                tasks.clone(),
            ));
        }
        Ok(Supervisor {
            notifier,
            notify_bound: config.notify.timeout + Duration::from_secs(1),
            daemon,
            admin,
            vrrp,
            frontends,
            listen,
            health: view,
            stop_accepting,
            hard_stop,
            background,
            connections,
            acceptors,
            tasks,
        })
    }

    /// The addresses a frontend listens on (with the real port when 0 was configured).
    pub fn listen_addrs(&self, frontend: FrontendKind) -> Vec<SocketAddr> {
        self.listen.get(&frontend).cloned().unwrap_or_default()
    }

    /// Where the admin endpoint listens (real ports; empty when it is off).
    pub fn admin_addrs(&self) -> &[SocketAddr] {
        &self.admin
    }

    /// What the admin endpoint reads and steers (status, controls).
    pub fn daemon(&self) -> Arc<crate::admin::Daemon> {
        Arc::clone(&self.daemon)
    }

    /// The health view.
    pub fn health(&self) -> HealthView {
        self.health.clone()
    }

    /// A frontend's proxy state (counters, active connections).
    pub fn frontend(&self, kind: FrontendKind) -> Option<Arc<FrontendProxy>> {
        self.frontends
            .iter()
            .find(|f| f.config().kind == kind)
            .cloned()
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
        // First hand the VIP over while the proxy keeps serving, so that clients
        // connecting to the VIP never find nobody holding it.
        if let Some((handle, mut task, bound)) = self.vrrp {
            handle.handover.cancel();
            tokio::select! {
                r = tokio::time::timeout(bound, &mut task) => {
                    if r.is_err() {
                        tracing::warn!("vrrp: handover did not finish in time; releasing the VIP");
                        self.hard_stop.cancel();
                        let _ = task.await;
                    }
                }
                _ = &mut force => {
                    self.hard_stop.cancel();
                    let _ = task.await;
                }
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
        self.notifier.finish(self.notify_bound).await;
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        DrainReport {
            open_at_start,
            closed_at_deadline,
        }
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully; a second signal during
/// the drain closes every connection at once. SIGHUP is logged (reload is not part of
/// this version) instead of killing the process.
///
/// The signal handlers are installed before anything starts, so a SIGTERM during
/// start-up is a graceful stop too.
pub async fn run(
    config: Config,
    probers: Vec<health::probe::Prober>,
) -> Result<DrainReport, StartError> {
    let mut signals = StopSignals::install();
    let sup = Supervisor::start_with(&config, probers, Mode::Auto).await?;
    signals.next().await;
    Ok(sup
        .shutdown_or_force(config.shutdown.drain_timeout, signals.next())
        .await)
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

    /// Waits for the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                _ = recv(&mut self.term) => { tracing::info!("SIGTERM: shutting down"); return }
                _ = recv(&mut self.int) => { tracing::info!("SIGINT: shutting down"); return }
                _ = recv(&mut self.hup) => tracing::warn!("SIGHUP: configuration reload is not supported in this version; restart to apply changes"),
            }
        }
    }
}
