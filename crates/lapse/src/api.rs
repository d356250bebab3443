//! The HTTP API for grants, history, audit and operations: authenticate (`Caller`, `Writer`),
//! parse, call the submitter or the engine, and map errors to statuses.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use lapse_core::Role;
use lapse_core::access_list::Refusal;
use lapse_core::grant_policy::Granter;
use lapse_core::policy::{self, FieldError};
use lapse_core::{AccessProvider, Grant, GrantId, GrantKind, GrantState};
use lapse_engine::{EngineError, EngineHandle};
use lapse_requests::wire::{
    BrokenRow, ErrorBody, ErrorDetail, GrantDetail, GrantList, GrantRequest, GrantView,
    HistoryList, Readiness, RevokeRequest, TokenView, VerifyReport, WhoAmI,
};
use lapse_requests::{FlowError, RequestService, Submitter};
use lapse_store::{
    AuthRefusal, GrantFilter, HistoryFilter, Idempotency, Inserted, NewHistory, Store, StoreError,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Everything a request handler needs.
pub struct ApiState<P> {
    pub store: Store,
    /// Submissions share durable commits (group commit) instead of one fsync each.
    pub inserter: lapse_store::GrantInserter,
    /// Validation and name resolution, shared with request activation.
    pub submitter: Arc<Submitter<P>>,
    pub engine: EngineHandle,
    /// The request flow on access lists.
    pub flow: Arc<RequestService<P, EngineHandle>>,
    /// Set once start-up has fully succeeded.
    pub ready: AtomicBool,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Rate-limits the log lines of failed authentications.
    pub auth_log: AuthLog,
    /// Verifies bearer JWTs from the OpenID issuer, when `[auth.oidc]` is set.
    pub oidc: Option<Arc<lapse_oidc::Verifier>>,
    /// The leader lease epoch this daemon runs the loop in (0 on SQLite, and until it leads).
    pub epoch: Arc<std::sync::atomic::AtomicI64>,
    /// Whether this daemon holds the leader lease. A daemon that holds it is the leader, and
    /// is ready only while its loop runs; one whose loop has ended is not a standby.
    pub holds_lease: Arc<AtomicBool>,
}

pub fn router<P: AccessProvider + 'static>(state: Arc<ApiState<P>>) -> Router {
    Router::new()
        .route("/v1/grants", post(submit::<P>).get(list::<P>))
        .route("/v1/grants/{id}", get(show::<P>))
        .route("/v1/grants/{id}/revoke", post(revoke::<P>))
        .route("/v1/grants/{id}/token", post(take_token::<P>))
        .route("/v1/history", get(history::<P>))
        .route("/v1/whoami", get(whoami))
        .route("/v1/audit/verify", get(verify::<P>))
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                field: self.field,
                message: self.message,
                fix: self.fix,
            },
        };
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
            StoreError::IdempotencyKey { problem, fix } => {
                ApiError::bad("Idempotency-Key", problem, fix)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::Refused(r) => {
                // Who the caller is (not a member, not an owner, no identity) is `forbidden`;
                // a rule refusing this request (the CLI's exit 5) has its own code.
                let code = match r {
                    Refusal::SelfApproval => "self_approval",
                    Refusal::Suspended { .. } => "list_suspended",
                    Refusal::NoBreakGlass { .. }
                    | Refusal::AlreadyApproved { .. }
                    | Refusal::NotPending { .. }
                    | Refusal::NotDue { .. } => "refused",
                    Refusal::NotMember { .. }
                    | Refusal::NotOwner { .. }
                    | Refusal::NoIdentity
                    | Refusal::NotRequester
                    | Refusal::NotRequesterOrOwner => "forbidden",
                };
                Self::new(StatusCode::FORBIDDEN, code, r.to_string())
            }
            FlowError::NotAuthorized(r) => ApiError {
                status: StatusCode::FORBIDDEN,
                code: "not_authorized",
                field: None,
                message: r.to_string(),
                fix: None,
            },
            FlowError::Field(f) => Self::field(f),
            FlowError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            FlowError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            e @ FlowError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "twingate_unavailable",
                e.to_string(),
            ),
            FlowError::GrantRefused(inner) => {
                let status = ApiError::from(*inner).status;
                Self::new(
                    status,
                    "grant_refused",
                    format!(
                        "the list's target could not be granted (see the daemon log); status {status}"
                    ),
                )
            }
            FlowError::Store(e) => e.into(),
            FlowError::Engine(e) => Self::internal(e),
            FlowError::Internal(m) => Self::internal(m),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Every error body in the JSON error shape: axum's own rejections (413, a query that does not
