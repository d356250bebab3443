//! The append-only history: appending inside write transactions, the hash chain, queries, and verification with or without checkpoints.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lapse_core::{GrantId, HistoryEvent};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnection, SqliteRow};

use crate::checkpoint::{Checkpoint, CheckpointKey};
use crate::error::{Step, StoreError};
use crate::time::{format_ts, parse_ts};
use crate::{SqliteStore, col};

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
    /// Newest rows first (with `limit`, the last rows: `history --tail N`).
    pub newest_first: bool,
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
    /// The number the next row takes: one past the highest ever written, whether or not that
    /// row is still there.
    next_seq: i64,
    /// The hash of the last row present, which the next row links to.
    hash: String,
    /// No row is written with an earlier time than this.
    floor: Option<DateTime<Utc>>,
}

impl ChainHead {
    /// Must be called inside a `BEGIN IMMEDIATE` transaction, so no other writer can append
    /// between this read and our append (the chain never forks).
    pub(crate) async fn read(conn: &mut SqliteConnection) -> Result<Self, StoreError> {
        const STEP: &str = "reading the history's last row";
        let last: Option<(i64, String, String)> =
            sqlx::query_as("SELECT seq, hash, at FROM history ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await
                .step(STEP)?;
        // The mark outlives deleted rows; if it was deleted too, the rows are all there is.
        let mark: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT last_seq, last_at FROM history_head WHERE id = 1")
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

    /// Appends `entry` after this head and advances it. The row's time is `entry.at`, or the
    /// previous row's time if that is later: clocks read in different tasks can be a few
    /// microseconds apart, and history time never runs backwards.
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
        // The grants the row served, for `show ID` and the filters (migration 0014).
        let served: Vec<String> = grant_id
            .iter()
            .cloned()
            .chain(
                entry
                    .detail
                    .get("grants")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_owned)),
            )
            .collect();
        if !served.is_empty() {
            sqlx::query(
                "INSERT OR IGNORE INTO history_grants (grant_id, seq) \
                 SELECT value, ?2 FROM json_each(?1)",
            )
            .bind(serde_json::to_string(&served).step("encoding a history row's grants")?)
            .bind(seq)
            .execute(&mut *conn)
            .await
            .step("linking a history row to its grants")?;
        }
        sqlx::query(
            "INSERT INTO history_head (id, last_seq, last_at) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO UPDATE SET last_seq = ?1, last_at = ?2",
        )
        .bind(seq)
        .bind(&at)
        .execute(&mut *conn)
        .await
        .step("advancing the history's high-water mark")?;
        self.next_seq = seq + 1;
        self.hash = hash;
        // Re-read from the stored text so the floor has the stored precision.
        self.floor = Some(parse_ts("history.at", &at)?);
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

impl SqliteStore {
    /// History rows matching `filter`, oldest first unless `filter.newest_first`.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>, StoreError> {
        // With a grant given, a plain equality lets SQLite use the (grant_id, seq) index; the
        // `?1 IS NULL OR ...` form would scan the whole table. Only constants are spliced in.
        // A row belongs to a grant when it is the grant's own or a remote change made for it
        // (`history_grants`, by index).
        let by_grant = if filter.grant.is_some() {
            "h.seq IN (SELECT hg.seq FROM history_grants hg WHERE hg.grant_id = ?1)"
        } else {
            "?1 IS NULL"
        };
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT seq, at, grant_id, actor, event, detail, prev_hash, hash FROM history h \
             WHERE {by_grant} \
               AND (?2 IS NULL OR h.seq IN (SELECT hg.seq FROM history_grants hg \
                    JOIN grant_principals p ON p.grant_id = hg.grant_id \
                    WHERE p.role = 'user' AND (p.name = ?2 COLLATE NOCASE OR p.remote_id = ?2))) \
               AND (?3 IS NULL OR h.seq IN (SELECT hg.seq FROM history_grants hg \
                    JOIN grant_principals p ON p.grant_id = hg.grant_id \
                    WHERE p.role = 'resource' AND (p.name = ?3 COLLATE NOCASE OR p.remote_id = ?3))) \
               AND (?4 IS NULL OR h.at >= ?4) \
               AND (?5 IS NULL OR h.at < ?5) \
             ORDER BY h.seq {order} LIMIT ?6"
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
    /// does not match its contents or whose `prev_hash` does not match the row before it, or
    /// rows missing at the end that the high-water mark says were written.
    ///
    /// Without checkpoints this cannot see a history cut at the end by someone who also
    /// rewound the mark, nor one recomputed from an edited row onwards; see
    /// [`Store::verify_history_with`].
    pub async fn verify_history(&self) -> Result<VerifyReport, StoreError> {
        Ok(self.walk_chain(&BTreeMap::new()).await?.report)
    }

