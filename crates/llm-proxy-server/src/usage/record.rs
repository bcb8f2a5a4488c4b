//! One request's usage record as stored and served (`/v1/usage/recent`, exports), its price
//! from the bundled model registry, and its CSV form.

use serde::{Deserialize, Serialize};

use crate::model_registry::ModelRegistry;

/// What one request used. Built by the finish hook ([`super::hook::RecordUsage`]) from the
/// request's context; priced and written by the store's writer thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Proxy request id (`x-request-id`).
    pub request_id: String,
    /// The session the request belonged to, once resolved.
    pub session_id: Option<String>,
    /// Which client key authenticated the request (its stable label, never the key).
    pub client: Option<String>,
    /// Client protocol (`openai_chat`, `openai_responses`, `anthropic`, `gemini`).
    pub frontend: String,
    /// Backend instance that served the request (`None`: it never reached one).
    pub backend: Option<String>,
    /// Upstream model that served the request, or the requested model when none did.
    pub model: Option<String>,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// HTTP status sent to the client (200 once a stream has started, even if it then failed).
    pub status: u16,
    /// `ok`, `client_disconnected` or an error label.
    pub outcome: String,
    /// Input tokens, cache reads and writes included.
    pub prompt_tokens: u64,
    /// Output tokens, reasoning included.
    pub completion_tokens: u64,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: u64,
    /// Reasoning tokens (part of `completion_tokens`).
    pub reasoning_tokens: u64,
    /// The upstream reported no usage: the tokens are the proxy's estimate.
    pub estimated: bool,
    /// Price in US dollars from the bundled model registry (`None`: model or price unknown).
    pub cost_usd: Option<f64>,
    /// Time from arrival to the end of the request, milliseconds.
    pub latency_ms: f64,
    /// Time to the first meaningful output, milliseconds.
    pub ttft_ms: Option<f64>,
    /// Arrival, Unix milliseconds.
    pub started_at: i64,
    /// End, Unix milliseconds.
    pub finished_at: i64,
}

/// Column order of the CSV export (and of the SQL table).
pub const CSV_HEADER: &str = "request_id,session_id,client,frontend,backend,model,stream,status,outcome,prompt_tokens,completion_tokens,total_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,estimated,cost_usd,latency_ms,ttft_ms,started_at,finished_at\n";

impl UsageRecord {
    /// The price of this record's tokens in `registry`, when its model and prices are known:
    /// uncached input, cache reads and cache writes (at the input price when the registry has
    /// no cache price), and output.
    pub fn price(&self, registry: &ModelRegistry) -> Option<f64> {
        let info = registry.lookup(self.model.as_deref()?)?;
        let input = info.input_per_token?;
        let output = info.output_per_token?;
        let cached = self
            .cache_read_tokens
            .saturating_add(self.cache_write_tokens);
        let uncached = self.prompt_tokens.saturating_sub(cached);
        Some(
            uncached as f64 * input
                + self.cache_read_tokens as f64 * info.cache_read_per_token.unwrap_or(input)
                + self.cache_write_tokens as f64 * info.cache_write_per_token.unwrap_or(input)
                + self.completion_tokens as f64 * output,
        )
    }

