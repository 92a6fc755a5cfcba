//! DNS failover end to end: three imitation apiservers, three apivip nodes (the same
//! `Supervisor` that `apivip run` runs, in this process) publishing one name in a real
//! BIND; `dig` at BIND sees the record set follow the masters' readiness.
//!
//! Needs `named` and `dig`; skips with a printed reason without them (fails with
//! `APIVIP_REQUIRE_NETNS=1`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use apivip::admin::client;
use apivip::admin::status::StatusDoc;
use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver, Mode};
use apivip::testkit::certs::TestPki;

use support::dns::{Nodes, ALL, DEADLINE, SECRET_B64};

/// All ready: the three addresses; one not ready: it leaves the name and comes back;
/// a whole master killed (its apiserver and its apivip): it leaves the name. The
/// steady state sends no write, and the record apivip did not write is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_follows_the_masters_readiness_in_bind() {
    let Some(mut n) = Nodes::start("the_name_follows_the_masters_readiness_in_bind").await else {
        return;
    };
    let took = n.wait_dig(&ALL, "start").await;
    println!("all three published {took:?} after start");
    // Steady, once every node's vote is in: resyncs read, nobody writes.
    let votes = support::wait_until(DEADLINE, || async {
        n.bind.dig("_apivip.api.cluster.example.", "TXT").len() == 3
    })
    .await;
    assert!(
        votes,
        "{:?}",
        n.bind.dig("_apivip.api.cluster.example.", "TXT")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = n.writes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(n.writes(), before, "writes in a steady state");
    // m2's apiserver turns not ready.
    n.masters[1].set_mode(Mode::NotReady);
    let took = n.wait_dig(&[ALL[0], ALL[2]], "m2 not ready").await;
    println!("m2 not ready: gone from dig after {took:?}");
    n.masters[1].set_mode(Mode::Ready);
    let took = n.wait_dig(&ALL, "m2 ready again").await;
    println!("m2 ready again: back in dig after {took:?}");
    // m3 killed: its apivip stops and its apiserver goes away.
    if let Some(s) = n.sups[2].take() {
        s.shutdown(Duration::ZERO).await;
    }
    n.masters[2].graceful_shutdown().await;
    let took = n.wait_dig(&[ALL[0], ALL[1]], "m3 killed").await;
    println!("m3 killed: gone from dig after {took:?}");
    assert_eq!(n.bind.dig("other.cluster.example.", "A"), ["198.18.0.99"]);
    // What node 1 shows: status, `apivip status` and metrics. Another node may have
    // written the change: node 1 shows it from its next read (`resync`, 2 s here).
    let admin = n.sups[0].as_ref().unwrap().admin_addrs()[0];
    let status = || async {
        let (code, body) = client::request(admin, http::Method::GET, "/status", None, DEADLINE)
            .await
            .unwrap();
        assert_eq!(code, 200);
        let doc: StatusDoc = serde_json::from_str(&body).unwrap();
        (body, doc)
    };
    let caught_up = support::wait_until(DEADLINE, || async {
        status()
            .await
            .1
            .dns
            .is_some_and(|d| d.published == ["m1", "m2"])
    })
    .await;
    assert!(
        caught_up,
        "node 1 never read the change: {}",
        status().await.0
    );
    let (body, doc) = status().await;
    let d = doc.dns.as_ref().expect("a dns part");
    assert_eq!(d.name, "api.cluster.example.");
    assert_eq!(d.node, "m1");
    assert_eq!(d.published, ["m1", "m2"]);
    assert_eq!(d.published_addresses, [ALL[0], ALL[1]]);
    assert_eq!(d.view.get("m3").map(String::as_str), Some("down"));
    assert_eq!(d.last_error, None);
    assert!(
        d.requests.get("read/ok").is_some_and(|n| *n > 0),
        "{:?}",
        d.requests
    );
    let text = client::render(&doc);
    assert!(
        text.contains("dns api.cluster.example. (zone cluster.example."),
        "{text}"
    );
    assert!(
        text.contains("published m1 m2 [198.18.0.11 198.18.0.12]"),
        "{text}"
    );
    let (_, metrics) = client::request(admin, http::Method::GET, "/metrics", None, DEADLINE)
        .await
        .unwrap();
    for want in [
        "apivip_dns_requests_total{kind=\"read\",result=\"ok\"}",
        "apivip_dns_published_masters{name=\"api.cluster.example.\"} 2",
        "apivip_dns_last_write_ok 1",
        "apivip_dns_votes{state=\"live\"} 3",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }
    // The secret never shows.
    assert!(!body.contains(SECRET_B64) && !metrics.contains(SECRET_B64));
    drop(n.dir);
}

