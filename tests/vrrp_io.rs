//! The VRRP I/O layer on a real link (root only): `VrrpSocket` adverts between two
//! namespaces (multicast and unicast, IPv4 and IPv6), `Vips` adding and removing addresses,
//! `Announcer` gratuitous ARP and unsolicited NA as tcpdump sees them, and keepalived
//! interop at the socket level (its adverts parse here; ours make it back off).
//!
//! The library code runs on a dedicated thread that has entered a master's network
//! namespace (`setns`) and runs its own current-thread tokio runtime ([`in_ns`]); the
//! topology helper's `Drop` removes namespaces and processes.

mod support;

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use apivip::vrrp::io::announce::Announcer;
use apivip::vrrp::io::socket::{Delivery, FilterTally, Received, VrrpSocket, RECV_BUFFER_LEN};
use apivip::vrrp::io::vip::{VipConfig, Vips};
use apivip::vrrp::packet::{
    AddrList, AdvertV3, Checksum, IpPair, Packet, Repr, VirtualAddrs, MULTICAST_V4, MULTICAST_V6,
};
use apivip::vrrp::units::{Centisecs, Priority, Vrid};
use nix::sched::CloneFlags;
use support::netns::{Node, Topology};
use support::{require_bin, require_root, wait_until_blocking};

const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `f` on a new thread inside namespace `ns`, on a current-thread tokio runtime.
fn in_ns<T, F, Fut>(ns: &str, f: F) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f())
    })
}

/// [`in_ns`] and wait for the result.
fn run_in_ns<T, F, Fut>(ns: &str, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    in_ns(ns, f).join().expect("namespace thread panicked")
}

