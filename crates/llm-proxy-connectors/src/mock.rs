//! The built-in `mock` backend: deterministic answers with no network, so the proxy runs
//! offline and tests have a backend. It echoes the last user message (or a scripted reply),
//! streams it word by word, calls the first offered tool until it sees a tool result, and
//! thinks out loud (with a signature) when reasoning is requested.

use std::time::Duration;

use async_trait::async_trait;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::{FinishReason, Part, Role, ToolChoice, Usage};
use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs};
use llm_proxy_api::stream::{EventStream, StreamEvent};
use llm_proxy_api::{Backend, CallContext, ChatRequest, ModelInfo};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `backends.mock.extra`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extra {
    /// Fixed reply text instead of the echo.
    #[serde(default)]
    reply: Option<String>,
    /// Delay between streamed chunks, for demos.
    #[serde(default)]
    chunk_delay_ms: u64,
}

/// The mock backend.
#[derive(Debug)]
pub struct MockBackend {
    reply: Option<String>,
    chunk_delay: Duration,
    models: Vec<String>,
}

impl MockBackend {
    /// Builds the backend from its config section.
    pub fn new(args: &FactoryArgs) -> Result<Self, BackendError> {
        let extra: Extra = serde_json::from_value(Value::Object(args.instance.extra.clone()))
            .map_err(|e| {
                BackendError::config(format!("backends.{}.extra: {e}", args.instance.instance))
            })?;
        Ok(Self {
            reply: extra.reply,
            chunk_delay: Duration::from_millis(extra.chunk_delay_ms),
            models: args.instance.models.clone(),
        })
    }

    /// The events answering `req`.
    pub fn answer(&self, model: &str, req: &ChatRequest) -> Vec<StreamEvent> {
        let last_user = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.joined_text())
            .unwrap_or_default();
        let after_tool_result = req.messages.last().is_some_and(|m| {
            m.role == Role::Tool || m.content.iter().any(|p| matches!(p, Part::ToolResult(_)))
        });
        let mut events = vec![StreamEvent::Start {
            id: Some(llm_proxy_api::ids::response_id()),
            model: Some(model.to_owned()),
        }];
        if req.reasoning.as_ref().is_some_and(|r| !r.disabled) {
            events.push(StreamEvent::ReasoningDelta {
                text: "Considering the request.".into(),
            });
            events.push(StreamEvent::ReasoningSignature {
                signature: "mock-signature".into(),
            });
        }
        let tool = match &req.tool_choice {
            Some(ToolChoice::None) => None,
            Some(ToolChoice::Function(name)) => req.tools.iter().find(|t| &t.name == name),
            Some(ToolChoice::Required) => req.tools.first(),
            _ if after_tool_result => None,
            _ => req.tools.first(),
        };
        let mut output_words = 0u64;
        let finish = if let Some(tool) = tool {
            let args = Value::Object(arguments_for(&tool.parameters, &last_user)).to_string();
            events.push(StreamEvent::ToolCallStart {
                index: 0,
                id: llm_proxy_api::ids::tool_call_id(),
                name: tool.name.clone(),
                provider_data: None,
            });
            // Split the arguments like a real streaming upstream would.
            let mid = args
                .char_indices()
                .nth(args.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            for piece in [&args[..mid], &args[mid..]] {
                if !piece.is_empty() {
                    events.push(StreamEvent::ToolCallDelta {
                        index: 0,
                        arguments: piece.into(),
                    });
                }
            }
            events.push(StreamEvent::ToolCallEnd { index: 0 });
            output_words += 8;
            FinishReason::ToolCalls
        } else {
            let text = match (&self.reply, after_tool_result) {
                (Some(r), _) => r.clone(),
                (None, true) => {
                    let result = req
                        .messages
                        .last()
                        .map(tool_result_text)
                        .unwrap_or_default();
                    format!("The tool returned: {result}")
                }
                (None, false) if last_user.is_empty() => {
                    "Hello from the llm-proxy mock backend.".into()
                }
                (None, false) => format!("You said: {last_user}"),
            };
            for word in text.split_inclusive(' ') {
                output_words += 1;
                events.push(StreamEvent::TextDelta {
                    text: word.to_owned(),
                });
            }
            FinishReason::Stop
        };
        let input_chars: usize = req.messages.iter().map(|m| m.joined_text().len()).sum();
        events.push(StreamEvent::Usage(Usage {
            input_tokens: (input_chars as u64).div_ceil(4).max(1),
            output_tokens: output_words.max(1),
            ..Usage::default()
        }));
        events.push(StreamEvent::Finish { reason: finish });
        events
    }
}

