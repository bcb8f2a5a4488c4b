//! Canonical model -> Gemini wire (upstream requests; client responses): contents and roles,
//! function calls and responses, thought signatures back on the right part, tools with
//! sanitised schemas, generation and thinking config.

use std::collections::HashMap;

use llm_proxy_api::model::{
    AudioPart, ChatRequest, ChatResponse, Extra, FinishReason, ImagePart, MediaSource, Message,
    Part, ReasoningBlock, ReasoningConfig, ResponseFormat, Role, ToolCall, ToolChoice, ToolResult,
    Usage,
};
use serde_json::{Value, json};

use super::PROTOCOL;
use super::schema::sanitize_schema;
use super::to_model::{call_signature, carry_reasoning, thought_signature_of};
use super::types::{
    self as wire, Blob, Candidate, Content, FileData, FunctionCall, FunctionCallingConfig,
    FunctionDeclaration, FunctionResponse, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, ThinkingConfig, Tool, ToolConfig, UsageMetadata,
};
use crate::openai_responses::Sealer;

/// Builds the upstream request body (the model goes in the URL). What cannot be sent is
/// described in `lossy`.
pub fn request_from_model(req: &ChatRequest, lossy: &mut Vec<String>) -> GenerateContentRequest {
    let mut system_parts = Vec::new();
    let mut contents: Vec<Content> = Vec::with_capacity(req.messages.len());
    // Call id -> function name, for results that do not carry the name.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    lossy.extend(req.foreign_content_note(PROTOCOL));
    lossy.extend(crate::reasoning::context_management_note(req, PROTOCOL));
    // System notes held back until the function responses they would split from their calls.
    let mut deferred: Vec<wire::Part> = Vec::new();
    for m in &req.messages {
        match m.role {
            // Gemini has one system instruction, ahead of the conversation: a system message
            // inside the conversation becomes a note in the user turn at its place.
            Role::System | Role::Developer if !contents.is_empty() => {
                let text = m.joined_text();
                if m.content.iter().any(|p| !matches!(p, Part::Text(_))) {
                    note(
                        lossy,
                        "non-text system content dropped (Gemini takes text only)",
                    );
                }
                if !text.is_empty() {
                    note(
                        lossy,
                        "system message inside the conversation sent as a user-turn note \
                         (Gemini has no system role there)",
                    );
                    let part = system_note_part(&text);
                    if awaits_function_responses(&contents) {
                        deferred.push(part);
                    } else {
                        push_content(&mut contents, "user", vec![part]);
                    }
                }
            }
            Role::System | Role::Developer => {
                for part in &m.content {
                    match part {
                        Part::Text(t) => system_parts.push(wire::Part::text(t.text.clone())),
                        _ => note(
                            lossy,
                            "non-text system content dropped (Gemini takes text only)",
                        ),
                    }
                }
            }
            Role::User | Role::Tool | Role::Assistant => {
                if m.role != Role::Tool && !deferred.is_empty() {
                    push_content(&mut contents, "user", std::mem::take(&mut deferred));
                }
                let role = if m.role == Role::Assistant {
                    "model"
                } else {
                    "user"
                };
                let parts = message_parts(m, &mut call_names, lossy);
                push_content(&mut contents, role, parts);
            }
        }
    }

    push_content(&mut contents, "user", deferred);
    mark_unsigned_calls(&mut contents, lossy);

    let tools = (!req.tools.is_empty()).then(|| {
        vec![Tool {
            function_declarations: Some(
                req.tools
                    .iter()
                    .map(|t| FunctionDeclaration {
                        name: t.name.clone(),
                        description: t.description.clone(),
                        parameters: parameters_schema(&t.parameters),
                        parameters_json_schema: None,
                        extra: Extra::new(),
                    })
                    .collect(),
            ),
            extra: Extra::new(),
        }]
    });
    let tool_config = match (&tools, &req.tool_choice) {
        (Some(_), Some(choice)) => Some(ToolConfig {
            function_calling_config: Some(function_calling_config(choice)),
            extra: Extra::new(),
        }),
        _ => None,
    };

    let mut out = GenerateContentRequest {
        contents,
        system_instruction: (!system_parts.is_empty()).then_some(Content {
            role: None,
            parts: system_parts,
        }),
        tools,
        tool_config,
        generation_config: None,
        safety_settings: None,
        cached_content: None,
        extra: Extra::new(),
    };
    let mut gc = generation_config(req);
    if let Some(extra) = req.extra_for(PROTOCOL) {
        apply_passthrough(&mut out, &mut gc, extra);
    } else if let Some(top) = req.logprobs_requested() {
        // Another protocol's client asking for logprobs.
        gc.extra
            .insert("responseLogprobs".to_owned(), Value::Bool(true));
        if top > 0 {
            gc.extra.insert("logprobs".to_owned(), Value::from(top));
        }
    }
    out.generation_config = (!gc.is_empty()).then_some(gc);
    if let Some(patch) = req.body_patches.get(PROTOCOL).filter(|p| !p.is_empty()) {
        apply_body_patch(&mut out, patch, lossy);
    }
    out
}

/// Merges the proxy's own Gemini fields over the body (RFC 7396: objects merge, `null`
/// removes, anything else replaces). A patch that leaves no valid body is not applied.
fn apply_body_patch(out: &mut GenerateContentRequest, patch: &Extra, lossy: &mut Vec<String>) {
    let patched = serde_json::to_value(&*out).and_then(|mut body| {
        for (key, value) in patch {
            merge_patch_field(&mut body, key, value);
        }
        serde_json::from_value::<GenerateContentRequest>(body)
    });
    match patched {
        Ok(patched) => *out = patched,
        Err(e) => lossy.push(format!("gemini settings not applied: {e}")),
    }
}

