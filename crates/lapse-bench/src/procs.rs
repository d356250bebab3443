//! The two real processes: a `twingate-sim` binary and a `lapse serve` daemon, started on
//! loopback, talked to over HTTP, and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use twingate_sim::{JournalEntry, StateSnapshot};

/// The API key lapse uses against the sim, and the one the baseline job uses.
pub const LAPSE_KEY: &str = "bench-lapse-key";
pub const BASELINE_KEY: &str = "bench-baseline-key";

/// Where the binaries are.
#[derive(Debug, Clone)]
pub struct Bins {
    pub lapse: PathBuf,
    pub sim: PathBuf,
}

impl Bins {
    /// Explicit paths win; otherwise the binaries next to this one (same target profile).
    pub fn locate(lapse: Option<PathBuf>, sim: Option<PathBuf>) -> anyhow::Result<Bins> {
        let here = std::env::current_exe().context("finding this executable")?;
        let dir = here.parent().map(Path::to_path_buf).unwrap_or_default();
        let lapse = lapse.unwrap_or_else(|| dir.join("lapse"));
        let sim = sim.unwrap_or_else(|| dir.join("twingate-sim"));
        for b in [&lapse, &sim] {
            if !b.is_file() {
                bail!(
                    "{} is missing; build it first: `cargo build --release -p lapse -p twingate-sim` (or pass --lapse-bin/--sim-bin)",
                    b.display()
                );
            }
        }
        Ok(Bins { lapse, sim })
    }
}

