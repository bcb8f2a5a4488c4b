//! The Redis Responses store: each answer under `llm-proxy:response:<id>` for
//! `responses_api.store.ttl_seconds`, answers larger than `max_bytes` kept only locally, and
//! at most `max_responses` in Redis (an index sorted by time; the oldest go first). Writes
//! never hold up a request: they are queued to one writer task, in order. Every answer is
//! also put in the local store (the data directory's, or memory), which serves this replica
//! when Redis misses (a write still queued) or is down. A deleted answer leaves a tombstone
//! for its TTL, so another replica's local copy is not served after a `DELETE`. When Redis
//! is down and the answer is not here, the caller gets [`StoreUnavailable`] (a retryable
//! 503), never a wrong "not found".

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use super::link::{FALLBACKS, RedisLink};
use crate::config::ResponseStoreConfig;
use crate::responses_store::{ResponseStore, StoreUnavailable, StoredResponse};

/// Writes queued beyond this are dropped (kept locally only) and counted.
const MAX_QUEUED: usize = 1024;
/// What a deleted answer's key holds.
const TOMBSTONE: &[u8] = b"-";

/// Stores `KEYS[1]` = `ARGV[1]` for `ARGV[2]` seconds, indexes it in `KEYS[2]` at time
/// `ARGV[3]` under id `ARGV[4]`, and forgets the oldest beyond `ARGV[5]` answers (their keys
/// are `ARGV[6]` .. id).
const PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #old, 2 do redis.call('DEL', ARGV[6] .. old[i]) end
end
return 1
";

/// Replaces `KEYS[1]` by a tombstone for `ARGV[2]` seconds and drops `ARGV[3]` from the
/// index `KEYS[2]`; 1 when an answer was there.
const DELETE: &str = r"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
if old and old ~= ARGV[1] then return 1 end
return 0
";

enum Write {
    Put(String, Vec<u8>),
    Delete(String, oneshot::Sender<bool>),
    /// Answered once the writes before it are done.
    Flush(oneshot::Sender<()>),
}

/// Answers in Redis, in front of a local store.
#[derive(Debug)]
pub struct RedisResponseStore {
    link: Arc<RedisLink>,
    local: Arc<dyn ResponseStore>,
    max_bytes: u64,
    writes: mpsc::Sender<Write>,
}

impl RedisResponseStore {
    /// A store on `link` in front of `local`; starts its writer task.
    pub fn spawn(
        link: Arc<RedisLink>,
        local: Arc<dyn ResponseStore>,
        config: &ResponseStoreConfig,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let writer = Writer {
            link: link.clone(),
            ttl_secs: config.ttl.as_secs().max(1),
            max_responses: config.max_responses,
            put: redis::Script::new(PUT),
            delete: redis::Script::new(DELETE),
        };
        tokio::spawn(writer.run(rx));
        Arc::new(Self {
            link,
            local,
            max_bytes: config.max_bytes,
            writes: tx,
        })
    }

    fn key(&self, id: &str) -> String {
        self.link.key(&["response", id])
    }

    fn decode(bytes: &[u8]) -> Option<StoredResponse> {
        /// The stored form: the input items and the object as the client received it.
        #[derive(serde::Deserialize)]
        struct Stored<'a> {
            #[serde(borrow)]
            input: &'a RawValue,
            #[serde(borrow)]
            object: &'a RawValue,
        }
        let stored: Stored<'_> = serde_json::from_slice(bytes).ok()?;
        // The input items are read when a turn needs them (and must be an array then).
        stored.input.get().trim_start().starts_with('[').then(|| {
            StoredResponse::from_json(
                Bytes::copy_from_slice(stored.input.get().as_bytes()),
                Bytes::copy_from_slice(stored.object.get().as_bytes()),
            )
        })
    }

    fn encode(response: &StoredResponse) -> Option<Vec<u8>> {
        let input = response.input_json();
        let mut out = Vec::with_capacity(input.len() + response.object().len() + 24);
        out.extend_from_slice(b"{\"input\":");
        out.extend_from_slice(&input);
        out.extend_from_slice(b",\"object\":");
        out.extend_from_slice(response.object());
        out.push(b'}');
        Some(out)
    }
}

