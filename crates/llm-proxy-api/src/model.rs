//! The canonical chat model every wire format converts to and from (hub and spoke).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Free-form JSON object used for fields a format does not model.
pub type Extra = Map<String, Value>;

/// A chat request in the proxy's canonical form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model selector as the client sent it (later: the effective upstream model).
    pub model: String,
    /// Conversation, system prompts included (as `Role::System` / `Role::Developer` messages).
    pub messages: Vec<Message>,
    /// Whether the client asked for a streamed response.
    pub stream: bool,
    /// Tool definitions offered to the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDefinition>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether the model may emit several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Sampling parameters.
    #[serde(default)]
    pub sampling: Sampling,
    /// Maximum number of output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Requested output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Reasoning / thinking settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    /// Request metadata (OpenAI `metadata`, Anthropic `metadata`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Extra,
    /// End-user identifier (OpenAI `user`, Anthropic `metadata.user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields of the client's wire format that the model does not cover, passed through to
    /// upstreams that speak the same format (`extra_protocol`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Extra,
    /// Protocol whose fields `extra` holds (`openai_chat`, `anthropic`, `gemini`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_protocol: Option<String>,
    /// Body fields the proxy itself sets for upstreams speaking one protocol, whatever
    /// protocol the client spoke (a session's Gemini `generationConfig`): protocol name -> a
    /// JSON merge patch (RFC 7396) over that upstream's encoded body. Upstreams speaking
    /// another protocol leave it out and say so (see [`ChatRequest::foreign_content_note`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body_patches: BTreeMap<String, Extra>,
    /// Prompt-caching hints: the client's cache routing key and whether it marks its own
    /// cache breakpoints.
    #[serde(default, skip_serializing_if = "PromptCache::is_default")]
    pub cache: PromptCache,
}

/// How a request takes part in upstream prompt caching. The marks themselves travel on the
/// blocks (`cache_control` of text, media, tool calls, tool results and tool definitions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptCache {
    /// The client's cache routing key (OpenAI `prompt_cache_key`), passed to upstreams that
    /// route by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The client's protocol lets it place cache breakpoints itself (Anthropic
    /// `cache_control`), so upstreams that need explicit breakpoints use only the client's.
    /// `false` for protocols without them: an Anthropic upstream then adds its own.
    #[serde(default)]
    pub client_breakpoints: bool,
}

impl PromptCache {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl ChatRequest {
    /// The pass-through fields, if they were written in `protocol`.
    pub fn extra_for(&self, protocol: &str) -> Option<&Extra> {
        (self.extra_protocol.as_deref() == Some(protocol) && !self.extra.is_empty())
            .then_some(&self.extra)
    }

    /// Whether the client asked for token logprobs, read from its own protocol's fields
    /// (OpenAI chat `logprobs: true`, Responses `include: ["message.output_text.logprobs"]`,
    /// Gemini `generationConfig.responseLogprobs`): `Some` with the number of alternatives
    /// per token it asked for (0 when none). Encoders of other protocols ask their upstream.
    pub fn logprobs_requested(&self) -> Option<u64> {
        let extra = &self.extra;
        let top = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
        match self.extra_protocol.as_deref()? {
            "openai_chat" => (extra.get("logprobs") == Some(&Value::Bool(true)))
                .then(|| top(extra.get("top_logprobs"))),
            "openai_responses" => extra
                .get("include")
                .and_then(Value::as_array)
                .is_some_and(|i| i.iter().any(|v| v == LOGPROBS_INCLUDE))
                .then(|| top(extra.get("top_logprobs"))),
            "gemini" => {
                let config = extra.get("generationConfig");
                (config.and_then(|c| c.get("responseLogprobs")) == Some(&Value::Bool(true)))
                    .then(|| top(config.and_then(|c| c.get("logprobs"))))
            }
            _ => None,
        }
    }

