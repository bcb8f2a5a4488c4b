//! The llm-proxy gateway as a library: build an [`AppState`] from configuration, then serve
//! [`app`]. Handlers are thin; everything is testable without a socket.

pub mod auth;
pub mod config;
pub mod error;
pub mod frontend;
pub mod pipeline;
pub mod plugins;
pub mod routing;
pub mod state;
pub mod timing;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::{ProxyError, WireFormat};
pub use state::{AppState, StartupError};

/// The router serving every frontend.
pub fn app(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(frontend::openai_chat::chat_completions))
        .route("/chat/completions", post(frontend::openai_chat::chat_completions))
        .route("/v1/models", get(frontend::models::list_models))
        .route("/models", get(frontend::models::list_models))
        .route("/health", get(frontend::models::health))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_key))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    ProxyError::NotFound(format!("{} {path}", req.method()))
        .into_response_for(auth::format_for_path(&path))
        .into_response()
}
