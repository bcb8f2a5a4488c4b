//! Stored Responses answers for `previous_response_id`, `GET/DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`: the trait (so a shared store such as Redis can replace
//! the embedded ones), the SQLite store the binary keeps in the data directory, and a bounded
//! in-memory store for tests. A stored answer keeps the conversation as Responses items (the
//! request's input, and the answer's output), so a follow-up turn is the stored items plus its
//! own input.

mod memory;
mod sqlite;

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

pub use memory::{DEFAULT_CAPACITY, MemoryResponseStore};
pub use sqlite::SqliteResponseStore;

/// One stored answer. Its input and output items are read from JSON when first asked for
/// ([`StoredResponse::input`], [`StoredResponse::output`]), so the request that answered builds
/// no item tree: it hands over the buffers it has (the input's text or items, the object as
/// sent to the client), and the store (on its own thread) or the next turn reads them.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// The conversation that led to this answer as the request gave it (items as JSON, or
    /// a text input); an empty JSON buffer when the items were given as values.
    given: StoredInput,
    /// The input items, once read (or as given).
    input: OnceLock<Arc<Vec<Value>>>,
    /// The response object as the client received it, less `output_text`, as JSON: cut
    /// from [`StoredResponse::sent`] when first asked for.
    object: OnceLock<Bytes>,
    /// The object as sent (with `output_text`) and where that field is in it.
    sent: Option<(Bytes, Range<usize>)>,
    /// The object's `output`, once read.
    output: OnceLock<Arc<Vec<Value>>>,
}

/// What a turn's input was, as the store keeps it.
#[derive(Debug, Clone)]
pub enum StoredInput {
    /// Input items as a JSON array (an empty buffer: none).
    Json(Bytes),
    /// A text `input`: one user message.
    Text(Arc<str>),
}

impl StoredResponse {
    /// An answer whose input items are known; its output items are read from `object` when
    /// needed.
    pub fn new(input: Arc<Vec<Value>>, object: Bytes) -> Self {
        Self {
            given: StoredInput::Json(Bytes::new()),
            input: OnceLock::from(input),
            object: OnceLock::from(object),
            sent: None,
            output: OnceLock::new(),
        }
    }

    /// An answer whose input items are the JSON array `input_json` (an empty buffer: none);
    /// both are read when needed.
    pub fn from_json(input_json: Bytes, object: Bytes) -> Self {
        Self::from_parts(StoredInput::Json(input_json), object, 0..0)
    }

    /// An answer as its request had it: the input as given, and the object as sent to the
    /// client with its `output_text` field at `output_text` in `sent` (an empty range: none),
    /// cut out when the object is first read: by the SQLite store's own thread, not the
    /// request's (the Redis store reads it when `put`, to encode it).
    pub fn from_parts(input: StoredInput, sent: Bytes, output_text: Range<usize>) -> Self {
        let (object, sent) = if output_text.is_empty() || output_text.end > sent.len() {
            (OnceLock::from(sent), None)
        } else {
            (OnceLock::new(), Some((sent, output_text)))
        };
        Self {
            given: input,
            input: OnceLock::new(),
            object,
            sent,
            output: OnceLock::new(),
        }
    }

    /// The response object as the client received it, less `output_text`, as JSON.
    pub fn object(&self) -> &Bytes {
        self.object.get_or_init(|| match &self.sent {
            Some((sent, cut)) => {
                let mut object = Vec::with_capacity(sent.len() - cut.len());
                object.extend_from_slice(&sent[..cut.start]);
                object.extend_from_slice(&sent[cut.end..]);
                Bytes::from(object)
            }
            None => Bytes::new(),
        })
    }

    /// An answer whose input and output items are known already (the output must be the
    /// object's `output`).
    pub fn with_output(input: Arc<Vec<Value>>, output: Arc<Vec<Value>>, object: Bytes) -> Self {
        Self {
            given: StoredInput::Json(Bytes::new()),
            input: OnceLock::from(input),
            object: OnceLock::from(object),
            sent: None,
            output: OnceLock::from(output),
        }
    }

