//! Post-build hooks of registered plugins: collected by discovery, run once the service graph
//! is built, each isolated so that one failing hook neither stops the others nor startup.

use std::collections::BTreeMap;
use std::fmt;

use llm_proxy_api::{PluginPostBuildHook, ServiceProvider};

use super::isolation::{call_isolated, panic_message};

/// Post-build hooks of registered backends, run in backend-name order.
#[derive(Clone, Default)]
pub struct PostBuildHooks {
    hooks: BTreeMap<String, PluginPostBuildHook>,
}

impl PostBuildHooks {
    /// Backend names with a hook, sorted.
    pub fn names(&self) -> Vec<String> {
        self.hooks.keys().cloned().collect()
    }

    /// The hook of `backend`.
    pub fn get(&self, backend: &str) -> Option<&PluginPostBuildHook> {
        self.hooks.get(backend)
    }

    /// Number of hooks.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// Records the hook of `backend` (discovery, for a registered backend).
    pub(super) fn insert(&mut self, backend: String, hook: PluginPostBuildHook) {
        self.hooks.insert(backend, hook);
    }

    /// Drops every hook.
    pub fn clear(&mut self) {
        self.hooks.clear();
    }
}

impl fmt::Debug for PostBuildHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.hooks.keys()).finish()
    }
}

/// Runs every hook in backend-name order after the service graph is built. A hook that returns
/// an error or panics is logged and skipped; the others still run. Returns the warnings.
pub fn run_post_build_hooks(hooks: &PostBuildHooks, services: &ServiceProvider) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, hook) in &hooks.hooks {
        let failure = match call_isolated(|| hook(services)) {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(payload) => Some(format!("panic: {}", panic_message(payload.as_ref()))),
        };
        if let Some(failure) = failure {
            let message = format!("Plugin post-build hook failed for backend '{name}': {failure}");
            tracing::warn!("{message}");
            warnings.push(message);
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, PoisonError};

    use llm_proxy_api::BackendPluginDefinition;

    use super::super::AccessMode;
    use super::super::fixtures::{definition, plugin_entry, run, services};
    use super::*;

    #[test]
    fn hooks_run_sorted_and_failures_do_not_stop_the_rest() {
        static ORDER: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
        fn note(name: &'static str) {
            ORDER
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(name);
        }
        fn b_panics() -> BackendPluginDefinition {
            definition("b-backend", "b", "0.1.0").with_post_build_hook(|_s| {
                note("b-backend");
                panic!("hook exploded")
            })
        }
        fn a_errs() -> BackendPluginDefinition {
            definition("a-backend", "a", "0.1.0").with_post_build_hook(|_s| {
                note("a-backend");
                Err("hook refused".into())
            })
        }
        fn c_ok() -> BackendPluginDefinition {
            definition("c-backend", "c", "0.1.0").with_post_build_hook(|_s| {
                note("c-backend");
                Ok(())
            })
        }
        let (report, _) = run(
            &[
                plugin_entry("b-backend", b_panics),
                plugin_entry("a-backend", a_errs),
                plugin_entry("c-backend", c_ok),
            ],
            AccessMode::SingleUser,
        );
        assert_eq!(report.registered, ["b-backend", "a-backend", "c-backend"]);
        let warnings = run_post_build_hooks(&report.hooks, &services());
        assert_eq!(
            *ORDER.lock().unwrap_or_else(PoisonError::into_inner),
            ["a-backend", "b-backend", "c-backend"]
        );
        assert_eq!(
            warnings,
            [
                "Plugin post-build hook failed for backend 'a-backend': hook refused",
                "Plugin post-build hook failed for backend 'b-backend': panic: hook exploded",
            ]
        );
    }
}
