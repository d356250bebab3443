//! The store's error type: every variant names the step that failed.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    /// The database was to be opened without creating it, and it is not there.
    #[error(
        "no database at {path}; check `database.path` in the settings, or start the daemon \
         once to create it"
    )]
    Missing { path: PathBuf },

    /// A setting read back after connecting is not what lapse's durability relies on.
    #[error(
        "refusing to use the database: {what} is `{found}`, expected `{expected}` \
         (the filesystem or SQLite build may not support it)"
    )]
    UntrustedDatabase {
        what: &'static str,
        found: String,
        expected: String,
    },

    /// The database records a migration that this binary does not ship unchanged.
    #[error(
        "refusing to use the database: migration {version} {detail}; the database was migrated \
         by a different build of lapse and must not be edited by hand; run the build that \
         migrated it, or restore a backup"
    )]
    MigrationChanged { version: i64, detail: &'static str },

    /// The PostgreSQL database could not be reached or its URL is not one.
    #[error(
        "connecting to the PostgreSQL database {url}: {source}; check `database.url` and the password file"
    )]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The PostgreSQL database was to be used as found, and lapse's schema is not there.
    #[error(
        "no lapse schema in the PostgreSQL database {url}; check `database.url`, or start the \
         daemon once to create it"
    )]
    NoSchema { url: String },

    /// This daemon's leadership ended (another daemon's epoch began, or the lease ran out):
    /// the engine's batch was not written, and the daemon must step down.
    #[error(
        "refusing to record the engine's batch: this daemon {held}, but the lease is held by \
         `{holder}` in epoch {epoch}{expired}"
    )]
    Fenced {
        held: String,
        holder: String,
        epoch: i64,
        expired: &'static str,
    },

    /// An operation for a store shared by several daemons was asked of a SQLite store.
    #[error("{what} needs a shared (PostgreSQL) store")]
    SharedOnly { what: &'static str },

    #[error("running migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// A request another daemon (or another call) decided meanwhile: its decision is kept and
    /// this change is not written.
    #[error("request {id} is {state}, no longer pending")]
    RequestDecided { id: String, state: String },

    /// The same approver approved the request already (on another daemon, say).
    #[error("{approver} has already approved request {id}")]
    AlreadyApproved { id: String, approver: String },

    /// The idempotency key was used before with a different request body.
    #[error("idempotency key `{key}` was already used for a different request")]
    IdempotencyConflict { key: String },

    /// Only the events lapse knows are recorded, so a reader can rely on the names.
    #[error("refusing to record the unknown history event `{event}`")]
    UnknownEvent { event: String },

    #[error("a token named `{name}` already exists")]
    TokenNameTaken { name: String },

    /// A token's expiry is not in the future.
    #[error("expires_at: {expires_at} is not in the future; give the token an expiry after now")]
    TokenExpiry { expires_at: String },

    /// A free-text field (a name, an identity, a reason) was refused.
    #[error("{0}")]
    Text(#[from] lapse_core::TextError),

    /// An idempotency key given by a caller is not one lapse accepts.
    #[error("Idempotency-Key: {problem}; {fix}")]
    IdempotencyKey {
        problem: &'static str,
        fix: &'static str,
    },

    /// A row the operation must change is not there.
    #[error("{step}: no {what} `{key}`")]
    NotFound {
        step: &'static str,
        what: &'static str,
        key: String,
    },

    #[error("{step}: {source}")]
    Db {
        step: &'static str,
        #[source]
        source: sqlx::Error,
    },

    #[error("{step}: {source}")]
    Json {
        step: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A stored value that lapse could not have written: the file was edited or damaged.
    #[error("{step}: stored {column} `{value}` is invalid: {reason}")]
    Corrupt {
        step: &'static str,
        column: &'static str,
        value: String,
        reason: String,
    },

    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Attaches the failing step to a sqlx error.
pub(crate) trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, StoreError>;
}

impl<T> Step<T> for Result<T, sqlx::Error> {
    fn step(self, step: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Db { step, source })
    }
}

impl<T> Step<T> for Result<T, serde_json::Error> {
    fn step(self, step: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Json { step, source })
    }
}
