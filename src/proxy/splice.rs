//! Zero-copy forwarding with `splice(2)` through a pooled pipe.
//!
//! Used for bulk bursts only (see [`crate::proxy::forward`]): a pipe is taken from
//! the pool when a burst starts and returned, empty, when the source would block. Idle
//! connections therefore hold no pipe, which keeps file descriptors for sockets (each
//! pipe costs two). A pipe that still holds data after an error is closed, never
//! returned.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked for per splice call (the default pipe capacity).
const CHUNK: usize = 64 * 1024;
/// Bytes one burst moves before yielding to other tasks.
const BURST_LIMIT: usize = 4 * 1024 * 1024;

/// A pipe: read end, write end.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// Idle pipes for reuse.
#[derive(Debug)]
pub struct PipePool {
    idle: Mutex<Vec<(OwnedFd, OwnedFd)>>,
    keep: usize,
}

impl PipePool {
    /// A pool that keeps at most `keep` idle pipes.
    pub fn new(keep: usize) -> Self {
        PipePool {
            idle: Mutex::new(Vec::new()),
            keep,
        }
    }

    fn take(&self) -> io::Result<Pipe> {
        if let Some((read, write)) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(Pipe { read, write });
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        Ok(Pipe { read, write })
    }

    fn put(&self, pipe: Pipe) {
        if let Ok(mut v) = self.idle.lock() {
            if v.len() < self.keep {
                v.push((pipe.read, pipe.write));
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
    let Ok(pipe) = pool.take() else {
        return Ok(Burst::Unsupported);
    };
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut moved = 0usize;
    while moved < BURST_LIMIT {
        let filled = src.try_io(Interest::READABLE, || {
            splice(src, None, &pipe.write, None, CHUNK, flags).map_err(io::Error::from)
        });
        let n = match filled {
            Ok(0) => {
                pool.put(pipe);
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
                splice(&pipe.read, None, dst, None, left, flags).map_err(io::Error::from)
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
    pool.put(pipe);
    Ok(Burst::Moved(moved))
}
