//! Request stage (transform): what the session set wins over what the client sent — the
//! route (`!/set(model=…)`, `!/backend(…)`, a one-off route, a session failover route) and
//! the parameters (temperature, reasoning effort, thinking budget or off, Gemini generation
//! config, the reasoning mode's prompt prefix/suffix). See [`crate::session::apply`].

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::error::ProxyError;
use crate::state::AppState;

/// The stage.
#[derive(Debug, Default)]
pub struct SessionParams;

impl RequestStage for SessionParams {
    fn name(&self) -> &'static str {
        "session-params"
    }

    fn run<'a>(&'a self, _: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        StageRun::Now(self.decide(call))
    }
}

impl SessionParams {
    /// The stage's decision: made at once, it never waits.
    fn decide(&self, call: &mut StageCall<'_>) -> Result<Flow, ProxyError> {
        let Some(session) = call.session.as_mut() else {
            return Ok(Flow::Continue);
        };
        if session.state.oneoff.is_some() {
            // Consumed by this request: the cleared state is saved.
            session.dirty = true;
        }
        if let Some(route) = crate::session::route_for(&mut session.state, &call.req.model) {
            tracing::debug!(request_id = %call.ctx.request_id, route = %route, requested = %call.req.model, "session route overrides the requested model");
            call.req.model = route;
        }
        crate::session::apply_to_request(&session.state, call.req);
        Ok(Flow::Continue)
    }
}
