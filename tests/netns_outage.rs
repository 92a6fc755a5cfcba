//! This node's own network fails for a short burst (root, network namespaces): every
//! master is unreachable from the apivip node, and only from it, for a few seconds.
//!
//! Issue point: "All masters unreachable from this node for a short burst: connections
//! kept, logged as local."
//!
//! ```text
//!   master 0..2 (198.18.0.10-12:6443, TCP echo) --+
//!   node        (198.18.0.13, apivip :8443) ------+-- bridge (own namespace)
//!   client      (198.18.0.100, long-lived streams)+
//! ```
//!
//! The masters are plain TCP echo servers (the proxy is L4) that say their name before
//! the echo, so every client stream knows where it landed (the client speaks first:
//! apivip connects to a master once it has something to send). apivip runs as
//! `apivip run` in the node namespace with a fast TCP check (interval 200ms, timeout
//! 200ms, fall 2, rise 1).
//!
//! The cut: an nftables rule in the bridge namespace silently drops every IP packet
//! between the node's bridge port and the masters (both directions), and nothing else:
//! the client still reaches the node and the masters each other. A check's connect then
//! times out (no refusal, no reset: "unreachable" after `fall`), and the established
//! streams only see their segments lost, which TCP retransmits once the rule is gone.
//! Whatever closes a stream in this test is apivip.
//!
//! - [`all_masters_unreachable_from_this_node_for_a_short_burst_keep_their_connections`]:
//!   every master cut for 3 s. Asserts: the local outage is recognised (the warning in the
//!   log, `apivip_frontend_local_outage` 1, `LOCAL OUTAGE` in `apivip status`), it ends
//!   ("local outage over", the gauge back to 0), every stream is still open and carries
//!   data end to end (what was sent during the burst is echoed after it, and more after
//!   that), and `apivip_backend_closed_on_down_total` is 0 for every master. The checkers
//!   of the masters report one by one, even in the same check round, so this catches
//!   the first master to turn down being closed at once (one of three down is no local
//!   outage yet) and the last one to turn up being closed when the outage ends (no more
//!   than half down any more): its failure message says which, from apivip's log.
//! - [`one_master_unreachable_from_this_node_has_its_connections_closed`] (the control):
//!   one master of three cut: its streams are closed by apivip and counted, the others
//!   carry on, and no local outage is claimed. So the blackhole does what the first test
//!   relies on, and a proxy that held every close would fail here.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::netns::{Node, NsProcess, Topology};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
/// Masters with an echo server (topology masters 0..MASTERS).
const MASTERS: usize = 3;
/// The topology "master" namespace that runs apivip: the node.
const NODE: usize = MASTERS;
const BACKEND_PORT: u16 = 6443;
const FRONT_PORT: u16 = 8443;
/// The admin endpoint, on the node namespace's own loopback.
const ADMIN: &str = "127.0.0.1:9469";
/// Streams opened to each master.
const PER_MASTER: usize = 3;
/// How long every master stays cut in the first test (at least).
const BURST: Duration = Duration::from_secs(3);
/// Generous deadline for every condition.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long a stream waits for an echo (TCP retransmits back off after the burst).
const ECHO_WAIT: Duration = Duration::from_secs(30);

const OUTAGE_STARTED: &str = "most masters turned down at the same moment from this node";
const OUTAGE_OVER: &str = "local outage over";

