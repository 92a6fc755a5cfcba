//! `apivip config`, `apivip manifest`, `apivip kubeadm-config`: flags in, the pure
//! generators of `apivip::generate` in between, text on stdout, what was detected and
//! every warning on stderr.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use apivip::config::{self, Config, MissingFiles};
use apivip::generate::{self, config as genconfig, kubeadm, manifest, Shape};

/// `apivip config`.
#[derive(clap::Args)]
pub(crate) struct ConfigArgs {
    /// Every control-plane node, the same on every node: ADDRESS or NAME=ADDRESS,
    /// comma-separated (ADDRESS: IP, IP:PORT or [IPv6]:PORT; unnamed ones are master-N).
    #[arg(long)]
    masters: String,
    /// The virtual IP with its prefix length, e.g. 198.18.0.5/24 (not for local-proxy).
    #[arg(long)]
    vip: Option<String>,
    /// vip-proxy (VIP + proxy on :8443), vip-only (the apiserver answers on VIP:6443),
    /// local-proxy (127.0.0.1 on every node, no VIP) or dns (no VIP: a DNS name follows
    /// the ready masters, for masters without a shared L2 segment).
    #[arg(long, default_value = "vip-proxy")]
    shape: Shape,
    /// The VIP's interface (default: detected: the one holding this master's address,
    /// else the VIP's subnet).
    #[arg(long)]
    interface: Option<String>,
    /// This node's address on that interface, the adverts' source (default: detected).
    #[arg(long)]
    address: Option<IpAddr>,
    /// Which master this node is, by name or address (default: the master whose
    /// address is on this node).
    #[arg(long)]
    node: Option<String>,
    /// Send VRRP adverts to the other masters by unicast (for networks without multicast).
    #[arg(long)]
    unicast: bool,
    /// Add an etcd frontend, checked over mTLS with kubeadm's health-check certificate.
    #[arg(long)]
    etcd: bool,
    /// VRRP virtual router id: the same on every master, unique on the segment.
    #[arg(long, default_value_t = genconfig::DEFAULT_VRID)]
    vrid: u8,
    /// This node's VRRP priority (default: 150 for the first master, then 140, 130, ...).
    #[arg(long)]
    priority: Option<u8>,
    /// VRRP version: 3, or 2 to run beside keepalived while migrating.
    #[arg(long, default_value_t = 3)]
    vrrp_version: u8,
    /// VRRPv2 PASS authentication, as keepalived's auth_pass (with --vrrp-version 2).
    #[arg(long)]
    auth_pass: Option<String>,
    /// The proxy's port (vip-proxy and local-proxy).
    #[arg(long, default_value_t = genconfig::DEFAULT_PORT)]
    port: u16,
    /// The cluster's PKI directory (kubeadm's certificatesDir).
    #[arg(long, default_value = genconfig::DEFAULT_PKI)]
    pki: String,
    /// dns shape: the name that follows the ready masters, e.g. api.cluster.example.
    #[arg(long)]
    dns_name: Option<String>,
    /// dns shape: the name's zone (default: the name without its first label).
    #[arg(long)]
    dns_zone: Option<String>,
    /// dns shape: the zone's primary server, then fallbacks (IP or IP:PORT,
    /// comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    dns_server: Vec<String>,
    /// dns shape: the TSIG key's name, as in named.conf.
    #[arg(long, default_value = genconfig::DEFAULT_DNS_KEY)]
    dns_key: String,
    /// dns shape: the file with the TSIG secret (mode 0600).
    #[arg(long, default_value = genconfig::DEFAULT_DNS_KEY_FILE)]
    dns_key_file: String,
}

/// `apivip manifest`.
#[derive(clap::Args)]
pub(crate) struct ManifestArgs {
    /// This node's config file.
    #[arg(short, long, default_value = "/etc/apivip/apivip.yaml")]
    config: PathBuf,
    /// The image, built from deploy/Containerfile.
    #[arg(long, default_value = concat!("localhost/apivip:", env!("CARGO_PKG_VERSION")))]
    image: String,
}

