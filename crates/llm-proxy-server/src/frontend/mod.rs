//! Client-facing protocols. Each submodule is one wire format: parse -> model -> dispatch ->
//! render. The shared part (streaming with keep-alives, collecting, overhead headers) is here.

pub mod anthropic;
pub mod diagnostics;
pub mod gemini;
pub mod models;
pub mod openai_chat;
pub mod responses;
pub mod responses_ws;
pub mod sse;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use llm_proxy_api::stream::collect;
use llm_proxy_api::{ChatRequest, ChatResponse, LossyNotes};

use crate::error::{ProxyError, WireFormat};
use crate::parse_budget::ParsePermit;
use crate::pipeline::{CallMeta, dispatch, millis};
use crate::state::AppState;
use crate::timing::WaitClock;
use sse::{PendingCall, SseBody, StreamRenderer};

/// Per-request bookkeeping shared by the handlers.
#[derive(Debug, Clone)]
pub struct RequestMeta {
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
    /// Instance that served the request, once known.
    pub backend: Arc<OnceLock<String>>,
    /// Time to the first meaningful output, once known.
    pub ttft: Arc<OnceLock<Duration>>,
    /// A session id the frontend found in its own protocol (e.g. Responses
    /// `prompt_cache_key`), used when the client names no session the common way.
    pub session_id: Option<String>,
    /// Room in the parsing budget, held until the call has started.
    parse_permit: Arc<std::sync::Mutex<Option<ParsePermit>>>,
}

impl RequestMeta {
    /// Starts the clock for a request in `format`.
    pub fn new(format: WireFormat, headers: HeaderMap) -> Self {
        Self {
            request_id: llm_proxy_api::ids::request_id(),
            started: Instant::now(),
            clock: WaitClock::new(),
            format,
            lossy: LossyNotes::new(),
            headers: Arc::new(headers),
            backend: Arc::default(),
            ttft: Arc::default(),
            session_id: None,
            parse_permit: Arc::default(),
        }
    }

    /// Keeps the request's room in the parsing budget until the call has started: the canonical
    /// request lives until then (a retry may still need it).
    pub fn hold_parse_permit(&self, permit: ParsePermit) {
        if let Ok(mut slot) = self.parse_permit.lock() {
            *slot = Some(permit);
        }
    }

    fn release_parse_permit(&self) {
        if let Ok(mut slot) = self.parse_permit.lock() {
            slot.take();
        }
    }

    /// Records the finished request in the metrics.
    pub fn finish(&self, stream: bool, outcome: &str) {
        let waited = self.clock.waited();
        crate::metrics::record(&crate::metrics::RequestRecord {
            frontend: self.format.label(),
            backend: self.backend.get().map_or("none", String::as_str),
            stream,
            outcome,
            overhead: self.started.elapsed().saturating_sub(waited),
            upstream: waited,
            ttft: self.ttft.get().copied(),
        });
    }

    /// Routes and starts the call, noting the instance and time to first output.
    pub async fn dispatch(
        &self,
        state: &AppState,
        req: ChatRequest,
    ) -> Result<crate::pipeline::Dispatched, ProxyError> {
        let d = dispatch(state, req, &self.call_meta()).await;
        // The canonical request is gone now (dispatch consumed it).
        self.release_parse_permit();
        let d = d?;
        let _ = self.backend.set(d.route.instance.clone());
        let _ = self.ttft.set(self.started.elapsed());
        Ok(d)
    }

    /// What the pipeline needs of this request.
    pub fn call_meta(&self) -> CallMeta {
        CallMeta {
            request_id: self.request_id.clone(),
            clock: self.clock.clone(),
            lossy: self.lossy.clone(),
            headers: self.headers.clone(),
            session_id: self.session_id.clone(),
        }
    }

    /// Proxy overhead so far: elapsed time not spent waiting on the upstream.
    pub fn overhead_ms(&self) -> f64 {
        millis(self.started.elapsed().saturating_sub(self.clock.waited()))
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
                headers.insert("x-llm-proxy-lossy", v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            headers.insert("x-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", self.overhead_ms())) {
            headers.insert("x-llm-proxy-overhead-ms", v);
        }
    }

    /// An error response in this request's format.
    pub fn error(&self, e: ProxyError) -> Response {
        tracing::info!(request_id = %self.request_id, status = e.status().as_u16(), label = e.label(), "request failed: {e}");
        self.finish(false, e.label());
        let mut resp = e.into_response_for(self.format);
        self.stamp(resp.headers_mut());
        resp
    }
}

