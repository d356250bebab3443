//! Block Kit messages (pure): a request with Approve and Deny buttons, a flagged break-glass
//! notice, an on-call approval, and a decided request. Every piece of a person's text is
//! escaped for mrkdwn, so `<!channel>` or `<https://…|label>` in a reason stays text.

use lapse_core::text::slack_escape;
use serde_json::{Value, json};

/// The action ids of the buttons; their `value` is the request id.
pub const APPROVE: &str = "approve-request";
pub const DENY: &str = "deny-request";

fn s(v: &Value, k: &str) -> String {
    slack_escape(v.get(k).and_then(Value::as_str).unwrap_or("")).into_owned()
}

fn duration(v: &Value) -> String {
    v.get("duration_secs")
        .and_then(Value::as_i64)
        .map(|d| lapse_core::policy::human_duration(chrono::Duration::seconds(d)))
        .unwrap_or_default()
}

/// The lines describing a request: requester, list, duration, reason (mrkdwn, escaped).
pub fn summary(p: &Value) -> String {
    let mut lines = vec![
        format!("*Requester:* {}", s(p, "requester")),
        format!("*List:* `{}`", s(p, "list")),
        format!("*Duration:* {}", duration(p)),
        format!("*Reason:* {}", s(p, "reason")),
    ];
    if let Some(g) = p.get("grant").and_then(Value::as_str) {
        lines.insert(0, format!("*Extends grant:* `{}`", slack_escape(g)));
    }
    lines.push(format!("*Request:* `{}`", s(p, "request")));
    lines.join("\n")
}

fn section(text: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": text } })
}

/// A pending request, with the buttons. Answers the fallback text and the blocks.
pub fn request(p: &Value) -> (String, Value) {
    let id = p.get("request").and_then(Value::as_str).unwrap_or("");
    let text = format!(
        "{} requests access on {} for {}",
        s(p, "requester"),
        s(p, "list"),
        duration(p)
    );
    let blocks = json!([
        section(&format!(":key: *Access request*\n{}", summary(p))),
        { "type": "actions", "block_id": format!("request-{id}"), "elements": [
            { "type": "button", "action_id": APPROVE, "style": "primary", "value": id,
              "text": { "type": "plain_text", "text": "Approve" } },
            { "type": "button", "action_id": DENY, "style": "danger", "value": id,
              "text": { "type": "plain_text", "text": "Deny" } },
        ]},
    ]);
    (text, blocks)
}

/// Break-glass: access was taken without approval; flagged, no buttons.
pub fn break_glass(p: &Value) -> (String, Value) {
    let text = format!(
        "BREAK-GLASS: {} took {} for {} without approval",
        s(p, "requester"),
        s(p, "list"),
        duration(p)
    );
    let blocks = json!([
        { "type": "header", "text": { "type": "plain_text", "text": ":rotating_light: BREAK-GLASS access" } },
        section(&format!("Taken *without approval*; the owners should review it now.\n{}", summary(p))),
    ]);
    (text, blocks)
}

/// Approved by the on-call rule: who, on which schedule.
pub fn on_call(p: &Value) -> (String, Value) {
    let oc = &p["on_call"];
    let who = format!(
        "PagerDuty schedule {} (`{}`), user `{}`",
        s(oc, "schedule_name"),
        s(oc, "schedule_id"),
        s(oc, "user_id")
    );
    let text = format!(
        "{} was let into {} by the on-call rule",
        s(p, "requester"),
        s(p, "list")
    );
    let blocks = json!([section(&format!(
        ":pager: *Approved by the on-call rule*: on call on {who}\n{}",
        summary(p)
    )),]);
    (text, blocks)
}

/// A decided request: the summary kept, the buttons replaced by the decision and who made it.
pub fn decided(summary: &str, decision: &str) -> (String, Value) {
    let blocks = json!([
        section(&format!(":key: *Access request*\n{summary}")),
        { "type": "context", "elements": [ { "type": "mrkdwn", "text": decision } ] },
    ]);
    (decision.to_owned(), blocks)
}

/// The decision line of an event on a request.
pub fn decision(event: &str, p: &Value) -> String {
    match event {
        "request-approved" => format!(":white_check_mark: *Approved* by {}", by(p)),
        "request-denied" => format!(":x: *Denied* by {}: {}", by(p), s(p, "reason")),
        "request-lapsed" => ":hourglass: *Lapsed* without a decision".into(),
        other => slack_escape(other).into_owned(),
    }
}

fn by(p: &Value) -> String {
    let b = s(p, "by");
    if b.is_empty() { "an owner".into() } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_people_cannot_mention_or_link() {
        let p = json!({ "request": "01J", "list": "db", "requester": "mia@x.io",
            "reason": "<!channel> see <https://evil|here> & go", "duration_secs": 5400 });
        let (_, blocks) = request(&p);
        let t = blocks[0]["text"]["text"].as_str().expect("text");
        assert!(
            t.contains("&lt;!channel&gt; see &lt;https://evil|here&gt; &amp; go"),
            "{t}"
        );
        assert!(!t.contains("<!channel>"));
        assert!(t.contains("*Duration:* 1h30m"), "{t}");
        assert_eq!(blocks[1]["elements"][0]["value"], "01J");
        assert_eq!(blocks[1]["elements"][0]["action_id"], APPROVE);
        assert_eq!(blocks[1]["elements"][1]["action_id"], DENY);
    }
}
