//! The sim's starting network for a scenario, written as a seed file: users, groups, resources,
//! service accounts and the two API keys. Primary keys come from disjoint ranges.

use std::path::Path;

use twingate_sim::{
    GroupType, Permission, Seed, SeedApiKey, SeedGroup, SeedResource, SeedServiceAccount, SeedUser,
    global_id,
};

use crate::procs::{BASELINE_KEY, LAPSE_KEY};

const USER_PK: u64 = 1_000_000;
const RESOURCE_PK: u64 = 500_000;
const GROUP_PK: u64 = 2_000_000;

pub struct SeedBuilder {
    seed: Seed,
    next_group: u64,
}

impl SeedBuilder {
    /// `users` users `u{n}@bench.example` and `resources` resources `res-{n}`.
    pub fn new(users: usize, resources: usize) -> Self {
        let mut seed = Seed {
            users: Vec::new(),
            groups: Vec::new(),
            resources: Vec::new(),
            service_accounts: Vec::new(),
            api_keys: vec![
                SeedApiKey {
                    name: "lapse".into(),
                    token: LAPSE_KEY.into(),
                    permission: Permission::ReadWriteProvision,
                },
                SeedApiKey {
                    name: "baseline".into(),
                    token: BASELINE_KEY.into(),
                    permission: Permission::ReadWrite,
                },
            ],
        };
        for n in 0..users {
            seed.users.push(SeedUser {
                id: USER_PK + n as u64,
                email: Some(user_email(n)),
                first_name: "Bench".into(),
                last_name: n.to_string(),
                role: Default::default(),
                state: Default::default(),
            });
        }
        for n in 0..resources {
            seed.resources.push(SeedResource {
                id: RESOURCE_PK + n as u64,
                name: resource_name(n),
                address: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
                is_active: true,
                default_access_mode: None,
            });
        }
        Self {
            seed,
            next_group: GROUP_PK,
        }
    }

    /// A MANUAL group with these member users and resources (by index); returns its global ID.
    pub fn group(&mut self, name: &str, users: &[usize], resources: &[usize]) -> String {
        let id = self.next_group;
        self.next_group += 1;
        self.seed.groups.push(SeedGroup {
            id,
            name: name.to_owned(),
            group_type: GroupType::Manual,
            is_active: true,
            users: users.iter().map(|u| USER_PK + *u as u64).collect(),
            resources: resources.iter().map(|r| RESOURCE_PK + *r as u64).collect(),
        });
        global_id("Group", id)
    }

    pub fn service_account(&mut self, name: &str) {
        self.seed.service_accounts.push(SeedServiceAccount {
            id: None,
            name: name.to_owned(),
            resources: Vec::new(),
        });
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_vec(&self.seed)?)?;
        Ok(())
    }
}

pub fn user_email(n: usize) -> String {
    format!("u{n}@bench.example")
}

pub fn user_id(n: usize) -> String {
    global_id("User", USER_PK + n as u64)
}

pub fn resource_name(n: usize) -> String {
    format!("res-{n}")
}
