//! The messages and the reply checks, against a server written here with hickory's
//! server-side TSIG signing (`TSigResponseContext`), exactly.

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigError, TSIG};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType, TSigResponseContext};

use super::*;

const NOW: u64 = 1_764_633_600; // 2025-12-02T00:00:00Z

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn key(secret: &[u8]) -> Key {
    Key::new(&name("apivip-key."), Algorithm::HmacSha256, secret.to_vec()).unwrap()
}

fn vip(last: u8) -> Rdata {
    Rdata::A(Ipv4Addr::new(198, 18, 0, last))
}

/// The server's view of a request: decoded, and its MAC checked with `key`.
fn server_reads(sent: &Signed, key: &Key) -> Message {
    let (_, _, range) = key
        .signer
        .verify_message_byte(&sent.bytes, None, true)
        .expect("the request's MAC verifies");
    assert!(range.contains(&sent.time));
    Message::from_vec(&sent.bytes).unwrap()
}

/// A reply to `sent` with `rcode` and `answers`, signed by `key` at `time` with `error`.
fn reply(
    sent: &Signed,
    key: &Key,
    time: u64,
    rcode: ResponseCode,
    answers: &[(&str, Rdata)],
    error: Option<TsigError>,
) -> Vec<u8> {
    let mut m = Message::response(sent.id, sent.op_code);
    m.metadata.response_code = rcode;
    if let Some(q) = &sent.question {
        m.add_query(q.clone());
    }
    for (n, d) in answers {
        m.add_answer(Record::from_rdata(name(n), 5, d.to_hickory()));
    }
    let unsigned = m.to_vec().unwrap();
    let ctx = TSigResponseContext::new(sent.id, time, key.signer.clone(), sent.mac.clone(), error);
    m.set_signature(ctx.sign(&unsigned).unwrap());
    m.to_vec().unwrap()
}

/// An unsigned error reply carrying a TSIG record with `error` and no MAC, as BIND
/// sends for BADKEY and BADSIG.
fn rejection(sent: &Signed, ctx: TSigResponseContext) -> Vec<u8> {
    let mut m = Message::response(sent.id, sent.op_code);
    m.metadata.response_code = ResponseCode::NotAuth;
    m.add_query(sent.question.clone().unwrap());
    let unsigned = m.to_vec().unwrap();
    m.set_signature(ctx.sign(&unsigned).unwrap());
    m.to_vec().unwrap()
}

fn sample_update() -> Message {
    let api = name("api.cluster.example.");
    let votes = name("_apivip.api.cluster.example.");
    update(
        7,
        &name("cluster.example."),
        &[
            Prereq {
                name: api.clone(),
                rtype: RecordType::A,
                exactly: vec![vip(11), vip(12)],
            },
            Prereq {
                name: votes.clone(),
                rtype: RecordType::TXT,
                exactly: vec![],
            },
        ],
        &[
            Change::Delete {
                name: api.clone(),
                rdata: vip(12),
            },
            Change::Add {
                name: api,
                ttl: 5,
                rdata: vip(13),
            },
            Change::Add {
                name: votes,
                ttl: 5,
                rdata: Rdata::Txt(vec![b"apivip=1".to_vec(), b"node=m1".to_vec()]),
            },
        ],
    )
}

/// RFC 2136 §2.4.2, §2.4.3, §2.5.1 and §2.5.4 on the wire: the sections, classes and
/// TTLs the server reads.
#[test]
fn an_update_carries_its_prerequisites_and_changes_in_rfc_2136_form() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(sample_update(), &k, NOW).unwrap();
    let m = server_reads(&sent, &k);
    assert_eq!(m.metadata.op_code, OpCode::Update);
    assert_eq!(m.metadata.id, 7);
    assert!(!m.metadata.recursion_desired);
    // Zone section: the zone, type SOA, class IN.
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].name(), &name("cluster.example."));
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    assert_eq!(m.queries[0].query_class(), DNSClass::IN);
    // Prerequisites: the exact A set (class IN, TTL 0), then "TXT does not exist"
    // (class NONE, TTL 0, no data).
    let pre: Vec<_> = m
        .answers
        .iter()
        .map(|r| (r.name.to_ascii(), r.dns_class, r.ttl, r.data.clone()))
        .collect();
    assert_eq!(
        pre,
        [
            (
                "api.cluster.example.".into(),
                DNSClass::IN,
                0,
                RData::A(A(Ipv4Addr::new(198, 18, 0, 11)))
            ),
            (
                "api.cluster.example.".into(),
                DNSClass::IN,
                0,
                RData::A(A(Ipv4Addr::new(198, 18, 0, 12)))
            ),
            (
                "_apivip.api.cluster.example.".into(),
                DNSClass::NONE,
                0,
                RData::Update0(RecordType::TXT)
            ),
        ]
    );
    // Updates: delete one RR (class NONE, TTL 0), add two (class IN, our TTL).
    let upd: Vec<_> = m
        .authorities
        .iter()
        .map(|r| (r.dns_class, r.ttl, Rdata::from_hickory(&r.data)))
        .collect();
    assert_eq!(
        upd,
        [
            (DNSClass::NONE, 0, Some(vip(12))),
            (DNSClass::IN, 5, Some(vip(13))),
            (
                DNSClass::IN,
                5,
                Some(Rdata::Txt(vec![b"apivip=1".to_vec(), b"node=m1".to_vec()]))
            ),
        ]
    );
    // Signed by our key, last in the additional section.
    let sig = m.signature().unwrap();
    assert_eq!(sig.name, name("apivip-key."));
    assert_eq!(sig.data.time, NOW);
    assert_eq!(sig.data.fudge, FUDGE_SECS);
    assert_eq!(sig.data.mac, sent.mac);
}

