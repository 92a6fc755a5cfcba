//! `apiserver.check:` and `etcd.check:`: the active health checks.

use std::path::PathBuf;
use std::time::Duration;

use super::frontend::FrontendDefaults;
use super::raw::RawCheck;
use super::validate::Validator;
use crate::units::format_duration;

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

impl Validator {
    pub(super) fn check(
        &mut self,
        path: &str,
        raw: RawCheck,
        defaults: &FrontendDefaults,
    ) -> Check {
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

    pub(super) fn https(&mut self, path: &str, raw: &RawCheck, default_path: &str) -> HttpsCheck {
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
                self.secret_file(&format!("{path}.client_key"), k),
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
}
