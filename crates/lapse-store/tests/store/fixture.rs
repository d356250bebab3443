//! Builders for grants and helpers for opening stores (on either backend) and raw
//! connections behind the store's back.
//!
//! Every test that is not about one backend's specifics runs its body once per backend:
//! `for kind in backends() { let db = TestDb::open(kind).await; ... }`, on a fresh SQLite file
//! and on a fresh PostgreSQL database (see `lapse_store::scratch`; required under `CI=true`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use lapse_core::{Grant, GrantId, GrantKind, GrantSpec, GrantState, Principal, RetryState};
use lapse_store::scratch::ScratchDb;
use lapse_store::{OpenMode, Store};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The backends every parameterised test runs on.
pub fn backends() -> [Kind; 2] {
    [Kind::Sqlite, Kind::Postgres]
}

/// A fixed instant with whole microseconds, the store's precision.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5)
        .single()
        .expect("a valid instant")
        + Duration::microseconds(123_456)
}

pub struct TestDb {
    pub dir: TempDir,
    pub store: Store,
    pub kind: Kind,
    /// Dropped after `store` (fields drop in order), which drops the database.
    scratch: Option<ScratchDb>,
}

impl TestDb {
    /// A fresh SQLite store, for tests of SQLite's specifics.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(&dir.path().join("lapse.db"))
            .await
            .expect("a fresh store opens");
        Self {
            dir,
            store,
            kind: Kind::Sqlite,
            scratch: None,
        }
    }

    /// A fresh store on `kind`. For PostgreSQL outside CI with no server reachable, a SQLite
    /// store again (the skip is reported on stderr).
    pub async fn open(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => Self::new().await,
            Kind::Postgres => {
                let Some(scratch) = ScratchDb::create().await else {
                    return Self::new().await;
                };
                let store = Store::open_postgres(scratch.url(), None, OpenMode::Create)
                    .await
                    .expect("a fresh PostgreSQL store opens");
                Self {
                    dir: tempfile::tempdir().expect("a temp dir"),
                    store,
                    kind,
                    scratch: Some(scratch),
                }
            }
        }
    }

    /// Another handle on the same database, as a second daemon would open it.
    pub async fn second_handle(&self) -> Store {
        match &self.scratch {
            None => Store::open(&self.path()).await.expect("a second handle"),
            Some(s) => Store::open_postgres(s.url(), None, OpenMode::Create)
                .await
                .expect("a second handle"),
        }
    }

    /// The SQLite file (a temp path, unused, on PostgreSQL).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("lapse.db")
    }

    /// A plain connection behind the store's back, as an operator with the database's shell
    /// would have.
    pub async fn raw(&self) -> Raw {
        match &self.scratch {
            None => Raw::Sqlite(raw(&self.path()).await),
            Some(s) => Raw::Pg(
                PgConnection::connect(s.url())
                    .await
                    .expect("a raw connection to the scratch database"),
            ),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the failure above was on the {:?} backend", self.kind);
        }
    }
}

/// A value to bind in [`Raw::exec`].
pub enum V<'a> {
    S(&'a str),
    I(i64),
    OptI(Option<i64>),
}

/// A raw connection to either backend. Statements are written for SQLite, with `?`
/// placeholders; on PostgreSQL they are numbered, and `DROP TRIGGER t` (how an operator gets
/// past SQLite's append-only triggers) becomes `ALTER TABLE ... DISABLE TRIGGER t`.
pub enum Raw {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

fn to_postgres(sql: &str) -> String {
    if let Some(trigger) = sql.strip_prefix("DROP TRIGGER ") {
        let table = if trigger.starts_with("history_head") {
            "history_head"
        } else {
            "history"
        };
        return format!("ALTER TABLE {table} DISABLE TRIGGER {trigger}");
    }
    let mut out = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

impl Raw {
    /// Runs one statement; the error's text when it is refused.
    pub async fn exec(&mut self, sql: &str, binds: &[V<'_>]) -> Result<u64, String> {
        match self {
            Raw::Sqlite(conn) => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
                for b in binds {
                    q = match b {
                        V::S(s) => q.bind(s.to_string()),
                        V::I(i) => q.bind(*i),
                        V::OptI(i) => q.bind(*i),
                    };
                }
                q.execute(&mut *conn)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| e.to_string())
            }
            Raw::Pg(conn) => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(to_postgres(sql)));
                for b in binds {
                    q = match b {
                        V::S(s) => q.bind(s.to_string()),
                        V::I(i) => q.bind(*i),
                        V::OptI(i) => q.bind(*i),
                    };
                }
                q.execute(&mut *conn)
                    .await
                    .map(|r| r.rows_affected())
                    .map_err(|e| e.to_string())
            }
        }
    }

    pub async fn close(self) {
        match self {
            Raw::Sqlite(c) => c.close().await.expect("closing the raw connection"),
            Raw::Pg(c) => c.close().await.expect("closing the raw connection"),
        }
    }
}

/// A plain connection to the file, as an operator with the sqlite3 shell would have.
pub async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(std::time::Duration::from_secs(5)),
    )
    .await
    .expect("a raw connection to the store's file")
}

pub fn user(n: u32) -> Principal {
    Principal::new(format!("U{n}"), format!("user{n}@example.com"))
}

pub fn resource(name: &str) -> Principal {
    Principal::new(format!("R-{name}"), name)
}

/// Builds grants; every field has a sensible default.
#[derive(Clone)]
pub struct GrantBuilder {
    seq: u128,
    at: DateTime<Utc>,
    spec: GrantSpec,
    state: GrantState,
    requester: String,
}

impl GrantBuilder {
    pub fn new(seq: u128) -> Self {
        Self {
            seq,
            at: t0(),
            spec: GrantSpec::EphemeralGroup {
                users: vec![user(1)],
                resources: vec![resource("prod-db")],
            },
            state: GrantState::Scheduled,
            requester: "alice-token".into(),
        }
    }

    /// A spec of the given kind naming `users` and `resources` where the kind has them.
    pub fn kind(
        mut self,
        kind: GrantKind,
        users: Vec<Principal>,
        resources: Vec<Principal>,
    ) -> Self {
        let group = Principal::new("G1", "oncall");
        let sa = Principal::new("SA1", "ci-bot");
        self.spec = match kind {
            GrantKind::EphemeralGroup => GrantSpec::EphemeralGroup { users, resources },
            GrantKind::GroupMembership => GrantSpec::GroupMembership { group, users },
            GrantKind::GroupAccess => GrantSpec::GroupAccess { group, resources },
            GrantKind::ServiceAccess => GrantSpec::ServiceAccess {
                service_account: sa,
                resources,
            },
            GrantKind::ServiceKey => GrantSpec::ServiceKey {
                service_account: sa,
            },
        };
        self
    }

    pub fn state(mut self, state: GrantState) -> Self {
        self.state = state;
        self
    }

    /// Shifts creation (and so the id's time part) by `secs` seconds.
    pub fn created_plus(mut self, secs: i64) -> Self {
        self.at += Duration::seconds(secs);
        self
    }

    pub fn build(self) -> Grant {
        Grant {
            id: GrantId::from_parts(self.at, self.seq),
            spec: self.spec,
            requester: self.requester,
            reason: format!("INC-{}", self.seq),
            created_at: self.at,
            starts_at: self.at + Duration::minutes(1),
            expires_at: self.at + Duration::hours(2),
            state: self.state,
            revoked_at: None,
            revoke_reason: None,
            retry: RetryState::default(),
        }
    }
}
