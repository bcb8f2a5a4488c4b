//! Stored Responses answers for `previous_response_id`, `GET/DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`: the trait (so a shared store such as Redis can replace
//! the embedded ones), the SQLite store the binary keeps in the data directory, and a bounded
//! in-memory store for tests. A stored answer keeps the conversation as Responses items (the
//! request's input, and the answer's output), so a follow-up turn is the stored items plus its
//! own input.

mod memory;
mod sqlite;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

pub use memory::{DEFAULT_CAPACITY, MemoryResponseStore};
pub use sqlite::SqliteResponseStore;

/// One stored answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    /// The conversation that led to this answer, as input items.
    pub input: Arc<Vec<Value>>,
    /// The answer's output items (the next turn's input continues with them).
    pub output: Arc<Vec<Value>>,
    /// The response object as the client received it (less `output_text`), as JSON.
    pub object: Bytes,
}

impl StoredResponse {
    /// The whole conversation up to and including this answer, as input items.
    pub fn items(&self) -> impl Iterator<Item = &Value> {
        self.input.iter().chain(self.output.iter())
    }
}

/// Where answers are kept. Reads may wait on I/O (they are async); a write never waits: a
/// store doing I/O queues it, and reads issued after `put` returns see it.
#[async_trait::async_trait]
pub trait ResponseStore: Send + Sync + std::fmt::Debug {
    /// The answer stored under `id` (`None` when unknown or expired).
    async fn get(&self, id: &str) -> Option<StoredResponse>;
    /// Stores an answer (the oldest may be forgotten to stay bounded).
    fn put(&self, id: String, response: StoredResponse);
    /// Forgets `id`; whether it was there.
    async fn delete(&self, id: &str) -> bool;
}
