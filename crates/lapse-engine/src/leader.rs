//! Leadership on a shared (PostgreSQL) store: take the lease before the reconcile loop starts,
//! renew it, fence the store's engine batches with its epoch, and refuse every remote write
//! once the lease may have run out.
//!
//! Two guards, one per side of an intent: the store refuses a batch (an intent or an outcome)
//! from an epoch that has ended, checked under the write lock a takeover also takes; and
//! [`Fenced`] refuses a remote write once this daemon's own clock says its lease may have run
//! out (measured from before the renewal was sent, so it ends no later than the database's).
//! A leader that loses the lease does not try to carry on: [`Leadership::lost`] resolves and
//! the daemon stops, to come back as a standby.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use lapse_core::provider::{
    AccessProvider, AccessToAdd, CreatedKey, GroupInfo, MembershipChange, NamedRef, ProviderError,
    ProviderResult, RemoteId, ResourceInfo, ServiceAccountInfo, UserRef, WriteTerms,
};
use lapse_store::{Backend, LeaseStatus, Store, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Kept off the lease's end: a write must be sent this long before the lease may run out.
const MARGIN: Duration = Duration::from_millis(500);

/// Until when this daemon may send remote writes. `None`: without limit (SQLite, one daemon).
#[derive(Debug, Clone, Default)]
pub struct LeaseClock {
    until: Arc<Mutex<Option<Instant>>>,
    limited: bool,
}

impl LeaseClock {
    /// A clock that never runs out.
    pub fn unlimited() -> Self {
        Self::default()
    }

    fn limited() -> Self {
        Self {
            until: Arc::new(Mutex::new(Some(Instant::now()))),
            limited: true,
        }
    }

    fn extend_to(&self, until: Instant) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
    }

    fn end(&self) {
        self.extend_to(Instant::now());
    }

    /// The wall-clock time after which no remote write may be sent: the lease's end as known
    /// now. `None` without limit.
    pub fn deadline(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        if !self.limited {
            return None;
        }
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        let left = until.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        });
        Some(chrono::Utc::now() + chrono::Duration::from_std(left).unwrap_or_default())
    }

    /// Whether a remote write may start now.
    pub fn valid(&self) -> bool {
        if !self.limited {
            return true;
        }
        self.until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|u| Instant::now() < u)
    }
}

/// This daemon's leadership, from the moment it took the lease.
pub struct Leadership {
    /// The lease as taken.
    pub status: LeaseStatus,
    pub clock: LeaseClock,
    lost: watch::Receiver<Option<String>>,
    /// Held where nothing renews (SQLite), so that `lost` never resolves.
    _never: Option<watch::Sender<Option<String>>>,
}

impl Leadership {
    /// Resolves, with why, when the lease is lost (never on SQLite).
    pub async fn lost(&mut self) -> String {
        match self.lost.wait_for(|l| l.is_some()).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The renewing task ended without a word: treat as lost.
            Err(_) => "the lease renewal stopped".to_owned(),
        }
    }
}

/// Waits until this daemon (`node`) holds the lease, polling often enough to take over within
/// about a second of the lease running out, then renews it every third of `lease` in the
/// background. The store is fenced with the epoch taken. On SQLite it returns at once.
pub async fn lead(store: &Store, node: &str, lease: Duration) -> Result<Leadership, StoreError> {
    let (tx, lost) = watch::channel(None);
    if store.backend() == Backend::Sqlite {
        metrics::gauge!("lapse_leader").set(1.0);
        return Ok(Leadership {
            status: store.try_lead(node, lease).await?,
            clock: LeaseClock::unlimited(),
            lost,
            _never: Some(tx),
        });
    }
    metrics::gauge!("lapse_leader").set(0.0);
    store.set_fence(None);
    let poll = (lease / 3).min(Duration::from_secs(1));
    let clock = LeaseClock::limited();
    let mut waited = false;
    let status = loop {
        let sent = Instant::now();
        match store.try_lead(node, lease).await {
            Ok(s) if s.leader => {
                clock.extend_to(sent + lease.saturating_sub(MARGIN));
                break s;
            }
            Ok(s) => {
                if !waited {
                    info!(holder = %s.holder, epoch = s.epoch, "standby: another daemon leads");
                    waited = true;
                }
            }
            Err(e) => warn!(error = %e, "could not reach the leader lease; trying again"),
        }
        tokio::time::sleep(poll).await;
    };
    store.set_fence(Some((node.to_owned(), status.epoch)));
    metrics::gauge!("lapse_leader").set(1.0);
    metrics::gauge!("lapse_leader_epoch").set(status.epoch as f64);
    metrics::counter!("lapse_lease_renewals_total", "outcome" => "taken").increment(1);
    info!(epoch = status.epoch, node, "leader: took the lease");
    tokio::spawn(renew(
        store.clone(),
        node.to_owned(),
        lease,
        status.epoch,
        clock.clone(),
        tx,
    ));
    Ok(Leadership {
        status,
        clock,
        lost,
        _never: None,
    })
}

