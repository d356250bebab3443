//! The store boundary: [`Store`] is what the engine, the request flow and the API hold, and it
//! dispatches every operation to one of two backends with the same methods: SQLite (one file,
//! one daemon, the default) or PostgreSQL (one database shared by several daemons, with a
//! leader lease). The dispatch list below is the boundary's definition: a method missing from
//! either backend, or with another signature, does not compile.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapse_core::{Grant, GrantId, OwnedEdge, OwnedObject};

use crate::pg::{GrantChange, LeaseStatus, PgStore};
use crate::{
    ApprovalRecord, AuthRefusal, Batch, CheckedHistory, Checkpoint, CheckpointKey, GrantFilter,
    HistoryFilter, HistoryRow, Idempotency, Inserted, NewToken, OpenMode, OutboxItem, Pragmas,
    RequestChange, RequestRecord, Role, SqliteStore, StoreError, TokenInfo, TokenRecord,
    ValidToken, VerifyReport,
};

/// Where the database is: the `[database]` settings resolved.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (`database.path`).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`database.url`), with the password read from a credential file
    /// when the URL carries none.
    Postgres {
        url: String,
        password: Option<String>,
    },
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres { url, password } => f
                .debug_struct("Postgres")
                .field("url", &crate::pg::redact_url(url))
                .field("password", &password.as_ref().map(|_| "(redacted)"))
                .finish(),
        }
    }
}

/// Which backend a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A handle on lapse's database. Cheap to clone; all clones share the connections (and, on
/// PostgreSQL, the fence: see [`Store::set_fence`]).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating if missing, see [`OpenMode::Create`]) the SQLite database at `path`,
    /// checks its settings and runs the embedded migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, OpenMode::Create).await
    }

    /// Opens the SQLite database at `path` as `mode` says.
    pub async fn open_with(path: &Path, mode: OpenMode) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Inner::Sqlite(SqliteStore::open_with(path, mode).await?),
        })
    }

    /// Opens the PostgreSQL database at `url` as `mode` says: [`OpenMode::Create`] runs the
    /// PostgreSQL migrations, [`OpenMode::Existing`] requires them to have been run.
    pub async fn open_postgres(
        url: &str,
        password: Option<&str>,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Inner::Postgres(PgStore::open(url, password, mode).await?),
        })
    }

    /// Opens the database at `location`.
    pub async fn open_location(location: &Location, mode: OpenMode) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(path) => Self::open_with(path, mode).await,
            Location::Postgres { url, password } => {
                Self::open_postgres(url, password.as_deref(), mode).await
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The database file, on SQLite.
    pub fn path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Sqlite(s) => Some(s.path()),
            Inner::Postgres(_) => None,
        }
    }

    /// Where the database is, for messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Sqlite(s) => s.path().display().to_string(),
            Inner::Postgres(p) => p.shown_url().to_owned(),
        }
    }

    /// The SQLite settings read back from the write connection at open (for `lapse doctor`).
    pub fn pragmas(&self) -> Option<&Pragmas> {
        match &self.inner {
            Inner::Sqlite(s) => Some(s.pragmas()),
            Inner::Postgres(_) => None,
        }
    }

    /// Takes or renews the leader lease for `holder` for `lease`, with the database's clock.
    /// A SQLite store has one daemon, which always leads (epoch 0). On PostgreSQL a lease that
    /// changes hands starts a new epoch and records a `leader-elected` history row.
    pub async fn try_lead(&self, holder: &str, lease: Duration) -> Result<LeaseStatus, StoreError> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(LeaseStatus::sole(holder)),
            Inner::Postgres(p) => p.try_lead(holder, lease).await,
        }
    }

    /// Gives the lease up at once (a clean shutdown), so a standby need not wait for it to run
    /// out. Does nothing if `holder` no longer holds it, and nothing on SQLite.
    pub async fn release_lead(&self, holder: &str) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(()),
            Inner::Postgres(p) => p.release_lead(holder).await,
        }
    }

    /// Who holds the lease now, as the database sees it (for `/readyz` and `lapse doctor`).
    pub async fn lease(&self) -> Result<Option<LeaseStatus>, StoreError> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(None),
            Inner::Postgres(p) => p.lease().await.map(Some),
        }
    }

    /// Sets the leadership every engine batch ([`Store::commit`]) must still hold when it is
    /// written: `Some((holder, epoch))` while leading, `None` to refuse every batch (a standby).
    /// Shared by all clones. On SQLite batches are never fenced.
    pub fn set_fence(&self, fence: Option<(String, i64)>) {
        if let Inner::Postgres(p) = &self.inner {
            p.set_fence(fence);
        }
    }

    /// Changes one grant outside the reconcile loop, as a daemon that does not lead records a
    /// revocation or an extension: `decide` gets the grant as stored, under the write lock,
    /// and its answer is written with its history row in one transaction, which also wakes the
    /// leader. Only on PostgreSQL: on SQLite the one daemon's engine records these itself.
    pub async fn change_grant<E>(
        &self,
        id: GrantId,
        decide: impl FnOnce(Option<Grant>) -> Result<GrantChange, E>,
    ) -> Result<Result<Grant, E>, StoreError> {
        match &self.inner {
            Inner::Sqlite(_) => Err(StoreError::SharedOnly {
                what: "changing a grant outside the engine",
            }),
            Inner::Postgres(p) => p.change_grant(id, decide).await,
        }
    }

    /// Grants created, revoked or extended in history rows after `seq` (each with its row's
    /// sequence number, oldest first, at most `limit`): how the leader learns what other
    /// daemons recorded. A row that names no readable grant id comes with `None`, so that the
    /// reader moves past it. Empty on SQLite, where there are none.
    pub async fn grants_changed_after(
        &self,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Option<GrantId>)>, StoreError> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(Vec::new()),
            Inner::Postgres(p) => p.grants_changed_after(seq, limit).await,
        }
    }

    /// Waits until another daemon announces a new grant or request on the shared database
    /// (PostgreSQL LISTEN/NOTIFY), or forever on SQLite, where every submission is local.
    pub async fn listen_for_work(&self) -> Result<WorkListener, StoreError> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(WorkListener { inner: None }),
            Inner::Postgres(p) => Ok(WorkListener {
                inner: Some(p.listen().await?),
            }),
        }
    }
}

