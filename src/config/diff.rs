//! What changed between the running config and a new one: the plan a reload applies.
//!
//! Pure: two validated [`Config`]s in, a [`ReloadPlan`] out. The supervisor applies the
//! plan; nothing here binds, probes or talks to the election.
//!
//! A master keeps its identity across a reload when its name and address are the same
//! in both files (the index may change when masters before it are added or removed);
//! anything else is a master removed and another added.

use std::net::SocketAddr;

use super::{Config, Frontend, FrontendKind, Vrrp};

/// What a reload changes, section by section.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadPlan {
    /// One entry per frontend present in either config, in [`FrontendKind::ALL`] order.
    pub frontends: Vec<FrontendChange>,
    /// `admin.listen`.
    pub admin: ListenChange,
    /// `vrrp:`: one entry per instance in either config, by name (an instance keeps
    /// its identity across a reload by its name): the new config's order, then the
    /// removed ones.
    pub vrrp: Vec<(String, VrrpChange)>,
    /// Changes that only apply at the next restart (said in the reload's answer and
    /// the log; the rest of the file is applied).
    pub at_restart: Vec<String>,
}

/// One frontend's change.
#[derive(Debug, Clone, PartialEq)]
pub enum FrontendChange {
    /// Not configured before: start it (listeners, checks).
    Added(FrontendKind),
    /// No longer configured: stop its listeners, drain its connections.
    Removed(FrontendKind),
    /// In both files.
    Kept {
        /// Which frontend.
        kind: FrontendKind,
        /// Its listen addresses.
        listen: ListenChange,
        /// Which old master each new one is.
        backends: BackendMap,
        /// The check changed (applies from the next probe).
        check: bool,
        /// Balance, limits, timeouts or close-on-down changed.
        settings: bool,
    },
}

impl FrontendChange {
    /// The frontend this is about.
    pub fn kind(&self) -> FrontendKind {
        match self {
            FrontendChange::Added(k) | FrontendChange::Removed(k) => *k,
            FrontendChange::Kept { kind, .. } => *kind,
        }
    }
}

/// Listen addresses before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenChange {
    /// In both.
    pub kept: Vec<SocketAddr>,
    /// New: bound before anything old is closed.
    pub added: Vec<SocketAddr>,
    /// Gone: their listeners close (their connections stay).
    pub removed: Vec<SocketAddr>,
}

impl ListenChange {
    /// The change from `old` to `new`.
    pub fn between(old: &[SocketAddr], new: &[SocketAddr]) -> Self {
        ListenChange {
            kept: new.iter().filter(|a| old.contains(a)).copied().collect(),
            added: new.iter().filter(|a| !old.contains(a)).copied().collect(),
            removed: old.iter().filter(|a| !new.contains(a)).copied().collect(),
        }
    }

    /// Whether anything changed.
    pub fn is_changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// Which master of the old config each master of the new one is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendMap {
    /// For each new index, the old index of the same master (`None`: added).
    pub old_of_new: Vec<Option<usize>>,
    /// Old indices with no counterpart (removed).
    pub removed: Vec<usize>,
}

impl BackendMap {
    /// Matches masters by name and address.
    pub fn between(old: &Frontend, new: &Frontend) -> Self {
        let old_of_new: Vec<Option<usize>> = new
            .backends
            .iter()
            .map(|n| {
                old.backends
                    .iter()
                    .position(|o| o.name == n.name && o.addr == n.addr)
            })
            .collect();
        let removed = (0..old.backends.len())
            .filter(|i| !old_of_new.contains(&Some(*i)))
            .collect();
        BackendMap {
            old_of_new,
            removed,
        }
    }

    /// The identity map for `n` masters.
    pub fn identity(n: usize) -> Self {
        BackendMap {
            old_of_new: (0..n).map(Some).collect(),
            removed: Vec::new(),
        }
    }