async fn renew(
    store: Store,
    node: String,
    lease: Duration,
    epoch: i64,
    clock: LeaseClock,
    lost: watch::Sender<Option<String>>,
) {
    let every = lease / 3;
    let why = loop {
        tokio::time::sleep(every).await;
        // The leadership was given up (the daemon is stepping down): renew no more.
        if lost.is_closed() {
            return;
        }
        let sent = Instant::now();
        match store.try_lead(&node, lease).await {
            Ok(s) if s.leader && s.epoch == epoch => {
                clock.extend_to(sent + lease.saturating_sub(MARGIN));
                metrics::counter!("lapse_lease_renewals_total", "outcome" => "renewed")
                    .increment(1);
            }
            Ok(s) => {
                break format!(
                    "the lease is held by `{}` in epoch {} (this daemon led epoch {epoch})",
                    s.holder, s.epoch
                );
            }
            Err(e) => {
                metrics::counter!("lapse_lease_renewals_total", "outcome" => "failed").increment(1);
                if !clock.valid() {
                    break format!("the lease could not be renewed before it ran out: {e}");
                }
                warn!(error = %e, "could not renew the leader lease; trying again");
            }
        }
    };
    clock.end();
    store.set_fence(None);
    metrics::gauge!("lapse_leader").set(0.0);
    error!(reason = %why, "leadership lost: stepping down");
    let _ = lost.send(Some(why));
}

/// A provider whose writes are refused once [`LeaseClock`] says the lease may have run out.
/// Reads pass through: they change nothing.
pub struct Fenced<P> {
    inner: Arc<P>,
    clock: LeaseClock,
}

impl<P> Fenced<P> {
    pub fn new(inner: Arc<P>, clock: LeaseClock) -> Self {
        Self { inner, clock }
    }

    /// `terms` with the lease's end as a deadline too: a write that waits for the budget or a
    /// `Retry-After` past the lease is not sent at all (the transport checks `not_after` each
    /// time it is about to send).
    fn fence(&self, terms: impl Into<WriteTerms>) -> WriteTerms {
        let mut t: WriteTerms = terms.into();
        if let Some(d) = self.clock.deadline() {
            t.not_after = Some(t.not_after.map_or(d, |n| n.min(d)));
        }
        t
    }

    fn check(&self) -> ProviderResult<()> {
        if self.clock.valid() {
            Ok(())
        } else {
            Err(ProviderError::Transient(
                "not sent: this daemon's leader lease may have run out".to_owned(),
            ))
        }
    }
}

impl<P: AccessProvider> AccessProvider for Fenced<P> {
    async fn user_by_email(&self, email: &str) -> ProviderResult<Option<UserRef>> {
        self.inner.user_by_email(email).await
    }
    async fn user(&self, id: &RemoteId) -> ProviderResult<Option<UserRef>> {
        self.inner.user(id).await
    }
    async fn resources_by_name(&self, name: &str) -> ProviderResult<Vec<NamedRef>> {
        self.inner.resources_by_name(name).await
    }
    async fn resource(&self, id: &RemoteId) -> ProviderResult<Option<ResourceInfo>> {
        self.inner.resource(id).await
    }
    async fn groups_by_name(&self, name: &str) -> ProviderResult<Vec<GroupInfo>> {
        self.inner.groups_by_name(name).await
    }
    async fn groups_with_prefix(&self, prefix: &str) -> ProviderResult<Vec<GroupInfo>> {
        self.inner.groups_with_prefix(prefix).await
    }
    async fn group(&self, id: &RemoteId) -> ProviderResult<Option<GroupInfo>> {
        self.inner.group(id).await
    }
    async fn service_accounts_by_name(
        &self,
        name: &str,
    ) -> ProviderResult<Vec<ServiceAccountInfo>> {
        self.inner.service_accounts_by_name(name).await
    }
    async fn service_account(&self, id: &RemoteId) -> ProviderResult<Option<ServiceAccountInfo>> {
        self.inner.service_account(id).await
    }
    async fn create_group(
        &self,
        name: &str,
        users: &[RemoteId],
        resources: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<RemoteId> {
        self.check()?;
        self.inner
            .create_group(name, users, resources, self.fence(terms))
            .await
    }
    async fn delete_group(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner.delete_group(id, self.fence(terms)).await
    }
    async fn update_group_users(
        &self,
        group: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner
            .update_group_users(group, add, remove, self.fence(terms))
            .await
    }
    async fn update_group_users_when_sent<T, F>(
        &self,
        group: &RemoteId,
        terms: WriteTerms,
        build: F,
    ) -> Option<(T, ProviderResult<()>)>
    where
        T: Send,
        F: FnOnce() -> Option<(T, MembershipChange)> + Send,
    {
        if let Err(e) = self.check() {
            // Refused before anything is built: the caller's own value stands for the call.
            let (value, _) = build()?;
            return Some((value, Err(e)));
        }
        self.inner
            .update_group_users_when_sent(group, self.fence(terms), build)
            .await
    }
    async fn add_resource_access(
        &self,
        resource: &RemoteId,
        access: &[AccessToAdd],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner
            .add_resource_access(resource, access, self.fence(terms))
            .await
    }
    async fn remove_resource_access(
        &self,
        resource: &RemoteId,
        principals: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner
            .remove_resource_access(resource, principals, self.fence(terms))
            .await
    }
    async fn update_service_account_resources(
        &self,
        service_account: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner
            .update_service_account_resources(service_account, add, remove, self.fence(terms))
            .await
    }
    async fn create_key(
        &self,
        service_account: &RemoteId,
        name: &str,
        expiration_days: u16,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<CreatedKey> {
        self.check()?;
        self.inner
            .create_key(service_account, name, expiration_days, self.fence(terms))
            .await
    }
    async fn revoke_key(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner.revoke_key(id, self.fence(terms)).await
    }
    async fn delete_key(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> ProviderResult<()> {
        self.check()?;
        self.inner.delete_key(id, self.fence(terms)).await
    }
}
