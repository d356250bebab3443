//! The pure reconcile planner: from grants, the ownership record and what was last observed
//! remotely, decide what to do now. No IO; `now` is passed in; the same inputs give the same plan.
//!
//! The planner is level-triggered: it never knows why it runs. Desired access is derived from the
//! grants that are live at `now`; everything lapse owns that no live grant needs is removed;
//! everything a live grant needs that is missing is added, after reading the container once so
//! that access which existed before the grant is never claimed (I2).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::grant::{Grant, GrantId, GrantSpec, GrantState, Principal};
use crate::ownership::{Edge, EdgeKind, ObjectKind, OwnedEdge, OwnedObject};
use crate::provider::{
    AccessToAdd, GroupInfo, KeyStatus, Priority, RemoteId, ResourceInfo, ServiceAccountInfo,
};

/// How far a remote or stored expiry may fall short of the wanted one and still count as set:
/// both sides round timestamps, and rewriting an edge for less than this would waste a write.
const EXPIRY_SLACK: Duration = Duration::seconds(1);

/// How far a remote expiry may fall short of one lapse has already written, confirmed, before
/// it counts as changed: a server that stores `expiresAt` truncated to the minute reports up to
/// this much less. Rewriting for that would repeat every sweep and never converge, so an edge
/// is rewritten at most once for one wanted expiry. Falling short only ends access earlier.
const STORED_EXPIRY_SLACK: Duration = Duration::minutes(1);

/// Tunables of the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// Added to a grant's end for the server-side `expiresAt` backstop on access edges.
    pub backstop_grace: Duration,
    /// Attach an ephemeral group's resources as expiring edges rather than at creation.
    pub ephemeral_backstop: bool,
    /// Observations older than this are read again by the sweep.
    pub sweep_interval: Duration,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            backstop_grace: Duration::minutes(5),
            ephemeral_backstop: true,
            sweep_interval: Duration::minutes(5),
        }
    }
}

/// Something the planner may need to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Container {
    Group(RemoteId),
    Resource(RemoteId),
    ServiceAccount(RemoteId),
    /// Every group carrying this exact name (names are not unique remotely).
    GroupsNamed(String),
    /// Every group whose name carries lapse's prefix.
    LapseGroups,
}

/// What was read, and when. `value: None` means the object does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation<T> {
    pub at: DateTime<Utc>,
    pub value: Option<T>,
}

/// The planner's view of the remote side: the last reads, kept current by the executor's own
/// successful writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub groups: HashMap<RemoteId, Observation<GroupInfo>>,
    pub resources: HashMap<RemoteId, Observation<ResourceInfo>>,
    pub service_accounts: HashMap<RemoteId, Observation<ServiceAccountInfo>>,
    pub named_groups: HashMap<String, Observation<Vec<GroupInfo>>>,
    pub lapse_groups: Option<Observation<Vec<GroupInfo>>>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// Grants that are not terminal.
    pub grants: &'a [Grant],
    pub edges: &'a [OwnedEdge],
    pub objects: &'a [OwnedObject],
    pub observed: &'a Observed,
}

/// Why a group is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteReason {
    /// The grant ended.
    Revoke,
    /// A second group with the grant's name (a create whose answer was lost).
    Duplicate,
}

/// One step for the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Read a container. `sweep` reads are paced; others are needed now.
    Observe { container: Container, sweep: bool },
    /// Move a grant to another state.
    Transition { grant: GrantId, to: GrantState },
    /// Create the ephemeral group (record the intent first).
    CreateGroup {
        grant: GrantId,
        name: String,
        users: Vec<RemoteId>,
        resources: Vec<RemoteId>,
    },
    /// Record the remote id of an object found by its name after an unknown outcome.
    AdoptObject {
        grant: GrantId,
        kind: ObjectKind,
        remote_id: RemoteId,
    },
    /// Forget an object that is gone remotely (and the edges that hung on it).
    ForgetObject { grant: GrantId, kind: ObjectKind },
    DeleteGroup {
        grant: GrantId,
        group: RemoteId,
        reason: DeleteReason,
    },
    /// One call for every membership change of one group.
    UpdateGroupUsers {
        group: RemoteId,
        add: Vec<RemoteId>,
        remove: Vec<RemoteId>,
        claims: Vec<OwnedEdge>,
        releases: Vec<Edge>,
        grants: Vec<GrantId>,
    },
    /// One call for every edge added to one resource.
    AddAccess {
        resource: RemoteId,
        add: Vec<AccessToAdd>,
        claims: Vec<OwnedEdge>,
        grants: Vec<GrantId>,
    },
    /// One call for every edge removed from one resource.
    RemoveAccess {
        resource: RemoteId,
        principals: Vec<RemoteId>,
        releases: Vec<Edge>,
        grants: Vec<GrantId>,
    },
    /// One call for every resource change of one service account.
    UpdateServiceResources {
        service_account: RemoteId,
        add: Vec<RemoteId>,
        remove: Vec<RemoteId>,
        claims: Vec<OwnedEdge>,
        releases: Vec<Edge>,
        grants: Vec<GrantId>,
    },
    /// Create the grant's key (record the intent first).
    CreateKey {
        grant: GrantId,
        service_account: RemoteId,
        name: String,
        expiration_days: u16,
    },
    RevokeKey {
        grant: GrantId,
        key: RemoteId,
        owned: bool,
    },
    DeleteKey {
        grant: GrantId,
        key: RemoteId,
        owned: bool,
    },
    /// Drop ownership records of edges that are gone and no longer needed (no remote call).
    ReleaseEdges { edges: Vec<Edge> },
    /// Drift that lapse does not repair (I5): reported, not touched.
    ReportDrift { detail: String },
}

