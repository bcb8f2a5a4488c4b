//! In-chat commands and sessions through the real frontends: local answers in each client
//! protocol (no backend call), the session following the new setting, other sessions
//! unaffected, commands stripped from forwarded text, refusals under `static_route`.

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{client, proxy_for, sse_data, start_proxy};

async fn upstream() -> MockUpstream {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("from upstream")));
    up
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

async fn post(url: String, session: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url)
        .header("x-session-id", session)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn chat_text(v: &Value) -> String {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn set_model_answers_locally_and_the_session_follows_it() {
    let up = upstream().await;
    let proxy = proxy_for(&up.base_url(), "").await;
    let url = format!("{}/v1/chat/completions", proxy.url);

    let resp = post(
        url.clone(),
        "s1",
        &chat("!/set(model=openai:other-model)", false),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(
        chat_text(&answer).contains("other-model"),
        "the answer names the new model: {answer}"
    );
    assert_eq!(up.calls(), 0, "a command-only message calls no backend");

    let answer: Value = post(url.clone(), "s1", &chat("hello", false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(chat_text(&answer), "from upstream");
    assert_eq!(up.requests()[0].body["model"], "other-model");

    post(url.clone(), "s2", &chat("hello", false)).await;
    assert_eq!(
        up.requests()[1].body["model"],
        "gpt-4o",
        "another session keeps the model it asked for"
    );

    let resp = post(url.clone(), "s1", &chat("!/unset(model)", false)).await;
    assert_eq!(resp.status(), 200);
    post(url, "s1", &chat("hello again", false)).await;
    assert_eq!(up.requests()[2].body["model"], "gpt-4o", "unset restores");
}

#[tokio::test]
async fn text_before_a_command_is_forwarded_without_it_and_with_the_setting() {
    let up = upstream().await;
    let proxy = proxy_for(&up.base_url(), "").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    let answer: Value = post(
        url,
        "mixed",
        &chat("Summarise the file please.\n!/set(temperature=0.25)", false),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(chat_text(&answer), "from upstream");
    let sent = &up.requests()[0].body;
    assert_eq!(sent["temperature"], 0.25);
    let text = sent["messages"][0]["content"].to_string();
    assert!(text.contains("Summarise the file please."), "{text}");
    assert!(
        !text.contains("!/"),
        "the command never reaches the model: {text}"
    );
}

#[tokio::test]
async fn help_lists_every_command_and_unknown_commands_suggest_close_ones() {
    let up = upstream().await;
    let proxy = proxy_for(&up.base_url(), "").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    let help = chat_text(
        &post(url.clone(), "h", &chat("!/help", false))
            .await
            .json()
            .await
            .unwrap(),
    );
    for name in [
        "help",
        "hello",
        "set",
        "unset",
        "model",
        "backend",
        "oneoff",
        "temperature",
        "max",
        "medium",
        "low",
        "no-think",
        "mode",
        "pwd",
        "project",
        "create-failover-route",
        "route-append",
        "route-prepend",
        "route-clear",
        "route-list",
        "delete-failover-route",
        "list-failover-routes",
        "loop-detection",
    ] {
        assert!(help.contains(name), "help lists {name}: {help}");
    }
    let unknown = chat_text(
        &post(url, "h", &chat("!/sett(model=x)", false))
            .await
            .json()
            .await
            .unwrap(),
    );
    assert!(
        unknown.to_lowercase().contains("unknown command"),
        "{unknown}"
    );
    assert!(
        unknown.contains("set"),
        "a close match is suggested: {unknown}"
    );
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn local_answers_speak_every_client_protocol_streamed_or_not() {
    let up = upstream().await;
    let proxy = proxy_for(&up.base_url(), "").await;
    let cmd = "!/hello";

    // OpenAI chat, streamed.
    let text = post(
        format!("{}/v1/chat/completions", proxy.url),
        "p1",
        &chat(cmd, true),
    )
    .await
    .text()
    .await
    .unwrap();
    let (chunks, done) = sse_data(&text);
    assert!(done);
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!streamed.is_empty());

    // Anthropic, both ways.
    let body = json!({"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": cmd}]});
    let msg: Value = post(format!("{}/v1/messages", proxy.url), "p2", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["content"][0]["text"], streamed.as_str());
    let mut streaming = body.clone();
    streaming["stream"] = true.into();
    let text = post(format!("{}/v1/messages", proxy.url), "p2", &streaming)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: message_stop"), "{text}");

    // Gemini.
    let body = json!({"contents": [{"role": "user", "parts": [{"text": cmd}]}]});
    let g: Value = post(
        format!("{}/v1beta/models/gemini-x:generateContent", proxy.url),
        "p3",
        &body,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        g["candidates"][0]["content"]["parts"][0]["text"],
        streamed.as_str()
    );

    // Responses, both ways.
    let body = json!({"model": "gpt-4o", "input": cmd});
    let r: Value = post(format!("{}/v1/responses", proxy.url), "p4", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "completed");
    assert_eq!(r["output_text"], streamed.as_str());
    let mut streaming = body.clone();
    streaming["stream"] = true.into();
    let text = post(format!("{}/v1/responses", proxy.url), "p4", &streaming)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("response.completed"), "{text}");

    assert_eq!(up.calls(), 0, "no local answer reached the upstream");
}

#[tokio::test]
async fn model_changes_are_refused_under_a_static_route() {
    let up = upstream().await;
    let proxy = start_proxy(&format!(
        "backends:\n  static_route: openai:pinned\n  openai:\n    api_url: {}/v1\n    api_key: sk-test-secret-0123456789\n",
        up.base_url()
    ))
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    let resp = post(url.clone(), "st", &chat("!/set(model=openai:other)", false)).await;
    assert_eq!(
        resp.status(),
        200,
        "a refusal is an answer, not an HTTP error"
    );
    let text = chat_text(&resp.json().await.unwrap());
    assert!(text.contains("static_route"), "{text}");
    post(url, "st", &chat("hello", false)).await;
    assert_eq!(up.requests()[0].body["model"], "pinned");
}

#[tokio::test]
async fn commands_are_stripped_but_not_run_when_disabled() {
    let up = upstream().await;
    let proxy = proxy_for(
        &up.base_url(),
        "session:\n  disable_interactive_commands: true\n",
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    post(
        url.clone(),
        "d",
        &chat("hi\n!/set(model=openai:other)", false),
    )
    .await;
    let sent = &up.requests()[0].body;
    assert_eq!(sent["model"], "gpt-4o", "the command did not run");
    assert!(!sent["messages"][0]["content"].to_string().contains("!/"));
}

#[tokio::test]
async fn earlier_commands_in_the_history_never_reach_the_model() {
    let up = upstream().await;
    let proxy = proxy_for(&up.base_url(), "").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "!/set(temperature=0.5)"},
        {"role": "assistant", "content": "Settings updated."},
        {"role": "user", "content": "now the real question"}
    ]});
    post(url, "hist", &body).await;
    let sent = &up.requests()[0].body;
    let all = sent["messages"].to_string();
    assert!(!all.contains("!/"), "{all}");
    assert!(all.contains("now the real question"));
}
