//! The SQLite answer store (`responses.sqlite3` in the data directory): answers survive a
//! restart, bounded by count, bytes and age. One dedicated thread owns the connection and
//! serves reads and writes in order, so no tokio worker ever waits on SQLite: a `put` is queued,
//! a `get` awaits its reply. Expired rows are invisible at once and deleted by that thread.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ResponseStoreConfig;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ResponseStore, StoredResponse};

/// Writes queued beyond this are dropped (and logged) rather than letting memory grow.
const MAX_QUEUED_WRITES: usize = 1024;

/// How often the thread deletes expired rows (checked when it handles a write).
const PURGE_EVERY_SECS: u64 = 60;

/// Unix seconds; replaceable in tests.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

enum Command {
    Get(String, oneshot::Sender<Option<StoredResponse>>),
    /// Id, answer, creation time (taken when queued).
    Put(String, StoredResponse, u64),
    Delete(String, oneshot::Sender<bool>),
}

/// Answers kept in a SQLite file.
pub struct SqliteResponseStore {
    tx: Option<Sender<Command>>,
    clock: Clock,
    queued_writes: Arc<AtomicUsize>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteResponseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteResponseStore")
            .finish_non_exhaustive()
    }
}

impl SqliteResponseStore {
    /// Opens (creating if needed) the store at `path`. Blocking: call at startup. The error
    /// names the path.
    pub fn open(path: &Path, limits: ResponseStoreConfig) -> Result<Self, String> {
        Self::open_with_clock(path, limits, Arc::new(llm_proxy_api::ids::unix_now))
    }

    fn open_with_clock(
        path: &Path,
        limits: ResponseStoreConfig,
        clock: Clock,
    ) -> Result<Self, String> {
        let fail = |e: rusqlite::Error| {
            format!("cannot open the Responses store '{}': {e}", path.display())
        };
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS responses (
                 id TEXT PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 size INTEGER NOT NULL,
                 items TEXT NOT NULL,
                 object TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_at);",
        )
        .map_err(fail)?;
        let mut worker = Worker {
            conn,
            limits,
            clock: clock.clone(),
            count: 0,
            bytes: 0,
            last_purge: 0,
        };
        worker.purge().map_err(fail)?;
        let (tx, rx) = channel();
        let queued_writes = Arc::new(AtomicUsize::new(0));
        let queued = queued_writes.clone();
        let handle = std::thread::Builder::new()
            .name("responses-store".into())
            .spawn(move || worker.run(rx, &queued))
            .map_err(|e| format!("cannot start the Responses store thread: {e}"))?;
        Ok(Self {
            tx: Some(tx),
            clock,
            queued_writes,
            worker: Mutex::new(Some(handle)),
        })
    }

    fn send(&self, command: Command) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(command).is_ok())
    }
}

