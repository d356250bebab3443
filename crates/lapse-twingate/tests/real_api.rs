//! What the real API may do that the client must survive, each provoked by a stand-in setting:
//! `ok: true` with `entity: null`, users without an email, and regional redirects.

mod common;

use common::*;
use lapse_core::AccessProvider;
use lapse_core::provider::{AccessToAdd, KeyStatus, Priority, ProviderError, RemoteId};
use twingate_sim::{Faults, SimConfig};

fn rid(s: String) -> RemoteId {
    RemoteId(s)
}

#[tokio::test]
async fn ok_with_a_null_entity_is_success_for_every_write() {
    let sim = start_sim().await;
    sim.set_faults(Faults {
        null_entities: true,
        ..Faults::none()
    })
    .expect("faults the sim accepts");
    let client = ClientBuilder::new(&sim).build();
    let (prod, sa) = (rid(resource_id(301)), rid(ci_deployer_id()));

    // A create without its entity: the new object is found by its (unique) name.
    let group = client
        .create_group(
            "lapse-null-entity",
            &[rid(user_id(101))],
            &[],
            Priority::Apply,
        )
        .await
        .expect("create");
    let state = sim.state();
    assert_eq!(
        state.group_named("lapse-null-entity").map(|g| g.id.clone()),
        Some(group.0.clone())
    );
    client
        .update_group_users(&group, &[rid(user_id(102))], &[], Priority::Apply)
        .await
        .expect("update");
    client
        .add_resource_access(
            &prod,
            &[AccessToAdd {
                principal: group.clone(),
                expires_at: None,
            }],
            Priority::Apply,
        )
        .await
        .expect("add");
    client
        .remove_resource_access(&prod, std::slice::from_ref(&group), Priority::Revoke)
        .await
        .expect("remove");
    client
        .update_service_account_resources(&sa, &[rid(resource_id(304))], &[], Priority::Apply)
        .await
        .expect("service account update");

    // The key and its token, though the answer named no key.
    let created = client
        .create_key(&sa, "lapse-null-key", 1, Priority::Apply)
        .await
        .expect("key create");
    let key = sim
        .state()
        .service_accounts
        .iter()
        .flat_map(|s| s.keys.iter())
        .find(|k| k.name == "lapse-null-key")
        .map(|k| k.id.clone());
    assert_eq!(key, Some(created.key.id.0.clone()));
    assert_eq!(created.key.status, KeyStatus::Active);
    client
        .revoke_key(&created.key.id, Priority::Revoke)
        .await
        .expect("revoke");
    client
        .delete_key(&created.key.id, Priority::Revoke)
        .await
        .expect("delete key");
    client
        .delete_group(&group, Priority::Revoke)
        .await
        .expect("delete group");
    assert!(sim.state().group_named("lapse-null-entity").is_none());
}

#[tokio::test]
async fn a_create_answered_without_entity_and_ambiguous_is_an_unknown_outcome() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    // Two groups already carry the name: which one the create made cannot be told.
    for _ in 0..2 {
        sim.admin()
            .create_group("lapse-twice", twingate_sim::GroupType::Manual)
            .expect("group");
    }
    sim.set_faults(Faults {
        null_entities: true,
        ..Faults::none()
    })
    .expect("faults the sim accepts");
    let result = client
        .create_group("lapse-twice", &[], &[], Priority::Apply)
        .await;
    assert!(
        matches!(result, Err(ProviderError::UnknownOutcome(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_user_without_an_email_breaks_no_lookup_or_group_read() {
    let mut seed = twingate_sim::Seed::demo();
    seed.users.push(twingate_sim::SeedUser {
        id: 190,
        email: None,
        first_name: "Synced".into(),
        last_name: "NoMail".into(),
        role: Default::default(),
        state: Default::default(),
    });
    for g in &mut seed.groups {
        if g.name == "oncall" {
            g.users.push(190);
        }
    }
    let sim = start_sim_with(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await;
    let client = ClientBuilder::new(&sim).page_size(1).build();
    let user = client
        .user(&rid(user_id(190)))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(user.email, None);
    let carol = client
        .user_by_email("carol@example.com")
        .await
        .expect("lookup")
        .expect("carol");
    assert_eq!(carol.email.as_deref(), Some("carol@example.com"));
    let group = client
        .group(&rid(group_id(201)))
        .await
        .expect("group read")
        .expect("oncall");
    assert!(group.users.contains(&rid(user_id(190))), "{group:?}");
    let everyone = client.groups_by_name("oncall").await.expect("by name");
    assert_eq!(everyone.len(), 1);
}

#[tokio::test]
async fn the_regional_address_is_followed_once_and_a_later_redirect_names_the_new_host() {
    let regional = start_sim().await;
    let global = start_sim().await;
    global
        .set_faults(Faults {
            redirect_to: Some(regional.base_url()),
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    let client = ClientBuilder::new(&global).build();
    assert_eq!(client.base_url(), global.base_url(), "nothing sent yet");

    let found = client.group(&rid(group_id(201))).await.expect("read");
    assert!(found.is_some());
    assert_eq!(client.base_url(), regional.base_url());
    assert_eq!(
        regional.journal().len(),
        1,
        "the call went to the regional host"
    );
    assert!(
        global.journal().is_empty(),
        "and never to the configured one"
    );

    // The network moves again: a redirected call is an error naming the new host, and the key
    // is not sent there.
    regional
        .set_faults(Faults {
            redirect_to: Some(global.base_url()),
            ..Faults::none()
        })
        .expect("faults the sim accepts");
    let moved = client.group(&rid(group_id(201))).await;
    match moved {
        Err(ProviderError::Misconfigured(m)) => {
            assert!(m.contains(&global.base_url()), "{m}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    assert!(global.journal().is_empty());
}
