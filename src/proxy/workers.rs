//! Thread-per-core: the proxy's connections run on worker threads, one single-threaded
//! tokio runtime each, and a connection never leaves the worker it starts on. Health
//! checks, the admin endpoint, reloads and the election stay on the control runtime.
//!
//! Every worker runs an accept loop of each listener, on its own duplicate of the
//! listening socket (`try_clone`, registered in the worker's own epoll): one socket, so
//! no accept queue is stranded when a worker is busy, and a second process still cannot
//! bind the port (`SO_REUSEPORT` would let it join silently). The worker that accepts
//! keeps the connection unless another worker has fewer, in which case it hands the
//! socket over (deregistered here, registered there): the least-connections choice,
//! with the accepting worker winning ties, so that a handover happens only to even out
//! the load.
//!
//! Without workers (tests, benchmarks that start a [`crate::supervisor::Supervisor`] in
//! their own runtime), connections run on the runtime that accepts them.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// The environment variable that sets how many workers run (tokio's own knob for its
/// worker threads, kept so that one setting sizes the proxy as before); by default one
/// per CPU this process may use.
pub const THREADS_ENV: &str = "TOKIO_WORKER_THREADS";

/// How long a worker waits for its connections' tasks at shutdown (the supervisor has
/// drained them by then).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// The worker threads; dropping this stops them and joins them.
#[derive(Debug)]
pub struct Workers {
    pool: Arc<Pool>,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

/// What accept loops need of the workers: where each runs and how loaded it is.
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    /// Connections running on this worker.
    active: AtomicUsize,
}

/// The number of workers: `TOKIO_WORKER_THREADS` when set to a positive number, else
/// one per CPU this process may run on. A bad value is an error naming it.
pub fn threads_from_env() -> Result<usize, String> {
    threads(
        std::env::var(THREADS_ENV).ok().as_deref(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )
}

fn threads(setting: Option<&str>, cpus: usize) -> Result<usize, String> {
    match setting {
        None => Ok(cpus.max(1)),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{THREADS_ENV}={v:?}: expected a positive number of proxy worker threads"
            )),
        },
    }
}

impl Workers {
    /// Starts `n` worker threads (`apivip-proxy-0` ..), each with its own runtime.
    pub fn start(n: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut threads: Vec<JoinHandle<()>> = Vec::with_capacity(n);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    stop.cancel();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            };
            workers.push(Worker {
                handle: rt.handle().clone(),
                active: AtomicUsize::new(0),
            });
            let stopped = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("apivip-proxy-{i}"))
                .spawn(move || {
                    rt.block_on(stopped.cancelled());
                    rt.shutdown_timeout(SHUTDOWN_WAIT);
                });
            match thread {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.cancel();
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Workers {
            pool: Arc::new(Pool { workers }),
            stop,
            threads,
        })
    }

    /// The pool the accept loops spread connections over.
    pub fn pool(&self) -> Arc<Pool> {
        Arc::clone(&self.pool)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Pool {
    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: a pool has at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The runtime of worker `i`.
    pub fn handle(&self, i: usize) -> &Handle {
        &self.workers[i].handle
    }

    /// Connections running on each worker now.
    pub fn active(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.active.load(Ordering::Relaxed))
            .collect()
    }

    /// Whether every worker runs a task within `bound` (all checked at once): a
    /// worker stuck in a system call or a busy loop would stall every connection on it.
    pub async fn answer(&self, bound: Duration) -> bool {
        let pings: Vec<_> = self
            .workers
            .iter()
            .map(|w| w.handle.spawn(async {}))
            .collect();
        tokio::time::timeout(bound, async {
            for p in pings {
                if p.await.is_err() {
                    return false;
                }
            }
            true
        })
        .await
        .unwrap_or(false)
    }

    /// The worker a connection accepted on worker `me` runs on: the one with the
    /// fewest connections, `me` when it has as few as any.
    pub fn pick(&self, me: usize) -> usize {
        least_loaded(&self.active(), me)
    }

    /// Counts a connection on worker `i` until the guard drops.
    pub fn enter(self: &Arc<Self>, i: usize) -> OnWorker {
        self.workers[i].active.fetch_add(1, Ordering::Relaxed);
        OnWorker {
            pool: Arc::clone(self),
            worker: i,
        }
    }
}

