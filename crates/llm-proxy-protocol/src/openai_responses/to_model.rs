//! OpenAI Responses wire -> canonical model (client requests). Input items become messages
//! (consecutive model-side items join one assistant message), custom and namespaced tools
//! become plain functions whose kind is remembered for rendering the answer. What the canonical
//! model does not express (hosted tools, other item types, `include`, `store`, the raw
//! `reasoning` and `text` settings) is kept in the request's pass-through fields and opaque
//! parts, so an OpenAI Responses upstream gets it back unchanged and other upstreams drop it.

use std::collections::{HashMap, HashSet};

use llm_proxy_api::model::{
    ChatRequest, ImagePart, MediaSource, Message, OpaquePart, Part, PromptCache, ReasoningBlock,
    ReasoningConfig, ResponseFormat, Role, Sampling, TextPart, ToolCall, ToolChoice,
    ToolDefinition, ToolResult,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::PROTOCOL;
use super::object::Echo;
use super::opaque::{Decoded, ReasoningState, Sealer, UpstreamReasoning};
use super::types::{
    ContentPart, CustomTool, CustomToolCallItem, FunctionCallItem, FunctionTool, Input,
    MessageContent, MessageItem, NamespaceTool, ReasoningItem, ResponsesRequest, TextFormat,
    ToolOutputItem,
};
use crate::FieldError;

/// Separator between a namespace and a tool name in the flattened function name upstreams see.
pub const NAMESPACE_SEPARATOR: &str = "__";

/// What kind of Responses tool each canonical function name stands for, so the answer can be
/// rendered as the item the client expects (`custom_tool_call`, namespaced `function_call`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolKinds {
    custom: HashSet<String>,
    /// Flattened name -> (namespace, name).
    namespaced: HashMap<String, (String, String)>,
}

impl ToolKinds {
    /// Whether `name` (canonical) is a custom (freeform) tool.
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.contains(name)
    }

    /// The namespace and tool name behind a canonical function name.
    pub fn split<'a>(&'a self, name: &'a str) -> (Option<&'a str>, &'a str) {
        match self.namespaced.get(name) {
            Some((ns, tool)) => (Some(ns.as_str()), tool.as_str()),
            None => (None, name),
        }
    }

    fn add(&mut self, namespace: Option<&str>, name: &str, custom: bool) -> String {
        let flat = match namespace {
            Some(ns) => {
                let flat = format!("{ns}{NAMESPACE_SEPARATOR}{name}");
                self.namespaced
                    .insert(flat.clone(), (ns.to_owned(), name.to_owned()));
                flat
            }
            None => name.to_owned(),
        };
        if custom {
            self.custom.insert(flat.clone());
        }
        flat
    }
}

/// A converted request and what rendering its answer needs.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    /// The canonical request.
    pub request: ChatRequest,
    /// Kinds of the offered tools.
    pub tools: ToolKinds,
    /// What the conversion dropped.
    pub lossy: Vec<String>,
    /// Request fields a response object repeats (`instructions`, `tools`, `tool_choice`, ...).
    pub echo: Echo,
    /// `prompt_cache_key`, a session id when the client gives no other.
    pub prompt_cache_key: Option<String>,
    /// `previous_response_id`.
    pub previous_response_id: Option<String>,
    /// `store` (default true).
    pub store: bool,
}

fn note(lossy: &mut Vec<String>, message: String) {
    if !lossy.contains(&message) {
        lossy.push(message);
    }
}

/// Deserializes one item or tool, naming its path on failure.
fn typed<T: DeserializeOwned>(value: Value, param: &str) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let mut param = if path == "." || path.is_empty() {
            param.to_owned()
        } else {
            format!("{param}.{path}")
        };
        let text = inner.to_string();
        if let Some((field, _)) = text
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split_once('`'))
        {
            param = format!("{param}.{field}");
        }
        FieldError::new(format!("invalid request field '{param}': {text}"), param)
    })
}