impl Action {
    /// Whether the action calls the remote API to change something.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Self::CreateGroup { .. }
                | Self::DeleteGroup { .. }
                | Self::UpdateGroupUsers { .. }
                | Self::AddAccess { .. }
                | Self::RemoveAccess { .. }
                | Self::UpdateServiceResources { .. }
                | Self::CreateKey { .. }
                | Self::RevokeKey { .. }
                | Self::DeleteKey { .. }
        )
    }

    /// Budget queue for writes: anything that takes access away goes first.
    pub fn priority(&self) -> Priority {
        match self {
            Self::DeleteGroup { .. }
            | Self::RemoveAccess { .. }
            | Self::RevokeKey { .. }
            | Self::DeleteKey { .. } => Priority::Revoke,
            Self::UpdateGroupUsers { remove, .. } | Self::UpdateServiceResources { remove, .. }
                if !remove.is_empty() =>
            {
                Priority::Revoke
            }
            _ => Priority::Apply,
        }
    }

    /// Ordering key inside one plan: bookkeeping and revocations, then reads, then new access.
    fn rank(&self) -> u8 {
        match self {
            Self::Transition { .. }
            | Self::ReleaseEdges { .. }
            | Self::ForgetObject { .. }
            | Self::AdoptObject { .. } => 0,
            Self::ReportDrift { .. } => 0,
            a if a.is_write() && a.priority() == Priority::Revoke => 1,
            Self::Observe { sweep: false, .. } => 2,
            Self::Observe { sweep: true, .. } => 4,
            _ => 3,
        }
    }
}

/// The planner's answer: what to do, and when to look again at the latest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub next_wake: Option<DateTime<Utc>>,
}

/// Whole days for a service key that must outlive `ttl` (Twingate counts in days; 0 = never).
pub fn key_days(ttl: Duration) -> u16 {
    let secs = ttl.num_seconds().max(1);
    let days = (secs + 86_399) / 86_400;
    u16::try_from(days.clamp(1, 365)).unwrap_or(365)
}

/// The edges a grant needs, with the expiry to set on access edges.
///
/// An ephemeral grant's edges hang on its group: none while the group has no remote id, and none
/// once the group has been seen deleted (it is forgotten and recreated; edges to a deleted
/// principal could never be added).
fn grant_edges(
    grant: &Grant,
    objects: &HashMap<(GrantId, ObjectKind), &OwnedObject>,
    observed: &Observed,
    cfg: &PlanConfig,
) -> Vec<(Edge, Option<DateTime<Utc>>)> {
    let expiry = grant.ends_at() + cfg.backstop_grace;
    match &grant.spec {
        GrantSpec::GroupMembership { group, users } => users
            .iter()
            .map(|u| (Edge::new(EdgeKind::Membership, &group.id, &u.id), None))
            .collect(),
        GrantSpec::GroupAccess { group, resources } => resources
            .iter()
            .map(|r| (Edge::new(EdgeKind::Access, &r.id, &group.id), Some(expiry)))
            .collect(),
        GrantSpec::ServiceAccess {
            service_account,
            resources,
        } => resources
            .iter()
            .map(|r| {
                (
                    Edge::new(EdgeKind::ServiceResource, &service_account.id, &r.id),
                    None,
                )
            })
            .collect(),
        GrantSpec::EphemeralGroup { resources, .. } if cfg.ephemeral_backstop => {
            match objects
                .get(&(grant.id, ObjectKind::Group))
                .and_then(|o| o.remote_id.as_ref())
                .filter(|gid| !group_seen_deleted(observed, gid))
            {
                Some(gid) => resources
                    .iter()
                    .map(|r| (Edge::new(EdgeKind::Access, &r.id, gid), Some(expiry)))
                    .collect(),
                None => Vec::new(),
            }
        }
        GrantSpec::EphemeralGroup { .. } | GrantSpec::ServiceKey { .. } => Vec::new(),
    }
}

/// Whether the last reading of a group found it missing.
fn group_seen_deleted(observed: &Observed, id: &RemoteId) -> bool {
    observed.groups.get(id).is_some_and(|o| o.value.is_none())
}

/// Whether an edge is present according to the last observation of its container.
/// `None`: the container has not been read.
fn observed_presence(observed: &Observed, edge: &Edge, now: DateTime<Utc>) -> Option<bool> {
    match edge.kind {
        EdgeKind::Membership => observed.groups.get(&edge.container).map(|o| {
            o.value
                .as_ref()
                .is_some_and(|g| g.users.contains(&edge.member))
        }),
        EdgeKind::Access => observed.resources.get(&edge.container).map(|o| {
            o.value.as_ref().is_some_and(|r| {
                r.access
                    .iter()
                    .any(|a| a.principal == edge.member && a.expires_at.is_none_or(|t| t > now))
            })
        }),
        EdgeKind::ServiceResource => observed.service_accounts.get(&edge.container).map(|o| {
            o.value
                .as_ref()
                .is_some_and(|s| s.resources.contains(&edge.member))
        }),
    }
}

/// Like [`observed_presence`], but `None` unless the reading is younger than `max_age`.
fn fresh_presence(
    observed: &Observed,
    edge: &Edge,
    now: DateTime<Utc>,
    max_age: Duration,
) -> Option<bool> {
    let at = match edge.kind {
        EdgeKind::Membership => observed.groups.get(&edge.container)?.at,
        EdgeKind::Access => observed.resources.get(&edge.container)?.at,
        EdgeKind::ServiceResource => observed.service_accounts.get(&edge.container)?.at,
    };
    if now - at >= max_age {
        return None;
    }
    observed_presence(observed, edge, now)
}

fn observed_expiry(observed: &Observed, edge: &Edge) -> Option<Option<DateTime<Utc>>> {
    if edge.kind != EdgeKind::Access {
        return None;
    }
    observed
        .resources
        .get(&edge.container)?
        .value
        .as_ref()?
        .access
        .iter()
        .find(|a| a.principal == edge.member)
        .map(|a| a.expires_at)
}

fn container_of(edge: &Edge) -> Container {
    match edge.kind {
        EdgeKind::Membership => Container::Group(edge.container.clone()),
        EdgeKind::Access => Container::Resource(edge.container.clone()),
        EdgeKind::ServiceResource => Container::ServiceAccount(edge.container.clone()),
    }
}

/// Changes collected per container so each container costs one call.
#[derive(Default)]
struct Batch {
    add: BTreeMap<RemoteId, Option<DateTime<Utc>>>,
    remove: BTreeSet<RemoteId>,
    claims: Vec<OwnedEdge>,
    releases: Vec<Edge>,
    grants: BTreeSet<GrantId>,
}

struct Planner<'a> {
    world: World<'a>,
    now: DateTime<Utc>,
    cfg: &'a PlanConfig,
    actions: Vec<Action>,
    observe: BTreeMap<Container, bool>,
    batches: BTreeMap<(EdgeKind, RemoteId), Batch>,
    wake: Option<DateTime<Utc>>,
    /// Objects forgotten in this plan: a live grant creates its object anew in the same plan.
    forgotten: HashSet<(GrantId, ObjectKind)>,
}

