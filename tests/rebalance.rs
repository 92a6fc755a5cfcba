//! Rebalancing after recovery, on loopback, with plain TCP echo backends whose clients
//! choose when they talk: which connections move (the longest idle first, never one
//! younger than `min_age`) and at what pace. (`tests/proxy.rs` shows the same with
//! watch streams and real kubectl clients.)

mod support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apivip::config::FrontendKind;
use apivip::health::Status;
use apivip::supervisor::Supervisor;
use support::echo::{round_trip, AfterEof, Backend, DEADLINE};
use support::wait_until;
use tokio::net::TcpStream;

/// How a client uses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Connected before the master returned, silent since its first round trip.
    OldIdle,
    /// Connected before, a round trip every 100 ms.
    OldChatty,
    /// Connected a moment before the master returned, silent.
    Young,
}

/// Closes the proxy made, by client kind and when.
type Closes = Arc<Mutex<Vec<(Kind, Instant)>>>;

/// A client that keeps one connection in use its way; when the proxy closes it, the
/// close is recorded and the client reconnects (once: the test checks nobody is moved
/// twice) and goes on the same way.
fn client(proxy: SocketAddr, kind: Kind, closes: Closes) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut moved = false;
        loop {
            let mut s = TcpStream::connect(proxy).await.unwrap();
            assert!(round_trip(&mut s).await, "a new connection was not served");
            let closed = match kind {
                Kind::OldChatty => loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if !round_trip(&mut s).await {
                        break true;
                    }
                },
                Kind::OldIdle | Kind::Young => {
                    support::echo::closed_within(&mut s, Duration::from_secs(3600)).await
                }
            };
            if closed {
                closes.lock().unwrap().push((kind, Instant::now()));
            }
            if moved {
                // A second move: recorded; the test fails on it.
                return;
            }
            moved = true;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_idle_old_connections_move_first_paced_and_young_ones_never() {
    let a = Backend::start(AfterEof::Close).await;
    let b = Backend::start(AfterEof::Close).await;
    // The third master is down at start: its address refuses.
    let c_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "backends:\n  - {{name: b0, address: '{}'}}\n  - {{name: b1, address: '{}'}}\n  - {{name: b2, address: '{c_addr}'}}\nadmin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: '127.0.0.1:0'\n  rebalance: {{rate_percent: 20, min_age: 5s, spread_percent: 0}}\n  check: {{kind: tcp, interval: 200ms, timeout: 200ms, rise: 1, fall: 2}}\n",
        a.addr, b.addr
    );
    let path = dir.path().join("apivip.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let config = apivip::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let sup = Supervisor::start(&config).await.unwrap();
    let proxy = sup.listen_addrs(FrontendKind::Apiserver)[0];
    let status = |i: usize| sup.health().current().frontends[0].backends[i].status;
    assert!(
        wait_until(DEADLINE, || async {
            status(0) == Status::Up && status(1) == Status::Up && !status(2).is_up()
        })
        .await,
        "the masters did not settle: {:?}",
        (status(0), status(1), status(2))
    );
    let fe = sup.frontend(FrontendKind::Apiserver).unwrap();
    let total = || fe.stats.active.load(Ordering::Relaxed);
    let closes: Closes = Arc::default();
    let mut tasks = Vec::new();
    // Per master: 2 old idle, 10 old chatty, 3 young (least-connections alternates).
    for (kind, n) in [(Kind::OldIdle, 4), (Kind::OldChatty, 20)] {
        for _ in 0..n {
            let before = total();
            tasks.push(client(proxy, kind, Arc::clone(&closes)));
            assert!(wait_until(DEADLINE, || async { total() > before }).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(5500)).await;
    for _ in 0..6 {
        let before = total();
        tasks.push(client(proxy, Kind::Young, Arc::clone(&closes)));
        assert!(wait_until(DEADLINE, || async { total() > before }).await);
    }
    assert_eq!(fe.active_per_backend(), vec![15, 15, 0]);

    let c = Backend::start_at(c_addr, AfterEof::Close).await.unwrap();
    assert!(wait_until(DEADLINE, || async { status(2) == Status::Up }).await);
    let returned = Instant::now();
    // Mean 10 each: 5 move from each loaded master, and their clients reconnect to it.
    let settled = || {
        let moved = fe.stats.rebalanced.load(Ordering::Relaxed) as usize;
        moved > 0
            && moved == closes.lock().unwrap().len()
            && fe.active_per_backend() == [10, 10, 10]
    };
    assert!(
        wait_until(DEADLINE, || async { settled() }).await,
        "not rebalanced: {:?}, {} moved, closes {:?}",
        fe.active_per_backend(),
        fe.stats.rebalanced.load(Ordering::Relaxed),
        closes.lock().unwrap()
    );
    eprintln!(
        "spread even {:?} after the master returned",
        returned.elapsed()
    );
    // Nothing more moves once even.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let closes = closes.lock().unwrap().clone();
    assert_eq!(closes.len(), 10, "{closes:?}");
    assert_eq!(fe.stats.rebalanced.load(Ordering::Relaxed), 10);
    let of = |k: Kind| closes.iter().filter(|(kind, _)| *kind == k).count();
    // The longest idle first: every old idle one, then the rest from the chatty ones;
    // never a young one, however idle.
    assert_eq!(of(Kind::OldIdle), 4, "{closes:?}");
    assert_eq!(of(Kind::OldChatty), 6, "{closes:?}");
    assert_eq!(of(Kind::Young), 0, "{closes:?}");
    // Paced: at 20 % of 30 a second, 10 moves take more than one 500 ms tick.
    let first = closes.iter().map(|(_, t)| *t).min().unwrap();
    let last = closes.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        last - first >= Duration::from_millis(300),
        "10 moves within {:?}: not paced",
        last - first
    );
    for t in tasks {
        t.abort();
    }
    drop(c);
}
