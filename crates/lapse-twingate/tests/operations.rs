//! Every `AccessProvider` operation against the stand-in, checked against its state.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{ClientBuilder, ci_deployer_id, group_id, resource_id, start_sim, user_id};
use lapse_core::provider::{
    AccessProvider, AccessToAdd, GroupType, KeyStatus, PrincipalKind, Priority, ProviderError,
    RemoteId,
};

fn rid(s: String) -> RemoteId {
    RemoteId(s)
}

fn requests_named(sim: &twingate_sim::SimHandle, operation: &str) -> usize {
    sim.journal()
        .iter()
        .filter(|e| e.operation_name.as_deref() == Some(operation))
        .count()
}

#[tokio::test]
async fn directory_lookups() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();

    let alice = client
        .user_by_email("alice@example.com")
        .await
        .expect("lookup")
        .expect("alice exists");
    assert_eq!(alice.id.0, user_id(101));
    assert_eq!(alice.email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        client
            .user_by_email("nobody@example.com")
            .await
            .expect("lookup"),
        None
    );

    let carol = client
        .user(&rid(user_id(103)))
        .await
        .expect("read")
        .expect("carol exists");
    assert_eq!(carol.email.as_deref(), Some("carol@example.com"));
    assert_eq!(
        client.user(&rid(user_id(999_999))).await.expect("read"),
        None
    );

    let prod = client.resources_by_name("prod-db").await.expect("lookup");
    assert_eq!(prod.len(), 1);
    assert_eq!(prod[0].id.0, resource_id(301));
    assert!(
        client
            .resources_by_name("no-such-resource")
            .await
            .expect("lookup")
            .is_empty()
    );

    let ci = client
        .service_accounts_by_name("ci-deployer")
        .await
        .expect("lookup");
    assert_eq!(ci.len(), 1);
    assert_eq!(ci[0].id.0, ci_deployer_id());
    assert_eq!(ci[0].resources, vec![rid(resource_id(302))]);
    assert!(ci[0].keys.is_empty());
    let by_id = client
        .service_account(&ci[0].id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(by_id, ci[0]);
    let missing = twingate_sim::global_id("ServiceAccount", "00000000-0000-4000-8000-000000000000");
    assert_eq!(
        client.service_account(&rid(missing)).await.expect("read"),
        None
    );
}

#[tokio::test]
async fn groups_are_read_with_type_members_and_resources() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();

    let oncall = client.groups_by_name("oncall").await.expect("lookup");
    assert_eq!(oncall.len(), 1);
    let oncall = &oncall[0];
    assert_eq!(oncall.id.0, group_id(201));
    assert_eq!(oncall.group_type, GroupType::Manual);
    assert!(oncall.is_active);
    assert_eq!(oncall.users, vec![rid(user_id(103))]);
    assert_eq!(oncall.resources, vec![rid(resource_id(303))]);

    let everyone = client
        .group(&rid(group_id(203)))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(everyone.group_type, GroupType::System);
    assert_eq!(everyone.users.len(), 6);
    let synced = client
        .groups_by_name("okta-engineering")
        .await
        .expect("lookup");
    assert_eq!(synced[0].group_type, GroupType::Synced);

    assert_eq!(
        client.group(&rid(group_id(999_999))).await.expect("read"),
        None
    );
    assert!(
        client
            .groups_by_name("no-such-group")
            .await
            .expect("lookup")
            .is_empty()
    );
}

