//! The backend registry: backend name -> factory plus where the registration came from, and the
//! names refused in multi-user mode (consulted when a request names a backend that is missing).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use llm_proxy_api::BackendFactory;

/// Whether a backend ships with the proxy or comes from a linked plugin crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Built-in connector (`llm-proxy-connectors`).
    Core,
    /// External plugin crate.
    Plugin,
}

impl Origin {
    /// Low-cardinality label for logs, metrics and diagnostics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Plugin => "plugin",
        }
    }
}

/// Where a registered backend came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendOrigin {
    /// Core or plugin.
    pub origin: Origin,
    /// Crate that registered the entry point.
    pub distribution: String,
    /// That crate's version.
    pub distribution_version: String,
    /// The definition's `plugin_name`.
    pub plugin_name: String,
    /// Kept so backend creation can refuse the backend when multi-user mode is only known from
    /// the loaded config (discovery may have run before it).
    pub requires_personal_credentials: bool,
}

/// Result of [`BackendRegistry::register`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The name was free and is now taken.
    Registered,
    /// The very same factory (`Arc::ptr_eq`) was already registered under the name; no change.
    AlreadySameFactory,
    /// A different factory owns the name; the first registration is kept.
    ConflictKeptFirst,
    /// The name is empty or blank; nothing was registered.
    RejectedEmptyName,
}

impl RegisterOutcome {
    /// Whether this call added the backend.
    pub fn is_registered(self) -> bool {
        self == Self::Registered
    }
}

/// The warning logged when `name` is taken by a different factory; discovery reuses it for its
/// report so the log and the diagnostics say the same thing.
pub fn conflict_warning(name: &str, kept: &BackendOrigin) -> String {
    format!(
        "Backend '{name}' is already registered with a different factory (by {} crate '{}'); \
         keeping the first registration",
        kept.origin.label(),
        kept.distribution,
    )
}

#[derive(Clone)]
struct RegisteredBackend {
    factory: BackendFactory,
    origin: BackendOrigin,
}

/// Backend name -> factory. First registration of a name wins, so core connectors (registered
/// first) win collisions with plugins.
#[derive(Default, Clone)]
pub struct BackendRegistry {
    backends: BTreeMap<String, RegisteredBackend>,
    blocked: BTreeSet<String>,
}

impl BackendRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `name` unless the name is blank or already taken.
    pub fn register(
        &mut self,
        name: &str,
        factory: BackendFactory,
        origin: BackendOrigin,
    ) -> RegisterOutcome {
        if name.trim().is_empty() {
            tracing::warn!("Refusing to register a backend with an empty name");
            return RegisterOutcome::RejectedEmptyName;
        }
        if let Some(existing) = self.backends.get(name) {
            if Arc::ptr_eq(&existing.factory, &factory) {
                tracing::debug!(
                    backend = name,
                    "backend already registered with this factory"
                );
                return RegisterOutcome::AlreadySameFactory;
            }
            tracing::warn!("{}", conflict_warning(name, &existing.origin));
            return RegisterOutcome::ConflictKeptFirst;
        }
        self.backends
            .insert(name.to_owned(), RegisteredBackend { factory, origin });
        RegisterOutcome::Registered
    }

    /// The factory registered under `name`.
    pub fn factory(&self, name: &str) -> Option<&BackendFactory> {
        self.backends.get(name).map(|b| &b.factory)
    }

    /// Where the backend registered under `name` came from.
    pub fn origin(&self, name: &str) -> Option<&BackendOrigin> {
        self.backends.get(name).map(|b| &b.origin)
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.backends.contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.backends.keys().cloned().collect()
    }

    /// Number of registered backends.
    pub fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Records names refused because the proxy runs in multi-user mode (merged, kept sorted).
    pub fn mark_blocked<I, S>(&mut self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.blocked.extend(names.into_iter().map(Into::into));
    }

    /// Whether `name` was refused in multi-user mode (exact match; callers pass the normalized
    /// backend name).
    pub fn is_blocked(&self, name: &str) -> bool {
        self.blocked.contains(name)
    }

    /// Names refused in multi-user mode, sorted.
    pub fn blocked(&self) -> Vec<String> {
        self.blocked.iter().cloned().collect()
    }
}

