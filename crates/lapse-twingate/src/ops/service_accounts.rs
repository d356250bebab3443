//! Service accounts: lookups with every resource and key, and the resource delta mutation.

use serde::{Deserialize, Serialize};

use super::keys::KeyNode;
use super::{
    Connection, FilterPageVars, IdNode, Mutation, NestedPageVars, ObjectVars, Operation, Payload,
    Query,
};

/// A service account with the first page of each nested list.
macro_rules! service_account_fields {
    () => {
        "fragment ServiceAccountFields on ServiceAccount {
  id name
  resources(first: $first) { edges { node { id } } pageInfo { hasNextPage endCursor } }
  keys(first: $first) { edges { node { id name status expiresAt } } pageInfo { hasNextPage endCursor } }
}"
    };
}

#[derive(Debug, Deserialize)]
pub(crate) struct ServiceAccountNode {
    pub id: String,
    pub name: String,
    pub resources: Connection<IdNode>,
    pub keys: Connection<KeyNode>,
}

pub(crate) const SERVICE_ACCOUNTS_BY_NAME: &str = concat!(
    "query ServiceAccountsByName($value: String!, $first: Int!, $after: String) {
  serviceAccounts(filter: {name: {eq: $value}}, first: $first, after: $after) {
    edges { node { ...ServiceAccountFields } }
    pageInfo { hasNextPage endCursor }
  }
}
",
    service_account_fields!()
);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountsData {
    pub service_accounts: Connection<ServiceAccountNode>,
}

pub(crate) struct ServiceAccountsByName;
impl Operation for ServiceAccountsByName {
    const NAME: &'static str = "ServiceAccountsByName";
    const DOCUMENT: &'static str = SERVICE_ACCOUNTS_BY_NAME;
    type Variables = FilterPageVars;
    type Data = ServiceAccountsData;
}
impl Query for ServiceAccountsByName {}

pub(crate) const SERVICE_ACCOUNT: &str = concat!(
    "query ServiceAccount($id: ID!, $first: Int!) {
  serviceAccount(id: $id) { ...ServiceAccountFields }
}
",
    service_account_fields!()
);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountData {
    pub service_account: Option<ServiceAccountNode>,
}

pub(crate) struct ServiceAccount;
impl Operation for ServiceAccount {
    const NAME: &'static str = "ServiceAccount";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT;
    type Variables = ObjectVars;
    type Data = ServiceAccountData;
}
impl Query for ServiceAccount {}

pub(crate) const SERVICE_ACCOUNT_RESOURCES_PAGE: &str =
    "query ServiceAccountResourcesPage($id: ID!, $first: Int!, $after: String) {
  serviceAccount(id: $id) {
    resources(first: $first, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } }
  }
}";

#[derive(Deserialize)]
pub(crate) struct ServiceAccountResources {
    pub resources: Connection<IdNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountResourcesData {
    pub service_account: Option<ServiceAccountResources>,
}

pub(crate) struct ServiceAccountResourcesPage;
impl Operation for ServiceAccountResourcesPage {
    const NAME: &'static str = "ServiceAccountResourcesPage";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT_RESOURCES_PAGE;
    type Variables = NestedPageVars;
    type Data = ServiceAccountResourcesData;
}
impl Query for ServiceAccountResourcesPage {}

pub(crate) const SERVICE_ACCOUNT_KEYS_PAGE: &str =
    "query ServiceAccountKeysPage($id: ID!, $first: Int!, $after: String) {
  serviceAccount(id: $id) {
    keys(first: $first, after: $after) { edges { node { id name status expiresAt } } pageInfo { hasNextPage endCursor } }
  }
}";

#[derive(Deserialize)]
pub(crate) struct ServiceAccountKeys {
    pub keys: Connection<KeyNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountKeysData {
    pub service_account: Option<ServiceAccountKeys>,
}

pub(crate) struct ServiceAccountKeysPage;
impl Operation for ServiceAccountKeysPage {
    const NAME: &'static str = "ServiceAccountKeysPage";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT_KEYS_PAGE;
    type Variables = NestedPageVars;
    type Data = ServiceAccountKeysData;
}
impl Query for ServiceAccountKeysPage {}

/// Only the deltas: `resourceIds` would replace the whole set, which lapse never does.
pub(crate) const SERVICE_ACCOUNT_UPDATE_RESOURCES: &str =
    "mutation ServiceAccountUpdateResources($id: ID!, $addedResourceIds: [ID!], $removedResourceIds: [ID!]) {
  serviceAccountUpdate(id: $id, addedResourceIds: $addedResourceIds, removedResourceIds: $removedResourceIds) {
    ok error entity { id }
  }
}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountUpdateResourcesVars {
    pub id: String,
    pub added_resource_ids: Vec<String>,
    pub removed_resource_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountUpdateData {
    pub service_account_update: Option<Payload<IdNode>>,
}

pub(crate) struct ServiceAccountUpdateResources;
impl Operation for ServiceAccountUpdateResources {
    const NAME: &'static str = "ServiceAccountUpdateResources";
    const DOCUMENT: &'static str = SERVICE_ACCOUNT_UPDATE_RESOURCES;
    type Variables = ServiceAccountUpdateResourcesVars;
    type Data = ServiceAccountUpdateData;
}
impl Mutation for ServiceAccountUpdateResources {}
