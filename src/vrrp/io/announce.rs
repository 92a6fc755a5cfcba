//! Telling the link that the VIPs moved here: gratuitous ARP for IPv4 VIPs and unsolicited
//! neighbour advertisements for IPv6 VIPs, as keepalived sends them on becoming master.
//!
//! - **Gratuitous ARP** ([`garp_frame`]): an ARP *request* broadcast to ff:ff:ff:ff:ff:ff
//!   whose sender and target protocol addresses are both the VIP, sender hardware address
//!   our MAC and target hardware address ff:ff:ff:ff:ff:ff (keepalived 2.2.7's frame, byte
//!   for byte, as captured from it). Requests rather than replies: every stack updates an existing entry on a
//!   request. Sent whole (Ethernet header included) on an `AF_PACKET` socket.
//! - **Unsolicited neighbour advertisement** ([`unsolicited_na`], RFC 4861 §7.2.6): ICMPv6
//!   type 136 to ff02::1 with the Override flag (not Solicited, not Router), target = the
//!   VIP and a target link-layer address option with our MAC; source = the VIP itself (as
//!   keepalived), hop limit 255. Sent on a raw ICMPv6 socket, which has the kernel fill in
//!   the ICMPv6 checksum; so the VIP must be on the interface (add it first).
//!
//! `AF_PACKET` needs a `sockaddr_ll` naming the interface, which neither socket2 nor nix can
//! build without `unsafe` (forbidden in this crate). The socket is therefore created here
//! with socket2 and handed to `pnet_datalink`, which binds it to the interface with
//! protocol 0: bound for sending, it receives nothing.

use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn6};
use socket2::{Domain, Protocol, Socket, Type};

/// Length of a gratuitous ARP frame (Ethernet header 14 + ARP 28), before link padding.
pub const GARP_LEN: usize = 42;

/// The all-nodes multicast group, destination of unsolicited neighbour advertisements.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// The Override flag, first byte of the NA flags word (RFC 4861 §4.4).
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// Option type "Target Link-Layer Address" (RFC 4861 §4.6.1).
const OPT_TARGET_LL_ADDR: u8 = 2;

/// The gratuitous ARP frame announcing `ip` at `mac` (see the module docs).
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut f = [0u8; GARP_LEN];
    // Ethernet: destination, source, type.
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP);
    // ARP (RFC 826): Ethernet (1), IPv4 (0x0800), lengths 6 and 4, request (1).
    f[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f[22..28].copy_from_slice(&mac); // sender hardware address
    f[28..32].copy_from_slice(&ip.octets()); // sender protocol address
    f[32..38].copy_from_slice(&BROADCAST); // target hardware address (as keepalived)
    f[38..42].copy_from_slice(&ip.octets()); // target protocol address
    f
}

/// The ICMPv6 part of an unsolicited neighbour advertisement for `ip` at `mac` (32 bytes,
/// checksum 0: the kernel fills it in on a raw ICMPv6 socket).
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERT, 0, 0, 0]); // type, code, checksum
    m.extend_from_slice(&[NA_FLAG_OVERRIDE, 0, 0, 0]); // R=0 S=0 O=1, reserved
    m.extend_from_slice(&ip.octets()); // target address
    m.extend_from_slice(&[OPT_TARGET_LL_ADDR, 1]); // option type, length in units of 8
    m.extend_from_slice(&mac);
    m
}

fn with_capability(e: io::Error, what: &str) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} needs CAP_NET_RAW (run as root or grant the capability): {e}"),
        ),
        _ => io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}

/// Sends gratuitous ARPs and unsolicited neighbour advertisements on one interface.
pub struct Announcer {
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    arp: Mutex<Box<dyn pnet_datalink::DataLinkSender>>,
    icmp6: Socket,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("mac", &self.mac)
            .finish()
    }
}

