//! Grants on PostgreSQL: the same rows, encodings and refusals as the SQLite backend.

use std::collections::HashSet;

use chrono::Utc;
use futures::TryStreamExt;
use lapse_core::{Grant, GrantId, HistoryEvent};
use sqlx::PgConnection;

use super::PgStore;
use super::history::PgChainHead;
use crate::error::{Step, StoreError};
use crate::grants::{
    ItemError, created_detail, grant_from_json, is_constraint_violation, principals,
};
use crate::time::format_ts;
use crate::{GrantFilter, Idempotency, Inserted, NewHistory};

/// A grant row packed into the JSON array `grant_from_json` reads (the SQLite backend's form).
macro_rules! select_grants {
    () => {
        "SELECT json_build_array(g.id, g.kind, g.spec, g.requester, g.reason, g.created_at, \
         g.starts_at, g.expires_at, g.state, g.revoked_at, g.revoke_reason, g.attempts, \
         g.next_attempt_at, g.last_error)::text FROM grants g "
    };
}

pub(crate) async fn fetch_grant(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<Grant>, StoreError> {
    sqlx::query_scalar::<_, String>(concat!(select_grants!(), "WHERE g.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .step("reading a grant")?
        .as_deref()
        .map(grant_from_json)
        .transpose()
}

/// The ids among `grants` already stored, read inside the write transaction.
pub(crate) async fn taken_ids<'a>(
    conn: &mut PgConnection,
    grants: impl Iterator<Item = &'a Grant>,
) -> Result<HashSet<String>, StoreError> {
    let ids: Vec<String> = grants.map(|g| g.id.to_string()).collect();
    let taken: Vec<String> = sqlx::query_scalar("SELECT id FROM grants WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .step("looking for grant ids already stored")?;
    Ok(taken.into_iter().collect())
}

/// Inserts one grant inside the caller's write transaction. On PostgreSQL a failed statement
/// aborts the whole transaction, so a grant that will be refused for its id (one in `taken`)
/// is inserted under a savepoint; `taken` gains the id of every grant inserted.
pub(crate) async fn insert_one(
    conn: &mut PgConnection,
    head: &mut PgChainHead,
    grant: &Grant,
    idempotency: Option<&Idempotency>,
    rule: Option<&str>,
    taken: &mut HashSet<String>,
) -> Result<Inserted, ItemError> {
    if let Some(idem) = idempotency {
        let previous: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT id, request_hash FROM grants WHERE idempotency_key = $1")
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

    // The grant's row and its principals in one statement. A grant whose id is already stored
    // (known from `taken`, read under the write lock) goes through a savepoint instead, so
    // that its refusal (the database's own unique violation) leaves the transaction usable.
    const INSERT: &str = "INSERT INTO grants (id, kind, spec, requester, reason, created_at, \
         starts_at, expires_at, state, revoked_at, revoke_reason, attempts, next_attempt_at, \
         last_error, idempotency_key, request_hash, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
    let duplicate = taken.contains(&id);
    if duplicate {
        sqlx::query("SAVEPOINT grant_item")
            .execute(&mut *conn)
            .await
            .step("starting a grant")
            .map_err(ItemError::Failed)?;
    }
    let sql = if duplicate {
        INSERT.to_owned()
    } else {
        // A spec may name the same principal twice; one row is enough for filtering.
        format!(
            "WITH g AS ({INSERT} RETURNING id) INSERT INTO grant_principals \
             (grant_id, role, remote_id, name) \
             SELECT g.id, x->>0, x->>1, x->>2 FROM g, json_array_elements($18::json) AS x \
             ON CONFLICT DO NOTHING"
        )
    };
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        .bind(format_ts(Utc::now()));
    if !duplicate {
        query = query.bind(&principals);
    }
    if let Err(source) = query.execute(&mut *conn).await {
        let refused = is_constraint_violation(&source);
        let e = StoreError::Db {
            step: "inserting the grant",
            source,
        };
        if !(refused && duplicate) {
            return Err(ItemError::Failed(e));
        }
        sqlx::query("ROLLBACK TO SAVEPOINT grant_item")
            .execute(&mut *conn)
            .await
            .step("setting a refused grant aside")
            .map_err(ItemError::Failed)?;
        return Err(ItemError::Refused(e));
    }
    if duplicate {
        // The id was free after all (a row deleted in this transaction): go on as usual.
        sqlx::query("RELEASE SAVEPOINT grant_item")
            .execute(&mut *conn)
            .await
            .step("inserting the grant")
            .map_err(ItemError::Failed)?;
        sqlx::query(
            "INSERT INTO grant_principals (grant_id, role, remote_id, name) \
             SELECT $1, x->>0, x->>1, x->>2 FROM json_array_elements($2::json) AS x \
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&principals)
        .execute(&mut *conn)
        .await
        .step("inserting the grant's principals")
        .map_err(ItemError::Failed)?;
    }
    taken.insert(id);

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

impl PgStore {
    pub(crate) async fn insert_grant(
        &self,
        grant: &Grant,
        idempotency: Option<Idempotency>,
    ) -> Result<Inserted, StoreError> {
        let mut tx = self.begin_write("starting to insert a grant").await?;
        let mut head = PgChainHead::read(&mut tx).await?;
        let mut taken = taken_ids(&mut tx, std::iter::once(grant)).await?;
        let inserted = insert_one(
            &mut tx,
            &mut head,
            grant,
            idempotency.as_ref(),
            None,
            &mut taken,
        )
        .await
        .map_err(ItemError::into_inner)?;
        if inserted.is_created() {
            Self::announce(&mut tx, "grant").await?;
        }
        tx.commit().await.step("committing a new grant")?;
        Ok(inserted)
    }

    pub(crate) async fn insert_grants(
        &self,
        items: Vec<(Grant, Option<Idempotency>)>,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        self.insert_authorized(items.into_iter().map(|(g, i)| (g, i, None)).collect())
            .await
    }

    pub(crate) async fn insert_authorized(
        &self,
        items: Vec<(Grant, Option<Idempotency>, Option<String>)>,
    ) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
        let mut tx = self.begin_write("starting to insert grants").await?;
        let mut head = PgChainHead::read(&mut tx).await?;
        let mut taken = taken_ids(&mut tx, items.iter().map(|(g, _, _)| g)).await?;
        let mut results = Vec::with_capacity(items.len());
        for (grant, idempotency, rule) in &items {
            match insert_one(
                &mut tx,
                &mut head,
                grant,
                idempotency.as_ref(),
                rule.as_deref(),
                &mut taken,
            )
            .await
            {
                Ok(inserted) => results.push(Ok(inserted)),
                Err(ItemError::Refused(e)) => results.push(Err(e)),
                Err(ItemError::Failed(e)) => return Err(e),
            }
        }
        if results
            .iter()
            .any(|r| r.as_ref().is_ok_and(Inserted::is_created))
        {
            Self::announce(&mut tx, "grant").await?;
        }
        tx.commit().await.step("committing new grants")?;
        Ok(results)
    }

    pub(crate) async fn get_grant(&self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        let mut conn = self.pool.acquire().await.step("reading a grant")?;
        fetch_grant(&mut conn, &id.to_string()).await
    }

    pub(crate) async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
        let states = (!filter.states.is_empty()).then(|| {
            filter
                .states
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect::<Vec<_>>()
        });
        let rows = sqlx::query_scalar::<_, String>(concat!(
            select_grants!(),
            "WHERE ($1::text[] IS NULL OR g.state = ANY($1)) \
               AND ($2::text IS NULL OR g.kind = $2) \
               AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM grant_principals p WHERE p.grant_id = g.id \
                    AND p.role = 'user' AND (lower(p.name) = lower($3) OR p.remote_id = $3))) \
               AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM grant_principals p WHERE p.grant_id = g.id \
                    AND p.role = 'resource' AND (lower(p.name) = lower($4) OR p.remote_id = $4))) \
               AND ($6::text IS NULL OR g.id < $6) \
             ORDER BY g.id DESC LIMIT $5"
        ))
        .bind(states)
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.user.as_deref())
        .bind(filter.resource.as_deref())
        .bind(filter.limit.map(i64::from))
        .bind(filter.before.map(|id| id.to_string()))
        .fetch_all(&self.pool)
        .await
        .step("listing grants")?;
        rows.iter().map(|r| grant_from_json(r)).collect()
    }

    pub(crate) async fn load_open_grants(&self) -> Result<Vec<Grant>, StoreError> {
        const STEP: &str = "loading open grants";
        let mut rows = sqlx::query_scalar::<_, String>(concat!(
            select_grants!(),
            "WHERE g.state NOT IN ('expired', 'revoked', 'failed') ORDER BY g.id"
        ))
        .fetch(&self.pool);
        let mut grants = Vec::new();
        while let Some(row) = rows.try_next().await.step(STEP)? {
            grants.push(grant_from_json(&row)?);
        }
        Ok(grants)
    }
}
