//! The PostgreSQL usage ledger (`database_url`), one ledger for every replica. One shared
//! connection, made and remade by a background task: the proxy starts, and serves, while
//! PostgreSQL is unreachable. Records arrive through a bounded queue (a full queue drops the
//! record and counts it) and a writer task prices, counts and inserts them a batch per
//! statement; while PostgreSQL is unreachable each batch is dropped and counted, with one
//! warning per [`COMPLAIN_EVERY`]. Each connection first applies the schema's migrations under
//! an advisory lock ([`super::migrations::migrate_postgres`]). Queries answer exactly as the
//! SQLite store does (same sums, same orders; text compared bytewise); an export reads over a
//! connection of its own, row by row as the response is sent, so a slow download never holds
//! up the writer. TLS (`sslmode=require`, or `prefer` with a server offering it) is rustls with
//! the Mozilla roots: the server's certificate must verify.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use llm_proxy_api::scrub::Scrubber;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::query;
use super::series::{SeriesPoint, SeriesQuery, UsageSeries};
use super::settle::Settler;
use super::sqlite::{COLUMNS, MAX_GROUPS, QUEUE_CAPACITY, now_millis, to_i64};
use super::{GroupTotals, Totals, UsageError, UsageFilter, UsageRecord, UsageStats, UsageStore};
use crate::config::UsageConfig;

/// Records per statement at most (21 parameters each, well under PostgreSQL's 65535).
const MAX_BATCH: usize = 512;
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a batch insert may take before the connection is taken for lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// First wait between connection attempts; doubled up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest wait between connection attempts.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// At most one warning per this interval while PostgreSQL stays unreachable.
pub const COMPLAIN_EVERY: Duration = Duration::from_secs(30);
/// How often old records are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

enum Command {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// Usage records in PostgreSQL.
pub struct PostgresUsageStore {
    link: Arc<Link>,
    sender: mpsc::Sender<Command>,
    _stop: DropGuard,
}

impl std::fmt::Debug for PostgresUsageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUsageStore")
            .field("connected", &self.link.current().is_some())
            .finish_non_exhaustive()
    }
}

impl PostgresUsageStore {
    /// A store on `url` (no I/O yet: the connection is made in the background). Needs a Tokio
    /// runtime. `models` are the configured model names (Prometheus labels); `scrubber` masks
    /// the URL's password in anything logged. The error (an unreadable URL) never quotes it.
    pub fn start(
        url: &str,
        config: &UsageConfig,
        models: std::collections::HashSet<String>,
        scrubber: Scrubber,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "database_url: PostgreSQL needs a Tokio runtime".to_owned())?;
        let link = Arc::new(Link::new(url, scrubber)?);
        let stop = CancellationToken::new();
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        runtime.spawn(keep_connected(link.clone(), stop.clone()));
        let writer = Writer {
            link: link.clone(),
            settler: Settler::new(models),
            retention: config.retention,
            last_prune: None,
        };
        runtime.spawn(writer.run(receiver));
        Ok(Self {
            link,
            sender,
            _stop: stop.drop_guard(),
        })
    }

    /// Whether the store holds a live connection now.
    pub fn is_connected(&self) -> bool {
        self.link.current().is_some()
    }

    /// Connections made so far (reconnections included).
    pub fn connections(&self) -> u64 {
        *self.link.connections.borrow()
    }
}