/// Converts a client request to the canonical model. `sealer` opens the reasoning state the
/// proxy sealed into earlier answers' `encrypted_content`.
pub fn request_to_model(
    req: ResponsesRequest,
    sealer: &dyn Sealer,
) -> Result<Converted, FieldError> {
    let echo = Echo::of(&req);
    let mut lossy = Vec::new();
    let mut kinds = ToolKinds::default();

    let mut tools = Vec::new();
    let mut hosted = Vec::new();
    for (i, raw) in req.tools.unwrap_or_default().into_iter().enumerate() {
        if let Some(raw) = tool_to_model(
            raw,
            &format!("tools[{i}]"),
            None,
            &mut kinds,
            &mut tools,
            &mut lossy,
        )? {
            hosted.push(raw);
        }
    }

    let mut messages = Vec::new();
    if let Some(instructions) = req.instructions.filter(|s| !s.is_empty()) {
        messages.push(Message::text(Role::System, instructions));
    }
    match req.input {
        None => {}
        Some(Input::Text(text)) => messages.push(Message::text(Role::User, text)),
        Some(Input::Items(items)) => input_to_model(items, sealer, &mut messages, &mut lossy)?,
    }

    let tool_choice = req
        .tool_choice
        .as_ref()
        .map(|c| tool_choice_to_model(c, &mut lossy))
        .transpose()?;

    let mut extra = req.extra;
    // Kept verbatim for an OpenAI Responses upstream (see `request_from_model`).
    if !hosted.is_empty() {
        extra.insert("tools".into(), Value::Array(hosted));
    }
    if let Some(include) = &req.include {
        extra.insert("include".into(), json!(include));
    }
    if let Some(store) = req.store {
        extra.insert("store".into(), Value::Bool(store));
    }
    if let Some(raw) = req
        .reasoning
        .as_ref()
        .and_then(|r| serde_json::to_value(r).ok())
    {
        extra.insert("reasoning".into(), raw);
    }
    if let Some(raw) = req
        .tool_choice
        .as_ref()
        .filter(|c| c.get("type").and_then(Value::as_str) == Some("allowed_tools"))
    {
        extra.insert("tool_choice".into(), raw.clone());
    }
    let response_format = match req.text {
        None => None,
        Some(text) => {
            if let Some(raw) = serde_json::to_value(&text)
                .ok()
                .filter(|_| text.verbosity.is_some())
            {
                extra.insert("text".into(), raw);
            }
            if let Some(verbosity) = text.verbosity {
                note(
                    &mut lossy,
                    format!(
                        "text.verbosity '{verbosity}' dropped unless the upstream speaks OpenAI Responses"
                    ),
                );
            }
            text.format.map(|f| match f {
                TextFormat::Text => ResponseFormat::Text,
                TextFormat::JsonObject => ResponseFormat::JsonObject,
                TextFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                    ..
                } => ResponseFormat::JsonSchema {
                    name,
                    schema,
                    strict,
                },
            })
        }
    };

    let reasoning = req.reasoning.map(|r| {
        let summary = r.summary.or(r.generate_summary);
        ReasoningConfig {
            disabled: r.effort.as_deref() == Some("none"),
            effort: r.effort,
            budget_tokens: None,
            include_thoughts: summary.map(|s| s != "none"),
            adaptive: false,
        }
    });

    if let Some(tier) = req.service_tier.filter(|t| t != "auto" && t != "default") {
        note(
            &mut lossy,
            format!("service_tier '{tier}' is not forwarded"),
        );
        extra.insert("service_tier".into(), Value::from(tier));
    }

    let request = ChatRequest {
        cache: PromptCache {
            key: req.prompt_cache_key.clone().filter(|k| !k.is_empty()),
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
            ..Sampling::default()
        },
        max_tokens: req.max_output_tokens,
        stop: Vec::new(),
        response_format,
        reasoning,
        metadata: req.metadata.unwrap_or_default(),
        user: req.user,
        body_patches: Default::default(),
        extra_protocol: (!extra.is_empty()).then(|| PROTOCOL.to_owned()),
        extra,
    };
    Ok(Converted {
        request,
        tools: kinds,
        lossy,
        echo,
        prompt_cache_key: req.prompt_cache_key.filter(|k| !k.is_empty()),
        previous_response_id: req.previous_response_id.filter(|id| !id.is_empty()),
        store: req.store.unwrap_or(true),
    })
}

