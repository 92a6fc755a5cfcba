//! Adding and removing the virtual addresses on the interface, over rtnetlink (no `ip`
//! subprocess).
//!
//! - IPv4 VIPs carry an optional label (`ip addr show` shows it; keepalived's `label`), the
//!   whole label as the kernel stores it, e.g. `eth0:vip` (at most 15 bytes; `ip` insists
//!   it starts with the interface name, so this module does too).
//! - IPv6 VIPs are added with `IFA_F_NODAD`: usable at once, not tentative for a second of
//!   duplicate address detection (another router answering for the VIP is exactly what VRRP
//!   rules out).
//! - Every operation is idempotent: adding a present VIP (`EEXIST`) or removing an absent
//!   one (`EADDRNOTAVAIL`, `ENOENT`, `ESRCH`) succeeds.
//! - [`Vips::remove`] deletes the address whatever its prefix length (it deletes what
//!   [`Vips::present`] finds), so stale VIPs left with another prefix go too, but only
//!   an address apivip added: never one an operator configured, even the same address.
//!
//! # Which addresses are apivip's
//!
//! Every address [`Vips::add`] adds carries the address protocol [`ADDRESS_PROTOCOL`]
//! (`IFA_PROTO`, Linux 6.1+, both families; the kernel's own values are 0-3 and `ip`
//! adds 0), and IPv4 ones also the label when one was given (the shell gives
//! `IFNAME:apivip` when it fits in 15 bytes). [`Vips::remove`] deletes a VIP-matching
//! address only if it carries one of these marks, or if this `Vips` added it itself
//! (a record kept in memory: it covers kernels before 6.1, which drop `IFA_PROTO`,
//! for the life of the process). A crashed run's leftovers are therefore recognised by
//! their marks alone: on a kernel before 6.1 an IPv6 VIP (IPv6 has no labels), or an
//! IPv4 one on an interface whose name leaves no room for the label, is not
//! recognised, and [`Vips::present_by_owner`] reports it as someone else's, which the
//! shell logs. A record on disk would cover that case but could itself outlive what it
//! describes (a reboot keeps `/var`, a restore from backup, a second instance); the mark
//! travels with the address.
//!
//! The netlink socket belongs to the network namespace of the thread that called
//! [`Vips::new`].

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressProtocol,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::Handle;

use crate::vrrp::machine::LinkState;

/// One virtual address and the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipConfig {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (32 / 128 for a lone address).
    pub prefix_len: u8,
}

/// The address protocol (`IFA_PROTO`) apivip marks its VIPs with: an arbitrary value
/// outside the kernel's own (0-3). Add `167 apivip` to `/etc/iproute2/rt_addrprotos` for
/// `ip address` (iproute2 6.3+) to show it by name.
pub const ADDRESS_PROTOCOL: u8 = 167;

/// The VIPs of one interface, through an rtnetlink connection.
#[derive(Debug, Clone)]
pub struct Vips {
    handle: Handle,
    ifname: String,
    ifindex: u32,
    label: Option<String>,
    /// Addresses this process added (not found already there), with their prefix
    /// lengths: removable even where the kernel kept no mark. The prefix length tells
    /// ours from an operator's copy of the same IPv4 address.
    added: Arc<Mutex<HashSet<(IpAddr, u8)>>>,
}

/// The errno of a netlink error, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io().raw_os_error(),
        _ => None,
    }
}

fn nl_error(e: rtnetlink::Error, what: &str) -> io::Error {
    match errno(&e) {
        Some(libc::EPERM) | Some(libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} needs CAP_NET_ADMIN (run as root or grant the capability): {e}"),
        ),
        Some(n) => {
            let os = io::Error::from_raw_os_error(n);
            io::Error::new(os.kind(), format!("{what}: {os}"))
        }
        None => io::Error::other(format!("{what}: {e}")),
    }
}

/// The address an `RTM_NEWADDR` message is about: `IFA_LOCAL` for IPv4 (`IFA_ADDRESS` is
/// the peer on point-to-point links), `IFA_ADDRESS` for IPv6.
fn message_addr(msg: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Local(a) => return Some(*a),
            AddressAttribute::Address(a) => address = Some(*a),
            _ => {}
        }
    }
    address
}

fn validate(vips: &[VipConfig]) -> io::Result<()> {
    for v in vips {
        let max = if v.addr.is_ipv4() { 32 } else { 128 };
        if v.prefix_len > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("VIP {}/{}: prefix length above {max}", v.addr, v.prefix_len),
            ));
        }
    }
    Ok(())
}

