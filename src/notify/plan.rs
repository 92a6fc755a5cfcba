//! Which hooks run for a change, with which arguments and environment (sans-IO).
//!
//! | hook | runs on | arguments after the configured ones |
//! |---|---|---|
//! | `master`, `backup`, `stop` | the VRRP instance entering that state | none (keepalived `notify_master`, `notify_backup`, `notify_stop`) |
//! | `vrrp` | every VRRP state change | `INSTANCE NAME STATE PRIORITY` (keepalived `notify`: `STATE` is `MASTER`, `BACKUP` or `STOP`) |
//! | `backend` | every backend health transition | `FRONTEND BACKEND STATE REASON` (`STATE`: `up`, `not_ready`, `unreachable`) |
//!
//! As in keepalived, the state hooks come before the generic `vrrp` hook. Every run
//! gets the environment of [`ENV`]; apivip's own environment is inherited.

use std::path::PathBuf;

use crate::config::notify::{HookOn, Notify};
use crate::config::Config;
use crate::events::{Change, Notice};
use crate::vrrp::machine::State;

/// The environment variables a hook gets, and what they hold.
pub const ENV: &[(&str, &str)] = &[
    (
        "APIVIP_HOOK",
        "the hook's name: master, vrrp, backend[1], ...",
    ),
    ("APIVIP_EVENT", "vrrp or backend"),
    (
        "APIVIP_STATE",
        "the state entered: master, backup, stop; or up, not_ready, unreachable",
    ),
    (
        "APIVIP_FROM",
        "the state left (same words; unknown for a backend before its first check)",
    ),
    (
        "APIVIP_REASON",
        "why: master_down, preempt, shutdown, ...; ok or the failed check's message",
    ),
    (
        "APIVIP_TIME_MS",
        "when it changed, milliseconds since the Unix epoch",
    ),
    (
        "APIVIP_INSTANCE",
        "vrrp: notify.instance (default vrid-VRID)",
    ),
    ("APIVIP_VRID", "vrrp: the virtual router id"),
    (
        "APIVIP_PRIORITY",
        "vrrp: the priority advertised after the change",
    ),
    (
        "APIVIP_VIP",
        "vrrp: the VIPs with prefix length, separated by spaces",
    ),
    ("APIVIP_INTERFACE", "vrrp: the interface"),
    ("APIVIP_FRONTEND", "backend: apiserver or etcd"),
    ("APIVIP_BACKEND", "backend: its name"),
    (
        "APIVIP_BACKEND_ADDRESS",
        "backend: the address it is checked at",
    ),
];

/// Facts about this node's VRRP instances that their runs carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Per instance, in config order.
    pub instances: Vec<InstanceFacts>,
}

/// What a VRRP run says about its instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFacts {
    /// `vrrp[].name`.
    pub name: String,
    /// The VRRP interface.
    pub interface: String,
    /// The VIPs, `198.18.0.5/24 2001:db8::5/64`.
    pub vips: String,
}

