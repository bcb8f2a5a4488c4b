//! The in-process session store: a bounded map (the least recently used session goes first)
//! whose sessions expire `max_age` after their last use, swept every `cleanup_interval` by a
//! background task that ends when the store is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::state::SessionState;
use super::store::{SessionConfig, SessionStore, SessionStoreError};

/// Where the store reads the time (injectable, so tests expire sessions without sleeping).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Sessions kept in this process.
pub struct MemoryStore {
    config: SessionConfig,
    clock: Clock,
    inner: Mutex<Inner>,
    /// Cancels the sweeping task when the store goes away.
    _stop_sweeper: Option<DropGuard>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("config", &self.config)
            .field("sessions", &self.len())
            .finish_non_exhaustive()
    }
}

struct Entry {
    state: SessionState,
    last_used: Instant,
    /// Position in `Inner::recency`.
    seq: u64,
}

/// The sessions, and their keys from least to most recently used. With a clock that never
/// goes back this is also the order of `last_used`, so expired sessions are at the front.
#[derive(Default)]
struct Inner {
    /// foldhash, seeded per process, in its quality variant: looked up by every request with
    /// a name the client chose, so the seed is what keeps crafted collisions out.
    entries: HashMap<String, Entry, foldhash::quality::RandomState>,
    recency: BTreeMap<u64, String>,
    next_seq: u64,
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Marks `key` used now; `false` when it is not stored.
    fn touch(&mut self, key: &str, now: Instant) -> bool {
        let seq = self.next_seq();
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let old = std::mem::replace(&mut entry.seq, seq);
        entry.last_used = now;
        let name = self.recency.remove(&old).unwrap_or_else(|| key.to_owned());
        self.recency.insert(seq, name);
        true
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.recency.remove(&entry.seq);
        Some(entry)
    }

    /// The live state of `key`, marked used; an expired one is dropped. The recency list
    /// keeps its key string (no allocation per request).
    fn live(&mut self, key: &str, now: Instant, max_age: Duration) -> Option<&mut SessionState> {
        let seq = self.next_seq();
        let (old, stale) = {
            let entry = self.entries.get_mut(key)?;
            if expired(entry.last_used, now, max_age) {
                (entry.seq, true)
            } else {
                entry.last_used = now;
                (std::mem::replace(&mut entry.seq, seq), false)
            }
        };
        let name = self.recency.remove(&old);
        if stale {
            self.entries.remove(key);
            return None;
        }
        self.recency
            .insert(seq, name.unwrap_or_else(|| key.to_owned()));
        self.entries.get_mut(key).map(|e| &mut e.state)
    }