/// parse, an unknown route or method) are plain text, and are rewritten here.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (code, fix) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "send a smaller body"),
        StatusCode::NOT_FOUND => ("not_found", "see /openapi.json for the routes"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "see /openapi.json for the routes")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "send application/json"),
        s if s.is_client_error() => ("bad_request", "check the query parameters and the body"),
        _ => ("internal", "see the daemon log"),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError {
        status,
        code,
        field: None,
        message,
        fix: Some(fix.to_owned()),
    }
    .into_response()
}

/// Who is calling, from the bearer token: every role may call the read routes, which narrow
/// what a requester sees to their own.
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// The person the token speaks for, normalised.
    pub(crate) identity: Option<String>,
}

impl Caller {
    /// The requester recorded for this caller's grants: their identity, or the token's name.
    pub(crate) fn requester(&self) -> String {
        lapse_requests::requester_of(&self.name, self.identity.as_deref())
    }

    /// Whether grant `g` is this caller's own.
    pub(crate) fn owns(&self, g: &Grant) -> bool {
        lapse_requests::is_own(g, &self.name, self.identity.as_deref())
    }

    /// Whether the caller sees only their own grants and requests.
    pub(crate) fn own_only(&self) -> bool {
        self.role == Role::Requester
    }

    /// An answer for a route this role may not use.
    pub(crate) fn refuse(&self, fix: &str) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            field: None,
            message: format!(
                "token {:?} has the {} role, which may not do this",
                self.name, self.role
            ),
            fix: Some(fix.to_owned()),
        }
    }
}

/// A caller whose role may write (everyone but auditors); what they may write is decided by
/// the route's rule (list membership and ownership, grant policies, their own grants).
pub(crate) struct Writer(pub(crate) Caller);

impl<P: Send + Sync> FromRequestParts<Arc<ApiState<P>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState<P>>,
    ) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        let caller = authenticate(state, &parts.headers, peer).await?;
        if let Some(slot) = parts.extensions.get::<crate::telemetry::ActorSlot>() {
            slot.set(&caller.name);
        }
        Ok(caller)
    }
}

impl<P: Send + Sync> FromRequestParts<Arc<ApiState<P>>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState<P>>,
    ) -> Result<Self, ApiError> {
        let c = Caller::from_request_parts(parts, state).await?;
        match c.role {
            Role::Admin | Role::Operator | Role::Requester => Ok(Writer(c)),
            // The one answer for "this role may not write", whatever the route.
            Role::Auditor => Err(ApiError {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                field: None,
                message: format!(
                    "token {:?} has the auditor role, which may only read",
                    c.name
                ),
                fix: Some("use a requester, operator or admin token".into()),
            }),
        }
    }
}

/// The token of an `Authorization` header; the scheme is case-insensitive (RFC 7235).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

