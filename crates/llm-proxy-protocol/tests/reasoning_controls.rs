//! Reasoning controls in every direction: each client protocol's control (OpenAI Chat
//! `reasoning_effort` / `reasoning`, Responses `reasoning`, Anthropic `thinking` +
//! `output_config.effort`, Gemini `thinkingConfig`) becomes each upstream's own field, compared
//! as JSON values (the table in docs/translation.md).

#![cfg(test)]

use llm_proxy_api::model::ChatRequest;
use llm_proxy_protocol::{anthropic, gemini, openai_chat, openai_responses, parse_body};
use serde_json::{Value, json};

use crate::XorSealer;

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn from_chat(extra: Value) -> ChatRequest {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    openai_chat::request_to_model(parse_body(&bytes(&body)).unwrap()).unwrap()
}

fn from_responses(extra: Value) -> ChatRequest {
    let mut body = json!({"model": "m", "input": "hi"});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    openai_responses::request_to_model(parse_body(&bytes(&body)).unwrap(), &XorSealer)
        .unwrap()
        .request
}

fn from_anthropic(extra: Value) -> ChatRequest {
    let mut body = json!({"model": "m", "max_tokens": 32000,
        "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    anthropic::request_to_model(
        parse_body(&bytes(&body)).unwrap(),
        &XorSealer,
        &mut Vec::new(),
    )
    .unwrap()
}

fn from_gemini(thinking_config: Value) -> ChatRequest {
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"thinkingConfig": thinking_config}});
    gemini::request_to_model(
        parse_body(&bytes(&body)).unwrap(),
        "gemini-2.5-pro",
        &XorSealer,
        &mut Vec::new(),
    )
    .unwrap()
}

/// The OpenAI-chat upstream body and its lossy notes.
fn to_chat(req: &ChatRequest, model: &str) -> (Value, Vec<String>) {
    let body = openai_chat::request_body_from_model(
        req,
        model,
        openai_chat::from_model::EncodeOptions::default(),
    );
    (
        serde_json::from_slice(&body).unwrap(),
        openai_chat::reasoning_notes(req, model),
    )
}

fn to_responses(req: &ChatRequest, model: &str) -> (Value, Vec<String>) {
    let encoded = openai_responses::request_from_model(req, model);
    (encoded.body, encoded.lossy)
}

fn to_anthropic(req: &ChatRequest) -> (Value, Vec<String>) {
    let mut lossy = Vec::new();
    let wire = anthropic::request_from_model(req, "claude-x", &mut lossy);
    (serde_json::to_value(&wire).unwrap(), lossy)
}

fn to_gemini(req: &ChatRequest) -> (Value, Vec<String>) {
    let mut lossy = Vec::new();
    let wire = gemini::request_from_model(req, &mut lossy);
    (serde_json::to_value(&wire).unwrap(), lossy)
}

fn thinking_config(req: &ChatRequest) -> Value {
    to_gemini(req).0["generationConfig"]["thinkingConfig"].clone()
}

fn effort(req: &ChatRequest, model: &str) -> Value {
    to_chat(req, model).0["reasoning_effort"].clone()
}

const CONTEXT_NOTE: &str = "context_management edits dropped";

