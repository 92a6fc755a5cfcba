//! The proxy under abuse, on loopback: silent clients, half-closed connections, one
//! address taking more than its share (harness: `support::echo`). Thousands of silent
//! sockets, which need most of the descriptor limit, run alone in `tests/abuse_load.rs`.

mod support;

use std::time::{Duration, Instant};

use apivip::proxy::Refused;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::echo::{
    closed_within, connect_from, round_trip, served_from, AfterEof, Backend, Proxy, DEADLINE,
    TRICKLE,
};
use support::wait_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed_at_the_first_byte_timeout_and_never_reaches_a_master() {
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(&b, "  first_byte_timeout: 400ms\n").await;
    let started = Instant::now();
    let mut silent = connect_from("127.0.0.1", p.addr).await.unwrap();
    // A client that speaks before the timeout is served, however late.
    let mut slow = connect_from("127.0.0.1", p.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        round_trip(&mut slow).await,
        "a client that spoke within the timeout was not served"
    );
    assert!(
        closed_within(&mut silent, DEADLINE).await,
        "the silent client was never closed"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(350),
        "closed after {waited:?}, before its first-byte timeout"
    );
    assert_eq!(p.refused(Refused::FirstByteTimeout), 1);
    assert_eq!(
        p.proxied(),
        1,
        "the silent client must not cost a backend connection"
    );
    assert!(round_trip(&mut slow).await, "the served client was cut");
}

