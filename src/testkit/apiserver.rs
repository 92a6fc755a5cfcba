//! An imitation kube-apiserver, as a load balancer in front of it sees one.
//!
//! HTTPS (HTTP/1.1, keep-alive) over rustls. Every response carries the header
//! `x-apivip-backend: NAME` so a test can tell which backend answered.
//!
//! | request | answer |
//! |---|---|
//! | `GET /readyz` | `200 ok` when [`Mode::Ready`]; `500` with [`READYZ_FAILED_BODY`] when [`Mode::NotReady`] or once a graceful shutdown has begun |
//! | `GET /livez`, `GET /healthz` | `200 ok` |
//! | `GET /watch` | `200`, a chunked body that never ends on its own: one line `{"type":"BOOKMARK","server":"NAME","seq":N}` at once (`seq` 0) and then one every `watch_interval` |
//! | anything else (`/whoami`, `/api`, ...) | `200`, body = the name |
//!
//! The [`Mode`] imitates failures: [`Mode::Hang`] is a frozen process (the kernel still
//! completes TCP handshakes, nothing else happens; switching back resumes everything, like
//! `SIGCONT`), [`Mode::Reset`] resets every connection, new and existing.
//!
//! [`ImitationApiserver::graceful_shutdown`] follows kube-apiserver's sequence;
//! [`ImitationApiserver::stop`] is `kill -9`. Dropping the last handle is a hard stop too.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// Body of a failing `/readyz`, as kube-apiserver words it while shutting down.
pub const READYZ_FAILED_BODY: &str = "[-]shutdown failed: reason withheld\nreadyz check failed";

/// The header naming the backend on every response.
pub const BACKEND_HEADER: &str = "x-apivip-backend";

/// Default interval between two lines of a `/watch` stream.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// How the imitation apiserver behaves right now. See [`ImitationApiserver::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Healthy: `/readyz` answers 200.
    #[default]
    Ready,
    /// Serving, but `/readyz` answers 500 (everything else still 200).
    NotReady,
    /// Frozen: new TCP connections are accepted by the kernel but TLS never completes;
    /// requests on existing connections get no answer and `/watch` streams stop sending.
    /// Leaving this mode resumes everything that was waiting.
    Hang,
    /// New connections are accepted and reset at once (`SO_LINGER` 0); existing connections
    /// are reset too.
    Reset,
}

/// Options of [`ImitationApiserver::start`].
#[derive(Debug, Clone)]
pub struct ApiserverOptions {
    /// Address to listen on; port 0 picks a free port (see [`ImitationApiserver::addr`]).
    pub listen: SocketAddr,
    /// TLS server configuration, e.g. [`super::certs::TestPki::server_config`].
    pub tls: Arc<rustls::ServerConfig>,
    /// Name returned in bodies and in the `x-apivip-backend` header. Must be a valid header
    /// value.
    pub name: String,
    /// Like kube-apiserver's `--shutdown-delay-duration`: how long `/readyz` fails while
    /// everything else keeps serving, at the start of a graceful shutdown.
    pub shutdown_delay: Duration,
    /// Interval between two lines of a `/watch` stream.
    pub watch_interval: Duration,
}

impl ApiserverOptions {
    /// Options listening on `127.0.0.1:0`, no shutdown delay, the default watch interval.
    pub fn new(name: impl Into<String>, tls: Arc<rustls::ServerConfig>) -> Self {
        ApiserverOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls,
            name: name.into(),
            shutdown_delay: Duration::ZERO,
            watch_interval: DEFAULT_WATCH_INTERVAL,
        }
    }
}

struct Shared {
    name: String,
    name_header: HeaderValue,
    name_body: Bytes,
    name_json: String,
    addr: SocketAddr,
    shutdown_delay: Duration,
    watch_interval: Duration,
    mode: watch::Sender<Mode>,
    shutting_down: AtomicBool,
    requests: AtomicU64,
    open: AtomicUsize,
    /// Cancel to close the listener.
    stop_listening: CancellationToken,
    /// Cancelled by the accept loop once the listener is closed.
    listener_closed: CancellationToken,
    /// Cancel to drain connections gracefully.
    drain: CancellationToken,
    /// Cancel to abort everything (reset connections).
    hard: CancellationToken,
    tracker: TaskTracker,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    fn ready(&self) -> bool {
        self.mode() != Mode::NotReady && !self.shutting_down.load(Ordering::Relaxed)
    }
}

