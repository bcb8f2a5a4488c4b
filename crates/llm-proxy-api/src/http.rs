//! The capture-aware HTTP client plugins use for upstream calls (seed: "Plugin HTTP client
//! helper"). Outbound requests are captured on send; non-streaming responses on send; streamed
//! responses once their body has been consumed (or dropped), exactly once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error::BackendError;
use crate::lean::LeanPools;
use crate::scrub::Scrubber;

/// Name of the per-request extension carrying a [`PluginHttpCaptureContext`] (kept for parity
/// with the seed; in Rust the context is passed to [`CaptureAwareClient::send`]).
pub const PLUGIN_HTTP_CAPTURE_CONTEXT_EXTENSION: &str = "llm_proxy_capture_context";
/// Name of the flag set once an inbound response has been captured.
pub const PLUGIN_HTTP_CAPTURED_EXTENSION: &str = "llm_proxy_http_capture_completed";

/// Largest response body kept in one capture record; the rest is counted, not stored.
pub const CAPTURE_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Request-level identity for captures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorRequestContext {
    /// Proxy request id.
    pub request_id: String,
    /// Session id.
    pub session_id: Option<String>,
}

/// Who a captured exchange belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginHttpCaptureContext {
    /// Backend instance.
    pub backend: String,
    /// Model.
    pub model: String,
    /// Name of the credential (env var name), never its value.
    pub key_name: Option<String>,
    /// Request identity; without it nothing is captured.
    pub context: Option<ConnectorRequestContext>,
}

/// Direction of a captured record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureDirection {
    /// Client to proxy.
    InboundRequest,
    /// Proxy to client.
    OutboundResponse,
    /// Proxy to upstream.
    OutboundRequest,
    /// Upstream to proxy.
    InboundResponse,
}

impl CaptureDirection {
    /// Wire label.
    pub fn label(self) -> &'static str {
        match self {
            Self::InboundRequest => "inbound_request",
            Self::OutboundResponse => "outbound_response",
            Self::OutboundRequest => "outbound_request",
            Self::InboundResponse => "inbound_response",
        }
    }
}

/// One captured boundary crossing. Headers are already masked.
#[derive(Debug, Clone)]
pub struct CaptureRecord {
    /// Proxy request id.
    pub request_id: String,
    /// Session id.
    pub session_id: Option<String>,
    /// Direction.
    pub direction: CaptureDirection,
    /// Backend instance (empty for client-side records).
    pub backend: String,
    /// Model.
    pub model: String,
    /// Credential name.
    pub key_name: Option<String>,
    /// When.
    pub timestamp: SystemTime,
    /// HTTP method and URL (requests).
    pub method: Option<String>,
    /// URL with secret query parameters masked.
    pub url: Option<String>,
    /// Status (responses).
    pub status: Option<u16>,
    /// Masked headers.
    pub headers: Vec<(String, String)>,
    /// Body bytes as they crossed the boundary (possibly cut at [`CAPTURE_BODY_LIMIT`]).
    pub body: Bytes,
    /// Body length before any cut.
    pub body_len: usize,
    /// When the body arrived as a stream: each piece as it crossed, in order (empty for a
    /// body read whole). The lengths add up to `body.len()`.
    pub chunks: Vec<CaptureChunk>,
}

/// One piece of a streamed body: when it crossed the boundary and how many bytes of
/// [`CaptureRecord::body`] it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureChunk {
    /// When the piece crossed.
    pub at: SystemTime,
    /// Its length in bytes.
    pub len: usize,
}

/// Where capture records go. `record` must not block: implementations queue and drop when
/// full.
pub trait CaptureSink: Send + Sync {
    /// Takes one record.
    fn record(&self, record: CaptureRecord);

    /// Records lost so far (queue full, sink closed, write failures), for diagnostics.
    /// Sinks that never lose records keep the default.
    fn dropped_records(&self) -> u64 {
        0
    }
}

const SECRET_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
    "x-auth-token",
];

