//! The upstream HTTP exchange every HTTP backend shares, built-in or plugin: a per-instance
//! client, credential headers, sending with the instance's timeouts, error statuses turned into
//! `BackendError`s (with `Retry-After`), echoed credentials scrubbed, the response captured,
//! and the body decoded into events by the protocol's [`ResponseDecoder`].
//!
//! A backend encodes its request, fills a [`ChatCall`] and calls [`post_chat`]; what differs
//! per protocol is only the decoder it passes (any [`WireCodec`] is one).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

use crate::backend::CallContext;
use crate::config::{Secret, Timeouts};
use crate::error::{BackendError, ErrorKind, ErrorSource, parse_retry_after};
use crate::http::{
    BodyStream, CaptureAwareClient, ConnectorRequestContext, HttpResponse, PluginHttpCaptureContext,
};
use crate::model::ChatRequest;
use crate::scrub::{MIN_SECRET_LEN, Scrubber};
use crate::stream::{EventStream, StreamEvent, response_events};
use crate::translation::{StreamDecoder, WireCodec};

/// Turns an error body into a `BackendError` (per protocol).
pub type ErrorDecoder = fn(u16, &[u8]) -> BackendError;

/// How the exchange reads one protocol's answers: a streamed body, a whole body, an error
/// body. Every [`WireCodec`] is one; a backend with its own wire format (NDJSON, say)
/// implements it next to its decoder.
pub trait ResponseDecoder: Send + Sync {
    /// A decoder for a streamed body of an answer of `model`.
    fn streamed(&self, model: &str) -> Box<dyn StreamDecoder>;
    /// A whole (non-streamed) body as events; `model` is used when the body names none.
    fn whole(&self, body: &[u8], model: &str) -> Result<Vec<StreamEvent>, BackendError>;
    /// An error status and its body as a `BackendError` carrying the upstream's message.
    fn error(&self, status: u16, body: &[u8]) -> BackendError;
}

impl<C: WireCodec + ?Sized> ResponseDecoder for C {
    fn streamed(&self, _model: &str) -> Box<dyn StreamDecoder> {
        self.stream_decoder()
    }

    fn whole(&self, body: &[u8], model: &str) -> Result<Vec<StreamEvent>, BackendError> {
        let mut events = response_events(self.decode_response(body, model)?);
        events.extend(
            self.answer_notes(body)
                .into_iter()
                .map(|note| StreamEvent::Dropped { note }),
        );
        Ok(events)
    }

    fn error(&self, status: u16, body: &[u8]) -> BackendError {
        self.decode_error(status, body)
    }
}

/// Builds a per-instance HTTP client sharing `shared`'s capture sink and scrubber, with the
/// instance's connect timeout and a keep-alive pool.
///
/// Each thread sends through its own pool ([`CaptureAwareClient::with_thread_pools`]), so a
/// request on one of the proxy's serving threads reuses connections whose I/O runs on that
/// same thread. [`post_chat`] sends through the lean per-thread pools ([`crate::lean`]);
/// [`send`] (a `reqwest::Request`) through reqwest.
pub fn instance_client(
    shared: &CaptureAwareClient,
    timeouts: &Timeouts,
) -> Result<CaptureAwareClient, BackendError> {
    let connect = timeouts.connect;
    let inner = pooled_client(connect)
        .map_err(|e| BackendError::config(format!("cannot build HTTP client: {e}")))?;
    shared
        .with_inner(inner)
        .with_thread_pools(move || pooled_client(connect).ok())
        .with_lean_pools(connect)
}

fn pooled_client(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90));
    // Proxy matching costs a URL parse per request; skip it unless a proxy is configured.
    if !outbound_proxy_configured() {
        builder = builder.no_proxy();
    }
    builder.build()
}

/// Whether the environment names an outbound HTTP proxy (`HTTPS_PROXY`, `HTTP_PROXY`,
/// `ALL_PROXY`, any case), which reqwest then honours.
pub fn outbound_proxy_configured() -> bool {
    ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"].iter().any(|k| {
        [k.to_string(), k.to_ascii_lowercase()]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    })
}

/// Joins a base URL and a path (`https://x/v1` + `chat/completions`); an invalid URL is a
/// configuration error that shows the URL with its credentials masked.
pub fn join_url(base: &str, path: &str) -> Result<reqwest::Url, BackendError> {
    let base = base.trim_end_matches('/');
    reqwest::Url::parse(&format!("{base}/{path}")).map_err(|e| {
        BackendError::config(format!(
            "invalid api_url '{}': {e}",
            crate::scrub::mask_url_credentials(base)
        ))
    })
}

