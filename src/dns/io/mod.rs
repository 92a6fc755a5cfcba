//! The DNS side's I/O: sockets and the clock, no decisions.

pub mod exchange;
pub mod shell;
