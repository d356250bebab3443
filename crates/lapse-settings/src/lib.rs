//! The typed settings tree: built-in defaults, then the TOML file, then `LAPSE__SECTION__KEY`
//! environment variables (the environment wins). Loading has no side effects; `validate` checks
//! everything before the daemon says it is ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod check;
pub use check::check_file;

use secrecy::SecretString;
use serde::Deserialize;

/// Where the daemon reads its settings by default.
pub const DEFAULT_CONFIG: &str = "/etc/lapse/lapse.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub twingate: TwingateSettings,
    pub grants: GrantSettings,
    pub engine: EngineSettings,
    pub log: LogSettings,
    /// Access lists and the request flow.
    #[serde(default)]
    pub access: lapse_requests::AccessSettings,
    /// Webhook sinks for notifications.
    #[serde(default)]
    pub notify: lapse_requests::notify::NotifySettings,
    /// API token lifetimes.
    #[serde(default)]
    pub tokens: TokenSettings,
    /// Keyed checkpoints of the history's head, written out of band.
    #[serde(default)]
    pub audit: AuditSettings,
    /// The Slack app: requests posted with Approve/Deny buttons, clicks and `/lapse`.
    #[serde(default)]
    pub slack: Option<lapse_requests::SlackSettings>,
    /// PagerDuty, for lists with `auto_approve_on_call`.
    #[serde(default)]
    pub pagerduty: Option<lapse_requests::oncall::PagerDutySettings>,
    /// Sign-in through an OpenID Connect issuer, beside API tokens.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Several daemons on one PostgreSQL store: the leader lease.
    #[serde(default)]
    pub ha: HaSettings,
}

/// `[auth]`: who may call besides holders of API tokens.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `[auth.oidc]`: bearer JWTs from this issuer are accepted by the API.
    pub oidc: Option<lapse_oidc::OidcSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSettings {
    /// How long a leader's lease lasts without renewal; it is renewed every third of this.
    /// A standby takes over at most this long after the leader stopped renewing.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// This daemon's name in the lease and the history; the host name when empty.
    #[serde(default)]
    pub node: Option<String>,
}

impl Default for HaSettings {
    fn default() -> Self {
        Self {
            lease: default_lease(),
            node: None,
        }
    }
}

fn default_lease() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// The life of a token created without `--ttl`.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub default_ttl: Duration,
    /// The longest life `--ttl` may ask for.
    #[serde(default = "max_token_ttl", with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            default_ttl: default_token_ttl(),
            max_ttl: max_token_ttl(),
        }
    }
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

fn max_token_ttl() -> Duration {
    Duration::from_secs(365 * 24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// The checkpoint key (a credential file, hex or raw bytes). Without it, no checkpoints
    /// are written; `$CREDENTIALS_DIRECTORY/lapse-checkpoint-key` is used when present.
    pub checkpoint_key_file: Option<PathBuf>,
    /// Each checkpoint is also appended to this file, as a JSON line.
    pub checkpoint_file: Option<PathBuf>,
    /// A checkpoint at least this often.
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// And whenever this many rows were added since the last one.
    #[serde(default = "default_checkpoint_rows")]
    pub checkpoint_rows: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            checkpoint_key_file: None,
            checkpoint_file: None,
            checkpoint_interval: default_checkpoint_interval(),
            checkpoint_rows: default_checkpoint_rows(),
        }
    }
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_checkpoint_rows() -> u64 {
    1000
}

