//! JSON repair: a tool call's arguments, and the text of a structured-output answer
//! (`response_format` JSON), stream on while they are a valid JSON prefix; from the first
//! byte that is not, the rest is held until the value ends (at most `buffer_cap` bytes in
//! all) and repaired ([`super::parse::json`]) so that it continues what was already sent. Strict mode fails the attempt when
//! they cannot be repaired or miss a property the schema requires; otherwise they pass as
//! they came. Valid JSON passes unchanged.

use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::ResponseFormat;
use llm_proxy_api::stream::StreamEvent;
use serde_json::Value;

use super::parse::json;
use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;

/// Default bound on held arguments / structured text.
pub const DEFAULT_BUFFER_CAP: usize = 64 * 1024;

/// The JSON repair processor.
#[derive(Debug, Clone)]
pub struct JsonRepair {
    buffer_cap: usize,
    strict: bool,
}

impl JsonRepair {
    /// Holds at most `buffer_cap` bytes per value; `strict` rejects what cannot be repaired.
    pub fn new(buffer_cap: usize, strict: bool) -> Self {
        Self { buffer_cap, strict }
    }
}

impl EventProcessor for JsonRepair {
    fn name(&self) -> &'static str {
        "json_repair"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, _: &RequestContext, req: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        let structured = match &req.response_format {
            Some(ResponseFormat::JsonObject) => Some(None),
            Some(ResponseFormat::JsonSchema { schema, .. }) => Some(Some(required_of(schema))),
            _ => None,
        };
        if req.tools.is_empty() && structured.is_none() {
            return None;
        }
        Some(Box::new(Repairing {
            cap: self.buffer_cap,
            strict: self.strict,
            required: req
                .tools
                .iter()
                .map(|t| (t.name.clone(), required_of(&t.parameters)))
                .collect(),
            calls: Vec::new(),
            text: structured.map(|required| Held {
                required: required.unwrap_or_default(),
                ..Held::default()
            }),
        }))
    }
}

/// The properties a schema requires at the top level.
fn required_of(schema: &Value) -> Vec<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One value being watched.
#[derive(Debug, Default)]
struct Held {
    /// Everything of the value so far.
    buf: String,
    /// Bytes of `buf` already sent on.
    sent: usize,
    /// `buf` is still a valid JSON prefix.
    prefix: json::JsonPrefix,
    broken: bool,
    /// Past the cap: passing through unrepaired.
    overflow: bool,
    required: Vec<String>,
}

/// One answer's state.
struct Repairing {
    cap: usize,
    strict: bool,
    /// Required argument properties by tool name.
    required: Vec<(String, Vec<String>)>,
    /// Open tool calls by index.
    calls: Vec<(u32, String, Held)>,
    /// Structured-output text, when the request asked for JSON.
    text: Option<Held>,
}

impl Repairing {
    /// The rest of the value to send, repaired if needed so that it continues what was sent;
    /// an error in strict mode when it cannot be.
    fn fixed(&self, what: &str, held: Held) -> Result<String, BackendError> {
        if held.overflow {
            return Ok(String::new());
        }
        let rest = held.buf[held.sent..].to_owned();
        if held.buf.trim().is_empty() {
            return Ok(rest);
        }
        let fixed = if !held.broken && held.prefix.is_complete() {
            Some(held.buf.clone())
        } else {
            json::repair(&held.buf).filter(|f| f.starts_with(&held.buf[..held.sent]))
        };
        match fixed {
            Some(f) => {
                if f != held.buf {
                    tracing::debug!("repaired malformed JSON in {what}");
                }
                if self.strict {
                    let value: Value = serde_json::from_str(&f).unwrap_or(Value::Null);
                    if let Some(missing) = held
                        .required
                        .iter()
                        .find(|k| value.get(k.as_str()).is_none())
                    {
                        return Err(unusable(format!(
                            "the model's {what} lack the required property '{missing}'"
                        )));
                    }
                }
                Ok(f[held.sent..].to_owned())
            }
            None if self.strict => Err(unusable(format!(
                "the model's {what} are not valid JSON and cannot be repaired"
            ))),
            None => Ok(rest),
        }
    }

    fn close_call(&mut self, pos: usize, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let (index, name, held) = self.calls.remove(pos);
        let arguments = self.fixed(&format!("arguments for tool '{name}'"), held)?;
        if !arguments.is_empty() {
            out.push(StreamEvent::ToolCallDelta { index, arguments });
        }
        Ok(())
    }

    fn close_all(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        while !self.calls.is_empty() {
            self.close_call(0, out)?;
        }
        if let Some(held) = self.text.take() {
            let text = self.fixed("structured output", held)?;
            if !text.is_empty() {
                out.push(StreamEvent::TextDelta { text });
            }
        }
        Ok(())
    }
}

/// The model's answer is unusable: the attempt fails (and may be retried), without counting
/// against the backend's health.
fn unusable(message: String) -> BackendError {
    BackendError::new(ErrorKind::Unavailable, ErrorSource::Internal, message)
        .with_code("invalid_model_json")
}

/// Adds `piece` to `held`; returns what can go on now: the valid prefix, or past `cap`
/// everything not yet sent, as it is.
fn hold(held: &mut Held, piece: String, cap: usize) -> Option<String> {
    if held.overflow {
        return Some(piece);
    }
    held.buf.push_str(&piece);
    if held.buf.len() > cap {
        held.overflow = true;
        let rest = held.buf[held.sent..].to_owned();
        held.buf = String::new();
        return Some(rest);
    }
    if !held.broken && !held.prefix.feed(&piece) {
        held.broken = true;
    }
    if held.broken {
        return None;
    }
    let safe = json::safe_prefix_len(&held.buf);
    (safe > held.sent).then(|| {
        let out = held.buf[held.sent..safe].to_owned();
        held.sent = safe;
        out
    })
}

