//! Request stage: the tool-progress loop guard's counting. A request that sends tool results
//! back (a tool follow-up) is compared with the session's previous one: the same calls (names
//! and arguments) with the same results count as a repeat, and so do the same results alone.
//! Past `session.tool_progress_loop_guard.max_repeated_calls` (or `max_repeated_outputs`) the
//! guard is armed in the session state, for the event processor
//! ([`crate::processors::loop_guard`]) to stop the next repeated call: a steering message the
//! first time, an error after (`action: steer_then_error`), or an error at once
//! (`action: error`). The counters live in the session state, so a shared store shares them.
//! Off for a session that turned loop detection off (`!/set(loop-detection=off)`).

use llm_proxy_api::model::Part;
use llm_proxy_api::{Message, Role};

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::config::guards::{LoopAction, ToolLoopSettings};
use crate::error::ProxyError;
use crate::session::state::{LoopVerdict, ToolLoopState};
use crate::state::AppState;

/// Results shorter than this are not counted as repeated output ("ok", "done", ...).
const MIN_COUNTED_OUTPUT_CHARS: usize = 32;

/// The stage.
#[derive(Debug)]
pub struct CountToolLoops {
    settings: ToolLoopSettings,
}

impl CountToolLoops {
    /// The stage with these settings.
    pub fn new(settings: ToolLoopSettings) -> Self {
        Self { settings }
    }
}

/// FNV-1a: stable across processes and versions (the hashes are stored in sessions).
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// The signature of one tool call: its name and its arguments (as JSON when they parse, so
/// spacing does not matter).
pub fn call_signature(name: &str, arguments: &str) -> u64 {
    let canonical = serde_json::from_str::<serde_json::Value>(arguments)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| arguments.trim().to_owned());
    fnv1a(
        fnv1a(fnv1a(FNV_OFFSET, name.as_bytes()), &[0]),
        canonical.as_bytes(),
    )
}

/// The tool exchange a follow-up request sends back.
#[derive(Debug, PartialEq, Eq)]
struct Exchange {
    calls: u64,
    results: u64,
    last_call_id: String,
    substantial_output: bool,
}

/// The last assistant turn's tool calls and the results after it, when the request ends with
/// tool results.
fn trailing_exchange(messages: &[Message]) -> Option<Exchange> {
    let mut results = FNV_OFFSET;
    let mut output_chars = 0usize;
    let mut saw_result = false;
    for message in messages.iter().rev() {
        if message.role == Role::Assistant {
            if !saw_result {
                return None;
            }
            let mut calls = FNV_OFFSET;
            let mut last_id = None;
            for part in &message.content {
                if let Part::ToolCall(c) = part {
                    calls = fnv1a(calls, &call_signature(&c.name, &c.arguments).to_le_bytes());
                    last_id = Some(c.id.as_str());
                }
            }
            return last_id.map(|id| Exchange {
                calls: if message_call_count(message) == 1 {
                    single_call_signature(message)
                } else {
                    calls
                },
                results,
                last_call_id: id.to_owned(),
                substantial_output: output_chars >= MIN_COUNTED_OUTPUT_CHARS,
            });
        }
        let mut has_result = false;
        for part in message.content.iter().rev() {
            if let Part::ToolResult(r) = part {
                has_result = true;
                results = fnv1a(results, &[u8::from(r.is_error)]);
                for p in &r.content {
                    if let Part::Text(t) = p {
                        output_chars += t.text.len();
                        results = fnv1a(results, t.text.as_bytes());
                    }
                }
            }
        }
        if !has_result {
            // A user turn of its own: not a tool follow-up.
            return None;
        }
        saw_result = true;
    }
    None
}

fn message_call_count(message: &Message) -> usize {
    message
        .content
        .iter()
        .filter(|p| matches!(p, Part::ToolCall(_)))
        .count()
}

/// A lone call's own signature, so the processor can match the model's next call to it.
fn single_call_signature(message: &Message) -> u64 {
    message
        .content
        .iter()
        .find_map(|p| match p {
            Part::ToolCall(c) => Some(call_signature(&c.name, &c.arguments)),
            _ => None,
        })
        .unwrap_or(FNV_OFFSET)
}

/// Folds this request's exchange into the counters and arms the guard when a limit is
/// reached.
fn count(state: &mut ToolLoopState, exchange: Option<Exchange>, settings: &ToolLoopSettings) {
    if let Some(ex) = exchange
        && ex.last_call_id != state.last_call_id
    {
        let same_results = ex.results == state.results && state.repeated_calls > 0;
        state.repeated_calls = if same_results && ex.calls == state.calls {
            state.repeated_calls.saturating_add(1)
        } else {
            1
        };
        state.repeated_outputs = match (ex.substantial_output, same_results) {
            (false, _) => 0,
            (true, true) => state.repeated_outputs.saturating_add(1),
            (true, false) => 1,
        };
        state.calls = ex.calls;
        state.results = ex.results;
        state.last_call_id = ex.last_call_id;
    }
    let tripped = state.repeated_calls >= settings.max_repeated_calls
        || state.repeated_outputs >= settings.max_repeated_outputs;
    state.armed = if !tripped {
        state.steered = false;
        None
    } else if settings.action == LoopAction::Error || state.steered {
        Some(LoopVerdict::Error)
    } else {
        state.steered = true;
        Some(LoopVerdict::Steer)
    };
}

impl RequestStage for CountToolLoops {
    fn name(&self) -> &'static str {
        "tool-loop-guard"
    }

    fn run<'a>(&'a self, _: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        StageRun::Now(self.decide(call))
    }
}

