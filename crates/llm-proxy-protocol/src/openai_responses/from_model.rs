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

/// A collected answer as a finished collecting renderer: its response object is
/// [`EventRenderer::response_json`] (or `_object`), its output [`EventRenderer::output_items`].
/// `ctx.created_at` is taken from the answer. An answer of plain text (most answers) becomes
/// its one message item directly; any other is replayed through the renderer, event by event.
pub fn collect_response(
    response: ChatResponse,
    ctx: impl Into<Box<ResponseContext>>,
    sealer: Arc<dyn Sealer>,
) -> EventRenderer {
    let mut ctx = ctx.into();
    ctx.created_at = response.created;
    if response
        .content
        .iter()
        .all(|part| matches!(part, Part::Text(t) if t.citations.is_empty()))
    {
        return EventRenderer::text_answer(ctx, sealer, response);
    }
    replay(response, ctx, sealer)
}

/// `response`'s events through a collecting renderer, finished.
fn replay(
    response: ChatResponse,
    ctx: impl Into<Box<ResponseContext>>,
    sealer: Arc<dyn Sealer>,
) -> EventRenderer {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use llm_proxy_api::model::{ChatResponse, FinishReason, Part, TextPart, Usage};
    use serde_json::json;

    use super::{ResponseContext, collect_response, replay};
    use crate::openai_responses::opaque::TestSealer;

    fn text(t: &str) -> Part {
        Part::Text(TextPart::new(t))
    }

    /// Plain-text answers skip the replay: they must come out as the replay makes them.
    #[test]
    fn a_text_answer_is_what_replaying_it_builds() {
        let usage = Usage {
            input_tokens: 12,
            output_tokens: 7,
            cache_read_tokens: Some(3),
            ..Usage::default()
        };
        let cases = [
            (
                vec![text("Hello there")],
                Some(FinishReason::Stop),
                Some(usage),
                "m-up",
            ),
            (
                vec![text("Hel"), text(""), text("lo")],
                Some(FinishReason::Length),
                None,
                "",
            ),
            (vec![], Some(FinishReason::Stop), Some(usage), "m"),
            (vec![text("")], None, None, "m"),
            (
                vec![text("quote \" and \u{1F600}")],
                Some(FinishReason::ContentFilter),
                None,
                "m",
            ),
        ];
        for (content, finish_reason, usage, model) in cases {
            for logprobs in [vec![], vec![json!({"token": "Hel", "logprob": -0.5})]] {
                let response = ChatResponse {
                    id: "up-1".into(),
                    model: model.into(),
                    created: 1_700_000_000,
                    content: content.clone(),
                    finish_reason: finish_reason.clone(),
                    stop_sequence: None,
                    usage,
                    logprobs,
                };
                let ctx = ResponseContext {
                    id: "resp_abc".into(),
                    model: "asked".into(),
                    created_at: response.created,
                    ..ResponseContext::default()
                };
                let direct =
                    collect_response(response.clone(), ctx.clone(), Arc::new(TestSealer(1)));
                let replayed = replay(response.clone(), ctx, Arc::new(TestSealer(1)));
                assert_eq!(
                    direct.response_json_marking_text(),
                    replayed.response_json_marking_text(),
                    "{response:?}"
                );
                assert_eq!(direct.response_json(false), replayed.response_json(false));
                assert_eq!(direct.output_items(), replayed.output_items());
                assert_eq!(direct.output_text(), replayed.output_text());
            }
        }
    }
}
