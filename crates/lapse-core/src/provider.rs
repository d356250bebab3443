//! The boundary between the engine and the remote access system, in lapse's own terms.
//!
//! The engine depends on this trait only; `lapse-twingate` implements it over the Twingate
//! Admin API. Every write carries a [`Priority`] so that a rate-limited implementation can
//! serve revocations before new access.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An opaque remote identifier (a Relay global ID in Twingate).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RemoteId(pub String);

impl RemoteId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for RemoteId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// How a write is to be sent: its budget queue, and the instant from which it must not be sent.
///
/// `not_after` is checked when the write is about to go out (after any wait for the budget or
/// a server's `Retry-After`), not when it was planned: an apply that would arrive after its
/// grant's end is not sent at all ([`ProviderError::NotSent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTerms {
    pub priority: Priority,
    pub not_after: Option<DateTime<Utc>>,
}

impl WriteTerms {
    /// Whether a write sent at `now` is too late.
    pub fn too_late(&self, now: DateTime<Utc>) -> bool {
        self.not_after.is_some_and(|t| now >= t)
    }
}

impl From<Priority> for WriteTerms {
    fn from(priority: Priority) -> Self {
        Self {
            priority,
            not_after: None,
        }
    }
}

/// Which budget queue a write waits in: revocations go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Taking access away (or cleaning up): served first.
    Revoke,
    /// Giving access.
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GroupType {
    Manual,
    Synced,
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: RemoteId,
    /// `None` for a user Twingate knows without an email (the field is nullable).
    pub email: Option<String>,
}

/// A resource or service account found by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedRef {
    pub id: RemoteId,
    pub name: String,
}

/// A group with its complete membership (every page read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub id: RemoteId,
    pub name: String,
    pub group_type: GroupType,
    pub is_active: bool,
    pub users: Vec<RemoteId>,
    pub resources: Vec<RemoteId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrincipalKind {
    Group,
    ServiceAccount,
}

/// One principal's access to a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEdge {
    pub principal: RemoteId,
    pub principal_kind: PrincipalKind,
    /// Server-side expiry. The remote may still list an edge whose expiry has passed.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A resource with every access edge (every page read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceInfo {
    pub id: RemoteId,
    pub name: String,
    pub access: Vec<AccessEdge>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: RemoteId,
    pub name: String,
    pub status: KeyStatus,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A service account with its resources and keys (every page read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountInfo {
    pub id: RemoteId,
    pub name: String,
    pub resources: Vec<RemoteId>,
    pub keys: Vec<KeyInfo>,
}

/// A service-key token. Shown once; never logged, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyToken(String);

impl KeyToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }
    /// The token itself, for handing to the requester. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyToken([redacted])")
    }
}

#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: KeyInfo,
    pub token: KeyToken,
}

/// The users one group update adds and removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipChange {
    pub add: Vec<RemoteId>,
    pub remove: Vec<RemoteId>,
}

/// One edge to add to a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToAdd {
    pub principal: RemoteId,
    /// Server-side backstop; must be `None` for service accounts.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Why a provider call failed, classified by what the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Over the remote's rate limit; nothing was processed. Try again after the wait.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// Failed before anything could have been applied (5xx, timeout or reset before sending).
    #[error("transient failure: {0}")]
    Transient(String),
    /// A write whose answer was lost after it was sent: it may or may not have been applied.
    /// Look before acting again.
    #[error("unknown outcome: {0}")]
    UnknownOutcome(String),
    /// The object does not exist (any more). For a removal, that is success.
    #[error("already gone: {0}")]
    AlreadyGone(String),
    /// Not sent: its [`WriteTerms::not_after`] had passed when it was about to go out.
    /// Nothing was sent, so nothing was applied.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Refused by a business rule (`ok:false`), or `ok:true` without an entity.
    #[error("rejected: {0}")]
    Rejected(String),
    /// Bad, missing or under-privileged credentials (401/403).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The endpoint is not a Twingate API (HTML page, non-JSON body, wrong network name).
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// The request itself was invalid (top-level GraphQL errors, unparsable IDs).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// What the engine does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later with backoff (or after the given wait).
    Retry,
    /// Look up the remote state before acting again.
    Unknown,
    /// The target is gone: a removal succeeded, an addition can never succeed.
    Gone,
    /// Deliberately not sent (too late): nothing happened remotely.
    NotSent,
    /// Will not succeed by retrying: an apply fails; a revocation keeps trying and alarms.
    Permanent,
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::RateLimited { .. } | Self::Transient(_) => ErrorClass::Retry,
            Self::UnknownOutcome(_) => ErrorClass::Unknown,
            Self::NotSent(_) => ErrorClass::NotSent,
            Self::AlreadyGone(_) => ErrorClass::Gone,
            Self::Rejected(_)
            | Self::Unauthorized(_)
            | Self::Misconfigured(_)
            | Self::Invalid(_) => ErrorClass::Permanent,
        }
    }

    /// The server's requested wait, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// Everything lapse needs from the remote access system.
