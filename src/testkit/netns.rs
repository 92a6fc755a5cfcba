//! The topology helper: a bridge in its own namespace, N master namespaces and one client
//! namespace, each joined to the bridge by a veth pair. Root only.
//!
//! ```text
//!   master 0 (198.18.0.10, 2001:db8::10) --veth--+
//!   master 1 (198.18.0.11, 2001:db8::11) --veth--+-- bridge (own namespace)
//!   client   (198.18.0.100, 2001:db8::100) -veth--+
//! ```
//!
//! Names are unique per topology (`av` + pid + counter, base 36) so tests run in parallel.
//! Processes are started with [`Node::spawn`] (`ip netns exec NS prog args...`, output to a
//! log file, own process group); [`NsProcess`] kills its process group and reaps on drop.
//! [`Topology`]'s `Drop` kills every process it started and anything else left in its
//! namespaces, then deletes the namespaces (which deletes the veths and the bridge), also
//! when the test panicked.
//!
//! Impairments: [`Topology::cut_link`] / [`Topology::heal_link`] (bridge port down/up) and
//! [`Topology::netem`]. This machine's kernel has no `sch_netem`; there `netem` emulates
//! only `loss N%` with an nftables rule on the bridge (Debian `nftables`), and a delay is an
//! `Unsupported` error: check [`netem_supported`] first.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Prefix length of the IPv4 subnet.
pub const V4_PREFIX: u8 = 24;
/// Prefix length of the IPv6 subnet.
pub const V6_PREFIX: u8 = 64;

/// IPv4 address of master `i`: 198.18.0.(10+i).
pub fn master_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        198,
        18,
        0,
        10 + u8::try_from(i).expect("at most 89 masters"),
    )
}

/// IPv6 address of master `i`: 2001:db8::(10+i) (hex digits, as written).
pub fn master_v6(i: usize) -> Ipv6Addr {
    // "2001:db8::10" is 0x10: keep the decimal-looking spelling of the brief.
    let last: u16 = u16::from_str_radix(&(10 + i).to_string(), 16).expect("small index");
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)
}

/// IPv4 address of the client: 198.18.0.100.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// IPv6 address of the client: 2001:db8::100.
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command to completion; error (with its stderr) unless it exits 0.
fn run(cmd: &mut Command) -> io::Result<Output> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

fn ip(args: &[&str]) -> io::Result<Output> {
    run(Command::new("ip").args(args))
}

// ---------------------------------------------------------------------------------------
// Processes

struct ProcState {
    child: Child,
    status: Option<ExitStatus>,
}

impl ProcState {
    /// Reaps without blocking; the exit status once it has exited.
    fn poll(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// SIGKILL to the whole process group (the child leads it), then reap.
    fn kill_and_reap(&mut self) {
        if self.poll().ok().flatten().is_some() {
            // The leader is reaped; its pid (and pgid) may be reused: touch nothing.
            return;
        }
        // The leader is not reaped, so its pid cannot be reused: the group id is ours.
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = kill(pid, Signal::SIGKILL);
        if let Ok(status) = self.child.wait() {
            self.status = Some(status);
        }
    }
}

type ProcRegistry = Arc<Mutex<Vec<Arc<Mutex<ProcState>>>>>;

/// A process started in a namespace. Drop kills its process group (SIGKILL) and reaps it.
pub struct NsProcess {
    name: String,
    pid: u32,
    log_path: PathBuf,
    state: Arc<Mutex<ProcState>>,
}

impl std::fmt::Debug for NsProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsProcess")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("log", &self.log_path)
            .finish()
    }
}

impl NsProcess {
    /// The process id (the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything it has written so far (stdout and stderr), for printing on failure.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {:?}: {e}>", self.log_path))
    }

    /// Sends `signal` to the process (not its group), unless it has already been reaped.
    pub fn kill(&self, signal: Signal) -> io::Result<()> {
        let mut st = lock(&self.state);
        if st.poll()?.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} (pid {}) has already exited", self.name, self.pid),
            ));
        }
        kill(Pid::from_raw(self.pid as i32), signal).map_err(io::Error::from)
    }

    /// SIGKILL to its process group, then reap. Idempotent.
    pub fn kill_hard(&self) {
        lock(&self.state).kill_and_reap();
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> bool {
        matches!(lock(&self.state).poll(), Ok(None))
    }

    /// Its exit status if it has exited (reaps it).
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        lock(&self.state).poll()
    }

    /// Waits up to `timeout` for it to exit; `None` if it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `timeout` until its log contains `needle`; false on timeout or when it
    /// exits first (check [`NsProcess::log`]).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if !self.is_running() || Instant::now() >= deadline {
                return self.log().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

