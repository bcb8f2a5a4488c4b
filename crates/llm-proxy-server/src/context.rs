//! `RequestContext`: the one per-request context. A frontend creates it when a request
//! arrives; the request stages, the attempts, the event processors and the finish hooks all
//! read it. Backends see only its small, stable part, [`CallContext`], built per attempt.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse as _, Response};
use http::{HeaderMap, HeaderName, HeaderValue};
use llm_proxy_api::{CallContext, LossyNotes};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::{ProxyError, WireFormat};
use crate::finish::{FinishHooks, Finished};
use crate::parse_budget::ParsePermit;
use crate::state::AppState;
use crate::timing::WaitClock;

/// Which configured client key authenticated the request, as a stable hash of the key (never
/// the key; unlike the key's position in `auth.api_keys` it stays with the key when the list
/// is edited). Set by the auth middleware as a request extension. Part of the session
/// identity in multi-user mode, so two clients never share a session by naming the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientIdentity(Arc<str>);

impl ClientIdentity {
    /// The identity of an accepted client key.
    pub fn of_key(key: &str) -> Self {
        Self(crate::session::client_label_of_key(key).into())
    }

    /// The label (a hash).
    pub fn label(&self) -> &str {
        &self.0
    }
}

/// Everything one request carries. Cheap to clone (shared parts are behind `Arc`s): the
/// streaming body and the WebSocket turn hold clones.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Proxy request id (`x-request-id`).
    pub request_id: String,
    /// When the request arrived.
    pub started: Instant,
    /// Time spent waiting on the upstream.
    pub clock: WaitClock,
    /// Client protocol.
    pub format: WireFormat,
    /// What conversions had to drop.
    pub lossy: LossyNotes,
    /// Client request headers.
    pub headers: Arc<HeaderMap>,
    /// The authenticated client key, in multi-user mode.
    pub client: Option<ClientIdentity>,
    /// A session id the frontend found in its own protocol (e.g. Responses
    /// `prompt_cache_key`), used when the client names no session the common way.
    pub session_hint: Option<String>,
    /// Cancelled when the client goes away (the handler or the streaming body is dropped)
    /// or the request has finished; every attempt's [`CallContext::cancel`] is this token.
    pub cancel: CancellationToken,
    /// What the request learns as it goes, shared by every clone (one allocation).
    slots: Arc<Slots>,
    /// What runs once the request has finished (metrics, ...), chosen at startup.
    hooks: FinishHooks,
    /// What the answer used, when usage accounting is on.
    usage: Option<Arc<crate::usage::tally::UsageTally>>,
    /// Wire capture is on: responses carry a [`CaptureLink`](crate::capture::CaptureLink).
    capturing: bool,
    /// The backend attempts, when tracing is on.
    attempts: Option<Arc<crate::telemetry::attempts::AttemptLog>>,
}

/// What a request learns as it goes, each set once, shared by the context's clones (the
/// streaming body, the WebSocket turn, the capture's link).
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// The resolved session id and its store key, once the session stage ran.
    session: OnceLock<(String, String)>,
    /// The session's state as the request stages left it (for the event processors).
    session_state: OnceLock<crate::session::SessionState>,
    /// Instance that served the request, once known.
    backend: OnceLock<String>,
    /// Time to the first meaningful output, once known.
    ttft: OnceLock<Duration>,
    /// Room in the parsing budget, held until the call has started.
    parse_permit: Mutex<Option<ParsePermit>>,
    /// The request's place in the dedup cache, once admitted.
    dedup: OnceLock<crate::dedup::Ticket>,
    /// The prompt's token counts, computed on first need (context-window checks).
    prompt_size: crate::context_window::PromptSize,
}

impl Slots {
    /// The resolved session id, once known.
    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session.get().map(|(id, _)| id.as_str())
    }

    /// The instance that served the request, once known.
    pub(crate) fn backend(&self) -> Option<&str> {
        self.backend.get().map(String::as_str)
    }
}

impl RequestContext {
    /// Starts the clock for a request in `format`. Translation is strict when the
    /// configuration says so (`translation.strict`) or the client asks (`x-llm-proxy-strict: 1`).
    pub fn new(state: &AppState, format: WireFormat, headers: HeaderMap) -> Self {
        let strict = state.config().strict_translation || asks_for_strict(&headers);
        Self {
            request_id: llm_proxy_api::ids::request_id(),
            started: Instant::now(),
            clock: WaitClock::new(),
            format,
            lossy: LossyNotes::with_strict(strict),
            headers: Arc::new(headers),
            client: None,
            session_hint: None,
            cancel: CancellationToken::new(),
            slots: Arc::default(),
            hooks: state.pipeline().finish_hooks().clone(),
            usage: state.pipeline().records_usage().then(Arc::default),
            capturing: state.http_client().sink().is_some(),
            attempts: state.pipeline().traces().then(Arc::default),
        }
    }