fn merge_patch_field(target: &mut Value, key: &str, patch: &Value) {
    let Value::Object(target) = target else {
        return;
    };
    match patch {
        Value::Null => {
            target.remove(key);
        }
        Value::Object(fields) => {
            let slot = target
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(serde_json::Map::new());
            }
            for (k, v) in fields {
                merge_patch_field(slot, k, v);
            }
        }
        other => {
            target.insert(key.to_owned(), other.clone());
        }
    }
}

/// Gemini's documented marker for function calls it did not sign (another model's history).
pub const SKIP_SIGNATURE_VALIDATOR: &str = "skip_thought_signature_validator";

/// Gemini 3 rejects a request whose current turn (since the last user turn that is not just
/// function responses) has a step of function calls without a thought signature: calls
/// another provider made carry none. The first call of such a step gets Gemini's marker
/// for calls it did not sign.
fn mark_unsigned_calls(contents: &mut [Content], lossy: &mut Vec<String>) {
    let turn_start = contents
        .iter()
        .rposition(|c| {
            c.role.as_deref() == Some("user")
                && c.parts.iter().any(|p| p.function_response.is_none())
        })
        .map_or(0, |i| i + 1);
    for content in &mut contents[turn_start..] {
        if content.role.as_deref() != Some("model")
            || content.parts.iter().any(|p| p.thought_signature.is_some())
        {
            continue;
        }
        if let Some(first) = content.parts.iter_mut().find(|p| p.function_call.is_some()) {
            first.thought_signature = Some(SKIP_SIGNATURE_VALIDATOR.to_owned());
            note(
                lossy,
                "tool calls without a Gemini thought signature (made by another provider) sent \
                 with Gemini's skip_thought_signature_validator marker",
            );
        }
    }
}

/// Whether the last turn is the model's function calls, whose responses must come next.
fn awaits_function_responses(contents: &[Content]) -> bool {
    contents.last().is_some_and(|c| {
        c.role.as_deref() == Some("model") && c.parts.iter().any(|p| p.function_call.is_some())
    })
}

/// The user-turn text standing in for a mid-conversation system message.
fn system_note_part(text: &str) -> wire::Part {
    wire::Part::text(format!("<system-note>\n{text}\n</system-note>"))
}

/// Records a lossy conversion once.
fn note(lossy: &mut Vec<String>, what: &str) {
    if !lossy.iter().any(|l| l == what) {
        lossy.push(what.to_owned());
    }
}

/// Appends parts as a turn, merging into the previous turn of the same role (Gemini wants
/// alternating turns; parallel function responses must share one turn).
fn push_content(contents: &mut Vec<Content>, role: &str, parts: Vec<wire::Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

/// Places thought signatures: one waiting for the next part gets the first part that has none;
/// one left at the end becomes an empty text part (as Gemini itself sends it).
#[derive(Default)]
struct SignatureSlot(Option<String>);

impl SignatureSlot {
    fn push(&mut self, parts: &mut Vec<wire::Part>, mut part: wire::Part) {
        if part.thought_signature.is_none() {
            part.thought_signature = self.0.take();
        }
        parts.push(part);
    }

    fn wait(&mut self, signature: &str, parts: &mut Vec<wire::Part>) {
        // Two signatures in a row: the first goes out on its own rather than being lost.
        if let Some(previous) = self.0.replace(signature.to_owned()) {
            parts.push(signature_only_part(previous));
        }
    }

    fn close(&mut self, parts: &mut Vec<wire::Part>) {
        if let Some(sig) = self.0.take() {
            parts.push(signature_only_part(sig));
        }
    }
}

fn signature_only_part(signature: String) -> wire::Part {
    wire::Part {
        text: Some(String::new()),
        thought_signature: Some(signature),
        ..wire::Part::default()
    }
}

fn message_parts<'a>(
    m: &'a Message,
    call_names: &mut HashMap<&'a str, &'a str>,
    lossy: &mut Vec<String>,
) -> Vec<wire::Part> {
    let mut parts = Vec::with_capacity(m.content.len());
    let mut slot = SignatureSlot::default();
    for part in &m.content {
        match part {
            Part::Text(t) => {
                if !t.text.is_empty() {
                    slot.push(&mut parts, wire::Part::text(t.text.clone()));
                }
            }
            Part::Image(img) => slot.push(&mut parts, image_part(img)),
            Part::Audio(a) => slot.push(&mut parts, audio_part(a)),
            Part::Reasoning(b) => match google_signature(b) {
                Some(sig) if !b.text.is_empty() => {
                    slot.push(&mut parts, thought_part(&b.text, Some(sig)));
                }
                Some(sig) => slot.wait(&sig, &mut parts),
                None if b.redacted.is_some() => note(
                    lossy,
                    "redacted reasoning dropped (Gemini cannot take another provider's reasoning)",
                ),
                None if b.signature.is_some() => note(
                    lossy,
                    "signed reasoning dropped (Gemini cannot take another provider's reasoning)",
                ),
                None if !b.text.trim().is_empty() => {
                    note(
                        lossy,
                        "reasoning text without a Gemini thought signature dropped",
                    );
                }
                None => {}
            },
            Part::ToolCall(c) => {
                call_names.insert(&c.id, &c.name);
                slot.push(&mut parts, function_call_part(c, lossy));
            }
            Part::ToolResult(r) => {
                let name = r
                    .name
                    .as_deref()
                    .or_else(|| call_names.get(r.call_id.as_str()).copied())
                    .unwrap_or_else(|| {
                        note(
                            lossy,
                            "tool result without a matching call: function name unknown",
                        );
                        "unknown_function"
                    });
                slot.push(&mut parts, function_response_part(r, name));
                // Images in a result follow the response in the same turn.
                for media in &r.content {
                    match media {
                        Part::Image(img) => slot.push(&mut parts, image_part(img)),
                        Part::Audio(a) => slot.push(&mut parts, audio_part(a)),
                        _ => {}
                    }
                }
            }
            // Reported once for the whole request by `foreign_content_note`.
            Part::Opaque(_) => {}
        }
    }
    slot.close(&mut parts);
    parts
}

