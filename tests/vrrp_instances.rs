//! Several VRRP instances in one `apivip run` (root, network namespaces): an IPv4 and an
//! IPv6 VIP of a dual-stack control plane, each its own election, and a sync group that
//! moves them together (keepalived's `vrrp_sync_group`).

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::netns::{NsProcess, Topology};
use support::vrrp::{self, need};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const VIP4: &str = "198.18.0.5";
const VIP6: &str = "2001:db8::5";
const DEADLINE: Duration = Duration::from_secs(20);

/// One instance of node `i`'s config: `family` 4 or 6, its priority, in sync group
/// `group` (if any).
fn instance(topo: &Topology, i: usize, family: u8, prio: u8, group: Option<&str>) -> String {
    let m = topo.master(i);
    let (address, vip) = match family {
        4 => (m.ipv4.to_string(), format!("{VIP4}/24")),
        _ => (m.ipv6.to_string(), format!("{VIP6}/64")),
    };
    let group = group.map_or_else(String::new, |g| format!("\n    sync_group: {g}"));
    format!(
        "  - name: api-v{family}\n    interface: {}\n    address: '{address}'\n    vrid: 51\n    priority: {prio}\n    advert_interval: 100ms\n    vips: ['{vip}']\n    handover_timeout: 1s\n    track: backend:master-{i}{group}\n",
        m.ifname
    )
}

/// Writes node `i`'s config: the two instances with priorities `v4` and `v6`, both in
/// sync group `api` when `grouped`.
fn write_config(topo: &Topology, dir: &Path, i: usize, v4: u8, v6: u8, grouped: bool) {
    let backends = vrrp::backends_yaml(topo);
    let group = grouped.then_some("api");
    std::fs::write(
        dir.join(format!("apivip-{i}.yaml")),
        format!(
            "backends:\n{backends}apiserver:\n  listen: []\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms}}\nvrrp:\n{}{}shutdown: {{drain_timeout: 1s}}\n",
            instance(topo, i, 4, v4, group),
            instance(topo, i, 6, v6, group)
        ),
    )
    .unwrap();
}

struct Nodes<'a> {
    topo: &'a Topology,
    _apis: Vec<NsProcess>,
    nodes: Vec<NsProcess>,
}

