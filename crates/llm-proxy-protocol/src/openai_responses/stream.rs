//! Renders canonical events as OpenAI Responses stream events (`response.created` ...
//! `response.completed`), each with its `sequence_number`, while building the response object
//! the final event carries. With frames off the same state machine builds a non-streamed
//! response, so both shapes come from one code path.
//! A reasoning item is sent whole when its block ends, so its id never changes between
//! `output_item.added` and `output_item.done` (an OpenAI Responses upstream's id is known only then).

use bytes::Bytes;
use llm_proxy_api::model::{ChatResponse, FinishReason, Part, Usage};
use llm_proxy_api::stream::StreamEvent;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::from_model::usage_from_model;
use std::borrow::Cow;
use std::sync::Arc;

use super::object::{Echo, ObjectView, ResponseError};
use super::opaque::{ReasoningState, Sealer, UpstreamReasoning};
use super::to_model::ToolKinds;
use crate::citations::{CitationSpans, UrlCitation};
use crate::json_out::{self, WriteJson};
use crate::sse::event_frame;

/// What a response object says about itself beyond its output.
#[derive(Debug, Clone, Default)]
pub struct ResponseContext {
    /// `resp_...` id.
    pub id: String,
    /// Model that answers (the upstream's name replaces it once known).
    pub model: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Kinds of the offered tools (custom, namespaced).
    pub tools: ToolKinds,
    /// Request fields the response repeats.
    pub echo: Echo,
}

#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
        /// `url_citation` annotations of the web citations on the text.
        annotations: Vec<Value>,
        /// Token logprob entries of the text.
        logprobs: Vec<Value>,
    },
    Reasoning {
        id: String,
        text: String,
        state: ReasoningState,
        /// `encrypted_content`, sealed once when the item is done (its state no longer changes).
        sealed: Option<Option<String>>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        custom: bool,
        done: bool,
    },
}

#[derive(Serialize)]
struct DeltaOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<u32>,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<&'a [Value]>,
}

/// A delta event written straight to bytes: one per streamed piece of text or arguments.
/// Byte for byte what `serde_json` writes for the derived `Serialize` (tested below).
impl WriteJson for DeltaOut<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut f = json_out::Fields::new(out);
        f.string("type", self.kind);
        f.uint("sequence_number", self.sequence_number);
        f.string("item_id", self.item_id);
        f.uint("output_index", self.output_index as u64);
        f.opt_uint("content_index", self.content_index.map(u64::from));
        f.opt_uint("summary_index", self.summary_index.map(u64::from));
        f.string("delta", self.delta);
        f.opt_value("logprobs", self.logprobs);
        f.close();
    }
}

/// Renders events as Responses SSE frames (or, for WebSocket mode, as bare JSON objects)
/// and keeps the response they build.
#[derive(Debug)]
pub struct EventRenderer {
    /// Boxed: a renderer is held across awaits (in a streaming response's future), and the
    /// context is the largest part of it.
    ctx: Box<ResponseContext>,
    sealer: Arc<dyn Sealer>,
    frames: bool,
    /// Frames are `event:`/`data:` SSE frames; otherwise each is one event's JSON object.
    sse: bool,
    seq: u64,
    started: bool,
    finished: bool,
    items: Vec<Item>,
    /// Index of the message or reasoning item still taking deltas.
    open: Option<usize>,
    /// Web citations of the open message waiting for the end of the text they back.
    citations: CitationSpans,
    /// Logprobs for the next `output_text.delta` frame.
    pending_logprobs: Vec<Value>,
    /// Stream index of each tool call -> item index.
    calls: Vec<(u32, usize)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    status: &'static str,
    error: Option<ResponseError>,
}

