//! The admin HTTP server (HTTP/1.1, hyper): routing, limits and who may steer.
//!
//! Limits of its own, so that a flood of admin requests never reaches the proxy or the
//! election: at most [`MAX_CONNECTIONS`] connections (more are closed at once), request
//! headers within [`HEADER_TIMEOUT`], a whole connection within [`CONNECTION_TIMEOUT`],
//! request bodies of at most [`MAX_BODY`] bytes. Controls (`POST /control/...`) are
//! accepted from loopback clients only, and each is logged with who asked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{metrics, Daemon};

/// Admin connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Time to send the request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may stay open (a handover waits a few seconds at most).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request body.
pub const MAX_BODY: usize = 4096;

/// Serves `listener` until `cancel`.
pub async fn serve(
    listener: TcpListener,
    daemon: Arc<Daemon>,
    stop_accepting: CancellationToken,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop_accepting.cancelled() => return,
            _ = cancel.cancelled() => return,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%peer, "admin: connection limit reached; closing");
            continue;
        };
        let daemon = Arc::clone(&daemon);
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let daemon = Arc::clone(&daemon);
                async move { Ok::<_, Infallible>(handle(&daemon, peer, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(io, service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
                _ = cancel.cancelled() => {}
            }
            drop(permit);
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn method_not_allowed(allow: &str) -> Response<Full<Bytes>> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    if let Ok(v) = header::HeaderValue::from_str(allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

/// Who asked, for the log: the peer address and the user the CLI says it runs as.
fn who(peer: SocketAddr, req: &Request<Incoming>) -> String {
    let user = req
        .headers()
        .get("x-apivip-user")
        .and_then(|v| v.to_str().ok())
        .map(|u| {
            u.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        });
    match user {
        Some(u) => format!("{u} from {peer}"),
        None => peer.to_string(),
    }
}

/// The body of a drain/undrain: `{"backend": "NAME"}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendBody {
    backend: String,
}

async fn handle(
    daemon: &Daemon,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match path.as_str() {
        "/metrics" | "/healthz" | "/readyz" | "/status" => {
            if method != Method::GET && method != Method::HEAD {
                return method_not_allowed("GET");
            }
            match path.as_str() {
                "/metrics" => {
                    let openmetrics = req
                        .headers()
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|a| a.contains("application/openmetrics-text"));
                    let doc = daemon.status().await;
                    let body = metrics::render(&doc, &daemon.running().check_stats, openmetrics);
                    Response::builder()
                        .header(
                            header::CONTENT_TYPE,
                            if openmetrics {
                                metrics::OPENMETRICS
                            } else {
                                metrics::TEXT
                            },
                        )
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_default()
                }
                "/healthz" => healthz(daemon).await,
                "/readyz" => {
                    let why = daemon.not_ready().await;
                    if why.is_empty() {
                        text(StatusCode::OK, "ok")
                    } else {
                        text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}", why.join("; ")))
                    }
                }
                _ => {
                    let doc = daemon.status().await;
                    match serde_json::to_vec_pretty(&*doc) {
                        Ok(body) => Response::builder()
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap_or_default(),
                        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            }
        }
        "/control/reload" => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if !peer.ip().is_loopback() {
                tracing::warn!(%peer, "admin: reload refused: not from loopback");
                return text(
                    StatusCode::FORBIDDEN,
                    "controls are accepted from loopback only; run apivip on this node",
                );
            }
            let who = who(peer, &req);
            match daemon.reload(&who).await {
                Ok(r) if r.ok && r.lines.is_empty() => {
                    text(StatusCode::OK, "reload: applied; nothing changed")
                }
                Ok(r) if r.ok => text(
                    StatusCode::OK,
                    format!("reload: applied\n{}", r.lines.join("\n")),
                ),
                Ok(r) if r.applied => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "reload: applied, except for the last line's error\n{}",
                        r.lines.join("\n")
                    ),
                ),
                Ok(r) => text(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "reload: refused; the daemon keeps running on the previous config\n{}",
                        r.lines.join("\n")
                    ),
                ),
                Err((code, msg)) => text(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    msg,
                ),
            }
        }
        "/control/handover" | "/control/resume" | "/control/drain" | "/control/undrain" => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let control = path.trim_start_matches("/control/").to_owned();
            if !peer.ip().is_loopback() {
                tracing::warn!(%peer, control, "admin: control refused: not from loopback");
                daemon.count_control(&control, false);
                daemon.invalidate().await;
                return text(
                    StatusCode::FORBIDDEN,
                    "controls are accepted from loopback only; run apivip on this node",
                );
            }
            let who = who(peer, &req);
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    daemon.count_control(&control, false);
                    daemon.invalidate().await;
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body over {MAX_BODY} bytes"),
                    );
                }
            };
            let result = control_request(daemon, &control, &body, &who).await;
            daemon.count_control(&control, result.is_ok());
            daemon.invalidate().await;
            match result {
                Ok(msg) => text(StatusCode::OK, msg),
                Err((code, msg)) => {
                    tracing::info!(who, control, reason = %msg, "admin: control refused");
                    text(
                        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                        msg,
                    )
                }
            }
        }
        "/debug/stall-election" | "/debug/dns-clock" => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if !peer.ip().is_loopback() {
                return text(StatusCode::FORBIDDEN, "accepted from loopback only");
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body over {MAX_BODY} bytes"),
                    )
                }
            };
            let done = if path == "/debug/dns-clock" {
                dns_clock(daemon, &body)
            } else {
                stall_election(daemon, &body)
            };
            match done {
                Ok(msg) => text(StatusCode::OK, msg),
                Err((code, msg)) => text(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                    msg,
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "no such endpoint {path:?}; try /metrics, /healthz, /readyz, /status or POST /control/{{handover,resume,drain,undrain,reload}}"
            ),
        ),
    }
}