    /// Whether any master was added, removed or moved.
    pub fn is_changed(&self) -> bool {
        !self.removed.is_empty()
            || self
                .old_of_new
                .iter()
                .enumerate()
                .any(|(i, o)| *o != Some(i))
    }
}

/// How the election changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VrrpChange {
    /// Nothing (or no election before and after).
    Unchanged,
    /// Priority, preempt, VIPs, interval, peers, track, announcements: applied to the
    /// running election without giving up the VIP unless the new priority loses.
    InPlace,
    /// The VRID or the interface changed: a planned handover of the old instance,
    /// then the new one starts. The string says what changed.
    Replace(String),
    /// An election is configured now: it starts.
    Added,
    /// No election any more: the old one hands the VIP over and stops.
    Removed,
}

/// The change of every instance, matched by name.
fn vrrp_changes(old: &[Vrrp], new: &[Vrrp]) -> Vec<(String, VrrpChange)> {
    let find = |list: &[Vrrp], name: &str| list.iter().find(|v| v.name == name).cloned();
    let mut out: Vec<(String, VrrpChange)> = new
        .iter()
        .map(|n| {
            let change = VrrpChange::between(find(old, &n.name).as_ref(), Some(n));
            (n.name.clone(), change)
        })
        .collect();
    for o in old.iter().filter(|o| find(new, &o.name).is_none()) {
        out.push((o.name.clone(), VrrpChange::Removed));
    }
    out
}

impl ReloadPlan {
    /// The change of the instance `name` (unchanged when it is in neither config).
    pub fn vrrp_change(&self, name: &str) -> &VrrpChange {
        self.vrrp
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&VrrpChange::Unchanged, |(_, c)| c)
    }

    /// Whether no election changes.
    pub fn vrrp_unchanged(&self) -> bool {
        self.vrrp.iter().all(|(_, c)| *c == VrrpChange::Unchanged)
    }
}

impl VrrpChange {
    /// The change from `old` to `new`.
    pub fn between(old: Option<&Vrrp>, new: Option<&Vrrp>) -> Self {
        match (old, new) {
            (None, None) => VrrpChange::Unchanged,
            (None, Some(_)) => VrrpChange::Added,
            (Some(_), None) => VrrpChange::Removed,
            (Some(o), Some(n)) if o == n => VrrpChange::Unchanged,
            (Some(o), Some(n)) => {
                let mut what = Vec::new();
                if o.interface != n.interface {
                    what.push(format!("interface {} -> {}", o.interface, n.interface));
                }
                if o.instance.vrid != n.instance.vrid {
                    what.push(format!(
                        "vrid {} -> {}",
                        o.instance.vrid.get(),
                        n.instance.vrid.get()
                    ));
                }
                // The sockets are bound to the interface and the address family.
                if o.instance.primary_ip != n.instance.primary_ip {
                    what.push(format!(
                        "address {} -> {}",
                        o.instance.primary_ip, n.instance.primary_ip
                    ));
                }
                if what.is_empty() {
                    VrrpChange::InPlace
                } else {
                    VrrpChange::Replace(what.join(", "))
                }
            }
        }
    }
}

