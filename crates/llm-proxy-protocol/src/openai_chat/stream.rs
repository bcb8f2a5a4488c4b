//! OpenAI `chat.completion.chunk` streams: decoding upstream SSE into events, and rendering
//! events as chunks for clients (tool-call argument deltas, `reasoning_content`, the usage
//! chunk of `stream_options.include_usage`, `[DONE]`, in-stream errors).

use bytes::Bytes;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::{FinishReason, ReasoningBlock};
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_api::translation::StreamDecoder;
use serde::Serialize;
use serde_json::Value;

use super::error::error_from_value;
use super::from_model::{finish_reason_name, reasoning_detail, usage_from_model};
use super::to_model::{finish_reason_to_model, reasoning_to_model, usage_to_model};
use super::types::{ChunkIn, ReasoningDetail, WireUsage};
use crate::citations::{CitationSpans, UrlCitation};
use crate::json_out::{self, Fields, WriteJson};
use crate::sse::{SseFrame, SseParser};

/// Decodes an upstream OpenAI-compatible SSE body into events.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    sse: SseParser,
    frames: Vec<SseFrame>,
    started: bool,
    /// Upstream tool-call slot -> (our index, call id); calls are numbered in order of
    /// appearance.
    calls: Vec<OpenCall>,
    next_index: u32,
    finish: Option<FinishReason>,
    done: bool,
}

#[derive(Debug)]
struct OpenCall {
    upstream_index: u32,
    index: u32,
    id: String,
    started: bool,
    name: String,
    pending_args: String,
    provider_data: Option<Value>,
}

impl ChunkDecoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    fn chunk(
        &mut self,
        chunk: ChunkIn<'_>,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        if let Some(err) = chunk.error {
            return Err(error_from_value(None, &err));
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.map(std::borrow::Cow::into_owned),
                model: chunk.model.map(std::borrow::Cow::into_owned),
            });
        }
        for choice in chunk.choices {
            // Logprobs lead the text they score.
            let logprobs = super::to_model::logprob_entries(choice.logprobs);
            if !logprobs.is_empty() {
                out.push(StreamEvent::Logprobs { content: logprobs });
            }
            if let Some(delta) = choice.delta {
                if let Some(details) = delta.reasoning_details {
                    self.reasoning_details(details, out);
                } else if let Some(r) = delta.reasoning_content.or(delta.reasoning)
                    && !r.is_empty()
                {
                    out.push(StreamEvent::ReasoningDelta { text: r });
                }
                if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { text: t });
                }
                if let Some(t) = delta.refusal.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { text: t });
                }
                for (pos, tc) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                    self.tool_call_delta(tc, pos as u32, out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(finish_reason_to_model(&reason));
            }
        }
        if let Some(u) = chunk.usage {
            out.push(StreamEvent::Usage(usage_to_model(&u)));
        }
        Ok(())
    }

    fn reasoning_details(&mut self, details: Vec<ReasoningDetail>, out: &mut Vec<StreamEvent>) {
        for part in reasoning_to_model(Some(details), None) {
            if let llm_proxy_api::model::Part::Reasoning(ReasoningBlock {
                text,
                signature,
                redacted,
                provider_data,
            }) = part
            {
                if let Some(data) = redacted {
                    out.push(StreamEvent::ReasoningRedacted { data });
                    continue;
                }
                if !text.is_empty() {
                    out.push(StreamEvent::ReasoningDelta { text });
                }
                if let Some(data) = provider_data {
                    out.push(StreamEvent::ReasoningProviderData { data });
                }
                if let Some(signature) = signature {
                    out.push(StreamEvent::ReasoningSignature { signature });
                }
            }
        }
    }

    fn tool_call_delta(
        &mut self,
        tc: super::types::ToolCallDeltaIn,
        position: u32,
        out: &mut Vec<StreamEvent>,
    ) {
        let upstream_index = tc.index.unwrap_or(position);
        let (name, args) = match tc.function {
            Some(f) => (f.name, f.arguments.unwrap_or_default()),
            None => (None, String::new()),
        };
        // A new call when the slot is new, or when a provider reuses a slot with a new id.
        let existing = self
            .calls
            .iter()
            .rposition(|c| c.upstream_index == upstream_index);
        let slot = match (existing, &tc.id) {
            (Some(i), Some(id)) if !id.is_empty() && self.calls[i].id != *id => None,
            (found, _) => found,
        };
        let slot = match slot {
            Some(i) => i,
            None => {
                let index = self.next_index;
                self.next_index += 1;
                self.calls.push(OpenCall {
                    upstream_index,
                    index,
                    id: tc
                        .id
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(llm_proxy_api::ids::tool_call_id),
                    started: false,
                    name: String::new(),
                    pending_args: String::new(),
                    provider_data: None,
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[slot];
        if let Some(n) = name {
            call.name.push_str(&n);
        }
        if tc.extra_content.is_some() {
            call.provider_data = tc.extra_content;
        }
        if !call.started {
            if call.name.is_empty() {
                call.pending_args.push_str(&args);
                return; // wait for the name
            }
            call.started = true;
            out.push(StreamEvent::ToolCallStart {
                index: call.index,
                id: call.id.clone(),
                name: call.name.clone(),
                provider_data: call.provider_data.clone(),
            });
            let pending = std::mem::take(&mut call.pending_args) + &args;
            if !pending.is_empty() {
                out.push(StreamEvent::ToolCallDelta {
                    index: call.index,
                    arguments: pending,
                });
            }
        } else if !args.is_empty() {
            out.push(StreamEvent::ToolCallDelta {
                index: call.index,
                arguments: args,
            });
        }
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        for call in &self.calls {
            if call.started {
                out.push(StreamEvent::ToolCallEnd { index: call.index });
            }
        }
        if let Some(reason) = self.finish.take() {
            out.push(StreamEvent::Finish { reason });
        }
    }
}

impl StreamDecoder for ChunkDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.sse.feed(chunk, &mut self.frames);
        self.drain(out)
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.sse.finish(&mut self.frames);
        self.drain(out)?;
        self.end(out);
        Ok(())
    }

    fn is_finished(&self) -> bool {
        self.done
    }
}

impl ChunkDecoder {
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
        if data == "[DONE]" {
            self.end(out);
            return Ok(());
        }
        if data.is_empty() || self.done {
            return Ok(());
        }
        let chunk: ChunkIn = serde_json::from_str(data).map_err(|e| {
            BackendError::new(
                llm_proxy_api::ErrorKind::Unavailable,
                llm_proxy_api::ErrorSource::Upstream,
                format!("upstream sent an invalid stream chunk: {e}"),
            )
        })?;
        self.chunk(chunk, out)
    }
}

