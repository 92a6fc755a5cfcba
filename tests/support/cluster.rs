//! A loopback cluster: imitation apiservers behind a real apivip (in-process
//! `Supervisor`, the same code `apivip run` runs), shared by the proxy and admin tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apivip::health::Status;
use apivip::supervisor::Supervisor;
use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver};
use apivip::testkit::certs::TestPki;
use http_body_util::BodyExt;
use rustls::ClientConfig;

use super::{client_config, https_get_with, https_request, wait_until};

/// Generous deadline for conditions.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct Cluster {
    pub _dir: tempfile::TempDir,
    pub pki: TestPki,
    pub masters: Vec<ImitationApiserver>,
    pub sup: Option<Supervisor>,
    /// The proxy workers the connections run on, as `apivip run` runs them (declared
    /// after `sup`, so that they stop after it).
    pub workers: apivip::proxy::workers::Workers,
    pub endpoint: SocketAddr,
    pub client: Arc<ClientConfig>,
    /// The config file the supervisor runs (a reload reads it again).
    pub config_path: std::path::PathBuf,
}

pub struct Opts {
    pub masters: usize,
    pub shutdown_delay: Duration,
    /// Extra keys for the `apiserver:` section (indented by 2).
    pub apiserver: &'static str,
    /// The `check:` section (indented by 4).
    pub check: &'static str,
    /// Listen and backend IP.
    pub ip: &'static str,
    /// How many of the masters are in the config at start (all when `None`).
    pub configured: Option<usize>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            masters: 3,
            shutdown_delay: Duration::ZERO,
            apiserver: "",
            check: "    interval: 300ms\n    timeout: 300ms\n    rise: 1\n    fall: 2\n",
            ip: "127.0.0.1",
            configured: None,
        }
    }
}

impl Cluster {
    pub async fn start(opts: Opts) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(dir.path(), &["127.0.0.1", "127.0.0.2", "::1"]).unwrap();
        let mut masters = Vec::new();
        for i in 0..opts.masters {
            let mut o = ApiserverOptions::new(format!("master-{i}"), pki.server_config());
            o.listen = SocketAddr::new(opts.ip.parse().unwrap(), 0);
            o.shutdown_delay = opts.shutdown_delay;
            masters.push(ImitationApiserver::start(o).await.unwrap());
        }
        let listen = SocketAddr::new(opts.ip.parse().unwrap(), 0);
        let configured: Vec<usize> = (0..opts.configured.unwrap_or(opts.masters)).collect();
        let yaml = config_yaml(
            &masters,
            &configured,
            &listen.to_string(),
            opts.apiserver,
            opts.check,
        );
        let path = dir.path().join("apivip.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let config = apivip::config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let workers = apivip::proxy::workers::Workers::start(2).unwrap();
        let sup = Supervisor::start_on_workers(&config, workers.pool())
            .await
            .unwrap();
        let endpoint = sup.listen_addrs(apivip::config::FrontendKind::Apiserver)[0];
        let client = client_config(&pki.ca_cert, None).unwrap();
        let c = Cluster {
            _dir: dir,
            pki,
            masters,
            sup: Some(sup),
            workers,
            endpoint,
            client,
            config_path: path,
        };
        for i in configured {
            c.wait_status(i, Status::Up).await;
        }
        c
    }

    pub fn sup_mut(&mut self) -> &mut Supervisor {
        self.sup.as_mut().unwrap()
    }

    /// Rewrites the config file with `masters` (indices into `self.masters`, in that
    /// order) and the given `apiserver:` listen, extra keys and check.
    pub fn write_config(&self, masters: &[usize], listen: &str, apiserver: &str, check: &str) {
        let yaml = config_yaml(&self.masters, masters, listen, apiserver, check);
        std::fs::write(&self.config_path, yaml).unwrap();
    }

    pub fn sup(&self) -> &Supervisor {
        self.sup.as_ref().unwrap()
    }

    /// The status of master `i` (by name: its index in the config may differ).
    pub fn status(&self, i: usize) -> Status {
        let name = self.masters[i].name();
        self.sup().health().current().frontends[0]
            .backends
            .iter()
            .find(|b| b.name == name)
            .map_or(Status::Unknown, |b| b.status)
    }

    pub async fn wait_status(&self, i: usize, want: Status) {
        let ok = wait_until(DEADLINE, || async { self.status(i) == want }).await;
        assert!(
            ok,
            "master-{i} never became {want}; it is {}",
            self.status(i)
        );
    }

    pub async fn wait_status_all(&self, want: Status) {
        for i in 0..self.masters.len() {
            self.wait_status(i, want).await;
        }
    }

    /// One request on a fresh connection through apivip: the answering master's name.
    pub async fn whoami(&self) -> Result<String, String> {
        let (status, body) = https_get_with(self.endpoint, self.client.clone(), "/whoami").await?;
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(body)
    }

    pub fn stats(&self) -> Arc<apivip::proxy::FrontendProxy> {
        self.sup()
            .frontend(apivip::config::FrontendKind::Apiserver)
            .unwrap()
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.masters.iter().position(|m| m.name() == name).unwrap()
    }

    /// Restarts master `i` on its old address.
    pub async fn restart(&mut self, i: usize, delay: Duration) {
        let mut o = ApiserverOptions::new(format!("master-{i}"), self.pki.server_config());
        o.listen = self.masters[i].addr();
        o.shutdown_delay = delay;
        let deadline = Instant::now() + DEADLINE;
        let mut started = false;
        while !started && Instant::now() < deadline {
            match ImitationApiserver::start(o.clone()).await {
                Ok(m) => {
                    self.masters[i] = m;
                    started = true;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert!(
            started,
            "cannot restart master-{i} on {}",
            self.masters[i].addr()
        );
    }
}

/// The config of the loopback cluster.
pub fn config_yaml(
    all: &[ImitationApiserver],
    masters: &[usize],
    listen: &str,
    apiserver: &str,
    check: &str,
) -> String {
    let backends: String = masters
        .iter()
        .map(|&i| {
            let m = &all[i];
            format!("  - name: {}\n    address: '{}'\n", m.name(), m.addr())
        })
        .collect();
    format!(
        "backends:\n{backends}admin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: '{listen}'\n{apiserver}  check:\n    ca: ca.crt\n{check}"
    )
}

/// An open `/watch` stream through apivip.
pub struct Stream {
    pub backend: String,
    pub body: hyper::body::Incoming,
}

impl Stream {
    pub async fn open(c: &Cluster) -> Stream {
        Self::open_at(c.endpoint, c.client.clone()).await
    }

    /// Like [`Stream::open`], through the endpoint `endpoint` with `client`.
    pub async fn open_at(endpoint: SocketAddr, client: Arc<ClientConfig>) -> Stream {
        let resp = https_request(endpoint, client, "/watch").await.unwrap();
        assert_eq!(resp.status(), 200);
        let backend = resp.headers()["x-apivip-backend"]
            .to_str()
            .unwrap()
            .to_owned();
        Stream {
            backend,
            body: resp.into_body(),
        }
    }

    /// The next chunk of data, `None` when the stream ended (EOF or error).
    pub async fn next(&mut self) -> Option<bytes::Bytes> {
        loop {
            match tokio::time::timeout(DEADLINE, self.body.frame()).await {
                Err(_) => panic!(
                    "stream from {} neither sent nor closed for {DEADLINE:?}",
                    self.backend
                ),
                Ok(None) | Ok(Some(Err(_))) => return None,
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        return Some(d);
                    }
                }
            }
        }
    }
}
