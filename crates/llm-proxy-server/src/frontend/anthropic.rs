//! Anthropic Messages clients (Claude Code, the `anthropic` SDKs): `POST /v1/messages`,
//! `POST /v1/messages/count_tokens` and the model list in Anthropic's shape.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use llm_proxy_api::ChatResponse;
use llm_proxy_api::model::Part;
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_protocol::anthropic::{self, AnthropicRequest, EventRenderer};
use llm_proxy_protocol::parse_body;
use serde_json::{Value, json};

use super::models::listed_models;
use super::sse::{StreamRenderer, dropped_without_slot};
use super::{Inbound, RequestContext, collected, json_response, read_body, stream_response};
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;
use crate::token_estimate::estimate_tokens;

impl StreamRenderer for EventRenderer {
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        EventRenderer::render(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        EventRenderer::finish(self, out);
    }

    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>) {
        EventRenderer::error(self, error.kind(), &error.to_string(), out);
    }

    /// Anthropic clients expect `ping` events, not SSE comments.
    fn keepalive(&self) -> Bytes {
        anthropic::ping_frame()
    }

    /// Images are image blocks (other media has no block in an answer); citations are
    /// carried as they came.
    fn dropped(event: &StreamEvent) -> Option<&'static str> {
        match event {
            StreamEvent::Media { source } => {
                (!anthropic::anthropic_answer_media(source)).then_some(ANSWER_MEDIA_DROPPED)
            }
            StreamEvent::Citation { .. } => None,
            event => dropped_without_slot(event),
        }
    }
}

const ANSWER_MEDIA_DROPPED: &str =
    "media in the answer dropped (Anthropic answers show images only)";

/// `POST /v1/messages` (also under `/anthropic`).
pub async fn messages(State(state): State<AppState>, inbound: Inbound) -> Response {
    let (ctx, body) = RequestContext::inbound(&state, WireFormat::Anthropic, inbound);
    match handle(&state, body, &ctx).await {
        Ok(resp) => resp,
        Err(e) => ctx.error(e),
    }
}

async fn handle(
    state: &AppState,
    body: Body,
    ctx: &RequestContext,
) -> Result<Response, ProxyError> {
    let (body, permit) = read_body(state, &ctx.headers, body).await?;
    let mut lossy = Vec::new();
    // The wire request lives in this block only: not kept in the future across the call.
    let req = {
        let wire: AnthropicRequest = parse_body(&body)?;
        drop(body);
        Box::new(anthropic::request_to_model(
            wire,
            state.sealer().as_ref(),
            &mut lossy,
        )?)
    };
    ctx.lossy.add(lossy);
    ctx.hold_parse_permit(permit);
    if req.stream {
        let id = llm_proxy_api::ids::derived("msg_", &ctx.request_id);
        let renderer = EventRenderer::new(id, req.model.clone(), state.sealer().clone());
        return Ok(stream_response(state, req, renderer, ctx).await);
    }
    let response = collected::<EventRenderer>(state, req, ctx).await?;
    ctx.lossy.add(dropped_from_response(&response));
    let wire = anthropic::response_from_model(&response, state.sealer().as_ref());
    Ok(json_response(anthropic::response_bytes(&wire), ctx))
}

/// What an Anthropic response cannot show: media in the answer other than images.
fn dropped_from_response(response: &ChatResponse) -> Vec<String> {
    let media = response.content.iter().any(|p| match p {
        Part::Image(i) => !anthropic::anthropic_answer_media(&i.source),
        Part::Audio(_) => true,
        _ => false,
    });
    media
        .then(|| ANSWER_MEDIA_DROPPED.to_owned())
        .into_iter()
        .collect()
}

/// `POST /v1/messages/count_tokens`: the [`estimate_tokens`] of the request as a real call
/// would read it, as `{input_tokens}`.
pub async fn count_tokens(State(state): State<AppState>, inbound: Inbound) -> Response {
    let (ctx, body) = RequestContext::inbound(&state, WireFormat::Anthropic, inbound);
    let counted = read_body(&state, &ctx.headers, body)
        .await
        .and_then(|(body, _permit)| {
            let req = anthropic::request_to_model(
                parse_body::<AnthropicRequest>(&body)?,
                state.sealer().as_ref(),
                &mut Vec::new(),
            )?;
            Ok(estimate_tokens(&req))
        });
    match counted {
        Ok(tokens) => {
            let body = json!({ "input_tokens": tokens }).to_string().into_bytes();
            json_response(body, &ctx)
        }
        Err(e) => ctx.error(e),
    }
}

/// `GET /v1/models` in Anthropic's list shape: the same `instance:model` ids as the OpenAI
/// list.
pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = listed_models(&state)
        .await
        .into_iter()
        .map(|m| {
            json!({
                "type": "model",
                "id": m.id,
                "display_name": m.id,
                "created_at": "1970-01-01T00:00:00Z",
            })
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    Json(json!({ "data": data, "has_more": false, "first_id": first, "last_id": last }))
}

/// `GET /anthropic/v1/health`.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "service": "anthropic-proxy" }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::{AudioPart, ImagePart, MediaSource, TextPart};

    #[test]
    fn media_in_an_answer_other_than_images_is_reported_as_dropped() {
        let mut response = ChatResponse {
            id: "r".into(),
            model: "m".into(),
            created: 0,
            content: vec![Part::Text(TextPart::new("hi"))],
            finish_reason: None,
            stop_sequence: None,
            usage: None,
            logprobs: Vec::new(),
        };
        assert!(dropped_from_response(&response).is_empty());
        response.content.push(Part::Image(ImagePart {
            cache_control: None,
            source: MediaSource::Url {
                url: "https://x.test/a.png".into(),
            },
            detail: None,
            document: None,
        }));
        assert!(
            dropped_from_response(&response).is_empty(),
            "images are image blocks"
        );
        response.content.push(Part::Audio(AudioPart {
            data: "UklG".into(),
            format: "wav".into(),
        }));
        let notes = dropped_from_response(&response);
        assert_eq!(notes.len(), 1);
        assert_eq!(llm_proxy_api::lossy::lossy_field(&notes[0]), "media");
    }
}
