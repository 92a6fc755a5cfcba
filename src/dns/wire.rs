//! The DNS messages apivip exchanges with the zone's primary server, as pure functions
//! over values and bytes: queries and RFC 2136 UPDATEs built, signed with TSIG
//! (RFC 8945), and replies decoded and authenticated. The message codec and the MAC
//! are hickory-proto's; what is here is which sections hold what, the order of the
//! checks on a reply, and what each outcome means. No socket, no clock: the signing
//! time is passed in (seconds since the Unix epoch), so tests can sign in the past or
//! the future.
//!
//! # A reply, checked in this order (RFC 8945 §5.3, §5.4)
//!
//! 1. It must decode. Anything else on the socket is [`Reply::Ignored`] (keep waiting
//!    until the request's deadline): a spoofed or stray datagram must not end the
//!    exchange.
//! 2. It must answer this request: same ID, a response, the same opcode, and the
//!    same question (or none, which servers may send for errors).
//! 3. `TC` set: [`Reply::Truncated`], ask again over TCP (whether signed or not: a
//!    retry over TCP is harmless).
//! 4. No TSIG record: ignored ([`Ignored::Unsigned`]; §5.4: treat as if not received);
//!    the exchange reports `unsigned` if nothing better arrives.
//! 5. TSIG error BADKEY or BADSIG with no MAC: the server did not accept our key or
//!    our signature. Such replies are unsigned by design (§5.3.2), so they cannot be
//!    authenticated: [`Reply::KeyRejected`], which changes nothing but the report.
//! 6. The MAC must verify with our key over the reply and our request's MAC
//!    (§5.3.1); otherwise ignored ([`Ignored::BadMac`]).
//! 7. TSIG error BADTIME (signed): our clock is off by more than the fudge as the
//!    server sees it; its time is in Other Data ([`Answer::tsig_error`],
//!    [`Answer::server_time`]).
//! 8. Our clock must lie within the reply's time ± fudge (§5.4.3); otherwise
//!    [`Answer::clock_skew`] says by how much, and the caller treats it as BADTIME.
//!
//! hickory's own client checks none of 2, 5 and 8 the way we need (it reports a
//! BADKEY reply as a string error), which is why the exchange is ours.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

/// The fudge we sign with (RFC 8945 §10 recommends 300 s; BIND uses it too).
pub const FUDGE_SECS: u16 = 300;

/// The largest UDP payload we announce and send (the DNS flag day 2020 value); larger
/// messages go over TCP.
pub const UDP_PAYLOAD: u16 = 1232;

/// A TSIG algorithm apivip signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `hmac-sha256` (the default).
    HmacSha256,
    /// `hmac-sha512`.
    HmacSha512,
}

