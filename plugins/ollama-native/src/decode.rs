//! Decoding Ollama answers into the proxy's stream events: newline-delimited JSON, one
//! [`ChatChunk`] per line (a non-streamed answer is a single such object), ending with a line
//! carrying `done: true`, `done_reason` and the token counts. [`OllamaResponseDecoder`] hands
//! this to the API's shared HTTP exchange.

use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::{FinishReason, Usage};
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_api::translation::StreamDecoder;
use llm_proxy_api::upstream::ResponseDecoder;

use crate::wire::ChatChunk;

/// Incremental NDJSON decoder; lines may be split across body chunks.
#[derive(Debug)]
pub struct NdjsonChatDecoder {
    buffer: Vec<u8>,
    model: String,
    started: bool,
    tool_calls: u32,
    finished: bool,
}

impl NdjsonChatDecoder {
    /// A decoder for an answer of `model` (used when a line names none).
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            buffer: Vec::new(),
            model: model.into(),
            started: false,
            tool_calls: 0,
            finished: false,
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let line = line.trim_ascii();
        if line.is_empty() || self.finished {
            return Ok(());
        }
        let chunk: ChatChunk = serde_json::from_slice(line).map_err(|e| {
            BackendError::transport(format!("Ollama sent an invalid NDJSON line: {e}"))
        })?;
        if let Some(message) = chunk.error {
            return Err(stream_error(message));
        }
        if !self.started {
            self.started = true;
            let model = chunk.model.clone().unwrap_or_else(|| self.model.clone());
            out.push(StreamEvent::Start {
                id: None,
                model: Some(model),
            });
        }
        if let Some(message) = chunk.message {
            if let Some(thinking) = message.thinking.filter(|t| !t.is_empty()) {
                out.push(StreamEvent::ReasoningDelta { text: thinking });
            }
            if !message.content.is_empty() {
                out.push(StreamEvent::TextDelta {
                    text: message.content,
                });
            }
            for call in message.tool_calls {
                let index = self.tool_calls;
                self.tool_calls += 1;
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: call.id.unwrap_or_else(llm_proxy_api::ids::tool_call_id),
                    name: call.function.name,
                    provider_data: None,
                });
                let arguments = if call.function.arguments.is_null() {
                    "{}".to_owned()
                } else {
                    call.function.arguments.to_string()
                };
                out.push(StreamEvent::ToolCallDelta { index, arguments });
                out.push(StreamEvent::ToolCallEnd { index });
            }
        }
        if chunk.done {
            self.finished = true;
            if chunk.prompt_eval_count.is_some() || chunk.eval_count.is_some() {
                out.push(StreamEvent::Usage(Usage {
                    input_tokens: chunk.prompt_eval_count.unwrap_or(0),
                    output_tokens: chunk.eval_count.unwrap_or(0),
                    ..Usage::default()
                }));
            }
            out.push(StreamEvent::Finish {
                reason: self.finish_reason(chunk.done_reason.as_deref()),
            });
        }
        Ok(())
    }

    /// Ollama says `stop` after tool calls too; the client needs to know tools were called.
    fn finish_reason(&self, done_reason: Option<&str>) -> FinishReason {
        match done_reason {
            _ if self.tool_calls > 0 => FinishReason::ToolCalls,
            None | Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some(other) => FinishReason::Other(other.to_owned()),
        }
    }
}

impl StreamDecoder for NdjsonChatDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.buffer.extend_from_slice(chunk);
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            self.line(&line, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let rest = std::mem::take(&mut self.buffer);
        self.line(&rest, out)?;
        if self.finished {
            Ok(())
        } else {
            Err(BackendError::transport(
                "Ollama's answer ended before its final (done) line",
            ))
        }
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}

/// How the shared exchange (`llm_proxy_api::upstream::post_chat`) reads Ollama's chat
/// answers: streamed and whole bodies through [`NdjsonChatDecoder`] (a whole answer is one
/// NDJSON line), error statuses through [`error_from_status`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OllamaResponseDecoder;

impl ResponseDecoder for OllamaResponseDecoder {
    fn streamed(&self, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(NdjsonChatDecoder::new(model))
    }

    fn whole(&self, body: &[u8], model: &str) -> Result<Vec<StreamEvent>, BackendError> {
        let mut decoder = NdjsonChatDecoder::new(model);
        let mut events = Vec::new();
        decoder.feed(body, &mut events)?;
        decoder.finish(&mut events)?;
        Ok(events)
    }

    fn error(&self, status: u16, body: &[u8]) -> BackendError {
        error_from_status(status, body)
    }
}

/// An error Ollama reported inside a 200 answer.
fn stream_error(message: String) -> BackendError {
    BackendError::new(
        ErrorKind::Unavailable,
        ErrorSource::Upstream,
        format!("Ollama: {message}"),
    )
}

/// An error status from Ollama (`{"error": "..."}` bodies), classified by status.
pub fn error_from_status(status: u16, body: &[u8]) -> BackendError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    let message = serde_json::from_slice::<ErrorBody>(body).map_or_else(
        |_| {
            String::from_utf8_lossy(body)
                .chars()
                .take(500)
                .collect::<String>()
        },
        |b| b.error,
    );
    let message = if message.trim().is_empty() {
        format!("HTTP {status}")
    } else {
        message
    };
    BackendError::from_upstream_status(status, format!("Ollama: {message}"))
}

