//! DNS failover (issue 12): how fast the name follows a master, and how many updates
//! it costs. Three imitation apiservers, three apivip nodes (the `Supervisor` of
//! `apivip run`, in this process) and a real BIND (`tests/support/dns.rs`), checks every
//! 1 s with rise 2 and fall 2 (what `apivip config --shape dns` writes). `BENCHMARKS.md`
//! ("DNS failover") records a run.
//!
//! Per run (`APIVIP_BENCH_RUNS`, 10), with `dig` at BIND every 20 ms:
//! - **not ready**: m2's `/readyz` turns 500; until `dig` no longer returns it
//!   (**removed**); then ready again, until `dig` returns it (**returned**).
//! - **kill**: m3's apiserver resets every connection and its apivip stops at once (no
//!   goodbye, as kill -9); until `dig` no longer returns it; then both start again,
//!   until `dig` returns it.
//!
//! Then, on a settled cluster, the **updates** per hour: `APIVIP_BENCH_STEADY_SECS` (120)
//! with nothing changing, and the same time with m2 flapping (ready and not ready in
//! turn every `APIVIP_BENCH_FLAP_SECS`, 3 s), counted from every node's write counters
//! and scaled to an hour.
//!
//! Needs `named` and `dig` (Debian `bind9`, `bind9-dnsutils`): README command 2 installs
//! them. `cargo bench --bench dns_failover`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use apivip::supervisor::Supervisor;
use apivip::testkit::apiserver::Mode;
use support::dns::{Checks, Nodes, ALL};

const POLL: Duration = Duration::from_millis(20);
const LIMIT: Duration = Duration::from_secs(30);

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Polls `dig` until it returns `want`; the time since `from`.
async fn until_dig(n: &Nodes, want: &[&str], from: Instant) -> Duration {
    loop {
        if n.dig() == want {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < LIMIT,
            "dig never returned {want:?}: {:?}",
            n.dig()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn stats(label: &str, v: &[Duration]) -> String {
    let mut s = v.to_vec();
    s.sort();
    let median = s[(s.len() - 1) / 2];
    let max = s[s.len() - 1];
    let min = s[0];
    format!(
        "{label:<22} median {:>6.0} ms   min {:>6.0} ms   max {:>6.0} ms   ({} runs)",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        s.len()
    )
}

/// Every node's writes and reads so far.
fn requests(n: &Nodes) -> (u64, u64) {
    let (mut w, mut r) = (0, 0);
    for d in n.sups.iter().flatten().filter_map(|s| s.dns()) {
        for ((kind, _), count) in d.counters.requests.lock().unwrap().iter() {
            match *kind {
                "write" => w += count,
                _ => r += count,
            }
        }
    }
    (w, r)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let checks = Checks {
        interval: Duration::from_secs(1),
        rise: 2,
        fall: 2,
    };
    let Some(mut n) = Nodes::start_with("dns_failover bench", false, checks).await else {
        return;
    };
    let runs = env_num("APIVIP_BENCH_RUNS", 10);
    let t = Instant::now();
    until_dig(&n, &ALL, t).await;
    n.wait_votes(3).await;
    println!(
        "dns_failover: checks every {:?}, rise {}, fall {}; dig every {POLL:?}",
        checks.interval, checks.rise, checks.fall
    );
    let (mut nr_out, mut nr_back, mut kill_out, mut kill_back) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let t = Instant::now();
        n.masters[1].set_mode(Mode::NotReady);
        let out = until_dig(&n, &[ALL[0], ALL[2]], t).await;
        let t = Instant::now();
        n.masters[1].set_mode(Mode::Ready);
        let back = until_dig(&n, &ALL, t).await;

        let t = Instant::now();
        n.masters[2].set_mode(Mode::Reset);
        if let Some(s) = n.sups[2].take() {
            s.shutdown(Duration::ZERO).await;
        }
        let kout = until_dig(&n, &[ALL[0], ALL[1]], t).await;
        let t = Instant::now();
        n.masters[2].set_mode(Mode::Ready);
        let path = n.dir.path().join("node2.yaml");
        let config = apivip::config::load(&path).unwrap();
        n.sups[2] = Some(Supervisor::start(&config).await.unwrap());
        let kback = until_dig(&n, &ALL, t).await;
        println!(
            "run {run}: not ready: removed {:.0} ms, returned {:.0} ms; kill: removed {:.0} ms, returned {:.0} ms",
            out.as_secs_f64() * 1e3,
            back.as_secs_f64() * 1e3,
            kout.as_secs_f64() * 1e3,
            kback.as_secs_f64() * 1e3
        );
        nr_out.push(out);
        nr_back.push(back);
        kill_out.push(kout);
        kill_back.push(kback);
        n.wait_votes(3).await;
    }
    println!("{}", stats("not ready: removed", &nr_out));
    println!("{}", stats("not ready: returned", &nr_back));
    println!("{}", stats("kill: removed", &kill_out));
    println!("{}", stats("kill: restarted: back", &kill_back));

    let secs = env_num("APIVIP_BENCH_STEADY_SECS", 120);
    let flap = Duration::from_secs(env_num("APIVIP_BENCH_FLAP_SECS", 3));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (w0, r0) = requests(&n);
    let c0 = n.record_changes();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (w1, r1) = requests(&n);
    let c1 = n.record_changes();
    let per_hour = |x: u64| x as f64 * 3600.0 / secs as f64;
    println!(
        "steady ({secs} s, 3 nodes): {} writes ({:.0}/h), {} address changes, {} reads ({:.0}/h)",
        w1 - w0,
        per_hour(w1 - w0),
        c1 - c0,
        r1 - r0,
        per_hour(r1 - r0)
    );
    let t = Instant::now();
    let mut ready = true;
    let mut toggles = 0u64;
    while t.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(flap).await;
        ready = !ready;
        toggles += 1;
        n.masters[1].set_mode(if ready { Mode::Ready } else { Mode::NotReady });
    }
    n.masters[1].set_mode(Mode::Ready);
    let (w2, r2) = requests(&n);
    let c2 = n.record_changes();
    println!(
        "flapping every {flap:?} ({secs} s, {toggles} toggles): {} writes ({:.0}/h), {} address changes ({:.0}/h), {} reads",
        w2 - w1,
        per_hour(w2 - w1),
        c2 - c1,
        per_hour(c2 - c1),
        r2 - r1
    );
}
