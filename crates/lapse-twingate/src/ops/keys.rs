//! Service-account keys: create (the token's only appearance), revoke and delete.

use chrono::{DateTime, Utc};
use lapse_core::provider::{KeyStatus, ProviderError, ProviderResult};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{IdNode, IdVars, Mutation, OkPayload, Operation, Payload};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyNode {
    pub id: String,
    pub name: String,
    pub status: KeyStatus,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

pub(crate) const SERVICE_ACCOUNT_KEY_CREATE: &str =
    "mutation ServiceAccountKeyCreate($serviceAccountId: ID!, $name: String, $expirationTime: Int!) {
  serviceAccountKeyCreate(serviceAccountId: $serviceAccountId, name: $name, expirationTime: $expirationTime) {
    ok error token entity { id name status expiresAt }
  }
}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyCreateVars {
    pub service_account_id: String,
    pub name: String,
    /// Whole days; 0 would mean "never expires", which lapse never sends.
    pub expiration_time: u16,
}

/// The token is held as a secret from the moment it is parsed.
#[derive(Deserialize)]
pub(crate) struct KeyCreatePayload {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub token: Option<SecretString>,
    #[serde(default)]
    pub entity: Option<KeyNode>,
}

impl KeyCreatePayload {
    /// The new key (when the server sent it) and its token.
    pub fn into_parts(self, operation: &str) -> ProviderResult<(Option<KeyNode>, SecretString)> {
        let token = self.token;
        let key = Payload {
            ok: self.ok,
            error: self.error,
            entity: self.entity,
        }
        .accepted(operation)?;
        match token {
            Some(token) => Ok((key, token)),
            // A key may exist that nobody can use: an unknown outcome, so the engine looks it
            // up by name and revokes it.
            None => Err(ProviderError::UnknownOutcome(format!(
                "{operation}: a key was created but its token was not returned"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyCreateData {
    pub service_account_key_create: Option<KeyCreatePayload>,
}

pub(crate) struct KeyCreate;
impl Operation for KeyCreate {
    const NAME: &'static str = "ServiceAccountKeyCreate";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT_KEY_CREATE;
    type Variables = KeyCreateVars;
    type Data = KeyCreateData;
}
impl Mutation for KeyCreate {}

pub(crate) const SERVICE_ACCOUNT_KEY_REVOKE: &str = "mutation ServiceAccountKeyRevoke($id: ID!) {
  serviceAccountKeyRevoke(id: $id) { ok error entity { id } }
}";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyRevokeData {
    pub service_account_key_revoke: Option<Payload<IdNode>>,
}

pub(crate) struct KeyRevoke;
impl Operation for KeyRevoke {
    const NAME: &'static str = "ServiceAccountKeyRevoke";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT_KEY_REVOKE;
    type Variables = IdVars;
    type Data = KeyRevokeData;
}
impl Mutation for KeyRevoke {}

pub(crate) const SERVICE_ACCOUNT_KEY_DELETE: &str = "mutation ServiceAccountKeyDelete($id: ID!) {
  serviceAccountKeyDelete(id: $id) { ok error }
}";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KeyDeleteData {
    pub service_account_key_delete: Option<OkPayload>,
}

pub(crate) struct KeyDelete;
impl Operation for KeyDelete {
    const NAME: &'static str = "ServiceAccountKeyDelete";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT_KEY_DELETE;
    type Variables = IdVars;
    type Data = KeyDeleteData;
}
impl Mutation for KeyDelete {}
