//! A serialisable picture of the whole state, for tests to assert on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids;
use crate::model::*;
use crate::store::Store;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StateSnapshot {
    pub now: DateTime<Utc>,
    pub users: Vec<UserSnapshot>,
    pub groups: Vec<GroupSnapshot>,
    pub resources: Vec<ResourceSnapshot>,
    pub service_accounts: Vec<ServiceAccountSnapshot>,
    pub api_keys: Vec<ApiKeySnapshot>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserSnapshot {
    pub id: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub role: UserRole,
    pub state: UserState,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupSnapshot {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub group_type: GroupType,
    pub is_active: bool,
    pub user_ids: Vec<String>,
    pub resource_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResourceSnapshot {
    pub id: String,
    pub name: String,
    pub address: String,
    pub is_active: bool,
    pub access: Vec<AccessSnapshot>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessSnapshot {
    pub principal_id: String,
    pub principal_type: PrincipalType,
    pub expires_at: Option<DateTime<Utc>>,
    pub security_policy_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceAccountSnapshot {
    pub id: String,
    pub name: String,
    pub resource_ids: Vec<String>,
    pub keys: Vec<KeySnapshot>,
    pub created_at: DateTime<Utc>,
}

/// A key as an auditor sees it: never its token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KeySnapshot {
    pub id: String,
    pub name: String,
    pub status: ServiceAccountKeyStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An API key's name and level: never its token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ApiKeySnapshot {
    pub name: String,
    pub permission: Permission,
}

pub(crate) fn principal_id(p: &Principal) -> (String, PrincipalType) {
    match p {
        Principal::Group(pk) => (ids::encode(ids::GROUP, pk), PrincipalType::Group),
        Principal::ServiceAccount(id) => (
            ids::encode(ids::SERVICE_ACCOUNT, id),
            PrincipalType::ServiceAccount,
        ),
    }
}

impl StateSnapshot {
    pub(crate) fn of(store: &Store, now: DateTime<Utc>) -> StateSnapshot {
        let resource_ids = |p: &Principal| {
            store
                .resources_of(p)
                .into_iter()
                .map(|pk| ids::encode(ids::RESOURCE, pk))
                .collect()
        };
        StateSnapshot {
            now,
            users: store
                .users
                .values()
                .map(|u| UserSnapshot {
                    id: ids::encode(ids::USER, u.pk),
                    email: u.email.clone(),
                    first_name: u.first_name.clone(),
                    last_name: u.last_name.clone(),
                    role: u.role,
                    state: u.state,
                    created_at: u.created_at,
                })
                .collect(),
            groups: store
                .groups
                .values()
                .map(|g| GroupSnapshot {
                    id: ids::encode(ids::GROUP, g.pk),
                    name: g.name.clone(),
                    group_type: g.group_type,
                    is_active: g.is_active,
                    user_ids: g.users.iter().map(|u| ids::encode(ids::USER, u)).collect(),
                    resource_ids: resource_ids(&Principal::Group(g.pk)),
                    created_at: g.created_at,
                    updated_at: g.updated_at,
                })
                .collect(),
            resources: store
                .resources
                .values()
                .map(|r| ResourceSnapshot {
                    id: ids::encode(ids::RESOURCE, r.pk),
                    name: r.name.clone(),
                    address: r.address.clone(),
                    is_active: r.is_active,
                    access: r
                        .access
                        .iter()
                        .map(|e| {
                            let (principal_id, principal_type) = principal_id(&e.principal);
                            AccessSnapshot {
                                principal_id,
                                principal_type,
                                expires_at: e.expires_at,
                                security_policy_id: e
                                    .security_policy
                                    .map(|p| ids::encode(ids::SECURITY_POLICY, p)),
                            }
                        })
                        .collect(),
                })
                .collect(),
            service_accounts: store
                .service_accounts
                .iter()
                .map(|s| ServiceAccountSnapshot {
                    id: ids::encode(ids::SERVICE_ACCOUNT, &s.id),
                    name: s.name.clone(),
                    resource_ids: resource_ids(&Principal::ServiceAccount(s.id.clone())),
                    keys: store
                        .keys
                        .iter()
                        .filter(|k| k.service_account == s.id)
                        .map(|k| KeySnapshot {
                            id: ids::encode(ids::SERVICE_ACCOUNT_KEY, &k.id),
                            name: k.name.clone(),
                            status: k.status(now),
                            expires_at: k.expires_at,
                            revoked_at: k.revoked_at,
                            created_at: k.created_at,
                        })
                        .collect(),
                    created_at: s.created_at,
                })
                .collect(),
            api_keys: store
                .api_keys
                .iter()
                .map(|k| ApiKeySnapshot {
                    name: k.name.clone(),
                    permission: k.permission,
                })
                .collect(),
        }
    }

    pub fn group_named(&self, name: &str) -> Option<&GroupSnapshot> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn resource_named(&self, name: &str) -> Option<&ResourceSnapshot> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn user_by_email(&self, email: &str) -> Option<&UserSnapshot> {
        self.users
            .iter()
            .find(|u| u.email.as_deref() == Some(email))
    }

    pub fn service_account_named(&self, name: &str) -> Option<&ServiceAccountSnapshot> {
        self.service_accounts.iter().find(|s| s.name == name)
    }
}
