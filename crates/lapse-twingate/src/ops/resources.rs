//! Resources: lookup by name, a resource with every access edge, and the access mutations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Connection, FilterPageVars, IdNode, Mutation, NestedPageVars, ObjectVars, Operation, Payload,
    Query,
};

#[derive(Debug, Deserialize)]
pub(crate) struct NamedNode {
    pub id: String,
    pub name: String,
}

pub(crate) const RESOURCES_BY_NAME: &str =
    "query ResourcesByName($value: String!, $first: Int!, $after: String) {
  resources(filter: {name: {eq: $value}}, first: $first, after: $after) {
    edges { node { id name } }
    pageInfo { hasNextPage endCursor }
  }
}";

#[derive(Deserialize)]
pub(crate) struct ResourcesData {
    pub resources: Connection<NamedNode>,
}

pub(crate) struct ResourcesByName;
impl Operation for ResourcesByName {
    const NAME: &'static str = "ResourcesByName";
    const DOCUMENT: &'static str = RESOURCES_BY_NAME;
    type Variables = FilterPageVars;
    type Data = ResourcesData;
}
impl Query for ResourcesByName {}

/// Who an access edge grants to; kinds lapse does not manage are kept but ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "__typename")]
pub(crate) enum PrincipalNode {
    Group {
        id: String,
    },
    ServiceAccount {
        id: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessEdgeNode {
    pub node: PrincipalNode,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The access connection keeps the edge (not only the node): the expiry lives on the edge.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessConnection {
    pub edges: Vec<AccessEdgeNode>,
    pub page_info: super::PageInfo,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResourceNode {
    pub id: String,
    pub name: String,
    pub access: AccessConnection,
}

pub(crate) const RESOURCE: &str = "query Resource($id: ID!, $first: Int!) {
  resource(id: $id) {
    id name
    access(first: $first) {
      edges { node { __typename ... on Group { id } ... on ServiceAccount { id } } expiresAt }
      pageInfo { hasNextPage endCursor }
    }
  }
}";

#[derive(Deserialize)]
pub(crate) struct ResourceData {
    pub resource: Option<ResourceNode>,
}

pub(crate) struct Resource;
impl Operation for Resource {
    const NAME: &'static str = "Resource";
    const DOCUMENT: &'static str = RESOURCE;
    type Variables = ObjectVars;
    type Data = ResourceData;
}
impl Query for Resource {}

pub(crate) const RESOURCE_ACCESS_PAGE: &str =
    "query ResourceAccessPage($id: ID!, $first: Int!, $after: String) {
  resource(id: $id) {
    access(first: $first, after: $after) {
      edges { node { __typename ... on Group { id } ... on ServiceAccount { id } } expiresAt }
      pageInfo { hasNextPage endCursor }
    }
  }
}";

#[derive(Deserialize)]
pub(crate) struct ResourceAccess {
    pub access: AccessConnection,
}

#[derive(Deserialize)]
pub(crate) struct ResourceAccessPageData {
    pub resource: Option<ResourceAccess>,
}

pub(crate) struct ResourceAccessPage;
impl Operation for ResourceAccessPage {
    const NAME: &'static str = "ResourceAccessPage";
    const DOCUMENT: &'static str = RESOURCE_ACCESS_PAGE;
    type Variables = NestedPageVars;
    type Data = ResourceAccessPageData;
}
impl Query for ResourceAccessPage {}

pub(crate) const RESOURCE_ACCESS_ADD: &str =
    "mutation ResourceAccessAdd($resourceId: ID!, $access: [AccessInput!]!) {
  resourceAccessAdd(resourceId: $resourceId, access: $access) { ok error entity { id } }
}";

/// `expiresAt` is always sent, `null` included: the edge is an upsert and must end up exactly as
/// asked. It is sent with microseconds at most, the precision Twingate prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessInput {
    pub principal_id: String,
    #[serde(serialize_with = "micros")]
    pub expires_at: Option<DateTime<Utc>>,
    pub access_policy: AccessPolicyInput,
}

/// `{mode: MANUAL, durationSeconds: null}` is what Terraform sends for a group's edge, so a
/// resource whose default is auto-lock or access-request does not change what lapse grants.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AccessPolicyInput {
    pub mode: &'static str,
    pub duration_seconds: Option<u32>,
}

impl AccessPolicyInput {
    pub const MANUAL: AccessPolicyInput = AccessPolicyInput {
        mode: "MANUAL",
        duration_seconds: None,
    };
}

fn micros<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceAccessAddVars {
    pub resource_id: String,
    pub access: Vec<AccessInput>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceAccessAddData {
    pub resource_access_add: Option<Payload<IdNode>>,
}

pub(crate) struct ResourceAccessAdd;
impl Operation for ResourceAccessAdd {
    const NAME: &'static str = "ResourceAccessAdd";
    const DOCUMENT: &'static str = RESOURCE_ACCESS_ADD;
    type Variables = ResourceAccessAddVars;
    type Data = ResourceAccessAddData;
}
impl Mutation for ResourceAccessAdd {}

pub(crate) const RESOURCE_ACCESS_REMOVE: &str =
    "mutation ResourceAccessRemove($resourceId: ID!, $principalIds: [ID!]!) {
  resourceAccessRemove(resourceId: $resourceId, principalIds: $principalIds) { ok error entity { id } }
}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceAccessRemoveVars {
    pub resource_id: String,
    pub principal_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResourceAccessRemoveData {
    pub resource_access_remove: Option<Payload<IdNode>>,
}

pub(crate) struct ResourceAccessRemove;
impl Operation for ResourceAccessRemove {
    const NAME: &'static str = "ResourceAccessRemove";
    const DOCUMENT: &'static str = RESOURCE_ACCESS_REMOVE;
    type Variables = ResourceAccessRemoveVars;
    type Data = ResourceAccessRemoveData;
}
impl Mutation for ResourceAccessRemove {}
