//! The OpenAPI 3 document for the HTTP API, generated from the handlers' annotations and the
//! request and response types, served at `/v1/openapi.json` so teams can build bots against it.

use axum::routing::get;
use axum::{Json, Router};
use lapse_requests::wire::{
    AccessListView, ApprovalView, BrokenRow, CreateBody, DecisionBody, ErrorBody, ErrorDetail,
    ExtendBody, GrantDetail, GrantKindName, GrantList, GrantRequest, GrantStateName, GrantView,
    HistoryList, HistoryView, ListTargetView, ListsReply, Readiness, RefusedFile, RequestList,
    RequestStateName, RequestView, ReviewBody, ReviewList, ReviewRecorded, ReviewRuleView,
    ReviewView, RevokeRequest, TokenView, VerifyReport, WhoAmI,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Serves the document; merged beside the API's routers so that it may name their handlers.
pub fn router() -> Router {
    Router::new().route("/v1/openapi.json", get(document))
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

/// Documents the error answers every operation can give, with the JSON error shape, beside those
/// its annotation names (which are kept, with their own descriptions): 401 on every route that
/// takes a token; 403 on every write (the role, or the route's rule); 404 where the path names a
/// record; 400, 413 and 415 where a JSON body is read (the field and the fix, too large, not
/// JSON); 500 everywhere (the daemon's own failure, described in its log).
struct ErrorResponses;

impl ErrorResponses {
    fn error(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
            .into()
    }
}

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let names_a_record = path.contains('{');
            let ops = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.delete.as_mut()),
                (true, item.patch.as_mut()),
            ];
            for (writes, op) in ops {
                let Some(op) = op else { continue };
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let reads_body = op.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| Self::error(description));
                };
                if secured {
                    add(
                        "401",
                        "No token, or a token that is unknown, expired or revoked",
                    );
                }
                if secured && writes {
                    add(
                        "403",
                        "The token's role, or the route's rule, does not allow this",
                    );
                }
                if secured && names_a_record {
                    add("404", "No such record (or one the caller may not see)");
                }
                if reads_body {
                    add("400", "Bad input: the field and the fix");
                    add("413", "The body is too large");
                    add("415", "The body is not application/json");
                }
                add("500", "The daemon failed; its log says why");
            }
        }
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
        crate::api::whoami,
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
        GrantKindName,
        GrantStateName,
        RequestStateName,
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
        WhoAmI,
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
    modifiers(&BearerAuth, &ErrorResponses)
)]
pub struct ApiDoc;

/// This document, as JSON.
#[utoipa::path(operation_id = "openapiDocument", get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
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

    /// Every `.route(...)` of the routers the daemon merges (grants and operations, this
    /// document, and the request flow) is in the document, with each method it serves, and nothing else is.
    #[test]
    fn the_document_lists_every_route_the_router_serves() {
        let doc = ApiDoc::openapi();
        let mut api = routes(include_str!("api.rs"));
        api.extend(routes(include_str!("openapi.rs")));
        let requests = routes(include_str!("requests.rs"));
        assert!(
            api.len() >= 10,
            "only {} routes found in api.rs and openapi.rs",
            api.len()
        );
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

#[cfg(test)]
mod contract {
    use super::*;

    /// Every operation documents the errors it can answer, each with the JSON error shape.
    #[test]
    fn every_error_answer_is_documented_with_the_error_shape() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let responses = op["responses"].as_object().expect("responses");
                let has = |status: &str| responses.contains_key(status);
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                assert!(has("500"), "{method} {path}");
                if secured {
                    assert!(has("401"), "{method} {path} takes a token: 401");
                    if method != "get" {
                        assert!(has("403"), "{method} {path} writes: 403");
                    }
                    if path.contains('{') {
                        assert!(has("404"), "{method} {path} names a record: 404");
                    }
                }
                if op.get("requestBody").is_some() {
                    assert!(has("400") && has("413") && has("415"), "{method} {path}");
                }
                for (status, r) in responses {
                    if status.starts_with('4') || status.starts_with('5') {
                        let schema = &r["content"]["application/json"]["schema"]["$ref"];
                        // The readiness answer (503) has its own body.
                        if path != "/readyz" {
                            assert_eq!(
                                schema, "#/components/schemas/ErrorBody",
                                "{method} {path} {status}: {r}"
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "{checked} operations");
    }

    /// The document passes the standard validator (PyPI `openapi-spec-validator`, which CI
    /// installs), and every operation has its own operationId.
    #[test]
    fn the_document_passes_openapi_spec_validator() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, doc.to_string()).expect("write the document");
        let out = std::process::Command::new("python3")
            .args(["-m", "openapi_spec_validator"])
            .arg(&file)
            .output()
            .expect("python3 runs (CI installs openapi-spec-validator)");
        assert!(
            out.status.success(),
            "openapi-spec-validator refused the document:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ids = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(
                    !ids.contains(&id.to_owned()),
                    "operationId {id} is used twice"
                );
                ids.push(id.to_owned());
            }
        }
    }
}
