//! Ollama's native chat wire format (`POST /api/chat`) and the conversion of a canonical
//! request into it. Fields the format cannot carry are reported as lossy notes.

use std::collections::HashMap;

use llm_proxy_api::model::{
    ChatRequest, MediaSource, Message, Part, ResponseFormat, Role, ToolChoice,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::settings::Settings;

/// The request body of `POST /api/chat`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OllamaChatRequest {
    /// Model tag (`llama3.2`, `qwen3:8b`).
    pub model: String,
    /// Conversation.
    pub messages: Vec<OllamaMessage>,
    /// Functions the model may call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<OllamaTool>,
    /// `"json"` or a JSON schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    /// Model options (`temperature`, `top_p`, `top_k`, `seed`, `num_predict`, `stop`, ...).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    /// NDJSON stream (`true`) or one JSON object.
    pub stream: bool,
    /// Reasoning: `true` / `false`, or a level for models that take one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub think: Option<Value>,
    /// How long the model stays loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// One message (request and response side).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OllamaMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Text.
    #[serde(default)]
    pub content: String,
    /// Base64 images (no `data:` prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Reasoning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// Tool calls of an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<OllamaToolCall>,
    /// Function a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

/// A tool call; arguments are a JSON object, not a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OllamaToolCall {
    /// Call id (recent Ollama versions send one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The call.
    pub function: OllamaFunctionCall,
}

/// Function name and arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OllamaFunctionCall {
    /// Position among the message's calls (sent by some versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Function name.
    pub name: String,
    /// Arguments object.
    #[serde(default)]
    pub arguments: Value,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OllamaTool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function.
    pub function: OllamaFunction,
}

/// A function definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OllamaFunction {
    /// Name.
    pub name: String,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments.
    pub parameters: Value,
}