/// A subscription to work announced by other daemons ([`Store::listen_for_work`]).
pub struct WorkListener {
    inner: Option<sqlx::postgres::PgListener>,
}

impl WorkListener {
    /// Returns when work was announced. On SQLite it never returns.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            None => std::future::pending().await,
            Some(l) => crate::pg::next_notice(l).await,
        }
    }
}

/// Generates `Store`'s operations, each dispatched to the backend's method of the same name.
macro_rules! dispatch {
    ($(
        $(#[$meta:meta])*
        async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.inner {
                        Inner::Sqlite(s) => s.$name($($arg),*).await,
                        Inner::Postgres(p) => p.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

dispatch! {
    /// Proves that a write could happen now. Writes nothing.
    async fn check_writable(&self) -> Result<(), StoreError>;
    /// Closes every connection.
    async fn close(&self) -> ();

    /// Stores a new grant, its principals and its `created` history row in one transaction.
    /// With an idempotency key seen before: the same request hash gives back the stored grant
    /// ([`Inserted::Existing`]), another hash is [`StoreError::IdempotencyConflict`].
    async fn insert_grant(&self, grant: &Grant, idempotency: Option<Idempotency>) -> Result<Inserted, StoreError>;
    /// Inserts many grants in one transaction; each item gets its own result, the outer error
    /// means nothing at all was stored.
    async fn insert_grants(&self, items: Vec<(Grant, Option<Idempotency>)>) -> Result<Vec<Result<Inserted, StoreError>>, StoreError>;
    /// [`Store::insert_grants`], each grant's `created` row naming the rule that authorized it.
    async fn insert_authorized(&self, items: Vec<(Grant, Option<Idempotency>, Option<String>)>) -> Result<Vec<Result<Inserted, StoreError>>, StoreError>;
    /// One grant by id.
    async fn get_grant(&self, id: GrantId) -> Result<Option<Grant>, StoreError>;
    /// Grants matching `filter`, newest first.
    async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, StoreError>;
    /// Every grant not in a terminal state, oldest first: what the engine works on.
    async fn load_open_grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// History rows matching `filter`, oldest first unless `filter.newest_first`; a grant's rows
    /// include the remote changes made for it (`detail.grants`).
    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryRow>, StoreError>;
    /// Names of remote objects by Twingate id, from what lapse knows of them (principals,
    /// owned objects, and the groups it created for `grants`).
    async fn remote_names(&self, ids: &[String], grants: &[String]) -> Result<std::collections::BTreeMap<String, String>, StoreError>;
    /// Pending requests, undelivered notifications and the age of the oldest, for `/metrics`.
    async fn flow_gauges(&self, now: DateTime<Utc>) -> Result<crate::FlowGauges, StoreError>;
    /// Walks the whole chain in one consistent snapshot and names the first broken row.
    async fn verify_history(&self) -> Result<VerifyReport, StoreError>;
    /// [`Store::verify_history`], and then the chain against `checkpoints` made with `key`.
    async fn verify_history_with(&self, checkpoints: &[Checkpoint], key: &CheckpointKey) -> Result<CheckedHistory, StoreError>;
    /// The last row's sequence number (0 for an empty history).
    async fn history_head_seq(&self) -> Result<i64, StoreError>;
    /// A checkpoint of the chain's head now, taken at `at`, keyed with `key`.
    async fn checkpoint(&self, key: &CheckpointKey, at: DateTime<Utc>) -> Result<Checkpoint, StoreError>;

    /// Applies an engine batch in one write transaction, all or nothing. On PostgreSQL the
    /// transaction first checks the fence ([`Store::set_fence`]): a daemon whose epoch has
    /// ended records nothing ([`StoreError::Fenced`]).
    async fn commit(&self, batch: Batch) -> Result<(), StoreError>;
    /// Every edge lapse has added or is about to add.
    async fn load_edges(&self) -> Result<Vec<OwnedEdge>, StoreError>;
    /// Every object lapse has created or is about to create.
    async fn load_objects(&self) -> Result<Vec<OwnedObject>, StoreError>;

    /// Applies a request change in one write transaction.
    async fn commit_requests(&self, change: RequestChange) -> Result<(), StoreError>;
    /// Stores the grant an approved request becomes together with the request's change.
    async fn insert_grant_for_request(&self, grant: &Grant, idempotency: Idempotency, rule: &str, change: impl FnOnce(&Grant) -> RequestChange) -> Result<Inserted, StoreError>;
    async fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError>;
    /// Requests, newest first; only those in `state` when given.
    async fn list_requests(&self, state: Option<&str>, limit: u32) -> Result<Vec<RequestRecord>, StoreError>;
    /// Pending requests whose wait has run out at `now`, the longest overdue first.
    async fn due_pending_requests(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<RequestRecord>, StoreError>;
    /// When the next pending request's wait runs out.
    async fn next_pending_wait(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Approved requests whose live grant ends between `after` and `before`, not yet warned.
    async fn approved_ending_between(&self, after: DateTime<Utc>, before: DateTime<Utc>, limit: u32) -> Result<Vec<(RequestRecord, DateTime<Utc>)>, StoreError>;
    /// The soonest end after `after` of a live requested grant not yet warned for it.
    async fn next_approved_end(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The approved requests that created or extended `grant`, oldest first.
    async fn requests_of_grant(&self, grant: GrantId) -> Result<Vec<RequestRecord>, StoreError>;
    async fn approvals(&self, request_id: &str) -> Result<Vec<ApprovalRecord>, StoreError>;
    /// The latest review of `list`: its next due date and every member removed by any review.
    async fn review_state(&self, list: &str) -> Result<(Option<DateTime<Utc>>, Vec<String>), StoreError>;
    async fn mark(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// History rows after `seq`, oldest first, at most `limit`.
    async fn history_after(&self, seq: i64, limit: u32) -> Result<Vec<HistoryRow>, StoreError>;
    /// Notifications due for delivery at `now`, oldest first.
    async fn outbox_due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<OutboxItem>, StoreError>;
    /// Records one delivery attempt: delivered, or when to try again and why not.
    async fn outbox_attempted(&self, id: i64, outcome: Result<DateTime<Utc>, (DateTime<Utc>, String)>) -> Result<(), StoreError>;
    /// Binds a token to a person's identity (stored normalised), with a history row.
    async fn set_token_identity(&self, name: &str, identity: &str) -> Result<(), StoreError>;
    /// The identity a live token named `name` is bound to.
    async fn token_identity(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// The sequence number of the newest history row (0 for an empty history).
    async fn last_history_seq(&self) -> Result<i64, StoreError>;

    /// Creates a token with the default lifetime, recorded as `local-admin`; returns it once.
    async fn create_token(&self, name: &str, role: Role) -> Result<String, StoreError>;
    /// Creates a token as `new` says; returns it once.
    async fn create_token_with(&self, new: &NewToken, now: DateTime<Utc>) -> Result<String, StoreError>;
    /// Revokes a live token; `false` if there was none of that name.
    async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, StoreError>;
    /// Checks a presented token at `now`: valid, or why not.
    async fn check_token(&self, token: &str, now: DateTime<Utc>) -> Result<Result<ValidToken, AuthRefusal>, StoreError>;
    /// The valid token's name and role, or `None`.
    async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>, StoreError>;
    /// Every token, oldest first, without secrets.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
}
