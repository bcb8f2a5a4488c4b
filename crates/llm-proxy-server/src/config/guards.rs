//! Settings of the steering and safety guards over tool calls (`session.*` keys): dangerous
//! command protection, tool access policies, the tool-progress loop guard and streaming loop
//! detection. Raw (as written) and validated forms; regex patterns are checked here and
//! compiled once more when the pipeline is built.

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `session.tool_call_reactor:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolCallReactor {
    /// Global allowed tool-name patterns (`--allowed-tools`); beat every policy.
    pub allowed_tools: Option<Vec<String>>,
    /// Global blocked tool-name patterns (`--blocked-tools`).
    pub blocked_tools: Option<Vec<String>>,
    /// `allow` or `deny` for tools nothing matched (`--default-policy`).
    pub default_policy: Option<String>,
    /// Per-model / per-agent policies.
    #[serde(default)]
    pub access_policies: Vec<RawAccessPolicy>,
}

/// One entry of `session.tool_call_reactor.access_policies`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessPolicy {
    pub name: Option<String>,
    pub model_pattern: Option<String>,
    pub agent_pattern: Option<String>,
    pub default_policy: Option<String>,
    #[serde(default)]
    pub allowed_patterns: Vec<String>,
    #[serde(default)]
    pub blocked_patterns: Vec<String>,
    pub block_message: Option<String>,
    pub priority: Option<i64>,
}

/// `session.tool_progress_loop_guard:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolLoopGuard {
    pub enabled: Option<bool>,
    pub max_repeated_calls: Option<u32>,
    pub max_repeated_outputs: Option<u32>,
    /// `steer_then_error` or `error`.
    pub action: Option<String>,
    pub steering_message: Option<String>,
}

/// What the loop guard does once a loop is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopAction {
    /// A steering message the first time, an error after.
    #[default]
    SteerThenError,
    /// An error at once.
    Error,
}

/// One validated access policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessPolicySettings {
    pub name: String,
    pub model_pattern: Option<String>,
    pub agent_pattern: Option<String>,
    pub default_allow: bool,
    pub allowed_patterns: Vec<String>,
    pub blocked_patterns: Vec<String>,
    pub block_message: Option<String>,
    pub priority: i64,
}

/// Tool access control.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAccessSettings {
    pub allowed_tools: Vec<String>,
    pub blocked_tools: Vec<String>,
    pub default_allow: bool,
    pub policies: Vec<AccessPolicySettings>,
}

impl Default for ToolAccessSettings {
    fn default() -> Self {
        Self {
            allowed_tools: Vec::new(),
            blocked_tools: Vec::new(),
            default_allow: true,
            policies: Vec::new(),
        }
    }
}

/// The tool-progress loop guard.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolLoopSettings {
    pub enabled: bool,
    /// Identical calls with identical results before the next one is stopped.
    pub max_repeated_calls: u32,
    /// Identical tool outputs in a row before the next call is stopped.
    pub max_repeated_outputs: u32,
    pub action: LoopAction,
    pub steering_message: Option<String>,
}

impl Default for ToolLoopSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_repeated_calls: 7,
            max_repeated_outputs: 7,
            action: LoopAction::SteerThenError,
            steering_message: None,
        }
    }
}

/// Every steering guard's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardsConfig {
    /// `session.dangerous_command_prevention_enabled` (default on).
    pub dangerous_commands: bool,
    /// `session.dangerous_command_steering_message`.
    pub dangerous_command_message: Option<String>,
    /// `session.tool_call_reactor.*`.
    pub tool_access: ToolAccessSettings,
    /// `session.tool_progress_loop_guard.*`.
    pub tool_loop: ToolLoopSettings,
    /// `session.streaming_loop_detection_enabled` (default off).
    pub streaming_loop_detection: bool,
}

impl Default for GuardsConfig {
    fn default() -> Self {
        Self {
            dangerous_commands: true,
            dangerous_command_message: None,
            tool_access: ToolAccessSettings::default(),
            tool_loop: ToolLoopSettings::default(),
            streaming_loop_detection: false,
        }
    }
}

fn policy_word(path: &str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "allow" => Ok(true),
        Some(v) if v == "deny" => Ok(false),
        Some(v) => Err(ConfigError::new(
            path,
            format!("expected allow or deny, got '{v}'"),
        )),
    }
}

