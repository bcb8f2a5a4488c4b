//! Gemini clients (Gemini CLI, `google-genai`): `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` and `:countTokens` (also under `/v1`, which newer `google-genai`
//! versions call), and `GET /v1beta/models` listing the real models in Gemini's shape.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderMap;
use llm_proxy_api::BackendError;
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_protocol::gemini::{self, ChunkRenderer, GenerateContentRequest};
use llm_proxy_protocol::parse_body;
use serde_json::{Value, json};

use super::models::{ListedModel, listed_models};
use super::sse::{StreamRenderer, dropped_without_slot};
use super::{Inbound, RequestContext, collected, json_response, read_body, stream_response};
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;
use crate::token_estimate::estimate_tokens;

impl StreamRenderer for ChunkRenderer {
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        ChunkRenderer::render(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChunkRenderer::finish(self, out);
    }

    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>) {
        ChunkRenderer::error(self, error.kind(), &error.to_string(), out);
    }

    /// A blank line: `google-genai` parses every non-empty line as JSON, so an SSE comment
    /// would break it, while an empty line is skipped by it and by SSE parsers alike.
    fn keepalive(&self) -> Bytes {
        Bytes::from_static(b"\n")
    }

    /// Every piece of media is an `inlineData` / `fileData` part.
    fn dropped(event: &StreamEvent) -> Option<&'static str> {
        match event {
            StreamEvent::Media { .. } | StreamEvent::Logprobs { .. } => None,
            event => dropped_without_slot(event),
        }
    }
}

/// What the client asked for in `models/{model}:{method}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Generate { stream: bool },
    CountTokens,
}

/// Splits `{model}:{method}` at the last `:` (selectors may contain colons) and checks `alt`:
/// `streamGenerateContent` takes it absent or `sse`; `alt=sse` also streams `generateContent`.
fn parse_action<'a>(rest: &'a str, query: Option<&str>) -> Result<(&'a str, Method), ProxyError> {
    let not_found = || ProxyError::NotFound(format!("POST models/{rest}"));
    let (model, method) = rest.rsplit_once(':').ok_or_else(not_found)?;
    let model = model.strip_prefix("models/").unwrap_or(model);
    if model.is_empty() {
        return Err(ProxyError::invalid(
            "the model name in the URL is empty",
            Some("model"),
            None,
        ));
    }
    let alt = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(k, v)| (k == "alt").then_some(v));
    let method = match (method, alt) {
        ("streamGenerateContent", None | Some("sse")) => Method::Generate { stream: true },
        ("streamGenerateContent", Some(other)) => {
            return Err(ProxyError::invalid(
                format!("alt={other} is not supported for streaming; use alt=sse"),
                Some("alt"),
                None,
            ));
        }
        ("generateContent", Some("sse")) => Method::Generate { stream: true },
        ("generateContent", None | Some("json")) => Method::Generate { stream: false },
        ("generateContent", Some(other)) => {
            return Err(ProxyError::invalid(
                format!("alt={other} is not supported; use alt=json or alt=sse"),
                Some("alt"),
                None,
            ));
        }
        ("countTokens", _) => Method::CountTokens,
        _ => return Err(not_found()),
    };
    Ok((model, method))
}

/// `POST /v1beta/models/{model}:{method}`.
pub async fn model_action(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
    inbound: Inbound,
) -> Response {
    let (ctx, body) = RequestContext::inbound(&state, WireFormat::Gemini, inbound);
    match handle(&state, &rest, query.as_deref(), body, &ctx).await {
        Ok(resp) => resp,
        Err(e) => ctx.error(e),
    }
}

async fn handle(
    state: &AppState,
    rest: &str,
    query: Option<&str>,
    body: Body,
    ctx: &RequestContext,
) -> Result<Response, ProxyError> {
    let (model, method) = parse_action(rest, query)?;
    let (body, permit) = read_body(state, &ctx.headers, body).await?;
    let stream = match method {
        Method::CountTokens => return count_tokens(state, &body, model, ctx),
        Method::Generate { stream } => stream,
    };
    let mut lossy = Vec::new();
    // The wire request lives in this block only: not kept in the future across the call.
    let mut req = {
        let wire: GenerateContentRequest = parse_body(&body)?;
        drop(body);
        Box::new(gemini::request_to_model(
            wire,
            model,
            state.sealer().as_ref(),
            &mut lossy,
        )?)
    };
    ctx.lossy.add(lossy);
    ctx.hold_parse_permit(permit);
    req.stream = stream;
    if stream {
        let renderer = ChunkRenderer::new(
            ctx.request_id.clone(),
            req.model.clone(),
            state.sealer().clone(),
        );
        return Ok(stream_response(state, req, renderer, ctx).await);
    }
    let response = collected::<ChunkRenderer>(state, req, ctx).await?;
    let wire = gemini::response_from_model(&response, state.sealer().as_ref());
    let body = serde_json::to_vec(&wire)
        .map_err(|e| ProxyError::Backend(BackendError::internal(e.to_string())))?;
    Ok(json_response(body, ctx))
}

