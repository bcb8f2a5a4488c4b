//! Gemini `streamGenerateContent` streams: decoding upstream bodies (SSE with `alt=sse`, or the
//! JSON array sent without it) into events, and rendering events as SSE
//! `GenerateContentResponse` frames for clients.

use std::sync::Arc;

use bytes::Bytes;
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::{FinishReason, MediaSource, ReasoningBlock, Usage};
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_api::translation::StreamDecoder;
use serde::Serialize;
use serde_json::Value;

use super::error::{error_body, error_from_value, google_http_code};
use super::from_model::{finish_reason_name, usage_from_model};
use super::to_model::{ResponseEvents, call_signature, carry_reasoning, thought_signature_of};
use super::types::{GenerateContentResponse, UsageMetadata};
use crate::openai_responses::Sealer;
use crate::sse::{SseFrame, SseParser, data_frame};

/// Decodes an upstream streamed body into events. Gemini frames carry whole parts; usage and
/// the finish reason are emitted at the end (the last usage report wins).
#[derive(Debug, Default)]
pub struct SseDecoder {
    sse: SseParser,
    frames: Vec<SseFrame>,
    events: ResponseEvents,
    saw_frame: bool,
    /// The body as received while no SSE frame has been seen, for the JSON-array form.
    raw: Vec<u8>,
    done: bool,
}

impl SseDecoder {
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
        self.saw_frame = true;
        self.raw = Vec::new();
        let data = frame.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let value: GenerateContentResponse = serde_json::from_str(data)
            .map_err(|e| invalid_stream(format!("upstream sent an invalid stream frame: {e}")))?;
        self.response(value, data, out)
    }

    /// One response object; `raw` is its JSON text, re-read only when it looks like an error.
    fn response(
        &mut self,
        resp: GenerateContentResponse,
        raw: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        if resp.is_blank()
            && let Ok(v) = serde_json::from_str::<Value>(raw)
            && v.get("error").is_some()
        {
            return Err(error_from_value(None, &v));
        }
        self.events.frame(resp, out);
        Ok(())
    }

    /// Without `alt=sse` Gemini streams one JSON array of responses (or one object).
    fn raw_body(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        let raw = std::mem::take(&mut self.raw);
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| invalid_stream(format!("upstream sent an invalid stream body: {e}")))?;
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        for item in items {
            if item.get("error").is_some() {
                return Err(error_from_value(None, &item));
            }
            let resp: GenerateContentResponse = serde_json::from_value(item).map_err(|e| {
                invalid_stream(format!("upstream sent an invalid stream item: {e}"))
            })?;
            self.events.frame(resp, out);
        }
        Ok(())
    }
}

fn invalid_stream(message: String) -> BackendError {
    BackendError::new(ErrorKind::Unavailable, ErrorSource::Upstream, message)
}

impl StreamDecoder for SseDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        if !self.saw_frame {
            self.raw.extend_from_slice(chunk);
        }
        self.sse.feed(chunk, &mut self.frames);
        self.drain(out)
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        self.sse.finish(&mut self.frames);
        self.drain(out)?;
        if !self.saw_frame {
            self.raw_body(out)?;
        }
        self.events.end(out);
        Ok(())
    }
}

/// Renders events as SSE `GenerateContentResponse` frames for a Gemini client: one frame per
/// piece of text or thought, function calls whole when they end, and a last frame with the
/// finish reason and usage.
#[derive(Debug)]
pub struct ChunkRenderer {
    response_id: String,
    model: String,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    calls: Vec<OpenCall>,
    saw_call: bool,
    /// Whether the last part sent was a thought (a signature then belongs to the thought).
    in_thought: bool,
    /// Logprobs for the next text frame (they lead the text they score).
    pending_logprobs: Vec<Value>,
    /// Seals other providers' reasoning state into `thoughtSignature`s.
    sealer: Arc<dyn Sealer>,
}

