//! systemd's notification protocol, read from a real `NOTIFY_SOCKET` the test binds:
//! `apivip run` says `READY=1` only once it accepts connections, keeps `STATUS=` current
//! as backends and the election change, pings `WATCHDOG=1` every `WatchdogSec/2` while
//! the runtime and the election thread answer (and stops while the election thread is
//! stalled, root + netns), says `RELOADING=1` then `READY=1` around a SIGHUP reload,
//! and `STOPPING=1` at SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::daemon::ChildGuard;
use support::notify::NotifySocket;

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const DEADLINE: Duration = Duration::from_secs(20);

/// The address logged (JSON) with the first line whose message is `message`.
fn logged_addr(log: &Path, message: &str) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find_map(|l| support::daemon::logged_addr(l, message))
}

/// One request to the admin endpoint: (status, body).
fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(apivip::admin::client::request(
            addr,
            method.clone(),
            path,
            body.map(str::to_owned),
            Duration::from_secs(5),
        ))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, http::Method::GET, path, None)
}

/// `apivip run` on loopback (a tcp check on a closed port, admin on a free port), its
/// JSON log in `dir/apivip.log`; `env` sets the rest of the command's environment.
fn run_on_loopback(
    dir: &Path,
    env: impl FnOnce(&mut Command) -> &mut Command,
) -> (ChildGuard, PathBuf) {
    let config = dir.join("apivip.yaml");
    std::fs::write(
        &config,
        "backends: [{address: '127.0.0.1:9'}]\nadmin: {listen: '127.0.0.1:0'}\napiserver: {listen: 127.0.0.1:0, check: {kind: tcp}}\nlog: {format: json}\n",
    )
    .unwrap();
    let log = dir.join("apivip.log");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "-c", config.to_str().unwrap()]);
    let child = env(&mut cmd)
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    (ChildGuard(child), log)
}

