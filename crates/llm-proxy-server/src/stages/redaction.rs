//! Transform stage: configured provider API keys found in the prompt are replaced before the
//! request reaches any upstream (the matcher is [`crate::redaction::KeyRedactor`]). On when
//! `auth.redact_api_keys_in_prompts` says so, unless the session turned it off or on
//! (`!/set(redact-api-keys-in-prompts=…)`).

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::error::ProxyError;
use crate::redaction::{KeyRedactor, redact_prompt};
use crate::state::AppState;

/// The stage. Present only when some provider key is long enough to search for.
#[derive(Debug)]
pub struct RedactKeys {
    redactor: KeyRedactor,
    /// The configured default, before any session override.
    on_by_default: bool,
}

impl RedactKeys {
    /// The stage for these keys (`None` when there is nothing to redact).
    pub fn new(redactor: Option<KeyRedactor>, on_by_default: bool) -> Option<Self> {
        redactor.map(|redactor| Self {
            redactor,
            on_by_default,
        })
    }
}

impl RequestStage for RedactKeys {
    fn name(&self) -> &'static str {
        "redact-keys"
    }

    fn run<'a>(&'a self, _: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        StageRun::Now(self.decide(call))
    }
}

impl RedactKeys {
    /// The stage's decision: made at once, it never waits.
    fn decide(&self, call: &mut StageCall<'_>) -> Result<Flow, ProxyError> {
        let on = call
            .session
            .as_ref()
            .and_then(|s| s.state.redact_api_keys)
            .unwrap_or(self.on_by_default);
        if on {
            redact_prompt(Some(&self.redactor), call.req, &call.ctx.request_id);
        }
        Ok(Flow::Continue)
    }
}
