//! Tool access policies, compiled once at startup: whether a tool (by name) may be offered to
//! and called by the model, for a request's model and agent (the client's `User-Agent`), and a
//! session's own allow/block lists. Used twice: the request stage strips disallowed tool
//! definitions, the event processor swallows disallowed calls.
//!
//! Order of decision: the session's blocked names → the global allowed patterns
//! (`--allowed-tools`) → the global blocked patterns (`--blocked-tools`) → the matching policy
//! of highest priority (its allowed, then blocked patterns) → the session's allowed names →
//! that policy's default, else the global default (`--default-policy`). Allowed beats blocked
//! at each level; global settings beat per-model policies. Patterns are case-insensitive
//! regexes matching the whole name; session lists are names with `*` / `?` wildcards (no regex
//! compiled per request).

use regex::{Regex, RegexSet};

use crate::config::guards::ToolAccessSettings;

/// Why a tool is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The tool may be used.
    Allow,
    /// It may not; the text tells the model why.
    Deny(String),
}

/// A session's own lists (names with wildcards).
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionLists<'a> {
    /// Names the session allowed.
    pub allowed: &'a [String],
    /// Names the session blocked.
    pub blocked: &'a [String],
}

impl SessionLists<'_> {
    fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.blocked.is_empty()
    }
}

#[derive(Debug)]
struct Policy {
    name: String,
    model: Option<Regex>,
    agent: Option<Regex>,
    default_allow: bool,
    allowed: RegexSet,
    blocked: RegexSet,
    block_message: Option<String>,
}

/// The compiled policies.
#[derive(Debug)]
pub struct ToolAccess {
    allowed: RegexSet,
    blocked: RegexSet,
    default_allow: bool,
    /// Highest priority first.
    policies: Vec<Policy>,
}

fn whole_name(patterns: &[String]) -> Result<RegexSet, regex::Error> {
    RegexSet::new(patterns.iter().map(|p| format!("(?i)^(?:{p})$")))
}

fn anywhere(pattern: Option<&String>) -> Result<Option<Regex>, regex::Error> {
    pattern.map(|p| Regex::new(&format!("(?i){p}"))).transpose()
}

impl ToolAccess {
    /// Compiles the settings (validated at load, so errors are not expected).
    pub fn new(settings: &ToolAccessSettings) -> Result<Self, regex::Error> {
        let mut policies = settings
            .policies
            .iter()
            .map(|p| {
                Ok((
                    p.priority,
                    Policy {
                        name: p.name.clone(),
                        model: anywhere(p.model_pattern.as_ref())?,
                        agent: anywhere(p.agent_pattern.as_ref())?,
                        default_allow: p.default_allow,
                        allowed: whole_name(&p.allowed_patterns)?,
                        blocked: whole_name(&p.blocked_patterns)?,
                        block_message: p.block_message.clone(),
                    },
                ))
            })
            .collect::<Result<Vec<_>, regex::Error>>()?;
        // Stable: equal priorities keep their configured order.
        policies.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
        Ok(Self {
            allowed: whole_name(&settings.allowed_tools)?,
            blocked: whole_name(&settings.blocked_tools)?,
            default_allow: settings.default_allow,
            policies: policies.into_iter().map(|(_, p)| p).collect(),
        })
    }

    /// Whether the configuration alone can refuse anything (else only a session's blocked
    /// list can, and requests of sessions without one skip the guard).
    pub fn restricts(&self) -> bool {
        !self.default_allow
            || !self.blocked.is_empty()
            || self
                .policies
                .iter()
                .any(|p| !p.default_allow || !p.blocked.is_empty())
    }

    /// Whether anything can refuse a tool for this session.
    pub fn active_for(&self, session: SessionLists<'_>) -> bool {
        self.restricts() || !session.blocked.is_empty()
    }

    /// The decision about `tool` for a request to `model` from `agent`.
    pub fn decide(
        &self,
        tool: &str,
        model: &str,
        agent: &str,
        session: SessionLists<'_>,
    ) -> Decision {
        let deny = |why: String| Decision::Deny(why);
        if !session.is_empty() && session.blocked.iter().any(|g| glob_match(g, tool)) {
            return deny(format!(
                "The tool '{tool}' is blocked for this session; do not call it."
            ));
        }
        if self.allowed.is_match(tool) {
            return Decision::Allow;
        }
        if self.blocked.is_match(tool) {
            return deny(format!(
                "The tool '{tool}' is blocked by the proxy's configuration; do not call it."
            ));
        }
        let policy = self.policies.iter().find(|p| {
            p.model.as_ref().is_none_or(|r| r.is_match(model))
                && p.agent.as_ref().is_none_or(|r| r.is_match(agent))
        });
        let policy_message = |p: &Policy| {
            p.block_message.clone().unwrap_or_else(|| {
                format!(
                    "The tool '{tool}' is not allowed by the access policy '{}'; do not call it.",
                    p.name
                )
            })
        };
        if let Some(p) = policy {
            if p.allowed.is_match(tool) {
                return Decision::Allow;
            }
            if p.blocked.is_match(tool) {
                return deny(policy_message(p));
            }
        }
        if session.allowed.iter().any(|g| glob_match(g, tool)) {
            return Decision::Allow;
        }
        match policy {
            Some(p) if !p.default_allow => deny(policy_message(p)),
            Some(_) => Decision::Allow,
            None if self.default_allow => Decision::Allow,
            None => deny(format!(
                "The tool '{tool}' is not in the proxy's allowed tools; do not call it."
            )),
        }
    }
}

