//! Anthropic Messages wire -> canonical model (client requests; upstream responses).

use llm_proxy_api::model::{
    ChatRequest, ChatResponse, FinishReason, ImagePart, MediaSource, Message, OpaquePart, Part,
    PromptCache, ReasoningBlock, ReasoningConfig, Role, Sampling, TextPart, ToolCall, ToolChoice,
    ToolDefinition, ToolResult, Usage,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::PROTOCOL;
use super::types::{
    AnthropicRequest, AnthropicResponse, ContentBlock, ImageBlock, ImageSource, InputMessage,
    MessageContent, RedactedThinkingBlock, SystemPrompt, TextBlock, ThinkingBlock, Tool,
    ToolResultBlock, ToolResultContent, ToolUseBlock, WireUsage,
};
use crate::FieldError;
use crate::carried::{Carried, Opened, UNREADABLE_NOTE};
use crate::openai_responses::Sealer;

/// Key in `ChatRequest::extra` holding Anthropic-defined and server tools (which the canonical
/// tool model cannot express), sent back verbatim to Anthropic upstreams.
pub(crate) const EXTRA_TOOLS: &str = "tools";
/// Key in `ChatRequest::extra` holding a `thinking` object of a mode we do not model.
pub(crate) const EXTRA_THINKING: &str = "thinking";
/// Key in `ChatRequest::extra` holding `output_config` (its `effort` is also the canonical
/// effort).
pub(crate) const EXTRA_OUTPUT_CONFIG: &str = "output_config";

/// Converts a client request to the canonical model. Thinking signatures the proxy sealed
/// (other providers' reasoning state, see [`crate::carried`]) are opened with `sealer`; what
/// does not open is dropped and noted in `lossy`.
pub fn request_to_model(
    req: AnthropicRequest,
    sealer: &dyn Sealer,
    lossy: &mut Vec<String>,
) -> Result<ChatRequest, FieldError> {
    let mut extra = req.extra;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.and_then(system_to_model) {
        messages.push(system);
    }
    let mut opener = Opener { sealer, lossy };
    for (i, m) in req.messages.into_iter().enumerate() {
        message_to_model(m, i, &mut opener, &mut messages)?;
    }

    let mut tools = Vec::new();
    let mut kept_tools = Vec::new();
    for (i, t) in req.tools.unwrap_or_default().into_iter().enumerate() {
        if !t.is_custom() {
            kept_tools.push(serde_json::to_value(&t).map_err(|e| {
                FieldError::new(format!("invalid tool: {e}"), format!("tools[{i}]"))
            })?);
            continue;
        }
        tools.push(tool_to_model(t, i)?);
    }
    if !kept_tools.is_empty() {
        extra.insert(EXTRA_TOOLS.to_owned(), Value::Array(kept_tools));
    }

    let (tool_choice, parallel_tool_calls) = match req.tool_choice {
        None => (None, None),
        Some(c) => {
            let choice = match c.kind.as_str() {
                "auto" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => ToolChoice::Function(c.name.ok_or_else(|| {
                    FieldError::new(
                        "tool_choice of type 'tool' needs a 'name'",
                        "tool_choice.name",
                    )
                })?),
                other => {
                    return Err(FieldError::new(
                        format!("unknown tool_choice type '{other}'"),
                        "tool_choice.type",
                    ));
                }
            };
            (
                Some(choice),
                c.disable_parallel_tool_use.map(|disabled| !disabled),
            )
        }
    };

    let reasoning = match req.thinking {
        None => None,
        Some(t) => match t.kind.as_str() {
            "enabled" => {
                let budget = t.budget_tokens.ok_or_else(|| {
                    FieldError::new(
                        "thinking.budget_tokens is required when thinking is enabled",
                        "thinking.budget_tokens",
                    )
                })?;
                Some(ReasoningConfig {
                    budget_tokens: Some(budget),
                    include_thoughts: Some(true),
                    ..ReasoningConfig::default()
                })
            }
            "disabled" => Some(ReasoningConfig {
                disabled: true,
                ..ReasoningConfig::default()
            }),
            kind => {
                let config = ReasoningConfig {
                    budget_tokens: t.budget_tokens,
                    include_thoughts: Some(true),
                    adaptive: kind == "adaptive",
                    ..ReasoningConfig::default()
                };
                let raw = serde_json::to_value(&t)
                    .map_err(|e| FieldError::new(format!("invalid thinking: {e}"), "thinking"))?;
                extra.insert(EXTRA_THINKING.to_owned(), raw);
                Some(config)
            }
        },
    };

    // `output_config.effort` guides how much the model thinks (and writes); it stays in
    // `extra` for Anthropic upstreams and becomes the effort elsewhere.
    let effort = extra
        .get(EXTRA_OUTPUT_CONFIG)
        .and_then(|o| o.get("effort"))
        .and_then(Value::as_str)
        .map(crate::reasoning::canonical_effort);
    let reasoning = match (reasoning, effort) {
        (Some(r), _) if r.disabled => Some(r),
        (r, Some(effort)) => Some(ReasoningConfig {
            effort: Some(effort),
            ..r.unwrap_or_default()
        }),
        (r, None) => r,
    };

    let mut metadata = req.metadata.unwrap_or_default();
    let user = match metadata.remove("user_id") {
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            metadata.insert("user_id".to_owned(), other);
            None
        }
        None => None,
    };

    Ok(ChatRequest {
        cache: PromptCache {
            key: None,
            client_breakpoints: true,
        },
        model: req.model,
        messages,
        stream: req.stream.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls,
        sampling: Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            ..Sampling::default()
        },
        max_tokens: req.max_tokens,
        stop: req.stop_sequences.unwrap_or_default(),
        response_format: None,
        reasoning,
        metadata,
        user,
        body_patches: Default::default(),
        extra_protocol: (!extra.is_empty()).then(|| PROTOCOL.to_owned()),
        extra,
    })
}

