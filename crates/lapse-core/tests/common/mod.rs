//! Fixture builders shared by the planner's tests.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use lapse_core::ownership::{Edge, EdgeKind, ObjectKind, OwnedEdge, OwnedObject};
use lapse_core::plan::{Action, Observation, Observed, Plan, PlanConfig, World, plan};
use lapse_core::provider::{
    AccessEdge, GroupInfo, GroupType, KeyInfo, KeyStatus, PrincipalKind, ResourceInfo,
    ServiceAccountInfo,
};
use lapse_core::{Grant, GrantId, GrantSpec, GrantState, Principal, RemoteId, RetryState};

/// The fixed origin of every test clock.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
}

/// `t0` plus whole minutes.
pub fn at(min: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(min)
}

pub fn rid(s: &str) -> RemoteId {
    RemoteId::new(s)
}

pub fn gid(n: u128) -> GrantId {
    GrantId::from_parts(t0(), n)
}

fn principals(ids: &[&str]) -> Vec<Principal> {
    ids.iter()
        .map(|id| Principal::new(*id, format!("{id}-name")))
        .collect()
}

/// Builds a grant; by default it runs from minute 0 to minute 60 and is `Applying`.
pub struct GrantBuilder {
    grant: Grant,
}

impl GrantBuilder {
    fn new(spec: GrantSpec) -> Self {
        Self {
            grant: Grant {
                id: gid(1),
                spec,
                requester: "tester".into(),
                reason: "INC-1".into(),
                created_at: at(-10),
                starts_at: at(0),
                expires_at: at(60),
                state: GrantState::Applying,
                revoked_at: None,
                revoke_reason: None,
                retry: RetryState::default(),
            },
        }
    }

    pub fn membership(group: &str, users: &[&str]) -> Self {
        Self::new(GrantSpec::GroupMembership {
            group: Principal::new(group, format!("{group}-name")),
            users: principals(users),
        })
    }

    pub fn access(group: &str, resources: &[&str]) -> Self {
        Self::new(GrantSpec::GroupAccess {
            group: Principal::new(group, format!("{group}-name")),
            resources: principals(resources),
        })
    }

    pub fn service_access(sa: &str, resources: &[&str]) -> Self {
        Self::new(GrantSpec::ServiceAccess {
            service_account: Principal::new(sa, format!("{sa}-name")),
            resources: principals(resources),
        })
    }

    pub fn ephemeral(users: &[&str], resources: &[&str]) -> Self {
        Self::new(GrantSpec::EphemeralGroup {
            users: principals(users),
            resources: principals(resources),
        })
    }

    pub fn key(sa: &str) -> Self {
        Self::new(GrantSpec::ServiceKey {
            service_account: Principal::new(sa, format!("{sa}-name")),
        })
    }

    pub fn id(mut self, n: u128) -> Self {
        self.grant.id = gid(n);
        self
    }

    /// Start and expiry in minutes after `t0`.
    pub fn window(mut self, start: i64, end: i64) -> Self {
        self.grant.starts_at = at(start);
        self.grant.expires_at = at(end);
        self
    }

    pub fn state(mut self, s: GrantState) -> Self {
        self.grant.state = s;
        self
    }

    pub fn revoked_at(mut self, min: i64) -> Self {
        self.grant.revoked_at = Some(at(min));
        self.grant.revoke_reason = Some("done early".into());
        self
    }

    pub fn backoff_until(mut self, min: i64) -> Self {
        self.grant.retry = RetryState {
            attempts: 2,
            next_attempt_at: Some(at(min)),
            last_error: Some("transient failure: 503".into()),
        };
        self
    }

    pub fn build(self) -> Grant {
        self.grant
    }
}

pub fn membership_edge(group: &str, user: &str) -> Edge {
    Edge::new(EdgeKind::Membership, &rid(group), &rid(user))
}

pub fn access_edge(resource: &str, group: &str) -> Edge {
    Edge::new(EdgeKind::Access, &rid(resource), &rid(group))
}

pub fn sa_edge(sa: &str, resource: &str) -> Edge {
    Edge::new(EdgeKind::ServiceResource, &rid(sa), &rid(resource))
}

pub fn owned(edge: Edge, by: GrantId, expires_at: Option<DateTime<Utc>>) -> OwnedEdge {
    OwnedEdge {
        edge,
        added_by: by,
        expires_at,
        confirmed: true,
    }
}

pub fn group_object(grant: GrantId, remote: Option<&str>) -> OwnedObject {
    OwnedObject {
        grant,
        kind: ObjectKind::Group,
        name: grant.remote_name(),
        remote_id: remote.map(rid),
        revoked: false,
    }
}

pub fn key_object(grant: GrantId, remote: Option<&str>, revoked: bool) -> OwnedObject {
    OwnedObject {
        grant,
        kind: ObjectKind::Key,
        name: grant.remote_name(),
        remote_id: remote.map(rid),
        revoked,
    }
}

