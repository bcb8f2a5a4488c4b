//! `BackendError`: what went wrong in a backend call, where it came from, and whether a retry
//! may help. Failover reads these fields, never the message text.

use std::time::Duration;

/// What kind of failure this is; decides the client-facing status in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is invalid (400).
    InvalidRequest,
    /// The prompt does not fit the model's context window (400 `context_length_exceeded`).
    ContextLengthExceeded,
    /// Credentials missing or rejected (401).
    Authentication,
    /// Credentials valid but not allowed (403).
    PermissionDenied,
    /// Model or resource unknown upstream (404).
    NotFound,
    /// Rate limited (429).
    RateLimited,
    /// Upstream did not answer in time (504).
    Timeout,
    /// Upstream unreachable or failing (502).
    Unavailable,
    /// The proxy or a backend is misconfigured (500).
    Config,
    /// A bug or unexpected state in the proxy (500).
    Internal,
}

impl ErrorKind {
    /// Low-cardinality label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::ContextLengthExceeded => "context_length_exceeded",
            Self::Authentication => "authentication",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Config => "config",
            Self::Internal => "internal",
        }
    }
}

/// Where the failure originated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorSource {
    /// The upstream provider answered with an error.
    Upstream,
    /// The connection to the upstream failed (connect, TLS, reset, timeout).
    Transport,
    /// Configuration.
    Config,
    /// The proxy itself.
    Internal,
}

/// A failed backend call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// Failure class.
    pub kind: ErrorKind,
    /// Origin.
    pub origin: ErrorSource,
    /// Whether retrying (the same or another backend) may succeed.
    pub retryable: bool,
    /// HTTP status returned by the upstream, if any.
    pub upstream_status: Option<u16>,
    /// Upstream's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// Human-readable message; never contains secrets.
    pub message: String,
    /// Provider error code / type, if given (e.g. `insufficient_quota`).
    pub code: Option<String>,
    /// Offending request parameter, if known.
    pub param: Option<String>,
    /// Whether this failure says something about the backend's health, so that it may open
    /// the backend's circuit breaker: connection failures, timeouts the operator configured,
    /// upstream 5xx and 429. Failures the request itself caused (invalid input, client-chosen
    /// timeouts, upstream 4xx, requests that could not be built) never count, or one client
    /// could switch a backend off for everyone. Decided by the constructor.
    pub counts_against_backend: bool,
}

impl BackendError {
    /// A new error with retryability derived from the kind; it counts against the backend's
    /// health when the upstream or the connection to it was unavailable, slow or rate limited.
    pub fn new(kind: ErrorKind, origin: ErrorSource, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::RateLimited | ErrorKind::Timeout | ErrorKind::Unavailable
        );
        let counts_against_backend =
            retryable && matches!(origin, ErrorSource::Upstream | ErrorSource::Transport);
        Self {
            kind,
            origin,
            retryable,
            upstream_status: None,
            retry_after: None,
            message: message.into(),
            code: None,
            param: None,
            counts_against_backend,
        }
    }

    /// A proxy-internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, ErrorSource::Internal, message)
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, ErrorSource::Config, message)
    }

    /// An invalid request detected by the proxy or a connector before calling upstream.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, ErrorSource::Internal, message)
    }

    /// A transport failure (connection refused, reset, TLS).
    pub fn transport(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, ErrorSource::Transport, message)
    }

    /// The upstream did not answer within a timeout the operator configured.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, ErrorSource::Transport, message)
    }

    /// The upstream did not answer within a timeout the client chose (e.g. a selector's
    /// `ttft_timeout`): another backend may be tried, but the backend's health is not judged
    /// by a deadline the client picked.
    pub fn client_timeout(message: impl Into<String>) -> Self {
        Self {
            counts_against_backend: false,
            ..Self::new(ErrorKind::Timeout, ErrorSource::Transport, message)
        }
    }

    /// The request could not even be built or sent (an invalid URL, a rejected header): a
    /// problem of this request, never of the backend.
    pub fn unsendable_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, ErrorSource::Internal, message)
    }

    /// Classifies an upstream HTTP error status. The message should be the upstream's own.
    pub fn from_upstream_status(status: u16, message: impl Into<String>) -> Self {
        let message = message.into();
        let kind = match status {
            400 | 422 if looks_like_context_overflow(&message) => ErrorKind::ContextLengthExceeded,
            413 => ErrorKind::ContextLengthExceeded,
            400 | 405 | 409 | 415 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 | 403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 => ErrorKind::RateLimited,
            504 => ErrorKind::Timeout,
            s if s >= 500 => ErrorKind::Unavailable,
            _ => ErrorKind::InvalidRequest,
        };
        let mut err = Self::new(kind, ErrorSource::Upstream, message);
        err.upstream_status = Some(status);
        // Only 5xx, 408 and 429 speak about the backend's health; 4xx (401/403 too) answer
        // this request.
        err.counts_against_backend = matches!(
            kind,
            ErrorKind::RateLimited | ErrorKind::Timeout | ErrorKind::Unavailable
        );
        // Server errors and 401/403 make another backend worth trying; a bad request does not.
        err.retryable = matches!(
            kind,
            ErrorKind::RateLimited
                | ErrorKind::Timeout
                | ErrorKind::Unavailable
                | ErrorKind::Authentication
                | ErrorKind::PermissionDenied
        );
        if kind == ErrorKind::ContextLengthExceeded {
            err.code = Some("context_length_exceeded".to_owned());
        }
        err
    }

    /// Sets the provider's error code.
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the offending parameter.
    #[must_use]
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the retry-after hint.
    #[must_use]
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }
}