/// The IPv6 link-local address of `node`'s interface (waits until it exists).
fn link_local(node: &Node) -> Ipv6Addr {
    let ifname = node.ifname.clone();
    run_in_ns(&node.ns, move || async move {
        let vips = Vips::new(&ifname, None).await.expect("Vips::new");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(ll) = vips.link_local_v6().await.expect("link_local_v6") {
                return ll;
            }
            assert!(
                Instant::now() < deadline,
                "no link-local address on {ifname}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// The IPv4 and the IPv6 case of a test between masters 0 (sender) and 1 (receiver):
/// the family's name, the sender's and the receiver's address (IPv4, or the
/// link-local IPv6 one VRRP sends from) and one VIP ending in `vip` (198.18.0.VIP,
/// fe80::1:VIP).
fn family_cases(m0: &Node, m1: &Node, vip: u8) -> [(&'static str, IpAddr, IpAddr, Vec<IpAddr>); 2] {
    let v6_vip: Ipv6Addr = format!("fe80::1:{vip}").parse().expect("VIP");
    [
        (
            "IPv4",
            IpAddr::V4(m0.ipv4),
            IpAddr::V4(m1.ipv4),
            vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, vip))],
        ),
        (
            "IPv6",
            IpAddr::V6(link_local(m0)),
            IpAddr::V6(link_local(m1)),
            vec![IpAddr::V6(v6_vip)],
        ),
    ]
}

fn v3_advert(vrid: u8, priority: u8, addrs: &[IpAddr]) -> Repr {
    let addrs = match addrs.first() {
        Some(IpAddr::V6(_)) => VirtualAddrs::V6(
            AddrList::try_new(
                addrs
                    .iter()
                    .filter_map(|a| match a {
                        IpAddr::V6(a) => Some(*a),
                        IpAddr::V4(_) => None,
                    })
                    .collect(),
            )
            .unwrap(),
        ),
        _ => VirtualAddrs::V4(
            AddrList::try_new(
                addrs
                    .iter()
                    .filter_map(|a| match a {
                        IpAddr::V4(a) => Some(*a),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
            )
            .unwrap(),
        ),
    };
    Repr::V3(AdvertV3 {
        vrid: Vrid::new_unchecked(vrid),
        priority: Priority::new(priority),
        max_advert_int: Centisecs::new_unchecked(10),
        addrs,
    })
}

fn pair(src: IpAddr, dst: IpAddr) -> IpPair {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 { src, dst },
        (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 { src, dst },
        _ => panic!("mixed families {src} {dst}"),
    }
}

fn emit(repr: &Repr, ip: &IpPair) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut Packet::new_unchecked(&mut buf[..], repr.family()),
        ip,
        Checksum::Verify,
    );
    buf
}

/// Receives on `sock` until a datagram from `from` arrives (others are skipped).
fn recv_from(sock: &VrrpSocket, from: IpAddr) -> io::Result<(Received, Vec<u8>)> {
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let r = sock.recv_timeout(&mut buf, left)?;
        if r.src == from {
            return Ok((r, buf[..r.len].to_vec()));
        }
    }
}

/// Opens a receiver in master 1 and a sender in master 0; the sender sends `repr` every
/// 50 ms (built per destination) until the receiver has one. Returns what arrived.
fn exchange(
    topo: &Topology,
    (src, src_delivery): (IpAddr, Delivery),
    (rx_primary, rx_delivery): (IpAddr, Delivery),
    repr: Repr,
    use_send: bool,
) -> (Received, Vec<u8>) {
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let rx_done = done.clone();
    let rx_if = m1.ifname.clone();
    let receiver = in_ns(&m1.ns, move || async move {
        let sock = VrrpSocket::open(&rx_if, rx_primary, rx_delivery).expect("open receiver");
        ready_tx.send(()).unwrap();
        let got = recv_from(&sock, src);
        rx_done.store(true, Ordering::SeqCst);
        got.expect("no advert within the deadline")
    });
    ready_rx
        .recv_timeout(DEADLINE)
        .expect("receiver did not open its socket");
    let tx_if = m0.ifname.clone();
    let sender = in_ns(&m0.ns, move || async move {
        let sock = VrrpSocket::open(&tx_if, src, src_delivery).expect("open sender");
        let deadline = Instant::now() + DEADLINE;
        while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
            if use_send {
                let dst = sock.destinations()[0];
                sock.send(&emit(&repr, &pair(src, dst))).expect("send");
            } else {
                for dst in sock.destinations() {
                    let msg = emit(&repr, &pair(src, dst));
                    sock.send_to(&msg, dst).expect("send_to");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let got = receiver.join().expect("receiver panicked");
    sender.join().expect("sender panicked");
    got
}

fn assert_advert(got: &(Received, Vec<u8>), src: IpAddr, dst: IpAddr, want: &Repr) {
    let (r, bytes) = got;
    assert_eq!(r.src, src, "source");
    assert_eq!(r.dst, dst, "destination");
    assert_eq!(r.ttl_or_hop_limit, 255, "TTL / hop limit");
    assert_eq!(r.len, bytes.len());
    let ip = r.ip_pair().expect("one family");
    let repr = Repr::from_bytes(bytes, &ip, Checksum::Verify).expect("advert parses");
    assert_eq!(&repr, want);
}

#[test]
fn multicast_adverts_cross_the_link_v4_and_v6() {
    if !require_root("multicast_adverts_cross_the_link_v4_and_v6") {
        return;
    }
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());

    let vip4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 200));
    let repr = v3_advert(10, 120, &[vip4]);
    let (src, dst) = (IpAddr::V4(m0.ipv4), IpAddr::V4(MULTICAST_V4));
    let got = exchange(
        &topo,
        (src, Delivery::Multicast),
        (IpAddr::V4(m1.ipv4), Delivery::Multicast),
        repr.clone(),
        true,
    );
    assert_advert(&got, src, dst, &repr);

    let (ll0, ll1) = (link_local(&m0), link_local(&m1));
    let vip6: IpAddr = "fe80::1:200".parse().unwrap();
    let repr = v3_advert(11, 130, &[vip6, "2001:db8::200".parse().unwrap()]);
    let (src, dst) = (IpAddr::V6(ll0), IpAddr::V6(MULTICAST_V6));
    let got = exchange(
        &topo,
        (src, Delivery::Multicast),
        (IpAddr::V6(ll1), Delivery::Multicast),
        repr.clone(),
        true,
    );
    assert_advert(&got, src, dst, &repr);
}

#[test]
fn unicast_adverts_reach_the_peer_v4_and_v6() {
    if !require_root("unicast_adverts_reach_the_peer_v4_and_v6") {
        return;
    }
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());

    let (a0, a1) = (IpAddr::V4(m0.ipv4), IpAddr::V4(m1.ipv4));
    let repr = v3_advert(20, 100, &[IpAddr::V4(Ipv4Addr::new(198, 18, 0, 210))]);
    let got = exchange(
        &topo,
        (a0, Delivery::Unicast(vec![a1])),
        (a1, Delivery::Unicast(vec![a0])),
        repr.clone(),
        false,
    );
    // The checksum was built with the unicast peer in the pseudo-header and verifies so.
    assert_advert(&got, a0, a1, &repr);

    let (a0, a1) = (IpAddr::V6(m0.ipv6), IpAddr::V6(m1.ipv6));
    let repr = v3_advert(21, 100, &["fe80::1:210".parse().unwrap()]);
    let got = exchange(
        &topo,
        (a0, Delivery::Unicast(vec![a1])),
        (a1, Delivery::Unicast(vec![a0])),
        repr.clone(),
        false,
    );
    assert_advert(&got, a0, a1, &repr);
}

#[test]
fn open_rejects_a_peer_of_the_other_family_and_a_missing_interface() {
    if !require_root("open_rejects_a_peer_of_the_other_family_and_a_missing_interface") {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let m0 = topo.master(0).clone();
    let (ifname, v4) = (m0.ifname.clone(), m0.ipv4);
    run_in_ns(&m0.ns, move || async move {
        let peer: IpAddr = "2001:db8::11".parse().unwrap();
        let err = VrrpSocket::open(&ifname, IpAddr::V4(v4), Delivery::Unicast(vec![peer]))
            .expect_err("mixed families");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = VrrpSocket::open("nosuchif0", IpAddr::V4(v4), Delivery::Multicast)
            .expect_err("no interface");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        let err = Vips::new("nosuchif0", None)
            .await
            .expect_err("no interface");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    });
}

fn ip_addr_show(node: &Node) -> String {
    let out = Command::new("ip")
        .args(["-n", &node.ns, "addr", "show", "dev", &node.ifname])
        .output()
        .expect("ip addr show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vips_are_added_and_removed_idempotently() {
    if !require_root("vips_are_added_and_removed_idempotently") {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let m0 = topo.master(0).clone();
    let vip4: IpAddr = "198.18.0.220".parse().unwrap();
    let vip6: IpAddr = "2001:db8::220".parse().unwrap();
    let vips = vec![
        VipConfig {
            addr: vip4,
            prefix_len: 32,
        },
        VipConfig {
            addr: vip6,
            prefix_len: 128,
        },
    ];
    let label = format!("{}:vip", m0.ifname);

    // Add, twice: the second is a no-op.
    let (ifname, l, v) = (m0.ifname.clone(), label.clone(), vips.clone());
    let (present, mac) = run_in_ns(&m0.ns, move || async move {
        let h = Vips::new(&ifname, Some(l)).await.expect("Vips::new");
        assert_eq!(h.present(&v).await.expect("present"), Vec::<IpAddr>::new());
        h.add(&v).await.expect("add");
        h.add(&v).await.expect("add again (idempotent)");
        (
            h.present(&v).await.expect("present"),
            h.mac().await.expect("mac"),
        )
    });
    assert_eq!(present, vec![vip4, vip6]);
    assert!(m0.holds(vip4) && m0.holds(vip6), "{}", ip_addr_show(&m0));
    let shown = ip_addr_show(&m0);
    let v4_line = shown
        .lines()
        .find(|l| l.contains("198.18.0.220/32"))
        .unwrap_or_else(|| panic!("no VIP line in {shown}"));
    assert!(v4_line.ends_with(&label), "label missing: {v4_line:?}");
    let v6_line = shown
        .lines()
        .find(|l| l.contains("2001:db8::220/128"))
        .unwrap_or_else(|| panic!("no VIP line in {shown}"));
    assert!(!v6_line.contains("tentative"), "{v6_line}");
    let mac_text = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert!(shown.contains(&format!("link/ether {mac_text}")), "{shown}");

    // Remove, twice.
    let (ifname, v) = (m0.ifname.clone(), vips.clone());
    let present = run_in_ns(&m0.ns, move || async move {
        let h = Vips::new(&ifname, None).await.expect("Vips::new");
        h.remove(&v).await.expect("remove");
        h.remove(&v).await.expect("remove again (idempotent)");
        h.present(&v).await.expect("present")
    });
    assert_eq!(present, Vec::<IpAddr>::new());
    assert!(!m0.holds(vip4) && !m0.holds(vip6), "{}", ip_addr_show(&m0));
    assert!(
        m0.holds(IpAddr::V4(m0.ipv4)),
        "the node's own address stays"
    );

    // A stale VIP an earlier run left with another prefix length is removed too (a new
    // handle: recognised by its mark alone), both families.
    let (ifname, v) = (m0.ifname.clone(), vips.clone());
    let stale: Vec<VipConfig> = v
        .iter()
        .map(|c| VipConfig {
            addr: c.addr,
            prefix_len: if c.addr.is_ipv4() { 24 } else { 64 },
        })
        .collect();
    run_in_ns(&m0.ns, move || async move {
        let h = Vips::new(&ifname, None).await.expect("Vips::new");
        h.add(&stale).await.expect("add stale");
        let fresh = Vips::new(&ifname, None).await.expect("Vips::new");
        assert_eq!(
            fresh.present_by_owner(&v).await.expect("present"),
            (vec![vip4, vip6], vec![])
        );
        fresh.remove(&v).await.expect("remove stale");
    });
    assert!(!m0.holds(vip4) && !m0.holds(vip6), "{}", ip_addr_show(&m0));

    // The same address configured by an operator (no mark) is never removed.
    m0.exec_ok(&["ip", "addr", "add", "198.18.0.220/24", "dev", &m0.ifname])
        .expect("ip addr add");
    m0.exec_ok(&[
        "ip",
        "addr",
        "add",
        "2001:db8::220/64",
        "dev",
        &m0.ifname,
        "nodad",
    ])
    .expect("ip addr add");
    let (ifname, v) = (m0.ifname.clone(), vips.clone());
    let label2 = label.clone();
    let owners = run_in_ns(&m0.ns, move || async move {
        let h = Vips::new(&ifname, Some(label2)).await.expect("Vips::new");
        h.remove(&v).await.expect("remove");
        h.present_by_owner(&v).await.expect("present")
    });
    assert_eq!(owners, (vec![], vec![vip4, vip6]));
    assert!(m0.holds(vip4) && m0.holds(vip6), "{}", ip_addr_show(&m0));

    // A label that does not name the interface is refused.
    let ifname = m0.ifname.clone();
    let err = run_in_ns(&m0.ns, move || async move {
        Vips::new(&ifname, Some("other:vip".into())).await.err()
    })
    .expect("bad label refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}

fn read_pcap(path: &Path) -> String {
    let out = Command::new("tcpdump")
        .args(["-nn", "-e", "-v", "-r"])
        .arg(path)
        .output()
        .expect("tcpdump -r");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn garp_and_unsolicited_na_appear_on_the_wire() {
    if !require_root("garp_and_unsolicited_na_appear_on_the_wire") {
        return;
    }
    if require_bin("garp_and_unsolicited_na_appear_on_the_wire", "tcpdump").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    let pcap = dir.path().join("announce.pcap");
    let mut cap = topo
        .capture(&m1, "arp or icmp6", &pcap)
        .expect("tcpdump in master 1");

    let vip4: IpAddr = "198.18.0.230".parse().unwrap();
    let vip6: IpAddr = "2001:db8::230".parse().unwrap();
    let ifname = m0.ifname.clone();
    let mac = run_in_ns(&m0.ns, move || async move {
        let h = Vips::new(&ifname, None).await.expect("Vips::new");
        h.add(&[
            VipConfig {
                addr: vip4,
                prefix_len: 32,
            },
            VipConfig {
                addr: vip6,
                prefix_len: 128,
            },
        ])
        .await
        .expect("add");
        let mac = h.mac().await.expect("mac");
        let ann = Announcer::new(&ifname, h.ifindex(), mac).expect("Announcer::new");
        ann.announce(&[vip4, vip6]).expect("announce");
        mac
    });
    let mac_text = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    // Byte for byte keepalived 2.2.7's GARP (captured): target hardware address broadcast,
    // which tcpdump prints in parentheses.
    let garp = format!("Request who-has {vip4} (ff:ff:ff:ff:ff:ff) tell {vip4}");
    let na = format!("neighbor advertisement, length 32, tgt is {vip6}, Flags [override]");
    let seen = wait_until_blocking(DEADLINE, || {
        let text = read_pcap(&pcap);
        text.contains(&garp) && text.contains(&na)
    });
    let text = cap.stop_and_read().expect("read capture");
    assert!(seen, "GARP / NA not captured:\n{text}");
    let garp_line = text.lines().find(|l| l.contains(&garp)).unwrap();
    assert!(
        garp_line.contains(&format!("{mac_text} > ff:ff:ff:ff:ff:ff")),
        "GARP not broadcast from our MAC: {garp_line}"
    );
    assert!(garp_line.contains("ethertype ARP"), "{garp_line}");
    // The NA's entry: its header line (hop limit, addresses) and the option line after it.
    let entry: Vec<&str> = text
        .split('\n')
        .skip_while(|l| !l.contains(&na))
        .take(2)
        .collect();
    let header = text
        .lines()
        .find(|l| l.contains(&na))
        .expect("NA line present");
    assert!(header.contains("hlim 255"), "hop limit: {header}");
    assert!(
        header.contains(&format!("{vip6} > ff02::1")),
        "NA from the VIP to all nodes: {header}"
    );
    assert!(header.contains("[icmp6 sum ok]"), "checksum: {header}");
    assert!(
        header.contains("33:33:00:00:00:01"),
        "all-nodes MAC: {header}"
    );
    assert!(
        entry.iter().any(|l| l.contains(&mac_text)),
        "target link-layer option with our MAC: {entry:?}"
    );
}

/// Writes a keepalived config for master 1: two VRRPv3 instances at 100 ms, VRID 51 (IPv4,
/// VIP 198.18.0.241) and VRID 52 (IPv6, VIP 2001:db8::241), priority 150.
fn keepalived_conf(dir: &Path, ifname: &str) -> std::path::PathBuf {
    let conf = dir.join("keepalived.conf");
    let text = format!(
        "global_defs {{
    router_id apivip_io_test
    vrrp_version 3
}}
vrrp_instance V4 {{
    state MASTER
    interface {ifname}
    virtual_router_id 51
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        198.18.0.241/24
    }}
}}
vrrp_instance V6 {{
    state MASTER
    interface {ifname}
    virtual_router_id 52
    priority 150
    advert_int 0.1
    virtual_ipaddress {{
        2001:db8::241/64
    }}
}}
"
    );
    std::fs::write(&conf, text).unwrap();
    conf
}

#[test]
fn keepalived_adverts_parse_and_ours_make_it_back_off() {
    const TEST: &str = "keepalived_adverts_parse_and_ours_make_it_back_off";
    if !require_root(TEST) {
        return;
    }
    let Some(keepalived) = require_bin(TEST, "keepalived") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    let ll0 = link_local(&m0);
    let ll1 = link_local(&m1);
    let conf = keepalived_conf(dir.path(), &m1.ifname);
    let pid = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let ka = m1
        .spawn(
            &keepalived,
            [
                "-n".to_string(),
                "-l".into(),
                "-D".into(),
                "-f".into(),
                conf.to_string_lossy().into_owned(),
                "-p".into(),
                pid("k.pid"),
                "-r".into(),
                pid("v.pid"),
                "-c".into(),
                pid("c.pid"),
                "-b".into(),
                pid("b.pid"),
            ],
            &dir.path().join("keepalived.log"),
        )
        .expect("start keepalived");

    // 1. keepalived's adverts (both families) arrive here and parse, checksum verified.
    let ifname = m0.ifname.clone();
    let (m0v4, m1v4) = (m0.ipv4, m1.ipv4);
    let got = run_in_ns(&m0.ns, move || async move {
        let s4 = VrrpSocket::open(&ifname, IpAddr::V4(m0v4), Delivery::Multicast).expect("v4");
        let s6 = VrrpSocket::open(&ifname, IpAddr::V6(ll0), Delivery::Multicast).expect("v6");
        let r4 = recv_from(&s4, IpAddr::V4(m1v4));
        let r6 = recv_from(&s6, IpAddr::V6(ll1));
        (r4, r6)
    });
    let (Ok(r4), Ok(r6)) = got else {
        panic!("no keepalived adverts; keepalived log:\n{}", ka.log());
    };
    let want4 = v3_advert(51, 150, &["198.18.0.241".parse().unwrap()]);
    assert_advert(&r4, IpAddr::V4(m1v4), IpAddr::V4(MULTICAST_V4), &want4);
    let (rx6, bytes6) = &r6;
    assert_eq!(rx6.dst, IpAddr::V6(MULTICAST_V6));
    assert_eq!(rx6.ttl_or_hop_limit, 255);
    let repr6 = Repr::from_bytes(bytes6, &rx6.ip_pair().unwrap(), Checksum::Verify)
        .expect("keepalived's IPv6 advert parses with the checksum verified");
    assert_eq!(repr6.vrid().get(), 52);
    assert_eq!(repr6.priority().get(), 150);

    // 2. Our higher-priority adverts for VRID 51 make keepalived give up the IPv4 VIP.
    let vip: IpAddr = "198.18.0.241".parse().unwrap();
    assert_eq!(
        topo.wait_holder(vip, Some(1), DEADLINE),
        Some(1),
        "keepalived never took its VIP; log:\n{}",
        ka.log()
    );
    let done = Arc::new(AtomicBool::new(false));
    let tx_done = done.clone();
    let ifname = m0.ifname.clone();
    let sender = in_ns(&m0.ns, move || async move {
        let sock = VrrpSocket::open(&ifname, IpAddr::V4(m0v4), Delivery::Multicast).expect("open");
        let repr = v3_advert(51, 200, &[vip]);
        let msg = emit(&repr, &pair(IpAddr::V4(m0v4), IpAddr::V4(MULTICAST_V4)));
        let deadline = Instant::now() + DEADLINE + DEADLINE;
        while !tx_done.load(Ordering::SeqCst) && Instant::now() < deadline {
            sock.send(&msg).expect("send");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let gone = wait_until_blocking(DEADLINE, || !m1.holds(vip));
    done.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    assert!(
        gone,
        "keepalived kept the VIP despite priority 200 adverts; log:\n{}",
        ka.log()
    );
    assert!(
        ka.wait_for_log("Entering BACKUP STATE", DEADLINE),
        "keepalived log:\n{}",
        ka.log()
    );
}

/// Run by [`missing_capabilities_are_named`] in a child process without CAP_NET_RAW and
/// CAP_NET_ADMIN (inside a test namespace); does nothing when run directly.
#[test]
fn child_without_capabilities() {
    if std::env::var_os("APIVIP_IO_CHILD_IFNAME").is_none() {
        return;
    }
    let ifname = std::env::var("APIVIP_IO_CHILD_IFNAME").unwrap();
    let err = VrrpSocket::open(
        &ifname,
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)),
        Delivery::Multicast,
    )
    .expect_err("raw socket without CAP_NET_RAW");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("needs CAP_NET_RAW"), "{err}");
    let err = Announcer::new(&ifname, 1, [2, 0, 0, 0, 0, 1]).expect_err("AF_PACKET");
    assert!(err.to_string().contains("needs CAP_NET_RAW"), "{err}");
    let err = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let h = Vips::new(&ifname, None)
                .await
                .expect("reading needs no capability");
            h.add(&[VipConfig {
                addr: "198.18.0.250".parse().unwrap(),
                prefix_len: 32,
            }])
            .await
        })
        .expect_err("adding an address without CAP_NET_ADMIN");
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("needs CAP_NET_ADMIN"), "{err}");
    println!("CHILD-OK");
}

