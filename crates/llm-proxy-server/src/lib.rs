//! The llm-proxy gateway as a library: build an [`AppState`] from configuration, then serve
//! [`app`]. Handlers are thin; everything is testable without a socket.

pub mod auth;
pub mod brute_force;
pub mod capture;
pub mod commands;
pub mod config;
pub mod context;
pub mod context_window;
pub mod dangerous_commands;
pub mod data_dir;
pub mod dedup;
pub mod edge;
pub mod error;
pub mod finish;
pub mod frontend;
pub mod metrics;
pub mod model_registry;
pub mod parse_budget;
pub mod pipeline;
pub mod plugins;
pub mod processors;
pub mod redaction;
pub mod redis_state;
pub mod responses_store;
pub mod routing;
pub mod sealing;
pub mod serve;
pub mod service;
pub mod session;
pub mod stages;
pub mod startup_error;
pub mod state;
pub mod telemetry;
pub mod timing;
pub mod token_count;
pub mod token_estimate;
pub mod tool_access;
pub mod ui;
pub mod usage;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use data_dir::Stores;
pub use error::{ProxyError, WireFormat};
pub use service::App;
pub use startup_error::StartupError;
pub use state::AppState;

/// The service of the main listener: every frontend, the model calls on their exact paths
/// served without the router ([`service`]).
pub fn app(state: AppState) -> App {
    metrics::install();
    let limit = state.config().max_body_bytes;
    let router = Router::new()
        .route(
            "/v1/chat/completions",
            post(frontend::openai_chat::chat_completions),
        )
        .route(
            "/chat/completions",
            post(frontend::openai_chat::chat_completions),
        )
        .route(
            "/v1/responses",
            post(frontend::responses::create).get(frontend::responses_ws::upgrade),
        )
        .route(
            "/responses",
            post(frontend::responses::create).get(frontend::responses_ws::upgrade),
        )
        .route(
            "/v1/responses/{id}",
            get(frontend::responses::get).delete(frontend::responses::delete),
        )
        .route(
            "/responses/{id}",
            get(frontend::responses::get).delete(frontend::responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(frontend::responses::input_items),
        )
        .route(
            "/responses/{id}/input_items",
            get(frontend::responses::input_items),
        )
        .route("/v1/models", get(frontend::models::list_models))
        // Gemini's `/v1` surface (newer `google-genai`) shares the prefix with OpenAI's.
        .route(
            "/v1/models/{*rest}",
            post(frontend::gemini::model_action).get(frontend::models::get_model),
        )
        .route("/models", get(frontend::models::list_models))
        .route("/", get(frontend::models::health))
        .route("/health", get(frontend::models::health))
        .route("/metrics", get(metrics::render))
        .route("/v1/diagnostics", get(frontend::diagnostics::diagnostics))
        .route("/v1/usage/stats", get(usage::api::stats))
        .route("/v1/usage/recent", get(usage::api::recent))
        .route("/v1/usage/export", get(usage::api::export))
        .route("/v1/usage/series", get(usage::api::series))
        .route("/v1/status", get(ui::status::status))
        .route("/ui", get(ui::asset))
        .route("/ui/", get(ui::asset))
        .route("/ui/{file}", get(ui::asset))
        .route(
            "/v1/diagnostics/backends/{instance}/reactivate",
            post(frontend::diagnostics::reactivate),
        )
        .route("/v1/messages", post(frontend::anthropic::messages))
        .route(
            "/v1/messages/count_tokens",
            post(frontend::anthropic::count_tokens),
        )
        .route(
            "/anthropic/v1/messages",
            post(frontend::anthropic::messages),
        )
        .route(
            "/anthropic/v1/messages/count_tokens",
            post(frontend::anthropic::count_tokens),
        )
        .route(
            "/anthropic/v1/models",
            get(frontend::anthropic::list_models),
        )
        .route("/anthropic/v1/health", get(frontend::anthropic::health))
        .route("/v1beta/models", get(frontend::gemini::list_models))
        // axum cannot route on the `:` of `{model}:{method}`; the handler splits it.
        .route(
            "/v1beta/models/{*rest}",
            post(frontend::gemini::model_action).get(frontend::gemini::get_model),
        )
        .fallback(not_found);
    let edge = edge::Edge {
        format_of: auth::format_for_path,
        max_body_bytes: limit,
        state: state.clone(),
    };
    finish(router, edge, service::main_paths)
}

/// The router behind the edge layer; with the client side of the wire capture outermost when
/// capture is on (every request then goes through the router), otherwise with the model calls
/// `direct` names served in front of it.
fn finish(
    router: Router<AppState>,
    edge: edge::Edge,
    direct: fn(&str) -> Option<service::Direct>,
) -> App {
    let state = edge.state.clone();
    let router = router
        .layer(DefaultBodyLimit::max(edge.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            edge.clone(),
            edge::guard,
        ));
    match state.http_client().sink() {
        Some(sink) => App::routed(
            router
                .layer(axum::middleware::from_fn_with_state(
                    sink.clone(),
                    capture::capture_client_side,
                ))
                .with_state(state),
        ),
        None => App::with_direct(router.with_state(state), edge, direct),
    }
}

/// The service of the dedicated Anthropic listener (`anthropic_port`), for clients that
/// hard-code root paths: `/v1/messages`, `/v1/messages/count_tokens` and `/v1/models`, all in
/// Anthropic's shapes and error envelope.
pub fn anthropic_app(state: AppState) -> App {
    let limit = state.config().max_body_bytes;
    let router = Router::new()
        .route("/v1/messages", post(frontend::anthropic::messages))
        .route(
            "/v1/messages/count_tokens",
            post(frontend::anthropic::count_tokens),
        )
        .route("/v1/models", get(frontend::anthropic::list_models))
        .route("/", get(frontend::models::health))
        .route("/health", get(frontend::models::health))
        .route("/metrics", get(metrics::render))
        .fallback(anthropic_not_found);
    let edge = edge::Edge {
        // Every refusal in the Anthropic envelope (its `/v1/models` is Anthropic's too).
        format_of: |_| WireFormat::Anthropic,
        max_body_bytes: limit,
        state: state.clone(),
    };
    finish(router, edge, service::anthropic_paths)
}

async fn anthropic_not_found(req: Request) -> Response {
    ProxyError::NotFound(format!("{} {}", req.method(), req.uri().path()))
        .into_response_for(WireFormat::Anthropic)
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_owned();
    ProxyError::NotFound(format!("{} {path}", req.method()))
        .into_response_for(auth::format_for_path(&path))
        .into_response()
}
