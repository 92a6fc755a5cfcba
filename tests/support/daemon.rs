//! `apivip` as a child process: killed on drop, and its output read line by line as it
//! comes, to find what it logged (JSON) or printed.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::Child;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Kills the child by PID if the test fails before it exits.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `addr` field of a JSON log line whose message is `message`.
pub fn logged_addr(line: &str, message: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["fields"]["message"] == message)
        .then(|| v["fields"]["addr"].as_str()?.parse().ok())
        .flatten()
}

/// The lines of one of the child's pipes, read by a thread; every line taken from it is
/// kept in `seen`, to show in a failure message.
pub struct Lines {
    rx: Receiver<String>,
    /// Every line taken so far, in order.
    pub seen: Vec<String>,
}

impl Lines {
    /// Starts the thread reading `pipe` (e.g. the child's stderr, taken from it).
    pub fn read(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// What `pick` finds in the first line it finds something in, waiting up to
    /// `timeout`; panics naming `what`, with the lines so far, when none comes.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no {what}; output:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }

    /// The address logged (JSON, and every line before it must be JSON) with the first
    /// line whose message is `message`, waiting up to `timeout`.
    pub fn logged_addr(&mut self, timeout: Duration, message: &str) -> SocketAddr {
        self.wait_for(timeout, &format!("{message:?} line"), |line| {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
                panic!("log line is not JSON ({e}): {line}");
            }
            logged_addr(line, message)
        })
    }

    /// The lines that have arrived since the last look, without waiting (also kept in
    /// `seen`).
    pub fn fresh(&mut self) -> Vec<String> {
        let new: Vec<String> = self.rx.try_iter().collect();
        self.seen.extend(new.iter().cloned());
        new
    }
}
