//! The generators and the shipped unit and image, checked with the real tools an operator
//! runs them through:
//!
//! - `apivip config` for every shape, its output passed to the real `apivip check`; the
//!   detection of this node's master entry, interface and address inside a network
//!   namespace (root).
//! - `apivip manifest`, validated with PyPI's `kubernetes-validate` (installed by
//!   `scripts/test.sh` into `target/tools/venv`) against the Kubernetes JSON schemas of
//!   several minor versions, and parsed back.
//! - `apivip kubeadm-config`, parsed back into kubeadm's `ClusterConfiguration` fields
//!   (kubernetes-validate ships no schema for kubeadm's types).
//! - Both work before `kubeadm init` made the PKI: missing certificates are warnings.
//! - `deploy/apivip.service` through `systemd-analyze verify` and `security`.
//! - `deploy/Containerfile` (no container engine runs here: the test reads it).
//!
//! A missing tool prints why and skips; with `APIVIP_REQUIRE_NETNS=1` (CI) it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apivip::testkit::certs::TestPki;
use serde::Deserialize;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const MASTERS: &str = "198.18.0.11,198.18.0.12,198.18.0.13";
const VIP: &str = "198.18.0.5/24";
/// Kubernetes minor versions the manifest is validated against: the oldest and the
/// newest the pinned kubernetes-validate (scripts/test.sh) ships, and one between.
const KUBERNETES_VERSIONS: [&str; 3] = ["1.25.0", "1.31.0", "1.37.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `apivip ARGS`; (stdout, stderr), panicking with both unless it succeeded.
fn apivip_ok(args: &[&str]) -> (String, String) {
    let out = run(Command::new(BIN).args(args));
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "apivip {args:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// A kubeadm-like PKI directory: `ca.crt`, `etcd/ca.crt`,
/// `etcd/healthcheck-client.{crt,key}` (real PEM: `apivip check` parses them).
fn kubeadm_pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    std::fs::create_dir_all(dir.join("made")).unwrap();
    let made = TestPki::generate(&dir.join("made"), &["127.0.0.1"]).unwrap();
    std::fs::create_dir_all(pki.join("etcd")).unwrap();
    for (from, to) in [
        (&made.ca_cert, "ca.crt"),
        (&made.ca_cert, "etcd/ca.crt"),
        (&made.client_cert, "etcd/healthcheck-client.crt"),
        (&made.client_key, "etcd/healthcheck-client.key"),
    ] {
        std::fs::copy(from, pki.join(to)).unwrap();
    }
    pki
}

/// `apivip config ARGS` for master-2 (every detected fact given as a flag), written to
/// `dir/NAME.yaml`.
fn generate_config(dir: &Path, name: &str, pki: &Path, args: &[&str]) -> PathBuf {
    let mut all = vec![
        "config",
        "--masters",
        MASTERS,
        "--pki",
        pki.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (yaml, stderr) = apivip_ok(&all);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, &yaml).unwrap();
    println!("$ apivip {}\n{stderr}{yaml}", all.join(" "));
    path
}

const MASTER_2: [&str; 6] = [
    "--node",
    "master-2",
    "--interface",
    "eth0",
    "--address",
    "198.18.0.12",
];

/// (name, flags, what `apivip check` says) for every shape and the main options.
fn cases() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    let vip = |shape: &'static str, extra: &[&'static str]| {
        let mut v = vec!["--vip", VIP, "--shape", shape];
        v.extend_from_slice(&MASTER_2);
        v.extend_from_slice(extra);
        v
    };
    vec![
        (
            "vip-proxy",
            vip("vip-proxy", &[]),
            "apiserver on 0.0.0.0:8443 -> 3 backends; vrrp v3 vrid 51 on eth0 for 198.18.0.5/24 at priority 140",
        ),
        (
            "vip-proxy-unicast-etcd",
            vip("vip-proxy", &["--unicast", "--etcd"]),
            "etcd on 198.18.0.5:2379 -> 3 backends; vrrp v3",
        ),
        (
            "vip-proxy-keepalived-v2",
            vip(
                "vip-proxy",
                &["--vrrp-version", "2", "--auth-pass", "42secret", "--priority", "100"],
            ),
            "vrrp v2 vrid 51 on eth0 for 198.18.0.5/24 at priority 100",
        ),
        (
            "vip-only",
            vip("vip-only", &[]),
            "apiserver on  -> 3 backends; vrrp v3 vrid 51 on eth0",
        ),
        (
            "local-proxy",
            vec!["--shape", "local-proxy", "--etcd"],
            "apiserver on 127.0.0.1:8443 -> 3 backends; etcd on 127.0.0.1:12379 -> 3 backends)",
        ),
        (
            "dns",
            vec!["--shape", "dns", "--node", "master-2", "--dns-name", "api.cluster.example", "--dns-server", "198.18.0.53,198.18.0.54:5353"],
            "apiserver on  -> 3 backends; dns api.cluster.example. in zone cluster.example. via 198.18.0.53:53,198.18.0.54:5353 (key apivip-key., ttl 5s)",
        ),
    ]
}

