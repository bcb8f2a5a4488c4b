//! Anthropic Messages upstream payloads, shaped like Anthropic's API reference: `message`
//! bodies and the matching SSE transcripts (`message_start` .. `message_stop`) built from one
//! description of the content blocks, plus error bodies and in-stream errors.

use serde_json::{Value, json};

/// Model name the payloads report.
pub const MODEL: &str = "claude-sonnet-4-5-20250929";
/// Message id the payloads report.
pub const MESSAGE_ID: &str = "msg_01XFDUDYJgAACzvnptvVoYEL";

/// One content block of an answer; streamed pieces are given separately so tests control how
/// the SSE transcript fragments them.
#[derive(Debug, Clone)]
pub enum Block {
    /// Text, streamed as these `text_delta`s.
    Text(Vec<String>),
    /// Thinking streamed as `thinking_delta`s, then its `signature_delta`.
    Thinking {
        /// Thinking pieces.
        pieces: Vec<String>,
        /// Signature.
        signature: String,
    },
    /// A whole `redacted_thinking` block.
    Redacted(String),
    /// A tool call whose input JSON is streamed in these `input_json_delta` fragments.
    ToolUse {
        /// `toolu_...` id.
        id: String,
        /// Tool name.
        name: String,
        /// Fragments of the input JSON (concatenated they are the input object).
        fragments: Vec<String>,
    },
}

impl Block {
    /// A text block streamed in `pieces`.
    pub fn text(pieces: &[&str]) -> Self {
        Self::Text(pieces.iter().map(|p| (*p).to_owned()).collect())
    }

    /// A signed thinking block streamed in `pieces`.
    pub fn thinking(pieces: &[&str], signature: &str) -> Self {
        Self::Thinking {
            pieces: pieces.iter().map(|p| (*p).to_owned()).collect(),
            signature: signature.to_owned(),
        }
    }