fn tool_result_text(m: &llm_proxy_api::Message) -> String {
    m.content
        .iter()
        .filter_map(|p| match p {
            Part::ToolResult(r) => Some(r.joined_text()),
            Part::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Arguments satisfying the schema's top-level properties with plausible values.
fn arguments_for(schema: &Value, user_text: &str) -> Map<String, Value> {
    let mut args = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return args;
    };
    for (name, prop) in props {
        let value = match prop.get("type").and_then(Value::as_str) {
            Some("integer") | Some("number") => Value::from(1),
            Some("boolean") => Value::Bool(true),
            Some("array") => Value::Array(Vec::new()),
            Some("object") => Value::Object(Map::new()),
            _ => match prop
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                Some(first) => first.clone(),
                None => Value::String(user_text.to_owned()),
            },
        };
        args.insert(name.clone(), value);
    }
    args
}

#[async_trait]
impl Backend for MockBackend {
    async fn stream(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<EventStream, BackendError> {
        let events = self.answer(&ctx.model, req);
        let delay = self.chunk_delay;
        if delay.is_zero() || !req.stream {
            return Ok(Box::pin(futures::stream::iter(events.into_iter().map(Ok))));
        }
        Ok(Box::pin(futures::stream::unfold(
            events.into_iter(),
            move |mut it| async move {
                let next = it.next()?;
                if matches!(next, StreamEvent::TextDelta { .. }) {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok(next), it))
            },
        )))
    }

    async fn models(&self) -> Result<Vec<ModelInfo>, BackendError> {
        if self.models.is_empty() {
            return Ok(vec![ModelInfo {
                id: "mock-model".into(),
                owned_by: Some("llm-proxy".into()),
            }]);
        }
        Ok(self.models.iter().map(ModelInfo::new).collect())
    }
}

/// Plugin definition of the mock backend.
pub fn definition() -> BackendPluginDefinition {
    crate::core_definition("mock", MockBackend::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::{Message, TextPart, ToolDefinition, ToolResult};
    use llm_proxy_api::stream::Collector;

    fn backend() -> MockBackend {
        MockBackend {
            reply: None,
            chunk_delay: Duration::ZERO,
            models: vec![],
        }
    }

    fn collect(events: Vec<StreamEvent>) -> llm_proxy_api::ChatResponse {
        let mut c = Collector::new();
        for e in events {
            c.push(e);
        }
        c.finish("m")
    }

    #[test]
    fn echoes_and_calls_tools_until_a_result_arrives() {
        let mut req = ChatRequest {
            messages: vec![Message::text(Role::User, "weather in Paris")],
            tools: vec![ToolDefinition {
                name: "get_weather".into(),
                description: None,
                parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                strict: None,
                cache_control: None,
            }],
            ..ChatRequest::default()
        };
        let r = collect(backend().answer("m", &req));
        let call = r
            .content
            .iter()
            .find_map(|p| match p {
                Part::ToolCall(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(call.name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&call.arguments).unwrap(),
            serde_json::json!({"city": "weather in Paris"})
        );
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        req.messages.push(Message {
            role: Role::Tool,
            content: vec![Part::ToolResult(ToolResult {
                cache_control: None,
                call_id: call.id,
                name: None,
                content: vec![Part::Text(TextPart::new("sunny"))],
                is_error: false,
            })],
            name: None,
        });
        let r = collect(backend().answer("m", &req));
        assert_eq!(r.joined_text(), "The tool returned: sunny");
        assert_eq!(r.finish_reason, Some(FinishReason::Stop));
        req.messages.push(Message::text(Role::User, "thanks"));
        let r = collect(backend().answer("m", &req));
        assert!(
            r.content.iter().any(|p| matches!(p, Part::ToolCall(_))),
            "a new user turn may call tools again"
        );
    }

    #[test]
    fn plain_echo() {
        let req = ChatRequest {
            messages: vec![Message::text(Role::User, "hi there")],
            ..ChatRequest::default()
        };
        let r = collect(backend().answer("m", &req));
        assert_eq!(r.joined_text(), "You said: hi there");
        assert!(r.usage.unwrap().output_tokens >= 3);
    }
}