fn check_patterns(path: &str, patterns: &[String]) -> Result<(), ConfigError> {
    for (i, p) in patterns.iter().enumerate() {
        regex::Regex::new(p)
            .map_err(|e| ConfigError::new(format!("{path}[{i}]"), format!("invalid regex: {e}")))?;
    }
    Ok(())
}

fn check_pattern(path: &str, pattern: Option<&String>) -> Result<(), ConfigError> {
    if let Some(p) = pattern {
        regex::Regex::new(p).map_err(|e| ConfigError::new(path, format!("invalid regex: {e}")))?;
    }
    Ok(())
}

/// Validates the raw `session.*` steering keys.
pub(super) fn validate(
    dangerous: Option<bool>,
    dangerous_message: Option<&String>,
    streaming_loop_detection: Option<bool>,
    reactor: &RawToolCallReactor,
    guard: &RawToolLoopGuard,
) -> Result<GuardsConfig, ConfigError> {
    let base = "session.tool_call_reactor";
    let allowed = reactor.allowed_tools.clone().unwrap_or_default();
    let blocked = reactor.blocked_tools.clone().unwrap_or_default();
    check_patterns(&format!("{base}.allowed_tools"), &allowed)?;
    check_patterns(&format!("{base}.blocked_tools"), &blocked)?;
    let mut policies = Vec::new();
    for (i, p) in reactor.access_policies.iter().enumerate() {
        let path = format!("{base}.access_policies[{i}]");
        check_pattern(&format!("{path}.model_pattern"), p.model_pattern.as_ref())?;
        check_pattern(&format!("{path}.agent_pattern"), p.agent_pattern.as_ref())?;
        check_patterns(&format!("{path}.allowed_patterns"), &p.allowed_patterns)?;
        check_patterns(&format!("{path}.blocked_patterns"), &p.blocked_patterns)?;
        policies.push(AccessPolicySettings {
            name: p.name.clone().unwrap_or_else(|| format!("policy-{i}")),
            model_pattern: p.model_pattern.clone(),
            agent_pattern: p.agent_pattern.clone(),
            default_allow: policy_word(
                &format!("{path}.default_policy"),
                p.default_policy.as_deref(),
                true,
            )?,
            allowed_patterns: p.allowed_patterns.clone(),
            blocked_patterns: p.blocked_patterns.clone(),
            block_message: p.block_message.clone(),
            priority: p.priority.unwrap_or(0),
        });
    }
    let action = match guard.action.as_deref().map(str::trim) {
        None | Some("steer_then_error") => LoopAction::SteerThenError,
        Some("error") => LoopAction::Error,
        Some(other) => {
            return Err(ConfigError::new(
                "session.tool_progress_loop_guard.action",
                format!("expected steer_then_error or error, got '{other}'"),
            ));
        }
    };
    let defaults = ToolLoopSettings::default();
    let at_least_one = |path: &str, v: Option<u32>, default: u32| match v {
        Some(0) => Err(ConfigError::new(path, "must be at least 1")),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    Ok(GuardsConfig {
        dangerous_commands: dangerous.unwrap_or(true),
        dangerous_command_message: dangerous_message.cloned(),
        tool_access: ToolAccessSettings {
            allowed_tools: allowed,
            blocked_tools: blocked,
            default_allow: policy_word(
                &format!("{base}.default_policy"),
                reactor.default_policy.as_deref(),
                true,
            )?,
            policies,
        },
        tool_loop: ToolLoopSettings {
            enabled: guard.enabled.unwrap_or(true),
            max_repeated_calls: at_least_one(
                "session.tool_progress_loop_guard.max_repeated_calls",
                guard.max_repeated_calls,
                defaults.max_repeated_calls,
            )?,
            max_repeated_outputs: at_least_one(
                "session.tool_progress_loop_guard.max_repeated_outputs",
                guard.max_repeated_outputs,
                defaults.max_repeated_outputs,
            )?,
            action,
            steering_message: guard.steering_message.clone(),
        },
        streaming_loop_detection: streaming_loop_detection.unwrap_or(false),
    })
}

/// A comma-separated list of patterns (`--allowed-tools a,b.*`), blanks dropped.
pub fn split_patterns(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}