// ---------------------------------------------------------------------------------------
// Nodes

/// One namespace joined to the bridge: a master or the client.
#[derive(Clone)]
pub struct Node {
    /// Namespace name (`ip netns exec NS ...`).
    pub ns: String,
    /// Its interface towards the bridge.
    pub ifname: String,
    /// Its IPv4 address (/24).
    pub ipv4: Ipv4Addr,
    /// Its IPv6 address (/64, nodad).
    pub ipv6: Ipv6Addr,
    procs: ProcRegistry,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("ns", &self.ns)
            .field("ifname", &self.ifname)
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6)
            .finish()
    }
}

impl Node {
    /// Runs `f` on a new thread that has joined this node's network namespace, and
    /// returns what it returns: a socket made there stays in the namespace, usable from
    /// any thread.
    pub fn run_in<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let file = File::open(&path)?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("the thread in the namespace panicked"))?
    }

    /// `ip netns exec NS prog` as a [`Command`], to add arguments and environment.
    pub fn command(&self, prog: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(prog);
        cmd
    }

    /// Starts `prog args...` in this namespace, stdout and stderr appended to `log`, stdin
    /// null, in its own process group. The topology kills it at the latest when dropped.
    pub fn spawn<I, S>(&self, prog: impl AsRef<OsStr>, args: I, log: &Path) -> io::Result<NsProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(prog);
        cmd.args(args);
        self.spawn_command(cmd, log)
    }

    /// Starts a command made by [`Node::command`] (stdio and process group are set here).
    pub fn spawn_command(&self, mut cmd: Command, log: &Path) -> io::Result<NsProcess> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn()?;
        let pid = child.id();
        let state = Arc::new(Mutex::new(ProcState {
            child,
            status: None,
        }));
        lock(&self.procs).push(state.clone());
        Ok(NsProcess {
            name: format!("{:?}", cmd.get_args().nth(3).unwrap_or_default()),
            pid,
            log_path: log.to_path_buf(),
            state,
        })
    }

    /// Runs `args[0] args[1..]` in this namespace to completion (any exit status).
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> io::Result<Output> {
        let (prog, rest) = args
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        self.command(prog).args(rest).stdin(Stdio::null()).output()
    }

    /// Like [`Node::exec`], but an error (with stderr) unless it exits 0.
    pub fn exec_ok<S: AsRef<OsStr>>(&self, args: &[S]) -> io::Result<Output> {
        let (prog, rest) = args
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        run(self.command(prog).args(rest))
    }

    /// One ping (`-c1 -W2`) from this node to `addr`; true if answered.
    pub fn ping(&self, addr: IpAddr) -> bool {
        let addr = addr.to_string();
        self.exec(&["ping", "-n", "-q", "-c1", "-W2", addr.as_str()])
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// The addresses on any interface of this namespace (`ip -j addr`).
    pub fn addresses(&self) -> io::Result<Vec<IpAddr>> {
        let out = ip(&["-j", "-n", &self.ns, "addr", "show"])?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| io::Error::other(format!("ip -j addr: {e}")))?;
        let mut addrs = Vec::new();
        for link in json.as_array().into_iter().flatten() {
            for info in link["addr_info"].as_array().into_iter().flatten() {
                if let Some(a) = info["local"].as_str().and_then(|s| s.parse().ok()) {
                    addrs.push(a);
                }
            }
        }
        Ok(addrs)
    }

    /// Whether this namespace holds `addr`.
    pub fn holds(&self, addr: IpAddr) -> bool {
        self.addresses().is_ok_and(|a| a.contains(&addr))
    }
}

// ---------------------------------------------------------------------------------------
// Packet capture

/// A running `tcpdump -w` in a namespace. Stopped with SIGINT (so the file is complete) on
/// [`Capture::stop`] or drop.
pub struct Capture {
    proc: NsProcess,
    path: PathBuf,
    stopped: bool,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("pid", &self.proc.pid())
            .finish()
    }
}