    /// A tool call whose input arrives in `fragments`.
    pub fn tool_use(id: &str, name: &str, fragments: &[&str]) -> Self {
        Self::ToolUse {
            id: id.to_owned(),
            name: name.to_owned(),
            fragments: fragments.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// The block as it appears in a non-streamed `message`.
    pub fn whole(&self) -> Value {
        match self {
            Self::Text(pieces) => json!({"type": "text", "text": pieces.concat()}),
            Self::Thinking { pieces, signature } => {
                json!({"type": "thinking", "thinking": pieces.concat(), "signature": signature})
            }
            Self::Redacted(data) => json!({"type": "redacted_thinking", "data": data}),
            Self::ToolUse {
                id,
                name,
                fragments,
            } => {
                let input: Value = serde_json::from_str(&fragments.concat()).unwrap_or(json!({}));
                json!({"type": "tool_use", "id": id, "name": name, "input": input})
            }
        }
    }
}

/// Token usage of a payload.
#[derive(Debug, Clone, Copy)]
pub struct Tokens {
    /// Input tokens (not cached).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
}

impl Tokens {
    /// Uncached usage.
    pub const fn new(input: u64, output: u64) -> Self {
        Self {
            input,
            output,
            cache_read: 0,
        }
    }
}

fn usage(t: Tokens) -> Value {
    json!({
        "input_tokens": t.input,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": t.cache_read,
        "output_tokens": t.output
    })
}

/// A non-streamed `message` with `blocks`.
pub fn message(blocks: &[Block], stop_reason: &str, tokens: Tokens) -> Value {
    json!({
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": blocks.iter().map(Block::whole).collect::<Vec<_>>(),
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(tokens)
    })
}

/// A `message` answering `text`.
pub fn text_message(text: &str) -> Value {
    message(&[Block::text(&[text])], "end_turn", Tokens::new(11, 7))
}

/// One SSE event: `event: <type>` and its JSON data.
pub fn event(data: &Value) -> String {
    let name = data
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    format!("event: {name}\ndata: {data}\n\n")
}

/// The SSE transcript streaming `blocks`: `message_start` (input usage), a `ping`, each block
/// as start / deltas / stop, `message_delta` (stop reason, output usage), `message_stop`.
pub fn stream(blocks: &[Block], stop_reason: &str, tokens: Tokens) -> Vec<String> {
    let start_usage = Tokens {
        output: 1,
        ..tokens
    };
    let mut frames = vec![
        event(&json!({"type": "message_start", "message": {
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "content": [], "model": MODEL,
            "stop_reason": null, "stop_sequence": null, "usage": usage(start_usage)}})),
        event(&json!({"type": "ping"})),
    ];
    for (index, block) in blocks.iter().enumerate() {
        let delta = |delta: Value| {
            event(&json!({"type": "content_block_delta", "index": index, "delta": delta}))
        };
        let start = match block {
            Block::Text(_) => json!({"type": "text", "text": ""}),
            Block::Thinking { .. } => json!({"type": "thinking", "thinking": "", "signature": ""}),
            Block::Redacted(_) => block.whole(),
            Block::ToolUse { id, name, .. } => {
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        };
        frames.push(event(
            &json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        match block {
            Block::Text(pieces) => {
                frames.extend(
                    pieces
                        .iter()
                        .map(|p| delta(json!({"type": "text_delta", "text": p}))),
                );
            }
            Block::Thinking { pieces, signature } => {
                frames.extend(
                    pieces
                        .iter()
                        .map(|p| delta(json!({"type": "thinking_delta", "thinking": p}))),
                );
                frames.push(delta(
                    json!({"type": "signature_delta", "signature": signature}),
                ));
            }
            Block::Redacted(_) => {}
            Block::ToolUse { fragments, .. } => {
                frames.push(delta(
                    json!({"type": "input_json_delta", "partial_json": ""}),
                ));
                frames.extend(
                    fragments
                        .iter()
                        .map(|p| delta(json!({"type": "input_json_delta", "partial_json": p}))),
                );
            }
        }
        frames.push(event(
            &json!({"type": "content_block_stop", "index": index}),
        ));
    }
    frames.push(event(&json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": tokens.output}})));
    frames.push(event(&json!({"type": "message_stop"})));
    frames
}

/// The SSE transcript streaming `pieces` as text.
pub fn text_stream(pieces: &[&str]) -> Vec<String> {
    stream(&[Block::text(pieces)], "end_turn", Tokens::new(11, 7))
}

/// Two tool calls in one answer (`get_weather` and `get_time`), inputs in fragments.
pub fn parallel_tool_blocks() -> Vec<Block> {
    vec![
        Block::text(&["Checking both."]),
        Block::tool_use("toolu_01A", "get_weather", &["{\"city\":", " \"Paris\"}"]),
        Block::tool_use("toolu_01B", "get_time", &["{\"tz\"", ": \"CET\"}"]),
    ]
}

/// Signed thinking, then text.
pub fn thinking_blocks(signature: &str) -> Vec<Block> {
    vec![
        Block::thinking(&["Let me think ", "about this."], signature),
        Block::text(&["The answer is 4."]),
    ]
}

/// An error body: `{"type":"error","error":{"type":..,"message":..}}`.
pub fn error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// 429 body.
pub fn rate_limit_error() -> Value {
    error(
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
    )
}

/// 400 body for a prompt over the context window.
pub fn prompt_too_long_error() -> Value {
    error(
        "invalid_request_error",
        "prompt is too long: 208310 tokens > 200000 maximum",
    )
}

/// A stream that starts, sends some text, then fails with `overloaded_error`.
pub fn overloaded_stream(text: &str) -> Vec<String> {
    let mut frames = stream(&[Block::text(&[text])], "end_turn", Tokens::new(5, 1));
    // Keep message_start, ping, block start and first delta; then the error event.
    frames.truncate(4);
    frames.push(event(&error("overloaded_error", "Overloaded")));
    frames
}

/// Paths (`.system[0]`, `.messages[1].content[0]`, ...) of every `cache_control` in a JSON
/// request, in document order: where the cache breakpoints sit.
pub fn cache_control_paths(v: &Value) -> Vec<String> {
    fn walk(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "cache_control" {
                        out.push(path.to_owned());
                    } else {
                        walk(child, &format!("{path}.{k}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}
