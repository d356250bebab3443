//! The request flow's routes: authenticate, parse, call the service in `lapse-requests`, map
//! its answer to a status.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lapse_core::AccessProvider;
use lapse_core::access_list::{Refusal, normalize_identity};
use lapse_core::policy::FieldError;
use lapse_requests::wire::{
    CreateBody, DecisionBody, ErrorBody, ExtendBody, ListsReply, RequestList, RequestView,
    ReviewBody, ReviewList, ReviewRecorded,
};
use lapse_requests::{Actor, FlowError};
use serde::Deserialize;

use crate::api::{ApiError, ApiState, Caller, Writer};

type ReqResult<T> = Result<T, ApiError>;

pub fn router<P: AccessProvider + 'static>(state: Arc<ApiState<P>>) -> Router {
    Router::new()
        .route("/v1/lists", get(lists::<P>))
        .route("/v1/requests", post(create::<P>).get(list_requests::<P>))
        .route("/v1/requests/{id}", get(show::<P>))
        .route("/v1/requests/{id}/approve", post(approve::<P>))
        .route("/v1/requests/{id}/deny", post(deny::<P>))
        .route("/v1/requests/{id}/cancel", post(cancel::<P>))
        .route("/v1/grants/{id}/extend", post(extend::<P>))
        .route("/v1/reviews", get(reviews::<P>).post(record_review::<P>))
        .with_state(state)
}

/// A writer acting as a person: a token without an identity may not decide anything.
fn actor(w: &Writer) -> ReqResult<Actor> {
    let who =
        w.0.identity
            .as_deref()
            .ok_or_else(|| ApiError::from(FlowError::Refused(Refusal::NoIdentity)))?;
    Ok(Actor::new(w.0.name.clone(), who))
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> ReqResult<T> {
    let body = if body.is_empty() {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        ApiError::field(FieldError::new(
            "body",
            format!("is not a valid {what}: {e}"),
            "see `lapse --help`",
        ))
    })
}

#[utoipa::path(
    operation_id = "listAccessLists",
    get, path = "/v1/lists", tag = "requests",
    responses((status = 200, body = ListsReply), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn lists<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    _c: Caller,
) -> ReqResult<Json<ListsReply>> {
    Ok(Json(s.flow.lists().await?))
}

