//! Out-of-band changes, as an administrator clicking in the console would make them.

use std::sync::Arc;

use async_graphql::MaybeUndefined;
use chrono::{DateTime, Utc};

use crate::error::SimError;
use crate::faults::ExpiryPrecision;
use crate::ids;
use crate::model::{GroupType, Principal};
use crate::shared::Shared;
use crate::store::{AccessChange, GroupChanges, Ref, ServiceAccountChanges};

/// Changes the state directly, bypassing the API (no key, no rate limit, no journal entry).
/// Unlike the API, it may change SYNCED and SYSTEM groups, as an identity provider sync would.
#[derive(Clone)]
pub struct Admin {
    pub(crate) shared: Arc<Shared>,
}

fn int(id: &str, kind: &str) -> Result<Ref<u64>, SimError> {
    let g =
        ids::decode(id).ok_or_else(|| SimError::Invalid(format!("'{id}' is not a global ID")))?;
    Ok(Ref {
        raw: id.to_string(),
        key: g.int_pk(kind),
    })
}

fn uuid(id: &str, kind: &str) -> Result<Ref<String>, SimError> {
    let g =
        ids::decode(id).ok_or_else(|| SimError::Invalid(format!("'{id}' is not a global ID")))?;
    Ok(Ref {
        raw: id.to_string(),
        key: g.uuid_pk(kind).map(str::to_string),
    })
}

fn ints<S: AsRef<str>>(ids: &[S], kind: &str) -> Result<Vec<Ref<u64>>, SimError> {
    ids.iter().map(|i| int(i.as_ref(), kind)).collect()
}

fn principal(id: &str) -> Result<Ref<Principal>, SimError> {
    let g =
        ids::decode(id).ok_or_else(|| SimError::Invalid(format!("'{id}' is not a global ID")))?;
    let key = g.int_pk(ids::GROUP).map(Principal::Group).or_else(|| {
        g.uuid_pk(ids::SERVICE_ACCOUNT)
            .map(|s| Principal::ServiceAccount(s.to_string()))
    });
    Ok(Ref {
        raw: id.to_string(),
        key,
    })
}

impl Admin {
    pub fn create_user(&self, email: &str, first: &str, last: &str) -> Result<String, SimError> {
        let pk = self
            .shared
            .with_store(|s, now| s.create_user(email, first, last, now))
            .map_err(SimError::Rejected)?;
        Ok(ids::encode(ids::USER, pk))
    }

    /// Creates `count` users named `{prefix}{n}@example.com`, for pagination and load tests.
    pub fn create_users(&self, count: usize, prefix: &str) -> Result<Vec<String>, SimError> {
        (0..count)
            .map(|n| self.create_user(&format!("{prefix}{n}@example.com"), prefix, &n.to_string()))
            .collect()
    }

    pub fn create_group(&self, name: &str, group_type: GroupType) -> Result<String, SimError> {
        let pk = self
            .shared
            .with_store(|s, now| s.create_group(name, group_type, &[], &[], None, now))
            .map_err(SimError::Rejected)?;
        Ok(ids::encode(ids::GROUP, pk))
    }

    /// Creates `count` MANUAL groups named `{prefix}{n}`.
    pub fn create_groups(&self, count: usize, prefix: &str) -> Result<Vec<String>, SimError> {
        (0..count)
            .map(|n| self.create_group(&format!("{prefix}{n}"), GroupType::Manual))
            .collect()
    }

    pub fn delete_group(&self, id: &str) -> Result<(), SimError> {
        let r = int(id, ids::GROUP)?;
        self.shared
            .with_store(|s, _| s.delete_group(&r, true))
            .map_err(SimError::Rejected)
    }

    pub fn add_group_users<S: AsRef<str>>(
        &self,
        group_id: &str,
        user_ids: &[S],
    ) -> Result<(), SimError> {
        self.update_group(
            group_id,
            GroupChanges {
                added_users: ints(user_ids, ids::USER)?,
                ..GroupChanges::default()
            },
        )
    }

