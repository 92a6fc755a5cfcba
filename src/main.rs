//! The `apivip` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use apivip::admin::client;
use apivip::config::{self, Config, LogFormat};
use apivip::health::checker;
use apivip::health::probe::Prober;
use apivip::supervisor;

mod demo;
mod generate_cmd;

/// apivip keeps a Kubernetes control-plane endpoint alive.
#[derive(Parser)]
#[command(name = "apivip", version, about, disable_version_flag = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// Config file.
        #[arg(short, long, default_value = "/etc/apivip/apivip.yaml")]
        config: PathBuf,
    },
    /// Validate a config file: exit 0, or print one line per error and exit 1.
    Check {
        /// Config file.
        #[arg(short, long, default_value = "/etc/apivip/apivip.yaml")]
        config: PathBuf,
    },
    /// Print a complete, commented config for this node (detects the interface, this
    /// node's address and which master it is; says what it detected on stderr).
    Config(Box<generate_cmd::ConfigArgs>),
    /// Print a static pod manifest for /etc/kubernetes/manifests/ from this node's config.
    Manifest(generate_cmd::ManifestArgs),
    /// Print the kubeadm ClusterConfiguration fragment (controlPlaneEndpoint, certSANs)
    /// for this node's config.
    KubeadmConfig(generate_cmd::KubeadmArgs),
    /// Print the version and the commit it was built from.
    Version,
    /// Show the local daemon's state: VIP holder, priority, peers, backends, events.
    ///
    /// Exit codes: 0 running and ready; 3 not running (or its admin endpoint is off);
    /// 4 running but unhealthy or not ready; 1 any other error.
    Status {
        #[command(flatten)]
        target: AdminTarget,
        /// Print the /status JSON document instead.
        #[arg(long)]
        json: bool,
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Give the VIP away without a gap and stay a backup at priority 1 until `resume`
    /// (maintenance of this master without stopping apivip).
    Handover {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// End the maintenance started by `handover`: restore the priority.
    Resume {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Stop sending new connections to a master; its connections close after
    /// not_ready_grace.
    Drain {
        /// The backend's name (`backends[].name`).
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Send new connections to a drained master again.
    Undrain {
        /// The backend's name (`backends[].name`).
        name: String,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Reload the running daemon's config file (as SIGHUP does) and print what changed,
    /// or every error: a bad file changes nothing. Exit 0 applied, 1 refused.
    Reload {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Run a local demo: three imitation apiservers on loopback and apivip in front.
    Demo {
        /// Loopback mode: address of the demo endpoint (port 0 picks a free one).
        /// Implies loopback mode.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Run the loopback demo even as root (root otherwise gets the VIP demo).
        #[arg(long)]
        loopback: bool,
        /// Directory for the demo's certificates and config (a temporary one if unset).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Which daemon to talk to.
#[derive(clap::Args)]
struct AdminTarget {
    /// Config file whose `admin.listen` to use (default: the standard one if it
    /// exists, else 127.0.0.1:9469).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The admin endpoint's address (overrides the config).
    #[arg(long)]
    admin: Option<std::net::SocketAddr>,
}

impl AdminTarget {
    /// The admin address: `--admin`, else the config's `admin.listen` (a loopback
    /// entry first: controls are refused from elsewhere), else the default. An error
    /// carries the exit code: 3 when the endpoint is off, 1 for an unreadable config.
    fn resolve(&self) -> Result<std::net::SocketAddr, (u8, String)> {
        if let Some(a) = self.admin {
            return Ok(a);
        }
        let default_path = PathBuf::from("/etc/apivip/apivip.yaml");
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None => default_path.exists().then_some(default_path),
        };
        // Only `admin.listen`, leniently: the file may be mid-edit (`apivip reload`
        // must reach the daemon to report its errors).
        let listen = path
            .and_then(|p| config::admin::listen_hint(&p))
            .unwrap_or_else(|| config::DEFAULT_ADMIN_LISTEN.parse().into_iter().collect());
        let chosen = listen
            .iter()
            .find(|a| a.ip().is_loopback())
            .or_else(|| listen.first())
            .copied();
        let Some(mut addr) = chosen else {
            return Err((
                client::EXIT_NOT_RUNNING,
                "the admin endpoint is off in this config (admin.listen: [])".to_owned(),
            ));
        };
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        Ok(addr)
    }
}

/// No panic goes unnoticed: a panic anywhere (the election thread, a proxy task the
/// runtime would otherwise catch and drop, a checker) is logged and aborts the
/// process, so that the service manager restarts it and the restart removes a VIP
/// this run may hold. The same as `panic = "abort"`, without building every crate
/// twice for the tests.
fn abort_on_panic() {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        print(info);
        tracing::error!(panic = %info, "a bug: apivip aborts so that it is restarted");
        std::process::abort();
    }));
}

fn main() -> ExitCode {
    abort_on_panic();
    let cli = Cli::parse();
    match cli.command {
        Command::Status {
            target,
            json,
            watch,
        } => admin_cli(&target, |addr| status(addr, json, watch)),
        Command::Handover { target } => admin_cli(&target, |addr| control(addr, "handover", None)),
        Command::Resume { target } => admin_cli(&target, |addr| control(addr, "resume", None)),
        Command::Reload { target } => admin_cli(&target, |addr| control(addr, "reload", None)),
        Command::Drain { name, target } => admin_cli(&target, |addr| {
            control(
                addr,
                "drain",
                Some(serde_json::json!({ "backend": name }).to_string()),
            )
        }),
        Command::Undrain { name, target } => admin_cli(&target, |addr| {
            control(
                addr,
                "undrain",
                Some(serde_json::json!({ "backend": name }).to_string()),
            )
        }),
        Command::Version => {
            println!(
                "apivip {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("APIVIP_COMMIT")
            );
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Config(args) => generate_cmd::config(*args),
        Command::Manifest(args) => generate_cmd::manifest(args),
        Command::KubeadmConfig(args) => generate_cmd::kubeadm_config(args),
        Command::Run { config } => run(&config),
        Command::Demo {
            listen,
            loopback,
            dir,
        } => {
            init_logging(LogFormat::Text, "info");
            let root = nix::unistd::geteuid().is_root();
            let vip_mode = root && listen.is_none() && !loopback;
            if !root && listen.is_none() && !loopback {
                println!("apivip demo: not root, so the loopback demo (the VIP demo needs root for network namespaces)");
            }
            let listen = listen.unwrap_or_else(|| ([127, 0, 0, 1], 8443).into());
            let result = runtime().map_err(|e| e.to_string()).and_then(|rt| {
                let r = if vip_mode {
                    rt.block_on(demo::run_vip(dir))
                } else {
                    rt.block_on(demo::run(listen, dir))
                };
                // A blocking read of stdin may still be pending: do not wait for it.
                rt.shutdown_background();
                r
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("apivip demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs an admin-endpoint command on a small runtime.
fn admin_cli<F, Fut>(target: &AdminTarget, f: F) -> ExitCode
where
    F: FnOnce(std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = u8>,
{
    let addr = match target.resolve() {
        Ok(a) => a,
        Err((code, e)) => {
            eprintln!("apivip: {e}");
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("apivip: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(rt.block_on(f(addr)))
}

/// Prints an admin request's failure; returns the exit code.
fn client_failure(e: &client::ClientError) -> u8 {
    eprintln!("apivip: {e}");
    match e {
        client::ClientError::NotRunning { .. } => client::EXIT_NOT_RUNNING,
        _ => 1,
    }
}

async fn status(addr: std::net::SocketAddr, json: bool, watch: bool) -> u8 {
    loop {
        let got = client::request(
            addr,
            http::Method::GET,
            "/status",
            None,
            std::time::Duration::from_secs(10),
        )
        .await;
        let code = match got {
            Err(e) => client_failure(&e),
            Ok((200, body)) => {
                match serde_json::from_str::<apivip::admin::status::StatusDoc>(&body) {
                    Ok(doc) => {
                        let healthy = client::request(
                            addr,
                            http::Method::GET,
                            "/healthz",
                            None,
                            std::time::Duration::from_secs(5),
                        )
                        .await
                        .is_ok_and(|(c, _)| c == 200);
                        if watch {
                            // Clear the screen and home the cursor: refresh in place.
                            print!("\x1b[2J\x1b[H");
                        }
                        if json {
                            println!("{}", body.trim_end());
                        } else {
                            print!("{}", client::render(&doc));
                            if !healthy {
                                println!("\nUNHEALTHY: /healthz fails (the election thread or the runtime is stalled)");
                            }
                        }
                        if doc.ready && healthy {
                            0
                        } else {
                            client::EXIT_UNHEALTHY
                        }
                    }
                    Err(e) => {
                        eprintln!("apivip: {addr}/status is not a status document this version reads: {e}");
                        1
                    }
                }
            }
            Ok((code, body)) => {
                eprintln!("apivip: {addr}/status answered {code}: {}", body.trim_end());
                client::EXIT_UNHEALTHY
            }
        };
        if !watch {
            return code;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return code,
        }
    }
}

async fn control(addr: std::net::SocketAddr, what: &str, body: Option<String>) -> u8 {
    let got = client::request(
        addr,
        http::Method::POST,
        &format!("/control/{what}"),
        body,
        std::time::Duration::from_secs(60),
    )
    .await;
    match got {
        Err(e) => {
            let code = client_failure(&e);
            if what == "reload" && code == client::EXIT_NOT_RUNNING {
                eprintln!("apivip: if the edit changed admin.listen, the daemon still listens on the old address: pass --admin OLD-ADDRESS, or send SIGHUP (systemctl reload apivip)");
            }
            code
        }
        Ok((200, body)) => {
            println!("{}", body.trim_end());
            0
        }
        Ok((code, body)) => {
            eprintln!("apivip {what}: refused ({code}): {}", body.trim_end());
            1
        }
    }
}

/// The daemon's runtime for everything but the connections (health checks, the admin
/// endpoint, reloads, DNS): one worker thread, as that work is light and must not wait
/// behind traffic, which runs on [`apivip::proxy::workers`].
fn control_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("apivip-control")
        .enable_all()
        .build()
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Loads and validates the config and builds the probers (once: `run` hands them to
/// the supervisor). Building them reads every certificate and key, so bad PEM is
/// caught here.
fn load(path: &std::path::Path) -> Result<(Config, Vec<Prober>), Vec<String>> {
    let config = config::load(path).map_err(|e| e.lines())?;
    let probers =
        checker::build_probers(&config).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    Ok((config, probers))
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok((c, _)) => {
            let summary: Vec<String> = c
                .frontends
                .iter()
                .map(|f| {
                    let listen: Vec<String> = f.listen.iter().map(|a| a.to_string()).collect();
                    format!(
                        "{} on {} -> {} backends",
                        f.kind,
                        listen.join(","),
                        f.backends.len()
                    )
                })
                .collect();
            let mut summary = summary;
            for v in &c.vrrp {
                let vips: Vec<String> = v.vips.iter().map(|(a, p)| format!("{a}/{p}")).collect();
                // The name only when there are several (the summary of one is unchanged).
                let name = if c.vrrp.len() > 1 {
                    format!(" {}", v.name)
                } else {
                    String::new()
                };
                let group = v
                    .sync_group
                    .as_ref()
                    .map(|g| format!(" in sync group {g}"))
                    .unwrap_or_default();
                summary.push(format!(
                    "vrrp{name} v{} vrid {} on {} for {} at priority {}{group}",
                    match v.instance.version {
                        apivip::vrrp::machine::VersionConfig::V3 { .. } => 3,
                        apivip::vrrp::machine::VersionConfig::V2 { .. } => 2,
                    },
                    v.instance.vrid,
                    v.interface,
                    vips.join(","),
                    v.instance.base_priority.get()
                ));
            }
            if let Some(d) = &c.dns {
                let servers: Vec<String> = d.servers.iter().map(|s| s.to_string()).collect();
                summary.push(format!(
                    "dns {} in zone {} via {} (key {}, ttl {})",
                    d.name,
                    d.zone,
                    servers.join(","),
                    d.tsig.key,
                    apivip::units::format_duration(d.ttl)
                ));
            }
            if !c.notify.hooks.is_empty() {
                let hooks: Vec<&str> = c.notify.hooks.iter().map(|h| h.name.as_str()).collect();
                summary.push(format!(
                    "notify: {} (timeout {})",
                    hooks.join(", "),
                    apivip::units::format_duration(c.notify.timeout)
                ));
            }
            println!("{}: ok ({})", path.display(), summary.join("; "));
            for w in c.warning_lines() {
                eprintln!("{w}");
            }
            ExitCode::SUCCESS
        }
        Err(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let (config, probers) = match load(path) {
        Ok(c) => c,
        Err(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
            return ExitCode::FAILURE;
        }
    };
    init_logging(config.log.format, &config.log.level);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), commit = env!("APIVIP_COMMIT"), config = %path.display(), "starting");
    for w in &config.warnings {
        tracing::warn!(key = %w.path, value = w.value.as_deref().unwrap_or_default(), "config: {}", w.message);
    }
    raise_fd_limit();
    // Ports that need CAP_NET_BIND_SERVICE are bound now; then every capability the
    // config does not need goes, before the runtime creates a thread.
    let prebound = match supervisor::Prebound::bind_privileged(
        &config,
        apivip::privileges::unprivileged_port_start(),
    ) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = drop_privileges(&config, &prebound) {
        tracing::error!("{e}");
        eprintln!("apivip: {e}");
        return ExitCode::FAILURE;
    }
    // Thread-per-core: the connections run on their own workers, everything else on
    // a control runtime of one thread.
    let workers = match apivip::proxy::workers::threads_from_env()
        .and_then(|n| apivip::proxy::workers::Workers::start(n).map_err(|e| e.to_string()))
    {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("cannot start the proxy workers: {e}");
            eprintln!("apivip: cannot start the proxy workers: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        workers = workers.pool().len(),
        "proxy workers started (one runtime per thread)"
    );
    let rt = match control_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("apivip: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(supervisor::run(
        config,
        probers,
        prebound,
        Some(workers.pool()),
    ));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(workers);
    match result {
        Ok(report) => {
            tracing::info!(
                drained = report
                    .open_at_start
                    .saturating_sub(report.closed_at_deadline),
                closed = report.closed_at_deadline,
                "stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// Keeps only the capabilities `config` needs ([`apivip::privileges`]) and logs what
/// was kept; an error means they could not be lowered (apivip then does not start).
fn drop_privileges(config: &Config, prebound: &supervisor::Prebound) -> Result<(), String> {
    use apivip::privileges::{drop_to, names, needed};
    let d = drop_to(&needed(config))
        .map_err(|e| format!("cannot drop capabilities (least privilege): {e}"))?;
    let prebound: Vec<String> = prebound.addrs().iter().map(ToString::to_string).collect();
    tracing::info!(
        kept = %names(&d.kept),
        dropped = %names(&d.dropped),
        bounding_set = if d.bounding_reduced { "reduced to the kept set" } else { "left as started (no CAP_SETPCAP)" },
        bound_before_dropping = %prebound.join(","),
        "capabilities"
    );
    if d.threads > 1 {
        tracing::warn!(
            threads = d.threads,
            "capabilities were lowered with other threads running: those keep theirs"
        );
    }
    Ok(())
}

/// Raises the soft descriptor limit to the hard one (systemd's default soft limit is
/// 1024). The proxy sizes its descriptor budget from the result
/// ([`apivip::proxy::descriptor_budget`]) and warns when the connection limits exceed it.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::debug!(from = soft, to = hard, "raised the descriptor limit");
    }
}

/// Logs to stderr; `RUST_LOG` overrides the configured level.
fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