impl fmt::Debug for BackendRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backends: BTreeMap<&str, &BackendOrigin> = self
            .backends
            .iter()
            .map(|(name, b)| (name.as_str(), &b.origin))
            .collect();
        f.debug_struct("BackendRegistry")
            .field("backends", &backends)
            .field("blocked", &self.blocked)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use llm_proxy_api::{Backend, BackendError, FactoryArgs};

    use super::*;

    fn failing_factory(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
        Err(BackendError::internal("fake"))
    }

    fn factory() -> BackendFactory {
        Arc::new(failing_factory)
    }

    fn origin(origin: Origin, distribution: &str) -> BackendOrigin {
        BackendOrigin {
            origin,
            distribution: distribution.to_owned(),
            distribution_version: "0.1.0".to_owned(),
            plugin_name: "p".to_owned(),
            requires_personal_credentials: false,
        }
    }

    #[test]
    fn registers_and_looks_up_with_sorted_names() {
        let mut registry = BackendRegistry::new();
        let f = factory();
        assert_eq!(
            registry.register("openai", f.clone(), origin(Origin::Core, "c")),
            RegisterOutcome::Registered
        );
        assert!(
            registry
                .register("anthropic", factory(), origin(Origin::Core, "c"))
                .is_registered()
        );
        assert_eq!(registry.names(), ["anthropic", "openai"]);
        assert_eq!(registry.len(), 2);
        assert!(registry.contains("openai"));
        assert!(!registry.contains("gemini"));
        assert!(
            registry
                .factory("openai")
                .is_some_and(|got| Arc::ptr_eq(got, &f))
        );
        assert!(registry.factory("gemini").is_none());
        assert_eq!(
            registry.origin("openai").map(|o| o.origin),
            Some(Origin::Core)
        );
    }

    #[test]
    fn same_factory_again_is_idempotent() {
        let mut registry = BackendRegistry::new();
        let f = factory();
        assert!(
            registry
                .register("x", f.clone(), origin(Origin::Core, "c"))
                .is_registered()
        );
        let again = registry.register("x", f, origin(Origin::Plugin, "p"));
        assert_eq!(again, RegisterOutcome::AlreadySameFactory);
        assert!(!again.is_registered());
        // The original origin is untouched.
        assert_eq!(registry.origin("x").map(|o| o.origin), Some(Origin::Core));
    }

    #[test]
    fn different_factory_keeps_the_first() {
        let mut registry = BackendRegistry::new();
        let first = factory();
        assert!(
            registry
                .register("x", first.clone(), origin(Origin::Core, "c"))
                .is_registered()
        );
        assert_eq!(
            registry.register("x", factory(), origin(Origin::Plugin, "p")),
            RegisterOutcome::ConflictKeptFirst
        );
        assert!(
            registry
                .factory("x")
                .is_some_and(|got| Arc::ptr_eq(got, &first))
        );
        assert_eq!(
            registry.origin("x").map(|o| o.distribution.as_str()),
            Some("c")
        );
    }

    #[test]
    fn empty_or_blank_name_is_rejected() {
        let mut registry = BackendRegistry::new();
        assert_eq!(
            registry.register("", factory(), origin(Origin::Plugin, "p")),
            RegisterOutcome::RejectedEmptyName
        );
        assert_eq!(
            registry.register("  ", factory(), origin(Origin::Plugin, "p")),
            RegisterOutcome::RejectedEmptyName
        );
        assert!(registry.is_empty());
    }

    #[test]
    fn blocked_names_merge_sorted_and_unique() {
        let mut registry = BackendRegistry::new();
        registry.mark_blocked(["openai_codex"]);
        registry.mark_blocked(["gemini-oauth-plan".to_owned(), "openai_codex".to_owned()]);
        assert_eq!(registry.blocked(), ["gemini-oauth-plan", "openai_codex"]);
        assert!(registry.is_blocked("gemini-oauth-plan"));
        assert!(!registry.is_blocked("openai"));
    }
}