/// Refuses `n > 1` (several answers to one request): the canonical answer is one answer, so
/// an upstream asked for several would either ignore `n` or interleave them. A 400 naming `n`,
/// never a silent single answer. `upstream` names the protocol for the message.
pub fn single_choice(req: &ChatRequest, upstream: &str) -> Result<(), BackendError> {
    match req.sampling.n {
        Some(n) if n > 1 => Err(BackendError::invalid_request(format!(
            "n = {n} is not supported through this proxy to an {upstream} upstream: it returns \
             one answer per request; send n requests or leave n out"
        ))
        .with_param("n")),
        _ => Ok(()),
    }
}

/// When the call must be over: the earlier of the context deadline and the backend's total
/// timeout.
pub fn call_deadline(ctx: &CallContext, timeouts: &Timeouts) -> Instant {
    let own = Instant::now() + timeouts.total;
    ctx.deadline.map_or(own, |d| d.min(own))
}

/// Maps a transport error without leaking the URL (which may carry a key in its query).
pub fn transport_error(e: reqwest::Error) -> BackendError {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    // A request reqwest refuses to build (e.g. a URI too long for `http::Uri`) says nothing
    // about the upstream's health.
    let builder = e.is_builder();
    let e = e.without_url();
    if builder {
        BackendError::unsendable_request(format!("cannot build the upstream request: {e}"))
    } else if timeout {
        BackendError::timeout(format!("upstream timed out: {e}"))
    } else if connect {
        BackendError::transport(format!("cannot connect to upstream: {}", source_chain(&e)))
    } else {
        BackendError::transport(format!("upstream request failed: {}", source_chain(&e)))
    }
}

pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Sends `request`, waiting at most `first_byte` for the response head. Non-success statuses
/// become errors carrying the upstream's message, status and `Retry-After`.
pub async fn send(
    client: &CaptureAwareClient,
    request: reqwest::Request,
    capture: Option<&PluginHttpCaptureContext>,
    timeouts: &Timeouts,
    deadline: Instant,
    decode_error: ErrorDecoder,
) -> Result<HttpResponse, BackendError> {
    send_with(client, request, capture, timeouts, deadline, decode_error).await
}

/// [`send`] with any error decoder.
pub async fn send_with(
    client: &CaptureAwareClient,
    request: reqwest::Request,
    capture: Option<&PluginHttpCaptureContext>,
    timeouts: &Timeouts,
    deadline: Instant,
    decode_error: impl Fn(u16, &[u8]) -> BackendError,
) -> Result<HttpResponse, BackendError> {
    let echo = EchoScrubber::for_request(client, request.headers());
    let sending = async { client.send(request, capture).await.map_err(transport_error) };
    checked(sending, timeouts, deadline, decode_error, &echo).await
}

/// Waits at most `first_byte` for `sending` to give the response head; a non-success
/// status becomes an error decoded with `decode_error` and scrubbed with `echo`.
async fn checked(
    sending: impl Future<Output = Result<HttpResponse, BackendError>>,
    timeouts: &Timeouts,
    deadline: Instant,
    decode_error: impl Fn(u16, &[u8]) -> BackendError,
    echo: &EchoScrubber,
) -> Result<HttpResponse, BackendError> {
    let head_deadline = deadline.min(Instant::now() + timeouts.first_byte);
    let response = tokio::time::timeout_at(head_deadline.into(), sending)
        .await
        .map_err(|_| {
            BackendError::timeout(format!(
                "upstream sent no response within {:.1} s",
                timeouts
                    .first_byte
                    .min(deadline.saturating_duration_since(Instant::now()))
                    .as_secs_f64()
            ))
        })?
        .map_err(|e| echo.error(e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    if status.is_redirection() {
        return Err(echo.error(redirected(status.as_u16(), response.headers())));
    }
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(30));
    let body = response.bytes(Some(remaining)).await.unwrap_or_default();
    Err(echo.error(decode_error(status.as_u16(), &body).with_retry_after(retry_after)))
}

/// An upstream's redirect, which the proxy does not follow (a redirected POST would lose its
/// body or its method): a gateway error that names where it points, with any credentials in
/// that address masked, so the operator can fix `api_url`. Another backend may still answer.
fn redirected(status: u16, headers: &http::HeaderMap) -> BackendError {
    let location = headers
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || "an address it did not give".to_owned(),
            crate::scrub::mask_url_credentials,
        );
    let mut error = BackendError::new(
        ErrorKind::Unavailable,
        ErrorSource::Upstream,
        format!(
            "the upstream redirected the request (HTTP {status}) to {location}; redirects are \
             not followed: set the backend's api_url to the address it redirects to"
        ),
    );
    // Unavailable from the upstream: retryable elsewhere, and it counts against the backend.
    error.upstream_status = Some(status);
    error
}

