//! The VRRP socket: one raw IP protocol 112 socket per instance, for receiving and sending
//! advertisements on one interface (RFC 9568 §5.1, §7.1).
//!
//! What the socket does, and why:
//! - **Bound to the interface** with `SO_BINDTODEVICE`, never to an address: an IPv4 raw
//!   socket bound to a unicast address stops receiving 224.0.0.18 (measured, see
//!   TESTING.md). The source of what we send is chosen per message with `IP_PKTINFO` /
//!   `IPV6_PKTINFO` (`ipi_spec_dst` / `ipi6_addr` = `primary`), and multicast leaves through
//!   `IP_MULTICAST_IF` / `IPV6_MULTICAST_IF` = the interface.
//! - **TTL / hop limit 255** on everything sent, unicast and multicast (RFC 9568 §5.1.1.3,
//!   §5.1.2.3); multicast loopback off, so we never hear ourselves.
//! - **Receive metadata**: IPv4 hands the whole datagram over, header included, so source,
//!   destination and TTL come from the header ([`Ipv4Meta::split`]). IPv6 hands over only the
//!   payload: the source is the peer address of `recvmsg`, the hop limit comes from the
//!   `IPV6_HOPLIMIT` control message and the destination from `IPV6_PKTINFO`.
//! - **Checksums are ours on both families** (the codec's [`crate::vrrp::packet::Checksum::Verify`], chosen
//!   by [`crate::vrrp::packet::datagram::policy`]). The kernel could fill and verify the IPv6 one with
//!   `IPV6_CHECKSUM` at offset 6, but neither socket2 nor nix exposes that option and this
//!   crate forbids `unsafe`. It changes nothing on the wire: the sender knows its own source
//!   (it sets it with `IPV6_PKTINFO`) and destination, the receiver gets both from
//!   `recvmsg`, and the codec computes the RFC 9568 pseudo-header checksum.
//!
//! Multicast membership: [`Delivery::Multicast`] joins 224.0.0.18 or ff02::12 on the
//! interface; [`Delivery::Unicast`] joins nothing and sends to each peer.
//!
//! # Flood resistance
//!
//! A raw socket receives every protocol 112 datagram that reaches the interface for this
//! host, and a flood of them (any VRID, any TTL, from anywhere routed in unicast mode) must
//! neither starve the genuine adverts in the receive queue nor keep the election thread
//! busy. So:
//! - **A kernel filter** ([`VrrpSocket::open_filtered`], program [`accept_filter`]) drops
//!   before queueing what the election can never accept (RFC 9568 §7.1): TTL / hop limit
//!   not 255, a first byte other than this instance's Version with Type ADVERTISEMENT,
//!   another VRID, and in unicast mode a source that is not a peer. A dropped datagram
//!   costs no receive-buffer space, no wakeup and no syscall. The filter is a first line
//!   only: the machine still makes every check itself ([`VrrpSocket::open`] has no
//!   filter at all). On IPv4 the filter sees the whole datagram, header first; on IPv6 it
//!   sees only the VRRP message (the raw socket's data starts after the IPv6 header,
//!   and the hop limit reaches `recvmsg` only as a control message), so it reads the
//!   hop limit and the source from the IPv6 header through the kernel's `SKF_NET_OFF`
//!   window (a load at `SKF_NET_OFF + n` reads byte `n` of the network header).
//! - **A 1 MiB receive buffer** ([`RECV_BUFFER_BYTES`]; `SO_RCVBUFFORCE` with
//!   `CAP_NET_ADMIN`, else `SO_RCVBUF`, which the kernel caps at `net.core.rmem_max`):
//!   what gets past the filter has room while the election thread is busy.
//! - **Drops are reported** (`SO_RXQ_OVFL`): every datagram carries the kernel's
//!   cumulative count of datagrams this socket dropped for want of buffer space
//!   ([`Received::dropped`]); a rise between two datagrams means adverts may have been
//!   lost between them. Datagrams the filter drops are not in that count (they were
//!   never wanted); a [`FilterTally`] counts them.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};

use crate::vrrp::packet::{
    IpPair, Ipv4Meta, MsgType, Version, IP_PROTOCOL, MULTICAST_V4, MULTICAST_V6, TTL,
};
use crate::vrrp::units::Vrid;

/// The IPv4 precedence "internetwork control" (DSCP CS6), as keepalived marks adverts.
const TOS_INTERNETWORK_CONTROL: u32 = 0xc0;

/// A receive buffer large enough for any advertisement with its IPv4 header: at most 60
/// bytes of header and 8 + 255 · 16 bytes of VRRP message.
pub const RECV_BUFFER_LEN: usize = 60 + 8 + 255 * 16;

/// The receive buffer [`VrrpSocket::open`] asks the kernel for: 1 MiB, room for several
/// hundred queued datagrams (each costs its buffer's true size, about 1-2 KiB, not its
/// length) while the election thread is busy or a flood gets past the filter.
pub const RECV_BUFFER_BYTES: usize = 1 << 20;

