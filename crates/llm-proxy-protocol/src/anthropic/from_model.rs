//! Canonical model -> Anthropic Messages wire (upstream requests; client responses).
//!
//! Anthropic is strict about history shape: roles alternate starting with `user`, tool results
//! live in user messages ahead of any text, thinking blocks must be its own signed ones, and a
//! `system` message inside the conversation must follow a user turn and precede an assistant
//! turn (or end the conversation). The request encoder reshapes the conversation to fit and
//! records every loss in `lossy`.

use llm_proxy_api::model::{
    ChatRequest, ChatResponse, FinishReason, ImagePart, MediaSource, Message, OpaquePart, Part,
    ReasoningBlock, ResponseFormat, Role, ToolChoice as ModelToolChoice, ToolResult, Usage,
};
use serde_json::{Map, Value};

use super::PROTOCOL;
use super::to_model::{EXTRA_OUTPUT_CONFIG, EXTRA_THINKING, EXTRA_TOOLS};
use super::types::{
    AnthropicRequest, AnthropicResponse, ContentBlock, ImageBlock, ImageSource, InputMessage,
    MessageContent, RedactedThinkingBlock, SystemBlock, SystemPrompt, TextBlock, Thinking,
    ThinkingBlock, Tool, ToolChoice, ToolInput, ToolResultBlock, ToolResultContent, ToolUseBlock,
    WireUsage,
};
use crate::carried::Carried;
use crate::openai_responses::Sealer;

/// `max_tokens` when the client gave none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Smallest thinking budget Anthropic accepts.
pub const MIN_THINKING_BUDGET: u64 = 1024;
/// Text of the user turn inserted when a conversation starts with the assistant.
pub const CONTINUED_PLACEHOLDER: &str = "(continued)";

/// Request fields that are struct fields; `extra` must not repeat them.
const NAMED_FIELDS: [&str; 13] = [
    "model",
    "messages",
    "system",
    "max_tokens",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
];

/// Records a lossy conversion once.
fn note(lossy: &mut Vec<String>, message: &str) {
    if !lossy.iter().any(|m| m == message) {
        lossy.push(message.to_owned());
    }
}

/// Thinking budget for an effort level; `None` means no thinking.
pub fn budget_for_effort(effort: &str) -> Option<u64> {
    match effort {
        "none" | "disabled" => None,
        "minimal" => Some(MIN_THINKING_BUDGET),
        "low" => Some(2048),
        "high" => Some(24_576),
        "xhigh" | "max" => Some(32_768),
        _ => Some(8192), // "medium" and anything unknown
    }
}

/// Builds the upstream request body for `model`. Whatever Anthropic cannot take is dropped and
/// described in `lossy`.
pub fn request_from_model(
    req: &ChatRequest,
    model: &str,
    lossy: &mut Vec<String>,
) -> AnthropicRequest {
    let passthrough = req.extra_for(PROTOCOL);
    lossy.extend(req.foreign_content_note(PROTOCOL));
    let (system, mut messages) = conversation_from_model(&req.messages, lossy);

    let mut tools: Vec<Tool> = req
        .tools
        .iter()
        .map(|t| {
            if t.strict == Some(true) {
                note(
                    lossy,
                    "tool strict mode is not supported by Anthropic; dropped",
                );
            }
            Tool {
                kind: None,
                name: t.name.clone(),
                description: t.description.clone(),
                input_schema: Some(t.parameters.clone()),
                cache_control: t.cache_control.clone(),
                extra: Map::new(),
            }
        })
        .collect();
    if let Some(Value::Array(kept)) = passthrough.and_then(|e| e.get(EXTRA_TOOLS)) {
        tools.extend(
            kept.iter()
                .filter_map(|t| serde_json::from_value::<Tool>(t.clone()).ok()),
        );
    }
    let tool_choice = tool_choice_from_model(req, !tools.is_empty());

    let mut max_tokens = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut thinking = thinking_from_model(req, passthrough, lossy).or_else(|| {
        passthrough
            .and_then(|e| e.get(EXTRA_THINKING))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
    });
    let (mut temperature, mut top_p, mut top_k) = (
        req.sampling.temperature,
        req.sampling.top_p,
        req.sampling.top_k,
    );
    if let Some(budget) = thinking
        .as_ref()
        .filter(|t| t.kind == "enabled")
        .and_then(|t| t.budget_tokens)
    {
        if let Some(reason) = thinking_conflict(tool_choice.as_ref(), &messages) {
            note(lossy, reason);
            thinking = None;
        } else {
            if max_tokens <= budget {
                if req.max_tokens.is_some() {
                    note(lossy, "max_tokens raised above the thinking budget");
                }
                max_tokens = budget + DEFAULT_MAX_TOKENS;
            }
            if temperature.is_some_and(|t| t != 1.0) {
                note(
                    lossy,
                    "temperature dropped: Anthropic requires the default with thinking",
                );
                temperature = None;
            }
            if top_p.is_some_and(|p| p < 0.95) {
                note(
                    lossy,
                    "top_p dropped: Anthropic requires at least 0.95 with thinking",
                );
                top_p = None;
            }
            if top_k.take().is_some() {
                note(
                    lossy,
                    "top_k dropped: Anthropic does not allow it with thinking",
                );
            }
        }
    }

    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        note(
            lossy,
            "response_format is not supported by Anthropic; dropped",
        );
    }
    let s = &req.sampling;
    if s.presence_penalty.is_some() || s.frequency_penalty.is_some() {
        note(
            lossy,
            "presence/frequency penalties are not supported by Anthropic; dropped",
        );
    }
    if s.seed.is_some() {
        note(lossy, "seed is not supported by Anthropic; dropped");
    }
    if s.n.is_some_and(|n| n > 1) {
        note(
            lossy,
            "n > 1 is not supported by Anthropic; one answer is returned",
        );
    }

    if let Some(first) = messages.first()
        && first.role == "assistant"
    {
        messages.insert(
            0,
            InputMessage {
                role: "user".to_owned(),
                content: MessageContent::Text(CONTINUED_PLACEHOLDER.to_owned()),
            },
        );
        note(
            lossy,
            "conversation started with the assistant; a placeholder user turn was added",
        );
    }

    let mut extra = passthrough.cloned().unwrap_or_default();
    for key in NAMED_FIELDS {
        extra.remove(key);
    }
    output_config_from_model(req, &mut extra);
    AnthropicRequest {
        model: model.to_owned(),
        messages,
        system,
        max_tokens: Some(max_tokens),
        metadata: metadata_from_model(req, lossy),
        stop_sequences: (!req.stop.is_empty()).then(|| req.stop.clone()),
        stream: Some(req.stream),
        temperature,
        top_p,
        top_k,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        thinking,
        extra,
    }
}

