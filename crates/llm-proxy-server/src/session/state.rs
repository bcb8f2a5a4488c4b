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
    /// Reasoning state of the session's last tool-calling turns, for a client that does not
    /// send it back (`translation.keep_reasoning`); oldest first, at most [`MAX_KEPT_TURNS`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_reasoning: Vec<KeptTurn>,
}

/// The provider state of one assistant turn that called tools: what an upstream needs back
/// with those calls on the next turn (Anthropic's signed or redacted thinking, a Responses
/// upstream's encrypted reasoning, Gemini's thought signatures), in canonical form as the
/// upstream produced it. Each upstream's encoder sends only its own kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeptTurn {
    /// The turn's tool call ids, in order: how the turn is found again.
    pub call_ids: Vec<String>,
    /// Provider data of each call (same order; `None` for calls without).
    pub call_data: Vec<Option<Value>>,
    /// The turn's reasoning blocks, in order.
    pub reasoning: Vec<llm_proxy_api::model::ReasoningBlock>,
}

/// Tool-calling turns a session keeps reasoning state for: enough for a tool loop and for
/// the parallel calls of one turn coming back over several requests.
pub const MAX_KEPT_TURNS: usize = 8;

/// Largest reasoning state kept for one turn (text, signatures and payloads); a bigger turn is
/// not kept (the session would otherwise carry it in every shared-store write).
pub const MAX_KEPT_TURN_BYTES: usize = 256 * 1024;

impl KeptTurn {
    /// Bytes the turn's state takes, roughly (its strings).
    pub fn size(&self) -> usize {
        let data = |v: &Option<Value>| v.as_ref().map_or(0, |v| v.to_string().len());
        self.call_ids.iter().map(String::len).sum::<usize>()
            + self.call_data.iter().map(data).sum::<usize>()
            + self
                .reasoning
                .iter()
                .map(|b| {
                    b.text.len()
                        + b.signature.as_ref().map_or(0, String::len)
                        + b.redacted.as_ref().map_or(0, String::len)
                        + data(&b.provider_data)
                })
                .sum::<usize>()
    }

    /// Provider data kept for call `id`.
    pub fn call_data(&self, id: &str) -> Option<&Value> {
        let i = self.call_ids.iter().position(|c| c == id)?;
        self.call_data.get(i)?.as_ref()
    }
}

/// Most routes a session remembers an instance for.
pub const MAX_AFFINITY_ROUTES: usize = 16;

impl SessionState {
    /// Keeps `turn` (replacing a turn with the same first call), forgetting the oldest past
    /// [`MAX_KEPT_TURNS`]; a turn over [`MAX_KEPT_TURN_BYTES`] is not kept.
    pub fn keep_reasoning(&mut self, turn: KeptTurn) {
        if turn.call_ids.is_empty() || turn.size() > MAX_KEPT_TURN_BYTES {
            return;
        }
        self.kept_reasoning
            .retain(|t| t.call_ids.first() != turn.call_ids.first());
        if self.kept_reasoning.len() >= MAX_KEPT_TURNS {
            self.kept_reasoning.remove(0);
        }
        self.kept_reasoning.push(turn);
    }

    /// The kept turn that made call `id`.
    pub fn kept_turn(&self, id: &str) -> Option<&KeptTurn> {
        self.kept_reasoning
            .iter()
            .rev()
            .find(|t| t.call_ids.iter().any(|c| c == id))
    }

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

    fn turn(first_call: &str, text: &str) -> KeptTurn {
        KeptTurn {
            call_ids: vec![first_call.to_owned(), format!("{first_call}-b")],
            call_data: vec![None, Some(serde_json::json!({"sig": "x"}))],
            reasoning: vec![llm_proxy_api::model::ReasoningBlock {
                text: text.to_owned(),
                signature: Some("sig".into()),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn kept_reasoning_is_bounded_and_found_by_any_call() {
        let mut s = SessionState::default();
        for i in 0..MAX_KEPT_TURNS + 3 {
            s.keep_reasoning(turn(&format!("call_{i}"), "thinking"));
        }
        assert_eq!(s.kept_reasoning.len(), MAX_KEPT_TURNS);
        assert!(s.kept_turn("call_0").is_none(), "the oldest went first");
        let last = format!("call_{}", MAX_KEPT_TURNS + 2);
        let found = s.kept_turn(&format!("{last}-b")).unwrap();
        assert_eq!(found.call_ids[0], last);
        assert_eq!(
            found.call_data(&format!("{last}-b")),
            Some(&serde_json::json!({"sig": "x"}))
        );
        assert_eq!(found.call_data(&last), None);
        // The same turn again replaces itself; an oversized turn is not kept.
        s.keep_reasoning(turn(&last, "again"));
        assert_eq!(s.kept_reasoning.len(), MAX_KEPT_TURNS);
        assert_eq!(s.kept_turn(&last).unwrap().reasoning[0].text, "again");
        s.keep_reasoning(turn("huge", &"x".repeat(MAX_KEPT_TURN_BYTES)));
        assert!(s.kept_turn("huge").is_none());
        // Sessions that never kept anything serialize as before.
        assert!(
            !serde_json::to_string(&SessionState::default())
                .unwrap()
                .contains("kept")
        );
    }

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
