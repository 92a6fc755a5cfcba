//! Tests of the test kit itself: the imitation kube-apiserver, the test PKI, the netns
//! topology helper and the etcd helper.

mod support;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use apivip::testkit::apiserver::{
    ApiserverOptions, ImitationApiserver, Mode, BACKEND_HEADER, READYZ_FAILED_BODY,
};
use apivip::testkit::certs::TestPki;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Response;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

fn pki(dir: &tempfile::TempDir) -> TestPki {
    TestPki::generate(dir.path(), &["127.0.0.1", "::1", "localhost"]).expect("generate pki")
}

async fn start(pki: &TestPki, name: &str, delay: Duration) -> ImitationApiserver {
    let mut opts = ApiserverOptions::new(name, pki.server_config());
    opts.shutdown_delay = delay;
    opts.watch_interval = Duration::from_millis(20);
    ImitationApiserver::start(opts)
        .await
        .expect("start apiserver")
}

async fn get(api: &ImitationApiserver, pki: &TestPki, path: &str) -> Result<(u16, String), String> {
    support::https_get(api.addr(), &pki.ca_cert, path).await
}

async fn connect_refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect(addr).await,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// Reads a streaming body until it holds `n` complete lines.
async fn read_lines(body: &mut Incoming, n: usize) -> Result<Vec<String>, String> {
    let mut buf = String::new();
    while buf.matches('\n').count() < n {
        match tokio::time::timeout(DEADLINE, body.frame()).await {
            Err(_) => return Err(format!("no watch line within {DEADLINE:?}; got {buf:?}")),
            Ok(None) => return Err(format!("stream ended; got {buf:?}")),
            Ok(Some(Err(e))) => return Err(format!("stream error: {e}; got {buf:?}")),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.push_str(&String::from_utf8_lossy(&data));
                }
            }
        }
    }
    Ok(buf.lines().take(n).map(str::to_owned).collect())
}

