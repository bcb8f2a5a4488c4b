//! Event processors: per-request steps over the response's [`StreamEvent`]s, between the
//! backend and the frontend's renderer. Each declares where it runs relative to the retry
//! window:
//! - [`Position::BeforeFirstOutput`]: on every attempt's own stream, before the pipeline looks
//!   for the first meaningful event, so an error it raises fails the attempt and the request
//!   can still be retried or failed over (e.g. a guard that rejects an answer's first tool call);
//! - [`Position::AfterFirstOutput`]: on the winning attempt's stream, once output has started,
//!   where it may only rewrite or append (e.g. loop guards, think-tag repair).
//!
//! Which processors exist is decided at startup ([`crate::pipeline::Pipeline`]); each decides
//! per request whether it has anything to do ([`EventProcessor::begin`]), so a request none of
//! them touches gets its stream back unchanged, at no cost. A processor that must see a whole
//! tool call buffers only that call, bounded.

pub mod dangerous_commands;
pub mod loop_guard;
pub mod stream_loop;
pub mod tool_access;
pub mod tool_calls;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::stream::{EventStream, StreamEvent};

use crate::context::RequestContext;

pub mod json_repair;
pub mod keep_reasoning;
pub mod parse;
pub mod reasoning_mode;
pub mod think_tags;
pub mod tool_call_repair;

/// The steering processors the configuration turns on, in the order they run: think tags
/// first (a call inside `<think>` is not a call), then tool-call repair, JSON repair (which
/// also sees the calls repair made) and reasoning presentation last.
pub fn steering(cfg: &crate::config::SteeringConfig) -> Vec<Arc<dyn EventProcessor>> {
    let mut list: Vec<Arc<dyn EventProcessor>> = Vec::new();
    if cfg.fix_think_tags {
        list.push(Arc::new(think_tags::ThinkTags));
    }
    if cfg.tool_call_repair {
        list.push(Arc::new(tool_call_repair::ToolCallRepair::new(
            cfg.tool_call_repair_buffer_cap,
        )));
    }
    if cfg.json_repair {
        list.push(Arc::new(json_repair::JsonRepair::new(
            cfg.json_repair_buffer_cap,
            cfg.json_repair_strict,
        )));
    }
    // Rules were validated at load; one that does not compile here is skipped.
    let rules = cfg
        .user_agent_rules
        .iter()
        .filter_map(|r| {
            Some(reasoning_mode::UserAgentRule {
                user_agent: regex::Regex::new(&r.user_agent_regex).ok()?,
                mode: reasoning_mode::ReasoningMode::parse(&r.reasoning_mode)?,
                meaningful: r.reasoning_counts_as_meaningful,
            })
        })
        .collect();
    list.push(Arc::new(reasoning_mode::ReasoningPresentation::new(rules)));
    list
}

/// Where a processor runs relative to the retry window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// On each attempt, before the first meaningful output: may fail the attempt.
    BeforeFirstOutput,
    /// On the chosen attempt once output has started: may only rewrite or append.
    AfterFirstOutput,
}

/// A kind of processing, built once at startup.
pub trait EventProcessor: Send + Sync + 'static {
    /// Name for logs and `/v1/diagnostics`.
    fn name(&self) -> &'static str;
    /// Where it runs.
    fn position(&self) -> Position;
    /// Its state for one request (or one attempt, for [`Position::BeforeFirstOutput`]);
    /// `None` when it has nothing to do for this request. `req` is the request as the backend
    /// receives it (after every request stage), e.g. for the tools it defined.
    fn begin(&self, ctx: &RequestContext, req: &ChatRequest) -> Option<Box<dyn EventProcess>>;
}

/// One request's (or attempt's) processing.
pub trait EventProcess: Send {
    /// Sees one event; pushes what should go on (the event itself, changed, more, or nothing)
    /// to `out`. An error ends the stream with it (before the first output: fails the attempt).
    fn event(&mut self, event: StreamEvent, out: &mut Vec<StreamEvent>)
    -> Result<(), BackendError>;
    /// The upstream stream ended; pushes anything held back.
    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let _ = out;
        Ok(())
    }
    /// Whether the process has ended the answer itself (e.g. cut a runaway stream): the
    /// upstream is then no longer read, and the processes after it are ended.
    fn finished(&self) -> bool {
        false
    }
}

/// The processors of one position, chosen at startup.
#[derive(Clone, Default)]
pub struct Processors(Arc<[Arc<dyn EventProcessor>]>);

impl std::fmt::Debug for Processors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Processors {
    /// These processors, in order.
    pub fn new(list: Vec<Arc<dyn EventProcessor>>) -> Self {
        Self(list.into())
    }

    /// Names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|p| p.name()).collect()
    }

    /// The processes active for this request, in order (none allocated when no processor is).
    pub fn begin(&self, ctx: &RequestContext, req: &ChatRequest) -> Active {
        if self.0.is_empty() {
            return Active(Vec::new());
        }
        Active(self.0.iter().filter_map(|p| p.begin(ctx, req)).collect())
    }

    /// `stream` through every processor active for this request, in order; the stream itself
    /// when none is.
    pub fn apply(
        &self,
        ctx: &RequestContext,
        req: &ChatRequest,
        stream: EventStream,
    ) -> EventStream {
        self.begin(ctx, req).apply(stream)
    }
}

/// One request's active processes, started before the request is handed to a backend.
pub struct Active(Vec<Box<dyn EventProcess>>);

impl Active {
    /// `stream` through these processes, in order; the stream itself when there are none.
    pub fn apply(self, stream: EventStream) -> EventStream {
        if self.0.is_empty() {
            return stream;
        }
        Box::pin(Processed {
            inner: stream,
            chain: self.0,
            ready: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
        })
    }
}