impl<'a> Planner<'a> {
    fn wake_at(&mut self, t: DateTime<Utc>) {
        if t > self.now {
            self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
        }
    }

    fn need(&mut self, container: Container) {
        self.observe.insert(container, false);
    }

    fn sweep(&mut self, container: Container) {
        self.observe.entry(container).or_insert(true);
    }

    fn forget(&mut self, o: &OwnedObject) {
        self.forgotten.insert((o.grant, o.kind));
        self.actions.push(Action::ForgetObject {
            grant: o.grant,
            kind: o.kind,
        });
    }

    fn batch(&mut self, edge: &Edge) -> &mut Batch {
        self.batches
            .entry((edge.kind, edge.container.clone()))
            .or_default()
    }
}

/// Decide what to do at `now`.
/// The instant from which an action's additions must not be sent (I1 at send time): for each
/// edge or object it adds, the latest end among the grants that need it, and the earliest of
/// those over the action. `None` when the action adds nothing. `grant` looks a grant up by id;
/// a claim whose grants are all unknown counts as already ended.
pub fn add_deadline<'g>(
    action: &Action,
    grant: impl Fn(&GrantId) -> Option<&'g Grant>,
) -> Option<DateTime<Utc>> {
    let end = |id: &GrantId| grant(id).map(Grant::ends_at);
    let edges = |claims: &[OwnedEdge], grants: &[GrantId]| {
        claims
            .iter()
            .map(|c| {
                grants
                    .iter()
                    .chain(std::iter::once(&c.added_by))
                    .filter_map(&grant)
                    .filter(|g| g.id == c.added_by || needs_edge(g, &c.edge))
                    .map(Grant::ends_at)
                    .max()
                    .unwrap_or(DateTime::<Utc>::MIN_UTC)
            })
            .min()
    };
    match action {
        Action::CreateGroup { grant: id, .. } | Action::CreateKey { grant: id, .. } => {
            Some(end(id).unwrap_or(DateTime::<Utc>::MIN_UTC))
        }
        Action::UpdateGroupUsers {
            add,
            claims,
            grants,
            ..
        }
        | Action::UpdateServiceResources {
            add,
            claims,
            grants,
            ..
        } if !add.is_empty() => edges(claims, grants).or(Some(DateTime::<Utc>::MIN_UTC)),
        Action::AddAccess { claims, grants, .. } => {
            edges(claims, grants).or(Some(DateTime::<Utc>::MIN_UTC))
        }
        _ => None,
    }
}

/// Whether `grant` asks for `edge` by its spec (the edges of ephemeral groups hang on the
/// group lapse made, known from the ownership record instead).
fn needs_edge(grant: &Grant, edge: &Edge) -> bool {
    let has = |ps: &[Principal], id: &RemoteId| ps.iter().any(|p| &p.id == id);
    match (&grant.spec, edge.kind) {
        (GrantSpec::GroupMembership { group, users }, EdgeKind::Membership) => {
            group.id == edge.container && has(users, &edge.member)
        }
        (GrantSpec::GroupAccess { group, resources }, EdgeKind::Access) => {
            group.id == edge.member && has(resources, &edge.container)
        }
        (
            GrantSpec::ServiceAccess {
                service_account,
                resources,
            },
            EdgeKind::ServiceResource,
        ) => service_account.id == edge.container && has(resources, &edge.member),
        _ => false,
    }
}

pub fn plan(world: World<'_>, now: DateTime<Utc>, cfg: &PlanConfig) -> Plan {
    plan_with(world, now, cfg, true)
}

/// [`plan`] without the sweep: no paced re-reads and no report of lapse-named groups that
/// belong to no grant in `world`. What an incremental pass runs over a [`Slice`], whose world is
/// not the whole one; the full plan, with its sweep, stays for the paced sweep.
pub fn plan_slice(world: World<'_>, now: DateTime<Utc>, cfg: &PlanConfig) -> Plan {
    plan_with(world, now, cfg, false)
}

