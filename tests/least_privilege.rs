//! Least privilege, read from the kernel (root + network namespaces):
//! - `apivip run` keeps no capability at all in a proxy-only config (even one that
//!   listens on ports below 1024: they are bound before the capabilities go), and only
//!   CAP_NET_ADMIN and CAP_NET_RAW with VRRP, in every thread (`/proc/PID/task/*/status`);
//! - as a plain user given exactly those two as ambient capabilities (what the systemd
//!   unit does) it runs the election; without them it stops with an error naming the
//!   missing capability;
//! - the start-up cleanup and the stop remove only the VIPs apivip added, never the same
//!   address (or any other) configured by an operator.

mod support;

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::netns::{Node, NsProcess, Topology};
use support::notify::NotifySocket;

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const DEADLINE: Duration = Duration::from_secs(20);
const VIP: &str = "198.18.0.5";
/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
const NET_ADMIN_RAW: u64 = 0x3000;

/// The capability sets of one thread, from `/proc/PID/task/TID/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Caps {
    name: String,
    uid: String,
    inh: u64,
    prm: u64,
    eff: u64,
    bnd: u64,
    amb: u64,
}

/// Every thread of `pid`.
fn thread_caps(pid: u32) -> Vec<Caps> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(text) = std::fs::read_to_string(t.unwrap().path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {text}"))
                .trim()
                .to_owned()
        };
        let hex = |k: &str| u64::from_str_radix(&field(k), 16).unwrap();
        out.push(Caps {
            name: field("Name:"),
            uid: field("Uid:"),
            inh: hex("CapInh:"),
            prm: hex("CapPrm:"),
            eff: hex("CapEff:"),
            bnd: hex("CapBnd:"),
            amb: hex("CapAmb:"),
        });
    }
    out
}

