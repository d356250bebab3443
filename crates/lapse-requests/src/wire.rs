//! Every request and response body of the HTTP API, defined once: the handlers send them, the
//! OpenAPI document describes them and the CLI reads them.
//!
//! Only what the daemon always sends is required when reading, so that a newer daemon adding
//! fields (or leaving an optional one out) does not break an older CLI.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lapse_core::access_list::{AccessList, human_duration};
use lapse_core::{Grant, GrantSpec, Principal};
use lapse_store::{ApprovalRecord, HistoryRow, RequestRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The five grant kinds, for the OpenAPI document: the wire carries them as strings, so that a
/// newer daemon's kind does not break an older client.
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum GrantKindName {
    EphemeralGroup,
    GroupMembership,
    GroupAccess,
    ServiceAccess,
    ServiceKey,
}

/// A grant's states, for the OpenAPI document.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum GrantStateName {
    Scheduled,
    Applying,
    Active,
    Revoking,
    Expired,
    Revoked,
    Failed,
}

/// A request's states, for the OpenAPI document.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RequestStateName {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Lapsed,
}

/// A grant submission as sent by the CLI or a bot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// One of `ephemeral-group`, `group-membership`, `group-access`, `service-access`, `service-key`.
    #[schema(value_type = GrantKindName)]
    pub kind: String,
    /// Users by email.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub group: Option<String>,
    pub service_account: Option<String>,
    /// How long the grant lasts, e.g. `2h` (or give `expires_at`).
    pub duration: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: String,
}

impl GrantRequest {
    /// The request's meaning, as one canonical text: what an idempotency key is matched on.
    ///
    /// Two bodies that parse to the same request have the same meaning whatever their key
    /// order, spacing, or fields left out at their defaults (`users: []`, `group: null`); text
    /// is trimmed, an empty name counts as absent, users and resources are a set, and a
    /// duration is compared by its length (`90m` is `1h30m`).
    pub fn meaning(&self) -> String {
        fn name(v: &Option<String>) -> Option<String> {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        }
        fn set(v: &[String]) -> Vec<String> {
            let mut out: Vec<String> = v.iter().map(|s| s.trim().to_owned()).collect();
            out.sort();
            out.dedup();
            out
        }
        let duration = name(&self.duration).map(|d| match humantime::parse_duration(&d) {
            Ok(len) => format!("{}ms", len.as_millis()),
            Err(_) => d,
        });
        let canonical = GrantRequest {
            kind: self.kind.trim().to_ascii_lowercase(),
            users: set(&self.users),
            resources: set(&self.resources),
            group: name(&self.group),
            service_account: name(&self.service_account),
            duration,
            expires_at: self.expires_at,
            starts_at: self.starts_at,
            reason: self.reason.trim().to_owned(),
        };
        // A struct serialises its fields in declaration order: the text is canonical.
        serde_json::to_string(&canonical).unwrap_or_default()
    }
}

/// A grant as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    pub id: String,
    /// One of the five kinds, e.g. `group-membership`.
    #[schema(value_type = GrantKindName, example = "group-membership")]
    pub kind: String,
    /// e.g. `active`.
    #[schema(value_type = GrantStateName, example = "active")]
    pub state: String,
    #[serde(default)]
    pub requester: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub service_account: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoke_reason: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// A service key's token: present exactly once, in the answer to a waited-for submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        let names = |v: &[Principal]| v.iter().map(|p| p.name.clone()).collect();
        let (group, sa) = match &g.spec {
            GrantSpec::GroupMembership { group, .. } | GrantSpec::GroupAccess { group, .. } => {
                (Some(group.name.clone()), None)
            }
            GrantSpec::ServiceAccess {
                service_account, ..
            }
            | GrantSpec::ServiceKey { service_account } => {
                (None, Some(service_account.name.clone()))
            }
            GrantSpec::EphemeralGroup { .. } => (Some(g.id.remote_name()), None),
        };
        Self {
            id: g.id.to_string(),
            kind: g.kind().as_str().to_owned(),
            state: g.state.as_str().to_owned(),
            requester: g.requester.clone(),
            reason: g.reason.clone(),
            users: names(g.spec.users()),
            resources: names(g.spec.resources()),
            group,
            service_account: sa,
            created_at: g.created_at,
            starts_at: Some(g.starts_at),
            expires_at: g.expires_at,
            revoked_at: g.revoked_at,
            revoke_reason: g.revoke_reason.clone(),
            attempts: g.retry.attempts,
            next_attempt_at: g.retry.next_attempt_at,
            last_error: g.retry.last_error.clone(),
            token: None,
        }
    }
}