fn plan_with(world: World<'_>, now: DateTime<Utc>, cfg: &PlanConfig, sweep: bool) -> Plan {
    let mut p = Planner {
        world,
        now,
        cfg,
        actions: Vec::new(),
        observe: BTreeMap::new(),
        batches: BTreeMap::new(),
        wake: None,
        forgotten: HashSet::new(),
    };
    let objects: HashMap<(GrantId, ObjectKind), &OwnedObject> = world
        .objects
        .iter()
        .map(|o| ((o.grant, o.kind), o))
        .collect();
    let grants: HashMap<GrantId, &Grant> = world.grants.iter().map(|g| (g.id, g)).collect();

    // Lifecycle transitions driven by the clock, and wake-ups for the next deadline.
    for g in world.grants {
        let live = g.is_live(now);
        match g.state {
            GrantState::Scheduled if live => p.actions.push(Action::Transition {
                grant: g.id,
                to: GrantState::Applying,
            }),
            GrantState::Scheduled | GrantState::Applying | GrantState::Active
                if now >= g.ends_at() =>
            {
                p.actions.push(Action::Transition {
                    grant: g.id,
                    to: GrantState::Revoking,
                })
            }
            _ => {}
        }
        if g.state == GrantState::Scheduled {
            p.wake_at(g.starts_at);
        }
        if !g.state.is_terminal() && g.state != GrantState::Revoking {
            p.wake_at(g.ends_at());
        }
        if let Some(t) = g.retry.next_attempt_at {
            p.wake_at(t);
        }
    }

    // Desired edges: the union over live grants, with the latest expiry any of them needs.
    let mut desired: BTreeMap<Edge, (Option<DateTime<Utc>>, Vec<GrantId>)> = BTreeMap::new();
    for g in world.grants.iter().filter(|g| g.is_live(now)) {
        for (edge, exp) in grant_edges(g, &objects, world.observed, cfg) {
            let entry = desired.entry(edge).or_insert((None, Vec::new()));
            entry.0 = entry.0.max(exp);
            entry.1.push(g.id);
        }
    }
    // Edges of grants that have ended, to gate removals on their backoff. Grants that have not
    // started yet are not responsible for a removal and must not hold it back.
    let mut ending: HashMap<Edge, Vec<GrantId>> = HashMap::new();
    for g in world
        .grants
        .iter()
        .filter(|g| !g.is_live(now) && (now >= g.ends_at() || g.state == GrantState::Revoking))
    {
        for (edge, _) in grant_edges(g, &objects, world.observed, cfg) {
            ending.entry(edge).or_default().push(g.id);
        }
    }
    let owned: HashMap<&Edge, &OwnedEdge> = world.edges.iter().map(|e| (&e.edge, e)).collect();
    // Ephemeral groups being deleted take their edges with them: no separate removal.
    let dying_groups: BTreeSet<RemoteId> = world
        .objects
        .iter()
        .filter(|o| {
            o.kind == ObjectKind::Group && !grants.get(&o.grant).is_some_and(|g| g.is_live(now))
        })
        .filter_map(|o| o.remote_id.clone())
        .collect();
    let own_groups: HashMap<RemoteId, GrantId> = world
        .objects
        .iter()
        .filter(|o| o.kind == ObjectKind::Group)
        .filter_map(|o| o.remote_id.clone().map(|id| (id, o.grant)))
        .collect();
    let is_ready = |id: &GrantId| grants.get(id).is_none_or(|g| g.retry.ready(now));

    // Owned edges that no live grant needs: take them away (I1), or forget them if gone.
    let mut release_only = Vec::new();
    for oe in world.edges {
        if desired.contains_key(&oe.edge) {
            continue;
        }
        // Edges of lapse's own groups go with the group: deleting it, or forgetting it once
        // seen deleted, takes them along.
        if oe.edge.kind == EdgeKind::Access
            && (dying_groups.contains(&oe.edge.member)
                || (own_groups.contains_key(&oe.edge.member)
                    && group_seen_deleted(world.observed, &oe.edge.member)))
        {
            continue;
        }
        // An edge to a group that no longer exists went with the group.
        let member_gone =
            oe.edge.kind == EdgeKind::Access && group_seen_deleted(world.observed, &oe.edge.member);
        // An unconfirmed claim is a write whose outcome was never learned: a reading cannot be
        // trusted to be newer than it, so the removal is sent (removing an absent edge is
        // accepted) rather than the record dropped on the reading's word.
        let seen_gone = observed_presence(world.observed, &oe.edge, now) == Some(false);
        if member_gone || (seen_gone && oe.confirmed) {
            release_only.push(oe.edge.clone());
            continue;
        }
        let responsible = ending.get(&oe.edge).cloned().unwrap_or_default();
        if !responsible.iter().all(is_ready) {
            continue;
        }
        let b = p.batch(&oe.edge);
        b.remove.insert(oe.edge.member.clone());
        b.releases.push(oe.edge.clone());
        b.grants.extend(responsible);
    }
    if !release_only.is_empty() {
        p.actions.push(Action::ReleaseEdges {
            edges: release_only,
        });
    }

    // Edges live grants need. `pending` collects the edges not yet in place as wanted, so that
    // no grant is called active before they are.
    let mut pending: BTreeSet<&Edge> = BTreeSet::new();
    for (edge, (expiry, needers)) in &desired {
        // A grant in backoff writes nothing, but does not hold back another that needs the
        // same edge.
        let ready: Vec<GrantId> = needers.iter().copied().filter(is_ready).collect();
        let seen = observed_presence(world.observed, edge, now);
        match owned.get(edge) {
            Some(oe) => {
                let present = seen.unwrap_or(oe.confirmed);
                // Remote and stored timestamps are rounded (to microseconds, or less): an expiry
                // only counts as stale when it is short of the wanted one by more than that.
                let short = |s: DateTime<Utc>, want: DateTime<Utc>| s + EXPIRY_SLACK < want;
                // This very expiry was written and confirmed: the server keeps it as coarsely as
                // it keeps it; only a larger shortfall (someone changed it) is written again.
                let written = oe.confirmed && oe.expires_at == *expiry;
                let seen_short = |s: DateTime<Utc>, want: DateTime<Utc>| {
                    if written {
                        s + STORED_EXPIRY_SLACK < want
                    } else {
                        short(s, want)
                    }
                };
                let stale_expiry = match (observed_expiry(world.observed, edge), expiry) {
                    (Some(seen_exp), Some(want)) => seen_exp.is_some_and(|s| seen_short(s, *want)),
                    (None, Some(want)) => oe.expires_at.is_some_and(|s| short(s, *want)),
                    _ => false,
                };
                // An unconfirmed claim is a write whose answer never came (or a crash before
                // it was recorded): send it again, it is idempotent, so that the record is
                // confirmed rather than left an intent forever.
                if !present || stale_expiry || !oe.confirmed {
                    pending.insert(edge);
                    if ready.is_empty() {
                        continue;
                    }
                    let mut claim = (*oe).clone();
                    claim.expires_at = *expiry;
                    claim.confirmed = false;
                    let b = p.batch(edge);
                    b.add.insert(edge.member.clone(), *expiry);
                    b.claims.push(claim);
                    b.grants.extend(ready);
                }
            }
            None => {
                // Edges on lapse's own new groups cannot have existed before: no read needed.
                let own = edge.kind == EdgeKind::Access && own_groups.contains_key(&edge.member);
                // Claiming on an old reading could take over access someone gave since (I2).
                let fresh = fresh_presence(world.observed, edge, now, cfg.sweep_interval);
                match (fresh, own) {
                    (Some(true), _) => {} // existed before the grant: not ours, never touched.
                    (Some(false), _) | (None, true) => {
                        pending.insert(edge);
                        let Some(first) = ready.first() else {
                            continue;
                        };
                        let b = p.batch(edge);
                        b.add.insert(edge.member.clone(), *expiry);
                        b.claims.push(OwnedEdge {
                            edge: edge.clone(),
                            added_by: *first,
                            expires_at: *expiry,
                            confirmed: false,
                        });
                        b.grants.extend(ready);
                    }
                    (None, false) => {
                        pending.insert(edge);
                        p.need(container_of(edge));
                    }
                }
            }
        }
    }

    // Objects: ephemeral groups and service keys.
    plan_objects(&mut p, &grants, &objects);

    // Lifecycle transitions that depend on remote state.
    for g in world.grants {
        let edges = grant_edges(g, &objects, world.observed, cfg);
        match g.state {
            GrantState::Applying if g.is_live(now) => {
                let edges_ok = edges.iter().all(|(e, _)| {
                    let seen = observed_presence(world.observed, e, now);
                    !pending.contains(e)
                        && match owned.get(e) {
                            Some(oe) => oe.confirmed && seen != Some(false),
                            None => seen == Some(true),
                        }
                });
                let objects_ok = match &g.spec {
                    GrantSpec::EphemeralGroup { .. } => objects
                        .get(&(g.id, ObjectKind::Group))
                        .is_some_and(|o| o.remote_id.is_some()),
                    GrantSpec::ServiceKey { .. } => objects
                        .get(&(g.id, ObjectKind::Key))
                        .is_some_and(|o| o.remote_id.is_some()),
                    _ => true,
                };
                let backstop_ok = match &g.spec {
                    GrantSpec::EphemeralGroup { resources, .. } if cfg.ephemeral_backstop => {
                        edges.len() == resources.len()
                    }
                    _ => true,
                };
                if edges_ok && objects_ok && backstop_ok {
                    p.actions.push(Action::Transition {
                        grant: g.id,
                        to: GrantState::Active,
                    });
                }
            }
            GrantState::Revoking => {
                let edges_gone = edges
                    .iter()
                    .all(|(e, _)| desired.contains_key(e) || !owned.contains_key(e));
                let objects_gone = !objects.contains_key(&(g.id, ObjectKind::Group))
                    && !objects.contains_key(&(g.id, ObjectKind::Key));
                if edges_gone && objects_gone {
                    let to = if g.revoked_at.is_some_and(|r| r < g.expires_at) {
                        GrantState::Revoked
                    } else {
                        GrantState::Expired
                    };
                    p.actions.push(Action::Transition { grant: g.id, to });
                }
            }
            _ => {}
        }
    }

    // The sweep: re-read whatever lapse relies on once its reading is older than the interval.
    if sweep {
        plan_sweep(&mut p, &owned);
    }

    // Turn the per-container batches into one call each.
    let batches = std::mem::take(&mut p.batches);
    for ((kind, container), b) in batches {
        let grants_of: Vec<GrantId> = b.grants.into_iter().collect();
        match kind {
            EdgeKind::Membership => p.actions.push(Action::UpdateGroupUsers {
                group: container,
                add: b.add.into_keys().collect(),
                remove: b.remove.into_iter().collect(),
                claims: b.claims,
                releases: b.releases,
                grants: grants_of,
            }),
            EdgeKind::ServiceResource => p.actions.push(Action::UpdateServiceResources {
                service_account: container,
                add: b.add.into_keys().collect(),
                remove: b.remove.into_iter().collect(),
                claims: b.claims,
                releases: b.releases,
                grants: grants_of,
            }),
            EdgeKind::Access => {
                if !b.remove.is_empty() {
                    p.actions.push(Action::RemoveAccess {
                        resource: container.clone(),
                        principals: b.remove.into_iter().collect(),
                        releases: b.releases,
                        grants: grants_of.clone(),
                    });
                }
                if !b.add.is_empty() {
                    p.actions.push(Action::AddAccess {
                        resource: container,
                        add: b
                            .add
                            .into_iter()
                            .map(|(principal, expires_at)| AccessToAdd {
                                principal,
                                expires_at,
                            })
                            .collect(),
                        claims: b.claims,
                        grants: grants_of,
                    });
                }
            }
        }
    }
    let observe = std::mem::take(&mut p.observe);
    for (container, sweep) in observe {
        p.actions.push(Action::Observe { container, sweep });
    }
    p.actions.sort_by_key(Action::rank);
    Plan {
        actions: p.actions,
        next_wake: p.wake,
    }
}

