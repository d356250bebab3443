//! Model test of the planner: a fake remote with the API's semantics (deltas, upserts, names
//! not unique, non-idempotent creates), a driver that applies plans the way the executor does,
//! random grants and a clock moving in steps, with and without injected failures.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use common::{at, gid, rid};
use lapse_core::ownership::{Edge, EdgeKind, ObjectKind, OwnedEdge, OwnedObject};
use lapse_core::plan::{
    Action, Container, Observation, Observed, Plan, PlanConfig, Slice, World, edge_container, plan,
    plan_slice, slice,
};
use lapse_core::provider::{
    AccessEdge, GroupInfo, GroupType, KeyInfo, KeyStatus, PrincipalKind, ResourceInfo,
    ServiceAccountInfo,
};
use lapse_core::{
    Grant, GrantId, GrantSpec, GrantState, Principal, REMOTE_PREFIX, RemoteId, RetryState,
};
use proptest::prelude::*;

const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];
const GROUPS: [&str; 2] = ["g0", "g1"];
const RESOURCES: [&str; 3] = ["r0", "r1", "r2"];
const SAS: [&str; 2] = ["s0", "s1"];

// ---------------------------------------------------------------- the fake remote

#[derive(Debug, Clone)]
struct RGroup {
    name: String,
    users: BTreeSet<RemoteId>,
}

#[derive(Debug, Clone)]
struct RKey {
    name: String,
    revoked: bool,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
struct RSa {
    resources: BTreeSet<RemoteId>,
    keys: BTreeMap<RemoteId, RKey>,
}

#[derive(Debug, Clone, Default)]
struct Remote {
    groups: BTreeMap<RemoteId, RGroup>,
    /// resource -> principal -> expiry
    access: BTreeMap<RemoteId, BTreeMap<RemoteId, Option<DateTime<Utc>>>>,
    sas: BTreeMap<RemoteId, RSa>,
    next_id: u64,
}

/// Why a remote write was refused.
#[derive(Debug, Clone, PartialEq)]
enum RErr {
    Gone,
    Rejected(String),
}

impl Remote {
    fn fresh_id(&mut self, prefix: &str) -> RemoteId {
        self.next_id += 1;
        RemoteId::new(format!("{prefix}{}", self.next_id))
    }

    fn group_info(&self, id: &RemoteId) -> Option<GroupInfo> {
        self.groups.get(id).map(|g| GroupInfo {
            id: id.clone(),
            name: g.name.clone(),
            group_type: GroupType::Manual,
            is_active: true,
            users: g.users.iter().cloned().collect(),
            resources: self
                .access
                .iter()
                .filter(|(_, a)| a.contains_key(id))
                .map(|(r, _)| r.clone())
                .collect(),
        })
    }

    fn resource_info(&self, id: &RemoteId) -> Option<ResourceInfo> {
        self.access.get(id).map(|a| ResourceInfo {
            id: id.clone(),
            name: format!("{id}-name"),
            access: a
                .iter()
                .map(|(p, exp)| AccessEdge {
                    principal: p.clone(),
                    principal_kind: PrincipalKind::Group,
                    expires_at: *exp,
                })
                .collect(),
        })
    }

    fn sa_info(&self, id: &RemoteId, now: DateTime<Utc>) -> Option<ServiceAccountInfo> {
        self.sas.get(id).map(|s| ServiceAccountInfo {
            id: id.clone(),
            name: format!("{id}-name"),
            resources: s.resources.iter().cloned().collect(),
            keys: s
                .keys
                .iter()
                .map(|(kid, k)| KeyInfo {
                    id: kid.clone(),
                    name: k.name.clone(),
                    status: key_status(k, now),
                    expires_at: Some(k.expires_at),
                })
                .collect(),
        })
    }

    fn groups_where(&self, f: impl Fn(&str) -> bool) -> Vec<GroupInfo> {
        self.groups
            .iter()
            .filter(|(_, g)| f(&g.name))
            .filter_map(|(id, _)| self.group_info(id))
            .collect()
    }

    fn create_group(&mut self, name: &str, users: &[RemoteId], resources: &[RemoteId]) -> RemoteId {
        let id = self.fresh_id("lg");
        self.groups.insert(
            id.clone(),
            RGroup {
                name: name.into(),
                users: users.iter().cloned().collect(),
            },
        );
        for r in resources {
            self.access
                .entry(r.clone())
                .or_default()
                .insert(id.clone(), None);
        }
        id
    }

    fn delete_group(&mut self, id: &RemoteId) -> Result<(), RErr> {
        self.groups.remove(id).ok_or(RErr::Gone)?;
        for a in self.access.values_mut() {
            a.remove(id);
        }
        Ok(())
    }

    fn update_group_users(
        &mut self,
        id: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
    ) -> Result<(), RErr> {
        let g = self.groups.get_mut(id).ok_or(RErr::Gone)?;
        for u in remove {
            g.users.remove(u);
        }
        g.users.extend(add.iter().cloned());
        Ok(())
    }

    fn add_access(
        &mut self,
        resource: &RemoteId,
        add: &[lapse_core::provider::AccessToAdd],
    ) -> Result<(), RErr> {
        for a in add {
            if !self.groups.contains_key(&a.principal) {
                return Err(RErr::Rejected(format!("no principal {}", a.principal)));
            }
        }
        let r = self.access.get_mut(resource).ok_or(RErr::Gone)?;
        for a in add {
            // Upsert: overwrites the expiry.
            r.insert(a.principal.clone(), a.expires_at);
        }
        Ok(())
    }

    fn remove_access(&mut self, resource: &RemoteId, principals: &[RemoteId]) -> Result<(), RErr> {
        let r = self.access.get_mut(resource).ok_or(RErr::Gone)?;
        for p in principals {
            r.remove(p);
        }
        Ok(())
    }

