//! `POST /v1/responses`: OpenAI Responses clients (Codex CLI, the `openai` SDKs'
//! `client.responses`), plus `GET`/`DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items` for stored answers. The
//! request-to-call step ([`prepare`]) and the event renderer are shared with WebSocket mode
//! ([`super::responses_ws`]).

use std::ops::Range;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use llm_proxy_api::error::{ErrorKind, ErrorSource};
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_api::{BackendError, ChatRequest};
use llm_proxy_protocol::openai_responses::types::Input;
use llm_proxy_protocol::openai_responses::{
    self, EventRenderer, ResponseContext, ResponsesRequest, Sealer, error::failed_code,
};
use llm_proxy_protocol::parse_body;
use serde_json::{Value, json};

use super::sse::{CITATIONS_DROPPED, StreamRenderer, dropped_without_slot};
use super::{Inbound, RequestContext, collected, json_response, read_body, stream_response};
use crate::error::{ProxyError, WireFormat};
use crate::responses_store::{ResponseStore, StoredInput, StoredResponse};
use crate::state::AppState;

/// A stored answer under its id: what [`Save::keep`] kept, and what a WebSocket connection
/// remembers of its last turn.
pub(crate) type Kept = (String, StoredResponse);

/// Where a finished answer is kept, with the conversation that led to it.
pub(crate) struct Save {
    /// The shared store, unless the request said `store: false`.
    store: Option<Arc<dyn ResponseStore>>,
    /// Whether the caller keeps the answer too (a WebSocket connection's last turn).
    local: bool,
    /// The conversation that led to the answer (as a JSON array of input items, or the
    /// request's text; empty when nothing is kept): read into items only by a turn that
    /// continues it.
    input: StoredInput,
}

impl Save {
    /// The finished `answer` (its object without `output_text`, its output items) with the
    /// conversation that led to it, under its id: put in the shared store unless the request
    /// said `store: false`, and returned when the caller keeps it. `object` gives the object's
    /// bytes and where an `output_text` field to leave out is in them; nothing is built when
    /// neither wants the answer.
    fn keep(
        self,
        answer: &EventRenderer,
        object: impl FnOnce() -> (Bytes, Range<usize>),
    ) -> Option<Kept> {
        if self.store.is_none() && !self.local {
            return None;
        }
        let (object, output_text) = object();
        // The input and output items are read back from JSON by whoever needs them (the next
        // turn), not built here, and the object's `output_text` is cut out by its first
        // reader (the SQLite store's thread): this thread hands over buffers, not an item tree.
        let stored = StoredResponse::from_parts(self.input, object, output_text);
        let id = answer.response_id().to_owned();
        match (self.store, self.local) {
            (Some(store), false) => {
                store.put(id, stored);
                None
            }
            (Some(store), true) => {
                store.put(id.clone(), stored.clone());
                Some((id, stored))
            }
            (None, _) => Some((id, stored)),
        }
    }
}

/// The stream renderer: Responses events, and the answer kept once it completes.
pub(crate) struct ResponsesRenderer {
    events: EventRenderer,
    save: Option<Save>,
    /// The answer, once completed.
    pub(crate) kept: Option<Kept>,
}

impl ResponsesRenderer {
    /// SSE frames for the HTTP stream.
    fn sse(ctx: Box<ResponseContext>, save: Save, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            events: EventRenderer::new(ctx, sealer),
            save: Some(save),
            kept: None,
        }
    }

    /// One JSON object per event, for WebSocket mode.
    pub(crate) fn json(ctx: Box<ResponseContext>, save: Save, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            events: EventRenderer::json(ctx, sealer),
            save: Some(save),
            kept: None,
        }
    }
}

impl StreamRenderer for ResponsesRenderer {
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        self.events.render(event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.events.finish(out);
        if let Some(save) = self.save.take() {
            let events = &self.events;
            self.kept = save.keep(events, || (Bytes::from(events.response_json(false)), 0..0));
        }
    }

    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>) {
        let code = failed_code(error.kind(), error.code());
        self.events.error(&code, &error.to_string(), out);
    }

    /// Web citations are `annotations`, logprobs `logprobs`; document citations have no slot.
    fn dropped(event: &StreamEvent) -> Option<&'static str> {
        match event {
            StreamEvent::Citation { citation } => {
                llm_proxy_protocol::citations::url_and_title(citation)
                    .is_none()
                    .then_some(CITATIONS_DROPPED)
            }
            StreamEvent::Logprobs { .. } => None,
            event => dropped_without_slot(event),
        }
    }
}

/// A Responses request turned into a canonical call: what to send, what the answer says
/// about itself, and where to keep it.
pub(crate) struct Turn {
    pub(crate) req: Box<ChatRequest>,
    /// Boxed, as the request: the handler keeps it across the call.
    pub(crate) ctx: Box<ResponseContext>,
    pub(crate) save: Save,
}

