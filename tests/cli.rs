//! The `apivip` binary: `version`, `check` (examples and errors), `run` with SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver};
use apivip::testkit::certs::TestPki;
use support::daemon::{ChildGuard, Lines};

const BIN: &str = env!("CARGO_BIN_EXE_apivip");

fn apivip(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn version_names_the_commit() {
    let out = apivip(&["version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("apivip {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

/// Copies an example into `dir`, pointing kubeadm's PKI paths at generated files.
fn install_example(name: &str, dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config").join(name)).unwrap();
    let pki_dir = dir.join("kubernetes-pki");
    let gen_dir = dir.join("generated");
    std::fs::create_dir_all(&gen_dir).unwrap();
    let pki = TestPki::generate(&gen_dir, &["127.0.0.1"]).unwrap();
    for (to, from) in [
        ("ca.crt", &pki.ca_cert),
        ("etcd/ca.crt", &pki.ca_cert),
        ("etcd/healthcheck-client.crt", &pki.client_cert),
        ("etcd/healthcheck-client.key", &pki.client_key),
    ] {
        let to = pki_dir.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
    // local-demo.yaml names pki/ca.crt relative to itself.
    std::fs::create_dir_all(dir.join("pki")).unwrap();
    std::fs::copy(&pki.ca_cert, dir.join("pki/ca.crt")).unwrap();
    let text = text.replace("/etc/kubernetes/pki/", &format!("{}/", pki_dir.display()));
    // dns.yaml's TSIG secret.
    let key = dir.join("dns.key");
    std::fs::write(&key, "YXBpdmlwLXRlc3Qtc2VjcmV0LW9mLTMyLWJ5dGVzISE=\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = text.replace("/etc/apivip/dns.key", &key.display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_example_config_passes_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in names {
        let dir = tempfile::tempdir().unwrap();
        let path = install_example(&name, dir.path());
        let out = apivip(&["check", "-c", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn check_prints_one_line_per_error_with_file_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "backends:\n  - address: 198.18.0.11\n  - address: 198.18.0.11\n  - address: 1.2.3\napiserver:\n  listen: nowhere\n  check:\n    rise: 0\n    interval: 10\n    ca: missing.crt\n",
    )
    .unwrap();
    let out = apivip(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    let file = path.display().to_string();
    for want in [
        "backends[1].address: \"198.18.0.11\": duplicate backend",
        "backends[2].address: \"1.2.3\": is not an address",
        "apiserver.listen: \"nowhere\"",
        "apiserver.check.rise: \"0\"",
        "apiserver.check.interval: \"10\"",
        "apiserver.check.ca: \"missing.crt\": cannot be read",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{file}: {want}"))),
            "no line for {want:?} in\n{err}"
        );
    }
    assert_eq!(lines.len(), 6, "{err}");
}

/// A bad `dns:` section: one line per error, naming the file, the key and the value;
/// the secret file that others can write is refused without showing its content.
#[test]
fn check_names_every_bad_dns_value() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("dns.key");
    std::fs::write(&key, "c2VjcmV0LW9mLWFwaXZpcA==").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "backends:\n  - {{name: m1, address: 198.18.0.11}}\napiserver: {{listen: []}}\n\
             dns:\n  servers: [ns1.example]\n  zone: cluster.example.\n  name: api.other.example.\n  ttl: 1500ms\n  node: m9\n\
             \x20 tsig: {{key: apivip-key., algorithm: hmac-md5, secret_file: '{}'}}\n",
            key.display()
        ),
    )
    .unwrap();
    let out = apivip(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let file = path.display().to_string();
    for want in [
        "dns.servers[0]: \"ns1.example\"",
        "dns.name: \"api.other.example.\"",
        "dns.ttl: \"1500ms\"",
        "dns.node: \"m9\"",
        "dns.tsig.algorithm: \"hmac-md5\"",
        "dns.tsig.secret_file: ",
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{file}: {want}"))),
            "no line for {want:?} in\n{err}"
        );
    }
    assert!(!err.contains("c2VjcmV0"), "the secret was printed:\n{err}");
}

#[test]
fn check_refuses_unknown_keys_and_bad_pem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    std::fs::write(&path, "backends: [{address: 198.18.0.11}]\napiservr: {}\n").unwrap();
    let out = apivip(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("apiservr") && err.contains("line 2"), "{err}");

    std::fs::write(dir.path().join("ca.crt"), "not a certificate\n").unwrap();
    std::fs::write(
        &path,
        "backends: [{address: 198.18.0.11}]\napiserver: {check: {ca: ca.crt}}\n",
    )
    .unwrap();
    let out = apivip(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("apiserver.check.ca") && err.contains("no CERTIFICATE"),
        "{err}"
    );

    let out = apivip(&["check", "-c", "/nonexistent/apivip.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/apivip.yaml: cannot read"));
}

#[test]
fn run_serves_and_sigterm_drains_then_exits_zero() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let master = rt
        .block_on(ImitationApiserver::start(ApiserverOptions::new(
            "master-0",
            pki.server_config(),
        )))
        .unwrap();
    let path = dir.path().join("apivip.yaml");
    std::fs::write(
        &path,
        format!(
            "backends: [{{address: '{}'}}]\nadmin: {{listen: '127.0.0.1:0'}}\napiserver:\n  listen: 127.0.0.1:0\n  check: {{ca: ca.crt, interval: 200ms, timeout: 200ms}}\nshutdown: {{drain_timeout: 2s}}\nlog: {{format: json}}\n",
            master.addr()
        ),
    )
    .unwrap();
    let mut child = ChildGuard(
        Command::new(BIN)
            .args(["run", "-c", path.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Find the listen address in the JSON log.
    let mut log = Lines::read(child.0.stderr.take().unwrap());
    let endpoint = log.logged_addr(Duration::from_secs(15), "listening");
    let client = support::client_config(&pki.ca_cert, None).unwrap();
    let ok = support::wait_until_blocking(
        Duration::from_secs(15),
        || matches!(support::https_get_blocking(endpoint, client.clone(), "/whoami"), Ok((200, ref b)) if b == "master-0"),
    );
    assert!(ok, "no answer through apivip run");

    // An open connection is drained, not cut, on SIGTERM.
    let held = std::net::TcpStream::connect(endpoint).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // let the proxy accept it
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let refused = support::wait_until_blocking(Duration::from_secs(15), || {
        std::net::TcpStream::connect(endpoint).is_err()
    });
    assert!(refused, "still accepting after SIGTERM");
    let exited = support::wait_until_blocking(Duration::from_secs(15), || {
        child.0.try_wait().unwrap().is_some()
    });
    assert!(exited, "did not exit after SIGTERM");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    drop(held);
    let rest = log.fresh();
    // The held connection was still open at SIGTERM and stayed until the deadline.
    assert!(
        rest.iter().any(|l| l.contains("draining connections")),
        "{rest:#?}"
    );
    assert!(
        rest.iter()
            .any(|l| l.contains("closing the remaining connections") && l.contains("\"open\":1")),
        "{rest:#?}"
    );
}

/// README command 1: `apivip demo` serves, survives a stopped master, and Ctrl-C
/// (SIGINT) stops everything with exit 0.
#[test]
fn the_demo_serves_through_a_stopped_master_and_stops_on_ctrl_c() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = ChildGuard(
        Command::new(BIN)
            .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = Lines::read(child.0.stdout.take().unwrap());
    let endpoint: SocketAddr = out.wait_for(Duration::from_secs(15), "demo endpoint", |line| {
        let rest = line.strip_prefix("apivip demo: endpoint https://")?;
        Some(rest.split_whitespace().next().unwrap().parse().unwrap())
    });
    let client = support::client_config(&dir.path().join("ca.crt"), None).unwrap();
    let get = || support::https_get_blocking(endpoint, client.clone(), "/whoami");
    assert!(
        support::wait_until_blocking(Duration::from_secs(15), || get().is_ok()),
        "the demo endpoint does not answer"
    );
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "stop 2").unwrap();
    let stopped = support::wait_until_blocking(Duration::from_secs(15), || {
        out.fresh().iter().any(|l| l.contains("master-2 stopped"))
    });
    assert!(stopped, "the demo did not stop master-2");
    for i in 0..15 {
        let r = get();
        assert!(
            matches!(r, Ok((200, ref b)) if b != "master-2"),
            "request {i}: {r:?}"
        );
    }
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let exited = support::wait_until_blocking(Duration::from_secs(15), || {
        child.0.try_wait().unwrap().is_some()
    });
    assert!(exited, "the demo did not stop on SIGINT");
    assert!(child.0.wait().unwrap().success());
    assert!(
        std::net::TcpStream::connect(endpoint).is_err(),
        "the endpoint still accepts after the demo stopped"
    );
}

#[test]
fn check_warns_when_the_admin_endpoint_is_not_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exposed.yaml");
    std::fs::write(
        &path,
        "backends: [{address: 198.18.0.11}]\napiserver: {check: {kind: tcp}}\nadmin: {listen: ['127.0.0.1:9469', '0.0.0.0:9470']}\n",
    )
    .unwrap();
    let out = apivip(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("warning: admin.listen: \"0.0.0.0:9470\": not a loopback address"),
        "{err}"
    );
    assert!(!err.contains("127.0.0.1:9469"), "{err}");
    std::fs::write(
        &path,
        "backends: [{address: 198.18.0.11}]\napiserver: {check: {kind: tcp}}\n",
    )
    .unwrap();
    let out = apivip(&["check", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_refuses_a_client_key_others_can_write_and_warns_when_everyone_can_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path(), &["127.0.0.1"]).unwrap();
    let path = dir.path().join("mtls.yaml");
    std::fs::write(
        &path,
        format!(
            "backends: [{{address: 198.18.0.11}}]\napiserver: {{check: {{ca: ca.crt, client_cert: client.crt, client_key: '{}'}}}}\n",
            pki.client_key.display()
        ),
    )
    .unwrap();
    let file = path.display().to_string();
    let chmod = |mode: u32| {
        std::fs::set_permissions(&pki.client_key, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let key = pki.client_key.display().to_string();

    chmod(0o660);
    let out = apivip(&["check", "-c", &file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{file}: apiserver.check.client_key: \"{key}\": is writable by its group or by everyone (mode 0660)"
        )),
        "{err}"
    );

    chmod(0o644);
    let out = apivip(&["check", "-c", &file]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{file}: warning: apiserver.check.client_key: \"{key}\": is readable by everyone (mode 0644)"
        )),
        "{err}"
    );

    chmod(0o600);
    let out = apivip(&["check", "-c", &file]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
