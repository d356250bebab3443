//! Requests, approvals, reviews, marks and the outbox on PostgreSQL.

use chrono::{DateTime, Utc};
use lapse_core::{Grant, GrantId, HistoryEvent, RequestState};
use serde_json::json;
use sqlx::PgConnection;

use super::PgStore;
use super::grants::{insert_one, taken_ids};
use super::history::PgChainHead;
use crate::error::{Step, StoreError};
use crate::grants::ItemError;
use crate::requests::{HistoryTuple, decode, decode_request};
use crate::time::{format_ts, parse_ts};
use crate::{
    ApprovalRecord, HistoryRow, Idempotency, Inserted, NewHistory, OutboxItem, RequestChange,
    RequestRecord,
};

/// A request row packed into the JSON object `decode_request` reads.
macro_rules! request_json {
    ($p:literal) => {
        concat!(
            "json_build_object('id', ",
            $p,
            "id, 'list', ",
            $p,
            "list, 'requester', ",
            $p,
            "requester, 'token_name', ",
            $p,
            "token_name, 'reason', ",
            $p,
            "reason, ",
            "'duration_secs', ",
            $p,
            "duration_secs, 'break_glass', ",
            $p,
            "break_glass = 1, ",
            "'extends_grant', ",
            $p,
            "extends_grant, 'state', ",
            $p,
            "state, ",
            "'approvals_needed', ",
            $p,
            "approvals_needed, 'created_at', ",
            $p,
            "created_at, ",
            "'wait_until', ",
            $p,
            "wait_until, 'decided_at', ",
            $p,
            "decided_at, ",
            "'decided_by', ",
            $p,
            "decided_by, 'decision_reason', ",
            $p,
            "decision_reason, ",
            "'grant_id', ",
            $p,
            "grant_id, 'warned_expiry', ",
            $p,
            "warned_expiry)::text"
        )
    };
}

macro_rules! select_request {
    () => {
        concat!("SELECT ", request_json!(""), " FROM requests ")
    };
}