/// What the kernel filter of [`VrrpSocket::open_filtered`] admits: this instance's
/// protocol version and virtual router. With the TTL / hop limit (always 255) and, in
/// unicast mode, the peers of [`Delivery::Unicast`], these are the receive checks of
/// RFC 9568 §7.1 that need no state: a datagram failing one can never be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// The Version nibble the instance sends and accepts (2 or 3).
    pub version: Version,
    /// The instance's virtual router.
    pub vrid: Vrid,
}

/// Where adverts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// To 224.0.0.18 or ff02::12; the socket joins the group on the interface.
    Multicast,
    /// To each of these peers (keepalived `unicast_peer`); no group is joined. Every peer
    /// has the family of `primary`.
    Unicast(Vec<IpAddr>),
}

/// One received datagram of IP protocol 112.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The sender (for IPv6 normally its link-local address).
    pub src: IpAddr,
    /// 224.0.0.18 / ff02::12, or this node's address for unicast.
    pub dst: IpAddr,
    /// The IPv4 TTL or IPv6 hop limit; must be 255 (RFC 9568 §7.1), the caller checks it.
    pub ttl_or_hop_limit: u8,
    /// Length of the VRRP message now at the start of the caller's buffer (IPv4 header
    /// already stripped).
    pub len: usize,
    /// When the kernel received it (`SO_TIMESTAMPNS`, the real-time clock), if it said.
    pub at: Option<SystemTime>,
    /// How many datagrams the kernel had dropped on this socket for want of receive
    /// buffer space when it queued this one (`SO_RXQ_OVFL`): cumulative since the socket
    /// was opened, wrapping at `u32::MAX` (compare with `wrapping_sub`). A rise since the
    /// previous datagram means datagrams were lost between the two, genuine adverts
    /// possibly among them. Drops after the last queued datagram show on the next one.
    /// Datagrams the kernel filter drops are not in it ([`FilterTally`] counts those).
    pub dropped: u32,
}

impl Received {
    /// The addresses for the VRRPv3 pseudo-header, for [`crate::vrrp::packet::Repr::from_bytes`].
    /// `None` if source and destination differ in family (cannot happen on one socket).
    pub fn ip_pair(&self) -> Option<IpPair> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(IpPair::V4 { src, dst }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(IpPair::V6 { src, dst }),
            _ => None,
        }
    }
}

/// A raw IP protocol 112 socket on one interface, non-blocking and not tied to any
/// runtime: the VRRP shell waits on it with `ppoll` (see `shell.rs` for why). See the
/// module docs.
#[derive(Debug)]
pub struct VrrpSocket {
    fd: Socket,
    /// The control-message buffer of `recvmsg`, kept between calls (a Backup receives
    /// 100 adverts a second at 10 ms).
    cmsg: std::cell::RefCell<Vec<u8>>,
    ifindex: u32,
    primary: IpAddr,
    delivery: Delivery,
    /// The kernel filter attached, if any (the [`Doorbell`] applies it too).
    filter: Option<Filter>,
    /// The priority floor in the kernel filter ([`VrrpSocket::set_priority_floor`]).
    floor: Option<u8>,
}

/// `EPERM`/`EACCES` -> a message naming the capability; anything else with `what`.
fn context(e: io::Error, what: &str, capability: &str) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} needs {capability} (run as root or grant the capability): {e}"),
        ),
        _ => io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}

/// The index of interface `ifname`, with a clear error if there is none.
pub(crate) fn ifindex_of(ifname: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(ifname).map_err(|e| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {ifname:?} not found: {e}"),
        )
    })
}

