//! The finish hook that traces a request: it reads the request's usage tally and attempt log
//! into one [`FinishedRequest`] (wall-clock times, no content) and queues it for the exporter
//! thread. No span objects, no I/O here.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::export::TraceSink;
use super::spans::{AttemptTimes, FinishedRequest};
use crate::context::RequestContext;
use crate::finish::{FinishHook, Finished};

/// Queues every finished request's trace.
#[derive(Debug)]
pub struct TraceRequests {
    sink: Arc<TraceSink>,
}

impl TraceRequests {
    /// Traces into `sink`.
    pub fn new(sink: Arc<TraceSink>) -> Self {
        Self { sink }
    }
}

/// Longest `traceparent` value read (version 00 is 55 bytes).
const MAX_TRACEPARENT: usize = 128;

impl FinishHook for TraceRequests {
    fn name(&self) -> &'static str {
        "traces"
    }

    fn finish(&self, ctx: &RequestContext, finished: &Finished<'_>) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let at = |i: Instant| {
            wall.checked_sub(now.saturating_duration_since(i))
                .unwrap_or(wall)
        };
        let tally = ctx.usage_tally();
        let attempts = ctx
            .attempt_log()
            .map(|log| log.take())
            .unwrap_or_default()
            .into_iter()
            .map(|a| AttemptTimes {
                served: a.ended.is_none(),
                started: at(a.started),
                ended: a.ended.map_or(wall, at),
                instance: a.instance,
                model: a.model,
                error: a.error,
            })
            .collect();
        let traceparent = ctx
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_TRACEPARENT)
            .map(str::to_owned);
        self.sink.send(FinishedRequest {
            request_id: ctx.request_id.clone(),
            traceparent,
            frontend: ctx.format.label(),
            stream: finished.stream,
            outcome: finished.outcome.to_owned(),
            status: tally.and_then(|t| t.status()).unwrap_or(200),
            requested_model: tally.and_then(|t| t.requested_model()).map(str::to_owned),
            response_model: tally.and_then(|t| t.served_model()).map(str::to_owned),
            backend: ctx.backend().map(str::to_owned),
            session_id: ctx.session_id().map(str::to_owned),
            usage: tally.and_then(|t| t.tokens().usage),
            finish_reason: tally
                .and_then(|t| t.finish_reason())
                .map(|r| finish_reason_label(r).to_owned()),
            started: at(ctx.started),
            ended: wall,
            attempts,
        });
    }
}

/// The conventions' finish reason values (`stop`, `length`, `tool_calls`, `content_filter`);
/// a provider's own reason is kept when short and plain, else `other`.
fn finish_reason_label(r: &llm_proxy_api::model::FinishReason) -> &str {
    use llm_proxy_api::model::FinishReason;
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(s)
            if s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            s
        }
        FinishReason::Other(_) => "other",
    }
}