/// A frontend full of silent clients (from many addresses) makes room for a new one by
/// closing the longest-silent client; clients that spoke are never closed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_frontend_evicts_the_longest_silent_client_for_a_new_one() {
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(
        &b,
        "  max_connections: 10\n  per_source_max_connections: 0\n  first_byte_timeout: 1m\n",
    )
    .await;
    let mut talking = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from("127.0.0.5", p.addr).await.unwrap();
        assert!(round_trip(&mut s).await);
        talking.push(s);
    }
    let mut silent = Vec::new();
    for i in 0..8 {
        silent.push(
            connect_from(&format!("127.0.1.{}", i + 1), p.addr)
                .await
                .unwrap(),
        );
    }
    // Full (2 speaking + 8 silent). Once the silent ones are older than the minimum,
    // a new client gets in.
    tokio::time::sleep(apivip::proxy::EVICTABLE_AFTER + Duration::from_millis(200)).await;
    assert!(
        served_from("127.0.0.2", p.addr).await,
        "a new client was locked out"
    );
    assert_eq!(p.refused(Refused::EvictedSilent), 1);
    // One silent client (among the oldest: tasks start in about accept order) made room.
    let mut closed = 0;
    for s in &mut silent {
        if closed_within(s, Duration::from_millis(300)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "one silent client must have been closed");
    for s in &mut talking {
        assert!(round_trip(s).await, "a client that spoke was closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_byte_timeout_of_zero_connects_at_once_and_waits() {
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(&b, "  first_byte_timeout: 0s\n").await;
    let mut silent = connect_from("127.0.0.1", p.addr).await.unwrap();
    assert!(
        wait_until(DEADLINE, || async { p.proxied() == 1 }).await,
        "with no first-byte timeout the backend is connected before the client speaks"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(round_trip(&mut silent).await);
    assert_eq!(p.refused(Refused::FirstByteTimeout), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_connection_with_a_silent_peer_is_closed_at_the_half_close_timeout() {
    let stuck = Backend::start(AfterEof::Hold).await;
    let p = Proxy::start(&stuck, "  half_close_timeout: 400ms\n").await;
    let mut s = connect_from("127.0.0.1", p.addr).await.unwrap();
    assert!(round_trip(&mut s).await);
    s.shutdown().await.unwrap();
    let finished = Instant::now();
    assert!(closed_within(&mut s, DEADLINE).await, "never closed");
    assert!(
        finished.elapsed() >= Duration::from_millis(350),
        "closed after {:?}, before the half-close timeout",
        finished.elapsed()
    );
    assert_eq!(p.refused(Refused::HalfCloseTimeout), 1);
    assert!(wait_until(DEADLINE, || async { p.active() == 0 }).await);

    // A peer that keeps sending after the client's FIN is not cut, however long it
    // streams: only silence counts.
    let streaming = Backend::start(AfterEof::Trickle).await;
    let r = Proxy::start(&streaming, "  half_close_timeout: 400ms\n").await;
    let mut s = connect_from("127.0.0.1", r.addr).await.unwrap();
    assert!(round_trip(&mut s).await);
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut got)).await;
    assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    assert_eq!(got.len(), TRICKLE, "the stream after the FIN was cut");
    assert_eq!(r.refused(Refused::HalfCloseTimeout), 0);

    // A peer that finishes too, within the timeout, ends normally.
    let normal = Backend::start(AfterEof::Close).await;
    let q = Proxy::start(&normal, "  half_close_timeout: 400ms\n").await;
    let mut s = connect_from("127.0.0.1", q.addr).await.unwrap();
    assert!(round_trip(&mut s).await);
    s.shutdown().await.unwrap();
    assert!(closed_within(&mut s, DEADLINE).await);
    assert_eq!(q.refused(Refused::HalfCloseTimeout), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_share() {
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(&b, "  per_source_max_connections: 3\n").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.1", p.addr).await.unwrap();
        assert!(round_trip(&mut s).await);
        held.push(s);
    }
    // Reset at once: the connect itself may already see it.
    if let Ok(mut fourth) = connect_from("127.0.0.1", p.addr).await {
        assert!(
            !round_trip(&mut fourth).await,
            "a fourth connection of one address was served"
        );
    }
    assert_eq!(p.refused(Refused::SourceLimit), 1);
    assert!(
        served_from("127.0.0.2", p.addr).await,
        "another address was refused"
    );
    // One ends: that address may connect again.
    drop(held.pop());
    assert!(
        wait_until(DEADLINE, || served_from("127.0.0.1", p.addr)).await,
        "the address stayed refused after one of its connections ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_source_rate_refuses_beyond_the_burst_then_refills() {
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(&b, "  per_source_rate: 2\n  per_source_burst: 3\n").await;
    let started = Instant::now();
    let mut served = 0u64;
    for _ in 0..10 {
        if served_from("127.0.0.3", p.addr).await {
            served += 1;
        }
    }
    let allowed = 3 + (started.elapsed().as_millis() as u64 * 2).div_ceil(1000);
    assert!(
        (3..=allowed).contains(&served),
        "{served} of 10 served; the burst is 3 and the rate 2/s ({allowed} allowed)"
    );
    assert_eq!(p.refused(Refused::SourceRate), 10 - served);
    assert!(
        served_from("127.0.0.4", p.addr).await,
        "another address was refused"
    );
    assert!(
        wait_until(DEADLINE, || served_from("127.0.0.3", p.addr)).await,
        "the bucket never refilled"
    );
}

/// Closes the streams of `backend`'s proxy after its master stopped, and returns how
/// long after the first close the last one came.
async fn close_spread(close_rate: &str, streams: usize) -> Duration {
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(&b, close_rate).await;
    let mut open = Vec::new();
    for _ in 0..streams {
        let mut s = connect_from("127.0.0.1", p.addr).await.unwrap();
        assert!(round_trip(&mut s).await);
        open.push(s);
    }
    // The master's port closes (its connections stay): checks are refused, and apivip
    // must close what it proxies to it.
    drop(b);
    let ends: Vec<Instant> = futures_util::future::join_all(open.iter_mut().map(|s| async {
        assert!(
            closed_within(s, DEADLINE).await,
            "a stream was never closed"
        );
        Instant::now()
    }))
    .await;
    assert_eq!(
        p.fe()
            .stats
            .closed_on_down
            .load(std::sync::atomic::Ordering::Relaxed),
        streams as u64
    );
    let first = ends.iter().min().copied().unwrap();
    let last = ends.iter().max().copied().unwrap();
    last - first
}

/// A master that goes down with many connections: closed at about `close_rate` a
/// second, so the other masters do not take every reconnect in the same instant; with
/// `close_rate: 0`, all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downed_master_s_connections_are_closed_at_the_close_rate() {
    // 200 at 100/s: spread over about 2 s.
    let paced = close_spread("  close_rate: 100\n", 200).await;
    assert!(
        paced >= Duration::from_millis(1000),
        "200 closes at 100/s came within {paced:?}"
    );
    let at_once = close_spread("  close_rate: 0\n", 200).await;
    assert!(
        at_once < paced,
        "all at once took {at_once:?}, paced {paced:?}"
    );
}
