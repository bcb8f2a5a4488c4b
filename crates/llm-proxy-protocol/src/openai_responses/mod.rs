//! OpenAI Responses (`POST /v1/responses`): wire types, conversions, stream events and errors.
//! Clients only for now: no backend speaks Responses upstream, so there is no `WireCodec`.
//! Reasoning state the proxy hands to clients is sealed by a caller-supplied [`Sealer`].

pub mod error;
pub mod from_model;
pub mod opaque;
pub mod stream;
pub mod to_model;
pub mod types;

pub use from_model::{dropped_from_response, response_from_model, usage_from_model};
pub use opaque::{SEALED_PREFIX, Sealer};
pub use stream::{EventRenderer, ResponseContext};
pub use to_model::{Converted, ToolKinds, request_to_model};
pub use types::ResponsesRequest;

/// Protocol name used in `ChatRequest::extra_protocol`.
pub const PROTOCOL: &str = "openai_responses";
