//! Built-in backends. Each is written only against `llm-proxy-api` (plus the protocol crate)
//! and registered through the same `backend_plugin!` entry points an external plugin uses.

pub mod mock;
pub mod openai_compat;
pub mod upstream;

mod providers {
    //! Entry-point providers of the built-in backends.
    use llm_proxy_api::plugin::BackendPluginDefinition;

    use crate::openai_compat::{PROVIDERS, definition};

    fn family(name: &str) -> BackendPluginDefinition {
        // PROVIDERS holds every name registered below; the lookup cannot miss.
        let provider = PROVIDERS.iter().find(|p| p.name == name).unwrap_or(&PROVIDERS[0]);
        definition(provider)
    }

    pub fn openai() -> BackendPluginDefinition {
        family("openai")
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
}

llm_proxy_api::backend_plugin!("openai", providers::openai);
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

/// Forces the linker to keep this crate's entry points (call once from the binary).
pub fn link() {}

#[cfg(test)]
mod tests {
    #[test]
    fn every_family_provider_is_registered_under_its_own_name() {
        let entries = llm_proxy_api::plugin::linked_entries();
        for p in crate::openai_compat::PROVIDERS {
            let entry = entries.iter().find(|e| e.name == p.name).expect("registered");
            assert_eq!((entry.provider)().backend_name, p.name);
            assert_eq!(entry.distribution, "llm-proxy-connectors");
        }
        assert!(entries.iter().any(|e| e.name == "mock"));
    }
}
