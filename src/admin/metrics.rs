//! `/metrics`: the status document and the checkers' histograms as Prometheus metrics.
//!
//! Everything is rendered at scrape time from values the daemon keeps anyway (atomic
//! counters, the health view, the election's report), so metrics add nothing to the
//! proxy's or the election's hot path. Names, units and labels follow the Prometheus
//! conventions; README's metrics table lists them all.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::admin::status::{StatusDoc, VrrpDoc};
use crate::health::stats::{DurationHistogram, HealthStats};

/// The Prometheus text format's content type.
pub const TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// The OpenMetrics text format's content type.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the metrics; `openmetrics` picks the OpenMetrics text format (what a
/// Prometheus server asks for), else the Prometheus text format 0.0.4 (curl,
/// `promtool check metrics`).
pub fn render(doc: &StatusDoc, histograms: &HealthStats, openmetrics: bool) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot {
        doc: doc.clone(),
        histograms: doc_histograms(histograms),
    }));
    let mut out = String::new();
    let result = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
    };
    if result.is_err() {
        out.clear();
    }
    out
}

/// The check duration histogram of every backend, with its labels.
fn doc_histograms(stats: &HealthStats) -> Vec<([(String, String); 2], DurationHistogram)> {
    stats
        .iter()
        .map(|(id, name, s)| {
            (
                [
                    ("frontend".to_owned(), id.frontend.as_str().to_owned()),
                    ("backend".to_owned(), name.to_owned()),
                ],
                s.durations(),
            )
        })
        .collect()
}

#[derive(Debug)]
struct Snapshot {
    doc: StatusDoc,
    histograms: Vec<([(String, String); 2], DurationHistogram)>,
}

type Labels = Vec<(&'static str, String)>;

/// Writes one family: a descriptor and its samples.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

fn gauge(v: i64) -> ConstGauge<i64> {
    ConstGauge::new(v)
}

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let d = &self.doc;
        let e = &mut enc;
        family(
            e,
            "apivip_build_info",
            "apivip's version and the commit it was built from (always 1).",
            MetricType::Gauge,
            [(
                l(&[("version", &d.daemon.version), ("commit", &d.daemon.commit)]),
                gauge(1),
            )],
        )?;
        family(
            e,
            "process_start_time_seconds",
            "When the process started, in seconds since the Unix epoch.",
            MetricType::Gauge,
            [(Vec::new(), gauge((d.daemon.started_ms / 1000) as i64))],
        )?;
        family(
            e,
            "apivip_config_reloads",
            "Config reloads by result.",
            MetricType::Counter,
            d.reloads
                .iter()
                .map(|(r, n)| (l(&[("result", r)]), counter(*n))),
        )?;
        family(
            e,
            "apivip_config_last_reload_successful",
            "Whether the last config reload was applied (1 also before any reload).",
            MetricType::Gauge,
            [(
                Vec::new(),
                gauge(i64::from(d.last_reload.as_ref().is_none_or(|r| r.ok))),
            )],
        )?;
        family(
            e,
            "apivip_controls",
            "Operator controls (handover, resume, drain, undrain) by result.",
            MetricType::Counter,
            d.controls.iter().filter_map(|(k, n)| {
                let (c, r) = k.split_once('/')?;
                Some((l(&[("control", c), ("result", r)]), counter(*n)))
            }),
        )?;
        self.encode_backends(e)?;
        self.encode_frontends(e)?;
        self.encode_notify(e)?;
        self.encode_dns(e)?;
        self.encode_vrrp(e)
    }
}

