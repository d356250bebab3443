//! Queries over real HTTP: lookups, IDs, filters, pagination, fragments and introspection.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn ids_are_relay_base64_and_lookups_find_objects() {
    let sim = start().await;
    let oncall = sim.group_id("oncall");
    assert_eq!(oncall, twingate_sim::global_id("Group", 201));
    assert_eq!(twingate_sim::global_id("Group", 34891), "R3JvdXA6MzQ4OTE=");
    let a = sim
        .gql(
            "query GetGroup($id: ID!) { group(id: $id) { __typename id name type isActive createdAt updatedAt \
             users { totalCount edges { node { email firstName lastName role state type } } } \
             resources { edges { node { name } } } } }",
            json!({"id": oncall}),
        )
        .await;
    assert_eq!(a.status, 200);
    let g = &a.data()["group"];
    assert_eq!(g["__typename"], "Group");
    assert_eq!(g["name"], "oncall");
    assert_eq!(g["type"], "MANUAL");
    assert_eq!(g["isActive"], true);
    assert_eq!(g["users"]["totalCount"], 1);
    assert_eq!(g["users"]["edges"][0]["node"]["email"], "carol@example.com");
    assert_eq!(g["users"]["edges"][0]["node"]["role"], "MEMBER");
    assert_eq!(g["users"]["edges"][0]["node"]["state"], "ACTIVE");
    assert_eq!(g["resources"]["edges"][0]["node"]["name"], "grafana");
    // RFC 3339 with exactly six fractional digits and a numeric offset.
    let created = g["createdAt"].as_str().expect("createdAt");
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$").expect("re");
    assert!(re.is_match(created), "{created}");
}

