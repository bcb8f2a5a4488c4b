//! Prometheus metrics: the proxy's own overhead, upstream latency and time to first token, as
//! histograms labelled by frontend, backend instance and streaming (low cardinality), plus a
//! request counter by outcome and a counter of what translations dropped, by field. Served at
//! `GET /metrics`. Usage accounting adds token and cost counters by backend instance and
//! configured model, counted by the usage writer thread, and a counter of records dropped.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const OVERHEAD: &str = "llm_proxy_overhead_seconds";
const UPSTREAM: &str = "llm_proxy_upstream_latency_seconds";
const TTFT: &str = "llm_proxy_time_to_first_token_seconds";
const REQUESTS: &str = "llm_proxy_requests_total";
const LOSSY: &str = "llm_proxy_lossy_total";
const USAGE_TOKENS: &str = "llm_proxy_usage_tokens_total";
const USAGE_COST: &str = "llm_proxy_usage_cost_nano_usd_total";
const USAGE_DROPPED: &str = "llm_proxy_usage_dropped_total";
const CAPTURE_DROPPED: &str = "llm_proxy_capture_dropped_total";

/// Installs the process-wide recorder (once; later calls reuse it).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(OVERHEAD.to_owned()),
                    &[
                        1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(UPSTREAM.to_owned()),
                        &[
                            0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                            120.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(TTFT.to_owned()),
                        &[
                            0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        ],
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    start_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!("metrics disabled: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The exporter keeps every histogram sample (value and timestamp) in a list until it is
/// folded into the buckets, which only a scrape of `/metrics` or an upkeep does: with nobody
/// scraping, memory grew with every request (about 60 bytes each) for the life of the process.
/// A thread folds them every [`UPKEEP_EVERY`]; a failure to start it is logged, not fatal.
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name(UPKEEP_THREAD.into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!("metrics upkeep not started, histogram samples wait for a scrape: {e}");
    }
}

const UPKEEP_THREAD: &str = "metrics-upkeep";

/// One finished request.
#[derive(Debug, Clone)]
pub struct RequestRecord<'a> {
    /// Client protocol label.
    pub frontend: &'static str,
    /// Backend instance (or `none` when routing failed).
    pub backend: &'a str,
    /// Streaming request.
    pub stream: bool,
    /// `ok` or an error label.
    pub outcome: &'a str,
    /// Time in the proxy itself.
    pub overhead: Duration,
    /// Time waiting on the upstream.
    pub upstream: Duration,
    /// Time to the first meaningful output, when there was some.
    pub ttft: Option<Duration>,
}

/// The metric handles of one label set, registered once: looking a metric up by name and
/// labels on every request (building the key, cloning labels, hashing it) cost as much as the
/// proxy's own session stage.
struct Handles {
    frontend: &'static str,
    stream: bool,
    outcome: Box<str>,
    overhead: metrics::Histogram,
    upstream: metrics::Histogram,
    ttft: metrics::Histogram,
    requests: metrics::Counter,
}

impl Handles {
    fn register(r: &RequestRecord<'_>) -> Self {
        let stream = if r.stream { "true" } else { "false" };
        let labels = [
            ("frontend", r.frontend.to_owned()),
            ("backend", r.backend.to_owned()),
            ("stream", stream.to_owned()),
        ];
        Self {
            frontend: r.frontend,
            stream: r.stream,
            outcome: r.outcome.into(),
            overhead: metrics::histogram!(OVERHEAD, &labels),
            upstream: metrics::histogram!(UPSTREAM, &labels),
            ttft: metrics::histogram!(TTFT, &labels),
            requests: metrics::counter!(REQUESTS, "frontend" => r.frontend, "backend" => r.backend.to_owned(), "outcome" => r.outcome.to_owned()),
        }
    }

    fn matches(&self, r: &RequestRecord<'_>) -> bool {
        self.frontend == r.frontend && self.stream == r.stream && *self.outcome == *r.outcome
    }
}

/// Handles by backend instance, then a short list per instance (frontends × streaming ×
/// outcomes). Every label is low-cardinality, so this stays small.
type HandleCache = RwLock<HashMap<Box<str>, Vec<Arc<Handles>>, foldhash::fast::RandomState>>;

static HANDLES: OnceLock<HandleCache> = OnceLock::new();

fn handles(r: &RequestRecord<'_>) -> Arc<Handles> {
    let cache = HANDLES.get_or_init(HandleCache::default);
    if let Ok(map) = cache.read()
        && let Some(found) = map
            .get(r.backend)
            .and_then(|list| list.iter().find(|h| h.matches(r)))
    {
        return Arc::clone(found);
    }
    let registered = Arc::new(Handles::register(r));
    if let Ok(mut map) = cache.write() {
        let list = map.entry(r.backend.into()).or_default();
        match list.iter().find(|h| h.matches(r)) {
            Some(raced) => return Arc::clone(raced),
            None => list.push(Arc::clone(&registered)),
        }
    }
    registered
}

/// Records a finished request.
pub fn record(r: &RequestRecord<'_>) {
    // Handles taken before the recorder exists would be no-ops forever.
    install();
    let h = handles(r);
    h.overhead.record(r.overhead.as_secs_f64());
    if !r.upstream.is_zero() {
        h.upstream.record(r.upstream.as_secs_f64());
    }
    if let Some(t) = r.ttft {
        h.ttft.record(t.as_secs_f64());
    }
    h.requests.increment(1);
}

/// Lossy-note counters by (frontend, field), registered once each; both labels are static
/// strings from fixed vocabularies ([`llm_proxy_api::lossy::LOSSY_FIELDS`]).
type LossyCache =
    RwLock<HashMap<(&'static str, &'static str), metrics::Counter, foldhash::fast::RandomState>>;

static LOSSY_HANDLES: OnceLock<LossyCache> = OnceLock::new();

fn lossy_counter(frontend: &'static str, field: &'static str) -> metrics::Counter {
    let cache = LOSSY_HANDLES.get_or_init(LossyCache::default);
    if let Ok(map) = cache.read()
        && let Some(found) = map.get(&(frontend, field))
    {
        return found.clone();
    }
    let registered = metrics::counter!(LOSSY, "frontend" => frontend, "field" => field);
    if let Ok(mut map) = cache.write() {
        return map.entry((frontend, field)).or_insert(registered).clone();
    }
    registered
}

/// Counts what a request's conversions dropped (`llm_proxy_lossy_total{frontend, field}`):
/// each field once per request, however many notes name it.
pub fn record_lossy(frontend: &'static str, notes: &[String]) {
    if notes.is_empty() {
        return;
    }
    install();
    let mut seen: Vec<&'static str> = Vec::with_capacity(notes.len());
    for note in notes {
        let field = llm_proxy_api::lossy::lossy_field(note);
        if !seen.contains(&field) {
            seen.push(field);
            lossy_counter(frontend, field).increment(1);
        }
    }
}

/// The usage counters of one (backend instance, model) pair, registered once by the usage
/// writer: `llm_proxy_usage_tokens_total{backend, model, kind}` (`kind`: `prompt`,
/// `completion`, `cache_read`, `cache_write`, `reasoning`) and
/// `llm_proxy_usage_cost_nano_usd_total{backend, model}` (US dollars × 10⁹: counters are
/// integers).
#[derive(Debug, Clone)]
pub struct UsageCounters {
    prompt: metrics::Counter,
    completion: metrics::Counter,
    cache_read: metrics::Counter,
    cache_write: metrics::Counter,
    reasoning: metrics::Counter,
    cost: metrics::Counter,
}

impl UsageCounters {
    /// Adds one request's usage.
    pub fn add(&self, r: &crate::usage::UsageRecord) {
        self.prompt.increment(r.prompt_tokens);
        self.completion.increment(r.completion_tokens);
        self.cache_read.increment(r.cache_read_tokens);
        self.cache_write.increment(r.cache_write_tokens);
        self.reasoning.increment(r.reasoning_tokens);
        if let Some(cost) = r.cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            // Saturating float-to-int conversion.
            self.cost.increment((cost * 1e9).round() as u64);
        }
    }
}

