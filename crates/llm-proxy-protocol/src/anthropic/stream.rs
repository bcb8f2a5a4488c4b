//! Anthropic Messages SSE streams: decoding upstream `event:`/`data:` pairs into events, and
//! rendering events as Anthropic content blocks for clients (blocks never interleave, so
//! parallel tool calls streamed side by side are serialized one block at a time).

use std::sync::Arc;

use bytes::Bytes;
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::{FinishReason, MediaSource, ReasoningBlock, Usage};
use llm_proxy_api::stream::StreamEvent;
use llm_proxy_api::translation::StreamDecoder;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{error_from_value, error_type};
use super::from_model::{message_id, sealed_call_data, stop_reason_and_sequence, usage_from_model};
use super::to_model::{stop_reason_to_model, usage_to_model};
use super::types::{DeltaIn, StreamEventIn, UsageIn, WireUsage};
use crate::carried::Carried;
use crate::json_out;
use crate::openai_responses::Sealer;
use crate::sse::{SseFrame, SseParser, event_frame};

/// Decodes an upstream Anthropic SSE body into events.
#[derive(Debug, Default)]
pub struct SseDecoder {
    sse: SseParser,
    frames: Vec<SseFrame>,
    started: bool,
    /// Open upstream blocks by their upstream index.
    blocks: Vec<(u32, OpenBlockIn)>,
    next_tool_index: u32,
    /// Usage so far in Anthropic's shape (input and output arrive in different events).
    usage: WireUsage,
    finish: Option<FinishReason>,
    /// The stop sequence that matched (`stop_reason: stop_sequence`).
    stop_sequence: Option<String>,
    /// `message_delta` seen: the answer is complete even if `message_stop` never comes.
    ended: bool,
    done: bool,
}

#[derive(Debug)]
enum OpenBlockIn {
    Text,
    Thinking {
        signature: String,
    },
    Tool {
        index: u32,
    },
    /// Redacted thinking (emitted whole at start) and block types we do not model.
    Other,
}

