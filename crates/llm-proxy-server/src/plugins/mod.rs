//! Backend plugins as the server sees them: the discovery result ([`Plugins`]: registry,
//! report, access mode), which backends a configuration refers to, and the messages given when
//! a referenced backend is unavailable (not linked, or blocked in multi-user mode).

pub mod access_mode;
pub mod compat;
pub mod discovery;
#[cfg(test)]
mod fixtures;
pub mod guidance;
pub mod hooks;
pub mod isolation;
pub mod names;
pub mod registry;
pub mod startup_report;

use std::sync::OnceLock;

use llm_proxy_api::plugin::{BackendPluginEntry, linked_entries};

use crate::config::GatewayConfig;
use crate::routing::selector::{SelectorLimits, parse_within};
use crate::routing::selector_limits;
use crate::startup_error::StartupError;

pub use access_mode::{ACCESS_MODE_ENV, AccessMode};
pub use discovery::{CORE_DISTRIBUTION, DiscoveryReport, PluginMetadata, SkipKind, SkippedPlugin};
pub use guidance::{install_guidance, multi_user_guidance};
pub use names::{EXTRACTED_BACKENDS_ENV, KNOWN_PLUGINS, KnownPlugin, normalize_backend_name};
pub use registry::{BackendOrigin, BackendRegistry, Origin};

/// The outcome of backend discovery, handed to [`AppState::build`](crate::AppState::build).
#[derive(Debug, Clone)]
pub struct Plugins {
    /// Backend name -> factory.
    pub registry: BackendRegistry,
    /// What discovery did: registered, skipped (with reasons), blocked, warnings, hooks.
    pub report: DiscoveryReport,
    /// The access mode discovery ran with.
    pub mode: AccessMode,
    /// Warnings of post-build hooks, set once they ran.
    hook_warnings: OnceLock<Vec<String>>,
}

impl Plugins {
    /// Discovers every entry point linked into this binary, reading
    /// [`EXTRACTED_BACKENDS_ENV`] from the process environment.
    pub fn discover_linked(mode: AccessMode) -> Self {
        let env_extracted = std::env::var(EXTRACTED_BACKENDS_ENV).ok();
        Self::discover(
            &linked_entries(),
            mode,
            llm_proxy_api::CORE_VERSION,
            env_extracted.as_deref(),
        )
    }

    /// Single-user discovery of the linked entry points (tests and tools).
    pub fn from_linked() -> Self {
        Self::discover_linked(AccessMode::SingleUser)
    }

    /// Discovers `entries` (injectable, so tests can link broken or incompatible plugins
    /// without special builds).
    pub fn discover(
        entries: &[BackendPluginEntry],
        mode: AccessMode,
        core_version: &str,
        env_extracted: Option<&str>,
    ) -> Self {
        let mut registry = BackendRegistry::new();
        let report = discovery::discover(entries, mode, core_version, &mut registry, env_extracted);
        Self {
            registry,
            report,
            mode,
            hook_warnings: OnceLock::new(),
        }
    }

    /// Records the post-build hook warnings (first call wins).
    pub(crate) fn set_hook_warnings(&self, warnings: Vec<String>) {
        let _ = self.hook_warnings.set(warnings);
    }

    /// Warnings of failed post-build hooks (empty before they ran).
    pub fn hook_warnings(&self) -> &[String] {
        self.hook_warnings.get().map_or(&[], Vec::as_slice)
    }

    /// Why a backend a request or the configuration names cannot be used, when the reason is
    /// a plugin matter: blocked in multi-user mode, or a plugin backend not linked into this
    /// build (with the Cargo feature to add). `None` for registered backends and for names
    /// nobody knows (the caller's plain "unknown backend" applies).
    pub fn unavailable_backend_message(&self, backend: &str) -> Option<String> {
        let name = normalize_backend_name(backend);
        if name.is_empty() || self.registry.contains(&name) || self.registry.contains(backend) {
            return None;
        }
        let extracted = &self.report.extracted;
        if self.registry.is_blocked(&name)
            || (self.mode == AccessMode::MultiUser && names::is_extracted(&name, extracted))
        {
            return Some(multi_user_guidance(&name));
        }
        names::is_optional_backend(&name, extracted).then(|| install_guidance(&name))
    }

    /// The startup check of §3.5: configured references to plugin backends that are not
    /// registered. `Ok(Some(warning))` when other configured backends remain usable.
    pub fn check_configured_references(
        &self,
        config: &GatewayConfig,
    ) -> Result<Option<String>, StartupError> {
        startup_report::startup_check(
            &configured_backend_references(config),
            &self.registry,
            &self.report.extracted,
        )
    }
}

/// Backend names the configuration refers to: the backends of `default_backend` (a bare name
/// there is a backend), the explicit backends of `static_route`, and the backend type of every
/// configured instance.
pub fn configured_backend_references(config: &GatewayConfig) -> Vec<String> {
    let backends = &config.backends;
    let limits = selector_limits(&config.routing);
    let mut refs = Vec::new();
    if let Some(selector) = &backends.default_backend {
        refs.extend(selector_backends(selector, true, &limits));
    }
    if let Some(selector) = &backends.static_route {
        refs.extend(selector_backends(selector, false, &limits));
    }
    refs.extend(backends.instances.values().map(|i| i.backend_type.clone()));
    refs
}