    fn update_sa(
        &mut self,
        sa: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
    ) -> Result<(), RErr> {
        let s = self.sas.get_mut(sa).ok_or(RErr::Gone)?;
        for r in remove {
            s.resources.remove(r);
        }
        s.resources.extend(add.iter().cloned());
        Ok(())
    }

    fn create_key(
        &mut self,
        sa: &RemoteId,
        name: &str,
        days: u16,
        now: DateTime<Utc>,
    ) -> Result<RemoteId, RErr> {
        if !(1..=365).contains(&days) {
            return Err(RErr::Rejected(format!("expiration {days}")));
        }
        let id = self.fresh_id("k");
        let s = self.sas.get_mut(sa).ok_or(RErr::Gone)?;
        s.keys.insert(
            id.clone(),
            RKey {
                name: name.into(),
                revoked: false,
                expires_at: now + Duration::days(i64::from(days)),
            },
        );
        Ok(id)
    }

    fn key_mut(&mut self, id: &RemoteId) -> Option<&mut RKey> {
        self.sas.values_mut().find_map(|s| s.keys.get_mut(id))
    }

    fn revoke_key(&mut self, id: &RemoteId) -> Result<(), RErr> {
        self.key_mut(id).ok_or(RErr::Gone)?.revoked = true;
        Ok(())
    }