impl Nodes<'_> {
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i}\n{}", vrrp::tail(&n.log(), 80)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Who holds the IPv4 and the IPv6 VIP.
    fn holders(&self) -> (Vec<usize>, Vec<usize>) {
        let of = |a: &str| {
            self.topo
                .holders_of(a.parse::<IpAddr>().unwrap())
                .unwrap_or_default()
        };
        (of(VIP4), of(VIP6))
    }

    /// `apivip reload` on node `i` (its config file rewritten before).
    fn reload(&self, i: usize) {
        let out = self.topo.master(i).exec(&[BIN, "reload"]).unwrap();
        assert!(
            out.status.success(),
            "apivip reload on node {i}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// Waits until the holders are `want`; meanwhile measures how long the two VIPs
    /// were held by different nodes (one of them by nobody counts too).
    fn wait_holders(&self, want: (Vec<usize>, Vec<usize>), what: &str) -> Duration {
        let t0 = Instant::now();
        let mut apart = Duration::ZERO;
        let mut last = Instant::now();
        loop {
            let now = self.holders();
            let tick = last.elapsed();
            last = Instant::now();
            if now.0 != now.1 {
                apart += tick;
            }
            if now == want {
                return apart;
            }
            assert!(
                t0.elapsed() < DEADLINE,
                "{what}: holders (IPv4, IPv6) {now:?}, expected {want:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Adds (`true`) or removes node `i`'s IPv4 address: the source of its IPv4 adverts.
fn ipv4_source(topo: &Topology, i: usize, present: bool) {
    let m = topo.master(i);
    let addr = format!("{}/{}", m.ipv4, apivip::testkit::netns::V4_PREFIX);
    let verb = if present { "add" } else { "del" };
    m.exec_ok(&["ip", "addr", verb, &addr, "dev", &m.ifname])
        .unwrap();
}

/// Node 0 (priority 150) holds both VIPs of the group, node 1 (100) none.
/// - The IPv4 source address removed from node 0: its IPv4 instance faults, the IPv6
///   one follows it into FAULT (the group), and node 1 takes both VIPs.
/// - The address back: both VIPs back on node 0.
/// - A reload of node 0 that lowers only its IPv6 priority below node 1's moves
///   nothing: node 1's IPv6 instance would take over, but its IPv4 sibling still hears
///   a higher priority, and a group is Master only together (no thrashing).
/// - Without the group, the same priorities leave the VIPs on different nodes.
///
/// Status, metrics and `apivip status` name both instances.
#[test]
fn a_sync_group_moves_the_ipv4_and_ipv6_vips_together() {
    let name = "a_sync_group_moves_the_ipv4_and_ipv6_vips_together";
    if !need(name, &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(2).unwrap();
    let apis = (0..2)
        .map(|i| vrrp::start_demo(topo.master(i), dir.path(), i))
        .collect();
    write_config(&topo, dir.path(), 0, 150, 150, true);
    write_config(&topo, dir.path(), 1, 100, 100, true);
    let nodes = Nodes {
        topo: &topo,
        _apis: apis,
        nodes: (0..2)
            .map(|i| {
                let config = dir.path().join(format!("apivip-{i}.yaml"));
                vrrp::run_node(topo.master(i), dir.path(), i, &config)
            })
            .collect(),
    };
    nodes.wait_holders((vec![0], vec![0]), "start: node 0 holds both");

    // Status and metrics name both instances.
    let out = topo.master(0).exec(&[BIN, "status", "--json"]).unwrap();
    let doc: apivip::admin::status::StatusDoc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}\n{}", nodes.logs()));
    let seen: Vec<(String, String, Option<String>, String)> = doc
        .vrrp_instances
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                v.family.clone(),
                v.sync_group.clone(),
                v.state.clone(),
            )
        })
        .collect();
    let want = |n: &str, f: &str| {
        (
            n.to_owned(),
            f.to_owned(),
            Some("api".to_owned()),
            "master".to_owned(),
        )
    };
    assert_eq!(seen, [want("api-v4", "ipv4"), want("api-v6", "ipv6")]);
    let text = topo.master(0).exec(&[BIN, "status"]).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("VRRP api-v4 (sync group api) vrid 51")
            && text.contains("VRRP api-v6 (sync group api) vrid 51"),
        "{text}"
    );
    let metrics = || vrrp::metrics(topo.master(0));
    let m = metrics();
    for v in ["4", "6"] {
        let series = format!(
            "apivip_vrrp_state{{vrid=\"51\",family=\"ipv{v}\",vrrp_instance=\"api-v{v}\",state=\"master\"}} 1"
        );
        assert!(m.contains(&series), "{series} not in\n{m}");
    }

    // Node 0's IPv4 instance faults: the group moves to node 1.
    ipv4_source(&topo, 0, false);
    let apart = nodes.wait_holders((vec![1], vec![1]), "a member faulted: both VIPs to node 1");
    println!("{name}: the VIPs were held apart for {apart:?} while the group moved");
    let log0 = nodes.nodes[0].log();
    let faulted = |instance: &str| {
        log0.lines().any(|l| {
            l.contains(&format!("instance={instance}"))
                && l.contains("from=Master to=Fault reason=Fault")
        })
    };
    assert!(
        faulted("api-v4") && faulted("api-v6"),
        "node 0 did not leave Master for the faults\n{}",
        nodes.logs()
    );
    // Out for its sibling until the sibling's fault clears (not back at the next
    // read of its own, healthy, link).
    assert!(
        !log0
            .lines()
            .any(|l| l.contains("instance=api-v6") && l.contains("reason=FaultCleared")),
        "node 0's IPv6 instance came back while its sibling was faulted\n{}",
        nodes.logs()
    );
    let faults = |m: &str| {
        m.contains("apivip_vrrp_faults_total{vrid=\"51\",family=\"ipv4\",vrrp_instance=\"api-v4\",cause=\"no_source_address\"} 1")
            && m.contains("apivip_vrrp_faults_total{vrid=\"51\",family=\"ipv6\",vrrp_instance=\"api-v6\",cause=\"sync_group\"} 1")
    };
    assert!(
        support::wait_until_blocking(DEADLINE, || faults(&metrics())),
        "fault counters:\n{}",
        metrics()
    );

    // The address back: both back on node 0.
    ipv4_source(&topo, 0, true);
    nodes.wait_holders(
        (vec![0], vec![0]),
        "the fault cleared: both VIPs back to node 0",
    );

    // Only the IPv6 priority drops below node 1's: the group stays together on node 0.
    write_config(&topo, dir.path(), 0, 150, 50, true);
    nodes.reload(0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(nodes.holders(), (vec![0], vec![0]), "{}", nodes.logs());

    // Without the group the same lowered priority splits the VIPs.
    write_config(&topo, dir.path(), 1, 100, 100, false);
    write_config(&topo, dir.path(), 0, 150, 50, false);
    nodes.reload(1);
    nodes.reload(0);
    nodes.wait_holders(
        (vec![0], vec![1]),
        "ungrouped: the IPv6 VIP to node 1 alone",
    );
}

/// VRRPv3 over IPv6 multicast sends from the interface's link-local address. When the
/// holder's interface is deleted and re-created (a new MAC, so a new link-local
/// address), the node comes back with adverts from the new address: node 0 (150)
/// takes its IPv6 VIP back from node 1 (100).
#[test]
fn an_ipv6_instance_returns_on_a_re_created_interface_with_its_new_link_local_source() {
    let name = "an_ipv6_instance_returns_on_a_re_created_interface_with_its_new_link_local_source";
    if !need(name, &[]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(2).unwrap();
    let vip6: IpAddr = VIP6.parse().unwrap();
    let nodes: Vec<NsProcess> = [(0, 150), (1, 100)]
        .iter()
        .map(|&(i, prio)| {
            let m = topo.master(i);
            let config = dir.path().join(format!("apivip-{i}.yaml"));
            std::fs::write(
                &config,
                format!(
                    "backends: [{{name: m, address: '127.0.0.1:9'}}]\napiserver: {{listen: '[::1]:0', check: {{kind: tcp}}}}\nvrrp:\n  interface: {}\n  address: '{}'\n  vrid: 53\n  priority: {prio}\n  advert_interval: 100ms\n  vips: ['{VIP6}/64']\n  handover_timeout: 1s\nshutdown: {{drain_timeout: 1s}}\n",
                    m.ifname, m.ipv6
                ),
            )
            .unwrap();
            vrrp::run_node(m, dir.path(), i, &config)
        })
        .collect();
    let logs = || {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i}\n{}", vrrp::tail(&n.log(), 60)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let holders = || topo.holders_of(vip6).unwrap_or_default();
    assert!(
        support::wait_until_blocking(DEADLINE, || holders() == vec![0]),
        "node 0 never held the IPv6 VIP alone: {:?}\n{}",
        holders(),
        logs()
    );
    let link_local = |i: usize| {
        let m = topo.master(i);
        let out = m
            .exec_ok(&[
                "ip", "-6", "-o", "addr", "show", "dev", &m.ifname, "scope", "link",
            ])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = link_local(0);
    support::chaos::delete_link(&topo, 0).unwrap();
    assert!(
        support::wait_until_blocking(DEADLINE, || holders() == vec![1]),
        "node 1 did not take the IPv6 VIP over: {:?}\n{}",
        holders(),
        logs()
    );
    support::chaos::recreate_link(&topo, 0).unwrap();
    let after = link_local(0);
    assert_ne!(
        before, after,
        "the re-created interface kept its link-local address"
    );
    assert!(
        support::wait_until_blocking(DEADLINE, || holders() == vec![0]),
        "node 0 did not take the IPv6 VIP back on its re-created interface: {:?}\n{}",
        holders(),
        logs()
    );
    assert!(
        nodes[0]
            .log()
            .contains("adverts now go from the re-created interface's link-local address"),
        "{}",
        logs()
    );
}
