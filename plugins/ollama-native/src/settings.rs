//! The plugin's own settings, read raw from `backends.<instance>.extra` and deserialized here
//! (core passes plugin-specific configuration through untouched).

use std::collections::BTreeMap;

use llm_proxy_api::BackendError;
use llm_proxy_api::config::BackendInstanceConfig;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `backends.ollama-native.extra` (or `backends.ollama-native.<name>.extra`):
///
/// ```yaml
/// backends:
///   ollama-native:
///     api_url: http://localhost:11434
///     extra:
///       keep_alive: 10m
///       think: true
///       options: { num_ctx: 32768 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How long Ollama keeps the model loaded after a call (`"5m"`, seconds, `-1`).
    #[serde(default)]
    pub keep_alive: Option<Value>,
    /// `think` sent when the request says nothing about reasoning (`true`, `false`, `"high"`).
    #[serde(default)]
    pub think: Option<Value>,
    /// Send the requested reasoning effort (`"low"`, `"medium"`, `"high"`) as `think` instead
    /// of `true`; only some models (e.g. gpt-oss) accept levels.
    #[serde(default)]
    pub think_levels: bool,
    /// Default model options (`num_ctx`, `repeat_penalty`, ...); request parameters win.
    #[serde(default)]
    pub options: Map<String, Value>,
    /// Extra headers on every call (e.g. for a reverse proxy in front of Ollama).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Settings {
    /// Deserializes the instance's `extra` map; errors name the dotted path.
    pub fn from_instance(instance: &BackendInstanceConfig) -> Result<Self, BackendError> {
        serde_json::from_value(Value::Object(instance.extra.clone()))
            .map_err(|e| BackendError::config(format!("backends.{}.extra: {e}", instance.instance)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_every_setting() {
        let mut instance = BackendInstanceConfig::new("ollama-native.gpu", "ollama-native");
        instance.extra = json!({
            "keep_alive": "10m", "think": "high", "think_levels": true,
            "options": {"num_ctx": 32768}, "headers": {"x-team": "a"}
        })
        .as_object()
        .cloned()
        .unwrap();
        let s = Settings::from_instance(&instance).unwrap();
        assert_eq!(s.keep_alive, Some(json!("10m")));
        assert_eq!(s.think, Some(json!("high")));
        assert!(s.think_levels);
        assert_eq!(s.options["num_ctx"], 32768);
        assert_eq!(s.headers["x-team"], "a");
        assert_eq!(
            Settings::from_instance(&BackendInstanceConfig::new("o", "o")).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn errors_name_the_path() {
        let mut instance = BackendInstanceConfig::new("ollama-native.gpu", "ollama-native");
        instance.extra = json!({"think_levels": "yes"}).as_object().cloned().unwrap();
        let error = Settings::from_instance(&instance).unwrap_err();
        assert!(
            error
                .message
                .starts_with("backends.ollama-native.gpu.extra: "),
            "{}",
            error.message
        );
    }
}