#[tokio::test]
async fn group_lifecycle() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    let (alice, bob, carol) = (rid(user_id(101)), rid(user_id(102)), rid(user_id(103)));
    let prod = rid(resource_id(301));

    let id = client
        .create_group(
            "lapse-01J0000000000000000000001",
            &[alice.clone(), bob.clone()],
            std::slice::from_ref(&prod),
            Priority::Apply,
        )
        .await
        .expect("create");
    let state = sim.state();
    let created = state
        .group_named("lapse-01J0000000000000000000001")
        .expect("group exists remotely");
    assert_eq!(created.id, id.0);
    assert_eq!(created.user_ids.len(), 2);
    assert_eq!(created.resource_ids, vec![prod.0.clone()]);

    // A second group with the same name: names are not unique, lookups return both.
    client
        .create_group("lapse-01J0000000000000000000001", &[], &[], Priority::Apply)
        .await
        .expect("create");
    client
        .create_group("lapse-01J0000000000000000000002", &[], &[], Priority::Apply)
        .await
        .expect("create");
    let same_name = client
        .groups_by_name("lapse-01J0000000000000000000001")
        .await
        .expect("lookup");
    assert_eq!(same_name.len(), 2);
    let managed = client.groups_with_prefix("lapse-").await.expect("list");
    assert_eq!(managed.len(), 3);
    assert!(managed.iter().all(|g| g.name.starts_with("lapse-")));

    client
        .update_group_users(
            &id,
            std::slice::from_ref(&carol),
            std::slice::from_ref(&alice),
            Priority::Apply,
        )
        .await
        .expect("update");
    let group = client.group(&id).await.expect("read").expect("exists");
    let mut users = group.users.clone();
    users.sort();
    let mut expected = vec![bob.clone(), carol.clone()];
    expected.sort();
    assert_eq!(users, expected);

    // Nothing to change costs no write.
    let before = sim.journal().len();
    client
        .update_group_users(&id, &[], &[], Priority::Apply)
        .await
        .expect("no-op");
    assert_eq!(sim.journal().len(), before);

    client
        .delete_group(&id, Priority::Revoke)
        .await
        .expect("delete");
    assert_eq!(client.group(&id).await.expect("read"), None);
    let again = client.delete_group(&id, Priority::Revoke).await;
    assert!(
        matches!(again, Err(ProviderError::AlreadyGone(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn resource_access_with_expiry() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    let prod = rid(resource_id(301));
    let platform = rid(group_id(202));
    let ci = rid(ci_deployer_id());

    let before = client.resource(&prod).await.expect("read").expect("exists");
    assert_eq!(before.name, "prod-db");
    assert!(before.access.is_empty());

    let expires = Utc::now() + TimeDelta::hours(2);
    client
        .add_resource_access(
            &prod,
            &[
                AccessToAdd {
                    principal: platform.clone(),
                    expires_at: Some(expires),
                },
                AccessToAdd {
                    principal: ci.clone(),
                    expires_at: None,
                },
            ],
            Priority::Apply,
        )
        .await
        .expect("add");
    let after = client.resource(&prod).await.expect("read").expect("exists");
    assert_eq!(after.access.len(), 2);
    let group_edge = after
        .access
        .iter()
        .find(|e| e.principal == platform)
        .expect("group edge");
    assert_eq!(group_edge.principal_kind, PrincipalKind::Group);
    let got = group_edge.expires_at.expect("expiry kept");
    // Twingate keeps microseconds.
    assert!(
        (got - expires).num_microseconds().expect("small").abs() < 1,
        "{got} vs {expires}"
    );
    let sa_edge = after
        .access
        .iter()
        .find(|e| e.principal == ci)
        .expect("service account edge");
    assert_eq!(sa_edge.principal_kind, PrincipalKind::ServiceAccount);
    assert_eq!(sa_edge.expires_at, None);

    client
        .remove_resource_access(&prod, std::slice::from_ref(&platform), Priority::Revoke)
        .await
        .expect("remove");
    let removed = client.resource(&prod).await.expect("read").expect("exists");
    assert_eq!(removed.access.len(), 1);
    assert_eq!(removed.access[0].principal, ci);

    // The stand-in drops an edge once its expiry passes; the client reads what is left.
    client
        .add_resource_access(
            &prod,
            &[AccessToAdd {
                principal: platform.clone(),
                expires_at: Some(Utc::now() + TimeDelta::minutes(5)),
            }],
            Priority::Apply,
        )
        .await
        .expect("add");
    sim.clock().advance(TimeDelta::minutes(10));
    let expired = client.resource(&prod).await.expect("read").expect("exists");
    assert!(expired.access.iter().all(|e| e.principal != platform));

    assert_eq!(
        client
            .resource(&rid(resource_id(999_999)))
            .await
            .expect("read"),
        None
    );
    let gone = client
        .remove_resource_access(&rid(resource_id(999_999)), &[platform], Priority::Revoke)
        .await;
    assert!(
        matches!(gone, Err(ProviderError::AlreadyGone(_))),
        "{gone:?}"
    );
}

#[tokio::test]
async fn service_account_resources_and_keys() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    let ci = rid(ci_deployer_id());
    let (prod, staging) = (rid(resource_id(301)), rid(resource_id(302)));

    client
        .update_service_account_resources(
            &ci,
            std::slice::from_ref(&prod),
            std::slice::from_ref(&staging),
            Priority::Apply,
        )
        .await
        .expect("update");
    let account = client
        .service_account(&ci)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(account.resources, vec![prod.clone()]);

    let created = client
        .create_key(&ci, "lapse-01J0000000000000000000003", 2, Priority::Apply)
        .await
        .expect("create");
    assert_eq!(created.key.name, "lapse-01J0000000000000000000003");
    assert_eq!(created.key.status, KeyStatus::Active);
    assert!(!created.token.expose().is_empty());
    let expires = created
        .key
        .expires_at
        .expect("a key lapse makes always expires");
    let days = (expires - sim.clock().now()).num_hours();
    assert!((47..=48).contains(&days), "expires in {days} h");
    // The token is redacted in Debug output.
    assert!(!format!("{created:?}").contains(created.token.expose()));

    let account = client
        .service_account(&ci)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(account.keys.len(), 1);
    assert_eq!(account.keys[0].id, created.key.id);

    client
        .revoke_key(&created.key.id, Priority::Revoke)
        .await
        .expect("revoke");
    let account = client
        .service_account(&ci)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(account.keys[0].status, KeyStatus::Revoked);

    client
        .delete_key(&created.key.id, Priority::Revoke)
        .await
        .expect("delete");
    let account = client
        .service_account(&ci)
        .await
        .expect("read")
        .expect("exists");
    assert!(account.keys.is_empty());
    let again = client.delete_key(&created.key.id, Priority::Revoke).await;
    assert!(
        matches!(again, Err(ProviderError::AlreadyGone(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_key_without_expiry_is_refused_before_any_request() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    for days in [0, 366] {
        let result = client
            .create_key(&rid(ci_deployer_id()), "lapse-x", days, Priority::Apply)
            .await;
        assert!(
            matches!(result, Err(ProviderError::Invalid(_))),
            "{result:?}"
        );
    }
    assert!(sim.journal().is_empty());
}

#[tokio::test]
async fn directory_lookups_are_cached_for_the_ttl() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    for _ in 0..3 {
        client
            .user_by_email("bob@example.com")
            .await
            .expect("lookup")
            .expect("bob exists");
        client.resources_by_name("grafana").await.expect("lookup");
    }
    // Resolved by ID after being resolved by email: no read either.
    client
        .user(&rid(user_id(102)))
        .await
        .expect("read")
        .expect("bob exists");
    assert_eq!(requests_named(&sim, "UsersByEmail"), 1);
    assert_eq!(requests_named(&sim, "ResourcesByName"), 1);
    assert_eq!(requests_named(&sim, "User"), 0);

    // A name that did not resolve is asked again: it may exist a moment later.
    assert_eq!(
        client
            .user_by_email("new@example.com")
            .await
            .expect("lookup"),
        None
    );
    sim.admin()
        .create_user("new@example.com", "New", "Person")
        .expect("admin");
    assert!(
        client
            .user_by_email("new@example.com")
            .await
            .expect("lookup")
            .is_some()
    );

    client.clear_directory_cache();
    client
        .user_by_email("bob@example.com")
        .await
        .expect("lookup");
    assert_eq!(requests_named(&sim, "UsersByEmail"), 4);

    let uncached = ClientBuilder::new(&sim).cache_ttl(Duration::ZERO).build();
    uncached.resources_by_name("grafana").await.expect("lookup");
    uncached.resources_by_name("grafana").await.expect("lookup");
    assert_eq!(requests_named(&sim, "ResourcesByName"), 3);
}

#[tokio::test]
async fn requests_carry_the_key_header_and_name_their_operation() {
    let sim = start_sim().await;
    let client = ClientBuilder::new(&sim).build();
    client.group(&rid(group_id(201))).await.expect("read");
    let journal = sim.journal();
    let entry = journal.last().expect("one request");
    assert_eq!(
        entry.api_key_name.as_deref(),
        Some(twingate_sim::DEMO_ADMIN_KEY)
    );
    assert_eq!(entry.operation_name.as_deref(), Some("Group"));
    assert_eq!(entry.root_fields, vec!["group".to_owned()]);
    assert!(!entry.is_mutation);
}