/// Renders events as `chat.completion.chunk` SSE frames for a client.
#[derive(Debug)]
pub struct ChunkRenderer {
    id: String,
    model: String,
    created: u64,
    /// What every chunk of this answer starts with (`data: {"id":…,"object":…,"created":…,
    /// "model":…`), written once: the four fields were escaped again for every chunk.
    head: Vec<u8>,
    include_usage: bool,
    sent_role: bool,
    usage: Option<llm_proxy_api::Usage>,
    /// Stream index -> the OpenAI tool_calls index (position in this answer).
    tool_positions: Vec<u32>,
    reasoning_index: u32,
    /// Web citations waiting for the end of the text they back.
    citations: CitationSpans,
    /// Logprobs for the next content chunk.
    pending_logprobs: Vec<Value>,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChoiceOut<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<WireUsage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    finish_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<LogprobsOut<'a>>,
}

#[derive(Serialize)]
struct LogprobsOut<'a> {
    content: &'a [Value],
    refusal: Option<()>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_details: Option<[ReasoningDetail; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Vec<Value>>,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_content: Option<&'a Value>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// The chunks written straight to bytes (`json_out`): one per streamed event, so the cost of
/// writing them is paid dozens of times per answer. Byte for byte what `serde_json` writes for
/// the derived `Serialize` (tested below).
impl WriteJson for ChunkOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        write_head_fields(&mut f, self.id, self.object, self.created, self.model);
        self.write_rest(f);
    }
}

/// The fields every chunk of an answer repeats, in their order.
fn write_head_fields(f: &mut Fields<'_>, id: &str, object: &str, created: u64, model: &str) {
    f.string("id", id);
    f.string("object", object);
    f.uint("created", created);
    f.string("model", model);
}