/// The Gemini thought signature a reasoning block carries in its provider data (another
/// protocol's client hands it back sealed; its frontend opened it into provider data).
fn google_signature(b: &ReasoningBlock) -> Option<String> {
    b.provider_data
        .as_ref()
        .and_then(thought_signature_of)
        .map(str::to_owned)
}

fn thought_part(text: &str, signature: Option<String>) -> wire::Part {
    wire::Part {
        text: Some(text.to_owned()),
        thought: Some(true),
        thought_signature: signature,
        ..wire::Part::default()
    }
}

fn function_call_part(c: &ToolCall, lossy: &mut Vec<String>) -> wire::Part {
    wire::Part {
        function_call: Some(FunctionCall {
            id: Some(c.id.clone()),
            name: c.name.clone(),
            args: Some(arguments_object(&c.arguments, lossy)),
        }),
        thought_signature: c
            .provider_data
            .as_ref()
            .and_then(thought_signature_of)
            .map(str::to_owned),
        ..wire::Part::default()
    }
}

/// Gemini's `args` is a JSON object.
fn arguments_object(arguments: &str, lossy: &mut Vec<String>) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => {
            note(
                lossy,
                "non-object tool arguments wrapped as {\"value\": ...}",
            );
            json!({ "value": other })
        }
        Err(_) => {
            note(lossy, "tool arguments that are not JSON replaced by {}");
            json!({})
        }
    }
}

fn function_response_part(r: &ToolResult, name: &str) -> wire::Part {
    let text = r.joined_text();
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ if r.is_error => json!({ "error": text }),
        _ => json!({ "result": text }),
    };
    wire::Part {
        function_response: Some(FunctionResponse {
            id: Some(r.call_id.clone()),
            name: name.to_owned(),
            response,
            extra: Extra::new(),
        }),
        ..wire::Part::default()
    }
}

fn image_part(img: &ImagePart) -> wire::Part {
    match &img.source {
        MediaSource::Base64 { media_type, data } => wire::Part {
            inline_data: Some(Blob {
                mime_type: media_type.clone(),
                data: data.clone(),
            }),
            ..wire::Part::default()
        },
        MediaSource::Url { url } => wire::Part {
            file_data: Some(FileData {
                mime_type: guess_mime_type(url),
                file_uri: url.clone(),
            }),
            ..wire::Part::default()
        },
    }
}

fn audio_part(a: &AudioPart) -> wire::Part {
    wire::Part {
        inline_data: Some(Blob {
            mime_type: format!("audio/{}", a.format),
            data: a.data.clone(),
        }),
        ..wire::Part::default()
    }
}

/// MIME type of a file URI from its extension. Files API URIs need none (Gemini knows the
/// file); other URIs default to JPEG, the most common image type.
fn guess_mime_type(uri: &str) -> Option<String> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let mime = match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        Some("pdf") => "application/pdf",
        _ if uri.contains("generativelanguage.googleapis.com/") && uri.contains("/files/") => {
            return None;
        }
        _ => "image/jpeg",
    };
    Some(mime.to_owned())
}

/// Function `parameters`: the sanitised schema, or nothing for an argument-less function
/// (Gemini rejects an object schema without properties).
fn parameters_schema(schema: &Value) -> Option<Value> {
    let s = sanitize_schema(schema);
    let obj = s.as_object()?;
    let trivial = obj.is_empty()
        || (obj.get("type").and_then(Value::as_str) == Some("object")
            && !obj.contains_key("properties")
            && !obj.contains_key("anyOf"));
    (!trivial).then_some(s)
}

fn function_calling_config(choice: &ToolChoice) -> FunctionCallingConfig {
    let (mode, names) = match choice {
        ToolChoice::Auto => ("AUTO", None),
        ToolChoice::None => ("NONE", None),
        ToolChoice::Required => ("ANY", None),
        ToolChoice::Function(name) => ("ANY", Some(vec![name.clone()])),
    };
    FunctionCallingConfig {
        mode: Some(mode.to_owned()),
        allowed_function_names: names,
    }
}

fn generation_config(req: &ChatRequest) -> GenerationConfig {
    let s = &req.sampling;
    let (mime, schema) = match &req.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json".to_owned()), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            (Some("application/json".to_owned()), Some(schema.clone()))
        }
        Some(ResponseFormat::Text) | None => (None, None),
    };
    GenerationConfig {
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k.map(|k| k as f64),
        candidate_count: s.n,
        max_output_tokens: req.max_tokens,
        stop_sequences: (!req.stop.is_empty()).then(|| req.stop.clone()),
        presence_penalty: s.presence_penalty,
        frequency_penalty: s.frequency_penalty,
        seed: s.seed,
        response_mime_type: mime,
        response_schema: None,
        response_json_schema: schema,
        thinking_config: req.reasoning.as_ref().map(thinking_config),
        extra: Extra::new(),
    }
}