/// Writes `yaml` to `dir/apivip.yaml` (readable by everyone, for the test that runs
/// apivip as another user) and starts `apivip run` in `node` with `NOTIFY_SOCKET`,
/// optionally behind `wrapper` (e.g. setpriv ... --).
fn start(
    node: &Node,
    dir: &Path,
    yaml: &str,
    notify: &NotifySocket,
    wrapper: &[&str],
    log: &str,
) -> NsProcess {
    let config = dir.join("apivip.yaml");
    std::fs::write(&config, yaml).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = node.command(prog);
            c.args(args).arg(BIN);
            c
        }
        None => node.command(BIN),
    };
    cmd.args(["run", "-c", config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", notify.path())
        .env_remove("WATCHDOG_USEC");
    node.spawn_command(cmd, &dir.join(log)).unwrap()
}

/// What every test here starts from: one master namespace, `dir` for the config and
/// the logs, and a notify socket in it (to see `READY=1`). None, and the test skips (or
/// fails under `APIVIP_REQUIRE_NETNS=1`), when not root.
fn setup(
    test: &str,
    dir: fn() -> tempfile::TempDir,
) -> Option<(Topology, tempfile::TempDir, NotifySocket)> {
    if !support::require_root(test) {
        return None;
    }
    let topo = Topology::new(1).unwrap();
    let dir = dir();
    let notify = NotifySocket::bind(dir.path());
    Some((topo, dir, notify))
}

fn tempdir_for_everyone() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn wait_ready(notify: &mut NotifySocket, p: &NsProcess) {
    assert!(
        notify.wait_for(0, DEADLINE, |m| m.has("READY=1")).is_some(),
        "no READY=1\n{}",
        p.log()
    );
}

/// Waits for the VIP on `node`.
fn wait_vip(node: &Node, p: &NsProcess) {
    let vip: IpAddr = VIP.parse().unwrap();
    assert!(
        support::wait_until_blocking(DEADLINE, || node.holds(vip)),
        "the VIP never came\n{}",
        p.log()
    );
}

/// SIGTERM, and a clean exit.
fn stop(p: &NsProcess) {
    p.kill(Signal::SIGTERM).unwrap();
    assert!(
        matches!(p.wait_timeout(DEADLINE), Ok(Some(s)) if s.success()),
        "{}",
        p.log()
    );
}

fn vrrp_yaml(node: &Node, extra: &str) -> String {
    format!(
        "backends: [{{name: master-0, address: '127.0.0.1:9469'}}]\napiserver:\n  listen: 0.0.0.0:8443\n  check: {{kind: tcp, interval: 100ms, timeout: 100ms}}\nvrrp:\n  interface: {}\n  address: {}\n  vrid: 51\n  priority: 150\n  advert_interval: 100ms\n  vips: [{VIP}/24]\n{extra}shutdown: {{drain_timeout: 1s}}\n",
        node.ifname, node.ipv4
    )
}

#[test]
fn proxy_only_keeps_no_capability_in_any_thread_even_on_ports_below_1024() {
    let name = "proxy_only_keeps_no_capability_in_any_thread_even_on_ports_below_1024";
    let Some((topo, dir, mut notify)) = setup(name, || tempfile::tempdir().unwrap()) else {
        return;
    };
    let m = topo.master(0);
    // Both listeners below 1024: bound before the capabilities are dropped. The admin
    // endpoint doubles as the backend (a tcp check only needs a listener).
    let p = start(
        m,
        dir.path(),
        "backends: [{name: master-0, address: '127.0.0.1:80'}]\nadmin: {listen: '127.0.0.1:80'}\napiserver: {listen: '127.0.0.1:443', check: {kind: tcp}}\n",
        &notify,
        &[],
        "apivip.log",
    );
    wait_ready(&mut notify, &p);
    let threads = thread_caps(p.pid());
    assert!(threads.len() > 1, "{threads:#?}");
    for t in &threads {
        assert_eq!(
            (t.inh, t.prm, t.eff, t.bnd, t.amb),
            (0, 0, 0, 0, 0),
            "thread {t:?} keeps capabilities\n{}",
            p.log()
        );
    }
    assert!(p.log().contains("kept=none"), "{}", p.log());
    // And the privileged ports serve.
    let connected = m
        .run_in(|| std::net::TcpStream::connect("127.0.0.1:443").is_ok())
        .unwrap();
    assert!(connected, "{}", p.log());
    assert!(
        support::wait_until_blocking(DEADLINE, || notify
            .messages()
            .iter()
            .any(|m| m.status() == Some("apiserver 1/1 up"))),
        "{}",
        p.log()
    );
}

#[test]
fn with_vrrp_every_thread_keeps_net_admin_and_net_raw_only() {
    let name = "with_vrrp_every_thread_keeps_net_admin_and_net_raw_only";
    let Some((topo, dir, mut notify)) = setup(name, || tempfile::tempdir().unwrap()) else {
        return;
    };
    let m = topo.master(0);
    let p = start(m, dir.path(), &vrrp_yaml(m, ""), &notify, &[], "apivip.log");
    wait_ready(&mut notify, &p);
    wait_vip(m, &p);
    let threads = thread_caps(p.pid());
    assert!(
        threads.iter().any(|t| t.name == "apivip-vrrp"),
        "{threads:#?}"
    );
    for t in &threads {
        assert_eq!(
            (t.inh, t.prm, t.eff, t.bnd, t.amb),
            (0, NET_ADMIN_RAW, NET_ADMIN_RAW, NET_ADMIN_RAW, 0),
            "thread {t:?}\n{}",
            p.log()
        );
    }
    assert!(
        p.log().contains("kept=CAP_NET_ADMIN,CAP_NET_RAW"),
        "{}",
        p.log()
    );
    // The kept capabilities suffice to give the VIP up at stop.
    stop(&p);
    assert!(!m.holds(VIP.parse().unwrap()), "{}", p.log());
}

/// What the unit does: a dedicated user with `AmbientCapabilities=CAP_NET_ADMIN
/// CAP_NET_RAW`. No root needed; without the capabilities the error names them.
#[test]
fn a_plain_user_with_the_two_ambient_capabilities_runs_the_election_and_without_them_is_told_which_is_missing(
) {
    let name = "a_plain_user_with_the_two_ambient_capabilities_runs_the_election_and_without_them_is_told_which_is_missing";
    let Some((topo, dir, mut notify)) = setup(name, tempdir_for_everyone) else {
        return;
    };
    let Some(setpriv) = support::require_bin(name, "setpriv") else {
        return;
    };
    let setpriv = setpriv.to_str().unwrap();
    let m = topo.master(0);
    let as_nobody = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+net_admin,+net_raw",
        "--ambient-caps=+net_admin,+net_raw",
        "--",
    ];
    let p = start(
        m,
        dir.path(),
        &vrrp_yaml(m, ""),
        &notify,
        &as_nobody,
        "nobody.log",
    );
    wait_ready(&mut notify, &p);
    wait_vip(m, &p);
    for t in thread_caps(p.pid()) {
        assert!(t.uid.starts_with("65534"), "{t:?}");
        assert_eq!(
            (t.inh, t.prm, t.eff, t.amb),
            (0, NET_ADMIN_RAW, NET_ADMIN_RAW, 0),
            "thread {t:?}\n{}",
            p.log()
        );
    }
    stop(&p);
    assert!(!m.holds(VIP.parse().unwrap()), "{}", p.log());

    // The same user without the capabilities: a clear error at start, exit 1.
    let plain = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
    ];
    let p = start(
        m,
        dir.path(),
        &vrrp_yaml(m, ""),
        &notify,
        &plain,
        "plain.log",
    );
    let status = p.wait_timeout(DEADLINE).unwrap();
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}\n{}",
        p.log()
    );
    assert!(
        p.log()
            .contains("needs CAP_NET_RAW (run as root or grant the capability)"),
        "{}",
        p.log()
    );
}

