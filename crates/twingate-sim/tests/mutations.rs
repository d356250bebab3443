//! Mutations over real HTTP, written the three ways real clients write documents.

mod common;

use common::*;
use serde_json::json;
use twingate_sim::{Outcome, ServiceAccountKeyStatus};

const PAYLOAD: &str = "ok error entity { id name users { edges { node { id } } } resources { edges { node { id } } } }";

#[tokio::test]
async fn group_update_accepts_all_three_document_styles() {
    let sim = start().await;
    let oncall = sim.group_id("oncall");
    let alice = sim.user_id("alice@example.com");
    let bob = sim.user_id("bob@example.com");
    let dave = sim.user_id("dave@example.com");

    // 1. Alphabetised variables typed [ID!]!, the operation name in the document and the body.
    let q = format!(
        "mutation AddMembers($addedUserIds: [ID!]!, $id: ID!) {{ groupUpdate(addedUserIds: $addedUserIds, id: $id) {{ {PAYLOAD} }} }}"
    );
    let a = sim
        .post(
            Some(ADMIN),
            json!({"query": q, "operationName": "AddMembers", "variables": {"addedUserIds": [alice], "id": oncall}}),
        )
        .await;
    assert_eq!(a.data()["groupUpdate"]["ok"], true, "{}", a.body);
    assert!(sim.group_users("oncall").contains(&alice));
    let entry = sim.handle.journal().pop().expect("journal");
    assert_eq!(entry.operation_name.as_deref(), Some("AddMembers"));
    assert_eq!(entry.root_fields, vec!["groupUpdate"]);
    assert!(entry.is_mutation && entry.mutation_applied);
    assert_eq!(entry.variables["addedUserIds"][0], alice);

    // 2. Variables typed [ID] (nullable list of nullable IDs), no operation name.
    let q = format!(
        "mutation($id: ID!, $users: [ID]) {{ groupUpdate(id: $id, addedUserIds: $users) {{ {PAYLOAD} }} }}"
    );
    let a = sim.gql(&q, json!({"id": oncall, "users": [bob]})).await;
    assert_eq!(a.data()["groupUpdate"]["ok"], true);

    // 3. Everything inline as literals.
    let q = format!(
        r#"mutation {{ groupUpdate(id: "{oncall}", addedUserIds: ["{dave}"], removedUserIds: ["{alice}"]) {{ {PAYLOAD} }} }}"#
    );
    let a = sim.gql(&q, json!(null)).await;
    assert_eq!(a.data()["groupUpdate"]["ok"], true);
    let members = sim.group_users("oncall");
    assert!(members.contains(&bob) && members.contains(&dave));
    assert!(!members.contains(&alice));

    // [ID!] works too, and re-adding a present member / removing an absent one is accepted.
    let q = "mutation M($add: [ID!], $id: ID!, $rm: [ID!]) { groupUpdate(id: $id, addedUserIds: $add, removedUserIds: $rm) { ok error } }";
    let a = sim
        .gql(q, json!({"id": oncall, "add": [bob], "rm": [alice]}))
        .await;
    assert_eq!(a.data()["groupUpdate"], json!({"ok": true, "error": null}));
    assert_eq!(
        sim.group_users("oncall")
            .iter()
            .filter(|u| **u == bob)
            .count(),
        1
    );
}

