//! OpenAI Chat wire -> canonical model (client requests; upstream responses).

use llm_proxy_api::model::{
    AudioPart, ChatRequest, ChatResponse, FinishReason, ImagePart, MediaSource, Message, Part,
    PromptCache, ReasoningBlock, ResponseFormat, Role, Sampling, TextPart, ToolCall, ToolChoice,
    ToolDefinition, ToolResult, Usage,
};
use serde_json::Value;

use super::types::{
    self as wire, ChatCompletionRequest, ChatCompletionResponse, ContentPart, MessageContent,
    ReasoningDetail, Stop,
};
use crate::FieldError;

/// Protocol name used in `ChatRequest::extra_protocol`.
pub const PROTOCOL: &str = "openai_chat";

/// Converts a client request to the canonical model.
pub fn request_to_model(req: ChatCompletionRequest) -> Result<ChatRequest, FieldError> {
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        messages.push(message_to_model(m, i)?);
    }
    let tools = req
        .tools
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            if t.kind != "function" {
                return Err(FieldError::new(
                    format!("unsupported tool type '{}'", t.kind),
                    format!("tools[{i}].type"),
                ));
            }
            Ok(ToolDefinition {
                name: t.function.name,
                description: t.function.description,
                parameters: t
                    .function
                    .parameters
                    .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
                strict: t.function.strict,
                cache_control: None,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = req
        .tool_choice
        .as_ref()
        .map(tool_choice_to_model)
        .transpose()?;
    let stop = match req.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let response_format = req.response_format.map(|f| match f {
        wire::ResponseFormat::Text => ResponseFormat::Text,
        wire::ResponseFormat::JsonObject => ResponseFormat::JsonObject,
        wire::ResponseFormat::JsonSchema { json_schema } => ResponseFormat::JsonSchema {
            name: json_schema.name,
            schema: json_schema.schema,
            strict: json_schema.strict,
        },
    });
    // `reasoning_effort`, else a `reasoning` object (kept as written for OpenAI-chat upstreams).
    let reasoning = match req.reasoning_effort {
        Some(effort) => Some(llm_proxy_api::model::ReasoningConfig {
            disabled: effort == "none",
            effort: Some(crate::reasoning::canonical_effort(&effort)),
            ..Default::default()
        }),
        None => req
            .extra
            .get("reasoning")
            .and_then(crate::reasoning::from_reasoning_object),
    };
    Ok(ChatRequest {
        cache: PromptCache {
            key: req.prompt_cache_key.filter(|k| !k.is_empty()),
            client_breakpoints: false,
        },
        model: req.model,
        messages,
        stream: req.stream.unwrap_or(false),
        tools,
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        sampling: Sampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: None,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            seed: req.seed,
            n: req.n,
        },
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop,
        response_format,
        reasoning,
        metadata: req.metadata.unwrap_or_default(),
        user: req.user,
        body_patches: Default::default(),
        extra_protocol: (!req.extra.is_empty()).then(|| PROTOCOL.to_owned()),
        extra: req.extra,
    })
}

