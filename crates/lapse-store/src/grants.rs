//! Grants: inserting with idempotency, reading one, listing with filters, loading the open ones.

use chrono::Utc;
use futures::TryStreamExt;
use lapse_core::{
    Grant, GrantId, GrantKind, GrantSpec, GrantState, HistoryEvent, Principal, RetryState,
};
use serde_json::json;
use sqlx::sqlite::SqliteConnection;

use crate::SqliteStore;
use crate::error::{Step, StoreError};
use crate::history::{ChainHead, NewHistory};
use crate::time::{format_ts, parse_opt_ts, parse_ts};

/// A submission's idempotency key and a hash of its body.
///
/// `key` is what the store compares, across all callers. Build it with
/// [`Idempotency::for_caller`] for a key a caller sent, so that the same key from two callers
/// never meets, and with [`Idempotency::for_request`] for lapse's own grants of approved
/// requests, in the `request:` namespace no caller can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// The namespace of lapse's own idempotency keys.
const REQUEST_PREFIX: &str = "request:";
/// The namespace of callers' keys: `caller:<length of name>:<name>:<key>`. The length makes
/// the split unambiguous whatever the name holds.
const CALLER_PREFIX: &str = "caller:";
/// The longest key a caller may send, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

impl Idempotency {
    /// A key sent by `caller` (the token's name), scoped to that caller. Refuses an empty or
    /// over-long key, control characters, and keys in lapse's own `request:` namespace.
    pub fn for_caller(
        caller: &str,
        key: &str,
        request_hash: impl Into<String>,
    ) -> Result<Self, StoreError> {
        let refuse = |problem, fix| Err(StoreError::IdempotencyKey { problem, fix });
        const FIX: &str = "use a short printable key such as a UUID";
        if key.is_empty() {
            return refuse("is empty", FIX);
        }
        if key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
            return refuse("is longer than 200 characters", FIX);
        }
        if key.chars().any(lapse_core::text::is_forbidden_char) {
            return refuse("contains a control character", FIX);
        }
        if key.starts_with(REQUEST_PREFIX) {
            return refuse(
                "starts with `request:`, which lapse keeps for its own use",
                "choose a key that does not start with `request:`, such as a UUID",
            );
        }
        Ok(Self {
            key: format!("{CALLER_PREFIX}{}:{caller}:{key}", caller.len()),
            request_hash: request_hash.into(),
        })
    }

    /// lapse's own key for the grant of request `request_id`, so that retrying an approval
    /// finds the grant already made.
    pub fn for_request(request_id: &str) -> Self {
        Self {
            key: format!("{REQUEST_PREFIX}{request_id}"),
            request_hash: request_id.to_owned(),
        }
    }

    /// The key as its sender wrote it: without the caller scope of [`Idempotency::for_caller`].
    pub fn shown_key(&self) -> &str {
        let Some(rest) = self.key.strip_prefix(CALLER_PREFIX) else {
            return &self.key;
        };
        let Some((len, rest)) = rest.split_once(':') else {
            return &self.key;
        };
        len.parse::<usize>()
            .ok()
            .and_then(|n| rest.get(n..))
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or(&self.key)
    }
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The grant is new and now stored.
    Created(Grant),
    /// The same key and body were submitted before: the grant stored then, as it is now.
    Existing(Grant),
}

impl Inserted {
    pub fn grant(&self) -> &Grant {
        match self {
            Self::Created(g) | Self::Existing(g) => g,
        }
    }

    pub fn into_grant(self) -> Grant {
        match self {
            Self::Created(g) | Self::Existing(g) => g,
        }
    }

    pub fn is_created(&self) -> bool {
        matches!(self, Self::Created(_))
    }
}

/// Which grants to list. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// Any of these states; empty means any state.
    pub states: Vec<GrantState>,
    /// Grants naming this user (email, case-insensitive, or remote id).
    pub user: Option<String>,
    /// Grants naming this resource (name, case-insensitive, or remote id).
    pub resource: Option<String>,
    pub kind: Option<GrantKind>,
    pub limit: Option<u32>,
    /// Only grants whose id sorts before this one: the next page after a page ending there.
    /// Ids grow with time, so rows inserted meanwhile never shift the pages that follow.
    pub before: Option<GrantId>,
}

/// A grant row packed by SQLite into one JSON array, in the order of [`GrantRecord`].
///
/// One value per row instead of fourteen: sqlx copies every column value out of SQLite
/// separately, and at start-up (every open grant at once) that copying dominated the load.
/// A macro so that it can be `concat!`ed into static SQL.
macro_rules! select_grants {
    () => {
        "SELECT json_array(g.id, g.kind, g.spec, g.requester, g.reason, g.created_at, \
         g.starts_at, g.expires_at, g.state, g.revoked_at, g.revoke_reason, g.attempts, \
         g.next_attempt_at, g.last_error) FROM grants g "
    };
}

