//! Keeping the planner's view of the remote side current: reads replace it, lapse's own
//! successful writes are applied to it, and a lost answer makes the affected part unknown.

use chrono::{DateTime, Utc};
use lapse_core::plan::{Container, Observation, Observed};
use lapse_core::provider::{
    AccessEdge, AccessToAdd, GroupInfo, GroupType, KeyInfo, PrincipalKind, ResourceInfo,
    ServiceAccountInfo,
};
use lapse_core::{ObjectKind, OwnedObject, RemoteId};

/// What one read returned.
pub(crate) enum Reading {
    Group(Option<GroupInfo>),
    Resource(Option<ResourceInfo>),
    ServiceAccount(Option<ServiceAccountInfo>),
    Groups(Vec<GroupInfo>),
}

pub(crate) fn record(
    observed: &mut Observed,
    container: &Container,
    reading: Reading,
    objects: &[&OwnedObject],
    at: DateTime<Utc>,
) {
    match (container, reading) {
        (Container::Group(id), Reading::Group(value)) => {
            observed
                .groups
                .insert(id.clone(), Observation { at, value });
        }
        (Container::Resource(id), Reading::Resource(value)) => {
            observed
                .resources
                .insert(id.clone(), Observation { at, value });
        }
        (Container::ServiceAccount(id), Reading::ServiceAccount(value)) => {
            observed
                .service_accounts
                .insert(id.clone(), Observation { at, value });
        }
        (Container::GroupsNamed(name), Reading::Groups(list)) => {
            for g in &list {
                observed.groups.insert(
                    g.id.clone(),
                    Observation {
                        at,
                        value: Some(g.clone()),
                    },
                );
            }
            observed.named_groups.insert(
                name.clone(),
                Observation {
                    at,
                    value: Some(list),
                },
            );
        }
        (Container::LapseGroups, Reading::Groups(list)) => {
            // lapse's groups that the listing lacks are gone.
            for o in objects.iter().filter(|o| o.kind == ObjectKind::Group) {
                if let Some(id) = &o.remote_id
                    && !list.iter().any(|g| &g.id == id)
                {
                    observed
                        .groups
                        .insert(id.clone(), Observation { at, value: None });
                }
            }
            let mut by_name: std::collections::HashMap<String, Vec<GroupInfo>> = Default::default();
            for g in &list {
                observed.groups.insert(
                    g.id.clone(),
                    Observation {
                        at,
                        value: Some(g.clone()),
                    },
                );
                by_name.entry(g.name.clone()).or_default().push(g.clone());
            }
            observed.named_groups.retain(|n, _| by_name.contains_key(n));
            for (name, groups) in by_name {
                observed.named_groups.insert(
                    name,
                    Observation {
                        at,
                        value: Some(groups),
                    },
                );
            }
            observed.lapse_groups = Some(Observation {
                at,
                value: Some(list),
            });
        }
        _ => {}
    }
}

/// Forget what was known of a container (after a lost answer).
pub(crate) fn invalidate(observed: &mut Observed, container: &Container) {
    match container {
        Container::Group(id) => {
            observed.groups.remove(id);
        }
        Container::Resource(id) => {
            observed.resources.remove(id);
        }
        Container::ServiceAccount(id) => {
            observed.service_accounts.remove(id);
        }
        Container::GroupsNamed(name) => {
            observed.named_groups.remove(name);
        }
        Container::LapseGroups => observed.lapse_groups = None,
    }
}

pub(crate) fn group_users_changed(
    observed: &mut Observed,
    group: &RemoteId,
    add: &[RemoteId],
    remove: &[RemoteId],
) {
    if let Some(Observation { value: Some(g), .. }) = observed.groups.get_mut(group) {
        g.users.retain(|u| !remove.contains(u));
        for a in add {
            if !g.users.contains(a) {
                g.users.push(a.clone());
            }
        }
    }
}

pub(crate) fn access_added(
    observed: &mut Observed,
    resource: &RemoteId,
    add: &[AccessToAdd],
    kind: PrincipalKind,
) {
    if let Some(Observation { value: Some(r), .. }) = observed.resources.get_mut(resource) {
        for a in add {
            r.access.retain(|e| e.principal != a.principal);
            r.access.push(AccessEdge {
                principal: a.principal.clone(),
                principal_kind: kind,
                expires_at: a.expires_at,
            });
        }
    }
}

pub(crate) fn access_removed(
    observed: &mut Observed,
    resource: &RemoteId,
    principals: &[RemoteId],
) {
    if let Some(Observation { value: Some(r), .. }) = observed.resources.get_mut(resource) {
        r.access.retain(|e| !principals.contains(&e.principal));
    }
}