#[tokio::test]
async fn group_create_is_not_idempotent_and_validates_members() {
    let sim = start().await;
    let carol = sim.user_id("carol@example.com");
    let prod = sim.resource_id("prod-db");
    let q = "mutation Create($name: String!, $resourceIds: [ID!]!, $userIds: [ID!]!) { \
             groupCreate(name: $name, resourceIds: $resourceIds, userIds: $userIds) { ok error entity { id name type users { totalCount } resources { totalCount } } } }";
    let vars = json!({"name": "lapse-g1", "resourceIds": [prod], "userIds": [carol]});
    let first = sim.gql(q, vars.clone()).await;
    let second = sim.gql(q, vars).await;
    let (e1, e2) = (
        &first.data()["groupCreate"]["entity"],
        &second.data()["groupCreate"]["entity"],
    );
    assert_eq!(e1["type"], "MANUAL");
    assert_eq!(e1["users"]["totalCount"], 1);
    assert_eq!(e1["resources"]["totalCount"], 1);
    assert_ne!(e1["id"], e2["id"], "a retried create makes a second group");
    let state = sim.handle.state();
    assert_eq!(
        state.groups.iter().filter(|g| g.name == "lapse-g1").count(),
        2
    );
    let prod_edges = &state.resource_named("prod-db").expect("prod").access;
    assert_eq!(prod_edges.len(), 2);

    let ghost = twingate_sim::global_id("User", 4242);
    let a = sim
        .gql(
            q,
            json!({"name": "x", "resourceIds": [], "userIds": [ghost]}),
        )
        .await;
    let p = &a.data()["groupCreate"];
    assert_eq!(p["ok"], false);
    assert!(p["entity"].is_null());
    assert_eq!(p["error"], format!("User with id '{ghost}' does not exist"));
    assert_eq!(
        sim.handle
            .state()
            .groups
            .iter()
            .filter(|g| g.name == "x")
            .count(),
        0
    );
    assert_eq!(
        sim.handle.journal().pop().expect("entry").outcome,
        Outcome::Rejected(format!("User with id '{ghost}' does not exist"))
    );

    let a = sim
        .gql(
            q,
            json!({"name": "x", "resourceIds": ["%%%"], "userIds": []}),
        )
        .await;
    assert_eq!(
        a.first_error(),
        "{'resourceIds': ['Unable to parse global ID']}"
    );
    assert!(a.body["data"]["groupCreate"].is_null());
}

#[tokio::test]
async fn group_update_replaces_sets_and_renames() {
    let sim = start().await;
    let platform = sim.group_id("platform");
    let (alice, bob) = (
        sim.user_id("alice@example.com"),
        sim.user_id("bob@example.com"),
    );
    let (prod, grafana) = (sim.resource_id("prod-db"), sim.resource_id("grafana"));
    let q = "mutation($id: ID!, $u: [ID], $r: [ID], $name: String, $active: Boolean) { \
             groupUpdate(id: $id, userIds: $u, resourceIds: $r, name: $name, isActive: $active) { ok error entity { name isActive } } }";
    let a = sim
        .gql(
            q,
            json!({"id": platform, "u": [alice, bob], "r": [prod, grafana]}),
        )
        .await;
    assert_eq!(a.data()["groupUpdate"]["ok"], true);
    let a = sim
        .gql(
            q,
            json!({"id": platform, "u": [bob], "r": [grafana], "name": "plat", "active": false}),
        )
        .await;
    assert_eq!(
        a.data()["groupUpdate"]["entity"],
        json!({"name": "plat", "isActive": false})
    );
    let g = sim
        .handle
        .state()
        .group_named("plat")
        .cloned()
        .expect("renamed");
    assert_eq!(g.user_ids, vec![bob]);
    assert_eq!(g.resource_ids, vec![grafana.clone()]);

    let q = "mutation($id: ID!, $add: [ID], $rm: [ID]) { groupUpdate(id: $id, addedResourceIds: $add, removedResourceIds: $rm) { ok } }";
    let a = sim
        .gql(q, json!({"id": platform, "add": [prod], "rm": [grafana]}))
        .await;
    assert_eq!(a.data()["groupUpdate"]["ok"], true);
    assert_eq!(
        sim.handle
            .state()
            .group_named("plat")
            .expect("g")
            .resource_ids,
        vec![prod]
    );
}