#[async_trait::async_trait]
impl ResponseStore for RedisResponseStore {
    async fn get(&self, id: &str) -> Option<StoredResponse> {
        self.lookup(id).await.ok().flatten()
    }

    fn put(&self, id: String, response: StoredResponse) {
        let encoded = Self::encode(&response);
        self.local.put(id.clone(), response);
        let Some(bytes) = encoded.filter(|b| b.len() as u64 <= self.max_bytes) else {
            tracing::debug!(
                id,
                "answer larger than responses_api.store.max_bytes: kept locally only"
            );
            return;
        };
        if self.writes.try_send(Write::Put(id, bytes)).is_err() {
            metrics::counter!(FALLBACKS, "store" => "responses_dropped").increment(1);
        }
    }

    async fn delete(&self, id: &str) -> bool {
        let here = self.local.delete(id).await;
        let (tx, rx) = oneshot::channel();
        if self
            .writes
            .send(Write::Delete(id.to_owned(), tx))
            .await
            .is_err()
        {
            return here;
        }
        rx.await.unwrap_or(false) || here
    }

    async fn lookup(&self, id: &str) -> Result<Option<StoredResponse>, StoreUnavailable> {
        let key = self.key(id);
        let found = self
            .link
            .run("response_get", |mut c| async move {
                redis::AsyncCommands::get::<_, Option<Vec<u8>>>(&mut c, key).await
            })
            .await;
        match found {
            Ok(Some(bytes)) if bytes == TOMBSTONE => Ok(None),
            Ok(Some(bytes)) => Ok(Self::decode(&bytes)),
            // Not in Redis (expired, too large, or its write still queued here).
            Ok(None) => Ok(self.local.get(id).await),
            Err(_) => {
                metrics::counter!(FALLBACKS, "store" => "responses").increment(1);
                match self.local.get(id).await {
                    Some(found) => Ok(Some(found)),
                    None => Err(StoreUnavailable),
                }
            }
        }
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writes.send(Write::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.local.flush().await;
    }
}

/// The task writing answers to Redis, in order.
struct Writer {
    link: Arc<RedisLink>,
    ttl_secs: u64,
    max_responses: usize,
    put: redis::Script,
    delete: redis::Script,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Write>) {
        let index = self.link.key(&["responses"]);
        let prefix = self.link.key(&["response", ""]);
        while let Some(write) = rx.recv().await {
            match write {
                Write::Put(id, bytes) => {
                    let mut call = self.put.key(self.link.key(&["response", &id]));
                    call.key(&index)
                        .arg(bytes)
                        .arg(self.ttl_secs)
                        .arg(llm_proxy_api::ids::unix_now())
                        .arg(&id)
                        .arg(self.max_responses)
                        .arg(&prefix);
                    let written = self
                        .link
                        .run("response_put", |mut c| async move {
                            call.invoke_async::<i64>(&mut c).await
                        })
                        .await;
                    if written.is_err() {
                        metrics::counter!(FALLBACKS, "store" => "responses").increment(1);
                    }
                }
                Write::Delete(id, reply) => {
                    let mut call = self.delete.key(self.link.key(&["response", &id]));
                    call.key(&index).arg(TOMBSTONE).arg(self.ttl_secs).arg(&id);
                    let deleted = self
                        .link
                        .run("response_delete", |mut c| async move {
                            call.invoke_async::<i64>(&mut c).await
                        })
                        .await;
                    let _ = reply.send(deleted == Ok(1));
                }
                Write::Flush(reply) => {
                    let _ = reply.send(());
                }
            }
        }
    }
}
