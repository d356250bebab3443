//! End-to-end: approvals from Slack, the on-call rule and signed webhooks, with the real
//! `lapse serve`, a real twingate-sim, and the Slack and PagerDuty stand-ins of `chat-sim`
//! on loopback (Slack's side signs and sends interaction payloads exactly as Slack does).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chat_sim::{PagerDutySim, PdMode, SlackSim};
use common::*;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);
const BOT: &str = "xoxb-test-bot-token";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const PD_KEY: &str = "pd-test-key";
const CHANNEL: &str = "C0ACCESS";

const LISTS: &str = r#"
[[list]]
name = "oncall"
owners = ["bob@example.com"]
members = ["alice@example.com", "carol@example.com"]
kind = "group-membership"
group = "oncall"
default_duration = "10m"
max_duration = "1h"
slack_channel = "C0ACCESS"
break_glass = true
auto_approve_on_call = { pagerduty_schedules = ["PSCHED1"] }
"#;

struct Chat {
    env: Env,
    slack: SlackSim,
    pd: PagerDutySim,
    _dir: tempfile::TempDir,
}

impl Chat {
    async fn new() -> Chat {
        let slack = SlackSim::start(BOT, &[CHANNEL]).await.expect("slack sim");
        slack.add_user("U0ALICE", "alice", Some("alice@example.com"));
        slack.add_user("U0BOB", "bob", Some("Bob@Example.com"));
        slack.add_user("U0CAROL", "carol", Some("carol@example.com"));
        slack.add_user("U0NOMAIL", "ghost", None);
        let pd = PagerDutySim::start(PD_KEY).await.expect("pagerduty sim");
        let tmp = tempfile::tempdir().expect("test fixture");
        let d = tmp.path();
        let lists = d.join("lists");
        std::fs::create_dir_all(&lists).expect("test fixture");
        std::fs::write(lists.join("oncall.toml"), LISTS).expect("test fixture");
        for (f, v) in [("bot", BOT), ("signing", SIGNING), ("pd", PD_KEY)] {
            std::fs::write(d.join(f), format!("{v}\n")).expect("test fixture");
        }
        let extra = format!(
            r#"
[access]
lists_dir = "{lists}"
[notify]
retry_base = "200ms"
retry_cap = "1s"
[slack]
api_base_url = "{slack}"
bot_token_file = "{bot}"
signing_secret_file = "{signing}"
timeout = "3s"
[pagerduty]
base_url = "{pd}"
api_key_file = "{pdkey}"
timeout = "1s"
"#,
            lists = lists.display(),
            slack = slack.api_url(),
            bot = d.join("bot").display(),
            signing = d.join("signing").display(),
            pd = pd.base_url(),
            pdkey = d.join("pd").display(),
        );
        let env = Env::new(&extra).await;
        Chat {
            env,
            slack,
            pd,
            _dir: tmp,
        }
    }

