//! The Google error envelope `{"error": {"code", "message", "status"}}`: rendering for clients
//! and decoding upstream error bodies (including `RetryInfo` and invalid-API-key details) into
//! `BackendError`s.

use std::time::Duration;

use llm_proxy_api::error::{BackendError, ErrorKind};
use serde_json::{Value, json};

/// Google's canonical status name for a failure kind.
pub fn error_status(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded => "INVALID_ARGUMENT",
        ErrorKind::Authentication => "UNAUTHENTICATED",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::RateLimited => "RESOURCE_EXHAUSTED",
        ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::Config | ErrorKind::Internal => "INTERNAL",
    }
}

/// The HTTP code Google pairs with each of the statuses above; used where no HTTP status
/// exists (an error inside a stream that already answered 200).
pub fn google_http_code(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded => 400,
        ErrorKind::Authentication => 401,
        ErrorKind::PermissionDenied => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::RateLimited => 429,
        ErrorKind::Timeout => 504,
        ErrorKind::Unavailable => 503,
        ErrorKind::Config | ErrorKind::Internal => 500,
    }
}

/// The full envelope.
pub fn error_body(kind: ErrorKind, http_status: u16, message: &str) -> Value {
    json!({
        "error": {
            "code": http_status,
            "message": message,
            "status": error_status(kind),
        }
    })
}

/// Builds a `BackendError` from a Google error value: `{"error": {...}}`, or the one-element
/// array `streamGenerateContent` answers with. `status` is the HTTP status when there is one.
pub fn error_from_value(status: Option<u16>, v: &Value) -> BackendError {
    let v = match v {
        Value::Array(items) => items.first().unwrap_or(v),
        other => other,
    };
    let inner = v.get("error").unwrap_or(v);
    let message = match inner {
        Value::String(s) => s.clone(),
        _ => match inner.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => v.to_string(),
        },
    };
    let google_status = inner.get("status").and_then(Value::as_str);
    let code = inner
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let http = status.or(code).unwrap_or(502);
    let mut err = BackendError::from_upstream_status(http, message);
    let details = inner
        .get("details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();

    if err.kind != ErrorKind::ContextLengthExceeded {
        // Google answers a bad API key with 400 INVALID_ARGUMENT; the detail says what it is.
        let key_invalid = details
            .iter()
            .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"));
        let refined = match google_status {
            _ if key_invalid => Some(ErrorKind::Authentication),
            Some("RESOURCE_EXHAUSTED") => Some(ErrorKind::RateLimited),
            Some("UNAUTHENTICATED") => Some(ErrorKind::Authentication),
            Some("PERMISSION_DENIED") => Some(ErrorKind::PermissionDenied),
            Some("DEADLINE_EXCEEDED") => Some(ErrorKind::Timeout),
            Some("UNAVAILABLE") => Some(ErrorKind::Unavailable),
            _ => None,
        };
        if let Some(kind) = refined.filter(|k| *k != err.kind) {
            err.kind = kind;
            // Same rule as the status classification: another backend may help.
            err.retryable = true;
        }
        err.code = google_status.map(str::to_owned);
    }
    let retry_after = details.iter().find_map(|d| {
        d.get("retryDelay")
            .and_then(Value::as_str)
            .and_then(parse_duration)
    });
    err.with_retry_after(retry_after)
}

/// Decodes an upstream error response body.
pub fn decode_error(status: u16, body: &[u8]) -> BackendError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => error_from_value(Some(status), &v),
        Err(_) => {
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
    }
}

/// Google's protobuf duration text (`"37s"`, `"0.5s"`).
fn parse_duration(s: &str) -> Option<Duration> {
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    if !secs.is_finite() {
        return None;
    }
    Duration::try_from_secs_f64(secs.min(86_400.0)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_shape() {
        assert_eq!(
            error_body(ErrorKind::RateLimited, 429, "slow down"),
            json!({"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}})
        );
        assert_eq!(
            error_status(ErrorKind::ContextLengthExceeded),
            "INVALID_ARGUMENT"
        );
        assert_eq!(error_status(ErrorKind::Config), "INTERNAL");
        assert_eq!(google_http_code(ErrorKind::Unavailable), 503);
    }

    #[test]
    fn decodes_rate_limit_with_retry_delay() {
        let e = decode_error(
            429,
            br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED",
                "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert!(e.retryable);
        assert_eq!(e.retry_after, Some(Duration::from_secs(37)));
        assert_eq!(e.code.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.message, "Quota exceeded");
    }

    #[test]
    fn invalid_api_key_is_authentication() {
        let e = decode_error(
            400,
            br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
                "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(e.retryable);
    }

    #[test]
    fn context_overflow_and_plain_bad_request() {
        let e = decode_error(
            400,
            br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = decode_error(400, br#"{"error":{"code":400,"message":"Invalid value at 'contents[0]'","status":"INVALID_ARGUMENT"}}"#);
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(!e.retryable);
    }

    #[test]
    fn array_bodies_in_stream_errors_and_non_json() {
        let e = decode_error(503, br#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#);
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.message, "The model is overloaded.");
        let e = error_from_value(
            None,
            &json!({"error": {"code": 500, "message": "boom", "status": "INTERNAL"}}),
        );
        assert_eq!(e.upstream_status, Some(500));
        assert_eq!(e.kind, ErrorKind::Unavailable);
        let e = decode_error(502, b"<html>bad gateway</html>");
        assert!(e.message.contains("502"));
    }
}