impl ChunkOut<'_> {
    /// The fields after the head ones, and the closing brace.
    fn write_rest(&self, mut f: Fields<'_>) {
        json_out::array(f.key("choices"), self.choices, |out, c| c.write_json(out));
        if let Some(usage) = &self.usage {
            super::write::write_usage(f.key("usage"), usage);
        }
        f.opt_value("error", self.error.as_ref());
        f.close();
    }
}

impl WriteJson for ChoiceOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        f.uint("index", u64::from(self.index));
        self.delta.write_json(f.key("delta"));
        json_out::opt_string(f.key("finish_reason"), self.finish_reason);
        f.opt_value("logprobs", self.logprobs.as_ref());
        f.close();
    }
}

impl WriteJson for DeltaOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = Fields::new(out);
        f.opt_string("role", self.role);
        f.opt_string("content", self.content);
        f.opt_string("reasoning_content", self.reasoning_content);
        f.opt_value("reasoning_details", self.reasoning_details.as_ref());
        if let Some([call]) = &self.tool_calls {
            let list = f.key("tool_calls");
            list.push(b'[');
            let mut c = Fields::new(list);
            c.uint("index", u64::from(call.index));
            c.opt_string("id", call.id);
            c.opt_string("type", call.kind);
            let mut function = Fields::new(c.key("function"));
            function.opt_string("name", call.function.name);
            function.string("arguments", call.function.arguments);
            function.close();
            c.opt_value("extra_content", call.extra_content);
            c.close();
            list.push(b']');
        }
        f.opt_value("annotations", self.annotations.as_ref());
        f.close();
    }
}

/// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…`: the start of every
/// frame of one answer.
fn frame_head(id: &str, created: u64, model: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(80 + id.len() + model.len());
    out.extend_from_slice(b"data: ");
    let mut f = Fields::new(&mut out);
    write_head_fields(&mut f, id, CHUNK_OBJECT, created, model);
    out
}

const CHUNK_OBJECT: &str = "chat.completion.chunk";

impl ChunkRenderer {
    /// A renderer for one response.
    pub fn new(id: String, model: String, created: u64, include_usage: bool) -> Self {
        Self {
            head: frame_head(&id, created, &model),
            id,
            model,
            created,
            include_usage,
            sent_role: false,
            usage: None,
            tool_positions: Vec::new(),
            reasoning_index: 0,
            citations: CitationSpans::default(),
            pending_logprobs: Vec::new(),
        }
    }

    fn frame(&self, delta: DeltaOut<'_>, finish_reason: Option<&str>) -> Bytes {
        self.choice_frame(ChoiceOut {
            index: 0,
            delta,
            finish_reason,
            logprobs: None,
        })
    }

    fn choice_frame(&self, choice: ChoiceOut<'_>) -> Bytes {
        let choices = [choice];
        let chunk = ChunkOut {
            id: &self.id,
            object: CHUNK_OBJECT,
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: None,
            error: None,
        };
        self.chunk_frame(&chunk)
    }

    /// `data: <chunk>\n\n`: this answer's head as written once, then the chunk's own fields.
    fn chunk_frame(&self, chunk: &ChunkOut<'_>) -> Bytes {
        debug_assert!(
            (chunk.id, chunk.object, chunk.created, chunk.model)
                == (
                    self.id.as_str(),
                    CHUNK_OBJECT,
                    self.created,
                    self.model.as_str()
                ),
            "a chunk of this answer"
        );
        let mut out = Vec::with_capacity(self.head.len() + 192);
        out.extend_from_slice(&self.head);
        chunk.write_rest(Fields::resume(&mut out));
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    fn role(&mut self) -> Option<&'static str> {
        (!std::mem::replace(&mut self.sent_role, true)).then_some("assistant")
    }

