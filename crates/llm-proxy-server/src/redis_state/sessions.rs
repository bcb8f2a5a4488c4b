//! The Redis session store: each session's state as JSON under `llm-proxy:session:<key>`,
//! expiring `session.max_age` after its last use (renewed by reads from Redis and writes, and
//! at most every `max_age / 10` while reads are served locally). Updates are optimistic
//! compare-and-set (a Lua script), retried, so two replicas changing one session do not lose
//! a change. Every session is also kept in the in-process store: a copy known to be current
//! ([`SessionCache`](super::session_cache)) answers reads without Redis, every write
//! announces the session on a channel so other replicas drop their copies; while Redis is
//! down, requests load and save there, the keys changed meanwhile are remembered, and they
//! are written back when Redis returns.
//!
//! A change that changes nothing Redis must know writes nothing. The request counter
//! (`SessionState::requests`, which only tells a new session in the logs) is such a thing: it
//! is counted per replica (see [`RedisSessionStore::changed`]); Redis's copy of it moves only
//! with the session's real changes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use redis::AsyncCommands;

use super::link::{FALLBACKS, RedisLink};
use super::session_cache::{self, Lookup, SessionCache, Stored};
use crate::session::{MemoryStore, SessionConfig, SessionState, SessionStore, SessionStoreError};

/// Tries of an optimistic update before it gives up and applies the change locally.
const UPDATE_TRIES: usize = 8;

/// Sets `KEYS[1]` to `ARGV[2]` (with expiry `ARGV[3]` seconds) if it still holds `ARGV[1]`
/// (empty: absent), and publishes `ARGV[5]` on channel `ARGV[4]`. 1 when set.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// Sessions in Redis, with the in-process store as a local copy and fallback.
#[derive(Debug)]
pub struct RedisSessionStore {
    link: Arc<RedisLink>,
    local: Arc<MemoryStore>,
    cache: Arc<SessionCache>,
    channel: String,
    ttl_secs: u64,
    /// Sessions changed while Redis was down, to write back when it returns.
    dirty: Mutex<HashSet<String>>,
    cas: redis::Script,
}

impl RedisSessionStore {
    /// A store on `link`; starts the task that writes local changes back after an outage.
    pub fn spawn(link: Arc<RedisLink>, config: SessionConfig) -> Arc<Self> {
        let cache = Arc::new(SessionCache::new(config.max_sessions, config.max_age));
        session_cache::spawn(&link, &cache);
        let store = Arc::new(Self {
            channel: SessionCache::channel(&link),
            link: link.clone(),
            local: MemoryStore::spawn(config),
            cache,
            ttl_secs: config.max_age.as_secs().max(1),
            dirty: Mutex::new(HashSet::new()),
            cas: redis::Script::new(COMPARE_AND_SET),
        });
        let weak = Arc::downgrade(&store);
        let mut recoveries = link.recoveries();
        tokio::spawn(async move {
            while recoveries.changed().await.is_ok() {
                let Some(store) = weak.upgrade() else { return };
                store.write_back().await;
            }
        });
        store
    }

    fn redis_key(&self, key: &str) -> String {
        self.link.key(&["session", key])
    }