fn system_to_model(system: SystemPrompt) -> Option<Message> {
    let content: Vec<Part> = match system {
        SystemPrompt::Text(t) if t.is_empty() => return None,
        SystemPrompt::Text(t) => vec![Part::Text(TextPart::new(t))],
        SystemPrompt::Blocks(blocks) => blocks
            .into_iter()
            .map(|b| {
                Part::Text(TextPart {
                    cache_control: b.cache_control,
                    ..TextPart::new(b.text)
                })
            })
            .collect(),
    };
    (!content.is_empty()).then_some(Message {
        role: Role::System,
        content,
        name: None,
    })
}

fn tool_to_model(t: Tool, i: usize) -> Result<ToolDefinition, FieldError> {
    let parameters = t.input_schema.ok_or_else(|| {
        FieldError::new(
            format!("tool '{}' needs an 'input_schema'", t.name),
            format!("tools[{i}].input_schema"),
        )
    })?;
    Ok(ToolDefinition {
        name: t.name,
        description: t.description,
        parameters,
        strict: t.extra.get("strict").and_then(Value::as_bool),
        cache_control: t.cache_control,
    })
}

/// Appends the canonical messages of one Anthropic message: a user message's `tool_result`
/// blocks become `Role::Tool` messages (in order), followed by the rest of its content. A
/// mid-conversation `system` message stays a system message at its place.
/// Opens the sealed signatures of a client request.
struct Opener<'a> {
    sealer: &'a dyn Sealer,
    lossy: &'a mut Vec<String>,
}

fn message_to_model(
    m: InputMessage,
    i: usize,
    opener: &mut Opener<'_>,
    out: &mut Vec<Message>,
) -> Result<(), FieldError> {
    let role = match m.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        other => {
            return Err(FieldError::new(
                format!(
                    "unknown message role '{other}' (expected 'user', 'assistant' or 'system')"
                ),
                format!("messages[{i}].role"),
            ));
        }
    };
    let blocks = match m.content {
        MessageContent::Text(t) => vec![ContentBlock::Text(TextBlock::new(t))],
        MessageContent::Blocks(b) => b,
    };
    let converted = blocks_to_parts(blocks, Some(i), Some(opener))?;
    if !converted.tool_results.is_empty() && role != Role::User {
        return Err(FieldError::new(
            "tool_result blocks belong in user messages",
            format!("messages[{i}].content"),
        ));
    }
    for result in converted.tool_results {
        out.push(Message {
            role: Role::Tool,
            content: vec![Part::ToolResult(result)],
            name: None,
        });
    }
    if !converted.parts.is_empty() {
        out.push(Message {
            role,
            content: converted.parts,
            name: None,
        });
    }
    Ok(())
}

struct Converted {
    parts: Vec<Part>,
    tool_results: Vec<ToolResult>,
}

