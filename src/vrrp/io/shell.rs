//! The VRRP shell: drives one [`Instance`] with a raw socket, netlink and the clock.
//!
//! ```text
//!   ppoll(socket or doorbell, control, poll_timeout):
//!   VrrpSocket.try_recv --decode--> Instance.handle_advert --+
//!   deadline reached ------------> Instance.handle_timeout --+--> poll_action:
//!   Control::Serve (HealthView) -> Instance.handle_health ---+      SendAdvert -> encode per destination -> send_to
//!   Control::Handover (SIGTERM) -> Instance.handle_shutdown -+      AddVips / RemoveVips -> netlink
//!   Control::Reconfigure (reload) -> Instance.handle_reconfigure +   AddVip / RemoveVip -> netlink
//!                                                                 Announce -> GARP / NA (once; the machine repeats)
//!                                                                 StateChanged -> log, History.record; Exit -> return
//! ```
//!
//! Only this file touches time and sockets; every decision is the machine's.
//!
//! # A Backup reads adverts in batches
//!
//! In Backup an advert only moves the Master_Down deadline (it emits no action), and a
//! byte-identical repeat of the last advert processed, accepted with a non-zero priority,
//! can only move it later while the local priority stays the same (property test
//! `backup_adverts_act_on_nothing_but_the_deadline`). So a Backup that has such an advert
//! polls a [`Doorbell`] instead of the VRRP socket: a second raw socket whose BPF filter
//! drops exact repeats of it and wakes the thread for anything else. On every wakeup
//! (deadline, doorbell, control) the thread reads everything queued on the VRRP socket
//! and replays it in order, each datagram at its kernel receive time (`SO_TIMESTAMPNS`,
//! see [`arrival`]), firing first any timer that ran out before it. Decisions and their
//! instants are those of reading each advert as it arrives; a Backup at 10 ms adverts
//! wakes about once per Master_Down_Interval (~30 ms) instead of 100 times a second. A
//! health change forgets the template (the skew depends on the local priority), and
//! Master and Initialize poll the socket itself.
//!
//! Three guards (found in review): the kernel hands a datagram to the doorbell before
//! the VRRP socket, so a ring read before its datagram is in the socket, and every filter
//! change, make the thread watch the socket itself for 1 ms; a real-time clock step
//! between two batches makes the batch be handled at "now" as the datagrams are read,
//! without the stamps; and a batch reads at most 64 datagrams, so a flood cannot starve
//! timers and controls. A full batch makes the next turn read the socket itself again
//! (not sleep on the doorbell while the queue fills), and a Backup fires no timer at
//! "now" while datagrams that arrived earlier are still queued.
//!
//! # Floods of valid adverts
//!
//! The kernel filter drops what can never be accepted; a flood of *valid* adverts of
//! our VRID with a priority below ours passes it. A preempting Backup discards them
//! (RFC 9568 §6.4.2), and once it has discarded one they change nothing:
//! [`Instance::priority_floor`] says so, and the shell installs that floor in the
//! kernel filter of the socket and of the doorbell ([`VrrpSocket::set_priority_floor`]),
//! so the flood takes no queue space and the Active Router's adverts keep arriving.
//! A discarded advert never becomes the doorbell's template (the doorbell would sleep
//! through a flood of it while the queue filled, which is how 12,000 such adverts a
//! second moved the VIP). Adverts the machine drops are logged at most once a second.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::config::Vrrp;
use crate::events::{Change, History};
use crate::health::HealthView;
use crate::vrrp::io::announce::Announcer;
use crate::vrrp::io::socket::{Delivery, Doorbell, FilterTally, VrrpSocket, RECV_BUFFER_LEN};
use crate::vrrp::io::vip::{VipConfig, Vips};
use crate::vrrp::machine::{
    Action, ControlRefused, Instance, Posture, Reason, Received, ReconfigureRefused, State, Stats,
    SyncInput,
};
use crate::vrrp::packet::datagram::{self, Parser};
use crate::vrrp::packet::Repr;
use crate::vrrp::track::Tracked;
use crate::vrrp::units::Priority;

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

/// Why [`VrrpHandle::reconfigure`] did not apply a new `vrrp:` section. Nothing
/// changed: the instance runs on with the old section.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconfigureError {
    /// The VRID, the interface or the address family changed (what changed is in
    /// the message): another virtual router. The caller must replace the instance:
    /// hand it over (`handover`, wait for the election to end), then
    /// [`spawn_dedicated`] the new section
    /// ([`crate::config::diff::VrrpChange::Replace`]).
    #[error("vrrp: {0}: cannot apply in place; replace the instance (hand it over, then start the new one)")]
    Replace(String),
    /// The election refused the section (it does not validate, a handover is under
    /// way: retry after it, or the instance has exited).
    #[error("vrrp: {0}")]
    Refused(ReconfigureRefused),
    /// The socket for a new source address or new unicast peers could not be opened.
    #[error("vrrp: cannot open the VRRP socket on {interface} for the new section: {source}")]
    Socket {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// The interface's IPv6 link-local address (the source of IPv6 multicast adverts)
    /// could not be read.
    #[error("vrrp: cannot read the addresses of {interface}: {source}")]
    Netlink {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// The election thread did not answer in time (stalled) or has ended.
    #[error("vrrp: the election thread did not answer")]
    NoAnswer,
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
    /// Where the instance stands for its sync group (read by the group's coordinator).
    pub posture: Posture,
}

/// Everything the admin side shows about the election, read by the election thread
/// itself when asked (so reading it is also proof that the thread is alive).
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpReport {
    /// The current state.
    pub state: State,
    /// When it was entered, and why (`None` before the first change).
    pub since: Option<(SystemTime, Reason)>,
    /// The configured priority.
    pub priority: u8,
    /// The priority used and advertised now.
    pub effective_priority: u8,
    /// What lowers the priority now, if anything: `handover`, `maintenance` or
    /// `cannot_serve`.
    pub lowered_by: Option<&'static str>,
    /// Whether this node can serve (its track).
    pub can_serve: bool,
    /// `apivip handover` is in force (until `apivip resume`).
    pub maintenance: bool,
    /// A handover (shutdown or maintenance) is waiting for a new holder.
    pub handing_over: bool,
    /// The master as this node knows it.
    pub master: Option<IpAddr>,
    /// Other routers heard: address, priority, when last heard, adverts heard.
    pub peers: Vec<PeerReport>,
    /// Routers claiming master in the last three advert intervals, this one included.
    pub masters_heard: usize,
    /// Master_Adver_Interval.
    pub advert_interval: Duration,
    /// What this node waits as Backup before it declares the master down, for its
    /// priority now: Master_Down_Interval, longer after lost adverts.
    pub master_down_interval: Duration,
    /// What keeps the node out of the election (State::Fault), by name.
    pub faults: Vec<&'static str>,
    /// The machine's counters.
    pub stats: Stats,
    /// Datagrams the socket's kernel filter dropped (another VRID, TTL, version, a
    /// non-peer, below the priority floor), counted by [`FilterTally`].
    pub kernel_filtered: u64,
    /// State changes so far: (entered, reason, count).
    pub transitions: Vec<(State, Reason, u64)>,
}

/// One router heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// Its address (the source of its adverts).
    pub addr: IpAddr,
    /// The priority it advertised last.
    pub priority: u8,
    /// When it was heard last.
    pub last_heard: SystemTime,
    /// Adverts heard from it.
    pub adverts: u64,
}

#[cfg(test)]
impl VrrpHandle {
    /// A handle whose election thread never answers (it is stalled): the receiving
    /// end is returned and never read.
    pub(crate) fn stalled() -> (VrrpHandle, impl Sized) {
        let (tx, rx) = control_channel().expect("socket pair");
        let handle = VrrpHandle {
            name: "vrid-51".to_owned(),
            handover: CancellationToken::new(),
            status: Arc::new(ArcSwap::from_pointee(VrrpStatus {
                state: State::Backup,
                priority: 100,
                master: None,
                posture: Posture::Backup,
            })),
            status_changed: tokio::sync::watch::channel(()).1,
            control: Some(Arc::new(tx)),
            reconfigure: None,
        };
        (handle, rx)
    }
}

/// The running election's handle.
#[derive(Debug, Clone)]
pub struct VrrpHandle {
    /// The instance's name (`vrrp[].name`).
    pub name: String,
    /// Starts the planned handover (SIGTERM).
    pub handover: CancellationToken,
    /// Latest status.
    pub status: Arc<ArcSwap<VrrpStatus>>,
    /// Marked changed whenever `status` changes (the `STATUS=` line for systemd follows
    /// it without waking the election thread); closed when the thread has ended.
    pub status_changed: tokio::sync::watch::Receiver<()>,
    /// Requests to the election thread (reports, maintenance); set once it runs.
    control: Option<Arc<ControlTx>>,
    /// Reloads, through the task that forwards health (it owns the track).
    reconfigure: Option<tokio::sync::mpsc::UnboundedSender<ReconfigureRequest>>,
}

