//! Backend plugin discovery: turns link-time entry points into registry entries, fail-open
//! (a broken, invalid or incompatible plugin is skipped with a warning; startup continues),
//! and reports what it did ([`DiscoveryReport`]).
//!
//! Built-in connectors go through the same path: entries from [`CORE_DISTRIBUTION`] are
//! processed before every other entry, so core wins name collisions.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use llm_proxy_api::plugin::BackendPluginEntry;
use llm_proxy_api::{BACKEND_PLUGIN_ENTRY_POINT_GROUP, BackendPluginDefinition};

use super::access_mode::{AccessMode, PERSONAL_CREDENTIALS_RULE};
use super::compat::{check_compatibility, validate_definition};
use super::hooks::PostBuildHooks;
use super::isolation::{call_isolated, panic_message};
use super::names::{ExtractedSet, is_extracted, normalize_backend_name};
use super::registry::{BackendOrigin, BackendRegistry, Origin, RegisterOutcome, conflict_warning};
use super::startup_report::personal_credentials_summary;

/// Crate whose entry points are the built-in connectors.
pub const CORE_DISTRIBUTION: &str = "llm-proxy-connectors";

/// Backend names that no longer exist; their entry points are ignored without being called.
pub const RETIRED_BACKEND_NAMES: &[&str] = &["anthropic-oauth"];

/// Why an entry point was not registered (low-cardinality label for diagnostics and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipKind {
    /// The name is retired; the provider was not called.
    Retired,
    /// The provider panicked.
    LoadFailed,
    /// The definition broke the strict metadata contract.
    InvalidMetadata,
    /// The running core is outside the plugin's supported range.
    Incompatible,
    /// Personal-credential backend refused in multi-user mode.
    MultiUserBlocked,
    /// Another entry point of the same name was handled earlier in this run.
    DuplicateEntry,
    /// The name already belongs to a different factory (first registration wins).
    NameTaken,
    /// The same factory was already registered under the name.
    AlreadyRegistered,
    /// The registry refused the name (blank).
    InvalidName,
}

impl SkipKind {
    /// Stable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Retired => "retired",
            Self::LoadFailed => "load_failed",
            Self::InvalidMetadata => "invalid_metadata",
            Self::Incompatible => "incompatible",
            Self::MultiUserBlocked => "multi_user_blocked",
            Self::DuplicateEntry => "duplicate_entry",
            Self::NameTaken => "name_taken",
            Self::AlreadyRegistered => "already_registered",
            Self::InvalidName => "invalid_name",
        }
    }
}

/// An entry point that did not become a backend, for the diagnostics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPlugin {
    /// Entry-point name.
    pub entry_name: String,
    /// The definition's `plugin_name`, when the provider got that far and it is not blank.
    pub plugin_name: Option<String>,
    /// Crate that registered the entry point.
    pub distribution: String,
    /// Category.
    pub kind: SkipKind,
    /// Human-readable reason.
    pub reason: String,
}

/// What is known about a registered backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMetadata {
    /// Registered name (the entry-point name).
    pub backend_name: String,
    /// Plugin identifier.
    pub plugin_name: String,
    /// Oldest supported core.
    pub core_min_version: String,
    /// Newest supported core, if bounded.
    pub core_max_version: Option<String>,
    /// Crate that registered the entry point.
    pub distribution: String,
    /// That crate's version.
    pub distribution_version: String,
    /// Core or plugin.
    pub origin: Origin,
    /// Whether the definition declared personal credentials.
    pub requires_personal_credentials: bool,
}

/// Outcome of one discovery run.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryReport {
    /// No non-core backend entry point was linked.
    pub core_only: bool,
    /// Names registered by this run, in registration order.
    pub registered: Vec<String>,
    /// Metadata of the backends registered by this run.
    pub metadata: BTreeMap<String, PluginMetadata>,
    /// Entry points that were not registered, in processing order.
    pub skipped: Vec<SkippedPlugin>,
    /// Every name refused in multi-user mode so far (the registry's list after this run), sorted.
    pub blocked: Vec<String>,
    /// The extracted classification this run used.
    pub extracted: ExtractedSet,
    /// Warnings emitted, in order.
    pub warnings: Vec<String>,
    /// Hooks of the backends registered by this run.
    pub hooks: PostBuildHooks,
}

