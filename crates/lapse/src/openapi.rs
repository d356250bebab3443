//! The OpenAPI 3 document for the HTTP API, generated from the handlers' annotations and the
//! request and response types, served at `/v1/openapi.json` so teams can build bots against it.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api::{GrantRequest, GrantView, HistoryView, RevokeRequest};

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
        Readiness
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

    /// Every `.route(...)` in the router is in the document, with each method it serves.
    #[test]
    fn the_document_lists_every_route_the_router_serves() {
        let doc = ApiDoc::openapi();
        let src = include_str!("api.rs");
        let router = &src[src.find("pub fn router").expect("router fn")..];
        let router = &router[..router.find("\n}\n").expect("end of router")];
        let mut seen = 0;
        for call in router.split(".route(").skip(1) {
            let path = call.split('"').nth(1).expect("route path");
            let item = doc
                .paths
                .paths
                .get(path)
                .unwrap_or_else(|| panic!("{path} is routed but not documented"));
            let methods = call.split("\n").next().unwrap_or_default();
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
            seen += 1;
        }
        assert!(seen >= 10, "only {seen} routes found in the router");
        assert_eq!(
            seen,
            doc.paths.paths.len(),
            "the document lists routes the router does not serve"
        );
    }
}