impl Context {
    /// From the config's `vrrp:`.
    pub fn from_config(config: &Config) -> Context {
        Context {
            instances: config
                .vrrp
                .iter()
                .map(|v| InstanceFacts {
                    name: v.name.clone(),
                    interface: v.interface.clone(),
                    vips: v
                        .vips
                        .iter()
                        .map(|(a, p)| format!("{a}/{p}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                })
                .collect(),
        }
    }

    /// The facts of instance `name` (empty ones for an instance no longer configured).
    fn instance(&self, name: &str) -> InstanceFacts {
        self.instances
            .iter()
            .find(|i| i.name == name)
            .cloned()
            .unwrap_or_else(|| InstanceFacts {
                name: name.to_owned(),
                ..InstanceFacts::default()
            })
    }
}

/// One run of one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The hook's index in [`Notify::hooks`].
    pub hook: usize,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments: the configured ones, then apivip's.
    pub args: Vec<String>,
    /// The variables set for it (see [`ENV`]).
    pub env: Vec<(&'static str, String)>,
    /// How long it may run (`notify.timeout`).
    pub timeout: std::time::Duration,
    /// What it is for, for logs: `vrrp backup -> master (master_down)`.
    pub what: String,
}

/// A VRRP state in the hooks' words: apivip's `initialize` (not in the election) is
/// keepalived's `STOP`.
pub const fn vrrp_state(s: State) -> &'static str {
    match s {
        State::Initialize => "stop",
        State::Backup => "backup",
        State::Master => "master",
        State::Fault => "fault",
    }
}

/// The runs `notice` causes, in the order they are queued.
pub fn plan(notify: &Notify, ctx: &Context, notice: &Notice) -> Vec<Run> {
    let mut runs = Vec::new();
    match &notice.change {
        Change::Vrrp {
            instance,
            vrid,
            from,
            to,
            priority,
        } => {
            let facts = ctx.instance(instance);
            let state = vrrp_state(*to);
            let env = |hook: &str| {
                vec![
                    ("APIVIP_HOOK", hook.to_owned()),
                    ("APIVIP_EVENT", "vrrp".to_owned()),
                    ("APIVIP_STATE", state.to_owned()),
                    ("APIVIP_FROM", vrrp_state(*from).to_owned()),
                    ("APIVIP_REASON", notice.reason.clone()),
                    ("APIVIP_TIME_MS", notice.at_ms.to_string()),
                    ("APIVIP_INSTANCE", instance.clone()),
                    ("APIVIP_VRID", vrid.to_string()),
                    ("APIVIP_PRIORITY", priority.to_string()),
                    ("APIVIP_VIP", facts.vips.clone()),
                    ("APIVIP_INTERFACE", facts.interface.clone()),
                ]
            };
            let what = format!(
                "vrrp {instance} {} -> {state} ({})",
                vrrp_state(*from),
                notice.reason
            );
            let wanted = match to {
                State::Master => HookOn::Master,
                State::Backup => HookOn::Backup,
                State::Initialize => HookOn::Stop,
                State::Fault => HookOn::Fault,
            };
            // keepalived runs notify_* before notify.
            for pass in [wanted, HookOn::Vrrp] {
                for (i, h) in notify
                    .hooks
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.on == pass)
                {
                    let mut args = h.args.clone();
                    if pass == HookOn::Vrrp {
                        args.extend([
                            "INSTANCE".to_owned(),
                            instance.clone(),
                            state.to_ascii_uppercase(),
                            priority.to_string(),
                        ]);
                    }
                    runs.push(Run {
                        hook: i,
                        program: h.program.clone(),
                        args,
                        env: env(&h.name),
                        timeout: notify.timeout,
                        what: what.clone(),
                    });
                }
            }
        }
        Change::Backend {
            id,
            name,
            addr,
            from,
            to,
        } => {
            let what = format!(
                "backend {}/{name} {} -> {} ({})",
                id.frontend,
                from.label(),
                to.label(),
                notice.reason
            );
            for (i, h) in notify
                .hooks
                .iter()
                .enumerate()
                .filter(|(_, h)| h.on == HookOn::Backend)
            {
                let mut args = h.args.clone();
                args.extend([
                    id.frontend.as_str().to_owned(),
                    name.clone(),
                    to.label().to_owned(),
                    notice.reason.clone(),
                ]);
                runs.push(Run {
                    hook: i,
                    program: h.program.clone(),
                    args,
                    env: vec![
                        ("APIVIP_HOOK", h.name.clone()),
                        ("APIVIP_EVENT", "backend".to_owned()),
                        ("APIVIP_STATE", to.label().to_owned()),
                        ("APIVIP_FROM", from.label().to_owned()),
                        ("APIVIP_REASON", notice.reason.clone()),
                        ("APIVIP_TIME_MS", notice.at_ms.to_string()),
                        ("APIVIP_FRONTEND", id.frontend.as_str().to_owned()),
                        ("APIVIP_BACKEND", name.clone()),
                        ("APIVIP_BACKEND_ADDRESS", addr.to_string()),
                    ],
                    timeout: notify.timeout,
                    what: what.clone(),
                });
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notify::Hook;
    use crate::config::{BackendId, FrontendKind};
    use crate::health::{DownCause, Status};

    fn hook(name: &str, on: HookOn, args: &[&str]) -> Hook {
        Hook {
            name: name.to_owned(),
            on,
            program: PathBuf::from(format!("/hooks/{name}")),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn notify() -> Notify {
        Notify {
            hooks: vec![
                hook("vrrp", HookOn::Vrrp, &[]),
                hook("master", HookOn::Master, &["master"]),
                hook("backup[0]", HookOn::Backup, &["backup"]),
                hook("backup[1]", HookOn::Backup, &[]),
                hook("stop", HookOn::Stop, &["stop"]),
                hook("backend", HookOn::Backend, &["-v"]),
            ],
            timeout: std::time::Duration::from_secs(10),
        }
    }

    fn ctx() -> Context {
        Context {
            instances: vec![InstanceFacts {
                name: "VI_1".to_owned(),
                interface: "eth0".to_owned(),
                vips: "198.18.0.5/24".to_owned(),
            }],
        }
    }

    fn vrrp(from: State, to: State, reason: &str) -> Notice {
        Notice {
            at_ms: 1_700_000_000_000,
            change: Change::Vrrp {
                instance: "VI_1".to_owned(),
                vrid: 51,
                from,
                to,
                priority: 100,
            },
            reason: reason.to_owned(),
        }
    }

    fn env<'a>(r: &'a Run, key: &str) -> &'a str {
        r.env
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} missing in {:?}", r.env))
    }

    /// Input: each VRRP transition. Output: the state hooks for the state entered,
    /// then the generic hook with keepalived's four arguments.
    #[test]
    fn vrrp_changes_run_the_state_hooks_then_the_generic_one_with_keepalived_arguments() {
        let n = notify();
        let cases = [
            (
                State::Backup,
                State::Master,
                vec![
                    ("master", vec!["master"]),
                    ("vrrp", vec!["INSTANCE", "VI_1", "MASTER", "100"]),
                ],
            ),
            (
                State::Initialize,
                State::Backup,
                vec![
                    ("backup[0]", vec!["backup"]),
                    ("backup[1]", vec![]),
                    ("vrrp", vec!["INSTANCE", "VI_1", "BACKUP", "100"]),
                ],
            ),
            (
                State::Master,
                State::Initialize,
                vec![
                    ("stop", vec!["stop"]),
                    ("vrrp", vec!["INSTANCE", "VI_1", "STOP", "100"]),
                ],
            ),
        ];
        for (from, to, want) in cases {
            let runs = plan(&n, &ctx(), &vrrp(from, to, "master_down"));
            let got: Vec<(&str, Vec<&str>)> = runs
                .iter()
                .map(|r| {
                    (
                        n.hooks[r.hook].name.as_str(),
                        r.args.iter().map(String::as_str).collect(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{from} -> {to}");
            for r in &runs {
                assert_eq!(r.program, n.hooks[r.hook].program);
                assert_eq!(env(r, "APIVIP_HOOK"), n.hooks[r.hook].name);
            }
        }
    }

    #[test]
    fn vrrp_runs_carry_the_event_in_their_environment() {
        let runs = plan(
            &notify(),
            &ctx(),
            &vrrp(State::Master, State::Backup, "higher_priority"),
        );
        let r = &runs[0];
        for (k, v) in [
            ("APIVIP_EVENT", "vrrp"),
            ("APIVIP_STATE", "backup"),
            ("APIVIP_FROM", "master"),
            ("APIVIP_REASON", "higher_priority"),
            ("APIVIP_TIME_MS", "1700000000000"),
            ("APIVIP_INSTANCE", "VI_1"),
            ("APIVIP_VRID", "51"),
            ("APIVIP_PRIORITY", "100"),
            ("APIVIP_VIP", "198.18.0.5/24"),
            ("APIVIP_INTERFACE", "eth0"),
        ] {
            assert_eq!(env(r, k), v, "{k}");
        }
        assert_eq!(r.what, "vrrp VI_1 master -> backup (higher_priority)");
        // Every variable set is documented.
        for (k, _) in &r.env {
            assert!(ENV.iter().any(|(d, _)| d == k), "{k} is not in ENV");
        }
    }

    #[test]
    fn backend_transitions_run_only_the_backend_hooks_with_state_and_reason() {
        let n = notify();
        let notice = Notice {
            at_ms: 5,
            change: Change::Backend {
                id: BackendId {
                    frontend: FrontendKind::Apiserver,
                    master: 1,
                },
                name: "m1".to_owned(),
                addr: "198.18.0.12:6443".parse().unwrap(),
                from: Status::Up,
                to: Status::Down(DownCause::NotReady),
            },
            reason: "readyz: HTTP 500".to_owned(),
        };
        let runs = plan(&n, &ctx(), &notice);
        assert_eq!(runs.len(), 1);
        let r = &runs[0];
        assert_eq!(n.hooks[r.hook].name, "backend");
        assert_eq!(
            r.args,
            ["-v", "apiserver", "m1", "not_ready", "readyz: HTTP 500"]
        );
        for (k, v) in [
            ("APIVIP_EVENT", "backend"),
            ("APIVIP_STATE", "not_ready"),
            ("APIVIP_FROM", "up"),
            ("APIVIP_REASON", "readyz: HTTP 500"),
            ("APIVIP_FRONTEND", "apiserver"),
            ("APIVIP_BACKEND", "m1"),
            ("APIVIP_BACKEND_ADDRESS", "198.18.0.12:6443"),
        ] {
            assert_eq!(env(r, k), v, "{k}");
        }
        for (k, _) in &r.env {
            assert!(ENV.iter().any(|(d, _)| d == k), "{k} is not in ENV");
        }
    }

    #[test]
    fn no_hooks_means_no_runs() {
        let n = Notify::default();
        assert!(plan(&n, &ctx(), &vrrp(State::Backup, State::Master, "x")).is_empty());
    }
}
