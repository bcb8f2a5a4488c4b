//! The fast mock upstream: canned OpenAI Chat answers (and Anthropic Messages and OpenAI
//! Responses, so the bench can be pointed at the mock itself as a sanity check), streaming paced
//! by the clock.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::error::BenchError;

/// Shape of the mock's streamed answers.
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    pub chunks: u32,
    pub interval: Duration,
}

/// A running mock; it stops when this is dropped.
pub struct MockServer {
    pub addr: SocketAddr,
    /// The mock's one thread, for its CPU time (`None` where `/proc` cannot say).
    pub thread_id: Option<u32>,
    _shutdown: oneshot::Sender<()>,
}

/// Binds `127.0.0.1:port` and serves on a thread of its own with a current-thread runtime, so
/// the mock's work is one scheduler the load generator does not share.
pub fn start(port: u16, shape: StreamShape) -> Result<MockServer, BenchError> {
    let listener = StdTcpListener::bind(("127.0.0.1", port))
        .map_err(|e| BenchError::io("binding the mock upstream", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::io("reading the mock's address", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| BenchError::io("configuring the mock's socket", e))?;
    let canned = Arc::new(Canned::new(shape)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BenchError::io("starting the mock's runtime", e))?;
    let (shutdown, stopped) = oneshot::channel();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("bench-mock".into())
        .spawn(move || {
            let _ = tid_tx.send(crate::cpu::current_thread_id());
            runtime.block_on(serve(listener, canned, stopped));
        })
        .map_err(|e| BenchError::io("starting the mock's thread", e))?;
    Ok(MockServer {
        addr,
        thread_id: tid_rx.recv().ok().flatten(),
        _shutdown: shutdown,
    })
}

async fn serve(listener: StdTcpListener, canned: Arc<Canned>, mut stopped: oneshot::Receiver<()>) {
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        // Small writes must leave at once, or Nagle's algorithm shows up as latency.
        let _ = stream.set_nodelay(true);
        let canned = Arc::clone(&canned);
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, Arc::clone(&canned)));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type MockBody = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Debug, Clone, Copy)]
enum Api {
    OpenAi,
    Anthropic,
    Responses,
}

/// The fields of a request that decide the answer; the rest is ignored.
#[derive(Default, Deserialize)]
struct Wants {
    #[serde(default)]
    stream: bool,
    /// `bench-fail` makes the mock answer 500 (the soak's injected upstream failures).
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

async fn answer(
    req: Request<Incoming>,
    canned: Arc<Canned>,
) -> Result<Response<MockBody>, Infallible> {
    let api = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/chat/completions") => Api::OpenAi,
        (&Method::POST, "/v1/messages") => Api::Anthropic,
        (&Method::POST, "/v1/responses") => Api::Responses,
        _ => return Ok(status(StatusCode::NOT_FOUND)),
    };
    let Ok(body) = req.into_body().collect().await else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(wants) = serde_json::from_slice::<Wants>(&body.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    if wants.model.as_deref() == Some(crate::soak::FAIL_MODEL) {
        let mut response = json_response(Bytes::from_static(
            br#"{"error":{"message":"injected failure","type":"server_error"}}"#,
        ));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return Ok(response);
    }
    let include_usage = wants.stream_options.is_some_and(|o| o.include_usage);
    Ok(match (api, wants.stream) {
        (Api::OpenAi, false) => json_response(canned.openai_json.clone()),
        (Api::Anthropic, false) => json_response(canned.anthropic_json.clone()),
        (Api::Responses, false) => json_response(canned.responses_json.clone()),
        (api, true) => sse_response(canned.schedule(api, include_usage)),
    })
}

fn status(code: StatusCode) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = code;
    response
}