    /// One CSV line (RFC 4180 quoting), newline included.
    pub fn csv_line(&self) -> String {
        let opt = |v: &Option<String>| v.as_deref().map(csv_field).unwrap_or_default();
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            csv_field(&self.request_id),
            opt(&self.session_id),
            opt(&self.client),
            csv_field(&self.frontend),
            opt(&self.backend),
            opt(&self.model),
            self.stream,
            self.status,
            csv_field(&self.outcome),
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            self.estimated,
            num(self.cost_usd),
            self.latency_ms,
            num(self.ttft_ms),
            self.started_at,
            self.finished_at,
        )
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A result row of either store, read by column position. Both stores select the columns in
/// [`super::sqlite::COLUMNS`] order; only the driver's getters differ.
pub(crate) trait RowRead {
    type Error;
    fn text(&self, i: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, Self::Error>;
    /// A `BIGINT`.
    fn int(&self, i: usize) -> Result<i64, Self::Error>;
    /// An `INTEGER` (32 bits in PostgreSQL, 64 in SQLite).
    fn small(&self, i: usize) -> Result<i64, Self::Error>;
    fn flag(&self, i: usize) -> Result<bool, Self::Error>;
    fn float(&self, i: usize) -> Result<f64, Self::Error>;
    fn opt_float(&self, i: usize) -> Result<Option<f64>, Self::Error>;

    /// A count (a `BIGINT` that is never negative).
    fn count(&self, i: usize) -> Result<u64, Self::Error> {
        Ok(u64::try_from(self.int(i)?).unwrap_or(0))
    }
}

impl UsageRecord {
    /// The record in a row of `COLUMNS`.
    pub(crate) fn from_row<R: RowRead>(r: &R) -> Result<Self, R::Error> {
        Ok(Self {
            request_id: r.text(0)?,
            session_id: r.opt_text(1)?,
            client: r.opt_text(2)?,
            frontend: r.text(3)?,
            backend: r.opt_text(4)?,
            model: r.opt_text(5)?,
            stream: r.flag(6)?,
            status: u16::try_from(r.small(7)?).unwrap_or(0),
            outcome: r.text(8)?,
            prompt_tokens: r.count(9)?,
            completion_tokens: r.count(10)?,
            total_tokens: r.count(11)?,
            cache_read_tokens: r.count(12)?,
            cache_write_tokens: r.count(13)?,
            reasoning_tokens: r.count(14)?,
            estimated: r.flag(15)?,
            cost_usd: r.opt_float(16)?,
            latency_ms: r.float(17)?,
            ttft_ms: r.opt_float(18)?,
            started_at: r.int(19)?,
            finished_at: r.int(20)?,
        })
    }
}

impl super::Totals {
    /// The totals in a row's [`super::query::totals_sql`] sums, from column `at` on.
    pub(crate) fn from_row_at<R: RowRead>(r: &R, at: usize) -> Result<Self, R::Error> {
        Ok(Self {
            requests: r.count(at)?,
            prompt_tokens: r.count(at + 1)?,
            completion_tokens: r.count(at + 2)?,
            total_tokens: r.count(at + 3)?,
            cached_tokens: r.count(at + 4)?,
            cache_write_tokens: r.count(at + 5)?,
            reasoning_tokens: r.count(at + 6)?,
            cost_usd: r.float(at + 7)?,
            estimated_requests: r.count(at + 8)?,
        })
    }
}

impl super::GroupTotals {
    /// A group's key and totals in a row of [`super::query::group_sql`].
    pub(crate) fn from_row<R: RowRead>(r: &R) -> Result<Self, R::Error> {
        Ok(Self {
            key: r.opt_text(0)?,
            totals: super::Totals::from_row_at(r, 1)?,
        })
    }
}

impl super::series::SeriesPoint {
    /// The point in a row of (bucket, key, requests, errors, prompt, completion and total
    /// tokens, cost), as both stores' series queries select them.
    pub(crate) fn from_row<R: RowRead>(r: &R) -> Result<Self, R::Error> {
        Ok(Self {
            t: r.int(0)?,
            key: r.opt_text(1)?,
            requests: r.count(2)?,
            errors: r.count(3)?,
            prompt_tokens: r.count(4)?,
            completion_tokens: r.count(5)?,
            total_tokens: r.count(6)?,
            cost_usd: r.float(7)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_at_the_end_of_the_range_price_without_overflow() {
        let record = UsageRecord {
            model: Some("gpt-4o".into()),
            prompt_tokens: u64::MAX,
            cache_read_tokens: u64::MAX,
            cache_write_tokens: u64::MAX,
            completion_tokens: u64::MAX,
            ..UsageRecord::default()
        };
        let price = record.price(ModelRegistry::bundled());
        assert!(price.is_some_and(f64::is_finite), "{price:?}");
    }

    #[test]
    fn price_charges_cache_reads_and_writes_at_their_own_rates() {
        let registry = ModelRegistry::from_json(
            r#"{"models":{"m":{"provider":"p","context_window":1000,"input_per_token":1.0,"output_per_token":10.0,"cache_read_per_token":0.1,"cache_write_per_token":2.0}}}"#,
        )
        .unwrap();
        let record = UsageRecord {
            model: Some("m".into()),
            prompt_tokens: 100,
            cache_read_tokens: 50,
            cache_write_tokens: 10,
            completion_tokens: 3,
            ..UsageRecord::default()
        };
        // 40 uncached, 50 read, 10 written, 3 out.
        assert_eq!(record.price(&registry), Some(40.0 + 5.0 + 20.0 + 30.0));
        let unknown = UsageRecord {
            model: Some("nope".into()),
            ..record
        };
        assert_eq!(unknown.price(&registry), None);
    }

    #[test]
    fn csv_fields_with_separators_are_quoted() {
        let line = UsageRecord {
            request_id: "r,1".into(),
            outcome: "say \"hi\"".into(),
            ..UsageRecord::default()
        }
        .csv_line();
        assert!(
            line.starts_with("\"r,1\",,,,,,false,0,\"say \"\"hi\"\"\","),
            "{line}"
        );
        assert_eq!(
            line.trim_end().split(',').count(),
            CSV_HEADER.trim_end().split(',').count() + 1
        );
    }
}