#[tokio::test]
async fn only_manual_groups_can_be_changed_and_missing_groups_do_not_exist() {
    let sim = start().await;
    let alice = sim.user_id("alice@example.com");
    for name in ["Everyone", "okta-engineering"] {
        let id = sim.group_id(name);
        let a = sim
            .gql(
                "mutation($id: ID!, $u: [ID]) { groupUpdate(id: $id, removedUserIds: $u) { ok error entity { id } } }",
                json!({"id": id, "u": [alice]}),
            )
            .await;
        let p = &a.data()["groupUpdate"];
        assert_eq!(p["ok"], false, "{name}");
        assert!(
            p["error"]
                .as_str()
                .expect("error")
                .contains("only MANUAL groups"),
            "{p}"
        );
        let a = sim
            .gql(
                "mutation($id: ID!) { groupDelete(id: $id) { ok error } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(a.data()["groupDelete"]["ok"], false);
        assert!(sim.group_users(name).contains(&alice));
    }
    let ghost = twingate_sim::global_id("Group", 999);
    let a = sim
        .gql(
            &format!(r#"mutation {{ groupDelete(id: "{ghost}") {{ ok error }} }}"#),
            json!(null),
        )
        .await;
    assert_eq!(
        a.data()["groupDelete"],
        json!({"ok": false, "error": format!("Group with id '{ghost}' does not exist")})
    );
    let a = sim
        .gql(
            "mutation($id: ID!) { groupUpdate(id: $id, name: \"x\") { ok error } }",
            json!({"id": ghost}),
        )
        .await;
    assert!(
        a.data()["groupUpdate"]["error"]
            .as_str()
            .expect("e")
            .contains("does not exist")
    );
    let a = sim
        .gql("mutation { groupDelete(id: \"Zm9v\") { ok } }", json!(null))
        .await;
    assert_eq!(a.first_error(), "{'id': ['Unable to parse global ID']}");
}

#[tokio::test]
async fn group_delete_removes_the_group_and_its_access() {
    let sim = start().await;
    let oncall = sim.group_id("oncall");
    let a = sim
        .gql(
            "mutation Del($id: ID!) { groupDelete(id: $id) { ok error } }",
            json!({"id": oncall}),
        )
        .await;
    assert_eq!(a.data()["groupDelete"], json!({"ok": true, "error": null}));
    let state = sim.handle.state();
    assert!(state.group_named("oncall").is_none());
    assert!(
        state
            .resource_named("grafana")
            .expect("grafana")
            .access
            .is_empty()
    );
    let a = sim
        .gql(
            "mutation Del($id: ID!) { groupDelete(id: $id) { ok error } }",
            json!({"id": oncall}),
        )
        .await;
    assert!(
        a.data()["groupDelete"]["error"]
            .as_str()
            .expect("e")
            .contains("does not exist")
    );
}

const ACCESS_ADD: &str = "mutation AddAccess($access: [AccessInput!]!, $resourceId: ID!) { \
    resourceAccessAdd(access: $access, resourceId: $resourceId) { ok error entity { id \
    access { edges { expiresAt securityPolicy { id } node { __typename ... on Group { id } ... on ServiceAccount { id } } } } } } }";

#[tokio::test]
async fn resource_access_add_is_an_upsert_and_null_clears() {
    let sim = start().await;
    let prod = sim.resource_id("prod-db");
    let platform = sim.group_id("platform");
    let policy = twingate_sim::global_id("SecurityPolicy", 2);
    let at = "2099-01-02T03:04:05.123456+00:00";
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": platform, "expiresAt": at, "securityPolicyId": policy}]}),
        )
        .await;
    let p = &a.data()["resourceAccessAdd"];
    assert_eq!(p["ok"], true, "{p}");
    let edge = &p["entity"]["access"]["edges"][0];
    assert_eq!(edge["expiresAt"], at);
    assert_eq!(edge["securityPolicy"]["id"], policy);
    assert_eq!(edge["node"], json!({"__typename": "Group", "id": platform}));

    // Re-adding without the fields keeps them; explicit null clears expiresAt only.
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": platform}]}),
        )
        .await;
    assert_eq!(
        a.data()["resourceAccessAdd"]["entity"]["access"]["edges"][0]["expiresAt"],
        at
    );
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": platform, "expiresAt": null}]}),
        )
        .await;
    let edges = &a.data()["resourceAccessAdd"]["entity"]["access"]["edges"];
    assert_eq!(edges.as_array().map(Vec::len), Some(1), "still one edge");
    assert!(edges[0]["expiresAt"].is_null());
    assert_eq!(edges[0]["securityPolicy"]["id"], policy);

    // Inline literals, overwriting with a new expiry.
    let q = format!(
        r#"mutation {{ resourceAccessAdd(resourceId: "{prod}", access: [{{principalId: "{platform}", expiresAt: "2098-05-05T00:00:00Z", securityPolicyId: null}}]) {{ ok entity {{ access {{ edges {{ expiresAt securityPolicy {{ id }} }} }} }} }} }}"#
    );
    let a = sim.gql(&q, json!(null)).await;
    let edge = &a.data()["resourceAccessAdd"]["entity"]["access"]["edges"][0];
    assert_eq!(edge["expiresAt"], "2098-05-05T00:00:00.000000+00:00");
    // A cleared policy reads as the network's default policy, as in Twingate, never null.
    assert_eq!(
        edge["securityPolicy"]["id"],
        twingate_sim::global_id("SecurityPolicy", 1)
    );
}

