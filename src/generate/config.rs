//! `apivip config`: a complete, commented config for this node.
//!
//! [`generate`] is pure: [`ConfigOptions`] (the flags) and [`Facts`] (what
//! [`detect`](super::detect) found on the node) in, the YAML text and one line per
//! detected fact out. What it detects, unless a flag gives it:
//!
//! - this node's entry among the masters (`--node`): the master whose address is on one
//!   of this node's interfaces. vip-only's `track: backend:NAME` and the priority (the
//!   first master highest) need it; local-proxy does not (workers run it too).
//! - the interface (`--interface`): the one holding this node's master address, else the
//!   one whose connected subnet holds the VIP.
//! - this node's address on it (`--address`), the adverts' source: the master address
//!   when it is on that interface and of the VIP's family, else the interface's address
//!   in the VIP's subnet.
//!
//! Every node gets the same backend names (`master-1`, ... in `--masters` order, or the
//! names given as `NAME=ADDRESS`), so metrics and status line up across nodes.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{yaml_str, GenerateError, Shape};

/// The default VRRP virtual router id (keepalived's example value; the same on every
/// master, unique on the segment).
pub const DEFAULT_VRID: u8 = 51;
/// The default proxy port (VIP + proxy, and local proxy).
pub const DEFAULT_PORT: u16 = 8443;
/// The etcd frontend's local port in the local-proxy shape (etcd itself has 2379 on
/// 127.0.0.1 of every master).
pub const LOCAL_ETCD_PORT: u16 = 12379;
/// Where kubeadm keeps the cluster's PKI.
pub const DEFAULT_PKI: &str = "/etc/kubernetes/pki";

/// One master, as given to `--masters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// Its name in `backends:` (and in logs, metrics, status, `drain NAME`).
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// Its apiserver port, when not 6443.
    pub port: Option<u16>,
}

/// Parses `--masters`: a comma-separated list of `ADDRESS` or `NAME=ADDRESS`, where
/// ADDRESS is an IP, `IP:PORT` or `[IPv6]:PORT`. Unnamed masters are `master-N` by
/// position.
pub fn parse_masters(text: &str) -> Result<Vec<Master>, GenerateError> {
    let flag = |value: &str, message: &str| GenerateError::Flag {
        flag: "masters",
        value: value.to_owned(),
        message: message.to_owned(),
    };
    let mut out: Vec<Master> = Vec::new();
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            return Err(flag(
                text,
                "has an empty entry; expected ADDRESS or NAME=ADDRESS, comma-separated",
            ));
        }
        let (name, addr) = match item.split_once('=') {
            Some((n, a)) => (n.trim().to_owned(), a.trim()),
            None => (format!("master-{}", i + 1), item),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok {
            return Err(flag(
                item,
                "the name must be 1 to 63 letters, digits, '.', '_' or '-'",
            ));
        }
        let (ip, port) = if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
            (sa.ip(), Some(sa.port()))
        } else if let Ok(ip) = addr.parse::<IpAddr>() {
            (ip, None)
        } else {
            return Err(flag(
                item,
                "is not an address; expected an IP, IP:PORT or [IPv6]:PORT",
            ));
        };
        if port == Some(0) {
            return Err(flag(item, "port 0; expected 1 to 65535"));
        }
        if out.iter().any(|m| m.name == name) {
            return Err(flag(item, "names a master twice"));
        }
        if out.iter().any(|m| m.ip == ip && m.port == port) {
            return Err(flag(item, "lists a master twice"));
        }
        out.push(Master { name, ip, port });
    }
    Ok(out)
}

/// Parses `--vip`: an address with an optional prefix length (`198.18.0.5/24`).
pub fn parse_vip(text: &str) -> Result<(IpAddr, u8), GenerateError> {
    let err = || GenerateError::Flag {
        flag: "vip",
        value: text.to_owned(),
        message: "expected an address with its prefix length, e.g. 198.18.0.5/24 or 2001:db8::5/64"
            .to_owned(),
    };
    let (ip_text, prefix_text) = match text.trim().split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = ip_text.parse().map_err(|_| err())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(err)?,
    };
    Ok((ip, prefix))
}

/// The flags of `apivip config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOptions {
    /// Every master (`--masters`), the same list and order on every node.
    pub masters: Vec<Master>,
    /// The VIP and its prefix length (`--vip`); required unless the shape is local-proxy.
    pub vip: Option<(IpAddr, u8)>,
    /// The deployment shape (`--shape`).
    pub shape: Shape,
    /// The VRRP interface (`--interface`); detected when absent.
    pub interface: Option<String>,
    /// This node's address on that interface (`--address`); detected when absent.
    pub address: Option<IpAddr>,
    /// Which master this node is, by name or address (`--node`); detected when absent.
    pub node: Option<String>,
    /// Send adverts to the other masters by unicast instead of multicast (`--unicast`).
    pub unicast: bool,
    /// Add the etcd frontend, checked over mTLS with kubeadm's health-check client
    /// certificate (`--etcd`).
    pub etcd: bool,
    /// The VRRP virtual router id (`--vrid`).
    pub vrid: u8,
    /// This node's VRRP priority (`--priority`); by position among the masters when
    /// absent (the first highest).
    pub priority: Option<u8>,
    /// VRRP version (`--vrrp-version`): 3, or 2 to run beside keepalived.
    pub vrrp_version: u8,
    /// VRRPv2 PASS authentication (`--auth-pass`), as keepalived's `auth_pass`.
    pub auth_pass: Option<String>,
    /// The proxy's port (`--port`).
    pub port: u16,
    /// The directory of the cluster's PKI (`--pki`).
    pub pki: String,
    /// The DNS shape's name (`--dns-name`), e.g. `api.cluster.example`.
    pub dns_name: Option<String>,
    /// Its zone (`--dns-zone`); the name without its first label when absent.
    pub dns_zone: Option<String>,
    /// The zone's primary server, then fallbacks (`--dns-server`): IP or IP:PORT.
    pub dns_servers: Vec<String>,
    /// The TSIG key's name (`--dns-key`), as in named.conf.
    pub dns_key: String,
    /// The file with the TSIG secret (`--dns-key-file`).
    pub dns_key_file: String,
}

/// The default TSIG key name of the DNS shape.
pub const DEFAULT_DNS_KEY: &str = "apivip-key.";
/// The default TSIG secret file of the DNS shape.
pub const DEFAULT_DNS_KEY_FILE: &str = "/etc/apivip/dns.key";

