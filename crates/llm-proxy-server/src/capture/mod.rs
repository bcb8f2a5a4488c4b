//! Wire capture: where the capture-aware HTTP client's boundary records go. The sink is behind
//! `llm_proxy_api::http::CaptureSink`; the JSON-lines file ([`JsonlCaptureSink`]) is the one
//! we ship. Secrets never reach a capture: the client masks credential headers (by name, and
//! every value marked sensitive) and URL credentials, and the sink passes URLs, headers and
//! bodies through the process's `Scrubber` (every configured secret and key shape).

pub mod jsonl;

pub use jsonl::{DEFAULT_QUEUE_CAPACITY, JsonlCaptureSink};
