//! Gemini wire -> canonical model: client requests, and upstream responses as the events their
//! parts stand for (shared by the non-streamed decoder and the SSE decoder, so both give the
//! same canonical answer).

use llm_proxy_api::model::{
    ChatRequest, ChatResponse, FinishReason, ImagePart, MediaSource, Message, Part, ReasoningBlock,
    ReasoningConfig, ResponseFormat, Role, Sampling, TextPart, ToolCall, ToolChoice,
    ToolDefinition, ToolResult, Usage,
};
use llm_proxy_api::stream::{Collector, StreamEvent};
use serde_json::{Map, Value, json};

use super::PROTOCOL;
use super::schema::openapi_to_json_schema;
use super::types::{
    self as wire, Content, FunctionCallingConfig, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, ThinkingConfig, UsageMetadata,
};
use crate::FieldError;
use crate::carried::{Carried, Opened, UNREADABLE_NOTE};
use crate::openai_responses::Sealer;

/// Provider data carrying a Gemini thought signature, in the shape of Google's own
/// OpenAI-compatible endpoint (`extra_content.google.thought_signature`).
pub fn thought_signature_data(signature: &str) -> Value {
    json!({ "google": { "thought_signature": signature } })
}

/// The Gemini thought signature in provider data, if it holds one (Google's shape, or a bare
/// `thoughtSignature` / `thought_signature` key).
pub fn thought_signature_of(data: &Value) -> Option<&str> {
    let google = data.get("google").unwrap_or(data);
    google
        .get("thought_signature")
        .or_else(|| google.get("thoughtSignature"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The `thoughtSignature` carrying a block's non-Gemini state (another provider's signature,
/// encrypted reasoning or provider data) to a Gemini client, tagged with its origin and sealed
/// as valid base64, so it comes back on the next turn (see [`crate::carried`]). `None` for
/// Gemini's own state and for blocks without any.
pub fn carry_reasoning(
    b: &ReasoningBlock,
    model: Option<&str>,
    sealer: &dyn Sealer,
) -> Option<String> {
    let foreign_data = b
        .provider_data
        .as_ref()
        .is_some_and(|d| thought_signature_of(d).is_none());
    if b.signature.is_none() && b.redacted.is_none() && !foreign_data {
        return None;
    }
    let mut carried = Carried::of_block(b, model);
    if !foreign_data {
        carried.provider_data = None;
    }
    carried.seal_base64(sealer)
}

/// A tool call's non-Gemini provider data, sealed for the `thoughtSignature` of its
/// `functionCall` part; a Gemini signature goes there as it is.
pub fn call_signature(data: &Value, model: Option<&str>, sealer: &dyn Sealer) -> Option<String> {
    match thought_signature_of(data) {
        Some(sig) => Some(sig.to_owned()),
        None => Carried::of_call(data, model).seal_base64(sealer),
    }
}

/// Opens the sealed `thoughtSignature`s of a client request; what does not open is noted.
struct Opener<'a> {
    sealer: &'a dyn Sealer,
    lossy: &'a mut Vec<String>,
}

impl Opener<'_> {
    fn open(&mut self, signature: &str) -> Opened {
        let opened = Carried::open_base64(signature, self.sealer);
        if opened == Opened::Unreadable && !self.lossy.iter().any(|n| n == UNREADABLE_NOTE) {
            self.lossy.push(UNREADABLE_NOTE.to_owned());
        }
        opened
    }
}

/// Converts a client request to the canonical model. The model comes from the URL path
/// (`models/{model}:generateContent`); the caller sets `stream` from the endpoint.
/// Thought signatures the proxy sealed (other providers' reasoning state) are opened with
/// `sealer`; what does not open is dropped and noted in `lossy`.
pub fn request_to_model(
    req: GenerateContentRequest,
    model_from_path: &str,
    sealer: &dyn Sealer,
    lossy: &mut Vec<String>,
) -> Result<ChatRequest, FieldError> {
    let mut messages = Vec::with_capacity(req.contents.len() + 1);
    if let Some(system) = req.system_instruction {
        let content: Vec<Part> = system
            .parts
            .into_iter()
            .filter_map(|p| p.text)
            .map(|t| Part::Text(TextPart::new(t)))
            .collect();
        if !content.is_empty() {
            messages.push(Message {
                role: Role::System,
                content,
                name: None,
            });
        }
    }
    let mut opener = Opener { sealer, lossy };
    contents_to_messages(req.contents, &mut opener, &mut messages)?;

    // Fields without a canonical slot travel in `extra` under their wire names, so a Gemini
    // upstream gets them back (see `from_model::apply_passthrough`).
    let mut extra = req.extra;
    let mut tools = Vec::new();
    let mut other_tools = Vec::new();
    for (i, tool) in req.tools.unwrap_or_default().into_iter().enumerate() {
        for (j, decl) in tool
            .function_declarations
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if decl.name.is_empty() {
                return Err(FieldError::new(
                    "function declarations need a name",
                    format!("tools[{i}].functionDeclarations[{j}].name"),
                ));
            }
            let parameters = match (decl.parameters_json_schema, decl.parameters) {
                (Some(schema), _) => schema,
                (None, Some(schema)) => openapi_to_json_schema(&schema),
                (None, None) => json!({"type": "object", "properties": {}}),
            };
            tools.push(ToolDefinition {
                name: decl.name,
                description: decl.description,
                parameters,
                strict: None,
                cache_control: None,
            });
        }
        if !tool.extra.is_empty() {
            other_tools.push(Value::Object(tool.extra));
        }
    }
    if !other_tools.is_empty() {
        extra.insert("tools".to_owned(), Value::Array(other_tools));
    }

    let mut tool_choice = None;
    if let Some(config) = req.tool_config {
        if let Some(fc) = &config.function_calling_config {
            tool_choice = tool_choice_to_model(fc)?;
        }
        if !config.extra.is_empty() {
            extra.insert("toolConfig".to_owned(), Value::Object(config.extra));
        }
    }
    if let Some(settings) = req.safety_settings {
        extra.insert("safetySettings".to_owned(), Value::Array(settings));
    }
    if let Some(cached) = req.cached_content {
        extra.insert("cachedContent".to_owned(), Value::String(cached));
    }

    let gc = req.generation_config.unwrap_or_default();
    let response_format = response_format_to_model(&gc);
    let GenerationConfig {
        temperature,
        top_p,
        top_k,
        candidate_count,
        max_output_tokens,
        stop_sequences,
        presence_penalty,
        frequency_penalty,
        seed,
        thinking_config,
        extra: gc_extra,
        ..
    } = gc;
    if !gc_extra.is_empty() {
        extra.insert("generationConfig".to_owned(), Value::Object(gc_extra));
    }

    Ok(ChatRequest {
        cache: Default::default(),
        model: model_from_path
            .strip_prefix("models/")
            .unwrap_or(model_from_path)
            .to_owned(),
        messages,
        stream: false,
        tools,
        tool_choice,
        parallel_tool_calls: None,
        sampling: Sampling {
            temperature,
            top_p,
            top_k: top_k.filter(|k| *k >= 0.0).map(|k| k.round() as u64),
            presence_penalty,
            frequency_penalty,
            seed,
            n: candidate_count,
        },
        max_tokens: max_output_tokens,
        stop: stop_sequences.unwrap_or_default(),
        response_format,
        reasoning: thinking_config.map(reasoning_to_model),
        metadata: Map::new(),
        user: None,
        body_patches: Default::default(),
        extra_protocol: (!extra.is_empty()).then(|| PROTOCOL.to_owned()),
        extra,
    })
}