fn invalid_stream(what: &str, e: &serde_json::Error) -> BackendError {
    BackendError::new(
        ErrorKind::Unavailable,
        ErrorSource::Upstream,
        format!("upstream sent an invalid stream {what}: {e}"),
    )
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
        let data = frame.data.trim();
        if data.is_empty() || self.done {
            return Ok(());
        }
        let event: StreamEventIn =
            serde_json::from_str(data).map_err(|e| invalid_stream("event", &e))?;
        self.event(event, out)
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: None,
                model: None,
            });
        }
    }

    fn merge_usage(&mut self, u: &UsageIn, out: &mut Vec<StreamEvent>) {
        let w = &mut self.usage;
        w.input_tokens = u.input_tokens.unwrap_or(w.input_tokens);
        w.output_tokens = u.output_tokens.unwrap_or(w.output_tokens);
        w.cache_creation_input_tokens = u
            .cache_creation_input_tokens
            .or(w.cache_creation_input_tokens);
        w.cache_read_input_tokens = u.cache_read_input_tokens.or(w.cache_read_input_tokens);
        out.push(StreamEvent::Usage(usage_to_model(w)));
    }

    fn event(
        &mut self,
        event: StreamEventIn,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match event {
            StreamEventIn::MessageStart { message } => {
                if !self.started {
                    self.started = true;
                    out.push(StreamEvent::Start {
                        id: message.id,
                        model: message.model,
                    });
                }
                if let Some(u) = message.usage {
                    self.merge_usage(&u, out);
                }
            }
            StreamEventIn::ContentBlockStart {
                index,
                content_block,
            } => {
                self.ensure_started(out);
                self.block_start(index, &content_block, out);
            }
            StreamEventIn::ContentBlockDelta { index, delta } => {
                let Some(block) = self
                    .blocks
                    .iter_mut()
                    .find(|(i, _)| *i == index)
                    .map(|(_, b)| b)
                else {
                    return Ok(());
                };
                match (block, delta) {
                    (OpenBlockIn::Text, DeltaIn::CitationsDelta { citation })
                        if !citation.is_null() =>
                    {
                        out.push(StreamEvent::Citation { citation });
                    }
                    (OpenBlockIn::Text, DeltaIn::TextDelta { text }) if !text.is_empty() => {
                        out.push(StreamEvent::TextDelta { text });
                    }
                    (OpenBlockIn::Thinking { .. }, DeltaIn::ThinkingDelta { thinking })
                        if !thinking.is_empty() =>
                    {
                        out.push(StreamEvent::ReasoningDelta { text: thinking });
                    }
                    (
                        OpenBlockIn::Thinking { signature, .. },
                        DeltaIn::SignatureDelta { signature: s },
                    ) => {
                        signature.push_str(&s);
                    }
                    (OpenBlockIn::Tool { index }, DeltaIn::InputJsonDelta { partial_json })
                        if !partial_json.is_empty() =>
                    {
                        out.push(StreamEvent::ToolCallDelta {
                            index: *index,
                            arguments: partial_json,
                        });
                    }
                    _ => {}
                }
            }
            StreamEventIn::ContentBlockStop { index } => {
                if let Some(pos) = self.blocks.iter().position(|(i, _)| *i == index) {
                    let (_, block) = self.blocks.remove(pos);
                    self.block_stop(block, out);
                }
            }
            StreamEventIn::MessageDelta { delta, usage } => {
                self.ended = true;
                if let Some(reason) = delta.stop_reason {
                    if reason == "stop_sequence" {
                        self.stop_sequence = delta.stop_sequence;
                    }
                    self.finish = Some(stop_reason_to_model(&reason));
                }
                if let Some(u) = usage {
                    self.merge_usage(&u, out);
                }
            }
            StreamEventIn::MessageStop => self.end(out),
            StreamEventIn::Error { error } => return Err(error_from_value(None, &error)),
            StreamEventIn::Ping | StreamEventIn::Unknown => {}
        }
        Ok(())
    }

    fn block_start(&mut self, index: u32, block: &Value, out: &mut Vec<StreamEvent>) {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let text_field = |name: &str| block.get(name).and_then(Value::as_str).unwrap_or("");
        let open = match kind {
            "text" => {
                if let Some(citations) = block.get("citations").and_then(Value::as_array) {
                    out.extend(citations.iter().map(|c| StreamEvent::Citation {
                        citation: c.clone(),
                    }));
                }
                let text = text_field("text");
                if !text.is_empty() {
                    out.push(StreamEvent::TextDelta {
                        text: text.to_owned(),
                    });
                }
                OpenBlockIn::Text
            }
            "thinking" => {
                let text = text_field("thinking");
                if !text.is_empty() {
                    out.push(StreamEvent::ReasoningDelta {
                        text: text.to_owned(),
                    });
                }
                OpenBlockIn::Thinking {
                    signature: text_field("signature").to_owned(),
                }
            }
            "redacted_thinking" => {
                out.push(StreamEvent::ReasoningRedacted {
                    data: text_field("data").to_owned(),
                });
                OpenBlockIn::Other
            }
            "tool_use" => {
                let tool_index = self.next_tool_index;
                self.next_tool_index += 1;
                out.push(StreamEvent::ToolCallStart {
                    index: tool_index,
                    id: text_field("id").to_owned(),
                    name: text_field("name").to_owned(),
                    provider_data: None,
                });
                // Compatible servers sometimes send the whole input up front.
                if let Some(input) = block
                    .get("input")
                    .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                {
                    out.push(StreamEvent::ToolCallDelta {
                        index: tool_index,
                        arguments: input.to_string(),
                    });
                }
                OpenBlockIn::Tool { index: tool_index }
            }
            _ => OpenBlockIn::Other,
        };
        self.blocks.push((index, open));
    }

    fn block_stop(&mut self, block: OpenBlockIn, out: &mut Vec<StreamEvent>) {
        match block {
            OpenBlockIn::Thinking { signature } if !signature.is_empty() => {
                out.push(StreamEvent::ReasoningSignature { signature })
            }
            OpenBlockIn::Tool { index } => out.push(StreamEvent::ToolCallEnd { index }),
            OpenBlockIn::Text | OpenBlockIn::Thinking { .. } | OpenBlockIn::Other => {}
        }
    }

    /// The answer is complete: close what is open, then the buffered finish (after usage).
    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if self.done {
            return;
        }
        self.done = true;
        self.ended = true;
        for (_, block) in std::mem::take(&mut self.blocks) {
            self.block_stop(block, out);
        }
        if let Some(reason) = self.finish.take() {
            if let Some(sequence) = self.stop_sequence.take() {
                out.push(StreamEvent::StopSequence { sequence });
            }
            out.push(StreamEvent::Finish { reason });
        }
    }
}

impl StreamDecoder for SseDecoder {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.sse.feed(chunk, &mut self.frames);
        self.drain(out)
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.sse.finish(&mut self.frames);
        self.drain(out)?;
        if !self.ended {
            return Err(BackendError::new(
                ErrorKind::Unavailable,
                ErrorSource::Upstream,
                "upstream stream ended before the message was complete",
            ));
        }
        self.end(out);
        Ok(())
    }

    /// `message_stop` was seen: nothing more is expected.
    fn is_finished(&self) -> bool {
        self.done
    }
}

