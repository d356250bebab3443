//! Client settings with their defaults, and the errors of building a client from them.

use std::time::Duration;

use secrecy::SecretString;

/// Twingate answers at most 100 items per page.
pub const MAX_PAGE_SIZE: u32 = 100;

/// How to reach one Twingate network, and how hard to use it.
///
/// `Debug` is safe to log: the API key prints as redacted.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://<network>.twingate.com` in production; the GraphQL endpoint is
    /// `{base_url}/api/graphql/`.
    pub base_url: String,
    /// Needs *Read & Write*; service keys need *Read, Write & Provision*.
    pub api_key: SecretString,
    /// Whole-request timeout (connect, send, answer).
    pub timeout: Duration,
    /// Connect timeout; a failure here is known not to have reached the server.
    pub connect_timeout: Duration,
    /// Sent with every request, so Twingate's side can tell lapse's calls apart.
    pub user_agent: String,
    /// Items per page for every list, nested lists included; 1..=100.
    pub page_size: u32,
    /// Read budget per minute (Twingate documents 60).
    pub reads_per_minute: u32,
    /// Write budget per minute (Twingate documents 20).
    pub writes_per_minute: u32,
    /// How long a resolved user or resource name is trusted; zero turns the cache off.
    pub directory_cache_ttl: Duration,
    /// How often a failed read is retried (with capped, jittered backoff) before it is reported.
    /// Writes are never retried by the client.
    pub read_retries: u32,
    /// How long one call may spend waiting out HTTP 429s before it reports `RateLimited`.
    pub rate_limit_patience: Duration,
}

impl ClientConfig {
    /// Settings with Twingate's documented limits and conservative timeouts.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("lapse/", env!("CARGO_PKG_VERSION")).to_owned(),
            page_size: MAX_PAGE_SIZE,
            reads_per_minute: 60,
            writes_per_minute: 20,
            directory_cache_ttl: Duration::from_secs(300),
            read_retries: 3,
            rate_limit_patience: Duration::from_secs(180),
        }
    }
}

/// Why a client could not be built. Never contains the API key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("base URL {url:?} is not usable: {reason}")]
    BaseUrl { url: String, reason: String },
    #[error("the API key is empty")]
    EmptyApiKey,
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    ApiKeyNotAHeader,
    #[error("page size {0} is outside 1..={MAX_PAGE_SIZE}")]
    PageSize(u32),
    #[error("{0} must be at least 1 per minute")]
    ZeroBudget(&'static str),
    #[error("building the HTTP client failed: {0}")]
    HttpClient(String),
}