#[test]
fn generated_config_passes_apivip_check_in_every_shape() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kubeadm_pki(dir.path());
    // The DNS shape's TSIG secret, installed as the README says.
    let key = dir.path().join("dns.key");
    std::fs::write(&key, "YXBpdmlwLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzISE=").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for (name, mut args, summary) in cases() {
        if name == "dns" {
            args.extend(["--dns-key-file", key.to_str().unwrap()]);
        }
        let path = generate_config(dir.path(), name, &pki, &args);
        let (stdout, _) = apivip_ok(&["check", "-c", path.to_str().unwrap()]);
        assert!(
            stdout.contains(summary),
            "{name}: `apivip check` says {stdout:?}, expected it to contain {summary:?}"
        );
    }
}

#[test]
fn config_refuses_what_it_cannot_make_and_names_the_flag() {
    for (args, expected) in [
        (vec!["--vip", "198.18.0.5/33"], "--vip: \"198.18.0.5/33\""),
        (vec![], "--vip is missing"),
        (
            vec!["--vip", VIP, "--node", "master-9"],
            "--node: \"master-9\": is not one of --masters",
        ),
        (
            vec!["--shape", "local-proxy", "--unicast"],
            "--unicast only applies to the VIP shapes",
        ),
        // Nothing on this host is a master (198.18.0.0/15 is the tests' own range).
        (vec!["--vip", VIP], "pass --node NAME"),
        (
            vec![
                "--shape",
                "dns",
                "--node",
                "master-1",
                "--dns-server",
                "198.18.0.53",
            ],
            "--dns-name is missing",
        ),
        (
            vec![
                "--shape",
                "dns",
                "--node",
                "master-1",
                "--dns-name",
                "api.cluster.example",
                "--dns-server",
                "ns1",
            ],
            "--dns-server: \"ns1\"",
        ),
        (
            vec![
                "--vip",
                VIP,
                "--node",
                "master-1",
                "--dns-name",
                "api.cluster.example",
            ],
            "only apply to --shape dns",
        ),
    ] {
        let mut all = vec!["config", "--masters", MASTERS];
        all.extend_from_slice(&args);
        let out = run(Command::new(BIN).args(&all));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{all:?} printed a config: {stdout}");
        assert!(
            stderr.contains(expected),
            "{all:?}: {stderr:?} lacks {expected:?}"
        );
    }
}