    /// The lossy note for an upstream speaking `protocol`: which opaque blocks, pass-through
    /// fields and body patches of other protocols its encoder leaves out (`None` when there
    /// are none).
    pub fn foreign_content_note(&self, protocol: &str) -> Option<String> {
        let mut kinds: Vec<&str> = Vec::new();
        fn nested(part: &Part) -> &[Part] {
            match part {
                Part::ToolResult(r) => &r.content,
                _ => &[],
            }
        }
        let parts = self.messages.iter().flat_map(|m| &m.content);
        for part in parts.clone().chain(parts.clone().flat_map(nested)) {
            if let Part::Opaque(o) = part
                && o.protocol != protocol
                && !kinds.contains(&o.kind())
            {
                kinds.push(o.kind());
            }
        }
        let mut notes = Vec::new();
        if !kinds.is_empty() {
            notes.push(format!(
                "content blocks the upstream cannot express dropped: {}",
                kinds.join(", ")
            ));
        }
        // Anthropic document settings: their content goes on everywhere, these only there.
        let settings = parts.clone().chain(parts.flat_map(nested)).any(|p| {
            let document = match p {
                Part::Text(t) => t.document.as_ref(),
                Part::Image(i) => i.document.as_ref(),
                _ => None,
            };
            document.is_some_and(|d| d.values().any(|v| !v.is_null()))
        });
        if settings && protocol != "anthropic" {
            notes.push(format!(
                "document title/context/citations settings not sent to an upstream speaking {protocol}"
            ));
        }
        if let Some(other) = self.extra_protocol.as_deref().filter(|p| *p != protocol) {
            let fields: Vec<&str> = self
                .extra
                .keys()
                .map(String::as_str)
                .filter(|k| !CARRIED_ELSEWHERE.contains(&(other, *k)))
                .filter(|k| {
                    !(LOGPROBS_FIELDS.contains(&(other, *k))
                        && LOGPROBS_UPSTREAMS.contains(&protocol))
                })
                .collect();
            if !fields.is_empty() {
                notes.push(format!(
                    "{other} fields not sent to an upstream speaking {protocol}: {}",
                    fields.join(", ")
                ));
            }
        }
        for (other, patch) in &self.body_patches {
            if other != protocol && !patch.is_empty() {
                let fields: Vec<&str> = patch.keys().map(String::as_str).collect();
                notes.push(format!(
                    "{other} settings not sent to an upstream speaking {protocol}: {}",
                    fields.join(", ")
                ));
            }
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }
}

/// The Responses `include` value asking for output text logprobs.
pub const LOGPROBS_INCLUDE: &str = "message.output_text.logprobs";

/// Pass-through fields asking for logprobs, which the encoders of [`LOGPROBS_UPSTREAMS`]
/// map to their own (see [`ChatRequest::logprobs_requested`]).
const LOGPROBS_FIELDS: &[(&str, &str)] = &[
    ("openai_chat", "logprobs"),
    ("openai_chat", "top_logprobs"),
    ("openai_responses", "top_logprobs"),
];

/// Upstream protocols that can answer with logprobs.
const LOGPROBS_UPSTREAMS: &[&str] = &["openai_chat", "openai_responses", "gemini"];

/// Pass-through fields kept verbatim for same-protocol upstreams although the canonical
/// model carries them too (or their conversion notes them already): not dropped for other
/// upstreams, so not noted. `extra_body` is the proxy's own (session ids, token counts).
const CARRIED_ELSEWHERE: &[(&str, &str)] = &[
    ("openai_chat", "extra_body"),
    ("anthropic", "thinking"),
    ("anthropic", "output_config"),
    // Named by its own note (llm_proxy_protocol::reasoning::context_management_note).
    ("anthropic", "context_management"),
    ("openai_responses", "reasoning"),
    ("openai_responses", "tool_choice"),
    ("openai_responses", "text"),
    ("openai_responses", "include"),
    ("openai_responses", "store"),
    ("openai_responses", "service_tier"),
    ("openai_responses", "tools"),
];

/// Sampling parameters shared by the formats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic, Gemini).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    /// Presence penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Seed for deterministic sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Number of choices (only 1 is supported end to end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt.
    System,
    /// OpenAI's `developer` role (a system prompt for reasoning models).
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// One message of the conversation: a role and an ordered list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Ordered content (text, media, reasoning, tool calls, tool results).
    pub content: Vec<Part>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    /// A message with a single text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self {
            role,
            content: vec![Part::Text(TextPart::new(text))],
            name: None,
        }
    }

    /// Concatenation of the message's text parts.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text(t) = part {
                out.push_str(&t.text);
            }
        }
        out
    }

    /// Tool calls in this message, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|p| match p {
            Part::ToolCall(c) => Some(c),
            _ => None,
        })
    }
}

/// A piece of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Plain text.
    Text(TextPart),
    /// An image, by URL or inline data.
    Image(ImagePart),
    /// Inline audio.
    Audio(AudioPart),
    /// Model reasoning (thinking), possibly signed or encrypted.
    Reasoning(ReasoningBlock),
    /// A tool call made by the assistant.
    ToolCall(ToolCall),
    /// The result of a tool call.
    ToolResult(ToolResult),
    /// Content only one wire protocol can express, kept verbatim for it.
    Opaque(OpaquePart),
}

