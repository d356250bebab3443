//! A time-bounded cache of directory lookups (users by email and ID, resources by name).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lapse_core::provider::{NamedRef, RemoteId, UserRef};
use tokio::time::Instant;

/// Only positive answers are kept: a user or resource created a moment ago must resolve at once.
/// Memberships and access are never cached: the engine must see them fresh.
#[derive(Debug)]
pub(crate) struct DirectoryCache {
    ttl: Duration,
    users_by_email: Table<String, UserRef>,
    users_by_id: Table<RemoteId, UserRef>,
    resources_by_name: Table<String, Vec<NamedRef>>,
}

impl DirectoryCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            users_by_email: Table::default(),
            users_by_id: Table::default(),
            resources_by_name: Table::default(),
        }
    }

    pub fn user_by_email(&self, email: &str) -> Option<UserRef> {
        self.users_by_email.get(email)
    }

    pub fn user(&self, id: &RemoteId) -> Option<UserRef> {
        self.users_by_id.get(id)
    }

    pub fn put_user(&self, user: &UserRef) {
        if self.ttl.is_zero() {
            return;
        }
        let until = Instant::now() + self.ttl;
        if let Some(email) = &user.email {
            self.users_by_email.put(email.clone(), user.clone(), until);
        }
        self.users_by_id.put(user.id.clone(), user.clone(), until);
    }

    pub fn resources_by_name(&self, name: &str) -> Option<Vec<NamedRef>> {
        self.resources_by_name.get(name)
    }

    pub fn put_resources(&self, name: &str, resources: &[NamedRef]) {
        if self.ttl.is_zero() || resources.is_empty() {
            return;
        }
        self.resources_by_name.put(
            name.to_owned(),
            resources.to_vec(),
            Instant::now() + self.ttl,
        );
    }

    pub fn clear(&self) {
        self.users_by_email.clear();
        self.users_by_id.clear();
        self.resources_by_name.clear();
    }
}

#[derive(Debug)]
struct Table<K, V>(Mutex<HashMap<K, (Instant, V)>>);

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash, V: Clone> Table<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        // A plain map; a panic while holding the lock cannot leave it inconsistent.
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some((until, value)) if *until > Instant::now() => Some(value.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: K, value: V, until: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, (until, value));
    }

    fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserRef {
        UserRef {
            id: RemoteId::new("VXNlcjox"),
            email: Some("alice@example.com".to_owned()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = DirectoryCache::new(Duration::from_secs(60));
        cache.put_user(&alice());
        assert_eq!(cache.user_by_email("alice@example.com"), Some(alice()));
        assert_eq!(cache.user(&RemoteId::new("VXNlcjox")), Some(alice()));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.user_by_email("alice@example.com"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ttl_caches_nothing() {
        let cache = DirectoryCache::new(Duration::ZERO);
        cache.put_user(&alice());
        assert_eq!(cache.user_by_email("alice@example.com"), None);
    }
}