/// A partition between m1 and m2 (m1's checks of m2 fail, and m2's of m1; m3 sees both):
/// each of the two votes the other down, the majority still votes both up, so the name
/// keeps all three addresses and no record is written, during the partition and after
/// it heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_two_masters_does_not_make_the_name_flap() {
    let Some(n) = Nodes::start_with(
        "a_partition_between_two_masters_does_not_make_the_name_flap",
        true,
        support::dns::Checks::FAST,
    )
    .await
    else {
        return;
    };
    n.wait_dig(&ALL, "start").await;
    n.wait_votes(3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changes = n.record_changes();
    let writes = n.writes();
    n.links[0][1].set_cut(true);
    n.links[1][0].set_cut(true);
    let split = support::wait_until(DEADLINE, || async {
        n.view(0, 1) == "down" && n.view(1, 0) == "down"
    })
    .await;
    assert!(
        split,
        "the partition was not seen: {} {}",
        n.view(0, 1),
        n.view(1, 0)
    );
    assert_eq!((n.view(2, 0).as_str(), n.view(2, 1).as_str()), ("up", "up"));
    // 8 s of partition (more than 20 check intervals and several resyncs).
    for _ in 0..40 {
        assert_eq!(n.dig(), ALL, "the name changed during the partition");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = n.writes() - writes;
    n.links[0][1].set_cut(false);
    n.links[1][0].set_cut(false);
    let healed = support::wait_until(DEADLINE, || async {
        n.view(0, 1) == "up" && n.view(1, 0) == "up"
    })
    .await;
    assert!(healed);
    for _ in 0..15 {
        assert_eq!(n.dig(), ALL, "the name changed after the partition healed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(n.record_changes(), changes, "records written");
    println!(
        "partition: 0 record changes; {during} writes during 8 s of partition (the two votes that changed), {} in all",
        n.writes() - writes
    );
    // Only the two partitioned nodes rewrote their votes (once each on the split, once
    // on the heal, plus conflicts retried).
    assert!(during <= 6, "{during} writes during the partition");
}

/// BIND stops while a master turns not ready; every node keeps its last state, counts
/// the failures and retries; BIND restarts with its journal and the nodes catch up on
/// their own. Then BIND loses everything (a fresh zone file, no journal): the nodes
/// publish the name and their votes again, and the record they never wrote is still
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_stopped_or_reset_mid_run_is_caught_up_without_a_restart() {
    let Some(mut n) =
        Nodes::start("bind_stopped_or_reset_mid_run_is_caught_up_without_a_restart").await
    else {
        return;
    };
    n.wait_dig(&ALL, "start").await;
    n.wait_votes(3).await;
    n.bind.stop();
    n.masters[1].set_mode(Mode::NotReady);
    // Every node notices the server is gone (its last exchange failed) and says why.
    n.wait_errors(true, "every node reports the server gone")
        .await;
    let e = n.last_error(0).unwrap();
    assert!(
        e.starts_with("timeout") || e.starts_with("unreachable"),
        "{e}"
    );
    let failed: u64 = n.sups[0]
        .as_ref()
        .unwrap()
        .dns()
        .unwrap()
        .counters
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|((_, r), _)| r == "timeout" || r == "unreachable")
        .map(|(_, n)| *n)
        .sum();
    assert!(failed >= 1);
    n.bind.restart().unwrap();
    let took = n
        .wait_dig(&[ALL[0], ALL[2]], "after BIND restarted with its journal")
        .await;
    println!("BIND back with its journal: m2 gone from dig {took:?} later");
    n.masters[1].set_mode(Mode::Ready);
    n.wait_dig(&ALL, "m2 ready again").await;
    n.bind.restart_fresh().unwrap();
    let took = n.wait_dig(&ALL, "after BIND lost every update").await;
    println!("BIND reset to its zone file: the name was back {took:?} later");
    n.wait_votes(3).await;
    assert_eq!(n.bind.dig("other.cluster.example.", "A"), ["198.18.0.99"]);
    n.wait_errors(false, "no node keeps an error").await;
}

/// `apivip run` with a key BIND does not know (BADKEY), with the right key name and a
/// wrong secret (BADSIG), and with the right key but a clock an hour ahead (BADTIME,
/// through the test-only fault injection): each is refused, logged with its cause and
/// counted by result, and the two bad keys never write anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_clock_is_refused_logged_and_counted() {
    use support::daemon::{ChildGuard, Lines};
    let test = "a_wrong_key_or_clock_is_refused_logged_and_counted";
    if support::require_bin(test, "named").is_none() || support::require_bin(test, "dig").is_none()
    {
        return;
    }
    let bind = support::dns::start_bind(Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let mut o = ApiserverOptions::new("m1".to_owned(), pki.server_config());
    o.listen = "127.0.0.1:0".parse().unwrap();
    let master = ImitationApiserver::start(o).await.unwrap();
    let start = |label: &str, key: &str, secret: &str, fault: bool| {
        let secret_file = dir.path().join(format!("{label}.key"));
        std::fs::write(&secret_file, secret).unwrap();
        std::fs::set_permissions(
            &secret_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let path = dir.path().join(format!("{label}.yaml"));
        std::fs::write(
            &path,
            format!(
                "backends: [{{name: m1, address: '{m}'}}]\nadmin: {{listen: '127.0.0.1:0'}}\nlog: {{format: json}}\n\
                 apiserver:\n  listen: []\n  check: {{ca: '{ca}', interval: 300ms, timeout: 300ms, rise: 1, fall: 2}}\n\
                 dns:\n  servers: ['{bind}']\n  zone: cluster.example.\n  name: api.cluster.example.\n  node: m1\n  timeout: 500ms\n  resync: 1s\n  publish: {{m1: [198.18.0.11]}}\n  tsig: {{key: {key}, secret_file: '{f}'}}\n",
                m = master.addr(),
                ca = pki.ca_cert.display(),
                bind = bind.addr(),
                f = secret_file.display(),
            ),
        )
        .unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_apivip"));
        cmd.args(["run", "-c"])
            .arg(&path)
            .stderr(std::process::Stdio::piped());
        if fault {
            cmd.env(apivip::admin::FAULT_INJECTION_ENV, "1");
        }
        let mut child = ChildGuard(cmd.spawn().unwrap());
        let mut log = Lines::read(child.0.stderr.take().unwrap());
        let admin = log.logged_addr(DEADLINE, "admin endpoint listening");
        (child, log, admin)
    };
    // A failure line of this kind, logged as such.
    let failed = |log: &mut Lines, kind: &str| {
        log.wait_for(DEADLINE, &format!("a {kind} failure in the log"), |line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v["fields"]["kind"] == kind)
                .then(|| v["fields"]["message"].as_str().unwrap_or("").to_owned())
        })
    };
    let metric = |admin: SocketAddr, kind: &'static str| async move {
        let (_, m) = client::request(admin, http::Method::GET, "/metrics", None, DEADLINE)
            .await
            .unwrap();
        let want = format!("apivip_dns_requests_total{{kind=\"read\",result=\"{kind}\"}}");
        m.lines()
            .find(|l| l.starts_with(&want))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };

    let (_k, mut log, admin) = start("badkey", "unknown-key.", SECRET_B64, false);
    let msg = failed(&mut log, "badkey");
    println!("badkey: {msg}");
    assert!(metric(admin, "badkey").await >= 1.0);
    let (_s, mut log, admin) = start(
        "badsig",
        "apivip-key.",
        "b3RoZXItc2VjcmV0LW9mLXRoaXJ0eS10d28tYnl0ZXMh",
        false,
    );
    let msg = failed(&mut log, "badsig");
    println!("badsig: {msg}");
    assert!(metric(admin, "badsig").await >= 1.0);
    assert!(
        bind.dig("api.cluster.example.", "A").is_empty()
            && bind.dig("_apivip.api.cluster.example.", "TXT").is_empty(),
        "a refused key wrote something"
    );
    assert!(
        !log.seen.iter().any(|l| l.contains("b3RoZXItc2VjcmV0")),
        "the secret was logged"
    );

    let (_t, mut log, admin) = start("badtime", "apivip-key.", SECRET_B64, true);
    let ok = support::wait_until(DEADLINE, || async {
        bind.dig("api.cluster.example.", "A") == ["198.18.0.11"]
    })
    .await;
    assert!(
        ok,
        "the right key never published:\n{}",
        log.seen.join("\n")
    );
    let (code, body) = client::request(
        admin,
        http::Method::POST,
        "/debug/dns-clock",
        Some(r#"{"seconds": 3600}"#.into()),
        DEADLINE,
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let msg = failed(&mut log, "badtime");
    println!("badtime: {msg}");
    assert!(msg.contains("clock"), "{msg}");
    assert!(metric(admin, "badtime").await >= 1.0);
    let last_error = || async {
        let (_, status) = client::request(admin, http::Method::GET, "/status", None, DEADLINE)
            .await
            .unwrap();
        let doc: StatusDoc = serde_json::from_str(&status).unwrap();
        doc.dns.and_then(|d| d.last_error).unwrap_or_default()
    };
    let shown = support::wait_until(DEADLINE, || async {
        last_error().await.contains("badtime")
    })
    .await;
    assert!(shown, "{}", last_error().await);
    // The last good state is kept.
    assert_eq!(bind.dig("api.cluster.example.", "A"), ["198.18.0.11"]);
}