#[test]
fn missing_capabilities_are_named() {
    const TEST: &str = "missing_capabilities_are_named";
    if !require_root(TEST) {
        return;
    }
    let Some(setpriv) = require_bin(TEST, "setpriv") else {
        return;
    };
    let topo = Topology::new(1).expect("topology");
    let m0 = topo.master(0).clone();
    let exe = std::env::current_exe().unwrap();
    // Root regains only what the bounding set still holds across exec.
    let out = m0
        .command(setpriv)
        .args(["--bounding-set", "-net_raw,-net_admin", "--"])
        .arg(exe)
        .args(["--exact", "child_without_capabilities", "--nocapture"])
        .env("APIVIP_IO_CHILD_IFNAME", &m0.ifname)
        .output()
        .expect("run child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("CHILD-OK"), "{text}");
    assert!(!m0.holds("198.18.0.250".parse().unwrap()));
}

/// Waits until `fd` is readable (or the deadline).
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(10_000u16)), Ok(n) if n > 0)
}

/// The doorbell on a real kernel: its filter drops exact repeats of the armed message
/// and rings for anything else (another priority, shorter, longer), on IPv4 (whose
/// filter sees the IP header first) and IPv6 (the message alone); silenced, it rings for
/// nothing. The VRRP socket meanwhile receives everything, each datagram with its kernel
/// receive time.
#[test]
fn doorbell_rings_for_all_but_repeats_and_datagrams_carry_receive_times() {
    use apivip::vrrp::io::socket::Doorbell;
    use std::os::fd::AsFd;
    if !require_root("doorbell_rings_for_all_but_repeats_and_datagrams_carry_receive_times") {
        return;
    }
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    for (family, src, rx_addr, vips) in family_cases(&m0, &m1, 220) {
        let rx_if = m1.ifname.clone();
        let (sock, bell) = run_in_ns(&m1.ns, move || async move {
            let sock = VrrpSocket::open(&rx_if, rx_addr, Delivery::Multicast).expect("open");
            let bell = Doorbell::open(&sock).expect("open the doorbell");
            (sock, bell)
        });
        let tx_if = m0.ifname.clone();
        let tx = run_in_ns(&m0.ns, move || async move {
            VrrpSocket::open(&tx_if, src, Delivery::Multicast).expect("open sender")
        });
        let dst = tx.destinations()[0];
        let a = emit(&v3_advert(30, 100, &vips), &pair(src, dst));
        let zero = emit(&v3_advert(30, 0, &vips), &pair(src, dst));
        let b = emit(&v3_advert(30, 101, &vips), &pair(src, dst));
        let short = a[..a.len() - 4].to_vec();
        let long = [&a[..], &[0u8; 4][..]].concat();
        let mut buf = vec![0u8; RECV_BUFFER_LEN];
        // Sends `msgs` in order, waits for the last one to ring, and returns how many rang.
        let ring_count = |msgs: &[&[u8]]| -> usize {
            let mut buf = vec![0u8; RECV_BUFFER_LEN];
            let before = SystemTime::now();
            for m in msgs {
                tx.send_to(m, dst).expect("send");
            }
            assert!(readable(bell.as_fd()), "{family}: the doorbell never rang");
            // Every datagram reached the VRRP socket, in order, stamped by the kernel.
            let mut last = before;
            for (i, m) in msgs.iter().enumerate() {
                let r = sock.recv_timeout(&mut buf, DEADLINE).expect("datagram");
                assert_eq!(&buf[..r.len], *m, "{family}: datagram {i}");
                let at = r.at.expect("a kernel receive time");
                assert!(
                    at >= last && at <= SystemTime::now(),
                    "{family}: {i} at {at:?}"
                );
                last = at;
            }
            bell.drain()
        };
        bell.ring_unless(&a).expect("filter");
        assert_eq!(ring_count(&[&a, &a, &a, &b]), 1, "{family}: repeats rang");
        assert_eq!(
            ring_count(&[&a, &zero, &a, &short, &a, &long, &a, &b]),
            4,
            "{family}: priority 0, shorter and longer must ring, repeats not"
        );
        bell.silence().expect("silence");
        for m in [&a, &b, &zero] {
            tx.send_to(m, dst).expect("send");
        }
        for m in [&a, &b, &zero] {
            let r = sock.recv_timeout(&mut buf, DEADLINE).expect("datagram");
            assert_eq!(&buf[..r.len], *m, "{family}");
        }
        assert_eq!(bell.drain(), 0, "{family}: rang while silenced");
        bell.ring_unless(&a).expect("filter");
        assert_eq!(ring_count(&[&b]), 1, "{family}: re-armed");
    }
}