#[async_trait::async_trait]
impl UsageStore for PostgresUsageStore {
    fn record(&self, record: UsageRecord) {
        match self.sender.try_send(Command::Record(Box::new(record))) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => crate::metrics::usage_dropped(),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self.sender.send(Command::Flush(reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    async fn ready(&self) {
        let mut connections = self.link.connections.subscribe();
        while self.link.current().is_none() {
            if connections.changed().await.is_err() {
                return;
            }
        }
    }

    async fn stats(&self, filter: UsageFilter) -> Result<UsageStats, UsageError> {
        let client = self.link.client()?;
        query_stats(&client, &filter)
            .await
            .map_err(|e| self.link.query_failed(&e))
    }

    async fn recent(
        &self,
        filter: UsageFilter,
        limit: usize,
    ) -> Result<Vec<UsageRecord>, UsageError> {
        let client = self.link.client()?;
        query_recent(&client, &filter, limit)
            .await
            .map_err(|e| self.link.query_failed(&e))
    }

    async fn series(&self, query: SeriesQuery) -> Result<UsageSeries, UsageError> {
        let client = self.link.client()?;
        query_series(&client, &query)
            .await
            .map_err(|e| self.link.query_failed(&e))
    }

    fn export(&self, filter: UsageFilter) -> BoxStream<'static, Result<UsageRecord, UsageError>> {
        let link = self.link.clone();
        let rows = async move {
            let client = link.connect_dedicated().await?;
            let (clause, params) = where_clause(&filter);
            let rows = client
                .query_raw(
                    &format!(
                        "SELECT {COLUMNS} FROM usage_records {clause} ORDER BY started_at, finished_at, request_id COLLATE \"C\""
                    ),
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)),
                )
                .await
                .map_err(|e| link.error("usage export failed", &e))?;
            let scrubber = link.scrubber.clone();
            // The client lives as long as the rows are read: dropping it closes the connection.
            Ok::<_, UsageError>(rows.map(move |row| {
                let _connection = &client;
                row.and_then(|r| from_row(&r))
                    .map_err(|e| UsageError(scrubber.scrub(&e.to_string()).into_owned()))
            }))
        };
        Box::pin(futures::stream::once(rows).try_flatten())
    }
}

/// Reads the totals of `filter` from the ledger at `url` over a connection of its own (the
/// `usage` subcommand). Errors never quote the password.
pub async fn read_stats(
    url: &str,
    filter: &UsageFilter,
    scrubber: Scrubber,
) -> Result<UsageStats, UsageError> {
    let link = Link::new(url, scrubber).map_err(UsageError)?;
    let client = link.connect_dedicated().await?;
    query_stats(&client, filter)
        .await
        .map_err(|e| link.query_failed(&e))
}

/// The connection shared by the writer and the queries, and its health.
struct Link {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    current: Mutex<Option<(u64, Arc<Client>)>>,
    /// Counts connections made; the writer and tests watch it.
    connections: watch::Sender<u64>,
    next_id: AtomicU64,
    /// Wakes the reconnecting task when the connection is lost.
    lost: Notify,
    last_complaint: Mutex<Option<Instant>>,
    scrubber: Scrubber,
}

