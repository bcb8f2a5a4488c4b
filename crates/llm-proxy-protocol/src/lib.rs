//! Wire formats, pure data -> data: each format owns its types and its conversions to and from
//! the canonical model in `llm-proxy-api`. No I/O here.

use serde::de::DeserializeOwned;

pub mod anthropic;
pub mod carried;
pub mod citations;
mod extra_fields;
pub mod gemini;
pub(crate) mod json_out;
pub mod openai_chat;
pub mod openai_responses;
pub mod reasoning;
pub mod sse;
mod text_or_list;

/// A request body that could not be turned into the canonical model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Human-readable reason.
    pub message: String,
    /// Dotted path of the offending field (`messages[2].content`), when known.
    pub param: Option<String>,
    /// Whether the body was not JSON at all.
    pub malformed_json: bool,
}

impl FieldError {
    /// An error about one field.
    pub fn new(message: impl Into<String>, param: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param.into()),
            malformed_json: false,
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// Reads JSON bytes into `T`: the whole body's UTF-8 is checked once, then the text is parsed
/// (where reading the bytes directly checks every string on its own, a call per string, the
/// largest single cost of parsing a long conversation). Bytes that are not UTF-8 are parsed as
/// bytes, so the error says where they stop being text, as before.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Parses a JSON body into a wire type. Syntax errors and type errors are told apart, and type
/// errors name the field path. Bodies are parsed without tracking the path (which costs as much
/// as a fifth of the parse); only a body that fails is parsed again to name the field.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    if let Ok(v) = from_json(body) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(FieldError {
                    message: format!("request body is not valid JSON: {inner}"),
                    param: None,
                    malformed_json: true,
                });
            }
            let mut param = (path != "." && !path.is_empty()).then_some(path);
            let text = inner.to_string();
            if let Some(field) = text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(field, _)| field)
            {
                param = Some(match param {
                    Some(p) => format!("{p}.{field}"),
                    None => field.to_owned(),
                });
            }
            let message = match &param {
                Some(p) => format!("invalid request field '{p}': {inner}"),
                None => format!("invalid request body: {inner}"),
            };
            return Err(FieldError {
                message,
                param,
                malformed_json: false,
            });
        }
    };
    de.end().map_err(|e| FieldError {
        message: format!("request body is not valid JSON: {e}"),
        param: None,
        malformed_json: true,
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "fields exist to be type-checked by serde")]
    struct Body {
        model: String,
        messages: Vec<Msg>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[expect(dead_code, reason = "fields exist to be type-checked by serde")]
    struct Msg {
        role: String,
    }

    #[test]
    fn syntax_and_type_errors_are_distinguished() {
        let e = parse_body::<Body>(b"{\"model\": ").unwrap_err();
        assert!(e.malformed_json);
        let e = parse_body::<Body>(br#"{"model": 5, "messages": []}"#).unwrap_err();
        assert!(!e.malformed_json);
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = parse_body::<Body>(br#"{"model": "m", "messages": [{"role": 1}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = parse_body::<Body>(br#"{"messages": []}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"), "{}", e.message);
        let e = parse_body::<Body>(br#"{"model": "m", "messages": [{}]}"#).unwrap_err();
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].role"),
            "{}",
            e.message
        );
        assert!(
            parse_body::<Body>(br#"{"model": "m", "messages": []} x"#)
                .unwrap_err()
                .malformed_json
        );
    }
}