/// A non-blocking raw IP protocol 112 socket bound to interface `device`, with `filter`
/// attached first (before the socket is bound to the interface it receives from every
/// interface; the filter keeps those datagrams out of its queue).
fn raw_socket(
    domain: Domain,
    device: &[u8],
    what: &str,
    filter: Option<&[socket2::SockFilter]>,
) -> io::Result<Socket> {
    let sock = Socket::new(
        domain,
        Type::RAW.nonblocking().cloexec(),
        Some(Protocol::from(i32::from(IP_PROTOCOL))),
    )
    .map_err(|e| context(e, what, "CAP_NET_RAW"))?;
    if let Some(filter) = filter {
        sock.attach_filter(filter)
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: SO_ATTACH_FILTER: {e}")))?;
    }
    sock.bind_device(Some(device)).map_err(|e| {
        let name = String::from_utf8_lossy(device);
        context(e, &format!("SO_BINDTODEVICE {name}"), "CAP_NET_RAW")
    })?;
    Ok(sock)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl VrrpSocket {
    /// Opens the raw IP protocol 112 socket on `ifname` for the family of `primary`, this
    /// node's address on the interface and the source of every advert sent (for IPv6 give
    /// its link-local address, RFC 9568 §5.1.2.1). See the module docs for the options.
    ///
    /// Errors: the interface does not exist (`NotFound`), a unicast peer of the other
    /// family (`InvalidInput`), no `CAP_NET_RAW` (`PermissionDenied`, "needs CAP_NET_RAW").
    ///
    /// No kernel filter: the socket queues every protocol 112 datagram (a watcher, or a
    /// test that must see what the election drops). The election opens its socket with
    /// [`VrrpSocket::open_filtered`].
    pub fn open(ifname: &str, primary: IpAddr, delivery: Delivery) -> io::Result<VrrpSocket> {
        VrrpSocket::open_with(ifname, primary, delivery, None)
    }

    /// [`VrrpSocket::open`] with the kernel filter of the module docs ("Flood
    /// resistance"): only datagrams with TTL / hop limit 255, `filter`'s version and VRID
    /// and, for [`Delivery::Unicast`], a peer's source address reach the queue.
    /// [`Doorbell::open`] on this socket applies the same filter to the doorbell.
    ///
    /// The filter is fixed for the socket's life: open a new socket when the version or
    /// the peers change.
    pub fn open_filtered(
        ifname: &str,
        primary: IpAddr,
        delivery: Delivery,
        filter: Filter,
    ) -> io::Result<VrrpSocket> {
        VrrpSocket::open_with(ifname, primary, delivery, Some(filter))
    }

    fn open_with(
        ifname: &str,
        primary: IpAddr,
        delivery: Delivery,
        filter: Option<Filter>,
    ) -> io::Result<VrrpSocket> {
        let ifindex = ifindex_of(ifname)?;
        if let Delivery::Unicast(peers) = &delivery {
            if let Some(p) = peers.iter().find(|p| p.is_ipv4() != primary.is_ipv4()) {
                return Err(invalid(format!(
                    "unicast peer {p} is not of the family of the source address {primary}"
                )));
            }
        }
        let domain = if primary.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let what = format!("opening a raw IP protocol {IP_PROTOCOL} (VRRP) socket on {ifname}");
        let program = filter.map(|f| accept_filter(&primary, &delivery, f));
        let sock = raw_socket(domain, ifname.as_bytes(), &what, program.as_deref())?;
        let opt = |r: io::Result<()>, name: &str| {
            r.map_err(|e| io::Error::new(e.kind(), format!("{name} on {ifname}: {e}")))
        };
        set_recv_buffer(&sock, RECV_BUFFER_BYTES)
            .map_err(|e| io::Error::new(e.kind(), format!("on {ifname}: {e}")))?;
        // The kernel's drop counter on every datagram (module docs, "Flood resistance").
        opt(
            setsockopt(&sock, sockopt::RxqOvfl, &1).map_err(io::Error::from),
            "SO_RXQ_OVFL",
        )?;
        match primary {
            IpAddr::V4(src) => {
                opt(sock.set_ttl_v4(u32::from(TTL)), "IP_TTL")?;
                opt(
                    sock.set_multicast_ttl_v4(u32::from(TTL)),
                    "IP_MULTICAST_TTL",
                )?;
                opt(sock.set_multicast_loop_v4(false), "IP_MULTICAST_LOOP")?;
                opt(sock.set_multicast_if_v4(&src), "IP_MULTICAST_IF")?;
                opt(sock.set_tos_v4(TOS_INTERNETWORK_CONTROL), "IP_TOS")?;
                if delivery == Delivery::Multicast {
                    opt(
                        sock.join_multicast_v4_n(
                            &MULTICAST_V4,
                            &InterfaceIndexOrAddress::Index(ifindex),
                        ),
                        "IP_ADD_MEMBERSHIP 224.0.0.18",
                    )?;
                }
            }
            IpAddr::V6(_) => {
                opt(
                    sock.set_unicast_hops_v6(u32::from(TTL)),
                    "IPV6_UNICAST_HOPS",
                )?;
                opt(
                    sock.set_multicast_hops_v6(u32::from(TTL)),
                    "IPV6_MULTICAST_HOPS",
                )?;
                opt(sock.set_multicast_loop_v6(false), "IPV6_MULTICAST_LOOP")?;
                opt(sock.set_multicast_if_v6(ifindex), "IPV6_MULTICAST_IF")?;
                opt(sock.set_recv_hoplimit_v6(true), "IPV6_RECVHOPLIMIT")?;
                opt(
                    setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from),
                    "IPV6_RECVPKTINFO",
                )?;
                if delivery == Delivery::Multicast {
                    opt(
                        sock.join_multicast_v6(&MULTICAST_V6, ifindex),
                        "IPV6_ADD_MEMBERSHIP ff02::12",
                    )?;
                }
            }
        }
        // Kernel receive times: a Backup reads queued adverts later (see [`Doorbell`])
        // and must know when each one arrived.
        opt(
            setsockopt(&sock, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from),
            "SO_TIMESTAMPNS",
        )?;
        Ok(VrrpSocket {
            fd: sock,
            cmsg: std::cell::RefCell::new(match primary {
                IpAddr::V4(_) => nix::cmsg_space!(nix::sys::time::TimeSpec, u32),
                IpAddr::V6(_) => {
                    nix::cmsg_space!(
                        libc::in6_pktinfo,
                        libc::c_int,
                        nix::sys::time::TimeSpec,
                        u32
                    )
                }
            }),
            ifindex,
            primary,
            delivery,
            filter,
            floor: None,
        })
    }

    /// The kernel filter of [`VrrpSocket::open_filtered`], if the socket has one.
    pub fn filter(&self) -> Option<Filter> {
        self.filter
    }

    /// Adds to the kernel filter (a filtered socket only; a no-op on others) a priority
    /// floor: with `Some(floor)`, adverts with a priority in `1..floor` are dropped
    /// before queueing, priority 0 and `floor` and above still pass; `None` removes it.
    /// The election installs the machine's `Instance::priority_floor` here, so that a
    /// flood of adverts a preempting Backup discards anyway cannot crowd the Active
    /// Router's adverts out of the receive queue (module docs, "Flood resistance").
    /// Datagrams already queued stay. Give the [`Doorbell`] the same floor.
    pub fn set_priority_floor(&mut self, floor: Option<u8>) -> io::Result<()> {
        let Some(filter) = self.filter else {
            return Ok(());
        };
        if floor == self.floor {
            return Ok(());
        }
        let mut prog = guard(&self.primary, &self.delivery, filter, floor, 0);
        prog.push(bpf(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX));
        self.fd.attach_filter(&prog)?;
        self.floor = floor;
        Ok(())
    }

    /// The priority floor in the kernel filter ([`VrrpSocket::set_priority_floor`]).
    pub fn priority_floor(&self) -> Option<u8> {
        self.floor
    }

    /// Asks for a receive buffer of `bytes` (`SO_RCVBUFFORCE` with `CAP_NET_ADMIN`, else
    /// `SO_RCVBUF`, capped by `net.core.rmem_max`) and returns what the kernel granted
    /// ([`VrrpSocket::recv_buffer`]). [`VrrpSocket::open`] asks for
    /// [`RECV_BUFFER_BYTES`].
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<usize> {
        set_recv_buffer(&self.fd, bytes)?;
        self.recv_buffer()
    }

    /// The receive buffer the kernel granted, in bytes (`SO_RCVBUF`: the kernel doubles
    /// what was asked for, to account for its bookkeeping).
    pub fn recv_buffer(&self) -> io::Result<usize> {
        self.fd.recv_buffer_size()
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// This node's address, the source of what [`VrrpSocket::send`] sends.
    pub fn primary(&self) -> IpAddr {
        self.primary
    }

    /// Where [`VrrpSocket::send`] sends: the multicast group, or every unicast peer. The
    /// VRRPv3 checksum depends on it: build one message per destination with
    /// `IpPair { src: primary, dst }` and send it with [`VrrpSocket::send_to`].
    pub fn destinations(&self) -> Vec<IpAddr> {
        match (&self.delivery, self.primary) {
            (Delivery::Unicast(peers), _) => peers.clone(),
            (Delivery::Multicast, IpAddr::V4(_)) => vec![IpAddr::V4(MULTICAST_V4)],
            (Delivery::Multicast, IpAddr::V6(_)) => vec![IpAddr::V6(MULTICAST_V6)],
        }
    }

    /// Takes one waiting datagram, without blocking (`WouldBlock` when there is none), and
    /// writes its VRRP message at the start of `buf` (give it [`RECV_BUFFER_LEN`] bytes; a
    /// longer datagram is truncated and then fails to parse). Wait for readability on
    /// [`AsFd::as_fd`] first.
    ///
    /// An IPv4 datagram whose header cannot be read (truncated, a fragment, another
    /// protocol: the kernel normally drops these first) is an `InvalidData` error: count it
    /// and keep receiving.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        match self.primary {
            IpAddr::V4(_) => {
                let (n, at, dropped) =
                    recv_v4(self.fd.as_raw_fd(), buf, &mut self.cmsg.borrow_mut())?;
                let (meta, msg) = Ipv4Meta::split(&buf[..n]).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unreadable IPv4 datagram of protocol {IP_PROTOCOL}: {e}"),
                    )
                })?;
                let len = msg.len();
                // `split` succeeded, so the message starts right after the header (IHL).
                let start = usize::from(buf[0] & 0x0f) * 4;
                let received = Received {
                    src: IpAddr::V4(meta.src),
                    dst: IpAddr::V4(meta.dst),
                    ttl_or_hop_limit: meta.ttl,
                    len,
                    at,
                    dropped,
                };
                buf.copy_within(start..start + len, 0);
                Ok(received)
            }
            IpAddr::V6(_) => recv_v6(self.fd.as_raw_fd(), buf, &mut self.cmsg.borrow_mut()),
        }
    }

    /// Blocks until one datagram arrives (see [`VrrpSocket::try_recv`]) or `timeout` has
    /// passed (`TimedOut`).
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_recv(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no VRRP datagram within {timeout:?}"),
                ));
            }
            let ms = u16::try_from(left.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends `msg` (a VRRP message, no IP header) to every destination of
    /// [`VrrpSocket::destinations`]. The same bytes go to each: right for multicast and for
    /// VRRPv2; for VRRPv3 unicast build one message per peer and use
    /// [`VrrpSocket::send_to`]. Stops at the first error.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        for dst in self.destinations() {
            self.send_to(msg, dst)?;
        }
        Ok(())
    }

    /// Sends `msg` (a VRRP message, no IP header) to `dst`, from `primary`, out of the
    /// interface, with TTL / hop limit 255. Never blocks: a full send buffer is a
    /// `WouldBlock` error (the advert is lost, as it would be on the wire; the next one
    /// follows one interval later).
    pub fn send_to(&self, msg: &[u8], dst: IpAddr) -> io::Result<()> {
        let ifindex = self.ifindex;
        let fd = self.fd.as_raw_fd();
        let n = match (self.primary, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => send_v4(fd, msg, src, dst, ifindex),
            (IpAddr::V6(src), IpAddr::V6(dst)) => send_v6(fd, msg, src, dst, ifindex),
            (src, dst) => {
                return Err(invalid(format!(
                    "cannot send from {src} to {dst}: families differ"
                )))
            }
        }
        .map_err(|e| io::Error::new(e.kind(), format!("sending VRRP to {dst}: {e}")))?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of {} bytes to {dst}", msg.len()),
            ));
        }
        Ok(())
    }
}

