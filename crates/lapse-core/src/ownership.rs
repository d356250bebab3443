//! The ownership record: which remote edges and objects lapse added, so it only ever takes
//! away what it gave (I2) and only touches what it manages (I5).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::grant::GrantId;
use crate::provider::RemoteId;

/// What a remote edge links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// A user in a group: container = group, member = user.
    Membership,
    /// A group's access to a resource: container = resource, member = group.
    Access,
    /// A resource of a service account: container = service account, member = resource.
    ServiceResource,
}

impl EdgeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Membership => "membership",
            Self::Access => "access",
            Self::ServiceResource => "service-resource",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Membership, Self::Access, Self::ServiceResource]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One remote edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Edge {
    pub kind: EdgeKind,
    pub container: RemoteId,
    pub member: RemoteId,
}

impl Edge {
    pub fn new(kind: EdgeKind, container: &RemoteId, member: &RemoteId) -> Self {
        Self {
            kind,
            container: container.clone(),
            member: member.clone(),
        }
    }
}

/// An edge lapse added (or is about to add: the record is written before the call).
///
/// Edges that existed before any grant never get a record, so they are never removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedEdge {
    pub edge: Edge,
    /// The grant whose apply added it (others may rely on it later).
    pub added_by: GrantId,
    /// The server-side expiry lapse set on it (access edges only).
    pub expires_at: Option<DateTime<Utc>>,
    /// The add call succeeded. Until then the record is an intent.
    pub confirmed: bool,
}

/// The objects lapse creates for a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectKind {
    /// The group of an ephemeral-group grant.
    Group,
    /// The key of a service-key grant.
    Key,
}

impl ObjectKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Group, Self::Key]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A remote object lapse creates under a deterministic name.
///
/// Written with `remote_id = None` before the create call (intent); an intent without an id
/// means the outcome is unknown and the name must be looked up before creating again (I3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedObject {
    pub grant: GrantId,
    pub kind: ObjectKind,
    pub name: String,
    pub remote_id: Option<RemoteId>,
    /// For keys: revoked remotely, waiting to be deleted.
    pub revoked: bool,
}
