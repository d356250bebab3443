//! A just-in-time request's lifecycle: its states and the pure transitions between them.
//!
//! Every decision on a request goes through one of `approve`, `deny`, `cancel` or `lapse`, which
//! check the state and separation of duties and answer what changes; callers only record it.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access_list::{AccessList, Refusal, normalize_identity};

/// pending → approved | denied | cancelled | lapsed; only `pending` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Pending,
    Approved,
    Denied,
    Cancelled,
    Lapsed,
}

impl RequestState {
    pub const ALL: [RequestState; 5] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Cancelled,
        Self::Lapsed,
    ];

    /// The name stored and shown (`pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Cancelled => "cancelled",
            Self::Lapsed => "lapsed",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown request state {s:?}; one of pending, approved, denied, cancelled, lapsed")
            })
    }
}

/// What a decision does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// An approval was counted; more are needed, so the request stays pending.
    Counted,
    /// The request moves to this state.
    To(RequestState),
}

/// Refuses anything but a pending request.
fn pending(state: RequestState) -> Result<(), Refusal> {
    if state == RequestState::Pending {
        Ok(())
    } else {
        Err(Refusal::NotPending { state })
    }
}

/// One owner's approval: never the requester's own (compared normalised, whatever roles they
/// hold), only an owner's, once per owner; approved when enough distinct owners have approved.
pub fn approve(
    state: RequestState,
    list: &AccessList,
    requester: &str,
    approver: &str,
    earlier: &[String],
) -> Result<Transition, Refusal> {
    pending(state)?;
    Ok(if list.approve(requester, approver, earlier)? {
        Transition::To(RequestState::Approved)
    } else {
        Transition::Counted
    })
}

/// A denial, by an owner of the list.
pub fn deny(state: RequestState, list: &AccessList, decider: &str) -> Result<Transition, Refusal> {
    pending(state)?;
    if !list.is_owner(decider) {
        return Err(Refusal::NotOwner {
            who: normalize_identity(decider),
            list: list.name.clone(),
        });
    }
    Ok(Transition::To(RequestState::Denied))
}

/// A cancellation, by the requester only.
pub fn cancel(state: RequestState, requester: &str, who: &str) -> Result<Transition, Refusal> {
    pending(state)?;
    if normalize_identity(requester) != normalize_identity(who) {
        return Err(Refusal::NotRequester);
    }
    Ok(Transition::To(RequestState::Cancelled))
}

/// A pending request lapses once its wait has run out, not before.
pub fn lapse(
    state: RequestState,
    wait_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Transition, Refusal> {
    pending(state)?;
    if wait_until > now {
        return Err(Refusal::NotDue { until: wait_until });
    }
    Ok(Transition::To(RequestState::Lapsed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_list::parse_file;
    use chrono::TimeZone;

    fn list(approvals: u32) -> AccessList {
        let text = format!(
            "[[list]]\nname = \"db\"\nowners = [\"olga@x.io\", \"omar@x.io\"]\nmembers = [\"mia@x.io\", \"olga@x.io\"]\napprovals = {approvals}\nkind = \"group-membership\"\ngroup = \"db-admins\"\nmax_duration = \"4h\"\n"
        );
        parse_file("db.toml", &text)
            .expect("the list parses")
            .remove(0)
    }

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("a time")
    }

    #[test]
    fn states_round_trip_by_name_and_unknown_names_are_refused() {
        for s in RequestState::ALL {
            assert_eq!(s.as_str().parse::<RequestState>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).expect("serialises"),
                serde_json::json!(s.as_str())
            );
        }
        assert!("approving".parse::<RequestState>().is_err());
    }

    #[test]
    fn approvals_count_until_enough_distinct_owners() {
        let l = list(2);
        let p = RequestState::Pending;
        assert_eq!(
            approve(p, &l, "mia@x.io", "olga@x.io", &[]),
            Ok(Transition::Counted)
        );
        assert_eq!(
            approve(p, &l, "mia@x.io", " Omar@X.io ", &["olga@x.io".into()]),
            Ok(Transition::To(RequestState::Approved))
        );
    }

    #[test]
    fn approval_refusals_separate_duties() {
        let l = list(1);
        let p = RequestState::Pending;
        assert_eq!(
            approve(p, &l, "olga@x.io", "OLGA@x.io", &[]),
            Err(Refusal::SelfApproval)
        );
        assert!(matches!(
            approve(p, &l, "mia@x.io", "eve@x.io", &[]),
            Err(Refusal::NotOwner { .. })
        ));
        assert!(matches!(
            approve(p, &list(2), "mia@x.io", "olga@x.io", &["olga@x.io".into()]),
            Err(Refusal::AlreadyApproved { .. })
        ));
    }

    #[test]
    fn only_pending_requests_move() {
        let l = list(1);
        for s in RequestState::ALL
            .into_iter()
            .filter(|s| *s != RequestState::Pending)
        {
            let refused = Err(Refusal::NotPending { state: s });
            assert_eq!(approve(s, &l, "mia@x.io", "olga@x.io", &[]), refused);
            assert_eq!(deny(s, &l, "olga@x.io"), refused);
            assert_eq!(cancel(s, "mia@x.io", "mia@x.io"), refused);
            assert_eq!(lapse(s, t(0), t(10)), refused);
        }
    }

    #[test]
    fn deny_is_for_owners_and_cancel_for_the_requester() {
        let l = list(1);
        let p = RequestState::Pending;
        assert_eq!(
            deny(p, &l, "omar@x.io"),
            Ok(Transition::To(RequestState::Denied))
        );
        assert!(matches!(
            deny(p, &l, "mia@x.io"),
            Err(Refusal::NotOwner { .. })
        ));
        assert_eq!(
            cancel(p, "mia@x.io", " MIA@x.io"),
            Ok(Transition::To(RequestState::Cancelled))
        );
        assert_eq!(
            cancel(p, "mia@x.io", "olga@x.io"),
            Err(Refusal::NotRequester)
        );
    }

    #[test]
    fn a_request_lapses_at_its_wait_and_not_before() {
        let p = RequestState::Pending;
        assert_eq!(lapse(p, t(10), t(9)), Err(Refusal::NotDue { until: t(10) }));
        assert_eq!(
            lapse(p, t(10), t(10)),
            Ok(Transition::To(RequestState::Lapsed))
        );
    }
}
