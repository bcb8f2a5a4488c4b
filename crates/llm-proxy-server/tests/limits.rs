//! Context-window enforcement and request dedup, end to end through the OpenAI, Anthropic and
//! Gemini frontends, streamed and not: a prompt over the window is a 400
//! `context_length_exceeded` with no upstream call; a duplicate within the dedup window is a
//! 429 with no second upstream call; after a failure the same request goes through.

use std::sync::Arc;

use llm_proxy_test_support::{MockUpstream, Reply, SseScript, anthropic, openai};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{chat_body, client, proxy_for, start_proxy};

/// `gpt-4o` gets a 1000-token window.
const SMALL_WINDOW: &str = "model_defaults:\n  gpt-4o:\n    limits:\n      context_window: 1000\n";

/// About 2000 o200k tokens.
fn long_text() -> String {
    "hello ".repeat(2000)
}

async fn post(url: String, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(url)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn anthropic_body(stream: bool, text: &str) -> Value {
    json!({"model": "gpt-4o", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn a_prompt_over_the_window_is_refused_before_any_upstream_call() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("hi")));
    let proxy = proxy_for(&up.base_url(), SMALL_WINDOW).await;
    for stream in [false, true] {
        let mut body = chat_body(stream);
        body["messages"][0]["content"] = long_text().into();
        let (status, _, v) = post(format!("{}/v1/chat/completions", proxy.url), &body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], "input", "{v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("prompt is too long: ") && message.contains("> 1000 maximum"),
            "{message}"
        );
        assert!(message.contains("o200k_base"), "{message}");

        let (status, _, v) = post(
            format!("{}/v1/messages", proxy.url),
            &anthropic_body(stream, &long_text()),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        // What Claude Code looks for before it compacts the conversation.
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("prompt is too long"),
            "{v}"
        );
    }
    let (status, _, v) = post(
        format!("{}/v1beta/models/gpt-4o:generateContent", proxy.url),
        &json!({"contents": [{"role": "user", "parts": [{"text": long_text()}]}]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert_eq!(
        up.calls(),
        0,
        "no upstream call for a prompt over the window"
    );

    // Within the window, the request goes through.
    let (status, _, v) = post(
        format!("{}/v1/chat/completions", proxy.url),
        &chat_body(false),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn the_bundled_registry_knows_the_window_without_configuration() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("hi")));
    let proxy = proxy_for(&up.base_url(), "").await;
    // gpt-4o reads 128 000 tokens; this is 140 000 (one per repeated word).
    let mut body = chat_body(false);
    body["messages"][0]["content"] = "hello ".repeat(140_000).into();
    let (status, _, v) = post(format!("{}/v1/chat/completions", proxy.url), &body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("> 128000 maximum"),
        "{v}"
    );
    assert_eq!(up.calls(), 0);
    // Enforcement can be turned off; the upstream then decides.
    let proxy = proxy_for(
        &up.base_url(),
        "model_limit_enforcement:\n  enabled: false\n",
    )
    .await;
    let (status, _, _) = post(format!("{}/v1/chat/completions", proxy.url), &body).await;
    assert_eq!(status, 200);
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn a_selector_skips_legs_too_small_for_the_prompt() {
    let (a, b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    a.set_fallback(Reply::json(openai::completion("a")));
    b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: openai.a\n  openai.a:\n    api_url: {}/v1\n  openai.b:\n    api_url: {}/v1\n\
         model_defaults:\n  openai.a:m:\n    limits:\n      context_window: 1000\n  small:\n    limits:\n      max_input_tokens: 500\n",
        a.base_url(),
        b.base_url()
    ))
    .await;
    let mut body = chat_body(false);
    body["model"] = "openai.a:m|openai.b:m".into();
    body["messages"][0]["content"] = long_text().into();
    let (status, _, v) = post(format!("{}/v1/chat/completions", proxy.url), &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "b");
    assert_eq!((a.calls(), b.calls()), (0, 1));
    // No leg takes it: the client learns why, and no upstream was called.
    body["model"] = "openai.a:m|openai.b:small".into();
    let (status, _, v) = post(format!("{}/v1/chat/completions", proxy.url), &body).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    assert_eq!((a.calls(), b.calls()), (0, 1));
}

#[tokio::test]
async fn count_tokens_uses_the_same_counter() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_for(&up.base_url(), "").await;
    let count = |model: &'static str| {
        let url = format!("{}/v1/messages/count_tokens", proxy.url);
        async move {
            let body =
                json!({"model": model, "messages": [{"role": "user", "content": "hello world"}]});
            post(url, &body).await.2["input_tokens"].as_u64().unwrap()
        }
    };
    // o200k: "hello world" is two tokens, plus four for the message.
    assert_eq!(count("gpt-4o").await, 6);
    // Not public: four bytes per token ("hello world" is 11 bytes).
    assert_eq!(count("claude-sonnet-4-5").await, 3 + 4);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn a_duplicate_within_the_window_is_429_without_a_second_call() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("hi")));
    let proxy = proxy_for(&up.base_url(), "request_dedup_window: 3600\n").await;
    for stream in [false, true] {
        if stream {
            up.set_fallback(Reply::sse(openai::text_stream(&["hi"])));
        }
        let url = format!("{}/v1/chat/completions", proxy.url);
        let before = up.calls();
        let (status, _, _) = post(url.clone(), &chat_body(stream)).await;
        assert_eq!(status, 200);
        let (status, headers, v) = post(url.clone(), &chat_body(stream)).await;
        assert_eq!(status, 429, "{v}");
        assert_eq!(v["error"]["code"], "duplicate_request", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("identical request"),
            "{v}"
        );
        assert!(headers.contains_key("retry-after"));
        assert_eq!(up.calls(), before + 1, "no second upstream call");
        // Another request is not affected.
        let mut other = chat_body(stream);
        other["messages"][0]["content"] = "something else".into();
        assert_eq!(post(url, &other).await.0, 200);
        assert_eq!(up.calls(), before + 2);
    }
    // The Anthropic frontend, in its own envelope.
    up.set_fallback(Reply::json(openai::completion("hi")));
    let url = format!("{}/v1/messages", proxy.url);
    assert_eq!(
        post(url.clone(), &anthropic_body(false, "hey")).await.0,
        200
    );
    let (status, _, v) = post(url.clone(), &anthropic_body(false, "hey")).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    up.set_fallback(Reply::sse(openai::text_stream(&["hi"])));
    assert_eq!(post(url.clone(), &anthropic_body(true, "hey")).await.0, 200);
    let (status, _, v) = post(url, &anthropic_body(true, "hey")).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(up.calls(), 6);
}

