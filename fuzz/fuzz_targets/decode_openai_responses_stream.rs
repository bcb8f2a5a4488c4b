//! The OpenAI Responses stream decoder (and the non-streamed response decoder) on an arbitrary upstream body, cut into arbitrary chunks (frames
//! and UTF-8 sequences split anywhere). Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_api::translation::{StreamDecoder, WireCodec};
use llm_proxy_protocol::openai_responses;

fuzz_target!(|input: &[u8]| {
    let _ = openai_responses::OpenAiResponsesCodec.decode_response(input, "m");
    let mut decoder = openai_responses::ResponsesStreamDecoder::new();
    let mut events = Vec::new();
    // The first byte picks the chunk size, so the fuzzer explores split frames too.
    let (size, body) = match input.split_first() {
        Some((first, rest)) => (usize::from(*first).max(1), rest),
        None => (1, input),
    };
    for chunk in body.chunks(size) {
        if decoder.feed(chunk, &mut events).is_err() {
            return;
        }
        events.clear();
    }
    let _ = decoder.finish(&mut events);
});
