//! The GraphQL operations lapse sends, each document next to its request and response types.

use lapse_core::provider::{ProviderError, ProviderResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub(crate) mod groups;
pub(crate) mod keys;
pub(crate) mod resources;
pub(crate) mod service_accounts;
pub(crate) mod users;

/// Every GraphQL document this client sends, by operation name: for checking them against
/// Twingate's schema (the journal of a stand-in shows the same names with the variables sent).
pub fn documents() -> Vec<(&'static str, &'static str)> {
    fn doc<O: Operation>() -> (&'static str, &'static str) {
        (O::NAME, O::DOCUMENT)
    }
    vec![
        doc::<groups::GroupsByName>(),
        doc::<groups::GroupsByPrefix>(),
        doc::<groups::Group>(),
        doc::<groups::GroupUsersPage>(),
        doc::<groups::GroupResourcesPage>(),
        doc::<groups::GroupCreate>(),
        doc::<groups::GroupUpdateUsers>(),
        doc::<groups::GroupDelete>(),
        doc::<keys::KeyCreate>(),
        doc::<keys::KeyRevoke>(),
        doc::<keys::KeyDelete>(),
        doc::<resources::ResourcesByName>(),
        doc::<resources::Resource>(),
        doc::<resources::ResourceAccessPage>(),
        doc::<resources::ResourceAccessAdd>(),
        doc::<resources::ResourceAccessRemove>(),
        doc::<service_accounts::ServiceAccountsByName>(),
        doc::<service_accounts::ServiceAccount>(),
        doc::<service_accounts::ServiceAccountResourcesPage>(),
        doc::<service_accounts::ServiceAccountKeysPage>(),
        doc::<service_accounts::ServiceAccountUpdateResources>(),
        doc::<users::UsersByEmail>(),
        doc::<users::User>(),
    ]
}

/// One GraphQL document with its variables and the shape of its `data`.
pub(crate) trait Operation {
    /// The `operationName`, also used in logs and error messages.
    const NAME: &'static str;
    const DOCUMENT: &'static str;
    type Variables: Serialize + Send + Sync;
    type Data: DeserializeOwned;
}

/// A read: safe to retry, spends the read budget.
pub(crate) trait Query: Operation {}

/// A write: never retried blindly, spends the write budget.
pub(crate) trait Mutation: Operation {}

/// The request body of every call.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GraphqlRequest<'a, V> {
    pub query: &'static str,
    pub variables: &'a V,
    pub operation_name: &'static str,
}

/// The response envelope; `errors` fails the call even when `data` is partly filled.
#[derive(Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub errors: Option<Vec<GraphqlError>>,
}

#[derive(Deserialize)]
pub(crate) struct GraphqlError {
    #[serde(default)]
    pub message: String,
}

/// A Relay connection: one page of a list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection<T> {
    pub edges: Vec<Edge<T>>,
    pub page_info: PageInfo,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Edge<T> {
    pub node: T,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageInfo {
    pub has_next_page: bool,
    #[serde(default)]
    pub end_cursor: Option<String>,
}

impl<T> Connection<T> {
    pub fn into_page(self) -> Page<T> {
        Page {
            items: self.edges.into_iter().map(|e| e.node).collect(),
            next: self
                .page_info
                .has_next_page
                .then_some(self.page_info.end_cursor),
        }
    }
}

/// One page, flattened: `next` is `Some` when there are more pages (with the cursor, if given).
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Option<String>>,
}

/// Just an ID: what lapse needs of most nested objects.
#[derive(Debug, Deserialize)]
pub(crate) struct IdNode {
    pub id: String,
}

/// Variables of the "next page of a nested list of one object" queries.
#[derive(Serialize)]
pub(crate) struct NestedPageVars {
    pub id: String,
    pub first: u32,
    pub after: Option<String>,
}

/// Variables of operations that take only an ID.
#[derive(Serialize)]
pub(crate) struct IdVars {
    pub id: String,
}

/// Variables of lookups by name or email, and of prefix listings.
#[derive(Serialize)]
pub(crate) struct FilterPageVars {
    pub value: String,
    pub first: u32,
    pub after: Option<String>,
}

/// Variables of an object read with its nested lists' first pages.
#[derive(Serialize)]
pub(crate) struct ObjectVars {
    pub id: String,
    pub first: u32,
}

/// Every mutation answers `{ok, error, entity}`; `error` is a plain string and `entity` is
/// nullable in the real schema.
#[derive(Deserialize)]
pub(crate) struct Payload<E> {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default = "Option::default")]
    pub entity: Option<E>,
}

/// The payload of deletions, which carry no entity.
#[derive(Deserialize)]
pub(crate) struct OkPayload {
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// `ok:false` is a refusal; "does not exist" in it means the object is already gone.
fn refusal(operation: &str, error: Option<String>) -> ProviderError {
    let message = error.unwrap_or_else(|| "no reason given".to_owned());
    let text = format!("{operation}: {message}");
    if message.contains("does not exist") {
        ProviderError::AlreadyGone(text)
    } else {
        ProviderError::Rejected(text)
    }
}

impl<E> Payload<E> {
    /// The entity of an accepted mutation, if the server sent one: `ok` decides success, and
    /// `ok: true` with `entity: null` is a success (Twingate's own clients never read it).
    pub fn accepted(self, operation: &str) -> ProviderResult<Option<E>> {
        if !self.ok {
            return Err(refusal(operation, self.error));
        }
        Ok(self.entity)
    }
}

impl OkPayload {
    pub fn check(self, operation: &str) -> ProviderResult<()> {
        if self.ok {
            Ok(())
        } else {
            Err(refusal(operation, self.error))
        }
    }
}

/// A mutation's payload field answered `null` without top-level errors.
pub(crate) fn missing_payload(operation: &str) -> ProviderError {
    ProviderError::Rejected(format!("{operation}: answered without a payload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn does_not_exist_is_already_gone_and_other_refusals_are_rejected() {
        let gone: Payload<IdNode> = serde_json::from_str(
            r#"{"ok":false,"error":"Group with id 'R3JvdXA6OTk5' does not exist","entity":null}"#,
        )
        .expect("payload");
        assert!(matches!(
            gone.accepted("groupDelete"),
            Err(ProviderError::AlreadyGone(_))
        ));

        let refused: OkPayload =
            serde_json::from_str(r#"{"ok":false,"error":"Only MANUAL groups can be changed"}"#)
                .expect("payload");
        assert!(
            matches!(refused.check("groupUpdate"), Err(ProviderError::Rejected(m)) if m.contains("MANUAL"))
        );
    }

    #[test]
    fn ok_without_entity_is_accepted() {
        let p: Payload<IdNode> =
            serde_json::from_str(r#"{"ok":true,"error":null,"entity":null}"#).expect("payload");
        assert!(matches!(p.accepted("groupUpdate"), Ok(None)));
    }

    #[test]
    fn last_page_without_cursor_has_no_next() {
        let c: Connection<IdNode> = serde_json::from_str(
            r#"{"edges":[{"node":{"id":"a"}}],"pageInfo":{"hasNextPage":false}}"#,
        )
        .expect("page");
        let page = c.into_page();
        assert_eq!(page.items.len(), 1);
        assert!(page.next.is_none());
    }
}
