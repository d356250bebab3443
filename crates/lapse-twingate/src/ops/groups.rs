//! Groups: lookups by name and prefix with their members, and the group mutations.

use lapse_core::provider::GroupType;
use serde::{Deserialize, Serialize};

use super::{
    Connection, FilterPageVars, IdNode, IdVars, Mutation, NestedPageVars, ObjectVars, OkPayload,
    Operation, Payload, Query,
};

/// A group with the first page of each nested list.
macro_rules! group_fields {
    () => {
        "fragment GroupFields on Group {
  id name type isActive
  users(first: $first) { edges { node { id } } pageInfo { hasNextPage endCursor } }
  resources(first: $first) { edges { node { id } } pageInfo { hasNextPage endCursor } }
}"
    };
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupNode {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub group_type: GroupType,
    pub is_active: bool,
    pub users: Connection<IdNode>,
    pub resources: Connection<IdNode>,
}

#[derive(Deserialize)]
pub(crate) struct GroupsData {
    pub groups: Connection<GroupNode>,
}

pub(crate) const GROUPS_BY_NAME: &str = concat!(
    "query GroupsByName($value: String!, $first: Int!, $after: String) {
  groups(filter: {name: {eq: $value}}, first: $first, after: $after) {
    edges { node { ...GroupFields } }
    pageInfo { hasNextPage endCursor }
  }
}
",
    group_fields!()
);

pub(crate) struct GroupsByName;
impl Operation for GroupsByName {
    const NAME: &'static str = "GroupsByName";
    const DOCUMENT: &'static str = GROUPS_BY_NAME;
    type Variables = FilterPageVars;
    type Data = GroupsData;
}
impl Query for GroupsByName {}

pub(crate) const GROUPS_BY_PREFIX: &str = concat!(
    "query GroupsByPrefix($value: String!, $first: Int!, $after: String) {
  groups(filter: {name: {startsWith: $value}}, first: $first, after: $after) {
    edges { node { ...GroupFields } }
    pageInfo { hasNextPage endCursor }
  }
}
",
    group_fields!()
);

pub(crate) struct GroupsByPrefix;
impl Operation for GroupsByPrefix {
    const NAME: &'static str = "GroupsByPrefix";
    const DOCUMENT: &'static str = GROUPS_BY_PREFIX;
    type Variables = FilterPageVars;
    type Data = GroupsData;
}
impl Query for GroupsByPrefix {}

pub(crate) const GROUP: &str = concat!(
    "query Group($id: ID!, $first: Int!) {
  group(id: $id) { ...GroupFields }
}
",
    group_fields!()
);

#[derive(Deserialize)]
pub(crate) struct GroupData {
    pub group: Option<GroupNode>,
}

pub(crate) struct Group;
impl Operation for Group {
    const NAME: &'static str = "Group";
    const DOCUMENT: &'static str = GROUP;
    type Variables = ObjectVars;
    type Data = GroupData;
}
impl Query for Group {}

pub(crate) const GROUP_USERS_PAGE: &str =
    "query GroupUsersPage($id: ID!, $first: Int!, $after: String) {
  group(id: $id) {
    users(first: $first, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } }
  }
}";

#[derive(Deserialize)]
pub(crate) struct GroupUsers {
    pub users: Connection<IdNode>,
}

#[derive(Deserialize)]
pub(crate) struct GroupUsersData {
    pub group: Option<GroupUsers>,
}

pub(crate) struct GroupUsersPage;
impl Operation for GroupUsersPage {
    const NAME: &'static str = "GroupUsersPage";
    const DOCUMENT: &'static str = GROUP_USERS_PAGE;
    type Variables = NestedPageVars;
    type Data = GroupUsersData;
}
impl Query for GroupUsersPage {}

pub(crate) const GROUP_RESOURCES_PAGE: &str = "query GroupResourcesPage($id: ID!, $first: Int!, $after: String) {
  group(id: $id) {
    resources(first: $first, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } }
  }
}";

#[derive(Deserialize)]
pub(crate) struct GroupResources {
    pub resources: Connection<IdNode>,
}

#[derive(Deserialize)]
pub(crate) struct GroupResourcesData {
    pub group: Option<GroupResources>,
}

pub(crate) struct GroupResourcesPage;
impl Operation for GroupResourcesPage {
    const NAME: &'static str = "GroupResourcesPage";
    const DOCUMENT: &'static str = GROUP_RESOURCES_PAGE;
    type Variables = NestedPageVars;
    type Data = GroupResourcesData;
}
impl Query for GroupResourcesPage {}

pub(crate) const GROUP_CREATE: &str =
    "mutation GroupCreate($name: String!, $userIds: [ID!], $resourceIds: [ID!]) {
  groupCreate(name: $name, userIds: $userIds, resourceIds: $resourceIds) { ok error entity { id } }
}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupCreateVars {
    pub name: String,
    pub user_ids: Vec<String>,
    pub resource_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupCreateData {
    pub group_create: Option<Payload<IdNode>>,
}

pub(crate) struct GroupCreate;
impl Operation for GroupCreate {
    const NAME: &'static str = "GroupCreate";
    const DOCUMENT: &'static str = GROUP_CREATE;
    type Variables = GroupCreateVars;
    type Data = GroupCreateData;
}
impl Mutation for GroupCreate {}

/// Only the deltas: `userIds` would replace the whole membership, which lapse never does.
pub(crate) const GROUP_UPDATE_USERS: &str =
    "mutation GroupUpdateUsers($id: ID!, $addedUserIds: [ID!], $removedUserIds: [ID!]) {
  groupUpdate(id: $id, addedUserIds: $addedUserIds, removedUserIds: $removedUserIds) { ok error entity { id } }
}";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupUpdateUsersVars {
    pub id: String,
    pub added_user_ids: Vec<String>,
    pub removed_user_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupUpdateData {
    pub group_update: Option<Payload<IdNode>>,
}

pub(crate) struct GroupUpdateUsers;
impl Operation for GroupUpdateUsers {
    const NAME: &'static str = "GroupUpdateUsers";
    const DOCUMENT: &'static str = GROUP_UPDATE_USERS;
    type Variables = GroupUpdateUsersVars;
    type Data = GroupUpdateData;
}
impl Mutation for GroupUpdateUsers {}

pub(crate) const GROUP_DELETE: &str = "mutation GroupDelete($id: ID!) {
  groupDelete(id: $id) { ok error }
}";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupDeleteData {
    pub group_delete: Option<OkPayload>,
}

pub(crate) struct GroupDelete;
impl Operation for GroupDelete {
    const NAME: &'static str = "GroupDelete";
    const DOCUMENT: &'static str = GROUP_DELETE;
    type Variables = IdVars;
    type Data = GroupDeleteData;
}
impl Mutation for GroupDelete {}