/// `thinkingBudget` that lets the model decide how much to think.
pub const DYNAMIC_THINKING_BUDGET: i64 = -1;

/// Thinking budget for an effort level. Budgets rather than Gemini 3's `thinkingLevel`,
/// because every thinking Gemini model takes a budget; the values fit all of their ranges.
pub fn effort_budget(effort: &str) -> Option<i64> {
    match effort {
        "none" => Some(0),
        "minimal" => Some(512),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" | "xhigh" | "max" => Some(24576),
        _ => None,
    }
}

fn thinking_config(r: &ReasoningConfig) -> ThinkingConfig {
    let budget = if r.disabled {
        Some(0)
    } else {
        r.budget_tokens
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .or_else(|| r.effort.as_deref().and_then(effort_budget))
            // Adaptive thinking is Gemini's dynamic budget.
            .or_else(|| r.adaptive.then_some(DYNAMIC_THINKING_BUDGET))
    };
    let thinking_off = budget == Some(0);
    ThinkingConfig {
        thinking_budget: budget,
        include_thoughts: (!thinking_off).then(|| r.include_thoughts.unwrap_or(true)),
        thinking_level: None,
    }
}

/// Generation-config keys we model; pass-through must not repeat them (duplicate JSON keys).
const MODELED_GENERATION_KEYS: [&str; 14] = [
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "thinkingConfig",
    "responseFormat",
];

