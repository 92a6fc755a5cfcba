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
//! | `GET /api`, `/apis`, `/api/v1` | discovery (JSON): core version `v1` only, no API groups, one resource `pods` (namespaced; get, list, watch) |
//! | `GET /api/v1/namespaces/NS/pods`, `/api/v1/pods` | a `PodList` (JSON) with no items and the current `resourceVersion` |
//! | the same with `?watch=true` (or `1`) | `200`, a never-ending stream of watch events like `/watch`, one JSON line each: `{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"NAME-SEQ","namespace":"NS","resourceVersion":"RV"}}}` |
//! | anything else (`/whoami`, `/version`, ...) | `200`, body = the name |
//!
//! The pod endpoints are just enough for a real `kubectl get pods --watch -o name` (tested
//! with kubectl 1.20): it prints `pod/NAME-SEQ` for every event, so the client's output
//! names the backend it is connected to. `SEQ` counts the events of one stream from 0; `RV`
//! is this server's resource version, which every event counts up (a list answers the
//! current one). Query parameters other than `watch` (`resourceVersion`, `limit`,
//! `timeout`, ...) are ignored.
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
    accepted: AtomicU64,
    /// The latest resource version: pod watch events count it up.
    resource_version: AtomicU64,
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
            accepted: AtomicU64::new(0),
            resource_version: AtomicU64::new(1),
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

    /// TCP connections accepted so far, also the ones reset at once in [`Mode::Reset`].
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
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
            Ok((tcp, _peer)) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                tcp
            }
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

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// `GET /api`: the core API versions.
const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":""}]}"#;

/// `GET /apis`: no API groups beyond the core one.
const API_GROUP_LIST: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;

/// `GET /api/v1`: the only resource served, `pods`.
const API_RESOURCE_LIST: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"","namespaced":true,"kind":"Pod","verbs":["get","list","watch"],"shortNames":["po"]}]}"#;

/// What a request asks for; see the table in the module docs.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Readyz,
    Ok,
    /// `/watch`.
    Watch,
    /// A static JSON document (discovery).
    Json(&'static str),
    /// A pod list in this namespace.
    PodList(String),
    /// A pod watch in this namespace.
    PodWatch(String),
    /// Anything else: the name.
    Name,
}

impl Route {
    fn of(path: &str, query: Option<&str>) -> Route {
        let pods_namespace = || {
            if path == "/api/v1/pods" {
                return Some("default");
            }
            let ns = path
                .strip_prefix("/api/v1/namespaces/")?
                .strip_suffix("/pods")?;
            (!ns.is_empty() && !ns.contains('/')).then_some(ns)
        };
        match path {
            "/readyz" => Route::Readyz,
            "/livez" | "/healthz" => Route::Ok,
            "/watch" => Route::Watch,
            "/api" | "/api/" => Route::Json(API_VERSIONS),
            "/apis" | "/apis/" => Route::Json(API_GROUP_LIST),
            "/api/v1" | "/api/v1/" => Route::Json(API_RESOURCE_LIST),
            _ => match pods_namespace() {
                Some(ns) if is_watch(query) => Route::PodWatch(ns.to_owned()),
                Some(ns) => Route::PodList(ns.to_owned()),
                None => Route::Name,
            },
        }
    }
}

/// Whether the query asks for a watch (`watch=true`, `watch=1` or a bare `watch`).
fn is_watch(query: Option<&str>) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|kv| matches!(kv, "watch=true" | "watch=1" | "watch"))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    if shared.mode() == Mode::Hang {
        let mut rx = shared.mode.subscribe();
        let _ = rx.wait_for(|m| *m != Mode::Hang).await;
    }
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (status, content_type, body): (StatusCode, &str, ResBody) =
        match Route::of(req.uri().path(), req.uri().query()) {
            Route::Readyz if shared.ready() => {
                (StatusCode::OK, TEXT, full(Bytes::from_static(b"ok")))
            }
            Route::Readyz => (
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                full(Bytes::from_static(READYZ_FAILED_BODY.as_bytes())),
            ),
            Route::Ok => (StatusCode::OK, TEXT, full(Bytes::from_static(b"ok"))),
            Route::Watch => (StatusCode::OK, JSON, watch_body(&shared, Feed::Bookmark)),
            Route::Json(doc) => (
                StatusCode::OK,
                JSON,
                full(Bytes::from_static(doc.as_bytes())),
            ),
            Route::PodList(_) => (StatusCode::OK, JSON, full(pod_list(&shared))),
            Route::PodWatch(namespace) => (
                StatusCode::OK,
                JSON,
                watch_body(&shared, Feed::Pods { namespace }),
            ),
            Route::Name => (StatusCode::OK, TEXT, full(shared.name_body.clone())),
        };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        HeaderName::from_static(BACKEND_HEADER),
        shared.name_header.clone(),
    );
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if shared.drain.is_cancelled() {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(resp)
}

