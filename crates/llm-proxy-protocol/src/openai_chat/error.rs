//! The OpenAI error envelope `{"error": {"message", "type", "param", "code"}}`: rendering for
//! clients and decoding upstream error bodies into `BackendError`s.

use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use serde_json::{Value, json};

/// OpenAI `error.type` for a failure kind.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::ContextLengthExceeded | ErrorKind::NotFound => {
            "invalid_request_error"
        }
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::PermissionDenied => "permission_error",
        ErrorKind::RateLimited => "rate_limit_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Unavailable => "upstream_error",
        ErrorKind::Config | ErrorKind::Internal => "server_error",
    }
}

/// The envelope's inner object.
pub fn error_object(
    kind: ErrorKind,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({
        "message": message,
        "type": error_type(kind),
        "param": param,
        "code": code,
    })
}

/// The full envelope.
pub fn error_body(
    kind: ErrorKind,
    message: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({ "error": error_object(kind, message, param, code) })
}

/// Builds a `BackendError` from an upstream error JSON value (`{"error": {...}}`,
/// `{"error": "text"}`, `{"message": ...}`, `{"detail": ...}`).
pub fn error_from_value(status: Option<u16>, v: &Value) -> BackendError {
    let inner = v.get("error").unwrap_or(v);
    let message = match inner {
        Value::String(s) => s.clone(),
        _ => inner
            .get("message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .map(|m| match m {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| v.to_string()),
    };
    let code = inner.get("code").and_then(|c| match c {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let param = inner
        .get("param")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let err_type = inner.get("type").and_then(Value::as_str);
    let status = status
        .or_else(|| {
            code.as_deref()
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (400..600).contains(c))
        })
        .unwrap_or(502);
    let mut err = BackendError::from_upstream_status(status, message);
    if code.as_deref() == Some("context_length_exceeded") {
        err.kind = ErrorKind::ContextLengthExceeded;
        err.retryable = false;
    }
    if err.kind != ErrorKind::ContextLengthExceeded {
        err.code = code.or_else(|| err_type.map(str::to_owned));
    }
    err.param = param;
    err
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
                format!("upstream returned HTTP {status}: {}", truncate(text, 500))
            };
            let mut e = BackendError::from_upstream_status(status, message);
            e.origin = ErrorSource::Upstream;
            e
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_openai_error_envelope() {
        let e = decode_error(
            400,
            br#"{"error":{"message":"This model's maximum context length is 128000 tokens","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = decode_error(401, br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#);
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert_eq!(e.message, "Incorrect API key");
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
        let e = decode_error(503, b"<html>bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("503"));
        let e = decode_error(422, br#"{"detail":"nope"}"#);
        assert_eq!(e.message, "nope");
    }

    #[test]
    fn envelope_shape() {
        let v = error_body(ErrorKind::InvalidRequest, "bad", Some("model"), None);
        assert_eq!(
            v,
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": null}})
        );
    }
}