fn name(i: usize) -> String {
    format!("master-{i}")
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// The masters: TCP echo servers that say their name first.

/// A TCP echo server bound in a master's namespace, served by threads of the test.
/// Drop shuts the listener and every open connection down and joins the accept thread.
struct Echo {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(node: &Node, name: String) -> io::Result<Echo> {
        let addr = SocketAddr::new(IpAddr::V4(node.ipv4), BACKEND_PORT);
        let listener = node.run_in(move || TcpListener::bind(addr))??;
        let accepting = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<HashMap<u64, TcpStream>>> = Arc::default();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let accept = std::thread::spawn(move || {
            let next = AtomicU64::new(0);
            loop {
                let accepted = accepting.accept();
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok((s, _)) = accepted else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let id = next.fetch_add(1, Ordering::Relaxed);
                if let Ok(clone) = s.try_clone() {
                    lock(&conns2).insert(id, clone);
                }
                let (conns, name) = (conns2.clone(), name.clone());
                std::thread::spawn(move || {
                    serve_echo(s, &name);
                    lock(&conns).remove(&id);
                });
            }
        });
        Ok(Echo {
            listener,
            stop,
            conns,
            accept: Some(accept),
        })
    }
}

/// Says `name`, then echoes until the peer finishes.
fn serve_echo(mut s: TcpStream, name: &str) {
    if s.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A listening socket shut down wakes its blocked accept (EINVAL).
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        for s in lock(&self.conns).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The clients: long-lived streams through apivip.

/// One client connection through apivip, from the client namespace.
struct Stream {
    /// The master that answered (its greeting).
    backend: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Stream {
    fn open(client: &Node, to: SocketAddr) -> Result<Stream, String> {
        let s = client
            .run_in(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)))
            .and_then(|r| r)
            .map_err(|e| format!("connect to {to}: {e}"))?;
        s.set_read_timeout(Some(ECHO_WAIT))
            .map_err(|e| e.to_string())?;
        let mut writer = s.try_clone().map_err(|e| e.to_string())?;
        // apivip connects to a master once the client has sent something.
        writer
            .write_all(b"hello\n")
            .map_err(|e| format!("send through {to}: {e}"))?;
        let mut reader = BufReader::new(s);
        let mut greeting = String::new();
        reader
            .read_line(&mut greeting)
            .map_err(|e| format!("greeting through {to}: {e}"))?;
        if !greeting.ends_with('\n') {
            return Err(format!("closed before the greeting: {greeting:?}"));
        }
        let mut stream = Stream {
            backend: greeting.trim().to_owned(),
            reader,
            writer,
        };
        stream.expect("hello")?;
        Ok(stream)
    }

    fn send(&mut self, msg: &str) -> Result<(), String> {
        self.writer
            .write_all(format!("{msg}\n").as_bytes())
            .map_err(|e| format!("send {msg:?}: {e}"))
    }

    /// Reads the next line: it must be `msg` echoed. An error says how the stream failed
    /// (closed, reset, silent).
    fn expect(&mut self, msg: &str) -> Result<(), String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(format!("closed (EOF) instead of echoing {msg:?}")),
            Ok(_) if line.trim_end() == msg => Ok(()),
            Ok(_) => Err(format!("got {line:?} instead of {msg:?}")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(format!("no echo of {msg:?} within {ECHO_WAIT:?}"))
            }
            Err(e) => Err(format!("{e} instead of echoing {msg:?}")),
        }
    }

    fn round_trip(&mut self, msg: &str) -> Result<(), String> {
        self.send(msg)?;
        self.expect(msg)
    }
}

// ---------------------------------------------------------------------------------------
// The cut: every IP packet between the node's bridge port and some masters dropped.

/// An nftables table in the bridge namespace; [`Cut::restore`] (or drop) deletes it.
struct Cut {
    bridge_ns: String,
    table: String,
    active: bool,
}

impl Cut {
    fn new(topo: &Topology, masters: &[usize]) -> io::Result<Cut> {
        let port = topo.bridge_port(NODE);
        let v4: Vec<String> = masters
            .iter()
            .map(|&i| topo.master(i).ipv4.to_string())
            .collect();
        let v6: Vec<String> = masters
            .iter()
            .map(|&i| topo.master(i).ipv6.to_string())
            .collect();
        let (v4, v6) = (v4.join(", "), v6.join(", "));
        let table = "apivip_node_cut".to_owned();
        let rules = format!(
            "table bridge {table} {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n  iifname \"{port}\" ip daddr {{ {v4} }} drop\n  oifname \"{port}\" ip saddr {{ {v4} }} drop\n  iifname \"{port}\" ip6 daddr {{ {v6} }} drop\n  oifname \"{port}\" ip6 saddr {{ {v6} }} drop\n }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", topo.bridge_ns(), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "nft failed ({}): {}\n{rules}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Cut {
            bridge_ns: topo.bridge_ns().to_owned(),
            table,
            active: true,
        })
    }

    /// Deletes the rule: the masters answer the node again. Idempotent.
    fn restore(&mut self) -> io::Result<()> {
        if !self.active {
            return Ok(());
        }
        self.active = false;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.bridge_ns, "nft", "delete", "table"])
            .args(["bridge", &self.table])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "nft delete table: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        // Gone with the bridge namespace anyway, when the topology went first.
        let _ = self.restore();
    }
}

