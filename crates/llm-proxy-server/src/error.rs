//! `ProxyError`: every failure a client can see, its HTTP status (decided in one match), and
//! its rendering in each client protocol's own error envelope.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use llm_proxy_api::error::{BackendError, ErrorKind};
use llm_proxy_protocol::FieldError;
use llm_proxy_protocol::{anthropic, gemini, openai_chat};

/// A failure on the client-facing side.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// The body is not JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// A field is missing, mistyped or invalid.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// Offending field.
        param: Option<String>,
        /// Machine-readable code.
        code: Option<&'static str>,
    },
    /// The body exceeds the configured limit.
    #[error("request body exceeds the {limit}-byte limit")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The proxy is shedding load (the request parsing budget stayed full).
    #[error("the proxy is busy parsing other large requests; retry shortly")]
    Overloaded {
        /// What the client is told to wait (`Retry-After`).
        retry_after: Duration,
    },
    /// Missing or wrong client key.
    #[error("invalid or missing API key")]
    Unauthorized,
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The framework refused the request before a handler ran (wrong method, unreadable path
    /// parameter, ...); `status` is the one it chose.
    #[error("{message}")]
    Rejected {
        /// The status the framework chose.
        status: StatusCode,
        /// Why.
        message: String,
    },
    /// The request body did not arrive within `server.body_read_timeout`.
    #[error("the request body did not arrive within {} seconds", .0.as_secs_f64())]
    BodyReadTimeout(Duration),
    /// This client address failed authentication too often and is blocked for a while.
    #[error("too many failed authentication attempts; retry in {} seconds", .retry_after.as_secs().max(1))]
    AuthBlocked {
        /// How long the block still lasts.
        retry_after: Duration,
    },
    /// The proxy is shutting down and its grace for in-flight requests is over.
    #[error("the proxy is shutting down; retry the request")]
    ShuttingDown,
    /// A WebSocket upgrade of `/v1/responses` while `responses_api.websocket.enabled` is off
    /// (426: Codex then falls back to HTTP at once).
    #[error("WebSocket mode is disabled on this proxy; use POST /v1/responses")]
    WebSocketDisabled,
    /// `responses_api.websocket.max_connections` WebSocket connections are already open.
    #[error(
        "too many WebSocket connections are open (at most {max}); retry later or use POST /v1/responses"
    )]
    WebSocketLimit {
        /// The configured cap.
        max: usize,
    },
    /// The shared store holding state this request needs (a Responses continuation's
    /// conversation) cannot be reached; a retry may succeed once it is back.
    #[error(
        "the shared state store is unavailable, so the stored {what} cannot be read; retry shortly"
    )]
    StoreUnavailable {
        /// What could not be read (`response`).
        what: &'static str,
    },
    /// An identical request is in flight or was answered moments ago (request dedup).
    #[error(
        "an identical request is in flight or was answered moments ago; the proxy refuses \
         duplicates so the call is not paid twice (retry in {} s, or change the request)",
        .retry_after.as_secs_f64().ceil()
    )]
    DuplicateRequest {
        /// When a repeat would be accepted.
        retry_after: Duration,
    },
    /// A backend failed.
    #[error("{0}")]
    Backend(#[from] BackendError),
}

impl From<FieldError> for ProxyError {
    fn from(e: FieldError) -> Self {
        if e.malformed_json {
            Self::MalformedJson(e.message)
        } else {
            Self::InvalidRequest {
                message: e.message,
                param: e.param,
                code: None,
            }
        }
    }
}

