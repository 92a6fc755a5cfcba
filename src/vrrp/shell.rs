//! The VRRP shell: drives one [`Instance`] with a raw socket, netlink and the clock.
//!
//! ```text
//!   VrrpSocket.recv --decode--> Instance.handle_advert ---+
//!   sleep_until(poll_timeout) -> Instance.handle_timeout --+--> poll_action:
//!   HealthView change ---------> Instance.handle_health ---+      SendAdvert -> encode per destination -> send_to
//!   handover signal -----------> Instance.handle_shutdown -+      AddVips / RemoveVips -> netlink
//!                                                                 Announce -> GARP / NA, repeated
//!                                                                 StateChanged -> log; Exit -> return
//! ```
//!
//! Only this file touches time and sockets; every decision is the machine's.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Track, Vrrp};
use crate::health::{HealthSnapshot, HealthView};
use crate::vrrp::announce::Announcer;
use crate::vrrp::machine::{Action, Instance, Received, State, VersionConfig};
use crate::vrrp::packet::{Checksum, IpPair, Repr, MULTICAST_V4};
use crate::vrrp::socket::{Delivery, VrrpSocket};
use crate::vrrp::vip::{VipConfig, Vips};

/// Why the VRRP task could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VrrpError {
    /// The raw socket could not be opened (CAP_NET_RAW, interface).
    #[error("vrrp: cannot open the VRRP socket on {interface}: {source}")]
    Socket {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// Netlink or the interface failed (CAP_NET_ADMIN, interface missing).
    #[error("vrrp: cannot manage addresses on {interface}: {source}")]
    Netlink {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// The election config is inconsistent.
    #[error("vrrp: {0}")]
    Config(#[from] crate::vrrp::machine::ConfigError),
}

/// What the admin side can read about the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpStatus {
    /// The current state.
    pub state: State,
    /// The priority advertised now.
    pub priority: u8,
    /// The master's address, as last heard.
    pub master: Option<IpAddr>,
}

/// Whether this node can serve, per the configured track.
pub fn can_serve(track: &Track, snap: &HealthSnapshot, proxy_listening: bool) -> bool {
    let Some(api) = snap.frontend("apiserver") else {
        return false;
    };
    match track {
        Track::Proxy => proxy_listening && api.backends.iter().any(|b| b.status.is_up()),
        Track::Backend(name) => api
            .backends
            .iter()
            .any(|b| &b.name == name && b.status.is_up()),
    }
}

/// The running election's handle.
#[derive(Debug, Clone)]
pub struct VrrpHandle {
    /// Starts the planned handover (SIGTERM).
    pub handover: CancellationToken,
    /// Latest status.
    pub status: Arc<ArcSwap<VrrpStatus>>,
}

/// Prepares everything that can fail (socket, netlink, stale VIPs) before the election
/// starts, so `apivip run` fails fast with a clear error.
pub async fn start(cfg: &Vrrp) -> Result<Shell, VrrpError> {
    let netlink = |source| VrrpError::Netlink {
        interface: cfg.interface.clone(),
        source,
    };
    let label = format!("{}:apivip", cfg.interface);
    let label = (label.len() <= 15).then_some(label);
    let vips = Vips::new(&cfg.interface, label).await.map_err(netlink)?;
    let mut cfg = cfg.clone();
    // VRRPv3 over IPv6 multicast sends from the interface's link-local address
    // (RFC 9568 §5.1.2.1), which is then also the tie-break address.
    if let (IpAddr::V6(primary), None) = (cfg.instance.primary_ip, &cfg.instance.peers) {
        if !is_link_local(primary) {
            match vips.link_local_v6().await.map_err(netlink)? {
                Some(ll) => cfg.instance.primary_ip = IpAddr::V6(ll),
                None => {
                    return Err(VrrpError::Netlink {
                        interface: cfg.interface.clone(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "no IPv6 link-local address to send VRRPv3 adverts from",
                        ),
                    })
                }
            }
        }
    }
    let cfg = &cfg;
    let instance = Instance::try_new(cfg.instance.clone())?;
    let delivery = match &cfg.instance.peers {
        Some(p) => Delivery::Unicast(p.clone()),
        None => Delivery::Multicast,
    };
    let socket =
        VrrpSocket::open(&cfg.interface, cfg.instance.primary_ip, delivery).map_err(|source| {
            VrrpError::Socket {
                interface: cfg.interface.clone(),
                source,
            }
        })?;
    let vip_list: Vec<VipConfig> = cfg
        .vips
        .iter()
        .map(|&(addr, prefix_len)| VipConfig { addr, prefix_len })
        .collect();
    // A VIP left by a crashed run would make two holders: remove it before electing.
    let stale = vips.present(&vip_list).await.map_err(netlink)?;
    if !stale.is_empty() {
        tracing::warn!(vips = ?stale, "removing VIPs left on the interface by an earlier run");
        vips.remove(&vip_list).await.map_err(netlink)?;
    }
    let mac = vips.mac().await.map_err(netlink)?;
    let announcer = Announcer::new(&cfg.interface, vips.ifindex(), mac).map_err(netlink)?;
    let status = Arc::new(ArcSwap::from_pointee(VrrpStatus {
        state: State::Initialize,
        priority: cfg.instance.base_priority.get(),
        master: None,
    }));
    let destinations = socket.destinations();
    Ok(Shell {
        destinations,
        send_buf: Vec::new(),
        cfg: cfg.clone(),
        instance,
        socket,
        vips,
        vip_list,
        announcer,
        status,
        handover: CancellationToken::new(),
    })
}

/// Starts the election on a thread of its own with a single-threaded runtime, so that
/// its packets and timers never wake the proxy's worker threads (at a 10 ms interval
/// that is 100 wakeups a second on every node). Returns once the socket, netlink and
/// stale-VIP removal are done (or failed); the receiver completes when the election
/// has ended (handover done, or `abort`).
pub async fn spawn_dedicated(
    cfg: Vrrp,
    health: HealthView,
    proxy_listening: bool,
    abort: CancellationToken,
) -> Result<(VrrpHandle, tokio::sync::oneshot::Receiver<()>), VrrpError> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let interface = cfg.interface.clone();
    let spawned = std::thread::Builder::new()
        .name("apivip-vrrp".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(source) => {
                    let _ = started_tx.send(Err(VrrpError::Socket {
                        interface: cfg.interface.clone(),
                        source,
                    }));
                    return;
                }
            };
            rt.block_on(async move {
                match start(&cfg).await {
                    Err(e) => {
                        let _ = started_tx.send(Err(e));
                    }
                    Ok(shell) => {
                        let _ = started_tx.send(Ok(shell.handle()));
                        shell.run(health, proxy_listening, abort).await;
                    }
                }
            });
            let _ = done_tx.send(());
        });
    if let Err(source) = spawned {
        return Err(VrrpError::Socket { interface, source });
    }
    let handle = started_rx.await.map_err(|_| VrrpError::Socket {
        interface: interface.clone(),
        source: std::io::Error::other("the VRRP thread ended during start"),
    })??;
    Ok((handle, done_rx))
}

