//! The `Backend` trait every connector implements, and the `CallContext` a call carries.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::BackendError;
use crate::model::ChatRequest;
use crate::stream::EventStream;

/// Everything a backend call needs besides the request itself.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// Proxy request id (also in captures and logs).
    pub request_id: String,
    /// Session id, when known.
    pub session_id: Option<String>,
    /// Upstream model name to use (the selector already resolved).
    pub model: String,
    /// The call must finish by then.
    pub deadline: Option<Instant>,
    /// Cancelled when the client goes away or the request has finished. It is the request's
    /// token, shared by all its attempts: a backend waits on it, it never cancels it.
    pub cancel: CancellationToken,
    /// The client's request headers, for connectors that forward a few of them (e.g.
    /// `anthropic-beta`). Never forward credentials from here.
    pub client_headers: Arc<http::HeaderMap>,
    /// Where conversions record what they had to drop (reported to the client in the
    /// `x-llm-proxy-lossy` header and logged).
    pub lossy: LossyNotes,
}

pub use crate::lossy::LossyNotes;

impl CallContext {
    /// A context for `model` with a fresh request id and no deadline.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            request_id: crate::ids::request_id(),
            session_id: None,
            model: model.into(),
            deadline: None,
            cancel: CancellationToken::new(),
            client_headers: Arc::default(),
            lossy: LossyNotes::new(),
        }
    }
}

/// A model a backend can serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// Model id as the upstream names it.
    pub id: String,
    /// Owner / vendor, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
}

impl ModelInfo {
    /// A model with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            owned_by: None,
        }
    }
}

/// A provider connection. Object-safe; capabilities are defaulted methods so adding one never
/// breaks an existing plugin.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Starts a call. Returns once the upstream accepted the request (status known), so errors
    /// before the first byte are plain `Err`s that routing can fail over on; errors after that
    /// arrive inside the stream.
    async fn stream(
        &self,
        ctx: &CallContext,
        req: &ChatRequest,
    ) -> Result<EventStream, BackendError>;

    /// Models this backend serves. Defaults to none (the configured `models` list is used).
    async fn models(&self) -> Result<Vec<ModelInfo>, BackendError> {
        Ok(Vec::new())
    }

    /// Cheap liveness check. Defaults to healthy.
    async fn health(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Whether the backend uses personal credentials (OAuth logins, local CLIs); such backends
    /// are refused in multi-user mode.
    fn requires_personal_credentials(&self) -> bool {
        false
    }
}