#[tokio::test]
async fn resource_access_rules_for_service_accounts_and_missing_objects() {
    let sim = start().await;
    let prod = sim.resource_id("prod-db");
    let sa = sim.sa_id("ci-deployer");
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": sa, "expiresAt": "2099-01-01T00:00:00Z"}]}),
        )
        .await;
    let p = &a.data()["resourceAccessAdd"];
    assert_eq!(p["ok"], false);
    assert!(
        p["error"]
            .as_str()
            .expect("e")
            .contains("expiresAt must be null")
    );
    assert!(
        sim.handle
            .state()
            .resource_named("prod-db")
            .expect("r")
            .access
            .is_empty()
    );
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": sa, "expiresAt": null}]}),
        )
        .await;
    assert_eq!(
        a.data()["resourceAccessAdd"]["entity"]["access"]["edges"][0]["node"]["__typename"],
        "ServiceAccount"
    );

    let ghost_res = twingate_sim::global_id("Resource", 9);
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": ghost_res, "access": [{"principalId": sa}]}),
        )
        .await;
    assert_eq!(
        a.data()["resourceAccessAdd"]["error"],
        format!("Resource with id '{ghost_res}' does not exist")
    );
    let ghost_group = twingate_sim::global_id("Group", 9);
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": ghost_group}]}),
        )
        .await;
    assert!(
        a.data()["resourceAccessAdd"]["error"]
            .as_str()
            .expect("e")
            .contains("does not exist")
    );
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": "@@"}]}),
        )
        .await;
    assert_eq!(
        a.first_error(),
        "{'principalId': ['Unable to parse global ID']}"
    );
}

#[tokio::test]
async fn resource_access_remove_and_set() {
    let sim = start().await;
    let grafana = sim.resource_id("grafana");
    let oncall = sim.group_id("oncall");
    let platform = sim.group_id("platform");
    let sa = sim.sa_id("ci-deployer");
    let set = "mutation SetAccess($access: [AccessInput!]!, $resourceId: ID!) { resourceAccessSet(access: $access, resourceId: $resourceId) { ok error } }";
    let a = sim
        .gql(set, json!({"resourceId": grafana, "access": [{"principalId": platform}, {"principalId": sa}]}))
        .await;
    assert_eq!(a.data()["resourceAccessSet"]["ok"], true);
    let principals: Vec<String> = sim
        .handle
        .state()
        .resource_named("grafana")
        .expect("g")
        .access
        .iter()
        .map(|e| e.principal_id.clone())
        .collect();
    assert_eq!(
        principals,
        vec![platform.clone(), sa.clone()],
        "oncall replaced"
    );

    let remove = "mutation RemoveAccess($principalIds: [ID!]!, $resourceId: ID!) { resourceAccessRemove(principalIds: $principalIds, resourceId: $resourceId) { ok error entity { access { totalCount } } } }";
    let a = sim
        .gql(
            remove,
            json!({"resourceId": grafana, "principalIds": [platform, oncall]}),
        )
        .await;
    let p = &a.data()["resourceAccessRemove"];
    assert_eq!(p["ok"], true, "removing an absent edge is accepted");
    assert_eq!(p["entity"]["access"]["totalCount"], 1);
    let q = format!(
        r#"mutation {{ resourceAccessRemove(resourceId: "{grafana}", principalIds: ["{sa}"]) {{ ok entity {{ access {{ totalCount }} }} }} }}"#
    );
    let a = sim.gql(&q, json!(null)).await;
    assert_eq!(
        a.data()["resourceAccessRemove"]["entity"]["access"]["totalCount"],
        0
    );
}

