//! End-to-end: bad input is refused with the field and the fix, writes nothing and sends no
//! write to Twingate; tokens and roles; idempotency keys.

mod common;

use common::*;
use serde_json::{Value, json};

fn body(kind: &str, extra: Value) -> Value {
    let mut b = json!({"kind": kind, "reason": "INC-4211", "duration": "1h"});
    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let mut env = Env::new("").await;
    env.start().await;
    let alice = json!({"group": "oncall", "users": ["alice@example.com"]});
    // Refusals that need no lookup: not a single call reaches Twingate.
    let offline: Vec<(Value, &str)> = vec![
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["alice@example.com"], "duration": "0"}),
            ),
            "duration",
        ),
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["alice@example.com"], "duration": "-5m"}),
            ),
            "duration",
        ),
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["alice@example.com"], "duration": "forever"}),
            ),
            "duration",
        ),
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["alice@example.com"], "duration": "25h"}),
            ),
            "duration",
        ),
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["alice@example.com"], "reason": ""}),
            ),
            "reason",
        ),
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["alice@example.com"], "reason": "x".repeat(501)}),
            ),
            "reason",
        ),
        (body("group-party", alice.clone()), "kind"),
        (
            body("group-membership", json!({"users": ["alice@example.com"]})),
            "group",
        ),
        (
            body(
                "service-key",
                json!({"service_account": "ci-deployer", "users": ["alice@example.com"]}),
            ),
            "users",
        ),
    ];
    env.sim.clear_journal();
    for (b, field) in &offline {
        let (s, v) = env.grant(b.clone()).await;
        assert_eq!(s, 400, "{b} -> {v}");
        assert_eq!(v["error"]["field"], *field, "{b} -> {v}");
        assert!(
            v["error"]["fix"].as_str().is_some_and(|f| !f.is_empty()),
            "{v}"
        );
    }
    // Malformed JSON.
    let r = env
        .http
        .post(format!("{}/v1/grants", env.url()))
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body("{\"kind\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["field"], "body");
    assert!(
        env.sim.journal().is_empty(),
        "no call for offline refusals: {:?}",
        env.sim.journal()
    );

    // Refusals that need a lookup: reads only, never a write.
    let online: Vec<(Value, &str)> = vec![
        (
            body(
                "group-membership",
                json!({"group": "oncall", "users": ["nobody@example.com"]}),
            ),
            "users",
        ),
        (
            body(
                "ephemeral-group",
                json!({"users": ["alice@example.com"], "resources": ["no-such-db"]}),
            ),
            "resources",
        ),
        (
            body(
                "group-membership",
                json!({"group": "okta-engineering", "users": ["alice@example.com"]}),
            ),
            "group",
        ),
        (
            body(
                "group-membership",
                json!({"group": "Everyone", "users": ["alice@example.com"]}),
            ),
            "group",
        ),
        (
            body("service-key", json!({"service_account": "ghost"})),
            "service_account",
        ),
    ];
    for (b, field) in &online {
        let (s, v) = env.grant(b.clone()).await;
        assert_eq!(s, 400, "{b} -> {v}");
        assert_eq!(v["error"]["field"], *field, "{b} -> {v}");
    }
    // lapse's own groups cannot be the target of another grant.
    env.sim
        .admin()
        .create_group("lapse-01abc", twingate_sim::GroupType::Manual)
        .expect("group");
    let (s, v) = env
        .grant(body(
            "group-membership",
            json!({"group": "lapse-01abc", "users": ["alice@example.com"]}),
        ))
        .await;
    assert_eq!(
        (s, v["error"]["field"].as_str()),
        (400, Some("group")),
        "{v}"
    );
    assert!(
        env.sim.journal().iter().all(|j| !j.is_mutation),
        "a refused request wrote to Twingate"
    );
    let list = env.get("/v1/grants").await;
    assert_eq!(
        list["grants"].as_array().map(Vec::len),
        Some(0),
        "nothing stored: {list}"
    );

    // Tokens: missing or wrong -> 401; an auditor may read but not write -> 403.
    let r = env
        .http
        .post(format!("{}/v1/grants", env.url()))
        .json(&body("group-membership", alice.clone()))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let r = env
        .http
        .post(format!("{}/v1/grants", env.url()))
        .bearer_auth("lapse_wrong")
        .json(&body("group-membership", alice.clone()))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "create",
            "--name",
            "auditor-1",
            "--role",
            "auditor",
            "--config",
        ])
        .arg(&env.config)
        .output()
        .expect("token");
    let auditor = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("line")
        .trim()
        .to_owned();
    let r = env
        .http
        .post(format!("{}/v1/grants", env.url()))
        .bearer_auth(&auditor)
        .json(&body("group-membership", alice.clone()))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403);
    let r = env
        .http
        .get(format!("{}/v1/history", env.url()))
        .bearer_auth(&auditor)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_same_grant() {
    let mut env = Env::new("").await;
    env.start().await;
    let send = |b: Value, key: &'static str| {
        let http = env.http.clone();
        let url = format!("{}/v1/grants", env.url());
        let token = env.token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&b)
                .send()
                .await
                .expect("send");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.expect("json"))
        }
    };
    let b = membership("oncall", &["alice@example.com"], "1h");
    let (s1, g1) = send(b.clone(), "k-1").await;
    let (s2, g2) = send(b.clone(), "k-1").await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(g1["id"], g2["id"]);
    let (s3, e) = send(membership("oncall", &["bob@example.com"], "1h"), "k-1").await;
    assert_eq!(s3, 409, "{e}");
    assert_eq!(e["error"]["field"], "Idempotency-Key", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("different request")),
        "{e}"
    );
    let list = env.get("/v1/grants").await;
    assert_eq!(list["grants"].as_array().map(Vec::len), Some(1));
}