async fn authenticate<P>(
    state: &ApiState<P>,
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
) -> ApiResult<Caller> {
    let refuse = |why: &str| {
        metrics::counter!("lapse_auth_failures_total").increment(1);
        if state.auth_log.allow() {
            // Never the token: only why, and from where.
            tracing::warn!(peer = ?peer, why, "authentication failed");
        }
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            field: Some("Authorization".into()),
            message: format!("bearer token refused: {why}"),
            fix: Some(
                "pass --token or set LAPSE_TOKEN; an admin creates one with `lapse token create`"
                    .into(),
            ),
        }
    };
    let Some(token) = bearer(headers) else {
        return Err(refuse("missing"));
    };
    if let Some(oidc) = &state.oidc
        && lapse_oidc::Verifier::looks_like_jwt(token)
    {
        return match oidc.verify(token).await {
            Ok(c) => Ok(Caller {
                name: lapse_core::text::oidc_caller_name(&c.identity),
                role: c.role,
                identity: Some(c.identity),
            }),
            Err(r) => {
                let mut e = refuse(&r.to_string());
                e.fix = Some(
                    "sign in again at the OpenID issuer for a fresh token, or use an API token"
                        .into(),
                );
                Err(e)
            }
        };
    }
    match state.store.check_token(token, Utc::now()).await? {
        Ok(t) => Ok(Caller {
            name: t.name,
            role: t.role,
            identity: t
                .identity
                .map(|i| lapse_core::access_list::normalize_identity(&i)),
        }),
        Err(AuthRefusal::Unknown) => Err(refuse("unknown token")),
        Err(r @ (AuthRefusal::Revoked { .. } | AuthRefusal::Expired { .. })) => {
            Err(refuse(&r.to_string()))
        }
        Err(r @ AuthRefusal::Unrecorded { .. }) => {
            tracing::error!(refusal = %r, "a token row not in the history was presented");
            Err(refuse(&r.to_string()))
        }
    }
}

/// At most a few authentication-failure lines a second, so a flood cannot fill the journal;
/// the counter in `/metrics` still counts every one.
#[derive(Default)]
pub struct AuthLog {
    window: std::sync::Mutex<(i64, u32)>,
}

impl AuthLog {
    const PER_SECOND: u32 = 5;

    fn allow(&self) -> bool {
        let now = Utc::now().timestamp();
        let Ok(mut w) = self.window.lock() else {
            return false;
        };
        if w.0 != now {
            *w = (now, 0);
        }
        w.1 += 1;
        w.1 <= Self::PER_SECOND
    }
}

/// `GET /v1/whoami`: the token's name, role and identity.
#[utoipa::path(
    operation_id = "whoami",
    get, path = "/v1/whoami", tag = "tokens",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: caller.name,
        role: caller.role.as_str().to_owned(),
        identity: caller.identity,
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubmitQuery {
    /// Answer only once the grant is active or failed (at most 60 s; 202 when still applying).
    #[serde(default)]
    wait: bool,
}