/// A running imitation kube-apiserver: a cheap-to-clone control handle.
///
/// When the last clone is dropped the server stops hard (like [`ImitationApiserver::stop`],
/// without waiting).
#[derive(Clone)]
pub struct ImitationApiserver {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

impl fmt::Debug for ImitationApiserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImitationApiserver")
            .field("name", &self.shared.name)
            .field("addr", &self.shared.addr)
            .field("mode", &self.shared.mode())
            .finish_non_exhaustive()
    }
}

impl ImitationApiserver {
    /// Binds `opts.listen` and starts serving. Must be called inside a tokio runtime.
    pub async fn start(opts: ApiserverOptions) -> io::Result<ImitationApiserver> {
        let name_header = HeaderValue::from_str(&opts.name).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("apiserver name {:?} is not a valid header value", opts.name),
            )
        })?;
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let hard = CancellationToken::new();
        let shared = Arc::new(Shared {
            name_body: Bytes::from(opts.name.clone()),
            name_json: serde_json::to_string(&opts.name).map_err(io::Error::other)?,
            name: opts.name,
            name_header,
            addr,
            shutdown_delay: opts.shutdown_delay,
            watch_interval: opts.watch_interval.max(Duration::from_millis(1)),
            mode: watch::Sender::new(Mode::Ready),
            shutting_down: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            stop_listening: CancellationToken::new(),
            listener_closed: CancellationToken::new(),
            drain: CancellationToken::new(),
            hard: hard.clone(),
            tracker: TaskTracker::new(),
        });
        let acceptor = TlsAcceptor::from(opts.tls);
        shared
            .tracker
            .spawn(accept_loop(shared.clone(), listener, acceptor));
        Ok(ImitationApiserver {
            shared,
            _guard: Arc::new(hard.drop_guard()),
        })
    }

    /// The address it listens on (with the real port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `https://ADDR` (IPv6 in brackets).
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// The name given in the options.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Switches the behaviour; takes effect at once, also on existing connections.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Whether `/readyz` would answer 200 now.
    pub fn is_ready(&self) -> bool {
        self.shared.ready()
    }

    /// Whether a graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Relaxed)
    }

    /// Requests answered (or being answered) so far, every path counted.
    pub fn requests_served(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// TCP connections currently open (including ones hanging before TLS).
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Shuts down the way kube-apiserver does:
    /// 1. `/readyz` fails at once, everything else keeps serving normally for
    ///    `shutdown_delay`;
    /// 2. the listener closes (new connections are refused);
    /// 3. in-flight requests finish with `Connection: close`, idle keep-alive connections are
    ///    closed, `/watch` streams are ended.
    ///
    /// Returns when every connection is closed. A request stuck in [`Mode::Hang`] keeps it
    /// waiting; [`ImitationApiserver::stop`] (from another task) cuts it short.
    pub async fn graceful_shutdown(&self) {
        let s = &self.shared;
        s.shutting_down.store(true, Ordering::Relaxed);
        tokio::select! {
            () = tokio::time::sleep(s.shutdown_delay) => {}
            () = s.hard.cancelled() => {}
        }
        s.stop_listening.cancel();
        s.listener_closed.cancelled().await;
        s.drain.cancel();
        s.tracker.close();
        s.tracker.wait().await;
    }

    /// Hard stop, like `kill -9`: closes the listener and resets every connection at once.
    /// Returns when all of it is done.
    pub async fn stop(&self) {
        let s = &self.shared;
        s.hard.cancel();
        s.tracker.close();
        s.tracker.wait().await;
    }
}

/// Resets the connection when dropped: `SO_LINGER` 0, so close sends RST.
fn set_reset_on_close(sock: &impl AsFd) {
    let _ = SockRef::from(sock).set_linger(Some(Duration::ZERO));
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.hard.cancelled() => break,
            () = shared.stop_listening.cancelled() => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(_) => {
                // EMFILE and friends: do not spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        if shared.mode() == Mode::Reset {
            set_reset_on_close(&tcp);
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        shared.open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(shared.clone());
        shared
            .tracker
            .spawn(connection(shared.clone(), tcp, acceptor.clone(), guard));
    }
    // shutdown() stops the socket listening even if a forked child (between fork and exec
    // in some other thread of this process) still holds a copy of the descriptor: new
    // connections are refused at once.
    let _ = SockRef::from(&listener).shutdown(std::net::Shutdown::Both);
    drop(listener);
    shared.listener_closed.cancel();
}