fn tool_choice_from_model(req: &ChatRequest, has_tools: bool) -> Option<ToolChoice> {
    if !has_tools {
        return None;
    }
    let disable_parallel = (req.parallel_tool_calls == Some(false)).then_some(true);
    let (kind, name) = match &req.tool_choice {
        None if disable_parallel.is_none() => return None,
        None | Some(ModelToolChoice::Auto) => ("auto", None),
        Some(ModelToolChoice::Required) => ("any", None),
        Some(ModelToolChoice::None) => ("none", None),
        Some(ModelToolChoice::Function(n)) => ("tool", Some(n.clone())),
    };
    Some(ToolChoice {
        kind: kind.to_owned(),
        name,
        // Anthropic rejects the flag with `none`.
        disable_parallel_tool_use: if kind == "none" {
            None
        } else {
            disable_parallel
        },
    })
}

/// `thinking` for the canonical reasoning; `None` leaves the client's own `thinking` (an
/// Anthropic client's adaptive mode) in place. An effort the client wrote in `output_config`
/// stays there (see [`output_config_from_model`]) rather than becoming a budget.
fn thinking_from_model(
    req: &ChatRequest,
    passthrough: Option<&Map<String, Value>>,
    lossy: &mut Vec<String>,
) -> Option<Thinking> {
    let r = req.reasoning.as_ref()?;
    if r.disabled {
        return Some(Thinking::disabled());
    }
    let client_thinking = passthrough
        .and_then(|e| e.get(EXTRA_THINKING))
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str);
    let effort_in_output_config = passthrough
        .and_then(|e| e.get(EXTRA_OUTPUT_CONFIG))
        .is_some_and(|o| o.get("effort").is_some());
    let budget = match (r.budget_tokens, r.effort.as_deref()) {
        (Some(b), _) => Some(b),
        _ if r.adaptive && client_thinking == Some("adaptive") => return None,
        (None, Some(_)) if effort_in_output_config => return None,
        (None, Some(effort)) => match budget_for_effort(effort) {
            Some(b) => Some(b),
            None => return Some(Thinking::disabled()),
        },
        // Another protocol's dynamic thinking (Gemini's budget -1): a medium budget, which
        // every thinking Claude model takes.
        (None, None) if r.adaptive => budget_for_effort("medium"),
        (None, None) => None,
    }?;
    if budget == 0 {
        return Some(Thinking::disabled());
    }
    if budget < MIN_THINKING_BUDGET {
        note(
            lossy,
            "thinking budget raised to Anthropic's minimum of 1024 tokens",
        );
    }
    Some(Thinking::enabled(budget.max(MIN_THINKING_BUDGET)))
}

/// A client's `output_config.effort` follows the canonical effort when something (a session
/// override) changed it; Anthropic's levels are `low`, `medium`, `high` and `max`.
fn output_config_from_model(req: &ChatRequest, extra: &mut Map<String, Value>) {
    let Some(effort) = req.reasoning.as_ref().and_then(|r| r.effort.as_deref()) else {
        return;
    };
    let Some(Value::Object(config)) = extra.get_mut(EXTRA_OUTPUT_CONFIG) else {
        return;
    };
    let Some(written) = config.get("effort").and_then(Value::as_str) else {
        return;
    };
    if crate::reasoning::canonical_effort(written) != effort {
        let level = match effort {
            "none" | "minimal" | "low" => "low",
            "high" => "high",
            "xhigh" => "max",
            _ => "medium",
        };
        config.insert("effort".to_owned(), Value::from(level));
    }
}

/// Why thinking cannot be enabled for this request, if it cannot.
fn thinking_conflict(
    tool_choice: Option<&ToolChoice>,
    messages: &[InputMessage],
) -> Option<&'static str> {
    if tool_choice.is_some_and(|c| c.kind == "any" || c.kind == "tool") {
        return Some("thinking disabled: Anthropic does not allow it with a forced tool choice");
    }
    // In a tool loop the last assistant turn must open with its (signed) thinking block.
    let last_assistant = messages.iter().rev().find(|m| m.role == "assistant")?;
    let MessageContent::Blocks(blocks) = &last_assistant.content else {
        return None;
    };
    let has_tool_use = blocks.iter().any(|b| matches!(b, ContentBlock::ToolUse(_)));
    let starts_with_thinking = matches!(
        blocks.first(),
        Some(ContentBlock::Thinking(_) | ContentBlock::RedactedThinking(_))
    );
    (has_tool_use && !starts_with_thinking).then_some(
        "thinking disabled: the last assistant turn has tool calls without signed thinking",
    )
}

