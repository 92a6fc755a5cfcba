//! The raw YAML schema: exactly what an operator writes, before validation.
//!
//! Every struct denies unknown keys, so a typo fails at load time and not during a
//! failover. Addresses, durations and counts are kept as written (strings, wide
//! integers) so that validation can report every bad value with its key path at once.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// The control-plane nodes (masters).
    #[serde(default)]
    pub(crate) backends: Vec<RawBackend>,
    /// The kube-apiserver frontend; present by default.
    #[serde(default)]
    pub(crate) apiserver: Option<RawFrontend>,
    /// The optional etcd frontend; off unless present.
    #[serde(default)]
    pub(crate) etcd: Option<RawFrontend>,
    /// The virtual IP (VRRP); off unless present. One instance, or a list.
    #[serde(default)]
    pub(crate) vrrp: Option<RawVrrpSection>,
    /// Shutdown behaviour.
    #[serde(default)]
    pub(crate) shutdown: Option<RawShutdown>,
    /// Logging.
    #[serde(default)]
    pub(crate) log: Option<RawLog>,
    /// The admin endpoint.
    #[serde(default)]
    pub(crate) admin: Option<RawAdmin>,
    /// Notify hooks (`notify.rs`).
    #[serde(default)]
    pub(crate) notify: Option<super::notify::RawNotify>,
    /// DNS failover (`dns.rs`); off unless present.
    #[serde(default)]
    pub(crate) dns: Option<super::dns::RawDns>,
}

/// `admin:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    /// One address or a list; `[]` turns the endpoint off.
    pub(crate) listen: Option<OneOrMany>,
}

/// One master.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub(crate) name: Option<String>,
    /// `198.18.0.11`, `198.18.0.11:6443`, `2001:db8::11` or `[2001:db8::11]:6443`.
    pub(crate) address: Option<String>,
    /// The etcd client port of this master, when it differs from `etcd.port`.
    pub(crate) etcd_port: Option<i64>,
}

/// One frontend (`apiserver:` or `etcd:`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrontend {
    /// One address or a list.
    pub(crate) listen: Option<OneOrMany>,
    /// The backend port used when a backend's address has none.
    pub(crate) port: Option<i64>,
    pub(crate) balance: Option<String>,
    pub(crate) max_connections: Option<i64>,
    pub(crate) connect_timeout: Option<String>,
    pub(crate) close_on_down: Option<bool>,
    pub(crate) not_ready_grace: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    /// Close a client that sends nothing for this long (`0s`: never).
    pub(crate) first_byte_timeout: Option<String>,
    /// Close a connection one side of which finished while the other stays silent.
    pub(crate) half_close_timeout: Option<String>,
    /// Connections one source address (IPv6: /64) may hold open (0: no limit).
    pub(crate) per_source_max_connections: Option<i64>,
    /// New connections per second one source may open (0: no limit).
    pub(crate) per_source_rate: Option<i64>,
    /// New connections one source may open at once after a quiet spell.
    pub(crate) per_source_burst: Option<i64>,
    /// Connections of a backend that went down closed per second (0: all at once).
    pub(crate) close_rate: Option<i64>,
    /// A backend that returns gets a ramp of new connections over this long.
    pub(crate) slow_start: Option<String>,
    /// Move connections from the most loaded masters to a returned one (off unless set).
    pub(crate) rebalance: Option<RawRebalance>,
    pub(crate) check: Option<RawCheck>,
}

/// `rebalance:` of a frontend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRebalance {
    /// Percent of the connections moved per second at most (0: off).
    pub(crate) rate_percent: Option<f64>,
    /// Connections younger than this are never moved.
    pub(crate) min_age: Option<String>,
    /// Percent of the mean within which the spread counts as even.
    pub(crate) spread_percent: Option<f64>,
}

/// A health check.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheck {
    pub(crate) kind: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) ca: Option<String>,
    pub(crate) client_cert: Option<String>,
    pub(crate) client_key: Option<String>,
    pub(crate) server_name: Option<String>,
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) rise: Option<i64>,
    pub(crate) fall: Option<i64>,
    /// Percent of the interval by which each wait is randomly shortened or lengthened.
    pub(crate) jitter_percent: Option<i64>,
}

/// `vrrp:`: one instance (a map, as before multi-instance), or a list of them.
#[derive(Debug)]
pub(crate) enum RawVrrpSection {
    One(Box<RawVrrp>),
    Many(Vec<RawVrrp>),
}

impl<'de> Deserialize<'de> for RawVrrpSection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawVrrpSection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a VRRP instance (interface, address, vrid, vips, ...) or a list of them",
                )
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawVrrpSection, A::Error> {
                RawVrrp::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|r| RawVrrpSection::One(Box::new(r)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<RawVrrpSection, A::Error> {
                Vec::<RawVrrp>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(RawVrrpSection::Many)
            }
        }
        d.deserialize_any(V)
    }
}

/// One VRRP instance (`vrrp:` or `vrrp[N]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVrrp {
    /// The instance's name (logs, status, metrics, notify).
    pub(crate) name: Option<String>,
    /// Instances of one sync group move together.
    pub(crate) sync_group: Option<String>,
    pub(crate) interface: Option<String>,
    pub(crate) address: Option<String>,
    pub(crate) vrid: Option<i64>,
    pub(crate) version: Option<i64>,
    pub(crate) priority: Option<i64>,
    pub(crate) advert_interval: Option<String>,
    pub(crate) vips: Option<OneOrMany>,
    pub(crate) unicast_peers: Option<Vec<String>>,
    pub(crate) owner: Option<String>,
    pub(crate) preempt: Option<bool>,
    pub(crate) preempt_delay: Option<String>,
    pub(crate) auth_pass: Option<String>,
    pub(crate) health_weight: Option<i64>,
    pub(crate) handover_timeout: Option<String>,
    pub(crate) announce_count: Option<i64>,
    pub(crate) announce_interval: Option<String>,
    pub(crate) announce_refresh: Option<String>,
    pub(crate) track: Option<String>,
}

/// `shutdown:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShutdown {
    pub(crate) drain_timeout: Option<String>,
}

/// `log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) format: Option<String>,
    pub(crate) level: Option<String>,
}

/// A string or a list of strings. Scalars of other types (a bare port such as
/// `8443`) are kept as text so that validation can say what is expected.
#[derive(Debug)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address or a list of addresses")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
