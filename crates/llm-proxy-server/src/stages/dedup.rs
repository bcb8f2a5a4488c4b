//! Request stage: refuses a request identical to one in flight or one that just succeeded
//! (429 in the client's envelope) instead of paying for a second upstream call; see
//! [`crate::dedup`]. Runs after the session is resolved and the commands ran (a local answer
//! never reaches it, so repeating `!/help` is always answered) and after the session's
//! parameters, so the key holds the model that will actually be called.

use std::sync::Arc;

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::dedup::{Admission, Client, DedupCache};
use crate::error::ProxyError;
use crate::state::AppState;

/// The stage.
#[derive(Debug)]
pub struct Dedup {
    cache: Arc<DedupCache>,
}

impl Dedup {
    /// A stage over `cache`.
    pub fn new(cache: Arc<DedupCache>) -> Self {
        Self { cache }
    }
}

impl RequestStage for Dedup {
    fn name(&self) -> &'static str {
        "request-dedup"
    }

    fn run<'a>(&'a self, state: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        let ctx = call.ctx;
        let client = Client {
            key_label: ctx.client.as_ref().map(|c| c.label()),
            protocol: ctx.format.label(),
        };
        let key = self.cache.key(client, ctx.session_id(), call.req);
        let mut ticket = match self.cache.admit(key) {
            Admission::Go(ticket) => ticket,
            Admission::Duplicate { retry_after } => {
                tracing::info!(request_id = %ctx.request_id, "duplicate request refused");
                return StageRun::Now(Err(ProxyError::DuplicateRequest { retry_after }));
            }
        };
        // Replicas sharing Redis: another replica may be running (or have just answered) the
        // same request. Redis down: this replica's cache alone.
        let Some(link) = state.redis() else {
            ctx.set_dedup_ticket(ticket);
            return StageRun::Now(Ok(Flow::Continue));
        };
        let (in_flight, window) = (self.cache.in_flight_limit(), self.cache.window());
        StageRun::Later(Box::pin(async move {
            match crate::redis_state::dedup::claim(link, key, in_flight, window).await {
                Ok(Some(claim)) => ticket.share(claim),
                Ok(None) => {
                    // Not ours to remember: the other replica's request owns the key.
                    ticket.resolve(false);
                    tracing::info!(request_id = %ctx.request_id, "duplicate request refused (another replica)");
                    return Err(ProxyError::DuplicateRequest {
                        retry_after: window,
                    });
                }
                Err(_) => {}
            }
            ctx.set_dedup_ticket(ticket);
            Ok(Flow::Continue)
        }))
    }
}