impl Part {
    /// The part for a piece of media: inline `audio/*` is audio, anything else an image part
    /// (which also carries other inline files, e.g. PDFs, by their MIME type).
    pub fn media(source: MediaSource) -> Self {
        if let MediaSource::Base64 { media_type, data } = &source
            && let Some(sub) = media_type.strip_prefix("audio/")
        {
            return Self::Audio(AudioPart {
                data: data.clone(),
                format: match sub {
                    "wav" | "x-wav" | "wave" => "wav".to_owned(),
                    "mpeg" | "mp3" => "mp3".to_owned(),
                    other => other.to_owned(),
                },
            });
        }
        Self::Image(ImagePart {
            source,
            detail: None,
            cache_control: None,
            document: None,
        })
    }
}

/// Text content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    /// The text.
    pub text: String,
    /// Prompt-cache marker (Anthropic `cache_control`), carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// Citations backing this text in an answer, each exactly as the provider sent it
    /// (Anthropic `char_location`, `page_location`, `web_search_result_location`, ...).
    /// Renderers pass them through to their own protocol or map what they can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Value>,
    /// The Anthropic `document` block this text came from, without `source` and
    /// `cache_control` (`title`, `context`, `citations: {enabled}`): a request's text document
    /// goes back to Anthropic upstreams as the same document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Map<String, Value>>,
}

impl TextPart {
    /// Text without cache marker.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            cache_control: None,
            citations: Vec::new(),
            document: None,
        }
    }
}

/// Image content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePart {
    /// Where the image comes from.
    pub source: MediaSource,
    /// OpenAI `detail` hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Prompt-cache marker (Anthropic `cache_control`), carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    /// The Anthropic `document` block this file came from, without `source` and
    /// `cache_control` (`title`, `context`, `citations: {enabled}`), for Anthropic upstreams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Map<String, Value>>,
}

/// Media by reference or inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MediaSource {
    /// A fetchable URL.
    Url {
        /// The URL.
        url: String,
    },
    /// Inline base64 data.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// Base64-encoded bytes.
        data: String,
    },
}

impl MediaSource {
    /// Parses a `data:<mime>;base64,<data>` URL into inline data; other URLs stay URLs.
    pub fn from_url(url: &str) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((meta, data)) = rest.split_once(',')
            && let Some(media_type) = meta.strip_suffix(";base64")
        {
            return Self::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            };
        }
        Self::Url {
            url: url.to_owned(),
        }
    }

    /// The source as a URL (inline data becomes a `data:` URL).
    pub fn to_url(&self) -> String {
        match self {
            Self::Url { url } => url.clone(),
            Self::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

/// Audio content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioPart {
    /// Base64 audio bytes.
    pub data: String,
    /// Audio format (`wav`, `mp3`).
    pub format: String,
}

impl AudioPart {
    /// The MIME type of the audio (`audio/wav`, `audio/mpeg`, `audio/{format}`).
    pub fn media_type(&self) -> String {
        match self.format.as_str() {
            "mp3" => "audio/mpeg".to_owned(),
            other => format!("audio/{other}"),
        }
    }
}

/// Content that only one wire protocol can express (Anthropic `server_tool_use`,
/// `web_search_tool_result`, file-backed images, ...). Upstreams speaking `protocol` get it
/// back verbatim; every other drops it and says so (see [`ChatRequest::foreign_content_note`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpaquePart {
    /// Protocol whose wire format `value` is written in (`anthropic`, ...).
    pub protocol: String,
    /// The block exactly as the client sent it.
    pub value: Value,
}

impl OpaquePart {
    /// The block's own `type` field, for notes and logs.
    pub fn kind(&self) -> &str {
        self.value
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
    }
}

/// A reasoning (thinking) block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningBlock {
    /// Visible reasoning text (may be a summary).
    #[serde(default)]
    pub text: String,
    /// Signature proving the reasoning was produced by the provider (Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Redacted or encrypted reasoning payload (Anthropic `redacted_thinking.data`,
    /// OpenAI `encrypted_content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// Provider-opaque data that must travel back to the same provider on the next turn
    /// (e.g. Gemini `thoughtSignature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_data: Option<Value>,
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, used to match the result.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text (as streamed by the provider).
    pub arguments: String,
    /// Provider-opaque data to send back with this call (e.g. Gemini `thoughtSignature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_data: Option<Value>,
    /// Prompt-cache marker (Anthropic `cache_control`), carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// The result of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// Id of the call this answers.
    pub call_id: String,
    /// Function name, when the format carries it (Gemini needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Result content (text and images).
    pub content: Vec<Part>,
    /// Whether the tool reported an error.
    #[serde(default)]
    pub is_error: bool,
    /// Prompt-cache marker (Anthropic `cache_control`), carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