impl Vips {
    /// Opens an rtnetlink connection (its task spawned on the current tokio runtime) and
    /// looks up `ifname`. `label`, for IPv4 VIPs, is the whole label (`eth0:vip`).
    pub async fn new(ifname: &str, label: Option<String>) -> io::Result<Vips> {
        if let Some(l) = &label {
            if l.len() > 15 || !l.starts_with(ifname) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "address label {l:?} must start with the interface name {ifname:?} \
                         and be at most 15 bytes"
                    ),
                ));
            }
        }
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| io::Error::new(e.kind(), format!("opening rtnetlink: {e}")))?;
        tokio::spawn(conn);
        let link = handle
            .link()
            .get()
            .match_name(ifname.to_owned())
            .execute()
            .try_next()
            .await
            .map_err(|e| match errno(&e) {
                Some(libc::ENODEV) => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface {ifname:?} not found"),
                ),
                _ => nl_error(e, &format!("looking up interface {ifname:?}")),
            })?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface {ifname:?} not found"),
                )
            })?;
        Ok(Vips {
            handle,
            ifname: ifname.to_owned(),
            ifindex: link.header.index,
            label,
            added: Arc::default(),
        })
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's MAC address (for gratuitous ARP and neighbour advertisements).
    pub async fn mac(&self) -> io::Result<[u8; 6]> {
        let what = format!("reading the MAC address of {}", self.ifname);
        let link = self
            .handle
            .link()
            .get()
            .match_index(self.ifindex)
            .execute()
            .try_next()
            .await
            .map_err(|e| nl_error(e, &what))?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, what.clone()))?;
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("{what}: the interface has no Ethernet address"),
                )
            })
    }

    /// Every address on the interface now, with its netlink message.
    async fn addresses(&self) -> io::Result<Vec<(IpAddr, AddressMessage)>> {
        self.addresses_of(self.ifindex).await
    }

    /// Every address on the interface with index `ifindex` now.
    async fn addresses_of(&self, ifindex: u32) -> io::Result<Vec<(IpAddr, AddressMessage)>> {
        let what = format!("listing the addresses of {}", self.ifname);
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error(e, &what))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == ifindex)
            .filter_map(|m| message_addr(&m).map(|a| (a, m)))
            .collect())
    }

    /// The interface as it is now, looked up by name (a deleted and re-created
    /// interface has a new index, returned beside the state): whether it exists, is
    /// up, has carrier (`IFF_LOWER_UP`), and carries `source`.
    pub async fn link_state(&self, source: IpAddr) -> io::Result<(LinkState, Option<u32>)> {
        let what = format!("looking up interface {:?}", self.ifname);
        let link = match self
            .handle
            .link()
            .get()
            .match_name(self.ifname.clone())
            .execute()
            .try_next()
            .await
        {
            Ok(link) => link,
            Err(e) if errno(&e) == Some(libc::ENODEV) => None,
            Err(e) => return Err(nl_error(e, &what)),
        };
        let Some(link) = link else {
            let gone = LinkState {
                exists: false,
                up: false,
                carrier: false,
                source_present: false,
            };
            return Ok((gone, None));
        };
        let index = link.header.index;
        let flags = link.header.flags;
        let source_present = self
            .addresses_of(index)
            .await?
            .iter()
            .any(|(a, _)| *a == source);
        let state = LinkState {
            exists: true,
            up: flags.contains(LinkFlags::Up),
            carrier: flags.contains(LinkFlags::LowerUp),
            source_present,
        };
        Ok((state, Some(index)))
    }

    /// A new connection to the interface of the same name (after it was re-created:
    /// the index is looked up again). Addresses this `Vips` added are forgotten: they
    /// went with the old interface.
    pub async fn reopen(&self) -> io::Result<Vips> {
        Vips::new(&self.ifname, self.label.clone()).await
    }

    /// This interface's IPv6 link-local address (the source of IPv6 adverts,
    /// RFC 9568 §5.1.2.1), if it has one.
    pub async fn link_local_v6(&self) -> io::Result<Option<Ipv6Addr>> {
        Ok(self
            .addresses()
            .await?
            .into_iter()
            .find_map(|(a, _)| match a {
                IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => Some(a),
                _ => None,
            }))
    }

    /// Which of `vips` are on the interface now (any prefix length).
    pub async fn present(&self, vips: &[VipConfig]) -> io::Result<Vec<IpAddr>> {
        let have = self.addresses().await?;
        Ok(vips
            .iter()
            .map(|v| v.addr)
            .filter(|a| have.iter().any(|(h, _)| h == a))
            .collect())
    }

    /// Whether apivip added this address: it carries [`ADDRESS_PROTOCOL`] or this
    /// `Vips`'s label, or this `Vips` added it.
    fn is_ours(&self, addr: IpAddr, msg: &AddressMessage) -> bool {
        msg.attributes.iter().any(|a| match a {
            AddressAttribute::Protocol(p) => u8::from(*p) == ADDRESS_PROTOCOL,
            AddressAttribute::Label(l) => self.label.as_ref() == Some(l),
            _ => false,
        }) || self
            .added
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(addr, msg.header.prefix_len))
    }

    /// Which of `vips` are on the interface now, split into those apivip added (see
    /// the module doc) and those someone else configured.
    pub async fn present_by_owner(
        &self,
        vips: &[VipConfig],
    ) -> io::Result<(Vec<IpAddr>, Vec<IpAddr>)> {
        let mut ours = Vec::new();
        let mut others = Vec::new();
        for (addr, msg) in self.addresses().await? {
            if !vips.iter().any(|v| v.addr == addr) {
                continue;
            }
            let list = if self.is_ours(addr, &msg) {
                &mut ours
            } else {
                &mut others
            };
            if !list.contains(&addr) {
                list.push(addr);
            }
        }
        Ok((ours, others))
    }

    /// Adds every VIP, marked as apivip's ([`ADDRESS_PROTOCOL`]; IPv4 also with the
    /// label if one was given; IPv6 with `IFA_F_NODAD`). A VIP already there is fine
    /// (and stays someone else's if it was). Stops at the first other error.
    pub async fn add(&self, vips: &[VipConfig]) -> io::Result<()> {
        validate(vips)?;
        for v in vips {
            let mut req = self
                .handle
                .address()
                .add(self.ifindex, v.addr, v.prefix_len);
            let msg = req.message_mut();
            msg.attributes
                .push(AddressAttribute::Protocol(AddressProtocol::from(
                    ADDRESS_PROTOCOL,
                )));
            match v.addr {
                IpAddr::V4(_) => {
                    if let Some(label) = &self.label {
                        msg.attributes.push(AddressAttribute::Label(label.clone()));
                    }
                }
                IpAddr::V6(_) => {
                    msg.header.flags = AddressHeaderFlags::Nodad;
                    msg.attributes
                        .push(AddressAttribute::Flags(AddressFlags::Nodad));
                }
            }
            match req.execute().await {
                Ok(()) => {
                    self.added
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert((v.addr, v.prefix_len));
                }
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(nl_error(
                        e,
                        &format!("adding VIP {}/{} to {}", v.addr, v.prefix_len, self.ifname),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Removes every VIP apivip added to the interface (see the module doc), whatever
    /// its prefix length; an address someone else configured stays, even the same one.
    /// A VIP already gone is fine. Stops at the first other error.
    pub async fn remove(&self, vips: &[VipConfig]) -> io::Result<()> {
        validate(vips)?;
        let have = self.addresses().await?;
        for (addr, mut msg) in have {
            if !vips.iter().any(|v| v.addr == addr) || !self.is_ours(addr, &msg) {
                continue;
            }
            // Identify the address only: header (family, prefix, index) and its addresses.
            msg.attributes
                .retain(|a| matches!(a, AddressAttribute::Address(_) | AddressAttribute::Local(_)));
            match self.handle.address().del(msg).execute().await {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        errno(&e),
                        Some(libc::EADDRNOTAVAIL | libc::ENOENT | libc::ESRCH)
                    ) => {}
                Err(e) => {
                    return Err(nl_error(
                        e,
                        &format!("removing VIP {addr} from {}", self.ifname),
                    ))
                }
            }
        }
        // Whatever this process added of these is gone now.
        self.added
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(a, _)| !vips.iter().any(|v| v.addr == *a));
        Ok(())
    }
}

/// Link and address changes on any interface, as the kernel announces them
/// (`RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`). Each message is only a
/// wake-up: the reader reads the state it cares about ([`Vips::link_state`],
/// [`Vips::present`]) rather than tracking deltas, so a lost message (a full socket
/// buffer) costs nothing but the delay to the next one. The connection task is
/// spawned on the current runtime and lives as long as the receiver.
pub fn watch_changes() -> io::Result<impl futures_util::Stream<Item = ()> + Unpin> {
    use futures_util::StreamExt;
    use rtnetlink::sys::AsyncSocket;
    let (mut conn, handle, messages) = rtnetlink::new_connection()
        .map_err(|e| io::Error::new(e.kind(), format!("opening rtnetlink: {e}")))?;
    let socket = conn.socket_mut().socket_mut();
    // Bound first: the kernel sends its notifications from port id 0, and skips a
    // socket whose own port id is that of the sender, so an unbound socket (port id 0;
    // a socket that never sends is never bound automatically) would receive nothing.
    socket
        .bind_auto()
        .map_err(|e| io::Error::new(e.kind(), format!("binding the rtnetlink socket: {e}")))?;
    for group in [
        libc::RTNLGRP_LINK,
        libc::RTNLGRP_IPV4_IFADDR,
        libc::RTNLGRP_IPV6_IFADDR,
    ] {
        socket.add_membership(group).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("subscribing to link and address changes: {e}"),
            )
        })?;
    }
    tokio::spawn(conn);
    // The stream keeps a handle, so that the connection never ends for want of one.
    Ok(messages.map(move |_| {
        let _keep = &handle;
    }))
}