/// The key is matched on the request's meaning: the same JSON with keys reordered, other
/// spacing, fields at their defaults, or `60m` for `1h` is the same request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_matches_the_meaning_not_the_bytes() {
    let mut env = Env::new("").await;
    env.start().await;
    let send = |raw: String| {
        let http = env.http.clone();
        let url = format!("{}/v1/grants", env.url());
        let token = env.token.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "k-meaning")
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .expect("send");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.expect("json"))
        }
    };
    let first = r#"{"kind":"group-membership","group":"oncall","users":["alice@example.com"],"duration":"1h","reason":"INC-4211"}"#;
    let same = r#"{
        "reason": "INC-4211",
        "duration" : "60m",
        "users" : [ "alice@example.com" ],
        "resources": [],
        "service_account": null,
        "group": "oncall",
        "kind": "group-membership"
    }"#;
    let (s1, g1) = send(first.to_owned()).await;
    assert_eq!(s1, 201, "{g1}");
    let (s2, g2) = send(same.to_owned()).await;
    assert_eq!(s2, 200, "the same meaning is the same request: {g2}");
    assert_eq!(g1["id"], g2["id"]);
    let longer = first.replace("\"1h\"", "\"2h\"");
    let (s3, e) = send(longer).await;
    assert_eq!(s3, 409, "a different meaning under the same key: {e}");
    assert_eq!(e["error"]["code"], "idempotency_conflict", "{e}");
    let list = env.get("/v1/grants").await;
    assert_eq!(list["grants"].as_array().map(Vec::len), Some(1));
}

/// Name lookups slow enough that the grant's end passes before it is stored: refused with the
/// field and the reason, and nothing is stored to expire unapplied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_that_ends_during_its_lookups_is_refused() {
    let mut env = Env::new("").await;
    env.start().await;
    env.sim
        .set_faults(twingate_sim::Faults {
            latency_per_operation: [(
                "UsersByEmail".to_owned(),
                std::time::Duration::from_millis(1_500),
            )]
            .into_iter()
            .collect(),
            ..twingate_sim::Faults::none()
        })
        .expect("faults the sim accepts");
    let (s, v) = env
        .grant(membership("oncall", &["alice@example.com"], "1s"))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["field"], "duration", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("before it was stored"), "{v}");
    let fix = v["error"]["fix"].as_str().unwrap_or_default();
    assert!(fix.contains("longer duration"), "{v}");
    let list = env.get("/v1/grants").await;
    assert_eq!(list["grants"].as_array().map(Vec::len), Some(0), "{list}");
    // The same request with room for the lookups is granted.
    let (s, v) = env
        .grant(membership("oncall", &["alice@example.com"], "1h"))
        .await;
    assert_eq!(s, 201, "{v}");
}

/// `GET /v1/grants` pages with an opaque `next` cursor, newest first; a grant inserted between
/// pages neither repeats nor hides a row of the pages that follow; a foreign cursor is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_page_with_a_cursor_stable_under_inserts() {
    let mut env = Env::new("").await;
    env.start().await;
    let mut made = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "erin"] {
        let (s, g) = env
            .grant(membership(
                "oncall",
                &[&format!("{user}@example.com")],
                "1h",
            ))
            .await;
        assert_eq!(s, 201, "{g}");
        made.push(id_of(&g));
    }
    let ids = |v: &Value| -> Vec<String> {
        v["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .map(|g| g["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let first = env.get("/v1/grants?limit=2").await;
    assert_eq!(
        ids(&first),
        vec![made[4].clone(), made[3].clone()],
        "{first}"
    );
    let next = first["next"].as_str().expect("a next cursor").to_owned();
    assert!(!next.contains(&made[3]), "the cursor is opaque: {next}");
    // A grant made meanwhile sorts before the first page, not into the next ones.
    let (s, g) = env
        .grant(membership("oncall", &["frank@example.com"], "1h"))
        .await;
    assert_eq!(s, 201, "{g}");
    let second = env.get(&format!("/v1/grants?limit=2&cursor={next}")).await;
    assert_eq!(
        ids(&second),
        vec![made[2].clone(), made[1].clone()],
        "{second}"
    );
    let next = second["next"].as_str().expect("a next cursor").to_owned();
    let third = env.get(&format!("/v1/grants?limit=2&cursor={next}")).await;
    assert_eq!(ids(&third), vec![made[0].clone()], "{third}");
    assert!(
        third.get("next").is_none(),
        "the last page has no next: {third}"
    );

    let r = env
        .http
        .get(format!("{}/v1/grants?cursor={}", env.url(), made[0]))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["field"], "cursor", "{e}");
    let r = env
        .http
        .get(format!("{}/v1/grants?limit=0", env.url()))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["field"], "limit", "{e}");
}
