//! The one data path shared by every frontend, and what runs on it. [`Pipeline`] is chosen
//! at startup from the configuration: the request stages ([`crate::stages`]), the event
//! processors ([`crate::processors`]) and the finish hooks ([`crate::finish`]).
//! [`dispatch`] runs one request through it: stages (which may answer locally) → route
//! (plan of legs) → backend attempts with failover, retries and circuit breakers (or a
//! parallel race) → event stream. Nothing is retried once meaningful output exists: an
//! attempt is only handed to the client after its first meaningful event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use llm_proxy_api::error::{BackendError, ErrorKind};
use llm_proxy_api::model::FinishReason;
use llm_proxy_api::stream::{EventStream, StreamEvent};
use llm_proxy_api::{ChatRequest, Message, Role, Usage};
use tokio::sync::Notify;

use crate::config::GatewayConfig;
use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::finish::{FinishHook, FinishHooks};
use crate::processors::Processors;
use crate::routing::breaker::{Admission, Breakers};
use crate::routing::selector::{SelectorKind, pick_by_weight};
use crate::routing::{BackendSlot, Leg, Plan, apply_params, instances_for};
use crate::stages::{Flow, RequestStage, StageCall, Stages};
use crate::state::AppState;

/// Prompt appended when retrying a stream that ended without meaningful output.
pub const EMPTY_STREAM_RECOVERY_PROMPT: &str = "The previous response was empty, please try again.";

/// The instance name reported for answers the proxy gives itself (in-chat commands).
pub const LOCAL_INSTANCE: &str = "llm-proxy";

/// What runs on the data path, chosen once at startup.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    stages: Stages,
    before_output: Processors,
    after_output: Processors,
    finish: FinishHooks,
    /// Whether requests gather their usage (a usage store records it, or traces carry it).
    records_usage: bool,
    /// Whether requests note their backend attempts (traces are exported).
    traces: bool,
    /// Where traces go, when exported.
    #[cfg(feature = "otel")]
    trace_sink: Option<Arc<crate::telemetry::TraceSink>>,
    /// Context-window enforcement, when on.
    context_windows: Option<crate::context_window::ContextWindows>,
}

