//! What startup says about plugin backends: configured references checked against the
//! registry (nothing, a warning, or a [`StartupError`]), and the personal-credentials summary.

use std::collections::{BTreeSet, HashSet};

use super::access_mode::PERSONAL_CREDENTIALS_RULE;
use super::guidance::install_command;
use super::names::{
    ExtractedSet, is_oauth_style, is_optional_backend, known_plugin, normalize_backend_name,
};
use super::registry::BackendRegistry;
use crate::startup_error::{MissingExtractedDetails, StartupError};

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
    Err(StartupError::missing_backends(
        message,
        MissingExtractedDetails {
            install_command: install_command(&not_linked),
            missing_extracted_backends: missing,
            blocked_backends: blocked,
            configured_backend_references: references,
            registered_backends: registered,
            cargo_features,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{refs, registry_with};
    use super::super::guidance::GENERIC_INSTALL_COMMAND;
    use super::*;

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
        assert_eq!(error.code(), "missing_extracted_backends_no_viable_path");
        assert_eq!(
            error.details(),
            Some(&MissingExtractedDetails {
                missing_extracted_backends: refs(&["gemini-oauth-plan", "qwen-oauth"]),
                configured_backend_references: refs(&["qwen-oauth", "gemini-oauth-plan"]),
                registered_backends: refs(&["openai"]),
                blocked_backends: Vec::new(),
                install_command: GENERIC_INSTALL_COMMAND.to_owned(),
                cargo_features: Vec::new(),
            })
        );
        assert!(error.to_string().contains("backends.default_backend"));
        assert!(error.message().contains("(openai)"));
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
        let details = error.details().unwrap();
        assert_eq!(details.missing_extracted_backends, ["ollama-native"]);
        assert_eq!(details.cargo_features, ["ollama-native"]);
        assert_eq!(
            details.install_command,
            "cargo build --release -p llm-proxy --features ollama-native"
        );
        assert!(
            error.message().contains("--features ollama-native"),
            "{}",
            error.message()
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
        let details = error.details().unwrap();
        assert_eq!(details.blocked_backends, ["qwen-oauth"]);
        assert!(
            error
                .message()
                .contains("blocked in Multi User Mode: qwen-oauth"),
            "{}",
            error.message()
        );
        assert!(
            !error.message().contains("not linked"),
            "{}",
            error.message()
        );
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
}