impl Snapshot {
    fn encode_backends(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let backends: Vec<(&str, &crate::admin::status::BackendDoc)> = self
            .doc
            .frontends
            .iter()
            .flat_map(|f| f.backends.iter().map(move |b| (f.name.as_str(), b)))
            .collect();
        let base = |f: &str, b: &crate::admin::status::BackendDoc| {
            l(&[("frontend", f), ("backend", &b.name)])
        };
        family(
            e,
            "apivip_backend_state",
            "Backend state: 1 for the current one of unknown, up, not_ready, unreachable, unresponsive, draining.",
            MetricType::Gauge,
            backends.iter().flat_map(|(f, b)| {
                ["unknown", "up", "not_ready", "unreachable", "unresponsive", "draining"]
                    .into_iter()
                    .map(move |s| {
                        let mut labels = base(f, b);
                        labels.push(("state", s.to_owned()));
                        (labels, gauge(i64::from(b.state == s)))
                    })
            }),
        )?;
        family(
            e,
            "apivip_backend_healthy",
            "1 while health checks say the backend is up (drained or not).",
            MetricType::Gauge,
            backends
                .iter()
                .map(|(f, b)| (base(f, b), gauge(i64::from(b.health == "up")))),
        )?;
        family(
            e,
            "apivip_backend_transitions",
            "Backend health transitions by target state and reason.",
            MetricType::Counter,
            backends.iter().flat_map(|(f, b)| {
                b.counters.transitions.iter().filter_map(move |(k, n)| {
                    let (to, reason) = k.split_once('/')?;
                    let mut labels = base(f, b);
                    labels.push(("to", to.to_owned()));
                    labels.push(("reason", reason.to_owned()));
                    Some((labels, counter(*n)))
                })
            }),
        )?;
        family(
            e,
            "apivip_backend_check_failures",
            "Failed health checks by reason.",
            MetricType::Counter,
            backends.iter().flat_map(|(f, b)| {
                b.counters.check_failures.iter().map(move |(reason, n)| {
                    let mut labels = base(f, b);
                    labels.push(("reason", reason.clone()));
                    (labels, counter(*n))
                })
            }),
        )?;
        if !self.histograms.is_empty() {
            let mut fam = e.encode_descriptor(
                "apivip_backend_check_duration_seconds",
                "How long health checks took, in seconds.",
                None,
                MetricType::Histogram,
            )?;
            for (labels, h) in &self.histograms {
                fam.encode_family(labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum, h.count, &h.buckets, None,
                    )?;
            }
        }
        let per = |name: &str,
                   help: &str,
                   kind: MetricType,
                   get: fn(&crate::admin::status::BackendDoc) -> u64| {
            (name.to_owned(), help.to_owned(), kind, get)
        };
        for (name, help, kind, get) in [
            per("apivip_backend_active_connections", "Connections proxied to the backend now.", MetricType::Gauge, |b| b.active_connections as u64),
            per("apivip_backend_connections", "Connections proxied to the backend (successful connects).", MetricType::Counter, |b| b.counters.connections),
            per("apivip_backend_connect_retries", "Connects to the backend after another backend failed for the same client.", MetricType::Counter, |b| b.counters.connect_retries),
            per("apivip_backend_closed_on_down", "Connections closed because the backend went down or stayed not ready past the grace.", MetricType::Counter, |b| b.counters.closed_on_down),
            per("apivip_backend_sent_bytes", "Bytes from clients to the backend.", MetricType::Counter, |b| b.counters.sent_bytes),
            per("apivip_backend_received_bytes", "Bytes from the backend to clients.", MetricType::Counter, |b| b.counters.received_bytes),
        ] {
            match kind {
                MetricType::Gauge => family(
                    e,
                    &name,
                    &help,
                    kind,
                    backends
                        .iter()
                        .map(|(f, b)| (base(f, b), gauge(get(b) as i64))),
                )?,
                _ => family(
                    e,
                    &name,
                    &help,
                    kind,
                    backends.iter().map(|(f, b)| (base(f, b), counter(get(b)))),
                )?,
            }
        }
        family(
            e,
            "apivip_backend_connect_failures",
            "Failed connects to the backend by reason (refused, timeout, other, went_down).",
            MetricType::Counter,
            backends.iter().flat_map(|(f, b)| {
                b.counters.connect_failures.iter().map(move |(reason, n)| {
                    let mut labels = base(f, b);
                    labels.push(("reason", reason.clone()));
                    (labels, counter(*n))
                })
            }),
        )
    }

