//! Event processor: the tool-progress loop guard's action. When the session's counters
//! ([`crate::stages::loop_guard`]) armed it, the model's next call that repeats the loop (the
//! same call again, or any call once the same output keeps coming back) is swallowed with a
//! steering message, or fails the answer with an error in the client's envelope. Inactive
//! unless armed, so ordinary requests pay nothing.

use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;

use super::tool_calls::{Reactor, ToolCallJudge, Verdict};
use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;
use crate::session::state::LoopVerdict;
use crate::stages::loop_guard::call_signature;

/// The default steering text.
pub const DEFAULT_MESSAGE: &str = "[llm-proxy] Loop detected: the tool call `{tool}` was \
repeated {count} times with the same result, so it was not run again. Stop repeating it: try a \
different approach, or explain to the user what is blocking progress.";

/// The processor, built once.
#[derive(Debug)]
pub struct ToolLoopGuard {
    message: String,
    max_repeated_outputs: u32,
}

impl ToolLoopGuard {
    /// The processor with this steering message (placeholders `{tool}`, `{count}`).
    pub fn new(message: Option<&str>, max_repeated_outputs: u32) -> Self {
        Self {
            message: message.unwrap_or(DEFAULT_MESSAGE).to_owned(),
            max_repeated_outputs,
        }
    }
}

impl EventProcessor for ToolLoopGuard {
    fn name(&self) -> &'static str {
        "tool-loop-guard"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, ctx: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        let session = ctx.session_state()?;
        if session.loop_detection == Some(false) {
            return None;
        }
        let state = &session.tool_loop;
        let verdict = state.armed?;
        Some(Box::new(Reactor::new(Judge {
            verdict,
            calls: state.calls,
            any_call: state.repeated_outputs >= self.max_repeated_outputs,
            count: state.repeated_calls.max(state.repeated_outputs),
            message: self.message.clone(),
        })))
    }
}

struct Judge {
    verdict: LoopVerdict,
    calls: u64,
    any_call: bool,
    count: u32,
    message: String,
}

impl ToolCallJudge for Judge {
    fn judge(&mut self, name: &str, arguments: &str) -> Verdict {
        if !self.any_call && call_signature(name, arguments) != self.calls {
            return Verdict::Pass;
        }
        let message = self
            .message
            .replace("{tool}", name)
            .replace("{count}", &self.count.to_string());
        match self.verdict {
            LoopVerdict::Steer => Verdict::Swallow(message),
            LoopVerdict::Error => Verdict::Fail(
                BackendError::invalid_request(format!(
                    "tool loop detected: the tool call '{name}' keeps repeating with the same \
                     result ({} times); the proxy stopped it",
                    self.count
                ))
                .with_code("tool_loop_detected"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::tool_calls::tests::{answer, call, collect, run, tool_calls};
    use crate::session::SessionState;
    use crate::session::state::ToolLoopState;

    fn ctx_with(verdict: Option<LoopVerdict>, repeated_outputs: u32) -> RequestContext {
        let ctx = crate::context::tests::bare_context();
        ctx.set_session_state(SessionState {
            tool_loop: ToolLoopState {
                calls: call_signature("bash", r#"{"command":"ls"}"#),
                repeated_calls: 7,
                repeated_outputs,
                armed: verdict,
                ..ToolLoopState::default()
            },
            ..SessionState::default()
        });
        ctx
    }

    fn through(
        ctx: &RequestContext,
        args: &str,
    ) -> Result<Vec<llm_proxy_api::stream::StreamEvent>, String> {
        let g = ToolLoopGuard::new(None, 7);
        let mut p = g.begin(ctx, &ChatRequest::default()).unwrap();
        run(p.as_mut(), answer(vec![call(0, "bash", args)]))
    }

    #[test]
    fn the_repeated_call_is_steered_and_another_passes() {
        let ctx = ctx_with(Some(LoopVerdict::Steer), 0);
        let resp = collect(through(&ctx, r#"{ "command": "ls" }"#).unwrap());
        assert!(tool_calls(&resp).is_empty());
        assert!(resp.joined_text().contains("Loop detected"));
        let resp = collect(through(&ctx, r#"{"command":"cat a"}"#).unwrap());
        assert_eq!(tool_calls(&resp).len(), 1);
    }

    #[test]
    fn after_steering_it_is_an_error() {
        let ctx = ctx_with(Some(LoopVerdict::Error), 0);
        let err = through(&ctx, r#"{"command":"ls"}"#).unwrap_err();
        assert!(err.contains("tool loop detected"), "{err}");
    }

    #[test]
    fn repeated_outputs_stop_any_call() {
        let ctx = ctx_with(Some(LoopVerdict::Steer), 7);
        let resp = collect(through(&ctx, r#"{"command":"cat a"}"#).unwrap());
        assert!(tool_calls(&resp).is_empty());
    }

    #[test]
    fn inactive_unless_armed_or_when_the_session_turned_it_off() {
        let g = ToolLoopGuard::new(None, 7);
        assert!(
            g.begin(&ctx_with(None, 0), &ChatRequest::default())
                .is_none()
        );
        assert!(
            g.begin(
                &crate::context::tests::bare_context(),
                &ChatRequest::default()
            )
            .is_none()
        );
        let ctx = crate::context::tests::bare_context();
        ctx.set_session_state(SessionState {
            loop_detection: Some(false),
            tool_loop: ToolLoopState {
                armed: Some(LoopVerdict::Steer),
                ..ToolLoopState::default()
            },
            ..SessionState::default()
        });
        assert!(g.begin(&ctx, &ChatRequest::default()).is_none());
    }
}
