//! Moving bytes between a client and a backend.
//!
//! Two directions run concurrently on one task, each a loop of "wait until readable,
//! read, write everything". A buffer is taken from a per-thread pool only while data
//! is moving and returned as soon as the source would block, so an idle connection
//! (a WATCH waiting for events) holds no buffer at all: its cost is the task and the
//! two sockets. Bulk transfers switch to `splice(2)` through a pooled pipe (see
//! [`crate::proxy::splice`]) once a read fills a whole buffer, so large bodies move
//! without copying through user space.
//!
//! A FIN in one direction is passed on as a write shutdown and the other direction
//! continues (half-close) until it finishes too or the half-close timeout passes; an
//! error in either direction ends both.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::proxy::splice::{self, PipePool};

/// Size of one copy buffer.
pub const BUF_SIZE: usize = 64 * 1024;
/// Reads of one direction before it goes back to waiting for readiness.
const READS_PER_WAKEUP: usize = 8;
/// Buffers kept per thread for reuse.
const POOL_KEEP: usize = 64;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from the thread's pool, returned to the pool of whichever thread drops it.
struct PooledBuf(Option<Box<[u8]>>);

impl PooledBuf {
    fn take() -> Self {
        let buf = POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice());
        PooledBuf(Some(buf))
    }

    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_deref_mut().unwrap_or(&mut [])
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.0.take() {
            POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOL_KEEP {
                    p.push(buf);
                }
            });
        }
    }
}

/// How bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Copy through pooled user-space buffers only.
    Copy,
    /// Copy small reads; splice once a read fills a buffer (the default).
    Auto,
}

/// Where the bytes moved are added up while a connection lives (per backend, for
/// metrics): one relaxed add per wakeup that moved data, not per read.
#[derive(Debug, Clone, Copy)]
pub struct Counters<'a> {
    /// Client to backend.
    pub upstream: &'a AtomicU64,
    /// Backend to client.
    pub downstream: &'a AtomicU64,
    /// Wakeups that moved or ended data, either direction; `None` counts them inside
    /// the connection only. The rebalancer reads it to tell idle connections.
    pub activity: Option<&'a AtomicU64>,
}

/// The timeouts of one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timeouts {
    /// End when no data moved in either direction for this long.
    pub idle: Option<Duration>,
    /// End when one direction finished (FIN passed on) and the other moved nothing
    /// for this long.
    pub half_close: Option<Duration>,
}

/// How a connection ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both directions finished.
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// One direction finished and the other moved nothing for the half-close timeout.
    HalfClosed,
}

/// Forwards until both directions have ended, one side fails, or a timeout of
/// `timeouts` ends it.
pub async fn forward(
    client: &TcpStream,
    backend: &TcpStream,
    mode: Mode,
    pipes: &PipePool,
    timeouts: Timeouts,
    counters: Counters<'_>,
) -> io::Result<Ended> {
    let local = AtomicU64::new(0);
    let activity = counters.activity.unwrap_or(&local);
    // The pumps are pinned in place rather than built as locals and moved into a join:
    // each would otherwise be stored twice in this future, which every idle connection
    // pays for.
    let up = pump(client, backend, mode, pipes, activity, counters.upstream);
    let down = pump(backend, client, mode, pipes, activity, counters.downstream);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    // Boxed: a timer costs every connection's task only once it needs one (an idle
    // timeout is configured, or one direction finished).
    let mut idle_timer = timeouts.idle.map(|d| Box::pin(tokio::time::sleep(d)));
    let mut half_timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut seen = 0;
    let mut half_seen = 0;
    if idle_timer.is_none() {
        // The common case (no idle timeout): only the two directions until one
        // finishes, with no timer futures to poll on every wakeup.
        tokio::select! {
            biased;
            r = &mut up => {
                r?;
                up_done = true;
            }
            r = &mut down => {
                r?;
                down_done = true;
            }
        }
    }
    loop {
        if up_done && down_done {
            return Ok(Ended::Done);
        }
        // One direction finished: the half-close timer starts.
        if let (true, None, Some(d)) = (up_done || down_done, &half_timer, timeouts.half_close) {
            half_seen = activity.load(Ordering::Relaxed);
            half_timer = Some(Box::pin(tokio::time::sleep(d)));
        }
        tokio::select! {
            biased;
            r = &mut up, if !up_done => {
                r?;
                up_done = true;
            }
            r = &mut down, if !down_done => {
                r?;
                down_done = true;
            }
            () = fire(&mut idle_timer) => {
                if !rearm(&mut idle_timer, activity, &mut seen, timeouts.idle) {
                    return Ok(Ended::Idle);
                }
            }
            // Only a silent remaining direction ends a half-closed connection: one that
            // still moves data (a stream after the client's FIN) gets another period.
            () = fire(&mut half_timer) => {
                if !rearm(&mut half_timer, activity, &mut half_seen, timeouts.half_close) {
                    return Ok(Ended::HalfClosed);
                }
            }
        }
    }
}

