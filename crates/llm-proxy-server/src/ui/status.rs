//! `GET /v1/status`: what the dashboard shows live besides usage — every backend instance
//! with its circuit breaker, the session store and how many sessions it holds, and whether
//! usage accounting and capture are on. Same access rules as the usage endpoints (loopback
//! only without client keys; any authenticated client with them). Unlike `/v1/diagnostics`
//! it names no plugin details and no instance's construction error.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::WireFormat;
use crate::state::AppState;
use crate::usage::api::refuse_remote_without_keys;

/// The handler.
pub async fn status(State(state): State<AppState>, req: Request) -> Response {
    if let Err(refusal) = refuse_remote_without_keys(&state, &req, "status") {
        return refusal.into_response_for(WireFormat::OpenAi);
    }
    Json(status_json(&state)).into_response()
}

/// The report.
pub fn status_json(state: &AppState) -> Value {
    let breakers = state.router().breakers().snapshot();
    let backends: Vec<Value> = state
        .backends()
        .values()
        .map(|slot| {
            json!({
                "instance": slot.instance,
                "backend_type": slot.backend_type,
                "available": slot.backend.is_ok(),
                "circuit_breaker": breakers.get(&slot.instance).cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let sessions = state.sessions();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "default_backend": state.config().backends.default_backend,
        "backends": backends,
        "sessions": {
            "store": sessions.kind(),
            "stored": sessions.stored_count(),
        },
        "usage": { "enabled": state.usage().is_some() },
        "capture": { "enabled": state.http_client().sink().is_some() },
    })
}
