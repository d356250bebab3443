//! The PostgreSQL backend: one database shared by several daemons.
//!
//! Every write transaction takes one transaction-scoped advisory lock first
//! ([`WRITE_LOCK`]), the counterpart of SQLite's `BEGIN IMMEDIATE`: writes from every daemon
//! are serialised, so what a transaction reads (the history's head, an idempotency key, the
//! lease) cannot change before it writes, and history numbers are handed out once each, in
//! order, with no gap. Reads take no lock.

mod grants;
mod history;
mod ownership;
pub use ownership::GrantChange;
mod requests;
mod tokens;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapse_core::HistoryEvent;
use serde_json::json;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::error::{Step, StoreError};
use crate::{NewHistory, OpenMode};

use history::PgChainHead;

/// The PostgreSQL migrations, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The advisory lock key every write transaction holds ("lapse" in ASCII).
const WRITE_LOCK: i64 = 0x6c_6170_7365;

/// The channel on which a daemon announces a new grant or request to the leader.
const CHANNEL: &str = "lapse.work";

/// Connections per daemon: the API's readers and writers, the engine, the lease.
const CONNECTIONS: u32 = 8;

/// How long to wait for a connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the engine's batches must still hold when written; shared by a store's clones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Fence {
    /// Never set: one process uses the store alone (tests, local commands).
    #[default]
    Unfenced,
    /// Leading in this epoch: a batch is written only while the lease is still this one.
    Leader { holder: String, epoch: i64 },
    /// A standby: no batch is written.
    Standby,
}

#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
    /// The URL without its password.
    shown: Arc<String>,
    fence: Arc<Mutex<Fence>>,
}

/// The leader lease as one daemon sees it after [`crate::Store::try_lead`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Whether the asking daemon holds the lease now.
    pub leader: bool,
    /// Who holds it (empty when nobody ever has).
    pub holder: String,
    /// The fencing token: grows by one whenever the lease changes hands.
    pub epoch: i64,
    /// When it runs out, by the database's clock; `None` on SQLite, where it never does.
    pub expires_at: Option<DateTime<Utc>>,
    /// This call took the lease (a new epoch began).
    pub elected: bool,
}

/// Whether a daemon leads or stands by, for `/readyz` and `lapse doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    Leader,
    Standby,
}

impl LeaseStatus {
    /// The single daemon of a SQLite store.
    pub(crate) fn sole(holder: &str) -> Self {
        Self {
            leader: true,
            holder: holder.to_owned(),
            epoch: 0,
            expires_at: None,
            elected: false,
        }
    }

    pub fn state(&self) -> LeaseState {
        if self.leader {
            LeaseState::Leader
        } else {
            LeaseState::Standby
        }
    }
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Standby => "standby",
        }
    }
}

/// One line on leadership for `lapse doctor` and logs: `lease` as [`crate::Store::lease`]
/// answers it (`None` on SQLite), seen from the daemon named `me`.
pub fn describe_lease(lease: Option<&LeaseStatus>, me: &str) -> String {
    let Some(l) = lease else {
        return "leader, epoch 0 (SQLite: one daemon, always the leader)".to_owned();
    };
    let until = l
        .expires_at
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    match (l.leader, l.holder == me) {
        (true, true) => format!(
            "leader: this daemon (`{me}`), epoch {}, lease until {until}",
            l.epoch
        ),
        (true, false) => format!(
            "standby: `{}` leads in epoch {}, lease until {until}",
            l.holder, l.epoch
        ),
        (false, _) if l.holder.is_empty() => {
            "no leader yet: no daemon has taken the lease".to_owned()
        }
        (false, _) => format!(
            "no leader: the lease of `{}` (epoch {}) ran out at {until}; a daemon takes it on its next try",
            l.holder, l.epoch
        ),
    }
}

/// `url` without the password, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

pub(crate) async fn next_notice(listener: &mut PgListener) -> Result<(), StoreError> {
    listener
        .recv()
        .await
        .step("waiting for work announced by another daemon")?;
    // One wake answers every announcement already received: the leader reads what changed
    // from the history, not from the notices.
    while listener.next_buffered().is_some() {}
    Ok(())
}