impl AuditSettings {
    /// The key file in force: the setting, or systemd's credential when present.
    pub fn key_file(&self) -> Option<PathBuf> {
        self.checkpoint_key_file.clone().or_else(|| {
            let p = PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?)
                .join("lapse-checkpoint-key");
            p.exists().then_some(p)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Binding a non-loopback address without TLS must be asked for explicitly.
    pub allow_insecure_remote: bool,
    /// PEM certificate chain; with `tls_key`, the API is served over HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl ServerSettings {
    /// The certificate and key files, when HTTPS is configured.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The SQLite file, used when `url` is not set.
    pub path: PathBuf,
    /// `postgres://user@host:5432/dbname`: a PostgreSQL store, which several daemons can share.
    /// Never with a password: see `password_file`.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the PostgreSQL password. When empty,
    /// `$CREDENTIALS_DIRECTORY/lapse-database-password` (systemd `LoadCredential=`) is used
    /// if present; without either, the server must not ask for one (peer or trust auth).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwingateSettings {
    /// `https://<network>.twingate.com`.
    pub base_url: String,
    /// File holding the API key. When empty, `$CREDENTIALS_DIRECTORY/twingate-api-key`
    /// (systemd `LoadCredential=`) is used. The key is never read from this TOML.
    pub api_key_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub reads_per_minute: u32,
    pub writes_per_minute: u32,
    pub page_size: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSettings {
    #[serde(with = "humantime_serde")]
    pub max_duration: Duration,
    /// Added to a grant's end for the server-side expiry on access edges.
    #[serde(with = "humantime_serde")]
    pub backstop_grace: Duration,
    /// Give ephemeral groups' resources as expiring edges (a server-side backstop).
    pub ephemeral_backstop: bool,
    pub max_reason_chars: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    pub sweep_reads_per_minute: u32,
    pub concurrency: usize,
    /// Pause after a pass that revoked, so changes falling due together share one call per
    /// group. Off by default: group updates are built when their write permit is handed out.
    #[serde(with = "humantime_serde")]
    pub batch_window: Duration,
    /// First retry delay after a failed call; doubles per attempt (with full jitter) up to
    /// `retry_cap`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// Failed attempts after which a revocation raises its alarm (it keeps retrying).
    pub revoke_alarm_after: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub filter: String,
    /// `text` (for journald) or `json`.
    pub format: String,
}

const DEFAULTS: &str = r#"
[server]
listen = "127.0.0.1:7420"
allow_insecure_remote = false

[database]
path = "/var/lib/lapse/lapse.db"

[twingate]
base_url = ""
timeout = "30s"
reads_per_minute = 60
writes_per_minute = 20
page_size = 100

[grants]
max_duration = "24h"
backstop_grace = "5m"
ephemeral_backstop = true
max_reason_chars = 500

[engine]
tick = "1s"
sweep_interval = "5m"
sweep_reads_per_minute = 30
concurrency = 16
batch_window = "0s"
retry_base = "2s"
retry_cap = "5m"
revoke_alarm_after = 5

[log]
filter = "info"
format = "text"
"#;

/// A settings problem, naming the key, the bad value and what would be accepted.
///
/// No variant carries a `source`: each message already says everything, and error chains
/// would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading settings: {0}")]
    Load(config::ConfigError),
    #[error("not valid TOML: {cause}")]
    Syntax { cause: String },
    #[error("{0}")]
    Oidc(lapse_oidc::SettingsProblem),
    #[error("{key} = {value}{origin}: {problem}; accepted: {accepted}")]
    Invalid {
        key: String,
        value: String,
        origin: String,
        problem: String,
        accepted: String,
    },
    #[error("{key}{origin}: {problem}; accepted: {accepted}")]
    Unknown {
        key: String,
        origin: String,
        problem: String,
        accepted: String,
    },
    #[error(
        "{key}{origin}: secrets are never read from the settings file; {}",
        secret_fix(key)
    )]
    SecretInFile { key: String, origin: String },
    /// A problem found while checking a file, with where it came from: `FILE:LINE` or the
    /// environment variable that set the value.
    #[error("{at}: {error}")]
    At {
        at: String,
        error: Box<SettingsError>,
    },
    #[error("reading the Twingate API key from {path}: {source}")]
    ApiKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading the database password from {path}: {source}")]
    DatabasePassword {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no Twingate API key: set twingate.api_key_file (LAPSE__TWINGATE__API_KEY_FILE) or provide the systemd credential `twingate-api-key`"
    )]
    NoApiKey,
}

/// Where the secret named by `key` belongs instead.
fn secret_fix(key: &str) -> &'static str {
    if key.starts_with("database.") {
        "put the password in a file readable only by lapse and set database.password_file, or provide the systemd credential `lapse-database-password` (LoadCredential=)"
    } else {
        "put the key in a file readable only by lapse and set twingate.api_key_file, or provide the systemd credential `twingate-api-key` (LoadCredential=)"
    }
}

