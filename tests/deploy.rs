//! The shipped monitoring artifacts: Prometheus alert rules (`deploy/prometheus/`), checked
//! and unit-tested by Debian's `promtool` (Prometheus 2.42 on Debian 12), and the Grafana
//! dashboard (`deploy/grafana/apivip.json`), whose every query must parse as PromQL.
//!
//! Without `promtool` the promtool tests print why and skip; with `APIVIP_REQUIRE_NETNS=1`
//! (CI) they fail instead.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use support::dashboard;

const RULES: &str = "deploy/prometheus/apivip-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/apivip-alerts.test.yml";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn promtool(test: &str) -> Option<PathBuf> {
    support::require_bin(test, "promtool")
}

/// Runs promtool with `args` in `dir`; (success, stdout + stderr).
fn run_promtool(promtool: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", promtool.display()));
    let text = format!(
        "$ promtool {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn read_yaml(rel: &str) -> Value {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn alert_rules() -> Vec<Value> {
    let rules = read_yaml(RULES);
    array(&rules, "groups")
        .iter()
        .flat_map(|g| array(g, "rules"))
        .filter(|r| r.get("alert").is_some())
        .cloned()
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check() {
    let test = "alert_rules_pass_promtool_check";
    let Some(promtool) = promtool(test) else {
        return;
    };
    let (ok, out) = run_promtool(&promtool, root(), &["check", "rules", RULES]);
    assert!(ok, "promtool check rules failed:\n{out}");
    println!("{out}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let test = "alert_rules_pass_their_unit_tests";
    let Some(promtool) = promtool(test) else {
        return;
    };
    let (ok, out) = run_promtool(&promtool, root(), &["test", "rules", RULE_TESTS]);
    assert!(ok, "promtool test rules failed:\n{out}");
    println!("{out}");
}

#[test]
fn every_alert_has_for_severity_summary_and_description() {
    let rules = read_yaml(RULES);
    let groups = array(&rules, "groups");
    let names: Vec<&str> = groups.iter().map(|g| str_of(g, "name")).collect();
    assert_eq!(names, ["apivip"], "one rule group named apivip");
    let alerts = alert_rules();
    assert!(!alerts.is_empty(), "{RULES} has no alerts");
    let mut seen = BTreeSet::new();
    for rule in &alerts {
        let name = str_of(rule, "alert");
        assert!(
            name.starts_with("Apivip") && !name.contains(['_', '-', ' ']),
            "{name}: CamelCase with the Apivip prefix"
        );
        assert!(seen.insert(name), "{name}: defined twice");
        assert!(rule.get("for").is_some(), "{name}: no `for:`");
        let severity = rule.pointer("/labels/severity").and_then(Value::as_str);
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity label is {severity:?}, expected critical or warning"
        );
        for key in ["summary", "description"] {
            let text = rule
                .pointer(&format!("/annotations/{key}"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            assert!(!text.trim().is_empty(), "{name}: no {key} annotation");
        }
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test() {
    let alerts: BTreeSet<String> = alert_rules()
        .iter()
        .map(|r| str_of(r, "alert").to_owned())
        .collect();
    let tests = read_yaml(RULE_TESTS);
    let rule_files: Vec<&str> = array(&tests, "rule_files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        rule_files,
        ["apivip-alerts.yml"],
        "the tests load the shipped rules"
    );
    // alertname -> (firing cases, quiet cases)
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for test in array(&tests, "tests") {
        let group = str_of(test, "name");
        for case in array(test, "alert_rule_test") {
            let name = str_of(case, "alertname");
            assert!(
                alerts.contains(name),
                "test {group:?} checks {name:?}, which {RULES} does not define"
            );
            let expected = array(case, "exp_alerts");
            let entry = cases.entry(name.to_owned()).or_default();
            if expected.is_empty() {
                entry.1 += 1;
                continue;
            }
            entry.0 += 1;
            for alert in expected {
                let labels = alert.get("exp_labels").and_then(Value::as_object);
                assert!(
                    labels.is_some_and(|l| l.contains_key("severity") && l.contains_key("job")),
                    "test {group:?}, {name}: a firing case must give exp_labels (severity, job, ...)"
                );
                for key in ["summary", "description"] {
                    assert!(
                        alert
                            .pointer(&format!("/exp_annotations/{key}"))
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.trim().is_empty()),
                        "test {group:?}, {name}: a firing case must give exp_annotations.{key}"
                    );
                }
            }
        }
    }
    let missing: Vec<String> = alerts
        .iter()
        .filter_map(|name| match cases.get(name) {
            Some((firing, quiet)) if *firing > 0 && *quiet > 0 => None,
            Some((firing, quiet)) => Some(format!("{name}: {firing} firing, {quiet} quiet")),
            None => Some(format!("{name}: not tested")),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "every alert needs a firing and a quiet case in {RULE_TESTS}:\n{}",
        missing.join("\n")
    );
}

#[test]
fn dashboard_variables_are_substituted_in_every_form() {
    let vars = vec!["job".to_owned(), "instance".to_owned()];
    assert_eq!(
        dashboard::substitute(
            r#"rate(x{job=~"$job",instance=~"${instance}",a=~"[[job]]",b=~"${job:regex}"}[$__rate_interval])"#,
            &vars
        ),
        r#"rate(x{job=~".*",instance=~".*",a=~".*",b=~".*"}[5m])"#
    );
    // A regex anchor and an unknown variable stay as they are.
    assert_eq!(
        dashboard::substitute(r#"x{a=~"b$", c="$other"}[1m]"#, &vars),
        r#"x{a=~"b$", c="$other"}[1m]"#
    );
}

/// The dashboard's structure; returns (record name, panel title, expr) for promtool.
fn check_dashboard_structure(d: &Value) -> Vec<(String, String, String)> {
    for key in ["title", "uid"] {
        assert!(!str_of(d, key).trim().is_empty(), "dashboard has no {key}");
    }
    let schema = d.get("schemaVersion").and_then(Value::as_u64).unwrap_or(0);
    assert!(
        schema >= 36,
        "schemaVersion {schema}: expected a current one (39)"
    );

    let vars = array(d.get("templating").unwrap_or(&Value::Null), "list");
    let var = |name: &str| vars.iter().find(|v| str_of(v, "name") == name);
    let ds = var("datasource").expect("a `datasource` template variable");
    assert_eq!(str_of(ds, "type"), "datasource");
    assert_eq!(str_of(ds, "query"), "prometheus");
    for name in ["job", "instance"] {
        let v = var(name).unwrap_or_else(|| panic!("a `{name}` template variable"));
        assert_eq!(str_of(v, "type"), "query", "${name}");
        assert_eq!(
            v.pointer("/datasource/uid").and_then(Value::as_str),
            Some("${datasource}"),
            "${name} queries the selected data source"
        );
        assert_eq!(str_of(v, "allValue"), ".*", "${name}: All means .*");
    }

    let panels = dashboard::panels(d);
    assert!(!panels.is_empty(), "dashboard has no panels");
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for panel in panels {
        let title = str_of(panel, "title");
        let id = panel.get("id").and_then(Value::as_u64);
        let id = id.unwrap_or_else(|| panic!("panel {title:?} has no numeric id"));
        assert!(ids.insert(id), "panel id {id} is used twice ({title:?})");
        assert!(!title.trim().is_empty(), "panel {id} has no title");
        if str_of(panel, "type") == "row" {
            continue;
        }
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel.pointer(&format!("/gridPos/{key}")).is_some(),
                "panel {title:?}: gridPos.{key}"
            );
        }
        assert_eq!(
            panel.pointer("/datasource/uid").and_then(Value::as_str),
            Some("${datasource}"),
            "panel {title:?} uses the ${{datasource}} variable"
        );
        let targets = array(panel, "targets");
        assert!(!targets.is_empty(), "panel {title:?} has no targets");
        for target in targets {
            let expr = str_of(target, "expr");
            let ref_id = str_of(target, "refId");
            assert!(
                !expr.trim().is_empty(),
                "panel {title:?} {ref_id}: empty expr"
            );
            assert!(
                !ref_id.is_empty(),
                "panel {title:?}: a target without refId"
            );
            // Every selector filters on both variables with a regex matcher, so `All`
            // (`.*`) and multi-value selections work.
            let selectors = expr.matches('{').count();
            assert!(
                selectors > 0,
                "panel {title:?} {ref_id}: no selector: {expr}"
            );
            for matcher in [r#"job=~"$job""#, r#"instance=~"$instance""#] {
                assert_eq!(
                    expr.matches(matcher).count(),
                    selectors,
                    "panel {title:?} {ref_id}: every selector needs {matcher}: {expr}"
                );
            }
            queries.push((
                format!("apivip:dashboard:panel{id}_{ref_id}"),
                title.to_owned(),
                expr.to_owned(),
            ));
        }
    }
    queries
}

#[test]
fn dashboard_is_valid_and_every_query_parses() {
    let test = "dashboard_is_valid_and_every_query_parses";
    let d = dashboard::load(root()).unwrap_or_else(|e| panic!("{e}"));
    let queries = check_dashboard_structure(&d);

    // What a live Prometheus gets: the same queries, in order, variables substituted.
    let raw = dashboard::dashboard_queries(root());
    assert_eq!(raw.len(), queries.len());
    for ((title, expr), (_, want_title, _)) in raw.iter().zip(&queries) {
        assert_eq!(title, want_title);
        assert!(
            !expr.contains('$') && !expr.contains("[["),
            "panel {title:?}: a variable left in {expr}"
        );
    }

    let Some(promtool) = promtool(test) else {
        return;
    };
    // promtool parses (and type-checks) each query as the expr of a recording rule. JSON is
    // YAML, so serde_json writes the rules file.
    let rules: Vec<Value> = queries
        .iter()
        .zip(&raw)
        .map(|((record, _, _), (_, expr))| json!({ "record": record, "expr": expr }))
        .collect();
    let file = json!({ "groups": [{ "name": "apivip-dashboard", "rules": rules }] });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).expect("write rules");
    let (ok, out) = run_promtool(
        &promtool,
        dir.path(),
        &["check", "rules", "dashboard-queries.yml"],
    );
    let listing: String = queries
        .iter()
        .zip(&raw)
        .map(|((record, title, _), (_, expr))| format!("{record} ({title}):\n  {expr}\n"))
        .collect();
    assert!(
        ok,
        "a dashboard query does not parse:\n{out}\nqueries:\n{listing}"
    );
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "promtool did not check every query:\n{out}"
    );
}