/// The JSON schema a custom tool's single `input` argument gets.
fn custom_tool_parameters() -> Value {
    json!({
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The raw input for the tool."}},
        "required": ["input"],
        "additionalProperties": false
    })
}

/// Adds a tool; a hosted tool is given back (raw) for the pass-through fields.
fn tool_to_model(
    raw: Value,
    param: &str,
    namespace: Option<&str>,
    kinds: &mut ToolKinds,
    out: &mut Vec<ToolDefinition>,
    lossy: &mut Vec<String>,
) -> Result<Option<Value>, FieldError> {
    let kind = raw
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| FieldError::new("every tool needs a 'type'", format!("{param}.type")))?
        .to_owned();
    match kind.as_str() {
        "function" => {
            let t: FunctionTool = typed(raw, param)?;
            let name = kinds.add(namespace, &t.name, false);
            out.push(ToolDefinition {
                name,
                description: t.description,
                parameters: t
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: t.strict,
                cache_control: None,
            });
        }
        "custom" => {
            let t: CustomTool = typed(raw, param)?;
            let name = kinds.add(namespace, &t.name, true);
            let mut description = t.description.unwrap_or_default();
            if let Some(format) = t.format.filter(|f| f.kind != "text") {
                note(
                    lossy,
                    format!(
                        "custom tool '{}': its grammar is described to the model, not enforced",
                        t.name
                    ),
                );
                description.push_str(&format!(
                    "\n\nThe input must follow this {} grammar:\n{}",
                    format.syntax.as_deref().unwrap_or(&format.kind),
                    format.definition.as_deref().unwrap_or_default()
                ));
            }
            out.push(ToolDefinition {
                name,
                description: (!description.is_empty()).then_some(description),
                parameters: custom_tool_parameters(),
                strict: None,
                cache_control: None,
            });
        }
        "namespace" if namespace.is_none() => {
            let group: NamespaceTool = typed(raw, param)?;
            for (j, inner) in group.tools.into_iter().enumerate() {
                // Hosted tools do not nest in namespaces.
                let _ = tool_to_model(
                    inner,
                    &format!("{param}.tools[{j}]"),
                    Some(&group.name),
                    kinds,
                    out,
                    lossy,
                )?;
            }
        }
        "namespace" => {
            return Err(FieldError::new(
                "namespaces cannot be nested",
                format!("{param}.type"),
            ));
        }
        hosted => {
            note(
                lossy,
                format!(
                    "hosted tool '{hosted}' dropped unless the upstream speaks OpenAI Responses"
                ),
            );
            return Ok(Some(raw));
        }
    }
    Ok(None)
}

fn tool_choice_to_model(v: &Value, lossy: &mut Vec<String>) -> Result<ToolChoice, FieldError> {
    let bad = |what: String| FieldError::new(what, "tool_choice");
    match v {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            other => Err(bad(format!("unknown tool_choice '{other}'"))),
        },
        Value::Object(o) => {
            let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
            match kind {
                "function" | "custom" => {
                    let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                        FieldError::new("tool_choice needs a 'name'", "tool_choice.name")
                    })?;
                    let name = match o.get("namespace").and_then(Value::as_str) {
                        Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
                        None => name.to_owned(),
                    };
                    Ok(ToolChoice::Function(name))
                }
                "allowed_tools" => {
                    note(
                        lossy,
                        "tool_choice allowed_tools: the tool subset is not enforced".to_owned(),
                    );
                    match o.get("mode").and_then(Value::as_str) {
                        Some("required") => Ok(ToolChoice::Required),
                        _ => Ok(ToolChoice::Auto),
                    }
                }
                other => Err(bad(format!(
                    "tool_choice of type '{other}' is not supported (hosted tools cannot run behind the proxy)"
                ))),
            }
        }
        _ => Err(bad("tool_choice must be a string or an object".to_owned())),
    }
}

