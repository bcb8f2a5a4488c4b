//! Canonical model -> OpenAI Chat wire (upstream requests; client responses).

use llm_proxy_api::model::{
    ChatRequest, ChatResponse, FinishReason, Message, Part, ReasoningBlock, ResponseFormat, Role,
    ToolChoice, Usage,
};
use serde_json::{Map, Value, json};

use crate::json_out::WriteJson;

use super::to_model::{DETAIL_KEY, PROTOCOL};
use super::types::{
    self as wire, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, Choice, ContentPart,
    FunctionCall, FunctionDef, ImageUrl, InputAudio, MessageContent, ReasoningDetail, Stop,
    StreamOptions, Tool,
};

/// How to encode a request for a particular upstream.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// Send earlier assistant reasoning back as `reasoning_content` / `reasoning_details`
    /// (wanted by DeepSeek, Kimi, GLM, OpenRouter; rejected by some strict servers).
    pub reasoning_in_history: bool,
    /// Use `max_completion_tokens` instead of the legacy `max_tokens`.
    pub max_completion_tokens: bool,
    /// `prompt_cache_key` to send when the request has none of its own (one derived from the
    /// session keeps the upstream's cache routing on one machine).
    pub fallback_cache_key: Option<&'a str>,
}

impl Default for EncodeOptions<'_> {
    fn default() -> Self {
        Self {
            reasoning_in_history: true,
            max_completion_tokens: false,
            fallback_cache_key: None,
        }
    }
}

/// Builds the upstream request for `model`.
pub fn request_from_model(
    req: &ChatRequest,
    model: &str,
    opts: EncodeOptions<'_>,
) -> ChatCompletionRequest {
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        message_from_model(m, opts, &mut messages);
    }
    ChatCompletionRequest {
        messages,
        ..request_head_from_model(req, model, opts)
    }
}

/// The upstream request body for `model`, serialized. Same bytes as serializing
/// [`request_from_model`], but the conversation is converted one message at a time as it is
/// written, so a long history is never held twice (canonical and wire) on top of its bytes.
pub fn request_body_from_model(req: &ChatRequest, model: &str, opts: EncodeOptions<'_>) -> Vec<u8> {
    let head = request_head_from_model(req, model, opts);
    let text_bytes: usize = req
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .map(written_size)
        .sum();
    let mut out = Vec::with_capacity(512 + model.len() + text_bytes);
    head.write_with(&mut out, |out| {
        let mut wire_messages = Vec::new();
        let mut first = true;
        for m in &req.messages {
            message_from_model(m, opts, &mut wire_messages);
            for w in wire_messages.drain(..) {
                if !first {
                    out.push(b',');
                }
                first = false;
                w.write_json(out);
            }
        }
    });
    out
}

/// About the bytes a part takes in the request, escapes and keys included, so the body is
/// allocated once: growing it copies everything written so far (a long conversation's tool
/// results and calls are most of its bytes).
fn written_size(part: &Part) -> usize {
    let escaped = |s: &str| s.len() + s.len() / 16;
    match part {
        Part::Text(t) => escaped(&t.text) + 48,
        Part::ToolCall(c) => escaped(&c.arguments) + c.name.len() + c.id.len() + 96,
        Part::ToolResult(r) => {
            r.content.iter().map(written_size).sum::<usize>() + r.call_id.len() + 64
        }
        _ => 256,
    }
}