pub fn group_info(id: &str, name: &str, users: &[&str]) -> GroupInfo {
    GroupInfo {
        id: rid(id),
        name: name.into(),
        group_type: GroupType::Manual,
        is_active: true,
        users: users.iter().map(|u| rid(u)).collect(),
        resources: Vec::new(),
    }
}

pub fn key_info(id: &str, name: &str, status: KeyStatus) -> KeyInfo {
    KeyInfo {
        id: rid(id),
        name: name.into(),
        status,
        expires_at: None,
    }
}

/// Builds the planner's view of the remote side.
#[derive(Default, Clone)]
pub struct ObservedBuilder {
    observed: Observed,
}

impl ObservedBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn group(mut self, id: &str, users: &[&str], when: i64) -> Self {
        self.observed.groups.insert(
            rid(id),
            Observation {
                at: at(when),
                value: Some(group_info(id, &format!("{id}-name"), users)),
            },
        );
        self
    }

    pub fn group_info(mut self, info: GroupInfo, when: i64) -> Self {
        self.observed.groups.insert(
            info.id.clone(),
            Observation {
                at: at(when),
                value: Some(info),
            },
        );
        self
    }

    pub fn group_missing(mut self, id: &str, when: i64) -> Self {
        self.observed.groups.insert(
            rid(id),
            Observation {
                at: at(when),
                value: None,
            },
        );
        self
    }

    /// A resource and its access edges: `(group, expiry in minutes)`.
    pub fn resource(mut self, id: &str, access: &[(&str, Option<i64>)], when: i64) -> Self {
        self.observed.resources.insert(
            rid(id),
            Observation {
                at: at(when),
                value: Some(ResourceInfo {
                    id: rid(id),
                    name: format!("{id}-name"),
                    access: access
                        .iter()
                        .map(|(p, exp)| AccessEdge {
                            principal: rid(p),
                            principal_kind: PrincipalKind::Group,
                            expires_at: exp.map(at),
                        })
                        .collect(),
                }),
            },
        );
        self
    }

    pub fn service_account(
        mut self,
        id: &str,
        resources: &[&str],
        keys: Vec<KeyInfo>,
        when: i64,
    ) -> Self {
        self.observed.service_accounts.insert(
            rid(id),
            Observation {
                at: at(when),
                value: Some(ServiceAccountInfo {
                    id: rid(id),
                    name: format!("{id}-name"),
                    resources: resources.iter().map(|r| rid(r)).collect(),
                    keys,
                }),
            },
        );
        self
    }

    pub fn named(mut self, name: &str, groups: Vec<GroupInfo>, when: i64) -> Self {
        self.observed.named_groups.insert(
            name.into(),
            Observation {
                at: at(when),
                value: Some(groups),
            },
        );
        self
    }

    pub fn lapse_groups(mut self, groups: Vec<GroupInfo>, when: i64) -> Self {
        self.observed.lapse_groups = Some(Observation {
            at: at(when),
            value: Some(groups),
        });
        self
    }

    pub fn build(self) -> Observed {
        self.observed
    }
}

/// Owns everything a `World` borrows.
#[derive(Default, Clone)]
pub struct Fixture {
    pub grants: Vec<Grant>,
    pub edges: Vec<OwnedEdge>,
    pub objects: Vec<OwnedObject>,
    pub observed: Observed,
    pub cfg: PlanConfig,
}

impl Fixture {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn grant(mut self, g: Grant) -> Self {
        self.grants.push(g);
        self
    }
    pub fn edge(mut self, e: OwnedEdge) -> Self {
        self.edges.push(e);
        self
    }
    pub fn object(mut self, o: OwnedObject) -> Self {
        self.objects.push(o);
        self
    }
    pub fn observed(mut self, o: ObservedBuilder) -> Self {
        self.observed = o.build();
        self
    }
    pub fn world(&self) -> World<'_> {
        World {
            grants: &self.grants,
            edges: &self.edges,
            objects: &self.objects,
            observed: &self.observed,
        }
    }
    /// Plan at `t0 + min` minutes.
    pub fn plan_at(&self, min: i64) -> Plan {
        plan(self.world(), at(min), &self.cfg)
    }
}

/// The actions that change something remotely.
pub fn writes(p: &Plan) -> Vec<&Action> {
    p.actions.iter().filter(|a| a.is_write()).collect()
}

/// Every action except sweep reads and drift reports.
pub fn significant(p: &Plan) -> Vec<&Action> {
    p.actions
        .iter()
        .filter(|a| {
            !matches!(
                a,
                Action::Observe { sweep: true, .. } | Action::ReportDrift { .. }
            )
        })
        .collect()
}

pub fn transitions(p: &Plan) -> Vec<(GrantId, GrantState)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Transition { grant, to } => Some((*grant, *to)),
            _ => None,
        })
        .collect()
}

pub fn drift_reports(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::ReportDrift { detail } => Some(detail.as_str()),
            _ => None,
        })
        .collect()
}