/// Converts content blocks. `message` is the request message index; `None` means an upstream
/// response, where blocks we cannot express are skipped instead of rejected. In a request,
/// blocks the model cannot express (server tool blocks, file-backed media, newer block types)
/// are kept as opaque Anthropic content; only malformed known blocks are rejected.
fn blocks_to_parts(
    blocks: Vec<ContentBlock>,
    message: Option<usize>,
    mut opener: Option<&mut Opener<'_>>,
) -> Result<Converted, FieldError> {
    let mut out = Converted {
        parts: Vec::with_capacity(blocks.len()),
        tool_results: Vec::new(),
    };
    // Provider data carried by a sealed thinking signature, for the next tool_use.
    let mut call_data: Option<Value> = None;
    for (j, block) in blocks.into_iter().enumerate() {
        let param = || match message {
            Some(i) => format!("messages[{i}].content[{j}]"),
            None => format!("content[{j}]"),
        };
        match block {
            ContentBlock::Text(mut t) => {
                let citations = match t.extra.remove("citations") {
                    Some(Value::Array(c)) => c,
                    _ => Vec::new(),
                };
                out.parts.push(Part::Text(TextPart {
                    text: t.text,
                    cache_control: t.cache_control,
                    citations,
                    document: None,
                }));
            }
            ContentBlock::Image(img) => match image_to_model(img) {
                Ok(p) => out.parts.push(p),
                Err(img) if message.is_some() => out.parts.push(opaque(&ContentBlock::Image(img))),
                Err(_) => {}
            },
            ContentBlock::Document(doc) => match document_to_model(&doc) {
                Some(p) => out.parts.push(p),
                None if message.is_some() => out.parts.push(opaque(&ContentBlock::Document(doc))),
                None => {}
            },
            ContentBlock::ToolUse(u) => out
                .parts
                .push(Part::ToolCall(tool_use_to_model(u, call_data.take()))),
            ContentBlock::ToolResult(r) => {
                out.tool_results
                    .push(tool_result_to_model(r, message.is_some(), &param)?)
            }
            ContentBlock::Thinking(t) => {
                let (block, data) = thinking_to_model(t, opener.as_deref_mut());
                out.parts.extend(block.map(Part::Reasoning));
                if data.is_some() {
                    call_data = data;
                }
            }
            ContentBlock::RedactedThinking(RedactedThinkingBlock { data }) => {
                out.parts.push(Part::Reasoning(ReasoningBlock {
                    redacted: Some(data),
                    ..ReasoningBlock::default()
                }))
            }
            ContentBlock::Other(v) if message.is_some() => match malformed_block_reason(&v) {
                Some(reason) => return Err(FieldError::new(reason, param())),
                None => out.parts.push(Part::Opaque(OpaquePart {
                    protocol: PROTOCOL.to_owned(),
                    value: v,
                })),
            },
            ContentBlock::Other(_) => {}
        }
    }
    Ok(out)
}

/// A block the model cannot express, kept whole for Anthropic upstreams.
fn opaque(block: &ContentBlock) -> Part {
    Part::Opaque(OpaquePart {
        protocol: PROTOCOL.to_owned(),
        // Serializing our own wire types cannot fail; `Null` would only hide a serde bug.
        value: serde_json::to_value(block).unwrap_or_default(),
    })
}

/// A thinking block as a reasoning block, plus the provider data it carries for the next
/// tool call. In a client request (`opener` given) a signature the proxy sealed holds another
/// provider's state, not an Anthropic signature; one that does not open is dropped.
fn thinking_to_model(
    t: ThinkingBlock,
    opener: Option<&mut Opener<'_>>,
) -> (Option<ReasoningBlock>, Option<Value>) {
    let signature = t.signature.filter(|s| !s.is_empty());
    let opened = match (&signature, opener) {
        (Some(sig), Some(o)) => match Carried::open_text(sig, o.sealer) {
            Opened::Unreadable => {
                note_once(o.lossy, UNREADABLE_NOTE);
                let text = t.thinking;
                return ((!text.is_empty()).then(|| plain_reasoning(text)), None);
            }
            opened => opened,
        },
        _ => Opened::Native,
    };
    match opened {
        Opened::Ours(c) => (c.block(t.thinking), c.call_provider_data),
        _ => (
            Some(ReasoningBlock {
                text: t.thinking,
                signature,
                ..ReasoningBlock::default()
            }),
            None,
        ),
    }
}

fn plain_reasoning(text: String) -> ReasoningBlock {
    ReasoningBlock {
        text,
        ..ReasoningBlock::default()
    }
}

fn note_once(lossy: &mut Vec<String>, note: &str) {
    if !lossy.iter().any(|n| n == note) {
        lossy.push(note.to_owned());
    }
}

/// An image by URL or inline data; other sources (`file`) give the block back.
fn image_to_model(img: ImageBlock) -> Result<Part, ImageBlock> {
    let source = match img.source {
        ImageSource::Base64 { media_type, data } => MediaSource::Base64 { media_type, data },
        ImageSource::Url { url } => MediaSource::Url { url },
        ImageSource::Other(_) => return Err(img),
    };
    Ok(Part::Image(ImagePart {
        cache_control: img.cache_control,
        source,
        detail: None,
        document: None,
    }))
}

/// Plain-text documents become text; base64 documents (PDF) become inline media, which
/// `from_model` turns back into a document block. Other sources (`url`, `file`, `content`)
/// are `None`.
fn document_to_model(doc: &Map<String, Value>) -> Option<Part> {
    let source = doc.get("source");
    let field = |name: &str| source.and_then(|s| s.get(name)).and_then(Value::as_str);
    let cache_control = doc.get("cache_control").cloned();
    match (field("type"), field("media_type"), field("data")) {
        (Some("text"), _, Some(data)) => Some(Part::Text(TextPart {
            cache_control,
            document: Some(document_settings(doc)),
            ..TextPart::new(data)
        })),
        (Some("base64"), Some(media_type), Some(data)) => Some(Part::Image(ImagePart {
            cache_control,
            source: MediaSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            },
            detail: None,
            document: Some(document_settings(doc)),
        })),
        _ => None,
    }
}