/// id, kind, spec, requester, reason, created_at, starts_at, expires_at, state, revoked_at,
/// revoke_reason, attempts, next_attempt_at, last_error.
type GrantRecord = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

fn corrupt(column: &'static str, value: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        step: "reading a grant",
        column,
        value: value.into(),
        reason: reason.to_string(),
    }
}

pub(crate) fn grant_from_json(packed: &str) -> Result<Grant, StoreError> {
    let record: GrantRecord =
        serde_json::from_str(packed).map_err(|e| corrupt("grants", packed, e))?;
    let (
        id,
        kind,
        spec,
        requester,
        reason,
        created_at,
        starts_at,
        expires_at,
        state,
        revoked_at,
        revoke_reason,
        attempts,
        next_attempt_at,
        last_error,
    ) = record;
    let id: GrantId = id
        .parse()
        .map_err(|e| corrupt("grants.id", id.clone(), e))?;
    let spec: GrantSpec = serde_json::from_str(&spec)
        .map_err(|e| corrupt("grants.spec", format!("(grant {id}) {spec}"), e))?;
    // The kind column exists for filtering; the spec is authoritative and they must agree.
    if kind != spec.kind().as_str() {
        return Err(corrupt(
            "grants.kind",
            format!("(grant {id}) {kind}"),
            format!("the spec is of kind {}", spec.kind()),
        ));
    }
    let state: GrantState = state
        .parse()
        .map_err(|e: String| corrupt("grants.state", format!("(grant {id}) {state}"), e))?;
    let attempts = u32::try_from(attempts)
        .map_err(|e| corrupt("grants.attempts", format!("(grant {id}) {attempts}"), e))?;
    Ok(Grant {
        id,
        spec,
        requester,
        reason,
        created_at: parse_ts("grants.created_at", &created_at)?,
        starts_at: parse_ts("grants.starts_at", &starts_at)?,
        expires_at: parse_ts("grants.expires_at", &expires_at)?,
        state,
        revoked_at: parse_opt_ts("grants.revoked_at", revoked_at)?,
        revoke_reason,
        retry: RetryState {
            attempts,
            next_attempt_at: parse_opt_ts("grants.next_attempt_at", next_attempt_at)?,
            last_error,
        },
    })
}