/// A prepared election, ready to [`Shell::run`].
pub struct Shell {
    cfg: Vrrp,
    instance: Instance,
    socket: VrrpSocket,
    vips: Vips,
    vip_list: Vec<VipConfig>,
    announcer: Announcer,
    status: Arc<ArcSwap<VrrpStatus>>,
    handover: CancellationToken,
    /// Where adverts go (the group, or each unicast peer), computed once.
    destinations: Vec<IpAddr>,
    /// Reused for every advert.
    send_buf: Vec<u8>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("interface", &self.cfg.interface)
            .finish_non_exhaustive()
    }
}

impl Shell {
    /// The handle to start a handover and read the status.
    pub fn handle(&self) -> VrrpHandle {
        VrrpHandle {
            handover: self.handover.clone(),
            status: self.status.clone(),
        }
    }

    /// Runs the election until the handover completes (or `abort`, which removes the
    /// VIPs at once). `proxy_listening` says whether this node's proxy serves.
    pub async fn run(
        mut self,
        mut health: HealthView,
        proxy_listening: bool,
        abort: CancellationToken,
    ) {
        let mut buf = vec![0u8; 4096];
        let serve = can_serve(
            &self.cfg.track,
            &health.current_and_mark_seen(),
            proxy_listening,
        );
        let now = std::time::Instant::now();
        self.instance.handle_health(now, serve);
        self.instance.handle_startup(now);
        let mut announce_left = 0u32;
        let mut next_announce: Option<Instant> = None;
        let mut handover_started = false;
        let mut health_open = true;
        // One timer for the machine, re-armed only when its deadline changes (STYLE §6:
        // a new timer per loop turn costs a timer-wheel insert and remove per packet).
        let far = || Instant::now() + Duration::from_secs(86_400);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            if self
                .drain_actions(&mut announce_left, &mut next_announce)
                .await
            {
                return;
            }
            let deadline = self.instance.poll_timeout().map(Instant::from_std);
            if deadline != armed {
                timer.as_mut().reset(deadline.unwrap_or_else(far));
                armed = deadline;
            }
            tokio::select! {
                r = self.socket.recv(&mut buf) => match r {
                    Ok(rx) => self.on_packet(&buf[..rx.len], rx.src, rx.dst, rx.ttl_or_hop_limit),
                    Err(e) => {
                        tracing::warn!(error = %e, "vrrp: receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.instance.handle_timeout(std::time::Instant::now());
                }
                _ = sleep_until_opt(next_announce), if next_announce.is_some() => {
                    self.announce();
                    announce_left = announce_left.saturating_sub(1);
                    next_announce = (announce_left > 0).then(|| Instant::now() + self.cfg.announce_interval);
                }
                changed = health.changed(), if health_open => {
                    match changed {
                        Some(snap) => {
                            let serve = can_serve(&self.cfg.track, &snap, proxy_listening);
                            if serve != self.instance.can_serve() {
                                tracing::info!(can_serve = serve, "vrrp: this node's ability to serve changed");
                            }
                            self.instance.handle_health(std::time::Instant::now(), serve);
                        }
                        // The health publisher is gone: nothing will change any more.
                        None => health_open = false,
                    }
                }
                _ = self.handover.cancelled(), if !handover_started => {
                    handover_started = true;
                    tracing::info!("vrrp: planned handover");
                    self.instance.handle_shutdown(std::time::Instant::now());
                }
                _ = abort.cancelled() => {
                    if let Err(e) = self.vips.remove(&self.vip_list).await {
                        tracing::error!(error = %e, "vrrp: cannot remove the VIPs");
                    }
                    return;
                }
            }
        }
    }

    fn on_packet(&mut self, msg: &[u8], src: IpAddr, dst: IpAddr, ttl: u8) {
        let result = decode(&self.cfg.instance.version, msg, src, dst);
        let rx = Received {
            src,
            ttl_or_hop_limit: ttl,
            result,
        };
        if let Err(reason) = self.instance.handle_advert(std::time::Instant::now(), rx) {
            tracing::debug!(%src, ?reason, "vrrp: advert dropped");
        }
    }

    /// Runs the queued actions; true once the machine said `Exit`.
    async fn drain_actions(
        &mut self,
        announce_left: &mut u32,
        next_announce: &mut Option<Instant>,
    ) -> bool {
        while let Some(action) = self.instance.poll_action() {
            match action {
                Action::SendAdvert { priority } => self.send(self.instance.advert(priority)).await,
                Action::AddVips => {
                    if let Err(e) = self.vips.add(&self.vip_list).await {
                        tracing::error!(error = %e, "vrrp: cannot add the VIPs");
                    }
                }
                Action::RemoveVips => {
                    if let Err(e) = self.vips.remove(&self.vip_list).await {
                        tracing::error!(error = %e, "vrrp: cannot remove the VIPs");
                    }
                }
                Action::Announce => {
                    self.announce();
                    *announce_left = self.cfg.announce_count.saturating_sub(1);
                    *next_announce =
                        (*announce_left > 0).then(|| Instant::now() + self.cfg.announce_interval);
                }
                Action::StateChanged { from, to, reason } => {
                    tracing::info!(?from, ?to, ?reason, vips = ?self.cfg.vips, "vrrp: state changed");
                    if to != State::Master {
                        *announce_left = 0;
                        *next_announce = None;
                    }
                }
                Action::Exit => {
                    self.publish();
                    return true;
                }
            }
        }
        self.publish();
        false
    }

    /// Publishes the status for the admin side, only when it changed (this runs after
    /// every packet and timer).
    fn publish(&self) {
        let now = VrrpStatus {
            state: self.instance.state(),
            priority: self.instance.advertised_priority().get(),
            master: self.instance.master_ip(),
        };
        if **self.status.load() != now {
            self.status.store(Arc::new(now));
        }
    }

    fn announce(&self) {
        let ips: Vec<IpAddr> = self.vip_list.iter().map(|v| v.addr).collect();
        if let Err(e) = self.announcer.announce(&ips) {
            tracing::warn!(error = %e, "vrrp: announcing the VIPs failed");
        }
    }

    async fn send(&mut self, repr: Repr) {
        let len = repr.buffer_len();
        if self.send_buf.len() < len {
            self.send_buf.resize(len, 0);
        }
        for &dst in &self.destinations {
            let (pair, policy) = encode_policy(
                &self.cfg.instance.version,
                self.cfg.instance.primary_ip,
                dst,
            );
            let msg = &mut self.send_buf[..len];
            repr.emit(
                &mut crate::vrrp::packet::Packet::new_unchecked(&mut *msg, repr.family()),
                &pair,
                policy,
            );
            if let Err(e) = self.socket.send_to(msg, dst).await {
                tracing::warn!(%dst, error = %e, "vrrp: sending an advert failed");
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How a message to `dst` is checksummed: v3 over the IPv4/IPv6 pseudo-header (the
/// socket sets no IPV6_CHECKSUM, so the codec does it for both), v2 over the message
/// alone.
fn encode_policy(version: &VersionConfig, src: IpAddr, dst: IpAddr) -> (IpPair, Checksum) {
    let pair = ip_pair(src, dst);
    let policy = match version {
        VersionConfig::V2 { .. } => Checksum::NoPseudoHeader,
        VersionConfig::V3 { .. } => Checksum::Verify,
    };
    (pair, policy)
}

fn is_link_local(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

fn ip_pair(src: IpAddr, dst: IpAddr) -> IpPair {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 { src, dst },
        // Mixed families cannot arrive on one socket; checksum against the source.
        (IpAddr::V4(src), _) => IpPair::V4 { src, dst: src },
        (IpAddr::V6(src), _) => IpPair::V6 { src, dst: src },
    }
}

/// Decodes a received message. A v3 IPv4 unicast advert whose checksum fails is tried
/// once more with the multicast group in the pseudo-header, as keepalived before 1.3.6
/// computed it.
fn decode(
    version: &VersionConfig,
    msg: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> Result<Repr, crate::vrrp::packet::DecodeError> {
    let (pair, policy) = encode_policy(version, src, dst);
    let first = Repr::from_bytes(msg, &pair, policy);
    match (&first, src, dst) {
        (
            Err(crate::vrrp::packet::DecodeError::BadChecksum { .. }),
            IpAddr::V4(s),
            IpAddr::V4(d),
        ) if d != MULTICAST_V4 && matches!(version, VersionConfig::V3 { .. }) => Repr::from_bytes(
            msg,
            &IpPair::V4 {
                src: s,
                dst: MULTICAST_V4,
            },
            Checksum::Verify,
        )
        .or(first),
        _ => first,
    }
}
