//! The benchmark's one error type: whatever stops a run before it can report.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("unexpected status {0}: {1}")]
    Status(hyper::StatusCode, String),
    #[error("stream ended after {got} of {want} text events")]
    ShortStream { got: u32, want: u32 },
    #[error("proxy process: {0}")]
    Proxy(String),
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("writing results: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