impl Capture {
    /// The pcap file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// tcpdump's own output (its log file).
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Stops tcpdump with SIGINT and waits for it (SIGKILL after 5 s). Idempotent.
    pub fn stop(&mut self) -> io::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        if self.proc.is_running() {
            let _ = self.proc.kill(Signal::SIGINT);
            if self.proc.wait_timeout(Duration::from_secs(5))?.is_none() {
                self.proc.kill_hard();
            }
        }
        Ok(())
    }

    /// Stops the capture and decodes it as text (`tcpdump -nn -e -v -r FILE`), one packet
    /// (plus its `-v` continuation lines) per entry.
    pub fn stop_and_read(&mut self) -> io::Result<String> {
        self.stop()?;
        let out = run(Command::new("tcpdump")
            .args(["-nn", "-e", "-v", "-r"])
            .arg(&self.path))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Topology

/// A bridge namespace, N masters and a client. See the module docs.
pub struct Topology {
    id: String,
    bridge_ns: String,
    bridge: String,
    /// Bridge-side veth of each master (index = master), then of the client.
    ports: Vec<String>,
    masters: Vec<Node>,
    client: Option<Node>,
    /// Namespaces created so far (deleted on drop).
    namespaces: Vec<String>,
    procs: ProcRegistry,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("id", &self.id)
            .field("bridge_ns", &self.bridge_ns)
            .field("masters", &self.masters)
            .field("client", &self.client)
            .finish()
    }
}

const SYSCTLS: &[&str] = &[
    "net.ipv6.conf.all.accept_dad=0",
    "net.ipv6.conf.default.accept_dad=0",
    "net.ipv6.conf.all.dad_transmits=0",
    "net.ipv6.conf.default.dad_transmits=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.accept_ra=0",
];

