//! The session store contract: where [`SessionState`] lives between requests, by store key
//! (see [`super::id::SessionId::key`]). The in-process store is [`super::memory::MemoryStore`];
//! a shared store (Redis) implements the same trait.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::state::SessionState;

/// How long sessions live and how many are kept (`session.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused for this long is forgotten (`session.max_age`; a shared store's TTL,
    /// renewed on every load and save).
    pub max_age: Duration,
    /// How often the in-process store sweeps expired sessions (`session.cleanup_interval`).
    pub cleanup_interval: Duration,
    /// Most sessions the in-process store keeps; the least recently used go first
    /// (`session.max_sessions`).
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(86_400),
            cleanup_interval: Duration::from_secs(3_600),
            max_sessions: 10_000,
        }
    }
}

/// Why a store could not answer. A request may go on without its session state (as
/// configured); the caller decides and logs the [`label`](Self::label).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionStoreError {
    /// The store could not be reached or refused the operation (a shared store down).
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The stored state could not be read back (written by an incompatible version).
    #[error("stored session state is unreadable: {0}")]
    Corrupt(String),
}

impl SessionStoreError {
    /// A low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Corrupt(_) => "corrupt",
        }
    }
}

/// Where session state is kept. Every access renews the session's idle time.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The state of session `key`, or `None` when it is unknown or expired.
    async fn load(&self, key: &str) -> Result<Option<SessionState>, SessionStoreError>;

    /// [`load`](Self::load) answered at once, by a store that never waits (the in-process
    /// one), so the session stage needs no boxed future; `None` (the default): use `load`.
    fn load_now(&self, _key: &str) -> Option<Result<Option<SessionState>, SessionStoreError>> {
        None
    }

    /// Stores `state` as session `key`'s (replacing what was there).
    async fn save(&self, key: &str, state: &SessionState) -> Result<(), SessionStoreError>;

    /// Forgets session `key` (nothing happens when it is unknown).
    async fn delete(&self, key: &str) -> Result<(), SessionStoreError>;

    /// Changes session `key`'s state in one step (starting from the default state when it is
    /// unknown) and returns the new state. Two requests of one session may run at once, so a
    /// store that can should make this atomic; `change` may then run more than once (a shared
    /// store retrying an optimistic transaction). The default loads, changes and saves.
    async fn update(
        &self,
        key: &str,
        change: &mut (dyn for<'s> FnMut(&'s mut SessionState) + Send),
    ) -> Result<SessionState, SessionStoreError> {
        let mut state = self.load(key).await?.unwrap_or_default();
        change(&mut state);
        self.save(key, &state).await?;
        Ok(state)
    }

    /// A short name of the implementation (`memory`, `redis`) for logs and `check-config`.
    fn kind(&self) -> &'static str;

    /// How many sessions this store holds, when it can tell cheaply (the dashboard shows it);
    /// `None` by default (a shared store would have to scan).
    fn stored_count(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A store with only the required methods, to exercise the default `update`.
    #[derive(Debug, Default)]
    struct Plain(Mutex<HashMap<String, SessionState>>);

    #[async_trait]
    impl SessionStore for Plain {
        async fn load(&self, key: &str) -> Result<Option<SessionState>, SessionStoreError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        async fn save(&self, key: &str, state: &SessionState) -> Result<(), SessionStoreError> {
            self.0.lock().unwrap().insert(key.to_owned(), state.clone());
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), SessionStoreError> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "plain"
        }
    }

    #[tokio::test]
    async fn the_default_update_starts_from_the_default_state_and_saves() {
        let store = Plain::default();
        let state = store
            .update("s", &mut |s| s.commands_run += 1)
            .await
            .unwrap();
        assert_eq!(state.commands_run, 1);
        let state = store
            .update("s", &mut |s| s.commands_run += 1)
            .await
            .unwrap();
        assert_eq!(state.commands_run, 2);
        assert_eq!(store.load("s").await.unwrap().unwrap().commands_run, 2);
        store.delete("s").await.unwrap();
        assert_eq!(store.load("s").await.unwrap(), None);
    }

    #[test]
    fn errors_have_stable_labels() {
        assert_eq!(
            SessionStoreError::Unavailable("down".into()).label(),
            "unavailable"
        );
        assert_eq!(SessionStoreError::Corrupt("x".into()).label(), "corrupt");
    }
}
