//! With every log line captured at TRACE through a whole run, the API key (and a key's token) appear nowhere.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{ClientBuilder, ci_deployer_id, group_id, resource_id, user_id};
use lapse_core::provider::{AccessProvider, AccessToAdd, Priority, RemoteId};
use lapse_twingate::{ClientConfig, SecretString, TwingateClient};
use tracing_subscriber::fmt::MakeWriter;
use twingate_sim::{CommitThenLose, Faults, Permission, Seed, SeedApiKey, SimConfig};

const API_KEY: &str = "tgk-live-7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e";
const WRONG_KEY: &str = "tgk-live-0000wrong1111key2222never3333";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn rid(s: String) -> RemoteId {
    RemoteId(s)
}

#[tokio::test]
async fn the_api_key_never_reaches_the_logs() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();

    let mut seed = Seed::demo();
    seed.api_keys.push(SeedApiKey {
        name: "lapse-under-test".to_owned(),
        token: API_KEY.to_owned(),
        permission: Permission::ReadWriteProvision,
    });
    let sim = common::start_sim_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await;
    let config = ClientBuilder::new(&sim)
        .key(API_KEY)
        .read_retries(1)
        .timeout(Duration::from_millis(800))
        .config();
    let client = TwingateClient::new(config.clone()).expect("client");
    let mut outputs = vec![format!("{config:?}"), format!("{client:?}")];

    // The happy path, every kind of operation.
    client
        .user_by_email("alice@example.com")
        .await
        .expect("lookup");
    client.resources_by_name("prod-db").await.expect("lookup");
    let group = client
        .create_group(
            "lapse-secrecy",
            &[rid(user_id(101))],
            &[rid(resource_id(301))],
            Priority::Apply,
        )
        .await
        .expect("create");
    client
        .update_group_users(&group, &[rid(user_id(102))], &[], Priority::Apply)
        .await
        .expect("update");
    client.groups_with_prefix("lapse-").await.expect("list");
    let expiry = Some(Utc::now() + TimeDelta::hours(1));
    client
        .add_resource_access(
            &rid(resource_id(302)),
            &[AccessToAdd {
                principal: group.clone(),
                expires_at: expiry,
            }],
            Priority::Apply,
        )
        .await
        .expect("add");
    client.resource(&rid(resource_id(302))).await.expect("read");
    client
        .remove_resource_access(
            &rid(resource_id(302)),
            std::slice::from_ref(&group),
            Priority::Revoke,
        )
        .await
        .expect("remove");
    let sa = rid(ci_deployer_id());
    let key = client
        .create_key(&sa, "lapse-secrecy-key", 1, Priority::Apply)
        .await
        .expect("key");
    let token = key.token.expose().to_owned();
    outputs.push(format!("{key:?}"));
    client.service_account(&sa).await.expect("read");
    client
        .revoke_key(&key.key.id, Priority::Revoke)
        .await
        .expect("revoke");
    client
        .delete_key(&key.key.id, Priority::Revoke)
        .await
        .expect("delete");
    client
        .delete_group(&group, Priority::Revoke)
        .await
        .expect("delete");

    // And every failure path, whose messages are the likeliest place for a leak.
    let mut failures = Vec::new();
    failures.push(client.delete_group(&group, Priority::Revoke).await.err());
    failures.push(client.group(&RemoteId::new("garbage")).await.err());
    sim.set_faults(Faults {
        rate_limit_storm_until: Some(sim.clock().now() + TimeDelta::seconds(1)),
        ..Faults::none()
    })
    .expect("faults the sim accepts");
    failures.push(client.group(&rid(group_id(201))).await.err());
    for faults in [
        Faults {
            error_5xx_rate: 1.0,
            ..Faults::none()
        },
        Faults {
            reset_rate: 1.0,
            ..Faults::none()
        },
        Faults {
            commit_then_lose: CommitThenLose::Drop,
            ..Faults::none()
        },
        Faults {
            commit_then_lose: CommitThenLose::DelaySecs(30),
            ..Faults::none()
        },
        Faults {
            html_200: true,
            ..Faults::none()
        },
    ] {
        sim.set_faults(faults).expect("faults the sim accepts");
        failures.push(client.group(&rid(group_id(201))).await.err());
        failures.push(
            client
                .create_group("lapse-secrecy-2", &[], &[], Priority::Apply)
                .await
                .err(),
        );
    }
    sim.set_faults(Faults::none())
        .expect("faults the sim accepts");
    let wrong = TwingateClient::new(ClientConfig::new(
        sim.base_url(),
        SecretString::from(WRONG_KEY),
    ))
    .expect("client");
    failures.push(wrong.group(&rid(group_id(201))).await.err());
    failures.push(
        wrong
            .delete_group(&rid(group_id(201)), Priority::Revoke)
            .await
            .err(),
    );

    let failed = failures.iter().flatten().count();
    assert!(
        failed >= 10,
        "the failure paths were exercised ({failed} failures)"
    );
    for failure in failures.iter().flatten() {
        outputs.push(failure.to_string());
        outputs.push(format!("{failure:?}"));
    }

    let logs = logs.text();
    // The capture works and saw the client at its most verbose.
    assert!(logs.contains("GroupCreate"), "nothing captured");
    assert!(logs.contains("TRACE"), "no TRACE lines captured");
    for secret in [API_KEY, WRONG_KEY, token.as_str()] {
        assert!(!logs.contains(secret), "a secret reached the logs");
        for output in &outputs {
            assert!(
                !output.contains(secret),
                "a secret reached Debug or an error message: {output}"
            );
        }
    }
}