/// Builds the conversation from input items. Items the model produced (reasoning, assistant
/// messages, tool calls) that follow each other form one assistant message, the shape every
/// upstream expects; each tool output is a tool message.
fn input_to_model(
    items: Vec<Value>,
    sealer: &dyn Sealer,
    out: &mut Vec<Message>,
    lossy: &mut Vec<String>,
) -> Result<(), FieldError> {
    let mut assistant: Vec<Part> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    let mut call_data: Option<Value> = None;
    let flush = |assistant: &mut Vec<Part>, out: &mut Vec<Message>| {
        if !assistant.is_empty() {
            out.push(Message {
                role: Role::Assistant,
                content: std::mem::take(assistant),
                name: None,
            });
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = match item.get("type") {
            Some(Value::String(t)) => t.clone(),
            None if item.get("role").is_some() => "message".to_owned(),
            _ => {
                return Err(FieldError::new(
                    "input items need a 'type' (or a 'role' for messages)",
                    format!("{param}.type"),
                ));
            }
        };
        match kind.as_str() {
            "message" => {
                let m: MessageItem = typed(item, &param)?;
                let role = match m.role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" => Role::System,
                    "developer" => Role::Developer,
                    other => {
                        return Err(FieldError::new(
                            format!("unknown message role '{other}'"),
                            format!("{param}.role"),
                        ));
                    }
                };
                let parts = content_to_parts(m.content, &format!("{param}.content"))?;
                if role == Role::Assistant {
                    assistant.extend(parts);
                } else {
                    flush(&mut assistant, out);
                    out.push(Message {
                        role,
                        content: parts,
                        name: None,
                    });
                }
            }
            "reasoning" => {
                let r: ReasoningItem = typed(item, &param)?;
                let state = match r.encrypted_content.as_deref().filter(|s| !s.is_empty()) {
                    None => ReasoningState::default(),
                    Some(encrypted) => match ReasoningState::decode(encrypted, sealer) {
                        Decoded::Ours(state) | Decoded::Foreign(state) => state,
                        Decoded::Unreadable => {
                            note(
                                lossy,
                                "reasoning encrypted_content not sealed by this proxy (tampered, \
                                 another key, or an old format); its reasoning state dropped"
                                    .to_owned(),
                            );
                            ReasoningState::default()
                        }
                    },
                };
                let text = reasoning_text(&r);
                // The upstream's own reasoning keeps its item id too.
                let provider_data = match state.upstream() {
                    Some(upstream) => Some(
                        UpstreamReasoning {
                            id: r.id.clone(),
                            ..upstream
                        }
                        .to_provider_data(),
                    ),
                    None => state.provider_data,
                };
                if let Some(data) = state.call_provider_data.clone() {
                    call_data = Some(data);
                }
                let block = ReasoningBlock {
                    text,
                    signature: state.signature,
                    redacted: state.redacted,
                    provider_data,
                };
                if block != ReasoningBlock::default() {
                    assistant.push(Part::Reasoning(block));
                }
            }
            "function_call" => {
                let c: FunctionCallItem = typed(item, &param)?;
                let name = match &c.namespace {
                    Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{}", c.name),
                    None => c.name,
                };
                call_names.insert(c.call_id.clone(), name.clone());
                assistant.push(Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: c.call_id,
                    name,
                    arguments: if c.arguments.trim().is_empty() {
                        "{}".to_owned()
                    } else {
                        c.arguments
                    },
                    provider_data: call_data.take(),
                }));
            }
            "custom_tool_call" => {
                let c: CustomToolCallItem = typed(item, &param)?;
                let name = match &c.namespace {
                    Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{}", c.name),
                    None => c.name,
                };
                call_names.insert(c.call_id.clone(), name.clone());
                assistant.push(Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: c.call_id,
                    name,
                    arguments: json!({ "input": c.input }).to_string(),
                    provider_data: call_data.take(),
                }));
            }
            "function_call_output" | "custom_tool_call_output" => {
                let o: ToolOutputItem = typed(item, &param)?;
                flush(&mut assistant, out);
                let content = content_to_parts(o.output, &format!("{param}.output"))?;
                out.push(Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult(ToolResult {
                        cache_control: None,
                        name: call_names.get(&o.call_id).cloned(),
                        call_id: o.call_id,
                        content,
                        is_error: false,
                    })],
                    name: None,
                });
            }
            // Hosted tool calls, item references, ...: kept verbatim for an OpenAI Responses
            // upstream, in conversation order.
            _ => assistant.push(Part::Opaque(OpaquePart {
                protocol: PROTOCOL.to_owned(),
                value: item,
            })),
        }
    }
    flush(&mut assistant, out);
    Ok(())
}

