//! The network's state and every change to it, with Twingate's validation rules.

use std::collections::BTreeMap;

use async_graphql::MaybeUndefined;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::ExpiryPrecision;
use crate::ids;
use crate::model::*;
use crate::seed::{Seed, SeedApiKey};

/// An ID as the client sent it (for error messages) and the key it names, if it can name one.
#[derive(Clone, Debug)]
pub(crate) struct Ref<K> {
    pub raw: String,
    pub key: Option<K>,
}

/// A business-rule refusal: the message becomes the payload's `error` with `ok: false`.
pub(crate) type Reject = String;

fn missing(kind: &str, raw: &str) -> Reject {
    format!("{kind} with id '{raw}' does not exist")
}

/// The changes one `groupUpdate` asks for; `None` leaves a part alone.
#[derive(Default)]
pub(crate) struct GroupChanges {
    pub name: Option<String>,
    pub is_active: Option<bool>,
    pub added_users: Vec<Ref<u64>>,
    pub removed_users: Vec<Ref<u64>>,
    pub added_resources: Vec<Ref<u64>>,
    pub removed_resources: Vec<Ref<u64>>,
    pub users: Option<Vec<Ref<u64>>>,
    pub resources: Option<Vec<Ref<u64>>>,
    pub security_policy: Option<Ref<u64>>,
}

#[derive(Default)]
pub(crate) struct ServiceAccountChanges {
    pub name: Option<String>,
    pub added_resources: Vec<Ref<u64>>,
    pub removed_resources: Vec<Ref<u64>>,
    pub resources: Option<Vec<Ref<u64>>>,
}

/// One entry of `resourceAccessAdd`/`Set`; `Undefined` keeps a stored value, `Null` clears it.
pub(crate) struct AccessChange {
    pub principal: Ref<Principal>,
    pub security_policy: MaybeUndefined<Ref<u64>>,
    pub expires_at: MaybeUndefined<DateTime<Utc>>,
    pub access_policy_mode: MaybeUndefined<AccessPolicyMode>,
    pub access_policy_duration: MaybeUndefined<i32>,
    pub approval_mode: MaybeUndefined<AccessApprovalMode>,
}

pub(crate) struct Store {
    pub users: BTreeMap<u64, User>,
    pub groups: BTreeMap<u64, Group>,
    pub resources: BTreeMap<u64, Resource>,
    /// In creation order, which is the order lists show.
    pub service_accounts: Vec<ServiceAccount>,
    pub keys: Vec<Key>,
    pub policies: Vec<SecurityPolicy>,
    pub api_keys: Vec<SeedApiKey>,
    next_user: u64,
    next_group: u64,
    next_resource: u64,
    rng: StdRng,
}

impl Store {
    pub fn from_seed(seed: &Seed, now: DateTime<Utc>, id_seed: u64) -> Store {
        let mut store = Store {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            service_accounts: Vec::new(),
            keys: Vec::new(),
            policies: vec![
                SecurityPolicy {
                    pk: 1,
                    name: "Default Policy".into(),
                },
                SecurityPolicy {
                    pk: 2,
                    name: "Require MFA".into(),
                },
            ],
            api_keys: seed.api_keys.clone(),
            next_user: 1,
            next_group: 1,
            next_resource: 1,
            rng: StdRng::seed_from_u64(id_seed ^ 0x05EE_D1D5),
        };
        for u in &seed.users {
            store.users.insert(
                u.id,
                User {
                    pk: u.id,
                    email: u.email.clone(),
                    first_name: u.first_name.clone(),
                    last_name: u.last_name.clone(),
                    role: u.role,
                    state: u.state,
                    user_type: UserType::Manual,
                    created_at: now,
                    updated_at: now,
                },
            );
        }
        for r in &seed.resources {
            store.resources.insert(
                r.id,
                Resource {
                    pk: r.id,
                    name: r.name.clone(),
                    address: r.address.clone(),
                    is_active: r.is_active,
                    default_access_mode: r.default_access_mode,
                    access: Vec::new(),
                    created_at: now,
                    updated_at: now,
                },
            );
        }
        for g in &seed.groups {
            store.groups.insert(
                g.id,
                Group {
                    pk: g.id,
                    name: g.name.clone(),
                    group_type: g.group_type,
                    is_active: g.is_active,
                    users: dedup(&g.users),
                    security_policy: None,
                    created_at: now,
                    updated_at: now,
                },
            );
            for r in &g.resources {
                store.ensure_edge(*r, Principal::Group(g.id));
            }
        }
        for s in &seed.service_accounts {
            let id = s.id.clone().unwrap_or_else(|| store.mint_uuid());
            for r in &s.resources {
                store.ensure_edge(*r, Principal::ServiceAccount(id.clone()));
            }
            store.service_accounts.push(ServiceAccount {
                id,
                name: s.name.clone(),
                created_at: now,
                updated_at: now,
            });
        }
        store.next_user = store.users.keys().max().map_or(1, |m| m + 1);
        store.next_group = store.groups.keys().max().map_or(1, |m| m + 1);
        store.next_resource = store.resources.keys().max().map_or(1, |m| m + 1);
        store
    }