/// A document block's own fields besides `type`, `source` and `cache_control` (`title`,
/// `context`, `citations`, ...), kept for Anthropic upstreams.
fn document_settings(doc: &Map<String, Value>) -> Map<String, Value> {
    doc.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "type" | "source" | "cache_control"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn tool_use_to_model(u: ToolUseBlock, provider_data: Option<Value>) -> ToolCall {
    let arguments = u.input.into_arguments();
    ToolCall {
        cache_control: u.cache_control,
        id: u.id,
        name: u.name,
        arguments,
        provider_data,
    }
}

fn tool_result_to_model(
    r: ToolResultBlock,
    strict: bool,
    param: &dyn Fn() -> String,
) -> Result<ToolResult, FieldError> {
    let content = match r.content {
        None => Vec::new(),
        Some(ToolResultContent::Text(t)) if t.is_empty() => Vec::new(),
        Some(ToolResultContent::Text(t)) => vec![Part::Text(TextPart::new(t))],
        Some(ToolResultContent::Blocks(blocks)) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for block in blocks {
                let part = match block {
                    ContentBlock::Text(t) => Part::Text(TextPart {
                        cache_control: t.cache_control,
                        ..TextPart::new(t.text)
                    }),
                    ContentBlock::Image(img) => match image_to_model(img) {
                        Ok(p) => p,
                        Err(img) => opaque(&ContentBlock::Image(img)),
                    },
                    ContentBlock::Document(doc) => match document_to_model(&doc) {
                        Some(p) => p,
                        None => opaque(&ContentBlock::Document(doc)),
                    },
                    ContentBlock::Other(v) => match malformed_block_reason(&v) {
                        Some(reason) if strict => {
                            return Err(FieldError::new(reason, format!("{}.content", param())));
                        }
                        Some(_) => continue,
                        None => Part::Opaque(OpaquePart {
                            protocol: PROTOCOL.to_owned(),
                            value: v,
                        }),
                    },
                    // Blocks Anthropic itself only allows in messages (`tool_use`, thinking)
                    // travel as they came; only an Anthropic upstream can judge them.
                    other => opaque(&other),
                };
                parts.push(part);
            }
            parts
        }
    };
    Ok(ToolResult {
        cache_control: r.cache_control,
        call_id: r.tool_use_id,
        name: None,
        content,
        is_error: r.is_error.unwrap_or(false),
    })
}

/// Why a block kept as raw JSON is malformed: a block without a `type`, or a type we model
/// whose fields do not parse (serde's message). `None` for block types we do not model, which
/// are kept opaque.
fn malformed_block_reason(v: &Value) -> Option<String> {
    fn probe<T: DeserializeOwned>(kind: &str, v: &Value) -> Option<String> {
        Some(match T::deserialize(v) {
            Err(e) => format!("invalid '{kind}' block: {e}"),
            Ok(_) => format!("invalid '{kind}' block"),
        })
    }
    match v.get("type").and_then(Value::as_str) {
        None => Some("content block without a 'type'".to_owned()),
        Some(kind @ "text") => probe::<TextBlock>(kind, v),
        Some(kind @ "image") => probe::<ImageBlock>(kind, v),
        Some(kind @ "tool_use") => probe::<ToolUseBlock>(kind, v),
        Some(kind @ "tool_result") => probe::<ToolResultBlock>(kind, v),
        Some(kind @ "thinking") => probe::<ThinkingBlock>(kind, v),
        Some(kind @ "redacted_thinking") => probe::<RedactedThinkingBlock>(kind, v),
        Some(_) => None,
    }
}

