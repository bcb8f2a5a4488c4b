//! Per-session state: the overrides and toggles a conversation set with in-chat commands.
//! Plain data (serde), so a shared store can keep it as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A session-scoped named failover route (`!/create-failover-route(name=…, policy=…)`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailoverRoute {
    /// Policy letters as given (`k`, `m`, `km`, `mk`): validated, kept for display.
    pub policy: String,
    /// Elements in order, each a `backend:model` selector.
    pub elements: Vec<String>,
}

/// What one session has set. `None` everywhere means "as configured"; every field is an
/// override the user typed, so unsetting a key puts back the configured behaviour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionState {
    /// Backend override (`!/set(backend=…)`, `!/backend(…)`): an instance or family name.
    pub backend: Option<String>,
    /// Model override (`!/set(model=…)`, `!/model(…)`): a model, `backend:model` or any
    /// selector; wins over the model the client asked for.
    pub model: Option<String>,
    /// A route for the next request only (`!/oneoff(backend:model)`), cleared once used.
    pub oneoff: Option<String>,
    /// Sampling temperature override.
    pub temperature: Option<f64>,
    /// Reasoning effort override (`low`, `medium`, `high`, ... or `none`).
    pub reasoning_effort: Option<String>,
    /// Thinking budget in tokens (Anthropic `budget_tokens`, Gemini `thinkingBudget`).
    pub thinking_budget: Option<u64>,
    /// Reasoning disabled (`!/no-think`).
    pub thinking_disabled: bool,
    /// The reasoning preset last applied (`max`, `medium`, `low`, `no-think`, or a named mode).
    pub reasoning_mode: Option<String>,
    /// Nucleus sampling override (set by a reasoning mode from `reasoning_aliases`).
    pub top_p: Option<f64>,
    /// Text put before the user's latest message (set by a reasoning mode).
    pub prompt_prefix: Option<String>,
    /// Text put after the user's latest message (set by a reasoning mode).
    pub prompt_suffix: Option<String>,
    /// Gemini `generationConfig` fields merged into Gemini requests (a JSON object).
    pub gemini_generation_config: Option<Value>,
    /// Project name.
    pub project: Option<String>,
    /// Project directory (an existing absolute path).
    pub project_dir: Option<String>,
    /// Command prefix override for this session.
    pub command_prefix: Option<String>,
    /// Interactive mode (answers and banners from the proxy) override.
    pub interactive_mode: Option<bool>,
    /// Redaction of provider keys in prompts, overriding `auth.redact_api_keys_in_prompts`.
    pub redact_api_keys: Option<bool>,
    /// Loop detection override.
    pub loop_detection: Option<bool>,
    /// Tool names (with `*` / `?`) this session allowed (`!/allow-tools(…)`).
    pub allowed_tools: Vec<String>,
    /// Tool names (with `*` / `?`) this session blocked (`!/block-tools(…)`).
    pub blocked_tools: Vec<String>,
    /// The tool-progress loop guard's counters across this session's requests.
    pub tool_loop: ToolLoopState,
    /// Session-scoped named failover routes.
    pub failover_routes: BTreeMap<String, FailoverRoute>,
    /// Route (the model string asked for) -> the instance that served it last, so weighted and
    /// model-only routes keep the session there (`routing.session_affinity`); at most
    /// [`MAX_AFFINITY_ROUTES`] routes.
    pub affinity: BTreeMap<String, String>,
    /// In-chat commands this session has run.
    pub commands_run: u64,
}

/// Most routes a session remembers an instance for.
pub const MAX_AFFINITY_ROUTES: usize = 16;

impl SessionState {
    /// Remembers that `instance` served `route`. A route is kept only when short enough to be
    /// a model name or a selector of a few legs; past [`MAX_AFFINITY_ROUTES`] routes another
    /// one is forgotten.
    pub fn remember_instance(&mut self, route: &str, instance: &str) {
        if route.len() > MAX_AFFINITY_ROUTE_BYTES {
            return;
        }
        if !self.affinity.contains_key(route)
            && self.affinity.len() >= MAX_AFFINITY_ROUTES
            && let Some(other) = self.affinity.keys().next().cloned()
        {
            self.affinity.remove(&other);
        }
        self.affinity.insert(route.to_owned(), instance.to_owned());
    }
}

/// The longest route remembered for affinity.
const MAX_AFFINITY_ROUTE_BYTES: usize = 512;

/// What the loop guard armed for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopVerdict {
    /// Swallow a repeated call with a steering message.
    Steer,
    /// Fail a repeated call with an error.
    Error,
}

/// The tool-progress loop guard's memory: the last tool exchange the session sent back (the
/// calls and their results, as hashes) and how often it came back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolLoopState {
    /// Hash of the last exchange's calls (names and arguments).
    pub calls: u64,
    /// Hash of the last exchange's results.
    pub results: u64,
    /// Id of the last call counted (a resent request is not counted twice).
    pub last_call_id: String,
    /// Identical calls with identical results in a row.
    pub repeated_calls: u32,
    /// Identical results in a row (whatever the calls).
    pub repeated_outputs: u32,
    /// The session was already steered away from this loop.
    pub steered: bool,
    /// What the guard does to this request's repeated calls (set by the stage).
    pub armed: Option<LoopVerdict>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_is_bounded_and_skips_long_routes() {
        let mut s = SessionState::default();
        for i in 0..MAX_AFFINITY_ROUTES + 5 {
            s.remember_instance(&format!("route-{i}"), "openai.a");
        }
        assert_eq!(s.affinity.len(), MAX_AFFINITY_ROUTES);
        s.remember_instance("route-last", "openai.b");
        assert_eq!(s.affinity["route-last"], "openai.b");
        assert_eq!(s.affinity.len(), MAX_AFFINITY_ROUTES);
        s.remember_instance(&"x".repeat(MAX_AFFINITY_ROUTE_BYTES + 1), "openai.a");
        assert!(
            s.affinity
                .keys()
                .all(|k| k.len() <= MAX_AFFINITY_ROUTE_BYTES)
        );
        // Old states without the field still load.
        let old: SessionState = serde_json::from_str(r#"{"requests": 3}"#).unwrap();
        assert!(old.affinity.is_empty());
    }
}
