//! The aggregated model list (`instance:model` ids of every configured instance), served as
//! `GET /v1/models` in OpenAI's shape (the Anthropic and Gemini frontends reshape the same
//! list), and `GET /health`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::state::AppState;

/// One routable model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedModel {
    /// `instance:model`, usable as a selector.
    pub id: String,
    /// Owner / vendor (the backend type when the upstream does not say).
    pub owned_by: String,
}

/// Models of every configured instance, as `instance:model` ids usable as selectors.
pub async fn listed_models(state: &AppState) -> Vec<ListedModel> {
    let slots: Vec<_> = state.backends().values().collect();
    let lists =
        futures::future::join_all(slots.iter().map(|slot| state.instance_models(slot))).await;
    let mut out = Vec::new();
    for (slot, models) in slots.iter().zip(lists) {
        for m in models {
            out.push(ListedModel {
                id: format!("{}:{}", slot.instance, m.id),
                owned_by: m.owned_by.unwrap_or_else(|| slot.backend_type.clone()),
            });
        }
    }
    out
}

/// `GET /v1/models` in OpenAI's list shape.
pub async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = listed_models(&state)
        .await
        .into_iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by}))
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

/// Liveness.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
