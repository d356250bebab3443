//! The stand-in speaks the real schema: its introspection, read over loopback HTTP, against the
//! copy of Twingate's schema in lapse-twingate's tests, with the parts it does not implement listed.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use apollo_compiler::Schema;
use apollo_compiler::schema::ExtendedType;
use serde_json::{Value, json};

const REAL_SCHEMA: &str = include_str!("../../lapse-twingate/tests/schema/twingate-schema.graphql");

/// Types of the real schema the stand-in does not implement.
const UNIMPLEMENTED_TYPES: &[&str] = &[
    "AccessFilterInput",
    "AccessRequest",
    "AccessRequestApproveMutation",
    "AccessRequestConnection",
    "AccessRequestEdge",
    "AccessRequestFilterInput",
    "AccessRequestRejectMutation",
    "Connector",
    "ConnectorConnection",
    "ConnectorCreateMutation",
    "ConnectorDeleteMutation",
    "ConnectorEdge",
    "ConnectorFilterInput",
    "ConnectorGenerateTokensMutation",
    "ConnectorState",
    "ConnectorStateFilterOperatorInput",
    "ConnectorTokens",
    "ConnectorUpdateMutation",
    "Device",
    "DeviceActiveState",
    "DeviceActiveStateFilterOperatorInput",
    "DeviceArchiveMutation",
    "DeviceBlockMutation",
    "DeviceConnection",
    "DeviceEdge",
    "DeviceFilterInput",
    "DeviceOsName",
    "DeviceType",
    "DeviceUnarchiveMutation",
    "DeviceUnblockMutation",
    "DeviceUpdateMutation",
    "KubernetesResource",
    "Node",
    "PortRange",
    "PortRangeInput",
    "PrincipalType",
    "PrincipleTypeFilterOperatorInput",
    "ProtocolInput",
    "ProtocolPolicy",
    "ProtocolsInput",
    "RemoteNetwork",
    "RemoteNetworkConnection",
    "RemoteNetworkCreateMutation",
    "RemoteNetworkDeleteMutation",
    "RemoteNetworkEdge",
    "RemoteNetworkFilterInput",
    "RemoteNetworkLocation",
    "RemoteNetworkUpdateMutation",
    "ResourceCreateMutation",
    "ResourceDeleteMutation",
    "ResourceIdFilterOperationInput",
    "ResourceProtocol",
    "ResourceProtocols",
    "ResourceUpdateMutation",
    "SecurityPolicyConnection",
    "SecurityPolicyEdge",
    "SecurityPolicyFilterField",
    "SecurityPolicyType",
    "SecurityPolicyTypeFilterOperatorInput",
    "SecurityPolicyUpdateMutation",
    "SerialNumber",
    "SerialNumberConnection",
    "SerialNumberEdge",
    "SerialNumberFilterInput",
    "SerialNumbersCreateMutation",
    "SerialNumbersDeleteMutation",
    "ServiceAccountKeyUpdateMutation",
    "UserCreateMutation",
    "UserDeleteMutation",
    "UserDetailsUpdateMutation",
    "UserIdFilterOperationInput",
    "UserRoleUpdateMutation",
    "UserStateUpdateInput",
];