/// Everything of the upstream request but the conversation (`messages` is empty).
fn request_head_from_model(
    req: &ChatRequest,
    model: &str,
    opts: EncodeOptions<'_>,
) -> ChatCompletionRequest {
    let tools = (!req.tools.is_empty()).then(|| {
        req.tools
            .iter()
            .map(|t| Tool {
                kind: "function".to_owned(),
                function: FunctionDef {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: Some(t.parameters.clone()),
                    strict: t.strict,
                },
            })
            .collect()
    });
    let tool_choice = req.tool_choice.as_ref().map(|c| match c {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    });
    let response_format = req.response_format.as_ref().map(|f| match f {
        ResponseFormat::Text => wire::ResponseFormat::Text,
        ResponseFormat::JsonObject => wire::ResponseFormat::JsonObject,
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => wire::ResponseFormat::JsonSchema {
            json_schema: wire::JsonSchemaFormat {
                name: name.clone(),
                schema: schema.clone(),
                strict: *strict,
            },
        },
    });
    let (reasoning_effort, extra) = reasoning_from_model(req, model);
    let (max_tokens, max_completion_tokens) = if opts.max_completion_tokens {
        (None, req.max_tokens)
    } else {
        (req.max_tokens, None)
    };
    ChatCompletionRequest {
        model: model.to_owned(),
        messages: Vec::new(),
        stream: Some(req.stream),
        stream_options: req.stream.then(|| StreamOptions {
            include_usage: true,
            extra: Map::new(),
        }),
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        temperature: req.sampling.temperature,
        top_p: req.sampling.top_p,
        n: req.sampling.n,
        stop: match req.stop.len() {
            0 => None,
            1 => Some(Stop::One(req.stop[0].clone())),
            _ => Some(Stop::Many(req.stop.clone())),
        },
        max_tokens,
        max_completion_tokens,
        presence_penalty: req.sampling.presence_penalty,
        frequency_penalty: req.sampling.frequency_penalty,
        seed: req.sampling.seed,
        response_format,
        reasoning_effort,
        user: req.user.clone(),
        metadata: (!req.metadata.is_empty()).then(|| req.metadata.clone()),
        prompt_cache_key: req
            .cache
            .key
            .clone()
            .or_else(|| opts.fallback_cache_key.map(str::to_owned)),
        extra,
    }
}

pub use crate::reasoning::effort_for_budget;

/// `reasoning_effort` and the pass-through fields. A client that wrote a `reasoning` object
/// (`{effort, max_tokens, ...}`) keeps it, its effort set to the canonical one (a session's
/// override), and gets no second `reasoning_effort` beside it.
fn reasoning_from_model(req: &ChatRequest, model: &str) -> (Option<String>, Map<String, Value>) {
    let mut extra = req.extra_for(PROTOCOL).cloned().unwrap_or_default();
    // Another protocol's client asking for logprobs.
    if req.extra_for(PROTOCOL).is_none()
        && let Some(top) = req.logprobs_requested()
    {
        extra.insert("logprobs".to_owned(), Value::Bool(true));
        if top > 0 {
            extra.insert("top_logprobs".to_owned(), Value::from(top));
        }
    }
    let effort = req
        .reasoning
        .as_ref()
        .and_then(|r| crate::reasoning::openai_effort(r, model).0);
    match (extra.get_mut("reasoning"), effort) {
        (Some(Value::Object(object)), effort) => {
            if let Some(effort) = effort
                && object.get("effort").and_then(Value::as_str) != Some(effort.as_str())
            {
                object.remove("max_tokens");
                object.insert("effort".to_owned(), Value::String(effort));
            }
            (None, extra)
        }
        (_, effort) => (effort, extra),
    }
}

