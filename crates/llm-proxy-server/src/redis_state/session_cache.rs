//! Which sessions' in-process copies may be used without asking Redis, and the invalidations
//! that end that trust. A session read from (or written to) Redis is remembered here; while
//! this replica is subscribed to the `llm-proxy:sessions` channel, the copy stays trusted until
//! another replica announces a change of that session there (its writes publish the key with
//! the write, in one round trip). While the subscription is down, a copy is trusted for
//! [`UNSUBSCRIBED_TRUST`] only; each (re)subscription forgets every copy. A read racing an
//! invalidation is not remembered (a generation counter, bumped by every invalidation). Each
//! entry keeps the bytes Redis holds, so a change of a current session goes straight to the
//! compare-and-set, without reading it first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::link::{OP_TIMEOUT, PROBE_EVERY, RedisLink};

/// How long a copy is trusted while this replica cannot hear invalidations.
pub const UNSUBSCRIBED_TRUST: Duration = Duration::from_secs(1);

const INVALIDATIONS: &str = "llm_proxy_redis_session_invalidations_total";

/// Redis's value of a session (empty: absent).
pub type Stored = Arc<[u8]>;

/// One remembered session.
#[derive(Debug, Clone)]
struct Entry {
    /// What Redis holds.
    stored: Stored,
    /// When the copy was last known to equal Redis's.
    validated: Instant,
    /// When Redis's expiry of the session was last renewed.
    refreshed: Instant,
}

/// The trusted copies (the copies themselves live in the in-process store).
#[derive(Debug)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Bumped by every invalidation and (re)subscription.
    generation: AtomicU64,
    /// Whether invalidations are being received.
    live: AtomicBool,
    /// Most sessions remembered (`session.max_sessions`).
    cap: usize,
    /// Renew Redis's expiry of a session read from the cache at most this often.
    refresh_every: Duration,
    max_age: Duration,
    /// This replica's id in its announcements (it ignores its own).
    origin: String,
}

/// What the cache says about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Ask Redis.
    Miss,
    /// The local copy is current and Redis holds `stored`; `renew` when Redis's expiry is due
    /// a renewal.
    Hit { renew: bool, stored: Stored },
}

impl SessionCache {
    /// A cache of at most `cap` sessions expiring after `max_age` idle.
    pub fn new(cap: usize, max_age: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            cap: cap.max(1),
            refresh_every: max_age / 10,
            max_age,
            origin: format!("{:016x}", fastrand::u64(..)),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read before asking Redis; pass to [`Self::remember`] after.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether session `key`'s local copy may be used without Redis.
    pub fn lookup(&self, key: &str) -> Lookup {
        let live = self.live.load(Ordering::Acquire);
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(key) else {
            return Lookup::Miss;
        };
        let now = Instant::now();
        if !live && now.duration_since(entry.validated) >= UNSUBSCRIBED_TRUST {
            return Lookup::Miss;
        }
        let renew = now.duration_since(entry.refreshed) >= self.refresh_every;
        if renew {
            entry.refreshed = now;
        }
        Lookup::Hit {
            renew,
            stored: entry.stored.clone(),
        }
    }

    /// Remembers that session `key`'s local copy equals Redis's, `stored` (just read or
    /// written, its expiry renewed), unless an invalidation came since `generation` was read.
    pub fn remember(&self, key: &str, generation: u64, stored: Stored) {
        let mut entries = self.entries();
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.cap && !entries.contains_key(key) {
            // Full: drop what the in-process store has forgotten too; when that frees little,
            // everything (copies are only a shortcut), so a full cache is swept rarely.
            let max_age = self.max_age;
            entries.retain(|_, e| e.validated.elapsed() < max_age);
            if entries.len() >= self.cap / 2 {
                entries.clear();
            }
        }
        let now = Instant::now();
        entries.insert(
            key.to_owned(),
            Entry {
                stored,
                validated: now,
                refreshed: now,
            },
        );
    }

    /// Stops trusting session `key`'s copy.
    pub fn forget(&self, key: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key);
    }

