//! Configuration: read, parse, validate.
//!
//! `load(path)` reads the file, [`Config::from_yaml`] parses it into the raw schema
//! ([`raw`]) and validates it into a typed [`Config`]. Validation collects every error
//! (each naming the file, the key path, the value and what is expected) before failing
//! once, so an operator fixes a file in one pass.
//!
//! This module is sans-IO apart from checking that referenced files exist.

pub mod notify;
mod raw;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::units::{format_duration, parse_duration};
use raw::{RawCheck, RawConfig, RawFrontend};

/// The default apiserver frontend listen address (deployment shape 1: VIP + proxy).
pub const DEFAULT_APISERVER_LISTEN: &str = "0.0.0.0:8443";
/// The default kube-apiserver port on each master.
pub const DEFAULT_APISERVER_PORT: u16 = 6443;
/// The default etcd client port on each master.
pub const DEFAULT_ETCD_PORT: u16 = 2379;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, for messages.
    pub source: PathBuf,
    /// The frontends: always the apiserver, optionally etcd.
    pub frontends: Vec<Frontend>,
    /// The virtual IP, when configured.
    pub vrrp: Option<Vrrp>,
    /// Shutdown behaviour.
    pub shutdown: Shutdown,
    /// Logging.
    pub log: Log,
    /// The admin endpoint.
    pub admin: Admin,
    /// Scripts run on VRRP state changes and backend transitions.
    pub notify: notify::Notify,
}

/// The default admin endpoint: loopback only, on a port no control-plane component or
/// common exporter uses (kubelet 10248/10250, kube-proxy 10249/10256,
/// kube-controller-manager 10257, kube-scheduler 10259, etcd 2379-2381,
/// node_exporter 9100, Prometheus 9090, kube-vip 2112).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9469";

/// `admin:`: the HTTP endpoint for metrics, status and controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Addresses to listen on; empty turns the endpoint off.
    pub listen: Vec<SocketAddr>,
}

impl Admin {
    /// The listen addresses that are not loopback (`apivip check` warns about them:
    /// controls are refused from them, but metrics and status are readable).
    pub fn exposed(&self) -> Vec<SocketAddr> {
        self.listen
            .iter()
            .copied()
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }
}

/// `vrrp:`: the election for the virtual IP.
#[derive(Debug, Clone, PartialEq)]
pub struct Vrrp {
    /// The interface the VIP lives on and adverts are sent on.
    pub interface: String,
    /// The election itself (VRID, version and interval, priority, VIPs, peers, ...).
    pub instance: crate::vrrp::machine::InstanceConfig,
    /// The VIPs with their prefix lengths, as added to the interface.
    pub vips: Vec<(IpAddr, u8)>,
    /// Gratuitous ARPs / unsolicited NAs sent on becoming master.
    pub announce_count: u32,
    /// Time between two announcements.
    pub announce_interval: Duration,
    /// What this node's priority follows.
    pub track: Track,
}

/// What the VIP follows (DESIGN.md, deployment shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Track {
    /// VIP + proxy: this node can serve while its proxy listens and at least one
    /// apiserver backend is healthy from here.
    Proxy,
    /// VIP only: the readiness of this node's own apiserver (`track: backend:NAME`).
    Backend(BackendId),
}

/// Which frontend: the one identity the health view, the proxy, metrics labels,
/// status and the controls all use (never a name string or a position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrontendKind {
    /// kube-apiserver (`apiserver:`), always present.
    Apiserver,
    /// etcd (`etcd:`), optional.
    Etcd,
}

impl FrontendKind {
    /// Every kind, in config order.
    pub const ALL: [FrontendKind; 2] = [FrontendKind::Apiserver, FrontendKind::Etcd];

    /// The config key and metrics label: `apiserver` or `etcd`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FrontendKind::Apiserver => "apiserver",
            FrontendKind::Etcd => "etcd",
        }
    }
}

impl std::fmt::Display for FrontendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend of one frontend: the frontend and the master's position in
/// `backends:` (the same master has the same index in every frontend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    /// The frontend.
    pub frontend: FrontendKind,
    /// The master's index in `backends:`.
    pub master: usize,
}

impl std::fmt::Display for BackendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.frontend, self.master)
    }
}