/// A bare raw protocol 112 socket in `node`'s namespace that sends with TTL / hop limit
/// `ttl` from `src` (what an off-link or misconfigured sender puts on the wire; a
/// [`VrrpSocket`] always sends 255).
fn raw_sender(node: &Node, src: IpAddr, ttl: u32) -> socket2::Socket {
    use socket2::{Domain, Protocol, Socket, Type};
    let ifname = node.ifname.clone();
    run_in_ns(&node.ns, move || async move {
        let domain = if src.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(112))).expect("raw socket");
        sock.bind_device(Some(ifname.as_bytes()))
            .expect("bind_device");
        let ifindex = nix::net::if_::if_nametoindex(ifname.as_str()).expect("ifindex");
        match src {
            IpAddr::V4(a) => {
                sock.set_multicast_if_v4(&a).expect("IP_MULTICAST_IF");
                sock.set_multicast_ttl_v4(ttl).expect("IP_MULTICAST_TTL");
                sock.set_ttl_v4(ttl).expect("IP_TTL");
            }
            IpAddr::V6(a) => {
                sock.bind(&std::net::SocketAddrV6::new(a, 0, 0, ifindex).into())
                    .expect("bind the source");
                sock.set_multicast_if_v6(ifindex)
                    .expect("IPV6_MULTICAST_IF");
                sock.set_multicast_hops_v6(ttl)
                    .expect("IPV6_MULTICAST_HOPS");
                sock.set_unicast_hops_v6(ttl).expect("IPV6_UNICAST_HOPS");
            }
        }
        sock
    })
}

