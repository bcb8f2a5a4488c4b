//! The one data path shared by every frontend: canonical request -> route -> backend call ->
//! event stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;

use llm_proxy_api::stream::EventStream;
use llm_proxy_api::{CallContext, ChatRequest, LossyNotes};
use tokio_util::sync::CancellationToken;

use crate::error::ProxyError;
use crate::routing::{self, Route};
use crate::state::AppState;
use crate::timing::WaitClock;

/// Per-request data the pipeline needs from the frontend.
#[derive(Debug, Clone)]
pub struct CallMeta {
    /// Proxy request id.
    pub request_id: String,
    /// Upstream wait accounting.
    pub clock: WaitClock,
    /// Lossy-conversion notes.
    pub lossy: LossyNotes,
    /// Client request headers.
    pub headers: Arc<HeaderMap>,
}

/// A call in flight: its event stream and where it went.
pub struct Dispatched {
    /// Events from the backend, already wrapped for wait accounting.
    pub stream: EventStream,
    /// The route taken.
    pub route: Route,
}

/// Routes `req` and starts the backend call. Returns once the upstream accepted it.
pub async fn dispatch(
    state: &AppState,
    req: ChatRequest,
    meta: &CallMeta,
) -> Result<Dispatched, ProxyError> {
    let route = routing::resolve(state, &req.model)?;
    let slot = state
        .backends()
        .get(&route.instance)
        .ok_or_else(|| ProxyError::Backend(llm_proxy_api::BackendError::internal("route to a missing instance")))?;
    let backend = slot.backend.as_ref().map_err(|why| {
        ProxyError::Backend(llm_proxy_api::BackendError::config(format!(
            "backend '{}' is unavailable: {why}",
            slot.instance
        )))
    })?;
    let ctx = CallContext {
        request_id: meta.request_id.clone(),
        session_id: None,
        model: route.model.clone(),
        deadline: Some(Instant::now() + state.config().proxy_timeout),
        cancel: CancellationToken::new(),
        client_headers: meta.headers.clone(),
        lossy: meta.lossy.clone(),
    };
    tracing::debug!(instance = %route.instance, model = %route.model, "dispatching");
    let stream = meta.clock.future(backend.stream(&ctx, req)).await?;
    Ok(Dispatched { stream: Box::pin(meta.clock.stream(stream)), route })
}

/// Milliseconds of `d` as a float.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
