//! Wire capture at the four boundaries: the client side (`inbound_request`,
//! `outbound_response`) is recorded by the [`boundary`] middleware, the upstream side
//! (`outbound_request`, `inbound_response`) by the capture-aware HTTP client
//! (`llm_proxy_api::http`); both go to one `CaptureSink`: the capture file
//! ([`CaptureFileSink`], rotated and pruned) as JSON lines ([`jsonl`]) or as the Python
//! project's CBOR V2 entries ([`cbor`]). Secrets never reach a
//! capture: credential headers are masked by name (and every value marked sensitive), and the
//! sink passes URLs, headers and bodies through the process's `Scrubber` (every configured
//! secret, client key and key shape).

pub mod boundary;
pub mod cbor;
pub mod jsonl;

pub use boundary::{CaptureLink, capture_client_side};
pub use cbor::open_cbor_capture;
pub use jsonl::{
    CaptureFileOptions, CaptureFileSink, DEFAULT_MAX_FILES, DEFAULT_QUEUE_CAPACITY,
    JsonlCaptureSink, rotated_files,
};
