//! The Anthropic frontend beyond the matrix: count_tokens, the model list, the dedicated
//! listener, header pass-through, ping keep-alives, errors and lossy-conversion reports.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_server::{AppState, anthropic_app};
use llm_proxy_test_support::{MockUpstream, Reply, SseScript, anthropic, gemini, openai};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{Proxy, client, proxy_for, serve_router, start_proxy};
use crate::dialect::sse_events;

fn message_body(stream: bool) -> Value {
    json!({"model": "gpt-4o", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": "hello"}]})
}

/// The dedicated Anthropic listener's router on 127.0.0.1:0.
async fn start_anthropic_listener(yaml: &str) -> Proxy {
    let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).expect("config");
    let state = AppState::build(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
    )
    .expect("state");
    serve_router(anthropic_app(state.clone()), &state).await
}

async fn error_body(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic envelope: {body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn count_tokens_estimates_without_calling_the_upstream() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_for(&up.base_url(), "").await;
    let system = "Be brief and precise.";
    let messages = json!([{"role": "user", "content": "How many tokens is this?"}]);
    let tools = json!([{"name": "f", "description": "d", "input_schema": {"type": "object"}}]);
    let body = json!({"model": "claude-x", "system": system, "messages": messages, "tools": tools});
    // What the model reads: the system text, the message text, the tool's name, description
    // and schema, at four bytes per token (Claude's tokenizer is not public), plus four tokens
    // for each of the two messages.
    let chars = system.len()
        + "How many tokens is this?".len()
        + "fd".len()
        + json!({"type": "object"}).to_string().len();
    for path in [
        "/v1/messages/count_tokens",
        "/anthropic/v1/messages/count_tokens",
    ] {
        let resp = client()
            .post(format!("{}{path}", proxy.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v, json!({"input_tokens": chars.div_ceil(4) + 8}));
    }
    assert_eq!(up.calls(), 0);
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens", proxy.url))
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    let v = error_body(resp, 400).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn models_are_listed_in_anthropic_shape() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(json!({"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "owned_by": "openai"},
        {"id": "gpt-4o-mini", "object": "model", "owned_by": "openai"}
    ]})));
    let proxy = proxy_for(&up.base_url(), "").await;
    let v: Value = client()
        .get(format!("{}/anthropic/v1/models", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"data": [
            {"type": "model", "id": "openai:gpt-4o", "display_name": "openai:gpt-4o", "created_at": "1970-01-01T00:00:00Z"},
            {"type": "model", "id": "openai:gpt-4o-mini", "display_name": "openai:gpt-4o-mini", "created_at": "1970-01-01T00:00:00Z"}
        ], "has_more": false, "first_id": "openai:gpt-4o", "last_id": "openai:gpt-4o-mini"})
    );
    let health: Value = client()
        .get(format!("{}/anthropic/v1/health", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "service": "anthropic-proxy"})
    );
}

#[tokio::test]
async fn the_dedicated_listener_serves_root_paths_in_anthropic_shape_only() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("Hi there")));
    let proxy = start_anthropic_listener(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    models: [gpt-4o]\nauth:\n  api_keys: [client-key-0123456789]\n",
        up.base_url()
    ))
    .await;
    let key = ("x-api-key", "client-key-0123456789");
    let v: Value = client()
        .post(format!("{}/v1/messages", proxy.url))
        .header(key.0, key.1)
        .json(&message_body(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"], json!([{"type": "text", "text": "Hi there"}]));
    let models: Value = client()
        .get(format!("{}/v1/models", proxy.url))
        .header(key.0, key.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(models["data"][0]["id"], "openai:gpt-4o");
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens", proxy.url))
        .header(key.0, key.1)
        .json(&message_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let unauthorized = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap();
    let v = error_body(unauthorized, 401).await;
    assert_eq!(v["error"]["type"], "authentication_error");
    let other = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .header(key.0, key.1)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let v = error_body(other, 404).await;
    assert_eq!(v["error"]["type"], "not_found_error");
    let health = client()
        .get(format!("{}/health", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn version_and_beta_headers_reach_an_anthropic_upstream_but_client_keys_do_not() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(anthropic::text_stream(&["Hi"])));
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {}/v1\n    api_key: sk-ant-upstream-0123456789\nauth:\n  api_keys: [client-key-0123456789]\n",
        up.base_url()
    ))
    .await;
    let resp = client()
        .post(format!("{}/v1/messages?beta=true", proxy.url))
        .header("x-api-key", "client-key-0123456789")
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "fine-grained-tool-streaming-2025-05-14")
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("message_stop"));
    let sent = &up.requests()[0];
    assert_eq!(sent.headers["x-api-key"], "sk-ant-upstream-0123456789");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        sent.headers["anthropic-beta"],
        "fine-grained-tool-streaming-2025-05-14"
    );
    assert_eq!(sent.body["model"], "gpt-4o");
}

#[tokio::test]
async fn keepalives_are_ping_events() {
    let up = MockUpstream::start().await.unwrap();
    let release = Arc::new(Notify::new());
    up.push(Reply::Sse(SseScript {
        frames: openai::text_stream(&["late"]),
        hold_before_first: Some(release.clone()),
        ..SseScript::default()
    }));
    let proxy = proxy_for(
        &up.base_url(),
        "failure_handling:\n  keepalive_interval: 0.05\n",
    )
    .await;
    let resp = client()
        .post(format!("{}/v1/messages", proxy.url))
        .json(&message_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: ping") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !text.contains("message_start"),
        "nothing but pings before the upstream spoke"
    );
    release.notify_one();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let events = sse_events(&text);
    assert!(events.iter().all(|(name, _)| !name.is_empty()));
    assert!(
        !text.contains(": keep-alive"),
        "no SSE comments for Anthropic clients"
    );
    let text_out: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text_out, "late");
}

#[tokio::test]
async fn invalid_bodies_get_anthropic_errors() {
    let proxy = start_proxy("").await;
    let post = |body: &'static str| {
        client()
            .post(format!("{}/v1/messages", proxy.url))
            .body(body)
            .send()
    };
    let v = error_body(post("{\"model\": ").await.unwrap(), 400).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let v = error_body(post("{\"model\": \"m\"}").await.unwrap(), 400).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("messages"),
        "{v}"
    );
    let v = error_body(
        client()
            .get(format!("{}/anthropic/v1/nothing", proxy.url))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_eq!(v["error"]["type"], "not_found_error");
}

/// Reasoning signed by Anthropic cannot go to Gemini: the request still succeeds and the
/// response says what was dropped.
#[tokio::test]
async fn dropped_reasoning_is_reported_in_the_lossy_header() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(gemini::text_response("ok")));
    up.push(Reply::sse(gemini::text_stream(&["o", "k"])));
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: gemini\n  gemini:\n    api_url: {}\n    api_key: AIza-upstream-0123456789\n",
        up.base_url()
    ))
    .await;
    let body = json!({"model": "gemini-2.5-pro", "max_tokens": 100, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hm", "signature": "EqQBCkYIBxgCKkA"},
            {"type": "text", "text": "a"}
        ]},
        {"role": "user", "content": "again"}
    ]});
    for stream in [false, true] {
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let resp = client()
            .post(format!("{}/v1/messages", proxy.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let lossy = resp
            .headers()
            .get("x-llm-proxy-lossy")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            lossy
                .as_deref()
                .is_some_and(|l| l.contains("signed reasoning dropped")),
            "{lossy:?}"
        );
    }
    let sent = &up.requests()[0].body;
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [{"text": "a"}]}),
        "the text stays, the foreign reasoning goes"
    );
}