    fn forget_all(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// The channel of invalidations.
    pub fn channel(link: &RedisLink) -> String {
        link.key(&["sessions"])
    }

    /// The announcement of a change of session `key`.
    pub fn message(&self, key: &str) -> String {
        format!("{} {key}", self.origin)
    }

    /// Applies one announcement; true when it was another replica's.
    fn apply(&self, message: &str) -> bool {
        match message.split_once(' ') {
            Some((origin, key)) if origin != self.origin => {
                self.forget(key);
                true
            }
            _ => false,
        }
    }
}

/// Keeps `cache` subscribed to invalidations while `link` lives.
pub fn spawn(link: &Arc<RedisLink>, cache: &Arc<SessionCache>) {
    tokio::spawn(subscribe(Arc::downgrade(link), Arc::downgrade(cache)));
}

async fn subscribe(link: Weak<RedisLink>, cache: Weak<SessionCache>) {
    loop {
        let Some(strong) = link.upgrade() else { return };
        if !strong.is_up() {
            drop(strong);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        let pubsub = tokio::time::timeout(OP_TIMEOUT * 2, strong.client().get_async_pubsub()).await;
        let Ok(Ok(mut pubsub)) = pubsub else {
            drop(strong);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        };
        if pubsub
            .subscribe(SessionCache::channel(&strong))
            .await
            .is_err()
        {
            drop(strong);
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        let Some(shared) = cache.upgrade() else {
            return;
        };
        // Changes made while unsubscribed were not heard: trust nothing remembered before.
        shared.forget_all();
        shared.live.store(true, Ordering::Release);
        strong.note_session_subscription();
        drop((strong, shared));
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            let Some(shared) = cache.upgrade() else {
                return;
            };
            let Some(strong) = link.upgrade() else { return };
            if shared.apply(&text) {
                metrics::counter!(INVALIDATIONS).increment(1);
                strong.note_session_invalidation();
            }
        }
        if let Some(shared) = cache.upgrade() {
            shared.live.store(false, Ordering::Release);
        }
        // The connection dropped: resubscribe once Redis is back.
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Stored {
        Arc::from(&b"{}"[..])
    }

    fn hit(renew: bool) -> Lookup {
        Lookup::Hit {
            renew,
            stored: stored(),
        }
    }

    fn live(cache: &SessionCache) {
        cache.live.store(true, Ordering::Release);
    }

    #[test]
    fn a_remembered_session_is_a_hit_until_another_replica_changes_it() {
        let cache = SessionCache::new(10, Duration::from_secs(3600));
        live(&cache);
        assert_eq!(cache.lookup("s"), Lookup::Miss);
        cache.remember("s", cache.generation(), stored());
        assert_eq!(cache.lookup("s"), hit(false));
        // Its own announcement changes nothing.
        assert!(!cache.apply(&cache.message("s")));
        assert_eq!(cache.lookup("s"), hit(false));
        assert!(cache.apply("other-replica s"));
        assert_eq!(cache.lookup("s"), Lookup::Miss);
    }

    #[test]
    fn a_read_racing_an_invalidation_is_not_remembered() {
        let cache = SessionCache::new(10, Duration::from_secs(3600));
        live(&cache);
        let before = cache.generation();
        assert!(cache.apply("other s"));
        cache.remember("s", before, stored());
        assert_eq!(cache.lookup("s"), Lookup::Miss);
    }

    #[test]
    fn without_the_subscription_copies_are_trusted_briefly_and_forgotten_on_resubscribing() {
        let cache = SessionCache::new(10, Duration::from_secs(3600));
        cache.remember("s", cache.generation(), stored());
        assert_eq!(cache.lookup("s"), hit(false));
        if let Some(e) = cache.entries().get_mut("s") {
            e.validated -= UNSUBSCRIBED_TRUST;
        }
        assert_eq!(cache.lookup("s"), Lookup::Miss, "not live: stale");
        live(&cache);
        assert_eq!(cache.lookup("s"), hit(false));
        cache.forget_all();
        assert_eq!(cache.lookup("s"), Lookup::Miss);
    }

    #[test]
    fn redis_expiry_is_renewed_at_most_every_tenth_of_max_age() {
        let cache = SessionCache::new(10, Duration::from_secs(100));
        live(&cache);
        cache.remember("s", cache.generation(), stored());
        if let Some(e) = cache.entries().get_mut("s") {
            e.refreshed -= Duration::from_secs(10);
        }
        assert_eq!(cache.lookup("s"), hit(true));
        assert_eq!(cache.lookup("s"), hit(false));
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = SessionCache::new(4, Duration::from_secs(3600));
        live(&cache);
        for i in 0..20 {
            cache.remember(&format!("s{i}"), cache.generation(), stored());
        }
        assert!(cache.entries().len() <= 4);
        assert_eq!(cache.lookup("s19"), hit(false));
    }
}
