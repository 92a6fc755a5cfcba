//! The `apivip` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use apivip::config::{self, Config, LogFormat};
use apivip::health::checker;
use apivip::supervisor;

mod demo;

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
    /// Print the version and the commit it was built from.
    Version,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!(
                "apivip {} (commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("APIVIP_COMMIT")
            );
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
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

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn load(path: &std::path::Path) -> Result<Config, Vec<String>> {
    let config = config::load(path).map_err(|e| e.lines())?;
    // Building the probers reads every certificate and key, so bad PEM is caught here.
    checker::build_probers(&config).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    Ok(config)
}

fn check(path: &std::path::Path) -> ExitCode {
    match load(path) {
        Ok(c) => {
            let summary: Vec<String> = c
                .frontends
                .iter()
                .map(|f| {
                    let listen: Vec<String> = f.listen.iter().map(|a| a.to_string()).collect();
                    format!(
                        "{} on {} -> {} backends",
                        f.name,
                        listen.join(","),
                        f.backends.len()
                    )
                })
                .collect();
            let mut summary = summary;
            if let Some(v) = &c.vrrp {
                let vips: Vec<String> = v.vips.iter().map(|(a, p)| format!("{a}/{p}")).collect();
                summary.push(format!(
                    "vrrp v{} vrid {} on {} for {} at priority {}",
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
            println!("{}: ok ({})", path.display(), summary.join("; "));
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
    let config = match load(path) {
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
    raise_fd_limit(&config);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("apivip: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(supervisor::run(config));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
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

/// Raises the soft descriptor limit to the hard one (systemd's default soft limit is
/// 1024) and warns when the configured connection limits could exhaust it: each proxied
/// connection needs two sockets and, while moving bulk data, a pipe.
fn raise_fd_limit(config: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let wanted: u64 = config
        .frontends
        .iter()
        .map(|f| f.max_connections as u64 * 2)
        .sum::<u64>()
        + 256;
    if wanted > limit {
        tracing::warn!(
            fd_limit = limit,
            wanted,
            "the descriptor limit is below what the connection limits need (2 per connection); \
             lower max_connections or raise LimitNOFILE"
        );
    } else {
        tracing::debug!(fd_limit = limit, "descriptor limit");
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
