//! Votes on the wire and the rule, case by case, exactly.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

const CFG: &str = "0badc0de";

fn masters() -> Vec<String> {
    ["m1", "m2", "m3"].map(String::from).to_vec()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn vote(node: &str, up: &[&str], down: &[&str]) -> Vote {
    Vote {
        node: node.into(),
        seq: 1,
        cfg: CFG.into(),
        up: set(up),
        down: set(down),
    }
}

fn want(votes: &[Vote], published: &[&str]) -> Wanted {
    wanted(&masters(), 2, CFG, votes, &set(published))
}

fn exactly(names: &[&str]) -> Wanted {
    Wanted {
        masters: set(names),
        fallback: None,
    }
}

#[test]
fn a_vote_round_trips_through_its_txt_strings() {
    let v = Vote {
        seq: 42,
        ..vote("m1", &["m1", "m3"], &["m2"])
    };
    let txt = v.to_txt();
    let text: Vec<&str> = txt
        .iter()
        .map(|s| std::str::from_utf8(s).unwrap())
        .collect();
    assert_eq!(
        text,
        [
            "apivip=1",
            "node=m1",
            "seq=42",
            "cfg=0badc0de",
            "up=m1",
            "up=m3",
            "down=m2"
        ]
    );
    assert_eq!(Vote::parse(&txt), Some(v));
}

#[test]
fn what_is_not_a_vote_is_refused() {
    let s = |tokens: &[&str]| -> Vec<Vec<u8>> {
        tokens.iter().map(|t| t.as_bytes().to_vec()).collect()
    };
    for bad in [
        s(&[]),
        s(&["owned-by-someone-else"]),
        s(&["apivip=2", "node=m1", "seq=1", "cfg=x"]),
        s(&["apivip=1", "seq=1", "cfg=x"]),
        s(&["apivip=1", "node=m1", "cfg=x"]),
        s(&["apivip=1", "node=m1", "seq=1"]),
        s(&["apivip=1", "node=m1", "seq=-1", "cfg=x"]),
        s(&["apivip=1", "node=m1", "seq=1", "cfg=x", "up"]),
        s(&["apivip=1", "node=", "seq=1", "cfg=x"]),
        s(&["apivip=1", "node=m1", "seq=1", "cfg=x", "up=m2", "down=m2"]),
        vec![b"apivip=1".to_vec(), vec![0xff, b'=', b'x']],
    ] {
        assert_eq!(Vote::parse(&bad), None, "{bad:?}");
    }
    // Unknown tokens of a newer writer are ignored.
    let newer = s(&["apivip=1", "node=m1", "seq=1", "cfg=x", "weight=3"]);
    assert_eq!(Vote::parse(&newer).map(|v| v.node), Some("m1".into()));
}

#[test]
fn everyone_sees_everyone_up() {
    let votes = [
        vote("m1", &["m1", "m2", "m3"], &[]),
        vote("m2", &["m1", "m2", "m3"], &[]),
        vote("m3", &["m1", "m2", "m3"], &[]),
    ];
    assert_eq!(want(&votes, &[]), exactly(&["m1", "m2", "m3"]));
}

/// A master whose apiserver turns not ready is seen so by all three: out.
#[test]
fn a_not_ready_master_is_removed() {
    let votes = [
        vote("m1", &["m1", "m3"], &["m2"]),
        vote("m2", &["m1", "m3"], &["m2"]),
        vote("m3", &["m1", "m3"], &["m2"]),
    ];
    assert_eq!(want(&votes, &["m1", "m2", "m3"]), exactly(&["m1", "m3"]));
}

/// A crashed master's last vote still says it is up; the other two say down: out.
/// Until the second of them has voted, it stays (1 down against 1 up).
#[test]
fn a_crashed_master_is_removed_by_the_second_survivor() {
    let stale = vote("m2", &["m1", "m2", "m3"], &[]);
    let first = [
        vote("m1", &["m1", "m3"], &["m2"]),
        stale.clone(),
        vote("m3", &["m1", "m2", "m3"], &[]),
    ];
    assert_eq!(
        want(&first, &["m1", "m2", "m3"]),
        exactly(&["m1", "m2", "m3"])
    );
    let second = [
        vote("m1", &["m1", "m3"], &["m2"]),
        stale,
        vote("m3", &["m1", "m3"], &["m2"]),
    ];
    assert_eq!(want(&second, &["m1", "m2", "m3"]), exactly(&["m1", "m3"]));
}

/// m1 and m2 cannot reach each other; m3 reaches both: nobody moves.
#[test]
fn a_partition_between_two_masters_changes_nothing() {
    let votes = [
        vote("m1", &["m1", "m3"], &["m2"]),
        vote("m2", &["m2", "m3"], &["m1"]),
        vote("m3", &["m1", "m2", "m3"], &[]),
    ];
    assert_eq!(
        want(&votes, &["m1", "m2", "m3"]),
        exactly(&["m1", "m2", "m3"])
    );
    // m3 cut off from both: both vote it down, it votes itself up: out, and stays
    // out while the cut lasts.
    let votes = [
        vote("m1", &["m1", "m2"], &["m3"]),
        vote("m2", &["m1", "m2"], &["m3"]),
        vote("m3", &["m3"], &["m1", "m2"]),
    ];
    assert_eq!(want(&votes, &["m1", "m2", "m3"]), exactly(&["m1", "m2"]));
}

/// A tie keeps what is published: an unpublished master stays out, a published one in.
#[test]
fn a_tie_keeps_the_published_state() {
    let votes = [vote("m1", &["m2"], &[]), vote("m2", &[], &["m2"])];
    assert_eq!(want(&votes, &["m1", "m2"]), exactly(&["m1", "m2"]));
    assert_eq!(want(&votes, &["m1"]), exactly(&["m1"]));
}

/// Every master down: the published addresses stay, and the reason says so.
#[test]
fn all_down_keeps_the_published_set() {
    let all_down = [
        vote("m1", &[], &["m1", "m2", "m3"]),
        vote("m2", &[], &["m1", "m2", "m3"]),
        vote("m3", &[], &["m1", "m2", "m3"]),
    ];
    let w = want(&all_down, &["m1", "m3"]);
    assert_eq!(w.masters, set(&["m1", "m3"]));
    assert_eq!(w.fallback, Some(Fallback::KeptPublished));
}

/// `kubeadm init`: only the first master runs apivip, and its apiserver is not ready
/// yet; nothing is published. Its own address is published, then stays when others
/// join and until a quorum sees anyone ready.
#[test]
fn bootstrap_publishes_the_masters_that_vote() {
    let first = [vote("m1", &[], &["m1"])];
    let w = want(&first, &[]);
    assert_eq!(w.masters, set(&["m1"]));
    assert_eq!(w.fallback, Some(Fallback::Voters));
    // Fewer votes than the quorum: unanimity decides; m1 is then ready.
    assert_eq!(
        want(&[vote("m1", &["m1"], &["m2", "m3"])], &["m1"]),
        exactly(&["m1"])
    );
    // No vote at all, nothing published: every master.
    let w = want(&[], &[]);
    assert_eq!(w.masters, set(&["m1", "m2", "m3"]));
    assert_eq!(w.fallback, Some(Fallback::AllMasters));
}

/// Votes of unknown nodes and older ones of the same node do not count.
#[test]
fn only_current_votes_of_configured_nodes_count() {
    let mut old = vote("m1", &["m1", "m2", "m3"], &[]);
    old.seq = 1;
    let mut new = vote("m1", &["m1", "m3"], &["m2"]);
    new.seq = 2;
    let votes = [
        old,
        new,
        vote("m2", &["m1", "m3"], &["m2"]),
        vote("intruder", &["m2"], &[]),
    ];
    assert_eq!(want(&votes, &["m1", "m2", "m3"]), exactly(&["m1", "m3"]));
}

/// A node whose latest vote carries another configuration (a rolling change): the
/// published masters stay as they are (counting either side alone, one node would
/// decide on its own view and the others undo it), and the reason says so. Once it
/// votes with ours again, the rule applies. With nothing published, the rule runs on
/// the matching votes.
#[test]
fn votes_of_another_configuration_freeze_the_name() {
    let mut other_cfg = vote("m3", &["m1", "m2", "m3"], &[]);
    other_cfg.cfg = "ffffffff".into();
    other_cfg.seq = 7;
    let votes = [
        vote("m1", &["m1", "m3"], &["m2"]),
        vote("m2", &["m1", "m3"], &["m2"]),
        other_cfg.clone(),
    ];
    let w = want(&votes, &["m1", "m2", "m3"]);
    assert_eq!(w.masters, set(&["m1", "m2", "m3"]));
    assert_eq!(w.fallback, Some(Fallback::ConfigMismatch));
    let mut back = vote("m3", &["m1", "m3"], &["m2"]);
    back.seq = 8;
    let votes = [votes[0].clone(), votes[1].clone(), other_cfg, back];
    assert_eq!(want(&votes, &["m1", "m2", "m3"]), exactly(&["m1", "m3"]));
    let mut lone = vote("m3", &["m2"], &[]);
    lone.cfg = "ffffffff".into();
    let w = want(&[vote("m1", &["m1"], &[]), lone], &[]);
    assert_eq!(w, exactly(&["m1"]));
}

/// No master ready by quorum, but one node sees m2 ready while the published m1 is
/// down for everyone: m2 is published rather than keeping only m1.
#[test]
fn below_quorum_a_master_someone_sees_ready_beats_one_all_see_down() {
    let votes = [
        vote("m1", &[], &["m1", "m2", "m3"]),
        vote("m2", &["m2"], &["m1", "m3"]),
        vote("m3", &[], &["m1", "m2", "m3"]),
    ];
    let w = want(&votes, &["m1"]);
    assert_eq!(w.masters, set(&["m2"]));
    assert_eq!(w.fallback, Some(Fallback::SomeUp));
}

#[test]
fn quorum_and_fingerprint() {
    assert_eq!([1, 2, 3, 4, 5, 7].map(default_quorum), [1, 1, 2, 3, 3, 4]);
    let a = |last| vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))];
    let ms = vec![("m1".to_owned(), a(11)), ("m2".to_owned(), a(12))];
    let f = fingerprint(&ms, 1);
    assert_eq!(f.len(), 8);
    assert_eq!(f, fingerprint(&ms.clone(), 1));
    assert_ne!(f, fingerprint(&ms, 2));
    let moved = vec![("m1".to_owned(), a(11)), ("m2".to_owned(), a(13))];
    assert_ne!(f, fingerprint(&moved, 1));
    let renamed = vec![("m1".to_owned(), a(11)), ("m3".to_owned(), a(12))];
    assert_ne!(f, fingerprint(&renamed, 1));
}