    fn mint_uuid(&mut self) -> String {
        ids::uuid_from(self.rng.random())
    }

    /// Removes access edges whose `expiresAt` has passed. Called before every read and write,
    /// so an expired edge is never seen, whatever the order of requests.
    pub fn sweep(&mut self, now: DateTime<Utc>) {
        for r in self.resources.values_mut() {
            r.access.retain(|e| e.expires_at.is_none_or(|t| t > now));
        }
    }

    pub fn api_key(&self, token: &str) -> Option<&SeedApiKey> {
        self.api_keys.iter().find(|k| k.token == token)
    }

    pub fn service_account(&self, id: &str) -> Option<&ServiceAccount> {
        self.service_accounts.iter().find(|s| s.id == id)
    }

    pub fn key(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn policy(&self, pk: u64) -> Option<&SecurityPolicy> {
        self.policies.iter().find(|p| p.pk == pk)
    }

    /// Resource pks that `principal` has an edge to, in resource order.
    pub fn resources_of(&self, principal: &Principal) -> Vec<u64> {
        self.resources
            .values()
            .filter(|r| r.access.iter().any(|e| &e.principal == principal))
            .map(|r| r.pk)
            .collect()
    }

    fn ensure_edge(&mut self, resource: u64, principal: Principal) {
        if let Some(r) = self.resources.get_mut(&resource)
            && !r.access.iter().any(|e| e.principal == principal)
        {
            r.access.push(Edge::plain(principal));
        }
    }

    fn drop_edge(&mut self, resource: u64, principal: &Principal) {
        if let Some(r) = self.resources.get_mut(&resource) {
            r.access.retain(|e| &e.principal != principal);
        }
    }

    fn drop_all_edges(&mut self, principal: &Principal) {
        for r in self.resources.values_mut() {
            r.access.retain(|e| &e.principal != principal);
        }
    }

    fn check_users(&self, refs: &[Ref<u64>]) -> Result<Vec<u64>, Reject> {
        refs.iter()
            .map(|r| {
                r.key
                    .filter(|pk| self.users.contains_key(pk))
                    .ok_or_else(|| missing("User", &r.raw))
            })
            .collect()
    }

    fn check_resources(&self, refs: &[Ref<u64>]) -> Result<Vec<u64>, Reject> {
        refs.iter()
            .map(|r| {
                r.key
                    .filter(|pk| self.resources.contains_key(pk))
                    .ok_or_else(|| missing("Resource", &r.raw))
            })
            .collect()
    }

    fn check_policy(&self, r: &Ref<u64>) -> Result<u64, Reject> {
        r.key
            .filter(|pk| self.policy(*pk).is_some())
            .ok_or_else(|| missing("SecurityPolicy", &r.raw))
    }

    fn check_group(&self, r: &Ref<u64>, force: bool) -> Result<u64, Reject> {
        let pk = r
            .key
            .filter(|pk| self.groups.contains_key(pk))
            .ok_or_else(|| missing("Group", &r.raw))?;
        let group_type = self.groups.get(&pk).map(|g| g.group_type);
        match group_type {
            Some(GroupType::Manual) => Ok(pk),
            _ if force => Ok(pk),
            Some(t) => Err(format!(
                "Group with id '{}' is of type {t:?}: only MANUAL groups can be changed",
                r.raw
            )
            .replace("Synced", "SYNCED")
            .replace("System", "SYSTEM")),
            None => Err(missing("Group", &r.raw)),
        }
    }

    fn check_service_account(&self, r: &Ref<String>) -> Result<String, Reject> {
        r.key
            .as_ref()
            .filter(|id| self.service_account(id).is_some())
            .cloned()
            .ok_or_else(|| missing("ServiceAccount", &r.raw))
    }

    pub fn create_user(
        &mut self,
        email: &str,
        first: &str,
        last: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, Reject> {
        if self.users.values().any(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        }) {
            return Err(format!("User with email '{email}' already exists"));
        }
        let pk = self.next_user;
        self.next_user += 1;
        self.users.insert(
            pk,
            User {
                pk,
                email: Some(email.to_string()),
                first_name: first.to_string(),
                last_name: last.to_string(),
                role: UserRole::Member,
                state: UserState::Active,
                user_type: UserType::Manual,
                created_at: now,
                updated_at: now,
            },
        );
        Ok(pk)
    }

    pub fn create_resource(&mut self, name: &str, address: &str, now: DateTime<Utc>) -> u64 {
        let pk = self.next_resource;
        self.next_resource += 1;
        self.resources.insert(
            pk,
            Resource {
                pk,
                name: name.to_string(),
                address: address.to_string(),
                is_active: true,
                default_access_mode: None,
                access: Vec::new(),
                created_at: now,
                updated_at: now,
            },
        );
        pk
    }

    /// Not idempotent, as in Twingate: the same name twice makes two groups.
    pub fn create_group(
        &mut self,
        name: &str,
        group_type: GroupType,
        users: &[Ref<u64>],
        resources: &[Ref<u64>],
        policy: Option<&Ref<u64>>,
        now: DateTime<Utc>,
    ) -> Result<u64, Reject> {
        if name.trim().is_empty() {
            return Err("Group name must not be empty".into());
        }
        let users = self.check_users(users)?;
        let resources = self.check_resources(resources)?;
        let policy = policy.map(|p| self.check_policy(p)).transpose()?;
        let pk = self.next_group;
        self.next_group += 1;
        self.groups.insert(
            pk,
            Group {
                pk,
                name: name.to_string(),
                group_type,
                is_active: true,
                users: dedup(&users),
                security_policy: policy,
                created_at: now,
                updated_at: now,
            },
        );
        for r in resources {
            self.ensure_edge(r, Principal::Group(pk));
        }
        Ok(pk)
    }

    /// Validates every part before changing anything, so a refused update changes nothing.
    /// `force` lets the out-of-band administrator change non-MANUAL groups.
    pub fn update_group(
        &mut self,
        id: &Ref<u64>,
        changes: GroupChanges,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<u64, Reject> {
        let pk = self.check_group(id, force)?;
        if changes.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err("Group name must not be empty".into());
        }
        let added_users = self.check_users(&changes.added_users)?;
        let removed_users = self.check_users(&changes.removed_users)?;
        let added_resources = self.check_resources(&changes.added_resources)?;
        let removed_resources = self.check_resources(&changes.removed_resources)?;
        let users = changes
            .users
            .as_deref()
            .map(|u| self.check_users(u))
            .transpose()?;
        let resources = changes
            .resources
            .as_deref()
            .map(|r| self.check_resources(r))
            .transpose()?;
        let policy = changes
            .security_policy
            .as_ref()
            .map(|p| self.check_policy(p))
            .transpose()?;
        let principal = Principal::Group(pk);
        if let Some(resources) = resources {
            for r in self.resources_of(&principal) {
                if !resources.contains(&r) {
                    self.drop_edge(r, &principal);
                }
            }
            for r in resources {
                self.ensure_edge(r, principal.clone());
            }
        }
        for r in removed_resources {
            self.drop_edge(r, &principal);
        }
        for r in added_resources {
            self.ensure_edge(r, principal.clone());
        }
        let Some(group) = self.groups.get_mut(&pk) else {
            return Err(missing("Group", &id.raw));
        };
        if let Some(users) = users {
            group.users = dedup(&users);
        }
        group.users.retain(|u| !removed_users.contains(u));
        for u in added_users {
            if !group.users.contains(&u) {
                group.users.push(u);
            }
        }
        if let Some(name) = changes.name {
            group.name = name;
        }
        if let Some(active) = changes.is_active {
            group.is_active = active;
        }
        if policy.is_some() {
            group.security_policy = policy;
        }
        group.updated_at = now;
        Ok(pk)
    }

    pub fn delete_group(&mut self, id: &Ref<u64>, force: bool) -> Result<(), Reject> {
        let pk = self.check_group(id, force)?;
        self.groups.remove(&pk);
        self.drop_all_edges(&Principal::Group(pk));
        Ok(())
    }

    fn check_principal(&self, r: &Ref<Principal>) -> Result<Principal, Reject> {
        let exists = match &r.key {
            Some(Principal::Group(pk)) => self.groups.contains_key(pk),
            Some(Principal::ServiceAccount(id)) => self.service_account(id).is_some(),
            None => false,
        };
        match (&r.key, exists) {
            (Some(p), true) => Ok(p.clone()),
            (Some(Principal::ServiceAccount(_)), false) => Err(missing("ServiceAccount", &r.raw)),
            (Some(Principal::Group(_)), false) => Err(missing("Group", &r.raw)),
            (None, _) => Err(missing("Principal", &r.raw)),
        }
    }

    fn check_resource(&self, r: &Ref<u64>) -> Result<u64, Reject> {
        r.key
            .filter(|pk| self.resources.contains_key(pk))
            .ok_or_else(|| missing("Resource", &r.raw))
    }

    /// `resourceAccessAdd` (an upsert per principal) and, with `replace`, `resourceAccessSet`.
    pub fn access_add(
        &mut self,
        resource: &Ref<u64>,
        changes: Vec<AccessChange>,
        replace: bool,
        precision: ExpiryPrecision,
        now: DateTime<Utc>,
    ) -> Result<u64, Reject> {
        let pk = self.check_resource(resource)?;
        let mut planned = Vec::new();
        for c in changes {
            let principal = self.check_principal(&c.principal)?;
            if matches!(principal, Principal::ServiceAccount(_))
                && matches!(c.expires_at, MaybeUndefined::Value(_))
            {
                return Err(format!(
                    "expiresAt must be null for service account principal '{}'",
                    c.principal.raw
                ));
            }
            let policy = match &c.security_policy {
                MaybeUndefined::Value(p) => MaybeUndefined::Value(self.check_policy(p)?),
                MaybeUndefined::Null => MaybeUndefined::Null,
                MaybeUndefined::Undefined => MaybeUndefined::Undefined,
            };
            planned.push((principal, policy, c));
        }
        let Some(r) = self.resources.get_mut(&pk) else {
            return Err(missing("Resource", &resource.raw));
        };
        let default_mode = r.default_access_mode.unwrap_or(AccessPolicyMode::Manual);
        let mut old = std::mem::take(&mut r.access);
        if !replace {
            r.access = old.clone();
            old.clear();
        }
        for (principal, policy, c) in planned {
            let idx = match r.access.iter().position(|e| e.principal == principal) {
                Some(i) => i,
                None => {
                    // Under Set, an edge that survives keeps the fields that were not re-sent.
                    let base = old
                        .iter()
                        .find(|e| e.principal == principal)
                        .cloned()
                        .unwrap_or_else(|| Edge {
                            // A new edge sent without accessPolicy takes the resource's default.
                            access_policy_mode: Some(default_mode),
                            ..Edge::plain(principal.clone())
                        });
                    r.access.push(base);
                    r.access.len() - 1
                }
            };
            let edge = &mut r.access[idx];
            apply(&mut edge.security_policy, policy);
            apply(
                &mut edge.expires_at,
                c.expires_at.map_value(|t| precision.store(t)),
            );
            apply(&mut edge.access_policy_mode, c.access_policy_mode);
            apply(&mut edge.access_policy_duration, c.access_policy_duration);
            apply(&mut edge.approval_mode, c.approval_mode);
        }
        r.updated_at = now;
        Ok(pk)
    }

    /// Removing a principal without an edge is accepted, like the other deltas.
    pub fn access_remove(
        &mut self,
        resource: &Ref<u64>,
        principals: &[Ref<Principal>],
        now: DateTime<Utc>,
    ) -> Result<u64, Reject> {
        let pk = self.check_resource(resource)?;
        let principals = principals
            .iter()
            .map(|p| self.check_principal(p))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(r) = self.resources.get_mut(&pk) {
            r.access.retain(|e| !principals.contains(&e.principal));
            r.updated_at = now;
        }
        Ok(pk)
    }

    pub fn create_service_account(
        &mut self,
        name: &str,
        resources: &[Ref<u64>],
        now: DateTime<Utc>,
    ) -> Result<String, Reject> {
        if name.trim().is_empty() {
            return Err("Service account name must not be empty".into());
        }
        let resources = self.check_resources(resources)?;
        let id = self.mint_uuid();
        self.service_accounts.push(ServiceAccount {
            id: id.clone(),
            name: name.to_string(),
            created_at: now,
            updated_at: now,
        });
        for r in resources {
            self.ensure_edge(r, Principal::ServiceAccount(id.clone()));
        }
        Ok(id)
    }

    pub fn update_service_account(
        &mut self,
        id: &Ref<String>,
        changes: ServiceAccountChanges,
        now: DateTime<Utc>,
    ) -> Result<String, Reject> {
        let sa = self.check_service_account(id)?;
        if changes.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err("Service account name must not be empty".into());
        }
        let added = self.check_resources(&changes.added_resources)?;
        let removed = self.check_resources(&changes.removed_resources)?;
        let replace = changes
            .resources
            .as_deref()
            .map(|r| self.check_resources(r))
            .transpose()?;
        let principal = Principal::ServiceAccount(sa.clone());
        if let Some(resources) = replace {
            for r in self.resources_of(&principal) {
                if !resources.contains(&r) {
                    self.drop_edge(r, &principal);
                }
            }
            for r in resources {
                self.ensure_edge(r, principal.clone());
            }
        }
        for r in removed {
            self.drop_edge(r, &principal);
        }
        for r in added {
            self.ensure_edge(r, principal.clone());
        }
        if let Some(s) = self.service_accounts.iter_mut().find(|s| s.id == sa) {
            if let Some(name) = changes.name {
                s.name = name;
            }
            s.updated_at = now;
        }
        Ok(sa)
    }

