//! The Gemini frontend beyond the matrix: keys in the query or header, `alt` handling, the real
//! model list, countTokens, selectors with colons, keep-alives, and errors in Google's
//! envelope.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use llm_proxy_test_support::{MockUpstream, Reply, SseScript, openai};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{client, proxy_for, sse_data};

fn body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]})
}

async fn google_error(resp: reqwest::Response, status: u16, google_status: &str) -> Value {
    assert_eq!(resp.status(), status);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], status, "{v}");
    assert_eq!(v["error"]["status"], google_status, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    v
}

#[tokio::test]
async fn keys_come_in_the_query_or_header_and_refusals_use_the_google_envelope() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("Hi")));
    let proxy = proxy_for(
        &up.base_url(),
        // One request, sent once per way of passing the key.
        "auth:\n  api_keys: [client-key-0123456789]\nrequest_dedup_window: 0\n",
    )
    .await;
    let url = format!("{}/v1beta/models/gpt-4o:generateContent", proxy.url);
    let by_query = client()
        .post(format!("{url}?key=client-key-0123456789"))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let by_header = client()
        .post(&url)
        .header("x-goog-api-key", "client-key-0123456789")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let v: Value = by_header.json().await.unwrap();
    assert_eq!(
        v["candidates"][0]["content"],
        json!({"role": "model", "parts": [{"text": "Hi"}]})
    );
    let refused = client()
        .post(format!("{url}?key=wrong"))
        .json(&body())
        .send()
        .await
        .unwrap();
    google_error(refused, 401, "UNAUTHENTICATED").await;
    let sent = &up.requests()[0];
    assert_eq!(
        sent.headers["authorization"],
        "Bearer sk-test-secret-0123456789"
    );
    assert!(!sent.uri.contains("key="));
}

