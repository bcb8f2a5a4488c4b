//! Reasoning presets: `!/max`, `!/medium`, `!/low`, `!/no-think` and `!/mode(name)`. Modes come
//! from the `reasoning_aliases` table (first rule whose wildcard matches the model), falling
//! back to built-in presets for the four named ones so they work without configuration.

use std::borrow::Cow;

use crate::config::ReasoningModeSettings;

use super::{Invocation, bind};
use crate::commands::CommandEnv;
use crate::session::SessionState;

/// Built-in modes used when the table has none for the model.
fn builtin(mode: &str) -> Option<ReasoningModeSettings> {
    let (effort, budget) = match mode {
        "high" => ("high", 32_768),
        "medium" => ("medium", 8_192),
        "low" => ("low", 2_048),
        "none" => ("none", 0),
        _ => return None,
    };
    Some(ReasoningModeSettings {
        reasoning_effort: Some(effort.to_owned()),
        max_reasoning_tokens: (budget > 0).then_some(budget),
        ..ReasoningModeSettings::default()
    })
}

/// `!/max`.
pub(crate) fn max(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    preset("high", "max", inv, session, env)
}

/// `!/medium`.
pub(crate) fn medium(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    preset("medium", "medium", inv, session, env)
}

/// `!/low`.
pub(crate) fn low(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    preset("low", "low", inv, session, env)
}

/// `!/no-think` and its aliases.
pub(crate) fn no_think(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    preset("none", "no-think", inv, session, env)
}

fn preset(
    mode: &str,
    label: &str,
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    bind(inv.args, [])?;
    apply_mode(mode, label, inv, session, env)
}

/// `!/mode(name)`, `!/mode(mode_name=name)`; bare lists the modes available for the model.
pub(crate) fn mode(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let [name] = bind(inv.args, [&["mode-name", "name", "mode"]])?;
    let model = target_model(inv, session);
    let Some(name) = name else {
        let current = session.reasoning_mode.as_deref().unwrap_or("none set");
        return Ok(format!(
            "Reasoning mode: {current}. Modes for {model}: {}.",
            available(env, &model).join(", ")
        ));
    };
    let key = name.trim().to_ascii_lowercase();
    apply_mode(&key, &key, inv, session, env)
}

/// The model the modes are matched against: the session's, else the one the client asked for.
fn target_model<'a>(inv: &'a Invocation<'_>, session: &'a SessionState) -> Cow<'a, str> {
    Cow::Borrowed(session.model.as_deref().unwrap_or(inv.request_model))
}

