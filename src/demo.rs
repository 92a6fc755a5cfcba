//! `apivip demo`: a working local endpoint with nothing to install and no root.
//!
//! Three imitation kube-apiservers (HTTPS, certificates made here) listen on loopback
//! and apivip runs in front of them with the same code path as `apivip run`: the demo
//! writes a config file and loads it. Commands typed on stdin stop, start or drain a
//! master so that an operator can watch failover; Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use apivip::supervisor::Supervisor;
use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver, Mode};
use apivip::testkit::certs::TestPki;
use tokio::io::AsyncBufReadExt;

const MASTERS: usize = 3;

/// Runs the demo until Ctrl-C or SIGTERM.
pub(crate) async fn run(listen: SocketAddr, dir: Option<PathBuf>) -> Result<(), String> {
    let (dir, _temp) = demo_dir(dir)?;
    let pki = TestPki::generate(&dir, &["127.0.0.1", "localhost"])
        .map_err(|e| format!("cannot make certificates: {e}"))?;
    let mut masters: Vec<Option<ImitationApiserver>> = Vec::new();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 1..=MASTERS {
        let s = start_master(&pki, i, "127.0.0.1:0".parse().map_err(|_| "bad address")?).await?;
        addrs.push(s.addr());
        masters.push(Some(s));
    }
    let config_path = dir.join("apivip.yaml");
    let backends: String = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("  - name: master-{}\n    address: {a}\n", i + 1))
        .collect();
    let yaml = format!(
        "# Written by `apivip demo`.\nbackends:\n{backends}admin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: '{listen}'\n  not_ready_grace: 3s\n  check:\n    kind: https\n    path: /readyz\n    ca: ca.crt\n    interval: 500ms\n    timeout: 500ms\n    rise: 2\n    fall: 2\n"
    );
    std::fs::write(&config_path, yaml).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let config = apivip::config::load(&config_path).map_err(|e| e.to_string())?;
    let sup = Supervisor::start(&config)
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = sup
        .listen_addrs(apivip::config::FrontendKind::Apiserver)
        .first()
        .copied()
        .ok_or("no listener")?;

    println!();
    println!(
        "apivip demo: endpoint https://{endpoint} in front of {MASTERS} imitation apiservers:"
    );
    for (i, a) in addrs.iter().enumerate() {
        println!("  master-{} https://{a}", i + 1);
    }
    println!("config: {}", config_path.display());
    println!(
        "try:    curl -k https://{endpoint}/readyz   (or /whoami to see which master answered)"
    );
    println!(
        "        curl --cacert {} https://{endpoint}/whoami",
        pki.ca_cert.display()
    );
    if let Some(a) = sup.admin_addrs().first() {
        println!("admin:  http://{a}/status  (apivip status --admin {a}; /metrics)");
    }
    println!(
        "type:   stop N | start N | notready N | ready N | drain N (graceful shutdown) | status | metrics"
    );
    println!("Ctrl-C stops everything.");
    println!();

    let mut console = Console::new()?;
    while let Some((word, target)) = console.next().await {
        match (word.as_deref(), target) {
            (Some("status"), _) => {
                print!("{}", apivip::admin::client::render(&*sup.daemon().status().await));
            }
            (Some("metrics"), _) => {
                let d = sup.daemon();
                let text = apivip::admin::metrics::render(&*d.status().await, &d.running().check_stats, false);
                for line in key_series(&text) {
                    println!("  {line}");
                }
            }
            (Some("stop"), Some(n)) => {
                if let Some(s) = masters[n - 1].take() {
                    s.stop().await;
                    println!("master-{n} stopped (hard)");
                }
            }
            (Some("drain"), Some(n)) => {
                if let Some(s) = masters[n - 1].take() {
                    println!("master-{n}: graceful shutdown (readyz 500 for 2s, then stop)");
                    tokio::spawn(async move { s.graceful_shutdown().await });
                }
            }
            (Some("start"), Some(n)) => {
                if masters[n - 1].is_none() {
                    match start_master(&pki, n, addrs[n - 1]).await {
                        Ok(s) => {
                            masters[n - 1] = Some(s);
                            println!("master-{n} started");
                        }
                        Err(e) => println!("master-{n}: {e}"),
                    }
                }
            }
            (Some(cmd @ ("notready" | "ready")), Some(n)) => {
                if let Some(s) = &masters[n - 1] {
                    s.set_mode(if cmd == "ready" {
                        Mode::Ready
                    } else {
                        Mode::NotReady
                    });
                    println!("master-{n} {cmd}");
                }
            }
            (None, _) => {}
            _ => println!(
                "unknown command; try: stop 2, start 2, notready 1, ready 1, drain 3, status, metrics"
            ),
        }
    }
    println!("stopping");
    sup.shutdown(Duration::from_secs(2)).await;
    for s in masters.into_iter().flatten() {
        s.stop().await;
    }
    Ok(())
}

