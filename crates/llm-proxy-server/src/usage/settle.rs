//! What every usage store does to a record before writing it, whatever becomes of the write:
//! price it from the bundled model registry (when no price came with it) and count its tokens
//! and cost in Prometheus by backend and model.

use std::collections::{HashMap, HashSet};

use super::UsageRecord;
use crate::model_registry::ModelRegistry;

/// Prices and counts records; owned by a store's writer.
pub struct Settler {
    models: HashSet<String>,
    counters: HashMap<(String, String), crate::metrics::UsageCounters>,
}

impl Settler {
    /// `models` are the configured model names, the only ones Prometheus labels name (others
    /// are `other`).
    pub fn new(models: HashSet<String>) -> Self {
        Self {
            models,
            counters: HashMap::new(),
        }
    }

    /// Prices `r` (unless priced) and counts it.
    pub fn settle(&mut self, r: &mut UsageRecord) {
        if r.cost_usd.is_none() {
            r.cost_usd = r.price(ModelRegistry::bundled());
        }
        let backend = r.backend.as_deref().unwrap_or("none");
        let model = model_label(&self.models, r.model.as_deref());
        let key = (backend.to_owned(), model.to_owned());
        let counters = self
            .counters
            .entry(key)
            .or_insert_with(|| crate::metrics::usage_counters(backend, model));
        counters.add(r);
    }
}

/// The Prometheus `model` label: a configured model name, else `other` (client-chosen names
/// would make the label unbounded).
pub fn model_label<'a>(configured: &HashSet<String>, model: Option<&'a str>) -> &'a str {
    match model {
        Some(m) if configured.contains(m) => m,
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_models_name_a_prometheus_label() {
        let configured: HashSet<String> = ["gpt-4o".to_owned()].into();
        assert_eq!(model_label(&configured, Some("gpt-4o")), "gpt-4o");
        assert_eq!(
            model_label(&configured, Some("made-up-by-a-client")),
            "other"
        );
        assert_eq!(model_label(&configured, None), "other");
    }
}
