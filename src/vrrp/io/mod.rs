//! The I/O around the sans-IO cores: everything here touches a socket, netlink or the
//! clock, and makes no protocol decision (those are the machine's).
//!
//! - [`socket`]: the raw IP protocol 112 socket (multicast or unicast, TTL 255).
//! - [`vip`]: adding and removing the VIPs over netlink.
//! - [`announce`]: gratuitous ARP and unsolicited neighbour advertisements.
//! - [`shell`]: the thread that drives one instance with those and the clock.

pub mod announce;
pub mod shell;
pub mod socket;
pub mod vip;