/// What a ringing [`Doorbell`] keeps of a datagram: one byte, enough to be readable.
const RING: u32 = 1;

/// A second raw protocol 112 socket on the interface that only says *when* to read the
/// [`VrrpSocket`], never what: a classic BPF filter drops every datagram whose VRRP
/// message is byte for byte a given one, and keeps one byte of any other.
///
/// Why: a Backup hears the Master's advert 100 times a second at 10 ms, and all an
/// advert does to a Backup is move the Master_Down deadline later (RFC 9568 §6.4.2;
/// nothing is sent and no VIP changes). Only a datagram different from the last one
/// processed can move the deadline earlier (priority 0, a shorter interval, another
/// sender) or matter at once. So the Backup sleeps on the doorbell until its deadline,
/// then reads the queued adverts from the `VrrpSocket` with their kernel receive times
/// and replays them: the same decisions at the same instants, with one wakeup per
/// Master_Down_Interval instead of one per advert. The filter sees every datagram the
/// `VrrpSocket` sees (raw delivery clones each one to every raw socket of the protocol).
#[derive(Debug)]
pub struct Doorbell {
    fd: Socket,
    v4: bool,
    /// What the VRRP socket's kernel filter was built from: its checks go before each
    /// repeat filter, so that a flood the VRRP socket drops does not ring the doorbell.
    guard: Option<(IpAddr, Delivery, Filter)>,
    /// The VRRP socket's priority floor, also part of the guard.
    floor: Option<u8>,
}

