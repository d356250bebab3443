//! The OpenAPI 3 document for the HTTP API, generated from the handlers' annotations and the
//! request and response types, served at `/v1/openapi.json` so teams can build bots against it.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use chrono::{DateTime, Utc};

use crate::api::{GrantRequest, GrantView, HistoryView, RevokeRequest};
use crate::requests::{CreateBody, DecisionBody, ExtendBody, ReviewBody};

// The types below describe bodies that the handlers build with `json!`; they exist for the
// document only, so they are never constructed.

/// Every error answer: a stable code, and for bad input the field and the fix.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable and machine-readable, e.g. `invalid_field`, `unauthorized`, `not_found`.
    code: String,
    /// The request field at fault, when there is one.
    field: Option<String>,
    message: String,
    /// What to change so that the request succeeds.
    fix: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GrantList {
    grants: Vec<GrantView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct GrantDetail {
    grant: GrantView,
    /// The grant's history, oldest first.
    history: Vec<HistoryView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct HistoryList {
    history: Vec<HistoryView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct VerifyReport {
    rows_checked: u64,
    /// True when every row's hash chains to the one before.
    ok: bool,
    first_broken: Option<BrokenRow>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BrokenRow {
    seq: i64,
    reason: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenView {
    /// A service key's token; handed out once.
    token: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Readiness {
    ready: bool,
    /// Reconcile passes since start.
    passes: u64,
}

/// A just-in-time request on an access list, with the owners' approvals so far.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RequestView {
    id: String,
    list: String,
    /// The requester's identity (an email, normalised).
    requester: String,
    /// The token the request was made with.
    token_name: String,
    reason: String,
    /// How long the access lasts (for an extension: how much longer).
    duration_secs: i64,
    break_glass: bool,
    /// Set when the request extends this grant.
    extends_grant: Option<String>,
    /// `pending`, `approved`, `denied`, `cancelled` or `lapsed`.
    state: String,
    approvals_needed: i64,
    created_at: DateTime<Utc>,
    /// A pending request lapses after this.
    wait_until: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    decided_by: Option<String>,
    decision_reason: Option<String>,
    /// The grant it became, or the grant it extends.
    grant_id: Option<String>,
    /// The expiry an expiring-soon notice was sent for.
    warned_expiry: Option<DateTime<Utc>>,
    approvals: Vec<ApprovalView>,
}

/// One owner's approval.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ApprovalView {
    approver: String,
    token_name: String,
    at: DateTime<Utc>,
    reason: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RequestList {
    requests: Vec<RequestView>,
}

/// What members of a list may request.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ListTargetView {
    /// One of the five grant kinds.
    kind: String,
    group: Option<String>,
    resources: Vec<String>,
    service_account: Option<String>,
}

/// A list's periodic review.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReviewRuleView {
    /// As written in list files, e.g. `90days`.
    every: String,
    next_due: DateTime<Utc>,
    /// `notify` or `suspend`.
    on_missed: String,
}

/// A loaded access list and its review state.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AccessListView {
    name: String,
    description: String,
    owners: Vec<String>,
    members: Vec<String>,
    target: ListTargetView,
    /// As written in list files, e.g. `1h 30m`.
    default_duration: String,
    /// As written in list files, e.g. `4h`.
    max_duration: String,
    reason_required: bool,
    reason_pattern: Option<String>,
    /// Distinct owner approvals needed.
    approvals: u32,
    auto_approve: bool,
    break_glass: bool,
    /// As written in list files, e.g. `1h`; the daemon's default when absent.
    pending_wait: Option<String>,
    review: Option<ReviewRuleView>,
    /// The file it came from.
    file: String,
    review_due: Option<DateTime<Utc>>,
    /// No new requests until the list is reviewed.
    suspended: bool,
    /// Members taken off by a review.
    removed_by_review: Vec<String>,
}

/// A list file that was refused; its previous lists stay in force.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefusedFile {
    file: String,
    line: Option<u64>,
    problem: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ListsReply {
    lists: Vec<AccessListView>,
    refused_files: Vec<RefusedFile>,
}

/// A list's review date and who it covers.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReviewView {
    list: String,
    due: DateTime<Utc>,
    overdue: bool,
    suspended: bool,
    owners: Vec<String>,
    members: Vec<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReviewList {
    reviews: Vec<ReviewView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ReviewRecorded {
    list: String,
    next_due: DateTime<Utc>,
}

/// Declares the bearer-token scheme the handlers refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A lapse token, made by an admin with `lapse token create`",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "lapse", description = "Time-bounded access grants for Twingate."),
    paths(
        crate::api::submit,
        crate::api::list,
        crate::api::show,
        crate::api::revoke,
        crate::api::take_token,
        crate::api::history,
        crate::api::verify,
        document,
        crate::api::healthz,
        crate::api::readyz,
        crate::api::metrics_page,
        crate::requests::lists,
        crate::requests::create,
        crate::requests::list_requests,
        crate::requests::show,
        crate::requests::approve,
        crate::requests::deny,
        crate::requests::cancel,
        crate::requests::extend,
        crate::requests::reviews,
        crate::requests::record_review,
    ),
    components(schemas(
        GrantRequest,
        GrantView,
        HistoryView,
        RevokeRequest,
        ErrorBody,
        ErrorDetail,
        GrantList,
        GrantDetail,
        HistoryList,
        VerifyReport,
        BrokenRow,
        TokenView,
        Readiness,
        CreateBody,
        DecisionBody,
        ExtendBody,
        ReviewBody,
        RequestView,
        ApprovalView,
        RequestList,
        ListTargetView,
        ReviewRuleView,
        AccessListView,
        RefusedFile,
        ListsReply,
        ReviewView,
        ReviewList,
        ReviewRecorded
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// This document, as JSON.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes `pub fn router` in `src` serves, with the methods of each.
    fn routes(src: &str) -> Vec<(String, String)> {
        let router = &src[src.find("pub fn router").expect("router fn")..];
        let router = &router[..router.find("\n}\n").expect("end of router")];
        router
            .split(".route(")
            .skip(1)
            .map(|call| {
                let path = call.split('"').nth(1).expect("route path").to_owned();
                let methods = call.split('\n').next().unwrap_or_default().to_owned();
                (path, methods)
            })
            .collect()
    }

    /// Every `.route(...)` of both routers the daemon merges (grants and operations, and the
    /// request flow) is in the document, with each method it serves, and nothing else is.
    #[test]
    fn the_document_lists_every_route_the_router_serves() {
        let doc = ApiDoc::openapi();
        let api = routes(include_str!("api.rs"));
        let requests = routes(include_str!("requests.rs"));
        assert!(api.len() >= 10, "only {} routes found in api.rs", api.len());
        assert!(
            requests.len() >= 8,
            "only {} routes found in requests.rs",
            requests.len()
        );
        for (path, methods) in api.iter().chain(&requests) {
            let item = doc
                .paths
                .paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is routed but not documented"));
            for (method, op) in [
                ("get(", &item.get),
                ("post(", &item.post),
                ("delete(", &item.delete),
                ("put(", &item.put),
            ] {
                assert_eq!(
                    methods.contains(method),
                    op.is_some(),
                    "{path}: {method} routed vs documented"
                );
            }
        }
        assert_eq!(
            api.len() + requests.len(),
            doc.paths.paths.len(),
            "the document lists routes the routers do not serve"
        );
    }

    /// The request flow's bodies are described by their own schemas.
    #[test]
    fn request_flow_bodies_are_referenced() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        for (path, method, schema) in [
            ("/v1/requests", "post", "CreateBody"),
            ("/v1/requests/{id}/approve", "post", "DecisionBody"),
            ("/v1/grants/{id}/extend", "post", "ExtendBody"),
            ("/v1/reviews", "post", "ReviewBody"),
        ] {
            assert_eq!(
                doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
                    ["$ref"],
                format!("#/components/schemas/{schema}"),
                "{method} {path}"
            );
        }
        assert_eq!(
            doc["paths"]["/v1/requests"]["get"]["responses"]["200"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/RequestList"
        );
        let create = &doc["components"]["schemas"]["CreateBody"];
        assert_eq!(create["required"], serde_json::json!(["list"]), "{create}");
    }
}
