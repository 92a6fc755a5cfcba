//! Zero-copy forwarding with `splice(2)` through a pooled pipe.
//!
//! Used for bulk bursts only (see [`crate::proxy::forward`]): a pipe is taken from
//! the pool when a burst starts and returned, empty, when the source would block. Idle
//! connections therefore hold no pipe, which keeps file descriptors for sockets (each
//! pipe costs two). A pipe that still holds data after an error is closed, never
//! returned. The pool bounds how many pipes exist at once (idle and lent): past the
//! bound a burst is copied instead, so pipes can never exhaust the descriptors the
//! connection limit was sized with ([`crate::proxy::descriptor_budget`]).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked for per splice call (the default pipe capacity).
const CHUNK: usize = 64 * 1024;
/// Bytes one burst moves before yielding to other tasks.
const BURST_LIMIT: usize = 4 * 1024 * 1024;

/// A pipe lent by the pool: read end, write end. Dropped without [`Pipe::give_back`]
/// (it may hold data), it is closed.
struct Pipe<'a> {
    ends: Option<(OwnedFd, OwnedFd)>,
    pool: &'a PipePool,
}

impl Pipe<'_> {
    fn read(&self) -> &OwnedFd {
        &self.ends.as_ref().expect("lent pipes have their ends").0
    }

    fn write(&self) -> &OwnedFd {
        &self.ends.as_ref().expect("lent pipes have their ends").1
    }

    /// Returns the (empty) pipe for reuse.
    fn give_back(mut self) {
        if let Some(ends) = self.ends.take() {
            if let Ok(mut v) = self.pool.idle.lock() {
                if v.len() < self.pool.keep {
                    v.push(ends);
                    return;
                }
            }
            self.pool.total.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Pipe<'_> {
    fn drop(&mut self) {
        if self.ends.take().is_some() {
            self.pool.total.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Pipes for bursts: at most `max` exist at once, at most `keep` of them idle.
#[derive(Debug)]
pub struct PipePool {
    idle: Mutex<Vec<(OwnedFd, OwnedFd)>>,
    keep: usize,
    max: usize,
    /// Pipes that exist now (idle and lent).
    total: AtomicUsize,
}

impl PipePool {
    /// A pool of at most `max` pipes, all of which may be kept idle for reuse.
    pub fn new(max: usize) -> Self {
        PipePool {
            idle: Mutex::new(Vec::new()),
            keep: max,
            max,
            total: AtomicUsize::new(0),
        }
    }

    /// Pipes that exist now (idle and lent).
    pub fn pipes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// An idle pipe, or a new one while fewer than `max` exist; `None` past that (or
    /// when the system has no descriptor for one): the caller copies instead.
    fn take(&self) -> Option<Pipe<'_>> {
        if let Some(ends) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Some(Pipe {
                ends: Some(ends),
                pool: self,
            });
        }
        let reserved = self
            .total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.max).then_some(t + 1)
            })
            .is_ok();
        if !reserved {
            return None;
        }
        match nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC) {
            Ok(ends) => Some(Pipe {
                ends: Some(ends),
                pool: self,
            }),
            Err(_) => {
                self.total.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// What one burst did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Burst {
    /// Moved this many bytes; the source would block now (or the burst limit was hit).
    Moved(usize),
    /// Moved this many bytes, then the source reached EOF.
    Eof(usize),
    /// splice is not possible here; nothing was moved. Fall back to copying.
    Unsupported,
}

/// Moves what `src` has ready to `dst` through a pipe.
pub async fn splice_burst(src: &TcpStream, dst: &TcpStream, pool: &PipePool) -> io::Result<Burst> {
    let Some(pipe) = pool.take() else {
        return Ok(Burst::Unsupported);
    };
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut moved = 0usize;
    while moved < BURST_LIMIT {
        let filled = src.try_io(Interest::READABLE, || {
            splice(src, None, pipe.write(), None, CHUNK, flags).map_err(io::Error::from)
        });
        let n = match filled {
            Ok(0) => {
                pipe.give_back();
                return Ok(Burst::Eof(moved));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if moved == 0 && e.raw_os_error() == Some(nix::libc::EINVAL) => {
                return Ok(Burst::Unsupported)
            }
            Err(e) => return Err(e),
        };
        // Drain the pipe completely before filling it again; on error the pipe (with
        // data in it) is dropped with this function's frame.
        let mut left = n;
        while left > 0 {
            let drained = dst.try_io(Interest::WRITABLE, || {
                splice(pipe.read(), None, dst, None, left, flags).map_err(io::Error::from)
            });
            match drained {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        moved += n;
    }
    pipe.give_back();
    Ok(Burst::Moved(moved))
}