impl ReloadPlan {
    /// The plan that turns `old` into `new`.
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut frontends = Vec::new();
        for kind in FrontendKind::ALL {
            match (old.frontend(kind), new.frontend(kind)) {
                (None, None) => {}
                (None, Some(_)) => frontends.push(FrontendChange::Added(kind)),
                (Some(_), None) => frontends.push(FrontendChange::Removed(kind)),
                (Some(o), Some(n)) => frontends.push(FrontendChange::Kept {
                    kind,
                    listen: ListenChange::between(&o.listen, &n.listen),
                    backends: BackendMap::between(o, n),
                    check: o.check != n.check,
                    settings: o.balance != n.balance
                        || o.max_connections != n.max_connections
                        || o.connect_timeout != n.connect_timeout
                        || o.close_on_down != n.close_on_down
                        || o.not_ready_grace != n.not_ready_grace
                        || o.idle_timeout != n.idle_timeout
                        || o.first_byte_timeout != n.first_byte_timeout
                        || o.half_close_timeout != n.half_close_timeout
                        || o.per_source != n.per_source
                        || o.close_rate != n.close_rate
                        || o.slow_start != n.slow_start
                        || o.rebalance != n.rebalance,
                }),
            }
        }
        let mut at_restart = Vec::new();
        if old.log != new.log {
            at_restart.push(format!(
                "log: format {:?} level {:?} applies at the next restart (running: format {:?} level {:?})",
                new.log.format, new.log.level, old.log.format, old.log.level
            ));
        }
        if old.notify.hooks != new.notify.hooks {
            let names = |c: &Config| {
                c.notify
                    .hooks
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            at_restart.push(format!(
                "notify: hooks [{}] apply at the next restart (running: [{}])",
                names(new),
                names(old)
            ));
        }
        if old.dns != new.dns {
            at_restart.push(
                "dns: the changed DNS settings apply at the next restart (the running publisher keeps the previous ones)"
                    .to_owned(),
            );
        }
        ReloadPlan {
            frontends,
            admin: ListenChange::between(&old.admin.listen, &new.admin.listen),
            vrrp: vrrp_changes(&old.vrrp, &new.vrrp),
            at_restart,
        }
    }

