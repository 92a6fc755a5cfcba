//! `apivip kubeadm-config`: the `ClusterConfiguration` fragment for the config's shape.
//!
//! | shape | `controlPlaneEndpoint` |
//! |---|---|
//! | vip-proxy | VIP : the proxy's listen port (8443) |
//! | vip-only | VIP : this node's apiserver port (6443) |
//! | local-proxy | 127.0.0.1 : the proxy's listen port |
//! | dns | `dns.name` : the masters' apiserver port (6443) |
//!
//! `--endpoint NAME` puts a DNS name in place of the address (it must resolve to the
//! VIP, or to 127.0.0.1 on every node for local-proxy). `apiServer.certSANs` lists the
//! name, the VIPs, `dns.name` and, for local-proxy, the loopback address, so the apiserver's
//! certificate is valid for every way clients reach it. With an etcd frontend on the
//! VIP, `etcd.local.serverCertSANs` lists the VIP for the same reason.
//!
//! kubeadm's types are not in the Kubernetes OpenAPI, so no JSON schema validates this
//! output; the tests parse it back into the kubeadm fields it sets.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::str::FromStr;

use super::{host_port, reachable_locally, GenerateError, Shape};
use crate::config::{Config, FrontendKind, Track};

/// The kubeadm configuration API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApiVersion {
    /// `kubeadm.k8s.io/v1beta3`: kubeadm 1.22 and later.
    V1beta3,
    /// `kubeadm.k8s.io/v1beta4`: kubeadm 1.31 and later.
    #[default]
    V1beta4,
}

impl ApiVersion {
    /// The `apiVersion` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta3 => "kubeadm.k8s.io/v1beta3",
            ApiVersion::V1beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }
}

impl FromStr for ApiVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<ApiVersion, String> {
        match s.trim_start_matches("kubeadm.k8s.io/") {
            "v1beta3" => Ok(ApiVersion::V1beta3),
            "v1beta4" => Ok(ApiVersion::V1beta4),
            _ => Err(format!(
                "unknown kubeadm API version {s:?}; expected v1beta3 or v1beta4"
            )),
        }
    }
}

/// The flags of `apivip kubeadm-config`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubeadmOptions {
    /// The API version (`--api-version`).
    pub api_version: ApiVersion,
    /// A DNS name for the endpoint (`--endpoint`), in place of the address.
    pub endpoint: Option<String>,
    /// More `certSANs` (`--san`).
    pub extra_sans: Vec<String>,
}

/// `controlPlaneEndpoint` as host and port, before a name replaces the host.
fn endpoint(config: &Config, shape: Shape) -> Result<(String, u16), GenerateError> {
    let api = config
        .frontend(FrontendKind::Apiserver)
        .ok_or_else(|| GenerateError::Config("the config has no apiserver frontend".to_owned()))?;
    let first_vip = || {
        // The first instance's first VIP: with several (dual stack), the first is
        // the endpoint kubeadm writes into every kubeconfig.
        config
            .vrrp
            .first()
            .and_then(|v| v.vips.first())
            .map(|(ip, _)| *ip)
            .ok_or_else(|| GenerateError::Config("the vrrp section has no VIP".to_owned()))
    };
    match shape {
        Shape::VipProxy => {
            let vip = first_vip()?;
            // The listener that serves the VIP: the VIP itself or an unspecified address
            // of its family.
            let port = api
                .listen
                .iter()
                .find(|a| a.ip() == vip || (a.ip().is_unspecified() && a.is_ipv4() == vip.is_ipv4()))
                .map(|a| a.port())
                .ok_or_else(|| {
                    GenerateError::Config(format!(
                        "{}: apiserver.listen has no address that serves the VIP {vip} (the VIP itself, or 0.0.0.0 / [::])",
                        config.source.display()
                    ))
                })?;
            Ok((vip.to_string(), port))
        }
        Shape::VipOnly => {
            let vip = first_vip()?;
            let port = match config.vrrp.first().map(|v| &v.track) {
                Some(Track::Backend(id)) => config.backend(*id).map(|b| b.addr.port()),
                _ => None,
            }
            .unwrap_or(crate::config::DEFAULT_APISERVER_PORT);
            Ok((vip.to_string(), port))
        }
        Shape::Dns => {
            let dns = config
                .dns
                .as_ref()
                .ok_or_else(|| GenerateError::Config("the config has no dns section".to_owned()))?;
            // Clients reach the apiservers themselves: the masters' port.
            let port = api
                .backends
                .first()
                .map(|b| b.addr.port())
                .unwrap_or(crate::config::DEFAULT_APISERVER_PORT);
            Ok((dns_host(&dns.name), port))
        }
        Shape::LocalProxy => {
            let local = api
                .listen
                .iter()
                .map(|a| reachable_locally(*a))
                .find(|a| a.ip().is_loopback())
                .or_else(|| api.listen.first().copied())
                .ok_or_else(|| GenerateError::Config("apiserver.listen is empty".to_owned()))?;
            Ok((local.ip().to_string(), local.port()))
        }
    }
}