/// A WebSocket `response.create` as a canonical call ([`prepare_turn`]); the connection keeps
/// each answer, stored or not.
pub(crate) async fn prepare(
    state: &AppState,
    wire: Box<ResponsesRequest>,
    meta: &mut RequestContext,
    local: Option<&Kept>,
) -> Result<Turn, ProxyError> {
    prepare_turn(state, wire, meta, local, true).await
}

/// The one place a Responses request (HTTP body or WebSocket `response.create`) becomes a
/// canonical call: the `previous_response_id` conversation prepended (from `local`, a
/// WebSocket connection's last answer, or the shared store), the conversion, the session id.
/// `keep_local`: the caller keeps the answer (see [`Save`]).
async fn prepare_turn(
    state: &AppState,
    mut wire: Box<ResponsesRequest>,
    meta: &mut RequestContext,
    local: Option<&Kept>,
    keep_local: bool,
) -> Result<Turn, ProxyError> {
    if let Some(id) = wire
        .previous_response_id
        .as_deref()
        .filter(|id| !id.is_empty())
    {
        let previous = match local {
            Some((local_id, stored)) if local_id == id => stored.clone(),
            _ => state
                .responses()
                .lookup(id)
                .await
                .map_err(|_| ProxyError::StoreUnavailable { what: "response" })?
                .ok_or_else(|| previous_response_not_found(id))?,
        };
        let mut items: Vec<Value> = previous.items().cloned().collect();
        match wire.input.take() {
            Some(Input::Text(text)) => items.push(json!({"role": "user", "content": text})),
            Some(Input::Items(more)) => items.extend(more),
            None => {}
        }
        wire.input = Some(Input::Items(items));
    }
    let store = (wire.store != Some(false)).then(|| state.responses().clone());
    let input = match &wire.input {
        _ if store.is_none() && !keep_local => StoredInput::Json(Bytes::new()),
        Some(Input::Text(text)) => StoredInput::Text(Arc::from(text.as_str())),
        Some(Input::Items(items)) => {
            StoredInput::Json(serde_json::to_vec(items).unwrap_or_default().into())
        }
        None => StoredInput::Json(Bytes::new()),
    };
    let save = Save {
        store,
        local: keep_local,
        input,
    };
    let converted = openai_responses::request_to_model(*wire, state.sealer().as_ref())?;
    meta.lossy.add(converted.lossy);
    // Codex names its conversation in `prompt_cache_key` and the `session_id` header.
    meta.session_hint = converted.prompt_cache_key.or_else(|| {
        meta.headers
            .get("session_id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let req = Box::new(converted.request);
    let ctx = Box::new(ResponseContext {
        id: llm_proxy_api::ids::derived("resp_", &meta.request_id),
        model: req.model.clone(),
        created_at: llm_proxy_api::ids::unix_now(),
        tools: converted.tools,
        echo: converted.echo,
    });
    Ok(Turn { req, ctx, save })
}

/// The handler.
pub async fn create(State(state): State<AppState>, inbound: Inbound) -> Response {
    let (mut meta, body) = RequestContext::inbound(&state, WireFormat::OpenAiResponses, inbound);
    match handle(&state, body, &mut meta).await {
        Ok(resp) => resp,
        Err(e) => meta.error(e),
    }
}

async fn handle(
    state: &AppState,
    body: Body,
    meta: &mut RequestContext,
) -> Result<Response, ProxyError> {
    let (body, permit) = read_body(state, &meta.headers, body).await?;
    // Boxed, as the canonical request: the turn is prepared across an await.
    let wire: Box<ResponsesRequest> = parse_body(&body)?;
    drop(body);
    let Turn { req, ctx, save } = prepare_turn(state, wire, meta, None, false).await?;
    meta.hold_parse_permit(permit);
    if req.stream {
        let renderer = ResponsesRenderer::sse(ctx, save, state.sealer().clone());
        return Ok(stream_response(state, req, renderer, meta).await);
    }
    let response = collected::<ResponsesRenderer>(state, req, meta).await?;
    meta.lossy
        .add(openai_responses::dropped_from_response(&response));
    let answer = openai_responses::collect_response(response, ctx, state.sealer().clone());
    let (body, output_text) = answer.response_json_marking_text();
    let body = Bytes::from(body);
    save.keep(&answer, || (body.clone(), output_text));
    Ok(json_response(body, meta))
}

/// `GET /v1/responses/{id}`: a stored answer.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.responses().lookup(&id).await {
        Ok(Some(stored)) => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            stored.object().clone(),
        )
            .into_response(),
        Ok(None) => response_not_found(&id),
        Err(_) => ProxyError::StoreUnavailable { what: "response" }
            .into_response_for(WireFormat::OpenAiResponses),
    }
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    if state.responses().delete(&id).await {
        Json(json!({"id": id, "object": "response", "deleted": true})).into_response()
    } else {
        response_not_found(&id)
    }
}

/// The most items one `input_items` page holds, and the default.
const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

