//! Three publishers against a zone kept here with RFC 2136 semantics (exact-set
//! prerequisites, atomic changes), with an injected clock: who writes what, exactly.
//!
//! Test code: it reads the clock once for an origin and only adds durations to it.

use std::collections::BTreeMap;

use super::*;

const S: Duration = Duration::from_secs(1);

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11 + i as u8))
}

fn master(i: usize) -> String {
    format!("m{}", i + 1)
}

fn plan(node: usize) -> Plan {
    Plan {
        zone: name("cluster.example."),
        name: name("api.cluster.example."),
        state_name: name("_apivip.api.cluster.example."),
        ttl: 5,
        node: master(node),
        masters: (0..3)
            .map(|i| Master {
                name: master(i),
                addrs: vec![addr(i)],
            })
            .collect(),
        quorum: 2,
        types: vec![RecordType::A],
        settle: S * 5,
        resync: S * 10,
        heartbeat: S * 60,
        stale_after: S * 180,
        retry_min: S / 2,
        retry_max: S * 10,
    }
}

/// The zone: RRsets by (owner, type).
#[derive(Debug, Default, Clone)]
struct Zone {
    sets: BTreeMap<(String, u16), BTreeSet<Rdata>>,
    up: bool,
}

impl Zone {
    fn set(&self, n: &Name, t: RecordType) -> BTreeSet<Rdata> {
        self.sets
            .get(&(n.to_ascii(), u16::from(t)))
            .cloned()
            .unwrap_or_default()
    }

    fn read(&self, p: &Plan) -> ZoneState {
        let txt = self
            .set(&p.state_name, RecordType::TXT)
            .into_iter()
            .filter_map(|d| match d {
                Rdata::Txt(t) => Some(t),
                _ => None,
            })
            .collect();
        let a = self
            .set(&p.name, RecordType::A)
            .into_iter()
            .filter_map(|d| match d {
                Rdata::A(a) => Some(a),
                _ => None,
            })
            .collect();
        ZoneState {
            txt,
            a,
            aaaa: BTreeSet::new(),
        }
    }

    /// RFC 2136 §3.2 then §3.4: every prerequisite holds, or nothing changes.
    fn update(&mut self, prereqs: &[Prereq], changes: &[Change]) -> WriteResult {
        for p in prereqs {
            let want: BTreeSet<Rdata> = p.exactly.iter().cloned().collect();
            if self.set(&p.name, p.rtype) != want {
                return WriteResult::Conflict;
            }
        }
        for c in changes {
            match c {
                Change::Add { name, rdata, .. } => {
                    self.sets
                        .entry((name.to_ascii(), u16::from(rdata.rtype())))
                        .or_default()
                        .insert(rdata.clone());
                }
                Change::Delete { name, rdata } => {
                    if let Some(s) = self
                        .sets
                        .get_mut(&(name.to_ascii(), u16::from(rdata.rtype())))
                    {
                        s.remove(rdata);
                    }
                }
            }
        }
        WriteResult::Done
    }

    fn addrs(&self) -> Vec<IpAddr> {
        self.set(&name("api.cluster.example."), RecordType::A)
            .into_iter()
            .filter_map(|d| match d {
                Rdata::A(a) => Some(IpAddr::V4(a)),
                _ => None,
            })
            .collect()
    }

    fn votes(&self) -> Vec<Vote> {
        self.set(&name("_apivip.api.cluster.example."), RecordType::TXT)
            .into_iter()
            .filter_map(|d| match d {
                Rdata::Txt(t) => Vote::parse(&t),
                _ => None,
            })
            .collect()
    }
}

struct Sim {
    t0: Instant,
    now: Instant,
    zone: Zone,
    nodes: Vec<Option<Publisher>>,
    writes: Vec<usize>,
    reads: Vec<usize>,
    events: Vec<(usize, Event)>,
}

impl Sim {
    fn new() -> Sim {
        let t0 = Instant::now();
        let nodes = (0..3)
            .map(|i| Some(Publisher::new(plan(i), 1, t0, i as u64)))
            .collect();
        Sim {
            t0,
            now: t0,
            zone: Zone {
                up: true,
                ..Zone::default()
            },
            nodes,
            writes: vec![0; 3],
            reads: vec![0; 3],
            events: Vec::new(),
        }
    }

