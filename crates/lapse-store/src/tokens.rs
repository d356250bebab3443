//! API bearer tokens: stored only as a SHA-256 hash, each with an expiry and bound to its creation event in the history.

use std::time::Duration;

use lapse_core::HistoryEvent;

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::error::{Step, StoreError};
use crate::history::{ChainHead, NewHistory};
use crate::time::{format_ts, parse_opt_ts, parse_ts};
use crate::{SqliteStore, col};

/// Every token starts with this, so a leaked one is recognisable (and greppable by scanners).
pub(crate) const TOKEN_PREFIX: &str = "lapse_";
/// 40 alphanumerics: about 238 bits of randomness.
pub(crate) const TOKEN_RANDOM_LEN: usize = 40;
/// Token administration on the daemon host, against the database, is recorded as this actor.
pub(crate) const LOCAL_ADMIN: &str = "local-admin";
/// Events that bind a token row to the history; see [`binding`].
pub(crate) const CREATED_EVENT: &str = "token-created";
const BOUND_EVENT: &str = "token-bound";
/// The mark set once tokens from before migration 0005 have been bound by hash.
const BOUND_MARK: &str = "tokens-bound-by-hash";
/// `last_used_at` is written at most this often per token, so authentication stays a read.
pub(crate) const LAST_USED_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The expiry [`Store::create_token`] gives, and that migration 0005 gave tokens made before it.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);

pub use lapse_core::Role;

/// Who a valid token belongs to, in [`Role`]'s terms ([`Store::authenticate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
}

/// A token that authenticated ([`Store::check_token`]). The name is the actor recorded in the
/// history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    pub name: String,
    pub role: lapse_core::Role,
    /// The person the token speaks for (normalised), if bound to one.
    pub identity: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Why a bearer token was refused. None of these carries the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRefusal {
    #[error("no such token")]
    Unknown,
    #[error("token `{name}` was revoked at {at}")]
    Revoked { name: String, at: DateTime<Utc> },
    #[error("token `{name}` expired at {at}")]
    Expired { name: String, at: DateTime<Utc> },
    /// The row has no matching creation event in the history: it was inserted or changed
    /// by hand (its role, expiry or hash differ from what was recorded).
    #[error(
        "token `{name}` is not the token the history records: it was inserted or altered \
         outside lapse"
    )]
    Unrecorded { name: String },
}