/// What an upstream may echo back in its errors: every configured secret (the client's
/// [`Scrubber`]) and this request's own credentials, which need not be configured (tokens
/// obtained at runtime).
#[derive(Clone, Default)]
pub struct EchoScrubber {
    scrubber: Scrubber,
    // Cheap refcounted clones of the request's sensitive header values.
    credentials: Vec<http::HeaderValue>,
}

impl EchoScrubber {
    /// For a request to be sent with `headers` by `client`.
    pub fn for_request(client: &CaptureAwareClient, headers: &http::HeaderMap) -> Self {
        Self {
            scrubber: client.scrubber().clone(),
            credentials: headers
                .iter()
                .filter(|(_, v)| v.is_sensitive())
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    /// `error` with every secret masked in its message, code and parameter.
    #[must_use]
    pub fn error(&self, error: BackendError) -> BackendError {
        let mut error = self.scrubber.scrub_error(error);
        for text in [
            Some(&mut error.message),
            error.code.as_mut(),
            error.param.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            scrub_credentials(text, &self.credentials);
        }
        error
    }
}

/// Replaces any credential (the part after an auth scheme too) found in `message`.
pub fn scrub_credentials(message: &mut String, credentials: &[http::HeaderValue]) {
    for value in credentials {
        let Ok(text) = value.to_str() else { continue };
        let secret = text.rsplit(' ').next().unwrap_or(text);
        if secret.len() >= MIN_SECRET_LEN && message.contains(secret) {
            *message = message.replace(secret, &crate::config::mask_secret(secret));
        }
    }
}

/// One encoded chat request to POST upstream.
pub struct ChatCall<'a> {
    /// Client (with the capture sink).
    pub client: &'a CaptureAwareClient,
    /// Endpoint.
    pub url: reqwest::Url,
    /// Headers, credentials included (marked sensitive).
    pub headers: http::HeaderMap,
    /// Encoded body.
    pub body: Vec<u8>,
    /// Capture metadata, when capture is on.
    pub capture: Option<PluginHttpCaptureContext>,
    /// The instance's timeouts.
    pub timeouts: &'a Timeouts,
    /// When the whole call must be over.
    pub deadline: Instant,
    /// Model, for responses that do not name one.
    pub model: &'a str,
    /// Streamed request.
    pub stream: bool,
}

/// POSTs a chat request and returns its events: decoded as they stream, or the whole response
/// turned into events, both with the protocol's `codec` (a [`WireCodec`] or any other
/// [`ResponseDecoder`]).
pub async fn post_chat<D: ResponseDecoder + ?Sized>(
    call: ChatCall<'_>,
    codec: &D,
) -> Result<EventStream, BackendError> {
    let echo = EchoScrubber::for_request(call.client, &call.headers);
    // Boxed: held by value, the exchange's future (1.6 KB) would sit in `checked`'s future
    // twice (as its argument, and inside the timeout), and so in this one, and every copy
    // of this one as the connector awaits and boxes it would move it all.
    let sending = Box::pin(call.client.execute(
        http::Method::POST,
        &call.url,
        call.headers,
        call.body.into(),
        call.capture.as_ref(),
    ));
    let response = checked(
        sending,
        call.timeouts,
        call.deadline,
        |status, body| codec.error(status, body),
        &echo,
    )
    .await?;
    if call.stream {
        return Ok(event_stream(
            response,
            codec.streamed(call.model),
            call.deadline,
            echo,
        ));
    }
    let body = read_body(response, call.deadline)
        .await
        .map_err(|e| echo.error(e))?;
    let events = codec.whole(&body, call.model).map_err(|e| echo.error(e))?;
    Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))))
}

/// Reads a whole (non-streamed) body before `deadline`.
pub async fn read_body(
    response: HttpResponse,
    deadline: Instant,
) -> Result<bytes::Bytes, BackendError> {
    response
        .bytes(Some(deadline.saturating_duration_since(Instant::now())))
        .await
}

/// How long to wait for the body to end after the protocol's end marker.
const END_GRACE: Duration = Duration::from_millis(100);

