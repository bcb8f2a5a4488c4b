//! `GET /v1/models` and `GET /health`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// Models of every configured instance, as `instance:model` ids usable as selectors.
pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let slots: Vec<_> = state.backends().values().collect();
    let lists =
        futures::future::join_all(slots.iter().map(|slot| state.instance_models(slot))).await;
    let mut data = Vec::new();
    for (slot, models) in slots.iter().zip(lists) {
        for m in models {
            data.push(json!({
                "id": format!("{}:{}", slot.instance, m.id),
                "object": "model",
                "created": 0,
                "owned_by": m.owned_by.unwrap_or_else(|| slot.backend_type.clone()),
            }));
        }
    }
    Json(json!({ "object": "list", "data": data }))
}

/// Liveness.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
