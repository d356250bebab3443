//! The roles a token can hold, named by what people do with lapse.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a token's holder does. Approving is never a role: it comes from list ownership only.
///
/// The string forms are lowercase and are what the database stores; `admin`, `operator` and
/// `auditor` rows written before `requester` existed read unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Requests access through lists; sees, extends, cancels and revokes their own grants.
    Requester,
    /// Grants directly within grant policies (automation such as a deploy bot).
    Operator,
    /// Everything, tokens included.
    Admin,
    /// Reads everything, writes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Requester, Self::Operator, Self::Admin, Self::Auditor];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requester => "requester",
            Self::Operator => "operator",
            Self::Admin => "admin",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`; expected one of: requester, operator, admin, auditor")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_strings_and_serde() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    #[test]
    fn unknown_and_differently_cased_roles_are_refused() {
        let err = "root".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("requester, operator"), "{err}");
        assert!("Admin".parse::<Role>().is_err());
    }
}