    /// The conversation that led to this answer, as input items.
    pub fn input(&self) -> &[Value] {
        self.input.get_or_init(|| {
            Arc::new(match &self.given {
                StoredInput::Text(text) => {
                    vec![serde_json::json!({"content": text.as_ref(), "role": "user"})]
                }
                StoredInput::Json(json) if json.is_empty() => Vec::new(),
                StoredInput::Json(json) => serde_json::from_slice(json).unwrap_or_default(),
            })
        })
    }

    /// The input items as a JSON array, as written (serialized only for an answer built from
    /// items).
    pub fn input_json(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        match (&self.given, self.input.get()) {
            (StoredInput::Text(text), _) => Cow::Owned(user_text_items(text)),
            (StoredInput::Json(json), _) if !json.is_empty() => Cow::Borrowed(json),
            (StoredInput::Json(_), Some(items)) => {
                Cow::Owned(serde_json::to_vec(items.as_ref()).unwrap_or_else(|_| b"[]".to_vec()))
            }
            (StoredInput::Json(_), None) => Cow::Borrowed(b"[]"),
        }
    }

    /// The answer's output items (the next turn's input continues with them): the object's
    /// `output`, empty if the object has none.
    pub fn output(&self) -> &[Value] {
        self.output
            .get_or_init(|| Arc::new(output_of(self.object())))
    }

    /// The whole conversation up to and including this answer, as input items.
    pub fn items(&self) -> impl Iterator<Item = &Value> {
        self.input().iter().chain(self.output().iter())
    }
}

impl PartialEq for StoredResponse {
    /// The output is part of the object.
    fn eq(&self, other: &Self) -> bool {
        self.input() == other.input() && self.object() == other.object()
    }
}

/// `[{"content": text, "role": "user"}]`, the input item a text `input` stands for (keys in
/// the order a `Value` prints them).
fn user_text_items(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 36);
    out.extend_from_slice(b"[{\"content\":");
    if serde_json::to_writer(&mut out, text).is_err() {
        return b"[]".to_vec();
    }
    out.extend_from_slice(b",\"role\":\"user\"}]");
    out
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::json;

    use super::{StoredInput, StoredResponse};

    /// An answer handed over as its request had it (the text input, the object as sent with
    /// `output_text`) reads back as one stored from items and the object without that field.
    #[test]
    fn an_answer_kept_as_sent_reads_as_one_kept_as_items() {
        let sent = br#"{"id":"resp_1","output":[{"type":"message","content":[{"type":"output_text","text":"hi \"there\""}]}],"output_text":"hi \"there\"","status":"completed"}"#;
        let field = br#","output_text":"hi \"there\"""#;
        let start = sent.windows(field.len()).position(|w| w == field).unwrap();
        let text = "say \"hi\"\n";
        let kept = StoredResponse::from_parts(
            StoredInput::Text(Arc::from(text)),
            Bytes::from_static(sent),
            start..start + field.len(),
        );
        let object = br#"{"id":"resp_1","output":[{"type":"message","content":[{"type":"output_text","text":"hi \"there\""}]}],"status":"completed"}"#;
        let items = vec![json!({"role": "user", "content": text})];
        let expected = StoredResponse::new(Arc::new(items.clone()), Bytes::from_static(object));
        assert_eq!(kept.object().as_ref(), object);
        assert_eq!(kept.input(), items.as_slice());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&kept.input_json()).unwrap(),
            json!(items)
        );
        assert_eq!(kept.output(), expected.output());
        assert_eq!(kept.output().len(), 1);
        assert_eq!(kept, expected);

        // Nothing to cut (an empty range, or one past the end): the object as given.
        for cut in [0..0, sent.len()..sent.len() + 3] {
            let whole = StoredResponse::from_parts(
                StoredInput::Json(Bytes::new()),
                Bytes::from_static(sent),
                cut,
            );
            assert_eq!(whole.object().as_ref(), sent);
            assert!(whole.input().is_empty());
        }
    }
}