    pub fn delete_service_account(&mut self, id: &Ref<String>) -> Result<(), Reject> {
        let sa = self.check_service_account(id)?;
        self.service_accounts.retain(|s| s.id != sa);
        self.keys.retain(|k| k.service_account != sa);
        self.drop_all_edges(&Principal::ServiceAccount(sa));
        Ok(())
    }

    /// Returns the new key's id and its token; the token is not kept, so it can never be shown
    /// again.
    pub fn create_key(
        &mut self,
        sa: &Ref<String>,
        name: Option<String>,
        expiration_days: i32,
        now: DateTime<Utc>,
    ) -> Result<(String, String), Reject> {
        let sa = self.check_service_account(sa)?;
        if !(0..=365).contains(&expiration_days) {
            return Err(format!(
                "expirationTime must be between 0 and 365 days, got {expiration_days}"
            ));
        }
        let id = self.mint_uuid();
        let token: String = (0..64)
            .map(|_| {
                let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                char::from(chars[self.rng.random_range(0..chars.len())])
            })
            .collect();
        self.keys.push(Key {
            id: id.clone(),
            service_account: sa,
            name: name.unwrap_or_default(),
            expires_at: (expiration_days > 0).then(|| now + Duration::days(expiration_days.into())),
            revoked_at: None,
            created_at: now,
            updated_at: now,
        });
        Ok((id, token))
    }

