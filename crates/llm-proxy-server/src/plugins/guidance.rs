//! What users are told about a backend they cannot use: the Cargo feature that links a missing
//! plugin, or why multi-user mode refuses it.

use super::access_mode::PERSONAL_CREDENTIALS_RULE;
use super::names::{known_plugin, normalize_backend_name};

/// How to build the binary with the plugins providing `backends`: their Cargo features when
/// every one is a known plugin, a placeholder to fill in otherwise.
pub fn install_command<S: AsRef<str>>(backends: &[S]) -> String {
    let mut features: Vec<&str> = Vec::new();
    for backend in backends {
        match known_plugin(backend.as_ref()) {
            Some(plugin) if !features.contains(&plugin.cargo_feature) => {
                features.push(plugin.cargo_feature);
            }
            Some(_) => {}
            None => return GENERIC_INSTALL_COMMAND.to_owned(),
        }
    }
    if features.is_empty() {
        return GENERIC_INSTALL_COMMAND.to_owned();
    }
    format!(
        "cargo build --release -p llm-proxy --features {}",
        features.join(",")
    )
}

/// Install command when the plugin's feature is not known to core.
pub const GENERIC_INSTALL_COMMAND: &str =
    "cargo build --release -p llm-proxy --features <plugin feature>";

/// What to tell a user whose configuration names a backend that is not linked into this build.
pub fn install_guidance(backend: &str) -> String {
    let name = normalize_backend_name(backend);
    match known_plugin(&name) {
        Some(plugin) => format!(
            "Backend '{name}' is unavailable: its plugin '{}' is not linked into this build. \
             Rebuild with the '{}' Cargo feature: `{}`.",
            plugin.package,
            plugin.cargo_feature,
            install_command(&[name.as_str()])
        ),
        None => format!(
            "Backend '{name}' is unavailable: its plugin is not linked into this build. Rebuild \
             with the Cargo feature that links the plugin: `{GENERIC_INSTALL_COMMAND}`."
        ),
    }
}

/// What to tell a user whose request names a backend refused in multi-user mode.
pub fn multi_user_guidance(backend: &str) -> String {
    format!(
        "Backend '{}' is not available in Multi User Mode: {PERSONAL_CREDENTIALS_RULE}. Run \
         the proxy in single-user mode (`--single-user-mode`, bound to 127.0.0.1) to use it.",
        normalize_backend_name(backend)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_texts() {
        assert_eq!(
            install_guidance("qwen-oauth"),
            "Backend 'qwen-oauth' is unavailable: its plugin is not linked into this build. \
             Rebuild with the Cargo feature that links the plugin: \
             `cargo build --release -p llm-proxy --features <plugin feature>`."
        );
        assert_eq!(
            install_guidance("Ollama_Native.local"),
            "Backend 'ollama-native' is unavailable: its plugin 'llm-proxy-plugin-ollama-native' \
             is not linked into this build. Rebuild with the 'ollama-native' Cargo feature: \
             `cargo build --release -p llm-proxy --features ollama-native`."
        );
        assert!(
            multi_user_guidance("qwen-oauth")
                .starts_with("Backend 'qwen-oauth' is not available in Multi User Mode")
        );
        assert!(multi_user_guidance("qwen-oauth").contains("--single-user-mode"));
    }

    #[test]
    fn install_command_names_known_features_or_a_placeholder() {
        assert_eq!(
            install_command(&["ollama-native", "Ollama-Native.2"]),
            "cargo build --release -p llm-proxy --features ollama-native"
        );
        assert_eq!(
            install_command(&["ollama-native", "qwen-oauth"]),
            GENERIC_INSTALL_COMMAND
        );
        assert_eq!(install_command::<&str>(&[]), GENERIC_INSTALL_COMMAND);
        assert_eq!(
            known_plugin("ollama-native:llama3").map(|p| p.package),
            Some("llm-proxy-plugin-ollama-native")
        );
        assert!(known_plugin("openai").is_none());
    }
}
