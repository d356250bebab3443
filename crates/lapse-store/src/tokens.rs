//! API bearer tokens: created once in plaintext, stored only as a SHA-256 hash, looked up by hash.

use lapse_core::HistoryEvent;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Step, StoreError};
use crate::history::{ChainHead, NewHistory};
use crate::time::{format_ts, parse_opt_ts, parse_ts};
use crate::{Store, col};

/// Every token starts with this, so a leaked one is recognisable (and greppable by scanners).
const TOKEN_PREFIX: &str = "lapse_";
/// 40 alphanumerics: about 238 bits of randomness.
const TOKEN_RANDOM_LEN: usize = 40;
/// Token administration happens on the daemon host, against the database, not through the API.
const LOCAL_ADMIN: &str = "local-admin";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including approving and revoking others' grants.
    Admin,
    /// Submit and revoke grants.
    Operator,
    /// Read only.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Self::Admin, Self::Operator, Self::Auditor];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role `{s}`; expected one of: {}",
                    Self::ALL.map(|r| r.as_str()).join(", ")
                )
            })
    }
}

/// Who a valid token belongs to. The name is the actor recorded in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
}

/// A stored token, without anything that could be used to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn parse_role(step: &'static str, s: &str) -> Result<Role, StoreError> {
    s.parse().map_err(|reason| StoreError::Corrupt {
        step,
        column: "api_tokens.role",
        value: s.to_owned(),
        reason,
    })
}

impl Store {
    /// Creates a token and returns it. This is the only time the plaintext exists: only its
    /// hash is stored.
    pub async fn create_token(&self, name: &str, role: Role) -> Result<String, StoreError> {
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(TOKEN_RANDOM_LEN)
            .map(char::from)
            .collect();
        let token = format!("{TOKEN_PREFIX}{random}");
        let now = Utc::now();

        let mut tx = self.begin_write("starting to create a token").await?;
        // Checked inside the write transaction, so the answer holds until the insert.
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM api_tokens WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .step("checking the token name")?;
        if taken.is_some() {
            return Err(StoreError::TokenNameTaken {
                name: name.to_owned(),
            });
        }
        sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(token_hash(&token))
        .bind(format_ts(now))
        .execute(&mut *tx)
        .await
        .step("storing the token")?;
        let mut head = ChainHead::read(&mut tx).await?;
        head.append(
            &mut tx,
            &NewHistory {
                at: now,
                grant_id: None,
                actor: LOCAL_ADMIN.to_owned(),
                event: HistoryEvent::TokenCreated.as_str().to_owned(),
                detail: json!({ "name": name, "role": role.as_str() }),
            },
        )
        .await?;
        tx.commit().await.step("committing a new token")?;
        Ok(token)
    }

    /// Revokes the token named `name`; `false` if there is no such live token.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
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
                actor: LOCAL_ADMIN.to_owned(),
                event: HistoryEvent::TokenRevoked.as_str().to_owned(),
                detail: json!({ "name": name }),
            },
        )
        .await?;
        tx.commit().await.step("committing a token revocation")?;
        Ok(true)
    }

    /// Who `token` belongs to, if it is a live token of this database.
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, StoreError> {
        const STEP: &str = "authenticating a token";
        // Looked up by hash: the stored value reveals nothing, and comparing high-entropy
        // hashes leaks nothing useful through timing.
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT name, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(token_hash(token))
        .fetch_optional(&self.readers)
        .await
        .step(STEP)?;
        row.map(|(name, role)| {
            Ok(TokenInfo {
                name,
                role: parse_role(STEP, &role)?,
            })
        })
        .transpose()
    }

    /// Every token, oldest first, without its hash.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        const STEP: &str = "listing tokens";
        let rows =
            sqlx::query("SELECT name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
                .fetch_all(&self.readers)
                .await
                .step(STEP)?;
        rows.iter()
            .map(|row| {
                Ok(TokenRecord {
                    name: col(row, "name", STEP)?,
                    role: parse_role(STEP, &col::<String>(row, "role", STEP)?)?,
                    created_at: parse_ts(
                        "api_tokens.created_at",
                        &col::<String>(row, "created_at", STEP)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