/// A timer fired: when data moved since `seen` (then `seen` catches up), restarts it
/// for `period` and returns true; false when the connection stayed silent.
fn rearm(
    timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    activity: &AtomicU64,
    seen: &mut u64,
    period: Option<Duration>,
) -> bool {
    let now = activity.load(Ordering::Relaxed);
    if now == *seen {
        return false;
    }
    *seen = now;
    if let (Some(t), Some(d)) = (timer.as_mut(), period) {
        t.as_mut().reset(tokio::time::Instant::now() + d);
    }
    true
}

/// Waits for `timer`; for ever when there is none.
async fn fire(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// One direction: `src` to `dst`, until EOF (then shut down `dst`'s write side).
///
/// Polled by hand rather than written as an `async fn`: an idle connection's task holds
/// two of these, and this state (the sockets' own waker slots, no intrusive waiter per
/// wait, no buffer while idle) is a fraction of what the compiler's state machine for
/// the same loop held (two readiness futures, the write future and their locals).
fn pump<'a>(
    src: &'a TcpStream,
    dst: &'a TcpStream,
    mode: Mode,
    pipes: &'a PipePool,
    activity: &'a AtomicU64,
    moved: &'a AtomicU64,
) -> Pump<'a> {
    Pump {
        src,
        dst,
        mode,
        pipes,
        activity,
        total: Tally { moved, pending: 0 },
        bulk: false,
        state: State::Waiting,
    }
}

/// A boxed splice burst: it lives on the heap only while a burst runs, so it does not
/// enlarge every idle connection's task.
type SpliceBurst<'a> =
    std::pin::Pin<Box<dyn Future<Output = io::Result<splice::Burst>> + Send + 'a>>;

struct Pump<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    mode: Mode,
    pipes: &'a PipePool,
    activity: &'a AtomicU64,
    total: Tally<'a>,
    /// The last read filled a whole buffer: more is probably waiting (splice it in
    /// Auto mode).
    bulk: bool,
    state: State<'a>,
}

enum State<'a> {
    /// Waiting until `src` is readable; no buffer held.
    Waiting,
    /// Reading: `reads` left in this wakeup, then back through the readiness wait,
    /// which counts against tokio's cooperative budget, so a busy connection cannot
    /// starve the others or this connection's own close signals. `buf[at..end]` is
    /// still to be written to `dst` (waiting for writability when non-empty).
    Moving {
        buf: PooledBuf,
        at: usize,
        end: usize,
        reads: usize,
        /// The read that filled `buf[..end]` emptied the receive queue.
        drained: bool,
    },
    Splicing(SpliceBurst<'a>),
    Done,
}

impl State<'_> {
    /// Reading, with a buffer from the pool and a fresh budget of reads.
    fn moving() -> Self {
        State::Moving {
            buf: PooledBuf::take(),
            at: 0,
            end: 0,
            reads: READS_PER_WAKEUP,
            drained: false,
        }
    }
}

impl Future for Pump<'_> {
    type Output = io::Result<()>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = this.step(cx);
        // Added to the backend's counter once per wakeup that moved data.
        this.total.flush();
        r
    }
}

