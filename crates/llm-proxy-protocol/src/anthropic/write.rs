//! The Anthropic objects the proxy prints on every request, written straight to bytes
//! (`json_out`): an upstream request and the non-streamed answer to a client. A Claude Code
//! request is a long conversation, a long system prompt and long tool descriptions, all text
//! full of newlines, which `serde_json` escapes a byte at a time; here the runs between escapes
//! are copied whole. Text, tool use, tool result and thinking blocks are written here; other
//! blocks (images, documents, server tool blocks) and client-given values (schemas, metadata,
//! unknown fields) go through `serde_json`. The bytes are exactly what `serde_json` prints for
//! the same values (tested below against `serde_json::to_vec`).

use crate::json_out::{self, Fields, WriteJson};

use super::types::{
    AnthropicRequest, AnthropicResponse, ContentBlock, InputMessage, MessageContent, SystemBlock,
    SystemPrompt, Tool, ToolResultContent,
};

impl WriteJson for ContentBlock {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = match self {
            // Rare, and made of client-given values: as serde writes them.
            Self::Image(_) | Self::Document(_) | Self::Other(_) => {
                return json_out::value(out, self);
            }
            _ => Fields::new(out),
        };
        match self {
            Self::Text(b) => {
                f.string("type", "text");
                f.string("text", &b.text);
                f.opt_value("cache_control", b.cache_control.as_ref());
                f.extra(&b.extra);
            }
            Self::ToolUse(b) => {
                f.string("type", "tool_use");
                f.string("id", &b.id);
                f.string("name", &b.name);
                f.key("input").extend_from_slice(b.input.get().as_bytes());
                f.opt_value("cache_control", b.cache_control.as_ref());
            }
            Self::ToolResult(b) => {
                f.string("type", "tool_result");
                f.string("tool_use_id", &b.tool_use_id);
                match &b.content {
                    Some(ToolResultContent::Text(text)) => f.string("content", text),
                    Some(ToolResultContent::Blocks(blocks)) => {
                        json_out::array(f.key("content"), blocks, |out, b| b.write_json(out));
                    }
                    None => {}
                }
                f.opt_value("is_error", b.is_error.as_ref());
                f.opt_value("cache_control", b.cache_control.as_ref());
            }
            Self::Thinking(b) => {
                f.string("type", "thinking");
                f.string("thinking", &b.thinking);
                f.opt_string("signature", b.signature.as_deref());
            }
            Self::RedactedThinking(b) => {
                f.string("type", "redacted_thinking");
                f.string("data", &b.data);
            }
            Self::Image(_) | Self::Document(_) | Self::Other(_) => {}
        }
        f.close();
    }
}

fn message(out: &mut Vec<u8>, m: &InputMessage) {
    let mut f = Fields::new(out);
    f.string("role", &m.role);
    match &m.content {
        MessageContent::Text(text) => f.string("content", text),
        MessageContent::Blocks(blocks) => {
            json_out::array(f.key("content"), blocks, |out, b| b.write_json(out));
        }
    }
    f.close();
}

fn system_block(out: &mut Vec<u8>, b: &SystemBlock) {
    let mut f = Fields::new(out);
    f.string("type", &b.kind);
    f.string("text", &b.text);
    f.opt_value("cache_control", b.cache_control.as_ref());
    f.extra(&b.extra);
    f.close();
}

fn tool(out: &mut Vec<u8>, t: &Tool) {
    let mut f = Fields::new(out);
    f.opt_string("type", t.kind.as_deref());
    f.string("name", &t.name);
    f.opt_string("description", t.description.as_deref());
    f.opt_value("input_schema", t.input_schema.as_ref());
    f.opt_value("cache_control", t.cache_control.as_ref());
    f.extra(&t.extra);
    f.close();
}

impl WriteJson for AnthropicRequest {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        f.string("model", &self.model);
        json_out::array(f.key("messages"), &self.messages, message);
        match &self.system {
            Some(SystemPrompt::Text(text)) => f.string("system", text),
            Some(SystemPrompt::Blocks(blocks)) => {
                json_out::array(f.key("system"), blocks, system_block);
            }
            None => {}
        }
        f.opt_value("max_tokens", self.max_tokens.as_ref());
        f.opt_value("metadata", self.metadata.as_ref());
        if let Some(stops) = &self.stop_sequences {
            json_out::array(f.key("stop_sequences"), stops, |out, s| {
                json_out::string(out, s);
            });
        }
        f.opt_value("stream", self.stream.as_ref());
        f.opt_value("temperature", self.temperature.as_ref());
        f.opt_value("top_p", self.top_p.as_ref());
        f.opt_value("top_k", self.top_k.as_ref());
        if let Some(tools) = &self.tools {
            json_out::array(f.key("tools"), tools, tool);
        }
        f.opt_value("tool_choice", self.tool_choice.as_ref());
        f.opt_value("thinking", self.thinking.as_ref());
        f.extra(&self.extra);
        f.close();
    }
}

