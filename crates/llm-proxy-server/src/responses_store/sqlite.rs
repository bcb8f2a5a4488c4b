//! The SQLite answer store (`responses.sqlite3` in the data directory): answers survive a
//! restart, bounded by count, bytes and age. One dedicated thread owns the connection and
//! serves reads and writes in order, so no tokio worker ever waits on SQLite: a `put` is queued,
//! a `get` awaits its reply. Queued writes are gathered for a few milliseconds (a handful at
//! most) and written in one transaction (a read or delete, or shutdown, writes them at once), so
//! an answer's request seldom wakes the thread and does not pay for a commit of its own.
//! Expired rows are invisible at once and deleted by that thread.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::ResponseStoreConfig;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{ResponseStore, StoredResponse};

/// Writes queued beyond this are dropped (and logged) rather than letting memory grow.
const MAX_QUEUED_WRITES: usize = 1024;

/// How often the thread deletes expired rows (checked when it handles a write).
const PURGE_EVERY_SECS: u64 = 60;

/// How long queued writes wait for more to share their transaction: at one request at a time
/// the thread's own timer, not a wake-up from a request, writes them, and a commit (with its
/// WAL frames) is shared by every answer of the window. Reads and deletes do not wait (they
/// write what is queued first), so a `previous_response_id` always finds the answer.
const GATHER_WRITES: Duration = Duration::from_millis(25);

/// Writes gathered at most: more are written at once (a burst is written in steps of a few
/// milliseconds of one core), and under load a request wakes the thread once per this many.
const MAX_GATHERED: usize = 128;

/// How long the thread keeps looking for writes every [`GATHER_WRITES`] after its queue
/// empties, before it sleeps until a command wakes it: under a steady flow of answers a write
/// wakes it only when [`MAX_GATHERED`] are waiting (a wake-up is a cross-core interrupt the
/// answering request would pay).
const LINGER: Duration = Duration::from_secs(1);

/// Unix seconds; replaceable in tests.
type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

enum Command {
    Get(String, oneshot::Sender<Option<StoredResponse>>),
    /// Id, answer, creation time (taken when queued).
    Put(String, StoredResponse, u64),
    Delete(String, oneshot::Sender<bool>),
}

/// Commands for the thread, in order. A write wakes it only when it sleeps without a timer
/// (idle for [`LINGER`]) or when [`MAX_GATHERED`] writes are waiting; reads and deletes always
/// do.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    commands: VecDeque<Command>,
    /// The thread waits for any command (rather than gathering writes).
    idle: bool,
    /// No more commands come: the thread writes what is queued and stops.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> Option<MutexGuard<'_, QueueState>> {
        self.state.lock().ok()
    }

    /// Queues `command`; whether it was taken (the thread is running).
    fn send(&self, command: Command) -> bool {
        let Some(mut state) = self.lock() else {
            return false;
        };
        if state.closed {
            return false;
        }
        let wake = state.idle
            || !matches!(command, Command::Put(..))
            || state.commands.len() + 1 == MAX_GATHERED;
        state.commands.push_back(command);
        if wake {
            state.idle = false;
            drop(state);
            self.ready.notify_one();
        }
        true
    }

    fn close(&self) {
        if let Some(mut state) = self.lock() {
            state.closed = true;
        }
        self.ready.notify_one();
    }

    /// The next commands to run, in order: at once when a read or delete is queued, else the
    /// writes gathered for [`GATHER_WRITES`]. `None` once closed and drained.
    fn next_batch(&self) -> Option<VecDeque<Command>> {
        let mut state = self.lock()?;
        let mut gathering_since: Option<Instant> = None;
        let mut empty_since: Option<Instant> = None;
        loop {
            let urgent = state.closed
                || state.commands.len() >= MAX_GATHERED
                || state
                    .commands
                    .iter()
                    .any(|c| !matches!(c, Command::Put(..)));
            if urgent
                || (!state.commands.is_empty()
                    && gathering_since.is_some_and(|t| t.elapsed() >= GATHER_WRITES))
            {
                if state.commands.is_empty() {
                    return None;
                }
                return Some(std::mem::take(&mut state.commands));
            }
            if state.commands.is_empty() {
                let since = *empty_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LINGER {
                    state.idle = true;
                    state = self.ready.wait(state).ok()?;
                    empty_since = None;
                } else {
                    // Awake anyway within GATHER_WRITES, so a write need not wake it: what
                    // comes in meanwhile is written when this wait ends.
                    state.idle = false;
                    gathering_since = Some(Instant::now());
                    state = self.ready.wait_timeout(state, GATHER_WRITES).ok()?.0;
                }
                continue;
            }
            let since = *gathering_since.get_or_insert_with(Instant::now);
            let left = GATHER_WRITES.saturating_sub(since.elapsed());
            state = self.ready.wait_timeout(state, left).ok()?.0;
        }
    }
}