/// The principals a grant names, with the role each plays, for `grant_principals`.
pub(crate) fn principals(spec: &GrantSpec) -> Vec<(&'static str, &Principal)> {
    let mut out: Vec<(&'static str, &Principal)> = Vec::new();
    out.extend(spec.users().iter().map(|p| ("user", p)));
    out.extend(spec.resources().iter().map(|p| ("resource", p)));
    match spec {
        GrantSpec::GroupMembership { group, .. } | GrantSpec::GroupAccess { group, .. } => {
            out.push(("group", group));
        }
        GrantSpec::ServiceAccess {
            service_account, ..
        }
        | GrantSpec::ServiceKey { service_account } => {
            out.push(("service-account", service_account));
        }
        GrantSpec::EphemeralGroup { .. } => {}
    }
    out
}

/// The `created` history detail: who receives access (subjects), to what (targets), and why.
/// `rule` is what authorized the grant: `admin`, `policy:<name>` or `list:<name>`.
pub(crate) fn created_detail(grant: &Grant, rule: Option<&str>) -> serde_json::Value {
    let (subjects, targets): (Vec<&Principal>, Vec<&Principal>) = match &grant.spec {
        GrantSpec::EphemeralGroup { users, resources } => {
            (users.iter().collect(), resources.iter().collect())
        }
        GrantSpec::GroupMembership { group, users } => (users.iter().collect(), vec![group]),
        GrantSpec::GroupAccess { group, resources } => (vec![group], resources.iter().collect()),
        GrantSpec::ServiceAccess {
            service_account,
            resources,
        } => (vec![service_account], resources.iter().collect()),
        GrantSpec::ServiceKey { service_account } => (vec![service_account], Vec::new()),
    };
    json!({
        "kind": grant.kind().as_str(),
        "subjects": subjects,
        "targets": targets,
        "reason": grant.reason,
        "starts_at": format_ts(grant.starts_at),
        "expires_at": format_ts(grant.expires_at),
        "rule": rule,
    })
}

async fn fetch_grant(conn: &mut SqliteConnection, id: &str) -> Result<Option<Grant>, StoreError> {
    sqlx::query_scalar::<_, String>(concat!(select_grants!(), "WHERE g.id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .step("reading a grant")?
        .as_deref()
        .map(grant_from_json)
        .transpose()
}

/// How inserting one grant inside a shared transaction failed.
pub(crate) enum ItemError {
    /// Refused before anything of this item was written; the transaction is intact.
    Refused(StoreError),
    /// Anything else: the transaction may hold part of the item (or SQLite may have rolled
    /// it back on its own, as it does on I/O errors), so it must be abandoned.
    Failed(StoreError),
}

impl ItemError {
    pub(crate) fn into_inner(self) -> StoreError {
        match self {
            Self::Refused(e) | Self::Failed(e) => e,
        }
    }
}

/// A constraint violation aborts only the statement that caused it and leaves the
/// transaction usable; other errors (I/O, a full disk) may end the whole transaction.
pub(crate) fn is_constraint_violation(e: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    matches!(
        e.as_database_error().map(|d| d.kind()),
        Some(
            ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::NotNullViolation
                | ErrorKind::CheckViolation
        )
    )
}

/// Inserts one grant inside the caller's write transaction.
///
/// The grant's row is the first write, so a grant refused by a constraint (a duplicate id)
/// leaves nothing behind and the other grants of the transaction can still commit; no
/// savepoint per grant is needed.
pub(crate) async fn insert_one(
    conn: &mut SqliteConnection,
    head: &mut ChainHead,
    grant: &Grant,
    idempotency: Option<&Idempotency>,
    rule: Option<&str>,
) -> Result<Inserted, ItemError> {
    if let Some(idem) = idempotency {
        let previous: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT id, request_hash FROM grants WHERE idempotency_key = ?")
                .bind(&idem.key)
                .fetch_optional(&mut *conn)
                .await
                .step("looking up the idempotency key")
                .map_err(ItemError::Failed)?;
        if let Some((id, hash)) = previous {
            if hash.as_deref() != Some(idem.request_hash.as_str()) {
                return Err(ItemError::Refused(StoreError::IdempotencyConflict {
                    key: idem.shown_key().to_owned(),
                }));
            }
            let existing = fetch_grant(conn, &id)
                .await
                .map_err(ItemError::Failed)?
                .ok_or_else(|| {
                    ItemError::Failed(StoreError::NotFound {
                        step: "reading the grant of an idempotency key",
                        what: "grant",
                        key: id,
                    })
                })?;
            return Ok(Inserted::Existing(existing));
        }
    }

    let id = grant.id.to_string();
    let spec = serde_json::to_string(&grant.spec)
        .step("encoding the grant's spec")
        .map_err(ItemError::Refused)?;
    let principals: Vec<[&str; 3]> = principals(&grant.spec)
        .into_iter()
        .map(|(role, p)| [role, p.id.as_str(), p.name.as_str()])
        .collect();
    let principals = serde_json::to_string(&principals)
        .step("encoding the grant's principals")
        .map_err(ItemError::Refused)?;

    sqlx::query(
        "INSERT INTO grants (id, kind, spec, requester, reason, created_at, starts_at, expires_at, \
         state, revoked_at, revoke_reason, attempts, next_attempt_at, last_error, \
         idempotency_key, request_hash, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(grant.kind().as_str())
    .bind(&spec)
    .bind(&grant.requester)
    .bind(&grant.reason)
    .bind(format_ts(grant.created_at))
    .bind(format_ts(grant.starts_at))
    .bind(format_ts(grant.expires_at))
    .bind(grant.state.as_str())
    .bind(grant.revoked_at.map(format_ts))
    .bind(&grant.revoke_reason)
    .bind(i64::from(grant.retry.attempts))
    .bind(grant.retry.next_attempt_at.map(format_ts))
    .bind(&grant.retry.last_error)
    .bind(idempotency.map(|i| i.key.as_str()))
    .bind(idempotency.map(|i| i.request_hash.as_str()))
    .bind(format_ts(Utc::now()))
    .execute(&mut *conn)
    .await
    .map_err(|source| {
        let refused = is_constraint_violation(&source);
        let e = StoreError::Db {
            step: "inserting the grant",
            source,
        };
        if refused {
            ItemError::Refused(e)
        } else {
            ItemError::Failed(e)
        }
    })?;

    // One statement for all principals. A spec may name the same principal twice; one row is
    // enough for filtering, hence OR IGNORE.
    sqlx::query(
        "INSERT OR IGNORE INTO grant_principals (grant_id, role, remote_id, name) \
         SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
         json_extract(value, '$[2]') FROM json_each(?)",
    )
    .bind(&id)
    .bind(&principals)
    .execute(&mut *conn)
    .await
    .step("inserting the grant's principals")
    .map_err(ItemError::Failed)?;

    head.append(
        conn,
        &NewHistory {
            at: grant.created_at,
            grant_id: Some(grant.id),
            actor: grant.requester.clone(),
            event: HistoryEvent::Created.as_str().to_owned(),
            detail: created_detail(grant, rule),
        },
    )
    .await
    .map_err(ItemError::Failed)?;
    Ok(Inserted::Created(grant.clone()))
}

impl SqliteStore {
    /// Stores a new grant, its principals and its `created` history row in one transaction.
    ///
    /// With an idempotency key seen before: the same request hash gives back the stored grant
    /// ([`Inserted::Existing`]), another hash is [`StoreError::IdempotencyConflict`].
    pub async fn insert_grant(
        &self,
        grant: &Grant,
        idempotency: Option<Idempotency>,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.begin_write("starting to insert a grant").await?;
        let mut head = ChainHead::read(&mut tx).await?;
        let inserted = insert_one(&mut tx, &mut head, grant, idempotency.as_ref(), None)
            .await
            .map_err(ItemError::into_inner)?;
        tx.commit().await.step("committing a new grant")?;
        Ok(inserted)
    }

    /// Inserts many grants in one transaction, so that concurrent submissions share one
    /// durable commit. Each item gets its own result: an item refused on its own (an
    /// idempotency conflict, a duplicate id) writes nothing and the others are still stored.
    /// The outer error means nothing at all was stored.
    pub async fn insert_grants(
        &self,
        items: Vec<(Grant, Option<Idempotency>)>,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        self.insert_authorized(items.into_iter().map(|(g, i)| (g, i, None)).collect())
            .await
    }

    /// [`Store::insert_grants`], each grant's `created` row naming the rule that authorized it.
    pub async fn insert_authorized(
        &self,
        items: Vec<(Grant, Option<Idempotency>, Option<String>)>,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        let mut tx = self.begin_write("starting to insert grants").await?;
        let mut head = ChainHead::read(&mut tx).await?;
        let mut results = Vec::with_capacity(items.len());
        for (grant, idempotency, rule) in &items {
            match insert_one(
                &mut tx,
                &mut head,
                grant,
                idempotency.as_ref(),
                rule.as_deref(),
            )
            .await
            {
                Ok(inserted) => results.push(Ok(inserted)),
                Err(ItemError::Refused(e)) => results.push(Err(e)),
                // Dropping the transaction rolls back every item, as the caller is told.
                Err(ItemError::Failed(e)) => return Err(e),
            }
        }
        tx.commit().await.step("committing new grants")?;
        Ok(results)
    }

    /// One grant by id.
    pub async fn get_grant(&self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        let mut conn = self.readers.acquire().await.step("reading a grant")?;
        fetch_grant(&mut conn, &id.to_string()).await
    }

    /// Grants matching `filter`, newest first.
    pub async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
        let states = (!filter.states.is_empty())
            .then(|| {
                serde_json::to_string(&filter.states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            })
            .transpose()
            .step("encoding the state filter")?;
        let rows = sqlx::query_scalar::<_, String>(concat!(
            select_grants!(),
            "WHERE (?1 IS NULL OR g.state IN (SELECT value FROM json_each(?1))) \
               AND (?2 IS NULL OR g.kind = ?2) \
               AND (?3 IS NULL OR EXISTS (SELECT 1 FROM grant_principals p WHERE p.grant_id = g.id \
                    AND p.role = 'user' AND (p.name = ?3 COLLATE NOCASE OR p.remote_id = ?3))) \
               AND (?4 IS NULL OR EXISTS (SELECT 1 FROM grant_principals p WHERE p.grant_id = g.id \
                    AND p.role = 'resource' AND (p.name = ?4 COLLATE NOCASE OR p.remote_id = ?4))) \
               AND (?6 IS NULL OR g.id < ?6) \
             ORDER BY g.id DESC LIMIT ?5"
        ))
        .bind(states)
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.user.as_deref())
        .bind(filter.resource.as_deref())
        .bind(filter.limit.map_or(-1, i64::from))
        .bind(filter.before.map(|id| id.to_string()))
        .fetch_all(&self.readers)
        .await
        .step("listing grants")?;
        rows.iter().map(|r| grant_from_json(r)).collect()
    }

    /// Every grant not in a terminal state, oldest first: what the engine works on.
    pub async fn load_open_grants(&self) -> Result<Vec<Grant>, StoreError> {
        const STEP: &str = "loading open grants";
        // The same predicate as the partial index `grants_open`, so SQLite can use it.
        let mut rows = sqlx::query_scalar::<_, String>(concat!(
            select_grants!(),
            "WHERE g.state NOT IN ('expired', 'revoked', 'failed') ORDER BY g.id"
        ))
        .fetch(&self.readers);
        // Streamed, so that decoding here overlaps with SQLite producing the next rows.
        let mut grants = Vec::new();
        while let Some(row) = rows.try_next().await.step(STEP)? {
            grants.push(grant_from_json(&row)?);
        }
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_match_the_open_predicate() {
        // load_open_grants and the grants_open index spell the terminal states out in SQL.
        let terminal: Vec<&str> = GrantState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(terminal, ["expired", "revoked", "failed"]);
    }
}