fn raw_send(sock: &socket2::Socket, msg: &[u8], dst: IpAddr, ifindex: u32) {
    let to: socket2::SockAddr = match dst {
        IpAddr::V4(d) => std::net::SocketAddrV4::new(d, 0).into(),
        IpAddr::V6(d) => std::net::SocketAddrV6::new(d, 0, 0, ifindex).into(),
    };
    let n = sock.send_to(msg, &to).expect("raw send");
    assert_eq!(n, msg.len());
}

/// Receives on `witness` (a socket without a filter on the same interface) until
/// `count` datagrams from `from` have arrived. The kernel hands each datagram to every
/// raw socket of the protocol in one pass, so once the witness has them all, every
/// other socket has queued or dropped its copy.
fn witness_saw(witness: &VrrpSocket, from: IpAddr, count: usize) {
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let mut seen = 0;
    while seen < count {
        let r = witness
            .recv_timeout(&mut buf, DEADLINE)
            .unwrap_or_else(|e| panic!("witness saw {seen} of {count} datagrams from {from}: {e}"));
        if r.src == from {
            seen += 1;
        }
    }
}

/// Everything queued on `sock`, without waiting.
fn queued(sock: &VrrpSocket) -> Vec<(Received, Vec<u8>)> {
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let mut out = Vec::new();
    loop {
        match sock.try_recv(&mut buf) {
            Ok(r) => out.push((r, buf[..r.len].to_vec())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("try_recv: {e}"),
        }
    }
}

fn filter(version: u8, vrid: u8) -> apivip::vrrp::io::socket::Filter {
    apivip::vrrp::io::socket::Filter {
        version: apivip::vrrp::packet::Version::from(version),
        vrid: Vrid::new_unchecked(vrid),
    }
}

/// The kernel filter of a VRRP socket on a real kernel (multicast, IPv4 and IPv6): a
/// datagram with TTL / hop limit 64, another VRID, version 2 on a VRRPv3 instance, or
/// another message type never reaches the socket (nor rings its doorbell), while our
/// adverts do, with no drop counted. An unfiltered socket beside it sees all of them, so
/// the senders did put them on the wire.
#[test]
fn kernel_filter_drops_what_the_election_never_accepts() {
    use apivip::vrrp::io::socket::Doorbell;
    if !require_root("kernel_filter_drops_what_the_election_never_accepts") {
        return;
    }
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    let ifindex0 = m0.run_in({
        let i = m0.ifname.clone();
        move || nix::net::if_::if_nametoindex(i.as_str()).expect("ifindex")
    });
    let ifindex0 = ifindex0.expect("run_in");
    for (family, src, rx_addr, vips) in family_cases(&m0, &m1, 230) {
        let rx_if = m1.ifname.clone();
        let (sock, bell, witness, tally) = run_in_ns(&m1.ns, move || async move {
            let sock =
                VrrpSocket::open_filtered(&rx_if, rx_addr, Delivery::Multicast, filter(3, 40))
                    .expect("open filtered");
            let bell = Doorbell::open(&sock).expect("open the doorbell");
            let witness = VrrpSocket::open(&rx_if, rx_addr, Delivery::Multicast).expect("open");
            let tally = FilterTally::open(&sock).expect("open the tally");
            (sock, bell, witness, tally)
        });
        let mut tally = tally.expect("a filtered socket has a tally");
        assert_eq!(sock.filter(), Some(filter(3, 40)));
        let tx_if = m0.ifname.clone();
        let tx = run_in_ns(&m0.ns, move || async move {
            VrrpSocket::open(&tx_if, src, Delivery::Multicast).expect("open sender")
        });
        let ttl64 = raw_sender(&m0, src, 64);
        let dst = tx.destinations()[0];
        let good = emit(&v3_advert(40, 100, &vips), &pair(src, dst));
        let good2 = emit(&v3_advert(40, 101, &vips), &pair(src, dst));
        let other_vrid = emit(&v3_advert(41, 100, &vips), &pair(src, dst));
        let mut v2 = good.clone();
        v2[0] = 0x21;
        let mut other_type = good.clone();
        other_type[0] = 0x32;
        bell.ring_unless(&good).expect("arm the doorbell");

        raw_send(&ttl64, &good, dst, ifindex0);
        for m in [&other_vrid, &v2, &other_type, &good] {
            tx.send_to(m, dst).expect("send");
        }
        witness_saw(&witness, src, 5);
        let got = queued(&sock);
        let bytes: Vec<&Vec<u8>> = got.iter().map(|(_, b)| b).collect();
        assert_eq!(
            bytes,
            [&good],
            "{family}: only the TTL 255, VRRPv3, VRID 40 advert may pass"
        );
        let (r, _) = &got[0];
        assert_eq!(
            (r.src, r.ttl_or_hop_limit, r.dropped),
            (src, 255, 0),
            "{family}"
        );
        assert_eq!(
            bell.drain(),
            0,
            "{family}: the doorbell rang for what the filter drops"
        );
        assert_eq!(
            tally.drain(),
            4,
            "{family}: the tally counts exactly what the filter dropped"
        );

        // A different advert of ours passes and rings; the tally does not count it.
        tx.send_to(&good2, dst).expect("send");
        witness_saw(&witness, src, 1);
        let got = queued(&sock);
        assert_eq!(got.len(), 1, "{family}");
        assert_eq!(got[0].1, good2, "{family}");
        assert_eq!(bell.drain(), 1, "{family}: the doorbell did not ring");
        assert_eq!(tally.drain(), 4, "{family}");

        // A burst the tally's small buffer cannot hold: what it read plus what the
        // kernel dropped on it, as the next datagram after a drain reports it.
        const BURST: usize = 500;
        for _ in 0..BURST / 50 {
            for _ in 0..50 {
                tx.send_to(&other_vrid, dst).expect("send");
            }
            witness_saw(&witness, src, 50);
        }
        tally.drain();
        tx.send_to(&other_vrid, dst).expect("send");
        witness_saw(&witness, src, 1);
        assert_eq!(
            tally.drain(),
            4 + BURST as u64 + 1,
            "{family}: the tally after an overflow"
        );
        assert!(queued(&sock).is_empty(), "{family}");
    }
}

/// In unicast mode the kernel filter admits only the peers (IPv4 and IPv6): a third
/// node's advert, right in every other respect, never reaches the socket.
#[test]
fn kernel_filter_admits_only_unicast_peers() {
    if !require_root("kernel_filter_admits_only_unicast_peers") {
        return;
    }
    let topo = Topology::new(3).expect("topology");
    let (m0, m1, m2) = (
        topo.master(0).clone(),
        topo.master(1).clone(),
        topo.master(2).clone(),
    );
    let cases = [
        (
            [m0.ipv4, m1.ipv4, m2.ipv4].map(IpAddr::V4),
            vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 231))],
        ),
        (
            [m0.ipv6, m1.ipv6, m2.ipv6].map(IpAddr::V6),
            vec!["2001:db8::231".parse().unwrap()],
        ),
    ];
    for ([peer, rx_addr, stranger], vips) in cases {
        let family = if peer.is_ipv4() { "IPv4" } else { "IPv6" };
        let rx_if = m1.ifname.clone();
        let (sock, witness) = run_in_ns(&m1.ns, move || async move {
            let peers = Delivery::Unicast(vec![peer]);
            let sock = VrrpSocket::open_filtered(&rx_if, rx_addr, peers.clone(), filter(3, 41))
                .expect("open filtered");
            let witness = VrrpSocket::open(&rx_if, rx_addr, peers).expect("open");
            (sock, witness)
        });
        let sender = |node: &Node, src: IpAddr| {
            let ifname = node.ifname.clone();
            run_in_ns(&node.ns, move || async move {
                VrrpSocket::open(&ifname, src, Delivery::Unicast(vec![rx_addr])).expect("sender")
            })
        };
        let (tx_peer, tx_stranger) = (sender(&m0, peer), sender(&m2, stranger));
        let from_stranger = emit(&v3_advert(41, 200, &vips), &pair(stranger, rx_addr));
        let from_peer = emit(&v3_advert(41, 100, &vips), &pair(peer, rx_addr));
        tx_stranger.send_to(&from_stranger, rx_addr).expect("send");
        witness_saw(&witness, stranger, 1);
        tx_peer.send_to(&from_peer, rx_addr).expect("send");
        witness_saw(&witness, peer, 1);
        let got = queued(&sock);
        let srcs: Vec<IpAddr> = got.iter().map(|(r, _)| r.src).collect();
        assert_eq!(srcs, [peer], "{family}: only the peer may pass");
        assert_eq!(got[0].1, from_peer, "{family}");
    }
}