impl Settings {
    /// Defaults, then `file` (must exist when given explicitly), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut b = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        match file {
            Some(f) => {
                b = b.add_source(
                    config::File::from(f)
                        .format(config::FileFormat::Toml)
                        .required(true),
                )
            }
            None => {
                b = b.add_source(
                    config::File::with_name(DEFAULT_CONFIG)
                        .format(config::FileFormat::Toml)
                        .required(false),
                )
            }
        }
        b = b.add_source(environment());
        finish(b)
    }

    /// Built-in defaults and the environment only (the demo).
    pub fn defaults() -> Result<Self, SettingsError> {
        finish(
            config::Config::builder()
                .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
                .add_source(environment()),
        )
    }

    /// Every rule a value must meet, checked before the daemon starts: the first broken one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        match self.problems().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every rule a value breaks, in the order of the settings tree (`config check` reports them
    /// all in one run).
    pub fn problems(&self) -> Vec<SettingsError> {
        let mut problems = Vec::new();
        let invalid =
            |key: &str, value: String, problem: &str, accepted: &str| SettingsError::Invalid {
                key: key.to_owned(),
                value: format!("{value:?}"),
                origin: String::new(),
                problem: problem.to_owned(),
                accepted: accepted.to_owned(),
            };
        let t = &self.tokens;
        if t.default_ttl.is_zero() || t.default_ttl > t.max_ttl {
            problems.push(invalid(
                "tokens.default_ttl",
                humantime::format_duration(t.default_ttl).to_string(),
                "must be longer than zero and at most tokens.max_ttl",
                &format!(
                    "a duration up to {}, e.g. \"90d\"",
                    humantime::format_duration(t.max_ttl)
                ),
            ));
        }
        if self.audit.checkpoint_interval.is_zero() || self.audit.checkpoint_rows == 0 {
            problems.push(invalid(
                "audit.checkpoint_interval",
                humantime::format_duration(self.audit.checkpoint_interval).to_string(),
                "checkpoint_interval and checkpoint_rows must be greater than zero",
                "e.g. checkpoint_interval = \"5m\", checkpoint_rows = 1000",
            ));
        }
        let url = self.twingate.base_url.trim();
        if url.is_empty() || !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(invalid(
                "twingate.base_url",
                self.twingate.base_url.clone(),
                "is not an http(s) URL",
                "give your network's URL, e.g. https://acme.twingate.com",
            ));
        }
        if !(1..=100).contains(&self.twingate.page_size) {
            problems.push(invalid(
                "twingate.page_size",
                self.twingate.page_size.to_string(),
                "is out of range",
                "a number from 1 to 100",
            ));
        }
        for (key, v) in [
            ("twingate.reads_per_minute", self.twingate.reads_per_minute),
            (
                "twingate.writes_per_minute",
                self.twingate.writes_per_minute,
            ),
            (
                "engine.sweep_reads_per_minute",
                self.engine.sweep_reads_per_minute,
            ),
        ] {
            if v == 0 {
                problems.push(invalid(
                    key,
                    v.to_string(),
                    "must be at least 1",
                    "a positive number per minute",
                ));
            }
        }
        if self.grants.max_duration.is_zero() {
            problems.push(invalid(
                "grants.max_duration",
                "0s".to_owned(),
                "must be longer than zero",
                "a duration such as 24h",
            ));
        }
        if self.engine.tick.is_zero() || self.engine.tick > Duration::from_secs(1) {
            problems.push(invalid(
                "engine.tick",
                humantime::format_duration(self.engine.tick).to_string(),
                "deadlines must be checked at least every second",
                "a duration from 10ms to 1s",
            ));
        }
        if self.engine.concurrency == 0 {
            problems.push(invalid(
                "engine.concurrency",
                "0".to_owned(),
                "must be at least 1",
                "a number such as 16",
            ));
        }
        if self.engine.batch_window > Duration::from_secs(1) {
            problems.push(invalid(
                "engine.batch_window",
                humantime::format_duration(self.engine.batch_window).to_string(),
                "would make revocations later than a second",
                "a duration from 0s to 1s, such as 200ms",
            ));
        }
        if self.engine.retry_base.is_zero() || self.engine.retry_base > self.engine.retry_cap {
            problems.push(invalid(
                "engine.retry_base",
                humantime::format_duration(self.engine.retry_base).to_string(),
                "must be longer than zero and no longer than engine.retry_cap",
                "a duration such as 2s, with retry_cap such as 5m",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.push(invalid(
                "log.format",
                self.log.format.clone(),
                "is not a known format",
                "`text` or `json`",
            ));
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                let (set, unset) = if self.server.tls_cert.is_some() {
                    ("tls_cert", "tls_key")
                } else {
                    ("tls_key", "tls_cert")
                };
                let value = self
                    .server
                    .tls_cert
                    .as_ref()
                    .or(self.server.tls_key.as_ref())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                problems.push(invalid(
                    &format!("server.{set}"),
                    value,
                    &format!("is set but server.{unset} is not"),
                    "both server.tls_cert and server.tls_key (PEM files), or neither",
                ));
            }
            (Some(cert), Some(key)) => {
                for (name, path) in [("server.tls_cert", cert), ("server.tls_key", key)] {
                    if let Err(e) = std::fs::metadata(path) {
                        problems.push(invalid(
                            name,
                            path.display().to_string(),
                            &format!("cannot be read ({e})"),
                            "a PEM file readable by the lapse user",
                        ));
                    }
                }
            }
            (None, None) => {}
        }
        if let Some(url) = self.database.url.as_deref().filter(|u| !u.is_empty()) {
            match url
                .strip_prefix("postgres://")
                .or_else(|| url.strip_prefix("postgresql://"))
            {
                None => problems.push(invalid(
                    "database.url",
                    url.to_owned(),
                    "is not a PostgreSQL URL",
                    "postgres://user@host:5432/dbname, or no database.url for SQLite at database.path",
                )),
                Some(rest) => {
                    let authority = rest.split(['/', '?']).next().unwrap_or_default();
                    if authority
                        .rsplit_once('@')
                        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
                        || url.contains("password=")
                    {
                        problems.push(invalid(
                            "database.url",
                            "(not shown: it holds a password)".to_owned(),
                            "carries a password; secrets are never read from the settings",
                            "the URL without its password, and the password in database.password_file or the systemd credential `lapse-database-password`",
                        ));
                    }
                }
            }
        }
        let lease = self.ha.lease;
        if lease < Duration::from_secs(2) || lease > Duration::from_secs(300) {
            problems.push(invalid(
                "ha.lease",
                humantime::format_duration(lease).to_string(),
                "is outside 2s to 5m",
                "a duration from 2s to 5m, e.g. \"10s\"",
            ));
        }
        if !self.server.listen.ip().is_loopback()
            && self.server.tls().is_none()
            && !self.server.allow_insecure_remote
        {
            problems.push(invalid(
                "server.listen",
                self.server.listen.to_string(),
                "is not a loopback address and the API would be served without TLS",
                "a loopback address such as 127.0.0.1:7420, server.tls_cert and server.tls_key, or server.allow_insecure_remote = true",
            ));
        }
        if let Some(oidc) = &self.auth.oidc
            && let Err(p) = oidc.validate()
        {
            problems.push(SettingsError::Oidc(p));
        }
        problems
    }

    /// Where the store is: PostgreSQL when `database.url` is set (with the password from its
    /// file or the systemd credential), else the SQLite file at `database.path`.
    pub fn database_location(&self) -> Result<lapse_store::Location, SettingsError> {
        let Some(url) = self.database.url.clone().filter(|u| !u.is_empty()) else {
            return Ok(lapse_store::Location::Sqlite(self.database.path.clone()));
        };
        let file = self.database.password_file.clone().or_else(|| {
            let p = PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?)
                .join("lapse-database-password");
            p.exists().then_some(p)
        });
        let password = match file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|source| SettingsError::DatabasePassword { path, source })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => None,
        };
        Ok(lapse_store::Location::Postgres { url, password })
    }

    /// This daemon's name in the leader lease: `ha.node`, or the host name.
    pub fn node_name(&self) -> String {
        self.ha
            .node
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "lapse".to_owned())
    }

    /// The Twingate API key, from its file or the systemd credential directory.
    pub fn api_key(&self) -> Result<SecretString, SettingsError> {
        let path = match &self.twingate.api_key_file {
            Some(p) => p.clone(),
            None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
                Some(dir) => PathBuf::from(dir).join("twingate-api-key"),
                None => return Err(SettingsError::NoApiKey),
            },
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|source| SettingsError::ApiKey { path, source })?;
        Ok(SecretString::from(text.trim().to_owned()))
    }
}

