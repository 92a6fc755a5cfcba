//! `backends:`, `apiserver:` and `etcd:`: the frontends and the masters they balance to.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawFrontend;
use super::validate::{BackendAddr, Validator};
use super::Check;

/// The default apiserver frontend listen address (deployment shape 1: VIP + proxy).
pub const DEFAULT_APISERVER_LISTEN: &str = "0.0.0.0:8443";
/// The default kube-apiserver port on each master.
pub const DEFAULT_APISERVER_PORT: u16 = 6443;
/// The default etcd client port on each master.
pub const DEFAULT_ETCD_PORT: u16 = 2379;

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
    /// Close a client that has sent nothing this long after it connected; the backend
    /// is connected only once the client has spoken. `None` (`0s`) connects at once and
    /// waits for ever. Clients of kube-apiserver and etcd always speak first (a TLS
    /// ClientHello or an HTTP request).
    pub first_byte_timeout: Option<Duration>,
    /// Close a connection this long after one side finished sending while the other
    /// stays silent (HAProxy's `timeout client-fin` / `server-fin`); `None` never does.
    pub half_close_timeout: Option<Duration>,
    /// Connections of a backend that went down closed per second, spread at random
    /// over at most [`MAX_CLOSE_SPREAD`]; `None` closes them all at once.
    pub close_rate: Option<u32>,
    /// A backend that returns (down, then up) gets a linear ramp of its share of new
    /// connections over this long (HAProxy's `slowstart`); `None` (`0s`, the default):
    /// its full share at once.
    pub slow_start: Option<Duration>,
    /// Moving connections from the most loaded masters to the least loaded (a returned
    /// one); `None` (the default) never moves a connection.
    pub rebalance: Option<crate::proxy::rebalance::Settings>,
    /// Per-source limits (on by default, generous; see the `DEFAULT_PER_SOURCE_*`).
    pub per_source: crate::proxy::admission::Limits,
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

/// Whether the apiserver frontend among `frontends` listens.
pub(super) fn proxy_listens(frontends: &[Frontend]) -> bool {
    frontends
        .iter()
        .any(|f| f.kind == FrontendKind::Apiserver && !f.listen.is_empty())
}

impl Validator {
    pub(super) fn frontend(
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
        let first_byte_timeout = self
            .duration(
                &format!("{name}.first_byte_timeout"),
                raw.first_byte_timeout.as_deref(),
                DEFAULT_FIRST_BYTE_TIMEOUT,
            )
            .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
        let half_close_timeout = self
            .duration(
                &format!("{name}.half_close_timeout"),
                raw.half_close_timeout.as_deref(),
                DEFAULT_HALF_CLOSE_TIMEOUT,
            )
            .unwrap_or(DEFAULT_HALF_CLOSE_TIMEOUT);
        let close_rate = match raw.close_rate {
            None => Some(DEFAULT_CLOSE_RATE),
            Some(0) => None,
            Some(n) if (1..=i64::from(MAX_PER_SOURCE_RATE)).contains(&n) => Some(n as u32),
            Some(n) => {
                self.issue(
                    format!("{name}.close_rate"),
                    Some(n.to_string()),
                    format!("out of range; expected 1 to {MAX_PER_SOURCE_RATE} connections a second, or 0 to close all at once"),
                );
                Some(DEFAULT_CLOSE_RATE)
            }
        };
        let slow_start = self
            .duration(
                &format!("{name}.slow_start"),
                raw.slow_start.as_deref(),
                Duration::ZERO,
            )
            .filter(|d| !d.is_zero());
        let rebalance = raw.rebalance.and_then(|r| self.rebalance(name, r));
        let per_source = self.per_source(
            name,
            [
                raw.per_source_max_connections,
                raw.per_source_rate,
                raw.per_source_burst,
            ],
            max_connections,
        );
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
            first_byte_timeout: Some(first_byte_timeout).filter(|d| !d.is_zero()),
            half_close_timeout: Some(half_close_timeout).filter(|d| !d.is_zero()),
            per_source,
            close_rate,
            slow_start,
            rebalance,
            check,
        }
    }

    /// `rebalance:`: on with defaults for the keys left out; `rate_percent: 0` is off.
    fn rebalance(
        &mut self,
        name: &str,
        raw: super::raw::RawRebalance,
    ) -> Option<crate::proxy::rebalance::Settings> {
        let mut percent = |key: &str, value: Option<f64>, default: f64, zero: bool| match value {
            None => Some(default),
            Some(v) if v.is_finite() && v <= 100.0 && (v > 0.0 || (zero && v == 0.0)) => Some(v),
            Some(v) => {
                let low = if zero { "0" } else { "more than 0" };
                self.issue(
                    format!("{name}.rebalance.{key}"),
                    Some(v.to_string()),
                    format!("out of range; expected {low} to 100 (percent)"),
                );
                None
            }
        };
        let rate = percent(
            "rate_percent",
            raw.rate_percent,
            DEFAULT_REBALANCE_RATE_PERCENT,
            true,
        );
        let spread = percent(
            "spread_percent",
            raw.spread_percent,
            DEFAULT_REBALANCE_SPREAD_PERCENT,
            true,
        );
        let min_age = self.duration(
            &format!("{name}.rebalance.min_age"),
            raw.min_age.as_deref(),
            DEFAULT_REBALANCE_MIN_AGE,
        );
        let (rate, spread, min_age) = (rate?, spread?, min_age?);
        (rate > 0.0).then(|| crate::proxy::rebalance::Settings {
            rate: rate / 100.0,
            min_age,
            spread: spread / 100.0,
        })
    }

    /// `per_source_max_connections`, `per_source_rate` and `per_source_burst`.
    fn per_source(
        &mut self,
        name: &str,
        [raw_max, raw_rate, raw_burst]: [Option<i64>; 3],
        max_connections: usize,
    ) -> crate::proxy::admission::Limits {
        use crate::proxy::admission::{Limits, Rate};
        // Leave a key out for its default; 0 is no limit where `off` says so.
        let mut count = |key: &str, value: Option<i64>, default: u32, max: u32, off: bool| {
            let limit = Some(default).filter(|d| *d > 0);
            match value {
                None => limit,
                Some(0) if off => None,
                Some(n) if (1..=i64::from(max)).contains(&n) => Some(n as u32),
                Some(n) => {
                    let zero = if off { ", or 0 for no limit" } else { "" };
                    self.issue(
                        format!("{name}.{key}"),
                        Some(n.to_string()),
                        format!("out of range; expected 1 to {max}{zero}"),
                    );
                    limit
                }
            }
        };
        let connections = u32::try_from(max_connections).unwrap_or(u32::MAX);
        let max = count(
            "per_source_max_connections",
            raw_max,
            DEFAULT_PER_SOURCE_MAX_CONNECTIONS.min(connections),
            connections,
            true,
        );
        let per_second = count(
            "per_source_rate",
            raw_rate,
            DEFAULT_PER_SOURCE_RATE,
            MAX_PER_SOURCE_RATE,
            true,
        );
        let burst = count(
            "per_source_burst",
            raw_burst,
            default_burst(per_second.unwrap_or(0)),
            MAX_PER_SOURCE_RATE.saturating_mul(60),
            false,
        );
        if raw_burst.is_some() && per_second.is_none() {
            self.issue(
                format!("{name}.per_source_burst"),
                raw_burst.map(|b| b.to_string()),
                "is set without per_source_rate (no rate limit): set a rate too, or leave the burst out",
            );
        }
        Limits {
            max_connections: max,
            rate: per_second.map(|per_second| Rate {
                per_second,
                burst: burst.unwrap_or(1),
            }),
        }
    }
}