/// One NDJSON line of a streamed answer (or the whole non-streamed answer).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ChatChunk {
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// The message delta.
    #[serde(default)]
    pub message: Option<OllamaMessage>,
    /// Last line.
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length`, `load`, ...
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Input tokens.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Output tokens.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// An error reported in the stream.
    #[serde(default)]
    pub error: Option<String>,
}

/// Builds the `/api/chat` body for `model`; what cannot be carried goes to the returned notes.
pub fn request_from_model(
    req: &ChatRequest,
    model: &str,
    settings: &Settings,
) -> (OllamaChatRequest, Vec<String>) {
    let mut notes: Vec<String> = req.foreign_content_note("ollama").into_iter().collect();
    let messages = messages_from_model(&req.messages, &mut notes);
    let mut tools: Vec<OllamaTool> = req
        .tools
        .iter()
        .map(|t| OllamaTool {
            kind: "function",
            function: OllamaFunction {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
            },
        })
        .collect();
    match &req.tool_choice {
        Some(ToolChoice::None) => tools.clear(),
        Some(ToolChoice::Required | ToolChoice::Function(_)) if !tools.is_empty() => {
            notes.push("ollama-native: tool_choice (forcing a tool) is not supported".to_owned());
        }
        _ => {}
    }
    let format = match &req.response_format {
        Some(ResponseFormat::JsonObject) => Some(Value::from("json")),
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(schema.clone()),
        Some(ResponseFormat::Text) | None => None,
    };
    (
        OllamaChatRequest {
            model: model.to_owned(),
            messages,
            tools,
            format,
            options: options(req, settings),
            stream: req.stream,
            think: think(req, settings),
            keep_alive: settings.keep_alive.clone(),
        },
        notes,
    )
}

/// Configured defaults overlaid with the request's sampling parameters.
fn options(req: &ChatRequest, settings: &Settings) -> Map<String, Value> {
    let mut options = settings.options.clone();
    let s = &req.sampling;
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            options.insert(key.to_owned(), value);
        }
    };
    set("temperature", s.temperature.map(Value::from));
    set("top_p", s.top_p.map(Value::from));
    set("top_k", s.top_k.map(Value::from));
    set("seed", s.seed.map(Value::from));
    set("presence_penalty", s.presence_penalty.map(Value::from));
    set("frequency_penalty", s.frequency_penalty.map(Value::from));
    set("num_predict", req.max_tokens.map(Value::from));
    if !req.stop.is_empty() {
        set("stop", Some(Value::from(req.stop.clone())));
    }
    options
}

/// `think`: off when disabled, a level or `true` when asked for, the configured default
/// otherwise.
fn think(req: &ChatRequest, settings: &Settings) -> Option<Value> {
    let Some(reasoning) = &req.reasoning else {
        return settings.think.clone();
    };
    let effort = reasoning.effort.as_deref();
    if reasoning.disabled || effort == Some("none") || reasoning.include_thoughts == Some(false) {
        return Some(Value::Bool(false));
    }
    match effort {
        Some(level @ ("low" | "medium" | "high")) if settings.think_levels => Some(level.into()),
        Some(_) => Some(Value::Bool(true)),
        None if reasoning.budget_tokens.is_some() || reasoning.include_thoughts == Some(true) => {
            Some(Value::Bool(true))
        }
        None => settings.think.clone(),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System | Role::Developer => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

/// Canonical messages -> Ollama messages. Tool results become `tool` messages (named after the
/// call they answer); text and inline images of one message stay together.
fn messages_from_model(messages: &[Message], notes: &mut Vec<String>) -> Vec<OllamaMessage> {
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::new();
    for message in messages {
        let mut current = OllamaMessage {
            role: role_name(message.role).to_owned(),
            ..Default::default()
        };
        for part in &message.content {
            match part {
                Part::Text(t) => current.content.push_str(&t.text),
                Part::Image(image) => match &image.source {
                    MediaSource::Base64 { data, .. } => current.images.push(data.clone()),
                    MediaSource::Url { .. } => notes.push(
                        "ollama-native: image URLs are not supported (only inline images)"
                            .to_owned(),
                    ),
                },
                Part::Audio(_) => {
                    notes.push("ollama-native: audio input is not supported".to_owned())
                }
                // Reported once for the whole request by `foreign_content_note`.
                Part::Opaque(_) => {}
                Part::Reasoning(block) => {
                    if !block.text.is_empty() {
                        current
                            .thinking
                            .get_or_insert_with(String::new)
                            .push_str(&block.text);
                    }
                    if block.signature.is_some() || block.redacted.is_some() {
                        notes.push(
                            "ollama-native: reasoning signatures and redacted reasoning are not \
                             sent to Ollama"
                                .to_owned(),
                        );
                    }
                }
                Part::ToolCall(call) => {
                    call_names.insert(&call.id, &call.name);
                    let arguments = match serde_json::from_str::<Value>(&call.arguments) {
                        Ok(v @ Value::Object(_)) => v,
                        _ => {
                            notes.push(format!(
                                "ollama-native: arguments of tool call '{}' are not a JSON object; \
                                 sent as {{}}",
                                call.id
                            ));
                            Value::Object(Map::new())
                        }
                    };
                    current.tool_calls.push(OllamaToolCall {
                        id: None,
                        function: OllamaFunctionCall {
                            index: None,
                            name: call.name.clone(),
                            arguments,
                        },
                    });
                }
                Part::ToolResult(result) => {
                    flush(&mut current, &mut out);
                    let name = result.name.clone().or_else(|| {
                        call_names
                            .get(result.call_id.as_str())
                            .map(|n| (*n).to_owned())
                    });
                    // Ollama's tool messages have no error flag: the text says it.
                    out.push(OllamaMessage {
                        role: "tool".to_owned(),
                        content: result.text_marking_error(),
                        tool_name: name,
                        ..Default::default()
                    });
                }
            }
        }
        flush(&mut current, &mut out);
    }
    notes.sort();
    notes.dedup();
    out
}

/// Pushes `current` if it holds anything and starts an empty message of the same role.
fn flush(current: &mut OllamaMessage, out: &mut Vec<OllamaMessage>) {
    let empty = current.content.is_empty()
        && current.images.is_empty()
        && current.thinking.is_none()
        && current.tool_calls.is_empty();
    let next = OllamaMessage {
        role: current.role.clone(),
        ..Default::default()
    };
    let taken = std::mem::replace(current, next);
    if !empty {
        out.push(taken);
    }
}

#[cfg(test)]
mod tests {
    use llm_proxy_api::model::{
        ImagePart, ReasoningBlock, ReasoningConfig, Sampling, TextPart, ToolCall, ToolDefinition,
        ToolResult,
    };
    use serde_json::json;

    use super::*;

    fn request(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "llama3.2".into(),
            messages,
            stream: true,
            ..ChatRequest::default()
        }
    }

    #[test]
    fn full_conversation_with_tools_images_and_thinking() {
        let mut req = request(vec![
            Message::text(Role::System, "be brief"),
            Message {
                role: Role::User,
                content: vec![
                    Part::Text(TextPart::new("weather in Paris? ")),
                    Part::Image(ImagePart {
                        cache_control: None,
                        source: MediaSource::Base64 {
                            media_type: "image/png".into(),
                            data: "AAAA".into(),
                        },
                        detail: None,
                        document: None,
                    }),
                ],
                name: None,
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::Reasoning(ReasoningBlock {
                        text: "need the tool".into(),
                        ..Default::default()
                    }),
                    Part::ToolCall(ToolCall {
                        cache_control: None,
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                        provider_data: None,
                    }),
                ],
                name: None,
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::ToolResult(ToolResult {
                        cache_control: None,
                        call_id: "call_1".into(),
                        name: None,
                        content: vec![Part::Text(TextPart::new("sunny"))],
                        is_error: false,
                    }),
                    Part::Text(TextPart::new("thanks")),
                ],
                name: None,
            },
        ]);
        req.tools = vec![ToolDefinition {
            name: "get_weather".into(),
            description: Some("d".into()),
            parameters: json!({"type": "object"}),
            strict: None,
            cache_control: None,
        }];
        req.sampling = Sampling {
            temperature: Some(0.2),
            top_k: Some(40),
            seed: Some(7),
            ..Sampling::default()
        };
        req.max_tokens = Some(100);
        req.stop = vec!["END".into()];
        req.reasoning = Some(ReasoningConfig {
            effort: Some("high".into()),
            ..Default::default()
        });
        let settings = Settings {
            keep_alive: Some(json!("5m")),
            options: json!({"num_ctx": 8192, "temperature": 1.0})
                .as_object()
                .cloned()
                .unwrap(),
            ..Settings::default()
        };
        let (wire, notes) = request_from_model(&req, "llama3.2", &settings);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            serde_json::to_value(&wire).unwrap(),
            json!({
                "model": "llama3.2",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "weather in Paris? ", "images": ["AAAA"]},
                    {"role": "assistant", "content": "", "thinking": "need the tool",
                     "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                    {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                    {"role": "user", "content": "thanks"}
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d",
                           "parameters": {"type": "object"}}}],
                "options": {"num_ctx": 8192, "temperature": 0.2, "top_k": 40, "seed": 7,
                            "num_predict": 100, "stop": ["END"]},
                "stream": true,
                "think": true,
                "keep_alive": "5m"
            })
        );
    }

    #[test]
    fn think_follows_the_request_then_the_settings() {
        let with = |reasoning: Option<ReasoningConfig>, settings: &Settings| {
            let mut req = request(vec![Message::text(Role::User, "hi")]);
            req.reasoning = reasoning;
            request_from_model(&req, "m", settings).0.think
        };
        let plain = Settings::default();
        let levels = Settings {
            think_levels: true,
            think: Some(json!(true)),
            ..Settings::default()
        };
        assert_eq!(with(None, &plain), None);
        assert_eq!(with(None, &levels), Some(json!(true)));
        let effort = |e: &str| {
            Some(ReasoningConfig {
                effort: Some(e.into()),
                ..Default::default()
            })
        };
        assert_eq!(with(effort("medium"), &plain), Some(json!(true)));
        assert_eq!(with(effort("medium"), &levels), Some(json!("medium")));
        assert_eq!(with(effort("none"), &levels), Some(json!(false)));
        let disabled = Some(ReasoningConfig {
            disabled: true,
            ..Default::default()
        });
        assert_eq!(with(disabled, &levels), Some(json!(false)));
        let budget = Some(ReasoningConfig {
            budget_tokens: Some(1024),
            ..Default::default()
        });
        assert_eq!(with(budget, &plain), Some(json!(true)));
    }

    #[test]
    fn what_cannot_be_sent_is_noted() {
        let mut req = request(vec![Message {
            role: Role::User,
            content: vec![
                Part::Image(ImagePart {
                    cache_control: None,
                    source: MediaSource::Url {
                        url: "https://x/a.png".into(),
                    },
                    detail: None,
                    document: None,
                }),
                Part::Image(ImagePart {
                    cache_control: None,
                    source: MediaSource::Url {
                        url: "https://x/b.png".into(),
                    },
                    detail: None,
                    document: None,
                }),
            ],
            name: None,
        }]);
        req.tools = vec![ToolDefinition {
            name: "f".into(),
            description: None,
            parameters: json!({}),
            strict: None,
            cache_control: None,
        }];
        req.tool_choice = Some(ToolChoice::Required);
        req.response_format = Some(ResponseFormat::JsonObject);
        let (wire, notes) = request_from_model(&req, "m", &Settings::default());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(wire.messages.is_empty());
        assert_eq!(wire.format, Some(json!("json")));
        req.tool_choice = Some(ToolChoice::None);
        assert!(
            request_from_model(&req, "m", &Settings::default())
                .0
                .tools
                .is_empty()
        );
    }

    #[test]
    fn error_results_say_so_in_the_text() {
        let result = |text: &str, is_error: bool| Message {
            role: Role::User,
            content: vec![Part::ToolResult(ToolResult {
                cache_control: None,
                call_id: "call_1".into(),
                name: Some("get_time".into()),
                content: vec![Part::Text(TextPart::new(text))],
                is_error,
            })],
            name: None,
        };
        let req = request(vec![
            result("unknown timezone", true),
            result("Error: already marked", true),
            result("12:00", false),
        ]);
        let (wire, notes) = request_from_model(&req, "m", &Settings::default());
        assert!(notes.is_empty(), "{notes:?}");
        let texts: Vec<&str> = wire.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            texts,
            ["Error: unknown timezone", "Error: already marked", "12:00"]
        );
    }

    #[test]
    fn chunks_parse_with_and_without_optional_fields() {
        let chunk: ChatChunk = serde_json::from_str(
            r#"{"model":"m","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":false}"#,
        )
        .unwrap();
        let call = &chunk.message.unwrap().tool_calls[0];
        assert_eq!(call.function.arguments, json!({"a": 1}));
        let error: ChatChunk = serde_json::from_str(r#"{"error":"model not found"}"#).unwrap();
        assert_eq!(error.error.as_deref(), Some("model not found"));
    }
}