/// A reload on its way to the health forwarder of [`spawn_dedicated`].
#[derive(Debug)]
struct ReconfigureRequest {
    cfg: Vrrp,
    proxy_listening: bool,
    reply: tokio::sync::oneshot::Sender<Result<(), ReconfigureError>>,
}

impl VrrpHandle {
    /// Asks the election thread for a report; `None` if it does not answer within
    /// `bound` (stalled) or has ended.
    pub async fn report(&self, bound: Duration) -> Option<VrrpReport> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.control.as_ref()?.send(Control::Report(tx));
        tokio::time::timeout(bound, rx).await.ok()?.ok()
    }

    /// `apivip handover`: starts giving the VIP away (see
    /// [`Instance::handle_maintenance`]); `Err(None)` if the thread did not answer.
    pub async fn maintenance(&self, bound: Duration) -> Result<(), Option<ControlRefused>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.control
            .as_ref()
            .ok_or(None)?
            .send(Control::Maintenance(tx));
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(r)) => r.map_err(Some),
            _ => Err(None),
        }
    }

    /// Reload: applies a changed `vrrp:` section to the running election and returns
    /// once the election thread has applied it (VIPs added or removed, the advert
    /// with the new priority sent), or refused it, or `bound` passed
    /// ([`ReconfigureError::NoAnswer`]). Whether the VIPs stay is the machine's rule
    /// ([`Instance::handle_reconfigure`]): a Master keeps them unless a preempting
    /// node now has the higher priority, which takes them over as in a planned
    /// handover. `new.track` applies together with the rest: from now on this node's
    /// ability to serve is computed with it, and `proxy_listening` says whether the
    /// apiserver proxy listens after the reload. A changed VRID, interface or address
    /// family is [`ReconfigureError::Replace`]; nothing changes then, and the caller
    /// replaces the instance.
    ///
    /// Call it after the health view has the reloaded layout (a renumbered
    /// `Track::Backend` id is read against the view as it is at this call), and after
    /// every reload that replaced the health view, also with an unchanged section (a
    /// no-op then, apart from moving the track to the view's new generation; until
    /// then the tracked backend is found by its name).
    pub async fn reconfigure(
        &self,
        new: Vrrp,
        proxy_listening: bool,
        bound: Duration,
    ) -> Result<(), ReconfigureError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.reconfigure
            .as_ref()
            .ok_or(ReconfigureError::NoAnswer)?
            .send(ReconfigureRequest {
                cfg: new,
                proxy_listening,
                reply,
            })
            .map_err(|_| ReconfigureError::NoAnswer)?;
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(ReconfigureError::NoAnswer),
        }
    }

    /// Test-only fault injection: makes the election thread sleep for `pause` (at most
    /// [`MAX_STALL`]) as if it were stuck, so that tests can show `/healthz` failing and
    /// the systemd watchdog going quiet. Only the admin endpoint calls it, and only when
    /// the daemon was started with `APIVIP_FAULT_INJECTION=1`
    /// ([`crate::admin::FAULT_INJECTION_ENV`]). Returns whether the request was queued.
    pub fn stall_for_test(&self, pause: Duration) -> bool {
        match &self.control {
            Some(c) => {
                c.send(Control::Stall(pause.min(MAX_STALL)));
                true
            }
            None => false,
        }
    }

    /// Tells the election what its sync group wants of it (see [`crate::vrrp::sync`]);
    /// never waits. Returns whether the thread runs to hear it.
    pub fn sync(&self, input: SyncInput) -> bool {
        match &self.control {
            Some(c) => {
                c.send(Control::Sync(input));
                true
            }
            None => false,
        }
    }

    /// `apivip resume`: leaves maintenance; `Err(None)` if the thread did not answer.
    pub async fn resume(&self, bound: Duration) -> Result<(), Option<ControlRefused>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.control.as_ref().ok_or(None)?.send(Control::Resume(tx));
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(r)) => r.map_err(Some),
            _ => Err(None),
        }
    }
}

/// Prepares everything that can fail (socket, netlink, stale VIPs) before the election
/// starts, so `apivip run` fails fast with a clear error.
pub(crate) async fn start(cfg: &Vrrp) -> Result<Shell, VrrpError> {
    let netlink = |source| VrrpError::Netlink {
        interface: cfg.interface.clone(),
        source,
    };
    let label = format!("{}:apivip", cfg.interface);
    let label = (label.len() <= 15).then_some(label);
    let vips = bounded(Vips::new(&cfg.interface, label))
        .await
        .map_err(netlink)?;
    let configured = cfg.clone();
    let mut cfg = cfg.clone();
    // VRRPv3 over IPv6 multicast sends from the interface's link-local address
    // (RFC 9568 §5.1.2.1), which is then also the tie-break address.
    if let (IpAddr::V6(primary), None) = (cfg.instance.primary_ip, &cfg.instance.peers) {
        if !is_link_local(primary) {
            match bounded(vips.link_local_v6()).await.map_err(netlink)? {
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
    let socket = VrrpSocket::open_filtered(
        &cfg.interface,
        cfg.instance.primary_ip,
        delivery,
        kernel_filter(&cfg.instance),
    )
    .map_err(|source| VrrpError::Socket {
        interface: cfg.interface.clone(),
        source,
    })?;
    let doorbell = Doorbell::open(&socket).map_err(|source| VrrpError::Socket {
        interface: cfg.interface.clone(),
        source,
    })?;
    let tally = open_tally(&socket);
    let vip_list: Vec<VipConfig> = cfg
        .vips
        .iter()
        .map(|&(addr, prefix_len)| VipConfig { addr, prefix_len })
        .collect();
    // A VIP left by a crashed run would make two holders: remove it before electing.
    // Only apivip's own (its mark): an address an operator configured stays.
    let (stale, foreign) = bounded(vips.present_by_owner(&vip_list))
        .await
        .map_err(netlink)?;
    if !foreign.is_empty() {
        tracing::warn!(
            vips = ?foreign,
            interface = %cfg.interface,
            "a VIP is configured on the interface without apivip's mark (by an operator, or left by a run whose mark this kernel did not keep): apivip leaves it alone, and while it is there this node answers for it whatever the election decides"
        );
    }
    if !stale.is_empty() {
        tracing::warn!(vips = ?stale, "removing VIPs left on the interface by an earlier run");
        bounded(vips.remove(&vip_list)).await.map_err(netlink)?;
    }
    let mac = bounded(vips.mac()).await.map_err(netlink)?;
    let announcer = Announcer::new(&cfg.interface, vips.ifindex(), mac).map_err(netlink)?;
    let published = VrrpStatus {
        state: State::Initialize,
        priority: cfg.instance.base_priority.get(),
        master: None,
        posture: Posture::Stopped,
    };
    let status = Arc::new(ArcSwap::from_pointee(published.clone()));
    let (status_changed, _) = tokio::sync::watch::channel(());
    let destinations = socket.destinations();
    Ok(Shell {
        destinations,
        encoded: Vec::new(),
        encoded_for: None,
        cfg: cfg.clone(),
        configured,
        instance,
        socket,
        doorbell,
        repeat: None,
        armed: None,
        last_fed: Instant::now(),
        clocks: None,
        unmatched_rings: 0,
        watch_socket_until: None,
        doorbell_off: false,
        vips,
        vip_list,
        announcer,
        status,
        status_changed,
        published,
        parser: Parser::new(cfg.instance.version.version()),
        link: None,
        link_error: None,
        kernel_dropped: 0,
        drops_unlogged: 0,
        drops_logged_at: None,
        adverts_dropped_unlogged: 0,
        adverts_dropped_logged_at: None,
        floor_off: false,
        tally,
        tally_base: 0,
        handover: CancellationToken::new(),
        history: History::default(),
        transitions: Vec::new(),
    })
}

/// What the rest of the daemon tells the election thread.
#[derive(Debug)]
enum Control {
    /// This node's ability to serve changed.
    Serve(bool),
    /// SIGTERM: start the planned handover.
    Handover,
    /// Stop now, removing the VIPs.
    Abort,
    /// The admin side asks for a report (also the liveness probe of this thread).
    Report(tokio::sync::oneshot::Sender<VrrpReport>),
    /// `apivip handover`: give the VIP away, stay a Backup at priority 1.
    Maintenance(tokio::sync::oneshot::Sender<Result<(), ControlRefused>>),
    /// `apivip resume`: leave maintenance.
    Resume(tokio::sync::oneshot::Sender<Result<(), ControlRefused>>),
    /// Reload: apply this section; `serve` is this node's ability to serve by its
    /// new track. Answered once the actions it caused ran.
    Reconfigure {
        cfg: Box<Vrrp>,
        serve: bool,
        reply: tokio::sync::oneshot::Sender<Result<(), ReconfigureError>>,
    },
    /// Test-only fault injection: sleep this long (see [`VrrpHandle::stall_for_test`]).
    Stall(Duration),
    /// What this instance's sync group wants of it.
    Sync(SyncInput),
    /// The interface or its addresses may have changed (a netlink notification, or the
    /// periodic check): read them again.
    Link,
}

/// How long one netlink request may take before it counts as failed: the election
/// thread never waits longer on the kernel (a stuck netlink call would otherwise stall
/// adverts and timers).
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the interface is read even without a netlink notification (a missed
/// notification, a full netlink buffer, or the notification socket could not open).
const LINK_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `fut` (a netlink request), failing with `TimedOut` after [`NETLINK_TIMEOUT`].
async fn bounded<T>(
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match tokio::time::timeout(NETLINK_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "netlink did not answer within {}",
                crate::units::format_duration(NETLINK_TIMEOUT)
            ),
        )),
    }
}

/// The longest stall [`VrrpHandle::stall_for_test`] injects.
pub const MAX_STALL: Duration = Duration::from_secs(60);

/// The sending half of the control channel: a queue plus one byte on a socket pair, so
/// that the election thread, blocked in `ppoll`, wakes up.
struct ControlTx {
    queue: std::sync::mpsc::Sender<Control>,
    wake: UnixStream,
}

impl std::fmt::Debug for ControlTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlTx").finish_non_exhaustive()
    }
}

