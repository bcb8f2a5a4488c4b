//! Built-in backends. Each is written only against `llm-proxy-api` (plus the protocol crate)
//! and registered through the same `backend_plugin!` entry points an external plugin uses; the
//! HTTP ones go through the API's shared exchange (`llm_proxy_api::upstream`) with the protocol
//! crate's codecs.

pub mod anthropic;
pub mod gemini;
pub mod mock;
pub mod openai_compat;

mod providers {
    //! Entry-point providers of the built-in backends.
    use llm_proxy_api::plugin::BackendPluginDefinition;

    use crate::openai_compat::{PROVIDERS, definition};

    fn family(name: &str) -> BackendPluginDefinition {
        // PROVIDERS holds every name registered below; the lookup cannot miss.
        let provider = PROVIDERS
            .iter()
            .find(|p| p.name == name)
            .unwrap_or(&PROVIDERS[0]);
        definition(provider)
    }

    pub fn openai() -> BackendPluginDefinition {
        family("openai")
    }
    pub fn openai_responses() -> BackendPluginDefinition {
        family("openai-responses")
    }
    pub fn openrouter() -> BackendPluginDefinition {
        family("openrouter")
    }
    pub fn nvidia() -> BackendPluginDefinition {
        family("nvidia")
    }
    pub fn zai() -> BackendPluginDefinition {
        family("zai")
    }
    pub fn zai_coding_plan() -> BackendPluginDefinition {
        family("zai-coding-plan")
    }
    pub fn minimax() -> BackendPluginDefinition {
        family("minimax")
    }
    pub fn zenmux() -> BackendPluginDefinition {
        family("zenmux")
    }
    pub fn kimi_code() -> BackendPluginDefinition {
        family("kimi-code")
    }
    pub fn ollama() -> BackendPluginDefinition {
        family("ollama")
    }
    pub fn openai_compatible() -> BackendPluginDefinition {
        family("openai-compatible")
    }
    pub fn mock() -> BackendPluginDefinition {
        crate::mock::definition()
    }
    pub fn anthropic() -> BackendPluginDefinition {
        crate::anthropic::definition()
    }
    pub fn gemini() -> BackendPluginDefinition {
        crate::gemini::definition()
    }
}

llm_proxy_api::backend_plugin!("openai", providers::openai);
llm_proxy_api::backend_plugin!("openai-responses", providers::openai_responses);
llm_proxy_api::backend_plugin!("openrouter", providers::openrouter);
llm_proxy_api::backend_plugin!("nvidia", providers::nvidia);
llm_proxy_api::backend_plugin!("zai", providers::zai);
llm_proxy_api::backend_plugin!("zai-coding-plan", providers::zai_coding_plan);
llm_proxy_api::backend_plugin!("minimax", providers::minimax);
llm_proxy_api::backend_plugin!("zenmux", providers::zenmux);
llm_proxy_api::backend_plugin!("kimi-code", providers::kimi_code);
llm_proxy_api::backend_plugin!("ollama", providers::ollama);
llm_proxy_api::backend_plugin!("openai-compatible", providers::openai_compatible);
llm_proxy_api::backend_plugin!("mock", providers::mock);
llm_proxy_api::backend_plugin!("anthropic", providers::anthropic);
llm_proxy_api::backend_plugin!("gemini", providers::gemini);

/// The definition of a built-in backend: this crate, compatible from the running core on, built
/// by `build` (which must not do network I/O).
pub fn core_definition<B: llm_proxy_api::Backend + 'static>(
    name: &str,
    build: impl Fn(&llm_proxy_api::FactoryArgs) -> Result<B, llm_proxy_api::BackendError>
    + Send
    + Sync
    + 'static,
) -> llm_proxy_api::BackendPluginDefinition {
    llm_proxy_api::BackendPluginDefinition::new(
        name,
        env!("CARGO_PKG_NAME"),
        llm_proxy_api::PluginCompatibility::new(llm_proxy_api::CORE_VERSION),
        move |args: llm_proxy_api::FactoryArgs| {
            let backend: std::sync::Arc<dyn llm_proxy_api::Backend> =
                std::sync::Arc::new(build(&args)?);
            Ok(backend)
        },
    )
}

/// Forces the linker to keep this crate's entry points (call once from the binary).
pub fn link() {}

#[cfg(test)]
pub(crate) mod testing {
    //! Factory arguments for connector tests.
    use std::sync::Arc;

    use llm_proxy_api::config::{BackendInstanceConfig, Secret, SharedConfig};
    use llm_proxy_api::http::CaptureAwareClient;
    use llm_proxy_api::plugin::FactoryArgs;
    use llm_proxy_api::translation::TranslationService;

    /// An instance of `backend_type` at `api_url` with `key`.
    pub fn factory_args(backend_type: &str, api_url: &str, key: &str) -> FactoryArgs {
        let mut instance = BackendInstanceConfig::new(backend_type, backend_type);
        instance.api_url = Some(api_url.to_owned());
        instance.api_key = Some(Secret::new(key));
        FactoryArgs {
            http_client: CaptureAwareClient::plain().unwrap(),
            shared: Arc::new(SharedConfig::default()),
            translation_service: Arc::new(TranslationService::new()),
            instance,
            raw_section: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_family_provider_is_registered_under_its_own_name() {
        let entries = llm_proxy_api::plugin::linked_entries();
        for p in crate::openai_compat::PROVIDERS {
            let entry = entries
                .iter()
                .find(|e| e.name == p.name)
                .expect("registered");
            assert_eq!((entry.provider)().backend_name, p.name);
            assert_eq!(entry.distribution, "llm-proxy-connectors");
        }
        for name in ["mock", "anthropic", "gemini"] {
            let entry = entries.iter().find(|e| e.name == name).expect("registered");
            assert_eq!((entry.provider)().backend_name, name);
        }
    }
}
