//! Grant submission: the per-kind field rules, name resolution and the group-name cache, the
//! one typed path that `POST /v1/grants` and request activation share.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapse_core::policy::{self, Limits};
use lapse_core::provider::{GroupInfo, GroupType, NamedRef};
use lapse_core::{
    AccessProvider, Grant, GrantId, GrantKind, GrantSpec, GrantState, Principal, RemoteId,
};

use crate::error::{FlowError, FlowResult};
use crate::wire::GrantRequest;

/// Builds grants from submissions: validation first, then name resolution (reads only).
pub struct Submitter<P> {
    provider: Arc<P>,
    limits: Limits,
    group_names: GroupNames,
}

fn provider_down(e: impl std::fmt::Display) -> FlowError {
    FlowError::Unavailable(e.to_string())
}

/// Resolve one user by email.
async fn resolve_user<P: AccessProvider>(p: &P, email: &str) -> FlowResult<Principal> {
    let e = email.trim().to_lowercase();
    if e.is_empty() || !e.contains('@') {
        return Err(FlowError::field(
            "users",
            format!("{email:?} is not an email address"),
            "name each user by their email",
        ));
    }
    match p.user_by_email(&e).await.map_err(provider_down)? {
        Some(u) => Ok(Principal {
            id: u.id,
            name: u.email.unwrap_or(e),
        }),
        None => Err(FlowError::field(
            "users",
            format!("no Twingate user has the email {email:?}"),
            "check the spelling, or invite the user to Twingate first",
        )),
    }
}