/// Answers kept in a SQLite file.
pub struct SqliteResponseStore {
    queue: Arc<Queue>,
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
        let queue = Arc::new(Queue::default());
        let queued_writes = Arc::new(AtomicUsize::new(0));
        let (commands, queued) = (queue.clone(), queued_writes.clone());
        let handle = std::thread::Builder::new()
            .name("responses-store".into())
            .spawn(move || worker.run(&commands, &queued))
            .map_err(|e| format!("cannot start the Responses store thread: {e}"))?;
        Ok(Self {
            queue,
            clock,
            queued_writes,
            worker: Mutex::new(Some(handle)),
        })
    }

    fn send(&self, command: Command) -> bool {
        self.queue.send(command)
    }
}

impl Drop for SqliteResponseStore {
    /// Finishes the queued writes before the connection closes, so a store reopened on the
    /// same file sees them.
    fn drop(&mut self) {
        self.queue.close();
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
    fn run(&mut self, queue: &Queue, queued: &AtomicUsize) {
        while let Some(batch) = queue.next_batch() {
            let mut puts = Vec::new();
            for command in batch {
                match command {
                    Command::Put(id, response, created_at) => puts.push((id, response, created_at)),
                    Command::Get(id, reply) => {
                        self.flush(&mut puts, queued);
                        let found = self.get(&id).unwrap_or_else(|e| {
                            tracing::warn!(%id, "reading the Responses store failed: {e}");
                            None
                        });
                        let _ = reply.send(found);
                    }
                    Command::Delete(id, reply) => {
                        self.flush(&mut puts, queued);
                        let deleted = self.delete(&id).unwrap_or_else(|e| {
                            tracing::warn!(%id, "deleting from the Responses store failed: {e}");
                            false
                        });
                        let _ = reply.send(deleted);
                    }
                }
            }
            self.flush(&mut puts, queued);
        }
    }

    /// Writes the gathered `puts` (emptying it).
    fn flush(&mut self, puts: &mut Vec<(String, StoredResponse, u64)>, queued: &AtomicUsize) {
        if puts.is_empty() {
            return;
        }
        queued.fetch_sub(puts.len(), Ordering::AcqRel);
        self.put_all(puts);
        puts.clear();
    }

    /// Writes `puts` in one transaction; should that fail, each in its own, so one bad answer
    /// does not lose the others.
    fn put_all(&mut self, puts: &[(String, StoredResponse, u64)]) {
        if puts.len() > 1
            && self
                .in_transaction(|worker| {
                    puts.iter().try_for_each(|(id, response, created_at)| {
                        worker.write(id, response, *created_at)
                    })
                })
                .is_ok()
        {
            return;
        }
        for (id, response, created_at) in puts {
            if let Err(e) = self.in_transaction(|worker| worker.write(id, response, *created_at)) {
                tracing::warn!(%id, "writing the Responses store failed: {e}");
            }
        }
    }

    /// Runs `body` in one transaction (one WAL commit); the counters go back with a rollback.
    fn in_transaction(
        &mut self,
        body: impl FnOnce(&mut Self) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        let now = (self.clock)();
        if now.saturating_sub(self.last_purge) >= PURGE_EVERY_SECS {
            self.purge()?;
        }
        let counters = (self.count, self.bytes);
        self.conn.prepare_cached("BEGIN")?.execute([])?;
        let finished = match body(self) {
            Ok(()) => self.conn.prepare_cached("COMMIT")?.execute([]).map(drop),
            Err(e) => Err(e),
        };
        if finished.is_err() {
            (self.count, self.bytes) = counters;
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        finished
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
            /// How many output items a stored response object has.
            #[derive(serde::Deserialize)]
            struct Output {
                #[serde(default)]
                output: Vec<serde::de::IgnoredAny>,
            }
            let mut input: Vec<Value> = serde_json::from_str(&items).ok()?;
            let outputs = serde_json::from_str::<Output>(&object).ok()?.output.len();
            // The `items` column holds the whole conversation: the input, then the output.
            let output = input.split_off(input.len().saturating_sub(outputs));
            Some(StoredResponse::with_output(
                Arc::new(input),
                Arc::new(output),
                Bytes::from(object),
            ))
        }))
    }

    /// Inside a transaction: one answer written over any row for `id`, then the bounds applied.
    fn write(
        &mut self,
        id: &str,
        response: &StoredResponse,
        created_at: u64,
    ) -> rusqlite::Result<()> {
        let items = conversation(response);
        let object = std::str::from_utf8(response.object()).unwrap_or_default();
        let size = (items.len() + object.len()) as u64;
        if size > self.limits.max_bytes {
            tracing::warn!(%id, size, "answer larger than responses_api.store.max_bytes; not stored");
            return Ok(());
        }
        self.replace(id, created_at, size, &items, object)
    }

    /// The row for `id` replaced, then the bounds applied.
    fn replace(
        &mut self,
        id: &str,
        created_at: u64,
        size: u64,
        items: &str,
        object: &str,
    ) -> rusqlite::Result<()> {
        // Ids are new but for a client replaying one: insert first, and only when a row for
        // `id` is there already delete it (for its size) and insert again.
        let row = params![id, to_i64(created_at), to_i64(size), items, object];
        if !self.insert(row)? {
            self.delete(id)?;
            self.insert(row)?;
        }
        self.count += 1;
        self.bytes += size;
        self.evict()
    }

    /// Inserts a row (id, created_at, size, items, object); false if `id` has one already.
    fn insert(&self, row: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<bool> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO responses (id, created_at, size, items, object) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(row)?;
        Ok(inserted > 0)
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

    /// Forgets the oldest answers beyond the count and byte bounds. Once over a bound it
    /// makes room for 1/64 more (several rows per statement), so a full store at steady state
    /// pays one eviction every few dozen answers rather than one per answer.
    fn evict(&mut self) -> rusqlite::Result<()> {
        let max_count = self.limits.max_responses as u64;
        let max_bytes = self.limits.max_bytes;
        if self.count <= max_count && self.bytes <= max_bytes {
            return Ok(());
        }
        let target_count = max_count - max_count / 64;
        let target_bytes = max_bytes - max_bytes / 64;
        while self.count > target_count || self.bytes > target_bytes {
            let rows = self.count.saturating_sub(target_count).clamp(1, 1024);
            let mut statement = self.conn.prepare_cached(
                "DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses ORDER BY created_at, rowid LIMIT ?1) RETURNING size",
            )?;
            let sizes = statement
                .query_map(params![to_i64(rows)], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            drop(statement);
            if sizes.is_empty() {
                self.count = 0;
                self.bytes = 0;
                break;
            }
            for size in sizes {
                self.count = self.count.saturating_sub(1);
                self.bytes = self.bytes.saturating_sub(to_u64(size));
            }
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

/// A stored answer's whole conversation as one JSON array (the `items` column): the input
/// items, then the object's `output` items copied as they are written there (not parsed).
fn conversation(response: &StoredResponse) -> String {
    /// The `output` of a stored response object, as written.
    #[derive(serde::Deserialize)]
    struct Output<'a> {
        #[serde(borrow, default)]
        output: Option<&'a serde_json::value::RawValue>,
    }
    let mut items = String::from_utf8(response.input_json().into_owned())
        .ok()
        .filter(|items| items.trim_end().ends_with(']'))
        .unwrap_or_else(|| "[]".into());
    while items.ends_with(char::is_whitespace) {
        items.pop();
    }
    let output = std::str::from_utf8(response.object())
        .ok()
        .and_then(|object| serde_json::from_str::<Output<'_>>(object).ok())
        .and_then(|o| o.output)
        .map(|raw| raw.get().trim())
        .and_then(|array| array.strip_prefix('[')?.strip_suffix(']'))
        .map(str::trim)
        .filter(|inside| !inside.is_empty());
    if let Some(inside) = output {
        items.pop();
        if !items.trim_end().ends_with('[') {
            items.push(',');
        }
        items.push_str(inside);
        items.push(']');
    }
    items
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
        let output = json!({"id": format!("msg_{n}"), "type": "message", "content": "hi"});
        StoredResponse::new(
            Arc::new(vec![
                json!({"role": "user", "content": format!("turn {n}")}),
            ]),
            Bytes::from(json!({"id": format!("resp_{n}"), "n": n, "output": [output]}).to_string()),
        )
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
        let one = store.get("resp_1").await;
        assert_eq!(one, Some(stored(1)));
        assert_eq!(
            one.unwrap().items().cloned().collect::<Vec<_>>(),
            [
                json!({"role": "user", "content": "turn 1"}),
                json!({"id": "msg_1", "type": "message", "content": "hi"}),
            ],
            "the input, then the output read from the object"
        );
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

    /// Writes gathered into one transaction: a read right after sees them all, and so does a
    /// store reopened after a drop that came before the gathering time was up.
    #[tokio::test]
    async fn gathered_writes_are_read_at_once_and_kept_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.sqlite3");
        let store = SqliteResponseStore::open(&path, ResponseStoreConfig::default()).unwrap();
        for n in 0..20 {
            store.put(format!("resp_{n}"), stored(n));
        }
        assert_eq!(store.get("resp_0").await, Some(stored(0)));
        for n in 20..40 {
            store.put(format!("resp_{n}"), stored(n));
        }
        drop(store);
        let store = SqliteResponseStore::open(&path, ResponseStoreConfig::default()).unwrap();
        for n in 0..40 {
            assert_eq!(
                store.get(&format!("resp_{n}")).await,
                Some(stored(n)),
                "resp_{n}"
            );
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
            (conversation(&s).len() + s.object().len()) as u64
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

    /// An answer stored again under its id replaces the row, and counts once for the bounds.
    #[tokio::test]
    async fn an_answer_put_again_replaces_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(1_000));
        let store = SqliteResponseStore::open_with_clock(
            &dir.path().join("r.sqlite3"),
            limits(2, 1 << 20, 3600),
            clock_at(&now),
        )
        .unwrap();
        store.put("resp_a".into(), stored(1));
        assert_eq!(store.get("resp_a").await, Some(stored(1)));
        store.put("resp_a".into(), stored(2));
        store.put("resp_b".into(), stored(3));
        assert_eq!(
            store.get("resp_a").await,
            Some(stored(2)),
            "replaced, not evicted"
        );
        assert_eq!(store.get("resp_b").await, Some(stored(3)));
        drop(store);
        let conn = Connection::open(dir.path().join("r.sqlite3")).unwrap();
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM responses", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    /// The `items` column, built from the object's bytes, is the input and then the output.
    #[test]
    fn the_items_column_is_the_input_then_the_output() {
        let parsed =
            |s: &StoredResponse| -> Vec<Value> { serde_json::from_str(&conversation(s)).unwrap() };
        let both = stored(3);
        assert_eq!(parsed(&both), both.items().cloned().collect::<Vec<_>>());
        assert_eq!(parsed(&both).len(), 2);
        let no_input = StoredResponse::new(Arc::new(Vec::new()), both.object().clone());
        assert_eq!(parsed(&no_input), no_input.output());
        let no_output = StoredResponse::new(
            Arc::new(both.input().to_vec()),
            Bytes::from_static(br#"{"id": "resp_x", "output": [ ]}"#),
        );
        assert_eq!(parsed(&no_output), no_output.input());
        let nothing = StoredResponse::new(Arc::new(Vec::new()), Bytes::from_static(b"{}"));
        assert_eq!(conversation(&nothing), "[]");
    }

    #[test]
    fn an_unopenable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("r.sqlite3");
        let err = SqliteResponseStore::open(&path, ResponseStoreConfig::default()).unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