/// The visible text of a reasoning item: its raw reasoning if given, else its summary.
fn reasoning_text(r: &ReasoningItem) -> String {
    let pieces = match &r.content {
        Some(content) if !content.is_empty() => content,
        _ => &r.summary,
    };
    pieces
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn content_to_parts(content: MessageContent, param: &str) -> Result<Vec<Part>, FieldError> {
    let parts = match content {
        MessageContent::Text(t) => return Ok(vec![Part::Text(TextPart::new(t))]),
        MessageContent::Parts(parts) => parts,
    };
    parts
        .into_iter()
        .enumerate()
        .map(|(j, p)| {
            let param = || format!("{param}[{j}]");
            Ok(match p {
                ContentPart::InputText { text } | ContentPart::OutputText { text } => {
                    Part::Text(TextPart::new(text))
                }
                ContentPart::Refusal { refusal } => Part::Text(TextPart::new(refusal)),
                ContentPart::InputImage {
                    image_url: Some(url),
                    detail,
                    ..
                } => Part::Image(ImagePart {
                    cache_control: None,
                    source: MediaSource::from_url(&url),
                    detail: detail.filter(|d| d != "auto"),
                    document: None,
                }),
                ContentPart::InputImage { .. } => {
                    return Err(FieldError::new(
                        "images by file_id are not supported: send an image_url (a URL or a data: URL)",
                        param(),
                    ));
                }
                ContentPart::InputFile {
                    file_data,
                    file_url,
                    filename,
                    ..
                } => file_to_part(file_data, file_url, filename.as_deref())
                    .map_err(|m| FieldError::new(m, param()))?,
            })
        })
        .collect()
}

/// An `input_file` as inline media (the canonical model carries documents like images).
fn file_to_part(
    data: Option<String>,
    url: Option<String>,
    filename: Option<&str>,
) -> Result<Part, String> {
    let source = match (data, url) {
        (Some(data), _) if data.starts_with("data:") => MediaSource::from_url(&data),
        (Some(data), _) => {
            let media_type = filename
                .and_then(|f| f.rsplit_once('.'))
                .and_then(|(_, ext)| match ext.to_ascii_lowercase().as_str() {
                    "pdf" => Some("application/pdf"),
                    "png" => Some("image/png"),
                    "jpg" | "jpeg" => Some("image/jpeg"),
                    "gif" => Some("image/gif"),
                    "webp" => Some("image/webp"),
                    _ => None,
                })
                .ok_or("input_file needs a data: URL or a filename with a known extension")?;
            MediaSource::Base64 {
                media_type: media_type.to_owned(),
                data,
            }
        }
        (None, Some(url)) => MediaSource::Url { url },
        (None, None) => {
            return Err(
                "files by file_id are not supported: send file_data or file_url".to_owned(),
            );
        }
    };
    Ok(Part::Image(ImagePart {
        cache_control: None,
        source,
        detail: None,
        document: None,
    }))
}