    fn delete_key(&mut self, id: &RemoteId, now: DateTime<Utc>) -> Result<(), RErr> {
        let k = self.key_mut(id).ok_or(RErr::Gone)?;
        if key_status(k, now) == KeyStatus::Active {
            return Err(RErr::Rejected("an active key cannot be deleted".into()));
        }
        for s in self.sas.values_mut() {
            s.keys.remove(id);
        }
        Ok(())
    }
}

fn key_status(k: &RKey, now: DateTime<Utc>) -> KeyStatus {
    if k.revoked {
        KeyStatus::Revoked
    } else if k.expires_at <= now {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

// ---------------------------------------------------------------- the driver

/// What happens to one write.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Fails before anything happened.
    Fail,
    /// Applied, but the answer is lost.
    Lost,
}

#[derive(Debug, Clone, Default)]
struct Pre {
    memberships: BTreeSet<(RemoteId, RemoteId)>,
    access: BTreeSet<(RemoteId, RemoteId)>,
    sa_resources: BTreeSet<(RemoteId, RemoteId)>,
}

struct Sim {
    remote: Remote,
    pre: Pre,
    grants: Vec<Grant>,
    done: Vec<Grant>,
    revoke_at: BTreeMap<GrantId, DateTime<Utc>>,
    edges: Vec<OwnedEdge>,
    objects: Vec<OwnedObject>,
    observed: Observed,
    cfg: PlanConfig,
    now: DateTime<Utc>,
    faults: Vec<u8>,
    fault_idx: usize,
    faults_on: bool,
    /// Remote refusals that a correct plan never causes.
    refusals: Vec<String>,
    drift: Vec<String>,
    tokens: BTreeMap<GrantId, usize>,
}

impl Sim {
    fn fault(&mut self) -> Fault {
        if !self.faults_on || self.faults.is_empty() {
            return Fault::None;
        }
        let v = self.faults[self.fault_idx % self.faults.len()];
        self.fault_idx += 1;
        match v {
            0..=199 => Fault::None,
            200..=229 => Fault::Fail,
            _ => Fault::Lost,
        }
    }

    fn grant_mut(&mut self, id: GrantId) -> Option<&mut Grant> {
        self.grants.iter_mut().find(|g| g.id == id)
    }

    fn backoff(&mut self, ids: &[GrantId], why: &str) {
        let now = self.now;
        for id in ids {
            if let Some(g) = self.grant_mut(*id) {
                g.retry.attempts += 1;
                let wait = Duration::seconds(30 * (1_i64 << g.retry.attempts.min(4)))
                    .min(Duration::minutes(5));
                g.retry.next_attempt_at = Some(now + wait);
                g.retry.last_error = Some(why.into());
            }
        }
    }

    fn succeeded(&mut self, ids: &[GrantId]) {
        for id in ids {
            if let Some(g) = self.grant_mut(*id) {
                g.retry = RetryState::default();
            }
        }
    }

    fn upsert_edge(&mut self, c: &OwnedEdge) {
        self.edges.retain(|e| e.edge != c.edge);
        self.edges.push(c.clone());
    }

    fn settle(&mut self, claims: &[OwnedEdge], releases: &[Edge]) {
        self.edges.retain(|e| !releases.contains(&e.edge));
        for c in claims {
            if let Some(e) = self.edges.iter_mut().find(|e| e.edge == c.edge) {
                e.confirmed = true;
                e.expires_at = c.expires_at;
            }
        }
    }

    fn forget(&mut self, grant: GrantId, kind: ObjectKind) {
        if let Some(pos) = self
            .objects
            .iter()
            .position(|o| o.grant == grant && o.kind == kind)
        {
            let o = self.objects.remove(pos);
            if let (ObjectKind::Group, Some(gid)) = (kind, &o.remote_id) {
                self.edges
                    .retain(|e| !(e.edge.kind == EdgeKind::Access && &e.edge.member == gid));
            }
        }
    }

    fn object_mut(&mut self, grant: GrantId, kind: ObjectKind) -> Option<&mut OwnedObject> {
        self.objects
            .iter_mut()
            .find(|o| o.grant == grant && o.kind == kind)
    }

    fn record_read(&mut self, c: &Container) {
        let now = self.now;
        match c {
            Container::Group(id) => {
                let value = self.remote.group_info(id);
                self.observed
                    .groups
                    .insert(id.clone(), Observation { at: now, value });
            }
            Container::Resource(id) => {
                let value = self.remote.resource_info(id);
                self.observed
                    .resources
                    .insert(id.clone(), Observation { at: now, value });
            }
            Container::ServiceAccount(id) => {
                let value = self.remote.sa_info(id, now);
                self.observed
                    .service_accounts
                    .insert(id.clone(), Observation { at: now, value });
            }
            Container::GroupsNamed(name) => {
                let list = self.remote.groups_where(|n| n == name);
                for g in &list {
                    self.observed.groups.insert(
                        g.id.clone(),
                        Observation {
                            at: now,
                            value: Some(g.clone()),
                        },
                    );
                }
                self.observed.named_groups.insert(
                    name.clone(),
                    Observation {
                        at: now,
                        value: Some(list),
                    },
                );
            }
            Container::LapseGroups => {
                let list = self.remote.groups_where(|n| n.starts_with(REMOTE_PREFIX));
                // lapse's groups the listing lacks are gone.
                for o in &self.objects {
                    if let Some(id) = &o.remote_id
                        && o.kind == ObjectKind::Group
                        && !list.iter().any(|g| &g.id == id)
                    {
                        self.observed.groups.insert(
                            id.clone(),
                            Observation {
                                at: now,
                                value: None,
                            },
                        );
                    }
                }
                for g in &list {
                    self.observed.groups.insert(
                        g.id.clone(),
                        Observation {
                            at: now,
                            value: Some(g.clone()),
                        },
                    );
                }
                self.observed.lapse_groups = Some(Observation {
                    at: now,
                    value: Some(list),
                });
            }
        }
    }

    fn invalidate(&mut self, c: &Container) {
        match c {
            Container::Group(id) => {
                self.observed.groups.remove(id);
            }
            Container::Resource(id) => {
                self.observed.resources.remove(id);
            }
            Container::ServiceAccount(id) => {
                self.observed.service_accounts.remove(id);
            }
            Container::GroupsNamed(n) => {
                self.observed.named_groups.remove(n);
            }
            Container::LapseGroups => self.observed.lapse_groups = None,
        }
    }

    /// The observation is kept current by lapse's own successful writes.
    fn refresh_group(&mut self, id: &RemoteId) {
        if let Some(o) = self.observed.groups.get_mut(id) {
            o.value = self.remote.group_info(id);
        }
    }

    fn refresh_resource(&mut self, id: &RemoteId) {
        if let Some(o) = self.observed.resources.get_mut(id) {
            o.value = self.remote.resource_info(id);
        }
    }

    fn refresh_sa(&mut self, id: &RemoteId) {
        let now = self.now;
        if let Some(o) = self.observed.service_accounts.get_mut(id) {
            o.value = self.remote.sa_info(id, now);
        }
    }

    fn group_deleted(&mut self, id: &RemoteId) {
        let now = self.now;
        self.observed.groups.insert(
            id.clone(),
            Observation {
                at: now,
                value: None,
            },
        );
        for o in self.observed.named_groups.values_mut() {
            if let Some(l) = o.value.as_mut() {
                l.retain(|g| &g.id != id);
            }
        }
        if let Some(Observation { value: Some(l), .. }) = self.observed.lapse_groups.as_mut() {
            l.retain(|g| &g.id != id);
        }
        let resources: Vec<RemoteId> = self.observed.resources.keys().cloned().collect();
        for r in resources {
            self.refresh_resource(&r);
        }
    }

    fn apply(&mut self, a: &Action) {
        let now = self.now;
        match a {
            Action::Observe { container, .. } => {
                // Reads fail too, without effect.
                if self.fault() != Fault::Fail {
                    self.record_read(container);
                }
            }
            Action::Transition { grant, to } => {
                if let Some(pos) = self.grants.iter().position(|g| g.id == *grant) {
                    self.grants[pos].state = *to;
                    if to.is_terminal() {
                        let g = self.grants.remove(pos);
                        self.done.push(g);
                    }
                }
            }
            Action::ReleaseEdges { edges } => self.edges.retain(|e| !edges.contains(&e.edge)),
            Action::ForgetObject { grant, kind } => self.forget(*grant, *kind),
            Action::AdoptObject {
                grant,
                kind,
                remote_id,
            } => {
                if let Some(o) = self.object_mut(*grant, *kind) {
                    o.remote_id = Some(remote_id.clone());
                }
            }
            Action::ReportDrift { detail } => self.drift.push(detail.clone()),
            w => self.write(w, now),
        }
    }

    fn write(&mut self, a: &Action, now: DateTime<Utc>) {
        // Intent and claims are recorded before the call.
        let grants: Vec<GrantId> = match a {
            Action::CreateGroup { grant, name, .. } | Action::CreateKey { grant, name, .. } => {
                let kind = if matches!(a, Action::CreateGroup { .. }) {
                    ObjectKind::Group
                } else {
                    ObjectKind::Key
                };
                self.objects
                    .retain(|o| !(o.grant == *grant && o.kind == kind));
                self.objects.push(OwnedObject {
                    grant: *grant,
                    kind,
                    name: name.clone(),
                    remote_id: None,
                    revoked: false,
                });
                vec![*grant]
            }
            Action::DeleteGroup { grant, .. }
            | Action::RevokeKey { grant, .. }
            | Action::DeleteKey { grant, .. } => vec![*grant],
            Action::UpdateGroupUsers { claims, grants, .. }
            | Action::AddAccess { claims, grants, .. }
            | Action::UpdateServiceResources { claims, grants, .. } => {
                for c in claims {
                    self.upsert_edge(c);
                }
                grants.clone()
            }
            Action::RemoveAccess { grants, .. } => grants.clone(),
            other => unreachable!("not a write: {other:?}"),
        };
        let fault = self.fault();
        if fault == Fault::Fail {
            self.backoff(&grants, "transient failure");
            return;
        }
        let result: Result<Option<RemoteId>, RErr> = match a {
            Action::CreateGroup {
                name,
                users,
                resources,
                ..
            } => Ok(Some(self.remote.create_group(name, users, resources))),
            Action::CreateKey {
                service_account,
                name,
                expiration_days,
                ..
            } => self
                .remote
                .create_key(service_account, name, *expiration_days, now)
                .map(Some),
            Action::DeleteGroup { group, .. } => match self.remote.delete_group(group) {
                Err(RErr::Gone) => Ok(None),
                r => r.map(|_| None),
            },
            Action::UpdateGroupUsers {
                group, add, remove, ..
            } => match self.remote.update_group_users(group, add, remove) {
                Err(RErr::Gone) if add.is_empty() => Ok(None),
                r => r.map(|_| None),
            },
            Action::AddAccess { resource, add, .. } => {
                self.remote.add_access(resource, add).map(|_| None)
            }
            Action::RemoveAccess {
                resource,
                principals,
                ..
            } => self
                .remote
                .remove_access(resource, principals)
                .map(|_| None),
            Action::UpdateServiceResources {
                service_account,
                add,
                remove,
                ..
            } => self
                .remote
                .update_sa(service_account, add, remove)
                .map(|_| None),
            Action::RevokeKey { key, .. } => match self.remote.revoke_key(key) {
                Err(RErr::Gone) => Ok(None),
                r => r.map(|_| None),
            },
            Action::DeleteKey { key, .. } => match self.remote.delete_key(key, now) {
                Err(RErr::Gone) => Ok(None),
                r => r.map(|_| None),
            },
            _ => Ok(None),
        };
        let created = match result {
            Err(e) => {
                self.refusals.push(format!("{e:?} for {a:?}"));
                self.backoff(&grants, "refused");
                return;
            }
            Ok(c) => c,
        };
        if fault == Fault::Lost {
            // The executor forgets what it knew of whatever the write may have changed.
            let c = match a {
                Action::CreateGroup { name, .. } => Container::GroupsNamed(name.clone()),
                Action::CreateKey {
                    service_account, ..
                } => Container::ServiceAccount(service_account.clone()),
                Action::DeleteGroup { group, .. } => Container::Group(group.clone()),
                Action::UpdateGroupUsers { group, .. } => Container::Group(group.clone()),
                Action::AddAccess { resource, .. } | Action::RemoveAccess { resource, .. } => {
                    Container::Resource(resource.clone())
                }
                Action::UpdateServiceResources {
                    service_account, ..
                } => Container::ServiceAccount(service_account.clone()),
                Action::RevokeKey { grant, .. } | Action::DeleteKey { grant, .. } => {
                    match self.sa_of(*grant) {
                        Some(sa) => Container::ServiceAccount(sa),
                        None => Container::LapseGroups,
                    }
                }
                _ => Container::LapseGroups,
            };
            self.invalidate(&c);
            if matches!(a, Action::DeleteGroup { .. }) {
                self.invalidate(&Container::LapseGroups);
                self.observed.named_groups.clear();
            }
            self.backoff(&grants, "unknown outcome");
            return;
        }
        self.succeeded(&grants);
        match a {
            Action::CreateGroup { grant, name, .. } => {
                let id = created.expect("a created group has an id");
                if let Some(o) = self.object_mut(*grant, ObjectKind::Group) {
                    o.remote_id = Some(id.clone());
                }
                let info = self.remote.group_info(&id).expect("just created");
                self.observed.groups.insert(
                    id.clone(),
                    Observation {
                        at: now,
                        value: Some(info.clone()),
                    },
                );
                self.observed
                    .named_groups
                    .entry(name.clone())
                    .or_insert(Observation {
                        at: now,
                        value: Some(Vec::new()),
                    })
                    .value
                    .get_or_insert_with(Vec::new)
                    .push(info.clone());
                if let Some(Observation { value: Some(l), .. }) =
                    self.observed.lapse_groups.as_mut()
                {
                    l.push(info);
                }
            }
            Action::CreateKey {
                grant,
                service_account,
                ..
            } => {
                let id = created.expect("a created key has an id");
                if let Some(o) = self.object_mut(*grant, ObjectKind::Key) {
                    o.remote_id = Some(id);
                }
                *self.tokens.entry(*grant).or_default() += 1;
                self.refresh_sa(service_account);
            }
            Action::DeleteGroup { grant, group, .. } => {
                self.group_deleted(group);
                let ours = self.objects.iter().any(|o| {
                    o.grant == *grant
                        && o.kind == ObjectKind::Group
                        && o.remote_id.as_ref() == Some(group)
                });
                if ours {
                    self.forget(*grant, ObjectKind::Group);
                }
            }
            Action::UpdateGroupUsers {
                group,
                claims,
                releases,
                ..
            } => {
                self.refresh_group(group);
                self.settle(claims, releases);
            }
            Action::AddAccess {
                resource, claims, ..
            } => {
                self.refresh_resource(resource);
                self.settle(claims, &[]);
            }
            Action::RemoveAccess {
                resource, releases, ..
            } => {
                self.refresh_resource(resource);
                self.settle(&[], releases);
            }
            Action::UpdateServiceResources {
                service_account,
                claims,
                releases,
                ..
            } => {
                self.refresh_sa(service_account);
                self.settle(claims, releases);
            }
            Action::RevokeKey { grant, owned, .. } => {
                if *owned && let Some(o) = self.object_mut(*grant, ObjectKind::Key) {
                    o.revoked = true;
                }
                if let Some(sa) = self.sa_of(*grant) {
                    self.refresh_sa(&sa);
                }
            }
            Action::DeleteKey { grant, owned, .. } => {
                if *owned {
                    self.forget(*grant, ObjectKind::Key);
                }
                if let Some(sa) = self.sa_of(*grant) {
                    self.refresh_sa(&sa);
                }
            }
            _ => {}
        }
    }

    fn sa_of(&self, grant: GrantId) -> Option<RemoteId> {
        self.grants
            .iter()
            .chain(self.done.iter())
            .find(|g| g.id == grant)
            .and_then(|g| match &g.spec {
                GrantSpec::ServiceKey { service_account } => Some(service_account.id.clone()),
                _ => None,
            })
    }

    /// Someone ends grants early: the API sets `revoked_at`.
    fn apply_revocations(&mut self) {
        let now = self.now;
        for g in &mut self.grants {
            if let Some(t) = self.revoke_at.get(&g.id)
                && *t <= now
                && g.revoked_at.is_none()
                && *t < g.expires_at
            {
                g.revoked_at = Some(*t);
                g.revoke_reason = Some("ended early".into());
            }
        }
    }

    /// Plan and apply until only sweeps and reports remain. Returns the passes it took.
    fn tick(&mut self) -> usize {
        self.apply_revocations();
        for pass in 1..=60 {
            // A stuck run stops injecting failures so that it can settle.
            if pass == 40 {
                self.faults_on = false;
            }
            let p = plan(
                World {
                    grants: &self.grants,
                    edges: &self.edges,
                    objects: &self.objects,
                    observed: &self.observed,
                },
                self.now,
                &self.cfg,
            );
            if let Some(w) = p.next_wake {
                assert!(w > self.now, "next_wake {w} is not in the future");
            }
            if pass == 1 {
                incremental_agrees(
                    World {
                        grants: &self.grants,
                        edges: &self.edges,
                        objects: &self.objects,
                        observed: &self.observed,
                    },
                    self.now,
                    &self.cfg,
                    &p,
                );
            }
            let quiet = p.actions.iter().all(|a| {
                matches!(
                    a,
                    Action::Observe { sweep: true, .. } | Action::ReportDrift { .. }
                )
            });
            for a in &p.actions {
                self.apply(a);
            }
            if quiet {
                return pass;
            }
        }
        panic!(
            "no quiet plan after 60 passes at {}: {:#?}",
            self.now,
            plan(
                World {
                    grants: &self.grants,
                    edges: &self.edges,
                    objects: &self.objects,
                    observed: &self.observed,
                },
                self.now,
                &self.cfg,
            )
        );
    }

    // ------------------------------------------------------------ invariants

    fn all_grants(&self) -> impl Iterator<Item = &Grant> {
        self.grants.iter().chain(self.done.iter())
    }

    /// Whether the grant should hold access now, by the clock alone.
    fn wants(&self, g: &Grant) -> bool {
        g.starts_at <= self.now && self.now < g.ends_at()
    }

    fn check_i2(&self) {
        for (g, u) in &self.pre.memberships {
            assert!(
                self.remote.groups[g].users.contains(u),
                "I2: pre-existing membership {u} in {g} removed at {}",
                self.now
            );
        }
        for (r, g) in &self.pre.access {
            assert_eq!(
                self.remote.access[r].get(g),
                Some(&None),
                "I2: pre-existing access of {g} to {r} removed or given an expiry"
            );
        }
        for (s, r) in &self.pre.sa_resources {
            assert!(
                self.remote.sas[s].resources.contains(r),
                "I2: pre-existing resource {r} of {s} removed"
            );
        }
    }

    /// I1, I3 and convergence, for a quiet state without failures.
    fn check_settled(&self) {
        let now = self.now;
        let live: Vec<&Grant> = self.all_grants().filter(|g| self.wants(g)).collect();
        let ctx = format!("at {now}");
        // Every lapse-named group belongs to exactly one live ephemeral grant (I1, I3).
        let mut per_grant: BTreeMap<String, usize> = BTreeMap::new();
        for g in self.remote.groups.values() {
            if g.name.starts_with(REMOTE_PREFIX) {
                *per_grant.entry(g.name.clone()).or_default() += 1;
            }
        }
        for (name, n) in &per_grant {
            let owner = live.iter().find(|g| &g.id.remote_name() == name);
            assert!(owner.is_some(), "I1: group {name} outlives its grant {ctx}");
            assert_eq!(*n, 1, "I3: {n} groups named {name} {ctx}");
        }
        let lapse_group_of = |id: &RemoteId| -> Option<&Grant> {
            let name = &self.remote.groups.get(id)?.name;
            live.iter().copied().find(|g| &g.id.remote_name() == name)
        };
        // Memberships.
        for (gid, g) in &self.remote.groups {
            for u in &g.users {
                if self.pre.memberships.contains(&(gid.clone(), u.clone())) {
                    continue;
                }
                let needed = if g.name.starts_with(REMOTE_PREFIX) {
                    lapse_group_of(gid).is_some_and(|o| o.spec.users().iter().any(|p| &p.id == u))
                } else {
                    live.iter().any(|o| match &o.spec {
                        GrantSpec::GroupMembership { group, users } => {
                            &group.id == gid && users.iter().any(|p| &p.id == u)
                        }
                        _ => false,
                    })
                };
                assert!(needed, "I1: {u} still in {gid} {ctx}");
            }
        }
        // Access edges: only while needed, with a backstop that never cuts a live grant short.
        for (r, edges) in &self.remote.access {
            for (p, exp) in edges {
                if self.pre.access.contains(&(r.clone(), p.clone())) {
                    continue;
                }
                if exp.is_some_and(|e| e <= now) {
                    continue; // expired: no access
                }
                let needers: Vec<&Grant> = live
                    .iter()
                    .copied()
                    .filter(|o| match &o.spec {
                        GrantSpec::GroupAccess { group, resources } => {
                            &group.id == p && resources.iter().any(|x| &x.id == r)
                        }
                        GrantSpec::EphemeralGroup { resources, .. } => {
                            lapse_group_of(p).is_some_and(|l| l.id == o.id)
                                && resources.iter().any(|x| &x.id == r)
                        }
                        _ => false,
                    })
                    .collect();
                assert!(!needers.is_empty(), "I1: {p} still reaches {r} {ctx}");
                let latest = needers
                    .iter()
                    .map(|g| g.ends_at())
                    .max()
                    .expect("non-empty");
                let exp = exp.expect("lapse always sets an expiry on group access");
                assert!(
                    exp >= latest,
                    "backstop {exp} before the end {latest} {ctx}"
                );
            }
        }
        // Service-account resources.
        for (s, sa) in &self.remote.sas {
            for r in &sa.resources {
                if self.pre.sa_resources.contains(&(s.clone(), r.clone())) {
                    continue;
                }
                let needed = live.iter().any(|o| match &o.spec {
                    GrantSpec::ServiceAccess {
                        service_account,
                        resources,
                    } => &service_account.id == s && resources.iter().any(|x| &x.id == r),
                    _ => false,
                });
                assert!(needed, "I1: {r} still on {s} {ctx}");
            }
            // Keys: only active ones for live grants; revoked ones get deleted.
            for (kid, k) in &sa.keys {
                let st = key_status(k, now);
                assert_ne!(
                    st,
                    KeyStatus::Revoked,
                    "revoked key {kid} not deleted {ctx}"
                );
                if st == KeyStatus::Active {
                    let owner = live.iter().find(|g| g.id.remote_name() == k.name);
                    assert!(
                        owner.is_some(),
                        "I1: key {kid} ({}) outlives its grant {ctx}",
                        k.name
                    );
                }
            }
        }
        // Convergence: every live grant is active and its access is really there.
        for g in &live {
            assert_eq!(
                g.state,
                GrantState::Active,
                "grant {} not active {ctx}",
                g.id
            );
            match &g.spec {
                GrantSpec::GroupMembership { group, users } => {
                    for u in users {
                        assert!(self.remote.groups[&group.id].users.contains(&u.id), "{ctx}");
                    }
                }
                GrantSpec::GroupAccess { group, resources } => {
                    for r in resources {
                        let e = self.remote.access[&r.id].get(&group.id);
                        assert!(e.is_some_and(|x| x.is_none_or(|t| t > now)), "{ctx}");
                    }
                }
                GrantSpec::ServiceAccess {
                    service_account,
                    resources,
                } => {
                    for r in resources {
                        assert!(
                            self.remote.sas[&service_account.id]
                                .resources
                                .contains(&r.id)
                        );
                    }
                }
                GrantSpec::EphemeralGroup { users, resources } => {
                    let name = g.id.remote_name();
                    let (id, lg) = self
                        .remote
                        .groups
                        .iter()
                        .find(|(_, x)| x.name == name)
                        .expect("the live grant's group exists");
                    let want: BTreeSet<RemoteId> = users.iter().map(|u| u.id.clone()).collect();
                    assert_eq!(lg.users, want, "{ctx}");
                    for r in resources {
                        assert!(self.remote.access[&r.id].contains_key(id), "{ctx}");
                    }
                }
                GrantSpec::ServiceKey { service_account } => {
                    let active = self.remote.sas[&service_account.id]
                        .keys
                        .values()
                        .filter(|k| {
                            k.name == g.id.remote_name() && key_status(k, now) == KeyStatus::Active
                        })
                        .count();
                    assert_eq!(active, 1, "one active key for {} {ctx}", g.id);
                }
            }
        }
        // Ended grants are finished, with the right end state.
        for g in self.all_grants().filter(|g| now >= g.ends_at()) {
            let want = if g.revoked_at.is_some_and(|r| r < g.expires_at) {
                GrantState::Revoked
            } else {
                GrantState::Expired
            };
            assert_eq!(g.state, want, "grant {} {ctx}", g.id);
        }
        // Nothing owned that no grant explains, and no alarm without cause.
        for e in &self.edges {
            assert!(e.confirmed, "unconfirmed claim {e:?} left {ctx}");
        }
    }
}

// ---------------------------------------------------------------- generation

#[derive(Debug, Clone)]
struct GenGrant {
    kind: u8,
    users: u8,
    resources: u8,
    target: usize,
    start_min: i64,
    dur_min: i64,
    revoke_after_min: Option<i64>,
}

fn pick(all: &[&str], bits: u8) -> Vec<Principal> {
    let mut v: Vec<Principal> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, id)| Principal::new(*id, format!("{id}-name")))
        .collect();
    if v.is_empty() {
        v.push(Principal::new(all[0], format!("{}-name", all[0])));
    }
    v
}