#[test]
fn a_signed_reply_is_an_answer_with_its_records() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let q = query(9, &name("api.cluster.example."), RecordType::A);
    let sent = sign(q, &k, NOW).unwrap();
    let m = server_reads(&sent, &k);
    assert_eq!(m.metadata.op_code, OpCode::Query);
    assert!(!m.metadata.recursion_desired);
    let bytes = reply(
        &sent,
        &k,
        NOW + 2,
        ResponseCode::NoError,
        &[
            ("api.cluster.example.", vip(11)),
            ("api.cluster.example.", vip(12)),
        ],
        None,
    );
    assert_eq!(
        decode_reply(&bytes, &sent, &k, NOW + 1),
        Reply::Answer(Answer {
            rcode: ResponseCode::NoError,
            tsig_error: None,
            server_time: NOW + 2,
            clock_skew: None,
            records: vec![
                (name("api.cluster.example."), vip(11)),
                (name("api.cluster.example."), vip(12)),
            ],
        })
    );
}

#[test]
fn update_failures_are_authenticated_rcodes() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    for rcode in [
        ResponseCode::NXRRSet,
        ResponseCode::YXRRSet,
        ResponseCode::Refused,
        ResponseCode::ServFail,
        ResponseCode::NotAuth,
        ResponseCode::NotZone,
    ] {
        let sent = sign(sample_update(), &k, NOW).unwrap();
        let bytes = reply(&sent, &k, NOW, rcode, &[], None);
        match decode_reply(&bytes, &sent, &k, NOW) {
            Reply::Answer(a) => assert_eq!(a.rcode, rcode),
            other => panic!("{rcode:?}: {other:?}"),
        }
    }
}

/// A reply to another request, of another kind or for another question is not ours.
#[test]
fn replies_to_something_else_are_ignored() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(
        query(9, &name("api.cluster.example."), RecordType::A),
        &k,
        NOW,
    )
    .unwrap();
    let other_id = Signed {
        id: 10,
        ..sent.clone()
    };
    let bytes = reply(&other_id, &k, NOW, ResponseCode::NoError, &[], None);
    assert_eq!(
        decode_reply(&bytes, &sent, &k, NOW),
        Reply::Ignored(Ignored::NotOurs)
    );
    let other_question = Signed {
        question: Some(Query::query(name("api.cluster.example."), RecordType::AAAA)),
        ..sent.clone()
    };
    let bytes = reply(&other_question, &k, NOW, ResponseCode::NoError, &[], None);
    assert_eq!(
        decode_reply(&bytes, &sent, &k, NOW),
        Reply::Ignored(Ignored::NotOurs)
    );
    // Our own request echoed back is a query, not a response.
    assert_eq!(
        decode_reply(&sent.bytes, &sent, &k, NOW),
        Reply::Ignored(Ignored::NotOurs)
    );
}

#[test]
fn an_unsigned_reply_is_ignored_with_its_rcode() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(sample_update(), &k, NOW).unwrap();
    let mut m = Message::response(sent.id, sent.op_code);
    m.metadata.response_code = ResponseCode::Refused;
    m.add_query(sent.question.clone().unwrap());
    assert_eq!(
        decode_reply(&m.to_vec().unwrap(), &sent, &k, NOW),
        Reply::Ignored(Ignored::Unsigned(ResponseCode::Refused))
    );
}

/// BADKEY and BADSIG come unsigned (RFC 8945 §5.3.2): reported, not authenticated.
#[test]
fn badkey_and_badsig_are_key_rejections() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(sample_update(), &k, NOW).unwrap();
    let bytes = rejection(
        &sent,
        TSigResponseContext::unknown_key(sent.id, NOW, name("apivip-key.")),
    );
    assert_eq!(
        decode_reply(&bytes, &sent, &k, NOW),
        Reply::KeyRejected {
            error: KeyRejection::BadKey,
            rcode: ResponseCode::NotAuth
        }
    );
    let bytes = rejection(
        &sent,
        TSigResponseContext::bad_signature(sent.id, NOW, k.signer.clone()),
    );
    assert_eq!(
        decode_reply(&bytes, &sent, &k, NOW),
        Reply::KeyRejected {
            error: KeyRejection::BadSig,
            rcode: ResponseCode::NotAuth
        }
    );
}

