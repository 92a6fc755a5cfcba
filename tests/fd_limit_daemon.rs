//! `apivip run` started under `prlimit --nofile` and hit by an accept storm far past its
//! descriptor budget (tests/fd_limit.rs does the same in-process, down to EMFILE): no
//! panic, no busy loop, never EMFILE (the budget refuses first), a real client is still
//! served during the storm (silent clients make room), and once the storm goes the
//! process's descriptors return to where they were.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{ChildGuard, Lines};
use support::echo::{AfterEof, Backend};
use support::{metric_sample, wait_until_blocking};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const DEADLINE: Duration = Duration::from_secs(20);
/// The daemon's descriptor limit: a budget of (400 - 256 - 2 x 12 pipes) / 2 = 60
/// connections.
const LIMIT: u32 = 400;
/// Silent connections the storm holds: five times the budget.
const STORM: usize = 300;

/// A bash child that opens `n` silent connections to `port` and holds them until killed.
struct Storm(Child);

impl Storm {
    fn start(port: u16, n: usize) -> Storm {
        let script = format!(
            "for i in $(seq {n}); do exec {{fd}}<>/dev/tcp/127.0.0.1/{port} || true; done; echo opened; sleep 120"
        );
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash");
        let mut out = child.stdout.take().expect("piped");
        let mut buf = [0u8; 16];
        let _ = out.read(&mut buf);
        Storm(child)
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A round trip through the proxy on a new connection.
fn served(proxy: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&proxy, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut back = [0u8; 4];
    s.write_all(b"ping").is_ok() && s.read_exact(&mut back).is_ok() && back == *b"ping"
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU seconds (user + system) the process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime
    // the 13th of those.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

#[test]
fn apivip_run_under_prlimit_refuses_a_storm_past_its_budget_and_recovers() {
    const TEST: &str = "apivip_run_under_prlimit_refuses_a_storm_past_its_budget_and_recovers";
    let Some(prlimit) = support::require_bin(TEST, "prlimit") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(Backend::start(AfterEof::Close));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apivip.yaml");
    std::fs::write(
        &path,
        format!(
            "backends: [{{address: '{}'}}]\nadmin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: 127.0.0.1:0\n  first_byte_timeout: 60s\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms}}\nlog: {{format: json}}\n",
            backend.addr
        ),
    )
    .unwrap();
    let mut child = ChildGuard(
        Command::new(prlimit)
            .arg(format!("--nofile={LIMIT}:{LIMIT}"))
            .args([BIN, "run", "-c", path.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut log = Lines::read(child.0.stderr.take().unwrap());
    let proxy = log.logged_addr(DEADLINE, "listening");
    let admin = log.logged_addr(DEADLINE, "admin endpoint listening");
    let metrics = || {
        rt.block_on(apivip::admin::client::request(
            admin,
            http::Method::GET,
            "/metrics",
            None,
            Duration::from_secs(5),
        ))
        .map(|(_, body)| body)
        .unwrap_or_default()
    };
    let sample = |name: &str, labels: &[(&str, &str)]| {
        metric_sample(&metrics(), name, labels).unwrap_or(-1.0)
    };
    assert!(
        wait_until_blocking(DEADLINE, || served(proxy)),
        "not served before the storm"
    );
    let baseline = descriptors(pid);

    let storm = Storm::start(proxy.port(), STORM);
    // The storm past the budget is refused as such, never by running out.
    assert!(
        wait_until_blocking(DEADLINE, || {
            sample(
                "apivip_frontend_refused_connections_total",
                &[("frontend", "apiserver"), ("reason", "fd_budget")],
            ) > 0.0
        }),
        "no fd_budget refusal under the storm"
    );
    assert!(descriptors(pid) < LIMIT as usize, "at the limit");
    // A real client is served meanwhile: silent clients make room for it (their
    // first-byte timeout, 60 s here, is past the deadline).
    assert!(
        wait_until_blocking(DEADLINE, || served(proxy)),
        "a real client was locked out by the storm"
    );
    // No busy loop: the storm holds its connections, the daemon idles.
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let used = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64();
    assert!(used < 0.5, "{used:.2} CPU-s a second under a held storm");
    assert_eq!(
        sample(
            "apivip_frontend_accept_failing",
            &[("frontend", "apiserver")]
        ),
        0.0,
        "accept failed for want of descriptors"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "apivip exited under the storm"
    );

    drop(storm);
    // Its connections close (the proxy sees the EOF, or the first-byte timeout): back
    // to the baseline, and serving.
    assert!(
        wait_until_blocking(DEADLINE, || descriptors(pid) <= baseline + 2),
        "descriptors {} after the storm, {baseline} before",
        descriptors(pid)
    );
    assert!(served(proxy), "not served after the storm");
    assert!(
        !log.fresh().iter().any(|l| l.contains("panicked")),
        "{:#?}",
        log.seen
    );
}
