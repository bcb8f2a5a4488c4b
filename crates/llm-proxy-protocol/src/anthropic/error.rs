//! The Anthropic error envelope `{"type": "error", "error": {"type", "message"}}`: rendering for
//! clients and decoding upstream error bodies and in-stream `error` events into
//! `BackendError`s.

use llm_proxy_api::error::{BackendError, ErrorKind};
use serde_json::{Value, json};

/// Anthropic `error.type` for a failure kind. Anthropic has no timeout or gateway type: those
/// are `api_error`, like other server-side failures.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::Config | ErrorKind::Internal => {
            "api_error"
        }
    }
}

/// The full envelope.
pub fn error_body(kind: ErrorKind, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(kind), "message": message}})
}

/// The HTTP status Anthropic pairs with an error type (for in-stream errors, which have none).
pub fn status_for_error_type(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    }
}

/// Builds a `BackendError` from an Anthropic error value (the envelope or its inner `error`).
/// Without an HTTP status (in-stream errors) the status is derived from the error type.
pub fn error_from_value(status: Option<u16>, v: &Value) -> BackendError {
    let inner = v.get("error").filter(|e| e.is_object()).unwrap_or(v);
    let error_type = inner.get("type").and_then(Value::as_str);
    let message = inner
        .get("message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("error"))
        .map(|m| match m {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_else(|| v.to_string());
    let status = status.unwrap_or_else(|| error_type.map_or(502, status_for_error_type));
    let mut err = BackendError::from_upstream_status(status, message);
    if err.kind != ErrorKind::ContextLengthExceeded
        && let Some(t) = error_type
    {
        err.code = Some(t.to_owned());
    }
    err
}

/// Decodes an upstream error response body.
pub fn decode_error(status: u16, body: &[u8]) -> BackendError {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return error_from_value(Some(status), &v);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("upstream returned HTTP {status}")
    } else {
        let cut = text
            .char_indices()
            .nth(500)
            .map_or(text, |(i, _)| &text[..i]);
        format!("upstream returned HTTP {status}: {cut}")
    };
    BackendError::from_upstream_status(status, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_anthropic_envelopes() {
        let e = decode_error(
            529,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        assert_eq!(
            (e.kind, e.retryable, e.upstream_status),
            (ErrorKind::Unavailable, true, Some(529))
        );
        assert_eq!(e.message, "Overloaded");
        assert_eq!(e.code.as_deref(), Some("overloaded_error"));
        let e = decode_error(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert!(!e.retryable);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = decode_error(401, br#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#);
        assert_eq!(e.kind, ErrorKind::Authentication);
        let e = decode_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("502") && e.message.contains("bad gateway"));
    }

    #[test]
    fn in_stream_errors_take_their_status_from_the_type() {
        let v =
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}});
        let e = error_from_value(None, &v);
        assert_eq!(
            (e.kind, e.upstream_status),
            (ErrorKind::RateLimited, Some(429))
        );
        let e = error_from_value(
            None,
            &json!({"type": "overloaded_error", "message": "Overloaded"}),
        );
        assert_eq!(
            (e.kind, e.upstream_status),
            (ErrorKind::Unavailable, Some(529))
        );
    }

    #[test]
    fn envelope_shape() {
        assert_eq!(
            error_body(ErrorKind::RateLimited, "slow"),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
        );
        assert_eq!(error_type(ErrorKind::Timeout), "api_error");
        assert_eq!(error_type(ErrorKind::NotFound), "not_found_error");
    }
}
