//! Two real `lapse serve` processes on one real PostgreSQL database and one real sim: one
//! leads, the other stands by; a killed leader is replaced within the lease, and a paused one
//! sends nothing once it wakes up after a new epoch began, and steps down.

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
        "[database]\nurl = \"{url}\"\n{pw_line}[ha]\nlease = \"{LEASE_SECS}s\"\nnode = \"a\"\n"
    );
    let env = Env::new(&extra).await;
    Some((env, scratch))
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
    // The standby waits for the lease: it binds nothing, so writes no port.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 1)).await;
    assert_eq!(standby.port(), None, "log:\n{}", standby.log());

    let (status, body) = env
        .grant(membership("oncall", &["alice@example.com"], "6s"))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);
    env.wait_state(&id, "active", Duration::from_secs(10)).await;
    assert!(env.group_has("oncall", "alice@example.com"));

    let killed_at = Utc::now();
    env.kill9();
    let up = eventually(Duration::from_secs(LEASE_SECS + 10), || {
        let p = standby.port();
        async move { p.is_some() }
    })
    .await;
    assert!(up, "the standby never took over; log:\n{}", standby.log());
    let port = standby.port().unwrap_or_default();

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

    let (status, body) = env
        .grant(membership("oncall", &["alice@example.com"], "3s"))
        .await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);
    env.wait_state(&id, "active", Duration::from_secs(10)).await;

    // Paused past its lease, with the grant falling due while it sleeps.
    env.signal("STOP");
    let up = eventually(Duration::from_secs(LEASE_SECS + 10), || {
        let p = standby.port();
        async move { p.is_some() }
    })
    .await;
    assert!(up, "the standby never took over; log:\n{}", standby.log());
    let port = standby.port().unwrap_or_default();
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
