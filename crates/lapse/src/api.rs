//! The JSON HTTP API: grant submission with validation and name resolution, listing, revocation,
//! history and audit, behind bearer tokens with roles.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lapse_core::policy::{self, FieldError, Limits};
use lapse_core::provider::{GroupInfo, GroupType, NamedRef};
use lapse_core::{
    AccessProvider, Grant, GrantId, GrantKind, GrantSpec, GrantState, Principal, RemoteId,
};
use lapse_engine::{EngineError, EngineHandle};
use lapse_store::{
    GrantFilter, HistoryFilter, HistoryRow, Idempotency, Inserted, Role, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Everything a request handler needs.
pub struct ApiState<P> {
    pub store: Store,
    /// Submissions share durable commits (group commit) instead of one fsync each.
    pub inserter: lapse_store::GrantInserter,
    pub group_names: GroupNames,
    pub engine: EngineHandle,
    pub provider: Arc<P>,
    pub limits: Limits,
    /// Set once start-up has fully succeeded.
    pub ready: AtomicBool,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

pub fn router<P: AccessProvider + 'static>(state: Arc<ApiState<P>>) -> Router {
    Router::new()
        .route("/v1/grants", post(submit::<P>).get(list::<P>))
        .route("/v1/grants/{id}", get(show::<P>))
        .route("/v1/grants/{id}/revoke", post(revoke::<P>))
        .route("/v1/grants/{id}/token", post(take_token::<P>))
        .route("/v1/history", get(history::<P>))
        .route("/v1/audit/verify", get(verify::<P>))
        .route("/v1/openapi.json", get(crate::openapi::document))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<P>))
        .route("/metrics", get(metrics_page::<P>))
        .with_state(state)
}

/// An API error: status, a stable code, and for bad input the field and the fix.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
    fix: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            field: None,
            message: message.into(),
            fix: None,
        }
    }
    pub(crate) fn field(e: FieldError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_field",
            field: Some(e.field),
            message: e.message,
            fix: Some(e.fix),
        }
    }
    fn bad(field: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::field(FieldError::new(field, message, fix))
    }
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "field": self.field, "message": self.message, "fix": self.fix } });
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyConflict { key } => ApiError {
                status: StatusCode::CONFLICT,
                code: "idempotency_conflict",
                field: Some("Idempotency-Key".into()),
                message: format!("key {key:?} was already used with a different request"),
                fix: Some("use a new key for a different request".into()),
            },
            other => ApiError::internal(other),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Who is calling, from the bearer token.
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) role: Role,
}

pub(crate) async fn authenticate<P>(state: &ApiState<P>, headers: &HeaderMap) -> ApiResult<Caller> {
    let missing = || ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        field: Some("Authorization".into()),
        message: "missing or unknown bearer token".into(),
        fix: Some(
            "pass --token or set LAPSE_TOKEN; an admin creates one with `lapse token create`"
                .into(),
        ),
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(missing)?;
    let info = state.store.authenticate(token).await?.ok_or_else(missing)?;
    Ok(Caller {
        name: info.name,
        role: info.role,
    })
}

fn require_writer(c: &Caller) -> ApiResult<()> {
    match c.role {
        Role::Admin | Role::Operator => Ok(()),
        Role::Auditor => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: None,
            message: format!(
                "token {:?} has the auditor role, which may only read",
                c.name
            ),
            fix: Some("use an operator or admin token".into()),
        }),
    }
}

/// A grant submission as sent by the CLI or a bot.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// One of `ephemeral-group`, `group-membership`, `group-access`, `service-access`, `service-key`.
    pub kind: String,
    /// Users by email.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub group: Option<String>,
    pub service_account: Option<String>,
    /// How long the grant lasts, e.g. `2h` (or give `expires_at`).
    pub duration: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub reason: String,
}