impl Algorithm {
    /// The name in configs and in BIND's `key` clause.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// Parses a config value; BIND's spelling, any case.
    pub fn parse(text: &str) -> Option<Algorithm> {
        match text.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => Some(Algorithm::HmacSha256),
            "hmac-sha512" => Some(Algorithm::HmacSha512),
            _ => None,
        }
    }

    fn hickory(self) -> TsigAlgorithm {
        match self {
            Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

/// Why a key or a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The TSIG key was refused by the MAC implementation.
    #[error("TSIG key {name}: {reason}")]
    Key {
        /// The key's name.
        name: String,
        /// What was wrong.
        reason: String,
    },
    /// The message could not be encoded or signed.
    #[error("encoding the DNS message: {0}")]
    Encode(String),
}

/// A TSIG key: name, algorithm and secret. Its `Debug` shows no secret.
#[derive(Clone)]
pub struct Key {
    name: Name,
    algorithm: Algorithm,
    signer: TSigner,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name.to_ascii())
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Key {
    /// A key `name` (a domain name, as in BIND's `key "NAME"`) with `secret` (the
    /// decoded bytes).
    pub fn new(name: &Name, algorithm: Algorithm, secret: Vec<u8>) -> Result<Key, WireError> {
        let mut name = name.clone();
        name.set_fqdn(true);
        let err = |reason: String| WireError::Key {
            name: name.to_ascii(),
            reason,
        };
        if secret.is_empty() {
            return Err(err("the secret is empty".into()));
        }
        let signer = TSigner::new(secret, algorithm.hickory(), name.clone(), FUDGE_SECS)
            .map_err(|e| err(e.to_string()))?;
        Ok(Key {
            name,
            algorithm,
            signer,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The data of one record as apivip reads and writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rdata {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A TXT record: its character strings (each at most 255 bytes).
    Txt(Vec<Vec<u8>>),
}

impl Rdata {
    /// The record type.
    pub fn rtype(&self) -> RecordType {
        match self {
            Rdata::A(_) => RecordType::A,
            Rdata::Aaaa(_) => RecordType::AAAA,
            Rdata::Txt(_) => RecordType::TXT,
        }
    }

    fn to_hickory(&self) -> RData {
        match self {
            Rdata::A(a) => RData::A(A(*a)),
            Rdata::Aaaa(a) => RData::AAAA(AAAA(*a)),
            Rdata::Txt(strings) => {
                RData::TXT(TXT::from_bytes(strings.iter().map(Vec::as_slice).collect()))
            }
        }
    }

    fn from_hickory(data: &RData) -> Option<Rdata> {
        match data {
            RData::A(a) => Some(Rdata::A(a.0)),
            RData::AAAA(a) => Some(Rdata::Aaaa(a.0)),
            RData::TXT(t) => Some(Rdata::Txt(t.txt_data.iter().map(|s| s.to_vec()).collect())),
            _ => None,
        }
    }
}

/// An RFC 2136 prerequisite on one RRset (name and type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prereq {
    /// The owner name.
    pub name: Name,
    /// The type.
    pub rtype: RecordType,
    /// The RRset must be exactly these records (§2.4.2, "RRset exists (value
    /// dependent)"), or must not exist when empty (§2.4.3).
    pub exactly: Vec<Rdata>,
}

/// One change of an RFC 2136 update (§2.5). apivip never deletes a whole RRset or
/// name: records it did not write are never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// §2.5.1: add this record (a duplicate is ignored by the server).
    Add {
        /// The owner name.
        name: Name,
        /// The TTL in seconds.
        ttl: u32,
        /// The data.
        rdata: Rdata,
    },
    /// §2.5.4: delete this record (absent: ignored by the server).
    Delete {
        /// The owner name.
        name: Name,
        /// The data.
        rdata: Rdata,
    },
}

/// A query for one RRset (RD clear: the server is authoritative).
pub fn query(id: u16, name: &Name, rtype: RecordType) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(name.clone(), rtype));
    m.set_edns(edns());
    m
}

/// An UPDATE of `zone` (RFC 2136 §2): the zone section, the prerequisites (all must
/// hold, or nothing is changed: §3.2) and the changes, applied atomically (§3.7).
pub fn update(id: u16, zone: &Name, prereqs: &[Prereq], changes: &[Change]) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    let mut z = Query::query(zone.clone(), RecordType::SOA);
    z.set_query_class(DNSClass::IN);
    m.add_zone(z);
    for p in prereqs {
        if p.exactly.is_empty() {
            // §2.4.3: CLASS NONE, TYPE, TTL 0, RDLENGTH 0.
            let mut r = Record::update0(p.name.clone(), 0, p.rtype);
            r.dns_class = DNSClass::NONE;
            m.add_pre_requisite(r);
        } else {
            // §2.4.2: every RR of the set, CLASS IN (the zone's), TTL 0.
            for d in &p.exactly {
                m.add_pre_requisite(Record::from_rdata(p.name.clone(), 0, d.to_hickory()));
            }
        }
    }
    for c in changes {
        let r = match c {
            Change::Add { name, ttl, rdata } => {
                Record::from_rdata(name.clone(), *ttl, rdata.to_hickory())
            }
            Change::Delete { name, rdata } => {
                // §2.5.4: CLASS NONE, TTL 0.
                let mut r = Record::from_rdata(name.clone(), 0, rdata.to_hickory());
                r.dns_class = DNSClass::NONE;
                r
            }
        };
        m.add_update(r);
    }
    m.set_edns(edns());
    m
}

