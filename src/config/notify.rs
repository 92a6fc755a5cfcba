//! `notify:`: scripts run on VRRP state changes and backend transitions.
//!
//! ```yaml
//! notify:
//!   master: /etc/apivip/notify.sh master      # keepalived notify_master
//!   backup: /etc/apivip/notify.sh backup      # keepalived notify_backup
//!   stop: /etc/apivip/notify.sh stop          # keepalived notify_stop
//!   fault: /etc/apivip/notify.sh fault        # keepalived notify_fault
//!   vrrp: /etc/apivip/keepalived-notify.sh    # keepalived notify: + INSTANCE NAME STATE PRIORITY
//!   backend: /etc/apivip/backend.sh           # + FRONTEND BACKEND STATE REASON
//!   timeout: 10s
//!   instance: VI_1                            # NAME for `vrrp:` hooks (default vrid-VRID)
//! ```
//!
//! Each hook key takes one command or a list of them. A command is an absolute path
//! followed by arguments, split at whitespace (no shell, no quoting). The file must
//! exist, be executable, and be writable by its owner only, and so must every
//! directory above it be safe from other users (a hook runs as the daemon): a
//! group- or world-writable script or directory is refused.
//!
//! The validation reads file metadata and nothing else.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::raw::OneOrMany;
use super::validate::Validator;
use super::Vrrp;

/// The default time a hook may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `notify:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotify {
    pub(crate) vrrp: Option<OneOrMany>,
    pub(crate) master: Option<OneOrMany>,
    pub(crate) backup: Option<OneOrMany>,
    pub(crate) stop: Option<OneOrMany>,
    pub(crate) fault: Option<OneOrMany>,
    pub(crate) backend: Option<OneOrMany>,
    pub(crate) timeout: Option<String>,
    pub(crate) instance: Option<String>,
}

/// The validated hooks; empty when `notify:` is absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// Every hook, in config order: `vrrp`, `master`, `backup`, `stop`, `backend`.
    pub hooks: Vec<Hook>,
    /// How long one run may take before it is killed (with its process group).
    pub timeout: Duration,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            hooks: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Which changes a hook runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookOn {
    /// Every VRRP state change, with keepalived's `notify` arguments appended.
    Vrrp,
    /// Entering master (keepalived `notify_master`).
    Master,
    /// Entering backup (keepalived `notify_backup`).
    Backup,
    /// Leaving the election at shutdown (keepalived `notify_stop`).
    Stop,
    /// Entering FAULT: the interface down or gone, no carrier, no source address,
    /// the VIPs could not be added (keepalived `notify_fault`).
    Fault,
    /// Every backend health transition.
    Backend,
}

impl HookOn {
    /// The config key.
    pub const fn key(self) -> &'static str {
        match self {
            HookOn::Vrrp => "vrrp",
            HookOn::Master => "master",
            HookOn::Backup => "backup",
            HookOn::Stop => "stop",
            HookOn::Fault => "fault",
            HookOn::Backend => "backend",
        }
    }

    /// Whether it is about the VRRP instance.
    pub const fn is_vrrp(self) -> bool {
        !matches!(self, HookOn::Backend)
    }
}

/// One command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Its name in logs, metrics and status: the key (`master`), or `master[1]` when
    /// the key lists several commands.
    pub name: String,
    /// What it runs on.
    pub on: HookOn,
    /// The executable (absolute).
    pub program: PathBuf,
    /// The configured arguments (apivip appends its own for `vrrp` and `backend`).
    pub args: Vec<String>,
}