impl EventRenderer {
    /// A renderer that writes frames; `sealer` seals reasoning state into `encrypted_content`.
    pub fn new(ctx: impl Into<Box<ResponseContext>>, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            ctx: ctx.into(),
            sealer,
            frames: true,
            sse: true,
            seq: 0,
            started: false,
            finished: false,
            items: Vec::new(),
            open: None,
            citations: CitationSpans::default(),
            pending_logprobs: Vec::new(),
            calls: Vec::new(),
            usage: None,
            finish: None,
            status: "in_progress",
            error: None,
        }
    }

    /// A renderer whose frames are each one event's JSON object, without SSE framing
    /// (WebSocket mode sends each as one text message).
    pub fn json(ctx: impl Into<Box<ResponseContext>>, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            sse: false,
            ..Self::new(ctx, sealer)
        }
    }

    /// A renderer that only builds the response object (non-streamed answers).
    pub fn collecting(ctx: impl Into<Box<ResponseContext>>, sealer: Arc<dyn Sealer>) -> Self {
        Self {
            frames: false,
            ..Self::new(ctx, sealer)
        }
    }

    /// A collected answer of text alone (every part text without citations), finished: what
    /// replaying its events builds (one message item holding all the text, its logprobs, the
    /// usage and the finish reason), without building the events.
    pub(super) fn text_answer(
        ctx: Box<ResponseContext>,
        sealer: Arc<dyn Sealer>,
        response: ChatResponse,
    ) -> Self {
        let mut renderer = Self::collecting(ctx, sealer);
        if !response.model.is_empty() {
            renderer.ctx.model = response.model;
        }
        let mut texts = response.content.into_iter().filter_map(|part| match part {
            Part::Text(t) if !t.text.is_empty() => Some(t.text),
            _ => None,
        });
        if let Some(mut text) = texts.next() {
            texts.for_each(|more| text.push_str(&more));
            let id = renderer.new_item_id("msg");
            renderer.items.push(Item::Message {
                id,
                text,
                annotations: Vec::new(),
                logprobs: response.logprobs,
            });
        }
        renderer.usage = response.usage;
        renderer.finish = response.finish_reason;
        renderer.finish(&mut Vec::new());
        renderer
    }

    /// Renders one event.
    pub fn render(&mut self, event: &StreamEvent, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.ensure_started(out);
        match event {
            // Only Anthropic answers say which stop sequence matched.
            StreamEvent::StopSequence { .. } => {}
            StreamEvent::Start { model, .. } => {
                if let Some(m) = model.as_deref().filter(|m| !m.is_empty()) {
                    m.clone_into(&mut self.ctx.model);
                }
            }
            StreamEvent::TextDelta { text } => {
                if text.is_empty() {
                    return;
                }
                let i = self.open_message(out);
                if let Some(Item::Message {
                    text: t, logprobs, ..
                }) = self.items.get_mut(i)
                {
                    t.push_str(text);
                    logprobs.extend(self.pending_logprobs.iter().cloned());
                }
                if !self.frames {
                    self.pending_logprobs.clear();
                }
                // Otherwise the delta frame takes them.
                self.citations.text(text);
                self.delta("response.output_text.delta", i, Some(0), None, text, out);
            }
            StreamEvent::Citation { citation } => {
                let i = self.open_message(out);
                let done = self.citations.citation(citation);
                self.annotate(i, done, out);
            }
            // They lead the text they score: kept for the next text delta.
            StreamEvent::Logprobs { content } => {
                self.pending_logprobs.extend(content.iter().cloned());
            }
            StreamEvent::ReasoningDelta { text } => {
                if text.is_empty() {
                    return;
                }
                let i = self.open_reasoning(out);
                if let Some(Item::Reasoning { text: t, .. }) = self.items.get_mut(i) {
                    t.push_str(text);
                }
            }
            StreamEvent::ReasoningSignature { signature } => {
                let i = self.open_reasoning(out);
                if let Some(Item::Reasoning { state, .. }) = self.items.get_mut(i) {
                    state
                        .signature
                        .get_or_insert_with(String::new)
                        .push_str(signature);
                }
                self.close_open(out);
            }
            StreamEvent::ReasoningProviderData { data } => {
                if let Some(upstream) = UpstreamReasoning::of_provider_data(data) {
                    self.upstream_reasoning(upstream, out);
                    return;
                }
                let i = self.open_reasoning(out);
                if let Some(Item::Reasoning { state, .. }) = self.items.get_mut(i) {
                    state.provider_data = Some(data.clone());
                }
            }
            StreamEvent::ReasoningRedacted { data } => {
                self.close_open(out);
                let state = ReasoningState {
                    redacted: Some(data.clone()),
                    ..ReasoningState::default()
                };
                self.whole_reasoning(state, out);
            }
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                self.close_open(out);
                if let Some(data) = provider_data {
                    let state = ReasoningState {
                        call_provider_data: Some(data.clone()),
                        ..ReasoningState::default()
                    };
                    self.whole_reasoning(state, out);
                }
                let i = self.items.len();
                let custom = self.ctx.tools.is_custom(name);
                let prefix = if custom { "ctc" } else { "fc" };
                self.items.push(Item::Call {
                    id: self.new_item_id(prefix),
                    call_id: id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                    custom,
                    done: false,
                });
                self.calls.push((*index, i));
                self.emit_item("response.output_item.added", i, "in_progress", out);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(i) = self.call_item(*index) else {
                    return;
                };
                let custom = match self.items.get_mut(i) {
                    Some(Item::Call {
                        arguments: a,
                        custom,
                        done: false,
                        ..
                    }) => {
                        a.push_str(arguments);
                        *custom
                    }
                    _ => return,
                };
                // A custom tool's input is the `input` string inside the JSON arguments: it is
                // sent whole when the call ends.
                if !custom && !arguments.is_empty() {
                    self.delta(
                        "response.function_call_arguments.delta",
                        i,
                        None,
                        None,
                        arguments,
                        out,
                    );
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                if let Some(i) = self.call_item(*index) {
                    self.close_call(i, out);
                }
            }
            StreamEvent::Usage(u) => match &mut self.usage {
                Some(existing) => existing.merge(u),
                None => self.usage = Some(*u),
            },
            StreamEvent::Finish { reason } => self.finish = Some(reason.clone()),
            // No output item carries media the model generated; the server names it in
            // `x-llm-proxy-lossy`.
            StreamEvent::Media { .. } | StreamEvent::Dropped { .. } => {}
        }
    }

    /// Closes every item and sends `response.completed` (or `response.incomplete`).
    pub fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.ensure_started(out);
        self.close_open(out);
        if let Some(i) = self
            .items
            .iter()
            .rposition(|item| matches!(item, Item::Message { .. }))
        {
            self.attach_pending_logprobs(i);
        }
        for i in 0..self.items.len() {
            self.close_call(i, out);
        }
        self.finished = true;
        let (status, event) = match self.finish {
            Some(FinishReason::Length | FinishReason::ContentFilter) => {
                ("incomplete", "response.incomplete")
            }
            _ => ("completed", "response.completed"),
        };
        self.status = status;
        if self.frames {
            self.emit_response(event, out);
        }
    }

    /// Reports a failure after streaming began: an `error` event, then `response.failed`
    /// carrying the error. Nothing follows.
    pub fn error(&mut self, code: &str, message: &str, out: &mut Vec<Bytes>) {
        if self.finished {
            return;
        }
        self.ensure_started(out);
        self.finished = true;
        self.status = "failed";
        for i in 0..self.items.len() {
            self.seal(i);
        }
        self.error = Some(ResponseError {
            code: code.to_owned(),
            message: message.to_owned(),
        });
        self.emit(
            "error",
            json!({"code": code, "message": message, "param": null}),
            out,
        );
        if self.frames {
            self.emit_response("response.failed", out);
        }
    }

    /// The response object's id.
    pub fn response_id(&self) -> &str {
        &self.ctx.id
    }

    /// The response object in its current state (complete after `finish`), as a `Value`.
    pub fn response_object(&self) -> Value {
        serde_json::to_value(self.object_view(None)).unwrap_or(Value::Null)
    }

    /// The response object in its current state as JSON bytes, with the SDKs' `output_text`
    /// (the concatenated message text) when `with_output_text`.
    pub fn response_json(&self, with_output_text: bool) -> Vec<u8> {
        let text = with_output_text.then(|| self.output_text());
        let view = self.object_view(None);
        let mut out = Vec::with_capacity(view.size_hint(text.as_deref().map_or(0, str::len)));
        view.write(&mut out, text.as_deref());
        out
    }

    /// The response object as JSON bytes with `output_text`, and where that field is in
    /// them: the bytes without that range are [`EventRenderer::response_json`]`(false)`.
    pub fn response_json_marking_text(&self) -> (Vec<u8>, std::ops::Range<usize>) {
        self.object_view(None).to_vec_marking(&self.output_text())
    }

    /// The output items (complete after `finish`), as a client hands them back.
    pub fn output_items(&self) -> Vec<Value> {
        (0..self.items.len())
            .filter_map(|i| serde_json::to_value(self.item_view(i, "completed")).ok())
            .collect()
    }

    fn object_view<'a>(&'a self, output_text: Option<&'a str>) -> ObjectView<'a, OutputView<'a>> {
        let done = self.status != "in_progress";
        let incomplete = match (self.status, &self.finish) {
            ("incomplete", Some(FinishReason::ContentFilter)) => Some("content_filter"),
            ("incomplete", _) => Some("max_output_tokens"),
            _ => None,
        };
        ObjectView {
            id: &self.ctx.id,
            created_at: self.ctx.created_at,
            model: &self.ctx.model,
            status: self.status,
            error: self.error.as_ref(),
            incomplete,
            echo: &self.ctx.echo,
            output: OutputView {
                renderer: self,
                items: if done { self.items.len() } else { 0 },
            },
            output_text,
            usage: done.then(|| usage_from_model(&self.usage.unwrap_or_default())),
        }
    }

    /// Concatenated text of the message items (the SDKs' `output_text`), borrowed when one
    /// item holds it all.
    pub fn output_text(&self) -> Cow<'_, str> {
        let mut texts = self.items.iter().filter_map(|item| match item {
            Item::Message { text, .. } => Some(text.as_str()),
            _ => None,
        });
        let first = texts.next().unwrap_or_default();
        match texts.next() {
            None => Cow::Borrowed(first),
            Some(second) => {
                let mut all = format!("{first}{second}");
                texts.for_each(|t| all.push_str(t));
                Cow::Owned(all)
            }
        }
    }

    fn ensure_started(&mut self, out: &mut Vec<Bytes>) {
        if std::mem::replace(&mut self.started, true) || !self.frames {
            return;
        }
        self.emit_response("response.created", out);
        self.emit_response("response.in_progress", out);
    }

    fn new_item_id(&self, prefix: &str) -> String {
        let suffix = self.ctx.id.strip_prefix("resp_").unwrap_or(&self.ctx.id);
        let mut index = itoa::Buffer::new();
        let index = index.format(self.items.len());
        let mut id = String::with_capacity(prefix.len() + suffix.len() + index.len() + 2);
        for piece in [prefix, "_", suffix, "_", index] {
            id.push_str(piece);
        }
        id
    }

    fn item_id(&self, i: usize) -> &str {
        match self.items.get(i) {
            Some(Item::Message { id, .. } | Item::Reasoning { id, .. } | Item::Call { id, .. }) => {
                id
            }
            None => "",
        }
    }

    fn call_item(&self, index: u32) -> Option<usize> {
        self.calls
            .iter()
            .rev()
            .find(|(stream_index, _)| *stream_index == index)
            .map(|(_, i)| *i)
    }

    /// The open message item, opening one (and closing open reasoning) if needed.
    fn open_message(&mut self, out: &mut Vec<Bytes>) -> usize {
        if let Some(i) = self.open
            && matches!(self.items.get(i), Some(Item::Message { .. }))
        {
            return i;
        }
        self.close_open(out);
        let i = self.items.len();
        self.items.push(Item::Message {
            id: self.new_item_id("msg"),
            text: String::new(),
            annotations: Vec::new(),
            logprobs: Vec::new(),
        });
        self.citations = CitationSpans::default();
        self.open = Some(i);
        self.emit_item("response.output_item.added", i, "in_progress", out);
        if !self.frames {
            return i;
        }
        let id = self.item_id(i).to_owned();
        self.emit(
            "response.content_part.added",
            json!({"item_id": id, "output_index": i, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
            out,
        );
        i
    }

    /// The open reasoning item still taking text (unsigned, not redacted), opening one if needed.
    /// A reasoning item is held back whole (`output_item.added`, its summary, `output_item.done`
    /// all come when the block closes): only its end says whether it is an OpenAI Responses
    /// upstream's item, whose id it must carry from `output_item.added` on. The renderer cannot
    /// tell upstreams apart earlier, so streamed thinking of other upstreams also arrives when
    /// its block ends.
    fn open_reasoning(&mut self, out: &mut Vec<Bytes>) -> usize {
        if let Some(i) = self.open
            && let Some(Item::Reasoning { state, .. }) = self.items.get(i)
            && state.signature.is_none()
            && state.redacted.is_none()
        {
            return i;
        }
        self.close_open(out);
        let i = self.items.len();
        self.items.push(Item::Reasoning {
            id: self.new_item_id("rs"),
            text: String::new(),
            state: ReasoningState::default(),
            sealed: None,
        });
        self.open = Some(i);
        i
    }

    /// Reasoning of an OpenAI Responses upstream: it keeps the upstream's item id and
    /// `encrypted_content`. Data for another upstream item than the open one starts a new item.
    fn upstream_reasoning(&mut self, upstream: UpstreamReasoning, out: &mut Vec<Bytes>) {
        let open = self.open.filter(|&i| {
            matches!(self.items.get(i), Some(Item::Reasoning { state, .. })
            if state.signature.is_none() && state.redacted.is_none()
                && match (state.upstream().and_then(|u| u.id), &upstream.id) {
                    (Some(a), Some(b)) => a == *b,
                    _ => true,
                })
        });
        let i = match open {
            Some(i) => i,
            None => {
                self.close_open(out);
                let i = self.items.len();
                self.items.push(Item::Reasoning {
                    id: upstream
                        .id
                        .clone()
                        .unwrap_or_else(|| self.new_item_id("rs")),
                    text: String::new(),
                    state: ReasoningState::default(),
                    sealed: None,
                });
                self.open = Some(i);
                i
            }
        };
        if let Some(Item::Reasoning { id, state, .. }) = self.items.get_mut(i) {
            let known = state.upstream().unwrap_or_default();
            let merged = UpstreamReasoning {
                id: upstream.id.or(known.id),
                encrypted_content: upstream.encrypted_content.or(known.encrypted_content),
            };
            // The item takes the upstream's id, which the client hands back. Canonical streams
            // give provider data after the reasoning text (it closes the block); nothing of the
            // item was sent yet, so every event of it names the upstream's id.
            if let Some(upstream_id) = &merged.id {
                upstream_id.clone_into(id);
            }
            state.provider_data = Some(merged.to_provider_data());
        }
    }

    /// A reasoning item that is complete at once (redacted reasoning, a call's provider data).
    fn whole_reasoning(&mut self, state: ReasoningState, out: &mut Vec<Bytes>) {
        let i = self.items.len();
        self.items.push(Item::Reasoning {
            id: self.new_item_id("rs"),
            text: String::new(),
            state,
            sealed: None,
        });
        self.seal(i);
        self.emit_item("response.output_item.added", i, "in_progress", out);
        self.emit_item("response.output_item.done", i, "completed", out);
    }

    fn close_open(&mut self, out: &mut Vec<Bytes>) {
        let Some(i) = self.open.take() else {
            return;
        };
        if matches!(self.items.get(i), Some(Item::Message { .. })) {
            let done = self.citations.flush();
            self.annotate(i, done, out);
            self.attach_pending_logprobs(i);
        }
        self.seal(i);
        if !self.frames {
            return;
        }
        let id = self.item_id(i).to_owned();
        match self.items.get(i) {
            Some(Item::Message {
                text,
                annotations,
                logprobs,
                ..
            }) => {
                let (text, annotations, logprobs) =
                    (text.clone(), annotations.clone(), logprobs.clone());
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0, "text": text, "logprobs": logprobs}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": i, "content_index": 0,
                           "part": {"type": "output_text", "text": text, "annotations": annotations, "logprobs": logprobs}}),
                    out,
                );
            }
            Some(Item::Reasoning { text, .. }) => {
                // Held back until now (see `open_reasoning`): announced with its final id.
                let text = text.clone();
                self.emit_item("response.output_item.added", i, "in_progress", out);
                if text.is_empty() {
                    self.emit_item("response.output_item.done", i, "completed", out);
                    return;
                }
                self.emit(
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": i, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                    out,
                );
                self.delta(
                    "response.reasoning_summary_text.delta",
                    i,
                    None,
                    Some(0),
                    &text,
                    out,
                );
                self.emit(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": i, "summary_index": 0, "text": text}),
                    out,
                );
                self.emit(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": i, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                    out,
                );
            }
            _ => {}
        }
        self.emit_item("response.output_item.done", i, "completed", out);
    }

    fn close_call(&mut self, i: usize, out: &mut Vec<Bytes>) {
        let (custom, arguments) = match self.items.get_mut(i) {
            Some(Item::Call {
                done: done @ false,
                custom,
                arguments,
                ..
            }) => {
                *done = true;
                if arguments.trim().is_empty() {
                    "{}".clone_into(arguments);
                }
                (*custom, arguments.clone())
            }
            _ => return,
        };
        if !self.frames {
            return;
        }
        let id = self.item_id(i).to_owned();
        if custom {
            let input = custom_input(&arguments);
            if !input.is_empty() {
                self.delta(
                    "response.custom_tool_call_input.delta",
                    i,
                    None,
                    None,
                    &input,
                    out,
                );
            }
            self.emit(
                "response.custom_tool_call_input.done",
                json!({"item_id": id, "output_index": i, "input": input}),
                out,
            );
        } else {
            self.emit(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": i, "arguments": arguments}),
                out,
            );
        }
        self.emit_item("response.output_item.done", i, "completed", out);
    }

    /// Seals reasoning item `i`'s state into its `encrypted_content`, once: the item is done.
    fn seal(&mut self, i: usize) {
        let sealer = self.sealer.clone();
        if let Some(Item::Reasoning {
            state,
            sealed: sealed @ None,
            ..
        }) = self.items.get_mut(i)
        {
            *sealed = Some(match state.upstream() {
                // The upstream's own reasoning goes back to the client as it came.
                Some(upstream) => upstream.encrypted_content,
                None => state.encode(sealer.as_ref()),
            });
        }
    }

    /// Item `i` as the wire shows it.
    fn item_view(&self, i: usize, status: &'static str) -> ItemView<'_> {
        ItemView {
            renderer: self,
            i,
            status,
        }
    }

    /// Logprobs no text delta took (a whole answer replayed: they come after its text) go to
    /// message `i`.
    fn attach_pending_logprobs(&mut self, i: usize) {
        if self.pending_logprobs.is_empty() {
            return;
        }
        if let Some(Item::Message { logprobs, .. }) = self.items.get_mut(i) {
            logprobs.append(&mut self.pending_logprobs);
        }
    }

    /// Adds web citations to message `i` as `url_citation` annotations, announcing each.
    fn annotate(&mut self, i: usize, cited: Vec<UrlCitation>, out: &mut Vec<Bytes>) {
        for c in cited {
            let annotation = c.responses_annotation();
            let Some(Item::Message { annotations, .. }) = self.items.get_mut(i) else {
                return;
            };
            annotations.push(annotation.clone());
            let index = annotations.len() - 1;
            if self.frames {
                let id = self.item_id(i).to_owned();
                self.emit(
                    "response.output_text.annotation.added",
                    json!({"item_id": id, "output_index": i, "content_index": 0,
                           "annotation_index": index, "annotation": annotation}),
                    out,
                );
            }
        }
    }

    fn delta(
        &mut self,
        kind: &'static str,
        i: usize,
        content_index: Option<u32>,
        summary_index: Option<u32>,
        delta: &str,
        out: &mut Vec<Bytes>,
    ) {
        if !self.frames {
            return;
        }
        let sequence_number = self.next_seq();
        let text_delta = kind == "response.output_text.delta";
        let logprobs = if text_delta {
            std::mem::take(&mut self.pending_logprobs)
        } else {
            Vec::new()
        };
        let frame = DeltaOut {
            kind,
            sequence_number,
            item_id: self.item_id(i),
            output_index: i,
            content_index,
            summary_index,
            delta,
            logprobs: text_delta.then_some(logprobs.as_slice()),
        };
        let mut payload = Vec::with_capacity(128 + delta.len());
        frame.write_json(&mut payload);
        out.push(self.frame(kind, payload));
    }

    /// `output_item.added`/`done` for item `i`, built only when frames are written (keys
    /// sorted, the order `emit` gives a `Value` body).
    fn emit_item(
        &mut self,
        kind: &'static str,
        i: usize,
        status: &'static str,
        out: &mut Vec<Bytes>,
    ) {
        if !self.frames {
            return;
        }
        let sequence_number = self.next_seq();
        let mut payload = Vec::with_capacity(256);
        payload.extend_from_slice(b"{\"item\":");
        self.item_view(i, status).write_json(&mut payload);
        payload.extend_from_slice(b",\"output_index\":");
        json_out::uint(&mut payload, i as u64);
        Self::close_frame(&mut payload, sequence_number, kind);
        out.push(self.frame(kind, payload));
    }

    /// An event carrying the response object in its current state (keys sorted, as above).
    fn emit_response(&mut self, kind: &'static str, out: &mut Vec<Bytes>) {
        if !self.frames {
            return;
        }
        let sequence_number = self.next_seq();
        let view = self.object_view(None);
        let mut payload = Vec::with_capacity(64 + view.size_hint(0));
        payload.extend_from_slice(b"{\"response\":");
        view.write_json(&mut payload);
        Self::close_frame(&mut payload, sequence_number, kind);
        out.push(self.frame(kind, payload));
    }

    /// `,"sequence_number":N,"type":kind}`: the last keys of a frame written by hand.
    fn close_frame(payload: &mut Vec<u8>, sequence_number: u64, kind: &str) {
        payload.extend_from_slice(b",\"sequence_number\":");
        json_out::uint(payload, sequence_number);
        payload.extend_from_slice(b",\"type\":");
        json_out::string(payload, kind);
        payload.push(b'}');
    }

    fn emit(&mut self, kind: &'static str, mut body: Value, out: &mut Vec<Bytes>) {
        if !self.frames {
            return;
        }
        let sequence_number = self.next_seq();
        if let Value::Object(map) = &mut body {
            map.insert("type".into(), Value::from(kind));
            map.insert("sequence_number".into(), Value::from(sequence_number));
        }
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        out.push(self.frame(kind, payload));
    }

    fn frame(&self, kind: &str, payload: Vec<u8>) -> Bytes {
        if self.sse {
            event_frame(kind, &payload)
        } else {
            Bytes::from(payload)
        }
    }

    fn next_seq(&mut self) -> u64 {
        let n = self.seq;
        self.seq += 1;
        n
    }
}