fn tool_choice_to_model(fc: &FunctionCallingConfig) -> Result<Option<ToolChoice>, FieldError> {
    let names = fc.allowed_function_names.as_deref().unwrap_or_default();
    let mode = fc.mode.as_deref().map(str::to_ascii_uppercase);
    Ok(match mode.as_deref() {
        None | Some("MODE_UNSPECIFIED") => None,
        // VALIDATED constrains calls to the schema but lets the model choose: auto for us.
        Some("AUTO" | "VALIDATED") => Some(ToolChoice::Auto),
        Some("NONE") => Some(ToolChoice::None),
        Some("ANY") => Some(match names {
            [one] => ToolChoice::Function(one.clone()),
            _ => ToolChoice::Required,
        }),
        Some(other) => {
            return Err(FieldError::new(
                format!("unknown function calling mode '{other}'"),
                "toolConfig.functionCallingConfig.mode",
            ));
        }
    })
}

fn response_format_to_model(gc: &GenerationConfig) -> Option<ResponseFormat> {
    let schema = match (&gc.response_json_schema, &gc.response_schema) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(s)) => Some(openapi_to_json_schema(s)),
        (None, None) => None,
    };
    match (gc.response_mime_type.as_deref(), schema) {
        (_, Some(schema)) => Some(ResponseFormat::JsonSchema {
            name: "response".to_owned(),
            schema,
            strict: None,
        }),
        (Some("application/json"), None) => Some(ResponseFormat::JsonObject),
        (Some("text/plain"), None) => Some(ResponseFormat::Text),
        _ => None,
    }
}