/// The removals of `group`'s membership update as they stand at `now`: what [`plan`] asks to
/// take out of that group, without the additions (which need their intent recorded before the
/// call). The executor calls it with a world holding that group's grants, edges and reading
/// when the write permit is handed out, so every member due by then goes into one call.
/// `None`: nothing to remove.
pub fn group_removals(
    world: World<'_>,
    group: &RemoteId,
    now: DateTime<Utc>,
    cfg: &PlanConfig,
) -> Option<Action> {
    plan_slice(world, now, cfg)
        .actions
        .into_iter()
        .find_map(|a| match a {
            Action::UpdateGroupUsers {
                group: g,
                remove,
                releases,
                grants,
                ..
            } if &g == group && !remove.is_empty() => Some(Action::UpdateGroupUsers {
                group: g,
                add: Vec::new(),
                remove,
                claims: Vec::new(),
                releases,
                grants,
            }),
            _ => None,
        })
}

/// What an incremental pass plans over: the grants it was given (due or changed), the
/// containers it was given (read or written since the last pass), and, to a fixed point, every
/// grant with access in one of those containers and every container such a grant's access or
/// objects lie in, since a container's one call depends on every grant in it. With them: the
/// ownership records in those containers and of those grants' objects (and objects whose grant
/// is not held, whose clean-up is always due), and the readings of those containers, of those
/// objects' names, and of lapse's groups. [`plan_slice`] over it agrees with [`plan`] over the
/// whole world on every action that touches the slice (the property test in `plan_model`).
#[derive(Debug, Clone, Default)]
pub struct Slice {
    pub grants: Vec<Grant>,
    pub edges: Vec<OwnedEdge>,
    pub objects: Vec<OwnedObject>,
    pub observed: Observed,
    /// The containers the slice covers.
    pub containers: BTreeSet<Container>,
}

impl Slice {
    pub fn world(&self) -> World<'_> {
        World {
            grants: &self.grants,
            edges: &self.edges,
            objects: &self.objects,
            observed: &self.observed,
        }
    }
}

/// The containers a grant's access and objects lie in: those of the edges it needs, those of
/// the edges it claimed (a grant whose group was seen deleted needs none but still owns them),
/// its own group, and the service account of its key.
pub fn grant_containers(
    grant: &Grant,
    objects: &HashMap<(GrantId, ObjectKind), &OwnedObject>,
    claimed: &[&OwnedEdge],
    observed: &Observed,
    cfg: &PlanConfig,
) -> BTreeSet<Container> {
    let mut out: BTreeSet<Container> = grant_edges(grant, objects, observed, cfg)
        .iter()
        .map(|(e, _)| container_of(e))
        .collect();
    out.extend(claimed.iter().map(|e| container_of(&e.edge)));
    if let Some(id) = objects
        .get(&(grant.id, ObjectKind::Group))
        .and_then(|o| o.remote_id.as_ref())
    {
        out.insert(Container::Group(id.clone()));
    }
    match &grant.spec {
        GrantSpec::GroupMembership { group, .. } => {
            out.insert(Container::Group(group.id.clone()));
        }
        GrantSpec::ServiceKey { service_account }
        | GrantSpec::ServiceAccess {
            service_account, ..
        } => {
            out.insert(Container::ServiceAccount(service_account.id.clone()));
        }
        _ => {}
    }
    out
}