    /// Names the authenticated client key (from the auth middleware's extension).
    #[must_use]
    pub fn with_client(mut self, client: Option<ClientIdentity>) -> Self {
        self.client = client;
        self
    }

    /// A guard that cancels [`cancel`](Self::cancel) when dropped: held by whatever lives as
    /// long as the client is there (the handler's future, the streaming body).
    pub fn cancel_on_drop(&self) -> DropGuard {
        self.cancel.clone().drop_guard()
    }

    /// The context one backend attempt sees.
    pub fn call_context(&self, model: String, deadline: Option<Instant>) -> CallContext {
        CallContext {
            request_id: self.request_id.clone(),
            session_id: self.session_id().map(str::to_owned),
            model,
            deadline,
            // The request's own token, not a child: nothing cancels one attempt alone, and a
            // child costs a lock of the parent to make and another to drop.
            cancel: self.cancel.clone(),
            client_headers: self.headers.clone(),
            lossy: self.lossy.clone(),
        }
    }

    /// The resolved session id, once known.
    pub fn session_id(&self) -> Option<&str> {
        self.slots.session_id()
    }

    /// The resolved session's key in the session store, once known.
    pub fn session_key(&self) -> Option<&str> {
        self.slots.session.get().map(|(_, key)| key.as_str())
    }

    /// Records the resolved session id and its store key (the first call wins).
    pub fn set_session(&self, id: String, key: String) {
        let _ = self.slots.session.set((id, key));
    }

    /// The session's state after the request stages (`None` without a session), which the
    /// event processors read (a session's loop-detection toggle, its tool lists, ...).
    pub fn session_state(&self) -> Option<&crate::session::SessionState> {
        self.slots.session_state.get()
    }

    /// Records the session's state once the stages ran (the first call wins).
    pub(crate) fn set_session_state(&self, state: crate::session::SessionState) {
        let _ = self.slots.session_state.set(state);
    }

    /// The request's dedup ticket, once the dedup stage admitted it.
    pub fn dedup_ticket(&self) -> Option<&crate::dedup::Ticket> {
        self.slots.dedup.get()
    }

    /// Records the dedup ticket (the first call wins).
    pub fn set_dedup_ticket(&self, ticket: crate::dedup::Ticket) {
        // Stages run once per request; a second ticket would just be dropped (done).
        let _ = self.slots.dedup.set(ticket);
    }

    /// The prompt's token counts, shared by the request's attempts.
    pub fn prompt_size(&self) -> &crate::context_window::PromptSize {
        &self.slots.prompt_size
    }

    /// What the answer used so far, when usage accounting is on.
    pub fn usage_tally(&self) -> Option<&Arc<crate::usage::tally::UsageTally>> {
        self.usage.as_ref()
    }

    /// The backend attempts so far, when tracing is on.
    pub fn attempt_log(&self) -> Option<&Arc<crate::telemetry::attempts::AttemptLog>> {
        self.attempts.as_ref()
    }

    /// The instance that served the request, once known.
    pub fn backend(&self) -> Option<&str> {
        self.slots.backend()
    }

    /// Time to the first meaningful output, once known.
    pub fn ttft(&self) -> Option<Duration> {
        self.slots.ttft.get().copied()
    }

    /// Notes where the call went and when its first output arrived.
    pub(crate) fn started_output(&self, instance: &str) {
        let _ = self.slots.backend.set(instance.to_owned());
        let _ = self.slots.ttft.set(self.started.elapsed());
    }

    /// Keeps the request's room in the parsing budget until the call has started: the canonical
    /// request lives until then (a retry may still need it).
    pub fn hold_parse_permit(&self, permit: ParsePermit) {
        if let Ok(mut slot) = self.slots.parse_permit.lock() {
            *slot = Some(permit);
        }
    }

    pub(crate) fn release_parse_permit(&self) {
        if let Ok(mut slot) = self.slots.parse_permit.lock() {
            slot.take();
        }
    }

    /// Runs the finish hooks (metrics, ...) once the request is over.
    pub fn finish(&self, stream: bool, outcome: &str) {
        self.hooks.run(
            self,
            &Finished {
                stream,
                outcome,
                overhead: self.started.elapsed().saturating_sub(self.clock.waited()),
                upstream: self.clock.waited(),
            },
        );
    }

