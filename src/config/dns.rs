//! `dns:`: the control-plane name follows apiserver health by RFC 2136 updates
//! signed with TSIG (issue 12; the publisher is [`crate::dns::publisher`]).
//!
//! ```yaml
//! dns:
//!   servers: [198.18.0.53]          # the zone's primary first, then fallbacks (IP or IP:port)
//!   zone: cluster.example.
//!   name: api.cluster.example.      # controlPlaneEndpoint: api.cluster.example:6443
//!   ttl: 5s
//!   types: [A]                      # default: the families of the masters' addresses
//!   node: master-1                  # which backend this node is
//!   tsig:
//!     key: apivip-key.
//!     algorithm: hmac-sha256        # or hmac-sha512
//!     secret_file: /etc/apivip/dns.key   # base64, or tsig-keygen's key clause
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use serde::Deserialize;

use super::validate::{parse_host_port, BackendAddr, Validator};
use crate::dns::votes::default_quorum;
use crate::dns::wire::Algorithm;

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// The longest TTL accepted: a cached old answer outlives a failover by the TTL.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// `dns:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    pub(crate) servers: Option<Vec<String>>,
    pub(crate) zone: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) ttl: Option<String>,
    pub(crate) types: Option<Vec<String>>,
    pub(crate) publish: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub(crate) node: Option<String>,
    pub(crate) state_name: Option<String>,
    pub(crate) quorum: Option<i64>,
    pub(crate) heartbeat: Option<String>,
    pub(crate) stale_after: Option<String>,
    pub(crate) resync: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) retry_max: Option<String>,
    pub(crate) tsig: Option<RawTsig>,
}

/// `dns.tsig:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTsig {
    pub(crate) key: Option<String>,
    pub(crate) algorithm: Option<String>,
    pub(crate) secret_file: Option<String>,
}

/// A TSIG secret. Never printed: its `Debug` is `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The decoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `dns.tsig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tsig {
    /// The key's name.
    pub key: Name,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Where the secret was read from.
    pub secret_file: PathBuf,
    /// The secret.
    pub secret: Secret,
}

/// One master as the name publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMaster {
    /// The backend's name.
    pub name: String,
    /// Its published addresses.
    pub addrs: Vec<IpAddr>,
}

/// `dns:`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// The zone's primary first, then fallbacks.
    pub servers: Vec<SocketAddr>,
    /// The zone.
    pub zone: Name,
    /// The published name.
    pub name: Name,
    /// Where the votes live (`_apivip.` + name by default).
    pub state_name: Name,
    /// The TTL of the records apivip writes.
    pub ttl: Duration,
    /// A and/or AAAA.
    pub types: Vec<RecordType>,
    /// Every master with its published addresses.
    pub masters: Vec<DnsMaster>,
    /// Which master this node is (`None`: found at start from the local addresses).
    pub node: Option<String>,
    /// Votes needed to move a master in or out.
    pub quorum: usize,
    /// The vote refresh (0: never).
    pub heartbeat: Duration,
    /// A vote unchanged this long has expired.
    pub stale_after: Duration,
    /// The periodic read.
    pub resync: Duration,
    /// One exchange's deadline.
    pub timeout: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
    /// The key.
    pub tsig: Tsig,
}

