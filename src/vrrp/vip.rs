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
//!   [`Vips::present`] finds), so stale VIPs left with another prefix go too.
//!
//! The netlink socket belongs to the network namespace of the thread that called
//! [`Vips::new`].

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::Handle;

/// One virtual address and the prefix length it is added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VipConfig {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (32 / 128 for a lone address).
    pub prefix_len: u8,
}

/// The VIPs of one interface, through an rtnetlink connection.
#[derive(Debug, Clone)]
pub struct Vips {
    handle: Handle,
    ifname: String,
    ifindex: u32,
    label: Option<String>,
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
        let what = format!("listing the addresses of {}", self.ifname);
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(self.ifindex)
            .execute()
            .try_collect()
            .await
            .map_err(|e| nl_error(e, &what))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == self.ifindex)
            .filter_map(|m| message_addr(&m).map(|a| (a, m)))
            .collect())
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

    /// Adds every VIP (IPv4 with the label if one was given, IPv6 with `IFA_F_NODAD`).
    /// A VIP already there is fine. Stops at the first other error.
    pub async fn add(&self, vips: &[VipConfig]) -> io::Result<()> {
        validate(vips)?;
        for v in vips {
            let mut req = self
                .handle
                .address()
                .add(self.ifindex, v.addr, v.prefix_len);
            let msg = req.message_mut();
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
                Ok(()) => {}
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

    /// Removes every VIP on the interface, whatever its prefix length. A VIP already gone
    /// is fine. Stops at the first other error.
    pub async fn remove(&self, vips: &[VipConfig]) -> io::Result<()> {
        validate(vips)?;
        let have = self.addresses().await?;
        for (addr, mut msg) in have {
            if !vips.iter().any(|v| v.addr == addr) {
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
        Ok(())
    }
}
