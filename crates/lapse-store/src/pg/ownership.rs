//! The engine's write path on PostgreSQL: a batch in one fenced write transaction.

use chrono::Utc;
use lapse_core::{Edge, EdgeKind, Grant, GrantId, ObjectKind, OwnedEdge, OwnedObject, RemoteId};
use sqlx::postgres::PgRow;

use super::history::PgChainHead;
use super::{PgStore, col, one_row};
use crate::error::{Step, StoreError};
use crate::ownership::{corrupt, edge_key};
use crate::time::{format_ts, parse_opt_ts};
use crate::{Batch, NewHistory};

fn edge_from_row(row: &PgRow) -> Result<OwnedEdge, StoreError> {
    const STEP: &str = "reading an owned edge";
    let kind: String = col(row, "kind", STEP)?;
    let added_by: String = col(row, "added_by", STEP)?;
    Ok(OwnedEdge {
        edge: Edge {
            kind: EdgeKind::parse(&kind)
                .ok_or_else(|| corrupt(STEP, "owned_edges.kind", &kind, "unknown edge kind"))?,
            container: RemoteId::new(col::<String>(row, "container", STEP)?),
            member: RemoteId::new(col::<String>(row, "member", STEP)?),
        },
        added_by: added_by
            .parse()
            .map_err(|e| corrupt(STEP, "owned_edges.added_by", &added_by, e))?,
        expires_at: parse_opt_ts("owned_edges.expires_at", col(row, "expires_at", STEP)?)?,
        confirmed: col::<i64>(row, "confirmed", STEP)? != 0,
    })
}

fn object_from_row(row: &PgRow) -> Result<OwnedObject, StoreError> {
    const STEP: &str = "reading an owned object";
    let kind: String = col(row, "kind", STEP)?;
    let grant: String = col(row, "grant_id", STEP)?;
    Ok(OwnedObject {
        grant: grant
            .parse()
            .map_err(|e| corrupt(STEP, "owned_objects.grant_id", &grant, e))?,
        kind: ObjectKind::parse(&kind)
            .ok_or_else(|| corrupt(STEP, "owned_objects.kind", &kind, "unknown object kind"))?,
        name: col(row, "name", STEP)?,
        remote_id: col::<Option<String>>(row, "remote_id", STEP)?.map(RemoteId::new),
        revoked: col::<i64>(row, "revoked", STEP)? != 0,
    })
}

impl PgStore {
    pub(crate) async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = format_ts(Utc::now());
        let mut tx = self.begin_write("starting a commit").await?;
        // Under the write lock, which a new leader's takeover also takes: a batch is either
        // written before the new epoch began or refused.
        self.check_fence(&mut tx).await?;

        for g in &batch.grants {
            // A revocation or extension recorded by another daemon since the leader last read
            // the grant is never undone by the leader's older copy: the earliest request to end
            // it and the latest end stand (both only ever move one way).
            let result = sqlx::query(
                "UPDATE grants SET state = $1, revoked_at = COALESCE(revoked_at, $2), \
                 revoke_reason = CASE WHEN revoked_at IS NULL THEN $3 ELSE revoke_reason END, \
                 attempts = $4, next_attempt_at = $5, last_error = $6, \
                 expires_at = GREATEST(expires_at, $7), updated_at = $8 \
                 WHERE id = $9 AND state NOT IN ('expired', 'revoked', 'failed')",
            )
            .bind(g.state.as_str())
            .bind(g.revoked_at.map(format_ts))
            .bind(&g.revoke_reason)
            .bind(i64::from(g.retry.attempts))
            .bind(g.retry.next_attempt_at.map(format_ts))
            .bind(&g.retry.last_error)
            .bind(format_ts(g.expires_at))
            .bind(&now)
            .bind(g.id.to_string())
            .execute(&mut *tx)
            .await
            .step("updating a grant")?;
            if result.rows_affected() == 0 {
                // Nothing more happens to a grant that has ended: a late copy of it is not
                // written over its end. A grant that does not exist fails the batch.
                let ended: Option<(String,)> =
                    sqlx::query_as("SELECT state FROM grants WHERE id = $1")
                        .bind(g.id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .step("updating a grant")?;
                match ended {
                    Some((state,)) => {
                        tracing::warn!(grant = %g.id, stored = %state, written = %g.state, "a grant that has ended was not written over")
                    }
                    None => one_row(result, "updating a grant", "grant", || g.id.to_string())?,
                }
            }
        }

        for e in &batch.release_edges {
            sqlx::query(
                "DELETE FROM owned_edges WHERE kind = $1 AND container = $2 AND member = $3",
            )
            .bind(e.kind.as_str())
            .bind(e.container.as_str())
            .bind(e.member.as_str())
            .execute(&mut *tx)
            .await
            .step("releasing an owned edge")?;
        }

        for o in &batch.claim_edges {
            sqlx::query(
                "INSERT INTO owned_edges (kind, container, member, added_by, expires_at, confirmed, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (kind, container, member) DO UPDATE SET \
                 added_by = excluded.added_by, expires_at = excluded.expires_at, confirmed = excluded.confirmed",
            )
            .bind(o.edge.kind.as_str())
            .bind(o.edge.container.as_str())
            .bind(o.edge.member.as_str())
            .bind(o.added_by.to_string())
            .bind(o.expires_at.map(format_ts))
            .bind(i64::from(o.confirmed))
            .bind(&now)
            .execute(&mut *tx)
            .await
            .step("claiming an edge")?;
        }

        for (e, expires_at) in &batch.confirm_edges {
            let result = sqlx::query(
                "UPDATE owned_edges SET confirmed = 1, expires_at = $1 \
                 WHERE kind = $2 AND container = $3 AND member = $4",
            )
            .bind(expires_at.map(format_ts))
            .bind(e.kind.as_str())
            .bind(e.container.as_str())
            .bind(e.member.as_str())
            .execute(&mut *tx)
            .await
            .step("confirming an edge")?;
            one_row(result, "confirming an edge", "claimed edge", || edge_key(e))?;
        }

        for o in &batch.put_objects {
            sqlx::query(
                "INSERT INTO owned_objects (grant_id, kind, name, remote_id, revoked) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (grant_id, kind) DO UPDATE SET \
                 name = excluded.name, remote_id = excluded.remote_id, revoked = excluded.revoked",
            )
            .bind(o.grant.to_string())
            .bind(o.kind.as_str())
            .bind(&o.name)
            .bind(o.remote_id.as_ref().map(|r| r.as_str()))
            .bind(i64::from(o.revoked))
            .execute(&mut *tx)
            .await
            .step("recording an owned object")?;
        }

        for (grant, kind) in &batch.remove_objects {
            sqlx::query("DELETE FROM owned_objects WHERE grant_id = $1 AND kind = $2")
                .bind(grant.to_string())
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await
                .step("removing an owned object")?;
        }

        if !batch.history.is_empty() {
            let mut head = PgChainHead::read(&mut tx).await?;
            for h in &batch.history {
                head.append(&mut tx, h).await?;
            }
        }

        tx.commit().await.step("committing a batch")
    }

