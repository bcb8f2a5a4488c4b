//! Model limits settings: `model_defaults.<model>.limits` (per model or `backend:model`),
//! `context_window_override` (`--force-context-window`) and `model_limit_enforcement.enabled`
//! (`--disable-model-limit-enforcement`), as written and validated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// One `model_defaults` entry as written. Only `limits` is read today.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelDefaults {
    #[serde(default)]
    pub limits: RawModelLimits,
}

/// `model_defaults.<model>.limits`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelLimits {
    pub context_window: Option<u64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
}

/// `model_limit_enforcement:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelLimitEnforcement {
    pub enabled: Option<bool>,
}

/// Limits configured for one model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelLimits {
    /// Most input tokens (`max_input_tokens`, else `context_window`).
    pub input_tokens: Option<u64>,
    /// Most output tokens.
    pub max_output_tokens: Option<u64>,
}

/// Context-window enforcement, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimitsConfig {
    /// Prompts over the window are refused before any upstream call (default on).
    pub enabled: bool,
    /// One window for every model (`context_window_override`, `--force-context-window`);
    /// beats everything else.
    pub force_context_window: Option<u64>,
    /// `model_defaults` limits by lower-cased `model` or `backend:model`; beat the registry.
    pub per_model: BTreeMap<String, ModelLimits>,
}

impl Default for ModelLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            force_context_window: None,
            per_model: BTreeMap::new(),
        }
    }
}

/// `model_defaults` as `check-config` shows it.
pub(super) fn effective(config: &ModelLimitsConfig) -> serde_json::Value {
    config
        .per_model
        .iter()
        .map(|(model, l)| {
            (
                model.clone(),
                serde_json::json!({"limits": {
                    "max_input_tokens": l.input_tokens,
                    "max_output_tokens": l.max_output_tokens,
                }}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Validates the raw settings.
pub(super) fn model_limits_config(
    enabled: Option<bool>,
    force: Option<u64>,
    defaults: Option<&BTreeMap<String, RawModelDefaults>>,
) -> Result<ModelLimitsConfig, ConfigError> {
    if force == Some(0) {
        return Err(ConfigError::new(
            "context_window_override",
            "must be a positive number of tokens",
        ));
    }
    let mut per_model = BTreeMap::new();
    for (model, entry) in defaults.into_iter().flatten() {
        let l = &entry.limits;
        for (field, v) in [
            ("context_window", l.context_window),
            ("max_input_tokens", l.max_input_tokens),
            ("max_output_tokens", l.max_output_tokens),
        ] {
            if v == Some(0) {
                return Err(ConfigError::new(
                    format!("model_defaults.{model}.limits.{field}"),
                    "must be a positive number of tokens",
                ));
            }
        }
        if model.trim().is_empty() {
            return Err(ConfigError::new("model_defaults", "a model name is empty"));
        }
        per_model.insert(
            model.trim().to_ascii_lowercase(),
            ModelLimits {
                input_tokens: l.max_input_tokens.or(l.context_window),
                max_output_tokens: l.max_output_tokens,
            },
        );
    }
    Ok(ModelLimitsConfig {
        enabled: enabled.unwrap_or(true),
        force_context_window: force,
        per_model,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{CliOverrides, Env, load_from_str};

    #[test]
    fn limits_from_yaml_and_cli_with_validation() {
        let yaml = "model_defaults:\n  GPT-4o:\n    limits:\n      context_window: 1000\n  openai:m:\n    limits:\n      context_window: 10\n      max_input_tokens: 5\n";
        let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).unwrap();
        let l = &cfg.model_limits;
        assert!(l.enabled);
        assert_eq!(l.force_context_window, None);
        assert_eq!(l.per_model["gpt-4o"].input_tokens, Some(1000));
        assert_eq!(
            l.per_model["openai:m"].input_tokens,
            Some(5),
            "max_input_tokens wins"
        );
        let shown = crate::config::effective_config(&cfg);
        assert_eq!(
            shown["model_defaults"]["gpt-4o"]["limits"]["max_input_tokens"],
            1000
        );
        assert_eq!(shown["model_limit_enforcement"]["enabled"], true);

        let cli = CliOverrides {
            force_context_window: Some(77),
            disable_model_limit_enforcement: true,
            ..CliOverrides::default()
        };
        let cfg = load_from_str("context_window_override: 5\n", &cli, &Env::default()).unwrap();
        assert_eq!(cfg.model_limits.force_context_window, Some(77));
        assert!(!cfg.model_limits.enabled);

        let err = |yaml: &str| {
            load_from_str(yaml, &CliOverrides::default(), &Env::default())
                .unwrap_err()
                .to_string()
        };
        assert!(err("context_window_override: 0\n").contains("context_window_override"));
        assert!(
            err("model_defaults:\n  m:\n    limits:\n      max_output_tokens: 0\n")
                .contains("model_defaults.m.limits.max_output_tokens")
        );
        assert!(err("model_defaults:\n  m:\n    limits:\n      window: 5\n").contains("window"));
    }
}