async fn start_master(
    pki: &TestPki,
    i: usize,
    listen: SocketAddr,
) -> Result<ImitationApiserver, String> {
    let mut opts = ApiserverOptions::new(format!("master-{i}"), pki.server_config());
    opts.listen = listen;
    opts.shutdown_delay = Duration::from_secs(2);
    ImitationApiserver::start(opts)
        .await
        .map_err(|e| format!("cannot start master-{i} on {listen}: {e}"))
}

/// The VIP shown by the VIP-mode demo.
const DEMO_VIP: &str = "198.18.0.5";

/// VIP mode (root): three masters in network namespaces on a bridge, each running
/// an "apiserver" (a loopback demo behind its own address) and `apivip run` with VRRP;
/// a client namespace reaches the proxy on the VIP. Stopping or killing a master moves
/// the VIP.
pub(crate) async fn run_vip(dir: Option<PathBuf>) -> Result<(), String> {
    use apivip::testkit::netns::{NsProcess, Topology};
    use nix::sys::signal::Signal;

    let (dir, _temp) = demo_dir(dir)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let topo = Topology::new(MASTERS).map_err(|e| format!("cannot build the namespaces: {e}"))?;
    let mut apiservers = Vec::new();
    for i in 0..MASTERS {
        let m = topo.master(i);
        let args = [
            "demo".to_owned(),
            "--listen".to_owned(),
            format!("{}:6443", m.ipv4),
            "--dir".to_owned(),
            dir.join(format!("apiserver-{}", i + 1))
                .display()
                .to_string(),
        ];
        let log = dir.join(format!("apiserver-{}.log", i + 1));
        apiservers.push(m.spawn(&exe, args, &log).map_err(|e| e.to_string())?);
    }
    let backends: String = (0..MASTERS)
        .map(|k| {
            format!(
                "  - {{name: master-{}, address: '{}:6443'}}\n",
                k + 1,
                topo.master(k).ipv4
            )
        })
        .collect();
    let start = |i: usize| -> Result<NsProcess, String> {
        let m = topo.master(i);
        let config = dir.join(format!("apivip-{}.yaml", i + 1));
        let yaml = format!(
            "# Written by `apivip demo` (VIP mode).\nbackends:\n{backends}apiserver:\n  listen: 0.0.0.0:8443\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms}}\nvrrp:\n  interface: {}\n  address: {}\n  vrid: 51\n  priority: {}\n  advert_interval: 100ms\n  vips: [{DEMO_VIP}/24]\n  handover_timeout: 1s\nshutdown: {{drain_timeout: 2s}}\n",
            m.ifname,
            m.ipv4,
            150 - 10 * i
        );
        std::fs::write(&config, yaml).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join(format!("apivip-{}.log", i + 1));
        let cfg = config.display().to_string();
        m.spawn(&exe, ["run", "-c", cfg.as_str()], &log)
            .map_err(|e| e.to_string())
    };
    let mut nodes: Vec<Option<NsProcess>> = Vec::new();
    for i in 0..MASTERS {
        nodes.push(Some(start(i)?));
    }
    let client = topo.client();
    println!();
    println!("apivip demo (VIP mode): three masters in network namespaces, VIP {DEMO_VIP}");
    for i in 0..MASTERS {
        println!(
            "  master-{} {} (namespace {}), priority {}",
            i + 1,
            topo.master(i).ipv4,
            topo.master(i).ns,
            150 - 10 * i
        );
    }
    println!("logs and configs: {}", dir.display());
    println!(
        "try:    ip netns exec {} curl -k https://{DEMO_VIP}:8443/whoami",
        client.ns
    );
    println!(
        "        ip netns exec {} apivip status   (each master's admin endpoint is 127.0.0.1:9469 in its namespace)",
        topo.master(0).ns
    );
    println!("type:   status [N] | metrics | handover N | resume N | stop N (SIGTERM: planned handover) | kill N (kill -9) | start N");
    println!("Ctrl-C stops everything and removes the namespaces.");
    println!();

    let vip: std::net::IpAddr = DEMO_VIP.parse().map_err(|_| "bad VIP")?;
    let mut console = Console::new()?;
    while let Some((word, target)) = console.next().await {
        match (word.as_deref(), target) {
            (Some("metrics"), _) => {
                for (i, node) in nodes.iter().enumerate() {
                    if !node.as_ref().is_some_and(|n| n.is_running()) {
                        continue;
                    }
                    println!("master-{}:", i + 1);
                    let text = topo
                        .master(i)
                        .run_in(|| http_get(([127, 0, 0, 1], 9469).into(), "/metrics"))
                        .and_then(|r| r);
                    match text {
                        Ok(text) => {
                            for line in key_series(&text) {
                                println!("  {line}");
                            }
                        }
                        Err(e) => println!("  cannot read its metrics: {e}"),
                    }
                }
            }
            (Some(cmd @ ("status" | "handover" | "resume")), Some(n)) => {
                // That master's own `apivip CMD`, in its namespace.
                let out = topo.master(n - 1).exec(&[exe.as_os_str(), cmd.as_ref()]);
                match out {
                    Ok(o) => print!(
                        "master-{n}: {}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    Err(e) => println!("master-{n}: {e}"),
                }
            }
            (Some("status"), _) => {
                let holders = topo.holders_of(vip).unwrap_or_default();
                for (i, node) in nodes.iter().enumerate() {
                    let running = node.as_ref().is_some_and(|n| n.is_running());
                    println!(
                        "  master-{} apivip {}{}",
                        i + 1,
                        if running { "running" } else { "stopped" },
                        if holders.contains(&i) {
                            ", holds the VIP"
                        } else {
                            ""
                        }
                    );
                }
            }
            (Some("stop"), Some(n)) => {
                if let Some(p) = nodes[n - 1].take() {
                    let _ = p.kill(Signal::SIGTERM);
                    let _ = p.wait_timeout(Duration::from_secs(10));
                    println!("master-{n}: apivip stopped (handed the VIP over first)");
                }
            }
            (Some("kill"), Some(n)) => {
                if let Some(p) = nodes[n - 1].take() {
                    p.kill_hard();
                    println!(
                        "master-{n}: apivip killed (-9); its stale VIP stays until it starts again"
                    );
                }
            }
            (Some("start"), Some(n)) => {
                if nodes[n - 1].is_none() {
                    nodes[n - 1] = Some(start(n - 1)?);
                    println!("master-{n}: apivip started");
                }
            }
            (None, _) => {}
            _ => println!(
                "unknown command; try: status, status 2, metrics, handover 1, resume 1, stop 1, kill 1, start 1"
            ),
        }
    }
    println!("stopping");
    drop(nodes);
    drop(apiservers);
    drop(topo);
    Ok(())
}

/// The series worth a glance: current states (value 1), priorities, connections, and
/// every non-zero failover or drop counter.
fn key_series(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let value = l.rsplit(' ').next().unwrap_or("0");
            let always = [
                "apivip_vrrp_effective_priority",
                "apivip_vrrp_masters_heard",
                "apivip_vrrp_master_info",
                "apivip_vrrp_vip_present",
                "apivip_frontend_active_connections",
                "apivip_backend_active_connections",
            ];
            let when_nonzero = [
                "apivip_vrrp_state{",
                "apivip_backend_state{",
                "apivip_vrrp_transitions_total",
                "apivip_vrrp_adverts_dropped_total",
                "apivip_backend_transitions_total",
            ];
            always.iter().any(|p| l.starts_with(p))
                || (value != "0" && when_nonzero.iter().any(|p| l.starts_with(p)))
        })
        .collect()
}

