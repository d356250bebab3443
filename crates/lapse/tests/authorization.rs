//! The holes of "no way around the owners", each tried as an attacker would, through the real
//! binary and real HTTP: direct grants past a list, tokens taken by another caller, the
//! `request:` namespace, a cut or rewritten history, hand-made and dead tokens, extensions past
//! the cap, injected output, files, logs and error bodies.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{BIN, Env, eventually, id_of};
use serde_json::{Value, json};

const LIST: &str = r#"
[[list]]
name = "prod-db-oncall"
owners = ["bob@example.com", "carol@example.com"]
members = ["alice@example.com", "dave@example.com"]
kind = "ephemeral-group"
resources = ["prod-db"]
default_duration = "1h"
max_duration = "4h"
reason_pattern = "^INC-[0-9]+"
approvals = 1
break_glass = true
"#;

const POLICY: &str = r#"
[[policy]]
name = "deploy-bot"
tokens = ["deploy-bot"]
kinds = ["group-access"]
targets = ["staging-db"]
subjects = ["platform"]
max_duration = "2h"
"#;

/// A daemon with the given list and policy files, not yet started.
async fn env_with(lists: &[(&str, &str)], policies: &[(&str, &str)], extra: &str) -> Env {
    let dir = tempfile::tempdir().expect("test fixture").keep();
    let ld = dir.join("lists");
    let pd = dir.join("policies");
    std::fs::create_dir_all(&ld).expect("test fixture");
    std::fs::create_dir_all(&pd).expect("test fixture");
    for (n, t) in lists {
        std::fs::write(ld.join(n), t).expect("test fixture");
    }
    for (n, t) in policies {
        std::fs::write(pd.join(n), t).expect("test fixture");
    }
    let access = format!(
        "[access]\nlists_dir = \"{}\"\npolicies_dir = \"{}\"\n{extra}",
        ld.display(),
        pd.display()
    );
    Env::new(&access).await
}

fn run(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&env.config)
        .output()
        .expect("run lapse")
}

