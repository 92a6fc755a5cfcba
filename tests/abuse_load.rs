//! Thousands of silent sockets beside real clients, in a test binary of its own: it
//! raises the descriptor limit and uses most of it, which would starve other tests of
//! the same process.

mod support;

use std::time::{Duration, Instant};

use apivip::proxy::Refused;
use support::echo::{closed_within, connect_from, served_from, AfterEof, Backend, Proxy, DEADLINE};
use support::wait_until;

/// Open descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's soft descriptor limit to the hard one; returns it.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    hard
}

/// 8,000 silent sockets from four addresses beside real clients from a fifth: the
/// real clients are served throughout, each address holds at most its share (the
/// default 1,000), the silent ones are closed at the first-byte timeout, and the
/// descriptors and memory return to their baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_thousand_silent_clients_do_not_lock_out_real_ones_and_leave_nothing_behind() {
    const SILENT: usize = 8_000;
    let limit = raise_nofile();
    // Each silent client costs this process two descriptors while the proxy holds it.
    if limit < 2 * SILENT as u64 + 2_000 {
        support::skip_or_fail(
            "eight_thousand_silent_clients_do_not_lock_out_real_ones_and_leave_nothing_behind",
            &format!(
                "needs a descriptor hard limit of {} (have {limit})",
                2 * SILENT + 2_000
            ),
        );
        return;
    }
    let b = Backend::start(AfterEof::Close).await;
    let p = Proxy::start(&b, "  first_byte_timeout: 3s\n").await;
    // Warm up (runtime threads, buffers) before the baseline.
    assert!(served_from("127.0.0.2", p.addr).await);
    let (fds_before, rss_before) = (open_fds(), rss_kib());

    let real = {
        let addr = p.addr;
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, 0usize);
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                if served_from("127.0.0.2", addr).await {
                    ok += 1;
                } else {
                    failed += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    let mut silent = Vec::with_capacity(SILENT);
    let mut reset_at_connect = 0;
    for i in 0..SILENT {
        let src = format!("127.0.1.{}", 1 + i % 4);
        match connect_from(&src, p.addr).await {
            Ok(s) => silent.push(s),
            // Refused so fast that the connect saw the reset.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => reset_at_connect += 1,
            Err(e) => panic!("silent client {i}: {e}"),
        }
    }
    let (ok, failed) = real.await.unwrap();
    assert_eq!(
        failed, 0,
        "real clients refused while silent ones were open ({ok} served)"
    );
    assert!(ok > 10, "only {ok} real requests ran");
    // Four addresses at 1,000 each (the default): the others were refused at once.
    assert!(p.active() <= 4_000, "{} connections held", p.active());
    assert!(p.refused(Refused::SourceLimit) >= reset_at_connect);
    assert_eq!(
        p.proxied(),
        ok as u64 + 1,
        "silent clients reached the backend"
    );

    // Every silent socket is closed: at once (refused) or at the timeout.
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(s, DEADLINE).await,
            "silent client {i} never closed"
        );
    }
    assert_eq!(
        p.refused(Refused::FirstByteTimeout) + p.refused(Refused::SourceLimit),
        SILENT as u64,
        "every silent client is refused at once or closed at the first-byte timeout"
    );
    drop(silent);
    assert!(
        wait_until(DEADLINE, || async { p.active() == 0 }).await,
        "{} connections still counted",
        p.active()
    );
    assert!(
        wait_until(DEADLINE, || async { open_fds() <= fds_before + 8 }).await,
        "descriptors: {fds_before} before, {} after",
        open_fds()
    );
    // Freed memory may stay with the allocator; what it keeps must stay small.
    let rss_after = rss_kib();
    eprintln!(
        "silent clients: {} refused at the source limit, {} closed at the first-byte timeout; \
         {ok} real requests served; descriptors {fds_before} -> {}; RSS {rss_before} -> {rss_after} KiB",
        p.refused(Refused::SourceLimit),
        p.refused(Refused::FirstByteTimeout),
        open_fds()
    );
    assert!(
        rss_after <= rss_before + 48 * 1024,
        "RSS {rss_before} KiB before, {rss_after} KiB after the silent clients left"
    );
    assert!(
        served_from("127.0.1.1", p.addr).await,
        "a silent address stayed locked out"
    );
}
