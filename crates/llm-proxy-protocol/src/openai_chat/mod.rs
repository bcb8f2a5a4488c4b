//! OpenAI Chat Completions (`POST /v1/chat/completions`): wire types, conversions, SSE chunks,
//! and the error envelope.

pub mod error;
pub mod from_model;
pub mod stream;
pub mod to_model;
pub mod types;
mod write;

pub use error::{decode_error, error_body};
pub use from_model::{
    reasoning_notes, request_body_from_model, request_from_model, response_from_model,
};
pub use stream::{ChunkDecoder, ChunkRenderer};
pub use to_model::{PROTOCOL, request_to_model, response_to_model};
pub use types::ChatCompletionRequest;
pub use write::response_bytes;

use bytes::Bytes;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::{ChatRequest, ChatResponse};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};

/// The OpenAI Chat conversions as a `WireCodec` for the translation service.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAiChatCodec;

impl WireCodec for OpenAiChatCodec {
    fn protocol(&self) -> &'static str {
        to_model::PROTOCOL
    }

    fn encode_request(&self, req: &ChatRequest, model: &str) -> Result<Bytes, BackendError> {
        let wire = request_from_model(req, model, from_model::EncodeOptions::default());
        serde_json::to_vec(&wire)
            .map(Bytes::from)
            .map_err(|e| BackendError::internal(format!("cannot encode request: {e}")))
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, BackendError> {
        let wire: types::ChatCompletionResponse = crate::from_json(body).map_err(|e| {
            BackendError::transport(format!("upstream sent an invalid response body: {e}"))
        })?;
        Ok(response_to_model(wire, model))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(ChunkDecoder::new())
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> BackendError {
        decode_error(status, body)
    }
}