impl ConfigOptions {
    /// Options with every default: shape vip-proxy, VRID 51, VRRPv3, port 8443,
    /// kubeadm's PKI directory.
    pub fn new(masters: Vec<Master>, vip: Option<(IpAddr, u8)>) -> ConfigOptions {
        ConfigOptions {
            masters,
            vip,
            shape: Shape::VipProxy,
            interface: None,
            address: None,
            node: None,
            unicast: false,
            etcd: false,
            vrid: DEFAULT_VRID,
            priority: None,
            vrrp_version: 3,
            auth_pass: None,
            port: DEFAULT_PORT,
            pki: DEFAULT_PKI.to_owned(),
            dns_name: None,
            dns_zone: None,
            dns_servers: Vec::new(),
            dns_key: DEFAULT_DNS_KEY.to_owned(),
            dns_key_file: DEFAULT_DNS_KEY_FILE.to_owned(),
        }
    }
}

/// What [`detect`](super::detect) found on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Its network interfaces.
    pub interfaces: Vec<LocalInterface>,
}

/// One network interface and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInterface {
    /// Its name (`eth0`).
    pub name: String,
    /// Whether it is up.
    pub up: bool,
    /// Whether it is a loopback interface.
    pub loopback: bool,
    /// Its addresses with their prefix lengths (the connected routes).
    pub addrs: Vec<(IpAddr, u8)>,
}

/// The generated config and what was detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The YAML text.
    pub text: String,
    /// One line per detected (or given) fact, for stderr.
    pub detected: Vec<String>,
}

/// Whether `addr` lies in `net/prefix`.
fn in_subnet(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The DNS part, validated.
struct DnsPart {
    /// Fully qualified (with the trailing dot).
    name: String,
    zone: String,
    servers: Vec<String>,
}

/// Validates the `--dns-*` flags of the DNS shape.
fn dns_part(opts: &ConfigOptions) -> Result<DnsPart, GenerateError> {
    use hickory_proto::rr::Name;
    let flag = |flag: &'static str, value: &str, message: &str| GenerateError::Flag {
        flag,
        value: value.to_owned(),
        message: message.to_owned(),
    };
    let Some(text) = opts.dns_name.as_deref() else {
        return Err(GenerateError::Usage(
            "--dns-name is missing; the dns shape publishes a name, e.g. --dns-name api.cluster.example"
                .to_owned(),
        ));
    };
    let fqdn = |mut n: Name| {
        n.set_fqdn(true);
        n
    };
    let name = Name::from_ascii(text)
        .map(fqdn)
        .ok()
        .filter(|n| n.num_labels() >= 2)
        .ok_or_else(|| {
            flag(
                "dns-name",
                text,
                "expected a domain name of at least two labels inside its zone, e.g. api.cluster.example",
            )
        })?;
    let zone = match opts.dns_zone.as_deref() {
        Some(z) => Name::from_ascii(z)
            .map(fqdn)
            .ok()
            .filter(|zone| zone.num_labels() >= 1)
            .ok_or_else(|| {
                flag(
                    "dns-zone",
                    z,
                    "expected a domain name, e.g. cluster.example",
                )
            })?,
        None => name.base_name(),
    };
    if !zone.zone_of(&name) || zone == name {
        return Err(flag(
            "dns-name",
            text,
            &format!("is not inside the zone {zone}; pass --dns-zone"),
        ));
    }
    if opts.dns_servers.is_empty() {
        return Err(GenerateError::Usage(
            "--dns-server is missing; expected the zone's primary server, e.g. --dns-server 198.18.0.53"
                .to_owned(),
        ));
    }
    let mut servers = Vec::new();
    for s in &opts.dns_servers {
        let s = s.trim();
        let addr = s
            .parse::<std::net::SocketAddr>()
            .map(|a| super::host_port(&a.ip().to_string(), a.port()))
            .or_else(|_| s.parse::<IpAddr>().map(|ip| ip.to_string()))
            .map_err(|_| {
                flag(
                    "dns-server",
                    s,
                    "expected an address, IP or IP:PORT (e.g. 198.18.0.53 or [2001:db8::53]:5353)",
                )
            })?;
        servers.push(addr);
    }
    if Name::from_ascii(&opts.dns_key).is_err() || opts.dns_key.trim_end_matches('.').is_empty() {
        return Err(flag(
            "dns-key",
            &opts.dns_key,
            "expected the key's name as in named.conf, e.g. apivip-key.",
        ));
    }
    if !opts.dns_key_file.starts_with('/') {
        return Err(flag(
            "dns-key-file",
            &opts.dns_key_file,
            "expected an absolute path",
        ));
    }
    Ok(DnsPart {
        name: name.to_ascii(),
        zone: zone.to_ascii(),
        servers,
    })
}

/// The VRRP part, once detection is done.
struct Election {
    interface: String,
    address: IpAddr,
    priority: u8,
    peers: Vec<IpAddr>,
}

