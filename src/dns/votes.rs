//! Who is published: every node's vote, kept in the zone itself, and the rule that
//! turns the votes into the wanted record set. Pure: the same zone contents give every
//! node the same answer, so two writers never disagree about what the name should be.
//!
//! # Votes
//!
//! Each apivip node keeps one TXT record at the state name (`_apivip.NAME` by default)
//! with what its own health checks see, one character-string per token:
//!
//! ```text
//! "apivip=1" "node=master-1" "seq=42" "cfg=3f2a9c1b" "up=master-1" "up=master-3" "down=master-2"
//! ```
//!
//! `node` is the writer (a configured master), `seq` grows with every write (a
//! heartbeat bumps it), `cfg` names the configuration (masters, addresses, quorum)
//! so that nodes with different configs do not mix, `up`/`down` are the masters whose
//! apiserver it sees ready / not ready; a master it has no settled view of yet is
//! in neither (an abstention). A TXT record that does not start with `apivip=1`, or
//! names an unknown node, is not a vote and is never touched.
//!
//! # The rule ([`wanted`])
//!
//! With `q` the quorum and `n` the votes present (one per node, the configured ones
//! with our `cfg`), for each master, `u` votes say up and `d` say down:
//!
//! - `n >= q`: **in** when `u >= q` and `u > d`; **out** when `d >= q` and `d > u`;
//!   otherwise it **keeps** its published state.
//! - `n < q` (bootstrap, a fresh zone): in when `u >= 1` and `d == 0`, out when
//!   `d >= 1` and `u == 0`, otherwise keep.
//!
//! Wanted = in ∪ (keep ∩ published). A partition between two masters leaves each of
//! them with the third's vote and its own (2 of 3 up): nothing changes. A crashed
//! master's last vote still says it is up, but the two others say down (2 > 1): it is
//! removed as soon as the second of them has seen `fall` failed checks.
//!
//! The name is never left empty: when nothing is wanted, the published masters stay
//! ([`Fallback::KeptPublished`]: every master is down as far as the quorum sees);
//! with nothing published either, the masters that have a vote (their apivip runs:
//! at `kubeadm init` only the first master's) ([`Fallback::Voters`]), else every
//! configured master ([`Fallback::AllMasters`]).

use std::collections::{BTreeMap, BTreeSet};

/// The first token of every vote, with the format's version.
pub const MARK: &str = "apivip=1";

/// One node's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The writer: a configured master's name.
    pub node: String,
    /// Grows with every write of this vote.
    pub seq: u64,
    /// The configuration's fingerprint ([`fingerprint`]).
    pub cfg: String,
    /// Masters the writer sees ready.
    pub up: BTreeSet<String>,
    /// Masters the writer sees not ready.
    pub down: BTreeSet<String>,
}

impl Vote {
    /// The TXT record's character-strings. A master's name is at most 63 bytes
    /// (validated), so no string exceeds the 255-byte limit.
    pub fn to_txt(&self) -> Vec<Vec<u8>> {
        let mut out = vec![
            MARK.as_bytes().to_vec(),
            format!("node={}", self.node).into_bytes(),
            format!("seq={}", self.seq).into_bytes(),
            format!("cfg={}", self.cfg).into_bytes(),
        ];
        out.extend(self.up.iter().map(|m| format!("up={m}").into_bytes()));
        out.extend(self.down.iter().map(|m| format!("down={m}").into_bytes()));
        out
    }

    /// Reads a TXT record's character-strings; `None` if it is not a vote (foreign,
    /// or malformed: never trusted, never deleted).
    pub fn parse(strings: &[Vec<u8>]) -> Option<Vote> {
        let mut tokens = strings.iter().map(|s| std::str::from_utf8(s).ok());
        if tokens.next()?? != MARK {
            return None;
        }
        let (mut node, mut seq, mut cfg) = (None, None, None);
        let (mut up, mut down) = (BTreeSet::new(), BTreeSet::new());
        for token in tokens {
            let (key, value) = token?.split_once('=')?;
            if value.is_empty() {
                return None;
            }
            match key {
                "node" => node = Some(value.to_owned()),
                "seq" => seq = Some(value.parse().ok()?),
                "cfg" => cfg = Some(value.to_owned()),
                "up" => {
                    up.insert(value.to_owned());
                }
                "down" => {
                    down.insert(value.to_owned());
                }
                // Newer writers may add tokens: ignored.
                _ => {}
            }
        }
        if !up.is_disjoint(&down) {
            return None;
        }
        Some(Vote {
            node: node?,
            seq: seq?,
            cfg: cfg?,
            up,
            down,
        })
    }
}

/// A short fingerprint of what every node must agree on for votes to mix: the masters
/// (name and published addresses, in order) and the quorum. FNV-1a, 32 bits, hex.
pub fn fingerprint(masters: &[(String, Vec<std::net::IpAddr>)], quorum: usize) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(&quorum.to_be_bytes());
    for (name, addrs) in masters {
        eat(name.as_bytes());
        eat(&[0]);
        for a in addrs {
            eat(a.to_string().as_bytes());
            eat(&[1]);
        }
        eat(&[2]);
    }
    format!("{h:08x}")
}

