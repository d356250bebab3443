//! The append-only history: appending inside write transactions, the hash chain, queries and verification.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lapse_core::{GrantId, HistoryEvent};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::error::{Step, StoreError};
use crate::time::{format_ts, parse_ts};
use crate::{Store, col};

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Marks the hashed encoding so that it can change in a later version without ambiguity.
const HASH_DOMAIN: &[u8] = b"lapse-history-v1";

/// A history row to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewHistory {
    pub at: DateTime<Utc>,
    pub grant_id: Option<GrantId>,
    /// Who: a token's name, `lapse` for the daemon's own decisions, `local-admin` on the host.
    pub actor: String,
    pub event: String,
    /// Why and what, as JSON.
    pub detail: serde_json::Value,
}

/// A stored history row.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub grant_id: Option<GrantId>,
    pub actor: String,
    pub event: String,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Which history rows to read. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub grant: Option<GrantId>,
    /// Rows of grants naming this user (email, case-insensitive, or remote id).
    pub user: Option<String>,
    /// Rows of grants naming this resource (name, case-insensitive, or remote id).
    pub resource: Option<String>,
    /// Inclusive.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// The outcome of walking the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub rows_checked: u64,
    /// The first row whose contents or link do not match; `None` when the chain is whole.
    pub first_broken: Option<BrokenRow>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenRow {
    pub seq: i64,
    pub reason: String,
}

