//! WebSocket mode of the Responses frontend: `GET /v1/responses` (and `/responses`) upgraded
//! to a WebSocket, what Codex CLI uses when its provider says `supports_websockets`.
//!
//! The client sends `{"type": "response.create", ...}` text messages carrying the same fields
//! as a `POST /v1/responses` body; each is answered with the same events as the SSE stream,
//! one JSON text message per event, ending with `response.completed` (or `response.incomplete`,
//! or `error` + `response.failed` when the call fails after it started). Turns run one after
//! the other on a connection. A failure before the first event is one `error` message carrying
//! the HTTP `status` and the OpenAI error object (Codex reads it like an HTTP error); the
//! connection stays usable. `previous_response_id` works across turns: the connection keeps its
//! last answer even with `store: false`, and stored answers are shared with HTTP.
//! `generate: false` (Codex's warm-up) answers at once, without an upstream call, with an empty
//! response whose id continues the conversation. `response.processed` acknowledgements are
//! ignored. Pings are answered; the proxy pings while the upstream is silent; a connection
//! silent for `idle_timeout` between turns is closed; at most `max_connections` are open.
//! The request conversion and the event renderer are the HTTP frontend's ([`super::responses`]).

use std::collections::VecDeque;
use std::future::Future;

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code, rejection,
};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;
use llm_proxy_api::stream::{EventStream, StreamEvent};
use llm_proxy_protocol::openai_responses::ResponsesRequest;
use llm_proxy_protocol::parse_body;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::RequestContext;
use super::responses::{Kept, ResponsesRenderer, Turn, prepare};
use super::sse::StreamRenderer;
use crate::context::ClientIdentity;
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;

/// Client messages read during a turn and answered after it; more close the connection.
const MAX_QUEUED: usize = 8;

/// `GET /v1/responses`: the upgrade. Client keys are checked by the router's middleware
/// before this runs; a request that is not a WebSocket upgrade gets the framework's refusal.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    client: Option<axum::Extension<ClientIdentity>>,
    ws: Result<WebSocketUpgrade, rejection::WebSocketUpgradeRejection>,
) -> Response {
    let settings = &state.config().responses_api.websocket;
    if !settings.enabled {
        return ProxyError::WebSocketDisabled.into_response_for(WireFormat::OpenAiResponses);
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    let Ok(slot) = state.websocket_slots().clone().try_acquire_owned() else {
        tracing::info!(
            max = settings.max_connections,
            "WebSocket upgrade refused: connection cap reached"
        );
        return ProxyError::WebSocketLimit {
            max: settings.max_connections,
        }
        .into_response_for(WireFormat::OpenAiResponses);
    };
    let limit = state.config().max_body_bytes;
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            Connection {
                state,
                headers,
                client: client.map(|c| c.0),
                socket,
                last: None,
                queued: VecDeque::new(),
                _slot: slot,
            }
            .run()
        })
}

/// The client went away (or broke the protocol); the connection is over.
struct Gone;

