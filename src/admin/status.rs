//! The `/status` document (version 1): what `apivip status` prints, and the source the
//! metrics are rendered from, so the two never disagree.
//!
//! The shape is versioned: fields are only ever added within a version; a removal or a
//! change of meaning bumps [`VERSION`]. Times are milliseconds since the Unix epoch
//! (`*_ms`) or durations in milliseconds (`*_ms_ago`, `*_interval_ms`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::Event;

/// The version of this document's shape.
pub const VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// [`VERSION`].
    pub version: u32,
    /// The daemon itself.
    pub daemon: DaemonInfo,
    /// Whether `/readyz` says ready, and what is missing if not.
    pub ready: bool,
    /// Why not ready (empty when ready).
    pub not_ready: Vec<String>,
    /// The first VRRP instance, when configured (as in documents before several
    /// instances; [`StatusDoc::vrrp_instances`] has them all).
    pub vrrp: Option<VrrpDoc>,
    /// Every VRRP instance, in config order.
    #[serde(default)]
    pub vrrp_instances: Vec<VrrpDoc>,
    /// The frontends in config order.
    pub frontends: Vec<FrontendDoc>,
    /// The newest events, oldest first (at most 20).
    pub events: Vec<Event>,
    /// Operator controls so far: `control/result` -> count.
    pub controls: BTreeMap<String, u64>,
    /// Config reloads so far: `success`/`failure` -> count.
    pub reloads: BTreeMap<String, u64>,
    /// The last reload (none since start: absent).
    #[serde(default)]
    pub last_reload: Option<ReloadDoc>,
    /// The notify hooks, in config order (absent from documents of older daemons).
    #[serde(default)]
    pub notify: Vec<HookDoc>,
    /// The DNS publisher, with `dns:`.
    #[serde(default)]
    pub dns: Option<DnsDoc>,
}

/// The DNS publisher (`dns:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsDoc {
    /// The published name.
    pub name: String,
    /// Its zone.
    pub zone: String,
    /// The servers, primary first.
    pub servers: Vec<String>,
    /// The master this node votes as.
    pub node: String,
    /// Masters published as last read or written.
    pub published: Vec<String>,
    /// Their addresses.
    pub published_addresses: Vec<String>,
    /// Masters the last round wanted.
    pub wanted: Vec<String>,
    /// This node's view: master -> `up`, `down`, `unknown`.
    pub view: BTreeMap<String, String>,
    /// The votes last read.
    pub votes: Vec<DnsVoteDoc>,
    /// The last write.
    pub last_write: Option<DnsWriteDoc>,
    /// The last failure, while the last exchange failed.
    pub last_error: Option<String>,
    /// Reads and writes: `read/RESULT`, `write/RESULT` -> count.
    pub requests: BTreeMap<String, u64>,
    /// Addresses this node added to the name.
    pub records_added: u64,
    /// Addresses this node removed from the name.
    pub records_removed: u64,
}

/// One vote in the zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsVoteDoc {
    /// The node that wrote it.
    pub node: String,
    /// Its sequence number.
    pub seq: u64,
    /// Expired (its writer stopped refreshing it).
    pub expired: bool,
}

/// The last write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsWriteDoc {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// `ok`, `conflict` or a failure kind.
    pub result: String,
}

/// One notify hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookDoc {
    /// Its name: `master`, `backup[1]`, `backend`.
    pub name: String,
    /// The key it runs under: `vrrp`, `master`, `backup`, `stop` or `backend`.
    pub on: String,
    /// The configured command line.
    pub command: String,
    /// Runs by result: `ok`, `failed`, `timeout`, `error`.
    pub runs: BTreeMap<String, u64>,
    /// Runs dropped unrun (its queue was full).
    pub dropped: u64,
}

/// A reload's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadDoc {
    /// Whether the new file was applied in full.
    pub ok: bool,
    /// Whether the new file runs (when not `ok`: except for the error in the last
    /// line); when false the daemon runs on the previous file.
    #[serde(default)]
    pub applied: bool,
    /// When it ended.
    pub at_ms: u64,
    /// What changed, or every error that refused the file.
    pub lines: Vec<String>,
}

/// The daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Package version.
    pub version: String,
    /// The commit it was built from.
    pub commit: String,
    /// The config file.
    pub config: String,
    /// When the process started.
    pub started_ms: u64,
    /// When this document was made.
    pub now_ms: u64,
}

/// The VRRP instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VrrpDoc {
    /// The instance's name (`vrrp[].name`).
    #[serde(default)]
    pub name: String,
    /// Its sync group, if it is in one.
    #[serde(default)]
    pub sync_group: Option<String>,
    /// `ipv4` or `ipv6`: with the VRID, what identifies the virtual router on the link.
    #[serde(default)]
    pub family: String,
    /// The virtual router id.
    pub vrid: u8,
    /// The interface.
    pub interface: String,
    /// `initialize`, `backup` or `master`; `unknown` when the election thread did not
    /// answer.
    pub state: String,
    /// When that state was entered.
    pub since_ms: Option<u64>,
    /// Why (`master_down`, `preempt`, `maintenance`, ...).
    pub reason: Option<String>,
    /// In `fault`: what keeps the node out of the election (`link_down`, `no_carrier`,
    /// `interface_gone`, `no_source_address`, `vip_add_failed`).
    #[serde(default)]
    pub faults: Vec<String>,
    /// The configured priority.
    pub priority: u8,
    /// The priority used now.
    pub effective_priority: u8,
    /// What lowered it: `handover`, `maintenance` or `cannot_serve`.
    pub lowered_by: Option<String>,
    /// Whether this node can serve (its track).
    pub can_serve: bool,
    /// `apivip handover` in force, until `apivip resume`.
    pub maintenance: bool,
    /// A handover is waiting for a new holder.
    pub handing_over: bool,
    /// The master as this node knows it.
    pub master: Option<String>,
    /// The VIPs, and whether each is on the interface now (netlink).
    pub vips: Vec<VipDoc>,
    /// Other routers heard.
    pub peers: Vec<PeerDoc>,
    /// Routers claiming master in the last three advert intervals, this one included.
    pub masters_heard: usize,
    /// Master_Adver_Interval.
    pub advert_interval_ms: u64,
    /// Master_Down_Interval now, with the lossy-link extension (see
    /// `counters.adverts_missed`).
    pub master_down_interval_ms: u64,
    /// Counters.
    pub counters: VrrpCounters,
}