    fn check_key(&self, id: &Ref<String>) -> Result<String, Reject> {
        id.key
            .as_ref()
            .filter(|k| self.key(k).is_some())
            .cloned()
            .ok_or_else(|| missing("ServiceAccountKey", &id.raw))
    }

    /// Revoking twice is accepted and keeps the first `revokedAt`.
    pub fn revoke_key(&mut self, id: &Ref<String>, now: DateTime<Utc>) -> Result<String, Reject> {
        let key_id = self.check_key(id)?;
        if let Some(k) = self.keys.iter_mut().find(|k| k.id == key_id)
            && k.revoked_at.is_none()
        {
            k.revoked_at = Some(now);
            k.updated_at = now;
        }
        Ok(key_id)
    }

    pub fn delete_key(&mut self, id: &Ref<String>, now: DateTime<Utc>) -> Result<(), Reject> {
        let key_id = self.check_key(id)?;
        let active = self
            .key(&key_id)
            .is_some_and(|k| k.status(now) == ServiceAccountKeyStatus::Active);
        if active {
            return Err(format!(
                "ServiceAccountKey with id '{}' is active: revoke it before deleting it",
                id.raw
            ));
        }
        self.keys.retain(|k| k.id != key_id);
        Ok(())
    }
}

fn apply<T>(slot: &mut Option<T>, change: MaybeUndefined<T>) {
    match change {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => *slot = None,
        MaybeUndefined::Value(v) => *slot = Some(v),
    }
}

fn dedup(pks: &[u64]) -> Vec<u64> {
    let mut out = Vec::with_capacity(pks.len());
    for pk in pks {
        if !out.contains(pk) {
            out.push(*pk);
        }
    }
    out
}