/// A keep-alive `ping` event, as Anthropic sends them.
pub fn ping_frame() -> Bytes {
    Bytes::from_static(b"event: ping\ndata: {\"type\":\"ping\"}\n\n")
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventOut<'a> {
    MessageStart {
        message: MessageOut<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: BlockStartOut<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: DeltaOut<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaOut<'a>,
        usage: WireUsage,
    },
    MessageStop,
    Error {
        error: ErrorOut<'a>,
    },
}

impl EventOut<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Error { .. } => "error",
        }
    }

    /// `event: <name>\ndata: <json>\n\n`. The events a stream is made of, deltas and block
    /// stops, are written straight to bytes; the others, once per answer, through serde. The
    /// bytes are the same either way (tested below).
    fn frame(&self) -> Bytes {
        let (index, delta) = match self {
            Self::ContentBlockDelta { index, delta } => match delta {
                DeltaOut::TextDelta { text } => (*index, Some(("text_delta", "text", *text))),
                DeltaOut::ThinkingDelta { thinking } => {
                    (*index, Some(("thinking_delta", "thinking", *thinking)))
                }
                DeltaOut::SignatureDelta { signature } => {
                    (*index, Some(("signature_delta", "signature", *signature)))
                }
                DeltaOut::InputJsonDelta { partial_json } => (
                    *index,
                    Some(("input_json_delta", "partial_json", *partial_json)),
                ),
                DeltaOut::CitationsDelta { .. } => return self.serialized(),
            },
            Self::ContentBlockStop { index } => (*index, None),
            _ => return self.serialized(),
        };
        let name = self.name().as_bytes();
        // Room for the whole frame (the fixed bytes, the name twice, the delta with a little
        // escaping), so it is written without growing.
        let delta_size = delta.map_or(0, |(kind, field, text)| {
            32 + kind.len() + field.len() + text.len() + text.len() / 8
        });
        let mut out = Vec::with_capacity(40 + 2 * name.len() + delta_size);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\",\"index\":");
        json_out::uint(&mut out, u64::from(index));
        if let Some((kind, field, text)) = delta {
            out.extend_from_slice(b",\"delta\":{\"type\":\"");
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b"\",\"");
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b"\":");
            json_out::string(&mut out, text);
            out.push(b'}');
        }
        out.extend_from_slice(b"}\n\n");
        Bytes::from(out)
    }

    fn serialized(&self) -> Bytes {
        event_frame(self.name(), &serde_json::to_vec(self).unwrap_or_default())
    }
}

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [(); 0],
    model: &'a str,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: WireUsage,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStartOut<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Map<String, Value>,
    },
    Image {
        source: ImageSourceOut<'a>,
    },
}

