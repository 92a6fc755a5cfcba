//! DNS failover tests and benchmarks: a real BIND, imitation apiservers and apivip
//! nodes (the `Supervisor` that `apivip run` runs, in this process) publishing one name.
//! Needs `named` and `dig` ([`Nodes::start`] skips, or fails with
//! `APIVIP_REQUIRE_NETNS=1`, without them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apivip::supervisor::Supervisor;
use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver};
use apivip::testkit::bind::{Bind, BindOptions};
use apivip::testkit::certs::TestPki;

/// How the nodes check the masters.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    pub interval: Duration,
    pub rise: u32,
    pub fall: u32,
}

impl Checks {
    /// What the tests use: 300 ms, rise 1, fall 2.
    pub const FAST: Checks = Checks {
        interval: Duration::from_millis(300),
        rise: 1,
        fall: 2,
    };
}

pub const SECRET_B64: &str = "YXBpdmlwLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzISE=";
pub const DEADLINE: Duration = Duration::from_secs(20);
pub const ALL: [&str; 3] = ["198.18.0.11", "198.18.0.12", "198.18.0.13"];

pub struct Nodes {
    pub dir: tempfile::TempDir,
    pub bind: Bind,
    pub masters: Vec<ImitationApiserver>,
    pub sups: Vec<Option<Supervisor>>,
    /// `links[i][j]`: what node i's checks reach master j through (with `links`).
    pub links: Vec<Vec<Link>>,
}

/// A TCP relay the test can cut: how one node's health checks reach one master, so
/// that a partition between two masters can be made on loopback. Cut, it closes every
/// connection it relays and each new one at once.
pub struct Link {
    pub addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    pub async fn start(target: SocketAddr) -> Link {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut rx = rx.clone();
                if *rx.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Link { addr, cut, task }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `named` serving `cluster.example.` with `records`, the key `apivip-key.` (the secret
/// [`SECRET_B64`], hmac-sha256) allowed to write the name's A and AAAA records and the
/// votes' TXT.
pub fn start_bind(records: Vec<String>) -> Bind {
    Bind::start(BindOptions {
        zone: "cluster.example.".into(),
        records,
        key_name: "apivip-key.".into(),
        algorithm: "hmac-sha256".into(),
        secret_b64: SECRET_B64.into(),
        grants: vec![
            ("api.cluster.example.".into(), "A AAAA".into()),
            ("_apivip.api.cluster.example.".into(), "TXT".into()),
        ],
        listen: None,
    })
    .expect("named")
}

fn node_yaml(
    dir: &std::path::Path,
    masters: &[ImitationApiserver],
    addrs: &[SocketAddr],
    bind: SocketAddr,
    node: usize,
    checks: Checks,
) -> String {
    let backends: String = masters
        .iter()
        .zip(addrs)
        .map(|(m, a)| format!("  - name: {}\n    address: '{a}'\n", m.name()))
        .collect();
    let publish: String = masters
        .iter()
        .enumerate()
        .map(|(i, m)| format!("    {}: [{}]\n", m.name(), ALL[i]))
        .collect();
    format!(
        "backends:\n{backends}admin: {{listen: '127.0.0.1:0'}}\n\
         apiserver:\n  listen: '127.0.0.1:0'\n  check:\n    ca: ca.crt\n    interval: {i}ms\n    timeout: {i}ms\n    rise: {r}\n    fall: {f}\n\
         dns:\n  servers: ['{bind}']\n  zone: cluster.example.\n  name: api.cluster.example.\n  node: {}\n  timeout: 1s\n  resync: 2s\n  publish:\n{publish}\
         \x20 tsig: {{key: apivip-key., secret_file: {}}}\n",
        masters[node].name(),
        dir.join("dns.key").display(),
        i = checks.interval.as_millis(),
        r = checks.rise,
        f = checks.fall,
    )
}

impl Nodes {
    pub async fn start(test: &str) -> Option<Nodes> {
        Nodes::start_with(test, false, Checks::FAST).await
    }

    /// With `links`, every node reaches every master through its own [`Link`].
    pub async fn start_with(test: &str, links: bool, checks: Checks) -> Option<Nodes> {
        if super::require_bin(test, "named").is_none() || super::require_bin(test, "dig").is_none()
        {
            return None;
        }
        let bind = start_bind(vec!["other IN A 198.18.0.99".into()]);
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
        let mut all_links = Vec::new();
        for _ in 0..3 {
            let mut row = Vec::new();
            if links {
                for m in &masters {
                    row.push(Link::start(m.addr()).await);
                }
            }
            all_links.push(row);
        }
        let mut sups = Vec::new();
        for (i, row) in all_links.iter().enumerate() {
            let path = dir.path().join(format!("node{i}.yaml"));
            let addrs: Vec<SocketAddr> = if links {
                row.iter().map(|l| l.addr).collect()
            } else {
                masters.iter().map(|m| m.addr()).collect()
            };
            let yaml = node_yaml(dir.path(), &masters, &addrs, bind.addr(), i, checks);
            std::fs::write(&path, &yaml).unwrap();
            let config = apivip::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            sups.push(Some(Supervisor::start(&config).await.unwrap()));
        }
        Some(Nodes {
            dir,
            bind,
            masters,
            sups,
            links: all_links,
        })
    }

    /// Addresses added plus removed by every node's writes so far.
    pub fn record_changes(&self) -> u64 {
        self.sups
            .iter()
            .flatten()
            .filter_map(|s| s.dns())
            .map(|d| {
                let c = d.counters.changes.lock().unwrap();
                c.0 + c.1
            })
            .sum()
    }

    /// How node `i` sees master `j` now (`up` / `down` / `unknown`).
    pub fn view(&self, i: usize, j: usize) -> String {
        let s = self.sups[i]
            .as_ref()
            .and_then(|s| s.dns())
            .unwrap()
            .status();
        let name = self.masters[j].name();
        s.view
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| format!("{v:?}").to_lowercase())
            .unwrap_or_default()
    }

    /// The last failure node `i` reports, as `kind: detail`.
    pub fn last_error(&self, i: usize) -> Option<String> {
        let s = self.sups[i].as_ref().and_then(|s| s.dns())?.status();
        s.last_error.map(|f| format!("{}: {}", f.kind, f.detail))
    }

    /// Waits until every node reports a last error (`failing`) or none does.
    pub async fn wait_errors(&self, failing: bool, what: &str) {
        let ok = super::wait_until(DEADLINE, || async {
            (0..self.sups.len()).all(|i| self.last_error(i).is_some() == failing)
        })
        .await;
        let errors: Vec<_> = (0..self.sups.len()).map(|i| self.last_error(i)).collect();
        assert!(ok, "{what}: {errors:?}");
    }

    pub async fn wait_votes(&self, n: usize) {
        let ok = super::wait_until(DEADLINE, || async {
            self.bind.dig("_apivip.api.cluster.example.", "TXT").len() == n
        })
        .await;
        assert!(
            ok,
            "{:?}",
            self.bind.dig("_apivip.api.cluster.example.", "TXT")
        );
    }

    pub fn dig(&self) -> Vec<String> {
        self.bind.dig("api.cluster.example.", "A")
    }

    /// Waits until dig returns `want`; how long that took.
    pub async fn wait_dig(&self, want: &[&str], what: &str) -> Duration {
        let t0 = Instant::now();
        let ok = super::wait_until(DEADLINE, || async { self.dig() == want }).await;
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
    pub fn writes(&self) -> u64 {
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