/// Loopback, no root: the whole protocol from start to SIGTERM.
#[test]
fn ready_comes_once_it_accepts_then_status_follows_health_watchdog_pings_and_stopping_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // A tcp check only needs something that accepts: this listener is the backend.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.path().join("apivip.yaml");
    std::fs::write(
        &config,
        format!(
            "backends: [{{name: master-0, address: '{}'}}]\nadmin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: 127.0.0.1:0\n  check: {{kind: tcp, interval: 100ms, timeout: 100ms}}\nshutdown: {{drain_timeout: 1s}}\nlog: {{format: json}}\n",
            backend.local_addr().unwrap()
        ),
    )
    .unwrap();
    let mut notify = NotifySocket::bind(dir.path());
    let log = dir.path().join("apivip.log");
    let mut child = ChildGuard(
        Command::new(BIN)
            .args(["run", "-c", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", notify.path())
            // WatchdogSec=2s.
            .env("WATCHDOG_USEC", "2000000")
            .env_remove("WATCHDOG_PID")
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let logs = |n: &mut NotifySocket| {
        format!(
            "datagrams:\n{}\nlog:\n{}",
            n.dump(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    // READY=1 is the first datagram, and by then the proxy and the admin endpoint
    // accept: no retry here.
    let ready = notify.wait_for(0, DEADLINE, |m| m.has("READY=1"));
    assert_eq!(ready, Some(0), "{}", logs(&mut notify));
    let first = notify.messages()[0].clone();
    assert!(
        first.status().is_some_and(|s| s.starts_with("apiserver ")),
        "READY=1 comes with a status line: {first:?}"
    );
    let proxy = logged_addr(&log, "listening").expect("the listen address is logged");
    let admin = logged_addr(&log, "admin endpoint listening").expect("the admin address is logged");
    std::net::TcpStream::connect(proxy).expect("the proxy accepts once READY=1 was sent");
    assert_eq!(get(admin, "/readyz"), (200, "ok\n".to_owned()));

    // STATUS= follows the health view.
    assert!(
        notify
            .wait_for(0, DEADLINE, |m| m.status() == Some("apiserver 1/1 up"))
            .is_some(),
        "{}",
        logs(&mut notify)
    );
    drop(backend);
    assert!(
        notify
            .wait_for(0, DEADLINE, |m| m.status() == Some("apiserver 0/1 up"))
            .is_some(),
        "{}",
        logs(&mut notify)
    );

    // WATCHDOG=1 every WatchdogSec/2: five in a row, none further apart than
    // WatchdogSec, so systemd would never have restarted it.
    let mut pings = Vec::new();
    let mut from = 0;
    while pings.len() < 5 {
        let i = notify
            .wait_for(from, DEADLINE, |m| m.has("WATCHDOG=1"))
            .unwrap_or_else(|| panic!("too few watchdog pings\n{}", logs(&mut notify)));
        pings.push(notify.messages()[i].at);
        from = i + 1;
    }
    for w in pings.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap < Duration::from_secs(2),
            "a gap of {gap:?} between watchdog pings\n{}",
            logs(&mut notify)
        );
    }

    // SIGHUP: RELOADING=1 (with MONOTONIC_USEC, as systemd 253+ wants), then READY=1
    // once the reload is done.
    let before = notify.messages().len();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        Signal::SIGHUP,
    )
    .unwrap();
    let reloading = notify
        .wait_for(before, DEADLINE, |m| m.has("RELOADING=1"))
        .unwrap_or_else(|| panic!("no RELOADING=1 after SIGHUP\n{}", logs(&mut notify)));
    assert!(
        notify.messages()[reloading]
            .text
            .contains("MONOTONIC_USEC="),
        "{:?}",
        notify.messages()[reloading]
    );
    assert!(
        notify
            .wait_for(reloading + 1, DEADLINE, |m| m.has("READY=1"))
            .is_some(),
        "no READY=1 after the reload\n{}",
        logs(&mut notify)
    );

    // SIGTERM: STOPPING=1, then a clean exit and no ping after STOPPING=1.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let stopping = notify
        .wait_for(0, DEADLINE, |m| m.has("STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1\n{}", logs(&mut notify)));
    let exited = support::wait_until_blocking(DEADLINE, || child.0.try_wait().unwrap().is_some());
    assert!(exited, "did not exit after SIGTERM\n{}", logs(&mut notify));
    assert!(child.0.wait().unwrap().success());
    let after: Vec<String> = notify.messages()[stopping + 1..]
        .iter()
        .map(|m| m.text.clone())
        .collect();
    assert!(
        after.iter().all(|t| !t.contains("WATCHDOG=1")),
        "pings after STOPPING=1: {after:?}"
    );
}

/// Without NOTIFY_SOCKET nothing is sent and nothing breaks; an unusable socket is
/// logged, not fatal.
#[test]
fn an_unreachable_notify_socket_is_logged_and_the_daemon_serves_anyway() {
    let dir = tempfile::tempdir().unwrap();
    let (child, log) = run_on_loopback(dir.path(), |c| {
        c.env("NOTIFY_SOCKET", dir.path().join("nobody-listens.sock"))
    });
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        support::wait_until_blocking(DEADLINE, || read().contains("cannot notify")),
        "{}",
        read()
    );
    let admin = logged_addr(&log, "admin endpoint listening").unwrap();
    assert_eq!(get(admin, "/healthz").0, 200);
    drop(child);
}

// ---------------------------------------------------------------------------------------
// The watchdog and a stalled election thread (root: a VRRP thread needs a namespace).

const VIP: &str = "198.18.0.5";

/// `curl` inside the node's namespace: (HTTP code, body).
fn curl(node: &support::netns::Node, args: &[&str]) -> (u16, String) {
    let mut all = vec![
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
    ];
    all.extend_from_slice(args);
    let out = node.exec(&all).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// One master in a namespace running apivip with fault injection, a 1 s watchdog and a
/// notify socket; `None` (with the reason printed) when not root or curl is missing.
struct StallNode {
    // Dropped in this order: the process, then the namespaces, then the files.
    node: support::netns::NsProcess,
    notify: NotifySocket,
    topo: support::netns::Topology,
    _dir: tempfile::TempDir,
}

impl StallNode {
    fn start(name: &str) -> Option<StallNode> {
        if !support::require_root(name) || support::require_bin(name, "curl").is_none() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let topo = support::netns::Topology::new(1).unwrap();
        let m = topo.master(0);
        let config = dir.path().join("apivip.yaml");
        // The admin endpoint stands in for this master's apiserver: a tcp check only
        // needs a listener, and the proxy-track needs one healthy backend.
        std::fs::write(
            &config,
            format!(
                "backends: [{{name: master-0, address: '127.0.0.1:9469'}}]\napiserver:\n  listen: 0.0.0.0:8443\n  check: {{kind: tcp, interval: 100ms, timeout: 100ms}}\nvrrp:\n  interface: {}\n  address: {}\n  vrid: 51\n  priority: 150\n  advert_interval: 100ms\n  vips: [{VIP}/24]\nshutdown: {{drain_timeout: 1s}}\n",
                m.ifname, m.ipv4
            ),
        )
        .unwrap();
        let notify = NotifySocket::bind(dir.path());
        let mut cmd = m.command(BIN);
        cmd.args(["run", "-c", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", notify.path())
            // WatchdogSec=1s: a ping every 500 ms.
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .env("APIVIP_FAULT_INJECTION", "1");
        let node = m
            .spawn_command(cmd, &dir.path().join("apivip.log"))
            .unwrap();
        Some(StallNode {
            node,
            notify,
            topo,
            _dir: dir,
        })
    }

    fn master(&self) -> &support::netns::Node {
        self.topo.master(0)
    }

    fn logs(&mut self) -> String {
        format!(
            "datagrams:\n{}\nlog:\n{}",
            self.notify.dump(),
            self.node.log()
        )
    }

    /// Waits until the lone node is master with its apiserver up.
    fn wait_master(&mut self) {
        let ready = self.notify.wait_for(0, DEADLINE, |m| m.has("READY=1"));
        assert!(ready.is_some(), "{}", self.logs());
        let master = self.notify.wait_for(0, DEADLINE, |m| {
            m.status() == Some(&format!("master for {VIP}; apiserver 1/1 up"))
        });
        assert!(master.is_some(), "{}", self.logs());
    }

    /// Stalls the election thread for `seconds`.
    fn stall(&self, seconds: u64) {
        let body = format!(r#"{{"seconds": {seconds}}}"#);
        let (code, body) = curl(
            self.master(),
            &[
                "-X",
                "POST",
                "--data",
                &body,
                "http://127.0.0.1:9469/debug/stall-election",
            ],
        );
        assert_eq!(code, 200, "{body}");
    }
}

/// A stall longer than ELECTION_STALL_LIMIT (a bug: every netlink call is bounded):
/// apivip notices, removes the VIP and exits non-zero, so that the service manager
/// restarts it.
#[test]
fn an_election_thread_stalled_past_the_limit_makes_apivip_exit_non_zero_without_the_vip() {
    let Some(mut n) = StallNode::start(
        "an_election_thread_stalled_past_the_limit_makes_apivip_exit_non_zero_without_the_vip",
    ) else {
        return;
    };
    n.wait_master();
    let has_vip = |n: &StallNode| {
        let out = n
            .master()
            .exec(&["ip", "-o", "addr", "show", "dev", &n.master().ifname])
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    };
    assert!(has_vip(&n), "{}", n.logs());
    n.stall(40);
    let stalled_at = Instant::now();
    let status = n.node.wait_timeout(Duration::from_secs(30)).unwrap();
    let took = stalled_at.elapsed();
    let logs = n.logs();
    match status {
        Some(s) => assert!(!s.success(), "exited with {s:?}\n{logs}"),
        None => panic!("still running {took:?} after the stall began\n{logs}"),
    }
    println!("exited {took:?} after the stall began");
    assert!(
        took >= Duration::from_secs(9),
        "exited after {took:?}\n{logs}"
    );
    assert!(logs.contains("the election is lost"), "{logs}");
    assert!(!has_vip(&n), "the VIP is still on the interface\n{logs}");
}

#[test]
fn a_stalled_election_thread_stops_the_watchdog_and_healthz_until_it_answers_again() {
    let Some(mut n) = StallNode::start(
        "a_stalled_election_thread_stops_the_watchdog_and_healthz_until_it_answers_again",
    ) else {
        return;
    };
    n.wait_master();
    let m = n.topo.master(0);
    let node = &n.node;
    let notify = &mut n.notify;
    let logs = |n: &mut NotifySocket| format!("datagrams:\n{}\nlog:\n{}", n.dump(), node.log());
    let healthz = || curl(m, &["http://127.0.0.1:9469/healthz"]);
    assert_eq!(healthz().0, 200);
    let n = notify.messages().len();
    assert!(
        notify
            .wait_for(n, DEADLINE, |m| m.has("WATCHDOG=1"))
            .is_some(),
        "{}",
        logs(notify)
    );

    // Stall the election thread for 6 s.
    let (code, body) = curl(
        m,
        &[
            "-X",
            "POST",
            "--data",
            r#"{"seconds": 6}"#,
            "http://127.0.0.1:9469/debug/stall-election",
        ],
    );
    assert_eq!(code, 200, "{body}");
    let stalled_at = Instant::now();
    assert!(
        support::wait_until_blocking(DEADLINE, || healthz().0 == 503),
        "/healthz never failed\n{}",
        logs(notify)
    );
    let failing_at = Instant::now();
    assert!(healthz().1.contains("election thread"), "{:?}", healthz());
    // From the moment /healthz failed, the next ping comes only once the thread
    // answers again: not before the stall is over.
    let next = notify
        .wait_for(0, DEADLINE, |m| m.has("WATCHDOG=1") && m.at > failing_at)
        .unwrap_or_else(|| panic!("the pings never resumed\n{}", logs(notify)));
    let quiet = notify.messages()[next].at.duration_since(stalled_at);
    assert!(
        quiet >= Duration::from_secs(5),
        "a ping {quiet:?} after a 6 s stall began\n{}",
        logs(notify)
    );
    assert!(node.log().contains("watchdog pings stop"), "{}", node.log());
    // They resume, and /healthz is fine again.
    assert!(
        notify
            .wait_for(next + 1, DEADLINE, |m| m.has("WATCHDOG=1"))
            .is_some(),
        "{}",
        logs(notify)
    );
    assert!(
        support::wait_until_blocking(DEADLINE, || healthz().0 == 200),
        "{}",
        logs(notify)
    );

    node.kill(Signal::SIGTERM).unwrap();
    assert!(
        notify
            .wait_for(0, DEADLINE, |m| m.has("STOPPING=1"))
            .is_some(),
        "{}",
        logs(notify)
    );
    assert!(
        matches!(node.wait_timeout(DEADLINE), Ok(Some(s)) if s.success()),
        "{}",
        logs(notify)
    );
}

/// Without `APIVIP_FAULT_INJECTION=1` the stall endpoint is refused (loopback, no
/// election needed to see it).
#[test]
fn fault_injection_is_refused_unless_enabled_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (child, log) = run_on_loopback(dir.path(), |c| c.env_remove("APIVIP_FAULT_INJECTION"));
    let admin = {
        let mut a = None;
        support::wait_until_blocking(DEADLINE, || {
            a = logged_addr(&log, "admin endpoint listening");
            a.is_some()
        });
        a.expect("admin address logged")
    };
    let (code, body) = request(
        admin,
        http::Method::POST,
        "/debug/stall-election",
        Some(r#"{"seconds": 1}"#),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("APIVIP_FAULT_INJECTION=1"), "{body}");
    drop(child);
}
