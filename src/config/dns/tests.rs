//! `dns:`: defaults, the key file forms, and one error per bad value (file, key, value).

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::config::{Config, ConfigError};

const SECRET_B64: &str = "YXBpdmlwLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzISE=";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn key(&self, name: &str, text: &str, mode: u32) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }

    fn parse(&self, yaml: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(yaml, &self.dir.path().join("apivip.yaml"))
    }

    fn issues(&self, yaml: &str) -> Vec<String> {
        let prefix = format!("{}: ", self.dir.path().join("apivip.yaml").display());
        match self.parse(yaml) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e
                .lines()
                .into_iter()
                .map(|l| l.strip_prefix(&prefix).unwrap_or(&l).to_owned())
                .collect(),
        }
    }
}

fn yaml(dns: &str) -> String {
    format!(
        "backends:
  - {{name: m1, address: 198.18.0.11}}
  - {{name: m2, address: 198.18.0.12}}
  - {{name: m3, address: 198.18.0.13}}
dns:
{dns}"
    )
}

fn minimal(key_file: &str) -> String {
    yaml(&format!(
        "  servers: [198.18.0.53]
  zone: cluster.example
  name: api.cluster.example.
  node: m1
  tsig: {{key: apivip-key, secret_file: {key_file}}}
"
    ))
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

#[test]
fn a_minimal_dns_section_gets_safe_defaults() {
    let f = Files::new();
    let key = f.key("dns.key", &format!("{SECRET_B64}\n"), 0o600);
    let c = f.parse(&minimal(&key)).unwrap();
    let d = c.dns.unwrap();
    assert_eq!(d.servers, ["198.18.0.53:53".parse().unwrap()]);
    assert_eq!(d.zone, name("cluster.example."));
    assert_eq!(d.name, name("api.cluster.example."));
    assert_eq!(d.state_name, name("_apivip.api.cluster.example."));
    assert_eq!(d.ttl, Duration::from_secs(5));
    assert_eq!(d.types, [RecordType::A]);
    assert_eq!(
        d.masters
            .iter()
            .map(|m| (m.name.as_str(), m.addrs.clone()))
            .collect::<Vec<_>>(),
        [
            ("m1", vec!["198.18.0.11".parse::<IpAddr>().unwrap()]),
            ("m2", vec!["198.18.0.12".parse().unwrap()]),
            ("m3", vec!["198.18.0.13".parse().unwrap()]),
        ]
    );
    assert_eq!(d.node.as_deref(), Some("m1"));
    assert_eq!(d.quorum, 2);
    assert_eq!(d.heartbeat, Duration::from_secs(60));
    assert_eq!(d.stale_after, Duration::from_secs(180));
    assert_eq!(d.resync, Duration::from_secs(10));
    assert_eq!(d.timeout, Duration::from_secs(2));
    assert_eq!(d.tsig.key, name("apivip-key."));
    assert_eq!(d.tsig.algorithm, Algorithm::HmacSha256);
    assert_eq!(d.tsig.secret.bytes(), b"apivip-test-secret-of-32-bytes!!");
    // The secret is never printed.
    let shown = format!("{d:?}");
    assert!(
        !shown.contains(SECRET_B64) && !shown.contains("apivip-test-secret"),
        "{shown}"
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // No dns: section, no DNS.
    assert_eq!(
        f.parse("backends: [{address: 198.18.0.11}]").unwrap().dns,
        None
    );
}

/// tsig-keygen's key clause: name and algorithm come from it.
#[test]
fn a_bind_key_clause_gives_name_algorithm_and_secret() {
    let f = Files::new();
    let key = f.key(
        "dns.key",
        &format!(
            "key \"apivip-key\" {{\n\talgorithm hmac-sha512;\n\tsecret \"{SECRET_B64}\";\n}};\n"
        ),
        0o640,
    );
    let c = f
        .parse(&yaml(&format!(
            "  servers: ['[2001:db8::53]:5353', 198.18.0.54]
  zone: cluster.example.
  name: api.cluster.example.
  types: [A, AAAA]
  publish:
    m1: [198.18.0.11, 2001:db8::11]
    m2: [198.18.0.12, 2001:db8::12]
    m3: [198.18.0.13, 2001:db8::13]
  tsig: {{secret_file: {key}}}
"
        )))
        .unwrap();
    let d = c.dns.unwrap();
    assert_eq!(
        d.servers,
        [
            "[2001:db8::53]:5353".parse().unwrap(),
            "198.18.0.54:53".parse().unwrap()
        ]
    );
    assert_eq!(d.types, [RecordType::A, RecordType::AAAA]);
    assert_eq!(d.tsig.key, name("apivip-key."));
    assert_eq!(d.tsig.algorithm, Algorithm::HmacSha512);
    assert_eq!(d.tsig.secret.bytes(), b"apivip-test-secret-of-32-bytes!!");
    assert_eq!(d.node, None, "found at start from the local addresses");
}

#[test]
fn secret_files_that_others_can_change_are_refused_and_readable_ones_warned() {
    let f = Files::new();
    let writable = f.key("w.key", SECRET_B64, 0o666);
    let lines = f.issues(&minimal(&writable));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "dns.tsig.secret_file: \"{writable}\": is writable by its group or by everyone"
        )),
        "{lines:?}"
    );
    let readable = f.key("r.key", SECRET_B64, 0o644);
    let c = f.parse(&minimal(&readable)).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].to_string().contains("readable by everyone"));
}

