//! # llm-proxy-api: how to write a backend
//!
//! This crate is the only dependency an external backend needs. A backend converts the
//! canonical [`ChatRequest`](model::ChatRequest) into a provider call and answers with a stream
//! of [`StreamEvent`](stream::StreamEvent)s; a non-streaming answer is the same stream,
//! collected by the proxy.
//!
//! 1. Implement [`Backend`](backend::Backend): `stream(ctx, req)` returns once the upstream
//!    accepted the call (errors before the first byte are `Err` so the proxy can fail over),
//!    then yields events.
//! 2. Write a provider function returning a
//!    [`BackendPluginDefinition`](plugin::BackendPluginDefinition) whose factory builds the
//!    backend from [`FactoryArgs`](plugin::FactoryArgs) without network I/O.
//! 3. Register it: `llm_proxy_api::backend_plugin!("my-backend", my_provider);` A crate linked
//!    into the `llm-proxy` binary is an installed plugin.
//! 4. Do upstream HTTP through the [`CaptureAwareClient`](http::CaptureAwareClient) you are
//!    given so wire captures include your traffic; [`upstream`] is the whole exchange the
//!    built-in backends use (per-instance client, timeouts, error mapping, credential
//!    scrubbing, capture, body -> events), taking your protocol's
//!    [`ResponseDecoder`](upstream::ResponseDecoder).
#![deny(missing_docs)]

pub mod backend;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
mod lean;
pub mod lossy;
pub mod model;
pub mod model_name;
pub mod plugin;
pub mod scrub;
pub mod stream;
#[cfg(test)]
mod test_tls;
pub mod translation;
pub mod upstream;

#[doc(hidden)]
pub use inventory;

pub use backend::{Backend, CallContext, LossyNotes, ModelInfo};
pub use config::{BackendInstanceConfig, Secret, SharedConfig};
pub use error::{BackendError, ErrorKind, ErrorSource};
pub use http::{
    CaptureAwareClient, PLUGIN_HTTP_CAPTURE_CONTEXT_EXTENSION, PLUGIN_HTTP_CAPTURED_EXTENSION,
    PluginHttpCaptureContext, build_capture_aware_client, capture_http_response,
};
pub use model::{ChatRequest, ChatResponse, Message, Part, Role, Usage};
pub use plugin::{
    BACKEND_PLUGIN_ENTRY_POINT_GROUP, BackendFactory, BackendPluginDefinition,
    BackendPluginProvider, FactoryArgs, PluginCompatibility, PluginPostBuildHook, ServiceProvider,
};
pub use scrub::Scrubber;
pub use stream::{Collector, EventStream, StreamEvent, collect, response_events};
pub use translation::{StreamDecoder, TranslationService, WireCodec};

/// Version of the running core, compared against [`PluginCompatibility`].
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");
