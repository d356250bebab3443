//! End-to-end: the real daemon accepts ID tokens from a real OpenID provider on loopback as
//! bearer tokens, maps them to identity and role, and runs the request flow for those people
//! exactly as for API-token holders; tokens for another audience, expired or signed by another
//! key are refused; API tokens keep working.

mod common;
#[path = "../../lapse-oidc/tests/common/op.rs"]
mod op;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(20);

const LIST: &str = r#"
[[list]]
name = "oncall"
owners = ["olivia@example.com"]
members = ["alice@example.com", "olivia@example.com"]
kind = "group-membership"
group = "oncall"
default_duration = "5m"
max_duration = "1h"
"#;

/// A daemon trusting `issuer`, with the list above (in the directory returned beside it).
async fn daemon(issuer: &str, skew: &str) -> (Env, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("test fixture");
    let lists = dir.path();
    std::fs::write(lists.join("oncall.toml"), LIST).expect("test fixture");
    let extra = format!(
        r#"
[access]
lists_dir = "{lists}"
[auth.oidc]
issuer = "{issuer}"
client_id = "{client}"
clock_skew = "{skew}"
[auth.oidc.roles]
admin = ["platform-admins"]
requester = ["engineering"]
auditor = ["audit"]
"#,
        lists = lists.display(),
        client = op::LAPSE.id,
    );
    let mut env = Env::new(&extra).await;
    env.start().await;
    (env, dir)
}