fn json_response(body: Bytes) -> Response<MockBody> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Streams each event at its offset from the start of the response.
fn sse_response(schedule: Vec<(Duration, Bytes)>) -> Response<MockBody> {
    let start = Instant::now();
    let events = futures::stream::iter(schedule).then(move |(offset, event)| async move {
        let due = start + offset;
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        Ok::<_, Infallible>(Frame::data(event))
    });
    let mut response = Response::new(StreamBody::new(events).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

/// Every answer serialized once at startup; requests only clone `Bytes`.
struct Canned {
    shape: StreamShape,
    openai_json: Bytes,
    openai_chunks: Vec<Bytes>,
    openai_usage: Bytes,
    openai_done: Bytes,
    anthropic_json: Bytes,
    anthropic_head: Vec<Bytes>,
    anthropic_deltas: Vec<Bytes>,
    anthropic_tail: Vec<Bytes>,
    responses_json: Bytes,
    responses_head: Vec<Bytes>,
    responses_deltas: Vec<Bytes>,
    responses_tail: Vec<Bytes>,
}

const CREATED: u64 = 1_700_000_000;

impl Canned {
    fn new(shape: StreamShape) -> Result<Self, BenchError> {
        let usage = json!({"prompt_tokens": 12, "completion_tokens": shape.chunks, "total_tokens": 12 + shape.chunks});
        let openai_json = json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": "gpt-bench",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark mock."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        });
        let last = shape.chunks.saturating_sub(1);
        let openai_chunks = (0..shape.chunks)
            .map(|i| {
                let delta = if i == 0 {
                    json!({"role": "assistant", "content": format!("tok{i} ")})
                } else {
                    json!({"content": format!("tok{i} ")})
                };
                let finish = if i == last { json!("stop") } else { json!(null) };
                data_event(&json!({
                    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-bench",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }))
            })
            .collect::<Result<_, _>>()?;
        let openai_usage = data_event(&json!({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-bench",
            "choices": [], "usage": usage,
        }))?;
        let anthropic_json = json!({
            "id": "msg_bench", "type": "message", "role": "assistant", "model": "gpt-bench",
            "content": [{"type": "text", "text": "Hello from the benchmark mock."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 7},
        });
        let anthropic_head = vec![
            named_event(
                "message_start",
                &json!({"type": "message_start", "message": {
                    "id": "msg_bench", "type": "message", "role": "assistant", "model": "gpt-bench", "content": [],
                    "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 12, "output_tokens": 1},
                }}),
            )?,
            named_event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            )?,
        ];
        let anthropic_deltas = (0..shape.chunks)
            .map(|i| {
                named_event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("tok{i} ")}}))
            })
            .collect::<Result<_, _>>()?;
        let anthropic_tail = vec![
            named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            )?,
            named_event(
                "message_delta",
                &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": shape.chunks}}),
            )?,
            named_event("message_stop", &json!({"type": "message_stop"}))?,
        ];
        let responses = Responses::new(shape.chunks)?;
        Ok(Self {
            shape,
            openai_json: Bytes::from(serde_json::to_vec(&openai_json)?),
            openai_chunks,
            openai_usage,
            openai_done: Bytes::from_static(b"data: [DONE]\n\n"),
            anthropic_json: Bytes::from(serde_json::to_vec(&anthropic_json)?),
            anthropic_head,
            anthropic_deltas,
            anthropic_tail,
            responses_json: responses.json,
            responses_head: responses.head,
            responses_deltas: responses.deltas,
            responses_tail: responses.tail,
        })
    }

    /// Content event `i` is due at `i * interval`; what precedes the first content event goes
    /// with it, and what follows the last goes right after it.
    fn schedule(&self, api: Api, include_usage: bool) -> Vec<(Duration, Bytes)> {
        let paced = |deltas: &[Bytes]| {
            deltas
                .iter()
                .zip(0u32..)
                .map(|(event, i)| (self.shape.interval * i, event.clone()))
                .collect::<Vec<_>>()
        };
        let end = self.shape.interval * self.shape.chunks.saturating_sub(1);
        match api {
            Api::OpenAi => {
                let mut events = paced(&self.openai_chunks);
                if include_usage {
                    events.push((end, self.openai_usage.clone()));
                }
                events.push((end, self.openai_done.clone()));
                events
            }
            Api::Anthropic => {
                let mut events: Vec<_> = self
                    .anthropic_head
                    .iter()
                    .map(|event| (Duration::ZERO, event.clone()))
                    .collect();
                events.extend(paced(&self.anthropic_deltas));
                events.extend(self.anthropic_tail.iter().map(|event| (end, event.clone())));
                events
            }
            Api::Responses => {
                let mut events: Vec<_> = self
                    .responses_head
                    .iter()
                    .map(|event| (Duration::ZERO, event.clone()))
                    .collect();
                events.extend(paced(&self.responses_deltas));
                events.extend(self.responses_tail.iter().map(|event| (end, event.clone())));
                events
            }
        }
    }
}