/// A listener and the backends it balances to.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    /// Which frontend; its name in logs, metrics and status.
    pub kind: FrontendKind,
    /// Addresses to listen on (IPv4 and/or IPv6).
    pub listen: Vec<SocketAddr>,
    /// Where connections go.
    pub backends: Vec<Backend>,
    /// How a backend is chosen.
    pub balance: Balance,
    /// Client connections accepted at once; further clients are closed at once.
    pub max_connections: usize,
    /// How long one backend connect may take before the next backend is tried.
    pub connect_timeout: Duration,
    /// Close existing connections to a backend that turns down.
    pub close_on_down: bool,
    /// For a backend that still answers but turns not-ready (graceful shutdown), how
    /// long its existing connections may finish before they are closed.
    pub not_ready_grace: Duration,
    /// Close a connection with no traffic for this long; `None` (the default) never
    /// does, since WATCH connections are idle most of the time.
    pub idle_timeout: Option<Duration>,
    /// The active health check.
    pub check: Check,
}

/// One backend of a frontend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Its identity.
    pub id: BackendId,
    /// Its name in logs, metrics, status and the controls (the master's name, or its
    /// address).
    pub name: String,
    /// Where to connect.
    pub addr: SocketAddr,
}

/// Balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// The healthy backend with the fewest active connections (ties: round-robin).
    LeastConnections,
    /// Healthy backends in turn.
    RoundRobin,
}

/// An active health check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What is probed.
    pub kind: CheckKind,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
    /// Consecutive successes that turn a down backend up.
    pub rise: u32,
    /// Consecutive failures that turn an up backend down.
    pub fall: u32,
    /// Each wait is shortened or lengthened at random by up to this percent of the
    /// interval, so that checks from many nodes do not align.
    pub jitter_percent: u8,
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTPS GET that must answer 2xx (kube-apiserver `/readyz`).
    Https(HttpsCheck),
    /// An HTTPS GET of etcd's `/health` (usually mTLS) that must say `"health":"true"`.
    Etcd(HttpsCheck),
}

/// The HTTPS side of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsCheck {
    /// Request path.
    pub path: String,
    /// CA bundle to verify the server with; system roots when absent.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (mTLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name sent as SNI and verified; the backend's IP when absent.
    pub server_name: Option<String>,
}

/// `shutdown:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    /// How long SIGTERM waits for connections to finish before closing them.
    pub drain_timeout: Duration,
}

/// `log:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    /// Output format.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `apivip=debug`.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The key path, e.g. `backends[2].address`; empty for the whole file.
    pub path: String,
    /// The offending value as written, if there is one.
    pub value: Option<String>,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML for the schema (syntax, unknown key, wrong type).
    #[error("{file}: {issue}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// What and where.
        issue: ConfigIssue,
    },
    /// The file parsed but has invalid values; one entry per problem.
    #[error("{}", render_issues(file, issues))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
}

impl ConfigError {
    /// One line per problem, each starting with the file name.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid { file, issues } => issues
                .iter()
                .map(|i| format!("{}: {i}", file.display()))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

fn render_issues(file: &Path, issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("{}: {i}", file.display()))
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        match &self.value {
            Some(v) => write!(f, "{path}: {v:?}: {}", self.message),
            None => write!(f, "{path}: {}", self.message),
        }
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    Config::from_yaml(&text, path)
}

impl Config {
    /// The frontend of this kind, if configured.
    pub fn frontend(&self, kind: FrontendKind) -> Option<&Frontend> {
        self.frontends.iter().find(|f| f.kind == kind)
    }

    /// The backend with this identity.
    pub fn backend(&self, id: BackendId) -> Option<&Backend> {
        self.frontend(id.frontend)?.backends.get(id.master)
    }

    /// Every backend of every frontend, in config order.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.frontends.iter().flat_map(|f| &f.backends)
    }

    /// Parses and validates YAML text; `source` names the file in messages and is
    /// the base for relative certificate paths.
    pub fn from_yaml(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let raw = parse_raw(text).map_err(|issue| ConfigError::Parse {
            file: source.to_owned(),
            issue,
        })?;
        let mut v = Validator {
            issues: Vec::new(),
            base: source.parent().map(Path::to_owned).unwrap_or_default(),
            duplicates: HashSet::new(),
        };
        let config = v.config(raw, source);
        if v.issues.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                file: source.to_owned(),
                issues: v.issues,
            })
        }
    }
}

