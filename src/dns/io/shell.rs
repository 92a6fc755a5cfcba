//! The DNS publisher's task: it feeds [`Publisher`] with this node's apiserver health
//! and the results of the exchanges it asks for, and reports what happened. No
//! decision is made here.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio_util::sync::CancellationToken;

use crate::config::dns::Dns;
use crate::config::FrontendKind;
use crate::dns::io::exchange::{exchange, ExchangeError};
use crate::dns::publisher::{
    Event, Failure, Master, Plan, Publisher, Request, Status as PublisherStatus, View, WriteResult,
    ZoneState,
};
use crate::dns::wire::{self, Answer, Key, KeyRejection, Rdata};
use crate::health::{HealthSnapshot, HealthView, Status};

/// Counters of the DNS side, by result (`ok`, `conflict`, or a [`Failure`] kind).
#[derive(Debug, Default)]
pub struct DnsCounters {
    /// Reads and writes by kind (`read` / `write`) and result.
    pub requests: Mutex<std::collections::BTreeMap<(&'static str, String), u64>>,
    /// Addresses added and removed by this node's writes.
    pub changes: Mutex<(u64, u64)>,
}

/// What the admin API reads.
#[derive(Debug, Clone, Default)]
pub struct DnsHandle {
    status: Arc<Mutex<PublisherStatus>>,
    /// The counters.
    pub counters: Arc<DnsCounters>,
    /// The node this publisher votes as.
    pub node: String,
    /// Seconds added to the signing clock (fault injection, tests only).
    pub clock_offset: Arc<std::sync::atomic::AtomicI64>,
    /// The `dns:` section it runs with (a reload applies at the next restart).
    pub config: Option<Arc<Dns>>,
}

impl DnsHandle {
    /// The publisher's status.
    pub fn status(&self) -> PublisherStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Which backend this node is: `configured` (`dns.node`), or the backend whose IP is
/// one of this host's addresses `local`.
pub fn find_node(
    configured: Option<&str>,
    local: &[IpAddr],
    backends: &[(String, IpAddr)],
) -> Result<String, String> {
    if let Some(n) = configured {
        return Ok(n.to_owned());
    }
    let mine: Vec<&String> = backends
        .iter()
        .filter(|(_, ip)| local.contains(ip))
        .map(|(n, _)| n)
        .collect();
    match mine.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(
            "no backend address is assigned to this host; set dns.node to this node's backend name"
                .into(),
        ),
        many => Err(format!(
            "several backend addresses are assigned to this host ({}); set dns.node",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The addresses assigned to this host's interfaces.
pub fn local_addresses() -> Vec<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let s = a.address?;
                    s.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn plan(dns: &Dns, node: &str) -> Plan {
    Plan {
        zone: dns.zone.clone(),
        name: dns.name.clone(),
        state_name: dns.state_name.clone(),
        ttl: u32::try_from(dns.ttl.as_secs()).unwrap_or(u32::MAX),
        node: node.to_owned(),
        masters: dns
            .masters
            .iter()
            .map(|m| Master {
                name: m.name.clone(),
                addrs: m
                    .addrs
                    .iter()
                    .copied()
                    .filter(|a| {
                        let t = if a.is_ipv4() {
                            RecordType::A
                        } else {
                            RecordType::AAAA
                        };
                        dns.types.contains(&t)
                    })
                    .collect(),
            })
            .collect(),
        quorum: dns.quorum,
        types: dns.types.clone(),
        // Long enough for `rise` checks of every master and a timeout.
        settle: Duration::from_secs(15),
        resync: dns.resync,
        heartbeat: dns.heartbeat,
        stale_after: dns.stale_after,
        retry_min: Duration::from_millis(500),
        retry_max: dns.retry_max,
    }
}

/// This node's view of each master from the apiserver frontend's health.
fn views(snapshot: &HealthSnapshot) -> Vec<(String, View)> {
    snapshot
        .frontend(FrontendKind::Apiserver)
        .map(|f| {
            f.backends
                .iter()
                .map(|b| {
                    let v = match b.status {
                        Status::Unknown => View::Unknown,
                        Status::Up => View::Up,
                        Status::Down(_) => View::Down,
                    };
                    (b.name.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Starts the publisher for `node`; it runs until `stop` is cancelled.
pub fn spawn(
    dns: Dns,
    node: String,
    mut health: HealthView,
    stop: CancellationToken,
) -> Result<(DnsHandle, tokio::task::JoinHandle<()>), String> {
    let key = Key::new(
        &dns.tsig.key,
        dns.tsig.algorithm,
        dns.tsig.secret.bytes().to_vec(),
    )
    .map_err(|e| e.to_string())?;
    let handle = DnsHandle {
        node: node.clone(),
        config: Some(Arc::new(dns.clone())),
        ..DnsHandle::default()
    };
    let h = handle.clone();
    let stopping = stop.clone();
    let task = tokio::spawn(async move {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut p = Publisher::new(
            plan(&dns, &node),
            dns.servers.len(),
            std::time::Instant::now(),
            seed,
        );
        tracing::info!(
            name = %dns.name, zone = %dns.zone, node = %node, servers = ?dns.servers,
            "dns: publishing the name from the apiserver health (RFC 2136 + TSIG)"
        );
        let mut last_views: Vec<(String, View)> = Vec::new();
        let mut snapshot = health.current_and_mark_seen();
        loop {
            let now = std::time::Instant::now();
            let v = views(&snapshot);
            for (name, view) in &v {
                if !last_views.contains(&(name.clone(), *view)) {
                    p.handle_view(now, name, *view);
                }
            }
            last_views = v;
            p.handle_timeout(now);
            while let Some(req) = p.poll_request() {
                let offset = h.clock_offset.load(std::sync::atomic::Ordering::Relaxed);
                match req {
                    Request::Read { id, server } => {
                        let r = tokio::select! {
                            r = read(&dns, &key, server, offset) => r,
                            () = stop.cancelled() => return,
                        };
                        count(
                            &h,
                            "read",
                            &r.as_ref()
                                .map(|_| "ok".to_owned())
                                .map_err(|f| f.kind.to_owned()),
                        );
                        p.handle_read(std::time::Instant::now(), id, r);
                    }
                    Request::Write {
                        id,
                        server,
                        prereqs,
                        changes,
                    } => {
                        let m = wire::update(fastrand::u16(..), &dns.zone, &prereqs, &changes);
                        let r = tokio::select! {
                            r = exchange(dns.servers[server % dns.servers.len()], &key, m, unix_now(offset), dns.timeout) => r,
                            () = stop.cancelled() => return,
                        };
                        let r = write_result(r);
                        count(
                            &h,
                            "write",
                            &r.as_ref()
                                .map(|w| match w {
                                    WriteResult::Done => "ok".to_owned(),
                                    WriteResult::Conflict => "conflict".to_owned(),
                                })
                                .map_err(|f| f.kind.to_owned()),
                        );
                        p.handle_write(std::time::Instant::now(), id, r);
                    }
                }
                while let Some(e) = p.poll_event() {
                    report(&h, &e);
                }
            }
            while let Some(e) = p.poll_event() {
                report(&h, &e);
            }
            if let Ok(mut s) = h.status.lock() {
                *s = p.status();
            }
            let sleep = p
                .poll_timeout()
                .map(|t| t.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or(Duration::from_secs(1));
            tokio::select! {
                () = stop.cancelled() => return,
                changed = health.changed() => match changed {
                    Some(s) => snapshot = s,
                    None => return,
                },
                () = tokio::time::sleep(sleep) => {}
            }
        }
    });
    // The publisher ends only when stopped (or when the health view is gone, at
    // shutdown); anything else is a bug that must not go unnoticed.
    let watched = handle.clone();
    let watcher = tokio::spawn(async move {
        let ended = task.await;
        if stopping.is_cancelled() {
            return;
        }
        let why = match ended {
            Ok(()) => "it ended".to_owned(),
            Err(e) if e.is_panic() => "it panicked".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::error!(reason = %why, "dns: the publisher stopped; the name is no longer kept up to date until apivip restarts");
        if let Ok(mut s) = watched.status.lock() {
            s.last_error = Some(crate::dns::publisher::Failure {
                kind: "stopped",
                detail: format!("the publisher stopped ({why}); restart apivip"),
            });
        }
    });
    Ok((handle, watcher))
}

fn unix_now(offset: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    now.saturating_add_signed(offset)
}

fn count(h: &DnsHandle, what: &'static str, r: &Result<String, String>) {
    let result = match r {
        Ok(s) | Err(s) => s.clone(),
    };
    if let Ok(mut m) = h.counters.requests.lock() {
        *m.entry((what, result)).or_default() += 1;
    }
}

fn report(h: &DnsHandle, e: &Event) {
    match e {
        Event::Published {
            added,
            removed,
            fallback,
        } => {
            if let Ok(mut c) = h.counters.changes.lock() {
                c.0 += added.len() as u64;
                c.1 += removed.len() as u64;
            }
            tracing::info!(
                ?added,
                ?removed,
                fallback = fallback.unwrap_or(""),
                "dns: published masters changed"
            );
        }
        Event::VoteWritten { seq } => tracing::debug!(seq, "dns: vote written"),
        Event::VoteExpired { node } => {
            tracing::warn!(%node, "dns: the vote of {node} expired (its apivip stopped refreshing it); deleted")
        }
        Event::Conflict => tracing::debug!("dns: another node wrote meanwhile; reading again"),
        Event::Failed {
            what,
            server,
            failure,
            retry_in,
        } => tracing::warn!(
            what, server, kind = failure.kind, detail = %failure.detail, retry_in = ?retry_in,
            "dns: {what} failed: {}", failure.detail
        ),
        Event::Fallback { reason } => tracing::warn!("dns: {reason}"),
    }
}

/// The failure kind of an exchange error or an RCODE.
fn failure(e: &ExchangeError) -> Failure {
    let kind = match e {
        ExchangeError::KeyRejected {
            error: KeyRejection::BadKey,
            ..
        } => "badkey",
        ExchangeError::KeyRejected {
            error: KeyRejection::BadSig,
            ..
        } => "badsig",
        ExchangeError::Timeout {
            unsigned: Some(_), ..
        } => "unsigned",
        ExchangeError::Timeout { .. } => "timeout",
        ExchangeError::Unreachable(_) => "unreachable",
        ExchangeError::Wire(_) => "error",
    };
    Failure {
        kind,
        detail: e.to_string(),
    }
}

fn rcode_failure(a: &Answer) -> Option<Failure> {
    if let Some(skew) = a.clock_skew {
        return Some(Failure {
            kind: "badtime",
            detail: format!(
                "the server's clock and ours differ by {skew} s (more than the TSIG fudge); fix the time on this node or the server"
            ),
        });
    }
    let kind = match a.rcode {
        ResponseCode::NoError | ResponseCode::NXDomain => return None,
        ResponseCode::NotAuth => "notauth",
        ResponseCode::Refused => "refused",
        ResponseCode::ServFail => "servfail",
        ResponseCode::NotZone => "notzone",
        ResponseCode::FormErr => "formerr",
        _ => "error",
    };
    Some(Failure {
        kind,
        detail: format!("the server answered {}", a.rcode),
    })
}

fn write_result(r: Result<Answer, ExchangeError>) -> Result<WriteResult, Failure> {
    let a = r.map_err(|e| failure(&e))?;
    match a.rcode {
        ResponseCode::NXRRSet | ResponseCode::YXRRSet if a.clock_skew.is_none() => {
            Ok(WriteResult::Conflict)
        }
        _ => match rcode_failure(&a) {
            Some(f) => Err(f),
            None => Ok(WriteResult::Done),
        },
    }
}

/// The three signed reads of a round: TXT at the state name, A and AAAA at the name.
async fn read(dns: &Dns, key: &Key, server: usize, offset: i64) -> Result<ZoneState, Failure> {
    let server = dns.servers[server % dns.servers.len()];
    let mut zone = ZoneState::default();
    let mut asks = vec![(dns.state_name.clone(), RecordType::TXT)];
    for t in &dns.types {
        asks.push((dns.name.clone(), *t));
    }
    for (name, rtype) in asks {
        let m = wire::query(fastrand::u16(..), &name, rtype);
        let a = exchange(server, key, m, unix_now(offset), dns.timeout)
            .await
            .map_err(|e| failure(&e))?;
        if let Some(f) = rcode_failure(&a) {
            return Err(f);
        }
        for (owner, d) in a.records {
            if owner != name {
                continue;
            }
            match d {
                Rdata::Txt(t) => zone.txt.push(t),
                Rdata::A(x) => {
                    zone.a.insert(x);
                }
                Rdata::Aaaa(x) => {
                    zone.aaaa.insert(x);
                }
            }
        }
    }
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_is_configured_or_the_one_local_backend() {
        let backends = vec![
            ("m1".to_owned(), "198.18.0.11".parse().unwrap()),
            ("m2".to_owned(), "198.18.0.12".parse().unwrap()),
        ];
        let one: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "198.18.0.12".parse().unwrap()];
        assert_eq!(find_node(Some("m1"), &one, &backends), Ok("m1".into()));
        assert_eq!(find_node(None, &one, &backends), Ok("m2".into()));
        let none: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        assert!(find_node(None, &none, &backends)
            .unwrap_err()
            .contains("set dns.node"));
        let both: Vec<IpAddr> = vec![
            "198.18.0.11".parse().unwrap(),
            "198.18.0.12".parse().unwrap(),
        ];
        assert!(find_node(None, &both, &backends)
            .unwrap_err()
            .contains("m1, m2"));
    }
}