/// The default `first_byte_timeout`: a client that says nothing for this long is not a
/// Kubernetes client.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `per_source_max_connections`: far above what one node's kubelet and
/// system pods hold, far below the frontend's `max_connections` (8,000), so that one
/// address cannot lock the others out. Capped at `max_connections`.
pub const DEFAULT_PER_SOURCE_MAX_CONNECTIONS: u32 = 1000;
/// The default `per_source_rate`: none (0). New connections cost the proxy little (the
/// TLS handshake happens at the master), and a CI runner or NAT may open many a second;
/// set it where one address must not churn the masters' handshakes.
pub const DEFAULT_PER_SOURCE_RATE: u32 = 0;
/// The default `close_rate`: the 5,000 connections of a busy master move in 5 s, so
/// the others take their reconnects (and re-lists) over seconds, not in one instant.
pub const DEFAULT_CLOSE_RATE: u32 = 1000;
/// The longest a backend's connections are spread over when it goes down, whatever
/// `close_rate` and their number: past it, they close faster.
pub const MAX_CLOSE_SPREAD: Duration = Duration::from_secs(5);
/// The largest `per_source_rate` (new connections per second from one address).
pub const MAX_PER_SOURCE_RATE: u32 = 1_000_000;
/// The default `per_source_burst` once a rate is set: two seconds' worth, at least one
/// (a kube-apiserver starting opens its etcd connections at once).
fn default_burst(per_second: u32) -> u32 {
    per_second.saturating_mul(2).max(1)
}
/// The default `rebalance.rate_percent`: 1 % of the connections a second, so the third
/// of 3,000 connections a returned master should carry moves in about 35 s.
pub const DEFAULT_REBALANCE_RATE_PERCENT: f64 = 1.0;
/// The default `rebalance.spread_percent`.
pub const DEFAULT_REBALANCE_SPREAD_PERCENT: f64 = 10.0;
/// The default `rebalance.min_age`: a client moved (or new) is not moved again for a
/// minute.
pub const DEFAULT_REBALANCE_MIN_AGE: Duration = Duration::from_secs(60);
/// The default `half_close_timeout`.
pub const DEFAULT_HALF_CLOSE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) struct FrontendDefaults {
    pub(super) listen: Option<&'static str>,
    pub(super) port: u16,
    pub(super) check_kind: &'static str,
    pub(super) path: &'static str,
}