fn make_grant(i: usize, g: &GenGrant) -> Grant {
    let spec = match g.kind {
        0 => GrantSpec::GroupMembership {
            group: Principal::new(GROUPS[g.target % 2], "group"),
            users: pick(&USERS, g.users),
        },
        1 => GrantSpec::GroupAccess {
            group: Principal::new(GROUPS[g.target % 2], "group"),
            resources: pick(&RESOURCES, g.resources),
        },
        2 => GrantSpec::ServiceAccess {
            service_account: Principal::new(SAS[g.target % 2], "sa"),
            resources: pick(&RESOURCES, g.resources),
        },
        3 => GrantSpec::EphemeralGroup {
            users: pick(&USERS, g.users),
            resources: pick(&RESOURCES, g.resources),
        },
        _ => GrantSpec::ServiceKey {
            service_account: Principal::new(SAS[g.target % 2], "sa"),
        },
    };
    Grant {
        id: gid(i as u128 + 1),
        spec,
        requester: "model".into(),
        reason: "model".into(),
        created_at: at(0),
        starts_at: at(g.start_min),
        expires_at: at(g.start_min + g.dur_min),
        state: GrantState::Scheduled,
        revoked_at: None,
        revoke_reason: None,
        retry: RetryState::default(),
    }
}

fn gen_grant() -> impl Strategy<Value = GenGrant> {
    (
        0u8..5,
        any::<u8>(),
        any::<u8>(),
        0usize..2,
        0i64..120,
        1i64..90,
        prop::option::weighted(0.25, 0i64..90),
    )
        .prop_map(
            |(kind, users, resources, target, start_min, dur_min, revoke_after_min)| GenGrant {
                kind,
                users,
                resources,
                target,
                start_min,
                dur_min,
                revoke_after_min,
            },
        )
}

