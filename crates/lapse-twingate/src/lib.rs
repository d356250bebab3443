//! The Twingate Admin API client and lapse's `AccessProvider` implementation over it.
//!
//! Everything lapse learned about talking to Twingate lives here, once: typed GraphQL
//! operations, the classification of every failure into a [`lapse_core::provider::ProviderError`],
//! a client-side rate limiter that serves revocations first, complete pagination, and a small
//! directory cache. The engine sees only the `AccessProvider` trait.

mod budget;
mod cache;
mod client;
mod config;
mod ops;
mod provider;
mod transport;

pub use budget::{Budget, TokioClock};
pub use client::TwingateClient;
pub use config::{ClientConfig, ConfigError, MAX_PAGE_SIZE};
pub use secrecy::SecretString;