impl Pipeline {
    /// The stages, processors and hooks the configuration asks for. `backend_ids` are the
    /// configured instances (`openai`, `openai.1`, ...), which commands check names against.
    pub fn from_config<I>(
        config: &GatewayConfig,
        backend_ids: I,
        sessions: &Arc<dyn crate::session::SessionStore>,
    ) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        use crate::stages::{commands, redaction, session, session_params};
        let mut stages: Vec<Arc<dyn RequestStage>> = vec![
            Arc::new(session::ResolveSession),
            Arc::new(commands::Commands::new(
                crate::commands::CommandEnv::from_config(config, backend_ids),
            )),
        ];
        if let Some(stage) = redaction::RedactKeys::new(
            crate::redaction::KeyRedactor::for_provider_keys(config),
            config.auth.redact_api_keys_in_prompts,
        ) {
            stages.push(Arc::new(stage));
        }
        stages.push(Arc::new(session_params::SessionParams));
        if config.keep_reasoning {
            stages.push(Arc::new(crate::stages::restore_reasoning::RestoreReasoning));
        }
        let mut hooks: Vec<Arc<dyn FinishHook>> = vec![Arc::new(crate::finish::Metrics)];
        // Before the guards' stages, so a refused duplicate counts nowhere (loop guard).
        if config.dedup.enabled() {
            let cache = crate::dedup::DedupCache::new(&config.dedup, config.proxy_timeout);
            stages.push(Arc::new(crate::stages::dedup::Dedup::new(cache)));
            hooks.push(Arc::new(crate::dedup::ReleaseDedup));
        }
        // Repair first (think tags, text tool calls, JSON), so the guards judge repaired calls.
        let mut before_output = crate::processors::steering(&config.steering);
        let mut after_output = Vec::new();
        steering_guards(config, &mut stages, &mut before_output, &mut after_output);
        if config.keep_reasoning {
            after_output.push(Arc::new(
                crate::processors::keep_reasoning::KeepReasoning::new(sessions.clone()),
            ));
        }
        Self {
            stages: Stages::new(stages),
            before_output: Processors::new(before_output),
            after_output: Processors::new(after_output),
            finish: FinishHooks::new(hooks),
            records_usage: false,
            traces: false,
            #[cfg(feature = "otel")]
            trace_sink: None,
            context_windows: crate::context_window::ContextWindows::from_config(
                &config.model_limits,
            ),
        }
    }

    /// Records every request's usage in `store` (a finish hook; requests gather their
    /// usage as their answer streams by).
    #[must_use]
    pub fn with_usage(mut self, store: Arc<dyn crate::usage::UsageStore>) -> Self {
        let mut hooks: Vec<Arc<dyn FinishHook>> = self.finish.hooks().to_vec();
        hooks.push(Arc::new(crate::usage::hook::RecordUsage::new(store)));
        self.finish = FinishHooks::new(hooks);
        self.records_usage = true;
        self
    }

    /// Exports every request's trace to `sink` (a finish hook; requests note their attempts
    /// and gather their usage).
    #[cfg(feature = "otel")]
    #[must_use]
    pub fn with_tracing(mut self, sink: Arc<crate::telemetry::TraceSink>) -> Self {
        let mut hooks: Vec<Arc<dyn FinishHook>> = self.finish.hooks().to_vec();
        hooks.push(Arc::new(crate::telemetry::hook::TraceRequests::new(
            sink.clone(),
        )));
        self.finish = FinishHooks::new(hooks);
        self.records_usage = true;
        self.traces = true;
        self.trace_sink = Some(sink);
        self
    }

    /// Where traces go, when they are exported.
    #[cfg(feature = "otel")]
    pub fn trace_sink(&self) -> Option<&Arc<crate::telemetry::TraceSink>> {
        self.trace_sink.as_ref()
    }

    /// Whether requests gather their usage (for a usage store or traces).
    pub fn records_usage(&self) -> bool {
        self.records_usage
    }

    /// Whether requests note their backend attempts (for traces).
    pub fn traces(&self) -> bool {
        self.traces
    }

    /// The request stages, in order.
    pub fn stages(&self) -> &Stages {
        &self.stages
    }

    /// The finish hooks every request context runs.
    pub fn finish_hooks(&self) -> &FinishHooks {
        &self.finish
    }

    /// Names of everything that runs, for `/v1/diagnostics`.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "stages": self.stages.names(),
            "processors_before_first_output": self.before_output.names(),
            "processors_after_first_output": self.after_output.names(),
            "finish_hooks": self.finish.names(),
            "context_window_enforcement": self.context_windows.is_some(),
        })
    }
}

/// The guards over tool calls and loops (`session.*`, config/guards.rs): tool access
/// (stage + processor), dangerous commands, the tool-progress loop guard (stage + processor),
/// streaming loop detection. Each processor is inactive for requests it has nothing to do
/// with (no tools, nothing armed, detection off).
fn steering_guards(
    config: &GatewayConfig,
    stages: &mut Vec<Arc<dyn RequestStage>>,
    before_output: &mut Vec<Arc<dyn crate::processors::EventProcessor>>,
    after_output: &mut Vec<Arc<dyn crate::processors::EventProcessor>>,
) {
    use crate::processors::{dangerous_commands, loop_guard, stream_loop, tool_access};
    let steering = &config.guards;
    match crate::tool_access::ToolAccess::new(&steering.tool_access) {
        Ok(access) => {
            let access = Arc::new(access);
            stages.push(Arc::new(crate::stages::tool_access::StripTools::new(
                access.clone(),
            )));
            before_output.push(Arc::new(tool_access::BlockToolCalls::new(access)));
        }
        // Validated when the configuration was loaded; never expected.
        Err(e) => tracing::error!("tool access policies not applied: {e}"),
    }
    if steering.dangerous_commands {
        before_output.push(Arc::new(dangerous_commands::DangerousCommands::new(
            steering.dangerous_command_message.as_deref(),
        )));
    }
    let tool_loop = &steering.tool_loop;
    if tool_loop.enabled {
        stages.push(Arc::new(crate::stages::loop_guard::CountToolLoops::new(
            tool_loop.clone(),
        )));
        before_output.push(Arc::new(loop_guard::ToolLoopGuard::new(
            tool_loop.steering_message.as_deref(),
            tool_loop.max_repeated_outputs,
        )));
    }
    after_output.push(Arc::new(stream_loop::StreamLoopDetector::new(
        steering.streaming_loop_detection,
    )));
}

