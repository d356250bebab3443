//! Grants: what access, for whom, for how long, and where each one is in its life.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::provider::RemoteId;

/// A grant's id: a ULID, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GrantId(pub Ulid);

impl GrantId {
    /// A new id for a grant created at `now` with the given random bits.
    pub fn from_parts(now: DateTime<Utc>, random: u128) -> Self {
        let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        Self(Ulid::from_parts(ms, random))
    }

    /// The deterministic remote name of objects lapse creates for this grant (I3).
    pub fn remote_name(&self) -> String {
        format!(
            "{}{}",
            crate::REMOTE_PREFIX,
            self.0.to_string().to_lowercase()
        )
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for GrantId {
    type Err = ulid::DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s.trim()).map(Self)
    }
}

/// The five ways lapse turns a grant into Twingate access (design.md, "Grant kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantKind {
    EphemeralGroup,
    GroupMembership,
    GroupAccess,
    ServiceAccess,
    ServiceKey,
}

impl GrantKind {
    pub const ALL: [GrantKind; 5] = [
        Self::EphemeralGroup,
        Self::GroupMembership,
        Self::GroupAccess,
        Self::ServiceAccess,
        Self::ServiceKey,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::EphemeralGroup => "ephemeral-group",
            Self::GroupMembership => "group-membership",
            Self::GroupAccess => "group-access",
            Self::ServiceAccess => "service-access",
            Self::ServiceKey => "service-key",
        }
    }
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(s, &Self::ALL, Self::as_str, "grant kind")
    }
}

/// Parse one of a closed set of named values, listing them all when `s` is none of them.
fn parse_named<T: Copy>(
    s: &str,
    all: &[T],
    name: fn(&T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter().copied().find(|v| name(v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(name).collect();
        format!(
            "unknown {what} `{s}`; expected one of: {}",
            names.join(", ")
        )
    })
}

/// A remote object resolved at submission: its id, and the name a person knows it by
/// (an email for users).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Principal {
    pub id: RemoteId,
    pub name: String,
}

impl Principal {
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: RemoteId::new(id),
            name: name.into(),
        }
    }
}

/// What a grant gives, with every name already resolved to a remote id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GrantSpec {
    /// A new group `lapse-<id>` holding the users, with access to the resources.
    EphemeralGroup {
        users: Vec<Principal>,
        resources: Vec<Principal>,
    },
    /// Users added to an existing MANUAL group.
    GroupMembership {
        group: Principal,
        users: Vec<Principal>,
    },
    /// An existing group given access to resources, with a server-side expiry.
    GroupAccess {
        group: Principal,
        resources: Vec<Principal>,
    },
    /// Resources added to an existing service account.
    ServiceAccess {
        service_account: Principal,
        resources: Vec<Principal>,
    },
    /// A key `lapse-<id>` for a service account.
    ServiceKey { service_account: Principal },
}

impl GrantSpec {
    pub fn kind(&self) -> GrantKind {
        match self {
            Self::EphemeralGroup { .. } => GrantKind::EphemeralGroup,
            Self::GroupMembership { .. } => GrantKind::GroupMembership,
            Self::GroupAccess { .. } => GrantKind::GroupAccess,
            Self::ServiceAccess { .. } => GrantKind::ServiceAccess,
            Self::ServiceKey { .. } => GrantKind::ServiceKey,
        }
    }

    /// The people (users) this grant gives access to.
    pub fn users(&self) -> &[Principal] {
        match self {
            Self::EphemeralGroup { users, .. } | Self::GroupMembership { users, .. } => users,
            _ => &[],
        }
    }

    /// The resources this grant reaches directly.
    pub fn resources(&self) -> &[Principal] {
        match self {
            Self::EphemeralGroup { resources, .. }
            | Self::GroupAccess { resources, .. }
            | Self::ServiceAccess { resources, .. } => resources,
            _ => &[],
        }
    }

    /// The existing group or service account this grant changes, if any.
    pub fn target(&self) -> Option<&Principal> {
        match self {
            Self::GroupMembership { group, .. } | Self::GroupAccess { group, .. } => Some(group),
            Self::ServiceAccess {
                service_account, ..
            }
            | Self::ServiceKey { service_account } => Some(service_account),
            Self::EphemeralGroup { .. } => None,
        }
    }
}

/// Where a grant is in its life.
///
/// `scheduled → applying → active → revoking → expired | revoked`, and `failed` for an apply
/// that can never succeed (whatever it did apply is still taken away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantState {
    /// Accepted; its start is in the future.
    Scheduled,
    /// Its time has come; access is being put in place.
    Applying,
    /// Access is in place remotely.
    Active,
    /// Expired or ended early; access is being taken away.
    Revoking,
    /// Ended at its expiry; nothing of it remains remotely.
    Expired,
    /// Ended early by someone; nothing of it remains remotely.
    Revoked,
    /// Could never be applied; nothing of it remains remotely.
    Failed,
}

impl GrantState {
    pub const ALL: [GrantState; 7] = [
        Self::Scheduled,
        Self::Applying,
        Self::Active,
        Self::Revoking,
        Self::Expired,
        Self::Revoked,
        Self::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Applying => "applying",
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Failed => "failed",
        }
    }

    /// Nothing more will happen to a grant in a terminal state.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Expired | Self::Revoked | Self::Failed)
    }
}

impl fmt::Display for GrantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(s, &Self::ALL, Self::as_str, "state")
    }
}

/// Backoff state kept on the grant row so it survives restarts and resets on success.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryState {
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

impl RetryState {
    /// Whether the grant may be worked on at `now`.
    pub fn ready(&self, now: DateTime<Utc>) -> bool {
        self.next_attempt_at.is_none_or(|t| t <= now)
    }
}

/// A grant as the engine and the store see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: GrantId,
    pub spec: GrantSpec,
    /// Who asked (the API token's name).
    pub requester: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: GrantState,
    /// Set when someone ends the grant before its expiry.
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoke_reason: Option<String>,
    pub retry: RetryState,
}

impl Grant {
    pub fn kind(&self) -> GrantKind {
        self.spec.kind()
    }

    /// The instant the grant's access must be gone: its expiry, or its early end.
    pub fn ends_at(&self) -> DateTime<Utc> {
        match self.revoked_at {
            Some(r) if r < self.expires_at => r,
            _ => self.expires_at,
        }
    }

    /// Whether the grant should hold access at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        matches!(
            self.state,
            GrantState::Scheduled | GrantState::Applying | GrantState::Active
        ) && self.starts_at <= now
            && now < self.ends_at()
    }
}
