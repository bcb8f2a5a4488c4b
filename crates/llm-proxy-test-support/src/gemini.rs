//! Gemini `generateContent` upstream payloads, shaped like Google's API reference:
//! `GenerateContentResponse` bodies, `streamGenerateContent?alt=sse` transcripts built from
//! the same part descriptions, thought parts and thought signatures, and error bodies.

use serde_json::{Value, json};

/// Model version the payloads report.
pub const MODEL: &str = "gemini-2.5-pro";
/// Response id the payloads report.
pub const RESPONSE_ID: &str = "kXy1aOmBBd-Jz7IP3Y6z6QM";

/// A text part.
pub fn text(text: &str) -> Value {
    json!({"text": text})
}

/// A thought summary part, optionally signed.
pub fn thought(text: &str, signature: Option<&str>) -> Value {
    let mut part = json!({"text": text, "thought": true});
    if let Some(sig) = signature {
        part["thoughtSignature"] = json!(sig);
    }
    part
}

/// A `functionCall` part, optionally with an id and a thought signature (Gemini puts the
/// signature on the first call of a turn).
pub fn call(id: Option<&str>, name: &str, args: Value, signature: Option<&str>) -> Value {
    let mut fc = json!({"name": name, "args": args});
    if let Some(id) = id {
        fc["id"] = json!(id);
    }
    let mut part = json!({"functionCall": fc});
    if let Some(sig) = signature {
        part["thoughtSignature"] = json!(sig);
    }
    part
}

/// A text part carrying only a thought signature (how Gemini signs a text answer).
pub fn signature_only(signature: &str) -> Value {
    json!({"text": "", "thoughtSignature": signature})
}

/// Token usage of a payload.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    /// Prompt tokens.
    pub prompt: u64,
    /// Answer tokens (thoughts excluded).
    pub candidates: u64,
    /// Thought tokens.
    pub thoughts: u64,
}

impl Tokens {
    /// Usage without thoughts.
    pub const fn new(prompt: u64, candidates: u64) -> Self {
        Self {
            prompt,
            candidates,
            thoughts: 0,
        }
    }
}

fn usage(t: Tokens) -> Value {
    let mut u = json!({
        "promptTokenCount": t.prompt,
        "candidatesTokenCount": t.candidates,
        "totalTokenCount": t.prompt + t.candidates + t.thoughts
    });
    if t.thoughts > 0 {
        u["thoughtsTokenCount"] = json!(t.thoughts);
    }
    u
}

/// A whole response with `parts` and `finish_reason`.
pub fn response(parts: &[Value], finish_reason: &str, tokens: Tokens) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_reason,
            "index": 0
        }],
        "usageMetadata": usage(tokens),
        "modelVersion": MODEL,
        "responseId": RESPONSE_ID
    })
}

/// A response answering `text`.
pub fn text_response(text_answer: &str) -> Value {
    response(&[text(text_answer)], "STOP", Tokens::new(11, 7))
}

/// The `alt=sse` transcript: one frame per group of parts; the last frame carries the finish
/// reason and the full usage, earlier frames the prompt usage only (as Gemini sends them).
pub fn stream(frames: &[Vec<Value>], finish_reason: &str, tokens: Tokens) -> Vec<String> {
    let last = frames.len().saturating_sub(1);
    frames
        .iter()
        .enumerate()
        .map(|(i, parts)| {
            let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
            let usage = if i == last {
                candidate["finishReason"] = json!(finish_reason);
                usage(tokens)
            } else {
                json!({"promptTokenCount": tokens.prompt, "totalTokenCount": tokens.prompt})
            };
            let frame = json!({"candidates": [candidate], "usageMetadata": usage,
                "modelVersion": MODEL, "responseId": RESPONSE_ID});
            format!("data: {frame}\r\n\r\n")
        })
        .collect()
}

/// The transcript streaming `pieces` as text.
pub fn text_stream(pieces: &[&str]) -> Vec<String> {
    let frames: Vec<Vec<Value>> = pieces.iter().map(|p| vec![text(p)]).collect();
    stream(&frames, "STOP", Tokens::new(11, 7))
}

/// Two parallel function calls (`get_weather`, `get_time`) after a text part; the first call
/// carries `signature`.
pub fn parallel_call_parts(signature: &str) -> Vec<Value> {
    vec![
        text("Checking both."),
        call(
            Some("call_g1"),
            "get_weather",
            json!({"city": "Paris"}),
            Some(signature),
        ),
        call(Some("call_g2"), "get_time", json!({"tz": "CET"}), None),
    ]
}

/// A signed thought, then the answer.
pub fn thinking_parts(signature: &str) -> Vec<Value> {
    vec![
        thought("Let me think about this.", Some(signature)),
        text("The answer is 4."),
    ]
}

/// Google's error envelope.
pub fn error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

/// 429 body.
pub fn rate_limit_error() -> Value {
    error(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
    )
}

/// 400 body for a prompt over the context window.
pub fn context_length_error() -> Value {
    error(
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    )
}
