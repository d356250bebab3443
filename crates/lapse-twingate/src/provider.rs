//! `AccessProvider` for `TwingateClient`: lapse's operations in terms of the GraphQL ones.

use lapse_core::provider::{
    AccessProvider, AccessToAdd, CreatedKey, GroupInfo, KeyToken, MembershipChange, NamedRef,
    ProviderError, ProviderResult, RemoteId, ResourceInfo, ServiceAccountInfo, UserRef, WriteTerms,
};
use secrecy::ExposeSecret;

use crate::client::{TwingateClient, collect, key_info};
use crate::ops::groups::{
    Group, GroupCreate, GroupCreateVars, GroupDelete, GroupUpdateUsers, GroupUpdateUsersVars,
    GroupsByName, GroupsByPrefix,
};
use crate::ops::keys::{KeyCreate, KeyCreateVars, KeyDelete, KeyRevoke};
use crate::ops::resources::{
    AccessInput, AccessPolicyInput, Resource, ResourceAccessAdd, ResourceAccessAddVars,
    ResourceAccessRemove, ResourceAccessRemoveVars, ResourcesByName,
};
use crate::ops::service_accounts::{
    ServiceAccount, ServiceAccountUpdateResources, ServiceAccountUpdateResourcesVars,
    ServiceAccountsByName,
};
use crate::ops::users::{User, UserNode, UsersByEmail};
use crate::ops::{FilterPageVars, IdVars, ObjectVars, Operation, missing_payload};

fn id_strings(ids: &[RemoteId]) -> Vec<String> {
    ids.iter().map(|id| id.0.clone()).collect()
}

fn user_ref(node: UserNode) -> UserRef {
    UserRef {
        id: RemoteId(node.id),
        email: node.email,
    }
}

/// A create answered `ok` without its entity: the object exists, but which one is only known if
/// exactly one carries the name (lapse's names are unique to a grant).
fn the_one<T>(operation: &str, name: &str, mut found: Vec<T>) -> ProviderResult<T> {
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(ProviderError::UnknownOutcome(format!(
            "{operation}: answered ok without the new object, and {n} objects are named {name}; look before acting again"
        ))),
    }
}

/// Twingate allows keys of 1..=365 days (0 means never, which lapse must not create by accident).
const KEY_DAYS: std::ops::RangeInclusive<u16> = 1..=365;

impl TwingateClient {
    fn filter(&self, value: &str, after: Option<String>) -> FilterPageVars {
        FilterPageVars {
            value: value.to_owned(),
            first: self.inner.page_size,
            after,
        }
    }

    async fn created_group_named(&self, name: &str) -> ProviderResult<RemoteId> {
        let found = self.groups_by_name(name).await?;
        the_one(GroupCreate::NAME, name, found).map(|g| g.id)
    }

    /// The active key of that name: the one just created (a revoked or expired one is older).
    async fn created_key_named(
        &self,
        service_account: &RemoteId,
        name: &str,
    ) -> ProviderResult<lapse_core::provider::KeyInfo> {
        let keys = self
            .service_account(service_account)
            .await?
            .map(|sa| sa.keys)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| k.name == name && k.status == lapse_core::provider::KeyStatus::Active)
            .collect();
        the_one(KeyCreate::NAME, name, keys)
    }

    fn object(&self, id: &RemoteId) -> ObjectVars {
        ObjectVars {
            id: id.0.clone(),
            first: self.inner.page_size,
        }
    }
}

impl AccessProvider for TwingateClient {
    async fn user_by_email(&self, email: &str) -> ProviderResult<Option<UserRef>> {
        if let Some(user) = self.inner.cache.user_by_email(email) {
            return Ok(Some(user));
        }
        // Emails are unique, so the first page (with the first match) is enough.
        let data = self
            .inner
            .transport
            .query::<UsersByEmail>(&self.filter(email, None))
            .await?;
        let user = data
            .users
            .into_page()
            .items
            .into_iter()
            .next()
            .map(user_ref);
        if let Some(user) = &user {
            self.inner.cache.put_user(user);
        }
        Ok(user)
    }

    async fn user(&self, id: &RemoteId) -> ProviderResult<Option<UserRef>> {
        if let Some(user) = self.inner.cache.user(id) {
            return Ok(Some(user));
        }
        let data = self
            .inner
            .transport
            .query::<User>(&IdVars { id: id.0.clone() })
            .await?;
        let user = data.user.map(user_ref);
        if let Some(user) = &user {
            self.inner.cache.put_user(user);
        }
        Ok(user)
    }

    async fn resources_by_name(&self, name: &str) -> ProviderResult<Vec<NamedRef>> {
        if let Some(resources) = self.inner.cache.resources_by_name(name) {
            return Ok(resources);
        }
        let nodes = collect(ResourcesByName::NAME, |after| {
            let vars = self.filter(name, after);
            async move {
                let data = self.inner.transport.query::<ResourcesByName>(&vars).await?;
                Ok(data.resources.into_page())
            }
        })
        .await?;
        let resources: Vec<NamedRef> = nodes
            .into_iter()
            .map(|n| NamedRef {
                id: RemoteId(n.id),
                name: n.name,
            })
            .collect();
        self.inner.cache.put_resources(name, &resources);
        Ok(resources)
    }