/// Header list with secret values masked: credential headers by name, and every value
/// marked sensitive (configured extra headers, keys).
pub fn masked_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if value.is_sensitive() || SECRET_HEADERS.contains(&name.as_str()) {
                mask_header_value(value)
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

fn mask_header_value(value: &HeaderValue) -> String {
    let v = String::from_utf8_lossy(value.as_bytes());
    match v.split_once(' ') {
        Some((scheme, secret)) => format!("{scheme} {}", crate::config::mask_secret(secret)),
        None => crate::config::mask_secret(&v),
    }
}

/// URL with user info and the values of secret query parameters (`key`, `api_key`, `token`,
/// ...) masked.
pub fn masked_url(url: &reqwest::Url) -> String {
    if url.query().is_none() && url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    crate::scrub::mask_url_credentials(url.as_str())
}

/// Builds a [`CaptureAwareClient`]: a pooled rustls client whose exchanges go to `sink`
/// under `capture_context` unless a call passes its own context.
///
/// The client never follows a redirect, whatever `builder` says: requests carry provider
/// keys in headers reqwest keeps across hosts (`x-api-key`, `x-goog-api-key`), and a
/// redirected POST would lose its body. A 3xx is the answer ([`crate::upstream::send`] turns
/// it into an error naming where it points).
pub fn build_capture_aware_client(
    builder: reqwest::ClientBuilder,
    sink: Option<Arc<dyn CaptureSink>>,
    capture_context: Option<PluginHttpCaptureContext>,
) -> Result<CaptureAwareClient, BackendError> {
    let inner = builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| BackendError::config(format!("cannot build HTTP client: {e}")))?;
    Ok(CaptureAwareClient {
        inner,
        per_thread: None,
        lean: None,
        sink,
        default_context: capture_context,
        scrubber: Scrubber::default(),
    })
}

/// An HTTP client that records its upstream traffic to the capture sink.
#[derive(Clone)]
pub struct CaptureAwareClient {
    inner: reqwest::Client,
    /// When set, requests go out through the calling thread's own client (see
    /// [`with_thread_pools`](Self::with_thread_pools)); `inner` builds them.
    per_thread: Option<Arc<ThreadPools>>,
    /// When set, [`execute`](Self::execute) sends through this thread's lean pool
    /// ([`crate::lean`]) instead of reqwest.
    lean: Option<Arc<LeanPools>>,
    sink: Option<Arc<dyn CaptureSink>>,
    default_context: Option<PluginHttpCaptureContext>,
    scrubber: Scrubber,
}

impl std::fmt::Debug for CaptureAwareClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureAwareClient")
            .field("capturing", &self.sink.is_some())
            .field("default_context", &self.default_context)
            .finish()
    }
}

impl CaptureAwareClient {
    /// A client with default settings and no capture.
    pub fn plain() -> Result<Self, BackendError> {
        build_capture_aware_client(reqwest::Client::builder(), None, None)
    }

    /// The underlying client, to build requests.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// The same client (shared pool) with another connect-timeout-free default context.
    #[must_use]
    pub fn with_default_context(&self, context: Option<PluginHttpCaptureContext>) -> Self {
        Self {
            inner: self.inner.clone(),
            per_thread: self.per_thread.clone(),
            lean: self.lean.clone(),
            sink: self.sink.clone(),
            default_context: context,
            scrubber: self.scrubber.clone(),
        }
    }

    /// The same client (shared pool and sink) with another underlying reqwest client, e.g.
    /// one built with a backend's own connect timeout. Build it with
    /// `redirect(reqwest::redirect::Policy::none())`, as [`build_capture_aware_client`] does:
    /// a followed redirect carries key headers to wherever it points.
    #[must_use]
    pub fn with_inner(&self, inner: reqwest::Client) -> Self {
        Self {
            inner,
            per_thread: None,
            lean: None,
            sink: self.sink.clone(),
            default_context: self.default_context.clone(),
            scrubber: self.scrubber.clone(),
        }
    }

    /// The same client with the process's [`Scrubber`] (every configured secret), which
    /// backends use to mask what an upstream echoes back.
    #[must_use]
    pub fn with_scrubber(&self, scrubber: Scrubber) -> Self {
        Self {
            inner: self.inner.clone(),
            per_thread: self.per_thread.clone(),
            lean: self.lean.clone(),
            sink: self.sink.clone(),
            default_context: self.default_context.clone(),
            scrubber,
        }
    }

