//! Configuration: read, parse, validate.
//!
//! `load(path)` reads the file, [`Config::from_yaml`] parses it into the raw schema
//! ([`raw`]) and validates it into a typed [`Config`]. Validation collects every error
//! (each naming the file, the key path, the value and what is expected) before failing
//! once, so an operator fixes a file in one pass.
//!
//! One file per section, each holding its typed form and its validation:
//! [`frontend`] (`backends:`, `apiserver:`, `etcd:`), [`check`] (`*.check:`),
//! [`vrrp`] (`vrrp:`), [`admin`] (`admin:`), [`notify`] (`notify:`), [`dns`] (`dns:`); `validate` holds the shared validator and
//! the top level (`shutdown:`, `log:`).
//!
//! This module is sans-IO apart from checking that referenced files exist.

pub mod admin;
pub mod check;
pub mod diff;
pub mod dns;
pub mod frontend;
pub mod notify;
mod raw;
mod secret;
mod validate;
pub mod vrrp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use admin::{Admin, DEFAULT_ADMIN_LISTEN};
pub use check::{Check, CheckKind, HttpsCheck};
pub use frontend::{
    Backend, BackendId, Balance, Frontend, FrontendKind, DEFAULT_APISERVER_LISTEN,
    DEFAULT_APISERVER_PORT, DEFAULT_ETCD_PORT,
};
pub use vrrp::{Track, Vrrp};

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from, for messages.
    pub source: PathBuf,
    /// The frontends: always the apiserver, optionally etcd.
    pub frontends: Vec<Frontend>,
    /// The VRRP instances (the virtual IPs), in config order; empty without `vrrp:`.
    pub vrrp: Vec<Vrrp>,
    /// Shutdown behaviour.
    pub shutdown: Shutdown,
    /// Logging.
    pub log: Log,
    /// The admin endpoint.
    pub admin: Admin,
    /// Scripts run on VRRP state changes and backend transitions.
    pub notify: notify::Notify,
    /// DNS failover; `None` without `dns:`.
    pub dns: Option<dns::Dns>,
    /// What loading found questionable without refusing it (e.g. a world-readable
    /// key file); [`Config::warning_lines`] adds what follows from the values alone.
    pub warnings: Vec<ConfigIssue>,
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

/// The key naming the `i`th of `len` listen addresses under `base`, as messages
/// write it: `apiserver.listen` for a single address, `apiserver.listen[1]` in a list.
pub fn listen_key(base: &str, i: usize, len: usize) -> String {
    if len == 1 {
        base.to_owned()
    } else {
        format!("{base}[{i}]")
    }
}

/// What validation does about a certificate or key file that does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingFiles {
    /// An error: the daemon and `apivip check` need every file.
    #[default]
    Error,
    /// A warning: the generators (`apivip manifest`, `apivip kubeadm-config`) run before
    /// `kubeadm init` has made the cluster's PKI. Only a file that does not exist is
    /// let through; one that exists but is not a readable file is still an error.
    Warn,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, MissingFiles::Error).map(|(config, _)| config)
}

/// Reads and validates a config file, treating missing certificate and key files as
/// `missing` says; returns the config and the warnings (one per missing file).
pub fn load_with(
    path: &Path,
    missing: MissingFiles,
) -> Result<(Config, Vec<ConfigIssue>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    Config::from_yaml_with(&text, path, missing)
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

    /// Whether the apiserver proxy listens (deployment shapes 1 and 3; not "VIP only").
    pub fn proxy_listens(&self) -> bool {
        frontend::proxy_listens(&self.frontends)
    }

    /// Every backend of every frontend, in config order.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.frontends.iter().flat_map(|f| &f.backends)
    }

    /// Every warning, one line each as `apivip check` prints them
    /// (`FILE: warning: KEY: "VALUE": what`): those found at load
    /// ([`Config::warnings`]) and an admin endpoint readable from the network.
    pub fn warning_lines(&self) -> Vec<String> {
        let file = self.source.display();
        let mut lines: Vec<String> = self
            .warnings
            .iter()
            .map(|w| format!("{file}: warning: {w}"))
            .collect();
        for a in self.admin.exposed() {
            lines.push(format!(
                "{file}: warning: admin.listen: \"{a}\": not a loopback address: metrics and status are readable from the network (controls are still refused from it)"
            ));
        }
        lines
    }

    /// Parses and validates YAML text; `source` names the file in messages and is
    /// the base for relative certificate paths.
    pub fn from_yaml(text: &str, source: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml_with(text, source, MissingFiles::Error).map(|(config, _)| config)
    }

    /// [`Config::from_yaml`], treating missing certificate and key files as `missing`
    /// says; returns the config and the warnings.
    pub fn from_yaml_with(
        text: &str,
        source: &Path,
        missing: MissingFiles,
    ) -> Result<(Config, Vec<ConfigIssue>), ConfigError> {
        let raw = validate::parse_raw(text).map_err(|issue| ConfigError::Parse {
            file: source.to_owned(),
            issue,
        })?;
        let mut v = validate::Validator::new(source);
        v.missing = missing;
        let mut config = v.config(raw, source);
        if v.issues.is_empty() {
            config.warnings = v.warnings.clone();
            Ok((config, v.warnings))
        } else {
            Err(ConfigError::Invalid {
                file: source.to_owned(),
                issues: v.issues,
            })
        }
    }
}

#[cfg(test)]
mod tests;
