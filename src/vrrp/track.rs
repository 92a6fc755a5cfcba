//! Whether this node can serve, as the election's priority follows it: the health
//! policy of the configured `vrrp.track`, evaluated on a [`HealthSnapshot`]. Pure: the
//! shell's health forwarder calls it on every snapshot and tells the machine when the
//! answer changes ([`crate::vrrp::machine::Instance::handle_health`]).

use crate::config::Track;
use crate::health::HealthSnapshot;

/// Whether this node can serve, per the configured track.
/// A drained backend does not count: an operator took it out.
pub fn can_serve(track: &Track, snap: &HealthSnapshot, proxy_listening: bool) -> bool {
    match track {
        Track::Proxy(frontend) => {
            proxy_listening
                && snap.frontend(*frontend).is_some_and(|f| {
                    f.accept_error.is_none() && f.backends.iter().any(|b| b.is_serving())
                })
        }
        Track::Backend(id) => snap.backend(*id).is_some_and(|b| b.is_serving()),
    }
}

/// What this node's ability to serve follows, as the election's health forwarder
/// ([`crate::vrrp::io::shell::spawn_dedicated`]) evaluates it.
///
/// A reload renumbers backends: the supervisor first replaces the health view with
/// one of a new generation, then reconfigures the election with the section whose
/// `Track::Backend` id is valid in it. In between, the old id may name another
/// backend of the new view, so for a view of another generation than the track's the
/// backend is found by the name it had when the track was applied.
#[derive(Debug)]
pub struct Tracked {
    track: Track,
    proxy_listening: bool,
    /// The health generation the track's id is valid in.
    generation: u64,
    /// The tracked backend's name in that generation.
    name: Option<String>,
}

impl Tracked {
    /// Follows `track` as configured, its backend id valid in `snap`'s generation.
    pub fn new(track: Track, proxy_listening: bool, snap: &HealthSnapshot) -> Tracked {
        let name = match &track {
            Track::Backend(id) => snap.backend(*id).map(|b| b.name.clone()),
            Track::Proxy(_) => None,
        };
        Tracked {
            track,
            proxy_listening,
            generation: snap.generation,
            name,
        }
    }

    /// Whether this node can serve by `snap` (of any generation).
    pub fn can_serve(&self, snap: &HealthSnapshot) -> bool {
        if let (Track::Backend(id), Some(name), true) =
            (&self.track, &self.name, snap.generation != self.generation)
        {
            return snap
                .frontend(id.frontend)
                .and_then(|f| f.backends.iter().find(|b| &b.name == name))
                .is_some_and(|b| b.is_serving());
        }
        can_serve(&self.track, snap, self.proxy_listening)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendId, FrontendKind};
    use crate::health::{BackendHealth, FrontendHealth, Status};

    fn id(master: usize) -> BackendId {
        BackendId {
            frontend: FrontendKind::Apiserver,
            master,
        }
    }

    fn backend(master: usize, name: &str, up: bool) -> BackendHealth {
        BackendHealth {
            id: id(master),
            name: name.into(),
            addr: "127.0.0.1:6443".parse().unwrap(),
            status: if up { Status::Up } else { Status::Unknown },
            reason: String::new(),
            since: None,
            drained: false,
        }
    }

    fn snap(generation: u64, backends: Vec<BackendHealth>) -> HealthSnapshot {
        HealthSnapshot {
            generation,
            frontends: vec![FrontendHealth {
                kind: FrontendKind::Apiserver,
                backends,
                accept_error: None,
            }],
        }
    }

    #[test]
    fn the_proxy_track_needs_a_listener_and_one_serving_backend_of_its_frontend() {
        let proxy = Track::Proxy(FrontendKind::Apiserver);
        let one_up = snap(0, vec![backend(0, "a", false), backend(1, "b", true)]);
        assert!(can_serve(&proxy, &one_up, true));
        assert!(!can_serve(&proxy, &one_up, false), "not listening");
        let none_up = snap(0, vec![backend(0, "a", false), backend(1, "b", false)]);
        assert!(!can_serve(&proxy, &none_up, true));
        let mut drained = one_up.clone();
        drained.frontends[0].backends[1].drained = true;
        assert!(!can_serve(&proxy, &drained, true), "an operator drained it");
        let mut failing = one_up.clone();
        failing.frontends[0].accept_error = Some("Too many open files (os error 24)".into());
        assert!(
            !can_serve(&proxy, &failing, true),
            "its listeners cannot accept"
        );
        // Another frontend's health does not count.
        assert!(!can_serve(&Track::Proxy(FrontendKind::Etcd), &one_up, true));
    }

    /// A reload replaced the health view with a renumbered one (new generation)
    /// before the election got the new track: the old track's backend is found by
    /// its name, not by its old index; the new track, applied in that generation, by
    /// its index.
    #[test]
    fn a_renumbered_health_view_keeps_following_the_tracked_backend() {
        let old = snap(0, vec![backend(0, "a", false), backend(1, "self", true)]);
        let tracked = Tracked::new(Track::Backend(id(1)), false, &old);
        assert!(tracked.can_serve(&old));
        // "a" removed: "self" is now index 0, and index 1 is gone.
        let new = snap(1, vec![backend(0, "self", true)]);
        assert!(!can_serve(&Track::Backend(id(1)), &new, false));
        assert!(tracked.can_serve(&new));
        let new_down = snap(1, vec![backend(0, "self", false)]);
        assert!(!tracked.can_serve(&new_down));
        // Renumbered so that the old index names another backend.
        let swapped = snap(2, vec![backend(0, "self", true), backend(1, "b", false)]);
        assert!(!can_serve(&Track::Backend(id(1)), &swapped, false));
        assert!(tracked.can_serve(&swapped));
        // The reloaded track, applied in the new generation, goes by its index.
        let reloaded = Tracked::new(Track::Backend(id(0)), false, &swapped);
        assert!(reloaded.can_serve(&swapped));
        let renamed = snap(2, vec![backend(0, "self2", true), backend(1, "b", false)]);
        assert!(reloaded.can_serve(&renamed));
        // The proxy track ignores names and generations.
        let proxy = Tracked::new(Track::Proxy(FrontendKind::Apiserver), true, &old);
        assert!(proxy.can_serve(&new) && !proxy.can_serve(&new_down));
    }
}