    /// The same client, sending through one connection pool per thread: `make` builds the
    /// calling thread's client on its first request. A pooled connection is served by a task
    /// on the runtime that opened it, so with one runtime per thread (the proxy's serving
    /// threads) a shared pool hands requests to connections whose I/O runs on another thread,
    /// two cross-thread wake-ups per request. Where `make` fails, the shared client is used.
    #[must_use]
    pub fn with_thread_pools(
        &self,
        make: impl Fn() -> Option<reqwest::Client> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner: self.inner.clone(),
            per_thread: Some(Arc::new(ThreadPools {
                make: Box::new(make),
            })),
            lean: self.lean.clone(),
            sink: self.sink.clone(),
            default_context: self.default_context.clone(),
            scrubber: self.scrubber.clone(),
        }
    }

    /// Masks configured secrets and key shapes in upstream text (error messages, events)
    /// before it reaches a client, a log or a capture.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// The capture sink, if capture is on.
    pub fn sink(&self) -> Option<&Arc<dyn CaptureSink>> {
        self.sink.as_ref()
    }

    fn resolve(&self, per_request: Option<&PluginHttpCaptureContext>) -> Option<CaptureTarget> {
        let sink = self.sink.clone()?;
        let ctx = per_request.or(self.default_context.as_ref())?.clone();
        ctx.context.as_ref()?;
        Some(CaptureTarget { sink, ctx })
    }

    /// The same client, sending [`execute`](Self::execute)'s requests through one lean pool
    /// per thread ([`crate::lean`]) that connects within `connect_timeout`. Not when an
    /// outbound proxy is configured (`HTTPS_PROXY`, ...), which only reqwest honours.
    pub(crate) fn with_lean_pools(&self, connect_timeout: Duration) -> Result<Self, BackendError> {
        let lean = if crate::upstream::outbound_proxy_configured() {
            None
        } else {
            Some(LeanPools::new(connect_timeout)?)
        };
        Ok(Self {
            lean,
            ..self.clone()
        })
    }

    /// Whether [`execute`](Self::execute) sends through lean pools.
    #[cfg(test)]
    pub(crate) fn sends_lean(&self) -> bool {
        self.lean.is_some()
    }

    /// Sends `request`. The outbound request is captured; the response is returned with its
    /// body unread, to be consumed with [`HttpResponse::bytes`] or
    /// [`HttpResponse::bytes_stream`], both of which capture it once.
    pub async fn send(
        &self,
        request: reqwest::Request,
        capture_context: Option<&PluginHttpCaptureContext>,
    ) -> Result<HttpResponse, reqwest::Error> {
        let target = self.resolve(capture_context);
        if let Some(t) = &target {
            let body = request
                .body()
                .and_then(|b| b.as_bytes())
                .map(Bytes::copy_from_slice);
            t.record_request(
                request.method(),
                request.url(),
                request.headers(),
                body.unwrap_or_default(),
            );
        }
        let local = self.per_thread.as_ref().and_then(ThreadPools::client);
        let response = local
            .as_ref()
            .unwrap_or(&self.inner)
            .execute(request)
            .await?;
        Ok(HttpResponse::new(Received::Reqwest(response), target))
    }

    /// Sends a request given as its parts, like [`send`](Self::send) (captured the same way),
    /// with errors already mapped as [`crate::upstream::transport_error`] maps reqwest's. A
    /// client made by [`crate::upstream::instance_client`] sends it through the calling
    /// thread's lean pool ([`crate::lean`]); any other through reqwest.
    pub async fn execute(
        &self,
        method: http::Method,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: Bytes,
        capture_context: Option<&PluginHttpCaptureContext>,
    ) -> Result<HttpResponse, BackendError> {
        let Some(lean) = &self.lean else {
            let mut request = reqwest::Request::new(method, url.clone());
            *request.headers_mut() = headers;
            *request.body_mut() = Some(body.into());
            return self
                .send(request, capture_context)
                .await
                .map_err(crate::upstream::transport_error);
        };
        let to = crate::lean::target_of(url)?;
        let target = self.resolve(capture_context);
        if let Some(t) = &target {
            t.record_request(&method, url, &headers, body.clone());
        }
        let response = lean.send(method, to, headers, body).await?;
        Ok(HttpResponse::new(Received::Lean(response), target))
    }
}

