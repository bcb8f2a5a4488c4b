//! Test fixtures of the plugin modules: fake definitions, entry points, discovery runs and
//! registries.

use std::sync::Arc;

use llm_proxy_api::plugin::{BackendPluginEntry, BackendPluginProvider};
use llm_proxy_api::{
    BACKEND_PLUGIN_ENTRY_POINT_GROUP, Backend, BackendError, BackendPluginDefinition, FactoryArgs,
    PluginCompatibility, ServiceProvider,
};

use super::AccessMode;
use super::discovery::{CORE_DISTRIBUTION, DiscoveryReport, discover};
use super::registry::{BackendOrigin, BackendRegistry, Origin};

pub(crate) const CORE: &str = "0.1.0";
pub(crate) const OAUTH_DIST: &str = "llm-proxy-oauth-connectors";

pub(crate) fn fake_factory(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
    Err(BackendError::internal("fake backend"))
}

pub(crate) fn definition(backend: &str, plugin: &str, min: &str) -> BackendPluginDefinition {
    BackendPluginDefinition::new(backend, plugin, PluginCompatibility::new(min), fake_factory)
}

pub(crate) fn bounded(
    backend: &str,
    plugin: &str,
    min: &str,
    max: &str,
) -> BackendPluginDefinition {
    BackendPluginDefinition {
        compatibility: PluginCompatibility::new(min).up_to(max),
        ..definition(backend, plugin, min)
    }
}

pub(crate) fn plugin_entry(
    name: &'static str,
    provider: BackendPluginProvider,
) -> BackendPluginEntry {
    BackendPluginEntry {
        group: BACKEND_PLUGIN_ENTRY_POINT_GROUP,
        name,
        provider,
        distribution: OAUTH_DIST,
        distribution_version: "0.3.0",
    }
}

pub(crate) fn core_entry(
    name: &'static str,
    provider: BackendPluginProvider,
) -> BackendPluginEntry {
    BackendPluginEntry {
        distribution: CORE_DISTRIBUTION,
        ..plugin_entry(name, provider)
    }
}

pub(crate) fn run(
    entries: &[BackendPluginEntry],
    mode: AccessMode,
) -> (DiscoveryReport, BackendRegistry) {
    let mut registry = BackendRegistry::new();
    let report = discover(entries, mode, CORE, &mut registry, None);
    (report, registry)
}

pub(crate) fn services() -> ServiceProvider {
    ServiceProvider {
        config: Arc::new(llm_proxy_api::SharedConfig::default()),
        backend_names: Vec::new(),
    }
}

pub(crate) fn healthy() -> BackendPluginDefinition {
    definition("healthy-oauth", "healthy-plugin", "0.1.0").with_post_build_hook(|_services| Ok(()))
}

pub(crate) fn broken() -> BackendPluginDefinition {
    panic!("No module named 'missing_dependency'")
}

pub(crate) fn plain_openai() -> BackendPluginDefinition {
    definition("openai", "core", "0.1.0")
}

pub(crate) fn refs(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

pub(crate) fn registry_with(names: &[&str]) -> BackendRegistry {
    let mut registry = BackendRegistry::new();
    for name in names {
        let origin = BackendOrigin {
            origin: Origin::Core,
            distribution: CORE_DISTRIBUTION.to_owned(),
            distribution_version: CORE.to_owned(),
            plugin_name: "core".to_owned(),
            requires_personal_credentials: false,
        };
        assert!(
            registry
                .register(name, Arc::new(fake_factory), origin)
                .is_registered()
        );
    }
    registry
}
