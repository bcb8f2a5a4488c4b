//! Our own serde types for the Anthropic Messages wire format (`POST /v1/messages`): request,
//! content blocks, response, usage and the streamed events. Unknown fields, block types, tool
//! types and thinking modes are kept so nothing a client sends is lost.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::extra_fields::deserialize_keeping_extra;

/// `POST /v1/messages` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AnthropicRequest {
    pub model: String,
    pub messages: Vec<InputMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Required by Anthropic; optional here so clients that omit it are still served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Everything else (`service_tier`, `container`, `mcp_servers`, `context_management`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `system`: a string or a list of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

crate::text_or_list::text_or_list!(SystemPrompt { Text, Blocks(SystemBlock) } "text blocks");

/// One block of a block-form system prompt (always `type: "text"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemBlock {
    #[serde(rename = "type", default = "text_type")]
    pub kind: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn text_type() -> String {
    "text".to_owned()
}

/// One conversation turn (`user` or `assistant`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct InputMessage {
    pub role: String,
    pub content: MessageContent,
}

/// Message content: a string or a list of blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

crate::text_or_list::text_or_list!(MessageContent { Text, Blocks(ContentBlock) } "content blocks");

/// A content block of a request or response. Block types we do not model (server tool blocks,
/// `search_result`, ...) are kept whole in `Other`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    /// A document (PDF, plain text, ...), kept as its fields without `type`.
    Document(Map<String, Value>),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextBlock {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// `citations` and anything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TextBlock {
    /// A plain text block.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            cache_control: None,
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ImageBlock {
    pub source: ImageSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// Where an image comes from. Other source kinds (`file`) are kept whole.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    #[serde(untagged)]
    Other(Value),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

pub(crate) fn empty_object() -> Value {
    Value::Object(Map::new())
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ToolResultContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// `tool_result.content`: a string or a list of blocks (text, image, document).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolResultContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

crate::text_or_list::text_or_list!(ToolResultContent { Text, Blocks(ContentBlock) } "content blocks");

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ThinkingBlock {
    #[serde(default)]
    pub thinking: String,
    /// Absent while streaming and from some compatible servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RedactedThinkingBlock {
    pub data: String,
}

/// A tool definition. Custom tools have no `type` (or `"custom"`) and an `input_schema`;
/// Anthropic-defined and server tools (`web_search_20250305`, `bash_20250124`, ...) carry a
/// `type` and their own fields, kept in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tool {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Tool {
    /// Whether this is a client-defined function tool (as opposed to an Anthropic-defined one).
    pub fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }
}

/// `tool_choice`: `auto`, `any`, `tool` (with `name`) or `none`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_parallel_tool_use: Option<bool>,
}

/// `thinking`: `{type: "enabled", budget_tokens}`, `{type: "disabled"}`, or a newer mode kept
/// as is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thinking {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Thinking {
    /// Thinking on with a token budget.
    pub fn enabled(budget_tokens: u64) -> Self {
        Self {
            kind: "enabled".to_owned(),
            budget_tokens: Some(budget_tokens),
            extra: Map::new(),
        }
    }

    /// Thinking off.
    pub fn disabled() -> Self {
        Self {
            kind: "disabled".to_owned(),
            budget_tokens: None,
            extra: Map::new(),
        }
    }
}

/// Non-streamed response (`type: "message"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AnthropicResponse {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default = "assistant_role")]
    pub role: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: WireUsage,
}

fn message_type() -> String {
    "message".to_owned()
}

fn assistant_role() -> String {
    "assistant".to_owned()
}

