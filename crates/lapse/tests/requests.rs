//! End-to-end: just-in-time requests on access lists, with the real `lapse serve`, a real
//! twingate-sim and a real local HTTP receiver for the webhook notifications.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);

/// A webhook receiver that keeps every body it accepted, and answers 500 while `failing`.
#[derive(Clone, Default)]
struct Hook {
    got: Arc<Mutex<Vec<Value>>>,
    failing: Arc<AtomicBool>,
    refused: Arc<AtomicU32>,
    /// Bodies received on `/slack`, the Slack incoming-webhook sink.
    slack: Arc<Mutex<Vec<Value>>>,
}

impl Hook {
    async fn start() -> (Hook, SocketAddr) {
        let hook = Hook::default();
        async fn receive(State(h): State<Hook>, Json(v): Json<Value>) -> StatusCode {
            if h.failing.load(Ordering::SeqCst) {
                h.refused.fetch_add(1, Ordering::SeqCst);
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            h.got.lock().expect("hook lock").push(v);
            StatusCode::OK
        }
        async fn receive_slack(State(h): State<Hook>, Json(v): Json<Value>) -> StatusCode {
            h.slack.lock().expect("hook lock").push(v);
            StatusCode::OK
        }
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .route("/slack", post(receive_slack))
            .with_state(hook.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test fixture");
        let addr = listener.local_addr().expect("test fixture");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, addr)
    }

    fn events(&self, event: &str) -> Vec<Value> {
        self.got
            .lock()
            .expect("hook lock")
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    }

    /// Waits until exactly `n` `event` notifications about `key` = `value` arrived.
    /// Waits for a Slack body whose text contains every one of `parts`.
    async fn wait_slack(&self, parts: &[&str]) -> Value {
        let find = || {
            self.slack
                .lock()
                .expect("hook lock")
                .iter()
                .find(|v| {
                    v["text"]
                        .as_str()
                        .is_some_and(|t| parts.iter().all(|p| t.contains(p)))
                })
                .cloned()
        };
        let ok = eventually(WITHIN, || async { find().is_some() }).await;
        assert!(
            ok,
            "no Slack text with {parts:?}; got {:?}",
            self.slack.lock().expect("hook lock")
        );
        find().expect("found above")
    }

    async fn wait_for(&self, event: &str, key: &str, value: &str, n: usize) -> Vec<Value> {
        let ok = eventually(WITHIN, || async {
            self.matching(event, key, value).len() >= n
        })
        .await;
        let found = self.matching(event, key, value);
        assert!(
            ok,
            "{event} for {key}={value}: got {} of {n}; all: {:?}",
            found.len(),
            self.got.lock().expect("hook lock")
        );
        found
    }

    fn matching(&self, event: &str, key: &str, value: &str) -> Vec<Value> {
        self.events(event)
            .into_iter()
            .filter(|v| v[key] == value)
            .collect()
    }
}

struct Jit {
    env: Env,
    hook: Hook,
    lists: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Jit {
    async fn new(lists: &[(&str, &str)]) -> Jit {
        let (hook, addr) = Hook::start().await;
        let tmp = tempfile::tempdir().expect("test fixture");
        let dir = tmp.path().to_owned();
        let lists_dir = dir.join("lists");
        std::fs::create_dir_all(&lists_dir).expect("test fixture");
        for (name, text) in lists {
            std::fs::write(lists_dir.join(name), text).expect("test fixture");
        }
        let url_file = dir.join("hook.url");
        std::fs::write(&url_file, format!("http://{addr}/hook?secret=s3cr3t\n"))
            .expect("test fixture");
        let secret_file = dir.join("hook.secret");
        std::fs::write(&secret_file, "whsec-test\n").expect("test fixture");
        let slack_file = dir.join("slack.url");
        std::fs::write(&slack_file, format!("http://{addr}/slack?secret=sl4ck\n"))
            .expect("test fixture");
        let extra = format!(
            r#"
[access]
lists_dir = "{}"
expiring_soon_lead = "2s"
[notify]
retry_base = "200ms"
retry_cap = "1s"
[[notify.webhook]]
name = "test-hook"
url_file = "{}"
format = "json"
secret_file = "{}"
[[notify.webhook]]
name = "test-slack"
url_file = "{}"
format = "slack"
"#,
            lists_dir.display(),
            url_file.display(),
            secret_file.display(),
            slack_file.display()
        );
        let env = Env::new(&extra).await;
        Jit {
            env,
            hook,
            lists: lists_dir,
            _dir: tmp,
        }
    }

    fn token(&self, name: &str, role: &str, identity: &str) -> String {
        let out = std::process::Command::new(BIN)
            .args([
                "token",
                "create",
                "--name",
                name,
                "--role",
                role,
                "--identity",
                identity,
                "--config",
            ])
            .arg(&self.env.config)
            .output()
            .expect("test fixture");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("test fixture")
            .trim()
            .to_owned()
    }

    async fn call(&self, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{}", self.env.url(), path);
        let req = if method == "GET" {
            self.env.http.get(url)
        } else {
            self.env.http.post(url).json(&body)
        };
        let r = req.bearer_auth(token).send().await.expect("test fixture");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn request_state(&self, token: &str, id: &str) -> String {
        self.call(token, "GET", &format!("/v1/requests/{id}"), Value::Null)
            .await
            .1["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    async fn wait_request(&self, token: &str, id: &str, state: &str) {
        let ok = eventually(WITHIN, || async {
            self.request_state(token, id).await == state
        })
        .await;
        assert!(
            ok,
            "request {id} did not reach {state} (now {})",
            self.request_state(token, id).await
        );
    }

    fn mutations(&self) -> usize {
        self.env
            .sim
            .journal()
            .iter()
            .filter(|e| e.is_mutation)
            .count()
    }
}

const ONCALL: &str = r#"
[[list]]
name = "oncall"
description = "join the on-call group"
owners = ["bob@example.com", "carol@example.com"]
members = ["alice@example.com"]
kind = "group-membership"
group = "oncall"
default_duration = "4s"
max_duration = "10m"
reason_pattern = "^INC-[0-9]+"

[[list]]
name = "prod-two"
owners = ["bob@example.com", "carol@example.com"]
members = ["alice@example.com"]
kind = "ephemeral-group"
resources = ["prod-db"]
max_duration = "1h"
approvals = 2
"#;

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_by_one_owner_becomes_access_that_lapses_and_self_approval_is_refused() {
    let mut jit = Jit::new(&[("oncall.toml", ONCALL)]).await;
    let alice = jit.token("alice", "operator", "alice@example.com");
    let bob = jit.token("bob", "operator", "  Bob@Example.com ");
    let carol = jit.token("carol", "operator", "carol@example.com");
    let alice_admin = jit.token("alice-admin", "admin", "ALICE@example.com");
    let alice_padded = jit.token("alice-padded", "operator", "   alice@example.com   ");
    jit.env.start().await;

    let (s, r) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "oncall", "reason": "INC-77 paging"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["state"], "pending");
    let rid = id(&r);
    assert!(
        !jit.env.group_has("oncall", "alice@example.com"),
        "nothing before approval"
    );

    // Owners are told of the new request, once, with who asked and why.
    let created = jit
        .hook
        .wait_for("request-created", "request", &rid, 1)
        .await;
    assert_eq!(
        created[0]["to"],
        json!(["bob@example.com", "carol@example.com"])
    );
    assert_eq!(created[0]["reason"], "INC-77 paging");

    // Self-approval in every form: same identity, other case, padded, holding admin.
    for t in [&alice, &alice_admin, &alice_padded] {
        let (s, e) = jit
            .call(t, "POST", &format!("/v1/requests/{rid}/approve"), json!({}))
            .await;
        assert_eq!(s, 403, "{e}");
        assert_eq!(e["error"]["code"], "self_approval", "{e}");
    }
    assert_eq!(jit.request_state(&alice, &rid).await, "pending");

    // One owner's approval (an identity stored with other case and spaces) is enough.
    let (s, a) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{rid}/approve"),
            json!({"reason": "ok"}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["state"], "approved");
    let gid = a["grant_id"].as_str().expect("grant id").to_owned();
    jit.env.wait_state(&gid, "active", WITHIN).await;
    assert!(jit.env.group_has("oncall", "alice@example.com"));
    let g = jit.env.get(&format!("/v1/grants/{gid}")).await;
    let events: Vec<&str> = g["history"]
        .as_array()
        .expect("test fixture")
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert!(events.contains(&"request-approved"), "{events:?}");
    let approved_row = g["history"]
        .as_array()
        .expect("test fixture")
        .iter()
        .find(|h| h["event"] == "request-approved")
        .expect("test fixture")
        .clone();
    assert_eq!(approved_row["detail"]["request"], rid.as_str());

    // Time counts from activation and the grant lapses on time.
    jit.env.wait_state(&gid, "expired", WITHIN).await;
    assert!(!jit.env.group_has("oncall", "alice@example.com"));

    // Notifications: approved (to the requester), expiring soon, ended — each exactly once.
    let approved = jit
        .hook
        .wait_for("request-approved", "request", &rid, 1)
        .await;
    assert_eq!(approved[0]["to"], json!(["alice@example.com"]));
    jit.hook.wait_for("expiring-soon", "grant", &gid, 1).await;
    let ended = jit.hook.wait_for("ended", "grant", &gid, 1).await;
    assert_eq!(ended[0]["how"], "expired");

    // A list needing two approvals stays pending after one.
    let (s, r2) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "prod-two", "duration": "5m", "reason": "migration"}),
        )
        .await;
    assert_eq!(s, 201, "{r2}");
    let r2 = id(&r2);
    let (s, one) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{r2}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["state"], "pending", "{one}");
    assert!(one["grant_id"].is_null());
    let (s, again) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{r2}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "the same owner twice does not count: {again}");
    let (s, two) = jit
        .call(
            &carol,
            "POST",
            &format!("/v1/requests/{r2}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{two}");
    assert_eq!(two["state"], "approved");
    assert_eq!(two["approvals"].as_array().expect("test fixture").len(), 2);

    // Each notification arrived once.
    for (event, key, value) in [
        ("request-created", "request", &rid),
        ("request-approved", "request", &rid),
        ("expiring-soon", "grant", &gid),
        ("ended", "grant", &gid),
    ] {
        assert_eq!(
            jit.hook.matching(event, key, value).len(),
            1,
            "{event} delivered more than once"
        );
    }
    assert!(
        !jit.env.log().contains("s3cr3t"),
        "the webhook URL is never logged"
    );
    jit.env.terminate();
}

