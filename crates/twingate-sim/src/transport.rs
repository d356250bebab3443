//! The HTTP side of `/api/graphql/`: auth, rate limits, faults and the journal around the engine.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Variables;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;

use crate::journal::{JournalEntry, Outcome};
use crate::model::Permission;
use crate::schema::SimSchema;
use crate::shared::{Applied, Shared};

#[derive(Clone)]
pub(crate) struct AppState {
    pub shared: Arc<Shared>,
    pub schema: SimSchema,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphqlBody {
    query: String,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    #[serde(default)]
    operation_name: Option<String>,
}

/// What the transport needs to know about a document before running it.
#[derive(Default)]
struct Classified {
    is_mutation: bool,
    root_fields: Vec<String>,
    operation_name: Option<String>,
}

/// Classifies a parsed document; `None` (unparsable) leaves the engine to report the error.
fn classify(doc: Option<&ExecutableDocument>, operation_name: Option<&str>) -> Classified {
    let Some(doc) = doc else {
        return Classified {
            operation_name: operation_name.map(str::to_string),
            ..Classified::default()
        };
    };
    let op = match &doc.operations {
        DocumentOperations::Single(op) => Some((None, op)),
        DocumentOperations::Multiple(ops) => match operation_name {
            Some(name) => ops.iter().find(|(n, _)| n.as_str() == name),
            None if ops.len() == 1 => ops.iter().next(),
            None => None,
        }
        .map(|(n, op)| (Some(n.to_string()), op)),
    };
    let Some((name, op)) = op else {
        return Classified {
            operation_name: operation_name.map(str::to_string),
            ..Classified::default()
        };
    };
    let mut root_fields = Vec::new();
    collect_fields(doc, &op.node.selection_set.node, &mut root_fields, 0);
    Classified {
        is_mutation: op.node.ty == OperationType::Mutation,
        root_fields,
        operation_name: operation_name.map(str::to_string).or(name),
    }
}

fn collect_fields(doc: &ExecutableDocument, set: &SelectionSet, out: &mut Vec<String>, depth: u8) {
    // Fragments may (invalidly) spread into themselves; the engine reports that, we just stop.
    if depth > 8 {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                let name = f.node.name.node.to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
            Selection::InlineFragment(f) => {
                collect_fields(doc, &f.node.selection_set.node, out, depth + 1)
            }
            Selection::FragmentSpread(s) => {
                if let Some(frag) = doc.fragments.get(&s.node.fragment_name.node) {
                    collect_fields(doc, &frag.node.selection_set.node, out, depth + 1);
                }
            }
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    (status, axum::Json(body)).into_response()
}

/// A response whose body fails before anything is written, so hyper closes the connection
/// without sending a status line: the client sees a reset, not an answer.
fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection dropped by fault injection",
        ))
    });
    Response::new(Body::from_stream(stream))
}

/// Lower case, as the real error page is: clients sniff for `<!doctype html>`.
const HTML_PAGE: &str = "<!doctype html>\n<html><head><title>Twingate</title></head>\
<body><h1>Network not found</h1><p>Check the network name in your URL.</p></body></html>\n";

/// Finds the first `ok: false` payload among the root fields and returns its error string.
fn rejection(data: &async_graphql::Value) -> Option<String> {
    use async_graphql::Value;
    let Value::Object(fields) = data else {
        return None;
    };
    fields.values().find_map(|v| {
        let Value::Object(payload) = v else {
            return None;
        };
        (payload.get("ok")? == &Value::Boolean(false)).then(|| match payload.get("error") {
            Some(Value::String(e)) => e.clone(),
            _ => String::new(),
        })
    })
}

/// Every answer's `Date` (RFC 9110 IMF-fixdate) is the simulated clock's, as a real server's is
/// its own clock: moving the clock is how a test gives lapse a Twingate whose time is off.
pub(crate) async fn date_header(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let date = app
        .shared
        .clock
        .now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = header::HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, v);
    }
    response
}