    /// Node `i` sees `views[j]` for master j.
    fn view(&mut self, i: usize, views: [View; 3]) {
        let now = self.now;
        if let Some(p) = self.nodes[i].as_mut() {
            for (j, v) in views.into_iter().enumerate() {
                p.handle_view(now, &master(j), v);
            }
        }
        self.serve();
    }

    /// Performs every request at once, node by node, until none is left.
    fn serve(&mut self) {
        for _ in 0..1000 {
            let mut any = false;
            for i in 0..3 {
                let Some(p) = self.nodes[i].as_mut() else {
                    continue;
                };
                while let Some(e) = p.poll_event() {
                    self.events.push((i, e));
                }
                let Some(req) = p.poll_request() else {
                    continue;
                };
                any = true;
                match req {
                    Request::Read { id, .. } => {
                        self.reads[i] += 1;
                        let r = if self.zone.up {
                            Ok(self.zone.read(&plan(i)))
                        } else {
                            Err(Failure {
                                kind: "timeout",
                                detail: "down".into(),
                            })
                        };
                        p.handle_read(self.now, id, r);
                    }
                    Request::Write {
                        id,
                        prereqs,
                        changes,
                        ..
                    } => {
                        self.writes[i] += 1;
                        let r = if self.zone.up {
                            Ok(self.zone.update(&prereqs, &changes))
                        } else {
                            Err(Failure {
                                kind: "timeout",
                                detail: "down".into(),
                            })
                        };
                        p.handle_write(self.now, id, r);
                    }
                }
            }
            if !any {
                return;
            }
        }
        panic!("the publishers never settled");
    }

    /// Runs timers until `offset` after t0.
    fn run_until(&mut self, offset: Duration) {
        let limit = self.t0 + offset;
        for _ in 0..100_000 {
            let next = self
                .nodes
                .iter()
                .flatten()
                .filter_map(Publisher::poll_timeout)
                .min();
            match next {
                Some(t) if t <= limit => {
                    self.now = t.max(self.now);
                    for p in self.nodes.iter_mut().flatten() {
                        p.handle_timeout(self.now);
                    }
                    self.serve();
                }
                _ => {
                    self.now = limit;
                    return;
                }
            }
        }
        panic!("timers never quiet");
    }

    fn all_see(&mut self, views: [View; 3]) {
        for i in 0..3 {
            self.view(i, views);
        }
    }

    fn published(&self) -> Vec<IpAddr> {
        self.zone.addrs()
    }

    fn total_writes(&self) -> usize {
        self.writes.iter().sum()
    }
}

use View::{Down, Up};

/// Start: nothing is read or written until each node's view is settled; then every
/// node writes its vote and the three addresses appear; nothing more is written
/// until the heartbeat.
#[test]
fn three_nodes_publish_the_ready_masters_and_then_stay_quiet() {
    let mut sim = Sim::new();
    sim.serve();
    assert_eq!(sim.reads, [0, 0, 0], "no round before the view settles");
    sim.all_see([Up, Up, Up]);
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
    assert_eq!(sim.zone.votes().len(), 3);
    assert_eq!(sim.writes, [1, 1, 1]);
    // Resyncs read, nothing changes.
    sim.run_until(S * 47);
    assert_eq!(sim.total_writes(), 3);
    assert!(sim.reads.iter().all(|r| *r >= 4), "{:?}", sim.reads);
    // The heartbeat (48-60 s) rewrites each vote once, with a higher seq, and nothing
    // else.
    sim.run_until(S * 61);
    assert_eq!(sim.writes, [2, 2, 2]);
    assert!(sim.zone.votes().iter().all(|v| v.seq == 2));
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
}

/// The first node writes the addresses as it sees them (fewer votes than the quorum:
/// unanimity of those present); the others only add their votes.
#[test]
fn the_first_writer_publishes_and_the_others_agree() {
    let mut sim = Sim::new();
    sim.view(0, [Up, Up, Up]);
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
    let published: Vec<_> = sim
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Published { .. }))
        .collect();
    assert_eq!(published.len(), 1);
    sim.view(1, [Up, Up, Up]);
    sim.view(2, [Up, Up, Up]);
    assert_eq!(sim.writes, [1, 1, 1]);
}