const FLOW: &str = r#"
[[list]]
name = "quick"
owners = ["bob@example.com"]
members = ["alice@example.com"]
kind = "group-membership"
group = "platform"
max_duration = "1h"
pending_wait = "1s"

[[list]]
name = "slow"
owners = ["bob@example.com"]
members = ["alice@example.com"]
kind = "group-membership"
group = "platform"
max_duration = "1h"

[[list]]
name = "glass"
owners = ["bob@example.com", "carol@example.com"]
members = ["alice@example.com"]
kind = "group-membership"
group = "platform"
max_duration = "1h"
break_glass = true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapse_deny_cancel_touch_nothing_and_break_glass_is_immediate_despite_a_failing_webhook() {
    let mut jit = Jit::new(&[("flow.toml", FLOW)]).await;
    let alice = jit.token("alice", "operator", "alice@example.com");
    let bob = jit.token("bob", "operator", "bob@example.com");
    jit.env.start().await;
    jit.hook.failing.store(true, Ordering::SeqCst);
    jit.env.sim.clear_journal();

    // A request lapses unreviewed after its wait.
    let (s, q) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "quick", "reason": "look"}),
        )
        .await;
    assert_eq!(s, 201, "{q}");
    let q = id(&q);
    jit.wait_request(&alice, &q, "lapsed").await;

    // Denial and cancellation end a request.
    let (_, d) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "slow", "reason": "look"}),
        )
        .await;
    let d = id(&d);
    let (s, e) = jit
        .call(&bob, "POST", &format!("/v1/requests/{d}/deny"), json!({}))
        .await;
    assert_eq!(s, 400, "a denial needs a reason: {e}");
    let (s, denied) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{d}/deny"),
            json!({"reason": "not on call"}),
        )
        .await;
    assert_eq!(s, 200, "{denied}");
    assert_eq!(denied["state"], "denied");
    let (_, c) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "slow", "reason": "look"}),
        )
        .await;
    let c = id(&c);
    let (s, e) = jit
        .call(&bob, "POST", &format!("/v1/requests/{c}/cancel"), json!({}))
        .await;
    assert_eq!(s, 403, "only the requester cancels: {e}");
    let (s, cancelled) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/requests/{c}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (s, e) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{c}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 409, "an ended request cannot be approved: {e}");
    assert_eq!(
        jit.mutations(),
        0,
        "no remote call for lapsed, denied or cancelled requests: {:?}",
        jit.env.sim.journal()
    );

    // Break-glass applies at once, while the webhook still fails.
    let (s, e) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "slow", "reason": "now", "break_glass": true}),
        )
        .await;
    assert_eq!(s, 403, "only lists that allow it: {e}");
    let (s, bg) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "glass", "reason": "prod down", "break_glass": true}),
        )
        .await;
    assert_eq!(s, 201, "{bg}");
    assert_eq!(bg["state"], "approved");
    assert_eq!(bg["break_glass"], true);
    let gid = bg["grant_id"].as_str().expect("test fixture").to_owned();
    jit.env.wait_state(&gid, "active", WITHIN).await;
    assert!(jit.env.group_has("platform", "alice@example.com"));
    let g = jit.env.get(&format!("/v1/grants/{gid}")).await;
    let row = g["history"]
        .as_array()
        .expect("test fixture")
        .iter()
        .find(|h| h["event"] == "break-glass-granted")
        .cloned()
        .expect("marked in history");
    assert_eq!(row["detail"]["break_glass"], true);
    // The grant was applied while the webhook was refusing every delivery.
    let refused_so_far = jit.hook.refused.load(Ordering::SeqCst);
    assert!(refused_so_far >= 1, "the webhook was failing");
    assert!(jit.hook.got.lock().expect("hook lock").is_empty());

    // The webhook recovers: nothing was lost, nothing arrives twice.
    jit.hook.failing.store(false, Ordering::SeqCst);
    let glass = jit
        .hook
        .wait_for("break-glass", "request", &id(&bg), 1)
        .await;
    assert_eq!(
        glass[0]["to"],
        json!(["bob@example.com", "carol@example.com"])
    );
    assert_eq!(glass[0]["reason"], "prod down");
    let den = jit.hook.wait_for("request-denied", "request", &d, 1).await;
    assert_eq!(den[0]["to"], json!(["alice@example.com"]));
    assert_eq!(den[0]["reason"], "not on call");
    jit.hook.wait_for("request-created", "request", &d, 1).await;
    jit.hook.wait_for("request-created", "request", &c, 1).await;
    jit.hook.wait_for("request-lapsed", "request", &q, 1).await;
    for (event, r) in [
        ("break-glass", id(&bg)),
        ("request-denied", d.clone()),
        ("request-created", c.clone()),
        ("request-lapsed", q.clone()),
    ] {
        assert_eq!(
            jit.hook.matching(event, "request", &r).len(),
            1,
            "{event} for {r} arrived more than once"
        );
    }
    jit.env.terminate();
}