/// The `redirect_to` fault: every request but the control surface's is sent on with a 308 to
/// the same path on another base URL, as a network moved to another region is.
pub(crate) async fn regional_redirect(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let faults = app.shared.faults();
    match &faults.redirect_to {
        Some(to) if !request.uri().path().starts_with("/_sim") => {
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let location = format!("{}{path}", to.trim_end_matches('/'));
            (
                StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

pub(crate) async fn graphql(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared = &app.shared;
    let faults = shared.faults();
    let mut entry = JournalEntry {
        seq: 0,
        at: shared.clock.now(),
        api_key_name: None,
        operation_name: None,
        root_fields: Vec::new(),
        is_mutation: false,
        variables: serde_json::Value::Null,
        http_status: 200,
        outcome: Outcome::Ok,
        mutation_applied: false,
    };
    let record = |mut entry: JournalEntry, status: u16, outcome: Outcome| {
        entry.http_status = status;
        entry.outcome = outcome;
        shared.journal().push(entry);
    };

    if faults.html_200 {
        record(entry, 200, Outcome::Fault("html_200".into()));
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            HTML_PAGE,
        )
            .into_response();
    }

    let request: GraphqlBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("Request body is not a GraphQL JSON request: {e}");
            record(entry, 400, Outcome::Errors(message.clone()));
            return json_error(StatusCode::BAD_REQUEST, &message);
        }
    };
    entry.variables = request.variables.unwrap_or(serde_json::Value::Null);
    // Parsed once here; the engine reuses the parsed document.
    let mut gql = async_graphql::Request::new(request.query)
        .variables(Variables::from_json(entry.variables.clone()));
    if let Some(name) = &request.operation_name {
        gql = gql.operation_name(name.clone());
    }
    let classified = classify(gql.parsed_query().ok(), request.operation_name.as_deref());
    entry.operation_name = classified.operation_name.clone();
    entry.root_fields = classified.root_fields.clone();
    entry.is_mutation = classified.is_mutation;

    let latency = faults.latency
        + classified
            .operation_name
            .as_ref()
            .and_then(|op| faults.latency_per_operation.get(op))
            .copied()
            .unwrap_or_default();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    // Header names are case-insensitive in HeaderMap, so `X-Api-Key` works too.
    let token = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let key = token.and_then(|t| shared.with_store(|s, _| s.api_key(t).cloned()));
    let Some(key) = key else {
        let message = if token.is_some() {
            "Invalid API key"
        } else {
            "Missing API key: send it in the X-API-KEY header"
        };
        record(entry, 401, Outcome::Unauthorized);
        return json_error(StatusCode::UNAUTHORIZED, message);
    };
    entry.api_key_name = Some(key.name.clone());

    let now = shared.clock.now();
    if let Some(until) = faults.rate_limit_storm_until.filter(|u| *u > now) {
        let secs = ((until - now).num_milliseconds().max(0) as u64)
            .div_ceil(1000)
            .max(1);
        record(entry, 429, Outcome::RateLimited);
        return too_many(secs);
    }
    if let Err(secs) = shared.spend(&key.token, classified.is_mutation) {
        record(entry, 429, Outcome::RateLimited);
        return too_many(secs);
    }

    if classified.is_mutation {
        let needs_provision = classified
            .root_fields
            .iter()
            .any(|f| f.starts_with("serviceAccountKey"));
        let refused = match key.permission {
            Permission::ReadOnly => Some("This API key is read-only and cannot run mutations"),
            Permission::ReadWrite if needs_provision => Some(
                "This API key cannot manage service account keys: it needs the Read, Write & Provision permission",
            ),
            _ => None,
        };
        if let Some(message) = refused {
            record(entry, 403, Outcome::Unauthorized);
            return json_error(StatusCode::FORBIDDEN, message);
        }
    }

    // Both draws happen on every request so that a given fault seed replays the same sequence
    // whichever faults are switched on.
    let (draw_5xx, draw_reset, draw_code) = {
        let mut rng = shared.fault_rng();
        (
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<bool>(),
        )
    };
    if draw_5xx < faults.error_5xx_rate {
        let (status, text) = if draw_code {
            (StatusCode::BAD_GATEWAY, "502 Bad Gateway")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable")
        };
        record(
            entry,
            status.as_u16(),
            Outcome::Fault(format!("http {}", status.as_u16())),
        );
        return (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            format!("<html><body><h1>{text}</h1></body></html>"),
        )
            .into_response();
    }
    let named = |list: &[String]| {
        classified
            .operation_name
            .as_ref()
            .is_some_and(|op| list.contains(op))
    };
    if named(&faults.fail_operations) {
        record(
            entry,
            503,
            Outcome::Fault("fail_operations: http 503".into()),
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>503 Service Unavailable</h1></body></html>",
        )
            .into_response();
    }
    if classified.is_mutation && named(&faults.refuse_operations) {
        let message = "Refused by the stand-in (refuse_operations)";
        let data: serde_json::Map<String, serde_json::Value> = classified
            .root_fields
            .iter()
            .map(|f| {
                (
                    f.clone(),
                    serde_json::json!({"ok": false, "error": message}),
                )
            })
            .collect();
        record(entry, 200, Outcome::Rejected(message.into()));
        return json_ok(serde_json::json!({ "data": data }).to_string().into_bytes());
    }
    if draw_reset < faults.reset_rate {
        record(entry, 0, Outcome::Fault("connection reset".into()));
        return dropped_connection();
    }

    let applied = Applied::default();
    let gql = gql.data(shared.clone()).data(applied.clone());
    let response = app.schema.execute(gql).await;
    let outcome = if !response.errors.is_empty() {
        Outcome::Errors(
            response
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else {
        rejection(&response.data).map_or(Outcome::Ok, Outcome::Rejected)
    };
    entry.mutation_applied = applied.get();
    let body = match serde_json::to_vec(&response) {
        Ok(b) => b,
        Err(e) => {
            let message = format!("cannot serialise the response: {e}");
            record(entry, 500, Outcome::Errors(message.clone()));
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
    };

    if entry.mutation_applied && named(&faults.error_after_commit_operations) {
        let message = "Internal server error (error_after_commit_operations)";
        record(entry, 200, Outcome::Fault(message.into()));
        return json_ok(
            serde_json::json!({"data": null, "errors": [{"message": message}]})
                .to_string()
                .into_bytes(),
        );
    }
    let lose = entry.mutation_applied
        && (faults.commit_then_lose_operations.is_empty()
            || classified
                .operation_name
                .as_ref()
                .is_some_and(|op| faults.commit_then_lose_operations.contains(op)));
    if lose {
        match faults.commit_then_lose {
            crate::faults::CommitThenLose::Off => {}
            crate::faults::CommitThenLose::DelaySecs(secs) => {
                record(
                    entry,
                    200,
                    Outcome::Fault(format!("commit_then_lose: answer delayed {secs}s")),
                );
                tokio::time::sleep(Duration::from_secs(secs)).await;
                return json_ok(body);
            }
            crate::faults::CommitThenLose::Drop => {
                record(
                    entry,
                    0,
                    Outcome::Fault("commit_then_lose: connection dropped".into()),
                );
                return dropped_connection();
            }
        }
    }
    record(entry, 200, outcome);
    json_ok(body)
}

fn json_ok(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn too_many(secs: u64) -> Response {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "API rate limit exceeded, retry later",
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_named_operations_and_fragments() {
        let doc = "query A { groups { totalCount } } \
                   mutation B($id: ID!) { ...F } fragment F on Mutation { groupDelete(id: $id) { ok } x: groupUpdate(id: $id) { ok } }";
        let parsed = async_graphql::parser::parse_query(doc).expect("parses");
        let c = classify(Some(&parsed), Some("B"));
        assert!(c.is_mutation);
        assert_eq!(c.root_fields, vec!["groupDelete", "groupUpdate"]);
        assert_eq!(c.operation_name.as_deref(), Some("B"));
        let parsed =
            async_graphql::parser::parse_query("{ __schema { types { name } } }").expect("parses");
        let c = classify(Some(&parsed), None);
        assert!(!c.is_mutation);
        assert_eq!(c.root_fields, vec!["__schema"]);
    }
}