struct Decoding {
    /// The body, dropped (and so captured) as soon as the stream is known to be over.
    body: Option<BodyStream>,
    decoder: Box<dyn StreamDecoder>,
    pending: VecDeque<Result<StreamEvent, BackendError>>,
    scratch: Vec<StreamEvent>,
    deadline: Instant,
    /// One timer for the whole stream, made at the first wait: at the deadline, then moved
    /// once, after the protocol's end marker, to the grace for the body to end. A timeout made
    /// for each wait (as `timeout_at` does) entered and left the timer wheel once per chunk.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the timer was moved to the end grace.
    in_grace: bool,
    echo: EchoScrubber,
}

/// Decodes a streamed body into events as bytes arrive; each upstream chunk is forwarded as
/// soon as it is decoded. The stream ends with an error if the deadline passes. In-stream
/// errors (an upstream's error event) are scrubbed with `echo`. The response is captured once,
/// when the stream ends (its body stream is dropped with it).
pub fn event_stream(
    response: HttpResponse,
    decoder: Box<dyn StreamDecoder>,
    deadline: Instant,
    echo: EchoScrubber,
) -> EventStream {
    Box::pin(Decoding {
        body: Some(response.bytes_stream()),
        decoder,
        pending: VecDeque::new(),
        scratch: Vec::new(),
        deadline,
        timer: None,
        in_grace: false,
        echo,
    })
}

impl Decoding {
    /// Nothing more is read: the body goes (the exchange is captured) and so does the timer.
    fn end(&mut self) {
        self.body = None;
        self.timer = None;
    }

    /// Whether the timer has fired; it is made at the first wait, and after the protocol's end
    /// marker it gives the body a moment to end so the connection can be reused, but never
    /// waits on an upstream that keeps it open.
    fn timer_fired(&mut self, cx: &mut Context<'_>) -> bool {
        let grace = self.decoder.is_finished() && !self.in_grace;
        if grace {
            self.in_grace = true;
        }
        let timer = match &mut self.timer {
            Some(timer) => {
                if grace {
                    let end = self.deadline.min(Instant::now() + END_GRACE);
                    timer.as_mut().reset(end.into());
                }
                timer
            }
            None => {
                let end = if grace {
                    self.deadline.min(Instant::now() + END_GRACE)
                } else {
                    self.deadline
                };
                self.timer
                    .insert(Box::pin(tokio::time::sleep_until(end.into())))
            }
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Stream for Decoding {
    type Item = Result<StreamEvent, BackendError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let st = self.get_mut();
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Poll::Ready(Some(item));
            }
            let Some(body) = &mut st.body else {
                return Poll::Ready(None);
            };
            let result = match body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) => st.decoder.feed(&chunk, &mut st.scratch),
                Poll::Ready(Some(Err(e))) => Err(e),
                Poll::Ready(None) => {
                    st.end();
                    st.decoder.finish(&mut st.scratch)
                }
                Poll::Pending if !st.timer_fired(cx) => return Poll::Pending,
                Poll::Pending if st.decoder.is_finished() => {
                    st.end();
                    st.decoder.finish(&mut st.scratch)
                }
                Poll::Pending => Err(BackendError::timeout(
                    "upstream stream exceeded the total timeout",
                )),
            };
            // Events decoded before an error are delivered first, then the error ends the stream.
            st.pending.extend(st.scratch.drain(..).map(Ok));
            if let Err(e) = result {
                st.end();
                st.pending.push_back(Err(st.echo.error(e)));
            }
        }
    }
}

/// Who a captured exchange belongs to: the instance, the call's model and request identity.
pub fn capture_context(
    instance: &str,
    key_name: Option<&str>,
    ctx: &CallContext,
) -> PluginHttpCaptureContext {
    PluginHttpCaptureContext {
        backend: instance.to_owned(),
        model: ctx.model.clone(),
        key_name: key_name.map(str::to_owned),
        context: Some(ConnectorRequestContext {
            request_id: ctx.request_id.clone(),
            session_id: ctx.session_id.clone(),
        }),
    }
}

/// Configured extra headers (`backends.<instance>.extra.headers`) as a header map, every
/// value marked sensitive.
pub fn configured_headers(
    instance: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<http::HeaderMap, BackendError> {
    let mut out = http::HeaderMap::new();
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            BackendError::config(format!("backends.{instance}.extra.headers: bad name '{k}'"))
        })?;
        let mut value = http::HeaderValue::from_str(v).map_err(|_| {
            BackendError::config(format!("backends.{instance}.extra.headers.{k}: bad value"))
        })?;
        // Configured header values are treated as credentials: masked in captures, scrubbed
        // from echoed errors.
        value.set_sensitive(true);
        out.insert(name, value);
    }
    Ok(out)
}

