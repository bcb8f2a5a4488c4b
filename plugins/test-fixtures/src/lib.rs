//! Misbehaving backend plugins for tests: `broken-fixture`, whose provider panics (a plugin
//! that cannot load), and `incompatible-fixture`, which requires a core version that does not
//! exist yet. Linking this crate into a test binary must not stop the proxy from starting.

use std::sync::Arc;

use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs, PluginCompatibility};
use llm_proxy_api::{Backend, BackendError};

/// Entry-point name of the panicking provider.
pub const BROKEN: &str = "broken-fixture";
/// Entry-point name of the incompatible plugin.
pub const INCOMPATIBLE: &str = "incompatible-fixture";
/// The core version the incompatible plugin requires.
pub const REQUIRED_CORE: &str = "99.0.0";

/// A provider that fails while loading, like a plugin missing one of its own dependencies.
#[expect(clippy::panic, reason = "the fixture exists to panic during discovery")]
pub fn broken() -> BackendPluginDefinition {
    panic!("broken-fixture: a dependency of this plugin is missing")
}

/// A well-formed plugin for a future core.
pub fn incompatible() -> BackendPluginDefinition {
    BackendPluginDefinition::new(
        INCOMPATIBLE,
        "llm-proxy-plugin-test-fixtures",
        PluginCompatibility::new(REQUIRED_CORE),
        never_built,
    )
}

fn never_built(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
    Err(BackendError::internal(
        "incompatible-fixture must never be built",
    ))
}

llm_proxy_api::backend_plugin!("broken-fixture", crate::broken);
llm_proxy_api::backend_plugin!("incompatible-fixture", crate::incompatible);

/// Call from the test binary so the linker keeps these entries.
pub fn link() {}
