//! History rows in words: `membership-changed` "added alice@example.com to oncall" rather than
//! the detail's Twingate ids. The server sends the names it knows (`names`); an id it never knew
//! is shown as it is. Events without a sentence here show their detail as compact JSON.

use serde_json::Value;

use crate::HistoryView;

/// The row's detail for a person: a sentence for remote changes, else the detail's JSON.
pub fn story(row: &HistoryView) -> String {
    sentence(row).unwrap_or_else(|| match &row.detail {
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn sentence(row: &HistoryView) -> Option<String> {
    let d = &row.detail;
    let name = |v: &Value| -> Option<String> {
        let id = v.as_str()?;
        Some(row.names.get(id).cloned().unwrap_or_else(|| id.to_owned()))
    };
    let names = |key: &str| -> Vec<String> {
        d.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| name(v.get("principal").unwrap_or(v)))
            .collect()
    };
    let field = |key: &str| d.get(key).and_then(&name);
    let text = match row.event.as_str() {
        "membership-changed" => {
            let group = field("group")?;
            changes(&names("added"), &names("removed"), &group)
        }
        "service-resources-changed" => {
            let sa = format!("service account {}", field("service_account")?);
            changes(&names("added"), &names("removed"), &sa)
        }
        "access-added" => format!(
            "gave {} access to {}",
            join(&names("principals")),
            field("resource")?
        ),
        "access-removed" => format!(
            "removed {} from {}",
            join(&names("principals")),
            field("resource")?
        ),
        "group-created" => format!(
            "created group {}",
            d.get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| field("group"))?
        ),
        "group-deleted" => format!("deleted group {}", field("group")?),
        "duplicate-deleted" => format!("deleted duplicate group {}", field("group")?),
        "drift" => d.get("detail").and_then(Value::as_str)?.to_owned(),
        "created" => {
            let listed = |key: &str| -> Vec<String> {
                d.get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            };
            let mut text = d.get("kind").and_then(Value::as_str)?.to_owned();
            let (subjects, targets) = (listed("subjects"), listed("targets"));
            if !subjects.is_empty() {
                text.push_str(&format!(" for {}", subjects.join(", ")));
            }
            if !targets.is_empty() {
                text.push_str(&format!(" on {}", targets.join(", ")));
            }
            if let Some(reason) = d.get("reason").and_then(Value::as_str) {
                text.push_str(&format!("; reason {reason:?}"));
            }
            if let Some(rule) = d.get("rule").and_then(Value::as_str) {
                text.push_str(&format!("; allowed by {rule}"));
            }
            text
        }
        "revoke-requested" => format!(
            "reason {:?}",
            d.get("reason").and_then(Value::as_str).unwrap_or_default()
        ),
        "scheduled" | "applying" | "active" | "revoking" | "expired" | "revoked" | "failed" => {
            let mut text = format!("from {}", d.get("from").and_then(Value::as_str)?);
            if let Some(reason) = d.get("reason").and_then(Value::as_str) {
                text.push_str(&format!("; reason {reason:?}"));
            }
            if let Some(late) = d.get("lateness_seconds").and_then(Value::as_f64) {
                text.push_str(&format!("; {late:.1}s after its end"));
            }
            if let Some(error) = d.get("error").and_then(Value::as_str) {
                text.push_str(&format!("; {error}"));
            }
            text
        }
        _ => return None,
    };
    Some(text)
}

fn changes(added: &[String], removed: &[String], to: &str) -> String {
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {} to {to}", join(added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {} from {to}", join(removed)));
    }
    if parts.is_empty() {
        format!("no change to {to}")
    } else {
        parts.join("; ")
    }
}

fn join(names: &[String]) -> String {
    if names.is_empty() {
        "nobody".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn row(event: &str, detail: Value, names: &[(&str, &str)]) -> HistoryView {
        HistoryView {
            seq: 1,
            at: chrono::Utc
                .with_ymd_and_hms(2026, 3, 1, 10, 0, 0)
                .single()
                .expect("time"),
            grant_id: None,
            actor: "lapse".to_owned(),
            event: event.to_owned(),
            detail,
            hash: String::new(),
            grants: vec!["01JG".to_owned()],
            names: names
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn remote_changes_are_told_with_names() {
        let r = row(
            "membership-changed",
            json!({"group": "R3JvdXA6MQ==", "added": ["VXNlcjox"], "removed": [], "grants": ["01JG"]}),
            &[
                ("R3JvdXA6MQ==", "oncall"),
                ("VXNlcjox", "alice@example.com"),
            ],
        );
        assert_eq!(story(&r), "added alice@example.com to oncall");
        let r = row(
            "access-added",
            json!({"resource": "UmVzOjE=", "principals": [{"principal": "R3JvdXA6Mg==", "expires_at": null}]}),
            &[("UmVzOjE=", "prod-db"), ("R3JvdXA6Mg==", "lapse-01jg")],
        );
        assert_eq!(story(&r), "gave lapse-01jg access to prod-db");
        // An id lapse never knew is shown as it is.
        let r = row(
            "membership-changed",
            json!({"group": "R3JvdXA6MQ==", "added": [], "removed": ["VXNlcjo5"]}),
            &[("R3JvdXA6MQ==", "oncall")],
        );
        assert_eq!(story(&r), "removed VXNlcjo5 from oncall");
        let r = row("token-created", json!({"ttl": "2h"}), &[]);
        assert_eq!(story(&r), r#"{"ttl":"2h"}"#);
        let r = row(
            "created",
            json!({"kind": "group-membership", "reason": "INC-1", "rule": "admin",
                   "subjects": [{"id": "VXNlcjox", "name": "alice@example.com"}],
                   "targets": [{"id": "R3JvdXA6MQ==", "name": "oncall"}]}),
            &[],
        );
        assert_eq!(
            story(&r),
            r#"group-membership for alice@example.com on oncall; reason "INC-1"; allowed by admin"#
        );
    }
}
