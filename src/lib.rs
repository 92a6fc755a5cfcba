//! apivip keeps one Kubernetes control-plane endpoint alive.
//!
//! # Layout
//!
//! ```text
//!            config (YAML, validated)                 admin HTTP (hyper): /metrics /healthz
//!                    |                                /readyz /status, POST controls
//!                    v                                          ^ reads at request time
//!   +---------- supervisor (signals, drain) ---------------+    |
//!   |                |                                      |   |
//!   v                v                                      v   |
//! health checkers --> HealthView (watch) -------> proxy frontends (atomic counters)
//! (tcp, https,       per-backend up/down,         (listen, pick a healthy
//!  etcd mTLS)        drained, failure cause         backend, forward bytes)
//!   |                    |
//!   | check counters     +--> VRRP election thread (report on request, history)
//!   v
//! events::History (bounded: VRRP and backend changes, controls)
//!   | broadcast (never waits)
//!   v
//! notify runner: plan (sans-IO) -> one bounded queue and worker per hook -> scripts
//! ```
//!
//! - [`config`]: raw YAML schema, validation into a typed [`config::Config`].
//! - [`health`]: the sans-IO rise/fall machine ([`health::state`]), the probes and
//!   the [`health::HealthView`] every other part reads.
//! - [`proxy`]: the sans-IO balancer ([`proxy::balance`]), listeners and forwarding.
//! - [`vrrp`]: the VRRP (v3 and v2) packet codec and its units (sans-IO); the election
//!   machine and the raw-socket shell build on it.
//! - [`supervisor`]: builds the tasks from a `Config`, handles signals and draining.
//! - [`systemd`]: `sd_notify` (ready, status line, watchdog, stopping, reloading).
//! - [`privileges`]: drops every capability the config does not need, before any
//!   thread starts.
//! - [`admin`]: the admin endpoint (metrics, liveness, readiness, the status document,
//!   controls), the `apivip status` client and screen.
//! - [`events`]: the bounded history of state changes and controls, and the feed of
//!   changes the notify hooks subscribe to.
//! - [`notify`]: operator scripts run on VRRP and backend changes (`notify:`), each
//!   queued per hook and killed at its timeout.
//! - [`generate`]: `apivip config`, `manifest` and `kubeadm-config` (pure generators
//!   and a thin interface-detection shell).
//! - [`testkit`]: the imitation kube-apiserver and test certificates, used by the
//!   tests, the benchmarks and `apivip demo`.
//!
//! The sans-IO cores (`health::state`, `proxy::balance`, `config`) open no sockets and
//! never read the clock: time is an argument.
#![warn(missing_docs)]

pub mod admin;
pub mod config;
pub mod dns;
pub mod events;
pub mod generate;
pub mod health;
pub mod notify;
pub mod privileges;
pub mod proxy;
pub mod supervisor;
pub mod systemd;
pub mod testkit;
pub mod units;
pub mod vrrp;

#[cfg(test)]
mod architecture {
    /// The sans-IO cores never touch the runtime, sockets or the clock (STYLE.md §1).
    #[test]
    fn sans_io_cores_do_no_io() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // Everything under src/vrrp but its io/ folder (and unit tests, which read the
        // clock once for a base instant) is sans-IO.
        let mut vrrp = Vec::new();
        let mut dirs = vec![root.join("vrrp")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path != root.join("vrrp/io") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs")
                    && path.file_name().is_some_and(|n| n != "tests.rs")
                {
                    vrrp.push(
                        path.strip_prefix(&root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        assert!(vrrp.len() >= 10, "the vrrp cores were not found: {vrrp:?}");
        let listed = [
            "health/state.rs",
            "proxy/balance.rs",
            "config/mod.rs",
            "config/raw.rs",
            "config/notify.rs",
            "notify/plan.rs",
            "config/frontend.rs",
            "config/check.rs",
            "config/vrrp.rs",
            "config/admin.rs",
            "config/validate.rs",
            "units.rs",
            "dns/wire.rs",
            "dns/votes.rs",
            "dns/publisher.rs",
            "generate/mod.rs",
            "generate/config.rs",
            "generate/manifest.rs",
            "generate/kubeadm.rs",
        ];
        for file in listed.iter().map(|f| f.to_string()).chain(vrrp) {
            let text = std::fs::read_to_string(root.join(&file)).unwrap();
            for banned in [
                "tokio::",
                "Instant::now",
                "SystemTime::now",
                "TcpStream",
                "UdpSocket",
                "std::thread",
            ] {
                assert!(!text.contains(banned), "{file} uses {banned}");
            }
        }
    }
}
