//! The text tool-call scanner on any answer text, fed in arbitrary chunks as a stream would:
//! it must not panic, every step must advance on a char boundary, and every call it finds
//! names a defined tool and carries a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_server::processors::parse::tool_text::{ToolSet, Step, scan};

fuzz_target!(|input: &[u8]| {
    let (size, body) = match input.split_first() {
        Some((first, rest)) => (usize::from(*first).max(1), rest),
        None => (1, input),
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let tools = ToolSet::new([
        ("read_file".to_owned(), serde_json::json!({"properties": {"path": {"type": "string"}, "n": {"type": "integer"}}})),
        ("bash".to_owned(), serde_json::json!({})),
    ]);
    let mut pending = String::new();
    let mut at_start = true;
    let mut fed = 0;
    loop {
        let complete = fed >= text.len();
        if !complete {
            let mut end = (fed + size).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            pending.push_str(&text[fed..end]);
            fed = end;
        }
        loop {
            if pending.is_empty() {
                break;
            }
            match scan(&pending, &tools, at_start, complete) {
                Step::Text(n) => {
                    assert!(n > 0 && pending.is_char_boundary(n), "{n} in {pending:?}");
                    at_start &= pending[..n].trim().is_empty();
                    pending.drain(..n);
                }
                Step::Hold => {
                    assert!(!complete, "held complete text {pending:?}");
                    break;
                }
                Step::Calls { consumed, calls } => {
                    assert!(consumed > 0 && pending.is_char_boundary(consumed));
                    for c in calls {
                        assert!(c.name == "read_file" || c.name == "bash");
                        let v: serde_json::Value = serde_json::from_str(&c.arguments).unwrap();
                        assert!(v.is_object());
                    }
                    pending.drain(..consumed);
                }
            }
        }
        if complete {
            break;
        }
    }
});