/// Builds the calling thread's client of one [`CaptureAwareClient`] (and its clones).
struct ThreadPools {
    make: Box<dyn Fn() -> Option<reqwest::Client> + Send + Sync>,
}

thread_local! {
    /// This thread's clients, by the [`ThreadPools`] they were made for. An entry whose
    /// owner is gone (a backend instance dropped on reload) is pruned when the next is added.
    static THREAD_CLIENTS: std::cell::RefCell<Vec<(std::sync::Weak<ThreadPools>, reqwest::Client)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl ThreadPools {
    fn client(self: &Arc<Self>) -> Option<reqwest::Client> {
        THREAD_CLIENTS.with_borrow_mut(|clients| {
            let me = Arc::as_ptr(self);
            if let Some((_, client)) = clients.iter().find(|(owner, _)| owner.as_ptr() == me) {
                return Some(client.clone());
            }
            let client = (self.make)()?;
            clients.retain(|(owner, _)| owner.strong_count() > 0);
            clients.push((Arc::downgrade(self), client.clone()));
            Some(client)
        })
    }
}

struct CaptureTarget {
    sink: Arc<dyn CaptureSink>,
    ctx: PluginHttpCaptureContext,
}

impl CaptureTarget {
    fn request_id(&self) -> String {
        self.ctx
            .context
            .as_ref()
            .map(|c| c.request_id.clone())
            .unwrap_or_default()
    }
    fn session_id(&self) -> Option<String> {
        self.ctx.context.as_ref().and_then(|c| c.session_id.clone())
    }

    /// Captures an outbound request.
    fn record_request(
        &self,
        method: &http::Method,
        url: &reqwest::Url,
        headers: &HeaderMap,
        body: Bytes,
    ) {
        self.sink.record(CaptureRecord {
            request_id: self.request_id(),
            session_id: self.session_id(),
            direction: CaptureDirection::OutboundRequest,
            backend: self.ctx.backend.clone(),
            model: self.ctx.model.clone(),
            key_name: self.ctx.key_name.clone(),
            timestamp: SystemTime::now(),
            method: Some(method.to_string()),
            url: Some(masked_url(url)),
            status: None,
            headers: masked_headers(headers),
            body_len: body.len(),
            body,
            chunks: Vec::new(),
        });
    }
}

/// Capture state of one response, shared by its body stream.
pub struct PendingCapture {
    target: CaptureTarget,
    status: u16,
    headers: Vec<(String, String)>,
    buffer: std::sync::Mutex<BytesMut>,
    /// Pieces of a streamed body (empty when it was read whole).
    chunks: std::sync::Mutex<Vec<CaptureChunk>>,
    seen: std::sync::atomic::AtomicUsize,
    completed: AtomicBool,
}

impl PendingCapture {
    /// Adds body bytes; `streamed` notes them as one timestamped piece.
    fn append(&self, chunk: &[u8], streamed: bool) {
        let seen = self.seen.fetch_add(chunk.len(), Ordering::Relaxed);
        if seen >= CAPTURE_BODY_LIMIT {
            return;
        }
        let kept = chunk.len().min(CAPTURE_BODY_LIMIT - seen);
        if let Ok(mut buf) = self.buffer.lock() {
            buf.extend_from_slice(&chunk[..kept]);
        }
        if streamed
            && kept > 0
            && let Ok(mut chunks) = self.chunks.lock()
        {
            chunks.push(CaptureChunk {
                at: SystemTime::now(),
                len: kept,
            });
        }
    }

    /// Whether the inbound response was captured already (the seed's
    /// `llm_proxy_http_capture_completed` flag).
    pub fn is_completed(&self) -> bool {
        self.completed.load(Ordering::Acquire)
    }
}

/// Records the inbound response of `capture` once; later calls are no-ops.
pub fn capture_http_response(capture: &PendingCapture) {
    if capture.completed.swap(true, Ordering::AcqRel) {
        return;
    }
    let body = capture
        .buffer
        .lock()
        .map(|mut b| b.split().freeze())
        .unwrap_or_default();
    let chunks = capture
        .chunks
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    let t = &capture.target;
    t.sink.record(CaptureRecord {
        request_id: t.request_id(),
        session_id: t.session_id(),
        direction: CaptureDirection::InboundResponse,
        backend: t.ctx.backend.clone(),
        model: t.ctx.model.clone(),
        key_name: t.ctx.key_name.clone(),
        timestamp: SystemTime::now(),
        method: None,
        url: None,
        status: Some(capture.status),
        headers: capture.headers.clone(),
        body,
        body_len: capture.seen.load(Ordering::Relaxed),
        chunks,
    });
}

/// An upstream response as the transport that fetched it gives it.
enum Received {
    Reqwest(reqwest::Response),
    Lean(http::Response<hyper::body::Incoming>),
}

/// An upstream response whose body is captured as it is consumed.
pub struct HttpResponse {
    inner: Received,
    capture: Option<Arc<PendingCapture>>,
}

impl HttpResponse {
    fn new(inner: Received, target: Option<CaptureTarget>) -> Self {
        let mut response = Self {
            inner,
            capture: None,
        };
        response.capture = target.map(|target| {
            Arc::new(PendingCapture {
                target,
                status: response.status().as_u16(),
                headers: masked_headers(response.headers()),
                buffer: std::sync::Mutex::new(BytesMut::new()),
                chunks: std::sync::Mutex::new(Vec::new()),
                seen: std::sync::atomic::AtomicUsize::new(0),
                completed: AtomicBool::new(false),
            })
        });
        response
    }

    /// Status.
    pub fn status(&self) -> StatusCode {
        match &self.inner {
            Received::Reqwest(r) => r.status(),
            Received::Lean(r) => r.status(),
        }
    }

    /// Headers.
    pub fn headers(&self) -> &HeaderMap {
        match &self.inner {
            Received::Reqwest(r) => r.headers(),
            Received::Lean(r) => r.headers(),
        }
    }

    /// The capture state, for an explicit [`capture_http_response`] call.
    pub fn capture(&self) -> Option<&Arc<PendingCapture>> {
        self.capture.as_ref()
    }

    /// Reads the whole body (bounded by `timeout`) and captures the response.
    pub async fn bytes(self, timeout: Option<Duration>) -> Result<Bytes, BackendError> {
        let read = async {
            match self.inner {
                Received::Reqwest(r) => r.bytes().await.map_err(|e| e.to_string()),
                Received::Lean(r) => http_body_util::BodyExt::collect(r.into_body())
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .map_err(|e| e.to_string()),
            }
        };
        let body = match timeout {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| BackendError::timeout("upstream body timed out"))?,
            None => read.await,
        }
        .map_err(|e| BackendError::transport(format!("reading upstream body: {e}")))?;
        if let Some(c) = &self.capture {
            c.append(&body, false);
            capture_http_response(c);
        }
        Ok(body)
    }

    /// The body as a byte stream. The response is captured when the stream ends or is dropped.
    pub fn bytes_stream(self) -> BodyStream {
        use futures::StreamExt;
        let inner: Pin<Box<dyn Stream<Item = Result<Bytes, BackendError>> + Send>> = match self
            .inner
        {
            Received::Reqwest(r) => Box::pin(
                r.bytes_stream()
                    .map(|chunk| chunk.map_err(|e| stream_error(e.is_timeout(), &e))),
            ),
            Received::Lean(r) => Box::pin(
                http_body_util::BodyDataStream::new(r.into_body())
                    .map(|chunk| chunk.map_err(|e| stream_error(crate::lean::timed_out(&e), &e))),
            ),
        };
        BodyStream {
            inner,
            capture: self.capture,
        }
    }
}