impl Doorbell {
    /// Opens the doorbell for the interface and family of `socket`, ringing for nothing
    /// yet ([`Doorbell::silence`]). If `socket` has a kernel filter
    /// ([`VrrpSocket::open_filtered`]), the doorbell never rings for what that filter
    /// drops.
    pub fn open(socket: &VrrpSocket) -> io::Result<Doorbell> {
        let v4 = socket.primary.is_ipv4();
        let domain = if v4 { Domain::IPV4 } else { Domain::IPV6 };
        let device = socket.fd.device()?.unwrap_or_default();
        let fd = raw_socket(
            domain,
            &device,
            "opening the VRRP doorbell socket",
            Some(&[drop_all()]),
        )?;
        let guard = socket
            .filter
            .map(|f| (socket.primary, socket.delivery.clone(), f));
        Ok(Doorbell {
            fd,
            v4,
            guard,
            floor: None,
        })
    }

    /// Rings for every datagram except those whose VRRP message is exactly `msg` (and,
    /// with a filtered VRRP socket, those its filter drops).
    pub fn ring_unless(&self, msg: &[u8]) -> io::Result<()> {
        let repeat = repeat_filter(self.v4, msg);
        let mut prog = match &self.guard {
            Some((primary, delivery, filter)) => guard(primary, delivery, *filter, self.floor, 0),
            None => Vec::new(),
        };
        if prog.len() + repeat.len() > BPF_MAXINSNS {
            // A long message and many IPv6 peers: ring for what the VRRP socket's filter
            // drops too (more wakeups, the same decisions).
            return self.fd.attach_filter(&repeat);
        }
        prog.extend(repeat);
        self.fd.attach_filter(&prog)
    }

    /// The VRRP socket's priority floor ([`VrrpSocket::set_priority_floor`]) for the
    /// guard of the next [`Doorbell::ring_unless`]; a filter already attached keeps
    /// the previous one until then.
    pub fn set_priority_floor(&mut self, floor: Option<u8>) {
        self.floor = floor;
    }

    /// Rings for nothing (while the VRRP socket itself is polled).
    pub fn silence(&self) -> io::Result<()> {
        self.fd.attach_filter(&[drop_all()])
    }