impl SettingsError {
    /// The setting at fault (`section.key`), when the problem is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            SettingsError::Invalid { key, .. }
            | SettingsError::Unknown { key, .. }
            | SettingsError::SecretInFile { key, .. } => Some(key),
            SettingsError::At { error, .. } => error.key(),
            _ => None,
        }
    }
}

/// `LAPSE__SECTION__KEY` variables; values are parsed as numbers or booleans where they look like one.
pub(crate) fn environment() -> config::Environment {
    config::Environment::with_prefix("LAPSE")
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
}

/// Build the layered sources and deserialize, turning the `config` crate's errors into messages
/// that name the key, the bad value and what would be accepted.
pub(crate) fn finish(
    b: config::ConfigBuilder<config::builder::DefaultState>,
) -> Result<Settings, SettingsError> {
    let cfg = b.build().map_err(|e| explain(e, None))?;
    cfg.clone()
        .try_deserialize()
        .map_err(|e| explain(e, Some(&cfg)))
}

/// What each kind of value looks like, for the "accepted" part of a message.
fn accepted_for(key: &str, expected: &str) -> String {
    const DURATIONS: [&str; 6] = [
        "ha.lease",
        "twingate.timeout",
        "grants.max_duration",
        "grants.backstop_grace",
        "engine.tick",
        "engine.sweep_interval",
    ];
    if DURATIONS.contains(&key) {
        return "a duration such as 500ms, 30s, 5m or 2h30m".into();
    }
    match key {
        "server.listen" => "an IP address and port such as 127.0.0.1:7420 or [::1]:7420".into(),
        _ if expected.contains("bool") => "true or false".into(),
        _ if expected.contains("integer") => "a whole number".into(),
        _ => expected.to_owned(),
    }
}