/// The hash of one history row, as hex SHA-256.
///
/// The hashed bytes are `lapse-history-v1` followed by, in order, `prev_hash`, `seq` (decimal
/// ASCII), `at`, `grant_id`, `actor`, `event` and `detail`, each as an 8-byte big-endian length
/// and then its UTF-8 bytes; an absent `grant_id` is the length `u64::MAX` with no bytes. The
/// text is exactly what the table stores (`detail` as stored, not re-serialized), so anyone can
/// recompute the chain from the table alone.
pub fn history_hash(
    prev_hash: &str,
    seq: i64,
    at: &str,
    grant_id: Option<&str>,
    actor: &str,
    event: &str,
    detail: &str,
) -> String {
    fn field(h: &mut Sha256, bytes: &[u8]) {
        // usize always fits in u64 on the platforms lapse builds for.
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    field(&mut h, prev_hash.as_bytes());
    field(&mut h, seq.to_string().as_bytes());
    field(&mut h, at.as_bytes());
    match grant_id {
        Some(g) => field(&mut h, g.as_bytes()),
        None => h.update(u64::MAX.to_be_bytes()),
    }
    field(&mut h, actor.as_bytes());
    field(&mut h, event.as_bytes());
    field(&mut h, detail.as_bytes());
    hex::encode(h.finalize())
}

/// The last row of the chain as seen inside the current write transaction.
#[derive(Debug, Clone)]
pub(crate) struct ChainHead {
    seq: i64,
    hash: String,
}

impl ChainHead {
    /// Must be called inside a `BEGIN IMMEDIATE` transaction, so no other writer can append
    /// between this read and our append (the chain never forks).
    pub(crate) async fn read(conn: &mut SqliteConnection) -> Result<Self, StoreError> {
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM history ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await
                .step("reading the history's last hash")?;
        Ok(match last {
            Some((seq, hash)) => Self { seq, hash },
            None => Self {
                seq: 0,
                hash: GENESIS_HASH.to_owned(),
            },
        })
    }

    /// Appends `entry` after this head and advances it.
    pub(crate) async fn append(
        &mut self,
        conn: &mut SqliteConnection,
        entry: &NewHistory,
    ) -> Result<i64, StoreError> {
        if entry.event.parse::<HistoryEvent>().is_err() {
            return Err(StoreError::UnknownEvent {
                event: entry.event.clone(),
            });
        }
        let seq = self.seq + 1;
        let at = format_ts(entry.at);
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
        sqlx::query(
            "INSERT INTO history (seq, at, grant_id, actor, event, detail, prev_hash, hash) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        self.seq = seq;
        self.hash = hash;
        Ok(seq)
    }
}

fn row_from_sql(row: &SqliteRow) -> Result<HistoryRow, StoreError> {
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

impl Store {
    /// History rows matching `filter`, oldest first.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>, StoreError> {
        // With a grant given, a plain equality lets SQLite use the (grant_id, seq) index; the
        // `?1 IS NULL OR ...` form would scan the whole table. Only constants are spliced in.
        let by_grant = if filter.grant.is_some() {
            "h.grant_id = ?1"
        } else {
            "?1 IS NULL"
        };
        let sql = format!(
            "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash FROM history h \
             WHERE {by_grant} \
               AND (?2 IS NULL OR h.grant_id IN (SELECT p.grant_id FROM grant_principals p \
                    WHERE p.role = 'user' AND (p.name = ?2 COLLATE NOCASE OR p.remote_id = ?2))) \
               AND (?3 IS NULL OR h.grant_id IN (SELECT p.grant_id FROM grant_principals p \
                    WHERE p.role = 'resource' AND (p.name = ?3 COLLATE NOCASE OR p.remote_id = ?3))) \
               AND (?4 IS NULL OR h.at >= ?4) \
               AND (?5 IS NULL OR h.at < ?5) \
             ORDER BY h.seq LIMIT ?6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(filter.grant.map(|g| g.to_string()))
            .bind(filter.user.as_deref())
            .bind(filter.resource.as_deref())
            .bind(filter.since.map(format_ts))
            .bind(filter.until.map(format_ts))
            .bind(filter.limit.map_or(-1, i64::from))
            .fetch_all(&self.readers)
            .await
            .step("reading the history")?;
        rows.iter().map(row_from_sql).collect()
    }

    /// Walks the whole chain in one consistent snapshot and names the first row whose hash
    /// does not match its contents or whose `prev_hash` does not match the row before it.
    pub async fn verify_history(&self) -> Result<VerifyReport, StoreError> {
        const STEP: &str = "verifying the history";
        let mut rows = sqlx::query(
            "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash \
             FROM history ORDER BY seq",
        )
        .fetch(&self.readers);
        let mut rows_checked = 0u64;
        let mut first_broken = None;
        let mut prev: Option<(i64, String)> = None;
        while let Some(row) = rows.try_next().await.step(STEP)? {
            rows_checked += 1;
            let seq: i64 = col(&row, "seq", STEP)?;
            let prev_hash: String = col(&row, "prev_hash", STEP)?;
            let hash: String = col(&row, "hash", STEP)?;
            let (expected_seq, expected_prev) = match &prev {
                Some((s, h)) => (s + 1, h.as_str()),
                None => (1, GENESIS_HASH),
            };
            if first_broken.is_none() {
                // Checked in this order so that the reason names the most direct cause.
                let reason = if seq != expected_seq {
                    Some(format!(
                        "expected row {expected_seq} here: rows are missing"
                    ))
                } else if prev_hash != expected_prev {
                    Some(match &prev {
                        Some((s, _)) => format!(
                            "prev_hash does not match the hash of row {s}: a row was changed, \
                             removed or inserted before it"
                        ),
                        None => "the first row's prev_hash is not the genesis hash".to_owned(),
                    })
                } else {
                    let grant_id: Option<String> = col(&row, "grant_id", STEP)?;
                    let recomputed = history_hash(
                        &prev_hash,
                        seq,
                        &col::<String>(&row, "at", STEP)?,
                        grant_id.as_deref(),
                        &col::<String>(&row, "actor", STEP)?,
                        &col::<String>(&row, "event", STEP)?,
                        &col::<String>(&row, "detail", STEP)?,
                    );
                    (recomputed != hash).then(|| {
                        "hash does not match the row's contents: the row was altered".to_owned()
                    })
                };
                if let Some(reason) = reason {
                    first_broken = Some(BrokenRow { seq, reason });
                }
            }
            prev = Some((seq, hash));
        }
        Ok(VerifyReport {
            rows_checked,
            first_broken,
        })
    }
}
