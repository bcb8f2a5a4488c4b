//! `POST /v1/chat/completions`: OpenAI Chat Completions clients.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use llm_proxy_api::model::Part;
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_protocol::openai_chat::{self, ChatCompletionRequest, ChunkRenderer};
use llm_proxy_protocol::parse_body;

use super::sse::{CITATIONS_DROPPED, MEDIA_DROPPED, StreamRenderer, dropped_without_slot};
use super::{Inbound, RequestContext, collected, json_response, read_body, stream_response};
use crate::error::{ProxyError, WireFormat};
use crate::state::AppState;

impl StreamRenderer for ChunkRenderer {
    fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        ChunkRenderer::render(self, event, out);
    }

    fn finish(&mut self, out: &mut Vec<Bytes>) {
        ChunkRenderer::finish(self, out);
    }

    fn error(&mut self, error: &ProxyError, out: &mut Vec<Bytes>) {
        ChunkRenderer::error(self, error.stream_error_object(), out);
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

/// The handler.
pub async fn chat_completions(State(state): State<AppState>, inbound: Inbound) -> Response {
    let (ctx, body) = RequestContext::inbound(&state, WireFormat::OpenAi, inbound);
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
    // The wire request lives in this block only: not kept in the future across the call.
    let (req, include_usage) = {
        let wire: ChatCompletionRequest = parse_body(&body)?;
        drop(body);
        let include_usage = wire
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage);
        (
            Box::new(openai_chat::request_to_model(wire)?),
            include_usage,
        )
    };
    ctx.hold_parse_permit(permit);
    if req.stream {
        let renderer = ChunkRenderer::new(
            llm_proxy_api::ids::derived("chatcmpl-", &ctx.request_id),
            req.model.clone(),
            llm_proxy_api::ids::unix_now(),
            include_usage,
        );
        return Ok(stream_response(state, req, renderer, ctx).await);
    }
    let response = collected::<ChunkRenderer>(state, req, ctx).await?;
    // Chat completions have no slot for media the assistant generated.
    if response
        .content
        .iter()
        .any(|p| matches!(p, Part::Image(_) | Part::Audio(_)))
    {
        ctx.lossy.add([MEDIA_DROPPED.to_owned()]);
    }
    let wire = openai_chat::response_from_model(&response);
    Ok(json_response(openai_chat::response_bytes(&wire), ctx))
}