/// Fields (and input fields) of implemented types that the stand-in leaves out.
const UNIMPLEMENTED_FIELDS: &[&str] = &[
    "AccessEdge.usageBasedAutolockDurationDays",
    "AccessInput.usageBasedAutolockDurationDays",
    "Group.originId",
    "GroupFilterInput.originId",
    "MutationsRoot.accessRequestApprove",
    "MutationsRoot.accessRequestReject",
    "MutationsRoot.connectorCreate",
    "MutationsRoot.connectorDelete",
    "MutationsRoot.connectorGenerateTokens",
    "MutationsRoot.connectorUpdate",
    "MutationsRoot.deviceArchive",
    "MutationsRoot.deviceBlock",
    "MutationsRoot.deviceUnarchive",
    "MutationsRoot.deviceUnblock",
    "MutationsRoot.deviceUpdate",
    "MutationsRoot.remoteNetworkCreate",
    "MutationsRoot.remoteNetworkDelete",
    "MutationsRoot.remoteNetworkUpdate",
    "MutationsRoot.resourceCreate",
    "MutationsRoot.resourceDelete",
    "MutationsRoot.resourceUpdate",
    "MutationsRoot.securityPolicyUpdate",
    "MutationsRoot.serialNumbersCreate",
    "MutationsRoot.serialNumbersDelete",
    "MutationsRoot.serviceAccountKeyUpdate",
    "MutationsRoot.userCreate",
    "MutationsRoot.userDelete",
    "MutationsRoot.userDetailsUpdate",
    "MutationsRoot.userRoleUpdate",
    "QueriesRoot.accessRequest",
    "QueriesRoot.accessRequests",
    "QueriesRoot.connector",
    "QueriesRoot.connectors",
    "QueriesRoot.device",
    "QueriesRoot.devices",
    "QueriesRoot.remoteNetwork",
    "QueriesRoot.remoteNetworks",
    "QueriesRoot.securityPolicies",
    "QueriesRoot.securityPolicy",
    "QueriesRoot.serialNumbers",
    "NetworkResource.alias",
    "NetworkResource.groups",
    "NetworkResource.isBrowserShortcutEnabled",
    "NetworkResource.isVisible",
    "NetworkResource.protocols",
    "NetworkResource.remoteNetwork",
    "NetworkResource.securityPolicy",
    "NetworkResource.serviceAccounts",
    "NetworkResource.usageBasedAutolockDurationDays",
    "Resource.alias",
    "Resource.groups",
    "Resource.isBrowserShortcutEnabled",
    "Resource.isVisible",
    "Resource.protocols",
    "Resource.remoteNetwork",
    "Resource.securityPolicy",
    "Resource.serviceAccounts",
    "Resource.usageBasedAutolockDurationDays",
    "SecurityPolicy.createdAt",
    "SecurityPolicy.groups",
    "SecurityPolicy.policyType",
    "SecurityPolicy.updatedAt",
    "User.avatarUrl",
    "User.groups",
    "User.isAdmin",
];

/// Arguments the stand-in does not take: backward pagination everywhere, and the filters of
/// nested lists nobody filters.
const UNIMPLEMENTED_ARGS: &[&str] = &[
    "*(before)",
    "*(last)",
    "Group.resources(filter)",
    "NetworkResource.access(filter)",
    "Resource.access(filter)",
    "ServiceAccount.resources(filter)",
];

/// Union members the stand-in does not have.
const UNIMPLEMENTED_MEMBERS: &[&str] = &["Resource:KubernetesResource"];

const INTROSPECTION: &str = r#"query Introspection {
  __schema {
    queryType { name }
    mutationType { name }
    types {
      kind name
      fields(includeDeprecated: true) { name args { name type { ...T } } type { ...T } }
      inputFields { name type { ...T } }
      enumValues(includeDeprecated: true) { name }
      possibleTypes { name }
    }
  }
}
fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }"#;

/// An introspected type reference in SDL notation (`[ID!]!`).
fn sdl(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", sdl(&t["ofType"])),
        Some("LIST") => format!("[{}]", sdl(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or("?").to_owned(),
    }
}

fn kind_of(t: &ExtendedType) -> &'static str {
    match t {
        ExtendedType::Scalar(_) => "SCALAR",
        ExtendedType::Object(_) => "OBJECT",
        ExtendedType::Interface(_) => "INTERFACE",
        ExtendedType::Union(_) => "UNION",
        ExtendedType::Enum(_) => "ENUM",
        ExtendedType::InputObject(_) => "INPUT_OBJECT",
    }
}

/// Fields (or input fields) of a real type: name to (type, arguments by name).
type Fields = BTreeMap<String, (String, BTreeMap<String, String>)>;

