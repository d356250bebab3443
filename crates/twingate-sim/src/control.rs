//! The `/_sim/` control surface: state, journal, faults, clock and admin changes over HTTP.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::admin::Admin;
use crate::error::SimError;
use crate::faults::Faults;
use crate::model::GroupType;
use crate::snapshot::StateSnapshot;
use crate::transport::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/state", get(state))
        .route("/journal", get(journal).delete(clear_journal))
        .route("/faults", put(set_faults).get(get_faults))
        .route("/clock", get(clock))
        .route("/clock/advance", post(advance))
        .route("/admin/users", post(create_user))
        .route("/admin/users/bulk", post(create_users))
        .route("/admin/groups", post(create_group))
        .route("/admin/groups/{id}", delete(delete_group))
        .route("/admin/groups/{id}/users", post(group_users))
        .route("/admin/resources", post(create_resource))
        .route("/admin/resources/{id}/access", post(resource_access))
        .route("/admin/service-accounts", post(create_service_account))
        .route(
            "/admin/service-accounts/{id}/resources",
            post(service_account_resources),
        )
}

fn admin(app: &AppState) -> Admin {
    Admin {
        shared: app.shared.clone(),
    }
}

fn fail(e: SimError) -> Response {
    let status = match &e {
        SimError::Rejected(m) if m.contains("does not exist") => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": e.to_string() }))).into_response()
}

fn created(result: Result<String, SimError>) -> Response {
    match result {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "id": id }))).into_response(),
        Err(e) => fail(e),
    }
}

fn done(result: Result<(), SimError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => fail(e),
    }
}

async fn state(State(app): State<AppState>) -> Json<StateSnapshot> {
    Json(app.shared.with_store(|s, now| StateSnapshot::of(s, now)))
}

async fn journal(State(app): State<AppState>) -> Response {
    Json(app.shared.journal().entries()).into_response()
}

async fn clear_journal(State(app): State<AppState>) -> StatusCode {
    app.shared.journal().clear();
    StatusCode::NO_CONTENT
}

/// Faults as JSON; `rate_limit_storm_secs` is a convenience for a storm starting now. Unknown
/// settings and per-operation keys that name no operation are refused with 400 and the reason.
async fn set_faults(
    State(app): State<AppState>,
    Json(mut body): Json<serde_json::Value>,
) -> Response {
    let storm = body
        .as_object_mut()
        .and_then(|o| o.remove("rate_limit_storm_secs"))
        .and_then(|v| v.as_u64());
    let mut faults: Faults = match serde_json::from_value(body) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("faults: {e}")).into_response(),
    };
    if let Err(e) = faults.check() {
        return (StatusCode::BAD_REQUEST, format!("faults: {e}")).into_response();
    }
    if let Some(secs) = storm {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000);
        faults.rate_limit_storm_until =
            Some(app.shared.clock.now() + chrono::Duration::seconds(secs));
    }
    app.shared.set_faults(faults);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(app): State<AppState>) -> Json<Faults> {
    Json((*app.shared.faults()).clone())
}

async fn clock(State(app): State<AppState>) -> Response {
    let offset = app.shared.clock.offset();
    Json(json!({ "now": app.shared.clock.now(), "offset_seconds": offset.num_milliseconds() as f64 / 1000.0 }))
        .into_response()
}

#[derive(Deserialize)]
struct Advance {
    seconds: i64,
}

async fn advance(State(app): State<AppState>, Json(body): Json<Advance>) -> Response {
    app.shared
        .clock
        .advance(chrono::Duration::seconds(body.seconds));
    clock(State(app)).await
}

#[derive(Deserialize)]
struct NewUser {
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
}

async fn create_user(State(app): State<AppState>, Json(b): Json<NewUser>) -> Response {
    created(admin(&app).create_user(&b.email, &b.first_name, &b.last_name))
}

#[derive(Deserialize)]
struct NewUsers {
    count: usize,
    #[serde(default = "default_prefix")]
    prefix: String,
}

fn default_prefix() -> String {
    "user".to_string()
}

async fn create_users(State(app): State<AppState>, Json(b): Json<NewUsers>) -> Response {
    match admin(&app).create_users(b.count, &b.prefix) {
        Ok(ids) => (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response(),
        Err(e) => fail(e),
    }
}

#[derive(Deserialize)]
struct NewGroup {
    name: String,
    #[serde(rename = "type", default)]
    group_type: GroupType,
}

async fn create_group(State(app): State<AppState>, Json(b): Json<NewGroup>) -> Response {
    created(admin(&app).create_group(&b.name, b.group_type))
}

async fn delete_group(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    done(admin(&app).delete_group(&id))
}

#[derive(Deserialize)]
struct AddRemove {
    #[serde(default)]
    add: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn group_users(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<AddRemove>,
) -> Response {
    let a = admin(&app);
    done(
        a.remove_group_users(&id, &b.remove)
            .and_then(|()| a.add_group_users(&id, &b.add)),
    )
}

#[derive(Deserialize)]
struct NewResource {
    name: String,
    address: String,
}

async fn create_resource(State(app): State<AppState>, Json(b): Json<NewResource>) -> Response {
    created(admin(&app).create_resource(&b.name, &b.address))
}

#[derive(Deserialize)]
struct AccessAdd {
    principal_id: String,
    #[serde(default)]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct AccessBody {
    #[serde(default)]
    add: Vec<AccessAdd>,
    #[serde(default)]
    remove: Vec<String>,
}

async fn resource_access(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<AccessBody>,
) -> Response {
    let a = admin(&app);
    let result = b
        .remove
        .iter()
        .try_for_each(|p| a.remove_resource_access(&id, p))
        .and_then(|()| {
            b.add
                .iter()
                .try_for_each(|x| a.add_resource_access(&id, &x.principal_id, x.expires_at))
        });
    done(result)
}

#[derive(Deserialize)]
struct NewServiceAccount {
    name: String,
}

async fn create_service_account(
    State(app): State<AppState>,
    Json(b): Json<NewServiceAccount>,
) -> Response {
    created(admin(&app).create_service_account(&b.name))
}

async fn service_account_resources(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<AddRemove>,
) -> Response {
    let a = admin(&app);
    done(
        a.remove_service_account_resources(&id, &b.remove)
            .and_then(|()| a.add_service_account_resources(&id, &b.add)),
    )
}