    /// Empties the doorbell; returns how many times it had rung.
    pub fn drain(&self) -> usize {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
        let mut rings = 0;
        while self.fd.recv(&mut buf).is_ok() {
            rings += 1;
        }
        rings
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// How many bytes of each datagram the [`FilterTally`] keeps: it only counts them.
const TALLY_KEEP: u32 = 1;

/// The [`FilterTally`]'s receive buffer: small on purpose, its overflow is counted.
const TALLY_BUFFER_BYTES: usize = 4096;

/// Counts what the kernel filter of a [`VrrpSocket`] drops (module docs, "Flood
/// resistance"). The kernel counts a socket filter's drops nowhere, so a second raw
/// socket on the same interface and family receives exactly those datagrams: its filter
/// is the VRRP socket's checks with keep and drop swapped. It keeps one byte of each in
/// a small buffer that is meant to overflow: what it read plus what the kernel dropped
/// on it (`SO_RXQ_OVFL`) is the count. Each datagram that arrives carries the drop count
/// as of its arrival, so the count is at most one [`FilterTally::drain`] behind.
#[derive(Debug)]
pub struct FilterTally {
    fd: Socket,
    guard: (IpAddr, Delivery, Filter),
    floor: Option<u8>,
    read: u64,
    overflow: u32,
}

impl FilterTally {
    /// The tally of `socket`'s kernel filter; `None` for a socket without one.
    pub fn open(socket: &VrrpSocket) -> io::Result<Option<FilterTally>> {
        let Some(filter) = socket.filter else {
            return Ok(None);
        };
        let guard = (socket.primary, socket.delivery.clone(), filter);
        let domain = if socket.primary.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let device = socket.fd.device()?.unwrap_or_default();
        let fd = raw_socket(
            domain,
            &device,
            "opening the VRRP filter tally socket",
            Some(&tally_filter(&guard, None)),
        )?;
        fd.set_recv_buffer_size(TALLY_BUFFER_BYTES)?;
        setsockopt(&fd, sockopt::RxqOvfl, &1).map_err(io::Error::from)?;
        Ok(Some(FilterTally {
            fd,
            guard,
            floor: None,
            read: 0,
            overflow: 0,
        }))
    }

    /// Follows the VRRP socket's priority floor ([`VrrpSocket::set_priority_floor`]).
    pub fn set_priority_floor(&mut self, floor: Option<u8>) -> io::Result<()> {
        if floor == self.floor {
            return Ok(());
        }
        self.fd.attach_filter(&tally_filter(&self.guard, floor))?;
        self.floor = floor;
        Ok(())
    }

    /// Reads what is queued (at most 1,024 datagrams); returns [`FilterTally::count`].
    pub fn drain(&mut self) -> u64 {
        let mut byte = [0u8; 1];
        let mut cmsg = nix::cmsg_space!(u32);
        for _ in 0..1024 {
            let mut iov = [IoSliceMut::new(&mut byte)];
            let Ok(msg) = recvmsg::<nix::sys::socket::SockaddrStorage>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT,
            ) else {
                break;
            };
            self.read += 1;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::RxqOvfl(n) = c {
                        self.overflow = self.overflow.max(n);
                    }
                }
            }
        }
        self.count()
    }

    /// Datagrams the VRRP socket's filter dropped, as of the last drain.
    pub fn count(&self) -> u64 {
        self.read + u64::from(self.overflow)
    }
}

/// The VRRP socket's checks with keep and drop swapped: keep [`TALLY_KEEP`] bytes of what
/// they reject, drop what they pass.
fn tally_filter(
    (primary, delivery, filter): &(IpAddr, Delivery, Filter),
    floor: Option<u8>,
) -> Vec<socket2::SockFilter> {
    let mut prog = guard(primary, delivery, *filter, floor, TALLY_KEEP);
    prog.push(drop_all());
    prog
}

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> socket2::SockFilter {
    // Every BPF opcode fits in 16 bits.
    socket2::SockFilter::new(u16::try_from(code).unwrap_or(u16::MAX), jt, jf, k)
}

/// The most instructions a classic BPF program may have (the kernel's `BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;

/// `ret #0`: drop the datagram.
fn drop_all() -> socket2::SockFilter {
    bpf(libc::BPF_RET | libc::BPF_K, 0, 0, 0)
}

/// Sets the receive buffer: `SO_RCVBUFFORCE` (needs `CAP_NET_ADMIN`, ignores
/// `net.core.rmem_max`), else `SO_RCVBUF`.
fn set_recv_buffer(sock: &Socket, bytes: usize) -> io::Result<()> {
    match setsockopt(sock, sockopt::RcvBufForce, &bytes) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => sock
            .set_recv_buffer_size(bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("SO_RCVBUF {bytes}: {e}"))),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("SO_RCVBUFFORCE {bytes}: {e}"),
        )),
    }
}