#[derive(Debug, Clone)]
struct Scenario {
    grants: Vec<GenGrant>,
    pre_members: u8,
    pre_access: u8,
    pre_sa: u8,
    steps: Vec<i64>,
    faults: Vec<u8>,
    /// Per step: someone changes lapse's groups behind its back.
    drift: Vec<u8>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(gen_grant(), 1..8),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(0i64..900, 10..40),
        prop::collection::vec(any::<u8>(), 1..64),
        prop::collection::vec(any::<u8>(), 40),
    )
        .prop_map(
            |(grants, pre_members, pre_access, pre_sa, steps, faults, drift)| Scenario {
                grants,
                pre_members,
                pre_access,
                pre_sa,
                steps,
                faults,
                drift,
            },
        )
}

fn build(s: &Scenario, faults_on: bool) -> Sim {
    let mut remote = Remote::default();
    let mut pre = Pre::default();
    for (gi, g) in GROUPS.iter().enumerate() {
        let mut users = BTreeSet::new();
        for (ui, u) in USERS.iter().enumerate() {
            if s.pre_members & (1 << (gi * 4 + ui)) != 0 {
                users.insert(rid(u));
                pre.memberships.insert((rid(g), rid(u)));
            }
        }
        remote.groups.insert(
            rid(g),
            RGroup {
                name: format!("{g}-name"),
                users,
            },
        );
    }
    for (ri, r) in RESOURCES.iter().enumerate() {
        let mut edges = BTreeMap::new();
        for (gi, g) in GROUPS.iter().enumerate() {
            if s.pre_access & (1 << (ri * 2 + gi)) != 0 {
                edges.insert(rid(g), None);
                pre.access.insert((rid(r), rid(g)));
            }
        }
        remote.access.insert(rid(r), edges);
    }
    for (si, sa) in SAS.iter().enumerate() {
        let mut res = BTreeSet::new();
        for (ri, r) in RESOURCES.iter().enumerate() {
            if s.pre_sa & (1 << (si * 3 + ri)) != 0 {
                res.insert(rid(r));
                pre.sa_resources.insert((rid(sa), rid(r)));
            }
        }
        remote.sas.insert(
            rid(sa),
            RSa {
                resources: res,
                keys: BTreeMap::new(),
            },
        );
    }
    let grants: Vec<Grant> = s
        .grants
        .iter()
        .enumerate()
        .map(|(i, g)| make_grant(i, g))
        .collect();
    let revoke_at = s
        .grants
        .iter()
        .zip(&grants)
        .filter_map(|(gg, g)| {
            gg.revoke_after_min
                .map(|m| (g.id, g.starts_at + Duration::minutes(m)))
        })
        .collect();
    Sim {
        remote,
        pre,
        grants,
        done: Vec::new(),
        revoke_at,
        edges: Vec::new(),
        objects: Vec::new(),
        observed: Observed::default(),
        cfg: PlanConfig::default(),
        now: at(0),
        faults: s.faults.clone(),
        fault_idx: 0,
        faults_on,
        refusals: Vec::new(),
        drift: Vec::new(),
        tokens: BTreeMap::new(),
    }
}

