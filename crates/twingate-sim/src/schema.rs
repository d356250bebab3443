//! The GraphQL schema subset of Twingate's Admin API: types, filters, queries and mutations.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, Error, ID, InputObject, InputValueError, InputValueResult,
    Interface, MaybeUndefined, Object, Result, Scalar, ScalarType, Schema, SimpleObject, Union,
    Value,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use crate::clock::format_ts;
use crate::ids::{self, GlobalId};
use crate::model::*;
use crate::shared::{Applied, Shared};
use crate::store::{AccessChange, GroupChanges, Ref, ServiceAccountChanges, Store};

pub(crate) type SimSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

pub(crate) fn build() -> SimSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription).finish()
}

/// Pages hold at most this many nodes; a larger `first` is cut down to it.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when a client sends no `first`.
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// Twingate's `DateTime`: RFC 3339 with microseconds and a numeric offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DateTimeScalar(pub DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTimeScalar {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| DateTimeScalar(t.with_timezone(&Utc)))
                .map_err(|e| InputValueError::custom(format!("invalid DateTime '{s}': {e}"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(format_ts(&self.0))
    }
}

fn ts(t: DateTime<Utc>) -> DateTimeScalar {
    DateTimeScalar(t)
}

fn shared<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Shared>> {
    ctx.data::<Arc<Shared>>()
}

/// The error Twingate gives for an ID that is not base64 of `Type:pk`.
fn parse_error(arg: &str) -> Error {
    Error::new(format!("{{'{arg}': ['Unable to parse global ID']}}"))
}

fn parse(arg: &str, id: &ID) -> Result<GlobalId> {
    ids::decode(id.as_str()).ok_or_else(|| parse_error(arg))
}

fn int_ref(arg: &str, id: &ID, kind: &str) -> Result<Ref<u64>> {
    Ok(Ref {
        raw: id.to_string(),
        key: parse(arg, id)?.int_pk(kind),
    })
}

fn uuid_ref(arg: &str, id: &ID, kind: &str) -> Result<Ref<String>> {
    Ok(Ref {
        raw: id.to_string(),
        key: parse(arg, id)?.uuid_pk(kind).map(str::to_string),
    })
}

fn principal_ref(arg: &str, id: &ID) -> Result<Ref<Principal>> {
    let g = parse(arg, id)?;
    let key = g.int_pk(ids::GROUP).map(Principal::Group).or_else(|| {
        g.uuid_pk(ids::SERVICE_ACCOUNT)
            .map(|s| Principal::ServiceAccount(s.to_string()))
    });
    Ok(Ref {
        raw: id.to_string(),
        key,
    })
}

/// `[ID]` arguments: a null entry in the list is an unparsable ID.
fn int_refs(arg: &str, ids: &Option<Vec<Option<ID>>>, kind: &str) -> Result<Vec<Ref<u64>>> {
    ids.iter()
        .flatten()
        .map(|id| match id {
            Some(id) => int_ref(arg, id, kind),
            None => Err(parse_error(arg)),
        })
        .collect()
}

fn opt_int_refs(
    arg: &str,
    ids: &Option<Vec<Option<ID>>>,
    kind: &str,
) -> Result<Option<Vec<Ref<u64>>>> {
    ids.as_ref().map(|_| int_refs(arg, ids, kind)).transpose()
}

/// A nullable field that failed answers `null` beside its error, as Twingate does
/// (`{"data":{"group":null},"errors":[…]}`), rather than failing the whole `data`.
fn nullable<T>(ctx: &Context<'_>, result: Result<Option<T>>) -> Option<T> {
    match result {
        Ok(v) => v,
        Err(e) => {
            ctx.add_error(ctx.set_error_path(e.into_server_error(ctx.item.pos)));
            None
        }
    }
}

// ---------- pagination ----------

#[derive(SimpleObject, Clone)]
pub(crate) struct PageInfo {
    has_next_page: bool,
    has_previous_page: bool,
    start_cursor: Option<String>,
    end_cursor: Option<String>,
}

fn cursor(index: usize) -> String {
    STANDARD.encode(format!("arrayconnection:{index}"))
}

/// The index a cursor names; `None` for one the server never gave out (the Twingate CLI sends
/// `after: "0"` for its first page, and the real server answers with the first page).
fn decode_cursor(after: &str) -> Option<usize> {
    STANDARD
        .decode(after)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("arrayconnection:")?.parse().ok())
}

/// The nodes of one page with their cursors, the page info and the total count.
type Page<T> = (Vec<(String, T)>, PageInfo, i32);

/// One page of `items`, Relay style: `first` from the node after the `after` cursor.
fn page<T>(items: Vec<T>, first: Option<i32>, after: Option<String>) -> Result<Page<T>> {
    let total = items.len();
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if first < 0 {
        return Err(Error::new(
            "Argument 'first' must be a non-negative integer",
        ));
    }
    let first = first.min(MAX_PAGE_SIZE) as usize;
    let start = after
        .as_deref()
        .and_then(decode_cursor)
        .map_or(0, |i| i + 1);
    let nodes: Vec<(String, T)> = items
        .into_iter()
        .enumerate()
        .skip(start)
        .take(first)
        .map(|(i, t)| (cursor(i), t))
        .collect();
    let info = PageInfo {
        has_next_page: start + nodes.len() < total,
        has_previous_page: start > 0 && total > 0,
        start_cursor: nodes.first().map(|(c, _)| c.clone()),
        end_cursor: nodes.last().map(|(c, _)| c.clone()),
    };
    Ok((nodes, info, i32::try_from(total).unwrap_or(i32::MAX)))
}