impl ToolResult {
    /// Concatenated text of the result.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text(t) = part {
                out.push_str(&t.text);
            }
        }
        out
    }

    /// The text for a wire format without an error flag (OpenAI chat, Responses, Ollama): an
    /// error result says so in its text (`Error: ...`), so the model still knows the tool failed.
    pub fn text_marking_error(&self) -> String {
        let text = self.joined_text();
        if self.is_error && !text.starts_with("Error") {
            format!("Error: {text}")
        } else {
            text
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    /// Function name.
    pub name: String,
    /// Description for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments.
    pub parameters: Value,
    /// OpenAI strict mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Prompt-cache marker (Anthropic), carried opaquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "name", rename_all = "snake_case")]
pub enum ToolChoice {
    /// Model decides.
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call.
    Required,
    /// This specific function.
    Function(String),
}

/// Requested output format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Plain text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name.
        name: String,
        /// The schema.
        schema: Value,
        /// Strict adherence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// Reasoning / thinking settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningConfig {
    /// Effort level (`none`, `minimal`, `low`, `medium`, `high`, `xhigh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Token budget for thinking (Anthropic `budget_tokens`, Gemini `thinkingBudget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Thinking explicitly disabled.
    #[serde(default)]
    pub disabled: bool,
    /// The model decides how much to think (Anthropic `thinking: {type: "adaptive"}`, Gemini
    /// `thinkingBudget: -1`); `effort`, when set, still guides it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adaptive: bool,
    /// Whether reasoning summaries / thoughts should be returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_thoughts: Option<bool>,
}

/// Token usage of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input (prompt) tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// Output (completion) tokens, reasoning included.
    pub output_tokens: u64,
    /// Reasoning tokens (subset of output), when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Input tokens read from the prompt cache, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the prompt cache, when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
}

impl Usage {
    /// Total tokens.
    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Folds a later usage report into this one: non-zero / present fields of `later` win.
    /// Providers report usage in pieces (Anthropic: input at start, output at the end).
    pub fn merge(&mut self, later: &Usage) {
        if later.input_tokens != 0 {
            self.input_tokens = later.input_tokens;
        }
        if later.output_tokens != 0 {
            self.output_tokens = later.output_tokens;
        }
        self.reasoning_tokens = later.reasoning_tokens.or(self.reasoning_tokens);
        self.cache_read_tokens = later.cache_read_tokens.or(self.cache_read_tokens);
        self.cache_write_tokens = later.cache_write_tokens.or(self.cache_write_tokens);
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or stop sequence.
    Stop,
    /// Token limit reached.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Output filtered.
    ContentFilter,
    /// Provider-specific reason kept verbatim.
    Other(String),
}

/// A complete (non-streamed) assistant answer: the collected stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Response id.
    pub id: String,
    /// Model that answered.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// Assistant content in stream order.
    pub content: Vec<Part>,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
    /// The stop sequence that ended generation, when the upstream said which one matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: Option<Usage>,
    /// Per-token log probabilities of the answer's text, when the client asked for them and
    /// the upstream gave them: OpenAI-shaped entries (`token`, `logprob`, `bytes`,
    /// `top_logprobs`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logprobs: Vec<Value>,
}