async fn connection(shared: Arc<Shared>, tcp: TcpStream, acceptor: TlsAcceptor, _open: OpenGuard) {
    // A second descriptor of the same socket, to reset it after the TLS stream is gone.
    let Ok(fd) = tcp.as_fd().try_clone_to_owned() else {
        return;
    };
    let mut mode_rx = shared.mode.subscribe();
    let abort = tokio::select! {
        () = shared.hard.cancelled() => true,
        r = mode_rx.wait_for(|m| *m == Mode::Reset) => r.is_ok(),
        () = serve(&shared, tcp, acceptor) => false,
    };
    if abort {
        set_reset_on_close(&fd);
    }
}

async fn serve(shared: &Arc<Shared>, tcp: TcpStream, acceptor: TlsAcceptor) {
    // A frozen process: the kernel completed the handshake, nobody reads.
    let mut mode_rx = shared.mode.subscribe();
    tokio::select! {
        r = mode_rx.wait_for(|m| *m != Mode::Hang) => if r.is_err() { return },
        () = shared.drain.cancelled() => return,
    }
    let tls = tokio::select! {
        r = acceptor.accept(tcp) => match r {
            Ok(tls) => tls,
            Err(_) => return,
        },
        () = shared.drain.cancelled() => return,
    };
    let svc_shared = shared.clone();
    let svc = service_fn(move |req| handle(svc_shared.clone(), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = shared.drain.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

type ResBody = BoxBody<Bytes, Infallible>;

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    if shared.mode() == Mode::Hang {
        let mut rx = shared.mode.subscribe();
        let _ = rx.wait_for(|m| *m != Mode::Hang).await;
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (status, body): (StatusCode, ResBody) = match req.uri().path() {
        "/readyz" => {
            if shared.ready() {
                (StatusCode::OK, full(Bytes::from_static(b"ok")))
            } else {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    full(Bytes::from_static(READYZ_FAILED_BODY.as_bytes())),
                )
            }
        }
        "/livez" | "/healthz" => (StatusCode::OK, full(Bytes::from_static(b"ok"))),
        "/watch" => (StatusCode::OK, watch_body(&shared)),
        _ => (StatusCode::OK, full(shared.name_body.clone())),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        HeaderName::from_static(BACKEND_HEADER),
        shared.name_header.clone(),
    );
    let content_type = if req.uri().path() == "/watch" {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if shared.drain.is_cancelled() {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

fn full(b: Bytes) -> ResBody {
    Full::new(b).boxed()
}

/// A streaming body fed by a channel; ends when the sender is dropped.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|line| line.map(|b| Ok(Frame::data(b))))
    }
}

fn watch_body(shared: &Arc<Shared>) -> ResBody {
    let (tx, rx) = mpsc::channel(4);
    shared.tracker.spawn(watch_producer(shared.clone(), tx));
    ChannelBody { rx }.boxed()
}

/// Feeds one `/watch` stream. Ends it (cleanly) on drain; on a hard stop or a reset the
/// connection task aborts the connection instead, which closes `tx`.
async fn watch_producer(shared: Arc<Shared>, tx: mpsc::Sender<Bytes>) {
    let mut interval = tokio::time::interval(shared.watch_interval);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut mode_rx = shared.mode.subscribe();
    let mut seq: u64 = 0;
    loop {
        tokio::select! {
            biased;
            () = shared.drain.cancelled() => return,
            () = tx.closed() => return,
            _ = interval.tick() => {}
        }
        if shared.mode() == Mode::Hang {
            tokio::select! {
                    () = shared.drain.cancelled() => return,
                () = tx.closed() => return,
                _ = mode_rx.wait_for(|m| *m != Mode::Hang) => {}
            }
        }
        let line = format!(
            "{{\"type\":\"BOOKMARK\",\"server\":{},\"seq\":{seq}}}\n",
            shared.name_json
        );
        seq += 1;
        tokio::select! {
            () = shared.drain.cancelled() => return,
            r = tx.send(Bytes::from(line)) => if r.is_err() { return },
        }
    }
}
