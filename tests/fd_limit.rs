//! The proxy near its descriptor limit, in a test binary of its own (it lowers the
//! process's limit): an accept storm is refused by the descriptor budget without
//! EMFILE; when descriptors run out anyway (taken elsewhere in the process), accepting
//! backs off without a busy loop, the node stops claiming it can serve, and it recovers
//! when the descriptors come back. The clients run in a child process (bash's
//! `/dev/tcp`), so they do not use this process's descriptors.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apivip::config::{FrontendKind, Track};
use apivip::proxy::Refused;
use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};
use support::echo::{served_from, AfterEof, Backend, Proxy, DEADLINE};
use support::wait_until;

/// The soft limit this test runs under.
const LIMIT: u64 = 512;

/// A child that, once told, opens `n` connections to `port` and holds them (silent)
/// until killed. Started before this process runs out of descriptors: telling it and
/// hearing back use pipes that exist already.
struct Clients(Child);

impl Clients {
    fn start(port: u16, n: usize) -> Clients {
        let script = format!(
            "read go; for i in $(seq {n}); do exec {{fd}}<>/dev/tcp/127.0.0.1/{port} || true; done; echo opened; sleep 60"
        );
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash");
        Clients(child)
    }

    /// Makes the connects and waits until every one was made.
    fn open(&mut self) {
        use std::io::{Read, Write};
        let mut input = self.0.stdin.take().expect("piped");
        input.write_all(b"go\n").expect("the child reads");
        let mut out = self.0.stdout.take().expect("piped");
        let mut buf = [0u8; 16];
        let _ = out.read(&mut buf);
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cpu_seconds() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_descriptor_limit_the_budget_refuses_and_failed_accepts_take_the_node_out() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, LIMIT.min(hard), hard).unwrap();
    let budget = apivip::proxy::descriptor_budget(LIMIT, FrontendKind::ALL.len());
    let b = Backend::start(AfterEof::Close).await;
    // On two workers, as `apivip run` runs: both accept loops run out of descriptors.
    let p = Proxy::start_with(&b, "  first_byte_timeout: 0s\n", 2).await;
    let port = p.addr.port();
    let serving = |p: &Proxy| {
        apivip::vrrp::track::can_serve(
            &Track::Proxy(FrontendKind::Apiserver),
            &p.sup.health().current(),
            true,
        )
    };
    assert!(serving(&p));

    // A storm beyond the budget: refused as fd_budget, never EMFILE.
    let mut storm = Clients::start(port, budget.connections + 100);
    storm.open();
    assert!(
        wait_until(DEADLINE, || async { p.refused(Refused::FdBudget) >= 100 }).await,
        "budget {}: {} refused, {} active",
        budget.connections,
        p.refused(Refused::FdBudget),
        p.active()
    );
    assert!(p.active() <= budget.connections);
    assert!(serving(&p), "the budget refused, so accept never failed");
    drop(storm);
    assert!(wait_until(DEADLINE, || async { p.active() == 0 }).await);

    // Descriptors taken elsewhere in the process: accept fails with EMFILE.
    let mut pending = Clients::start(port, 20);
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    pending.open();
    assert!(
        wait_until(DEADLINE, || async { !serving(&p) }).await,
        "the node still claims it can serve while accept fails"
    );
    let error = p.sup.health().current().frontends[0].accept_error.clone();
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("Too many open files")),
        "{error:?}"
    );
    // The accept loop backs off: no busy loop on a listener that stays readable.
    let cpu = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds() - cpu;
    assert!(used < 0.5, "{used:.2} s of CPU in 1 s while accept failed");

    // The descriptors come back: accepts work and the node can serve again.
    drop(hog);
    assert!(
        wait_until(DEADLINE, || async { serving(&p) }).await,
        "the node never recovered: {:?}",
        p.sup.health().current()
    );
    assert!(p.sup.health().current().frontends[0].accept_error.is_none());
    drop(pending);
    assert!(served_from("127.0.0.1", p.addr).await);
}