/// A reply signed with another secret, or over another request MAC, is a forgery.
#[test]
fn a_reply_with_a_wrong_mac_is_ignored() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let other = key(b"fedcba9876543210fedcba9876543210");
    let sent = sign(sample_update(), &k, NOW).unwrap();
    let bytes = reply(&sent, &other, NOW, ResponseCode::NoError, &[], None);
    assert!(matches!(
        decode_reply(&bytes, &sent, &k, NOW),
        Reply::Ignored(Ignored::BadMac(_))
    ));
    let other_request = Signed {
        mac: vec![0; 32],
        ..sent.clone()
    };
    let bytes = reply(&other_request, &k, NOW, ResponseCode::NoError, &[], None);
    assert!(matches!(
        decode_reply(&bytes, &sent, &k, NOW),
        Reply::Ignored(Ignored::BadMac(_))
    ));
}

/// An authentic reply signed more than the fudge away from our clock (RFC 8945
/// §5.4.3), and a signed BADTIME with the server's time in Other Data (§5.2.3).
#[test]
fn clock_skew_and_badtime_report_the_skew() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(sample_update(), &k, NOW).unwrap();
    let bytes = reply(&sent, &k, NOW + 1000, ResponseCode::NoError, &[], None);
    match decode_reply(&bytes, &sent, &k, NOW) {
        Reply::Answer(a) => {
            assert_eq!(a.clock_skew, Some(-1000));
            assert_eq!(a.server_time, NOW + 1000);
        }
        other => panic!("{other:?}"),
    }
    // BADTIME: Time Signed echoes ours, Other Data is the server's 48-bit time.
    let server = NOW + 3600;
    let mut m = Message::response(sent.id, sent.op_code);
    m.metadata.response_code = ResponseCode::NotAuth;
    m.add_query(sent.question.clone().unwrap());
    let unsigned = m.to_vec().unwrap();
    let stub = TSIG::new(
        TsigAlgorithm::HmacSha256,
        NOW,
        FUDGE_SECS,
        Vec::new(),
        sent.id,
        Some(TsigError::BadTime),
        server.to_be_bytes()[2..].to_vec(),
    );
    let tbs = k
        .signer
        .encode_response_tbs(&sent.mac, &unsigned, &stub)
        .unwrap();
    let mac = k.signer.sign(&tbs).unwrap();
    m.set_signature(Box::new(make_tsig_record(
        name("apivip-key."),
        stub.set_mac(mac),
    )));
    match decode_reply(&m.to_vec().unwrap(), &sent, &k, NOW) {
        Reply::Answer(a) => {
            assert_eq!(a.rcode, ResponseCode::NotAuth);
            assert_eq!(a.tsig_error, Some(TsigError::BadTime));
            assert_eq!(a.server_time, server);
            assert_eq!(a.clock_skew, Some(-3600));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_truncated_reply_asks_for_tcp() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(
        query(3, &name("api.cluster.example."), RecordType::A),
        &k,
        NOW,
    )
    .unwrap();
    let mut m = Message::response(sent.id, sent.op_code);
    m.metadata.truncation = true;
    m.add_query(sent.question.clone().unwrap());
    assert_eq!(
        decode_reply(&m.to_vec().unwrap(), &sent, &k, NOW),
        Reply::Truncated
    );
}

/// Every truncation and every one-byte change of a genuine signed reply, and short
/// garbage, is classified without a panic, and none of the changed ones is an
/// authenticated answer with other records.
#[test]
fn damaged_replies_never_panic_nor_authenticate() {
    let k = key(b"0123456789abcdef0123456789abcdef");
    let sent = sign(
        query(9, &name("api.cluster.example."), RecordType::A),
        &k,
        NOW,
    )
    .unwrap();
    let good = reply(
        &sent,
        &k,
        NOW,
        ResponseCode::NoError,
        &[("api.cluster.example.", vip(11))],
        None,
    );
    let Reply::Answer(genuine) = decode_reply(&good, &sent, &k, NOW) else {
        panic!("the genuine reply")
    };
    for len in 0..good.len() {
        let _ = decode_reply(&good[..len], &sent, &k, NOW);
    }
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            if let Reply::Answer(a) = decode_reply(&bad, &sent, &k, NOW) {
                assert_eq!(a.records, genuine.records, "byte {i} ^ {flip:#x}");
            }
        }
    }
    for garbage in [&[][..], &[0u8; 12], &[0xffu8; 40]] {
        assert!(matches!(
            decode_reply(garbage, &sent, &k, NOW),
            Reply::Ignored(_)
        ));
    }
}

#[test]
fn keys_need_a_secret_and_hide_it() {
    let err = Key::new(&name("k."), Algorithm::HmacSha256, Vec::new()).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let k = Key::new(&name("k"), Algorithm::HmacSha512, b"sekrit-sekrit".to_vec()).unwrap();
    assert_eq!(k.name(), &name("k."));
    let shown = format!("{k:?}");
    assert!(!shown.contains("sekrit"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_eq!(
        Algorithm::parse("HMAC-SHA512."),
        Some(Algorithm::HmacSha512)
    );
    assert_eq!(Algorithm::parse("hmac-md5"), None);
}
