//! OpenAI Responses upstream payloads: response objects and event streams with the official
//! event names (`response.created` ... `response.completed`), each frame with its
//! `sequence_number`. Reasoning items carry an opaque `encrypted_content` as OpenAI's do.

use serde_json::{Value, json};

/// The model the mock answers as.
pub const MODEL: &str = "mock-responses-model";

/// An output item of a scripted answer.
#[derive(Debug, Clone)]
pub enum OutputItem {
    /// A reasoning item: id, summary text, encrypted content.
    Reasoning {
        /// `rs_...`.
        id: String,
        /// Summary text (one part).
        summary: String,
        /// Opaque `encrypted_content`.
        encrypted: String,
    },
    /// An assistant message: id and text.
    Message {
        /// `msg_...`.
        id: String,
        /// Text.
        text: String,
    },
    /// A function call: item id, call id, name, JSON arguments.
    Call {
        /// `fc_...`.
        id: String,
        /// `call_...`.
        call_id: String,
        /// Function name.
        name: String,
        /// JSON arguments.
        arguments: String,
    },
}

impl OutputItem {
    /// A reasoning item.
    pub fn reasoning(id: &str, summary: &str, encrypted: &str) -> Self {
        Self::Reasoning {
            id: id.into(),
            summary: summary.into(),
            encrypted: encrypted.into(),
        }
    }

    /// A message item.
    pub fn message(id: &str, text: &str) -> Self {
        Self::Message {
            id: id.into(),
            text: text.into(),
        }
    }

    /// A function call item.
    pub fn call(id: &str, call_id: &str, name: &str, arguments: &str) -> Self {
        Self::Call {
            id: id.into(),
            call_id: call_id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    /// The item as a finished response object lists it.
    pub fn json(&self) -> Value {
        match self {
            Self::Reasoning {
                id,
                summary,
                encrypted,
            } => {
                json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}],
                       "encrypted_content": encrypted})
            }
            Self::Message { id, text } => {
                json!({"id": id, "type": "message", "status": "completed",
                "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]})
            }
            Self::Call {
                id,
                call_id,
                name,
                arguments,
            } => json!({"id": id, "type": "function_call", "status": "completed",
                "call_id": call_id, "name": name, "arguments": arguments}),
        }
    }
}

fn usage(input: u64, output: u64, reasoning: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": reasoning},
           "total_tokens": input + output})
}

/// A finished response object with `items`.
pub fn response(items: &[OutputItem]) -> Value {
    json!({
        "id": "resp_mock", "object": "response", "created_at": 1_700_000_000,
        "status": "completed", "error": null, "incomplete_details": null,
        "model": MODEL, "output": items.iter().map(OutputItem::json).collect::<Vec<_>>(),
        "usage": usage(11, 7, 3)
    })
}

/// A response object answering `text`.
pub fn text_response(text: &str) -> Value {
    response(&[OutputItem::message("msg_mock_0", text)])
}

/// SSE frames (with `event:` names and `sequence_number`s) streaming `items`: text and
/// reasoning summaries in two deltas each, arguments in two deltas.
pub fn stream(items: &[OutputItem]) -> Vec<String> {
    let mut frames = Vec::new();
    let mut seq = 0u64;
    let mut push = |frames: &mut Vec<String>, kind: &str, mut body: Value| {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(seq);
        seq += 1;
        frames.push(format!("event: {kind}\ndata: {body}\n\n"));
    };
    let mut in_progress = response(&[]);
    in_progress["status"] = json!("in_progress");
    in_progress["usage"] = Value::Null;
    push(
        &mut frames,
        "response.created",
        json!({"response": in_progress.clone()}),
    );
    push(
        &mut frames,
        "response.in_progress",
        json!({"response": in_progress}),
    );
    let halves = |s: &str| {
        let mid = s
            .char_indices()
            .nth(s.chars().count() / 2)
            .map_or(s.len(), |(i, _)| i);
        (s[..mid].to_owned(), s[mid..].to_owned())
    };
    for (i, item) in items.iter().enumerate() {
        match item {
            OutputItem::Reasoning { id, summary, .. } => {
                push(
                    &mut frames,
                    "response.output_item.added",
                    json!({"output_index": i, "item": {"id": id, "type": "reasoning", "summary": []}}),
                );
                push(
                    &mut frames,
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": i, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
                );
                let (a, b) = halves(summary);
                for d in [a, b] {
                    push(
                        &mut frames,
                        "response.reasoning_summary_text.delta",
                        json!({"item_id": id, "output_index": i, "summary_index": 0, "delta": d}),
                    );
                }
                push(
                    &mut frames,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": i, "summary_index": 0, "text": summary}),
                );
                push(
                    &mut frames,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": i, "summary_index": 0, "part": {"type": "summary_text", "text": summary}}),
                );
            }
            OutputItem::Message { id, text } => {
                push(
                    &mut frames,
                    "response.output_item.added",
                    json!({"output_index": i, "item": {"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
                );
                push(
                    &mut frames,
                    "response.content_part.added",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
                );
                let (a, b) = halves(text);
                for d in [a, b] {
                    push(
                        &mut frames,
                        "response.output_text.delta",
                        json!({"item_id": id, "output_index": i, "content_index": 0, "delta": d, "logprobs": []}),
                    );
                }
                push(
                    &mut frames,
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": []}),
                );
                push(
                    &mut frames,
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}),
                );
            }
            OutputItem::Call {
                id,
                call_id,
                name,
                arguments,
            } => {
                push(
                    &mut frames,
                    "response.output_item.added",
                    json!({"output_index": i, "item": {"id": id, "type": "function_call", "status": "in_progress", "call_id": call_id, "name": name, "arguments": ""}}),
                );
                let (a, b) = halves(arguments);
                for d in [a, b] {
                    push(
                        &mut frames,
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": i, "delta": d}),
                    );
                }
                push(
                    &mut frames,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": i, "arguments": arguments}),
                );
            }
        }
        push(
            &mut frames,
            "response.output_item.done",
            json!({"output_index": i, "item": item.json()}),
        );
    }
    push(
        &mut frames,
        "response.completed",
        json!({"response": response(items)}),
    );
    frames
}

/// Frames streaming `text`.
pub fn text_stream(text: &str) -> Vec<String> {
    stream(&[OutputItem::message("msg_mock_0", text)])
}

/// Frames that start an answer and then fail with `response.failed`.
pub fn failed_stream(code: &str, message: &str) -> Vec<String> {
    let mut frames = stream(&[]);
    frames.pop();
    let mut failed = response(&[]);
    failed["status"] = json!("failed");
    failed["error"] = json!({"code": code, "message": message});
    frames.push(format!(
        "event: response.failed\ndata: {}\n\n",
        json!({"type": "response.failed", "sequence_number": 2, "response": failed})
    ));
    frames
}

/// An OpenAI error body.
pub fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    crate::openai::error(message, kind, code)
}