    pub(crate) async fn load_edges(&self) -> Result<Vec<OwnedEdge>, StoreError> {
        sqlx::query(
            "SELECT kind, container, member, added_by, expires_at, confirmed FROM owned_edges \
             ORDER BY kind, container, member",
        )
        .fetch_all(&self.pool)
        .await
        .step("loading owned edges")?
        .iter()
        .map(edge_from_row)
        .collect()
    }

    pub(crate) async fn load_objects(&self) -> Result<Vec<OwnedObject>, StoreError> {
        sqlx::query(
            "SELECT grant_id, kind, name, remote_id, revoked FROM owned_objects \
             ORDER BY grant_id, kind",
        )
        .fetch_all(&self.pool)
        .await
        .step("loading owned objects")?
        .iter()
        .map(object_from_row)
        .collect()
    }
}

/// What a change of one grant outside the reconcile loop comes to ([`PgStore::change_grant`]).
#[derive(Debug, Clone)]
pub enum GrantChange {
    /// Nothing to write: the grant as it stands is the answer.
    Unchanged(Grant),
    /// The grant's new row (its revocation or end fields) and the history row saying why.
    Changed(Grant, NewHistory),
}

impl PgStore {
    /// Reads one grant under the write lock, asks `decide` what becomes of it, and writes the
    /// answer (the grant's revocation and end fields, and its history row) in the same
    /// transaction, announcing it to the leader. Not fenced: like a submission, it records a
    /// request, and sends nothing anywhere.
    pub(crate) async fn change_grant<E>(
        &self,
        id: GrantId,
        decide: impl FnOnce(Option<Grant>) -> Result<GrantChange, E>,
    ) -> Result<Result<Grant, E>, StoreError> {
        const STEP: &str = "changing a grant";
        let mut tx = self.begin_write(STEP).await?;
        let current = super::grants::fetch_grant(&mut tx, &id.to_string()).await?;
        let (g, row) = match decide(current) {
            Err(e) => {
                tx.rollback().await.step(STEP)?;
                return Ok(Err(e));
            }
            Ok(GrantChange::Unchanged(g)) => {
                tx.rollback().await.step(STEP)?;
                return Ok(Ok(g));
            }
            Ok(GrantChange::Changed(g, row)) => (g, row),
        };
        let result = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoke_reason = $2, attempts = $3, \
             next_attempt_at = $4, last_error = $5, expires_at = $6, updated_at = $7 WHERE id = $8",
        )
        .bind(g.revoked_at.map(format_ts))
        .bind(&g.revoke_reason)
        .bind(i64::from(g.retry.attempts))
        .bind(g.retry.next_attempt_at.map(format_ts))
        .bind(&g.retry.last_error)
        .bind(format_ts(g.expires_at))
        .bind(format_ts(Utc::now()))
        .bind(g.id.to_string())
        .execute(&mut *tx)
        .await
        .step(STEP)?;
        one_row(result, STEP, "grant", || g.id.to_string())?;
        let mut head = PgChainHead::read(&mut tx).await?;
        head.append(&mut tx, &row).await?;
        Self::announce(&mut tx, "grant").await?;
        tx.commit().await.step(STEP)?;
        Ok(Ok(g))
    }

    /// Grants created, revoked or extended in history rows after `seq`, with each row's
    /// sequence number, oldest first, at most `limit`: what the leader reads back of the work
    /// other daemons recorded.
    pub(crate) async fn grants_changed_after(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Option<GrantId>)>, StoreError> {
        const STEP: &str = "reading grants changed by other daemons";
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT seq, grant_id FROM history WHERE seq > $1 \
             AND event IN ('created', 'revoke-requested', 'extended') ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .step(STEP)?;
        Ok(rows
            .into_iter()
            .map(|(seq, g)| (seq, g.and_then(|g| g.parse().ok())))
            .collect())
    }
}
