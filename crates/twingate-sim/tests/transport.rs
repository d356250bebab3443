//! The transport over real HTTP: API keys, permissions, rate limits, every fault and the journal.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use twingate_sim::{CommitThenLose, Faults, Outcome, RateLimit, SimConfig};

const GROUPS: &str = "query Groups { groups { totalCount } }";
const RENAME: &str =
    "mutation Rename($id: ID!, $name: String) { groupUpdate(id: $id, name: $name) { ok error } }";

#[tokio::test]
async fn api_key_is_required_and_header_name_is_case_insensitive() {
    let sim = start().await;
    let a = sim.post(None, json!({"query": GROUPS})).await;
    assert_eq!(a.status, 401);
    assert!(a.first_error().contains("Missing API key"));
    let a = sim.post(Some("nope"), json!({"query": GROUPS})).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.first_error(), "Invalid API key");
    let journal = sim.handle.journal();
    assert_eq!(journal.len(), 2);
    assert!(
        journal
            .iter()
            .all(|e| e.outcome == Outcome::Unauthorized && e.http_status == 401)
    );

    for header in ["X-Api-Key", "x-api-key", "X-API-KEY"] {
        let resp = sim
            .http
            .post(sim.url())
            .header(header, READ)
            .json(&json!({"query": GROUPS}))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "{header}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["data"]["groups"]["totalCount"], 4);
    }
    assert_eq!(
        sim.handle
            .journal()
            .last()
            .and_then(|e| e.api_key_name.clone())
            .as_deref(),
        Some(READ)
    );
}

#[tokio::test]
async fn key_permissions_are_enforced_for_mutations() {
    let sim = start().await;
    let oncall = sim.group_id("oncall");
    let a = sim
        .gql_as(READ, RENAME, json!({"id": oncall, "name": "x"}))
        .await;
    assert_eq!(a.status, 403);
    assert!(a.first_error().contains("read-only"));
    assert_eq!(
        sim.handle
            .state()
            .group_named("oncall")
            .map(|g| g.name.clone()),
        Some("oncall".into())
    );
    let a = sim.gql_as(READ, GROUPS, json!({})).await;
    assert_eq!(a.status, 200, "read-only keys may read");

    let sa = sim.sa_id("ci-deployer");
    let key_create = "mutation($sa: ID!) { serviceAccountKeyCreate(serviceAccountId: $sa, expirationTime: 1) { ok } }";
    let a = sim.gql_as(RW, key_create, json!({"sa": sa})).await;
    assert_eq!(a.status, 403, "keys need Provision");
    assert!(
        sim.handle
            .state()
            .service_account_named("ci-deployer")
            .expect("sa")
            .keys
            .is_empty()
    );
    let a = sim
        .gql_as(RW, RENAME, json!({"id": oncall, "name": "renamed"}))
        .await;
    assert_eq!(a.data()["groupUpdate"]["ok"], true);
    let a = sim.gql_as(ADMIN, key_create, json!({"sa": sa})).await;
    assert_eq!(a.data()["serviceAccountKeyCreate"]["ok"], true);
    let outcomes: Vec<(u16, Outcome)> = sim
        .handle
        .journal()
        .into_iter()
        .map(|e| (e.http_status, e.outcome))
        .collect();
    assert_eq!(outcomes[0], (403, Outcome::Unauthorized));
    assert_eq!(outcomes[2], (403, Outcome::Unauthorized));
}

#[tokio::test]
async fn rate_limits_are_per_key_and_answer_429_with_retry_after() {
    let sim = start_with(SimConfig {
        rate_limit: Some(RateLimit {
            reads_per_minute: 3,
            writes_per_minute: 2,
            window: twingate_sim::LimitWindow::TokenBucket,
        }),
        ..SimConfig::default()
    })
    .await;
    for _ in 0..3 {
        assert_eq!(sim.gql(GROUPS, json!({})).await.status, 200);
    }
    let a = sim.gql(GROUPS, json!({})).await;
    assert_eq!(a.status, 429);
    let retry: u64 = a.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("whole seconds");
    assert!((1..=20).contains(&retry), "{retry}");
    // Another key has its own budget; writes have theirs.
    assert_eq!(sim.gql_as(READ, GROUPS, json!({})).await.status, 200);
    let oncall = sim.group_id("oncall");
    for n in 0..2 {
        let a = sim
            .gql(RENAME, json!({"id": oncall, "name": format!("n{n}")}))
            .await;
        assert_eq!(a.status, 200);
    }
    let a = sim
        .gql(RENAME, json!({"id": oncall, "name": "limited"}))
        .await;
    assert_eq!(a.status, 429);
    assert!(a.headers.contains_key("retry-after"));
    assert!(
        sim.handle.state().group_named("limited").is_none(),
        "a 429 was not processed"
    );
    let last = sim.handle.journal().pop().expect("entry");
    assert_eq!(last.outcome, Outcome::RateLimited);
    assert!(!last.mutation_applied);

    // The budget refills with (simulated) time.
    sim.handle
        .clock()
        .advance(chrono::Duration::seconds(retry as i64 + 30));
    assert_eq!(sim.gql(GROUPS, json!({})).await.status, 200);
}

