//! The Twingate Admin API client and lapse's `AccessProvider` implementation over it (see README.md).

mod budget;
mod cache;
mod client;
mod config;
mod ops;
mod provider;
mod transport;

pub use budget::{Budget, Permit};
pub use client::TwingateClient;
pub use config::{ClientConfig, ConfigError, MAX_PAGE_SIZE};
pub use ops::documents;
pub use secrecy::SecretString;