/// The first `items` output items of a renderer, all `completed`.
pub(crate) struct OutputView<'a> {
    renderer: &'a EventRenderer,
    items: usize,
}

impl WriteJson for OutputView<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        json_out::array(out, 0..self.items, |out, i| {
            self.renderer.item_view(i, "completed").write_json(out);
        });
    }
}

/// Output item `i` of a renderer at `status`, keys sorted.
struct ItemView<'a> {
    renderer: &'a EventRenderer,
    i: usize,
    status: &'static str,
}

impl WriteJson for ItemView<'_> {
    /// The item with its keys sorted; an unfinished item (`in_progress`) has no content yet.
    fn write_json(&self, out: &mut Vec<u8>) {
        let done = self.status != "in_progress";
        match self.renderer.items.get(self.i) {
            Some(Item::Message {
                id,
                text,
                annotations,
                logprobs,
            }) => {
                out.extend_from_slice(b"{\"content\":[");
                if done {
                    out.extend_from_slice(b"{\"annotations\":");
                    json_out::value(out, annotations);
                    out.extend_from_slice(b",\"logprobs\":");
                    json_out::value(out, logprobs);
                    out.extend_from_slice(b",\"text\":");
                    json_out::string(out, text);
                    out.extend_from_slice(b",\"type\":\"output_text\"}");
                }
                out.extend_from_slice(b"],\"id\":");
                json_out::string(out, id);
                out.extend_from_slice(b",\"role\":\"assistant\",\"status\":");
                json_out::string(out, self.status);
                out.extend_from_slice(b",\"type\":\"message\"}");
            }
            Some(Item::Reasoning {
                id,
                text,
                state,
                sealed,
            }) => {
                // Sealed when the item was done; sealed here only for a view of an unfinished
                // renderer (`response_object` before `finish`).
                let unsealed;
                let encrypted = match sealed {
                    Some(sealed) => sealed.as_deref(),
                    None if done => {
                        unsealed = match state.upstream() {
                            Some(upstream) => upstream.encrypted_content,
                            None => state.encode(self.renderer.sealer.as_ref()),
                        };
                        unsealed.as_deref()
                    }
                    None => None,
                };
                out.push(b'{');
                if let Some(encrypted) = encrypted.filter(|_| done) {
                    out.extend_from_slice(b"\"encrypted_content\":");
                    json_out::string(out, encrypted);
                    out.push(b',');
                }
                out.extend_from_slice(b"\"id\":");
                json_out::string(out, id);
                out.extend_from_slice(b",\"summary\":[");
                if done && !text.is_empty() {
                    out.extend_from_slice(b"{\"text\":");
                    json_out::string(out, text);
                    out.extend_from_slice(b",\"type\":\"summary_text\"}");
                }
                out.extend_from_slice(b"],\"type\":\"reasoning\"}");
            }
            Some(Item::Call {
                id,
                call_id,
                name,
                arguments,
                custom,
                ..
            }) => {
                let (namespace, name) = self.renderer.ctx.tools.split(name);
                // Keys sorted: a function call's `arguments` come first, a custom call's
                // `input` between `id` and `name`.
                out.push(b'{');
                if !*custom {
                    out.extend_from_slice(b"\"arguments\":");
                    json_out::string(out, if done { arguments } else { "" });
                    out.push(b',');
                }
                out.extend_from_slice(b"\"call_id\":");
                json_out::string(out, call_id);
                out.extend_from_slice(b",\"id\":");
                json_out::string(out, id);
                if *custom {
                    out.extend_from_slice(b",\"input\":");
                    json_out::string(
                        out,
                        &if done {
                            custom_input(arguments)
                        } else {
                            String::new()
                        },
                    );
                }
                out.extend_from_slice(b",\"name\":");
                json_out::string(out, name);
                if let Some(namespace) = namespace {
                    out.extend_from_slice(b",\"namespace\":");
                    json_out::string(out, namespace);
                }
                out.extend_from_slice(b",\"status\":");
                json_out::string(out, self.status);
                out.extend_from_slice(if *custom {
                    b",\"type\":\"custom_tool_call\"}"
                } else {
                    b",\"type\":\"function_call\"}"
                });
            }
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl Serialize for ItemView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_raw().serialize(serializer)
    }
}

