//! io_uring L4 forwarding prototype (apivip issue 14), benchmark use only.
//!
//! `uring-proxy run -c FILE`: reads the first `address:` (backend) and `listen:`
//! lines of an apivip YAML config, then forwards every accepted connection to the
//! backend. Thread-per-core: `TOKIO_WORKER_THREADS` (or the available CPUs) worker
//! threads, each with its own compio runtime (io_uring driver, epoll fallback) and
//! its own SO_REUSEPORT listener + multishot accept loop. No unsafe code.
//!
//! Knobs: `URING_BUF_LEN` (65536, like apivip's BUF_SIZE) and `URING_BUF_COUNT` (128): the per-thread
//! provided-buffer ring; `URING_DRIVER=poll` forces the polling (epoll) driver;
//! `URING_BACKLOG` (4096).

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener};
use std::num::NonZeroU16;

use compio::driver::{BufferRef, DriverType, ProactorBuilder};
use compio::runtime::fd::PollFd;
use compio::io::{AsyncRead, AsyncReadManaged, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::RuntimeBuilder;
use compio::buf::IoBuf;
use compio::BufResult;
use futures_util::StreamExt;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

struct Conf {
    listen: SocketAddr,
    backend: SocketAddr,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|n| *n > 0)
}

fn parse_config(path: &str) -> Result<Conf, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let value = |key: &str| -> Result<SocketAddr, String> {
        text.lines()
            .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
            .map(|v| v.trim().trim_matches(|c| c == '\'' || c == '"'))
            .next()
            .ok_or_else(|| format!("{path}: no `{key}` line"))?
            .parse()
            .map_err(|e| format!("{path}: bad `{key}`: {e}"))
    };
    Ok(Conf { listen: value("listen:")?, backend: value("address:")? })
}

fn raise_nofile() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            eprintln!("uring-proxy: cannot raise RLIMIT_NOFILE: {e}");
        }
    }
}

fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<StdListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s.into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = match args.iter().position(|a| a == "-c" || a == "--config") {
        Some(i) if args.get(1).map(String::as_str) == Some("run") && i + 1 < args.len() => {
            args[i + 1].clone()
        }
        _ => {
            eprintln!("usage: uring-proxy run -c FILE");
            std::process::exit(2);
        }
    };
    let conf = parse_config(&path).unwrap_or_else(|e| {
        eprintln!("uring-proxy: {e}");
        std::process::exit(2);
    });
    raise_nofile();
    let threads = env_usize("TOKIO_WORKER_THREADS").unwrap_or_else(|| {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    });
    let backlog = env_usize("URING_BACKLOG").unwrap_or(4096) as i32;
    let buf_len = env_usize("URING_BUF_LEN").unwrap_or(64 * 1024);
    let buf_count = env_usize("URING_BUF_COUNT").unwrap_or(128).min(32768) as u16;
    let force_poll = std::env::var("URING_DRIVER").as_deref() == Ok("poll");

    // Bind every worker's SO_REUSEPORT listener before any worker starts, so the
    // port accepts (into the backlogs) as soon as "listening" is printed.
    let mut listeners = Vec::with_capacity(threads);
    for _ in 0..threads {
        match reuseport_listener(conf.listen, backlog) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("uring-proxy: cannot listen on {}: {e}", conf.listen);
                std::process::exit(1);
            }
        }
    }
    eprintln!(
        "uring-proxy: listening on {} -> {} ({threads} workers, SO_REUSEPORT each, \
         buffer ring {buf_count} x {buf_len} B per worker)",
        conf.listen, conf.backend
    );
    let backend = conf.backend;
    let workers: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            std::thread::Builder::new()
                .name(format!("uring-{i}"))
                .spawn(move || worker(i, l, backend, buf_len, buf_count, force_poll))
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn worker(
    id: usize,
    listener: StdListener,
    backend: SocketAddr,
    buf_len: usize,
    buf_count: u16,
    force_poll: bool,
) {
    let mut proactor = ProactorBuilder::new();
    proactor
        .capacity(1024)
        .cqsize(16384)
        .buffer_pool_size(NonZeroU16::new(buf_count.max(1)).unwrap())
        .buffer_pool_buffer_len(buf_len)
        // Connect/accept/recv/send never need the blocking pool here; keep it small.
        .thread_pool_limit(4);
    if force_poll {
        proactor.driver_type(DriverType::Poll);
    }
    let rt = RuntimeBuilder::new().with_proactor(proactor).build().unwrap_or_else(|e| {
        eprintln!("uring-proxy: worker {id}: cannot build runtime: {e}");
        std::process::exit(1);
    });
    let driver = rt.driver_type();
    eprintln!("uring-proxy: worker {id}: driver {driver:?}");
    rt.block_on(async move {
        let poll_mode = driver.is_polling();
        let listener = TcpListener::from_std(listener).expect("listener");
        let mut incoming = listener.incoming();
        let debug = std::env::var_os("URING_DEBUG").is_some();
        let mut first = true;
        while let Some(conn) = incoming.next().await {
            match conn {
                Ok(client) => {
                    if first && debug {
                        let c = TcpStream::connect(backend);
                        let p = pipe(&client, &client, false, 1);
                        let r = read_chunk(&client, None, 1);
                        let w = write_chunk(&client, Chunk::Heap(Vec::new()));
                        eprintln!(
                            "uring-proxy: sizes: connect {} pipe {} read_chunk {} write_chunk {}",
                            std::mem::size_of_val(&c),
                            std::mem::size_of_val(&p),
                            std::mem::size_of_val(&r),
                            std::mem::size_of_val(&w)
                        );
                    }
                    let fut = handle(client, backend, poll_mode, buf_len);
                    if std::mem::replace(&mut first, false) && debug {
                        eprintln!(
                            "uring-proxy: worker {id}: connection future {} bytes",
                            std::mem::size_of_val(&fut)
                        );
                    }
                    compio::runtime::spawn(fut).detach();
                }
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off a little, keep accepting.
                    eprintln!("uring-proxy: worker {id}: accept: {e}");
                    compio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
}

async fn handle(client: TcpStream, backend: SocketAddr, poll_mode: bool, heap_len: usize) {
    let server = match TcpStream::connect(backend).await {
        Ok(s) => s,
        Err(_) => return, // dropping `client` closes it
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    futures_util::future::join(
        pipe(&client, &server, poll_mode, heap_len),
        pipe(&server, &client, poll_mode, heap_len),
    )
    .await;
    // Both directions are done: dropping both streams closes them.
}

/// Tears both connections down so the other direction's pending read ends too.
fn abort(a: &TcpStream, b: &TcpStream) {
    let _ = SockRef::from(a).shutdown(Shutdown::Both);
    let _ = SockRef::from(b).shutdown(Shutdown::Both);
}

/// One chunk read from a socket.
enum Chunk {
    /// From the worker's provided-buffer ring (the normal case).
    Ring(BufferRef),
    /// From the heap, when the ring was empty (ENOBUFS).
    Heap(Vec<u8>),
}

/// Reads one chunk; `Ok(None)` at EOF.
///
/// io_uring: a recv with IOSQE_BUFFER_SELECT from the worker's provided-buffer ring,
/// so a connection waiting for data holds no buffer; a buffer is held only from the
/// recv's completion until its bytes are sent. Polling fallback: compio's managed
/// recv takes a pool buffer when the op is created, so wait for readability first
/// to keep idle connections buffer-free there too.
async fn read_chunk(
    from: &TcpStream,
    pfd: Option<&PollFd<socket2::Socket>>,
    heap_len: usize,
) -> io::Result<Option<Chunk>> {
    let mut rd = from;
    if let Some(p) = pfd {
        // Boxed: only the polling fallback needs it; keeps the idle future small.
        Box::pin(p.read_ready()).await?;
    }
    match rd.read_managed(0).await {
        Ok(b) => Ok(b.map(Chunk::Ring)),
        Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
            let BufResult(n, buf) = Box::pin(rd.read(Vec::with_capacity(heap_len))).await;
            Ok((n? > 0).then_some(Chunk::Heap(buf)))
        }
        Err(e) => Err(e),
    }
}

async fn write_chunk(to: &TcpStream, chunk: Chunk) -> io::Result<()> {
    let mut wr = to;
    match chunk {
        Chunk::Ring(b) => wr.write_all(b).await.0,
        Chunk::Heap(b) => Box::pin(wr.write_all(b)).await.0,
    }
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Ring(b) => b.buf_len(),
            Chunk::Heap(b) => b.len(),
        }
    }
}

/// Copies `from` -> `to` until EOF, then half-closes `to` (shutdown(Write)); an
/// error on either side tears both connections down.
///
/// A read that filled a whole buffer (bulk) is sent while the next recv is already
/// in flight (at most two buffers per direction; that pair of futures is boxed so
/// that it does not enlarge the idle connection's future); a short read (request /
/// response traffic) is sent, then the next recv is armed.
async fn pipe(from: &TcpStream, to: &TcpStream, poll_mode: bool, buf_len: usize) {
    let pfd = if poll_mode { from.to_poll_fd().ok() } else { None };
    let mut next = read_chunk(from, pfd.as_ref(), buf_len).await;
    loop {
        match next {
            Ok(Some(chunk)) if chunk.len() >= buf_len => {
                let both = futures_util::future::try_join(
                    write_chunk(to, chunk),
                    read_chunk(from, pfd.as_ref(), buf_len),
                );
                match Box::pin(both).await {
                    Ok(((), r)) => next = Ok(r),
                    Err(_) => return abort(from, to),
                }
            }
            Ok(Some(chunk)) => {
                if write_chunk(to, chunk).await.is_err() {
                    return abort(from, to);
                }
                next = read_chunk(from, pfd.as_ref(), buf_len).await;
            }
            Ok(None) => {
                let mut wr = to;
                let _ = wr.shutdown().await;
                return;
            }
            Err(_) => return abort(from, to),
        }
    }
}