#[tokio::test]
async fn service_account_lifecycle() {
    let sim = start().await;
    let (prod, staging) = (sim.resource_id("prod-db"), sim.resource_id("staging-db"));
    let q = "mutation CreateSa($name: String!, $resourceIds: [ID]) { serviceAccountCreate(name: $name, resourceIds: $resourceIds) { ok error entity { id name resources { edges { node { id } } } } } }";
    let a = sim
        .gql(q, json!({"name": "lapse-sa", "resourceIds": [prod]}))
        .await;
    let sa = a.data()["serviceAccountCreate"]["entity"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let again = sim
        .gql(q, json!({"name": "lapse-sa", "resourceIds": []}))
        .await;
    assert_ne!(
        again.data()["serviceAccountCreate"]["entity"]["id"],
        sa.as_str()
    );

    let upd = "mutation UpdSa($addedResourceIds: [ID!]!, $id: ID!, $removedResourceIds: [ID!]!) { serviceAccountUpdate(addedResourceIds: $addedResourceIds, id: $id, removedResourceIds: $removedResourceIds) { ok error entity { name resources { totalCount } } } }";
    let a = sim
        .gql(
            upd,
            json!({"id": sa, "addedResourceIds": [staging, prod], "removedResourceIds": []}),
        )
        .await;
    assert_eq!(
        a.data()["serviceAccountUpdate"]["entity"]["resources"]["totalCount"],
        2
    );
    let a = sim
        .gql(
            upd,
            json!({"id": sa, "addedResourceIds": [], "removedResourceIds": [prod]}),
        )
        .await;
    assert_eq!(
        a.data()["serviceAccountUpdate"]["entity"]["resources"]["totalCount"],
        1
    );
    let q = format!(
        r#"mutation {{ serviceAccountUpdate(id: "{sa}", name: "renamed", resourceIds: ["{prod}"]) {{ ok entity {{ name resources {{ edges {{ node {{ name }} }} }} }} }} }}"#
    );
    let a = sim.gql(&q, json!(null)).await;
    let e = &a.data()["serviceAccountUpdate"]["entity"];
    assert_eq!(e["name"], "renamed");
    assert_eq!(e["resources"]["edges"][0]["node"]["name"], "prod-db");

    let del = "mutation($id: ID!) { serviceAccountDelete(id: $id) { ok error } }";
    let a = sim.gql(del, json!({"id": sa})).await;
    assert_eq!(a.data()["serviceAccountDelete"]["ok"], true);
    assert!(
        sim.handle
            .state()
            .service_account_named("renamed")
            .is_none()
    );
    let a = sim.gql(del, json!({"id": sa})).await;
    assert!(
        a.data()["serviceAccountDelete"]["error"]
            .as_str()
            .expect("e")
            .contains("does not exist")
    );
}

#[tokio::test]
async fn service_account_keys_lifecycle() {
    let sim = start().await;
    let sa = sim.sa_id("ci-deployer");
    let create = "mutation CreateKey($expirationTime: Int!, $name: String, $serviceAccountId: ID!) { \
        serviceAccountKeyCreate(expirationTime: $expirationTime, name: $name, serviceAccountId: $serviceAccountId) { \
        ok error token entity { id name status expiresAt revokedAt createdAt serviceAccount { id } } } }";
    for bad in [-1, 366] {
        let a = sim
            .gql(
                create,
                json!({"serviceAccountId": sa, "name": "k", "expirationTime": bad}),
            )
            .await;
        let p = &a.data()["serviceAccountKeyCreate"];
        assert_eq!(p["ok"], false);
        assert!(
            p["error"]
                .as_str()
                .expect("e")
                .contains("between 0 and 365")
        );
        assert!(p["token"].is_null());
    }
    let a = sim
        .gql(
            create,
            json!({"serviceAccountId": sa, "name": "lapse-k", "expirationTime": 30}),
        )
        .await;
    let p = &a.data()["serviceAccountKeyCreate"];
    assert_eq!(p["ok"], true);
    let token = p["token"].as_str().expect("token");
    assert!(token.len() >= 32);
    let key = p["entity"]["id"].as_str().expect("id").to_string();
    assert_eq!(p["entity"]["status"], "ACTIVE");
    assert_eq!(p["entity"]["serviceAccount"]["id"], sa.as_str());
    assert!(p["entity"]["expiresAt"].is_string());
    let a = sim
        .gql(
            create,
            json!({"serviceAccountId": sa, "name": "forever", "expirationTime": 0}),
        )
        .await;
    assert!(a.data()["serviceAccountKeyCreate"]["entity"]["expiresAt"].is_null());

    // The token appears in the create answer only: not in the state nor the schema.
    let state = serde_json::to_string(&sim.handle.state()).expect("json");
    assert!(!state.contains(token));
    let a = sim
        .gql(
            "query($id: ID!) { serviceAccountKey(id: $id) { token } }",
            json!({"id": key}),
        )
        .await;
    assert!(a.first_error().contains("token"), "{}", a.body);

    let delete = "mutation($id: ID!) { serviceAccountKeyDelete(id: $id) { ok error } }";
    let a = sim.gql(delete, json!({"id": key})).await;
    assert_eq!(a.data()["serviceAccountKeyDelete"]["ok"], false);
    assert!(
        a.data()["serviceAccountKeyDelete"]["error"]
            .as_str()
            .expect("e")
            .contains("revoke")
    );

    let revoke = "mutation Revoke($id: ID!) { serviceAccountKeyRevoke(id: $id) { ok error entity { status revokedAt } } }";
    let a = sim.gql(revoke, json!({"id": key})).await;
    let p = &a.data()["serviceAccountKeyRevoke"];
    assert_eq!(p["entity"]["status"], "REVOKED");
    let revoked_at = p["entity"]["revokedAt"].clone();
    let a = sim.gql(revoke, json!({"id": key})).await;
    assert_eq!(
        a.data()["serviceAccountKeyRevoke"]["entity"]["revokedAt"],
        revoked_at
    );
    // Never active again, even if the clock moves.
    sim.handle.clock().advance(chrono::Duration::days(400));
    let a = sim
        .gql(
            "query($id: ID!) { serviceAccountKey(id: $id) { status } }",
            json!({"id": key}),
        )
        .await;
    assert_eq!(a.data()["serviceAccountKey"]["status"], "REVOKED");

    let a = sim.gql(delete, json!({"id": key})).await;
    assert_eq!(
        a.data()["serviceAccountKeyDelete"],
        json!({"ok": true, "error": null})
    );
    let a = sim.gql(delete, json!({"id": key})).await;
    assert!(
        a.data()["serviceAccountKeyDelete"]["error"]
            .as_str()
            .expect("e")
            .contains("does not exist")
    );
    let a = sim
        .gql(
            "query($id: ID!) { serviceAccountKey(id: $id) { id } }",
            json!({"id": key}),
        )
        .await;
    assert!(a.data()["serviceAccountKey"].is_null());
    let state = sim.handle.state();
    let keys = &state.service_account_named("ci-deployer").expect("sa").keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].status,
        ServiceAccountKeyStatus::Active,
        "the never-expiring key"
    );
}