impl Drop for SqliteResponseStore {
    /// Finishes the queued writes before the connection closes, so a store reopened on the
    /// same file sees them.
    fn drop(&mut self) {
        self.tx = None;
        if let Ok(mut worker) = self.worker.lock()
            && let Some(handle) = worker.take()
        {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl ResponseStore for SqliteResponseStore {
    async fn get(&self, id: &str) -> Option<StoredResponse> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Get(id.to_owned(), reply)) {
            return None;
        }
        answer.await.ok().flatten()
    }

    fn put(&self, id: String, response: StoredResponse) {
        if self.queued_writes.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_WRITES {
            self.queued_writes.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("llm_proxy_responses_store_dropped_total").increment(1);
            tracing::warn!(%id, "Responses store is behind; answer not stored");
            return;
        }
        if !self.send(Command::Put(id, response, (self.clock)())) {
            self.queued_writes.fetch_sub(1, Ordering::AcqRel);
        }
    }

    async fn delete(&self, id: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Delete(id.to_owned(), reply)) {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// The thread owning the connection.
struct Worker {
    conn: Connection,
    limits: ResponseStoreConfig,
    clock: Clock,
    /// Rows and bytes stored (kept in step with the table).
    count: u64,
    bytes: u64,
    last_purge: u64,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Command>, queued: &AtomicUsize) {
        while let Ok(command) = rx.recv() {
            match command {
                Command::Get(id, reply) => {
                    let found = self.get(&id).unwrap_or_else(|e| {
                        tracing::warn!(%id, "reading the Responses store failed: {e}");
                        None
                    });
                    let _ = reply.send(found);
                }
                Command::Put(id, response, created_at) => {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    if let Err(e) = self.put(&id, &response, created_at) {
                        tracing::warn!(%id, "writing the Responses store failed: {e}");
                    }
                }
                Command::Delete(id, reply) => {
                    let deleted = self.delete(&id).unwrap_or_else(|e| {
                        tracing::warn!(%id, "deleting from the Responses store failed: {e}");
                        false
                    });
                    let _ = reply.send(deleted);
                }
            }
        }
    }

    /// Oldest creation time still alive.
    fn cutoff(&self) -> i64 {
        let now = (self.clock)();
        to_i64(now.saturating_sub(self.limits.ttl.as_secs()))
    }

    fn get(&self, id: &str) -> rusqlite::Result<Option<StoredResponse>> {
        let row: Option<(String, String)> = self
            .conn
            .prepare_cached(
                "SELECT items, object FROM responses WHERE id = ?1 AND created_at >= ?2",
            )?
            .query_row(params![id, self.cutoff()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.and_then(|(items, object)| {
            let items: Vec<Value> = serde_json::from_str(&items).ok()?;
            let object: Value = serde_json::from_str(&object).ok()?;
            Some(StoredResponse {
                items: Arc::new(items),
                object: Arc::new(object),
            })
        }))
    }

    fn put(
        &mut self,
        id: &str,
        response: &StoredResponse,
        created_at: u64,
    ) -> rusqlite::Result<()> {
        let now = (self.clock)();
        if now.saturating_sub(self.last_purge) >= PURGE_EVERY_SECS {
            self.purge()?;
        }
        let items = serde_json::to_string(response.items.as_ref()).unwrap_or_default();
        let object = serde_json::to_string(response.object.as_ref()).unwrap_or_default();
        let size = (items.len() + object.len()) as u64;
        if size > self.limits.max_bytes {
            tracing::warn!(%id, size, "answer larger than responses_api.store.max_bytes; not stored");
            return Ok(());
        }
        // One transaction (one WAL commit) for the replace and the evictions it causes; the
        // counters go back with a rollback.
        let counters = (self.count, self.bytes);
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let written = self.replace(id, created_at, size, &items, &object);
        let finished = match written {
            Ok(()) => self.conn.prepare_cached("COMMIT")?.execute([]).map(drop),
            Err(e) => Err(e),
        };
        if finished.is_err() {
            (self.count, self.bytes) = counters;
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        finished
    }

    /// Inside [`Worker::put`]'s transaction: the row for `id` replaced, then the bounds applied.
    fn replace(
        &mut self,
        id: &str,
        created_at: u64,
        size: u64,
        items: &str,
        object: &str,
    ) -> rusqlite::Result<()> {
        self.delete(id)?;
        self.conn
            .prepare_cached(
                "INSERT INTO responses (id, created_at, size, items, object) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, to_i64(created_at), to_i64(size), items, object])?;
        self.count += 1;
        self.bytes += size;
        self.evict()
    }

    fn delete(&mut self, id: &str) -> rusqlite::Result<bool> {
        let size: Option<i64> = self
            .conn
            .prepare_cached("DELETE FROM responses WHERE id = ?1 RETURNING size")?
            .query_row(params![id], |r| r.get(0))
            .optional()?;
        if let Some(size) = size {
            self.count = self.count.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(to_u64(size));
        }
        Ok(size.is_some())
    }

    /// Forgets the oldest answers beyond the count and byte bounds.
    fn evict(&mut self) -> rusqlite::Result<()> {
        while self.count > self.limits.max_responses as u64 || self.bytes > self.limits.max_bytes {
            let size: Option<i64> = self
                .conn
                .prepare_cached(
                    "DELETE FROM responses WHERE rowid = (SELECT rowid FROM responses ORDER BY created_at, rowid LIMIT 1) RETURNING size",
                )?
                .query_row([], |r| r.get(0))
                .optional()?;
            let Some(size) = size else {
                self.count = 0;
                self.bytes = 0;
                break;
            };
            self.count = self.count.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(to_u64(size));
        }
        Ok(())
    }

    /// Deletes expired answers, recounts, and applies the bounds (which may have shrunk
    /// since the file was written).
    fn purge(&mut self) -> rusqlite::Result<()> {
        self.last_purge = (self.clock)();
        self.conn.execute(
            "DELETE FROM responses WHERE created_at < ?1",
            params![self.cutoff()],
        )?;
        let (count, bytes): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM responses",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        self.count = to_u64(count);
        self.bytes = to_u64(bytes);
        self.evict()
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use serde_json::json;

    fn stored(n: u64) -> StoredResponse {
        StoredResponse {
            items: Arc::new(vec![
                json!({"role": "user", "content": format!("turn {n}")}),
            ]),
            object: Arc::new(json!({"id": format!("resp_{n}"), "n": n})),
        }
    }

    fn limits(max_responses: usize, max_bytes: u64, ttl_secs: u64) -> ResponseStoreConfig {
        ResponseStoreConfig {
            max_responses,
            max_bytes,
            ttl: Duration::from_secs(ttl_secs),
        }
    }

    fn clock_at(now: &Arc<AtomicU64>) -> Clock {
        let now = now.clone();
        Arc::new(move || now.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn answers_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("responses.sqlite3");
        let store = SqliteResponseStore::open(&path, ResponseStoreConfig::default()).unwrap();
        store.put("resp_1".into(), stored(1));
        store.put("resp_2".into(), stored(2));
        assert!(store.delete("resp_2").await);
        drop(store);
        let store = SqliteResponseStore::open(&path, ResponseStoreConfig::default()).unwrap();
        assert_eq!(store.get("resp_1").await, Some(stored(1)));
        assert_eq!(store.get("resp_2").await, None);
        assert_eq!(store.get("resp_unknown").await, None);
    }

    #[tokio::test]
    async fn a_read_after_a_write_sees_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteResponseStore::open(
            &dir.path().join("r.sqlite3"),
            ResponseStoreConfig::default(),
        )
        .unwrap();
        for n in 0..50 {
            store.put(format!("resp_{n}"), stored(n));
            assert_eq!(store.get(&format!("resp_{n}")).await, Some(stored(n)));
        }
    }

    #[tokio::test]
    async fn expired_answers_are_gone_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        let now = Arc::new(AtomicU64::new(1_000_000));
        let store =
            SqliteResponseStore::open_with_clock(&path, limits(100, 1 << 20, 60), clock_at(&now))
                .unwrap();
        store.put("old".into(), stored(1));
        now.fetch_add(30, Ordering::SeqCst);
        store.put("young".into(), stored(2));
        now.fetch_add(31, Ordering::SeqCst);
        assert_eq!(store.get("old").await, None, "61 s old with a 60 s TTL");
        assert_eq!(store.get("young").await, Some(stored(2)));
        now.fetch_add(PURGE_EVERY_SECS, Ordering::SeqCst);
        store.put("trigger".into(), stored(3));
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM responses ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["trigger"], "expired rows are deleted from the file");
    }

    #[tokio::test]
    async fn the_oldest_are_evicted_beyond_the_count_and_byte_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(1_000));
        let store = SqliteResponseStore::open_with_clock(
            &dir.path().join("r.sqlite3"),
            limits(3, 1 << 20, 3600),
            clock_at(&now),
        )
        .unwrap();
        for n in 0..5 {
            store.put(format!("resp_{n}"), stored(n));
        }
        assert_eq!(store.get("resp_0").await, None);
        assert_eq!(store.get("resp_1").await, None);
        for n in 2..5 {
            assert_eq!(store.get(&format!("resp_{n}")).await, Some(stored(n)));
        }
        drop(store);

        let one = {
            let s = stored(0);
            (serde_json::to_string(s.items.as_ref()).unwrap().len()
                + serde_json::to_string(s.object.as_ref()).unwrap().len()) as u64
        };
        let store = SqliteResponseStore::open_with_clock(
            &dir.path().join("b.sqlite3"),
            limits(100, one * 2 + 1, 3600),
            clock_at(&now),
        )
        .unwrap();
        for n in 0..4 {
            store.put(format!("resp_{n}"), stored(n));
        }
        assert_eq!(store.get("resp_1").await, None, "over the byte bound");
        assert_eq!(store.get("resp_2").await, Some(stored(2)));
        assert_eq!(store.get("resp_3").await, Some(stored(3)));
    }

    #[test]
    fn an_unopenable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("r.sqlite3");
        let err = SqliteResponseStore::open(&path, ResponseStoreConfig::default()).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
