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
/// end. `None` when nothing changes. A revocation recorded elsewhere ends the grant at `now`
/// at the latest ([`taken_in`]).
pub fn merge(held: &Grant, stored: &Grant, now: DateTime<Utc>) -> Option<Grant> {
    let mut g = held.clone();
    if g.revoked_at.is_none() && stored.revoked_at.is_some() {
        g.revoked_at = stored.revoked_at.map(|t| t.min(now));
        g.revoke_reason = stored.revoke_reason.clone();
        g.retry = Default::default();
    }
    if stored.expires_at > g.expires_at && g.revoked_at.is_none() {
        g.expires_at = stored.expires_at;
    }
    (g != *held).then_some(g)
}

/// A stored grant as the leader takes it in. Its revocation was stamped by the clock of the
/// daemon that recorded it, which may run ahead of the leader's: the leader takes it as "end
/// now" at the latest, so a grant revoked elsewhere never stays live for the clocks' skew.
pub fn taken_in(mut stored: Grant, now: DateTime<Utc>) -> Grant {
    stored.revoked_at = stored.revoked_at.map(|t| t.min(now));
    stored
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use lapse_core::{GrantId, GrantSpec, Principal, RetryState};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn grant(state: GrantState) -> Grant {
        Grant {
            id: GrantId::from_parts(t0(), 1),
            spec: GrantSpec::GroupAccess {
                group: Principal::new("G1", "oncall"),
                resources: vec![Principal::new("R1", "prod-db")],
            },
            requester: "x".into(),
            reason: "r".into(),
            created_at: t0(),
            starts_at: t0(),
            expires_at: t0() + Duration::hours(1),
            state,
            revoked_at: None,
            revoke_reason: None,
            retry: RetryState {
                attempts: 3,
                ..RetryState::default()
            },
        }
    }

    #[test]
    fn a_revocation_is_recorded_once() {
        let now = t0() + Duration::minutes(5);
        let GrantChange::Changed(g, row) = revoke(&grant(GrantState::Active), now, "ann", "done")
        else {
            panic!("a live grant is revoked");
        };
        assert_eq!(g.revoked_at, Some(now));
        assert_eq!(g.retry.attempts, 0);
        assert_eq!(row.event, "revoke-requested");
        assert_eq!(row.actor, "ann");
        assert!(matches!(
            revoke(&g, now, "bob", "again"),
            GrantChange::Unchanged(u) if u.revoke_reason.as_deref() == Some("done")
        ));
    }

    #[test]
    fn an_extension_never_shortens_nor_revives() {
        let now = t0() + Duration::minutes(5);
        let live = grant(GrantState::Active);
        let later = live.expires_at + Duration::hours(1);
        let Ok(GrantChange::Changed(g, row)) = extend(&live, now, later, "ann", "more", Some("q"))
        else {
            panic!("a live grant is extended");
        };
        assert_eq!(g.expires_at, later);
        assert_eq!(row.detail["request"], "q");
        assert!(matches!(
            extend(
                &live,
                now,
                live.expires_at - Duration::minutes(1),
                "ann",
                "",
                None
            ),
            Ok(GrantChange::Unchanged(_))
        ));
        for ended in [
            GrantState::Revoking,
            GrantState::Expired,
            GrantState::Failed,
        ] {
            assert!(extend(&grant(ended), now, later, "ann", "", None).is_err());
        }
        assert!(extend(&live, live.expires_at, later, "ann", "", None).is_err());
    }

    #[test]
    fn the_leader_takes_in_a_standbys_revocation_and_extension_and_keeps_its_state() {
        let held = grant(GrantState::Active);
        let mut stored = grant(GrantState::Applying);
        assert_eq!(merge(&held, &stored, t0()), None);
        stored.expires_at += Duration::hours(2);
        let g = merge(&held, &stored, t0() + Duration::hours(1)).expect("the later end is taken");
        assert_eq!(
            (g.state, g.expires_at),
            (GrantState::Active, stored.expires_at)
        );
        stored.revoked_at = Some(t0() + Duration::minutes(1));
        stored.revoke_reason = Some("done".into());
        let g = merge(&held, &stored, t0() + Duration::hours(1)).expect("the revocation is taken");
        assert_eq!(g.revoked_at, stored.revoked_at);
        assert_eq!(g.retry.attempts, 0);
        // An end moved later after a revocation brings nothing back.
        assert_eq!(g.expires_at, held.expires_at);
        // The leader's own revocation stands against an older stored copy.
        let mut own = held.clone();
        own.revoked_at = Some(t0() + Duration::minutes(2));
        assert_eq!(merge(&own, &stored, t0() + Duration::hours(1)), None);
    }

    #[test]
    fn a_revocation_stamped_by_a_clock_ahead_of_the_leaders_ends_the_grant_now() {
        let now = t0() + Duration::minutes(1);
        let held = grant(GrantState::Active);
        let mut stored = grant(GrantState::Applying);
        stored.revoked_at = Some(now + Duration::seconds(30));
        stored.revoke_reason = Some("done".into());
        let g = merge(&held, &stored, now).expect("the revocation is taken");
        assert_eq!((g.revoked_at, g.ends_at()), (Some(now), now));
        let g = taken_in(stored.clone(), now);
        assert_eq!(g.ends_at(), now);
        // One stamped in the past keeps its time.
        stored.revoked_at = Some(t0());
        assert_eq!(taken_in(stored, now).revoked_at, Some(t0()));
    }
}
