//! DNS failover (issue 12): the control-plane name follows apiserver health through
//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), for masters that share no L2
//! segment.
//!
//! - [`wire`]: the messages, as pure functions over values and bytes (sans-IO).
//! - [`votes`]: every node's vote in the zone, and the rule that makes them the wanted
//!   record set (sans-IO).
//! - [`publisher`]: one node's rounds of read, compute and compare-and-swap write,
//!   with its timers (sans-IO).
//! - [`io`]: the exchange of one signed request with a server over UDP or TCP.

pub mod io;
pub mod publisher;
pub mod votes;
pub mod wire;