/// A master's apiserver turns not ready, seen so by all: it is removed by the
/// second vote that says so; back up, it returns.
#[test]
fn a_not_ready_master_is_removed_and_returns() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    sim.view(0, [Up, Down, Up]);
    assert_eq!(
        sim.published(),
        [addr(0), addr(1), addr(2)],
        "one vote is not a quorum"
    );
    sim.view(2, [Up, Down, Up]);
    assert_eq!(sim.published(), [addr(0), addr(2)]);
    sim.view(1, [Up, Down, Up]);
    assert_eq!(sim.published(), [addr(0), addr(2)]);
    for i in 0..3 {
        sim.view(i, [Up, Up, Up]);
    }
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
}

/// m2 crashes (its publisher is gone, its vote stays): m1 and m3 see it down; it is
/// removed by the second of them. Its vote expires after `stale_after` and is deleted.
#[test]
fn a_crashed_master_is_removed_and_its_vote_expires() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    sim.nodes[1] = None;
    sim.view(0, [Up, Down, Up]);
    assert_eq!(sim.published().len(), 3);
    sim.view(2, [Up, Down, Up]);
    assert_eq!(sim.published(), [addr(0), addr(2)]);
    assert_eq!(sim.zone.votes().len(), 3);
    sim.run_until(S * 179);
    assert_eq!(sim.zone.votes().len(), 3);
    sim.run_until(S * 200);
    let nodes: Vec<String> = sim.zone.votes().into_iter().map(|v| v.node).collect();
    assert_eq!(nodes, ["m1", "m3"]);
    assert!(sim
        .events
        .iter()
        .any(|(_, e)| *e == Event::VoteExpired { node: "m2".into() }));
    assert_eq!(sim.published(), [addr(0), addr(2)]);
}

/// m1 and m2 cannot reach each other, m3 reaches both: two vote writes, no address
/// change; healed, two more, still none.
#[test]
fn a_partition_between_two_masters_moves_no_address() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    let before = sim.total_writes();
    sim.view(0, [Up, Down, Up]);
    sim.view(1, [Down, Up, Up]);
    assert_eq!(sim.total_writes(), before + 2);
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
    sim.view(0, [Up, Up, Up]);
    sim.view(1, [Up, Up, Up]);
    assert_eq!(sim.total_writes(), before + 4);
    assert!(!sim
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Published { removed, .. } if !removed.is_empty())));
}

/// Every master down: the name keeps its addresses, and the reason is an event.
#[test]
fn all_masters_down_keep_the_name_and_say_why() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    sim.all_see([Down, Down, Down]);
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
    assert!(sim.events.iter().any(|(_, e)| matches!(
        e,
        Event::Fallback { reason } if reason.contains("never left empty")
    )));
}

/// Two nodes read the same zone and both write: the second write's prerequisites fail
/// (a conflict), it reads again and its write then applies.
#[test]
fn a_concurrent_write_is_a_conflict_and_the_round_starts_again() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    let now = sim.now;
    let (mut a, mut b) = (sim.nodes[0].take().unwrap(), sim.nodes[2].take().unwrap());
    a.handle_view(now, "m2", Down);
    b.handle_view(now, "m2", Down);
    let (Some(Request::Read { id: ra, .. }), Some(Request::Read { id: rb, .. })) =
        (a.poll_request(), b.poll_request())
    else {
        panic!("two reads");
    };
    a.handle_read(now, ra, Ok(sim.zone.read(&plan(0))));
    b.handle_read(now, rb, Ok(sim.zone.read(&plan(2))));
    let Some(Request::Write {
        id: wa,
        prereqs: pa,
        changes: ca,
        ..
    }) = a.poll_request()
    else {
        panic!("a writes");
    };
    let Some(Request::Write {
        id: wb,
        prereqs: pb,
        changes: cb,
        ..
    }) = b.poll_request()
    else {
        panic!("b writes");
    };
    let ra = sim.zone.update(&pa, &ca);
    let rb = sim.zone.update(&pb, &cb);
    assert_eq!((ra, rb), (WriteResult::Done, WriteResult::Conflict));
    a.handle_write(now, wa, Ok(ra));
    b.handle_write(now, wb, Ok(rb));
    assert_eq!(b.poll_event(), Some(Event::Conflict));
    sim.nodes[0] = Some(a);
    sim.nodes[2] = Some(b);
    sim.serve();
    assert_eq!(sim.published(), [addr(0), addr(2)]);
    let m3 = sim
        .zone
        .votes()
        .into_iter()
        .find(|v| v.node == "m3")
        .unwrap();
    assert!(m3.down.contains("m2"));
}

