//! The validator shared by every section, the top level of the file (`shutdown:`,
//! `log:`) and the helpers every section uses (ports, durations, files, listen lists).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::frontend::FrontendDefaults;
use super::raw::{self, RawConfig};
use super::secret::{secret_mode_problem, SecretMode};
use super::{
    Config, ConfigIssue, FrontendKind, Log, LogFormat, Shutdown, DEFAULT_APISERVER_LISTEN,
    DEFAULT_APISERVER_PORT, DEFAULT_ETCD_PORT,
};
use crate::units::parse_duration;

pub(super) fn parse_raw(text: &str) -> Result<RawConfig, ConfigIssue> {
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
pub(super) struct Validator {
    pub(super) issues: Vec<ConfigIssue>,
    pub(super) base: PathBuf,
    /// Backends already reported as duplicates (by index), so one is reported once.
    pub(super) duplicates: HashSet<usize>,
    /// Whether a missing file is an issue or a warning.
    pub(super) missing: super::MissingFiles,
    /// Problems that do not stop the config from loading: missing files when they are
    /// warnings, world-readable secrets (`apivip check` prints them, `apivip run` logs
    /// them; [`Config::warnings`]).
    pub(super) warnings: Vec<ConfigIssue>,
}

/// A parsed backend address: an IP and maybe a port.
pub(super) struct BackendAddr {
    /// Position in `backends:`, for messages.
    pub(super) index: usize,
    /// The address as written.
    pub(super) text: String,
    pub(super) name: String,
    pub(super) ip: IpAddr,
    pub(super) port: Option<u16>,
    pub(super) etcd_port: Option<u16>,
}

impl Validator {
    pub(super) fn new(source: &Path) -> Self {
        Validator {
            issues: Vec::new(),
            base: source.parent().map(Path::to_owned).unwrap_or_default(),
            duplicates: HashSet::new(),
            missing: super::MissingFiles::Error,
            warnings: Vec::new(),
        }
    }

    pub(super) fn issue(
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

    pub(super) fn config(&mut self, raw: RawConfig, source: &Path) -> Config {
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
        let notify_instance = raw.notify.as_ref().and_then(|n| n.instance.clone());
        let vrrp = self.vrrp_section(raw.vrrp, notify_instance.as_deref(), &frontends);
        let admin = self.admin(raw.admin.unwrap_or_default(), &frontends);
        let notify = self.notify(raw.notify, &vrrp);
        let dns = self.dns(raw.dns, &masters);
        Config {
            source: source.to_owned(),
            frontends,
            vrrp,
            shutdown: Shutdown { drain_timeout },
            log: Log { format, level },
            admin,
            notify,
            dns,
            warnings: Vec::new(),
        }
    }

    /// Parses a list of listen addresses at `key` (`key[i]` when there are several):
    /// each must be IP:port (`expected` says so), listed once, and not refused by
    /// `taken` (which says why).
    pub(super) fn listen_list(
        &mut self,
        key: &str,
        texts: &[String],
        expected: &str,
        taken: impl Fn(SocketAddr) -> Option<&'static str>,
    ) -> Vec<SocketAddr> {
        let mut listen = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let path = super::listen_key(key, i, texts.len());
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

    pub(super) fn backends(&mut self, raw: &[raw::RawBackend]) -> Vec<BackendAddr> {
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

    pub(super) fn port(&mut self, path: &str, value: i64) -> Option<u16> {
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

    pub(super) fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Option<Duration> {
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

    pub(super) fn positive_duration(
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

    /// Resolves a path relative to the config file and checks that it is a readable
    /// file: a PEM certificate or key (kubeadm init makes them).
    pub(super) fn file(&mut self, key: &str, text: &str) -> PathBuf {
        self.file_of(key, text, FileKind::Pem)
    }

    /// [`Validator::file`] for a file of this kind (for the messages).
    fn file_of(&mut self, key: &str, text: &str, kind: FileKind) -> PathBuf {
        let p = Path::new(text);
        let full = if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        };
        match std::fs::metadata(&full) {
            Ok(m) if m.is_file() => {}
            Ok(_) => self.issue(key, Some(text.to_owned()), "is not a file"),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.missing == super::MissingFiles::Warn =>
            {
                self.warnings.push(ConfigIssue {
                    path: key.to_owned(),
                    value: Some(text.to_owned()),
                    message: format!(
                        "does not exist yet ({}); the daemon needs it",
                        kind.made_by()
                    ),
                })
            }
            Err(e) => self.issue(
                key,
                Some(text.to_owned()),
                format!("cannot be read ({e}); expected {}", kind.expected()),
            ),
        }
        full
    }

    /// Like [`Validator::file`], for a file that holds a secret (a private key; later
    /// a TSIG secret): refused when group- or world-writable (whoever can write it can
    /// swap the key apivip presents), a warning when world-readable.
    pub(super) fn secret_file(&mut self, key: &str, text: &str) -> PathBuf {
        let full = self.file_of(
            key,
            text,
            if key.starts_with("dns.") {
                FileKind::TsigSecret
            } else {
                FileKind::Pem
            },
        );
        if let Ok(m) = std::fs::metadata(&full) {
            match secret_mode_problem(std::os::unix::fs::PermissionsExt::mode(&m.permissions())) {
                Some(SecretMode::Writable(mode)) => self.issue(
                    key,
                    Some(text.to_owned()),
                    format!("is writable by its group or by everyone (mode {mode:04o}); a file holding a secret must not be: chmod go-w (e.g. 0600)"),
                ),
                Some(SecretMode::WorldReadable(mode)) => self.warnings.push(ConfigIssue {
                    path: key.to_owned(),
                    value: Some(text.to_owned()),
                    message: format!("is readable by everyone (mode {mode:04o}); a file holding a secret should not be: chmod o-r (e.g. 0600)"),
                }),
                None => {}
            }
        }
        full
    }

    pub(super) fn threshold(&mut self, path: &str, value: Option<i64>, default: u32) -> u32 {
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

/// Parses `IP`, `IP:port`, `[v6]:port` or a bare IPv6 address.
pub(super) fn parse_host_port(text: &str) -> Option<(IpAddr, Option<u16>)> {
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

/// What a file named in the config holds, for the messages about it.
#[derive(Debug, Clone, Copy)]
enum FileKind {
    /// A certificate or key of the cluster's PKI.
    Pem,
    /// A TSIG secret (`dns.tsig.secret_file`).
    TsigSecret,
}

impl FileKind {
    fn made_by(self) -> &'static str {
        match self {
            FileKind::Pem => "kubeadm init makes it",
            FileKind::TsigSecret => "tsig-keygen makes it, see README.md \"DNS failover\"",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            FileKind::Pem => "an existing PEM file",
            FileKind::TsigSecret => {
                "an existing file with the TSIG secret (base64, or tsig-keygen's key clause)"
            }
        }
    }
}