impl Validator {
    /// `dns:`, given the backends (the masters).
    pub(super) fn dns(&mut self, raw: Option<RawDns>, masters: &[BackendAddr]) -> Option<Dns> {
        let raw = raw?;
        let before = self.issues.len();
        let servers = self.dns_servers(raw.servers.as_deref());
        let zone = self.dns_name("dns.zone", raw.zone.as_deref(), true);
        let name = self.dns_name("dns.name", raw.name.as_deref(), true);
        if let (Some(z), Some(n)) = (&zone, &name) {
            if !z.zone_of(n) {
                self.issue(
                    "dns.name",
                    raw.name.clone(),
                    format!(
                        "is not inside the zone {}; expected a name under it",
                        z.to_ascii()
                    ),
                );
            }
        }
        let state_name = match (raw.state_name.as_deref(), &name) {
            (Some(text), _) => self.dns_name("dns.state_name", Some(text), true),
            (None, Some(n)) => {
                let made = Name::from_ascii("_apivip")
                    .ok()
                    .and_then(|p| p.append_domain(n).ok());
                if made.is_none() {
                    self.issue(
                        "dns.name",
                        Some(n.to_ascii()),
                        "is too long for the votes' name _apivip.NAME (255 bytes at most); shorten it or set dns.state_name",
                    );
                }
                made
            }
            (None, None) => None,
        };
        if let (Some(z), Some(s)) = (&zone, &state_name) {
            if !z.zone_of(s) {
                self.issue(
                    "dns.state_name",
                    raw.state_name.clone().or_else(|| Some(s.to_ascii())),
                    "is not inside the zone; expected a name under it",
                );
            }
            if name.as_ref() == Some(s) {
                self.issue(
                    "dns.state_name",
                    Some(s.to_ascii()),
                    "is the published name itself; expected another name (default _apivip.NAME)",
                );
            }
        }
        let ttl = self
            .duration("dns.ttl", raw.ttl.as_deref(), Duration::from_secs(5))
            .unwrap_or(Duration::from_secs(5));
        if ttl.subsec_nanos() != 0 || ttl > MAX_TTL {
            self.issue(
                "dns.ttl",
                raw.ttl.clone(),
                "out of range; expected whole seconds from 0s to 1h",
            );
        }
        let dns_masters = self.dns_masters(raw.publish.as_ref(), masters);
        let types = self.dns_types(raw.types.as_deref(), &dns_masters);
        let node = raw.node.clone();
        if let Some(n) = &node {
            if !masters.iter().any(|m| &m.name == n) {
                self.issue(
                    "dns.node",
                    Some(n.clone()),
                    "is not a backend name; expected the name of this node in backends",
                );
            }
        }
        let count = dns_masters.len();
        let quorum = match raw.quorum {
            None => default_quorum(count),
            Some(q) if q >= 1 && (q as usize) <= count.max(1) => q as usize,
            Some(q) => {
                self.issue(
                    "dns.quorum",
                    Some(q.to_string()),
                    format!(
                        "out of range; expected 1 to {} (the number of masters)",
                        count.max(1)
                    ),
                );
                default_quorum(count)
            }
        };
        let heartbeat = self
            .duration(
                "dns.heartbeat",
                raw.heartbeat.as_deref(),
                Duration::from_secs(60),
            )
            .unwrap_or(Duration::from_secs(60));
        let stale_after = self
            .duration("dns.stale_after", raw.stale_after.as_deref(), heartbeat * 3)
            .unwrap_or(heartbeat * 3);
        if !heartbeat.is_zero() && stale_after < heartbeat * 2 {
            self.issue(
                "dns.stale_after",
                raw.stale_after.clone(),
                format!("is less than twice dns.heartbeat ({heartbeat:?}); a live node's vote would expire"),
            );
        }
        let resync =
            self.positive_duration("dns.resync", raw.resync.as_deref(), Duration::from_secs(10));
        let timeout = self.positive_duration(
            "dns.timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(2),
        );
        if timeout >= resync {
            self.issue(
                "dns.timeout",
                raw.timeout.clone(),
                format!("is not shorter than dns.resync ({resync:?})"),
            );
        }
        let retry_max = self.positive_duration(
            "dns.retry_max",
            raw.retry_max.as_deref(),
            Duration::from_secs(10),
        );
        let tsig = self.tsig(raw.tsig);
        if self.issues.len() > before {
            return None;
        }
        Some(Dns {
            servers,
            zone: zone?,
            name: name?,
            state_name: state_name?,
            ttl,
            types,
            masters: dns_masters,
            node,
            quorum,
            heartbeat,
            stale_after,
            resync,
            timeout,
            retry_max,
            tsig: tsig?,
        })
    }