impl Link {
    fn new(url: &str, scrubber: Scrubber) -> Result<Self, String> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            format!(
                "database_url: unreadable PostgreSQL URL: {}",
                scrubber.scrub(&format!("{e}"))
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("llm-proxy");
        }
        Ok(Self {
            config,
            tls: tls_connector()?,
            current: Mutex::new(None),
            connections: watch::Sender::new(0),
            next_id: AtomicU64::new(0),
            lost: Notify::new(),
            last_complaint: Mutex::new(None),
            scrubber,
        })
    }

    fn current(&self) -> Option<Arc<Client>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, c)| c.clone())
    }

    /// The live connection, or an error at once while PostgreSQL is unreachable.
    fn client(&self) -> Result<Arc<Client>, UsageError> {
        self.current().ok_or_else(|| {
            UsageError("PostgreSQL is unreachable (reconnecting in the background)".to_owned())
        })
    }

    /// Opens a connection (its driving task spawned), within [`CONNECT_TIMEOUT`]; `on_close`
    /// runs when it ends.
    async fn open(
        &self,
        on_close: impl FnOnce(String) + Send + 'static,
    ) -> Result<Client, UsageError> {
        let connecting = self.config.connect(self.tls.clone());
        let (client, connection) = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.error("cannot connect to PostgreSQL", &e)),
            Err(_) => {
                return Err(UsageError(
                    "cannot connect to PostgreSQL: timed out".to_owned(),
                ));
            }
        };
        tokio::spawn(async move {
            let why = match connection.await {
                Ok(()) => "closed".to_owned(),
                Err(e) => e.to_string(),
            };
            on_close(why);
        });
        Ok(client)
    }

    /// Makes the shared connection, migrates the schema and publishes it.
    async fn connect(self: &Arc<Self>) -> Result<(), UsageError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let weak = Arc::downgrade(self);
        let mut client = self
            .open(move |why| {
                if let Some(link) = weak.upgrade() {
                    link.lose(id, &why);
                }
            })
            .await?;
        super::migrations::migrate_postgres(&mut client)
            .await
            .map_err(|e| UsageError(self.scrubber.scrub(&e).into_owned()))?;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((id, Arc::new(client)));
        let (host, db) = (
            self.config.get_hosts().first().map(host_name),
            self.config.get_dbname().unwrap_or("(default)").to_owned(),
        );
        tracing::info!(
            host = host.as_deref().unwrap_or("?"),
            database = %db,
            "usage ledger: connected to PostgreSQL"
        );
        self.connections.send_modify(|n| *n += 1);
        Ok(())
    }

    /// A connection of its own, not shared (exports, the `usage` subcommand).
    async fn connect_dedicated(&self) -> Result<Client, UsageError> {
        self.open(|_| {}).await
    }

    /// Forgets connection `id` (if it is still the current one) and wakes the reconnecting
    /// task.
    fn lose(&self, id: u64, why: &str) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(cur, _)| *cur == id) {
            *current = None;
            drop(current);
            self.complain(&format!("the connection to PostgreSQL was lost ({why})"));
            self.lost.notify_one();
        }
    }

    /// Forgets the current connection, whatever it is (a write timed out on it).
    fn lose_current(&self, why: &str) {
        let id = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(id, _)| *id);
        if let Some(id) = id {
            self.lose(id, why);
        }
    }

    /// A query failed: the error, scrubbed; a closed connection is forgotten.
    fn query_failed(&self, e: &tokio_postgres::Error) -> UsageError {
        if e.is_closed() {
            self.lose_current("closed");
        }
        self.error("usage query failed", e)
    }

    fn error(&self, what: &str, e: &tokio_postgres::Error) -> UsageError {
        // `Display` of a server error is only its severity and code; the message is in `source`.
        let detail = match e.as_db_error() {
            Some(db) => format!("{e}: {}", db.message()),
            None => match std::error::Error::source(e) {
                Some(source) => format!("{e}: {source}"),
                None => e.to_string(),
            },
        };
        UsageError(
            self.scrubber
                .scrub(&format!("{what}: {detail}"))
                .into_owned(),
        )
    }

    /// Logs `why` unless a warning went out less than [`COMPLAIN_EVERY`] ago.
    fn complain(&self, why: &str) {
        let mut last = self
            .last_complaint
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= COMPLAIN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                "usage ledger: {}; usage records are dropped and counted (llm_proxy_usage_dropped_total) until PostgreSQL is back",
                self.scrubber.scrub(why)
            );
        }
    }
}

fn host_name(host: &tokio_postgres::config::Host) -> String {
    match host {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    }
}

