//! The aggregated model list (`instance:model` ids of every configured instance), served as
//! `GET /v1/models` in OpenAI's shape (the Anthropic and Gemini frontends reshape the same
//! list), and `GET /health`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::error::{ProxyError, WireFormat};

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

fn openai_entry(m: &ListedModel) -> Value {
    json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.owned_by})
}

/// `GET /v1/models` in OpenAI's list shape, or Gemini's for Google clients (which share the
/// path).
pub async fn list_models(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Json<Value> {
    if super::gemini::is_google_client(&headers, query.as_deref()) {
        return Json(super::gemini::model_list(&state).await);
    }
    let data: Vec<Value> = listed_models(&state)
        .await
        .iter()
        .map(openai_entry)
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

/// `GET /v1/models/{model}`: one model, in the caller's shape (OpenAI's, or Gemini's for Google
/// clients).
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if super::gemini::is_google_client(&headers, query.as_deref()) {
        return super::gemini::get_model(State(state), Path(id)).await;
    }
    match listed_models(&state).await.iter().find(|m| m.id == id) {
        Some(m) => Json(openai_entry(m)).into_response(),
        None => ProxyError::NotFound(format!("model '{id}'")).into_response_for(WireFormat::OpenAi),
    }
}

/// Liveness (`GET`/`HEAD` on `/health` and `/`).
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