impl Topology {
    /// Builds the topology with `n_masters` masters (1..=89). Needs root.
    pub fn new(n_masters: usize) -> io::Result<Topology> {
        if !(1..=89).contains(&n_masters) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "n_masters must be 1..=89",
            ));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "av{}-{}",
            base36(u64::from(std::process::id())),
            base36(u64::from(n))
        );
        let mut topo = Topology {
            bridge_ns: format!("{id}-br"),
            bridge: format!("{id}br"),
            id,
            ports: Vec::new(),
            masters: Vec::new(),
            client: None,
            namespaces: Vec::new(),
            procs: Arc::new(Mutex::new(Vec::new())),
        };
        // On any error below, `topo` is dropped and removes what was made so far.
        topo.build(n_masters)?;
        Ok(topo)
    }

    fn add_ns(&mut self, ns: &str) -> io::Result<()> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_owned());
        let mut sysctl = Command::new("ip");
        sysctl
            .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
            .args(SYSCTLS);
        run(&mut sysctl)?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self, n_masters: usize) -> io::Result<()> {
        let id = self.id.clone();
        let (bridge_ns, bridge) = (self.bridge_ns.clone(), self.bridge.clone());
        if bridge.len() > 15 {
            return Err(io::Error::other(format!(
                "interface name {bridge} too long"
            )));
        }
        self.add_ns(&bridge_ns)?;
        ip(&[
            "-n",
            &bridge_ns,
            "link",
            "add",
            "name",
            &bridge,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &bridge_ns, "link", "set", &bridge, "up"])?;

        let mut nodes = Vec::new();
        for i in 0..n_masters {
            nodes.push((
                format!("{id}-m{i}"),
                format!("{id}m{i}"),
                format!("{id}p{i}"),
                master_v4(i),
                master_v6(i),
            ));
        }
        nodes.push((
            format!("{id}-c"),
            format!("{id}c"),
            format!("{id}pc"),
            CLIENT_V4,
            CLIENT_V6,
        ));
        for (k, (ns, ifname, port, v4, v6)) in nodes.into_iter().enumerate() {
            if ifname.len() > 15 || port.len() > 15 {
                return Err(io::Error::other(format!(
                    "interface names {ifname}/{port} longer than 15 characters"
                )));
            }
            self.add_ns(&ns)?;
            ip(&[
                "link", "add", "name", &ifname, "netns", &ns, "type", "veth", "peer", "name",
                &port, "netns", &bridge_ns,
            ])?;
            self.ports.push(port.clone());
            ip(&[
                "-n", &bridge_ns, "link", "set", &port, "master", &bridge, "up",
            ])?;
            let v4s = format!("{v4}/{V4_PREFIX}");
            let v6s = format!("{v6}/{V6_PREFIX}");
            ip(&["-n", &ns, "addr", "add", &v4s, "dev", &ifname])?;
            ip(&["-n", &ns, "addr", "add", &v6s, "dev", &ifname, "nodad"])?;
            ip(&["-n", &ns, "link", "set", &ifname, "up"])?;
            let node = Node {
                ns,
                ifname,
                ipv4: v4,
                ipv6: v6,
                procs: self.procs.clone(),
            };
            if k < n_masters {
                self.masters.push(node);
            } else {
                self.client = Some(node);
            }
        }
        Ok(())
    }

    /// The unique id of this topology (prefix of every name it made).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace holding the bridge.
    pub fn bridge_ns(&self) -> &str {
        &self.bridge_ns
    }

    /// The bridge's interface name (in [`Topology::bridge_ns`]).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Every namespace this topology made (bridge, masters, client).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// Master `i`.
    pub fn master(&self, i: usize) -> &Node {
        &self.masters[i]
    }

    /// All masters.
    pub fn masters(&self) -> &[Node] {
        &self.masters
    }

    /// The client.
    pub fn client(&self) -> &Node {
        self.client
            .as_ref()
            .expect("client is built with the topology")
    }

    /// The bridge-side veth of master `i`.
    pub fn bridge_port(&self, i: usize) -> &str {
        assert!(i < self.masters.len(), "no master {i}");
        &self.ports[i]
    }

    /// The bridge-side veth of the client.
    pub fn client_port(&self) -> &str {
        &self.ports[self.masters.len()]
    }

    /// Partitions master `i`: its bridge-side veth goes down (both directions cut).
    pub fn cut_link(&self, i: usize) -> io::Result<()> {
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            self.bridge_port(i),
            "down",
        ])?;
        Ok(())
    }

    /// Undoes [`Topology::cut_link`].
    pub fn heal_link(&self, i: usize) -> io::Result<()> {
        ip(&[
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            self.bridge_port(i),
            "up",
        ])?;
        Ok(())
    }

    /// Impairs master `i`'s link in *both* directions, with a `tc netem` spec such as
    /// `"delay 10ms loss 5%"`: on the master's interface (what it sends) and on its bridge
    /// port (what it receives). Replaces any earlier impairment of that link.
    ///
    /// Kernels without `sch_netem` (see [`netem_supported`]) get a fallback that only knows
    /// `loss N%`: an nftables rule on the bridge drops that share of the frames to and from
    /// the master, in each direction (needs the `nft` binary, Debian `nftables`). Anything
    /// else (delay, jitter, ...) is then an `Unsupported` error.
    pub fn netem(&self, i: usize, spec: &str) -> io::Result<()> {
        let m = self.master(i);
        self.netem_clear(i)?;
        if netem_supported() {
            let spec: Vec<&str> = spec.split_whitespace().collect();
            for (ns, dev) in [(&m.ns, &m.ifname), (&self.bridge_ns, &self.ports[i])] {
                let mut cmd = Command::new("tc");
                cmd.args(["-n", ns, "qdisc", "replace", "dev", dev, "root", "netem"])
                    .args(&spec);
                run(&mut cmd)?;
            }
            return Ok(());
        }
        let per_million = parse_loss_only(spec)?;
        if per_million == 0 {
            return Ok(());
        }
        let port = &self.ports[i];
        let cond = if per_million >= 1_000_000 {
            String::new()
        } else {
            format!("numgen random mod 1000000 < {per_million} ")
        };
        let rules = format!(
            "table bridge apivip_loss_{i} {{\n chain forward {{\n  type filter hook forward priority 0; policy accept;\n  iifname \"{port}\" {cond}drop\n  oifname \"{port}\" {cond}drop\n }}\n}}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.bridge_ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("nft (Debian nftables): {e}")))?;
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(rules.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "nft loss rule for master {i} failed ({}): {} (is `nft` installed? Debian nftables)",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Removes what [`Topology::netem`] added on master `i`'s link (nothing there: no-op).
    pub fn netem_clear(&self, i: usize) -> io::Result<()> {
        let m = self.master(i);
        for (ns, dev) in [(&m.ns, &m.ifname), (&self.bridge_ns, &self.ports[i])] {
            // Absent qdisc: nothing to clear.
            let _ = Command::new("tc")
                .args(["-n", ns, "qdisc", "del", "dev", dev, "root"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()?;
        }
        let table = format!("apivip_loss_{i}");
        // Absent table or no nft: nothing to clear.
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.bridge_ns,
                "nft",
                "delete",
                "table",
                "bridge",
            ])
            .arg(&table)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        Ok(())
    }

    /// Which masters hold `addr` right now (more than one: split brain).
    pub fn holders_of(&self, addr: IpAddr) -> io::Result<Vec<usize>> {
        let mut holders = Vec::new();
        for (i, m) in self.masters.iter().enumerate() {
            if m.addresses()?.contains(&addr) {
                holders.push(i);
            }
        }
        Ok(holders)
    }

    /// The first master holding `addr`, if any.
    pub fn holder_of(&self, addr: IpAddr) -> Option<usize> {
        self.holders_of(addr).ok()?.first().copied()
    }

    /// Waits up to `timeout` until `holder_of(addr) == want`; returns the last answer.
    pub fn wait_holder(
        &self,
        addr: IpAddr,
        want: Option<usize>,
        timeout: Duration,
    ) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.holder_of(addr);
            if got == want || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `tcpdump -w path` on `node`'s interface with `filter` (a pcap expression, may be
    /// empty) and waits until it is listening.
    pub fn capture(&self, node: &Node, filter: &str, path: &Path) -> io::Result<Capture> {
        start_capture(node, &node.ifname, filter, path)
    }

    /// Like [`Topology::capture`], on the bridge itself (sees every node's traffic).
    pub fn capture_bridge(&self, filter: &str, path: &Path) -> io::Result<Capture> {
        let node = Node {
            ns: self.bridge_ns.clone(),
            ifname: self.bridge.clone(),
            ipv4: Ipv4Addr::UNSPECIFIED,
            ipv6: Ipv6Addr::UNSPECIFIED,
            procs: self.procs.clone(),
        };
        start_capture(&node, &self.bridge, filter, path)
    }
}

/// Whether this kernel has `sch_netem` (probed once, in a scratch namespace). Without it,
/// [`Topology::netem`] emulates only `loss N%`.
pub fn netem_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let ns = format!(
            "av{}-{}-probe",
            base36(u64::from(std::process::id())),
            base36(u64::from(n))
        );
        if ip(&["netns", "add", &ns]).is_err() {
            return false;
        }
        let ok = ip(&[
            "-n", &ns, "link", "add", "name", "pa", "type", "veth", "peer", "name", "pb",
        ])
        .is_ok()
            && run(Command::new("tc").args([
                "-n", &ns, "qdisc", "add", "dev", "pa", "root", "netem", "delay", "1ms",
            ]))
            .is_ok();
        let _ = ip(&["netns", "del", &ns]);
        ok
    })
}