async fn control_request(
    daemon: &Daemon,
    control: &str,
    body: &[u8],
    who: &str,
) -> Result<String, (u16, String)> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    match control {
        "handover" | "resume" if !empty => Err((400, format!("{control} takes no request body"))),
        "handover" => daemon.handover(who).await,
        "resume" => daemon.resume(who).await,
        _ => {
            let parsed: BackendBody = json_body(body, r#"{"backend": "NAME"}"#)?;
            daemon.drain(&parsed.backend, control == "drain", who)
        }
    }
}

/// A JSON request body, or a 400 naming the expected shape (`example`).
fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    example: &str,
) -> Result<T, (u16, String)> {
    serde_json::from_slice(body).map_err(|e| (400, format!("expected a body like {example}: {e}")))
}

/// The body of `POST /debug/stall-election`: `{"seconds": N}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StallBody {
    seconds: f64,
}

/// Refuses a fault-injection endpoint unless the daemon started with it enabled.
fn fault_injection_allowed(daemon: &Daemon) -> Result<(), (u16, String)> {
    if daemon.fault_injection() {
        return Ok(());
    }
    Err((
        403,
        format!(
            "fault injection is off: it exists for tests only and needs {}=1 in the daemon's environment at start",
            crate::admin::FAULT_INJECTION_ENV
        ),
    ))
}

/// Test-only fault injection: makes the election thread sleep (see
/// [`crate::admin::FAULT_INJECTION_ENV`]); refused unless enabled at start.
fn stall_election(daemon: &Daemon, body: &[u8]) -> Result<String, (u16, String)> {
    fault_injection_allowed(daemon)?;
    let parsed: StallBody = json_body(body, r#"{"seconds": 5}"#)?;
    let max = crate::vrrp::io::shell::MAX_STALL;
    let pause = Duration::try_from_secs_f64(parsed.seconds)
        .ok()
        .filter(|d| *d <= max)
        .ok_or_else(|| {
            (
                400,
                format!(
                    "seconds: {}: expected 0 to {}",
                    parsed.seconds,
                    max.as_secs()
                ),
            )
        })?;
    let running = daemon.running();
    // The first election (the test topologies run one).
    let handle = running.vrrp.first().ok_or((
        409,
        "no vrrp section in the config: no election thread".to_owned(),
    ))?;
    if !handle.stall_for_test(pause) {
        return Err((503, "the election thread is not running".to_owned()));
    }
    tracing::warn!(
        pause = %crate::units::format_duration(pause),
        "admin: fault injection: stalling the election thread (test-only)"
    );
    Ok(format!(
        "stalling the election thread for {}",
        crate::units::format_duration(pause)
    ))
}

/// The body of `POST /debug/dns-clock`: `{"seconds": N}`, N may be negative.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockBody {
    seconds: i64,
}

