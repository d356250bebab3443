//! Just-in-time requests, approvals, list reviews, token identities and the notification outbox.

use chrono::{DateTime, Utc};
use lapse_core::{GrantId, HistoryEvent, RequestState};
use serde::{Deserialize, Serialize};
use serde_json::json;

use lapse_core::Grant;
use sqlx::sqlite::SqliteConnection;

use crate::error::{Step, StoreError};
use crate::grants::{ItemError, insert_one};
use crate::history::{ChainHead, HistoryRow, NewHistory};
use crate::time::{format_ts, parse_ts};
use crate::{Idempotency, Inserted, SqliteStore};

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub list: String,
    pub requester: String,
    pub token_name: String,
    pub reason: String,
    pub duration_secs: i64,
    pub break_glass: bool,
    pub extends_grant: Option<String>,
    pub state: String,
    pub approvals_needed: i64,
    pub created_at: DateTime<Utc>,
    pub wait_until: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
    pub grant_id: Option<String>,
    pub warned_expiry: Option<DateTime<Utc>>,
}

/// One owner's approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    pub approver: String,
    pub token_name: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// A notification to deliver to one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    pub sink: String,
    pub event: String,
    pub payload: serde_json::Value,
}

/// A stored notification waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub sink: String,
    pub event: String,
    pub payload: serde_json::Value,
    pub attempts: u32,
}

/// A review recorded by an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    pub list: String,
    pub reviewer: String,
    pub kept: Vec<String>,
    pub removed: Vec<String>,
    pub next_due: DateTime<Utc>,
}

/// Everything one step of the request flow changes, committed as one transaction: the request
/// row, an approval, a review, marks, history rows and the notifications they cause.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestChange {
    /// Written whole (insert or replace).
    pub request: Option<RequestRecord>,
    pub approval: Option<(String, ApprovalRecord)>,
    pub review: Option<NewReview>,
    pub marks: Vec<(String, String)>,
    pub history: Vec<NewHistory>,
    pub outbox: Vec<NewOutbox>,
    /// The change decides a pending request (approval, denial, cancellation, lapse): it is
    /// refused, whole, when the stored request is no longer pending.
    pub decides: bool,
}

/// A request row packed into one JSON object; a macro so that it can be `concat!`ed.
macro_rules! select_request {
    () => {
        "SELECT json_object('id', id, 'list', list, 'requester', requester, \
     'token_name', token_name, 'reason', reason, 'duration_secs', duration_secs, \
     'break_glass', json(CASE break_glass WHEN 1 THEN 'true' ELSE 'false' END), \
     'extends_grant', extends_grant, 'state', state, 'approvals_needed', approvals_needed, \
     'created_at', created_at, 'wait_until', wait_until, 'decided_at', decided_at, \
     'decided_by', decided_by, 'decision_reason', decision_reason, 'grant_id', grant_id, \
     'warned_expiry', warned_expiry) FROM requests "
    };
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        step: "reading a request",
        column: what,
        value: text.to_owned(),
        reason: e.to_string(),
    })
}

/// A request row, refusing a state the flow does not know (as grant states are refused).
pub(crate) fn decode_request(text: &str) -> Result<RequestRecord, StoreError> {
    let r: RequestRecord = decode("requests", text)?;
    r.state
        .parse::<RequestState>()
        .map_err(|reason| StoreError::Corrupt {
            step: "reading a request",
            column: "requests.state",
            value: format!("(request {}) {}", r.id, r.state),
            reason,
        })?;
    Ok(r)
}

/// seq, at, grant_id, actor, event, detail, prev_hash, hash.
pub(crate) type HistoryTuple = (
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    String,
);