fn real_fields(t: &ExtendedType) -> Fields {
    let args = |a: &[apollo_compiler::Node<apollo_compiler::ast::InputValueDefinition>]| {
        a.iter()
            .map(|a| (a.name.to_string(), a.ty.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    match t {
        ExtendedType::Object(o) => o
            .fields
            .iter()
            .map(|(n, f)| (n.to_string(), (f.ty.to_string(), args(&f.arguments))))
            .collect(),
        ExtendedType::Interface(i) => i
            .fields
            .iter()
            .map(|(n, f)| (n.to_string(), (f.ty.to_string(), args(&f.arguments))))
            .collect(),
        ExtendedType::InputObject(i) => i
            .fields
            .iter()
            .map(|(n, f)| (n.to_string(), (f.ty.to_string(), BTreeMap::new())))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn sim_fields(t: &Value) -> Fields {
    let list = if t["kind"] == "INPUT_OBJECT" {
        &t["inputFields"]
    } else {
        &t["fields"]
    };
    list.as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let args = f["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap_or("?").to_owned(),
                        sdl(&a["type"]),
                    )
                })
                .collect();
            (
                f["name"].as_str().unwrap_or("?").to_owned(),
                (sdl(&f["type"]), args),
            )
        })
        .collect()
}

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .collect()
}

/// Every difference between the two schemas, and every listed exception that was used.
struct Comparison {
    differences: Vec<String>,
    used: BTreeSet<String>,
}

impl Comparison {
    /// A real part the stand-in lacks: allowed when listed under `key` (or a wildcard).
    fn missing(&mut self, listed: &[&str], keys: &[String], difference: String) {
        match keys.iter().find(|k| listed.contains(&k.as_str())) {
            Some(k) => {
                self.used.insert(k.clone());
            }
            None => self.differences.push(difference),
        }
    }
}

