//! Reasoning controls between protocols: how effort levels, thinking budgets, adaptive and
//! disabled thinking (`ChatRequest::reasoning`) become an OpenAI-family upstream's effort, and
//! which client controls no other upstream can express. The table is in docs/translation.md;
//! the budget side of it lives with the Anthropic and Gemini encoders.

use llm_proxy_api::model::{ChatRequest, ReasoningConfig};
use serde_json::Value;

/// The canonical effort for a level a client wrote: Anthropic's `max` is the highest level
/// (`xhigh` elsewhere); levels are lower-case.
pub fn canonical_effort(level: &str) -> String {
    let level = level.to_ascii_lowercase();
    match level.as_str() {
        "max" => "xhigh".to_owned(),
        _ => level,
    }
}

/// Maps a thinking budget onto the nearest effort level.
pub fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0 => "none",
        1..=2048 => "low",
        2049..=12288 => "medium",
        _ => "high",
    }
}

/// The model name without a router's `vendor/` prefix (`openai/o3` -> `o3`).
fn bare_model(model: &str) -> &str {
    model.rsplit('/').next().unwrap_or(model)
}

/// OpenAI reasoning models that always think (o1, o3, o4-mini, ...): `none` is refused.
fn cannot_stop_thinking(model: &str) -> bool {
    let m = bare_model(model).as_bytes();
    m.len() >= 2 && m[0] == b'o' && m[1].is_ascii_digit()
}

/// GPT-5 before 5.1 turns reasoning down to `minimal`, not `none`.
fn minimal_is_lowest(model: &str) -> bool {
    let m = bare_model(model);
    m == "gpt-5" || m.starts_with("gpt-5-")
}

/// OpenAI models that do not reason and refuse a reasoning effort (OpenAI answers 400
/// "Unsupported parameter: 'reasoning_effort'"): GPT-4o, GPT-4.1, GPT-4.5, GPT-4, GPT-3.5 and
/// the GPT-5 chat variant.
fn takes_no_effort(model: &str) -> bool {
    let m = bare_model(model).to_ascii_lowercase();
    [
        "gpt-4o",
        "chatgpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-4-",
        "gpt-3.5",
        "gpt-5-chat",
    ]
    .iter()
    .any(|p| m.starts_with(p))
        || m == "gpt-4"
}

/// The effort an OpenAI-family upstream (Chat `reasoning_effort`, Responses
/// `reasoning.effort`) gets for `r` on `model`, and a note when the model cannot do what was
/// asked. An explicit effort wins; a budget maps to the nearest level; adaptive thinking
/// without an effort leaves the model its default.
pub fn openai_effort(r: &ReasoningConfig, model: &str) -> (Option<String>, Option<String>) {
    let effort = match (&r.effort, r.budget_tokens) {
        _ if r.disabled => "none",
        (Some(e), _) => e.as_str(),
        (None, Some(b)) => effort_for_budget(b),
        (None, None) => return (None, None),
    };
    if takes_no_effort(model) {
        // Claude Code's adaptive thinking at effort high would otherwise make every request
        // to such a model a 400; turning thinking off there needs nothing sent.
        let note = (effort != "none").then(|| {
            format!(
                "reasoning effort '{effort}' not sent: {model} does not take a reasoning effort"
            )
        });
        return (None, note);
    }
    if effort != "none" {
        return (Some(effort.to_owned()), None);
    }
    if cannot_stop_thinking(model) {
        let note =
            format!("reasoning cannot be turned off on {model}; reasoning effort 'low' sent");
        return (Some("low".to_owned()), Some(note));
    }
    let lowest = if minimal_is_lowest(model) {
        "minimal"
    } else {
        "none"
    };
    (Some(lowest.to_owned()), None)
}

/// Anthropic `context_management` edits (clearing old tool results or thinking): only an
/// Anthropic upstream applies them; for any other the note naming them.
pub fn context_management_note(req: &ChatRequest, upstream_protocol: &str) -> Option<String> {
    if upstream_protocol == crate::anthropic::PROTOCOL {
        return None;
    }
    req.extra_for(crate::anthropic::PROTOCOL)?
        .get("context_management")
        .filter(|v| !v.is_null())
        .map(|_| {
            "context_management edits dropped (only an Anthropic upstream applies them)".to_owned()
        })
}

