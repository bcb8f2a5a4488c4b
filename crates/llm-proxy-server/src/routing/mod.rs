//! Routing: from the model string a client sent (a selector) to a backend instance and the
//! upstream model name.

use crate::error::ProxyError;
use crate::state::{AppState, BackendSlot};

/// Where one call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Backend instance id.
    pub instance: String,
    /// Upstream model name.
    pub model: String,
}

/// A parsed `backend:model` / `model` leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leaf<'a> {
    backend: Option<&'a str>,
    model: &'a str,
}

/// Explicit backend iff the first `:` precedes the first `/` (before any `?`).
fn parse_leaf(selector: &str) -> Leaf<'_> {
    let s = selector.trim();
    let head = s.split_once('?').map_or(s, |(h, _)| h);
    let colon = head.find(':');
    let slash = head.find('/');
    match colon {
        Some(c) if slash.is_none_or(|sl| c < sl) => {
            let (backend, model) = (&head[..c], &head[c + 1..]);
            if matches!(backend, "alias" | "auto") {
                Leaf { backend: None, model: head }
            } else {
                Leaf { backend: Some(backend), model }
            }
        }
        _ => Leaf { backend: None, model: head },
    }
}

fn find_instance<'s>(state: &'s AppState, backend: &str) -> Option<&'s BackendSlot> {
    let backends = state.backends();
    if let Some(slot) = backends.get(backend) {
        return Some(slot);
    }
    // A family name reaches any of its instances; prefer a usable one.
    let mut family = backends.values().filter(|s| {
        s.instance.split_once('.').map_or(s.instance.as_str(), |(t, _)| t) == backend
            || s.backend_type == backend
    });
    let first = family.next()?;
    if first.backend.is_ok() {
        return Some(first);
    }
    family.find(|s| s.backend.is_ok()).or(Some(first))
}

fn available_backends(state: &AppState) -> String {
    state.backends().keys().cloned().collect::<Vec<_>>().join(", ")
}

fn unsupported_composite(selector: &str) -> Option<ProxyError> {
    selector.contains(['|', '^', '!']).then(|| {
        ProxyError::invalid(
            format!("selector '{selector}': composite selectors (|, ^, !) are not supported yet"),
            Some("model"),
            Some("unsupported_construct"),
        )
    })
}

/// Checks a configured selector at startup.
pub fn validate_selector(state: &AppState, selector: &str) -> Result<(), String> {
    if let Some(e) = unsupported_composite(selector) {
        return Err(e.to_string());
    }
    let leaf = parse_leaf(selector);
    let backend = leaf.backend.unwrap_or(leaf.model);
    match find_instance(state, backend) {
        Some(_) => Ok(()),
        None => Err(format!(
            "unknown backend '{backend}'; configured backends: {}",
            available_backends(state)
        )),
    }
}

/// Resolves the client's model string.
pub fn resolve(state: &AppState, requested: &str) -> Result<Route, ProxyError> {
    let cfg = &state.config().backends;
    let selector = cfg.static_route.as_deref().unwrap_or(requested);
    if let Some(e) = unsupported_composite(selector) {
        return Err(e);
    }
    let leaf = parse_leaf(selector);
    let (backend, model) = match leaf.backend {
        Some(b) => (b, leaf.model),
        None => {
            let default = cfg.default_backend.as_deref().unwrap_or("mock");
            let d = parse_leaf(default);
            match d.backend {
                // `backend:model` default: its backend, the client's model when given.
                Some(b) => (b, if leaf.model.is_empty() { d.model } else { leaf.model }),
                None => (d.model, leaf.model),
            }
        }
    };
    if backend.is_empty() {
        return Err(ProxyError::invalid(
            format!("selector '{selector}' names no backend"),
            Some("model"),
            Some("invalid_leaf"),
        ));
    }
    let Some(slot) = find_instance(state, backend) else {
        return Err(ProxyError::invalid(
            format!("Unknown backend '{backend}'. Available backends: {}", available_backends(state)),
            Some("model"),
            Some("model_not_found"),
        ));
    };
    if model.is_empty() {
        return Err(ProxyError::invalid(
            "the 'model' field must name a model (or backend:model)",
            Some("model"),
            Some("model_not_found"),
        ));
    }
    if !slot.models.is_empty() && !slot.models.iter().any(|m| m == model) {
        return Err(ProxyError::invalid(
            format!(
                "Model '{model}' is not available on backend '{}'. Available models: {}",
                slot.instance,
                slot.models.join(", ")
            ),
            Some("model"),
            Some("model_not_found"),
        ));
    }
    Ok(Route { instance: slot.instance.clone(), model: model.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_rule_first_colon_before_first_slash() {
        assert_eq!(parse_leaf("openai:gpt-4o"), Leaf { backend: Some("openai"), model: "gpt-4o" });
        assert_eq!(
            parse_leaf("openrouter:anthropic/claude-3-haiku:beta"),
            Leaf { backend: Some("openrouter"), model: "anthropic/claude-3-haiku:beta" }
        );
        assert_eq!(parse_leaf("vendor/model:variant"), Leaf { backend: None, model: "vendor/model:variant" });
        assert_eq!(parse_leaf("gpt-4o"), Leaf { backend: None, model: "gpt-4o" });
        assert_eq!(parse_leaf("openai.1:gpt-4o?temperature=1"), Leaf { backend: Some("openai.1"), model: "gpt-4o" });
        assert_eq!(parse_leaf("alias:fast"), Leaf { backend: None, model: "alias:fast" });
    }
}
