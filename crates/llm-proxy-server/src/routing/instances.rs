//! The configured backend instances as routing sees them: [`BackendSlot`], the
//! [`InstanceLookup`] routing receives (implemented by `AppState`, so routing does not depend on
//! the state that owns it), and how a target names instances (an instance id or a family).

use std::collections::BTreeMap;
use std::sync::Arc;

use llm_proxy_api::Backend;

/// A configured backend instance.
pub struct BackendSlot {
    /// Instance id (`openai`, `openai.1`).
    pub instance: String,
    /// Backend type.
    pub backend_type: String,
    /// The backend, or why it could not be built.
    pub backend: Result<Arc<dyn Backend>, String>,
    /// Static model allowlist.
    pub models: Vec<String>,
}

impl std::fmt::Debug for BackendSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSlot")
            .field("instance", &self.instance)
            .field("backend_type", &self.backend_type)
            .field("available", &self.backend.is_ok())
            .finish()
    }
}

/// What routing needs from the gateway: the configured instances, and why a backend nobody
/// configured cannot be used when that is a plugin matter.
pub trait InstanceLookup {
    /// Backend instances by id.
    fn backends(&self) -> &BTreeMap<String, BackendSlot>;

    /// Why `backend` cannot be used when it is a plugin backend that is not linked or is
    /// blocked in multi-user mode, with what to do about it; `None` otherwise.
    fn unavailable_backend_message(&self, backend: &str) -> Option<String>;
}

/// The instance a target names, or for a family the first usable instance of it.
pub fn find_instance<'s>(
    instances: &'s dyn InstanceLookup,
    target: &str,
) -> Option<&'s BackendSlot> {
    instances_for(instances, target).into_iter().next()
}

/// Every instance a target may use, usable ones first: the instance itself, or the
/// instances of a backend family.
pub fn instances_for<'s>(instances: &'s dyn InstanceLookup, target: &str) -> Vec<&'s BackendSlot> {
    let backends = instances.backends();
    if let Some(slot) = backends.get(target) {
        return vec![slot];
    }
    let mut family: Vec<&BackendSlot> = backends
        .values()
        .filter(|s| {
            s.instance
                .split_once('.')
                .map_or(s.instance.as_str(), |(t, _)| t)
                == target
                || s.backend_type == target
        })
        .collect();
    family.sort_by_key(|s| s.backend.is_err());
    family
}

pub(super) fn available_backends(instances: &dyn InstanceLookup) -> String {
    instances
        .backends()
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .join(", ")
}