#[utoipa::path(
    operation_id = "submitGrant",
    post, path = "/v1/grants", tag = "grants",
    params(SubmitQuery, ("Idempotency-Key" = Option<String>, Header, description = "Replays answer with the grant first created")),
    request_body = GrantRequest,
    responses(
        (status = 201, description = "Created", body = GrantView),
        (status = 200, description = "Already created with this Idempotency-Key", body = GrantView),
        (status = 202, description = "Still applying when `wait` ran out", body = GrantView),
        (status = 400, description = "Bad input: the field and the fix", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "Idempotency-Key reused for a different request", body = ErrorBody),
        (status = 421, description = "A service-key grant sent to a standby: send it to the leader named", body = ErrorBody),
        (status = 503, description = "Twingate could not be asked to resolve names", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn submit<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    Writer(caller): Writer,
    body: Bytes,
) -> ApiResult<Response> {
    let req: GrantRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "body",
            format!("is not a valid grant request: {e}"),
            "send a JSON object with kind, users/resources/group/service_account, duration and reason",
        )
    })?;
    let idempotency = match headers.get("idempotency-key") {
        Some(v) => {
            let key = v.to_str().map(str::trim).map_err(|_| {
                ApiError::bad(
                    "Idempotency-Key",
                    "is not text",
                    "use a short printable key such as a UUID",
                )
            })?;
            // Scoped to the caller: the same key from two callers never meets.
            Some(Idempotency::for_caller(
                &caller.name,
                key,
                // Matched on the request's meaning, not its bytes.
                hex::encode(Sha256::digest(req.meaning())),
            )?)
        }
        None => None,
    };
    let now = Utc::now();
    let grant = state
        .submitter
        .build(&req, &caller.requester(), now)
        .await?;
    let who = Granter {
        token: &caller.name,
        role: caller.role,
        identity: caller.identity.as_deref(),
    };
    let rule = state.flow.authorize_direct(who, &grant)?.label();
    // A service key's token lives only in the memory of the engine that creates the key, and
    // only the leader's engine runs: a standby would store a grant whose token it cannot give.
    if grant.kind() == lapse_core::GrantKind::ServiceKey && !state.engine.is_leading() {
        return Err(not_leader(&state.store, "submit service-key grants").await);
    }
    let mut events = state.engine.subscribe();
    let inserted = state.inserter.insert(grant, idempotency, &rule).await?;
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
            // A replay by the same caller may receive a token still held; nobody else can
            // reach this grant through the key, which is scoped to its caller.
            if caller.owns(&current)
                && let Some(t) = state.engine.take_token(id)
            {
                record_hand_out(&state.store, id, &caller.name, "submit").await?;
                view.token = Some(t.expose().to_owned());
            }
            return Ok((status, Json(view)).into_response());
        }
        // A standby hears nothing from the leader's engine: it looks at the store again.
        let look = (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
        match tokio::time::timeout_at(look, events.recv()).await {
            Err(_) if look < deadline => {}
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
    operation_id = "takeGrantToken",
    post, path = "/v1/grants/{id}/token", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    responses(
        (status = 200, body = TokenView),
        (status = 403, description = "Only the requester may take the token", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 410, description = "Already taken or not created yet", body = ErrorBody),
        (status = 421, description = "Asked of a standby: the token is held by the leader named", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn take_token<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    caller: Caller,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let g = state
        .store
        .get_grant(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !caller.owns(&g) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the requester may take a key's token",
        ));
    }
    if !state.engine.is_leading() {
        return Err(not_leader(&state.store, "hand out service-key tokens").await);
    }
    match state.engine.take_token(id) {
        Some(t) => {
            record_hand_out(&state.store, id, &caller.name, "take").await?;
            Ok(Json(TokenView {
                token: t.expose().to_owned(),
            })
            .into_response())
        }
        None => Err(ApiError::new(
            StatusCode::GONE,
            "token_gone",
            "the token was already taken, expired from memory, or not created yet",
        )),
    }
}

/// Every hand-out of a service key's token is in the history: who received it, and how.
async fn record_hand_out(store: &Store, id: GrantId, to: &str, how: &str) -> ApiResult<()> {
    store
        .commit_requests(lapse_store::RequestChange {
            history: vec![NewHistory {
                at: Utc::now(),
                grant_id: Some(id),
                actor: to.to_owned(),
                event: lapse_core::HistoryEvent::TokenHandedOut.as_str().to_owned(),
                detail: serde_json::json!({ "to": to, "via": how }),
            }],
            ..Default::default()
        })
        .await?;
    Ok(())
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

/// 421 from a standby for what only the leader does, naming the node that leads now.
async fn not_leader(store: &Store, what: &str) -> ApiError {
    let leader = match store.lease().await {
        Ok(Some(l)) if l.leader => format!("`{}` (epoch {})", l.holder, l.epoch),
        _ => "the leader".to_owned(),
    };
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "not_leader",
        format!("this daemon is a standby; only the leader may {what}: send it to {leader}"),
    )
}

fn not_found(id: GrantId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no grant {id}"))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only grants in this state.
    state: Option<String>,
    /// Only grants for this user (email, or Twingate id).
    user: Option<String>,
    /// Only grants that reach this resource (name, or Twingate id).
    resource: Option<String>,
    /// Only grants of this kind.
    kind: Option<String>,
    /// At most this many grants, newest first (default 1000, at most 10000).
    limit: Option<u32>,
    /// The `next` cursor of the page before: the page that follows it.
    cursor: Option<String>,
    /// Only the grants the caller asked for.
    #[serde(default)]
    mine: bool,
}

#[utoipa::path(
    operation_id = "listGrants",
    get, path = "/v1/grants", tag = "grants",
    params(ListQuery),
    responses((status = 200, body = GrantList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Query(q): Query<ListQuery>,
    caller: Caller,
) -> ApiResult<Response> {
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
    let before = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            lapse_requests::wire::cursor_id(c)
                .and_then(|id| GrantId::from_str(&id).ok())
                .ok_or_else(|| {
                    ApiError::bad(
                        "cursor",
                        "is not a cursor this API gave",
                        "pass the `next` value of the page before, unchanged",
                    )
                })?,
        ),
    };
    if q.limit == Some(0) {
        return Err(ApiError::bad(
            "limit",
            "must be at least 1",
            "ask for 1 to 10000 grants a page, or leave it out for 1000",
        ));
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let mut filter = GrantFilter {
        states,
        user: q.user.map(|u| u.trim().to_lowercase()),
        resource: q.resource,
        kind,
        limit: Some(limit),
        before,
    };
    let own_only = caller.own_only() || q.mine;
    let mut views: Vec<GrantView> = Vec::new();
    let mut last_seen = None;
    let next = loop {
        let grants = state.store.list_grants(&filter).await?;
        let full = grants.len() == limit as usize;
        for g in &grants {
            if !own_only || caller.owns(g) {
                views.push(GrantView::from(g));
                last_seen = Some(g.id);
                if views.len() == limit as usize {
                    break;
                }
            }
        }
        // The cursor follows the last row *shown*: a caller who sees only their own grants
        // learns nothing of others' from it, not even that there are more.
        if views.len() == limit as usize {
            break last_seen.map(|id| lapse_requests::wire::cursor_after(&id.to_string()));
        }
        match grants.last() {
            Some(g) if full => filter.before = Some(g.id),
            _ => break None,
        }
    };
    Ok(Json(GrantList {
        grants: views,
        next,
    })
    .into_response())
}

#[utoipa::path(
    operation_id = "showGrant",
    get, path = "/v1/grants/{id}", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    responses((status = 200, body = GrantDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn show<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    caller: Caller,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let g = state
        .store
        .get_grant(id)
        .await?
        // A requester learns nothing of others' grants, not even that they exist.
        .filter(|g| !caller.own_only() || caller.owns(g))
        .ok_or_else(|| not_found(id))?;
    let rows = state
        .store
        .history(&HistoryFilter {
            grant: Some(id),
            ..HistoryFilter::default()
        })
        .await?;
    let history = lapse_requests::wire::history_views(&state.store, rows).await?;
    Ok(Json(GrantDetail {
        grant: GrantView::from(&g),
        history,
    })
    .into_response())
}

#[utoipa::path(
    operation_id = "revokeGrant",
    post, path = "/v1/grants/{id}/revoke", tag = "grants",
    params(("id" = String, Path, description = "Grant id")),
    request_body = RevokeRequest,
    responses(
        (status = 200, body = GrantView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The grant has already ended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn revoke<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    Writer(caller): Writer,
    body: Bytes,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let req: RevokeRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "body",
            format!("is not a valid revoke request: {e}"),
            "send {\"reason\": \"...\"}",
        )
    })?;
    let reason =
        policy::check_reason(&req.reason, state.submitter.limits()).map_err(ApiError::field)?;
    // The one rule for the API and the console (`lapse_requests::may_revoke`).
    if caller.role != Role::Admin {
        let g = state
            .store
            .get_grant(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        match lapse_requests::may_revoke(&caller.name, caller.identity.as_deref(), caller.role, &g)
        {
            lapse_requests::RevokeRule::Allowed => {}
            lapse_requests::RevokeRule::Hidden => return Err(not_found(id)),
            lapse_requests::RevokeRule::NotYours => {
                return Err(caller.refuse("only an admin revokes another's grant"));
            }
        }
    }
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
    /// Only rows of this grant: its own, and the remote changes made for it.
    grant: Option<String>,
    /// Only rows of grants naming this user (email, or Twingate id).
    user: Option<String>,
    /// Only rows of grants naming this resource (name, or Twingate id).
    resource: Option<String>,
    /// Rows at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Rows before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// At most this many rows: the oldest, or with `newest_first` the newest.
    limit: Option<u32>,
    /// Newest rows first (default: oldest first).
    #[serde(default)]
    newest_first: bool,
}

#[utoipa::path(
    operation_id = "listHistory",
    get, path = "/v1/history", tag = "audit",
    params(HistoryQuery),
    responses((status = 200, body = HistoryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn history<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    Query(q): Query<HistoryQuery>,
    caller: Caller,
) -> ApiResult<Response> {
    if caller.own_only() {
        return Err(caller.refuse("see your own grants' history with `lapse show ID`"));
    }
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
        newest_first: q.newest_first,
    };
    let rows = state.store.history(&filter).await?;
    let history = lapse_requests::wire::history_views(&state.store, rows).await?;
    Ok(Json(HistoryList { history }).into_response())
}

#[utoipa::path(
    operation_id = "verifyHistory",
    get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyReport), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn verify<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
    caller: Caller,
) -> ApiResult<Response> {
    if caller.own_only() {
        return Err(caller.refuse("use an auditor or admin token"));
    }
    let r = state.store.verify_history().await?;
    Ok(Json(VerifyReport {
        rows_checked: r.rows_checked,
        ok: r.first_broken.is_none(),
        first_broken: r.first_broken.map(|b| BrokenRow {
            seq: b.seq,
            reason: b.reason,
        }),
    })
    .into_response())
}