/// Turns a page of borrowed users into owned nodes, so only the page is copied.
fn clone_page(page: Page<&User>) -> Result<Page<UserNode>> {
    let (nodes, info, total) = page;
    Ok((
        nodes
            .into_iter()
            .map(|(c, u)| (c, UserNode(u.clone())))
            .collect(),
        info,
        total,
    ))
}

macro_rules! connection {
    ($conn:ident, $edge:ident, $node:ty, $conn_name:literal, $edge_name:literal) => {
        #[derive(SimpleObject)]
        #[graphql(name = $conn_name)]
        pub(crate) struct $conn {
            edges: Vec<$edge>,
            page_info: PageInfo,
            total_count: i32,
        }

        #[derive(SimpleObject)]
        #[graphql(name = $edge_name)]
        pub(crate) struct $edge {
            cursor: String,
            node: $node,
        }

        impl From<Page<$node>> for $conn {
            fn from((nodes, page_info, total_count): Page<$node>) -> $conn {
                $conn {
                    edges: nodes
                        .into_iter()
                        .map(|(cursor, node)| $edge { cursor, node })
                        .collect(),
                    page_info,
                    total_count,
                }
            }
        }
    };
}

connection!(
    UserConnection,
    UserEdge,
    UserNode,
    "UserConnection",
    "UserEdge"
);
connection!(
    GroupConnection,
    GroupEdge,
    GroupNode,
    "GroupConnection",
    "GroupEdge"
);
connection!(
    ResourceConnection,
    ResourceEdge,
    ResourceNode,
    "ResourceConnection",
    "ResourceEdge"
);
connection!(
    ServiceAccountConnection,
    ServiceAccountEdge,
    ServiceAccountNode,
    "ServiceAccountConnection",
    "ServiceAccountEdge"
);
connection!(
    ServiceAccountKeyConnection,
    ServiceAccountKeyEdge,
    KeyNode,
    "ServiceAccountKeyConnection",
    "ServiceAccountKeyEdge"
);

// ---------- filters ----------

#[derive(InputObject, Default)]
#[graphql(name = "StringFilterOperatorInput")]
pub(crate) struct StringFilter {
    eq: Option<String>,
    ne: Option<String>,
    starts_with: Option<String>,
    ends_with: Option<String>,
    contains: Option<String>,
    regexp: Option<String>,
    #[graphql(name = "in")]
    in_: Option<Vec<String>>,
}

/// A string filter with its regexp compiled once per list, not once per row.
struct StringMatcher<'a> {
    filter: &'a StringFilter,
    regex: Option<regex::Regex>,
}

impl<'a> StringMatcher<'a> {
    fn new(filter: &'a StringFilter) -> Result<StringMatcher<'a>> {
        let regex = filter
            .regexp
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| Error::new(format!("Invalid regexp: {e}")))?;
        Ok(StringMatcher { filter, regex })
    }

    fn matches(&self, s: &str) -> bool {
        let f = self.filter;
        f.eq.as_deref().is_none_or(|v| s == v)
            && f.ne.as_deref().is_none_or(|v| s != v)
            && f.starts_with.as_deref().is_none_or(|v| s.starts_with(v))
            && f.ends_with.as_deref().is_none_or(|v| s.ends_with(v))
            && f.contains.as_deref().is_none_or(|v| s.contains(v))
            && f.in_.as_ref().is_none_or(|v| v.iter().any(|x| x == s))
            && self.regex.as_ref().is_none_or(|r| r.is_match(s))
    }
}

fn matcher(f: &Option<StringFilter>) -> Result<Option<StringMatcher<'_>>> {
    f.as_ref().map(StringMatcher::new).transpose()
}

fn pass(m: &Option<StringMatcher<'_>>, s: &str) -> bool {
    m.as_ref().is_none_or(|m| m.matches(s))
}

#[derive(InputObject)]
#[graphql(name = "GroupTypeFilterOperatorInput")]
pub(crate) struct GroupTypeFilter {
    #[graphql(name = "in")]
    in_: Option<Vec<GroupType>>,
}

#[derive(InputObject)]
#[graphql(name = "BooleanFilterOperatorInput")]
pub(crate) struct BooleanFilter {
    eq: Option<bool>,
}

#[derive(InputObject)]
#[graphql(name = "UserRoleFilterOperatorInput")]
pub(crate) struct UserRoleFilter {
    #[graphql(name = "in")]
    in_: Option<Vec<UserRole>>,
}

#[derive(InputObject)]
#[graphql(name = "GroupFilterInput")]
pub(crate) struct GroupFilter {
    name: Option<StringFilter>,
    #[graphql(name = "type")]
    group_type: Option<GroupTypeFilter>,
    is_active: Option<BooleanFilter>,
}

