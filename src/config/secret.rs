//! Files that hold secrets (client keys of the checks; later TSIG secrets): what their
//! permission bits may be. Whoever can write such a file can swap the key apivip
//! presents, so group- or world-writable is refused; world-readable leaks the key to
//! every local user, so it is a warning (`apivip check` prints it, `apivip run` logs
//! it). Group-readable is fine: kubeadm's PKI is root-owned 0600, and a dedicated
//! service user usually reads keys through a group.

/// What is wrong with the permission bits of a file holding a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SecretMode {
    /// Group- or world-writable (the permission bits): refused.
    Writable(u32),
    /// World-readable (the permission bits): a warning.
    WorldReadable(u32),
}

/// Judges `mode` (as in `st_mode`) for a file holding a secret; `None`: fine.
pub(super) fn secret_mode_problem(mode: u32) -> Option<SecretMode> {
    let perm = mode & 0o7777;
    if perm & 0o022 != 0 {
        Some(SecretMode::Writable(perm))
    } else if perm & 0o004 != 0 {
        Some(SecretMode::WorldReadable(perm))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn modes_are_judged_by_who_can_write_and_who_can_read() {
        for (mode, want) in [
            (0o100600, None),
            (0o100400, None),
            (0o100640, None),
            (0o100440, None),
            (0o100644, Some(SecretMode::WorldReadable(0o644))),
            (0o100604, Some(SecretMode::WorldReadable(0o604))),
            (0o100660, Some(SecretMode::Writable(0o660))),
            (0o100602, Some(SecretMode::Writable(0o602))),
            (0o100620, Some(SecretMode::Writable(0o620))),
            (0o100666, Some(SecretMode::Writable(0o666))),
        ] {
            assert_eq!(secret_mode_problem(mode), want, "{mode:o}");
        }
    }

    /// A config whose check uses `key` (mode `mode`) as its client key.
    fn load_with_key_mode(mode: u32) -> Result<Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for f in ["client.crt", "client.key"] {
            std::fs::write(dir.path().join(f), "-----BEGIN X-----\n").unwrap();
        }
        let key = dir.path().join("client.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        Config::from_yaml(
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {client_cert: client.crt, client_key: client.key}}\n",
            &dir.path().join("apivip.yaml"),
        )
        .map_err(|e| e.lines())
    }

    #[test]
    fn a_client_key_writable_by_others_is_refused_and_a_world_readable_one_warned_about() {
        let err = load_with_key_mode(0o664).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].ends_with("apivip.yaml: apiserver.check.client_key: \"client.key\": is writable by its group or by everyone (mode 0664); a file holding a secret must not be: chmod go-w (e.g. 0600)"),
            "{err:?}"
        );
        let c = load_with_key_mode(0o644).unwrap();
        let lines = c.warning_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].ends_with("apivip.yaml: warning: apiserver.check.client_key: \"client.key\": is readable by everyone (mode 0644); a file holding a secret should not be: chmod o-r (e.g. 0600)"),
            "{lines:?}"
        );
        for fine in [0o600, 0o640, 0o400] {
            let c = load_with_key_mode(fine).unwrap();
            assert!(c.warnings.is_empty(), "{fine:o}: {:?}", c.warnings);
        }
    }
}
