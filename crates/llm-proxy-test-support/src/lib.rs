//! Mock upstream servers for tests: bound to 127.0.0.1 port 0, answering from a script of
//! replies (JSON, SSE with pacing, holds, cuts mid-stream), recording every request, and
//! reporting when a client hangs up mid-stream. Replies can echo what the mock received
//! ([`ECHO_CREDENTIAL`], [`ECHO_HEADERS`]), as a careless upstream does in its errors.

pub mod anthropic;
pub mod gemini;
pub mod ollama;
pub mod openai;
#[cfg(unix)]
pub mod postgres;
pub mod responses;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

/// Placeholder, anywhere in a reply (body, frames, header values), replaced by the credential
/// the request carried: the `authorization` value without its scheme, the `x-api-key` or
/// `x-goog-api-key` value, or the `key` query parameter.
pub const ECHO_CREDENTIAL: &str = "{{credential}}";

/// Placeholder replaced by every request header as `name: value` pairs joined with `; `.
pub const ECHO_HEADERS: &str = "{{headers}}";

/// How the mock answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A JSON body with a status and extra headers.
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Value,
        /// Extra headers (e.g. `retry-after`).
        headers: Vec<(String, String)>,
    },
    /// A raw body with a status (non-JSON error pages).
    Raw {
        /// HTTP status.
        status: u16,
        /// Body text.
        body: String,
    },
    /// A server-sent-event stream.
    Sse(SseScript),
    /// A newline-delimited JSON stream (Ollama's native API); frames are lines with their
    /// trailing `\n`.
    Ndjson(SseScript),
}