fn compare(real: &Schema, sim: &Value) -> Comparison {
    let mut c = Comparison {
        differences: Vec::new(),
        used: BTreeSet::new(),
    };
    let root = |r: Option<&apollo_compiler::schema::ComponentName>| r.map(|n| n.to_string());
    for (what, real_root, sim_root) in [
        (
            "query",
            root(real.schema_definition.query.as_ref()),
            &sim["queryType"]["name"],
        ),
        (
            "mutation",
            root(real.schema_definition.mutation.as_ref()),
            &sim["mutationType"]["name"],
        ),
    ] {
        if real_root.as_deref() != sim_root.as_str() {
            c.differences.push(format!(
                "{what} root is {sim_root} in the sim, {real_root:?} for real"
            ));
        }
    }
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    let sim_types: BTreeMap<String, &Value> = sim["types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["name"].as_str()?.to_owned(), t)))
        .filter(|(n, _)| !n.starts_with("__") && !builtin.contains(&n.as_str()))
        .collect();

    for (name, t) in &real.types {
        let name = name.to_string();
        if t.is_built_in() || builtin.contains(&name.as_str()) {
            continue;
        }
        let Some(st) = sim_types.get(&name) else {
            c.missing(
                UNIMPLEMENTED_TYPES,
                std::slice::from_ref(&name),
                format!("type {name} is missing from the sim"),
            );
            continue;
        };
        if st["kind"] != kind_of(t) {
            c.differences.push(format!(
                "type {name} is {} in the sim, {} for real",
                st["kind"],
                kind_of(t)
            ));
            continue;
        }
        match t {
            ExtendedType::Enum(e) => {
                let want: BTreeSet<String> = e.values.keys().map(|v| v.to_string()).collect();
                let have = names(&st["enumValues"]);
                if want != have {
                    c.differences.push(format!(
                        "enum {name} has {have:?} in the sim, {want:?} for real"
                    ));
                }
            }
            ExtendedType::Union(u) => {
                let want: BTreeSet<String> = u.members.iter().map(|m| m.to_string()).collect();
                let have = names(&st["possibleTypes"]);
                if want != have {
                    c.differences.push(format!(
                        "union {name} has {have:?} in the sim, {want:?} for real"
                    ));
                }
            }
            ExtendedType::Interface(_) => {
                let want: BTreeSet<String> = real
                    .implementers_map()
                    .get(name.as_str())
                    .map(|i| i.objects.iter().map(|o| o.to_string()).collect())
                    .unwrap_or_default();
                let have = names(&st["possibleTypes"]);
                for m in want.difference(&have) {
                    c.missing(
                        UNIMPLEMENTED_MEMBERS,
                        &[format!("{name}:{m}")],
                        format!("interface {name} lacks implementer {m} in the sim"),
                    );
                }
                for m in have.difference(&want) {
                    c.differences.push(format!(
                        "interface {name} has implementer {m} only in the sim"
                    ));
                }
            }
            _ => {}
        }
        let want = real_fields(t);
        let have = sim_fields(st);
        for (field, (ty, args)) in &want {
            let Some((sim_ty, sim_args)) = have.get(field) else {
                c.missing(
                    UNIMPLEMENTED_FIELDS,
                    &[format!("{name}.{field}")],
                    format!("{name}.{field}: {ty} is missing from the sim"),
                );
                continue;
            };
            if ty != sim_ty {
                c.differences.push(format!(
                    "{name}.{field} is {sim_ty} in the sim, {ty} for real"
                ));
            }
            for (arg, arg_ty) in args {
                match sim_args.get(arg) {
                    None => c.missing(
                        UNIMPLEMENTED_ARGS,
                        &[format!("{name}.{field}({arg})"), format!("*({arg})")],
                        format!("{name}.{field}({arg}: {arg_ty}) is missing from the sim"),
                    ),
                    Some(sim_arg_ty) if sim_arg_ty != arg_ty => c.differences.push(format!(
                        "{name}.{field}({arg}:) is {sim_arg_ty} in the sim, {arg_ty} for real"
                    )),
                    Some(_) => {}
                }
            }
            for arg in sim_args.keys().filter(|a| !args.contains_key(*a)) {
                c.differences
                    .push(format!("{name}.{field}({arg}:) exists only in the sim"));
            }
        }
        for field in have.keys().filter(|f| !want.contains_key(*f)) {
            c.differences
                .push(format!("{name}.{field} exists only in the sim"));
        }
    }
    for name in sim_types.keys() {
        if !real.types.contains_key(name.as_str()) {
            c.differences
                .push(format!("type {name} exists only in the sim"));
        }
    }
    c
}

fn real_schema() -> Schema {
    Schema::parse_and_validate(REAL_SCHEMA, "twingate-schema.graphql")
        .expect("the schema copy is valid SDL")
        .into_inner()
}

async fn introspect() -> Value {
    let sim = common::start().await;
    let a = sim.gql(INTROSPECTION, json!({})).await;
    a.data()["__schema"].clone()
}

#[tokio::test]
async fn the_sim_speaks_the_real_schema_apart_from_the_listed_parts() {
    let real = real_schema();
    let sim = introspect().await;
    let c = compare(&real, &sim);
    assert!(
        c.differences.is_empty(),
        "{} difference(s) between the sim and the real schema:\n{}",
        c.differences.len(),
        c.differences.join("\n")
    );
    // Every listed exception is still needed, so the list never hides a part the sim gained.
    let listed: BTreeSet<String> = UNIMPLEMENTED_TYPES
        .iter()
        .chain(UNIMPLEMENTED_FIELDS)
        .chain(UNIMPLEMENTED_ARGS)
        .chain(UNIMPLEMENTED_MEMBERS)
        .map(|s| (*s).to_owned())
        .collect();
    let stale: Vec<&String> = listed.difference(&c.used).collect();
    assert!(
        stale.is_empty(),
        "listed as unimplemented but implemented: {stale:?}"
    );
}

#[tokio::test]
async fn the_comparison_catches_a_departure() {
    // The known departures of old, written back into the real schema, must each be reported.
    let departed = REAL_SCHEMA
        .replace(
            "resourceAccessRemove(principalIds: [ID!]!",
            "resourceAccessRemove(principalIds: [ID]",
        )
        .replace("  email: String\n", "  email: String!\n");
    let real = Schema::parse_and_validate(departed, "departed.graphql")
        .expect("still valid SDL")
        .into_inner();
    let sim = introspect().await;
    let c = compare(&real, &sim);
    let text = c.differences.join("\n");
    assert!(
        text.contains(
            "MutationsRoot.resourceAccessRemove(principalIds:) is [ID!]! in the sim, [ID] for real"
        ),
        "{text}"
    );
    assert!(
        text.contains("User.email is String in the sim, String! for real"),
        "{text}"
    );
}
