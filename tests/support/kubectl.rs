//! Real `kubectl` WATCH clients: Debian's `kubernetes-client` (kubectl 1.20), which
//! `scripts/test.sh` unpacks into `target/tools/kubernetes-client` (it is not installed:
//! another package may own `/usr/bin/kubectl`).
//!
//! [`Kubectl`] is the binary plus a kubeconfig for one server URL, trusting the test CA and
//! presenting the test client certificate, with `HOME` and the cache directory in its own
//! temporary directory: nothing is written to the user's home.
//!
//! [`WatchClient`] runs `kubectl get pods --watch -o name` against the imitation apiserver
//! (`apivip::testkit::apiserver`), whose pod watch events name the backend: kubectl prints
//! `pod/BACKEND-SEQ` for each. When kubectl exits (its watch ended, was reset, or it could
//! not connect) the client starts it again and counts a restart, like a controller
//! re-establishing its watch. Dropping it kills kubectl by PID and waits for it.
//!
//! Measured with kubectl 1.20.2 against the imitation: the first run asks for discovery
//! (`/api`, `/apis`, `/api/v1`, each `?timeout=32s`, `Accept: application/json, */*`), then
//! every run lists (`/api/v1/namespaces/default/pods?limit=500`, `Accept: application/json`)
//! and watches (`...pods?resourceVersion=RV&watch=true`) from the list's resource version.
//! Later runs read discovery from the cache (10 minutes). All of it goes over one keep-alive
//! TCP connection per process: no idle connection stays open beside the watch (the
//! imitation has no API groups; a real apiserver's many groups are discovered in parallel,
//! which may open more). When the watch ends, cleanly or reset, kubectl exits with status 0
//! and prints nothing; when it cannot connect it exits with 1 and says so on stderr. A run
//! costs about 0.1 s of CPU and 37 MB of memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use apivip::testkit::certs::TestPki;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Where `scripts/test.sh` unpacks kubectl, relative to the repository.
pub const KUBECTL_IN_REPO: &str = "target/tools/kubernetes-client/usr/bin/kubectl";

/// How long a [`WatchClient`] waits before starting kubectl again, by default.
pub const RESTART_DELAY: Duration = Duration::from_millis(100);

/// The kubectl unpacked by `scripts/test.sh`, if it is there.
pub fn kubectl_bin() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(KUBECTL_IN_REPO);
    super::which(bin.to_str()?)
}

/// The kubectl binary, or `None` after printing why `test` skips (panics instead when
/// `APIVIP_REQUIRE_NETNS=1`).
pub fn require_kubectl(test: &str) -> Option<PathBuf> {
    let found = kubectl_bin();
    if found.is_none() {
        super::skip_or_fail(
            test,
            &format!("needs kubectl 1.20 in {KUBECTL_IN_REPO} (scripts/test.sh unpacks it)"),
        );
    }
    found
}

struct Inner {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
    cache: PathBuf,
    dir: tempfile::TempDir,
    clients: AtomicU64,
}

/// kubectl with a kubeconfig for one server; cheap to clone. Its temporary directory (the
/// kubeconfig, `HOME`, the cache, the clients' logs) goes when the last clone and every
/// [`WatchClient`] made from it are dropped.
#[derive(Clone)]
pub struct Kubectl {
    inner: Arc<Inner>,
}

impl Kubectl {
    /// kubectl for `server` (e.g. `https://127.0.0.1:6443`), trusting `pki`'s CA and
    /// presenting its client certificate; `None` when kubectl is missing (see
    /// [`require_kubectl`]).
    ///
    /// # Panics
    /// When the kubeconfig cannot be written.
    pub fn new(test: &str, server: &str, pki: &TestPki) -> Option<Kubectl> {
        let bin = require_kubectl(test)?;
        Some(Kubectl::with_bin(bin, server, pki).expect("write a kubeconfig"))
    }

    /// Like [`Kubectl::new`] with a given binary.
    pub fn with_bin(bin: PathBuf, server: &str, pki: &TestPki) -> io::Result<Kubectl> {
        let dir = tempfile::Builder::new()
            .prefix("apivip-kubectl")
            .tempdir()?;
        let (home, cache) = (dir.path().join("home"), dir.path().join("cache"));
        fs::create_dir(&home)?;
        fs::create_dir(&cache)?;
        // JSON is YAML: serde_json quotes the paths whatever they hold.
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": server,
                "certificate-authority": pki.ca_cert,
            }}],
            // A client certificate: with no credentials at all kubectl prompts for a
            // user name (and fails, stdin being empty). A server without mTLS asks for none.
            "users": [{"name": "test", "user": {
                "client-certificate": pki.client_cert,
                "client-key": pki.client_key,
            }}],
            "contexts": [{"name": "test", "context": {
                "cluster": "test", "user": "test", "namespace": "default",
            }}],
            "current-context": "test",
        });
        let kubeconfig = dir.path().join("kubeconfig");
        fs::write(&kubeconfig, config.to_string())?;
        Ok(Kubectl {
            inner: Arc::new(Inner {
                bin,
                kubeconfig,
                home,
                cache,
                dir,
                clients: AtomicU64::new(0),
            }),
        })
    }

    /// The kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.inner.kubeconfig
    }

    /// `kubectl --kubeconfig K --cache-dir C --request-timeout=0`, `HOME` in the temporary
    /// directory, stdin empty; add the arguments. `--request-timeout` 0 (kubectl's default,
    /// spelt out) is "no timeout": any other value would cut a watch after that time.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.inner.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.inner.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.inner.cache)
            .arg("--request-timeout=0")
            .env("HOME", &self.inner.home)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts a [`WatchClient`] that restarts kubectl [`RESTART_DELAY`] after it exits.
    pub fn watch(&self) -> io::Result<WatchClient> {
        self.watch_with_delay(RESTART_DELAY)
    }

    /// Starts a [`WatchClient`] that restarts kubectl `restart_delay` after it exits.
    pub fn watch_with_delay(&self, restart_delay: Duration) -> io::Result<WatchClient> {
        WatchClient::start(self.clone(), restart_delay)
    }
}