impl ControlTx {
    fn send(&self, c: Control) {
        if self.queue.send(c).is_ok() {
            // A full socket buffer means a wakeup is already pending: nothing is lost.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// The receiving half, read by the election thread.
struct ControlRx {
    queue: std::sync::mpsc::Receiver<Control>,
    wake: UnixStream,
}

impl ControlRx {
    /// Everything sent so far (the wake bytes are consumed first, so a control sent
    /// meanwhile wakes the next `ppoll`).
    fn drain(&self) -> Vec<Control> {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        self.queue.try_iter().collect()
    }
}

fn control_channel() -> std::io::Result<(ControlTx, ControlRx)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let (tx, rx) = std::sync::mpsc::channel();
    Ok((
        ControlTx { queue: tx, wake: a },
        ControlRx { queue: rx, wake: b },
    ))
}

/// Starts the election on a thread of its own, returning once the socket, netlink and
/// stale-VIP removal are done (or failed); the receiver completes when the election has
/// ended (handover done, or `abort`).
///
/// # Why a blocking `ppoll` loop and not a tokio task
///
/// At a 10 ms advert interval a node handles 100 adverts a second, and the issue's target
/// is keepalived's CPU. A tokio task (even alone on a current-thread runtime) spent about
/// twice keepalived's CPU per advert on the Backup: every wakeup runs the driver (epoll,
/// clock, timer wheel, the process driver's orphan check), schedules the task and polls
/// every `select!` branch, rebuilding the cancellation and watch futures. This thread
/// waits in `ppoll` on two descriptors, the VRRP socket and the control socket, with the
/// machine's next deadline as a nanosecond timeout: one `ppoll` and one `recvmsg` per
/// received advert, one `ppoll` and one `sendmsg` per sent one (keepalived: `epoll_wait`,
/// `recvmsg` twice, `timerfd_settime`), and timers exact to the microsecond instead of
/// tokio's millisecond. Health changes, the handover and the abort arrive over the
/// control channel from a small task on the caller's runtime, which computes
/// [`can_serve`] and forwards only changes. Netlink (adding and removing VIPs, rare) runs
/// on a current-thread runtime owned by this thread, with `block_on`.
pub async fn spawn_dedicated(
    cfg: Vrrp,
    mut health: HealthView,
    proxy_listening: bool,
    abort: CancellationToken,
    history: History,
) -> Result<(VrrpHandle, tokio::sync::oneshot::Receiver<()>), VrrpError> {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let interface = cfg.interface.clone();
    let thread_error = |source| VrrpError::Socket {
        interface: interface.clone(),
        source,
    };
    let (ctl_tx, ctl_rx) = control_channel().map_err(thread_error)?;
    let ctl_tx = Arc::new(ctl_tx);
    let tracked = Tracked::new(
        cfg.track.clone(),
        proxy_listening,
        &health.current_and_mark_seen(),
    );
    let serve = tracked.can_serve(&health.current());
    // Cancelled when the thread ends, whatever the reason: stops the forwarder below.
    let ended = CancellationToken::new();
    let ended_guard = ended.clone().drop_guard();
    let spawned = std::thread::Builder::new()
        .name("apivip-vrrp".into())
        .spawn(move || {
            let _ended = ended_guard;
            // Every log line of this election names its instance.
            let _span = tracing::info_span!("vrrp", instance = %cfg.name).entered();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
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
            match rt.block_on(start(&cfg)) {
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
                Ok(mut shell) => {
                    shell.history = history;
                    let _ = started_tx.send(Ok(shell.handle()));
                    shell.run(&rt, serve, &ctl_rx);
                }
            }
            let _ = done_tx.send(());
        });
    if let Err(source) = spawned {
        return Err(thread_error(source));
    }
    let mut handle = started_rx
        .await
        .map_err(|_| thread_error(std::io::Error::other("the VRRP thread ended during start")))??;
    handle.control = Some(Arc::clone(&ctl_tx));
    let (reconfigure_tx, mut reconfigure_rx) = tokio::sync::mpsc::unbounded_channel();
    handle.reconfigure = Some(reconfigure_tx);
    let handover = handle.handover.clone();
    let mut changes = match crate::vrrp::io::vip::watch_changes() {
        Ok(changes) => Some(changes),
        Err(e) => {
            tracing::warn!(error = %e, interval = %crate::units::format_duration(LINK_CHECK_INTERVAL), "vrrp: no netlink notifications of link and address changes; the interface is read periodically only");
            None
        }
    };
    let mut link_tick = tokio::time::interval(LINK_CHECK_INTERVAL);
    link_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::spawn(async move {
        use futures_util::{FutureExt, StreamExt};
        let mut tracked = tracked;
        let mut last = serve;
        let mut health_open = true;
        let mut handover_sent = false;
        loop {
            tokio::select! {
                _ = ended.cancelled() => return,
                _ = abort.cancelled() => {
                    ctl_tx.send(Control::Abort);
                    return;
                }
                Some(req) = reconfigure_rx.recv() => {
                    // The new track and the rest of the section apply together: the
                    // thread gets the ability to serve computed with the new track.
                    let snap = health.current();
                    let new_track = Tracked::new(req.cfg.track.clone(), req.proxy_listening, &snap);
                    let serve = new_track.can_serve(&snap);
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    ctl_tx.send(Control::Reconfigure {
                        cfg: Box::new(req.cfg),
                        serve,
                        reply,
                    });
                    let result = tokio::select! {
                        r = answer => r.unwrap_or(Err(ReconfigureError::NoAnswer)),
                        _ = ended.cancelled() => Err(ReconfigureError::NoAnswer),
                        _ = abort.cancelled() => {
                            ctl_tx.send(Control::Abort);
                            let _ = req.reply.send(Err(ReconfigureError::NoAnswer));
                            return;
                        }
                    };
                    if result.is_ok() {
                        tracked = new_track;
                        last = serve;
                    }
                    let _ = req.reply.send(result);
                }
                _ = handover.cancelled(), if !handover_sent => {
                    handover_sent = true;
                    ctl_tx.send(Control::Handover);
                }
                change = async { changes.as_mut()?.next().await }, if changes.is_some() => {
                    match change {
                        Some(()) => {
                            // One read covers a burst: take what is queued, then ask once.
                            while let Some(Some(())) = changes.as_mut().and_then(|c| c.next().now_or_never()) {}
                            tracing::debug!("vrrp: netlink: link or address change");
                            ctl_tx.send(Control::Link);
                        }
                        None => changes = None,
                    }
                }
                _ = link_tick.tick() => ctl_tx.send(Control::Link),
                changed = health.changed(), if health_open => match changed {
                    Some(snap) => {
                        let now = tracked.can_serve(&snap);
                        if now != last {
                            last = now;
                            ctl_tx.send(Control::Serve(now));
                        }
                    }
                    // The health publisher is gone: nothing will change any more.
                    None => health_open = false,
                },
            }
        }
    });
    Ok((handle, done_rx))
}

/// A prepared election, ready to [`Shell::run`].
pub(crate) struct Shell {
    /// The section in force, as run: for IPv6 multicast the primary address is the
    /// interface's link-local one.
    cfg: Vrrp,
    /// The section in force, as configured (what a reload is compared with).
    configured: Vrrp,
    instance: Instance,
    socket: VrrpSocket,
    /// Wakes a Backup for anything but a repeat of `armed` (see [`Doorbell`]).
    doorbell: Doorbell,
    /// The last datagram processed, if it was an advert a Backup accepted with a
    /// non-zero priority: a repeat of it can only move the Master_Down deadline later.
    repeat: Option<Vec<u8>>,
    /// The message the doorbell ignores now (`None`: it ignores nothing and rings for
    /// nothing, and the VRRP socket itself is polled).
    armed: Option<Vec<u8>>,
    /// The last instant handed to the machine: replayed receive times never go back.
    last_fed: Instant,
    /// The monotonic and real-time clocks as read for the last batch (step detection).
    clocks: Option<(Instant, SystemTime)>,
    /// Rings not yet matched by a datagram read from the socket.
    unmatched_rings: usize,
    /// Poll the socket itself until then (after a filter change, or a ring whose
    /// datagram was not in the socket yet).
    watch_socket_until: Option<Instant>,
    /// The kernel refused a filter once (e.g. `optmem_max` for a very long address
    /// list): poll the VRRP socket for every advert from then on.
    doorbell_off: bool,
    vips: Vips,
    vip_list: Vec<VipConfig>,
    announcer: Announcer,
    status: Arc<ArcSwap<VrrpStatus>>,
    /// Tells the runtime side that `status` changed (dropped with the thread: closed).
    status_changed: tokio::sync::watch::Sender<()>,
    /// What `status` holds (compared without touching the `ArcSwap`).
    published: VrrpStatus,
    /// Decodes received datagrams (keeps the last result: a Backup hears the same
    /// advert 100 times a second at 10 ms).
    parser: Parser,
    /// The interface as last read (logged when it changes).
    link: Option<crate::vrrp::machine::LinkState>,
    /// The last error reading it (logged once until it changes).
    link_error: Option<String>,
    /// The kernel's cumulative drop count (`SO_RXQ_OVFL`) as of the last datagram read
    /// from this socket.
    kernel_dropped: u32,
    /// Kernel drops not logged yet, and when the last line was (rate limit).
    drops_unlogged: u64,
    drops_logged_at: Option<Instant>,
    /// Adverts the machine dropped not logged yet, and when the last line was.
    adverts_dropped_unlogged: u64,
    adverts_dropped_logged_at: Option<Instant>,
    /// Setting the priority floor failed once: not tried again.
    floor_off: bool,
    /// Counts what the socket's kernel filter drops (`None`: it could not be opened).
    tally: Option<FilterTally>,
    /// What the tallies of sockets replaced since start counted.
    tally_base: u64,
    handover: CancellationToken,
    /// Where adverts go (the group, or each unicast peer), computed once.
    destinations: Vec<IpAddr>,
    /// The encoded advert for each destination, and the priority it carries.
    encoded: Vec<Vec<u8>>,
    encoded_for: Option<Priority>,
    /// State changes are recorded here for `apivip status`.
    history: History,
    /// State changes so far: (entered, reason, count); a handful of entries.
    transitions: Vec<(State, Reason, u64)>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("interface", &self.cfg.interface)
            .finish_non_exhaustive()
    }
}

/// What `ppoll` found ready.
struct Ready {
    /// The VRRP socket, or the doorbell while it is armed.
    socket: bool,
    control: bool,
}

/// Waits until the VRRP socket or the control socket is readable, or `deadline`
/// (`now` is the time read last, a few microseconds ago: the wait ends that much late at
/// most, for one clock read less per turn).
fn wait(
    socket: BorrowedFd<'_>,
    control: &UnixStream,
    now: Instant,
    deadline: Option<Instant>,
) -> Ready {
    use nix::poll::{ppoll, PollFd, PollFlags};
    let timeout = deadline.map(|d| {
        nix::sys::time::TimeSpec::from_duration(kernel_timeout(d.saturating_duration_since(now)))
    });
    let mut fds = [
        PollFd::new(socket, PollFlags::POLLIN),
        PollFd::new(control.as_fd(), PollFlags::POLLIN),
    ];
    match ppoll(&mut fds, timeout, None) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => {}
        Err(e) => {
            // Cannot happen with two valid descriptors; do not spin if it does.
            tracing::warn!(error = %e, "vrrp: ppoll failed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // POLLERR / POLLHUP count as readable: the next read reports what is wrong.
    let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
    Ready {
        socket: ready(&fds[0]),
        control: ready(&fds[1]),
    }
}

/// The default timer slack of a thread (`timer_slack_ns`).
const DEFAULT_SLACK: Duration = Duration::from_micros(50);

/// The timeout to give `ppoll` to wake up by `remaining` at the latest.
///
/// The kernel ends a `ppoll` timeout T anywhere in [T, T + slack], with slack =
/// max(50 us, T / 1000) (`select_estimate_accuracy` in fs/select.c): a 3.6 s
/// Master_Down_Interval (1 s adverts) could end 3.6 ms late. Up to 50 ms the slack is
/// the 50 us floor and the timeout is used as it is. A longer one is cut so that even
/// its latest end comes before the deadline; the loop finds the deadline not yet
/// reached and waits the rest, a few milliseconds with the 50 us slack. The extra
/// wakeup happens only when a long timer actually runs out (a Master's advert at
/// intervals over 50 ms, a Backup's takeover), never per received advert.
fn kernel_timeout(remaining: Duration) -> Duration {
    if remaining <= DEFAULT_SLACK * 1000 {
        remaining
    } else {
        remaining - remaining / 500 - DEFAULT_SLACK
    }
}

/// At most one log line about kernel drops per this interval.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// At most one debug line about adverts the machine dropped per this interval.
const DROPPED_ADVERT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many datagrams per batch (see [`Shell::receive_all`]).
const BATCH: usize = 64;

/// How long the socket itself is watched when the doorbell may have missed a datagram.
const SOCKET_WATCH: Duration = Duration::from_millis(1);

/// What [`Shell::receive_all`] did.
#[derive(Debug, Default)]
struct Batch {
    /// The machine said `Exit`.
    exit: bool,
    /// Datagrams read that the doorbell rang for (not the armed message).
    rang: usize,
    /// [`BATCH`] datagrams were read: more may be queued.
    full: bool,
}

/// Whether the real-time clock was stepped between two readings of both clocks: their
/// advances differ by more than 1 ms plus 0.1 % (NTP slews at most 0.05 %).
fn clock_stepped(n0: Instant, w0: SystemTime, n1: Instant, w1: SystemTime) -> bool {
    let Ok(wall) = w1.duration_since(w0) else {
        return true;
    };
    let mono = n1.saturating_duration_since(n0);
    wall.abs_diff(mono) > Duration::from_millis(1) + mono / 1000
}

/// The monotonic instant of a datagram the kernel stamped at `at` on the real-time clock,
/// read as `wall` at `now`: `now` less its age, never before `floor` (the last instant
/// the machine was given) nor after `now`; no stamp means `now`. A step of the real-time
/// clock would shift the ages: [`Shell::receive_all`] detects one ([`clock_stepped`])
/// and then does not use the stamps at all.
fn arrival(at: Option<SystemTime>, wall: SystemTime, now: Instant, floor: Instant) -> Instant {
    let age = at
        .and_then(|at| wall.duration_since(at).ok())
        .unwrap_or(Duration::ZERO);
    now.checked_sub(age)
        .unwrap_or(floor)
        .clamp(floor.min(now), now)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Shell {
    /// The handle to start a handover and read the status.
    pub(crate) fn handle(&self) -> VrrpHandle {
        VrrpHandle {
            name: self.cfg.name.clone(),
            handover: self.handover.clone(),
            status: self.status.clone(),
            status_changed: self.status_changed.subscribe(),
            control: None,
            reconfigure: None,
        }
    }

    /// Runs the election until the handover completes (or an abort, which removes the
    /// VIPs at once). Blocks the calling thread; `rt` runs the netlink requests. `serve`
    /// is this node's ability to serve at start.
    fn run(mut self, rt: &tokio::runtime::Runtime, serve: bool, control: &ControlRx) {
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        let mut now = Instant::now();
        self.last_fed = now;
        self.instance.handle_health(now, serve);
        if self.cfg.sync_group.is_some() {
            // A member waits for its group before it becomes Master.
            self.instance.handle_sync(now, SyncInput::WAIT);
        }
        // A node that starts with its link down starts in Fault.
        self.check_link(rt, now);
        self.instance.handle_startup(now);
        loop {
            if self.drain_actions(rt) {
                return;
            }
            self.apply_priority_floor(now);
            if self.arm_doorbell() {
                // A datagram the kernel was delivering while the filter changed may have
                // met the old filter and not yet be in the socket: read it now and watch
                // the socket itself for a moment before trusting the doorbell.
                now = Instant::now();
                self.watch_socket_until = Some(now + SOCKET_WATCH);
                if self.receive_all(rt, &mut buf, now, SystemTime::now()).exit {
                    return;
                }
                continue;
            }
            let mut deadline = self.instance.poll_timeout();
            let watching = self.armed.is_some() && self.watch_socket_until.is_some();
            if watching {
                deadline = earliest(deadline, self.watch_socket_until);
            }
            let doorbell = self.armed.is_some() && !watching;
            let fd = if doorbell {
                self.doorbell.as_fd()
            } else {
                self.socket.as_fd()
            };
            let ready = wait(fd, &control.wake, now, deadline);
            // The one clock read of this turn: every input below happened "now", except
            // datagrams, which carry their kernel receive time.
            now = Instant::now();
            let wall = SystemTime::now();
            if let Some(t) = &mut self.tally {
                t.drain();
            }
            if self.watch_socket_until.is_some_and(|t| t <= now) {
                // What rang and never reached the socket was dropped (a full buffer).
                self.watch_socket_until = None;
                self.unmatched_rings = 0;
            }
            let mut rings = 0;
            let mut backlog = false;
            if (doorbell && ready.socket) || watching {
                // The doorbell first: whatever rings after this is still to be read below,
                // or rings again (a ring after `ppoll` returned makes the next one return
                // at once).
                rings = self.doorbell.drain();
            }
            // Armed, the socket is read on every wakeup (deadline, doorbell, control):
            // the adverts queued since the last one are replayed before anything else.
            if self.armed.is_some() || ready.socket {
                let got = self.receive_all(rt, &mut buf, now, wall);
                if got.exit {
                    return;
                }
                // The kernel hands a datagram to the doorbell first (the newer socket) and
                // to the VRRP socket a moment later; a ring read before its datagram is in
                // the socket must not send the thread back to sleep on the doorbell.
                self.unmatched_rings = (self.unmatched_rings + rings).saturating_sub(got.rang);
                if rings > 0 && self.unmatched_rings > 0 {
                    self.watch_socket_until = Some(now + SOCKET_WATCH);
                }
                // More may be queued: read on next turn (after the controls) instead of
                // sleeping on the doorbell while the queue fills and the kernel drops
                // what arrives next, the Active Router's adverts among it.
                backlog = got.full;
                if backlog {
                    self.watch_socket_until = Some(now + SOCKET_WATCH);
                }
            }
            if ready.control {
                let mut link_changed = false;
                for c in control.drain() {
                    match c {
                        Control::Link => link_changed = true,
                        Control::Sync(input) => {
                            tracing::debug!(
                                may_master = input.may_master,
                                sibling_fault = input.sibling_fault,
                                "vrrp: sync group"
                            );
                            self.instance.handle_sync(now, input);
                        }
                        Control::Serve(serve) => {
                            tracing::info!(
                                can_serve = serve,
                                "vrrp: this node's ability to serve changed"
                            );
                            self.instance.handle_health(now, serve);
                            // The skew follows the local priority: a repeat of the last
                            // advert could now move the deadline earlier.
                            self.repeat = None;
                        }
                        Control::Handover => {
                            tracing::info!("vrrp: planned handover");
                            self.instance.handle_shutdown(now);
                        }
                        Control::Abort => {
                            if let Err(e) = rt.block_on(bounded(self.vips.remove(&self.vip_list))) {
                                tracing::error!(error = %e, "vrrp: cannot remove the VIPs");
                            }
                            return;
                        }
                        Control::Report(reply) => {
                            let _ = reply.send(self.report(now));
                        }
                        Control::Maintenance(reply) => {
                            let r = self.instance.handle_maintenance(now);
                            match &r {
                                Ok(()) => tracing::info!(
                                    state = %self.instance.state(),
                                    "vrrp: maintenance: giving the VIP away, priority 1 until resume"
                                ),
                                Err(e) => tracing::info!(reason = %e, "vrrp: maintenance refused"),
                            }
                            self.repeat = None;
                            let _ = reply.send(r);
                        }
                        Control::Reconfigure { cfg, serve, reply } => {
                            let r = self.reconfigure(rt, now, *cfg, serve);
                            let exit = match &r {
                                Ok(()) => self.drain_actions(rt),
                                Err(e) => {
                                    tracing::warn!(error = %e, "vrrp: reload not applied");
                                    false
                                }
                            };
                            let _ = reply.send(r);
                            if exit {
                                return;
                            }
                        }
                        Control::Resume(reply) => {
                            let r = self.instance.handle_resume(now);
                            match &r {
                                Ok(()) => tracing::info!(
                                    priority = self.instance.effective_priority().get(),
                                    "vrrp: maintenance over: priority restored"
                                ),
                                Err(e) => tracing::info!(reason = %e, "vrrp: resume refused"),
                            }
                            self.repeat = None;
                            let _ = reply.send(r);
                        }
                        Control::Stall(pause) => {
                            tracing::warn!(
                                pause = %crate::units::format_duration(pause),
                                "vrrp: fault injection: the election thread stalls on purpose (test-only)"
                            );
                            std::thread::sleep(pause);
                            tracing::warn!("vrrp: fault injection: the stall is over");
                        }
                    }
                }
                if link_changed {
                    self.check_link(rt, now);
                    if self.drain_actions(rt) {
                        return;
                    }
                }
            }
            // A Backup with datagrams still queued fires no timer at `now`: those
            // datagrams arrived before `now` and may move the Master_Down deadline; the
            // replay of the next batch fires each timer at its turn. A Master's timers
            // (its adverts) do not wait for the queue.
            let replaying = backlog && self.instance.state() == State::Backup;
            if !replaying && self.instance.poll_timeout().is_some_and(|d| d <= now) {
                self.instance.handle_timeout(now);
            }
            if !replaying || ready.control {
                self.last_fed = now;
            }
        }
    }

    /// Applies a reloaded section (see [`VrrpHandle::reconfigure`]) at `now`; the
    /// actions it causes stay queued for [`Shell::drain_actions`]. Whatever can fail
    /// (a new socket, the link-local address) is done before the machine is told, so
    /// a refusal changes nothing.
    fn reconfigure(
        &mut self,
        rt: &tokio::runtime::Runtime,
        now: Instant,
        mut new: Vrrp,
        serve: bool,
    ) -> Result<(), ReconfigureError> {
        if new == self.configured {
            // Nothing to apply; the ability to serve may still have changed (a new
            // health generation read with the same track).
            self.instance.handle_health(now, serve);
            return Ok(());
        }
        let old = &self.cfg;
        let mut replace = Vec::new();
        if new.interface != old.interface {
            replace.push(format!("interface {} -> {}", old.interface, new.interface));
        }
        if new.instance.vrid != old.instance.vrid {
            replace.push(format!(
                "vrid {} -> {}",
                old.instance.vrid, new.instance.vrid
            ));
        }
        if new.instance.family() != old.instance.family() {
            replace.push(format!(
                "address family of {} -> {}",
                old.instance.primary_ip, new.instance.primary_ip
            ));
        }
        if !replace.is_empty() {
            return Err(ReconfigureError::Replace(replace.join(", ")));
        }
        let configured = new.clone();
        let netlink = |source| ReconfigureError::Netlink {
            interface: self.cfg.interface.clone(),
            source,
        };
        // As at start: VRRPv3 over IPv6 multicast sends from the link-local address.
        if let (IpAddr::V6(primary), None) = (new.instance.primary_ip, &new.instance.peers) {
            if !is_link_local(primary) {
                let ll = match self.cfg.instance.primary_ip {
                    IpAddr::V6(current) if is_link_local(current) => Some(current),
                    _ => rt
                        .block_on(bounded(self.vips.link_local_v6()))
                        .map_err(netlink)?,
                };
                let ll = ll.ok_or_else(|| {
                    netlink(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no IPv6 link-local address to send VRRPv3 adverts from",
                    ))
                })?;
                new.instance.primary_ip = IpAddr::V6(ll);
            }
        }
        new.instance
            .validate()
            .map_err(|e| ReconfigureError::Refused(e.into()))?;
        // The kernel filter is fixed for a socket's life: a new version or VRID (the
        // VRID cannot change in place) needs a new socket too.
        let reopen = new.instance.primary_ip != self.cfg.instance.primary_ip
            || new.instance.peers != self.cfg.instance.peers
            || kernel_filter(&new.instance) != kernel_filter(&self.cfg.instance);
        let opened = if reopen {
            let socket_error = |source| ReconfigureError::Socket {
                interface: self.cfg.interface.clone(),
                source,
            };
            let delivery = match &new.instance.peers {
                Some(p) => Delivery::Unicast(p.clone()),
                None => Delivery::Multicast,
            };
            let socket = VrrpSocket::open_filtered(
                &self.cfg.interface,
                new.instance.primary_ip,
                delivery,
                kernel_filter(&new.instance),
            )
            .map_err(socket_error)?;
            let doorbell = Doorbell::open(&socket).map_err(socket_error)?;
            Some((socket, doorbell))
        } else {
            None
        };
        self.instance
            .handle_reconfigure(now, new.instance.clone())
            .map_err(ReconfigureError::Refused)?;
        if let Some((socket, doorbell)) = opened {
            self.use_socket(socket, doorbell);
        }
        let vip_list: Vec<VipConfig> = new
            .vips
            .iter()
            .map(|&(addr, prefix_len)| VipConfig { addr, prefix_len })
            .collect();
        if self.instance.state() == State::Master {
            // A VIP kept with another prefix length: the machine sees no change (it
            // knows addresses only). Replace it: removal goes by address.
            let reprefixed: Vec<VipConfig> = vip_list
                .iter()
                .filter(|n| {
                    self.vip_list
                        .iter()
                        .any(|o| o.addr == n.addr && o.prefix_len != n.prefix_len)
                })
                .copied()
                .collect();
            if !reprefixed.is_empty() {
                let r = rt.block_on(async {
                    bounded(self.vips.remove(&reprefixed)).await?;
                    bounded(self.vips.add(&reprefixed)).await
                });
                if let Err(e) = r {
                    tracing::error!(error = %e, "vrrp: cannot change the prefix length of a VIP");
                }
            }
        }
        self.vip_list = vip_list;
        tracing::info!(
            priority = new.instance.base_priority.get(),
            vips = ?new.vips,
            state = %self.instance.state(),
            "vrrp: reload applied"
        );
        self.history.push(
            crate::events::EventKind::Vrrp,
            format!("vrid {}: reconfigured", new.instance.vrid),
            "reload",
        );
        self.cfg = new;
        self.configured = configured;
        // What was cached from the old section: encoded adverts (priority, VIPs,
        // version), the last decoded datagram (version), the repeat a Backup may skip
        // (its skew).
        self.encoded.clear();
        self.encoded_for = None;
        self.parser.set_version(self.cfg.instance.version.version());
        self.repeat = None;
        self.instance.handle_health(now, serve);
        Ok(())
    }

    /// Reads the interface (by name) and its addresses, and tells the machine: a link
    /// fault takes the node out of the election, a VIP missing while Master is added
    /// back. A re-created interface (same name, new index) gets a new socket, netlink
    /// handle and announcer first. A failed read changes nothing (logged once).
    fn check_link(&mut self, rt: &tokio::runtime::Runtime, now: Instant) {
        let source = self.cfg.instance.primary_ip;
        let read = rt.block_on(bounded(self.vips.link_state(source)));
        let (mut state, index) = match read {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_string();
                if self.link_error.as_ref() != Some(&e) {
                    tracing::warn!(interface = %self.cfg.interface, error = %e, "vrrp: cannot read the interface; keeping the last known state");
                    self.link_error = Some(e);
                }
                return;
            }
        };
        self.link_error = None;
        if let Some(index) = index.filter(|&i| i != self.vips.ifindex()) {
            match self.reattach(rt, now) {
                Err(e) => {
                    tracing::warn!(interface = %self.cfg.interface, ifindex = index, error = %e, "vrrp: the interface was re-created but cannot be used yet; staying out of the election");
                    state.exists = false;
                }
                Ok(()) => {
                    tracing::info!(interface = %self.cfg.interface, ifindex = index, "vrrp: the interface was re-created: socket, netlink and announcer re-opened on it");
                    if self.cfg.instance.primary_ip != source {
                        // A new advert source (IPv6 link-local): is it there?
                        let source = self.cfg.instance.primary_ip;
                        if let Ok((now_state, _)) =
                            rt.block_on(bounded(self.vips.link_state(source)))
                        {
                            state = now_state;
                        }
                    }
                }
            }
        }
        if self.link != Some(state) {
            let faults = state.faults();
            if faults.is_empty() {
                tracing::info!(interface = %self.cfg.interface, "vrrp: interface usable (up, carrier, source address present)");
            } else {
                tracing::warn!(interface = %self.cfg.interface, %faults, exists = state.exists, up = state.up, carrier = state.carrier, source_present = state.source_present, "vrrp: interface fault: out of the election until it clears");
            }
            self.link = Some(state);
        }
        self.instance.handle_link(now, state);
        if self.instance.state() == State::Master {
            match rt.block_on(bounded(self.vips.present(&self.vip_list))) {
                Ok(present) => {
                    let missing: Vec<IpAddr> = self
                        .vip_list
                        .iter()
                        .map(|v| v.addr)
                        .filter(|a| !present.contains(a))
                        .collect();
                    if !missing.is_empty() {
                        tracing::warn!(vips = ?missing, interface = %self.cfg.interface, "vrrp: a VIP was removed from the interface while this node is master (by someone else): adding it back and announcing it");
                        self.history.push(
                            crate::events::EventKind::Vrrp,
                            format!("vrid {}: VIP restored", self.cfg.instance.vrid),
                            "vip_removed",
                        );
                        self.instance.handle_vips_missing(now);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "vrrp: cannot read the VIPs on the interface");
                }
            }
        }
    }

    /// Re-opens everything bound to the interface's index (after it was re-created).
    fn reattach(&mut self, rt: &tokio::runtime::Runtime, now: Instant) -> std::io::Result<()> {
        let vips = rt.block_on(bounded(self.vips.reopen()))?;
        let mac = rt.block_on(bounded(vips.mac()))?;
        let announcer = Announcer::new(&self.cfg.interface, vips.ifindex(), mac)?;
        let delivery = match &self.cfg.instance.peers {
            Some(p) => Delivery::Unicast(p.clone()),
            None => Delivery::Multicast,
        };
        // As at start: VRRPv3 over IPv6 multicast sends from the link-local address,
        // and a re-created interface has a new one (from its new MAC).
        let mut primary = self.cfg.instance.primary_ip;
        if let (IpAddr::V6(configured), None) = (
            self.configured.instance.primary_ip,
            &self.cfg.instance.peers,
        ) {
            if !is_link_local(configured) {
                let ll = rt.block_on(bounded(vips.link_local_v6()))?.ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no IPv6 link-local address on it yet",
                    )
                })?;
                primary = IpAddr::V6(ll);
            }
        }
        let socket = VrrpSocket::open_filtered(
            &self.cfg.interface,
            primary,
            delivery,
            kernel_filter(&self.cfg.instance),
        )?;
        let doorbell = Doorbell::open(&socket)?;
        self.use_socket(socket, doorbell);
        self.repeat = None;
        self.vips = vips;
        self.announcer = announcer;
        if primary != self.cfg.instance.primary_ip {
            let mut instance = self.cfg.instance.clone();
            instance.primary_ip = primary;
            match self.instance.handle_reconfigure(now, instance.clone()) {
                Ok(()) => {
                    tracing::info!(from = %self.cfg.instance.primary_ip, to = %primary, "vrrp: adverts now go from the re-created interface's link-local address");
                    self.cfg.instance = instance;
                    self.encoded.clear();
                    self.encoded_for = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, to = %primary, "vrrp: cannot take the re-created interface's link-local address as the advert source yet");
                }
            }
        }
        Ok(())
    }

    /// Switches to a newly opened socket and its doorbell. The new doorbell rings for
    /// nothing; the socket itself is polled until a repeat is known again.
    fn use_socket(&mut self, socket: VrrpSocket, doorbell: Doorbell) {
        self.tally_base += self.tally.as_mut().map_or(0, FilterTally::drain);
        self.tally = open_tally(&socket);
        self.kernel_dropped = 0;
        self.destinations = socket.destinations();
        self.socket = socket;
        self.doorbell = doorbell;
        self.armed = None;
        self.watch_socket_until = None;
        self.unmatched_rings = 0;
        self.doorbell_off = false;
    }

    /// Points the doorbell at the advert a Backup may skip, or silences it; true if its
    /// filter changed.
    fn arm_doorbell(&mut self) -> bool {
        let want = match self.instance.state() {
            State::Backup if !self.doorbell_off => self.repeat.as_deref(),
            State::Backup | State::Initialize | State::Master | State::Fault => None,
        };
        if want == self.armed.as_deref() {
            return false;
        }
        let set = match want {
            Some(msg) => self.doorbell.ring_unless(msg),
            None => self.doorbell.silence(),
        };
        match set {
            Ok(()) => self.armed = want.map(<[u8]>::to_vec),
            Err(e) => {
                // Poll the socket for every advert instead; say so once.
                tracing::warn!(
                    error = %e,
                    "vrrp: cannot set the doorbell filter; the Backup reads every advert as it arrives"
                );
                self.doorbell_off = true;
                self.repeat = None;
                self.armed = None;
                let _ = self.doorbell.silence();
            }
        }
        if self.armed.is_none() {
            self.doorbell.drain();
        }
        true
    }

    /// Reads and handles the queued datagrams in arrival order (at most [`BATCH`], so a
    /// flood cannot starve timers and controls: the socket stays readable and the next
    /// turn goes on), each at its kernel receive time, firing the timers that ran out
    /// before it first. `now` and `wall` are the two clocks read together.
    ///
    /// If the real-time clock was stepped since the last batch, receive times cannot be
    /// trusted: this batch is handled at `now`, each datagram before any timer, as if it
    /// had just arrived.
    fn receive_all(
        &mut self,
        rt: &tokio::runtime::Runtime,
        buf: &mut [u8],
        now: Instant,
        wall: SystemTime,
    ) -> Batch {
        let stepped = self
            .clocks
            .is_some_and(|(n0, w0)| clock_stepped(n0, w0, now, wall));
        self.clocks = Some((now, wall));
        let mut batch = Batch {
            full: true,
            ..Batch::default()
        };
        for _ in 0..BATCH {
            match self.socket.try_recv(buf) {
                Ok(rx) => {
                    let msg = &buf[..rx.len];
                    if self.armed.as_deref() != Some(msg) {
                        batch.rang += 1;
                    }
                    let at = if stepped {
                        now
                    } else {
                        let at = arrival(rx.at, wall, now, self.last_fed);
                        while let Some(due) = self.instance.poll_timeout().filter(|&d| d <= at) {
                            let due = due.max(self.last_fed);
                            self.instance.handle_timeout(due);
                            self.last_fed = due;
                            if self.drain_actions(rt) {
                                batch.exit = true;
                                return batch;
                            }
                        }
                        at
                    };
                    self.last_fed = at;
                    let dropped = rx.dropped.wrapping_sub(self.kernel_dropped);
                    if dropped > 0 {
                        self.kernel_dropped = rx.dropped;
                        self.drops_unlogged += u64::from(dropped);
                        // A flood must not flood the journal: one line per interval.
                        if self
                            .drops_logged_at
                            .is_none_or(|t| now >= t + DROP_LOG_INTERVAL)
                        {
                            tracing::warn!(dropped = self.drops_unlogged, "vrrp: the kernel dropped datagrams on the VRRP socket (receive buffer full: a flood?); a backup waits at most one more master-down interval");
                            self.drops_unlogged = 0;
                            self.drops_logged_at = Some(now);
                        }
                        self.instance.handle_rx_dropped(at, u64::from(dropped));
                    }
                    self.on_packet(at, &buf[..rx.len], rx.src, rx.dst, rx.ttl_or_hop_limit);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    batch.full = false;
                    break;
                }
                // An unreadable datagram is consumed: go on.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::debug!(error = %e, "vrrp: datagram dropped");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "vrrp: receive failed");
                    std::thread::sleep(Duration::from_millis(10));
                    batch.full = false;
                    break;
                }
            }
        }
        batch
    }

    fn on_packet(&mut self, now: Instant, msg: &[u8], src: IpAddr, dst: IpAddr, ttl: u8) {
        let result = self.parser.parse(msg, src, dst);
        let priority = result.as_ref().ok().map(Repr::priority);
        let rx = Received {
            src,
            ttl_or_hop_limit: ttl,
            result,
        };
        match self.instance.handle_advert(now, rx) {
            // Discarded (below the priority floor): it changed nothing, the template
            // stays. A discarded advert must not become the template: the doorbell would
            // then sleep through a flood of it while the queue fills.
            Ok(())
                if priority.is_some_and(|p| {
                    self.instance
                        .priority_floor(now)
                        .is_some_and(|floor| !p.is_resign() && p < floor)
                }) => {}
            // Not while lingering: the new Master's next advert (a repeat) releases
            // the VIPs, so the doorbell must not sleep through it.
            Ok(())
                if self.instance.state() == State::Backup
                    && !self.instance.holds_vips()
                    && priority.is_some_and(|p| !p.is_resign()) =>
            {
                if self.repeat.as_deref() != Some(msg) {
                    self.repeat = Some(msg.to_vec());
                }
            }
            Ok(()) => self.repeat = None,
            Err(reason) => {
                self.repeat = None;
                // One line per interval: datagrams past the kernel filter that the
                // machine drops can come as a flood too.
                self.adverts_dropped_unlogged += 1;
                if self
                    .adverts_dropped_logged_at
                    .is_none_or(|t| now >= t + DROPPED_ADVERT_LOG_INTERVAL)
                {
                    tracing::debug!(%src, ?reason, dropped = self.adverts_dropped_unlogged, "vrrp: advert dropped (count since the last line)");
                    self.adverts_dropped_unlogged = 0;
                    self.adverts_dropped_logged_at = Some(now);
                }
            }
        }
    }

    /// Installs the machine's priority floor ([`Instance::priority_floor`]) in the VRRP
    /// socket's kernel filter and the doorbell's guard when it changed, so that a flood of
    /// adverts the machine would discard never takes receive-queue space.
    fn apply_priority_floor(&mut self, now: Instant) {
        let want = self.instance.priority_floor(now).map(|p| p.get());
        if want == self.socket.priority_floor() || self.floor_off {
            return;
        }
        if let Err(e) = self.socket.set_priority_floor(want) {
            // The election stays exact without it (the machine discards those adverts);
            // only a flood of them can crowd out the Active Router's.
            tracing::warn!(error = %e, "vrrp: cannot set the priority floor in the kernel filter; lower-priority adverts are read and discarded");
            self.floor_off = true;
            return;
        }
        self.doorbell.set_priority_floor(want);
        if let Some(t) = &mut self.tally {
            if let Err(e) = t.set_priority_floor(want) {
                tracing::debug!(error = %e, "vrrp: the filter tally keeps the previous floor");
            }
        }
        if self.armed.is_some() {
            // Re-armed by `arm_doorbell` with the new guard.
            self.armed = None;
            let _ = self.doorbell.silence();
        }
    }

    /// Runs the queued actions; true once the machine said `Exit`.
    fn drain_actions(&mut self, rt: &tokio::runtime::Runtime) -> bool {
        while let Some(action) = self.instance.poll_action() {
            match action {
                Action::SendAdvert { priority } => self.send(priority),
                Action::AddVips => {
                    // Added, then confirmed: an address the kernel did not keep (the
                    // interface went away meanwhile) is a failure too.
                    let added = rt.block_on(async {
                        bounded(self.vips.add(&self.vip_list)).await?;
                        bounded(self.vips.present(&self.vip_list)).await
                    });
                    let missing: Vec<IpAddr> = match &added {
                        Ok(present) => self
                            .vip_list
                            .iter()
                            .map(|v| v.addr)
                            .filter(|a| !present.contains(a))
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    if let Err(e) = &added {
                        tracing::error!(error = %e, "vrrp: cannot add the VIPs: leaving the election (fault) so that another node takes them");
                        self.instance.handle_vip_add_failed(Instant::now());
                    } else if !missing.is_empty() {
                        tracing::error!(vips = ?missing, "vrrp: the VIPs were added but are not on the interface: leaving the election (fault) so that another node takes them");
                        self.instance.handle_vip_add_failed(Instant::now());
                    }
                }
                Action::RemoveVips => {
                    if self.instance.state() == State::Backup {
                        tracing::info!(vips = ?self.cfg.vips, "vrrp: releasing the VIPs kept after losing them to a higher priority");
                    }
                    if let Err(e) = rt.block_on(bounded(self.vips.remove(&self.vip_list))) {
                        tracing::error!(error = %e, "vrrp: cannot remove the VIPs");
                    }
                }
                Action::AddVip { addr } => {
                    let vip = self.vip_list.iter().find(|v| v.addr == addr).copied();
                    let vip = vip.unwrap_or(VipConfig {
                        addr,
                        prefix_len: if addr.is_ipv4() { 32 } else { 128 },
                    });
                    match rt.block_on(bounded(self.vips.add(&[vip]))) {
                        Ok(()) => tracing::info!(%addr, "vrrp: reload: VIP added"),
                        Err(e) => tracing::error!(%addr, error = %e, "vrrp: cannot add a VIP"),
                    }
                }
                Action::RemoveVip { addr } => {
                    // Removed whatever its prefix length.
                    let vip = VipConfig {
                        addr,
                        prefix_len: if addr.is_ipv4() { 32 } else { 128 },
                    };
                    match rt.block_on(bounded(self.vips.remove(&[vip]))) {
                        Ok(()) => tracing::info!(%addr, "vrrp: reload: VIP removed"),
                        Err(e) => tracing::error!(%addr, error = %e, "vrrp: cannot remove a VIP"),
                    }
                }
                Action::Announce => self.announce(),
                Action::StateChanged { from, to, reason } => {
                    tracing::info!(?from, ?to, ?reason, vips = ?self.cfg.vips, "vrrp: state changed");
                    // Never waits: the notify hooks read it from a broadcast.
                    self.history.record(
                        Change::Vrrp {
                            instance: self.cfg.name.clone(),
                            vrid: self.cfg.instance.vrid.get(),
                            from,
                            to,
                            priority: self.instance.advertised_priority().get(),
                        },
                        reason.as_str(),
                    );
                    match self
                        .transitions
                        .iter_mut()
                        .find(|(s, r, _)| *s == to && *r == reason)
                    {
                        Some(t) => t.2 += 1,
                        None => self.transitions.push((to, reason, 1)),
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
    fn publish(&mut self) {
        let now = VrrpStatus {
            state: self.instance.state(),
            priority: self.instance.advertised_priority().get(),
            master: self.instance.master_ip(),
            posture: self.instance.posture(),
        };
        if self.published != now {
            self.status.store(Arc::new(now.clone()));
            self.published = now;
            // Never blocks: marks every receiver changed.
            self.status_changed.send_replace(());
        }
    }

    /// The report for the admin side, at `now` (instants become wall-clock times).
    fn report(&self, now: Instant) -> VrrpReport {
        let wall = SystemTime::now();
        let at = |i: Instant| {
            wall.checked_sub(now.saturating_duration_since(i))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        let m = &self.instance;
        let lowered_by = if m.is_handing_over() {
            Some("handover")
        } else if m.in_maintenance() {
            Some("maintenance")
        } else if !m.can_serve() && m.effective_priority() < m.config().base_priority {
            Some("cannot_serve")
        } else {
            None
        };
        VrrpReport {
            state: m.state(),
            since: m.last_change().map(|c| (at(c.at), c.reason)),
            priority: m.config().base_priority.get(),
            effective_priority: m.advertised_priority().get(),
            lowered_by,
            can_serve: m.can_serve(),
            maintenance: m.in_maintenance(),
            handing_over: m.is_handing_over(),
            master: m.master_ip(),
            peers: m
                .peers()
                .iter()
                .map(|p| PeerReport {
                    addr: p.addr,
                    priority: p.priority.get(),
                    last_heard: at(p.last_heard),
                    adverts: p.adverts,
                })
                .collect(),
            masters_heard: m.masters_heard(now),
            advert_interval: m.master_adver_interval(),
            master_down_interval: m.backup_down_interval(),
            faults: m.faults().iter().map(|f| f.as_str()).collect(),
            stats: *m.stats(),
            kernel_filtered: self.tally_base + self.tally.as_ref().map_or(0, FilterTally::count),
            transitions: self.transitions.clone(),
        }
    }

    fn announce(&self) {
        let ips: Vec<IpAddr> = self.vip_list.iter().map(|v| v.addr).collect();
        if let Err(e) = self.announcer.announce(&ips) {
            tracing::warn!(error = %e, "vrrp: announcing the VIPs failed");
        }
    }

    /// Sends the advert with `priority` to every destination. The encoded messages are
    /// kept: an advert is a function of the configuration and the priority alone, so the
    /// Master encodes once and then only sends (100 times a second at 10 ms).
    fn send(&mut self, priority: Priority) {
        if self.encoded_for != Some(priority) {
            let repr = self.instance.advert(priority);
            let len = repr.buffer_len();
            self.encoded.clear();
            for &dst in &self.destinations {
                let (pair, policy) = datagram::policy(
                    self.cfg.instance.version.version(),
                    self.cfg.instance.primary_ip,
                    dst,
                );
                let mut msg = vec![0u8; len];
                repr.emit(
                    &mut crate::vrrp::packet::Packet::new_unchecked(&mut msg[..], repr.family()),
                    &pair,
                    policy,
                );
                self.encoded.push(msg);
            }
            self.encoded_for = Some(priority);
        }
        for (msg, &dst) in self.encoded.iter().zip(&self.destinations) {
            if let Err(e) = self.socket.send_to(msg, dst) {
                tracing::warn!(%dst, error = %e, "vrrp: sending an advert failed");
            }
        }
    }
}

/// What the VRRP socket's kernel filter admits for `instance` (its version and VRID;
/// the peers come with the delivery).
fn kernel_filter(
    instance: &crate::vrrp::machine::InstanceConfig,
) -> crate::vrrp::io::socket::Filter {
    crate::vrrp::io::socket::Filter {
        version: instance.version.version(),
        vrid: instance.vrid,
    }
}

fn is_link_local(ip: std::net::Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The tally of `socket`'s kernel filter; a failure is logged and leaves it uncounted.
fn open_tally(socket: &VrrpSocket) -> Option<FilterTally> {
    match FilterTally::open(socket) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "vrrp: cannot count what the kernel filter drops (apivip_vrrp_kernel_filtered_total stays 0)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The latest end of a `ppoll` timeout T, per fs/select.c.
    fn latest_end(t: Duration) -> Duration {
        t + (t / 1000).max(DEFAULT_SLACK)
    }

    #[test]
    fn clock_steps_are_told_from_slew() {
        let n0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ms = Duration::from_millis;
        // Same advance, or NTP's slew (0.05 %) over a minute: no step.
        assert!(!clock_stepped(n0, w0, n0 + ms(30), w0 + ms(30)));
        assert!(!clock_stepped(n0, w0, n0 + ms(60_000), w0 + ms(60_030)));
        assert!(!clock_stepped(n0, w0, n0 + ms(60_000), w0 + ms(59_970)));
        // A step forward or back, even a small one over a short wait.
        assert!(clock_stepped(n0, w0, n0 + ms(30), w0 + ms(158)));
        assert!(clock_stepped(n0, w0, n0 + ms(30), w0 + ms(28)));
        assert!(clock_stepped(n0, w0, n0 + ms(30), w0 - ms(100)));
    }

    #[test]
    fn arrival_is_now_less_the_age_within_the_floor_and_now() {
        let now = Instant::now() + Duration::from_secs(100);
        let floor = now - Duration::from_millis(40);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |ms| Some(wall - Duration::from_millis(ms));
        assert_eq!(
            arrival(ago(25), wall, now, floor),
            now - Duration::from_millis(25)
        );
        assert_eq!(arrival(ago(0), wall, now, floor), now);
        // Older than the floor (a clock step forward): the floor.
        assert_eq!(arrival(ago(41), wall, now, floor), floor);
        assert_eq!(arrival(ago(100_000_000), wall, now, floor), floor);
        // In the future (a step back): now. No stamp: now.
        let ahead = Some(wall + Duration::from_millis(5));
        assert_eq!(arrival(ahead, wall, now, floor), now);
        assert_eq!(arrival(None, wall, now, floor), now);
        // A floor after now (cannot happen) does not panic; now wins.
        assert_eq!(
            arrival(ago(1), wall, now, now + Duration::from_secs(1)),
            now
        );
    }

    #[test]
    fn long_waits_end_by_the_deadline_and_short_ones_are_untouched() {
        for ms in [0u64, 1, 10, 36, 50] {
            let r = Duration::from_millis(ms);
            assert_eq!(kernel_timeout(r), r, "{ms} ms");
        }
        for us in (50_001..20_000_000u64).step_by(7_919) {
            let r = Duration::from_micros(us);
            let t = kernel_timeout(r);
            assert!(
                latest_end(t) <= r,
                "{r:?}: {t:?} may end at {:?}",
                latest_end(t)
            );
            // Not absurdly early: within 0.3 % + 50 us of the deadline.
            assert!(r - t <= r * 3 / 1000 + DEFAULT_SLACK, "{r:?}: {t:?}");
        }
        // 1 s adverts, priority 100: Master_Down_Interval 3.609375 s.
        let mdi = Duration::from_micros(3_609_375);
        assert!(latest_end(kernel_timeout(mdi)) <= mdi);
    }
}
