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

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt as _;
use llm_proxy_api::stream::{EventStream, StreamEvent, collect};
use llm_proxy_api::{ChatRequest, ChatResponse};

use crate::context::ClientIdentity;
pub use crate::context::RequestContext;
use crate::error::{ProxyError, WireFormat};
use crate::parse_budget::ParsePermit;
use crate::pipeline::dispatch;
use crate::state::AppState;
use sse::{PendingCall, SseBody, StreamRenderer};

/// What a model call's handler takes from the request, moved rather than copied: its headers
/// (axum's `HeaderMap` extractor clones the map), the client key's identity the auth layer
/// attached (when client keys are configured), and the unread body. Turned into the
/// request's context by [`RequestContext::inbound`].
pub struct Inbound {
    headers: HeaderMap,
    client: Option<ClientIdentity>,
    body: Body,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Inbound {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from(req))
    }
}

impl From<axum::extract::Request> for Inbound {
    fn from(req: axum::extract::Request) -> Self {
        let (mut parts, body) = req.into_parts();
        Self {
            client: parts.extensions.remove(),
            headers: parts.headers,
            body,
        }
    }
}

impl RequestContext {
    /// A model call's context, from what its handler took of the request.
    pub fn inbound(state: &AppState, format: WireFormat, inbound: Inbound) -> (Self, Body) {
        let ctx = Self::new(state, format, inbound.headers).with_client(inbound.client);
        (ctx, inbound.body)
    }

    /// Runs the request through the pipeline, noting the instance and time to first output.
    pub async fn dispatch(
        &self,
        state: &AppState,
        req: Box<ChatRequest>,
    ) -> Result<crate::pipeline::Dispatched, ProxyError> {
        let d = dispatch(state, req, self).await;
        // The canonical request is gone now (dispatch consumed it).
        self.release_parse_permit();
        let d = d?;
        self.started_output(&d.route.instance);
        if let Some(tally) = self.usage_tally() {
            tally.set_served_model(&d.route.model);
        }
        Ok(d)
    }
}

/// Reads the request body inside the parsing budget: room for the body (its `Content-Length`,
/// or the body limit when the length is not announced) is reserved before the first byte is
/// read, then exchanged for the size the parsed request will take ([`parsed_size_estimate`]).
/// Hand the permit to [`RequestContext::hold_parse_permit`]: it is released once the call has
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
                discard_rest(body, DRAINED_AFTER_REFUSAL).await;
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

/// How much more of a body past the limit is read (and dropped) before the 413 goes out.
/// A client still sending when the answer comes, with the connection closed on the rest,
/// gets a reset instead of the 413; within this bound it finishes and reads the 413.
const DRAINED_AFTER_REFUSAL: usize = 1 << 20;

/// Reads and drops what is left of `body`, up to `bound` bytes (and within the body read
/// timeout, which the connection applies to every frame).
async fn discard_rest(mut body: Body, bound: usize) {
    let mut seen = 0usize;
    while seen <= bound {
        match body.frame().await {
            Some(Ok(frame)) => seen += frame.data_ref().map_or(0, Bytes::len),
            Some(Err(_)) | None => return,
        }
    }
}

/// Memory a parsed request is expected to take, from its JSON: the bytes themselves plus a
/// per-object cost (wire struct, canonical struct and allocator slack: about 640 bytes per
/// JSON object, measured with 40-byte messages, the worst case). A conversation of many tiny
/// messages costs ten to twenty times its size; one of long texts, little more than its size.
pub fn parsed_size_estimate(body: &[u8]) -> usize {
    const PER_OBJECT: usize = 640;
    // Counted in byte-wide sums over blocks short enough not to overflow one: the compiler
    // turns that into vector compares, many bytes at a time (a filter and count took five
    // instructions a byte, a tenth of a long conversation's whole cost).
    let objects: usize = body
        .chunks(255)
        .map(|block| {
            let found = block
                .iter()
                .fold(0u8, |n, &b| n.wrapping_add(u8::from(b == b'{')));
            usize::from(found)
        })
        .sum();
    body.len()
        .saturating_add(objects.saturating_mul(PER_OBJECT))
}

