//! The SQLite usage ledger (`usage.sqlite3` in the data directory). One dedicated thread owns
//! the writing connection: records arrive through a bounded channel (a full channel drops the
//! record and counts it), are priced from the bundled model registry, counted in Prometheus and
//! written a batch per transaction. The thread polls the channel every [`GATHER`] while records
//! flow (so a request never pays for waking it) and sleeps on it once idle for [`LINGER`]; it
//! also deletes records older than `usage.retention_days`. Queries open their own read-only
//! connection (WAL: readers never wait for the writer) on a blocking thread; the `usage`
//! subcommand uses the same reads on the file directly.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, Row, params_from_iter};
use tokio::sync::oneshot;

use super::query;
use super::series::{SeriesPoint, SeriesQuery, UsageSeries};
use super::settle::Settler;
use super::{GroupTotals, Totals, UsageError, UsageFilter, UsageRecord, UsageStats, UsageStore};
use crate::config::UsageConfig;

/// Records waiting to be written at most; more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 4096;
/// Records per transaction at most.
const MAX_BATCH: usize = 512;
/// How often the thread collects records while they flow.
const GATHER: Duration = Duration::from_millis(50);
/// How long the thread keeps polling after the last record before it sleeps on the channel.
const LINGER: Duration = Duration::from_secs(1);
/// How often old records are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Groups listed per breakdown of `stats` at most (largest cost first).
pub const MAX_GROUPS: usize = 1000;