impl PgStore {
    pub(crate) async fn open(
        url: &str,
        password: Option<&str>,
        mode: OpenMode,
    ) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let connect_err = |source| StoreError::Connect {
            url: shown.clone(),
            source,
        };
        let mut options = PgConnectOptions::from_str(url).map_err(connect_err)?;
        if let Some(pw) = password {
            options = options.password(pw);
        }
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        check_durability(&pool).await?;
        match mode {
            OpenMode::Create => match MIGRATOR.run(&pool).await {
                Ok(()) => {}
                Err(MigrateError::VersionMismatch(version)) => {
                    return Err(StoreError::MigrationChanged {
                        version,
                        detail: "was applied with contents that differ from this build's",
                    });
                }
                Err(MigrateError::VersionMissing(version)) => {
                    return Err(StoreError::MigrationChanged {
                        version,
                        detail: "was applied but is unknown to this build",
                    });
                }
                Err(e) => return Err(StoreError::Migrate(e)),
            },
            OpenMode::Existing => {
                let present: bool = sqlx::query_scalar(
                    "SELECT to_regclass('leader_lease') IS NOT NULL \
                     AND to_regclass('_sqlx_migrations') IS NOT NULL",
                )
                .fetch_one(&pool)
                .await
                .step("looking for lapse's schema")?;
                if !present {
                    return Err(StoreError::NoSchema { url: shown });
                }
            }
        }
        tracing::debug!(url = %shown, "store opened");
        Ok(Self {
            pool,
            shown: Arc::new(shown),
            fence: Arc::new(Mutex::new(Fence::default())),
        })
    }

    pub(crate) fn shown_url(&self) -> &str {
        &self.shown
    }

    /// A write transaction holding the write lock from its first statement.
    pub(crate) async fn begin_write(
        &self,
        step: &'static str,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.step(step)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(WRITE_LOCK)
            .execute(&mut *tx)
            .await
            .step(step)?;
        Ok(tx)
    }

    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write("taking the write lock").await?;
        let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
            .fetch_one(&mut *tx)
            .await
            .step("reading transaction_read_only")?;
        tx.rollback().await.step("releasing the write lock")?;
        if read_only != "off" {
            return Err(StoreError::UntrustedDatabase {
                what: "transaction_read_only",
                found: read_only,
                expected: "off (a primary, not a read replica)".into(),
            });
        }
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn set_fence(&self, fence: Option<(String, i64)>) {
        let new = match fence {
            Some((holder, epoch)) => Fence::Leader { holder, epoch },
            None => Fence::Standby,
        };
        *self.fence.lock().unwrap_or_else(|p| p.into_inner()) = new;
    }

    /// Inside a write transaction: refuses to go on unless the fence still holds.
    pub(crate) async fn check_fence(
        &self,
        tx: &mut Transaction<'static, Postgres>,
    ) -> Result<(), StoreError> {
        let fence = self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let held = match &fence {
            Fence::Unfenced => return Ok(()),
            Fence::Leader { holder, epoch } => format!("led as `{holder}` in epoch {epoch}"),
            Fence::Standby => "is a standby".to_owned(),
        };
        let (holder, epoch, live): (String, i64, bool) = sqlx::query_as(
            "SELECT holder, epoch, expires_at > clock_timestamp() FROM leader_lease WHERE id = 1",
        )
        .fetch_one(&mut **tx)
        .await
        .step("checking the leader lease")?;
        let ours =
            matches!(&fence, Fence::Leader { holder: h, epoch: e } if *h == holder && *e == epoch);
        if ours && live {
            return Ok(());
        }
        Err(StoreError::Fenced {
            held,
            holder,
            epoch,
            expired: if live { "" } else { ", which has run out" },
        })
    }

    /// Announces new work to the leader; delivered when `tx` commits.
    pub(crate) async fn announce(
        tx: &mut Transaction<'static, Postgres>,
        what: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(what)
            .execute(&mut **tx)
            .await
            .step("announcing new work")?;
        Ok(())
    }

    pub(crate) async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .step("connecting to listen for work")?;
        listener.listen(CHANNEL).await.step("listening for work")?;
        Ok(listener)
    }

    pub(crate) async fn lease(&self) -> Result<LeaseStatus, StoreError> {
        let (holder, epoch, expires_at, live): (String, i64, DateTime<Utc>, bool) = sqlx::query_as(
            // The row starts at `-infinity`, which chrono cannot hold: a lease never taken
            // reads as having run out at the Unix epoch.
            "SELECT holder, epoch, GREATEST(expires_at, 'epoch'::timestamptz), \
                 expires_at > clock_timestamp() FROM leader_lease WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await
        .step("reading the leader lease")?;
        Ok(LeaseStatus {
            leader: live,
            holder,
            epoch,
            expires_at: Some(expires_at),
            elected: false,
        })
    }

    pub(crate) async fn try_lead(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<LeaseStatus, StoreError> {
        const STEP: &str = "taking or renewing the leader lease";
        lapse_core::text::check_name("holder", holder)?;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.begin_write(STEP).await?;
        let (current, epoch, live): (String, i64, bool) = sqlx::query_as(
            "SELECT holder, epoch, expires_at > clock_timestamp() FROM leader_lease \
             WHERE id = 1 FOR UPDATE",
        )
        .fetch_one(&mut *tx)
        .await
        .step(STEP)?;
        if live && current != holder {
            tx.rollback().await.step(STEP)?;
            return self.lease().await.map(|mut s| {
                s.leader = false;
                s
            });
        }
        // Renewing a live lease keeps the epoch; taking one that ran out (even one's own: a
        // batch may have been refused meanwhile) starts the next.
        let elected = !live;
        let new_epoch = if elected { epoch + 1 } else { epoch };
        let expires_at: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE leader_lease SET holder = $1, epoch = $2, \
             expires_at = clock_timestamp() + $3 * interval '1 millisecond', \
             renewed_at = clock_timestamp() WHERE id = 1 RETURNING expires_at",
        )
        .bind(holder)
        .bind(new_epoch)
        .bind(lease_ms)
        .fetch_one(&mut *tx)
        .await
        .step(STEP)?;
        if elected {
            let mut head = PgChainHead::read(&mut tx).await?;
            head.append(
                &mut tx,
                &NewHistory {
                    at: Utc::now(),
                    grant_id: None,
                    actor: "lapse".to_owned(),
                    event: HistoryEvent::LeaderElected.as_str().to_owned(),
                    detail: json!({
                        "holder": holder,
                        "epoch": new_epoch,
                        "previous_holder": current,
                        "previous_epoch": epoch,
                        "lease_ms": lease_ms,
                    }),
                },
            )
            .await?;
        }
        tx.commit().await.step(STEP)?;
        Ok(LeaseStatus {
            leader: true,
            holder: holder.to_owned(),
            epoch: new_epoch,
            expires_at: Some(expires_at),
            elected,
        })
    }

    pub(crate) async fn release_lead(&self, holder: &str) -> Result<(), StoreError> {
        const STEP: &str = "giving up the leader lease";
        let mut tx = self.begin_write(STEP).await?;
        sqlx::query(
            "UPDATE leader_lease SET expires_at = clock_timestamp() \
             WHERE id = 1 AND holder = $1 AND expires_at > clock_timestamp()",
        )
        .bind(holder)
        .execute(&mut *tx)
        .await
        .step(STEP)?;
        tx.commit().await.step(STEP)
    }
}