impl Validator {
    /// Validates `notify:`; VRRP hooks need `vrrp:`.
    pub(super) fn notify(&mut self, raw: Option<RawNotify>, vrrp: &[Vrrp]) -> Notify {
        let Some(raw) = raw else {
            return Notify::default();
        };
        let timeout =
            self.positive_duration("notify.timeout", raw.timeout.as_deref(), DEFAULT_TIMEOUT);
        let mut hooks = Vec::new();
        for (on, value) in [
            (HookOn::Vrrp, raw.vrrp),
            (HookOn::Master, raw.master),
            (HookOn::Backup, raw.backup),
            (HookOn::Stop, raw.stop),
            (HookOn::Fault, raw.fault),
            (HookOn::Backend, raw.backend),
        ] {
            let Some(value) = value else { continue };
            let commands = value.into_vec();
            let key = format!("notify.{}", on.key());
            if on.is_vrrp() && vrrp.is_empty() {
                self.issue(
                    &key,
                    Some(commands.join(", ")),
                    "runs on VRRP state changes, but vrrp: is not configured",
                );
                continue;
            }
            let many = commands.len() > 1;
            for (i, text) in commands.iter().enumerate() {
                let (key, name) = if many {
                    (format!("{key}[{i}]"), format!("{}[{i}]", on.key()))
                } else {
                    (key.clone(), on.key().to_owned())
                };
                if let Some((program, args)) = self.command(&key, text) {
                    hooks.push(Hook {
                        name,
                        on,
                        program,
                        args,
                    });
                }
            }
        }
        // The NAME of a single instance (`vrrp.name` now); `vrrp_section` uses it.
        if let Some(name) = raw.instance.filter(|n| !super::vrrp::is_instance_name(n)) {
            self.issue(
                "notify.instance",
                Some(name),
                super::vrrp::INSTANCE_NAME_EXPECTED,
            );
        }
        Notify { hooks, timeout }
    }

    /// Parses `PATH ARGS...` and checks the file.
    fn command(&mut self, key: &str, text: &str) -> Option<(PathBuf, Vec<String>)> {
        let mut words = text.split_whitespace();
        let Some(program) = words.next() else {
            self.issue(
                key,
                Some(text.to_owned()),
                "is empty; expected an absolute path to an executable and optional arguments",
            );
            return None;
        };
        let path = Path::new(program);
        if !path.is_absolute() {
            self.issue(
                key,
                Some(text.to_owned()),
                format!("{program} is not an absolute path; expected e.g. /etc/apivip/notify.sh"),
            );
            return None;
        }
        if let Err(why) = check_executable(path) {
            self.issue(key, Some(text.to_owned()), why);
            return None;
        }
        Some((path.to_owned(), words.map(str::to_owned).collect()))
    }
}