/// Where things are in a world, for cutting slices without scanning it: the grants, ownership
/// records and objects by position, which containers each grant's access and objects lie in,
/// and which grants and records lie in each container. Built once over a world (`new`); a slice
/// then costs what it holds, not what the world holds. The positions are the world's: an index
/// is valid for the world it was built from.
#[derive(Debug, Clone, Default)]
pub struct SliceIndex {
    grant_at: HashMap<GrantId, usize>,
    of_grant: HashMap<GrantId, Vec<Container>>,
    in_container: HashMap<Container, Vec<GrantId>>,
    edges_in: HashMap<Container, Vec<usize>>,
    objects_of: HashMap<GrantId, Vec<usize>>,
    /// Objects whose grant is not held: their clean-up is due in every pass.
    orphans: Vec<usize>,
}

impl SliceIndex {
    pub fn new(world: World<'_>, cfg: &PlanConfig) -> Self {
        let objects: HashMap<(GrantId, ObjectKind), &OwnedObject> = world
            .objects
            .iter()
            .map(|o| ((o.grant, o.kind), o))
            .collect();
        let mut claimed: HashMap<GrantId, Vec<&OwnedEdge>> = HashMap::new();
        let mut edges_in: HashMap<Container, Vec<usize>> = HashMap::new();
        for (i, e) in world.edges.iter().enumerate() {
            claimed.entry(e.added_by).or_default().push(e);
            edges_in.entry(container_of(&e.edge)).or_default().push(i);
        }
        let mut idx = Self {
            edges_in,
            ..Self::default()
        };
        for (i, g) in world.grants.iter().enumerate() {
            idx.grant_at.insert(g.id, i);
            let mine = claimed.get(&g.id).map(Vec::as_slice).unwrap_or_default();
            let cs: Vec<Container> = grant_containers(g, &objects, mine, world.observed, cfg)
                .into_iter()
                .collect();
            for c in &cs {
                idx.in_container.entry(c.clone()).or_default().push(g.id);
            }
            idx.of_grant.insert(g.id, cs);
        }
        for (i, o) in world.objects.iter().enumerate() {
            if idx.grant_at.contains_key(&o.grant) {
                idx.objects_of.entry(o.grant).or_default().push(i);
            } else {
                idx.orphans.push(i);
            }
        }
        idx
    }

    /// The [`Slice`] of `world` (the one this index was built from) for the grants `due` and
    /// the containers `changed`.
    pub fn slice(
        &self,
        world: World<'_>,
        due: &BTreeSet<GrantId>,
        changed: &BTreeSet<Container>,
    ) -> Slice {
        let mut grants: BTreeSet<GrantId> = BTreeSet::new();
        let mut containers: BTreeSet<Container> = BTreeSet::new();
        let mut todo_g: Vec<GrantId> = due
            .iter()
            .copied()
            .filter(|id| self.grant_at.contains_key(id))
            .collect();
        let mut todo_c: Vec<Container> = changed.iter().cloned().collect();
        while !todo_g.is_empty() || !todo_c.is_empty() {
            while let Some(id) = todo_g.pop() {
                if grants.insert(id) {
                    todo_c.extend(self.of_grant.get(&id).into_iter().flatten().cloned());
                }
            }
            while let Some(c) = todo_c.pop() {
                if containers.contains(&c) {
                    continue;
                }
                if let Some(ids) = self.in_container.get(&c) {
                    todo_g.extend(ids.iter().copied().filter(|id| !grants.contains(id)));
                }
                containers.insert(c);
            }
        }
        // In the world's order, so that the plan is the one the full world gives.
        let mut grant_pos: Vec<usize> = grants
            .iter()
            .filter_map(|id| self.grant_at.get(id).copied())
            .collect();
        grant_pos.sort_unstable();
        let mut edge_pos: Vec<usize> = containers
            .iter()
            .filter_map(|c| self.edges_in.get(c))
            .flatten()
            .copied()
            .collect();
        edge_pos.sort_unstable();
        let mut object_pos: Vec<usize> = grants
            .iter()
            .filter_map(|id| self.objects_of.get(id))
            .flatten()
            .chain(&self.orphans)
            .copied()
            .collect();
        object_pos.sort_unstable();
        let slice_objects: Vec<OwnedObject> = object_pos
            .iter()
            .map(|&i| world.objects[i].clone())
            .collect();
        let slice_edges: Vec<OwnedEdge> =
            edge_pos.iter().map(|&i| world.edges[i].clone()).collect();
        let mut observed = Observed {
            lapse_groups: world.observed.lapse_groups.clone(),
            ..Observed::default()
        };
        let group = |observed: &mut Observed, id: &RemoteId| {
            if let Some(o) = world.observed.groups.get(id) {
                observed.groups.insert(id.clone(), o.clone());
            }
        };
        for c in &containers {
            match c {
                Container::Group(id) => group(&mut observed, id),
                Container::Resource(id) => {
                    if let Some(o) = world.observed.resources.get(id) {
                        observed.resources.insert(id.clone(), o.clone());
                    }
                }
                Container::ServiceAccount(id) => {
                    if let Some(o) = world.observed.service_accounts.get(id) {
                        observed.service_accounts.insert(id.clone(), o.clone());
                    }
                }
                Container::GroupsNamed(name) => {
                    if let Some(o) = world.observed.named_groups.get(name) {
                        observed.named_groups.insert(name.clone(), o.clone());
                    }
                }
                Container::LapseGroups => {}
            }
        }
        // The readings the planner consults for an object: its name, its group, and the
        // groups found carrying its name (a duplicate already seen deleted is left alone).
        let names: BTreeSet<&str> = slice_objects.iter().map(|o| o.name.as_str()).collect();
        for o in &slice_objects {
            if let Some(n) = world.observed.named_groups.get(&o.name) {
                observed.named_groups.insert(o.name.clone(), n.clone());
                for g in n.value.iter().flatten() {
                    group(&mut observed, &g.id);
                }
            }
            if let Some(id) = &o.remote_id {
                group(&mut observed, id);
            }
        }
        if !names.is_empty() {
            let listed = world.observed.lapse_groups.iter();
            for g in listed.flat_map(|l| l.value.iter().flatten()) {
                if names.contains(g.name.as_str()) {
                    group(&mut observed, &g.id);
                }
            }
        }
        // The group an access edge names as its member (an edge to a deleted group went with it).
        for e in slice_edges
            .iter()
            .filter(|e| e.edge.kind == EdgeKind::Access)
        {
            group(&mut observed, &e.edge.member);
        }
        Slice {
            grants: grant_pos.iter().map(|&i| world.grants[i].clone()).collect(),
            edges: slice_edges,
            objects: slice_objects,
            observed,
            containers,
        }
    }
}

