//! Backend plugin discovery: turns link-time entry points into registry entries, fail-open
//! (a broken, invalid or incompatible plugin is skipped with a warning; startup continues),
//! together with the naming, version and install-guidance rules that decide what is usable.
//!
//! Built-in connectors go through the same path: entries from [`CORE_DISTRIBUTION`] are
//! processed before every other entry, so core wins name collisions.

use std::any::Any;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use llm_proxy_api::plugin::BackendPluginEntry;
use llm_proxy_api::{
    BACKEND_PLUGIN_ENTRY_POINT_GROUP, BackendPluginDefinition, PluginCompatibility,
    PluginPostBuildHook, ServiceProvider,
};

use super::registry::{BackendOrigin, BackendRegistry, Origin, RegisterOutcome, conflict_warning};

/// Crate whose entry points are the built-in connectors.
pub const CORE_DISTRIBUTION: &str = "llm-proxy-connectors";

/// Backend names that no longer exist; their entry points are ignored without being called.
pub const RETIRED_BACKEND_NAMES: &[&str] = &["anthropic-oauth"];

/// Environment variable listing extracted backend names (comma separated).
pub const EXTRACTED_BACKENDS_ENV: &str = "LLM_PROXY_EXTRACTED_BACKENDS";

/// A plugin crate this project knows about: when a configuration names its backend and the
/// crate is not linked into the build, users are told which Cargo feature links it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPlugin {
    /// Backend name the plugin registers.
    pub backend: &'static str,
    /// Package (crate) name.
    pub package: &'static str,
    /// Feature of the `llm-proxy` binary crate that links the package.
    pub cargo_feature: &'static str,
}

/// Plugin crates shipped in this repository (`plugins/`), linked through Cargo features.
pub const KNOWN_PLUGINS: &[KnownPlugin] = &[KnownPlugin {
    backend: "ollama-native",
    package: "llm-proxy-plugin-ollama-native",
    cargo_feature: "ollama-native",
}];

/// The known plugin providing `backend` (normalized comparison).
pub fn known_plugin(backend: &str) -> Option<&'static KnownPlugin> {
    let name = normalize_backend_name(backend);
    KNOWN_PLUGINS.iter().find(|p| p.backend == name)
}

/// How to build the binary with the plugins providing `backends`: their Cargo features when
/// every one is a known plugin, a placeholder to fill in otherwise.
pub fn install_command<S: AsRef<str>>(backends: &[S]) -> String {
    let mut features: Vec<&str> = Vec::new();
    for backend in backends {
        match known_plugin(backend.as_ref()) {
            Some(plugin) if !features.contains(&plugin.cargo_feature) => {
                features.push(plugin.cargo_feature);
            }
            Some(_) => {}
            None => return GENERIC_INSTALL_COMMAND.to_owned(),
        }
    }
    if features.is_empty() {
        return GENERIC_INSTALL_COMMAND.to_owned();
    }
    format!(
        "cargo build --release -p llm-proxy --features {}",
        features.join(",")
    )
}

/// Install command when the plugin's feature is not known to core.
pub const GENERIC_INSTALL_COMMAND: &str =
    "cargo build --release -p llm-proxy --features <plugin feature>";

/// Error code of [`StartupError`].
pub const MISSING_EXTRACTED_NO_VIABLE_PATH: &str = "missing_extracted_backends_no_viable_path";

/// Why multi-user mode refuses a backend; shared by the discovery warning and request errors.
const PERSONAL_CREDENTIALS_RULE: &str =
    "it uses personal credentials, which are only allowed in single-user mode";

/// Who the proxy serves; fixed before discovery runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// One user; personal-credential backends allowed.
    SingleUser,
    /// Shared deployment; personal-credential backends refused.
    MultiUser,
}

/// Environment variable fixing the access mode (`multi_user` or `single_user`).
pub const ACCESS_MODE_ENV: &str = "LLM_PROXY_ACCESS_MODE";