const EXT: &str = r#"
[[list]]
name = "ext"
owners = ["bob@example.com"]
members = ["alice@example.com"]
kind = "ephemeral-group"
resources = ["prod-db"]
default_duration = "20s"
max_duration = "60s"
approvals = 0
auto_approve = true
"#;

const REVIEWED: &str = r#"
[[list]]
name = "audited"
owners = ["bob@example.com"]
members = ["alice@example.com", "dave@example.com"]
kind = "group-membership"
group = "platform"
max_duration = "1h"
review_every = "30d"
review_due = "2020-01-01T00:00:00Z"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_are_capped_a_missed_review_suspends_and_a_broken_file_keeps_old_lists() {
    let mut jit = Jit::new(&[("ext.toml", EXT), ("audited.toml", REVIEWED)]).await;
    let alice = jit.token("alice", "operator", "alice@example.com");
    let bob = jit.token("bob", "operator", "bob@example.com");
    jit.env.start().await;

    // Auto-approved list: the grant exists at once.
    let (s, r) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "ext", "reason": "deploy"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let gid = r["grant_id"].as_str().expect("auto-approved").to_owned();
    jit.env.wait_state(&gid, "active", WITHIN).await;
    let before = jit.env.get(&format!("/v1/grants/{gid}")).await["grant"]["expires_at"]
        .as_str()
        .expect("test fixture")
        .to_owned();
    let before = chrono::DateTime::parse_from_rfc3339(&before).expect("test fixture");

    // Past the list's maximum total (60s from the start): refused.
    let (s, e) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/grants/{gid}/extend"),
            json!({"by": "41s", "reason": "more"}),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["error"]["field"], "by");
    // Within it: applied to the same grant, no second group.
    let (s, x) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/grants/{gid}/extend"),
            json!({"by": "10s", "reason": "more"}),
        )
        .await;
    assert_eq!(s, 201, "{x}");
    assert_eq!(x["state"], "approved");
    let after = jit.env.get(&format!("/v1/grants/{gid}")).await;
    let after_t = chrono::DateTime::parse_from_rfc3339(
        after["grant"]["expires_at"].as_str().expect("test fixture"),
    )
    .expect("test fixture");
    assert_eq!(after_t - before, chrono::Duration::seconds(10));
    assert!(
        after["history"]
            .as_array()
            .expect("test fixture")
            .iter()
            .any(|h| h["event"] == "extended")
    );
    let ok = eventually(Duration::from_secs(3), || async {
        jit.env.lapse_groups() > 1
    })
    .await;
    assert!(!ok, "an extension never creates a second group");
    assert_eq!(jit.env.lapse_groups(), 1);
    assert_eq!(jit.env.state_of(&gid).await, "active");

    // A missed review suspends the list...
    let (s, e) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "audited", "reason": "x"}),
        )
        .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["code"], "list_suspended");
    let due = jit
        .call(&bob, "GET", "/v1/reviews?due=true", Value::Null)
        .await
        .1;
    assert!(
        due["reviews"]
            .as_array()
            .expect("test fixture")
            .iter()
            .any(|r| r["list"] == "audited" && r["suspended"] == true),
        "{due}"
    );
    jit.hook.wait_for("review-due", "list", "audited", 1).await;
    // ...until an owner records it; the removed member can no longer request.
    let (s, e) = jit.call(&alice, "POST", "/v1/reviews", json!({"list": "audited", "keep": ["alice@example.com"], "remove": ["dave@example.com"]})).await;
    assert_eq!(s, 403, "only owners review: {e}");
    let (s, rv) = jit.call(&bob, "POST", "/v1/reviews", json!({"list": "audited", "keep": ["ALICE@example.com"], "remove": ["dave@example.com"]})).await;
    assert_eq!(s, 200, "{rv}");
    let (s, ok_req) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "audited", "reason": "x"}),
        )
        .await;
    assert_eq!(s, 201, "{ok_req}");
    let dave = jit.token("dave", "operator", "dave@example.com");
    let (s, e) = jit
        .call(
            &dave,
            "POST",
            "/v1/requests",
            json!({"list": "audited", "reason": "x"}),
        )
        .await;
    assert_eq!(s, 403, "{e}");

    // A broken list file is refused with its name and line; the old lists keep working.
    std::fs::write(
        jit.lists.join("audited.toml"),
        "[[list]]\nname = \"audited\"\nowners = = [\"bob@example.com\"]\n",
    )
    .expect("test fixture");
    jit.env.signal("HUP");
    let ok = eventually(WITHIN, || async {
        let l = jit.call(&alice, "GET", "/v1/lists", Value::Null).await.1;
        l["refused_files"].as_array().is_some_and(|r| {
            r.iter()
                .any(|f| f["file"] == "audited.toml" && f["line"].is_number())
        })
    })
    .await;
    assert!(
        ok,
        "the broken file is reported: {}",
        jit.call(&alice, "GET", "/v1/lists", Value::Null).await.1
    );
    let lists = jit.call(&alice, "GET", "/v1/lists", Value::Null).await.1;
    let refused = lists["refused_files"]
        .as_array()
        .expect("test fixture")
        .iter()
        .find(|f| f["file"] == "audited.toml")
        .expect("test fixture")
        .clone();
    assert_eq!(refused["line"], 3, "{refused}");
    assert!(
        lists["lists"]
            .as_array()
            .expect("test fixture")
            .iter()
            .any(|l| l["name"] == "audited"),
        "the old list stays in force"
    );
    let (s, still) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "audited", "reason": "y"}),
        )
        .await;
    assert_eq!(s, 201, "{still}");
    let hist = jit.env.get("/v1/history").await;
    let refusal = hist["history"]
        .as_array()
        .expect("test fixture")
        .iter()
        .find(|h| h["event"] == "list-file-refused")
        .cloned()
        .expect("in the history");
    assert_eq!(refusal["detail"]["file"], "audited.toml");
    assert!(
        jit.env.log().contains("audited.toml"),
        "the log names the file"
    );
    jit.env.terminate();
}