/// Checks that `path` is an executable file that no other user can change or replace:
/// the file is not group- or world-writable, and no directory above it is writable by
/// others (a sticky directory, mode 1777, is safe: others cannot replace a file they
/// do not own; a group-writable directory of group root is trusted).
fn check_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot be read ({e}); expected an existing executable"))?;
    if !meta.is_file() {
        return Err("is not a file; expected an executable".to_owned());
    }
    let mode = meta.mode();
    if mode & 0o111 == 0 {
        return Err(format!(
            "is not executable (mode {:04o}); expected e.g. chmod 0755",
            mode & 0o7777
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "is group- or world-writable (mode {:04o}): a hook runs as apivip, so anyone who can write it could run code as apivip; expected chmod go-w",
            mode & 0o7777
        ));
    }
    let real = std::fs::canonicalize(path)
        .map_err(|e| format!("cannot be resolved ({e}); expected an existing executable"))?;
    for dir in real.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = m.mode();
        let sticky = mode & 0o1000 != 0;
        let world = mode & 0o002 != 0;
        let group = mode & 0o020 != 0 && m.gid() != 0;
        if !sticky && (world || group) {
            return Err(format!(
                "its directory {} is {}-writable (mode {:04o}): others could replace the script; expected chmod go-w on it, or the script elsewhere",
                dir.display(),
                if world { "world" } else { "group" },
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::os::unix::fs::PermissionsExt;

    const VRRP: &str = "
backends: [{address: 198.18.0.11}, {address: 198.18.0.12}]
vrrp: {interface: eth0, address: 198.18.0.11, vrid: 51, priority: 100, vips: 198.18.0.5/24}
";

    /// Parses with absolute script paths (the directory is only for relative ones).
    fn parse_at(yaml: &str, _dir: &Path) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, Path::new("test.yaml"))
    }

    /// A script `name` in `dir`, at `mode`.
    fn script(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn hooks_are_parsed_in_order_with_their_arguments_and_names() {
        let d = private_dir();
        let s = script(d.path(), "n.sh", 0o755);
        let s = s.display();
        let yaml = format!(
            "{VRRP}notify:\n  master: '{s} master now'\n  backup: ['{s} backup', '{s}']\n  vrrp: {s}\n  backend: {s}\n  timeout: 3s\n"
        );
        let c = parse_at(&yaml, d.path()).unwrap();
        let n = &c.notify;
        assert_eq!(n.timeout, Duration::from_secs(3));
        assert_eq!(c.vrrp[0].name, "vrid-51");
        let got: Vec<(&str, HookOn, Vec<&str>)> = n
            .hooks
            .iter()
            .map(|h| {
                (
                    h.name.as_str(),
                    h.on,
                    h.args.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("vrrp", HookOn::Vrrp, vec![]),
                ("master", HookOn::Master, vec!["master", "now"]),
                ("backup[0]", HookOn::Backup, vec!["backup"]),
                ("backup[1]", HookOn::Backup, vec![]),
                ("backend", HookOn::Backend, vec![]),
            ]
        );
        assert!(n.hooks.iter().all(|h| h.program == d.path().join("n.sh")));
    }

    #[test]
    fn no_notify_section_means_no_hooks() {
        let c = parse_at(VRRP, Path::new("/")).unwrap();
        assert!(c.notify.hooks.is_empty());
        assert_eq!(c.notify.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn unsafe_missing_or_relative_scripts_are_refused_with_key_and_value() {
        let d = private_dir();
        let ok = script(d.path(), "ok.sh", 0o750);
        let gw = script(d.path(), "gw.sh", 0o775);
        let ww = script(d.path(), "ww.sh", 0o757);
        let nx = script(d.path(), "nx.sh", 0o644);
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let in_open = script(&open, "x.sh", 0o755);
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let missing = d.path().join("missing.sh");
        let yaml = format!(
            "{VRRP}notify:\n  master: ['{}', '{}', '{}', '{}', '{}', '{}', notify.sh, '  ']\n  timeout: 0s\n  fault: '{} fault'\n",
            ok.display(),
            gw.display(),
            ww.display(),
            nx.display(),
            in_open.display(),
            missing.display(),
            gw.display(),
        );
        let lines = match parse_at(&yaml, d.path()) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.lines(),
        };
        let expect = [
            ("notify.master[1]", "group- or world-writable (mode 0775)"),
            ("notify.master[2]", "group- or world-writable (mode 0757)"),
            ("notify.master[3]", "is not executable (mode 0644)"),
            ("notify.master[4]", "world-writable (mode 0777)"),
            ("notify.master[5]", "cannot be read"),
            ("notify.master[6]", "is not an absolute path"),
            ("notify.master[7]", "is empty"),
            ("notify.timeout", "must be more than zero"),
            ("notify.fault", "group- or world-writable (mode 0775)"),
        ];
        for (key, what) in expect {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("test.yaml: {key}: \"")) && l.contains(what)),
                "no {key} line with {what:?} in {lines:#?}"
            );
        }
        assert_eq!(lines.len(), expect.len(), "{lines:#?}");
        // The restored directory makes the script acceptable again.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let yaml = format!("{VRRP}notify: {{master: '{}'}}\n", in_open.display());
        assert!(parse_at(&yaml, d.path()).is_ok());
    }

    #[test]
    fn vrrp_hooks_need_vrrp_and_the_instance_name_is_one_word() {
        let d = private_dir();
        let s = script(d.path(), "n.sh", 0o700);
        let yaml = format!(
            "backends: [{{address: 198.18.0.11}}]\nnotify: {{master: '{}', backend: '{}', instance: 'V I'}}\n",
            s.display(),
            s.display()
        );
        let lines = parse_at(&yaml, d.path()).unwrap_err().lines();
        assert!(
            lines[0].contains("notify.master") && lines[0].contains("vrrp: is not configured"),
            "{lines:#?}"
        );
        assert!(lines[1].contains("notify.instance"), "{lines:#?}");
        assert_eq!(lines.len(), 2);
        let yaml = format!(
            "backends: [{{address: 198.18.0.11}}]\nnotify: {{backend: '{}'}}\n",
            s.display()
        );
        let c = parse_at(&yaml, d.path()).unwrap();
        assert_eq!(c.notify.hooks.len(), 1);
        let yaml = format!(
            "{VRRP}notify: {{vrrp: '{}', instance: VI_1}}\n",
            s.display()
        );
        assert_eq!(parse_at(&yaml, d.path()).unwrap().vrrp[0].name, "VI_1");
    }
}
