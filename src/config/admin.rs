//! `admin:`: the HTTP endpoint for metrics, status and controls.

use std::net::SocketAddr;

use super::raw;
use super::validate::Validator;
use super::Frontend;

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

/// `admin.listen` as written in the file at `path`, read leniently: the rest of the
/// file may be invalid (the client commands find the daemon with it while the file is
/// being edited). `None` when the file cannot be read or parsed, or has no
/// `admin.listen` (the caller then uses [`DEFAULT_ADMIN_LISTEN`]); entries that are
/// not IP:port are skipped.
pub fn listen_hint(path: &std::path::Path) -> Option<Vec<SocketAddr>> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        admin: Option<AdminOnly>,
    }
    #[derive(serde::Deserialize)]
    struct AdminOnly {
        #[serde(default)]
        listen: Option<raw::OneOrMany>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let file: File = serde_saphyr::from_str(&text).ok()?;
    let listen = file.admin?.listen?.into_vec();
    Some(
        listen
            .iter()
            .filter_map(|t| match super::validate::parse_host_port(t)? {
                (ip, Some(port)) => Some(SocketAddr::new(ip, port)),
                _ => None,
            })
            .collect(),
    )
}

impl Validator {
    pub(super) fn admin(&mut self, raw: raw::RawAdmin, frontends: &[Frontend]) -> Admin {
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
}
