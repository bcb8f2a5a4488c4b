//! `POST /v1/responses`: OpenAI Responses clients (Codex CLI, the `openai` SDKs'
//! `client.responses`), plus `GET`/`DELETE /v1/responses/{id}` for stored answers.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use llm_proxy_api::BackendError;
use llm_proxy_api::error::{ErrorKind, ErrorSource};
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_protocol::openai_responses::types::Input;
use llm_proxy_protocol::openai_responses::{
    self, EventRenderer, ResponseContext, ResponsesRequest, error::failed_code,
};
use llm_proxy_protocol::parse_body;
use serde_json::{Value, json};

use super::sse::StreamRenderer;
use super::{RequestMeta, collected, json_response, read_body, stream_response};
use crate::error::{ProxyError, WireFormat};
use crate::responses_store::{ResponseStore, StoredResponse};
use crate::state::AppState;

/// Where a finished answer is stored, with the conversation that led to it.
struct Save {
    store: Arc<dyn ResponseStore>,
    items: Vec<Value>,
}

impl Save {
    /// Stores `object` (taken, not copied; its `output_text` dropped) under its id with the
    /// conversation extended by its output. A store doing I/O serializes it off the request
    /// path.
    fn store(self, mut object: Value) {
        let Some(map) = object.as_object_mut() else {
            return;
        };
        let Some(Value::String(id)) = map.get("id").cloned() else {
            return;
        };
        map.remove("output_text");
        let mut items = self.items;
        if let Some(Value::Array(output)) = map.get("output") {
            items.extend(output.iter().cloned());
        }
        self.store.put(
            id,
            StoredResponse {
                items: Arc::new(items),
                object: Arc::new(object),
            },
        );
    }
}

/// The stream renderer: Responses events, and the answer stored once it completes.
struct ResponsesRenderer {
    events: EventRenderer,
    save: Option<Save>,
}

impl StreamRenderer for ResponsesRenderer {
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        self.events.render(event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        self.events.finish(out);
        if let Some(save) = self.save.take() {
            save.store(self.events.take_response_object());
        }
    }

    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>) {
        let code = failed_code(error.kind(), error.code());
        self.events.error(&code, &error.to_string(), out);
    }
}

/// The handler.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let meta = RequestMeta::new(WireFormat::OpenAiResponses, headers);
    match handle(&state, body, meta.clone()).await {
        Ok(resp) => resp,
        Err(e) => meta.error(e),
    }
}

async fn handle(
    state: &AppState,
    body: Body,
    mut meta: RequestMeta,
) -> Result<Response, ProxyError> {
    let (body, permit) = read_body(state, &meta.headers, body).await?;
    let mut wire: ResponsesRequest = parse_body(&body)?;
    drop(body);
    if let Some(id) = wire
        .previous_response_id
        .as_deref()
        .filter(|id| !id.is_empty())
    {
        let previous = state
            .responses()
            .get(id)
            .await
            .ok_or_else(|| previous_response_not_found(id))?;
        let mut items: Vec<Value> = previous.items.as_ref().clone();
        match wire.input.take() {
            Some(Input::Text(text)) => items.push(json!({"role": "user", "content": text})),
            Some(Input::Items(more)) => items.extend(more),
            None => {}
        }
        wire.input = Some(Input::Items(items));
    }
    let save = (wire.store != Some(false)).then(|| Save {
        store: state.responses().clone(),
        items: match &wire.input {
            Some(Input::Text(text)) => vec![json!({"role": "user", "content": text})],
            Some(Input::Items(items)) => items.clone(),
            None => Vec::new(),
        },
    });
    let converted = openai_responses::request_to_model(wire, state.sealer().as_ref())?;
    meta.hold_parse_permit(permit);
    meta.lossy.add(converted.lossy);
    // Codex names its conversation in `prompt_cache_key` and the `session_id` header.
    meta.session_id = converted.prompt_cache_key.or_else(|| {
        meta.headers
            .get("session_id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let req = converted.request;
    let ctx = ResponseContext {
        id: format!("resp_{}", meta.request_id.trim_start_matches("req_")),
        model: req.model.clone(),
        created_at: llm_proxy_api::ids::unix_now(),
        tools: converted.tools,
        echo: converted.echo,
    };
    if req.stream {
        let renderer = ResponsesRenderer {
            events: EventRenderer::new(ctx, state.sealer().clone()),
            save,
        };
        return Ok(stream_response(state, req, renderer, &meta).await);
    }
    let response = collected(state, req, &meta).await?;
    meta.lossy
        .add(openai_responses::dropped_from_response(&response));
    let object = openai_responses::response_from_model(response, ctx, state.sealer().clone());
    let body = serde_json::to_vec(&object)
        .map_err(|e| ProxyError::Backend(BackendError::internal(e.to_string())))?;
    if let Some(save) = save {
        save.store(object);
    }
    Ok(json_response(body, &meta))
}

/// `GET /v1/responses/{id}`: a stored answer.
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match state.responses().get(&id).await {
        Some(stored) => Json(stored.object.as_ref().clone()).into_response(),
        None => response_not_found(&id),
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