const OWNED_EXT: &str = r#"
[[list]]
name = "owned-ext"
owners = ["bob@example.com"]
members = ["alice@example.com"]
kind = "ephemeral-group"
resources = ["prod-db"]
default_duration = "2m"
max_duration = "10m"
"#;

fn expiry(g: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(g["grant"]["expires_at"].as_str().expect("test fixture"))
        .expect("test fixture")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_needing_approval_waits_for_an_owner_and_slack_gets_text() {
    let mut jit = Jit::new(&[("owned.toml", OWNED_EXT)]).await;
    let alice = jit.token("alice", "operator", "alice@example.com");
    let bob = jit.token("bob", "operator", "bob@example.com");
    // Alice also holds admin on a second token: still her own extension.
    let alice_admin = jit.token("alice-admin", "admin", " Alice@Example.com ");
    jit.env.start().await;

    let (s, r) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "owned-ext", "reason": "deploy 42"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let rid = id(&r);
    let (s, a) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{rid}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let gid = a["grant_id"].as_str().expect("approved").to_owned();
    jit.env.wait_state(&gid, "active", WITHIN).await;
    let before = expiry(&jit.env.get(&format!("/v1/grants/{gid}")).await);

    // The extension waits for an owner: nothing changes yet.
    let (s, x) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/grants/{gid}/extend"),
            json!({"by": "1m", "reason": "deploy running late"}),
        )
        .await;
    assert_eq!(s, 201, "{x}");
    assert_eq!(x["state"], "pending", "{x}");
    assert_eq!(x["extends_grant"], gid.as_str());
    let xid = id(&x);
    assert_eq!(
        expiry(&jit.env.get(&format!("/v1/grants/{gid}")).await),
        before,
        "a pending extension does not move the end"
    );
    let created = jit
        .hook
        .wait_for("request-created", "request", &xid, 1)
        .await;
    assert_eq!(created[0]["to"], json!(["bob@example.com"]));
    assert_eq!(created[0]["grant"], gid.as_str());

    // The requester cannot approve her own extension, under any of her tokens.
    for token in [&alice, &alice_admin] {
        let (s, e) = jit
            .call(
                token,
                "POST",
                &format!("/v1/requests/{xid}/approve"),
                json!({}),
            )
            .await;
        assert_eq!(s, 403, "{e}");
        assert_eq!(e["error"]["code"], "self_approval", "{e}");
    }
    assert_eq!(jit.request_state(&bob, &xid).await, "pending");

    // The owner approves: the same grant ends a minute later.
    let (s, ok) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{xid}/approve"),
            json!({"reason": "fine"}),
        )
        .await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(ok["state"], "approved", "{ok}");
    let after = jit.env.get(&format!("/v1/grants/{gid}")).await;
    assert_eq!(expiry(&after) - before, chrono::Duration::seconds(60));
    let events: Vec<&str> = after["history"]
        .as_array()
        .expect("test fixture")
        .iter()
        .filter_map(|h| h["event"].as_str())
        .collect();
    assert!(events.contains(&"extension-approved"), "{events:?}");
    assert!(events.contains(&"extended"), "{events:?}");
    assert_eq!(
        jit.env.lapse_groups(),
        1,
        "an extension never makes a second group"
    );
    let approved = jit
        .hook
        .wait_for("request-approved", "request", &xid, 1)
        .await;
    assert_eq!(approved[0]["to"], json!(["alice@example.com"]));
    assert_eq!(approved[0]["extension"], true);

    // The Slack sink got the same notices as Slack text and nothing else.
    let asked = jit
        .hook
        .wait_slack(&[
            "alice@example.com asks to extend grant",
            &gid,
            &format!("lapse approve {xid}"),
        ])
        .await;
    assert_eq!(
        asked
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["text".to_owned()]),
        "a Slack body is only text: {asked}"
    );
    jit.hook
        .wait_slack(&[
            &format!("Extension of grant {gid}"),
            "`owned-ext`",
            "approved",
        ])
        .await;
    jit.hook
        .wait_slack(&[&format!("Your request {rid}"), "was approved"])
        .await;
    let log = jit.env.log();
    assert!(
        !log.contains("sl4ck") && !log.contains("s3cr3t"),
        "webhook URLs are never logged"
    );
    jit.env.terminate();
}