/// Registers every usable backend entry point into `registry`: core entries
/// ([`CORE_DISTRIBUTION`]) first, in order, then the others. Never fails: a broken, invalid,
/// incompatible or blocked entry is skipped with a warning (in the report and logged); retired
/// and duplicate entries are skipped quietly (debug). Production passes
/// `llm_proxy_api::plugin::linked_entries()` and [`llm_proxy_api::CORE_VERSION`];
/// `env_extracted` is the value of [`EXTRACTED_BACKENDS_ENV`](super::names::EXTRACTED_BACKENDS_ENV).
pub fn discover(
    entries: &[BackendPluginEntry],
    mode: AccessMode,
    core_version: &str,
    registry: &mut BackendRegistry,
    env_extracted: Option<&str>,
) -> DiscoveryReport {
    let (backend_entries, other_groups): (Vec<&BackendPluginEntry>, Vec<_>) = entries
        .iter()
        .partition(|e| e.group == BACKEND_PLUGIN_ENTRY_POINT_GROUP);
    for entry in other_groups {
        tracing::debug!(
            entry = entry.name,
            group = entry.group,
            "ignoring entry of another group"
        );
    }
    let (core, plugins): (Vec<_>, Vec<_>) = backend_entries
        .into_iter()
        .partition(|e| e.distribution == CORE_DISTRIBUTION);

    let mut run = DiscoveryRun {
        mode,
        core_version,
        registry,
        report: DiscoveryReport {
            core_only: plugins.is_empty(),
            extracted: ExtractedSet::from_sources(env_extracted, entries),
            ..DiscoveryReport::default()
        },
        first_load_error: HashMap::new(),
        newly_blocked: BTreeSet::new(),
    };
    if run.report.core_only {
        tracing::debug!("no backend plugins linked; core-only mode");
    }
    // Duplicates are detected per phase: a plugin reusing a core name is a registry conflict
    // (warned), not a silent duplicate.
    run.phase(&core, Origin::Core);
    run.phase(&plugins, Origin::Plugin);

    let DiscoveryRun {
        registry,
        mut report,
        newly_blocked,
        ..
    } = run;
    if !newly_blocked.is_empty() {
        registry.mark_blocked(newly_blocked);
    }
    report.blocked = registry.blocked();
    tracing::info!("{}", personal_credentials_summary(registry));
    report
}

struct DiscoveryRun<'a> {
    mode: AccessMode,
    core_version: &'a str,
    registry: &'a mut BackendRegistry,
    report: DiscoveryReport,
    /// (error kind, message) -> entry that failed that way first.
    first_load_error: HashMap<(&'static str, String), String>,
    newly_blocked: BTreeSet<String>,
}