    /// The DNS publisher's families, with `dns:` only.
    fn encode_dns(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let Some(d) = &self.doc.dns else {
            return Ok(());
        };
        family(
            e,
            "apivip_dns_requests",
            "DNS exchanges of this node by kind (read, write) and result (ok, conflict, timeout, unreachable, badkey, badsig, badtime, notauth, refused, servfail, notzone, formerr, unsigned, error).",
            MetricType::Counter,
            d.requests.iter().filter_map(|(k, n)| {
                let (kind, result) = k.split_once('/')?;
                Some((l(&[("kind", kind), ("result", result)]), counter(*n)))
            }),
        )?;
        family(
            e,
            "apivip_dns_record_changes",
            "Addresses this node added to or removed from the published name.",
            MetricType::Counter,
            [
                (l(&[("change", "add")]), counter(d.records_added)),
                (l(&[("change", "remove")]), counter(d.records_removed)),
            ],
        )?;
        family(
            e,
            "apivip_dns_published_masters",
            "Masters whose addresses the name returns, as last read or written.",
            MetricType::Gauge,
            [(l(&[("name", &d.name)]), gauge(d.published.len() as i64))],
        )?;
        family(
            e,
            "apivip_dns_wanted_masters",
            "Masters the votes want published (differs from the published ones until a write lands).",
            MetricType::Gauge,
            [(l(&[("name", &d.name)]), gauge(d.wanted.len() as i64))],
        )?;
        family(
            e,
            "apivip_dns_votes",
            "Votes in the zone by state (live, expired).",
            MetricType::Gauge,
            ["live", "expired"].map(|s| {
                let n = d
                    .votes
                    .iter()
                    .filter(|v| v.expired == (s == "expired"))
                    .count();
                (l(&[("state", s)]), gauge(n as i64))
            }),
        )?;
        family(
            e,
            "apivip_dns_last_write_ok",
            "Whether this node's last DNS write succeeded or lost a race (1), or failed (0); 1 before any write.",
            MetricType::Gauge,
            [(
                Vec::new(),
                gauge(i64::from(
                    d.last_write
                        .as_ref()
                        .is_none_or(|w| w.result == "ok" || w.result == "conflict"),
                )),
            )],
        )
    }

    fn encode_notify(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let hooks = &self.doc.notify;
        family(
            e,
            "apivip_notify_runs",
            "Notify hook runs by hook and result (ok, failed, timeout: killed, error: could not start).",
            MetricType::Counter,
            hooks.iter().flat_map(|h| {
                h.runs
                    .iter()
                    .map(|(r, n)| (l(&[("hook", &h.name), ("result", r)]), counter(*n)))
            }),
        )?;
        family(
            e,
            "apivip_notify_dropped",
            "Notify hook runs dropped unrun because the hook's queue was full.",
            MetricType::Counter,
            hooks
                .iter()
                .map(|h| (l(&[("hook", &h.name)]), counter(h.dropped))),
        )
    }

    fn encode_frontends(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let fs = &self.doc.frontends;
        let fl = |f: &crate::admin::status::FrontendDoc| l(&[("frontend", &f.name)]);
        family(
            e,
            "apivip_frontend_active_connections",
            "Client connections proxied now.",
            MetricType::Gauge,
            fs.iter()
                .map(|f| (fl(f), gauge(f.active_connections as i64))),
        )?;
        family(
            e,
            "apivip_frontend_max_connections",
            "The frontend's connection limit (max_connections).",
            MetricType::Gauge,
            fs.iter().map(|f| (fl(f), gauge(f.max_connections as i64))),
        )?;
        family(
            e,
            "apivip_frontend_refused_connections",
            "Clients refused or closed by the abuse limits, by reason: source_limit, source_rate, first_byte_timeout, half_close_timeout, fd_budget, evicted_silent.",
            MetricType::Counter,
            fs.iter().flat_map(|f| {
                f.refused.iter().map(move |(reason, n)| {
                    (
                        l(&[("frontend", &f.name), ("reason", reason)]),
                        counter(*n),
                    )
                })
            }),
        )?;
        family(
            e,
            "apivip_frontend_accept_failing",
            "1 while the frontend's listeners cannot accept for want of descriptors or memory (the node does not claim it can serve).",
            MetricType::Gauge,
            fs.iter()
                .map(|f| (fl(f), gauge(i64::from(f.accept_error.is_some())))),
        )?;
        family(
            e,
            "apivip_frontend_local_outage",
            "1 while most masters turned down at the same moment from this node: their connections are kept (for at most 30 s) as this node's own outage.",
            MetricType::Gauge,
            fs.iter()
                .map(|f| (fl(f), gauge(i64::from(f.local_outage)))),
        )?;
        for (name, help, get) in [
            (
                "apivip_frontend_connections",
                "Client connections accepted.",
                (|f| f.connections_total) as fn(&crate::admin::status::FrontendDoc) -> u64,
            ),
            (
                "apivip_frontend_rejected_connections",
                "Clients closed at once because max_connections was reached.",
                |f| f.rejected_total,
            ),
            (
                "apivip_frontend_no_backend",
                "Clients closed because no backend accepted the connection.",
                |f| f.no_backend_total,
            ),
            (
                "apivip_frontend_fallback_connects",
                "Connects tried on a not-healthy backend because no healthy one was left.",
                |f| f.fallback_connects_total,
            ),
            (
                "apivip_frontend_rebalanced_connections",
                "Connections closed to move them to a less loaded master (rebalance), whose clients reconnect.",
                |f| f.rebalanced_total,
            ),
        ] {
            family(
                e,
                name,
                help,
                MetricType::Counter,
                fs.iter().map(|f| (fl(f), counter(get(f)))),
            )?;
        }
        Ok(())
    }

