//! The CLI side of the admin endpoint: `apivip status`, `handover`, `resume`, `drain`
//! and `undrain` talk to the local daemon over HTTP, and the status screen.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::admin::status::{StatusDoc, VrrpDoc};

/// Exit code: the daemon is not running, or its admin endpoint is off.
pub const EXIT_NOT_RUNNING: u8 = 3;
/// Exit code: the daemon runs but is unhealthy or not ready.
pub const EXIT_UNHEALTHY: u8 = 4;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens there: the daemon is not running, or `admin.listen` is off.
    #[error("apivip is not running at {addr} (or its admin endpoint is off): {source}")]
    NotRunning {
        /// Where.
        addr: SocketAddr,
        /// The connect error.
        source: std::io::Error,
    },
    /// The request failed midway or timed out.
    #[error("admin endpoint {addr}: {message}")]
    Failed {
        /// Where.
        addr: SocketAddr,
        /// What happened.
        message: String,
    },
}

/// One HTTP request to the admin endpoint; returns the status code and the body.
pub async fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    let failed = |message: String| ClientError::Failed { addr, message };
    let stream = tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| failed("connect timed out".to_owned()))?
        .map_err(|source| ClientError::NotRunning { addr, source })?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| format!("uid {}", nix::unistd::getuid()));
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(
            "x-apivip-user",
            format!("{user} (apivip cli pid {})", std::process::id()),
        )
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| failed(e.to_string()))?;
    let result = tokio::time::timeout(timeout, async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let code = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    })
    .await
    .unwrap_or_else(|_| Err(failed("timed out".to_owned())));
    conn.abort();
    result
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// A rough age: `4s`, `12m`, `3h05m`, `2d04h`.
pub fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{:02}h", s / 86400, (s / 3600) % 24),
    }
}