fn parse_raw(text: &str) -> Result<RawConfig, ConfigIssue> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    // An empty file is a config with every default.
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let mut key_path = String::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
            key_path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or("").trim().to_owned();
        let location = match e.location() {
            Some(l) if !message.contains(" line ") => {
                format!(" (line {}, column {})", l.line(), l.column())
            }
            _ => String::new(),
        };
        ConfigIssue {
            path: if key_path == "." {
                String::new()
            } else {
                key_path
            },
            value: None,
            message: format!("{message}{location}"),
        }
    })
}

/// Collects issues while building the typed config.
struct Validator {
    issues: Vec<ConfigIssue>,
    base: PathBuf,
    /// Backends already reported as duplicates (by index), so one is reported once.
    duplicates: HashSet<usize>,
}

/// A parsed backend address: an IP and maybe a port.
struct BackendAddr {
    /// Position in `backends:`, for messages.
    index: usize,
    /// The address as written.
    text: String,
    name: String,
    ip: IpAddr,
    port: Option<u16>,
    etcd_port: Option<u16>,
}

impl Validator {
    fn issue(
        &mut self,
        path: impl Into<String>,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        self.issues.push(ConfigIssue {
            path: path.into(),
            value,
            message: message.into(),
        });
    }

    fn config(&mut self, raw: RawConfig, source: &Path) -> Config {
        let masters = self.backends(&raw.backends);
        let mut frontends = Vec::new();
        let apiserver = raw.apiserver.unwrap_or_default();
        frontends.push(self.frontend(
            FrontendKind::Apiserver,
            apiserver,
            &masters,
            FrontendDefaults {
                listen: Some(DEFAULT_APISERVER_LISTEN),
                port: DEFAULT_APISERVER_PORT,
                check_kind: "https",
                path: "/readyz",
            },
        ));
        if let Some(etcd) = raw.etcd {
            frontends.push(self.frontend(
                FrontendKind::Etcd,
                etcd,
                &masters,
                FrontendDefaults {
                    listen: None,
                    port: DEFAULT_ETCD_PORT,
                    check_kind: "etcd",
                    path: "/health",
                },
            ));
        }
        // Two frontends must not listen on the same address.
        let mut seen = HashSet::new();
        for f in &frontends {
            for l in &f.listen {
                // Port 0 (any free port) never collides.
                if l.port() != 0 && !seen.insert(*l) {
                    self.issue(
                        format!("{}.listen", f.kind),
                        Some(l.to_string()),
                        "is already used by another frontend; expected a distinct address",
                    );
                }
            }
        }
        let shutdown = raw.shutdown.unwrap_or_default();
        let drain_timeout = self
            .duration(
                "shutdown.drain_timeout",
                shutdown.drain_timeout.as_deref(),
                Duration::from_secs(30),
            )
            .unwrap_or_default();
        let log = raw.log.unwrap_or_default();
        let format = match log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.issue(
                    "log.format",
                    Some(other.to_owned()),
                    "unknown log format; expected text or json",
                );
                LogFormat::Text
            }
        };
        let level = log.level.unwrap_or_else(|| "info".to_owned());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.issue(
                "log.level",
                Some(level.clone()),
                "not a log filter; expected error, warn, info, debug, trace or a directive like apivip=debug",
            );
        }
        let vrrp = raw.vrrp.map(|v| self.vrrp(v, &frontends));
        let admin = self.admin(raw.admin.unwrap_or_default(), &frontends);
        let notify = self.notify(raw.notify, vrrp.as_ref());
        Config {
            source: source.to_owned(),
            frontends,
            vrrp,
            shutdown: Shutdown { drain_timeout },
            log: Log { format, level },
            admin,
            notify,
        }
    }

    /// Parses a list of listen addresses at `key` (`key[i]` when there are several):
    /// each must be IP:port (`expected` says so), listed once, and not refused by
    /// `taken` (which says why).
    fn listen_list(
        &mut self,
        key: &str,
        texts: &[String],
        expected: &str,
        taken: impl Fn(SocketAddr) -> Option<&'static str>,
    ) -> Vec<SocketAddr> {
        let mut listen = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let path = if texts.len() == 1 {
                key.to_owned()
            } else {
                format!("{key}[{i}]")
            };
            match parse_host_port(text) {
                Some((ip, Some(port))) => {
                    let addr = SocketAddr::new(ip, port);
                    if listen.contains(&addr) {
                        self.issue(path, Some(text.clone()), "is listed twice");
                    } else if let Some(why) = taken(addr) {
                        self.issue(path, Some(text.clone()), why);
                    } else {
                        listen.push(addr);
                    }
                }
                _ => self.issue(
                    path,
                    Some(text.clone()),
                    format!("is not a listen address; expected {expected}"),
                ),
            }
        }
        listen
    }

    fn admin(&mut self, raw: raw::RawAdmin, frontends: &[Frontend]) -> Admin {
        let texts = match raw.listen {
            Some(l) => l.into_vec(),
            None => vec![DEFAULT_ADMIN_LISTEN.to_owned()],
        };
        let listen = self.listen_list(
            "admin.listen",
            &texts,
            "IP:port such as 127.0.0.1:9469, or [] to turn the admin endpoint off",
            |addr| {
                frontends
                    .iter()
                    .any(|f| addr.port() != 0 && f.listen.contains(&addr))
                    .then_some("is already used by a frontend; expected a distinct address")
            },
        );
        Admin { listen }
    }

    fn vrrp(&mut self, raw: raw::RawVrrp, frontends: &[Frontend]) -> Vrrp {
        use crate::vrrp::machine::{InstanceConfig, VersionConfig};
        use crate::vrrp::units::{Centisecs, Password, Priority, Secs, Vrid};
        let issues_before = self.issues.len();
        let interface = raw.interface.clone().unwrap_or_else(|| {
            self.issue(
                "vrrp.interface",
                None,
                "is missing; expected the interface the VIP lives on, e.g. eth0",
            );
            String::new()
        });
        if interface.len() > 15
            || interface.contains('/')
            || interface.contains(char::is_whitespace)
        {
            self.issue(
                "vrrp.interface",
                Some(interface.clone()),
                "is not an interface name",
            );
        }
        let address = match raw.address.as_deref() {
            Some(t) => match t.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.issue(
                        "vrrp.address",
                        Some(t.to_owned()),
                        "is not an IP address; expected this node's address on the interface",
                    );
                    None
                }
            },
            None => {
                self.issue("vrrp.address", None, "is missing; expected this node's address on the interface (the source of its adverts)");
                None
            }
        };
        let primary = address.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let vrid = match raw.vrid {
            Some(n) => match u8::try_from(n).ok().and_then(|n| Vrid::try_new(n).ok()) {
                Some(v) => v,
                None => {
                    self.issue(
                        "vrrp.vrid",
                        Some(n.to_string()),
                        "out of range; expected 1 to 255, the same on every node",
                    );
                    Vrid::new_unchecked(51)
                }
            },
            None => {
                self.issue(
                    "vrrp.vrid",
                    None,
                    "is missing; expected the virtual router id (1 to 255), the same on every node",
                );
                Vrid::new_unchecked(51)
            }
        };
        let version = raw.version.unwrap_or(3);
        let interval_text = raw.advert_interval.as_deref();
        let default_interval = if version == 2 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(100)
        };
        let interval =
            self.positive_duration("vrrp.advert_interval", interval_text, default_interval);
        let version_cfg = match version {
            3 => {
                if raw.auth_pass.is_some() {
                    self.issue(
                        "vrrp.auth_pass",
                        None,
                        "VRRPv3 has no authentication; remove it or set version: 2",
                    );
                }
                let cs = Centisecs::try_from(interval).unwrap_or_else(|e| {
                    self.issue(
                        "vrrp.advert_interval",
                        interval_text.map(str::to_owned),
                        format!("{e}; VRRPv3 takes 10ms to 40950ms in steps of 10ms"),
                    );
                    Centisecs::DEFAULT
                });
                VersionConfig::V3 { interval: cs }
            }
            2 => {
                let secs = Secs::try_from(interval).unwrap_or_else(|e| {
                    self.issue(
                        "vrrp.advert_interval",
                        interval_text.map(str::to_owned),
                        format!("{e}; VRRPv2 takes whole seconds, 1s to 255s"),
                    );
                    Secs::new_unchecked(1)
                });
                let auth =
                    raw.auth_pass
                        .as_deref()
                        .and_then(|p| match Password::try_new(p.as_bytes()) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                self.issue(
                                    "vrrp.auth_pass",
                                    Some("(hidden)".into()),
                                    format!("{e}; expected 1 to 8 bytes as keepalived's auth_pass"),
                                );
                                None
                            }
                        });
                VersionConfig::V2 {
                    interval: secs,
                    auth,
                }
            }
            other => {
                self.issue("vrrp.version", Some(other.to_string()), "unknown VRRP version; expected 3 (RFC 9568) or 2 (RFC 3768, keepalived's default)");
                VersionConfig::V3 {
                    interval: Centisecs::DEFAULT,
                }
            }
        };
        let mut vips = Vec::new();
        let vip_texts = raw.vips.map(raw::OneOrMany::into_vec).unwrap_or_default();
        if vip_texts.is_empty() {
            self.issue(
                "vrrp.vips",
                None,
                "is missing or empty; expected the virtual IP(s), e.g. 198.18.0.5/24",
            );
        }
        for (i, t) in vip_texts.iter().enumerate() {
            let (ip_text, prefix_text) = match t.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (t.as_str(), None),
            };
            let ip = ip_text.parse::<IpAddr>().ok();
            let max = if matches!(ip, Some(IpAddr::V6(_))) {
                128
            } else {
                32
            };
            let prefix = match prefix_text {
                None => Some(max),
                Some(p) => p.parse::<u8>().ok().filter(|p| *p >= 1 && *p <= max),
            };
            match (ip, prefix) {
                (Some(ip), Some(prefix)) => vips.push((ip, prefix)),
                _ => self.issue(format!("vrrp.vips[{i}]"), Some(t.clone()), "is not an address with an optional prefix; expected e.g. 198.18.0.5/24 or 2001:db8::5/64"),
            }
        }
        let peers = raw.unicast_peers.as_ref().map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, t)| match t.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        self.issue(
                            format!("vrrp.unicast_peers[{i}]"),
                            Some(t.clone()),
                            "is not an IP address",
                        );
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let priority = match raw.priority {
            None => Priority::DEFAULT,
            Some(n) => match u8::try_from(n).ok().and_then(|n| Priority::try_new(n).ok()) {
                Some(p) => p,
                None => {
                    self.issue(
                        "vrrp.priority",
                        Some(n.to_string()),
                        "out of range; expected 1 to 255 (255 only for the address owner)",
                    );
                    Priority::DEFAULT
                }
            },
        };
        let health_weight = match raw.health_weight {
            None => 50u8.min(priority.get().saturating_sub(1)),
            Some(n) => u8::try_from(n).unwrap_or_else(|_| {
                self.issue(
                    "vrrp.health_weight",
                    Some(n.to_string()),
                    "out of range; expected 0 to 254, below the priority",
                );
                0
            }),
        };
        let preempt_delay = self
            .duration(
                "vrrp.preempt_delay",
                raw.preempt_delay.as_deref(),
                Duration::ZERO,
            )
            .unwrap_or_default();
        let mut instance = InstanceConfig::new(
            vrid,
            version_cfg,
            primary,
            vips.iter().map(|v| v.0).collect(),
        );
        instance.base_priority = priority;
        instance.peers = peers;
        instance.preempt = raw.preempt.unwrap_or(true);
        instance.preempt_delay = preempt_delay;
        instance.health_weight = health_weight;
        if let Some(t) = raw.handover_timeout.as_deref() {
            if let Some(d) = self.duration("vrrp.handover_timeout", Some(t), Duration::ZERO) {
                instance.handover_timeout = d;
            }
        }
        let announce_count = match raw.announce_count {
            None => 5,
            Some(n) if (0..=100).contains(&n) => n as u32,
            Some(n) => {
                self.issue(
                    "vrrp.announce_count",
                    Some(n.to_string()),
                    "out of range; expected 0 to 100",
                );
                5
            }
        };
        let announce_interval = self
            .duration(
                "vrrp.announce_interval",
                raw.announce_interval.as_deref(),
                Duration::from_millis(200),
            )
            .unwrap_or_default();
        let apiserver_listens = frontends
            .iter()
            .any(|f| f.kind == FrontendKind::Apiserver && !f.listen.is_empty());
        let track = match raw.track.as_deref() {
            None | Some("proxy") if apiserver_listens => Track::Proxy,
            None | Some("proxy") => {
                self.issue("vrrp.track", raw.track.clone(), "the proxy does not listen (apiserver.listen is empty); expected track: backend:NAME naming this node's apiserver");
                Track::Proxy
            }
            Some(t) => {
                let found = t.strip_prefix("backend:").and_then(|name| {
                    frontends
                        .iter()
                        .filter(|f| f.kind == FrontendKind::Apiserver)
                        .flat_map(|f| &f.backends)
                        .find(|b| b.name == name)
                });
                match found {
                    Some(b) => Track::Backend(b.id),
                    None => {
                        self.issue(
                            "vrrp.track",
                            Some(t.to_owned()),
                            "expected proxy, or backend:NAME with NAME one of backends[].name",
                        );
                        Track::Proxy
                    }
                }
            }
        };
        // The election's own cross-checks (families, weight below priority, ...) once
        // every field parsed.
        if self.issues.len() == issues_before {
            if let Err(e) = instance.validate() {
                self.issue("vrrp", None, e.to_string());
            }
        }
        Vrrp {
            interface,
            instance,
            vips,
            announce_count,
            announce_interval,
            track,
        }
    }

    fn backends(&mut self, raw: &[raw::RawBackend]) -> Vec<BackendAddr> {
        if raw.is_empty() {
            self.issue(
                "backends",
                None,
                "is empty; expected a list of the control-plane nodes, e.g. `- address: 198.18.0.11`",
            );
        }
        let mut out = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, b) in raw.iter().enumerate() {
            let path = format!("backends[{i}]");
            let Some(text) = b.address.as_deref() else {
                self.issue(
                    format!("{path}.address"),
                    None,
                    "is missing; expected an IP address or IP:port",
                );
                continue;
            };
            let Some((ip, port)) = parse_host_port(text) else {
                self.issue(
                    format!("{path}.address"),
                    Some(text.to_owned()),
                    "is not an address; expected an IP address or IP:port (IPv6 as [2001:db8::1]:6443)",
                );
                continue;
            };
            if port == Some(0) {
                self.issue(
                    format!("{path}.address"),
                    Some(text.to_owned()),
                    "has port 0; expected a port from 1 to 65535",
                );
            }
            let etcd_port = b
                .etcd_port
                .and_then(|p| self.port(&format!("{path}.etcd_port"), p));
            // Two entries for one master (same IP, ports that resolve to the same
            // backend) are found per frontend, once ports are known.
            let duplicate = !addrs.insert((ip, port));
            let name = b.name.clone().unwrap_or_else(|| text.to_owned());
            if name.is_empty() {
                self.issue(format!("{path}.name"), Some(name.clone()), "is empty");
            }
            if !names.insert(name.clone()) && !duplicate {
                self.issue(
                    format!("{path}.name"),
                    Some(name.clone()),
                    "duplicate backend name; expected a unique name",
                );
            }
            out.push(BackendAddr {
                index: i,
                text: text.to_owned(),
                name,
                ip,
                port,
                etcd_port,
            });
        }
        out
    }

    fn port(&mut self, path: &str, value: i64) -> Option<u16> {
        match u16::try_from(value) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                self.issue(
                    path,
                    Some(value.to_string()),
                    "is not a port; expected a number from 1 to 65535",
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Option<Duration> {
        match value {
            None => Some(default),
            Some(text) => match parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.issue(path, Some(text.to_owned()), e.to_string());
                    None
                }
            },
        }
    }

    fn positive_duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        match self.duration(path, value, default) {
            Some(d) if d.is_zero() => {
                self.issue(
                    path,
                    value.map(str::to_owned),
                    "must be more than zero (e.g. 1s)",
                );
                default
            }
            Some(d) => d,
            None => default,
        }
    }

    fn frontend(
        &mut self,
        kind: FrontendKind,
        raw: RawFrontend,
        masters: &[BackendAddr],
        defaults: FrontendDefaults,
    ) -> Frontend {
        let name = kind.as_str();
        let listen_texts = match (raw.listen, defaults.listen) {
            (Some(l), _) => l.into_vec(),
            (None, Some(d)) => vec![d.to_owned()],
            (None, None) => {
                self.issue(
                    format!("{name}.listen"),
                    None,
                    "is missing; expected an address to listen on, e.g. 198.18.0.5:2379",
                );
                Vec::new()
            }
        };
        let listen = self.listen_list(
            &format!("{name}.listen"),
            &listen_texts,
            "IP:port such as 0.0.0.0:8443 or [::]:8443",
            |_| None,
        );
        if listen_texts.is_empty() && kind != FrontendKind::Apiserver {
            self.issue(
                format!("{name}.listen"),
                None,
                "is empty; expected at least one address",
            );
        }
        let port = match raw.port {
            Some(p) => self
                .port(&format!("{name}.port"), p)
                .unwrap_or(defaults.port),
            None => defaults.port,
        };
        let backends: Vec<Backend> = masters
            .iter()
            .map(|m| {
                let p = if kind == FrontendKind::Etcd {
                    m.etcd_port.unwrap_or(port)
                } else {
                    m.port.unwrap_or(port)
                };
                Backend {
                    id: BackendId {
                        frontend: kind,
                        master: m.index,
                    },
                    name: m.name.clone(),
                    addr: SocketAddr::new(m.ip, p),
                }
            })
            .collect();
        let mut seen = HashSet::new();
        for (m, b) in masters.iter().zip(&backends) {
            let b: &Backend = b;
            if !seen.insert(b.addr) && !self.duplicates.contains(&m.index) {
                self.duplicates.insert(m.index);
                let (key, value) = match (kind, m.etcd_port) {
                    (FrontendKind::Etcd, Some(p)) => ("etcd_port", p.to_string()),
                    _ => ("address", m.text.clone()),
                };
                self.issue(
                    format!("backends[{}].{key}", m.index),
                    Some(value),
                    format!(
                        "duplicate backend: the {name} frontend already connects to {}; each master must be listed once",
                        b.addr
                    ),
                );
            }
        }
        let balance = match raw.balance.as_deref() {
            None | Some("least-connections") => Balance::LeastConnections,
            Some("round-robin") => Balance::RoundRobin,
            Some(other) => {
                self.issue(
                    format!("{name}.balance"),
                    Some(other.to_owned()),
                    "unknown policy; expected least-connections or round-robin",
                );
                Balance::LeastConnections
            }
        };
        let max_connections = match raw.max_connections {
            None => 8_000,
            Some(n) if (1..=10_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.issue(
                    format!("{name}.max_connections"),
                    Some(n.to_string()),
                    "out of range; expected 1 to 10000000",
                );
                8_000
            }
        };
        let connect_timeout = self.positive_duration(
            &format!("{name}.connect_timeout"),
            raw.connect_timeout.as_deref(),
            Duration::from_secs(2),
        );
        let not_ready_grace = self
            .duration(
                &format!("{name}.not_ready_grace"),
                raw.not_ready_grace.as_deref(),
                Duration::from_secs(5),
            )
            .unwrap_or(Duration::from_secs(5));
        let idle_timeout = raw.idle_timeout.as_deref().map(|t| {
            self.positive_duration(
                &format!("{name}.idle_timeout"),
                Some(t),
                Duration::from_secs(3600),
            )
        });
        let check = self.check(
            &format!("{name}.check"),
            raw.check.unwrap_or_default(),
            &defaults,
        );
        Frontend {
            kind,
            listen,
            backends,
            balance,
            max_connections,
            connect_timeout,
            close_on_down: raw.close_on_down.unwrap_or(true),
            not_ready_grace,
            idle_timeout,
            check,
        }
    }

    fn check(&mut self, path: &str, raw: RawCheck, defaults: &FrontendDefaults) -> Check {
        let interval = self.positive_duration(
            &format!("{path}.interval"),
            raw.interval.as_deref(),
            Duration::from_secs(1),
        );
        let timeout = self.positive_duration(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            interval.min(Duration::from_secs(1)),
        );
        if timeout > interval {
            self.issue(
                format!("{path}.timeout"),
                Some(format_duration(timeout)),
                format!(
                    "is longer than the interval ({}); expected at most the interval",
                    format_duration(interval)
                ),
            );
        }
        let rise = self.threshold(&format!("{path}.rise"), raw.rise, 2);
        let fall = self.threshold(&format!("{path}.fall"), raw.fall, 2);
        let jitter_percent = match raw.jitter_percent {
            None => 10,
            Some(n) if (0..=50).contains(&n) => n as u8,
            Some(n) => {
                self.issue(
                    format!("{path}.jitter_percent"),
                    Some(n.to_string()),
                    "out of range; expected 0 to 50",
                );
                10
            }
        };
        let kind_text = raw.kind.as_deref().unwrap_or(defaults.check_kind);
        let https_fields = [
            ("path", raw.path.is_some()),
            ("ca", raw.ca.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
            ("server_name", raw.server_name.is_some()),
        ];
        let kind = match kind_text {
            "tcp" => {
                for (key, set) in https_fields {
                    if set {
                        self.issue(
                            format!("{path}.{key}"),
                            None,
                            "only applies to https and etcd checks; remove it or set kind: https",
                        );
                    }
                }
                CheckKind::Tcp
            }
            "https" | "etcd" => {
                let default_path = if kind_text == "etcd" {
                    "/health"
                } else {
                    defaults.path
                };
                let https = self.https(path, &raw, default_path);
                if kind_text == "etcd" {
                    CheckKind::Etcd(https)
                } else {
                    CheckKind::Https(https)
                }
            }
            other => {
                self.issue(
                    format!("{path}.kind"),
                    Some(other.to_owned()),
                    "unknown check kind; expected tcp, https or etcd",
                );
                CheckKind::Tcp
            }
        };
        Check {
            kind,
            interval,
            timeout,
            rise,
            fall,
            jitter_percent,
        }
    }

    fn https(&mut self, path: &str, raw: &RawCheck, default_path: &str) -> HttpsCheck {
        let req_path = raw.path.clone().unwrap_or_else(|| default_path.to_owned());
        let valid_path = req_path.starts_with('/')
            && !req_path.contains('#')
            && req_path.parse::<http::uri::PathAndQuery>().is_ok();
        if !valid_path {
            self.issue(
                format!("{path}.path"),
                Some(req_path.clone()),
                "is not a request path; expected something like /readyz (no spaces, control characters or #fragment)",
            );
        }
        let ca = raw
            .ca
            .as_deref()
            .map(|p| self.file(&format!("{path}.ca"), p));
        let client_cert = match (&raw.client_cert, &raw.client_key) {
            (Some(c), Some(k)) => Some((
                self.file(&format!("{path}.client_cert"), c),
                self.file(&format!("{path}.client_key"), k),
            )),
            (Some(_), None) => {
                self.issue(
                    format!("{path}.client_key"),
                    None,
                    "is missing; client_cert needs its client_key",
                );
                None
            }
            (None, Some(_)) => {
                self.issue(
                    format!("{path}.client_cert"),
                    None,
                    "is missing; client_key needs its client_cert",
                );
                None
            }
            (None, None) => None,
        };
        if let Some(name) = &raw.server_name {
            if rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
                self.issue(
                    format!("{path}.server_name"),
                    Some(name.clone()),
                    "is not a DNS name or IP address",
                );
            }
        }
        HttpsCheck {
            path: req_path,
            ca,
            client_cert,
            server_name: raw.server_name.clone(),
        }
    }

    /// Resolves a path relative to the config file and checks that it is a readable file.
    fn file(&mut self, key: &str, text: &str) -> PathBuf {
        let p = Path::new(text);
        let full = if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        };
        match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.issue(key, Some(text.to_owned()), "is not a file"),
            Err(e) => self.issue(
                key,
                Some(text.to_owned()),
                format!("cannot be read ({e}); expected an existing PEM file"),
            ),
        }
        full
    }

    fn threshold(&mut self, path: &str, value: Option<i64>, default: u32) -> u32 {
        match value {
            None => default,
            Some(n) if (1..=100).contains(&n) => n as u32,
            Some(n) => {
                self.issue(
                    path,
                    Some(n.to_string()),
                    "out of range; expected 1 to 100 consecutive results",
                );
                default
            }
        }
    }
}

struct FrontendDefaults {
    listen: Option<&'static str>,
    port: u16,
    check_kind: &'static str,
    path: &'static str,
}

/// Parses `IP`, `IP:port`, `[v6]:port` or a bare IPv6 address.
fn parse_host_port(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let text = text.trim();
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| (ip, None))
}

#[cfg(test)]
mod tests;