/// `:countTokens`: the [`estimate_tokens`] of the request (at the top level or inside
/// `generateContentRequest`) as a real call would read it, as `{totalTokens}`.
fn count_tokens(
    state: &AppState,
    body: &[u8],
    model: &str,
    ctx: &RequestContext,
) -> Result<Response, ProxyError> {
    let mut value: Value = parse_body(body)?;
    let wire = match value.get_mut("generateContentRequest") {
        Some(inner) => inner.take(),
        None => value,
    };
    let wire: GenerateContentRequest = serde_json::from_value(wire).map_err(|e| {
        ProxyError::invalid(format!("invalid countTokens request: {e}"), None, None)
    })?;
    let tokens = estimate_tokens(&gemini::request_to_model(
        wire,
        model,
        state.sealer().as_ref(),
        &mut Vec::new(),
    )?);
    Ok(json_response(
        json!({ "totalTokens": tokens }).to_string().into_bytes(),
        ctx,
    ))
}

/// Whether a request comes from a Google client (`google-genai`, Gemini CLI): they send
/// `x-goog-api-client` or `x-goog-api-key`, or the key in `?key=`. `google-genai` calls the
/// `/v1` paths that OpenAI clients also use, so `GET /v1/models` answers in the caller's shape.
pub fn is_google_client(headers: &HeaderMap, query: Option<&str>) -> bool {
    headers.contains_key("x-goog-api-client")
        || headers.contains_key("x-goog-api-key")
        || query.is_some_and(|q| q.split('&').any(|pair| pair.starts_with("key=")))
}

fn model_entry(m: &ListedModel) -> Value {
    json!({
        "name": format!("models/{}", m.id),
        "version": "001",
        "displayName": m.id,
        "description": format!("{} via llm-proxy", m.owned_by),
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

/// `GET /v1beta/models`: every routable `instance:model`, in Gemini's list shape.
pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    Json(model_list(&state).await)
}

/// The Gemini list body.
pub async fn model_list(state: &AppState) -> Value {
    let models: Vec<Value> = listed_models(state).await.iter().map(model_entry).collect();
    json!({ "models": models })
}

/// `GET /v1beta/models/{model}`: one entry of the list.
pub async fn get_model(State(state): State<AppState>, Path(rest): Path<String>) -> Response {
    let id = rest.strip_prefix("models/").unwrap_or(&rest);
    match listed_models(&state).await.iter().find(|m| m.id == id) {
        Some(m) => Json(model_entry(m)).into_response(),
        None => {
            ProxyError::NotFound(format!("model models/{id}")).into_response_for(WireFormat::Gemini)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_split_at_the_last_colon_and_check_alt() {
        let gen_stream = Method::Generate { stream: true };
        let gen_once = Method::Generate { stream: false };
        assert_eq!(
            parse_action("gemini-2.5-pro:generateContent", None).unwrap(),
            ("gemini-2.5-pro", gen_once)
        );
        assert_eq!(
            parse_action("openai:gpt-4o:streamGenerateContent", Some("alt=sse")).unwrap(),
            ("openai:gpt-4o", gen_stream)
        );
        assert_eq!(
            parse_action("m:streamGenerateContent", Some("key=abc")).unwrap(),
            ("m", gen_stream)
        );
        assert_eq!(
            parse_action("m:generateContent", Some("key=k&alt=sse")).unwrap(),
            ("m", gen_stream)
        );
        assert_eq!(
            parse_action("m:countTokens", None).unwrap(),
            ("m", Method::CountTokens)
        );
        let bad_alt = parse_action("m:streamGenerateContent", Some("alt=json")).unwrap_err();
        assert_eq!(bad_alt.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(
            parse_action("m:generateContent", Some("alt=proto"))
                .unwrap_err()
                .status(),
            http::StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_action("m:embedContent", None).unwrap_err().status(),
            http::StatusCode::NOT_FOUND
        );
        assert_eq!(
            parse_action("no-method", None).unwrap_err().status(),
            http::StatusCode::NOT_FOUND
        );
    }
}