/// rustls with the ring provider and the Mozilla roots (the HTTP client's stack).
fn tls_connector() -> Result<MakeRustlsConnect, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("database_url: TLS setup failed: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Keeps the shared connection up: connects at once, and again (backing off) whenever it is
/// lost, until the store is dropped.
async fn keep_connected(link: Arc<Link>, stop: CancellationToken) {
    let mut delay = RETRY_MIN;
    loop {
        if link.current().is_none() {
            match link.connect().await {
                Ok(()) => delay = RETRY_MIN,
                Err(e) => {
                    link.complain(&e.0);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stop.cancelled() => return,
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
            continue;
        }
        tokio::select! {
            () = link.lost.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The writing task's state.
struct Writer {
    link: Arc<Link>,
    settler: Settler,
    retention: Option<Duration>,
    last_prune: Option<Instant>,
}

impl Writer {
    /// Writes what arrives, a batch at a time, until the store is dropped and its queue is
    /// drained.
    async fn run(mut self, mut receiver: mpsc::Receiver<Command>) {
        let mut commands = Vec::with_capacity(MAX_BATCH);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut flushes = Vec::new();
        let mut connections = self.link.connections.subscribe();
        loop {
            tokio::select! {
                n = receiver.recv_many(&mut commands, MAX_BATCH) => {
                    if n == 0 {
                        return;
                    }
                }
                // Prune once connected (and hourly after, with the next records).
                Ok(()) = connections.changed(), if self.last_prune.is_none() => {
                    self.prune_when_due().await;
                    continue;
                }
            }
            for command in commands.drain(..) {
                match command {
                    Command::Record(r) => batch.push(*r),
                    Command::Flush(reply) => flushes.push(reply),
                }
            }
            self.write(&mut batch).await;
            for reply in flushes.drain(..) {
                let _ = reply.send(());
            }
            self.prune_when_due().await;
        }
    }

    /// Prices, counts and inserts `batch` (emptying it) in one statement; while PostgreSQL is
    /// unreachable, or should the insert fail, the records are dropped and counted.
    async fn write(&mut self, batch: &mut Vec<UsageRecord>) {
        if batch.is_empty() {
            return;
        }
        for r in batch.iter_mut() {
            self.settler.settle(r);
        }
        let outcome = match self.link.current() {
            None => Err("PostgreSQL is unreachable".to_owned()),
            Some(client) => {
                match tokio::time::timeout(WRITE_TIMEOUT, insert_all(&client, batch)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(self.link.query_failed(&e).0),
                    Err(_) => {
                        self.link.lose_current("a write timed out");
                        Err("writing usage records timed out".to_owned())
                    }
                }
            }
        };
        if let Err(why) = outcome {
            for _ in 0..batch.len() {
                crate::metrics::usage_dropped();
            }
            self.link
                .complain(&format!("{} usage records not written: {why}", batch.len()));
        }
        batch.clear();
    }

    async fn prune_when_due(&mut self) {
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        let Some(client) = self.link.current() else {
            return;
        };
        self.last_prune = Some(Instant::now());
        let Some(retention) = self.retention else {
            return;
        };
        let cutoff =
            now_millis().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        match client
            .execute(
                "DELETE FROM usage_records WHERE started_at < $1",
                &[&cutoff],
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "usage records past usage.retention_days deleted"
            ),
            Err(e) => tracing::warn!(
                "{}",
                self.link.error("deleting old usage records failed", &e).0
            ),
        }
    }
}

/// One multi-row `INSERT` of `batch` (atomic: all or none).
async fn insert_all(client: &Client, batch: &[UsageRecord]) -> Result<(), tokio_postgres::Error> {
    struct Numbers {
        status: i32,
        tokens: [i64; 6],
    }
    let numbers: Vec<Numbers> = batch
        .iter()
        .map(|r| Numbers {
            status: i32::from(r.status),
            tokens: [
                to_i64(r.prompt_tokens),
                to_i64(r.completion_tokens),
                to_i64(r.total_tokens),
                to_i64(r.cache_read_tokens),
                to_i64(r.cache_write_tokens),
                to_i64(r.reasoning_tokens),
            ],
        })
        .collect();
    let mut sql = format!("INSERT INTO usage_records ({COLUMNS}) VALUES ");
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * 21);
    for (i, (r, n)) in batch.iter().zip(&numbers).enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..21 {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(i * 21 + col + 1).to_string());
        }
        sql.push(')');
        params.extend_from_slice(&[
            &r.request_id,
            &r.session_id,
            &r.client,
            &r.frontend,
            &r.backend,
            &r.model,
            &r.stream,
            &n.status,
            &r.outcome,
            &n.tokens[0],
            &n.tokens[1],
            &n.tokens[2],
            &n.tokens[3],
            &n.tokens[4],
            &n.tokens[5],
            &r.estimated,
            &r.cost_usd,
            &r.latency_ms,
            &r.ttft_ms,
            &r.started_at,
            &r.finished_at,
        ]);
    }
    client.execute(&sql, &params).await.map(|_| ())
}

impl super::record::RowRead for Row {
    type Error = tokio_postgres::Error;
    fn text(&self, i: usize) -> Result<String, Self::Error> {
        self.try_get(i)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error> {
        self.try_get(i)
    }
    fn int(&self, i: usize) -> Result<i64, Self::Error> {
        self.try_get(i)
    }
    fn small(&self, i: usize) -> Result<i64, Self::Error> {
        self.try_get::<_, i32>(i).map(i64::from)
    }
    fn flag(&self, i: usize) -> Result<bool, Self::Error> {
        self.try_get(i)
    }
    fn float(&self, i: usize) -> Result<f64, Self::Error> {
        self.try_get(i)
    }
    fn opt_float(&self, i: usize) -> Result<Option<f64>, Self::Error> {
        self.try_get(i)
    }
}

fn from_row(r: &Row) -> Result<UsageRecord, tokio_postgres::Error> {
    UsageRecord::from_row(r)
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// `WHERE ...` for `filter` and its parameters (as the SQLite store builds it).
fn where_clause(filter: &UsageFilter) -> (String, Params) {
    let (clause, values) = query::where_clause(filter, query::Dialect::Postgres);
    let params = values
        .into_iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                query::FilterValue::Text(t) => Box::new(t),
                query::FilterValue::Int(n) => Box::new(n),
            }
        })
        .collect();
    (clause, params)
}

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
}

