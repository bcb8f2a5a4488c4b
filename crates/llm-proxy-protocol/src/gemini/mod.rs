//! Gemini `generateContent` (v1beta): wire types, conversions, schema sanitising, SSE frames,
//! the error envelope, and the codec backends use for Gemini-compatible upstreams.

pub mod error;
pub mod from_model;
pub mod schema;
pub mod stream;
pub mod to_model;
pub mod types;

use bytes::Bytes;
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};
use llm_proxy_api::model::{ChatRequest, ChatResponse};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};

pub use error::{decode_error, error_body, error_status};
pub use from_model::{request_from_model, response_from_model};
pub use schema::sanitize_schema;
pub use stream::{ChunkRenderer, SseDecoder};
pub use to_model::{request_to_model, response_to_model};
pub use types::{GenerateContentRequest, GenerateContentResponse};

/// Protocol name used in `ChatRequest::extra_protocol` and the translation registry.
pub const PROTOCOL: &str = "gemini";

/// The Gemini conversions as a backend sees them (upstream side).
#[derive(Debug, Default, Clone, Copy)]
pub struct GeminiCodec;

impl WireCodec for GeminiCodec {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    /// The model goes in the URL (`models/{model}:generateContent`), not in the body. Lossy
    /// notes are discarded here; connectors that report them call `request_from_model`.
    fn encode_request(&self, req: &ChatRequest, _model: &str) -> Result<Bytes, BackendError> {
        let mut lossy = Vec::new();
        let body = request_from_model(req, &mut lossy);
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .map_err(|e| BackendError::internal(format!("could not encode Gemini request: {e}")))
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, BackendError> {
        let resp: GenerateContentResponse = crate::from_json(body).map_err(|e| {
            BackendError::new(
                ErrorKind::Unavailable,
                ErrorSource::Upstream,
                format!("upstream sent an invalid Gemini response: {e}"),
            )
        })?;
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

    #[test]
    fn codec_round_trips_through_bytes() {
        let codec = GeminiCodec;
        assert_eq!(codec.protocol(), "gemini");
        let req = ChatRequest {
            model: "ignored".into(),
            messages: vec![Message::text(Role::User, "hi")],
            ..ChatRequest::default()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&codec.encode_request(&req, "gemini-2.5-flash").unwrap())
                .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        );
        let resp = codec
            .decode_response(
                br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"yo"}]},"finishReason":"STOP"}]}"#,
                "gemini-2.5-flash",
            )
            .unwrap();
        assert_eq!(resp.joined_text(), "yo");
        assert_eq!(resp.model, "gemini-2.5-flash");
        assert!(codec.decode_response(b"nope", "m").is_err());
        assert_eq!(codec.decode_error(429, b"{}").kind, ErrorKind::RateLimited);
    }
}
