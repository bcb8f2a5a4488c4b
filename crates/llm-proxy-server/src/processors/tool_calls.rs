//! The tool-call reactor: the part every tool-call guard shares. It holds each tool call from
//! its start to its end (bounded), asks a [`ToolCallJudge`] about it, and then lets it through,
//! swallows it (the client gets the judge's message as assistant text instead) or fails the
//! stream. Text and every other event pass straight through. When every call of an answer was
//! swallowed, a `tool_calls` finish becomes a plain stop, so each frontend renders an ordinary
//! assistant message in its own protocol, streamed or not.

use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::FinishReason;
use llm_proxy_api::stream::StreamEvent;
use serde_json::Value;

use super::EventProcess;

/// Most argument bytes held for one call; past this the judge decides on what it has.
pub const MAX_HELD_ARGUMENT_BYTES: usize = 256 * 1024;

/// What becomes of one tool call.
#[derive(Debug)]
pub enum Verdict {
    /// The client gets the call.
    Pass,
    /// The client gets this text instead of the call.
    Swallow(String),
    /// The stream ends with this error.
    Fail(BackendError),
}

/// Decides about tool calls, one request's worth.
pub trait ToolCallJudge: Send {
    /// A decision from the name alone, when the judge can make one (then the call streams
    /// through unheld); `None` to see the whole call.
    fn on_start(&mut self, name: &str) -> Option<Verdict> {
        let _ = name;
        None
    }
    /// The decision about a whole call (`arguments` as the model wrote them).
    fn judge(&mut self, name: &str, arguments: &str) -> Verdict;
}

enum CallState {
    Held {
        arguments: String,
    },
    /// Streaming through under this output index.
    Passing(u32),
    Dropped,
}

struct Call {
    index: u32,
    id: String,
    name: String,
    provider_data: Option<Value>,
    state: CallState,
}

/// A process that runs every tool call past a judge.
pub struct Reactor<J> {
    judge: J,
    calls: Vec<Call>,
    /// Output index of the next call let through (calls are renumbered 0.. in output order).
    next_index: u32,
    swallowed: bool,
    text_sent: bool,
}

impl<J: ToolCallJudge> Reactor<J> {
    /// A reactor asking `judge`.
    pub fn new(judge: J) -> Self {
        Self {
            judge,
            calls: Vec::new(),
            next_index: 0,
            swallowed: false,
            text_sent: false,
        }
    }

    fn position(&self, index: u32) -> Option<usize> {
        self.calls.iter().rposition(|c| c.index == index)
    }

    fn emit_text(&mut self, text: String, out: &mut Vec<StreamEvent>) {
        let text = if self.text_sent {
            format!("\n\n{text}")
        } else {
            text
        };
        self.text_sent = true;
        out.push(StreamEvent::TextDelta { text });
    }

    /// Applies a verdict to call `pos`; `arguments` are what was held (sent along on a pass).
    fn apply(
        &mut self,
        pos: usize,
        verdict: Verdict,
        arguments: String,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match verdict {
            Verdict::Pass => {
                let index = self.next_index;
                self.next_index += 1;
                let call = &mut self.calls[pos];
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: std::mem::take(&mut call.id),
                    name: call.name.clone(),
                    provider_data: call.provider_data.take(),
                });
                if !arguments.is_empty() {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                }
                call.state = CallState::Passing(index);
                Ok(())
            }
            Verdict::Swallow(message) => {
                self.calls[pos].state = CallState::Dropped;
                self.swallowed = true;
                self.emit_text(message, out);
                Ok(())
            }
            Verdict::Fail(e) => Err(e),
        }
    }

    /// Decides every call still held (the stream ended without their end events).
    fn settle_held(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        for pos in 0..self.calls.len() {
            if let CallState::Held { arguments } = &mut self.calls[pos].state {
                let arguments = std::mem::take(arguments);
                let verdict = self.judge.judge(&self.calls[pos].name, &arguments);
                let passing = matches!(verdict, Verdict::Pass);
                self.apply(pos, verdict, arguments, out)?;
                if let (true, CallState::Passing(index)) = (passing, &self.calls[pos].state) {
                    out.push(StreamEvent::ToolCallEnd { index: *index });
                }
            }
        }
        Ok(())
    }
}