/// One row of the append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub grant_id: Option<String>,
    pub actor: String,
    pub event: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub detail: Value,
    #[serde(default)]
    pub hash: String,
    /// The grants this row served: its own grant, or for a remote change made for several
    /// grants at once (e.g. `membership-changed`) each of them.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Names of the Twingate ids in `detail` (users by email, groups, resources and service
    /// accounts by name), as far as lapse knows them; an id it never knew is left out.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub names: BTreeMap<String, String>,
}

impl From<HistoryRow> for HistoryView {
    fn from(h: HistoryRow) -> Self {
        let grant_id = h.grant_id.map(|g| g.to_string());
        let mut grants: Vec<String> = grant_id.iter().cloned().collect();
        for g in h
            .detail
            .get("grants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !grants.iter().any(|known| known == g) {
                grants.push(g.to_owned());
            }
        }
        Self {
            seq: h.seq,
            at: h.at,
            grant_id,
            actor: h.actor,
            event: h.event,
            detail: h.detail,
            hash: h.hash,
            grants,
            names: BTreeMap::new(),
        }
    }
}

/// `rows` as the API sends them, each with the names of the Twingate ids it names: one read
/// for the whole page.
pub async fn history_views(
    store: &lapse_store::Store,
    rows: Vec<HistoryRow>,
) -> Result<Vec<HistoryView>, lapse_store::StoreError> {
    let mut views: Vec<HistoryView> = rows.into_iter().map(HistoryView::from).collect();
    let mut ids: Vec<String> = views.iter().flat_map(HistoryView::remote_ids).collect();
    ids.sort();
    ids.dedup();
    let mut grants: Vec<String> = views.iter().flat_map(|v| v.grants.clone()).collect();
    grants.sort();
    grants.dedup();
    let names = store.remote_names(&ids, &grants).await?;
    for v in &mut views {
        v.name_from(&names);
    }
    Ok(views)
}

/// Keys of a history detail that hold Twingate ids (alone, in arrays, or as `principal` of the
/// objects in an array).
const REMOTE_ID_KEYS: [&str; 7] = [
    "group",
    "resource",
    "service_account",
    "added",
    "removed",
    "principals",
    "principal",
];

impl HistoryView {
    /// The Twingate ids this row's detail names.
    pub fn remote_ids(&self) -> Vec<String> {
        fn collect(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
                Value::Object(o) => {
                    if let Some(p) = o.get("principal") {
                        collect(p, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for key in REMOTE_ID_KEYS {
            if let Some(v) = self.detail.get(key) {
                collect(v, &mut out);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Keeps of `all` the names of the ids this row names.
    pub fn name_from(&mut self, all: &BTreeMap<String, String>) {
        self.names = self
            .remote_ids()
            .into_iter()
            .filter_map(|id| all.get(&id).map(|n| (id, n.clone())))
            .collect();
    }
}

/// `GET /v1/grants`: one page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GrantList {
    pub grants: Vec<GrantView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An opaque page cursor for a page that ended at record `id`.
pub fn cursor_after(id: &str) -> String {
    hex::encode(format!("after:{id}"))
}

/// The record id a [`cursor_after`] cursor names; `None` for anything else.
pub fn cursor_id(cursor: &str) -> Option<String> {
    let text = String::from_utf8(hex::decode(cursor.trim()).ok()?).ok()?;
    text.strip_prefix("after:").map(str::to_owned)
}

/// `GET /v1/grants/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GrantDetail {
    pub grant: GrantView,
    /// The grant's history, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryView>,
}

/// `GET /v1/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryList {
    pub history: Vec<HistoryView>,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub rows_checked: u64,
    /// True when every row's hash chains to the one before.
    pub ok: bool,
    #[serde(default)]
    pub first_broken: Option<BrokenRow>,
}

/// The first history row whose hash chain does not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BrokenRow {
    pub seq: i64,
    pub reason: String,
}

/// `POST /v1/grants/{id}/revoke`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub reason: String,
}

/// `GET /v1/whoami`: who the bearer token speaks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// The token's name: the actor recorded in the history.
    pub name: String,
    /// requester, operator, admin or auditor.
    pub role: String,
    /// The person (email) the token acts for, if bound to one.
    pub identity: Option<String>,
}

/// `POST /v1/grants/{id}/token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// A service key's token; handed out once.
    pub token: String,
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Reconcile passes since start.
    pub passes: u64,
    /// `leader` (runs the reconcile loop) or `standby`. A daemon alone on SQLite always leads.
    pub role: String,
    /// The leader lease's epoch (fencing token): the one this daemon leads in, or on a standby
    /// the current leader's; 0 on SQLite.
    pub epoch: i64,
    /// The node that leads, as the lease says (absent on SQLite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// Every error answer: a stable code, and for bad input the field and the fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_field`, `unauthorized`, `not_found`.
    #[serde(default)]
    pub code: String,
    /// The request field at fault, when there is one.
    #[serde(default)]
    pub field: Option<String>,
    pub message: String,
    /// What to change so that the request succeeds.
    #[serde(default)]
    pub fix: Option<String>,
}

/// A request for access on an access list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// The list's name.
    pub list: String,
    /// How long, e.g. `2h`; the list's default when left out, never past its maximum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Why; the list may require one matching its pattern.
    #[serde(default)]
    pub reason: String,
    /// Apply at once without approval, on lists that allow it; the owners are told at once.
    #[serde(default)]
    pub break_glass: bool,
}

