//! Tool-call repair: tool calls a model wrote as text (see [`super::parse::tool_text`]) become
//! structured tool-call events, so every frontend renders them as real calls. Active only when
//! the request defined tools (and did not forbid them); text that may start a call is held
//! back, at most `buffer_cap` bytes, and everything else passes through unchanged.

use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::FinishReason;
use llm_proxy_api::model::ToolChoice;
use llm_proxy_api::stream::StreamEvent;

use super::parse::tool_text::{Step, TextToolCall, ToolSet, scan};
use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;

/// Default bound on text held while it may still be a tool call.
pub const DEFAULT_BUFFER_CAP: usize = 64 * 1024;

/// The tool-call repair processor.
#[derive(Debug, Clone)]
pub struct ToolCallRepair {
    buffer_cap: usize,
}

impl ToolCallRepair {
    /// Holds at most `buffer_cap` bytes of text that may be a call.
    pub fn new(buffer_cap: usize) -> Self {
        Self { buffer_cap }
    }
}

impl EventProcessor for ToolCallRepair {
    fn name(&self) -> &'static str {
        "tool_call_repair"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, _: &RequestContext, req: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        if req.tools.is_empty() || matches!(req.tool_choice, Some(ToolChoice::None)) {
            return None;
        }
        let tools = ToolSet::new(
            req.tools
                .iter()
                .map(|t| (t.name.clone(), t.parameters.clone())),
        );
        Some(Box::new(Repairing::new(tools, self.buffer_cap)))
    }
}

/// One answer's repair state.
pub struct Repairing {
    tools: ToolSet,
    cap: usize,
    /// Text not yet decided on.
    pending: String,
    /// Whitespace decided to be text, held so none is left dangling beside a call.
    blank: String,
    /// Only whitespace and calls so far (where a bare JSON call may stand).
    at_start: bool,
    /// Calls made from text.
    made: u32,
    /// Index the next call (native or made) gets.
    next_index: u32,
    /// Native call index -> index sent on.
    remap: Vec<(u32, u32)>,
}

impl Repairing {
    /// State for an answer to a request defining `tools`.
    pub fn new(tools: ToolSet, cap: usize) -> Self {
        Self {
            tools,
            cap,
            pending: String::new(),
            blank: String::new(),
            at_start: true,
            made: 0,
            next_index: 0,
            remap: Vec::new(),
        }
    }

    /// Decides on as much pending text as possible (all of it when `complete`).
    fn drain(&mut self, complete: bool, out: &mut Vec<StreamEvent>) {
        let mut text = String::new();
        let mut at = 0;
        let pending = std::mem::take(&mut self.pending);
        while at < pending.len() {
            let rest = &pending[at..];
            match scan(rest, &self.tools, self.at_start, complete) {
                Step::Text(n) if n > 0 => {
                    self.text(&rest[..n], &mut text);
                    at += n;
                }
                Step::Text(_) => break,
                Step::Hold if rest.len() > self.cap => {
                    // Too long to be a call worth holding: its first character is text.
                    let n = rest.chars().next().map_or(1, char::len_utf8);
                    self.text(&rest[..n], &mut text);
                    at += n;
                }
                Step::Hold => break,
                Step::Calls { consumed, calls } => {
                    if !text.is_empty() {
                        out.push(StreamEvent::TextDelta {
                            text: std::mem::take(&mut text),
                        });
                    }
                    // Whitespace right before a call is dropped with it.
                    self.blank.clear();
                    for call in calls {
                        self.emit_call(call, out);
                    }
                    at += consumed;
                }
            }
        }
        self.pending = pending;
        self.pending.drain(..at);
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta { text });
        }
    }

    /// Appends decided text to `text`, holding trailing whitespace back in `blank`.
    fn text(&mut self, piece: &str, text: &mut String) {
        let body = piece.trim_end();
        if body.is_empty() {
            self.blank.push_str(piece);
            return;
        }
        self.at_start = false;
        text.push_str(&self.blank);
        self.blank.clear();
        text.push_str(body);
        self.blank.push_str(&piece[body.len()..]);
    }

    fn emit_call(&mut self, call: TextToolCall, out: &mut Vec<StreamEvent>) {
        let index = self.next_index;
        self.next_index += 1;
        self.made += 1;
        tracing::debug!(tool = %call.name, "tool call written as text turned into a call");
        out.push(StreamEvent::ToolCallStart {
            index,
            id: llm_proxy_api::ids::tool_call_id(),
            name: call.name,
            provider_data: None,
        });
        out.push(StreamEvent::ToolCallDelta {
            index,
            arguments: call.arguments,
        });
        out.push(StreamEvent::ToolCallEnd { index });
    }

    /// The text has ended: decide on the rest; trailing whitespace stays only without calls.
    fn flush(&mut self, out: &mut Vec<StreamEvent>) {
        self.drain(true, out);
        if !self.blank.is_empty() {
            let blank = std::mem::take(&mut self.blank);
            if self.made == 0 {
                out.push(StreamEvent::TextDelta { text: blank });
            }
        }
    }

    fn mapped(&self, index: u32) -> u32 {
        self.remap
            .iter()
            .rev()
            .find(|(from, _)| *from == index)
            .map_or(index, |(_, to)| *to)
    }
}

