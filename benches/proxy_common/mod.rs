//! Shared by the proxy benches that run apivip and HAProxy as child processes on
//! loopback (`proxy_compare`, `scale`), included as `#[path = "proxy_common/mod.rs"] mod proxy_common;`.
//!
//! - environment knobs ([`env_parse`], [`env_flag`]) and pinning with taskset
//!   ([`command`]);
//! - [`Proc`]: a child process killed by PID and reaped when dropped, also on panic,
//!   its output in a log file under the run's temp dir;
//! - ports ([`free_port`], [`wait_listening`]: from /proc/net/tcp, without connecting);
//! - what a process costs: CPU ([`cpu_ticks`], [`cpu_ns`]), VmRSS, descriptors;
//! - the machine's other load ([`OtherLoad`], [`wait_quiet`]);
//! - the run's header ([`version_line`], [`which`], [`raise_fd_limit`]) and report
//!   helpers ([`median`], [`fmt_value`], [`fit_line`]).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Knobs and commands.

pub fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// `program` as a command, pinned to `cpus` with taskset when given (taskset execs
/// the program, so the child's PID is the program's).
pub fn command(program: impl AsRef<std::ffi::OsStr>, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        None => Command::new(program),
    }
}

// ---------------------------------------------------------------------------
// Processes.

/// A child process, killed (by PID) and reaped when dropped, also on panic.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout and stderr in `dir/NAME.log`.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Result<Proc, String> {
        Self::spawn_with(name, cmd, dir, false)
    }

    /// Like [`Proc::spawn`], with `piped`: stdin and stdout are pipes (taken from
    /// `child`), only stderr goes to the log.
    pub fn spawn_with(
        name: &str,
        cmd: &mut Command,
        dir: &Path,
        piped: bool,
    ) -> Result<Proc, String> {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| format!("{name}: log: {e}"))?;
        let err = out.try_clone().map_err(|e| format!("{name}: log: {e}"))?;
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(out);
        }
        let child = cmd
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{name}: cannot start: {e}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the tail of the log if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); log:\n{}",
                self.name,
                tail(&self.log)
            )),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 20 lines of a log.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---------------------------------------------------------------------------
// Ports.

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, so that no
/// connection is made: a backend would count a bare connect as a client).
pub fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

pub fn wait_listening(port: u16, proc: &mut Proc) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        proc.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "{} does not listen on port {port} after 10 s; log:\n{}",
                proc.name,
                tail(&proc.log)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// What a process costs.

/// CPU time (user + system, every thread, dead ones included) of a process, in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Nanoseconds on a CPU of every live thread of `pid`: `se.sum_exec_runtime` (ms, six
/// decimals) of each `/proc/PID/task/TID/sched`. Exact where [`cpu_ticks`] counts whole
/// 10 ms ticks (a 1 % load over 10 s is 10 ticks); threads that exited are missing,
/// which [`cpu_ticks`] still counts. `None` when the kernel has no such file (this
/// kernel's `schedstat` files read 0 or are missing; `sched` works).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0.0;
    let mut any = false;
    for t in rd.flatten() {
        let Ok(text) = std::fs::read_to_string(t.path().join("sched")) else {
            continue;
        };
        let ms = text
            .lines()
            .find(|l| l.starts_with("se.sum_exec_runtime"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(ms) = ms {
            total += ms;
            any = true;
        }
    }
    any.then_some((total * 1e6) as u64)
}

pub fn status_field(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------
// The machine's other load.

/// Busy CPU ticks of the whole machine, from /proc/stat: everything but idle and
/// iowait. Steal counts too: it is time this machine could not use.
pub fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is already in user).
    [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| f.get(i))
        .sum()
}

/// CPU seconds of this process and of its reaped children.
pub fn own_cpu_secs() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let secs = |who| {
        getrusage(who)
            .map(|u| {
                let t =
                    |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
                t(u.user_time()) + t(u.system_time())
            })
            .unwrap_or(0.0)
    };
    secs(UsageWho::RUSAGE_SELF) + secs(UsageWho::RUSAGE_CHILDREN)
}

/// The CPU that processes other than the benchmark's used during a measurement: the
/// machine's busy time minus that of `pids` (the proxy, backends, load generators),
/// this process and its reaped children. Loopback softirq work is charged to the task
/// it interrupts, so it is part of "ours".
pub struct OtherLoad {
    pids: Vec<u32>,
    busy: u64,
    ours: u64,
    own: f64,
    start: Instant,
}

impl OtherLoad {
    pub fn start(pids: Vec<u32>) -> Self {
        let ours = pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
        OtherLoad {
            pids,
            busy: machine_busy_ticks(),
            ours,
            own: own_cpu_secs(),
            start: Instant::now(),
        }
    }

    /// Cores used by others since `start`.
    pub fn cores(&self, tck: f64) -> f64 {
        let busy = machine_busy_ticks().saturating_sub(self.busy) as f64;
        let ours: u64 = self.pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
        let ours = ours.saturating_sub(self.ours) as f64 + (own_cpu_secs() - self.own) * tck;
        let wall = self.start.elapsed().as_secs_f64().max(1e-3);
        ((busy - ours) / tck / wall).max(0.0)
    }
}

/// A measurement is only started on a machine below this load; a measurement during
/// which others used more than this is flagged.
pub const QUIET_CORES: f64 = 0.15;

/// Waits (up to `max`) until the machine is quiet: less than [`QUIET_CORES`] busy over
/// half a second. Returns the wait.
pub fn wait_quiet(tck: f64, max: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let before = machine_busy_ticks();
        std::thread::sleep(Duration::from_millis(500));
        let cores = machine_busy_ticks().saturating_sub(before) as f64 / tck / 0.5;
        if cores < QUIET_CORES || start.elapsed() > max {
            return start.elapsed();
        }
    }
}

// ---------------------------------------------------------------------------
// The run's header.

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The first line `cmd args` prints (stdout, then stderr).
pub fn version_line(cmd: &Path, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_default()
}

/// Raises RLIMIT_NOFILE's soft limit to the hard one (children inherit it); returns the
/// soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
                eprintln!("warning: cannot raise RLIMIT_NOFILE from {soft} to {hard}");
                return soft;
            }
            hard
        }
        Err(_) => 1024,
    }
}

// ---------------------------------------------------------------------------
// Report helpers.

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The least-squares line `y = slope * x + intercept` through `points` (x, y); one
/// point (or all at the same x) gives the line through the origin.
pub fn fit_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = points.len() as f64;
    if points.is_empty() {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= f64::EPSILON * mx.abs().max(1.0) {
        return (mx != 0.0).then(|| (my / mx, 0.0));
    }
    let slope = sxy / sxx;
    Some((slope, my - slope * mx))
}