/// Streams the answer to `req` as SSE. Errors before the first event become HTTP statuses; if
/// the upstream is silent for a keep-alive interval the headers go out and keep-alives follow.
pub async fn stream_response<R: StreamRenderer>(
    state: &AppState,
    req: Box<ChatRequest>,
    renderer: R,
    ctx: &RequestContext,
) -> Response {
    let interval = state.config().keepalive_interval;
    let (st, call_ctx) = (state.clone(), ctx.clone());
    // Whatever ends the request (the body finishing, the client dropping it) cancels the
    // request's token, which every attempt's `CallContext::cancel` is.
    let cancel = ctx.cancel_on_drop();
    let mut call: PendingCall = Box::pin(async move {
        let d = call_ctx.dispatch(&st, req).await?;
        let mut stream = note_dropped_media::<R>(d.stream, &call_ctx);
        let first = stream
            .next()
            .await
            .transpose()
            .map_err(ProxyError::Backend)?;
        Ok((stream, first))
    });
    let first = tokio::select! {
        first = tokio::time::timeout(interval, &mut call) => first,
        () = state.shutdown().expired() => return ctx.error(ProxyError::ShuttingDown),
    };
    let body = match first {
        Ok(Err(e)) => return ctx.error(e),
        Ok(Ok((stream, first))) => SseBody::streaming(stream, first, renderer, interval),
        Err(_) => SseBody::waiting(call, renderer, interval),
    };
    let body = body.ends_on(state.shutdown().expired());
    let done = ctx.clone();
    let body = body.on_end(move |outcome| {
        drop(cancel);
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
    ctx.stamp_response(&mut resp);
    resp
}

/// `stream`, noting generated media the renderer `R` cannot show in the request's lossy notes
/// (the headers may be gone by then: the note is counted in `llm_proxy_lossy_total` and
/// logged when the request finishes), and the decoders' [`StreamEvent::Dropped`] notes.
pub(crate) fn note_dropped_media<R: StreamRenderer>(
    stream: EventStream,
    ctx: &RequestContext,
) -> EventStream {
    note_dropped(stream, ctx, R::dropped)
}

/// `stream`, adding the decoders' [`StreamEvent::Dropped`] notes and `dropped`'s note for
/// each event the client's protocol cannot show to the request's lossy notes.
fn note_dropped(
    stream: EventStream,
    ctx: &RequestContext,
    dropped: fn(&StreamEvent) -> Option<&'static str>,
) -> EventStream {
    let lossy = ctx.lossy.clone();
    let request_id = ctx.request_id.clone();
    Box::pin(stream.inspect(move |event| {
        let note = match event {
            Ok(StreamEvent::Dropped { note }) => Some(note.as_str()),
            Ok(event) => dropped(event),
            Err(_) => None,
        };
        if let Some(note) = note {
            if !lossy.snapshot().iter().any(|n| n == note) {
                tracing::info!(request_id = %request_id, lossy = note, "conversion dropped information");
            }
            lossy.add([note.to_owned()]);
        }
    }))
}

/// Runs `req` to completion and returns the collected answer, noting what the client
/// protocol `R` cannot show of it.
pub async fn collected<R: StreamRenderer>(
    state: &AppState,
    req: Box<ChatRequest>,
    ctx: &RequestContext,
) -> Result<ChatResponse, ProxyError> {
    // Dropped with the handler's future when the client goes away.
    let _cancel = ctx.cancel_on_drop();
    let answer = async {
        let d = ctx.dispatch(state, req).await?;
        let stream = note_dropped(d.stream, ctx, R::dropped);
        Ok(collect(stream, &d.route.model).await?)
    };
    tokio::select! {
        answer = answer => answer,
        () = state.shutdown().expired() => Err(ProxyError::ShuttingDown),
    }
}

/// A JSON response with the request's headers.
pub fn json_response(body: impl Into<Bytes>, ctx: &RequestContext) -> Response {
    ctx.finish(false, "ok");
    // Built directly: `into_response` sets a content type only to have it replaced, and the
    // map sized for what follows (the request id, the overhead, hyper's date and length)
    // grows no more.
    let mut headers = HeaderMap::with_capacity(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut resp = Response::new(Body::from(body.into()));
    *resp.headers_mut() = headers;
    ctx.stamp_response(&mut resp);
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

    #[test]
    fn every_object_is_counted_across_block_boundaries() {
        // Runs of braces longer than the counting blocks, mixed with other bytes.
        for (braces, filler) in [
            (0usize, 7usize),
            (1, 0),
            (255, 0),
            (256, 3),
            (1000, 1),
            (777, 254),
        ] {
            let body: Vec<u8> = (0..braces)
                .flat_map(|_| std::iter::once(b'{').chain(std::iter::repeat_n(b'x', filler)))
                .collect();
            assert_eq!(
                parsed_size_estimate(&body),
                body.len() + braces * 640,
                "{braces} braces, {filler} between"
            );
        }
    }
}
