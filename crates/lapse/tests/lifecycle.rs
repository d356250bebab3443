//! End-to-end: the real `lapse serve` process against a real twingate-sim on loopback, each test
//! with its own SQLite file. Checks each grant kind, overlaps (I2), restarts and audit.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_is_applied_then_revoked_on_time() {
    let mut env = Env::new("").await;
    env.start().await;

    let (s, m) = env
        .grant(membership("oncall", &["alice@example.com"], "3s"))
        .await;
    assert_eq!(s, 201, "{m}");
    let (s, e) = env
        .grant(json!({"kind": "ephemeral-group", "users": ["bob@example.com"], "resources": ["prod-db"], "duration": "3s", "reason": "deploy check"}))
        .await;
    assert_eq!(s, 201, "{e}");
    let (s, a) = env
        .grant(json!({"kind": "group-access", "group": "platform", "resources": ["billing-api"], "duration": "3s", "reason": "INC-1"}))
        .await;
    assert_eq!(s, 201, "{a}");
    let (s, sa) = env
        .grant(json!({"kind": "service-access", "service_account": "ci-deployer", "resources": ["prod-db"], "duration": "3s", "reason": "INC-2"}))
        .await;
    assert_eq!(s, 201, "{sa}");
    let (s, key) = env
        .post("/v1/grants?wait=true", json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "3s", "reason": "INC-3"}))
        .await;
    assert_eq!(s, 201, "{key}");
    assert_eq!(key["state"], "active");
    assert!(
        key["token"].as_str().is_some_and(|t| t.len() > 10),
        "the key's token is handed over once: {key}"
    );

    for g in [&m, &e, &a, &sa] {
        env.wait_state(&id_of(g), "active", WITHIN).await;
    }
    // Everything is really there in Twingate.
    let snap = env.snapshot();
    assert!(env.group_has("oncall", "alice@example.com"));
    let eg_name = format!("lapse-{}", id_of(&e).to_lowercase());
    let eg = snap
        .groups
        .iter()
        .find(|g| g.name == eg_name)
        .expect("ephemeral group exists");
    assert!(eg.user_ids.contains(&env.user_id("bob@example.com")));
    let prod = snap.resource_named("prod-db").expect("prod-db");
    let edge = prod
        .access
        .iter()
        .find(|x| x.principal_id == eg.id)
        .expect("backstop edge on prod-db");
    assert!(
        edge.expires_at.is_some(),
        "ephemeral group's access carries a server-side expiry"
    );
    let platform = snap.group_named("platform").expect("platform").id.clone();
    let billing = snap.resource_named("billing-api").expect("billing-api");
    assert!(
        billing
            .access
            .iter()
            .any(|x| x.principal_id == platform && x.expires_at.is_some())
    );
    let ci = snap
        .service_account_named("ci-deployer")
        .expect("ci-deployer");
    assert!(ci.resource_ids.contains(&prod.id));
    let key_name = format!("lapse-{}", id_of(&key).to_lowercase());
    assert!(
        ci.keys
            .iter()
            .any(|k| k.name == key_name && format!("{:?}", k.status).to_uppercase() == "ACTIVE")
    );

    // ...and gone once the grants lapse.
    for g in [&m, &e, &a, &sa, &key] {
        env.wait_state(&id_of(g), "expired", WITHIN).await;
    }
    let snap = env.snapshot();
    assert!(!env.group_has("oncall", "alice@example.com"));
    assert_eq!(env.groups_named(&eg_name), 0);
    assert!(
        !snap
            .resource_named("billing-api")
            .expect("r")
            .access
            .iter()
            .any(|x| x.principal_id == platform)
    );
    let ci = snap
        .service_account_named("ci-deployer")
        .expect("ci-deployer");
    assert!(
        !ci.resource_ids
            .contains(&snap.resource_named("prod-db").expect("r").id)
    );
    assert!(
        ci.resource_ids
            .contains(&snap.resource_named("staging-db").expect("r").id),
        "pre-existing access kept"
    );
    assert!(
        !ci.keys
            .iter()
            .any(|k| k.name == key_name && format!("{:?}", k.status).to_uppercase() == "ACTIVE")
    );

    // Revocations were on time: the history records lateness per grant.
    for g in [&m, &e, &a, &sa, &key] {
        let shown = env.get(&format!("/v1/grants/{}", id_of(g))).await;
        let late = shown["history"]
            .as_array()
            .expect("history")
            .iter()
            .find(|h| h["event"] == "expired")
            .and_then(|h| h["detail"]["lateness_seconds"].as_f64())
            .expect("expired event with lateness");
        assert!(late < 2.0, "grant {} revoked {late}s late", id_of(g));
    }
    // The token never reaches the database: the SQLite file, or any stored text on PostgreSQL.
    let token = key["token"].as_str().expect("token");
    match &env.scratch {
        None => {
            let db = std::fs::read(env.dir.path().join("lapse.db")).expect("db");
            let wal = std::fs::read(env.dir.path().join("lapse.db-wal")).unwrap_or_default();
            assert!(!contains(&db, token.as_bytes()) && !contains(&wal, token.as_bytes()));
        }
        Some(scratch) => {
            let dump = std::process::Command::new("pg_dump")
                .args(["--data-only", scratch.url()])
                .output()
                .expect("pg_dump");
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            assert!(!dump.stdout.is_empty() && !contains(&dump.stdout, token.as_bytes()));
        }
    }
    assert!(!env.log().contains(token), "token in the log");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_grants_and_prior_access_survive() {
    let mut env = Env::new("").await;
    env.start().await;
    // carol was in oncall before any grant (demo seed).
    assert!(env.group_has("oncall", "carol@example.com"));
    let (_, c) = env
        .grant(membership("oncall", &["carol@example.com"], "2s"))
        .await;
    let (_, short) = env
        .grant(membership("oncall", &["alice@example.com"], "2s"))
        .await;
    let (_, long) = env
        .grant(membership("oncall", &["alice@example.com"], "6s"))
        .await;
    env.wait_state(&id_of(&long), "active", WITHIN).await;
    env.wait_state(&id_of(&short), "expired", WITHIN).await;
    env.wait_state(&id_of(&c), "expired", WITHIN).await;
    assert!(
        env.group_has("oncall", "alice@example.com"),
        "the longer grant still needs alice"
    );
    assert!(
        env.group_has("oncall", "carol@example.com"),
        "access that existed before the grant survives"
    );
    env.wait_state(&id_of(&long), "expired", WITHIN).await;
    assert!(
        !env.group_has("oncall", "alice@example.com"),
        "gone once the last grant ends"
    );
    assert!(env.group_has("oncall", "carol@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_revoke_takes_access_away() {
    let mut env = Env::new("").await;
    env.start().await;
    let (_, g) = env
        .grant(membership("platform", &["dave@example.com"], "1h"))
        .await;
    env.wait_state(&id_of(&g), "active", WITHIN).await;
    assert!(env.group_has("platform", "dave@example.com"));
    let (s, r) = env
        .post(
            &format!("/v1/grants/{}/revoke", id_of(&g)),
            json!({"reason": "done early"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    env.wait_state(&id_of(&g), "revoked", WITHIN).await;
    assert!(!env.group_has("platform", "dave@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_that_expired_while_stopped_are_revoked_first() {
    let mut env = Env::new("").await;
    env.start().await;
    let (_, g) = env
        .grant(membership("oncall", &["erin@example.com"], "2s"))
        .await;
    env.wait_state(&id_of(&g), "active", WITHIN).await;
    let status = env.terminate().expect("was running");
    assert!(
        status.success(),
        "SIGTERM ends lapse with exit 0, got {status:?}"
    );
    let expires: chrono::DateTime<chrono::Utc> =
        g["expires_at"].as_str().expect("exp").parse().expect("ts");
    assert!(
        eventually(Duration::from_secs(10), || async {
            chrono::Utc::now() > expires + chrono::Duration::milliseconds(500)
        })
        .await
    );
    assert!(
        env.group_has("oncall", "erin@example.com"),
        "nothing revoked it while lapse was down"
    );
    env.sim.clear_journal();
    env.start().await;
    let (_, new) = env
        .grant(membership("platform", &["frank@example.com"], "1h"))
        .await;
    env.wait_state(&id_of(&g), "expired", WITHIN).await;
    env.wait_state(&id_of(&new), "active", WITHIN).await;
    let erin = env.user_id("erin@example.com");
    let frank = env.user_id("frank@example.com");
    let writes: Vec<_> = env
        .sim
        .journal()
        .into_iter()
        .filter(|j| j.is_mutation && j.mutation_applied)
        .collect();
    let revoke_at = writes
        .iter()
        .position(|j| j.variables.to_string().contains(&erin))
        .expect("erin's removal");
    let apply_at = writes
        .iter()
        .position(|j| j.variables.to_string().contains(&frank))
        .expect("frank's add");
    assert!(revoke_at < apply_at, "the overdue revocation went first");
    assert!(!env.group_has("oncall", "erin@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_altered_row() {
    let mut env = Env::new("").await;
    env.start().await;
    let (_, g) = env
        .grant(membership("oncall", &["alice@example.com"], "2s"))
        .await;
    env.wait_state(&id_of(&g), "expired", WITHIN).await;
    let v = env.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["rows_checked"].as_u64().expect("n") >= 4);
    // The CLI agrees.
    let out = std::process::Command::new(BIN)
        .args([
            "--url",
            &env.url(),
            "--token",
            &env.token,
            "audit",
            "verify",
        ])
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.terminate();

    // Tamper with row 3 using the database's shell, getting past the guard triggers first.
    if let Some(scratch) = &env.scratch {
        let out = std::process::Command::new("psql")
            .arg(scratch.url())
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "ALTER TABLE history DISABLE TRIGGER USER",
                "-c",
                "UPDATE history SET actor = 'mallory' WHERE seq = 3",
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        tamper_sqlite(&env.dir.path().join("lapse.db"));
    }

    env.start().await;
    let v = env.get("/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_broken"]["seq"], 3, "{v}");
    let out = std::process::Command::new(BIN)
        .args([
            "--url",
            &env.url(),
            "--token",
            &env.token,
            "audit",
            "verify",
        ])
        .output()
        .expect("cli");
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains('3'), "names the row: {text}");
}

fn cli(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(["--url", &env.url(), "--token", &env.token])
        .args(args)
        .output()
        .expect("run the CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_a_grant_through_its_life() {
    let mut env = Env::new("").await;
    env.start().await;
    let (code, out, err) = cli(
        &env,
        &[
            "grant",
            "--kind",
            "service-key",
            "--service-account",
            "ci-deployer",
            "--for",
            "1h",
            "--reason",
            "INC-7",
            "--wait",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("service key token (shown once"),
        "the token is printed once: {out}"
    );
    assert!(out.contains("active"), "{out}");

    let (code, out, err) = cli(
        &env,
        &[
            "-o",
            "json",
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "alice@example.com",
            "--for",
            "1h",
            "--reason",
            "INC-8",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let g: serde_json::Value = serde_json::from_str(&out).expect("json output");
    let id = id_of(&g);
    env.wait_state(&id, "active", WITHIN).await;

    let (code, out, _) = cli(&env, &["-o", "csv", "list"]);
    assert_eq!(code, 0);
    let mut rows = csv::Reader::from_reader(out.as_bytes());
    let headers = rows.headers().expect("header").clone();
    assert!(
        headers.iter().any(|h| h == "id") && headers.iter().any(|h| h == "state"),
        "{headers:?}"
    );
    assert_eq!(rows.records().count(), 2, "{out}");
    assert!(out.contains(&id));

    let (code, out, _) = cli(&env, &["show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("created"), "{out}");

    let (code, out, err) = cli(&env, &["revoke", &id, "--reason", "done"]);
    assert_eq!(code, 0, "{out}{err}");
    env.wait_state(&id, "revoked", WITHIN).await;
    let (code, out, _) = cli(
        &env,
        &["-o", "csv", "history", "--user", "alice@example.com"],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("revoke-requested") && out.contains("revoked"),
        "{out}"
    );

    // Bad input: exit 5 (refused), the field and the fix on stderr, nothing stored.
    let (code, out, err) = cli(
        &env,
        &[
            "grant",
            "--kind",
            "group-membership",
            "--group",
            "oncall",
            "--user",
            "bob@example.com",
            "--for",
            "0",
            "--reason",
            "x",
        ],
    );
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("duration") && err.contains("fix"), "{err}");
    let (_, out, _) = cli(&env, &["-o", "csv", "list"]);
    assert_eq!(
        csv::Reader::from_reader(out.as_bytes()).records().count(),
        2
    );
}

/// Changes row 3's actor with the sqlite3 shell, dropping the history's triggers first.
fn tamper_sqlite(db: &std::path::Path) {
    let triggers = std::process::Command::new("sqlite3")
        .arg(db)
        .arg("SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='history';")
        .output()
        .expect("sqlite3");
    let mut sql = String::new();
    for t in String::from_utf8_lossy(&triggers.stdout).lines() {
        sql.push_str(&format!("DROP TRIGGER {t};"));
    }
    sql.push_str("UPDATE history SET actor = 'mallory' WHERE seq = 3;");
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(&sql)
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
