//! The backend plugin contract (the seed's `plugin_api`): definitions, compatibility, the
//! factory call shape, post-build hooks, and link-time registration with [`backend_plugin!`].

use std::fmt;
use std::sync::Arc;

use crate::backend::Backend;
use crate::config::{BackendInstanceConfig, SharedConfig};
use crate::error::BackendError;
use crate::http::CaptureAwareClient;
use crate::translation::TranslationService;

/// Entry-point group under which backend plugins register.
pub const BACKEND_PLUGIN_ENTRY_POINT_GROUP: &str = "llm_proxy_backends";

/// Boxed error type for hooks.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which core versions a plugin works with (inclusive bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCompatibility {
    /// Oldest supported core version (required, non-blank).
    pub core_min_version: String,
    /// Newest supported core version, if bounded (non-blank when given).
    pub core_max_version: Option<String>,
}

impl PluginCompatibility {
    /// Compatible with `min` and everything after.
    pub fn new(core_min_version: impl Into<String>) -> Self {
        Self {
            core_min_version: core_min_version.into(),
            core_max_version: None,
        }
    }

    /// Adds an upper bound.
    #[must_use]
    pub fn up_to(mut self, core_max_version: impl Into<String>) -> Self {
        self.core_max_version = Some(core_max_version.into());
        self
    }
}

/// What a factory gets to build one backend instance. Construction must not do network I/O.
#[derive(Clone)]
pub struct FactoryArgs {
    /// Capture-aware HTTP client (shared connection pool).
    pub http_client: CaptureAwareClient,
    /// The part of the proxy's configuration shared with every plugin.
    pub shared: Arc<SharedConfig>,
    /// Canonical <-> wire conversions of every protocol.
    pub translation_service: Arc<TranslationService>,
    /// This instance's settings (`backends.<type>[.<name>]`, env, defaults merged).
    pub instance: BackendInstanceConfig,
    /// The raw `backends.<type>` section as written in the configuration file (before env and
    /// CLI overrides), for a plugin to deserialize itself; `None` when the file has none.
    pub raw_section: Option<serde_json::Value>,
}

impl fmt::Debug for FactoryArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactoryArgs")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// Builds a backend instance.
pub type BackendFactory =
    Arc<dyn Fn(FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync>;

/// Services available to post-build hooks.
#[derive(Debug, Clone)]
pub struct ServiceProvider {
    /// The part of the proxy's configuration shared with every plugin.
    pub config: Arc<SharedConfig>,
    /// Names of every registered backend, sorted.
    pub backend_names: Vec<String>,
}

/// Runs after the service graph is built; failures are logged and ignored.
pub type PluginPostBuildHook = Arc<dyn Fn(&ServiceProvider) -> Result<(), BoxError> + Send + Sync>;

/// What a plugin provider returns.
#[derive(Clone)]
pub struct BackendPluginDefinition {
    /// Canonical backend key.
    pub backend_name: String,
    /// Builds instances.
    pub factory: BackendFactory,
    /// Package / plugin identifier for diagnostics.
    pub plugin_name: String,
    /// Supported core versions.
    pub compatibility: PluginCompatibility,
    /// Optional hook run after the service graph is built.
    pub post_build_hook: Option<PluginPostBuildHook>,
    /// Whether the backend uses personal credentials (blocked in multi-user mode).
    pub requires_personal_credentials: bool,
}

impl BackendPluginDefinition {
    /// A definition with no hook and no personal credentials.
    pub fn new(
        backend_name: impl Into<String>,
        plugin_name: impl Into<String>,
        compatibility: PluginCompatibility,
        factory: impl Fn(FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            backend_name: backend_name.into(),
            factory: Arc::new(factory),
            plugin_name: plugin_name.into(),
            compatibility,
            post_build_hook: None,
            requires_personal_credentials: false,
        }
    }

    /// Adds a post-build hook.
    #[must_use]
    pub fn with_post_build_hook(
        mut self,
        hook: impl Fn(&ServiceProvider) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.post_build_hook = Some(Arc::new(hook));
        self
    }

    /// Declares that the backend uses personal credentials.
    #[must_use]
    pub fn requiring_personal_credentials(mut self) -> Self {
        self.requires_personal_credentials = true;
        self
    }
}

impl fmt::Debug for BackendPluginDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendPluginDefinition")
            .field("backend_name", &self.backend_name)
            .field("plugin_name", &self.plugin_name)
            .field("compatibility", &self.compatibility)
            .field("has_post_build_hook", &self.post_build_hook.is_some())
            .field(
                "requires_personal_credentials",
                &self.requires_personal_credentials,
            )
            .finish_non_exhaustive()
    }
}

/// The entry-point target: a zero-argument function returning the definition.
pub type BackendPluginProvider = fn() -> BackendPluginDefinition;

/// A link-time registered entry point (what `pyproject.toml` entry points are upstream).
#[derive(Debug, Clone, Copy)]
pub struct BackendPluginEntry {
    /// Entry-point group (always [`BACKEND_PLUGIN_ENTRY_POINT_GROUP`] via the macro).
    pub group: &'static str,
    /// Entry-point name: the backend name the plugin is registered under.
    pub name: &'static str,
    /// The provider.
    pub provider: BackendPluginProvider,
    /// Crate ("distribution") that registered the entry.
    pub distribution: &'static str,
    /// That crate's version.
    pub distribution_version: &'static str,
}

inventory::collect!(BackendPluginEntry);

/// Every entry point linked into this binary, in link order.
pub fn linked_entries() -> Vec<BackendPluginEntry> {
    inventory::iter::<BackendPluginEntry>
        .into_iter()
        .copied()
        .collect()
}

/// Registers a backend plugin entry point at link time:
/// `backend_plugin!("my-backend", my_plugin::providers::my_backend);`
#[macro_export]
macro_rules! backend_plugin {
    ($name:literal, $provider:path) => {
        $crate::inventory::submit! {
            $crate::plugin::BackendPluginEntry {
                group: $crate::plugin::BACKEND_PLUGIN_ENTRY_POINT_GROUP,
                name: $name,
                provider: $provider,
                distribution: env!("CARGO_PKG_NAME"),
                distribution_version: env!("CARGO_PKG_VERSION"),
            }
        }
    };
}
