//! The ollama-native NDJSON decoder on an arbitrary upstream body, cut into arbitrary chunks
//! (lines and UTF-8 sequences split anywhere). Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_api::translation::StreamDecoder;
use llm_proxy_plugin_ollama_native::NdjsonChatDecoder;

fuzz_target!(|input: &[u8]| {
    let mut decoder = NdjsonChatDecoder::new("llama3");
    let mut events = Vec::new();
    // The first byte picks the chunk size, so the fuzzer explores split lines too.
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
