//! The admin endpoint on loopback: status, metrics, history and controls read back
//! after real transitions of imitation apiservers behind a real apivip, and the CLI
//! (`apivip status`, `drain`, `undrain`) against it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use apivip::admin::client::{self, EXIT_NOT_RUNNING, EXIT_UNHEALTHY};
use apivip::admin::status::StatusDoc;
use support::cluster::{Cluster, Opts, Stream, DEADLINE};
use support::{metric_sample as sample, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");

async fn call(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    client::request(addr, method, path, body.map(str::to_owned), DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{method_path}: {e}", method_path = path))
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    call(addr, http::Method::GET, path, None).await
}

async fn doc(addr: SocketAddr) -> StatusDoc {
    let (code, body) = get(addr, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn metrics(addr: SocketAddr) -> String {
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200, "{body}");
    body
}

async fn cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn admin(c: &Cluster) -> SocketAddr {
    c.sup().admin_addrs()[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_going_down_and_up_shows_in_status_metrics_and_history() {
    let mut c = Cluster::start(Opts::default()).await;
    let a = admin(&c);
    let labels = [("frontend", "apiserver"), ("backend", "master-1")];
    c.masters[1].stop().await;
    let down = wait_until(DEADLINE, || async {
        doc(a).await.frontends[0].backends[1].health == "unreachable"
    })
    .await;
    assert!(down, "{:#?}", doc(a).await);
    let d = doc(a).await;
    let b = &d.frontends[0].backends[1];
    assert_eq!(b.state, "unreachable");
    assert!(b.reason.contains("refused"), "reason: {}", b.reason);
    assert!(b.since_ms.is_some());
    assert!(
        d.events
            .iter()
            .any(|e| e.what == "apiserver/master-1: up -> down (unreachable)"
                && e.reason.contains("refused")),
        "{:#?}",
        d.events
    );
    let m = metrics(a).await;
    let state = |m: &str, s: &str| {
        let mut l = labels.to_vec();
        l.push(("state", s));
        sample(m, "apivip_backend_state", &l)
    };
    assert_eq!(state(&m, "unreachable"), Some(1.0), "{m}");
    assert_eq!(state(&m, "up"), Some(0.0), "{m}");
    let mut to_down = labels.to_vec();
    to_down.extend([("to", "unreachable"), ("reason", "refused")]);
    assert_eq!(
        sample(&m, "apivip_backend_transitions_total", &to_down),
        Some(1.0),
        "{m}"
    );
    let mut refused = labels.to_vec();
    refused.push(("reason", "refused"));
    assert!(sample(&m, "apivip_backend_check_failures_total", &refused).unwrap_or(0.0) >= 2.0);
    assert_eq!(sample(&m, "apivip_backend_healthy", &labels), Some(0.0));

    c.restart(1, Duration::ZERO).await;
    let up = wait_until(DEADLINE, || async {
        doc(a).await.frontends[0].backends[1].health == "up"
    })
    .await;
    assert!(up, "{:#?}", doc(a).await);
    let d = doc(a).await;
    assert!(
        d.events
            .iter()
            .any(|e| e.what == "apiserver/master-1: down (unreachable) -> up" && e.reason == "ok"),
        "{:#?}",
        d.events
    );
    let m = metrics(a).await;
    assert_eq!(state(&m, "up"), Some(1.0), "{m}");
    let mut to_up = labels.to_vec();
    to_up.extend([("to", "up"), ("reason", "ok")]);
    // Unknown -> up at start, then the recovery.
    assert_eq!(
        sample(&m, "apivip_backend_transitions_total", &to_up),
        Some(2.0),
        "{m}"
    );
    let mut checks = labels.to_vec();
    checks.push(("le", "+Inf"));
    assert!(
        sample(&m, "apivip_backend_check_duration_seconds_bucket", &checks).unwrap_or(0.0) >= 3.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_stops_new_connections_and_closes_existing_ones_after_the_grace() {
    let c = Cluster::start(Opts {
        apiserver: "  not_ready_grace: 1s\n",
        ..Opts::default()
    })
    .await;
    let a = admin(&c);
    let addr = a.to_string();
    // One stream per master (least connections).
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(Stream::open(&c).await);
    }
    let drained_stream = streams
        .iter()
        .position(|s| s.backend == "master-0")
        .expect("a stream on master-0");
    let drained_at = std::time::Instant::now();
    let (code, out, err) = cli(&["drain", "master-0", "--admin", &addr]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("drain master-0: no new connections"),
        "{out}"
    );
    let d = doc(a).await;
    assert_eq!(d.frontends[0].backends[0].state, "draining");
    assert!(d.frontends[0].backends[0].drained);
    assert_eq!(d.frontends[0].backends[0].health, "up");
    let m = metrics(a).await;
    let draining = [
        ("frontend", "apiserver"),
        ("backend", "master-0"),
        ("state", "draining"),
    ];
    assert_eq!(
        sample(&m, "apivip_backend_state", &draining),
        Some(1.0),
        "{m}"
    );
    for _ in 0..12 {
        let who = c.whoami().await.unwrap();
        assert_ne!(
            who, "master-0",
            "a new connection went to the drained master"
        );
    }
    // The drained master's stream ends after the 1 s grace; nothing else does.
    let mut s = streams.remove(drained_stream);
    let ended = tokio::time::timeout(DEADLINE, async { while s.next().await.is_some() {} }).await;
    assert!(
        ended.is_ok(),
        "the drained master's stream was never closed"
    );
    // Not before the grace (1 s; the timer starts after the drain was asked for).
    assert!(
        drained_at.elapsed() >= Duration::from_secs(1),
        "closed {:?} after the drain, before the grace",
        drained_at.elapsed()
    );
    for other in &mut streams {
        assert!(other.next().await.is_some(), "{} was closed", other.backend);
    }
    let d = doc(a).await;
    assert!(
        d.events
            .iter()
            .any(|e| e.what == "drain master-0" && e.reason.contains("asked by")),
        "{:#?}",
        d.events
    );
    let (code, out, err) = cli(&["undrain", "master-0", "--admin", &addr]).await;
    assert_eq!(code, 0, "{out}{err}");
    let back = wait_until(DEADLINE, || async {
        c.whoami().await.is_ok_and(|w| w == "master-0")
    })
    .await;
    assert!(back, "master-0 never got a connection again after undrain");
    let m = metrics(a).await;
    assert_eq!(
        sample(
            &m,
            "apivip_controls_total",
            &[("control", "drain"), ("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "apivip_controls_total",
            &[("control", "undrain"), ("result", "ok")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_requests_are_refused_with_a_one_line_reason_and_change_nothing() {
    let c = Cluster::start(Opts::default()).await;
    let a = admin(&c);
    let before = doc(a).await;
    let big = "x".repeat(5000);
    let cases: [(http::Method, &str, Option<&str>, u16, &str); 10] = [
        (
            http::Method::POST,
            "/control/drain",
            Some(r#"{"backend": "nope"}"#),
            404,
            "no backend named \"nope\"; backends: master-0, master-1, master-2",
        ),
        (
            http::Method::GET,
            "/control/drain",
            None,
            405,
            "method not allowed; use POST",
        ),
        (
            http::Method::POST,
            "/metrics",
            None,
            405,
            "method not allowed; use GET",
        ),
        (
            http::Method::POST,
            "/control/drain",
            Some("master-0"),
            400,
            "expected a body like {\"backend\": \"NAME\"}",
        ),
        (
            http::Method::POST,
            "/control/undrain",
            Some(r#"{"backend": "master-0", "x": 1}"#),
            400,
            "expected a body like",
        ),
        (
            http::Method::POST,
            "/control/handover",
            Some("now"),
            400,
            "handover takes no request body",
        ),
        (
            http::Method::POST,
            "/control/handover",
            None,
            409,
            "no vrrp section in the config",
        ),
        (
            http::Method::POST,
            "/control/resume",
            None,
            409,
            "no vrrp section in the config",
        ),
        (
            http::Method::GET,
            "/nope",
            None,
            404,
            "no such endpoint \"/nope\"",
        ),
        (
            http::Method::POST,
            "/control/drain",
            Some(&big),
            413,
            "request body over 4096 bytes",
        ),
    ];
    for (method, path, body, want, reason) in cases {
        let (code, text) = call(a, method.clone(), path, body).await;
        assert_eq!(code, want, "{method} {path}: {text}");
        assert!(text.starts_with(reason), "{method} {path}: {text:?}");
        assert_eq!(text.matches('\n').count(), 1, "not one line: {text:?}");
    }
    let after = doc(a).await;
    assert_eq!(
        before.frontends, after.frontends,
        "a refused control changed something"
    );
    assert!(after
        .events
        .iter()
        .all(|e| e.kind != apivip::events::EventKind::Control));
    assert_eq!(after.controls["drain/refused"], 3);
    assert_eq!(after.controls["undrain/refused"], 1);
    assert_eq!(after.controls["handover/refused"], 2);
    assert_eq!(after.controls["drain/ok"], 0);
    let (code, _, err) = cli(&["drain", "nope", "--admin", &a.to_string()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("refused (404): no backend named"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_openmetrics_is_served_when_asked() {
    let name = "metrics_pass_promtool_and_openmetrics_is_served_when_asked";
    let Some(promtool) = support::require_bin(name, "promtool") else {
        return;
    };
    let c = Cluster::start(Opts::default()).await;
    let a = admin(&c);
    for _ in 0..5 {
        c.whoami().await.unwrap();
    }
    let text = metrics(a).await;
    for family in [
        "apivip_build_info",
        "process_start_time_seconds",
        "apivip_config_reloads_total",
        "apivip_controls_total",
        "apivip_backend_state",
        "apivip_backend_healthy",
        "apivip_backend_transitions_total",
        "apivip_backend_check_failures_total",
        "apivip_backend_check_duration_seconds_bucket",
        "apivip_backend_active_connections",
        "apivip_backend_connections_total",
        "apivip_backend_connect_failures_total",
        "apivip_backend_connect_retries_total",
        "apivip_backend_closed_on_down_total",
        "apivip_backend_sent_bytes_total",
        "apivip_backend_received_bytes_total",
        "apivip_frontend_active_connections",
        "apivip_frontend_max_connections",
        "apivip_frontend_connections_total",
        "apivip_frontend_rejected_connections_total",
        "apivip_frontend_no_backend_total",
        "apivip_frontend_fallback_connects_total",
        "apivip_frontend_refused_connections_total{frontend=\"apiserver\",reason=\"first_byte_timeout\"} 0",
        "apivip_frontend_accept_failing{frontend=\"apiserver\"} 0",
        "apivip_frontend_local_outage{frontend=\"apiserver\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "{family} missing:\n{text}"
        );
    }
    let sent: f64 = (0..3)
        .filter_map(|i| {
            sample(
                &text,
                "apivip_backend_sent_bytes_total",
                &[("backend", &format!("master-{i}"))],
            )
        })
        .sum();
    assert!(sent > 0.0, "no bytes counted:\n{text}");
    let accepted = sample(
        &text,
        "apivip_frontend_connections_total",
        &[("frontend", "apiserver")],
    );
    assert!(accepted >= Some(5.0), "{text}");
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // What a Prometheus server asks for.
    let stream = tokio::net::TcpStream::connect(a).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header(http::header::HOST, a.to_string())
        .header(
            http::header::ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert!(resp.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("apivip_backend_connections_total{"), "{body}");
    assert_eq!(get(a, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(a, "/readyz").await, (200, "ok\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cli_prints_the_screen_and_its_exit_code_tells_the_cases_apart() {
    let c = Cluster::start(Opts::default()).await;
    let a = admin(&c).to_string();
    let (code, out, err) = cli(&["status", "--admin", &a]).await;
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "ready",
        "VRRP: not configured",
        "apiserver on 127.0.0.1:",
        "master-2",
        "up",
        "last ",
    ] {
        assert!(out.contains(want), "{want:?} missing:\n{out}");
    }
    let (code, out, _) = cli(&["status", "--json", "--admin", &a]).await;
    assert_eq!(code, 0);
    let d: StatusDoc = serde_json::from_str(&out).unwrap();
    assert_eq!(d.version, 1);
    assert_eq!(d.frontends[0].backends.len(), 3);

    // Nothing listens: "not running".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = cli(&["status", "--admin", &closed_addr]).await;
    assert_eq!(code, i32::from(EXIT_NOT_RUNNING), "{err}");
    assert!(err.contains("is not running"), "{err}");

    // A daemon that answers but is not ready and whose /healthz fails: "unhealthy".
    let mut sick = d.clone();
    sick.ready = false;
    sick.not_ready = vec!["vrrp: the election thread does not answer".to_owned()];
    let body = serde_json::to_string(&sick).unwrap();
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_addr = fake.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = fake.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /status") {
                    ("200 OK", body)
                } else {
                    (
                        "503 Service Unavailable",
                        "unhealthy: the election thread did not answer within 1s\n".to_owned(),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    let (code, out, err) = cli(&["status", "--admin", &fake_addr]).await;
    assert_eq!(code, i32::from(EXIT_UNHEALTHY), "{out}{err}");
    assert!(
        out.contains("NOT READY: vrrp: the election thread does not answer"),
        "{out}"
    );
    assert!(out.contains("UNHEALTHY"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_limits_its_connections_and_the_proxy_keeps_serving() {
    use apivip::admin::server::{HEADER_TIMEOUT, MAX_CONNECTIONS};
    use tokio::io::AsyncReadExt;
    let c = Cluster::start(Opts::default()).await;
    let a = admin(&c);
    // Idle connections that never send a request take every slot.
    let mut idle = Vec::new();
    let opened = std::time::Instant::now();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(a).await.unwrap());
    }
    // Let the server accept them all, then one more is closed at once.
    let full = wait_until(DEADLINE, || async {
        let mut extra = tokio::net::TcpStream::connect(a).await.unwrap();
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(500), extra.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    })
    .await;
    assert!(full, "a connection over the limit was not closed");
    // The proxy does not notice.
    for _ in 0..5 {
        c.whoami().await.unwrap();
    }
    // The idle ones are closed after the header timeout, and the endpoint answers again.
    let started = std::time::Instant::now();
    for s in &mut idle {
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(DEADLINE, s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection was kept"
        );
    }
    // Held until the header timeout (not closed at once), and not much longer.
    assert!(opened.elapsed() >= HEADER_TIMEOUT, "{:?}", opened.elapsed());
    assert!(started.elapsed() <= HEADER_TIMEOUT + Duration::from_secs(5));
    assert_eq!(get(a, "/healthz").await, (200, "ok\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_refreshes_in_place() {
    use tokio::io::AsyncReadExt;
    let c = Cluster::start(Opts::default()).await;
    let a = admin(&c).to_string();
    let mut child = tokio::process::Command::new(BIN)
        .args(["status", "--watch", "--admin", &a])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let two = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        while seen.matches("\x1b[2J\x1b[H").count() < 2 {
            let n = out.read(&mut buf).await.unwrap();
            assert!(n > 0, "apivip status --watch ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await;
    assert!(two.is_ok(), "no second screen: {seen}");
    assert!(seen.matches("master-1").count() >= 2, "{seen}");
    child.kill().await.unwrap();
}