    pub fn remove_group_users<S: AsRef<str>>(
        &self,
        group_id: &str,
        user_ids: &[S],
    ) -> Result<(), SimError> {
        self.update_group(
            group_id,
            GroupChanges {
                removed_users: ints(user_ids, ids::USER)?,
                ..GroupChanges::default()
            },
        )
    }

    pub fn rename_group(&self, group_id: &str, name: &str) -> Result<(), SimError> {
        self.update_group(
            group_id,
            GroupChanges {
                name: Some(name.to_string()),
                ..GroupChanges::default()
            },
        )
    }

    fn update_group(&self, group_id: &str, changes: GroupChanges) -> Result<(), SimError> {
        let r = int(group_id, ids::GROUP)?;
        self.shared
            .with_store(|s, now| s.update_group(&r, changes, true, now))
            .map(|_| ())
            .map_err(SimError::Rejected)
    }

    pub fn create_resource(&self, name: &str, address: &str) -> Result<String, SimError> {
        let pk = self
            .shared
            .with_store(|s, now| s.create_resource(name, address, now));
        Ok(ids::encode(ids::RESOURCE, pk))
    }

    /// Gives `principal_id` (a group or service account) access; an existing edge is overwritten
    /// and `None` means no expiry.
    pub fn add_resource_access(
        &self,
        resource_id: &str,
        principal_id: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), SimError> {
        let r = int(resource_id, ids::RESOURCE)?;
        let change = AccessChange {
            principal: principal(principal_id)?,
            security_policy: MaybeUndefined::Undefined,
            expires_at: expires_at.map_or(MaybeUndefined::Null, MaybeUndefined::Value),
            access_policy_mode: MaybeUndefined::Undefined,
            access_policy_duration: MaybeUndefined::Undefined,
            approval_mode: MaybeUndefined::Undefined,
        };
        self.shared
            .with_store(|s, now| {
                s.access_add(&r, vec![change], false, ExpiryPrecision::Micros, now)
            })
            .map(|_| ())
            .map_err(SimError::Rejected)
    }

    pub fn remove_resource_access(
        &self,
        resource_id: &str,
        principal_id: &str,
    ) -> Result<(), SimError> {
        let r = int(resource_id, ids::RESOURCE)?;
        let p = principal(principal_id)?;
        self.shared
            .with_store(|s, now| s.access_remove(&r, &[p], now))
            .map(|_| ())
            .map_err(SimError::Rejected)
    }

    pub fn create_service_account(&self, name: &str) -> Result<String, SimError> {
        let id = self
            .shared
            .with_store(|s, now| s.create_service_account(name, &[], now))
            .map_err(SimError::Rejected)?;
        Ok(ids::encode(ids::SERVICE_ACCOUNT, id))
    }

    pub fn add_service_account_resources<S: AsRef<str>>(
        &self,
        sa_id: &str,
        resource_ids: &[S],
    ) -> Result<(), SimError> {
        self.update_service_account(
            sa_id,
            ServiceAccountChanges {
                added_resources: ints(resource_ids, ids::RESOURCE)?,
                ..ServiceAccountChanges::default()
            },
        )
    }

    pub fn remove_service_account_resources<S: AsRef<str>>(
        &self,
        sa_id: &str,
        resource_ids: &[S],
    ) -> Result<(), SimError> {
        self.update_service_account(
            sa_id,
            ServiceAccountChanges {
                removed_resources: ints(resource_ids, ids::RESOURCE)?,
                ..ServiceAccountChanges::default()
            },
        )
    }

    fn update_service_account(
        &self,
        sa_id: &str,
        changes: ServiceAccountChanges,
    ) -> Result<(), SimError> {
        let r = uuid(sa_id, ids::SERVICE_ACCOUNT)?;
        self.shared
            .with_store(|s, now| s.update_service_account(&r, changes, now))
            .map(|_| ())
            .map_err(SimError::Rejected)
    }
}
