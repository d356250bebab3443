//! `TwingateClient`: construction, complete pagination, and the conversion of answers into lapse's types.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use lapse_core::provider::{
    AccessEdge, GroupInfo, KeyInfo, PrincipalKind, ProviderError, ProviderResult, RemoteId,
    ResourceInfo, ServiceAccountInfo,
};

use crate::budget::Budget;
use crate::cache::DirectoryCache;
use crate::config::{ClientConfig, ConfigError, MAX_PAGE_SIZE};
use crate::ops::groups::{GroupNode, GroupResourcesPage, GroupUsersPage};
use crate::ops::keys::KeyNode;
use crate::ops::resources::{
    AccessConnection, AccessEdgeNode, PrincipalNode, ResourceAccessPage, ResourceNode,
};
use crate::ops::service_accounts::{
    ServiceAccountKeysPage, ServiceAccountNode, ServiceAccountResourcesPage,
};
use crate::ops::{IdNode, NestedPageVars, Operation, Page, PageInfo};
use crate::transport::Transport;

/// A client for one Twingate network. Cheap to clone; clones share budgets and cache.
///
/// `Debug` shows the base URL only, never the key.
#[derive(Clone)]
pub struct TwingateClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub transport: Transport,
    pub cache: DirectoryCache,
    pub page_size: u32,
}

impl TwingateClient {
    /// Validates the settings and builds the HTTP client; sends nothing.
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        if config.page_size == 0 || config.page_size > MAX_PAGE_SIZE {
            return Err(ConfigError::PageSize(config.page_size));
        }
        let transport = Transport::new(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                cache: DirectoryCache::new(config.directory_cache_ttl),
                page_size: config.page_size,
            }),
        })
    }

    /// The network's base URL, as configured (without a trailing slash).
    pub fn base_url(&self) -> &str {
        self.inner.transport.base_url()
    }

    /// How far Twingate's clock is ahead of this host's (negative: behind), from the last
    /// answer's `Date` header; `None` before any answer carried one.
    pub fn clock_skew(&self) -> Option<chrono::TimeDelta> {
        self.inner.transport.clock_skew()
    }

    /// The write budget, for metrics (how many writes are waiting).
    pub fn write_budget(&self) -> &Budget {
        self.inner.transport.write_budget()
    }

    /// Forgets every cached user and resource name (after a directory change lapse was told about).
    pub fn clear_directory_cache(&self) {
        self.inner.cache.clear();
    }
}

impl fmt::Debug for TwingateClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwingateClient")
            .field("base_url", &self.base_url())
            .field("page_size", &self.inner.page_size)
            .finish_non_exhaustive()
    }
}

/// Follows `next` cursors from a page already in hand until the last page.
///
/// `fetch` answers `None` when the object owning a nested list has vanished meanwhile.
pub(crate) async fn follow<T, F, Fut>(
    op: &str,
    first: Page<T>,
    mut fetch: F,
) -> ProviderResult<Option<Vec<T>>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = ProviderResult<Option<Page<T>>>>,
{
    let mut items = first.items;
    let mut next = first.next;
    let mut after: Option<String> = None;
    while let Some(cursor) = next {
        match cursor {
            // A cursor that does not move would loop forever.
            Some(cursor) if after.as_deref() != Some(cursor.as_str()) => after = Some(cursor),
            _ => {
                return Err(ProviderError::Misconfigured(format!(
                    "{op}: the server said there are more pages but gave no new cursor"
                )));
            }
        }
        let Some(page) = fetch(after.clone()).await? else {
            return Ok(None);
        };
        items.extend(page.items);
        next = page.next;
    }
    Ok(Some(items))
}

/// Every item of a top-level list.
pub(crate) async fn collect<T, F, Fut>(op: &str, mut fetch: F) -> ProviderResult<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = ProviderResult<Page<T>>>,
{
    let first = fetch(None).await?;
    let all = follow(op, first, |after| {
        let page = fetch(after);
        async move { page.await.map(Some) }
    })
    .await?;
    Ok(all.unwrap_or_default())
}

fn access_page(connection: AccessConnection) -> Page<AccessEdgeNode> {
    let PageInfo {
        has_next_page,
        end_cursor,
    } = connection.page_info;
    Page {
        items: connection.edges,
        next: has_next_page.then_some(end_cursor),
    }
}