/// `SO_RXQ_OVFL` on a real kernel (IPv4 and IPv6): with a tiny receive buffer and nobody
/// reading, a burst overflows the queue, and the next datagram read afterwards carries
/// exactly how many the kernel dropped. A socket opened normally has a large buffer.
#[test]
fn drop_counter_reports_a_receive_buffer_overflow() {
    if !require_root("drop_counter_reports_a_receive_buffer_overflow") {
        return;
    }
    const BURST: usize = 200;
    const BATCH: usize = 25;
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    for (family, src, rx_addr, vips) in family_cases(&m0, &m1, 232) {
        let rx_if = m1.ifname.clone();
        let (sock, witness) = run_in_ns(&m1.ns, move || async move {
            let sock =
                VrrpSocket::open_filtered(&rx_if, rx_addr, Delivery::Multicast, filter(3, 42))
                    .expect("open filtered");
            let witness = VrrpSocket::open(&rx_if, rx_addr, Delivery::Multicast).expect("open");
            (sock, witness)
        });
        // Root has CAP_NET_ADMIN: SO_RCVBUFFORCE grants the full 1 MiB (doubled by the
        // kernel for its bookkeeping), whatever net.core.rmem_max says.
        let granted = witness.recv_buffer().expect("SO_RCVBUF");
        assert!(
            granted >= apivip::vrrp::io::socket::RECV_BUFFER_BYTES,
            "{family}: receive buffer {granted}"
        );
        let small = sock.set_recv_buffer(1).expect("shrink the buffer");
        assert!(small < 16 * 1024, "{family}: buffer {small}");
        let tx_if = m0.ifname.clone();
        let tx = run_in_ns(&m0.ns, move || async move {
            VrrpSocket::open(&tx_if, src, Delivery::Multicast).expect("open sender")
        });
        let dst = tx.destinations()[0];
        let msg = emit(&v3_advert(42, 100, &vips), &pair(src, dst));
        // In batches the witness has seen, so no datagram is lost before the sockets
        // (the device backlog holds 1,000).
        for _ in 0..BURST / BATCH {
            for _ in 0..BATCH {
                tx.send_to(&msg, dst).expect("send");
            }
            witness_saw(&witness, src, BATCH);
        }
        let got = queued(&sock);
        let kept = got.len();
        assert!(
            kept > 0 && kept < BURST,
            "{family}: {kept} of {BURST} queued in a {small}-byte buffer"
        );
        assert!(
            got.iter().all(|(r, _)| r.dropped == 0),
            "{family}: nothing was dropped before the queue filled"
        );
        tx.send_to(&msg, dst).expect("send");
        witness_saw(&witness, src, 1);
        let after = queued(&sock);
        assert_eq!(after.len(), 1, "{family}");
        assert_eq!(
            after[0].0.dropped as usize,
            BURST - kept,
            "{family}: the drop count"
        );
    }
}