#[derive(InputObject)]
#[graphql(name = "UserFilterInput")]
pub(crate) struct UserFilter {
    email: Option<StringFilter>,
    first_name: Option<StringFilter>,
    last_name: Option<StringFilter>,
    role: Option<UserRoleFilter>,
}

#[derive(InputObject)]
#[graphql(name = "ResourceFilterInput")]
pub(crate) struct ResourceFilter {
    name: Option<StringFilter>,
}

#[derive(InputObject)]
#[graphql(name = "ServiceAccountFilterInput")]
pub(crate) struct ServiceAccountFilter {
    name: Option<StringFilter>,
}

/// Users matching `filter`, borrowed: only the requested page is cloned afterwards.
fn filter_users<'s>(
    store: &'s Store,
    pks: &[u64],
    filter: &Option<UserFilter>,
) -> Result<Vec<&'s User>> {
    let (email, first, last) = match filter {
        Some(f) => (
            matcher(&f.email)?,
            matcher(&f.first_name)?,
            matcher(&f.last_name)?,
        ),
        None => (None, None, None),
    };
    let roles = filter
        .as_ref()
        .and_then(|f| f.role.as_ref())
        .and_then(|r| r.in_.clone());
    Ok(pks
        .iter()
        .filter_map(|pk| store.users.get(pk))
        .filter(|u| {
            email
                .as_ref()
                .is_none_or(|m| u.email.as_deref().is_some_and(|e| m.matches(e)))
                && pass(&first, &u.first_name)
                && pass(&last, &u.last_name)
                && roles.as_ref().is_none_or(|r| r.contains(&u.role))
        })
        .collect())
}

fn resource_nodes(store: &Store, pks: &[u64]) -> Vec<ResourceNode> {
    pks.iter()
        .filter_map(|pk| store.resources.get(pk))
        .map(|r| ResourceNode::NetworkResource(NetworkResource(r.clone())))
        .collect()
}

// ---------- objects ----------

pub(crate) struct UserNode(User);