/// `GET /v1/responses/{id}/input_items`: the conversation that led to a stored answer (not
/// its output) as the official cursor list, newest first unless `order=asc`, `limit` items
/// (1..=100, default 20) after the item `after`. Items the client sent without an `id` get a
/// stable one, `{response_id}_in_{index}`.
pub async fn input_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let page = match query
        .map_err(|e| ProxyError::invalid(e.body_text(), None, None))
        .and_then(|Query(pairs)| PageQuery::parse(&pairs))
    {
        Ok(page) => page,
        Err(e) => return e.into_response_for(WireFormat::OpenAiResponses),
    };
    let stored = match state.responses().lookup(&id).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return response_not_found(&id),
        Err(_) => {
            return ProxyError::StoreUnavailable { what: "response" }
                .into_response_for(WireFormat::OpenAiResponses);
        }
    };
    match list_input_items(&id, &stored, &page) {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response_for(WireFormat::OpenAiResponses),
    }
}

/// The query of an `input_items` request.
struct PageQuery {
    descending: bool,
    limit: usize,
    after: Option<String>,
}

impl PageQuery {
    fn parse(pairs: &[(String, String)]) -> Result<Self, ProxyError> {
        let mut page = Self {
            descending: true,
            limit: DEFAULT_PAGE,
            after: None,
        };
        for (key, value) in pairs {
            match key.as_str() {
                "order" => {
                    page.descending = match value.as_str() {
                        "desc" => true,
                        "asc" => false,
                        _ => {
                            return Err(ProxyError::invalid(
                                format!(
                                    "Invalid 'order': expected 'asc' or 'desc', got '{value}'."
                                ),
                                Some("order"),
                                Some("invalid_value"),
                            ));
                        }
                    }
                }
                "limit" => {
                    page.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            ProxyError::invalid(
                                format!(
                                    "Invalid 'limit': expected an integer from 1 to {MAX_PAGE}, got '{value}'."
                                ),
                                Some("limit"),
                                Some("invalid_value"),
                            )
                        })?;
                }
                "after" if !value.is_empty() => page.after = Some(value.clone()),
                // `include` and anything else only shape what the official API adds.
                _ => {}
            }
        }
        Ok(page)
    }
}

/// One page of a stored answer's input items.
fn list_input_items(
    response_id: &str,
    stored: &StoredResponse,
    page: &PageQuery,
) -> Result<Value, ProxyError> {
    let mut ordered: Vec<(usize, &Value)> = stored.input().iter().enumerate().collect();
    if page.descending {
        ordered.reverse();
    }
    let item_id = |index: usize, item: &Value| -> String {
        item.get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("{response_id}_in_{index}"), str::to_owned)
    };
    let start = match &page.after {
        None => 0,
        Some(after) => {
            ordered
                .iter()
                .position(|(index, item)| item_id(*index, item) == *after)
                .ok_or_else(|| {
                    ProxyError::invalid(
                        format!("No input item with id '{after}' in response '{response_id}'."),
                        Some("after"),
                        Some("invalid_value"),
                    )
                })?
                + 1
        }
    };
    let rest = &ordered[start..];
    let data: Vec<Value> = rest
        .iter()
        .take(page.limit)
        .map(|(index, item)| listed_item(item_id(*index, item), item))
        .collect();
    let id_of = |item: Option<&Value>| item.and_then(|v| v.get("id")).cloned();
    Ok(json!({
        "object": "list",
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": rest.len() > page.limit,
        "data": data,
    }))
}

/// An input item as the official list shows it: with its id and `type`, a message's text
/// content as a content part.
fn listed_item(id: String, item: &Value) -> Value {
    let mut item = item.clone();
    let Some(map) = item.as_object_mut() else {
        return item;
    };
    map.insert("id".to_owned(), Value::String(id));
    if !map.contains_key("type") && map.contains_key("role") {
        map.insert("type".to_owned(), json!("message"));
    }
    if map.get("type").and_then(Value::as_str) == Some("message")
        && let Some(Value::String(text)) = map.get("content")
    {
        let part = if map.get("role").and_then(Value::as_str) == Some("assistant") {
            json!([{"type": "output_text", "text": text, "annotations": []}])
        } else {
            json!([{"type": "input_text", "text": text}])
        };
        map.insert("content".to_owned(), part);
    }
    item
}

fn response_not_found(id: &str) -> Response {
    ProxyError::Backend(BackendError::new(
        ErrorKind::NotFound,
        ErrorSource::Internal,
        format!("Response with id '{id}' not found."),
    ))
    .into_response_for(WireFormat::OpenAiResponses)
}

/// The 400 for a `previous_response_id` the proxy does not hold (unknown, forgotten, or
/// answered with `store: false`).
fn previous_response_not_found(id: &str) -> ProxyError {
    ProxyError::invalid(
        format!("Previous response with id '{id}' not found."),
        Some("previous_response_id"),
        Some("previous_response_not_found"),
    )
}