/// One upgraded connection.
struct Connection {
    state: AppState,
    /// The upgrade request's headers: every turn's request headers (session id, ...).
    headers: HeaderMap,
    /// The client key that opened the connection (multi-user mode).
    client: Option<ClientIdentity>,
    socket: WebSocket,
    /// The last completed answer, for a `previous_response_id` naming it.
    last: Option<Kept>,
    /// Messages that arrived while a turn was running.
    queued: VecDeque<Message>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(mut self) {
        tracing::info!("Responses WebSocket connection opened");
        let idle = self.state.config().responses_api.websocket.idle_timeout;
        let shutdown = self.state.shutdown().clone();
        loop {
            let message = match self.queued.pop_front() {
                Some(m) => m,
                None => tokio::select! {
                    m = tokio::time::timeout(idle, self.socket.recv()) => match m {
                        Ok(Some(Ok(m))) => m,
                        Ok(Some(Err(_)) | None) => return,
                        Err(_) => {
                            tracing::debug!("closing an idle Responses WebSocket");
                            self.close(close_code::NORMAL, "idle timeout").await;
                            return;
                        }
                    },
                    () = shutdown.begun() => {
                        self.close(close_code::AWAY, "the proxy is shutting down").await;
                        return;
                    }
                },
            };
            let handled = match message {
                Message::Text(text) => self.on_text(text).await,
                Message::Binary(_) => {
                    let e = ProxyError::invalid(
                        "binary messages are not supported; send JSON text messages",
                        None,
                        None,
                    );
                    self.send_error(&e).await
                }
                // Pings are answered by the WebSocket layer itself.
                Message::Ping(_) | Message::Pong(_) => Ok(()),
                Message::Close(_) => return,
            };
            if handled.is_err() {
                return;
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }

    async fn send(&mut self, message: Message) -> Result<(), Gone> {
        self.socket.send(message).await.map_err(|_| Gone)
    }

    /// Sends rendered events, one text message each.
    async fn send_frames(&mut self, frames: &mut Vec<Bytes>) -> Result<(), Gone> {
        for frame in frames.drain(..) {
            let text = Utf8Bytes::try_from(frame).map_err(|_| Gone)?;
            self.send(Message::Text(text)).await?;
        }
        Ok(())
    }

    /// A failure before a turn's first event: the HTTP status and the OpenAI error object.
    async fn send_error(&mut self, e: &ProxyError) -> Result<(), Gone> {
        let mut body = e.body(WireFormat::OpenAiResponses);
        let event = json!({
            "type": "error",
            "status": e.status().as_u16(),
            "error": body.get_mut("error").map(Value::take).unwrap_or(Value::Null),
        });
        self.send(Message::Text(Utf8Bytes::from(event.to_string())))
            .await
    }

    async fn on_text(&mut self, text: Utf8Bytes) -> Result<(), Gone> {
        let mut meta = RequestContext::new(
            &self.state,
            WireFormat::OpenAiResponses,
            self.headers.clone(),
        )
        .with_client(self.client.clone());
        let (wire, generate) = match parse(&self.state, text.as_bytes()).await {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(()),
            Err(e) => return self.fail(&meta, &e).await,
        };
        let Turn { req, ctx, save } =
            match prepare(&self.state, Box::new(wire), &mut meta, self.last.as_ref()).await {
                Ok(turn) => turn,
                Err(e) => return self.fail(&meta, &e).await,
            };
        let mut renderer = ResponsesRenderer::json(ctx, save, self.state.sealer().clone());
        let mut frames = Vec::with_capacity(4);
        if !generate {
            // Warm-up: nothing is generated; the answer only names the conversation so far.
            renderer.finish(&mut frames);
            self.last = renderer.kept.take();
            meta.finish(true, "ok");
            return self.send_frames(&mut frames).await;
        }
        let outcome = self.stream(&meta, req, &mut renderer, &mut frames).await;
        let label = match &outcome {
            Ok(label) => *label,
            Err(Gone) => "client_disconnected",
        };
        if let Some(kept) = renderer.kept.take() {
            self.last = Some(kept);
        }
        meta.finish(true, label);
        tracing::info!(request_id = %meta.request_id, outcome = label, "Responses WebSocket turn done");
        outcome.map(|_| ())
    }

    /// Reports a failure before the first event.
    async fn fail(&mut self, meta: &RequestContext, e: &ProxyError) -> Result<(), Gone> {
        tracing::info!(request_id = %meta.request_id, status = e.status().as_u16(), label = e.label(), "Responses WebSocket turn failed: {e}");
        meta.finish(true, e.label());
        self.send_error(e).await
    }

    /// Runs the call and sends its events; the outcome label for the metrics.
    async fn stream(
        &mut self,
        meta: &RequestContext,
        req: Box<llm_proxy_api::ChatRequest>,
        renderer: &mut ResponsesRenderer,
        frames: &mut Vec<Bytes>,
    ) -> Result<&'static str, Gone> {
        let (state, call_meta) = (self.state.clone(), meta.clone());
        let started = async move {
            let d = call_meta.dispatch(&state, req).await?;
            let mut stream: EventStream =
                super::note_dropped_media::<ResponsesRenderer>(d.stream, &call_meta);
            let first = stream
                .next()
                .await
                .transpose()
                .map_err(ProxyError::Backend)?;
            Ok::<_, ProxyError>((stream, first))
        };
        let (mut stream, first) = match self.wait(Box::pin(started)).await? {
            Some(Ok(started)) => started,
            Some(Err(e)) => {
                self.fail(meta, &e).await?;
                return Ok(e.label());
            }
            None => {
                let e = ProxyError::ShuttingDown;
                self.send_error(&e).await?;
                return Ok(e.label());
            }
        };
        if let Some(event) = first {
            renderer.render(&event, frames);
            self.send_frames(frames).await?;
        }
        loop {
            let next: Option<Result<StreamEvent, _>> = match self.wait(stream.next()).await? {
                Some(next) => next,
                None => {
                    let e = ProxyError::ShuttingDown;
                    renderer.error(&e, frames);
                    self.send_frames(frames).await?;
                    return Ok(e.label());
                }
            };
            match next {
                Some(Ok(event)) => {
                    renderer.render(&event, frames);
                    self.send_frames(frames).await?;
                }
                Some(Err(e)) => {
                    let e = ProxyError::Backend(e);
                    tracing::warn!(request_id = %meta.request_id, error = %e, label = e.label(), "Responses WebSocket stream failed after the first event");
                    renderer.error(&e, frames);
                    self.send_frames(frames).await?;
                    return Ok(e.label());
                }
                None => {
                    renderer.finish(frames);
                    self.send_frames(frames).await?;
                    return Ok("ok");
                }
            }
        }
    }

    /// Waits for `fut` while watching the client (pings answered, messages queued, a close
    /// ending the turn), pinging it while the upstream is silent. `None`: the shutdown grace
    /// is over.
    async fn wait<F: Future + Unpin>(&mut self, mut fut: F) -> Result<Option<F::Output>, Gone> {
        let interval = self.state.config().keepalive_interval;
        let shutdown = self.state.shutdown().clone();
        loop {
            tokio::select! {
                out = &mut fut => return Ok(Some(out)),
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(Gone),
                    Some(Ok(message)) => {
                        if self.queued.len() >= MAX_QUEUED {
                            self.close(close_code::POLICY, "too many messages sent during a response").await;
                            return Err(Gone);
                        }
                        self.queued.push_back(message);
                    }
                },
                () = tokio::time::sleep(interval) => self.send(Message::Ping(Bytes::new())).await?,
                () = shutdown.expired() => return Ok(None),
            }
        }
    }
}

/// A `response.create` as a Responses request and whether to generate (`None`: nothing to
/// answer). Parsing happens inside the request parsing budget.
async fn parse(
    state: &AppState,
    text: &[u8],
) -> Result<Option<(ResponsesRequest, bool)>, ProxyError> {
    let _permit = state.parse_budget().reserve(text.len()).await?;
    let kind: MessageKind = parse_body(text)?;
    match kind.kind.as_deref() {
        Some("response.create") => {}
        Some("response.processed") => return Ok(None),
        other => {
            return Err(ProxyError::invalid(
                format!(
                    "unsupported message type {}; send \"response.create\"",
                    other.map_or_else(|| "(none)".to_owned(), |k| format!("'{k}'"))
                ),
                Some("type"),
                Some("unsupported_message_type"),
            ));
        }
    }
    let mut wire: ResponsesRequest = parse_body(text)?;
    wire.extra.remove("type");
    let generate = !matches!(wire.extra.remove("generate"), Some(Value::Bool(false)));
    // Every answer streams here, whatever the message says.
    wire.stream = Some(true);
    Ok(Some((wire, generate)))
}

/// The `type` of a client message (the rest is skipped).
#[derive(Deserialize)]
struct MessageKind {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}