fn metadata_from_model(req: &ChatRequest, lossy: &mut Vec<String>) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let user = req.user.clone().or_else(|| {
        req.metadata
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if let Some(user) = user {
        out.insert("user_id".to_owned(), Value::String(user));
    }
    if req.metadata.keys().any(|k| k != "user_id") {
        note(
            lossy,
            "metadata other than user_id is not supported by Anthropic; dropped",
        );
    }
    (!out.is_empty()).then_some(out)
}

type Turn = (&'static str, Vec<ContentBlock>);

/// Appends blocks as a turn, merging into the previous turn of the same role.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, blocks: Vec<ContentBlock>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

/// System prompt and alternating turns. System messages ahead of the conversation make the
/// system prompt; later ones stay in place where Anthropic allows them, else join the prompt.
fn conversation_from_model(
    messages: &[Message],
    lossy: &mut Vec<String>,
) -> (Option<SystemPrompt>, Vec<InputMessage>) {
    let mut system: Vec<SystemBlock> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer if turns.is_empty() => {
                system_blocks(m, &mut system, lossy);
                continue;
            }
            Role::System | Role::Developer => {
                let mut blocks = Vec::new();
                system_blocks(m, &mut blocks, lossy);
                ("system", blocks.into_iter().map(system_to_text).collect())
            }
            Role::Assistant => ("assistant", assistant_blocks(m, lossy)),
            Role::User | Role::Tool => ("user", user_blocks(m, lossy)),
        };
        push_turn(&mut turns, role, blocks);
    }
    let turns = place_system_turns(turns, &mut system, lossy);
    let messages = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            // Tool results must lead a user turn.
            if role == "user" {
                blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult(_)));
            }
            InputMessage {
                role: role.to_owned(),
                content: simplify(blocks),
            }
        })
        .collect();
    let system = match system.len() {
        0 => None,
        1 if system[0].cache_control.is_none() => system.pop().map(|b| SystemPrompt::Text(b.text)),
        _ => Some(SystemPrompt::Blocks(system)),
    };
    (system, messages)
}

/// Keeps each mid-conversation system turn where Anthropic accepts one: after a user turn (or
/// an assistant turn ending in a server tool call) and before an assistant turn or the end.
/// Others move to the system prompt.
fn place_system_turns(
    turns: Vec<Turn>,
    system: &mut Vec<SystemBlock>,
    lossy: &mut Vec<String>,
) -> Vec<Turn> {
    let next_roles: Vec<Option<&'static str>> = (0..turns.len())
        .map(|i| turns.get(i + 1).map(|t| t.0))
        .collect();
    let mut out: Vec<Turn> = Vec::with_capacity(turns.len());
    for ((role, blocks), next) in turns.into_iter().zip(next_roles) {
        if role == "system" {
            let after_ok = out.last().is_some_and(|(r, b)| {
                *r == "user" || (*r == "assistant" && ends_with_server_tool_use(b))
            });
            let before_ok = matches!(next, None | Some("assistant"));
            if !(after_ok && before_ok) {
                note(
                    lossy,
                    "system message inside the conversation moved to the system prompt",
                );
                system.extend(blocks.into_iter().filter_map(text_to_system));
                continue;
            }
        }
        // Removing a system turn can leave two turns of one role side by side.
        push_turn(&mut out, role, blocks);
    }
    out
}

fn ends_with_server_tool_use(blocks: &[ContentBlock]) -> bool {
    matches!(blocks.last(), Some(ContentBlock::Other(v))
        if v.get("type").and_then(Value::as_str) == Some("server_tool_use"))
}

fn system_to_text(b: SystemBlock) -> ContentBlock {
    ContentBlock::Text(TextBlock {
        text: b.text,
        cache_control: b.cache_control,
        extra: b.extra,
    })
}

fn text_to_system(b: ContentBlock) -> Option<SystemBlock> {
    match b {
        ContentBlock::Text(t) => Some(SystemBlock {
            kind: "text".to_owned(),
            text: t.text,
            cache_control: t.cache_control,
            extra: t.extra,
        }),
        _ => None,
    }
}

/// A lone uncached text block is sent as a plain string.
fn simplify(mut blocks: Vec<ContentBlock>) -> MessageContent {
    match blocks.as_slice() {
        [ContentBlock::Text(t)] if t.cache_control.is_none() && t.extra.is_empty() => {
            match blocks.pop() {
                Some(ContentBlock::Text(t)) => MessageContent::Text(t.text),
                _ => MessageContent::Blocks(blocks),
            }
        }
        _ => MessageContent::Blocks(blocks),
    }
}

fn system_blocks(m: &Message, out: &mut Vec<SystemBlock>, lossy: &mut Vec<String>) {
    for part in &m.content {
        match part {
            Part::Text(t) if t.text.is_empty() => {}
            Part::Text(t) => out.push(SystemBlock {
                kind: "text".to_owned(),
                text: t.text.clone(),
                cache_control: t.cache_control.clone(),
                extra: Map::new(),
            }),
            _ => note(
                lossy,
                "non-text system content is not supported by Anthropic; dropped",
            ),
        }
    }
}

/// A text part as a text block with its citations, or as the text document it came from.
fn text_block(t: &llm_proxy_api::model::TextPart) -> ContentBlock {
    if let Some(settings) = &t.document {
        let mut doc = settings.clone();
        doc.insert(
            "source".to_owned(),
            serde_json::json!({"type": "text", "media_type": "text/plain", "data": t.text}),
        );
        if let Some(mark) = &t.cache_control {
            doc.insert("cache_control".to_owned(), mark.clone());
        }
        return ContentBlock::Document(doc);
    }
    let mut extra = Map::new();
    if !t.citations.is_empty() {
        extra.insert("citations".to_owned(), Value::Array(t.citations.clone()));
    }
    ContentBlock::Text(TextBlock {
        text: t.text.clone(),
        cache_control: t.cache_control.clone(),
        extra,
    })
}

/// Inline non-image media (PDF) is a document for Anthropic.
/// Whether an Anthropic answer can show `source` (as an image block): images, inline or by URL.
pub fn anthropic_answer_media(source: &MediaSource) -> bool {
    match source {
        MediaSource::Base64 { media_type, .. } => media_type.starts_with("image/"),
        MediaSource::Url { .. } => true,
    }
}

