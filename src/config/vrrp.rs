//! `vrrp:`: the elections for the virtual IPs: one instance (a map), or a list of
//! instances, each its own election, optionally in sync groups that move together.
//!
//! ```yaml
//! vrrp:                       # a dual-stack control plane: both VIPs move together
//!   - name: api-v4
//!     interface: eth0
//!     address: 198.18.0.11
//!     vrid: 51
//!     vips: [198.18.0.5/24]
//!     sync_group: api
//!   - name: api-v6
//!     interface: eth0
//!     address: 2001:db8::11
//!     vrid: 51
//!     vips: [2001:db8::5/64]
//!     sync_group: api
//! ```

use std::net::IpAddr;
use std::time::Duration;

use super::raw;
use super::validate::Validator;
use super::{BackendId, Frontend, FrontendKind};

/// One VRRP instance (`vrrp:` or `vrrp[N]`): the election for its virtual IPs.
#[derive(Debug, Clone, PartialEq)]
pub struct Vrrp {
    /// The instance's name, unique in the file: logs, status, the `vrrp_instance`
    /// label of metrics and the NAME of notify hooks (keepalived's `vrrp_instance`).
    /// Defaults to `vrid-VRID` (`vrid-VRID-ipv6` for IPv6 in a list), or
    /// `notify.instance` for a single instance.
    pub name: String,
    /// The sync group this instance belongs to (keepalived's `vrrp_sync_group`): every
    /// instance with the same name moves together (`crate::vrrp::sync`).
    pub sync_group: Option<String>,
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

/// The longest instance or sync group name: it goes into logs, metric labels and
/// notify arguments.
const MAX_NAME_LEN: usize = 64;

/// What an instance or sync group name must be.
pub(super) const INSTANCE_NAME_EXPECTED: &str =
    "expected 1 to 64 letters, digits, '-', '_' or '.', e.g. api-v4 or VI_1";

/// Whether `text` is a usable instance or sync group name: one word of letters,
/// digits, `-`, `_` and `.` (it is a notify argument and a metric label).
pub(super) fn is_instance_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Validator {
    /// `vrrp:`, one instance or a list, with the checks across instances.
    /// `notify_instance` is `notify.instance`, the name of a single instance before
    /// instances had names.
    pub(super) fn vrrp_section(
        &mut self,
        raw: Option<raw::RawVrrpSection>,
        notify_instance: Option<&str>,
        frontends: &[Frontend],
    ) -> Vec<Vrrp> {
        let (raws, listed) = match raw {
            None => return Vec::new(),
            Some(raw::RawVrrpSection::One(r)) => (vec![*r], false),
            Some(raw::RawVrrpSection::Many(list)) => (list, true),
        };
        if listed && raws.is_empty() {
            self.issue(
                "vrrp",
                Some("[]".to_owned()),
                "is an empty list; expected at least one instance, or no vrrp section",
            );
        }
        let mut out = Vec::with_capacity(raws.len());
        for (i, r) in raws.into_iter().enumerate() {
            let key = if listed {
                format!("vrrp[{i}]")
            } else {
                "vrrp".to_owned()
            };
            let named = r.name.is_some();
            let before = self.issues.len();
            let mut v = self.vrrp(r, frontends);
            // Every issue of this instance under its own key.
            if listed {
                for issue in &mut self.issues[before..] {
                    if let Some(rest) = issue.path.strip_prefix("vrrp") {
                        issue.path = format!("{key}{rest}");
                    }
                }
            }
            match notify_instance.filter(|n| is_instance_name(n)) {
                Some(n) if listed => self.issue(
                    "notify.instance",
                    Some(n.to_owned()),
                    "names the only instance; with a list under vrrp, name each instance (vrrp[N].name)",
                ),
                Some(n) if named && v.name != n => self.issue(
                    "notify.instance",
                    Some(n.to_owned()),
                    format!("differs from vrrp.name ({}); keep one of them", v.name),
                ),
                Some(n) if !named => v.name = n.to_owned(),
                _ => {}
            }
            if !named && listed && v.instance.family() == crate::vrrp::packet::Family::Ipv6 {
                v.name.push_str("-ipv6");
            }
            out.push((key, v));
        }
        self.across_instances(&out);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Names, virtual routers and VIPs distinct across instances; sync groups of two
    /// or more.
    fn across_instances(&mut self, list: &[(String, Vrrp)]) {
        for (i, (key, v)) in list.iter().enumerate() {
            let earlier = &list[..i];
            if let Some((k, _)) = earlier.iter().find(|(_, o)| o.name == v.name) {
                self.issue(
                    format!("{key}.name"),
                    Some(v.name.clone()),
                    format!("is also the name of {k}; expected a name per instance"),
                );
            }
            if let Some((k, _)) = earlier.iter().find(|(_, o)| {
                o.interface == v.interface
                    && o.instance.vrid == v.instance.vrid
                    && o.instance.family() == v.instance.family()
            }) {
                self.issue(
                    format!("{key}.vrid"),
                    Some(v.instance.vrid.get().to_string()),
                    format!(
                        "{k} already runs this virtual router ({} on {}); expected another vrid, interface or address family",
                        match v.instance.family() {
                            crate::vrrp::packet::Family::Ipv4 => "IPv4",
                            crate::vrrp::packet::Family::Ipv6 => "IPv6",
                        },
                        v.interface
                    ),
                );
            }
            for (vip, _) in &v.vips {
                if let Some((k, _)) = earlier
                    .iter()
                    .find(|(_, o)| o.vips.iter().any(|(a, _)| a == vip))
                {
                    self.issue(
                        format!("{key}.vips"),
                        Some(vip.to_string()),
                        format!("is also a VIP of {k}; expected each VIP in one instance"),
                    );
                }
            }
            if let Some(g) = &v.sync_group {
                let members = list
                    .iter()
                    .filter(|(_, o)| o.sync_group.as_ref() == Some(g))
                    .count();
                if members < 2 {
                    self.issue(
                        format!("{key}.sync_group"),
                        Some(g.clone()),
                        "is the only instance of this sync group; expected two or more instances with the same sync_group, or none",
                    );
                }
            }
        }
    }

    /// Checks a name for logs, labels and notify arguments at `key`.
    fn instance_name(&mut self, key: &str, text: &str) -> bool {
        let ok = is_instance_name(text);
        if !ok {
            self.issue(key, Some(text.to_owned()), INSTANCE_NAME_EXPECTED);
        }
        ok
    }

    fn vrrp(&mut self, mut raw: raw::RawVrrp, frontends: &[Frontend]) -> Vrrp {
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
        let track = self.track(&raw, frontends);
        // The election's own cross-checks (families, weight below priority, ...) once
        // every field parsed.
        if self.issues.len() == issues_before {
            if let Err(e) = instance.validate() {
                self.issue("vrrp", None, e.to_string());
            }
        }
        let name = match raw.name.take() {
            Some(n) if self.instance_name("vrrp.name", &n) => n,
            _ => format!("vrid-{}", vrid.get()),
        };
        let sync_group = raw
            .sync_group
            .take()
            .filter(|g| self.instance_name("vrrp.sync_group", g));
        Vrrp {
            name,
            sync_group,
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
