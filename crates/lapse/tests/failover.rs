//! Two real `lapse serve` processes on one real PostgreSQL database and one real sim: one
//! leads, the other stands by and serves the API too; a killed leader is replaced within the
//! lease, a paused one sends nothing once it wakes up after a new epoch began, and steps down;
//! submissions to both at once all land, and the standby's wake the leader at once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use common::{BIN, Env, eventually, id_of, membership};
use lapse_store::scratch::ScratchDb;
use lapse_store::{HistoryFilter, OpenMode, Store};

const LEASE_SECS: u64 = 2;

/// The second daemon: the same settings but its node name, its own port file and log.
struct Standby {
    child: Option<Child>,
    port_file: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Standby {
    fn spawn(primary_config: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("lapse.toml");
        let text = std::fs::read_to_string(primary_config).expect("config");
        std::fs::write(&config, text.replace("node = \"a\"", "node = \"b\"")).expect("config");
        let port_file = dir.path().join("lapse.port");
        let log = dir.path().join("lapse.log");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--port-file")
            .arg(&port_file)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn the second lapse serve");
        Self {
            child: Some(child),
            port_file,
            log,
            _dir: dir,
        }
    }

    fn port(&self) -> Option<u16> {
        std::fs::read_to_string(&self.port_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A sim and daemon `a` on a fresh PostgreSQL database; `None` where PostgreSQL is absent
/// outside CI.
async fn primary() -> Option<(Env, ScratchDb)> {
    primary_with("").await
}

/// [`primary`] with more settings (TOML, merged over the test defaults).
async fn primary_with(more: &str) -> Option<(Env, ScratchDb)> {
    let scratch = ScratchDb::create().await?;
    // The password, when the test server wants one, goes where a daemon's goes: a file.
    let (url, password) = scratch.url_and_password();
    let pw_line = match password {
        Some(pw) => {
            let path = std::env::temp_dir().join(format!("{}.password", scratch.name()));
            std::fs::write(&path, pw).expect("password file");
            format!("password_file = \"{}\"\n", path.display())
        }
        None => String::new(),
    };
    let extra = format!(
        "[database]\nurl = \"{url}\"\n{pw_line}[ha]\nlease = \"{LEASE_SECS}s\"\nnode = \"a\"\n{more}"
    );
    let env = Env::new(&extra).await;
    Some((env, scratch))
}

/// `/readyz` of the daemon on `port`: its role (`leader` or `standby`) and readiness.
async fn readiness(port: u16) -> Option<(String, bool)> {
    let v: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((v["role"].as_str()?.to_owned(), v["ready"].as_bool()?))
}

/// The standby's port once it serves the API, checking that it says it stands by.
async fn serving_standby(standby: &Standby) -> u16 {
    let up = eventually(Duration::from_secs(30), || {
        let p = standby.port();
        async move {
            match p {
                Some(p) => readiness(p).await.is_some(),
                None => false,
            }
        }
    })
    .await;
    assert!(up, "the standby does not serve; log:\n{}", standby.log());
    let port = standby.port().unwrap_or_default();
    assert_eq!(
        readiness(port).await,
        Some(("standby".to_owned(), true)),
        "log:\n{}",
        standby.log()
    );
    port
}

/// Waits until the daemon on `port` says it leads.
async fn leads(port: u16, within: Duration) -> bool {
    eventually(within, || async move {
        readiness(port)
            .await
            .is_some_and(|(role, ready)| role == "leader" && ready)
    })
    .await
}

async fn state_on(port: u16, token: &str, id: &str) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/grants/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get grant")
        .json()
        .await
        .expect("json");
    v["grant"]["state"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_and_its_grants_still_end() {
    let Some((mut env, scratch)) = primary().await else {
        return;
    };
    env.start().await;
    let standby = Standby::spawn(&env.config);
    // The standby serves the API at once and waits for the lease.
    let port = serving_standby(&standby).await;
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    assert_eq!(readiness(port).await, Some(("standby".to_owned(), true)));

    let (status, body) = env
        .grant(membership("oncall", &["alice@example.com"], "6s"))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);
    env.wait_state(&id, "active", Duration::from_secs(10)).await;
    assert!(env.group_has("oncall", "alice@example.com"));

    let killed_at = Utc::now();
    env.kill9();
    let up = leads(port, Duration::from_secs(LEASE_SECS + 10)).await;
    assert!(up, "the standby never took over; log:\n{}", standby.log());

    // The takeover, as the database recorded it: within the lease and one second.
    let store = Store::open_postgres(scratch.url(), None, OpenMode::Existing)
        .await
        .expect("store");
    let elections: Vec<_> = store
        .history(&HistoryFilter::default())
        .await
        .expect("history")
        .into_iter()
        .filter(|r| r.event == "leader-elected")
        .collect();
    assert_eq!(elections.len(), 2, "{elections:?}");
    assert_eq!(elections[1].detail["holder"], "b");
    let took = (elections[1].at - killed_at).to_std().unwrap_or_default();
    println!("takeover {took:?} after the kill (lease {LEASE_SECS}s)");
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 1),
        "took over {took:?} after the kill"
    );

    // The grant the dead leader applied is revoked by the new one.
    let token = env.token.clone();
    let ended = eventually(Duration::from_secs(20), || {
        let (token, id) = (token.clone(), id.clone());
        async move { state_on(port, &token, &id).await == "expired" }
    })
    .await;
    assert!(ended, "log:\n{}", standby.log());
    assert!(!env.group_has("oncall", "alice@example.com"));
    let report = store.verify_history().await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_sends_nothing_after_the_new_epoch_and_steps_down() {
    let Some((mut env, scratch)) = primary().await else {
        return;
    };
    env.start().await;
    let standby = Standby::spawn(&env.config);
    let port = serving_standby(&standby).await;

    let (status, body) = env
        .grant(membership("oncall", &["alice@example.com"], "3s"))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);
    env.wait_state(&id, "active", Duration::from_secs(10)).await;

    // Paused past its lease, with the grant falling due while it sleeps.
    env.signal("STOP");
    let up = leads(port, Duration::from_secs(LEASE_SECS + 10)).await;
    assert!(up, "the standby never took over; log:\n{}", standby.log());
    let token = env.token.clone();
    let ended = eventually(Duration::from_secs(20), || {
        let (token, id) = (token.clone(), id.clone());
        async move { state_on(port, &token, &id).await == "expired" }
    })
    .await;
    assert!(ended, "log:\n{}", standby.log());
    assert!(!env.group_has("oncall", "alice@example.com"));

    // Woken up: its loop still believes the grant is live, and must not act on it.
    let woke_at = Utc::now();
    env.signal("CONT");
    let status = env.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the old leader did not step down: {status:?}; log:\n{}",
        env.log()
    );
    assert!(env.log().contains("stepped down"), "log:\n{}", env.log());
    let late: Vec<_> = env
        .sim
        .journal()
        .into_iter()
        .filter(|e| e.is_mutation && e.at >= woke_at)
        .collect();
    assert!(
        late.is_empty(),
        "writes reached the sim after the old leader woke: {late:?}"
    );

    let store = Store::open_postgres(scratch.url(), None, OpenMode::Existing)
        .await
        .expect("store");
    assert!(store.verify_history().await.expect("verify").is_ok());
    store.close().await;
}

/// One client's submissions to the daemon on `port`, each with its own idempotency key; the
/// last is sent again to `other`, which must answer with the same grant. Each acknowledged
/// grant's id, with the status it was answered with.
async fn client(
    port: u16,
    other: u16,
    token: String,
    name: String,
    each: usize,
) -> Vec<(u16, String)> {
    let http = reqwest::Client::new();
    let send = |port: u16, key: String| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let body = serde_json::json!({
                "kind": "ephemeral-group", "users": ["bob@example.com"], "resources": ["prod-db"],
                "duration": "10m", "reason": format!("load {key}"),
            });
            let r = http
                .post(format!("http://127.0.0.1:{port}/v1/grants"))
                .bearer_auth(&token)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await
                .expect("submit");
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            (status, v["id"].as_str().unwrap_or_default().to_owned(), v)
        }
    };
    let mut acked = Vec::new();
    for i in 0..each {
        let (status, id, v) = send(port, format!("{name}-{i}")).await;
        assert_eq!(status, 201, "{v}");
        acked.push((status, id));
    }
    let last = format!("{name}-{}", each - 1);
    let (status, id, v) = send(other, last).await;
    assert_eq!(status, 200, "a replay on the other daemon: {v}");
    assert_eq!(Some(&id), acked.last().map(|(_, id)| id), "{v}");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_daemons_take_submissions_at_once_and_the_standbys_wake_the_leader() {
    // The longest tick the settings allow, and no sweep during the test: without the standby's
    // announcement the leader would find a grant submitted there only at its next tick.
    const TICK: Duration = Duration::from_secs(1);
    let more = "[engine]\ntick = \"1s\"\nsweep_interval = \"10m\"\n";
    let Some((mut env, scratch)) = primary_with(more).await else {
        return;
    };
    env.start().await;
    let standby = Standby::spawn(&env.config);
    let b = serving_standby(&standby).await;
    let a = env.port;
    assert_eq!(readiness(a).await, Some(("leader".to_owned(), true)));

    const CLIENTS: usize = 16;
    const EACH: usize = 4;
    let mut clients = tokio::task::JoinSet::new();
    for (port, other, daemon) in [(a, b, "a"), (b, a, "b")] {
        for c in 0..CLIENTS {
            let token = env.token.clone();
            clients.spawn(client(port, other, token, format!("{daemon}{c}"), EACH));
        }
    }
    let mut ids = Vec::new();
    while let Some(done) = clients.join_next().await {
        ids.extend(done.expect("client").into_iter().map(|(_, id)| id));
    }
    let total = 2 * CLIENTS * EACH;
    let unique: std::collections::HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), total, "acknowledged grants share an id");

    // Every acknowledged grant is stored, once, with one `created` row.
    let store = Store::open_postgres(scratch.url(), None, OpenMode::Existing)
        .await
        .expect("store");
    let stored = store
        .list_grants(&lapse_store::GrantFilter::default())
        .await
        .expect("grants");
    assert_eq!(stored.len(), total);
    let stored_ids: std::collections::HashSet<_> =
        stored.iter().map(|g| g.id.to_string()).collect();
    assert_eq!(stored_ids, unique);
    let created = store
        .history(&HistoryFilter::default())
        .await
        .expect("history")
        .into_iter()
        .filter(|r| r.event == "created")
        .count();
    assert_eq!(created, total);

    // The leader applies them all: one group in the sim for each.
    let token = env.token.clone();
    let all_active = eventually(Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            store
                .list_grants(&lapse_store::GrantFilter::default())
                .await
                .is_ok_and(|gs| gs.iter().all(|g| g.state.as_str() == "active"))
        }
    })
    .await;
    assert!(all_active, "log:\n{}", common::tail(&env.log()));
    assert_eq!(env.lapse_groups(), total);
    for port in [a, b] {
        let out = Command::new(BIN)
            .env_remove("LAPSE_TOKEN")
            .env_remove("LAPSE_URL")
            .args([
                "--url",
                &format!("http://127.0.0.1:{port}"),
                "--token",
                &token,
            ])
            .args(["audit", "verify"])
            .output()
            .expect("lapse audit verify");
        assert!(
            out.status.success(),
            "audit verify on {port}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Grants to the standby alone, one at a time: the leader has applied each one (its `active`
    // row) long before its next tick could have found it. Were it woken by the tick, the delays
    // would be spread over the whole second.
    const ALONE: usize = 8;
    let http = reqwest::Client::new();
    let mut delays = Vec::new();
    for i in 0..ALONE {
        let r = http
            .post(format!("http://127.0.0.1:{b}/v1/grants"))
            .bearer_auth(&token)
            .json(&membership(
                "oncall",
                &["alice@example.com"],
                &format!("{}m", 10 + i),
            ))
            .send()
            .await
            .expect("submit");
        assert_eq!(r.status().as_u16(), 201);
        let id = id_of(&r.json().await.expect("json"));
        let active = eventually(Duration::from_secs(10), || {
            let (token, id) = (token.clone(), id.clone());
            async move { state_on(b, &token, &id).await == "active" }
        })
        .await;
        assert!(active, "leader log:\n{}", common::tail(&env.log()));
        let gid = id.parse().expect("grant id");
        let rows = store
            .history(&HistoryFilter {
                grant: Some(gid),
                ..HistoryFilter::default()
            })
            .await
            .expect("history");
        let at = |event: &str| {
            rows.iter()
                .find(|r| r.event == event)
                .map(|r| r.at)
                .unwrap_or_else(|| panic!("no {event} row: {rows:?}"))
        };
        let delay = (at("active") - at("created")).to_std().unwrap_or_default();
        delays.push(delay);
    }
    delays.sort();
    println!("standby submission to applied by the leader: {delays:?} (tick {TICK:?})");
    // Were the leader woken by its tick alone, a delay would fall anywhere in the tick, so only
    // about one in three under a third of it; a busy machine may hold back one or two, so three
    // in four must be under a third of the tick and none as late as nine tenths of it.
    let most = delays[ALONE * 3 / 4 - 1];
    let worst = delays[ALONE - 1];
    assert!(
        most < TICK / 3 && worst < TICK * 9 / 10,
        "the leader took {most:?} (three in four) and {worst:?} (worst) to act on a standby's \
         grant: it was not woken ({delays:?})"
    );
    assert!(env.group_has("oncall", "alice@example.com"));

    // A revocation asked of the standby is recorded there and carried out by the leader.
    let r = http
        .post(format!("http://127.0.0.1:{b}/v1/grants/{}/revoke", ids[0]))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "reason": "done early" }))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    let revoked = eventually(Duration::from_secs(10), || {
        let (token, id) = (token.clone(), ids[0].clone());
        async move { state_on(b, &token, &id).await == "revoked" }
    })
    .await;
    assert!(revoked, "leader log:\n{}", common::tail(&env.log()));
    assert_eq!(env.lapse_groups(), total - 1);
    let rows = store
        .history(&HistoryFilter {
            grant: Some(ids[0].parse().expect("grant id")),
            ..HistoryFilter::default()
        })
        .await
        .expect("history");
    let requested = rows.iter().find(|r| r.event == "revoke-requested");
    assert_eq!(
        requested.map(|r| r.actor.as_str()),
        Some("oncall-bot"),
        "{rows:?}"
    );

    // A service key's token would live in the leader's memory only: the standby refuses the
    // grant and names the leader, and stores nothing.
    let before = store
        .list_grants(&lapse_store::GrantFilter::default())
        .await
        .expect("grants")
        .len();
    let r = http
        .post(format!("http://127.0.0.1:{b}/v1/grants"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "1h", "reason": "INC-9"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status().as_u16(), 421);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "not_leader", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`a`")),
        "{v}"
    );
    let after = store
        .list_grants(&lapse_store::GrantFilter::default())
        .await
        .expect("grants")
        .len();
    assert_eq!(before, after);
    let (status, v) = env
        .grant(serde_json::json!({"kind": "service-key", "service_account": "ci-deployer", "duration": "1h", "reason": "INC-9"}))
        .await;
    assert_eq!(status, 201, "the leader takes it: {v}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_submitted_to_the_standby_can_be_revoked_at_the_leader_at_once() {
    let Some((mut env, _scratch)) = primary().await else {
        return;
    };
    env.start().await;
    let standby = Standby::spawn(&env.config);
    let port = serving_standby(&standby).await;
    let http = reqwest::Client::new();
    // Each revocation is sent the moment the standby acknowledged the grant, before the leader
    // has necessarily read it in: it must be taken, never refused as ended.
    let mut ids = Vec::new();
    for i in 0..10 {
        let r = http
            .post(format!("http://127.0.0.1:{port}/v1/grants"))
            .bearer_auth(&env.token)
            .json(&serde_json::json!({
                "kind": "group-membership", "group": "oncall", "users": ["alice@example.com"],
                "duration": "10m", "reason": format!("INC-{i}"),
            }))
            .send()
            .await
            .expect("submit");
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(status, 201, "{v}");
        let id = id_of(&v);
        let (status, v) = env
            .post(
                &format!("/v1/grants/{id}/revoke"),
                serde_json::json!({"reason": "done"}),
            )
            .await;
        assert_eq!(status, 200, "revoking {id} at the leader: {v}");
        ids.push(id);
    }
    for id in &ids {
        env.wait_state(id, "revoked", Duration::from_secs(15)).await;
    }
    let gone = eventually(Duration::from_secs(10), || async {
        !env.group_has("oncall", "alice@example.com")
    })
    .await;
    assert!(gone, "the access was left in place; log:\n{}", env.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_loop_fails_gives_the_lease_up_and_exits() {
    let Some((mut env, scratch)) = primary().await else {
        return;
    };
    env.start().await;
    let standby = Standby::spawn(&env.config);
    let port = serving_standby(&standby).await;

    // Every change of a stored grant fails for a while: the leader's next commit fails.
    let db = sqlx::PgPool::connect(scratch.url()).await.expect("connect");
    for q in [
        "CREATE FUNCTION lapse_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
        "CREATE TRIGGER lapse_test_refuse BEFORE UPDATE ON grants FOR EACH ROW EXECUTE FUNCTION lapse_test_refuse()",
    ] {
        sqlx::query(q).execute(&db).await.expect(q);
    }
    let (status, body) = env
        .grant(membership("oncall", &["alice@example.com"], "10m"))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);

    // Its loop ended: it is not a standby holding the lease, it steps down.
    let status = env.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "the leader without a loop did not exit: {status:?}; log:\n{}",
        env.log()
    );
    assert!(env.log().contains("stepped down"), "log:\n{}", env.log());
    sqlx::query("DROP TRIGGER lapse_test_refuse ON grants")
        .execute(&db)
        .await
        .expect("drop trigger");
    db.close().await;

    // The lease was given up, so the standby leads well before it would have run out, and
    // applies the grant.
    let up = leads(port, Duration::from_secs(LEASE_SECS + 10)).await;
    assert!(up, "the standby never took over; log:\n{}", standby.log());
    let token = env.token.clone();
    let active = eventually(Duration::from_secs(20), || {
        let (token, id) = (token.clone(), id.clone());
        async move { state_on(port, &token, &id).await == "active" }
    })
    .await;
    assert!(active, "log:\n{}", standby.log());
}
