//! Anthropic Messages (`POST /v1/messages`): wire types, conversions, SSE events, the error
//! envelope, and the `WireCodec` backends use to speak to Anthropic-compatible upstreams.

pub mod cache;
pub mod error;
pub mod from_model;
pub mod stream;
pub mod to_model;
pub mod types;
mod write;

use bytes::Bytes;
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::{ChatRequest, ChatResponse};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};
use serde_json::Value;

pub use error::{decode_error, error_body, error_type};
pub use from_model::{anthropic_answer_media, request_from_model, response_from_model};
pub use stream::{EventRenderer, SseDecoder, ping_frame};
pub use to_model::{request_to_model, response_to_model};
pub use types::{AnthropicRequest, AnthropicResponse};
pub use write::{request_bytes, response_bytes};

/// Protocol name used in `ChatRequest::extra_protocol` and the translation registry.
pub const PROTOCOL: &str = "anthropic";

/// Canonical <-> Anthropic conversions for upstream calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicCodec;

impl WireCodec for AnthropicCodec {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn encode_request(&self, req: &ChatRequest, model: &str) -> Result<Bytes, BackendError> {
        // No logger at this layer; callers that report losses use `request_from_model`.
        let mut lossy = Vec::new();
        let mut wire = request_from_model(req, model, &mut lossy);
        wire.stream = Some(req.stream);
        Ok(Bytes::from(request_bytes(&wire)))
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, BackendError> {
        let invalid = |e: serde_json::Error| {
            BackendError::new(
                ErrorKind::Unavailable,
                ErrorSource::Upstream,
                format!("upstream sent an invalid Anthropic response: {e}"),
            )
        };
        let value: Value = crate::from_json(body).map_err(invalid)?;
        if value.get("type").and_then(Value::as_str) == Some("error") {
            return Err(error::error_from_value(None, &value));
        }
        let resp: AnthropicResponse = serde_json::from_value(value).map_err(invalid)?;
        Ok(response_to_model(resp, model))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(SseDecoder::new())
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> BackendError {
        decode_error(status, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::model::{Message, Role};
    use llm_proxy_api::stream::StreamEvent;

    #[test]
    fn codec_encodes_decodes_and_classifies() {
        let codec = AnthropicCodec;
        assert_eq!(codec.protocol(), "anthropic");
        let req = ChatRequest {
            model: "alias".into(),
            messages: vec![Message::text(Role::User, "hi")],
            stream: true,
            ..ChatRequest::default()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&codec.encode_request(&req, "claude-x").unwrap()).unwrap();
        assert_eq!(body["model"], "claude-x");
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 4096);

        let resp = codec
            .decode_response(
                br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"yo"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#,
                "fallback",
            )
            .unwrap();
        assert_eq!(resp.joined_text(), "yo");
        assert_eq!(resp.stop_sequence, None);

        // A matched stop sequence survives to an Anthropic client, not to others.
        let stopped = codec
            .decode_response(
                br#"{"id":"msg_2","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"one"}],"stop_reason":"stop_sequence","stop_sequence":"TWO","usage":{"input_tokens":1,"output_tokens":1}}"#,
                "fallback",
            )
            .unwrap();
        assert_eq!(stopped.stop_sequence.as_deref(), Some("TWO"));
        let wire = serde_json::to_value(super::response_from_model(
            &stopped,
            &crate::openai_responses::opaque::TestSealer(1),
        ))
        .unwrap();
        assert_eq!(
            (&wire["stop_reason"], &wire["stop_sequence"]),
            (
                &serde_json::json!("stop_sequence"),
                &serde_json::json!("TWO")
            )
        );
        let openai =
            serde_json::to_value(crate::openai_chat::response_from_model(&stopped)).unwrap();
        assert_eq!(openai["choices"][0]["finish_reason"], "stop");
        let err = codec
            .decode_response(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                "m",
            )
            .unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.kind),
            ("Overloaded", ErrorKind::Unavailable)
        );
        assert!(codec.decode_response(b"nope", "m").is_err());
        assert!(codec.decode_error(429, b"{}").retryable);
    }

    #[test]
    fn citations_in_an_answer_are_carried_streamed_and_not() {
        let cited = br#"{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"yo","citations":[{"type":"char_location","cited_text":"y","document_index":0,"start_char_index":0,"end_char_index":1}]}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#;
        let whole = AnthropicCodec.decode_response(cited, "c").unwrap();
        let sent: serde_json::Value = serde_json::from_slice(cited).unwrap();
        let rendered = serde_json::to_value(response_from_model(
            &whole,
            &crate::openai_responses::opaque::TestSealer(1),
        ))
        .unwrap();
        assert_eq!(rendered["content"], sent["content"]);

        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        let body = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\",\"citation\":{\"cited_text\":\"y\"}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"citations_delta\",\"citation\":{\"cited_text\":\"z\"}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"yo\"}}\n\n",
        );
        d.feed(body.as_bytes(), &mut out).unwrap();
        let citations: Vec<&StreamEvent> = out
            .iter()
            .filter(|e| matches!(e, StreamEvent::Citation { .. }))
            .collect();
        assert_eq!(
            citations,
            vec![
                &StreamEvent::Citation {
                    citation: serde_json::json!({"cited_text": "y"})
                },
                &StreamEvent::Citation {
                    citation: serde_json::json!({"cited_text": "z"})
                }
            ]
        );
        assert!(!out.iter().any(|e| matches!(e, StreamEvent::Dropped { .. })));
        assert!(out.contains(&StreamEvent::TextDelta { text: "yo".into() }));
    }
}