/// `*` (any run) and `?` (one character) wildcards, ASCII case-insensitive.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::guards::AccessPolicySettings;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn access(settings: ToolAccessSettings) -> ToolAccess {
        ToolAccess::new(&settings).unwrap()
    }

    fn none() -> SessionLists<'static> {
        SessionLists::default()
    }

    fn policy(
        model: &str,
        allowed: &[&str],
        blocked: &[&str],
        default_allow: bool,
    ) -> AccessPolicySettings {
        AccessPolicySettings {
            name: format!("for-{model}"),
            model_pattern: Some(model.to_owned()),
            agent_pattern: None,
            default_allow,
            allowed_patterns: strings(allowed),
            blocked_patterns: strings(blocked),
            block_message: None,
            priority: 0,
        }
    }

    #[test]
    fn the_default_allows_everything_and_restricts_nothing() {
        let a = access(ToolAccessSettings::default());
        assert!(!a.restricts());
        assert_eq!(a.decide("bash", "gpt-4o", "", none()), Decision::Allow);
    }

    #[test]
    fn blocked_patterns_match_whole_names_case_insensitively() {
        let a = access(ToolAccessSettings {
            blocked_tools: strings(&["bash", "write_.*"]),
            ..ToolAccessSettings::default()
        });
        assert!(a.restricts());
        assert!(matches!(
            a.decide("Bash", "m", "", none()),
            Decision::Deny(_)
        ));
        assert!(matches!(
            a.decide("write_file", "m", "", none()),
            Decision::Deny(_)
        ));
        assert_eq!(a.decide("bash_history", "m", "", none()), Decision::Allow);
        assert_eq!(a.decide("read_file", "m", "", none()), Decision::Allow);
    }

    #[test]
    fn allowed_beats_blocked_and_a_deny_default() {
        let a = access(ToolAccessSettings {
            allowed_tools: strings(&["read_file"]),
            blocked_tools: strings(&[".*_file"]),
            default_allow: false,
            ..ToolAccessSettings::default()
        });
        assert_eq!(a.decide("read_file", "m", "", none()), Decision::Allow);
        assert!(matches!(
            a.decide("write_file", "m", "", none()),
            Decision::Deny(_)
        ));
        assert!(matches!(a.decide("ls", "m", "", none()), Decision::Deny(_)));
    }

    #[test]
    fn policies_apply_by_model_and_priority_and_global_settings_win() {
        let mut low = policy("gpt", &[], &["bash"], true);
        low.priority = 1;
        let mut high = policy("gpt-4o-mini", &["bash"], &[], false);
        high.priority = 10;
        high.block_message = Some("mini may only run bash".into());
        let a = access(ToolAccessSettings {
            allowed_tools: strings(&["todo"]),
            policies: vec![low, high],
            ..ToolAccessSettings::default()
        });
        assert!(matches!(
            a.decide("bash", "gpt-4o", "", none()),
            Decision::Deny(_)
        ));
        assert_eq!(a.decide("bash", "gpt-4o-mini", "", none()), Decision::Allow);
        assert_eq!(
            a.decide("edit", "gpt-4o-mini", "", none()),
            Decision::Deny("mini may only run bash".into())
        );
        // Global allowed beats the policy's deny default.
        assert_eq!(a.decide("todo", "gpt-4o-mini", "", none()), Decision::Allow);
        // No policy for this model: the global default.
        assert_eq!(a.decide("bash", "claude", "", none()), Decision::Allow);
    }

    #[test]
    fn agent_patterns_select_policies() {
        let mut p = policy(".*", &[], &["bash"], true);
        p.model_pattern = None;
        p.agent_pattern = Some("claude-cli".into());
        let a = access(ToolAccessSettings {
            policies: vec![p],
            ..ToolAccessSettings::default()
        });
        assert!(matches!(
            a.decide("bash", "m", "claude-cli/1.0.80 (external, cli)", none()),
            Decision::Deny(_)
        ));
        assert_eq!(
            a.decide("bash", "m", "codex_cli_rs/0.1", none()),
            Decision::Allow
        );
    }

    #[test]
    fn session_lists_block_first_and_allow_over_defaults_only() {
        let a = access(ToolAccessSettings {
            blocked_tools: strings(&["bash"]),
            default_allow: false,
            ..ToolAccessSettings::default()
        });
        let blocked = strings(&["web_*"]);
        let allowed = strings(&["read_?ile", "bash"]);
        let s = SessionLists {
            allowed: &allowed,
            blocked: &blocked,
        };
        assert!(matches!(
            a.decide("WEB_fetch", "m", "", s),
            Decision::Deny(_)
        ));
        assert_eq!(a.decide("read_file", "m", "", s), Decision::Allow);
        // The configuration's explicit block stays.
        assert!(matches!(a.decide("bash", "m", "", s), Decision::Deny(_)));
        assert!(matches!(a.decide("grep", "m", "", s), Decision::Deny(_)));
        let open = access(ToolAccessSettings::default());
        assert!(!open.active_for(none()));
        assert!(open.active_for(s));
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("web_*", "web_fetch"));
        assert!(glob_match("*_file", "read_file"));
        assert!(glob_match("r?ad*", "READ_file"));
        assert!(!glob_match("web_*", "fetch_web"));
        assert!(!glob_match("bash", "bash2"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }
}