/// What an OpenAI-chat upstream serving `model` cannot take of the request's reasoning
/// controls (for `x-llm-proxy-lossy`).
pub fn reasoning_notes(req: &ChatRequest, model: &str) -> Vec<String> {
    let effort_note = req
        .reasoning
        .as_ref()
        .and_then(|r| crate::reasoning::openai_effort(r, model).1);
    effort_note
        .into_iter()
        .chain(crate::reasoning::context_management_note(req, PROTOCOL))
        .collect()
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn message_from_model(m: &Message, opts: EncodeOptions<'_>, out: &mut Vec<ChatMessage>) {
    // A message of nothing but other protocols' blocks (reported by `foreign_content_note`).
    if !m.content.is_empty() && m.content.iter().all(|p| matches!(p, Part::Opaque(_))) {
        return;
    }
    // Without media the text parts become one string, joined as they are read; with media,
    // a list of parts.
    let has_media = m
        .content
        .iter()
        .any(|p| matches!(p, Part::Image(_) | Part::Audio(_)));
    let mut text: Option<String> = None;
    let mut parts = Vec::new();
    let mut reasoning: Vec<&ReasoningBlock> = Vec::new();
    let mut tool_calls = Vec::new();
    for part in &m.content {
        match part {
            Part::Text(t) if !has_media => join_paragraph(&mut text, &t.text),
            Part::Text(t) => parts.push(ContentPart::Text {
                text: t.text.clone(),
                cache_control: None,
            }),
            Part::Image(img) => parts.push(ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: img.source.to_url(),
                    detail: img.detail.clone(),
                },
            }),
            Part::Audio(a) => parts.push(ContentPart::InputAudio {
                input_audio: InputAudio {
                    data: a.data.clone(),
                    format: a.format.clone(),
                },
            }),
            Part::Reasoning(b) => reasoning.push(b),
            Part::ToolCall(c) => tool_calls.push(wire::ToolCall {
                id: c.id.clone(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
                extra_content: c.provider_data.clone(),
            }),
            Part::ToolResult(r) => out.push(ChatMessage {
                role: "tool".to_owned(),
                content: Some(MessageContent::Text(r.text_marking_error())),
                tool_call_id: Some(r.call_id.clone()),
                ..ChatMessage::default()
            }),
            Part::Opaque(_) => {}
        }
    }
    if m.role == Role::Tool && text.is_none() && parts.is_empty() && tool_calls.is_empty() {
        return; // only tool results, already emitted
    }
    let (reasoning_content, reasoning_details) =
        if m.role == Role::Assistant && opts.reasoning_in_history {
            reasoning_fields(&reasoning)
        } else {
            (None, None)
        };
    let content = match text {
        Some(text) => Some(MessageContent::Text(text)),
        None if !parts.is_empty() => Some(MessageContent::Parts(parts)),
        // No parts and tool calls is `null`; no parts at all, an empty string.
        None if m.role == Role::Assistant && !tool_calls.is_empty() => None,
        None => Some(MessageContent::Text(String::new())),
    };
    out.push(ChatMessage {
        role: role_name(m.role).to_owned(),
        content,
        name: m.name.clone(),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        reasoning_content,
        reasoning_details,
        ..ChatMessage::default()
    });
}

/// Text parts become one plain string (what most servers expect). Separate blocks stay
/// separate paragraphs: joined without a break, Claude Code's billing line would run into
/// its system prompt.
fn join_paragraph(joined: &mut Option<String>, next: &str) {
    match joined {
        None => *joined = Some(next.to_owned()),
        Some(text) => {
            if !text.is_empty() && !next.is_empty() && !text.ends_with('\n') {
                text.push_str("\n\n");
            }
            text.push_str(next);
        }
    }
}

/// `reasoning_content` (joined text) plus `reasoning_details` when a block carries anything
/// beyond text (signature, encrypted payload, provider data) that must survive a round trip.
pub(crate) fn reasoning_fields(
    blocks: &[&ReasoningBlock],
) -> (Option<String>, Option<Vec<ReasoningDetail>>) {
    if blocks.is_empty() {
        return (None, None);
    }
    let text: String = blocks.iter().map(|b| b.text.as_str()).collect();
    let needs_details = blocks
        .iter()
        .any(|b| b.signature.is_some() || b.redacted.is_some() || b.provider_data.is_some());
    let details = needs_details.then(|| {
        blocks
            .iter()
            .enumerate()
            .map(|(i, b)| reasoning_detail(b, i as u32))
            .collect()
    });
    ((!text.is_empty()).then_some(text), details)
}

pub(crate) fn reasoning_detail(b: &ReasoningBlock, index: u32) -> ReasoningDetail {
    // Another family's item, kept whole: back as it came, with the block's text.
    if let Some(mut kept) = b
        .provider_data
        .as_ref()
        .and_then(|d| d.get(DETAIL_KEY))
        .and_then(|v| serde_json::from_value::<ReasoningDetail>(v.clone()).ok())
    {
        if !b.text.is_empty() {
            kept.text = Some(b.text.clone());
        }
        kept.index = Some(index);
        return kept;
    }
    ReasoningDetail {
        kind: if b.redacted.is_some() {
            "reasoning.encrypted"
        } else {
            "reasoning.text"
        }
        .to_owned(),
        text: (!b.text.is_empty()).then(|| b.text.clone()),
        summary: None,
        signature: b.signature.clone(),
        data: b.redacted.clone(),
        provider_data: b.provider_data.clone(),
        index: Some(index),
        extra: Map::new(),
    }
}

/// OpenAI spelling of a finish reason.
pub fn finish_reason_name(r: &FinishReason) -> &str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other(s) => s,
    }
}