/// A custom tool's raw input from the canonical JSON arguments (`{"input": "..."}`); arguments
/// of another shape are passed as they are.
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(map)) => match map.get("input") {
            Some(Value::String(s)) => s.clone(),
            _ if map.is_empty() => String::new(),
            _ => arguments.to_owned(),
        },
        _ => arguments.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_events_are_the_bytes_serde_json_writes() {
        let logprobs = [json!({"token": "a", "logprob": -0.5})];
        let text = "line\n\"quoted\"\t\u{1}é🦀";
        let cases = [
            DeltaOut {
                kind: "response.output_text.delta",
                sequence_number: 4,
                item_id: "msg_\"1\"",
                output_index: 0,
                content_index: Some(0),
                summary_index: None,
                delta: text,
                logprobs: Some(&logprobs),
            },
            DeltaOut {
                kind: "response.reasoning_summary_text.delta",
                sequence_number: u64::MAX,
                item_id: "rs_1",
                output_index: usize::MAX,
                content_index: None,
                summary_index: Some(u32::MAX),
                delta: "",
                logprobs: None,
            },
            DeltaOut {
                kind: "response.output_text.delta",
                sequence_number: 0,
                item_id: "",
                output_index: 2,
                content_index: Some(1),
                summary_index: Some(0),
                delta: "x",
                logprobs: Some(&[]),
            },
        ];
        for case in cases {
            let mut out = Vec::new();
            case.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&case).unwrap()
            );
        }
    }

    fn transcript(mut renderer: EventRenderer) -> Vec<Bytes> {
        let mut out = Vec::new();
        renderer.render(&StreamEvent::TextDelta { text: "hi".into() }, &mut out);
        renderer.finish(&mut out);
        out
    }

    #[test]
    fn json_frames_are_the_sse_frames_data() {
        let ctx = || ResponseContext {
            id: "resp_1".into(),
            model: "m".into(),
            ..ResponseContext::default()
        };
        let sealer =
            || -> Arc<dyn Sealer> { Arc::new(crate::openai_responses::opaque::TestSealer(1)) };
        let sse = transcript(EventRenderer::new(ctx(), sealer()));
        let json = transcript(EventRenderer::json(ctx(), sealer()));
        assert_eq!(sse.len(), json.len());
        for (sse, json) in sse.iter().zip(&json) {
            let value: Value = serde_json::from_slice(json).unwrap();
            let kind = value["type"].as_str().unwrap();
            let text = std::str::from_utf8(sse).unwrap();
            let expected = format!(
                "event: {kind}\ndata: {}\n\n",
                std::str::from_utf8(json).unwrap()
            );
            assert_eq!(text, expected);
        }
        let last: Value = serde_json::from_slice(json.last().unwrap()).unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "hi");
    }

    fn events(frames: &[Bytes]) -> Vec<Value> {
        frames
            .iter()
            .map(|f| serde_json::from_slice(f).unwrap())
            .collect()
    }

    #[test]
    fn upstream_reasoning_item_keeps_one_id_from_added_to_completed() {
        let ctx = ResponseContext {
            id: "resp_1".into(),
            model: "m".into(),
            ..ResponseContext::default()
        };
        let sealer: Arc<dyn Sealer> = Arc::new(crate::openai_responses::opaque::TestSealer(1));
        let mut renderer = EventRenderer::json(ctx, sealer);
        let mut out = Vec::new();
        let upstream = UpstreamReasoning {
            id: Some("rs_up_7".into()),
            encrypted_content: Some("gAAAA-opaque".into()),
        };
        for event in [
            StreamEvent::ReasoningDelta {
                text: "Think".into(),
            },
            StreamEvent::ReasoningDelta {
                text: "ing.".into(),
            },
            StreamEvent::ReasoningProviderData {
                data: upstream.to_provider_data(),
            },
            StreamEvent::TextDelta { text: "hi".into() },
        ] {
            renderer.render(&event, &mut out);
        }
        renderer.finish(&mut out);
        let events = events(&out);
        let seqs: Vec<u64> = events
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let of_item_0: Vec<&Value> = events.iter().filter(|e| e["output_index"] == 0).collect();
        let ids: Vec<&str> = of_item_0
            .iter()
            .map(|e| {
                e.get("item_id")
                    .or_else(|| e["item"].get("id"))
                    .and_then(Value::as_str)
                    .unwrap()
            })
            .collect();
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|&id| id == "rs_up_7"), "{ids:?}");
        let kinds: Vec<&str> = of_item_0
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds.first(), Some(&"response.output_item.added"));
        assert_eq!(kinds.last(), Some(&"response.output_item.done"));
        let deltas: String = of_item_0
            .iter()
            .filter(|e| e["type"] == "response.reasoning_summary_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, "Thinking.");
        let done = of_item_0.last().unwrap();
        assert_eq!(done["item"]["encrypted_content"], "gAAAA-opaque");
        let completed = events.last().unwrap();
        assert_eq!(completed["type"], "response.completed");
        assert_eq!(completed["response"]["output"][0]["id"], "rs_up_7");
    }

    #[test]
    fn logprobs_and_web_citations_reach_the_output_text() {
        let entry = serde_json::json!({"token": "Sky", "logprob": -0.2, "bytes": [83, 107, 121], "top_logprobs": []});
        let web = serde_json::json!({"type": "web_search_result_location", "url": "https://a.example",
            "title": "A", "cited_text": "x", "encrypted_index": "e"});
        let ctx = ResponseContext {
            id: "resp_1".into(),
            model: "m".into(),
            ..ResponseContext::default()
        };
        let mut r = EventRenderer::json(
            ctx,
            Arc::new(crate::openai_responses::opaque::TestSealer(1)),
        );
        let mut out = Vec::new();
        for e in [
            StreamEvent::TextDelta {
                text: "So: ".into(),
            },
            StreamEvent::Citation { citation: web },
            StreamEvent::Logprobs {
                content: vec![entry.clone()],
            },
            StreamEvent::TextDelta { text: "Sky".into() },
        ] {
            r.render(&e, &mut out);
        }
        r.finish(&mut out);
        let frames = events(&out);
        let deltas: Vec<&Value> = frames
            .iter()
            .filter(|f| f["type"] == "response.output_text.delta")
            .collect();
        assert_eq!(deltas[0]["logprobs"], serde_json::json!([]));
        assert_eq!(deltas[1]["logprobs"], serde_json::json!([entry]));
        let annotation = serde_json::json!({"type": "url_citation", "start_index": 4,
            "end_index": 7, "url": "https://a.example", "title": "A"});
        let added: Vec<&Value> = frames
            .iter()
            .filter(|f| f["type"] == "response.output_text.annotation.added")
            .collect();
        assert_eq!(added.len(), 1);
        assert_eq!(added[0]["annotation"], annotation);
        let last = frames.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        let part = &last["response"]["output"][0]["content"][0];
        assert_eq!(part["annotations"], serde_json::json!([annotation]));
        assert_eq!(part["logprobs"], serde_json::json!([entry]));
    }
}