    async fn resource(&self, id: &RemoteId) -> ProviderResult<Option<ResourceInfo>> {
        let data = self
            .inner
            .transport
            .query::<Resource>(&self.object(id))
            .await?;
        match data.resource {
            Some(node) => self.inner.complete_resource(node).await,
            None => Ok(None),
        }
    }

    async fn groups_by_name(&self, name: &str) -> ProviderResult<Vec<GroupInfo>> {
        let nodes = collect(GroupsByName::NAME, |after| {
            let vars = self.filter(name, after);
            async move {
                let data = self.inner.transport.query::<GroupsByName>(&vars).await?;
                Ok(data.groups.into_page())
            }
        })
        .await?;
        self.inner.complete_groups(nodes).await
    }

    async fn groups_with_prefix(&self, prefix: &str) -> ProviderResult<Vec<GroupInfo>> {
        let nodes = collect(GroupsByPrefix::NAME, |after| {
            let vars = self.filter(prefix, after);
            async move {
                let data = self.inner.transport.query::<GroupsByPrefix>(&vars).await?;
                Ok(data.groups.into_page())
            }
        })
        .await?;
        let groups = self.inner.complete_groups(nodes).await?;
        // The server's filter decides what it returns; lapse decides what it manages.
        Ok(groups
            .into_iter()
            .filter(|g| g.name.starts_with(prefix))
            .collect())
    }

    async fn group(&self, id: &RemoteId) -> ProviderResult<Option<GroupInfo>> {
        let data = self
            .inner
            .transport
            .query::<Group>(&self.object(id))
            .await?;
        match data.group {
            Some(node) => self.inner.complete_group(node).await,
            None => Ok(None),
        }
    }

    async fn service_accounts_by_name(
        &self,
        name: &str,
    ) -> ProviderResult<Vec<ServiceAccountInfo>> {
        let nodes = collect(ServiceAccountsByName::NAME, |after| {
            let vars = self.filter(name, after);
            async move {
                let data = self
                    .inner
                    .transport
                    .query::<ServiceAccountsByName>(&vars)
                    .await?;
                Ok(data.service_accounts.into_page())
            }
        })
        .await?;
        self.inner.complete_service_accounts(nodes).await
    }

    async fn service_account(&self, id: &RemoteId) -> ProviderResult<Option<ServiceAccountInfo>> {
        let data = self
            .inner
            .transport
            .query::<ServiceAccount>(&self.object(id))
            .await?;
        match data.service_account {
            Some(node) => self.inner.complete_service_account(node).await,
            None => Ok(None),
        }
    }

