//! `vrrp:`: the election for the virtual IP.

use std::net::IpAddr;
use std::time::Duration;

use super::raw;
use super::validate::Validator;
use super::{BackendId, Frontend, FrontendKind};

/// `vrrp:`: the election for the virtual IP.
#[derive(Debug, Clone, PartialEq)]
pub struct Vrrp {
    /// The interface the VIP lives on and adverts are sent on.
    pub interface: String,
    /// The election itself (VRID, version and interval, priority, VIPs, peers, ...).
    pub instance: crate::vrrp::machine::InstanceConfig,
    /// The VIPs with their prefix lengths, as added to the interface.
    pub vips: Vec<(IpAddr, u8)>,
    /// What this node's priority follows.
    pub track: Track,
}

/// What the VIP follows (DESIGN.md, deployment shapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Track {
    /// VIP + proxy: this node can serve while its proxy listens and at least one
    /// backend of this frontend (the apiserver's) is healthy from here.
    Proxy(FrontendKind),
    /// VIP only: the readiness of this node's own apiserver (`track: backend:NAME`).
    Backend(BackendId),
}

impl Validator {
    pub(super) fn vrrp(&mut self, mut raw: raw::RawVrrp, frontends: &[Frontend]) -> Vrrp {
        use crate::vrrp::machine::InstanceConfig;
        use crate::vrrp::units::{Priority, Vrid};
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
        let version_cfg = self.vrrp_version(&raw);
        let vips = self.vips(raw.vips.take());
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
        let owner = raw.owner.as_ref().and_then(|t| match t.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.issue(
                    "vrrp.owner",
                    Some(t.clone()),
                    "is not an IP address; expected the address of the node with priority 255",
                );
                None
            }
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
        instance.owner = owner;
        instance.preempt = raw.preempt.unwrap_or(true);
        instance.preempt_delay = preempt_delay;
        instance.health_weight = health_weight;
        if let Some(t) = raw.handover_timeout.as_deref() {
            if let Some(d) = self.duration("vrrp.handover_timeout", Some(t), Duration::ZERO) {
                instance.handover_timeout = d;
            }
        }
        instance.announce_count = match raw.announce_count {
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
        instance.announce_interval = self
            .duration(
                "vrrp.announce_interval",
                raw.announce_interval.as_deref(),
                Duration::from_millis(200),
            )
            .unwrap_or_default();
        // While Master, announce again every second (0: never), so that a client a
        // node pulled away during a split its claim never reached comes back.
        instance.announce_refresh = match self.duration(
            "vrrp.announce_refresh",
            raw.announce_refresh.as_deref(),
            Duration::from_secs(1),
        ) {
            Some(d) if !d.is_zero() && d < Duration::from_millis(100) => {
                self.issue(
                    "vrrp.announce_refresh",
                    raw.announce_refresh.clone(),
                    "below 100ms (a broadcast storm); use 0 to turn it off",
                );
                Duration::ZERO
            }
            d => d.unwrap_or_default(),
        };
        let track = self.track(&raw, frontends);
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
            track,
        }
    }

    /// `vrrp.version`, `vrrp.advert_interval` and `vrrp.auth_pass`.
    fn vrrp_version(&mut self, raw: &raw::RawVrrp) -> crate::vrrp::machine::VersionConfig {
        use crate::vrrp::machine::VersionConfig;
        use crate::vrrp::units::{Centisecs, Password, Secs};
        let version = raw.version.unwrap_or(3);
        let interval_text = raw.advert_interval.as_deref();
        let default_interval = if version == 2 {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(100)
        };
        let interval =
            self.positive_duration("vrrp.advert_interval", interval_text, default_interval);
        match version {
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
        }
    }

    /// `vrrp.vips`: addresses with optional prefix lengths.
    fn vips(&mut self, texts: Option<raw::OneOrMany>) -> Vec<(IpAddr, u8)> {
        let mut vips = Vec::new();
        let vip_texts = texts.map(raw::OneOrMany::into_vec).unwrap_or_default();
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
        vips
    }

    /// `vrrp.track`: `proxy`, or `backend:NAME` naming an apiserver backend.
    fn track(&mut self, raw: &raw::RawVrrp, frontends: &[Frontend]) -> Track {
        let apiserver_listens = super::frontend::proxy_listens(frontends);
        match raw.track.as_deref() {
            None | Some("proxy") if apiserver_listens => Track::Proxy(FrontendKind::Apiserver),
            None | Some("proxy") => {
                self.issue("vrrp.track", raw.track.clone(), "the proxy does not listen (apiserver.listen is empty); expected track: backend:NAME naming this node's apiserver");
                Track::Proxy(FrontendKind::Apiserver)
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
                        Track::Proxy(FrontendKind::Apiserver)
                    }
                }
            }
        }
    }
}