#[cfg(test)]
mod tests {
    use llm_proxy_api::stream::Collector;
    use serde_json::json;

    use super::*;

    fn line(v: serde_json::Value) -> String {
        format!("{v}\n")
    }

    fn decode_all(body: &str, split_every: usize) -> Result<Vec<StreamEvent>, BackendError> {
        let mut decoder = NdjsonChatDecoder::new("fallback");
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(split_every) {
            decoder.feed(piece, &mut out)?;
        }
        decoder.finish(&mut out)?;
        Ok(out)
    }

    fn transcript() -> String {
        [
            line(json!({"model": "qwen3", "message": {"role": "assistant", "content": "", "thinking": "Let me"}, "done": false})),
            line(json!({"model": "qwen3", "message": {"role": "assistant", "content": "", "thinking": " think."}, "done": false})),
            line(json!({"model": "qwen3", "message": {"role": "assistant", "content": "Hello"}, "done": false})),
            line(json!({"model": "qwen3", "message": {"role": "assistant", "content": " world"}, "done": false})),
            line(json!({"model": "qwen3", "message": {"role": "assistant", "content": ""}, "done": true,
                        "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 5})),
        ]
        .concat()
    }

    #[test]
    fn text_and_thinking_stream_in_order_whatever_the_chunking() {
        for split in [1, 7, 64, 10_000] {
            let events = decode_all(&transcript(), split).unwrap();
            assert_eq!(
                events,
                [
                    StreamEvent::Start {
                        id: None,
                        model: Some("qwen3".into())
                    },
                    StreamEvent::ReasoningDelta {
                        text: "Let me".into()
                    },
                    StreamEvent::ReasoningDelta {
                        text: " think.".into()
                    },
                    StreamEvent::TextDelta {
                        text: "Hello".into()
                    },
                    StreamEvent::TextDelta {
                        text: " world".into()
                    },
                    StreamEvent::Usage(Usage {
                        input_tokens: 12,
                        output_tokens: 5,
                        ..Usage::default()
                    }),
                    StreamEvent::Finish {
                        reason: FinishReason::Stop
                    },
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn tool_calls_carry_object_arguments_as_json_text() {
        let body = [
            line(json!({"model": "llama3.2", "message": {"role": "assistant", "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"id": "call_x", "function": {"index": 1, "name": "get_time", "arguments": {}}}
                ]}, "done": false})),
            line(json!({"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop"})),
        ]
        .concat();
        let events = decode_all(&body, 5).unwrap();
        let mut collector = Collector::new();
        for e in events {
            collector.push(e);
        }
        let response = collector.finish("m");
        let calls: Vec<_> = response
            .content
            .iter()
            .filter_map(|p| match p {
                llm_proxy_api::model::Part::ToolCall(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "get_weather");
        assert!(calls[0].id.starts_with("call_"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&calls[0].arguments).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(calls[1].id, "call_x");
        assert_eq!(calls[1].arguments, "{}");
        assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(response.usage, None);
    }

    #[test]
    fn a_non_streamed_answer_is_one_object_without_newline() {
        let body =
            json!({"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": true,
                          "done_reason": "length", "prompt_eval_count": 3, "eval_count": 9})
            .to_string();
        let events = decode_all(&body, 10_000).unwrap();
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Length
            })
        );
        assert!(events.contains(&StreamEvent::TextDelta { text: "hi".into() }));
    }

    #[test]
    fn errors_in_the_stream_and_cut_streams_fail() {
        let error = decode_all(&line(json!({"error": "model 'x' not found"})), 100).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unavailable);
        assert!(error.message.contains("model 'x' not found"));
        let cut = line(
            json!({"model": "m", "message": {"role": "assistant", "content": "partial"}, "done": false}),
        );
        let error = decode_all(&cut, 100).unwrap_err();
        assert!(
            error.message.contains("before its final"),
            "{}",
            error.message
        );
        assert!(decode_all("not json\n", 100).is_err());
        let mut decoder = NdjsonChatDecoder::new("m");
        let mut out = Vec::new();
        decoder.feed(transcript().as_bytes(), &mut out).unwrap();
        assert!(decoder.is_finished());
        // Anything after the final line is ignored.
        decoder.feed(b"garbage\n", &mut out).unwrap();
    }

    #[test]
    fn the_response_decoder_reads_whole_answers_and_errors() {
        let body =
            json!({"message": {"role": "assistant", "content": "hi"}, "done": true}).to_string();
        let events = OllamaResponseDecoder
            .whole(body.as_bytes(), "fallback")
            .unwrap();
        assert_eq!(
            events.first(),
            Some(&StreamEvent::Start {
                id: None,
                model: Some("fallback".into())
            })
        );
        assert!(events.contains(&StreamEvent::TextDelta { text: "hi".into() }));
        let error = OllamaResponseDecoder.error(404, br#"{"error":"no such model"}"#);
        assert_eq!(error.kind, ErrorKind::NotFound);
        assert!(error.message.contains("no such model"));
    }

    #[test]
    fn status_errors_keep_ollamas_message() {
        let e = error_from_status(
            404,
            br#"{"error":"model \"nope\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.upstream_status, Some(404));
        assert!(e.message.contains("try pulling it first"));
        assert_eq!(error_from_status(500, b"").message, "Ollama: HTTP 500");
        assert_eq!(
            error_from_status(502, b"<html>bad gateway</html>").kind,
            ErrorKind::Unavailable
        );
    }
}