fn one_named(field: &str, what: &str, name: &str, found: Vec<NamedRef>) -> FlowResult<Principal> {
    match found.len() {
        0 => Err(FlowError::field(
            field,
            format!("no {what} named {name:?}"),
            format!("check the name, or give the {what}'s id"),
        )),
        1 => {
            let r = &found[0];
            Ok(Principal {
                id: r.id.clone(),
                name: r.name.clone(),
            })
        }
        n => Err(FlowError::field(
            field,
            format!("{n} {what}s are named {name:?}"),
            format!(
                "give the {what}'s id instead: {}",
                found
                    .iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

async fn resolve_resource<P: AccessProvider>(p: &P, name: &str) -> FlowResult<Principal> {
    let name = name.trim();
    let found = p.resources_by_name(name).await.map_err(provider_down)?;
    if found.is_empty()
        && let Some(r) = p.resource(&RemoteId::new(name)).await.ok().flatten()
    {
        return Ok(Principal {
            id: r.id,
            name: r.name,
        });
    }
    one_named("resources", "resource", name, found)
}

/// Groups resolved by name recently. Resolving reads every member page of the group, and
/// submissions name the same few groups again and again; only what identifies a group (id, name,
/// type) is kept, for a minute, and only when something was found.
#[derive(Default)]
pub struct GroupNames {
    map: std::sync::Mutex<HashMap<String, (std::time::Instant, Vec<GroupInfo>)>>,
}

const GROUP_NAME_TTL: Duration = Duration::from_secs(60);

impl GroupNames {
    fn get(&self, name: &str) -> Option<Vec<GroupInfo>> {
        let map = self.map.lock().ok()?;
        let (at, groups) = map.get(name)?;
        (at.elapsed() < GROUP_NAME_TTL).then(|| groups.clone())
    }

    fn put(&self, name: &str, groups: &[GroupInfo]) {
        if let Ok(mut map) = self.map.lock() {
            let slim = groups
                .iter()
                .map(|g| GroupInfo {
                    users: Vec::new(),
                    resources: Vec::new(),
                    ..g.clone()
                })
                .collect();
            map.insert(name.to_owned(), (std::time::Instant::now(), slim));
        }
    }
}

async fn resolve_group<P: AccessProvider>(
    p: &P,
    cache: &GroupNames,
    name: &str,
) -> FlowResult<Principal> {
    let name = name.trim();
    let mut found = match cache.get(name) {
        Some(found) => found,
        None => p.groups_by_name(name).await.map_err(provider_down)?,
    };
    if found.is_empty()
        && let Some(g) = p.group(&RemoteId::new(name)).await.ok().flatten()
    {
        found.push(g);
    }
    if !found.is_empty() {
        cache.put(name, &found);
    }
    if found.len() == 1 && found[0].name.starts_with(lapse_core::REMOTE_PREFIX) {
        // lapse's own groups are wholly managed: a stranger added to one is removed by the sweep.
        return Err(FlowError::field(
            "group",
            format!("group {name:?} is one of lapse's own ephemeral groups"),
            "grant access to an ordinary MANUAL group, or submit another ephemeral-group grant",
        ));
    }
    if found.len() == 1 && found[0].group_type != GroupType::Manual {
        let t = format!("{:?}", found[0].group_type).to_uppercase();
        return Err(FlowError::field(
            "group",
            format!("group {name:?} is a {t} group, which Twingate does not let lapse change"),
            "choose a MANUAL group, or use an ephemeral-group grant",
        ));
    }
    let refs = found
        .into_iter()
        .map(|g| NamedRef {
            id: g.id,
            name: g.name,
        })
        .collect();
    one_named("group", "group", name, refs)
}

async fn resolve_service_account<P: AccessProvider>(p: &P, name: &str) -> FlowResult<Principal> {
    let name = name.trim();
    let mut found: Vec<NamedRef> = p
        .service_accounts_by_name(name)
        .await
        .map_err(provider_down)?
        .into_iter()
        .map(|s| NamedRef {
            id: s.id,
            name: s.name,
        })
        .collect();
    if found.is_empty()
        && let Some(s) = p.service_account(&RemoteId::new(name)).await.ok().flatten()
    {
        found.push(NamedRef {
            id: s.id,
            name: s.name,
        });
    }
    one_named("service_account", "service account", name, found)
}

fn require(field: &str, present: bool, kind: GrantKind, fix: &str) -> FlowResult<()> {
    if present {
        Ok(())
    } else {
        Err(FlowError::field(
            field,
            format!("is required for a {kind} grant"),
            fix,
        ))
    }
}

fn forbid(field: &str, present: bool, kind: GrantKind) -> FlowResult<()> {
    if present {
        Err(FlowError::field(
            field,
            format!("does not apply to a {kind} grant"),
            format!("remove `{field}`"),
        ))
    } else {
        Ok(())
    }
}

impl<P: AccessProvider> Submitter<P> {
    pub fn new(provider: Arc<P>, limits: Limits) -> Self {
        Self {
            provider,
            limits,
            group_names: GroupNames::default(),
        }
    }

    /// The limits submissions are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks everything that needs no network, then resolves names. Nothing is written here.
    pub async fn build(
        &self,
        req: &GrantRequest,
        requester: &str,
        now: DateTime<Utc>,
    ) -> FlowResult<Grant> {
        build_grant(self, req, requester, now).await
    }
}

async fn build_grant<P: AccessProvider>(
    state: &Submitter<P>,
    req: &GrantRequest,
    requester: &str,
    now: DateTime<Utc>,
) -> FlowResult<Grant> {
    let kind = GrantKind::from_str(req.kind.trim()).map_err(|m| {
        FlowError::field(
            "kind",
            m,
            "use one of the five kinds, e.g. `group-membership`",
        )
    })?;
    let reason = policy::check_reason(&req.reason, &state.limits)?;
    let (starts_at, expires_at) = policy::window(
        now,
        req.starts_at,
        req.duration.as_deref(),
        req.expires_at,
        &state.limits,
    )?;
    let has_users = !req.users.is_empty();
    let has_res = !req.resources.is_empty();
    let has_group = req.group.as_deref().is_some_and(|g| !g.trim().is_empty());
    let has_sa = req
        .service_account
        .as_deref()
        .is_some_and(|g| !g.trim().is_empty());
    let max = state.limits.max_principals;
    for (field, n) in [
        ("users", req.users.len()),
        ("resources", req.resources.len()),
    ] {
        if n > max {
            return Err(FlowError::field(
                field,
                format!("{n} entries, over the limit of {max}"),
                "split the request into several grants",
            ));
        }
    }
    let users_fix = "add --user EMAIL (once per user)";
    let res_fix = "add --resource NAME (once per resource)";
    match kind {
        GrantKind::EphemeralGroup => {
            require("users", has_users, kind, users_fix)?;
            require("resources", has_res, kind, res_fix)?;
            forbid("group", has_group, kind)?;
            forbid("service_account", has_sa, kind)?;
        }
        GrantKind::GroupMembership => {
            require("group", has_group, kind, "add --group NAME")?;
            require("users", has_users, kind, users_fix)?;
            forbid("resources", has_res, kind)?;
            forbid("service_account", has_sa, kind)?;
        }
        GrantKind::GroupAccess => {
            require("group", has_group, kind, "add --group NAME")?;
            require("resources", has_res, kind, res_fix)?;
            forbid("users", has_users, kind)?;
            forbid("service_account", has_sa, kind)?;
        }
        GrantKind::ServiceAccess => {
            require(
                "service_account",
                has_sa,
                kind,
                "add --service-account NAME",
            )?;
            require("resources", has_res, kind, res_fix)?;
            forbid("users", has_users, kind)?;
            forbid("group", has_group, kind)?;
        }
        GrantKind::ServiceKey => {
            require(
                "service_account",
                has_sa,
                kind,
                "add --service-account NAME",
            )?;
            forbid("users", has_users, kind)?;
            forbid("resources", has_res, kind)?;
            forbid("group", has_group, kind)?;
        }
    }
    let p = state.provider.as_ref();
    let mut users = Vec::new();
    for u in &req.users {
        let r = resolve_user(p, u).await?;
        if !users.contains(&r) {
            users.push(r);
        }
    }
    let mut resources = Vec::new();
    for r in &req.resources {
        let r = resolve_resource(p, r).await?;
        if !resources.contains(&r) {
            resources.push(r);
        }
    }
    let group = match (&req.group, has_group) {
        (Some(g), true) => Some(resolve_group(p, &state.group_names, g).await?),
        _ => None,
    };
    let sa = match (&req.service_account, has_sa) {
        (Some(s), true) => Some(resolve_service_account(p, s).await?),
        _ => None,
    };
    let missing = || FlowError::Internal("a required target was not resolved".into());
    let spec = match kind {
        GrantKind::EphemeralGroup => GrantSpec::EphemeralGroup { users, resources },
        GrantKind::GroupMembership => GrantSpec::GroupMembership {
            group: group.ok_or_else(missing)?,
            users,
        },
        GrantKind::GroupAccess => GrantSpec::GroupAccess {
            group: group.ok_or_else(missing)?,
            resources,
        },
        GrantKind::ServiceAccess => GrantSpec::ServiceAccess {
            service_account: sa.ok_or_else(missing)?,
            resources,
        },
        GrantKind::ServiceKey => GrantSpec::ServiceKey {
            service_account: sa.ok_or_else(missing)?,
        },
    };
    // Name lookups can be slow (Twingate's budget, retries): a grant whose end has passed by
    // now would be stored only to expire unapplied, so it is refused with the reason.
    let looked_up = Utc::now();
    if expires_at <= looked_up {
        let field = if req.duration.is_some() {
            "duration"
        } else {
            "expires_at"
        };
        let took = policy::human_duration(looked_up - now);
        return Err(FlowError::field(
            field,
            format!(
                "the grant would have ended at {} before it was stored: looking up the names \
                 took {took}",
                expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            format!(
                "ask for a longer duration (the lookups alone took {took}), or an `expires_at` \
                 further ahead"
            ),
        ));
    }
    Ok(Grant {
        id: GrantId::from_parts(now, rand::random()),
        spec,
        requester: requester.to_owned(),
        reason,
        created_at: now,
        starts_at,
        expires_at,
        state: if starts_at > now {
            GrantState::Scheduled
        } else {
            GrantState::Applying
        },
        revoked_at: None,
        revoke_reason: None,
        retry: Default::default(),
    })
}
