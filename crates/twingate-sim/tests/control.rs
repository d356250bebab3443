//! The `/_sim/` control surface over HTTP, as tests that run the binary use it.

mod common;

use common::*;
use serde_json::{Value, json};

async fn call(sim: &Sim, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = sim
        .http
        .request(method, format!("{}/_sim{path}", sim.handle.base_url()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn state_journal_faults_and_clock_over_http() {
    use reqwest::Method;
    let sim = start().await;
    let (status, state) = call(&sim, Method::GET, "/state", None).await;
    assert_eq!(status, 200);
    assert_eq!(state["groups"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        state["api_keys"][0],
        json!({"name": "sim-admin-key", "permission": "read_write_provision"})
    );
    assert!(
        !state.to_string().contains("\"token\""),
        "no tokens in the state"
    );

    sim.gql("{ groups { totalCount } }", json!({})).await;
    let (_, journal) = call(&sim, Method::GET, "/journal", None).await;
    assert_eq!(
        journal.as_array().map(Vec::len),
        Some(1),
        "control calls are not journaled"
    );
    assert_eq!(journal[0]["outcome"], "Ok");
    assert_eq!(call(&sim, Method::DELETE, "/journal", None).await.0, 204);
    assert_eq!(call(&sim, Method::GET, "/journal", None).await.1, json!([]));

    let (status, _) = call(
        &sim,
        Method::PUT,
        "/faults",
        Some(json!({"html_200": true, "latency_ms": 5})),
    )
    .await;
    assert_eq!(status, 204);
    assert!(sim.handle.faults().html_200);
    assert_eq!(
        sim.handle.faults().latency,
        std::time::Duration::from_millis(5)
    );
    call(
        &sim,
        Method::PUT,
        "/faults",
        Some(json!({"rate_limit_storm_secs": 30})),
    )
    .await;
    assert_eq!(
        sim.gql("{ groups { totalCount } }", json!({})).await.status,
        429
    );
    call(
        &sim,
        Method::PUT,
        "/faults",
        Some(json!({"commit_then_lose": {"delay_secs": 3}})),
    )
    .await;
    assert_eq!(
        sim.handle.faults().commit_then_lose,
        twingate_sim::CommitThenLose::DelaySecs(3)
    );
    call(&sim, Method::PUT, "/faults", Some(json!({}))).await;
    assert_eq!(sim.handle.faults(), twingate_sim::Faults::default());

    let before = sim.handle.clock().now();
    let (status, clock) = call(
        &sim,
        Method::POST,
        "/clock/advance",
        Some(json!({"seconds": 7200})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(clock["offset_seconds"].as_f64().expect("offset") >= 7200.0);
    assert!(sim.handle.clock().now() - before >= chrono::Duration::hours(2));
}

#[tokio::test]
async fn admin_changes_over_http() {
    use reqwest::Method;
    let sim = start().await;
    let (status, body) = call(
        &sim,
        Method::POST,
        "/admin/users",
        Some(json!({"email": "zoe@example.com", "first_name": "Zoe", "last_name": "Z"})),
    )
    .await;
    assert_eq!(status, 201);
    let zoe = body["id"].as_str().expect("id").to_string();
    let (_, body) = call(
        &sim,
        Method::POST,
        "/admin/users/bulk",
        Some(json!({"count": 3, "prefix": "bulk"})),
    )
    .await;
    assert_eq!(body["ids"].as_array().map(Vec::len), Some(3));

    let (status, body) = call(
        &sim,
        Method::POST,
        "/admin/groups",
        Some(json!({"name": "ops", "type": "MANUAL"})),
    )
    .await;
    assert_eq!(status, 201);
    let ops = body["id"].as_str().expect("id").to_string();
    let carol = sim.user_id("carol@example.com");
    let path = format!("/admin/groups/{ops}/users");
    let (status, _) = call(
        &sim,
        Method::POST,
        &path,
        Some(json!({"add": [zoe, carol]})),
    )
    .await;
    assert_eq!(status, 204);
    call(&sim, Method::POST, &path, Some(json!({"remove": [carol]}))).await;
    assert_eq!(sim.group_users("ops"), vec![zoe.clone()]);

    // An administrator may change a SYNCED group, as an identity-provider sync would.
    let okta = sim.group_id("okta-engineering");
    let (status, _) = call(
        &sim,
        Method::POST,
        &format!("/admin/groups/{okta}/users"),
        Some(json!({"add": [zoe]})),
    )
    .await;
    assert_eq!(status, 204);

    let (status, body) = call(
        &sim,
        Method::POST,
        "/admin/resources",
        Some(json!({"name": "vault", "address": "10.0.0.5"})),
    )
    .await;
    assert_eq!(status, 201);
    let vault = body["id"].as_str().expect("id").to_string();
    let expires = (sim.handle.clock().now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, _) = call(
        &sim,
        Method::POST,
        &format!("/admin/resources/{vault}/access"),
        Some(json!({"add": [{"principal_id": ops, "expires_at": expires}]})),
    )
    .await;
    assert_eq!(status, 204);
    let state = sim.handle.state();
    let edge = &state.resource_named("vault").expect("vault").access[0];
    assert_eq!(edge.principal_id, ops);
    assert!(edge.expires_at.is_some());
    let a = sim
        .gql(
            "query($id: ID!) { resource(id: $id) { address { type value } } }",
            json!({"id": vault}),
        )
        .await;
    assert_eq!(
        a.data()["resource"]["address"],
        json!({"type": "IP", "value": "10.0.0.5"})
    );

    let (status, body) = call(
        &sim,
        Method::POST,
        "/admin/service-accounts",
        Some(json!({"name": "bot"})),
    )
    .await;
    assert_eq!(status, 201);
    let bot = body["id"].as_str().expect("id").to_string();
    let (status, _) = call(
        &sim,
        Method::POST,
        &format!("/admin/service-accounts/{bot}/resources"),
        Some(json!({"add": [vault]})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        sim.handle
            .state()
            .service_account_named("bot")
            .expect("bot")
            .resource_ids,
        vec![vault.clone()]
    );
    let (status, _) = call(
        &sim,
        Method::POST,
        &format!("/admin/resources/{vault}/access"),
        Some(json!({"remove": [ops]})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        sim.handle
            .state()
            .resource_named("vault")
            .expect("v")
            .access
            .len(),
        1
    );

    assert_eq!(
        call(&sim, Method::DELETE, &format!("/admin/groups/{ops}"), None)
            .await
            .0,
        204
    );
    let (status, body) = call(&sim, Method::DELETE, &format!("/admin/groups/{ops}"), None).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .expect("e")
            .contains("does not exist")
    );
    let (status, _) = call(&sim, Method::DELETE, "/admin/groups/garbage", None).await;
    assert_eq!(status, 400);
    assert_eq!(
        sim.handle.journal().len(),
        1,
        "only the GraphQL query is API traffic"
    );
}

#[tokio::test]
async fn library_admin_mirrors_console_changes() {
    let sim = start().await;
    let admin = sim.handle.admin();
    let oncall = sim.group_id("oncall");
    let carol = sim.user_id("carol@example.com");
    admin
        .remove_group_users(&oncall, &[&carol])
        .expect("remove");
    assert!(sim.group_users("oncall").is_empty());
    let sa = sim.sa_id("ci-deployer");
    let prod = sim.resource_id("prod-db");
    let err = admin
        .add_resource_access(&prod, &sa, Some(sim.handle.clock().now()))
        .expect_err("no expiry for service accounts");
    assert!(err.to_string().contains("expiresAt must be null"));
    admin
        .add_service_account_resources(&sa, &[&prod])
        .expect("add");
    admin.remove_resource_access(&prod, &sa).expect("remove");
    assert!(
        sim.handle
            .state()
            .resource_named("prod-db")
            .expect("p")
            .access
            .is_empty()
    );
    let err = admin
        .create_user("ALICE@example.com", "A", "B")
        .expect_err("duplicate email");
    assert!(err.to_string().contains("already exists"));
    let groups = admin.create_groups(3, "g-").expect("groups");
    assert_eq!(groups.len(), 3);
    admin.delete_group(&oncall).expect("delete");
    assert!(
        admin
            .delete_group(&oncall)
            .expect_err("gone")
            .to_string()
            .contains("does not exist")
    );
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sim = start().await;
    let url = sim.url();
    sim.handle.clone().shutdown().await;
    let result = sim
        .http
        .post(url)
        .header("X-API-KEY", ADMIN)
        .json(&json!({"query": "{ groups { totalCount } }"}))
        .send()
        .await;
    assert!(result.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn faults_refuse_unknown_settings_and_keys_that_name_no_operation() {
    let sim = start().await;
    let put = |body: Value| {
        let req = sim
            .http
            .put(format!("{}/_sim/faults", sim.handle.base_url()))
            .json(&body);
        async move {
            let resp = req.send().await.expect("send");
            (resp.status().as_u16(), resp.text().await.expect("text"))
        }
    };
    // A root field name is not what the journal shows: refused, naming the fix.
    let (status, text) = put(json!({"latency_per_operation_ms": {"resource": 300}})).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("\"resource\"") && text.contains("operation name"),
        "{text}"
    );
    // A misspelt setting is refused rather than ignored.
    let (status, text) = put(json!({"latncy_ms": 5})).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("latncy_ms"), "{text}");
    assert_eq!(sim.handle.faults(), twingate_sim::Faults::default());

    // Keyed by the journal's operation name, the latency applies to that operation only.
    let (status, text) = put(json!({"latency_per_operation_ms": {"Resource": 300}})).await;
    assert_eq!(status, 204, "{text}");
    let started = std::time::Instant::now();
    sim.gql("query Groups { groups { totalCount } }", json!({}))
        .await;
    assert!(started.elapsed() < std::time::Duration::from_millis(300));
    let id = sim.resource_id("prod-db");
    let started = std::time::Instant::now();
    sim.gql(
        "query Resource($id: ID!) { resource(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let entry = sim.handle.journal().pop().expect("entry");
    assert_eq!(entry.operation_name.as_deref(), Some("Resource"));
}
