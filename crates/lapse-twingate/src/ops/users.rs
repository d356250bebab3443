//! User lookups: by email (how lapse resolves requesters) and by ID.

use serde::Deserialize;

use super::{Connection, FilterPageVars, IdVars, Operation, Query};

#[derive(Debug, Deserialize)]
pub(crate) struct UserNode {
    pub id: String,
    /// Nullable in Twingate: a user may have no email.
    #[serde(default)]
    pub email: Option<String>,
}

pub(crate) const USERS_BY_EMAIL: &str =
    "query UsersByEmail($value: String!, $first: Int!, $after: String) {
  users(filter: {email: {eq: $value}}, first: $first, after: $after) {
    edges { node { id email } }
    pageInfo { hasNextPage endCursor }
  }
}";

#[derive(Deserialize)]
pub(crate) struct UsersData {
    pub users: Connection<UserNode>,
}

pub(crate) struct UsersByEmail;
impl Operation for UsersByEmail {
    const NAME: &'static str = "UsersByEmail";
    const DOCUMENT: &'static str = USERS_BY_EMAIL;
    type Variables = FilterPageVars;
    type Data = UsersData;
}
impl Query for UsersByEmail {}

pub(crate) const USER: &str = "query User($id: ID!) {
  user(id: $id) { id email }
}";

#[derive(Deserialize)]
pub(crate) struct UserData {
    pub user: Option<UserNode>,
}

pub(crate) struct User;
impl Operation for User {
    const NAME: &'static str = "User";
    const DOCUMENT: &'static str = USER;
    type Variables = IdVars;
    type Data = UserData;
}
impl Query for User {}