async fn write_change(
    conn: &mut PgConnection,
    head: &mut PgChainHead,
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
        let stored: Option<String> = sqlx::query_scalar("SELECT state FROM requests WHERE id = $1")
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
        let twice: Option<i64> = sqlx::query_scalar(
            "SELECT 1::int8 FROM approvals WHERE request_id = $1 AND approver = $2",
        )
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
            "INSERT INTO requests (id, list, requester, token_name, reason, \
             duration_secs, break_glass, extends_grant, state, approvals_needed, created_at, \
             wait_until, decided_at, decided_by, decision_reason, grant_id, warned_expiry, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18) \
             ON CONFLICT (id) DO UPDATE SET list = excluded.list, requester = excluded.requester, \
             token_name = excluded.token_name, reason = excluded.reason, \
             duration_secs = excluded.duration_secs, break_glass = excluded.break_glass, \
             extends_grant = excluded.extends_grant, state = excluded.state, \
             approvals_needed = excluded.approvals_needed, created_at = excluded.created_at, \
             wait_until = excluded.wait_until, decided_at = excluded.decided_at, \
             decided_by = excluded.decided_by, decision_reason = excluded.decision_reason, \
             grant_id = excluded.grant_id, warned_expiry = excluded.warned_expiry, \
             updated_at = excluded.updated_at",
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
             VALUES ($1, $2, $3, $4, $5)",
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
             VALUES ($1, $2, $3, $4, $5, $6)",
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
        sqlx::query(
            "INSERT INTO marks (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
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
             VALUES ($1, $2, $3, $4, $5)",
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

impl PgStore {
    pub(crate) async fn flow_gauges(
        &self,
        now: DateTime<Utc>,
    ) -> Result<crate::FlowGauges, StoreError> {
        let (pending, backlog, oldest): (i64, i64, Option<String>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM requests WHERE state = 'pending'), \
                    (SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL), \
                    (SELECT MIN(created_at) FROM outbox WHERE delivered_at IS NULL)",
        )
        .fetch_one(&self.pool)
        .await
        .step("reading the request flow's gauges")?;
        let oldest = oldest
            .map(|t| parse_ts("outbox.created_at", &t))
            .transpose()?
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        Ok(crate::FlowGauges {
            pending_requests: u64::try_from(pending).unwrap_or(0),
            outbox_backlog: u64::try_from(backlog).unwrap_or(0),
            oldest_undelivered_secs: oldest,
        })
    }

    pub(crate) async fn commit_requests(&self, change: RequestChange) -> Result<(), StoreError> {
        let mut tx = self.begin_write("starting a request change").await?;
        let mut head = PgChainHead::read(&mut tx).await?;
        write_change(&mut tx, &mut head, &change).await?;
        if change.request.is_some() {
            Self::announce(&mut tx, "request").await?;
        }
        tx.commit().await.step("committing a request change")
    }

    pub(crate) async fn insert_grant_for_request(
        &self,
        grant: &Grant,
        idempotency: Idempotency,
        rule: &str,
        change: impl FnOnce(&Grant) -> RequestChange,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self
            .begin_write("starting to insert a request's grant")
            .await?;
        let mut head = PgChainHead::read(&mut tx).await?;
        let mut taken = taken_ids(&mut tx, std::iter::once(grant)).await?;
        let inserted = insert_one(
            &mut tx,
            &mut head,
            grant,
            Some(&idempotency),
            Some(rule),
            &mut taken,
        )
        .await
        .map_err(ItemError::into_inner)?;
        write_change(&mut tx, &mut head, &change(inserted.grant())).await?;
        Self::announce(&mut tx, "grant").await?;
        tx.commit().await.step("committing a request's grant")?;
        Ok(inserted)
    }

    pub(crate) async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let row: Option<String> = sqlx::query_scalar(concat!(select_request!(), "WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .step("reading a request")?;
        row.map(|r| decode_request(&r)).transpose()
    }

    pub(crate) async fn list_requests(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            select_request!(),
            "WHERE ($1::text IS NULL OR state = $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(state)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .step("listing requests")?;
        rows.iter().map(|r| decode_request(r)).collect()
    }

    pub(crate) async fn due_pending_requests(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            select_request!(),
            "WHERE state = 'pending' AND wait_until <= $1 ORDER BY wait_until, id LIMIT $2"
        ))
        .bind(format_ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .step("reading due requests")?;
        rows.iter().map(|r| decode_request(r)).collect()
    }

    pub(crate) async fn next_pending_wait(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> =
            sqlx::query_scalar("SELECT min(wait_until) FROM requests WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await
                .step("reading the next request wait")?;
        at.map(|a| parse_ts("requests.wait_until", &a)).transpose()
    }

    pub(crate) async fn approved_ending_between(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(RequestRecord, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(concat!(
            "SELECT ",
            request_json!("r."),
            ", g.expires_at \
             FROM grants g JOIN requests r ON r.grant_id = g.id \
             AND r.state = 'approved' AND r.extends_grant IS NULL \
             WHERE g.state IN ('active', 'applying') AND g.revoked_at IS NULL \
             AND g.expires_at > $3 AND g.expires_at < $1 \
             AND (r.warned_expiry IS NULL OR r.warned_expiry != g.expires_at) \
             ORDER BY g.expires_at LIMIT $2"
        ))
        .bind(format_ts(before))
        .bind(i64::from(limit))
        .bind(format_ts(after))
        .fetch_all(&self.pool)
        .await
        .step("reading grants ending soon")?;
        rows.iter()
            .map(|(r, end)| Ok((decode_request(r)?, parse_ts("grants.expires_at", end)?)))
            .collect()
    }

    pub(crate) async fn next_approved_end(
        &self,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(
            "SELECT min(g.expires_at) FROM grants g JOIN requests r ON r.grant_id = g.id \
             AND r.state = 'approved' AND r.extends_grant IS NULL \
             WHERE g.state IN ('active', 'applying') AND g.revoked_at IS NULL \
             AND g.expires_at > $1 \
             AND (r.warned_expiry IS NULL OR r.warned_expiry != g.expires_at)",
        )
        .bind(format_ts(after))
        .fetch_one(&self.pool)
        .await
        .step("reading the next end of a requested grant")?;
        at.map(|a| parse_ts("grants.expires_at", &a)).transpose()
    }

    pub(crate) async fn requests_of_grant(
        &self,
        grant: GrantId,
    ) -> Result<Vec<RequestRecord>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(concat!(
            select_request!(),
            "WHERE grant_id = $1 OR extends_grant = $1 ORDER BY id"
        ))
        .bind(grant.to_string())
        .fetch_all(&self.pool)
        .await
        .step("reading a grant's requests")?;
        rows.iter().map(|r| decode_request(r)).collect()
    }

    pub(crate) async fn approvals(
        &self,
        request_id: &str,
    ) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT approver, token_name, at, reason FROM approvals WHERE request_id = $1 \
             ORDER BY at",
        )
        .bind(request_id)
        .fetch_all(&self.pool)
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

    pub(crate) async fn review_state(
        &self,
        list: &str,
    ) -> Result<(Option<DateTime<Utc>>, Vec<String>), StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT next_due, removed FROM list_reviews WHERE list = $1 ORDER BY id",
        )
        .bind(list)
        .fetch_all(&self.pool)
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

    pub(crate) async fn mark(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM marks WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .step("reading a mark")
    }

    pub(crate) async fn history_after(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows: Vec<HistoryTuple> = sqlx::query_as(
            "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash FROM history \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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

    pub(crate) async fn outbox_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, sink, event, payload, attempts FROM outbox \
             WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2",
        )
        .bind(format_ts(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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

    pub(crate) async fn outbox_attempted(
        &self,
        id: i64,
        outcome: Result<DateTime<Utc>, (DateTime<Utc>, String)>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write("starting an outbox update").await?;
        match outcome {
            Ok(at) => sqlx::query(
                "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, last_error = NULL \
                 WHERE id = $2",
            )
            .bind(format_ts(at))
            .bind(id),
            Err((next, error)) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 \
                 WHERE id = $3",
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

    pub(crate) async fn set_token_identity(
        &self,
        name: &str,
        identity: &str,
    ) -> Result<(), StoreError> {
        lapse_core::text::check_name("identity", identity)?;
        let identity = lapse_core::access_list::normalize_identity(identity);
        let now = Utc::now();
        let mut tx = self
            .begin_write("starting to bind a token's identity")
            .await?;
        let r = sqlx::query("UPDATE api_tokens SET identity = $1 WHERE name = $2")
            .bind(&identity)
            .bind(name)
            .execute(&mut *tx)
            .await
            .step("binding a token's identity")?;
        super::one_row(r, "binding a token's identity", "token", || name.to_owned())?;
        let mut head = PgChainHead::read(&mut tx).await?;
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

    pub(crate) async fn token_identity(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row: Option<Option<String>> = sqlx::query_scalar(
            "SELECT identity FROM api_tokens WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .step("reading a token's identity")?;
        Ok(row.flatten())
    }
}