/// Reads the request body inside the parsing budget: room for the body (its `Content-Length`,
/// or the body limit when the length is not announced) is reserved before the first byte is
/// read, then exchanged for the size the parsed request will take ([`parsed_size_estimate`]).
/// Hand the permit to [`RequestMeta::hold_parse_permit`]: it is released once the call has
/// started and the canonical request is gone.
/// Oversized bodies are 413; a budget that stays full is 503 with `Retry-After`.
pub async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, ParsePermit), ProxyError> {
    let limit = state.config().max_body_bytes;
    let too_large = || ProxyError::PayloadTooLarge { limit };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let reserve = match announced {
        Some(n) if n > limit as u64 => return Err(too_large()),
        Some(n) => usize::try_from(n).unwrap_or(limit),
        None => limit,
    };
    let permit = state.parse_budget().reserve(reserve).await?;
    // Frames go straight into one buffer of the announced size: collecting them first and
    // joining afterwards would hold the body twice.
    let announced = announced.map_or(0, |n| usize::try_from(n).unwrap_or(limit));
    let mut buf = bytes::BytesMut::with_capacity(announced.min(limit));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e = e.into_inner();
            if crate::serve::is_body_read_timeout(e.as_ref()) {
                ProxyError::BodyReadTimeout(state.config().server.body_read_timeout)
            } else {
                ProxyError::invalid(format!("cannot read request body: {e}"), None, None)
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    let body = buf.freeze();
    // Reading needed the body's size; parsing needs what the parsed request will take. Give the
    // first back before asking for the second, so two requests never hold part of the budget
    // while each waits for the rest.
    drop(permit);
    let permit = state
        .parse_budget()
        .reserve(parsed_size_estimate(&body))
        .await?;
    Ok((body, permit))
}

/// Memory a parsed request is expected to take, from its JSON: the bytes themselves plus a
/// per-object cost (wire struct, canonical struct and allocator slack: about 640 bytes per
/// JSON object, measured with 40-byte messages, the worst case). A conversation of many tiny
/// messages costs ten to twenty times its size; one of long texts, little more than its size.
pub fn parsed_size_estimate(body: &[u8]) -> usize {
    const PER_OBJECT: usize = 640;
    let objects = body.iter().filter(|&&b| b == b'{').count();
    body.len()
        .saturating_add(objects.saturating_mul(PER_OBJECT))
}

/// Streams the answer to `req` as SSE. Errors before the first event become HTTP statuses; if
/// the upstream is silent for a keep-alive interval the headers go out and keep-alives follow.
pub async fn stream_response<R: StreamRenderer>(
    state: &AppState,
    req: ChatRequest,
    renderer: R,
    meta: &RequestMeta,
) -> Response {
    let interval = state.config().keepalive_interval;
    let (st, call_meta) = (state.clone(), meta.clone());
    let mut call: PendingCall = Box::pin(async move {
        let d = call_meta.dispatch(&st, req).await?;
        let mut stream = d.stream;
        let first = stream
            .next()
            .await
            .transpose()
            .map_err(ProxyError::Backend)?;
        Ok((stream, first))
    });
    let first = tokio::select! {
        first = tokio::time::timeout(interval, &mut call) => first,
        () = state.shutdown().expired() => return meta.error(ProxyError::ShuttingDown),
    };
    let body = match first {
        Ok(Err(e)) => return meta.error(e),
        Ok(Ok((stream, first))) => SseBody::streaming(stream, first, renderer, interval),
        Err(_) => SseBody::waiting(call, renderer, interval),
    };
    let body = body.ends_on(state.shutdown().expired_token());
    let done = meta.clone();
    let body = body.on_end(move |outcome| {
        if outcome.client_disconnected {
            tracing::info!(request_id = %done.request_id, "client disconnected; upstream call cancelled");
        }
        let label = match (outcome.error, outcome.client_disconnected) {
            (Some(e), _) => e,
            (None, true) => "client_disconnected",
            (None, false) => "ok",
        };
        done.finish(true, label);
    });
    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    meta.stamp(headers);
    resp
}

/// Runs `req` to completion and returns the collected answer.
pub async fn collected(
    state: &AppState,
    req: ChatRequest,
    meta: &RequestMeta,
) -> Result<ChatResponse, ProxyError> {
    let answer = async {
        let d = meta.dispatch(state, req).await?;
        Ok(collect(d.stream, &d.route.model).await?)
    };
    tokio::select! {
        answer = answer => answer,
        () = state.shutdown().expired() => Err(ProxyError::ShuttingDown),
    }
}

/// A JSON response with the request's headers.
pub fn json_response(body: Vec<u8>, meta: &RequestMeta) -> Response {
    meta.finish(false, "ok");
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    meta.stamp(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::parsed_size_estimate;

    #[test]
    fn many_small_objects_cost_far_more_than_their_bytes() {
        let tiny: String = (0..1000)
            .map(|_| r#"{"role":"user","content":"hi"}"#)
            .collect::<Vec<_>>()
            .join(",");
        let long = format!(
            r#"{{"role":"user","content":"{}"}}"#,
            "x".repeat(tiny.len())
        );
        assert!(parsed_size_estimate(tiny.as_bytes()) > 10 * tiny.len());
        assert!(parsed_size_estimate(long.as_bytes()) < 2 * long.len());
    }
}