    /// Time in the proxy itself so far (since arrival, less the time waiting on upstreams).
    pub fn overhead(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.clock.waited())
    }

    /// Adds `x-request-id`, `x-llm-proxy-overhead-ms` and, when a conversion dropped
    /// something, `x-llm-proxy-lossy`.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        let lossy = self.lossy.snapshot();
        if !lossy.is_empty() {
            tracing::info!(request_id = %self.request_id, lossy = ?lossy, "conversion dropped information");
            let text: String = lossy
                .join("; ")
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control())
                .take(2000)
                .collect();
            if let Ok(v) = HeaderValue::from_str(&text) {
                headers.insert(LOSSY.clone(), v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert(REQUEST_ID.clone(), v);
        }
        headers.insert(OVERHEAD_MS.clone(), millis_header(self.overhead()));
    }

    /// [`stamp`](Self::stamp)s the response's headers and, when capture is on, hands the
    /// capture what it learns later (the session, the instance).
    pub fn stamp_response(&self, resp: &mut Response) {
        self.stamp(resp.headers_mut());
        if self.capturing {
            resp.extensions_mut()
                .insert(crate::capture::CaptureLink::new(self.slots.clone()));
        }
    }

    /// An error response in this request's format.
    pub fn error(&self, e: ProxyError) -> Response {
        tracing::info!(request_id = %self.request_id, status = e.status().as_u16(), label = e.label(), "request failed: {e}");
        if let Some(tally) = &self.usage {
            tally.set_status(e.status().as_u16());
        }
        self.finish(false, e.label());
        let mut resp = e.into_response_for(self.format).into_response();
        self.stamp_response(&mut resp);
        resp
    }
}

// Names checked once, not parsed from a string on every response.
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static OVERHEAD_MS: HeaderName = HeaderName::from_static("x-llm-proxy-overhead-ms");
static LOSSY: HeaderName = HeaderName::from_static("x-llm-proxy-lossy");
static STRICT: HeaderName = HeaderName::from_static("x-llm-proxy-strict");

/// `d` in milliseconds with three decimals (`0.046`), written without float formatting (a
/// per-request cost the profile showed).
fn millis_header(d: Duration) -> HeaderValue {
    let micros = d.as_micros();
    let mut buf = [0u8; 48];
    let mut end = buf.len();
    let mut push = |b: u8| {
        end -= 1;
        buf[end] = b;
    };
    let mut frac = micros % 1000;
    for _ in 0..3 {
        push(b'0' + (frac % 10) as u8);
        frac /= 10;
    }
    push(b'.');
    let mut whole = micros / 1000;
    loop {
        push(b'0' + (whole % 10) as u8);
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&buf[end..]).unwrap_or(HeaderValue::from_static("0.000"))
}

/// Whether the client asked for strict translation (`x-llm-proxy-strict: 1` or `true`).
fn asks_for_strict(headers: &HeaderMap) -> bool {
    headers
        .get(&STRICT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim(), "1") || v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn overhead_header_is_milliseconds_with_three_decimals() {
        let cases = [
            (Duration::ZERO, "0.000"),
            (Duration::from_micros(46), "0.046"),
            (Duration::from_nanos(1_234_999), "1.234"),
            (Duration::from_secs(12), "12000.000"),
            (Duration::MAX, "18446744073709551615999.999"),
        ];
        for (d, want) in cases {
            assert_eq!(millis_header(d).to_str().unwrap(), want, "{d:?}");
        }
    }

    /// A context with no application state behind it (no finish hooks).
    pub(crate) fn bare_context() -> RequestContext {
        RequestContext {
            request_id: "req_test".into(),
            started: Instant::now(),
            clock: WaitClock::new(),
            format: WireFormat::OpenAi,
            lossy: LossyNotes::new(),
            headers: Arc::default(),
            client: None,
            session_hint: None,
            cancel: CancellationToken::new(),
            slots: Arc::default(),
            hooks: FinishHooks::default(),
            usage: None,
            capturing: false,
            attempts: None,
        }
    }

    #[test]
    fn attempts_are_cancelled_when_the_request_goes_away() {
        let ctx = bare_context();
        let guard = ctx.cancel_on_drop();
        let first = ctx.call_context("m".into(), None);
        let second = ctx.clone().call_context("m".into(), None);
        assert!(!first.cancel.is_cancelled());
        drop(guard);
        assert!(first.cancel.is_cancelled());
        assert!(second.cancel.is_cancelled());
    }

    #[test]
    fn the_first_resolved_session_id_sticks() {
        let ctx = bare_context();
        assert_eq!(ctx.call_context("m".into(), None).session_id, None);
        ctx.set_session("s1".into(), "k1".into());
        ctx.clone().set_session("s2".into(), "k2".into());
        assert_eq!(ctx.session_id(), Some("s1"));
        assert_eq!(ctx.session_key(), Some("k1"));
        assert_eq!(
            ctx.call_context("m".into(), None).session_id.as_deref(),
            Some("s1")
        );
    }
}
