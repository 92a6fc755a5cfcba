//! Reload with traffic running: imitation apiservers behind a real apivip, a client
//! making a fresh connection through it every few milliseconds, and the config file
//! changed and reloaded case by case. Where nothing that serves the client changed, not
//! one connect may fail.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apivip::config::FrontendKind;
use apivip::health::Status;
use apivip::testkit::apiserver::Mode;
use support::cluster::{Cluster, Opts, Stream, DEADLINE};
use support::{https_get_with, metric_sample, wait_until};
use tokio_util::sync::CancellationToken;

const CHECK: &str = "    interval: 200ms\n    timeout: 200ms\n    rise: 1\n    fall: 2\n";

/// A client connecting again and again; counts answers by master and failures.
struct Traffic {
    seen: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// Connects to whatever `endpoint` holds (it can be changed by a reload).
    fn start(c: &Cluster, endpoint: Arc<Mutex<SocketAddr>>) -> Traffic {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let client = c.client.clone();
        let task = tokio::spawn({
            let (seen, failures, stop) = (seen.clone(), failures.clone(), stop.clone());
            async move {
                while !stop.is_cancelled() {
                    let addr = *endpoint.lock().unwrap();
                    match https_get_with(addr, client.clone(), "/whoami").await {
                        Ok((200, who)) => *seen.lock().unwrap().entry(who).or_default() += 1,
                        Ok((code, body)) => failures
                            .lock()
                            .unwrap()
                            .push(format!("HTTP {code}: {body}")),
                        Err(e) => failures.lock().unwrap().push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Traffic {
            seen,
            failures,
            stop,
            task,
        }
    }

    fn seen(&self, name: &str) -> u64 {
        self.seen.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.seen.lock().unwrap().values().sum()
    }

    /// Waits until `n` more requests were answered (the client really ran).
    async fn wait_more(&self, n: u64) {
        let start = self.total();
        assert!(
            wait_until(DEADLINE, || async { self.total() >= start + n }).await,
            "the client made no progress: {:?}",
            self.failures
                .lock()
                .unwrap()
                .iter()
                .take(5)
                .collect::<Vec<_>>()
        );
    }

    async fn finish(self) -> (BTreeMap<String, u64>, Vec<String>) {
        self.stop.cancel();
        self.task.await.unwrap();
        let seen = self.seen.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (seen, failures)
    }
}

async fn reload_ok(c: &mut Cluster) -> Vec<String> {
    let r = c.sup_mut().reload().await;
    assert!(r.ok, "reload refused: {:?}", r.lines);
    r.lines
}

/// The daemon's latest events (up to 100) whose text `pick` selects: the status
/// transitions a test says must not have happened.
fn history_where(c: &Cluster, pick: impl Fn(&str) -> bool) -> Vec<apivip::events::Event> {
    c.sup()
        .daemon()
        .history
        .latest(100)
        .into_iter()
        .filter(|e| pick(&e.what))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_master_gets_new_connections_once_up_and_no_connect_fails() {
    let mut c = Cluster::start(Opts {
        masters: 3,
        configured: Some(2),
        check: CHECK,
        ..Opts::default()
    })
    .await;
    let listen = "127.0.0.1:0";
    let traffic = Traffic::start(&c, Arc::new(Mutex::new(c.endpoint)));
    traffic.wait_more(20).await;
    assert_eq!(
        traffic.seen("master-2"),
        0,
        "master-2 is not configured yet"
    );
    c.write_config(&[0, 1, 2], listen, "", CHECK);
    let lines = reload_ok(&mut c).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backend master-2") && l.contains("added")),
        "{lines:?}"
    );
    c.wait_status(2, Status::Up).await;
    assert!(
        wait_until(DEADLINE, || async { traffic.seen("master-2") > 0 }).await,
        "master-2 never got a connection"
    );
    assert_eq!(
        c.sup().listen_addrs(FrontendKind::Apiserver),
        vec![c.endpoint]
    );
    let (seen, failures) = traffic.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(seen["master-0"] > 0 && seen["master-1"] > 0, "{seen:?}");
    // The kept masters kept their status through the reload: no transition for them.
    let flaps = history_where(&c, |what| {
        (what.contains("master-0") || what.contains("master-1")) && !what.contains("unknown -> up")
    });
    assert!(flaps.is_empty(), "kept masters changed status: {flaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_master_gets_no_new_connections_and_its_streams_close_after_the_grace() {
    let mut c = Cluster::start(Opts {
        masters: 3,
        apiserver: "  not_ready_grace: 1s\n",
        check: CHECK,
        ..Opts::default()
    })
    .await;
    // Least-connections puts one stream on each master.
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(Stream::open(&c).await);
    }
    let mut names: Vec<_> = streams.iter().map(|s| s.backend.clone()).collect();
    names.sort();
    assert_eq!(names, ["master-0", "master-1", "master-2"]);
    let listen = "127.0.0.1:0";
    let traffic = Traffic::start(&c, Arc::new(Mutex::new(c.endpoint)));
    traffic.wait_more(20).await;
    c.write_config(&[1, 2], listen, "  not_ready_grace: 1s\n", CHECK);
    let lines = reload_ok(&mut c).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("backend master-0") && l.contains("removed")),
        "{lines:?}"
    );
    let before = traffic.seen("master-0");
    traffic.wait_more(50).await;
    // At most the requests in flight during the reload reached master-0.
    assert!(
        traffic.seen("master-0") <= before + 1,
        "master-0 still gets new connections"
    );
    let removed = streams
        .iter()
        .position(|s| s.backend == "master-0")
        .unwrap();
    let mut gone = streams.remove(removed);
    // Within the grace it still flows (closing at once would cut requests in flight)...
    let reloaded = std::time::Instant::now();
    assert!(
        gone.next().await.is_some(),
        "closed at once, not after the grace"
    );
    assert!(reloaded.elapsed() < Duration::from_secs(1));
    // ...then it ends; the others keep flowing.
    let ended =
        tokio::time::timeout(DEADLINE, async { while gone.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the removed master's stream never closed");
    for s in &mut streams {
        assert!(s.next().await.is_some(), "{}'s stream ended", s.backend);
    }
    let (_, failures) = traffic.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        c.masters[0].open_connections() == 0 || {
            wait_until(DEADLINE, || async { c.masters[0].open_connections() == 0 }).await
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_check_applies_from_the_next_probe_without_a_flap() {
    let mut c = Cluster::start(Opts {
        masters: 2,
        check: CHECK,
        ..Opts::default()
    })
    .await;
    let listen = "127.0.0.1:0";
    let traffic = Traffic::start(&c, Arc::new(Mutex::new(c.endpoint)));
    traffic.wait_more(20).await;
    // https /readyz -> a TCP connect: a not-ready master then stays up.
    c.write_config(
        &[0, 1],
        listen,
        "",
        "    kind: tcp\n    interval: 200ms\n    timeout: 200ms\n    rise: 1\n    fall: 2\n",
    );
    // `ca` only applies to https checks: the file is refused and nothing changes.
    let r = c.sup_mut().reload().await;
    assert!(!r.ok);
    assert!(
        r.lines.iter().any(|l| l.contains("apiserver.check.ca")),
        "{:?}",
        r.lines
    );
    let yaml = std::fs::read_to_string(&c.config_path)
        .unwrap()
        .replace("    ca: ca.crt\n", "");
    std::fs::write(&c.config_path, yaml).unwrap();
    let lines = reload_ok(&mut c).await;
    assert!(
        lines.iter().any(|l| l.contains("apiserver.check: changed")),
        "{lines:?}"
    );
    c.masters[0].set_mode(Mode::NotReady);
    // More probes of the new check than `fall` later (the https check would have
    // marked it down by then), master-0 is still up and serving.
    let probes = || {
        let run = c.sup().daemon().running();
        let id = run.config.frontends[0].backends[0].id;
        run.check_stats.get(id).map_or(0, |s| s.durations().count)
    };
    let start = probes();
    assert!(
        wait_until(DEADLINE, || async { probes() >= start + 4 }).await,
        "the new check does not probe"
    );
    let served = traffic.seen("master-0");
    assert!(
        wait_until(DEADLINE, || async {
            traffic.seen("master-0") > served + 10
        })
        .await,
        "a not-ready master stopped getting connections under a tcp check"
    );
    assert_eq!(c.status(0), Status::Up);
    let (_, failures) = traffic.finish().await;
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let flaps = history_where(&c, |what| {
        what.contains("-> down") || what.contains("-> unknown")
    });
    assert!(flaps.is_empty(), "{flaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listen_address_binds_the_new_one_first_and_connections_on_the_old_stay() {
    let mut c = Cluster::start(Opts {
        masters: 2,
        check: CHECK,
        ..Opts::default()
    })
    .await;
    let old = c.endpoint;
    let mut stream = Stream::open(&c).await;
    let endpoint = Arc::new(Mutex::new(old));
    let traffic = Traffic::start(&c, endpoint.clone());
    traffic.wait_more(20).await;
    // Port 0 on another loopback address: a new listener.
    c.write_config(&[0, 1], "127.0.0.2:0", "", CHECK);
    let lines = reload_ok(&mut c).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no longer listening on 127.0.0.1:0")),
        "{lines:?}"
    );
    let new = c.sup().listen_addrs(FrontendKind::Apiserver);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].ip().to_string(), "127.0.0.2");
    // The client follows the new address (as clients follow a changed endpoint).
    *endpoint.lock().unwrap() = new[0];
    traffic.wait_more(20).await;
    // The stream accepted on the old listener keeps flowing; the old address is closed.
    assert!(stream.next().await.is_some());
    assert!(tokio::net::TcpStream::connect(old).await.is_err());
    let (_, failures) = traffic.finish().await;
    // Requests already sent to the old address when it closed may fail; none after.
    assert!(failures.len() <= 1, "failed requests: {failures:?}");
    assert_eq!(
        c.sup().daemon().status().await.frontends[0].listen,
        vec![new[0].to_string()]
    );
}

/// The daemon itself: SIGHUP and `apivip reload` reload the file; a bad file is
/// refused with every error, counted in metrics and shown in status, and the daemon
/// keeps running on the old config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_reload_command_apply_a_good_file_and_refuse_a_bad_one() {
    const BIN: &str = env!("CARGO_BIN_EXE_apivip");
    let dir = tempfile::tempdir().unwrap();
    let pki = apivip::testkit::certs::TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let mut masters = Vec::new();
    for i in 0..2 {
        let mut o = apivip::testkit::apiserver::ApiserverOptions::new(
            format!("master-{i}"),
            pki.server_config(),
        );
        o.listen = "127.0.0.1:0".parse().unwrap();
        masters.push(
            apivip::testkit::apiserver::ImitationApiserver::start(o)
                .await
                .unwrap(),
        );
    }
    // Fixed free ports for the daemon: bind to port 0 and release.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (proxy, admin) = (free(), free());
    let path = dir.path().join("apivip.yaml");
    let yaml = |which: &[usize], interval: &str| {
        let backends: String = which
            .iter()
            .map(|&i| {
                format!(
                    "  - name: {}\n    address: '{}'\n",
                    masters[i].name(),
                    masters[i].addr()
                )
            })
            .collect();
        format!(
            "backends:\n{backends}admin: {{listen: '{admin}'}}\napiserver:\n  listen: '{proxy}'\n  check:\n    ca: ca.crt\n    interval: {interval}\n    timeout: 200ms\n"
        )
    };
    std::fs::write(&path, yaml(&[0], "200ms")).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    // `apivip reload` and `apivip status` against this daemon.
    let client = |command: &'static str| async move {
        tokio::process::Command::new(BIN)
            .args([command, "--admin", &admin.to_string()])
            .output()
            .await
            .unwrap()
    };
    let get = |p: &'static str| async move {
        apivip::admin::client::request(admin, http::Method::GET, p, None, DEADLINE).await
    };
    let backends = || async {
        get("/status")
            .await
            .ok()
            .and_then(|(_, b)| serde_json::from_str::<apivip::admin::status::StatusDoc>(&b).ok())
            .map(|d| d.frontends[0].backends.len())
    };
    assert!(
        wait_until(DEADLINE, || async { backends().await == Some(1) }).await,
        "the daemon did not come up"
    );
    // SIGHUP with master-1 added.
    std::fs::write(&path, yaml(&[0, 1], "200ms")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        wait_until(DEADLINE, || async { backends().await == Some(2) }).await,
        "SIGHUP did not reload"
    );
    // A bad file: refused with the key and value, and nothing changes.
    // `-c` and no `--admin`: the client finds the daemon in the (invalid) file.
    std::fs::write(&path, yaml(&[0], "fast")).unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["reload", "-c"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apiserver.check.interval: \"fast\""),
        "{stderr}"
    );
    assert!(stderr.contains("previous config"), "{stderr}");
    assert_eq!(
        backends().await,
        Some(2),
        "a refused file changed the daemon"
    );
    let (_, metrics) = get("/metrics").await.unwrap();
    let reloads = |result| {
        metric_sample(
            &metrics,
            "apivip_config_reloads_total",
            &[("result", result)],
        )
    };
    assert_eq!(reloads("failure"), Some(1.0));
    assert_eq!(reloads("success"), Some(1.0));
    assert_eq!(
        metric_sample(&metrics, "apivip_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let status = client("status").await;
    let screen = String::from_utf8_lossy(&status.stdout);
    assert!(screen.contains("LAST RELOAD FAILED"), "{screen}");
    assert!(screen.contains("\"fast\""), "{screen}");
    // Fixed again: `apivip reload` applies it and says what changed.
    std::fs::write(&path, yaml(&[0], "300ms")).unwrap();
    let out = client("reload").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("backend master-1"), "{stdout}");
    assert!(stdout.contains("apiserver.check: changed"), "{stdout}");
    assert_eq!(backends().await, Some(1));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the daemon did not stop")
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("reload: refused"), "{stderr}");
    assert!(stderr.contains("reload: applied"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_connection_limit_applies_to_new_connections_and_closes_none() {
    let mut c = Cluster::start(Opts {
        masters: 2,
        apiserver: "  max_connections: 2\n",
        check: CHECK,
        ..Opts::default()
    })
    .await;
    let mut open = vec![Stream::open(&c).await, Stream::open(&c).await];
    assert!(
        c.whoami().await.is_err(),
        "a third connection passed a limit of 2"
    );
    c.write_config(&[0, 1], "127.0.0.1:0", "  max_connections: 3\n", CHECK);
    reload_ok(&mut c).await;
    open.push(Stream::open(&c).await);
    assert!(
        c.whoami().await.is_err(),
        "a fourth connection passed a limit of 3"
    );
    c.write_config(&[0, 1], "127.0.0.1:0", "  max_connections: 1\n", CHECK);
    reload_ok(&mut c).await;
    // Lowered below what is open: nothing is closed, new clients wait for room.
    for s in &mut open {
        assert!(
            s.next().await.is_some(),
            "{}'s stream was closed",
            s.backend
        );
    }
    assert!(c.whoami().await.is_err());
    open.truncate(0);
    assert!(
        wait_until(DEADLINE, || async { c.whoami().await.is_ok() }).await,
        "no connection passed once the streams closed"
    );
    // One at a time now (once the proxy has seen the last client go).
    let deadline = std::time::Instant::now() + DEADLINE;
    let _one = loop {
        match support::https_request(c.endpoint, c.client.clone(), "/watch").await {
            Ok(r) if r.status() == 200 => break r,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!(
                "no stream under a limit of 1: {:?}",
                other.map(|r| r.status())
            ),
        }
    };
    assert!(
        c.whoami().await.is_err(),
        "a second connection passed a limit of 1"
    );
}