fn edns() -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(UDP_PAYLOAD);
    e.set_version(0);
    e
}

/// A signed request on its way: what the reply is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The bytes to send (over TCP with a two-byte length in front).
    pub bytes: Vec<u8>,
    /// The message ID.
    pub id: u16,
    /// The opcode.
    pub op_code: OpCode,
    /// The question (the zone section of an UPDATE).
    pub question: Option<Query>,
    /// Our request's MAC: the reply's MAC covers it (RFC 8945 §5.3.1).
    pub mac: Vec<u8>,
    /// When it was signed, seconds since the Unix epoch.
    pub time: u64,
}

/// Signs `message` with `key` at `unix_now` (seconds since the Unix epoch).
pub fn sign(mut message: Message, key: &Key, unix_now: u64) -> Result<Signed, WireError> {
    let (tsig, _) = key
        .signer
        .sign_message(&message, unix_now)
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let mac = tsig.data.mac.clone();
    message.set_signature(tsig);
    let bytes = message
        .to_vec()
        .map_err(|e| WireError::Encode(e.to_string()))?;
    Ok(Signed {
        bytes,
        id: message.metadata.id,
        op_code: message.metadata.op_code,
        question: message.queries.first().cloned(),
        mac,
        time: unix_now,
    })
}

/// Why a datagram was not taken as the reply (keep waiting for another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// It does not decode as a DNS message.
    Undecodable(String),
    /// Another ID, not a response, another opcode or another question.
    NotOurs,
    /// No TSIG record (RFC 8945 §5.4: as if not received); its RCODE, for the report.
    Unsigned(ResponseCode),
    /// The MAC does not verify with our key (forged, or another key).
    BadMac(String),
}

/// A TSIG error the server reported in an unsigned reply (RFC 8945 §5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRejection {
    /// BADKEY: the server does not know our key name or algorithm.
    BadKey,
    /// BADSIG: the server knows the key, but our MAC does not verify (another secret).
    BadSig,
}

/// An authenticated reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The RCODE.
    pub rcode: ResponseCode,
    /// The TSIG error the server signed (BADTIME), if any.
    pub tsig_error: Option<TsigError>,
    /// The server's clock as it signed the reply (for BADTIME: Other Data, RFC 8945
    /// §5.2.3), seconds since the Unix epoch.
    pub server_time: u64,
    /// Our clock minus the server's, in seconds, when that is more than the fudge
    /// (RFC 8945 §5.4.3): the reply is authentic but too old or from the future.
    pub clock_skew: Option<i64>,
    /// The answer section's records of the asked type, as (owner, data).
    pub records: Vec<(Name, Rdata)>,
}

/// What a received datagram is, for the request `sent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Not the reply: keep waiting.
    Ignored(Ignored),
    /// The reply was truncated: ask again over TCP.
    Truncated,
    /// The server rejected our key or signature (unauthenticated by design).
    KeyRejected {
        /// BADKEY or BADSIG.
        error: KeyRejection,
        /// The RCODE (NOTAUTH from BIND).
        rcode: ResponseCode,
    },
    /// The authenticated reply.
    Answer(Answer),
}

