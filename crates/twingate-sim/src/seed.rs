//! Seed data: the demo network and loading users, groups, resources and keys from TOML or JSON.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::model::{AccessPolicyMode, GroupType, Permission, UserRole, UserState};

pub const DEMO_ADMIN_KEY: &str = "sim-admin-key";
pub const DEMO_RW_KEY: &str = "sim-rw-key";
pub const DEMO_READ_KEY: &str = "sim-read-key";
/// The demo service account's UUID, fixed so that demos and docs can name it.
pub const DEMO_SERVICE_ACCOUNT_UUID: &str = "5e0c1d2a-7b3f-4c8e-9a61-2f4d8b9c0e11";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
    #[serde(default)]
    pub resources: Vec<SeedResource>,
    #[serde(default)]
    pub service_accounts: Vec<SeedServiceAccount>,
    #[serde(default)]
    pub api_keys: Vec<SeedApiKey>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Integer pk; the global ID is `User:<id>`.
    pub id: u64,
    /// Absent for a user without one (Twingate's `User.email` is nullable).
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub role: UserRole,
    #[serde(default)]
    pub state: UserState,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    pub id: u64,
    pub name: String,
    #[serde(rename = "type", default)]
    pub group_type: GroupType,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// Member user pks.
    #[serde(default)]
    pub users: Vec<u64>,
    /// Resource pks this group has access to (edges without expiry).
    #[serde(default)]
    pub resources: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedResource {
    pub id: u64,
    pub name: String,
    pub address: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    /// The access mode edges added without `accessPolicy` get; `MANUAL` when absent.
    #[serde(default)]
    pub default_access_mode: Option<AccessPolicyMode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedServiceAccount {
    /// UUID pk; minted when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub resources: Vec<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApiKey {
    pub name: String,
    pub token: String,
    pub permission: Permission,
}

fn yes() -> bool {
    true
}

impl Seed {
    /// A small network: six users, four resources, an on-call group holding carol with access
    /// to grafana, a platform group, the SYSTEM `Everyone` group, a SYNCED group and a CI
    /// service account with staging-db.
    pub fn demo() -> Seed {
        let people = [
            (101, "alice", "Alice", "Anders"),
            (102, "bob", "Bob", "Brown"),
            (103, "carol", "Carol", "Chen"),
            (104, "dave", "Dave", "Diaz"),
            (105, "erin", "Erin", "Evans"),
            (106, "frank", "Frank", "Fischer"),
        ];
        let users = people
            .iter()
            .map(|(id, login, first, last)| SeedUser {
                id: *id,
                email: Some(format!("{login}@example.com")),
                first_name: first.to_string(),
                last_name: last.to_string(),
                role: if *id == 101 {
                    UserRole::Admin
                } else {
                    UserRole::Member
                },
                state: UserState::Active,
            })
            .collect();
        let resources = [
            (301, "prod-db", "prod-db.internal"),
            (302, "staging-db", "staging-db.internal"),
            (303, "grafana", "grafana.internal"),
            (304, "billing-api", "billing-api.internal"),
        ]
        .iter()
        .map(|(id, name, address)| SeedResource {
            id: *id,
            name: name.to_string(),
            address: address.to_string(),
            is_active: true,
            default_access_mode: None,
        })
        .collect();
        let group = |id, name: &str, group_type, users: Vec<u64>, resources: Vec<u64>| SeedGroup {
            id,
            name: name.to_string(),
            group_type,
            is_active: true,
            users,
            resources,
        };
        let groups = vec![
            group(201, "oncall", GroupType::Manual, vec![103], vec![303]),
            group(202, "platform", GroupType::Manual, vec![], vec![]),
            group(
                203,
                "Everyone",
                GroupType::System,
                vec![101, 102, 103, 104, 105, 106],
                vec![],
            ),
            group(
                204,
                "okta-engineering",
                GroupType::Synced,
                vec![101, 102],
                vec![],
            ),
        ];
        let key = |name: &str, permission| SeedApiKey {
            name: name.to_string(),
            token: name.to_string(),
            permission,
        };
        Seed {
            users,
            groups,
            resources,
            service_accounts: vec![SeedServiceAccount {
                id: Some(DEMO_SERVICE_ACCOUNT_UUID.to_string()),
                name: "ci-deployer".to_string(),
                resources: vec![302],
            }],
            api_keys: vec![
                key(DEMO_ADMIN_KEY, Permission::ReadWriteProvision),
                key(DEMO_RW_KEY, Permission::ReadWrite),
                key(DEMO_READ_KEY, Permission::ReadOnly),
            ],
        }
    }

    /// Reads a seed from `.toml` or `.json` (chosen by extension) and validates it.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Seed, SimError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SimError::SeedRead {
            path: path.to_path_buf(),
            source,
        })?;
        let parse_err = |message: String| SimError::SeedParse {
            path: path.to_path_buf(),
            message,
        };
        let seed: Seed = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => {
                toml::from_str(&text).map_err(|e| parse_err(toml_message(&text, &e)))?
            }
            Some("json") => serde_json::from_str(&text).map_err(|e| parse_err(e.to_string()))?,
            other => {
                return Err(parse_err(format!(
                    "unknown extension {other:?}: expected .toml or .json"
                )));
            }
        };
        seed.validate()?;
        Ok(seed)
    }

    /// Rejects duplicate ids, emails, key names or tokens and dangling references, naming each.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut problems = Vec::new();
        dupes(
            "user id",
            self.users.iter().map(|u| u.id.to_string()),
            &mut problems,
        );
        dupes(
            "user email",
            self.users
                .iter()
                .filter_map(|u| u.email.as_ref().map(|e| e.to_lowercase())),
            &mut problems,
        );
        dupes(
            "group id",
            self.groups.iter().map(|g| g.id.to_string()),
            &mut problems,
        );
        dupes(
            "resource id",
            self.resources.iter().map(|r| r.id.to_string()),
            &mut problems,
        );
        dupes(
            "service account id",
            self.service_accounts.iter().filter_map(|s| s.id.clone()),
            &mut problems,
        );
        dupes(
            "api key name",
            self.api_keys.iter().map(|k| k.name.clone()),
            &mut problems,
        );
        dupes(
            "api key token",
            self.api_keys.iter().map(|k| k.token.clone()),
            &mut problems,
        );
        let users: HashSet<u64> = self.users.iter().map(|u| u.id).collect();
        let resources: HashSet<u64> = self.resources.iter().map(|r| r.id).collect();
        for g in &self.groups {
            for u in g.users.iter().filter(|u| !users.contains(u)) {
                problems.push(format!("group {} references unknown user {u}", g.id));
            }
            for r in g.resources.iter().filter(|r| !resources.contains(r)) {
                problems.push(format!("group {} references unknown resource {r}", g.id));
            }
        }
        for s in &self.service_accounts {
            if let Some(id) = s.id.as_deref().filter(|id| !crate::ids::is_uuid(id)) {
                problems.push(format!("service account id {id} is not a UUID"));
            }
            for r in s.resources.iter().filter(|r| !resources.contains(r)) {
                problems.push(format!(
                    "service account {} references unknown resource {r}",
                    s.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::SeedInvalid(problems.join("; ")))
        }
    }
}

/// TOML errors print a multi-line snippet; one line with the position reads better in a log.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn dupes(what: &str, values: impl Iterator<Item = String>, problems: &mut Vec<String>) {
    let mut seen = HashSet::new();
    let mut reported = HashSet::new();
    for v in values {
        if !seen.insert(v.clone()) && reported.insert(v.clone()) {
            problems.push(format!("duplicate {what} {v}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid() {
        Seed::demo().validate().expect("demo seed validates");
    }

    #[test]
    fn duplicates_are_named() {
        let mut seed = Seed::demo();
        seed.users[1].id = 101;
        seed.users[2].email = Some("ALICE@example.com".into());
        let err = seed.validate().expect_err("duplicates").to_string();
        assert!(err.contains("duplicate user id 101"), "{err}");
        assert!(
            err.contains("duplicate user email alice@example.com"),
            "{err}"
        );
    }
}
