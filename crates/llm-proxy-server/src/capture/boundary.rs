//! The client side of the wire capture: a middleware (installed by [`crate::app`] only when
//! capture is on) that tees the request body into an `inbound_request` record and the
//! response body, piece by timestamped piece, into an `outbound_response` record, both as the
//! bytes crossed the socket. The upstream side (`outbound_request`, `inbound_response`) is the
//! capture-aware client's; the proxy's request id (`x-request-id`) ties the four together.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use llm_proxy_api::http::{
    CAPTURE_BODY_LIMIT, CaptureChunk, CaptureDirection, CaptureRecord, CaptureSink, masked_headers,
};

/// The sink the middleware writes to.
pub type SharedSink = Arc<dyn CaptureSink>;

/// What the pipeline learns about a request after its response has started (the session and
/// the instance that served it), shared with the capture through a response extension. Only
/// set when capture is on.
#[derive(Debug, Clone)]
pub struct CaptureLink {
    /// The request context's slots (the session, the instance), as it fills them.
    slots: Arc<crate::context::Slots>,
}

impl CaptureLink {
    pub(crate) fn new(slots: Arc<crate::context::Slots>) -> Self {
        Self { slots }
    }

    fn session(&self) -> Option<String> {
        self.slots.session_id().map(str::to_owned)
    }

    fn backend(&self) -> String {
        self.slots.backend().unwrap_or_default().to_owned()
    }
}

/// The middleware: records the client's request and the proxy's answer.
pub async fn capture_client_side(
    State(sink): State<SharedSink>,
    request: Request,
    next: Next,
) -> Response {
    let arrived = SystemTime::now();
    let (parts, body) = request.into_parts();
    let method = parts.method.to_string();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let request_headers = masked_headers(&parts.headers);
    let taken = Arc::new(Mutex::new(Taken::default()));
    let body = Body::new(Tee {
        inner: body,
        taken: taken.clone(),
        streamed: false,
        done: None,
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(llm_proxy_api::ids::request_id, str::to_owned);
    let link = response.extensions().get::<CaptureLink>().cloned();
    let (body, body_len, _) = lock(&taken).take();
    sink.record(CaptureRecord {
        request_id: request_id.clone(),
        session_id: link.as_ref().and_then(CaptureLink::session),
        direction: CaptureDirection::InboundRequest,
        backend: String::new(),
        model: String::new(),
        key_name: None,
        timestamp: arrived,
        method: Some(method),
        url: Some(target),
        status: None,
        headers: request_headers,
        body,
        body_len,
        chunks: Vec::new(),
    });
    let (parts, body) = response.into_parts();
    let done = Done {
        sink,
        request_id,
        link,
        status: parts.status.as_u16(),
        headers: masked_headers(&parts.headers),
    };
    let body = Body::new(Tee {
        inner: body,
        taken: Arc::new(Mutex::new(Taken::default())),
        streamed: true,
        done: Some(done),
    });
    Response::from_parts(parts, body)
}

/// The bytes of a body so far (cut at [`CAPTURE_BODY_LIMIT`]) and its pieces.
#[derive(Default)]
struct Taken {
    buf: BytesMut,
    seen: usize,
    chunks: Vec<CaptureChunk>,
}

impl Taken {
    fn add(&mut self, data: &[u8], streamed: bool) {
        let room = CAPTURE_BODY_LIMIT.saturating_sub(self.seen);
        self.seen = self.seen.saturating_add(data.len());
        let kept = data.len().min(room);
        if kept == 0 {
            return;
        }
        self.buf.extend_from_slice(&data[..kept]);
        if streamed {
            self.chunks.push(CaptureChunk {
                at: SystemTime::now(),
                len: kept,
            });
        }
    }

    fn take(&mut self) -> (Bytes, usize, Vec<CaptureChunk>) {
        (
            self.buf.split().freeze(),
            self.seen,
            std::mem::take(&mut self.chunks),
        )
    }
}

fn lock(taken: &Mutex<Taken>) -> std::sync::MutexGuard<'_, Taken> {
    taken.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the `outbound_response` record needs once the body has ended (or was dropped).
struct Done {
    sink: SharedSink,
    request_id: String,
    link: Option<CaptureLink>,
    status: u16,
    headers: Vec<(String, String)>,
}

/// A body that copies its data frames as they pass; with `done`, it records them as the
/// `outbound_response` when the body ends or is dropped (a client that went away).
struct Tee {
    inner: Body,
    taken: Arc<Mutex<Taken>>,
    streamed: bool,
    done: Option<Done>,
}

impl Tee {
    fn finish(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let (body, body_len, chunks) = lock(&self.taken).take();
        done.sink.record(CaptureRecord {
            request_id: done.request_id,
            session_id: done.link.as_ref().and_then(CaptureLink::session),
            direction: CaptureDirection::OutboundResponse,
            backend: done
                .link
                .as_ref()
                .map(CaptureLink::backend)
                .unwrap_or_default(),
            model: String::new(),
            key_name: None,
            timestamp: SystemTime::now(),
            method: None,
            url: None,
            status: Some(done.status),
            headers: done.headers,
            body,
            body_len,
            chunks,
        });
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    lock(&self.taken).add(data, self.streamed);
                }
            }
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        self.finish();
    }
}
