//! OpenTelemetry traces (`telemetry.otlp_endpoint`): one SERVER span per request and one
//! CLIENT span per backend attempt, with the GenAI semantic conventions' attributes. Off by
//! default; when off a request carries no attempt log and no hook runs, so the only cost on
//! the request path is the branch that finds tracing off.
//!
//! The pipeline notes attempts ([`attempts::AttemptLog`]); the finish hook
//! ([`hook::TraceRequests`]) reads them with the request's usage tally into one plain
//! [`spans::FinishedRequest`] and queues it (bounded, drop-and-count); the exporter thread
//! ([`export::TraceSink`]) builds the spans and sends them in batches over OTLP/HTTP
//! (protobuf), never on the request path. Spans carry no prompt or completion content.

pub mod attempts;
#[cfg(feature = "otel")]
pub mod export;
#[cfg(feature = "otel")]
pub mod hook;
#[cfg(feature = "otel")]
pub mod spans;

#[cfg(feature = "otel")]
pub use export::TraceSink;
