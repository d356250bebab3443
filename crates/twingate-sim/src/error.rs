//! The crate's error type: one variant per step that can fail.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read seed file {path}: {source}")]
    SeedRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse seed file {path}: {message}")]
    SeedParse { path: PathBuf, message: String },
    #[error("invalid seed: {0}")]
    SeedInvalid(String),
    /// An administrator's change refused by the same rules the API applies.
    #[error("{0}")]
    Rejected(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}
