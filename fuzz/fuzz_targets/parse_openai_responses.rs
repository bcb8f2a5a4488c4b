//! An OpenAI Responses request body as the frontend handles it: `parse_body`, then the
//! conversion to the canonical model. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_protocol::openai_responses::{self, ResponsesRequest};
use llm_proxy_protocol::parse_body;

fuzz_target!(|body: &[u8]| {
    if let Ok(wire) = parse_body::<ResponsesRequest>(body) {
        let _ = openai_responses::request_to_model(wire);
    }
});