/// A stream through a chain of processes.
struct Processed {
    inner: EventStream,
    chain: Vec<Box<dyn EventProcess>>,
    ready: VecDeque<Result<StreamEvent, BackendError>>,
    scratch: Vec<StreamEvent>,
    done: bool,
}

impl Processed {
    /// Runs `events` through processes `from..`, queueing what comes out of the last one.
    /// At the end of the upstream stream (`ending`), each process's held events flow through
    /// the ones after it before that one ends too.
    fn feed(&mut self, from: usize, mut events: Vec<StreamEvent>, mut ending: bool) {
        for i in from..self.chain.len() {
            let mut out = std::mem::take(&mut self.scratch);
            for event in events.drain(..) {
                if let Err(e) = self.chain[i].event(event, &mut out) {
                    self.fail(e);
                    return;
                }
            }
            if !ending && self.chain[i].finished() {
                ending = true;
                self.done = true;
            }
            if ending && let Err(e) = self.chain[i].end(&mut out) {
                self.fail(e);
                return;
            }
            self.scratch = events;
            events = out;
        }
        self.ready.extend(events.drain(..).map(Ok));
        self.scratch = events;
    }

    fn fail(&mut self, e: BackendError) {
        self.ready.push_back(Err(e));
        self.done = true;
    }
}

impl Stream for Processed {
    type Item = Result<StreamEvent, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.ready.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(event))) => this.feed(0, vec![event], false),
                Poll::Ready(Some(Err(e))) => {
                    // Upstream errors pass through untouched and end the stream.
                    this.fail(e);
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.feed(0, Vec::new(), true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// Upper-cases text; holds the first delta back until the end when asked to.
    struct Upper {
        hold_first: bool,
    }
    struct UpperRun {
        held: Option<StreamEvent>,
        hold_first: bool,
    }
    impl EventProcessor for Upper {
        fn name(&self) -> &'static str {
            "upper"
        }
        fn position(&self) -> Position {
            Position::AfterFirstOutput
        }
        fn begin(&self, _: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
            Some(Box::new(UpperRun {
                held: None,
                hold_first: self.hold_first,
            }))
        }
    }
    impl EventProcess for UpperRun {
        fn event(
            &mut self,
            event: StreamEvent,
            out: &mut Vec<StreamEvent>,
        ) -> Result<(), BackendError> {
            let event = match event {
                StreamEvent::TextDelta { text } => StreamEvent::TextDelta {
                    text: text.to_uppercase(),
                },
                other => other,
            };
            if self.hold_first && self.held.is_none() {
                self.held = Some(event);
            } else {
                out.push(event);
            }
            Ok(())
        }
        fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
            out.extend(self.held.take());
            Ok(())
        }
    }

    /// Fails on a text delta containing `bad`.
    struct Reject;
    struct RejectRun;
    impl EventProcessor for Reject {
        fn name(&self) -> &'static str {
            "reject"
        }
        fn position(&self) -> Position {
            Position::BeforeFirstOutput
        }
        fn begin(&self, _: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
            Some(Box::new(RejectRun))
        }
    }
    impl EventProcess for RejectRun {
        fn event(
            &mut self,
            event: StreamEvent,
            out: &mut Vec<StreamEvent>,
        ) -> Result<(), BackendError> {
            if matches!(&event, StreamEvent::TextDelta { text } if text.contains("bad")) {
                return Err(BackendError::internal("rejected"));
            }
            out.push(event);
            Ok(())
        }
    }

    /// Never active.
    struct Idle;
    impl EventProcessor for Idle {
        fn name(&self) -> &'static str {
            "idle"
        }
        fn position(&self) -> Position {
            Position::AfterFirstOutput
        }
        fn begin(&self, _: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
            None
        }
    }

    fn text(t: &str) -> StreamEvent {
        StreamEvent::TextDelta { text: t.into() }
    }

    fn source(events: Vec<StreamEvent>) -> EventStream {
        Box::pin(futures::stream::iter(events.into_iter().map(Ok)))
    }

    fn texts(items: &[Result<StreamEvent, BackendError>]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Ok(StreamEvent::TextDelta { text }) => text.clone(),
                Ok(_) => "<other>".into(),
                Err(e) => format!("<error {}>", e.message),
            })
            .collect()
    }

    fn req() -> ChatRequest {
        ChatRequest::default()
    }

    fn ctx() -> RequestContext {
        crate::context::tests::bare_context()
    }

    #[tokio::test]
    async fn a_chain_rewrites_in_order_and_flushes_held_events_at_the_end() {
        let procs = Processors::new(vec![
            Arc::new(Upper { hold_first: true }),
            Arc::new(Upper { hold_first: false }),
        ]);
        let out: Vec<_> = procs
            .apply(
                &ctx(),
                &req(),
                source(vec![text("a"), text("b"), text("c")]),
            )
            .collect()
            .await;
        assert_eq!(texts(&out), ["B", "C", "A"]);
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_with_it() {
        let procs = Processors::new(vec![Arc::new(Reject)]);
        let out: Vec<_> = procs
            .apply(
                &ctx(),
                &req(),
                source(vec![text("ok"), text("bad"), text("never")]),
            )
            .collect()
            .await;
        assert_eq!(texts(&out), ["ok", "<error rejected>"]);
    }

    #[tokio::test]
    async fn no_active_processor_leaves_the_stream_alone() {
        let procs = Processors::new(vec![Arc::new(Idle)]);
        let out: Vec<_> = procs
            .apply(&ctx(), &req(), source(vec![text("x")]))
            .collect()
            .await;
        assert_eq!(texts(&out), ["x"]);
    }
}
