//! Canonical model -> OpenAI Responses request (for a Responses upstream), the mirror of
//! `to_model`: messages become input items, the upstream's own reasoning goes back with its id
//! and `encrypted_content` unchanged, and what a Responses client sent that the model does not
//! express (hosted tools, other item types, `include`, `store`, ...) is passed through.

use llm_proxy_api::model::{
    ChatRequest, ImagePart, MediaSource, Message, Part, ReasoningBlock, ResponseFormat, Role,
    ToolChoice, ToolResult,
};
use serde_json::{Map, Value, json};

use super::PROTOCOL;
use super::opaque::UpstreamReasoning;

/// An encoded request and what the encoding could not express.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// The request body.
    pub body: Value,
    /// What was dropped.
    pub lossy: Vec<String>,
}

fn note(lossy: &mut Vec<String>, message: &str) {
    if !lossy.iter().any(|n| n == message) {
        lossy.push(message.to_owned());
    }
}

/// Encodes `req` for `POST /responses` on an OpenAI Responses upstream serving `model`.
pub fn request_from_model(req: &ChatRequest, model: &str) -> EncodedRequest {
    let mut lossy = Vec::new();
    let mut body = Map::new();
    body.insert("model".into(), Value::from(model));

    // Leading system prompts are the instructions; later ones stay in place as messages.
    let leading = req
        .messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    let instructions: Vec<String> = req.messages[..leading]
        .iter()
        .map(Message::joined_text)
        .filter(|t| !t.is_empty())
        .collect();
    if !instructions.is_empty() {
        body.insert(
            "instructions".into(),
            Value::from(instructions.join("\n\n")),
        );
    }
    let mut input = Vec::new();
    for m in &req.messages[leading..] {
        message_items(m, &mut input, &mut lossy);
    }
    body.insert("input".into(), Value::Array(input));
    body.insert("stream".into(), Value::Bool(req.stream));

    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let mut tool =
                    json!({"type": "function", "name": t.name, "parameters": t.parameters});
                if let Some(d) = &t.description {
                    tool["description"] = Value::from(d.clone());
                }
                if let Some(strict) = t.strict {
                    tool["strict"] = Value::Bool(strict);
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &req.tool_choice {
        let v = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "name": name}),
        };
        body.insert("tool_choice".into(), v);
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), Value::Bool(p));
    }
    let s = &req.sampling;
    if let Some(t) = s.temperature {
        body.insert("temperature".into(), Value::from(t));
    }
    if let Some(p) = s.top_p {
        body.insert("top_p".into(), Value::from(p));
    }
    if s.top_k.is_some()
        || s.presence_penalty.is_some()
        || s.frequency_penalty.is_some()
        || s.seed.is_some()
    {
        note(
            &mut lossy,
            "top_k, penalties and seed are not supported by OpenAI Responses; dropped",
        );
    }
    if !req.stop.is_empty() {
        note(
            &mut lossy,
            "stop sequences are not supported by OpenAI Responses; dropped",
        );
    }
    if let Some(max) = req.max_tokens {
        body.insert("max_output_tokens".into(), Value::from(max));
    }
    if let Some(format) = &req.response_format {
        let format = match format {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                let mut f = json!({"type": "json_schema", "name": name, "schema": schema});
                if let Some(strict) = strict {
                    f["strict"] = Value::Bool(*strict);
                }
                f
            }
        };
        body.insert("text".into(), json!({ "format": format }));
    }
    let mut wants_reasoning = false;
    if let Some(r) = &req.reasoning {
        let (effort, effort_note) = crate::reasoning::openai_effort(r, model);
        if let Some(n) = effort_note {
            note(&mut lossy, &n);
        }
        let mut reasoning = Map::new();
        if let Some(effort) = effort {
            wants_reasoning = effort != "none";
            reasoning.insert("effort".into(), Value::from(effort));
        } else {
            wants_reasoning = !r.disabled;
        }
        if r.include_thoughts == Some(true) {
            reasoning.insert("summary".into(), Value::from("auto"));
        }
        if !reasoning.is_empty() {
            body.insert("reasoning".into(), Value::Object(reasoning));
        }
    }
    if let Some(n) = crate::reasoning::context_management_note(req, PROTOCOL) {
        note(&mut lossy, &n);
    }
    if !req.metadata.is_empty() {
        body.insert("metadata".into(), Value::Object(req.metadata.clone()));
    }
    if let Some(user) = &req.user {
        body.insert("user".into(), Value::from(user.clone()));
    }
    if let Some(key) = &req.cache.key {
        body.insert("prompt_cache_key".into(), Value::from(key.clone()));
    }

    match req.extra_for(PROTOCOL) {
        // A Responses client: its own `store`, `include`, raw settings and hosted tools.
        Some(extra) => {
            for (k, v) in extra {
                match (k.as_str(), body.get_mut("tools"), v) {
                    ("tools", Some(Value::Array(tools)), Value::Array(hosted)) => {
                        tools.extend(hosted.iter().cloned());
                    }
                    _ => {
                        body.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        // Any other client: nothing is kept upstream, and reasoning comes back encrypted so
        // the next turn can hand it back.
        None => {
            body.insert("store".into(), Value::Bool(false));
            let mut include = Vec::new();
            if wants_reasoning {
                include.push("reasoning.encrypted_content");
            }
            if let Some(top) = req.logprobs_requested() {
                include.push(llm_proxy_api::model::LOGPROBS_INCLUDE);
                if top > 0 {
                    body.insert("top_logprobs".into(), Value::from(top));
                }
            }
            if !include.is_empty() {
                body.insert("include".into(), json!(include));
            }
        }
    }
    EncodedRequest {
        body: Value::Object(body),
        lossy,
    }
}

fn message_items(m: &Message, out: &mut Vec<Value>, lossy: &mut Vec<String>) {
    match m.role {
        Role::Assistant => assistant_items(m, out, lossy),
        Role::System | Role::Developer | Role::User | Role::Tool => {
            let role = match m.role {
                Role::System => "system",
                Role::Developer => "developer",
                _ => "user",
            };
            let mut content = Vec::new();
            for part in &m.content {
                match part {
                    Part::ToolResult(r) => {
                        flush_message(role, &mut content, out);
                        out.push(tool_output_item(r, lossy));
                    }
                    Part::Opaque(o) if o.protocol == PROTOCOL => {
                        flush_message(role, &mut content, out);
                        out.push(o.value.clone());
                    }
                    other => content.extend(input_part(other, lossy)),
                }
            }
            flush_message(role, &mut content, out);
        }
    }
}

fn flush_message(role: &str, content: &mut Vec<Value>, out: &mut Vec<Value>) {
    if !content.is_empty() {
        out.push(json!({"type": "message", "role": role, "content": std::mem::take(content)}));
    }
}

/// A user-side content part (`input_text`, `input_image`, `input_file`).
fn input_part(part: &Part, lossy: &mut Vec<String>) -> Option<Value> {
    match part {
        Part::Text(t) => Some(json!({"type": "input_text", "text": t.text})),
        Part::Image(img) => Some(image_part(img)),
        Part::Audio(_) => {
            note(
                lossy,
                "audio input is not supported by OpenAI Responses; dropped",
            );
            None
        }
        Part::Reasoning(_) | Part::ToolCall(_) | Part::ToolResult(_) | Part::Opaque(_) => None,
    }
}

fn image_part(img: &ImagePart) -> Value {
    if let MediaSource::Base64 { media_type, .. } = &img.source
        && !media_type.starts_with("image/")
    {
        let ext = media_type.rsplit('/').next().unwrap_or("bin");
        return json!({"type": "input_file", "file_data": img.source.to_url(),
                      "filename": format!("file.{ext}")});
    }
    let mut v = json!({"type": "input_image", "image_url": img.source.to_url()});
    v["detail"] = Value::from(img.detail.clone().unwrap_or_else(|| "auto".to_owned()));
    v
}

fn tool_output_item(r: &ToolResult, lossy: &mut Vec<String>) -> Value {
    let has_media = r.content.iter().any(|p| matches!(p, Part::Image(_)));
    let output = if has_media {
        Value::Array(
            r.content
                .iter()
                .filter_map(|p| input_part(p, lossy))
                .collect(),
        )
    } else {
        Value::from(r.text_marking_error())
    };
    json!({"type": "function_call_output", "call_id": r.call_id, "output": output})
}

/// Items of an assistant turn in order: text as output messages, reasoning, function calls,
/// and the Responses items kept verbatim.
fn assistant_items(m: &Message, out: &mut Vec<Value>, lossy: &mut Vec<String>) {
    let mut text = String::new();
    let flush = |text: &mut String, out: &mut Vec<Value>| {
        if !text.is_empty() {
            out.push(json!({"type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": std::mem::take(text), "annotations": []}]}));
        }
    };
    for part in &m.content {
        match part {
            Part::Text(t) => text.push_str(&t.text),
            Part::Reasoning(b) => {
                flush(&mut text, out);
                match reasoning_item(b) {
                    Some(item) => out.push(item),
                    None => note(
                        lossy,
                        "reasoning not produced by an OpenAI Responses upstream dropped",
                    ),
                }
            }
            Part::ToolCall(c) => {
                flush(&mut text, out);
                out.push(
                    json!({"type": "function_call", "call_id": c.id, "name": c.name,
                                "arguments": c.arguments}),
                );
            }
            Part::ToolResult(r) => {
                flush(&mut text, out);
                out.push(tool_output_item(r, lossy));
            }
            Part::Opaque(o) if o.protocol == PROTOCOL => {
                flush(&mut text, out);
                out.push(o.value.clone());
            }
            Part::Image(_) | Part::Audio(_) => {
                note(lossy, "media in earlier answers dropped");
            }
            // Reported by `ChatRequest::foreign_content_note`.
            Part::Opaque(_) => {}
        }
    }
    flush(&mut text, out);
}

/// The reasoning item for a block that came from an OpenAI Responses upstream; `None` for
/// other reasoning, which such an upstream cannot verify.
fn reasoning_item(b: &ReasoningBlock) -> Option<Value> {
    if b.signature.is_some() || b.redacted.is_some() {
        return None;
    }
    let upstream = b
        .provider_data
        .as_ref()
        .and_then(UpstreamReasoning::of_provider_data)?;
    let summary: Vec<Value> = if b.text.is_empty() {
        Vec::new()
    } else {
        vec![json!({"type": "summary_text", "text": b.text})]
    };
    let mut item = json!({"type": "reasoning", "summary": summary});
    if let Some(id) = upstream.id {
        item["id"] = Value::from(id);
    }
    if let Some(encrypted) = upstream.encrypted_content {
        item["encrypted_content"] = Value::from(encrypted);
    }
    Some(item)
}