/// The `source` of an image block.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ImageSourceOut<'a> {
    Base64 { media_type: &'a str, data: &'a str },
    Url { url: &'a str },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::enum_variant_names,
    reason = "variant names spell the wire types"
)]
enum DeltaOut<'a> {
    TextDelta { text: &'a str },
    ThinkingDelta { thinking: &'a str },
    SignatureDelta { signature: &'a str },
    InputJsonDelta { partial_json: &'a str },
    CitationsDelta { citation: &'a Value },
}

#[derive(Serialize)]
struct MessageDeltaOut<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// Renders events as Anthropic SSE frames for a client.
#[derive(Debug)]
pub struct EventRenderer {
    id: String,
    model: String,
    started: bool,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// The stop sequence that matched, when the upstream said.
    stop_sequence: Option<String>,
    open: Option<OpenBlockOut>,
    /// The open text block has text (a citation after it opens a new block).
    text_written: bool,
    /// Index of the open block, or of the next one.
    block_index: u32,
    tools: Vec<ToolSlot>,
    finished: bool,
    /// Seals other providers' reasoning state into thinking signatures.
    sealer: Arc<dyn Sealer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlockOut {
    Text,
    Thinking,
    Tool(u32),
}

/// A tool call of this answer. Only one tool_use block can be open at a time: calls started
/// while another is open wait, with their argument fragments, until it closes.
#[derive(Debug)]
struct ToolSlot {
    index: u32,
    id: String,
    name: String,
    provider_data: Option<Value>,
    buffered: String,
    state: ToolState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ToolState {
    Waiting { ended: bool },
    Open,
    Closed,
}

impl EventRenderer {
    /// A renderer for one response; `id` gets the `msg_` prefix if it lacks it. `sealer` seals
    /// other providers' reasoning state (see [`crate::carried`]).
    pub fn new(id: impl AsRef<str>, model: impl Into<String>, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            id: message_id(id.as_ref()),
            model: model.into(),
            started: false,
            usage: None,
            finish: None,
            stop_sequence: None,
            open: None,
            text_written: false,
            block_index: 0,
            tools: Vec::new(),
            finished: false,
            sealer,
        }
    }

    /// The usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Renders one event. `message_start` waits for the first content so it can carry the
    /// input usage an upstream reports up front.
    pub fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        match event {
            StreamEvent::Start { model, .. } => {
                if let Some(m) = model.as_deref().filter(|m| !m.is_empty()) {
                    m.clone_into(&mut self.model);
                }
            }
            StreamEvent::TextDelta { text } => {
                if text.is_empty() {
                    return;
                }
                self.enter(OpenBlockOut::Text, out);
                self.delta(DeltaOut::TextDelta { text }, out);
                self.text_written = true;
            }
            StreamEvent::Citation { citation } => {
                // Citations lead their text block.
                if self.open == Some(OpenBlockOut::Text) && self.text_written {
                    self.close_block(out);
                }
                self.enter(OpenBlockOut::Text, out);
                self.delta(DeltaOut::CitationsDelta { citation }, out);
            }
            StreamEvent::Logprobs { .. } => {}
            StreamEvent::ReasoningDelta { text } => {
                if text.is_empty() {
                    return;
                }
                self.enter(OpenBlockOut::Thinking, out);
                self.delta(DeltaOut::ThinkingDelta { thinking: text }, out);
            }
            StreamEvent::ReasoningSignature { signature } => self.sign_thinking(signature, out),
            StreamEvent::ReasoningProviderData { data } => {
                let block = ReasoningBlock {
                    provider_data: Some(data.clone()),
                    ..ReasoningBlock::default()
                };
                let sealed = Carried::of_block(&block, Some(&self.model))
                    .seal_text(self.sealer.as_ref())
                    .unwrap_or_default();
                self.sign_thinking(&sealed, out);
            }
            StreamEvent::ReasoningRedacted { data } => {
                self.before_content(out);
                self.close_block(out);
                self.open_block(
                    BlockStartOut::RedactedThinking { data },
                    OpenBlockOut::Thinking,
                    out,
                );
                self.close_block(out);
            }
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                self.ensure_started(out);
                let mut provider_data = provider_data.clone();
                // The thinking just before the call has no signature of its own: it carries
                // the call's (Gemini signs the functionCall part, not the thought).
                if self.open == Some(OpenBlockOut::Thinking)
                    && let Some(data) = provider_data.take()
                {
                    let sealed = sealed_call_data(&data, Some(&self.model), self.sealer.as_ref());
                    self.sign_thinking(&sealed, out);
                }
                self.tools.push(ToolSlot {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    provider_data,
                    buffered: String::new(),
                    state: ToolState::Waiting { ended: false },
                });
                if !matches!(self.open, Some(OpenBlockOut::Tool(_))) {
                    self.close_block(out);
                    self.open_waiting_tools(out);
                }
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(slot) = self.tools.iter_mut().rev().find(|t| t.index == *index) else {
                    return;
                };
                match slot.state {
                    ToolState::Open if !arguments.is_empty() => {
                        self.delta(
                            DeltaOut::InputJsonDelta {
                                partial_json: arguments,
                            },
                            out,
                        );
                    }
                    ToolState::Waiting { .. } => slot.buffered.push_str(arguments),
                    // A closed block cannot take more input; upstreams do not do this.
                    ToolState::Open | ToolState::Closed => {}
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                let Some(slot) = self.tools.iter_mut().rev().find(|t| t.index == *index) else {
                    return;
                };
                match slot.state {
                    ToolState::Open => {
                        self.close_block(out);
                        self.open_waiting_tools(out);
                    }
                    ToolState::Waiting { .. } => slot.state = ToolState::Waiting { ended: true },
                    ToolState::Closed => {}
                }
            }
            // Generated images become whole image blocks; other media (audio) has no Anthropic
            // answer block (the server notes it as lossy).
            StreamEvent::Media { source } => {
                if !super::from_model::anthropic_answer_media(source) {
                    return;
                }
                let source = match source {
                    MediaSource::Base64 { media_type, data } => {
                        ImageSourceOut::Base64 { media_type, data }
                    }
                    MediaSource::Url { url } => ImageSourceOut::Url { url },
                };
                self.before_content(out);
                self.close_block(out);
                self.open_block(BlockStartOut::Image { source }, OpenBlockOut::Text, out);
                self.close_block(out);
            }
            StreamEvent::Usage(u) => match &mut self.usage {
                Some(existing) => existing.merge(u),
                None => self.usage = Some(*u),
            },
            StreamEvent::Dropped { .. } => {}
            StreamEvent::StopSequence { sequence } => self.stop_sequence = Some(sequence.clone()),
            StreamEvent::Finish { reason } => self.finish = Some(reason.clone()),
        }
    }

    /// Frames that close a successful stream: open blocks, `message_delta` (stop reason and the
    /// final usage) and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.before_content(out);
        self.close_block(out);
        self.finished = true;
        let has_tool_calls = !self.tools.is_empty();
        let (stop_reason, stop_sequence) = stop_reason_and_sequence(
            self.finish.as_ref(),
            self.stop_sequence.as_deref(),
            has_tool_calls,
        );
        let usage = usage_from_model(&self.usage.unwrap_or_default());
        out.push(
            EventOut::MessageDelta {
                delta: MessageDeltaOut {
                    stop_reason,
                    stop_sequence,
                },
                usage,
            }
            .frame(),
        );
        out.push(EventOut::MessageStop.frame());
    }

    /// An `error` event reporting a failure after streaming began; nothing follows it.
    pub fn error(&mut self, kind: ErrorKind, message: &str, out: &mut Vec<Bytes>) {
        self.finished = true;
        out.push(
            EventOut::Error {
                error: ErrorOut {
                    kind: error_type(kind),
                    message,
                },
            }
            .frame(),
        );
    }

    fn ensure_started(&mut self, out: &mut Vec<Bytes>) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let usage = self.usage.map(|u| usage_from_model(&u)).unwrap_or_default();
        let message = MessageOut {
            id: &self.id,
            kind: "message",
            role: "assistant",
            content: [],
            model: &self.model,
            stop_reason: None,
            stop_sequence: None,
            usage: WireUsage {
                output_tokens: 0,
                ..usage
            },
        };
        out.push(EventOut::MessageStart { message }.frame());
    }

    /// Non-tool content is coming: every tool block is finished first (blocks cannot
    /// interleave), waiting calls included.
    fn before_content(&mut self, out: &mut Vec<Bytes>) {
        self.ensure_started(out);
        if matches!(self.open, Some(OpenBlockOut::Tool(_))) {
            self.close_block(out);
        }
        while let Some(pos) = self
            .tools
            .iter()
            .position(|t| matches!(t.state, ToolState::Waiting { .. }))
        {
            self.open_tool(pos, out);
            self.close_block(out);
        }
    }

    /// Makes `kind` the open block (text or thinking), closing whatever else is open.
    fn enter(&mut self, kind: OpenBlockOut, out: &mut Vec<Bytes>) {
        self.before_content(out);
        if self.open == Some(kind) {
            return;
        }
        self.close_block(out);
        let start = match kind {
            OpenBlockOut::Text => BlockStartOut::Text { text: "" },
            _ => BlockStartOut::Thinking {
                thinking: "",
                signature: "",
            },
        };
        self.open_block(start, kind, out);
    }

    /// A signature ends the open thinking block (or an empty one made for it).
    fn sign_thinking(&mut self, signature: &str, out: &mut Vec<Bytes>) {
        self.enter(OpenBlockOut::Thinking, out);
        self.delta(DeltaOut::SignatureDelta { signature }, out);
        self.close_block(out);
    }

    fn open_block(&mut self, start: BlockStartOut<'_>, kind: OpenBlockOut, out: &mut Vec<Bytes>) {
        out.push(
            EventOut::ContentBlockStart {
                index: self.block_index,
                content_block: start,
            }
            .frame(),
        );
        self.open = Some(kind);
        self.text_written = false;
    }

    fn delta(&self, delta: DeltaOut<'_>, out: &mut Vec<Bytes>) {
        out.push(
            EventOut::ContentBlockDelta {
                index: self.block_index,
                delta,
            }
            .frame(),
        );
    }

    fn close_block(&mut self, out: &mut Vec<Bytes>) {
        let Some(open) = self.open.take() else {
            return;
        };
        out.push(
            EventOut::ContentBlockStop {
                index: self.block_index,
            }
            .frame(),
        );
        self.block_index += 1;
        if let OpenBlockOut::Tool(index) = open
            && let Some(slot) = self.tools.iter_mut().rev().find(|t| t.index == index)
        {
            slot.state = ToolState::Closed;
        }
    }

    /// Opens waiting tool calls in order until one stays open (not yet ended).
    fn open_waiting_tools(&mut self, out: &mut Vec<Bytes>) {
        while self.open.is_none() {
            let Some(pos) = self
                .tools
                .iter()
                .position(|t| matches!(t.state, ToolState::Waiting { .. }))
            else {
                return;
            };
            if self.open_tool(pos, out) {
                self.close_block(out);
            }
        }
    }

    /// Opens the tool call at `pos` (after a thinking block carrying its provider data, if
    /// any) and replays its buffered arguments. Returns whether the call had already ended.
    fn open_tool(&mut self, pos: usize, out: &mut Vec<Bytes>) -> bool {
        let (ended, provider_data) = match self.tools.get_mut(pos) {
            Some(slot) => (
                matches!(slot.state, ToolState::Waiting { ended: true }),
                slot.provider_data.take(),
            ),
            None => return true,
        };
        if let Some(data) = provider_data {
            // Directly, not via `enter`: that would try to open this waiting call again.
            self.close_block(out);
            let start = BlockStartOut::Thinking {
                thinking: "",
                signature: "",
            };
            self.open_block(start, OpenBlockOut::Thinking, out);
            let signature = sealed_call_data(&data, Some(&self.model), self.sealer.as_ref());
            self.delta(
                DeltaOut::SignatureDelta {
                    signature: &signature,
                },
                out,
            );
            self.close_block(out);
        }
        let Some(slot) = self.tools.get_mut(pos) else {
            return true;
        };
        slot.state = ToolState::Open;
        let buffered = std::mem::take(&mut slot.buffered);
        let start = BlockStartOut::ToolUse {
            id: &slot.id,
            name: &slot.name,
            input: Map::new(),
        };
        out.push(
            EventOut::ContentBlockStart {
                index: self.block_index,
                content_block: start,
            }
            .frame(),
        );
        self.open = Some(OpenBlockOut::Tool(slot.index));
        if !buffered.is_empty() {
            self.delta(
                DeltaOut::InputJsonDelta {
                    partial_json: &buffered,
                },
                out,
            );
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai_responses::opaque::TestSealer;
    use serde_json::json;

    fn sealer() -> Arc<dyn Sealer> {
        Arc::new(TestSealer(2))
    }

    fn decode_all(body: &str) -> Result<Vec<StreamEvent>, BackendError> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(5) {
            d.feed(piece, &mut out)?;
        }
        d.finish(&mut out)?;
        Ok(out)
    }

    fn sse(events: &[Value]) -> String {
        events
            .iter()
            .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
            .collect()
    }

    /// (event name, data) of each rendered frame.
    #[test]
    fn written_frames_are_the_bytes_serde_json_writes() {
        let text = "line\n\"quoted\"\t\u{1}é🦀";
        let citation = json!({"type": "web_search_result_location", "url": "u"});
        let events = [
            EventOut::ContentBlockDelta {
                index: 0,
                delta: DeltaOut::TextDelta { text },
            },
            EventOut::ContentBlockDelta {
                index: 7,
                delta: DeltaOut::ThinkingDelta { thinking: text },
            },
            EventOut::ContentBlockDelta {
                index: 1,
                delta: DeltaOut::SignatureDelta { signature: "c2ln" },
            },
            EventOut::ContentBlockDelta {
                index: 2,
                delta: DeltaOut::InputJsonDelta {
                    partial_json: "{\"a\":",
                },
            },
            EventOut::ContentBlockDelta {
                index: 3,
                delta: DeltaOut::TextDelta { text: "" },
            },
            EventOut::ContentBlockDelta {
                index: 4,
                delta: DeltaOut::CitationsDelta {
                    citation: &citation,
                },
            },
            EventOut::ContentBlockStop { index: u32::MAX },
            EventOut::MessageStop,
        ];
        for event in events {
            assert_eq!(event.frame(), event.serialized());
        }
    }

    fn frames(out: &[Bytes]) -> Vec<(String, Value)> {
        out.iter()
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                let (event, data) = s.trim_end().split_once('\n').unwrap();
                let event = event.strip_prefix("event: ").unwrap().to_owned();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], event.as_str(), "event name matches data type");
                (event, data)
            })
            .collect()
    }

    #[test]
    fn decodes_tool_use_with_up_front_input_and_buffers_finish_after_usage() {
        let body = sse(&[
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ]);
        let events = decode_all(&body).unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: Some("msg_1".into()),
                    model: Some("claude".into())
                },
                StreamEvent::Usage(Usage {
                    input_tokens: 3,
                    output_tokens: 1,
                    ..Usage::default()
                }),
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "toolu_1".into(),
                    name: "f".into(),
                    provider_data: None
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"a\":1}".into()
                },
                StreamEvent::ToolCallEnd { index: 0 },
                StreamEvent::Usage(Usage {
                    input_tokens: 3,
                    output_tokens: 9,
                    ..Usage::default()
                }),
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls
                },
            ]
        );
    }

    #[test]
    fn upstream_signatures_are_the_upstreams_own_even_with_the_proxys_prefix() {
        // A chained proxy's sealed state is that upstream's business: passed on unchanged.
        let body = sse(&[
            json!({"type": "message_start", "message": {"id": "m", "model": "x"}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "llmproxy.v1.abc"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
            json!({"type": "message_stop"}),
        ]);
        let events = decode_all(&body).unwrap();
        assert!(events.contains(&StreamEvent::ReasoningSignature {
            signature: "llmproxy.v1.abc".into()
        }));
        assert!(events.contains(&StreamEvent::ToolCallStart {
            index: 0,
            id: "t".into(),
            name: "f".into(),
            provider_data: None
        }));
    }

    #[test]
    fn error_event_and_truncation_are_errors() {
        let err = decode_all(&sse(&[
            json!({"type": "message_start", "message": {"id": "m", "model": "x"}}),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]))
        .unwrap_err();
        assert_eq!(
            (err.kind, err.upstream_status, err.message.as_str()),
            (ErrorKind::Unavailable, Some(529), "Overloaded")
        );
        let err = decode_all(&sse(&[
            json!({"type": "message_start", "message": {"id": "m", "model": "x"}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "cut"}}),
        ]))
        .unwrap_err();
        assert!(err.retryable && err.message.contains("ended"), "{err:?}");
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        d.feed(
            sse(&[json!({"type": "message_start", "message": {"id": "m", "model": "x"}})])
                .as_bytes(),
            &mut out,
        )
        .unwrap();
        assert!(!d.is_finished());
        d.feed(sse(&[json!({"type": "message_stop"})]).as_bytes(), &mut out)
            .unwrap();
        assert!(d.is_finished(), "message_stop ends the stream");
        assert!(decode_all("data: {not json}\n\n").is_err());
    }

    #[test]
    fn the_matched_stop_sequence_travels_through_and_back() {
        let body = sse(&[
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "one two"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "THREE"}, "usage": {"output_tokens": 2}}),
            json!({"type": "message_stop"}),
        ]);
        let events = decode_all(&body).unwrap();
        let n = events.len();
        assert_eq!(
            events[n - 2..],
            [
                StreamEvent::StopSequence {
                    sequence: "THREE".into()
                },
                StreamEvent::Finish {
                    reason: FinishReason::Stop
                }
            ]
        );
        let mut r = EventRenderer::new("abc", "m", sealer());
        let mut out = Vec::new();
        for e in &events {
            r.render(e, &mut out);
        }
        r.finish(&mut out);
        let f = frames(&out);
        let delta = f.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            delta.1["delta"],
            json!({"stop_reason": "stop_sequence", "stop_sequence": "THREE"})
        );
    }

    #[test]
    fn renders_text_with_late_usage_in_message_delta() {
        let mut r = EventRenderer::new("abc", "m", sealer());
        let mut out = Vec::new();
        for e in [
            StreamEvent::Start {
                id: None,
                model: Some("claude-x".into()),
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
            StreamEvent::Usage(Usage {
                input_tokens: 12,
                output_tokens: 2,
                cache_read_tokens: Some(10),
                ..Usage::default()
            }),
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let f = frames(&out);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(f[0].1["message"]["id"], "msg_abc");
        assert_eq!(f[0].1["message"]["model"], "claude-x");
        assert_eq!(
            f[0].1["message"]["usage"],
            json!({"input_tokens": 0, "output_tokens": 0})
        );
        assert_eq!(f[1].1["content_block"], json!({"type": "text", "text": ""}));
        assert_eq!(f[3].1["delta"], json!({"type": "text_delta", "text": "lo"}));
        assert_eq!(
            f[5].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 2, "output_tokens": 2, "cache_read_input_tokens": 10}})
        );
    }

    #[test]
    fn renders_thinking_signature_redacted_and_tool_provider_data() {
        let mut r = EventRenderer::new("msg_1", "m", sealer());
        let mut out = Vec::new();
        let data = json!({"g": 1});
        for e in [
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                ..Usage::default()
            }),
            StreamEvent::ReasoningDelta {
                text: "think".into(),
            },
            StreamEvent::ReasoningSignature {
                signature: "sig".into(),
            },
            StreamEvent::ReasoningRedacted { data: "enc".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
                provider_data: Some(data.clone()),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let f: Vec<Value> = frames(&out).into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            f[0]["message"]["usage"]["input_tokens"], 5,
            "usage known before content is in message_start"
        );
        let expected = vec![
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "enc"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "signature_delta", "signature": sealed_call_data(&data, Some("m"), &TestSealer(2))}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "c", "name": "f", "input": {}}}),
            json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 3}),
        ];
        assert_eq!(f[1..13], expected[..]);
        assert_eq!(f[13]["delta"]["stop_reason"], "tool_use");
        assert_eq!(f[14]["type"], "message_stop");
    }

    #[test]
    fn a_call_signature_closes_the_unsigned_thinking_block_before_it() {
        let mut r = EventRenderer::new("m", "gemini-2.5-pro", sealer());
        let mut out = Vec::new();
        let data = json!({"google": {"thought_signature": "SIG"}});
        for e in [
            StreamEvent::ReasoningDelta {
                text: "I should look it up.".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c".into(),
                name: "f".into(),
                provider_data: Some(data.clone()),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let f: Vec<Value> = frames(&out).into_iter().map(|(_, v)| v).collect();
        let expected = [
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I should look it up."}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": sealed_call_data(&data, Some("gemini-2.5-pro"), &TestSealer(2))}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "c", "name": "f", "input": {}}}),
        ];
        assert_eq!(f[1..6], expected[..]);
    }

    #[test]
    fn interleaved_tool_calls_are_serialized_into_whole_blocks() {
        let mut r = EventRenderer::new("m", "m", sealer());
        let mut out = Vec::new();
        for e in [
            StreamEvent::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "f".into(),
                provider_data: None,
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "g".into(),
                provider_data: None,
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{\"y\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"x\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "2}".into(),
            },
            StreamEvent::ToolCallEnd { index: 1 },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "1}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let f: Vec<Value> = frames(&out).into_iter().map(|(_, v)| v).collect();
        let kinds: Vec<String> = f
            .iter()
            .map(|v| {
                format!(
                    "{}{}",
                    v["type"].as_str().unwrap(),
                    v.get("index").map(|i| i.to_string()).unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start0",
                "content_block_delta0",
                "content_block_delta0",
                "content_block_stop0",
                "content_block_start1",
                "content_block_delta1",
                "content_block_stop1",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(f[5]["content_block"]["id"], "b");
        assert_eq!(f[6]["delta"]["partial_json"], "{\"y\":2}");
    }

    #[test]
    fn text_after_open_tool_calls_closes_them_first_and_errors_render_the_envelope() {
        let mut r = EventRenderer::new("m", "m", sealer());
        let mut out = Vec::new();
        for e in [
            StreamEvent::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "f".into(),
                provider_data: None,
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "g".into(),
                provider_data: None,
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into(),
            },
            StreamEvent::TextDelta { text: "x".into() },
        ] {
            r.render(&e, &mut out);
        }
        r.error(ErrorKind::Unavailable, "upstream failed", &mut out);
        r.finish(&mut out);
        let f: Vec<Value> = frames(&out).into_iter().map(|(_, v)| v).collect();
        let types: Vec<&str> = f.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            f[8],
            json!({"type": "error", "error": {"type": "api_error", "message": "upstream failed"}})
        );
        assert_eq!(
            &ping_frame()[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
    }

    #[test]
    fn generated_images_are_image_blocks_and_audio_is_left_out() {
        let mut r = EventRenderer::new("abc", "m", sealer());
        let mut out = Vec::new();
        for e in [
            StreamEvent::TextDelta {
                text: "here:".into(),
            },
            StreamEvent::Media {
                source: MediaSource::Base64 {
                    media_type: "image/png".into(),
                    data: "iVBO".into(),
                },
            },
            StreamEvent::Media {
                source: MediaSource::Base64 {
                    media_type: "audio/wav".into(),
                    data: "UklG".into(),
                },
            },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let f = frames(&out);
        let starts: Vec<&Value> = f
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(starts.len(), 2, "{f:?}");
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(
            starts[1]["content_block"],
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}})
        );
        let stops = f.iter().filter(|(n, _)| n == "content_block_stop").count();
        assert_eq!(stops, 2, "every block is closed");
    }

    #[test]
    fn citations_are_rendered_as_citations_deltas_leading_their_blocks() {
        let cite = |n: u32| StreamEvent::Citation {
            citation: json!({"type": "char_location", "cited_text": "c", "document_index": n}),
        };
        let mut r = EventRenderer::new("msg_1", "m", sealer());
        let mut out = Vec::new();
        for e in [
            cite(0),
            StreamEvent::TextDelta { text: "A".into() },
            cite(1),
            StreamEvent::TextDelta { text: "B".into() },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let blocks: Vec<(u64, Value)> = frames(&out)
            .into_iter()
            .filter(|(name, _)| name == "content_block_delta")
            .map(|(_, d)| (d["index"].as_u64().unwrap(), d["delta"].clone()))
            .collect();
        assert_eq!(
            blocks,
            vec![
                (
                    0,
                    json!({"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "c", "document_index": 0}})
                ),
                (0, json!({"type": "text_delta", "text": "A"})),
                (
                    1,
                    json!({"type": "citations_delta", "citation": {"type": "char_location", "cited_text": "c", "document_index": 1}})
                ),
                (1, json!({"type": "text_delta", "text": "B"})),
            ]
        );
    }
}