/// A scripted SSE response.
#[derive(Debug, Clone, Default)]
pub struct SseScript {
    /// Raw frames, each sent as one chunk (include the trailing blank line).
    pub frames: Vec<String>,
    /// Pause before each frame after the first.
    pub gap: Duration,
    /// If set, nothing (not even headers) is sent until this is notified.
    pub hold_before_head: Option<Arc<Notify>>,
    /// If set, headers go out but the first frame waits until this is notified.
    pub hold_before_first: Option<Arc<Notify>>,
    /// Close the connection after the frames instead of ending cleanly.
    pub cut: bool,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: Value) -> Self {
        Self::Json {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    /// An error status with a JSON body.
    pub fn error(status: u16, body: Value) -> Self {
        Self::Json {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// An SSE stream of `frames`.
    pub fn sse(frames: Vec<String>) -> Self {
        Self::Sse(SseScript {
            frames,
            ..SseScript::default()
        })
    }

    /// An NDJSON stream of `lines` (each sent as one chunk).
    pub fn ndjson(lines: Vec<String>) -> Self {
        Self::Ndjson(SseScript {
            frames: lines,
            ..SseScript::default()
        })
    }
}

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body parsed as JSON (`Null` if it was not JSON).
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    calls: AtomicUsize,
    disconnects: AtomicUsize,
    disconnected: Notify,
}

/// A running mock upstream.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    /// Starts a mock on 127.0.0.1:0.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a reply (used in order; the fallback answers when the queue is empty).
    pub fn push(&self, reply: Reply) {
        if let Ok(mut q) = self.shared.script.lock() {
            q.push_back(reply);
        }
    }

    /// Sets the reply used when the queue is empty.
    pub fn set_fallback(&self, reply: Reply) {
        if let Ok(mut f) = self.shared.fallback.lock() {
            *f = Some(reply);
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Number of requests received.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Number of streamed responses whose client went away before the end.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Waits until a streaming client has hung up (bounded by `limit`).
    pub async fn wait_for_disconnect(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.shared.disconnected.notified();
                if self.disconnects() > 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let echo = Echo::of(&parts.uri, &parts.headers);
    let recorded = Recorded {
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    if let Ok(mut r) = shared.requests.lock() {
        r.push(recorded);
    }
    let reply = shared
        .script
        .lock()
        .ok()
        .and_then(|mut q| q.pop_front())
        .or_else(|| shared.fallback.lock().ok().and_then(|f| f.clone()))
        .map(|r| echo.fill_reply(r));
    match reply {
        None => respond(
            500,
            "application/json",
            Body::from("{\"error\":{\"message\":\"mock has no reply scripted\"}}"),
            &[],
        ),
        Some(Reply::Json {
            status,
            body,
            headers,
        }) => {
            let extra: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            respond(
                status,
                "application/json",
                Body::from(body.to_string()),
                &extra,
            )
        }
        Some(Reply::Raw { status, body }) => respond(status, "text/html", Body::from(body), &[]),
        Some(Reply::Sse(script)) => stream_reply(script, "text/event-stream", shared).await,
        Some(Reply::Ndjson(script)) => stream_reply(script, "application/x-ndjson", shared).await,
    }
}

async fn stream_reply(script: SseScript, content_type: &str, shared: Arc<Shared>) -> Response {
    if let Some(hold) = &script.hold_before_head {
        hold.notified().await;
    }
    let headers = script.headers.clone();
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(stream_frames(script, tx, shared));
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let extra: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    respond(200, content_type, body, &extra)
}

async fn stream_frames(
    script: SseScript,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    shared: Arc<Shared>,
) {
    if let Some(hold) = &script.hold_before_first {
        hold.notified().await;
    }
    for (i, frame) in script.frames.into_iter().enumerate() {
        if i > 0 && !script.gap.is_zero() {
            tokio::time::sleep(script.gap).await;
        }
        if tx.send(Ok(Bytes::from(frame))).await.is_err() {
            shared.disconnects.fetch_add(1, Ordering::SeqCst);
            shared.disconnected.notify_waiters();
            return;
        }
    }
    // A clean end drops the sender, which ends the body; a cut ends it with an error.
    if script.cut {
        let _ = tx.send(Err(std::io::Error::other("cut"))).await;
    }
}

/// What a reply may echo: the request's credential and headers, JSON-escaped for bodies and
/// frames (both carry JSON), as they are for header values.
struct Echo {
    credential: String,
    headers: String,
}

impl Echo {
    fn of(uri: &http::Uri, headers: &HeaderMap) -> Self {
        let credential = ["authorization", "x-api-key", "x-goog-api-key"]
            .iter()
            .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
            .map(|v| v.rsplit(' ').next().unwrap_or(v).to_owned())
            .or_else(|| {
                uri.query()?
                    .split('&')
                    .find_map(|p| p.strip_prefix("key="))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        let headers = headers
            .iter()
            .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v.as_bytes())))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            credential,
            headers,
        }
    }

    fn fill(&self, text: &str, json: bool) -> String {
        if !text.contains("{{") {
            return text.to_owned();
        }
        let escape = |s: &str| {
            if json {
                let quoted = Value::String(s.to_owned()).to_string();
                quoted[1..quoted.len() - 1].to_owned()
            } else {
                s.to_owned()
            }
        };
        text.replace(ECHO_CREDENTIAL, &escape(&self.credential))
            .replace(ECHO_HEADERS, &escape(&self.headers))
    }

    fn fill_headers(&self, headers: Vec<(String, String)>) -> Vec<(String, String)> {
        headers
            .into_iter()
            .map(|(k, v)| {
                let v = self.fill(&v, false);
                (k, v)
            })
            .collect()
    }

    fn fill_script(&self, mut script: SseScript) -> SseScript {
        script.frames = script.frames.iter().map(|f| self.fill(f, true)).collect();
        script.headers = self.fill_headers(script.headers);
        script
    }

    fn fill_reply(&self, reply: Reply) -> Reply {
        match reply {
            Reply::Json {
                status,
                body,
                headers,
            } => {
                let text = self.fill(&body.to_string(), true);
                Reply::Json {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(body),
                    headers: self.fill_headers(headers),
                }
            }
            Reply::Raw { status, body } => Reply::Raw {
                status,
                body: self.fill(&body, false),
            },
            Reply::Sse(script) => Reply::Sse(self.fill_script(script)),
            Reply::Ndjson(script) => Reply::Ndjson(self.fill_script(script)),
        }
    }
}

fn respond(status: u16, content_type: &str, body: Body, extra: &[(&str, &str)]) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type);
    for (k, v) in extra {
        builder = builder.header(*k, *v);
    }
    builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