/// The classic BPF program of [`VrrpSocket::open_filtered`]: keep (whole) a datagram that
/// passes every check of [`Filter`] (see the module docs, "Flood resistance"), drop any
/// other. `primary` gives the family, `delivery` the peers in unicast mode.
pub fn accept_filter(
    primary: &IpAddr,
    delivery: &Delivery,
    filter: Filter,
) -> Vec<socket2::SockFilter> {
    let mut prog = guard(primary, delivery, filter, None, 0);
    prog.push(bpf(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX));
    prog
}

/// The checks of [`accept_filter`] as a program prefix: each failing check returns
/// `reject` (0: drop; [`FilterTally`] keeps instead), a datagram that passes them all falls through to what follows. Every jump is
/// local (at most 8 instructions, or a `ja` with a 32-bit offset), so the prefix can go
/// before any program.
///
/// Where the fields are: an IPv4 raw socket's filter sees the IP header at offset 0
/// (TTL at 8, source at 12) and the VRRP message after it (`ldx 4*([0]&0xf)`); an IPv6
/// one sees the VRRP message at offset 0 and reads the fixed IPv6 header through
/// `SKF_NET_OFF` (hop limit at 7, source at 8..24; the network header stays the fixed
/// header whatever extension headers follow).
fn guard(
    primary: &IpAddr,
    delivery: &Delivery,
    filter: Filter,
    floor: Option<u8>,
    reject: u32,
) -> Vec<socket2::SockFilter> {
    use libc::{
        BPF_ABS, BPF_B, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
        BPF_MSH, BPF_RET, BPF_W,
    };
    let v4 = primary.is_ipv4();
    // A load from the network header: absolute on IPv4, through SKF_NET_OFF on IPv6.
    let net = |offset: i32| -> u32 {
        if v4 {
            offset.cast_unsigned()
        } else {
            (libc::SKF_NET_OFF + offset).cast_unsigned()
        }
    };
    let mut prog = Vec::new();
    // `A == value` or drop.
    let equal_or_drop = |prog: &mut Vec<socket2::SockFilter>, value: u32| {
        prog.push(bpf(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, value));
        prog.push(bpf(BPF_RET | BPF_K, 0, 0, reject));
    };
    // RFC 9568 §7.1: TTL / hop limit 255.
    prog.push(bpf(
        BPF_LD | BPF_B | BPF_ABS,
        0,
        0,
        net(if v4 { 8 } else { 7 }),
    ));
    equal_or_drop(&mut prog, u32::from(TTL));
    // Unicast: the source is one of the peers. Per peer, its words compared in turn (a
    // mismatch jumps to the next peer), then `ja` past the rest; after the last peer, drop.
    if let Delivery::Unicast(peers) = delivery {
        let words: Vec<Vec<u32>> = peers
            .iter()
            .filter(|p| p.is_ipv4() == v4)
            .map(|p| match p {
                IpAddr::V4(a) => vec![u32::from(*a)],
                IpAddr::V6(a) => a
                    .octets()
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            })
            .collect();
        let src = if v4 { 12 } else { 8 };
        let block = |n: usize| 2 * n + 1;
        for (i, peer) in words.iter().enumerate() {
            let n = peer.len();
            for (j, word) in peer.iter().enumerate() {
                let offset = i32::try_from(src + 4 * j).unwrap_or(i32::MAX);
                prog.push(bpf(BPF_LD | BPF_W | BPF_ABS, 0, 0, net(offset)));
                // To the next peer: past the remaining compares of this one and its `ja`.
                let next = u8::try_from(2 * (n - 1 - j) + 1).unwrap_or(u8::MAX);
                prog.push(bpf(BPF_JMP | BPF_JEQ | BPF_K, 0, next, *word));
            }
            // Past the remaining peers and the final drop.
            let rest: usize = words[i + 1..].iter().map(|w| block(w.len())).sum::<usize>() + 1;
            prog.push(bpf(
                BPF_JMP | BPF_JA,
                0,
                0,
                u32::try_from(rest).unwrap_or(u32::MAX),
            ));
        }
        prog.push(bpf(BPF_RET | BPF_K, 0, 0, reject));
    }
    // The VRRP message: Version and Type (one byte), then the VRID.
    let mode = if v4 {
        prog.push(bpf(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0));
        BPF_IND
    } else {
        BPF_ABS
    };
    let first = (u8::from(filter.version) << 4) | (u8::from(MsgType::Advertisement) & 0x0f);
    prog.push(bpf(BPF_LD | BPF_B | mode, 0, 0, 0));
    equal_or_drop(&mut prog, u32::from(first));
    prog.push(bpf(BPF_LD | BPF_B | mode, 0, 0, 1));
    equal_or_drop(&mut prog, u32::from(filter.vrid.get()));
    // The priority floor (`VrrpSocket::set_priority_floor`): priority >= floor or 0,
    // else drop.
    if let Some(floor) = floor {
        prog.push(bpf(BPF_LD | BPF_B | mode, 0, 0, 2));
        prog.push(bpf(BPF_JMP | BPF_JGE | BPF_K, 2, 0, u32::from(floor)));
        prog.push(bpf(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0));
        prog.push(bpf(BPF_RET | BPF_K, 0, 0, reject));
    }
    prog
}

