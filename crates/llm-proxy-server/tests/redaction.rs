//! Prompt key redaction end to end: a provider key pasted into a prompt never reaches the
//! upstream, whichever client protocol carried it.

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::json;

use crate::common::{client, start_proxy};

const KEY: &str = "sk-test-secret-0123456789";
const OTHER_KEY: &str = "sk-numbered-instance-key-abcdef";
const REDACTED: &str = "(API_KEY_HAS_BEEN_REDACTED)";

async fn setup(extra: &str) -> (MockUpstream, crate::common::Proxy) {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("ok")));
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {url}/v1\n    api_key: {KEY}\n  openai.2:\n    api_url: {url}/v1\n    api_key: {OTHER_KEY}\n{extra}",
        url = up.base_url()
    ))
    .await;
    (up, proxy)
}

fn sent_body(up: &MockUpstream) -> String {
    let requests = up.requests();
    assert_eq!(requests.len(), 1, "one upstream call");
    requests[0].body.to_string()
}

#[tokio::test]
async fn openai_chat_prompt_keys_are_redacted_everywhere() {
    let (up, proxy) = setup("").await;
    let body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": format!("deploy with {KEY}")},
            {"role": "user", "content": [{"type": "text", "text": format!("my keys: {KEY} and {OTHER_KEY}")}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "set_env", "arguments": format!("{{\"value\":\"{KEY}\"}}")}}]},
            {"role": "tool", "tool_call_id": "c1", "content": format!("OPENAI_API_KEY={OTHER_KEY}")},
        ]
    });
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = sent_body(&up);
    assert!(!sent.contains(KEY), "{sent}");
    assert!(!sent.contains(OTHER_KEY), "{sent}");
    assert_eq!(sent.matches(REDACTED).count(), 5, "{sent}");
}

#[tokio::test]
async fn anthropic_prompt_keys_are_redacted() {
    let (up, proxy) = setup("").await;
    let body = json!({
        "model": "gpt-4o",
        "max_tokens": 16,
        "system": format!("system knows {KEY}"),
        "messages": [{"role": "user", "content": [{"type": "text", "text": format!("here: {OTHER_KEY}")}]}]
    });
    let resp = client()
        .post(format!("{}/v1/messages", proxy.url))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = sent_body(&up);
    assert!(!sent.contains(KEY) && !sent.contains(OTHER_KEY), "{sent}");
    assert_eq!(sent.matches(REDACTED).count(), 2, "{sent}");
}

#[tokio::test]
async fn gemini_prompt_keys_are_redacted() {
    let (up, proxy) = setup("").await;
    let body = json!({
        "systemInstruction": {"parts": [{"text": format!("use {KEY}")}]},
        "contents": [{"role": "user", "parts": [{"text": format!("and {OTHER_KEY}")}]}]
    });
    let resp = client()
        .post(format!(
            "{}/v1beta/models/gpt-4o:generateContent",
            proxy.url
        ))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = sent_body(&up);
    assert!(!sent.contains(KEY) && !sent.contains(OTHER_KEY), "{sent}");
    assert_eq!(sent.matches(REDACTED).count(), 2, "{sent}");
}

#[tokio::test]
async fn disabled_redaction_forwards_the_prompt_untouched() {
    let (up, proxy) = setup("auth:\n  redact_api_keys_in_prompts: false\n").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("k={KEY}")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = sent_body(&up);
    assert!(sent.contains(KEY), "{sent}");
    assert!(!sent.contains(REDACTED), "{sent}");
}

/// `!/set(redact-api-keys-in-prompts=…)` overrides the configured default for that session
/// only, both ways.
#[tokio::test]
async fn a_session_can_turn_redaction_off_and_on() {
    async fn send(proxy: &crate::common::Proxy, session: &str, text: &str) {
        let resp = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .header("x-session-id", session)
            .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let last_sent = |up: &MockUpstream| up.requests().last().unwrap().body.to_string();

    let (up, proxy) = setup("").await;
    send(&proxy, "off", "!/set(redact-api-keys-in-prompts=off)").await;
    assert_eq!(up.calls(), 0, "the command is answered locally");
    send(&proxy, "off", &format!("key {KEY}")).await;
    assert!(last_sent(&up).contains(KEY), "this session turned it off");
    send(&proxy, "other", &format!("key {KEY}")).await;
    assert!(
        !last_sent(&up).contains(KEY),
        "other sessions keep the default"
    );

    let (up, proxy) = setup("auth:\n  redact_api_keys_in_prompts: false\n").await;
    send(&proxy, "on", &format!("key {KEY}")).await;
    assert!(last_sent(&up).contains(KEY), "off by configuration");
    send(&proxy, "on", "!/set(redact-api-keys-in-prompts=on)").await;
    send(&proxy, "on", &format!("key {KEY}")).await;
    assert!(!last_sent(&up).contains(KEY), "this session turned it on");
}