/// The priority floor in the kernel filter (IPv4 and IPv6), as a preempting Backup at
/// priority 100 installs it while a flood of lower priorities goes on: adverts of
/// priority 1 to 99 never reach the socket nor ring its doorbell; priority 0 (a
/// resignation) and 100 and above still do; removing the floor lets everything
/// through again. An unfiltered socket beside it sees all of them.
#[test]
fn kernel_priority_floor_drops_only_lower_non_zero_priorities() {
    use apivip::vrrp::io::socket::Doorbell;
    if !require_root("kernel_priority_floor_drops_only_lower_non_zero_priorities") {
        return;
    }
    let topo = Topology::new(2).expect("topology");
    let (m0, m1) = (topo.master(0).clone(), topo.master(1).clone());
    for (family, src, rx_addr, vips) in family_cases(&m0, &m1, 230) {
        let rx_if = m1.ifname.clone();
        let (mut sock, mut bell, witness) = run_in_ns(&m1.ns, move || async move {
            let sock =
                VrrpSocket::open_filtered(&rx_if, rx_addr, Delivery::Multicast, filter(3, 43))
                    .expect("open filtered");
            let bell = Doorbell::open(&sock).expect("open the doorbell");
            let witness = VrrpSocket::open(&rx_if, rx_addr, Delivery::Multicast).expect("open");
            (sock, bell, witness)
        });
        let tx_if = m0.ifname.clone();
        let tx = run_in_ns(&m0.ns, move || async move {
            VrrpSocket::open(&tx_if, src, Delivery::Multicast).expect("open sender")
        });
        let dst = tx.destinations()[0];
        let advert = |p: u8| emit(&v3_advert(43, p, &vips), &pair(src, dst));
        sock.set_priority_floor(Some(100)).expect("set the floor");
        assert_eq!(sock.priority_floor(), Some(100));
        bell.set_priority_floor(Some(100));
        // The doorbell armed with a template none of these is: all that pass ring.
        bell.ring_unless(&advert(254)).expect("arm the doorbell");
        let sent = [1u8, 50, 99, 0, 100, 150, 255];
        for p in sent {
            tx.send_to(&advert(p), dst).expect("send");
        }
        witness_saw(&witness, src, sent.len());
        let got: Vec<u8> = queued(&sock).iter().map(|(_, b)| b[2]).collect();
        assert_eq!(
            got,
            [0, 100, 150, 255],
            "{family}: only priority 0 and 100 or above may pass the floor"
        );
        assert_eq!(
            bell.drain(),
            4,
            "{family}: the doorbell rang for the others"
        );

        sock.set_priority_floor(None).expect("remove the floor");
        for p in [1u8, 99] {
            tx.send_to(&advert(p), dst).expect("send");
        }
        witness_saw(&witness, src, 2);
        let got: Vec<u8> = queued(&sock).iter().map(|(_, b)| b[2]).collect();
        assert_eq!(
            got,
            [1, 99],
            "{family}: without the floor everything passes"
        );
    }
}

