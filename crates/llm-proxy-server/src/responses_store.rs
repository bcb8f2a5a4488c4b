//! Stored Responses answers for `previous_response_id` and `GET/DELETE /v1/responses/{id}`:
//! a trait (so a shared store such as Redis can replace it) and the bounded in-memory store used
//! by default. A stored answer keeps the conversation as Responses items (the request's input
//! followed by the answer's output), so a follow-up turn is the stored items plus its own input.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The whole conversation up to and including this answer, as input items.
    pub items: Arc<Vec<Value>>,
    /// The response object as the client received it.
    pub object: Arc<Value>,
}

/// Where answers are kept.
pub trait ResponseStore: Send + Sync + std::fmt::Debug {
    /// The answer stored under `id`.
    fn get(&self, id: &str) -> Option<StoredResponse>;
    /// Stores an answer (the oldest may be forgotten to stay bounded).
    fn put(&self, id: String, response: StoredResponse);
    /// Forgets `id`; whether it was there.
    fn delete(&self, id: &str) -> bool;
}

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

impl ResponseStore for MemoryResponseStore {
    fn get(&self, id: &str) -> Option<StoredResponse> {
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

    fn delete(&self, id: &str) -> bool {
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
    use super::*;
    use serde_json::json;

    fn stored(n: u64) -> StoredResponse {
        StoredResponse {
            items: Arc::new(vec![json!(n)]),
            object: Arc::new(json!({"n": n})),
        }
    }

    #[test]
    fn keeps_the_newest_within_capacity_and_deletes() {
        let store = MemoryResponseStore::new(2);
        store.put("a".into(), stored(1));
        store.put("b".into(), stored(2));
        store.put("c".into(), stored(3));
        assert_eq!(store.get("a"), None, "the oldest is forgotten");
        assert_eq!(store.get("c"), Some(stored(3)));
        assert!(store.delete("b"));
        assert!(!store.delete("b"));
        store.put("d".into(), stored(4));
        assert_eq!(store.get("c"), Some(stored(3)), "deleting freed a slot");
    }
}
