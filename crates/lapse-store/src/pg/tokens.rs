//! API tokens on PostgreSQL: the same hashing, binding to the history and refusals.

use chrono::{DateTime, Utc};
use lapse_core::{HistoryEvent, Role};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use sqlx::Row;

use super::history::PgChainHead;
use super::{PgStore, col};
use crate::error::{Step, StoreError};
use crate::time::{format_ts, parse_opt_ts, parse_ts};
use crate::tokens::{
    CREATED_EVENT, LAST_USED_GRANULARITY, LOCAL_ADMIN, TOKEN_PREFIX, TOKEN_RANDOM_LEN, binding,
    parse_role, records, token_hash,
};
use crate::{
    AuthRefusal, DEFAULT_TOKEN_LIFETIME, NewHistory, NewToken, TokenInfo, TokenRecord, ValidToken,
};

impl PgStore {
    pub(crate) async fn create_token(&self, name: &str, role: Role) -> Result<String, StoreError> {
        let now = Utc::now();
        let lifetime =
            chrono::TimeDelta::from_std(DEFAULT_TOKEN_LIFETIME).unwrap_or(chrono::TimeDelta::MAX);
        self.create_token_with(
            &NewToken {
                name: name.to_owned(),
                role,
                identity: None,
                expires_at: now + lifetime,
                actor: LOCAL_ADMIN.to_owned(),
            },
            now,
        )
        .await
    }

    pub(crate) async fn create_token_with(
        &self,
        new: &NewToken,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        lapse_core::text::check_name("name", &new.name)?;
        let identity = match new.identity.as_deref() {
            Some(i) => {
                lapse_core::text::check_name("identity", i)?;
                Some(lapse_core::access_list::normalize_identity(i))
            }
            None => None,
        };
        if new.expires_at <= now {
            return Err(StoreError::TokenExpiry {
                expires_at: format_ts(new.expires_at),
            });
        }
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(TOKEN_RANDOM_LEN)
            .map(char::from)
            .collect();
        let token = format!("{TOKEN_PREFIX}{random}");
        let hash = token_hash(&token);
        let expires_at = format_ts(new.expires_at);

        let mut tx = self.begin_write("starting to create a token").await?;
        let taken: Option<i32> = sqlx::query_scalar("SELECT 1 FROM api_tokens WHERE name = $1")
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await
            .step("checking the token name")?;
        if taken.is_some() {
            return Err(StoreError::TokenNameTaken {
                name: new.name.clone(),
            });
        }
        let mut head = PgChainHead::read(&mut tx).await?;
        let seq = head
            .append(
                &mut tx,
                &NewHistory {
                    at: now,
                    grant_id: None,
                    actor: new.actor.clone(),
                    event: CREATED_EVENT.to_owned(),
                    detail: json!({
                        "name": new.name,
                        "role": new.role.as_str(),
                        "identity": identity,
                        "expires_at": expires_at,
                        "token_sha256": binding(&hash),
                    }),
                },
            )
            .await?;
        sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, identity, created_at, expires_at, \
             created_seq) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&new.name)
        .bind(new.role.as_str())
        .bind(&hash)
        .bind(&identity)
        .bind(format_ts(now))
        .bind(&expires_at)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .step("storing the token")?;
        tx.commit().await.step("committing a new token")?;
        Ok(token)
    }

    pub(crate) async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write("starting to revoke a token").await?;
        let result = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(format_ts(now))
        .bind(name)
        .execute(&mut *tx)
        .await
        .step("revoking the token")?;
        if result.rows_affected() == 0 {
            return Ok(false);
        }
        let mut head = PgChainHead::read(&mut tx).await?;
        head.append(
            &mut tx,
            &NewHistory {
                at: now,
                grant_id: None,
                actor: actor.to_owned(),
                event: HistoryEvent::TokenRevoked.as_str().to_owned(),
                detail: json!({ "name": name }),
            },
        )
        .await?;
        tx.commit().await.step("committing a token revocation")?;
        Ok(true)
    }

    pub(crate) async fn check_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<ValidToken, AuthRefusal>, StoreError> {
        const STEP: &str = "authenticating a token";
        let stored_hash = token_hash(token);
        let Some(row) = sqlx::query(
            "SELECT t.id, t.name, t.role, t.identity, t.expires_at, t.revoked_at, \
             t.last_used_at, h.event, h.detail \
             FROM api_tokens t LEFT JOIN history h ON h.seq = t.created_seq \
             WHERE t.token_hash = $1",
        )
        .bind(&stored_hash)
        .fetch_optional(&self.pool)
        .await
        .step(STEP)?
        else {
            return Ok(Err(AuthRefusal::Unknown));
        };
        let name: String = col(&row, "name", STEP)?;
        let role_text: String = col(&row, "role", STEP)?;
        let expires_text: String = col(&row, "expires_at", STEP)?;
        let event: Option<String> = col(&row, "event", STEP)?;
        let detail: Option<String> = col(&row, "detail", STEP)?;
        if !records(
            event.as_deref(),
            detail.as_deref(),
            &name,
            &role_text,
            &expires_text,
            &stored_hash,
        ) {
            return Ok(Err(AuthRefusal::Unrecorded { name }));
        }
        if let Some(at) = parse_opt_ts("api_tokens.revoked_at", col(&row, "revoked_at", STEP)?)? {
            return Ok(Err(AuthRefusal::Revoked { name, at }));
        }
        let expires_at = parse_ts("api_tokens.expires_at", &expires_text)?;
        if expires_at <= now {
            return Ok(Err(AuthRefusal::Expired {
                name,
                at: expires_at,
            }));
        }
        let last_used = parse_opt_ts("api_tokens.last_used_at", col(&row, "last_used_at", STEP)?)?;
        if last_used.is_none_or(|t| now - t >= LAST_USED_GRANULARITY) {
            let id: i64 = row.try_get("id").step(STEP)?;
            // Bookkeeping outside the write lock: a failure to note the use must not refuse a
            // valid token, and it touches no row another write reads.
            if let Err(e) = sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(format_ts(now))
                .bind(id)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(token = %name, error = %e, "could not note a token's last use");
            }
        }
        Ok(Ok(ValidToken {
            name,
            role: parse_role(STEP, &role_text)?,
            identity: col(&row, "identity", STEP)?,
            expires_at,
        }))
    }

    pub(crate) async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        let Ok(valid) = self.check_token(token, Utc::now()).await? else {
            return Ok(None);
        };
        Ok(Some(TokenInfo {
            name: valid.name,
            role: valid.role,
        }))
    }

    pub(crate) async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        const STEP: &str = "listing tokens";
        let rows = sqlx::query(
            "SELECT name, role, identity, created_at, last_used_at, expires_at, revoked_at \
             FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .step(STEP)?;
        rows.iter()
            .map(|row| {
                Ok(TokenRecord {
                    name: col(row, "name", STEP)?,
                    role: parse_role(STEP, &col::<String>(row, "role", STEP)?)?,
                    identity: col(row, "identity", STEP)?,
                    created_at: parse_ts(
                        "api_tokens.created_at",
                        &col::<String>(row, "created_at", STEP)?,
                    )?,
                    last_used_at: parse_opt_ts(
                        "api_tokens.last_used_at",
                        col(row, "last_used_at", STEP)?,
                    )?,
                    expires_at: parse_ts(
                        "api_tokens.expires_at",
                        &col::<String>(row, "expires_at", STEP)?,
                    )?,
                    revoked_at: parse_opt_ts(
                        "api_tokens.revoked_at",
                        col(row, "revoked_at", STEP)?,
                    )?,
                })
            })
            .collect()
    }
}