impl AccessMode {
    /// Wire label (`single_user`, `multi_user`), as in [`ACCESS_MODE_ENV`].
    pub fn label(self) -> &'static str {
        match self {
            Self::SingleUser => "single_user",
            Self::MultiUser => "multi_user",
        }
    }

    /// The mode from the `--multi-user-mode` / `--single-user-mode` flags, else the value of
    /// [`ACCESS_MODE_ENV`], else single-user. Both flags together, or an unknown value, is an
    /// error.
    pub fn resolve(
        multi_user_flag: bool,
        single_user_flag: bool,
        env_value: Option<&str>,
    ) -> Result<Self, String> {
        match (multi_user_flag, single_user_flag) {
            (true, true) => {
                return Err(
                    "--multi-user-mode and --single-user-mode cannot be used together".to_owned(),
                );
            }
            (true, false) => return Ok(Self::MultiUser),
            (false, true) => return Ok(Self::SingleUser),
            (false, false) => {}
        }
        match env_value.map(|v| v.trim().to_lowercase().replace('-', "_")) {
            None => Ok(Self::SingleUser),
            Some(v) if v.is_empty() || v == "single_user" => Ok(Self::SingleUser),
            Some(v) if v == "multi_user" => Ok(Self::MultiUser),
            Some(v) => Err(format!(
                "{ACCESS_MODE_ENV}: expected multi_user or single_user, got '{v}'"
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names

/// Canonical form of a backend reference: trimmed, lowercase, `_` -> `-`, without an instance
/// suffix (`.name`) or model suffix (`:model`).
pub fn normalize_backend_name(name: &str) -> String {
    let lowered = name.trim().to_lowercase().replace('_', "-");
    let end = lowered.find(['.', ':']).unwrap_or(lowered.len());
    lowered.get(..end).unwrap_or_default().trim().to_owned()
}

/// Whether a name follows the OAuth naming pattern (`*-oauth` or `*-oauth-*`, normalized).
pub fn is_oauth_style(name: &str) -> bool {
    let normalized = normalize_backend_name(name);
    normalized.ends_with("-oauth") || normalized.contains("-oauth-")
}

/// The OAuth-style names among `names`, sorted (names are returned as given).
pub fn filter_oauth_style_backend_names<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut found: Vec<String> = names
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| is_oauth_style(n))
        .map(str::to_owned)
        .collect();
    found.sort();
    found
}

/// Backends that live in optional plugins rather than in core (normalized names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractedSet {
    names: BTreeSet<String>,
}

impl ExtractedSet {
    /// OAuth-style names from the [`EXTRACTED_BACKENDS_ENV`] value, plus OAuth-style names of
    /// the linked backend entry points.
    pub fn from_sources(env_value: Option<&str>, entries: &[BackendPluginEntry]) -> Self {
        let from_env = env_value.into_iter().flat_map(|v| v.split(','));
        let from_entries = entries
            .iter()
            .filter(|e| e.group == BACKEND_PLUGIN_ENTRY_POINT_GROUP)
            .map(|e| e.name);
        let names = from_env
            .chain(from_entries)
            .filter(|n| is_oauth_style(n))
            .map(normalize_backend_name)
            .collect();
        Self { names }
    }

    /// Whether the normalized `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(&normalize_backend_name(name))
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }
}

/// Whether `name` belongs to an optional plugin: listed in `extracted`, or OAuth-style.
pub fn is_extracted(name: &str, extracted: &ExtractedSet) -> bool {
    extracted.contains(name) || is_oauth_style(name)
}

/// Whether `name` is provided by a plugin crate rather than core: an extracted
/// (personal-credential) backend or a [`KNOWN_PLUGINS`] backend. A configuration naming one
/// that is not linked gets install guidance instead of "unknown backend".
pub fn is_optional_backend(name: &str, extracted: &ExtractedSet) -> bool {
    is_extracted(name, extracted) || known_plugin(name).is_some()
}

// ---------------------------------------------------------------------------------------------
// Versions

/// A parsed version: the first three digit runs, zero padded.
pub type VersionTriple = (u64, u64, u64);

/// Parses a version leniently: every run of ASCII digits anywhere in the text counts, the first
/// three are kept and missing ones are zero (`0.1.0rc1` -> (0,1,0), `v2` -> (2,0,0),
/// `rc1` -> (1,0,0)). No digits, or a run too large for `u64`, is invalid.
pub fn parse_version(text: &str) -> Option<VersionTriple> {
    let runs: Vec<u64> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .take(3)
        .map(|run| run.parse().ok())
        .collect::<Option<_>>()?;
    match runs.as_slice() {
        [] => None,
        [major] => Some((*major, 0, 0)),
        [major, minor] => Some((*major, *minor, 0)),
        [major, minor, patch, ..] => Some((*major, *minor, *patch)),
    }
}