fn tool_choice_to_model(v: &Value) -> Result<ToolChoice, FieldError> {
    let bad = || FieldError::new("invalid tool_choice", "tool_choice");
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        Value::Object(o) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(|n| ToolChoice::Function(n.to_owned()))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn role_to_model(role: &str, i: usize) -> Result<Role, FieldError> {
    Ok(match role {
        "system" => Role::System,
        "developer" => Role::Developer,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => Role::Tool,
        other => {
            return Err(FieldError::new(
                format!("unknown message role '{other}'"),
                format!("messages[{i}].role"),
            ));
        }
    })
}

fn content_to_parts(content: Option<MessageContent>) -> Vec<Part> {
    match content {
        None => Vec::new(),
        Some(MessageContent::Text(t)) => vec![Part::Text(TextPart::new(t))],
        Some(MessageContent::Parts(parts)) => parts
            .into_iter()
            .map(|p| match p {
                ContentPart::Text {
                    text,
                    cache_control,
                } => Part::Text(TextPart {
                    cache_control,
                    ..TextPart::new(text)
                }),
                ContentPart::ImageUrl { image_url } => Part::Image(ImagePart {
                    cache_control: None,
                    source: MediaSource::from_url(&image_url.url),
                    detail: image_url.detail,
                    document: None,
                }),
                ContentPart::InputAudio { input_audio } => Part::Audio(AudioPart {
                    data: input_audio.data,
                    format: input_audio.format,
                }),
                ContentPart::Refusal { refusal } => Part::Text(TextPart::new(refusal)),
            })
            .collect(),
    }
}

/// Key of the provider data holding a `reasoning_details` item another provider family signed
/// or encrypted (its `format` names it), kept whole for OpenAI-compatible upstreams.
pub const DETAIL_KEY: &str = "reasoning_detail";

/// Whether a `reasoning_details` item's `format` (OpenRouter's provenance tag, e.g.
/// `anthropic-claude-v1`, `google-gemini-v1`, `openai-responses-v1`) says its signature or
/// encrypted data is Anthropic's. Items without a format are taken as Anthropic's, as before.
fn is_anthropic_format(d: &ReasoningDetail) -> bool {
    d.extra
        .get("format")
        .and_then(Value::as_str)
        .is_none_or(|f| f.starts_with("anthropic"))
}

/// One `reasoning_details` item as a reasoning block. Anthropic's signatures and redacted
/// thinking take the canonical slots, so an Anthropic upstream gets them back; another
/// family's (tagged by `format`) stay whole in provider data, so only an OpenAI-compatible
/// upstream gets them back and no other provider is sent state it would reject.
fn detail_to_model(d: ReasoningDetail) -> ReasoningBlock {
    let text = d.text.clone().or(d.summary.clone()).unwrap_or_default();
    if (d.signature.is_some() || d.data.is_some()) && !is_anthropic_format(&d) {
        let mut kept = d;
        kept.text = None;
        kept.summary = None;
        kept.index = None;
        let mut data = serde_json::Map::with_capacity(1);
        data.insert(
            DETAIL_KEY.to_owned(),
            serde_json::to_value(&kept).unwrap_or_default(),
        );
        return ReasoningBlock {
            text,
            provider_data: Some(Value::Object(data)),
            ..ReasoningBlock::default()
        };
    }
    ReasoningBlock {
        text,
        signature: d.signature,
        redacted: d.data,
        provider_data: d.provider_data,
    }
}

/// Reasoning blocks from `reasoning_details` (preferred, keeps signatures) or
/// `reasoning_content`.
pub(crate) fn reasoning_to_model(
    details: Option<Vec<ReasoningDetail>>,
    text: Option<String>,
) -> Vec<Part> {
    if let Some(details) = details.filter(|d| !d.is_empty()) {
        let mut blocks: Vec<ReasoningBlock> = details.into_iter().map(detail_to_model).collect();
        // A streamed answer, accumulated by the client, has its text in `reasoning_content`
        // and only the signatures in `reasoning_details`: the text belongs to the signed block.
        if let Some(t) = text.filter(|t| !t.is_empty())
            && blocks.iter().all(|b| b.text.is_empty())
            && let Some(first) = blocks.iter_mut().find(|b| b.redacted.is_none())
        {
            first.text = t;
        }
        return blocks.into_iter().map(Part::Reasoning).collect();
    }
    match text {
        Some(t) if !t.is_empty() => {
            vec![Part::Reasoning(ReasoningBlock {
                text: t,
                ..ReasoningBlock::default()
            })]
        }
        _ => Vec::new(),
    }
}

fn message_to_model(m: wire::ChatMessage, i: usize) -> Result<Message, FieldError> {
    let role = role_to_model(&m.role, i)?;
    if role == Role::Tool {
        let call_id = m.tool_call_id.ok_or_else(|| {
            FieldError::new(
                "tool messages need a 'tool_call_id'",
                format!("messages[{i}].tool_call_id"),
            )
        })?;
        return Ok(Message {
            role,
            content: vec![Part::ToolResult(ToolResult {
                cache_control: None,
                call_id,
                name: m.name,
                content: content_to_parts(m.content),
                is_error: false,
            })],
            name: None,
        });
    }
    // Built at its exact size: a conversation of many short messages would otherwise hold
    // room for four parts per message, several times the parsed body.
    let mut content = content_to_parts(m.content);
    let refusal = m.refusal.filter(|r| !r.is_empty());
    let calls = m.tool_calls.unwrap_or_default();
    let more = usize::from(refusal.is_some()) + calls.len();
    if role == Role::Assistant {
        let mut reasoning = reasoning_to_model(m.reasoning_details, m.reasoning_content);
        if !reasoning.is_empty() {
            reasoning.reserve_exact(content.len() + more);
            reasoning.append(&mut content);
            content = reasoning;
        }
    }
    content.reserve_exact(more);
    if let Some(r) = refusal {
        content.push(Part::Text(TextPart::new(r)));
    }
    for call in calls {
        content.push(Part::ToolCall(ToolCall {
            cache_control: None,
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
            provider_data: call.extra_content,
        }));
    }
    Ok(Message {
        role,
        content,
        name: m.name,
    })
}

/// Finish reason from its OpenAI spelling.
pub fn finish_reason_to_model(s: &str) -> FinishReason {
    match s {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Usage from its OpenAI shape.
pub fn usage_to_model(u: &wire::WireUsage) -> Usage {
    Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        reasoning_tokens: u.completion_tokens_details.and_then(|d| d.reasoning_tokens),
        cache_read_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens),
        cache_write_tokens: u.prompt_tokens_details.and_then(|d| d.cache_write_tokens),
    }
}

/// Converts an upstream non-streamed response.
pub fn response_to_model(resp: ChatCompletionResponse, fallback_model: &str) -> ChatResponse {
    let mut content = Vec::new();
    let mut finish_reason = None;
    let mut logprobs = Vec::new();
    if let Some(choice) = resp.choices.into_iter().next() {
        logprobs = logprob_entries(choice.logprobs);
        let m = choice.message;
        content.extend(reasoning_to_model(m.reasoning_details, m.reasoning_content));
        content.extend(content_to_parts(m.content));
        for call in m.tool_calls.unwrap_or_default() {
            content.push(Part::ToolCall(ToolCall {
                cache_control: None,
                id: call.id,
                name: call.function.name,
                arguments: call.function.arguments,
                provider_data: call.extra_content,
            }));
        }
        finish_reason = choice.finish_reason.as_deref().map(finish_reason_to_model);
    }
    ChatResponse {
        stop_sequence: None,
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
        created: if resp.created == 0 {
            llm_proxy_api::ids::unix_now()
        } else {
            resp.created
        },
        content,
        finish_reason,
        usage: resp.usage.as_ref().map(usage_to_model),
        logprobs,
    }
}

/// The token entries of a choice's `logprobs` (`{content: [...]}`).
pub fn logprob_entries(logprobs: Option<Value>) -> Vec<Value> {
    match logprobs {
        Some(Value::Object(mut o)) => match o.remove("content") {
            Some(Value::Array(entries)) => entries,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn messages_hold_no_spare_room_for_parts() {
        // A long conversation of short messages: spare capacity per message would multiply
        // the memory a parsed body takes.
        let req = request_to_model(parse(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "a", "reasoning_content": "r", "refusal": "no",
                 "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}
            ]
        })))
        .unwrap();
        let shape: Vec<(usize, usize)> = req
            .messages
            .iter()
            .map(|m| (m.content.len(), m.content.capacity()))
            .collect();
        assert_eq!(shape, [(1, 1), (4, 4), (2, 2)]);
    }

    #[test]
    fn request_maps_every_field_group() {
        let req = parse(json!({
            "model": "gpt-4o",
            "stream": true,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "reasoning_content": "hmm",
                 "tool_calls": [{"id": "c1", "type": "function",
                   "function": {"name": "look", "arguments": "{\"q\":1}"},
                   "extra_content": {"google": {"thought_signature": "sig"}}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "temperature": 0.2, "max_tokens": 10, "max_completion_tokens": 20,
            "stop": "END", "seed": 7, "reasoning_effort": "high",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}},
            "logprobs": true, "extra_body": {"session_id": "s"}
        }));
        let m = request_to_model(req).unwrap();
        assert!(m.stream);
        assert_eq!(m.messages.len(), 4);
        assert_eq!(m.messages[0].role, Role::System);
        assert!(
            matches!(&m.messages[1].content[1], Part::Image(ImagePart { source: MediaSource::Base64 { media_type, .. }, detail: Some(d), .. }) if media_type == "image/png" && d == "low")
        );
        let asst = &m.messages[2];
        assert!(matches!(&asst.content[0], Part::Reasoning(b) if b.text == "hmm"));
        let call = asst.tool_calls().next().unwrap();
        assert_eq!(call.arguments, "{\"q\":1}");
        assert_eq!(
            call.provider_data,
            Some(json!({"google": {"thought_signature": "sig"}}))
        );
        assert!(
            matches!(&m.messages[3].content[0], Part::ToolResult(r) if r.call_id == "c1" && r.joined_text() == "a cat")
        );
        assert_eq!(m.tool_choice, Some(ToolChoice::Function("look".into())));
        assert_eq!(m.max_tokens, Some(20), "max_completion_tokens wins");
        assert_eq!(m.stop, vec!["END".to_owned()]);
        assert_eq!(
            m.reasoning.as_ref().unwrap().effort.as_deref(),
            Some("high")
        );
        assert!(matches!(
            m.response_format,
            Some(ResponseFormat::JsonSchema {
                strict: Some(true),
                ..
            })
        ));
        assert_eq!(m.extra.get("logprobs"), Some(&json!(true)));
        assert!(m.extra_for(PROTOCOL).is_some());
    }

    #[test]
    fn bad_roles_and_tool_messages_name_the_param() {
        let err = request_to_model(parse(
            json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));
        let err = request_to_model(parse(
            json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}),
        ))
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn reasoning_details_keep_signatures() {
        let parts = reasoning_to_model(
            Some(vec![
                ReasoningDetail {
                    kind: "reasoning.text".into(),
                    text: Some("a".into()),
                    signature: Some("s".into()),
                    ..Default::default()
                },
                ReasoningDetail {
                    kind: "reasoning.encrypted".into(),
                    data: Some("enc".into()),
                    ..Default::default()
                },
            ]),
            Some("ignored".into()),
        );
        assert_eq!(parts.len(), 2);
        assert!(matches!(&parts[0], Part::Reasoning(b) if b.signature.as_deref() == Some("s")));
        assert!(matches!(&parts[1], Part::Reasoning(b) if b.redacted.as_deref() == Some("enc")));
    }

    #[test]
    fn other_families_details_stay_whole_in_provider_data() {
        let gemini: ReasoningDetail = serde_json::from_value(serde_json::json!({
            "type": "reasoning.encrypted", "data": "CiQBgemini", "format": "google-gemini-v1",
            "index": 1
        }))
        .unwrap();
        let claude: ReasoningDetail = serde_json::from_value(serde_json::json!({
            "type": "reasoning.text", "text": "t", "signature": "EqQB",
            "format": "anthropic-claude-v1", "index": 0
        }))
        .unwrap();
        let parts = reasoning_to_model(Some(vec![claude, gemini]), None);
        assert!(
            matches!(&parts[0], Part::Reasoning(b) if b.signature.as_deref() == Some("EqQB") && b.provider_data.is_none())
        );
        let Part::Reasoning(b) = &parts[1] else {
            panic!("{parts:?}")
        };
        assert_eq!((b.signature.as_ref(), b.redacted.as_ref()), (None, None));
        assert_eq!(
            b.provider_data,
            Some(serde_json::json!({DETAIL_KEY: {
                "type": "reasoning.encrypted", "data": "CiQBgemini", "format": "google-gemini-v1"
            }}))
        );
        // Back to an OpenAI-compatible upstream (or client) as it came.
        let detail = crate::openai_chat::from_model::reasoning_detail(b, 1);
        assert_eq!(
            serde_json::to_value(&detail).unwrap(),
            serde_json::json!({"type": "reasoning.encrypted", "data": "CiQBgemini",
                               "format": "google-gemini-v1", "index": 1})
        );
    }

    #[test]
    fn streamed_reasoning_text_joins_its_signature_only_detail() {
        let parts = reasoning_to_model(
            Some(vec![ReasoningDetail {
                kind: "reasoning.text".into(),
                signature: Some("s".into()),
                index: Some(0),
                ..Default::default()
            }]),
            Some("thought".into()),
        );
        assert!(
            matches!(&parts[..], [Part::Reasoning(b)] if b.text == "thought" && b.signature.as_deref() == Some("s")),
            "{parts:?}"
        );
    }
}
