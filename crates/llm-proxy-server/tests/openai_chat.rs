//! OpenAI Chat clients end to end: text, tools, streaming, tool-call deltas, usage, models.

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{chat_body, client, proxy_for, sse_data, start_proxy};

#[tokio::test]
async fn text_round_trip_with_usage_and_overhead_header() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("Hi there")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let overhead: f64 = resp.headers()["x-llm-proxy-overhead-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(overhead >= 0.0);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18})
    );
    let sent = &up.requests()[0];
    assert_eq!(sent.uri, "/v1/chat/completions");
    assert_eq!(sent.body["model"], "gpt-4o");
    assert_eq!(
        sent.body["messages"],
        json!([{"role": "user", "content": "hello"}])
    );
    assert_eq!(
        sent.headers["authorization"],
        "Bearer sk-test-secret-0123456789"
    );
}

#[tokio::test]
async fn metrics_expose_overhead_upstream_and_ttft_histograms() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::sse(openai::text_stream(&["a", "b"])));
    let proxy = proxy_for(&up.base_url(), "").await;
    let text = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("[DONE]"));
    up.set_fallback(Reply::json(openai::completion("x")));
    client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    let metrics = client()
        .get(format!("{}/metrics", proxy.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "llm_proxy_overhead_seconds_bucket",
        "llm_proxy_upstream_latency_seconds_bucket",
        "llm_proxy_time_to_first_token_seconds_bucket",
        "llm_proxy_requests_total",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"frontend="openai_chat",backend="openai",stream="true""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"stream="false""#), "{metrics}");
}

#[tokio::test]
async fn explicit_backend_selector_strips_the_backend_prefix() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("ok")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let mut body = chat_body(false);
    body["model"] = json!("openai:vendor/model:variant");
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].body["model"], "vendor/model:variant");
}

#[tokio::test]
async fn tools_are_forwarded_and_tool_calls_returned() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::tool_call_completion(
        "call_1",
        "get_weather",
        "{\"city\":\"Paris\"}",
    )));
    let proxy = proxy_for(&up.base_url(), "").await;
    let mut body = chat_body(false);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    body["tool_choice"] = json!("auto");
    let resp: Value = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let call = &resp["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(resp["choices"][0]["finish_reason"], "tool_calls");
    let sent = &up.requests()[0].body;
    assert_eq!(sent["tools"], body["tools"]);
    assert_eq!(sent["tool_choice"], "auto");
}

#[tokio::test]
async fn streaming_text_forwards_chunks_usage_and_done() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(openai::text_stream(&["Hel", "lo", " world"])));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (chunks, done) = sse_data(&resp.text().await.unwrap());
    assert!(done, "stream ends with [DONE]");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello world");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0].get("finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("stop")]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 3);
    let sent = &up.requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn streamed_parallel_tool_call_fragments_reassemble() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(openai::parallel_tool_stream()));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    let (chunks, done) = sse_data(&resp.text().await.unwrap());
    assert!(done);
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for c in &chunks {
        for tc in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if let Some(id) = tc["id"].as_str() {
                assert_eq!(i, calls.len(), "indices are positional");
                calls.push((
                    id.into(),
                    tc["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, "call_a");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[0].2).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(calls[1].1, "get_time");
    assert_eq!(
        serde_json::from_str::<Value>(&calls[1].2).unwrap(),
        json!({"tz": "CET"})
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, vec!["tool_calls"]);
}

#[tokio::test]
async fn non_streaming_client_on_streamed_tool_calls_collects_them() {
    // A non-streaming request is answered from the same event path.
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::tool_call_completion("c9", "f", "")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp: Value = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}",
        "empty arguments become an empty object"
    );
}

#[tokio::test]
async fn models_lists_instance_prefixed_ids() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&format!(
        "backends:\n  openai:\n    api_url: {}/v1\n    models: [gpt-4o, gpt-4o-mini]\n  openai.2:\n    api_url: {}/v1\n    models: [o3]\n",
        up.base_url(), up.base_url()
    ))
    .await;
    let resp: Value = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = resp["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["openai:gpt-4o", "openai:gpt-4o-mini", "openai.2:o3"]
    );
    // every listed id routes
    up.set_fallback(Reply::json(openai::completion("x")));
    for id in ids {
        let mut body = chat_body(false);
        body["model"] = json!(id);
        let r = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{id}");
    }
}

#[tokio::test]
async fn models_are_fetched_from_the_upstream_when_not_configured() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(
        json!({"object": "list", "data": [{"id": "m1", "object": "model", "owned_by": "acme"}]}),
    ));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp: Value = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"][0]["id"], "openai:m1");
    assert_eq!(resp["data"][0]["owned_by"], "acme");
    assert_eq!(up.requests()[0].uri, "/v1/models");
    // cached: a second listing does not call upstream again
    let _ = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn offline_default_is_the_mock_backend() {
    let proxy = start_proxy("").await;
    let resp: Value = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&json!({"model": "anything", "messages": [{"role": "user", "content": "ping"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["choices"][0]["message"]["content"], "You said: ping");
    let health: Value = client()
        .get(format!("{}/health", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn client_keys_are_enforced_when_configured() {
    // One request, sent once per way of passing the key.
    let proxy = start_proxy("auth:\n  api_keys: [client-key-123]\nrequest_dedup_window: 0\n").await;
    let url = format!("{}/v1/chat/completions", proxy.url);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["type"], "authentication_error");
    let r = client()
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth("client-key-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(&url)
        .header("x-api-key", "client-key-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{}/health", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "health needs no key");
}

#[tokio::test]
async fn reasoning_dropped_for_strict_openai_upstreams_is_reported() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("ok")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let mut body = chat_body(false);
    body["messages"] = json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "thought about it"},
        {"role": "user", "content": "and?"}
    ]);
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let lossy = resp.headers()["x-llm-proxy-lossy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(lossy.contains("earlier reasoning not sent"), "{lossy}");
    assert!(
        up.requests()[0].body["messages"][1]
            .get("reasoning_content")
            .is_none()
    );
}
