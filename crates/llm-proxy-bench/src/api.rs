//! The three client wire formats the bench speaks: path, headers and canned request bodies, and
//! which streamed events carry generated text.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// `POST /v1/responses`, which the proxy translates to the OpenAI-compatible upstream.
    Responses,
}

impl ClientApi {
    pub fn path(self) -> &'static str {
        match self {
            Self::OpenAi => "/v1/chat/completions",
            Self::Anthropic => "/v1/messages",
            Self::Responses => "/v1/responses",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::OpenAi => "OpenAI",
            Self::Anthropic => "Anthropic->OpenAI",
            Self::Responses => "Responses->OpenAI",
        }
    }

    /// A small request body, new for every request (a counter in the user's text): clients do
    /// not send the same request twice, and the proxy refuses repeats within its dedup window,
    /// so the bench measures dedup's cost on distinct requests instead of dodging it.
    pub fn body(self, stream: bool) -> Bytes {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let template: &str = match (self, stream) {
            (Self::OpenAi, false) => {
                r#"{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}"#
            }
            (Self::OpenAi, true) => {
                r#"{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16,"stream":true}"#
            }
            (Self::Anthropic, false) => {
                r#"{"model":"gpt-bench","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}"#
            }
            (Self::Anthropic, true) => {
                r#"{"model":"gpt-bench","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}],"stream":true}"#
            }
            (Self::Responses, false) => {
                r#"{"model":"gpt-bench","input":"Say hello.","max_output_tokens":16}"#
            }
            (Self::Responses, true) => {
                r#"{"model":"gpt-bench","input":"Say hello.","max_output_tokens":16,"stream":true}"#
            }
        };
        Bytes::from(template.replacen("Say hello.", &format!("Say hello. ({n})"), 1))
    }

    pub fn add_headers(self, headers: &mut HeaderMap) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match self {
            Self::OpenAi | Self::Responses => {
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
            Self::Responses => serde_json::from_slice::<ResponsesEvent>(data).is_ok_and(|event| {
                event.kind == "response.output_text.delta"
                    && event.delta.is_some_and(|text| !text.is_empty())
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

/// One Responses stream event; only text deltas carry a string `delta`.
#[derive(Deserialize)]
struct ResponsesEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
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
    fn responses_text_deltas_count_and_lifecycle_events_do_not() {
        let api = ClientApi::Responses;
        assert!(api.carries_text(
            br#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"hi"}"#
        ));
        assert!(!api.carries_text(
            br#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":""}"#
        ));
        for lifecycle in [
            br#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress"}}"#.as_slice(),
            br#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1"}}"#,
            br#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"message","content":[]}}"#,
            br#"{"type":"response.content_part.added","sequence_number":3,"part":{"type":"output_text","text":""}}"#,
            br#"{"type":"response.output_text.done","sequence_number":5,"text":"hi"}"#,
            br#"{"type":"response.function_call_arguments.delta","sequence_number":6,"delta":"{\"a\""}"#,
            br#"{"type":"response.completed","sequence_number":7,"response":{"id":"resp_1","status":"completed"}}"#,
        ] {
            assert!(!api.carries_text(lifecycle), "{}", String::from_utf8_lossy(lifecycle));
        }
        // The other protocols' text events are not Responses text.
        assert!(!api.carries_text(br#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#));
    }

    #[test]
    fn responses_speaks_its_own_path_and_bearer_auth() {
        let api = ClientApi::Responses;
        assert_eq!(api.path(), "/v1/responses");
        let mut headers = HeaderMap::new();
        api.add_headers(&mut headers);
        assert_eq!(headers[AUTHORIZATION], "Bearer bench-key");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(&api.body(false)).unwrap();
        assert!(body["input"].as_str().unwrap().starts_with("Say hello. ("));
        assert_ne!(api.body(false), api.body(false), "every request is new");
        assert_eq!(body["max_output_tokens"], 16);
    }

    #[test]
    fn bodies_are_json() {
        for api in [
            ClientApi::OpenAi,
            ClientApi::Anthropic,
            ClientApi::Responses,
        ] {
            for stream in [false, true] {
                let value: serde_json::Value = serde_json::from_slice(&api.body(stream)).unwrap();
                assert_eq!(value["model"], "gpt-bench");
                assert_eq!(value["stream"].as_bool().unwrap_or(false), stream);
            }
        }
    }
}
