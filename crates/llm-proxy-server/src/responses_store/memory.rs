//! The bounded in-memory answer store: the oldest answers are forgotten beyond a capacity.
//! Used by in-process servers and tests; the binary keeps answers in SQLite.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{ResponseStore, StoredResponse};

/// Answers kept in memory, the oldest forgotten beyond `capacity`.
#[derive(Debug)]
pub struct MemoryResponseStore {
    capacity: usize,
    inner: Mutex<(HashMap<String, StoredResponse>, VecDeque<String>)>,
}

impl MemoryResponseStore {
    /// A store keeping at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }
}

/// Answers the default store keeps.
pub const DEFAULT_CAPACITY: usize = 1024;

#[async_trait::async_trait]
impl ResponseStore for MemoryResponseStore {
    async fn get(&self, id: &str) -> Option<StoredResponse> {
        self.inner.lock().ok()?.0.get(id).cloned()
    }

    fn put(&self, id: String, response: StoredResponse) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let (map, order) = &mut *guard;
        if map.insert(id.clone(), response).is_none() {
            order.push_back(id);
        }
        while map.len() > self.capacity {
            match order.pop_front() {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
    }

    async fn delete(&self, id: &str) -> bool {
        let Ok(mut guard) = self.inner.lock() else {
            return false;
        };
        let (map, order) = &mut *guard;
        let found = map.remove(id).is_some();
        if found {
            order.retain(|k| k != id);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use serde_json::json;

    fn stored(n: u64) -> StoredResponse {
        StoredResponse::new(
            Arc::new(vec![json!(n)]),
            bytes::Bytes::from(json!({"n": n}).to_string()),
        )
    }

    #[tokio::test]
    async fn keeps_the_newest_within_capacity_and_deletes() {
        let store = MemoryResponseStore::new(2);
        store.put("a".into(), stored(1));
        store.put("b".into(), stored(2));
        store.put("c".into(), stored(3));
        assert_eq!(store.get("a").await, None, "the oldest is forgotten");
        assert_eq!(store.get("c").await, Some(stored(3)));
        assert!(store.delete("b").await);
        assert!(!store.delete("b").await);
        store.put("d".into(), stored(4));
        assert_eq!(
            store.get("c").await,
            Some(stored(3)),
            "deleting freed a slot"
        );
    }
}