/// `"loss 5%"` -> 50000 (per million); anything but a lone loss is unsupported.
fn parse_loss_only(spec: &str) -> io::Result<u32> {
    let unsupported = || {
        io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "netem {spec:?}: this kernel has no sch_netem (CONFIG_NET_SCH_NETEM); \
                 only \"loss N%\" can be emulated (with nftables)"
            ),
        )
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    let ["loss", pct] = words.as_slice() else {
        return Err(unsupported());
    };
    let pct: f64 = pct
        .trim_end_matches('%')
        .parse()
        .map_err(|_| unsupported())?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(unsupported());
    }
    Ok((pct * 10_000.0).round() as u32)
}

fn start_capture(node: &Node, ifname: &str, filter: &str, path: &Path) -> io::Result<Capture> {
    let log = path.with_extension("tcpdump.log");
    let mut cmd = node.command("tcpdump");
    // -Z root: do not drop to the tcpdump user (it could not write the test's temp dir).
    cmd.args([
        "-Z",
        "root",
        "-nn",
        "-U",
        "--immediate-mode",
        "-i",
        ifname,
        "-w",
    ])
    .arg(path);
    if !filter.trim().is_empty() {
        cmd.arg(filter);
    }
    let proc = node.spawn_command(cmd, &log)?;
    if !proc.wait_for_log("listening on", Duration::from_secs(10)) {
        let log = proc.log();
        return Err(io::Error::other(format!("tcpdump did not start: {log}")));
    }
    Ok(Capture {
        proc,
        path: path.to_path_buf(),
        stopped: false,
    })
}

impl Drop for Topology {
    fn drop(&mut self) {
        // 1. Every process we started: kill its group and reap it.
        for p in lock(&self.procs).iter() {
            lock(p).kill_and_reap();
        }
        // 2. Anything else still inside our namespaces (grandchildren, daemons).
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
        }
        // 3. The namespaces; their veths and the bridge go with them. Bridge last.
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