fn reasoning_to_model(tc: ThinkingConfig) -> ReasoningConfig {
    ReasoningConfig {
        effort: tc
            .thinking_level
            .map(|l| l.to_ascii_lowercase())
            .filter(|l| l != "thinking_level_unspecified"),
        // -1 means "dynamic": no budget, the model decides.
        budget_tokens: tc.thinking_budget.filter(|b| *b > 0).map(|b| b as u64),
        disabled: tc.thinking_budget == Some(0),
        adaptive: tc.thinking_budget.is_some_and(|b| b < 0),
        include_thoughts: tc.include_thoughts,
    }
}

/// A function call seen earlier in the conversation, for matching responses without ids.
struct SeenCall {
    id: String,
    name: String,
    answered: bool,
}

fn contents_to_messages(
    contents: Vec<Content>,
    opener: &mut Opener<'_>,
    out: &mut Vec<Message>,
) -> Result<(), FieldError> {
    let mut calls: Vec<SeenCall> = Vec::new();
    for (i, content) in contents.into_iter().enumerate() {
        let role = match content.role.as_deref() {
            None | Some("" | "user" | "function") => Role::User,
            Some("model") => Role::Assistant,
            Some(other) => {
                return Err(FieldError::new(
                    format!("unknown content role '{other}' (expected 'user' or 'model')"),
                    format!("contents[{i}].role"),
                ));
            }
        };
        // functionResponse parts become tool messages; the rest keeps the content's role, and
        // the order of the two runs is preserved.
        // Sized for the usual content, all of one kind: no room for four parts per message.
        let mut current: Vec<Part> = Vec::with_capacity(content.parts.len());
        let mut results: Vec<Part> = Vec::new();
        for (j, part) in content.parts.into_iter().enumerate() {
            if let Some(fr) = part.function_response {
                flush(role, &mut current, out);
                let call_id = match_call_id(&mut calls, fr.id.as_deref(), &fr.name)
                    .unwrap_or_else(|| fr.id.clone().unwrap_or_else(|| format!("call_{i}_{j}")));
                let is_error = fr
                    .response
                    .as_object()
                    .is_some_and(|o| o.len() == 1 && o.contains_key("error"));
                results.push(Part::ToolResult(ToolResult {
                    cache_control: None,
                    call_id,
                    name: Some(fr.name),
                    content: vec![Part::Text(TextPart::new(fr.response.to_string()))],
                    is_error,
                }));
                continue;
            }
            flush(Role::Tool, &mut results, out);
            let signature = part.thought_signature.as_deref().filter(|s| !s.is_empty());
            let opened = signature.map_or(Opened::Native, |sig| opener.open(sig));
            // A real Gemini signature (not the proxy's) is Gemini's provider data.
            let native = signature
                .filter(|_| opened == Opened::Native)
                .map(thought_signature_data);
            let carried = match opened {
                Opened::Ours(c) => Some(c),
                _ => None,
            };
            if let Some(call) = part.function_call {
                let id = call
                    .id
                    .filter(|id| !id.is_empty())
                    // Deterministic, so a replayed history keeps the same ids (prompt caches).
                    .unwrap_or_else(|| format!("call_{i}_{j}"));
                calls.push(SeenCall {
                    id: id.clone(),
                    name: call.name.clone(),
                    answered: false,
                });
                let mut provider_data = native;
                if let Some(c) = carried {
                    if let Some(block) = c.block(String::new()) {
                        current.push(Part::Reasoning(block));
                    }
                    provider_data = c.call_provider_data;
                }
                current.push(Part::ToolCall(ToolCall {
                    cache_control: None,
                    id,
                    name: call.name,
                    arguments: args_text(call.args),
                    provider_data,
                }));
                continue;
            }
            if part.thought == Some(true) {
                let text = part.text.unwrap_or_default();
                match carried {
                    Some(c) => push_carried(&mut current, text, &c),
                    None => current.push(Part::Reasoning(ReasoningBlock {
                        text,
                        provider_data: native,
                        ..ReasoningBlock::default()
                    })),
                }
                continue;
            }
            // A signature on a non-thought part: a provider-data-only reasoning block just
            // before it, which `from_model` puts back on the next part.
            if let Some(c) = carried {
                push_carried(&mut current, String::new(), &c);
            } else if let Some(data) = native {
                current.push(Part::Reasoning(ReasoningBlock {
                    provider_data: Some(data),
                    ..ReasoningBlock::default()
                }));
            }
            if let Some(blob) = part.inline_data {
                current.push(Part::media(MediaSource::Base64 {
                    media_type: blob.mime_type,
                    data: blob.data,
                }));
            } else if let Some(file) = part.file_data {
                current.push(Part::Image(ImagePart {
                    cache_control: None,
                    source: MediaSource::Url { url: file.file_uri },
                    detail: None,
                    document: None,
                }));
            } else if let Some(text) = part.text.or_else(|| {
                code_text(
                    part.executable_code.as_ref(),
                    part.code_execution_result.as_ref(),
                )
            }) && !text.is_empty()
            {
                current.push(Part::Text(TextPart::new(text)));
            }
        }
        flush(role, &mut current, out);
        flush(Role::Tool, &mut results, out);
    }
    Ok(())
}

