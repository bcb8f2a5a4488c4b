//! One upstream HTTP exchange, shared by the HTTP connectors: send with the backend's
//! timeouts, turn error statuses into `BackendError`s, and decode the body into events.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::StreamExt;
use llm_proxy_api::error::{BackendError, parse_retry_after};
use llm_proxy_api::http::{BodyStream, CaptureAwareClient, HttpResponse, PluginHttpCaptureContext};
use llm_proxy_api::scrub::{MIN_SECRET_LEN, Scrubber};
use llm_proxy_api::stream::{EventStream, StreamEvent, response_events};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};
use llm_proxy_api::{CallContext, config::Timeouts};

/// Turns an error body into a `BackendError` (per protocol).
pub type ErrorDecoder = fn(u16, &[u8]) -> BackendError;

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

fn source_chain(e: &dyn std::error::Error) -> String {
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
    send_scrubbed(
        client,
        request,
        capture,
        timeouts,
        deadline,
        decode_error,
        &echo,
    )
    .await
}

/// [`send_with`], scrubbing error messages with `echo`.
async fn send_scrubbed(
    client: &CaptureAwareClient,
    request: reqwest::Request,
    capture: Option<&PluginHttpCaptureContext>,
    timeouts: &Timeouts,
    deadline: Instant,
    decode_error: impl Fn(u16, &[u8]) -> BackendError,
    echo: &EchoScrubber,
) -> Result<HttpResponse, BackendError> {
    let head_deadline = deadline.min(Instant::now() + timeouts.first_byte);
    let response = tokio::time::timeout_at(head_deadline.into(), client.send(request, capture))
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
        .map_err(transport_error)?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
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
            *message = message.replace(secret, &llm_proxy_api::config::mask_secret(secret));
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
/// turned into events, both with the protocol's `codec`.
pub async fn post_chat(
    call: ChatCall<'_>,
    codec: &dyn WireCodec,
) -> Result<EventStream, BackendError> {
    let echo = EchoScrubber::for_request(call.client, &call.headers);
    let mut request = reqwest::Request::new(reqwest::Method::POST, call.url);
    *request.headers_mut() = call.headers;
    *request.body_mut() = Some(call.body.into());
    let response = send_scrubbed(
        call.client,
        request,
        call.capture.as_ref(),
        call.timeouts,
        call.deadline,
        |status, body| codec.decode_error(status, body),
        &echo,
    )
    .await?;
    if call.stream {
        return Ok(event_stream(
            response,
            codec.stream_decoder(),
            call.deadline,
            echo,
        ));
    }
    let body = read_body(response, call.deadline)
        .await
        .map_err(|e| echo.error(e))?;
    let response = codec
        .decode_response(&body, call.model)
        .map_err(|e| echo.error(e))?;
    Ok(Box::pin(futures::stream::iter(
        response_events(response).into_iter().map(Ok),
    )))
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
    body: BodyStream,
    decoder: Box<dyn StreamDecoder>,
    pending: VecDeque<Result<StreamEvent, BackendError>>,
    scratch: Vec<StreamEvent>,
    deadline: Instant,
    finished: bool,
    echo: EchoScrubber,
}

/// Decodes a streamed body into events as bytes arrive; each upstream chunk is forwarded as
/// soon as it is decoded. The stream ends with an error if the deadline passes. In-stream
/// errors (an upstream's error event) are scrubbed with `echo`.
pub fn event_stream(
    response: HttpResponse,
    decoder: Box<dyn StreamDecoder>,
    deadline: Instant,
    echo: EchoScrubber,
) -> EventStream {
    let state = Decoding {
        body: response.bytes_stream(),
        decoder,
        pending: VecDeque::new(),
        scratch: Vec::new(),
        deadline,
        finished: false,
        echo,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished {
                return None;
            }
            // After the protocol's end marker, give the body a moment to end so the
            // connection can be reused, but never wait on an upstream that keeps it open.
            let deadline = if st.decoder.is_finished() {
                st.deadline.min(Instant::now() + END_GRACE)
            } else {
                st.deadline
            };
            let next = tokio::time::timeout_at(deadline.into(), st.body.next()).await;
            let result = match next {
                Err(_) if st.decoder.is_finished() => {
                    st.finished = true;
                    st.decoder.finish(&mut st.scratch)
                }
                Err(_) => Err(BackendError::timeout(
                    "upstream stream exceeded the total timeout",
                )),
                Ok(Some(Ok(chunk))) => st.decoder.feed(&chunk, &mut st.scratch),
                Ok(Some(Err(e))) => Err(e),
                Ok(None) => {
                    st.finished = true;
                    st.decoder.finish(&mut st.scratch)
                }
            };
            // Events decoded before an error are delivered first, then the error ends the stream.
            st.pending.extend(st.scratch.drain(..).map(Ok));
            if let Err(e) = result {
                st.finished = true;
                st.pending.push_back(Err(st.echo.error(e)));
            }
        }
    }))
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
        context: Some(llm_proxy_api::http::ConnectorRequestContext {
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
    use super::*;

    #[test]
    fn unbuildable_requests_never_count_against_the_backend() {
        let e = reqwest::Client::new()
            .get("http://exa mple/")
            .build()
            .unwrap_err();
        assert!(e.is_builder());
        let err = transport_error(e);
        assert_eq!(err.kind, llm_proxy_api::ErrorKind::InvalidRequest);
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
}