/// The default quorum for `masters` masters: a majority from three on, 1 below.
pub fn default_quorum(masters: usize) -> usize {
    if masters >= 3 {
        masters / 2 + 1
    } else {
        1
    }
}

/// Why the wanted set is not what the votes want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Some nodes vote with another configuration (a rolling change of the masters or
    /// the quorum): their votes and ours would decide differently, so nothing moves
    /// until every node runs the same one.
    ConfigMismatch,
    /// No master is wanted by quorum, but some node sees these ready: they are more
    /// likely to serve than the published ones every vote calls down.
    SomeUp,
    /// No master is wanted; the published ones stay (never an empty name).
    KeptPublished,
    /// Nothing wanted and nothing published: the masters that have a vote.
    Voters,
    /// Nothing wanted, nothing published, no vote: every master (bootstrap).
    AllMasters,
}

impl Fallback {
    /// Why, for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Fallback::ConfigMismatch => {
                "some nodes vote with another dns configuration (masters, their addresses or the quorum differ): the published addresses stay until every node runs the same configuration"
            }
            Fallback::SomeUp => {
                "no master is ready by quorum: publishing the masters at least one node sees ready"
            }
            Fallback::KeptPublished => {
                "no master is ready by quorum: keeping the published addresses (the name is never left empty)"
            }
            Fallback::Voters => {
                "nothing is published and no master is ready by quorum: publishing the masters whose apivip runs"
            }
            Fallback::AllMasters => {
                "bootstrap: nothing is published and no node has voted yet: publishing every master"
            }
        }
    }
}

/// What the votes want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The masters to publish; never empty when masters are configured.
    pub masters: BTreeSet<String>,
    /// Set when a fallback decided.
    pub fallback: Option<Fallback>,
}

/// The wanted masters for `masters` (configured names) with `quorum`, given the
/// `votes` found (only those of configured nodes with `cfg` count, the highest `seq`
/// per node) and the masters `published` now.
pub fn wanted(
    masters: &[String],
    quorum: usize,
    cfg: &str,
    votes: &[Vote],
    published: &BTreeSet<String>,
) -> Wanted {
    let configured: BTreeSet<&str> = masters.iter().map(String::as_str).collect();
    // Each configured node's latest vote, whatever its configuration.
    let mut latest: BTreeMap<&str, &Vote> = BTreeMap::new();
    for v in votes
        .iter()
        .filter(|v| configured.contains(v.node.as_str()))
    {
        let e = latest.entry(v.node.as_str()).or_insert(v);
        if v.seq > e.seq {
            *e = v;
        }
    }
    let (by_node, other): (BTreeMap<&str, &Vote>, BTreeMap<&str, &Vote>) =
        latest.into_iter().partition(|(_, v)| v.cfg == cfg);
    let kept: BTreeSet<String> = masters
        .iter()
        .filter(|m| published.contains(*m))
        .cloned()
        .collect();
    if !other.is_empty() && !kept.is_empty() {
        // Counting either side alone, a node could decide on its own view, and the
        // nodes of the other configuration undo it: the name would flap.
        return Wanted {
            masters: kept,
            fallback: Some(Fallback::ConfigMismatch),
        };
    }
    let n = by_node.len();
    let q = quorum.max(1);
    let mut want = BTreeSet::new();
    for m in masters {
        let u = by_node.values().filter(|v| v.up.contains(m)).count();
        let d = by_node.values().filter(|v| v.down.contains(m)).count();
        let (is_in, is_out) = if n >= q {
            (u >= q && u > d, d >= q && d > u)
        } else {
            (u >= 1 && d == 0, d >= 1 && u == 0)
        };
        if is_in || (!is_out && published.contains(m)) {
            want.insert(m.clone());
        }
    }
    if !want.is_empty() || masters.is_empty() {
        return Wanted {
            masters: want,
            fallback: None,
        };
    }
    let some_up: BTreeSet<String> = masters
        .iter()
        .filter(|m| by_node.values().any(|v| v.up.contains(*m)))
        .cloned()
        .collect();
    if !some_up.is_empty() {
        return Wanted {
            masters: some_up,
            fallback: Some(Fallback::SomeUp),
        };
    }
    if !kept.is_empty() {
        return Wanted {
            masters: kept,
            fallback: Some(Fallback::KeptPublished),
        };
    }
    if n > 0 {
        return Wanted {
            masters: by_node.keys().map(|s| (*s).to_owned()).collect(),
            fallback: Some(Fallback::Voters),
        };
    }
    Wanted {
        masters: masters.iter().cloned().collect(),
        fallback: Some(Fallback::AllMasters),
    }
}

#[cfg(test)]
mod tests;
