use super::*;
use std::net::SocketAddr;

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::from_yaml(yaml, Path::new("test.yaml"))
}

fn issues(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.lines(),
    }
}

const MINIMAL: &str = "
backends:
  - address: 198.18.0.11
  - address: 198.18.0.12
  - address: 198.18.0.13
";

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.frontends.len(), 1, "etcd is off unless configured");
    let f = &c.frontends[0];
    assert_eq!(f.kind, FrontendKind::Apiserver);
    assert_eq!(f.listen, vec!["0.0.0.0:8443".parse().unwrap()]);
    assert_eq!(
        f.backends.iter().map(|b| b.addr).collect::<Vec<_>>(),
        vec![
            "198.18.0.11:6443".parse().unwrap(),
            "198.18.0.12:6443".parse().unwrap(),
            "198.18.0.13:6443".parse().unwrap()
        ]
    );
    assert_eq!(f.balance, Balance::LeastConnections);
    assert!(f.close_on_down);
    assert_eq!(f.idle_timeout, None, "WATCH connections must not be cut");
    assert_eq!(f.first_byte_timeout, Some(Duration::from_secs(10)));
    assert_eq!(f.half_close_timeout, Some(Duration::from_secs(60)));
    assert_eq!(f.per_source.max_connections, Some(1000));
    assert_eq!(f.per_source.rate, None, "no rate limit unless asked for");
    assert_eq!(f.close_rate, Some(1000));
    assert_eq!(f.slow_start, None, "no ramp unless asked for");
    assert_eq!(f.rebalance, None, "no connection moved unless asked for");
    assert_eq!(f.check.rise, 2);
    assert_eq!(f.check.fall, 2);
    match &f.check.kind {
        CheckKind::Https(h) => assert_eq!(h.path, "/readyz"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv6_and_ports() {
    let c = parse(
        "
backends:
  - address: '[2001:db8::11]:7443'
  - address: 2001:db8::12
    etcd_port: 12379
apiserver:
  listen: ['[::]:8443', 0.0.0.0:8443]
etcd:
  listen: '[2001:db8::5]:2379'
  check: {kind: tcp}
",
    )
    .unwrap();
    let api = &c.frontends[0];
    assert_eq!(api.listen.len(), 2);
    assert_eq!(api.backends[0].addr, "[2001:db8::11]:7443".parse().unwrap());
    assert_eq!(api.backends[1].addr, "[2001:db8::12]:6443".parse().unwrap());
    let etcd = &c.frontends[1];
    assert_eq!(
        etcd.backends[0].addr,
        "[2001:db8::11]:2379".parse().unwrap()
    );
    assert_eq!(
        etcd.backends[1].addr,
        "[2001:db8::12]:12379".parse().unwrap()
    );
}

/// Each bad input yields an error naming the key path and the value.
#[test]
fn every_bad_value_is_named() {
    let cases: &[(&str, &str)] = &[
        (
            "backends:\n  - address: 198.18.0.11\n  - address: 198.18.0.12\n  - address: 1.2.3\n",
            "test.yaml: backends[2].address: \"1.2.3\": is not an address",
        ),
        (
            "backends:\n  - address: 198.18.0.11\n  - address: 198.18.0.11\n",
            "test.yaml: backends[1].address: \"198.18.0.11\": duplicate backend",
        ),
        (
            "backends:\n  - address: 198.18.0.11\n  - address: 198.18.0.11:6443\n",
            "test.yaml: backends[1].address: \"198.18.0.11:6443\": duplicate backend",
        ),
        (
            "backends:\n  - {address: 198.18.0.11:7443, etcd_port: 2379}\n  - {address: 198.18.0.11:8443, etcd_port: 2379}\netcd: {listen: 127.0.0.1:2379}\n",
            "test.yaml: backends[1].etcd_port: \"2379\": duplicate backend: the etcd frontend",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {path: \"/readyz#x\"}}\n",
            "test.yaml: apiserver.check.path: \"/readyz#x\": is not a request path",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {rise: 0}}\n",
            "test.yaml: apiserver.check.rise: \"0\": out of range",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {fall: 0}}\n",
            "test.yaml: apiserver.check.fall: \"0\": out of range",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {interval: 5}}\n",
            "test.yaml: apiserver.check.interval: \"5\": unknown or missing unit",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {interval: 1s, timeout: 2s}}\n",
            "test.yaml: apiserver.check.timeout: \"2s\": is longer than the interval",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {ca: /nonexistent/ca.crt}}\n",
            "test.yaml: apiserver.check.ca: \"/nonexistent/ca.crt\": cannot be read",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {listen: 8443}\n",
            "test.yaml: apiserver.listen: \"8443\": is not a listen address",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {balance: random}\n",
            "test.yaml: apiserver.balance: \"random\": unknown policy",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {kind: icmp}}\n",
            "test.yaml: apiserver.check.kind: \"icmp\": unknown check kind",
        ),
        (
            "backends: [{address: 198.18.0.11, etcd_port: 70000}]\n",
            "test.yaml: backends[0].etcd_port: \"70000\": is not a port",
        ),
        (
            "backends: [{address: 198.18.0.11}]\netcd: {check: {kind: tcp}}\n",
            "test.yaml: etcd.listen: is missing",
        ),
        ("backends: []\n", "test.yaml: backends: is empty"),
        (
            "backends: [{address: 198.18.0.11}]\nshutdown: {drain_timeout: soon}\n",
            "test.yaml: shutdown.drain_timeout: \"soon\"",
        ),
        (
            "backends: [{address: 198.18.0.11}]\napiserver: {check: {client_cert: /etc/hostname}}\n",
            "test.yaml: apiserver.check.client_key: is missing",
        ),
    ];
    for (yaml, want) in cases {
        let lines = issues(yaml);
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "for\n{yaml}\nexpected a line starting with {want:?}, got {lines:#?}"
        );
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let lines = issues(
        "backends:\n  - address: bad\n  - address: 198.18.0.12:0\napiserver:\n  check: {rise: 0, fall: 0, interval: x}\n",
    );
    assert_eq!(lines.len(), 5, "{lines:#?}");
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key_and_line() {
    let lines = issues("backends:\n  - address: 198.18.0.11\n    adress: typo\n");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].starts_with("test.yaml: backends[0]"), "{lines:?}");
    assert!(lines[0].contains("adress"), "{lines:?}");
    assert!(lines[0].contains("line 3"), "{lines:?}");

    let lines = issues("backends: [{address: 198.18.0.11}]\napiserver: {check: {rise: two}}\n");
    assert!(
        lines[0].starts_with("test.yaml: apiserver.check.rise"),
        "{lines:?}"
    );

    // Strict booleans: `yes` is not a boolean.
    let lines = issues("backends: [{address: 198.18.0.11}]\napiserver: {close_on_down: yes}\n");
    assert!(
        lines[0].starts_with("test.yaml: apiserver.close_on_down"),
        "{lines:?}"
    );
}