/// A thought part whose signature carries another provider's reasoning. A streamed signature
/// arrives as its own empty thought part after the text; a client that kept the two parts
/// apart gets them joined again, so the text and its signature travel together.
fn push_carried(current: &mut Vec<Part>, text: String, carried: &Carried) {
    let Some(block) = carried.block(text) else {
        return;
    };
    if block.text.is_empty()
        && let Some(Part::Reasoning(last)) = current.last_mut()
        && last.signature.is_none()
        && last.redacted.is_none()
        && last.provider_data.is_none()
        && !last.text.is_empty()
    {
        last.signature = block.signature;
        last.redacted = block.redacted;
        last.provider_data = block.provider_data;
        return;
    }
    current.push(Part::Reasoning(block));
}

fn flush(role: Role, parts: &mut Vec<Part>, out: &mut Vec<Message>) {
    if !parts.is_empty() {
        out.push(Message {
            role,
            content: std::mem::take(parts),
            name: None,
        });
    }
}

/// The id of the call a function response answers: the call with the same id, else the
/// oldest unanswered call of the same name (Gemini usually sends no ids).
fn match_call_id(calls: &mut [SeenCall], id: Option<&str>, name: &str) -> Option<String> {
    let slot = id
        .and_then(|id| calls.iter().position(|c| c.id == id))
        .or_else(|| calls.iter().position(|c| !c.answered && c.name == name))?;
    calls[slot].answered = true;
    Some(calls[slot].id.clone())
}

/// Server-side code execution parts, rendered as fenced text (no canonical slot for them).
fn code_text(code: Option<&Value>, result: Option<&Value>) -> Option<String> {
    if let Some(code) = code {
        let lang = code
            .get("language")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = code.get("code").and_then(Value::as_str).unwrap_or("");
        return Some(format!("\n```{lang}\n{body}\n```\n"));
    }
    let output = result?.get("output").and_then(Value::as_str).unwrap_or("");
    Some(format!("\n```output\n{output}\n```\n"))
}

