//! The records the stand-in keeps and the enums it shares between seed files and the schema.

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserRole {
    Admin,
    Devops,
    Support,
    #[default]
    Member,
    AccessReviewer,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserState {
    #[default]
    Active,
    Pending,
    Disabled,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserType {
    #[default]
    Manual,
    Synced,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GroupType {
    #[default]
    Manual,
    Synced,
    System,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceAccountKeyStatus {
    Active,
    Revoked,
    Expired,
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessApprovalMode {
    Manual,
    Automatic,
}

/// How an access edge is used: plain access, access that locks when unused, or access that
/// must be requested first. Twingate's `AccessMode`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[graphql(name = "AccessMode")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessPolicyMode {
    Manual,
    AutoLock,
    AccessRequest,
}

/// What an API key may do; mirrors the three levels of Twingate's console.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    ReadOnly,
    ReadWrite,
    ReadWriteProvision,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrincipalType {
    Group,
    ServiceAccount,
}

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub pk: u64,
    /// Twingate's `User.email` is nullable (users synced without one).
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub role: UserRole,
    pub state: UserState,
    pub user_type: UserType,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub pk: u64,
    pub name: String,
    pub group_type: GroupType,
    pub is_active: bool,
    /// Member pks in the order they were added.
    pub users: Vec<u64>,
    pub security_policy: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Principal {
    Group(u64),
    ServiceAccount(String),
}

/// One access edge of a resource. Group access and service-account resources are both these
/// edges, as in Twingate, so `group.resources` and `resource.access` can never disagree.
#[derive(Clone, Debug)]
pub(crate) struct Edge {
    pub principal: Principal,
    pub expires_at: Option<DateTime<Utc>>,
    pub security_policy: Option<u64>,
    pub access_policy_mode: Option<AccessPolicyMode>,
    pub access_policy_duration: Option<i32>,
    pub approval_mode: Option<AccessApprovalMode>,
}

impl Edge {
    pub fn plain(principal: Principal) -> Edge {
        Edge {
            principal,
            expires_at: None,
            security_policy: None,
            access_policy_mode: None,
            access_policy_duration: None,
            approval_mode: None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub pk: u64,
    pub name: String,
    pub address: String,
    pub is_active: bool,
    /// The access mode an edge added without `accessPolicy` inherits (`None`: `MANUAL`).
    pub default_access_mode: Option<AccessPolicyMode>,
    pub access: Vec<Edge>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub id: String,
    pub service_account: String,
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Key {
    /// Revocation wins over expiry: a revoked key stays REVOKED whatever the clock says.
    pub fn status(&self, now: DateTime<Utc>) -> ServiceAccountKeyStatus {
        if self.revoked_at.is_some() {
            ServiceAccountKeyStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            ServiceAccountKeyStatus::Expired
        } else {
            ServiceAccountKeyStatus::Active
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SecurityPolicy {
    pub pk: u64,
    pub name: String,
}