impl EventProcess for Repairing {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match event {
            StreamEvent::TextDelta { text } => {
                self.pending.push_str(&text);
                self.drain(false, out);
            }
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                self.flush(out);
                let to = self.next_index;
                self.next_index += 1;
                self.remap.push((index, to));
                out.push(StreamEvent::ToolCallStart {
                    index: to,
                    id,
                    name,
                    provider_data,
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                out.push(StreamEvent::ToolCallDelta {
                    index: self.mapped(index),
                    arguments,
                });
            }
            StreamEvent::ToolCallEnd { index } => out.push(StreamEvent::ToolCallEnd {
                index: self.mapped(index),
            }),
            StreamEvent::Finish { reason } => {
                self.flush(out);
                let reason = match reason {
                    FinishReason::Stop if self.made > 0 => FinishReason::ToolCalls,
                    other => other,
                };
                out.push(StreamEvent::Finish { reason });
            }
            other => out.push(other),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.flush(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn repairing(cap: usize) -> Repairing {
        Repairing::new(
            ToolSet::new([(
                "read_file".to_owned(),
                json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            )]),
            cap,
        )
    }

    fn run(r: &mut Repairing, events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for e in events {
            r.event(e, &mut out).unwrap();
        }
        r.end(&mut out).unwrap();
        out
    }

    fn text(t: &str) -> StreamEvent {
        StreamEvent::TextDelta { text: t.into() }
    }

    fn stop() -> StreamEvent {
        StreamEvent::Finish {
            reason: FinishReason::Stop,
        }
    }

    /// Text joined, calls as (index, name, arguments), finish reason.
    fn summary(out: &[StreamEvent]) -> (String, Vec<(u32, String, String)>, Option<FinishReason>) {
        let mut t = String::new();
        let mut calls: Vec<(u32, String, String)> = Vec::new();
        let mut finish = None;
        for e in out {
            match e {
                StreamEvent::TextDelta { text } => t.push_str(text),
                StreamEvent::ToolCallStart { index, name, .. } => {
                    calls.push((*index, name.clone(), String::new()))
                }
                StreamEvent::ToolCallDelta { index, arguments } => {
                    let c = calls.iter_mut().find(|c| c.0 == *index).unwrap();
                    c.2.push_str(arguments);
                }
                StreamEvent::Finish { reason } => finish = Some(reason.clone()),
                _ => {}
            }
        }
        (t, calls, finish)
    }

    #[test]
    fn a_call_split_across_chunks_becomes_one_structured_call() {
        let whole = "I'll read it.\n<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}</tool_call>\n";
        // Every split point, one byte at a time included.
        for size in [1, 2, 3, 7, 16, whole.len()] {
            let chunks: Vec<StreamEvent> = whole
                .as_bytes()
                .chunks(size)
                .map(|c| text(std::str::from_utf8(c).unwrap()))
                .chain([stop()])
                .collect();
            let out = run(&mut repairing(1024), chunks);
            let (t, calls, finish) = summary(&out);
            assert_eq!(t, "I'll read it.", "size {size}");
            assert_eq!(
                calls,
                vec![(0, "read_file".to_owned(), "{\"path\":\"a.txt\"}".to_owned())]
            );
            assert_eq!(finish, Some(FinishReason::ToolCalls));
        }
    }

    #[test]
    fn plain_text_passes_unchanged_and_unheld() {
        let mut r = repairing(1024);
        let mut out = Vec::new();
        r.event(text("Hello "), &mut out).unwrap();
        assert_eq!(summary(&out).0, "Hello", "only trailing blanks wait");
        let out = run(&mut r, vec![text("world, 1 < 2.\n"), stop()]);
        let (t, calls, finish) = summary(&out);
        assert_eq!(t, " world, 1 < 2.\n");
        assert!(calls.is_empty());
        assert_eq!(finish, Some(FinishReason::Stop));
    }

    #[test]
    fn held_text_past_the_cap_is_released_as_text() {
        let long = format!(
            "<tool_call>{{\"name\": \"read_file\", \"arguments\": {{\"path\": \"{}\"",
            "x".repeat(200)
        );
        let out = run(&mut repairing(64), vec![text(&long), stop()]);
        let (t, calls, _) = summary(&out);
        assert_eq!(t, long);
        assert!(calls.is_empty());
    }

    #[test]
    fn native_calls_after_made_ones_get_fresh_indices() {
        let out = run(
            &mut repairing(1024),
            vec![
                text("TOOL CALL: read_file {\"path\": \"a\"}"),
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "n".into(),
                    name: "read_file".into(),
                    provider_data: None,
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"path\":\"b\"}".into(),
                },
                StreamEvent::ToolCallEnd { index: 0 },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls,
                },
            ],
        );
        let (_, calls, _) = summary(&out);
        assert_eq!(
            calls,
            vec![
                (0, "read_file".to_owned(), "{\"path\":\"a\"}".to_owned()),
                (1, "read_file".to_owned(), "{\"path\":\"b\"}".to_owned()),
            ]
        );
    }

    #[test]
    fn an_answer_cut_inside_a_call_flushes_at_the_end() {
        let out = run(
            &mut repairing(1024),
            vec![text(
                "<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}",
            )],
        );
        let (t, calls, _) = summary(&out);
        assert_eq!(t, "");
        assert_eq!(
            calls.len(),
            1,
            "an unclosed tag with whole JSON still counts"
        );
    }
}