/// An approval, denial or cancellation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why; required to deny.
    #[serde(default)]
    pub reason: String,
}

/// An extension of a grant that came from an access list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// How much longer, e.g. `30m`; never past the list's maximum total duration.
    pub by: String,
    #[serde(default)]
    pub reason: String,
}

/// An owner's review of a list's membership.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    pub list: String,
    /// Members who keep their place.
    #[serde(default)]
    pub keep: Vec<String>,
    /// Members taken off the list until its file drops them.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A just-in-time request on an access list, with the owners' approvals so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestView {
    pub id: String,
    pub list: String,
    /// The requester's identity (an email, normalised).
    pub requester: String,
    /// The token the request was made with.
    #[serde(default)]
    pub token_name: String,
    #[serde(default)]
    pub reason: String,
    /// How long the access lasts (for an extension: how much longer).
    pub duration_secs: i64,
    #[serde(default)]
    pub break_glass: bool,
    /// Set when the request extends this grant.
    #[serde(default)]
    pub extends_grant: Option<String>,
    /// `pending`, `approved`, `denied`, `cancelled` or `lapsed`.
    #[schema(value_type = RequestStateName)]
    pub state: String,
    #[serde(default)]
    pub approvals_needed: i64,
    pub created_at: DateTime<Utc>,
    /// A pending request lapses after this.
    pub wait_until: DateTime<Utc>,
    #[serde(default)]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub decision_reason: Option<String>,
    /// The grant it became, or the grant it extends.
    #[serde(default)]
    pub grant_id: Option<String>,
    /// The expiry an expiring-soon notice was sent for.
    #[serde(default)]
    pub warned_expiry: Option<DateTime<Utc>>,
    #[serde(default)]
    pub approvals: Vec<ApprovalView>,
}

impl RequestView {
    pub fn new(r: RequestRecord, approvals: Vec<ApprovalRecord>) -> Self {
        Self {
            id: r.id,
            list: r.list,
            requester: r.requester,
            token_name: r.token_name,
            reason: r.reason,
            duration_secs: r.duration_secs,
            break_glass: r.break_glass,
            extends_grant: r.extends_grant,
            state: r.state,
            approvals_needed: r.approvals_needed,
            created_at: r.created_at,
            wait_until: r.wait_until,
            decided_at: r.decided_at,
            decided_by: r.decided_by,
            decision_reason: r.decision_reason,
            grant_id: r.grant_id,
            warned_expiry: r.warned_expiry,
            approvals: approvals.into_iter().map(ApprovalView::from).collect(),
        }
    }
}

/// One owner's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalView {
    pub approver: String,
    #[serde(default)]
    pub token_name: String,
    pub at: DateTime<Utc>,
    #[serde(default)]
    pub reason: String,
}

impl From<ApprovalRecord> for ApprovalView {
    fn from(a: ApprovalRecord) -> Self {
        Self {
            approver: a.approver,
            token_name: a.token_name,
            at: a.at,
            reason: a.reason,
        }
    }
}

/// `GET /v1/requests`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
}

/// What members of a list may request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListTargetView {
    /// One of the five grant kinds.
    #[schema(value_type = GrantKindName)]
    pub kind: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub service_account: Option<String>,
}

/// A list's periodic review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRuleView {
    /// As written in list files, e.g. `90days`.
    pub every: String,
    pub next_due: DateTime<Utc>,
    /// `notify` or `suspend`.
    pub on_missed: String,
}