/// The classic BPF program of [`Doorbell::ring_unless`]: drop (return 0) a datagram whose
/// VRRP message is `msg` (same length, same bytes), keep [`RING`] bytes of any other. An
/// IPv4 raw socket's filter sees the IP header first (its length from the IHL, `ldx
/// 4*([0]&0xf)`); an IPv6 one sees the message alone. Each 32-bit word is compared as
/// `ld; jeq; ret RING`, so no jump is longer than one instruction whatever the length:
/// the longest message (8 + 255 x 16 bytes) takes 3,078 instructions, under the
/// kernel's 4,096.
pub fn repeat_filter(v4: bool, msg: &[u8]) -> Vec<socket2::SockFilter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LEN,
        BPF_MSH, BPF_RET, BPF_SUB, BPF_W, BPF_X,
    };
    let mode = if v4 { BPF_IND } else { BPF_ABS };
    let mut prog = Vec::with_capacity(8 + msg.len() / 4 * 3);
    if v4 {
        prog.push(bpf(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0));
        prog.push(bpf(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0));
        prog.push(bpf(BPF_ALU | BPF_SUB | BPF_X, 0, 0, 0));
    } else {
        prog.push(bpf(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0));
    }
    let equal_or_ring = |prog: &mut Vec<socket2::SockFilter>, value: u32| {
        prog.push(bpf(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, value));
        prog.push(bpf(BPF_RET | BPF_K, 0, 0, RING));
    };
    // The message length (at most 4,095 + 60 bytes: fits).
    equal_or_ring(&mut prog, u32::try_from(msg.len()).unwrap_or(u32::MAX));
    let mut at = 0usize;
    while at < msg.len() {
        let rest = &msg[at..];
        let (size, value, step) = match rest.len() {
            4.. => (
                BPF_W,
                u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]),
                4,
            ),
            2 | 3 => (BPF_H, u32::from(u16::from_be_bytes([rest[0], rest[1]])), 2),
            _ => (BPF_B, u32::from(rest[0]), 1),
        };
        let offset = u32::try_from(at).unwrap_or(u32::MAX);
        prog.push(bpf(BPF_LD | size | mode, 0, 0, offset));
        equal_or_ring(&mut prog, value);
        at += step;
    }
    prog.push(bpf(BPF_RET | BPF_K, 0, 0, 0));
    prog
}

impl AsFd for VrrpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn ifindex_c(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex).map_err(|_| invalid(format!("interface index {ifindex} too large")))
}

/// One IPv4 datagram: its length, kernel receive time and drop counter.
fn recv_v4(
    fd: i32,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, Option<SystemTime>, u32)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn>(fd, &mut iov, Some(cmsg), MsgFlags::empty())?;
    let mut at = None;
    let mut dropped = 0;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::ScmTimestampns(ts) => at = system_time(ts),
            // Absent while the count is 0.
            ControlMessageOwned::RxqOvfl(n) => dropped = n,
            _ => {}
        }
    }
    Ok((msg.bytes, at, dropped))
}

/// A `SCM_TIMESTAMPNS` time as a `SystemTime` (`None` before the epoch).
fn system_time(ts: nix::sys::time::TimeSpec) -> Option<SystemTime> {
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u32::try_from(ts.tv_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn recv_v6(fd: i32, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(cmsg), MsgFlags::empty())?;
    let src = msg
        .address
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no source address"))?;
    let mut dst = None;
    let mut hop_limit = None;
    let mut at = None;
    let mut dropped = 0;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::RxqOvfl(n) => dropped = n,
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            ControlMessageOwned::Ipv6HopLimit(h) => {
                hop_limit = Some(u8::try_from(h).unwrap_or(0));
            }
            ControlMessageOwned::ScmTimestampns(ts) => at = system_time(ts),
            _ => {}
        }
    }
    let (Some(dst), Some(ttl)) = (dst, hop_limit) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "IPv6 datagram without IPV6_PKTINFO or IPV6_HOPLIMIT",
        ));
    };
    Ok(Received {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        ttl_or_hop_limit: ttl,
        len: msg.bytes,
        at,
        dropped,
    })
}

fn send_v4(fd: i32, msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr, ifindex: u32) -> io::Result<usize> {
    let info = libc::in_pktinfo {
        ipi_ifindex: ifindex_c(ifindex)?,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from_ne_bytes(src.octets()),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let n = sendmsg(
        fd,
        &[IoSlice::new(msg)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(n)
}

fn send_v6(fd: i32, msg: &[u8], src: Ipv6Addr, dst: Ipv6Addr, ifindex: u32) -> io::Result<usize> {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, ifindex));
    let n = sendmsg(
        fd,
        &[IoSlice::new(msg)],
        &[ControlMessage::Ipv6PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&to),
    )?;
    Ok(n)
}
