//! Steering and repair settings (`session.tool_call_repair_*`, `session.json_repair_*`,
//! `session.fix_think_tags_enabled`, `session.client_compatibility.user_agent_rules`): raw
//! YAML shapes, validation, and the validated [`SteeringConfig`] the processors are built from.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `session.client_compatibility`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientCompatibility {
    /// Replaces the default rules when given (`[]` turns them off).
    pub user_agent_rules: Option<Vec<RawUserAgentRule>>,
}

/// One `session.client_compatibility.user_agent_rules[]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserAgentRule {
    pub name: Option<String>,
    pub user_agent_regex: String,
    pub reasoning_mode: String,
    pub reasoning_counts_as_meaningful: Option<bool>,
    pub enabled: Option<bool>,
}

/// A validated user-agent rule (the regex compiles; the mode is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgentRuleConfig {
    /// Label for diagnostics.
    pub name: String,
    /// Regex searched in the client's `User-Agent`.
    pub user_agent_regex: String,
    /// `passthrough`, `coerce_to_content` or `drop`.
    pub reasoning_mode: String,
    /// Whether reasoning counts as output for matching clients.
    pub reasoning_counts_as_meaningful: bool,
}

/// What the steering processors do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringConfig {
    /// Tool calls written as text become structured calls.
    pub tool_call_repair: bool,
    /// Most text held while it may be a tool call.
    pub tool_call_repair_buffer_cap: usize,
    /// Malformed tool arguments / structured output are repaired.
    pub json_repair: bool,
    /// Unrepairable JSON (or JSON missing required properties) fails the attempt.
    pub json_repair_strict: bool,
    /// Most bytes held per JSON value.
    pub json_repair_buffer_cap: usize,
    /// `<think>` tags in text become reasoning.
    pub fix_think_tags: bool,
    /// Reasoning presentation by user agent (first match wins).
    pub user_agent_rules: Vec<UserAgentRuleConfig>,
}

impl Default for SteeringConfig {
    fn default() -> Self {
        Self {
            tool_call_repair: true,
            tool_call_repair_buffer_cap: 64 * 1024,
            json_repair: true,
            json_repair_strict: false,
            json_repair_buffer_cap: 64 * 1024,
            fix_think_tags: false,
            user_agent_rules: vec![UserAgentRuleConfig {
                name: "opencode".to_owned(),
                user_agent_regex: "opencode/".to_owned(),
                reasoning_mode: "coerce_to_content".to_owned(),
                reasoning_counts_as_meaningful: true,
            }],
        }
    }
}

/// Largest buffer cap accepted (16 MiB).
const MAX_BUFFER_CAP: usize = 16 * 1024 * 1024;

fn buffer_cap(path: &str, v: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if (1024..=MAX_BUFFER_CAP).contains(&n) => Ok(n),
        Some(_) => Err(ConfigError::new(
            path,
            "must be between 1024 and 16777216 bytes",
        )),
    }
}

/// Validates the steering keys of `session`.
pub(super) fn steering_from_raw(
    raw: &super::raw::RawSession,
) -> Result<SteeringConfig, ConfigError> {
    let d = SteeringConfig::default();
    let user_agent_rules = match raw
        .client_compatibility
        .as_ref()
        .and_then(|c| c.user_agent_rules.as_ref())
    {
        None => d.user_agent_rules,
        Some(rules) => rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.enabled.unwrap_or(true))
            .map(|(i, r)| {
                let path = format!("session.client_compatibility.user_agent_rules[{i}]");
                if r.user_agent_regex.trim().is_empty() {
                    return Err(ConfigError::new(
                        format!("{path}.user_agent_regex"),
                        "must not be empty",
                    ));
                }
                regex::Regex::new(&r.user_agent_regex).map_err(|e| {
                    ConfigError::new(format!("{path}.user_agent_regex"), e.to_string())
                })?;
                if crate::processors::reasoning_mode::ReasoningMode::parse(&r.reasoning_mode)
                    .is_none()
                {
                    return Err(ConfigError::new(
                        format!("{path}.reasoning_mode"),
                        "expected passthrough, coerce_to_content or drop",
                    ));
                }
                Ok(UserAgentRuleConfig {
                    name: r.name.clone().unwrap_or_else(|| format!("rule {i}")),
                    user_agent_regex: r.user_agent_regex.clone(),
                    reasoning_mode: r.reasoning_mode.clone(),
                    reasoning_counts_as_meaningful: r
                        .reasoning_counts_as_meaningful
                        .unwrap_or(true),
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(SteeringConfig {
        tool_call_repair: raw.tool_call_repair_enabled.unwrap_or(d.tool_call_repair),
        tool_call_repair_buffer_cap: buffer_cap(
            "session.tool_call_repair_buffer_cap_bytes",
            raw.tool_call_repair_buffer_cap_bytes,
            d.tool_call_repair_buffer_cap,
        )?,
        json_repair: raw.json_repair_enabled.unwrap_or(d.json_repair),
        json_repair_strict: raw.json_repair_strict_mode.unwrap_or(d.json_repair_strict),
        json_repair_buffer_cap: buffer_cap(
            "session.json_repair_buffer_cap_bytes",
            raw.json_repair_buffer_cap_bytes,
            d.json_repair_buffer_cap,
        )?,
        fix_think_tags: raw.fix_think_tags_enabled.unwrap_or(d.fix_think_tags),
        user_agent_rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CliOverrides, Env, load_from_str};

    #[test]
    fn defaults_yaml_and_cli() {
        let cfg = load_from_str("", &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(cfg.steering, SteeringConfig::default());
        let yaml = "session:\n  tool_call_repair_enabled: false\n  json_repair_strict_mode: true\n  json_repair_buffer_cap_bytes: 2048\n  client_compatibility:\n    user_agent_rules:\n      - user_agent_regex: '^MyAgent/'\n        reasoning_mode: drop\n        reasoning_counts_as_meaningful: false\n";
        let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).unwrap();
        let s = &cfg.steering;
        assert!(!s.tool_call_repair && s.json_repair && s.json_repair_strict && !s.fix_think_tags);
        assert_eq!(s.json_repair_buffer_cap, 2048);
        assert_eq!(s.user_agent_rules.len(), 1);
        assert!(!s.user_agent_rules[0].reasoning_counts_as_meaningful);
        let cli = CliOverrides {
            fix_think_tags: true,
            disable_json_repair: true,
            ..CliOverrides::default()
        };
        let cfg = load_from_str(yaml, &cli, &Env::default()).unwrap();
        assert!(cfg.steering.fix_think_tags && !cfg.steering.json_repair);
    }

    #[test]
    fn bad_values_name_their_path() {
        for (yaml, path) in [
            (
                "session:\n  json_repair_buffer_cap_bytes: 10\n",
                "session.json_repair_buffer_cap_bytes",
            ),
            (
                "session:\n  client_compatibility:\n    user_agent_rules:\n      - user_agent_regex: '('\n        reasoning_mode: drop\n",
                "session.client_compatibility.user_agent_rules[0].user_agent_regex",
            ),
            (
                "session:\n  client_compatibility:\n    user_agent_rules:\n      - user_agent_regex: 'x'\n        reasoning_mode: hide\n",
                "session.client_compatibility.user_agent_rules[0].reasoning_mode",
            ),
        ] {
            let e = load_from_str(yaml, &CliOverrides::default(), &Env::default()).unwrap_err();
            assert!(e.to_string().contains(path), "{e}");
        }
    }
}