/// `apivip kubeadm-config`.
#[derive(clap::Args)]
pub(crate) struct KubeadmArgs {
    /// This node's config file.
    #[arg(short, long, default_value = "/etc/apivip/apivip.yaml")]
    config: PathBuf,
    /// kubeadm's config API: v1beta4 (kubeadm 1.31+) or v1beta3 (1.22+).
    #[arg(long, default_value = "v1beta4")]
    api_version: kubeadm::ApiVersion,
    /// A DNS name for controlPlaneEndpoint instead of the address (it must resolve to
    /// the VIP, or to 127.0.0.1 on every node for local-proxy); added to certSANs.
    #[arg(long)]
    endpoint: Option<String>,
    /// Another name or address for apiServer.certSANs (repeatable).
    #[arg(long)]
    san: Vec<String>,
}

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("apivip {what}: {e}");
    ExitCode::FAILURE
}

pub(crate) fn config(args: ConfigArgs) -> ExitCode {
    let built = (|| {
        let masters = genconfig::parse_masters(&args.masters)?;
        let vip = args.vip.as_deref().map(genconfig::parse_vip).transpose()?;
        let mut opts = genconfig::ConfigOptions::new(masters, vip);
        opts.shape = args.shape;
        opts.interface = args.interface;
        opts.address = args.address;
        opts.node = args.node;
        opts.unicast = args.unicast;
        opts.etcd = args.etcd;
        opts.vrid = args.vrid;
        opts.priority = args.priority;
        opts.vrrp_version = args.vrrp_version;
        opts.auth_pass = args.auth_pass;
        opts.port = args.port;
        opts.pki = args.pki;
        opts.dns_name = args.dns_name;
        opts.dns_zone = args.dns_zone;
        opts.dns_servers = args.dns_server;
        opts.dns_key = args.dns_key;
        opts.dns_key_file = args.dns_key_file;
        genconfig::generate(&opts, &generate::detect::facts())
    })();
    let generated = match built {
        Ok(g) => g,
        Err(e) => return fail("config", e),
    };
    for line in &generated.detected {
        eprintln!("apivip config: {line}");
    }
    // Never print a config that `apivip check` would refuse.
    let target = Path::new("/etc/apivip/apivip.yaml");
    match Config::from_yaml_with(&generated.text, target, MissingFiles::Warn) {
        Ok((_, warnings)) => {
            for w in warnings {
                eprintln!("apivip config: note: {w}");
            }
        }
        Err(e) => {
            for line in e.lines() {
                eprintln!("apivip config: generated an invalid config (a bug): {line}");
            }
            return ExitCode::FAILURE;
        }
    }
    print!("{}", generated.text);
    ExitCode::SUCCESS
}

/// Loads this node's config for a generator: a missing certificate is a warning.
fn load(what: &str, path: &Path) -> Result<Config, ExitCode> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match config::load_with(&path, MissingFiles::Warn) {
        Ok((c, warnings)) => {
            for w in warnings {
                eprintln!("{}: warning: {w}", path.display());
            }
            Ok(c)
        }
        Err(e) => {
            for line in e.lines() {
                eprintln!("{line}");
            }
            Err(fail(what, "the config is invalid (see above)"))
        }
    }
}

pub(crate) fn manifest(args: ManifestArgs) -> ExitCode {
    let config = match load("manifest", &args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = manifest::ManifestOptions {
        image: args.image,
        config_path: config.source.clone(),
    };
    match manifest::generate(&config, &opts) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail("manifest", e),
    }
}

pub(crate) fn kubeadm_config(args: KubeadmArgs) -> ExitCode {
    let config = match load("kubeadm-config", &args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let opts = kubeadm::KubeadmOptions {
        api_version: args.api_version,
        endpoint: args.endpoint,
        extra_sans: args.san,
    };
    match kubeadm::generate(&config, &opts) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail("kubeadm-config", e),
    }
}
