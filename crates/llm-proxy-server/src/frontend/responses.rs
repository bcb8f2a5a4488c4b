//! `POST /v1/responses`: OpenAI Responses clients (Codex CLI, the `openai` SDKs'
//! `client.responses`).

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use llm_proxy_api::BackendError;
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_protocol::openai_responses::{
    self, EventRenderer, ResponseContext, ResponsesRequest, error::failed_code,
};
use llm_proxy_protocol::parse_body;

use super::sse::StreamRenderer;
use super::{RequestMeta, body_bytes, collected, json_response, stream_response};
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;

impl StreamRenderer for EventRenderer {
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        EventRenderer::render(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        EventRenderer::finish(self, out);
    }

    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>) {
        let code = failed_code(error.kind(), error.code());
        EventRenderer::error(self, &code, &error.to_string(), out);
    }
}

/// The handler.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let meta = RequestMeta::new(WireFormat::OpenAiResponses, headers);
    match handle(&state, body, meta.clone()).await {
        Ok(resp) => resp,
        Err(e) => meta.error(e),
    }
}

async fn handle(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    mut meta: RequestMeta,
) -> Result<Response, ProxyError> {
    let body = body_bytes(body, state)?;
    let wire: ResponsesRequest = parse_body(&body)?;
    let converted = openai_responses::request_to_model(wire)?;
    if let Some(id) = converted.previous_response_id {
        return Err(previous_response_not_found(&id));
    }
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
        return Ok(stream_response(state, req, EventRenderer::new(ctx), &meta).await);
    }
    let response = collected(state, req, &meta).await?;
    meta.lossy
        .add(openai_responses::dropped_from_response(&response));
    let object = openai_responses::response_from_model(response, ctx);
    let body = serde_json::to_vec(&object)
        .map_err(|e| ProxyError::Backend(BackendError::internal(e.to_string())))?;
    Ok(json_response(body, &meta))
}

/// The 400 for a `previous_response_id` the proxy does not hold.
fn previous_response_not_found(id: &str) -> ProxyError {
    ProxyError::invalid(
        format!("Previous response with id '{id}' not found."),
        Some("previous_response_id"),
        Some("previous_response_not_found"),
    )
}
