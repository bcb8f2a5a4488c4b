//! Canonical model -> OpenAI Responses wire (answers to clients): the response object, built by
//! replaying the collected answer through the stream renderer (with frames off, so no event is
//! built) so streamed and non-streamed answers have the same output items.

use llm_proxy_api::model::{ChatResponse, Part, Usage};
use llm_proxy_api::stream::response_events;
use serde_json::Value;

use std::sync::Arc;

use super::opaque::Sealer;
use super::stream::{EventRenderer, ResponseContext};
use super::types::{InputTokensDetails, OutputTokensDetails, WireUsage};

/// `usage` in the Responses shape.
pub fn usage_from_model(u: &Usage) -> WireUsage {
    WireUsage {
        input_tokens: u.input_tokens,
        input_tokens_details: InputTokensDetails {
            cached_tokens: u.cache_read_tokens.unwrap_or(0),
        },
        output_tokens: u.output_tokens,
        output_tokens_details: OutputTokensDetails {
            reasoning_tokens: u.reasoning_tokens.unwrap_or(0),
        },
        total_tokens: u.total(),
    }
}

/// A collected answer replayed through a collecting renderer, finished: its response object
/// is [`EventRenderer::response_json`] (or `_object`), its output [`EventRenderer::output_items`].
/// `ctx.created_at` is taken from the answer.
pub fn collect_response(
    response: ChatResponse,
    mut ctx: ResponseContext,
    sealer: Arc<dyn Sealer>,
) -> EventRenderer {
    ctx.created_at = response.created;
    let mut renderer = EventRenderer::collecting(ctx, sealer);
    let mut sink = Vec::new();
    for event in response_events(response) {
        renderer.render(&event, &mut sink);
    }
    renderer.finish(&mut sink);
    renderer
}

/// The response object for a collected answer as a `Value`, with `output_text` (the
/// concatenated message text SDKs expose) added.
pub fn response_from_model(
    response: ChatResponse,
    ctx: ResponseContext,
    sealer: Arc<dyn Sealer>,
) -> Value {
    let renderer = collect_response(response, ctx, sealer);
    let mut object = renderer.response_object();
    if let Value::Object(map) = &mut object {
        map.insert("output_text".into(), Value::from(renderer.output_text()));
    }
    object
}

/// What a Responses answer cannot show: media in the answer.
pub fn dropped_from_response(response: &ChatResponse) -> Vec<String> {
    let media = response
        .content
        .iter()
        .any(|p| matches!(p, Part::Image(_) | Part::Audio(_)));
    media
        .then(|| "media in the answer dropped (Responses output carries text only)".to_owned())
        .into_iter()
        .collect()
}