/// Puts a Gemini client's unmodelled fields back where they came from (see
/// `to_model::request_to_model`).
fn apply_passthrough(out: &mut GenerateContentRequest, gc: &mut GenerationConfig, extra: &Extra) {
    for (key, value) in extra {
        match (key.as_str(), value) {
            ("tools", Value::Array(items)) => {
                let tools = out.tools.get_or_insert_with(Vec::new);
                tools.extend(
                    items
                        .iter()
                        .filter_map(|t| serde_json::from_value::<Tool>(t.clone()).ok()),
                );
            }
            ("toolConfig", Value::Object(fields)) => {
                let config = out.tool_config.get_or_insert_with(ToolConfig::default);
                for (k, v) in fields {
                    if k != "functionCallingConfig" {
                        config.extra.insert(k.clone(), v.clone());
                    }
                }
            }
            ("generationConfig", Value::Object(fields)) => {
                for (k, v) in fields {
                    if !MODELED_GENERATION_KEYS.contains(&k.as_str()) {
                        gc.extra.insert(k.clone(), v.clone());
                    }
                }
            }
            ("safetySettings", Value::Array(settings)) => {
                out.safety_settings = Some(settings.clone())
            }
            ("cachedContent", Value::String(name)) => out.cached_content = Some(name.clone()),
            (
                "contents" | "systemInstruction" | "tools" | "toolConfig" | "generationConfig"
                | "safetySettings" | "cachedContent",
                _,
            ) => {}
            _ => {
                out.extra.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Gemini spelling of a finish reason (tool calls end with `STOP` in Gemini).
pub fn finish_reason_name(r: &FinishReason) -> &str {
    match r {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
        // Gemini's own reasons (MALFORMED_FUNCTION_CALL, ...) go back verbatim.
        FinishReason::Other(s)
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            s
        }
        FinishReason::Other(_) => "OTHER",
    }
}

/// Usage in Gemini's shape (answer tokens exclude thoughts).
pub fn usage_from_model(u: &Usage) -> UsageMetadata {
    let thoughts = u.reasoning_tokens.unwrap_or(0);
    UsageMetadata {
        prompt_token_count: Some(u.input_tokens),
        candidates_token_count: Some(u.output_tokens.saturating_sub(thoughts)),
        total_token_count: Some(u.total()),
        thoughts_token_count: u.reasoning_tokens,
        cached_content_token_count: u.cache_read_tokens,
        tool_use_prompt_token_count: None,
        extra: Extra::new(),
    }
}

/// The client-facing non-streamed response; `sealer` seals other providers' reasoning state
/// into `thoughtSignature`s.
pub fn response_from_model(resp: &ChatResponse, sealer: &dyn Sealer) -> GenerateContentResponse {
    let model = Some(resp.model.as_str());
    let mut parts = Vec::with_capacity(resp.content.len());
    let mut slot = SignatureSlot::default();
    // A client response has nowhere to report lossiness; argument repairs are still applied.
    let mut ignored = Vec::new();
    for part in &resp.content {
        match part {
            Part::Text(t) => {
                if !t.text.is_empty() {
                    slot.push(&mut parts, wire::Part::text(t.text.clone()));
                }
            }
            Part::Reasoning(b) => match (google_signature(b), carry_reasoning(b, model, sealer)) {
                (Some(sig), _) if b.text.is_empty() => slot.wait(&sig, &mut parts),
                (Some(sig), _) => slot.push(&mut parts, thought_part(&b.text, Some(sig))),
                // Another provider's signature rides in the slot so the client sends it back.
                (None, carried @ Some(_)) => slot.push(&mut parts, thought_part(&b.text, carried)),
                (None, None) if !b.text.is_empty() => {
                    slot.push(&mut parts, thought_part(&b.text, None));
                }
                (None, None) => {}
            },
            Part::ToolCall(c) => {
                let mut part = function_call_part(c, &mut ignored);
                part.thought_signature = c
                    .provider_data
                    .as_ref()
                    .and_then(|d| call_signature(d, model, sealer));
                slot.push(&mut parts, part);
            }
            Part::Image(img) => slot.push(&mut parts, image_part(img)),
            Part::Audio(a) => slot.push(&mut parts, audio_part(a)),
            Part::ToolResult(_) | Part::Opaque(_) => {}
        }
    }
    slot.close(&mut parts);
    GenerateContentResponse {
        candidates: vec![Candidate {
            content: Some(Content {
                role: Some("model".to_owned()),
                parts,
            }),
            finish_reason: Some(
                finish_reason_name(resp.finish_reason.as_ref().unwrap_or(&FinishReason::Stop))
                    .to_owned(),
            ),
            index: Some(0),
            safety_ratings: None,
            extra: if resp.logprobs.is_empty() {
                Extra::new()
            } else {
                Extra::from_iter([(
                    "logprobsResult".to_owned(),
                    logprobs_from_model(&resp.logprobs),
                )])
            },
        }],
        prompt_feedback: None,
        usage_metadata: resp.usage.as_ref().map(usage_from_model),
        model_version: Some(resp.model.clone()),
        response_id: Some(resp.id.clone()),
    }
}

/// OpenAI-shaped token logprob entries as a Gemini `logprobsResult`.
pub fn logprobs_from_model(entries: &[Value]) -> Value {
    let candidate = |e: &Value| {
        serde_json::json!({"token": e.get("token").cloned().unwrap_or_default(),
            "logProbability": e.get("logprob").cloned().unwrap_or_default()})
    };
    let top: Vec<Value> = entries
        .iter()
        .map(|e| {
            let alternatives: Vec<Value> = e
                .get("top_logprobs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(candidate)
                .collect();
            serde_json::json!({"candidates": alternatives})
        })
        .collect();
    serde_json::json!({"chosenCandidates": entries.iter().map(candidate).collect::<Vec<_>>(),
        "topCandidates": top})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemini::to_model::{request_to_model, thought_signature_data};
    use crate::openai_responses::opaque::TestSealer;
    use llm_proxy_api::model::{Sampling, TextPart, ToolDefinition};

    fn patched(patch: Value) -> (Value, Vec<String>) {
        let patch = patch.as_object().unwrap().clone();
        let req = ChatRequest {
            messages: vec![Message::text(Role::User, "hi")],
            sampling: Sampling {
                temperature: Some(0.9),
                top_p: Some(0.5),
                ..Sampling::default()
            },
            reasoning: Some(ReasoningConfig {
                budget_tokens: Some(2048),
                ..ReasoningConfig::default()
            }),
            body_patches: [(PROTOCOL.to_owned(), patch)].into(),
            ..ChatRequest::default()
        };
        let mut lossy = Vec::new();
        let body = serde_json::to_value(request_from_model(&req, &mut lossy)).unwrap();
        (body, lossy)
    }

    #[test]
    fn the_gemini_body_patch_merges_over_the_encoded_body() {
        let (body, lossy) = patched(json!({"generationConfig": {
            "temperature": 0.1,
            "topP": null,
            "thinkingConfig": {"thinkingBudget": 512},
            "responseModalities": ["TEXT"],
        }}));
        assert!(lossy.is_empty(), "{lossy:?}");
        let gc = &body["generationConfig"];
        assert_eq!(gc["temperature"], 0.1);
        assert!(gc.get("topP").is_none(), "null removes");
        assert_eq!(gc["thinkingConfig"]["thinkingBudget"], 512);
        assert_eq!(
            gc["thinkingConfig"]["includeThoughts"], true,
            "merged, not replaced"
        );
        assert_eq!(gc["responseModalities"], json!(["TEXT"]));
        assert_eq!(body["contents"][0]["parts"][0]["text"], "hi");
    }

    #[test]
    fn a_patch_leaving_no_valid_body_is_not_applied_and_noted() {
        let (body, lossy) = patched(json!({"generationConfig": {"temperature": "hot"}}));
        assert_eq!(body["generationConfig"]["temperature"], 0.9);
        assert_eq!(lossy.len(), 1);
        assert!(
            lossy[0].starts_with("gemini settings not applied"),
            "{lossy:?}"
        );
    }

    fn msg(role: Role, content: Vec<Part>) -> Message {
        Message {
            role,
            content,
            name: None,
        }
    }

    fn encode(req: &ChatRequest) -> (Value, Vec<String>) {
        let mut lossy = Vec::new();
        let out = request_from_model(req, &mut lossy);
        (serde_json::to_value(&out).unwrap(), lossy)
    }

    fn call(id: &str) -> Part {
        Part::ToolCall(ToolCall {
            cache_control: None,
            id: id.into(),
            name: "read".into(),
            arguments: "{}".into(),
            provider_data: None,
        })
    }

    fn result(id: &str) -> Part {
        Part::ToolResult(ToolResult {
            cache_control: None,
            call_id: id.into(),
            name: None,
            content: vec![Part::Text(TextPart::new("r"))],
            is_error: false,
        })
    }

    #[test]
    fn system_messages_inside_the_conversation_become_user_turn_notes() {
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::System, "top"),
                Message::text(Role::User, "q"),
                Message::text(Role::System, "mid"),
                msg(Role::Assistant, vec![call("c1"), call("c2")]),
                // Between the calls and their responses: held until the responses are in.
                Message::text(Role::System, "between"),
                msg(Role::Tool, vec![result("c1")]),
                msg(Role::Tool, vec![result("c2")]),
                Message::text(Role::Assistant, "done"),
                Message::text(Role::Developer, "trailing"),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(v["systemInstruction"], json!({"parts": [{"text": "top"}]}));
        let note = |t: &str| json!({"text": format!("<system-note>\n{t}\n</system-note>")});
        let response = |id: &str| json!({"functionResponse": {"id": id, "name": "read", "response": {"result": "r"}}});
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "q"}, note("mid")]},
                {"role": "model", "parts": [
                    {"functionCall": {"id": "c1", "name": "read", "args": {}}},
                    {"functionCall": {"id": "c2", "name": "read", "args": {}}}
                ]},
                {"role": "user", "parts": [response("c1"), response("c2"), note("between")]},
                {"role": "model", "parts": [{"text": "done"}]},
                {"role": "user", "parts": [note("trailing")]}
            ])
        );
        assert_eq!(
            lossy,
            [
                "system message inside the conversation sent as a user-turn note (Gemini has no system role there)"
            ]
        );
    }

    #[test]
    fn opaque_blocks_of_other_protocols_are_dropped_and_noted() {
        let opaque = Part::Opaque(llm_proxy_api::model::OpaquePart {
            protocol: "anthropic".into(),
            value: json!({"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}),
        });
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "q"),
                msg(
                    Role::Assistant,
                    vec![opaque, Part::Text(TextPart::new("a"))],
                ),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["contents"][1],
            json!({"role": "model", "parts": [{"text": "a"}]})
        );
        assert_eq!(
            lossy,
            ["content blocks the upstream cannot express dropped: server_tool_use"]
        );
    }

    #[test]
    fn roles_system_and_merging() {
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::System, "sys"),
                Message::text(Role::Developer, "dev"),
                Message::text(Role::User, "a"),
                Message::text(Role::User, "b"),
                Message::text(Role::Assistant, "c"),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert!(lossy.is_empty());
        assert_eq!(
            v,
            json!({
                "systemInstruction": {"parts": [{"text": "sys"}, {"text": "dev"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                    {"role": "model", "parts": [{"text": "c"}]}
                ]
            })
        );
    }

    #[test]
    fn tool_results_find_names_merge_and_wrap_non_objects() {
        let call = |id: &str, name: &str| {
            Part::ToolCall(ToolCall {
                cache_control: None,
                id: id.into(),
                name: name.into(),
                arguments: "{\"x\":1}".into(),
                provider_data: None,
            })
        };
        let result = |id: &str, text: &str, is_error: bool| Message {
            role: Role::Tool,
            content: vec![Part::ToolResult(ToolResult {
                cache_control: None,
                call_id: id.into(),
                name: None,
                content: vec![Part::Text(TextPart::new(text))],
                is_error,
            })],
            name: None,
        };
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "go"),
                msg(
                    Role::Assistant,
                    vec![call("c1", "read"), call("c2", "write")],
                ),
                result("c1", "{\"ok\":true}", false),
                result("c2", "disk full", true),
                Message::text(Role::User, "next"),
                result("zz", "42", false),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"id": "c1", "name": "read", "response": {"ok": true}}},
                {"functionResponse": {"id": "c2", "name": "write", "response": {"error": "disk full"}}},
                {"text": "next"},
                {"functionResponse": {"id": "zz", "name": "unknown_function", "response": {"result": "42"}}}
            ]})
        );
        assert_eq!(
            v["contents"][1]["parts"][0],
            json!({"functionCall": {"id": "c1", "name": "read", "args": {"x": 1}}})
        );
        assert_eq!(lossy.len(), 1, "{lossy:?}");
    }

    #[test]
    fn thought_signatures_go_back_on_the_right_part() {
        let sig = |s: &str| Some(thought_signature_data(s));
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "q"),
                msg(
                    Role::Assistant,
                    vec![
                        Part::Reasoning(ReasoningBlock {
                            text: "plan".into(),
                            provider_data: sig("T1"),
                            ..Default::default()
                        }),
                        Part::Reasoning(ReasoningBlock {
                            provider_data: sig("T2"),
                            ..Default::default()
                        }),
                        Part::Text(TextPart::new("calling")),
                        Part::ToolCall(ToolCall {
                            cache_control: None,
                            id: "a".into(),
                            name: "f".into(),
                            arguments: "{}".into(),
                            provider_data: sig("F1"),
                        }),
                        Part::ToolCall(ToolCall {
                            cache_control: None,
                            id: "b".into(),
                            name: "f".into(),
                            arguments: "{}".into(),
                            provider_data: None,
                        }),
                        Part::Reasoning(ReasoningBlock {
                            provider_data: sig("END"),
                            ..Default::default()
                        }),
                    ],
                ),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert!(lossy.is_empty(), "{lossy:?}");
        assert_eq!(
            v["contents"][1]["parts"],
            json!([
                {"text": "plan", "thought": true, "thoughtSignature": "T1"},
                {"text": "calling", "thoughtSignature": "T2"},
                {"functionCall": {"id": "a", "name": "f", "args": {}}, "thoughtSignature": "F1"},
                {"functionCall": {"id": "b", "name": "f", "args": {}}},
                {"text": "", "thoughtSignature": "END"}
            ])
        );
    }

    #[test]
    fn unsigned_calls_of_the_current_turn_get_the_validator_marker() {
        let call = |id: &str, sig: Option<&str>| {
            Part::ToolCall(ToolCall {
                cache_control: None,
                id: id.into(),
                name: "f".into(),
                arguments: "{}".into(),
                provider_data: sig.map(thought_signature_data),
            })
        };
        let answer = |id: &str| {
            msg(
                Role::Tool,
                vec![Part::ToolResult(ToolResult {
                    cache_control: None,
                    call_id: id.into(),
                    name: Some("f".into()),
                    content: vec![Part::Text(TextPart::new("ok"))],
                    is_error: false,
                })],
            )
        };
        let req = ChatRequest {
            messages: vec![
                Message::text(Role::User, "earlier question"),
                msg(Role::Assistant, vec![call("old", None)]),
                answer("old"),
                Message::text(Role::User, "q"),
                // Another provider's step: two calls, no signature.
                msg(Role::Assistant, vec![call("a", None), call("b", None)]),
                answer("a"),
                answer("b"),
                // Gemini's own step keeps its signature.
                msg(Role::Assistant, vec![call("c", Some("G"))]),
                answer("c"),
            ],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        let signatures: Vec<Value> = v["contents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["parts"].as_array().unwrap())
            .filter(|p| p.get("functionCall").is_some())
            .map(|p| p.get("thoughtSignature").cloned().unwrap_or(Value::Null))
            .collect();
        assert_eq!(
            signatures,
            vec![
                Value::Null,
                json!(SKIP_SIGNATURE_VALIDATOR),
                Value::Null,
                json!("G")
            ],
            "only the first call of an unsigned step in the current turn: {v}"
        );
        assert_eq!(lossy.len(), 1, "{lossy:?}");
    }

    #[test]
    fn foreign_reasoning_is_dropped_with_notes() {
        let req = ChatRequest {
            messages: vec![msg(
                Role::Assistant,
                vec![
                    Part::Reasoning(ReasoningBlock {
                        text: "t".into(),
                        signature: Some("anthropic-sig".into()),
                        ..Default::default()
                    }),
                    Part::Reasoning(ReasoningBlock {
                        redacted: Some("enc".into()),
                        ..Default::default()
                    }),
                    Part::Reasoning(ReasoningBlock {
                        text: "plain".into(),
                        ..Default::default()
                    }),
                    Part::Reasoning(ReasoningBlock::default()),
                    Part::Text(TextPart::new("answer")),
                ],
            )],
            ..ChatRequest::default()
        };
        let (v, lossy) = encode(&req);
        assert_eq!(
            v["contents"],
            json!([{"role": "model", "parts": [{"text": "answer"}]}])
        );
        assert_eq!(lossy.len(), 3, "{lossy:?}");
    }

    #[test]
    fn media_tools_choice_and_config() {
        let req = ChatRequest {
            messages: vec![msg(
                Role::User,
                vec![
                    Part::Image(ImagePart {
                        cache_control: None,
                        source: MediaSource::Base64 {
                            media_type: "image/png".into(),
                            data: "AA".into(),
                        },
                        detail: None,
                        document: None,
                    }),
                    Part::Image(ImagePart {
                        cache_control: None,
                        source: MediaSource::Url {
                            url: "https://x.test/cat.webp?s=1".into(),
                        },
                        detail: None,
                        document: None,
                    }),
                    Part::Image(ImagePart {
                        cache_control: None,
                        source: MediaSource::Url {
                            url: "https://x.test/cat".into(),
                        },
                        detail: None,
                        document: None,
                    }),
                    Part::Image(ImagePart {
                        cache_control: None,
                        source: MediaSource::Url {
                            url: "https://generativelanguage.googleapis.com/v1beta/files/abc"
                                .into(),
                        },
                        detail: None,
                        document: None,
                    }),
                    Part::Audio(AudioPart {
                        data: "UklG".into(),
                        format: "wav".into(),
                    }),
                ],
            )],
            tools: vec![
                ToolDefinition {
                    name: "noargs".into(),
                    description: None,
                    parameters: json!({"type": "object", "properties": {}}),
                    strict: None,
                    cache_control: None,
                },
                ToolDefinition {
                    name: "f".into(),
                    description: Some("d".into()),
                    parameters: json!({"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "additionalProperties": false}),
                    strict: Some(true),
                    cache_control: None,
                },
            ],
            tool_choice: Some(ToolChoice::Function("f".into())),
            max_tokens: Some(100),
            stop: vec!["X".into()],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "r".into(),
                schema: json!({"type": "object", "additionalProperties": false}),
                strict: Some(true),
            }),
            reasoning: Some(ReasoningConfig {
                effort: Some("medium".into()),
                ..Default::default()
            }),
            ..ChatRequest::default()
        };
        let (v, _) = encode(&req);
        assert_eq!(
            v["contents"][0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/png", "data": "AA"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp?s=1"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat"}},
                {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}
            ])
        );
        assert_eq!(
            v["tools"],
            json!([{"functionDeclarations": [
                {"name": "noargs"},
                {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "string", "nullable": true}}}}
            ]}])
        );
        assert_eq!(
            v["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
        );
        assert_eq!(
            v["generationConfig"],
            json!({
                "maxOutputTokens": 100, "stopSequences": ["X"],
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object", "additionalProperties": false},
                "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": true}
            })
        );
    }

    #[test]
    fn tool_choice_modes() {
        for (choice, mode) in [
            (ToolChoice::Auto, "AUTO"),
            (ToolChoice::None, "NONE"),
            (ToolChoice::Required, "ANY"),
        ] {
            let c = function_calling_config(&choice);
            assert_eq!(c.mode.as_deref(), Some(mode));
            assert_eq!(c.allowed_function_names, None);
        }
    }

    #[test]
    fn thinking_disabled_and_budget() {
        let off = thinking_config(&ReasoningConfig {
            disabled: true,
            include_thoughts: Some(true),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&off).unwrap(),
            json!({"thinkingBudget": 0})
        );
        let none = thinking_config(&ReasoningConfig {
            effort: Some("none".into()),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&none).unwrap(),
            json!({"thinkingBudget": 0})
        );
        let b = thinking_config(&ReasoningConfig {
            budget_tokens: Some(3000),
            effort: Some("high".into()),
            include_thoughts: Some(false),
            ..Default::default()
        });
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            json!({"thinkingBudget": 3000, "includeThoughts": false})
        );
    }

    #[test]
    fn passthrough_only_for_gemini_extra() {
        let gemini = json!({
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"googleSearch": {}}],
            "toolConfig": {"retrievalConfig": {"languageCode": "en"}},
            "generationConfig": {"temperature": 0.3, "responseModalities": ["TEXT"]},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
            "cachedContent": "cachedContents/x",
            "labels": {"k": "v"}
        });
        let model = request_to_model(
            serde_json::from_value(gemini.clone()).unwrap(),
            "m",
            &TestSealer(0),
            &mut Vec::new(),
        )
        .unwrap();
        let (v, lossy) = encode(&model);
        assert!(lossy.is_empty());
        assert_eq!(v, gemini);
        let mut foreign = model.clone();
        foreign.extra_protocol = Some("openai_chat".into());
        let (v, _) = encode(&foreign);
        assert_eq!(
            v,
            json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"temperature": 0.3}})
        );
    }

    #[test]
    fn finish_reasons_and_usage() {
        assert_eq!(finish_reason_name(&FinishReason::ToolCalls), "STOP");
        assert_eq!(finish_reason_name(&FinishReason::Length), "MAX_TOKENS");
        assert_eq!(finish_reason_name(&FinishReason::ContentFilter), "SAFETY");
        assert_eq!(
            finish_reason_name(&FinishReason::Other("MALFORMED_FUNCTION_CALL".into())),
            "MALFORMED_FUNCTION_CALL"
        );
        assert_eq!(
            finish_reason_name(&FinishReason::Other("error".into())),
            "OTHER"
        );
        let u = usage_from_model(&Usage {
            input_tokens: 10,
            output_tokens: 12,
            reasoning_tokens: Some(7),
            cache_read_tokens: Some(4),
            cache_write_tokens: None,
        });
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 22, "thoughtsTokenCount": 7, "cachedContentTokenCount": 4})
        );
    }

    #[test]
    fn client_response_orders_parts_and_places_signatures() {
        let resp = ChatResponse {
            id: "r1".into(),
            model: "gemini-2.5-pro".into(),
            created: 0,
            content: vec![
                Part::Reasoning(ReasoningBlock {
                    text: "think".into(),
                    ..Default::default()
                }),
                Part::Reasoning(ReasoningBlock {
                    provider_data: Some(thought_signature_data("S")),
                    ..Default::default()
                }),
                Part::Text(TextPart::new("hi")),
                Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: "c".into(),
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                    provider_data: Some(thought_signature_data("F")),
                }),
                Part::Reasoning(ReasoningBlock {
                    text: "x".into(),
                    signature: Some("anthropic".into()),
                    ..Default::default()
                }),
            ],
            finish_reason: Some(FinishReason::ToolCalls),
            stop_sequence: None,
            usage: None,
            logprobs: Vec::new(),
        };
        let sealer = TestSealer(3);
        let v = serde_json::to_value(response_from_model(&resp, &sealer)).unwrap();
        let carried = carry_reasoning(
            &ReasoningBlock {
                signature: Some("anthropic".into()),
                ..Default::default()
            },
            Some("gemini-2.5-pro"),
            &sealer,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "think", "thought": true},
                    {"text": "hi", "thoughtSignature": "S"},
                    {"functionCall": {"id": "c", "name": "f", "args": {"a": 1}}, "thoughtSignature": "F"},
                    {"text": "x", "thought": true,
                     "thoughtSignature": carried}
                ]}, "finishReason": "STOP", "index": 0}],
                "modelVersion": "gemini-2.5-pro",
                "responseId": "r1"
            })
        );
    }

    #[test]
    fn a_chat_clients_logprobs_ask_becomes_each_upstreams_own() {
        let req = ChatRequest {
            messages: vec![Message::text(llm_proxy_api::model::Role::User, "hi")],
            extra_protocol: Some("openai_chat".into()),
            extra: json!({"logprobs": true, "top_logprobs": 2})
                .as_object()
                .cloned()
                .unwrap(),
            ..ChatRequest::default()
        };
        let mut lossy = Vec::new();
        let gemini = serde_json::to_value(request_from_model(&req, &mut lossy)).unwrap();
        assert_eq!(
            gemini["generationConfig"],
            json!({"responseLogprobs": true, "logprobs": 2})
        );
        assert!(lossy.is_empty(), "{lossy:?}");
        let responses = crate::openai_responses::request_from_model(&req, "m").body;
        assert_eq!(
            (&responses["include"], &responses["top_logprobs"]),
            (&json!(["message.output_text.logprobs"]), &json!(2))
        );
    }
}