/// A plain HTTP/1.0 GET (the admin endpoint inside a demo namespace).
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// The demo's directory: the one given, or a temporary one removed at the end (the
/// guard returned with it).
fn demo_dir(dir: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
            Ok((d, None))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("apivip-demo-")
                .tempdir()
                .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
            Ok((temp.path().to_owned(), Some(temp)))
        }
    }
}

/// Commands typed on stdin, until Ctrl-C or SIGTERM.
struct Console {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>>,
    stdin_open: bool,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Console {
    fn new() -> Result<Console, String> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Console {
            lines: tokio::io::BufReader::new(tokio::io::stdin()).lines(),
            stdin_open: true,
            term: signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
            int: signal(SignalKind::interrupt()).map_err(|e| e.to_string())?,
        })
    }

    /// The next command: its first word and a master number (1..=MASTERS) if one
    /// follows; `None` on Ctrl-C or SIGTERM. Without stdin it just waits for those.
    async fn next(&mut self) -> Option<(Option<String>, Option<usize>)> {
        loop {
            let line = tokio::select! {
                _ = self.int.recv() => return None,
                _ = self.term.recv() => return None,
                l = self.lines.next_line(), if self.stdin_open => match l {
                    Ok(Some(l)) => l,
                    _ => { self.stdin_open = false; continue }
                },
            };
            let mut words = line.split_whitespace();
            let word = words.next().map(str::to_owned);
            let target = words
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=MASTERS).contains(n));
            return Some((word, target));
        }
    }
}
