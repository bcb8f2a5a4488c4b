//! A Gemini `generateContent` request body as the frontend handles it: `parse_body`, then the
//! conversion to the canonical model (sealed signatures opened with a fixed test sealer).
//! Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_protocol::gemini::{self, GenerateContentRequest};
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
    if let Ok(wire) = parse_body::<GenerateContentRequest>(body) {
        let _ = gemini::request_to_model(wire, "gemini-2.5-flash", &Reversible, &mut Vec::new());
    }
});
