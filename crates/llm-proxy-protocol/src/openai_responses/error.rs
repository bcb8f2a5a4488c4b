//! Errors for Responses clients: the same `{"error": {...}}` envelope as OpenAI Chat for HTTP
//! errors, and the `code` a failed response object carries after streaming began.

use llm_proxy_api::error::ErrorKind;

pub use crate::openai_chat::error::{error_body, error_object, error_type};

/// `response.error.code` for a failure: the specific code when there is one, else one of the
/// codes the Responses API uses by failure class.
pub fn failed_code(kind: ErrorKind, code: Option<&str>) -> String {
    if let Some(code) = code {
        return code.to_owned();
    }
    match kind {
        ErrorKind::RateLimited => "rate_limit_exceeded",
        ErrorKind::ContextLengthExceeded => "context_length_exceeded",
        ErrorKind::InvalidRequest | ErrorKind::NotFound => "invalid_prompt",
        _ => "server_error",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_codes() {
        assert_eq!(
            failed_code(ErrorKind::RateLimited, None),
            "rate_limit_exceeded"
        );
        assert_eq!(failed_code(ErrorKind::Unavailable, None), "server_error");
        assert_eq!(
            failed_code(ErrorKind::Unavailable, Some("overloaded")),
            "overloaded"
        );
    }
}
