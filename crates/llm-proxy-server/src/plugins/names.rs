//! Backend names and what they say: the canonical form of a reference, the OAuth-style and
//! extracted (personal-credential) classification, and the plugin crates this project knows.

use std::collections::BTreeSet;

use llm_proxy_api::BACKEND_PLUGIN_ENTRY_POINT_GROUP;
use llm_proxy_api::plugin::BackendPluginEntry;

/// Environment variable listing extracted backend names (comma separated).
pub const EXTRACTED_BACKENDS_ENV: &str = "LLM_PROXY_EXTRACTED_BACKENDS";

/// A plugin crate this project knows about: when a configuration names its backend and the
/// crate is not linked into the build, users are told which Cargo feature links it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPlugin {
    /// Backend name the plugin registers.
    pub backend: &'static str,
    /// Package (crate) name.
    pub package: &'static str,
    /// Feature of the `llm-proxy` binary crate that links the package.
    pub cargo_feature: &'static str,
}

/// Plugin crates shipped in this repository (`plugins/`), linked through Cargo features.
pub const KNOWN_PLUGINS: &[KnownPlugin] = &[KnownPlugin {
    backend: "ollama-native",
    package: "llm-proxy-plugin-ollama-native",
    cargo_feature: "ollama-native",
}];

/// The known plugin providing `backend` (normalized comparison).
pub fn known_plugin(backend: &str) -> Option<&'static KnownPlugin> {
    let name = normalize_backend_name(backend);
    KNOWN_PLUGINS.iter().find(|p| p.backend == name)
}

/// Canonical form of a backend reference: trimmed, lowercase, `_` -> `-`, without an instance
/// suffix (`.name`) or model suffix (`:model`).
pub fn normalize_backend_name(name: &str) -> String {
    let lowered = name.trim().to_lowercase().replace('_', "-");
    let end = lowered.find(['.', ':']).unwrap_or(lowered.len());
    lowered.get(..end).unwrap_or_default().trim().to_owned()
}

/// Whether a name follows the OAuth naming pattern (`*-oauth` or `*-oauth-*`, normalized).
pub fn is_oauth_style(name: &str) -> bool {
    let normalized = normalize_backend_name(name);
    normalized.ends_with("-oauth") || normalized.contains("-oauth-")
}

/// The OAuth-style names among `names`, sorted (names are returned as given).
pub fn filter_oauth_style_backend_names<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut found: Vec<String> = names
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| is_oauth_style(n))
        .map(str::to_owned)
        .collect();
    found.sort();
    found
}

/// Backends that live in optional plugins rather than in core (normalized names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractedSet {
    names: BTreeSet<String>,
}

impl ExtractedSet {
    /// OAuth-style names from the [`EXTRACTED_BACKENDS_ENV`] value, plus OAuth-style names of
    /// the linked backend entry points.
    pub fn from_sources(env_value: Option<&str>, entries: &[BackendPluginEntry]) -> Self {
        let from_env = env_value.into_iter().flat_map(|v| v.split(','));
        let from_entries = entries
            .iter()
            .filter(|e| e.group == BACKEND_PLUGIN_ENTRY_POINT_GROUP)
            .map(|e| e.name);
        let names = from_env
            .chain(from_entries)
            .filter(|n| is_oauth_style(n))
            .map(normalize_backend_name)
            .collect();
        Self { names }
    }

    /// Whether the normalized `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&normalize_backend_name(name))
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }
}

/// Whether `name` belongs to an optional plugin: listed in `extracted`, or OAuth-style.
pub fn is_extracted(name: &str, extracted: &ExtractedSet) -> bool {
    extracted.contains(name) || is_oauth_style(name)
}

/// Whether `name` is provided by a plugin crate rather than core: an extracted
/// (personal-credential) backend or a [`KNOWN_PLUGINS`] backend. A configuration naming one
/// that is not linked gets install guidance instead of "unknown backend".
pub fn is_optional_backend(name: &str, extracted: &ExtractedSet) -> bool {
    is_extracted(name, extracted) || known_plugin(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{core_entry, healthy, plain_openai, plugin_entry};
    use super::*;

    #[test]
    fn normalization_examples() {
        let cases = [
            ("Gemini_OAuth_Plan.PRIMARY", "gemini-oauth-plan"),
            ("zai-coding-plan:glm-5.1", "zai-coding-plan"),
            ("  OpenAI  ", "openai"),
            ("openai.1", "openai"),
            ("a:b.c", "a"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_backend_name(input), expected, "{input:?}");
        }
    }

    #[test]
    fn oauth_naming_pattern() {
        assert!(is_oauth_style("qwen-oauth"));
        assert!(is_oauth_style("Gemini_OAuth_Plan.x"));
        assert!(is_oauth_style("gemini-oauth-auto:model"));
        assert!(!is_oauth_style("oauth"));
        assert!(!is_oauth_style("oauthish-backend"));
        assert!(!is_oauth_style("openai"));
        assert_eq!(
            filter_oauth_style_backend_names(&[
                "openai",
                "qwen-oauth",
                "custom_oauth_bar",
                "gemini-oauth-auto",
                "x"
            ]),
            ["custom_oauth_bar", "gemini-oauth-auto", "qwen-oauth"]
        );
    }

    #[test]
    fn extracted_set_sources() {
        let entries = [
            plugin_entry("qwen-oauth", healthy),
            plugin_entry("plain", healthy),
            core_entry("openai", plain_openai),
        ];
        let set = ExtractedSet::from_sources(
            Some(" Foo_OAuth , not-extracted,, bar-oauth-x.1"),
            &entries,
        );
        assert_eq!(set.names(), ["bar-oauth-x", "foo-oauth", "qwen-oauth"]);
        assert!(set.contains("QWEN_OAUTH"));
        assert!(!set.contains("plain"));
        assert!(
            is_extracted("plain-oauth", &ExtractedSet::default()),
            "pattern alone suffices"
        );
        assert!(!is_extracted("plain", &set));
        assert_eq!(
            ExtractedSet::from_sources(None, &[]).names(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn known_plugins_are_optional_but_not_personal_credential_backends() {
        let none = ExtractedSet::default();
        assert!(is_optional_backend("ollama-native", &none));
        assert!(!is_extracted("ollama-native", &none));
        assert!(is_optional_backend("qwen-oauth", &none));
        assert!(!is_optional_backend("openai", &none));
    }
}