/// Generates the config text for this node (see the module docs).
pub fn generate(opts: &ConfigOptions, facts: &Facts) -> Result<Generated, GenerateError> {
    let usage = |m: &str| Err(GenerateError::Usage(m.to_owned()));
    if opts.masters.is_empty() {
        return usage("--masters is empty; expected every control-plane node's address");
    }
    let vip_shape = matches!(opts.shape, Shape::VipProxy | Shape::VipOnly);
    let dns_shape = opts.shape == Shape::Dns;
    let dns_flags = opts.dns_name.is_some()
        || opts.dns_zone.is_some()
        || !opts.dns_servers.is_empty()
        || opts.dns_key != DEFAULT_DNS_KEY
        || opts.dns_key_file != DEFAULT_DNS_KEY_FILE;
    if dns_flags && !dns_shape {
        return usage("--dns-name, --dns-zone, --dns-server, --dns-key and --dns-key-file only apply to --shape dns");
    }
    let dns = if dns_shape {
        Some(dns_part(opts)?)
    } else {
        None
    };
    match (vip_shape, opts.vip) {
        (true, None) => {
            return usage(&format!(
                "--vip is missing; the {} shape needs the virtual IP, e.g. --vip 198.18.0.5/24",
                opts.shape
            ))
        }
        (false, Some(_)) => {
            return usage(&format!(
                "--vip: the {} shape has no VIP; drop --vip or choose --shape vip-proxy",
                opts.shape
            ))
        }
        _ => {}
    }
    if !vip_shape {
        let vrrp_flags = [
            ("--interface", opts.interface.is_some()),
            ("--address", opts.address.is_some()),
            ("--unicast", opts.unicast),
            ("--priority", opts.priority.is_some()),
            ("--auth-pass", opts.auth_pass.is_some()),
        ];
        if let Some((flag, _)) = vrrp_flags.iter().find(|(_, set)| *set) {
            return usage(&format!(
                "{flag} only applies to the VIP shapes (vip-proxy, vip-only)"
            ));
        }
    }
    match (opts.vrrp_version, &opts.auth_pass) {
        (2 | 3, None) => {}
        (2, Some(p)) if (1..=8).contains(&p.len()) => {}
        (2, Some(_)) => {
            return Err(GenerateError::Flag {
                flag: "auth-pass",
                value: "(hidden)".to_owned(),
                message: "expected 1 to 8 bytes, as keepalived's auth_pass".to_owned(),
            })
        }
        (3, Some(_)) => {
            return usage("--auth-pass: VRRPv3 has no authentication; add --vrrp-version 2")
        }
        (v, _) => {
            return Err(GenerateError::Flag {
                flag: "vrrp-version",
                value: v.to_string(),
                message: "expected 3 (RFC 9568) or 2 (keepalived's default)".to_owned(),
            })
        }
    }
    if opts.vrrp_version == 2 && opts.vip.is_some_and(|(vip, _)| vip.is_ipv6()) {
        return usage("--vrrp-version 2: VRRPv2 is IPv4 only; an IPv6 VIP needs version 3");
    }
    if opts.vrid == 0 {
        return Err(GenerateError::Flag {
            flag: "vrid",
            value: "0".to_owned(),
            message: "expected 1 to 255".to_owned(),
        });
    }
    if let Some(p) = opts.priority.filter(|p| !(1..=254).contains(p)) {
        return Err(GenerateError::Flag {
            flag: "priority",
            value: p.to_string(),
            message: "expected 1 to 254".to_owned(),
        });
    }
    if opts.port == 0 {
        return Err(GenerateError::Flag {
            flag: "port",
            value: "0".to_owned(),
            message: "expected 1 to 65535".to_owned(),
        });
    }
    let mut detected = Vec::new();
    let vip_ip = opts.vip.map(|v| v.0);
    let local: Vec<(&LocalInterface, IpAddr, u8)> = facts
        .interfaces
        .iter()
        .flat_map(|i| i.addrs.iter().map(move |(a, p)| (i, *a, *p)))
        .filter(|(_, a, _)| Some(*a) != vip_ip)
        .collect();

    // This node's entry among the masters.
    let node = match &opts.node {
        Some(n) => {
            let found = opts
                .masters
                .iter()
                .position(|m| &m.name == n || m.ip.to_string() == *n);
            match found {
                Some(i) => {
                    detected.push(format!(
                        "this node: {} ({}), given",
                        opts.masters[i].name, opts.masters[i].ip
                    ));
                    Some(i)
                }
                None => {
                    return Err(GenerateError::Flag {
                        flag: "node",
                        value: n.clone(),
                        message: "is not one of --masters (by name or address)".to_owned(),
                    })
                }
            }
        }
        None => {
            let found: Vec<(usize, &str)> = opts
                .masters
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    local
                        .iter()
                        .find(|(_, a, _)| *a == m.ip)
                        .map(|(iface, _, _)| (i, iface.name.as_str()))
                })
                .collect();
            match found.as_slice() {
                [(i, iface)] => {
                    let m = &opts.masters[*i];
                    detected.push(format!("this node: {} ({} is on {iface})", m.name, m.ip));
                    Some(*i)
                }
                [] => None,
                several => {
                    let names: Vec<&str> = several
                        .iter()
                        .map(|(i, _)| opts.masters[*i].name.as_str())
                        .collect();
                    return Err(GenerateError::Undetected(format!(
                        "several masters' addresses are on this node ({}); pass --node NAME to say which this is",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    let own_addrs = || {
        let mut v: Vec<String> = local
            .iter()
            .filter(|(i, _, _)| !i.loopback)
            .map(|(_, a, _)| a.to_string())
            .collect();
        v.dedup();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    if node.is_none() {
        if dns_shape {
            return Err(GenerateError::Undetected(format!(
                "none of --masters is an address of this node (its addresses: {}); the dns shape runs on the masters: run this on a master, or pass --node NAME to say which master the config is for",
                own_addrs()
            )));
        }
        if vip_shape {
            return Err(GenerateError::Undetected(format!(
                "none of --masters is an address of this node (its addresses: {}); run this on a master, or pass --node NAME (and --interface, --address) to say which master the config is for",
                own_addrs()
            )));
        }
        detected.push("this node: not one of the masters (a worker)".to_owned());
    }

    let election = match opts.vip {
        None => None,
        Some((vip, vip_prefix)) => {
            let node = node.unwrap_or_default();
            let me = &opts.masters[node];
            let interface = match &opts.interface {
                Some(i) => {
                    if !facts.interfaces.iter().any(|f| &f.name == i) {
                        detected.push(format!("interface: {i}, given (not on this node)"));
                    } else {
                        detected.push(format!("interface: {i}, given"));
                    }
                    i.clone()
                }
                None => {
                    let by_master = local.iter().find(|(i, a, _)| *a == me.ip && !i.loopback);
                    let by_subnet = local.iter().find(|(i, a, p)| {
                        !i.loopback && a.is_ipv4() == vip.is_ipv4() && in_subnet(vip, *a, *p)
                    });
                    match (by_master, by_subnet) {
                        (Some((i, a, _)), _) => {
                            detected.push(format!("interface: {} (holds {a})", i.name));
                            i.name.clone()
                        }
                        (None, Some((i, a, p))) => {
                            detected.push(format!("interface: {} ({a}/{p} holds the VIP's subnet)", i.name));
                            i.name.clone()
                        }
                        (None, None) => {
                            return Err(GenerateError::Undetected(format!(
                                "no interface holds {} or the VIP's subnet (this node's addresses: {}); pass --interface",
                                me.ip,
                                own_addrs()
                            )))
                        }
                    }
                }
            };
            let address = match opts.address {
                Some(a) => {
                    detected.push(format!("address: {a}, given"));
                    a
                }
                None => {
                    let on_iface: Vec<(IpAddr, u8)> = local
                        .iter()
                        .filter(|(i, a, _)| i.name == interface && a.is_ipv4() == vip.is_ipv4())
                        .map(|(_, a, p)| (*a, *p))
                        .collect();
                    let iface_known = facts.interfaces.iter().any(|f| f.name == interface);
                    let master_fits = me.ip.is_ipv4() == vip.is_ipv4()
                        && (!iface_known || on_iface.iter().any(|(a, _)| *a == me.ip));
                    let in_vip_subnet = on_iface
                        .iter()
                        .filter(|(a, _)| in_subnet(*a, vip, vip_prefix))
                        .min_by_key(|(a, _)| is_link_local(*a));
                    let any = on_iface.iter().min_by_key(|(a, _)| is_link_local(*a));
                    match (master_fits, in_vip_subnet.or(any)) {
                        (true, _) => {
                            detected.push(format!("address: {} (this master's)", me.ip));
                            me.ip
                        }
                        (false, Some((a, p))) => {
                            detected.push(format!("address: {a} ({a}/{p} on {interface})"));
                            *a
                        }
                        (false, None) => {
                            return Err(GenerateError::Undetected(format!(
                                "no {} address on {interface} for the adverts; pass --address",
                                if vip.is_ipv4() { "IPv4" } else { "IPv6" }
                            )))
                        }
                    }
                }
            };
            if address.is_ipv4() != vip.is_ipv4() {
                return usage(&format!(
                    "--address {address} and --vip {vip} are of different families"
                ));
            }
            let priority = opts
                .priority
                .unwrap_or_else(|| default_priority(node, opts.masters.len()));
            let peers: Vec<IpAddr> = opts
                .masters
                .iter()
                .enumerate()
                .filter(|(i, m)| *i != node && m.ip.is_ipv4() == vip.is_ipv4())
                .map(|(_, m)| m.ip)
                .collect();
            if opts.unicast && peers.is_empty() {
                return usage("--unicast: no other master of the VIP's family to send adverts to");
            }
            Some(Election {
                interface,
                address,
                priority,
                peers,
            })
        }
    };
    let text = render(opts, node, election.as_ref(), dns.as_ref());
    Ok(Generated { text, detected })
}

/// Priorities by position: 150, 140, 130, ... (the first master holds the VIP when all
/// are healthy), spread at most 40 so the default health weight (50) is above it: any
/// node that can serve beats every node that cannot.
fn default_priority(index: usize, count: usize) -> u8 {
    let step = if count <= 5 {
        10
    } else {
        (40 / (count - 1)).max(1)
    };
    let p = 150usize.saturating_sub(step * index).max(110);
    u8::try_from(p).unwrap_or(110)
}

/// The command line that makes this config again (for the header).
fn command_line(opts: &ConfigOptions, node: Option<usize>) -> String {
    let masters: Vec<String> = opts
        .masters
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let addr = match m.port {
                Some(p) => super::host_port(&m.ip.to_string(), p),
                None => m.ip.to_string(),
            };
            if m.name == format!("master-{}", i + 1) {
                addr
            } else {
                format!("{}={addr}", m.name)
            }
        })
        .collect();
    let mut cmd = format!("apivip config --masters {}", masters.join(","));
    if let Some((vip, p)) = opts.vip {
        let _ = write!(cmd, " --vip {vip}/{p}");
    }
    if opts.shape != Shape::VipProxy {
        let _ = write!(cmd, " --shape {}", opts.shape);
    }
    if let (Some(i), true) = (node, opts.node.is_some()) {
        let _ = write!(cmd, " --node {}", opts.masters[i].name);
    }
    if let Some(i) = &opts.interface {
        let _ = write!(cmd, " --interface {i}");
    }
    if let Some(a) = opts.address {
        let _ = write!(cmd, " --address {a}");
    }
    if opts.unicast {
        cmd.push_str(" --unicast");
    }
    if opts.etcd {
        cmd.push_str(" --etcd");
    }
    if opts.vrid != DEFAULT_VRID {
        let _ = write!(cmd, " --vrid {}", opts.vrid);
    }
    if let Some(p) = opts.priority {
        let _ = write!(cmd, " --priority {p}");
    }
    if opts.vrrp_version != 3 {
        let _ = write!(cmd, " --vrrp-version {}", opts.vrrp_version);
    }
    if opts.auth_pass.is_some() {
        cmd.push_str(" --auth-pass ...");
    }
    if opts.port != DEFAULT_PORT {
        let _ = write!(cmd, " --port {}", opts.port);
    }
    if opts.pki != DEFAULT_PKI {
        let _ = write!(cmd, " --pki {}", opts.pki);
    }
    if let Some(n) = &opts.dns_name {
        let _ = write!(cmd, " --dns-name {n}");
    }
    if let Some(z) = &opts.dns_zone {
        let _ = write!(cmd, " --dns-zone {z}");
    }
    if !opts.dns_servers.is_empty() {
        let _ = write!(cmd, " --dns-server {}", opts.dns_servers.join(","));
    }
    if opts.dns_key != DEFAULT_DNS_KEY {
        let _ = write!(cmd, " --dns-key {}", opts.dns_key);
    }
    if opts.dns_key_file != DEFAULT_DNS_KEY_FILE {
        let _ = write!(cmd, " --dns-key-file {}", opts.dns_key_file);
    }
    cmd
}

/// An address as a YAML scalar: plain like the examples when it starts with a digit and
/// has no bracket (an IPv4 `IP:port`, a CIDR), else quoted.
fn addr_scalar(s: &str) -> String {
    if s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() || ".:/".contains(c))
    {
        s.to_owned()
    } else {
        yaml_str(s)
    }
}

fn render(
    opts: &ConfigOptions,
    node: Option<usize>,
    election: Option<&Election>,
    dns: Option<&DnsPart>,
) -> String {
    let mut o = String::new();
    let w = &mut o;
    let pki = opts.pki.trim_end_matches('/');
    let v6 = match opts.vip {
        Some((vip, _)) => vip.is_ipv6(),
        None => opts.masters.iter().all(|m| m.ip.is_ipv6()),
    };
    let who = match node {
        Some(i) => format!("{} ({})", opts.masters[i].name, opts.masters[i].ip),
        None => "a node that is not a master".to_owned(),
    };
    let endpoint = match (opts.shape, opts.vip) {
        (Shape::Dns, _) => super::host_port(
            dns.map_or("", |d| d.name.trim_end_matches('.')),
            opts.masters
                .first()
                .and_then(|m| m.port)
                .unwrap_or(crate::config::DEFAULT_APISERVER_PORT),
        ),
        (Shape::VipProxy, Some((vip, _))) => super::host_port(&vip.to_string(), opts.port),
        (Shape::VipOnly, Some((vip, _))) => {
            super::host_port(&vip.to_string(), crate::config::DEFAULT_APISERVER_PORT)
        }
        _ => super::host_port(if v6 { "::1" } else { "127.0.0.1" }, opts.port),
    };
    let _ = writeln!(w, "# apivip config for {who}.");
    let _ = writeln!(w, "# Made by: {}", command_line(opts, node));
    let _ = writeln!(w, "#");
    let _ = writeln!(w, "# Shape {}: {}.", opts.shape, opts.shape.describe());
    let _ = writeln!(w, "#   kubeadm:  controlPlaneEndpoint: \"{endpoint}\"   (apivip kubeadm-config prints the fragment)");
    if let Some(d) = dns {
        let _ = writeln!(
            w,
            "#   BIND:     the zone's update-policy lets the key write the name (A, AAAA)"
        );
        let _ = writeln!(
            w,
            "#             and _apivip.{} (TXT): README.md, \"DNS failover\"",
            d.name
        );
        let _ = writeln!(
            w,
            "#   key:      tsig-keygen -a hmac-sha256 {} > {}; chmod 600 it",
            opts.dns_key, opts.dns_key_file
        );
    }
    let _ = writeln!(w, "#   check:    apivip check -c /etc/apivip/apivip.yaml");
    if opts.shape == Shape::Dns {
        let _ = writeln!(
            w,
            "# The same config on every master: each finds its own entry by its addresses."
        );
    } else if opts.shape != Shape::LocalProxy {
        let _ = writeln!(
            w,
            "# On the other masters run the same command: only vrrp.address, vrrp.priority"
        );
        let _ = writeln!(w, "# (and the unicast peers) differ.");
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "# Every control-plane node, in the same order and with the same names on every node."
    );
    let _ = writeln!(w, "backends:");
    for m in &opts.masters {
        let addr = match m.port {
            Some(p) => addr_scalar(&super::host_port(&m.ip.to_string(), p)),
            None => m.ip.to_string(),
        };
        let _ = writeln!(w, "  - {{name: {}, address: {addr}}}", yaml_str(&m.name));
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "apiserver:");
    match opts.shape {
        Shape::VipProxy => {
            let any = if v6 { "[::]" } else { "0.0.0.0" };
            let _ = writeln!(w, "  listen: {}\u{1}# every address: IP_FREEBIND binds before this node holds the VIP", addr_scalar(&format!("{any}:{}", opts.port)));
            let _ = writeln!(w, "  port: 6443\u{1}# kube-apiserver's port on each master");
            let _ = writeln!(w, "  balance: least-connections");
        }
        Shape::VipOnly => {
            let _ = writeln!(
                w,
                "  listen: []\u{1}# no proxy: the apiserver answers on the VIP itself"
            );
        }
        Shape::Dns => {
            let _ = writeln!(
                w,
                "  listen: []\u{1}# no proxy: the name points at the apiservers"
            );
        }
        Shape::LocalProxy => {
            let lo = if v6 { "[::1]" } else { "127.0.0.1" };
            let _ = writeln!(
                w,
                "  listen: {}\u{1}# this node's clients only",
                addr_scalar(&format!("{lo}:{}", opts.port))
            );
            let _ = writeln!(w, "  port: 6443\u{1}# kube-apiserver's port on each master");
            let _ = writeln!(w, "  balance: least-connections");
        }
    }
    let _ = writeln!(w, "  check:");
    let _ = writeln!(w, "    kind: https");
    let _ = writeln!(
        w,
        "    path: /readyz\u{1}# 500 as soon as an apiserver starts shutting down"
    );
    let _ = writeln!(
        w,
        "    ca: {}\u{1}# the cluster CA (kubeadm init makes it)",
        yaml_str(&format!("{pki}/ca.crt"))
    );
    let _ = writeln!(w, "    interval: 1s");
    let _ = writeln!(w, "    timeout: 1s");
    let _ = writeln!(w, "    rise: 2");
    let _ = writeln!(w, "    fall: 2");
    if opts.etcd {
        let listen = match (opts.shape, opts.vip) {
            (Shape::LocalProxy, _) | (_, None) => {
                super::host_port(if v6 { "::1" } else { "127.0.0.1" }, LOCAL_ETCD_PORT)
            }
            (_, Some((vip, _))) => {
                super::host_port(&vip.to_string(), crate::config::DEFAULT_ETCD_PORT)
            }
        };
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "# etcd for tools that take one endpoint (etcd clients balance by themselves)."
        );
        let _ = writeln!(w, "etcd:");
        let _ = writeln!(w, "  listen: {}", addr_scalar(&listen));
        let _ = writeln!(w, "  port: 2379");
        let _ = writeln!(w, "  check:");
        let _ = writeln!(w, "    kind: etcd\u{1}# GET /health over mutual TLS");
        let _ = writeln!(w, "    ca: {}", yaml_str(&format!("{pki}/etcd/ca.crt")));
        let _ = writeln!(
            w,
            "    client_cert: {}",
            yaml_str(&format!("{pki}/etcd/healthcheck-client.crt"))
        );
        let _ = writeln!(
            w,
            "    client_key: {}",
            yaml_str(&format!("{pki}/etcd/healthcheck-client.key"))
        );
        let _ = writeln!(w, "    interval: 2s");
        let _ = writeln!(w, "    timeout: 1s");
    }
    if let Some(d) = dns {
        let _ = writeln!(w);
        let _ = writeln!(w, "dns:");
        let _ = writeln!(
            w,
            "  servers: [{}]\u{1}# the zone's primary first, then fallbacks",
            d.servers
                .iter()
                .map(|s| addr_scalar(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(w, "  zone: {}", yaml_str(&d.zone));
        let _ = writeln!(
            w,
            "  name: {}\u{1}# a master leaves it 2 s after its apiserver turns not ready",
            yaml_str(&d.name)
        );
        let _ = writeln!(w, "  ttl: 5s\u{1}# what resolvers may cache; keep it short");
        if let (Some(i), true) = (node, opts.node.is_some()) {
            let _ = writeln!(w, "  node: {}", yaml_str(&opts.masters[i].name));
        }
        let _ = writeln!(w, "  tsig:");
        let _ = writeln!(w, "    key: {}", yaml_str(&opts.dns_key));
        let _ = writeln!(w, "    algorithm: hmac-sha256\u{1}# or hmac-sha512");
        let _ = writeln!(
            w,
            "    secret_file: {}\u{1}# base64, or tsig-keygen's key clause; mode 0600",
            yaml_str(&opts.dns_key_file)
        );
    }
    if let (Some(e), Some((vip, prefix))) = (election, opts.vip) {
        let node = node.unwrap_or_default();
        let _ = writeln!(w);
        let _ = writeln!(w, "vrrp:");
        let _ = writeln!(w, "  interface: {}", yaml_str(&e.interface));
        let _ = writeln!(
            w,
            "  address: {}\u{1}# this node's address on {}: the adverts' source",
            e.address, e.interface
        );
        let _ = writeln!(
            w,
            "  vrid: {}\u{1}# the same on every master, unique on the segment",
            opts.vrid
        );
        if opts.vrrp_version == 2 {
            let _ = writeln!(
                w,
                "  version: 2\u{1}# keepalived's default: replace it one master at a time"
            );
            let _ = writeln!(w, "  advert_interval: 1s\u{1}# VRRPv2 takes whole seconds");
            if let Some(p) = &opts.auth_pass {
                let _ = writeln!(
                    w,
                    "  auth_pass: {}\u{1}# keepalived's auth_pass (PASS)",
                    yaml_str(p)
                );
            }
        } else {
            let _ = writeln!(w, "  version: 3\u{1}# RFC 9568");
            let _ = writeln!(
                w,
                "  advert_interval: 100ms\u{1}# takeover after 3 x interval + skew (~360 ms)"
            );
        }
        let _ = writeln!(
            w,
            "  priority: {}\u{1}# 1..254; the highest node that can serve holds the VIP",
            e.priority
        );
        let _ = writeln!(w, "  vips: [{}]", addr_scalar(&format!("{vip}/{prefix}")));
        if opts.unicast {
            let peers: Vec<String> = e.peers.iter().map(|p| p.to_string()).collect();
            let _ = writeln!(
                w,
                "  unicast_peers: [{}]\u{1}# the other masters; adverts from anyone else are dropped",
                peers.join(", ")
            );
        }
        let _ = writeln!(
            w,
            "  preempt: true\u{1}# a better node takes the VIP back (without a gap)"
        );
        let weight = 50u8.min(e.priority.saturating_sub(1));
        let _ = writeln!(
            w,
            "  health_weight: {weight}\u{1}# priority drops by this while this node cannot serve"
        );
        match opts.shape {
            Shape::VipOnly => {
                let _ = writeln!(
                    w,
                    "  track: {}\u{1}# the VIP follows this node's own apiserver",
                    yaml_str(&format!("backend:{}", opts.masters[node].name))
                );
            }
            _ => {
                let _ = writeln!(
                    w,
                    "  track: proxy\u{1}# can serve: the proxy listens and an apiserver is healthy"
                );
            }
        }
        let handover = if opts.vrrp_version == 2 { "10s" } else { "1s " };
        let _ = writeln!(w, "  handover_timeout: {handover}\u{1}# SIGTERM: keep the VIP until a new holder is heard (10 adverts)");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "shutdown:");
    let _ = writeln!(
        w,
        "  drain_timeout: 30s\u{1}# SIGTERM: let connections finish this long"
    );
    let _ = writeln!(w);
    let _ = writeln!(w, "log:");
    let _ = writeln!(w, "  format: json");
    let _ = writeln!(w, "  level: info");
    let _ = writeln!(w);
    let _ = writeln!(w, "admin:");
    let _ = writeln!(
        w,
        "  # /metrics, /healthz (the static pod's liveness probe), /readyz, /status and the"
    );
    let _ = writeln!(
        w,
        "  # controls of apivip status, handover, resume, drain, undrain."
    );
    let _ = writeln!(w, "  listen: [127.0.0.1:9469]");
    align_comments(&o)
}

/// Aligns the trailing comments (marked with `\u{1}` by [`render`]) at one column.
fn align_comments(text: &str) -> String {
    const COLUMN: usize = 32;
    let mut out = String::with_capacity(text.len() + 1024);
    for line in text.lines() {
        match line.split_once('\u{1}') {
            Some((value, comment)) => {
                let pad = COLUMN.saturating_sub(value.len()).max(1);
                out.push_str(value);
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(comment);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, MissingFiles, Track};
    use std::path::Path;

    fn masters() -> Vec<Master> {
        parse_masters("198.18.0.11,198.18.0.12,198.18.0.13").unwrap()
    }

    fn iface(name: &str, addrs: &[&str]) -> LocalInterface {
        LocalInterface {
            name: name.to_owned(),
            up: true,
            loopback: name == "lo",
            addrs: addrs
                .iter()
                .map(|a| {
                    let (ip, p) = a.split_once('/').unwrap();
                    (ip.parse().unwrap(), p.parse().unwrap())
                })
                .collect(),
        }
    }

    /// master-2's view: loopback, eth0 with its address, a second NIC elsewhere.
    fn node2() -> Facts {
        Facts {
            interfaces: vec![
                iface("lo", &["127.0.0.1/8", "::1/128"]),
                iface("eth0", &["198.18.0.12/24", "fe80::2/64"]),
                iface("eth1", &["198.19.7.2/24"]),
            ],
        }
    }

    fn opts(shape: Shape) -> ConfigOptions {
        let vip = matches!(shape, Shape::VipProxy | Shape::VipOnly)
            .then(|| parse_vip("198.18.0.5/24").unwrap());
        let mut o = ConfigOptions::new(masters(), vip);
        o.shape = shape;
        o
    }

    fn validate(text: &str) -> Config {
        let (c, warnings) = Config::from_yaml_with(
            text,
            Path::new("/etc/apivip/apivip.yaml"),
            MissingFiles::Warn,
        )
        .unwrap_or_else(|e| panic!("{text}\n{}", e.lines().join("\n")));
        assert!(
            warnings.iter().all(|w| w
                .value
                .as_deref()
                .unwrap_or("")
                .starts_with("/etc/kubernetes/pki/")),
            "{warnings:?}"
        );
        c
    }

    #[test]
    fn masters_parse_with_and_without_names() {
        let m = parse_masters("cp-a=198.18.0.11, 198.18.0.12:7443,[2001:db8::13]:6443").unwrap();
        assert_eq!(m[0].name, "cp-a");
        assert_eq!(m[1].name, "master-2");
        assert_eq!(m[1].port, Some(7443));
        assert_eq!(m[2].ip, "2001:db8::13".parse::<IpAddr>().unwrap());
        for bad in [
            "",
            "198.18.0.11,,198.18.0.12",
            "a b=198.18.0.11",
            "198.18.0",
            "x=198.18.0.11,x=198.18.0.12",
            "198.18.0.11,198.18.0.11",
            "198.18.0.11:0",
        ] {
            assert!(parse_masters(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_vip("2001:db8::5/64").unwrap().1, 64);
        assert_eq!(parse_vip("198.18.0.5").unwrap().1, 32);
        for bad in ["198.18.0.5/33", "198.18.0.5/0", "vip", "198.18.0.5/x"] {
            assert!(parse_vip(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vip_proxy_detects_node_interface_and_address() {
        let g = generate(&opts(Shape::VipProxy), &node2()).unwrap();
        assert_eq!(
            g.detected,
            [
                "this node: master-2 (198.18.0.12 is on eth0)",
                "interface: eth0 (holds 198.18.0.12)",
                "address: 198.18.0.12 (this master's)"
            ]
        );
        let c = validate(&g.text);
        assert_eq!(Shape::of(&c), Shape::VipProxy);
        let v = c.vrrp.into_iter().next().unwrap();
        assert_eq!(v.interface, "eth0");
        assert_eq!(
            v.instance.primary_ip,
            "198.18.0.12".parse::<IpAddr>().unwrap()
        );
        assert_eq!(v.instance.base_priority.get(), 140);
        assert_eq!(v.instance.vrid.get(), 51);
        assert_eq!(v.instance.peers, None, "multicast unless --unicast");
        assert_eq!(
            v.track,
            Track::Proxy(crate::config::FrontendKind::Apiserver)
        );
        assert_eq!(v.vips, vec![("198.18.0.5".parse().unwrap(), 24)]);
        let api = &c.frontends[0];
        assert_eq!(api.listen, vec!["0.0.0.0:8443".parse().unwrap()]);
        let names: Vec<&str> = api.backends.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["master-1", "master-2", "master-3"]);
        assert_eq!(api.backends[2].addr, "198.18.0.13:6443".parse().unwrap());
        assert!(
            g.text.contains("controlPlaneEndpoint: \"198.18.0.5:8443\""),
            "{}",
            g.text
        );
        assert_eq!(c.admin.listen, vec!["127.0.0.1:9469".parse().unwrap()]);
    }

    #[test]
    fn vip_only_tracks_this_nodes_apiserver() {
        let g = generate(&opts(Shape::VipOnly), &node2()).unwrap();
        let c = validate(&g.text);
        assert_eq!(Shape::of(&c), Shape::VipOnly);
        let v = c.vrrp.into_iter().next().unwrap();
        match v.track {
            Track::Backend(id) => assert_eq!(c.frontends[0].backends[id.master].name, "master-2"),
            other => panic!("{other:?}"),
        }
        assert!(
            g.text.contains("controlPlaneEndpoint: \"198.18.0.5:6443\""),
            "{}",
            g.text
        );
    }

    fn dns_opts() -> ConfigOptions {
        let mut o = opts(Shape::Dns);
        o.dns_name = Some("api.cluster.example".to_owned());
        o.dns_servers = vec!["198.18.0.53".to_owned(), "[2001:db8::53]:5353".to_owned()];
        o
    }

    /// The DNS shape: no VIP, no proxy, a `dns:` section that `apivip check` accepts
    /// (the key file not installed yet is its only warning), the same text on every
    /// master, and kubeadm's endpoint is the name on the apiservers' port.
    #[test]
    fn dns_shape_publishes_the_name_and_needs_its_flags() {
        let g = generate(&dns_opts(), &node2()).unwrap();
        let (c, warnings) = Config::from_yaml_with(
            &g.text,
            Path::new("/etc/apivip/apivip.yaml"),
            MissingFiles::Warn,
        )
        .unwrap_or_else(|e| panic!("{}\n{}", g.text, e.lines().join("\n")));
        assert!(
            warnings.iter().all(|w| w.value.as_deref().is_some_and(|v| v
                .starts_with("/etc/kubernetes/pki/")
                || v == DEFAULT_DNS_KEY_FILE)),
            "{warnings:?}"
        );
        assert_eq!(Shape::of(&c), Shape::Dns);
        assert!(c.vrrp.is_empty());
        assert!(c.frontends[0].listen.is_empty(), "no proxy");
        let d = c.dns.as_ref().unwrap();
        assert_eq!(d.name.to_ascii(), "api.cluster.example.");
        assert_eq!(d.zone.to_ascii(), "cluster.example.");
        assert_eq!(
            d.servers,
            vec![
                "198.18.0.53:53".parse().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ]
        );
        assert_eq!(d.ttl, std::time::Duration::from_secs(5));
        assert_eq!(
            d.node, None,
            "found at start: the same config on every master"
        );
        assert_eq!(d.tsig.key.to_ascii(), DEFAULT_DNS_KEY);
        assert!(
            g.text
                .contains("controlPlaneEndpoint: \"api.cluster.example:6443\""),
            "{}",
            g.text
        );
        let other = Facts {
            interfaces: vec![iface("eth0", &["198.18.0.13/24"])],
        };
        assert_eq!(
            generate(&dns_opts(), &other)
                .unwrap()
                .text
                .lines()
                .skip(1)
                .collect::<Vec<_>>(),
            g.text.lines().skip(1).collect::<Vec<_>>(),
            "only the first line (which master) differs"
        );
        let fragment = crate::generate::kubeadm::generate(&c, &Default::default()).unwrap();
        assert!(
            fragment.contains("controlPlaneEndpoint: \"api.cluster.example:6443\""),
            "{fragment}"
        );

        // --node pins it; a zone given explicitly.
        let mut o = dns_opts();
        o.node = Some("master-3".to_owned());
        o.dns_name = Some("k8s.api.cluster.example.".to_owned());
        o.dns_zone = Some("cluster.example".to_owned());
        let c = validate_with_key(&generate(&o, &node2()).unwrap().text);
        let d = c.dns.unwrap();
        assert_eq!(d.node.as_deref(), Some("master-3"));
        assert_eq!(d.zone.to_ascii(), "cluster.example.");

        // What is refused, naming the flag.
        let refused = |change: &dyn Fn(&mut ConfigOptions), facts: &Facts, needle: &str| {
            let mut o = dns_opts();
            change(&mut o);
            let e = generate(&o, facts).expect_err(needle).to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        };
        refused(&|o| o.dns_name = None, &node2(), "--dns-name is missing");
        refused(
            &|o| o.dns_servers.clear(),
            &node2(),
            "--dns-server is missing",
        );
        refused(
            &|o| o.dns_name = Some("api".to_owned()),
            &node2(),
            "--dns-name: \"api\"",
        );
        refused(
            &|o| o.dns_name = Some("a b.example".to_owned()),
            &node2(),
            "--dns-name",
        );
        refused(
            &|o| o.dns_zone = Some("other.example".to_owned()),
            &node2(),
            "not inside the zone other.example.",
        );
        refused(
            &|o| o.dns_servers = vec!["ns1.example".to_owned()],
            &node2(),
            "--dns-server: \"ns1.example\"",
        );
        refused(
            &|o| o.dns_key_file = "dns.key".to_owned(),
            &node2(),
            "--dns-key-file",
        );
        refused(
            &|o| o.vip = Some(parse_vip("198.18.0.5/24").unwrap()),
            &node2(),
            "the dns shape has no VIP",
        );
        refused(
            &|o| o.unicast = true,
            &node2(),
            "--unicast only applies to the VIP shapes",
        );
        let worker = Facts {
            interfaces: vec![iface("ens3", &["198.18.0.50/24"])],
        };
        refused(&|_| {}, &worker, "the dns shape runs on the masters");
        let mut o = opts(Shape::LocalProxy);
        o.dns_name = Some("api.cluster.example".to_owned());
        assert!(
            matches!(generate(&o, &node2()), Err(GenerateError::Usage(m)) if m.contains("only apply to --shape dns"))
        );
    }

    fn validate_with_key(text: &str) -> Config {
        Config::from_yaml_with(
            text,
            Path::new("/etc/apivip/apivip.yaml"),
            MissingFiles::Warn,
        )
        .unwrap_or_else(|e| panic!("{text}\n{}", e.lines().join("\n")))
        .0
    }

    #[test]
    fn local_proxy_needs_no_vip_and_runs_on_workers() {
        let worker = Facts {
            interfaces: vec![
                iface("lo", &["127.0.0.1/8"]),
                iface("ens3", &["198.18.0.50/24"]),
            ],
        };
        let mut o = opts(Shape::LocalProxy);
        o.etcd = true;
        let g = generate(&o, &worker).unwrap();
        assert_eq!(g.detected, ["this node: not one of the masters (a worker)"]);
        let c = validate(&g.text);
        assert_eq!(Shape::of(&c), Shape::LocalProxy);
        assert!(c.vrrp.is_empty());
        assert_eq!(
            c.frontends[0].listen,
            vec!["127.0.0.1:8443".parse().unwrap()]
        );
        assert_eq!(
            c.frontends[1].listen,
            vec!["127.0.0.1:12379".parse().unwrap()]
        );
        // VRRP flags make no sense without a VIP.
        let mut o = opts(Shape::LocalProxy);
        o.unicast = true;
        assert!(
            matches!(generate(&o, &worker), Err(GenerateError::Usage(m)) if m.contains("--unicast"))
        );
        o.unicast = false;
        o.vip = Some(parse_vip("198.18.0.5/24").unwrap());
        assert!(generate(&o, &worker).is_err());
    }

    #[test]
    fn unicast_peers_are_the_other_masters() {
        let mut o = opts(Shape::VipProxy);
        o.unicast = true;
        o.etcd = true;
        let c = validate(&generate(&o, &node2()).unwrap().text);
        let peers = c.vrrp.into_iter().next().unwrap().instance.peers.unwrap();
        assert_eq!(
            peers,
            vec![
                "198.18.0.11".parse::<IpAddr>().unwrap(),
                "198.18.0.13".parse().unwrap()
            ]
        );
        assert_eq!(
            c.frontends[1].listen,
            vec!["198.18.0.5:2379".parse().unwrap()]
        );
    }

    #[test]
    fn keepalived_compatible_v2_with_pass() {
        let mut o = opts(Shape::VipProxy);
        o.vrrp_version = 2;
        o.auth_pass = Some("42secret".to_owned());
        o.priority = Some(100);
        let g = generate(&o, &node2()).unwrap();
        let c = validate(&g.text);
        let v = c.vrrp.into_iter().next().unwrap();
        assert!(matches!(
            v.instance.version,
            crate::vrrp::machine::VersionConfig::V2 { auth: Some(_), .. }
        ));
        assert_eq!(v.instance.base_priority.get(), 100);
        assert!(
            g.text.contains("--vrrp-version 2 --auth-pass ..."),
            "the secret is not echoed: {}",
            g.text
        );
        o.vrrp_version = 3;
        assert!(generate(&o, &node2()).is_err(), "v3 has no auth");
        o.vrrp_version = 2;
        o.auth_pass = Some("123456789".to_owned());
        assert!(generate(&o, &node2()).is_err(), "at most 8 bytes");
    }

    #[test]
    fn the_vips_subnet_finds_the_interface_when_no_master_address_is_local() {
        // The masters are listed by another address (e.g. a separate API network), so
        // --node says which one this is; the interface comes from the VIP's subnet.
        let facts = Facts {
            interfaces: vec![
                iface("lo", &["127.0.0.1/8"]),
                iface("bond0", &["198.18.0.42/24"]),
            ],
        };
        let mut o = opts(Shape::VipProxy);
        o.masters = parse_masters("a=198.19.0.11,b=198.19.0.12").unwrap();
        assert!(
            matches!(generate(&o, &facts), Err(GenerateError::Undetected(m)) if m.contains("--node") && m.contains("198.18.0.42"))
        );
        o.node = Some("b".to_owned());
        let g = generate(&o, &facts).unwrap();
        assert_eq!(
            g.detected,
            [
                "this node: b (198.19.0.12), given",
                "interface: bond0 (198.18.0.42/24 holds the VIP's subnet)",
                "address: 198.18.0.42 (198.18.0.42/24 on bond0)"
            ]
        );
        let v = validate(&g.text).vrrp.into_iter().next().unwrap();
        assert_eq!(v.interface, "bond0");
        assert_eq!(v.instance.base_priority.get(), 140);
        // Nothing matches: the error names the flag.
        o.vip = Some(parse_vip("198.20.0.5/24").unwrap());
        assert!(
            matches!(generate(&o, &facts), Err(GenerateError::Undetected(m)) if m.contains("--interface"))
        );
        // Given the interface, its address serves even outside the VIP's subnet.
        o.interface = Some("bond0".to_owned());
        let v = validate(&generate(&o, &facts).unwrap().text)
            .vrrp
            .into_iter()
            .next()
            .unwrap();
        assert_eq!(
            v.instance.primary_ip,
            "198.18.0.42".parse::<IpAddr>().unwrap()
        );
        // An interface without an address of the VIP's family: the error names --address.
        let v6_only = Facts {
            interfaces: vec![iface("bond0", &["2001:db8::42/64"])],
        };
        assert!(
            matches!(generate(&o, &v6_only), Err(GenerateError::Undetected(m)) if m.contains("--address"))
        );
        o.address = Some("198.20.0.42".parse().unwrap());
        assert!(generate(&o, &v6_only).is_ok());
    }

    #[test]
    fn a_held_vip_is_not_taken_for_this_nodes_address() {
        // keepalived holds the VIP on this node right now (a migration).
        let mut facts = node2();
        facts.interfaces[1]
            .addrs
            .insert(0, ("198.18.0.5".parse().unwrap(), 24));
        let g = generate(&opts(Shape::VipProxy), &facts).unwrap();
        assert_eq!(
            validate(&g.text)
                .vrrp
                .into_iter()
                .next()
                .unwrap()
                .instance
                .primary_ip,
            "198.18.0.12".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn ipv6_vip_takes_the_interfaces_ipv6_address() {
        let facts = Facts {
            interfaces: vec![iface(
                "eth0",
                &["198.18.0.11/24", "fe80::1/64", "2001:db8::11/64"],
            )],
        };
        let mut o = opts(Shape::VipProxy);
        o.vip = Some(parse_vip("2001:db8::5/64").unwrap());
        let g = generate(&o, &facts).unwrap();
        let c = validate(&g.text);
        assert_eq!(
            c.vrrp.into_iter().next().unwrap().instance.primary_ip,
            "2001:db8::11".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.frontends[0].listen, vec!["[::]:8443".parse().unwrap()]);
        assert!(
            g.text
                .contains("controlPlaneEndpoint: \"[2001:db8::5]:8443\""),
            "{}",
            g.text
        );
    }

    #[test]
    fn priorities_fall_by_position_within_the_health_weight() {
        assert_eq!(
            (0..3).map(|i| default_priority(i, 3)).collect::<Vec<_>>(),
            [150, 140, 130]
        );
        assert_eq!(default_priority(4, 5), 110);
        let seven: Vec<u8> = (0..7).map(|i| default_priority(i, 7)).collect();
        assert_eq!(seven, [150, 144, 138, 132, 126, 120, 114]);
        assert!(seven[0] - seven[6] < 50);
    }

    #[test]
    fn every_shape_every_option_validates() {
        for shape in Shape::ALL {
            for (unicast, etcd, v2) in [
                (false, false, false),
                (true, true, false),
                (false, true, true),
            ] {
                let mut o = if shape == Shape::Dns {
                    dns_opts()
                } else {
                    opts(shape)
                };
                o.etcd = etcd;
                if matches!(shape, Shape::VipProxy | Shape::VipOnly) {
                    o.unicast = unicast;
                    if v2 {
                        o.vrrp_version = 2;
                        o.auth_pass = Some("pw".to_owned());
                    }
                }
                let g = generate(&o, &node2()).unwrap();
                let c = validate_with_key(&g.text);
                assert_eq!(Shape::of(&c), shape, "{}", g.text);
            }
        }
    }
}
