//! The two client wire formats the bench speaks: path, headers and canned request bodies, and
//! which streamed events carry generated text.

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientApi {
    /// `POST /v1/chat/completions`, the same protocol as the mock upstream.
    OpenAi,
    /// `POST /v1/messages`, which the proxy translates to the OpenAI-compatible upstream.
    Anthropic,
}

impl ClientApi {
    pub fn path(self) -> &'static str {
        match self {
            Self::OpenAi => "/v1/chat/completions",
            Self::Anthropic => "/v1/messages",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OpenAi => "OpenAI",
            Self::Anthropic => "Anthropic->OpenAI",
        }
    }

    /// A small request body, serialized once: the bench measures the hop, not the payload.
    pub fn body(self, stream: bool) -> Bytes {
        Bytes::from_static(match (self, stream) {
            (Self::OpenAi, false) => {
                br#"{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#
            }
            (Self::OpenAi, true) => {
                br#"{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true}"#
            }
            (Self::Anthropic, false) => {
                br#"{"model":"gpt-bench","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}"#
            }
            (Self::Anthropic, true) => {
                br#"{"model":"gpt-bench","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}],"stream":true}"#
            }
        })
    }

    pub fn add_headers(self, headers: &mut HeaderMap) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            Self::OpenAi => {
                headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer bench-key"));
            }
            Self::Anthropic => {
                headers.insert(
                    HeaderName::from_static("x-api-key"),
                    HeaderValue::from_static("bench-key"),
                );
                headers.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static("2023-06-01"),
                );
            }
        }
    }

    /// Whether the `data:` payload of one SSE event carries generated text; keep-alives, role-only
    /// deltas, usage and lifecycle events do not count as tokens.
    pub fn carries_text(self, data: &[u8]) -> bool {
        match self {
            Self::OpenAi => serde_json::from_slice::<OpenAiChunk>(data).is_ok_and(|chunk| {
                chunk.choices.iter().any(|choice| {
                    choice
                        .delta
                        .as_ref()
                        .and_then(|delta| delta.content.as_deref())
                        .is_some_and(|text| !text.is_empty())
                })
            }),
            Self::Anthropic => serde_json::from_slice::<AnthropicEvent>(data).is_ok_and(|event| {
                event.kind == "content_block_delta"
                    && event
                        .delta
                        .and_then(|delta| delta.text)
                        .is_some_and(|text| !text.is_empty())
            }),
        }
    }
}

#[derive(Deserialize)]
struct OpenAiChunk {
    #[serde(default)]
    choices: Vec<OpenAiChoice>,
}

#[derive(Deserialize)]
struct OpenAiChoice {
    #[serde(default)]
    delta: Option<OpenAiDelta>,
}

#[derive(Deserialize)]
struct OpenAiDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct AnthropicEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    delta: Option<AnthropicDelta>,
}

#[derive(Deserialize)]
struct AnthropicDelta {
    #[serde(default)]
    text: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_text_chunks_count_and_others_do_not() {
        let api = ClientApi::OpenAi;
        assert!(api.carries_text(br#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#));
        assert!(!api.carries_text(br#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#));
        assert!(!api.carries_text(br#"{"choices":[{"index":0,"delta":{"content":""}}]}"#));
        assert!(!api.carries_text(br#"{"choices":[],"usage":{"total_tokens":3}}"#));
        assert!(!api.carries_text(b"[DONE]"));
    }

    #[test]
    fn anthropic_text_deltas_count_and_others_do_not() {
        let api = ClientApi::Anthropic;
        assert!(api.carries_text(
            br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#
        ));
        assert!(!api.carries_text(br#"{"type":"message_start","message":{}}"#));
        assert!(
            !api.carries_text(br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#)
        );
    }

    #[test]
    fn bodies_are_json() {
        for api in [ClientApi::OpenAi, ClientApi::Anthropic] {
            for stream in [false, true] {
                let value: serde_json::Value = serde_json::from_slice(&api.body(stream)).unwrap();
                assert_eq!(value["model"], "gpt-bench");
                assert_eq!(value["stream"].as_bool().unwrap_or(false), stream);
            }
        }
    }
}
