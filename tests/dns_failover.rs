//! DNS failover end to end: three imitation apiservers, three apivip nodes (the same
//! `Supervisor` that `apivip run` runs, in this process) publishing one name in a real
//! BIND; `dig` at BIND sees the record set follow the masters' readiness.
//!
//! Needs `named` and `dig`; skips with a printed reason without them (fails with
//! `APIVIP_REQUIRE_NETNS=1`).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apivip::admin::client;
use apivip::admin::status::StatusDoc;
use apivip::supervisor::Supervisor;
use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver, Mode};
use apivip::testkit::bind::{Bind, BindOptions};
use apivip::testkit::certs::TestPki;

const SECRET_B64: &str = "YXBpdmlwLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzISE=";
const DEADLINE: Duration = Duration::from_secs(20);
const ALL: [&str; 3] = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];

struct Nodes {
    dir: tempfile::TempDir,
    bind: Bind,
    masters: Vec<ImitationApiserver>,
    sups: Vec<Option<Supervisor>>,
}

fn node_yaml(
    dir: &std::path::Path,
    masters: &[ImitationApiserver],
    bind: SocketAddr,
    node: usize,
) -> String {
    let backends: String = masters
        .iter()
        .map(|m| format!("  - name: {}\n    address: '{}'\n", m.name(), m.addr()))
        .collect();
    let publish: String = masters
        .iter()
        .enumerate()
        .map(|(i, m)| format!("    {}: [{}]\n", m.name(), ALL[i]))
        .collect();
    format!(
        "backends:\n{backends}admin: {{listen: '127.0.0.1:0'}}\n\
         apiserver:\n  listen: '127.0.0.1:0'\n  check:\n    ca: ca.crt\n    interval: 300ms\n    timeout: 300ms\n    rise: 1\n    fall: 2\n\
         dns:\n  servers: ['{bind}']\n  zone: cluster.example.\n  name: api.cluster.example.\n  node: {}\n  timeout: 1s\n  resync: 2s\n  publish:\n{publish}\
         \x20 tsig: {{key: apivip-key., secret_file: {}}}\n",
        masters[node].name(),
        dir.join("dns.key").display()
    )
}

impl Nodes {
    async fn start(test: &str) -> Option<Nodes> {
        if support::require_bin(test, "named").is_none()
            || support::require_bin(test, "dig").is_none()
        {
            return None;
        }
        let bind = Bind::start(BindOptions {
            zone: "cluster.example.".into(),
            records: vec!["other IN A 198.18.0.99".into()],
            key_name: "apivip-key.".into(),
            algorithm: "hmac-sha256".into(),
            secret_b64: SECRET_B64.into(),
            grants: vec![
                ("api.cluster.example.".into(), "A AAAA".into()),
                ("_apivip.api.cluster.example.".into(), "TXT".into()),
            ],
            listen: None,
        })
        .expect("named");
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
        let key = dir.path().join("dns.key");
        std::fs::write(&key, SECRET_B64).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut masters = Vec::new();
        for i in 0..3 {
            let mut o = ApiserverOptions::new(format!("m{}", i + 1), pki.server_config());
            o.listen = "127.0.0.1:0".parse().unwrap();
            masters.push(ImitationApiserver::start(o).await.unwrap());
        }
        let mut sups = Vec::new();
        for i in 0..3 {
            let path = dir.path().join(format!("node{i}.yaml"));
            let yaml = node_yaml(dir.path(), &masters, bind.addr(), i);
            std::fs::write(&path, &yaml).unwrap();
            let config = apivip::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            sups.push(Some(Supervisor::start(&config).await.unwrap()));
        }
        Some(Nodes {
            dir,
            bind,
            masters,
            sups,
        })
    }

    fn dig(&self) -> Vec<String> {
        self.bind.dig("api.cluster.example.", "A")
    }

    /// Waits until dig returns `want`; how long that took.
    async fn wait_dig(&self, want: &[&str], what: &str) -> Duration {
        let t0 = Instant::now();
        let ok = support::wait_until(DEADLINE, || async { self.dig() == want }).await;
        assert!(
            ok,
            "{what}: dig never returned {want:?}; it returns {:?}\nvotes: {:?}\nnamed:\n{}",
            self.dig(),
            self.bind.dig("_apivip.api.cluster.example.", "TXT"),
            self.bind.log()
        );
        t0.elapsed()
    }

    /// Writes every node sent so far (all results).
    fn writes(&self) -> u64 {
        self.sups
            .iter()
            .flatten()
            .filter_map(|s| s.dns())
            .map(|d| {
                d.counters
                    .requests
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|((what, _), _)| *what == "write")
                    .map(|(_, n)| *n)
                    .sum::<u64>()
            })
            .sum()
    }
}

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
    // What node 1 shows: status, `apivip status` and metrics.
    let admin = n.sups[0].as_ref().unwrap().admin_addrs()[0];
    let (code, body) = client::request(admin, http::Method::GET, "/status", None, DEADLINE)
        .await
        .unwrap();
    assert_eq!(code, 200);
    let doc: StatusDoc = serde_json::from_str(&body).unwrap();
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
