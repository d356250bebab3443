//! The history on PostgreSQL: appends under the write lock, queries, verification in one
//! repeatable-read snapshot. The chain, its encoding and its checks are the SQLite backend's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lapse_core::{GrantId, HistoryEvent};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use super::{PgStore, col};
use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Step, StoreError};
use crate::history::{ChainWalker, Walk, verify_with};
use crate::time::{format_ts, parse_ts};
use crate::{
    CheckedHistory, GENESIS_HASH, HistoryFilter, HistoryRow, NewHistory, VerifyReport, history_hash,
};

/// The chain's head inside a write transaction (which holds the write lock).
pub(crate) struct PgChainHead {
    next_seq: i64,
    hash: String,
    floor: Option<DateTime<Utc>>,
}

impl PgChainHead {
    pub(crate) async fn read(conn: &mut PgConnection) -> Result<Self, StoreError> {
        let last: Option<(i64, String, String)> =
            sqlx::query_as("SELECT seq, hash, at FROM history ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await
                .step("reading the history's last row")?;
        // Locked as well: the advisory lock already serialises writers, and the row lock
        // keeps appends serialised even for a writer that bypassed it.
        let mark: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT last_seq, last_at FROM history_head WHERE id = 1 FOR UPDATE")
                .fetch_optional(&mut *conn)
                .await
                .step("reading the history's high-water mark")?;
        let (row_seq, hash, row_at) = match last {
            Some((seq, hash, at)) => (seq, hash, Some(parse_ts("history.at", &at)?)),
            None => (0, GENESIS_HASH.to_owned(), None),
        };
        let (mark_seq, mark_at) = match mark {
            Some((seq, at)) => (
                seq,
                at.map(|at| parse_ts("history_head.last_at", &at))
                    .transpose()?,
            ),
            None => (0, None),
        };
        Ok(Self {
            next_seq: row_seq.max(mark_seq) + 1,
            hash,
            floor: row_at.max(mark_at),
        })
    }

    pub(crate) async fn append(
        &mut self,
        conn: &mut PgConnection,
        entry: &NewHistory,
    ) -> Result<i64, StoreError> {
        if entry.event.parse::<HistoryEvent>().is_err() {
            return Err(StoreError::UnknownEvent {
                event: entry.event.clone(),
            });
        }
        let seq = self.next_seq;
        let at_time = match self.floor {
            Some(floor) if floor > entry.at => floor,
            _ => entry.at,
        };
        let at = format_ts(at_time);
        let grant_id = entry.grant_id.map(|g| g.to_string());
        let detail = serde_json::to_string(&entry.detail).step("encoding a history detail")?;
        let hash = history_hash(
            &self.hash,
            seq,
            &at,
            grant_id.as_deref(),
            &entry.actor,
            &entry.event,
            &detail,
        );
        // The row and the high-water mark in one statement.
        sqlx::query(
            "WITH h AS (INSERT INTO history (seq, at, grant_id, actor, event, detail, prev_hash, \
             hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq, at) \
             INSERT INTO history_head (id, last_seq, last_at) SELECT 1, seq, at FROM h \
             ON CONFLICT (id) DO UPDATE SET last_seq = excluded.last_seq, \
             last_at = excluded.last_at",
        )
        .bind(seq)
        .bind(&at)
        .bind(&grant_id)
        .bind(&entry.actor)
        .bind(&entry.event)
        .bind(&detail)
        .bind(&self.hash)
        .bind(&hash)
        .execute(&mut *conn)
        .await
        .step("appending to the history")?;
        // The grants the row served, for a grant's history and the filters (migration 0002).
        let served: Vec<String> = grant_id
            .iter()
            .cloned()
            .chain(
                entry
                    .detail
                    .get("grants")
                    .and_then(serde_json::Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_owned)),
            )
            .collect();
        if !served.is_empty() {
            sqlx::query(
                "INSERT INTO history_grants (grant_id, seq) SELECT g, $2 FROM unnest($1::text[]) g \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&served)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .step("linking a history row to its grants")?;
        }
        self.next_seq = seq + 1;
        self.hash = hash;
        self.floor = Some(parse_ts("history.at", &at)?);
        Ok(seq)
    }
}

pub(crate) fn row_from_pg(row: &PgRow) -> Result<HistoryRow, StoreError> {
    const STEP: &str = "reading a history row";
    let seq: i64 = col(row, "seq", STEP)?;
    let grant_id: Option<String> = col(row, "grant_id", STEP)?;
    let grant_id = grant_id
        .map(|g| {
            g.parse::<GrantId>().map_err(|e| StoreError::Corrupt {
                step: STEP,
                column: "history.grant_id",
                value: g.clone(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let detail: String = col(row, "detail", STEP)?;
    let detail = serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt {
        step: STEP,
        column: "history.detail",
        value: format!("(row {seq}) {detail}"),
        reason: e.to_string(),
    })?;
    let event: String = col(row, "event", STEP)?;
    event
        .parse::<HistoryEvent>()
        .map_err(|reason| StoreError::Corrupt {
            step: STEP,
            column: "history.event",
            value: format!("(row {seq}) {event}"),
            reason,
        })?;
    Ok(HistoryRow {
        seq,
        at: parse_ts("history.at", &col::<String>(row, "at", STEP)?)?,
        grant_id,
        actor: col(row, "actor", STEP)?,
        event,
        detail,
        prev_hash: col(row, "prev_hash", STEP)?,
        hash: col(row, "hash", STEP)?,
    })
}

impl PgStore {
    pub(crate) async fn history(
        &self,
        filter: &HistoryFilter,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        // A row belongs to a grant when it is the grant's own or a remote change made for it
        // (`history_grants`, by index), as on SQLite. With a grant given, the plain form lets
        // the planner start from the index; only constants are spliced in.
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let by_grant = if filter.grant.is_some() {
            "h.seq IN (SELECT hg.seq FROM history_grants hg WHERE hg.grant_id = $1)"
        } else {
            "$1::text IS NULL"
        };
        let sql = format!(
            "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash FROM history h \
             WHERE {by_grant} \
               AND ($2::text IS NULL OR h.seq IN (SELECT hg.seq FROM history_grants hg \
                    JOIN grant_principals p ON p.grant_id = hg.grant_id \
                    WHERE p.role = 'user' AND (lower(p.name) = lower($2) OR p.remote_id = $2))) \
               AND ($3::text IS NULL OR h.seq IN (SELECT hg.seq FROM history_grants hg \
                    JOIN grant_principals p ON p.grant_id = hg.grant_id \
                    WHERE p.role = 'resource' AND (lower(p.name) = lower($3) OR p.remote_id = $3))) \
               AND ($4::text IS NULL OR h.at >= $4) \
               AND ($5::text IS NULL OR h.at < $5) \
             ORDER BY h.seq {order} LIMIT $6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.grant.map(|g| g.to_string()))
            .bind(filter.user.as_deref())
            .bind(filter.resource.as_deref())
            .bind(filter.since.map(format_ts))
            .bind(filter.until.map(format_ts))
            .bind(filter.limit.map(i64::from))
            .fetch_all(&self.pool)
            .await
            .step("reading the history")?;
        rows.iter().map(row_from_pg).collect()
    }

    pub(crate) async fn remote_names(
        &self,
        ids: &[String],
        grants: &[String],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT remote_id, name FROM grant_principals \
               WHERE role IN ('user', 'resource', 'group', 'service-account') \
                 AND remote_id = ANY($1) \
             UNION \
             SELECT remote_id, name FROM owned_objects WHERE remote_id = ANY($1) \
             UNION \
             SELECT detail::jsonb ->> 'group', detail::jsonb ->> 'name' FROM history \
               WHERE grant_id = ANY($2) AND event = 'group-created'",
        )
        .bind(ids)
        .bind(grants)
        .fetch_all(&self.pool)
        .await
        .step("reading the names of remote ids")?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, name)| Some((id?, name?)))
            .collect())
    }

    pub(crate) async fn verify_history(&self) -> Result<VerifyReport, StoreError> {
        Ok(self.walk_chain(&BTreeMap::new()).await?.report)
    }

    pub(crate) async fn verify_history_with(
        &self,
        checkpoints: &[Checkpoint],
        key: &CheckpointKey,
    ) -> Result<CheckedHistory, StoreError> {
        verify_with(checkpoints, key, async |expected| {
            self.walk_chain(expected).await
        })
        .await
    }

    async fn walk_chain(&self, expected: &BTreeMap<i64, String>) -> Result<Walk, StoreError> {
        const STEP: &str = "verifying the history";
        // One snapshot for the rows and the mark, while other daemons go on appending.
        let mut tx = self.pool.begin().await.step(STEP)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .step(STEP)?;
        let mark: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM history_head WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .step(STEP)?;
        let mut walker = ChainWalker::new(expected);
        {
            let mut rows = sqlx::query(
                "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash \
                 FROM history ORDER BY seq",
            )
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.step(STEP)? {
                walker.row(
                    col(&row, "seq", STEP)?,
                    &col::<String>(&row, "at", STEP)?,
                    col::<Option<String>>(&row, "grant_id", STEP)?.as_deref(),
                    &col::<String>(&row, "actor", STEP)?,
                    &col::<String>(&row, "event", STEP)?,
                    &col::<String>(&row, "detail", STEP)?,
                    col(&row, "prev_hash", STEP)?,
                    col(&row, "hash", STEP)?,
                );
            }
        }
        tx.rollback().await.step(STEP)?;
        Ok(walker.finish(mark))
    }

    pub(crate) async fn history_head_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM history")
            .fetch_one(&self.pool)
            .await
            .step("reading the history's head")?;
        Ok(seq.unwrap_or(0))
    }

    pub(crate) async fn checkpoint(
        &self,
        key: &CheckpointKey,
        at: DateTime<Utc>,
    ) -> Result<Checkpoint, StoreError> {
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM history ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .step("reading the history's head for a checkpoint")?;
        let (seq, hash) = last.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        Ok(Checkpoint::new(seq, hash, at, key))
    }

    pub(crate) async fn last_history_seq(&self) -> Result<i64, StoreError> {
        self.history_head_seq().await
    }
}