impl Announcer {
    /// Opens the `AF_PACKET` socket (for ARP) and the raw ICMPv6 socket (for NAs) on
    /// interface `ifname` (index `ifindex`, address `mac`). Needs CAP_NET_RAW.
    pub fn new(ifname: &str, ifindex: u32, mac: [u8; 6]) -> io::Result<Announcer> {
        let packet = Socket::new(Domain::PACKET, Type::RAW.cloexec(), None)
            .map_err(|e| with_capability(e, &format!("opening an AF_PACKET socket on {ifname}")))?;
        let iface = pnet_datalink::NetworkInterface {
            name: ifname.to_owned(),
            description: String::new(),
            index: ifindex,
            mac: Some(pnet_datalink::MacAddr::from(mac)),
            ips: Vec::new(),
            flags: 0,
        };
        let config = pnet_datalink::Config {
            // Protocol 0: bound to the interface for sending, receives nothing.
            channel_type: pnet_datalink::ChannelType::Layer3(0),
            promiscuous: false,
            write_timeout: Some(Duration::from_secs(1)),
            read_buffer_size: 0,
            socket_fd: Some(packet.into_raw_fd()),
            ..pnet_datalink::Config::default()
        };
        let arp = match pnet_datalink::channel(&iface, config)
            .map_err(|e| with_capability(e, &format!("binding an AF_PACKET socket to {ifname}")))?
        {
            pnet_datalink::Channel::Ethernet(tx, _rx) => tx,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "pnet_datalink returned a non-Ethernet channel",
                ))
            }
        };

        let icmp6 = Socket::new(Domain::IPV6, Type::RAW.cloexec(), Some(Protocol::ICMPV6))
            .map_err(|e| with_capability(e, &format!("opening a raw ICMPv6 socket on {ifname}")))?;
        icmp6
            .bind_device(Some(ifname.as_bytes()))
            .map_err(|e| with_capability(e, &format!("SO_BINDTODEVICE {ifname}")))?;
        icmp6.set_multicast_hops_v6(255)?;
        icmp6.set_unicast_hops_v6(255)?;
        icmp6.set_multicast_if_v6(ifindex)?;
        icmp6.set_multicast_loop_v6(false)?;
        // Send only: keep nothing that arrives.
        icmp6.shutdown(std::net::Shutdown::Read).ok();

        Ok(Announcer {
            ifname: ifname.to_owned(),
            ifindex,
            mac,
            arp: Mutex::new(arp),
            icmp6,
        })
    }

    /// Sends one gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6) per
    /// VIP. Tries every VIP, then returns the first error, if any. Blocking, but each send
    /// is one small datagram on a local interface.
    pub fn announce(&self, vips: &[IpAddr]) -> io::Result<()> {
        let mut first_err = None;
        for vip in vips {
            let r = match vip {
                IpAddr::V4(ip) => self.send_garp(*ip),
                IpAddr::V6(ip) => self.send_na(*ip),
            };
            if let Err(e) = r {
                first_err.get_or_insert(io::Error::new(
                    e.kind(),
                    format!("announcing {vip} on {}: {e}", self.ifname),
                ));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn send_garp(&self, ip: Ipv4Addr) -> io::Result<()> {
        let frame = garp_frame(self.mac, ip);
        let mut tx = self.arp.lock().unwrap_or_else(|e| e.into_inner());
        tx.send_to(&frame, None)
            .unwrap_or_else(|| Err(io::Error::other("ARP frame larger than the buffer")))
    }

    fn send_na(&self, ip: Ipv6Addr) -> io::Result<()> {
        let msg = unsolicited_na(self.mac, ip);
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: ip.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        let to = SockaddrIn6::from(SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex));
        let n = sendmsg(
            self.icmp6.as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[ControlMessage::Ipv6PacketInfo(&info)],
            MsgFlags::MSG_DONTWAIT,
            Some(&to),
        )?;
        if n != msg.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn garp_is_a_broadcast_request_for_the_vip_itself() {
        let f = garp_frame(MAC, Ipv4Addr::new(198, 18, 0, 200));
        #[rustfmt::skip]
        let want: [u8; 42] = [
            // Ethernet: broadcast, our MAC, ARP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x08, 0x06,
            // ARP: Ethernet, IPv4, 6, 4, request
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            // sender MAC, sender IP
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 198, 18, 0, 200,
            // target MAC (broadcast, as keepalived), target IP = sender IP
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 198, 18, 0, 200,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn na_has_override_target_and_link_layer_option() {
        let ip: Ipv6Addr = "2001:db8::200".parse().unwrap();
        let m = unsolicited_na(MAC, ip);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            136, 0, 0, 0,            // type NA, code 0, checksum left to the kernel
            0x20, 0, 0, 0,           // Override only: not Router, not Solicited
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, // target
            2, 1,                    // target link-layer address option, 8 bytes
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
        ];
        assert_eq!(m, want);
        assert_eq!(m.len() % 8, 0, "ICMPv6 options end on an 8-byte boundary");
    }
}