    /// Renders one event; most events make one frame, bookkeeping events none.
    pub fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        if matches!(
            event,
            StreamEvent::Finish { .. } | StreamEvent::ToolCallStart { .. }
        ) {
            let done = self.citations.flush();
            self.annotations_frame(done, out);
            self.logprobs_frame(out);
        }
        match event {
            // Only Anthropic answers say which stop sequence matched.
            StreamEvent::StopSequence { .. } => {}
            // Chat completions have no slot for media the assistant generated; the server
            // names it in `x-llm-proxy-lossy`.
            StreamEvent::Media { .. } | StreamEvent::Dropped { .. } => {}
            // Web citations become `annotations` once the text they back is complete.
            StreamEvent::Citation { citation } => {
                let done = self.citations.citation(citation);
                self.annotations_frame(done, out);
            }
            // They lead the text they score: sent with the next content chunk.
            StreamEvent::Logprobs { content } => {
                self.pending_logprobs.extend(content.iter().cloned());
            }
            StreamEvent::Start { model, .. } => {
                if let Some(m) = model.as_deref().filter(|m| !m.is_empty()) {
                    m.clone_into(&mut self.model);
                }
                let role = self.role();
                out.push(self.frame(
                    DeltaOut {
                        role,
                        content: Some(""),
                        ..DeltaOut::default()
                    },
                    None,
                ));
            }
            StreamEvent::TextDelta { text } => {
                self.citations.text(text);
                let role = self.role();
                let logprobs = std::mem::take(&mut self.pending_logprobs);
                out.push(self.choice_frame(ChoiceOut {
                    index: 0,
                    delta: DeltaOut {
                        role,
                        content: Some(text),
                        ..DeltaOut::default()
                    },
                    finish_reason: None,
                    logprobs: (!logprobs.is_empty()).then_some(LogprobsOut {
                        content: &logprobs,
                        refusal: None,
                    }),
                }));
            }
            StreamEvent::ReasoningDelta { text } => {
                let role = self.role();
                out.push(self.frame(
                    DeltaOut {
                        role,
                        reasoning_content: Some(text),
                        ..DeltaOut::default()
                    },
                    None,
                ));
            }
            StreamEvent::ReasoningSignature { signature } => {
                let block = ReasoningBlock {
                    signature: Some(signature.clone()),
                    ..Default::default()
                };
                self.reasoning_detail_frame(&block, out);
                self.reasoning_index += 1;
            }
            StreamEvent::ReasoningRedacted { data } => {
                let block = ReasoningBlock {
                    redacted: Some(data.clone()),
                    ..Default::default()
                };
                self.reasoning_detail_frame(&block, out);
                self.reasoning_index += 1;
            }
            StreamEvent::ReasoningProviderData { data } => {
                let block = ReasoningBlock {
                    provider_data: Some(data.clone()),
                    ..Default::default()
                };
                self.reasoning_detail_frame(&block, out);
            }
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                let position = self.tool_positions.len() as u32;
                self.tool_positions.push(*index);
                let role = self.role();
                let call = ToolCallOut {
                    index: position,
                    id: Some(id),
                    kind: Some("function"),
                    function: FunctionOut {
                        name: Some(name),
                        arguments: "",
                    },
                    extra_content: provider_data.as_ref(),
                };
                out.push(self.frame(
                    DeltaOut {
                        role,
                        tool_calls: Some([call]),
                        ..DeltaOut::default()
                    },
                    None,
                ));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let position = self.position(*index);
                let call = ToolCallOut {
                    index: position,
                    id: None,
                    kind: None,
                    function: FunctionOut {
                        name: None,
                        arguments,
                    },
                    extra_content: None,
                };
                out.push(self.frame(
                    DeltaOut {
                        tool_calls: Some([call]),
                        ..DeltaOut::default()
                    },
                    None,
                ));
            }
            StreamEvent::ToolCallEnd { .. } => {}
            StreamEvent::Usage(u) => match &mut self.usage {
                Some(existing) => existing.merge(u),
                None => self.usage = Some(*u),
            },
            StreamEvent::Finish { reason } => {
                let reason = match reason {
                    FinishReason::Stop if !self.tool_positions.is_empty() => {
                        &FinishReason::ToolCalls
                    }
                    r => r,
                };
                out.push(self.frame(DeltaOut::default(), Some(finish_reason_name(reason))));
            }
        }
    }

    fn reasoning_detail_frame(&mut self, block: &ReasoningBlock, out: &mut Vec<Bytes>) {
        let role = self.role();
        let detail = reasoning_detail(block, self.reasoning_index);
        out.push(self.frame(
            DeltaOut {
                role,
                reasoning_details: Some([detail]),
                ..DeltaOut::default()
            },
            None,
        ));
    }

    /// A chunk with logprobs no content chunk took (a whole answer replayed as events).
    fn logprobs_frame(&mut self, out: &mut Vec<Bytes>) {
        if self.pending_logprobs.is_empty() {
            return;
        }
        let logprobs = std::mem::take(&mut self.pending_logprobs);
        let role = self.role();
        out.push(self.choice_frame(ChoiceOut {
            index: 0,
            delta: DeltaOut {
                role,
                ..DeltaOut::default()
            },
            finish_reason: None,
            logprobs: Some(LogprobsOut {
                content: &logprobs,
                refusal: None,
            }),
        }));
    }

    /// A chunk with the `annotations` of web citations whose text is complete.
    fn annotations_frame(&mut self, cited: Vec<UrlCitation>, out: &mut Vec<Bytes>) {
        if cited.is_empty() {
            return;
        }
        let role = self.role();
        out.push(self.frame(
            DeltaOut {
                role,
                annotations: Some(cited.iter().map(UrlCitation::chat_annotation).collect()),
                ..DeltaOut::default()
            },
            None,
        ));
    }

    fn position(&self, index: u32) -> u32 {
        self.tool_positions
            .iter()
            .position(|i| *i == index)
            .unwrap_or(0) as u32
    }

    /// Frames that close a successful stream: the usage chunk (when asked for) and `[DONE]`.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        let done = self.citations.flush();
        self.annotations_frame(done, out);
        self.logprobs_frame(out);
        if self.include_usage {
            let chunk = ChunkOut {
                id: &self.id,
                object: CHUNK_OBJECT,
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(usage_from_model(&self.usage.unwrap_or_default())),
                error: None,
            };
            out.push(self.chunk_frame(&chunk));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }

    /// Frames reporting an error after streaming began: a chunk with `finish_reason: "error"`
    /// and an `error` object, then `[DONE]`.
    pub fn error(&mut self, error: Value, out: &mut Vec<Bytes>) {
        let choices = [ChoiceOut {
            index: 0,
            delta: DeltaOut::default(),
            finish_reason: Some("error"),
            logprobs: None,
        }];
        let chunk = ChunkOut {
            id: &self.id,
            object: CHUNK_OBJECT,
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: None,
            error: Some(error),
        };
        out.push(self.chunk_frame(&chunk));
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    }

    /// The usage seen so far.
    pub fn usage(&self) -> Option<llm_proxy_api::Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::Usage;
    use serde_json::json;

    #[test]
    fn chunk_ids_are_borrowed_unless_escaped() {
        let plain: ChunkIn<'_> =
            serde_json::from_str(r#"{"id":"c1","model":"m","choices":[]}"#).unwrap();
        assert!(matches!(plain.id, Some(std::borrow::Cow::Borrowed("c1"))));
        assert!(matches!(plain.model, Some(std::borrow::Cow::Borrowed("m"))));
        let escaped: ChunkIn<'_> =
            serde_json::from_str(r#"{"id":"c\u0031","model":null}"#).unwrap();
        assert_eq!(escaped.id.as_deref(), Some("c1"));
        assert_eq!(escaped.model, None);
        let absent: ChunkIn<'_> = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.id, None);
    }

    #[test]
    fn chunks_are_the_bytes_serde_json_writes() {
        let text = "line\n\"quoted\"\t\u{1}é🦀";
        let detail: ReasoningDetail =
            serde_json::from_value(json!({"type": "reasoning.text", "text": text, "index": 0}))
                .unwrap();
        let extra = json!({"google": {"thought_signature": "c2ln"}});
        let logprobs = [json!({"token": "a", "logprob": -0.5})];
        let deltas = [
            DeltaOut::default(),
            DeltaOut {
                role: Some("assistant"),
                content: Some(text),
                ..DeltaOut::default()
            },
            DeltaOut {
                reasoning_content: Some(text),
                reasoning_details: Some([detail]),
                annotations: Some(vec![json!({"type": "url_citation"})]),
                ..DeltaOut::default()
            },
            DeltaOut {
                tool_calls: Some([ToolCallOut {
                    index: 3,
                    id: Some("call_1"),
                    kind: Some("function"),
                    function: FunctionOut {
                        name: Some("Read"),
                        arguments: "{\"path\":\"a\"}",
                    },
                    extra_content: Some(&extra),
                }]),
                ..DeltaOut::default()
            },
            DeltaOut {
                tool_calls: Some([ToolCallOut {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionOut {
                        name: None,
                        arguments: "",
                    },
                    extra_content: None,
                }]),
                ..DeltaOut::default()
            },
        ];
        for delta in deltas {
            for (finish_reason, with_logprobs) in [(None, false), (Some("stop"), true)] {
                let choices = [ChoiceOut {
                    index: 0,
                    delta: delta_clone(&delta),
                    finish_reason,
                    logprobs: with_logprobs.then_some(LogprobsOut {
                        content: &logprobs,
                        refusal: None,
                    }),
                }];
                let chunk = ChunkOut {
                    id: "chatcmpl-\"1\"",
                    object: "chat.completion.chunk",
                    created: 17,
                    model: "m",
                    choices: &choices,
                    usage: None,
                    error: None,
                };
                assert_same(&chunk);
            }
        }
        let usage = ChunkOut {
            id: "c",
            object: "chat.completion.chunk",
            created: 0,
            model: "",
            choices: &[],
            usage: Some(usage_from_model(&Usage {
                input_tokens: 3,
                output_tokens: 4,
                cache_read_tokens: Some(1),
                reasoning_tokens: Some(2),
                ..Usage::default()
            })),
            error: Some(json!({"message": "boom\n", "type": "server_error"})),
        };
        assert_same(&usage);
    }

    fn delta_clone<'a>(d: &DeltaOut<'a>) -> DeltaOut<'a> {
        DeltaOut {
            role: d.role,
            content: d.content,
            reasoning_content: d.reasoning_content,
            reasoning_details: d.reasoning_details.clone(),
            tool_calls: d.tool_calls.as_ref().map(|[c]| {
                [ToolCallOut {
                    index: c.index,
                    id: c.id,
                    kind: c.kind,
                    function: FunctionOut {
                        name: c.function.name,
                        arguments: c.function.arguments,
                    },
                    extra_content: c.extra_content,
                }]
            }),
            annotations: d.annotations.clone(),
        }
    }

    /// The frame a renderer of this chunk's answer writes (its head written once) is
    /// `data: ` and what serde prints for the whole chunk.
    fn assert_same(chunk: &ChunkOut<'_>) {
        let renderer =
            ChunkRenderer::new(chunk.id.into(), chunk.model.into(), chunk.created, false);
        let frame = renderer.chunk_frame(chunk);
        let expected = format!("data: {}\n\n", serde_json::to_string(chunk).unwrap());
        assert_eq!(std::str::from_utf8(&frame).unwrap(), expected);
        let mut written = Vec::new();
        chunk.write_json(&mut written);
        assert_eq!(written, serde_json::to_vec(chunk).unwrap());
    }

    fn decode_all(body: &str) -> Vec<StreamEvent> {
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        // feed in small pieces to exercise boundaries
        for piece in body.as_bytes().chunks(7) {
            d.feed(piece, &mut out).unwrap();
        }
        d.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn decodes_text_reasoning_tool_fragments_and_usage() {
        let body = concat!(
            "data: {\"id\":\"x\",\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"hm\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n"
        );
        let events = decode_all(body);
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: Some("x".into()),
                    model: Some("m".into())
                },
                StreamEvent::ReasoningDelta { text: "hm".into() },
                StreamEvent::TextDelta { text: "Hi".into() },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "c1".into(),
                    name: "get".into(),
                    provider_data: None
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"a\"".into()
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: ":1}".into()
                },
                StreamEvent::Usage(Usage {
                    input_tokens: 5,
                    output_tokens: 2,
                    ..Usage::default()
                }),
                StreamEvent::ToolCallEnd { index: 0 },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls
                },
            ]
        );
    }

    #[test]
    fn slot_reused_with_new_id_is_a_new_call() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"b\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n",
        );
        let events = decode_all(body);
        let starts: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { index, id, .. } => Some((*index, id.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(starts, vec![(0, "a".to_owned()), (1, "b".to_owned())]);
    }

    #[test]
    fn in_stream_error_chunk_is_an_error() {
        let mut d = ChunkDecoder::new();
        let mut out = Vec::new();
        let err = d
            .feed(
                b"data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n",
                &mut out,
            )
            .unwrap_err();
        assert!(err.message.contains("overloaded"));
    }

    #[test]
    fn renders_chunks_usage_and_done() {
        let mut r = ChunkRenderer::new("id1".into(), "m".into(), 9, true);
        let mut out = Vec::new();
        for e in [
            StreamEvent::Start {
                id: None,
                model: None,
            },
            StreamEvent::TextDelta { text: "He".into() },
            StreamEvent::ToolCallStart {
                index: 3,
                id: "c".into(),
                name: "f".into(),
                provider_data: None,
            },
            StreamEvent::ToolCallDelta {
                index: 3,
                arguments: "{}".into(),
            },
            StreamEvent::Usage(Usage {
                input_tokens: 1,
                output_tokens: 2,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let values: Vec<Value> = out
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .filter(|s| !s.contains("[DONE]"))
            .map(|s| serde_json::from_str(s.trim().strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        assert_eq!(
            values[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(values[1]["choices"][0]["delta"], json!({"content": "He"}));
        assert_eq!(
            values[2]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": ""}})
        );
        assert_eq!(
            values[3]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "function": {"arguments": "{}"}})
        );
        assert_eq!(values[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(values[5]["choices"], json!([]));
        assert_eq!(values[5]["usage"]["total_tokens"], 3);
        assert_eq!(&out.last().unwrap()[..], b"data: [DONE]\n\n");
        assert!(
            values
                .iter()
                .all(|v| v["object"] == "chat.completion.chunk" && v["id"] == "id1")
        );
    }

    fn chunk_values(out: &[Bytes]) -> Vec<Value> {
        out.iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .filter(|s| !s.contains("[DONE]"))
            .map(|s| serde_json::from_str(s.trim().strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn logprobs_are_decoded_before_their_text_and_rendered_with_it() {
        let entry = json!({"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []});
        let body = format!(
            "data: {}\n\ndata: [DONE]\n\n",
            json!({"choices": [{"delta": {"content": "Hi"}, "logprobs": {"content": [entry], "refusal": null}}]})
        );
        let events = decode_all(&body);
        let lp = StreamEvent::Logprobs {
            content: vec![entry.clone()],
        };
        let at = events.iter().position(|e| e == &lp).unwrap();
        assert_eq!(events[at + 1], StreamEvent::TextDelta { text: "Hi".into() });

        let mut r = ChunkRenderer::new("id1".into(), "m".into(), 9, false);
        let mut out = Vec::new();
        for e in &events {
            r.render(e, &mut out);
        }
        // A whole answer replayed: logprobs after the text get a chunk of their own.
        r.render(&lp, &mut out);
        r.finish(&mut out);
        let values = chunk_values(&out);
        let with_text = values
            .iter()
            .find(|v| v["choices"][0]["delta"]["content"] == "Hi")
            .unwrap();
        assert_eq!(
            with_text["choices"][0]["logprobs"],
            json!({"content": [entry], "refusal": null})
        );
        let alone: Vec<&Value> = values
            .iter()
            .filter(|v| v["choices"][0]["logprobs"].is_object())
            .collect();
        assert_eq!(alone.len(), 2, "{values:?}");
    }

    #[test]
    fn web_citations_become_annotations_spanning_their_text() {
        let mut r = ChunkRenderer::new("id1".into(), "m".into(), 9, false);
        let mut out = Vec::new();
        for e in [
            StreamEvent::TextDelta {
                text: "Hi. ".into(),
            },
            StreamEvent::Citation {
                citation: json!({"type": "web_search_result_location", "url": "https://a.example",
                    "title": "A", "cited_text": "x", "encrypted_index": "e"}),
            },
            StreamEvent::TextDelta { text: "Sky".into() },
            StreamEvent::TextDelta {
                text: " is blue.".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let values = chunk_values(&out);
        let annotated: Vec<&Value> = values
            .iter()
            .filter(|v| v["choices"][0]["delta"]["annotations"].is_array())
            .collect();
        assert_eq!(annotated.len(), 1, "{values:?}");
        assert_eq!(
            annotated[0]["choices"][0]["delta"]["annotations"],
            json!([{"type": "url_citation", "url_citation": {
                "start_index": 4, "end_index": 16, "url": "https://a.example", "title": "A"}}])
        );
        let last = values.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
    }
}
