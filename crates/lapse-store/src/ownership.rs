//! The engine's write path: a batch of grant updates, ownership changes and history rows committed as one transaction.

use chrono::{DateTime, Utc};
use lapse_core::{Edge, EdgeKind, Grant, GrantId, ObjectKind, OwnedEdge, OwnedObject, RemoteId};
use sqlx::sqlite::SqliteRow;

use crate::error::{Step, StoreError};
use crate::history::{ChainHead, NewHistory};
use crate::time::{format_ts, parse_opt_ts};
use crate::{SqliteStore, col, one_row};

/// Everything one step of the engine changes, applied all or nothing.
///
/// Applied in this order: grant updates, edge releases, edge claims, edge confirmations,
/// object puts, object removals, history. Releases come before claims so that a batch that
/// hands an edge from one grant to another by releasing and claiming it ends with the claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Grants to update. Written: state, revoked_at, revoke_reason, retry fields, expires_at
    /// (and updated_at, set to now). The spec, requester, reason and times of creation and
    /// start never change after insert.
    pub grants: Vec<Grant>,
    /// Edges to record as lapse's (upsert): written before the add call.
    pub claim_edges: Vec<OwnedEdge>,
    /// Edges whose add call succeeded, with the server-side expiry that was set.
    pub confirm_edges: Vec<(Edge, Option<DateTime<Utc>>)>,
    /// Edges lapse no longer owns (removed remotely, or handed back). Absent ones are ignored.
    pub release_edges: Vec<Edge>,
    /// Objects to record (upsert).
    pub put_objects: Vec<OwnedObject>,
    /// Objects deleted remotely. Absent ones are ignored.
    pub remove_objects: Vec<(GrantId, ObjectKind)>,
    pub history: Vec<NewHistory>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
            && self.claim_edges.is_empty()
            && self.confirm_edges.is_empty()
            && self.release_edges.is_empty()
            && self.put_objects.is_empty()
            && self.remove_objects.is_empty()
            && self.history.is_empty()
    }
}

pub(crate) fn edge_key(e: &Edge) -> String {
    format!("{} {} {}", e.kind.as_str(), e.container, e.member)
}

pub(crate) fn corrupt(
    step: &'static str,
    column: &'static str,
    value: &str,
    reason: impl ToString,
) -> StoreError {
    StoreError::Corrupt {
        step,
        column,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

fn edge_from_row(row: &SqliteRow) -> Result<OwnedEdge, StoreError> {
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

fn object_from_row(row: &SqliteRow) -> Result<OwnedObject, StoreError> {
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

impl SqliteStore {
    /// Applies `batch` in one `BEGIN IMMEDIATE` transaction: all of it is visible afterwards,
    /// or (on error) none of it. An update of a grant that does not exist, or a confirmation
    /// of an edge that was never claimed, fails the whole batch.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = format_ts(Utc::now());
        let mut tx = self.begin_write("starting a commit").await?;

        for g in &batch.grants {
            let result = sqlx::query(
                "UPDATE grants SET state = ?, revoked_at = ?, revoke_reason = ?, attempts = ?, \
                 next_attempt_at = ?, last_error = ?, expires_at = ?, updated_at = ? \
                 WHERE id = ? AND state NOT IN ('expired', 'revoked', 'failed')",
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
                    sqlx::query_as("SELECT state FROM grants WHERE id = ?")
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
            sqlx::query("DELETE FROM owned_edges WHERE kind = ? AND container = ? AND member = ?")
                .bind(e.kind.as_str())
                .bind(e.container.as_str())
                .bind(e.member.as_str())
                .execute(&mut *tx)
                .await
                .step("releasing an owned edge")?;
        }

        for o in &batch.claim_edges {
            // created_at keeps the first claim's time: it says since when lapse owns the edge.
            sqlx::query(
                "INSERT INTO owned_edges (kind, container, member, added_by, expires_at, confirmed, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
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
                "UPDATE owned_edges SET confirmed = 1, expires_at = ? \
                 WHERE kind = ? AND container = ? AND member = ?",
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
                "INSERT INTO owned_objects (grant_id, kind, name, remote_id, revoked) VALUES (?, ?, ?, ?, ?) \
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
            sqlx::query("DELETE FROM owned_objects WHERE grant_id = ? AND kind = ?")
                .bind(grant.to_string())
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await
                .step("removing an owned object")?;
        }

        if !batch.history.is_empty() {
            let mut head = ChainHead::read(&mut tx).await?;
            for h in &batch.history {
                head.append(&mut tx, h).await?;
            }
        }

        tx.commit().await.step("committing a batch")
    }

    /// Every edge lapse has added or is about to add.
    pub async fn load_edges(&self) -> Result<Vec<OwnedEdge>, StoreError> {
        sqlx::query(
            "SELECT kind, container, member, added_by, expires_at, confirmed FROM owned_edges \
             ORDER BY kind, container, member",
        )
        .fetch_all(&self.readers)
        .await
        .step("loading owned edges")?
        .iter()
        .map(edge_from_row)
        .collect()
    }

    /// Every object lapse has created or is about to create.
    pub async fn load_objects(&self) -> Result<Vec<OwnedObject>, StoreError> {
        sqlx::query("SELECT grant_id, kind, name, remote_id, revoked FROM owned_objects ORDER BY grant_id, kind")
            .fetch_all(&self.readers)
            .await
            .step("loading owned objects")?
            .iter()
            .map(object_from_row)
            .collect()
    }
}
