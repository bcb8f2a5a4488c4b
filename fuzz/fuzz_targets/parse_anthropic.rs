//! An Anthropic Messages request body as the frontend handles it: `parse_body`, then the
//! conversion to the canonical model (sealed signatures opened with a fixed test sealer).
//! Errors are fine; panics are not. Whatever parses, as a request or as an answer, must be
//! written by the hand-written writers byte for byte as `serde_json` writes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_protocol::anthropic::{self, AnthropicRequest};
use llm_proxy_protocol::anthropic::types::AnthropicResponse;
use llm_proxy_protocol::openai_responses::Sealer;
use llm_proxy_protocol::parse_body;

/// Reversible, not secret: enough to reach the code that opens sealed signatures.
#[derive(Debug)]
struct Reversible;

impl Sealer for Reversible {
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        Some(plaintext.iter().map(|b| b ^ 0x5a).collect())
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        self.seal(sealed)
    }
}

fuzz_target!(|body: &[u8]| {
    if let Ok(wire) = parse_body::<AnthropicRequest>(body) {
        assert_eq!(
            anthropic::request_bytes(&wire),
            serde_json::to_vec(&wire).unwrap()
        );
        let _ = anthropic::request_to_model(wire, &Reversible, &mut Vec::new());
    }
    if let Ok(answer) = serde_json::from_slice::<AnthropicResponse>(body) {
        assert_eq!(
            anthropic::response_bytes(&answer),
            serde_json::to_vec(&answer).unwrap()
        );
    }
});
