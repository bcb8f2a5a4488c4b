//! # llm-proxy-plugin-ollama-native
//!
//! The reference backend plugin: Ollama's native chat API (`POST /api/chat`), which core does
//! not speak (core's `ollama` backend uses Ollama's OpenAI-compatible `/v1` endpoint). It
//! streams newline-delimited JSON rather than server-sent events, takes tool-call arguments as
//! JSON objects, and carries reasoning in `think` / `message.thinking`.
//!
//! It depends on `llm-proxy-api` only, exactly like an external plugin, and shows the whole
//! contract:
//!
//! * [`provider`] returns the [`BackendPluginDefinition`] (name, factory, plugin name,
//!   compatibility); [`backend_plugin!`](llm_proxy_api::backend_plugin) registers it under the
//!   `llm_proxy_backends` group at link time.
//! * The factory only parses configuration (`backends.<instance>.extra`, see [`Settings`]);
//!   it does no network I/O.
//! * Every upstream call goes through the plugin API's shared HTTP exchange
//!   (`llm_proxy_api::upstream`, the code the built-in backends use): the capture-aware client
//!   with a per-call capture context, the instance's timeouts, error statuses mapped to
//!   `BackendError`s with `Retry-After`, echoed credentials scrubbed. The plugin brings only
//!   what is Ollama's: the request conversion ([`request_from_model`]) and the NDJSON decoding
//!   ([`OllamaResponseDecoder`]).
//!
//! Linked into the `llm-proxy` binary by its `ollama-native` Cargo feature (on by default).

mod backend;
mod decode;
mod settings;
mod wire;

use std::sync::Arc;

use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs, PluginCompatibility};
use llm_proxy_api::{Backend, BackendError};

pub use backend::OllamaNative;
pub use decode::{NdjsonChatDecoder, OllamaResponseDecoder, error_from_status};
pub use settings::Settings;
pub use wire::{ChatChunk, OllamaChatRequest, request_from_model};

/// The backend name users configure (`backends.ollama-native`, `ollama-native:llama3.2`).
pub const BACKEND_NAME: &str = "ollama-native";

/// Where Ollama listens by default.
pub const DEFAULT_BASE_URL: &str = "http://localhost:11434";

/// The entry-point target: a zero-argument function returning the definition.
pub fn provider() -> BackendPluginDefinition {
    BackendPluginDefinition::new(
        BACKEND_NAME,
        env!("CARGO_PKG_NAME"),
        // Written against the 0.x plugin API; a 1.0 core may change it.
        PluginCompatibility::new("0.1.0").up_to("0.99.0"),
        build,
    )
}

/// The factory: configuration only, no network I/O.
fn build(args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
    let backend: Arc<dyn Backend> = Arc::new(OllamaNative::new(&args)?);
    Ok(backend)
}

llm_proxy_api::backend_plugin!("ollama-native", crate::provider);

/// Call once from the binary (behind the Cargo feature) so the linker keeps this crate and
/// its registration.
pub fn link() {}

#[cfg(test)]
mod tests {
    use llm_proxy_api::BACKEND_PLUGIN_ENTRY_POINT_GROUP;
    use llm_proxy_api::plugin::linked_entries;

    use super::*;

    #[test]
    fn registers_itself_under_its_backend_name() {
        let entry = linked_entries()
            .into_iter()
            .find(|e| e.name == BACKEND_NAME)
            .expect("entry linked");
        assert_eq!(entry.group, BACKEND_PLUGIN_ENTRY_POINT_GROUP);
        assert_eq!(entry.distribution, "llm-proxy-plugin-ollama-native");
        let definition = (entry.provider)();
        assert_eq!(definition.backend_name, BACKEND_NAME);
        assert_eq!(definition.plugin_name, "llm-proxy-plugin-ollama-native");
        assert_eq!(definition.compatibility.core_min_version, "0.1.0");
        assert!(!definition.requires_personal_credentials);
    }

    #[test]
    fn factory_builds_without_network_and_rejects_bad_settings() {
        let definition = provider();
        let args = |extra: serde_json::Value| FactoryArgs {
            http_client: llm_proxy_api::CaptureAwareClient::plain().unwrap(),
            shared: Arc::new(llm_proxy_api::SharedConfig::default()),
            translation_service: Arc::new(llm_proxy_api::TranslationService::new()),
            instance: {
                let mut i =
                    llm_proxy_api::BackendInstanceConfig::new("ollama-native", BACKEND_NAME);
                i.extra = extra.as_object().cloned().unwrap_or_default();
                i
            },
            raw_section: None,
        };
        assert!((definition.factory)(args(serde_json::json!({"keep_alive": "5m"}))).is_ok());
        let Err(error) =
            (definition.factory)(args(serde_json::json!({"keep_alive": "5m", "bogus": 1})))
        else {
            panic!("unknown setting accepted");
        };
        assert!(
            error.message.contains("backends.ollama-native.extra"),
            "{}",
            error.message
        );
    }
}
