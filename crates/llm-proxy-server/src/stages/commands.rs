//! Request stage: the in-chat `!/` commands ([`crate::commands`]). Runs the commands the user
//! typed at the end of their latest message against the session, strips command lines from
//! the history, and answers locally when nothing else was typed (or a command failed).
//! Present unless interactive commands are off and there is nothing to strip (never: with
//! commands disabled the stage still removes them, so they never reach a backend).

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::commands::{CommandEnv, CommandOutcome, CommandResult, CommandStatus};
use crate::error::ProxyError;
use crate::session::SessionState;
use crate::state::AppState;

/// The stage.
#[derive(Debug)]
pub struct Commands {
    env: CommandEnv,
}

impl Commands {
    /// The stage over `env`, built once at startup.
    pub fn new(env: CommandEnv) -> Self {
        Self { env }
    }
}

fn log(request_id: &str, results: &[CommandResult]) {
    for r in results {
        match r.status {
            CommandStatus::Applied => {
                tracing::info!(request_id, command = %r.name, "in-chat command applied");
            }
            status => {
                tracing::info!(request_id, command = %r.name, ?status, "in-chat command not applied: {}", r.message);
            }
        }
    }
}

impl RequestStage for Commands {
    fn name(&self) -> &'static str {
        "commands"
    }

    fn run<'a>(&'a self, _: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        StageRun::Now(self.decide(call))
    }
}

impl Commands {
    /// The stage's decision: made at once, it never waits.
    fn decide(&self, call: &mut StageCall<'_>) -> Result<Flow, ProxyError> {
        let mut scratch;
        let state = match call.session.as_mut() {
            Some(session) => &mut session.state,
            None => {
                // No session to keep settings in (nothing to identify the conversation by):
                // commands still run and are answered, their settings last this request.
                scratch = SessionState::default();
                &mut scratch
            }
        };
        let outcome = crate::commands::run(call.req, state, &self.env);
        let (flow, results) = match outcome {
            CommandOutcome::NotFound => return Ok(Flow::Continue),
            CommandOutcome::Forward { results } => (Flow::Continue, results),
            CommandOutcome::Answer { text, results } => (Flow::Answer(text), results),
        };
        if results.iter().any(|r| r.status == CommandStatus::Applied)
            && let Some(session) = call.session.as_mut()
        {
            let state = session.state_mut();
            state.commands_run = state.commands_run.saturating_add(1);
        }
        log(&call.ctx.request_id, &results);
        Ok(flow)
    }
}