    /// [`Store::verify_history`], and then the chain against `checkpoints` made with `key`.
    ///
    /// A checkpoint whose MAC does not verify under `key` is named as forged and otherwise
    /// ignored. Each genuine checkpoint must find its row with the hash it recorded: a
    /// checkpoint beyond the last row names truncation, a checkpointed row with another hash
    /// names rewriting (even when the chain links up again after it), and a checkpointed row
    /// missing from the middle names removal.
    pub async fn verify_history_with(
        &self,
        checkpoints: &[Checkpoint],
        key: &CheckpointKey,
    ) -> Result<CheckedHistory, StoreError> {
        verify_with(checkpoints, key, async |expected| {
            self.walk_chain(expected).await
        })
        .await
    }

    /// Walks every row in order, checking links and hashes, and compares the rows named in
    /// `expected` with the hash recorded for them.
    async fn walk_chain(&self, expected: &BTreeMap<i64, String>) -> Result<Walk, StoreError> {
        const STEP: &str = "verifying the history";
        // One read transaction: the rows and the mark come from the same snapshot.
        let mut tx = self.readers.begin().await.step(STEP)?;
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

    /// The last row's sequence number (0 for an empty history): cheap, for deciding when a
    /// checkpoint is due.
    pub async fn history_head_seq(&self) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM history")
            .fetch_one(&self.readers)
            .await
            .step("reading the history's head")?;
        Ok(seq.unwrap_or(0))
    }

    /// A checkpoint of the chain's head now: the last row's sequence number and hash (0 and
    /// [`GENESIS_HASH`] for an empty history), taken at `at`, keyed with `key`.
    pub async fn checkpoint(
        &self,
        key: &CheckpointKey,
        at: DateTime<Utc>,
    ) -> Result<Checkpoint, StoreError> {
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM history ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.readers)
                .await
                .step("reading the history's head for a checkpoint")?;
        let (seq, hash) = last.unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        Ok(Checkpoint::new(seq, hash, at, key))
    }
}

/// What one walk over the chain found.
pub(crate) struct Walk {
    pub(crate) report: VerifyReport,
    rewritten: Vec<Finding>,
    /// The checkpointed rows that were found.
    seen: std::collections::BTreeSet<i64>,
    last_seq: i64,
}

