//! A client that connects to an address (the VIP) over and over from the client
//! namespace and reports what failed: what a user of the VIP notices when it moves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::netns::Topology;

/// How long [`ConnectLoop::wait_more`] waits.
const DEADLINE: Duration = Duration::from_secs(20);

/// What a client connecting to the VIP over and over saw.
pub struct ConnectReport {
    /// Connects that succeeded.
    pub ok: usize,
    /// (milliseconds since the loop started, error) of each failed connect.
    pub failures: Vec<(u128, std::io::Error)>,
    /// The longest time between two successful connects.
    pub longest_gap: Duration,
}

impl ConnectReport {
    /// The failures that mean nobody served the VIP: all of them, except at most one
    /// connect reset per move of the VIP.
    ///
    /// Why one reset may remain (measured in `failover_compare`: 2 of 100 handovers at
    /// 10 ms, one connect each, `reset` after 0.2 ms, at the takeover instant): a
    /// handshake can straddle the client's switch to the new holder's MAC. The SYN
    /// leaves for the old holder, which still has the VIP and answers SYN-ACK; the new
    /// holder's gratuitous ARP reaches the client in between, so the final ACK goes to
    /// the new holder, which has no such connection and resets it. The window is one
    /// round trip to the old holder per move, whoever moves the VIP at L2 (keepalived
    /// included); a client that connects one at a time can be caught in it once. A
    /// refused or timed-out connect, or a second reset, still fails the test.
    ///
    /// The same reset reads as `EPIPE` (broken pipe) when the server had already
    /// closed its side (it accepts and closes at once, so its FIN can arrive before the
    /// reset): Linux reports a reset in CLOSE_WAIT so (seen in a CI run of
    /// `a_new_track_applies_with_the_section_and_is_followed_afterwards`).
    pub fn gap_failures(&self, moves: usize) -> Vec<&(u128, std::io::Error)> {
        let mut resets_left = moves;
        self.failures
            .iter()
            .filter(|(_, e)| {
                let reset = matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
                if reset && resets_left > 0 {
                    resets_left -= 1;
                    false
                } else {
                    true
                }
            })
            .collect()
    }

    /// How many connects were tried.
    pub fn total(&self) -> usize {
        self.ok + self.failures.len()
    }

    /// One line for the test's output: connects tried, failed, the longest gap.
    pub fn summary(&self) -> String {
        format!(
            "{} connects, {} failed, longest gap {:?}",
            self.total(),
            self.failures.len(),
            self.longest_gap
        )
    }

    /// Panics if any connect failed; `context` (the nodes' state) ends the message.
    pub fn assert_none_failed(&self, context: &str) {
        assert!(
            self.failures.is_empty(),
            "{} connects failed: {:?}\n{context}",
            self.failures.len(),
            self.failures
        );
    }

    /// Panics if a connect failed that `moves` moves of the VIP do not explain (see
    /// [`Self::gap_failures`]); `context` (the nodes' state) ends the message.
    pub fn assert_only_move_resets(&self, moves: usize, context: &str) {
        assert!(
            self.gap_failures(moves).is_empty(),
            "{} of {} connects failed across {moves} move(s) of the VIP: {:?}\n{context}",
            self.failures.len(),
            self.total(),
            self.failures
        );
    }
}

/// Plain TCP connects from the client namespace to `addr` every ~5 ms (300 ms
/// connect timeout) on a thread joined to that namespace, until stopped.
pub struct ConnectLoop {
    stop: Arc<AtomicBool>,
    ok: Arc<std::sync::atomic::AtomicUsize>,
    handle: std::thread::JoinHandle<ConnectReport>,
}

impl ConnectLoop {
    pub fn start(topo: &Topology, addr: SocketAddr) -> ConnectLoop {
        let ns = topo.client().ns.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (stop2, ok2) = (stop.clone(), ok.clone());
        let handle = std::thread::spawn(move || {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let start = std::time::Instant::now();
            let mut last_ok: Option<std::time::Instant> = None;
            let mut longest_gap = Duration::ZERO;
            let mut failures = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let t = std::time::Instant::now();
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                    Ok(s) => {
                        drop(s);
                        let now = std::time::Instant::now();
                        if let Some(prev) = last_ok {
                            longest_gap = longest_gap.max(now - prev);
                        }
                        last_ok = Some(now);
                        ok2.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(((t - start).as_millis(), e)),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            ConnectReport {
                ok: ok2.load(Ordering::Relaxed),
                failures,
                longest_gap,
            }
        });
        ConnectLoop { stop, ok, handle }
    }

    pub fn successes(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more connects succeeded.
    pub fn wait_more(&self, n: usize) -> bool {
        let target = self.successes() + n;
        super::wait_until_blocking(DEADLINE, || self.successes() >= target)
    }

    pub fn finish(self) -> ConnectReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("connect loop panicked")
    }
}
