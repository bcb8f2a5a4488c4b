//! Ollama native-API (`/api/chat`) upstream payloads: NDJSON lines and whole answers.

use serde_json::{Value, json};

/// One NDJSON line (the JSON text plus `\n`).
pub fn line(chunk: &Value) -> String {
    format!("{chunk}\n")
}

/// A streamed delta line carrying `content` and, when given, `thinking`.
pub fn delta(content: &str, thinking: Option<&str>) -> String {
    let mut message = json!({"role": "assistant", "content": content});
    if let Some(thinking) = thinking {
        message["thinking"] = json!(thinking);
    }
    line(
        &json!({"model": "llama-mock", "created_at": "2025-01-01T00:00:00Z", "message": message, "done": false}),
    )
}

/// The final line: `done`, `done_reason` and token counts.
pub fn done(reason: &str, prompt_tokens: u64, output_tokens: u64) -> String {
    line(&json!({
        "model": "llama-mock",
        "created_at": "2025-01-01T00:00:01Z",
        "message": {"role": "assistant", "content": ""},
        "done": true,
        "done_reason": reason,
        "total_duration": 1_000_000,
        "prompt_eval_count": prompt_tokens,
        "eval_count": output_tokens
    }))
}

/// A streamed answer: optional thinking, then `pieces` of text, then the final line (usage
/// 11 in / 7 out).
pub fn text_stream(thinking: Option<&str>, pieces: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(thinking) = thinking {
        lines.push(delta("", Some(thinking)));
    }
    lines.extend(pieces.iter().map(|p| delta(p, None)));
    lines.push(done("stop", 11, 7));
    lines
}

/// A streamed answer calling one tool with object `arguments`.
pub fn tool_call_stream(name: &str, arguments: Value) -> Vec<String> {
    vec![
        line(&json!({
            "model": "llama-mock",
            "message": {"role": "assistant", "content": "",
                        "tool_calls": [{"function": {"name": name, "arguments": arguments}}]},
            "done": false
        })),
        done("stop", 20, 9),
    ]
}

/// A non-streamed (`stream: false`) answer.
pub fn chat_response(text: &str) -> Value {
    json!({
        "model": "llama-mock",
        "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": true,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 7
    })
}

/// A `GET /api/tags` answer listing `names`.
pub fn tags(names: &[&str]) -> Value {
    json!({"models": names.iter().map(|n| json!({"name": n, "model": n, "size": 1})).collect::<Vec<_>>()})
}