/// Function-call arguments as JSON text (`{}` when absent).
fn args_text(args: Option<Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// Finish reason from its Gemini spelling.
pub fn finish_reason_to_model(s: &str) -> FinishReason {
    match s {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        other => FinishReason::Other(other.to_owned()),
    }
}

/// Usage from Gemini's counts: output includes thoughts (Gemini counts them apart).
pub fn usage_to_model(u: &UsageMetadata) -> Usage {
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    Usage {
        input_tokens: u.prompt_token_count.unwrap_or(0)
            + u.tool_use_prompt_token_count.unwrap_or(0),
        output_tokens: u.candidates_token_count.unwrap_or(0) + thoughts,
        reasoning_tokens: u.thoughts_token_count,
        cache_read_tokens: u.cached_content_token_count,
        cache_write_tokens: None,
    }
}

/// Turns response frames into events. One instance per answer: it numbers tool calls across
/// frames and keeps the last usage and finish reason for the end.
#[derive(Debug, Default)]
pub(crate) struct ResponseEvents {
    started: bool,
    next_call: u32,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ResponseEvents {
    /// Events of one frame (a whole response is one frame).
    pub(crate) fn frame(&mut self, resp: GenerateContentResponse, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: resp.response_id,
                model: resp.model_version,
            });
        }
        if let Some(u) = &resp.usage_metadata {
            self.usage = Some(usage_to_model(u));
        }
        if resp.candidates.is_empty()
            && let Some(reason) = resp.prompt_feedback.and_then(|f| f.block_reason)
        {
            // A blocked prompt has no candidates, only the reason.
            self.finish = Some(match reason.as_str() {
                "BLOCK_REASON_UNSPECIFIED" => FinishReason::Other(reason),
                _ => FinishReason::ContentFilter,
            });
        }
        // Only the first candidate is carried (the canonical answer has one choice).
        if let Some(candidate) = resp.candidates.into_iter().next() {
            // Logprobs lead the text they score.
            let logprobs = candidate
                .extra
                .get("logprobsResult")
                .map(logprobs_to_model)
                .unwrap_or_default();
            if !logprobs.is_empty() {
                out.push(StreamEvent::Logprobs { content: logprobs });
            }
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                self.part(part, out);
            }
            if let Some(reason) = candidate.finish_reason.filter(|r| !r.is_empty()) {
                self.finish = Some(finish_reason_to_model(&reason));
            }
        }
    }

    fn part(&mut self, part: wire::Part, out: &mut Vec<StreamEvent>) {
        let signature = part
            .thought_signature
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(thought_signature_data);
        if let Some(call) = part.function_call {
            let index = self.next_call;
            self.next_call += 1;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(llm_proxy_api::ids::tool_call_id),
                name: call.name,
                provider_data: signature,
            });
            out.push(StreamEvent::ToolCallDelta {
                index,
                arguments: args_text(call.args),
            });
            out.push(StreamEvent::ToolCallEnd { index });
            return;
        }
        if part.thought == Some(true) {
            if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::ReasoningDelta { text });
            }
            if let Some(data) = signature {
                out.push(StreamEvent::ReasoningProviderData { data });
            }
            return;
        }
        if let Some(data) = signature {
            out.push(StreamEvent::ReasoningProviderData { data });
        }
        // Media in answers (image generation, audio): one whole event per part.
        if let Some(blob) = part.inline_data {
            out.push(StreamEvent::Media {
                source: MediaSource::Base64 {
                    media_type: blob.mime_type,
                    data: blob.data,
                },
            });
            return;
        }
        if let Some(file) = part.file_data {
            out.push(StreamEvent::Media {
                source: MediaSource::Url { url: file.file_uri },
            });
            return;
        }
        if let Some(text) = part.text.or_else(|| {
            code_text(
                part.executable_code.as_ref(),
                part.code_execution_result.as_ref(),
            )
        }) && !text.is_empty()
        {
            out.push(StreamEvent::TextDelta { text });
        }
    }

    /// Closing events: usage, then the finish reason (`STOP` after function calls means the
    /// model called tools).
    pub(crate) fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(u) = self.usage.take() {
            out.push(StreamEvent::Usage(u));
        }
        if let Some(reason) = self.finish.take() {
            let reason = match reason {
                FinishReason::Stop if self.next_call > 0 => FinishReason::ToolCalls,
                r => r,
            };
            out.push(StreamEvent::Finish { reason });
        }
    }
}

/// A candidate's `logprobsResult` (`chosenCandidates`, `topCandidates`) as OpenAI-shaped
/// token entries (`token`, `logprob`, `bytes: null`, `top_logprobs`).
pub fn logprobs_to_model(result: &Value) -> Vec<Value> {
    let entry = |c: &Value| {
        serde_json::json!({"token": c.get("token").cloned().unwrap_or_default(),
            "logprob": c.get("logProbability").cloned().unwrap_or_default(), "bytes": null})
    };
    let list = |v: Option<&Value>| v.and_then(Value::as_array).cloned().unwrap_or_default();
    let top = list(result.get("topCandidates"));
    list(result.get("chosenCandidates"))
        .iter()
        .enumerate()
        .map(|(i, chosen)| {
            let mut e = entry(chosen);
            let alternatives: Vec<Value> = list(top.get(i).and_then(|t| t.get("candidates")))
                .iter()
                .map(entry)
                .collect();
            e["top_logprobs"] = Value::Array(alternatives);
            e
        })
        .collect()
}