impl ProxyError {
    /// A 400 about one field.
    pub fn invalid(
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&'static str>,
    ) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
            code,
        }
    }

    /// The one place deciding the HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Rejected { status, .. } => *status,
            Self::BodyReadTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::AuthBlocked { .. } | Self::DuplicateRequest { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::ShuttingDown | Self::WebSocketLimit { .. } | Self::StoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::WebSocketDisabled => StatusCode::UPGRADE_REQUIRED,
            Self::Backend(e) => match e.kind {
                ErrorKind::ContextLengthExceeded => StatusCode::BAD_REQUEST,
                // Upstream 4xx are passed through as they came.
                ErrorKind::InvalidRequest
                | ErrorKind::Authentication
                | ErrorKind::PermissionDenied
                | ErrorKind::NotFound
                | ErrorKind::RateLimited
                    if e.upstream_status.is_some_and(|s| (400..500).contains(&s)) =>
                {
                    e.upstream_status
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .unwrap_or(StatusCode::BAD_REQUEST)
                }
                ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
                ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
                ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Unavailable => StatusCode::BAD_GATEWAY,
                ErrorKind::Config | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// Failure class used for envelope `type` fields and metrics labels.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::MalformedJson(_) | Self::InvalidRequest { .. } | Self::PayloadTooLarge { .. } => {
                ErrorKind::InvalidRequest
            }
            Self::Overloaded { .. } => ErrorKind::Unavailable,
            Self::Unauthorized => ErrorKind::Authentication,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Rejected { status, .. } => match status.as_u16() {
                401 => ErrorKind::Authentication,
                403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                429 => ErrorKind::RateLimited,
                500.. => ErrorKind::Internal,
                _ => ErrorKind::InvalidRequest,
            },
            Self::BodyReadTimeout(_) => ErrorKind::InvalidRequest,
            Self::AuthBlocked { .. } | Self::DuplicateRequest { .. } => ErrorKind::RateLimited,
            Self::ShuttingDown | Self::WebSocketLimit { .. } | Self::StoreUnavailable { .. } => {
                ErrorKind::Unavailable
            }
            Self::WebSocketDisabled => ErrorKind::InvalidRequest,
            Self::Backend(e) => e.kind,
        }
    }

    /// Low-cardinality label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Overloaded { .. } => "overloaded",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::BodyReadTimeout(_) => "body_read_timeout",
            Self::AuthBlocked { .. } => "auth_blocked",
            Self::DuplicateRequest { .. } => "duplicate_request",
            Self::ShuttingDown => "shutting_down",
            Self::WebSocketDisabled => "websocket_disabled",
            Self::WebSocketLimit { .. } => "websocket_limit",
            Self::StoreUnavailable { .. } => "store_unavailable",
            Self::Backend(e) => e.kind.label(),
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            Self::Backend(e) if e.kind == ErrorKind::ContextLengthExceeded => {
                Some(e.param.as_deref().unwrap_or("input"))
            }
            Self::Backend(e) => e.param.as_deref(),
            _ => None,
        }
    }

    /// Machine-readable error code, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::MalformedJson(_) => Some("invalid_json"),
            Self::InvalidRequest { code, .. } => *code,
            Self::PayloadTooLarge { .. } => Some("request_too_large"),
            Self::Overloaded { .. } => Some("overloaded"),
            Self::Unauthorized => Some("invalid_api_key"),
            Self::NotFound(_) => Some("not_found"),
            Self::Rejected { status, .. } if *status == StatusCode::METHOD_NOT_ALLOWED => {
                Some("method_not_allowed")
            }
            Self::Rejected { .. } => None,
            Self::BodyReadTimeout(_) => Some("request_timeout"),
            Self::AuthBlocked { .. } => Some("too_many_failed_attempts"),
            Self::DuplicateRequest { .. } => Some("duplicate_request"),
            Self::ShuttingDown => Some("shutting_down"),
            Self::WebSocketDisabled => Some("websocket_disabled"),
            Self::WebSocketLimit { .. } => Some("websocket_connection_limit"),
            Self::StoreUnavailable { .. } => Some("store_unavailable"),
            Self::Backend(e) if e.kind == ErrorKind::ContextLengthExceeded => {
                Some("context_length_exceeded")
            }
            Self::Backend(e) => e.code.as_deref(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Backend(e) => e.retry_after,
            Self::Overloaded { retry_after } => Some(*retry_after),
            Self::AuthBlocked { retry_after } | Self::DuplicateRequest { retry_after } => {
                Some(*retry_after)
            }
            Self::StoreUnavailable { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The error body in `format`'s envelope.
    pub fn body(&self, format: WireFormat) -> serde_json::Value {
        let message = self.to_string();
        match format {
            WireFormat::OpenAi | WireFormat::OpenAiResponses => {
                openai_chat::error::error_body(self.kind(), &message, self.param(), self.code())
            }
            WireFormat::Anthropic => anthropic::error::error_body(self.kind(), &message),
            WireFormat::Gemini => {
                gemini::error::error_body(self.kind(), self.status().as_u16(), &message)
            }
        }
    }

    /// The in-stream error object (OpenAI `error` member of a chunk).
    pub fn stream_error_object(&self) -> serde_json::Value {
        openai_chat::error::error_object(self.kind(), &self.to_string(), self.param(), self.code())
    }

    /// A full HTTP response in `format`'s envelope.
    pub fn into_response_for(self, format: WireFormat) -> Response {
        let status = self.status();
        let body = Bytes::from(serde_json::to_vec(&self.body(format)).unwrap_or_default());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after()
            && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Client protocols, each with its own error envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// OpenAI `{error: {message, type, param, code}}`.
    OpenAi,
    /// OpenAI Responses: the OpenAI envelope; `response.failed` after streaming began.
    OpenAiResponses,
    /// Anthropic `{type: "error", error: {type, message}}`.
    Anthropic,
    /// Gemini `{error: {code, message, status}}`.
    Gemini,
}

impl WireFormat {
    /// Low-cardinality label (metrics, logs).
    pub fn label(self) -> &'static str {
        match self {
            Self::OpenAi => "openai_chat",
            Self::OpenAiResponses => "openai_responses",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        self.into_response_for(WireFormat::OpenAi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let upstream =
            |s: u16| ProxyError::Backend(BackendError::from_upstream_status(s, "m")).status();
        assert_eq!(upstream(400), StatusCode::BAD_REQUEST);
        assert_eq!(upstream(401), StatusCode::UNAUTHORIZED);
        assert_eq!(upstream(404), StatusCode::NOT_FOUND);
        assert_eq!(upstream(422), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(upstream(429), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(upstream(500), StatusCode::BAD_GATEWAY);
        assert_eq!(upstream(503), StatusCode::BAD_GATEWAY);
        assert_eq!(upstream(504), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            ProxyError::Backend(BackendError::transport("refused")).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            ProxyError::Backend(BackendError::timeout("slow")).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            ProxyError::PayloadTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn context_overflow_is_normalised() {
        let e = ProxyError::Backend(BackendError::from_upstream_status(
            400,
            "prompt is too long: 300000 tokens > 200000 maximum",
        ));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let body = e.body(WireFormat::OpenAi);
        assert_eq!(body["error"]["code"], "context_length_exceeded");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "input");
        let body = e.body(WireFormat::Anthropic);
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        let body = e.body(WireFormat::Gemini);
        assert_eq!(body["error"]["code"], 400);
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    }
}
