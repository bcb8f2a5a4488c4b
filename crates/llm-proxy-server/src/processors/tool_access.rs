//! Event processor: calls to tools the access policies refuse (see [`crate::tool_access`])
//! are swallowed and the client gets the policy's block message as assistant text. Decided
//! from the name at the call's start, so nothing is held. Active only when a policy (or the
//! session's `!/block-tools(…)`) can refuse something.

use std::sync::Arc;

use llm_proxy_api::ChatRequest;

use super::tool_calls::{Reactor, ToolCallJudge, Verdict};
use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;
use crate::tool_access::{Decision, SessionLists, ToolAccess};

/// The processor, built once.
#[derive(Debug)]
pub struct BlockToolCalls {
    access: Arc<ToolAccess>,
}

impl BlockToolCalls {
    /// The processor over these policies.
    pub fn new(access: Arc<ToolAccess>) -> Self {
        Self { access }
    }
}

impl EventProcessor for BlockToolCalls {
    fn name(&self) -> &'static str {
        "tool-access"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, ctx: &RequestContext, req: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        let (allowed, blocked) = ctx
            .session_state()
            .map(|s| (s.allowed_tools.clone(), s.blocked_tools.clone()))
            .unwrap_or_default();
        let lists = SessionLists {
            allowed: &allowed,
            blocked: &blocked,
        };
        if !self.access.active_for(lists) {
            return None;
        }
        Some(Box::new(Reactor::new(Judge {
            access: self.access.clone(),
            model: req.model.clone(),
            agent: crate::stages::tool_access::agent_of(&ctx.headers).to_owned(),
            allowed,
            blocked,
        })))
    }
}

struct Judge {
    access: Arc<ToolAccess>,
    model: String,
    agent: String,
    allowed: Vec<String>,
    blocked: Vec<String>,
}

impl ToolCallJudge for Judge {
    fn on_start(&mut self, name: &str) -> Option<Verdict> {
        let lists = SessionLists {
            allowed: &self.allowed,
            blocked: &self.blocked,
        };
        Some(
            match self.access.decide(name, &self.model, &self.agent, lists) {
                Decision::Allow => Verdict::Pass,
                Decision::Deny(message) => {
                    tracing::info!(tool = %name, "swallowed a call to a blocked tool");
                    Verdict::Swallow(format!("[llm-proxy] {message}"))
                }
            },
        )
    }

    fn judge(&mut self, _: &str, _: &str) -> Verdict {
        // Every call is decided at its start.
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::guards::ToolAccessSettings;
    use crate::processors::tool_calls::tests::{answer, call, collect, run, tool_calls};

    fn processor(blocked: &[&str]) -> BlockToolCalls {
        BlockToolCalls::new(Arc::new(
            ToolAccess::new(&ToolAccessSettings {
                blocked_tools: blocked.iter().map(|s| (*s).to_owned()).collect(),
                ..ToolAccessSettings::default()
            })
            .unwrap(),
        ))
    }

    #[test]
    fn a_blocked_call_is_swallowed_and_others_pass() {
        let p = processor(&["bash"]);
        let mut process = p
            .begin(
                &crate::context::tests::bare_context(),
                &ChatRequest::default(),
            )
            .unwrap();
        let out = run(
            process.as_mut(),
            answer(vec![
                call(0, "bash", r#"{"command":"ls"}"#),
                call(1, "read_file", r#"{"path":"a"}"#),
            ]),
        )
        .unwrap();
        let resp = collect(out);
        let calls = tool_calls(&resp);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "read_file");
        assert!(resp.joined_text().contains("'bash' is blocked"));
    }

    #[test]
    fn inactive_when_nothing_can_be_refused() {
        assert!(
            processor(&[])
                .begin(
                    &crate::context::tests::bare_context(),
                    &ChatRequest::default()
                )
                .is_none()
        );
    }
}
