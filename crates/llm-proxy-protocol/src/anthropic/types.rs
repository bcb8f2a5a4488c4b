//! Our own serde types for the Anthropic Messages wire format (`POST /v1/messages`): request,
//! content blocks, response, usage and the streamed events. Unknown fields, block types, tool
//! types and thinking modes are kept so nothing a client sends is lost.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
///
/// Read by [`block`] (see there), not by serde's internally tagged derive, which buffered
/// every block of a conversation to find its `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        block::read(d)
    }
}

/// Reading a [`ContentBlock`] in one pass when `type` comes first, as clients write it.
mod block {
    use std::fmt;

    use serde::Deserialize;
    use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
    use serde::de::{Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    use super::{
        ContentBlock, ImageBlock, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolInput,
        ToolResultBlock, ToolUseBlock,
    };
    use crate::extra_fields::Key;

    /// The derive `ContentBlock` had: what a block whose `type` is not its first key, or not
    /// a string, is read with (from the buffered object), so such blocks read as before.
    #[derive(Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Buffered {
        Text(TextBlock),
        Image(ImageBlock),
        Document(Map<String, Value>),
        ToolUse(BufferedToolUse),
        ToolResult(ToolResultBlock),
        Thinking(ThinkingBlock),
        RedactedThinking(RedactedThinkingBlock),
        #[serde(untagged)]
        Other(Value),
    }

