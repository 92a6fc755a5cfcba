//! Shared by the VRRP tests in network namespaces (root): the skip check, `apivip run` on
//! a master with debug logs, the tail of a log for failure messages, and the gratuitous
//! ARP a new VIP holder sends, as a capture on the client shows it.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use super::netns::{Capture, Node, NsProcess, Topology};

/// Root and every one of `bins`: false (the test skips, or fails under
/// `APIVIP_REQUIRE_NETNS=1`) otherwise.
pub fn need(name: &str, bins: &[&str]) -> bool {
    super::require_root(name) && bins.iter().all(|b| super::require_bin(name, b).is_some())
}

/// `apivip run -c config` on master `i` (`m`) with debug logs, logging to
/// `dir/apivip-{i}.log`.
pub fn run_node(m: &Node, dir: &Path, i: usize, config: &Path) -> NsProcess {
    let mut cmd = m.command(env!("CARGO_BIN_EXE_apivip"));
    cmd.args(["run", "-c", config.to_str().unwrap()])
        .env("RUST_LOG", "apivip=debug");
    m.spawn_command(cmd, &dir.join(format!("apivip-{i}.log")))
        .unwrap()
}

/// The last `n` lines of `log` (debug logs are long).
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The MAC address of `m`'s interface, as tcpdump prints it.
pub fn mac(m: &Node) -> String {
    let out = m
        .exec_ok(&["cat", &format!("/sys/class/net/{}/address", m.ifname)])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Asserts that `cap` (a capture on the client) shows, within `timeout`, a gratuitous
/// ARP for `vip` from `from`'s MAC: a request for the VIP from the VIP. Stops `cap`.
pub fn assert_garp(timeout: Duration, cap: &mut Capture, from: &Node, vip: impl Display) {
    let mac = mac(from);
    let is_garp = |l: &str| {
        l.starts_with(&mac)
            && l.contains(&format!("Request who-has {vip} "))
            && l.contains(&format!("tell {vip},"))
    };
    let seen = super::wait_until_blocking(timeout, || {
        std::process::Command::new("tcpdump")
            .args(["-nn", "-e", "-r"])
            .arg(cap.path())
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| is_garp(l.split_once(' ').map_or("", |x| x.1)))
            })
    });
    let text = cap.stop_and_read().unwrap();
    assert!(
        seen,
        "no gratuitous ARP for {vip} from {mac} on the wire:\n{text}"
    );
}

/// `apivip demo --listen IPV4:6443` on master `i` (`m`): its "apiserver", logging to
/// `dir/demo-{i}.log`.
pub fn start_demo(m: &Node, dir: &Path, i: usize) -> NsProcess {
    m.spawn(
        env!("CARGO_BIN_EXE_apivip"),
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

/// `m`'s metrics (Prometheus text) from its admin endpoint (127.0.0.1:9469, the
/// default, in its namespace); empty if it does not answer.
pub fn metrics(m: &Node) -> String {
    let out = m
        .exec(&[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://127.0.0.1:9469/metrics",
        ])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `backends:` entries of every master of `topo`, named `master-K`, each at its
/// IPv4 address on port 6443 (where `start_demo` listens).
pub fn backends_yaml(topo: &Topology) -> String {
    (0..topo.masters().len())
        .map(|k| {
            format!(
                "  - {{name: master-{k}, address: '{}:6443'}}\n",
                topo.master(k).ipv4
            )
        })
        .collect()
}