/// Writes `change` inside the caller's write transaction.
async fn write_change(
    conn: &mut SqliteConnection,
    head: &mut ChainHead,
    change: &RequestChange,
) -> Result<(), StoreError> {
    let now = Utc::now();
    // Read under the write lock: a request decided meanwhile (by another daemon, or a call
    // racing this one) keeps its decision, so a cancel is never overwritten by an approval,
    // nor a denial by a grant, and no approval is added to a decided request.
    let id = change
        .request
        .as_ref()
        .map(|r| &r.id)
        .or(change.approval.as_ref().map(|(id, _)| id));
    if let Some(id) = id {
        let stored: Option<String> = sqlx::query_scalar("SELECT state FROM requests WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .step("reading a request's state")?;
        let pending = RequestState::Pending.as_str();
        if let Some(state) = stored.filter(|s| s != pending) {
            let kept = !change.decides && change.request.as_ref().is_some_and(|r| r.state == state);
            if !kept || change.approval.is_some() {
                return Err(StoreError::RequestDecided {
                    id: id.clone(),
                    state,
                });
            }
        }
    }
    if let Some((request_id, a)) = &change.approval {
        let twice: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM approvals WHERE request_id = ? AND approver = ?")
                .bind(request_id)
                .bind(&a.approver)
                .fetch_optional(&mut *conn)
                .await
                .step("reading a request's approvals")?;
        if twice.is_some() {
            return Err(StoreError::AlreadyApproved {
                id: request_id.clone(),
                approver: a.approver.clone(),
            });
        }
    }
    if let Some(r) = &change.request {
        sqlx::query(
            "INSERT OR REPLACE INTO requests (id, list, requester, token_name, reason, \
             duration_secs, break_glass, extends_grant, state, approvals_needed, created_at, \
             wait_until, decided_at, decided_by, decision_reason, grant_id, warned_expiry, \
             updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.list)
        .bind(&r.requester)
        .bind(&r.token_name)
        .bind(&r.reason)
        .bind(r.duration_secs)
        .bind(i64::from(r.break_glass))
        .bind(&r.extends_grant)
        .bind(&r.state)
        .bind(r.approvals_needed)
        .bind(format_ts(r.created_at))
        .bind(format_ts(r.wait_until))
        .bind(r.decided_at.map(format_ts))
        .bind(&r.decided_by)
        .bind(&r.decision_reason)
        .bind(&r.grant_id)
        .bind(r.warned_expiry.map(format_ts))
        .bind(format_ts(now))
        .execute(&mut *conn)
        .await
        .step("writing a request")?;
    }
    if let Some((request_id, a)) = &change.approval {
        sqlx::query(
            "INSERT INTO approvals (request_id, approver, token_name, at, reason) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(request_id)
        .bind(&a.approver)
        .bind(&a.token_name)
        .bind(format_ts(a.at))
        .bind(&a.reason)
        .execute(&mut *conn)
        .await
        .step("recording an approval")?;
    }
    if let Some(r) = &change.review {
        sqlx::query(
            "INSERT INTO list_reviews (list, reviewer, at, kept, removed, next_due) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.list)
        .bind(&r.reviewer)
        .bind(format_ts(now))
        .bind(json!(r.kept).to_string())
        .bind(json!(r.removed).to_string())
        .bind(format_ts(r.next_due))
        .execute(&mut *conn)
        .await
        .step("recording a review")?;
    }
    for (k, v) in &change.marks {
        sqlx::query("INSERT OR REPLACE INTO marks (key, value) VALUES (?, ?)")
            .bind(k)
            .bind(v)
            .execute(&mut *conn)
            .await
            .step("writing a mark")?;
    }
    for h in &change.history {
        head.append(conn, h).await?;
    }
    for o in &change.outbox {
        sqlx::query(
            "INSERT INTO outbox (sink, event, payload, created_at, next_attempt_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&o.sink)
        .bind(&o.event)
        .bind(o.payload.to_string())
        .bind(format_ts(now))
        .bind(format_ts(now))
        .execute(&mut *conn)
        .await
        .step("queueing a notification")?;
    }
    Ok(())
}

impl SqliteStore {
    /// Applies `change` in one write transaction.
    pub async fn commit_requests(&self, change: RequestChange) -> Result<(), StoreError> {
        let mut tx = self.begin_write("starting a request change").await?;
        let mut head = ChainHead::read(&mut tx).await?;
        write_change(&mut tx, &mut head, &change).await?;
        tx.commit().await.step("committing a request change")
    }

    /// Stores the grant an approved request becomes together with the request's change (its
    /// row marked approved, the approval, history and notifications) in one transaction, so
    /// that no crash can leave a grant whose request still reads as pending.
    ///
    /// `change` is built from the grant actually stored: with an idempotency key seen before
    /// that is the grant stored then, whose id the request row must name.
    pub async fn insert_grant_for_request(
        &self,
        grant: &Grant,
        idempotency: Idempotency,
        rule: &str,
        change: impl FnOnce(&Grant) -> RequestChange,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self
            .begin_write("starting to insert a request's grant")
            .await?;
        let mut head = ChainHead::read(&mut tx).await?;
        let inserted = insert_one(&mut tx, &mut head, grant, Some(&idempotency), Some(rule))
            .await
            .map_err(ItemError::into_inner)?;
        write_change(&mut tx, &mut head, &change(inserted.grant())).await?;
        tx.commit().await.step("committing a request's grant")?;
        Ok(inserted)
    }

    pub async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let row: Option<String> = sqlx::query_scalar(concat!(select_request!(), "WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.readers)
            .await
            .step("reading a request")?;
        row.map(|r| decode_request(&r)).transpose()
    }

    /// Requests, newest first; only those in `state` when given.
    pub async fn list_requests(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            select_request!(),
            "WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
        ))
        .bind(state)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .step("listing requests")?;
        rows.iter().map(|r| decode_request(r)).collect()
    }

    /// Pending requests whose wait has run out at `now`, the longest overdue first.
    pub async fn due_pending_requests(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            select_request!(),
            "WHERE state = 'pending' AND wait_until <= ?1 ORDER BY wait_until, id LIMIT ?2"
        ))
        .bind(format_ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .step("reading due requests")?;
        rows.iter().map(|r| decode_request(r)).collect()
    }

    /// When the next pending request's wait runs out.
    pub async fn next_pending_wait(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> =
            sqlx::query_scalar("SELECT min(wait_until) FROM requests WHERE state = 'pending'")
                .fetch_one(&self.readers)
                .await
                .step("reading the next request wait")?;
        at.map(|a| parse_ts("requests.wait_until", &a)).transpose()
    }

    /// Approved requests (not extensions) whose grant is live and ends after `after` and
    /// before `before`, with that end, leaving out those already warned for it; soonest first.
    pub async fn approved_ending_between(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(RequestRecord, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT json_object('id', r.id, 'list', r.list, 'requester', r.requester, \
             'token_name', r.token_name, 'reason', r.reason, 'duration_secs', r.duration_secs, \
             'break_glass', json(CASE r.break_glass WHEN 1 THEN 'true' ELSE 'false' END), \
             'extends_grant', r.extends_grant, 'state', r.state, \
             'approvals_needed', r.approvals_needed, 'created_at', r.created_at, \
             'wait_until', r.wait_until, 'decided_at', r.decided_at, 'decided_by', r.decided_by, \
             'decision_reason', r.decision_reason, 'grant_id', r.grant_id, \
             'warned_expiry', r.warned_expiry), g.expires_at \
             FROM grants g JOIN requests r ON r.grant_id = g.id \
             AND r.state = 'approved' AND r.extends_grant IS NULL \
             WHERE g.state IN ('active', 'applying') AND g.revoked_at IS NULL \
             AND g.expires_at > ?3 AND g.expires_at < ?1 \
             AND (r.warned_expiry IS NULL OR r.warned_expiry != g.expires_at) \
             ORDER BY g.expires_at LIMIT ?2",
        )
        .bind(format_ts(before))
        .bind(i64::from(limit))
        .bind(format_ts(after))
        .fetch_all(&self.readers)
        .await
        .step("reading grants ending soon")?;
        rows.iter()
            .map(|(r, end)| Ok((decode_request(r)?, parse_ts("grants.expires_at", end)?)))
            .collect()
    }

    /// The soonest end after `after` of a live grant that came from a request and has not been
    /// warned for it.
    pub async fn next_approved_end(
        &self,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(
            "SELECT min(g.expires_at) FROM grants g JOIN requests r ON r.grant_id = g.id \
             AND r.state = 'approved' AND r.extends_grant IS NULL \
             WHERE g.state IN ('active', 'applying') AND g.revoked_at IS NULL \
             AND g.expires_at > ?1 \
             AND (r.warned_expiry IS NULL OR r.warned_expiry != g.expires_at)",
        )
        .bind(format_ts(after))
        .fetch_one(&self.readers)
        .await
        .step("reading the next end of a requested grant")?;
        at.map(|a| parse_ts("grants.expires_at", &a)).transpose()
    }

    /// The approved request that created or last extended `grant`, oldest first.
    pub async fn requests_of_grant(
        &self,
        grant: GrantId,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let g = grant.to_string();
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            select_request!(),
            "WHERE grant_id = ?1 OR extends_grant = ?1 ORDER BY id"
        ))
        .bind(&g)
        .fetch_all(&self.readers)
        .await
        .step("reading a grant's requests")?;
        rows.iter().map(|r| decode_request(r)).collect()
    }

    pub async fn approvals(&self, request_id: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT approver, token_name, at, reason FROM approvals WHERE request_id = ? ORDER BY at",
        )
        .bind(request_id)
        .fetch_all(&self.readers)
        .await
        .step("reading approvals")?;
        rows.into_iter()
            .map(|(approver, token_name, at, reason)| {
                Ok(ApprovalRecord {
                    approver,
                    token_name,
                    at: parse_ts("approvals.at", &at)?,
                    reason,
                })
            })
            .collect()
    }

    /// The latest review of `list`: its next due date and every member removed by any review.
    pub async fn review_state(
        &self,
        list: &str,
    ) -> Result<(Option<DateTime<Utc>>, Vec<String>), StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT next_due, removed FROM list_reviews WHERE list = ? ORDER BY id")
                .bind(list)
                .fetch_all(&self.readers)
                .await
                .step("reading reviews")?;
        let mut due = None;
        let mut removed: Vec<String> = Vec::new();
        for (d, r) in rows {
            due = Some(parse_ts("list_reviews.next_due", &d)?);
            removed.extend(decode::<Vec<String>>("list_reviews.removed", &r)?);
        }
        Ok((due, removed))
    }

    pub async fn mark(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM marks WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.readers)
            .await
            .step("reading a mark")
    }

    /// History rows after `seq`, oldest first, at most `limit`.
    pub async fn history_after(&self, seq: i64, limit: u32) -> Result<Vec<HistoryRow>, StoreError> {
        let rows: Vec<HistoryTuple> = sqlx::query_as(
            "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash FROM history \
                 WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .step("reading new history")?;
        rows.into_iter()
            .map(
                |(seq, at, grant_id, actor, event, detail, prev_hash, hash)| {
                    Ok(HistoryRow {
                        seq,
                        at: parse_ts("history.at", &at)?,
                        grant_id: grant_id.and_then(|g| g.parse().ok()),
                        actor,
                        event,
                        detail: decode("history.detail", &detail)?,
                        prev_hash,
                        hash,
                    })
                },
            )
            .collect()
    }

    /// Notifications due for delivery at `now`, oldest first.
    pub async fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, sink, event, payload, attempts FROM outbox \
             WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(format_ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .step("reading the outbox")?;
        rows.into_iter()
            .map(|(id, sink, event, payload, attempts)| {
                Ok(OutboxItem {
                    id,
                    sink,
                    event,
                    payload: decode("outbox.payload", &payload)?,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// What `/metrics` shows of the request flow: pending requests, notifications not yet
    /// delivered, and the age in seconds of the oldest of those (0 when none).
    pub async fn flow_gauges(&self, now: DateTime<Utc>) -> Result<FlowGauges, StoreError> {
        let (pending, backlog, oldest): (i64, i64, Option<String>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM requests WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL), \
                    (SELECT MIN(created_at) FROM outbox WHERE delivered_at IS NULL)",
        )
        .fetch_one(&self.readers)
        .await
        .step("reading the request flow's gauges")?;
        let oldest = oldest
            .map(|t| parse_ts("outbox.created_at", &t))
            .transpose()?
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        Ok(FlowGauges {
            pending_requests: u64::try_from(pending).unwrap_or(0),
            outbox_backlog: u64::try_from(backlog).unwrap_or(0),
            oldest_undelivered_secs: oldest,
        })
    }

    /// Records one delivery attempt: delivered, or when to try again and why not.
    pub async fn outbox_attempted(
        &self,
        id: i64,
        outcome: Result<DateTime<Utc>, (DateTime<Utc>, String)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write("starting an outbox update").await?;
        match outcome {
            Ok(at) => sqlx::query(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL \
                 WHERE id = ?",
            )
            .bind(format_ts(at))
            .bind(id),
            Err((next, error)) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? \
                 WHERE id = ?",
            )
            .bind(format_ts(next))
            .bind(error)
            .bind(id),
        }
        .execute(&mut *tx)
        .await
        .step("recording a delivery attempt")?;
        tx.commit().await.step("committing an outbox update")
    }

    /// Binds a token to a person's identity (stored normalised), with a history row.
    pub async fn set_token_identity(&self, name: &str, identity: &str) -> Result<(), StoreError> {
        lapse_core::text::check_name("identity", identity)?;
        let identity = lapse_core::access_list::normalize_identity(identity);
        let now = Utc::now();
        let mut tx = self
            .begin_write("starting to bind a token's identity")
            .await?;
        let r = sqlx::query("UPDATE api_tokens SET identity = ? WHERE name = ?")
            .bind(&identity)
            .bind(name)
            .execute(&mut *tx)
            .await
            .step("binding a token's identity")?;
        crate::one_row(r, "binding a token's identity", "token", || name.to_owned())?;
        let mut head = ChainHead::read(&mut tx).await?;
        head.append(
            &mut tx,
            &NewHistory {
                at: now,
                grant_id: None,
                actor: "local-admin".to_owned(),
                event: HistoryEvent::TokenIdentitySet.as_str().to_owned(),
                detail: json!({ "name": name, "identity": identity }),
            },
        )
        .await?;
        tx.commit().await.step("committing a token's identity")
    }

    /// The identity a live token named `name` is bound to.
    pub async fn token_identity(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> = sqlx::query_scalar(
            "SELECT identity FROM api_tokens WHERE name = ? AND revoked_at IS NULL",
        )
        .bind(name)
        .fetch_optional(&self.readers)
        .await
        .step("reading a token's identity")?;
        Ok(row.flatten())
    }
}

impl SqliteStore {
    /// The sequence number of the newest history row (0 for an empty history).
    pub async fn last_history_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM history")
            .fetch_one(&self.readers)
            .await
            .step("reading the history's last row")?;
        Ok(seq.unwrap_or(0))
    }
}

/// See [`Store::flow_gauges`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowGauges {
    pub pending_requests: u64,
    pub outbox_backlog: u64,
    pub oldest_undelivered_secs: f64,
}
