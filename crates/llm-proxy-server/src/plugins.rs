//! Backend discovery: turns the linked `backend_plugin!` entry points into a registry of
//! backend factories (built-in connectors first, so they win name clashes).

use std::collections::BTreeMap;

use llm_proxy_api::plugin::{BackendPluginDefinition, BackendPluginEntry, linked_entries};

/// Distribution name of the built-in connectors.
pub const CORE_DISTRIBUTION: &str = "llm-proxy-connectors";

/// Registered backend definitions by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    definitions: BTreeMap<String, (BackendPluginDefinition, Origin)>,
}

/// Where a backend comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built in.
    Core,
    /// An external plugin crate.
    Plugin {
        /// Crate name.
        distribution: String,
        /// Crate version.
        version: String,
    },
}

impl Registry {
    /// Discovers every linked entry point.
    pub fn from_linked() -> Self {
        Self::from_entries(&linked_entries())
    }

    /// Discovers the given entries: core ones first.
    pub fn from_entries(entries: &[BackendPluginEntry]) -> Self {
        let mut reg = Self::default();
        let (core, plugins): (Vec<&BackendPluginEntry>, Vec<&BackendPluginEntry>) =
            entries.iter().partition(|e| e.distribution == CORE_DISTRIBUTION);
        for e in core.into_iter().chain(plugins) {
            if reg.definitions.contains_key(e.name) {
                continue;
            }
            let origin = if e.distribution == CORE_DISTRIBUTION {
                Origin::Core
            } else {
                Origin::Plugin {
                    distribution: e.distribution.to_owned(),
                    version: e.distribution_version.to_owned(),
                }
            };
            reg.definitions.insert(e.name.to_owned(), ((e.provider)(), origin));
        }
        reg
    }

    /// The definition registered under `name`.
    pub fn get(&self, name: &str) -> Option<&BackendPluginDefinition> {
        self.definitions.get(name).map(|(d, _)| d)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.definitions.keys().cloned().collect()
    }
}