/// A credential as a header value marked sensitive (never logged or captured in clear).
pub fn secret_header(value: &str) -> Result<http::HeaderValue, BackendError> {
    let mut v = http::HeaderValue::from_str(value)
        .map_err(|_| BackendError::config("API key contains characters not allowed in a header"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Bearer <key>` as a header value marked sensitive.
pub fn bearer_header(key: &Secret) -> Result<http::HeaderValue, BackendError> {
    secret_header(&format!("Bearer {}", key.expose()))
}

/// A bounded GET of a model list, decoded with the protocol's error decoder.
pub async fn get_json(
    client: &CaptureAwareClient,
    url: reqwest::Url,
    headers: http::HeaderMap,
    timeouts: &Timeouts,
    decode_error: ErrorDecoder,
) -> Result<bytes::Bytes, BackendError> {
    let mut request = reqwest::Request::new(reqwest::Method::GET, url);
    *request.headers_mut() = headers;
    let deadline = Instant::now() + timeouts.first_byte.min(Duration::from_secs(15));
    let response = send(client, request, None, timeouts, deadline, decode_error).await?;
    read_body(response, deadline).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Each chunk is one text delta; the chunk `END` is the protocol's end marker.
    struct Chunks {
        ended: bool,
    }

    impl StreamDecoder for Chunks {
        fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
            match chunk {
                b"END" => self.ended = true,
                text => out.push(StreamEvent::TextDelta {
                    text: String::from_utf8_lossy(text).into_owned(),
                }),
            }
            Ok(())
        }

        fn finish(&mut self, _: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
            Ok(())
        }

        fn is_finished(&self) -> bool {
            self.ended
        }
    }

    /// `texts`, one chunk every `every`, then a body that stays open.
    fn decoding(texts: &[&'static str], every: Duration, deadline: Duration) -> Decoding {
        let chunks = futures::stream::iter(texts.to_vec()).then(move |text| async move {
            tokio::time::sleep(every).await;
            Ok(bytes::Bytes::from_static(text.as_bytes()))
        });
        Decoding {
            body: Some(BodyStream::of(chunks.chain(futures::stream::pending()))),
            decoder: Box::new(Chunks { ended: false }),
            pending: VecDeque::new(),
            scratch: Vec::new(),
            deadline: Instant::now() + deadline,
            timer: None,
            in_grace: false,
            echo: EchoScrubber::default(),
        }
    }

    fn texts(items: &[Result<StreamEvent, BackendError>]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Ok(StreamEvent::TextDelta { text }) => text.clone(),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("error: {:?}", e.kind),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_past_its_deadline_ends_with_a_timeout_after_what_arrived_in_time() {
        let stream = decoding(
            &["a", "b", "c", "d", "e", "f"],
            Duration::from_secs(1),
            Duration::from_millis(3500),
        );
        let items: Vec<_> = stream.collect().await;
        assert_eq!(texts(&items), ["a", "b", "c", "error: Timeout"]);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_end_marker_a_body_left_open_ends_within_the_grace() {
        let started = tokio::time::Instant::now();
        let stream = decoding(
            &["a", "b", "END"],
            Duration::from_millis(10),
            Duration::from_secs(3600),
        );
        let items: Vec<_> = stream.collect().await;
        assert_eq!(texts(&items), ["a", "b"], "ended without an error");
        let waited = started.elapsed();
        // Not the deadline's hour. (The grace is counted on the real clock, which paused time
        // does not move: the chunks' virtual 30 ms are not added to it here.)
        assert!(
            waited >= END_GRACE && waited < Duration::from_secs(1),
            "{waited:?}"
        );
    }

    #[test]
    fn unbuildable_requests_never_count_against_the_backend() {
        let e = reqwest::Client::new()
            .get("http://exa mple/")
            .build()
            .unwrap_err();
        assert!(e.is_builder());
        let err = transport_error(e);
        assert_eq!(err.kind, crate::ErrorKind::InvalidRequest);
        assert!(!err.counts_against_backend && !err.retryable, "{err}");
    }

    #[test]
    fn echoed_keys_are_scrubbed_from_error_messages() {
        let mut v = http::HeaderValue::from_static("Bearer sk-live-abcdefghijklmnop");
        v.set_sensitive(true);
        let mut msg = "Incorrect API key provided: sk-live-abcdefghijklmnop.".to_owned();
        scrub_credentials(&mut msg, &[v]);
        assert!(!msg.contains("abcdefghijklmnop"), "{msg}");
        assert!(msg.contains("sk-l"));
    }

    #[test]
    fn echoed_errors_lose_configured_secrets_and_request_credentials() {
        let client = CaptureAwareClient::plain()
            .unwrap()
            .with_scrubber(Scrubber::new(["configured-header-value-1"]).unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "authorization",
            secret_header("Bearer runtime-token-0001").unwrap(),
        );
        let echo = EchoScrubber::for_request(&client, &headers);
        let err = echo.error(
            BackendError::from_upstream_status(
                500,
                "saw runtime-token-0001 and configured-header-value-1",
            )
            .with_code("runtime-token-0001"),
        );
        let all = format!("{} {:?}", err.message, err.code);
        assert!(!all.contains("runtime-token-0001"), "{all}");
        assert!(!all.contains("configured-header-value-1"), "{all}");
    }

    /// A plugin's own wire format: one text delta per line, `end` closes the answer.
    struct Lines;

    #[derive(Default)]
    struct LineDecoder {
        buffer: Vec<u8>,
        done: bool,
    }

    impl LineDecoder {
        fn line(&mut self, line: &[u8], out: &mut Vec<StreamEvent>) {
            match line.trim_ascii() {
                b"" => {}
                b"end" => self.done = true,
                text => out.push(StreamEvent::TextDelta {
                    text: String::from_utf8_lossy(text).into_owned(),
                }),
            }
        }
    }

    impl StreamDecoder for LineDecoder {
        fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
            self.buffer.extend_from_slice(chunk);
            while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                self.line(&line, out);
            }
            Ok(())
        }
        fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
            let rest = std::mem::take(&mut self.buffer);
            self.line(&rest, out);
            Ok(())
        }
        fn is_finished(&self) -> bool {
            self.done
        }
    }

    impl ResponseDecoder for Lines {
        fn streamed(&self, _model: &str) -> Box<dyn StreamDecoder> {
            Box::new(LineDecoder::default())
        }
        fn whole(&self, body: &[u8], _model: &str) -> Result<Vec<StreamEvent>, BackendError> {
            let mut out = Vec::new();
            let mut decoder = LineDecoder::default();
            decoder.feed(body, &mut out)?;
            decoder.finish(&mut out)?;
            Ok(out)
        }
        fn error(&self, status: u16, body: &[u8]) -> BackendError {
            BackendError::from_upstream_status(status, String::from_utf8_lossy(body))
        }
    }

    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<crate::http::CaptureRecord>>);

    impl crate::http::CaptureSink for Recorder {
        fn record(&self, record: crate::http::CaptureRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    impl Recorder {
        fn inbound(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.direction == crate::http::CaptureDirection::InboundResponse)
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect()
        }
    }

    /// An upstream on 127.0.0.1:0 answering one request with `head` and `body`, then keeping
    /// the connection open until the client closes it.
    async fn upstream(head: &'static str, body: &'static str) -> reqwest::Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            // Hold the connection until the client goes away (the rest of the request may
            // still arrive).
            while socket.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        reqwest::Url::parse(&format!("http://{addr}/api/chat")).unwrap()
    }

    fn call<'a>(
        client: &'a CaptureAwareClient,
        url: reqwest::Url,
        timeouts: &'a Timeouts,
        stream: bool,
    ) -> ChatCall<'a> {
        let mut ctx = CallContext::new("m");
        ctx.request_id = "req_upstream_1".into();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            bearer_header(&Secret::new("runtime-token-0001")).unwrap(),
        );
        ChatCall {
            client,
            url,
            headers,
            body: b"{}".to_vec(),
            capture: Some(capture_context("plugin-backend", Some("MY_KEY"), &ctx)),
            timeouts,
            deadline: call_deadline(&ctx, timeouts),
            model: "m",
            stream,
        }
    }

    fn capturing_client(sink: &Arc<Recorder>) -> CaptureAwareClient {
        let sink: Arc<dyn crate::http::CaptureSink> = sink.clone();
        crate::http::build_capture_aware_client(reqwest::Client::builder(), Some(sink), None)
            .unwrap()
    }

    /// Both transports: a plugin's own client (reqwest) and a backend's instance client (its
    /// lean pools).
    fn both_clients(sink: &Arc<Recorder>) -> [CaptureAwareClient; 2] {
        let reqwest = capturing_client(sink);
        let lean = instance_client(&reqwest, &Timeouts::default()).unwrap();
        assert!(!reqwest.sends_lean() && lean.sends_lean());
        [reqwest, lean]
    }

    #[tokio::test]
    async fn a_plugin_decoder_streams_and_the_answer_is_captured_once_its_end_is_seen() {
        for lean in [false, true] {
            // Chunked, and the upstream never ends the body after its end marker.
            let url = upstream(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n",
                "c\r\nHello\nworld\n\r\n4\r\nend\n\r\n",
            )
            .await;
            let sink = Arc::new(Recorder::default());
            let [through_reqwest, through_lean] = both_clients(&sink);
            let client = if lean { through_lean } else { through_reqwest };
            let timeouts = Timeouts::default();
            let mut events = post_chat(call(&client, url, &timeouts, true), &Lines)
                .await
                .unwrap();
            let mut texts = Vec::new();
            while let Some(event) = events.next().await {
                if let StreamEvent::TextDelta { text } = event.unwrap() {
                    texts.push(text);
                }
            }
            assert_eq!(texts, ["Hello", "world"]);
            // Recorded when the stream ended, though the upstream never ended the body.
            assert_eq!(sink.inbound(), ["Hello\nworld\nend\n"]);
            drop(events);
            assert_eq!(sink.inbound().len(), 1, "captured exactly once");
            let records = sink.0.lock().unwrap();
            let sent = &records[0];
            assert_eq!(
                sent.direction,
                crate::http::CaptureDirection::OutboundRequest
            );
            assert_eq!(sent.body, "{}");
            let auth = sent.headers.iter().find(|(k, _)| k == "authorization");
            assert!(
                auth.is_some_and(|(_, v)| !v.contains("runtime-token-0001")),
                "{auth:?}"
            );
            assert!(
                !records[1].chunks.is_empty(),
                "a streamed body keeps its pieces"
            );
        }
    }

    /// An upstream on 127.0.0.1:0 that records each request (head and body) and answers
    /// `/moved` with a 307 to `/api/chat`, anything else with `200 ok`; one request per
    /// connection.
    async fn recording_upstream() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let complete = |raw: &[u8]| {
                    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
                    let Some(end) = text.find("\r\n\r\n") else {
                        return false;
                    };
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    raw.len() >= end + 4 + length
                };
                while !complete(&raw) {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&raw).into_owned();
                let answer = if text.starts_with("POST /moved ") || text.starts_with("GET /moved ")
                {
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: /api/chat\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                };
                log.lock().unwrap().push(text);
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}"), seen)
    }

    async fn post(client: &CaptureAwareClient, url: &str) -> Result<(u16, String), BackendError> {
        let url = reqwest::Url::parse(url).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-request", http::HeaderValue::from_static("one"));
        let response = client
            .execute(
                http::Method::POST,
                &url,
                headers,
                bytes::Bytes::from_static(b"{\"q\":1}"),
                None,
            )
            .await?;
        let status = response.status().as_u16();
        let body = response.bytes(None).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    #[tokio::test]
    async fn the_lean_pool_sends_the_request_whole_and_never_follows_a_redirect() {
        let (base, seen) = recording_upstream().await;
        let client =
            instance_client(&CaptureAwareClient::plain().unwrap(), &Timeouts::default()).unwrap();
        assert_eq!(
            post(&client, &format!("{base}/api/chat")).await.unwrap(),
            (200, "ok".into())
        );
        // A redirected POST would lose its body or its method: the 307 is the answer.
        assert_eq!(
            post(&client, &format!("{base}/moved")).await.unwrap(),
            (307, String::new())
        );
        let sent = seen.lock().unwrap().clone();
        assert_eq!(sent.len(), 2, "nothing followed the redirect: {sent:?}");
        let first = sent[0].to_ascii_lowercase();
        assert!(first.starts_with("post /api/chat http/1.1\r\n"), "{first}");
        for header in [
            "x-request: one",
            "accept: */*",
            "content-length: 7",
            "host: 127.0.0.1:",
        ] {
            assert!(first.contains(header), "{header} missing: {first}");
        }
        assert!(first.ends_with("\r\n\r\n{\"q\":1}"), "{first}");
        // Through the exchange, a redirect is a gateway error naming where it points.
        let timeouts = Timeouts::default();
        let url = reqwest::Url::parse(&format!("{base}/moved")).unwrap();
        let Err(error) = post_chat(call(&client, url, &timeouts, false), &Lines).await else {
            panic!("a redirect is an error");
        };
        assert_eq!(error.kind, crate::ErrorKind::Unavailable, "{error}");
        assert_eq!(error.upstream_status, Some(307));
        assert!(error.retryable);
        assert!(
            error.message.contains("redirected") && error.message.contains("/api/chat"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn a_model_list_get_never_follows_a_redirect_with_the_key() {
        // reqwest strips `authorization` on a redirect to another host, not `x-api-key` or
        // `x-goog-api-key`: a followed redirect would hand the key to wherever it points.
        for shared in [true, false] {
            let (base, seen) = recording_upstream().await;
            let plain = CaptureAwareClient::plain().unwrap();
            let client = if shared {
                plain
            } else {
                instance_client(&plain, &Timeouts::default()).unwrap()
            };
            let mut headers = http::HeaderMap::new();
            headers.insert("x-api-key", secret_header("sk-ant-secret").unwrap());
            let url = reqwest::Url::parse(&format!("{base}/moved")).unwrap();
            let decode: ErrorDecoder =
                |status, _| BackendError::from_upstream_status(status, "refused");
            let Err(error) = get_json(&client, url, headers, &Timeouts::default(), decode).await
            else {
                panic!("a redirected model list is an error (shared client: {shared})");
            };
            assert_eq!(error.upstream_status, Some(307), "{error}");
            assert!(error.message.contains("redirected"), "{}", error.message);
            let sent = seen.lock().unwrap().clone();
            assert_eq!(sent.len(), 1, "the redirect was followed: {sent:?}");
        }
    }

    #[tokio::test]
    async fn credentials_in_the_url_never_reach_the_request_line_or_headers() {
        let (base, seen) = recording_upstream().await;
        let client =
            instance_client(&CaptureAwareClient::plain().unwrap(), &Timeouts::default()).unwrap();
        let url = base.replace("http://", "http://bob:hunter2@");
        assert_eq!(
            post(&client, &format!("{url}/api/chat")).await.unwrap().0,
            200
        );
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].starts_with("POST /api/chat HTTP/1.1\r\n"),
            "{seen:?}"
        );
        assert!(
            !seen[0].contains("hunter2") && !seen[0].contains("bob"),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn https_upstreams_are_verified_against_the_web_pki_and_offered_http2() {
        let config = Arc::new(crate::test_tls::server_config(&[]));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (offered, alpn) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let acceptor =
                tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), socket);
            let start = acceptor.await.unwrap();
            let protocols: Vec<Vec<u8>> = start
                .client_hello()
                .alpn()
                .map(|p| p.map(<[u8]>::to_vec).collect())
                .unwrap_or_default();
            let _ = offered.send(protocols);
            // The client refuses the certificate partway through.
            let _ = start.into_stream(config).await;
        });
        let client =
            instance_client(&CaptureAwareClient::plain().unwrap(), &Timeouts::default()).unwrap();
        let error = post(&client, &format!("https://{addr}/v1/chat"))
            .await
            .unwrap_err();
        assert_eq!(
            error.origin,
            crate::error::ErrorSource::Transport,
            "{error}"
        );
        assert!(
            error.message.contains("certificate") && error.message.contains("UnknownIssuer"),
            "{}",
            error.message
        );
        assert_eq!(alpn.await.unwrap(), [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transport_error_that_does_not_show_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        for client in [
            instance_client(&CaptureAwareClient::plain().unwrap(), &Timeouts::default()).unwrap(),
            CaptureAwareClient::plain().unwrap(),
        ] {
            let url = format!("http://127.0.0.1:{port}/v1/chat?key=AIzaSECRETVALUE");
            let error = post(&client, &url).await.unwrap_err();
            assert_eq!(
                error.origin,
                crate::error::ErrorSource::Transport,
                "{error}"
            );
            assert!(error.retryable, "{error}");
            assert!(
                error.message.starts_with("cannot connect to upstream"),
                "{}",
                error.message
            );
            assert!(!error.message.contains("SECRETVALUE"), "{}", error.message);
            assert!(
                !error.message.contains(&port.to_string()),
                "{}",
                error.message
            );
        }
    }

    #[tokio::test]
    async fn a_whole_answer_goes_through_the_plugin_decoder() {
        let url = upstream(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            "Hi\nthere\n",
        )
        .await;
        let client = CaptureAwareClient::plain().unwrap();
        let timeouts = Timeouts::default();
        let events: Vec<StreamEvent> = post_chat(call(&client, url, &timeouts, false), &Lines)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(
            events,
            [
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::TextDelta {
                    text: "there".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn error_statuses_use_the_plugin_decoder_and_lose_echoed_credentials() {
        let url = upstream(
            "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 35\r\n\r\n",
            "slow down, runtime-token-0001 owner",
        )
        .await;
        let client = CaptureAwareClient::plain().unwrap();
        let timeouts = Timeouts::default();
        let Err(error) = post_chat(call(&client, url, &timeouts, true), &Lines).await else {
            panic!("a 429 is an error");
        };
        assert_eq!(error.upstream_status, Some(429));
        assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
        assert!(error.message.contains("slow down"), "{}", error.message);
        assert!(
            !error.message.contains("runtime-token-0001"),
            "{}",
            error.message
        );
    }
}