/// Setting names that would hold a secret; refused with directions to the credential file.
const SECRET_KEYS: [&str; 5] = ["api_key", "key", "token", "secret", "password"];

fn explain(e: config::ConfigError, cfg: Option<&config::Config>) -> SettingsError {
    use config::ConfigError;
    let (inner, origin, key) = match e {
        ConfigError::At { error, origin, key } => (*error, origin, key),
        // The caller names the file; the cause carries line and column.
        ConfigError::FileParse { cause, .. } => {
            return SettingsError::Syntax {
                cause: cause.to_string().trim().to_owned(),
            };
        }
        ConfigError::Type {
            origin,
            unexpected,
            expected,
            key: Some(key),
        } => {
            return SettingsError::Invalid {
                value: raw_value(cfg, &key).unwrap_or_else(|| unexpected.to_string()),
                accepted: accepted_for(&key, expected),
                problem: format!("is not {expected}"),
                origin: from(origin),
                key,
            };
        }
        m @ ConfigError::Message(_) => (m, None, None),
        other => return SettingsError::Load(other),
    };
    let msg = inner.to_string();
    let origin = from(origin);
    // serde's wording: "unknown field `tik`, expected one of `tick`, `sweep_interval`".
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (field, rest) = rest.split_once('`').unwrap_or((rest, ""));
        let full = match &key {
            Some(k) if !k.is_empty() => format!("{k}.{field}"),
            _ => field.to_owned(),
        };
        if SECRET_KEYS.iter().any(|s| {
            field.eq_ignore_ascii_case(s) || field.to_ascii_lowercase().ends_with(&format!("_{s}"))
        }) {
            return SettingsError::SecretInFile { key: full, origin };
        }
        let known = rest
            .split_once("expected one of ")
            .map(|(_, k)| k.replace('`', ""))
            .unwrap_or_else(|| "none".into());
        let section = key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| format!("keys in [{k}]"))
            .unwrap_or_else(|| "sections".into());
        return SettingsError::Unknown {
            key: full,
            origin,
            problem: "is not a known setting".into(),
            accepted: format!("{section}: {known}"),
        };
    }
    match key {
        Some(key) => {
            // serde's wording: "invalid value: string \"soon\", expected a duration".
            let expected = match msg.rsplit_once("expected ") {
                Some((_, x)) => x.trim().to_owned(),
                None if msg.contains("socket address") => "an address and port".to_owned(),
                None => String::new(),
            };
            SettingsError::Invalid {
                value: raw_value(cfg, &key).unwrap_or_else(|| "?".into()),
                accepted: accepted_for(&key, &expected),
                problem: if expected.is_empty() {
                    msg
                } else {
                    format!("is not {expected}")
                },
                origin,
                key,
            }
        }
        None => SettingsError::Load(inner),
    }
}

/// The value as written, quoted, for the message.
fn raw_value(cfg: Option<&config::Config>, key: &str) -> Option<String> {
    let v = cfg?.get::<config::Value>(key).ok()?;
    Some(match v.clone().into_string() {
        Ok(s) => format!("{s:?}"),
        Err(_) => v.to_string(),
    })
}

fn from(origin: Option<String>) -> String {
    origin.map(|o| format!(" (from {o})")).unwrap_or_default()
}