    async fn create_group(
        &self,
        name: &str,
        users: &[RemoteId],
        resources: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<RemoteId> {
        let vars = GroupCreateVars {
            name: name.to_owned(),
            user_ids: id_strings(users),
            resource_ids: id_strings(resources),
        };
        let data = self
            .inner
            .transport
            .mutate::<GroupCreate>(&vars, terms.into())
            .await?;
        let payload = data
            .group_create
            .ok_or_else(|| missing_payload(GroupCreate::NAME))?;
        let id = match payload.accepted(GroupCreate::NAME)? {
            Some(group) => RemoteId(group.id),
            None => self.created_group_named(name).await?,
        };
        tracing::info!(group = %id, name, "created group");
        Ok(id)
    }

    async fn delete_group(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        let data = self
            .inner
            .transport
            .mutate::<GroupDelete>(&IdVars { id: id.0.clone() }, terms.into())
            .await?;
        data.group_delete
            .ok_or_else(|| missing_payload(GroupDelete::NAME))?
            .check(GroupDelete::NAME)?;
        tracing::info!(group = %id, "deleted group");
        Ok(())
    }

    async fn update_group_users(
        &self,
        group: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let vars = GroupUpdateUsersVars {
            id: group.0.clone(),
            added_user_ids: id_strings(add),
            removed_user_ids: id_strings(remove),
        };
        let data = self
            .inner
            .transport
            .mutate::<GroupUpdateUsers>(&vars, terms.into())
            .await?;
        data.group_update
            .ok_or_else(|| missing_payload(GroupUpdateUsers::NAME))?
            .accepted(GroupUpdateUsers::NAME)?;
        tracing::info!(%group, added = add.len(), removed = remove.len(), "updated group members");
        Ok(())
    }

    async fn update_group_users_when_sent<T, F>(
        &self,
        group: &RemoteId,
        terms: WriteTerms,
        build: F,
    ) -> Option<(T, ProviderResult<()>)>
    where
        T: Send,
        F: FnOnce() -> Option<(T, MembershipChange)> + Send,
    {
        let mut sizes = (0, 0);
        let (value, data) = self
            .inner
            .transport
            .mutate_when_sent::<GroupUpdateUsers, T>(terms, || {
                let (value, change) = build()?;
                if change.add.is_empty() && change.remove.is_empty() {
                    return None;
                }
                sizes = (change.add.len(), change.remove.len());
                let vars = GroupUpdateUsersVars {
                    id: group.0.clone(),
                    added_user_ids: id_strings(&change.add),
                    removed_user_ids: id_strings(&change.remove),
                };
                Some((value, vars))
            })
            .await?;
        let result = data.and_then(|data| {
            data.group_update
                .ok_or_else(|| missing_payload(GroupUpdateUsers::NAME))?
                .accepted(GroupUpdateUsers::NAME)
                .map(|_| ())
        });
        if result.is_ok() {
            tracing::info!(%group, added = sizes.0, removed = sizes.1, "updated group members (built when sent)");
        }
        Some((value, result))
    }

    async fn add_resource_access(
        &self,
        resource: &RemoteId,
        access: &[AccessToAdd],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        if access.is_empty() {
            return Ok(());
        }
        let vars = ResourceAccessAddVars {
            resource_id: resource.0.clone(),
            access: access
                .iter()
                .map(|a| AccessInput {
                    principal_id: a.principal.0.clone(),
                    expires_at: a.expires_at,
                    // As Terraform sends it: plain access, whatever the resource's default is.
                    access_policy: AccessPolicyInput::MANUAL,
                })
                .collect(),
        };
        let data = self
            .inner
            .transport
            .mutate::<ResourceAccessAdd>(&vars, terms.into())
            .await?;
        data.resource_access_add
            .ok_or_else(|| missing_payload(ResourceAccessAdd::NAME))?
            .accepted(ResourceAccessAdd::NAME)?;
        tracing::info!(%resource, edges = access.len(), "added resource access");
        Ok(())
    }

    async fn remove_resource_access(
        &self,
        resource: &RemoteId,
        principals: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        if principals.is_empty() {
            return Ok(());
        }
        let vars = ResourceAccessRemoveVars {
            resource_id: resource.0.clone(),
            principal_ids: id_strings(principals),
        };
        let data = self
            .inner
            .transport
            .mutate::<ResourceAccessRemove>(&vars, terms.into())
            .await?;
        data.resource_access_remove
            .ok_or_else(|| missing_payload(ResourceAccessRemove::NAME))?
            .accepted(ResourceAccessRemove::NAME)?;
        tracing::info!(%resource, edges = principals.len(), "removed resource access");
        Ok(())
    }

    async fn update_service_account_resources(
        &self,
        service_account: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let vars = ServiceAccountUpdateResourcesVars {
            id: service_account.0.clone(),
            added_resource_ids: id_strings(add),
            removed_resource_ids: id_strings(remove),
        };
        let data = self
            .inner
            .transport
            .mutate::<ServiceAccountUpdateResources>(&vars, terms.into())
            .await?;
        data.service_account_update
            .ok_or_else(|| missing_payload(ServiceAccountUpdateResources::NAME))?
            .accepted(ServiceAccountUpdateResources::NAME)?;
        tracing::info!(%service_account, added = add.len(), removed = remove.len(), "updated service account resources");
        Ok(())
    }

    async fn create_key(
        &self,
        service_account: &RemoteId,
        name: &str,
        expiration_days: u16,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<CreatedKey> {
        if !KEY_DAYS.contains(&expiration_days) {
            return Err(ProviderError::Invalid(format!(
                "{}: expiration of {expiration_days} days is outside 1..=365",
                KeyCreate::NAME
            )));
        }
        let vars = KeyCreateVars {
            service_account_id: service_account.0.clone(),
            name: name.to_owned(),
            expiration_time: expiration_days,
        };
        let data = self
            .inner
            .transport
            .mutate::<KeyCreate>(&vars, terms.into())
            .await?;
        let payload = data
            .service_account_key_create
            .ok_or_else(|| missing_payload(KeyCreate::NAME))?;
        let (key, token) = payload.into_parts(KeyCreate::NAME)?;
        let key = match key {
            Some(key) => key_info(key),
            None => self.created_key_named(service_account, name).await?,
        };
        tracing::info!(key = %key.id, %service_account, "created service key");
        Ok(CreatedKey {
            key,
            token: KeyToken::new(token.expose_secret().to_owned()),
        })
    }

    async fn revoke_key(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        let data = self
            .inner
            .transport
            .mutate::<KeyRevoke>(&IdVars { id: id.0.clone() }, terms.into())
            .await?;
        data.service_account_key_revoke
            .ok_or_else(|| missing_payload(KeyRevoke::NAME))?
            .accepted(KeyRevoke::NAME)?;
        tracing::info!(key = %id, "revoked service key");
        Ok(())
    }

    async fn delete_key(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        let data = self
            .inner
            .transport
            .mutate::<KeyDelete>(&IdVars { id: id.0.clone() }, terms.into())
            .await?;
        data.service_account_key_delete
            .ok_or_else(|| missing_payload(KeyDelete::NAME))?
            .check(KeyDelete::NAME)?;
        tracing::info!(key = %id, "deleted service key");
        Ok(())
    }
}