/// The [`Slice`] of `world` for the grants `due` and the containers `changed`: the reference,
/// which indexes the whole world first ([`SliceIndex`] keeps the index for many slices).
pub fn slice(
    world: World<'_>,
    due: &BTreeSet<GrantId>,
    changed: &BTreeSet<Container>,
    cfg: &PlanConfig,
) -> Slice {
    SliceIndex::new(world, cfg).slice(world, due, changed)
}

/// The container an edge lies in.
pub fn edge_container(edge: &Edge) -> Container {
    container_of(edge)
}

fn plan_objects(
    p: &mut Planner<'_>,
    grants: &HashMap<GrantId, &Grant>,
    objects: &HashMap<(GrantId, ObjectKind), &OwnedObject>,
) {
    let now = p.now;
    let observed = p.world.observed;
    for o in p.world.objects {
        let grant = grants.get(&o.grant).copied();
        let live = grant.is_some_and(|g| g.is_live(now));
        let ready = grant.is_none_or(|g| g.retry.ready(now));
        if !ready {
            continue;
        }
        match o.kind {
            ObjectKind::Group => plan_group_object(p, o, grant, live, observed),
            ObjectKind::Key => plan_key_object(p, o, grant, live, observed),
        }
    }

    // Grants that need an object created now: none recorded, or the record was just forgotten.
    let absent = |p: &Planner<'_>, id: GrantId, kind: ObjectKind| {
        !objects.contains_key(&(id, kind)) || p.forgotten.contains(&(id, kind))
    };
    for g in p
        .world
        .grants
        .iter()
        .filter(|g| g.is_live(now) && g.retry.ready(now))
    {
        match &g.spec {
            GrantSpec::EphemeralGroup { users, resources }
                if absent(p, g.id, ObjectKind::Group) =>
            {
                p.actions.push(Action::CreateGroup {
                    grant: g.id,
                    name: g.id.remote_name(),
                    users: users.iter().map(|u| u.id.clone()).collect(),
                    resources: if p.cfg.ephemeral_backstop {
                        Vec::new()
                    } else {
                        resources.iter().map(|r| r.id.clone()).collect()
                    },
                });
            }
            GrantSpec::ServiceKey { service_account } if absent(p, g.id, ObjectKind::Key) => {
                p.actions.push(Action::CreateKey {
                    grant: g.id,
                    service_account: service_account.id.clone(),
                    name: g.id.remote_name(),
                    expiration_days: key_days(g.ends_at() - now),
                });
            }
            _ => {}
        }
    }
}

/// Other remote groups carrying an object's name, from the name lookup and the prefix sweep
/// (I3). Groups already seen deleted are left out.
fn named_duplicates<'o>(
    observed: &'o Observed,
    o: &OwnedObject,
    keep: &RemoteId,
) -> Vec<&'o RemoteId> {
    let named = observed.named_groups.get(&o.name).into_iter();
    let swept = observed.lapse_groups.iter();
    let found: BTreeSet<&RemoteId> = named
        .chain(swept)
        .flat_map(|obs| obs.value.iter().flatten())
        .filter(|g| g.name == o.name && &g.id != keep && !group_seen_deleted(observed, &g.id))
        .map(|g| &g.id)
        .collect();
    found.into_iter().collect()
}

fn plan_group_object(
    p: &mut Planner<'_>,
    o: &OwnedObject,
    grant: Option<&Grant>,
    live: bool,
    observed: &Observed,
) {
    match &o.remote_id {
        None => {
            // The create's outcome is unknown (lost answer or crash): look it up by name (I3).
            let Some(found) = observed.named_groups.get(&o.name) else {
                p.need(Container::GroupsNamed(o.name.clone()));
                return;
            };
            let mut groups: Vec<&GroupInfo> = found.value.iter().flatten().collect();
            groups.sort_by(|a, b| a.id.cmp(&b.id));
            match (live, groups.split_first()) {
                (_, None) => p.forget(o),
                (true, Some((keep, extra))) => {
                    p.actions.push(Action::AdoptObject {
                        grant: o.grant,
                        kind: o.kind,
                        remote_id: keep.id.clone(),
                    });
                    for g in extra {
                        p.actions.push(Action::DeleteGroup {
                            grant: o.grant,
                            group: g.id.clone(),
                            reason: DeleteReason::Duplicate,
                        });
                    }
                }
                (false, Some(_)) => {
                    for g in groups {
                        p.actions.push(Action::DeleteGroup {
                            grant: o.grant,
                            group: g.id.clone(),
                            reason: DeleteReason::Revoke,
                        });
                    }
                }
            }
        }
        Some(id) if !live => {
            p.actions.push(Action::DeleteGroup {
                grant: o.grant,
                group: id.clone(),
                reason: DeleteReason::Revoke,
            });
            for dup in named_duplicates(observed, o, id) {
                p.actions.push(Action::DeleteGroup {
                    grant: o.grant,
                    group: dup.clone(),
                    reason: DeleteReason::Duplicate,
                });
            }
        }
        Some(id) => {
            // Live: repair drift inside lapse's own group, which the sweep reads even if nothing
            // else ever did (a group deleted remotely, strangers added to it).
            match observed.groups.get(id).map(|obs| &obs.value) {
                None => p.sweep(Container::Group(id.clone())),
                Some(None) => {
                    p.actions.push(Action::ReportDrift {
                        detail: format!(
                            "group {} ({id}) of grant {} was deleted remotely; recreating it",
                            o.name, o.grant
                        ),
                    });
                    p.forget(o);
                }
                Some(Some(info)) => {
                    if let Some(GrantSpec::EphemeralGroup { users, resources }) =
                        grant.map(|g| &g.spec)
                    {
                        repair_own_members(p, o, id, info, users);
                        if !p.cfg.ephemeral_backstop {
                            repair_own_access(p, o, id, info, resources);
                        }
                    }
                }
            }
            // Duplicates carrying this grant's name, found by a lookup or the sweep.
            for dup in named_duplicates(observed, o, id) {
                p.actions.push(Action::DeleteGroup {
                    grant: o.grant,
                    group: dup.clone(),
                    reason: DeleteReason::Duplicate,
                });
            }
        }
    }
}

