//! Every error row: the right status and the OpenAI envelope, before and after the first byte.

use std::sync::Arc;
use std::time::Duration;

use llm_proxy_test_support::{MockUpstream, Reply, SseScript, openai};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{chat_body, client, proxy_for, sse_data, start_proxy};

async fn post(
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, headers, v)
}

fn assert_envelope(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].is_string(), "{v}");
    assert!(e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let proxy = start_proxy("").await;
    let (status, _, v) = post(&proxy.url, "{\"model\": ").await;
    assert_eq!(status, 400);
    assert_envelope(&v);
    assert_eq!(v["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn missing_and_mistyped_fields_name_the_param() {
    let proxy = start_proxy("").await;
    let (status, _, v) = post(&proxy.url, r#"{"messages": []}"#).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "model");
    let (status, _, v) = post(&proxy.url, r#"{"model": "m", "messages": "hi"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "messages");
    let (status, _, v) = post(
        &proxy.url,
        r#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "messages[0].content", "{v}");
    let (status, _, v) = post(
        &proxy.url,
        r#"{"model": "m", "temperature": "hot", "messages": []}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "temperature");
    let (status, _, v) = post(
        &proxy.url,
        r#"{"model": "m", "messages": [{"role": "tool", "content": "x"}]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "messages[0].tool_call_id");
    let (status, _, v) = post(&proxy.url, r#"[1, 2]"#).await;
    assert_eq!(status, 400);
    assert_envelope(&v);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let proxy = start_proxy("max_request_body_bytes: 2000\n").await;
    let big = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(5000)}]})
        .to_string();
    let (status, _, v) = post(&proxy.url, big).await;
    assert_eq!(status, 413);
    assert_envelope(&v);
    assert!(v["error"]["message"].as_str().unwrap().contains("2000"));
}

#[tokio::test]
async fn unknown_backend_and_model_list_what_is_available() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    models: [gpt-4o]\n",
        up.base_url()
    ))
    .await;
    let (status, _, v) = post(&proxy.url, r#"{"model": "nosuch:m", "messages": []}"#).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Available backends: openai"),
        "{v}"
    );
    assert_eq!(v["error"]["param"], "model");
    let (status, _, v) = post(&proxy.url, r#"{"model": "openai:gpt-5", "messages": []}"#).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Available models: gpt-4o"),
        "{v}"
    );
    assert_eq!(up.calls(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn upstream_4xx_passes_through_with_its_message() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::error(404, json!({"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error", "code": "model_not_found"}})));
    up.push(Reply::error(401, json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})));
    up.push(Reply::Json {
        status: 429,
        body: json!({"error": {"message": "Rate limit reached", "type": "requests"}}),
        headers: vec![("retry-after".into(), "7".into())],
    });
    // A Retry-After longer than max_silent_wait is not waited out: the 429 reaches the client.
    let proxy = proxy_for(&up.base_url(), "failure_handling:\n  max_silent_wait: 1\n").await;
    let body = chat_body(false).to_string();
    let (status, _, v) = post(&proxy.url, body.clone()).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["message"], "The model `gpt-9` does not exist");
    assert_eq!(v["error"]["code"], "model_not_found");
    let (status, _, v) = post(&proxy.url, body.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["message"], "Incorrect API key provided");
    let (status, headers, v) = post(&proxy.url, body).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(v["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn upstream_5xx_and_connection_refused_are_502() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::error(
        503,
        json!({"error": {"message": "overloaded"}}),
    ));
    up.push(Reply::Raw {
        status: 500,
        body: "<html>oops</html>".into(),
    });
    let proxy = proxy_for(&up.base_url(), "").await;
    let (status, _, v) = post(&proxy.url, chat_body(false).to_string()).await;
    assert_eq!(status, 502);
    assert_eq!(v["error"]["message"], "overloaded");
    let (status, _, v) = post(&proxy.url, chat_body(false).to_string()).await;
    assert_eq!(status, 502);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("500"),
        "{v}"
    );

    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let proxy = proxy_for(&dead, "").await;
    let (status, _, v) = post(&proxy.url, chat_body(false).to_string()).await;
    assert_eq!(status, 502);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("connect"),
        "{v}"
    );
    assert!(
        !v.to_string().contains("sk-test-secret"),
        "no key in errors"
    );
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let up = MockUpstream::start().await.unwrap();
    let never = Arc::new(Notify::new());
    up.push(Reply::Sse(SseScript {
        frames: vec![],
        hold_before_head: Some(never.clone()),
        ..SseScript::default()
    }));
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    first_byte_timeout: 0.3\n",
        up.base_url()
    ))
    .await;
    let (status, _, v) = post(&proxy.url, chat_body(false).to_string()).await;
    assert_eq!(status, 504);
    assert_eq!(v["error"]["type"], "timeout_error");
}

