//! One signed request to one server and its authenticated reply: UDP first, TCP when
//! the reply is truncated or the request is larger than [`UDP_PAYLOAD`]. Every check
//! of the reply is [`decode_reply`]'s; this only moves bytes and keeps the deadline.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::dns::wire::{
    decode_reply, sign, Answer, Ignored, Key, KeyRejection, Reply, Signed, WireError, UDP_PAYLOAD,
};

/// Why an exchange gave no authenticated answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The request could not be built or signed.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The server rejected our TSIG key (BADKEY: unknown name or algorithm) or our
    /// signature (BADSIG: another secret).
    #[error("the server rejected the TSIG {}: {rcode}", match error { KeyRejection::BadKey => "key (BADKEY: it does not know this key name and algorithm)", KeyRejection::BadSig => "signature (BADSIG: the secret differs)" })]
    KeyRejected {
        /// BADKEY or BADSIG.
        error: KeyRejection,
        /// The RCODE.
        rcode: ResponseCode,
    },
    /// No authenticated reply before the deadline. `unsigned` is the RCODE of an
    /// unsigned reply that came meanwhile (a server without our key answers REFUSED
    /// or NOTAUTH unsigned), `forged` how many replies failed the MAC check.
    #[error("no authenticated reply within {timeout:?}{}{}", unsigned.map(|r| format!(" (an unsigned reply said {r})")).unwrap_or_default(), if *forged > 0 { format!(" ({forged} replies with a wrong MAC)") } else { String::new() })]
    Timeout {
        /// The deadline.
        timeout: Duration,
        /// The RCODE of an unsigned reply, if one came.
        unsigned: Option<ResponseCode>,
        /// Replies whose MAC did not verify.
        forged: u32,
    },
    /// The server cannot be reached (ICMP unreachable, connection refused, no route).
    #[error("unreachable: {0}")]
    Unreachable(String),
}

/// Sends `message` to `server`, signed with `key` at `unix_now` (seconds since the
/// Unix epoch, as the caller's clock says), and waits at most `timeout` for the
/// authenticated reply.
pub async fn exchange(
    server: SocketAddr,
    key: &Key,
    message: Message,
    unix_now: u64,
    timeout: Duration,
) -> Result<Answer, ExchangeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let signed = sign(message, key, unix_now)?;
    let mut waited = Waited::default();
    let over_udp = signed.bytes.len() <= usize::from(UDP_PAYLOAD);
    if over_udp {
        match tokio::time::timeout_at(deadline, udp(server, &signed, key, &mut waited)).await {
            Ok(Ok(Some(answer))) => return Ok(answer),
            Ok(Ok(None)) => {} // truncated: TCP
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(waited.timeout(timeout)),
        }
    }
    match tokio::time::timeout_at(deadline, tcp(server, &signed, key, &mut waited)).await {
        Ok(result) => result,
        Err(_) => Err(waited.timeout(timeout)),
    }
}

/// What came meanwhile that was not the reply.
#[derive(Debug, Default)]
struct Waited {
    unsigned: Option<ResponseCode>,
    forged: u32,
}

impl Waited {
    fn note(&mut self, ignored: Ignored) {
        match ignored {
            Ignored::Unsigned(rcode) => self.unsigned = Some(rcode),
            Ignored::BadMac(_) => self.forged += 1,
            Ignored::Undecodable(_) | Ignored::NotOurs => {}
        }
    }

    fn timeout(&self, timeout: Duration) -> ExchangeError {
        ExchangeError::Timeout {
            timeout,
            unsigned: self.unsigned,
            forged: self.forged,
        }
    }
}

fn unreachable(e: std::io::Error) -> ExchangeError {
    ExchangeError::Unreachable(e.to_string())
}

/// `Some(answer)`, or `None` when the reply was truncated.
async fn udp(
    server: SocketAddr,
    signed: &Signed,
    key: &Key,
    waited: &mut Waited,
) -> Result<Option<Answer>, ExchangeError> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(local).await.map_err(unreachable)?;
    // Connected: replies from elsewhere never reach us; ICMP errors do.
    sock.connect(server).await.map_err(unreachable)?;
    sock.send(&signed.bytes).await.map_err(unreachable)?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await.map_err(unreachable)?;
        match decode_reply(&buf[..n], signed, key, signed.time) {
            Reply::Answer(answer) => return Ok(Some(answer)),
            Reply::Truncated => return Ok(None),
            Reply::KeyRejected { error, rcode } => {
                return Err(ExchangeError::KeyRejected { error, rcode })
            }
            Reply::Ignored(why) => waited.note(why),
        }
    }
}

async fn tcp(
    server: SocketAddr,
    signed: &Signed,
    key: &Key,
    waited: &mut Waited,
) -> Result<Answer, ExchangeError> {
    let mut stream = TcpStream::connect(server).await.map_err(unreachable)?;
    let len = u16::try_from(signed.bytes.len())
        .map_err(|_| WireError::Encode(format!("{} bytes: too large", signed.bytes.len())))?;
    let mut framed = Vec::with_capacity(signed.bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&signed.bytes);
    stream.write_all(&framed).await.map_err(unreachable)?;
    loop {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(unreachable)?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.map_err(unreachable)?;
        match decode_reply(&buf, signed, key, signed.time) {
            Reply::Answer(answer) => return Ok(answer),
            Reply::KeyRejected { error, rcode } => {
                return Err(ExchangeError::KeyRejected { error, rcode })
            }
            // Over TCP a truncated reply cannot be completed.
            Reply::Truncated => waited.note(Ignored::NotOurs),
            Reply::Ignored(why) => waited.note(why),
        }
    }
}