/// An OpenAI-Chat-style `reasoning` object (`{effort, max_tokens, enabled, exclude}`, as
/// OpenRouter and some clients send it) as a reasoning config.
pub fn from_reasoning_object(v: &Value) -> Option<ReasoningConfig> {
    let o = v.as_object()?;
    let effort = o
        .get("effort")
        .and_then(Value::as_str)
        .map(canonical_effort);
    let budget = o.get("max_tokens").and_then(Value::as_u64);
    let enabled = o.get("enabled").and_then(Value::as_bool);
    let exclude = o.get("exclude").and_then(Value::as_bool);
    if effort.is_none() && budget.is_none() && enabled.is_none() && exclude.is_none() {
        return None;
    }
    Some(ReasoningConfig {
        disabled: enabled == Some(false) || effort.as_deref() == Some("none") || budget == Some(0),
        effort,
        budget_tokens: budget.filter(|b| *b > 0),
        include_thoughts: exclude.map(|e| !e),
        adaptive: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(effort: Option<&str>, budget: Option<u64>, disabled: bool) -> ReasoningConfig {
        ReasoningConfig {
            effort: effort.map(str::to_owned),
            budget_tokens: budget,
            disabled,
            ..ReasoningConfig::default()
        }
    }

    #[test]
    fn models_that_do_not_reason_get_no_effort_and_a_note() {
        for model in [
            "gpt-4o",
            "openai/gpt-4o-mini",
            "gpt-4.1-nano",
            "gpt-4",
            "gpt-5-chat-latest",
        ] {
            let (sent, note) = openai_effort(&cfg(Some("high"), None, false), model);
            assert_eq!(sent, None, "{model}");
            assert!(note.is_some_and(|n| n.contains("not sent")), "{model}");
        }
        assert_eq!(
            openai_effort(&cfg(None, None, true), "gpt-4o"),
            (None, None),
            "nothing to turn off"
        );
        for model in [
            "o3",
            "gpt-5",
            "gpt-5.1",
            "gpt-oss-120b",
            "deepseek-reasoner",
        ] {
            let (sent, _) = openai_effort(&cfg(Some("high"), None, false), model);
            assert_eq!(sent.as_deref(), Some("high"), "{model}");
        }
    }

    #[test]
    fn openai_effort_follows_the_table() {
        let e = |r: ReasoningConfig, m: &str| openai_effort(&r, m).0;
        assert_eq!(
            e(cfg(Some("high"), None, false), "gpt-5"),
            Some("high".into())
        );
        assert_eq!(e(cfg(None, Some(1024), false), "gpt-5"), Some("low".into()));
        assert_eq!(
            e(cfg(None, Some(8192), false), "gpt-5"),
            Some("medium".into())
        );
        assert_eq!(
            e(cfg(None, Some(32000), false), "gpt-5"),
            Some("high".into())
        );
        assert_eq!(e(cfg(None, None, true), "gpt-5.1"), Some("none".into()));
        assert_eq!(
            e(cfg(None, None, true), "gpt-5-mini"),
            Some("minimal".into())
        );
        assert_eq!(
            e(cfg(Some("none"), None, true), "gpt-5"),
            Some("minimal".into())
        );
        let adaptive = ReasoningConfig {
            adaptive: true,
            ..ReasoningConfig::default()
        };
        assert_eq!(e(adaptive, "gpt-5"), None);
    }

    #[test]
    fn models_that_always_think_get_low_and_a_note() {
        let (effort, note) = openai_effort(&cfg(None, Some(0), true), "openai/o3-mini");
        assert_eq!(effort.as_deref(), Some("low"));
        assert!(note.unwrap().contains("cannot be turned off"));
        assert_eq!(
            openai_effort(&cfg(None, None, true), "omni-x").0.as_deref(),
            Some("none")
        );
    }

    #[test]
    fn reasoning_objects_become_configs() {
        let r = from_reasoning_object(&serde_json::json!({"effort": "High"})).unwrap();
        assert_eq!((r.effort.as_deref(), r.disabled), (Some("high"), false));
        let r = from_reasoning_object(&serde_json::json!({"max_tokens": 3000, "exclude": true}))
            .unwrap();
        assert_eq!(
            (r.budget_tokens, r.include_thoughts),
            (Some(3000), Some(false))
        );
        assert!(
            from_reasoning_object(&serde_json::json!({"enabled": false}))
                .unwrap()
                .disabled
        );
        assert!(from_reasoning_object(&serde_json::json!({})).is_none());
        assert!(from_reasoning_object(&serde_json::json!("high")).is_none());
    }
}