#[test]
fn every_bad_value_is_reported_with_its_key() {
    let f = Files::new();
    let key = f.key("dns.key", SECRET_B64, 0o600);
    let lines = f.issues(&yaml(&format!(
        "  servers: [dns.example, 198.18.0.53:0]
  zone: cluster.example.
  name: api.other.example.
  state_name: api.other.example.
  ttl: 2h
  types: [A, MX, AAAA]
  publish: {{m9: [198.18.0.19], m1: [not-an-ip]}}
  node: m7
  quorum: 4
  heartbeat: 60s
  stale_after: 90s
  resync: 2s
  timeout: 2s
  tsig: {{key: other-key, algorithm: hmac-md5, secret_file: {key}}}
"
    )));
    let want = [
        "dns.servers[0]: \"dns.example\": is not a server address",
        "dns.servers[1]: \"198.18.0.53:0\": is not a server address",
        "dns.name: \"api.other.example.\": is not inside the zone cluster.example.",
        "dns.state_name: \"api.other.example.\": is not inside the zone",
        "dns.state_name: \"api.other.example.\": is the published name itself",
        "dns.ttl: \"2h\": out of range",
        "dns.publish.m9: is not a backend name",
        "dns.publish.m1[0]: \"not-an-ip\": is not an IP address",
        "dns.types[1]: \"MX\": unknown record type",
        "dns.types[2]: \"AAAA\": master m1 has no IPv6 address",
        "dns.node: \"m7\": is not a backend name",
        "dns.quorum: \"4\": out of range; expected 1 to 3",
        "dns.stale_after: \"90s\": is less than twice dns.heartbeat",
        "dns.timeout: \"2s\": is not shorter than dns.resync",
        "dns.tsig.algorithm: \"hmac-md5\": unsupported",
    ];
    for w in want {
        assert!(
            lines.iter().any(|l| l.starts_with(w)),
            "missing {w:?} in {lines:#?}"
        );
    }
    // A bad key file, a missing section, and a key clause naming another key.
    let lines = f.issues(&yaml(
        "  zone: cluster.example.\n  name: api.cluster.example.\n",
    ));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("dns.servers: is missing")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("dns.tsig: is missing")),
        "{lines:?}"
    );
    let not_b64 = f.key("bad.key", "this is not base64!", 0o600);
    let lines = f.issues(&minimal(&not_b64));
    assert_eq!(
        lines,
        [format!(
            "dns.tsig.secret_file: \"{not_b64}\": the secret is not base64 (or is empty)"
        )]
    );
    let clause = f.key(
        "clause.key",
        &format!("key \"their-key\" {{ algorithm hmac-sha256; secret \"{SECRET_B64}\"; }};"),
        0o600,
    );
    let lines = f.issues(&minimal(&clause));
    assert_eq!(
        lines,
        ["dns.tsig.key: \"apivip-key\": differs from the key clause in dns.tsig.secret_file (their-key)"]
    );
    let missing = f.dir.path().join("nope.key").display().to_string();
    let lines = f.issues(&minimal(&missing));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("dns.tsig.secret_file: "), "{lines:?}");
}