/// [`Store::verify_history_with`] for any backend: `walk` walks the chain once, comparing the
/// rows it is given with their checkpointed hashes.
pub(crate) async fn verify_with(
    checkpoints: &[Checkpoint],
    key: &CheckpointKey,
    walk: impl AsyncFnOnce(&BTreeMap<i64, String>) -> Result<Walk, StoreError>,
) -> Result<CheckedHistory, StoreError> {
    let mut findings = Vec::new();
    // seq -> (hash, index in `checkpoints`); a later checkpoint of the same row must agree.
    let mut expected: BTreeMap<i64, (String, usize)> = BTreeMap::new();
    for (index, c) in checkpoints.iter().enumerate() {
        if !c.verify_mac(key) {
            findings.push(Finding::ForgedCheckpoint { index, seq: c.seq });
            continue;
        }
        if let Some((hash, first)) = expected.get(&c.seq) {
            if *hash != c.hash {
                findings.push(Finding::ConflictingCheckpoints {
                    seq: c.seq,
                    first: *first,
                    second: index,
                });
            }
            continue;
        }
        expected.insert(c.seq, (c.hash.clone(), index));
    }
    let checkpoints_genuine = expected.len();
    if let Some((hash, _)) = expected.remove(&0)
        && hash != GENESIS_HASH
    {
        findings.push(Finding::Rewritten {
            seq: 0,
            checkpointed: hash,
            found: GENESIS_HASH.to_owned(),
        });
    }
    let walk = walk(&expected.iter().map(|(s, (h, _))| (*s, h.clone())).collect()).await?;
    findings.extend(walk.rewritten);
    let last_seq = walk.last_seq;
    let mut beyond = None;
    for seq in expected.keys().filter(|s| !walk.seen.contains(s)) {
        if *seq > last_seq {
            beyond = beyond.max(Some(*seq));
        } else {
            findings.push(Finding::Missing { seq: *seq });
        }
    }
    if let Some(checkpoint_seq) = beyond {
        findings.push(Finding::Truncated {
            checkpoint_seq,
            last_seq,
        });
    }
    Ok(CheckedHistory {
        chain: walk.report,
        checkpoints_genuine,
        findings,
    })
}

/// Checks rows fed in `seq` order: links, hashes, and the rows named in `expected`.
pub(crate) struct ChainWalker<'a> {
    expected: &'a BTreeMap<i64, String>,
    rows_checked: u64,
    first_broken: Option<BrokenRow>,
    rewritten: Vec<Finding>,
    seen: std::collections::BTreeSet<i64>,
    prev: Option<(i64, String)>,
}

impl<'a> ChainWalker<'a> {
    pub(crate) fn new(expected: &'a BTreeMap<i64, String>) -> Self {
        Self {
            expected,
            rows_checked: 0,
            first_broken: None,
            rewritten: Vec::new(),
            seen: std::collections::BTreeSet::new(),
            prev: None,
        }
    }

    /// The next row of the chain, as stored.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn row(
        &mut self,
        seq: i64,
        at: &str,
        grant_id: Option<&str>,
        actor: &str,
        event: &str,
        detail: &str,
        prev_hash: String,
        hash: String,
    ) {
        self.rows_checked += 1;
        if let Some(checkpointed) = self.expected.get(&seq) {
            self.seen.insert(seq);
            if *checkpointed != hash {
                self.rewritten.push(Finding::Rewritten {
                    seq,
                    checkpointed: checkpointed.clone(),
                    found: hash.clone(),
                });
            }
        }
        let (expected_seq, expected_prev) = match &self.prev {
            Some((s, h)) => (s + 1, h.as_str()),
            None => (1, GENESIS_HASH),
        };
        if self.first_broken.is_none() {
            // Checked in this order so that the reason names the most direct cause.
            let reason = if seq != expected_seq {
                Some(format!(
                    "expected row {expected_seq} here: rows are missing"
                ))
            } else if prev_hash != expected_prev {
                Some(match &self.prev {
                    Some((s, _)) => format!(
                        "prev_hash does not match the hash of row {s}: a row was changed, \
                         removed or inserted before it"
                    ),
                    None => "the first row's prev_hash is not the genesis hash".to_owned(),
                })
            } else {
                let recomputed = history_hash(&prev_hash, seq, at, grant_id, actor, event, detail);
                (recomputed != hash).then(|| {
                    "hash does not match the row's contents: the row was altered".to_owned()
                })
            };
            if let Some(reason) = reason {
                self.first_broken = Some(BrokenRow { seq, reason });
            }
        }
        self.prev = Some((seq, hash));
    }

    /// The walk's outcome, given the high-water mark read in the same snapshot as the rows.
    pub(crate) fn finish(self, mark: Option<i64>) -> Walk {
        let last_seq = self.prev.map_or(0, |(s, _)| s);
        let mut first_broken = self.first_broken;
        if first_broken.is_none()
            && let Some(mark) = mark.filter(|m| *m > last_seq)
        {
            first_broken = Some(BrokenRow {
                seq: last_seq + 1,
                reason: format!(
                    "rows after {last_seq} were removed: the store has written up to row {mark}"
                ),
            });
        }
        Walk {
            report: VerifyReport {
                rows_checked: self.rows_checked,
                first_broken,
            },
            rewritten: self.rewritten,
            seen: self.seen,
            last_seq,
        }
    }
}