/// An empty `PodList` at the latest resource version.
fn pod_list(shared: &Shared) -> Bytes {
    let rv = shared.resource_version.load(Ordering::Relaxed).to_string();
    let list = serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv},
        "items": [],
    });
    Bytes::from(list.to_string())
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

/// What one watch stream sends, one line per `watch_interval`.
enum Feed {
    /// `/watch`: `{"type":"BOOKMARK","server":NAME,"seq":SEQ}`.
    Bookmark,
    /// A pod watch: an `ADDED` event of the pod `NAME-SEQ` in `namespace`.
    Pods { namespace: String },
}

impl Feed {
    fn line(&self, shared: &Shared, seq: u64) -> Bytes {
        let mut line = match self {
            Feed::Bookmark => format!(
                "{{\"type\":\"BOOKMARK\",\"server\":{},\"seq\":{seq}}}",
                shared.name_json
            ),
            Feed::Pods { namespace } => {
                let rv = shared.resource_version.fetch_add(1, Ordering::Relaxed) + 1;
                serde_json::json!({
                    "type": "ADDED",
                    "object": {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "metadata": {
                            "name": format!("{}-{seq}", shared.name),
                            "namespace": namespace,
                            "resourceVersion": rv.to_string(),
                        },
                    },
                })
                .to_string()
            }
        };
        line.push('\n');
        Bytes::from(line)
    }
}

fn watch_body(shared: &Arc<Shared>, feed: Feed) -> ResBody {
    let (tx, rx) = mpsc::channel(4);
    shared
        .tracker
        .spawn(watch_producer(shared.clone(), feed, tx));
    ChannelBody { rx }.boxed()
}

/// Feeds one watch stream (`/watch` or a pod watch). Ends it (cleanly) on drain; on a hard
/// stop or a reset the connection task aborts the connection instead, which closes `tx`.
async fn watch_producer(shared: Arc<Shared>, feed: Feed, tx: mpsc::Sender<Bytes>) {
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
        let line = feed.line(&shared, seq);
        seq += 1;
        tokio::select! {
            () = shared.drain.cancelled() => return,
            r = tx.send(line) => if r.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/readyz", None), Route::Readyz);
        assert_eq!(Route::of("/watch", Some("watch=true")), Route::Watch);
        assert_eq!(
            Route::of("/api", Some("timeout=32s")),
            Route::Json(API_VERSIONS)
        );
        assert_eq!(Route::of("/apis", None), Route::Json(API_GROUP_LIST));
        assert_eq!(Route::of("/api/v1", None), Route::Json(API_RESOURCE_LIST));
        let ns = |s: &str| s.to_owned();
        assert_eq!(
            Route::of("/api/v1/namespaces/kube-system/pods", Some("limit=500")),
            Route::PodList(ns("kube-system"))
        );
        assert_eq!(
            Route::of(
                "/api/v1/namespaces/default/pods",
                Some("resourceVersion=7&watch=true")
            ),
            Route::PodWatch(ns("default"))
        );
        assert_eq!(
            Route::of("/api/v1/pods", Some("watch=1")),
            Route::PodWatch(ns("default"))
        );
        assert_eq!(
            Route::of("/api/v1/namespaces/default/pods", Some("watch=false")),
            Route::PodList(ns("default"))
        );
        assert_eq!(Route::of("/api/v1/namespaces//pods", None), Route::Name);
        assert_eq!(Route::of("/api/v1/namespaces/a/b/pods", None), Route::Name);
        assert_eq!(Route::of("/whoami", None), Route::Name);
        for doc in [API_VERSIONS, API_GROUP_LIST, API_RESOURCE_LIST] {
            serde_json::from_str::<serde_json::Value>(doc).expect(doc);
        }
    }

    #[test]
    fn pod_events_name_the_backend() {
        let feed = Feed::Pods {
            namespace: "ns1".into(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let shared = rt.block_on(async {
            let tls = crate::testkit::certs::TestPki::generate(
                tempfile::tempdir().unwrap().path(),
                &["127.0.0.1"],
            )
            .unwrap()
            .server_config();
            ImitationApiserver::start(ApiserverOptions::new("m\"0", tls))
                .await
                .unwrap()
        });
        let line = feed.line(&shared.shared, 3);
        assert!(line.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["type"], "ADDED");
        assert_eq!(v["object"]["kind"], "Pod");
        assert_eq!(v["object"]["metadata"]["name"], "m\"0-3");
        assert_eq!(v["object"]["metadata"]["namespace"], "ns1");
        assert_eq!(v["object"]["metadata"]["resourceVersion"], "2");
        let list: serde_json::Value = serde_json::from_slice(&pod_list(&shared.shared)).unwrap();
        assert_eq!(list["metadata"]["resourceVersion"], "2");
    }
}