#[test]
fn config_detects_node_interface_and_address_in_a_namespace() {
    let test = "config_detects_node_interface_and_address_in_a_namespace";
    if !support::require_root(test) {
        return;
    }
    let topo = support::netns::Topology::new(3).expect("topology");
    let node = topo.master(1);
    let dir = tempfile::tempdir().unwrap();
    let pki = kubeadm_pki(dir.path());
    let masters_v4: Vec<String> = topo.masters().iter().map(|m| m.ipv4.to_string()).collect();
    let masters_v6: Vec<String> = topo.masters().iter().map(|m| m.ipv6.to_string()).collect();
    for (masters, vip, address, shape) in [
        (
            masters_v4.join(","),
            VIP,
            node.ipv4.to_string(),
            "vip-proxy",
        ),
        (
            masters_v6.join(","),
            "2001:db8::5/64",
            node.ipv6.to_string(),
            "vip-only",
        ),
    ] {
        let out = run(node.command(BIN).args([
            "config",
            "--masters",
            &masters,
            "--vip",
            vip,
            "--shape",
            shape,
            "--pki",
            pki.to_str().unwrap(),
        ]));
        let (yaml, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        for expected in [
            format!("this node: master-2 ({address} is on {})", node.ifname),
            format!("interface: {} (holds {address})", node.ifname),
            format!("address: {address} (this master's)"),
        ] {
            assert!(stderr.contains(&expected), "{stderr:?} lacks {expected:?}");
        }
        let path = dir.path().join(format!("{shape}.yaml"));
        std::fs::write(&path, &yaml).unwrap();
        let (stdout, _) = apivip_ok(&["check", "-c", path.to_str().unwrap()]);
        assert!(
            stdout.contains(&format!("on {} for {vip} at priority 140", node.ifname)),
            "{stdout}"
        );
    }
}

/// The kubernetes-validate command: the venv scripts/test.sh makes, else `PATH`.
fn kubernetes_validate(test: &str) -> Option<PathBuf> {
    let venv = root().join("target/tools/venv/bin/kubernetes-validate");
    if venv.exists() {
        return Some(venv);
    }
    support::require_bin(test, "kubernetes-validate")
}

/// Runs kubernetes-validate --strict on `file` for `version`: (success, output).
fn validate(tool: &Path, version: &str, file: &Path) -> (bool, String) {
    let out = run(Command::new(tool)
        .args(["--strict", "-k", version])
        .arg(file));
    let (stdout, stderr) = text(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// Generated configs for the three shapes, with real PKI files.
fn shape_configs(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let pki = kubeadm_pki(dir);
    // The DNS shape's TSIG secret, installed as the README says.
    let key = dir.join("dns.key");
    std::fs::write(&key, "YXBpdmlwLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzISE=").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key = key.to_str().unwrap().to_owned();
    ["vip-proxy", "vip-only", "local-proxy", "dns"]
        .into_iter()
        .map(|shape| {
            let args: Vec<&str> = if shape == "local-proxy" {
                vec!["--shape", shape, "--etcd"]
            } else if shape == "dns" {
                vec![
                    "--shape",
                    shape,
                    "--etcd",
                    "--node",
                    "master-2",
                    "--dns-name",
                    "api.cluster.example",
                    "--dns-server",
                    "198.18.0.53",
                    "--dns-key-file",
                    &key,
                ]
            } else {
                let mut v = vec!["--vip", VIP, "--shape", shape, "--etcd"];
                v.extend_from_slice(&MASTER_2);
                v
            };
            (shape, generate_config(dir, shape, &pki, &args))
        })
        .collect()
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn manifest_passes_kubernetes_validate_and_reads_back() {
    let test = "manifest_passes_kubernetes_validate_and_reads_back";
    let tool = kubernetes_validate(test);
    let dir = tempfile::tempdir().unwrap();
    for (shape, config) in shape_configs(dir.path()) {
        let (manifest, _) = apivip_ok(&[
            "manifest",
            "-c",
            config.to_str().unwrap(),
            "--image",
            "registry.example/apivip:0.1.0",
        ]);
        let file = dir.path().join(format!("{shape}-pod.yaml"));
        std::fs::write(&file, &manifest).unwrap();
        if let Some(tool) = &tool {
            for version in KUBERNETES_VERSIONS {
                let (ok, out) = validate(tool, version, &file);
                assert!(
                    ok && !out.contains("WARN") && !out.contains("ERROR"),
                    "{shape}: kubernetes-validate --strict -k {version}:\n{out}\n{manifest}"
                );
                println!("{shape}, Kubernetes {version}: {}", out.trim());
            }
        }
        // Read back: what the kubelet acts on.
        let pod = yaml(&manifest);
        assert_eq!(
            (pod["apiVersion"].as_str(), pod["kind"].as_str()),
            (Some("v1"), Some("Pod"))
        );
        assert_eq!(pod["metadata"]["namespace"], "kube-system");
        let spec = &pod["spec"];
        assert_eq!(spec["hostNetwork"], true);
        assert_eq!(spec["priorityClassName"], "system-node-critical");
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "registry.example/apivip:0.1.0");
        assert_eq!(c["command"], json!([apivip::generate::manifest::BINARY]));
        assert_eq!(
            c["args"],
            json!(["run", "--config", config.to_str().unwrap()])
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        let add = sc["capabilities"].get("add");
        if shape == "local-proxy" || shape == "dns" {
            assert!(add.is_none(), "{shape}: no VRRP, no capability: {add:?}");
        } else {
            assert_eq!(add, Some(&json!(["NET_ADMIN", "NET_RAW"])), "{shape}");
        }
        let live = &c["livenessProbe"]["httpGet"];
        assert_eq!(
            (
                live["host"].as_str(),
                live["port"].as_u64(),
                live["path"].as_str()
            ),
            (Some("127.0.0.1"), Some(9469), Some("/healthz"))
        );
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["requests"]["memory"].is_string());
        // Config and the four PKI files (and the DNS shape's TSIG secret), each
        // read-only from a hostPath file.
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert_eq!(
            mounts.len(),
            if shape == "dns" { 6 } else { 5 },
            "{mounts:?}"
        );
        let volumes = spec["volumes"].as_array().unwrap();
        for m in mounts {
            assert_eq!(m["readOnly"], true, "{m}");
            let v = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
            assert_eq!(
                v["hostPath"]["path"], m["mountPath"],
                "mounted at the host path"
            );
            assert_eq!(v["hostPath"]["type"], "File");
            let path = Path::new(v["hostPath"]["path"].as_str().unwrap());
            assert!(path.is_file(), "{} mounts a missing file", path.display());
        }
        let fields = pod.to_string();
        assert!(
            !fields.contains("kubeconfig") && !fields.contains(".conf"),
            "needs no kubeconfig: {fields}"
        );
    }
}

#[test]
fn kubernetes_validate_catches_a_broken_pod() {
    // The validation above can fail: the same tool refuses a pod with a misspelt key.
    let test = "kubernetes_validate_catches_a_broken_pod";
    let Some(tool) = kubernetes_validate(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = &shape_configs(dir.path())[0].1;
    let (manifest, _) = apivip_ok(&["manifest", "-c", config.to_str().unwrap()]);
    let broken = manifest.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem");
    assert_ne!(broken, manifest);
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let (ok, out) = validate(&tool, KUBERNETES_VERSIONS[2], &file);
    assert!(!ok, "kubernetes-validate accepted a misspelt key:\n{out}");
}

/// kubeadm's ClusterConfiguration, the fields the fragment sets (v1beta3 and v1beta4
/// spell them alike); unknown fields are errors, so a misspelt key fails here.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterConfiguration {
    api_version: String,
    kind: String,
    control_plane_endpoint: String,
    api_server: ApiServer,
    #[serde(default)]
    etcd: Option<Etcd>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ApiServer {
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Etcd {
    local: LocalEtcd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LocalEtcd {
    #[serde(rename = "serverCertSANs")]
    server_cert_sans: Vec<String>,
}

#[test]
fn kubeadm_config_reads_back_for_every_shape() {
    let tool = kubernetes_validate("kubeadm_config_reads_back_for_every_shape");
    let dir = tempfile::tempdir().unwrap();
    for (shape, config) in shape_configs(dir.path()) {
        for (api, endpoint) in [("v1beta4", None), ("v1beta3", Some("api.cluster.example"))] {
            let mut args = vec![
                "kubeadm-config",
                "-c",
                config.to_str().unwrap(),
                "--api-version",
                api,
            ];
            if let Some(e) = endpoint {
                args.extend(["--endpoint", e]);
            }
            let (text, _) = apivip_ok(&args);
            let c: ClusterConfiguration = serde_saphyr::from_str(&text)
                .unwrap_or_else(|e| panic!("{shape} {api}: {e}\n{text}"));
            assert_eq!(c.api_version, format!("kubeadm.k8s.io/{api}"));
            assert_eq!(c.kind, "ClusterConfiguration");
            let host = endpoint.unwrap_or(match shape {
                "local-proxy" => "127.0.0.1",
                "dns" => "api.cluster.example",
                _ => "198.18.0.5",
            });
            let port = if shape == "vip-only" || shape == "dns" {
                6443
            } else {
                8443
            };
            assert_eq!(
                c.control_plane_endpoint,
                format!("{host}:{port}"),
                "{shape}"
            );
            if endpoint.is_none() {
                // The config's header told the operator the same endpoint.
                let header = std::fs::read_to_string(&config).unwrap();
                let said = format!("controlPlaneEndpoint: \"{}\"", c.control_plane_endpoint);
                assert!(
                    header.contains(&said),
                    "{shape}: the config says otherwise:\n{header}"
                );
            }
            let mut sans: Vec<&str> = endpoint.into_iter().collect();
            let own = match shape {
                "local-proxy" => "127.0.0.1",
                "dns" => "api.cluster.example",
                _ => "198.18.0.5",
            };
            if !sans.contains(&own) {
                sans.push(own);
            }
            assert_eq!(c.api_server.cert_sans, sans, "{shape}");
            let etcd_sans = c.etcd.map(|e| e.local.server_cert_sans);
            if shape == "local-proxy" || shape == "dns" {
                assert_eq!(etcd_sans, None, "etcd on loopback is in kubeadm's own SANs");
            } else {
                assert_eq!(etcd_sans, Some(vec!["198.18.0.5".to_owned()]), "{shape}");
            }
            if let Some(tool) = &tool {
                let file = dir.path().join(format!("{shape}-{api}-kubeadm.yaml"));
                std::fs::write(&file, &text).unwrap();
                let (ok, out) = validate(tool, KUBERNETES_VERSIONS[2], &file);
                // kubeadm's types are not in the Kubernetes OpenAPI: the tool has no
                // schema for them (it says so and passes). Should one appear, it counts.
                assert!(ok, "{out}");
                if !out.contains("Couldn't find schema") {
                    assert!(!out.contains("WARN") && !out.contains("ERROR"), "{out}");
                }
            }
        }
    }
}

#[test]
fn generators_work_before_kubeadm_init_made_the_pki() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("pki-not-yet");
    let mut args = vec!["--vip", VIP, "--etcd"];
    args.extend_from_slice(&MASTER_2);
    let config = generate_config(dir.path(), "early", &missing, &args);
    let c = config.to_str().unwrap();
    // The daemon's check refuses it, naming the missing file.
    let out = run(Command::new(BIN).args(["check", "-c", c]));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("apiserver.check.ca"), "{stderr}");
    // The generators warn and go on.
    for cmd in ["manifest", "kubeadm-config"] {
        let (stdout, stderr) = apivip_ok(&[cmd, "-c", c]);
        assert!(!stdout.is_empty());
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning:")).collect();
        assert_eq!(warnings.len(), 4, "{cmd}: one per missing file: {stderr}");
        assert!(
            warnings[0].contains("apiserver.check.ca")
                && warnings[0].contains("does not exist yet"),
            "{stderr}"
        );
    }
    // Anything else wrong is still an error.
    std::fs::write(&config, "backends: []\n").unwrap();
    for cmd in ["manifest", "kubeadm-config"] {
        let out = run(Command::new(BIN).args([cmd, "-c", c]));
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {stdout}{stderr}");
        assert!(stderr.contains("backends: is empty"), "{stderr}");
    }
}

// === deploy/apivip.service ===

const UNIT: &str = "deploy/apivip.service";

fn unit_text() -> String {
    std::fs::read_to_string(root().join(UNIT)).unwrap()
}

/// Every `Key=value` of the unit (comments dropped), in order.
fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A copy of the unit, named apivip.service, whose ExecStart runs the built binary
/// (`verify` checks that the command exists).
fn unit_copy(dir: &Path) -> PathBuf {
    let text = unit_text().replace("/usr/local/bin/apivip", BIN);
    let path = dir.join("apivip.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unit_has_what_the_daemon_needs_and_nothing_more() {
    let keys = unit_keys(&unit_text());
    let get = |k: &str| -> Vec<&str> {
        keys.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    for (key, value) in [
        ("Type", "notify"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_ADMIN CAP_NET_RAW"),
        ("CapabilityBoundingSet", "CAP_NET_ADMIN CAP_NET_RAW"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
    ] {
        assert_eq!(get(key), [value], "{key}");
    }
    assert!(get("WatchdogSec").len() == 1, "WatchdogSec is set");
    assert_eq!(
        get("ExecStart"),
        ["/usr/local/bin/apivip run --config /etc/apivip/apivip.yaml"]
    );
    // Exactly the families apivip opens: TCP/UDP and raw IP (proxy, checks, VRRP),
    // netlink (VIPs), packet (gratuitous ARP, src/vrrp/io/announce.rs), unix (sd_notify).
    let mut families: Vec<&str> = get("RestrictAddressFamilies")[0].split(' ').collect();
    families.sort_unstable();
    assert_eq!(
        families,
        ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"]
    );
    let announce = std::fs::read_to_string(root().join("src/vrrp/io/announce.rs")).unwrap();
    assert!(
        announce.contains("Domain::PACKET"),
        "AF_PACKET is still used"
    );
    // The VIP lives in the host's network namespace, with host capabilities.
    for forbidden in ["PrivateNetwork", "PrivateUsers"] {
        assert!(get(forbidden).is_empty(), "{forbidden} would break VRRP");
    }
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let test = "unit_passes_systemd_analyze_verify";
    let Some(tool) = support::require_bin(test, "systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = run(Command::new(&tool).arg("verify").arg(&unit));
    let (stdout, stderr) = text(&out);
    let about_unit: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("apivip"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify {}:\n{stdout}{stderr}",
        unit.display()
    );
    // verify does complain about a broken unit (the check above can fail).
    std::fs::write(
        &unit,
        unit_text()
            .replace("ProtectHome=", "ProtectHom=")
            .replace("/usr/local/bin/apivip", BIN),
    )
    .unwrap();
    let (stdout, stderr) = text(&run(Command::new(&tool).arg("verify").arg(&unit)));
    assert!(
        format!("{stdout}{stderr}").contains("Unknown key 'ProtectHom'"),
        "{stdout}{stderr}"
    );
}

#[test]
fn unit_exposure_score_is_the_one_the_readme_gives() {
    let test = "unit_exposure_score_is_the_one_the_readme_gives";
    let Some(tool) = support::require_bin(test, "systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = run(Command::new(&tool)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit));
    let (stdout, stderr) = text(&out);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score:\n{stdout}{stderr}"));
    // "→ Overall exposure level for apivip.service: 2.0 OK 🙂"
    let score = line
        .rsplit_once(": ")
        .map(|(_, s)| s.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap();
    println!("{line}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let claim = format!("exposure level {score}");
    assert!(
        readme.contains(&claim),
        "README must say `{claim}` (systemd-analyze security measured it)"
    );
    assert!(
        unit_text().contains(&format!("rates this unit {score}")),
        "{UNIT} must say `rates this unit {score}`"
    );
}

// === deploy/Containerfile ===

#[test]
fn containerfile_builds_the_binary_the_manifest_runs() {
    // No container engine runs here, so the test reads the file: the final stage starts
    // the binary at the path the manifest's `command` names, built from this package
    // with the toolchain Cargo.toml asks for.
    let text = std::fs::read_to_string(root().join("deploy/Containerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let stages: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "a builder and a runtime stage: {stages:?}");
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv = cargo
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        stages[0].starts_with(&format!("FROM rust:{msrv}-")) && stages[0].ends_with(" AS build"),
        "{stages:?}"
    );
    assert!(text.contains("cargo build --release --locked --bin apivip"));
    let bin = apivip::generate::manifest::BINARY;
    let last = &lines[lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap()..];
    assert!(
        last.iter()
            .any(|l| l.starts_with("COPY --from=build ") && l.ends_with(&format!(" {bin}"))),
        "the runtime stage copies the binary to {bin}: {last:?}"
    );
    assert!(
        last.contains(&format!("ENTRYPOINT [\"{bin}\"]").as_str()),
        "{last:?}"
    );
    assert!(
        last.contains(&"CMD [\"run\", \"--config\", \"/etc/apivip/apivip.yaml\"]"),
        "{last:?}"
    );
    let ignore = std::fs::read_to_string(root().join(".containerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "the build context skips target/"
    );
}
