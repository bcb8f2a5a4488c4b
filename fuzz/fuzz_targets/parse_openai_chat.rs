//! An OpenAI Chat Completions request body as the frontend handles it: `parse_body`, then the
//! conversion to the canonical model. Errors are fine; panics are not. What converts must be
//! encoded for an upstream by the hand-written writer byte for byte as `serde_json` writes the
//! wire request, and an answer that parses must be written as `serde_json` writes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_protocol::openai_chat::from_model::EncodeOptions;
use llm_proxy_protocol::openai_chat::types::ChatCompletionResponse;
use llm_proxy_protocol::openai_chat::{self, ChatCompletionRequest};
use llm_proxy_protocol::parse_body;

fuzz_target!(|body: &[u8]| {
    if let Ok(wire) = parse_body::<ChatCompletionRequest>(body)
        && let Ok(req) = openai_chat::request_to_model(wire)
    {
        for opts in [
            EncodeOptions::default(),
            EncodeOptions {
                reasoning_in_history: false,
                max_completion_tokens: true,
                fallback_cache_key: Some("llmproxy-k"),
            },
        ] {
            assert_eq!(
                openai_chat::request_body_from_model(&req, "gpt-x", opts),
                serde_json::to_vec(&openai_chat::request_from_model(&req, "gpt-x", opts)).unwrap()
            );
        }
    }
    if let Ok(answer) = serde_json::from_slice::<ChatCompletionResponse>(body) {
        assert_eq!(
            openai_chat::response_bytes(&answer),
            serde_json::to_vec(&answer).unwrap()
        );
    }
});