#[tokio::test]
async fn rate_limit_storm_answers_429_until_its_end() {
    let sim = start().await;
    let clock = sim.handle.clock();
    sim.handle
        .set_faults(Faults {
            rate_limit_storm_until: Some(clock.now() + chrono::Duration::seconds(90)),
            ..Faults::default()
        })
        .expect("faults the sim accepts");
    let a = sim.gql(GROUPS, json!({})).await;
    assert_eq!(a.status, 429);
    let retry: i64 = a.headers["retry-after"]
        .to_str()
        .expect("a")
        .parse()
        .expect("n");
    assert!((89..=90).contains(&retry), "{retry}");
    clock.advance(chrono::Duration::seconds(91));
    assert_eq!(sim.gql(GROUPS, json!({})).await.status, 200);
}

#[tokio::test]
async fn five_xx_fault_answers_without_applying_and_is_reproducible() {
    let run = || async {
        let sim = start_with(SimConfig {
            fault_seed: 7,
            ..SimConfig::default()
        })
        .await;
        sim.handle
            .set_faults(Faults {
                error_5xx_rate: 0.5,
                ..Faults::default()
            })
            .expect("faults the sim accepts");
        let oncall = sim.group_id("oncall");
        let mut statuses = Vec::new();
        for n in 0..20 {
            let a = sim
                .gql(RENAME, json!({"id": oncall, "name": format!("n{n}")}))
                .await;
            if a.status != 200 {
                assert!(a.text.contains("<html>"));
                assert_eq!(a.body, serde_json::Value::Null, "not JSON");
            }
            statuses.push(a.status);
        }
        let journal = sim.handle.journal();
        for e in &journal {
            assert_eq!(e.mutation_applied, e.http_status == 200);
            if e.http_status != 200 {
                assert_eq!(e.outcome, Outcome::Fault(format!("http {}", e.http_status)));
            }
        }
        statuses
    };
    let first = run().await;
    assert!(first.contains(&200));
    assert!(first.iter().any(|s| *s == 502 || *s == 503));
    assert_eq!(first, run().await, "same fault seed, same sequence");
}

