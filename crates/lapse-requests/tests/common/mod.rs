//! A directory fake for the flow's and submission's tests: a few users, groups, a resource and
//! a service account, read-only; it counts group lookups and can be made unreachable.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lapse_core::provider::{
    AccessToAdd, CreatedKey, GroupInfo, GroupType, NamedRef, ProviderResult, ResourceInfo,
    ServiceAccountInfo, UserRef, WriteTerms,
};
use lapse_core::{AccessProvider, ProviderError, RemoteId};

pub struct Directory {
    users: HashMap<String, RemoteId>,
    groups: Vec<GroupInfo>,
    /// `groups_by_name` calls so far.
    pub group_lookups: AtomicUsize,
    /// Every read fails as if Twingate could not be reached.
    pub down: AtomicBool,
}

fn group(id: &str, name: &str, group_type: GroupType) -> GroupInfo {
    GroupInfo {
        id: RemoteId::new(id),
        name: name.into(),
        group_type,
        is_active: true,
        users: Vec::new(),
        resources: Vec::new(),
    }
}

impl Directory {
    pub fn new() -> Self {
        let users = ["mia@x.io", "olga@x.io", "omar@x.io", "nico@x.io"]
            .into_iter()
            .enumerate()
            .map(|(i, e)| (e.to_owned(), RemoteId::new(format!("U{i}"))))
            .collect();
        Self {
            users,
            groups: vec![
                group("G1", "db-admins", GroupType::Manual),
                group("G2", "everyone", GroupType::System),
                group("G3", "lapse-01jabc", GroupType::Manual),
                group("G4", "twins", GroupType::Manual),
                group("G5", "twins", GroupType::Manual),
            ],
            group_lookups: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        }
    }

    fn up(&self) -> ProviderResult<()> {
        if self.down.load(Ordering::Relaxed) {
            return Err(ProviderError::Transient("connection refused".into()));
        }
        Ok(())
    }
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

fn no_writes<T>() -> ProviderResult<T> {
    Err(ProviderError::Invalid(
        "the request flow never writes to Twingate".into(),
    ))
}

impl AccessProvider for Directory {
    async fn user_by_email(&self, email: &str) -> ProviderResult<Option<UserRef>> {
        self.up()?;
        Ok(self.users.get(email).map(|id| UserRef {
            id: id.clone(),
            email: Some(email.to_owned()),
        }))
    }
    async fn user(&self, _: &RemoteId) -> ProviderResult<Option<UserRef>> {
        Ok(None)
    }
    async fn resources_by_name(&self, name: &str) -> ProviderResult<Vec<NamedRef>> {
        self.up()?;
        Ok(if name == "prod-db" {
            vec![NamedRef {
                id: RemoteId::new("R1"),
                name: name.into(),
            }]
        } else {
            Vec::new()
        })
    }
    async fn resource(&self, _: &RemoteId) -> ProviderResult<Option<ResourceInfo>> {
        Ok(None)
    }
    async fn groups_by_name(&self, name: &str) -> ProviderResult<Vec<GroupInfo>> {
        self.up()?;
        self.group_lookups.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .groups
            .iter()
            .filter(|g| g.name == name)
            .cloned()
            .collect())
    }
    async fn groups_with_prefix(&self, _: &str) -> ProviderResult<Vec<GroupInfo>> {
        Ok(Vec::new())
    }
    async fn group(&self, _: &RemoteId) -> ProviderResult<Option<GroupInfo>> {
        Ok(None)
    }
    async fn service_accounts_by_name(
        &self,
        name: &str,
    ) -> ProviderResult<Vec<ServiceAccountInfo>> {
        self.up()?;
        Ok(if name == "ci" {
            vec![ServiceAccountInfo {
                id: RemoteId::new("S1"),
                name: name.into(),
                resources: Vec::new(),
                keys: Vec::new(),
            }]
        } else {
            Vec::new()
        })
    }
    async fn service_account(&self, _: &RemoteId) -> ProviderResult<Option<ServiceAccountInfo>> {
        Ok(None)
    }
    async fn create_group(
        &self,
        _: &str,
        _: &[RemoteId],
        _: &[RemoteId],
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<RemoteId> {
        no_writes()
    }
    async fn delete_group(
        &self,
        _: &RemoteId,
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
    async fn update_group_users(
        &self,
        _: &RemoteId,
        _: &[RemoteId],
        _: &[RemoteId],
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
    async fn add_resource_access(
        &self,
        _: &RemoteId,
        _: &[AccessToAdd],
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
    async fn remove_resource_access(
        &self,
        _: &RemoteId,
        _: &[RemoteId],
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
    async fn update_service_account_resources(
        &self,
        _: &RemoteId,
        _: &[RemoteId],
        _: &[RemoteId],
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
    async fn create_key(
        &self,
        _: &RemoteId,
        _: &str,
        _: u16,
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<CreatedKey> {
        no_writes()
    }
    async fn revoke_key(
        &self,
        _: &RemoteId,
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
    async fn delete_key(
        &self,
        _: &RemoteId,
        _: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        no_writes()
    }
}
