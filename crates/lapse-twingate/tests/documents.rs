//! Every GraphQL document the client sends is valid against Twingate's real schema (the copy in
//! `tests/schema/`), and so are the variables it sends with each, as the journal of a stand-in
//! records them after a run through every operation.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use apollo_compiler::response::JsonMap;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use common::*;
use lapse_core::AccessProvider;
use lapse_core::provider::{AccessToAdd, Priority, RemoteId};
use serde_json::Value;

fn rid(s: String) -> RemoteId {
    RemoteId(s)
}

const REAL_SCHEMA: &str = include_str!("schema/twingate-schema.graphql");

fn schema() -> Valid<Schema> {
    Schema::parse_and_validate(REAL_SCHEMA, "twingate-schema.graphql")
        .expect("the schema copy is valid SDL")
}

/// Validates `document` against the schema and coerces `variables` for operation `name`.
fn check(
    schema: &Valid<Schema>,
    name: &str,
    document: &str,
    variables: &Value,
) -> Result<(), String> {
    let doc = ExecutableDocument::parse_and_validate(schema, document, format!("{name}.graphql"))
        .map_err(|e| format!("{name}: {}", e.errors))?;
    let operation = doc
        .operations
        .get(Some(name))
        .map_err(|_| format!("{name}: the document has no operation of that name"))?;
    let values: JsonMap = match variables {
        Value::Null => JsonMap::new(),
        v => serde_json::from_value(v.clone()).map_err(|e| format!("{name}: variables: {e}"))?,
    };
    apollo_compiler::request::coerce_variable_values(schema, operation, &values)
        .map_err(|e| format!("{name}: variables {variables}: {}", e.message()))?;
    Ok(())
}

/// Calls every operation of the client against the stand-in, with pages of one so that every
/// nested-page query is sent too.
async fn run_every_operation(sim: &twingate_sim::SimHandle) {
    let admin = sim.admin();
    let (prod, grafana) = (resource_id(301), resource_id(303));
    admin
        .add_resource_access(&grafana, &group_id(202), None)
        .expect("second edge on grafana");
    admin
        .add_resource_access(&prod, &group_id(201), None)
        .expect("second resource of oncall");
    admin
        .add_resource_access(&prod, &ci_deployer_id(), None)
        .expect("second resource of ci-deployer");
    admin
        .add_group_users(&group_id(201), &[user_id(101)])
        .expect("second member of oncall");
    let client = ClientBuilder::new(sim)
        .page_size(1)
        .cache_ttl(std::time::Duration::ZERO)
        .build();

    client
        .user_by_email("alice@example.com")
        .await
        .expect("UsersByEmail");
    client.user(&rid(user_id(102))).await.expect("User");
    client
        .resources_by_name("grafana")
        .await
        .expect("ResourcesByName");
    client
        .resource(&rid(grafana.clone()))
        .await
        .expect("Resource");
    client.groups_by_name("oncall").await.expect("GroupsByName");
    client
        .groups_with_prefix("on")
        .await
        .expect("GroupsByPrefix");
    client.group(&rid(group_id(201))).await.expect("Group");
    let sa = rid(ci_deployer_id());
    let one = client
        .create_key(&sa, "lapse-doc-1", 1, Priority::Apply)
        .await
        .expect("ServiceAccountKeyCreate");
    client
        .create_key(&sa, "lapse-doc-2", 1, Priority::Apply)
        .await
        .expect("a second key, for the keys page");
    client
        .service_accounts_by_name("ci-deployer")
        .await
        .expect("ServiceAccountsByName");
    client.service_account(&sa).await.expect("ServiceAccount");
    client
        .revoke_key(&one.key.id, Priority::Revoke)
        .await
        .expect("ServiceAccountKeyRevoke");
    client
        .delete_key(&one.key.id, Priority::Revoke)
        .await
        .expect("ServiceAccountKeyDelete");
    let group = client
        .create_group("lapse-doc", &[rid(user_id(104))], &[], Priority::Apply)
        .await
        .expect("GroupCreate");
    client
        .update_group_users(
            &group,
            &[rid(user_id(105))],
            &[rid(user_id(104))],
            Priority::Apply,
        )
        .await
        .expect("GroupUpdateUsers");
    let until = chrono::Utc::now() + chrono::Duration::hours(1);
    client
        .add_resource_access(
            &rid(prod.clone()),
            &[AccessToAdd {
                principal: group.clone(),
                expires_at: Some(until),
            }],
            Priority::Apply,
        )
        .await
        .expect("ResourceAccessAdd");
    client
        .remove_resource_access(
            &rid(prod.clone()),
            std::slice::from_ref(&group),
            Priority::Revoke,
        )
        .await
        .expect("ResourceAccessRemove");
    client
        .update_service_account_resources(&sa, &[rid(resource_id(304))], &[], Priority::Apply)
        .await
        .expect("ServiceAccountUpdateResources");
    client
        .delete_group(&group, Priority::Revoke)
        .await
        .expect("GroupDelete");
}

