//! Usage accounting: a record of every request that reached the pipeline (tokens, cache,
//! reasoning, cost, latency, outcome), kept in a store behind the [`UsageStore`] trait.
//!
//! The request path only gathers counts ([`tally::UsageTally`], lock-free) and, in the finish
//! hook ([`hook::RecordUsage`]), builds one small [`UsageRecord`] and hands it to the store
//! without blocking. The store's own thread prices it ([`UsageRecord::price`]), counts it in
//! Prometheus and writes it in batches; a full queue drops the record and counts the drop.
//! The store is SQLite in the data directory ([`sqlite::SqliteUsageStore`]) by default, or a
//! PostgreSQL ledger replicas share ([`postgres::PostgresUsageStore`], `database_url`); the
//! schema and its migrations ([`migrations`]) are plain SQL both accept, and both answer the
//! same queries with the same results (same sums, same orders). Both price and count a record
//! the same way before writing it ([`settle`]).

pub mod api;
pub mod hook;
pub mod migrations;
pub mod postgres;
pub mod query;
pub mod record;
pub mod report;
pub mod series;
pub mod settle;
pub mod sqlite;
pub mod tally;

use futures::stream::BoxStream;
use serde::Serialize;

pub use postgres::PostgresUsageStore;
pub use query::UsageFilter;
pub use record::UsageRecord;
pub use series::{SeriesQuery, UsageSeries};
pub use sqlite::SqliteUsageStore;

/// A store failed to answer a query.
#[derive(Debug, thiserror::Error)]
#[error("usage store: {0}")]
pub struct UsageError(pub String);

/// Where usage records are kept. Writes never block ([`record`](Self::record) queues);
/// queries run off the async runtime.
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `record` for writing; when the queue is full it is dropped and counted
    /// (`llm_proxy_usage_dropped_total`). Never blocks.
    fn record(&self, record: UsageRecord);

    /// Waits until every record queued before the call is written, or dropped and counted
    /// (tests, `usage` tooling, a graceful stop).
    async fn flush(&self);

    /// Waits until the store can write and answer now (PostgreSQL: a live connection);
    /// embedded stores always can (tests, and callers that prefer to wait).
    async fn ready(&self) {}

    /// Totals, and totals by backend, model and session, of the records `filter` selects.
    async fn stats(&self, filter: UsageFilter) -> Result<UsageStats, UsageError>;

    /// The newest `limit` records `filter` selects, newest first.
    async fn recent(
        &self,
        filter: UsageFilter,
        limit: usize,
    ) -> Result<Vec<UsageRecord>, UsageError>;

    /// Every record `filter` selects, oldest first, read from the store as the stream is
    /// consumed (never the whole table in memory).
    fn export(&self, filter: UsageFilter) -> BoxStream<'static, Result<UsageRecord, UsageError>>;

    /// The selected records summed per time bucket and group, computed by the store. The
    /// default answers that this store cannot (`GET /v1/usage/series` then fails with 503).
    async fn series(&self, query: SeriesQuery) -> Result<UsageSeries, UsageError> {
        let _ = query;
        Err(UsageError(format!(
            "this usage store ({self:?}) does not compute series"
        )))
    }
}

/// Sums over a set of records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Requests.
    pub requests: u64,
    /// Input tokens (cache included).
    pub prompt_tokens: u64,
    /// Output tokens (reasoning included).
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// Input tokens read from a prompt cache.
    pub cached_tokens: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Cost in US dollars of the records with a known price.
    pub cost_usd: f64,
    /// Records whose tokens are estimates.
    pub estimated_requests: u64,
}

/// Totals of one group (a backend, a model, a session).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupTotals {
    /// The group's key (`None`: records without one, e.g. no backend reached).
    pub key: Option<String>,
    /// Its sums.
    pub totals: Totals,
}

/// The answer of `GET /v1/usage/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageStats {
    /// Everything selected.
    pub total: Totals,
    /// By backend instance.
    pub by_backend: Vec<GroupTotals>,
    /// By model.
    pub by_model: Vec<GroupTotals>,
    /// By session.
    pub by_session: Vec<GroupTotals>,
}

impl UsageStats {
    /// The JSON shape of `GET /v1/usage/stats`: each group's key under its own name
    /// (`backend`, `model`, `session_id`).
    pub fn to_json(&self) -> serde_json::Value {
        let groups = |list: &[GroupTotals], name: &str| -> serde_json::Value {
            list.iter()
                .map(|g| {
                    let mut v = serde_json::to_value(&g.totals).unwrap_or_default();
                    if let serde_json::Value::Object(map) = &mut v {
                        map.insert(name.to_owned(), g.key.clone().into());
                    }
                    v
                })
                .collect()
        };
        serde_json::json!({
            "total": self.total,
            "by_backend": groups(&self.by_backend, "backend"),
            "by_model": groups(&self.by_model, "model"),
            "by_session": groups(&self.by_session, "session_id"),
        })
    }
}
