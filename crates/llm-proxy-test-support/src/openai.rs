//! OpenAI-compatible upstream payloads: chat.completion bodies and chunk streams.

use serde_json::{Value, json};

/// A `chat.completion` answering `text`.
pub fn completion(text: &str) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "mock-upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    })
}

/// A `chat.completion` calling one tool.
pub fn tool_call_completion(id: &str, name: &str, arguments: &str) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "mock-upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}
    })
}

/// One SSE frame carrying `chunk`.
pub fn frame(chunk: &Value) -> String {
    format!("data: {chunk}\n\n")
}

/// A chunk with a delta.
pub fn delta_chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "mock-upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    })
}

/// Frames streaming `pieces` as text, then finish, usage and `[DONE]`.
pub fn text_stream(pieces: &[&str]) -> Vec<String> {
    let mut frames = vec![frame(&delta_chunk(
        json!({"role": "assistant", "content": ""}),
        None,
    ))];
    for p in pieces {
        frames.push(frame(&delta_chunk(json!({"content": p}), None)));
    }
    frames.push(frame(&delta_chunk(json!({}), Some("stop"))));
    frames.push(usage_frame(5, pieces.len() as u64));
    frames.push("data: [DONE]\n\n".to_owned());
    frames
}

/// The usage chunk of `stream_options.include_usage`.
pub fn usage_frame(prompt: u64, completion: u64) -> String {
    frame(&json!({
        "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": "mock-upstream-model", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    }))
}

/// Frames streaming two parallel tool calls whose arguments arrive in interleaved fragments.
pub fn parallel_tool_stream() -> Vec<String> {
    let tc = |index: u32, extra: Value| {
        delta_chunk(
            json!({"tool_calls": [merge(json!({"index": index}), extra)]}),
            None,
        )
    };
    vec![
        frame(&delta_chunk(
            json!({"role": "assistant", "content": null}),
            None,
        )),
        frame(&tc(
            0,
            json!({"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}),
        )),
        frame(&tc(0, json!({"function": {"arguments": "{\"city\":"}}))),
        frame(&tc(
            1,
            json!({"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\""}}),
        )),
        frame(&tc(0, json!({"function": {"arguments": "\"Paris\"}"}}))),
        frame(&tc(1, json!({"function": {"arguments": ":\"CET\"}"}}))),
        frame(&delta_chunk(json!({}), Some("tool_calls"))),
        usage_frame(30, 12),
        "data: [DONE]\n\n".to_owned(),
    ]
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// A `chat.completion` calling the two tools of [`parallel_tool_stream`] at once.
pub fn parallel_tool_completion() -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "mock-upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}}
            ]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    })
}

/// A `chat.completion` whose signed reasoning comes as `reasoning_content` plus
/// `reasoning_details` (the OpenRouter convention), then `text`.
pub fn reasoning_completion(reasoning: &str, signature: &str, text: &str) -> Value {
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "mock-upstream-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
            "reasoning_content": reasoning,
            "reasoning_details": [{"type": "reasoning.text", "text": reasoning, "signature": signature, "index": 0}]},
            "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
            "completion_tokens_details": {"reasoning_tokens": 4}}
    })
}

/// Frames streaming reasoning `pieces` (as `reasoning_details` deltas, the last one signed),
/// then `text`, finish, usage and `[DONE]`.
pub fn reasoning_stream(pieces: &[&str], signature: &str, text: &str) -> Vec<String> {
    let mut frames = vec![frame(&delta_chunk(
        json!({"role": "assistant", "content": ""}),
        None,
    ))];
    for (i, p) in pieces.iter().enumerate() {
        let mut detail = json!({"type": "reasoning.text", "text": p, "index": 0});
        if i + 1 == pieces.len() {
            detail["signature"] = json!(signature);
        }
        frames.push(frame(&delta_chunk(
            json!({"reasoning_details": [detail]}),
            None,
        )));
    }
    frames.push(frame(&delta_chunk(json!({"content": text}), None)));
    frames.push(frame(&delta_chunk(json!({}), Some("stop"))));
    frames.push(usage_frame(11, 7));
    frames.push("data: [DONE]\n\n".to_owned());
    frames
}

/// An OpenAI error body.
pub fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}