/// Where a call went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Backend instance id.
    pub instance: String,
    /// Upstream model.
    pub model: String,
}

/// A call in flight: its event stream (starting with buffered events up to the first
/// meaningful one) and where it went.
pub struct Dispatched {
    /// Events from the backend.
    pub stream: EventStream,
    /// The route that won.
    pub route: Route,
}

enum Outcome {
    /// Meaningful output started; the stream replays it.
    Streaming(EventStream),
    /// The stream ended with nothing meaningful; these are its events.
    Empty(Vec<StreamEvent>),
    /// The attempt failed before any meaningful output.
    Failed(BackendError),
}

/// Reports a failed attempt to the instance's breaker: only failures that say something about
/// the instance's health count (the error decided that when it was created), so no client can
/// open a breaker with requests of its own making. An upstream that answered (a 4xx) is alive;
/// a failure that never reached it (bad input, a client's deadline) just ends the admitted call.
fn record_failure(breakers: &Breakers, instance: &str, admission: Admission, e: &BackendError) {
    if e.counts_against_backend {
        breakers.record(instance, admission, false);
    } else if e.upstream_status.is_some() {
        breakers.record(instance, admission, true);
    } else {
        breakers.release(instance, admission);
    }
}

/// When each race leg starts (its delay after the first) and how long it may take to its first
/// meaningful output. The selector parser bounds both; a value that still makes no `Duration`
/// is refused here rather than panicking.
fn race_timings(plan: &Plan) -> Result<Vec<(Duration, Option<Duration>)>, ProxyError> {
    let max_handicap = plan
        .legs
        .iter()
        .filter_map(|l| l.annotations.handicap)
        .fold(0.0, f64::max);
    plan.legs
        .iter()
        .map(|leg| {
            let lead = (max_handicap - leg.annotations.handicap.unwrap_or(0.0)).max(0.0);
            let delay = Duration::try_from_secs_f64(lead).map_err(|_| {
                ProxyError::invalid(
                    "handicap must be a number of seconds",
                    Some("model"),
                    Some("invalid_handicap"),
                )
            })?;
            let ttft = leg
                .annotations
                .ttft_timeout
                .map(|t| {
                    Duration::try_from_secs_f64(t).map_err(|_| {
                        ProxyError::invalid(
                            "ttft_timeout must be a number of seconds",
                            Some("model"),
                            Some("invalid_ttft_timeout"),
                        )
                    })
                })
                .transpose()?;
            Ok((delay, ttft))
        })
        .collect()
}