/// The canned OpenAI Responses answer, whole and as a stream of named, numbered events.
struct Responses {
    json: Bytes,
    head: Vec<Bytes>,
    deltas: Vec<Bytes>,
    tail: Vec<Bytes>,
}

impl Responses {
    fn new(chunks: u32) -> Result<Self, BenchError> {
        let text = "Hello from the benchmark mock.";
        let message = |status: &str, text: &str| {
            json!({"type": "message", "id": "msg_bench", "status": status, "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]})
        };
        let response = |status: &str, output: serde_json::Value, usage: serde_json::Value| {
            json!({"id": "resp_bench", "object": "response", "created_at": CREATED, "status": status,
                   "model": "gpt-bench", "output": output, "usage": usage})
        };
        let json = response(
            "completed",
            json!([message("completed", text)]),
            json!({"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}),
        );
        let streamed: String = (0..chunks).map(|i| format!("tok{i} ")).collect();
        let mut sequence = 0u32;
        let mut event = |name: &str, mut value: serde_json::Value| {
            value["type"] = json!(name);
            value["sequence_number"] = json!(sequence);
            sequence += 1;
            named_event(name, &value)
        };
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
        let place = json!({"item_id": "msg_bench", "output_index": 0, "content_index": 0});
        let with_place = |mut value: serde_json::Value| {
            if let (Some(fields), Some(place)) = (value.as_object_mut(), place.as_object()) {
                fields.extend(place.clone());
            }
            value
        };
        let head = vec![
            event(
                "response.created",
                json!({"response": response("in_progress", json!([]), json!(null))}),
            )?,
            event(
                "response.in_progress",
                json!({"response": response("in_progress", json!([]), json!(null))}),
            )?,
            event(
                "response.output_item.added",
                json!({"output_index": 0, "item": {"type": "message", "id": "msg_bench", "status": "in_progress", "role": "assistant", "content": []}}),
            )?,
            event(
                "response.content_part.added",
                with_place(json!({"part": part("")})),
            )?,
        ];
        let deltas = (0..chunks)
            .map(|i| {
                event(
                    "response.output_text.delta",
                    with_place(json!({"delta": format!("tok{i} ")})),
                )
            })
            .collect::<Result<_, _>>()?;
        let usage =
            json!({"input_tokens": 12, "output_tokens": chunks, "total_tokens": 12 + chunks});
        let tail = vec![
            event(
                "response.output_text.done",
                with_place(json!({"text": streamed})),
            )?,
            event(
                "response.content_part.done",
                with_place(json!({"part": part(&streamed)})),
            )?,
            event(
                "response.output_item.done",
                json!({"output_index": 0, "item": message("completed", &streamed)}),
            )?,
            event(
                "response.completed",
                json!({"response": response("completed", json!([message("completed", &streamed)]), usage)}),
            )?,
        ];
        Ok(Self {
            json: Bytes::from(serde_json::to_vec(&json)?),
            head,
            deltas,
            tail,
        })
    }
}

fn data_event(value: &serde_json::Value) -> Result<Bytes, serde_json::Error> {
    let mut event = b"data: ".to_vec();
    serde_json::to_writer(&mut event, value)?;
    event.extend_from_slice(b"\n\n");
    Ok(Bytes::from(event))
}

fn named_event(name: &str, value: &serde_json::Value) -> Result<Bytes, serde_json::Error> {
    let mut event = format!("event: {name}\ndata: ").into_bytes();
    serde_json::to_writer(&mut event, value)?;
    event.extend_from_slice(b"\n\n");
    Ok(Bytes::from(event))
}