/// Usage in OpenAI shape.
pub fn usage_from_model(u: &Usage) -> wire::WireUsage {
    wire::WireUsage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total(),
        prompt_tokens_details: (u.cache_read_tokens.is_some() || u.cache_write_tokens.is_some())
            .then_some(wire::PromptTokensDetails {
                cached_tokens: u.cache_read_tokens,
                cache_write_tokens: u.cache_write_tokens,
            }),
        completion_tokens_details: u.reasoning_tokens.map(|r| wire::CompletionTokensDetails {
            reasoning_tokens: Some(r),
        }),
    }
}

/// Builds the client-facing non-streamed response.
pub fn response_from_model(resp: &ChatResponse) -> ChatCompletionResponse {
    let mut text = String::new();
    let mut reasoning = Vec::new();
    let mut tool_calls = Vec::new();
    for part in &resp.content {
        match part {
            Part::Text(t) => text.push_str(&t.text),
            Part::Reasoning(b) => reasoning.push(b),
            Part::ToolCall(c) => tool_calls.push(wire::ToolCall {
                id: c.id.clone(),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                },
                extra_content: c.provider_data.clone(),
            }),
            Part::Image(_) | Part::Audio(_) | Part::ToolResult(_) | Part::Opaque(_) => {}
        }
    }
    let (reasoning_content, reasoning_details) = reasoning_fields(&reasoning);
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(MessageContent::Text(text))
    };
    ChatCompletionResponse {
        id: resp.id.clone(),
        object: "chat.completion".to_owned(),
        created: resp.created,
        model: resp.model.clone(),
        choices: vec![Choice {
            index: 0,
            message: ChatMessage {
                role: "assistant".to_owned(),
                content,
                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                reasoning_content,
                reasoning_details,
                extra: annotations(&resp.content),
                ..ChatMessage::default()
            },
            finish_reason: Some(
                finish_reason_name(resp.finish_reason.as_ref().unwrap_or(&FinishReason::Stop))
                    .to_owned(),
            ),
            logprobs: (!resp.logprobs.is_empty())
                .then(|| serde_json::json!({"content": resp.logprobs, "refusal": null})),
        }],
        usage: resp.usage.as_ref().map(usage_from_model),
        system_fingerprint: None,
    }
}

/// `annotations` for the answer's web citations (other citations have no slot here).
fn annotations(content: &[Part]) -> serde_json::Map<String, serde_json::Value> {
    let cited = crate::citations::url_citations(content);
    let mut extra = serde_json::Map::new();
    if !cited.is_empty() {
        extra.insert(
            "annotations".to_owned(),
            cited.iter().map(|c| c.chat_annotation()).collect(),
        );
    }
    extra
}