#[tokio::test]
async fn every_document_and_its_variables_fit_the_real_schema() {
    let schema = schema();
    let sim = start_sim().await;
    run_every_operation(&sim).await;

    let documents: BTreeMap<&str, &str> = lapse_twingate::documents().into_iter().collect();
    let mut sent: BTreeSet<String> = BTreeSet::new();
    let mut problems = Vec::new();
    for entry in sim.journal() {
        let name = entry.operation_name.clone().expect("every call is named");
        let Some(document) = documents.get(name.as_str()) else {
            problems.push(format!(
                "{name} was sent but is not among the client's documents"
            ));
            continue;
        };
        if let Err(e) = check(&schema, &name, document, &entry.variables) {
            problems.push(e);
        }
        sent.insert(name);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let unsent: Vec<&&str> = documents.keys().filter(|n| !sent.contains(**n)).collect();
    assert!(
        unsent.is_empty(),
        "documents the run did not exercise: {unsent:?}"
    );
    // The access edges lapse adds say MANUAL, as Terraform does, and expiry has microseconds.
    let add = sim
        .journal()
        .into_iter()
        .find(|e| e.operation_name.as_deref() == Some("ResourceAccessAdd"))
        .expect("an add");
    let edge = &add.variables["access"][0];
    assert_eq!(
        edge["accessPolicy"],
        serde_json::json!({"mode": "MANUAL", "durationSeconds": null})
    );
    let expiry = edge["expiresAt"].as_str().expect("expiry");
    let fraction = expiry.split('.').nth(1).expect("fraction");
    assert_eq!(
        fraction.split('+').next().map(str::len),
        Some(6),
        "{expiry}"
    );
}

#[tokio::test]
async fn a_field_or_variable_the_real_schema_lacks_is_caught() {
    let schema = schema();
    let documents: BTreeMap<&str, &str> = lapse_twingate::documents().into_iter().collect();
    let resource = documents["Resource"];
    let vars = serde_json::json!({"id": resource_id(301), "first": 50});
    assert_eq!(check(&schema, "Resource", resource, &vars), Ok(()));

    // A field only the old stand-in had.
    let wrong = resource.replace("expiresAt", "expiresAt accessPolicy { duration }");
    let e = check(&schema, "Resource", &wrong, &vars).expect_err("unknown field");
    assert!(e.contains("duration"), "{e}");
    // The filter input by the name the old stand-in used.
    let remove = documents["ResourceAccessRemove"].replace("[ID!]!", "[ID]");
    let e = check(
        &schema,
        "ResourceAccessRemove",
        &remove,
        &serde_json::json!({"resourceId": resource_id(301), "principalIds": [group_id(201)]}),
    )
    .expect_err("a nullable list where [ID!]! is required");
    assert!(e.contains("principalIds"), "{e}");
    // Variables that do not coerce: a null in a list of non-null IDs.
    let e = check(
        &schema,
        "ResourceAccessRemove",
        documents["ResourceAccessRemove"],
        &serde_json::json!({"resourceId": resource_id(301), "principalIds": [null]}),
    )
    .expect_err("null ID");
    assert!(e.contains("principalIds"), "{e}");
}