    fn token(&self, name: &str, identity: &str) -> String {
        let out = std::process::Command::new(BIN)
            .args(["token", "create", "--name", name, "--role", "requester"])
            .args(["--identity", identity, "--config"])
            .arg(&self.env.config)
            .output()
            .expect("token create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("token line")
            .trim()
            .to_owned()
    }

    async fn request(&self, token: &str, body: Value) -> Value {
        let r = self
            .env
            .http
            .post(format!("{}/v1/requests", self.env.url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 201);
        r.json().await.expect("json")
    }

    async fn state(&self, id: &str) -> Value {
        self.env.get(&format!("/v1/requests/{id}")).await
    }

    fn interactions(&self) -> String {
        format!("{}/v1/slack/interactions", self.env.url())
    }

    /// The message posted for request `id`, once it is there.
    async fn message_for(&self, id: &str) -> chat_sim::slack::Message {
        let find = || {
            self.slack
                .messages()
                .into_iter()
                .find(|m| m.blocks.to_string().contains(id))
        };
        let ok = eventually(WITHIN, || async { find().is_some() }).await;
        assert!(
            ok,
            "no Slack message for {id}; calls: {:?}",
            self.slack.calls()
        );
        find().expect("found above")
    }

    async fn ephemeral_to(&self, user: &str, n: usize) -> Vec<String> {
        let got = || {
            self.slack
                .ephemerals()
                .into_iter()
                .filter(|e| e.user == user)
                .map(|e| e.text)
                .collect::<Vec<_>>()
        };
        let ok = eventually(WITHIN, || async { got().len() >= n }).await;
        assert!(ok, "{user} got {:?}, wanted {n} ephemeral answers", got());
        got()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_approve_click_activates_the_grant_and_refused_clicks_change_nothing() {
    let mut chat = Chat::new().await;
    let alice = chat.token("alice", "alice@example.com");
    chat.env.start().await;
    // Nobody is on call: the request waits for its owner.
    let r = chat
        .request(
            &alice,
            json!({"list": "oncall", "duration": "15m", "reason": "INC-1 <!channel> see <https://x.io|this>"}),
        )
        .await;
    assert_eq!(r["state"], "pending", "{r}");
    let rid = r["id"].as_str().expect("id").to_owned();
    let m = chat.message_for(&rid).await;
    assert_eq!(m.channel, CHANNEL);
    let shown = m.blocks.to_string();
    for part in [
        "alice@example.com",
        "`oncall`",
        "15m",
        "INC-1 &lt;!channel&gt; see &lt;https://x.io|this&gt;",
    ] {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
    assert!(
        !shown.contains("<!channel>"),
        "mentions are escaped: {shown}"
    );

    // A bad signature and a replayed (old) timestamp are refused before anything is read.
    let body = chat
        .slack
        .click_body("U0BOB", &m.ts, "approve-request")
        .expect("the message has an Approve button");
    let stale_deny = chat
        .slack
        .click_body("U0BOB", &m.ts, "deny-request")
        .expect("the message has a Deny button");
    let now = chrono::Utc::now().timestamp();
    let wrong = chat_sim::slack::sign("not the signing secret", now, body.as_bytes());
    let (s, _) = chat
        .slack
        .send_raw(&chat.interactions(), &now.to_string(), &wrong, body.clone())
        .await;
    assert_eq!(s, 401);
    let (s, e) = chat
        .slack
        .send_signed(&chat.interactions(), SIGNING, now - 301, body.clone())
        .await;
    assert_eq!(s, 401, "{e}");
    assert!(e.contains("five minutes"), "{e}");
    assert_eq!(chat.state(&rid).await["state"], "pending");

    // The requester's own click and a non-owner's are refused, each answered privately.
    let (s, _) = chat
        .slack
        .click(
            &chat.interactions(),
            SIGNING,
            "U0ALICE",
            &m.ts,
            "approve-request",
        )
        .await;
    assert_eq!(s, 200);
    let why = chat.ephemeral_to("U0ALICE", 1).await;
    assert!(why[0].contains("own request"), "{why:?}");
    let (s, _) = chat
        .slack
        .click(
            &chat.interactions(),
            SIGNING,
            "U0CAROL",
            &m.ts,
            "approve-request",
        )
        .await;
    assert_eq!(s, 200);
    let why = chat.ephemeral_to("U0CAROL", 1).await;
    assert!(why[0].contains("not an owner"), "{why:?}");
    let (_, _) = chat
        .slack
        .click(
            &chat.interactions(),
            SIGNING,
            "U0NOMAIL",
            &m.ts,
            "approve-request",
        )
        .await;
    let why = chat.ephemeral_to("U0NOMAIL", 1).await;
    assert!(why[0].contains("email"), "{why:?}");
    assert_eq!(chat.state(&rid).await["state"], "pending");
    assert!(!chat.env.group_has("oncall", "alice@example.com"));

    // The owner's click, with Slack answering 429 once (waited out): access, and the message
    // updated in place with the decision and who made it.
    chat.slack.rate_limit(1, 1);
    let (s, _) = chat
        .slack
        .click(
            &chat.interactions(),
            SIGNING,
            "U0BOB",
            &m.ts,
            "approve-request",
        )
        .await;
    assert_eq!(s, 200);
    let v = chat.state(&rid).await;
    assert_eq!(v["state"], "approved", "{v}");
    let gid = v["grant_id"].as_str().expect("grant").to_owned();
    chat.env.wait_state(&gid, "active", WITHIN).await;
    assert!(chat.env.group_has("oncall", "alice@example.com"));
    let updated = eventually(WITHIN, || async {
        chat.slack
            .messages()
            .iter()
            .any(|x| x.ts == m.ts && x.updates > 0)
    })
    .await;
    assert!(
        updated,
        "the message was not updated: {:?}",
        chat.slack.calls()
    );
    let now_shown = chat
        .slack
        .messages()
        .into_iter()
        .find(|x| x.ts == m.ts)
        .expect("message");
    let text = now_shown.blocks.to_string();
    assert!(
        text.contains("Approved") && text.contains("bob@example.com"),
        "{text}"
    );
    assert!(
        !text.contains("approve-request"),
        "the buttons are gone: {text}"
    );
    assert!(
        chat.slack.calls().iter().any(|c| c.status == 429),
        "the 429 was answered"
    );

    // A click from a copy of the message still showing the buttons (another client) on the
    // decided request is refused with the reason.
    let (s, _) = chat
        .slack
        .send_signed(
            &chat.interactions(),
            SIGNING,
            chrono::Utc::now().timestamp(),
            stale_deny,
        )
        .await;
    assert_eq!(s, 200);
    let why = chat.ephemeral_to("U0BOB", 1).await;
    assert!(why[0].contains("no longer pending"), "{why:?}");
    assert_eq!(chat.state(&rid).await["state"], "approved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_outage_delays_only_messages_and_break_glass_posts_a_flagged_one() {
    let mut chat = Chat::new().await;
    let alice = chat.token("alice", "alice@example.com");
    chat.env.start().await;
    // Slack refuses every call for a while: the break-glass grant is applied regardless.
    chat.slack.rate_limit(3, 1);
    let r = chat
        .request(
            &alice,
            json!({"list": "oncall", "reason": "INC-2 outage", "break_glass": true}),
        )
        .await;
    assert_eq!(r["state"], "approved", "{r}");
    let gid = r["grant_id"].as_str().expect("grant").to_owned();
    chat.env.wait_state(&gid, "active", WITHIN).await;
    let m = chat.message_for(r["id"].as_str().expect("id")).await;
    let text = m.blocks.to_string();
    assert!(
        text.contains("BREAK-GLASS") && text.contains("without approval"),
        "{text}"
    );
    assert!(
        !text.contains("approve-request"),
        "no buttons on break-glass: {text}"
    );
    let refused = chat
        .slack
        .calls()
        .iter()
        .filter(|c| c.status == 429)
        .count();
    assert!(
        refused >= 1,
        "Slack was rate limiting: {:?}",
        chat.slack.calls()
    );
    // An `ok:false` answer is retried too, and nothing is posted twice.
    chat.slack.fail_next("chat.postMessage", "internal_error");
    let r = chat
        .request(&alice, json!({"list": "oncall", "reason": "INC-3"}))
        .await;
    let rid = r["id"].as_str().expect("id").to_owned();
    chat.message_for(&rid).await;
    let posted = chat
        .slack
        .messages()
        .iter()
        .filter(|x| x.blocks.to_string().contains(&rid))
        .count();
    assert_eq!(posted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_call_requester_is_approved_by_the_rule_and_without_pagerduty_requests_wait() {
    let mut chat = Chat::new().await;
    let alice = chat.token("alice", "alice@example.com");
    let carol = chat.token("carol", "carol@example.com");
    chat.pd
        .on_call_now("PSCHED1", "PUALICE", "Alice@Example.com");
    chat.pd
        .on_call_now("POTHER", "PUCAROL", "carol@example.com");
    chat.env.start().await;

    let r = chat
        .request(&alice, json!({"list": "oncall", "reason": "INC-5 paged"}))
        .await;
    assert_eq!(r["state"], "approved", "{r}");
    let gid = r["grant_id"].as_str().expect("grant").to_owned();
    chat.env.wait_state(&gid, "active", WITHIN).await;
    let g = chat.env.get(&format!("/v1/grants/{gid}")).await;
    let rows = g["history"].as_array().expect("history").clone();
    let approved = rows
        .iter()
        .find(|h| h["event"] == "request-approved")
        .unwrap_or_else(|| panic!("no request-approved row in {rows:?}"));
    assert_eq!(approved["detail"]["approved_by"], "on-call rule");
    assert_eq!(approved["detail"]["on_call"]["schedule_id"], "PSCHED1");
    assert_eq!(approved["detail"]["on_call"]["user_id"], "PUALICE");
    let created = rows
        .iter()
        .find(|h| h["event"] == "created")
        .expect("created");
    assert_eq!(created["detail"]["rule"], "on-call:oncall");
    let asked = chat.pd.calls();
    assert!(
        asked[0].contains("schedule_ids%5B%5D=PSCHED1") && asked[0].contains("include%5B%5D=users"),
        "{asked:?}"
    );
    // The owners are told, in the list's channel.
    let m = chat.message_for(r["id"].as_str().expect("id")).await;
    assert!(m.blocks.to_string().contains("PSCHED1"), "{:?}", m.blocks);

    // On call on another schedule only: waits for the owner.
    let r = chat
        .request(&carol, json!({"list": "oncall", "reason": "INC-6"}))
        .await;
    assert_eq!(r["state"], "pending", "{r}");

    // PagerDuty down, erroring or slow: never approved by default.
    for mode in [
        PdMode::Down,
        PdMode::Erroring,
        PdMode::Slow(Duration::from_secs(3)),
    ] {
        chat.pd.set_mode(mode);
        let r = chat
            .request(&alice, json!({"list": "oncall", "reason": "INC-7"}))
            .await;
        assert_eq!(r["state"], "pending", "{mode:?}: {r}");
    }
    // ... and the owner still decides from Slack.
    chat.pd.set_mode(PdMode::Up);
    let rid = chat.env.get("/v1/requests?state=pending").await["requests"][0]["id"]
        .as_str()
        .expect("a pending request")
        .to_owned();
    let m = chat.message_for(&rid).await;
    chat.slack
        .click(
            &chat.interactions(),
            SIGNING,
            "U0BOB",
            &m.ts,
            "approve-request",
        )
        .await;
    assert_eq!(chat.state(&rid).await["state"], "approved");

    // The slash command makes a request with the same checks.
    let url = format!("{}/v1/slack/commands", chat.env.url());
    let (s, body) = chat
        .slack
        .command(
            &url,
            SIGNING,
            "U0CAROL",
            CHANNEL,
            "request oncall 5m INC-8 look at the logs",
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["response_type"], "ephemeral");
    assert!(v["text"].as_str().expect("text").contains("pending"), "{v}");
    let (_, body) = chat
        .slack
        .command(&url, SIGNING, "U0CAROL", CHANNEL, "request oncall 5h INC-8")
        .await;
    assert!(body.contains("duration"), "{body}");
    let stale = chat
        .slack
        .command_body("U0CAROL", CHANNEL, "/lapse", "request oncall 5m x");
    let (s, _) = chat
        .slack
        .send_signed(&url, SIGNING, chrono::Utc::now().timestamp() - 600, stale)
        .await;
    assert_eq!(s, 401);
}

/// A receiver keeping each body exactly as received, with its headers.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

/// The verification recipe, as README.md documents it (the block between the markers).
fn documented_recipe() -> String {
    let readme = include_str!("../../../deploy/README.md");
    let start = readme
        .find("<!-- webhook-verify:start -->")
        .expect("the recipe's start marker");
    let end = readme
        .find("<!-- webhook-verify:end -->")
        .expect("the recipe's end marker");
    let block = &readme[start..end];
    let code = block
        .split("```python")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a python block");
    code.to_owned()
}

fn run_recipe(secret: &str, headers: &HeaderMap, body: &[u8], dir: &std::path::Path) -> bool {
    let h: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            let name = k
                .as_str()
                .split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join("-");
            (name, json!(v.to_str().unwrap_or("")))
        })
        .collect();
    std::fs::write(dir.join("headers.json"), Value::Object(h).to_string()).expect("fixture");
    std::fs::write(dir.join("body"), body).expect("fixture");
    let script = format!(
        "{}\nimport json, sys\nh = json.load(open(sys.argv[2]))\nb = open(sys.argv[3], 'rb').read()\nsys.exit(0 if verify(sys.argv[1].encode(), h, b) else 1)\n",
        documented_recipe()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(secret)
        .arg(dir.join("headers.json"))
        .arg(dir.join("body"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "the recipe crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_webhooks_signature_verifies_with_the_documented_recipe_only_with_its_secret() {
    let got = Received::default();
    async fn take(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
        r.0.lock().expect("lock").push((headers, body));
        StatusCode::OK
    }
    let app = axum::Router::new()
        .route("/hook", post(take))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let tmp = tempfile::tempdir().expect("fixture");
    let d = tmp.path();
    let lists = d.join("lists");
    std::fs::create_dir_all(&lists).expect("fixture");
    std::fs::write(
        lists.join("l.toml"),
        LISTS.replace("slack_channel = \"C0ACCESS\"\n", "").replace(
            "auto_approve_on_call = { pagerduty_schedules = [\"PSCHED1\"] }\n",
            "",
        ),
    )
    .expect("fixture");
    std::fs::write(d.join("url"), format!("http://{addr}/hook")).expect("fixture");
    std::fs::write(d.join("secret"), "whsec-5f1e2d\n").expect("fixture");
    let extra = format!(
        "[access]\nlists_dir = \"{}\"\n[[notify.webhook]]\nname = \"audit\"\nurl_file = \"{}\"\nsecret_file = \"{}\"\n",
        lists.display(),
        d.join("url").display(),
        d.join("secret").display()
    );
    let mut env = Env::new(&extra).await;
    let out = std::process::Command::new(BIN)
        .args(["token", "create", "--name", "alice", "--role", "requester"])
        .args(["--identity", "alice@example.com", "--config"])
        .arg(&env.config)
        .output()
        .expect("token");
    let alice = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("token")
        .trim()
        .to_owned();
    env.start().await;
    let r = env
        .http
        .post(format!("{}/v1/requests", env.url()))
        .bearer_auth(&alice)
        .json(&json!({"list": "oncall", "reason": "INC-9"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201);
    let ok = eventually(WITHIN, || async { !got.0.lock().expect("lock").is_empty() }).await;
    assert!(ok, "no webhook arrived");
    let (headers, body) = got.0.lock().expect("lock")[0].clone();
    let v: Value = serde_json::from_slice(&body).expect("json body");
    assert_eq!(v["type"], "request-created");
    assert!(v["id"].is_i64(), "{v}");
    assert_eq!(headers["x-lapse-event"], "request-created");
    assert_eq!(
        headers["x-lapse-delivery"].to_str().expect("id"),
        v["id"].to_string()
    );
    assert!(
        run_recipe("whsec-5f1e2d", &headers, &body, d),
        "the right secret verifies"
    );
    assert!(
        !run_recipe("whsec-wrong", &headers, &body, d),
        "a wrong secret does not"
    );
    let mut changed = body.to_vec();
    changed[0] = b' ';
    assert!(
        !run_recipe("whsec-5f1e2d", &headers, &changed, d),
        "a changed body does not"
    );
}