/// Anthropic usage. `input_tokens` excludes cache reads and writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct WireUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// One streamed event as received from an upstream (lenient: unknown events are `Unknown`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEventIn {
    MessageStart {
        message: MessageStartIn,
    },
    ContentBlockStart {
        index: u32,
        content_block: Value,
    },
    ContentBlockDelta {
        index: u32,
        delta: DeltaIn,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaIn,
        #[serde(default)]
        usage: Option<UsageIn>,
    },
    MessageStop,
    Ping,
    Error {
        error: Value,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageStartIn {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Option<UsageIn>,
}

/// Usage as streamed: every field may be missing (`message_delta` often has only
/// `output_tokens`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct UsageIn {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeltaIn {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    /// A citation for the open text block.
    CitationsDelta {
        #[serde(default)]
        citation: Value,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageDeltaIn {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_of_every_kind_round_trip_and_unknown_ones_are_kept() {
        let blocks = json!([
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}, "citations": []},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}, "title": "t"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "r"}], "is_error": true},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "plain"},
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "enc"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}}
        ]);
        let parsed: Vec<ContentBlock> = serde_json::from_value(blocks.clone()).unwrap();
        assert!(
            matches!(parsed[0], ContentBlock::Text(ref t) if t.extra.contains_key("citations"))
        );
        assert!(matches!(
            parsed[3],
            ContentBlock::Image(ImageBlock {
                source: ImageSource::Other(_),
                ..
            })
        ));
        assert!(matches!(parsed[4], ContentBlock::Document(_)));
        assert!(matches!(parsed[10], ContentBlock::Other(_)));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), blocks);
    }

    #[test]
    fn request_keeps_unknown_fields_tools_and_thinking_modes() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hello"}],
            "tools": [
                {"name": "get", "description": "d", "input_schema": {"type": "object"}},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
            ],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "thinking": {"type": "adaptive", "display": "summarized"},
            "service_tier": "auto"
        });
        let req: AnthropicRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra.get("service_tier"), Some(&json!("auto")));
        let tools = req.tools.as_ref().unwrap();
        assert!(tools[0].is_custom());
        assert!(!tools[1].is_custom());
        assert_eq!(tools[1].extra.get("max_uses"), Some(&json!(3)));
        assert_eq!(
            req.thinking.as_ref().unwrap().extra.get("display"),
            Some(&json!("summarized"))
        );
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }

    #[test]
    fn malformed_known_block_is_kept_as_other_not_misread() {
        let b: ContentBlock = serde_json::from_value(json!({"type": "text", "text": 5})).unwrap();
        assert!(matches!(b, ContentBlock::Other(_)));
    }

    #[test]
    fn stream_events_parse_leniently() {
        let e: StreamEventIn = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert!(matches!(e, StreamEventIn::Ping));
        let e: StreamEventIn = serde_json::from_str(r#"{"type":"brand_new","x":1}"#).unwrap();
        assert!(matches!(e, StreamEventIn::Unknown));
        let e: StreamEventIn = serde_json::from_str(
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"brand_new_delta","x":{}}}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            StreamEventIn::ContentBlockDelta {
                index: 2,
                delta: DeltaIn::Unknown
            }
        ));
        let e: StreamEventIn = serde_json::from_str(
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":{}}}"#,
        )
        .unwrap();
        assert!(matches!(
            e,
            StreamEventIn::ContentBlockDelta {
                index: 2,
                delta: DeltaIn::CitationsDelta { .. }
            }
        ));
    }
}

deserialize_keeping_extra!(AnthropicRequest "a messages request object" {
    model: "model" => required,
    messages: "messages" => required,
    system: "system" => optional,
    max_tokens: "max_tokens" => optional,
    metadata: "metadata" => optional,
    stop_sequences: "stop_sequences" => optional,
    stream: "stream" => optional,
    temperature: "temperature" => optional,
    top_p: "top_p" => optional,
    top_k: "top_k" => optional,
    tools: "tools" => optional,
    tool_choice: "tool_choice" => optional,
    thinking: "thinking" => optional,
});

deserialize_keeping_extra!(SystemBlock "a system block object" {
    kind: "type" => default(text_type),
    text: "text" => required,
    cache_control: "cache_control" => optional,
});

deserialize_keeping_extra!(TextBlock "a text block object" {
    text: "text" => required,
    cache_control: "cache_control" => optional,
});

deserialize_keeping_extra!(Tool "a tool object" {
    kind: "type" => optional,
    name: "name" => required,
    description: "description" => optional,
    input_schema: "input_schema" => optional,
    cache_control: "cache_control" => optional,
});

deserialize_keeping_extra!(Thinking "a thinking object" {
    kind: "type" => required,
    budget_tokens: "budget_tokens" => optional,
});