/// A grant as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantView {
    pub id: String,
    #[schema(value_type = String, example = "group-membership")]
    pub kind: GrantKind,
    #[schema(value_type = String, example = "active")]
    pub state: GrantState,
    pub requester: String,
    pub reason: String,
    pub users: Vec<String>,
    pub resources: Vec<String>,
    pub group: Option<String>,
    pub service_account: Option<String>,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// A service key's token, only in the answer to `?wait=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<&Grant> for GrantView {
    fn from(g: &Grant) -> Self {
        let names = |v: &[Principal]| v.iter().map(|p| p.name.clone()).collect();
        let (group, sa) = match &g.spec {
            GrantSpec::GroupMembership { group, .. } | GrantSpec::GroupAccess { group, .. } => {
                (Some(group.name.clone()), None)
            }
            GrantSpec::ServiceAccess {
                service_account, ..
            }
            | GrantSpec::ServiceKey { service_account } => {
                (None, Some(service_account.name.clone()))
            }
            GrantSpec::EphemeralGroup { .. } => (Some(g.id.remote_name()), None),
        };
        Self {
            id: g.id.to_string(),
            kind: g.kind(),
            state: g.state,
            requester: g.requester.clone(),
            reason: g.reason.clone(),
            users: names(g.spec.users()),
            resources: names(g.spec.resources()),
            group,
            service_account: sa,
            created_at: g.created_at,
            starts_at: g.starts_at,
            expires_at: g.expires_at,
            revoked_at: g.revoked_at,
            revoke_reason: g.revoke_reason.clone(),
            attempts: g.retry.attempts,
            next_attempt_at: g.retry.next_attempt_at,
            last_error: g.retry.last_error.clone(),
            token: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub grant_id: Option<String>,
    pub actor: String,
    pub event: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub hash: String,
}

impl From<HistoryRow> for HistoryView {
    fn from(h: HistoryRow) -> Self {
        Self {
            seq: h.seq,
            at: h.at,
            grant_id: h.grant_id.map(|g| g.to_string()),
            actor: h.actor,
            event: h.event,
            detail: h.detail,
            hash: h.hash,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubmitQuery {
    /// Answer only once the grant is active or failed (at most 60 s; 202 when still applying).
    #[serde(default)]
    wait: bool,
}

fn provider_down(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "twingate_unavailable",
        format!("could not resolve names in Twingate: {e}"),
    )
}

/// Resolve one user by email.
async fn resolve_user<P: AccessProvider>(p: &P, email: &str) -> ApiResult<Principal> {
    let e = email.trim().to_lowercase();
    if e.is_empty() || !e.contains('@') {
        return Err(ApiError::bad(
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
        None => Err(ApiError::bad(
            "users",
            format!("no Twingate user has the email {email:?}"),
            "check the spelling, or invite the user to Twingate first",
        )),
    }
}

fn one_named(field: &str, what: &str, name: &str, found: Vec<NamedRef>) -> ApiResult<Principal> {
    match found.len() {
        0 => Err(ApiError::bad(
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
        n => Err(ApiError::bad(
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

async fn resolve_resource<P: AccessProvider>(p: &P, name: &str) -> ApiResult<Principal> {
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
) -> ApiResult<Principal> {
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
        return Err(ApiError::bad(
            "group",
            format!("group {name:?} is one of lapse's own ephemeral groups"),
            "grant access to an ordinary MANUAL group, or submit another ephemeral-group grant",
        ));
    }
    if found.len() == 1 && found[0].group_type != GroupType::Manual {
        let t = format!("{:?}", found[0].group_type).to_uppercase();
        return Err(ApiError::bad(
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

async fn resolve_service_account<P: AccessProvider>(p: &P, name: &str) -> ApiResult<Principal> {
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

fn require(field: &str, present: bool, kind: GrantKind, fix: &str) -> ApiResult<()> {
    if present {
        Ok(())
    } else {
        Err(ApiError::bad(
            field,
            format!("is required for a {kind} grant"),
            fix,
        ))
    }
}

fn forbid(field: &str, present: bool, kind: GrantKind) -> ApiResult<()> {
    if present {
        Err(ApiError::bad(
            field,
            format!("does not apply to a {kind} grant"),
            format!("remove `{field}`"),
        ))
    } else {
        Ok(())
    }
}

/// Check everything that needs no network, then resolve names. Nothing is written here.
pub(crate) async fn build_grant<P: AccessProvider>(
    state: &ApiState<P>,
    req: &GrantRequest,
    requester: &str,
    now: DateTime<Utc>,
) -> ApiResult<Grant> {
    let kind = GrantKind::from_str(req.kind.trim()).map_err(|m| {
        ApiError::bad(
            "kind",
            m,
            "use one of the five kinds, e.g. `group-membership`",
        )
    })?;
    let reason = policy::check_reason(&req.reason, &state.limits).map_err(ApiError::field)?;
    let (starts_at, expires_at) = policy::window(
        now,
        req.starts_at,
        req.duration.as_deref(),
        req.expires_at,
        &state.limits,
    )
    .map_err(ApiError::field)?;
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
            return Err(ApiError::bad(
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
    let missing = || ApiError::internal("a required target was not resolved");
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

#[utoipa::path(
    post, path = "/v1/grants", tag = "grants",
    params(SubmitQuery, ("Idempotency-Key" = Option<String>, Header, description = "Replays answer with the grant first created")),
    request_body = GrantRequest,
    responses(
        (status = 201, description = "Created", body = GrantView),
        (status = 200, description = "Already created with this Idempotency-Key", body = GrantView),
        (status = 202, description = "Still applying when `wait` ran out", body = GrantView),
        (status = 400, description = "Bad input: the field and the fix", body = crate::openapi::ErrorBody),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, body = crate::openapi::ErrorBody),
        (status = 409, description = "Idempotency-Key reused for a different request", body = crate::openapi::ErrorBody),
        (status = 503, description = "Twingate could not be asked to resolve names", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn submit<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let caller = authenticate(&state, &headers).await?;
    require_writer(&caller)?;
    let req: GrantRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "body",
            format!("is not a valid grant request: {e}"),
            "send a JSON object with kind, users/resources/group/service_account, duration and reason",
        )
    })?;
    let idempotency = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 200)
                .ok_or_else(|| {
                    ApiError::bad(
                        "Idempotency-Key",
                        "is empty, too long or not text",
                        "use a short printable key such as a UUID",
                    )
                })?;
            Some(Idempotency {
                key: key.to_owned(),
                request_hash: hex::encode(Sha256::digest(&body)),
            })
        }
        None => None,
    };
    let now = Utc::now();
    let grant = build_grant(&state, &req, &caller.name, now).await?;
    let mut events = state.engine.subscribe();
    let inserted = state.inserter.insert(grant, idempotency).await?;
    let (status, grant) = match inserted {
        Inserted::Created(g) => {
            state
                .engine
                .submitted(g.clone())
                .await
                .map_err(ApiError::internal)?;
            (StatusCode::CREATED, g)
        }
        Inserted::Existing(g) => (StatusCode::OK, g),
    };
    if !q.wait {
        return Ok((status, Json(GrantView::from(&grant))).into_response());
    }
    // Wait (bounded) until the engine has applied the grant or given up on it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let id = grant.id;
    loop {
        let current = state
            .store
            .get_grant(id)
            .await?
            .unwrap_or_else(|| grant.clone());
        if matches!(current.state, GrantState::Active | GrantState::Failed)
            || current.state.is_terminal()
        {
            let mut view = GrantView::from(&current);
            view.token = state.engine.take_token(id).map(|t| t.expose().to_owned());
            return Ok((status, Json(view)).into_response());
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Ok((StatusCode::ACCEPTED, Json(GrantView::from(&current))).into_response());
            }
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return Err(ApiError::internal("the engine stopped"));
            }
            Ok(_) => {}
        }
    }
}

/// Hand a service key's token to its requester once, when `--wait` was not used.
#[utoipa::path(
    post, path = "/v1/grants/{id}/token", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    responses(
        (status = 200, body = crate::openapi::TokenView),
        (status = 403, description = "Only the requester may take the token", body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 410, description = "Already taken or not created yet", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn take_token<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let caller = authenticate(&state, &headers).await?;
    let id = parse_id(&id)?;
    let g = state
        .store
        .get_grant(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if g.requester != caller.name {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the requester may take a key's token",
        ));
    }
    match state.engine.take_token(id) {
        Some(t) => Ok(Json(json!({ "token": t.expose() })).into_response()),
        None => Err(ApiError::new(
            StatusCode::GONE,
            "token_gone",
            "the token was already taken, expired from memory, or not created yet",
        )),
    }
}

fn parse_id(id: &str) -> ApiResult<GrantId> {
    GrantId::from_str(id).map_err(|_| {
        ApiError::bad(
            "id",
            format!("{id:?} is not a grant id"),
            "use the 26-character id shown by `lapse list`",
        )
    })
}

fn not_found(id: GrantId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no grant {id}"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    state: Option<String>,
    user: Option<String>,
    resource: Option<String>,
    kind: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/v1/grants", tag = "grants",
    params(ListQuery),
    responses((status = 200, body = crate::openapi::GrantList), (status = 400, body = crate::openapi::ErrorBody), (status = 401, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authenticate(&state, &headers).await?;
    let states = match &q.state {
        Some(s) => vec![
            GrantState::from_str(s)
                .map_err(|m| ApiError::bad("state", m, "use one of the listed states"))?,
        ],
        None => Vec::new(),
    };
    let kind = match &q.kind {
        Some(k) => Some(
            GrantKind::from_str(k)
                .map_err(|m| ApiError::bad("kind", m, "use one of the listed kinds"))?,
        ),
        None => None,
    };
    let filter = GrantFilter {
        states,
        user: q.user.map(|u| u.trim().to_lowercase()),
        resource: q.resource,
        kind,
        limit: Some(q.limit.unwrap_or(1000).min(10_000)),
    };
    let grants = state.store.list_grants(&filter).await?;
    let views: Vec<GrantView> = grants.iter().map(GrantView::from).collect();
    Ok(Json(json!({ "grants": views })).into_response())
}

#[utoipa::path(
    get, path = "/v1/grants/{id}", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, body = crate::openapi::GrantDetail), (status = 404, body = crate::openapi::ErrorBody), (status = 401, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn show<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authenticate(&state, &headers).await?;
    let id = parse_id(&id)?;
    let g = state
        .store
        .get_grant(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let rows = state
        .store
        .history(&HistoryFilter {
            grant: Some(id),
            ..HistoryFilter::default()
        })
        .await?;
    let history: Vec<HistoryView> = rows.into_iter().map(HistoryView::from).collect();
    Ok(Json(json!({ "grant": GrantView::from(&g), "history": history })).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    post, path = "/v1/grants/{id}/revoke", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    request_body = RevokeRequest,
    responses(
        (status = 200, body = GrantView),
        (status = 400, body = crate::openapi::ErrorBody),
        (status = 401, body = crate::openapi::ErrorBody),
        (status = 403, body = crate::openapi::ErrorBody),
        (status = 404, body = crate::openapi::ErrorBody),
        (status = 409, description = "The grant has already ended", body = crate::openapi::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let caller = authenticate(&state, &headers).await?;
    require_writer(&caller)?;
    let id = parse_id(&id)?;
    let req: RevokeRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "body",
            format!("is not a valid revoke request: {e}"),
            "send {\"reason\": \"...\"}",
        )
    })?;
    let reason = policy::check_reason(&req.reason, &state.limits).map_err(ApiError::field)?;
    match state.engine.revoke(id, &caller.name, &reason).await {
        Ok(g) => Ok(Json(GrantView::from(&g)).into_response()),
        Err(EngineError::NotFound(id)) => Err(not_found(id)),
        Err(EngineError::Finished { id, state }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_ended",
            format!("grant {id} has already ended ({state})"),
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    grant: Option<String>,
    user: Option<String>,
    resource: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<u32>,
}

#[utoipa::path(
    get, path = "/v1/history", tag = "audit",
    params(HistoryQuery),
    responses((status = 200, body = crate::openapi::HistoryList), (status = 400, body = crate::openapi::ErrorBody), (status = 401, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn history<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Query(q): Query<HistoryQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authenticate(&state, &headers).await?;
    let grant = match &q.grant {
        Some(g) => Some(parse_id(g)?),
        None => None,
    };
    let filter = HistoryFilter {
        grant,
        user: q.user.map(|u| u.trim().to_lowercase()),
        resource: q.resource,
        since: q.since,
        until: q.until,
        limit: q.limit,
    };
    let rows = state.store.history(&filter).await?;
    let history: Vec<HistoryView> = rows.into_iter().map(HistoryView::from).collect();
    Ok(Json(json!({ "history": history })).into_response())
}

#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = crate::openapi::VerifyReport), (status = 401, body = crate::openapi::ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn verify<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authenticate(&state, &headers).await?;
    let r = state.store.verify_history().await?;
    Ok(Json(json!({
        "rows_checked": r.rows_checked,
        "ok": r.first_broken.is_none(),
        "first_broken": r.first_broken.map(|b| json!({ "seq": b.seq, "reason": b.reason })),
    }))
    .into_response())
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process answers", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Started and the reconcile loop is passing", body = crate::openapi::Readiness),
        (status = 503, description = "Starting, or the loop has stalled", body = crate::openapi::Readiness),
    )
)]
pub(crate) async fn readyz<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
) -> Response {
    let h = state.engine.health();
    // Alive while passes start and remote calls finish, even in a long rate-limited pass.
    let loop_alive = state
        .engine
        .heartbeat()
        .is_some_and(|t| Utc::now() - t < chrono::Duration::seconds(120));
    if state.ready.load(Ordering::Relaxed) && loop_alive {
        (
            StatusCode::OK,
            Json(json!({ "ready": true, "passes": h.passes })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "passes": h.passes })),
        )
            .into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics_page<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
) -> Response {
    crate::telemetry::record_health(&state.engine.health());
    match &state.metrics {
        Some(m) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            m.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
