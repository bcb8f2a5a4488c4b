//! OpenAI Chat Completions (`POST /v1/chat/completions`): wire types, conversions, SSE chunks,
//! and the error envelope.

pub mod error;
pub mod from_model;
pub mod stream;
pub mod to_model;
pub mod types;

pub use error::{decode_error, error_body};
pub use from_model::{request_from_model, response_from_model};
pub use stream::{ChunkDecoder, ChunkRenderer};
pub use to_model::{request_to_model, response_to_model};
pub use types::ChatCompletionRequest;