async fn call(env: &Env, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{}", env.url(), path);
    let req = if method == "GET" {
        env.http.get(url)
    } else {
        env.http.post(url).json(&body)
    };
    let r = req.bearer_auth(token).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn id_token(answer: &Value) -> String {
    answer["id_token"].as_str().expect("an id_token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_signed_in_at_the_issuer_request_and_approve_by_the_same_rules() {
    let provider = op::Provider::start(600);
    let (env, _lists) = daemon(&provider.issuer, "60s").await;
    let alice = id_token(&provider.sign_in(&op::LAPSE, "alice").await);
    let olivia = id_token(&provider.sign_in(&op::LAPSE, "olivia").await);
    let audrey = id_token(&provider.sign_in(&op::LAPSE, "audrey").await);
    let sam = id_token(&provider.sign_in(&op::LAPSE, "sam").await);

    let (s, me) = call(&env, &alice, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["identity"], "alice@example.com");
    assert_eq!(me["role"], "requester");

    let (s, r) = call(
        &env,
        &alice,
        "POST",
        "/v1/requests",
        json!({"list": "oncall", "reason": "INC-1 paging"}),
    )
    .await;
    assert_eq!(s, 201, "{r}");
    let rid = r["id"].as_str().expect("request id").to_owned();
    assert_eq!(r["requester"], "alice@example.com", "{r}");

    // Nobody approves their own request, signed in or not.
    let (s, e) = call(
        &env,
        &alice,
        "POST",
        &format!("/v1/requests/{rid}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(s, 403, "{e}");
    assert_eq!(e["error"]["code"], "self_approval", "{e}");
    // A requester may not grant directly, whatever the issuer says about them.
    let (s, e) = call(
        &env,
        &alice,
        "POST",
        "/v1/grants",
        membership("oncall", &["alice@example.com"], "5m"),
    )
    .await;
    assert_eq!(s, 403, "{e}");

    // The owner approves; the access is applied in Twingate.
    let (s, a) = call(
        &env,
        &olivia,
        "POST",
        &format!("/v1/requests/{rid}/approve"),
        json!({"reason": "ok"}),
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let gid = a["grant_id"].as_str().expect("grant id").to_owned();
    env.wait_state(&gid, "active", WITHIN).await;
    assert!(env.group_has("oncall", "alice@example.com"));

    // An auditor reads the history and writes nothing.
    let (s, h) = call(&env, &audrey, "GET", "/v1/history", Value::Null).await;
    assert_eq!(s, 200, "{h}");
    let (s, e) = call(
        &env,
        &audrey,
        "POST",
        "/v1/requests",
        json!({"list": "oncall", "reason": "INC-2"}),
    )
    .await;
    assert_eq!(s, 403, "{e}");

    // Signed in, but in no group mapped to a role: no access at all.
    let (s, e) = call(&env, &sam, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(s, 401, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("mapped to a lapse role")),
        "{e}"
    );

    // API tokens keep working beside the issuer's.
    let (s, _) = call(&env, &env.token, "GET", "/v1/grants", Value::Null).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_another_audience_expired_or_signed_by_another_key_are_refused() {
    let provider = op::Provider::start(2);
    let (env, _lists) = daemon(&provider.issuer, "0s").await;

    let other = id_token(&provider.sign_in(&op::OTHER, "root").await);
    let (s, e) = call(&env, &other, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(s, 401, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another audience")),
        "{e}"
    );

    let root = id_token(&provider.sign_in(&op::LAPSE, "root").await);
    let (s, me) = call(&env, &root, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(s, 200, "fresh: {me}");
    assert_eq!(me["role"], "admin");

    // The same claims, the issuer's key id, another key.
    let header = root.split('.').next().expect("header");
    let payload = root.split('.').nth(1).expect("payload");
    let forged_sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 256]);
    let forged = format!("{header}.{payload}.{forged_sig}");
    let (s, e) = call(&env, &forged, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(s, 401, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("signature")),
        "{e}"
    );

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (s, e) = call(&env, &root, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(s, 401, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapse_login_keeps_a_token_the_api_accepts_and_logout_forgets_it() {
    use std::io::BufRead as _;
    use std::os::unix::fs::PermissionsExt as _;

    let provider = op::Provider::start_with(
        600,
        vec![json!({
            "client_id": "lapse-cli", "application_type": "native",
            "token_endpoint_auth_method": "none",
            "redirect_uris": ["http://127.0.0.1/callback"],
        })],
    );
    let (mut env, _lists) = daemon(&provider.issuer, "60s").await;
    // The CLI's own client id is an accepted audience.
    env.terminate();
    let config = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        config.replace(
            "[auth.oidc]\n",
            "[auth.oidc]\naudiences = [\"lapse-cli\"]\n",
        ),
    )
    .expect("config");
    env.start().await;

    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("cfg/lapse/login.json");
    let mut login = std::process::Command::new(BIN)
        .args([
            "login",
            "--issuer",
            &provider.issuer,
            "--client-id",
            "lapse-cli",
        ])
        .args(["--scopes", "openid,email,groups", "--no-browser"])
        .env("LAPSE_LOGIN_FILE", &file)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lapse login starts");
    let mut lines = std::io::BufReader::new(login.stderr.take().expect("stderr")).lines();
    let url = lines
        .by_ref()
        .map(|l| l.expect("a line"))
        .find(|l| l.starts_with("http"))
        .expect("lapse login prints the sign-in URL");
    let redirect = reqwest::Url::parse(&url)
        .expect("a URL")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .expect("the loopback redirect")
        .1
        .into_owned();
    assert!(redirect.starts_with("http://127.0.0.1:"), "{redirect}");
    let browser = op::Provider::browser();
    let back = provider.follow(&browser, &url, &redirect, "alice").await;
    assert!(back.contains("/callback?"), "{back}");
    let page = browser.get(&back).send().await.expect("the CLI answers");
    assert!(page.text().await.expect("page").contains("Signed in"));
    let status = login.wait().expect("lapse login ends");
    assert!(status.success(), "lapse login failed");
    let mode = std::fs::metadata(&file).expect("kept").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is the user's only");

    let whoami = |file: &std::path::Path| {
        std::process::Command::new(BIN)
            .args(["whoami", "-o", "json", "--url", &env.url()])
            .env("LAPSE_LOGIN_FILE", file)
            .env_remove("LAPSE_TOKEN")
            .output()
            .expect("whoami runs")
    };
    let out = whoami(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(me["identity"], "alice@example.com");
    assert_eq!(me["role"], "requester");

    let out = std::process::Command::new(BIN)
        .arg("logout")
        .env("LAPSE_LOGIN_FILE", &file)
        .output()
        .expect("logout runs");
    assert!(out.status.success());
    assert!(!file.exists(), "logout removes the token");
    assert!(!whoami(&file).status.success(), "no token after logout");
}