impl WriteJson for AnthropicResponse {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        f.string("id", &self.id);
        f.string("type", &self.kind);
        f.string("role", &self.role);
        json_out::array(f.key("content"), &self.content, |out, b| b.write_json(out));
        f.string("model", &self.model);
        json_out::opt_string(f.key("stop_reason"), self.stop_reason.as_deref());
        json_out::opt_string(f.key("stop_sequence"), self.stop_sequence.as_deref());
        json_out::value(f.key("usage"), &self.usage);
        f.close();
    }
}

/// An upstream request body.
pub fn request_bytes(request: &AnthropicRequest) -> Vec<u8> {
    let text: usize = request
        .messages
        .iter()
        .map(|m| match &m.content {
            MessageContent::Text(t) => t.len() + 32,
            MessageContent::Blocks(blocks) => blocks.len() * 256,
        })
        .sum();
    let mut out = Vec::with_capacity(text + 1024);
    request.write_json(&mut out);
    out
}

/// The client's non-streamed answer.
pub fn response_bytes(response: &AnthropicResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    response.write_json(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const TEXT: &str = "line one\nline \"two\"\t\\ end\u{1}é🦀";

    /// Blocks of every kind, each field present and absent, read the way clients send them.
    fn blocks() -> Value {
        json!([
            {"type": "text", "text": TEXT},
            {"type": "text", "text": "", "cache_control": {"type": "ephemeral"}, "citations": [{"url": "u"}], "z\n": 1},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": TEXT}, "title": "t"},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": TEXT, "n": 1.5}},
            {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {}, "cache_control": {"type": "ephemeral"}},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": TEXT},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                {"type": "text", "text": TEXT},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
            ], "is_error": true, "cache_control": {"type": "ephemeral"}},
            {"type": "tool_result", "tool_use_id": "toolu_3"},
            {"type": "thinking", "thinking": TEXT, "signature": "sig=="},
            {"type": "thinking", "thinking": ""},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}
        ])
    }

    fn request(body: Value) -> AnthropicRequest {
        let text = serde_json::to_string(&body).unwrap();
        crate::parse_body(text.as_bytes()).unwrap()
    }

    #[test]
    fn requests_are_the_bytes_serde_json_writes() {
        let full = json!({
            "model": "claude-\"x\"",
            "messages": [
                {"role": "user", "content": TEXT},
                {"role": "assistant", "content": blocks()},
                {"role": "user", "content": []}
            ],
            "system": [
                {"type": "text", "text": TEXT, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b", "extra\tkey": [1]}
            ],
            "max_tokens": 1024,
            "metadata": {"user_id": "u"},
            "stop_sequences": ["\n\nHuman:", "x"],
            "stream": true,
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "tools": [
                {"name": "Read", "description": TEXT, "input_schema": {"type": "object", "properties": {"p": {"type": "string", "description": TEXT}}}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3, "cache_control": {"type": "ephemeral"}}
            ],
            "tool_choice": {"type": "tool", "name": "Read", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "context_management": {"edits": []},
            "service_tier": "auto"
        });
        let minimal = json!({"model": "m", "messages": [], "system": TEXT});
        let bare = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "thinking": {"type": "adaptive"}});
        for body in [full, minimal, bare] {
            let req = request(body);
            assert_eq!(
                String::from_utf8(request_bytes(&req)).unwrap(),
                serde_json::to_string(&req).unwrap()
            );
        }
    }

    #[test]
    fn answers_are_the_bytes_serde_json_writes() {
        let full: AnthropicResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "content": blocks(),
            "model": "claude", "stop_reason": "tool_use", "stop_sequence": "\n",
            "usage": {"input_tokens": 1, "output_tokens": 2, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 4}
        }))
        .unwrap();
        let mut bare = full.clone();
        bare.content.clear();
        bare.stop_reason = None;
        bare.stop_sequence = None;
        bare.usage = Default::default();
        for answer in [full, bare] {
            assert_eq!(
                String::from_utf8(response_bytes(&answer)).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
    }
}
