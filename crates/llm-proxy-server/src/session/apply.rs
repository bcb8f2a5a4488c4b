//! Applying a session's state to a request: its parameter overrides (temperature, reasoning,
//! Gemini generation config) and the route it asks for, which wins over the model the client
//! requested.

use llm_proxy_api::model::{ChatRequest, Part, ReasoningConfig, Role};
use llm_proxy_protocol::gemini;
use serde_json::{Map, Value};

use super::state::SessionState;

/// The "session parameters" transform: every parameter the session set replaces the
/// client's. Reasoning: `thinking_disabled` turns it off; otherwise a session effort and/or
/// budget replace the client's whole reasoning request (a lone effort drops the client's
/// budget and the reverse, so each upstream derives the other from the session's choice).
/// The Gemini generation config reaches Gemini upstreams only, as a body patch (other
/// upstreams note it in `x-llm-proxy-lossy`).
pub fn apply_to_request(state: &SessionState, req: &mut ChatRequest) {
    if let Some(t) = state.temperature {
        req.sampling.temperature = Some(t);
    }
    if let Some(p) = state.top_p {
        req.sampling.top_p = Some(p);
    }
    if state.prompt_prefix.is_some() || state.prompt_suffix.is_some() {
        wrap_latest_user_text(
            req,
            state.prompt_prefix.as_deref(),
            state.prompt_suffix.as_deref(),
        );
    }
    if state.thinking_disabled {
        req.reasoning = Some(ReasoningConfig {
            disabled: true,
            ..ReasoningConfig::default()
        });
    } else if state.reasoning_effort.is_some() || state.thinking_budget.is_some() {
        let r = req.reasoning.get_or_insert_with(ReasoningConfig::default);
        let effort = state.reasoning_effort.as_deref().map(canonical_effort);
        r.disabled = effort == Some("none");
        r.effort = effort.map(str::to_owned);
        r.budget_tokens = state.thinking_budget;
        r.adaptive = false;
    }
    if let Some(Value::Object(config)) = &state.gemini_generation_config {
        req.body_patches
            .entry(gemini::PROTOCOL.to_owned())
            .or_default()
            .insert(
                "generationConfig".to_owned(),
                Value::Object(gemini_field_names(config)),
            );
    }
}

/// A reasoning mode's prompt prefix and suffix around the text of the latest user message
/// (before its first text part, after its last); a message without text is left alone.
fn wrap_latest_user_text(req: &mut ChatRequest, prefix: Option<&str>, suffix: Option<&str>) {
    let Some(message) = req.messages.iter_mut().rev().find(|m| m.role == Role::User) else {
        return;
    };
    let texts = || {
        message
            .content
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Part::Text(_)))
            .map(|(i, _)| i)
    };
    let (Some(first), Some(last)) = (texts().next(), texts().next_back()) else {
        return;
    };
    if let (Some(prefix), Part::Text(t)) = (prefix, &mut message.content[first]) {
        t.text.insert_str(0, prefix);
    }
    if let (Some(suffix), Part::Text(t)) = (suffix, &mut message.content[last]) {
        t.text.push_str(suffix);
    }
}

/// The canonical effort for what a session may hold (`maximum` is upstream's spelling of
/// the highest level every provider accepts).
fn canonical_effort(effort: &str) -> &str {
    match effort {
        "maximum" | "max" => "high",
        other => other,
    }
}

/// Gemini's own (camelCase) names for a generation config written with snake_case keys,
/// at the two levels that have field names (`thinking_config.thinking_budget`); nested
/// values such as a response schema keep their keys.
fn gemini_field_names(config: &Map<String, Value>) -> Map<String, Value> {
    config
        .iter()
        .map(|(k, v)| {
            let key = camel_case(k);
            let value = match v {
                Value::Object(inner) if key == "thinkingConfig" => Value::Object(
                    inner
                        .iter()
                        .map(|(k, v)| (camel_case(k), v.clone()))
                        .collect(),
                ),
                other => other.clone(),
            };
            (key, value)
        })
        .collect()
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The selector to route this request with, when the session overrides the client's
/// choice: a one-off route first (consumed: cleared from `state`, so the caller saves it),
/// then the model override (a model, `backend:model` or any selector; with a backend
/// override, a bare model goes to that backend), then a backend override alone (the
/// requested model on that backend). A name of one of the session's failover routes becomes
/// its elements as a failover selector (`a|b|c`). `None`: route as the client asked.
pub fn route_for(state: &mut SessionState, requested_model: &str) -> Option<String> {
    if let Some(oneoff) = state.oneoff.take().filter(|s| !s.trim().is_empty()) {
        return Some(expand_route(state, oneoff.trim()));
    }
    let backend = state
        .backend
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty());
    if let Some(model) = state
        .model
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        if state.failover_routes.contains_key(model) {
            return Some(expand_route(state, model));
        }
        return Some(match backend {
            Some(b) if !model.contains(':') => format!("{b}:{model}"),
            _ => model.to_owned(),
        });
    }
    backend.map(|b| format!("{b}:{requested_model}"))
}