#[test]
fn key_files_of_both_forms_parse() {
    assert_eq!(
        parse_key_file("  abc=\n"),
        KeyFile {
            secret: Some("abc=".into()),
            ..KeyFile::default()
        }
    );
    assert_eq!(
        parse_key_file("key \"k.\" {\n algorithm hmac-sha256;\n secret \"c2Vj\";\n};\n"),
        KeyFile {
            name: Some("k.".into()),
            algorithm: Some("hmac-sha256".into()),
            secret: Some("c2Vj".into()),
        }
    );
    assert_eq!(parse_key_file(""), KeyFile::default());
    // Words inside the key's name are not statements.
    assert_eq!(
        parse_key_file(
            "key \"secret-algorithm.\" {\n\talgorithm hmac-sha512;\n\tsecret \"c2Vj\";\n};\n"
        ),
        KeyFile {
            name: Some("secret-algorithm.".into()),
            algorithm: Some("hmac-sha512".into()),
            secret: Some("c2Vj".into()),
        }
    );
}

/// The config's algorithm must be the key clause's (else the server answers BADKEY);
/// a name too long for its votes' name is refused, not dropped.
#[test]
fn an_algorithm_other_than_the_key_clause_and_an_overlong_name_are_refused() {
    let f = Files::new();
    let clause = f.key(
        "clause.key",
        &format!("key \"apivip-key\" {{ algorithm hmac-sha512; secret \"{SECRET_B64}\"; }};"),
        0o600,
    );
    let y = minimal(&clause).replace(
        "tsig: {key: apivip-key,",
        "tsig: {key: apivip-key, algorithm: hmac-sha256,",
    );
    assert_eq!(
        f.issues(&y),
        ["dns.tsig.algorithm: \"hmac-sha256\": differs from the key clause in dns.tsig.secret_file (hmac-sha512); the server would answer BADKEY"]
    );
    let bare = f.key("bare.key", SECRET_B64, 0o600);
    let label = "a".repeat(60);
    // 249 bytes on the wire: a valid name, but `_apivip.` makes it 257.
    let long = format!(
        "{label}.{label}.{label}.{}.cluster.example.",
        "b".repeat(48)
    );
    let y = minimal(&bare).replace("name: api.cluster.example.", &format!("name: {long}"));
    let lines = f.issues(&y);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "dns.name: \"{long}\": is too long for the votes' name"
        )),
        "{lines:?}"
    );
}

/// `apivip check` before the key file is installed: a warning; the daemon refuses it.
/// An empty file is refused either way.
#[test]
fn a_missing_secret_file_is_a_warning_for_check_only() {
    let f = Files::new();
    let missing = f.dir.path().join("later.key").display().to_string();
    let path = f.dir.path().join("apivip.yaml");
    let (c, warnings) =
        Config::from_yaml_with(&minimal(&missing), &path, crate::config::MissingFiles::Warn)
            .unwrap();
    assert!(c.dns.is_some());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(f.parse(&minimal(&missing)).is_err());
    let empty = f.key("empty.key", "", 0o600);
    assert!(
        Config::from_yaml_with(&minimal(&empty), &path, crate::config::MissingFiles::Warn).is_err()
    );
    assert!(f.parse(&minimal(&empty)).is_err());
}
