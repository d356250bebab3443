//! The typed settings tree: built-in defaults, then the TOML file, then `LAPSE__SECTION__KEY`
//! environment variables (the environment wins). Loading has no side effects; `validate` checks
//! everything before the daemon says it is ready.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Binding a non-loopback address without TLS must be asked for explicitly.
    pub allow_insecure_remote: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub path: PathBuf,
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

[log]
filter = "info"
format = "text"
"#;

/// A settings problem, naming the key, the bad value and what would be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("{key} = {value:?}: {problem}; {accepted}")]
    Invalid { key: &'static str, value: String, problem: String, accepted: String },
    #[error("reading the Twingate API key from {path}: {source}")]
    ApiKey { path: PathBuf, source: std::io::Error },
    #[error(
        "no Twingate API key: set twingate.api_key_file (LAPSE__TWINGATE__API_KEY_FILE) or provide the systemd credential `twingate-api-key`"
    )]
    NoApiKey,
}

impl Settings {
    /// Defaults, then `file` (must exist when given explicitly), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        match file {
            Some(f) => b = b.add_source(config::File::from(f).format(config::FileFormat::Toml).required(true)),
            None => b = b.add_source(config::File::with_name(DEFAULT_CONFIG).format(config::FileFormat::Toml).required(false)),
        }
        b = b.add_source(config::Environment::with_prefix("LAPSE").prefix_separator("__").separator("__").try_parsing(true));
        let s: Settings = b.build()?.try_deserialize()?;
        Ok(s)
    }

    /// Built-in defaults and the environment only (the demo).
    pub fn defaults() -> Result<Self, SettingsError> {
        let b = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::Environment::with_prefix("LAPSE").prefix_separator("__").separator("__").try_parsing(true));
        Ok(b.build()?.try_deserialize()?)
    }

    /// Every rule a value must meet, checked before the daemon starts.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let url = self.twingate.base_url.trim();
        if url.is_empty() || !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(SettingsError::Invalid {
                key: "twingate.base_url",
                value: self.twingate.base_url.clone(),
                problem: "is not an http(s) URL".into(),
                accepted: "give your network's URL, e.g. https://acme.twingate.com".into(),
            });
        }
        if !(1..=100).contains(&self.twingate.page_size) {
            return Err(SettingsError::Invalid {
                key: "twingate.page_size",
                value: self.twingate.page_size.to_string(),
                problem: "is out of range".into(),
                accepted: "a number from 1 to 100".into(),
            });
        }
        for (key, v) in [
            ("twingate.reads_per_minute", self.twingate.reads_per_minute),
            ("twingate.writes_per_minute", self.twingate.writes_per_minute),
            ("engine.sweep_reads_per_minute", self.engine.sweep_reads_per_minute),
        ] {
            if v == 0 {
                return Err(SettingsError::Invalid {
                    key,
                    value: v.to_string(),
                    problem: "must be at least 1".into(),
                    accepted: "a positive number per minute".into(),
                });
            }
        }
        if self.grants.max_duration.is_zero() {
            return Err(SettingsError::Invalid {
                key: "grants.max_duration",
                value: "0s".into(),
                problem: "must be longer than zero".into(),
                accepted: "a duration such as 24h".into(),
            });
        }
        if self.engine.tick.is_zero() || self.engine.tick > Duration::from_secs(1) {
            return Err(SettingsError::Invalid {
                key: "engine.tick",
                value: humantime::format_duration(self.engine.tick).to_string(),
                problem: "deadlines must be checked at least every second".into(),
                accepted: "a duration from 10ms to 1s".into(),
            });
        }
        if self.engine.concurrency == 0 {
            return Err(SettingsError::Invalid {
                key: "engine.concurrency",
                value: "0".into(),
                problem: "must be at least 1".into(),
                accepted: "a number such as 16".into(),
            });
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(SettingsError::Invalid {
                key: "log.format",
                value: self.log.format.clone(),
                problem: "is not a known format".into(),
                accepted: "`text` or `json`".into(),
            });
        }
        if !self.server.listen.ip().is_loopback() && !self.server.allow_insecure_remote {
            return Err(SettingsError::Invalid {
                key: "server.listen",
                value: self.server.listen.to_string(),
                problem: "is not a loopback address and the API would be served without TLS".into(),
                accepted: "a loopback address such as 127.0.0.1:7420, or set server.allow_insecure_remote = true".into(),
            });
        }
        Ok(())
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
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::ApiKey { path, source })?;
        Ok(SecretString::from(text.trim().to_owned()))
    }
}