/// The election thread learns of link and address changes from netlink notifications,
/// not only from its once-a-second read: `vip::watch_changes` yields after an address
/// is removed, a link set down and up. (An unbound netlink socket receives no kernel
/// notification at all; this caught exactly that.)
#[test]
fn netlink_notifications_arrive_for_address_and_link_changes() {
    if !require_root("netlink_notifications_arrive_for_address_and_link_changes") {
        return;
    }
    let topo = Topology::new(1).expect("topology");
    let m0 = topo.master(0).clone();
    let ns = m0.ns.clone();
    let seen = run_in_ns(&ns, move || async move {
        use futures_util::StreamExt;
        let mut changes = apivip::vrrp::io::vip::watch_changes().expect("watch");
        let mut seen = Vec::new();
        let addr = format!("{}/24", "198.18.0.221");
        let steps: [&[&str]; 3] = [
            &["addr", "add", &addr, "dev", &m0.ifname],
            &["link", "set", &m0.ifname, "down"],
            &["link", "set", &m0.ifname, "up"],
        ];
        for step in steps {
            // `ip` in this thread's namespace (the thread joined it).
            let ok = std::process::Command::new("ip")
                .args(step)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {step:?}");
            let got = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
            seen.push(matches!(got, Ok(Some(()))));
            // What else that change caused.
            while tokio::time::timeout(Duration::from_millis(50), changes.next())
                .await
                .is_ok()
            {}
        }
        seen
    });
    assert_eq!(seen, [true, true, true]);
}