fn media_block(img: &ImagePart) -> ContentBlock {
    let cache_control = img.cache_control.clone();
    match &img.source {
        MediaSource::Base64 { media_type, data } if !media_type.starts_with("image/") => {
            let mut doc = img.document.clone().unwrap_or_default();
            doc.insert(
                "source".to_owned(),
                serde_json::json!({"type": "base64", "media_type": media_type, "data": data}),
            );
            if let Some(mark) = cache_control {
                doc.insert("cache_control".to_owned(), mark);
            }
            ContentBlock::Document(doc)
        }
        MediaSource::Base64 { media_type, data } => ContentBlock::Image(ImageBlock {
            source: ImageSource::Base64 {
                media_type: media_type.clone(),
                data: data.clone(),
            },
            cache_control,
        }),
        MediaSource::Url { url } => ContentBlock::Image(ImageBlock {
            source: ImageSource::Url { url: url.clone() },
            cache_control,
        }),
    }
}

fn user_blocks(m: &Message, lossy: &mut Vec<String>) -> Vec<ContentBlock> {
    let mut out = Vec::with_capacity(m.content.len());
    for part in &m.content {
        match part {
            Part::Text(t) if t.text.is_empty() => {}
            Part::Text(t) => out.push(text_block(t)),
            Part::Image(img) => out.push(media_block(img)),
            Part::Audio(_) => note(lossy, "audio input is not supported by Anthropic; dropped"),
            Part::ToolResult(r) => out.push(tool_result_block(r, lossy)),
            Part::Reasoning(_) | Part::ToolCall(_) => {
                note(lossy, "reasoning or tool calls in a user message dropped");
            }
            Part::Opaque(o) => out.extend(opaque_block(o)),
        }
    }
    out
}

fn assistant_blocks(m: &Message, lossy: &mut Vec<String>) -> Vec<ContentBlock> {
    let mut out = Vec::with_capacity(m.content.len());
    for part in &m.content {
        match part {
            Part::Text(t) if t.text.is_empty() => {}
            Part::Text(t) => out.push(text_block(t)),
            Part::Reasoning(b) => {
                if let Some(block) = reasoning_block_for_upstream(b) {
                    out.push(block);
                } else {
                    note(lossy, "reasoning without an Anthropic signature dropped");
                }
            }
            Part::ToolCall(c) => {
                if c.provider_data.is_some() {
                    note(lossy, "tool call provider data dropped");
                }
                out.push(ContentBlock::ToolUse(ToolUseBlock {
                    id: sanitize_tool_id(&c.id),
                    name: c.name.clone(),
                    input: ToolInput::object(&c.arguments).unwrap_or_else(|| {
                        note(
                            lossy,
                            "tool call arguments were not a JSON object; sent as {}",
                        );
                        ToolInput::default()
                    }),
                    cache_control: c.cache_control.clone(),
                }));
            }
            Part::Image(_) | Part::Audio(_) => {
                note(
                    lossy,
                    "media in an assistant message is not supported by Anthropic; dropped",
                );
            }
            Part::ToolResult(_) => note(lossy, "tool result in an assistant message dropped"),
            Part::Opaque(o) => out.extend(opaque_block(o)),
        }
    }
    out
}

/// An opaque Anthropic block goes back as it came; other protocols' blocks are left out
/// (reported once by `foreign_content_note`).
fn opaque_block(o: &OpaquePart) -> Option<ContentBlock> {
    (o.protocol == PROTOCOL).then(|| ContentBlock::Other(o.value.clone()))
}

/// Only Anthropic's own thinking can go back to Anthropic: signed or redacted.
fn reasoning_block_for_upstream(b: &ReasoningBlock) -> Option<ContentBlock> {
    if let Some(data) = &b.redacted {
        return Some(ContentBlock::RedactedThinking(RedactedThinkingBlock {
            data: data.clone(),
        }));
    }
    let signature = b.signature.as_ref().filter(|s| !s.is_empty())?;
    Some(ContentBlock::Thinking(ThinkingBlock {
        thinking: b.text.clone(),
        signature: Some(signature.clone()),
    }))
}

fn tool_result_block(r: &ToolResult, lossy: &mut Vec<String>) -> ContentBlock {
    let mut blocks = Vec::with_capacity(r.content.len());
    for part in &r.content {
        match part {
            Part::Text(t) if t.text.is_empty() => {}
            Part::Text(t) => blocks.push(text_block(t)),
            Part::Image(img) => blocks.push(media_block(img)),
            Part::Opaque(o) => blocks.extend(opaque_block(o)),
            _ => note(
                lossy,
                "tool result content other than text and images dropped",
            ),
        }
    }
    let content = match simplify(blocks) {
        MessageContent::Blocks(b) if b.is_empty() => None,
        MessageContent::Blocks(b) => Some(ToolResultContent::Blocks(b)),
        MessageContent::Text(t) => Some(ToolResultContent::Text(t)),
    };
    ContentBlock::ToolResult(ToolResultBlock {
        tool_use_id: sanitize_tool_id(&r.call_id),
        content,
        is_error: r.is_error.then_some(true),
        cache_control: r.cache_control.clone(),
    })
}

/// Anthropic tool ids match `^[a-zA-Z0-9_-]+$`; other providers' ids (`functions.get:0`) are
/// mapped deterministically so calls and results still pair up.
fn sanitize_tool_id(id: &str) -> String {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return id.to_owned();
    }
    let mapped: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if mapped.is_empty() {
        "toolu_".to_owned()
    } else {
        mapped
    }
}

