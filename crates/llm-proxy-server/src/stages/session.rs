//! Request stage: which session the request belongs to ([`crate::session::id::resolve`]:
//! a header, a body field, Claude Code's `metadata.user_id`, Codex's headers, the
//! frontend's hint, else a fingerprint of the conversation), and its state, loaded from the
//! [`SessionStore`](crate::session::SessionStore). The resolved id goes on the request
//! context (logs, `[first]`, backends' `CallContext::session_id`); the state goes to the
//! stages after this one, and the pipeline saves it if one of them changed it (a session that
//! never set anything is never stored).

use super::{Flow, RequestStage, Session, StageCall, StageRun};
use crate::session::id::SessionId;
use crate::session::{SessionState, SessionStoreError};
use crate::state::AppState;

/// The stage.
#[derive(Debug, Default)]
pub struct ResolveSession;

impl RequestStage for ResolveSession {
    fn name(&self) -> &'static str {
        "session"
    }

    fn run<'a>(&'a self, state: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        let ctx = call.ctx;
        let Some(id) = crate::session::id::resolve(
            &ctx.headers,
            call.req,
            ctx.session_hint.as_deref(),
            ctx.client.as_ref().map(|c| c.label()),
        ) else {
            return StageRun::Now(Ok(Flow::Continue));
        };
        // A read, not a write: a conversation that sets nothing is never stored (an SDK app
        // whose every request starts a conversation would otherwise insert one session per
        // request). The in-process store answers at once; a shared one is waited for.
        let store = state.sessions();
        if let Some(loaded) = store.load_now(&id.key) {
            settle(call, id, loaded);
            return StageRun::Now(Ok(Flow::Continue));
        }
        StageRun::Later(Box::pin(async move {
            let loaded = store.load(&id.key).await;
            settle(call, id, loaded);
            Ok(Flow::Continue)
        }))
    }
}

/// Puts the loaded session on the call. A store that cannot answer must not fail the request:
/// the conversation goes on with the configured behaviour, and the failure is logged.
fn settle(
    call: &mut StageCall<'_>,
    id: SessionId,
    loaded: Result<Option<SessionState>, SessionStoreError>,
) {
    let ctx = call.ctx;
    let loaded = match loaded {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, error = e.label(), "session store unavailable; continuing without the session's settings: {e}");
            None
        }
    };
    let is_new = loaded.is_none();
    let session = Session {
        state: loaded.unwrap_or_default(),
        dirty: false,
    };
    tracing::debug!(request_id = %ctx.request_id, session = %id.id, source = id.source.label(), new = is_new, "session resolved");
    ctx.set_session(id.id, id.key);
    call.session = Some(session);
}