#[tokio::test]
async fn a_duplicate_of_a_request_in_flight_is_429() {
    let up = MockUpstream::start().await.unwrap();
    let hold = Arc::new(Notify::new());
    up.push(Reply::Sse(SseScript {
        frames: openai::text_stream(&["first"]),
        hold_before_first: Some(hold.clone()),
        ..SseScript::default()
    }));
    let proxy = proxy_for(
        &up.base_url(),
        "request_dedup_window: 3600\nfailure_handling:\n  keepalive_interval: 0.05\n",
    )
    .await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    // The first call's headers go out with a keep-alive while the upstream holds its answer.
    let first = client()
        .post(&url)
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(up.calls(), 1);
    let (status, _, v) = post(url, &chat_body(true)).await;
    assert_eq!(status, 429, "{v}");
    hold.notify_one();
    assert!(first.text().await.unwrap().contains("first"));
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn after_a_failure_the_same_request_goes_through() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_for(&up.base_url(), "request_dedup_window: 3600\n").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    for stream in [false, true] {
        let before = up.calls();
        // A client error and a server error: neither is cached.
        up.push(Reply::error(
            400,
            openai::error("bad request", "invalid_request_error", None),
        ));
        assert_eq!(post(url.clone(), &chat_body(stream)).await.0, 400);
        up.push(Reply::error(
            503,
            openai::error("overloaded", "server_error", None),
        ));
        assert_eq!(post(url.clone(), &chat_body(stream)).await.0, 502);
        up.push(if stream {
            Reply::sse(openai::text_stream(&["ok"]))
        } else {
            Reply::json(openai::completion("ok"))
        });
        assert_eq!(post(url.clone(), &chat_body(stream)).await.0, 200);
        assert_eq!(up.calls(), before + 3);
        // ... and once it succeeded, its repeat is refused.
        assert_eq!(post(url.clone(), &chat_body(stream)).await.0, 429);
        assert_eq!(up.calls(), before + 3);
    }
    // The Anthropic frontend too.
    let url = format!("{}/v1/messages", proxy.url);
    up.push(Reply::error(
        529,
        anthropic::error("overloaded_error", "busy"),
    ));
    assert_ne!(post(url.clone(), &anthropic_body(false, "x")).await.0, 200);
    up.push(Reply::json(openai::completion("ok")));
    assert_eq!(post(url, &anthropic_body(false, "x")).await.0, 200);
}

#[tokio::test]
async fn commands_answered_locally_are_never_deduplicated() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_for(&up.base_url(), "request_dedup_window: 3600\n").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    let mut body = chat_body(false);
    body["messages"][0]["content"] = "!/help".into();
    for _ in 0..3 {
        let (status, _, v) = post(url.clone(), &body).await;
        assert_eq!(status, 200, "{v}");
    }
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn a_zero_window_turns_dedup_off() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("hi")));
    let proxy = proxy_for(&up.base_url(), "request_dedup_window: 0\n").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    for _ in 0..3 {
        assert_eq!(post(url.clone(), &chat_body(false)).await.0, 200);
    }
    assert_eq!(up.calls(), 3);
}