/// Converts an upstream non-streamed response: the same events as the stream, collected.
pub fn response_to_model(resp: GenerateContentResponse, fallback_model: &str) -> ChatResponse {
    let mut events = Vec::new();
    let mut decoder = ResponseEvents::default();
    decoder.frame(resp, &mut events);
    decoder.end(&mut events);
    let mut collector = Collector::new();
    for event in events {
        collector.push(event);
    }
    collector.finish(fallback_model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai_responses::opaque::TestSealer;

    fn parse(v: Value) -> GenerateContentRequest {
        serde_json::from_value(v).unwrap()
    }

    fn to_model(req: GenerateContentRequest, model: &str) -> Result<ChatRequest, FieldError> {
        request_to_model(req, model, &TestSealer(0), &mut Vec::new())
    }

    #[test]
    fn request_maps_roles_config_and_passthrough() {
        let req = parse(json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "hello"}]},
                {"parts": [{"text": "bye"}]}
            ],
            "tools": [{"googleSearch": {}}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
            "generationConfig": {
                "temperature": 0.1, "topK": 40.0, "candidateCount": 1, "maxOutputTokens": 99,
                "stopSequences": ["END"], "seed": 3, "responseMimeType": "application/json",
                "thinkingConfig": {"thinkingBudget": 0},
                "responseModalities": ["TEXT"]
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "cachedContent": "cachedContents/abc",
            "labels": {"team": "x"}
        }));
        let m = to_model(req, "models/gemini-2.5-flash").unwrap();
        assert_eq!(m.model, "gemini-2.5-flash");
        assert_eq!(m.messages.len(), 4);
        assert_eq!(m.messages[0].role, Role::System);
        assert_eq!(m.messages[2].role, Role::Assistant);
        assert_eq!(m.messages[3].role, Role::User, "absent role means user");
        assert_eq!(m.tool_choice, Some(ToolChoice::Function("f".into())));
        assert_eq!(m.sampling.top_k, Some(40));
        assert_eq!(m.sampling.n, Some(1));
        assert_eq!(m.max_tokens, Some(99));
        assert_eq!(m.stop, vec!["END".to_owned()]);
        assert_eq!(m.response_format, Some(ResponseFormat::JsonObject));
        let r = m.reasoning.as_ref().unwrap();
        assert!(r.disabled);
        assert_eq!(r.budget_tokens, None);
        let extra = m.extra_for(PROTOCOL).unwrap();
        assert_eq!(extra["tools"], json!([{"googleSearch": {}}]));
        assert_eq!(
            extra["generationConfig"],
            json!({"responseModalities": ["TEXT"]})
        );
        assert_eq!(extra["cachedContent"], "cachedContents/abc");
        assert_eq!(extra["safetySettings"][0]["threshold"], "BLOCK_NONE");
        assert_eq!(extra["labels"], json!({"team": "x"}));
    }

    #[test]
    fn thinking_config_maps_budget_level_and_dynamic() {
        let r = reasoning_to_model(ThinkingConfig {
            thinking_budget: Some(2048),
            include_thoughts: Some(true),
            thinking_level: None,
        });
        assert_eq!(
            (r.budget_tokens, r.disabled, r.include_thoughts),
            (Some(2048), false, Some(true))
        );
        let r = reasoning_to_model(ThinkingConfig {
            thinking_budget: Some(-1),
            include_thoughts: None,
            thinking_level: Some("HIGH".into()),
        });
        assert_eq!(
            (r.budget_tokens, r.disabled, r.effort.as_deref()),
            (None, false, Some("high"))
        );
    }

    #[test]
    fn function_responses_without_ids_match_earlier_calls_by_name() {
        let req = parse(json!({"contents": [
            {"role": "user", "parts": [{"text": "weather in two cities"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 3}}},
                {"functionResponse": {"name": "weather", "response": {"error": "down"}}},
                {"text": "and?"}
            ]}
        ]}));
        let m = to_model(req, "gemini-2.5-pro").unwrap();
        assert_eq!(m.messages.len(), 4);
        let calls: Vec<_> = m.messages[1].tool_calls().collect();
        assert_eq!(calls[0].id, "call_1_0");
        assert_eq!(calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(calls[0].provider_data, Some(thought_signature_data("c2ln")));
        assert_eq!(calls[1].id, "call_1_1");
        assert_eq!(calls[1].provider_data, None);
        assert_eq!(m.messages[2].role, Role::Tool);
        match &m.messages[2].content[..] {
            [Part::ToolResult(a), Part::ToolResult(b)] => {
                assert_eq!(
                    (a.call_id.as_str(), a.name.as_deref()),
                    ("call_1_0", Some("weather"))
                );
                assert_eq!(a.joined_text(), r#"{"temp":3}"#);
                assert!(!a.is_error);
                assert_eq!(b.call_id, "call_1_1");
                assert!(b.is_error);
            }
            other => panic!("expected two results, got {other:?}"),
        }
        assert_eq!(m.messages[3].role, Role::User);
        assert_eq!(m.messages[3].joined_text(), "and?");
    }

    #[test]
    fn function_responses_with_client_ids_still_find_the_call() {
        // Gemini CLI invents its own ids when the call had none.
        let req = parse(json!({"contents": [
            {"role": "model", "parts": [{"functionCall": {"id": "abc", "name": "ls", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "abc", "name": "ls", "response": {"output": "a"}}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "cat", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "cat-123", "name": "cat", "response": {"output": "b"}}}]}
        ]}));
        let m = to_model(req, "m").unwrap();
        let ids: Vec<String> = m
            .messages
            .iter()
            .flat_map(|msg| msg.content.iter())
            .filter_map(|p| match p {
                Part::ToolResult(r) => Some(r.call_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, vec!["abc".to_owned(), "call_2_0".to_owned()]);
    }

    #[test]
    fn thought_parts_and_signatures_become_reasoning_blocks() {
        let req = parse(json!({"contents": [{"role": "model", "parts": [
            {"text": "plan", "thought": true, "thoughtSignature": "dGg="},
            {"text": "answer", "thoughtSignature": "dHg="}
        ]}]}));
        let m = to_model(req, "m").unwrap();
        assert_eq!(
            m.messages[0].content,
            vec![
                Part::Reasoning(ReasoningBlock {
                    text: "plan".into(),
                    provider_data: Some(thought_signature_data("dGg=")),
                    ..ReasoningBlock::default()
                }),
                Part::Reasoning(ReasoningBlock {
                    provider_data: Some(thought_signature_data("dHg=")),
                    ..ReasoningBlock::default()
                }),
                Part::Text(TextPart::new("answer")),
            ]
        );
    }

    #[test]
    fn media_parts_map_by_mime_type() {
        let req = parse(json!({"contents": [{"parts": [
            {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
            {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x.png"}}
        ]}]}));
        let m = to_model(req, "m").unwrap();
        assert!(matches!(&m.messages[0].content[0], Part::Audio(a) if a.format == "wav"));
        assert!(
            matches!(&m.messages[0].content[1], Part::Image(ImagePart { source: MediaSource::Base64 { media_type, .. }, .. }) if media_type == "application/pdf")
        );
        assert!(
            matches!(&m.messages[0].content[2], Part::Image(ImagePart { source: MediaSource::Url { url }, .. }) if url == "gs://b/x.png")
        );
    }

    #[test]
    fn bad_role_and_mode_name_the_field() {
        let e = to_model(
            parse(json!({"contents": [{"role": "bot", "parts": []}]})),
            "m",
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("contents[0].role"));
        let e = to_model(
            parse(json!({"contents": [], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}})),
            "m",
        )
        .unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("toolConfig.functionCallingConfig.mode")
        );
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason_to_model("STOP"), FinishReason::Stop);
        assert_eq!(finish_reason_to_model("MAX_TOKENS"), FinishReason::Length);
        for r in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(
                finish_reason_to_model(r),
                FinishReason::ContentFilter,
                "{r}"
            );
        }
        assert_eq!(
            finish_reason_to_model("MALFORMED_FUNCTION_CALL"),
            FinishReason::Other("MALFORMED_FUNCTION_CALL".into())
        );
    }

    #[test]
    fn response_collects_like_the_stream() {
        let resp: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "hm", "thought": true},
                {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2ln"}
            ]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7,
                              "cachedContentTokenCount": 4, "totalTokenCount": 22},
            "modelVersion": "gemini-2.5-pro",
            "responseId": "r1"
        }))
        .unwrap();
        let r = response_to_model(resp, "fallback");
        assert_eq!((r.id.as_str(), r.model.as_str()), ("r1", "gemini-2.5-pro"));
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        assert!(matches!(&r.content[0], Part::Reasoning(b) if b.text == "hm"));
        match &r.content[1] {
            Part::ToolCall(c) => {
                assert!(c.id.starts_with("call_"));
                assert_eq!(c.arguments, r#"{"a":1}"#);
                assert_eq!(c.provider_data, Some(thought_signature_data("c2ln")));
            }
            other => panic!("expected a tool call, got {other:?}"),
        }
        assert_eq!(
            r.usage,
            Some(Usage {
                input_tokens: 10,
                output_tokens: 12,
                reasoning_tokens: Some(7),
                cache_read_tokens: Some(4),
                cache_write_tokens: None,
            })
        );
    }

    #[test]
    fn blocked_prompt_is_a_content_filter_finish() {
        let resp: GenerateContentResponse = serde_json::from_value(json!({
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}
        }))
        .unwrap();
        let r = response_to_model(resp, "m");
        assert_eq!(r.finish_reason, Some(FinishReason::ContentFilter));
        assert!(r.content.is_empty());
        assert_eq!(r.model, "m");
    }

    #[test]
    fn signature_helpers_accept_known_shapes() {
        assert_eq!(
            thought_signature_of(&thought_signature_data("a")),
            Some("a")
        );
        assert_eq!(
            thought_signature_of(&json!({"thoughtSignature": "b"})),
            Some("b")
        );
        assert_eq!(thought_signature_of(&json!({"other": 1})), None);
        assert_eq!(
            thought_signature_of(&json!({"google": {"thought_signature": ""}})),
            None
        );
    }

    #[test]
    fn carried_signatures_of_other_providers_come_back_as_signatures() {
        let sealer = TestSealer(8);
        let sig = |b: ReasoningBlock| carry_reasoning(&b, Some("claude-x"), &sealer).unwrap();
        let signed = |s: &str| ReasoningBlock {
            signature: Some(s.into()),
            ..ReasoningBlock::default()
        };
        let call_data = json!({"openai_responses": {"id": "fc_1"}});
        let req = parse(json!({"contents": [
            {"role": "user", "parts": [{"text": "q"}]},
            {"role": "model", "parts": [
                {"text": "thinking", "thought": true},
                {"text": "", "thought": true, "thoughtSignature": sig(signed("EqQB"))},
                {"text": "", "thought": true, "thoughtSignature": sig(ReasoningBlock {
                    redacted: Some("enc".into()),
                    ..ReasoningBlock::default()
                })},
                {"text": "more", "thought": true, "thoughtSignature": sig(signed("S2"))},
                {"text": "answer"},
                {"functionCall": {"name": "f", "args": {}},
                 "thoughtSignature": call_signature(&call_data, None, &sealer)}
            ]},
            {"role": "user", "parts": [{"text": "next"}]}
        ]}));
        let mut lossy = Vec::new();
        let model = request_to_model(req, "m", &sealer, &mut lossy).unwrap();
        assert!(lossy.is_empty(), "{lossy:?}");
        let blocks: Vec<&ReasoningBlock> = model.messages[1]
            .content
            .iter()
            .filter_map(|p| match p {
                Part::Reasoning(b) => Some(b),
                _ => None,
            })
            .collect();
        assert_eq!(blocks.len(), 3, "{blocks:?}");
        assert_eq!(
            (blocks[0].text.as_str(), blocks[0].signature.as_deref()),
            ("thinking", Some("EqQB"))
        );
        assert_eq!(blocks[1].redacted.as_deref(), Some("enc"));
        assert_eq!(
            (blocks[2].text.as_str(), blocks[2].signature.as_deref()),
            ("more", Some("S2"))
        );
        assert!(blocks.iter().all(|b| b.provider_data.is_none()));
        let call = model.messages[1].tool_calls().next().unwrap();
        assert_eq!(call.provider_data, Some(call_data));
        // Gemini's own state is not carried; a real Gemini signature is Gemini's provider data.
        let gemini = ReasoningBlock {
            provider_data: Some(thought_signature_data("g")),
            ..ReasoningBlock::default()
        };
        assert_eq!(carry_reasoning(&gemini, None, &sealer), None);
        assert_eq!(
            call_signature(&thought_signature_data("g"), None, &sealer).as_deref(),
            Some("g")
        );
    }

    #[test]
    fn raw_json_or_foreign_sealed_signatures_are_dropped_with_a_note() {
        let sealer = TestSealer(8);
        let other = carry_reasoning(
            &ReasoningBlock {
                signature: Some("S".into()),
                ..ReasoningBlock::default()
            },
            None,
            &TestSealer(9),
        )
        .unwrap();
        for bad in [r#"llmproxy:{"signature":"forged"}"#.to_owned(), other] {
            let req = parse(json!({"contents": [
                {"role": "model", "parts": [{"text": "t", "thought": true, "thoughtSignature": bad}]}
            ]}));
            let mut lossy = Vec::new();
            let model = request_to_model(req, "m", &sealer, &mut lossy).unwrap();
            assert_eq!(lossy, vec![UNREADABLE_NOTE.to_owned()]);
            assert_eq!(
                model.messages[0].content,
                vec![Part::Reasoning(ReasoningBlock {
                    text: "t".into(),
                    ..ReasoningBlock::default()
                })]
            );
        }
    }

    #[test]
    fn logprobs_result_maps_to_openai_entries_and_back() {
        let result = json!({
            "chosenCandidates": [{"token": "Hi", "logProbability": -0.5}],
            "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.5},
                                              {"token": "Yo", "logProbability": -1.5}]}]});
        let answer = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]},
            "finishReason": "STOP", "logprobsResult": result}]});
        let resp = response_to_model(serde_json::from_value(answer).unwrap(), "g");
        assert_eq!(
            resp.logprobs,
            vec![
                json!({"token": "Hi", "logprob": -0.5, "bytes": null, "top_logprobs": [
                {"token": "Hi", "logprob": -0.5, "bytes": null},
                {"token": "Yo", "logprob": -1.5, "bytes": null}]})
            ]
        );
        let back = serde_json::to_value(crate::gemini::from_model::response_from_model(
            &resp,
            &crate::openai_responses::opaque::TestSealer(1),
        ))
        .unwrap();
        assert_eq!(back["candidates"][0]["logprobsResult"], result);
    }
}