// ---------------------------------------------------------------------------------------
// The rig: masters, apivip on the node, streams from the client.

/// Dropped in field order: apivip, then the echo servers, then the namespaces (which
/// kill anything left in them), then the temp dir.
struct Rig {
    daemon: NsProcess,
    _echoes: Vec<Echo>,
    topo: Topology,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let topo = Topology::new(MASTERS + 1).unwrap();
        let echoes = (0..MASTERS)
            .map(|i| Echo::start(topo.master(i), name(i)).unwrap())
            .collect();
        let backends: String = (0..MASTERS)
            .map(|i| {
                format!(
                    "  - {{name: {}, address: '{}:{BACKEND_PORT}'}}\n",
                    name(i),
                    topo.master(i).ipv4
                )
            })
            .collect();
        let config = dir.path().join("apivip.yaml");
        std::fs::write(
            &config,
            format!(
                "backends:\n{backends}log: {{format: json}}\nadmin: {{listen: '{ADMIN}'}}\napiserver:\n  listen: '0.0.0.0:{FRONT_PORT}'\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2}}\n"
            ),
        )
        .unwrap();
        let daemon = topo
            .master(NODE)
            .spawn(
                BIN,
                ["run", "-c", config.to_str().unwrap()],
                &dir.path().join("apivip.log"),
            )
            .unwrap();
        let rig = Rig {
            daemon,
            _echoes: echoes,
            topo,
            config,
            _dir: dir,
        };
        let up = rig.wait(DEADLINE, |r| {
            r.metrics()
                .is_ok_and(|m| (0..MASTERS).all(|i| healthy(&m, i) == Some(1.0)))
        });
        assert!(up, "the masters never turned up\n{}", rig.logs());
        rig
    }

    fn node(&self) -> &Node {
        self.topo.master(NODE)
    }

    fn front(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.node().ipv4), FRONT_PORT)
    }

    fn metrics(&self) -> Result<String, String> {
        let url = format!("http://{ADMIN}/metrics");
        let out = self
            .node()
            .exec(&["curl", "-sS", "--max-time", "5", &url])
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `apivip status` in the node namespace (stdout, whatever its exit code).
    fn status(&self) -> String {
        let config = self.config.to_str().unwrap().to_owned();
        self.node()
            .exec(&[BIN, "status", "-c", &config])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("<apivip status: {e}>"))
    }

    /// The JSON log lines of apivip whose message starts with `prefix`.
    fn logged(&self, prefix: &str) -> Vec<String> {
        self.daemon
            .log()
            .lines()
            .filter(|l| message(l).is_some_and(|m| m.starts_with(prefix)))
            .map(str::to_owned)
            .collect()
    }

    /// What apivip logged about backends going down, closes and the local outage.
    fn story(&self) -> String {
        let log = self.daemon.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                message(l).is_some_and(|m| {
                    m.starts_with("backend is")
                        || m.contains("closing")
                        || m.contains("local outage")
                        || m.starts_with(OUTAGE_STARTED)
                        || m.contains("grace")
                })
            })
            .collect();
        lines.join("\n")
    }

    fn logs(&self) -> String {
        format!("apivip log:\n{}", self.daemon.log())
    }

    fn wait(&self, timeout: Duration, mut cond: impl FnMut(&Rig) -> bool) -> bool {
        support::wait_until_blocking(timeout, || cond(self))
    }

    /// Opens streams until every master has at least `PER_MASTER`.
    fn open_streams(&self) -> Vec<Stream> {
        let client = self.topo.client();
        let mut streams: Vec<Stream> = Vec::new();
        let count = |s: &[Stream], i: usize| s.iter().filter(|s| s.backend == name(i)).count();
        for _ in 0..MASTERS * PER_MASTER * 4 {
            if (0..MASTERS).all(|i| count(&streams, i) >= PER_MASTER) {
                break;
            }
            let s = Stream::open(client, self.front())
                .unwrap_or_else(|e| panic!("stream through apivip: {e}\n{}", self.logs()));
            streams.push(s);
        }
        for i in 0..MASTERS {
            assert!(
                count(&streams, i) >= PER_MASTER,
                "only {} streams landed on {} of {}",
                count(&streams, i),
                name(i),
                streams.len()
            );
        }
        streams
    }
}