/// Finish reason from an Anthropic `stop_reason`.
pub fn stop_reason_to_model(s: &str) -> FinishReason {
    match s {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Canonical usage: input tokens include cache reads and writes (Anthropic counts them apart).
pub fn usage_to_model(u: &WireUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_creation_input_tokens.unwrap_or(0);
    Usage {
        input_tokens: u.input_tokens.saturating_add(read).saturating_add(write),
        output_tokens: u.output_tokens,
        reasoning_tokens: None,
        cache_read_tokens: u.cache_read_input_tokens,
        cache_write_tokens: u.cache_creation_input_tokens,
    }
}

/// Converts an upstream non-streamed response. Blocks the model cannot express (server tool
/// blocks) are skipped.
pub fn response_to_model(resp: AnthropicResponse, fallback_model: &str) -> ChatResponse {
    let content = match blocks_to_parts(resp.content, None, None) {
        Ok(c) => c.parts,
        // Unreachable: lenient conversion skips instead of failing.
        Err(_) => Vec::new(),
    };
    ChatResponse {
        id: if resp.id.is_empty() {
            llm_proxy_api::ids::response_id()
        } else {
            resp.id
        },
        model: if resp.model.is_empty() {
            fallback_model.to_owned()
        } else {
            resp.model
        },
        created: llm_proxy_api::ids::unix_now(),
        content,
        stop_sequence: resp
            .stop_sequence
            .filter(|_| resp.stop_reason.as_deref() == Some("stop_sequence")),
        finish_reason: resp.stop_reason.as_deref().map(stop_reason_to_model),
        usage: Some(usage_to_model(&resp.usage)),
        logprobs: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai_responses::opaque::TestSealer;
    use serde_json::json;

    fn parse(v: Value) -> AnthropicRequest {
        serde_json::from_value(v).unwrap()
    }

    fn to_model(req: AnthropicRequest) -> Result<ChatRequest, FieldError> {
        request_to_model(req, &TestSealer(0), &mut Vec::new())
    }

    fn convert(v: Value) -> ChatRequest {
        to_model(parse(v)).unwrap()
    }

    #[test]
    fn tool_inputs_travel_as_the_client_wrote_them() {
        // From the client's bytes (a `Value` would sort the keys and drop the spacing).
        let body = br#"{"model": "m", "max_tokens": 9, "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"zeta": [1, 2], "alpha": {"b": "\u00e9", "a": null}}},
                {"type": "tool_use", "id": "toolu_2", "name": "g", "input": null},
                {"type": "tool_use", "id": "toolu_3", "name": "h"},
                {"id": "toolu_4", "name": "k", "type": "tool_use", "input": {"y": 1, "x": 2}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r1"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "r2"},
                {"type": "tool_result", "tool_use_id": "toolu_3", "content": "r3"},
                {"type": "tool_result", "tool_use_id": "toolu_4", "content": "r4"}
            ]}
        ]}"#;
        let m = to_model(serde_json::from_slice(body).unwrap()).unwrap();
        let arguments: Vec<&str> = m.messages[1]
            .tool_calls()
            .map(|c| c.arguments.as_str())
            .collect();
        // Key order, spacing and escapes as written; `null` and no input are `{}`; a block
        // whose `type` is not its first key (read from a buffered tree) is compact.
        assert_eq!(
            arguments,
            [
                r#"{"zeta": [1, 2], "alpha": {"b": "\u00e9", "a": null}}"#,
                "{}",
                "{}",
                r#"{"x":2,"y":1}"#,
            ]
        );
        // On to an Anthropic upstream, the same text is the `input`.
        let mut lossy = Vec::new();
        let wire = crate::anthropic::from_model::request_from_model(&m, "m", &mut lossy);
        assert!(lossy.is_empty(), "{lossy:?}");
        let bytes = crate::anthropic::write::request_bytes(&wire);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(
            text.contains(r#""input":{"zeta": [1, 2], "alpha": {"b": "\u00e9", "a": null}}"#),
            "{text}"
        );
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        let inputs: Vec<&Value> = sent["messages"][1]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| &b["input"])
            .collect();
        assert_eq!(
            inputs,
            [
                &json!({"zeta": [1, 2], "alpha": {"b": "é", "a": null}}),
                &json!({}),
                &json!({}),
                &json!({"x": 2, "y": 1}),
            ]
        );
    }

    #[test]
    fn tool_call_arguments_that_are_not_one_object_are_sent_as_an_empty_input() {
        for bad in ["[1]", "\"s\"", "{\"a\":1} {}", "{\"a\":", "7"] {
            let mut m = convert(json!({"model": "m", "max_tokens": 9, "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}
                ]}
            ]}));
            let Part::ToolCall(c) = &mut m.messages[1].content[0] else {
                panic!("not a call: {:?}", m.messages[1].content);
            };
            c.arguments = bad.to_owned();
            let mut lossy = Vec::new();
            let wire = crate::anthropic::from_model::request_from_model(&m, "m", &mut lossy);
            assert_eq!(lossy.len(), 1, "{bad}: {lossy:?}");
            let sent: Value =
                serde_json::from_slice(&crate::anthropic::write::request_bytes(&wire)).unwrap();
            assert_eq!(
                sent["messages"][1]["content"][0]["input"],
                json!({}),
                "{bad}"
            );
        }
        // Spacing around an object is not part of it.
        let input = crate::anthropic::types::ToolInput::object(" \n{\"a\": 1}\t").unwrap();
        assert_eq!(input.get(), r#"{"a": 1}"#);
    }

    #[test]
    fn request_maps_every_field_group() {
        let m = convert(json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 2048,
            "stream": true,
            "system": "be brief",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.3, "top_p": 0.9, "top_k": 40,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "get", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "service_tier": "auto"
        }));
        assert!(m.stream);
        assert_eq!(m.max_tokens, Some(2048));
        assert_eq!(m.messages[0], Message::text(Role::System, "be brief"));
        assert_eq!(m.messages[1], Message::text(Role::User, "hi"));
        assert_eq!(m.sampling.top_k, Some(40));
        assert_eq!(m.stop, vec!["END".to_owned()]);
        assert_eq!(m.user.as_deref(), Some("u-1"));
        assert!(m.metadata.is_empty());
        assert_eq!(m.tools[0].cache_control, Some(json!({"type": "ephemeral"})));
        assert_eq!(m.tool_choice, Some(ToolChoice::Required));
        assert_eq!(m.parallel_tool_calls, Some(false));
        let r = m.reasoning.as_ref().unwrap();
        assert_eq!((r.budget_tokens, r.disabled), (Some(1024), false));
        assert_eq!(
            m.extra_for(PROTOCOL).unwrap().get("service_tier"),
            Some(&json!("auto"))
        );
    }

    #[test]
    fn tool_results_become_tool_messages_before_the_remaining_user_content() {
        let m = convert(json!({
            "model": "m",
            "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "a", "content": "one"},
                {"type": "tool_result", "tool_use_id": "b", "is_error": true, "cache_control": {"type": "ephemeral"},
                 "content": [{"type": "text", "text": "boom"}, {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}}]},
                {"type": "text", "text": "go on"}
            ]}]
        }));
        assert_eq!(m.messages.len(), 3);
        let results: Vec<&ToolResult> = m.messages[..2]
            .iter()
            .map(|msg| {
                assert_eq!(msg.role, Role::Tool);
                match &msg.content[..] {
                    [Part::ToolResult(r)] => r,
                    other => panic!("expected one tool result, got {other:?}"),
                }
            })
            .collect();
        assert_eq!(
            (results[0].call_id.as_str(), results[0].is_error),
            ("a", false)
        );
        assert_eq!(
            (results[1].call_id.as_str(), results[1].is_error),
            ("b", true)
        );
        assert!(matches!(&results[1].content[1], Part::Image(_)));
        assert_eq!(results[1].cache_control, Some(json!({"type": "ephemeral"})));
        assert!(
            matches!(&results[1].content[0], Part::Text(t) if t.cache_control.is_none()),
            "the result's cache breakpoint stays on the result"
        );
        assert_eq!(m.messages[2], Message::text(Role::User, "go on"));
    }

    #[test]
    fn sealed_signatures_are_provider_data_not_signatures() {
        let sealer = TestSealer(5);
        let data = json!({"google": {"thought_signature": "abc"}});
        let thought = Carried {
            provider_data: Some(data.clone()),
            ..Carried::default()
        }
        .seal_text(&sealer)
        .unwrap();
        let call = Carried::of_call(&data, None).seal_text(&sealer).unwrap();
        let body = json!({
            "model": "m",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "real", "signature": "EqQBCkYIBxgC"},
                {"type": "thinking", "thinking": "gemini thought", "signature": thought},
                {"type": "thinking", "thinking": "thinking before the call", "signature": call},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "t2", "name": "g", "input": {}}
            ]}]
        });
        let mut lossy = Vec::new();
        let m = request_to_model(parse(body.clone()), &sealer, &mut lossy).unwrap();
        assert!(lossy.is_empty(), "{lossy:?}");
        let parts = &m.messages[1].content;
        assert_eq!(parts.len(), 6, "{parts:?}");
        assert!(
            matches!(&parts[0], Part::Reasoning(b) if b.signature.as_deref() == Some("EqQBCkYIBxgC") && b.provider_data.is_none())
        );
        assert!(
            matches!(&parts[1], Part::Reasoning(b) if b.signature.is_none() && b.provider_data == Some(data.clone()) && b.text == "gemini thought")
        );
        assert!(
            matches!(&parts[2], Part::Reasoning(b) if b.signature.is_none() && b.provider_data.is_none() && b.text == "thinking before the call")
        );
        assert!(
            matches!(&parts[4], Part::ToolCall(c) if c.provider_data == Some(data.clone()) && c.arguments == "{\"x\":1}")
        );
        assert!(matches!(&parts[5], Part::ToolCall(c) if c.provider_data.is_none()));

        // Another proxy's key: the state is dropped (never sent on as a signature), the text
        // stays.
        let mut lossy = Vec::new();
        let m = request_to_model(parse(body), &TestSealer(6), &mut lossy).unwrap();
        assert_eq!(lossy, vec![UNREADABLE_NOTE.to_owned()]);
        let parts = &m.messages[1].content;
        assert!(parts.iter().all(|p| match p {
            Part::Reasoning(b) =>
                b.provider_data.is_none() && b.signature.as_deref() != Some(call.as_str()),
            Part::ToolCall(c) => c.provider_data.is_none(),
            _ => true,
        }));
    }

    #[test]
    fn unsealed_legacy_signatures_are_not_trusted() {
        let mut lossy = Vec::new();
        let m = request_to_model(
            parse(json!({
                "model": "m",
                "messages": [{"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "", "signature": r#"llmproxy:{"google":{"thought_signature":"forged"}}"#},
                    {"type": "text", "text": "hi"}
                ]}]
            })),
            &TestSealer(1),
            &mut lossy,
        )
        .unwrap();
        assert_eq!(lossy, vec![UNREADABLE_NOTE.to_owned()]);
        assert_eq!(m.messages[0].content.len(), 1, "{:?}", m.messages[0]);
    }

    #[test]
    fn server_tools_and_unknown_thinking_modes_are_kept_in_extra() {
        let m = convert(json!({
            "model": "m",
            "messages": [],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
            "thinking": {"type": "adaptive"}
        }));
        assert!(m.tools.is_empty());
        let extra = m.extra_for(PROTOCOL).unwrap();
        assert_eq!(
            extra[EXTRA_TOOLS],
            json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}])
        );
        assert_eq!(extra[EXTRA_THINKING], json!({"type": "adaptive"}));
        let disabled =
            convert(json!({"model": "m", "messages": [], "thinking": {"type": "disabled"}}));
        assert!(disabled.reasoning.unwrap().disabled);
    }

    #[test]
    fn documents_become_text_or_inline_media() {
        let m = convert(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
            ]}]}),
        );
        assert!(matches!(&m.messages[0].content[0], Part::Text(t) if t.text == "notes"));
        assert!(
            matches!(&m.messages[0].content[1], Part::Image(ImagePart { source: MediaSource::Base64 { media_type, .. }, .. }) if media_type == "application/pdf")
        );
    }

    fn opaque_kinds(parts: &[Part]) -> Vec<&str> {
        parts
            .iter()
            .filter_map(|p| match p {
                Part::Opaque(o) => {
                    assert_eq!(o.protocol, PROTOCOL);
                    Some(o.kind())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn system_messages_inside_the_conversation_stay_in_place() {
        let m = convert(json!({
            "model": "m",
            "system": [{"type": "text", "text": "top"}],
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "system", "content": "mid"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "r"},
                {"role": "system", "content": [
                    {"type": "text", "text": "trailing", "cache_control": {"type": "ephemeral"}}
                ]}
            ]
        }));
        let roles: Vec<Role> = m.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::System,
                Role::Assistant,
                Role::User,
                Role::System
            ]
        );
        assert_eq!(m.messages[2], Message::text(Role::System, "mid"));
        assert!(
            matches!(&m.messages[5].content[..], [Part::Text(t)] if t.text == "trailing" && t.cache_control.is_some())
        );
    }

    #[test]
    fn blocks_the_model_cannot_express_are_kept_opaque_in_place() {
        let m = convert(json!({"model": "m", "messages": [
            {"role": "user", "content": "search"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "looking"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
                    {"type": "web_search_result", "url": "https://x.test", "title": "t", "encrypted_content": "e"}
                ]},
                {"type": "text", "text": "found"}
            ]},
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}, "cache_control": {"type": "ephemeral"}},
                {"type": "container_upload", "file_id": "f"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "r"},
                    {"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": "c"}]},
                    {"type": "tool_reference", "tool_name": "Read"}
                ]}
            ]}
        ]}));
        let assistant = &m.messages[1].content;
        assert_eq!(
            opaque_kinds(assistant),
            ["server_tool_use", "web_search_tool_result"]
        );
        assert!(matches!(&assistant[0], Part::Text(t) if t.text == "looking"));
        assert!(matches!(&assistant[3], Part::Text(t) if t.text == "found"));
        let Part::Opaque(doc) = &m.messages[3].content[1] else {
            panic!("{:?}", m.messages[3]);
        };
        assert_eq!(
            doc.value,
            json!({"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}, "cache_control": {"type": "ephemeral"}})
        );
        assert_eq!(
            opaque_kinds(&m.messages[3].content),
            ["image", "document", "container_upload"]
        );
        let Part::ToolResult(r) = &m.messages[2].content[0] else {
            panic!("{:?}", m.messages[2]);
        };
        assert_eq!(
            opaque_kinds(&r.content),
            ["search_result", "tool_reference"]
        );
    }

    #[test]
    fn thinking_modes_enabled_adaptive_disabled() {
        let enabled = convert(json!({"model": "m", "messages": [],
            "thinking": {"type": "enabled", "budget_tokens": 2048}}));
        assert_eq!(
            enabled.reasoning.as_ref().unwrap().budget_tokens,
            Some(2048)
        );
        assert!(enabled.extra_for(PROTOCOL).is_none());
        let adaptive = convert(json!({"model": "m", "messages": [],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}));
        let r = adaptive.reasoning.as_ref().unwrap();
        assert_eq!((r.disabled, r.include_thoughts), (false, Some(true)));
        let extra = adaptive.extra_for(PROTOCOL).unwrap();
        assert_eq!(extra[EXTRA_THINKING], json!({"type": "adaptive"}));
        assert_eq!(extra["output_config"], json!({"effort": "high"}));
        assert!(extra.contains_key("context_management"));
        let disabled =
            convert(json!({"model": "m", "messages": [], "thinking": {"type": "disabled"}}));
        assert!(disabled.reasoning.unwrap().disabled);
    }

    #[test]
    fn malformed_blocks_and_bad_roles_name_the_param() {
        // A block of a known type with bad fields, `type` first (as clients write it), is
        // refused while the body is read. (Raw text: `json!` would sort `type` last.)
        let body = |text: &str| crate::parse_body::<AnthropicRequest>(text.as_bytes());
        let err = body(
            r#"{"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "ok"}, {"type": "image"}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[1]"));
        assert!(
            err.message
                .contains("invalid 'image' block: missing field `source`"),
            "{}",
            err.message
        );
        let err = body(
            r#"{"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": 5}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[0].text"));
        assert!(
            err.message
                .contains("invalid 'text' block: invalid type: integer `5`"),
            "{}",
            err.message
        );
        // The same blocks with `type` not first take the buffered path: kept whole, refused
        // by the conversion.
        let err = to_model(parse(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"text": 5, "type": "text"}
            ]}]}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content[0]"));
        assert!(
            err.message.starts_with("invalid 'text' block"),
            "{}",
            err.message
        );
        let err = to_model(parse(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
        ))
        .unwrap_err();
        assert!(err.message.contains("without a 'type'"), "{}", err.message);
        let err = to_model(parse(
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        let err = to_model(parse(
            json!({"model": "m", "messages": [], "tool_choice": {"type": "tool"}}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tool_choice.name"));
        let err = to_model(parse(
            json!({"model": "m", "messages": [], "thinking": {"type": "enabled"}}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("thinking.budget_tokens"));
        let err = to_model(parse(
            json!({"model": "m", "messages": [], "tools": [{"name": "f"}]}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools[0].input_schema"));
    }

    #[test]
    fn response_usage_counts_cache_tokens_as_input_and_skips_server_blocks() {
        let resp: AnthropicResponse = serde_json::from_value(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "text", "text": "hi"}
            ],
            "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}
        }))
        .unwrap();
        let r = response_to_model(resp, "fallback");
        assert_eq!(r.joined_text(), "hi");
        assert_eq!(r.content.len(), 1);
        assert_eq!(r.finish_reason, Some(FinishReason::Length));
        let u = r.usage.unwrap();
        assert_eq!(u.input_tokens, 1110);
        assert_eq!(
            (u.cache_read_tokens, u.cache_write_tokens),
            (Some(1000), Some(100))
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(stop_reason_to_model("end_turn"), FinishReason::Stop);
        assert_eq!(stop_reason_to_model("stop_sequence"), FinishReason::Stop);
        assert_eq!(stop_reason_to_model("tool_use"), FinishReason::ToolCalls);
        assert_eq!(stop_reason_to_model("refusal"), FinishReason::ContentFilter);
        assert_eq!(
            stop_reason_to_model("pause_turn"),
            FinishReason::Other("pause_turn".into())
        );
    }

    #[test]
    fn citations_and_document_settings_are_carried() {
        let body = json!({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                 "title": "Notes", "context": "mine", "citations": {"enabled": true}},
                {"type": "text", "text": "summarise"}
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "a",
                "citations": [{"type": "char_location", "cited_text": "x"}]}]}
        ]});
        let mut lossy = Vec::new();
        let m = request_to_model(parse(body), &TestSealer(1), &mut lossy).unwrap();
        assert!(lossy.is_empty(), "{lossy:?}");
        match &m.messages[0].content[0] {
            Part::Text(t) => {
                assert_eq!(t.text, "notes");
                assert_eq!(
                    t.document.clone().map(Value::Object),
                    Some(
                        json!({"title": "Notes", "context": "mine", "citations": {"enabled": true}})
                    )
                );
            }
            other => panic!("expected the document's text, got {other:?}"),
        }
        match &m.messages[1].content[0] {
            Part::Text(t) => assert_eq!(
                t.citations,
                vec![json!({"type": "char_location", "cited_text": "x"})]
            ),
            other => panic!("expected cited text, got {other:?}"),
        }
        // Back to an Anthropic upstream: the same blocks.
        let mut lossy = Vec::new();
        let wire = crate::anthropic::request_from_model(&m, "c", &mut lossy);
        let v = serde_json::to_value(wire).unwrap();
        assert!(lossy.is_empty(), "{lossy:?}");
        assert_eq!(
            v["messages"][0]["content"][0],
            json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
                "title": "Notes", "context": "mine", "citations": {"enabled": true}})
        );
        assert_eq!(
            v["messages"][1]["content"][0],
            json!({"type": "text", "text": "a",
                "citations": [{"type": "char_location", "cited_text": "x"}]})
        );
    }
}