/// Providers word context overflows differently; these phrases cover OpenAI, Anthropic,
/// Gemini, OpenRouter, vLLM and llama.cpp style messages.
pub fn looks_like_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    const NEEDLES: [&str; 8] = [
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "prompt is too long",
        "too many tokens",
        "input token count",
        "exceeds the maximum number of tokens",
    ];
    NEEDLES.iter().any(|n| m.contains(n))
}

/// Parses a `Retry-After` header value given in seconds (HTTP dates are rare upstream and
/// ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    // `f64::min` would turn NaN into the cap, so non-finite values are refused first.
    if !secs.is_finite() {
        return None;
    }
    Duration::try_from_secs_f64(secs.min(86_400.0)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_statuses_classify() {
        assert_eq!(
            BackendError::from_upstream_status(503, "x").kind,
            ErrorKind::Unavailable
        );
        assert!(BackendError::from_upstream_status(503, "x").retryable);
        assert_eq!(
            BackendError::from_upstream_status(429, "x").kind,
            ErrorKind::RateLimited
        );
        let bad = BackendError::from_upstream_status(400, "bad field");
        assert_eq!(bad.kind, ErrorKind::InvalidRequest);
        assert!(!bad.retryable);
        let ctx = BackendError::from_upstream_status(
            400,
            "This model's maximum context length is 8192 tokens",
        );
        assert_eq!(ctx.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(ctx.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(
            BackendError::from_upstream_status(504, "x").kind,
            ErrorKind::Timeout
        );
    }

    #[test]
    fn only_health_signals_count_against_the_backend() {
        for status in [500, 502, 503, 504, 408, 429] {
            assert!(
                BackendError::from_upstream_status(status, "x").counts_against_backend,
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 413, 422] {
            assert!(
                !BackendError::from_upstream_status(status, "x").counts_against_backend,
                "{status}"
            );
        }
        assert!(BackendError::transport("refused").counts_against_backend);
        assert!(BackendError::timeout("slow").counts_against_backend);
        let chosen = BackendError::client_timeout("ttft_timeout");
        assert!(chosen.retryable && !chosen.counts_against_backend);
        for local in [
            BackendError::invalid_request("bad"),
            BackendError::unsendable_request("bad url"),
            BackendError::internal("bug"),
            BackendError::config("bad"),
        ] {
            assert!(!local.counts_against_backend, "{local}");
        }
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("inf"), None);
        assert_eq!(
            parse_retry_after("1e300"),
            Some(Duration::from_secs(86_400))
        );
    }
}