/// One JSON log line of apivip.
struct Logged {
    /// Seconds since midnight (UTC) of its timestamp.
    at: f64,
    message: String,
    backend: String,
    /// Why, where the line says (`context`).
    context: String,
}

fn parse_log(log: &str) -> Vec<Logged> {
    log.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let ts = v["timestamp"].as_str()?;
            // 2026-12-02T14:14:41.610361Z
            let time = ts.split_once('T')?.1.trim_end_matches('Z');
            let mut hms = time.split(':').map(|p| p.parse::<f64>().ok());
            let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
            Some(Logged {
                at: h * 3600.0 + m * 60.0 + sec,
                message: v["fields"]["message"].as_str()?.to_owned(),
                backend: v["fields"]["backend"].as_str().unwrap_or("").to_owned(),
                context: v["fields"]["context"].as_str().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

/// Why apivip closed each master's connections, from its log: at once when it turned
/// down, or when the local outage ended.
fn diagnosis(log: &str) -> String {
    let events = parse_log(log);
    let ms = |a: f64, b: f64| format!("{:.1} ms", (b - a) * 1000.0);
    let started = events
        .iter()
        .find(|e| e.message.starts_with(OUTAGE_STARTED));
    let over = events.iter().find(|e| e.message.starts_with(OUTAGE_OVER));
    let downs: Vec<&Logged> = events
        .iter()
        .filter(|e| e.message == "backend is down")
        .collect();
    let mut out = Vec::new();
    for e in &events {
        let closed = e.message == "closing connections to an unreachable backend";
        let held = e.context.starts_with("held");
        if closed && !held {
            let nth = downs
                .iter()
                .position(|d| d.backend == e.backend && d.at <= e.at);
            let when = match started {
                Some(s) if s.at >= e.at => format!(
                    "the local outage was recognised {} later, when the next master turned down",
                    ms(e.at, s.at)
                ),
                Some(_) => "during the local outage".to_owned(),
                None => "no local outage was recognised".to_owned(),
            };
            out.push(format!(
                "{}: closed at once when it turned down unreachable (number {} of {} to turn down): \
                 one master of {MASTERS} down is no local outage yet; {when}",
                e.backend,
                nth.map_or(0, |n| n + 1),
                downs.len()
            ));
        } else if closed {
            let up = events
                .iter()
                .find(|u| u.message == "backend is up" && u.backend == e.backend && u.at >= e.at);
            let ended = over.map_or(String::new(), |o| {
                format!(" ({OUTAGE_OVER:?} logged {} before)", ms(o.at, e.at))
            });
            out.push(format!(
                "{}: held during the outage, then closed when the outage ended because \
                 no more than half were down{ended}, while it was still marked down; it \
                 turned up {} after the close",
                e.backend,
                up.map_or("never".to_owned(), |u| ms(e.at, u.at))
            ));
        }
    }
    out.join("\n")
}

/// The `fields.message` of a JSON log line.
fn message(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v["fields"]["message"].as_str().map(str::to_owned)
}

fn healthy(metrics: &str, i: usize) -> Option<f64> {
    support::metric_sample(
        metrics,
        "apivip_backend_healthy",
        &[("frontend", "apiserver"), ("backend", &name(i))],
    )
}

fn backend_state(metrics: &str, i: usize) -> String {
    [
        "up",
        "unreachable",
        "unresponsive",
        "not_ready",
        "draining",
        "unknown",
    ]
    .into_iter()
    .find(|s| {
        support::metric_sample(
            metrics,
            "apivip_backend_state",
            &[("backend", &name(i)), ("state", s)],
        ) == Some(1.0)
    })
    .unwrap_or("?")
    .to_owned()
}

fn closed_on_down(metrics: &str, i: usize) -> Option<f64> {
    support::metric_sample(
        metrics,
        "apivip_backend_closed_on_down_total",
        &[("frontend", "apiserver"), ("backend", &name(i))],
    )
}

fn local_outage(metrics: &str) -> Option<f64> {
    support::metric_sample(
        metrics,
        "apivip_frontend_local_outage",
        &[("frontend", "apiserver")],
    )
}

fn preflight(test: &str) -> bool {
    support::require_root(test)
        && support::require_bin(test, "nft").is_some()
        && support::require_bin(test, "curl").is_some()
}

// ---------------------------------------------------------------------------------------

#[test]
fn all_masters_unreachable_from_this_node_for_a_short_burst_keep_their_connections() {
    if !preflight("all_masters_unreachable_from_this_node_for_a_short_burst_keep_their_connections")
    {
        return;
    }
    let rig = Rig::start();
    let mut streams = rig.open_streams();
    let m = rig.metrics().unwrap();
    assert_eq!(local_outage(&m), Some(0.0), "{m}");

    let all: Vec<usize> = (0..MASTERS).collect();
    let cut_at = Instant::now();
    let mut cut = Cut::new(&rig.topo, &all).unwrap();

    // Every master turns down, as unreachable (their connects time out).
    let mut states = Vec::new();
    let down = rig.wait(DEADLINE, |r| {
        r.metrics().is_ok_and(|m| {
            states = (0..MASTERS).map(|i| backend_state(&m, i)).collect();
            (0..MASTERS).all(|i| healthy(&m, i) == Some(0.0))
        })
    });
    let all_down_after = cut_at.elapsed();
    assert!(
        down,
        "the masters did not all turn down when cut: {states:?}\n{}",
        rig.logs()
    );
    // Recognised as this node's outage: logged, and the gauge is 1 while it holds.
    let warned = rig.wait(DEADLINE, |r| !r.logged(OUTAGE_STARTED).is_empty());
    let warned_after = cut_at.elapsed();
    let m = rig.metrics().unwrap_or_default();
    let gauge_during = local_outage(&m);
    let status_during = rig.status();
    // Sent while the masters are cut: TCP must deliver it once the burst is over.
    let sent_during: Vec<Result<(), String>> =
        streams.iter_mut().map(|s| s.send("during")).collect();
    // The burst lasts at least BURST (longer only if the checks above took longer).
    if let Some(rest) = BURST.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(rest);
    }
    cut.restore().unwrap();
    let restored_at = Instant::now();
    let burst = restored_at - cut_at;

    let up = rig.wait(DEADLINE, |r| {
        r.metrics()
            .is_ok_and(|m| (0..MASTERS).all(|i| healthy(&m, i) == Some(1.0)))
    });
    let over = rig.wait(DEADLINE, |r| {
        !r.logged(OUTAGE_OVER).is_empty()
            && r.metrics().is_ok_and(|m| local_outage(&m) == Some(0.0))
    });
    let over_after = restored_at.elapsed();

    // Every stream: what was sent during the burst comes back, and more after it.
    let mut results: BTreeMap<String, Vec<Result<(), String>>> = BTreeMap::new();
    for (s, sent) in streams.iter_mut().zip(sent_during) {
        let r = sent
            .and_then(|()| s.expect("during"))
            .and_then(|()| s.round_trip("after"));
        results.entry(s.backend.clone()).or_default().push(r);
    }
    let echoed_after = restored_at.elapsed();
    let m = rig.metrics().unwrap_or_default();
    let closed: Vec<(String, Option<f64>)> = (0..MASTERS)
        .map(|i| (name(i), closed_on_down(&m, i)))
        .collect();

    println!(
        "cut {} masters from the node for {}: all down (as {states:?}) {} after the cut, \
         local outage logged {} after; gauge during {gauge_during:?}; up again and outage \
         over {} after the restore; every stream checked {} after the restore",
        MASTERS,
        secs(burst),
        secs(all_down_after),
        secs(warned_after),
        secs(over_after),
        secs(echoed_after),
    );
    for (backend, rs) in &results {
        let ok = rs.iter().filter(|r| r.is_ok()).count();
        println!("  {backend}: {ok} of {} streams carried on", rs.len());
    }
    println!("  closed on down: {closed:?}");

    let story = rig.story();
    let failed: Vec<String> = results
        .iter()
        .flat_map(|(b, rs)| {
            rs.iter()
                .filter_map(move |r| r.as_ref().err().map(|e| format!("{b}: {e}")))
        })
        .collect();
    assert!(
        states.iter().all(|s| s == "unreachable"),
        "a blackholed master should be unreachable (connect timeout): {states:?}\n{story}"
    );
    assert!(
        warned,
        "no local outage warning ({OUTAGE_STARTED:?}) in the log\n{story}"
    );
    assert_eq!(
        gauge_during,
        Some(1.0),
        "apivip_frontend_local_outage during the outage\n{story}"
    );
    assert!(
        status_during.contains("LOCAL OUTAGE"),
        "apivip status during the outage:\n{status_during}\n{story}"
    );
    assert!(up, "the masters did not all turn up again\n{}", rig.logs());
    assert!(
        over,
        "the local outage never ended ({OUTAGE_OVER:?} logged and the gauge 0)\n{story}"
    );
    assert!(
        failed.is_empty(),
        "{} of {} streams did not survive a {} burst in which every master was \
         unreachable from this node (closed on down per master: {closed:?}):\n  {}\n\
         why, from apivip's log:\n{}\napivip's account:\n{story}",
        failed.len(),
        streams.len(),
        secs(burst),
        failed.join("\n  "),
        diagnosis(&rig.daemon.log())
    );
    assert!(
        closed.iter().all(|(_, n)| *n == Some(0.0)),
        "connections counted closed on down: {closed:?}\n{story}"
    );
}

/// The control: one master of three cut from the node is that master's problem.
#[test]
fn one_master_unreachable_from_this_node_has_its_connections_closed() {
    if !preflight("one_master_unreachable_from_this_node_has_its_connections_closed") {
        return;
    }
    let rig = Rig::start();
    let mut streams = rig.open_streams();
    const CUT: usize = 0;
    let cut_at = Instant::now();
    let mut cut = Cut::new(&rig.topo, &[CUT]).unwrap();

    let mut state = String::new();
    let down = rig.wait(DEADLINE, |r| {
        r.metrics().is_ok_and(|m| {
            state = backend_state(&m, CUT);
            healthy(&m, CUT) == Some(0.0)
        })
    });
    assert!(down, "{} never turned down\n{}", name(CUT), rig.logs());
    let down_after = cut_at.elapsed();

    // Its streams are closed by apivip (the master itself never sees a thing); the
    // others carry on.
    let mut cut_streams = 0;
    for s in &mut streams {
        let r = s.round_trip("during");
        if s.backend == name(CUT) {
            cut_streams += 1;
            let e = r.expect_err("a stream to the cut master carried data");
            assert!(
                !e.starts_with("no echo"),
                "a stream to the cut master was left open: {e}\n{}",
                rig.story()
            );
        } else {
            r.unwrap_or_else(|e| panic!("a stream to {}: {e}\n{}", s.backend, rig.story()));
        }
    }
    let closed_after = cut_at.elapsed();
    let m = rig.metrics().unwrap();
    let gauge = local_outage(&m);
    let closed: Vec<Option<f64>> = (0..MASTERS).map(|i| closed_on_down(&m, i)).collect();
    println!(
        "cut {} from the node: down (as {state}) {} after the cut, its {cut_streams} streams \
         closed {} after the cut; closed on down per master: {closed:?}",
        name(CUT),
        secs(down_after),
        secs(closed_after)
    );
    assert_eq!(state, "unreachable", "{}", rig.story());
    assert_eq!(
        closed[CUT],
        Some(cut_streams as f64),
        "closed on down of {}\n{}",
        name(CUT),
        rig.story()
    );
    for (i, n) in closed.iter().enumerate().filter(|(i, _)| *i != CUT) {
        assert_eq!(*n, Some(0.0), "closed on down of {}", name(i));
    }
    assert_eq!(gauge, Some(0.0), "one master of three is no local outage");
    assert!(
        rig.logged(OUTAGE_STARTED).is_empty(),
        "a local outage was claimed for one master of three\n{}",
        rig.story()
    );
    cut.restore().unwrap();
    let up = rig.wait(DEADLINE, |r| {
        r.metrics().is_ok_and(|m| healthy(&m, CUT) == Some(1.0))
    });
    assert!(up, "{} never turned up again\n{}", name(CUT), rig.logs());
}