async fn query_stats(
    client: &Client,
    filter: &UsageFilter,
) -> Result<UsageStats, tokio_postgres::Error> {
    let (clause, params) = where_clause(filter);
    let params = refs(&params);
    let total = Totals::from_row_at(
        &client
            .query_one(&query::totals_sql(&clause), &params)
            .await?,
        0,
    )?;
    let group = |column: &'static str| {
        let sql = query::group_sql(query::Dialect::Postgres, column, &clause, MAX_GROUPS);
        let params = &params;
        async move {
            client
                .query(&sql, params)
                .await?
                .iter()
                .map(GroupTotals::from_row)
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        }
    };
    let (by_backend, by_model, by_session) =
        futures::future::try_join3(group("backend"), group("model"), group("session_id")).await?;
    Ok(UsageStats {
        total,
        by_backend,
        by_model,
        by_session,
    })
}

/// Sums per time bucket and backend or model, with the SQLite store's query.
async fn query_series(
    client: &Client,
    query: &SeriesQuery,
) -> Result<UsageSeries, tokio_postgres::Error> {
    let (clause, params) = where_clause(&query.filter);
    let sql = query::series_sql(query::Dialect::Postgres, query, &clause);
    let points = client
        .query(&sql, &refs(&params))
        .await?
        .iter()
        .map(SeriesPoint::from_row)
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok(UsageSeries { points })
}

async fn query_recent(
    client: &Client,
    filter: &UsageFilter,
    limit: usize,
) -> Result<Vec<UsageRecord>, tokio_postgres::Error> {
    let (clause, params) = where_clause(filter);
    client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM usage_records {clause} ORDER BY finished_at DESC, started_at DESC, request_id COLLATE \"C\" DESC LIMIT {limit}"
            ),
            &refs(&params),
        )
        .await?
        .iter()
        .map(from_row)
        .collect()
}
