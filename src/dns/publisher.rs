//! The DNS publisher of one node, sans-IO: fed with this node's view of every master
//! (from its health checks), the zone as read and the results of its writes, all with
//! an injected `now`; it asks for reads and writes ([`Request`]) and wakes at
//! [`Publisher::poll_timeout`]. The shell performs the exchanges (signed, see
//! [`crate::dns::wire`]) and makes no decision.
//!
//! # A round
//!
//! Every change of this node's view, every `resync` and every `heartbeat` starts a
//! round: read the zone (the votes at the state name, the A and AAAA sets at the name),
//! then compute what should be there ([`crate::dns::votes::wanted`] over the votes
//! read, with this node's own vote replaced by its current one and expired votes
//! left out) and, if that differs from what was read, write the difference as one
//! UPDATE whose prerequisites are the exact sets just read (RFC 2136 §2.4.2, §2.4.3):
//! a compare-and-swap. When another node wrote in between, the server refuses it
//! (NXRRSET / YXRRSET) and the round starts again from a new read, so no write is
//! ever based on a stale read. Nothing that differs: nothing is sent (a restart with
//! nothing changed sends only reads).
//!
//! Only what apivip owns is changed: its own vote, expired votes (exact records), and
//! the addresses of configured masters. Other TXT records at the state name and other
//! addresses at the name are never touched (they are in the prerequisites, so a
//! change to them also restarts the round).
//!
//! # Timers
//!
//! - **Settle**: after start, no round until every master has a settled view, or
//!   `settle` passed (a master still unknown then is an abstention).
//! - **Resync**: a read every `resync` (expiry of votes, repair of a zone restored
//!   from an old file, catching up after the server was down).
//! - **Heartbeat**: this node's vote is rewritten with a higher `seq` every
//!   `heartbeat` (80-100 % of it, at random, so that nodes drift apart); a vote whose `seq` did not change for `stale_after` (on this node's
//!   own clock, across its reads) has expired and is deleted. No clock is compared
//!   between nodes.
//! - **Retry**: after a failed exchange, the round is retried after a backoff from
//!   `retry_min` doubling to `retry_max`, with jitter (50-100 %); servers are tried in
//!   turn. Up to [`MAX_CONFLICTS`] conflicts in a row retry at once, then back off.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};

use crate::dns::votes::{self, Fallback, Vote};
use crate::dns::wire::{Change, Prereq, Rdata};

/// Conflicts in a row (another writer won the compare-and-swap) retried at once.
pub const MAX_CONFLICTS: u32 = 5;

/// One master as published: its name and its addresses (of the published types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The name (a backend's name).
    pub name: String,
    /// What the name resolves to while this master is published.
    pub addrs: Vec<IpAddr>,
}

/// What the publisher needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The zone updates are sent to.
    pub zone: Name,
    /// The published name.
    pub name: Name,
    /// Where the votes live.
    pub state_name: Name,
    /// The TTL of what apivip writes, seconds.
    pub ttl: u32,
    /// This node's master name.
    pub node: String,
    /// Every master.
    pub masters: Vec<Master>,
    /// Votes needed to move a master in or out.
    pub quorum: usize,
    /// Which address types are published (A, AAAA).
    pub types: Vec<RecordType>,
    /// How long to wait for a settled view at start.
    pub settle: Duration,
    /// The periodic read.
    pub resync: Duration,
    /// The vote refresh.
    pub heartbeat: Duration,
    /// A vote unchanged this long has expired.
    pub stale_after: Duration,
    /// The first retry delay.
    pub retry_min: Duration,
    /// The longest retry delay.
    pub retry_max: Duration,
}

/// This node's view of one master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Its apiserver is ready (as this node's checks settled).
    Up,
    /// Not ready.
    Down,
    /// Not settled yet.
    Unknown,
}

/// The zone as read: every TXT record at the state name and the address sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneState {
    /// The TXT records at the state name (votes and anything else), as read.
    pub txt: Vec<Vec<Vec<u8>>>,
    /// The A records at the name.
    pub a: BTreeSet<Ipv4Addr>,
    /// The AAAA records at the name.
    pub aaaa: BTreeSet<Ipv6Addr>,
}

/// A request the shell performs, then answers with `handle_read` / `handle_write`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read the TXT set at the state name and the A / AAAA sets at the name.
    Read {
        /// Echo it back.
        id: u64,
        /// Which server (index in the configured list).
        server: usize,
    },
    /// Send this UPDATE (zone, prerequisites, changes) to the zone's server.
    Write {
        /// Echo it back.
        id: u64,
        /// Which server.
        server: usize,
        /// RFC 2136 prerequisites.
        prereqs: Vec<Prereq>,
        /// RFC 2136 changes.
        changes: Vec<Change>,
    },
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// Applied.
    Done,
    /// A prerequisite failed: someone wrote in between (NXRRSET, YXRRSET).
    Conflict,
}

