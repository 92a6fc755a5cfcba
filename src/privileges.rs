//! Least privilege: once the config is loaded and the privileged ports are bound,
//! apivip keeps only the capabilities its config needs, through the `caps` crate.
//!
//! - With a `vrrp:` section: `CAP_NET_ADMIN` (add and remove the VIPs over netlink) and
//!   `CAP_NET_RAW` (the VRRP raw socket, gratuitous ARP and unsolicited NA,
//!   `SO_BINDTODEVICE`). Without one (proxy only): nothing.
//! - `CAP_NET_BIND_SERVICE` is never kept: listen ports below
//!   `net.ipv4.ip_unprivileged_port_start` are bound first
//!   ([`crate::supervisor::Prebound`]).
//!
//! Linux capabilities belong to each thread, and a new thread copies its creator's, so
//! [`drop_to`] runs on the main thread before the tokio runtime or any other thread
//! exists: every thread the daemon ever has then starts with the reduced sets. It
//! lowers the effective and permitted sets to what is kept, empties the inheritable
//! and ambient sets (a program apivip runs inherits nothing), and, when the process
//! may (`CAP_SETPCAP`, i.e. started as root), drops the rest of the bounding set so
//! that nothing can be regained even through a set-uid or file-capability program.
//!
//! apivip never needs to be root: a unit that runs it as a dedicated user with
//! `AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW` gives it exactly what is kept here.
//! What it lacks is not checked here: the election's start names a missing capability
//! in its error (`needs CAP_NET_RAW (run as root or grant the capability)`).

use caps::{CapSet, Capability, CapsHashSet};

use crate::config::Config;

/// The capabilities `config` needs for the daemon's life (pure).
pub fn needed(config: &Config) -> Vec<Capability> {
    if !config.vrrp.is_empty() {
        vec![Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW]
    } else {
        Vec::new()
    }
}

/// `net.ipv4.ip_unprivileged_port_start` of this network namespace (it applies to
/// IPv6 too): ports below it need `CAP_NET_BIND_SERVICE`. 1024 if unreadable.
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// What [`drop_to`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Kept in the effective and permitted sets (sorted).
    pub kept: Vec<Capability>,
    /// Wanted but not permitted to this process (the election reports it at start).
    pub missing: Vec<Capability>,
    /// Dropped from the permitted set (sorted).
    pub dropped: Vec<Capability>,
    /// Whether the bounding set now holds only what is kept (needs `CAP_SETPCAP`).
    pub bounding_reduced: bool,
    /// Threads in the process when the sets were lowered (1 unless called too late:
    /// the others keep their capabilities).
    pub threads: usize,
}

/// Names for a log line: `CAP_NET_ADMIN,CAP_NET_RAW`, or `none`.
pub fn names(set: &[Capability]) -> String {
    if set.is_empty() {
        return "none".to_owned();
    }
    set.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn sorted(set: CapsHashSet) -> Vec<Capability> {
    let mut v: Vec<Capability> = set.into_iter().collect();
    v.sort_by_key(|c| c.index());
    v
}

/// Lowers the calling thread's capabilities to `keep` (see the module doc). Call it on
/// the main thread before any other thread starts.
pub fn drop_to(keep: &[Capability]) -> Result<Dropped, caps::errors::CapsError> {
    let permitted = caps::read(None, CapSet::Permitted)?;
    let effective = caps::read(None, CapSet::Effective)?;
    let wanted: CapsHashSet = keep.iter().copied().collect();
    let kept: CapsHashSet = wanted.intersection(&permitted).copied().collect();
    let missing: CapsHashSet = wanted.difference(&permitted).copied().collect();
    // The bounding set first, while CAP_SETPCAP is still effective.
    let may_bound = effective.contains(&Capability::CAP_SETPCAP);
    if may_bound {
        for c in caps::read(None, CapSet::Bounding)? {
            if !kept.contains(&c) {
                caps::drop(None, CapSet::Bounding, c)?;
            }
        }
    }
    // Kernels before 4.3 have no ambient set: nothing to clear there.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Inheritable)?;
    // Effective before permitted: effective must stay a subset of permitted.
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    let threads = std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count);
    Ok(Dropped {
        dropped: sorted(permitted.difference(&kept).copied().collect()),
        kept: sorted(kept),
        missing: sorted(missing),
        bounding_reduced: may_bound,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_election_needs_capabilities() {
        let proxy = Config::from_yaml(
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {kind: tcp}}\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        assert!(needed(&proxy).is_empty());
        let vrrp = Config::from_yaml(
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {kind: tcp}}\nvrrp: {interface: eth0, address: 198.18.0.11, vrid: 51, priority: 100, vips: [198.18.0.5/24]}\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        assert_eq!(names(&needed(&vrrp)), "CAP_NET_ADMIN,CAP_NET_RAW");
        assert_eq!(names(&[]), "none");
    }
}
