//! OpenAI Responses upstream -> canonical model: the SSE event decoder (the mirror of the
//! renderer in `stream`), the non-streamed response object, and error bodies. Reasoning items
//! become reasoning blocks whose provider data carries the upstream's id and
//! `encrypted_content` unchanged; item types the model does not express are skipped.
//!
//! A reasoning item's summary is held until the item is done, then sent whole and followed by
//! its provider data (which closes the block, as a signature does), once per item.

use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::{ChatResponse, FinishReason, Usage};
use llm_proxy_api::stream::{Collector, StreamEvent};
use llm_proxy_api::translation::StreamDecoder;
use serde_json::{Value, json};

use super::opaque::UpstreamReasoning;
use super::to_model::NAMESPACE_SEPARATOR;
use crate::openai_chat::error::error_from_value;
use crate::sse::{SseFrame, SseParser};

/// Decodes an upstream error body (the OpenAI `{"error": {...}}` envelope).
pub fn decode_error(status: u16, body: &[u8]) -> BackendError {
    crate::openai_chat::error::decode_error(status, body)
}

/// The error a failed response object (or an `error` event) stands for.
fn failure(error: &Value) -> BackendError {
    let status = match error.get("code").and_then(Value::as_str) {
        Some("rate_limit_exceeded") => Some(429),
        Some("context_length_exceeded" | "invalid_prompt" | "invalid_request_error") => Some(400),
        _ => None,
    };
    let mut e = error_from_value(status, error);
    e.origin = ErrorSource::Upstream;
    e
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `usage` of a response object.
fn usage_of(u: &Value) -> Option<Usage> {
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
    let input = n(u, "input_tokens")?;
    Some(Usage {
        input_tokens: input,
        output_tokens: n(u, "output_tokens").unwrap_or(0),
        reasoning_tokens: u
            .get("output_tokens_details")
            .and_then(|d| n(d, "reasoning_tokens")),
        cache_read_tokens: u
            .get("input_tokens_details")
            .and_then(|d| n(d, "cached_tokens"))
            .filter(|&c| c > 0),
        cache_write_tokens: None,
    })
}

/// Why a finished response stopped.
fn finish_of(response: &Value, saw_calls: bool) -> FinishReason {
    match str_field(response, "status") {
        "incomplete" => match response
            .get("incomplete_details")
            .map(|d| str_field(d, "reason"))
        {
            Some("content_filter") => FinishReason::ContentFilter,
            _ => FinishReason::Length,
        },
        _ if saw_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// A call's canonical name (a namespaced tool is `namespace__name`).
fn call_name(item: &Value) -> String {
    let name = str_field(item, "name");
    match item.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{ns}{NAMESPACE_SEPARATOR}{name}"),
        None => name.to_owned(),
    }
}

/// The reasoning provider data of a reasoning item (`None` when it has neither id nor
/// encrypted content).
fn reasoning_data(item: &Value) -> Option<Value> {
    let upstream = UpstreamReasoning {
        id: item.get("id").and_then(Value::as_str).map(str::to_owned),
        encrypted_content: item
            .get("encrypted_content")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    (upstream != UpstreamReasoning::default()).then(|| upstream.to_provider_data())
}

/// The visible text of a reasoning item: its raw reasoning if given, else its summary.
fn reasoning_text(item: &Value) -> String {
    let pieces = |key: &str| -> Vec<String> {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let content = pieces("content");
    if content.is_empty() {
        pieces("summary").join("\n\n")
    } else {
        content.join("\n\n")
    }
}

/// The text of a message item (output text and refusals).
fn message_text(item: &Value) -> String {
    let mut out = String::new();
    for part in item
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match str_field(part, "type") {
            "output_text" => out.push_str(str_field(part, "text")),
            "refusal" => out.push_str(str_field(part, "refusal")),
            _ => {}
        }
    }
    out
}

/// The `logprobs` entries of an output text part or text delta.
fn logprob_entries(v: &Value) -> Vec<Value> {
    v.get("logprobs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A tool call being streamed.
#[derive(Debug)]
struct Call {
    item_id: String,
    output_index: Option<u64>,
    index: u32,
    custom: bool,
    /// Custom tool input gathered from deltas (sent whole as `{"input": ...}` at the end).
    input: String,
    got_delta: bool,
    ended: bool,
}

/// Incremental decoder of a Responses SSE body into canonical events.
#[derive(Debug, Default)]
pub struct ResponsesStreamDecoder {
    sse: SseParser,
    frames: Vec<SseFrame>,
    started: bool,
    done: bool,
    calls: Vec<Call>,
    /// Items whose text or reasoning came as deltas (their `done` repeats it).
    streamed: Vec<String>,
    /// Reasoning item and summary index of the last reasoning delta.
    last_summary: Option<(String, u64)>,
    /// Summary text of the reasoning item in progress.
    reasoning: String,
}

fn invalid_stream(e: &serde_json::Error) -> BackendError {
    BackendError::new(
        ErrorKind::Unavailable,
        ErrorSource::Upstream,
        format!("upstream sent an invalid Responses stream event: {e}"),
    )
}

impl ResponsesStreamDecoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    fn drain(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let mut frames = std::mem::take(&mut self.frames);
        let mut read = Ok(());
        for frame in frames.drain(..) {
            if read.is_ok() {
                read = self.frame(&frame, out);
            }
            self.sse.recycle(frame);
        }
        self.frames = frames;
        read
    }

    fn frame(&mut self, frame: &SseFrame, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let data = frame.data.trim();
        if self.done || data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| invalid_stream(&e))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(frame.event.as_deref())
            .unwrap_or_default()
            .to_owned();
        self.event(&kind, &v, out)
    }

    fn start(&mut self, response: Option<&Value>, out: &mut Vec<StreamEvent>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let field = |k: &str| {
            response
                .and_then(|r| r.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        out.push(StreamEvent::Start {
            id: field("id"),
            model: field("model"),
        });
    }

    fn call_of(&mut self, v: &Value) -> Option<&mut Call> {
        let item_id = v.get("item_id").and_then(Value::as_str);
        let output_index = v.get("output_index").and_then(Value::as_u64);
        self.calls.iter_mut().rev().find(|c| match item_id {
            Some(id) if !c.item_id.is_empty() => c.item_id == id,
            _ => output_index.is_some() && c.output_index == output_index,
        })
    }

    fn event(
        &mut self,
        kind: &str,
        v: &Value,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match kind {
            "response.created" | "response.in_progress" | "response.queued" => {
                self.start(v.get("response"), out);
            }
            "response.output_item.added" => {
                self.start(None, out);
                let item = v.get("item").unwrap_or(&Value::Null);
                let output_index = v.get("output_index").and_then(Value::as_u64);
                self.item_added(item, output_index, out);
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                self.start(None, out);
                let delta = str_field(v, "delta");
                // Logprobs (asked for with `include: ["message.output_text.logprobs"]`) lead
                // the text they score.
                let logprobs = logprob_entries(v);
                if !logprobs.is_empty() {
                    out.push(StreamEvent::Logprobs { content: logprobs });
                }
                if !delta.is_empty() {
                    self.mark_streamed(str_field(v, "item_id"));
                    out.push(StreamEvent::TextDelta {
                        text: delta.to_owned(),
                    });
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                self.start(None, out);
                let delta = str_field(v, "delta");
                if delta.is_empty() {
                    return Ok(());
                }
                let item_id = str_field(v, "item_id").to_owned();
                let index = v
                    .get("summary_index")
                    .or_else(|| v.get("content_index"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let key = (item_id.clone(), index);
                // A new summary part of the same item: separated as `to_model` joins them.
                if let Some(last) = &self.last_summary
                    && last.0 == key.0
                    && last.1 != key.1
                {
                    self.reasoning.push_str("\n\n");
                }
                self.last_summary = Some(key);
                self.mark_streamed(&item_id);
                self.reasoning.push_str(delta);
            }
            "response.function_call_arguments.delta" => {
                let delta = str_field(v, "delta").to_owned();
                if let Some(call) = self.call_of(v)
                    && !call.ended
                    && !delta.is_empty()
                {
                    call.got_delta = true;
                    let index = call.index;
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: delta,
                    });
                }
            }
            "response.custom_tool_call_input.delta" => {
                let delta = str_field(v, "delta").to_owned();
                if let Some(call) = self.call_of(v) {
                    call.input.push_str(&delta);
                    call.got_delta = true;
                }
            }
            "response.output_item.done" => {
                self.start(None, out);
                let item = v.get("item").unwrap_or(&Value::Null);
                let output_index = v.get("output_index").and_then(Value::as_u64);
                self.item_done(item, output_index, out);
            }
            "response.completed" | "response.incomplete" => {
                self.start(v.get("response"), out);
                let response = v.get("response").unwrap_or(&Value::Null);
                if let Some(u) = response.get("usage").and_then(usage_of) {
                    out.push(StreamEvent::Usage(u));
                }
                out.push(StreamEvent::Finish {
                    reason: finish_of(response, !self.calls.is_empty()),
                });
                self.done = true;
            }
            "response.failed" => {
                let error = v
                    .get("response")
                    .and_then(|r| r.get("error"))
                    .filter(|e| !e.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!({"message": "upstream response failed"}));
                return Err(failure(&error));
            }
            "error" => return Err(failure(v.get("error").unwrap_or(v))),
            _ => {}
        }
        Ok(())
    }

    fn mark_streamed(&mut self, item_id: &str) {
        if !item_id.is_empty() && self.streamed.last().map(String::as_str) != Some(item_id) {
            self.streamed.push(item_id.to_owned());
        }
    }

    fn was_streamed(&self, item: &Value) -> bool {
        let id = str_field(item, "id");
        !id.is_empty() && self.streamed.iter().any(|s| s == id)
    }

    fn item_added(&mut self, item: &Value, output_index: Option<u64>, out: &mut Vec<StreamEvent>) {
        match str_field(item, "type") {
            "reasoning" => self.reasoning.clear(),
            kind @ ("function_call" | "custom_tool_call") => {
                let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                self.calls.push(Call {
                    item_id: str_field(item, "id").to_owned(),
                    output_index,
                    index,
                    custom: kind == "custom_tool_call",
                    input: String::new(),
                    got_delta: false,
                    ended: false,
                });
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: str_field(item, "call_id").to_owned(),
                    name: call_name(item),
                    provider_data: None,
                });
            }
            _ => {}
        }
    }

    fn item_done(&mut self, item: &Value, output_index: Option<u64>, out: &mut Vec<StreamEvent>) {
        match str_field(item, "type") {
            "message" if !self.was_streamed(item) => {
                let logprobs: Vec<Value> = item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(logprob_entries)
                    .collect();
                if !logprobs.is_empty() {
                    out.push(StreamEvent::Logprobs { content: logprobs });
                }
                let text = message_text(item);
                if !text.is_empty() {
                    out.push(StreamEvent::TextDelta { text });
                }
            }
            "reasoning" => {
                let streamed = std::mem::take(&mut self.reasoning);
                let text = if self.was_streamed(item) {
                    streamed
                } else {
                    reasoning_text(item)
                };
                if !text.is_empty() {
                    out.push(StreamEvent::ReasoningDelta { text });
                }
                if let Some(data) = reasoning_data(item) {
                    out.push(StreamEvent::ReasoningProviderData { data });
                }
            }
            "function_call" | "custom_tool_call" => {
                let lookup =
                    json!({"item_id": str_field(item, "id"), "output_index": output_index});
                if self.call_of(&lookup).is_none() {
                    self.item_added(item, output_index, out);
                }
                let Some(call) = self.call_of(&lookup) else {
                    return;
                };
                if call.ended {
                    return;
                }
                call.ended = true;
                let index = call.index;
                let arguments = if call.custom {
                    let input = match item.get("input").and_then(Value::as_str) {
                        Some(input) => input.to_owned(),
                        None => std::mem::take(&mut call.input),
                    };
                    Some(json!({ "input": input }).to_string())
                } else if call.got_delta {
                    None
                } else {
                    Some(str_field(item, "arguments").to_owned()).filter(|a| !a.is_empty())
                };
                if let Some(arguments) = arguments {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
                out.push(StreamEvent::ToolCallEnd { index });
            }
            _ => {}
        }
    }
}

impl StreamDecoder for ResponsesStreamDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.sse.feed(chunk, &mut self.frames);
        self.drain(out)
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.sse.finish(&mut self.frames);
        self.drain(out)?;
        if !self.done {
            return Err(BackendError::new(
                ErrorKind::Unavailable,
                ErrorSource::Upstream,
                "upstream stream ended before the response was complete",
            ));
        }
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.done
    }
}

/// Decodes a non-streamed response object.
pub fn response_to_model(v: &Value, model: &str) -> Result<ChatResponse, BackendError> {
    if str_field(v, "status") == "failed" {
        let error = v
            .get("error")
            .filter(|e| !e.is_null())
            .cloned()
            .unwrap_or_else(|| json!({"message": "upstream response failed"}));
        return Err(failure(&error));
    }
    let output = v.get("output").and_then(Value::as_array).ok_or_else(|| {
        BackendError::transport("upstream sent a response object without 'output'")
    })?;
    // The same path as a stream whose items arrive whole.
    let mut decoder = ResponsesStreamDecoder::new();
    let mut events = Vec::new();
    decoder.start(Some(v), &mut events);
    for (i, item) in output.iter().enumerate() {
        let index = Some(i as u64);
        decoder.item_added(item, index, &mut events);
        decoder.item_done(item, index, &mut events);
    }
    if let Some(u) = v.get("usage").and_then(usage_of) {
        events.push(StreamEvent::Usage(u));
    }
    events.push(StreamEvent::Finish {
        reason: finish_of(v, !decoder.calls.is_empty()),
    });
    let mut collector = Collector::new();
    for event in events {
        collector.push(event);
    }
    let mut response = collector.finish(model);
    if let Some(created) = v.get("created_at").and_then(Value::as_u64) {
        response.created = created;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::translation::StreamDecoder;

    #[test]
    fn output_text_logprobs_are_decoded_streamed_and_not() {
        let entry = json!({"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []});
        let whole = json!({"id": "resp_1", "status": "completed", "model": "m", "output": [
            {"type": "message", "id": "msg_1", "role": "assistant", "content": [
                {"type": "output_text", "text": "Hi", "annotations": [], "logprobs": [entry]}]}]});
        let r = response_to_model(&whole, "m").unwrap();
        assert_eq!(r.logprobs, vec![entry.clone()]);
        assert_eq!(r.joined_text(), "Hi");

        let delta = json!({"type": "response.output_text.delta", "item_id": "msg_1",
            "output_index": 0, "content_index": 0, "delta": "Hi", "logprobs": [entry]});
        let body = format!("event: response.output_text.delta\ndata: {delta}\n\n");
        let mut d = ResponsesStreamDecoder::new();
        let mut out = Vec::new();
        d.feed(body.as_bytes(), &mut out).unwrap();
        let at = out
            .iter()
            .position(|e| matches!(e, StreamEvent::Logprobs { .. }))
            .unwrap();
        assert_eq!(
            out[at],
            StreamEvent::Logprobs {
                content: vec![entry]
            }
        );
        assert_eq!(out[at + 1], StreamEvent::TextDelta { text: "Hi".into() });
    }
}