    /// One line per change, for the log and the reload's answer; empty when the new
    /// file changes nothing.
    pub fn describe(&self, old: &Config, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let addrs = |a: &[SocketAddr]| {
            a.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let listen = |out: &mut Vec<String>, key: &str, l: &ListenChange| {
            if !l.added.is_empty() {
                out.push(format!("{key}: listening on {}", addrs(&l.added)));
            }
            if !l.removed.is_empty() {
                out.push(format!(
                    "{key}: no longer listening on {} (its connections stay)",
                    addrs(&l.removed)
                ));
            }
        };
        for f in &self.frontends {
            match f {
                FrontendChange::Added(k) => out.push(format!("{k}: frontend added")),
                FrontendChange::Removed(k) => out.push(format!(
                    "{k}: frontend removed (its connections close after the grace)"
                )),
                FrontendChange::Kept {
                    kind,
                    listen: l,
                    backends,
                    check,
                    settings,
                } => {
                    listen(&mut out, &format!("{kind}.listen"), l);
                    let (Some(o), Some(n)) = (old.frontend(*kind), new.frontend(*kind)) else {
                        continue;
                    };
                    for (i, from) in backends.old_of_new.iter().enumerate() {
                        if from.is_none() {
                            let b = &n.backends[i];
                            out.push(format!("{kind}: backend {} ({}) added", b.name, b.addr));
                        }
                    }
                    for &i in &backends.removed {
                        let b = &o.backends[i];
                        out.push(format!(
                            "{kind}: backend {} ({}) removed (drained: its connections close after {})",
                            b.name,
                            b.addr,
                            crate::units::format_duration(n.not_ready_grace)
                        ));
                    }
                    if *check {
                        out.push(format!(
                            "{kind}.check: changed (applies from the next probe)"
                        ));
                    }
                    if *settings {
                        out.push(format!(
                            "{kind}: balance, limits or timeouts changed (new connections)"
                        ));
                    }
                }
            }
        }
        listen(&mut out, "admin.listen", &self.admin);
        for (name, change) in &self.vrrp {
            let key = format!("vrrp {name}");
            match change {
                VrrpChange::Unchanged => {}
                VrrpChange::InPlace => out.push(format!(
                    "{key}: changed in place (the VIP stays unless the new priority loses)"
                )),
                VrrpChange::Replace(what) => out.push(format!(
                    "{key}: {what}: planned handover of the old instance, then the new one starts"
                )),
                VrrpChange::Added => out.push(format!("{key}: election added")),
                VrrpChange::Removed => out.push(format!(
                    "{key}: election removed (planned handover of the VIP)"
                )),
            }
        }
        if old.shutdown != new.shutdown {
            out.push(format!(
                "shutdown.drain_timeout: {}",
                crate::units::format_duration(new.shutdown.drain_timeout)
            ));
        }
        out.extend(self.at_restart.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml, Path::new("test.yaml")).unwrap()
    }

    #[test]
    fn a_changed_hook_list_applies_at_restart_and_a_changed_timeout_at_once() {
        let base = "backends: [{address: 198.18.0.11}]\n";
        let old = config(&format!(
            "{base}notify: {{backend: /bin/sh, timeout: 5s}}\n"
        ));
        let timeout = config(&format!(
            "{base}notify: {{backend: /bin/sh, timeout: 9s}}\n"
        ));
        assert!(ReloadPlan::between(&old, &timeout).at_restart.is_empty());
        let hooks = config(&format!(
            "{base}notify: {{backend: [/bin/sh, '/bin/sh -c true']}}\n"
        ));
        let plan = ReloadPlan::between(&old, &hooks);
        assert_eq!(
            plan.at_restart,
            ["notify: hooks [backend[0], backend[1]] apply at the next restart (running: [backend])"]
        );
        assert!(plan.describe(&old, &hooks).contains(&plan.at_restart[0]));
    }

    const BASE: &str = "
backends:
  - {name: m1, address: 198.18.0.11}
  - {name: m2, address: 198.18.0.12}
  - {name: m3, address: 198.18.0.13}
apiserver:
  listen: 127.0.0.1:8443
  check: {kind: tcp}
";

    #[test]
    fn the_same_file_changes_nothing() {
        let a = config(BASE);
        let plan = ReloadPlan::between(&a, &a);
        assert!(
            plan.describe(&a, &a).is_empty(),
            "{:?}",
            plan.describe(&a, &a)
        );
        match &plan.frontends[..] {
            [FrontendChange::Kept {
                backends,
                check,
                settings,
                listen,
                ..
            }] => {
                assert!(!backends.is_changed() && !check && !settings && !listen.is_changed());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn masters_keep_their_identity_by_name_and_address() {
        let old = config(BASE);
        // m1 removed, m4 added at the front, m3's address changed.
        let new = config(
            "
backends:
  - {name: m4, address: 198.18.0.14}
  - {name: m2, address: 198.18.0.12}
  - {name: m3, address: 198.18.0.23}
apiserver:
  listen: 127.0.0.1:8443
  check: {kind: tcp}
",
        );
        let plan = ReloadPlan::between(&old, &new);
        let FrontendChange::Kept { backends, .. } = &plan.frontends[0] else {
            panic!("{:?}", plan.frontends);
        };
        assert_eq!(backends.old_of_new, vec![None, Some(1), None]);
        assert_eq!(backends.removed, vec![0, 2]);
        let lines = plan.describe(&old, &new);
        assert!(lines
            .iter()
            .any(|l| l.contains("backend m4 (198.18.0.14:6443) added")));
        assert!(lines
            .iter()
            .any(|l| l.contains("backend m1 (198.18.0.11:6443) removed")));
        assert!(lines
            .iter()
            .any(|l| l.contains("backend m3 (198.18.0.13:6443) removed")));
        assert!(lines
            .iter()
            .any(|l| l.contains("backend m3 (198.18.0.23:6443) added")));
    }

    #[test]
    fn listen_check_and_settings_changes_are_told_apart() {
        let old = config(BASE);
        let new = config(
            "
backends:
  - {name: m1, address: 198.18.0.11}
  - {name: m2, address: 198.18.0.12}
  - {name: m3, address: 198.18.0.13}
apiserver:
  listen: [127.0.0.1:8444, '[::1]:8443']
  check: {kind: tcp, interval: 2s}
  max_connections: 10
",
        );
        let plan = ReloadPlan::between(&old, &new);
        let FrontendChange::Kept {
            listen,
            check,
            settings,
            backends,
            ..
        } = &plan.frontends[0]
        else {
            panic!();
        };
        assert_eq!(listen.removed, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(listen.added.len(), 2);
        assert!(listen.kept.is_empty());
        assert!(*check && *settings && !backends.is_changed());
    }

    #[test]
    fn frontends_and_admin_come_and_go() {
        let old = config(BASE);
        let new = config(&format!(
            "{BASE}etcd:\n  listen: 127.0.0.1:2379\n  check: {{kind: tcp}}\nadmin:\n  listen: []\n"
        ));
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(plan.frontends[1], FrontendChange::Added(FrontendKind::Etcd));
        assert_eq!(plan.admin.removed.len(), 1);
        let back = ReloadPlan::between(&new, &old);
        assert_eq!(
            back.frontends[1],
            FrontendChange::Removed(FrontendKind::Etcd)
        );
        assert_eq!(back.admin.added, old.admin.listen);
    }

    #[test]
    fn vrrp_changes_are_in_place_unless_the_vrid_or_interface_changes() {
        let vrrp = |extra: &str| {
            config(&format!(
                "{BASE}vrrp:\n  interface: eth0\n  address: 198.18.0.11\n  vrid: 51\n  vips: [198.18.0.5/24]\n{extra}"
            ))
        };
        let base = vrrp("");
        let prio = vrrp("  priority: 150\n");
        let vips = vrrp("").clone();
        assert_eq!(
            VrrpChange::between(base.vrrp.first(), vips.vrrp.first()),
            VrrpChange::Unchanged
        );
        assert_eq!(
            VrrpChange::between(base.vrrp.first(), prio.vrrp.first()),
            VrrpChange::InPlace
        );
        let mut other = base.vrrp[0].clone();
        other.interface = "eth1".to_owned();
        other.instance.vrid = crate::vrrp::units::Vrid::new_unchecked(52);
        match VrrpChange::between(base.vrrp.first(), Some(&other)) {
            VrrpChange::Replace(what) => {
                assert!(what.contains("interface eth0 -> eth1") && what.contains("vrid 51 -> 52"))
            }
            c => panic!("{c:?}"),
        }
        assert_eq!(
            VrrpChange::between(None, base.vrrp.first()),
            VrrpChange::Added
        );
        assert_eq!(
            VrrpChange::between(base.vrrp.first(), None),
            VrrpChange::Removed
        );
    }

    #[test]
    fn instances_are_matched_by_name() {
        let two = |a_prio: u8, b: &str| {
            config(&format!(
                "{BASE}vrrp:\n  - {{name: a, interface: eth0, address: 198.18.0.11, vrid: 51, priority: {a_prio}, vips: [198.18.0.5/24]}}\n  - {{name: {b}, interface: eth0, address: 198.18.0.11, vrid: 52, vips: [198.18.0.6/24]}}\n"
            ))
        };
        let old = two(100, "b");
        let new = two(150, "c");
        let plan = ReloadPlan::between(&old, &new);
        assert_eq!(
            plan.vrrp,
            [
                ("a".to_owned(), VrrpChange::InPlace),
                ("c".to_owned(), VrrpChange::Added),
                ("b".to_owned(), VrrpChange::Removed),
            ]
        );
        assert_eq!(*plan.vrrp_change("c"), VrrpChange::Added);
        assert_eq!(*plan.vrrp_change("nowhere"), VrrpChange::Unchanged);
        assert!(!plan.vrrp_unchanged());
        let lines = plan.describe(&old, &new);
        assert!(
            lines.contains(
                &"vrrp a: changed in place (the VIP stays unless the new priority loses)"
                    .to_owned()
            ) && lines.contains(&"vrrp c: election added".to_owned())
                && lines
                    .contains(&"vrrp b: election removed (planned handover of the VIP)".to_owned()),
            "{lines:#?}"
        );
        assert!(ReloadPlan::between(&old, &old).vrrp_unchanged());
    }
}
