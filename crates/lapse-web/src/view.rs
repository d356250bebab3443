//! What the pages show, made from the API's wire types: strings ready for the templates.

use chrono::{DateTime, Utc};
use lapse_core::policy::human_duration;
use lapse_requests::wire::{AccessListView, GrantView, HistoryView, RequestView};
use serde_json::Value;

pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Time left until `end`, exact to the second below an hour, so it never claims more or less.
pub(crate) fn left(end: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (end - now).num_seconds();
    if secs <= 0 {
        return "ended".into();
    }
    format!("{} left", human_duration(chrono::Duration::seconds(secs)))
}

fn short(id: &str) -> String {
    id.chars().take(10).collect()
}

pub(crate) struct GrantRow {
    pub id: String,
    pub short_id: String,
    pub target: String,
    pub users: String,
    pub state: String,
    pub ends: String,
    pub left: String,
    pub reason: String,
}

impl GrantRow {
    pub fn new(g: &GrantView, now: DateTime<Utc>) -> Self {
        let mut target = Vec::new();
        if let Some(grp) = &g.group {
            target.push(format!("group {grp}"));
        }
        if let Some(sa) = &g.service_account {
            target.push(format!("service account {sa}"));
        }
        if !g.resources.is_empty() {
            target.push(g.resources.join(", "));
        }
        let live = matches!(
            g.state.as_str(),
            "active" | "applying" | "pending" | "scheduled"
        );
        Self {
            id: g.id.clone(),
            short_id: short(&g.id),
            target: format!("{} · {}", g.kind, target.join("; ")),
            users: g.users.join(", "),
            state: g.state.clone(),
            ends: when(g.revoked_at.unwrap_or(g.expires_at).min(g.expires_at)),
            left: if live {
                left(g.expires_at, now)
            } else {
                "ended".into()
            },
            reason: g.reason.clone(),
        }
    }
}

pub(crate) struct RequestRow {
    pub id: String,
    pub short_id: String,
    pub list: String,
    pub requester: String,
    pub duration: String,
    pub reason: String,
    pub state: String,
    pub created: String,
    pub break_glass: bool,
    pub grant_id: Option<String>,
}

impl RequestRow {
    pub fn new(r: &RequestView) -> Self {
        Self {
            id: r.id.clone(),
            short_id: short(&r.id),
            list: r.list.clone(),
            requester: r.requester.clone(),
            duration: human_duration(chrono::Duration::seconds(r.duration_secs.max(0))),
            reason: r.reason.clone(),
            state: r.state.clone(),
            created: when(r.created_at),
            break_glass: r.break_glass,
            grant_id: r.grant_id.clone(),
        }
    }
}

pub(crate) struct ListRow {
    pub name: String,
    pub description: String,
    pub target: String,
    pub owners: String,
    pub members: String,
    pub default_duration: String,
    pub max_duration: String,
    pub approvals: u32,
    pub break_glass: bool,
    pub reason_pattern: Option<String>,
    pub next_review: String,
    /// Members, one by one, for an owner's review form.
    pub member_list: Vec<String>,
    /// The list has a review period (so a review can be recorded).
    pub reviewed: bool,
    /// Set by the page: the signed-in person owns the list.
    pub mine: bool,
}

impl ListRow {
    pub fn new(l: &AccessListView) -> Self {
        let t = &l.target;
        let mut target = vec![t.kind.clone()];
        target.extend(t.group.iter().map(|g| format!("group {g}")));
        target.extend(
            t.service_account
                .iter()
                .map(|s| format!("service account {s}")),
        );
        if !t.resources.is_empty() {
            target.push(t.resources.join(", "));
        }
        Self {
            name: l.name.clone(),
            description: l.description.clone(),
            target: target.join(" · "),
            owners: l.owners.join(", "),
            members: l.members.join(", "),
            default_duration: l.default_duration.clone(),
            max_duration: l.max_duration.clone(),
            approvals: l.approvals,
            break_glass: l.break_glass,
            reason_pattern: l.reason_pattern.clone(),
            next_review: l.review_due.map(when).unwrap_or_default(),
            member_list: l
                .members
                .iter()
                .filter(|m| !l.removed_by_review.contains(m))
                .cloned()
                .collect(),
            reviewed: l.review.is_some(),
            mine: false,
        }
    }
}

pub(crate) struct HistoryLine {
    pub seq: i64,
    pub at: String,
    pub grant: String,
    pub actor: String,
    pub event: String,
    pub story: String,
}

impl HistoryLine {
    pub fn new(h: &HistoryView) -> Self {
        Self {
            seq: h.seq,
            at: when(h.at),
            grant: h.grant_id.clone().unwrap_or_default(),
            actor: h.actor.clone(),
            event: h.event.clone(),
            story: story(&h.event, &h.detail),
        }
    }
}

/// The row in words: the event, then its details as `key value` pairs, objects that carry a
/// name shown by their name (Twingate ids stay in the JSON export).
fn story(event: &str, detail: &Value) -> String {
    let mut parts = vec![event.replace('-', " ")];
    if let Value::Object(m) = detail {
        for (k, v) in m {
            if v.is_null() {
                continue;
            }
            parts.push(format!("{}: {}", k.replace('_', " "), words(v)));
        }
    }
    parts.join(" · ")
}

fn words(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(words).collect::<Vec<_>>().join(", "),
        Value::Object(o) => match o.get("name").and_then(Value::as_str) {
            Some(name) => name.to_owned(),
            None => v.to_string(),
        },
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_left_is_exact_and_never_negative() {
        let now = Utc::now();
        assert_eq!(
            left(now + chrono::Duration::seconds(119), now),
            "1m59s left"
        );
        assert_eq!(left(now - chrono::Duration::seconds(5), now), "ended");
    }

    #[test]
    fn a_history_row_reads_as_words() {
        let s = story(
            "created",
            &json!({"rule": "list:oncall", "users": ["alice@example.com"], "none": null,
                    "targets": {"id": "R3JvdXA6MjAx", "name": "oncall"}}),
        );
        assert_eq!(
            s,
            "created · rule: list:oncall · targets: oncall · users: alice@example.com"
        );
    }
}
