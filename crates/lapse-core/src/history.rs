//! The events of the append-only history, one closed set for the engine, the store and the
//! request flow. The names are what the history table holds and the hash chain covers, so they
//! never change.

use std::fmt;
use std::str::FromStr;

use crate::grant::GrantState;

macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// One kind of history row.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HistoryEvent {
            $($(#[$doc])* $variant,)*
        }

        impl HistoryEvent {
            pub const ALL: &'static [HistoryEvent] = &[$(Self::$variant,)*];

            /// The name written to the history table.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }
    };
}

events! {
    /// A grant was stored.
    Created => "created",
    // A grant entered a state (the event carries the state's name).
    Scheduled => "scheduled",
    Applying => "applying",
    Active => "active",
    Revoking => "revoking",
    Expired => "expired",
    Revoked => "revoked",
    Failed => "failed",
    RevokeRequested => "revoke-requested",
    Extended => "extended",
    /// An object found by lapse's name after an unknown outcome was taken over.
    Adopted => "adopted",
    Drift => "drift",
    GroupCreated => "group-created",
    GroupDeleted => "group-deleted",
    DuplicateDeleted => "duplicate-deleted",
    KeyCreated => "key-created",
    KeyRevoked => "key-revoked",
    KeyDeleted => "key-deleted",
    MembershipChanged => "membership-changed",
    AccessAdded => "access-added",
    AccessRemoved => "access-removed",
    ServiceResourcesChanged => "service-resources-changed",
    UnknownOutcome => "unknown-outcome",
    /// A revocation has failed `revoke_alarm_after` times and is still being retried.
    RevocationFailing => "revocation-failing",
    TokenCreated => "token-created",
    /// A token made before tokens were bound to the history, bound by its hash.
    TokenBound => "token-bound",
    /// A service key's token was handed to the grant's requester.
    TokenHandedOut => "token-handed-out",
    TokenRevoked => "token-revoked",
    TokenIdentitySet => "token-identity-set",
    ListFileRefused => "list-file-refused",
    ListsLoaded => "lists-loaded",
    PolicyFileRefused => "policy-file-refused",
    PoliciesLoaded => "policies-loaded",
    RequestCreated => "request-created",
    /// One owner's approval, counted.
    RequestApproval => "request-approval",
    ApprovalRefused => "approval-refused",
    RequestApproved => "request-approved",
    BreakGlassGranted => "break-glass-granted",
    RequestDenied => "request-denied",
    RequestCancelled => "request-cancelled",
    RequestLapsed => "request-lapsed",
    ExtensionRequested => "extension-requested",
    ExtensionApproved => "extension-approved",
    ListReviewed => "list-reviewed",
    ReviewDue => "review-due",
    /// A daemon took the leader lease of a shared (PostgreSQL) store: a new epoch began.
    LeaderElected => "leader-elected",
}

impl HistoryEvent {
    /// The event of a grant entering `state`.
    pub fn entered(state: GrantState) -> Self {
        match state {
            GrantState::Scheduled => Self::Scheduled,
            GrantState::Applying => Self::Applying,
            GrantState::Active => Self::Active,
            GrantState::Revoking => Self::Revoking,
            GrantState::Expired => Self::Expired,
            GrantState::Revoked => Self::Revoked,
            GrantState::Failed => Self::Failed,
        }
    }
}

impl fmt::Display for HistoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HistoryEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown history event `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_by_its_name_and_names_are_unique() {
        let mut names: Vec<&str> = HistoryEvent::ALL.iter().map(|e| e.as_str()).collect();
        for e in HistoryEvent::ALL {
            assert_eq!(e.as_str().parse::<HistoryEvent>(), Ok(*e));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HistoryEvent::ALL.len());
        assert!("activated".parse::<HistoryEvent>().is_err());
    }

    #[test]
    fn a_state_change_is_named_after_the_state() {
        for s in [
            GrantState::Scheduled,
            GrantState::Applying,
            GrantState::Active,
            GrantState::Revoking,
            GrantState::Expired,
            GrantState::Revoked,
            GrantState::Failed,
        ] {
            assert_eq!(HistoryEvent::entered(s).as_str(), s.as_str());
        }
    }
}
