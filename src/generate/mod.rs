//! Generators: what an operator would otherwise write by hand.
//!
//! - [`config`]: `apivip config`, a complete, commented config for this node from a few
//!   flags and what [`detect`] finds on the node (interfaces and their addresses).
//! - [`manifest`]: `apivip manifest`, the static pod for `/etc/kubernetes/manifests/`.
//! - [`kubeadm`]: `apivip kubeadm-config`, the `ClusterConfiguration` fragment
//!   (`controlPlaneEndpoint`, `apiServer.certSANs`) for the config's shape.
//!
//! Each generator is a pure function from options (and, for the config, the detected
//! facts) to text: no I/O, so every output is unit-tested exactly. [`detect`] is the thin
//! shell that reads the node. The manifest and the kubeadm fragment read this node's
//! validated [`Config`], loaded with [`MissingFiles::Warn`](crate::config::MissingFiles)
//! so that they work before `kubeadm init` has made the PKI.

pub mod config;
pub mod detect;
pub mod kubeadm;
pub mod manifest;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::config::Config;

/// The deployment shapes (DESIGN.md, "Deployment shapes"), and DNS failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// The VIP floats between the masters; apivip listens on :8443 and balances to
    /// every master's :6443. `controlPlaneEndpoint: VIP:8443`.
    #[default]
    VipProxy,
    /// apivip only floats the VIP, following this node's own apiserver; the apiserver
    /// answers on VIP:6443 itself. `controlPlaneEndpoint: VIP:6443`.
    VipOnly,
    /// No VIP: every node runs apivip as a local proxy on 127.0.0.1.
    /// `controlPlaneEndpoint: 127.0.0.1:8443` (or a name that resolves to it).
    LocalProxy,
    /// No VIP, no L2 segment shared by the masters: apivip on every master keeps a DNS
    /// name pointing at the masters whose apiserver is ready (RFC 2136 + TSIG).
    /// `controlPlaneEndpoint: NAME:6443`.
    Dns,
}

impl Shape {
    /// Every shape, in the order of the docs.
    pub const ALL: [Shape; 4] = [
        Shape::VipProxy,
        Shape::VipOnly,
        Shape::LocalProxy,
        Shape::Dns,
    ];

    /// The flag value: `vip-proxy`, `vip-only`, `local-proxy`, `dns`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Shape::VipProxy => "vip-proxy",
            Shape::VipOnly => "vip-only",
            Shape::LocalProxy => "local-proxy",
            Shape::Dns => "dns",
        }
    }

    /// One line for comments and messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Shape::VipProxy => "VIP + proxy: the VIP floats between the masters, apivip balances to every apiserver",
            Shape::VipOnly => "VIP only: the VIP follows this node's own apiserver, which answers on it directly",
            Shape::LocalProxy => "local proxy: no VIP, apivip on every node balances to the masters from 127.0.0.1",
            Shape::Dns => "DNS failover: no VIP, a DNS name follows the masters whose apiserver is ready (RFC 2136 updates signed with TSIG)",
        }
    }

    /// The shape a validated config has: a VIP with a listening proxy, a VIP without
    /// one, no VIP with a `dns:` name and no proxy, or no VIP.
    pub fn of(config: &Config) -> Shape {
        match (config.vrrp.first(), config.proxy_listens()) {
            (Some(_), true) => Shape::VipProxy,
            (Some(_), false) => Shape::VipOnly,
            (None, false) if config.dns.is_some() => Shape::Dns,
            (None, _) => Shape::LocalProxy,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.as_str() == s)
            .ok_or_else(|| {
                format!("unknown shape {s:?}; expected vip-proxy, vip-only, local-proxy or dns")
            })
    }
}

/// Why a generator could not produce its output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// A flag's value is wrong; the message says what is expected.
    #[error("--{flag}: {value:?}: {message}")]
    Flag {
        /// The flag, without the dashes.
        flag: &'static str,
        /// Its value as given.
        value: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// Two flags do not go together, or a needed flag is missing.
    #[error("{0}")]
    Usage(String),
    /// Something could not be detected on this node; the message names the flag that
    /// gives it.
    #[error("{0}")]
    Undetected(String),
    /// The config lacks what the output needs.
    #[error("{0}")]
    Config(String),
}

/// `host:port` as Kubernetes and kubeadm write it (IPv6 in brackets).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address a local client uses to reach a listener: an unspecified address
/// (`0.0.0.0`, `::`) becomes loopback of the same family.
pub fn reachable_locally(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// A YAML scalar that reads back as exactly `s`: plain when that is safe, else
/// double-quoted (JSON escaping is valid YAML).
pub(crate) fn yaml_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "./_-".contains(c))
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        s.to_owned()
    } else {
        serde_json::Value::String(s.to_owned()).to_string()
    }
}

/// The validated config of `yaml`, as the manifest and kubeadm generators read it: loaded
/// with [`MissingFiles::Warn`](crate::config::MissingFiles), so that tests need no PKI files.
#[cfg(test)]
pub(crate) fn test_config(yaml: &str) -> Config {
    Config::from_yaml_with(
        yaml,
        std::path::Path::new("/etc/apivip/apivip.yaml"),
        crate::config::MissingFiles::Warn,
    )
    .unwrap()
    .0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_names_round_trip() {
        for shape in Shape::ALL {
            assert_eq!(shape.as_str().parse::<Shape>(), Ok(shape));
        }
        assert!("vip".parse::<Shape>().is_err());
    }

    #[test]
    fn yaml_scalars_read_back_as_written() {
        for s in [
            "master-1",
            "198.18.0.5",
            "198.18.0.5:8443",
            "2001:db8::5",
            "yes",
            "No",
            "",
            "a b",
            "#x",
            "/etc/kubernetes/pki/ca.crt",
            "quote\"d",
            "1e3",
        ] {
            let text = format!("k: {}\n", yaml_str(s));
            let v: std::collections::BTreeMap<String, String> =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(v["k"], s, "{text}");
        }
    }

    #[test]
    fn host_port_brackets_ipv6() {
        assert_eq!(host_port("198.18.0.5", 8443), "198.18.0.5:8443");
        assert_eq!(host_port("2001:db8::5", 6443), "[2001:db8::5]:6443");
        assert_eq!(host_port("api.example", 6443), "api.example:6443");
        assert_eq!(
            reachable_locally("0.0.0.0:9469".parse().unwrap()),
            "127.0.0.1:9469".parse().unwrap()
        );
        assert_eq!(
            reachable_locally("[::]:9469".parse().unwrap()),
            "[::1]:9469".parse().unwrap()
        );
    }
}
