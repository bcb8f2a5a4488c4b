//! `!/set` and `!/unset`: the session keys, their names and aliases, and the value rules shared
//! with the single-purpose commands (`!/model`, `!/backend`, `!/temperature`, ...).

use std::collections::BTreeSet;
use std::path::Path;

use super::{Invocation, normalise, parse_bool, reasoning};
use crate::commands::CommandEnv;
use crate::commands::parse::validate_prefix;
use crate::routing::selector;
use crate::session::SessionState;

/// A session key of `!/set` / `!/unset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Backend,
    Model,
    Temperature,
    ReasoningEffort,
    ThinkingBudget,
    GeminiGenerationConfig,
    Project,
    ProjectDir,
    CommandPrefix,
    InteractiveMode,
    RedactApiKeys,
    LoopDetection,
    Mode,
}

/// Every key, for messages.
const KEYS: [Key; 13] = [
    Key::Backend,
    Key::Model,
    Key::Temperature,
    Key::ReasoningEffort,
    Key::ThinkingBudget,
    Key::GeminiGenerationConfig,
    Key::Project,
    Key::ProjectDir,
    Key::CommandPrefix,
    Key::InteractiveMode,
    Key::RedactApiKeys,
    Key::LoopDetection,
    Key::Mode,
];

/// Reasoning efforts accepted by `reasoning-effort` (`max`/`maximum` read as `high`).
const EFFORTS: [&str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];

/// Bounds of `thinking-budget`, tokens.
const BUDGET_RANGE: std::ops::RangeInclusive<u64> = 128..=131_072;

impl Key {
    /// The canonical name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Backend => "backend",
            Self::Model => "model",
            Self::Temperature => "temperature",
            Self::ReasoningEffort => "reasoning-effort",
            Self::ThinkingBudget => "thinking-budget",
            Self::GeminiGenerationConfig => "gemini-generation-config",
            Self::Project => "project",
            Self::ProjectDir => "project-dir",
            Self::CommandPrefix => "command-prefix",
            Self::InteractiveMode => "interactive-mode",
            Self::RedactApiKeys => "redact-api-keys-in-prompts",
            Self::LoopDetection => "loop-detection",
            Self::Mode => "mode",
        }
    }

    /// The key a typed parameter names: lowercase, `_`/space read as `-`, aliases resolved.
    pub(crate) fn parse(typed: &str) -> Option<Self> {
        Some(match normalise(typed).as_str() {
            "backend" | "provider" => Self::Backend,
            "model" => Self::Model,
            "temperature" | "temp" => Self::Temperature,
            "reasoning-effort" | "reasoning" | "effort" => Self::ReasoningEffort,
            "thinking-budget" | "budget" | "reasoning-budget" | "max-reasoning-tokens" => {
                Self::ThinkingBudget
            }
            "gemini-generation-config" | "gemini-config" | "generation-config" => {
                Self::GeminiGenerationConfig
            }
            "project" | "project-name" => Self::Project,
            "project-dir" | "projectdir" | "project-directory" => Self::ProjectDir,
            "command-prefix" | "prefix" => Self::CommandPrefix,
            "interactive-mode" | "interactive" => Self::InteractiveMode,
            "redact-api-keys-in-prompts" | "redact-api-keys" | "redaction" => Self::RedactApiKeys,
            "loop-detection" | "loop" => Self::LoopDetection,
            "mode" | "reasoning-mode" => Self::Mode,
            _ => return None,
        })
    }
}

fn unknown_parameter(typed: &str) -> String {
    let known: Vec<&str> = KEYS.iter().map(|k| k.name()).collect();
    format!(
        "Unknown parameter '{typed}'. Known parameters: {}.",
        known.join(", ")
    )
}