#[tokio::test]
async fn clock_advance_expires_edges_and_keys() {
    let sim = start().await;
    let prod = sim.resource_id("prod-db");
    let oncall = sim.group_id("oncall");
    let sa = sim.sa_id("ci-deployer");
    let clock = sim.handle.clock();
    let in_an_hour = clock.now() + chrono::Duration::hours(1);
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": oncall, "expiresAt": in_an_hour.to_rfc3339()}]}),
        )
        .await;
    assert_eq!(a.data()["resourceAccessAdd"]["ok"], true);
    let a = sim
        .gql(
            "mutation($sa: ID!) { serviceAccountKeyCreate(serviceAccountId: $sa, name: \"k\", expirationTime: 1) { entity { id } } }",
            json!({"sa": sa}),
        )
        .await;
    let key = a.data()["serviceAccountKeyCreate"]["entity"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    clock.advance(chrono::Duration::minutes(59));
    let q = "query($r: ID!, $k: ID!) { resource(id: $r) { access { totalCount } } serviceAccountKey(id: $k) { status } }";
    let a = sim.gql(q, json!({"r": prod, "k": key})).await;
    assert_eq!(a.data()["resource"]["access"]["totalCount"], 1);
    assert_eq!(a.data()["serviceAccountKey"]["status"], "ACTIVE");

    clock.advance(chrono::Duration::minutes(2));
    let a = sim.gql(q, json!({"r": prod, "k": key})).await;
    assert_eq!(
        a.data()["resource"]["access"]["totalCount"],
        0,
        "edge gone past expiresAt"
    );
    assert!(
        sim.handle
            .state()
            .group_named("oncall")
            .expect("g")
            .resource_ids
            .iter()
            .all(|r| *r != prod)
    );

    clock.advance(chrono::Duration::days(1));
    let a = sim.gql(q, json!({"r": prod, "k": key})).await;
    assert_eq!(a.data()["serviceAccountKey"]["status"], "EXPIRED");
    // An expired key may be deleted without revoking it first.
    let a = sim
        .gql(
            "mutation($id: ID!) { serviceAccountKeyDelete(id: $id) { ok } }",
            json!({"id": key}),
        )
        .await;
    assert_eq!(a.data()["serviceAccountKeyDelete"]["ok"], true);
}