/// A connection counted on a worker (see [`Pool::enter`]).
#[derive(Debug)]
pub struct OnWorker {
    pool: Arc<Pool>,
    worker: usize,
}

impl Drop for OnWorker {
    fn drop(&mut self) {
        self.pool.workers[self.worker]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The index with the fewest, `me` when it has as few as any (a handover costs two
/// system calls and a cross-thread wake-up, so it is only worth evening out a real
/// difference).
fn least_loaded(active: &[usize], me: usize) -> usize {
    let mine = active.get(me).copied().unwrap_or(usize::MAX);
    let (best, &fewest) = active
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .unwrap_or((me, &mine));
    if fewest < mine {
        best
    } else {
        me
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepting_worker_keeps_a_connection_unless_another_has_fewer() {
        assert_eq!(least_loaded(&[3, 3], 0), 0);
        assert_eq!(least_loaded(&[3, 3], 1), 1);
        assert_eq!(least_loaded(&[4, 3], 0), 1);
        assert_eq!(least_loaded(&[2, 3, 1], 1), 2);
        assert_eq!(least_loaded(&[0], 0), 0);
    }

    #[test]
    fn the_worker_count_is_the_setting_or_one_per_cpu() {
        assert_eq!(threads(None, 4), Ok(4));
        assert_eq!(threads(None, 0), Ok(1));
        assert_eq!(threads(Some("3"), 4), Ok(3));
        assert_eq!(threads(Some(" 1 "), 4), Ok(1));
        for bad in ["0", "-1", "two", ""] {
            let e = threads(Some(bad), 4).expect_err(bad);
            assert!(
                e.contains(THREADS_ENV) && e.contains(&format!("{bad:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn connections_are_counted_on_their_worker_until_they_end() {
        let workers = Workers::start(2).expect("workers");
        let pool = workers.pool();
        assert_eq!(pool.len(), 2);
        let a = pool.enter(0);
        let b = pool.enter(0);
        assert_eq!(pool.active(), vec![2, 0]);
        assert_eq!(pool.pick(0), 1);
        let c = pool.enter(1);
        let d = pool.enter(1);
        assert_eq!(pool.pick(0), 0);
        drop((a, b));
        assert_eq!(pool.active(), vec![0, 2]);
        assert_eq!(pool.pick(1), 0);
        drop((c, d));
        assert_eq!(pool.active(), vec![0, 0]);
    }

    #[tokio::test]
    async fn every_worker_answers_until_one_is_stuck() {
        let workers = Workers::start(2).expect("workers");
        let pool = workers.pool();
        assert!(pool.answer(Duration::from_secs(10)).await);
        // Worker 1 blocked (as in a stuck system call) until released.
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        pool.handle(1).spawn(async move {
            let _ = stuck.recv();
        });
        assert!(!pool.answer(Duration::from_millis(200)).await);
        release.send(()).expect("release");
        assert!(pool.answer(Duration::from_secs(10)).await);
    }

    #[test]
    fn tasks_run_on_the_worker_they_are_spawned_on() {
        let workers = Workers::start(2).expect("workers");
        let pool = workers.pool();
        for i in 0..pool.len() {
            let (tx, rx) = std::sync::mpsc::channel();
            pool.handle(i).spawn(async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
            let name = rx.recv_timeout(Duration::from_secs(10)).expect("ran");
            assert_eq!(name.as_deref(), Some(format!("apivip-proxy-{i}").as_str()));
        }
        drop(workers);
    }
}
