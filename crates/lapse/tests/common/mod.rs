//! Test harness: a real twingate-sim on loopback, a real `lapse serve` process with a fresh
//! SQLite file, and helpers that poll with deadlines.
//!
//! With `LAPSE_E2E_STORE=postgres` every daemon gets a fresh PostgreSQL database instead
//! (`lapse_store::scratch`), so that one suite runs on both backends; `.ci/run` runs the
//! end-to-end suites both ways.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use twingate_sim::{SimConfig, SimHandle, StateSnapshot};

pub const BIN: &str = env!("CARGO_BIN_EXE_lapse");

pub struct Env {
    pub sim: SimHandle,
    /// The daemon's PostgreSQL database, under `LAPSE_E2E_STORE=postgres`; dropped after it.
    pub scratch: Option<lapse_store::scratch::ScratchDb>,
    pub dir: TempDir,
    pub config: PathBuf,
    pub port: u16,
    pub token: String,
    child: Option<Child>,
    pub http: reqwest::Client,
}

impl Env {
    /// A sim with the demo seed and a daemon configured against it (not yet started).
    pub async fn new(extra: &str) -> Env {
        let sim = twingate_sim::start(SimConfig::default())
            .await
            .expect("sim");
        Self::with_sim(sim, extra).await
    }

    pub async fn with_sim(sim: SimHandle, extra: &str) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("twingate.key");
        std::fs::write(&key, twingate_sim::DEMO_ADMIN_KEY).expect("key");
        let config = dir.path().join("lapse.toml");
        let base = format!(
            r#"
[server]
listen = "127.0.0.1:0"
[database]
path = "{db}"
[twingate]
base_url = "{url}"
api_key_file = "{key}"
timeout = "3s"
reads_per_minute = 100000
writes_per_minute = 100000
[engine]
tick = "200ms"
sweep_interval = "2s"
sweep_reads_per_minute = 100000
retry_base = "200ms"
retry_cap = "2s"
[log]
filter = "info,lapse_engine=debug"
"#,
            db = dir.path().join("lapse.db").display(),
            url = sim.base_url(),
            key = key.display(),
        );
        let own_url = extra
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("database")?.get("url").cloned())
            .is_some();
        let scratch = if !own_url && std::env::var("LAPSE_E2E_STORE").is_ok_and(|v| v == "postgres")
        {
            lapse_store::scratch::ScratchDb::create().await
        } else {
            None
        };
        let mut text = merge(&base, extra);
        if let Some(db) = &scratch {
            let (url, password) = db.url_and_password();
            let mut section = format!("[database]\nurl = \"{url}\"\n");
            if let Some(pw) = password {
                let file = dir.path().join("database.password");
                std::fs::write(&file, pw).expect("password file");
                section.push_str(&format!("password_file = \"{}\"\n", file.display()));
            }
            text = merge(&text, &section);
        }
        std::fs::write(&config, text).expect("config");
        let out = Command::new(BIN)
            .args([
                "token",
                "create",
                "--name",
                "oncall-bot",
                "--role",
                // Direct grants of targets no list governs: an admin's, or an operator's within
                // a grant policy.
                "admin",
                "--config",
            ])
            .arg(&config)
            .output()
            .expect("token create");
        assert!(
            out.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("token line")
            .trim()
            .to_owned();
        assert!(
            token.starts_with("lapse_"),
            "unexpected token output: {token}"
        );
        Env {
            sim,
            scratch,
            dir,
            config,
            port: 0,
            token,
            child: None,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where `lapse serve --port-file` writes the port it bound.
    pub fn port_file(&self) -> PathBuf {
        self.dir.path().join("lapse.port")
    }

    /// Waits for the daemon just started to write its bound port, and remembers it.
    pub async fn read_port(&mut self) -> u16 {
        let file = self.port_file();
        let mut port = None;
        let found = eventually(Duration::from_secs(30), || {
            let got = std::fs::read_to_string(&file)
                .ok()
                .and_then(|p| p.trim().parse::<u16>().ok());
            port = got;
            async move { got.is_some() }
        })
        .await;
        assert!(
            found,
            "lapse wrote no port to {}; log:\n{}",
            file.display(),
            self.log()
        );
        self.port = port.unwrap_or_default();
        self.port
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("lapse.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Start `lapse serve` and wait until it answers /readyz.
    pub async fn start(&mut self) {
        self.start_with(&[]).await
    }

    /// Start `lapse serve` with extra environment variables.
    pub async fn start_with(&mut self, vars: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log");
        // A restart binds a fresh port; the file of the last run must not be read for it.
        let _ = std::fs::remove_file(self.port_file());
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--port-file")
            .arg(self.port_file())
            .env_remove("RUST_LOG")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn lapse serve");
        self.child = Some(child);
        self.read_port().await;
        let url = format!("{}/readyz", self.url());
        let http = self.http.clone();
        let ok = eventually(Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                // Ready and leading: on PostgreSQL a daemon serves (as a standby) before it
                // has taken the lease, and the tests that start one daemon mean it to lead.
                let Ok(r) = http.get(&url).send().await else {
                    return false;
                };
                r.status().is_success()
                    && r.json::<Value>().await.is_ok_and(|v| v["role"] == "leader")
            }
        })
        .await;
        assert!(ok, "lapse did not become ready; log:\n{}", self.log());
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Wait for the daemon to exit by itself (a crash point); its status.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let status = self.child.as_mut()?.try_wait().ok()?;
            if let Some(s) = status {
                self.child = None;
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().ok()
    }

    pub async fn grant(&self, body: Value) -> (u16, Value) {
        self.post("/v1/grants", body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{}", self.url(), path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{}", self.url(), path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        r.json().await.expect("json")
    }

    pub async fn state_of(&self, id: &str) -> String {
        self.get(&format!("/v1/grants/{id}")).await["grant"]["state"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Wait until the grant reaches `state`.
    pub async fn wait_state(&self, id: &str, state: &str, within: Duration) {
        let ok = eventually(within, || async { self.state_of(id).await == state }).await;
        assert!(
            ok,
            "grant {id} did not reach {state} (now {}); log tail:\n{}",
            self.state_of(id).await,
            tail(&self.log())
        );
    }

    pub fn snapshot(&self) -> StateSnapshot {
        self.sim.state()
    }

    pub fn user_id(&self, email: &str) -> String {
        self.snapshot()
            .user_by_email(email)
            .expect("user")
            .id
            .clone()
    }

    pub fn group_has(&self, group: &str, email: &str) -> bool {
        let s = self.snapshot();
        let uid = s.user_by_email(email).expect("user").id.clone();
        s.groups
            .iter()
            .filter(|g| g.name == group)
            .any(|g| g.user_ids.contains(&uid))
    }

    pub fn groups_named(&self, name: &str) -> usize {
        self.snapshot()
            .groups
            .iter()
            .filter(|g| g.name == name)
            .count()
    }

    pub fn lapse_groups(&self) -> usize {
        self.snapshot()
            .groups
            .iter()
            .filter(|g| g.name.starts_with("lapse-"))
            .count()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Merge extra TOML tables into the base config (extra keys win).
fn merge(base: &str, extra: &str) -> String {
    let mut b: toml::Table = base.parse().expect("base toml");
    let e: toml::Table = extra.parse().expect("extra toml");
    for (k, v) in e {
        match (b.get_mut(&k), v) {
            (Some(toml::Value::Table(bt)), toml::Value::Table(et)) => bt.extend(et),
            (_, v) => {
                b.insert(k, v);
            }
        }
    }
    toml::to_string(&b).expect("toml")
}

/// Poll `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn membership(group: &str, users: &[&str], ttl: &str) -> Value {
    json!({ "kind": "group-membership", "group": group, "users": users, "duration": ttl, "reason": "INC-4211" })
}

pub fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

impl Env {
    /// Sends `signal` (e.g. `HUP`) to the running daemon.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("daemon running").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{signal} failed");
    }
}

impl Env {
    /// Creates a token on the daemon's database with `lapse token create`; the token.
    pub fn create_token(&self, name: &str, role: &str, identity: Option<&str>) -> String {
        let mut cmd = Command::new(BIN);
        cmd.args(["token", "create", "--name", name, "--role", role]);
        if let Some(identity) = identity {
            cmd.args(["--identity", identity]);
        }
        let out = cmd
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("token create");
        assert!(
            out.status.success(),
            "token create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("token line")
            .trim()
            .to_owned()
    }

    /// Runs the CLI against the daemon with `token` (none when `None`): exit code, stdout, stderr.
    pub fn cli_as(&self, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
        self.cli_with(token, &[], args)
    }

    /// As [`Env::cli_as`], with extra environment variables (e.g. `COLUMNS`).
    pub fn cli_with(
        &self,
        token: Option<&str>,
        vars: &[(&str, &str)],
        args: &[&str],
    ) -> (i32, String, String) {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("LAPSE_TOKEN")
            .env_remove("LAPSE_URL")
            .env_remove("COLUMNS")
            .envs(vars.iter().copied())
            .args(["--url", &self.url()]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let out = cmd.args(args).output().expect("run the CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The `[access]` settings of a daemon that loads the access list shipped in `deploy/` and no
/// grant policy; `dir` receives both directories.
pub fn shipped_list_settings(dir: &std::path::Path) -> String {
    let lists = dir.join("access-lists.d");
    let policies = dir.join("grant-policies.d");
    std::fs::create_dir_all(&lists).expect("lists dir");
    std::fs::create_dir_all(&policies).expect("policies dir");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/access-lists.d");
    for entry in std::fs::read_dir(shipped).expect("deploy/access-lists.d") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, lists.join(path.file_name().expect("name"))).expect("copy list");
    }
    format!(
        "[access]\nlists_dir = {:?}\npolicies_dir = {:?}\n",
        lists.display().to_string(),
        policies.display().to_string()
    )
}