/// The outcome of [`Store::verify_history_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedHistory {
    /// The walk of the chain itself, as [`Store::verify_history`] reports it.
    pub chain: VerifyReport,
    /// Distinct rows named by checkpoints whose MAC verified.
    pub checkpoints_genuine: usize,
    /// Everything the checkpoints show, in the order found; empty when they all hold.
    pub findings: Vec<Finding>,
}

impl CheckedHistory {
    pub fn is_ok(&self) -> bool {
        self.chain.is_ok() && self.findings.is_empty()
    }
}

/// One thing the checkpoints show about the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The checkpoint at `index` (0-based, in the order given) does not verify under the key.
    ForgedCheckpoint { index: usize, seq: i64 },
    /// Two genuine checkpoints record different hashes for the same row.
    ConflictingCheckpoints {
        seq: i64,
        first: usize,
        second: usize,
    },
    /// A genuine checkpoint names a row beyond the last one present.
    Truncated { checkpoint_seq: i64, last_seq: i64 },
    /// A checkpointed row is there with another hash than the checkpoint recorded.
    Rewritten {
        seq: i64,
        checkpointed: String,
        found: String,
    },
    /// A checkpointed row below the last row is gone.
    Missing { seq: i64 },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ForgedCheckpoint { index, seq } => write!(
                f,
                "checkpoint {} (row {seq}) is forged: its MAC does not verify with this key",
                index + 1
            ),
            Self::ConflictingCheckpoints { seq, first, second } => write!(
                f,
                "checkpoints {} and {} record different hashes for row {seq}: the history was \
                 rewritten between them",
                first + 1,
                second + 1
            ),
            Self::Truncated {
                checkpoint_seq,
                last_seq,
            } => write!(
                f,
                "the history was truncated: rows after {last_seq} were removed (a checkpoint \
                 recorded row {checkpoint_seq})"
            ),
            Self::Rewritten {
                seq,
                checkpointed,
                found,
            } => write!(
                f,
                "the history was rewritten: row {seq} has hash {found}, the checkpoint \
                 recorded {checkpointed}"
            ),
            Self::Missing { seq } => {
                write!(f, "row {seq}, which a checkpoint recorded, was removed")
            }
        }
    }
}

impl SqliteStore {
    /// Names of remote objects by Twingate id, from what lapse knows of them: the users,
    /// resources, groups and service accounts its grants named, the groups and keys it owns,
    /// and the groups it created for `grants` (their `group-created` rows). Ids it never knew
    /// are left out.
    pub async fn remote_names(
        &self,
        ids: &[String],
        grants: &[String],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let ids = serde_json::to_string(ids).step("encoding ids")?;
        let grants = serde_json::to_string(grants).step("encoding grant ids")?;
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT remote_id, name FROM grant_principals \
               WHERE role IN ('user', 'resource', 'group', 'service-account') \
                 AND remote_id IN (SELECT value FROM json_each(?1)) \
             UNION \
             SELECT remote_id, name FROM owned_objects \
               WHERE remote_id IN (SELECT value FROM json_each(?1)) \
             UNION \
             SELECT json_extract(detail, '$.group'), json_extract(detail, '$.name') FROM history \
               WHERE grant_id IN (SELECT value FROM json_each(?2)) AND event = 'group-created'",
        )
        .bind(&ids)
        .bind(&grants)
        .fetch_all(&self.readers)
        .await
        .step("reading the names of remote ids")?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, name)| Some((id?, name?)))
            .collect())
    }
}
