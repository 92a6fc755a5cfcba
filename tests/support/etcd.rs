//! A real etcd member (Debian's `etcd-server`, 3.4.x) on 127.0.0.1 with TLS and
//! `--client-cert-auth`, certificates from a [`TestPki`].
//!
//! The pki's server certificate must carry the SAN `127.0.0.1`
//! (`TestPki::generate(dir, &["127.0.0.1", ...])`); it has both server and client auth EKUs,
//! which etcd 3.4 needs (its gRPC gateway dials itself with the server certificate).
#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apivip::testkit::certs::TestPki;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rustls::ClientConfig;

/// How long [`Etcd::start`] waits for the member to be healthy.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running etcd member. Drop kills it (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Etcd {
    child: Child,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    health_config: Arc<ClientConfig>,
}

/// Two distinct free loopback ports (bind to 0, then release). Another process may take one
/// before etcd binds it: [`Etcd::start`] retries on that.
fn free_ports() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

impl Etcd {
    /// Starts etcd with the pki's server certificate, `--client-cert-auth` against
    /// `ca.crt`, its data under `dir/etcd-data`, its log in `dir/etcd.log`; returns once a
    /// TCP connect works and an HTTPS `GET /health` with `client.crt` says `"health":"true"`
    /// (deadline [`START_DEADLINE`]).
    pub fn start(pki: &TestPki, dir: &Path) -> io::Result<Etcd> {
        let bin = super::which("etcd").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "etcd not found (apt-get install etcd-server)",
            )
        })?;
        let mut last_err = None;
        for attempt in 0..5 {
            match Self::try_start(&bin, pki, dir, attempt) {
                Ok(etcd) => return Ok(etcd),
                Err((e, retry)) => {
                    if !retry {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// One attempt; the error says whether another attempt (new ports) may help.
    fn try_start(
        bin: &Path,
        pki: &TestPki,
        dir: &Path,
        attempt: u32,
    ) -> Result<Etcd, (io::Error, bool)> {
        let fatal = |e: io::Error| (e, false);
        let (client_port, peer_port) = free_ports().map_err(fatal)?;
        let client = SocketAddr::from((Ipv4Addr::LOCALHOST, client_port));
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, peer_port));
        let data_dir = dir.join(format!("etcd-data-{attempt}"));
        let log_path = dir.join("etcd.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(fatal)?;
        let log_err = log.try_clone().map_err(fatal)?;
        let client_url = format!("https://{client}");
        let peer_url = format!("http://{peer}");
        let mut cmd = Command::new(bin);
        cmd.arg("--name=apivip-test")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=apivip-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg(format!("--cert-file={}", pki.server_cert.display()))
            .arg(format!("--key-file={}", pki.server_key.display()))
            .arg("--client-cert-auth")
            .arg(format!("--trusted-ca-file={}", pki.ca_cert.display()))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .env_remove("ETCDCTL_API")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = cmd.spawn().map_err(fatal)?;
        let mut etcd = Etcd {
            child,
            client,
            peer,
            data_dir,
            log_path,
            health_config: pki.client_config_mtls(),
        };
        match etcd.wait_healthy(START_DEADLINE) {
            Ok(()) => Ok(etcd),
            Err(e) => {
                let exited = etcd.child.try_wait().ok().flatten().is_some();
                let log = etcd.log();
                let retry = exited && log.contains("address already in use");
                drop(etcd);
                Err((
                    io::Error::other(format!("{e}\n--- etcd log ---\n{log}")),
                    retry,
                ))
            }
        }
    }

    fn wait_healthy(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no TCP connect yet");
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("etcd exited early: {status}")));
            }
            if TcpStream::connect_timeout(&self.client, Duration::from_millis(200)).is_ok() {
                match self.health_with(self.health_config.clone()) {
                    Ok(true) => return Ok(()),
                    Ok(false) => last = "/health is not true".into(),
                    Err(e) => last = e,
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("etcd not healthy after {timeout:?}: {last}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client address (`https://` + this).
    pub fn client_url(&self) -> SocketAddr {
        self.client
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.client)
    }

    /// The peer address (plain HTTP, loopback).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// etcd's log so far (for printing on failure).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Blocking `GET /health` with `config`: Ok(true) when etcd answers 200 with
    /// `"health":"true"`. A TLS failure (e.g. a client certificate etcd does not trust) is an
    /// `Err` with the reason.
    pub fn health_with(&self, config: Arc<ClientConfig>) -> Result<bool, String> {
        let (status, body) = super::https_get_blocking(self.client, config, "/health")?;
        if status != 200 {
            return Ok(false);
        }
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("/health body {body:?}: {e}"))?;
        Ok(json["health"] == "true" || json["health"] == true)
    }

    /// Blocking `GET /health` with the right client certificate.
    pub fn healthy(&self) -> bool {
        self.health_with(self.health_config.clone())
            .unwrap_or(false)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Not reaped, so the pid is still ours.
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}
