//! Every list is read to its end, top-level and nested, whatever the page size.

mod common;

use std::collections::HashSet;

use common::{ClientBuilder, ci_deployer_id, start_sim};
use lapse_core::provider::{AccessProvider, Priority, RemoteId};

fn requests_named(sim: &twingate_sim::SimHandle, operation: &str) -> usize {
    sim.journal()
        .iter()
        .filter(|e| e.operation_name.as_deref() == Some(operation))
        .count()
}

#[tokio::test]
async fn a_group_with_260_members_is_read_completely() {
    let sim = start_sim().await;
    let admin = sim.admin();
    let users = admin.create_users(260, "member").expect("users");
    let group = admin
        .create_group("big", twingate_sim::GroupType::Manual)
        .expect("group");
    admin.add_group_users(&group, &users).expect("members");
    let expected: HashSet<RemoteId> = users.iter().cloned().map(RemoteId).collect();

    let client = ClientBuilder::new(&sim).build();
    let info = client
        .group(&RemoteId(group.clone()))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(info.users.len(), 260);
    assert_eq!(info.users.iter().cloned().collect::<HashSet<_>>(), expected);
    // 100 in the first answer, then 100 and 60.
    assert_eq!(requests_named(&sim, "GroupUsersPage"), 2);

    let small_pages = ClientBuilder::new(&sim).page_size(7).build();
    let by_name = small_pages.groups_by_name("big").await.expect("lookup");
    assert_eq!(by_name.len(), 1);
    assert_eq!(
        by_name[0].users.iter().cloned().collect::<HashSet<_>>(),
        expected
    );
    assert_eq!(requests_named(&sim, "GroupUsersPage"), 2 + 260 / 7);
}

#[tokio::test]
async fn groups_with_a_prefix_are_listed_across_pages() {
    let sim = start_sim().await;
    let created = sim
        .admin()
        .create_groups(255, "lapse-bulk-")
        .expect("groups");

    let client = ClientBuilder::new(&sim).page_size(50).build();
    let groups = client
        .groups_with_prefix("lapse-bulk-")
        .await
        .expect("list");
    let ids: HashSet<String> = groups.iter().map(|g| g.id.0.clone()).collect();
    assert_eq!(ids.len(), 255);
    assert_eq!(ids, created.into_iter().collect::<HashSet<_>>());
    assert_eq!(requests_named(&sim, "GroupsByPrefix"), 6);
}

#[tokio::test]
async fn resources_sharing_a_name_are_all_returned() {
    let sim = start_sim().await;
    let admin = sim.admin();
    let created: HashSet<String> = (0..251)
        .map(|n| {
            admin
                .create_resource("shared-name", &format!("host-{n}.internal"))
                .expect("resource")
        })
        .collect();

    let client = ClientBuilder::new(&sim).build();
    let found = client
        .resources_by_name("shared-name")
        .await
        .expect("lookup");
    assert_eq!(found.len(), 251);
    assert_eq!(
        found.iter().map(|r| r.id.0.clone()).collect::<HashSet<_>>(),
        created
    );
    assert_eq!(requests_named(&sim, "ResourcesByName"), 3);
}

#[tokio::test]
async fn every_access_edge_of_a_resource_is_read() {
    let sim = start_sim().await;
    let admin = sim.admin();
    let resource = admin
        .create_resource("popular", "popular.internal")
        .expect("resource");
    let groups = admin.create_groups(120, "team-").expect("groups");
    for group in &groups {
        admin
            .add_resource_access(&resource, group, None)
            .expect("edge");
    }
    admin
        .add_resource_access(&resource, &ci_deployer_id(), None)
        .expect("edge");

    let client = ClientBuilder::new(&sim).page_size(25).build();
    let info = client
        .resource(&RemoteId(resource))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(info.access.len(), 121);
    let principals: HashSet<String> = info.access.iter().map(|e| e.principal.0.clone()).collect();
    assert!(groups.iter().all(|g| principals.contains(g)));
    assert!(principals.contains(&ci_deployer_id()));
    assert_eq!(requests_named(&sim, "ResourceAccessPage"), 4);
}

#[tokio::test]
async fn a_service_account_is_read_with_every_resource_and_key() {
    let sim = start_sim().await;
    let admin = sim.admin();
    let resources: Vec<String> = (0..30)
        .map(|n| {
            admin
                .create_resource(&format!("svc-{n}"), &format!("svc-{n}.internal"))
                .expect("resource")
        })
        .collect();
    admin
        .add_service_account_resources(&ci_deployer_id(), &resources)
        .expect("resources");

    let client = ClientBuilder::new(&sim).page_size(4).build();
    let ci = RemoteId(ci_deployer_id());
    for n in 0..9 {
        client
            .create_key(&ci, &format!("lapse-key-{n}"), 1, Priority::Apply)
            .await
            .expect("key");
    }
    let account = client
        .service_account(&ci)
        .await
        .expect("read")
        .expect("exists");
    // 30 added plus staging-db from the seed.
    assert_eq!(account.resources.len(), 31);
    assert_eq!(account.keys.len(), 9);
    let names: HashSet<&str> = account.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names.len(), 9);
    assert_eq!(requests_named(&sim, "ServiceAccountResourcesPage"), 7);
    assert_eq!(requests_named(&sim, "ServiceAccountKeysPage"), 2);
}