/// One VIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipDoc {
    /// `198.18.0.5/24`.
    pub address: String,
    /// On the interface now; `None` if netlink could not be read.
    pub present: Option<bool>,
}

/// One router heard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDoc {
    /// Its address.
    pub address: String,
    /// Its last advertised priority.
    pub priority: u8,
    /// How long ago it was heard.
    pub last_heard_ms_ago: u64,
    /// Adverts heard from it.
    pub adverts: u64,
}

/// The election's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpCounters {
    /// Adverts sent.
    pub adverts_sent: u64,
    /// Valid adverts received.
    pub adverts_received: u64,
    /// Dropped adverts by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Priority-0 adverts sent.
    pub priority_zero_sent: u64,
    /// Priority-0 adverts received.
    pub priority_zero_received: u64,
    /// Adverts from another master while this node was master.
    pub master_conflicts: u64,
    /// Split brains ended by re-asserting (advert + announcement at once).
    #[serde(default)]
    pub split_brains: u64,
    /// VIPs kept after losing them to a higher priority, until the new master's
    /// next advert (a Master that had just announced them).
    #[serde(default)]
    pub lingers: u64,
    /// Adverts of the master this node missed as backup (gaps in the stream).
    #[serde(default)]
    pub adverts_missed: u64,
    /// VIPs removed by someone else while master, added back.
    #[serde(default)]
    pub vips_restored: u64,
    /// Datagrams the kernel dropped on the VRRP socket (receive buffer full).
    #[serde(default)]
    pub kernel_drops: u64,
    /// Datagrams the VRRP socket's kernel filter dropped (what the election can never
    /// accept: another VRID, TTL or version, a non-peer, below the priority floor).
    #[serde(default)]
    pub kernel_filtered: u64,
    /// Faults started, by cause.
    #[serde(default)]
    pub faults: BTreeMap<String, u64>,
    /// State changes: `to/reason` -> count.
    pub transitions: BTreeMap<String, u64>,
}

/// One frontend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontendDoc {
    /// `apiserver` or `etcd`.
    pub name: String,
    /// Where it listens.
    pub listen: Vec<String>,
    /// Connections proxied now.
    pub active_connections: usize,
    /// The limit.
    pub max_connections: usize,
    /// Clients accepted.
    pub connections_total: u64,
    /// Clients closed at the limit.
    pub rejected_total: u64,
    /// Clients closed because no backend accepted.
    pub no_backend_total: u64,
    /// Connects tried on a not-healthy backend because none was healthy.
    pub fallback_connects_total: u64,
    /// Clients refused or closed by the abuse limits, by reason (`source_limit`,
    /// `source_rate`, `first_byte_timeout`, `half_close_timeout`, `fd_budget`,
    /// `evicted_silent`).
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// Why its listeners cannot accept now (out of descriptors or memory); the node
    /// does not claim it can serve meanwhile.
    #[serde(default)]
    pub accept_error: Option<String>,
    /// Most masters turned down at once from this node: their connections are kept
    /// (for at most 30 s) as this node's own outage.
    #[serde(default)]
    pub local_outage: bool,
    /// Connections closed to move them to a less loaded master (`rebalance:`).
    #[serde(default)]
    pub rebalanced_total: u64,
    /// Its backends in config order.
    pub backends: Vec<BackendDoc>,
}

/// One backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendDoc {
    /// Its name.
    pub name: String,
    /// Where it is.
    pub address: String,
    /// `unknown`, `up`, `not_ready` or `unreachable` (health checks).
    pub health: String,
    /// `draining` when drained, else the health.
    pub state: String,
    /// Drained by an operator.
    pub drained: bool,
    /// When the health last changed.
    pub since_ms: Option<u64>,
    /// The last check's reason.
    pub reason: String,
    /// Connections proxied now.
    pub active_connections: usize,
    /// Counters.
    pub counters: BackendCounters,
}

/// One backend's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendCounters {
    /// Successful connects.
    pub connections: u64,
    /// Failed connects by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Connects after another backend failed for the same client.
    pub connect_retries: u64,
    /// Connections closed because it went down.
    pub closed_on_down: u64,
    /// Client to backend bytes.
    pub sent_bytes: u64,
    /// Backend to client bytes.
    pub received_bytes: u64,
    /// Failed checks by reason.
    pub check_failures: BTreeMap<String, u64>,
    /// Health transitions: `to/reason` -> count.
    pub transitions: BTreeMap<String, u64>,
}
