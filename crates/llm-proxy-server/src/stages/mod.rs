//! Request stages: the steps between a frontend's canonical request and routing, in order —
//! session (resolve the id, load the state) → commands (may answer locally) → transforms
//! (redaction, session parameters, ...) → route. Each stage is a small type with one job and
//! its own file and tests; which stages run is decided once at startup
//! ([`crate::pipeline::Pipeline::from_config`]), never per request.
//!
//! A stage gets the request context, the canonical request (to change) and the session once
//! the session stage has loaded it. It either lets the request go on or answers it locally
//! ([`Flow::Answer`]): the pipeline then turns the answer into a short event stream that the
//! client's frontend renders like any backend's, so local answers reach every protocol,
//! streamed or not.

pub mod commands;
pub mod dedup;
pub mod loop_guard;
pub mod redaction;
pub mod restore_reasoning;
pub mod session;
pub mod session_params;
pub mod tool_access;

use std::sync::Arc;

use futures::future::BoxFuture;
use llm_proxy_api::ChatRequest;

use crate::context::RequestContext;
use crate::error::ProxyError;
use crate::session::SessionState;
use crate::state::AppState;

/// The session a request belongs to, loaded by the session stage (its id and store key are
/// on the request context: [`RequestContext::session_key`]).
#[derive(Debug, Clone)]
pub struct Session {
    /// What the session has set.
    pub state: SessionState,
    /// Whether a stage changed `state` (the pipeline then saves it before routing).
    pub dirty: bool,
}

impl Session {
    /// The state, marked as changed.
    pub fn state_mut(&mut self) -> &mut SessionState {
        self.dirty = true;
        &mut self.state
    }
}

/// What one request's stages work on.
pub struct StageCall<'a> {
    /// The request's context.
    pub ctx: &'a RequestContext,
    /// The canonical request; stages may change it.
    pub req: &'a mut ChatRequest,
    /// The session, once the session stage ran (`None` when sessions are off).
    pub session: Option<Session>,
}

/// What a stage decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next stage (or routing).
    Continue,
    /// Answer locally with this text; no backend is called.
    Answer(String),
}

/// What a stage's [`run`](RequestStage::run) gives back: its decision, or the wait for it.
pub enum StageRun<'a> {
    /// Decided at once. Most stages never wait (they look at the request and the session
    /// already loaded), and a future boxed for each of them on every request cost an
    /// allocation and a poll each.
    Now(Result<Flow, ProxyError>),
    /// Decided after a wait: a session store, another replica through Redis.
    Later(BoxFuture<'a, Result<Flow, ProxyError>>),
}

impl StageRun<'_> {
    /// The decision, waited for when it has to be.
    pub async fn decision(self) -> Result<Flow, ProxyError> {
        match self {
            Self::Now(decided) => decided,
            Self::Later(wait) => wait.await,
        }
    }
}

/// One step of the request path.
pub trait RequestStage: Send + Sync + 'static {
    /// Name for logs and `/v1/diagnostics`.
    fn name(&self) -> &'static str;
    /// Runs the stage on one request.
    fn run<'a>(&'a self, state: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a>;
}

/// The stages chosen at startup, in order.
#[derive(Clone, Default)]
pub struct Stages(Arc<[Arc<dyn RequestStage>]>);

impl std::fmt::Debug for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Stages {
    /// These stages, in order.
    pub fn new(stages: Vec<Arc<dyn RequestStage>>) -> Self {
        Self(stages.into())
    }

    /// Names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.name()).collect()
    }

    /// Runs every stage in order until one answers locally or fails.
    pub async fn run(
        &self,
        state: &AppState,
        call: &mut StageCall<'_>,
    ) -> Result<Flow, ProxyError> {
        for stage in self.0.iter() {
            match stage.run(state, call).decision().await? {
                Flow::Continue => {}
                answer @ Flow::Answer(_) => {
                    tracing::debug!(request_id = %call.ctx.request_id, stage = stage.name(), "answered locally");
                    return Ok(answer);
                }
            }
        }
        Ok(Flow::Continue)
    }
}
