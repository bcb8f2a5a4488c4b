//! Wire capture: where the capture-aware HTTP client's boundary records go. The sink is behind
//! `llm_proxy_api::http::CaptureSink`; the JSON-lines file ([`JsonlCaptureSink`]) is the one
//! we ship. Secrets never reach a capture: the client masks credential headers and query
//! parameters, and the sink masks every configured key value wherever else it appears.

pub mod jsonl;

use llm_proxy_api::AppConfig;

pub use jsonl::{DEFAULT_QUEUE_CAPACITY, JsonlCaptureSink, SecretMasker};

/// Every secret value the configuration holds (backend API keys and client keys), for the
/// sink to mask in payloads, URLs and headers.
pub fn configured_secrets(config: &AppConfig) -> Vec<String> {
    let backend_keys = config
        .backends
        .instances
        .values()
        .filter_map(|i| i.api_key.as_ref());
    backend_keys
        .chain(&config.auth.api_keys)
        .map(|secret| secret.expose().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use llm_proxy_api::config::{BackendInstanceConfig, Secret};

    use super::*;

    #[test]
    fn secrets_come_from_backends_and_client_keys() {
        let mut config = AppConfig::default();
        let mut openai = BackendInstanceConfig::new("openai", "openai");
        openai.api_key = Some(Secret::new("sk-backend-key-123"));
        config.backends.instances.insert("openai".into(), openai);
        config
            .backends
            .instances
            .insert("mock".into(), BackendInstanceConfig::new("mock", "mock"));
        config.auth.api_keys = vec![Secret::new("client-key-456")];
        assert_eq!(
            configured_secrets(&config),
            ["sk-backend-key-123", "client-key-456"]
        );
    }
}