/// Why an exchange failed, as the metrics and the log name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `timeout`, `unreachable`, `badkey`, `badsig`, `badtime`, `notauth`,
    /// `refused`, `servfail`, `notzone`, `formerr`, `unsigned`, `error`.
    pub kind: &'static str,
    /// The detail for the log.
    pub detail: String,
}

/// Something to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The records changed as this node wrote them.
    Published {
        /// Masters added.
        added: Vec<String>,
        /// Masters removed.
        removed: Vec<String>,
        /// Why, when a fallback decided.
        fallback: Option<&'static str>,
    },
    /// This node's vote was written (a change of its view, or the heartbeat).
    VoteWritten {
        /// Its `seq`.
        seq: u64,
    },
    /// Another node's vote expired and was deleted.
    VoteExpired {
        /// That node.
        node: String,
    },
    /// Another node wrote between our read and our write; the round starts again.
    Conflict,
    /// An exchange failed; retried after `retry_in`.
    Failed {
        /// Read or write.
        what: &'static str,
        /// The server's index.
        server: usize,
        /// What went wrong.
        failure: Failure,
        /// When it is tried again.
        retry_in: Duration,
    },
    /// A fallback keeps the name from being empty (logged once per change).
    Fallback {
        /// Why.
        reason: &'static str,
    },
}

/// What the status shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Masters published as last read or written.
    pub published: Vec<String>,
    /// Masters wanted by the last round.
    pub wanted: Vec<String>,
    /// This node's view.
    pub view: Vec<(String, View)>,
    /// The votes last read: node, seq, expired.
    pub votes: Vec<(String, u64, bool)>,
    /// The last write's time and result (`ok`, `conflict` or a failure kind).
    pub last_write: Option<(Instant, String)>,
    /// The last failure, if the last exchange failed.
    pub last_error: Option<Failure>,
}

/// What a write in flight makes of the zone if it applies.
#[derive(Debug)]
struct Pending {
    zone: ZoneState,
    before: BTreeSet<String>,
    after: BTreeSet<String>,
    fallback: Option<Fallback>,
    vote_written: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InFlight {
    Read(u64),
    Write(u64),
}

/// The publisher of one node.
#[derive(Debug)]
pub struct Publisher {
    plan: Plan,
    cfg: String,
    view: BTreeMap<String, View>,
    settled: bool,
    settle_until: Instant,
    in_flight: Option<InFlight>,
    /// A round is wanted once nothing is in flight.
    round_due: bool,
    /// The heartbeat is due: write the vote even if unchanged.
    heartbeat_due: bool,
    next_id: u64,
    server: usize,
    servers: usize,
    seq: u64,
    zone: Option<ZoneState>,
    /// Per other node: the seq seen and since when (this node's clock).
    seen: BTreeMap<String, (u64, Instant)>,
    /// What the last write, if it succeeds, makes the zone.
    pending: Option<Pending>,
    resync_at: Instant,
    heartbeat_at: Instant,
    retry_at: Option<Instant>,
    backoff: Duration,
    conflicts: u32,
    last_fallback: Option<Fallback>,
    rng: fastrand::Rng,
    requests: VecDeque<Request>,
    events: VecDeque<Event>,
    status: Status,
}

impl Publisher {
    /// A publisher for `plan` with `servers` servers, started at `now`; `seed` seeds
    /// the retry jitter.
    pub fn new(plan: Plan, servers: usize, now: Instant, seed: u64) -> Publisher {
        let fp: Vec<(String, Vec<IpAddr>)> = plan
            .masters
            .iter()
            .map(|m| (m.name.clone(), m.addrs.clone()))
            .collect();
        let cfg = votes::fingerprint(&fp, plan.quorum);
        let view = plan
            .masters
            .iter()
            .map(|m| (m.name.clone(), View::Unknown))
            .collect();
        let mut p = Publisher {
            settle_until: now + plan.settle,
            resync_at: now + plan.resync,
            heartbeat_at: now + plan.heartbeat,
            backoff: plan.retry_min,
            plan,
            cfg,
            view,
            settled: false,
            in_flight: None,
            round_due: true,
            heartbeat_due: false,
            next_id: 1,
            server: 0,
            servers: servers.max(1),
            seq: 0,
            zone: None,
            seen: BTreeMap::new(),
            pending: None,
            retry_at: None,
            conflicts: 0,
            last_fallback: None,
            rng: fastrand::Rng::with_seed(seed),
            requests: VecDeque::new(),
            events: VecDeque::new(),
            status: Status::default(),
        };
        p.heartbeat_at = now + p.next_heartbeat();
        p
    }

