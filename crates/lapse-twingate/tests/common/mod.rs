//! Test fixtures: a stand-in Twingate on a loopback port and a client pointed at it.
#![allow(dead_code)]

use std::time::Duration;

use lapse_twingate::{ClientConfig, SecretString, TwingateClient};
use twingate_sim::{SimConfig, SimHandle};

/// A client for `sim` with budgets high enough that the limiter never slows a test down.
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    pub fn new(sim: &SimHandle) -> Self {
        Self::for_url(&sim.base_url())
    }

    pub fn for_url(base_url: &str) -> Self {
        let mut config =
            ClientConfig::new(base_url, SecretString::from(twingate_sim::DEMO_ADMIN_KEY));
        config.reads_per_minute = 600_000;
        config.writes_per_minute = 600_000;
        config.timeout = Duration::from_secs(10);
        config.read_retries = 0;
        Self { config }
    }

    pub fn key(mut self, key: &str) -> Self {
        self.config.api_key = SecretString::from(key);
        self
    }

    pub fn page_size(mut self, page_size: u32) -> Self {
        self.config.page_size = page_size;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    pub fn read_retries(mut self, retries: u32) -> Self {
        self.config.read_retries = retries;
        self
    }

    pub fn rate_limit_patience(mut self, patience: Duration) -> Self {
        self.config.rate_limit_patience = patience;
        self
    }

    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.directory_cache_ttl = ttl;
        self
    }

    pub fn writes_per_minute(mut self, n: u32) -> Self {
        self.config.writes_per_minute = n;
        self
    }

    pub fn config(self) -> ClientConfig {
        self.config
    }

    pub fn build(self) -> TwingateClient {
        TwingateClient::new(self.config).expect("client builds")
    }
}

pub async fn start_sim() -> SimHandle {
    start_sim_with(SimConfig::default()).await
}

pub async fn start_sim_with(config: SimConfig) -> SimHandle {
    twingate_sim::start(config).await.expect("sim starts")
}

/// The demo seed's IDs, as the stand-in mints them.
pub fn user_id(pk: u64) -> String {
    twingate_sim::global_id("User", pk)
}
pub fn group_id(pk: u64) -> String {
    twingate_sim::global_id("Group", pk)
}
pub fn resource_id(pk: u64) -> String {
    twingate_sim::global_id("Resource", pk)
}
pub fn ci_deployer_id() -> String {
    twingate_sim::global_id("ServiceAccount", twingate_sim::DEMO_SERVICE_ACCOUNT_UUID)
}