impl<J: ToolCallJudge> EventProcess for Reactor<J> {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match event {
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                let early = self.judge.on_start(&name);
                self.calls.push(Call {
                    index,
                    id,
                    name,
                    provider_data,
                    state: CallState::Held {
                        arguments: String::new(),
                    },
                });
                if let Some(verdict) = early {
                    let pos = self.calls.len() - 1;
                    self.apply(pos, verdict, String::new(), out)?;
                }
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let Some(pos) = self.position(index) else {
                    out.push(StreamEvent::ToolCallDelta { index, arguments });
                    return Ok(());
                };
                match &mut self.calls[pos].state {
                    CallState::Passing(out_index) => out.push(StreamEvent::ToolCallDelta {
                        index: *out_index,
                        arguments,
                    }),
                    CallState::Dropped => {}
                    CallState::Held { arguments: held } => {
                        held.push_str(&arguments);
                        if held.len() > MAX_HELD_ARGUMENT_BYTES {
                            // Bounded: decide on what is held, then stream the rest.
                            let held = std::mem::take(held);
                            let verdict = self.judge.judge(&self.calls[pos].name, &held);
                            self.apply(pos, verdict, held, out)?;
                        }
                    }
                }
            }
            StreamEvent::ToolCallEnd { index } => {
                let Some(pos) = self.position(index) else {
                    out.push(StreamEvent::ToolCallEnd { index });
                    return Ok(());
                };
                if let CallState::Held { arguments } = &mut self.calls[pos].state {
                    let arguments = std::mem::take(arguments);
                    let verdict = self.judge.judge(&self.calls[pos].name, &arguments);
                    self.apply(pos, verdict, arguments, out)?;
                }
                if let CallState::Passing(out_index) = self.calls[pos].state {
                    out.push(StreamEvent::ToolCallEnd { index: out_index });
                }
            }
            StreamEvent::Finish { reason } => {
                self.settle_held(out)?;
                let reason = match reason {
                    FinishReason::ToolCalls if self.swallowed && self.next_index == 0 => {
                        FinishReason::Stop
                    }
                    other => other,
                };
                out.push(StreamEvent::Finish { reason });
            }
            StreamEvent::TextDelta { text } => {
                if !text.is_empty() {
                    self.text_sent = true;
                }
                out.push(StreamEvent::TextDelta { text });
            }
            other => out.push(other),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.settle_held(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use llm_proxy_api::stream::Collector;

    /// Swallows calls whose arguments contain `bad`, fails on `fail`, names `early` at start.
    struct Words;
    impl ToolCallJudge for Words {
        fn on_start(&mut self, name: &str) -> Option<Verdict> {
            (name == "blocked").then(|| Verdict::Swallow("blocked by name".into()))
        }
        fn judge(&mut self, _: &str, arguments: &str) -> Verdict {
            if arguments.contains("fail") {
                Verdict::Fail(BackendError::invalid_request("failed"))
            } else if arguments.contains("bad") {
                Verdict::Swallow("swallowed".into())
            } else {
                Verdict::Pass
            }
        }
    }

    /// A streamed call in pieces.
    pub(crate) fn call(index: u32, name: &str, args: &str) -> Vec<StreamEvent> {
        let (a, b) = args.split_at(args.len() / 2);
        vec![
            StreamEvent::ToolCallStart {
                index,
                id: format!("call_{index}"),
                name: name.into(),
                provider_data: None,
            },
            StreamEvent::ToolCallDelta {
                index,
                arguments: a.into(),
            },
            StreamEvent::ToolCallDelta {
                index,
                arguments: b.into(),
            },
            StreamEvent::ToolCallEnd { index },
        ]
    }

    /// Events through a process; `Err` with the error message when it failed.
    pub(crate) fn run(
        process: &mut dyn EventProcess,
        events: Vec<StreamEvent>,
    ) -> Result<Vec<StreamEvent>, String> {
        let mut out = Vec::new();
        for e in events {
            process.event(e, &mut out).map_err(|e| e.message)?;
        }
        process.end(&mut out).map_err(|e| e.message)?;
        Ok(out)
    }

    pub(crate) fn answer(calls: Vec<Vec<StreamEvent>>) -> Vec<StreamEvent> {
        let mut events = vec![StreamEvent::TextDelta {
            text: "Let me run that.".into(),
        }];
        events.extend(calls.into_iter().flatten());
        events.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        events
    }

    pub(crate) fn tool_calls(
        resp: &llm_proxy_api::ChatResponse,
    ) -> Vec<&llm_proxy_api::model::ToolCall> {
        resp.content
            .iter()
            .filter_map(|p| match p {
                llm_proxy_api::model::Part::ToolCall(c) => Some(c),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn collect(events: Vec<StreamEvent>) -> llm_proxy_api::ChatResponse {
        let mut c = Collector::new();
        for e in events {
            c.push(e);
        }
        c.finish("m")
    }

    #[test]
    fn a_passing_call_reaches_the_client_whole() {
        let out = run(
            &mut Reactor::new(Words),
            answer(vec![call(0, "bash", r#"{"command":"ls"}"#)]),
        )
        .unwrap();
        let resp = collect(out);
        assert_eq!(resp.finish_reason, Some(FinishReason::ToolCalls));
        let calls: Vec<_> = tool_calls(&resp);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments, r#"{"command":"ls"}"#);
        assert_eq!(calls[0].id, "call_0");
    }

    #[test]
    fn a_swallowed_call_becomes_text_and_a_normal_stop() {
        let out = run(
            &mut Reactor::new(Words),
            answer(vec![call(0, "bash", r#"{"command":"bad"}"#)]),
        )
        .unwrap();
        let resp = collect(out);
        assert_eq!(resp.finish_reason, Some(FinishReason::Stop));
        assert_eq!(tool_calls(&resp).len(), 0);
        assert_eq!(resp.joined_text(), "Let me run that.\n\nswallowed");
    }

    #[test]
    fn among_parallel_calls_only_the_bad_one_goes_and_the_rest_are_renumbered() {
        let out = run(
            &mut Reactor::new(Words),
            answer(vec![
                call(0, "bash", r#"{"command":"bad"}"#),
                call(1, "blocked", r#"{}"#),
                call(2, "bash", r#"{"command":"ok"}"#),
            ]),
        )
        .unwrap();
        let starts: Vec<u32> = out
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCallStart { index, .. } => Some(*index),
                _ => None,
            })
            .collect();
        assert_eq!(starts, [0]);
        let resp = collect(out);
        assert_eq!(resp.finish_reason, Some(FinishReason::ToolCalls));
        let calls: Vec<_> = tool_calls(&resp);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].id, "call_2");
        assert!(
            resp.joined_text().contains("swallowed")
                && resp.joined_text().contains("blocked by name")
        );
    }

    #[test]
    fn a_failing_verdict_ends_the_stream_with_the_error() {
        let err = run(
            &mut Reactor::new(Words),
            answer(vec![call(0, "bash", r#"{"command":"fail"}"#)]),
        )
        .unwrap_err();
        assert_eq!(err, "failed");
    }

    #[test]
    fn a_call_cut_off_by_the_end_of_the_stream_is_still_judged() {
        let mut events = call(0, "bash", r#"{"command":"bad"}"#);
        events.pop();
        let out = run(&mut Reactor::new(Words), events).unwrap();
        assert_eq!(
            out,
            [StreamEvent::TextDelta {
                text: "swallowed".into()
            }]
        );
    }

    #[test]
    fn holding_is_bounded() {
        let mut reactor = Reactor::new(Words);
        let mut out = Vec::new();
        reactor
            .event(call(0, "bash", "").remove(0), &mut out)
            .unwrap();
        let chunk = "x".repeat(64 * 1024);
        for _ in 0..6 {
            reactor
                .event(
                    StreamEvent::ToolCallDelta {
                        index: 0,
                        arguments: chunk.clone(),
                    },
                    &mut out,
                )
                .unwrap();
        }
        // Past the bound the call was decided (passed) and streams on.
        assert!(
            out.iter()
                .any(|e| matches!(e, StreamEvent::ToolCallStart { .. }))
        );
        assert!(matches!(
            out.last(),
            Some(StreamEvent::ToolCallDelta { arguments, .. }) if arguments.len() == chunk.len()
        ));
    }
}
