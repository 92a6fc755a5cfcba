//! VRRP (RFC 9568 VRRPv3, and RFC 3768 VRRPv2 as keepalived speaks it) for floating the
//! control-plane VIP.
//!
//! - [`packet`]: the sans-IO advertisement codec (zero-copy [`packet::Packet`] view,
//!   validated [`packet::Repr`], checksums, IPv4 raw-socket datagrams).
//! - [`machine`]: the sans-IO election state machine of one instance (RFC 9568 §6,
//!   RFC 3768 §6), with planned handover and health-weighted priority.
//! - [`units`]: VRID, priority and the per-version interval units, converted in one place.
//! - [`track`]: whether this node can serve, by the configured `vrrp.track`.
//! - [`sync`]: sync groups, instances of one node that move together.
//!
//! `packet`, `machine`, `sync`, `track` and `units` are sans-IO cores: they open no sockets and never
//! read the clock. The I/O lives in thin modules around them, under [`io`]: the raw
//! socket, netlink, the announcements and the shell thread that drives the machine.

pub mod io;
pub mod machine;
pub mod packet;
pub mod sync;
pub mod track;
pub mod units;
