//! lapse's persistence: grants, the ownership record, the hash-chained history and API tokens, in SQLite (one file, the default) or PostgreSQL (shared by several daemons, with a fenced leader lease); the only place SQL lives.

mod backend;
mod checkpoint;
mod error;
mod files;
mod grants;
mod group;
mod history;
mod ownership;
mod pg;
mod requests;
pub mod scratch;
mod time;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

pub use backend::{Backend, Location, Store, WorkListener};
pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointKey, append_checkpoint, checkpoint_mac, read_checkpoints,
};
pub use error::StoreError;
pub use grants::{GrantFilter, Idempotency, Inserted, MAX_IDEMPOTENCY_KEY_CHARS};
pub use group::GrantInserter;
pub use history::{
    BrokenRow, CheckedHistory, Finding, GENESIS_HASH, HistoryFilter, HistoryRow, NewHistory,
    VerifyReport, history_hash,
};
pub use ownership::Batch;
pub use pg::{GrantChange, LeaseState, LeaseStatus, describe_lease};
pub use requests::{
    ApprovalRecord, FlowGauges, NewOutbox, NewReview, OutboxItem, RequestChange, RequestRecord,
};
pub use time::{format_ts, parse_ts};
pub use tokens::{
    AuthRefusal, DEFAULT_TOKEN_LIFETIME, NewToken, Role, TokenInfo, TokenRecord, ValidToken,
};

use error::Step;

/// The migrations in the top-level `migrations/`, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// How long a connection waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Readers never block the writer in WAL mode; a few cover the API and the CLI at once.
const READ_CONNECTIONS: u32 = 4;

/// Each connection's page cache, in KiB (`PRAGMA cache_size` takes a negative figure as KiB):
/// the store's memory is bounded by (1 + READ_CONNECTIONS) × this, whatever the file's size.
/// The engine keeps what it plans with in its own index and reads rows by key, so a small
/// cache costs little.
pub const PAGE_CACHE_KIB: i64 = 2048;

/// The SQLite settings read back from a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pragmas {
    /// `wal` expected.
    pub journal_mode: String,
    /// 2 (FULL) expected.
    pub synchronous: i64,
    /// 1 expected.
    pub foreign_keys: i64,
    pub busy_timeout_ms: i64,
    /// The page cache bound in KiB, [`PAGE_CACHE_KIB`] expected.
    pub cache_kib: i64,
}

async fn page_size(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut *conn)
        .await
        .step("reading back page_size")
}

impl Pragmas {
    /// Reads the settings lapse relies on from `conn`.
    pub async fn read(conn: &mut SqliteConnection) -> Result<Self, StoreError> {
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .step("reading back journal_mode")?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .step("reading back synchronous")?;
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .step("reading back foreign_keys")?;
        let busy_timeout_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .step("reading back busy_timeout")?;
        let cache_size: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *conn)
            .await
            .step("reading back cache_size")?;
        Ok(Self {
            journal_mode: journal_mode.to_lowercase(),
            synchronous,
            foreign_keys,
            busy_timeout_ms,
            // A positive cache_size counts pages of the file's page size, a negative one KiB.
            cache_kib: if cache_size < 0 {
                -cache_size
            } else {
                cache_size * page_size(conn).await? / 1024
            },
        })
    }

    /// Refuses settings under which an acknowledged write could be lost (I4) or the
    /// ownership record could dangle.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.journal_mode != "wal" {
            return Err(StoreError::UntrustedDatabase {
                what: "journal_mode",
                found: self.journal_mode.clone(),
                expected: "wal".into(),
            });
        }
        if self.synchronous != 2 {
            return Err(StoreError::UntrustedDatabase {
                what: "synchronous",
                found: self.synchronous.to_string(),
                expected: "2 (FULL)".into(),
            });
        }
        if self.foreign_keys != 1 {
            return Err(StoreError::UntrustedDatabase {
                what: "foreign_keys",
                found: self.foreign_keys.to_string(),
                expected: "1 (ON)".into(),
            });
        }
        Ok(())
    }
}

/// The SQLite backend: one file, one writer. Cheap to clone; all clones share the pools.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    path: Arc<PathBuf>,
    /// Exactly one connection: SQLite has one writer, and queueing here instead of on the
    /// file lock keeps busy errors away and makes every write transaction's order explicit.
    writer: SqlitePool,
    readers: SqlitePool,
    pragmas: Arc<Pragmas>,
}

