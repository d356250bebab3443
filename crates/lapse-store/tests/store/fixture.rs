//! Builders for grants and helpers for opening stores and raw connections in temp dirs.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use lapse_core::{Grant, GrantId, GrantKind, GrantSpec, GrantState, Principal, RetryState};
use lapse_store::Store;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;

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
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(&dir.path().join("lapse.db"))
            .await
            .expect("a fresh store opens");
        Self { dir, store }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("lapse.db")
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