#[tokio::test]
async fn reset_fault_drops_the_connection_without_applying() {
    let sim = start().await;
    sim.handle
        .set_faults(Faults {
            reset_rate: 1.0,
            ..Faults::default()
        })
        .expect("faults the sim accepts");
    let oncall = sim.group_id("oncall");
    let err = sim
        .http
        .post(sim.url())
        .header("X-API-KEY", ADMIN)
        .json(&json!({"query": RENAME, "variables": {"id": oncall, "name": "reset"}}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect_err("no answer");
    assert!(!err.is_status(), "no HTTP status was sent: {err:?}");
    assert!(sim.handle.state().group_named("reset").is_none());
    let e = sim.handle.journal().pop().expect("entry");
    assert_eq!(
        (e.http_status, e.outcome),
        (0, Outcome::Fault("connection reset".into()))
    );
}

#[tokio::test]
async fn commit_then_drop_applies_and_loses_the_answer() {
    let sim = start().await;
    sim.handle
        .set_faults(Faults {
            commit_then_lose: CommitThenLose::Drop,
            commit_then_lose_operations: vec!["Create".into()],
            ..Faults::default()
        })
        .expect("faults the sim accepts");
    let create = "mutation Create($n: String!) { groupCreate(name: $n) { ok } }";
    let result = sim
        .http
        .post(sim.url())
        .header("X-API-KEY", ADMIN)
        .json(&json!({"query": create, "variables": {"n": "lost"}}))
        .send()
        .await;
    assert!(result.is_err(), "connection dropped");
    assert!(
        sim.handle.state().group_named("lost").is_some(),
        "but the create was applied"
    );
    let e = sim.handle.journal().pop().expect("entry");
    assert!(e.mutation_applied);
    assert_eq!(e.http_status, 0);
    // Other mutations and queries are untouched by a field-restricted fault.
    let oncall = sim.group_id("oncall");
    assert_eq!(
        sim.gql(RENAME, json!({"id": oncall, "name": "kept"}))
            .await
            .status,
        200
    );
    assert_eq!(sim.gql(GROUPS, json!({})).await.status, 200);
}

#[tokio::test]
async fn commit_then_delay_applies_and_outlasts_the_client_timeout() {
    let sim = start().await;
    sim.handle
        .set_faults(Faults {
            commit_then_lose: CommitThenLose::DelaySecs(30),
            ..Faults::default()
        })
        .expect("faults the sim accepts");
    let oncall = sim.group_id("oncall");
    let started = Instant::now();
    let err = sim
        .http
        .post(sim.url())
        .timeout(Duration::from_millis(500))
        .header("X-API-KEY", ADMIN)
        .json(&json!({"query": RENAME, "variables": {"id": oncall, "name": "slow"}}))
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        sim.handle.state().group_named("slow").is_some(),
        "applied before the answer"
    );
    let e = sim.handle.journal().pop().expect("entry");
    assert!(e.mutation_applied);
    assert!(matches!(e.outcome, Outcome::Fault(ref f) if f.contains("delayed 30s")));
    // Queries are answered at once.
    assert_eq!(sim.gql(GROUPS, json!({})).await.status, 200);
}

#[tokio::test]
async fn html_200_fault_serves_a_page() {
    let sim = start().await;
    sim.handle
        .set_faults(Faults {
            html_200: true,
            ..Faults::default()
        })
        .expect("faults the sim accepts");
    let a = sim.gql(GROUPS, json!({})).await;
    assert_eq!(a.status, 200);
    assert!(
        a.text.starts_with("<!doctype html>"),
        "lower case, as the real page: {}",
        a.text
    );
    assert_eq!(a.headers["content-type"], "text/html; charset=utf-8");
    sim.handle
        .set_faults(Faults::default())
        .expect("faults the sim accepts");
    assert_eq!(
        sim.gql(GROUPS, json!({})).await.data()["groups"]["totalCount"],
        4
    );
}

#[tokio::test]
async fn latency_applies_globally_and_per_operation() {
    let sim = start().await;
    sim.handle
        .set_faults(Faults {
            latency: Duration::from_millis(100),
            latency_per_operation: [("Rename".to_string(), Duration::from_millis(300))].into(),
            ..Faults::default()
        })
        .expect("faults the sim accepts");
    let t = Instant::now();
    assert_eq!(sim.gql(GROUPS, json!({})).await.status, 200);
    let read = t.elapsed();
    assert!(read >= Duration::from_millis(100), "{read:?}");
    let oncall = sim.group_id("oncall");
    let t = Instant::now();
    assert_eq!(
        sim.gql(RENAME, json!({"id": oncall, "name": "z"}))
            .await
            .status,
        200
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn journal_records_errors_and_can_be_cleared() {
    let sim = start().await;
    let a = sim.gql("{ group(id: \"bad\") { id } }", json!({})).await;
    assert_eq!(a.status, 200);
    let a = sim.gql("{ nosuchfield }", json!({})).await;
    assert!(a.first_error().contains("nosuchfield"));
    let a = sim.post(Some(ADMIN), json!({"nope": 1})).await;
    assert_eq!(a.status, 400);
    let journal = sim.handle.journal();
    assert_eq!(journal.len(), 3);
    assert!(
        matches!(&journal[0].outcome, Outcome::Errors(m) if m.contains("Unable to parse global ID"))
    );
    assert_eq!(journal[0].root_fields, vec!["group"]);
    assert!(!journal[0].is_mutation);
    assert!(journal.windows(2).all(|w| w[0].seq < w[1].seq));
    sim.handle.clear_journal();
    assert!(sim.handle.journal().is_empty());
    sim.gql(GROUPS, json!({})).await;
    assert_eq!(
        sim.handle.journal()[0].seq,
        4,
        "sequence continues across clears"
    );
}

#[tokio::test]
async fn concurrent_requests_are_all_served_and_journaled() {
    let sim = start().await;
    let platform = sim.group_id("platform");
    let ids = sim.handle.admin().create_users(40, "conc").expect("users");
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let http = sim.http.clone();
        let url = sim.url();
        let platform = platform.clone();
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .header("X-API-KEY", ADMIN)
                .json(&json!({"query": "mutation($g: ID!, $u: [ID]) { groupUpdate(id: $g, addedUserIds: $u) { ok } }", "variables": {"g": platform, "u": [id]}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join").expect("send"), 200);
    }
    assert_eq!(sim.group_users("platform").len(), 40);
    assert_eq!(sim.handle.journal().len(), 40);
}