    fn dns_servers(&mut self, raw: Option<&[String]>) -> Vec<SocketAddr> {
        let Some(list) = raw.filter(|l| !l.is_empty()) else {
            self.issue(
                "dns.servers",
                None,
                "is missing; expected the zone's primary server, e.g. [198.18.0.53]",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            match parse_host_port(text) {
                Some((_, Some(0))) | None => self.issue(
                    format!("dns.servers[{i}]"),
                    Some(text.clone()),
                    "is not a server address; expected an IP or IP:port (no host names: the DNS must not depend on itself)",
                ),
                Some((ip, port)) => out.push(SocketAddr::new(ip, port.unwrap_or(DNS_PORT))),
            }
        }
        out
    }

    fn dns_name(&mut self, key: &str, text: Option<&str>, required: bool) -> Option<Name> {
        let Some(text) = text else {
            if required {
                self.issue(
                    key,
                    None,
                    "is missing; expected a domain name, e.g. cluster.example.",
                );
            }
            return None;
        };
        match Name::from_ascii(text) {
            Ok(mut n) if n.num_labels() > 0 => {
                n.set_fqdn(true);
                Some(n)
            }
            Ok(_) => {
                self.issue(
                    key,
                    Some(text.to_owned()),
                    "is the root; expected a domain name",
                );
                None
            }
            Err(e) => {
                self.issue(
                    key,
                    Some(text.to_owned()),
                    format!("is not a domain name: {e}"),
                );
                None
            }
        }
    }

    fn dns_masters(
        &mut self,
        publish: Option<&std::collections::BTreeMap<String, Vec<String>>>,
        masters: &[BackendAddr],
    ) -> Vec<DnsMaster> {
        let mut seen = BTreeSet::new();
        if let Some(p) = publish {
            for name in p.keys() {
                if !masters.iter().any(|m| &m.name == name) {
                    self.issue(
                        format!("dns.publish.{name}"),
                        None,
                        "is not a backend name; expected a name from backends",
                    );
                }
            }
        }
        let mut out = Vec::new();
        for m in masters {
            let addrs = match publish.and_then(|p| p.get(&m.name)) {
                None => vec![m.ip],
                Some(list) => {
                    let mut addrs = Vec::new();
                    for (i, text) in list.iter().enumerate() {
                        match text.parse::<IpAddr>() {
                            Ok(ip) => addrs.push(ip),
                            Err(_) => self.issue(
                                format!("dns.publish.{}[{i}]", m.name),
                                Some(text.clone()),
                                "is not an IP address",
                            ),
                        }
                    }
                    addrs
                }
            };
            for a in &addrs {
                if !seen.insert(*a) {
                    self.issue(
                        format!("dns.publish.{}", m.name),
                        Some(a.to_string()),
                        "is published for two masters; expected one address per master",
                    );
                }
            }
            out.push(DnsMaster {
                name: m.name.clone(),
                addrs,
            });
        }
        out
    }

    fn dns_types(&mut self, raw: Option<&[String]>, masters: &[DnsMaster]) -> Vec<RecordType> {
        let types = match raw {
            None => {
                let mut t = Vec::new();
                if masters.iter().flat_map(|m| &m.addrs).any(IpAddr::is_ipv4) {
                    t.push(RecordType::A);
                }
                if masters.iter().flat_map(|m| &m.addrs).any(IpAddr::is_ipv6) {
                    t.push(RecordType::AAAA);
                }
                return t;
            }
            Some(list) => list,
        };
        let mut out = Vec::new();
        for (i, text) in types.iter().enumerate() {
            let t = match text.to_ascii_uppercase().as_str() {
                "A" => RecordType::A,
                "AAAA" => RecordType::AAAA,
                _ => {
                    self.issue(
                        format!("dns.types[{i}]"),
                        Some(text.clone()),
                        "unknown record type; expected A or AAAA",
                    );
                    continue;
                }
            };
            let v4 = t == RecordType::A;
            for m in masters {
                if !m.addrs.iter().any(|a| a.is_ipv4() == v4) {
                    self.issue(
                        format!("dns.types[{i}]"),
                        Some(text.clone()),
                        format!(
                            "master {} has no {} address; give it one under dns.publish",
                            m.name,
                            if v4 { "IPv4" } else { "IPv6" }
                        ),
                    );
                }
            }
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if types.is_empty() {
            self.issue(
                "dns.types",
                Some("[]".into()),
                "is empty; expected A, AAAA or both",
            );
        }
        out
    }

    fn tsig(&mut self, raw: Option<RawTsig>) -> Option<Tsig> {
        let Some(raw) = raw else {
            self.issue(
                "dns.tsig",
                None,
                "is missing; expected key, algorithm and secret_file (updates must be signed)",
            );
            return None;
        };
        let Some(file) = raw.secret_file.as_deref() else {
            self.issue(
                "dns.tsig.secret_file",
                None,
                "is missing; expected the file holding the TSIG secret",
            );
            return None;
        };
        let before = self.issues.len();
        let path = self.secret_file("dns.tsig.secret_file", file);
        let mut not_yet = false;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // `apivip check` before the file is installed: warned by `secret_file`;
            // the daemon refuses a missing file.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.missing == super::MissingFiles::Warn
                    && self.issues.len() == before =>
            {
                not_yet = true;
                String::new()
            }
            Err(e) => {
                if self.issues.len() == before {
                    self.issue(
                        "dns.tsig.secret_file",
                        Some(file.to_owned()),
                        format!("cannot be read ({e})"),
                    );
                }
                return None;
            }
        };
        let parsed = parse_key_file(&text);
        let Some(secret) = parsed.secret.or_else(|| not_yet.then(String::new)) else {
            self.issue(
                "dns.tsig.secret_file",
                Some(file.to_owned()),
                "holds no secret; expected the base64 secret, or a BIND key clause (tsig-keygen)",
            );
            return None;
        };
        let secret = match data_encoding::BASE64.decode(secret.as_bytes()) {
            Ok(s) if !s.is_empty() => s,
            // Not there yet (warned above).
            Ok(s) if not_yet => s,
            _ => {
                // The value is a secret: never echoed.
                self.issue(
                    "dns.tsig.secret_file",
                    Some(file.to_owned()),
                    "the secret is not base64 (or is empty)",
                );
                return None;
            }
        };
        let key_text = raw.key.clone().or(parsed.name);
        let key = match key_text {
            None => {
                self.issue(
                    "dns.tsig.key",
                    None,
                    "is missing; expected the key's name (as in the server's key clause)",
                );
                None
            }
            Some(k) => self.dns_name("dns.tsig.key", Some(&k), true),
        };
        if let (Some(written), Some(in_file)) = (&raw.key, &parsed_name_of(&text)) {
            if written.trim_end_matches('.') != in_file.trim_end_matches('.') {
                self.issue(
                    "dns.tsig.key",
                    Some(written.clone()),
                    format!("differs from the key clause in dns.tsig.secret_file ({in_file})"),
                );
            }
        }
        if let (Some(written), Some(in_file)) = (&raw.algorithm, &parsed.algorithm) {
            let same = Algorithm::parse(written).is_some()
                && Algorithm::parse(written) == Algorithm::parse(in_file);
            if !same {
                self.issue(
                    "dns.tsig.algorithm",
                    Some(written.clone()),
                    format!("differs from the key clause in dns.tsig.secret_file ({in_file}); the server would answer BADKEY"),
                );
            }
        }
        let algorithm_text = raw
            .algorithm
            .clone()
            .or(parsed.algorithm)
            .unwrap_or_else(|| "hmac-sha256".to_owned());
        let algorithm = match Algorithm::parse(&algorithm_text) {
            Some(a) => a,
            None => {
                self.issue(
                    "dns.tsig.algorithm",
                    Some(algorithm_text),
                    "unsupported; expected hmac-sha256 or hmac-sha512",
                );
                return None;
            }
        };
        Some(Tsig {
            key: key?,
            algorithm,
            secret_file: path,
            secret: Secret(secret),
        })
    }
}

/// What a key file holds: a bare base64 secret, or a BIND key clause
/// (`key "NAME" { algorithm ALG; secret "BASE64"; };`).
#[derive(Debug, Default, PartialEq, Eq)]
struct KeyFile {
    name: Option<String>,
    algorithm: Option<String>,
    secret: Option<String>,
}

fn parse_key_file(text: &str) -> KeyFile {
    let Some(open) = text.find('{') else {
        let bare: String = text.split_whitespace().collect();
        return KeyFile {
            secret: (!bare.is_empty()).then_some(bare),
            ..KeyFile::default()
        };
    };
    // The statements between the braces, by their first word: a key name that
    // contains "secret" or "algorithm" is not read as one.
    let body = text[open + 1..].split('}').next().unwrap_or("");
    let mut key = KeyFile {
        name: parsed_name_of(&text[..open]),
        ..KeyFile::default()
    };
    for statement in body.split(';') {
        let mut words = statement.split_whitespace();
        let value = |v: Option<&str>| {
            v.map(|v| v.trim_matches('"').to_owned())
                .filter(|v| !v.is_empty())
        };
        match words.next() {
            Some("algorithm") => key.algorithm = value(words.next()),
            Some("secret") => key.secret = value(words.next()),
            _ => {}
        }
    }
    key
}

fn parsed_name_of(text: &str) -> Option<String> {
    let i = text.find("key")? + 3;
    let rest = text[i..].trim_start().strip_prefix('"')?;
    let name = rest.split('"').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests;