/// A DNS name as kubeadm and certificates write it: without the trailing dot.
fn dns_host(name: &hickory_proto::rr::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_owned()
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Generates the fragment (see the module docs).
pub fn generate(config: &Config, opts: &KubeadmOptions) -> Result<String, GenerateError> {
    let shape = Shape::of(config);
    for name in opts.endpoint.iter().chain(&opts.extra_sans) {
        let ok = rustls_pki_types::ServerName::try_from(name.as_str()).is_ok()
            && !name.contains(':')
            || name.parse::<IpAddr>().is_ok();
        if !ok {
            return Err(GenerateError::Flag {
                flag: if Some(name) == opts.endpoint.as_ref() {
                    "endpoint"
                } else {
                    "san"
                },
                value: name.clone(),
                message: "expected a DNS name or an IP address".to_owned(),
            });
        }
    }
    let (host, port) = endpoint(config, shape)?;
    let endpoint_host = opts.endpoint.clone().unwrap_or_else(|| host.clone());
    let mut sans: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if !sans.contains(&s) {
            sans.push(s);
        }
    };
    if let Some(name) = &opts.endpoint {
        add(name.clone());
    }
    for (vip, _) in config.vrrp.iter().flat_map(|v| &v.vips) {
        add(vip.to_string());
    }
    if let Some(dns) = &config.dns {
        // The name clients use (in the DNS shape the endpoint; beside a VIP, another
        // way in).
        add(dns_host(&dns.name));
    }
    if shape == Shape::LocalProxy {
        add(host.clone());
    }
    for s in &opts.extra_sans {
        add(s.clone());
    }
    // An etcd frontend on a VIP: etcd's server certificate must name it.
    let etcd_sans: Vec<String> = config
        .frontend(FrontendKind::Etcd)
        .map(|f| {
            f.listen
                .iter()
                .map(|a| a.ip())
                .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
                .map(|ip| ip.to_string())
                .collect()
        })
        .unwrap_or_default();

    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(
        w,
        "# kubeadm ClusterConfiguration fragment for apivip's {shape} shape, made from {}.",
        config.source.display()
    );
    let _ = writeln!(w, "# {}.", shape.describe());
    let _ = writeln!(
        w,
        "# Merge these keys into the ClusterConfiguration you pass to"
    );
    let _ = writeln!(
        w,
        "# `kubeadm init --config` (kubernetesVersion, networking and the rest are yours)."
    );
    match opts.api_version {
        ApiVersion::V1beta4 => {
            let _ = writeln!(w, "# kubeadm.k8s.io/v1beta4 needs kubeadm 1.31 or later; --api-version v1beta3 for older.");
        }
        ApiVersion::V1beta3 => {
            let _ = writeln!(w, "# kubeadm.k8s.io/v1beta3: kubeadm 1.22 and later (deprecated from 1.31: prefer v1beta4).");
        }
    }
    let _ = writeln!(w, "apiVersion: {}", opts.api_version.as_str());
    let _ = writeln!(w, "kind: ClusterConfiguration");
    match shape {
        Shape::VipProxy => {
            let _ = writeln!(
                w,
                "# apivip's proxy on the VIP; every kube-apiserver still listens on :6443."
            );
        }
        Shape::VipOnly => {
            let _ = writeln!(w, "# The VIP on the node whose kube-apiserver is ready; it answers on the VIP itself.");
        }
        Shape::LocalProxy => {
            let _ = writeln!(
                w,
                "# apivip on every node (workers too) as a local proxy to the masters."
            );
        }
        Shape::Dns => {
            let _ = writeln!(
                w,
                "# A name that apivip on every master keeps pointing at the ready apiservers."
            );
        }
    }
    let _ = writeln!(
        w,
        "controlPlaneEndpoint: {}",
        quoted(&host_port(&endpoint_host, port))
    );
    let _ = writeln!(w, "apiServer:");
    let _ = writeln!(w, "  certSANs:");
    for s in &sans {
        let _ = writeln!(w, "    - {}", quoted(s));
    }
    if !etcd_sans.is_empty() {
        let _ = writeln!(w, "etcd:");
        let _ = writeln!(w, "  local:");
        let _ = writeln!(
            w,
            "    # apivip's etcd frontend listens here: etcd's certificate must name it."
        );
        let _ = writeln!(w, "    serverCertSANs:");
        for s in &etcd_sans {
            let _ = writeln!(w, "      - {}", quoted(s));
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::test_config as config;
    use serde_json::{json, Value};

    fn fragment(yaml: &str, opts: &KubeadmOptions) -> Value {
        let text = generate(&config(yaml), opts).unwrap();
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{text}\n{e}"))
    }

    const VRRP: &str = "vrrp: {interface: eth0, address: 198.18.0.11, vrid: 51, vips: [198.18.0.5/24], priority: 150";

    #[test]
    fn vip_proxy_endpoint_is_the_vip_on_the_proxy_port() {
        let yaml = format!("backends: [{{name: m1, address: 198.18.0.11}}]\n{VRRP}}}\n");
        let f = fragment(&yaml, &KubeadmOptions::default());
        assert_eq!(f["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(f["kind"], "ClusterConfiguration");
        assert_eq!(f["controlPlaneEndpoint"], "198.18.0.5:8443");
        assert_eq!(f["apiServer"]["certSANs"], json!(["198.18.0.5"]));
        assert!(f.get("etcd").is_none());
    }

    #[test]
    fn vip_only_endpoint_is_the_vip_on_the_apiserver_port() {
        let yaml = format!("backends: [{{name: m1, address: 198.18.0.11}}]\napiserver: {{listen: []}}\n{VRRP}, track: 'backend:m1'}}\n");
        let opts = KubeadmOptions {
            api_version: ApiVersion::V1beta3,
            endpoint: Some("api.cluster.example".to_owned()),
            extra_sans: vec!["198.18.0.6".to_owned()],
        };
        let f = fragment(&yaml, &opts);
        assert_eq!(f["apiVersion"], "kubeadm.k8s.io/v1beta3");
        assert_eq!(f["controlPlaneEndpoint"], "api.cluster.example:6443");
        assert_eq!(
            f["apiServer"]["certSANs"],
            json!(["api.cluster.example", "198.18.0.5", "198.18.0.6"])
        );
    }

    #[test]
    fn local_proxy_endpoint_is_loopback() {
        let f = fragment(
            "backends: [{address: 198.18.0.11}]\napiserver: {listen: 127.0.0.1:8443}\n",
            &KubeadmOptions::default(),
        );
        assert_eq!(f["controlPlaneEndpoint"], "127.0.0.1:8443");
        assert_eq!(f["apiServer"]["certSANs"], json!(["127.0.0.1"]));
        let f = fragment(
            "backends: [{address: 2001:db8::11}]\napiserver: {listen: '[::1]:7443'}\n",
            &KubeadmOptions::default(),
        );
        assert_eq!(f["controlPlaneEndpoint"], "[::1]:7443");
    }

    #[test]
    fn dns_endpoint_is_the_name_on_the_apiserver_port() {
        let yaml = "backends: [{name: m1, address: 198.18.0.11}, {name: m2, address: 198.18.0.12}]\napiserver: {listen: []}\ndns: {servers: [198.18.0.53], zone: cluster.example., name: api.cluster.example., tsig: {key: k., secret_file: /nonexistent/dns.key}}\n";
        let f = fragment(yaml, &KubeadmOptions::default());
        assert_eq!(f["controlPlaneEndpoint"], "api.cluster.example:6443");
        assert_eq!(f["apiServer"]["certSANs"], json!(["api.cluster.example"]));
        let text = generate(&config(yaml), &KubeadmOptions::default()).unwrap();
        assert!(text.contains("apivip's dns shape"), "{text}");
    }

    /// Beside a VIP, the DNS name is another way in: the endpoint stays the VIP, the
    /// name joins the certificate's names.
    #[test]
    fn dns_beside_a_vip_adds_the_name_to_the_sans() {
        let yaml = format!("backends: [{{name: m1, address: 198.18.0.11}}]\n{VRRP}}}\ndns: {{servers: [198.18.0.53], zone: cluster.example., name: api.cluster.example., tsig: {{key: k., secret_file: /nonexistent/dns.key}}}}\n");
        let f = fragment(&yaml, &KubeadmOptions::default());
        assert_eq!(f["controlPlaneEndpoint"], "198.18.0.5:8443");
        assert_eq!(
            f["apiServer"]["certSANs"],
            json!(["198.18.0.5", "api.cluster.example"])
        );
    }

    #[test]
    fn etcd_on_the_vip_gets_a_server_san() {
        let yaml = format!(
            "backends: [{{name: m1, address: 198.18.0.11}}]\netcd: {{listen: 198.18.0.5:2379}}\n{VRRP}}}\n"
        );
        let f = fragment(&yaml, &KubeadmOptions::default());
        assert_eq!(f["etcd"]["local"]["serverCertSANs"], json!(["198.18.0.5"]));
    }

    #[test]
    fn ipv6_vip_is_bracketed_and_names_are_checked() {
        let yaml = "backends: [{name: m1, address: 2001:db8::11}]\napiserver: {listen: '[::]:8443'}\nvrrp: {interface: eth0, address: 2001:db8::11, vrid: 51, vips: [2001:db8::5/64]}\n";
        let f = fragment(yaml, &KubeadmOptions::default());
        assert_eq!(f["controlPlaneEndpoint"], "[2001:db8::5]:8443");
        let bad = KubeadmOptions {
            endpoint: Some("not a name".to_owned()),
            ..KubeadmOptions::default()
        };
        assert!(matches!(
            generate(&config(yaml), &bad),
            Err(GenerateError::Flag {
                flag: "endpoint",
                ..
            })
        ));
        // A proxy that does not listen where the VIP is: no endpoint to give.
        let yaml = format!("backends: [{{name: m1, address: 198.18.0.11}}]\napiserver: {{listen: 127.0.0.1:8443}}\n{VRRP}}}\n");
        assert!(matches!(
            generate(&config(&yaml), &KubeadmOptions::default()),
            Err(GenerateError::Config(_))
        ));
    }
}