fn ids(nodes: Vec<IdNode>) -> Vec<RemoteId> {
    nodes.into_iter().map(|n| RemoteId(n.id)).collect()
}

pub(crate) fn key_info(node: KeyNode) -> KeyInfo {
    KeyInfo {
        id: RemoteId(node.id),
        name: node.name,
        status: node.status,
        expires_at: node.expires_at,
    }
}

impl Inner {
    fn nested(&self, id: &str, after: Option<String>) -> NestedPageVars {
        NestedPageVars {
            id: id.to_owned(),
            first: self.page_size,
            after,
        }
    }

    /// A group with every member and resource; `None` if it vanished while being read.
    pub async fn complete_group(&self, node: GroupNode) -> ProviderResult<Option<GroupInfo>> {
        let id = node.id.as_str();
        let users = follow(
            GroupUsersPage::NAME,
            node.users.into_page(),
            |after| async move {
                let data = self
                    .transport
                    .query::<GroupUsersPage>(&self.nested(id, after))
                    .await?;
                Ok(data.group.map(|g| g.users.into_page()))
            },
        )
        .await?;
        let resources = follow(
            GroupResourcesPage::NAME,
            node.resources.into_page(),
            |after| async move {
                let data = self
                    .transport
                    .query::<GroupResourcesPage>(&self.nested(id, after))
                    .await?;
                Ok(data.group.map(|g| g.resources.into_page()))
            },
        )
        .await?;
        let (Some(users), Some(resources)) = (users, resources) else {
            return Ok(None);
        };
        Ok(Some(GroupInfo {
            id: RemoteId(node.id),
            name: node.name,
            group_type: node.group_type,
            is_active: node.is_active,
            users: ids(users),
            resources: ids(resources),
        }))
    }