    /// The configuration fingerprint written into votes.
    pub fn fingerprint(&self) -> &str {
        &self.cfg
    }

    /// This node's view of `master` changed (or was settled for the first time).
    pub fn handle_view(&mut self, now: Instant, master: &str, view: View) {
        let Some(v) = self.view.get_mut(master) else {
            return;
        };
        if *v == view {
            return;
        }
        *v = view;
        self.round_due = true;
        self.drive(now);
    }

    /// A timer may have run out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.resync_at {
            self.resync_at = now + self.plan.resync;
            self.round_due = true;
        }
        if now >= self.heartbeat_at && !self.plan.heartbeat.is_zero() {
            self.heartbeat_at = now + self.next_heartbeat();
            self.heartbeat_due = true;
            self.round_due = true;
        }
        self.drive(now);
    }

    /// The answer to [`Request::Read`] `id`.
    pub fn handle_read(&mut self, now: Instant, id: u64, result: Result<ZoneState, Failure>) {
        if self.in_flight != Some(InFlight::Read(id)) {
            return;
        }
        self.in_flight = None;
        match result {
            Err(failure) => self.failed(now, "read", failure),
            Ok(zone) => {
                self.retry_at = None;
                self.backoff = self.plan.retry_min;
                self.status.last_error = None;
                self.after_read(now, zone);
            }
        }
        self.drive(now);
    }

    /// The answer to [`Request::Write`] `id`.
    pub fn handle_write(&mut self, now: Instant, id: u64, result: Result<WriteResult, Failure>) {
        if self.in_flight != Some(InFlight::Write(id)) {
            return;
        }
        self.in_flight = None;
        match result {
            Err(failure) => {
                self.pending = None;
                self.status.last_write = Some((now, failure.kind.to_owned()));
                self.failed(now, "write", failure);
            }
            Ok(WriteResult::Conflict) => {
                self.pending = None;
                self.status.last_write = Some((now, "conflict".to_owned()));
                self.events.push_back(Event::Conflict);
                self.conflicts += 1;
                if self.conflicts > MAX_CONFLICTS {
                    self.conflicts = 0;
                    let failure = Failure {
                        kind: "conflict",
                        detail: format!("{MAX_CONFLICTS} conflicts in a row"),
                    };
                    self.failed(now, "write", failure);
                } else {
                    self.round_due = true;
                }
            }
            Ok(WriteResult::Done) => {
                self.conflicts = 0;
                self.retry_at = None;
                self.backoff = self.plan.retry_min;
                self.status.last_error = None;
                self.status.last_write = Some((now, "ok".to_owned()));
                if let Some(Pending {
                    zone,
                    before,
                    after,
                    fallback,
                    vote_written,
                }) = self.pending.take()
                {
                    if vote_written {
                        self.events.push_back(Event::VoteWritten { seq: self.seq });
                        self.heartbeat_due = false;
                    }
                    let added: Vec<String> = after.difference(&before).cloned().collect();
                    let removed: Vec<String> = before.difference(&after).cloned().collect();
                    if !added.is_empty() || !removed.is_empty() {
                        self.events.push_back(Event::Published {
                            added,
                            removed,
                            fallback: fallback.map(Fallback::reason),
                        });
                    }
                    self.status.published = after.into_iter().collect();
                    self.zone = Some(zone);
                }
            }
        }
        self.drive(now);
    }

    /// The next request for the shell.
    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// The next event to log and count.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Publisher::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = vec![self.resync_at];
        if !self.plan.heartbeat.is_zero() {
            t.push(self.heartbeat_at);
        }
        if !self.settled {
            t.push(self.settle_until);
        }
        t.extend(self.retry_at);
        t.into_iter().min()
    }

    /// What the status shows.
    pub fn status(&self) -> Status {
        let mut s = self.status.clone();
        s.view = self.view.iter().map(|(k, v)| (k.clone(), *v)).collect();
        s
    }

    // --- inside ---

    fn failed(&mut self, now: Instant, what: &'static str, failure: Failure) {
        let jitter = 0.5 + self.rng.f64() * 0.5;
        let retry_in = self.backoff.mul_f64(jitter);
        self.backoff = (self.backoff * 2).min(self.plan.retry_max);
        self.retry_at = Some(now + retry_in);
        let server = self.server;
        // The next attempt goes to the next server (in turn; one server: the same).
        self.server = (self.server + 1) % self.servers;
        self.status.last_error = Some(failure.clone());
        self.events.push_back(Event::Failed {
            what,
            server,
            failure,
            retry_in,
        });
    }

    /// Starts a round when one is due and nothing stops it.
    fn drive(&mut self, now: Instant) {
        if !self.settled {
            let all_known = self.view.values().all(|v| *v != View::Unknown);
            if all_known || now >= self.settle_until {
                self.settled = true;
            } else {
                return;
            }
        }
        if let Some(at) = self.retry_at {
            if now < at {
                return;
            }
            self.retry_at = None;
            self.round_due = true;
        }
        if self.in_flight.is_some() || !self.round_due {
            return;
        }
        self.round_due = false;
        let id = self.take_id();
        self.in_flight = Some(InFlight::Read(id));
        self.requests.push_back(Request::Read {
            id,
            server: self.server,
        });
    }

    /// 80-100 % of `heartbeat`: nodes started together drift apart instead of
    /// writing at the same instant (and conflicting) forever.
    fn next_heartbeat(&mut self) -> Duration {
        self.plan.heartbeat.mul_f64(0.8 + self.rng.f64() * 0.2)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// This node's vote as it should be now, given its vote in the zone (if any).
    fn my_vote(&self, in_zone: Option<&Vote>) -> (Vote, bool) {
        let up: BTreeSet<String> = self
            .view
            .iter()
            .filter(|(_, v)| **v == View::Up)
            .map(|(k, _)| k.clone())
            .collect();
        let down: BTreeSet<String> = self
            .view
            .iter()
            .filter(|(_, v)| **v == View::Down)
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(v) = in_zone {
            if v.up == up && v.down == down && v.cfg == self.cfg && !self.heartbeat_due {
                return (v.clone(), false);
            }
        }
        // A vote with seq u64::MAX (written by anyone the policy lets write there)
        // leaves ours at the maximum: still the highest of this node's.
        let seq = in_zone.map_or(0, |v| v.seq).max(self.seq).saturating_add(1);
        (
            Vote {
                node: self.plan.node.clone(),
                seq,
                cfg: self.cfg.clone(),
                up,
                down,
            },
            true,
        )
    }

    fn published_masters(&self, zone: &ZoneState) -> BTreeSet<String> {
        self.plan
            .masters
            .iter()
            .filter(|m| m.addrs.iter().any(|a| has(zone, *a)))
            .map(|m| m.name.clone())
            .collect()
    }

    fn after_read(&mut self, now: Instant, zone: ZoneState) {
        // Votes found (parsed), mine aside; track seqs on our own clock.
        let parsed: Vec<(usize, Vote)> = zone
            .txt
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i, Vote::parse(t)?)))
            .collect();
        let mine_in_zone = parsed
            .iter()
            .filter(|(_, v)| v.node == self.plan.node)
            .max_by_key(|(_, v)| v.seq)
            .map(|(_, v)| v.clone());
        let mut expired: Vec<usize> = Vec::new();
        let mut live: Vec<Vote> = Vec::new();
        let mut seen_now = BTreeMap::new();
        self.status.votes.clear();
        for (i, v) in &parsed {
            if v.node == self.plan.node {
                continue;
            }
            let since = match self.seen.get(&v.node) {
                Some((seq, since)) if *seq == v.seq => *since,
                _ => now,
            };
            seen_now.insert(v.node.clone(), (v.seq, since));
            let is_expired = !self.plan.heartbeat.is_zero()
                && now.saturating_duration_since(since) >= self.plan.stale_after;
            self.status.votes.push((v.node.clone(), v.seq, is_expired));
            if is_expired {
                expired.push(*i);
            } else {
                live.push(v.clone());
            }
        }
        self.seen = seen_now;
        let (vote, vote_changed) = self.my_vote(mine_in_zone.as_ref());
        self.status.votes.push((vote.node.clone(), vote.seq, false));
        live.push(vote.clone());
        let published = self.published_masters(&zone);
        let names: Vec<String> = self.plan.masters.iter().map(|m| m.name.clone()).collect();
        let w = votes::wanted(&names, self.plan.quorum, &self.cfg, &live, &published);
        if w.fallback != self.last_fallback {
            if let Some(f) = w.fallback {
                self.events
                    .push_back(Event::Fallback { reason: f.reason() });
            }
            self.last_fallback = w.fallback;
        }
        self.status.wanted = w.masters.iter().cloned().collect();
        self.status.published = published.iter().cloned().collect();

        // The changes.
        let mut changes = Vec::new();
        let mut after = zone.clone();
        let mut expired_nodes = Vec::new();
        for i in &expired {
            let rdata = Rdata::Txt(zone.txt[*i].clone());
            changes.push(Change::Delete {
                name: self.plan.state_name.clone(),
                rdata,
            });
            after.txt.retain(|t| t != &zone.txt[*i]);
            if let Some(v) = Vote::parse(&zone.txt[*i]) {
                expired_nodes.push(v.node);
            }
        }
        if vote_changed {
            // Every vote of ours in the zone goes (there should be one).
            for t in zone.txt.iter() {
                if Vote::parse(t).is_some_and(|v| v.node == self.plan.node) {
                    changes.push(Change::Delete {
                        name: self.plan.state_name.clone(),
                        rdata: Rdata::Txt(t.clone()),
                    });
                    after.txt.retain(|x| x != t);
                }
            }
            let txt = vote.to_txt();
            changes.push(Change::Add {
                name: self.plan.state_name.clone(),
                ttl: self.plan.ttl,
                rdata: Rdata::Txt(txt.clone()),
            });
            after.txt.push(txt);
        }
        for m in &self.plan.masters {
            let want = w.masters.contains(&m.name);
            for addr in &m.addrs {
                if !self.publishes(*addr) {
                    continue;
                }
                let present = has(&zone, *addr);
                let rdata = match addr {
                    IpAddr::V4(a) => Rdata::A(*a),
                    IpAddr::V6(a) => Rdata::Aaaa(*a),
                };
                if want && !present {
                    changes.push(Change::Add {
                        name: self.plan.name.clone(),
                        ttl: self.plan.ttl,
                        rdata,
                    });
                    set_addr(&mut after, *addr, true);
                } else if !want && present {
                    changes.push(Change::Delete {
                        name: self.plan.name.clone(),
                        rdata,
                    });
                    set_addr(&mut after, *addr, false);
                }
            }
        }
        if changes.is_empty() {
            self.zone = Some(zone);
            return;
        }
        for node in expired_nodes {
            self.events.push_back(Event::VoteExpired { node });
        }
        if vote_changed {
            self.seq = vote.seq;
        }
        let prereqs = self.prereqs(&zone);
        let after_published = self.published_masters(&after);
        let id = self.take_id();
        self.in_flight = Some(InFlight::Write(id));
        self.pending = Some(Pending {
            zone: after,
            before: published,
            after: after_published,
            fallback: w.fallback,
            vote_written: vote_changed,
        });
        self.requests.push_back(Request::Write {
            id,
            server: self.server,
            prereqs,
            changes,
        });
    }

    fn publishes(&self, addr: IpAddr) -> bool {
        let t = if addr.is_ipv4() {
            RecordType::A
        } else {
            RecordType::AAAA
        };
        self.plan.types.contains(&t)
    }

    /// The exact sets read: the compare of the compare-and-swap.
    fn prereqs(&self, zone: &ZoneState) -> Vec<Prereq> {
        let mut p = vec![Prereq {
            name: self.plan.state_name.clone(),
            rtype: RecordType::TXT,
            exactly: zone.txt.iter().cloned().map(Rdata::Txt).collect(),
        }];
        if self.plan.types.contains(&RecordType::A) {
            p.push(Prereq {
                name: self.plan.name.clone(),
                rtype: RecordType::A,
                exactly: zone.a.iter().copied().map(Rdata::A).collect(),
            });
        }
        if self.plan.types.contains(&RecordType::AAAA) {
            p.push(Prereq {
                name: self.plan.name.clone(),
                rtype: RecordType::AAAA,
                exactly: zone.aaaa.iter().copied().map(Rdata::Aaaa).collect(),
            });
        }
        p
    }
}

fn has(zone: &ZoneState, addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => zone.a.contains(&a),
        IpAddr::V6(a) => zone.aaaa.contains(&a),
    }
}

fn set_addr(zone: &mut ZoneState, addr: IpAddr, present: bool) {
    match (addr, present) {
        (IpAddr::V4(a), true) => {
            zone.a.insert(a);
        }
        (IpAddr::V4(a), false) => {
            zone.a.remove(&a);
        }
        (IpAddr::V6(a), true) => {
            zone.aaaa.insert(a);
        }
        (IpAddr::V6(a), false) => {
            zone.aaaa.remove(&a);
        }
    }
}

#[cfg(test)]
mod tests;