/// A loaded access list and its review state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccessListView {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub members: Vec<String>,
    pub target: ListTargetView,
    /// As written in list files, e.g. `1h 30m`.
    #[serde(default)]
    pub default_duration: String,
    /// As written in list files, e.g. `4h`.
    #[serde(default)]
    pub max_duration: String,
    #[serde(default)]
    pub reason_required: bool,
    #[serde(default)]
    pub reason_pattern: Option<String>,
    /// Distinct owner approvals needed.
    #[serde(default)]
    pub approvals: u32,
    #[serde(default)]
    pub auto_approve: bool,
    #[serde(default)]
    pub break_glass: bool,
    /// As written in list files, e.g. `1h`; the daemon's default when absent.
    #[serde(default)]
    pub pending_wait: Option<String>,
    #[serde(default)]
    pub review: Option<ReviewRuleView>,
    /// The file it came from.
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub review_due: Option<DateTime<Utc>>,
    /// No new requests until the list is reviewed.
    #[serde(default)]
    pub suspended: bool,
    /// Members taken off by a review.
    #[serde(default)]
    pub removed_by_review: Vec<String>,
}

impl AccessListView {
    /// `l` with its review state: the recorded due date, whether it is suspended now, and the
    /// members a review took off.
    pub fn new(
        l: &AccessList,
        review_due: Option<DateTime<Utc>>,
        suspended: bool,
        removed_by_review: Vec<String>,
    ) -> Self {
        Self {
            name: l.name.clone(),
            description: l.description.clone(),
            owners: l.owners.clone(),
            members: l.members.clone(),
            target: ListTargetView {
                kind: l.target.kind.as_str().to_owned(),
                group: l.target.group.clone(),
                resources: l.target.resources.clone(),
                service_account: l.target.service_account.clone(),
            },
            default_duration: human_duration(l.default_duration),
            max_duration: human_duration(l.max_duration),
            reason_required: l.reason_required,
            reason_pattern: l.reason_pattern.clone(),
            approvals: l.approvals,
            auto_approve: l.auto_approve,
            break_glass: l.break_glass,
            pending_wait: l.pending_wait.map(human_duration),
            review: l.review.as_ref().map(|r| ReviewRuleView {
                every: human_duration(r.every),
                next_due: r.next_due,
                on_missed: r.on_missed.to_string(),
            }),
            file: l.file.clone(),
            review_due,
            suspended,
            removed_by_review,
        }
    }
}

/// A list file that was refused; its previous lists stay in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RefusedFile {
    pub file: String,
    #[serde(default)]
    pub line: Option<u64>,
    pub problem: String,
}

/// `GET /v1/lists`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListsReply {
    pub lists: Vec<AccessListView>,
    #[serde(default)]
    pub refused_files: Vec<RefusedFile>,
}

/// A list's review date and who it covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    pub list: String,
    pub due: DateTime<Utc>,
    #[serde(default)]
    pub overdue: bool,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub members: Vec<String>,
}

/// `GET /v1/reviews`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewList {
    pub reviews: Vec<ReviewView>,
}

/// `POST /v1/reviews`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRecorded {
    pub list: String,
    pub next_due: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GrantRequest {
        serde_json::from_str(text).expect("a grant request")
    }

    #[test]
    fn a_cursor_names_the_record_it_follows_and_nothing_else_is_one() {
        let c = cursor_after("01JAAAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(cursor_id(&c).as_deref(), Some("01JAAAAAAAAAAAAAAAAAAAAAAA"));
        assert_eq!(cursor_id("01JAAAAAAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(cursor_id("zz"), None);
    }

    #[test]
    fn meaning_ignores_order_spacing_and_defaults() {
        let a = parse(
            r#"{"kind":"group-membership","group":"oncall","users":["a@x.io","b@x.io"],"duration":"90m","reason":"INC-1"}"#,
        );
        let b = parse(
            r#"{ "reason" : "INC-1 ", "users" : [ "b@x.io", "a@x.io" ],
                 "duration": "1h30m", "resources": [], "service_account": null,
                 "group": "oncall", "kind": "group-membership" }"#,
        );
        assert_eq!(a.meaning(), b.meaning());
        let other_user = parse(
            r#"{"kind":"group-membership","group":"oncall","users":["a@x.io"],"duration":"90m","reason":"INC-1"}"#,
        );
        assert_ne!(a.meaning(), other_user.meaning());
        let longer = parse(
            r#"{"kind":"group-membership","group":"oncall","users":["a@x.io","b@x.io"],"duration":"2h","reason":"INC-1"}"#,
        );
        assert_ne!(a.meaning(), longer.meaning());
    }
}