/// Resolves every argument's key, rejecting unknown and duplicate parameters.
fn keys_of<'a>(inv: &'a Invocation<'_>) -> Result<Vec<(Key, &'a str)>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(inv.args.len());
    for arg in inv.args {
        // `set(k=v)`: the key; `unset(k)`: a bare token is the key.
        let (typed, value) = match &arg.key {
            Some(k) => (k.as_str(), arg.value.as_str()),
            None => (arg.value.as_str(), ""),
        };
        let key = Key::parse(typed).ok_or_else(|| unknown_parameter(typed))?;
        if !seen.insert(key) {
            return Err(format!("Parameter '{}' given twice.", key.name()));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// `!/set(k=v, ...)`.
pub(crate) fn set(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let pairs = keys_of(inv)?;
    if pairs.is_empty() {
        return Err(format!(
            "Nothing to set. Format: {}set(key=value, ...); {}help(set) lists the keys.",
            inv.prefix, inv.prefix
        ));
    }
    let mut changed = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        changed.push(set_key(key, value, inv, session, env)?);
    }
    Ok(format!("Settings updated: {}.", changed.join("; ")))
}

fn set_key(
    key: Key,
    value: &str,
    inv: &Invocation<'_>,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    let value = value.trim();
    let is_bool = matches!(
        key,
        Key::InteractiveMode | Key::RedactApiKeys | Key::LoopDetection
    );
    if value.is_empty() && !is_bool {
        return Err(format!(
            "'{}' needs a value; use {}unset({}) to remove it.",
            key.name(),
            inv.prefix,
            key.name()
        ));
    }
    match key {
        Key::Backend => set_backend(value, session, env),
        Key::Model => set_model(value, session, env),
        Key::Temperature => {
            session.temperature = Some(parse_temperature(value)?);
            Ok(format!("temperature={value}"))
        }
        Key::ReasoningEffort => {
            let effort = parse_effort(value)?;
            session.thinking_disabled = effort == "none";
            session.reasoning_effort = Some(effort.to_owned());
            session.reasoning_mode = None;
            Ok(format!("reasoning-effort={effort}"))
        }
        Key::ThinkingBudget => {
            let budget: u64 = value
                .parse()
                .ok()
                .filter(|b| BUDGET_RANGE.contains(b))
                .ok_or_else(|| {
                    format!(
                        "thinking-budget must be a whole number of tokens from {} to {}, got '{value}'.",
                        BUDGET_RANGE.start(),
                        BUDGET_RANGE.end()
                    )
                })?;
            session.thinking_budget = Some(budget);
            session.thinking_disabled = false;
            session.reasoning_mode = None;
            Ok(format!("thinking-budget={budget}"))
        }
        Key::GeminiGenerationConfig => {
            let parsed: serde_json::Value = serde_json::from_str(value)
                .map_err(|e| format!("gemini-generation-config is not valid JSON: {e}."))?;
            if !parsed.is_object() {
                return Err("gemini-generation-config must be a JSON object.".to_owned());
            }
            session.gemini_generation_config = Some(parsed);
            Ok("gemini-generation-config updated".to_owned())
        }
        Key::Project => {
            session.project = Some(value.to_owned());
            Ok(format!("project={value}"))
        }
        Key::ProjectDir => {
            check_project_dir(value)?;
            session.project_dir = Some(value.to_owned());
            Ok(format!("project-dir={value}"))
        }
        Key::CommandPrefix => {
            validate_prefix(value).map_err(|m| format!("command-prefix {m}."))?;
            session.command_prefix = Some(value.to_owned());
            Ok(format!(
                "command-prefix={value} (type {value}help from now on)"
            ))
        }
        Key::InteractiveMode => {
            let v = bool_value(key, value)?;
            session.interactive_mode = Some(v);
            Ok(format!("interactive-mode={}", super::on_off(v)))
        }
        Key::RedactApiKeys => {
            let v = bool_value(key, value)?;
            session.redact_api_keys = Some(v);
            Ok(format!("redact-api-keys-in-prompts={}", super::on_off(v)))
        }
        Key::LoopDetection => {
            let v = bool_value(key, value)?;
            session.loop_detection = Some(v);
            Ok(format!("loop-detection={}", super::on_off(v)))
        }
        Key::Mode => reasoning::apply_mode(value, value, inv, session, env),
    }
}

/// A bare boolean key (`set(interactive-mode)`) means on.
fn bool_value(key: Key, value: &str) -> Result<bool, String> {
    if value.is_empty() {
        return Ok(true);
    }
    parse_bool(value).ok_or_else(|| {
        format!(
            "{} expects on/off, true/false, yes/no, 1/0 or enable/disable, got '{value}'.",
            key.name()
        )
    })
}

/// `!/unset(k, ...)`.
pub(crate) fn unset(
    inv: &Invocation<'_>,
    session: &mut SessionState,
    _: &CommandEnv,
) -> Result<String, String> {
    let keys = keys_of(inv)?;
    if keys.is_empty() {
        return Err(format!(
            "Name the settings to remove, e.g. {}unset(model, temperature).",
            inv.prefix
        ));
    }
    let mut names = Vec::with_capacity(keys.len());
    for (key, _) in keys {
        match key {
            Key::Backend => session.backend = None,
            Key::Model => session.model = None,
            Key::Temperature => session.temperature = None,
            Key::ReasoningEffort => {
                session.reasoning_effort = None;
                session.thinking_disabled = false;
            }
            Key::ThinkingBudget => session.thinking_budget = None,
            Key::GeminiGenerationConfig => session.gemini_generation_config = None,
            Key::Project => session.project = None,
            Key::ProjectDir => session.project_dir = None,
            Key::CommandPrefix => session.command_prefix = None,
            Key::InteractiveMode => session.interactive_mode = None,
            Key::RedactApiKeys => session.redact_api_keys = None,
            Key::LoopDetection => session.loop_detection = None,
            Key::Mode => reasoning::clear_mode(session),
        }
        names.push(key.name());
    }
    Ok(format!("Settings removed: {}.", names.join(", ")))
}

/// Sets the session model: a model, `backend:model` or any selector, checked with the selector
/// parser and against the configured backends. An explicit backend in it replaces a backend
/// override (they would contradict each other).
pub(crate) fn set_model(
    value: &str,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    env.refuse_under_static_route()?;
    let (canonical, explicit_backend) = check_selector_detail(value, env)?;
    session.model = Some(canonical);
    if explicit_backend && session.backend.take().is_some() {
        return Ok(format!("model={value} (backend override removed)"));
    }
    Ok(format!("model={value}"))
}

/// Sets the session backend: an instance (`openai.1`) or family (`openai`) name.
pub(crate) fn set_backend(
    value: &str,
    session: &mut SessionState,
    env: &CommandEnv,
) -> Result<String, String> {
    env.refuse_under_static_route()?;
    let name = value.trim();
    if !env.knows_backend(name) {
        return Err(env.unknown_backend(name));
    }
    session.backend = Some(name.to_owned());
    Ok(format!("backend={name}"))
}

/// Checks a selector and every explicit backend in it; returns it as typed (trimmed).
pub(crate) fn check_selector(value: &str, env: &CommandEnv) -> Result<String, String> {
    check_selector_detail(value, env).map(|(s, _)| s)
}

fn check_selector_detail(value: &str, env: &CommandEnv) -> Result<(String, bool), String> {
    let value = value.trim();
    let parsed = selector::parse_within(value, env.selector_limits())
        .map_err(|e| format!("Invalid model selector '{value}': {e}."))?;
    let mut explicit = false;
    for leaf in parsed.leaves() {
        if let Some(backend) = &leaf.backend {
            explicit = true;
            let id = backend.id();
            if !env.knows_backend(&id) {
                return Err(env.unknown_backend(&id));
            }
        }
    }
    Ok((value.to_owned(), explicit))
}

/// Temperature from 0 to 2.
pub(crate) fn parse_temperature(value: &str) -> Result<f64, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|t| (0.0..=2.0).contains(t))
        .ok_or_else(|| format!("temperature must be a number from 0 to 2, got '{value}'."))
}