#[tokio::test]
async fn alt_selects_sse_and_anything_else_is_rejected_for_streams() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(openai::text_stream(&["Hel", "lo"])));
    let proxy = proxy_for(&up.base_url(), "").await;
    let base = format!("{}/v1beta/models/gpt-4o", proxy.url);
    let resp = client()
        .post(format!("{base}:streamGenerateContent?alt=json"))
        .json(&body())
        .send()
        .await
        .unwrap();
    let v = google_error(resp, 400, "INVALID_ARGUMENT").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("alt"),
        "{v}"
    );
    let resp = client()
        .post(format!("{base}:generateContent?alt=sse"))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (frames, done) = sse_data(&resp.text().await.unwrap());
    assert!(!done, "Gemini streams have no [DONE]");
    let text: String = frames
        .iter()
        .flat_map(|f| {
            f["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "Hello");
    assert_eq!(
        frames.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    assert_eq!(up.requests()[0].body["stream"], true);
    assert_eq!(
        up.calls(),
        1,
        "the rejected request never reached the upstream"
    );
}

#[tokio::test]
async fn the_model_list_is_real_and_each_entry_can_be_fetched() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(json!({"object": "list", "data": [
        {"id": "gpt-4o", "object": "model", "owned_by": "openai"}
    ]})));
    let proxy = proxy_for(&up.base_url(), "").await;
    let v: Value = client()
        .get(format!("{}/v1beta/models", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"models": [{
            "name": "models/openai:gpt-4o", "version": "001", "displayName": "openai:gpt-4o",
            "description": "openai via llm-proxy",
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]
        }]})
    );
    let one: Value = client()
        .get(format!("{}/v1beta/models/openai:gpt-4o", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, v["models"][0]);
    let missing = client()
        .get(format!("{}/v1beta/models/nope", proxy.url))
        .send()
        .await
        .unwrap();
    google_error(missing, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn count_tokens_estimates_and_selectors_split_at_the_last_colon() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("ok")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let count: Value = client()
        .post(format!("{}/v1beta/models/gpt-4o:countTokens", proxy.url))
        .json(&body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // gpt-4o is counted with its own tokenizer: "hello" is one o200k token, plus four for the
    // message.
    assert_eq!(count, json!({"totalTokens": 5}));
    let wrapped: Value = client()
        .post(format!("{}/v1beta/models/gpt-4o:countTokens", proxy.url))
        .json(&json!({"generateContentRequest": body()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrapped, count);
    let resp = client()
        .post(format!("{}/v1beta/models/gpt-4o:countTokens", proxy.url))
        .json(&json!({"contents": "not a list"}))
        .send()
        .await
        .unwrap();
    google_error(resp, 400, "INVALID_ARGUMENT").await;
    assert_eq!(up.calls(), 0);
    let resp = client()
        .post(format!(
            "{}/v1beta/models/openai:vendor/model:generateContent",
            proxy.url
        ))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].body["model"], "vendor/model");
}

#[tokio::test]
async fn bad_requests_use_the_google_envelope() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_for(&up.base_url(), "").await;
    let base = format!("{}/v1beta/models/gpt-4o", proxy.url);
    let resp = client()
        .post(format!("{base}:embedContent"))
        .json(&body())
        .send()
        .await
        .unwrap();
    google_error(resp, 404, "NOT_FOUND").await;
    let resp = client()
        .post(format!("{base}:generateContent"))
        .body("{\"contents\": ")
        .send()
        .await
        .unwrap();
    google_error(resp, 400, "INVALID_ARGUMENT").await;
    let resp = client()
        .post(format!("{base}:generateContent"))
        .json(&json!({"contents": [{"role": "wizard", "parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    let v = google_error(resp, 400, "INVALID_ARGUMENT").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("role"),
        "{v}"
    );
    assert_eq!(up.calls(), 0);
}

/// `google-genai` parses every non-empty line as JSON, so keep-alives are blank lines.
#[tokio::test]
async fn keepalives_are_blank_lines() {
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
        .post(format!(
            "{}/v1beta/models/gpt-4o:streamGenerateContent?alt=sse",
            proxy.url
        ))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"\n", "the first bytes are a keep-alive");
    release.notify_one();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    for line in text.lines().filter(|l| !l.is_empty()) {
        let data = line
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("non-data line {line:?}"));
        serde_json::from_str::<Value>(data).unwrap();
    }
    let (frames, _) = sse_data(&text);
    assert_eq!(
        frames[0]["candidates"][0]["content"]["parts"][0]["text"],
        "late"
    );
}

/// Newer `google-genai` versions call `/v1/models/...`, a prefix shared with OpenAI clients:
/// generation works there, and the model list answers in the caller's shape.
#[tokio::test]
async fn the_v1_surface_serves_google_clients_and_openai_clients_alike() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(
        json!({"object": "list", "data": [{"id": "gpt-4o", "object": "model"}]}),
    ));
    up.push(Reply::json(openai::completion("Hi")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let google = |req: reqwest::RequestBuilder| {
        req.header("x-goog-api-client", "google-genai-sdk/3.6.1 gl-python/3.11")
    };
    let gemini_list: Value = google(client().get(format!("{}/v1/models", proxy.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gemini_list["models"][0]["name"], "models/openai:gpt-4o");
    let openai_list: Value = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai_list["data"][0]["id"], "openai:gpt-4o");
    let one: Value = client()
        .get(format!("{}/v1/models/openai:gpt-4o", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        one,
        json!({"id": "openai:gpt-4o", "object": "model", "created": 0, "owned_by": "openai"})
    );
    let one: Value = google(client().get(format!("{}/v1/models/openai:gpt-4o", proxy.url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "models/openai:gpt-4o");
    let resp = google(client().post(format!("{}/v1/models/gpt-4o:generateContent", proxy.url)))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["candidates"][0]["content"]["parts"][0]["text"], "Hi");
    let resp = client()
        .post(format!("{}/v1/models/gpt-4o:embedContent", proxy.url))
        .json(&body())
        .send()
        .await
        .unwrap();
    google_error(resp, 404, "NOT_FOUND").await;
}
