//! Prompt-cache usage in every direction. Anthropic counts cache reads and writes apart from
//! `input_tokens`; OpenAI (`prompt_tokens`), Responses (`input_tokens`) and Gemini
//! (`promptTokenCount`) count them inside. The canonical `Usage` counts them inside.
// Marks the helpers as test code for clippy's test allowances (unwrap, panic).
#![cfg(test)]

use llm_proxy_api::model::Usage;
use llm_proxy_api::translation::WireCodec;
use llm_proxy_protocol::anthropic::AnthropicCodec;
use llm_proxy_protocol::gemini::GeminiCodec;
use llm_proxy_protocol::openai_chat::OpenAiChatCodec;
use llm_proxy_protocol::openai_responses::OpenAiResponsesCodec;
use llm_proxy_protocol::{anthropic, gemini, openai_chat, openai_responses};
use serde_json::{Value, json};

/// 50 fresh input tokens, 900 read from the cache, 100 written to it, 7 out.
const FRESH: u64 = 50;
const READ: u64 = 900;
const WRITE: u64 = 100;
const OUT: u64 = 7;

fn decoded(codec: &dyn WireCodec, body: Value) -> Usage {
    codec
        .decode_response(body.to_string().as_bytes(), "m")
        .unwrap()
        .usage
        .unwrap()
}

fn upstream_answers() -> Vec<(&'static str, Usage)> {
    let total = FRESH + READ + WRITE;
    vec![
        (
            "anthropic",
            decoded(
                &AnthropicCodec,
                json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c",
                    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
                    "usage": {"input_tokens": FRESH, "output_tokens": OUT,
                        "cache_read_input_tokens": READ, "cache_creation_input_tokens": WRITE}}),
            ),
        ),
        (
            "openai_chat",
            decoded(
                &OpenAiChatCodec,
                json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "g",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": total, "completion_tokens": OUT, "total_tokens": total + OUT,
                        "prompt_tokens_details": {"cached_tokens": READ}}}),
            ),
        ),
        (
            "openai_responses",
            decoded(
                &OpenAiResponsesCodec,
                json!({"id": "resp_1", "object": "response", "status": "completed", "model": "g",
                    "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "ok", "annotations": []}]}],
                    "usage": {"input_tokens": total, "input_tokens_details": {"cached_tokens": READ},
                        "output_tokens": OUT, "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": total + OUT}}),
            ),
        ),
        (
            "gemini",
            decoded(
                &GeminiCodec,
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                        "finishReason": "STOP", "index": 0}],
                    "usageMetadata": {"promptTokenCount": total, "candidatesTokenCount": OUT,
                        "cachedContentTokenCount": READ, "totalTokenCount": total + OUT}}),
            ),
        ),
    ]
}

#[test]
fn every_upstream_reports_cache_reads_inside_the_canonical_input() {
    for (upstream, u) in upstream_answers() {
        assert_eq!(u.input_tokens, FRESH + READ + WRITE, "{upstream}");
        assert_eq!(u.output_tokens, OUT, "{upstream}");
        assert_eq!(u.cache_read_tokens, Some(READ), "{upstream}");
        // Only Anthropic reports writes apart; the others count them as plain input.
        let write = (upstream == "anthropic").then_some(WRITE);
        assert_eq!(u.cache_write_tokens, write, "{upstream}");
    }
}

#[test]
fn every_client_sees_the_cache_reads_in_its_own_fields() {
    for (upstream, u) in upstream_answers() {
        let total = FRESH + READ + WRITE;
        let a = serde_json::to_value(anthropic::from_model::usage_from_model(&u)).unwrap();
        // Anthropic: input_tokens without reads and writes. Where the upstream did not report
        // writes apart they are plain input.
        let uncached = if upstream == "anthropic" {
            FRESH
        } else {
            FRESH + WRITE
        };
        assert_eq!(a["input_tokens"], uncached, "{upstream}: {a}");
        assert_eq!(a["cache_read_input_tokens"], READ, "{upstream}: {a}");
        assert_eq!(a["output_tokens"], OUT, "{upstream}: {a}");

        let o = serde_json::to_value(openai_chat::from_model::usage_from_model(&u)).unwrap();
        assert_eq!(o["prompt_tokens"], total, "{upstream}: {o}");
        assert_eq!(
            o["prompt_tokens_details"]["cached_tokens"], READ,
            "{upstream}: {o}"
        );
        assert_eq!(o["total_tokens"], total + OUT, "{upstream}: {o}");

        let r = serde_json::to_value(openai_responses::from_model::usage_from_model(&u)).unwrap();
        assert_eq!(r["input_tokens"], total, "{upstream}: {r}");
        assert_eq!(
            r["input_tokens_details"]["cached_tokens"], READ,
            "{upstream}: {r}"
        );
        assert_eq!(r["total_tokens"], total + OUT, "{upstream}: {r}");

        let g = serde_json::to_value(gemini::from_model::usage_from_model(&u)).unwrap();
        assert_eq!(g["promptTokenCount"], total, "{upstream}: {g}");
        assert_eq!(g["cachedContentTokenCount"], READ, "{upstream}: {g}");
        assert_eq!(g["totalTokenCount"], total + OUT, "{upstream}: {g}");
    }
}

#[test]
fn anthropic_cache_writes_round_trip_to_anthropic_clients() {
    let (_, u) = upstream_answers().remove(0);
    let a = serde_json::to_value(anthropic::from_model::usage_from_model(&u)).unwrap();
    assert_eq!(
        a,
        json!({"input_tokens": FRESH, "output_tokens": OUT,
            "cache_read_input_tokens": READ, "cache_creation_input_tokens": WRITE})
    );
}