/// A stored token, without anything that could be used to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: lapse_core::Role,
    pub identity: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token to create ([`Store::create_token_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Up to 128 characters, no control characters; the actor its holder is recorded as.
    pub name: String,
    pub role: lapse_core::Role,
    /// The person it speaks for; stored normalised (trimmed, lower-cased).
    pub identity: Option<String>,
    /// Must be after the creation time; the caller applies its default and maximum.
    pub expires_at: DateTime<Utc>,
    /// Who creates it, for the history.
    pub actor: String,
}

pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a token's creation event records to bind it to its row: the SHA-256 of the stored
/// hash. It names one row and reveals nothing of the token, nor lets a reader of the history
/// find the row's lookup key.
pub(crate) fn binding(stored_hash: &str) -> String {
    hex::encode(Sha256::digest(stored_hash.as_bytes()))
}

pub(crate) fn parse_role(step: &'static str, s: &str) -> Result<lapse_core::Role, StoreError> {
    s.parse()
        .map_err(|e: lapse_core::UnknownRole| StoreError::Corrupt {
            step,
            column: "api_tokens.role",
            value: s.to_owned(),
            reason: e.to_string(),
        })
}

/// Whether the history row `event`/`detail` records exactly this token row.
pub(crate) fn records(
    event: Option<&str>,
    detail: Option<&str>,
    name: &str,
    role: &str,
    expires_at: &str,
    stored_hash: &str,
) -> bool {
    if !matches!(event, Some(CREATED_EVENT | BOUND_EVENT)) {
        return false;
    }
    let Some(detail) = detail.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
    else {
        return false;
    };
    let field = |k: &str| detail.get(k).and_then(|v| v.as_str());
    field("name") == Some(name)
        && field("role") == Some(role)
        && field("expires_at") == Some(expires_at)
        && field("token_sha256") == Some(binding(stored_hash).as_str())
}

impl SqliteStore {
    /// Creates a token with the default lifetime ([`DEFAULT_TOKEN_LIFETIME`]), recorded as made
    /// by `local-admin`, and returns it. See [`Store::create_token_with`].
    pub async fn create_token(&self, name: &str, role: Role) -> Result<String, StoreError> {
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

    /// Creates a token and returns it. This is the only time the plaintext exists: only its
    /// hash is stored. The row and its `token-created` history event commit together; the
    /// event carries the name, role, identity, expiry and the SHA-256 of the stored hash, which
    /// authentication requires to match the row.
    ///
    /// Refuses a name or identity that is blank, over 128 characters or holds control
    /// characters, an expiry not after `now`, and a name already used (revoked tokens keep
    /// their names).
    pub async fn create_token_with(
        &self,
        new: &NewToken,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        lapse_core::text::check_name("name", &new.name)?;
        if new.name.starts_with(lapse_core::text::OIDC_CALLER_PREFIX) {
            return Err(lapse_core::TextError {
                field: "name".into(),
                problem: lapse_core::text::TextProblem::Reserved {
                    prefix: lapse_core::text::OIDC_CALLER_PREFIX,
                },
            }
            .into());
        }
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
        // Checked inside the write transaction, so the answer holds until the insert.
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM api_tokens WHERE name = ?")
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await
            .step("checking the token name")?;
        if taken.is_some() {
            return Err(StoreError::TokenNameTaken {
                name: new.name.clone(),
            });
        }
        let mut head = ChainHead::read(&mut tx).await?;
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
             created_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
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

    /// Revokes the token named `name`, with a `token-revoked` history event by `actor`;
    /// `false` if there is no such live token.
    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write("starting to revoke a token").await?;
        let result = sqlx::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        )
        .bind(format_ts(now))
        .bind(name)
        .execute(&mut *tx)
        .await
        .step("revoking the token")?;
        if result.rows_affected() == 0 {
            return Ok(false);
        }
        let mut head = ChainHead::read(&mut tx).await?;
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

    /// Checks a bearer token at `now`: it must be stored, recorded by its creation event
    /// exactly as stored, not revoked and not expired, in that order. On success, notes the
    /// use (at most once a minute per token).
    ///
    /// The outer error is a store failure; the inner one says why the token is refused.
    pub async fn check_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<ValidToken, AuthRefusal>, StoreError> {
        const STEP: &str = "authenticating a token";
        let stored_hash = token_hash(token);
        // Looked up by hash: the stored value reveals nothing, and comparing high-entropy
        // hashes leaks nothing useful through timing.
        let Some(row) = sqlx::query(
            "SELECT t.id, t.name, t.role, t.identity, t.expires_at, t.revoked_at, \
             t.last_used_at, h.event, h.detail \
             FROM api_tokens t LEFT JOIN history h ON h.seq = t.created_seq \
             WHERE t.token_hash = ?",
        )
        .bind(&stored_hash)
        .fetch_optional(&self.readers)
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
            // Bookkeeping: a failure to note the use must not refuse a valid token.
            if let Err(e) = sqlx::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(format_ts(now))
                .bind(id)
                .execute(&self.writer)
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

    /// Who `token` belongs to, if [`Store::check_token`] accepts it now.
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        let Ok(valid) = self.check_token(token, Utc::now()).await? else {
            return Ok(None);
        };
        Ok(Some(TokenInfo {
            name: valid.name,
            role: valid.role,
        }))
    }

    /// Every token, oldest first, without its hash.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        const STEP: &str = "listing tokens";
        let rows = sqlx::query(
            "SELECT name, role, identity, created_at, last_used_at, expires_at, revoked_at \
             FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.readers)
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

    /// Once, after migration 0005: binds each token made before it to the history by hash,
    /// with a `token-bound` event. The migration pointed each such row at its `token-created`
    /// event by name, which has no hash; a row without one stays unbound and is refused.
    pub(crate) async fn bind_migrated_tokens(&self) -> Result<(), StoreError> {
        const STEP: &str = "binding tokens made before migration 0005";
        let mut tx = self.begin_write(STEP).await?;
        let done: Option<String> = sqlx::query_scalar("SELECT value FROM marks WHERE key = ?")
            .bind(BOUND_MARK)
            .fetch_optional(&mut *tx)
            .await
            .step(STEP)?;
        if done.is_some() {
            return tx.rollback().await.step(STEP);
        }
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.role, t.token_hash, t.expires_at, t.created_seq \
             FROM api_tokens t JOIN history h ON h.seq = t.created_seq \
             WHERE h.event = ? AND json_extract(h.detail, '$.name') = t.name \
               AND json_extract(h.detail, '$.token_sha256') IS NULL \
             ORDER BY t.id",
        )
        .bind(CREATED_EVENT)
        .fetch_all(&mut *tx)
        .await
        .step(STEP)?;
        let now = Utc::now();
        let mut head = ChainHead::read(&mut tx).await?;
        for row in &rows {
            let id: i64 = row.try_get("id").step(STEP)?;
            let hash: String = col(row, "token_hash", STEP)?;
            let seq = head
                .append(
                    &mut tx,
                    &NewHistory {
                        at: now,
                        grant_id: None,
                        actor: "lapse".to_owned(),
                        event: BOUND_EVENT.to_owned(),
                        detail: json!({
                            "name": col::<String>(row, "name", STEP)?,
                            "role": col::<String>(row, "role", STEP)?,
                            "expires_at": col::<String>(row, "expires_at", STEP)?,
                            "token_sha256": binding(&hash),
                            "created_seq": row.try_get::<i64, _>("created_seq").step(STEP)?,
                        }),
                    },
                )
                .await?;
            sqlx::query("UPDATE api_tokens SET created_seq = ? WHERE id = ?")
                .bind(seq)
                .bind(id)
                .execute(&mut *tx)
                .await
                .step(STEP)?;
        }
        sqlx::query("INSERT INTO marks (key, value) VALUES (?, ?)")
            .bind(BOUND_MARK)
            .bind(format_ts(now))
            .execute(&mut *tx)
            .await
            .step(STEP)?;
        tx.commit().await.step(STEP)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_recorded_only_by_its_own_event() {
        let hash = token_hash(concat!("lapse", "_x"));
        let detail = json!({
            "name": "ci", "role": "operator", "expires_at": "2030-01-01T00:00:00.000000Z",
            "token_sha256": binding(&hash),
        })
        .to_string();
        let ok = |event, name, role, hash: &str| {
            records(
                Some(event),
                Some(&detail),
                name,
                role,
                "2030-01-01T00:00:00.000000Z",
                hash,
            )
        };
        assert!(ok(CREATED_EVENT, "ci", "operator", &hash));
        assert!(ok(BOUND_EVENT, "ci", "operator", &hash));
        assert!(!ok("grant-created", "ci", "operator", &hash));
        assert!(!ok(CREATED_EVENT, "ci", "admin", &hash));
        assert!(!ok(CREATED_EVENT, "cd", "operator", &hash));
        assert!(!ok(
            CREATED_EVENT,
            "ci",
            "operator",
            &token_hash(concat!("lapse", "_y"))
        ));
        assert!(!records(None, None, "ci", "operator", "x", &hash));
    }
}