/// The status screen for a person (times are UTC).
pub fn render(doc: &StatusDoc) -> String {
    let now = doc.daemon.now_ms;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "apivip {} ({}) · config {} · up {} · {}",
        doc.daemon.version,
        doc.daemon.commit,
        doc.daemon.config,
        age(now.saturating_sub(doc.daemon.started_ms)),
        if doc.ready {
            "ready".to_owned()
        } else {
            format!("NOT READY: {}", doc.not_ready.join("; "))
        }
    );
    if let Some(r) = &doc.last_reload {
        if r.ok {
            let _ = writeln!(
                o,
                "last reload {} ({} ago): applied, {} change(s)",
                clock(r.at_ms),
                age(now.saturating_sub(r.at_ms)),
                r.lines.len()
            );
        } else {
            let _ = writeln!(
                o,
                "LAST RELOAD FAILED {} ({} ago): {}",
                clock(r.at_ms),
                age(now.saturating_sub(r.at_ms)),
                if r.applied {
                    "the file is applied except for the last line"
                } else {
                    "running on the previous config"
                }
            );
            for l in &r.lines {
                let _ = writeln!(o, "  {l}");
            }
        }
    }
    // Documents from before several instances have only `vrrp`.
    let instances = if doc.vrrp_instances.is_empty() {
        doc.vrrp.iter().cloned().collect()
    } else {
        doc.vrrp_instances.clone()
    };
    if instances.is_empty() {
        let _ = writeln!(o, "\nVRRP: not configured (no VIP on this node)");
    }
    let several = instances.len() > 1;
    for v in &instances {
        render_vrrp(&mut o, v, now, several);
    }
    for f in &doc.frontends {
        let _ = writeln!(
            o,
            "\n{} on {}: {} active / {} max · {} accepted · {} rejected at the limit · {} with no backend",
            f.name,
            if f.listen.is_empty() { "(no listener)".to_owned() } else { f.listen.join(", ") },
            f.active_connections,
            f.max_connections,
            f.connections_total,
            f.rejected_total,
            f.no_backend_total
        );
        let refused: Vec<String> = f
            .refused
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        if !refused.is_empty() {
            let _ = writeln!(
                o,
                "  refused or closed by the abuse limits: {}",
                refused.join(", ")
            );
        }
        if f.rebalanced_total > 0 {
            let _ = writeln!(
                o,
                "  {} connections moved to a less loaded master (rebalance)",
                f.rebalanced_total
            );
        }
        if f.local_outage {
            let _ = writeln!(o, "  LOCAL OUTAGE: most masters turned down at once from this node; keeping their connections (30 s at most)");
        }
        if let Some(e) = &f.accept_error {
            let _ = writeln!(
                o,
                "  ACCEPT FAILING: {e} (this node does not claim it can serve)"
            );
        }
        let _ = writeln!(
            o,
            "  {:<12} {:<24} {:<12} {:<16} {:>6}  LAST REASON",
            "BACKEND", "ADDRESS", "STATE", "SINCE", "CONNS"
        );
        for b in &f.backends {
            let since = b
                .since_ms
                .map(|s| format!("{} ({})", clock(s), age(now.saturating_sub(s))))
                .unwrap_or_else(|| "-".to_owned());
            let _ = writeln!(
                o,
                "  {:<12} {:<24} {:<12} {:<16} {:>6}  {}",
                b.name, b.address, b.state, since, b.active_connections, b.reason
            );
        }
        let drained: Vec<&str> = f
            .backends
            .iter()
            .filter(|b| b.drained)
            .map(|b| b.name.as_str())
            .collect();
        if !drained.is_empty() {
            let _ = writeln!(o, "  drained: {} (apivip undrain NAME)", drained.join(", "));
        }
    }
    if let Some(d) = &doc.dns {
        let _ = writeln!(
            o,
            "\ndns {} (zone {}, servers {}), voting as {}:",
            d.name,
            d.zone,
            d.servers.join(" "),
            d.node
        );
        let _ = writeln!(
            o,
            "  published {} [{}] · wanted {}",
            d.published.join(" "),
            d.published_addresses.join(" "),
            d.wanted.join(" ")
        );
        let view: Vec<String> = d.view.iter().map(|(m, v)| format!("{m} {v}")).collect();
        let _ = writeln!(o, "  this node sees: {}", view.join(" · "));
        let votes: Vec<String> = d
            .votes
            .iter()
            .map(|v| {
                format!(
                    "{}#{}{}",
                    v.node,
                    v.seq,
                    if v.expired { " (expired)" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(o, "  votes: {}", votes.join(" "));
        match &d.last_write {
            Some(w) => {
                let _ = writeln!(o, "  last write: {} at {} UTC", w.result, clock(w.at_ms));
            }
            None => {
                let _ = writeln!(o, "  last write: none since start");
            }
        }
        if let Some(e) = &d.last_error {
            let _ = writeln!(o, "  failing: {e}");
        }
    }
    if !doc.notify.is_empty() {
        let _ = writeln!(o, "\nnotify hooks:");
        for h in &doc.notify {
            let runs: Vec<String> = h.runs.iter().map(|(r, n)| format!("{r} {n}")).collect();
            let _ = writeln!(
                o,
                "  {:<12} {} · dropped {}  {}",
                h.name,
                runs.join(" · "),
                h.dropped,
                h.command
            );
        }
    }
    let _ = writeln!(o, "\nlast {} events (UTC):", doc.events.len());
    for e in doc.events.iter().rev() {
        let kind = match e.kind {
            crate::events::EventKind::Vrrp => "vrrp",
            crate::events::EventKind::Backend => "backend",
            crate::events::EventKind::Control => "control",
        };
        let _ = writeln!(
            o,
            "  {}  {:<8} {:<44} {}",
            clock(e.at_ms),
            kind,
            e.what,
            e.reason
        );
    }
    o
}

fn render_vrrp(o: &mut String, v: &VrrpDoc, now: u64, named: bool) {
    let since = v
        .since_ms
        .map(|s| {
            format!(
                " since {} UTC ({} ago)",
                clock(s),
                age(now.saturating_sub(s))
            )
        })
        .unwrap_or_default();
    let reason = v
        .reason
        .as_deref()
        .map(|r| format!(", because {r}"))
        .unwrap_or_default();
    // With several instances each is named (and its sync group given).
    let name = match (named, &v.sync_group) {
        (false, _) => String::new(),
        (true, None) => format!(" {}", v.name),
        (true, Some(g)) => format!(" {} (sync group {g})", v.name),
    };
    let _ = writeln!(
        o,
        "\nVRRP{name} vrid {} on {}: {}{since}{reason}",
        v.vrid,
        v.interface,
        v.state.to_uppercase()
    );
    if !v.faults.is_empty() {
        let _ = writeln!(
            o,
            "  FAULT: {} (out of the election until it clears)",
            v.faults.join(", ")
        );
    }
    for vip in &v.vips {
        let present = match vip.present {
            Some(true) => "present on this node",
            Some(false) => "not on this node",
            None => "unknown (netlink unreadable)",
        };
        let _ = writeln!(o, "  VIP {}: {present}", vip.address);
    }
    let lowered = match v.lowered_by.as_deref() {
        Some("cannot_serve") => " · lowered: this node cannot serve (health_weight)".to_owned(),
        Some("maintenance") => " · lowered: maintenance (apivip resume to end it)".to_owned(),
        Some("handover") => " · lowered: handover in progress".to_owned(),
        Some(other) => format!(" · lowered: {other}"),
        None => String::new(),
    };
    let _ = writeln!(
        o,
        "  priority {} (configured {}){lowered}",
        v.effective_priority, v.priority
    );
    let _ = writeln!(
        o,
        "  master {} · masters heard {}{} · advert {} ms, master down after {} ms",
        v.master.as_deref().unwrap_or("unknown"),
        v.masters_heard,
        if v.masters_heard > 1 {
            " (TWO HOLDERS?)"
        } else {
            ""
        },
        v.advert_interval_ms,
        v.master_down_interval_ms
    );
    if v.peers.is_empty() {
        let _ = writeln!(o, "  peers heard: none");
    }
    for p in &v.peers {
        let _ = writeln!(
            o,
            "  peer {} priority {} · heard {} ms ago · {} adverts",
            p.address, p.priority, p.last_heard_ms_ago, p.adverts
        );
    }
    let c = &v.counters;
    let dropped: u64 = c.dropped.values().sum();
    let reasons: Vec<String> = c
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(
        o,
        "  adverts sent {} · received {} · dropped {}{}",
        c.adverts_sent,
        c.adverts_received,
        dropped,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
}
