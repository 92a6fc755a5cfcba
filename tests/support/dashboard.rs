//! The queries of the shipped Grafana dashboard (`deploy/grafana/apivip.json`), with the
//! Grafana variables substituted so that each can be sent to Prometheus as is: the
//! dashboard's own variables (`$job`, `$instance`, ...) become `.*` (the dashboard uses
//! them only as `label=~"$var"`), interval variables (`$__rate_interval`, `$__interval`,
//! `$__range`) become `5m`. Used by the static dashboard test (promtool parses every
//! query) and by a live Prometheus that scrapes real apivip processes.
//!
//! Self-contained on purpose: std and serde_json only.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The dashboard, relative to the repository root.
pub const DASHBOARD: &str = "deploy/grafana/apivip.json";

/// What interval variables become in a raw query.
pub const INTERVAL: &str = "5m";

/// What the dashboard's own variables (job, instance, ...) become in a raw query.
pub const ALL: &str = ".*";

/// The path of the dashboard under `root` (the repository root).
pub fn dashboard_path(root: &Path) -> PathBuf {
    root.join(DASHBOARD)
}

/// Reads and parses the dashboard JSON.
pub fn load(root: &Path) -> Result<Value, String> {
    let path = dashboard_path(root);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels (collapsed rows keep theirs in `panels`) included, in
/// dashboard order.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(list) = dashboard.get("panels") {
        walk(list, &mut out);
    }
    out
}

/// Names of the dashboard's template variables other than data source pickers.
pub fn variable_names(dashboard: &Value) -> Vec<String> {
    dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("type").and_then(Value::as_str) != Some("datasource"))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// Replaces Grafana variables in `expr` (`$name`, `${name}`, `${name:format}`, `[[name]]`):
/// names in `variables` become [`ALL`], interval built-ins become [`INTERVAL`] (or its
/// milliseconds / seconds for `_ms` / `_s`). Anything else is left as is, so that an
/// unknown variable makes the query fail to parse rather than silently change meaning.
pub fn substitute(expr: &str, variables: &[String]) -> String {
    fn value(name: &str, variables: &[String]) -> Option<&'static str> {
        match name {
            "__rate_interval" | "__interval" | "__range" => Some(INTERVAL),
            "__interval_ms" | "__range_ms" => Some("300000"),
            "__interval_s" | "__range_s" => Some("300"),
            _ if variables.iter().any(|v| v == name) => Some(ALL),
            _ => None,
        }
    }
    fn ident_len(s: &str) -> usize {
        s.bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count()
    }
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(pos) = rest.find(['$', '[']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        // (matched text length, variable name)
        let found = if let Some(inner) = tail.strip_prefix("${") {
            inner.find('}').map(|end| {
                let name = inner[..end].split(':').next().unwrap_or_default();
                (end + 3, name)
            })
        } else if let Some(inner) = tail.strip_prefix("[[") {
            inner.find("]]").map(|end| {
                let name = inner[..end].split(':').next().unwrap_or_default();
                (end + 4, name)
            })
        } else if let Some(inner) = tail.strip_prefix('$') {
            let n = ident_len(inner);
            (n > 0).then(|| (n + 1, &inner[..n]))
        } else {
            None
        };
        match found.and_then(|(len, name)| value(name, variables).map(|v| (len, v))) {
            Some((len, replacement)) => {
                out.push_str(replacement);
                rest = &tail[len..];
            }
            None => {
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// (panel title, raw PromQL) for every query target of every panel of the dashboard under
/// `root`, variables substituted (see [`substitute`]). Panics when the dashboard cannot be
/// read or parsed.
pub fn dashboard_queries(root: &Path) -> Vec<(String, String)> {
    let dashboard = load(root).unwrap_or_else(|e| panic!("{e}"));
    let variables = variable_names(&dashboard);
    let mut out = Vec::new();
    for panel in panels(&dashboard) {
        let title = panel
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(expr) = target.get("expr").and_then(Value::as_str) {
                out.push((title.to_owned(), substitute(expr, &variables)));
            }
        }
    }
    out
}