const EDGES: &str = "query R($id: ID!) { resource(id: $id) { access { edges { expiresAt \
    accessPolicy { mode durationSeconds } node { ... on Group { id } } } } } }";

#[tokio::test]
async fn new_edges_inherit_the_resources_default_access_mode_unless_sent_one() {
    let mut seed = twingate_sim::Seed::demo();
    for r in &mut seed.resources {
        if r.name == "prod-db" {
            r.default_access_mode = Some(twingate_sim::AccessPolicyMode::AccessRequest);
        }
    }
    let sim = start_with(twingate_sim::SimConfig {
        seed,
        ..twingate_sim::SimConfig::default()
    })
    .await;
    let prod = sim.resource_id("prod-db");
    let platform = sim.group_id("platform");
    let oncall = sim.group_id("oncall");
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": platform}]}),
        )
        .await;
    assert_eq!(a.data()["resourceAccessAdd"]["ok"], true, "{}", a.body);
    // The call Terraform sends, with inline literals.
    let q = format!(
        r#"mutation {{ resourceAccessAdd(resourceId: "{prod}", access: [{{principalId: "{oncall}", accessPolicy: {{mode: MANUAL, durationSeconds: null}}}}]) {{ ok error }} }}"#
    );
    let a = sim.gql(&q, json!(null)).await;
    assert_eq!(a.data()["resourceAccessAdd"]["ok"], true, "{}", a.body);
    let edges = sim.gql(EDGES, json!({"id": prod})).await;
    let edges = edges.data()["resource"]["access"]["edges"]
        .as_array()
        .expect("edges")
        .clone();
    let mode = |g: &str| {
        edges
            .iter()
            .find(|e| e["node"]["id"] == g)
            .map(|e| e["accessPolicy"].clone())
    };
    assert_eq!(
        mode(&platform),
        Some(json!({"mode": "ACCESS_REQUEST", "durationSeconds": null}))
    );
    assert_eq!(
        mode(&oncall),
        Some(json!({"mode": "MANUAL", "durationSeconds": null}))
    );
    // The old spelling is refused by the schema.
    let q = format!(
        r#"mutation {{ resourceAccessAdd(resourceId: "{prod}", access: [{{principalId: "{oncall}", accessPolicy: {{mode: MANUAL, duration: "1h"}}}}]) {{ ok }} }}"#
    );
    assert!(
        sim.gql(&q, json!(null))
            .await
            .first_error()
            .contains("duration")
    );
}

#[tokio::test]
async fn null_entities_and_coarse_expiry_are_settings() {
    let sim = start().await;
    let prod = sim.resource_id("prod-db");
    let platform = sim.group_id("platform");
    sim.handle
        .set_faults(twingate_sim::Faults {
            null_entities: true,
            expiry_precision: twingate_sim::ExpiryPrecision::Minutes,
            ..twingate_sim::Faults::default()
        })
        .expect("faults the sim accepts");
    let a = sim
        .gql(
            ACCESS_ADD,
            json!({"resourceId": prod, "access": [{"principalId": platform, "expiresAt": "2099-01-02T03:04:05.123456+00:00"}]}),
        )
        .await;
    assert_eq!(
        a.data()["resourceAccessAdd"],
        json!({"ok": true, "error": null, "entity": null})
    );
    let edges = sim.gql(EDGES, json!({"id": prod})).await;
    let stored = edges.data()["resource"]["access"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["id"] == platform)
        .map(|e| e["expiresAt"].clone());
    assert_eq!(stored, Some(json!("2099-01-02T03:04:00.000000+00:00")));
}