/// Whether [`Store::open_with`] (or [`Store::open_location`]) may create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file (0600) and any missing directories (0700) whatever the umask, and run
    /// the migrations: what the daemon does.
    Create,
    /// Never create or change anything at open: a missing file is [`StoreError::Missing`], and
    /// the migrations are not run (the schema is used as found). For checks such as `lapse
    /// doctor`, which read the settings and prove the write lock can be taken.
    Existing,
}

impl SqliteStore {
    /// Opens the database at `path` as `mode` says, checks its settings and runs the embedded
    /// migrations.
    pub async fn open_with(path: &Path, mode: OpenMode) -> Result<Self, StoreError> {
        match mode {
            OpenMode::Create => files::create_private(path)?,
            OpenMode::Existing => {
                if !path.is_file() {
                    return Err(StoreError::Missing {
                        path: path.to_owned(),
                    });
                }
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            // Created above with its mode, or required to exist: SQLite never creates it.
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", (-PAGE_CACHE_KIB).to_string());
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };

        // The writer's connection is never recycled, so the settings checked below are the
        // settings every write runs under.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;

        let pragmas = {
            let mut conn = writer.acquire().await.map_err(open_err)?;
            Pragmas::read(&mut conn).await?
        };
        pragmas.check()?;

        if mode == OpenMode::Create {
            run_migrations(&writer).await?;
        }

        // Readers open read-only: nothing on the read path can change the file.
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await
            .map_err(open_err)?;
        {
            let mut conn = readers.acquire().await.map_err(open_err)?;
            Pragmas::read(&mut conn).await?.check()?;
        }

        tracing::debug!(path = %path.display(), ?pragmas, "store opened");
        let store = Self {
            path: Arc::new(path.to_owned()),
            writer,
            readers,
            pragmas: Arc::new(pragmas),
        };
        if mode == OpenMode::Create {
            store.bind_migrated_tokens().await?;
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The settings read back from the write connection at open (for `lapse doctor`).
    pub fn pragmas(&self) -> &Pragmas {
        &self.pragmas
    }

    /// Proves that a write could happen now: the file and its WAL open for writing and the
    /// write lock can be taken. Writes nothing.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let wal = wal_path(&self.path);
        // The WAL exists while connections are open; if it was checkpointed away, SQLite
        // recreates it next to the main file, which the main file's check covers.
        let files = [Some(self.path.to_path_buf()), wal.exists().then_some(wal)];
        for file in files.into_iter().flatten() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .map_err(|source| StoreError::Io {
                    step: "opening the database file for writing",
                    source,
                })?;
        }
        let tx = self.begin_write("taking the write lock").await?;
        tx.rollback().await.step("releasing the write lock")
    }

    /// Closes every connection; the last one to close checkpoints the WAL into the main file.
    pub async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }

    /// A write transaction that holds the write lock from its first statement, so that what it
    /// reads (the history's last hash, an idempotency key) cannot change before it writes.
    pub(crate) async fn begin_write(
        &self,
        step: &'static str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.step(step)
    }
}

async fn run_migrations(writer: &SqlitePool) -> Result<(), StoreError> {
    match MIGRATOR.run(writer).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMismatch(version)) => Err(StoreError::MigrationChanged {
            version,
            detail: "was applied with contents that differ from this build's",
        }),
        Err(MigrateError::VersionMissing(version)) => Err(StoreError::MigrationChanged {
            version,
            detail: "was applied but is unknown to this build",
        }),
        Err(e) => Err(StoreError::Migrate(e)),
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Reads the number of rows a statement changed, for operations that must change exactly one.
pub(crate) fn one_row(
    result: sqlx::sqlite::SqliteQueryResult,
    step: &'static str,
    what: &'static str,
    key: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            step,
            what,
            key: key(),
        });
    }
    Ok(())
}

/// Reads a TEXT column, naming the step if it is missing or of the wrong type.
pub(crate) fn col<'r, T>(
    row: &'r sqlx::sqlite::SqliteRow,
    name: &'static str,
    step: &'static str,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name).step(step)
}
