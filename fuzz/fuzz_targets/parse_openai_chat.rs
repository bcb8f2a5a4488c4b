//! An OpenAI Chat Completions request body as the frontend handles it: `parse_body`, then the
//! conversion to the canonical model. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_protocol::openai_chat::{self, ChatCompletionRequest};
use llm_proxy_protocol::parse_body;

fuzz_target!(|body: &[u8]| {
    if let Ok(wire) = parse_body::<ChatCompletionRequest>(body) {
        let _ = openai_chat::request_to_model(wire);
    }
});