impl EventProcess for Repairing {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match event {
            StreamEvent::ToolCallStart {
                index, ref name, ..
            } => {
                let required = self
                    .required
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, r)| r.clone())
                    .unwrap_or_default();
                self.calls.push((
                    index,
                    name.clone(),
                    Held {
                        required,
                        ..Held::default()
                    },
                ));
                out.push(event);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let cap = self.cap;
                match self.calls.iter_mut().find(|(i, _, _)| *i == index) {
                    Some((_, _, held)) => {
                        if let Some(arguments) = hold(held, arguments, cap) {
                            out.push(StreamEvent::ToolCallDelta { index, arguments });
                        }
                    }
                    None => out.push(StreamEvent::ToolCallDelta { index, arguments }),
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                if let Some(pos) = self.calls.iter().position(|(i, _, _)| *i == index) {
                    self.close_call(pos, out)?;
                }
                out.push(event);
            }
            StreamEvent::TextDelta { text } => match &mut self.text {
                Some(held) => {
                    if let Some(text) = hold(held, text, self.cap) {
                        out.push(StreamEvent::TextDelta { text });
                    }
                }
                None => out.push(StreamEvent::TextDelta { text }),
            },
            StreamEvent::Finish { .. } => {
                self.close_all(out)?;
                out.push(event);
            }
            other => out.push(other),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.close_all(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::{FinishReason, ToolDefinition};

    fn request(strict_schema: bool) -> ChatRequest {
        ChatRequest {
            tools: vec![ToolDefinition {
                name: "read_file".into(),
                description: None,
                parameters: serde_json::json!({"type": "object", "required": if strict_schema { vec!["path"] } else { vec![] }}),
                strict: None,
                cache_control: None,
            }],
            ..ChatRequest::default()
        }
    }

    fn run(
        strict: bool,
        req: &ChatRequest,
        events: Vec<StreamEvent>,
    ) -> Result<Vec<StreamEvent>, BackendError> {
        let ctx = crate::context::tests::bare_context();
        let mut p = JsonRepair::new(DEFAULT_BUFFER_CAP, strict)
            .begin(&ctx, req)
            .unwrap();
        let mut out = Vec::new();
        for e in events {
            p.event(e, &mut out)?;
        }
        p.end(&mut out)?;
        Ok(out)
    }

    fn call(args: &[&str]) -> Vec<StreamEvent> {
        let mut v = vec![StreamEvent::ToolCallStart {
            index: 0,
            id: "c".into(),
            name: "read_file".into(),
            provider_data: None,
        }];
        v.extend(args.iter().map(|a| StreamEvent::ToolCallDelta {
            index: 0,
            arguments: (*a).into(),
        }));
        v.push(StreamEvent::ToolCallEnd { index: 0 });
        v.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        v
    }

    fn arguments(out: &[StreamEvent]) -> String {
        out.iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallDelta { arguments, .. } => Some(arguments.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn broken_arguments_arrive_repaired_and_valid_ones_unchanged() {
        let out = run(false, &request(false), call(&["{'path': ", "'a.txt',"])).unwrap();
        assert_eq!(arguments(&out), "{\"path\": \"a.txt\"}");
        let out = run(false, &request(false), call(&["{\"path\":", " \"a\"}"])).unwrap();
        assert_eq!(arguments(&out), "{\"path\": \"a\"}");
        let deltas = out
            .iter()
            .filter(|e| matches!(e, StreamEvent::ToolCallDelta { .. }))
            .count();
        assert_eq!(deltas, 2, "valid fragments stream on as they come: {out:?}");
        // Sent fragments stay; the repair continues them.
        let out = run(
            false,
            &request(false),
            call(&["{\"path\": \"a\",", " \"n\": [1,", "]"]),
        )
        .unwrap();
        assert_eq!(arguments(&out), "{\"path\": \"a\", \"n\": [1]}");
        let out = run(false, &request(false), call(&["{\"path\": \"a"])).unwrap();
        assert_eq!(arguments(&out), "{\"path\": \"a\"}");
    }

    #[test]
    fn strict_mode_rejects_what_cannot_be_repaired_lenient_mode_passes_it() {
        let e = run(true, &request(false), call(&["nonsense"])).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_model_json"));
        let e = run(true, &request(true), call(&["{\"other\": 1}"])).unwrap_err();
        assert!(e.message.contains("'path'"), "{}", e.message);
        let out = run(false, &request(true), call(&["nonsense"])).unwrap();
        assert_eq!(arguments(&out), "nonsense");
    }

    #[test]
    fn structured_output_text_is_repaired() {
        let req = ChatRequest {
            response_format: Some(ResponseFormat::JsonObject),
            ..ChatRequest::default()
        };
        let out = run(
            false,
            &req,
            vec![
                StreamEvent::TextDelta {
                    text: "```json\n{\"a\": 1,".into(),
                },
                StreamEvent::TextDelta {
                    text: "}\n```".into(),
                },
                StreamEvent::Finish {
                    reason: FinishReason::Stop,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            out[0],
            StreamEvent::TextDelta {
                text: "{\"a\": 1}".into()
            }
        );
    }

    #[test]
    fn nothing_to_repair_means_no_process() {
        let ctx = crate::context::tests::bare_context();
        assert!(
            JsonRepair::new(64, false)
                .begin(&ctx, &ChatRequest::default())
                .is_none()
        );
    }
}