#[test]
fn claude_code_adaptive_thinking_with_effort_reaches_every_upstream() {
    let edits = json!({"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]});
    let req = from_anthropic(json!({
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": edits,
    }));

    let (anthropic, lossy) = to_anthropic(&req);
    assert_eq!(anthropic["thinking"], json!({"type": "adaptive"}));
    assert_eq!(anthropic["output_config"], json!({"effort": "high"}));
    assert_eq!(anthropic["context_management"], edits);
    assert!(lossy.is_empty(), "{lossy:?}");

    let (chat, lossy) = to_chat(&req, "gpt-5");
    assert_eq!(chat["reasoning_effort"], "high");
    assert!(chat.get("output_config").is_none() && chat.get("thinking").is_none());
    assert!(lossy.iter().any(|n| n.contains(CONTEXT_NOTE)), "{lossy:?}");

    let (responses, lossy) = to_responses(&req, "gpt-5");
    assert_eq!(
        responses["reasoning"],
        json!({"effort": "high", "summary": "auto"})
    );
    assert!(lossy.iter().any(|n| n.contains(CONTEXT_NOTE)), "{lossy:?}");

    let (gemini, lossy) = to_gemini(&req);
    assert_eq!(
        gemini["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 24576, "includeThoughts": true})
    );
    assert!(lossy.iter().any(|n| n.contains(CONTEXT_NOTE)), "{lossy:?}");
}

#[test]
fn adaptive_thinking_alone_is_each_upstreams_dynamic_mode() {
    let req = from_anthropic(json!({"thinking": {"type": "adaptive"}}));
    assert_eq!(
        to_anthropic(&req).0["thinking"],
        json!({"type": "adaptive"})
    );
    // OpenAI's dynamic mode is the model's default effort.
    assert_eq!(effort(&req, "gpt-5"), Value::Null);
    assert_eq!(
        to_responses(&req, "gpt-5").0["reasoning"],
        json!({"summary": "auto"})
    );
    assert_eq!(
        thinking_config(&req),
        json!({"thinkingBudget": -1, "includeThoughts": true})
    );
}

#[test]
fn anthropic_budgets_and_disabled_thinking() {
    let req = from_anthropic(json!({"thinking": {"type": "enabled", "budget_tokens": 4096}}));
    assert_eq!(
        to_anthropic(&req).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(effort(&req, "gpt-5"), "medium");
    assert_eq!(
        to_responses(&req, "gpt-5").0["reasoning"]["effort"],
        "medium"
    );
    assert_eq!(
        thinking_config(&req),
        json!({"thinkingBudget": 4096, "includeThoughts": true})
    );

    let off = from_anthropic(json!({"thinking": {"type": "disabled"}}));
    assert_eq!(
        to_anthropic(&off).0["thinking"],
        json!({"type": "disabled"})
    );
    assert_eq!(effort(&off, "gpt-5.1"), "none");
    assert_eq!(effort(&off, "gpt-5-mini"), "minimal");
    let (o3, notes) = to_chat(&off, "o3");
    assert_eq!(o3["reasoning_effort"], "low");
    assert!(
        notes.iter().any(|n| n.contains("cannot be turned off")),
        "{notes:?}"
    );
    assert_eq!(
        to_responses(&off, "gpt-5.1").0["reasoning"]["effort"],
        "none"
    );
    assert_eq!(thinking_config(&off), json!({"thinkingBudget": 0}));
}

#[test]
fn anthropic_effort_without_thinking_stays_effort() {
    let req = from_anthropic(json!({"output_config": {"effort": "low"}}));
    let (anthropic, _) = to_anthropic(&req);
    assert!(anthropic.get("thinking").is_none(), "{anthropic}");
    assert_eq!(anthropic["output_config"], json!({"effort": "low"}));
    assert_eq!(effort(&req, "gpt-5"), "low");
    assert_eq!(thinking_config(&req)["thinkingBudget"], 1024);
}

#[test]
fn openai_chat_efforts_become_budgets() {
    let req = from_chat(json!({"reasoning_effort": "low"}));
    assert_eq!(
        to_anthropic(&req).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(
        thinking_config(&req),
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(effort(&req, "gpt-5"), "low");
    assert_eq!(
        to_responses(&req, "gpt-5").0["reasoning"],
        json!({"effort": "low"})
    );
}

#[test]
fn openai_chat_reasoning_objects_are_read_and_kept() {
    let req = from_chat(json!({"reasoning": {"effort": "high"}}));
    let (chat, _) = to_chat(&req, "gpt-5");
    assert_eq!(chat["reasoning"], json!({"effort": "high"}));
    assert!(chat.get("reasoning_effort").is_none(), "{chat}");
    assert_eq!(
        to_anthropic(&req).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 24576})
    );
    assert_eq!(thinking_config(&req)["thinkingBudget"], 24576);
    assert_eq!(
        to_responses(&req, "gpt-5").0["reasoning"],
        json!({"effort": "high"})
    );

    let budget = from_chat(json!({"reasoning": {"max_tokens": 3000}}));
    assert_eq!(
        to_anthropic(&budget).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 3000})
    );
    assert_eq!(thinking_config(&budget)["thinkingBudget"], 3000);
}

#[test]
fn responses_reasoning_reaches_every_upstream() {
    let req = from_responses(json!({"reasoning": {"effort": "minimal", "summary": "detailed"}}));
    assert_eq!(effort(&req, "gpt-5"), "minimal");
    assert_eq!(
        to_anthropic(&req).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 1024})
    );
    assert_eq!(
        thinking_config(&req),
        json!({"thinkingBudget": 512, "includeThoughts": true})
    );
}

#[test]
fn gemini_thinking_configs_reach_every_upstream() {
    let dynamic = from_gemini(json!({"thinkingBudget": -1, "includeThoughts": true}));
    assert_eq!(
        thinking_config(&dynamic),
        json!({"thinkingBudget": -1, "includeThoughts": true})
    );
    assert_eq!(effort(&dynamic, "gpt-5"), Value::Null);
    assert_eq!(
        to_anthropic(&dynamic).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 8192})
    );

    let level = from_gemini(json!({"thinkingLevel": "HIGH"}));
    assert_eq!(effort(&level, "gpt-5"), "high");
    assert_eq!(
        to_responses(&level, "gpt-5").0["reasoning"]["effort"],
        "high"
    );
    assert_eq!(
        to_anthropic(&level).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 24576})
    );

    let budget = from_gemini(json!({"thinkingBudget": 20000}));
    assert_eq!(effort(&budget, "gpt-5"), "high");
    assert_eq!(
        to_anthropic(&budget).0["thinking"],
        json!({"type": "enabled", "budget_tokens": 20000})
    );

    let off = from_gemini(json!({"thinkingBudget": 0}));
    assert_eq!(effort(&off, "gpt-5.1"), "none");
    assert_eq!(
        to_anthropic(&off).0["thinking"],
        json!({"type": "disabled"})
    );
}

#[test]
fn a_changed_effort_rewrites_the_clients_own_field() {
    // A session override changes the canonical effort after the client's conversion.
    let mut req = from_anthropic(json!({
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}));
    if let Some(r) = req.reasoning.as_mut() {
        r.effort = Some("low".into());
        r.adaptive = false;
    }
    let (anthropic, _) = to_anthropic(&req);
    assert_eq!(anthropic["output_config"], json!({"effort": "low"}));
    assert_eq!(anthropic["thinking"], json!({"type": "adaptive"}));

    let mut req = from_chat(json!({"reasoning": {"max_tokens": 3000, "exclude": true}}));
    if let Some(r) = req.reasoning.as_mut() {
        r.effort = Some("high".into());
    }
    assert_eq!(
        to_chat(&req, "gpt-5").0["reasoning"],
        json!({"effort": "high", "exclude": true})
    );
}