fn token(env: &Env, name: &str, role: &str, identity: Option<&str>, ttl: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--name", name, "--role", role];
    if let Some(i) = identity {
        args.extend(["--identity", i]);
    }
    if let Some(t) = ttl {
        args.extend(["--ttl", t]);
    }
    let out = run(env, &args);
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

async fn call(env: &Env, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{}", env.url(), path);
    let req = match method {
        "GET" => env.http.get(url),
        _ => env.http.post(url).json(&body),
    };
    let r = req.bearer_auth(token).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn created_rule(detail: &Value) -> String {
    detail["history"]
        .as_array()
        .and_then(|h| h.iter().find(|r| r["event"] == "created"))
        .and_then(|r| r["detail"]["rule"].as_str())
        .unwrap_or("-")
        .to_owned()
}

/// Hole 1: a direct grant of a target a list governs was accepted from any operator.
#[tokio::test]
async fn approvals_cannot_be_skipped_by_granting_directly() {
    let mut env = env_with(&[("prod.toml", LIST)], &[("deploy.toml", POLICY)], "").await;
    env.start().await;
    let admin = env.token.clone();
    let bot = token(&env, "deploy-bot", "operator", None, None);
    let alice = token(&env, "alice", "requester", Some("alice@example.com"), None);
    let bob = token(&env, "bob", "requester", Some("bob@example.com"), None);
    // The reproduction from the issue, by every role that writes.
    let body = json!({"kind":"ephemeral-group","users":["alice@example.com"],"resources":["prod-db"],"duration":"24h","reason":"whatever"});
    for t in [&admin, &bot, &alice] {
        let (status, v) = call(&env, t, "POST", "/v1/grants", body.clone()).await;
        assert_eq!(status, 403, "{v}");
        assert_eq!(v["error"]["code"], "not_authorized", "{v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains("lapse request prod-db-oncall"), "{m}");
    }
    assert_eq!(env.lapse_groups(), 0, "no access was given");

    // An operator within its policy; outside it, a 403 naming what would allow it.
    let ok = json!({"kind":"group-access","group":"platform","resources":["staging-db"],"duration":"1h","reason":"deploy 42"});
    let (status, g) = call(&env, &bot, "POST", "/v1/grants", ok.clone()).await;
    assert_eq!(status, 201, "{g}");
    let detail = call(
        &env,
        &admin,
        "GET",
        &format!("/v1/grants/{}", id_of(&g)),
        Value::Null,
    )
    .await
    .1;
    assert_eq!(created_rule(&detail), "policy:deploy-bot");
    let mut long = ok.clone();
    long["duration"] = json!("3h");
    let (status, v) = call(&env, &bot, "POST", "/v1/grants", long).await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at most 2h"),
        "{v}"
    );

    // Admins grant what no list governs; requesters never grant directly.
    let grafana = json!({"kind":"ephemeral-group","users":["dave@example.com"],"resources":["grafana"],"duration":"1h","reason":"INC-1"});
    let (status, v) = call(&env, &alice, "POST", "/v1/grants", grafana.clone()).await;
    assert_eq!(status, 403, "{v}");
    let (status, g) = call(&env, &admin, "POST", "/v1/grants", grafana).await;
    assert_eq!(status, 201, "{g}");
    let detail = call(
        &env,
        &admin,
        "GET",
        &format!("/v1/grants/{}", id_of(&g)),
        Value::Null,
    )
    .await
    .1;
    assert_eq!(created_rule(&detail), "admin");

    // Through the list, with an owner's approval: the rule is the list.
    let (status, r) = call(
        &env,
        &alice,
        "POST",
        "/v1/requests",
        json!({"list":"prod-db-oncall","reason":"INC-7 db down"}),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let (status, r) = call(
        &env,
        &bob,
        "POST",
        &format!("/v1/requests/{}/approve", id_of(&r)),
        json!({"reason":"ok"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let gid = r["grant_id"].as_str().expect("grant id").to_owned();
    let detail = call(
        &env,
        &admin,
        "GET",
        &format!("/v1/grants/{gid}"),
        Value::Null,
    )
    .await
    .1;
    assert_eq!(created_rule(&detail), "list:prod-db-oncall");
}

/// Hole 2: another caller replaying a body and key received the first caller's service-key token.
#[tokio::test]
async fn a_service_key_token_goes_only_to_its_requester() {
    let mut env = env_with(&[], &[], "").await;
    env.start().await;
    let a = env.token.clone();
    let b = token(&env, "other-admin", "admin", None, None);
    let body = json!({"kind":"service-key","service_account":"ci-deployer","duration":"1h","reason":"INC-9"});
    let send = |t: String, wait: bool| {
        let env = &env;
        let body = body.clone();
        async move {
            let q = if wait { "?wait=true" } else { "" };
            let r = env
                .http
                .post(format!("{}/v1/grants{q}", env.url()))
                .bearer_auth(t)
                .header("Idempotency-Key", "deploy-1")
                .json(&body)
                .send()
                .await
                .expect("request");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, first) = send(a.clone(), false).await;
    assert_eq!(status, 201, "{first}");
    let (status, replay) = send(b.clone(), true).await;
    assert_eq!(
        status, 201,
        "the same key from another caller is a new request: {replay}"
    );
    assert_ne!(id_of(&replay), id_of(&first));
    assert_eq!(replay["requester"], "other-admin");
    let id = id_of(&first);
    let path = format!("/v1/grants/{id}/token");
    let (status, v) = call(&env, &b, "POST", &path, Value::Null).await;
    assert_eq!(status, 403, "{v}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let got = loop {
        let (s, v) = call(&env, &a, "POST", &path, Value::Null).await;
        if s == 200 {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the requester never received the token: {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(got["token"].as_str().is_some(), "{got}");
    let detail = call(&env, &a, "GET", &format!("/v1/grants/{id}"), Value::Null)
        .await
        .1;
    let handed: Vec<&Value> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|r| r["event"] == "token-handed-out")
        .collect();
    assert_eq!(handed.len(), 1, "{detail}");
    assert_eq!(handed[0]["detail"]["to"], "oncall-bot");
}

/// Hole 3: `Idempotency-Key: request:<pending id>` blocked every later approval with 409.
#[tokio::test]
async fn nobody_blocks_a_pending_request_through_lapses_own_keys() {
    let mut env = env_with(&[("prod.toml", LIST)], &[], "").await;
    env.start().await;
    let alice = token(&env, "alice", "requester", Some("alice@example.com"), None);
    let bob = token(&env, "bob", "requester", Some("bob@example.com"), None);
    let (_, r) = call(
        &env,
        &alice,
        "POST",
        "/v1/requests",
        json!({"list":"prod-db-oncall","reason":"INC-8"}),
    )
    .await;
    let rid = id_of(&r);
    let attack = env
        .http
        .post(format!("{}/v1/grants", env.url()))
        .bearer_auth(&env.token)
        .header("Idempotency-Key", format!("request:{rid}"))
        .json(&json!({"kind":"ephemeral-group","users":["dave@example.com"],"resources":["grafana"],"duration":"1h","reason":"x"}))
        .send()
        .await
        .expect("request");
    assert_eq!(attack.status().as_u16(), 400);
    let v: Value = attack.json().await.expect("json");
    assert_eq!(v["error"]["field"], "Idempotency-Key", "{v}");
    let (status, r) = call(
        &env,
        &bob,
        "POST",
        &format!("/v1/requests/{rid}/approve"),
        json!({"reason":"ok"}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["state"], "approved");
}

async fn raw(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection")
}

fn verify(env: &Env, checkpoints: &Path, key: &Path) -> (i32, String) {
    let out = run(
        env,
        &[
            "audit",
            "verify",
            "--checkpoints",
            &checkpoints.display().to_string(),
            "--key-file",
            &key.display().to_string(),
        ],
    );
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Hole 4: rows removed at the end, or edited with the chain recomputed, verified as intact.
#[tokio::test]
async fn audit_verify_names_a_truncated_and_a_rewritten_history_given_the_checkpoints() {
    let dir = tempfile::tempdir().expect("test fixture");
    let key = dir.path().join("checkpoint.key");
    std::fs::write(
        &key,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    )
    .expect("test fixture");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let cps: PathBuf = dir.path().join("checkpoints.jsonl");
    let extra = format!(
        "[audit]\ncheckpoint_key_file = \"{}\"\ncheckpoint_file = \"{}\"\ncheckpoint_rows = 1\n",
        key.display(),
        cps.display()
    );
    let mut env = Env::new(&extra).await;
    env.start().await;
    for n in 0..3 {
        let (s, v) = env
            .grant(json!({"kind":"ephemeral-group","users":["dave@example.com"],"resources":["grafana"],"duration":"1h","reason":format!("INC-{n}")}))
            .await;
        assert_eq!(s, 201, "{v}");
    }
    env.terminate();
    assert!(
        env.log().contains("history checkpoint"),
        "an INFO line carries each checkpoint"
    );
    let db = env.dir.path().join("lapse.db");
    let pristine = dir.path().join("pristine.db");
    std::fs::copy(&db, &pristine).expect("copy");
    let (code, out) = verify(&env, &cps, &key);
    assert_eq!(code, 0, "{out}");

    // Truncation, the high-water mark rewound too, as someone with the file would.
    let mut c = raw(&db).await;
    for q in [
        "DROP TRIGGER history_no_delete",
        "DROP TRIGGER history_head_forward_only",
        "DELETE FROM history WHERE seq > (SELECT MAX(seq) - 3 FROM history)",
        "UPDATE history_head SET last_seq = (SELECT MAX(seq) FROM history)",
    ] {
        sqlx::query(q).execute(&mut c).await.expect(q);
    }
    drop(c);
    let (code, out) = verify(&env, &cps, &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated"), "{out}");

    // Rewriting: one row edited and every hash after it recomputed, so the chain links.
    std::fs::copy(&pristine, &db).expect("copy");
    let mut c = raw(&db).await;
    sqlx::query("DROP TRIGGER history_no_update")
        .execute(&mut c)
        .await
        .expect("drop");
    let rows: Vec<(i64, String, Option<String>, String, String, String)> =
        sqlx::query_as("SELECT seq, at, grant_id, actor, event, detail FROM history ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .expect("rows");
    let mut prev = lapse_store::GENESIS_HASH.to_owned();
    for (i, (seq, at, grant, actor, event, detail)) in rows.into_iter().enumerate() {
        let actor = if i == 1 { "mallory".to_owned() } else { actor };
        let hash =
            lapse_store::history_hash(&prev, seq, &at, grant.as_deref(), &actor, &event, &detail);
        sqlx::query("UPDATE history SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(&actor)
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&mut c)
            .await
            .expect("rewrite");
        prev = hash;
    }
    drop(c);
    let store = lapse_store::Store::open_with(&db, lapse_store::OpenMode::Existing)
        .await
        .expect("open");
    assert!(
        store.verify_history().await.expect("verify").is_ok(),
        "without checkpoints the rewrite is not seen"
    );
    store.close().await;
    let (code, out) = verify(&env, &cps, &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rewritten"), "{out}");

    // A checkpoint made without the key is named as forged.
    std::fs::copy(&pristine, &db).expect("copy");
    let mut lines = std::fs::read_to_string(&cps).expect("checkpoints");
    let last = lines.lines().last().expect("a checkpoint").to_owned();
    let mut forged: Value = serde_json::from_str(&last).expect("json");
    forged["seq"] = json!(forged["seq"].as_i64().unwrap_or(0) + 5);
    lines.push_str(&format!("{forged}\n"));
    std::fs::write(&cps, lines).expect("write");
    let (code, out) = verify(&env, &cps, &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("forged"), "{out}");
}

/// Hole 4 (tokens): a row inserted by hand into the tokens table worked as an admin token.
#[tokio::test]
async fn a_token_inserted_by_hand_is_refused() {
    use sha2::Digest;
    let mut env = Env::new("").await;
    env.start().await;
    let forged = "lapse_handmadehandmadehandmadehandmadehandmade";
    let hash = hex::encode(sha2::Sha256::digest(forged.as_bytes()));
    let mut c = raw(&env.dir.path().join("lapse.db")).await;
    sqlx::query(
        "INSERT INTO api_tokens (name, role, token_hash, created_at, expires_at) \
         VALUES ('root', 'admin', ?, '2026-01-01T00:00:00.000000Z', '2099-01-01T00:00:00.000000Z')",
    )
    .bind(&hash)
    .execute(&mut c)
    .await
    .expect("insert");
    drop(c);
    let (status, v) = call(&env, forged, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
}

/// Hole 5: tokens could not be listed or revoked and never expired.
#[tokio::test]
async fn tokens_expire_are_listed_and_revoked() {
    let mut env = Env::new("").await;
    env.start().await;
    let short = token(&env, "short", "auditor", None, Some("2s"));
    let ci = token(&env, "ci", "operator", Some("CI@Example.com"), None);
    let (status, me) = call(&env, &ci, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"name":"ci","role":"operator","identity":"ci@example.com"})
    );
    let out = run(&env, &["token", "list"]);
    let list = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    assert!(
        list.lines()
            .any(|l| l.starts_with("ci\toperator\tci@example.com\t")),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("short\tauditor\t-\t")),
        "{list}"
    );

    let out = run(&env, &["token", "revoke", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, v) = call(&env, &ci, "GET", "/v1/whoami", Value::Null).await;
    assert_eq!(status, 401, "revoked: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("revoked"),
        "{v}"
    );

    let expired = eventually(Duration::from_secs(10), || {
        let (env, short) = (&env, short.clone());
        async move { call(env, &short, "GET", "/v1/whoami", Value::Null).await.0 == 401 }
    })
    .await;
    assert!(expired, "an expired token still worked");
    let out = run(
        &env,
        &[
            "token", "create", "--name", "x", "--role", "admin", "--ttl", "10y",
        ],
    );
    assert!(
        !out.status.success(),
        "a life past tokens.max_ttl is refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokens.max_ttl"));
}

/// Hole 6: a 72 h list loaded under a 24 h cap, and the owner who asked approved his extension.
#[tokio::test]
async fn extensions_stay_under_the_cap_and_the_asker_never_approves() {
    let long = LIST
        .replace("prod-db-oncall", "too-long")
        .replace("\"4h\"", "\"72h\"");
    let mut env = env_with(&[("prod.toml", LIST), ("long.toml", &long)], &[], "").await;
    env.start().await;
    let (_, lists) = call(&env, &env.token, "GET", "/v1/lists", Value::Null).await;
    let refused = &lists["refused_files"][0];
    assert_eq!(refused["file"], "long.toml", "{lists}");
    assert!(refused["line"].as_u64().is_some(), "{lists}");
    assert!(
        refused["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("grants.max_duration")
    );
    assert!(
        lists["lists"]
            .as_array()
            .expect("lists")
            .iter()
            .all(|l| l["name"] != "too-long")
    );

    let alice = token(&env, "alice", "requester", Some("alice@example.com"), None);
    let bob = token(&env, "bob", "requester", Some("bob@example.com"), None);
    let (_, r) = call(
        &env,
        &alice,
        "POST",
        "/v1/requests",
        json!({"list":"prod-db-oncall","reason":"INC-5","duration":"1h"}),
    )
    .await;
    let (_, r) = call(
        &env,
        &bob,
        "POST",
        &format!("/v1/requests/{}/approve", id_of(&r)),
        json!({}),
    )
    .await;
    let gid = r["grant_id"].as_str().expect("grant").to_owned();
    let (status, ext) = call(
        &env,
        &bob,
        "POST",
        &format!("/v1/grants/{gid}/extend"),
        json!({"by":"1h","reason":"INC-5 still"}),
    )
    .await;
    assert_eq!(status, 201, "{ext}");
    let (status, v) = call(
        &env,
        &bob,
        "POST",
        &format!("/v1/requests/{}/approve", id_of(&ext)),
        json!({}),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["code"], "self_approval");
    // Past the list's maximum (and so the global cap) is refused before anyone is asked.
    let (status, v) = call(
        &env,
        &alice,
        "POST",
        &format!("/v1/grants/{gid}/extend"),
        json!({"by":"30h","reason":"INC-5"}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
}

/// Hole 7: formulas in CSV, and reasons of any size with control characters.
#[tokio::test]
async fn free_text_is_checked_and_csv_cells_cannot_be_formulas() {
    let mut env = env_with(&[("prod.toml", LIST)], &[], "").await;
    env.start().await;
    let (s, g) = env
        .grant(json!({"kind":"ephemeral-group","users":["dave@example.com"],"resources":["grafana"],"duration":"1h","reason":"=HYPERLINK(\"https://evil.example\")"}))
        .await;
    assert_eq!(s, 201, "{g}");
    let out = Command::new(BIN)
        .args([
            "list",
            "-o",
            "csv",
            "--url",
            &env.url(),
            "--token",
            &env.token,
        ])
        .output()
        .expect("lapse list");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    assert!(
        !csv.contains(",=HYPERLINK") && !csv.contains(",\"=HYPERLINK"),
        "{csv}"
    );

    let alice = token(&env, "alice", "requester", Some("alice@example.com"), None);
    let bob = token(&env, "bob", "requester", Some("bob@example.com"), None);
    let (_, r) = call(
        &env,
        &alice,
        "POST",
        "/v1/requests",
        json!({"list":"prod-db-oncall","reason":"INC-6"}),
    )
    .await;
    let rid = id_of(&r);
    for bad in [
        "ok\u{0}",
        "line\r\nbreak",
        "\u{1b}[31mred",
        &"x".repeat(1_001),
    ] {
        for (t, action) in [(&bob, "approve"), (&bob, "deny"), (&alice, "cancel")] {
            let (status, v) = call(
                &env,
                t,
                "POST",
                &format!("/v1/requests/{rid}/{action}"),
                json!({"reason": bad}),
            )
            .await;
            assert_eq!(status, 400, "{action} {bad:?}: {v}");
            assert_eq!(v["error"]["field"], "reason", "{v}");
        }
    }
    let (status, v) = call(
        &env,
        &env.token,
        "POST",
        &format!("/v1/grants/{}/revoke", id_of(&g)),
        json!({"reason":"a\u{7}b"}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let out = run(
        &env,
        &[
            "token",
            "create",
            "--name",
            "bad\u{1b}name",
            "--role",
            "auditor",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("name"));
    let (_, r) = call(
        &env,
        &alice,
        "GET",
        &format!("/v1/requests/{rid}"),
        Value::Null,
    )
    .await;
    assert_eq!(r["state"], "pending", "refused input changed nothing");
}

/// Hole 8: files followed the umask, doctor created the database, failed logins were silent,
/// `bearer` was refused, and 413 and query errors were plain text.
#[tokio::test]
async fn files_logs_and_error_bodies() {
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().expect("test fixture");
    let db = state.path().join("state").join("lapse.db");
    let extra = format!("[database]\npath = \"{}\"\n", db.display());
    let mut env = Env::new(&extra).await;
    env.start().await;
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(db.parent().expect("dir")), 0o700);

    // 2,000 failed authentications: counted, logged at WARN a few times a second, no token.
    let bad = "lapse_notatokennotatokennotatokennotatoken12";
    for _ in 0..2000 {
        let (s, _) = call(&env, bad, "GET", "/v1/grants", Value::Null).await;
        assert_eq!(s, 401);
    }
    let metrics = env
        .http
        .get(format!("{}/metrics", env.url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("lapse_auth_failures_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(counted >= 2000.0, "{metrics}");
    let log = env.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .count();
    assert!(
        (1..500).contains(&warned),
        "{warned} lines: not rate-limited"
    );
    assert!(log.contains("peer"), "the peer address is logged");
    assert!(!log.contains(bad), "the token is never logged");

    // The scheme is case-insensitive.
    let r = env
        .http
        .get(format!("{}/v1/whoami", env.url()))
        .header("Authorization", format!("bearer {}", env.token))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);

    // Axum's own rejections in the JSON error shape.
    // Its own client: the server closes a connection whose body it refused.
    let once = reqwest::Client::new();
    let r = once
        .post(format!("{}/v1/grants", env.url()))
        .bearer_auth(&env.token)
        .body(vec![b'a'; 3 * 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.expect("413 is JSON");
    assert_eq!(v["error"]["code"], "payload_too_large");
    let r = env
        .http
        .get(format!("{}/v1/grants?limit=many", env.url()))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("a query error is JSON");
    assert_eq!(v["error"]["code"], "bad_request");

    // doctor never creates a database.
    env.terminate();
    let elsewhere = state.path().join("nothing-here").join("lapse.db");
    let cfg = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace(&db.display().to_string(), &elsewhere.display().to_string());
    let cfg_path = state.path().join("doctor.toml");
    std::fs::write(&cfg_path, cfg).expect("write");
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(&cfg_path)
        .output()
        .expect("doctor");
    assert!(!out.status.success());
    assert!(
        !elsewhere.exists() && !elsewhere.parent().expect("dir").exists(),
        "doctor created the database"
    );
}

/// The role matrix of README.md, cell by cell: one daemon, a token per role, every route.
#[tokio::test]
async fn the_role_matrix_holds_cell_by_cell() {
    let list = LIST.replace(
        "members = [\"alice@example.com\", \"dave@example.com\"]",
        "members = [\"alice@example.com\", \"dave@example.com\", \"erin@example.com\", \"frank@example.com\"]",
    );
    let mut env = env_with(&[("prod.toml", &list)], &[("deploy.toml", POLICY)], "").await;
    env.start().await;
    // Every role's token speaks for a list member, so that only the role decides.
    let roles = [
        (
            "requester",
            token(&env, "alice", "requester", Some("alice@example.com"), None),
        ),
        (
            "operator",
            token(
                &env,
                "deploy-bot",
                "operator",
                Some("dave@example.com"),
                None,
            ),
        ),
        (
            "admin",
            token(&env, "root", "admin", Some("erin@example.com"), None),
        ),
        (
            "auditor",
            token(&env, "audit", "auditor", Some("frank@example.com"), None),
        ),
    ];
    let bob = token(&env, "bob", "requester", Some("bob@example.com"), None);
    let ungoverned = json!({"kind":"ephemeral-group","users":["dave@example.com"],"resources":["grafana"],"duration":"1h","reason":"INC-1"});
    let in_policy = json!({"kind":"group-access","group":"platform","resources":["staging-db"],"duration":"1h","reason":"deploy"});
    let admins_grant = || async {
        let (s, g) = env.grant(ungoverned.clone()).await;
        assert_eq!(s, 201, "{g}");
        id_of(&g)
    };
    let pending = || async {
        let (s, r) = call(
            &env,
            &roles[0].1,
            "POST",
            "/v1/requests",
            json!({"list":"prod-db-oncall","reason":"INC-2"}),
        )
        .await;
        assert_eq!(s, 201, "{r}");
        id_of(&r)
    };
    let shown = admins_grant().await;

    // (what, method, path, body, expected status for requester, operator, admin, auditor)
    type Cell = (&'static str, &'static str, String, Value, [u16; 4]);
    let mut cells: Vec<Cell> = vec![
        (
            "whoami",
            "GET",
            "/v1/whoami".into(),
            Value::Null,
            [200, 200, 200, 200],
        ),
        (
            "list grants",
            "GET",
            "/v1/grants".into(),
            Value::Null,
            [200, 200, 200, 200],
        ),
        (
            "show another's grant",
            "GET",
            format!("/v1/grants/{shown}"),
            Value::Null,
            [404, 200, 200, 200],
        ),
        (
            "history",
            "GET",
            "/v1/history".into(),
            Value::Null,
            [403, 200, 200, 200],
        ),
        (
            "audit verify",
            "GET",
            "/v1/audit/verify".into(),
            Value::Null,
            [403, 200, 200, 200],
        ),
        (
            "lists",
            "GET",
            "/v1/lists".into(),
            Value::Null,
            [200, 200, 200, 200],
        ),
        (
            "requests",
            "GET",
            "/v1/requests".into(),
            Value::Null,
            [200, 200, 200, 200],
        ),
        (
            "reviews",
            "GET",
            "/v1/reviews".into(),
            Value::Null,
            [200, 200, 200, 200],
        ),
        (
            "grant directly, no policy",
            "POST",
            "/v1/grants".into(),
            ungoverned.clone(),
            [403, 403, 201, 403],
        ),
        (
            "grant directly, in a policy",
            "POST",
            "/v1/grants".into(),
            in_policy.clone(),
            [403, 201, 201, 403],
        ),
        (
            "request through a list",
            "POST",
            "/v1/requests".into(),
            json!({"list":"prod-db-oncall","reason":"INC-3"}),
            [201, 201, 201, 403],
        ),
    ];
    // Routes that change one object get a fresh one per cell.
    for (r, expect) in [404u16, 403, 200, 403].into_iter().enumerate() {
        let id = admins_grant().await;
        let mut e = [0; 4];
        e[r] = expect;
        cells.push((
            "revoke another's grant",
            "POST",
            format!("/v1/grants/{id}/revoke"),
            json!({"reason":"done"}),
            e,
        ));
    }
    for (r, expect) in [403u16, 403, 403, 403].into_iter().enumerate() {
        let id = pending().await;
        let mut e = [0; 4];
        e[r] = expect;
        cells.push((
            "approve without owning the list",
            "POST",
            format!("/v1/requests/{id}/approve"),
            json!({}),
            e,
        ));
    }
    for (r, (_, t)) in roles.iter().enumerate() {
        let (s, req) = call(
            &env,
            t,
            "POST",
            "/v1/requests",
            json!({"list":"prod-db-oncall","reason":"INC-4"}),
        )
        .await;
        let mut e = [0; 4];
        if r == 3 {
            assert_eq!(s, 403, "{req}");
            let id = pending().await;
            e[r] = 403;
            cells.push((
                "cancel (another's)",
                "POST",
                format!("/v1/requests/{id}/cancel"),
                json!({}),
                e,
            ));
        } else {
            assert_eq!(s, 201, "{req}");
            e[r] = 200;
            cells.push((
                "cancel one's own request",
                "POST",
                format!("/v1/requests/{}/cancel", id_of(&req)),
                json!({}),
                e,
            ));
        }
    }
    for (what, method, path, body, expect) in &cells {
        for (r, (role, t)) in roles.iter().enumerate() {
            if expect[r] == 0 {
                continue;
            }
            let (status, v) = call(&env, t, method, path, body.clone()).await;
            assert_eq!(status, expect[r], "{role}: {what} ({method} {path}): {v}");
        }
    }
    // A requester sees only their own grants.
    let (_, mine) = call(&env, &roles[0].1, "GET", "/v1/grants", Value::Null).await;
    assert!(
        mine["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .all(|g| g["requester"] == "alice"),
        "{mine}"
    );
    // Nor does a page's cursor tell them of others' grants: it names the last grant shown, one
    // of their own (the newest grant overall is another role's here).
    let (s, v) = call(&env, &roles[0].1, "GET", "/v1/grants?limit=1", Value::Null).await;
    assert_eq!(s, 200, "{v}");
    if let Some(next) = v["next"].as_str() {
        let bytes: Vec<u8> = (0..next.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&next[i..i + 2], 16).expect("hex"))
            .collect();
        let text = String::from_utf8(bytes).expect("utf-8");
        let id = text.strip_prefix("after:").expect("a cursor after an id");
        let shown: Vec<&str> = v["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .map(|g| g["id"].as_str().expect("id"))
            .collect();
        assert_eq!(shown, [id], "the cursor names the grant shown: {v}");
    } else {
        assert!(v["grants"].as_array().expect("grants").len() <= 1, "{v}");
    }
    // Approving comes from owning the list, whatever the role: bob is a mere requester.
    let id = pending().await;
    let (status, v) = call(
        &env,
        &bob,
        "POST",
        &format!("/v1/requests/{id}/approve"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // An operator revokes the grants it made itself.
    let (_, g) = call(&env, &roles[1].1, "POST", "/v1/grants", in_policy).await;
    let (status, v) = call(
        &env,
        &roles[1].1,
        "POST",
        &format!("/v1/grants/{}/revoke", id_of(&g)),
        json!({"reason":"done"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
}