/// Refuses a server on which a commit could be acknowledged and then lost (I4).
async fn check_durability(pool: &PgPool) -> Result<(), StoreError> {
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(pool)
        .await
        .step("reading back fsync")?;
    if fsync != "on" {
        return Err(StoreError::UntrustedDatabase {
            what: "fsync",
            found: fsync,
            expected: "on".into(),
        });
    }
    let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await
        .step("reading back synchronous_commit")?;
    if sync == "off" {
        return Err(StoreError::UntrustedDatabase {
            what: "synchronous_commit",
            found: sync,
            expected: "on".into(),
        });
    }
    Ok(())
}

/// Reads the number of rows a statement changed, for operations that must change exactly one.
pub(crate) fn one_row(
    result: sqlx::postgres::PgQueryResult,
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

/// Reads a column, naming the step if it is missing or of the wrong type.
pub(crate) fn col<'r, T>(
    row: &'r sqlx::postgres::PgRow,
    name: &'static str,
    step: &'static str,
) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    use sqlx::Row;
    row.try_get(name).step(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_cut_out_of_urls() {
        assert_eq!(
            redact_url("postgres://lapse:s3cret@db.internal:5432/lapse"),
            "postgres://lapse@db.internal:5432/lapse"
        );
        assert_eq!(
            redact_url("postgres://lapse@db/lapse?sslmode=require"),
            "postgres://lapse@db/lapse?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/lapse"), "postgres://db/lapse");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn leadership_is_described_from_each_side() {
        let lease = LeaseStatus {
            leader: true,
            holder: "a".into(),
            epoch: 4,
            expires_at: None,
            elected: false,
        };
        assert!(
            describe_lease(Some(&lease), "a").starts_with("leader: this daemon (`a`), epoch 4")
        );
        assert!(describe_lease(Some(&lease), "b").starts_with("standby: `a` leads in epoch 4"));
        let lapsed = LeaseStatus {
            leader: false,
            ..lease
        };
        assert!(describe_lease(Some(&lapsed), "b").starts_with("no leader: the lease of `a`"));
        assert!(describe_lease(None, "a").contains("SQLite"));
    }
}
