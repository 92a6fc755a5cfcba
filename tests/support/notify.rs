//! A stand-in for systemd's notification socket: a Unix datagram socket the test binds
//! and passes to `apivip run` as `NOTIFY_SOCKET`; every datagram is kept with the
//! instant it arrived.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// One datagram: when it arrived and its text (`KEY=value` lines).
#[derive(Debug, Clone)]
pub struct Message {
    /// When the reader thread received it.
    pub at: Instant,
    /// The datagram as text.
    pub text: String,
}

impl Message {
    /// Whether one of its lines is exactly `line` (e.g. `WATCHDOG=1`).
    pub fn has(&self, line: &str) -> bool {
        self.text.lines().any(|l| l == line)
    }

    /// The value of its `STATUS=` line, if any.
    pub fn status(&self) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix("STATUS="))
    }
}

/// The socket and everything received on it so far.
pub struct NotifySocket {
    path: PathBuf,
    rx: Receiver<Message>,
    seen: Vec<Message>,
}

impl NotifySocket {
    /// Binds `dir/notify.sock` (writable by anyone, so that a daemon running as another
    /// user can send) and starts reading it. The reader ends once this is dropped.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .expect("chmod the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        let m = Message {
                            at: Instant::now(),
                            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                        };
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        // Nothing for a while: end if the test has gone.
                        if tx
                            .send(Message {
                                at: Instant::now(),
                                text: String::new(),
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        NotifySocket {
            path,
            rx,
            seen: Vec::new(),
        }
    }

    /// The path to pass as `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn take(&mut self, m: Message) {
        // Empty messages are the reader's keep-alive, not datagrams.
        if !m.text.is_empty() {
            self.seen.push(m);
        }
    }

    /// Everything received so far.
    pub fn messages(&mut self) -> &[Message] {
        while let Ok(m) = self.rx.try_recv() {
            self.take(m);
        }
        &self.seen
    }

    /// Waits up to `timeout` for a message at index `from` or later that satisfies
    /// `pred`; returns its index.
    pub fn wait_for(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.messages().iter().skip(from).position(&pred) {
                return Some(from + i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Ok(m) = self.rx.recv_timeout(left) {
                self.take(m);
            }
        }
    }

    /// Every message received so far, one per line, for failure output.
    pub fn dump(&mut self) -> String {
        let start = self.messages().first().map(|m| m.at);
        self.seen
            .iter()
            .map(|m| {
                format!(
                    "+{:>7.3}s {:?}",
                    start.map_or(0.0, |s| m.at.duration_since(s).as_secs_f64()),
                    m.text
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
