//! A real BIND (`named`, Debian's `bind9`) serving one zone that accepts RFC 2136
//! updates signed with a TSIG key, for the DNS tests and benchmarks.
//!
//! Everything lives in a temporary directory: `named.conf`, the key, the zone file and
//! its journal. `named` runs in the foreground (`-g`) as a child of the test, on a
//! free loopback port; as root it drops to `nobody` (`-u nobody`), so the server the
//! tests talk to runs unprivileged either way. It is stopped by PID when the
//! [`Bind`] is dropped. [`Bind::restart`] keeps the journal (the updates survive),
//! [`Bind::restart_fresh`] rewrites the zone file and deletes the journal (they are
//! gone), as an operator restoring a zone would.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the zone looks like and who may update it.
#[derive(Debug, Clone)]
pub struct BindOptions {
    /// The zone, e.g. `cluster.example.`.
    pub zone: String,
    /// Zone file lines after the SOA and NS records (records apivip did not write).
    pub records: Vec<String>,
    /// The TSIG key's name, e.g. `apivip-key.`.
    pub key_name: String,
    /// `hmac-sha256` or `hmac-sha512`.
    pub algorithm: String,
    /// The key's secret, base64.
    pub secret_b64: String,
    /// `update-policy` grants for the key: (name, types), e.g.
    /// `("api.cluster.example.", "A AAAA")`.
    pub grants: Vec<(String, String)>,
    /// Where to listen; `None`: 127.0.0.1 on a free port.
    pub listen: Option<SocketAddr>,
}

/// A running `named`.
pub struct Bind {
    dir: tempfile::TempDir,
    opts: BindOptions,
    addr: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bind").field("addr", &self.addr).finish()
    }
}

/// Whether `named` and `dig` are installed.
pub fn available() -> bool {
    [Path::new("/usr/sbin/named"), Path::new("/usr/bin/dig")]
        .iter()
        .all(|p| p.exists())
}

impl Bind {
    /// Writes the configuration and starts `named`; returns once it answers.
    pub fn start(opts: BindOptions) -> std::io::Result<Bind> {
        let dir = tempfile::Builder::new().prefix("apivip-bind").tempdir()?;
        let addr = match opts.listen {
            Some(a) => a,
            None => SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)),
        };
        let mut bind = Bind {
            dir,
            opts,
            addr,
            child: None,
            log: Arc::default(),
        };
        bind.write_config()?;
        bind.write_zone()?;
        bind.spawn()?;
        Ok(bind)
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its directory (zone file `zone.db`, journal `zone.db.jnl`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `named` printed so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops `named` (SIGTERM, then SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops and starts `named` again with its journal: the updates are kept.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Stops `named`, rewrites the zone file as at the start and deletes the journal,
    /// then starts it: every update is gone.
    pub fn restart_fresh(&mut self) -> std::io::Result<()> {
        self.stop();
        let jnl = self.dir.path().join("zone.db.jnl");
        if jnl.exists() {
            std::fs::remove_file(jnl)?;
        }
        self.write_zone()?;
        self.spawn()
    }

    /// `dig +short` of `name` and `rtype` at this server, sorted.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                "+short",
                "+norec",
                "+time=2",
                "+tries=2",
                "-p",
                &self.addr.port().to_string(),
                &format!("@{}", self.addr.ip()),
                name,
                rtype,
            ])
            .output();
        let mut lines: Vec<String> = match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .filter(|l| !l.is_empty() && !l.starts_with(";;"))
                .collect(),
            Err(_) => Vec::new(),
        };
        lines.sort();
        lines
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn write_config(&self) -> std::io::Result<()> {
        let o = &self.opts;
        let d = self.dir.path().display();
        let grants: String = o
            .grants
            .iter()
            .map(|(name, types)| format!("    grant {} name {name} {types};\n", o.key_name))
            .collect();
        let listen = match self.addr {
            SocketAddr::V4(a) => format!(
                "listen-on port {} {{ {}; }}; listen-on-v6 {{ none; }};",
                a.port(),
                a.ip()
            ),
            SocketAddr::V6(a) => format!(
                "listen-on {{ none; }}; listen-on-v6 port {} {{ {}; }};",
                a.port(),
                a.ip()
            ),
        };
        let conf = format!(
            "controls {{ }};\n\
             options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
             session-keyfile \"{d}/session.key\";\n  managed-keys-directory \"{d}\";\n  \
             {listen}\n  recursion no;\n  notify no;\n  dnssec-validation no;\n}};\n\
             key \"{key}\" {{ algorithm {alg}; secret \"{secret}\"; }};\n\
             zone \"{zone}\" {{\n  type primary;\n  file \"{d}/zone.db\";\n  \
             update-policy {{\n{grants}  }};\n}};\n",
            key = o.key_name,
            alg = o.algorithm,
            secret = o.secret_b64,
            zone = o.zone.trim_end_matches('.'),
        );
        std::fs::write(self.path("named.conf"), conf)
    }

    fn write_zone(&self) -> std::io::Result<()> {
        let zone = format!("{}.", self.opts.zone.trim_end_matches('.'));
        let mut text = format!(
            "$TTL 300\n$ORIGIN {zone}\n@ IN SOA ns.{zone} hostmaster.{zone} ( 1 60 60 3600 5 )\n\
             @ IN NS ns.{zone}\nns IN A 127.0.0.1\n"
        );
        for r in &self.opts.records {
            text.push_str(r);
            text.push('\n');
        }
        std::fs::write(self.path("zone.db"), text)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let root = nix::unistd::Uid::effective().is_root();
        if root {
            // named drops to nobody: its directory must be its own.
            let status = Command::new("chown")
                .args(["-R", "nobody:nogroup"])
                .arg(self.dir.path())
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other("chown of the BIND directory failed"));
            }
        }
        let mut cmd = Command::new("/usr/sbin/named");
        cmd.args(["-g", "-n", "1", "-c"])
            .arg(self.path("named.conf"));
        if root {
            cmd.args(["-u", "nobody"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("piped");
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        self.child = Some(child);
        // Ready when it answers the zone's SOA.
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(std::io::Error::other(format!(
                    "named exited ({status}):\n{}",
                    self.log()
                )));
            }
            if soa_answers(self.addr, &self.opts.zone) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        Err(std::io::Error::other(format!(
            "named did not answer within 20 s:\n{}",
            self.log()
        )))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no port free for both UDP and TCP"))
}

/// Whether the server at `addr` answers an SOA query for `zone` with NOERROR.
fn soa_answers(addr: SocketAddr, zone: &str) -> bool {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{Name, RecordType};
    let Ok(name) = Name::from_ascii(zone) else {
        return false;
    };
    let Ok(bytes) = crate::dns::wire::query(0x5eed, &name, RecordType::SOA).to_vec() else {
        return false;
    };
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let Ok(sock) = UdpSocket::bind(local) else {
        return false;
    };
    if sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .is_err()
        || sock.send_to(&bytes, addr).is_err()
    {
        return false;
    }
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => hickory_proto::op::Message::from_vec(&buf[..n]).is_ok_and(|m| {
            m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty()
        }),
        Err(_) => false,
    }
}