enum Command {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// Usage records in a SQLite file.
pub struct SqliteUsageStore {
    path: PathBuf,
    sender: Option<SyncSender<Command>>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SqliteUsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteUsageStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteUsageStore {
    /// Opens (creating and migrating if needed) the ledger at `path` and starts its writer.
    /// `models` are the configured model names, the only ones Prometheus labels name (others
    /// are `other`). Blocking: call at startup. The error names the path.
    pub fn open(
        path: &Path,
        config: &UsageConfig,
        models: HashSet<String>,
    ) -> Result<Self, String> {
        let fail =
            |e: rusqlite::Error| format!("cannot open the usage store '{}': {e}", path.display());
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(fail)?;
        super::migrations::migrate_sqlite(&mut conn).map_err(fail)?;
        let mut writer = Writer {
            conn,
            retention: config.retention,
            last_prune: None,
            settler: Settler::new(models),
        };
        writer.prune();
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let worker = std::thread::Builder::new()
            .name("usage-writer".into())
            .spawn(move || writer.run(&receiver))
            .map_err(|e| format!("cannot start the usage writer thread: {e}"))?;
        Ok(Self {
            path: path.to_owned(),
            sender: Some(sender),
            worker: Some(worker),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SqliteUsageStore {
    /// Writes what is queued before the connection closes, so a store reopened on the same
    /// file sees it.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[async_trait::async_trait]
impl UsageStore for SqliteUsageStore {
    fn record(&self, record: UsageRecord) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Command::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => crate::metrics::usage_dropped(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    async fn flush(&self) {
        let Some(sender) = self.sender.clone() else {
            return;
        };
        let (reply, done) = oneshot::channel();
        // A full queue makes the send wait: off the runtime.
        let sent =
            tokio::task::spawn_blocking(move || sender.send(Command::Flush(reply)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = done.await;
        }
    }

    async fn stats(&self, filter: UsageFilter) -> Result<UsageStats, UsageError> {
        let path = self.path.clone();
        blocking(move || read_stats(&path, &filter)).await
    }

    async fn recent(
        &self,
        filter: UsageFilter,
        limit: usize,
    ) -> Result<Vec<UsageRecord>, UsageError> {
        let path = self.path.clone();
        blocking(move || read_recent(&path, &filter, limit)).await
    }

    fn export(&self, filter: UsageFilter) -> BoxStream<'static, Result<UsageRecord, UsageError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let sent = for_each_record(&path, &filter, |record| {
                tx.blocking_send(Ok(record)).is_ok()
            });
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    async fn series(&self, query: SeriesQuery) -> Result<UsageSeries, UsageError> {
        let path = self.path.clone();
        blocking(move || read_series(&path, &query)).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UsageError> + Send + 'static,
) -> Result<T, UsageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UsageError(format!("query task failed: {e}")))?
}

/// The writing thread's state.
struct Writer {
    conn: Connection,
    retention: Option<Duration>,
    last_prune: Option<Instant>,
    settler: Settler,
}

impl Writer {
    fn run(&mut self, receiver: &Receiver<Command>) {
        // Sleeps on the channel when idle; polls it every GATHER while records flow.
        while let Ok(first) = receiver.recv() {
            let mut batch = Vec::new();
            let mut flushes = Vec::new();
            let mut pending = Some(first);
            let mut last_record = Instant::now();
            loop {
                let mut disconnected = false;
                loop {
                    let command = match pending.take() {
                        Some(c) => c,
                        None => match receiver.try_recv() {
                            Ok(c) => c,
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => {
                                disconnected = true;
                                break;
                            }
                        },
                    };
                    match command {
                        Command::Record(r) => {
                            batch.push(*r);
                            last_record = Instant::now();
                            if batch.len() >= MAX_BATCH {
                                self.write(&mut batch);
                            }
                        }
                        Command::Flush(reply) => {
                            self.write(&mut batch);
                            flushes.push(reply);
                        }
                    }
                }
                self.write(&mut batch);
                for reply in flushes.drain(..) {
                    let _ = reply.send(());
                }
                self.prune_when_due();
                if disconnected {
                    return;
                }
                if last_record.elapsed() >= LINGER {
                    break;
                }
                std::thread::sleep(GATHER);
            }
        }
    }

    /// Prices, counts and writes `batch` (emptying it) in one transaction; should that fail,
    /// the records are lost (logged), never retried forever.
    fn write(&mut self, batch: &mut Vec<UsageRecord>) {
        if batch.is_empty() {
            return;
        }
        for r in batch.iter_mut() {
            self.settler.settle(r);
        }
        if let Err(e) = insert_all(&mut self.conn, batch) {
            tracing::warn!(records = batch.len(), "writing usage records failed: {e}");
        }
        batch.clear();
    }

    fn prune_when_due(&mut self) {
        if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            self.prune();
        }
    }

    /// Deletes records older than the retention.
    fn prune(&mut self) {
        self.last_prune = Some(Instant::now());
        let Some(retention) = self.retention else {
            return;
        };
        let cutoff =
            now_millis().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match self
            .conn
            .execute("DELETE FROM usage_records WHERE started_at < ?1", [cutoff])
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "usage records past usage.retention_days deleted"
            ),
            Err(e) => tracing::warn!("deleting old usage records failed: {e}"),
        }
    }
}

/// Now, Unix milliseconds.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The table's columns in [`UsageRecord`] order (both stores).
pub(super) const COLUMNS: &str = "request_id, session_id, client, frontend, backend, model, stream, status, outcome, prompt_tokens, completion_tokens, total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, estimated, cost_usd, latency_ms, ttft_ms, started_at, finished_at";

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn insert_all(conn: &mut Connection, batch: &[UsageRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(&format!(
            "INSERT INTO usage_records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ))?;
        for r in batch {
            insert.execute(rusqlite::params![
                r.request_id,
                r.session_id,
                r.client,
                r.frontend,
                r.backend,
                r.model,
                r.stream,
                r.status,
                r.outcome,
                to_i64(r.prompt_tokens),
                to_i64(r.completion_tokens),
                to_i64(r.total_tokens),
                to_i64(r.cache_read_tokens),
                to_i64(r.cache_write_tokens),
                to_i64(r.reasoning_tokens),
                r.estimated,
                r.cost_usd,
                r.latency_ms,
                r.ttft_ms,
                r.started_at,
                r.finished_at,
            ])?;
        }
    }
    tx.commit()
}

impl super::record::RowRead for Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, i: usize) -> rusqlite::Result<String> {
        self.get(i)
    }
    fn opt_text(&self, i: usize) -> rusqlite::Result<Option<String>> {
        self.get(i)
    }
    fn int(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn small(&self, i: usize) -> rusqlite::Result<i64> {
        self.get(i)
    }
    fn flag(&self, i: usize) -> rusqlite::Result<bool> {
        self.get(i)
    }
    fn float(&self, i: usize) -> rusqlite::Result<f64> {
        self.get(i)
    }
    fn opt_float(&self, i: usize) -> rusqlite::Result<Option<f64>> {
        self.get(i)
    }
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<UsageRecord> {
    UsageRecord::from_row(r)
}

/// A read-only connection to the ledger at `path` (which must exist).
fn open_reader(path: &Path) -> Result<Connection, UsageError> {
    let fail = |e: rusqlite::Error| UsageError(format!("cannot read '{}': {e}", path.display()));
    if !path.exists() {
        return Err(UsageError(format!(
            "no usage database at '{}'",
            path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(fail)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    Ok(conn)
}

/// `WHERE ...` for `filter` and its parameters.
fn where_clause(filter: &UsageFilter) -> (String, Vec<SqlValue>) {
    let (clause, values) = query::where_clause(filter, query::Dialect::Sqlite);
    let params = values
        .into_iter()
        .map(|v| match v {
            query::FilterValue::Text(t) => SqlValue::Text(t),
            query::FilterValue::Int(n) => SqlValue::Integer(n),
        })
        .collect();
    (clause, params)
}

/// Totals and breakdowns of the records `filter` selects in the ledger at `path`.
pub fn read_stats(path: &Path, filter: &UsageFilter) -> Result<UsageStats, UsageError> {
    let conn = open_reader(path)?;
    let fail = |e: rusqlite::Error| UsageError(format!("usage query failed: {e}"));
    let (clause, params) = where_clause(filter);
    let total = conn
        .query_row(
            &query::totals_sql(&clause),
            params_from_iter(params.iter()),
            |r| Totals::from_row_at(r, 0),
        )
        .map_err(fail)?;
    let group = |column: &str| -> rusqlite::Result<Vec<GroupTotals>> {
        let mut stmt = conn.prepare(&query::group_sql(
            query::Dialect::Sqlite,
            column,
            &clause,
            MAX_GROUPS,
        ))?;
        let rows = stmt.query_map(params_from_iter(params.iter()), |r| {
            GroupTotals::from_row(r)
        })?;
        rows.collect()
    };
    Ok(UsageStats {
        total,
        by_backend: group("backend").map_err(fail)?,
        by_model: group("model").map_err(fail)?,
        by_session: group("session_id").map_err(fail)?,
    })
}

/// The records `query` selects summed per bucket and group, in bucket then group order.
pub fn read_series(path: &Path, query: &SeriesQuery) -> Result<UsageSeries, UsageError> {
    let conn = open_reader(path)?;
    let fail = |e: rusqlite::Error| UsageError(format!("usage query failed: {e}"));
    let (clause, params) = where_clause(&query.filter);
    let mut stmt = conn
        .prepare(&query::series_sql(query::Dialect::Sqlite, query, &clause))
        .map_err(fail)?;
    let rows = stmt
        .query_map(params_from_iter(params.iter()), |r| {
            SeriesPoint::from_row(r)
        })
        .map_err(fail)?;
    Ok(UsageSeries {
        points: rows.collect::<rusqlite::Result<_>>().map_err(fail)?,
    })
}

/// The newest `limit` records `filter` selects, newest first.
pub fn read_recent(
    path: &Path,
    filter: &UsageFilter,
    limit: usize,
) -> Result<Vec<UsageRecord>, UsageError> {
    let conn = open_reader(path)?;
    let fail = |e: rusqlite::Error| UsageError(format!("usage query failed: {e}"));
    let (clause, params) = where_clause(filter);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM usage_records {clause} ORDER BY finished_at DESC, started_at DESC, request_id DESC LIMIT {limit}"
        ))
        .map_err(fail)?;
    let rows = stmt
        .query_map(params_from_iter(params.iter()), from_row)
        .map_err(fail)?;
    rows.collect::<rusqlite::Result<_>>().map_err(fail)
}

/// Calls `each` with every record `filter` selects, oldest first, one row at a time, until it
/// returns `false`.
pub fn for_each_record(
    path: &Path,
    filter: &UsageFilter,
    mut each: impl FnMut(UsageRecord) -> bool,
) -> Result<(), UsageError> {
    let conn = open_reader(path)?;
    let fail = |e: rusqlite::Error| UsageError(format!("usage query failed: {e}"));
    let (clause, params) = where_clause(filter);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM usage_records {clause} ORDER BY started_at, finished_at, request_id"
        ))
        .map_err(fail)?;
    let mut rows = stmt.query(params_from_iter(params.iter())).map_err(fail)?;
    while let Some(row) = rows.next().map_err(fail)? {
        if !each(from_row(row).map_err(fail)?) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        id: &str,
        backend: &str,
        model: &str,
        started_at: i64,
        tokens: (u64, u64),
    ) -> UsageRecord {
        UsageRecord {
            request_id: id.into(),
            frontend: "openai_chat".into(),
            backend: Some(backend.into()),
            model: Some(model.into()),
            status: 200,
            outcome: "ok".into(),
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
            total_tokens: tokens.0 + tokens.1,
            started_at,
            finished_at: started_at + 5,
            ..UsageRecord::default()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn records_are_written_queried_and_kept_across_reopening() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("usage.sqlite3");
        let now = now_millis();
        let store = SqliteUsageStore::open(&path, &UsageConfig::default(), HashSet::new()).unwrap();
        store.record(record("a", "openai", "gpt-4o", now - 2000, (10, 5)));
        store.record(record(
            "b",
            "anthropic",
            "claude-sonnet-4-5",
            now - 1000,
            (20, 1),
        ));
        store.record(record("c", "openai", "gpt-4o", now, (1, 1)));
        store.flush().await;
        let stats = store.stats(UsageFilter::default()).await.unwrap();
        assert_eq!(stats.total.requests, 3);
        assert_eq!(stats.total.total_tokens, 38);
        assert!(stats.total.cost_usd > 0.0, "priced from the registry");
        let openai = stats
            .by_backend
            .iter()
            .find(|g| g.key.as_deref() == Some("openai"))
            .unwrap();
        assert_eq!(
            (openai.totals.requests, openai.totals.prompt_tokens),
            (2, 11)
        );
        let only = store
            .stats(UsageFilter {
                model: Some("claude-sonnet-4-5".into()),
                ..UsageFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(only.total.requests, 1);
        let recent = store.recent(UsageFilter::default(), 2).await.unwrap();
        let ids: Vec<_> = recent.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        drop(store);

        let store = SqliteUsageStore::open(&path, &UsageConfig::default(), HashSet::new()).unwrap();
        use futures::StreamExt as _;
        let all: Vec<_> = store.export(UsageFilter::default()).collect().await;
        let ids: Vec<_> = all.into_iter().map(|r| r.unwrap().request_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn records_past_the_retention_are_deleted_when_the_store_opens() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("usage.sqlite3");
        let keep_forever = UsageConfig {
            enabled: true,
            retention: None,
            ..UsageConfig::default()
        };
        let store = SqliteUsageStore::open(&path, &keep_forever, HashSet::new()).unwrap();
        let day = 24 * 3600 * 1000;
        store.record(record("old", "b", "m", now_millis() - 10 * day, (1, 1)));
        store.record(record("new", "b", "m", now_millis(), (1, 1)));
        store.flush().await;
        drop(store);
        let week = UsageConfig {
            enabled: true,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            ..UsageConfig::default()
        };
        let store = SqliteUsageStore::open(&path, &week, HashSet::new()).unwrap();
        let left = store.recent(UsageFilter::default(), 10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].request_id, "new");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn series_sum_records_per_bucket_and_group() {
        use crate::usage::series::{Bucket, SeriesBy};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("usage.sqlite3");
        let store = SqliteUsageStore::open(&path, &UsageConfig::default(), HashSet::new()).unwrap();
        let minute = 60_000;
        let t0 = (now_millis() / minute - 10) * minute;
        store.record(record("a", "openai", "gpt-4o", t0 + 1, (10, 5)));
        store.record(record("b", "openai", "gpt-4o-mini", t0 + 59_999, (1, 1)));
        let mut failed = record("c", "openai", "gpt-4o", t0 + minute, (0, 0));
        failed.outcome = "upstream_error".into();
        failed.status = 502;
        store.record(failed);
        let mut left = record("d", "anthropic", "claude-sonnet-4-5", t0 + minute, (2, 2));
        left.outcome = "client_disconnected".into();
        store.record(left);
        store.record(record("old", "openai", "gpt-4o", t0 - 3 * minute, (1, 1)));
        store.flush().await;
        let query = |by| SeriesQuery {
            filter: UsageFilter {
                since_ms: Some(t0),
                until_ms: Some(t0 + 5 * minute),
                ..UsageFilter::default()
            },
            bucket: Bucket::Minute,
            by,
        };
        let series = store.series(query(SeriesBy::Backend)).await.unwrap();
        let rows: Vec<_> = series
            .points
            .iter()
            .map(|p| {
                (
                    p.t - t0,
                    p.key.as_deref(),
                    p.requests,
                    p.errors,
                    p.total_tokens,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (0, Some("openai"), 2, 0, 17),
                (minute, Some("anthropic"), 1, 0, 4),
                (minute, Some("openai"), 1, 1, 0),
            ]
        );
        assert!(series.points[0].cost_usd > 0.0);
        let by_model = store.series(query(SeriesBy::Model)).await.unwrap();
        let keys: Vec<_> = by_model.points.iter().map(|p| p.key.as_deref()).collect();
        assert_eq!(
            keys,
            [
                Some("gpt-4o"),
                Some("gpt-4o-mini"),
                Some("claude-sonnet-4-5"),
                Some("gpt-4o")
            ]
        );
    }
}