pub(crate) fn service_resources_changed(
    observed: &mut Observed,
    sa: &RemoteId,
    add: &[RemoteId],
    remove: &[RemoteId],
) {
    if let Some(Observation { value: Some(s), .. }) = observed.service_accounts.get_mut(sa) {
        s.resources.retain(|r| !remove.contains(r));
        for a in add {
            if !s.resources.contains(a) {
                s.resources.push(a.clone());
            }
        }
    }
}

pub(crate) fn group_created(
    observed: &mut Observed,
    id: &RemoteId,
    name: &str,
    users: &[RemoteId],
    resources: &[RemoteId],
    at: DateTime<Utc>,
) {
    let info = GroupInfo {
        id: id.clone(),
        name: name.to_owned(),
        group_type: GroupType::Manual,
        is_active: true,
        users: users.to_vec(),
        resources: resources.to_vec(),
    };
    observed.groups.insert(
        id.clone(),
        Observation {
            at,
            value: Some(info.clone()),
        },
    );
    let entry = observed
        .named_groups
        .entry(name.to_owned())
        .or_insert(Observation {
            at,
            value: Some(Vec::new()),
        });
    if let Some(list) = entry.value.as_mut()
        && !list.iter().any(|g| &g.id == id)
    {
        list.push(info);
    }
}

pub(crate) fn group_deleted(observed: &mut Observed, id: &RemoteId, at: DateTime<Utc>) {
    observed
        .groups
        .insert(id.clone(), Observation { at, value: None });
    for o in observed.named_groups.values_mut() {
        if let Some(list) = o.value.as_mut() {
            list.retain(|g| &g.id != id);
        }
    }
    if let Some(Observation {
        value: Some(list), ..
    }) = observed.lapse_groups.as_mut()
    {
        list.retain(|g| &g.id != id);
    }
    for r in observed.resources.values_mut() {
        if let Some(info) = r.value.as_mut() {
            info.access.retain(|e| &e.principal != id);
        }
    }
}

pub(crate) fn key_changed(observed: &mut Observed, sa: &RemoteId, key: KeyInfo) {
    if let Some(Observation { value: Some(s), .. }) = observed.service_accounts.get_mut(sa) {
        s.keys.retain(|k| k.id != key.id);
        s.keys.push(key);
    }
}

pub(crate) fn key_deleted(observed: &mut Observed, key: &RemoteId) {
    for o in observed.service_accounts.values_mut() {
        if let Some(s) = o.value.as_mut() {
            s.keys.retain(|k| &k.id != key);
        }
    }
}

/// Forgets the observations of containers lapse no longer manages: no grant it holds names
/// them, it owns no edge in them and no object of its is them (a group it deleted, the resource
/// of a grant that ended). The sweep re-reads what is observed, so what is forgotten here is not
/// read again: the sweep's cost follows what is live.
pub(crate) fn retain_managed(
    observed: &mut Observed,
    grants: &[lapse_core::Grant],
    edges: &[lapse_core::OwnedEdge],
    objects: &[OwnedObject],
) {
    use lapse_core::{EdgeKind, GrantSpec};
    use std::collections::HashSet;
    let mut groups: HashSet<&RemoteId> = HashSet::new();
    let mut resources: HashSet<&RemoteId> = HashSet::new();
    let mut accounts: HashSet<&RemoteId> = HashSet::new();
    for g in grants {
        match &g.spec {
            GrantSpec::EphemeralGroup { resources: rs, .. } => {
                resources.extend(rs.iter().map(|r| &r.id));
            }
            GrantSpec::GroupMembership { group, .. } => {
                groups.insert(&group.id);
            }
            GrantSpec::GroupAccess { resources: rs, .. } => {
                resources.extend(rs.iter().map(|r| &r.id));
            }
            GrantSpec::ServiceAccess {
                service_account, ..
            }
            | GrantSpec::ServiceKey { service_account } => {
                accounts.insert(&service_account.id);
            }
        }
    }
    for e in edges {
        match e.edge.kind {
            EdgeKind::Membership => groups.insert(&e.edge.container),
            EdgeKind::Access => resources.insert(&e.edge.container),
            EdgeKind::ServiceResource => accounts.insert(&e.edge.container),
        };
    }
    for o in objects {
        if let (ObjectKind::Group, Some(id)) = (o.kind, &o.remote_id) {
            groups.insert(id);
        }
    }
    let names: HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    observed.groups.retain(|id, _| groups.contains(id));
    observed.resources.retain(|id, _| resources.contains(id));
    observed
        .service_accounts
        .retain(|id, _| accounts.contains(id));
    observed
        .named_groups
        .retain(|name, _| names.contains(name.as_str()));
    if objects.iter().all(|o| o.kind != ObjectKind::Group) {
        observed.lapse_groups = None;
    }
}