#[test]
fn abuse_limits_parse_turn_off_and_name_bad_values() {
    use crate::proxy::admission::Rate;
    let c = parse(
        "backends: [{address: 198.18.0.11}]\napiserver:\n  max_connections: 500\n  first_byte_timeout: 0s\n  half_close_timeout: 5s\n  per_source_rate: 20\n",
    )
    .unwrap();
    let f = &c.frontends[0];
    assert_eq!(f.first_byte_timeout, None, "0s turns it off");
    assert_eq!(f.half_close_timeout, Some(Duration::from_secs(5)));
    assert_eq!(
        f.per_source.max_connections,
        Some(500),
        "capped at max_connections"
    );
    assert_eq!(
        f.per_source.rate,
        Some(Rate {
            per_second: 20,
            burst: 40
        }),
        "the burst defaults to two seconds' worth"
    );
    let c = parse(
        "backends: [{address: 198.18.0.11}]\napiserver: {per_source_max_connections: 0, half_close_timeout: 0s}\n",
    )
    .unwrap();
    assert!(!c.frontends[0].per_source.any(), "0 turns the limit off");
    assert_eq!(c.frontends[0].half_close_timeout, None);
    let c = parse("backends: [{address: 198.18.0.11}]\napiserver: {close_rate: 0}\n").unwrap();
    assert_eq!(c.frontends[0].close_rate, None, "0 closes all at once");
    let c = parse("backends: [{address: 198.18.0.11}]\napiserver: {slow_start: 30s}\n").unwrap();
    assert_eq!(c.frontends[0].slow_start, Some(Duration::from_secs(30)));
    let c = parse("backends: [{address: 198.18.0.11}]\napiserver: {rebalance: {}}\n").unwrap();
    assert_eq!(
        c.frontends[0].rebalance,
        Some(crate::proxy::rebalance::Settings {
            rate: 0.01,
            min_age: Duration::from_secs(60),
            spread: 0.1,
        }),
        "an empty section turns it on with the defaults"
    );
    let c = parse(
        "backends: [{address: 198.18.0.11}]\napiserver: {rebalance: {rate_percent: 0.5, min_age: 5m, spread_percent: 0}}\n",
    )
    .unwrap();
    assert_eq!(
        c.frontends[0].rebalance,
        Some(crate::proxy::rebalance::Settings {
            rate: 0.005,
            min_age: Duration::from_secs(300),
            spread: 0.0,
        })
    );
    let c =
        parse("backends: [{address: 198.18.0.11}]\napiserver: {rebalance: {rate_percent: 0}}\n")
            .unwrap();
    assert_eq!(c.frontends[0].rebalance, None, "a rate of 0 is off");

    for (yaml, key, value) in [
        (
            "{per_source_max_connections: 9000}",
            "apiserver.per_source_max_connections",
            "9000",
        ),
        ("{per_source_rate: -1}", "apiserver.per_source_rate", "-1"),
        (
            "{per_source_rate: 5, per_source_burst: 0}",
            "apiserver.per_source_burst",
            "0",
        ),
        ("{per_source_burst: 5}", "apiserver.per_source_burst", "5"),
        (
            "{first_byte_timeout: soon}",
            "apiserver.first_byte_timeout",
            "soon",
        ),
        (
            "{half_close_timeout: 5}",
            "apiserver.half_close_timeout",
            "5",
        ),
        (
            "{rebalance: {rate_percent: 150}}",
            "apiserver.rebalance.rate_percent",
            "150",
        ),
        (
            "{rebalance: {spread_percent: -1}}",
            "apiserver.rebalance.spread_percent",
            "-1",
        ),
        (
            "{rebalance: {min_age: 1 minute}}",
            "apiserver.rebalance.min_age",
            "1 minute",
        ),
        (
            "{rebalance: {rate_percent: .nan}}",
            "apiserver.rebalance.rate_percent",
            "NaN",
        ),
        (
            "{rebalance: {spread_percent: .inf}}",
            "apiserver.rebalance.spread_percent",
            "inf",
        ),
        ("{rebalance: {rate: 5}}", "apiserver.rebalance", "rate"),
    ] {
        let lines = issues(&format!(
            "backends: [{{address: 198.18.0.11}}]\napiserver: {yaml}\n"
        ));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("test.yaml: {key}")) && lines[0].contains(value),
            "{yaml}: {lines:?}"
        );
    }
}