    /// Stores `state` as `key`'s, marked used, evicting the least recently used beyond `max`.
    fn put(&mut self, key: &str, state: SessionState, now: Instant, max: usize) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.state = state;
            self.touch(key, now);
            return;
        }
        let seq = self.next_seq();
        self.entries.insert(
            key.to_owned(),
            Entry {
                state,
                last_used: now,
                seq,
            },
        );
        self.recency.insert(seq, key.to_owned());
        while self.entries.len() > max {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

fn expired(last_used: Instant, now: Instant, max_age: Duration) -> bool {
    now.saturating_duration_since(last_used) >= max_age
}

impl MemoryStore {
    /// A store without the sweeping task: expired sessions are still never returned, and the
    /// bound holds; only their memory waits for the next access or [`sweep`](Self::sweep).
    pub fn new(config: SessionConfig) -> Self {
        Self::with_clock(config, Arc::new(Instant::now), None)
    }

    /// A store with its sweeping task (when called inside a Tokio runtime); the task ends
    /// when the store is dropped.
    pub fn spawn(config: SessionConfig) -> Arc<Self> {
        Self::spawn_with_clock(config, Arc::new(Instant::now)).0
    }

    fn with_clock(config: SessionConfig, clock: Clock, stop: Option<DropGuard>) -> Self {
        Self {
            config,
            clock,
            inner: Mutex::new(Inner::default()),
            _stop_sweeper: stop,
        }
    }

    fn spawn_with_clock(
        config: SessionConfig,
        clock: Clock,
    ) -> (Arc<Self>, Option<tokio::task::JoinHandle<()>>) {
        let stop = CancellationToken::new();
        let store = Arc::new(Self::with_clock(
            config,
            clock,
            Some(stop.clone().drop_guard()),
        ));
        let task = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(sweep_every(
                Arc::downgrade(&store),
                stop,
                config.cleanup_interval,
            ))
        });
        (store, task)
    }

    /// Session `key`'s state, when it is live (renewing its idle time).
    fn read(&self, key: &str) -> Option<SessionState> {
        let now = (self.clock)();
        self.lock()
            .live(key, now, self.config.max_age)
            .map(|s| s.clone())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent through every method, so a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops every expired session; returns how many.
    pub fn sweep(&self) -> usize {
        let now = (self.clock)();
        let mut inner = self.lock();
        let mut removed = 0;
        while let Some((_, key)) = inner.recency.first_key_value() {
            let stale = inner
                .entries
                .get(key)
                .is_none_or(|e| expired(e.last_used, now, self.config.max_age));
            if !stale {
                break;
            }
            if let Some((_, key)) = inner.recency.pop_first() {
                inner.entries.remove(&key);
                removed += 1;
            }
        }
        removed
    }

    /// Sessions held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn sweep_every(store: Weak<MemoryStore>, stop: CancellationToken, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(store) = store.upgrade() else { return };
        let removed = store.sweep();
        if removed > 0 {
            tracing::debug!(removed, "expired sessions swept");
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &str) -> Result<Option<SessionState>, SessionStoreError> {
        Ok(self.read(key))
    }

    fn load_now(&self, key: &str) -> Option<Result<Option<SessionState>, SessionStoreError>> {
        Some(Ok(self.read(key)))
    }

    async fn save(&self, key: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let now = (self.clock)();
        self.lock()
            .put(key, state.clone(), now, self.config.max_sessions);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), SessionStoreError> {
        self.lock().remove(key);
        Ok(())
    }

    async fn update(
        &self,
        key: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut SessionState) + Send),
    ) -> Result<SessionState, SessionStoreError> {
        let now = (self.clock)();
        let mut inner = self.lock();
        if let Some(state) = inner.live(key, now, self.config.max_age) {
            change(state);
            return Ok(state.clone());
        }
        let mut state = SessionState::default();
        change(&mut state);
        inner.put(key, state.clone(), now, self.config.max_sessions);
        Ok(state)
    }

    fn kind(&self) -> &'static str {
        "memory"
    }

    fn stored_count(&self) -> Option<usize> {
        Some(self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct Manual(Arc<Mutex<Instant>>);

    impl Manual {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(Instant::now())))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
        fn clock(&self) -> Clock {
            let me = self.clone();
            Arc::new(move || *me.0.lock().unwrap())
        }
    }

    const HOUR: Duration = Duration::from_secs(3600);

    fn config(max_sessions: usize) -> SessionConfig {
        SessionConfig {
            max_age: 2 * HOUR,
            cleanup_interval: HOUR,
            max_sessions,
        }
    }

    fn store(max_sessions: usize) -> (MemoryStore, Manual) {
        let clock = Manual::new();
        (
            MemoryStore::with_clock(config(max_sessions), clock.clock(), None),
            clock,
        )
    }

    fn with_model(model: &str) -> SessionState {
        SessionState {
            model: Some(model.into()),
            ..SessionState::default()
        }
    }

    #[tokio::test]
    async fn saves_loads_and_deletes() {
        let (store, _) = store(10);
        assert_eq!(store.load("a").await.unwrap(), None);
        store.save("a", &with_model("m1")).await.unwrap();
        assert_eq!(store.load("a").await.unwrap(), Some(with_model("m1")));
        store.save("a", &with_model("m2")).await.unwrap();
        assert_eq!(store.load("a").await.unwrap(), Some(with_model("m2")));
        assert_eq!(store.len(), 1);
        store.delete("a").await.unwrap();
        store.delete("unknown").await.unwrap();
        assert_eq!(store.load("a").await.unwrap(), None);
        assert!(store.is_empty());
        assert_eq!(store.kind(), "memory");
    }

    #[tokio::test]
    async fn a_session_expires_max_age_after_its_last_use() {
        let (store, clock) = store(10);
        store.save("a", &with_model("m")).await.unwrap();
        clock.advance(2 * HOUR - Duration::from_secs(1));
        assert!(
            store.load("a").await.unwrap().is_some(),
            "used again in time"
        );
        clock.advance(2 * HOUR - Duration::from_secs(1));
        assert!(
            store.load("a").await.unwrap().is_some(),
            "the load renewed it"
        );
        clock.advance(2 * HOUR);
        assert_eq!(store.load("a").await.unwrap(), None, "idle for max_age");
        assert!(
            store.is_empty(),
            "an expired session found on access is dropped"
        );
        // An update of an expired session starts afresh.
        store.save("b", &with_model("m")).await.unwrap();
        clock.advance(2 * HOUR);
        let fresh = store
            .update("b", &mut |s| s.commands_run += 1)
            .await
            .unwrap();
        assert_eq!(fresh.model, None);
        assert_eq!(fresh.commands_run, 1);
    }

    #[tokio::test]
    async fn the_sweep_drops_only_expired_sessions() {
        let (store, clock) = store(10);
        store.save("old", &with_model("m")).await.unwrap();
        store.save("used", &with_model("m")).await.unwrap();
        clock.advance(HOUR);
        store.load("used").await.unwrap();
        store.save("new", &with_model("m")).await.unwrap();
        assert_eq!(store.sweep(), 0);
        clock.advance(HOUR);
        assert_eq!(store.sweep(), 1, "only 'old' was idle for two hours");
        assert_eq!(store.len(), 2);
        assert!(store.load("used").await.unwrap().is_some());
        clock.advance(HOUR + HOUR / 2);
        assert_eq!(store.sweep(), 1, "'new' (the load renewed 'used')");
        clock.advance(2 * HOUR);
        assert_eq!(store.sweep(), 1);
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn the_least_recently_used_session_goes_first_beyond_the_bound() {
        let (store, _) = store(2);
        store.save("a", &with_model("a")).await.unwrap();
        store.save("b", &with_model("b")).await.unwrap();
        store.load("a").await.unwrap();
        store.save("c", &with_model("c")).await.unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.load("b").await.unwrap(), None, "least recently used");
        assert!(store.load("a").await.unwrap().is_some());
        assert!(store.load("c").await.unwrap().is_some());
        // Updating an existing session never evicts; a new one does.
        store
            .update("a", &mut |s| s.commands_run += 1)
            .await
            .unwrap();
        assert_eq!(store.len(), 2);
        store
            .update("d", &mut |s| s.commands_run += 1)
            .await
            .unwrap();
        assert_eq!(store.load("c").await.unwrap(), None);
        assert_eq!(store.load("a").await.unwrap().unwrap().commands_run, 1);
    }

    #[tokio::test]
    async fn update_changes_the_stored_state_in_place() {
        let (store, _) = store(10);
        let first = store
            .update("s", &mut |s| s.oneoff = Some("x:y".into()))
            .await
            .unwrap();
        assert_eq!(first.oneoff.as_deref(), Some("x:y"));
        let second = store
            .update("s", &mut |s| {
                s.oneoff = None;
                s.commands_run += 1;
            })
            .await
            .unwrap();
        assert_eq!(second.oneoff, None);
        assert_eq!(store.load("s").await.unwrap(), Some(second));
    }

    #[tokio::test]
    async fn the_sweeping_task_ends_with_the_store() {
        let clock = Manual::new();
        let (store, task) = MemoryStore::spawn_with_clock(config(10), clock.clock());
        let task = task.unwrap();
        store.save("a", &with_model("m")).await.unwrap();
        assert!(!task.is_finished());
        drop(store);
        // Dropping the store cancels the task at once (no hour-long tick to wait for).
        task.await.unwrap();
    }

    /// Time is paused: the runtime jumps to the next timer when every task waits, so the
    /// hour-long interval passes at once.
    #[tokio::test(start_paused = true)]
    async fn the_sweeping_task_sweeps_every_cleanup_interval() {
        let clock = Manual::new();
        let (store, _task) = MemoryStore::spawn_with_clock(config(10), clock.clock());
        store.save("a", &with_model("m")).await.unwrap();
        clock.advance(2 * HOUR);
        assert_eq!(store.len(), 1, "expired, not swept yet");
        tokio::time::sleep(HOUR + Duration::from_secs(1)).await;
        assert!(store.is_empty(), "the task swept it");
    }

    #[test]
    fn without_a_runtime_there_is_no_task_and_expiry_still_holds() {
        let (store, task) = MemoryStore::spawn_with_clock(config(10), Manual::new().clock());
        assert!(task.is_none());
        assert!(store.is_empty());
    }
}