#[tokio::test]
async fn unparsable_id_is_a_top_level_error_and_missing_id_is_null() {
    let sim = start().await;
    let a = sim
        .gql(
            "query($id: ID!) { group(id: $id) { id } }",
            json!({"id": "garbage!"}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.first_error(), "{'id': ['Unable to parse global ID']}");
    // The failed nullable field is null in data beside its error: not data null, not absent.
    assert_eq!(a.body["data"], json!({"group": null}), "{}", a.body);
    assert_eq!(a.body["errors"][0]["path"], json!(["group"]));
    let oncall = sim.group_id("oncall");
    let a = sim
        .gql(
            "query($bad: ID!, $good: ID!) { bad: group(id: $bad) { id } good: group(id: $good) { id } }",
            json!({"bad": "garbage!", "good": oncall}),
        )
        .await;
    assert_eq!(
        a.body["data"],
        json!({"bad": null, "good": {"id": oncall}}),
        "{}",
        a.body
    );
    assert_eq!(a.body["errors"][0]["path"], json!(["bad"]));

    let missing = twingate_sim::global_id("Group", 999);
    for (field, id) in [
        ("group", missing.clone()),
        ("user", twingate_sim::global_id("User", 999)),
        ("resource", twingate_sim::global_id("Resource", 999)),
        (
            "serviceAccount",
            twingate_sim::global_id("ServiceAccount", "00000000-0000-4000-8000-000000000000"),
        ),
        (
            "serviceAccountKey",
            twingate_sim::global_id("ServiceAccountKey", "00000000-0000-4000-8000-000000000000"),
        ),
        // A well-formed ID of another type finds nothing either.
        ("user", missing.clone()),
    ] {
        let q = format!("query($id: ID!) {{ {field}(id: $id) {{ id }} }}");
        let a = sim.gql(&q, json!({"id": id})).await;
        assert!(a.data()[field].is_null(), "{field}: {}", a.body);
    }
}

#[tokio::test]
async fn users_resources_and_service_accounts_are_readable() {
    let sim = start().await;
    let a = sim
        .gql(
            r#"{ users(filter: {email: {eq: "bob@example.com"}}) { totalCount edges { node { id email firstName } } }
                 resources(filter: {name: {eq: "prod-db"}}) { edges { node { __typename id name address { value } isActive } } }
                 serviceAccounts(filter: {name: {eq: "ci-deployer"}}) { edges { node { id name createdAt updatedAt
                     resources { edges { node { name } } } keys { totalCount } } } } }"#,
            json!({}),
        )
        .await;
    let d = a.data();
    assert_eq!(d["users"]["totalCount"], 1);
    assert_eq!(d["users"]["edges"][0]["node"]["firstName"], "Bob");
    let bob_id = d["users"]["edges"][0]["node"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = &d["resources"]["edges"][0]["node"];
    assert_eq!(r["__typename"], "NetworkResource");
    assert_eq!(r["address"]["value"], "prod-db.internal");
    assert_eq!(r["isActive"], true);
    let sa = &d["serviceAccounts"]["edges"][0]["node"];
    assert_eq!(sa["resources"]["edges"][0]["node"]["name"], "staging-db");
    assert_eq!(sa["keys"]["totalCount"], 0);

    let a = sim
        .gql(
            "query U($id: ID!) { user(id: $id) { email } }",
            json!({"id": bob_id}),
        )
        .await;
    assert_eq!(a.data()["user"]["email"], "bob@example.com");
    let sa_id = sim.sa_id("ci-deployer");
    let a = sim
        .gql(
            "query($id: ID!) { serviceAccount(id: $id) { name } }",
            json!({"id": sa_id}),
        )
        .await;
    assert_eq!(a.data()["serviceAccount"]["name"], "ci-deployer");
}

#[tokio::test]
async fn group_filters_written_inline() {
    let sim = start().await;
    let names = |a: &Answer| -> Vec<String> {
        a.data()["groups"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["name"].as_str().expect("name").to_string())
            .collect()
    };
    let cases = [
        (r#"{name: {eq: "oncall"}}"#, vec!["oncall"]),
        (
            r#"{name: {ne: "oncall"}}"#,
            vec!["platform", "Everyone", "okta-engineering"],
        ),
        (r#"{name: {startsWith: "okta"}}"#, vec!["okta-engineering"]),
        (r#"{name: {endsWith: "form"}}"#, vec!["platform"]),
        (r#"{name: {contains: "call"}}"#, vec!["oncall"]),
        (
            r#"{name: {regexp: "^(on|plat)"}}"#,
            vec!["oncall", "platform"],
        ),
        (
            r#"{name: {in: ["oncall", "Everyone", "nope"]}}"#,
            vec!["oncall", "Everyone"],
        ),
        (
            "{type: {in: [SYSTEM, SYNCED]}}",
            vec!["Everyone", "okta-engineering"],
        ),
        (
            r#"{type: {in: [MANUAL]}, name: {startsWith: "p"}}"#,
            vec!["platform"],
        ),
        ("{isActive: {eq: false}}", vec![]),
        (
            "{isActive: {eq: true}, type: {in: [MANUAL]}}",
            vec!["oncall", "platform"],
        ),
    ];
    for (filter, want) in cases {
        let q =
            format!("{{ groups(filter: {filter}) {{ totalCount edges {{ node {{ name }} }} }} }}");
        let a = sim.gql(&q, json!(null)).await;
        assert_eq!(names(&a), want, "filter {filter}");
        assert_eq!(
            a.data()["groups"]["totalCount"],
            want.len(),
            "filter {filter}"
        );
    }
    let a = sim
        .gql(
            r#"{ groups(filter: {name: {regexp: "("}}) { totalCount } }"#,
            json!(null),
        )
        .await;
    assert!(a.first_error().contains("Invalid regexp"), "{}", a.body);
}

#[tokio::test]
async fn pagination_walks_250_users_in_pages() {
    let sim = start().await;
    sim.handle.admin().create_users(250, "page").expect("users");
    let query = "query Users($after: String, $first: Int) { users(first: $first, after: $after) { \
                 totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { email } } } }";
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let a = sim.gql(query, json!({"first": 100, "after": after})).await;
        let users = &a.data()["users"];
        assert_eq!(users["totalCount"], 256);
        let edges = users["edges"].as_array().expect("edges");
        seen.extend(
            edges
                .iter()
                .map(|e| e["node"]["email"].as_str().expect("email").to_string()),
        );
        pages += 1;
        assert_eq!(users["pageInfo"]["hasPreviousPage"], pages > 1);
        if users["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = Some(
            users["pageInfo"]["endCursor"]
                .as_str()
                .expect("cursor")
                .to_string(),
        );
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 256);
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 256, "no user twice");

    // Without `first` the default page applies; a larger `first` is capped.
    let a = sim.gql("{ users { edges { cursor } } }", json!({})).await;
    assert_eq!(
        a.data()["users"]["edges"].as_array().map(Vec::len),
        Some(50)
    );
    let a = sim
        .gql("{ users(first: 1000) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(
        a.data()["users"]["edges"].as_array().map(Vec::len),
        Some(100)
    );
    // A cursor the server never gave out (the Twingate CLI sends "0" for its first page)
    // answers the first page, as the real server does.
    for bogus in ["0", "bogus"] {
        let q = format!(
            r#"{{ users(first: 5, after: "{bogus}") {{ edges {{ cursor }} pageInfo {{ hasPreviousPage }} }} }}"#
        );
        let a = sim.gql(&q, json!({})).await;
        let first = sim
            .gql("{ users(first: 5) { edges { cursor } } }", json!({}))
            .await;
        assert_eq!(
            a.data()["users"]["edges"],
            first.data()["users"]["edges"],
            "after {bogus:?}: {}",
            a.body
        );
        assert_eq!(a.data()["users"]["pageInfo"]["hasPreviousPage"], false);
    }
}

#[tokio::test]
async fn nested_connections_paginate_separately() {
    let sim = start().await;
    let admin = sim.handle.admin();
    let ids = admin.create_users(120, "member").expect("users");
    let group = admin
        .create_group("big", twingate_sim::GroupType::Manual)
        .expect("group");
    admin.add_group_users(&group, &ids).expect("members");
    let q = "query G($id: ID!, $after: String) { group(id: $id) { users(first: 100, after: $after) { \
             totalCount pageInfo { hasNextPage endCursor } edges { node { email } } } } }";
    let a = sim.gql(q, json!({"id": group})).await;
    let users = &a.data()["group"]["users"];
    assert_eq!(users["totalCount"], 120);
    assert_eq!(users["edges"].as_array().map(Vec::len), Some(100));
    assert_eq!(users["pageInfo"]["hasNextPage"], true);
    let cursor = users["pageInfo"]["endCursor"].clone();
    let a = sim.gql(q, json!({"id": group, "after": cursor})).await;
    let users = &a.data()["group"]["users"];
    assert_eq!(users["edges"].as_array().map(Vec::len), Some(20));
    assert_eq!(users["pageInfo"]["hasNextPage"], false);
    assert_eq!(users["edges"][19]["node"]["email"], "member119@example.com");

    // A group's page of members only; the groups list itself stays one page.
    let a = sim
        .gql(
            r#"{ groups(filter: {name: {eq: "big"}}) { totalCount edges { node { users(first: 3) { totalCount edges { node { email } } } } } } }"#,
            json!({}),
        )
        .await;
    let nested = &a.data()["groups"]["edges"][0]["node"]["users"];
    assert_eq!(nested["totalCount"], 120);
    assert_eq!(nested["edges"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn resource_interface_fragments_aliases_and_access_edges() {
    let sim = start().await;
    let grafana = sim.resource_id("grafana");
    let staging = sim.resource_id("staging-db");
    let q = "fragment Res on Resource { id name } \
             query R($a: ID!, $b: ID!) { \
               first: resource(id: $a) { ...Res ... on NetworkResource { address { value } } \
                 access { totalCount edges { expiresAt securityPolicy { id } node { __typename ... on Group { id name } ... on ServiceAccount { id name } } } } } \
               second: resource(id: $b) { __typename ...Res access(first: 1) { edges { node { __typename ... on ServiceAccount { name } } } } } }";
    let a = sim.gql(q, json!({"a": grafana, "b": staging})).await;
    let d = a.data();
    assert_eq!(d["first"]["name"], "grafana");
    assert_eq!(d["first"]["address"]["value"], "grafana.internal");
    assert_eq!(d["first"]["access"]["totalCount"], 1);
    let edge = &d["first"]["access"]["edges"][0];
    assert_eq!(edge["node"]["__typename"], "Group");
    assert_eq!(edge["node"]["name"], "oncall");
    assert!(edge["expiresAt"].is_null());
    // An edge created without a policy reports the effective default policy, not null.
    assert_eq!(
        edge["securityPolicy"]["id"],
        twingate_sim::global_id("SecurityPolicy", 1)
    );
    assert_eq!(d["second"]["__typename"], "NetworkResource");
    assert_eq!(
        d["second"]["access"]["edges"][0]["node"]["__typename"],
        "ServiceAccount"
    );
    assert_eq!(
        d["second"]["access"]["edges"][0]["node"]["name"],
        "ci-deployer"
    );
}

#[tokio::test]
async fn introspection_describes_the_schema() {
    let sim = start().await;
    let a = sim
        .gql(
            r#"{ __schema { queryType { name } mutationType { name } }
                 resource: __type(name: "Resource") { kind possibleTypes { name } }
                 principal: __type(name: "Principal") { kind possibleTypes { name } }
                 mutation: __type(name: "MutationsRoot") { fields { name args { name type { kind name ofType { kind name } } } } } }"#,
            json!({}),
        )
        .await;
    let d = a.data();
    assert_eq!(d["__schema"]["queryType"]["name"], "QueriesRoot");
    assert_eq!(d["__schema"]["mutationType"]["name"], "MutationsRoot");
    assert_eq!(d["resource"]["kind"], "INTERFACE");
    assert_eq!(d["resource"]["possibleTypes"][0]["name"], "NetworkResource");
    assert_eq!(d["principal"]["kind"], "UNION");
    let fields = d["mutation"]["fields"].as_array().expect("fields");
    let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
    for want in [
        "groupCreate",
        "groupUpdate",
        "groupDelete",
        "resourceAccessAdd",
        "resourceAccessRemove",
        "resourceAccessSet",
        "serviceAccountCreate",
        "serviceAccountUpdate",
        "serviceAccountDelete",
        "serviceAccountKeyCreate",
        "serviceAccountKeyRevoke",
        "serviceAccountKeyDelete",
    ] {
        assert!(names.contains(&want), "missing {want}");
    }
    // ID lists are nullable lists of nullable IDs, so `[ID]` and `[ID!]!` variables both fit.
    let update = fields
        .iter()
        .find(|f| f["name"] == "groupUpdate")
        .expect("groupUpdate");
    let added = update["args"]
        .as_array()
        .expect("args")
        .iter()
        .find(|a| a["name"] == "addedUserIds")
        .expect("addedUserIds");
    assert_eq!(added["type"]["kind"], "LIST");
    assert_eq!(added["type"]["ofType"]["kind"], "SCALAR");
    assert_eq!(added["type"]["ofType"]["name"], "ID");
}