    /// A `tool_use` block read from a buffered object: its `input` is a tree by then (a
    /// buffered value cannot give the raw text a [`ToolInput`](super::ToolInput) reads).
    #[derive(Deserialize)]
    struct BufferedToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Option<Value>,
        #[serde(default)]
        cache_control: Option<Value>,
    }

    impl From<Buffered> for ContentBlock {
        fn from(b: Buffered) -> Self {
            match b {
                Buffered::Text(b) => Self::Text(b),
                Buffered::Image(b) => Self::Image(b),
                Buffered::Document(b) => Self::Document(b),
                Buffered::ToolUse(b) => Self::ToolUse(ToolUseBlock {
                    id: b.id,
                    name: b.name,
                    input: b
                        .input
                        .map_or_else(ToolInput::default, |v| ToolInput::of(&v)),
                    cache_control: b.cache_control,
                }),
                Buffered::ToolResult(b) => Self::ToolResult(b),
                Buffered::Thinking(b) => Self::Thinking(b),
                Buffered::RedactedThinking(b) => Self::RedactedThinking(b),
                Buffered::Other(v) => Self::Other(v),
            }
        }
    }

    pub(super) fn read<'de, D: Deserializer<'de>>(d: D) -> Result<ContentBlock, D::Error> {
        d.deserialize_any(Block)
    }

    /// An upstream answer's blocks, read as the buffered derive read them: a block of a known
    /// type with bad fields (a lenient compatible server's) is kept whole as `Other` for the
    /// conversion to deal with, not a failed answer.
    pub(super) fn lenient_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<ContentBlock>, D::Error> {
        Ok(Vec::<Value>::deserialize(d)?
            .into_iter()
            .map(|value| match Buffered::deserialize(&value) {
                Ok(block) => block.into(),
                Err(_) => ContentBlock::Other(value),
            })
            .collect())
    }

    struct Block;

    /// A block the reader does not model, or a non-object in a block list: kept whole.
    fn other<E>(value: Value) -> Result<ContentBlock, E> {
        Ok(ContentBlock::Other(value))
    }

    impl<'de> Visitor<'de> for Block {
        type Value = ContentBlock;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a content block")
        }

        /// `type` first: the block's own fields are read straight into its variant. A block
        /// of a known type with bad fields is an error naming the block and the field ("invalid
        /// 'image' block: missing field `source`"), raised while reading the body; the
        /// buffered derive kept it whole as `Other` for the conversion to refuse.
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ContentBlock, A::Error> {
            let Some(first) = map.next_key::<Key<'de>>()? else {
                return other(Value::Object(Map::new()));
            };
            let first_value: Value = map.next_value()?;
            let kind = match (first.as_str(), &first_value) {
                ("type", Value::String(kind)) => kind.clone(),
                _ => {
                    let mut object = Map::new();
                    object.insert(first.into_string(), first_value);
                    while let Some((key, value)) = map.next_entry::<String, Value>()? {
                        object.insert(key, value);
                    }
                    let object = Value::Object(object);
                    return Ok(match Buffered::deserialize(&object) {
                        Ok(block) => block.into(),
                        Err(_) => ContentBlock::Other(object),
                    });
                }
            };
            let rest = MapAccessDeserializer::new(map);
            let invalid = |e: A::Error| A::Error::custom(format!("invalid '{kind}' block: {e}"));
            Ok(match kind.as_str() {
                "text" => ContentBlock::Text(TextBlock::deserialize(rest).map_err(invalid)?),
                "image" => ContentBlock::Image(ImageBlock::deserialize(rest).map_err(invalid)?),
                "document" => ContentBlock::Document(Map::deserialize(rest).map_err(invalid)?),
                "tool_use" => {
                    ContentBlock::ToolUse(ToolUseBlock::deserialize(rest).map_err(invalid)?)
                }
                "tool_result" => {
                    ContentBlock::ToolResult(ToolResultBlock::deserialize(rest).map_err(invalid)?)
                }
                "thinking" => {
                    ContentBlock::Thinking(ThinkingBlock::deserialize(rest).map_err(invalid)?)
                }
                "redacted_thinking" => ContentBlock::RedactedThinking(
                    RedactedThinkingBlock::deserialize(rest).map_err(invalid)?,
                ),
                _ => {
                    let mut object = Map::new();
                    object.insert("type".to_owned(), first_value);
                    object.extend(Map::deserialize(rest)?);
                    ContentBlock::Other(Value::Object(object))
                }
            })
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ContentBlock, A::Error> {
            other(Value::Array(Vec::deserialize(SeqAccessDeserializer::new(
                seq,
            ))?))
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<ContentBlock, E> {
            other(Value::String(v.to_owned()))
        }

        fn visit_string<E: Error>(self, v: String) -> Result<ContentBlock, E> {
            other(Value::String(v))
        }

        fn visit_bool<E: Error>(self, v: bool) -> Result<ContentBlock, E> {
            other(Value::Bool(v))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<ContentBlock, E> {
            other(Value::from(v))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<ContentBlock, E> {
            other(Value::from(v))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<ContentBlock, E> {
            other(Value::from(v))
        }

        fn visit_unit<E: Error>(self) -> Result<ContentBlock, E> {
            other(Value::Null)
        }

        fn visit_none<E: Error>(self) -> Result<ContentBlock, E> {
            other(Value::Null)
        }
    }
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
    #[serde(default)]
    pub input: ToolInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// A `tool_use` block's `input`, kept as the JSON text it came as.
///
/// The input goes on to the canonical model as the tool call's argument text and, on an
/// Anthropic upstream, back into an `input`: read into a `Value` it was built as a tree,
/// printed, parsed again and printed again on every turn of a conversation (a tenth of a
/// long agent request's instructions). Kept as text, the client's keys also keep their
/// order: a `Value` map sorts them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ToolInput(Box<RawValue>);

impl ToolInput {
    /// The input's JSON text, without surrounding whitespace.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Tool-call argument text as an `input`: `{}` for blank text, `None` when the text is
    /// not one JSON object.
    pub fn object(arguments: &str) -> Option<Self> {
        if arguments.trim().is_empty() {
            return Some(Self::default());
        }
        let raw: Box<RawValue> = serde_json::from_str(arguments).ok()?;
        raw.get().starts_with('{').then_some(Self(raw))
    }

    /// A tree's JSON text (`null` stays `null`).
    pub fn of(value: &Value) -> Self {
        serde_json::value::to_raw_value(value).map_or_else(|_| Self::default(), Self)
    }

    /// The canonical argument text: the input as it came, `{}` for `null`.
    pub fn into_arguments(self) -> String {
        if self.get() == "null" {
            return "{}".to_owned();
        }
        String::from(Box::<str>::from(self.0))
    }
}

impl Default for ToolInput {
    /// `{}`: what an absent `input` means.
    fn default() -> Self {
        // `{}` is JSON: the fallback is never taken.
        Self(RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }
}

/// The same JSON: inputs that differ only in spacing or key order are equal.
impl PartialEq for ToolInput {
    fn eq(&self, other: &Self) -> bool {
        let tree = |input: &Self| serde_json::from_str::<Value>(input.get()).ok();
        self.get() == other.get() || tree(self) == tree(other)
    }
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
    /// Read leniently ([`block::lenient_list`]): an upstream's malformed block is kept whole.
    #[serde(default, deserialize_with = "block::lenient_list")]
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
        // As clients write them, `type` first.
        let text = r#"[
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
        ]"#;
        // A `Value`'s keys are sorted, so `type` comes after most of them there: read from it,
        // the blocks take the buffered path; read from the text, the one-pass path.
        let blocks: Value = serde_json::from_str(text).unwrap();
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
        let one_pass: Vec<ContentBlock> = serde_json::from_str(text).unwrap();
        assert_eq!(one_pass, parsed);
        // Not objects, or without a string `type`: kept whole, as before.
        let odd: Vec<ContentBlock> =
            serde_json::from_str(r#"["plain", 5, null, [1], {}, {"type": 7, "x": 1}, {"x": 1}]"#)
                .unwrap();
        assert_eq!(
            odd,
            [
                json!("plain"),
                json!(5),
                json!(null),
                json!([1]),
                json!({}),
                json!({"type": 7, "x": 1}),
                json!({"x": 1})
            ]
            .map(ContentBlock::Other)
        );
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
        // In an upstream's answer, whatever the key order.
        let answer: AnthropicResponse = serde_json::from_str(
            r#"{"type": "message", "content": [{"type": "text", "text": null}, {"type": "text", "text": "ok"}]}"#,
        )
        .unwrap();
        assert_eq!(
            answer.content,
            [
                ContentBlock::Other(json!({"type": "text", "text": null})),
                ContentBlock::Text(TextBlock::new("ok"))
            ]
        );
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
