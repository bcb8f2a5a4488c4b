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

#[cfg(test)]
mod tests {
    use crate::config::GatewayConfig;

    use super::*;
    use crate::routing::Router;

    /// Routing needs no `AppState`: a map of slots and a plugin message will do.
    struct Fake(BTreeMap<String, BackendSlot>);

    impl InstanceLookup for Fake {
        fn backends(&self) -> &BTreeMap<String, BackendSlot> {
            &self.0
        }

        fn unavailable_backend_message(&self, backend: &str) -> Option<String> {
            (backend == "ollama-native").then(|| "link the ollama-native plugin".to_owned())
        }
    }

    fn fake(slots: &[(&str, &str)]) -> Fake {
        let slot = |(instance, backend_type): &(&str, &str)| BackendSlot {
            instance: (*instance).to_owned(),
            backend_type: (*backend_type).to_owned(),
            backend: Err("not built in this test".to_owned()),
            models: Vec::new(),
        };
        Fake(slots.iter().map(|s| (s.0.to_owned(), slot(s))).collect())
    }

    fn ids(slots: Vec<&BackendSlot>) -> Vec<&str> {
        slots.iter().map(|s| s.instance.as_str()).collect()
    }

    #[test]
    fn targets_name_an_instance_or_a_family() {
        let fake = fake(&[
            ("openai", "openai"),
            ("openai.2", "openai"),
            ("fast", "groq"),
        ]);
        assert_eq!(ids(instances_for(&fake, "openai.2")), ["openai.2"]);
        assert_eq!(ids(instances_for(&fake, "openai")), ["openai"]);
        assert_eq!(ids(instances_for(&fake, "groq")), ["fast"]);
        assert!(find_instance(&fake, "mistral").is_none());
        assert_eq!(available_backends(&fake), "fast, openai, openai.2");
    }

    #[test]
    fn startup_selector_checks_use_the_lookup() {
        let router = Router::new(&GatewayConfig::default()).unwrap();
        let fake = fake(&[("openai", "openai")]);
        assert_eq!(router.validate_selector(&fake, "openai:gpt-4o"), Ok(()));
        assert_eq!(
            router.validate_selector(&fake, "ollama-native:llama3"),
            Err("link the ollama-native plugin".to_owned())
        );
        let unknown = router.validate_selector(&fake, "mistral:large");
        assert!(
            unknown
                .as_ref()
                .is_err_and(|e| e.contains("unknown backend 'mistral'")
                    && e.contains("configured backends: openai")),
            "{unknown:?}"
        );
    }
}