fn available(env: &CommandEnv, model: &str) -> Vec<String> {
    let mut names: Vec<String> = ["high", "medium", "low", "none"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(rule) = env.reasoning_rule_for(model) {
        for name in rule.modes.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

/// Applies mode `mode` (a table key: `high`, `none`, or any configured name), recording
/// `label` as the session's reasoning mode. The mode replaces earlier reasoning settings.
pub(crate) fn apply_mode(
    mode: &str,
    label: &str,
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let mode = mode.trim().to_ascii_lowercase();
    let model = target_model(inv, session).into_owned();
    let configured = env
        .reasoning_rule_for(&model)
        .and_then(|rule| rule.modes.get(&mode).cloned());
    let from_table = configured.is_some();
    let Some(settings) = configured.or_else(|| builtin(&mode)) else {
        return Err(format!(
            "No reasoning mode '{mode}' for model {model}. Available: {}.",
            available(env, &model).join(", ")
        ));
    };
    clear_mode(session);
    let effort = settings
        .reasoning_effort
        .as_deref()
        .map(str::to_ascii_lowercase);
    session.thinking_disabled = mode == "none" || effort.as_deref() == Some("none");
    session.reasoning_effort = effort;
    session.thinking_budget = settings.max_reasoning_tokens.filter(|b| *b > 0);
    if let Some(t) = settings.temperature {
        session.temperature = Some(t);
    }
    session.top_p = settings.top_p;
    session.prompt_prefix = settings.user_prompt_prefix;
    session.prompt_suffix = settings.user_prompt_suffix;
    session.reasoning_mode = Some(label.to_owned());
    let mut parts = Vec::new();
    if session.thinking_disabled {
        parts.push("reasoning off".to_owned());
    } else {
        if let Some(e) = &session.reasoning_effort {
            parts.push(format!("effort {e}"));
        }
        if let Some(b) = session.thinking_budget {
            parts.push(format!("thinking budget {b} tokens"));
        }
    }
    if let Some(t) = settings.temperature {
        parts.push(format!("temperature {t}"));
    }
    let source = if from_table {
        "reasoning_aliases"
    } else {
        "built-in preset"
    };
    Ok(format!(
        "Reasoning mode {label} ({source}): {}.",
        parts.join(", ")
    ))
}

/// Removes what a reasoning mode sets (temperature excepted: it has its own key).
pub(crate) fn clear_mode(session: &mut SessionState) {
    session.reasoning_mode = None;
    session.reasoning_effort = None;
    session.thinking_budget = None;
    session.thinking_disabled = false;
    session.top_p = None;
    session.prompt_prefix = None;
    session.prompt_suffix = None;
}

/// Case-insensitive wildcard match: `*` any run, `?` one character.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::ReasoningAliasRule;

    use super::super::test_support::run_line;
    use super::*;

    fn table_env() -> CommandEnv {
        let mut modes = BTreeMap::new();
        modes.insert(
            "high".to_owned(),
            ReasoningModeSettings {
                reasoning_effort: Some("high".to_owned()),
                max_reasoning_tokens: Some(60_000),
                temperature: Some(1.0),
                top_p: Some(0.95),
                user_prompt_prefix: Some("Think hard.".to_owned()),
                user_prompt_suffix: None,
            },
        );
        modes.insert(
            "creative".to_owned(),
            ReasoningModeSettings {
                temperature: Some(1.3),
                ..ReasoningModeSettings::default()
            },
        );
        CommandEnv::for_tests().with_reasoning_aliases(vec![ReasoningAliasRule {
            model: "*claude*".to_owned(),
            modes,
        }])
    }

    #[test]
    fn builtin_presets_work_without_configuration() {
        let env = CommandEnv::for_tests();
        let mut s = SessionState::default();
        run_line("!/max", &mut s, &env).unwrap();
        assert_eq!(s.reasoning_effort.as_deref(), Some("high"));
        assert_eq!(s.thinking_budget, Some(32_768));
        assert_eq!(s.reasoning_mode.as_deref(), Some("max"));
        assert!(!s.thinking_disabled);
        run_line("!/medium", &mut s, &env).unwrap();
        assert_eq!(s.reasoning_effort.as_deref(), Some("medium"));
        assert_eq!(s.thinking_budget, Some(8_192));
        run_line("!/low", &mut s, &env).unwrap();
        assert_eq!(s.reasoning_effort.as_deref(), Some("low"));
        assert_eq!(s.thinking_budget, Some(2_048));
        run_line("!/no-think", &mut s, &env).unwrap();
        assert!(s.thinking_disabled);
        assert_eq!(s.thinking_budget, None);
        assert_eq!(s.reasoning_mode.as_deref(), Some("no-think"));
    }

    #[test]
    fn no_think_aliases_are_reachable() {
        for alias in [
            "no-thinking",
            "no-reasoning",
            "disable-thinking",
            "disable-reasoning",
        ] {
            let mut s = SessionState::default();
            run_line(&format!("!/{alias}"), &mut s, &CommandEnv::for_tests()).unwrap();
            assert!(s.thinking_disabled, "{alias}");
        }
    }

    #[test]
    fn table_mode_wins_for_a_matching_model() {
        let env = table_env();
        let mut s = SessionState {
            model: Some("anthropic:claude-sonnet-4".to_owned()),
            ..SessionState::default()
        };
        let answer = run_line("!/max", &mut s, &env).unwrap();
        assert!(answer.contains("reasoning_aliases"), "{answer}");
        assert_eq!(s.thinking_budget, Some(60_000));
        assert_eq!(s.temperature, Some(1.0));
        assert_eq!(s.top_p, Some(0.95));
        assert_eq!(s.prompt_prefix.as_deref(), Some("Think hard."));
        // A mode the table lacks falls back to the built-in preset and clears the old one.
        run_line("!/low", &mut s, &env).unwrap();
        assert_eq!(s.thinking_budget, Some(2_048));
        assert_eq!(s.prompt_prefix, None);
        assert_eq!(s.top_p, None);
    }

    #[test]
    fn table_is_not_used_for_other_models() {
        let env = table_env();
        let mut s = SessionState::default(); // request model gpt-4o
        run_line("!/max", &mut s, &env).unwrap();
        assert_eq!(s.thinking_budget, Some(32_768));
        assert!(run_line("!/mode(creative)", &mut s, &env).is_err());
    }

    #[test]
    fn mode_positional_and_named() {
        let env = table_env();
        let mut s = SessionState {
            model: Some("claude-opus".to_owned()),
            ..SessionState::default()
        };
        run_line("!/mode(creative)", &mut s, &env).unwrap();
        assert_eq!(s.temperature, Some(1.3));
        assert_eq!(s.reasoning_mode.as_deref(), Some("creative"));
        run_line("!/mode(mode_name=none)", &mut s, &env).unwrap();
        assert!(s.thinking_disabled);
        let listing = run_line("!/mode", &mut s, &env).unwrap();
        assert!(listing.contains("creative"), "{listing}");
        let err = run_line("!/mode(nope)", &mut s, &env).unwrap_err();
        assert!(err.contains("No reasoning mode 'nope'"), "{err}");
        assert!(run_line("!/max(x)", &mut s, &env).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("claude-*", "Claude-3-Opus"));
        assert!(wildcard_match("*sonnet*", "anthropic:claude-sonnet-4"));
        assert!(wildcard_match("gpt-?o", "gpt-4o"));
        assert!(!wildcard_match("gpt-?o", "gpt-4o-mini"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "acbd"));
    }
}