    pub async fn complete_groups(&self, nodes: Vec<GroupNode>) -> ProviderResult<Vec<GroupInfo>> {
        let mut groups = Vec::with_capacity(nodes.len());
        for node in nodes {
            if let Some(group) = self.complete_group(node).await? {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    /// A resource with every access edge; `None` if it vanished while being read.
    pub async fn complete_resource(
        &self,
        node: ResourceNode,
    ) -> ProviderResult<Option<ResourceInfo>> {
        let id = node.id.as_str();
        let edges = follow(
            ResourceAccessPage::NAME,
            access_page(node.access),
            |after| async move {
                let data = self
                    .transport
                    .query::<ResourceAccessPage>(&self.nested(id, after))
                    .await?;
                Ok(data.resource.map(|r| access_page(r.access)))
            },
        )
        .await?;
        let Some(edges) = edges else {
            return Ok(None);
        };
        let access = edges
            .into_iter()
            .filter_map(|edge| {
                let (principal, principal_kind) = match edge.node {
                    PrincipalNode::Group { id } => (id, PrincipalKind::Group),
                    PrincipalNode::ServiceAccount { id } => (id, PrincipalKind::ServiceAccount),
                    PrincipalNode::Other => {
                        tracing::debug!(resource = %node.id, "skipping an access edge of a principal kind lapse does not manage");
                        return None;
                    }
                };
                // An edge past its expiry is reported as listed; the engine decides what it means.
                Some(AccessEdge { principal: RemoteId(principal), principal_kind, expires_at: edge.expires_at })
            })
            .collect();
        Ok(Some(ResourceInfo {
            id: RemoteId(node.id.clone()),
            name: node.name,
            access,
        }))
    }

    /// A service account with every resource and key; `None` if it vanished while being read.
    pub async fn complete_service_account(
        &self,
        node: ServiceAccountNode,
    ) -> ProviderResult<Option<ServiceAccountInfo>> {
        let id = node.id.as_str();
        let resources = follow(
            ServiceAccountResourcesPage::NAME,
            node.resources.into_page(),
            |after| async move {
                let data = self
                    .transport
                    .query::<ServiceAccountResourcesPage>(&self.nested(id, after))
                    .await?;
                Ok(data.service_account.map(|s| s.resources.into_page()))
            },
        )
        .await?;
        let keys = follow(
            ServiceAccountKeysPage::NAME,
            node.keys.into_page(),
            |after| async move {
                let data = self
                    .transport
                    .query::<ServiceAccountKeysPage>(&self.nested(id, after))
                    .await?;
                Ok(data.service_account.map(|s| s.keys.into_page()))
            },
        )
        .await?;
        let (Some(resources), Some(keys)) = (resources, keys) else {
            return Ok(None);
        };
        Ok(Some(ServiceAccountInfo {
            id: RemoteId(node.id),
            name: node.name,
            resources: ids(resources),
            keys: keys.into_iter().map(key_info).collect(),
        }))
    }

    pub async fn complete_service_accounts(
        &self,
        nodes: Vec<ServiceAccountNode>,
    ) -> ProviderResult<Vec<ServiceAccountInfo>> {
        let mut accounts = Vec::with_capacity(nodes.len());
        for node in nodes {
            if let Some(account) = self.complete_service_account(node).await? {
                accounts.push(account);
            }
        }
        Ok(accounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(items: &[&str], next: Option<Option<&str>>) -> Page<String> {
        Page {
            items: items.iter().map(|s| (*s).to_owned()).collect(),
            next: next.map(|c| c.map(str::to_owned)),
        }
    }

    #[tokio::test]
    async fn follow_reads_every_page() {
        let all = follow("T", page(&["a"], Some(Some("1"))), |after| async move {
            Ok(Some(match after.as_deref() {
                Some("1") => page(&["b"], Some(Some("2"))),
                _ => page(&["c"], None),
            }))
        })
        .await
        .expect("pages");
        assert_eq!(
            all,
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
    }

    #[tokio::test]
    async fn a_cursor_that_does_not_move_is_an_error_not_a_loop() {
        let result = follow("T", page(&["a"], Some(Some("1"))), |_| async {
            Ok(Some(page(&["b"], Some(Some("1")))))
        })
        .await;
        assert!(matches!(result, Err(ProviderError::Misconfigured(_))));
        let result = follow("T", page(&["a"], Some(None)), |_| async {
            Ok(Some(page(&[], None)))
        })
        .await;
        assert!(matches!(result, Err(ProviderError::Misconfigured(_))));
    }

    #[tokio::test]
    async fn an_edge_listed_past_its_expiry_is_reported_as_is() {
        // Twingate may still list an expired edge (the stand-in removes them), so this is read
        // from a recorded answer rather than from the stand-in.
        let node: ResourceNode = serde_json::from_str(
            r#"{"id":"UmVzb3VyY2U6MzAx","name":"prod-db","access":{
                "edges":[
                  {"node":{"__typename":"Group","id":"R3JvdXA6MjAx"},"expiresAt":"2020-01-01T00:00:00.000000+00:00"},
                  {"node":{"__typename":"ServiceAccount","id":"U2VydmljZUFjY291bnQ6eA=="},"expiresAt":null},
                  {"node":{"__typename":"SomethingNew","id":"eA=="},"expiresAt":null}
                ],
                "pageInfo":{"hasNextPage":false,"endCursor":null}}}"#,
        )
        .expect("recorded answer");
        let config = ClientConfig::new("http://127.0.0.1:9", secrecy::SecretString::from("k"));
        let client = TwingateClient::new(config).expect("client");
        let info = client
            .inner
            .complete_resource(node)
            .await
            .expect("no request needed")
            .expect("resource");
        assert_eq!(
            info.access.len(),
            2,
            "the unknown principal kind is skipped"
        );
        let expired = &info.access[0];
        assert_eq!(expired.principal_kind, PrincipalKind::Group);
        assert_eq!(
            expired.expires_at.map(|t| t.to_rfc3339()),
            Some("2020-01-01T00:00:00+00:00".to_owned())
        );
        assert_eq!(info.access[1].principal_kind, PrincipalKind::ServiceAccount);
    }

    #[tokio::test]
    async fn a_vanished_owner_ends_the_list_with_none() {
        let result = follow("T", page(&["a"], Some(Some("1"))), |_| async {
            Ok(None::<Page<String>>)
        })
        .await;
        assert_eq!(result.expect("no error"), None);
    }
}