    /// Every VRRP series carries the instance's `vrid`, `family` (with the VRID, the
    /// virtual router on the link) and `vrrp_instance` (its name); the series of all
    /// instances go into one family per metric.
    fn encode_vrrp(&self, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
        let docs = &self.doc.vrrp_instances;
        if docs.is_empty() {
            return Ok(());
        }
        let base = |v: &VrrpDoc| {
            l(&[
                ("vrid", &v.vrid.to_string()),
                ("family", &v.family),
                ("vrrp_instance", &v.name),
            ])
        };
        let with = |v: &VrrpDoc, extra: &[(&'static str, &str)]| {
            let mut labels = base(v);
            labels.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
            labels
        };
        family(
            e,
            "apivip_vrrp_state",
            "VRRP state: 1 for the current one of initialize, backup, master, fault.",
            MetricType::Gauge,
            docs.iter().flat_map(|v| {
                ["initialize", "backup", "master", "fault"]
                    .into_iter()
                    .map(move |s| (with(v, &[("state", s)]), gauge(i64::from(v.state == s))))
            }),
        )?;
        family(
            e,
            "apivip_vrrp_priority",
            "The configured VRRP priority.",
            MetricType::Gauge,
            docs.iter().map(|v| (base(v), gauge(i64::from(v.priority)))),
        )?;
        family(
            e,
            "apivip_vrrp_vip_present",
            "1 while the VIP is on this node's interface (read from netlink).",
            MetricType::Gauge,
            docs.iter().flat_map(|v| {
                v.vips.iter().filter_map(move |x| {
                    Some((
                        with(v, &[("vip", &x.address)]),
                        gauge(i64::from(x.present?)),
                    ))
                })
            }),
        )?;
        // An election thread that did not answer: no counters rather than zeros,
        // which Prometheus would take for a counter reset.
        let answered: Vec<&VrrpDoc> = docs.iter().filter(|v| v.state != "unknown").collect();
        let now_ms = self.doc.daemon.now_ms;
        for (name, help, value) in [
            ("apivip_vrrp_effective_priority", "The priority used and advertised now (lowered while unable to serve, during a handover and in maintenance).", (|v: &VrrpDoc| i64::from(v.effective_priority)) as fn(&VrrpDoc) -> i64),
            ("apivip_vrrp_maintenance", "1 while `apivip handover` maintenance is in force (until `apivip resume`).", |v| i64::from(v.maintenance)),
            ("apivip_vrrp_masters_heard", "Routers claiming master in the last three advert intervals, this one included: above 1 means two VIP holders.", |v| v.masters_heard as i64),
        ] {
            family(e, name, help, MetricType::Gauge, answered.iter().map(|v| (base(v), gauge(value(v)))))?;
        }
        family(
            e,
            "apivip_vrrp_state_duration_seconds",
            "Seconds since the last VRRP state change.",
            MetricType::Gauge,
            answered.iter().map(|v| {
                let age = v.since_ms.map_or(0, |s| now_ms.saturating_sub(s)) as f64 / 1000.0;
                (base(v), ConstGauge::new(age))
            }),
        )?;
        if answered.iter().any(|v| v.master.is_some()) {
            family(
                e,
                "apivip_vrrp_master_info",
                "The current master's address as this node knows it (always 1).",
                MetricType::Gauge,
                answered.iter().filter_map(|v| {
                    let m = v.master.as_deref()?;
                    Some((with(v, &[("master", m)]), gauge(1)))
                }),
            )?;
        }
        type Get = fn(&crate::admin::status::VrrpCounters) -> u64;
        for (name, help, value) in [
            ("apivip_vrrp_adverts_sent", "VRRP adverts sent.", (|c: &crate::admin::status::VrrpCounters| c.adverts_sent) as Get),
            ("apivip_vrrp_adverts_received", "Valid VRRP adverts received.", |c| c.adverts_received),
            ("apivip_vrrp_priority_zero_sent", "Priority-0 (resign) adverts sent.", |c| c.priority_zero_sent),
            ("apivip_vrrp_priority_zero_received", "Priority-0 (resign) adverts received.", |c| c.priority_zero_received),
            ("apivip_vrrp_master_conflicts", "Adverts from another router claiming master while this node was master (split-brain signal; a preemption or handover adds one or two).", |c| c.master_conflicts),
            ("apivip_vrrp_split_brain", "Split brains ended: as master, a lower-priority router also claiming master was heard and this node re-asserted itself (advert and gratuitous ARP / NA at once).", |c| c.split_brains),
            ("apivip_vrrp_lingers", "Times this node lost the VIPs to a higher priority soon after announcing them and kept them until the new master's next advert, so that clients its announcement pulled are moved back first.", |c| c.lingers),
            ("apivip_vrrp_kernel_filtered", "Datagrams the VRRP socket's kernel filter dropped before the election saw them (another VRID, TTL or version, a non-peer in unicast mode, below a preempting backup's priority); a flood shows here.", |c| c.kernel_filtered),
            ("apivip_vrrp_adverts_missed", "Adverts of the master this node missed as backup, counted from the gaps between those it received; each gap lengthens its master-down wait by one interval for a while (at most three).", |c| c.adverts_missed),
            ("apivip_vrrp_vip_restored", "VIPs removed from the interface by someone else while this node was master, added back and announced.", |c| c.vips_restored),
            ("apivip_vrrp_kernel_drops", "Datagrams the kernel dropped on the VRRP socket because its receive buffer was full (a flood); a backup then restarts its master-down timer once per accepted advert.", |c| c.kernel_drops),
        ] {
            family(e, name, help, MetricType::Counter, answered.iter().map(|v| (base(v), counter(value(&v.counters)))))?;
        }
        family(
            e,
            "apivip_vrrp_faults",
            "Faults that took (or kept) this node out of the election, by cause (interface_gone, link_down, no_carrier, no_source_address, vip_add_failed, sync_group).",
            MetricType::Counter,
            answered.iter().flat_map(|v| {
                v.counters
                    .faults
                    .iter()
                    .map(move |(cause, n)| (with(v, &[("cause", cause)]), counter(*n)))
            }),
        )?;
        family(
            e,
            "apivip_vrrp_adverts_dropped",
            "Received VRRP adverts dropped, by reason.",
            MetricType::Counter,
            answered.iter().flat_map(|v| {
                v.counters
                    .dropped
                    .iter()
                    .map(move |(reason, n)| (with(v, &[("reason", reason)]), counter(*n)))
            }),
        )?;
        family(
            e,
            "apivip_vrrp_transitions",
            "VRRP state changes by the state entered and the reason.",
            MetricType::Counter,
            answered.iter().flat_map(|v| {
                v.counters.transitions.iter().filter_map(move |(k, n)| {
                    let (to, reason) = k.split_once('/')?;
                    Some((with(v, &[("to", to), ("reason", reason)]), counter(*n)))
                })
            }),
        )
    }
}