/// Runs `req` through the request stages, routes it and starts the call. Returns once
/// meaningful output exists (or the stream ended), so every failure before that point can
/// still be retried or failed over. A stage that answers locally (an in-chat command) gets
/// a short synthetic stream, rendered by the frontend like any backend's.
///
/// The request comes boxed: a `ChatRequest` held by value stays in every future that takes
/// it (an async fn keeps its arguments for its whole life), and each of those futures is
/// copied whole when its caller awaits it; boxed, each level keeps a pointer.
pub async fn dispatch(
    state: &AppState,
    mut req: Box<ChatRequest>,
    ctx: &RequestContext,
) -> Result<Dispatched, ProxyError> {
    // Strict translation: what the frontend's conversion had to drop refuses the request
    // (the connectors refuse what encoding for their upstream would drop).
    if let Some(refusal) = ctx.lossy.strict_refusal() {
        return Err(refusal.into());
    }
    let pipeline = state.pipeline();
    // In blocks, so the call and the session (room for each) are not kept in this future
    // across the awaits further down.
    let flow = {
        let (flow, session) = {
            let mut call = StageCall {
                ctx,
                req: &mut req,
                session: None,
            };
            let flow = pipeline.stages.run(state, &mut call).await;
            (flow, call.session.take())
        };
        if let Some(session) = session {
            if session.dirty
                && let Some(key) = ctx.session_key()
                && let Err(e) = state.sessions().save(key, &session.state).await
            {
                // The answer still goes out; only the session's new settings may be lost.
                tracing::warn!(request_id = %ctx.request_id, error = e.label(), "cannot save the session: {e}");
            }
            // The event processors read the session from the context (no copy: moved).
            ctx.set_session_state(session.state);
        }
        flow
    };
    let tally = ctx.usage_tally().cloned();
    if let Some(tally) = &tally {
        tally.set_requested_model(&req.model);
    }
    if let Flow::Answer(text) = flow? {
        let mut d = local_answer(&req.model, text);
        if let Some(tally) = tally {
            d.stream = crate::usage::tally::UsageTally::tap(tally, d.stream);
        }
        return Ok(d);
    }
    if let Some(tally) = &tally {
        // Only read should the upstream report no usage; lengths only, no tokenizing.
        tally.set_prompt_estimate(crate::token_count::estimate(&req));
    }
    let sticky = ctx
        .session_state()
        .and_then(|s| s.affinity.get(&req.model))
        .map(String::as_str);
    let plan = state.router().plan(state, &req, ctx.session_id(), sticky)?;
    let after_output = pipeline.after_output.begin(ctx, &req);
    // A `[first]` pick is the session's opening move, not the instance it keeps to.
    let route = (plan.affine && plan.forced_first.is_none()).then(|| req.model.clone());
    let dispatched = match plan.kind {
        SelectorKind::Parallel => race(state, &plan, &req, ctx).await,
        _ => sequential(state, &plan, &mut req, ctx).await,
    };
    // A request the client got wrong (a 400) says nothing about the instance.
    let instance_failed = dispatched.as_ref().err().map(ProxyError::status);
    if let (Some(route), Some(key)) = (route, ctx.session_key())
        && !instance_failed.is_some_and(|s| s.is_client_error() && s.as_u16() != 429)
    {
        let served = dispatched.as_ref().ok().map(|d| d.route.instance.as_str());
        remember_instance(state, ctx, key, &route, served).await;
    }
    let mut d = dispatched?;
    d.stream = after_output.apply(d.stream);
    if let Some(tally) = tally {
        d.stream = crate::usage::tally::UsageTally::tap(tally, d.stream);
    }
    Ok(d)
}