impl CountToolLoops {
    /// The stage's decision: made at once, it never waits.
    fn decide(&self, call: &mut StageCall<'_>) -> Result<Flow, ProxyError> {
        let Some(session) = call.session.as_mut() else {
            return Ok(Flow::Continue);
        };
        if session.state.loop_detection == Some(false) {
            if session.state.tool_loop != ToolLoopState::default() {
                session.state_mut().tool_loop = ToolLoopState::default();
            }
            return Ok(Flow::Continue);
        }
        let exchange = trailing_exchange(&call.req.messages);
        if exchange.is_none() && session.state.tool_loop == ToolLoopState::default() {
            return Ok(Flow::Continue);
        }
        let mut next = session.state.tool_loop.clone();
        count(&mut next, exchange, &self.settings);
        if next != session.state.tool_loop {
            if let Some(verdict) = next.armed {
                tracing::warn!(request_id = %call.ctx.request_id, repeated_calls = next.repeated_calls, repeated_outputs = next.repeated_outputs, ?verdict, "tool loop detected");
            }
            session.state_mut().tool_loop = next;
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::{TextPart, ToolCall, ToolResult};

    pub(crate) fn follow_up(id: &str, args: &str, output: &str) -> Vec<Message> {
        vec![
            Message::text(Role::User, "list the files"),
            Message {
                role: Role::Assistant,
                content: vec![Part::ToolCall(ToolCall {
                    cache_control: None,
                    id: id.into(),
                    name: "bash".into(),
                    arguments: args.into(),
                    provider_data: None,
                })],
                name: None,
            },
            Message {
                role: Role::Tool,
                content: vec![Part::ToolResult(ToolResult {
                    call_id: id.into(),
                    name: None,
                    content: vec![Part::Text(TextPart::new(output))],
                    is_error: false,
                    cache_control: None,
                })],
                name: None,
            },
        ]
    }

    const OUT: &str = "total 0\ndrwxr-xr-x 2 me me 40 Jan 1 00:00 .\n";

    fn settings() -> ToolLoopSettings {
        ToolLoopSettings::default()
    }

    #[test]
    fn a_follow_up_is_recognised_and_a_user_turn_is_not() {
        let ex = trailing_exchange(&follow_up("c1", r#"{"command":"ls"}"#, OUT)).unwrap();
        assert_eq!(ex.last_call_id, "c1");
        assert_eq!(ex.calls, call_signature("bash", r#"{ "command": "ls" }"#));
        let mut msgs = follow_up("c1", "{}", OUT);
        msgs.push(Message::text(Role::User, "thanks"));
        assert_eq!(trailing_exchange(&msgs), None);
        assert_eq!(trailing_exchange(&[Message::text(Role::User, "hi")]), None);
    }

    #[test]
    fn seven_identical_exchanges_arm_a_steer_then_an_error() {
        let s = settings();
        let mut state = ToolLoopState::default();
        for i in 1..=6 {
            count(
                &mut state,
                trailing_exchange(&follow_up(&format!("c{i}"), r#"{"command":"ls"}"#, OUT)),
                &s,
            );
            assert_eq!(state.repeated_calls, i);
            assert_eq!(state.armed, None, "after {i}");
        }
        count(
            &mut state,
            trailing_exchange(&follow_up("c7", r#"{"command":"ls"}"#, OUT)),
            &s,
        );
        assert_eq!(state.armed, Some(LoopVerdict::Steer));
        // The same exchange resent is not counted again; a later request is an error.
        count(
            &mut state,
            trailing_exchange(&follow_up("c7", r#"{"command":"ls"}"#, OUT)),
            &s,
        );
        assert_eq!(state.repeated_calls, 7);
        assert_eq!(state.armed, Some(LoopVerdict::Error));
        // Progress (another call) disarms and forgets the steering.
        count(
            &mut state,
            trailing_exchange(&follow_up(
                "c8",
                r#"{"command":"pwd"}"#,
                "/home/me/project/with/a/long/path",
            )),
            &s,
        );
        assert_eq!(
            (state.armed, state.steered, state.repeated_calls),
            (None, false, 1)
        );
    }

    #[test]
    fn changing_results_are_progress() {
        let s = settings();
        let mut state = ToolLoopState::default();
        for i in 1..=20 {
            let out = format!("{OUT} build step {i} of 20 still running");
            count(
                &mut state,
                trailing_exchange(&follow_up(&format!("c{i}"), r#"{"command":"make"}"#, &out)),
                &s,
            );
            assert_eq!(state.armed, None);
        }
    }

    #[test]
    fn repeated_outputs_of_different_calls_count_but_short_ones_do_not() {
        let s = settings();
        let mut state = ToolLoopState::default();
        for i in 1..=7 {
            count(
                &mut state,
                trailing_exchange(&follow_up(
                    &format!("c{i}"),
                    &format!(r#"{{"n":{i}}}"#),
                    OUT,
                )),
                &s,
            );
        }
        assert_eq!(state.repeated_outputs, 7);
        assert_eq!(state.armed, Some(LoopVerdict::Steer));
        let mut state = ToolLoopState::default();
        for i in 1..=20 {
            count(
                &mut state,
                trailing_exchange(&follow_up(
                    &format!("c{i}"),
                    &format!(r#"{{"n":{i}}}"#),
                    "ok",
                )),
                &s,
            );
        }
        assert_eq!(state.armed, None);
    }

    #[test]
    fn the_error_action_errs_at_once() {
        let s = ToolLoopSettings {
            action: LoopAction::Error,
            max_repeated_calls: 2,
            ..settings()
        };
        let mut state = ToolLoopState::default();
        for i in 1..=2 {
            count(
                &mut state,
                trailing_exchange(&follow_up(&format!("c{i}"), "{}", OUT)),
                &s,
            );
        }
        assert_eq!(state.armed, Some(LoopVerdict::Error));
    }
}