async fn watch(api: &ImitationApiserver, pki: &TestPki) -> Response<Incoming> {
    let resp = support::https_request(api.addr(), pki.client_config(), "/watch")
        .await
        .expect("GET /watch");
    assert_eq!(resp.status(), 200);
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_mode_and_everything_names_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = start(&pki, "m0", Duration::ZERO).await;

    assert_eq!(get(&api, &pki, "/readyz").await, Ok((200, "ok".into())));
    assert_eq!(get(&api, &pki, "/livez").await, Ok((200, "ok".into())));
    assert_eq!(get(&api, &pki, "/healthz").await, Ok((200, "ok".into())));
    assert_eq!(get(&api, &pki, "/whoami").await, Ok((200, "m0".into())));
    assert_eq!(get(&api, &pki, "/version").await, Ok((200, "m0".into())));

    let resp = support::https_request(api.addr(), pki.client_config(), "/readyz")
        .await
        .unwrap();
    assert_eq!(resp.headers()[BACKEND_HEADER], "m0");

    api.set_mode(Mode::NotReady);
    assert_eq!(
        get(&api, &pki, "/readyz").await,
        Ok((500, READYZ_FAILED_BODY.into()))
    );
    assert_eq!(get(&api, &pki, "/livez").await, Ok((200, "ok".into())));
    assert_eq!(get(&api, &pki, "/whoami").await, Ok((200, "m0".into())));
    let resp = support::https_request(api.addr(), pki.client_config(), "/readyz")
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()[BACKEND_HEADER], "m0");

    api.set_mode(Mode::Ready);
    assert_eq!(get(&api, &pki, "/readyz").await, Ok((200, "ok".into())));
    assert!(api.requests_served() >= 11, "{}", api.requests_served());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_and_wrong_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let mut opts = ApiserverOptions::new("v6", pki.server_config());
    opts.listen = "[::1]:0".parse().unwrap();
    let api = ImitationApiserver::start(opts).await.expect("start on ::1");
    assert!(api.addr().is_ipv6());
    assert_eq!(get(&api, &pki, "/whoami").await, Ok((200, "v6".into())));
    // A client trusting only the unrelated CA refuses the server.
    let err = support::https_get(api.addr(), &pki.wrong_ca_cert, "/whoami").await;
    assert!(err.is_err(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_server_config_requires_the_right_client_cert() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = ImitationApiserver::start(ApiserverOptions::new("mtls", pki.server_config_mtls()))
        .await
        .unwrap();
    let ok = support::https_get_with(api.addr(), pki.client_config_mtls(), "/readyz").await;
    assert_eq!(ok, Ok((200, "ok".into())));
    // The PEM files work the same as the in-memory configs.
    let from_files = support::client_config(
        &pki.ca_cert,
        Some((pki.client_cert.as_path(), pki.client_key.as_path())),
    )
    .unwrap();
    let ok = support::https_get_with(api.addr(), from_files, "/readyz").await;
    assert_eq!(ok, Ok((200, "ok".into())));
    let wrong =
        support::https_get_with(api.addr(), pki.client_config_wrong_mtls(), "/readyz").await;
    assert!(wrong.is_err(), "{wrong:?}");
    let none = support::https_get_with(api.addr(), pki.client_config(), "/readyz").await;
    assert!(none.is_err(), "{none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_bookmark_lines() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = start(&pki, "m1", Duration::ZERO).await;
    let resp = watch(&api, &pki).await;
    assert_eq!(resp.headers()[BACKEND_HEADER], "m1");
    let mut body = resp.into_body();
    let lines = read_lines(&mut body, 3).await.unwrap();
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["type"], "BOOKMARK");
        assert_eq!(v["server"], "m1");
        assert_eq!(v["seq"], i as u64);
    }
    assert!(api.open_connections() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_follows_kube_apiserver_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let delay = Duration::from_secs(2);
    let api = start(&pki, "m2", delay).await;
    let addr = api.addr();

    // An idle keep-alive connection and a WATCH, both open before the shutdown.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(pki.client_config())
        .connect(
            rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
            tcp,
        )
        .await
        .unwrap();
    let (mut idle, idle_conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let idle_conn = tokio::spawn(idle_conn);
    let req = hyper::Request::get("/whoami")
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = idle.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    let mut watch_body = watch(&api, &pki).await.into_body();
    read_lines(&mut watch_body, 1).await.unwrap();

    let shutdown = {
        let api = api.clone();
        tokio::spawn(async move { api.graceful_shutdown().await })
    };

    // 1. readyz fails at once; everything else still serves, new connections included.
    assert!(
        support::wait_until(DEADLINE, || async {
            get(&api, &pki, "/readyz").await == Ok((500, READYZ_FAILED_BODY.into()))
        })
        .await
    );
    assert!(api.is_shutting_down());
    assert!(
        !shutdown.is_finished(),
        "the shutdown delay has not passed yet"
    );
    assert_eq!(get(&api, &pki, "/whoami").await, Ok((200, "m2".into())));
    assert_eq!(get(&api, &pki, "/livez").await, Ok((200, "ok".into())));
    assert!(!connect_refused(addr).await);
    assert!(
        !shutdown.is_finished(),
        "the checks above ran within the delay"
    );

    // 2./3. After the delay: listener closed, idle connection closed, watch ended cleanly.
    tokio::time::timeout(delay + DEADLINE, shutdown)
        .await
        .expect("graceful shutdown returns")
        .unwrap();
    assert!(connect_refused(addr).await);
    let ended = tokio::time::timeout(DEADLINE, async {
        loop {
            match watch_body.frame().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("watch ends");
    assert_eq!(
        ended,
        Ok(()),
        "the watch stream ends cleanly, not with a reset"
    );
    tokio::time::timeout(DEADLINE, idle_conn)
        .await
        .expect("idle keep-alive connection closed by the server")
        .unwrap()
        .unwrap();
    assert_eq!(api.open_connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mode_resets_new_and_existing_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = start(&pki, "m3", Duration::ZERO).await;
    let mut body = watch(&api, &pki).await.into_body();
    read_lines(&mut body, 1).await.unwrap();

    api.set_mode(Mode::Reset);
    // The existing WATCH is reset.
    let res = tokio::time::timeout(DEADLINE, async {
        loop {
            match body.frame().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("watch stops");
    assert!(res.is_err(), "stream must break, got a clean end");

    // A new connection is accepted, then reset: the RST may already be there when the
    // connect completes, or arrive on the first read.
    let reset = tokio::time::timeout(DEADLINE, async {
        let mut tcp = TcpStream::connect(api.addr()).await?;
        let mut buf = [0u8; 16];
        tcp.read(&mut buf).await
    })
    .await
    .expect("reset arrives");
    assert_eq!(
        reset.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset)
    );
    assert!(get(&api, &pki, "/readyz").await.is_err());

    api.set_mode(Mode::Ready);
    assert_eq!(get(&api, &pki, "/readyz").await, Ok((200, "ok".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_mode_freezes_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = start(&pki, "m4", Duration::ZERO).await;
    let mut body = watch(&api, &pki).await.into_body();
    read_lines(&mut body, 1).await.unwrap();

    api.set_mode(Mode::Hang);
    let pending = {
        let (addr, ca) = (api.addr(), pki.ca_cert.clone());
        tokio::spawn(async move { support::https_get(addr, &ca, "/whoami").await })
    };
    // The kernel accepts the connection, TLS never completes.
    assert!(support::wait_until(DEADLINE, || async { api.open_connections() >= 2 }).await);
    // Short timeout: a frozen server answers nothing.
    let short = tokio::time::timeout(
        Duration::from_millis(300),
        support::https_get(api.addr(), &pki.ca_cert, "/readyz"),
    )
    .await;
    assert!(short.is_err(), "a hanging server answered: {short:?}");
    assert!(!pending.is_finished());

    api.set_mode(Mode::Ready);
    assert_eq!(pending.await.unwrap(), Ok((200, "m4".into())));
    // The watch resumes too.
    read_lines(&mut body, 1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_stop_and_drop_close_everything() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = start(&pki, "m5", Duration::from_secs(60)).await;
    let addr = api.addr();
    let mut body = watch(&api, &pki).await.into_body();
    read_lines(&mut body, 2).await.unwrap();

    tokio::time::timeout(DEADLINE, api.stop())
        .await
        .expect("stop returns");
    let res = tokio::time::timeout(DEADLINE, async {
        loop {
            match body.frame().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("stream closed");
    assert!(
        res.is_err(),
        "hard stop must break the stream, not end it cleanly"
    );
    assert!(connect_refused(addr).await);
    assert_eq!(api.open_connections(), 0);

    // Dropping the last handle is a hard stop as well.
    let api2 = start(&pki, "m6", Duration::ZERO).await;
    let addr2 = api2.addr();
    assert_eq!(
        support::https_get(addr2, &pki.ca_cert, "/whoami").await,
        Ok((200, "m6".into()))
    );
    drop(api2);
    assert!(support::wait_until(DEADLINE, || connect_refused(addr2)).await);
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn netns_topology_connects_and_cleans_up() {
    if !support::require_root("netns_topology_connects_and_cleans_up") {
        return;
    }
    for bin in ["ip", "ping", "tcpdump", "tc"] {
        if support::require_bin("netns_topology_connects_and_cleans_up", bin).is_none() {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let topo = support::netns::Topology::new(2).expect("topology");
    let namespaces = topo.namespaces().to_vec();
    assert_eq!(namespaces.len(), 4);
    let listed = netns_list();
    for ns in &namespaces {
        assert!(listed.contains(ns.as_str()), "{ns} missing in {listed}");
    }
    let client = topo.client();
    let m0 = topo.master(0);
    assert_eq!(m0.ipv4.to_string(), "198.18.0.10");
    assert_eq!(m0.ipv6.to_string(), "2001:db8::10");
    assert_eq!(client.ipv6.to_string(), "2001:db8::100");

    let cap_path = dir.path().join("icmp.pcap");
    let mut cap = topo
        .capture(client, "icmp or icmp6", &cap_path)
        .expect("tcpdump");
    assert!(client.ping(IpAddr::V4(m0.ipv4)), "IPv4 ping to master 0");
    assert!(client.ping(IpAddr::V6(m0.ipv6)), "IPv6 ping to master 0");
    assert!(client.ping(IpAddr::V4(topo.master(1).ipv4)));
    let text = cap.stop_and_read().expect("read capture");
    assert!(
        text.contains("ICMP echo request"),
        "capture: {text}\n{}",
        cap.log()
    );
    assert!(text.contains("ICMP6, echo request"), "capture: {text}");

    assert_eq!(topo.holder_of(IpAddr::V4(topo.master(1).ipv4)), Some(1));
    assert_eq!(topo.holder_of(IpAddr::V6(m0.ipv6)), Some(0));
    assert_eq!(topo.holder_of("198.18.0.99".parse().unwrap()), None);

    // Partition master 0, then heal.
    topo.cut_link(0).unwrap();
    assert!(!client.ping(IpAddr::V4(m0.ipv4)), "ping crossed a cut link");
    topo.heal_link(0).unwrap();
    assert!(support::wait_until_blocking(DEADLINE, || client.ping(IpAddr::V4(m0.ipv4))));

    // Impairments: full loss works everywhere (netem, or the nftables fallback).
    if !support::netns::netem_supported()
        && support::require_bin("netns_topology_connects_and_cleans_up", "nft").is_none()
    {
        return;
    }
    topo.netem(0, "loss 100%").unwrap();
    assert!(
        !client.ping(IpAddr::V4(m0.ipv4)),
        "ping crossed a 100% loss link"
    );
    assert!(
        client.ping(IpAddr::V4(topo.master(1).ipv4)),
        "master 1 unaffected"
    );
    topo.netem_clear(0).unwrap();
    assert!(support::wait_until_blocking(DEADLINE, || client.ping(IpAddr::V4(m0.ipv4))));
    if support::netns::netem_supported() {
        topo.netem(0, "delay 20ms").unwrap();
        let out = m0
            .exec(&["ping", "-n", "-c1", "-W2", &client.ipv4.to_string()])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rtt: f64 = text
            .split("time=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no rtt in {text}"));
        assert!(rtt >= 40.0, "netem delay both ways: rtt {rtt} ms");
        topo.netem_clear(0).unwrap();
    } else {
        let err = topo.netem(0, "delay 20ms").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{err}");
        eprintln!("note: kernel without sch_netem, delay not testable: {err}");
    }

    // A process in a namespace: logged, listed in the namespace, killed on drop.
    let log = dir.path().join("sleep.log");
    let proc = m0
        .spawn("sh", ["-c", "echo started; exec sleep 600"], &log)
        .unwrap();
    assert!(proc.wait_for_log("started", DEADLINE), "{}", proc.log());
    let pids = Command::new("ip")
        .args(["netns", "pids", &m0.ns])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .any(|p| p == proc.pid().to_string()),
        "the pid is the program itself, inside the namespace"
    );
    // Left running on purpose: the topology's Drop must kill it.
    let orphan_pid = proc.pid();
    std::mem::forget(proc);
    let keep = m0
        .spawn("sleep", ["600"], &dir.path().join("sleep2.log"))
        .unwrap();

    drop(keep);
    drop(topo);
    let listed = netns_list();
    for ns in &namespaces {
        assert!(
            !listed.contains(ns.as_str()),
            "{ns} still present: {listed}"
        );
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{orphan_pid}")).exists(),
        "process {orphan_pid} survived the topology"
    );
}

#[test]
fn etcd_with_client_cert_auth() {
    if support::require_bin("etcd_with_client_cert_auth", "etcd").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &["127.0.0.1", "localhost"]).unwrap();
    let etcd = support::etcd::Etcd::start(&pki, dir.path()).expect("etcd starts");
    assert_eq!(
        etcd.health_with(pki.client_config_mtls()),
        Ok(true),
        "{}",
        etcd.log()
    );
    let wrong = etcd.health_with(pki.client_config_wrong_mtls());
    assert!(wrong.is_err(), "wrong client cert accepted: {wrong:?}");
    let none = etcd.health_with(pki.client_config());
    assert!(none.is_err(), "no client cert accepted: {none:?}");
}

/// The latest run of kubectl that printed something, and the backend it named.
fn last_event(client: &support::kubectl::WatchClient) -> Option<(u64, String)> {
    let event = client.events().pop()?;
    Some((event.run, event.backend()?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_names_the_backend_and_restarts_when_cut() {
    const TEST: &str = "kubectl_watch_names_the_backend_and_restarts_when_cut";
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let api = start(&pki, "k0", Duration::ZERO).await;
    let addr = api.addr();
    let Some(kubectl) = support::kubectl::Kubectl::new(TEST, &api.url(), &pki) else {
        return;
    };
    let client = kubectl.watch().expect("start kubectl");

    // A real kubectl 1.20 lists, watches, and prints every event: `pod/k0-SEQ`.
    assert!(
        support::wait_until(DEADLINE, || async { client.event_count() >= 3 }).await,
        "no events: {}",
        client.log()
    );
    let events = client.events();
    for (seq, e) in events.iter().enumerate() {
        assert_eq!(e.line, format!("pod/k0-{seq}"), "{}", client.log());
        assert_eq!((e.run, e.backend()), (0, Some("k0")));
    }
    assert_eq!(client.last_backend().as_deref(), Some("k0"));
    assert_eq!(client.restarts(), 0, "{}", client.log());
    // Discovery, list and watch went over one connection, which the watch still holds.
    assert_eq!(api.connections_accepted(), 1);
    assert_eq!(api.open_connections(), 1);

    // Reset: the watch breaks, kubectl exits, the client starts it again (and again, while
    // every connection is reset), then it watches again once the server serves.
    api.set_mode(Mode::Reset);
    assert!(
        support::wait_until(DEADLINE, || async { client.restarts() >= 1 }).await,
        "{}",
        client.log()
    );
    api.set_mode(Mode::Ready);
    assert!(
        support::wait_until(DEADLINE, || async {
            last_event(&client).is_some_and(|(run, b)| run >= 1 && b == "k0")
        })
        .await,
        "{}",
        client.log()
    );

    // A hard stop, and another server on the same address: the client follows.
    let restarts = client.restarts();
    api.stop().await;
    assert!(
        support::wait_until(DEADLINE, || async { client.restarts() > restarts }).await,
        "{}",
        client.log()
    );
    let mut opts = ApiserverOptions::new("k1", pki.server_config());
    opts.listen = addr;
    opts.watch_interval = Duration::from_millis(20);
    let api = ImitationApiserver::start(opts)
        .await
        .expect("restart on the same address");
    assert!(
        support::wait_until(DEADLINE, || async {
            client.last_backend().as_deref() == Some("k1")
        })
        .await,
        "{}",
        client.log()
    );

    // Dropping a client kills its kubectl and reaps it.
    let other = kubectl.watch().expect("start a second kubectl");
    assert!(
        support::wait_until(DEADLINE, || async { other.event_count() >= 1 }).await,
        "{}",
        other.log()
    );
    let pid = other.pid().expect("kubectl runs");
    drop(other);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "kubectl {pid} survived its client"
    );

    // A graceful shutdown ends the watch cleanly: kubectl exits all the same.
    let restarts = client.restarts();
    api.graceful_shutdown().await;
    assert!(
        support::wait_until(DEADLINE, || async { client.restarts() > restarts }).await,
        "{}",
        client.log()
    );

    // The kubeconfig's client certificate satisfies an mTLS server too; `get --raw`.
    let mtls = ImitationApiserver::start(ApiserverOptions::new("k2", pki.server_config_mtls()))
        .await
        .unwrap();
    let kubectl = support::kubectl::Kubectl::new(TEST, &mtls.url(), &pki).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        kubectl.command().args(["get", "--raw", "/whoami"]).output()
    })
    .await
    .unwrap()
    .expect("run kubectl");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "k2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_kubectl_watches_at_once() {
    const TEST: &str = "thirty_kubectl_watches_at_once";
    // Thirty kubectl starts take a few seconds of CPU: more time on a busy machine.
    const DEADLINE: Duration = Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir);
    let mut apis = Vec::new();
    let mut kubectls = Vec::new();
    for name in ["w0", "w1", "w2"] {
        let api = start(&pki, name, Duration::ZERO).await;
        let Some(kubectl) = support::kubectl::Kubectl::new(TEST, &api.url(), &pki) else {
            return;
        };
        apis.push(api);
        kubectls.push(kubectl);
    }
    let clients: Vec<_> = (0..30)
        .map(|i| kubectls[i % 3].watch().expect("start kubectl"))
        .collect();
    let on_own_backend = |clients: &[support::kubectl::WatchClient]| {
        clients.iter().enumerate().all(|(i, c)| {
            c.last_backend().as_deref() == Some(apis[i % 3].name()) && c.event_count() >= 2
        })
    };
    assert!(
        support::wait_until(DEADLINE, || async { on_own_backend(&clients) }).await,
        "{}",
        clients.iter().map(|c| c.log()).collect::<String>()
    );
    // One connection per kubectl, held by its watch: none left idle beside it.
    for api in &apis {
        assert_eq!(api.connections_accepted(), 10, "{}", api.name());
        assert_eq!(api.open_connections(), 10, "{}", api.name());
    }
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.restarts(), 0, "client {i}: {}", c.log());
    }

    // Reset w1: its ten clients start kubectl again, the others carry on.
    apis[1].set_mode(Mode::Reset);
    assert!(
        support::wait_until(DEADLINE, || async {
            clients.iter().skip(1).step_by(3).all(|c| c.restarts() >= 1)
        })
        .await,
        "{}",
        clients[1].log()
    );
    apis[1].set_mode(Mode::Ready);
    let runs = |c: &support::kubectl::WatchClient| c.events().last().map(|e| e.run);
    assert!(
        support::wait_until(DEADLINE, || async {
            on_own_backend(&clients)
                && clients
                    .iter()
                    .skip(1)
                    .step_by(3)
                    .all(|c| runs(c) >= Some(1))
        })
        .await,
        "{}",
        clients.iter().map(|c| c.log()).collect::<String>()
    );
    for (i, c) in clients.iter().enumerate() {
        if i % 3 != 1 {
            assert_eq!(c.restarts(), 0, "client {i}: {}", c.log());
        }
    }
}
