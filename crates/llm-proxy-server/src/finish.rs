//! Finish hooks: what runs once a request is over, after its last byte (or its error, or the
//! client going away). Chosen at startup ([`crate::pipeline::Pipeline`]); each hook is a small
//! type with one job: the Prometheus metrics here, the dedup release (`dedup.rs`), usage
//! accounting (`usage/hook.rs`). Capture summaries are added the same way, not in the frontends.

use std::sync::Arc;
use std::time::Duration;

use crate::context::RequestContext;

/// How the request ended.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// Whether the answer was streamed.
    pub stream: bool,
    /// `ok`, `client_disconnected` or an error label.
    pub outcome: &'a str,
    /// Time spent in the proxy itself.
    pub overhead: Duration,
    /// Time spent waiting on the upstream.
    pub upstream: Duration,
}

/// One thing to do when a request is over. Runs on the task that finished the request: keep
/// it short and never block (hand slow work to a channel or a store thread).
pub trait FinishHook: Send + Sync + 'static {
    /// Name for logs and `/v1/diagnostics`.
    fn name(&self) -> &'static str;
    /// Called exactly once per request.
    fn finish(&self, ctx: &RequestContext, finished: &Finished<'_>);
}

/// The hooks chosen at startup, shared by every request's context.
#[derive(Clone, Default)]
pub struct FinishHooks(Arc<[Arc<dyn FinishHook>]>);

impl std::fmt::Debug for FinishHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|h| h.name()))
            .finish()
    }
}

impl FinishHooks {
    /// These hooks, in order.
    pub fn new(hooks: Vec<Arc<dyn FinishHook>>) -> Self {
        Self(hooks.into())
    }

    /// The hooks, in order.
    pub fn hooks(&self) -> &[Arc<dyn FinishHook>] {
        &self.0
    }

    /// Names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|h| h.name()).collect()
    }

    /// Runs every hook.
    pub fn run(&self, ctx: &RequestContext, finished: &Finished<'_>) {
        for hook in self.0.iter() {
            hook.finish(ctx, finished);
        }
    }
}

/// Records the request in the Prometheus metrics (`/metrics`).
#[derive(Debug, Default)]
pub struct Metrics;

impl FinishHook for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn finish(&self, ctx: &RequestContext, finished: &Finished<'_>) {
        crate::metrics::record(&crate::metrics::RequestRecord {
            frontend: ctx.format.label(),
            backend: ctx.backend().unwrap_or("none"),
            stream: finished.stream,
            outcome: finished.outcome,
            overhead: finished.overhead,
            upstream: finished.upstream,
            ttft: ctx.ttft(),
        });
        crate::metrics::record_lossy(ctx.format.label(), &ctx.lossy.snapshot());
    }
}