/// A session failover route's elements joined as a failover selector, or `name` itself.
fn expand_route(state: &SessionState, name: &str) -> String {
    match state.failover_routes.get(name) {
        Some(route) if !route.elements.is_empty() => route.elements.join("|"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reasoning_modes_top_p_and_prompt_wrapping_apply_to_the_latest_user_text() {
        let mut req = request();
        req.messages = vec![
            Message::text(Role::User, "first"),
            Message::text(Role::Assistant, "answer"),
            Message::text(Role::User, "second"),
        ];
        let state = SessionState {
            top_p: Some(0.9),
            prompt_prefix: Some("Think hard. ".into()),
            prompt_suffix: Some(" (be brief)".into()),
            ..SessionState::default()
        };
        apply_to_request(&state, &mut req);
        assert_eq!(req.sampling.top_p, Some(0.9));
        let text = |m: &Message| match &m.content[0] {
            Part::Text(t) => t.text.clone(),
            _ => String::new(),
        };
        assert_eq!(text(&req.messages[0]), "first");
        assert_eq!(text(&req.messages[2]), "Think hard. second (be brief)");
    }
    use crate::session::state::FailoverRoute;
    use llm_proxy_api::model::{Message, Role, Sampling};
    use llm_proxy_protocol::{anthropic, openai_chat};
    use serde_json::json;

    fn request() -> ChatRequest {
        ChatRequest {
            model: "client-model".into(),
            messages: vec![Message::text(Role::User, "hi")],
            sampling: Sampling {
                temperature: Some(0.9),
                ..Sampling::default()
            },
            reasoning: Some(ReasoningConfig {
                effort: Some("low".into()),
                budget_tokens: Some(1000),
                include_thoughts: Some(true),
                disabled: false,
                adaptive: true,
            }),
            ..ChatRequest::default()
        }
    }

    fn applied(state: SessionState) -> ChatRequest {
        let mut req = request();
        apply_to_request(&state, &mut req);
        req
    }

    #[test]
    fn an_empty_session_changes_nothing() {
        assert_eq!(applied(SessionState::default()), request());
    }

    #[test]
    fn temperature_replaces_the_clients() {
        let req = applied(SessionState {
            temperature: Some(0.2),
            ..SessionState::default()
        });
        assert_eq!(req.sampling.temperature, Some(0.2));
        let mut without = ChatRequest::default();
        apply_to_request(
            &SessionState {
                temperature: Some(0.3),
                ..SessionState::default()
            },
            &mut without,
        );
        assert_eq!(without.sampling.temperature, Some(0.3));
    }

    #[test]
    fn reasoning_effort_replaces_the_clients_reasoning() {
        let req = applied(SessionState {
            reasoning_effort: Some("high".into()),
            ..SessionState::default()
        });
        let r = req.reasoning.unwrap();
        assert_eq!(r.effort.as_deref(), Some("high"));
        assert_eq!(
            r.budget_tokens, None,
            "the client's budget would contradict it"
        );
        assert_eq!(r.include_thoughts, Some(true), "kept");
        assert!(
            !r.adaptive,
            "the session's effort replaces the model's own choice"
        );
        let req = applied(SessionState {
            reasoning_effort: Some("maximum".into()),
            ..SessionState::default()
        });
        assert_eq!(req.reasoning.unwrap().effort.as_deref(), Some("high"));
        let req = applied(SessionState {
            reasoning_effort: Some("none".into()),
            ..SessionState::default()
        });
        assert!(req.reasoning.unwrap().disabled);
    }

    #[test]
    fn thinking_budget_replaces_the_clients_reasoning() {
        let req = applied(SessionState {
            thinking_budget: Some(4096),
            ..SessionState::default()
        });
        let r = req.reasoning.unwrap();
        assert_eq!(r.budget_tokens, Some(4096));
        assert_eq!(r.effort, None);
        let mut none = ChatRequest::default();
        apply_to_request(
            &SessionState {
                thinking_budget: Some(2048),
                reasoning_effort: Some("medium".into()),
                ..SessionState::default()
            },
            &mut none,
        );
        let r = none.reasoning.unwrap();
        assert_eq!(
            (r.budget_tokens, r.effort.as_deref()),
            (Some(2048), Some("medium"))
        );
        assert!(!r.disabled);
    }

    #[test]
    fn thinking_disabled_wins_over_effort_and_budget() {
        let req = applied(SessionState {
            thinking_disabled: true,
            reasoning_effort: Some("high".into()),
            thinking_budget: Some(4096),
            ..SessionState::default()
        });
        assert_eq!(
            req.reasoning,
            Some(ReasoningConfig {
                disabled: true,
                ..ReasoningConfig::default()
            })
        );
        let mut out = Vec::new();
        let body = anthropic::request_from_model(&req, "claude", &mut out);
        assert_eq!(
            serde_json::to_value(body).unwrap()["thinking"]["type"],
            "disabled"
        );
    }

    #[test]
    fn the_gemini_generation_config_reaches_gemini_upstreams_only() {
        let req = applied(SessionState {
            gemini_generation_config: Some(json!({
                "top_k": 7,
                "thinking_config": {"thinking_budget": 0, "include_thoughts": false},
                "response_schema": {"properties": {"snake_name": {"type": "string"}}},
            })),
            ..SessionState::default()
        });
        let mut lossy = Vec::new();
        let body = serde_json::to_value(gemini::request_from_model(&req, &mut lossy)).unwrap();
        assert!(lossy.is_empty(), "{lossy:?}");
        let gc = &body["generationConfig"];
        assert_eq!(gc["topK"], 7);
        assert_eq!(gc["thinkingConfig"]["thinkingBudget"], 0);
        assert_eq!(gc["thinkingConfig"]["includeThoughts"], false);
        assert!(
            gc["responseSchema"]["properties"]["snake_name"].is_object(),
            "nested names are data, not fields: {gc}"
        );
        assert_eq!(
            gc["temperature"], 0.9,
            "the rest of the request still applies"
        );

        let mut lossy = Vec::new();
        let body = anthropic::request_from_model(&req, "claude", &mut lossy);
        let body = serde_json::to_value(body).unwrap();
        assert!(body.get("generationConfig").is_none());
        assert!(
            lossy
                .iter()
                .any(|l| l.contains("gemini settings not sent") && l.contains("generationConfig")),
            "{lossy:?}"
        );
        let chat = serde_json::to_value(openai_chat::request_from_model(
            &req,
            "m",
            Default::default(),
        ))
        .unwrap();
        assert!(chat.get("generationConfig").is_none());
        assert!(
            req.foreign_content_note(openai_chat::PROTOCOL)
                .is_some_and(|n| n.contains("generationConfig"))
        );
    }

    #[test]
    fn a_oneoff_route_is_used_once() {
        let mut state = SessionState {
            oneoff: Some("openai:gpt-4o".into()),
            model: Some("anthropic:claude".into()),
            ..SessionState::default()
        };
        assert_eq!(route_for(&mut state, "m").as_deref(), Some("openai:gpt-4o"));
        assert_eq!(state.oneoff, None, "consumed");
        assert_eq!(
            route_for(&mut state, "m").as_deref(),
            Some("anthropic:claude"),
            "then the model override again"
        );
    }

    #[test]
    fn the_model_override_wins_over_the_requested_model() {
        let mut state = SessionState {
            model: Some("openrouter:x/y".into()),
            ..SessionState::default()
        };
        assert_eq!(
            route_for(&mut state, "gpt-4o").as_deref(),
            Some("openrouter:x/y")
        );
        state.model = Some("a:m|b:n".into());
        assert_eq!(route_for(&mut state, "gpt-4o").as_deref(), Some("a:m|b:n"));
        state.model = Some("gpt-4o-mini".into());
        assert_eq!(
            route_for(&mut state, "gpt-4o").as_deref(),
            Some("gpt-4o-mini")
        );
        state.backend = Some("openai.work".into());
        assert_eq!(
            route_for(&mut state, "gpt-4o").as_deref(),
            Some("openai.work:gpt-4o-mini"),
            "a bare model goes to the backend override"
        );
        state.model = Some("anthropic:claude".into());
        assert_eq!(
            route_for(&mut state, "gpt-4o").as_deref(),
            Some("anthropic:claude")
        );
    }

    #[test]
    fn a_backend_override_alone_keeps_the_requested_model() {
        let mut state = SessionState {
            backend: Some("openrouter".into()),
            ..SessionState::default()
        };
        assert_eq!(
            route_for(&mut state, "gpt-4o").as_deref(),
            Some("openrouter:gpt-4o")
        );
        assert_eq!(route_for(&mut SessionState::default(), "gpt-4o"), None);
        let mut blank = SessionState {
            model: Some(" ".into()),
            backend: Some(String::new()),
            oneoff: Some(String::new()),
            ..SessionState::default()
        };
        assert_eq!(route_for(&mut blank, "gpt-4o"), None);
    }

    #[test]
    fn a_session_failover_route_becomes_a_failover_selector() {
        let mut state = SessionState {
            model: Some("fast".into()),
            failover_routes: [(
                "fast".to_owned(),
                FailoverRoute {
                    policy: "k".into(),
                    elements: vec!["openai:a".into(), "anthropic:b".into(), "gemini:c".into()],
                },
            )]
            .into(),
            ..SessionState::default()
        };
        assert_eq!(
            route_for(&mut state, "m").as_deref(),
            Some("openai:a|anthropic:b|gemini:c")
        );
        state.oneoff = Some("fast".into());
        assert_eq!(
            route_for(&mut state, "m").as_deref(),
            Some("openai:a|anthropic:b|gemini:c")
        );
        assert_eq!(state.oneoff, None);
    }
}