impl ChatResponse {
    /// Concatenated text of the answer.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text(t) = part {
                out.push_str(&t.text);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_become_inline_media_and_back() {
        let src = MediaSource::from_url("data:image/png;base64,AAAA");
        assert_eq!(
            src,
            MediaSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into()
            }
        );
        assert_eq!(src.to_url(), "data:image/png;base64,AAAA");
        let url = MediaSource::from_url("https://x.test/a.png");
        assert_eq!(
            url,
            MediaSource::Url {
                url: "https://x.test/a.png".into()
            }
        );
    }

    #[test]
    fn foreign_content_note_names_other_protocols_blocks_once() {
        let opaque = |kind: &str| {
            Part::Opaque(OpaquePart {
                protocol: "anthropic".into(),
                value: serde_json::json!({"type": kind}),
            })
        };
        let req = ChatRequest {
            messages: vec![
                Message {
                    role: Role::Assistant,
                    content: vec![opaque("server_tool_use"), opaque("web_search_tool_result")],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult(ToolResult {
                        cache_control: None,
                        call_id: "c".into(),
                        name: None,
                        content: vec![opaque("search_result"), opaque("server_tool_use")],
                        is_error: false,
                    })],
                    name: None,
                },
            ],
            ..ChatRequest::default()
        };
        assert_eq!(req.foreign_content_note("anthropic"), None);
        assert_eq!(
            req.foreign_content_note("gemini").as_deref(),
            Some(
                "content blocks the upstream cannot express dropped: server_tool_use, \
                 web_search_tool_result, search_result"
            )
        );
        assert_eq!(ChatRequest::default().foreign_content_note("gemini"), None);
    }

    #[test]
    fn logprobs_asked_in_any_protocol_are_read_and_not_noted_where_they_are_mapped() {
        let ask = |protocol: &str, extra: Value| ChatRequest {
            extra_protocol: Some(protocol.into()),
            extra: extra.as_object().cloned().unwrap_or_default(),
            ..ChatRequest::default()
        };
        let chat = ask(
            "openai_chat",
            serde_json::json!({"logprobs": true, "top_logprobs": 3}),
        );
        assert_eq!(chat.logprobs_requested(), Some(3));
        assert_eq!(chat.foreign_content_note("openai_responses"), None);
        assert_eq!(chat.foreign_content_note("gemini"), None);
        assert!(
            chat.foreign_content_note("anthropic")
                .is_some_and(|n| n.contains("logprobs"))
        );
        let responses = ask(
            "openai_responses",
            serde_json::json!({"include": [LOGPROBS_INCLUDE]}),
        );
        assert_eq!(responses.logprobs_requested(), Some(0));
        let gemini = ask(
            "gemini",
            serde_json::json!({"generationConfig": {"responseLogprobs": true, "logprobs": 2}}),
        );
        assert_eq!(gemini.logprobs_requested(), Some(2));
        assert_eq!(
            ask("openai_chat", serde_json::json!({"logprobs": false})).logprobs_requested(),
            None
        );
    }

    #[test]
    fn document_settings_are_named_for_upstreams_other_than_anthropic() {
        let mut doc = TextPart::new("notes");
        doc.document = Some(
            serde_json::json!({"title": "Notes"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let req = ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![Part::Text(doc)],
                name: None,
            }],
            ..ChatRequest::default()
        };
        assert_eq!(req.foreign_content_note("anthropic"), None);
        let note = req.foreign_content_note("gemini").unwrap_or_default();
        assert!(note.contains("document title"), "{note}");
        assert_eq!(crate::lossy::lossy_field(&note), "citations");
    }

    #[test]
    fn body_patches_for_other_protocols_are_noted() {
        let mut patch = Extra::new();
        patch.insert("generationConfig".into(), serde_json::json!({"topK": 3}));
        let req = ChatRequest {
            body_patches: BTreeMap::from([("gemini".to_owned(), patch)]),
            ..ChatRequest::default()
        };
        assert_eq!(req.foreign_content_note("gemini"), None);
        assert_eq!(
            req.foreign_content_note("openai_chat").as_deref(),
            Some("gemini settings not sent to an upstream speaking openai_chat: generationConfig")
        );
    }

    #[test]
    fn pass_through_fields_of_another_protocol_are_noted() {
        let mut extra = Extra::new();
        extra.insert("logprobs".into(), serde_json::json!(true));
        extra.insert("top_logprobs".into(), serde_json::json!(2));
        extra.insert("extra_body".into(), serde_json::json!({"session_id": "s"}));
        let req = ChatRequest {
            extra,
            extra_protocol: Some("openai_chat".into()),
            ..ChatRequest::default()
        };
        assert_eq!(req.foreign_content_note("openai_chat"), None);
        assert_eq!(
            req.foreign_content_note("anthropic").as_deref(),
            Some(
                "openai_chat fields not sent to an upstream speaking anthropic: logprobs, top_logprobs"
            )
        );
    }

    #[test]
    fn usage_merge_keeps_earlier_fields_when_later_is_silent() {
        let mut u = Usage {
            input_tokens: 10,
            cache_read_tokens: Some(4),
            ..Usage::default()
        };
        u.merge(&Usage {
            output_tokens: 7,
            ..Usage::default()
        });
        assert_eq!(u.input_tokens, 10);
        assert_eq!(u.output_tokens, 7);
        assert_eq!(u.cache_read_tokens, Some(4));
        assert_eq!(u.total(), 17);
    }
}