/// Poll `check` every `every` until it returns `Some` or `within` passes.
pub async fn poll<T, F, Fut>(within: Duration, every: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running `twingate-sim` process.
pub struct Sim {
    _child: Child,
    _stdout: BufReader<ChildStdout>,
    pub url: String,
    http: reqwest::Client,
}

impl Sim {
    /// Start the binary on a free loopback port with `seed` and extra flags; wait for its banner.
    pub async fn start(
        bin: &Path,
        seed: &Path,
        flags: &[String],
        log: &Path,
    ) -> anyhow::Result<Sim> {
        let log = std::fs::File::create(log)?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(seed)
            .args(flags)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("sim stdout")?;
        let mut reader = BufReader::new(stdout);
        let url = tokio::time::timeout(Duration::from_secs(60), async {
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).await? == 0 {
                    bail!("twingate-sim exited before it was listening");
                }
                if let Some(u) = line.trim().strip_prefix("twingate-sim listening on ") {
                    return Ok(u.to_owned());
                }
            }
        })
        .await
        .context("waiting for twingate-sim to listen")??;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Sim {
            _child: child,
            _stdout: reader,
            url,
            http,
        })
    }

    pub async fn journal(&self) -> anyhow::Result<Vec<JournalEntry>> {
        let r = self
            .http
            .get(format!("{}/_sim/journal", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }

    pub async fn clear_journal(&self) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/_sim/journal", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn state(&self) -> anyhow::Result<StateSnapshot> {
        let r = self
            .http
            .get(format!("{}/_sim/state", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }

    /// Seconds the sim's clock is ahead of the wall clock.
    pub async fn clock_offset(&self) -> anyhow::Result<f64> {
        let r: Value = self
            .http
            .get(format!("{}/_sim/clock", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(r["offset_seconds"].as_f64().unwrap_or(0.0))
    }

    /// One GraphQL request with `key`, as any client of the Admin API would send it.
    pub async fn graphql(
        &self,
        key: &str,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/api/graphql/", self.url))
            .header("X-API-KEY", key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }
}

/// lapse settings a scenario may change; everything else is lapse's default.
#[derive(Debug, Clone)]
pub struct LapseOpts {
    pub reads_per_minute: u32,
    pub writes_per_minute: u32,
    pub ephemeral_backstop: bool,
    pub log_filter: String,
    /// `engine.sweep_interval` when set (the daemon's default otherwise).
    pub sweep_interval: Option<String>,
    /// A PostgreSQL store (`database.url`) instead of the SQLite file, with its password file.
    pub database_url: Option<(String, Option<PathBuf>)>,
    /// `ha.lease` in seconds and `ha.node`.
    pub ha: Option<(u64, String)>,
    /// The admin token's name (two daemons on one database need two).
    pub token_name: String,
}

impl Default for LapseOpts {
    fn default() -> Self {
        // The sim runs without a rate limit in most scenarios, so lapse's own budget is lifted to
        // match; the budget scenario sets both to Twingate's numbers.
        Self {
            reads_per_minute: 1_000_000,
            writes_per_minute: 1_000_000,
            ephemeral_backstop: true,
            log_filter: "info".into(),
            sweep_interval: None,
            database_url: None,
            ha: None,
            token_name: "bench".into(),
        }
    }
}

/// A `lapse serve` process with its own state directory, config and admin token.
pub struct Lapse {
    bin: PathBuf,
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Lapse {
    /// Write the config (against `sim_url`) and create an admin token; does not start.
    pub async fn prepare(
        bin: &Path,
        dir: &Path,
        sim_url: &str,
        opts: &LapseOpts,
    ) -> anyhow::Result<Lapse> {
        let port = free_port()?;
        let key = dir.join("twingate.key");
        std::fs::write(&key, LAPSE_KEY)?;
        let config = dir.join("lapse.toml");
        let mut lapse = Lapse {
            bin: bin.to_owned(),
            child: None,
            dir: dir.to_owned(),
            config,
            url: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .pool_max_idle_per_host(64)
                .build()?,
        };
        lapse.write_config(port, sim_url, opts)?;
        let out = Command::new(bin)
            .args([
                "token",
                "create",
                "--name",
                &opts.token_name,
                "--role",
                "admin",
                "--config",
            ])
            .arg(&lapse.config)
            .env_remove("RUST_LOG")
            .output()
            .await
            .context("lapse token create")?;
        if !out.status.success() {
            bail!(
                "lapse token create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if !token.starts_with("lapse_") {
            bail!("unexpected output from lapse token create: {token:?}");
        }
        lapse.token = token;
        Ok(lapse)
    }

    /// Rewrite the config, keeping the port (used between restarts).
    pub fn write_config(&self, port: u16, sim_url: &str, opts: &LapseOpts) -> anyhow::Result<()> {
        let mut database = String::new();
        if let Some((url, pw)) = &opts.database_url {
            database.push_str(&format!("url = \"{url}\"\n"));
            if let Some(pw) = pw {
                database.push_str(&format!("password_file = \"{}\"\n", pw.display()));
            }
        }
        let ha = opts
            .ha
            .as_ref()
            .map(|(lease, node)| format!("\n[ha]\nlease = \"{lease}s\"\nnode = \"{node}\"\n"))
            .unwrap_or_default();
        let text = format!(
            r#"[server]
listen = "127.0.0.1:{port}"

[database]
path = "{db}"
{database}
[twingate]
base_url = "{sim_url}"
api_key_file = "{key}"
timeout = "10s"
reads_per_minute = {reads}
writes_per_minute = {writes}

[grants]
ephemeral_backstop = {backstop}

{engine}
[log]
filter = "{filter}"
{ha}"#,
            engine = opts
                .sweep_interval
                .as_ref()
                .map(|i| format!("[engine]\nsweep_interval = \"{i}\"\n"))
                .unwrap_or_default(),
            db = self.dir.join("lapse.db").display(),
            key = self.dir.join("twingate.key").display(),
            reads = opts.reads_per_minute,
            writes = opts.writes_per_minute,
            backstop = opts.ephemeral_backstop,
            filter = opts.log_filter,
        );
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("lapse.log")
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Spawn `lapse serve`; returns when the process exists (not yet ready).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("spawning lapse serve")?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether `path` answers 200 now.
    pub async fn ok(&self, path: &str) -> bool {
        self.http
            .get(format!("{}{path}", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Spawn and wait for /readyz.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready(Duration::from_secs(120)).await
    }

    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let ok = poll(within, Duration::from_millis(20), || async {
            self.ok("/readyz").await.then_some(())
        })
        .await;
        if ok.is_none() {
            bail!(
                "lapse did not become ready within {within:?}; log tail:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `/readyz` says this daemon leads (`role: leader`).
    pub async fn wait_leading(&self, within: Duration) -> anyhow::Result<()> {
        let ok = poll(within, Duration::from_millis(20), || async {
            let (code, v) = self.get("/readyz").await.ok()?;
            (code == 200 && v["role"] == "leader").then_some(())
        })
        .await;
        if ok.is_none() {
            bail!(
                "lapse did not take the lead within {within:?}; log tail:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// SIGTERM and wait (bounded) for the exit; SIGKILL after that.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = c.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(60), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
        Ok(())
    }

    /// SIGKILL: the daemon gets no chance to finish anything.
    pub async fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// `(VmHWM, VmRSS)` of the daemon in kB, from /proc.
    pub fn memory_kb(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }

    /// POST a grant; status, body and how long the answer took.
    pub async fn submit(&self, body: &Value) -> (u16, Value, Duration) {
        let t = Instant::now();
        let r = self
            .http
            .post(format!("{}/v1/grants", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await;
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                let v = r.json().await.unwrap_or(Value::Null);
                (status, v, t.elapsed())
            }
            Err(e) => (0, json!({ "error": e.to_string() }), t.elapsed()),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// How many grants are in `state` (up to `limit`).
    pub async fn count_in(&self, state: &str, limit: u32) -> anyhow::Result<usize> {
        let (_, v) = self
            .get(&format!("/v1/grants?state={state}&limit={limit}"))
            .await?;
        Ok(v["grants"].as_array().map_or(0, Vec::len))
    }

    /// Wait until no grant is scheduled or applying; returns whether that happened in time.
    pub async fn wait_settled(&self, within: Duration) -> bool {
        poll(within, Duration::from_millis(250), || async {
            let a = self.count_in("applying", 1).await.ok()?;
            let s = self.count_in("scheduled", 1).await.ok()?;
            (a == 0 && s == 0).then_some(())
        })
        .await
        .is_some()
    }
}
