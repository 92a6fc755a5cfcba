//! DNS updates against a real BIND (Debian's `bind9`, started by the test on loopback,
//! unprivileged): apivip's messages, TSIG signing and reply checks end to end.
//!
//! Needs `named` and `dig`; without them each test skips with a printed reason, or
//! fails when `APIVIP_REQUIRE_NETNS=1` (CI installs them through scripts/test.sh).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apivip::dns::io::exchange::{exchange, ExchangeError};
use apivip::dns::wire::{self, Algorithm, Change, Key, KeyRejection, Prereq, Rdata};
use apivip::testkit::bind::{Bind, BindOptions};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RecordType};

const SECRET: &[u8] = b"apivip-test-secret-of-32-bytes!!";
const TIMEOUT: Duration = Duration::from_secs(5);

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn a(last: u8) -> Rdata {
    Rdata::A(Ipv4Addr::new(198, 18, 0, last))
}

/// BIND with `cluster.example.`, a record apivip did not write, and the key allowed to
/// change the A and AAAA records of `api` and the TXT records of `_apivip.api`.
fn start(test: &str, algorithm: &str) -> Option<Bind> {
    if support::require_bin(test, "named").is_none() || support::require_bin(test, "dig").is_none()
    {
        return None;
    }
    Some(
        Bind::start(BindOptions {
            zone: "cluster.example.".into(),
            records: vec![
                "other IN A 198.18.0.99".into(),
                "api 5 IN TXT \"owned-by-someone-else\"".into(),
            ],
            key_name: "apivip-key.".into(),
            algorithm: algorithm.into(),
            secret_b64: b64(SECRET),
            grants: vec![
                ("api.cluster.example.".into(), "A AAAA".into()),
                ("_apivip.api.cluster.example.".into(), "TXT".into()),
            ],
            listen: None,
        })
        .expect("start named"),
    )
}