#[tokio::test]
async fn context_length_errors_are_normalised() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::error(400, json!({"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", "type": "invalid_request_error"}})));
    up.push(Reply::error(
        413,
        json!({"error": {"message": "prompt is too long: 250000 tokens > 200000 maximum"}}),
    ));
    let proxy = proxy_for(&up.base_url(), "").await;
    for _ in 0..2 {
        let (status, _, v) = post(&proxy.url, chat_body(false).to_string()).await;
        assert_eq!(status, 400);
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "input");
    }
}

#[tokio::test]
async fn failure_after_first_byte_is_an_in_stream_error_chunk() {
    let up = MockUpstream::start().await.unwrap();
    let mut frames = openai::text_stream(&["partial"]);
    frames.truncate(2); // role chunk + one text chunk, then the connection is cut
    up.push(Reply::Sse(SseScript {
        frames,
        cut: true,
        ..SseScript::default()
    }));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (chunks, done) = sse_data(&resp.text().await.unwrap());
    assert!(done);
    assert_eq!(
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect::<String>(),
        "partial"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "error");
    assert_eq!(last["error"]["type"], "upstream_error");

    // An upstream error chunk mid-stream is reported the same way.
    let up = MockUpstream::start().await.unwrap();
    let mut frames = openai::text_stream(&["a"]);
    frames.truncate(2);
    frames.push("data: {\"error\":{\"message\":\"model overloaded\",\"code\":503}}\n\n".into());
    up.push(Reply::sse(frames));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    let (chunks, _) = sse_data(&resp.text().await.unwrap());
    assert_eq!(
        chunks.last().unwrap()["error"]["message"],
        "model overloaded"
    );
}

#[tokio::test]
async fn streaming_errors_before_the_first_byte_are_statuses() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::error(503, json!({"error": {"message": "busy"}})));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "busy");
}

#[tokio::test]
async fn hostile_inputs_never_crash_the_server() {
    let proxy = start_proxy("").await;
    let samples = [
        "",
        "null",
        "{}",
        "{\"model\":null}",
        "{\"model\":\"m\",\"messages\":[null]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"bogus\"}]}]}",
        "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"function\"}]}",
        "{\"model\":\"m\",\"messages\":[],\"tool_choice\":{\"x\":1}}",
        "{\"model\":\"\",\"messages\":[]}",
        "\u{0}\u{1}",
        "{\"model\":\"a|\",\"messages\":[]}",
    ];
    for s in samples {
        let r = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .header("content-type", "application/json")
            .body(s)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{s:?} -> {}", r.status());
        let v: Value = r.json().await.unwrap();
        assert_envelope(&v);
    }
    let r = client()
        .get(format!("{}/v1/nothing", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_envelope(&r.json().await.unwrap());
    tokio::time::timeout(
        Duration::from_secs(5),
        client().get(format!("{}/health", proxy.url)).send(),
    )
    .await
    .unwrap()
    .unwrap();
}