/// A revocation that keeps failing raises the alarm to the list's owners and the requester,
/// keeps retrying, and completes once Twingate answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_revocation_alarms_the_owners_and_still_completes() {
    let mut jit = Jit::new(&[("flow.toml", FLOW)]).await;
    let alice = jit.token("alice", "operator", "alice@example.com");
    jit.env.start().await;
    let (s, bg) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "glass", "reason": "prod down", "break_glass": true}),
        )
        .await;
    assert_eq!(s, 201, "{bg}");
    let gid = bg["grant_id"].as_str().expect("grant id").to_owned();
    jit.env.wait_state(&gid, "active", WITHIN).await;
    // Every call now fails; the requester ends the grant early.
    jit.env
        .sim
        .set_faults(twingate_sim::Faults {
            error_5xx_rate: 1.0,
            ..twingate_sim::Faults::none()
        })
        .expect("faults the sim accepts");
    let (s, r) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "mitigated"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let alarm = jit
        .hook
        .wait_for("revocation-failing", "grant", &gid, 1)
        .await;
    let to = alarm[0].to_string();
    assert!(
        to.contains("bob@example.com") && to.contains("carol@example.com"),
        "owners are alarmed: {to}"
    );
    assert!(
        jit.env.group_has("platform", "alice@example.com"),
        "not yet revoked"
    );
    assert_eq!(jit.env.state_of(&gid).await, "revoking");
    // Twingate recovers: the revocation, never given up, completes.
    jit.env
        .sim
        .set_faults(twingate_sim::Faults::none())
        .expect("faults the sim accepts");
    jit.env.wait_state(&gid, "revoked", WITHIN).await;
    assert!(!jit.env.group_has("platform", "alice@example.com"));
    jit.hook.wait_for("ended", "grant", &gid, 1).await;
    assert_eq!(
        jit.hook.matching("revocation-failing", "grant", &gid).len(),
        1,
        "the alarm is raised once"
    );
    jit.env.terminate();
}

