//! Relay global IDs: base64 of `Type:pk`, minted and parsed the way Twingate does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A decoded global ID. Parsing checks only the shape; whether the object exists is the store's
/// business, so a well-formed ID of the wrong type simply finds nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GlobalId {
    pub kind: String,
    pub pk: String,
}

impl GlobalId {
    /// The integer pk when this ID names an object of `kind` with an integer key.
    pub fn int_pk(&self, kind: &str) -> Option<u64> {
        (self.kind == kind).then(|| self.pk.parse().ok()).flatten()
    }

    /// The UUID pk when this ID names an object of `kind` with a UUID key.
    pub fn uuid_pk(&self, kind: &str) -> Option<&str> {
        (self.kind == kind).then_some(self.pk.as_str())
    }
}

pub(crate) const USER: &str = "User";
pub(crate) const GROUP: &str = "Group";
pub(crate) const RESOURCE: &str = "Resource";
pub(crate) const SERVICE_ACCOUNT: &str = "ServiceAccount";
pub(crate) const SERVICE_ACCOUNT_KEY: &str = "ServiceAccountKey";
pub(crate) const SECURITY_POLICY: &str = "SecurityPolicy";

/// Types whose pk is an integer; the rest use UUIDs.
const INT_KINDS: [&str; 4] = [USER, GROUP, RESOURCE, SECURITY_POLICY];
const UUID_KINDS: [&str; 2] = [SERVICE_ACCOUNT, SERVICE_ACCOUNT_KEY];

pub(crate) fn encode(kind: &str, pk: impl std::fmt::Display) -> String {
    STANDARD.encode(format!("{kind}:{pk}"))
}

/// Parses a global ID; `None` when it is not padded base64 of `Type:pk`, or when a known type
/// carries a pk of the wrong shape (Twingate rejects both as unparsable).
pub(crate) fn decode(id: &str) -> Option<GlobalId> {
    let bytes = STANDARD.decode(id.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (kind, pk) = text.split_once(':')?;
    if kind.is_empty() || pk.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    if INT_KINDS.contains(&kind) && pk.parse::<u64>().is_err() {
        return None;
    }
    if UUID_KINDS.contains(&kind) && !is_uuid(pk) {
        return None;
    }
    Some(GlobalId {
        kind: kind.to_string(),
        pk: pk.to_string(),
    })
}

pub(crate) fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Formats 128 random bits as a version-4 UUID.
pub(crate) fn uuid_from(bits: u128) -> String {
    let b = (bits & !(0xF000u128 << 64) | (0x4000u128 << 64)) & !(0xC000u128 << 48)
        | (0x8000u128 << 48);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_twingate() {
        assert_eq!(encode("Group", 34891), "R3JvdXA6MzQ4OTE=");
        let id = decode("R3JvdXA6MzQ4OTE=").expect("parses");
        assert_eq!(id.int_pk(GROUP), Some(34891));
        assert_eq!(id.int_pk(USER), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode("not-an-id").is_none());
        assert!(decode("R3JvdXA6MzQ4OTE").is_none(), "padding is required");
        assert!(decode(&encode("Group", "abc")).is_none());
        assert!(decode(&encode("ServiceAccount", "12")).is_none());
    }

    #[test]
    fn uuids_are_v4_shaped() {
        let u = uuid_from(u128::MAX);
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        let u = uuid_from(0);
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[19..20], "8");
    }
}
