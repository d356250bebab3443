//! lapse's domain: grants, their lifecycle, the access-provider boundary and the pure planner.
//!
//! Nothing in this crate performs IO or reads the clock: time is always passed in.

pub mod access_list;
pub mod backoff;
pub mod grant;
pub mod grant_policy;
pub mod history;
pub mod ownership;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod request;
pub mod role;
pub mod text;

pub use grant::{Grant, GrantId, GrantKind, GrantSpec, GrantState, Principal, RetryState};
pub use ownership::{Edge, EdgeKind, OwnedEdge};
pub const REMOTE_PREFIX: &str = "lapse-";

pub use history::HistoryEvent;
pub use ownership::{ObjectKind, OwnedObject};
pub use provider::{AccessProvider, ProviderError, RemoteId};
pub use request::{RequestState, Transition};
pub use role::{Role, UnknownRole};
pub use text::{TextError, TextKind, TextProblem};