/// A body that failed mid-stream.
fn stream_error(timeout: bool, e: &dyn std::fmt::Display) -> BackendError {
    if timeout {
        BackendError::timeout(format!("upstream stream timed out: {e}"))
    } else {
        BackendError::transport(format!("upstream stream failed: {e}"))
    }
}

/// Streaming body that tees into the capture.
pub struct BodyStream {
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, BackendError>> + Send>>,
    capture: Option<Arc<PendingCapture>>,
}

#[cfg(test)]
impl BodyStream {
    /// A body of these chunks, not captured.
    pub(crate) fn of(
        chunks: impl Stream<Item = Result<Bytes, BackendError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Box::pin(chunks),
            capture: None,
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(c) = &self.capture {
                    c.append(&chunk, true);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                if let Some(c) = &self.capture {
                    capture_http_response(c);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        if let Some(c) = &self.capture {
            capture_http_response(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Keeps every record.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<CaptureRecord>>);

    impl CaptureSink for Recorder {
        fn record(&self, record: CaptureRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    impl Recorder {
        fn directions(&self) -> Vec<(CaptureDirection, String)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|r| (r.direction, r.backend.clone()))
                .collect()
        }
    }

    #[test]
    fn each_thread_builds_its_own_client_once_and_drops_those_of_gone_owners() {
        use std::sync::atomic::AtomicUsize;
        let made = Arc::new(AtomicUsize::new(0));
        let pools = |made: &Arc<AtomicUsize>| {
            let made = made.clone();
            Arc::new(ThreadPools {
                make: Box::new(move || {
                    made.fetch_add(1, Ordering::Relaxed);
                    reqwest::Client::builder().build().ok()
                }),
            })
        };
        let owned = |_: ()| THREAD_CLIENTS.with_borrow(Vec::len);
        std::thread::spawn(move || {
            let first = pools(&made);
            assert!(first.client().is_some());
            assert!(first.client().is_some());
            assert_eq!(made.load(Ordering::Relaxed), 1, "made once per thread");
            let other = first.clone();
            std::thread::spawn(move || assert!(other.client().is_some()))
                .join()
                .unwrap();
            assert_eq!(
                made.load(Ordering::Relaxed),
                2,
                "another thread, another client"
            );
            // A reloaded backend: the old owner is gone, its client goes with the next one.
            drop(first);
            assert_eq!(owned(()), 1);
            let second = pools(&made);
            assert!(second.client().is_some());
            assert_eq!(owned(()), 1);
            assert_eq!(made.load(Ordering::Relaxed), 3);
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn a_per_thread_client_sends_and_captures_like_the_shared_one() {
        let url = server("{\"ok\":true}").await;
        let sink = Arc::new(Recorder::default());
        let ctx = PluginHttpCaptureContext {
            backend: "b".into(),
            context: Some(ConnectorRequestContext {
                request_id: "r".into(),
                session_id: None,
            }),
            ..Default::default()
        };
        let client = build_capture_aware_client(
            reqwest::Client::builder(),
            Some(sink.clone() as Arc<dyn CaptureSink>),
            None,
        )
        .unwrap()
        .with_thread_pools(|| reqwest::Client::builder().build().ok());
        let request = client.inner().get(&url).build().unwrap();
        let response = client.send(request, Some(&ctx)).await.unwrap();
        assert_eq!(
            response.bytes(None).await.unwrap().as_ref(),
            b"{\"ok\":true}"
        );
        assert_eq!(
            sink.directions(),
            [
                (CaptureDirection::OutboundRequest, "b".to_owned()),
                (CaptureDirection::InboundResponse, "b".to_owned()),
            ]
        );
    }

    /// A one-shot HTTP server answering every connection with `body`.
    async fn server(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        format!("http://{addr}/v1/x")
    }

    fn context(backend: &str, request_id: Option<&str>) -> PluginHttpCaptureContext {
        PluginHttpCaptureContext {
            backend: backend.into(),
            model: "m".into(),
            key_name: Some("MY_KEY".into()),
            context: request_id.map(|id| ConnectorRequestContext {
                request_id: id.into(),
                session_id: None,
            }),
        }
    }

    fn client(
        sink: &Arc<Recorder>,
        default: Option<PluginHttpCaptureContext>,
    ) -> CaptureAwareClient {
        let sink: Arc<dyn CaptureSink> = sink.clone();
        build_capture_aware_client(reqwest::Client::builder(), Some(sink), default).unwrap()
    }

    fn get(url: &str) -> reqwest::Request {
        reqwest::Request::new(reqwest::Method::GET, reqwest::Url::parse(url).unwrap())
    }

    #[tokio::test]
    async fn a_per_request_context_overrides_the_default_and_bytes_captures_once() {
        let url = server("hello").await;
        let sink = Arc::new(Recorder::default());
        let client = client(&sink, Some(context("default", Some("req_default"))));
        let ctx = context("override", Some("req_1"));
        let response = client.send(get(&url), Some(&ctx)).await.unwrap();
        let capture = response.capture().cloned().unwrap();
        assert!(!capture.is_completed());
        assert_eq!(response.bytes(None).await.unwrap(), "hello");
        assert!(capture.is_completed(), "the completed flag is set");
        capture_http_response(&capture);
        assert_eq!(
            sink.directions(),
            [
                (CaptureDirection::OutboundRequest, "override".to_owned()),
                (CaptureDirection::InboundResponse, "override".to_owned()),
            ]
        );
        let records = sink.0.lock().unwrap();
        assert_eq!(records[1].body, "hello");
        assert_eq!(records[1].status, Some(200));
        assert_eq!(records[1].key_name.as_deref(), Some("MY_KEY"));
        assert_eq!(records[1].request_id, "req_1");
    }

    #[tokio::test]
    async fn a_streamed_response_is_captured_once_after_its_body() {
        let url = server("streamed body").await;
        let sink = Arc::new(Recorder::default());
        let client = client(&sink, Some(context("default", Some("req_2"))));
        let response = client.send(get(&url), None).await.unwrap();
        let capture = response.capture().cloned().unwrap();
        let mut body = response.bytes_stream();
        let mut seen = Vec::new();
        while let Some(chunk) = body.next().await {
            seen.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(seen, b"streamed body");
        capture_http_response(&capture);
        capture_http_response(&capture);
        drop(body);
        let inbound: Vec<_> = sink
            .directions()
            .into_iter()
            .filter(|(d, _)| *d == CaptureDirection::InboundResponse)
            .collect();
        assert_eq!(
            inbound,
            [(CaptureDirection::InboundResponse, "default".to_owned())]
        );
        let records = sink.0.lock().unwrap();
        assert_eq!(records[1].body, "streamed body");
        assert!(
            !records[1].chunks.is_empty(),
            "a streamed body keeps its pieces"
        );
        let total: usize = records[1].chunks.iter().map(|c| c.len).sum();
        assert_eq!(total, records[1].body.len());
    }

    #[tokio::test]
    async fn nothing_is_captured_without_a_request_identity() {
        let url = server("x").await;
        let sink = Arc::new(Recorder::default());
        let client = client(&sink, None);
        let response = client
            .send(get(&url), Some(&context("b", None)))
            .await
            .unwrap();
        assert!(response.capture().is_none());
        response.bytes(None).await.unwrap();
        let response = client.send(get(&url), None).await.unwrap();
        response.bytes(None).await.unwrap();
        assert!(sink.directions().is_empty());
    }

    #[test]
    fn secret_headers_and_query_keys_are_masked() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-secret-value-123456"),
        );
        h.insert(
            "x-goog-api-key",
            HeaderValue::from_static("AIzaSECRETSECRETSECRET"),
        );
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let mut custom = HeaderValue::from_static("custom-credential-value");
        custom.set_sensitive(true);
        h.insert("x-custom-auth", custom);
        let m = masked_headers(&h);
        let joined = format!("{m:?}");
        assert!(!joined.contains("secret-value"), "{joined}");
        assert!(!joined.contains("SECRETSECRET"), "{joined}");
        assert!(!joined.contains("custom-credential"), "{joined}");
        assert!(joined.contains("application/json"));
        let url = reqwest::Url::parse("https://g.test/v1?key=AIzaSECRET&alt=sse").unwrap();
        let shown = masked_url(&url);
        assert!(!shown.contains("AIzaSECRET"), "{shown}");
        assert!(shown.contains("alt=sse"));
        let url = reqwest::Url::parse("https://bob:hunter2-pass@g.test/v1").unwrap();
        let shown = masked_url(&url);
        assert!(!shown.contains("hunter2-pass"), "{shown}");
        assert!(shown.contains("g.test/v1"), "{shown}");
    }
}
