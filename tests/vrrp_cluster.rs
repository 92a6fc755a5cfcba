//! Three apivip nodes in network namespaces electing the VIP (root): the whole path
//! from the election to a client reaching the proxy on the VIP.

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use support::netns::{NsProcess, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const VIP: &str = "198.18.0.5";
const DEADLINE: Duration = Duration::from_secs(20);

/// Starts `apivip run` on master `i` with priority `prio`; its backends are the masters'
/// `apivip demo` processes on :6443.
fn start_node(topo: &Topology, dir: &Path, i: usize, prio: u8, extra: &str) -> NsProcess {
    let m = topo.master(i);
    let backends: String = (0..topo.masters().len())
        .map(|k| {
            format!(
                "  - {{name: master-{k}, address: '{}:6443'}}\n",
                topo.master(k).ipv4
            )
        })
        .collect();
    let config = dir.join(format!("apivip-{i}.yaml"));
    std::fs::write(
        &config,
        format!(
            "backends:\n{backends}apiserver:\n  listen: 0.0.0.0:8443\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms}}\nvrrp:\n  interface: {}\n  address: {}\n  vrid: 51\n  priority: {prio}\n  advert_interval: 100ms\n  vips: [{VIP}/24]\n  handover_timeout: 1s\n{extra}shutdown: {{drain_timeout: 1s}}\n",
            m.ifname, m.ipv4
        ),
    )
    .unwrap();
    m.spawn(
        BIN,
        ["run", "-c", config.to_str().unwrap()],
        &dir.join(format!("apivip-{i}.log")),
    )
    .unwrap()
}

fn start_apiserver(topo: &Topology, dir: &Path, i: usize) -> NsProcess {
    let m = topo.master(i);
    m.spawn(
        BIN,
        [
            "demo".to_owned(),
            "--listen".to_owned(),
            format!("{}:6443", m.ipv4),
            "--dir".to_owned(),
            dir.join(format!("demo-{i}")).display().to_string(),
        ],
        &dir.join(format!("demo-{i}.log")),
    )
    .unwrap()
}

fn curl_vip(topo: &Topology) -> Result<String, String> {
    let out = topo
        .client()
        .exec(&[
            "curl",
            "-sS",
            "-k",
            "--max-time",
            "3",
            &format!("https://{VIP}:8443/whoami"),
        ])
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_vip_is_elected_moves_on_a_crash_and_clients_follow() {
    let name = "the_vip_is_elected_moves_on_a_crash_and_clients_follow";
    if !support::require_root(name) || support::require_bin(name, "curl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = Topology::new(3).unwrap();
    let _apis: Vec<NsProcess> = (0..3)
        .map(|i| start_apiserver(&topo, dir.path(), i))
        .collect();
    let nodes: Vec<NsProcess> = [(0, 100), (1, 150), (2, 120)]
        .iter()
        .map(|&(i, p)| start_node(&topo, dir.path(), i, p, ""))
        .collect();
    let vip: IpAddr = VIP.parse().unwrap();
    let logs = || {
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("--- node {i}\n{}", n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Nodes start a few ms apart, so a lower one may hold the VIP for a moment before
    // node 1 preempts it: wait for node 1 to be the only holder.
    assert!(
        support::wait_until_blocking(DEADLINE, || topo.holders_of(vip).unwrap_or_default()
            == vec![1]),
        "the highest priority (node 1) never held the VIP alone\n{}",
        logs()
    );
    assert!(
        support::wait_until_blocking(DEADLINE, || curl_vip(&topo).is_ok()),
        "no answer through the VIP\n{}",
        logs()
    );

    // kill -9 the holder: the next priority (node 2) takes over, clients follow. (The
    // dead node's namespace keeps its VIP, as a crashed host's interface would.)
    nodes[1].kill_hard();
    let moved = support::wait_until_blocking(DEADLINE, || {
        topo.holders_of(vip).unwrap_or_default().contains(&2)
    });
    assert!(moved, "node 2 did not take over\n{}", logs());
    assert!(
        support::wait_until_blocking(DEADLINE, || curl_vip(&topo).is_ok()),
        "no answer through the VIP after the takeover\n{}",
        logs()
    );

    // Restarted, node 1 first removes the VIP its crash left, then preempts (150 > 120):
    // in the end exactly one node holds it.
    let restarted = start_node(&topo, dir.path(), 1, 150, "");
    let settled = support::wait_until_blocking(DEADLINE, || {
        topo.holders_of(vip).unwrap_or_default() == vec![1]
    });
    assert!(
        settled,
        "holders {:?}\n{}\n--- restarted node 1\n{}",
        topo.holders_of(vip),
        logs(),
        restarted.log()
    );
    assert!(restarted
        .log()
        .contains("removing VIPs left on the interface"));
    assert!(
        support::wait_until_blocking(DEADLINE, || curl_vip(&topo).is_ok()),
        "no answer through the VIP after node 1 came back"
    );
}