#[utoipa::path(operation_id = "healthz", get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process answers", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    operation_id = "readyz",
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Started: the leader's reconcile loop is passing, or a standby reaches the database", body = Readiness),
        (status = 503, description = "Starting, the loop has stalled, or a standby cannot reach the database", body = Readiness),
    )
)]
pub(crate) async fn readyz<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
) -> Response {
    let h = state.engine.health();
    let lease = state.store.lease().await;
    let held = lease.as_ref().ok().and_then(Option::as_ref);
    // Only a lease that has not run out names a leader.
    let now = Utc::now();
    let leader = held
        .filter(|l| l.expires_at.is_none_or(|t| t > now))
        .map(|l| l.holder.clone());
    let (role, epoch, ready) =
        if state.holds_lease.load(Ordering::SeqCst) || state.engine.is_leading() {
            // Alive while passes start and remote calls finish, even in a long rate-limited pass.
            // A lease holder whose loop has ended is not ready.
            let loop_alive = state.engine.is_leading()
                && state
                    .engine
                    .heartbeat()
                    .is_some_and(|t| now - t < chrono::Duration::seconds(120));
            ("leader", state.epoch.load(Ordering::Relaxed), loop_alive)
        } else {
            // A standby serves the API from the database: ready while it can read the lease.
            let epoch = held.map_or(0, |l| l.epoch);
            ("standby", epoch, lease.is_ok())
        };
    let ready = ready && state.ready.load(Ordering::Relaxed);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Readiness {
            ready,
            passes: h.passes,
            role: role.into(),
            epoch,
            leader,
        }),
    )
        .into_response()
}

#[utoipa::path(operation_id = "metrics", get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics_page<P: AccessProvider + 'static>(
    State(state): State<Arc<ApiState<P>>>,
) -> Response {
    crate::telemetry::record_health(&state.engine.health());
    crate::telemetry::record_scrape(state.store.flow_gauges(Utc::now()).await.ok());
    match &state.metrics {
        Some(m) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            m.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
