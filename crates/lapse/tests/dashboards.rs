//! The Grafana dashboard and the alert rules in deploy/ query only metrics lapse exports: a
//! renamed or removed metric fails here instead of leaving an empty panel or a silent alert.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `"lapse_..."` string literal in the workspace's sources: the names handed to the
/// `metrics` macros.
fn exported() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("reading a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, names);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("reading a source file");
                // Only the names given to the metrics macros: other strings that start with
                // `lapse_` (token prefixes, cookie names) are not metrics.
                for mac in [
                    "counter!(",
                    "gauge!(",
                    "histogram!(",
                    "describe_counter!(",
                    "describe_gauge!(",
                    "describe_histogram!(",
                ] {
                    for piece in text.split(mac).skip(1) {
                        let Some(piece) = piece.trim_start().strip_prefix("\"lapse_") else {
                            continue;
                        };
                        let name: String = piece
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() && piece[name.len()..].starts_with('"') {
                            names.insert(format!("lapse_{name}"));
                        }
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    for krate in std::fs::read_dir(repo().join("crates")).expect("reading crates/") {
        let src = krate.expect("a crate").path().join("src");
        if src.is_dir() {
            walk(&src, &mut names);
        }
    }
    names
}

/// Whether `name` is a series Prometheus scrapes from lapse: an exported name, a histogram's
/// `_bucket`/`_sum`/`_count`, or `up`, which Prometheus records for every target.
fn is_lapse_series(name: &str, exported: &BTreeSet<String>) -> bool {
    name == "up"
        || exported.contains(name)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_suffix(s).is_some_and(|b| exported.contains(b)))
}

/// The metric names a PromQL expression selects: identifiers outside label matchers, ranges and
/// strings that are neither functions, operators nor the label lists of `by (...)` and friends.
fn metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 11] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const GROUPINGS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may put `by (...)` between their name and their parenthesis.
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let close = match c {
            '{' => Some('}'),
            '[' => Some(']'),
            '"' => Some('"'),
            _ => None,
        };
        if let Some(close) = close {
            i += 1;
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if call && GROUPINGS.contains(&word.as_str()) {
                // Skip the label list.
                while j < chars.len() && chars[j] != ')' {
                    j += 1;
                }
                i = j + 1;
            } else if !call
                && !KEYWORDS.contains(&word.as_str())
                && !AGGREGATIONS.contains(&word.as_str())
            {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_expression_parser_finds_metrics_and_nothing_else() {
    assert_eq!(
        metric_names(
            r#"sum by (le, kind) (rate(lapse_x_bucket{a="b", c=~"$i"}[5m])) / on (instance) group_left up > 0.5 and bool lapse_y offset 1h"#
        ),
        ["lapse_x_bucket", "up", "lapse_y"]
    );
}

#[test]
fn the_dashboard_queries_only_exported_metrics() {
    let exported = exported();
    // The gauges and counters the dashboard is built on; if the scan misses them, it is broken.
    for name in ["lapse_overdue_revocations", "lapse_actions_total"] {
        assert!(exported.contains(name), "{name} not found in {exported:?}");
    }
    let text = std::fs::read_to_string(repo().join("deploy/grafana/lapse.json"))
        .expect("reading deploy/grafana/lapse.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut found = Vec::new();
    exprs(&dashboard, &mut found);
    let panel_targets: usize = panels
        .iter()
        .map(|p| p["targets"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(found.len(), panel_targets, "every target has an expr");
    let mut used = BTreeSet::new();
    for expr in &found {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr:?}");
        for name in names {
            assert!(
                is_lapse_series(&name, &exported),
                "{expr:?} queries {name}, which lapse does not export ({exported:?})"
            );
            used.insert(name);
        }
    }
    // Every exported metric has a panel.
    for name in &exported {
        assert!(
            used.iter().any(|u| u.starts_with(name.as_str())),
            "no panel shows {name}"
        );
    }
}

#[test]
fn the_alert_rules_name_only_exported_metrics() {
    let exported = exported();
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml"))
        .expect("reading deploy/prometheus/alerts.yml");
    let mut seen = 0;
    for piece in text.split("lapse_").skip(1) {
        let rest: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = format!("lapse_{rest}");
        assert!(
            is_lapse_series(&name, &exported),
            "alerts.yml names {name}, which lapse does not export"
        );
        seen += 1;
    }
    assert!(seen >= 5, "alerts.yml names lapse's metrics");
}