/// The most `POST /debug/dns-clock` moves the signing clock: a day.
const MAX_CLOCK_OFFSET: i64 = 86_400;

/// Test-only fault injection: moves the clock the DNS publisher signs its TSIG
/// messages with by N seconds (a node with a wrong clock, for BADTIME); refused unless
/// enabled at start.
fn dns_clock(daemon: &Daemon, body: &[u8]) -> Result<String, (u16, String)> {
    fault_injection_allowed(daemon)?;
    let parsed: ClockBody = json_body(body, r#"{"seconds": 3600}"#)?;
    if parsed.seconds.unsigned_abs() > MAX_CLOCK_OFFSET.unsigned_abs() {
        return Err((
            400,
            format!(
                "seconds: {}: expected -{MAX_CLOCK_OFFSET} to {MAX_CLOCK_OFFSET}",
                parsed.seconds
            ),
        ));
    }
    let running = daemon.running();
    let dns = running
        .dns
        .as_ref()
        .ok_or((409, "no dns section in the config".to_owned()))?;
    dns.clock_offset
        .store(parsed.seconds, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(
        seconds = parsed.seconds,
        "admin: fault injection: the DNS publisher's signing clock is off by this much (test-only)"
    );
    Ok(format!(
        "the DNS signing clock is now off by {} s",
        parsed.seconds
    ))
}

/// Liveness: the runtime runs a task, and the election thread answers, within the
/// bound ([`Daemon::liveness`], which the systemd watchdog uses too).
async fn healthz(daemon: &Daemon) -> Response<Full<Bytes>> {
    match daemon.liveness().await {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::stats::HealthStats;

    fn daemon(vrrp: Vec<crate::vrrp::io::shell::VrrpHandle>) -> Daemon {
        let config = crate::config::Config::from_yaml(
            "backends: [{address: 198.18.0.11}]\napiserver: {listen: [], check: {kind: tcp}}\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        let (publisher, view) =
            crate::health::channel(crate::health::HealthSnapshot::initial(&config));
        Daemon::new(
            crate::admin::Running {
                config: Arc::new(config.clone()),
                frontends: Vec::new(),
                listen: Vec::new(),
                check_stats: HealthStats::new(&config),
                vrrp,
                vips: Vec::new(),
                dns: None,
            },
            view,
            publisher,
            crate::events::History::default(),
        )
    }

    async fn body(r: Response<Full<Bytes>>) -> (StatusCode, String) {
        let code = r.status();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&b).into_owned())
    }

    #[tokio::test]
    async fn a_stalled_election_thread_turns_healthz_503() {
        let (handle, _held) = crate::vrrp::io::shell::VrrpHandle::stalled();
        let d = daemon(vec![handle]);
        let started = std::time::Instant::now();
        let (code, text) = body(healthz(&d).await).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            text,
            "unhealthy: the election thread did not answer within 1s\n"
        );
        assert!(started.elapsed() >= crate::admin::ELECTION_BOUND);
        // Not ready either, and the status says the state is unknown.
        assert_eq!(
            d.not_ready().await,
            vec!["vrrp: the election thread does not answer".to_owned()]
        );
    }

    #[tokio::test]
    async fn without_an_election_healthz_needs_only_the_runtime() {
        let d = daemon(Vec::new());
        assert_eq!(
            body(healthz(&d).await).await,
            (StatusCode::OK, "ok\n".to_owned())
        );
        assert!(d.not_ready().await.is_empty());
    }
}
