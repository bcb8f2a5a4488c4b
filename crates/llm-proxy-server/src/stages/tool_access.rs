//! Request stage (transform): tool definitions the access policies refuse (see
//! [`crate::tool_access`]) are removed before the request reaches any upstream, so the model
//! is never offered them; a `tool_choice` naming a removed tool falls back to `auto` (or to
//! none when no tool is left). Present only when tool access control is configured; a
//! session's `!/block-tools(…)` turns it on for that session.

use std::sync::Arc;

use llm_proxy_api::model::ToolChoice;

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::error::ProxyError;
use crate::state::AppState;
use crate::tool_access::{Decision, SessionLists, ToolAccess};

/// The stage.
#[derive(Debug)]
pub struct StripTools {
    access: Arc<ToolAccess>,
}

impl StripTools {
    /// The stage over these policies.
    pub fn new(access: Arc<ToolAccess>) -> Self {
        Self { access }
    }
}

/// The client's agent, as the policies' `agent_pattern` sees it.
pub fn agent_of(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

impl RequestStage for StripTools {
    fn name(&self) -> &'static str {
        "tool-access"
    }

    fn run<'a>(&'a self, _: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        StageRun::Now(self.decide(call))
    }
}

impl StripTools {
    /// The stage's decision: made at once, it never waits.
    fn decide(&self, call: &mut StageCall<'_>) -> Result<Flow, ProxyError> {
        if call.req.tools.is_empty() {
            return Ok(Flow::Continue);
        }
        let lists = call
            .session
            .as_ref()
            .map(|s| SessionLists {
                allowed: &s.state.allowed_tools,
                blocked: &s.state.blocked_tools,
            })
            .unwrap_or_default();
        if !self.access.active_for(lists) {
            return Ok(Flow::Continue);
        }
        let agent = agent_of(&call.ctx.headers);
        let model = call.req.model.clone();
        let before = call.req.tools.len();
        call.req
            .tools
            .retain(|t| self.access.decide(&t.name, &model, agent, lists) == Decision::Allow);
        if call.req.tools.len() == before {
            return Ok(Flow::Continue);
        }
        tracing::debug!(request_id = %call.ctx.request_id, removed = before - call.req.tools.len(), "tool definitions removed by access policy");
        let names_removed_tool = matches!(&call.req.tool_choice,
            Some(ToolChoice::Function(name)) if !call.req.tools.iter().any(|t| &t.name == name));
        if call.req.tools.is_empty() {
            call.req.tool_choice = None;
            call.req.parallel_tool_calls = None;
        } else if names_removed_tool {
            call.req.tool_choice = Some(ToolChoice::Auto);
        }
        Ok(Flow::Continue)
    }
}