/// A reason written to trick a Slack reader (a channel mention and a disguised link) reaches
/// Slack escaped, as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_notifications_escape_mentions_and_links_in_reasons() {
    let mut jit = Jit::new(&[("owned.toml", OWNED_EXT)]).await;
    let alice = jit.token("alice", "requester", "alice@example.com");
    jit.env.start().await;
    let reason = "INC-1 <!channel> <https://evil.example|Click here to approve>";
    let (s, r) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "owned-ext", "reason": reason}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let body = jit
        .hook
        .wait_slack(&[
            "INC-1",
            "&lt;!channel&gt;",
            "&lt;https://evil.example|Click here to approve&gt;",
        ])
        .await;
    let text = body["text"].as_str().expect("text");
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://"),
        "{text}"
    );
}

/// An extension still pending when its grant ends is closed at once (`lapsed`, with the
/// reason), not left in the owners' queue until its wait runs out; the grant and the request
/// name the same requester, the caller's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_extension_is_closed_when_its_grant_ends() {
    let mut jit = Jit::new(&[("owned.toml", OWNED_EXT)]).await;
    let alice = jit.token("alice", "operator", "alice@example.com");
    let bob = jit.token("bob", "operator", "bob@example.com");
    jit.env.start().await;
    let (s, r) = jit
        .call(
            &alice,
            "POST",
            "/v1/requests",
            json!({"list": "owned-ext", "reason": "deploy 43"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let rid = id(&r);
    let (s, a) = jit
        .call(
            &bob,
            "POST",
            &format!("/v1/requests/{rid}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let gid = a["grant_id"].as_str().expect("approved").to_owned();
    jit.env.wait_state(&gid, "active", WITHIN).await;
    let grant = jit.env.get(&format!("/v1/grants/{gid}")).await;
    assert_eq!(grant["grant"]["requester"], "alice@example.com", "{grant}");
    assert_eq!(grant["grant"]["requester"], r["requester"], "{grant} {r}");

    let (s, x) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/grants/{gid}/extend"),
            json!({"by": "1m", "reason": "deploy running late"}),
        )
        .await;
    assert_eq!(s, 201, "{x}");
    let xid = id(&x);
    assert_eq!(jit.request_state(&bob, &xid).await, "pending");
    // Alice ends her own grant (her token owns it through her identity).
    let (s, g) = jit
        .call(
            &alice,
            "POST",
            &format!("/v1/grants/{gid}/revoke"),
            json!({"reason": "done early"}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    jit.env.wait_state(&gid, "revoked", WITHIN).await;
    jit.wait_request(&bob, &xid, "lapsed").await;
    let (_, closed) = jit
        .call(&bob, "GET", &format!("/v1/requests/{xid}"), Value::Null)
        .await;
    let why = closed["decision_reason"].as_str().unwrap_or_default();
    assert!(why.contains("ended (revoked)"), "{closed}");
    let (_, queue) = jit
        .call(&bob, "GET", "/v1/requests?state=pending", Value::Null)
        .await;
    assert!(!queue.to_string().contains(&xid), "{queue}");
}
