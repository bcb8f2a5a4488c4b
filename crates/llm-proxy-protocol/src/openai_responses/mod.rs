//! OpenAI Responses (`POST /v1/responses`): wire types, conversions, stream events and errors,
//! for clients (`to_model`, `stream`, `from_model`) and for upstreams (`request`, `decode`,
//! and the `WireCodec` backends use to speak to a Responses upstream). Reasoning state the
//! proxy hands to clients is sealed by a caller-supplied [`Sealer`].

pub mod decode;
pub mod error;
pub mod from_model;
pub mod object;
pub mod opaque;
pub mod request;
pub mod stream;
pub mod to_model;
pub mod types;

pub use decode::{ResponsesStreamDecoder, decode_error, response_to_model};
pub use from_model::{
    collect_response, dropped_from_response, response_from_model, usage_from_model,
};
pub use object::Echo;
pub use opaque::{SEALED_PREFIX, Sealer};
pub use request::{EncodedRequest, request_from_model};
pub use stream::{EventRenderer, ResponseContext};
pub use to_model::{Converted, ToolKinds, request_to_model};
pub use types::ResponsesRequest;

use bytes::Bytes;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::{ChatRequest, ChatResponse};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};

/// Protocol name used in `ChatRequest::extra_protocol` and the translation registry.
pub const PROTOCOL: &str = "openai_responses";

/// The OpenAI Responses conversions as a `WireCodec` for the translation service.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenAiResponsesCodec;

impl WireCodec for OpenAiResponsesCodec {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn encode_request(&self, req: &ChatRequest, model: &str) -> Result<Bytes, BackendError> {
        serde_json::to_vec(&request_from_model(req, model).body)
            .map(Bytes::from)
            .map_err(|e| BackendError::internal(format!("cannot encode request: {e}")))
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, BackendError> {
        let v: serde_json::Value = crate::from_json(body).map_err(|e| {
            BackendError::transport(format!("upstream sent an invalid response body: {e}"))
        })?;
        response_to_model(&v, model)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(ResponsesStreamDecoder::new())
    }

    fn decode_error(&self, status: u16, body: &[u8]) -> BackendError {
        decode_error(status, body)
    }
}