/// Anthropic `stop_reason` for a finish reason; plain stops of an answer with tool calls are
/// `tool_use`.
pub fn stop_reason_name(reason: Option<&FinishReason>, has_tool_calls: bool) -> &str {
    match reason {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Other(s))
            if matches!(
                s.as_str(),
                "pause_turn" | "stop_sequence" | "refusal" | "model_context_window_exceeded"
            ) =>
        {
            s
        }
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` and `stop_sequence`: `stop_sequence` when the upstream said which
/// stop sequence matched (only Anthropic upstreams do; others give a plain stop, `end_turn`).
pub fn stop_reason_and_sequence<'a>(
    reason: Option<&'a FinishReason>,
    sequence: Option<&'a str>,
    has_tool_calls: bool,
) -> (&'a str, Option<&'a str>) {
    match (reason, sequence) {
        (Some(FinishReason::Stop), Some(seq)) if !has_tool_calls => ("stop_sequence", Some(seq)),
        _ => (stop_reason_name(reason, has_tool_calls), None),
    }
}

/// Anthropic usage: input tokens exclude cache reads and writes.
pub fn usage_from_model(u: &Usage) -> WireUsage {
    let cached = u
        .cache_read_tokens
        .unwrap_or(0)
        .saturating_add(u.cache_write_tokens.unwrap_or(0));
    WireUsage {
        input_tokens: u.input_tokens.saturating_sub(cached),
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_write_tokens,
        cache_read_input_tokens: u.cache_read_tokens,
    }
}

/// A message id with Anthropic's `msg_` prefix.
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{id}")
    }
}

/// The thinking block a client sees for a reasoning block: Anthropic's own state as it came;
/// another provider's state (Gemini thought signatures, a Responses upstream's reasoning)
/// tagged with its origin and sealed in the signature, so the client hands it back unread.
pub(crate) fn reasoning_block_for_client(
    b: &ReasoningBlock,
    model: Option<&str>,
    sealer: &dyn Sealer,
) -> ContentBlock {
    if let Some(data) = &b.redacted {
        return ContentBlock::RedactedThinking(RedactedThinkingBlock { data: data.clone() });
    }
    let signature = match (&b.signature, &b.provider_data) {
        (Some(s), None) => s.clone(),
        (_, Some(_)) => Carried::of_block(b, model)
            .seal_text(sealer)
            .unwrap_or_default(),
        (None, None) => String::new(),
    };
    ContentBlock::Thinking(ThinkingBlock {
        thinking: b.text.clone(),
        signature: Some(signature),
    })
}

/// A tool call's provider data (Gemini signs the `functionCall` part of a turn that ends in a
/// tool call), sealed for a thinking signature. It goes on the thinking block just before
/// the call when that block has no signature of its own, else on an empty thinking block
/// ahead of the tool_use; either way the client echoes it and the next request puts it back
/// on the call.
pub(crate) fn sealed_call_data(data: &Value, model: Option<&str>, sealer: &dyn Sealer) -> String {
    Carried::of_call(data, model)
        .seal_text(sealer)
        .unwrap_or_default()
}

/// Builds the client-facing non-streamed response; `sealer` seals other providers' reasoning
/// state.
pub fn response_from_model(resp: &ChatResponse, sealer: &dyn Sealer) -> AnthropicResponse {
    let model = Some(resp.model.as_str());
    let mut content: Vec<ContentBlock> = Vec::with_capacity(resp.content.len());
    let mut has_tool_calls = false;
    for part in &resp.content {
        match part {
            Part::Text(t) if t.text.is_empty() => {}
            Part::Text(t) => content.push(text_block(t)),
            Part::Reasoning(b) => content.push(reasoning_block_for_client(b, model, sealer)),
            Part::ToolCall(c) => {
                has_tool_calls = true;
                if let Some(data) = &c.provider_data {
                    let sealed = sealed_call_data(data, model, sealer);
                    match content.last_mut() {
                        Some(ContentBlock::Thinking(t))
                            if t.signature.as_deref().is_none_or(str::is_empty) =>
                        {
                            t.signature = Some(sealed);
                        }
                        _ => content.push(ContentBlock::Thinking(ThinkingBlock {
                            thinking: String::new(),
                            signature: Some(sealed),
                        })),
                    }
                }
                content.push(ContentBlock::ToolUse(ToolUseBlock {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    input: ToolInput::object(&c.arguments).unwrap_or_default(),
                    cache_control: None,
                }));
            }
            // Generated images are image blocks; other media has no answer block (the server
            // notes it as lossy).
            Part::Image(img) if anthropic_answer_media(&img.source) => {
                content.push(media_block(img));
            }
            Part::Image(_) | Part::Audio(_) | Part::ToolResult(_) | Part::Opaque(_) => {}
        }
    }
    let (stop_reason, stop_sequence) = stop_reason_and_sequence(
        resp.finish_reason.as_ref(),
        resp.stop_sequence.as_deref(),
        has_tool_calls,
    );
    AnthropicResponse {
        id: message_id(&resp.id),
        kind: "message".to_owned(),
        role: "assistant".to_owned(),
        content,
        model: resp.model.clone(),
        stop_reason: Some(stop_reason.to_owned()),
        stop_sequence: stop_sequence.map(str::to_owned),
        usage: resp
            .usage
            .as_ref()
            .map(usage_from_model)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anthropic::to_model::request_to_model;
    use crate::openai_responses::opaque::TestSealer;
    use llm_proxy_api::model::{AudioPart, ImagePart, ReasoningConfig, TextPart, ToolCall};
    use serde_json::json;

    fn encode(req: &ChatRequest) -> (Value, Vec<String>) {
        let mut lossy = Vec::new();
        let wire = request_from_model(req, "claude-x", &mut lossy);
        (serde_json::to_value(&wire).unwrap(), lossy)
    }

    fn call(id: &str, args: &str) -> Part {
        Part::ToolCall(ToolCall {
            cache_control: None,
            id: id.into(),
            name: "f".into(),
            arguments: args.into(),
            provider_data: None,
        })
    }

    fn result(id: &str, text: &str, is_error: bool) -> Part {
        Part::ToolResult(ToolResult {
            cache_control: None,
            call_id: id.into(),
            name: None,
            content: vec![Part::Text(TextPart::new(text))],
            is_error,
        })
    }

    #[test]
    fn openai_shaped_history_becomes_alternating_anthropic_turns() {
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::System, "sys"),
                Message::text(Role::Developer, "dev"),
                Message::text(Role::User, "hi"),
                Message {
                    role: Role::Assistant,
                    content: vec![call("functions.f:0", "{\"a\":1}"), call("c2", "not json")],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![result("functions.f:0", "one", false)],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![result("c2", "two", true)],
                    name: None,
                },
                Message::text(Role::User, "and?"),
                Message::text(Role::User, "well?"),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["system"],
            json!([{"type": "text", "text": "sys"}, {"type": "text", "text": "dev"}])
        );
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "functions_f_0", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "c2", "name": "f", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "functions_f_0", "content": "one"},
                    {"type": "tool_result", "tool_use_id": "c2", "content": "two", "is_error": true},
                    {"type": "text", "text": "and?"},
                    {"type": "text", "text": "well?"}
                ]}
            ])
        );
        assert_eq!(v["max_tokens"], 4096);
        assert_eq!(v["stream"], false);
        assert_eq!(
            lossy,
            vec!["tool call arguments were not a JSON object; sent as {}".to_owned()]
        );
    }

    #[test]
    fn assistant_first_gets_a_placeholder_and_unsupported_parts_are_noted() {
        let req = ChatRequest {
            messages: vec![
                Message {
                    role: Role::Assistant,
                    content: vec![
                        Part::Reasoning(ReasoningBlock {
                            text: "unsigned".into(),
                            ..Default::default()
                        }),
                        Part::Text(TextPart::new("earlier")),
                    ],
                    name: None,
                },
                Message {
                    role: Role::User,
                    content: vec![
                        Part::Audio(AudioPart {
                            data: "AAA".into(),
                            format: "wav".into(),
                        }),
                        Part::Image(ImagePart {
                            cache_control: None,
                            source: MediaSource::from_url("data:image/png;base64,QQ=="),
                            detail: None,
                            document: None,
                        }),
                        Part::Image(ImagePart {
                            cache_control: None,
                            source: MediaSource::from_url("https://x.test/a.png"),
                            detail: None,
                            document: None,
                        }),
                        Part::Image(ImagePart {
                            cache_control: None,
                            source: MediaSource::from_url("data:application/pdf;base64,JVBE"),
                            detail: None,
                            document: None,
                        }),
                    ],
                    name: None,
                },
            ],
            response_format: Some(ResponseFormat::JsonObject),
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["messages"][0],
            json!({"role": "user", "content": "(continued)"})
        );
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": "earlier"})
        );
        assert_eq!(
            v["messages"][2]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QQ=="}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
            ])
        );
        for expected in [
            "reasoning without",
            "audio",
            "response_format",
            "placeholder user turn",
        ] {
            assert!(
                lossy.iter().any(|l| l.contains(expected)),
                "missing '{expected}' in {lossy:?}"
            );
        }
    }

    #[test]
    fn reasoning_effort_and_budget_become_thinking_with_room_in_max_tokens() {
        let mut req = ChatRequest {
            messages: vec![Message::text(Role::User, "q")],
            reasoning: Some(ReasoningConfig {
                effort: Some("high".into()),
                ..Default::default()
            }),
            sampling: llm_proxy_api::model::Sampling {
                temperature: Some(0.2),
                top_k: Some(5),
                ..Default::default()
            },
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 24576})
        );
        assert!(v["max_tokens"].as_u64().unwrap() > 24576);
        assert!(v.get("temperature").is_none() && v.get("top_k").is_none());
        assert_eq!(lossy.len(), 2, "{lossy:?}");

        req.reasoning = Some(ReasoningConfig {
            budget_tokens: Some(2000),
            ..Default::default()
        });
        req.max_tokens = Some(8000);
        let (v, _) = encode(&req);
        assert_eq!(
            (
                v["thinking"]["budget_tokens"].as_u64(),
                v["max_tokens"].as_u64()
            ),
            (Some(2000), Some(8000))
        );

        req.reasoning = Some(ReasoningConfig {
            effort: Some("none".into()),
            disabled: true,
            ..Default::default()
        });
        let (v, _) = encode(&req);
        assert_eq!(v["thinking"], json!({"type": "disabled"}));
    }

    #[test]
    fn thinking_is_dropped_when_anthropic_would_reject_it() {
        let mut req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "q"),
                Message {
                    role: Role::Assistant,
                    content: vec![call("c1", "{}")],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![result("c1", "r", false)],
                    name: None,
                },
            ],
            reasoning: Some(ReasoningConfig {
                budget_tokens: Some(4096),
                ..Default::default()
            }),
            tools: vec![llm_proxy_api::model::ToolDefinition {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object"}),
                strict: None,
                cache_control: None,
            }],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert!(v.get("thinking").is_none());
        assert!(lossy[0].contains("without signed thinking"), "{lossy:?}");

        req.messages.truncate(1);
        req.tool_choice = Some(ModelToolChoice::Required);
        let (v, lossy) = encode(&req);
        assert!(v.get("thinking").is_none());
        assert!(lossy[0].contains("forced tool choice"), "{lossy:?}");
        assert_eq!(v["tool_choice"], json!({"type": "any"}));
    }

    #[test]
    fn tool_choice_and_parallel_flag() {
        let mut req = ChatRequest {
            tools: vec![llm_proxy_api::model::ToolDefinition {
                name: "f".into(),
                description: Some("d".into()),
                parameters: json!({"type": "object"}),
                strict: None,
                cache_control: Some(json!({"type": "ephemeral"})),
            }],
            parallel_tool_calls: Some(false),
            ..ChatRequest::default()
        };
        let (v, _) = encode(&req);
        assert_eq!(
            v["tools"],
            json!([{"name": "f", "description": "d", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(
            v["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        req.tool_choice = Some(ModelToolChoice::Function("f".into()));
        assert_eq!(
            encode(&req).0["tool_choice"],
            json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true})
        );
        req.tool_choice = Some(ModelToolChoice::None);
        assert_eq!(encode(&req).0["tool_choice"], json!({"type": "none"}));
        req.tools.clear();
        assert!(
            encode(&req).0.get("tool_choice").is_none(),
            "no tool_choice without tools"
        );
    }

    #[test]
    fn extra_passes_only_from_anthropic_clients_and_restores_kept_tools() {
        let client = json!({
            "model": "m", "max_tokens": 100, "stream": false,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "thinking": {"type": "adaptive"},
            "service_tier": "auto"
        });
        let model = request_to_model(
            serde_json::from_value(client.clone()).unwrap(),
            &TestSealer(0),
            &mut Vec::new(),
        )
        .unwrap();
        let (v, lossy) = encode(&model);
        assert_eq!(
            v,
            json!({
                "model": "claude-x", "max_tokens": 100, "stream": false,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                "thinking": {"type": "adaptive"},
                "service_tier": "auto"
            })
        );
        assert!(lossy.is_empty(), "{lossy:?}");
        let mut foreign = model.clone();
        foreign.extra_protocol = Some("openai_chat".into());
        let (v, _) = encode(&foreign);
        assert!(v.get("service_tier").is_none() && v.get("tools").is_none());
        // Adaptive thinking another protocol asked for is a medium budget.
        assert_eq!(
            v["thinking"],
            json!({"type": "enabled", "budget_tokens": 8192})
        );
    }

    #[test]
    fn response_carries_provider_data_in_opaque_thinking_blocks() {
        let data = json!({"google": {"thought_signature": "g"}});
        let resp = ChatResponse {
            id: "abc".into(),
            model: "gemini".into(),
            created: 0,
            content: vec![
                Part::Reasoning(ReasoningBlock {
                    text: "t".into(),
                    provider_data: Some(json!(1)),
                    ..Default::default()
                }),
                Part::Reasoning(ReasoningBlock {
                    text: "s".into(),
                    signature: Some("sig".into()),
                    ..Default::default()
                }),
                Part::Reasoning(ReasoningBlock {
                    redacted: Some("enc".into()),
                    ..Default::default()
                }),
                Part::Text(TextPart::new("hi")),
                Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: "c".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                    provider_data: Some(data.clone()),
                }),
            ],
            finish_reason: Some(FinishReason::Stop),
            stop_sequence: None,
            usage: Some(Usage {
                input_tokens: 1000,
                output_tokens: 7,
                cache_read_tokens: Some(900),
                cache_write_tokens: Some(50),
                reasoning_tokens: None,
            }),
            logprobs: Vec::new(),
        };
        let sealer = TestSealer(4);
        let v = serde_json::to_value(response_from_model(&resp, &sealer)).unwrap();
        assert_eq!(v["id"], "msg_abc");
        let sealed = |i: usize| v["content"][i]["signature"].as_str().unwrap().to_owned();
        assert_eq!(
            v["content"],
            json!([
                {"type": "thinking", "thinking": "t", "signature": sealed(0)},
                {"type": "thinking", "thinking": "s", "signature": "sig"},
                {"type": "redacted_thinking", "data": "enc"},
                {"type": "text", "text": "hi"},
                {"type": "thinking", "thinking": "", "signature": sealed(4)},
                {"type": "tool_use", "id": "c", "name": "f", "input": {"a": 1}}
            ])
        );
        for i in [0, 4] {
            assert!(sealed(i).starts_with("llmproxy.v1."), "{}", sealed(i));
            assert!(!sealed(i).contains("thought_signature"));
        }
        // The client echoes the content: the canonical history is what the upstream produced.
        let mut lossy = Vec::new();
        let echoed = request_to_model(
            serde_json::from_value(json!({"model": "m", "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": v["content"].clone()}
            ]}))
            .unwrap(),
            &sealer,
            &mut lossy,
        )
        .unwrap();
        assert!(lossy.is_empty(), "{lossy:?}");
        assert_eq!(echoed.messages[1].content, resp.content);
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 50, "output_tokens": 7, "cache_creation_input_tokens": 50, "cache_read_input_tokens": 900})
        );
    }

    #[test]
    fn a_call_signature_goes_on_the_unsigned_thinking_block_before_it() {
        let data = json!({"google": {"thought_signature": "SIG"}});
        let resp = ChatResponse {
            id: "abc".into(),
            model: "gemini-2.5-pro".into(),
            created: 0,
            content: vec![
                Part::Reasoning(ReasoningBlock {
                    text: "I should look it up.".into(),
                    ..Default::default()
                }),
                Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: "c1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                    provider_data: Some(data.clone()),
                }),
            ],
            finish_reason: Some(FinishReason::ToolCalls),
            stop_sequence: None,
            usage: None,
            logprobs: Vec::new(),
        };
        let sealer = TestSealer(4);
        let v = serde_json::to_value(response_from_model(&resp, &sealer)).unwrap();
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 2, "{v}");
        assert_eq!(content[0]["thinking"], "I should look it up.");
        let sig = content[0]["signature"].as_str().unwrap();
        assert!(sig.starts_with("llmproxy.v1."), "{v}");
        let echoed = client_with(
            json!({"model": "m", "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": content}
            ]}),
            &sealer,
        );
        assert_eq!(echoed.messages[1].content, resp.content);
    }

    fn client_with(body: Value, sealer: &dyn Sealer) -> ChatRequest {
        request_to_model(
            serde_json::from_value(body).unwrap(),
            sealer,
            &mut Vec::new(),
        )
        .unwrap()
    }

    fn client(body: Value) -> ChatRequest {
        request_to_model(
            serde_json::from_value(body).unwrap(),
            &TestSealer(0),
            &mut Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn cache_control_survives_on_every_block_that_may_carry_it() {
        let hour = json!({"type": "ephemeral", "ttl": "1h"});
        let eph = json!({"type": "ephemeral"});
        let body = json!({
            "model": "m",
            "system": [{"type": "text", "text": "sys", "cache_control": hour}],
            "tools": [{"name": "f", "input_schema": {"type": "object"}, "cache_control": hour}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "look", "cache_control": eph},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QQ=="}, "cache_control": eph},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}, "cache_control": hour},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}, "cache_control": eph},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}, "cache_control": hour}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}, "cache_control": eph}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [
                        {"type": "image", "source": {"type": "url", "url": "https://x.test/b.png"}, "cache_control": eph}
                    ], "cache_control": hour},
                    {"type": "tool_result", "tool_use_id": "t2", "cache_control": eph}
                ]}
            ]
        });
        let (v, lossy) = encode(&client(body));
        assert!(lossy.is_empty(), "{lossy:?}");
        assert_eq!(v["system"][0]["cache_control"], hour);
        assert_eq!(v["tools"][0]["cache_control"], hour);
        let marks = |m: usize| -> Vec<Value> {
            v["messages"][m]["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["cache_control"].clone())
                .collect()
        };
        assert_eq!(marks(0), [&eph, &eph, &hour, &eph, &hour].map(Clone::clone));
        assert_eq!(v["messages"][0]["content"][3]["type"], "document");
        assert_eq!(marks(1), vec![eph.clone()]);
        assert_eq!(marks(2), vec![hour.clone(), eph.clone()]);
        assert_eq!(
            v["messages"][2]["content"][0]["content"][0]["cache_control"],
            eph
        );
    }

    #[test]
    fn system_messages_stay_where_anthropic_allows_them() {
        let model = client(json!({
            "model": "m",
            "system": "top",
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "system", "content": "after user, before assistant"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]},
                {"role": "system", "content": [{"type": "text", "text": "trailing", "cache_control": {"type": "ephemeral"}}]}
            ]
        }));
        let (v, lossy) = encode(&model);
        assert_eq!(v["system"], "top");
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": "q"},
                {"role": "system", "content": "after user, before assistant"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}]},
                {"role": "system", "content": [{"type": "text", "text": "trailing", "cache_control": {"type": "ephemeral"}}]}
            ])
        );
        assert!(lossy.is_empty(), "{lossy:?}");
    }

    #[test]
    fn misplaced_system_messages_join_the_system_prompt_and_turns_re_merge() {
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "q"),
                Message::text(Role::Assistant, "a"),
                Message::text(Role::System, "after assistant"),
                Message::text(Role::User, "r"),
                Message::text(Role::Developer, "before user"),
                Message::text(Role::User, "s"),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["system"],
            json!([{"type": "text", "text": "after assistant"}, {"type": "text", "text": "before user"}])
        );
        assert_eq!(
            v["messages"],
            json!([
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "r"}, {"type": "text", "text": "s"}]}
            ])
        );
        assert_eq!(
            lossy,
            ["system message inside the conversation moved to the system prompt"]
        );
    }

    #[test]
    fn opaque_blocks_go_back_verbatim_to_anthropic_only() {
        let server_use = json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}});
        let server_result =
            json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []});
        let doc = json!({"type": "document", "source": {"type": "file", "file_id": "file_1"}});
        let model = client(json!({"model": "m", "messages": [
            {"role": "user", "content": "search"},
            {"role": "assistant", "content": [server_use, server_result, {"type": "text", "text": "found"}]},
            {"role": "user", "content": [doc, {"type": "text", "text": "and this"}]}
        ]}));
        let (v, lossy) = encode(&model);
        assert_eq!(v["messages"][1]["content"][0], server_use);
        assert_eq!(v["messages"][1]["content"][1], server_result);
        assert_eq!(v["messages"][2]["content"][0], doc);
        assert!(lossy.is_empty(), "{lossy:?}");

        let mut foreign = model.clone();
        for m in &mut foreign.messages {
            for p in &mut m.content {
                if let Part::Opaque(o) = p {
                    o.protocol = "gemini".into();
                }
            }
        }
        let (v, lossy) = encode(&foreign);
        assert_eq!(
            v["messages"][1],
            json!({"role": "assistant", "content": "found"})
        );
        assert_eq!(
            lossy,
            [
                "content blocks the upstream cannot express dropped: server_tool_use, web_search_tool_result, document"
            ]
        );
    }

    #[test]
    fn stop_reason_names() {
        assert_eq!(
            stop_reason_name(Some(&FinishReason::Length), false),
            "max_tokens"
        );
        assert_eq!(
            stop_reason_name(Some(&FinishReason::ContentFilter), false),
            "refusal"
        );
        assert_eq!(
            stop_reason_name(Some(&FinishReason::Stop), false),
            "end_turn"
        );
        assert_eq!(stop_reason_name(None, true), "tool_use");
        assert_eq!(
            stop_reason_name(Some(&FinishReason::Other("pause_turn".into())), false),
            "pause_turn"
        );
        assert_eq!(
            stop_reason_name(Some(&FinishReason::Other("weird".into())), false),
            "end_turn"
        );
    }

    #[test]
    fn generated_images_in_an_answer_are_image_blocks() {
        let resp = ChatResponse {
            id: "msg_1".into(),
            model: "m".into(),
            created: 0,
            content: vec![
                Part::Text(TextPart::new("here:")),
                Part::media(MediaSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBO".into(),
                }),
                Part::Audio(AudioPart {
                    data: "UklG".into(),
                    format: "wav".into(),
                }),
            ],
            finish_reason: Some(FinishReason::Stop),
            stop_sequence: None,
            usage: None,
            logprobs: Vec::new(),
        };
        let v = serde_json::to_value(response_from_model(&resp, &TestSealer(4))).unwrap();
        assert_eq!(
            v["content"],
            json!([
                {"type": "text", "text": "here:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}
            ])
        );
    }
}