impl Pump<'_> {
    fn step(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(Ok(())),
                State::Waiting => {
                    ready!(self.src.poll_read_ready(cx))?;
                    self.activity.fetch_add(1, Ordering::Relaxed);
                    if self.bulk && self.mode == Mode::Auto {
                        self.state = State::Splicing(Box::pin(splice::splice_burst(
                            self.src, self.dst, self.pipes,
                        )));
                        continue;
                    }
                    self.state = State::moving();
                }
                State::Splicing(burst) => match ready!(burst.as_mut().poll(cx))? {
                    splice::Burst::Moved(n) => {
                        self.total.pending += n as u64;
                        self.bulk = n >= BUF_SIZE;
                        self.state = State::Waiting;
                    }
                    splice::Burst::Eof(n) => {
                        self.total.pending += n as u64;
                        let _ = socket2::SockRef::from(self.dst).shutdown(Shutdown::Write);
                        self.state = State::Done;
                    }
                    splice::Burst::Unsupported => {
                        self.bulk = false;
                        self.state = State::moving();
                    }
                },
                State::Moving {
                    buf,
                    at,
                    end,
                    reads,
                    drained,
                } => {
                    // First what is left of the last read.
                    while at < end {
                        match self.dst.try_write(&buf.as_mut()[*at..*end]) {
                            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                            Ok(n) => *at += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                ready!(self.dst.poll_write_ready(cx))?;
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                    if *end > 0 {
                        self.total.pending += *end as u64;
                        *end = 0;
                        *at = 0;
                        if *drained {
                            // The queue is empty: back to waiting, giving the buffer back.
                            self.state = State::Waiting;
                            continue;
                        }
                        // A full buffer: splice the rest of this burst in Auto mode.
                        self.bulk = true;
                        if self.mode == Mode::Auto || *reads == 0 {
                            self.state = State::Waiting;
                            continue;
                        }
                    }
                    *reads -= 1;
                    match read_once(self.src, buf.as_mut()) {
                        Read::Eof => {
                            let _ = socket2::SockRef::from(self.dst).shutdown(Shutdown::Write);
                            self.state = State::Done;
                        }
                        Read::Data { n, drained: d } => {
                            *end = n;
                            *drained = d;
                        }
                        Read::WouldBlock => self.state = State::Waiting,
                        Read::Failed(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }
}

/// Bytes moved by one direction, added to the backend's counter once per wakeup and
/// whenever the direction ends, however it ends (EOF, error, or its connection closed
/// because the backend went down).
struct Tally<'a> {
    moved: &'a AtomicU64,
    /// Moved since the last flush.
    pending: u64,
}

impl Tally<'_> {
    fn flush(&mut self) {
        if self.pending != 0 {
            self.moved.fetch_add(self.pending, Ordering::Relaxed);
            self.pending = 0;
        }
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// What one read gave.
enum Read {
    Eof,
    /// `n` bytes; `drained` when the read was short, i.e. it emptied the receive queue.
    Data {
        n: usize,
        drained: bool,
    },
    WouldBlock,
    Failed(io::Error),
}

/// One read from `src`. A short read empties the receive queue, so it also clears the
/// socket's readiness, as a `WouldBlock` would: the next wait then sleeps until new data
/// arrives, instead of returning at once for a read that finds nothing (one wasted
/// syscall per request-sized message). The readiness is cleared with the tick tokio
/// took before the read, so data that arrived after it is never forgotten (tokio's own
/// `try_read` rule).
fn read_once(src: &TcpStream, buf: &mut [u8]) -> Read {
    use std::io::Read as _;
    let mut short = 0;
    let r = src.try_io(tokio::io::Interest::READABLE, || loop {
        match (&*socket2::SockRef::from(src)).read(buf) {
            Ok(n) if n > 0 && n < buf.len() => {
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    });
    match r {
        Ok(0) => Read::Eof,
        Ok(n) => Read::Data { n, drained: false },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Read::Data {
            n: short,
            drained: true,
        },
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::WouldBlock,
        Err(e) => Read::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection's task holds this future: a regression guard on its size
    /// (1,088 bytes when the directions were `async fn`s).
    #[tokio::test]
    async fn the_forwarding_future_stays_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        let pipes = PipePool::new(1);
        let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
        let counters = Counters {
            upstream: &up,
            downstream: &down,
            activity: None,
        };
        let f = forward(&a, &b, Mode::Auto, &pipes, Timeouts::default(), counters);
        let size = std::mem::size_of_val(&f);
        println!("forward future: {size} bytes");
        assert!(size <= 512, "the forwarding future grew to {size} bytes");
    }
}