/// A restarted node whose view matches its vote in the zone writes nothing.
#[test]
fn a_restart_with_nothing_changed_writes_nothing() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    let before = sim.total_writes();
    sim.nodes[0] = Some(Publisher::new(plan(0), 1, sim.now, 9));
    sim.view(0, [Up, Up, Up]);
    assert_eq!(sim.total_writes(), before);
    assert!(sim.reads[0] >= 2);
}

/// Records apivip did not write, at the name and at the state name, are never
/// touched, and a change to them restarts the round (they are in the prerequisites).
#[test]
fn foreign_records_are_never_touched() {
    let mut sim = Sim::new();
    let foreign_a = Rdata::A(Ipv4Addr::new(198, 18, 0, 99));
    let foreign_txt = Rdata::Txt(vec![b"owned-by-someone-else".to_vec()]);
    sim.zone.update(
        &[],
        &[
            Change::Add {
                name: name("api.cluster.example."),
                ttl: 5,
                rdata: foreign_a.clone(),
            },
            Change::Add {
                name: name("_apivip.api.cluster.example."),
                ttl: 5,
                rdata: foreign_txt.clone(),
            },
        ],
    );
    sim.all_see([Up, Up, Up]);
    sim.all_see([Up, Down, Down]);
    assert!(sim
        .zone
        .set(&name("api.cluster.example."), RecordType::A)
        .contains(&foreign_a));
    assert!(sim
        .zone
        .set(&name("_apivip.api.cluster.example."), RecordType::TXT)
        .contains(&foreign_txt));
    assert_eq!(
        sim.published(),
        [addr(0), IpAddr::V4(Ipv4Addr::new(198, 18, 0, 99))]
    );
}

/// The server down: each node retries with a growing, jittered backoff (never beyond
/// `retry_max`), keeps what it knew, and catches up when the server is back.
#[test]
fn a_server_outage_backs_off_and_catches_up() {
    let mut sim = Sim::new();
    sim.all_see([Up, Up, Up]);
    sim.zone.up = false;
    sim.all_see([Up, Down, Up]);
    sim.run_until(S * 40);
    let retries: Vec<Duration> = sim
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Failed { retry_in, .. } if *i == 0 => Some(*retry_in),
            _ => None,
        })
        .collect();
    assert!(retries.len() >= 4, "{retries:?}");
    assert!(retries[0] >= S / 4 && retries[0] <= S / 2, "{retries:?}");
    assert!(retries.iter().all(|r| *r <= S * 10), "{retries:?}");
    assert!(
        retries.windows(2).take(3).all(|w| w[1] > w[0] / 2),
        "{retries:?}"
    );
    assert_eq!(sim.published(), [addr(0), addr(1), addr(2)]);
    let status = sim.nodes[0].as_ref().unwrap().status();
    assert_eq!(status.last_error.as_ref().map(|f| f.kind), Some("timeout"));
    sim.zone.up = true;
    sim.run_until(S * 52);
    assert_eq!(sim.published(), [addr(0), addr(2)]);
    assert_eq!(sim.nodes[0].as_ref().unwrap().status().last_error, None);
}

/// A zone restored from a file without apivip's records (a fresh zone): the next
/// resync rebuilds the votes and the set.
#[test]
fn a_fresh_zone_is_rebuilt_at_the_next_resync() {
    let mut sim = Sim::new();
    sim.all_see([Up, Down, Up]);
    assert_eq!(sim.published(), [addr(0), addr(2)]);
    sim.zone.sets.clear();
    sim.run_until(S * 11);
    assert_eq!(sim.zone.votes().len(), 3);
    assert_eq!(sim.published(), [addr(0), addr(2)]);
}
