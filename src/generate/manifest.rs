//! `apivip manifest`: the static pod for `/etc/kubernetes/manifests/`.
//!
//! Derived from this node's validated [`Config`]:
//!
//! - `hostNetwork`, `priorityClassName: system-node-critical`; no service account, no
//!   kubeconfig: apivip never talks to the apiserver it fronts, so the pod starts before
//!   `kubeadm init` has made any (kube-vip's manifest needs `super-admin.conf` there).
//! - Capabilities: `ALL` dropped; `NET_ADMIN` and `NET_RAW` added only with a `vrrp:`
//!   section (the VIP on the interface, raw VRRP and ARP sockets), `NET_BIND_SERVICE`
//!   only when a listener is below port 1024. The container runs as uid 0 because
//!   Kubernetes gives added capabilities to uid 0 only (a non-root container gets them
//!   in its bounding set, not its effective set); with everything else dropped, no
//!   privilege escalation and a read-only root filesystem, uid 0 can read root's files
//!   and do nothing else.
//! - The config file, each certificate or key the checks name and the TSIG secret of
//!   `dns:`, mounted read-only
//!   from hostPath one by one (`type: File`): the pod sees the CA certificate, not the
//!   CA keys next to it. The kubelet starts the pod once they exist (kubeadm writes
//!   the PKI before it starts the kubelet).
//! - Liveness on the admin `/healthz` (503 when the runtime or the election thread
//!   stalls), readiness on `/readyz`, at the admin listen address (loopback preferred).
//! - `terminationGracePeriodSeconds` above the handover and drain time, so that SIGTERM
//!   hands the VIP over and drains before the kubelet kills the container.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::{reachable_locally, yaml_str, GenerateError};
use crate::config::{CheckKind, Config};

/// Where the image puts the binary (`deploy/Containerfile`).
pub const BINARY: &str = "/usr/local/bin/apivip";

/// The flags of `apivip manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    /// The image reference (`--image`), built from `deploy/Containerfile`.
    pub image: String,
    /// The config file's absolute path on the host; mounted at the same path.
    pub config_path: PathBuf,
}

/// One hostPath file the container reads.
struct Mount {
    name: String,
    path: PathBuf,
    why: String,
}

/// The certificate and key files the config's checks read, and the DNS failover's
/// TSIG secret, named for the pod.
fn pki_mounts(config: &Config) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &config.frontends {
        let https = match &f.check.kind {
            CheckKind::Https(h) | CheckKind::Etcd(h) => h,
            CheckKind::Tcp => continue,
        };
        let files = [
            ("ca", https.ca.as_ref()),
            ("client-cert", https.client_cert.as_ref().map(|c| &c.0)),
            ("client-key", https.client_cert.as_ref().map(|c| &c.1)),
        ];
        for (role, path) in files {
            let Some(path) = path else { continue };
            if seen.insert(path.clone()) {
                out.push(Mount {
                    name: format!("{}-{role}", f.kind),
                    path: path.clone(),
                    why: format!("{}.check.{}", f.kind, role.replace('-', "_")),
                });
            }
        }
    }
    if let Some(d) = &config.dns {
        // The TSIG secret, read at start (and by `apivip check`).
        out.push(Mount {
            name: "dns-tsig-secret".to_owned(),
            path: d.tsig.secret_file.clone(),
            why: "dns.tsig.secret_file".to_owned(),
        });
    }
    out
}

fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Generates the static pod manifest (see the module docs).
pub fn generate(config: &Config, opts: &ManifestOptions) -> Result<String, GenerateError> {
    if opts.image.is_empty() || opts.image.contains(char::is_whitespace) {
        return Err(GenerateError::Flag {
            flag: "image",
            value: opts.image.clone(),
            message: "expected an image reference such as registry.example/apivip:0.1.0".to_owned(),
        });
    }
    let config_path = opts
        .config_path
        .to_str()
        .filter(|_| opts.config_path.is_absolute());
    let Some(config_path) = config_path else {
        return Err(GenerateError::Config(format!(
            "{}: the config's path must be absolute (it is mounted at the same path in the pod)",
            opts.config_path.display()
        )));
    };
    let mounts = pki_mounts(config);
    for m in &mounts {
        if !m.path.is_absolute() || m.path.to_str().is_none() {
            return Err(GenerateError::Config(format!(
                "{}: {}: {:?}: the pod mounts it from the host, so it must be an absolute path",
                config.source.display(),
                m.why,
                m.path.display()
            )));
        }
    }
    let mut caps_add: Vec<&str> = Vec::new();
    if !config.vrrp.is_empty() {
        caps_add.extend(["NET_ADMIN", "NET_RAW"]);
    }
    let low_port = config
        .frontends
        .iter()
        .flat_map(|f| &f.listen)
        .chain(&config.admin.listen)
        .any(|a| a.port() != 0 && a.port() < 1024);
    if low_port {
        caps_add.push("NET_BIND_SERVICE");
    }
    let probe_addr = config
        .admin
        .listen
        .iter()
        .find(|a| a.ip().is_loopback())
        .or_else(|| config.admin.listen.first())
        .map(|a| reachable_locally(*a));
    let handover = config
        .vrrp
        .iter()
        .map(|v| v.instance.handover_timeout)
        .max()
        .unwrap_or(Duration::ZERO);
    let grace = seconds(config.shutdown.drain_timeout + handover) + 5;

    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "# apivip as a static pod: put this file in /etc/kubernetes/manifests/ on the node"
    );
    let _ = writeln!(
        w,
        "# whose config it was made from ({config_path}). It needs no kubeconfig: apivip never"
    );
    let _ = writeln!(
        w,
        "# talks to the apiserver it fronts, so it starts before `kubeadm init` finishes."
    );
    let _ = writeln!(w, "apiVersion: v1");
    let _ = writeln!(w, "kind: Pod");
    let _ = writeln!(w, "metadata:");
    let _ = writeln!(w, "  name: apivip");
    let _ = writeln!(w, "  namespace: kube-system");
    let _ = writeln!(w, "  labels:");
    let _ = writeln!(w, "    component: apivip");
    let _ = writeln!(w, "    tier: control-plane");
    let _ = writeln!(w, "spec:");
    let _ = writeln!(w, "  hostNetwork: true");
    let _ = writeln!(w, "  priorityClassName: system-node-critical");
    let _ = writeln!(
        w,
        "  # Above the VIP handover ({}) plus the drain (shutdown.drain_timeout, {}).",
        crate::units::format_duration(handover),
        crate::units::format_duration(config.shutdown.drain_timeout)
    );
    let _ = writeln!(w, "  terminationGracePeriodSeconds: {grace}");
    let _ = writeln!(w, "  securityContext:");
    let _ = writeln!(w, "    seccompProfile:");
    let _ = writeln!(w, "      type: RuntimeDefault");
    let _ = writeln!(w, "  containers:");
    let _ = writeln!(w, "    - name: apivip");
    let _ = writeln!(w, "      image: {}", yaml_str(&opts.image));
    let _ = writeln!(w, "      imagePullPolicy: IfNotPresent");
    let _ = writeln!(w, "      command: [{BINARY}]");
    let _ = writeln!(w, "      args: [run, --config, {}]", yaml_str(config_path));
    let _ = writeln!(w, "      securityContext:");
    let _ = writeln!(
        w,
        "        # uid 0 because Kubernetes grants added capabilities to uid 0 only; it has"
    );
    let _ = writeln!(
        w,
        "        # no other capability, cannot gain any, and cannot write its filesystem."
    );
    let _ = writeln!(w, "        runAsUser: 0");
    let _ = writeln!(w, "        privileged: false");
    let _ = writeln!(w, "        allowPrivilegeEscalation: false");
    let _ = writeln!(w, "        readOnlyRootFilesystem: true");
    let _ = writeln!(w, "        capabilities:");
    let _ = writeln!(w, "          drop: [ALL]");
    if caps_add.is_empty() {
        let _ = writeln!(
            w,
            "          # none added: no vrrp section, so no VIP and no raw sockets"
        );
    } else {
        let _ = writeln!(w, "          add: [{}]", caps_add.join(", "));
    }
    match probe_addr {
        Some(addr) => {
            for (probe, path, why) in [
                (
                    "livenessProbe",
                    "/healthz",
                    "503 when the runtime or the election thread stalls",
                ),
                (
                    "readinessProbe",
                    "/readyz",
                    "200 once listeners are bound and VRRP runs",
                ),
            ] {
                let _ = writeln!(w, "      {probe}:  # {why}");
                let _ = writeln!(w, "        httpGet:");
                let _ = writeln!(w, "          host: {}", yaml_str(&addr.ip().to_string()));
                let _ = writeln!(w, "          port: {}", addr.port());
                let _ = writeln!(w, "          path: {path}");
                let _ = writeln!(w, "          scheme: HTTP");
                if probe == "livenessProbe" {
                    let _ = writeln!(w, "        initialDelaySeconds: 10");
                }
                let _ = writeln!(w, "        periodSeconds: 10");
                let _ = writeln!(w, "        timeoutSeconds: 5");
                let _ = writeln!(w, "        failureThreshold: 3");
            }
        }
        None => {
            let _ = writeln!(
                w,
                "      # No liveness probe: the admin endpoint is off (admin.listen: [])."
            );
        }
    }
    let _ = writeln!(w, "      resources:");
    let _ = writeln!(w, "        requests:");
    let _ = writeln!(w, "          cpu: 50m");
    let _ = writeln!(w, "          memory: 64Mi");
    let _ = writeln!(w, "      volumeMounts:");
    let _ = writeln!(w, "        - name: config");
    let _ = writeln!(w, "          mountPath: {}", yaml_str(config_path));
    let _ = writeln!(w, "          readOnly: true");
    for m in &mounts {
        let path = m.path.to_str().unwrap_or_default();
        let _ = writeln!(w, "        - name: {}", m.name);
        let _ = writeln!(w, "          mountPath: {}", yaml_str(path));
        let _ = writeln!(w, "          readOnly: true");
    }
    let _ = writeln!(w, "  volumes:");
    let _ = writeln!(w, "    - name: config");
    let _ = writeln!(w, "      hostPath:");
    let _ = writeln!(w, "        path: {}", yaml_str(config_path));
    let _ = writeln!(w, "        type: File");
    for m in &mounts {
        let path = m.path.to_str().unwrap_or_default();
        let _ = writeln!(w, "    - name: {}  # {}", m.name, m.why);
        let _ = writeln!(w, "      hostPath:");
        let _ = writeln!(w, "        path: {}", yaml_str(path));
        let _ = writeln!(w, "        type: File");
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::test_config as config;
    use serde_json::Value;

    fn opts() -> ManifestOptions {
        ManifestOptions {
            image: "registry.example/apivip:0.1.0".to_owned(),
            config_path: "/etc/apivip/apivip.yaml".into(),
        }
    }

    fn pod(yaml: &str) -> Value {
        let text = generate(&config(yaml), &opts()).unwrap();
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"))
    }

    const VIP: &str = "
backends: [{name: m1, address: 198.18.0.11}, {name: m2, address: 198.18.0.12}]
apiserver: {check: {ca: /etc/kubernetes/pki/ca.crt}}
etcd:
  listen: 198.18.0.5:2379
  check:
    ca: /etc/kubernetes/pki/etcd/ca.crt
    client_cert: /etc/kubernetes/pki/etcd/healthcheck-client.crt
    client_key: /etc/kubernetes/pki/etcd/healthcheck-client.key
vrrp: {interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24], priority: 150}
shutdown: {drain_timeout: 20s}
";

    #[test]
    fn vip_pod_gets_net_admin_and_net_raw_and_each_pki_file() {
        let p = pod(VIP);
        let c = &p["spec"]["containers"][0];
        assert_eq!(p["spec"]["hostNetwork"], true);
        assert_eq!(p["spec"]["priorityClassName"], "system-node-critical");
        assert_eq!(
            c["securityContext"]["capabilities"]["add"],
            serde_json::json!(["NET_ADMIN", "NET_RAW"])
        );
        assert_eq!(
            c["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(
            c["args"],
            serde_json::json!(["run", "--config", "/etc/apivip/apivip.yaml"])
        );
        let mounts: Vec<(&str, &str, bool)> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap(),
                    m["mountPath"].as_str().unwrap(),
                    m["readOnly"] == true,
                )
            })
            .collect();
        assert_eq!(
            mounts,
            [
                ("config", "/etc/apivip/apivip.yaml", true),
                ("apiserver-ca", "/etc/kubernetes/pki/ca.crt", true),
                ("etcd-ca", "/etc/kubernetes/pki/etcd/ca.crt", true),
                (
                    "etcd-client-cert",
                    "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
                    true
                ),
                (
                    "etcd-client-key",
                    "/etc/kubernetes/pki/etcd/healthcheck-client.key",
                    true
                ),
            ]
        );
        for v in p["spec"]["volumes"].as_array().unwrap() {
            assert_eq!(v["hostPath"]["type"], "File", "{v}");
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
        // 20 s drain + 1 s handover (10 x 100 ms) + 5 s.
        assert_eq!(p["spec"]["terminationGracePeriodSeconds"], 26);
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            !text.contains("kubeconfig") && !text.contains(".conf"),
            "no kubeconfig: {text}"
        );
    }

    #[test]
    fn proxy_only_pod_adds_no_capability() {
        let p = pod("backends: [{address: 198.18.0.11}]\napiserver: {listen: 127.0.0.1:8443}\nadmin: {listen: '[::1]:9470'}\n");
        let caps = &p["spec"]["containers"][0]["securityContext"]["capabilities"];
        assert!(caps.get("add").is_none(), "{caps}");
        assert_eq!(caps["drop"], serde_json::json!(["ALL"]));
        let live = &p["spec"]["containers"][0]["livenessProbe"]["httpGet"];
        assert_eq!(
            (live["host"].as_str(), live["port"].as_u64()),
            (Some("::1"), Some(9470))
        );
        assert_eq!(
            p["spec"]["volumes"].as_array().unwrap().len(),
            1,
            "no PKI: system roots"
        );
    }

    #[test]
    fn low_ports_and_admin_off() {
        let p = pod("backends: [{address: 198.18.0.11}]\napiserver: {listen: 0.0.0.0:443}\nadmin: {listen: []}\n");
        let c = &p["spec"]["containers"][0];
        assert_eq!(
            c["securityContext"]["capabilities"]["add"],
            serde_json::json!(["NET_BIND_SERVICE"])
        );
        assert!(c.get("livenessProbe").is_none());
    }

    #[test]
    fn bad_options_are_refused() {
        let c = config(VIP);
        let mut o = opts();
        o.image = "two words".to_owned();
        assert!(matches!(
            generate(&c, &o),
            Err(GenerateError::Flag { flag: "image", .. })
        ));
        let mut o = opts();
        o.config_path = "apivip.yaml".into();
        assert!(
            matches!(generate(&c, &o), Err(GenerateError::Config(m)) if m.contains("absolute"))
        );
    }
}