#[test]
fn broken_yaml_names_the_line() {
    let lines = issues("backends:\n  - address: [198.18.0.11\n");
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("line"), "{lines:?}");
}

#[test]
fn relative_cert_paths_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
    let file = dir.path().join("apivip.yaml");
    std::fs::write(
        &file,
        "backends: [{address: 127.0.0.1}]\napiserver: {check: {ca: ca.crt}}\n",
    )
    .unwrap();
    let c = load(&file).unwrap();
    match &c.frontends[0].check.kind {
        CheckKind::Https(h) => {
            assert_eq!(h.ca.as_deref(), Some(dir.path().join("ca.crt").as_path()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_file_is_named() {
    let err = load(Path::new("/nonexistent/apivip.yaml")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("/nonexistent/apivip.yaml: cannot read"));
}

#[test]
fn missing_pki_is_a_warning_only_when_asked() {
    // Before `kubeadm init` the cluster's PKI does not exist: the generators load the
    // config with MissingFiles::Warn; the daemon and `apivip check` still refuse it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("not-a-file")).unwrap();
    let yaml = "
backends: [{address: 198.18.0.11}]
apiserver: {check: {ca: /nonexistent/pki/ca.crt}}
etcd:
  listen: 198.18.0.5:2379
  check: {client_cert: /nonexistent/pki/etcd/hc.crt, client_key: not-a-file}
";
    let file = dir.path().join("apivip.yaml");
    let strict = Config::from_yaml_with(yaml, &file, MissingFiles::Error).unwrap_err();
    assert_eq!(strict.lines().len(), 3, "{:?}", strict.lines());
    // A path that exists but is not a file stays an error.
    let err = Config::from_yaml_with(yaml, &file, MissingFiles::Warn).unwrap_err();
    assert_eq!(
        err.lines(),
        [format!(
            "{}: etcd.check.client_key: \"not-a-file\": is not a file",
            file.display()
        )]
    );
    let yaml = yaml.replace("client_key: not-a-file", "client_key: /nonexistent/hc.key");
    let (config, warnings) = Config::from_yaml_with(&yaml, &file, MissingFiles::Warn).unwrap();
    let keys: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        keys,
        [
            "apiserver.check.ca",
            "etcd.check.client_cert",
            "etcd.check.client_key"
        ]
    );
    match &config.frontends[0].check.kind {
        CheckKind::Https(h) => {
            assert_eq!(h.ca.as_deref(), Some(Path::new("/nonexistent/pki/ca.crt")))
        }
        other => panic!("{other:?}"),
    }
    assert!(Config::from_yaml(&yaml, &file).is_err());
}

const VRRP: &str = "
backends:
  - {name: master-1, address: 198.18.0.11}
  - {name: master-2, address: 198.18.0.12}
vrrp:
  interface: eth0
  address: 198.18.0.11
  vrid: 51
  priority: 150
  advert_interval: 100ms
  vips: [198.18.0.5/24]
";

#[test]
fn vrrp_section_defaults() {
    let c = parse(VRRP).unwrap();
    let v = c.vrrp.into_iter().next().unwrap();
    assert_eq!(v.interface, "eth0");
    assert_eq!(v.vips, vec![("198.18.0.5".parse().unwrap(), 24)]);
    assert_eq!(v.track, Track::Proxy(FrontendKind::Apiserver));
    assert_eq!(v.instance.base_priority.get(), 150);
    assert!(v.instance.preempt);
    assert_eq!(v.instance.health_weight, 50);
    assert_eq!(v.instance.version.interval(), Duration::from_millis(100));
    assert_eq!(v.instance.announce_count, 5);
    assert_eq!(v.instance.announce_refresh, Duration::from_secs(1));
}

#[test]
fn vrrp_v2_and_vip_only_shape() {
    let c = parse(
        "
backends:
  - {name: master-1, address: 198.18.0.11}
apiserver: {listen: []}
vrrp:
  interface: eth0
  address: 198.18.0.11
  vrid: 7
  version: 2
  advert_interval: 1s
  auth_pass: secret
  vips: 198.18.0.5
  unicast_peers: [198.18.0.12]
  track: backend:master-1
",
    )
    .unwrap();
    assert!(c.frontends[0].listen.is_empty());
    let v = c.vrrp.into_iter().next().unwrap();
    assert_eq!(
        v.track,
        Track::Backend(BackendId {
            frontend: FrontendKind::Apiserver,
            master: 0
        })
    );
    assert_eq!(v.vips, vec![("198.18.0.5".parse().unwrap(), 32)]);
    assert_eq!(v.instance.peers, Some(vec!["198.18.0.12".parse().unwrap()]));
}

#[test]
fn vrrp_errors_are_named() {
    let cases: &[(&str, &str)] = &[
        ("vrid: 0", "test.yaml: vrrp.vrid: \"0\": out of range"),
        ("vrid: 1\n  version: 4", "test.yaml: vrrp.version: \"4\""),
        (
            "vrid: 1\n  advert_interval: 5ms",
            "test.yaml: vrrp.advert_interval: \"5ms\"",
        ),
        (
            "vrid: 1\n  version: 2\n  advert_interval: 1500ms",
            "test.yaml: vrrp.advert_interval: \"1500ms\"",
        ),
        (
            "vrid: 1\n  auth_pass: x",
            "test.yaml: vrrp.auth_pass: VRRPv3 has no authentication",
        ),
        ("vrid: 1\n  priority: 0", "test.yaml: vrrp.priority: \"0\""),
        (
            "vrid: 1\n  track: backend:nobody",
            "test.yaml: vrrp.track: \"backend:nobody\"",
        ),
        (
            "vrid: 1\n  unicast_peers: [x]",
            "test.yaml: vrrp.unicast_peers[0]: \"x\"",
        ),
        (
            "vrid: 1\n  health_weight: 200",
            "test.yaml: vrrp: health_weight 200 is not below the priority",
        ),
        (
            "vrid: 1\n  announce_interval: 0s",
            "test.yaml: vrrp: announce_interval 0 with announce_count 5",
        ),
        (
            "vrid: 1\n  announce_refresh: 50ms",
            "test.yaml: vrrp.announce_refresh: \"50ms\": below 100ms",
        ),
        (
            "vrid: 1\n  owner: nobody",
            "test.yaml: vrrp.owner: \"nobody\"",
        ),
        (
            "vrid: 1\n  owner: 198.18.0.11",
            "test.yaml: vrrp: owner 198.18.0.11 names another node as the address owner",
        ),
        (
            "vrid: 1\n  owner: 2001:db8::1",
            "test.yaml: vrrp: 2001:db8::1 is not of the family",
        ),
    ];
    for (extra, want) in cases {
        let yaml = format!(
            "backends: [{{address: 198.18.0.11}}]\nvrrp:\n  interface: eth0\n  address: 198.18.0.11\n  vips: [198.18.0.5/24]\n  {extra}\n"
        );
        let lines = issues(&yaml);
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "for\n{yaml}\nexpected {want:?}, got {lines:#?}"
        );
    }
    let lines = issues("backends: [{address: 198.18.0.11}]\nvrrp: {interface: eth0}\n");
    for want in [
        "vrrp.address: is missing",
        "vrrp.vrid: is missing",
        "vrrp.vips: is missing",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want}: {lines:#?}");
    }
}

#[test]
fn admin_endpoint_defaults_to_loopback_and_can_be_turned_off() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.admin.listen,
        vec![DEFAULT_ADMIN_LISTEN.parse::<SocketAddr>().unwrap()]
    );
    assert!(c.admin.exposed().is_empty());
    let off = parse(&format!("{MINIMAL}admin: {{listen: []}}\n")).unwrap();
    assert!(off.admin.listen.is_empty());
    let both = parse(&format!(
        "{MINIMAL}admin: {{listen: ['[::1]:9469', '198.18.0.11:9469']}}\n"
    ))
    .unwrap();
    assert_eq!(
        both.admin.exposed(),
        vec!["198.18.0.11:9469".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn admin_listen_errors_name_the_key_and_value() {
    let lines = issues(&format!(
        "{MINIMAL}admin: {{listen: [nowhere, '127.0.0.1:9469', '127.0.0.1:9469', '0.0.0.0:8443']}}\n"
    ));
    assert_eq!(
        lines,
        vec![
            "test.yaml: admin.listen[0]: \"nowhere\": is not a listen address; expected IP:port such as 127.0.0.1:9469, or [] to turn the admin endpoint off",
            "test.yaml: admin.listen[2]: \"127.0.0.1:9469\": is listed twice",
            "test.yaml: admin.listen[3]: \"0.0.0.0:8443\": is already used by a frontend; expected a distinct address",
        ]
    );
    let lines = issues(&format!("{MINIMAL}admin: {{listn: []}}\n"));
    assert!(
        lines[0].contains("admin.listn") || lines[0].contains("unknown field `listn`"),
        "{lines:?}"
    );
}

const DUAL_STACK: &str = "
backends:
  - {name: master-1, address: 198.18.0.11}
apiserver: {listen: '[::]:8443'}
vrrp:
  - name: api-v4
    interface: eth0
    address: 198.18.0.11
    vrid: 51
    vips: [198.18.0.5/24]
    sync_group: api
  - interface: eth0
    address: 2001:db8::11
    vrid: 51
    vips: [2001:db8::5/64]
    sync_group: api
";

#[test]
fn a_list_of_instances_with_a_sync_group() {
    let c = parse(DUAL_STACK).unwrap();
    let names: Vec<(&str, Option<&str>)> = c
        .vrrp
        .iter()
        .map(|v| (v.name.as_str(), v.sync_group.as_deref()))
        .collect();
    // The unnamed IPv6 instance of VRID 51 does not collide with the IPv4 one.
    assert_eq!(
        names,
        [("api-v4", Some("api")), ("vrid-51-ipv6", Some("api"))]
    );
    assert_eq!(c.vrrp[1].vips, vec![("2001:db8::5".parse().unwrap(), 64)]);
    // One instance as a map, as before, is one instance named by its VRID.
    let single = parse(VRRP).unwrap();
    assert_eq!(single.vrrp.len(), 1);
    assert_eq!(single.vrrp[0].name, "vrid-51");
    assert_eq!(single.vrrp[0].sync_group, None);
}

#[test]
fn instances_are_checked_against_each_other_under_their_own_keys() {
    let base = "backends: [{name: m1, address: 198.18.0.11}]\n";
    let lines = issues(&format!(
        "{base}vrrp:
  - {{name: a, interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24], sync_group: g}}
  - {{name: a, interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24]}}
  - {{name: 'b c', interface: eth1, address: 198.18.0.11, vrid: 0, vips: [198.18.0.6/24]}}
"
    ));
    let want = [
        "test.yaml: vrrp[2].vrid: \"0\": out of range",
        "test.yaml: vrrp[2].name: \"b c\": expected 1 to 64 letters",
        "test.yaml: vrrp[0].sync_group: \"g\": is the only instance of this sync group",
        "test.yaml: vrrp[1].name: \"a\": is also the name of vrrp[0]",
        "test.yaml: vrrp[1].vrid: \"51\": vrrp[0] already runs this virtual router (IPv4 on eth0)",
        "test.yaml: vrrp[1].vips: \"198.18.0.5\": is also a VIP of vrrp[0]",
    ];
    for w in want {
        assert!(
            lines.iter().any(|l| l.starts_with(w)),
            "{w:?} not in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), want.len(), "{lines:#?}");
    // Unknown keys in a list entry name the entry.
    let lines = issues(&format!(
        "{base}vrrp:\n  - {{interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24], sync: g}}\n"
    ));
    assert!(lines[0].starts_with("test.yaml: vrrp[0]"), "{lines:?}");
    assert!(lines[0].contains("sync"), "{lines:?}");
    assert_eq!(issues(&format!("{base}vrrp: []\n")).len(), 1);
    // notify.instance names a single instance only.
    let lines = issues(&format!(
        "{base}vrrp:\n  - {{interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24]}}\nnotify: {{instance: VI_1}}\n"
    ));
    assert!(
        lines[0].starts_with("test.yaml: notify.instance: \"VI_1\""),
        "{lines:?}"
    );
    let lines = issues(&format!(
        "{base}vrrp: {{name: a, interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24]}}\nnotify: {{instance: VI_1}}\n"
    ));
    assert!(lines[0].contains("differs from vrrp.name (a)"), "{lines:?}");
}