///
/// Reads return complete lists (implementations follow every page). Writes are never retried
/// blindly by implementations; a lost answer is reported as [`ProviderError::UnknownOutcome`].
pub trait AccessProvider: Send + Sync {
    // --- directory ---
    fn user_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = ProviderResult<Option<UserRef>>> + Send;
    fn user(&self, id: &RemoteId) -> impl Future<Output = ProviderResult<Option<UserRef>>> + Send;
    /// Names are not unique remotely: a list.
    fn resources_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = ProviderResult<Vec<NamedRef>>> + Send;
    fn resource(
        &self,
        id: &RemoteId,
    ) -> impl Future<Output = ProviderResult<Option<ResourceInfo>>> + Send;
    /// Names are not unique remotely: a list.
    fn groups_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = ProviderResult<Vec<GroupInfo>>> + Send;
    /// Every group whose name starts with `prefix` (lapse's own groups).
    fn groups_with_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = ProviderResult<Vec<GroupInfo>>> + Send;
    fn group(
        &self,
        id: &RemoteId,
    ) -> impl Future<Output = ProviderResult<Option<GroupInfo>>> + Send;
    fn service_accounts_by_name(
        &self,
        name: &str,
    ) -> impl Future<Output = ProviderResult<Vec<ServiceAccountInfo>>> + Send;
    fn service_account(
        &self,
        id: &RemoteId,
    ) -> impl Future<Output = ProviderResult<Option<ServiceAccountInfo>>> + Send;

    // --- writes ---
    /// Not idempotent: a second call makes a second group with the same name.
    fn create_group(
        &self,
        name: &str,
        users: &[RemoteId],
        resources: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<RemoteId>> + Send;
    fn delete_group(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
    /// One call for many users of one group. Adding a present or removing an absent user is accepted.
    fn update_group_users(
        &self,
        group: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
    /// [`update_group_users`](Self::update_group_users) with the change decided when the write
    /// is about to go out: `build` is called once the write budget hands out its permit (and
    /// after any wait), so that every member due by then goes into the same call. `build`
    /// answers the change with a value the caller keeps (what the call stands for), or `None`
    /// when there is nothing left to send (the permit is given back). The answer is `None`
    /// exactly when `build` said so.
    ///
    /// The default suits a provider without a budget: it builds at once.
    fn update_group_users_when_sent<T, F>(
        &self,
        group: &RemoteId,
        terms: WriteTerms,
        build: F,
    ) -> impl Future<Output = Option<(T, ProviderResult<()>)>> + Send
    where
        T: Send,
        F: FnOnce() -> Option<(T, MembershipChange)> + Send,
    {
        async move {
            let (value, change) = build()?;
            let result = self
                .update_group_users(group, &change.add, &change.remove, terms)
                .await;
            Some((value, result))
        }
    }
    /// Upsert: re-adding an existing principal overwrites its expiry.
    fn add_resource_access(
        &self,
        resource: &RemoteId,
        access: &[AccessToAdd],
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
    fn remove_resource_access(
        &self,
        resource: &RemoteId,
        principals: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
    fn update_service_account_resources(
        &self,
        service_account: &RemoteId,
        add: &[RemoteId],
        remove: &[RemoteId],
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
    /// `expiration_days`: whole days, 1..=365 (0 would mean never, which lapse never asks for).
    fn create_key(
        &self,
        service_account: &RemoteId,
        name: &str,
        expiration_days: u16,
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<CreatedKey>> + Send;
    fn revoke_key(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
    fn delete_key(
        &self,
        id: &RemoteId,
        terms: impl Into<WriteTerms> + Send,
    ) -> impl Future<Output = ProviderResult<()>> + Send;
}