/// Session affinity: records the instance that served `route` (`None`: the request failed) in
/// the session when it changed
/// (one store write per change, not per request); a failed request forgets the route, so the
/// next one picks afresh rather than returning to the instance that just failed.
async fn remember_instance(
    state: &AppState,
    ctx: &RequestContext,
    key: &str,
    route: &str,
    served: Option<&str>,
) {
    let known = ctx
        .session_state()
        .and_then(|s| s.affinity.get(route))
        .map(String::as_str);
    if known == served {
        return;
    }
    let result = state
        .sessions()
        .update(key, &mut |s| match served {
            Some(instance) => s.remember_instance(route, instance),
            None => {
                s.affinity.remove(route);
            }
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(request_id = %ctx.request_id, error = e.label(), "cannot save the session's instance: {e}");
    }
}

/// A local answer as the events of an upstream answer (start, the text, zero usage, stop), so
/// a frontend renders it in the client's protocol, streamed or collected, like any answer.
pub fn local_answer_events(text: String, model: &str) -> [StreamEvent; 4] {
    [
        StreamEvent::Start {
            id: Some(llm_proxy_api::ids::response_id()),
            model: Some(model.to_owned()),
        },
        StreamEvent::TextDelta { text },
        StreamEvent::Usage(Usage::default()),
        StreamEvent::Finish {
            reason: FinishReason::Stop,
        },
    ]
}

/// The proxy's own answer (a command's result): no backend, the instance is [`LOCAL_INSTANCE`].
fn local_answer(model: &str, text: String) -> Dispatched {
    let events = local_answer_events(text, model);
    Dispatched {
        stream: Box::pin(futures::stream::iter(events.into_iter().map(Ok))),
        route: Route {
            instance: LOCAL_INSTANCE.to_owned(),
            model: model.to_owned(),
        },
    }
}

/// Chooses the next leg: in order for failover, by weight (excluding failed legs) for
/// weighted selectors.
fn next_leg(plan: &Plan, failed: &[usize]) -> Option<usize> {
    // `[first]` decides the session's first pick only, then the session keeps to the instance
    // it used (affinity); re-rolls after a failure use weights.
    if failed.is_empty()
        && let Some(forced) = plan.forced_first.or(plan.sticky_leg)
    {
        return Some(forced);
    }
    match plan.kind {
        SelectorKind::Weighted => pick_by_weight(
            plan.legs.iter().map(|l| l.annotations.weight),
            failed,
            fastrand::f64(),
        ),
        _ => (0..plan.legs.len()).find(|i| !failed.contains(i)),
    }
}

async fn sequential(
    state: &AppState,
    plan: &Plan,
    req: &mut ChatRequest,
    ctx: &RequestContext,
) -> Result<Dispatched, ProxyError> {
    let fh = &state.config().failure_handling;
    let budget_end = Instant::now() + fh.total_timeout_budget;
    let breakers = state.router().breakers();
    let mut failed_legs = Vec::new();
    let mut hops = 0u32;
    let mut empty_retries = 0u32;
    let mut last_error: Option<BackendError> = None;
    while let Some(li) = next_leg(plan, &failed_legs) {
        let leg = &plan.legs[li];
        for slot in instances_for(state, &leg.target) {
            loop {
                let admission = breakers.admit(&slot.instance);
                if admission == Admission::Rejected {
                    last_error.get_or_insert_with(|| {
                        BackendError::transport(format!(
                            "backend '{}' is temporarily disabled after repeated failures (circuit open)",
                            slot.instance
                        ))
                    });
                    break;
                }
                let outcome = attempt(state, slot, leg, req, ctx).await;
                let route = Route {
                    instance: slot.instance.clone(),
                    model: leg.model.clone(),
                };
                match outcome {
                    Outcome::Streaming(stream) => {
                        breakers.record(&slot.instance, admission, true);
                        return Ok(Dispatched { stream, route });
                    }
                    Outcome::Empty(events) => {
                        breakers.record(&slot.instance, admission, true);
                        if fh.enabled
                            && empty_retries < fh.max_empty_stream_retries
                            && Instant::now() < budget_end
                        {
                            empty_retries += 1;
                            tracing::warn!(instance = %slot.instance, "empty response; retrying once with a recovery prompt");
                            req.messages
                                .push(Message::text(Role::User, EMPTY_STREAM_RECOVERY_PROMPT));
                            continue;
                        }
                        let stream: EventStream =
                            Box::pin(futures::stream::iter(events.into_iter().map(Ok)));
                        return Ok(Dispatched { stream, route });
                    }
                    Outcome::Failed(e) => {
                        record_failure(breakers, &slot.instance, admission, &e);
                        tracing::warn!(instance = %slot.instance, kind = e.kind.label(), retryable = e.retryable, "attempt failed: {e}");
                        if !fh.enabled || !e.retryable {
                            return Err(e.into());
                        }
                        hops += 1;
                        let now = Instant::now();
                        if hops > fh.max_failover_hops || now >= budget_end {
                            return Err(e.into());
                        }
                        // A short Retry-After is waited out on the same instance (keep-alives
                        // keep streaming clients patient meanwhile).
                        if let Some(after) = e.retry_after
                            && after <= fh.max_silent_wait
                            && now + after < budget_end
                        {
                            let wait = after.max(fh.min_retry_wait);
                            tracing::info!(instance = %slot.instance, "waiting {:.1}s (Retry-After) before retrying", wait.as_secs_f64());
                            tokio::time::sleep(wait).await;
                            last_error = Some(e);
                            continue;
                        }
                        last_error = Some(e);
                        break;
                    }
                }
            }
        }
        failed_legs.push(li);
        if plan.kind == SelectorKind::Single {
            break;
        }
    }
    Err(last_error.map(ProxyError::from).unwrap_or_else(|| {
        ProxyError::invalid(
            "no backend could serve the request",
            Some("model"),
            Some("routing_exhausted"),
        )
    }))
}

/// Runs the legs of a `!` selector concurrently. Legs start by handicap (the highest at once,
/// the others `max - own` seconds later, or as soon as a started leg fails); the first leg with
/// meaningful output wins and every other leg is dropped, which closes its upstream connection.
async fn race(
    state: &AppState,
    plan: &Plan,
    req: &ChatRequest,
    ctx: &RequestContext,
) -> Result<Dispatched, ProxyError> {
    let timings = race_timings(plan)?;
    let leg_failed = Notify::new();
    let mut legs = FuturesUnordered::new();
    for (leg, (delay, ttft)) in plan.legs.iter().zip(timings) {
        let leg_failed = &leg_failed;
        legs.push(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = leg_failed.notified() => {}
                }
            }
            let Some(slot) = instances_for(state, &leg.target)
                .into_iter()
                .find(|s| state.router().breakers().is_available(&s.instance))
            else {
                return (
                    leg,
                    None,
                    Outcome::Failed(BackendError::transport(format!(
                        "backend '{}' is unavailable (circuit open)",
                        leg.target
                    ))),
                );
            };
            let run = attempt(state, slot, leg, req, ctx);
            let outcome = match ttft {
                Some(t) => tokio::time::timeout(t, run).await.unwrap_or_else(|_| {
                    let message = format!("no output within ttft_timeout={}s", t.as_secs_f64());
                    // A deadline the client picked says nothing about the backend's health.
                    Outcome::Failed(if plan.client_written {
                        BackendError::client_timeout(message)
                    } else {
                        BackendError::timeout(message)
                    })
                }),
                None => run.await,
            };
            (leg, Some(slot), outcome)
        });
    }
    let mut last_error = None;
    let mut fallback_empty = None;
    while let Some((leg, slot, outcome)) = legs.next().await {
        let instance = slot.map_or_else(|| leg.target.clone(), |s| s.instance.clone());
        let route = Route {
            instance: instance.clone(),
            model: leg.model.clone(),
        };
        match outcome {
            Outcome::Streaming(stream) => {
                state
                    .router()
                    .breakers()
                    .record(&instance, Admission::Allowed, true);
                tracing::debug!(winner = %instance, "parallel race won");
                return Ok(Dispatched { stream, route });
            }
            Outcome::Empty(events) => {
                fallback_empty.get_or_insert((events, route));
                leg_failed.notify_waiters();
            }
            Outcome::Failed(e) => {
                if slot.is_some() {
                    record_failure(state.router().breakers(), &instance, Admission::Allowed, &e);
                }
                tracing::warn!(instance = %instance, "race leg failed: {e}");
                last_error = Some(e);
                leg_failed.notify_waiters();
            }
        }
    }
    if let Some((events, route)) = fallback_empty {
        return Ok(Dispatched {
            stream: Box::pin(futures::stream::iter(events.into_iter().map(Ok))),
            route,
        });
    }
    Err(last_error.map(ProxyError::from).unwrap_or_else(|| {
        ProxyError::invalid(
            "no race leg could run",
            Some("model"),
            Some("routing_exhausted"),
        )
    }))
}