/// The operator's own addresses on the interface, including a copy of the VIP with
/// another prefix length, survive apivip's start, its crash-cleanup and its stop;
/// apivip's own VIP goes at stop and, after a crash, at the next start.
#[test]
fn only_the_vips_apivip_added_are_removed_never_an_operators_address() {
    let name = "only_the_vips_apivip_added_are_removed_never_an_operators_address";
    let Some((topo, dir, mut notify)) = setup(name, || tempfile::tempdir().unwrap()) else {
        return;
    };
    let m = topo.master(0);
    let operator = [
        vec!["ip", "addr", "add", "198.18.0.5/32", "dev", &m.ifname],
        vec!["ip", "addr", "add", "198.18.0.77/24", "dev", &m.ifname],
        vec![
            "ip",
            "addr",
            "add",
            "2001:db8::77/64",
            "dev",
            &m.ifname,
            "nodad",
        ],
    ];
    for cmd in &operator {
        m.exec_ok(cmd).unwrap();
    }
    let shown = || {
        String::from_utf8_lossy(
            &m.exec(&["ip", "-o", "addr", "show", "dev", &m.ifname])
                .unwrap()
                .stdout,
        )
        .into_owned()
    };
    let has = |a: &str| shown().split_whitespace().any(|w| w == a);
    let operators_intact =
        || has("198.18.0.5/32") && has("198.18.0.77/24") && has("2001:db8::77/64");

    // Start: apivip adds its VIP beside the operator's copy, labelled as its own.
    let p = start(m, dir.path(), &vrrp_yaml(m, ""), &notify, &[], "first.log");
    wait_ready(&mut notify, &p);
    assert!(
        support::wait_until_blocking(DEADLINE, || has("198.18.0.5/24")),
        "{}\n{}",
        shown(),
        p.log()
    );
    // The label when it fits in 15 bytes (the address protocol marks it either way).
    let label = format!("{}:apivip", m.ifname);
    assert!(
        label.len() > 15
            || shown()
                .lines()
                .any(|l| l.contains("198.18.0.5/24") && l.contains(&label)),
        "{}",
        shown()
    );
    assert!(operators_intact(), "{}", shown());
    assert!(
        p.log().contains("without apivip's mark"),
        "the operator's copy of the VIP is pointed out\n{}",
        p.log()
    );

    // Crash: the VIP stays; the next start removes it (its mark), not the operator's.
    p.kill_hard();
    assert!(has("198.18.0.5/24"), "{}", shown());
    let p = start(m, dir.path(), &vrrp_yaml(m, ""), &notify, &[], "second.log");
    assert!(
        p.wait_for_log(
            "removing VIPs left on the interface by an earlier run",
            DEADLINE
        ),
        "{}",
        p.log()
    );
    assert!(operators_intact(), "{}", shown());
    assert!(
        support::wait_until_blocking(DEADLINE, || has("198.18.0.5/24")),
        "{}\n{}",
        shown(),
        p.log()
    );

    // Stop: apivip's VIP goes, the operator's addresses stay.
    stop(&p);
    assert!(!has("198.18.0.5/24"), "{}", shown());
    assert!(operators_intact(), "{}", shown());
}