impl DiscoveryRun<'_> {
    fn phase(&mut self, entries: &[&BackendPluginEntry], origin: Origin) {
        let mut seen = HashSet::new();
        for entry in entries {
            self.process(entry, origin, &mut seen);
        }
    }

    fn process(&mut self, entry: &BackendPluginEntry, origin: Origin, seen: &mut HashSet<String>) {
        let ep = entry.name;
        if RETIRED_BACKEND_NAMES.contains(&normalize_backend_name(ep).as_str()) {
            tracing::debug!(entry = ep, "skipping retired backend entry point");
            self.skip(
                entry,
                None,
                SkipKind::Retired,
                "retired backend name".to_owned(),
            );
            return;
        }

        let def = match call_isolated(entry.provider) {
            Ok(def) => def,
            Err(payload) => {
                self.load_failed(entry, "panic", panic_message(payload.as_ref()));
                return;
            }
        };

        if let Err(reason) = validate_definition(&def) {
            self.warn(format!(
                "Skipping backend plugin entry point '{ep}' ({}): {reason}.",
                entry.distribution
            ));
            let plugin_name = Some(def.plugin_name.trim().to_owned()).filter(|p| !p.is_empty());
            self.skip(entry, plugin_name, SkipKind::InvalidMetadata, reason);
            return;
        }
        let plugin = def.plugin_name.trim();

        if let Err(reason) = check_compatibility(self.core_version, &def.compatibility) {
            self.warn(format!(
                "Skipping backend plugin '{plugin}' from entry point '{ep}': {reason}."
            ));
            self.skip(
                entry,
                Some(plugin.to_owned()),
                SkipKind::Incompatible,
                reason,
            );
            return;
        }

        // The entry-point name is what users configure, so it wins over the declared name.
        let declared = def.backend_name.trim();
        if declared != ep {
            self.warn(format!(
                "Backend plugin '{plugin}' declares backend_name '{declared}' but its entry point \
                 is '{ep}'; registering it as '{ep}'."
            ));
        }

        if self.mode == AccessMode::MultiUser
            && (is_extracted(ep, &self.report.extracted)
                || is_extracted(declared, &self.report.extracted)
                || def.requires_personal_credentials)
        {
            let name = normalize_backend_name(ep);
            self.warn(format!(
                "Skipping plugin backend '{name}' from plugin '{plugin}' in Multi User Mode: \
                 {PERSONAL_CREDENTIALS_RULE}."
            ));
            self.skip(
                entry,
                Some(plugin.to_owned()),
                SkipKind::MultiUserBlocked,
                format!("blocked in Multi User Mode: {PERSONAL_CREDENTIALS_RULE}"),
            );
            self.newly_blocked.insert(name);
            return;
        }

        if !seen.insert(ep.to_owned()) {
            tracing::debug!(
                entry = ep,
                "duplicate backend entry point in this run; skipping"
            );
            self.skip(
                entry,
                Some(plugin.to_owned()),
                SkipKind::DuplicateEntry,
                format!("another entry point named '{ep}' was handled earlier"),
            );
            return;
        }

        let backend_origin = BackendOrigin {
            origin,
            distribution: entry.distribution.to_owned(),
            distribution_version: entry.distribution_version.to_owned(),
            plugin_name: plugin.to_owned(),
            requires_personal_credentials: def.requires_personal_credentials,
        };
        match self
            .registry
            .register(ep, def.factory.clone(), backend_origin)
        {
            RegisterOutcome::Registered => self.record(entry, origin, &def),
            RegisterOutcome::AlreadySameFactory => {
                self.skip(
                    entry,
                    Some(plugin.to_owned()),
                    SkipKind::AlreadyRegistered,
                    format!("'{ep}' is already registered with the same factory"),
                );
            }
            RegisterOutcome::ConflictKeptFirst => {
                let reason = match self.registry.origin(ep) {
                    Some(kept) => conflict_warning(ep, kept),
                    None => format!("'{ep}' is already registered with a different factory"),
                };
                // The registry already logged this; only the report needs it.
                self.report.warnings.push(reason.clone());
                self.skip(entry, Some(plugin.to_owned()), SkipKind::NameTaken, reason);
            }
            RegisterOutcome::RejectedEmptyName => {
                let reason = "the entry-point name is empty".to_owned();
                self.warn(format!(
                    "Skipping backend plugin '{plugin}' ({}): {reason}.",
                    entry.distribution
                ));
                self.skip(
                    entry,
                    Some(plugin.to_owned()),
                    SkipKind::InvalidName,
                    reason,
                );
            }
        }
    }

    fn record(
        &mut self,
        entry: &BackendPluginEntry,
        origin: Origin,
        def: &BackendPluginDefinition,
    ) {
        let name = entry.name.to_owned();
        self.report.metadata.insert(
            name.clone(),
            PluginMetadata {
                backend_name: name.clone(),
                plugin_name: def.plugin_name.trim().to_owned(),
                core_min_version: def.compatibility.core_min_version.clone(),
                core_max_version: def.compatibility.core_max_version.clone(),
                distribution: entry.distribution.to_owned(),
                distribution_version: entry.distribution_version.to_owned(),
                origin,
                requires_personal_credentials: def.requires_personal_credentials,
            },
        );
        if let Some(hook) = &def.post_build_hook {
            self.report.hooks.insert(name.clone(), hook.clone());
        }
        tracing::debug!(backend = %name, origin = origin.label(), "registered backend");
        self.report.registered.push(name);
    }

    /// Warns once per distinct (kind, message); later identical failures only go to debug.
    fn load_failed(&mut self, entry: &BackendPluginEntry, kind: &'static str, message: String) {
        let ep = entry.name;
        let reason = format!("{kind}: {message}");
        match self.first_load_error.get(&(kind, message.clone())) {
            Some(first) => tracing::debug!(
                entry = ep,
                "Failed to load backend plugin entry point '{ep}' ({}): same load error as '{first}'",
                entry.distribution
            ),
            None => {
                self.first_load_error.insert((kind, message), ep.to_owned());
                self.warn(format!(
                    "Failed to load backend plugin entry point '{ep}' ({}): {reason}",
                    entry.distribution
                ));
            }
        }
        self.skip(entry, None, SkipKind::LoadFailed, reason);
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.report.warnings.push(message);
    }

    fn skip(
        &mut self,
        entry: &BackendPluginEntry,
        plugin_name: Option<String>,
        kind: SkipKind,
        reason: String,
    ) {
        self.report.skipped.push(SkippedPlugin {
            entry_name: entry.name.to_owned(),
            plugin_name,
            distribution: entry.distribution.to_owned(),
            kind,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, PoisonError};

    use llm_proxy_api::{BackendFactory, PluginCompatibility};

    use super::super::fixtures::*;
    use super::super::guidance::GENERIC_INSTALL_COMMAND;
    use super::super::hooks::run_post_build_hooks;
    use super::super::names::EXTRACTED_BACKENDS_ENV;
    use super::*;

    fn warnings_containing(report: &DiscoveryReport, needle: &str) -> usize {
        report
            .warnings
            .iter()
            .filter(|w| w.contains(needle))
            .count()
    }

    // --- plugin_api case 1: export stability ----------------------------------------------

    #[test]
    fn entry_point_group_and_type_names_are_stable() {
        assert_eq!(BACKEND_PLUGIN_ENTRY_POINT_GROUP, "llm_proxy_backends");
        assert!(
            std::any::type_name::<BackendPluginDefinition>().ends_with("BackendPluginDefinition")
        );
        assert!(std::any::type_name::<PluginCompatibility>().ends_with("PluginCompatibility"));
        assert_eq!(
            GENERIC_INSTALL_COMMAND,
            "cargo build --release -p llm-proxy --features <plugin feature>"
        );
        assert_eq!(EXTRACTED_BACKENDS_ENV, "LLM_PROXY_EXTRACTED_BACKENDS");
    }

    // --- discovery cases 1-14 --------------------------------------------------------------

    #[test]
    fn no_entries_is_core_only_mode_without_warnings() {
        let (report, registry) = run(&[], AccessMode::SingleUser);
        assert!(report.core_only);
        assert!(report.registered.is_empty());
        assert!(report.warnings.is_empty());
        assert!(registry.is_empty());

        // Only core entries linked: still no plugins.
        let (report, _) = run(
            &[core_entry("openai", plain_openai)],
            AccessMode::SingleUser,
        );
        assert!(report.core_only);
        assert_eq!(report.registered, ["openai"]);
    }

    #[test]
    fn retired_entry_is_skipped_without_calling_its_provider() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn retired() -> BackendPluginDefinition {
            CALLS.fetch_add(1, Ordering::SeqCst);
            panic!("must not be called")
        }
        let (report, registry) = run(
            &[plugin_entry("anthropic-oauth", retired)],
            AccessMode::SingleUser,
        );
        assert_eq!(CALLS.load(Ordering::SeqCst), 0);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(registry.is_empty());
        assert_eq!(
            report.skipped.first().map(|s| s.kind),
            Some(SkipKind::Retired)
        );
    }

    #[test]
    fn panicking_provider_is_a_load_failure() {
        let (report, registry) = run(
            &[plugin_entry("broken-oauth", broken)],
            AccessMode::SingleUser,
        );
        assert!(report.registered.is_empty());
        assert!(registry.is_empty());
        assert_eq!(
            report.warnings,
            [format!(
                "Failed to load backend plugin entry point 'broken-oauth' ({OAUTH_DIST}): panic: \
                 No module named 'missing_dependency'"
            )]
        );
        assert_eq!(
            report.skipped.first().map(|s| s.kind),
            Some(SkipKind::LoadFailed)
        );
        assert_eq!(
            report.skipped.first().and_then(|s| s.plugin_name.clone()),
            None
        );
    }

    #[test]
    fn identical_load_failures_warn_once_naming_the_first() {
        let (report, _) = run(
            &[
                plugin_entry("oauth-a", broken),
                plugin_entry("oauth-b", broken),
            ],
            AccessMode::SingleUser,
        );
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert_eq!(warnings_containing(&report, "'oauth-a'"), 1);
        assert_eq!(warnings_containing(&report, "'oauth-b'"), 0);
        // Both are still listed for diagnostics.
        let skipped: Vec<&str> = report
            .skipped
            .iter()
            .map(|s| s.entry_name.as_str())
            .collect();
        assert_eq!(skipped, ["oauth-a", "oauth-b"]);
    }

    #[test]
    fn different_load_failures_each_warn() {
        fn other_failure() -> BackendPluginDefinition {
            panic!("{}", String::from("different failure"))
        }
        let (report, _) = run(
            &[
                plugin_entry("oauth-a", broken),
                plugin_entry("oauth-b", other_failure),
            ],
            AccessMode::SingleUser,
        );
        assert_eq!(report.warnings.len(), 2);
        assert_eq!(warnings_containing(&report, "panic: different failure"), 1);
    }

    #[test]
    fn blank_metadata_breaks_the_strict_contract() {
        fn blank_backend() -> BackendPluginDefinition {
            definition("  ", "p", "0.1.0")
        }
        fn blank_plugin() -> BackendPluginDefinition {
            definition("blank-plugin", " ", "0.1.0")
        }
        fn blank_min() -> BackendPluginDefinition {
            definition("blank-min", "p", "")
        }
        fn blank_max() -> BackendPluginDefinition {
            bounded("blank-max", "p", "0.1.0", " ")
        }
        let (report, registry) = run(
            &[
                plugin_entry("blank-backend", blank_backend),
                plugin_entry("blank-plugin", blank_plugin),
                plugin_entry("blank-min", blank_min),
                plugin_entry("blank-max", blank_max),
            ],
            AccessMode::SingleUser,
        );
        assert!(registry.is_empty());
        assert_eq!(report.warnings.len(), 4);
        assert_eq!(warnings_containing(&report, "strict metadata contract"), 4);
        assert_eq!(warnings_containing(&report, "backend_name is required"), 1);
        assert_eq!(warnings_containing(&report, "plugin_name is required"), 1);
        assert_eq!(
            warnings_containing(
                &report,
                "core_min_version is required (strict metadata contract)"
            ),
            1
        );
        assert_eq!(
            warnings_containing(&report, "core_max_version must not be blank"),
            1
        );
        assert!(
            report
                .skipped
                .iter()
                .all(|s| s.kind == SkipKind::InvalidMetadata)
        );
        assert_eq!(
            report.skipped.get(1).and_then(|s| s.plugin_name.clone()),
            None
        );
    }

    #[test]
    fn plugin_requiring_newer_core_is_skipped() {
        fn too_new() -> BackendPluginDefinition {
            definition("future-oauth", "future-plugin", "9.9.9")
        }
        let (report, registry) = run(
            &[plugin_entry("future-oauth", too_new)],
            AccessMode::SingleUser,
        );
        assert!(registry.is_empty());
        assert_eq!(
            report.warnings,
            [
                "Skipping backend plugin 'future-plugin' from entry point 'future-oauth': requires \
              core>=9.9.9, running core is 0.1.0."
            ]
        );
        assert_eq!(
            report.skipped.first().map(|s| s.kind),
            Some(SkipKind::Incompatible)
        );
    }

    #[test]
    fn entry_point_name_wins_over_declared_backend_name() {
        fn mismatched() -> BackendPluginDefinition {
            definition(" declared-name ", "det-plugin", "0.1.0")
        }
        let (report, registry) = run(
            &[plugin_entry("deterministic-oauth", mismatched)],
            AccessMode::SingleUser,
        );
        assert_eq!(report.registered, ["deterministic-oauth"]);
        assert_eq!(registry.names(), ["deterministic-oauth"]);
        assert_eq!(
            warnings_containing(&report, "declares backend_name 'declared-name'"),
            1
        );
        let meta = report.metadata.get("deterministic-oauth");
        assert_eq!(meta.map(|m| m.plugin_name.as_str()), Some("det-plugin"));
        assert_eq!(meta.map(|m| m.core_min_version.as_str()), Some("0.1.0"));

        // A declared name equal after trimming is not worth a warning.
        fn padded() -> BackendPluginDefinition {
            definition("  same-oauth ", "p", "0.1.0")
        }
        let (report, _) = run(
            &[plugin_entry("same-oauth", padded)],
            AccessMode::SingleUser,
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn registered_plugin_hook_is_recorded_and_runs() {
        static HOOK_CALLS: AtomicUsize = AtomicUsize::new(0);
        fn with_hook() -> BackendPluginDefinition {
            definition("hooked-oauth", "hook-plugin", "0.1.0").with_post_build_hook(|services| {
                assert!(services.backend_names.is_empty());
                HOOK_CALLS.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        }
        let (report, _) = run(
            &[plugin_entry("hooked-oauth", with_hook)],
            AccessMode::SingleUser,
        );
        assert_eq!(report.hooks.names(), ["hooked-oauth"]);
        assert_eq!(
            HOOK_CALLS.load(Ordering::SeqCst),
            0,
            "hooks wait for the service graph"
        );
        let warnings = run_post_build_hooks(&report.hooks, &services());
        assert!(warnings.is_empty());
        assert_eq!(HOOK_CALLS.load(Ordering::SeqCst), 1);
        // The hook is also reachable by name and the set can be cleared.
        let mut hooks = report.hooks.clone();
        assert!(hooks.get("hooked-oauth").is_some());
        hooks.clear();
        assert!(hooks.is_empty());
    }

    #[test]
    fn incompatible_plugin_hook_is_not_recorded() {
        fn incompatible_with_hook() -> BackendPluginDefinition {
            bounded("old-oauth", "old-plugin", "0.0.1", "0.0.9")
                .with_post_build_hook(|_services| Ok(()))
        }
        let (report, registry) = run(
            &[plugin_entry("old-oauth", incompatible_with_hook)],
            AccessMode::SingleUser,
        );
        assert!(report.hooks.is_empty());
        assert!(registry.is_empty());
        assert_eq!(
            warnings_containing(&report, "supports core<=0.0.9, running core is 0.1.0"),
            1
        );
    }

    /// Upstream case 10 (non-callable `post_build_hook`) and the "not a definition" half of
    /// case 5 cannot happen here: a provider returns `BackendPluginDefinition` and its hook is
    /// an `Fn`. What remains observable is that a plugin without a hook records none.
    #[test]
    fn plugin_without_hook_records_none() {
        fn no_hook() -> BackendPluginDefinition {
            definition("plain-oauth", "plain", "0.1.0")
        }
        let (report, _) = run(
            &[plugin_entry("plain-oauth", no_hook)],
            AccessMode::SingleUser,
        );
        assert_eq!(report.registered, ["plain-oauth"]);
        assert!(report.hooks.is_empty());
    }

    #[test]
    fn broken_plugin_does_not_prevent_a_healthy_one() {
        let (report, registry) = run(
            &[
                plugin_entry("broken-oauth", broken),
                plugin_entry("healthy-oauth", healthy),
            ],
            AccessMode::SingleUser,
        );
        assert_eq!(report.registered, ["healthy-oauth"]);
        assert_eq!(registry.names(), ["healthy-oauth"]);
        assert!(report.metadata.contains_key("healthy-oauth"));
        assert_eq!(report.hooks.names(), ["healthy-oauth"]);
        assert_eq!(warnings_containing(&report, "'broken-oauth'"), 1);
        assert!(!report.core_only);
    }

    #[test]
    fn multi_user_mode_blocks_extracted_backends_and_merges_the_blocked_list() {
        fn gemini_plan() -> BackendPluginDefinition {
            definition("gemini-oauth-plan", "oauth-connectors", "0.1.0")
        }
        let mut registry = BackendRegistry::new();
        registry.mark_blocked(["openai_codex"]);
        let report = discover(
            &[plugin_entry("gemini-oauth-plan", gemini_plan)],
            AccessMode::MultiUser,
            CORE,
            &mut registry,
            None,
        );
        assert!(report.registered.is_empty());
        assert!(!registry.contains("gemini-oauth-plan"));
        assert_eq!(report.blocked, ["gemini-oauth-plan", "openai_codex"]);
        assert_eq!(registry.blocked(), report.blocked);
        assert_eq!(
            warnings_containing(
                &report,
                "Skipping plugin backend 'gemini-oauth-plan' from plugin 'oauth-connectors' in \
                 Multi User Mode"
            ),
            1
        );
        assert_eq!(
            report.skipped.first().map(|s| s.kind),
            Some(SkipKind::MultiUserBlocked)
        );
    }

    #[test]
    fn multi_user_mode_blocks_names_listed_in_the_environment_or_declared() {
        fn declared_oauth() -> BackendPluginDefinition {
            definition("Custom_OAuth", "p", "0.1.0")
        }
        fn listed() -> BackendPluginDefinition {
            definition("listed-oauth-x", "p", "0.1.0")
        }
        let mut registry = BackendRegistry::new();
        let report = discover(
            &[
                plugin_entry("custom", declared_oauth),
                plugin_entry("listed-oauth-x", listed),
            ],
            AccessMode::MultiUser,
            CORE,
            &mut registry,
            Some("listed-oauth-x, not-oauth"),
        );
        assert!(registry.is_empty());
        assert_eq!(report.blocked, ["custom", "listed-oauth-x"]);
    }

    #[test]
    fn multi_user_mode_keeps_non_extracted_plugins() {
        fn ordinary() -> BackendPluginDefinition {
            definition("ordinary", "ordinary-plugin", "0.1.0")
        }
        let mut registry = BackendRegistry::new();
        registry.mark_blocked(["openai_codex"]);
        let report = discover(
            &[plugin_entry("ordinary", ordinary)],
            AccessMode::MultiUser,
            CORE,
            &mut registry,
            None,
        );
        assert_eq!(report.registered, ["ordinary"]);
        assert_eq!(
            registry.blocked(),
            ["openai_codex"],
            "existing list untouched"
        );
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn duplicate_entry_names_register_once() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn counted() -> BackendPluginDefinition {
            CALLS.fetch_add(1, Ordering::SeqCst);
            definition("dup-oauth", "dup", "0.1.0")
        }
        let (report, registry) = run(
            &[
                plugin_entry("dup-oauth", counted),
                plugin_entry("dup-oauth", counted),
            ],
            AccessMode::SingleUser,
        );
        assert_eq!(report.registered, ["dup-oauth"]);
        assert_eq!(registry.len(), 1);
        assert!(report.warnings.is_empty(), "duplicates are debug only");
        // Like upstream, the duplicate's provider was still called.
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
        assert_eq!(
            report.skipped.first().map(|s| s.kind),
            Some(SkipKind::DuplicateEntry)
        );
    }

    // --- beyond the upstream cases --------------------------------------------------------

    #[test]
    fn healthy_plugin_metadata_is_complete() {
        fn with_max() -> BackendPluginDefinition {
            bounded("meta-oauth", "meta-plugin", "0.1.0", "0.2")
        }
        let (report, registry) = run(
            &[plugin_entry("meta-oauth", with_max)],
            AccessMode::SingleUser,
        );
        assert_eq!(
            report.metadata.get("meta-oauth"),
            Some(&PluginMetadata {
                backend_name: "meta-oauth".to_owned(),
                plugin_name: "meta-plugin".to_owned(),
                core_min_version: "0.1.0".to_owned(),
                core_max_version: Some("0.2".to_owned()),
                distribution: OAUTH_DIST.to_owned(),
                distribution_version: "0.3.0".to_owned(),
                origin: Origin::Plugin,
                requires_personal_credentials: false,
            })
        );
        assert_eq!(
            registry.origin("meta-oauth").map(|o| o.origin),
            Some(Origin::Plugin)
        );
    }

    #[test]
    fn core_wins_a_name_clash_even_when_the_plugin_is_listed_first() {
        fn plugin_openai() -> BackendPluginDefinition {
            definition("openai", "shadow-plugin", "0.1.0").with_post_build_hook(|_s| Ok(()))
        }
        let (report, registry) = run(
            &[
                plugin_entry("openai", plugin_openai),
                core_entry("openai", plain_openai),
            ],
            AccessMode::SingleUser,
        );
        assert_eq!(report.registered, ["openai"]);
        assert_eq!(
            registry.origin("openai").map(|o| o.origin),
            Some(Origin::Core)
        );
        assert_eq!(
            report.metadata.get("openai").map(|m| m.origin),
            Some(Origin::Core)
        );
        assert!(
            report.hooks.is_empty(),
            "the shadowed plugin's hook is not recorded"
        );
        assert_eq!(
            warnings_containing(&report, "already registered with a different factory"),
            1
        );
        let skipped = report.skipped.first();
        assert_eq!(skipped.map(|s| s.kind), Some(SkipKind::NameTaken));
        assert_eq!(
            skipped.and_then(|s| s.plugin_name.as_deref()),
            Some("shadow-plugin")
        );
        assert!(!report.core_only);
    }

    #[test]
    fn name_taken_before_discovery_is_a_conflict_without_metadata() {
        let mut registry = BackendRegistry::new();
        let earlier = BackendOrigin {
            origin: Origin::Core,
            distribution: "elsewhere".to_owned(),
            distribution_version: "1".to_owned(),
            plugin_name: "x".to_owned(),
            requires_personal_credentials: false,
        };
        let fake: BackendFactory = Arc::new(fake_factory);
        assert!(
            registry
                .register("healthy-oauth", fake, earlier)
                .is_registered()
        );
        let report = discover(
            &[plugin_entry("healthy-oauth", healthy)],
            AccessMode::SingleUser,
            CORE,
            &mut registry,
            None,
        );
        assert!(report.registered.is_empty());
        assert!(report.metadata.is_empty());
        assert!(report.hooks.is_empty());
        assert_eq!(
            report.skipped.first().map(|s| s.kind),
            Some(SkipKind::NameTaken)
        );
    }

    #[test]
    fn same_factory_twice_is_idempotent_and_silent() {
        fn shared() -> BackendPluginDefinition {
            static FACTORY: OnceLock<BackendFactory> = OnceLock::new();
            let factory = FACTORY.get_or_init(|| Arc::new(fake_factory)).clone();
            BackendPluginDefinition {
                factory,
                ..definition("shared-x", "p", "0.1.0")
            }
        }
        let mut registry = BackendRegistry::new();
        let first = discover(
            &[plugin_entry("shared-x", shared)],
            AccessMode::SingleUser,
            CORE,
            &mut registry,
            None,
        );
        assert_eq!(first.registered, ["shared-x"]);
        let second = discover(
            &[plugin_entry("shared-x", shared)],
            AccessMode::SingleUser,
            CORE,
            &mut registry,
            None,
        );
        assert!(second.registered.is_empty());
        assert!(second.warnings.is_empty());
        assert!(second.metadata.is_empty());
        assert_eq!(
            second.skipped.first().map(|s| s.kind),
            Some(SkipKind::AlreadyRegistered)
        );
    }

    #[test]
    fn empty_entry_name_is_refused_by_the_registry() {
        fn anonymous() -> BackendPluginDefinition {
            definition("", "anon", "0.1.0")
        }
        fn named() -> BackendPluginDefinition {
            definition("something", "anon", "0.1.0")
        }
        // A blank declared name fails validation first; a blank entry name reaches the registry.
        let (report, registry) = run(
            &[plugin_entry("", named), plugin_entry("x", anonymous)],
            AccessMode::SingleUser,
        );
        assert!(registry.is_empty());
        let kinds: Vec<SkipKind> = report.skipped.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [SkipKind::InvalidName, SkipKind::InvalidMetadata]);
    }

    #[test]
    fn personal_credentials_flag_blocks_only_in_multi_user_mode() {
        fn personal() -> BackendPluginDefinition {
            definition("local-cli", "cli-plugin", "0.1.0").requiring_personal_credentials()
        }
        let entries = [plugin_entry("local-cli", personal)];

        let (single, registry) = run(&entries, AccessMode::SingleUser);
        assert_eq!(single.registered, ["local-cli"]);
        assert!(single.blocked.is_empty());
        assert_eq!(
            registry
                .origin("local-cli")
                .map(|o| o.requires_personal_credentials),
            Some(true)
        );

        let (multi, registry) = run(&entries, AccessMode::MultiUser);
        assert!(multi.registered.is_empty());
        assert!(registry.is_empty());
        assert_eq!(multi.blocked, ["local-cli"]);
        assert_eq!(
            warnings_containing(&multi, "Skipping plugin backend 'local-cli'"),
            1
        );
    }

    #[test]
    fn core_entries_obey_the_multi_user_block_too() {
        fn core_codex() -> BackendPluginDefinition {
            definition("openai-codex", "core", "0.1.0").requiring_personal_credentials()
        }
        let (report, registry) = run(
            &[
                core_entry("openai", plain_openai),
                core_entry("openai-codex", core_codex),
            ],
            AccessMode::MultiUser,
        );
        assert_eq!(registry.names(), ["openai"]);
        assert_eq!(report.blocked, ["openai-codex"]);
    }

    #[test]
    fn entries_of_other_groups_are_ignored() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        fn counted() -> BackendPluginDefinition {
            CALLS.fetch_add(1, Ordering::SeqCst);
            definition("other", "p", "0.1.0")
        }
        let other = BackendPluginEntry {
            group: "something_else",
            ..plugin_entry("other", counted)
        };
        let (report, registry) = run(&[other], AccessMode::SingleUser);
        assert!(report.core_only);
        assert!(registry.is_empty());
        assert!(report.skipped.is_empty());
        assert_eq!(CALLS.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn warnings_are_emitted_through_tracing() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let subscriber = capture::Capture(events.clone());
        let heard = |events: &[(tracing::Level, String)]| {
            events
                .iter()
                .any(|(level, _)| *level == tracing::Level::INFO)
        };
        let (report, events) = tracing::subscriber::with_default(subscriber, || {
            // tracing caches per callsite whether any subscriber listens. A parallel test
            // registering a callsite without one while this test installs its subscriber can
            // leave a stale "nobody listens" behind; recompute and run again (bounded).
            for _ in 0..100 {
                tracing::callsite::rebuild_interest_cache();
                events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                let report = run(
                    &[
                        plugin_entry("oauth-a", broken),
                        plugin_entry("oauth-b", broken),
                    ],
                    AccessMode::SingleUser,
                )
                .0;
                let seen = events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if heard(&seen) {
                    return (report, seen);
                }
                std::thread::yield_now();
            }
            panic!("no INFO event was recorded in 100 runs");
        });
        let warned: Vec<&String> = events
            .iter()
            .filter(|(level, _)| *level == tracing::Level::WARN)
            .map(|(_, message)| message)
            .collect();
        assert_eq!(warned, report.warnings.iter().collect::<Vec<_>>());
        assert!(
            events
                .iter()
                .any(|(level, message)| *level == tracing::Level::DEBUG
                    && message.contains("same load error as 'oauth-a'"))
        );
        assert!(
            events
                .iter()
                .any(|(level, message)| *level == tracing::Level::INFO
                    && message.contains("No personal-credential (OAuth) backends linked"))
        );
    }

    /// A minimal `tracing` subscriber recording (level, message) of every event.
    mod capture {
        use std::fmt::Debug;
        use std::sync::{Arc, Mutex, PoisonError};

        use tracing::field::{Field, Visit};
        use tracing::span::{Attributes, Id, Record};
        use tracing::{Event, Level, Metadata, Subscriber};

        pub(super) struct Capture(pub(super) Arc<Mutex<Vec<(Level, String)>>>);

        struct Message(String);

        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }

        impl Subscriber for Capture {
            fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _span: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _span: &Id, _values: &Record<'_>) {}
            fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
            fn event(&self, event: &Event<'_>) {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((*event.metadata().level(), message.0));
            }
            fn enter(&self, _span: &Id) {}
            fn exit(&self, _span: &Id) {}
        }
    }
}