fn run_without_failures(s: &Scenario) {
    let mut sim = build(s, false);
    let mut steps = s.steps.clone();
    // Finish well after every grant has ended.
    steps.extend(std::iter::repeat_n(600, 30));
    for dt in steps {
        sim.now += Duration::seconds(dt);
        let passes = sim.tick();
        // Reads, writes, confirmation: a handful of passes settle any situation.
        assert!(passes <= 6, "{passes} passes to settle at {}", sim.now);
        sim.check_i2();
        sim.check_settled();
        assert!(
            sim.refusals.is_empty(),
            "refused writes: {:#?}",
            sim.refusals
        );
        assert!(
            sim.drift.is_empty(),
            "false drift reports: {:#?}",
            sim.drift
        );
    }
    assert!(
        sim.grants.is_empty(),
        "unfinished grants: {:#?}",
        sim.grants
    );
    assert!(sim.objects.is_empty(), "objects left: {:#?}", sim.objects);
    assert!(sim.edges.is_empty(), "edges left: {:#?}", sim.edges);
}

/// Someone deletes one of lapse's groups, or adds a stranger to one.
fn inject_drift(sim: &mut Sim, v: u8) {
    let lapse: Vec<RemoteId> = sim
        .remote
        .groups
        .iter()
        .filter(|(_, g)| g.name.starts_with(REMOTE_PREFIX))
        .map(|(id, _)| id.clone())
        .collect();
    if lapse.is_empty() || v < 220 {
        return;
    }
    let id = &lapse[usize::from(v) % lapse.len()];
    if v < 238 {
        sim.remote.delete_group(id).expect("exists");
    } else {
        let stranger = rid(USERS[usize::from(v) % USERS.len()]);
        sim.remote
            .groups
            .get_mut(id)
            .expect("exists")
            .users
            .insert(stranger);
    }
}