    fn dirty(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fell_back(&self, key: &str) {
        metrics::counter!(FALLBACKS, "store" => "sessions").increment(1);
        self.dirty().insert(key.to_owned());
    }

    /// Writes the sessions changed during an outage to Redis (local state wins: it is newer).
    async fn write_back(&self) {
        let keys: Vec<String> = self.dirty().drain().collect();
        if keys.is_empty() {
            return;
        }
        let mut failed = Vec::new();
        for key in keys {
            let state = self.local.load(&key).await.ok().flatten();
            let written = match state.map(|s| serde_json::to_vec(&s)) {
                Some(Ok(bytes)) => self.write("session_resync", &key, Some(bytes)).await,
                Some(Err(_)) => Ok(()),
                None => self.write("session_resync", &key, None).await,
            };
            if written.is_err() {
                failed.push(key);
            }
        }
        let resynced = !failed.is_empty();
        self.dirty().extend(failed);
        if !resynced {
            tracing::info!("sessions changed during the Redis outage written back");
        }
    }

    /// Sets (or with `None` deletes) session `key` in Redis and announces the change, in one
    /// round trip; the local copy is then current.
    async fn write(
        &self,
        what: &'static str,
        key: &str,
        bytes: Option<Vec<u8>>,
    ) -> Result<(), super::RedisDown> {
        let generation = self.cache.generation();
        let redis_key = self.redis_key(key);
        let ttl = self.ttl_secs;
        let channel = self.channel.clone();
        let message = self.cache.message(key);
        let stored: Stored = bytes.map_or_else(|| Arc::from(&[][..]), Arc::from);
        let value = stored.clone();
        self.link
            .run(what, |mut c| async move {
                let mut pipe = redis::pipe();
                if value.is_empty() {
                    pipe.del(redis_key).ignore();
                } else {
                    pipe.set_ex(redis_key, &*value, ttl).ignore();
                }
                pipe.publish(channel, message)
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        self.cache.remember(key, generation, stored);
        Ok(())
    }

    /// Renews Redis's expiry of session `key` in the background (reads served locally).
    fn renew(&self, key: &str) {
        let link = self.link.clone();
        let redis_key = self.redis_key(key);
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let _ = link
                .run("session_renew", |mut c| async move {
                    c.expire::<_, ()>(redis_key, ttl).await
                })
                .await;
        });
    }

    /// When the cache says the local copy of session `key` is current: the copy and what
    /// Redis holds. A session Redis does not hold is current too (its copy, if any, differs
    /// from the default only by what is not written to Redis).
    async fn cached(
        &self,
        key: &str,
    ) -> Result<Option<(Option<SessionState>, Stored)>, SessionStoreError> {
        let Lookup::Hit { renew, stored } = self.cache.lookup(key) else {
            return Ok(None);
        };
        let found = self.local.load(key).await?;
        if stored.is_empty() {
            return Ok(Some((found, stored)));
        }
        if found.is_none() {
            // The in-process store forgot it: read Redis again.
            return Ok(None);
        }
        if renew {
            self.renew(key);
        }
        Ok(Some((found, stored)))
    }

    /// Whether `change` turned `before` into `after` (a change Redis must learn).
    fn changed(before: &SessionState, after: &SessionState) -> bool {
        before != after
    }

    fn decode(bytes: &[u8]) -> Result<SessionState, SessionStoreError> {
        serde_json::from_slice(bytes).map_err(|e| SessionStoreError::Corrupt(e.to_string()))
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn load(&self, key: &str) -> Result<Option<SessionState>, SessionStoreError> {
        // A session changed locally during an outage is newer than Redis's copy until written
        // back.
        if self.dirty().contains(key) {
            return self.local.load(key).await;
        }
        if self.link.is_up()
            && let Some((state, stored)) = self.cached(key).await?
        {
            return Ok(state.filter(|_| !stored.is_empty()));
        }
        let generation = self.cache.generation();
        let redis_key = self.redis_key(key);
        let ttl = self.ttl_secs;
        let found = self
            .link
            .run("session_load", |mut c| async move {
                c.get_ex::<_, Option<Vec<u8>>>(redis_key, redis::Expiry::EX(ttl))
                    .await
            })
            .await;
        match found {
            Ok(Some(bytes)) => {
                let state = Self::decode(&bytes)?;
                self.local.save(key, &state).await?;
                self.cache.remember(key, generation, Arc::from(bytes));
                Ok(Some(state))
            }
            Ok(None) => {
                self.local.delete(key).await?;
                self.cache.remember(key, generation, Arc::from(&[][..]));
                Ok(None)
            }
            Err(_) => {
                metrics::counter!(FALLBACKS, "store" => "sessions").increment(1);
                self.local.load(key).await
            }
        }
    }

    async fn save(&self, key: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        self.local.save(key, state).await?;
        let bytes =
            serde_json::to_vec(state).map_err(|e| SessionStoreError::Corrupt(e.to_string()))?;
        if self.write("session_save", key, Some(bytes)).await.is_err() {
            self.fell_back(key);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), SessionStoreError> {
        self.local.delete(key).await?;
        if self.write("session_delete", key, None).await.is_err() {
            self.fell_back(key);
        }
        Ok(())
    }

    async fn update(
        &self,
        key: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut SessionState) + Send),
    ) -> Result<SessionState, SessionStoreError> {
        let redis_key = self.redis_key(key);
        let ttl = self.ttl_secs;
        if self.link.is_up() && !self.dirty().contains(key) {
            // The request counter as this replica knows it, carried into Redis with the
            // session's next real change.
            // Redis's value when the local copy is current: the first compare-and-set needs
            // no read.
            let mut known = None;
            if let Some((state, stored)) = self.cached(key).await? {
                let state = state.unwrap_or_default();
                let mut next = state.clone();
                change(&mut next);
                if !Self::changed(&state, &next) {
                    // Nothing changed: the current local copy stays as it is.
                    self.local.save(key, &next).await?;
                    return Ok(next);
                }
                known = Some(stored);
            }
            for attempt in 0..UPDATE_TRIES {
                let generation = self.cache.generation();
                let current: Stored = match known.take() {
                    Some(stored) => stored,
                    None => {
                        let k = redis_key.clone();
                        let Ok(found) = self
                            .link
                            .run("session_update", |mut c| async move {
                                c.get_ex::<_, Option<Vec<u8>>>(k, redis::Expiry::EX(ttl))
                                    .await
                            })
                            .await
                        else {
                            break;
                        };
                        found.map_or_else(|| Arc::from(&[][..]), Arc::from)
                    }
                };
                let mut state = if current.is_empty() {
                    SessionState::default()
                } else {
                    Self::decode(&current)?
                };
                let before = (attempt == 0).then(|| state.clone());
                change(&mut state);
                if let Some(before) = &before
                    && !Self::changed(before, &state)
                {
                    // Nothing for Redis (read just now, expiry renewed).
                    self.local.save(key, &state).await?;
                    self.cache.remember(key, generation, current);
                    return Ok(state);
                }
                let next: Stored = serde_json::to_vec(&state)
                    .map_err(|e| SessionStoreError::Corrupt(e.to_string()))?
                    .into();
                let mut invocation = self.cas.key(&redis_key);
                invocation
                    .arg(&*current)
                    .arg(&*next)
                    .arg(ttl)
                    .arg(&self.channel)
                    .arg(self.cache.message(key));
                let generation = self.cache.generation();
                let Ok(set) = self
                    .link
                    .run("session_update", |mut c| async move {
                        invocation.invoke_async::<i64>(&mut c).await
                    })
                    .await
                else {
                    break;
                };
                if set == 1 {
                    self.local.save(key, &state).await?;
                    self.cache.remember(key, generation, next);
                    return Ok(state);
                }
            }
            if self.link.is_up() {
                // Lost every race to other writers of this session: not an outage.
                return Err(SessionStoreError::Unavailable(
                    "too many concurrent changes of one session".to_owned(),
                ));
            }
        }
        let state = self.local.update(key, change).await?;
        self.fell_back(key);
        Ok(state)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