/// Backends named by the leaves of `selector`, as the routing grammar reads them: a leaf's
/// explicit backend (`openai.1:gpt-4o`); with `bare_is_backend`, also a model-only leaf that
/// is a plain name (`openai`, not `vendor/model` or `alias:fast`). A selector that does not
/// parse names nothing here; routing reports it.
pub fn selector_backends(
    selector: &str,
    bare_is_backend: bool,
    limits: &SelectorLimits,
) -> Vec<String> {
    let Ok(parsed) = parse_within(selector, limits) else {
        return Vec::new();
    };
    parsed
        .leaves()
        .iter()
        .filter_map(|leaf| match &leaf.backend {
            Some(backend) => Some(backend.id()),
            None if bare_is_backend && !leaf.model.contains(['/', ':']) => Some(leaf.model.clone()),
            None => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use llm_proxy_api::config::BackendInstanceConfig;
    use llm_proxy_api::plugin::BackendPluginDefinition;
    use llm_proxy_api::{Backend, BackendError, FactoryArgs, PluginCompatibility};
    use std::sync::Arc;

    use super::*;

    fn fake(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
        Err(BackendError::internal("fake"))
    }

    fn openai() -> BackendPluginDefinition {
        BackendPluginDefinition::new("openai", "core", PluginCompatibility::new("0.1.0"), fake)
    }

    fn qwen() -> BackendPluginDefinition {
        BackendPluginDefinition::new(
            "qwen-oauth",
            "oauth",
            PluginCompatibility::new("0.1.0"),
            fake,
        )
    }

    fn entry(name: &'static str, provider: fn() -> BackendPluginDefinition) -> BackendPluginEntry {
        BackendPluginEntry {
            group: llm_proxy_api::BACKEND_PLUGIN_ENTRY_POINT_GROUP,
            name,
            provider,
            distribution: if name == "openai" {
                CORE_DISTRIBUTION
            } else {
                "oauth-plugins"
            },
            distribution_version: "0.1.0",
        }
    }

    fn selector_backends(selector: &str, bare_is_backend: bool) -> Vec<String> {
        super::selector_backends(selector, bare_is_backend, &SelectorLimits::default())
    }

    #[test]
    fn selector_leaves_name_their_backends() {
        assert_eq!(selector_backends("openai:gpt-4o", false), ["openai"]);
        assert_eq!(selector_backends("openai", true), ["openai"]);
        assert!(selector_backends("gpt-4o", false).is_empty());
        assert!(selector_backends("vendor/model:variant", true).is_empty());
        assert_eq!(
            selector_backends("[weight=3]a.1:m?temperature=1^[weight=1]b:x/y", false),
            ["a.1", "b"]
        );
        assert_eq!(
            selector_backends("a:m|ollama-native:llama3", false),
            ["a", "ollama-native"]
        );
        assert!(selector_backends("alias:fast", true).is_empty());
        assert_eq!(selector_backends("openai.1:m?x=a%7Cb", false), ["openai.1"]);
        assert!(selector_backends("a:m|", false).is_empty(), "unparsable");
    }

    #[test]
    fn configured_references_cover_default_static_route_and_instances() {
        let mut config = GatewayConfig::default();
        config.backends.default_backend = Some("qwen-oauth".into());
        config.backends.static_route = Some("gemini-oauth-plan:gemini-2.5-pro".into());
        config.backends.instances.insert(
            "ollama-native.gpu".into(),
            BackendInstanceConfig::new("ollama-native.gpu", "ollama-native"),
        );
        assert_eq!(
            configured_backend_references(&config),
            ["qwen-oauth", "gemini-oauth-plan", "ollama-native"]
        );
    }

    #[test]
    fn unavailable_messages_distinguish_blocked_missing_and_unknown() {
        let single = Plugins::discover(
            &[entry("openai", openai), entry("qwen-oauth", qwen)],
            AccessMode::SingleUser,
            "0.1.0",
            None,
        );
        assert_eq!(single.unavailable_backend_message("openai"), None);
        assert_eq!(single.unavailable_backend_message("qwen-oauth.1"), None);
        assert_eq!(single.unavailable_backend_message("no-such-backend"), None);
        let missing = single.unavailable_backend_message("ollama-native");
        assert!(
            missing
                .as_deref()
                .is_some_and(|m| m.contains("--features ollama-native")),
            "{missing:?}"
        );
        let oauth = single.unavailable_backend_message("kiro-oauth");
        assert!(
            oauth.as_deref().is_some_and(|m| m.contains("not linked")),
            "{oauth:?}"
        );

        let multi = Plugins::discover(
            &[entry("openai", openai), entry("qwen-oauth", qwen)],
            AccessMode::MultiUser,
            "0.1.0",
            None,
        );
        assert_eq!(multi.report.blocked, ["qwen-oauth"]);
        for name in ["qwen-oauth", "Qwen_OAuth.work", "kiro-oauth"] {
            let message = multi.unavailable_backend_message(name);
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.contains("not available in Multi User Mode")),
                "{name}: {message:?}"
            );
        }
        assert_eq!(multi.unavailable_backend_message("openai"), None);
    }

    #[test]
    fn hook_warnings_are_set_once() {
        let plugins = Plugins::discover(&[], AccessMode::SingleUser, "0.1.0", None);
        assert!(plugins.hook_warnings().is_empty());
        plugins.set_hook_warnings(vec!["a".into()]);
        plugins.set_hook_warnings(vec!["b".into()]);
        assert_eq!(plugins.hook_warnings(), ["a"]);
    }
}