/// Checks `core_version` against the plugin's inclusive bounds; `Err` carries the reason.
pub fn check_compatibility(core_version: &str, compat: &PluginCompatibility) -> Result<(), String> {
    let min = &compat.core_min_version;
    let (Some(core), Some(min_parsed)) = (parse_version(core_version), parse_version(min)) else {
        return Err(format!(
            "invalid version format (core={core_version}, min={min})"
        ));
    };
    if core < min_parsed {
        return Err(format!(
            "requires core>={min}, running core is {core_version}"
        ));
    }
    if let Some(max) = &compat.core_max_version {
        let Some(max_parsed) = parse_version(max) else {
            return Err("invalid max version format".to_owned());
        };
        if core > max_parsed {
            return Err(format!(
                "supports core<={max}, running core is {core_version}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

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

// ---------------------------------------------------------------------------------------------
// Discovery

/// Registers every usable backend entry point into `registry`: core entries
/// ([`CORE_DISTRIBUTION`]) first, in order, then the others. Never fails: a broken, invalid,
/// incompatible or blocked entry is skipped with a warning (in the report and logged); retired
/// and duplicate entries are skipped quietly (debug). Production passes
/// `llm_proxy_api::plugin::linked_entries()` and [`llm_proxy_api::CORE_VERSION`];
/// `env_extracted` is the value of [`EXTRACTED_BACKENDS_ENV`].
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
            self.report.hooks.hooks.insert(name.clone(), hook.clone());
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

/// The strict metadata contract; the type system already guarantees the rest (a definition,
/// a callable factory, a callable hook).
fn validate_definition(def: &BackendPluginDefinition) -> Result<(), String> {
    if def.backend_name.trim().is_empty() {
        return Err("backend_name is required (strict metadata contract)".to_owned());
    }
    if def.plugin_name.trim().is_empty() {
        return Err("plugin_name is required (strict metadata contract)".to_owned());
    }
    if def.compatibility.core_min_version.trim().is_empty() {
        return Err(
            "compatibility.core_min_version is required (strict metadata contract)".to_owned(),
        );
    }
    if def
        .compatibility
        .core_max_version
        .as_deref()
        .is_some_and(|max| max.trim().is_empty())
    {
        return Err(
            "compatibility.core_max_version must not be blank when given (strict metadata contract)"
                .to_owned(),
        );
    }
    Ok(())
}

thread_local! {
    /// Set while plugin code runs under [`call_isolated`].
    static IN_PLUGIN_CALL: Cell<bool> = const { Cell::new(false) };
}

/// Runs plugin code (a provider, a factory, a hook) so that a panic becomes an `Err` carrying
/// its payload instead of unwinding into core. The panic is reported by the caller's warning;
/// the default panic output (message and backtrace on stderr) is suppressed for it, so a
/// broken plugin produces one warning rather than what looks like a crash.
pub fn call_isolated<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PLUGIN_CALL.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = IN_PLUGIN_CALL.with(|flag| flag.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_PLUGIN_CALL.with(|flag| flag.set(was));
    result
}

/// Text of a panic payload (`&str` and `String` payloads; others are named as such).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// One startup line saying which personal-credential backends are usable, computed from the
/// live registry.
pub fn personal_credentials_summary(registry: &BackendRegistry) -> String {
    let available: Vec<String> = registry
        .names()
        .into_iter()
        .filter(|name| {
            is_oauth_style(name)
                || registry
                    .origin(name)
                    .is_some_and(|o| o.requires_personal_credentials)
        })
        .collect();
    let blocked = registry.blocked();
    if !available.is_empty() {
        format!(
            "Personal-credential (OAuth) backends available: {}",
            available.join(", ")
        )
    } else if !blocked.is_empty() {
        format!(
            "Personal-credential (OAuth) backends are linked but blocked in Multi User Mode: {}",
            blocked.join(", ")
        )
    } else {
        "No personal-credential (OAuth) backends linked; such backends come from plugin crates \
         linked into the build with a Cargo feature."
            .to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Post-build hooks

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

// ---------------------------------------------------------------------------------------------
// Install guidance

/// What to tell a user whose configuration names a backend that is not linked into this build.
pub fn install_guidance(backend: &str) -> String {
    let name = normalize_backend_name(backend);
    match known_plugin(&name) {
        Some(plugin) => format!(
            "Backend '{name}' is unavailable: its plugin '{}' is not linked into this build. \
             Rebuild with the '{}' Cargo feature: `{}`.",
            plugin.package,
            plugin.cargo_feature,
            install_command(&[name.as_str()])
        ),
        None => format!(
            "Backend '{name}' is unavailable: its plugin is not linked into this build. Rebuild \
             with the Cargo feature that links the plugin: `{GENERIC_INSTALL_COMMAND}`."
        ),
    }
}

/// What to tell a user whose request names a backend refused in multi-user mode.
pub fn multi_user_guidance(backend: &str) -> String {
    format!(
        "Backend '{}' is not available in Multi User Mode: {PERSONAL_CREDENTIALS_RULE}. Run \
         the proxy in single-user mode (`--single-user-mode`, bound to 127.0.0.1) to use it.",
        normalize_backend_name(backend)
    )
}

/// Referenced plugin backends ([`is_optional_backend`]) that are not registered: normalized,
/// sorted, unique.
pub fn missing_extracted_backends(
    configured_refs: &[String],
    registered: &[String],
    extracted: &ExtractedSet,
) -> Vec<String> {
    let registered: HashSet<String> = registered
        .iter()
        .map(|n| normalize_backend_name(n))
        .collect();
    let missing: BTreeSet<String> = configured_refs
        .iter()
        .map(|r| normalize_backend_name(r))
        .filter(|r| !r.is_empty() && is_optional_backend(r, extracted) && !registered.contains(r))
        .collect();
    missing.into_iter().collect()
}

/// Context of a [`StartupError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingExtractedDetails {
    /// Referenced plugin backends that are not registered (not linked, or blocked).
    pub missing_extracted_backends: Vec<String>,
    /// The missing ones refused because the proxy runs in multi-user mode.
    pub blocked_backends: Vec<String>,
    /// Every configured backend reference (normalized, unique, in configuration order).
    pub configured_backend_references: Vec<String>,
    /// Registered backend names, sorted.
    pub registered_backends: Vec<String>,
    /// How to build with the missing (not blocked) plugins ([`install_command`]).
    pub install_command: String,
    /// Cargo features of the missing known plugins.
    pub cargo_features: Vec<String>,
}

/// The configuration only routes to backends that are not usable in this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupError {
    /// [`MISSING_EXTRACTED_NO_VIABLE_PATH`].
    pub code: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Structured context (boxed to keep `Result`s small).
    pub details: Box<MissingExtractedDetails>,
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for StartupError {}

/// What a set of missing backends needs: a rebuild for the unlinked ones, single-user mode for
/// the blocked ones.
fn missing_remedy(not_linked: &[String], blocked: &[String]) -> String {
    let mut remedies = Vec::new();
    if !not_linked.is_empty() {
        remedies.push(format!(
            "not linked into this build: {} (rebuild with `{}`)",
            not_linked.join(", "),
            install_command(not_linked)
        ));
    }
    if !blocked.is_empty() {
        remedies.push(format!(
            "blocked in Multi User Mode: {} ({PERSONAL_CREDENTIALS_RULE})",
            blocked.join(", ")
        ));
    }
    remedies.join("; ")
}

/// Startup check of configured backend references (`default_backend`, the backend of an
/// explicit `static_route`, named backend instances) against what is registered: nothing
/// missing -> `Ok(None)`; plugin backends missing but another referenced backend is registered
/// -> `Ok(Some(warning))`; otherwise an error, since no request could be served as configured.
pub fn startup_check(
    configured_refs: &[String],
    registry: &BackendRegistry,
    extracted: &ExtractedSet,
) -> Result<Option<String>, StartupError> {
    let registered = registry.names();
    let missing = missing_extracted_backends(configured_refs, &registered, extracted);
    if missing.is_empty() {
        return Ok(None);
    }
    let (blocked, not_linked): (Vec<String>, Vec<String>) = missing
        .iter()
        .cloned()
        .partition(|name| registry.is_blocked(name));
    let registered_normalized: HashSet<String> = registered
        .iter()
        .map(|n| normalize_backend_name(n))
        .collect();
    let mut references = Vec::new();
    for reference in configured_refs.iter().map(|r| normalize_backend_name(r)) {
        if !reference.is_empty() && !references.contains(&reference) {
            references.push(reference);
        }
    }
    let alternatives: Vec<&str> = references
        .iter()
        .filter(|r| registered_normalized.contains(*r))
        .map(String::as_str)
        .collect();
    let remedy = missing_remedy(&not_linked, &blocked);
    if !alternatives.is_empty() {
        return Ok(Some(format!(
            "Configured backend(s) unavailable: {remedy}. Startup continues because these \
             configured backends are available: {}.",
            alternatives.join(", ")
        )));
    }
    let message = format!(
        "Configured backend(s) unavailable: {remedy}. No other configured backend is \
         available; fix the above, or point backends.default_backend / backends.static_route \
         at an available backend ({}).",
        registered.join(", ")
    );
    let cargo_features = not_linked
        .iter()
        .filter_map(|name| known_plugin(name))
        .map(|p| p.cargo_feature.to_owned())
        .collect();
    Err(StartupError {
        code: MISSING_EXTRACTED_NO_VIABLE_PATH,
        message,
        details: Box::new(MissingExtractedDetails {
            install_command: install_command(&not_linked),
            missing_extracted_backends: missing,
            blocked_backends: blocked,
            configured_backend_references: references,
            registered_backends: registered,
            cargo_features,
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, PoisonError};

    use llm_proxy_api::plugin::BackendPluginProvider;
    use llm_proxy_api::{Backend, BackendError, BackendFactory, FactoryArgs, SharedConfig};

    use super::*;

    const CORE: &str = "0.1.0";
    const OAUTH_DIST: &str = "llm-proxy-oauth-connectors";

    fn fake_factory(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
        Err(BackendError::internal("fake backend"))
    }

    fn definition(backend: &str, plugin: &str, min: &str) -> BackendPluginDefinition {
        BackendPluginDefinition::new(backend, plugin, PluginCompatibility::new(min), fake_factory)
    }

    fn bounded(backend: &str, plugin: &str, min: &str, max: &str) -> BackendPluginDefinition {
        BackendPluginDefinition {
            compatibility: PluginCompatibility::new(min).up_to(max),
            ..definition(backend, plugin, min)
        }
    }

    fn plugin_entry(name: &'static str, provider: BackendPluginProvider) -> BackendPluginEntry {
        BackendPluginEntry {
            group: BACKEND_PLUGIN_ENTRY_POINT_GROUP,
            name,
            provider,
            distribution: OAUTH_DIST,
            distribution_version: "0.3.0",
        }
    }

    fn core_entry(name: &'static str, provider: BackendPluginProvider) -> BackendPluginEntry {
        BackendPluginEntry {
            distribution: CORE_DISTRIBUTION,
            ..plugin_entry(name, provider)
        }
    }

    fn run(entries: &[BackendPluginEntry], mode: AccessMode) -> (DiscoveryReport, BackendRegistry) {
        let mut registry = BackendRegistry::new();
        let report = discover(entries, mode, CORE, &mut registry, None);
        (report, registry)
    }

    fn services() -> ServiceProvider {
        ServiceProvider {
            config: Arc::new(SharedConfig::default()),
            backend_names: Vec::new(),
        }
    }

    fn warnings_containing(report: &DiscoveryReport, needle: &str) -> usize {
        report
            .warnings
            .iter()
            .filter(|w| w.contains(needle))
            .count()
    }

    fn healthy() -> BackendPluginDefinition {
        definition("healthy-oauth", "healthy-plugin", "0.1.0")
            .with_post_build_hook(|_services| Ok(()))
    }

    fn broken() -> BackendPluginDefinition {
        panic!("No module named 'missing_dependency'")
    }

    fn plain_openai() -> BackendPluginDefinition {
        definition("openai", "core", "0.1.0")
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

    #[test]
    fn warnings_are_emitted_through_tracing() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let subscriber = capture::Capture(events.clone());
        let report = tracing::subscriber::with_default(subscriber, || {
            run(
                &[
                    plugin_entry("oauth-a", broken),
                    plugin_entry("oauth-b", broken),
                ],
                AccessMode::SingleUser,
            )
            .0
        });
        let events = events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
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

    #[test]
    fn isolated_calls_turn_panics_into_errors() {
        let error = call_isolated(|| -> u8 { panic!("boom") }).err();
        assert_eq!(
            error.map(|e| panic_message(e.as_ref())).as_deref(),
            Some("boom")
        );
        assert_eq!(call_isolated(|| 7).ok(), Some(7));
        assert!(!IN_PLUGIN_CALL.with(Cell::get), "the flag is reset");
        let nested = call_isolated(|| call_isolated(|| -> u8 { panic!("inner") }).is_err());
        assert_eq!(nested.ok(), Some(true));
        assert!(!IN_PLUGIN_CALL.with(Cell::get));
    }

    #[test]
    fn access_mode_from_flags_and_environment() {
        let resolve = AccessMode::resolve;
        assert_eq!(resolve(false, false, None), Ok(AccessMode::SingleUser));
        assert_eq!(resolve(true, false, None), Ok(AccessMode::MultiUser));
        assert_eq!(
            resolve(false, true, Some("multi_user")),
            Ok(AccessMode::SingleUser)
        );
        assert_eq!(
            resolve(false, false, Some("multi_user")),
            Ok(AccessMode::MultiUser)
        );
        assert_eq!(
            resolve(false, false, Some(" Multi-User ")),
            Ok(AccessMode::MultiUser)
        );
        assert_eq!(
            resolve(false, false, Some("single_user")),
            Ok(AccessMode::SingleUser)
        );
        assert!(resolve(true, true, None).is_err_and(|e| e.contains("cannot be used together")));
        assert!(resolve(false, false, Some("shared")).is_err_and(|e| e.contains(ACCESS_MODE_ENV)));
        assert_eq!(AccessMode::MultiUser.label(), "multi_user");
    }

    // --- names -----------------------------------------------------------------------------

    #[test]
    fn normalization_examples() {
        let cases = [
            ("Gemini_OAuth_Plan.PRIMARY", "gemini-oauth-plan"),
            ("zai-coding-plan:glm-5.1", "zai-coding-plan"),
            ("  OpenAI  ", "openai"),
            ("openai.1", "openai"),
            ("a:b.c", "a"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_backend_name(input), expected, "{input:?}");
        }
    }

    #[test]
    fn oauth_naming_pattern() {
        assert!(is_oauth_style("qwen-oauth"));
        assert!(is_oauth_style("Gemini_OAuth_Plan.x"));
        assert!(is_oauth_style("gemini-oauth-auto:model"));
        assert!(!is_oauth_style("oauth"));
        assert!(!is_oauth_style("oauthish-backend"));
        assert!(!is_oauth_style("openai"));
        assert_eq!(
            filter_oauth_style_backend_names(&[
                "openai",
                "qwen-oauth",
                "custom_oauth_bar",
                "gemini-oauth-auto",
                "x"
            ]),
            ["custom_oauth_bar", "gemini-oauth-auto", "qwen-oauth"]
        );
    }

    #[test]
    fn extracted_set_sources() {
        let entries = [
            plugin_entry("qwen-oauth", healthy),
            plugin_entry("plain", healthy),
            core_entry("openai", plain_openai),
        ];
        let set = ExtractedSet::from_sources(
            Some(" Foo_OAuth , not-extracted,, bar-oauth-x.1"),
            &entries,
        );
        assert_eq!(set.names(), ["bar-oauth-x", "foo-oauth", "qwen-oauth"]);
        assert!(set.contains("QWEN_OAUTH"));
        assert!(!set.contains("plain"));
        assert!(
            is_extracted("plain-oauth", &ExtractedSet::default()),
            "pattern alone suffices"
        );
        assert!(!is_extracted("plain", &set));
        assert_eq!(
            ExtractedSet::from_sources(None, &[]).names(),
            Vec::<String>::new()
        );
    }

    // --- versions --------------------------------------------------------------------------

    #[test]
    fn version_parsing_table() {
        let cases = [
            ("0.1.0", Some((0, 1, 0))),
            ("0.1.0rc1", Some((0, 1, 0))),
            ("1.2", Some((1, 2, 0))),
            ("v2", Some((2, 0, 0))),
            ("1.2.3.4", Some((1, 2, 3))),
            ("rc1", Some((1, 0, 0))),
            ("abc", None),
            ("", None),
            ("99999999999999999999999", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_version(input), expected, "{input:?}");
        }
    }

    #[test]
    fn compatibility_bounds_are_inclusive() {
        let exact = PluginCompatibility::new("0.1.0").up_to("0.1.0");
        assert_eq!(check_compatibility("0.1.0", &exact), Ok(()));
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("0.1")),
            Ok(())
        );
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("0.1.1")),
            Err("requires core>=0.1.1, running core is 0.1.0".to_owned())
        );
        assert_eq!(
            check_compatibility("0.2.0", &PluginCompatibility::new("0.1.0").up_to("0.1.9")),
            Err("supports core<=0.1.9, running core is 0.2.0".to_owned())
        );
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("abc")),
            Err("invalid version format (core=0.1.0, min=abc)".to_owned())
        );
        assert_eq!(
            check_compatibility("dev", &PluginCompatibility::new("0.1.0")),
            Err("invalid version format (core=dev, min=0.1.0)".to_owned())
        );
        assert_eq!(
            check_compatibility("0.1.0", &PluginCompatibility::new("0.1.0").up_to("latest")),
            Err("invalid max version format".to_owned())
        );
    }

    // --- install guidance ------------------------------------------------------------------

    fn refs(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn registry_with(names: &[&str]) -> BackendRegistry {
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

    #[test]
    fn guidance_texts() {
        assert_eq!(
            install_guidance("qwen-oauth"),
            "Backend 'qwen-oauth' is unavailable: its plugin is not linked into this build. \
             Rebuild with the Cargo feature that links the plugin: \
             `cargo build --release -p llm-proxy --features <plugin feature>`."
        );
        assert_eq!(
            install_guidance("Ollama_Native.local"),
            "Backend 'ollama-native' is unavailable: its plugin 'llm-proxy-plugin-ollama-native' \
             is not linked into this build. Rebuild with the 'ollama-native' Cargo feature: \
             `cargo build --release -p llm-proxy --features ollama-native`."
        );
        assert!(
            multi_user_guidance("qwen-oauth")
                .starts_with("Backend 'qwen-oauth' is not available in Multi User Mode")
        );
        assert!(multi_user_guidance("qwen-oauth").contains("--single-user-mode"));
    }

    #[test]
    fn install_command_names_known_features_or_a_placeholder() {
        assert_eq!(
            install_command(&["ollama-native", "Ollama-Native.2"]),
            "cargo build --release -p llm-proxy --features ollama-native"
        );
        assert_eq!(
            install_command(&["ollama-native", "qwen-oauth"]),
            GENERIC_INSTALL_COMMAND
        );
        assert_eq!(install_command::<&str>(&[]), GENERIC_INSTALL_COMMAND);
        assert_eq!(
            known_plugin("ollama-native:llama3").map(|p| p.package),
            Some("llm-proxy-plugin-ollama-native")
        );
        assert!(known_plugin("openai").is_none());
    }

    #[test]
    fn known_plugins_are_optional_but_not_personal_credential_backends() {
        let none = ExtractedSet::default();
        assert!(is_optional_backend("ollama-native", &none));
        assert!(!is_extracted("ollama-native", &none));
        assert!(is_optional_backend("qwen-oauth", &none));
        assert!(!is_optional_backend("openai", &none));
    }

    #[test]
    fn missing_extracted_backends_are_normalized_and_only_extracted() {
        let missing = missing_extracted_backends(
            &refs(&[
                "Qwen_OAuth.1",
                "unknown-plain",
                "openai",
                "gemini-oauth-plan:model",
                "qwen-oauth",
            ]),
            &refs(&["openai", "gemini-oauth-plan"]),
            &ExtractedSet::default(),
        );
        assert_eq!(missing, ["qwen-oauth"]);
    }

    #[test]
    fn startup_check_passes_when_nothing_is_missing() {
        let registry = registry_with(&["openai"]);
        assert_eq!(
            startup_check(&refs(&["openai.1"]), &registry, &ExtractedSet::default()),
            Ok(None)
        );
        assert_eq!(
            startup_check(&[], &registry, &ExtractedSet::default()),
            Ok(None)
        );
    }

    #[test]
    fn startup_check_warns_when_an_alternative_is_registered() {
        let registry = registry_with(&["openai"]);
        let outcome = startup_check(
            &refs(&["qwen-oauth", "openai"]),
            &registry,
            &ExtractedSet::default(),
        );
        let Ok(Some(warning)) = outcome else {
            panic!("expected a warning, got {outcome:?}");
        };
        assert!(warning.contains("qwen-oauth"), "{warning}");
        assert!(warning.contains("available: openai"), "{warning}");
        assert!(warning.contains(GENERIC_INSTALL_COMMAND), "{warning}");
    }

    #[test]
    fn startup_check_fails_without_a_viable_path() {
        let registry = registry_with(&["openai"]);
        let outcome = startup_check(
            &refs(&["Qwen_OAuth", "gemini-oauth-plan.work"]),
            &registry,
            &ExtractedSet::default(),
        );
        let Err(error) = outcome else {
            panic!("expected an error, got {outcome:?}");
        };
        assert_eq!(error.code, "missing_extracted_backends_no_viable_path");
        assert_eq!(
            *error.details,
            MissingExtractedDetails {
                missing_extracted_backends: refs(&["gemini-oauth-plan", "qwen-oauth"]),
                configured_backend_references: refs(&["qwen-oauth", "gemini-oauth-plan"]),
                registered_backends: refs(&["openai"]),
                blocked_backends: Vec::new(),
                install_command: GENERIC_INSTALL_COMMAND.to_owned(),
                cargo_features: Vec::new(),
            }
        );
        assert!(error.to_string().contains("backends.default_backend"));
        assert!(error.message.contains("(openai)"));
    }

    #[test]
    fn startup_check_names_the_feature_of_a_missing_known_plugin() {
        let registry = registry_with(&["openai"]);
        let Err(error) = startup_check(
            &refs(&["ollama-native", "ollama-native.gpu"]),
            &registry,
            &ExtractedSet::default(),
        ) else {
            panic!("expected an error");
        };
        assert_eq!(error.details.missing_extracted_backends, ["ollama-native"]);
        assert_eq!(error.details.cargo_features, ["ollama-native"]);
        assert_eq!(
            error.details.install_command,
            "cargo build --release -p llm-proxy --features ollama-native"
        );
        assert!(
            error.message.contains("--features ollama-native"),
            "{}",
            error.message
        );
        // With a linked alternative it is only a warning.
        let warning = startup_check(
            &refs(&["ollama-native", "openai"]),
            &registry,
            &ExtractedSet::default(),
        );
        assert!(
            matches!(&warning, Ok(Some(w)) if w.contains("--features ollama-native")),
            "{warning:?}"
        );
    }

    #[test]
    fn startup_check_says_blocked_rather_than_not_linked_in_multi_user_mode() {
        let mut registry = registry_with(&["openai"]);
        registry.mark_blocked(["qwen-oauth"]);
        let Err(error) = startup_check(&refs(&["qwen-oauth"]), &registry, &ExtractedSet::default())
        else {
            panic!("expected an error");
        };
        assert_eq!(error.details.blocked_backends, ["qwen-oauth"]);
        assert!(
            error
                .message
                .contains("blocked in Multi User Mode: qwen-oauth"),
            "{}",
            error.message
        );
        assert!(!error.message.contains("not linked"), "{}", error.message);
    }

    #[test]
    fn summary_has_three_variants_from_the_live_registry() {
        let mut registry = registry_with(&["openai", "qwen-oauth"]);
        assert_eq!(
            personal_credentials_summary(&registry),
            "Personal-credential (OAuth) backends available: qwen-oauth"
        );
        let mut blocked = registry_with(&["openai"]);
        blocked.mark_blocked(["gemini-oauth-plan"]);
        assert!(
            personal_credentials_summary(&blocked)
                .contains("blocked in Multi User Mode: gemini-oauth-plan")
        );
        registry = registry_with(&["openai"]);
        assert!(personal_credentials_summary(&registry).contains("Cargo feature"));
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
