//! Golden-fixture tests of every wire format, compared as JSON values.

mod anthropic;
mod cache_usage;
mod gemini;
mod openai_responses;
mod reasoning_controls;

use std::sync::Arc;

use llm_proxy_protocol::openai_responses::Sealer;

/// Reversible and deterministic, so goldens stay stable; the real AEAD sealer is the server's,
/// with its own tests.
#[derive(Debug)]
struct XorSealer;

impl Sealer for XorSealer {
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        Some(plaintext.iter().map(|b| b ^ 0x5a).collect())
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        self.seal(sealed)
    }
}

/// The sealer the Anthropic and Gemini client conversions use in these tests.
fn xor_sealer() -> Arc<dyn Sealer> {
    Arc::new(XorSealer)
}
