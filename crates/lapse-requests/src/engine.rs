//! The two engine commands the flow gives, behind a trait so the flow can be tested without a
//! reconcile loop.

use std::future::Future;

use chrono::{DateTime, Utc};
use lapse_core::{Grant, GrantId};
use lapse_engine::{EngineError, EngineHandle};

/// What the request flow asks of the engine.
pub trait GrantEngine: Send + Sync + 'static {
    /// A grant just stored, for the engine to apply.
    fn submitted(&self, grant: Grant) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Move a live grant's end to `end`; `request` is recorded on the `extended` event so a
    /// retried approval finds the extension done.
    fn extend(
        &self,
        id: GrantId,
        end: DateTime<Utc>,
        actor: &str,
        reason: &str,
        request: Option<&str>,
    ) -> impl Future<Output = Result<Grant, EngineError>> + Send;

    /// End a live grant early.
    fn revoke(
        &self,
        id: GrantId,
        actor: &str,
        reason: &str,
    ) -> impl Future<Output = Result<Grant, EngineError>> + Send;
}

impl GrantEngine for EngineHandle {
    fn submitted(&self, grant: Grant) -> impl Future<Output = Result<(), EngineError>> + Send {
        EngineHandle::submitted(self, grant)
    }

    fn extend(
        &self,
        id: GrantId,
        end: DateTime<Utc>,
        actor: &str,
        reason: &str,
        request: Option<&str>,
    ) -> impl Future<Output = Result<Grant, EngineError>> + Send {
        EngineHandle::extend(self, id, end, actor, reason, request)
    }

    fn revoke(
        &self,
        id: GrantId,
        actor: &str,
        reason: &str,
    ) -> impl Future<Output = Result<Grant, EngineError>> + Send {
        EngineHandle::revoke(self, id, actor, reason)
    }
}