fn parse_effort(value: &str) -> Result<&'static str, String> {
    let v = value.trim().to_ascii_lowercase();
    if v == "max" || v == "maximum" {
        return Ok("high");
    }
    EFFORTS.iter().copied().find(|e| *e == v).ok_or_else(|| {
        format!(
            "reasoning-effort must be one of {} (or max), got '{value}'.",
            EFFORTS.join(", ")
        )
    })
}

/// An existing absolute directory. One `stat`, only when a user types this key.
fn check_project_dir(value: &str) -> Result<(), String> {
    let path = Path::new(value);
    if !path.is_absolute() {
        return Err(format!(
            "project-dir must be an absolute path, got '{value}'."
        ));
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(format!("project-dir '{value}' is not a directory.")),
        Err(_) => Err(format!("project-dir '{value}' does not exist.")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run_line;
    use super::*;

    fn env() -> CommandEnv {
        CommandEnv::for_tests()
    }

    fn set_ok(line: &str) -> SessionState {
        let mut s = SessionState::default();
        let answer = run_line(line, &mut s, &env());
        assert!(answer.is_ok(), "{line}: {answer:?}");
        s
    }

    fn set_err(line: &str) -> String {
        let mut s = SessionState::default();
        run_line(line, &mut s, &env()).unwrap_err()
    }

    #[test]
    fn set_model_forms() {
        assert_eq!(
            set_ok("!/set(model=gpt-4o)").model.as_deref(),
            Some("gpt-4o")
        );
        let s = set_ok("!/set(model=openrouter:anthropic/claude-3-haiku:beta)");
        assert_eq!(
            s.model.as_deref(),
            Some("openrouter:anthropic/claude-3-haiku:beta")
        );
        let s = set_ok("!/set(model=openai:gpt-4o|anthropic:claude-3-5-haiku-latest)");
        assert!(s.model.unwrap().contains('|'));
        assert!(set_err("!/set(model=a:m|b:m^c:m)").contains("Invalid model selector"));
        assert!(set_err("!/set(model=nope:gpt-4o)").contains("Unknown backend 'nope'"));
    }

    #[test]
    fn set_model_with_explicit_backend_drops_backend_override() {
        let mut s = SessionState {
            backend: Some("openai".to_owned()),
            ..SessionState::default()
        };
        run_line("!/set(model=gpt-4o-mini)", &mut s, &env()).unwrap();
        assert_eq!(s.backend.as_deref(), Some("openai"));
        run_line("!/set(model=openrouter:x/y)", &mut s, &env()).unwrap();
        assert_eq!(s.backend, None);
    }

    #[test]
    fn set_backend_and_static_route() {
        assert_eq!(
            set_ok("!/set(backend=openai)").backend.as_deref(),
            Some("openai")
        );
        assert!(set_err("!/set(backend=nope)").contains("Unknown backend"));
        let env = CommandEnv::for_tests().with_static_route("openai:gpt-4o");
        let mut s = SessionState::default();
        let err = run_line("!/set(model=gpt-4o-mini)", &mut s, &env).unwrap_err();
        assert!(err.contains("static_route"));
        let err = run_line("!/set(backend=openai)", &mut s, &env).unwrap_err();
        assert!(err.contains("static_route"));
        // Other keys still work.
        run_line("!/set(temperature=0.1)", &mut s, &env).unwrap();
    }

    #[test]
    fn set_temperature() {
        assert_eq!(set_ok("!/set(temperature=0.5)").temperature, Some(0.5));
        assert!(set_err("!/set(temperature=2.5)").contains("0 to 2"));
        assert!(set_err("!/set(temperature=)").contains("needs a value"));
    }

    #[test]
    fn set_reasoning_effort_and_aliases() {
        assert_eq!(
            set_ok("!/set(reasoning-effort=low)")
                .reasoning_effort
                .as_deref(),
            Some("low")
        );
        assert_eq!(
            set_ok("!/set(reasoning_effort=HIGH)")
                .reasoning_effort
                .as_deref(),
            Some("high")
        );
        assert_eq!(
            set_ok("!/set(reasoning=maximum)")
                .reasoning_effort
                .as_deref(),
            Some("high")
        );
        let s = set_ok("!/set(reasoning-effort=none)");
        assert!(s.thinking_disabled);
        assert!(set_err("!/set(reasoning-effort=lots)").contains("must be one of"));
    }

    #[test]
    fn set_thinking_budget() {
        assert_eq!(
            set_ok("!/set(thinking-budget=2048)").thinking_budget,
            Some(2048)
        );
        assert_eq!(set_ok("!/set(budget=4096)").thinking_budget, Some(4096));
        assert!(set_err("!/set(thinking-budget=10)").contains("128"));
        assert!(set_err("!/set(thinking-budget=many)").contains("whole number"));
    }

    #[test]
    fn set_gemini_generation_config() {
        let s = set_ok(
            r#"!/set(gemini-generation-config={"topK": 20, "thinkingConfig": {"thinkingBudget": 0}})"#,
        );
        assert_eq!(
            s.gemini_generation_config.unwrap()["thinkingConfig"]["thinkingBudget"],
            0
        );
        let s = set_ok(r#"!/set(gemini_config={"topP": 0.9})"#);
        assert!(s.gemini_generation_config.is_some());
        assert!(set_err("!/set(gemini-generation-config=[1,2])").contains("JSON object"));
        assert!(set_err("!/set(gemini-generation-config={oops})").contains("not valid JSON"));
    }

    #[test]
    fn set_project_and_project_dir() {
        assert_eq!(
            set_ok("!/set(project=billing)").project.as_deref(),
            Some("billing")
        );
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        let s = set_ok(&format!("!/set(project-dir={dir})"));
        assert_eq!(s.project_dir.as_deref(), Some(dir));
        let s = set_ok(&format!("!/set(projectdir=\"{dir}\")"));
        assert_eq!(s.project_dir.as_deref(), Some(dir));
        assert!(set_err("!/set(project_dir=relative/path)").contains("absolute"));
        assert!(set_err("!/set(project-dir=/definitely/not/here/x9)").contains("does not exist"));
    }

    #[test]
    fn set_command_prefix_validated() {
        assert_eq!(
            set_ok("!/set(command-prefix=#/)").command_prefix.as_deref(),
            Some("#/")
        );
        assert!(set_err("!/set(command-prefix=##)").contains("command-prefix"));
        assert!(set_err("!/set(prefix=x)").contains("2 to 10"));
    }

    #[test]
    fn set_booleans() {
        let s = set_ok("!/set(interactive-mode=off)");
        assert_eq!(s.interactive_mode, Some(false));
        assert_eq!(
            set_ok("!/set(interactive=enabled)").interactive_mode,
            Some(true)
        );
        assert_eq!(set_ok("!/set(interactive)").interactive_mode, Some(true));
        let s = set_ok("!/set(redact-api-keys-in-prompts=false)");
        assert_eq!(s.redact_api_keys, Some(false));
        assert_eq!(
            set_ok("!/set(loop-detection=0)").loop_detection,
            Some(false)
        );
        assert!(set_err("!/set(loop-detection=sometimes)").contains("on/off"));
    }

    #[test]
    fn set_several_keys_and_names_normalised() {
        let s = set_ok("!/set(Model=gpt-4o, TEMPERATURE=0.1, Reasoning Effort=low)");
        assert_eq!(s.model.as_deref(), Some("gpt-4o"));
        assert_eq!(s.temperature, Some(0.1));
        assert_eq!(s.reasoning_effort.as_deref(), Some("low"));
    }

    #[test]
    fn set_duplicate_and_unknown_parameters() {
        assert!(set_err("!/set(model=a, MODEL=b)").contains("given twice"));
        assert!(set_err("!/set(temperature=0.1, temp=0.2)").contains("given twice"));
        let err = set_err("!/set(colour=blue)");
        assert!(err.contains("Unknown parameter 'colour'"), "{err}");
        assert!(err.contains("reasoning-effort"), "{err}");
        assert!(set_err("!/set()").contains("Nothing to set"));
    }

    #[test]
    fn set_mode_key_applies_a_reasoning_mode() {
        let s = set_ok("!/set(mode=high)");
        assert_eq!(s.reasoning_effort.as_deref(), Some("high"));
    }

    #[test]
    fn unset_every_key() {
        let dir = std::env::temp_dir();
        let mut s = SessionState::default();
        let line = format!(
            "!/set(backend=openai, temperature=0.2, reasoning-effort=low, thinking-budget=1024, \
             gemini-generation-config={{}}, project=p, project-dir={}, command-prefix=#/, \
             interactive-mode=on, redact-api-keys-in-prompts=off, loop-detection=off)",
            dir.display()
        );
        run_line(&line, &mut s, &env()).unwrap();
        run_line("!/set(model=gpt-4o)", &mut s, &env()).unwrap();
        assert_ne!(s, SessionState::default());
        run_line(
            "!/unset(backend, model, temperature, reasoning-effort, thinking-budget, \
             gemini-generation-config, project, project-dir, command-prefix, interactive, \
             redact-api-keys-in-prompts, loop-detection, mode)",
            &mut s,
            &env(),
        )
        .unwrap();
        assert_eq!(s, SessionState::default());
    }

    #[test]
    fn unset_errors() {
        assert!(set_err("!/unset()").contains("Name the settings"));
        assert!(set_err("!/unset(colour)").contains("Unknown parameter"));
        assert!(set_err("!/unset(model, model)").contains("given twice"));
    }
}