fn run_with_failures(s: &Scenario) {
    let mut sim = build(s, true);
    for (i, dt) in s.steps.iter().enumerate() {
        inject_drift(&mut sim, s.drift[i % s.drift.len()]);
        sim.now += Duration::seconds(*dt);
        sim.faults_on = true;
        sim.tick();
        sim.check_i2();
    }
    // Failures stop: once every backoff has run out the state must settle.
    sim.faults_on = false;
    sim.refusals.clear();
    for _ in 0..3 {
        sim.now += Duration::minutes(5);
        sim.tick();
    }
    sim.check_i2();
    sim.check_settled();
    for _ in 0..30 {
        sim.now += Duration::minutes(10);
        sim.tick();
        sim.check_i2();
        sim.check_settled();
    }
    assert!(
        sim.grants.is_empty(),
        "unfinished grants: {:#?}",
        sim.grants
    );
    assert!(sim.objects.is_empty(), "objects left: {:#?}", sim.objects);
    assert!(sim.edges.is_empty(), "edges left: {:#?}", sim.edges);
    // Tokens only ever reach the requester for one key per grant.
    for (g, n) in &sim.tokens {
        assert!(*n >= 1, "{g}");
    }
}

// ---------------------------------------------------------------- incremental planning

/// Whether a sweep put the action in the full plan (an incremental pass leaves it to the sweep).
fn from_sweep(a: &Action) -> bool {
    match a {
        Action::Observe { sweep, .. } => *sweep,
        Action::ReportDrift { detail } => detail.contains("belongs to no open grant"),
        _ => false,
    }
}