/// Members of lapse's own group that the grant does not name are removed (and reported); the
/// ones it names and the group lacks are added back.
fn repair_own_members(
    p: &mut Planner<'_>,
    o: &OwnedObject,
    id: &RemoteId,
    info: &GroupInfo,
    users: &[Principal],
) {
    let want: BTreeSet<&RemoteId> = users.iter().map(|u| &u.id).collect();
    let have: BTreeSet<&RemoteId> = info.users.iter().collect();
    let add: Vec<RemoteId> = want.difference(&have).map(|r| (*r).clone()).collect();
    let remove: Vec<RemoteId> = have.difference(&want).map(|r| (*r).clone()).collect();
    if !remove.is_empty() {
        p.actions.push(Action::ReportDrift {
            detail: format!(
                "{} user(s) not granted were found in lapse's group {}; removing them",
                remove.len(),
                o.name
            ),
        });
    }
    if add.is_empty() && remove.is_empty() {
        return;
    }
    let b = p
        .batches
        .entry((EdgeKind::Membership, id.clone()))
        .or_default();
    b.add.extend(add.into_iter().map(|a| (a, None)));
    b.remove.extend(remove);
    b.grants.insert(o.grant);
}

/// Resources the grant names that lapse's own group lost access to get it back.
fn repair_own_access(
    p: &mut Planner<'_>,
    o: &OwnedObject,
    id: &RemoteId,
    info: &GroupInfo,
    resources: &[Principal],
) {
    for r in resources.iter().filter(|r| !info.resources.contains(&r.id)) {
        let b = p
            .batches
            .entry((EdgeKind::Access, r.id.clone()))
            .or_default();
        b.add.insert(id.clone(), None);
        b.grants.insert(o.grant);
    }
}

fn plan_key_object(
    p: &mut Planner<'_>,
    o: &OwnedObject,
    grant: Option<&Grant>,
    live: bool,
    observed: &Observed,
) {
    let sa = match grant.map(|g| &g.spec) {
        Some(GrantSpec::ServiceKey { service_account }) => Some(service_account.id.clone()),
        _ => None,
    };
    match (&o.remote_id, o.revoked) {
        (Some(id), false) if !live => p.actions.push(Action::RevokeKey {
            grant: o.grant,
            key: id.clone(),
            owned: true,
        }),
        (Some(id), true) => p.actions.push(Action::DeleteKey {
            grant: o.grant,
            key: id.clone(),
            owned: true,
        }),
        (Some(_), false) => {}
        (None, _) => {
            // Unknown outcome: any key with the grant's name has a token nobody holds. Revoke and
            // delete it; a live grant then gets a fresh key whose token reaches the requester.
            let Some(sa) = sa else {
                p.forget(o);
                return;
            };
            let Some(obs) = observed.service_accounts.get(&sa) else {
                p.need(Container::ServiceAccount(sa));
                return;
            };
            let mine: Vec<_> = obs
                .value
                .iter()
                .flat_map(|s| s.keys.iter())
                .filter(|k| k.name == o.name)
                .collect();
            if mine.is_empty() {
                p.forget(o);
            }
            for k in mine {
                if k.status == KeyStatus::Active {
                    p.actions.push(Action::RevokeKey {
                        grant: o.grant,
                        key: k.id.clone(),
                        owned: false,
                    });
                } else {
                    p.actions.push(Action::DeleteKey {
                        grant: o.grant,
                        key: k.id.clone(),
                        owned: false,
                    });
                }
            }
        }
    }
}

fn plan_sweep(p: &mut Planner<'_>, owned: &HashMap<&Edge, &OwnedEdge>) {
    let now = p.now;
    let interval = p.cfg.sweep_interval;
    let observed = p.world.observed;
    let stale = |at: Option<DateTime<Utc>>, p: &mut Planner<'_>| match at {
        Some(t) if now - t < interval => {
            p.wake_at(t + interval);
            false
        }
        Some(_) => true,
        None => false,
    };
    let mut due = Vec::new();
    for (id, o) in &observed.groups {
        if stale(Some(o.at), p) {
            due.push(Container::Group(id.clone()));
        }
    }
    for (id, o) in &observed.resources {
        if stale(Some(o.at), p) {
            due.push(Container::Resource(id.clone()));
        }
    }
    for (id, o) in &observed.service_accounts {
        if stale(Some(o.at), p) {
            due.push(Container::ServiceAccount(id.clone()));
        }
    }
    // lapse's own groups, listed by prefix, catch deleted groups and stray duplicates.
    let has_groups = p.world.objects.iter().any(|o| o.kind == ObjectKind::Group);
    match &observed.lapse_groups {
        Some(o) if !stale(Some(o.at), p) => {}
        _ if has_groups => due.push(Container::LapseGroups),
        _ => {}
    }
    // Containers lapse owns edges in but has never read.
    for e in owned.keys() {
        let c = container_of(e);
        let known = match &c {
            Container::Group(id) => observed.groups.contains_key(id),
            Container::Resource(id) => observed.resources.contains_key(id),
            Container::ServiceAccount(id) => observed.service_accounts.contains_key(id),
            _ => true,
        };
        if !known {
            due.push(c);
        }
    }
    for c in due {
        p.observe.entry(c).or_insert(true);
    }
    // Report lapse-named groups that belong to no grant lapse knows (I5: reported, not touched).
    if let Some(obs) = &observed.lapse_groups {
        let known: BTreeSet<&str> = p.world.objects.iter().map(|o| o.name.as_str()).collect();
        let open: BTreeSet<String> = p.world.grants.iter().map(|g| g.id.remote_name()).collect();
        for g in obs.value.iter().flatten() {
            if !known.contains(g.name.as_str()) && !open.contains(&g.name) {
                p.actions.push(Action::ReportDrift {
                    detail: format!(
                        "group {} ({}) carries lapse's name but belongs to no open grant",
                        g.name, g.id
                    ),
                });
            }
        }
    }
}