fn key(algorithm: Algorithm) -> Key {
    Key::new(&name("apivip-key."), algorithm, SECRET.to_vec()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn add_api(
    id: u16,
    prereq: Vec<Rdata>,
    add: Vec<Rdata>,
    delete: Vec<Rdata>,
) -> hickory_proto::op::Message {
    let api = name("api.cluster.example.");
    let mut changes: Vec<Change> = delete
        .into_iter()
        .map(|rdata| Change::Delete {
            name: api.clone(),
            rdata,
        })
        .collect();
    changes.extend(add.into_iter().map(|rdata| Change::Add {
        name: api.clone(),
        ttl: 5,
        rdata,
    }));
    wire::update(
        id,
        &name("cluster.example."),
        &[Prereq {
            name: api,
            rtype: RecordType::A,
            exactly: prereq,
        }],
        &changes,
    )
}

/// Signed updates with RFC 2136 prerequisites as a compare-and-swap: the first
/// (the A set must not exist) applies, the same again fails the prerequisite
/// (YXRRSET) and changes nothing, a swap from the exact current set applies, one
/// from a stale set fails (NXRRSET). A signed read sees what dig sees; the records
/// apivip did not write are untouched. Both algorithms.
#[test]
fn signed_updates_are_compare_and_swap_against_bind() {
    for (alg, algorithm) in [
        ("hmac-sha256", Algorithm::HmacSha256),
        ("hmac-sha512", Algorithm::HmacSha512),
    ] {
        let test = "signed_updates_are_compare_and_swap_against_bind";
        let Some(bind) = start(test, alg) else {
            return;
        };
        let k = key(algorithm);
        let rt = runtime();
        let server = bind.addr();
        let run = |m| rt.block_on(exchange(server, &k, m, now(), TIMEOUT));
        let ok = run(add_api(1, vec![], vec![a(11), a(12)], vec![])).unwrap();
        assert_eq!(ok.rcode, ResponseCode::NoError, "{alg}: {}", bind.log());
        assert_eq!(ok.clock_skew, None);
        assert_eq!(
            bind.dig("api.cluster.example.", "A"),
            ["198.18.0.11", "198.18.0.12"]
        );
        let again = run(add_api(2, vec![], vec![a(13)], vec![])).unwrap();
        assert_eq!(again.rcode, ResponseCode::YXRRSet, "{alg}");
        assert_eq!(
            bind.dig("api.cluster.example.", "A"),
            ["198.18.0.11", "198.18.0.12"]
        );
        let swap = run(add_api(3, vec![a(12), a(11)], vec![a(13)], vec![a(12)])).unwrap();
        assert_eq!(swap.rcode, ResponseCode::NoError, "{alg}");
        assert_eq!(
            bind.dig("api.cluster.example.", "A"),
            ["198.18.0.11", "198.18.0.13"]
        );
        let stale = run(add_api(4, vec![a(11), a(12)], vec![a(14)], vec![a(11)])).unwrap();
        assert_eq!(stale.rcode, ResponseCode::NXRRSet, "{alg}");
        assert_eq!(
            bind.dig("api.cluster.example.", "A"),
            ["198.18.0.11", "198.18.0.13"]
        );
        // A signed read of the set.
        let read = run(wire::query(5, &name("api.cluster.example."), RecordType::A)).unwrap();
        assert_eq!(read.rcode, ResponseCode::NoError);
        let mut got: Vec<Rdata> = read.records.into_iter().map(|(_, d)| d).collect();
        got.sort();
        assert_eq!(got, [a(11), a(13)]);
        // Votes in TXT, beside a TXT at the name that is not ours.
        let votes = name("_apivip.api.cluster.example.");
        let txt = Rdata::Txt(vec![
            b"apivip=1".to_vec(),
            b"node=m1".to_vec(),
            b"up=m1".to_vec(),
        ]);
        let m = wire::update(
            6,
            &name("cluster.example."),
            &[],
            &[Change::Add {
                name: votes,
                ttl: 5,
                rdata: txt,
            }],
        );
        assert_eq!(run(m).unwrap().rcode, ResponseCode::NoError);
        assert_eq!(
            bind.dig("_apivip.api.cluster.example.", "TXT"),
            ["\"apivip=1\" \"node=m1\" \"up=m1\""]
        );
        assert_eq!(bind.dig("other.cluster.example.", "A"), ["198.18.0.99"]);
        assert_eq!(
            bind.dig("api.cluster.example.", "TXT"),
            ["\"owned-by-someone-else\""]
        );
    }
}

/// What the update policy does not grant is REFUSED, signed; an unsigned update would
/// be too, and nothing changes.
#[test]
fn an_update_outside_the_policy_is_refused() {
    let Some(bind) = start("an_update_outside_the_policy_is_refused", "hmac-sha256") else {
        return;
    };
    let k = key(Algorithm::HmacSha256);
    let m = wire::update(
        1,
        &name("cluster.example."),
        &[],
        &[Change::Delete {
            name: name("other.cluster.example."),
            rdata: Rdata::A(Ipv4Addr::new(198, 18, 0, 99)),
        }],
    );
    let r = runtime()
        .block_on(exchange(bind.addr(), &k, m, now(), TIMEOUT))
        .unwrap();
    assert_eq!(r.rcode, ResponseCode::Refused);
    assert_eq!(bind.dig("other.cluster.example.", "A"), ["198.18.0.99"]);
}

/// A key BIND does not know (name or algorithm) is BADKEY, another secret BADSIG:
/// both reported, nothing changed.
#[test]
fn a_wrong_key_is_badkey_and_a_wrong_secret_badsig() {
    let Some(bind) = start(
        "a_wrong_key_is_badkey_and_a_wrong_secret_badsig",
        "hmac-sha256",
    ) else {
        return;
    };
    let rt = runtime();
    let cases = [
        (
            Key::new(&name("wrong-key."), Algorithm::HmacSha256, SECRET.to_vec()).unwrap(),
            KeyRejection::BadKey,
        ),
        (key(Algorithm::HmacSha512), KeyRejection::BadKey),
        (
            Key::new(
                &name("apivip-key."),
                Algorithm::HmacSha256,
                b"another-secret".to_vec(),
            )
            .unwrap(),
            KeyRejection::BadSig,
        ),
    ];
    for (k, want) in cases {
        let r = rt.block_on(exchange(
            bind.addr(),
            &k,
            add_api(1, vec![], vec![a(11)], vec![]),
            now(),
            TIMEOUT,
        ));
        assert_eq!(
            r,
            Err(ExchangeError::KeyRejected {
                error: want,
                rcode: ResponseCode::NotAuth
            }),
            "{k:?}"
        );
    }
    assert!(bind.dig("api.cluster.example.", "A").is_empty());
}

/// A clock an hour ahead: BIND answers BADTIME, signed, with its own time, which we
/// report as the skew.
#[test]
fn a_clock_an_hour_off_is_badtime_with_the_skew() {
    let Some(bind) = start(
        "a_clock_an_hour_off_is_badtime_with_the_skew",
        "hmac-sha256",
    ) else {
        return;
    };
    let k = key(Algorithm::HmacSha256);
    let r = runtime()
        .block_on(exchange(
            bind.addr(),
            &k,
            add_api(1, vec![], vec![a(11)], vec![]),
            now() + 3600,
            TIMEOUT,
        ))
        .unwrap();
    assert_eq!(r.rcode, ResponseCode::NotAuth);
    assert_eq!(r.tsig_error, Some(TsigError::BadTime));
    let skew = r.clock_skew.expect("a skew");
    assert!((3590..=3610).contains(&skew), "skew {skew}");
    assert!(bind.dig("api.cluster.example.", "A").is_empty());
}

/// BIND stopped: a timeout (or unreachable); restarted with its journal, the records
/// are back; restarted with a fresh zone and no journal, they are gone.
#[test]
fn bind_restarts_keep_the_journal_or_start_fresh() {
    let Some(mut bind) = start(
        "bind_restarts_keep_the_journal_or_start_fresh",
        "hmac-sha256",
    ) else {
        return;
    };
    let k = key(Algorithm::HmacSha256);
    let rt = runtime();
    let ok = rt
        .block_on(exchange(
            bind.addr(),
            &k,
            add_api(1, vec![], vec![a(11)], vec![]),
            now(),
            TIMEOUT,
        ))
        .unwrap();
    assert_eq!(ok.rcode, ResponseCode::NoError);
    bind.stop();
    let down = rt.block_on(exchange(
        bind.addr(),
        &k,
        add_api(2, vec![], vec![a(12)], vec![]),
        now(),
        Duration::from_millis(500),
    ));
    assert!(
        matches!(
            down,
            Err(ExchangeError::Timeout { .. } | ExchangeError::Unreachable(_))
        ),
        "{down:?}"
    );
    bind.restart().unwrap();
    assert_eq!(bind.dig("api.cluster.example.", "A"), ["198.18.0.11"]);
    bind.restart_fresh().unwrap();
    assert!(bind.dig("api.cluster.example.", "A").is_empty());
    assert_eq!(bind.dig("other.cluster.example.", "A"), ["198.18.0.99"]);
}
