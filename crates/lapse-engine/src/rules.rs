//! What ending a grant early or moving its end records, decided from the grant as it stands:
//! the same rules whether the leader's engine records the change or another daemon writes it
//! straight to the shared store.

use chrono::{DateTime, Utc};
use lapse_core::{Grant, GrantState, HistoryEvent};
use lapse_store::{GrantChange, NewHistory};
use serde_json::json;

use crate::EngineError;

/// A revocation of `current` requested at `now` by `actor`: a grant already ending is left as
/// it is; any other gets `revoked_at` and a `revoke-requested` row, and its retries start over.
pub fn revoke(current: &Grant, now: DateTime<Utc>, actor: &str, reason: &str) -> GrantChange {
    if current.revoked_at.is_some() || current.state == GrantState::Revoking {
        return GrantChange::Unchanged(current.clone());
    }
    let mut g = current.clone();
    g.revoked_at = Some(now);
    g.revoke_reason = Some(reason.to_owned());
    g.retry = Default::default();
    let row = NewHistory {
        at: now,
        grant_id: Some(g.id),
        actor: actor.to_owned(),
        event: HistoryEvent::RevokeRequested.as_str().to_owned(),
        detail: json!({ "reason": reason }),
    };
    GrantChange::Changed(g, row)
}

/// Moving `current`'s end to `new_expires_at` at `now`: an ending grant is not brought back
/// (its access may already be partly gone), and an end is never moved earlier.
pub fn extend(
    current: &Grant,
    now: DateTime<Utc>,
    new_expires_at: DateTime<Utc>,
    actor: &str,
    reason: &str,
    request: Option<&str>,
) -> Result<GrantChange, EngineError> {
    if current.revoked_at.is_some()
        || current.state == GrantState::Revoking
        || current.state.is_terminal()
        || current.expires_at <= now
    {
        return Err(EngineError::Finished {
            id: current.id,
            state: current.state,
        });
    }
    if new_expires_at <= current.expires_at {
        return Ok(GrantChange::Unchanged(current.clone()));
    }
    let mut g = current.clone();
    let from = g.expires_at;
    g.expires_at = new_expires_at;
    let row = NewHistory {
        at: now,
        grant_id: Some(g.id),
        actor: actor.to_owned(),
        event: HistoryEvent::Extended.as_str().to_owned(),
        detail: json!({ "reason": reason, "from": from, "to": new_expires_at, "request": request }),
    };
    Ok(GrantChange::Changed(g, row))
}

/// The leader's copy of a grant brought up to date with the stored one, which another daemon
/// may have revoked or extended: the leader keeps its own state and progress, and takes the
/// request to end early (starting its retries over, as its own revocation does) and the later
/// end. `None` when nothing changes.
pub fn merge(held: &Grant, stored: &Grant) -> Option<Grant> {
    let mut g = held.clone();
    if g.revoked_at.is_none() && stored.revoked_at.is_some() {
        g.revoked_at = stored.revoked_at;
        g.revoke_reason = stored.revoke_reason.clone();
        g.retry = Default::default();
    }
    if stored.expires_at > g.expires_at && g.revoked_at.is_none() {
        g.expires_at = stored.expires_at;
    }
    (g != *held).then_some(g)
}