/// One line kubectl printed.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// When it was read.
    pub at: Instant,
    /// Which kubectl process printed it: 0 for the first, then one more per restart.
    pub run: u64,
    /// The line, e.g. `pod/m0-12`.
    pub line: String,
}

impl WatchEvent {
    /// The backend that sent it: `m0` from `pod/m0-12`.
    pub fn backend(&self) -> Option<&str> {
        backend_of(&self.line)
    }
}

/// The backend named by a line `pod/BACKEND-SEQ`.
fn backend_of(line: &str) -> Option<&str> {
    let (backend, seq) = line.strip_prefix("pod/")?.rsplit_once('-')?;
    (!backend.is_empty() && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()))
        .then_some(backend)
}

struct State {
    stop: AtomicBool,
    restarts: AtomicU64,
    /// The running kubectl, until it is reaped: only then may Drop signal it.
    pid: Mutex<Option<Pid>>,
    events: Mutex<Vec<WatchEvent>>,
}

/// `kubectl get pods --watch -o name`, restarted whenever it exits. See the module docs.
pub struct WatchClient {
    state: Arc<State>,
    log: PathBuf,
    thread: Option<JoinHandle<()>>,
    _kubectl: Kubectl,
}

impl WatchClient {
    fn start(kubectl: Kubectl, restart_delay: Duration) -> io::Result<WatchClient> {
        let n = kubectl.inner.clients.fetch_add(1, Ordering::Relaxed);
        let log = kubectl.inner.dir.path().join(format!("watch-{n}.log"));
        File::create(&log)?;
        let state = Arc::new(State {
            stop: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            pid: Mutex::new(None),
            events: Mutex::new(Vec::new()),
        });
        let thread = std::thread::Builder::new()
            .name(format!("kubectl-watch-{n}"))
            .spawn({
                let (kubectl, state, log) = (kubectl.clone(), state.clone(), log.clone());
                move || supervise(&kubectl, &state, &log, restart_delay)
            })?;
        Ok(WatchClient {
            state,
            log,
            thread: Some(thread),
            _kubectl: kubectl,
        })
    }

    /// The PID of the kubectl running now, if one is.
    pub fn pid(&self) -> Option<u32> {
        let pid = *self.state.pid.lock().unwrap();
        pid.map(|p| p.as_raw() as u32)
    }

    /// How many times kubectl was started again after exiting (a start that failed at
    /// once, e.g. connection refused, counts too).
    pub fn restarts(&self) -> u64 {
        self.state.restarts.load(Ordering::Relaxed)
    }

    /// The backend named by the latest event.
    pub fn last_backend(&self) -> Option<String> {
        let events = self.state.events.lock().unwrap();
        events.last().and_then(|e| e.backend()).map(str::to_owned)
    }

    /// Every line printed so far, in order.
    pub fn events(&self) -> Vec<WatchEvent> {
        self.state.events.lock().unwrap().clone()
    }

    /// How many lines were printed so far.
    pub fn event_count(&self) -> usize {
        self.state.events.lock().unwrap().len()
    }

    /// kubectl's stderr of every run, with a line per exit: for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("{}: {e}", self.log.display()))
    }
}

impl Drop for WatchClient {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Under the lock the pid is that of our unreaped child: it cannot have been reused.
        if let Some(pid) = *self.state.pid.lock().unwrap() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The client's thread: runs kubectl, reads its lines, restarts it when it exits.
fn supervise(kubectl: &Kubectl, state: &State, log: &Path, restart_delay: Duration) {
    let note = |msg: &str| {
        use std::io::Write;
        if let Ok(mut f) = OpenOptions::new().append(true).open(log) {
            let _ = writeln!(f, "== {msg}");
        }
    };
    for run in 0u64.. {
        if run > 0 {
            std::thread::sleep(restart_delay);
            if state.stop.load(Ordering::Relaxed) {
                return;
            }
            state.restarts.fetch_add(1, Ordering::Relaxed);
        }
        match run_once(kubectl, state, log, run) {
            Ok(status) => note(&format!("run {run}: kubectl exited: {status}")),
            Err(e) => note(&format!("run {run}: {e}")),
        }
        if state.stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// Runs kubectl once, until it exits (or the client is dropped).
fn run_once(
    kubectl: &Kubectl,
    state: &State,
    log: &Path,
    run: u64,
) -> io::Result<std::process::ExitStatus> {
    let stderr = OpenOptions::new().append(true).open(log)?;
    let mut child: Child = {
        // Spawn under the lock, so Drop either sees this pid or sees `stop` set first.
        let mut pid = state.pid.lock().unwrap();
        if state.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped"));
        }
        let child = kubectl
            .command()
            .args(["get", "pods", "--watch", "-o", "name"])
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        *pid = Some(Pid::from_raw(child.id() as i32));
        child
    };
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        state.events.lock().unwrap().push(WatchEvent {
            at: Instant::now(),
            run,
            line,
        });
    }
    // stdout closed: kubectl is exiting (or was killed). Forget the pid before reaping it.
    let stopping = {
        let mut pid = state.pid.lock().unwrap();
        *pid = None;
        state.stop.load(Ordering::Relaxed)
    };
    if stopping {
        let _ = child.kill();
    }
    child.wait()
}