#[Object(name = "User")]
impl UserNode {
    async fn id(&self) -> ID {
        ID(ids::encode(ids::USER, self.0.pk))
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    async fn first_name(&self) -> &str {
        &self.0.first_name
    }
    async fn last_name(&self) -> &str {
        &self.0.last_name
    }
    async fn role(&self) -> UserRole {
        self.0.role
    }
    async fn state(&self) -> UserState {
        self.0.state
    }
    #[graphql(name = "type")]
    async fn user_type(&self) -> UserType {
        self.0.user_type
    }
    async fn created_at(&self) -> DateTimeScalar {
        ts(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTimeScalar {
        ts(self.0.updated_at)
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "SecurityPolicy")]
pub(crate) struct SecurityPolicyNode {
    id: ID,
    name: String,
}

/// The policy in force: the one set, or the network's default (the first policy) when none is.
fn policy_node(store: &Store, pk: Option<u64>) -> Option<SecurityPolicyNode> {
    pk.and_then(|pk| store.policy(pk))
        .or_else(|| store.policies.first())
        .map(|p| SecurityPolicyNode {
            id: ID(ids::encode(ids::SECURITY_POLICY, p.pk)),
            name: p.name.clone(),
        })
}

pub(crate) struct GroupNode(Group);

#[Object(name = "Group")]
impl GroupNode {
    async fn id(&self) -> ID {
        ID(ids::encode(ids::GROUP, self.0.pk))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "type")]
    async fn group_type(&self) -> GroupType {
        self.0.group_type
    }
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    async fn created_at(&self) -> DateTimeScalar {
        ts(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTimeScalar {
        ts(self.0.updated_at)
    }
    async fn security_policy(&self, ctx: &Context<'_>) -> Result<SecurityPolicyNode> {
        shared(ctx)?
            .with_store(|s, _| policy_node(s, self.0.security_policy))
            .ok_or_else(|| Error::new("the network has no security policy"))
    }
    /// Members, read afresh so that a nested page reflects the state at resolution time.
    async fn users(
        &self,
        ctx: &Context<'_>,
        filter: Option<UserFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        let page = shared(ctx)?.with_store(|s, _| {
            let pks = s
                .groups
                .get(&self.0.pk)
                .map(|g| g.users.clone())
                .unwrap_or_default();
            clone_page(page(filter_users(s, &pks, &filter)?, first, after)?)
        })?;
        Ok(UserConnection::from(page))
    }
    async fn resources(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ResourceConnection> {
        let items = shared(ctx)?
            .with_store(|s, _| resource_nodes(s, &s.resources_of(&Principal::Group(self.0.pk))));
        page(items, first, after).map(ResourceConnection::from)
    }
}

#[derive(Enum, Copy, Clone, PartialEq, Eq)]
pub(crate) enum AddressType {
    Dns,
    Ip,
}

#[derive(SimpleObject)]
#[graphql(name = "ResourceAddress")]
pub(crate) struct Address {
    #[graphql(name = "type")]
    address_type: AddressType,
    value: String,
}

#[derive(SimpleObject)]
pub(crate) struct AccessPolicy {
    mode: AccessPolicyMode,
    duration_seconds: Option<i32>,
}

pub(crate) struct NetworkResource(Resource);

#[Object]
impl NetworkResource {
    async fn id(&self) -> ID {
        ID(ids::encode(ids::RESOURCE, self.0.pk))
    }
    async fn name(&self) -> String {
        self.0.name.clone()
    }
    async fn address(&self) -> Address {
        let is_ip =
            self.0.address.parse::<std::net::IpAddr>().is_ok() || self.0.address.contains('/');
        Address {
            address_type: if is_ip {
                AddressType::Ip
            } else {
                AddressType::Dns
            },
            value: self.0.address.clone(),
        }
    }
    async fn is_active(&self) -> bool {
        self.0.is_active
    }
    async fn created_at(&self) -> DateTimeScalar {
        ts(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTimeScalar {
        ts(self.0.updated_at)
    }
    async fn access(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<AccessConnection> {
        let items = shared(ctx)?.with_store(|s, _| {
            let edges = s
                .resources
                .get(&self.0.pk)
                .map(|r| r.access.clone())
                .unwrap_or_default();
            edges
                .into_iter()
                .filter_map(|e| {
                    let node = match &e.principal {
                        Principal::Group(pk) => {
                            PrincipalNode::Group(GroupNode(s.groups.get(pk)?.clone()))
                        }
                        Principal::ServiceAccount(id) => PrincipalNode::ServiceAccount(
                            ServiceAccountNode(s.service_account(id)?.clone()),
                        ),
                    };
                    Some(AccessItem {
                        node,
                        expires_at: e.expires_at.map(ts),
                        security_policy: policy_node(s, e.security_policy),
                        access_policy: e.access_policy_mode.map(|mode| AccessPolicy {
                            mode,
                            duration_seconds: e.access_policy_duration,
                        }),
                        approval_mode: e.approval_mode,
                    })
                })
                .collect::<Vec<_>>()
        });
        let (nodes, page_info, total_count) = page(items, first, after)?;
        Ok(AccessConnection {
            edges: nodes
                .into_iter()
                .map(|(cursor, a)| AccessEdge {
                    cursor,
                    node: a.node,
                    expires_at: a.expires_at,
                    security_policy: a.security_policy,
                    access_policy: a.access_policy,
                    approval_mode: a.approval_mode,
                })
                .collect(),
            page_info,
            total_count,
        })
    }
}

/// Resources are an interface in Twingate; network resources are the kind lapse manages.
#[allow(
    clippy::duplicated_attributes,
    reason = "two interface fields sharing a type read to clippy as a repeated attribute"
)]
#[derive(Interface)]
#[graphql(
    name = "Resource",
    field(name = "id", ty = "ID"),
    field(name = "name", ty = "String"),
    field(name = "address", ty = "Address"),
    field(name = "is_active", ty = "bool"),
    field(name = "created_at", ty = "DateTimeScalar"),
    field(name = "updated_at", ty = "DateTimeScalar"),
    field(
        name = "access",
        ty = "AccessConnection",
        arg(name = "first", ty = "Option<i32>"),
        arg(name = "after", ty = "Option<String>")
    )
)]
pub(crate) enum ResourceNode {
    NetworkResource(NetworkResource),
}

#[derive(Union)]
#[graphql(name = "Principal")]
pub(crate) enum PrincipalNode {
    Group(GroupNode),
    ServiceAccount(ServiceAccountNode),
}

struct AccessItem {
    node: PrincipalNode,
    expires_at: Option<DateTimeScalar>,
    security_policy: Option<SecurityPolicyNode>,
    access_policy: Option<AccessPolicy>,
    approval_mode: Option<AccessApprovalMode>,
}

#[derive(SimpleObject)]
pub(crate) struct AccessConnection {
    edges: Vec<AccessEdge>,
    page_info: PageInfo,
    total_count: i32,
}

#[derive(SimpleObject)]
pub(crate) struct AccessEdge {
    cursor: String,
    node: PrincipalNode,
    expires_at: Option<DateTimeScalar>,
    security_policy: Option<SecurityPolicyNode>,
    access_policy: Option<AccessPolicy>,
    approval_mode: Option<AccessApprovalMode>,
}

pub(crate) struct ServiceAccountNode(ServiceAccount);

#[Object(name = "ServiceAccount")]
impl ServiceAccountNode {
    async fn id(&self) -> ID {
        ID(ids::encode(ids::SERVICE_ACCOUNT, &self.0.id))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTimeScalar {
        ts(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTimeScalar {
        ts(self.0.updated_at)
    }
    async fn resources(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ResourceConnection> {
        let principal = Principal::ServiceAccount(self.0.id.clone());
        let items = shared(ctx)?.with_store(|s, _| resource_nodes(s, &s.resources_of(&principal)));
        page(items, first, after).map(ResourceConnection::from)
    }
    async fn keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ServiceAccountKeyConnection> {
        let items = shared(ctx)?.with_store(|s, now| {
            s.keys
                .iter()
                .filter(|k| k.service_account == self.0.id)
                .map(|k| KeyNode(k.clone(), now))
                .collect()
        });
        page(items, first, after).map(ServiceAccountKeyConnection::from)
    }
}

/// A key and the simulated time its status is judged at.
pub(crate) struct KeyNode(Key, DateTime<Utc>);

#[Object(name = "ServiceAccountKey")]
impl KeyNode {
    async fn id(&self) -> ID {
        ID(ids::encode(ids::SERVICE_ACCOUNT_KEY, &self.0.id))
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn status(&self) -> ServiceAccountKeyStatus {
        self.0.status(self.1)
    }
    async fn expires_at(&self) -> Option<DateTimeScalar> {
        self.0.expires_at.map(ts)
    }
    async fn revoked_at(&self) -> Option<DateTimeScalar> {
        self.0.revoked_at.map(ts)
    }
    async fn created_at(&self) -> DateTimeScalar {
        ts(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTimeScalar {
        ts(self.0.updated_at)
    }
    async fn service_account(&self, ctx: &Context<'_>) -> Result<ServiceAccountNode> {
        shared(ctx)?
            .with_store(|s, _| {
                s.service_account(&self.0.service_account)
                    .map(|sa| ServiceAccountNode(sa.clone()))
            })
            .ok_or_else(|| Error::new("the key's service account does not exist"))
    }
}

// ---------- queries ----------

pub(crate) struct QueryRoot;

#[Object(name = "QueriesRoot")]
impl QueryRoot {
    async fn user(&self, ctx: &Context<'_>, id: ID) -> Option<UserNode> {
        let read = || {
            let r = int_ref("id", &id, ids::USER)?;
            Ok(shared(ctx)?.with_store(|s, _| {
                r.key
                    .and_then(|pk| s.users.get(&pk))
                    .map(|u| UserNode(u.clone()))
            }))
        };
        nullable(ctx, read())
    }

    async fn users(
        &self,
        ctx: &Context<'_>,
        filter: Option<UserFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection> {
        let page = shared(ctx)?.with_store(|s, _| {
            let pks: Vec<u64> = s.users.keys().copied().collect();
            clone_page(page(filter_users(s, &pks, &filter)?, first, after)?)
        })?;
        Ok(UserConnection::from(page))
    }

    async fn group(&self, ctx: &Context<'_>, id: ID) -> Option<GroupNode> {
        let read = || {
            let r = int_ref("id", &id, ids::GROUP)?;
            Ok(shared(ctx)?.with_store(|s, _| {
                r.key
                    .and_then(|pk| s.groups.get(&pk))
                    .map(|g| GroupNode(g.clone()))
            }))
        };
        nullable(ctx, read())
    }

    async fn groups(
        &self,
        ctx: &Context<'_>,
        filter: Option<GroupFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<GroupConnection> {
        let name = match &filter {
            Some(f) => matcher(&f.name)?,
            None => None,
        };
        let types = filter
            .as_ref()
            .and_then(|f| f.group_type.as_ref())
            .and_then(|t| t.in_.clone());
        let active = filter
            .as_ref()
            .and_then(|f| f.is_active.as_ref())
            .and_then(|a| a.eq);
        let items = shared(ctx)?.with_store(|s, _| {
            s.groups
                .values()
                .filter(|g| {
                    pass(&name, &g.name)
                        && types.as_ref().is_none_or(|t| t.contains(&g.group_type))
                        && active.is_none_or(|a| a == g.is_active)
                })
                .map(|g| GroupNode(g.clone()))
                .collect()
        });
        page(items, first, after).map(GroupConnection::from)
    }

    async fn resource(&self, ctx: &Context<'_>, id: ID) -> Option<ResourceNode> {
        let read = || {
            let r = int_ref("id", &id, ids::RESOURCE)?;
            Ok(shared(ctx)?.with_store(|s, _| {
                r.key
                    .and_then(|pk| s.resources.get(&pk))
                    .map(|res| ResourceNode::NetworkResource(NetworkResource(res.clone())))
            }))
        };
        nullable(ctx, read())
    }

    async fn resources(
        &self,
        ctx: &Context<'_>,
        filter: Option<ResourceFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ResourceConnection> {
        let name = match &filter {
            Some(f) => matcher(&f.name)?,
            None => None,
        };
        let items = shared(ctx)?.with_store(|s, _| {
            s.resources
                .values()
                .filter(|r| pass(&name, &r.name))
                .map(|r| ResourceNode::NetworkResource(NetworkResource(r.clone())))
                .collect()
        });
        page(items, first, after).map(ResourceConnection::from)
    }

    async fn service_account(&self, ctx: &Context<'_>, id: ID) -> Option<ServiceAccountNode> {
        let read = || {
            let r = uuid_ref("id", &id, ids::SERVICE_ACCOUNT)?;
            Ok(shared(ctx)?.with_store(|s, _| {
                r.key
                    .and_then(|k| s.service_account(&k).cloned())
                    .map(ServiceAccountNode)
            }))
        };
        nullable(ctx, read())
    }

    async fn service_accounts(
        &self,
        ctx: &Context<'_>,
        filter: Option<ServiceAccountFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<ServiceAccountConnection> {
        let name = match &filter {
            Some(f) => matcher(&f.name)?,
            None => None,
        };
        let items = shared(ctx)?.with_store(|s, _| {
            s.service_accounts
                .iter()
                .filter(|sa| pass(&name, &sa.name))
                .map(|sa| ServiceAccountNode(sa.clone()))
                .collect()
        });
        page(items, first, after).map(ServiceAccountConnection::from)
    }

    /// By ID, or by name when no ID is given (the first key with that name).
    async fn service_account_key(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        name: Option<String>,
    ) -> Option<KeyNode> {
        let read = || {
            let r = id
                .as_ref()
                .map(|id| uuid_ref("id", id, ids::SERVICE_ACCOUNT_KEY))
                .transpose()?;
            Ok(shared(ctx)?.with_store(|s, now| {
                let key = match (&r, &name) {
                    (Some(r), _) => r.key.as_ref().and_then(|k| s.key(k)),
                    (None, Some(name)) => s.keys.iter().find(|k| &k.name == name),
                    (None, None) => None,
                };
                key.cloned().map(|k| KeyNode(k, now))
            }))
        };
        nullable(ctx, read())
    }
}

// ---------- mutations ----------

/// Each mutation has its own payload type, as in Twingate: `{ok, error, entity}` (`entity`
/// nullable), or `{ok, error}` for deletions.
macro_rules! payload {
    ($name:ident, $gql:literal, $entity:ty) => {
        #[derive(SimpleObject)]
        #[graphql(name = $gql)]
        pub(crate) struct $name {
            ok: bool,
            error: Option<String>,
            entity: Option<$entity>,
        }

        impl From<std::result::Result<Option<$entity>, String>> for $name {
            fn from(r: std::result::Result<Option<$entity>, String>) -> $name {
                match r {
                    Ok(entity) => $name {
                        ok: true,
                        error: None,
                        entity,
                    },
                    Err(e) => $name {
                        ok: false,
                        error: Some(e),
                        entity: None,
                    },
                }
            }
        }
    };
    ($name:ident, $gql:literal) => {
        #[derive(SimpleObject)]
        #[graphql(name = $gql)]
        pub(crate) struct $name {
            ok: bool,
            error: Option<String>,
        }

        impl From<std::result::Result<(), String>> for $name {
            fn from(r: std::result::Result<(), String>) -> $name {
                match r {
                    Ok(()) => $name {
                        ok: true,
                        error: None,
                    },
                    Err(e) => $name {
                        ok: false,
                        error: Some(e),
                    },
                }
            }
        }
    };
}

payload!(GroupCreatePayload, "GroupCreateMutation", GroupNode);
payload!(GroupUpdatePayload, "GroupUpdateMutation", GroupNode);
payload!(GroupDeletePayload, "GroupDeleteMutation");
payload!(AccessAddPayload, "ResourceAccessAddMutation", ResourceNode);
payload!(AccessSetPayload, "ResourceAccessSetMutation", ResourceNode);
payload!(
    AccessRemovePayload,
    "ResourceAccessRemoveMutation",
    ResourceNode
);
payload!(
    ServiceAccountCreatePayload,
    "ServiceAccountCreateMutation",
    ServiceAccountNode
);
payload!(
    ServiceAccountUpdatePayload,
    "ServiceAccountUpdateMutation",
    ServiceAccountNode
);
payload!(ServiceAccountDeletePayload, "ServiceAccountDeleteMutation");
payload!(KeyRevokePayload, "ServiceAccountKeyRevokeMutation", KeyNode);
payload!(KeyDeletePayload, "ServiceAccountKeyDeleteMutation");

#[derive(SimpleObject)]
#[graphql(name = "ServiceAccountKeyCreateMutation")]
pub(crate) struct KeyCreatePayload {
    ok: bool,
    error: Option<String>,
    entity: Option<KeyNode>,
    /// The key's secret, shown in this answer only.
    token: Option<String>,
}

/// Twingate's `AccessPolicyInput`: the mode is required once a policy is sent.
#[derive(InputObject)]
pub(crate) struct AccessPolicyInput {
    mode: AccessPolicyMode,
    duration_seconds: MaybeUndefined<i32>,
}

#[derive(InputObject)]
pub(crate) struct AccessInput {
    principal_id: ID,
    security_policy_id: MaybeUndefined<ID>,
    expires_at: MaybeUndefined<DateTimeScalar>,
    access_policy: MaybeUndefined<AccessPolicyInput>,
    approval_mode: MaybeUndefined<AccessApprovalMode>,
}

fn access_changes(access: Vec<AccessInput>) -> Result<Vec<AccessChange>> {
    access
        .into_iter()
        .map(|a| {
            let security_policy = match a.security_policy_id {
                MaybeUndefined::Value(id) => {
                    MaybeUndefined::Value(int_ref("securityPolicyId", &id, ids::SECURITY_POLICY)?)
                }
                MaybeUndefined::Null => MaybeUndefined::Null,
                MaybeUndefined::Undefined => MaybeUndefined::Undefined,
            };
            let (mode, duration) = match a.access_policy {
                MaybeUndefined::Value(p) => (MaybeUndefined::Value(p.mode), p.duration_seconds),
                // An explicit null policy is plain access again.
                MaybeUndefined::Null => (
                    MaybeUndefined::Value(AccessPolicyMode::Manual),
                    MaybeUndefined::Null,
                ),
                MaybeUndefined::Undefined => (MaybeUndefined::Undefined, MaybeUndefined::Undefined),
            };
            Ok(AccessChange {
                principal: principal_ref("principalId", &a.principal_id)?,
                security_policy,
                expires_at: a.expires_at.map_value(|t| t.0),
                access_policy_mode: mode,
                access_policy_duration: duration,
                approval_mode: a.approval_mode,
            })
        })
        .collect()
}

/// Marks the request as having changed state, and hides the entity when the fault says so.
fn applied<T>(ctx: &Context<'_>, entity: Option<T>) -> Option<T> {
    if let Ok(a) = ctx.data::<Applied>() {
        a.mark();
    }
    match ctx.data::<Arc<Shared>>() {
        Ok(s) if s.faults().null_entities => None,
        _ => entity,
    }
}

fn group_result(
    ctx: &Context<'_>,
    result: std::result::Result<u64, String>,
) -> Result<std::result::Result<Option<GroupNode>, String>> {
    Ok(match result {
        Ok(pk) => {
            let entity = shared(ctx)?.with_store(|s, _| s.groups.get(&pk).cloned().map(GroupNode));
            Ok(applied(ctx, entity))
        }
        Err(e) => Err(e),
    })
}

fn resource_result(
    ctx: &Context<'_>,
    result: std::result::Result<u64, String>,
) -> Result<std::result::Result<Option<ResourceNode>, String>> {
    Ok(match result {
        Ok(pk) => {
            let entity = shared(ctx)?.with_store(|s, _| {
                s.resources
                    .get(&pk)
                    .cloned()
                    .map(|r| ResourceNode::NetworkResource(NetworkResource(r)))
            });
            Ok(applied(ctx, entity))
        }
        Err(e) => Err(e),
    })
}

fn service_account_result(
    ctx: &Context<'_>,
    result: std::result::Result<String, String>,
) -> Result<std::result::Result<Option<ServiceAccountNode>, String>> {
    Ok(match result {
        Ok(id) => {
            let entity = shared(ctx)?
                .with_store(|s, _| s.service_account(&id).cloned().map(ServiceAccountNode));
            Ok(applied(ctx, entity))
        }
        Err(e) => Err(e),
    })
}

fn deleted(
    ctx: &Context<'_>,
    result: std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    if result.is_ok() {
        applied::<()>(ctx, None);
    }
    result
}

/// `[ID!]!` arguments.
fn principal_refs(arg: &str, ids: &[ID]) -> Result<Vec<Ref<Principal>>> {
    ids.iter().map(|p| principal_ref(arg, p)).collect()
}

pub(crate) struct MutationRoot;

#[Object(name = "MutationsRoot")]
impl MutationRoot {
    #[allow(clippy::too_many_arguments)]
    async fn group_create(
        &self,
        ctx: &Context<'_>,
        name: String,
        user_ids: Option<Vec<Option<ID>>>,
        resource_ids: Option<Vec<Option<ID>>>,
        security_policy_id: Option<ID>,
    ) -> Result<GroupCreatePayload> {
        let users = int_refs("userIds", &user_ids, ids::USER)?;
        let resources = int_refs("resourceIds", &resource_ids, ids::RESOURCE)?;
        let policy = security_policy_id
            .map(|p| int_ref("securityPolicyId", &p, ids::SECURITY_POLICY))
            .transpose()?;
        let result = shared(ctx)?.with_store(|s, now| {
            s.create_group(
                &name,
                GroupType::Manual,
                &users,
                &resources,
                policy.as_ref(),
                now,
            )
        });
        group_result(ctx, result).map(GroupCreatePayload::from)
    }

    #[allow(clippy::too_many_arguments)]
    async fn group_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        is_active: Option<bool>,
        added_user_ids: Option<Vec<Option<ID>>>,
        removed_user_ids: Option<Vec<Option<ID>>>,
        added_resource_ids: Option<Vec<Option<ID>>>,
        removed_resource_ids: Option<Vec<Option<ID>>>,
        user_ids: Option<Vec<Option<ID>>>,
        resource_ids: Option<Vec<Option<ID>>>,
        security_policy_id: Option<ID>,
    ) -> Result<GroupUpdatePayload> {
        let id = int_ref("id", &id, ids::GROUP)?;
        let changes = GroupChanges {
            name,
            is_active,
            added_users: int_refs("addedUserIds", &added_user_ids, ids::USER)?,
            removed_users: int_refs("removedUserIds", &removed_user_ids, ids::USER)?,
            added_resources: int_refs("addedResourceIds", &added_resource_ids, ids::RESOURCE)?,
            removed_resources: int_refs(
                "removedResourceIds",
                &removed_resource_ids,
                ids::RESOURCE,
            )?,
            users: opt_int_refs("userIds", &user_ids, ids::USER)?,
            resources: opt_int_refs("resourceIds", &resource_ids, ids::RESOURCE)?,
            security_policy: security_policy_id
                .map(|p| int_ref("securityPolicyId", &p, ids::SECURITY_POLICY))
                .transpose()?,
        };
        let result = shared(ctx)?.with_store(|s, now| s.update_group(&id, changes, false, now));
        group_result(ctx, result).map(GroupUpdatePayload::from)
    }

    async fn group_delete(&self, ctx: &Context<'_>, id: ID) -> Result<GroupDeletePayload> {
        let id = int_ref("id", &id, ids::GROUP)?;
        let result = shared(ctx)?.with_store(|s, _| s.delete_group(&id, false));
        Ok(deleted(ctx, result).into())
    }

    async fn resource_access_add(
        &self,
        ctx: &Context<'_>,
        resource_id: ID,
        access: Vec<AccessInput>,
    ) -> Result<AccessAddPayload> {
        let resource = int_ref("resourceId", &resource_id, ids::RESOURCE)?;
        let changes = access_changes(access)?;
        let shared = shared(ctx)?;
        let precision = shared.faults().expiry_precision;
        let result =
            shared.with_store(|s, now| s.access_add(&resource, changes, false, precision, now));
        resource_result(ctx, result).map(AccessAddPayload::from)
    }

    async fn resource_access_set(
        &self,
        ctx: &Context<'_>,
        resource_id: ID,
        access: Vec<AccessInput>,
    ) -> Result<AccessSetPayload> {
        let resource = int_ref("resourceId", &resource_id, ids::RESOURCE)?;
        let changes = access_changes(access)?;
        let shared = shared(ctx)?;
        let precision = shared.faults().expiry_precision;
        let result =
            shared.with_store(|s, now| s.access_add(&resource, changes, true, precision, now));
        resource_result(ctx, result).map(AccessSetPayload::from)
    }

    async fn resource_access_remove(
        &self,
        ctx: &Context<'_>,
        resource_id: ID,
        principal_ids: Vec<ID>,
    ) -> Result<AccessRemovePayload> {
        let resource = int_ref("resourceId", &resource_id, ids::RESOURCE)?;
        let principals = principal_refs("principalIds", &principal_ids)?;
        let result = shared(ctx)?.with_store(|s, now| s.access_remove(&resource, &principals, now));
        resource_result(ctx, result).map(AccessRemovePayload::from)
    }

    async fn service_account_create(
        &self,
        ctx: &Context<'_>,
        name: String,
        resource_ids: Option<Vec<Option<ID>>>,
    ) -> Result<ServiceAccountCreatePayload> {
        let resources = int_refs("resourceIds", &resource_ids, ids::RESOURCE)?;
        let result =
            shared(ctx)?.with_store(|s, now| s.create_service_account(&name, &resources, now));
        service_account_result(ctx, result).map(ServiceAccountCreatePayload::from)
    }

    async fn service_account_update(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        added_resource_ids: Option<Vec<Option<ID>>>,
        removed_resource_ids: Option<Vec<Option<ID>>>,
        resource_ids: Option<Vec<Option<ID>>>,
    ) -> Result<ServiceAccountUpdatePayload> {
        let id = uuid_ref("id", &id, ids::SERVICE_ACCOUNT)?;
        let changes = ServiceAccountChanges {
            name,
            added_resources: int_refs("addedResourceIds", &added_resource_ids, ids::RESOURCE)?,
            removed_resources: int_refs(
                "removedResourceIds",
                &removed_resource_ids,
                ids::RESOURCE,
            )?,
            resources: opt_int_refs("resourceIds", &resource_ids, ids::RESOURCE)?,
        };
        let result = shared(ctx)?.with_store(|s, now| s.update_service_account(&id, changes, now));
        service_account_result(ctx, result).map(ServiceAccountUpdatePayload::from)
    }

    async fn service_account_delete(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<ServiceAccountDeletePayload> {
        let id = uuid_ref("id", &id, ids::SERVICE_ACCOUNT)?;
        let result = shared(ctx)?.with_store(|s, _| s.delete_service_account(&id));
        Ok(deleted(ctx, result).into())
    }

    async fn service_account_key_create(
        &self,
        ctx: &Context<'_>,
        service_account_id: ID,
        name: Option<String>,
        expiration_time: i32,
    ) -> Result<KeyCreatePayload> {
        let sa = uuid_ref(
            "serviceAccountId",
            &service_account_id,
            ids::SERVICE_ACCOUNT,
        )?;
        let shared = shared(ctx)?;
        let result = shared.with_store(|s, now| {
            s.create_key(&sa, name, expiration_time, now)
                .map(|(id, token)| (s.key(&id).cloned().map(|k| KeyNode(k, now)), token))
        });
        Ok(match result {
            Ok((entity, token)) => KeyCreatePayload {
                ok: true,
                error: None,
                entity: applied(ctx, entity),
                token: Some(token),
            },
            Err(e) => KeyCreatePayload {
                ok: false,
                error: Some(e),
                entity: None,
                token: None,
            },
        })
    }

    async fn service_account_key_revoke(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<KeyRevokePayload> {
        let id = uuid_ref("id", &id, ids::SERVICE_ACCOUNT_KEY)?;
        let result = shared(ctx)?.with_store(|s, now| {
            s.revoke_key(&id, now)
                .map(|k| s.key(&k).cloned().map(|k| KeyNode(k, now)))
        });
        Ok(result.map(|entity| applied(ctx, entity)).into())
    }

    async fn service_account_key_delete(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<KeyDeletePayload> {
        let id = uuid_ref("id", &id, ids::SERVICE_ACCOUNT_KEY)?;
        let result = shared(ctx)?.with_store(|s, now| s.delete_key(&id, now));
        Ok(deleted(ctx, result).into())
    }
}