/// One call to one instance, read up to its first meaningful event; noted in the request's
/// attempt log when tracing is on.
async fn attempt(
    state: &AppState,
    slot: &BackendSlot,
    leg: &Leg,
    req: &ChatRequest,
    ctx: &RequestContext,
) -> Outcome {
    let Some(log) = ctx.attempt_log() else {
        return call_backend(state, slot, leg, req, ctx).await;
    };
    // Dropped unfinished (a race's loser, a ttft timeout), the guard notes a cancelled attempt.
    let noted = log.begin(&slot.instance, &leg.model);
    let outcome = call_backend(state, slot, leg, req, ctx).await;
    match &outcome {
        Outcome::Streaming(_) => noted.serving(),
        Outcome::Empty(_) => noted.ended(None),
        Outcome::Failed(e) => noted.ended(Some(crate::telemetry::attempts::AttemptError {
            kind: e.kind.label(),
            status: e.upstream_status,
        })),
    }
    outcome
}

async fn call_backend(
    state: &AppState,
    slot: &BackendSlot,
    leg: &Leg,
    req: &ChatRequest,
    ctx: &RequestContext,
) -> Outcome {
    let backend = match &slot.backend {
        Ok(b) => b,
        Err(why) => {
            // Not linked, blocked or misconfigured: a client-side 400 with the guidance, but
            // another branch of the selector may still serve the request.
            let mut e = BackendError::new(
                ErrorKind::InvalidRequest,
                llm_proxy_api::ErrorSource::Config,
                format!("backend '{}' is unavailable: {why}", slot.instance),
            )
            .with_code("backend_unavailable");
            e.retryable = true;
            return Outcome::Failed(e);
        }
    };
    // Backends encode from a borrow; only selector parameters need a modified copy (boxed:
    // this future keeps a pointer, not room for a request, across its awaits).
    let with_params: Box<ChatRequest>;
    let req = if leg.params.is_empty() {
        req
    } else {
        let mut copy = Box::new(req.clone());
        apply_params(&mut copy, &leg.params);
        with_params = copy;
        &with_params
    };
    let call = ctx.call_context(
        leg.model.clone(),
        Some(Instant::now() + state.config().proxy_timeout),
    );
    if let Err(e) = llm_proxy_api::model_name::check_model_name(&leg.model) {
        return Outcome::Failed(e);
    }
    if let Some(windows) = &state.pipeline().context_windows
        && let Err(e) = windows.check(&slot.instance, &leg.model, req, ctx.prompt_size())
    {
        return Outcome::Failed(e);
    }
    tracing::debug!(instance = %slot.instance, model = %leg.model, "calling backend");
    // Every backend error (built-in or plugin, before or after the first byte) is scrubbed
    // here, before failover logs it or a frontend renders it.
    let scrubber = state.scrubber();
    let stream = match ctx.clock.future(backend.stream(&call, req)).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(scrubber.scrub_error(e)),
    };
    let scrubber = scrubber.clone();
    let stream = ctx
        .clock
        .stream(stream.map(move |item| item.map_err(|e| scrubber.scrub_error(e))));
    let mut stream = state
        .pipeline()
        .before_output
        .apply(ctx, req, Box::pin(stream));
    let mut head = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                let meaningful = event.is_meaningful();
                head.push(event);
                if meaningful {
                    let replay = futures::stream::iter(head.into_iter().map(Ok));
                    return Outcome::Streaming(Box::pin(replay.chain(stream)));
                }
            }
            Some(Err(e)) => return Outcome::Failed(e),
            None => return Outcome::Empty(head),
        }
    }
}

/// Milliseconds of `d` as a float.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
