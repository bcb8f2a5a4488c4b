//! Stored Responses answers for `previous_response_id`, `GET/DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`: the trait (so a shared store such as Redis can replace
//! the embedded ones), the SQLite store the binary keeps in the data directory, and a bounded
//! in-memory store for tests. A stored answer keeps the conversation as Responses items (the
//! request's input, and the answer's output), so a follow-up turn is the stored items plus its
//! own input.

mod memory;
mod sqlite;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

pub use memory::{DEFAULT_CAPACITY, MemoryResponseStore};
pub use sqlite::SqliteResponseStore;

/// One stored answer. Its input and output items are read from JSON when first asked for
/// ([`StoredResponse::input`], [`StoredResponse::output`]), so the request that answered builds
/// no item tree: it hands over two buffers, and the store (on its own thread) or the next turn
/// reads them.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// The conversation that led to this answer, as a JSON array of input items.
    input_json: Bytes,
    /// The same, once read (or as given).
    input: OnceLock<Arc<Vec<Value>>>,
    /// The response object as the client received it (less `output_text`), as JSON.
    pub object: Bytes,
    /// The object's `output`, once read.
    output: OnceLock<Arc<Vec<Value>>>,
}

impl StoredResponse {
    /// An answer whose input items are known; its output items are read from `object` when
    /// needed.
    pub fn new(input: Arc<Vec<Value>>, object: Bytes) -> Self {
        Self {
            input_json: Bytes::new(),
            input: OnceLock::from(input),
            object,
            output: OnceLock::new(),
        }
    }

    /// An answer whose input items are the JSON array `input_json` (an empty buffer: none);
    /// both are read when needed.
    pub fn from_json(input_json: Bytes, object: Bytes) -> Self {
        Self {
            input_json,
            input: OnceLock::new(),
            object,
            output: OnceLock::new(),
        }
    }

    /// An answer whose input and output items are known already (the output must be the
    /// object's `output`).
    pub fn with_output(input: Arc<Vec<Value>>, output: Arc<Vec<Value>>, object: Bytes) -> Self {
        Self {
            input_json: Bytes::new(),
            input: OnceLock::from(input),
            object,
            output: OnceLock::from(output),
        }
    }

    /// The conversation that led to this answer, as input items.
    pub fn input(&self) -> &[Value] {
        self.input.get_or_init(|| {
            Arc::new(if self.input_json.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&self.input_json).unwrap_or_default()
            })
        })
    }

    /// The input items as a JSON array, as written (serialized only for an answer built from
    /// items).
    pub fn input_json(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.input.get() {
            Some(items) if self.input_json.is_empty() => std::borrow::Cow::Owned(
                serde_json::to_vec(items.as_ref()).unwrap_or_else(|_| b"[]".to_vec()),
            ),
            _ if self.input_json.is_empty() => std::borrow::Cow::Borrowed(b"[]"),
            _ => std::borrow::Cow::Borrowed(&self.input_json),
        }
    }

    /// The answer's output items (the next turn's input continues with them): the object's
    /// `output`, empty if the object has none.
    pub fn output(&self) -> &[Value] {
        self.output
            .get_or_init(|| Arc::new(output_of(&self.object)))
    }

    /// The whole conversation up to and including this answer, as input items.
    pub fn items(&self) -> impl Iterator<Item = &Value> {
        self.input().iter().chain(self.output().iter())
    }
}

impl PartialEq for StoredResponse {
    /// The output is part of the object.
    fn eq(&self, other: &Self) -> bool {
        self.input() == other.input() && self.object == other.object
    }
}

/// The `output` items of a response object's JSON (none if it does not parse).
fn output_of(object: &[u8]) -> Vec<Value> {
    /// The output items of a stored response object.
    #[derive(serde::Deserialize)]
    struct Output {
        #[serde(default)]
        output: Vec<Value>,
    }
    serde_json::from_slice::<Output>(object)
        .map(|o| o.output)
        .unwrap_or_default()
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
    /// Like [`get`](Self::get), but says when the answer may exist in a shared store that
    /// cannot be reached right now (rather than calling it unknown). Embedded stores always
    /// know.
    async fn lookup(&self, id: &str) -> Result<Option<StoredResponse>, StoreUnavailable> {
        Ok(self.get(id).await)
    }
    /// Waits until the writes queued so far have reached the store (a shared store writes in
    /// the background; other replicas read them only then).
    async fn flush(&self) {}
}

/// A shared store could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreUnavailable;