/// Whether a full-plan action is one the slice must produce: it names a grant of the slice, an
/// object of the slice or a container of the slice.
fn touches(a: &Action, s: &Slice) -> bool {
    let grant_in = |id: &GrantId| {
        s.grants.iter().any(|g| g.id == *id) || s.objects.iter().any(|o| o.grant == *id)
    };
    let container_in = |c: Container| s.containers.contains(&c);
    match a {
        Action::Observe { container, .. } => match container {
            Container::GroupsNamed(name) => s.objects.iter().any(|o| &o.name == name),
            c => container_in(c.clone()),
        },
        Action::Transition { grant, .. }
        | Action::CreateGroup { grant, .. }
        | Action::AdoptObject { grant, .. }
        | Action::ForgetObject { grant, .. }
        | Action::DeleteGroup { grant, .. }
        | Action::CreateKey { grant, .. }
        | Action::RevokeKey { grant, .. }
        | Action::DeleteKey { grant, .. } => grant_in(grant),
        Action::UpdateGroupUsers { group, .. } => container_in(Container::Group(group.clone())),
        Action::AddAccess { resource, .. } | Action::RemoveAccess { resource, .. } => {
            container_in(Container::Resource(resource.clone()))
        }
        Action::UpdateServiceResources {
            service_account, ..
        } => container_in(Container::ServiceAccount(service_account.clone())),
        Action::ReleaseEdges { .. } | Action::ReportDrift { .. } => false,
    }
}

fn released(p: &Plan) -> BTreeSet<Edge> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::ReleaseEdges { edges } => Some(edges.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// An incremental pass (the planner over a slice seeded by some grants) and the full pass
/// agree: every action of the slice's plan is in the full plan, and every action of the full
/// plan that touches the slice is in the slice's plan (releases compared edge by edge). Seeds:
/// each grant alone, the grants due now (a deadline or retry time passed), and all of them.
fn incremental_agrees(world: World<'_>, now: DateTime<Utc>, cfg: &PlanConfig, full: &Plan) {
    let due: BTreeSet<GrantId> = world
        .grants
        .iter()
        .filter(|g| {
            g.starts_at <= now
                || g.ends_at() <= now
                || g.retry.next_attempt_at.is_some_and(|t| t <= now)
        })
        .map(|g| g.id)
        .collect();
    let mut seeds: Vec<BTreeSet<GrantId>> = world
        .grants
        .iter()
        .map(|g| BTreeSet::from([g.id]))
        .collect();
    seeds.push(due);
    seeds.push(world.grants.iter().map(|g| g.id).collect());
    let full_released = released(full);
    for seed in seeds {
        let s = slice(world, &seed, &BTreeSet::new(), cfg);
        let part = plan_slice(s.world(), now, cfg);
        let part_released = released(&part);
        for a in &part.actions {
            match a {
                Action::ReleaseEdges { .. } => {}
                a => assert!(
                    full.actions.contains(a),
                    "seed {seed:?}: the incremental pass plans {a:?}, the full pass does not: {:#?}",
                    full.actions
                ),
            }
        }
        assert!(
            part_released.is_subset(&full_released),
            "seed {seed:?}: released {part_released:?} ⊄ {full_released:?}"
        );
        for a in full.actions.iter().filter(|a| !from_sweep(a)) {
            if touches(a, &s) {
                assert!(
                    part.actions.contains(a),
                    "seed {seed:?}: the full pass plans {a:?}, the incremental pass does not: {:#?}",
                    part.actions
                );
            }
        }
        for e in &full_released {
            if s.containers.contains(&edge_container(e)) {
                assert!(
                    part_released.contains(e),
                    "seed {seed:?}: {e:?} not released"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn planner_converges_and_keeps_invariants(s in scenario()) {
        run_without_failures(&s);
    }

    #[test]
    fn planner_recovers_from_failures(s in scenario()) {
        run_with_failures(&s);
    }
}
