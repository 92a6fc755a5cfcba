//! Notify hooks on loopback: `apivip run` with imitation apiservers and hook scripts
//! the test writes. A backend turning not-ready and back reaches the hook in order with
//! its reasons; a hanging hook is killed (with its process group) at its timeout and
//! counted, a failing one is counted, and neither stops the proxy or the other hooks.

mod support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use apivip::admin::client;
use apivip::testkit::apiserver::{ApiserverOptions, ImitationApiserver, Mode};
use apivip::testkit::certs::TestPki;
use support::daemon::{ChildGuard, Lines};
use support::metric_sample as sample;

const BIN: &str = env!("CARGO_BIN_EXE_apivip");
const DEADLINE: Duration = Duration::from_secs(20);

/// Kills, on drop, the hook children whose PIDs the hanging hook wrote (if a broken
/// runner let them outlive it), checking that each PID is still a `sleep`.
struct SleepGuard(std::path::PathBuf);

impl Drop for SleepGuard {
    fn drop(&mut self) {
        for pid in lines(&self.0) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmd.starts_with(b"sleep\0") {
                if let Ok(p) = pid.parse() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p.display().to_string()
}

/// Reads the daemon's JSON log until a line with `message` and returns its `addr`.
async fn metrics(admin: SocketAddr) -> String {
    let (code, body) = client::request(admin, http::Method::GET, "/metrics", None, DEADLINE)
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    body
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether `pid` is gone (or a zombie waiting for its reaper).
fn is_dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_see_backend_transitions_in_order_and_hanging_or_failing_hooks_change_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = TestPki::generate(d, &["127.0.0.1"]).unwrap();
    let mut masters = Vec::new();
    for i in 0..2 {
        masters.push(
            ImitationApiserver::start(ApiserverOptions::new(
                format!("master-{i}"),
                pki.server_config(),
            ))
            .await
            .unwrap(),
        );
    }
    let events = d.join("events.log");
    let sleeps = d.join("sleep.pids");
    let _sleeps = SleepGuard(sleeps.clone());
    // Arguments after the configured one: FRONTEND BACKEND STATE REASON.
    let record = script(
        d,
        "record.sh",
        "out=$1; shift\nprintf '%s|%s|%s|%s|%s|%s|%s\\n' \"$1\" \"$2\" \"$3\" \"$4\" \"$APIVIP_EVENT\" \"$APIVIP_FROM\" \"$APIVIP_HOOK\" >> \"$out\"\n",
    );
    let hang = script(
        d,
        "hang.sh",
        &format!("sleep 1000 &\necho $! >> {}\nwait\n", sleeps.display()),
    );
    let fail = script(d, "fail.sh", "exit 3\n");
    let config = d.join("apivip.yaml");
    std::fs::write(
        &config,
        format!(
            "backends:\n  - {{name: master-0, address: '{}'}}\n  - {{name: master-1, address: '{}'}}\n\
             admin: {{listen: '127.0.0.1:0'}}\n\
             apiserver:\n  listen: 127.0.0.1:0\n  check: {{ca: ca.crt, interval: 300ms, timeout: 300ms, rise: 1, fall: 1}}\n\
             notify:\n  backend: ['{hang}', '{record} {}', '{fail}']\n  timeout: 1s\n\
             shutdown: {{drain_timeout: 1s}}\nlog: {{format: json}}\n",
            masters[0].addr(),
            masters[1].addr(),
            events.display(),
        ),
    )
    .unwrap();

    let check = Command::new(BIN)
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success()
            && out.contains("notify: backend[0], backend[1], backend[2] (timeout 1s)"),
        "{out}{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut child = ChildGuard(
        Command::new(BIN)
            .args(["run", "-c", config.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut log = Lines::read(child.0.stderr.take().unwrap());
    let endpoint = log.logged_addr(DEADLINE, "listening");
    let admin = log.logged_addr(DEADLINE, "admin endpoint listening");
    let client = support::client_config(&pki.ca_cert, None).unwrap();
    let proxied = || async {
        matches!(
            support::https_get_with(endpoint, client.clone(), "/whoami").await,
            Ok((200, _))
        )
    };

    // Both backends come up (unknown -> up), then master-0 turns not ready and back.
    let m0 = |l: &Vec<String>| -> Vec<String> {
        l.iter()
            .filter(|l| l.starts_with("apiserver|master-0|"))
            .cloned()
            .collect()
    };
    let seen = support::wait_until(DEADLINE, || async { m0(&lines(&events)).len() == 1 }).await;
    assert!(seen, "no first transition: {:?}", lines(&events));
    masters[0].set_mode(Mode::NotReady);
    let seen = support::wait_until(DEADLINE, || async { m0(&lines(&events)).len() == 2 }).await;
    assert!(seen, "no not-ready transition: {:?}", lines(&events));
    // The hanging hook holds only its own queue: the proxy serves meanwhile.
    assert!(
        proxied().await,
        "the proxy does not serve while a hook hangs"
    );
    masters[0].set_mode(Mode::Ready);
    let seen = support::wait_until(DEADLINE, || async { m0(&lines(&events)).len() == 3 }).await;
    assert!(seen, "no recovery: {:?}", lines(&events));

    let got = m0(&lines(&events));
    let fields: Vec<Vec<&str>> = got.iter().map(|l| l.split('|').collect()).collect();
    // STATE, REASON, APIVIP_EVENT, APIVIP_FROM, APIVIP_HOOK, in order.
    assert_eq!(
        fields.iter().map(|f| (f[2], f[5])).collect::<Vec<_>>(),
        [("up", "unknown"), ("not_ready", "up"), ("up", "not_ready")],
        "{got:#?}"
    );
    assert_eq!(fields[0][3], "ok", "{got:#?}");
    assert!(fields[1][3].contains("HTTP 500"), "reason: {got:#?}");
    assert_eq!(fields[2][3], "ok", "{got:#?}");
    assert!(
        fields
            .iter()
            .all(|f| f[4] == "backend" && f[6] == "backend[1]"),
        "{got:#?}"
    );
    let m1 = lines(&events)
        .into_iter()
        .filter(|l| l.starts_with("apiserver|master-1|up|ok|"))
        .count();
    assert_eq!(m1, 1, "{:?}", lines(&events));

    // Four transitions: the hanging hook ran four times, each killed at 1 s; the
    // failing one failed four times; the recorder succeeded four times.
    let want = [
        ("backend[0]", "timeout", 4.0),
        ("backend[1]", "ok", 4.0),
        ("backend[2]", "failed", 4.0),
    ];
    let counted = support::wait_until(DEADLINE, || async {
        let m = metrics(admin).await;
        want.iter().all(|(h, r, n)| {
            sample(
                &m,
                "apivip_notify_runs_total",
                &[("hook", h), ("result", r)],
            ) == Some(*n)
        })
    })
    .await;
    let m = metrics(admin).await;
    assert!(counted, "{m}");
    for h in ["backend[0]", "backend[1]", "backend[2]"] {
        assert_eq!(
            sample(&m, "apivip_notify_dropped_total", &[("hook", h)]),
            Some(0.0),
            "{m}"
        );
    }
    assert_eq!(
        sample(
            &m,
            "apivip_notify_runs_total",
            &[("hook", "backend[0]"), ("result", "ok")]
        ),
        Some(0.0),
        "{m}"
    );
    // The new families are valid Prometheus text.
    if let Some(promtool) = support::require_bin("notify metrics", "promtool") {
        use std::io::Write;
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{m}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Killed with its process group: the hook's own child is gone too.
    let pids = lines(&sleeps);
    assert_eq!(pids.len(), 4, "{pids:?}");
    let gone = support::wait_until(DEADLINE, || async { pids.iter().all(|p| is_dead(p)) }).await;
    assert!(gone, "a hook's child outlived the timeout: {pids:?}");
    assert!(proxied().await, "the proxy stopped serving");

    // The status document lists the hooks with the same counters.
    let (_, body) = client::request(admin, http::Method::GET, "/status", None, DEADLINE)
        .await
        .unwrap();
    let doc: apivip::admin::status::StatusDoc = serde_json::from_str(&body).unwrap();
    assert_eq!(doc.notify.len(), 3);
    assert_eq!(doc.notify[2].runs["failed"], 4, "{:#?}", doc.notify);
    assert_eq!(
        doc.notify[1].command,
        format!("{record} {}", events.display())
    );

    // And so does `apivip status`.
    let out = Command::new(BIN)
        .args(["status", "--admin", &admin.to_string()])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.lines().any(|l| l.starts_with("  backend[2]")
            && l.contains("error 0 · failed 4 · ok 0 · timeout 0 · dropped 0")
            && l.ends_with(&fail)),
        "{screen}"
    );

    // Stops cleanly with hooks configured.
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let exited = support::wait_until_blocking(DEADLINE, || child.0.try_wait().unwrap().is_some());
    assert!(exited, "did not exit after SIGTERM");
    assert!(child.0.wait().unwrap().success());
    log.fresh();
    assert!(
        log.seen
            .iter()
            .any(|l| l.contains("hook ran past notify.timeout")),
        "no timeout logged:\n{}",
        log.seen.join("\n")
    );
}

#[test]
fn check_refuses_a_writable_hook_with_file_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let hook = script(dir.path(), "hook.sh", "exit 0\n");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o722)).unwrap();
    let config = dir.path().join("apivip.yaml");
    std::fs::write(
        &config,
        format!("backends: [{{address: 198.18.0.11}}]\nnotify: {{backend: '{hook} --flag'}}\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "{}: notify.backend: \"{hook} --flag\": is group- or world-writable (mode 0722)",
            config.display()
        )),
        "{err}"
    );
}