/// The usage counters of `backend` and `model` (a configured model name or `other`).
pub fn usage_counters(backend: &str, model: &str) -> UsageCounters {
    install();
    let tokens = |kind: &'static str| metrics::counter!(USAGE_TOKENS, "backend" => backend.to_owned(), "model" => model.to_owned(), "kind" => kind);
    UsageCounters {
        prompt: tokens("prompt"),
        completion: tokens("completion"),
        cache_read: tokens("cache_read"),
        cache_write: tokens("cache_write"),
        reasoning: tokens("reasoning"),
        cost: metrics::counter!(USAGE_COST, "backend" => backend.to_owned(), "model" => model.to_owned()),
    }
}

/// Counts a usage record dropped because the writer's queue was full
/// (`llm_proxy_usage_dropped_total`).
pub fn usage_dropped() {
    static DROPPED: OnceLock<metrics::Counter> = OnceLock::new();
    install();
    DROPPED
        .get_or_init(|| metrics::counter!(USAGE_DROPPED))
        .increment(1);
}

/// Counts one wire-capture record lost (`llm_proxy_capture_dropped_total`): the capture queue
/// was full, the sink closed, or writing failed.
pub fn record_capture_dropped() {
    install();
    metrics::counter!(CAPTURE_DROPPED).increment(1);
}

/// `GET /metrics`.
pub async fn render() -> Response {
    let body = install().map(PrometheusHandle::render).unwrap_or_default();
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of this process's threads.
    #[cfg(target_os = "linux")]
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn installing_the_recorder_starts_the_histogram_upkeep() {
        assert!(install().is_some(), "the recorder installs");
        assert!(
            thread_names().iter().any(|n| n == UPKEEP_THREAD),
            "no {UPKEEP_THREAD} thread: {:?}",
            thread_names()
        );
        // Installing again (every recording path calls it) starts no second one.
        install();
        let upkeeps = thread_names()
            .iter()
            .filter(|n| *n == UPKEEP_THREAD)
            .count();
        assert_eq!(upkeeps, 1);
    }
}
