//! The finish hook that records a request's usage: it reads the request's [`UsageTally`],
//! builds one [`UsageRecord`] (tokens from the upstream's report, or an estimate flagged as
//! such when it reported none) and queues it in the [`UsageStore`]. No I/O, no pricing, no
//! waiting: the store's own thread does the rest.

use std::sync::Arc;
use std::time::Duration;

use super::tally::UsageTally;
use super::{UsageRecord, UsageStore};
use crate::context::RequestContext;
use crate::finish::{FinishHook, Finished};

/// Queues a usage record for every finished request.
#[derive(Debug)]
pub struct RecordUsage {
    store: Arc<dyn UsageStore>,
}

impl RecordUsage {
    /// Records into `store`.
    pub fn new(store: Arc<dyn UsageStore>) -> Self {
        Self { store }
    }
}

impl FinishHook for RecordUsage {
    fn name(&self) -> &'static str {
        "usage"
    }

    fn finish(&self, ctx: &RequestContext, finished: &Finished<'_>) {
        let Some(tally) = ctx.usage_tally() else {
            return;
        };
        let elapsed = ctx.started.elapsed();
        let finished_at = super::sqlite::now_millis();
        self.store
            .record(build_record(ctx, tally, finished, elapsed, finished_at));
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The record of a finished request.
fn build_record(
    ctx: &RequestContext,
    tally: &UsageTally,
    finished: &Finished<'_>,
    elapsed: Duration,
    finished_at: i64,
) -> UsageRecord {
    let tokens = tally.tokens();
    let ttft = ctx.ttft();
    let (counts, estimated) = match tokens.usage {
        Some(reported) => (reported, false),
        // Nothing reported: estimate what was read and written, if an answer started (a
        // request that failed before any output consumed nothing we can see).
        None if ttft.is_some() => (
            super::tally::TokenCounts {
                input: tokens.prompt_estimate,
                output: tokens.output_bytes.div_ceil(4),
                ..Default::default()
            },
            true,
        ),
        None => (super::tally::TokenCounts::default(), false),
    };
    let status = tally.status().unwrap_or(200);
    UsageRecord {
        request_id: ctx.request_id.clone(),
        session_id: ctx.session_id().map(str::to_owned),
        client: ctx.client.as_ref().map(|c| c.label().to_owned()),
        frontend: ctx.format.label().to_owned(),
        backend: ctx.backend().map(str::to_owned),
        model: tally.model().map(str::to_owned),
        stream: finished.stream,
        status,
        outcome: finished.outcome.to_owned(),
        prompt_tokens: counts.input,
        completion_tokens: counts.output,
        // An upstream's counts are its own word: a hostile one must not overflow the sum.
        total_tokens: counts.input.saturating_add(counts.output),
        cache_read_tokens: counts.cache_read,
        cache_write_tokens: counts.cache_write,
        reasoning_tokens: counts.reasoning,
        estimated,
        cost_usd: None,
        latency_ms: millis(elapsed),
        ttft_ms: ttft.map(millis),
        started_at: finished_at
            - i64::try_from(elapsed.as_millis())
                .unwrap_or(i64::MAX)
                .min(finished_at),
        finished_at,
    }
}