#[utoipa::path(
    operation_id = "createRequest",
    post, path = "/v1/requests", tag = "requests",
    request_body = CreateBody,
    responses(
        (status = 201, description = "Pending; or approved at once (break-glass, automatic lists)", body = RequestView),
        (status = 400, description = "Bad input: the field and the fix", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not a member, no identity, suspended list, or break-glass not allowed", body = ErrorBody),
        (status = 404, description = "No such list", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    w: Writer,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = actor(&w)?;
    let b: CreateBody = parse_body(&body, "request")?;
    let r = s.flow.create(&who, &b).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only requests in this state: pending, approved, denied, cancelled or lapsed.
    state: Option<String>,
    /// Only pending requests the caller may approve.
    #[serde(default)]
    waiting: bool,
    /// Only the caller's own requests.
    #[serde(default)]
    mine: bool,
}

#[utoipa::path(
    operation_id = "listRequests",
    get, path = "/v1/requests", tag = "requests",
    params(ListQuery),
    responses((status = 200, description = "Newest first", body = RequestList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn list_requests<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Query(q): Query<ListQuery>,
    c: Caller,
) -> ReqResult<Json<RequestList>> {
    let me = c.identity.as_deref();
    let mut list = s
        .flow
        .list_requests(q.state.as_deref(), q.waiting, me)
        .await?;
    if q.mine {
        list.requests
            .retain(|r| me.is_some_and(|m| normalize_identity(&r.requester) == m));
    }
    if c.own_only() {
        // A requester sees their own requests and those they own the list of.
        let owned: Vec<String> = s
            .flow
            .lists()
            .await?
            .lists
            .into_iter()
            .filter(|l| me.is_some_and(|m| l.owners.iter().any(|o| normalize_identity(o) == m)))
            .map(|l| l.name)
            .collect();
        list.requests
            .retain(|r| Some(r.requester.as_str()) == me || owned.contains(&r.list));
    }
    Ok(Json(list))
}

#[utoipa::path(
    operation_id = "showRequest",
    get, path = "/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn show<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    _c: Caller,
) -> ReqResult<Json<RequestView>> {
    Ok(Json(s.flow.show(&id).await?))
}

#[utoipa::path(
    operation_id = "approveRequest",
    post, path = "/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "Still pending until enough owners approve, else approved with its grant", body = RequestView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an owner, already approved by this owner, or the requester's own request", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No longer pending", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn approve<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    w: Writer,
    body: axum::body::Bytes,
) -> ReqResult<Json<RequestView>> {
    let who = actor(&w)?;
    let b: DecisionBody = parse_body(&body, "approval")?;
    Ok(Json(s.flow.approve(&who, &id, &b).await?))
}

#[utoipa::path(
    operation_id = "denyRequest",
    post, path = "/v1/requests/{id}/deny", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    request_body = DecisionBody,
    responses(
        (status = 200, body = RequestView),
        (status = 400, description = "A denial needs a reason", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an owner of the list", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No longer pending", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn deny<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    w: Writer,
    body: axum::body::Bytes,
) -> ReqResult<Json<RequestView>> {
    let who = actor(&w)?;
    let b: DecisionBody = parse_body(&body, "denial")?;
    Ok(Json(s.flow.deny(&who, &id, &b).await?))
}

#[utoipa::path(
    operation_id = "cancelRequest",
    post, path = "/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = String, Path, description = "Request id")),
    request_body = DecisionBody,
    responses(
        (status = 200, body = RequestView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Only the requester cancels", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "No longer pending", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    w: Writer,
    body: axum::body::Bytes,
) -> ReqResult<Json<RequestView>> {
    let who = actor(&w)?;
    let b: DecisionBody = parse_body(&body, "cancellation")?;
    Ok(Json(s.flow.cancel(&who, &id, &b).await?))
}

#[utoipa::path(
    operation_id = "extendGrant",
    post, path = "/v1/grants/{id}/extend", tag = "requests",
    params(("id" = String, Path, description = "Grant id")),
    request_body = ExtendBody,
    responses(
        (status = 201, description = "An extension request: pending until the list's owners approve, or applied at once on an automatic list", body = RequestView),
        (status = 400, description = "Bad input, or past the list's maximum total duration", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Neither the requester nor an owner", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The grant has ended or did not come from an access list", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn extend<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Path(id): Path<String>,
    w: Writer,
    body: axum::body::Bytes,
) -> ReqResult<Response> {
    let who = actor(&w)?;
    let b: ExtendBody = parse_body(&body, "extension")?;
    let r = s.flow.extend(&who, &id, &b).await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReviewQuery {
    /// Only lists whose review is due or overdue.
    #[serde(default)]
    due: bool,
}

#[utoipa::path(
    operation_id = "listReviews",
    get, path = "/v1/reviews", tag = "requests",
    params(ReviewQuery),
    responses((status = 200, body = ReviewList), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub(crate) async fn reviews<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    Query(q): Query<ReviewQuery>,
    _c: Caller,
) -> ReqResult<Json<ReviewList>> {
    Ok(Json(s.flow.reviews(q.due).await?))
}

#[utoipa::path(
    operation_id = "recordReview",
    post, path = "/v1/reviews", tag = "requests",
    request_body = ReviewBody,
    responses(
        (status = 200, body = ReviewRecorded),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Not an owner of the list", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The list has no review period", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn record_review<P: AccessProvider + 'static>(
    State(s): State<Arc<ApiState<P>>>,
    w: Writer,
    body: axum::body::Bytes,
) -> ReqResult<Json<ReviewRecorded>> {
    let who = actor(&w)?;
    let b: ReviewBody = parse_body(&body, "review")?;
    Ok(Json(s.flow.review(&who, &b).await?))
}