#[derive(Debug)]
struct OpenCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
    signature: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FrameOut<'a> {
    candidates: [CandidateOut<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<UsageMetadata>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CandidateOut<'a> {
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'a str>,
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs_result: Option<Value>,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    role: &'static str,
    parts: [PartOut<'a>; 1],
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct PartOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_call: Option<FunctionCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thought_signature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inline_data: Option<BlobOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_data: Option<FileOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlobOut<'a> {
    mime_type: &'a str,
    data: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileOut<'a> {
    file_uri: &'a str,
}

#[derive(Serialize)]
struct FunctionCallOut<'a> {
    id: &'a str,
    name: &'a str,
    args: Value,
}

impl ChunkRenderer {
    /// A renderer for one response; `sealer` seals other providers' reasoning state (see
    /// [`crate::carried`]).
    pub fn new(response_id: String, model: String, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            response_id,
            model,
            usage: None,
            finish: None,
            calls: Vec::new(),
            saw_call: false,
            in_thought: false,
            pending_logprobs: Vec::new(),
            sealer,
        }
    }

    fn frame(
        &self,
        part: PartOut<'_>,
        finish_reason: Option<&str>,
        usage: Option<UsageMetadata>,
    ) -> Bytes {
        self.frame_with_logprobs(part, finish_reason, usage, Vec::new())
    }

    fn frame_with_logprobs(
        &self,
        part: PartOut<'_>,
        finish_reason: Option<&str>,
        usage: Option<UsageMetadata>,
        logprobs: Vec<Value>,
    ) -> Bytes {
        let frame = FrameOut {
            candidates: [CandidateOut {
                content: ContentOut {
                    role: "model",
                    parts: [part],
                },
                finish_reason,
                index: 0,
                logprobs_result: (!logprobs.is_empty())
                    .then(|| super::from_model::logprobs_from_model(&logprobs)),
            }],
            usage_metadata: usage,
            model_version: &self.model,
            response_id: &self.response_id,
        };
        data_frame(&serde_json::to_vec(&frame).unwrap_or_default())
    }

    /// Renders one event; text, thoughts, signatures and finished calls make a frame,
    /// bookkeeping events none.
    pub fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        match event {
            // Only Anthropic answers say which stop sequence matched.
            StreamEvent::StopSequence { .. } | StreamEvent::Dropped { .. } => {}
            // Gemini answers have no slot for Anthropic-style citations; the server names
            // them in `x-llm-proxy-lossy`.
            StreamEvent::Citation { .. } => {}
            StreamEvent::Logprobs { content } => {
                self.pending_logprobs.extend(content.iter().cloned());
            }
            StreamEvent::Start { model, .. } => {
                if let Some(m) = model.as_deref().filter(|m| !m.is_empty()) {
                    m.clone_into(&mut self.model);
                }
            }
            StreamEvent::TextDelta { text } => {
                self.in_thought = false;
                let logprobs = std::mem::take(&mut self.pending_logprobs);
                out.push(self.frame_with_logprobs(
                    PartOut {
                        text: Some(text),
                        ..PartOut::default()
                    },
                    None,
                    None,
                    logprobs,
                ));
            }
            StreamEvent::ReasoningDelta { text } => {
                self.in_thought = true;
                let part = PartOut {
                    text: Some(text),
                    thought: Some(true),
                    ..PartOut::default()
                };
                out.push(self.frame(part, None, None));
            }
            StreamEvent::ReasoningProviderData { data } => {
                if let Some(sig) = thought_signature_of(data) {
                    let part = PartOut {
                        text: Some(""),
                        thought: self.in_thought.then_some(true),
                        thought_signature: Some(sig),
                        ..PartOut::default()
                    };
                    out.push(self.frame(part, None, None));
                } else {
                    // Another provider's reasoning state (an OpenAI Responses upstream's).
                    let block = ReasoningBlock {
                        provider_data: Some(data.clone()),
                        ..ReasoningBlock::default()
                    };
                    self.carried_frame(&block, out);
                }
            }
            // Other providers' signatures and encrypted reasoning ride in the signature slot
            // of an empty thought part, so the client sends them back.
            StreamEvent::ReasoningSignature { signature } => {
                let block = ReasoningBlock {
                    signature: Some(signature.clone()),
                    ..ReasoningBlock::default()
                };
                self.carried_frame(&block, out);
            }
            StreamEvent::ReasoningRedacted { data } => {
                let block = ReasoningBlock {
                    redacted: Some(data.clone()),
                    ..ReasoningBlock::default()
                };
                self.carried_frame(&block, out);
                self.in_thought = false;
            }
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                self.in_thought = false;
                self.saw_call = true;
                self.calls.push(OpenCall {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    signature: provider_data
                        .as_ref()
                        .and_then(|d| call_signature(d, Some(&self.model), self.sealer.as_ref())),
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(call) = self.calls.iter_mut().find(|c| c.index == *index) {
                    call.arguments.push_str(arguments);
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                if let Some(pos) = self.calls.iter().position(|c| c.index == *index) {
                    let call = self.calls.remove(pos);
                    out.push(self.call_frame(&call));
                }
            }
            StreamEvent::Media { source } => {
                self.in_thought = false;
                let part = match source {
                    MediaSource::Base64 { media_type, data } => PartOut {
                        inline_data: Some(BlobOut {
                            mime_type: media_type,
                            data,
                        }),
                        ..PartOut::default()
                    },
                    MediaSource::Url { url } => PartOut {
                        file_data: Some(FileOut { file_uri: url }),
                        ..PartOut::default()
                    },
                };
                out.push(self.frame(part, None, None));
            }
            StreamEvent::Usage(u) => match &mut self.usage {
                Some(existing) => existing.merge(u),
                None => self.usage = Some(*u),
            },
            StreamEvent::Finish { reason } => self.finish = Some(reason.clone()),
        }
    }

    fn carried_frame(&self, block: &ReasoningBlock, out: &mut Vec<Bytes>) {
        if let Some(sig) = carry_reasoning(block, Some(&self.model), self.sealer.as_ref()) {
            let part = PartOut {
                text: Some(""),
                thought: Some(true),
                thought_signature: Some(&sig),
                ..PartOut::default()
            };
            out.push(self.frame(part, None, None));
        }
    }

    fn call_frame(&self, call: &OpenCall) -> Bytes {
        let args = match serde_json::from_str::<Value>(&call.arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => Value::Object(serde_json::Map::new()),
        };
        let part = PartOut {
            function_call: Some(FunctionCallOut {
                id: &call.id,
                name: &call.name,
                args,
            }),
            thought_signature: call.signature.as_deref(),
            ..PartOut::default()
        };
        self.frame(part, None, None)
    }

    /// Frames that close a successful stream: calls never ended, then the finish reason with
    /// the usage.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        for call in std::mem::take(&mut self.calls) {
            out.push(self.call_frame(&call));
        }
        let reason = finish_reason_name(self.finish.as_ref().unwrap_or(&FinishReason::Stop));
        let part = PartOut {
            text: Some(""),
            ..PartOut::default()
        };
        let usage = self.usage.as_ref().map(usage_from_model);
        let logprobs = std::mem::take(&mut self.pending_logprobs);
        out.push(self.frame_with_logprobs(part, Some(reason), usage, logprobs));
    }

    /// The frame reporting an error after streaming began: Google's error envelope.
    pub fn error(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<Bytes>) {
        let body = error_body(kind, google_http_code(kind), message);
        out.push(data_frame(&serde_json::to_vec(&body).unwrap_or_default()));
    }

    /// The usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Whether any function call was rendered.
    pub fn saw_tool_calls(&self) -> bool {
        self.saw_call
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemini::to_model::thought_signature_data;
    use crate::openai_responses::opaque::TestSealer;
    use serde_json::json;

    fn decode_all(body: &str, piece: usize) -> Result<Vec<StreamEvent>, BackendError> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in body.as_bytes().chunks(piece) {
            d.feed(chunk, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    const BODY: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Let me think\",\"thought\":true}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":9,\"totalTokenCount\":9},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"},\"index\":0}],\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}},\"thoughtSignature\":\"c2ln\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":4,\"thoughtsTokenCount\":6,\"totalTokenCount\":19},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"abc\"}\r\n\r\n",
    );

    #[test]
    fn decodes_frames_in_any_chunking() {
        let reference = decode_all(BODY, BODY.len()).unwrap();
        for piece in [1, 3, 17, 64] {
            let events = decode_all(BODY, piece).unwrap();
            // tool call ids are generated; compare everything else
            assert_eq!(events.len(), reference.len(), "piece {piece}");
        }
        assert_eq!(
            reference[0],
            StreamEvent::Start {
                id: Some("abc".into()),
                model: Some("gemini-2.5-flash".into())
            }
        );
        assert_eq!(
            reference[1],
            StreamEvent::ReasoningDelta {
                text: "Let me think".into()
            }
        );
        assert_eq!(reference[2], StreamEvent::TextDelta { text: "Hi".into() });
        match &reference[3] {
            StreamEvent::ToolCallStart {
                index: 0,
                name,
                provider_data,
                ..
            } => {
                assert_eq!(name, "f");
                assert_eq!(provider_data, &Some(thought_signature_data("c2ln")));
            }
            other => panic!("expected a call start, got {other:?}"),
        }
        assert_eq!(
            reference[4],
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\":1}".into()
            }
        );
        assert_eq!(reference[5], StreamEvent::ToolCallEnd { index: 0 });
        assert_eq!(
            reference[6],
            StreamEvent::Usage(Usage {
                input_tokens: 9,
                output_tokens: 10,
                reasoning_tokens: Some(6),
                ..Usage::default()
            })
        );
        assert_eq!(
            reference[7],
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls
            }
        );
        assert_eq!(reference.len(), 8);
    }

    #[test]
    fn json_array_body_without_sse_is_accepted() {
        let body = r#"[{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"}}],"responseId":"x"},
{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"MAX_TOKENS"}]}]"#;
        let events = decode_all(body, 5).unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: Some("x".into()),
                    model: None
                },
                StreamEvent::TextDelta { text: "Hel".into() },
                StreamEvent::TextDelta { text: "lo".into() },
                StreamEvent::Finish {
                    reason: FinishReason::Length
                },
            ]
        );
    }

    #[test]
    fn error_frames_are_errors() {
        let body = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\ndata: {\"error\":{\"code\":503,\"message\":\"The model is overloaded.\",\"status\":\"UNAVAILABLE\"}}\n\n";
        let err = decode_all(body, 8).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(err.message, "The model is overloaded.");
        let err = decode_all(
            r#"[{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}]"#,
            4,
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert!(decode_all("data: {not json\n\n", 4).is_err());
    }

    fn frames(out: &[Bytes]) -> Vec<Value> {
        out.iter()
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                assert!(s.ends_with("\n\n"));
                serde_json::from_str(s.trim().strip_prefix("data: ").unwrap()).unwrap()
            })
            .collect()
    }

    #[test]
    fn renders_parts_whole_calls_and_final_frame() {
        let mut r = ChunkRenderer::new("r1".into(), "m".into(), Arc::new(TestSealer(1)));
        let mut out = Vec::new();
        for e in [
            StreamEvent::Start {
                id: None,
                model: Some("gemini-x".into()),
            },
            StreamEvent::ReasoningDelta { text: "hmm".into() },
            StreamEvent::ReasoningProviderData {
                data: thought_signature_data("S"),
            },
            StreamEvent::ReasoningSignature {
                signature: "anthropic".into(),
            },
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
                provider_data: Some(thought_signature_data("F")),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\"".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: ":1}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "c2".into(),
                name: "g".into(),
                provider_data: None,
            },
            StreamEvent::Usage(Usage {
                input_tokens: 3,
                output_tokens: 5,
                reasoning_tokens: Some(2),
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let v = frames(&out);
        let parts: Vec<Value> = v
            .iter()
            .map(|f| f["candidates"][0]["content"]["parts"][0].clone())
            .collect();
        assert_eq!(
            parts,
            vec![
                json!({"text": "hmm", "thought": true}),
                json!({"text": "", "thought": true, "thoughtSignature": "S"}),
                json!({"text": "", "thought": true,
                       "thoughtSignature": carry_reasoning(&ReasoningBlock {
                           signature: Some("anthropic".into()),
                           ..ReasoningBlock::default()
                       }, Some("gemini-x"), &TestSealer(1))}),
                json!({"text": "Hi"}),
                json!({"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}, "thoughtSignature": "F"}),
                json!({"functionCall": {"id": "c2", "name": "g", "args": {}}}),
                json!({"text": ""}),
            ]
        );
        assert!(
            v.iter()
                .all(|f| f["modelVersion"] == "gemini-x" && f["responseId"] == "r1")
        );
        let last = v.last().unwrap();
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(
            last["usageMetadata"],
            json!({"promptTokenCount": 3, "candidatesTokenCount": 3, "thoughtsTokenCount": 2, "totalTokenCount": 8})
        );
        assert!(
            v[..v.len() - 1]
                .iter()
                .all(|f| f.get("usageMetadata").is_none())
        );
        assert!(r.saw_tool_calls());
    }

    #[test]
    fn another_providers_call_data_rides_sealed_on_the_function_call() {
        let data = json!({"openai_responses": {"id": "fc_1"}});
        let mut r = ChunkRenderer::new("r".into(), "m".into(), Arc::new(TestSealer(1)));
        let mut out = Vec::new();
        for e in [
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "f".into(),
                provider_data: Some(data.clone()),
            },
            StreamEvent::ToolCallEnd { index: 0 },
        ] {
            r.render(&e, &mut out);
        }
        let part = frames(&out)[0]["candidates"][0]["content"]["parts"][0].clone();
        let sig = part["thoughtSignature"].as_str().unwrap();
        assert_eq!(
            Some(sig.to_owned()),
            call_signature(&data, Some("m"), &TestSealer(1))
        );
        assert!(!sig.contains("fc_1"));
    }

    #[test]
    fn error_frame_is_the_google_envelope() {
        let mut r = ChunkRenderer::new("r".into(), "m".into(), Arc::new(TestSealer(1)));
        let mut out = Vec::new();
        r.error(ErrorKind::RateLimited, "quota", &mut out);
        assert_eq!(
            frames(&out),
            vec![
                json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
            ]
        );
    }

    #[test]
    fn generated_media_is_decoded_and_rendered_as_the_same_parts() {
        let body = concat!(
            "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[",
            "{\"text\":\"here:\"},",
            "{\"inlineData\":{\"mimeType\":\"image/png\",\"data\":\"iVBO\"}},",
            "{\"fileData\":{\"mimeType\":\"image/png\",\"fileUri\":\"gs://b/i.png\"}}",
            "]},\"finishReason\":\"STOP\"}]}\n\n"
        );
        let events = decode_all(body, 7).unwrap();
        let media: Vec<&StreamEvent> = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Media { .. }))
            .collect();
        assert_eq!(
            media,
            [
                &StreamEvent::Media {
                    source: MediaSource::Base64 {
                        media_type: "image/png".into(),
                        data: "iVBO".into()
                    }
                },
                &StreamEvent::Media {
                    source: MediaSource::Url {
                        url: "gs://b/i.png".into()
                    }
                }
            ]
        );
        let mut r = ChunkRenderer::new("r".into(), "m".into(), Arc::new(TestSealer(1)));
        let mut out = Vec::new();
        for e in &events {
            r.render(e, &mut out);
        }
        let parts: Vec<Value> = frames(&out)
            .iter()
            .map(|f| f["candidates"][0]["content"]["parts"][0].clone())
            .collect();
        assert_eq!(
            parts[1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBO"}})
        );
        assert_eq!(parts[2], json!({"fileData": {"fileUri": "gs://b/i.png"}}));
    }
}