/// Serializes to JSON bytes (infallible for these types; an error yields `{}`).
pub fn to_json_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai_chat::to_model::{request_to_model, response_to_model};
    use llm_proxy_api::model::{TextPart, ToolCall, ToolResult};
    use serde_json::Value;

    #[test]
    fn streamed_body_is_the_same_bytes_as_the_struct() {
        let original = json!({
            "model": "client-model",
            "messages": [
                {"role": "system", "content": "sys \"quoted\""},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "temperature": 0.5,
            "stream": true,
            "logprobs": true
        });
        let req = request_to_model(serde_json::from_value(original).unwrap()).unwrap();
        for model in ["gpt-4o", "odd \"model\",\"messages\":[]"] {
            let opts = EncodeOptions::default();
            let whole = serde_json::to_vec(&request_from_model(&req, model, opts)).unwrap();
            let streamed = request_body_from_model(&req, model, opts);
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(whole).unwrap()
            );
        }
        let empty = ChatRequest::default();
        let opts = EncodeOptions::default();
        assert_eq!(
            request_body_from_model(&empty, "m", opts),
            serde_json::to_vec(&request_from_model(&empty, "m", opts)).unwrap()
        );
    }

    #[test]
    fn request_round_trips_through_the_model() {
        let original = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "temperature": 0.5,
            "stream": false,
            "logprobs": true
        });
        let wire: ChatCompletionRequest = serde_json::from_value(original.clone()).unwrap();
        let model = request_to_model(wire).unwrap();
        let back = request_from_model(&model, "gpt-4o", EncodeOptions::default());
        let back = serde_json::to_value(&back).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn mid_conversation_system_stays_in_place_and_opaque_only_messages_are_skipped() {
        let opaque = Part::Opaque(llm_proxy_api::model::OpaquePart {
            protocol: "anthropic".into(),
            value: json!({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}),
        });
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "q"),
                Message::text(Role::System, "mid"),
                Message {
                    role: Role::Assistant,
                    content: vec![opaque],
                    name: None,
                },
                Message::text(Role::Assistant, "a"),
                Message::text(Role::System, "trailing"),
            ],
            ..ChatRequest::default()
        };
        let out = request_from_model(&req, "m", EncodeOptions::default());
        assert_eq!(
            serde_json::to_value(&out.messages).unwrap(),
            json!([
                {"role": "user", "content": "q"},
                {"role": "system", "content": "mid"},
                {"role": "assistant", "content": "a"},
                {"role": "system", "content": "trailing"}
            ])
        );
    }

    #[test]
    fn tool_results_and_errors_become_tool_messages() {
        let req = ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    Part::ToolResult(ToolResult {
                        cache_control: None,
                        call_id: "c9".into(),
                        name: None,
                        content: vec![Part::Text(TextPart::new("disk full"))],
                        is_error: true,
                    }),
                    Part::Text(TextPart::new("now?")),
                ],
                name: None,
            }],
            ..ChatRequest::default()
        };
        let out = request_from_model(&req, "m", EncodeOptions::default());
        let v = serde_json::to_value(&out.messages).unwrap();
        assert_eq!(
            v,
            json!([
                {"role": "tool", "tool_call_id": "c9", "content": "Error: disk full"},
                {"role": "user", "content": "now?"}
            ])
        );
    }

    #[test]
    fn response_keeps_signed_reasoning_and_provider_data() {
        let resp = ChatResponse {
            id: "r".into(),
            model: "m".into(),
            created: 1,
            content: vec![
                Part::Reasoning(ReasoningBlock {
                    text: "t".into(),
                    signature: Some("sig".into()),
                    ..Default::default()
                }),
                Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: "c".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                    provider_data: Some(json!({"thoughtSignature": "g"})),
                }),
            ],
            finish_reason: Some(FinishReason::ToolCalls),
            stop_sequence: None,
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
            logprobs: Vec::new(),
        };
        let wire = response_from_model(&resp);
        let v = serde_json::to_value(&wire).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(v["choices"][0]["message"]["reasoning_content"], "t");
        assert_eq!(
            v["choices"][0]["message"]["reasoning_details"][0]["signature"],
            "sig"
        );
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["extra_content"]["thoughtSignature"],
            "g"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["total_tokens"], 7);
        // and back: the client echoes the message in the next turn
        let back = response_to_model(serde_json::from_value(v).unwrap(), "m");
        assert_eq!(back.content, resp.content);
    }

    #[test]
    fn logprobs_and_web_citations_reach_a_chat_client() {
        let upstream = json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105],
                    "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}]}],
                    "refusal": null}}]});
        let resp = response_to_model(serde_json::from_value(upstream.clone()).unwrap(), "m");
        assert_eq!(resp.logprobs.len(), 1);
        let back = serde_json::to_value(response_from_model(&resp)).unwrap();
        assert_eq!(
            back["choices"][0]["logprobs"],
            upstream["choices"][0]["logprobs"]
        );

        let mut cited = TextPart::new("Blue.");
        cited.citations = vec![
            json!({"type": "web_search_result_location", "url": "https://a.example", "title": "A"}),
            json!({"type": "char_location", "cited_text": "x"}),
        ];
        let resp = ChatResponse {
            content: vec![Part::Text(TextPart::new("So: ")), Part::Text(cited)],
            logprobs: Vec::new(),
            ..resp
        };
        let back = serde_json::to_value(response_from_model(&resp)).unwrap();
        assert_eq!(back["choices"][0]["message"]["content"], "So: Blue.");
        assert_eq!(
            back["choices"][0]["message"]["annotations"],
            json!([{"type": "url_citation", "url_citation": {
                "start_index": 4, "end_index": 9, "url": "https://a.example", "title": "A"}}])
        );
        assert!(back["choices"][0].get("logprobs").is_none());
    }
}
