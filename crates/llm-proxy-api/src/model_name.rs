//! Upstream model names as clients send them: the rules every backend applies before a name
//! reaches an upstream request, and the escaped URL path segment for backends that put the
//! model in a URL (so a name can never climb out of the API's base path).

use crate::error::BackendError;

/// The longest model name accepted, in bytes. Real names are far shorter (vendor paths such as
/// `accounts/fireworks/models/llama-v3p1-405b-instruct` included).
pub const MAX_MODEL_NAME_LEN: usize = 256;

fn invalid(message: String) -> BackendError {
    BackendError::invalid_request(message)
        .with_code("invalid_model")
        .with_param("model")
}

/// Checks a model name any backend may send upstream: not empty, at most
/// [`MAX_MODEL_NAME_LEN`] bytes, no control characters.
///
/// # Errors
///
/// An `InvalidRequest` error (code `invalid_model`, param `model`) saying which rule failed.
pub fn check_model_name(model: &str) -> Result<(), BackendError> {
    if model.trim().is_empty() {
        return Err(invalid("the model name is empty".to_owned()));
    }
    if model.len() > MAX_MODEL_NAME_LEN {
        return Err(invalid(format!(
            "the model name is {} bytes long; at most {MAX_MODEL_NAME_LEN} are allowed",
            model.len()
        )));
    }
    if model.chars().any(char::is_control) {
        return Err(invalid(
            "the model name contains control characters".to_owned(),
        ));
    }
    Ok(())
}

/// The model as one URL path segment: [`check_model_name`], then path separators (`/`, `\`),
/// `%` escapes and dot-only names are refused outright (some servers and proxies decode or
/// normalise them), and every byte outside the RFC 3986 unreserved set is percent-encoded.
///
/// # Errors
///
/// An `InvalidRequest` error (code `invalid_model`, param `model`).
pub fn model_path_segment(model: &str) -> Result<String, BackendError> {
    check_model_name(model)?;
    if let Some(c) = model.chars().find(|c| matches!(c, '/' | '\\' | '%')) {
        return Err(invalid(format!(
            "the model name may not contain '{c}' (it is placed in the upstream URL)"
        )));
    }
    if model.chars().all(|c| c == '.') {
        return Err(invalid(format!("'{model}' is not a valid model name")));
    }
    let mut out = String::with_capacity(model.len());
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn ordinary_names_pass_unchanged() {
        for name in ["gemini-2.5-flash", "gpt-4o", "llama3.1_8b~q4"] {
            assert_eq!(model_path_segment(name).unwrap(), name);
        }
        check_model_name("accounts/fireworks/models/llama-v3p1-405b-instruct").unwrap();
        check_model_name("llama3:8b").unwrap();
    }

    #[test]
    fn traversal_and_separators_are_refused() {
        for name in [
            "a/../../../evil",
            "x\\..\\..\\y",
            "..%2F..%2Fz",
            "..",
            ".",
            "",
            " ",
            "a\nb",
        ] {
            let err = model_path_segment(name).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{name:?}");
            assert_eq!(err.code.as_deref(), Some("invalid_model"));
            assert!(!err.retryable && !err.counts_against_backend);
        }
    }

    #[test]
    fn other_characters_are_escaped() {
        assert_eq!(
            model_path_segment("a:b?c#d e").unwrap(),
            "a%3Ab%3Fc%23d%20e"
        );
        assert_eq!(model_path_segment("é").unwrap(), "%C3%A9");
    }

    #[test]
    fn length_is_capped() {
        check_model_name(&"m".repeat(MAX_MODEL_NAME_LEN)).unwrap();
        let err = check_model_name(&"m".repeat(100_000)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.len() < 200, "the name is not echoed back");
    }
}
