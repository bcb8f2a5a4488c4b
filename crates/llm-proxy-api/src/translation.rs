//! `TranslationService`: the canonical <-> wire conversions of every protocol, handed to
//! backend factories so a plugin for an OpenAI-, Anthropic- or Gemini-compatible service reuses
//! them instead of writing its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::BackendError;
use crate::model::{ChatRequest, ChatResponse};
use crate::stream::StreamEvent;

/// Incremental decoder of an upstream streamed body into events.
pub trait StreamDecoder: Send {
    /// Feeds raw body bytes; decoded events are appended to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), BackendError>;
    /// The body ended; flushes what is pending.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError>;
    /// Whether the protocol's end marker (`[DONE]`, `message_stop`) was seen, so nothing
    /// more is expected even if the upstream keeps the body open.
    fn is_finished(&self) -> bool {
        false
    }
}

/// One protocol's conversions, as seen from a backend (upstream side).
pub trait WireCodec: Send + Sync {
    /// Protocol name (`openai_chat`, `anthropic`, `gemini`).
    fn protocol(&self) -> &'static str;
    /// Encodes a canonical request as this protocol's request body.
    fn encode_request(&self, req: &ChatRequest, model: &str) -> Result<Bytes, BackendError>;
    /// Decodes a non-streamed response body.
    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, BackendError>;
    /// A decoder for a streamed response body.
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;
    /// Turns an error body into a `BackendError` with the upstream's message.
    fn decode_error(&self, status: u16, body: &[u8]) -> BackendError;
    /// Lossy notes for what [`WireCodec::decode_response`] could not carry from `body` (they
    /// reach the client's `x-llm-proxy-lossy` as [`crate::stream::StreamEvent::Dropped`]).
    fn answer_notes(&self, _body: &[u8]) -> Vec<String> {
        Vec::new()
    }
}

/// Registry of protocol codecs.
#[derive(Default, Clone)]
pub struct TranslationService {
    codecs: BTreeMap<&'static str, Arc<dyn WireCodec>>,
}

impl std::fmt::Debug for TranslationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.codecs.keys()).finish()
    }
}

impl TranslationService {
    /// An empty service.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a codec.
    pub fn register(&mut self, codec: Arc<dyn WireCodec>) {
        self.codecs.insert(codec.protocol(), codec);
    }

    /// The codec for `protocol`.
    pub fn codec(&self, protocol: &str) -> Option<Arc<dyn WireCodec>> {
        self.codecs.get(protocol).cloned()
    }

    /// Registered protocol names.
    pub fn protocols(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.codecs.keys().copied()
    }
}
