//! Notify hooks: operator scripts run on VRRP state changes and backend transitions.
//!
//! - [`plan`]: which hooks run for a change, with which arguments and environment
//!   (sans-IO, exactly tested; the keepalived-compatible part lives there).
//! - [`runner`]: subscribes to [`crate::events::History`], queues runs per hook and
//!   runs them with a timeout; nothing in the election or the proxy ever waits on it.
//!
//! The config is `notify:` ([`crate::config::notify`]).

pub mod plan;
pub mod runner;

pub use runner::{Notifier, NotifyStats};