/// Decodes and authenticates `bytes` as the reply to `sent`, at `unix_now`. Never
/// panics, whatever the bytes.
pub fn decode_reply(bytes: &[u8], sent: &Signed, key: &Key, unix_now: u64) -> Reply {
    // 1. It must decode (this also refuses a TSIG record anywhere but last, and two
    //    of them, before hickory's verifier sees the bytes).
    let message = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => return Reply::Ignored(Ignored::Undecodable(e.to_string())),
    };
    // 2. It must answer this request.
    let md = &message.metadata;
    if md.id != sent.id
        || md.message_type != MessageType::Response
        || md.op_code != sent.op_code
        || !(message.queries.is_empty() || message.queries.first() == sent.question.as_ref())
    {
        return Reply::Ignored(Ignored::NotOurs);
    }
    // 3. Truncated: TCP.
    if md.truncation {
        return Reply::Truncated;
    }
    // 4. Signed at all.
    let Some(sig) = message.signature() else {
        return Reply::Ignored(Ignored::Unsigned(md.response_code));
    };
    let tsig = &sig.data;
    // 5. Our key or signature rejected: an unsigned error (RFC 8945 §5.3.2).
    if tsig.mac.is_empty() {
        let error = match tsig.error {
            Some(TsigError::BadKey) => KeyRejection::BadKey,
            Some(TsigError::BadSig) => KeyRejection::BadSig,
            _ => return Reply::Ignored(Ignored::BadMac("an empty MAC".into())),
        };
        return Reply::KeyRejected {
            error,
            rcode: md.response_code,
        };
    }
    // 6. The MAC. hickory computes `time - fudge` unchecked: refuse what would wrap.
    if tsig.time < u64::from(tsig.fudge) {
        return Reply::Ignored(Ignored::BadMac(format!("time {} < fudge", tsig.time)));
    }
    let range = match key.signer.verify_message_byte(bytes, Some(&sent.mac), true) {
        Ok((_, _, range)) => range,
        Err(e) => return Reply::Ignored(Ignored::BadMac(e.to_string())),
    };
    // 7. BADTIME: the server's time is in Other Data (6 bytes, like Time Signed).
    let server_time = if tsig.error == Some(TsigError::BadTime) && tsig.other.len() == 6 {
        tsig.other
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        tsig.time
    };
    // 8. Our clock within the reply's time ± fudge.
    let skew = i64::try_from(unix_now).unwrap_or(i64::MAX)
        - i64::try_from(server_time).unwrap_or(i64::MAX);
    let clock_skew =
        (!range.contains(&unix_now) || tsig.error == Some(TsigError::BadTime)).then_some(skew);
    let records = message
        .answers
        .iter()
        .filter_map(|r| Some((r.name.clone(), Rdata::from_hickory(&r.data)?)))
        .collect();
    Reply::Answer(Answer {
        rcode: md.response_code,
        tsig_error: tsig.error,
        server_time,
        clock_skew,
        records,
    })
}

/// The reply a server holding `key` sends to `sent`, signed at `time` (RFC 8945
/// §5.3): `rcode`, the question echoed, `records` as answers. For tests and the fuzz
/// target, which need genuine replies to damage.
pub fn signed_reply(
    sent: &Signed,
    key: &Key,
    time: u64,
    rcode: ResponseCode,
    records: &[(Name, Rdata)],
) -> Result<Vec<u8>, WireError> {
    let encode = |e: hickory_proto::ProtoError| WireError::Encode(e.to_string());
    let mut m = Message::response(sent.id, sent.op_code);
    m.metadata.response_code = rcode;
    if let Some(q) = &sent.question {
        m.add_query(q.clone());
    }
    for (n, d) in records {
        m.add_answer(Record::from_rdata(n.clone(), 5, d.to_hickory()));
    }
    let unsigned = m.to_vec().map_err(encode)?;
    let ctx = hickory_proto::rr::TSigResponseContext::new(
        sent.id,
        time,
        key.signer.clone(),
        sent.mac.clone(),
        None,
    );
    m.set_signature(ctx.sign(&unsigned).map_err(encode)?);
    m.to_vec().map_err(encode)
}

#[cfg(test)]
mod tests;
