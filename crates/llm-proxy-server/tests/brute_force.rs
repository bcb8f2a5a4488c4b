//! Brute-force protection end to end: an address that keeps failing authentication is
//! blocked with 429 and `Retry-After` in the path protocol's envelope, even with the right key;
//! a success resets it. Durations are huge so nothing expires during a test.

use serde_json::Value;

use crate::common::{client, start_proxy};

const KEY: &str = "client-key-0123456789";

async fn get(url: &str, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .get(url)
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn config(extra: &str) -> String {
    format!(
        "auth:\n  api_keys: [{KEY}]\n  brute_force_protection:\n    max_failed_attempts: 2\n    initial_block_seconds: 3600\n    ttl_seconds: 3600\n{extra}"
    )
}

#[tokio::test]
async fn repeated_failures_block_the_address_with_429_and_retry_after() {
    let proxy = start_proxy(&config("")).await;
    let models = format!("{}/v1/models", proxy.url);
    assert_eq!(get(&models, "wrong-key-1").await.0, 401);
    assert_eq!(get(&models, "wrong-key-2").await.0, 401);
    let (status, headers, body) = get(&models, KEY).await;
    assert_eq!(status, 429, "blocked even with the right key: {body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(body["error"]["code"], "too_many_failed_attempts", "{body}");
    assert_eq!(
        body["error"]["type"], "rate_limit_error",
        "OpenAI envelope: {body}"
    );
    let (status, _, body) = get(&format!("{}/v1/messages/count_tokens", proxy.url), KEY).await;
    assert_eq!(status, 429);
    assert_eq!(body["type"], "error", "Anthropic envelope: {body}");
    let (status, _, body) = get(&format!("{}/v1beta/models", proxy.url), KEY).await;
    assert_eq!(status, 429);
    assert_eq!(
        body["error"]["status"], "RESOURCE_EXHAUSTED",
        "Gemini envelope: {body}"
    );
    // Model calls are served without the router: the address is blocked there too.
    for (path, body) in [
        (
            "/v1/chat/completions",
            r#"{"model":"mock:m","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            "/v1/messages",
            r#"{"model":"mock:m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    ] {
        let r = client()
            .post(format!("{}{path}", proxy.url))
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
        assert!(r.headers().contains_key("retry-after"), "{path}");
    }
    let health = client()
        .get(format!("{}/health", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "health needs no key");
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let proxy = start_proxy(&config("")).await;
    let models = format!("{}/v1/models", proxy.url);
    for _ in 0..3 {
        assert_eq!(get(&models, "wrong-key").await.0, 401);
        assert_eq!(get(&models, KEY).await.0, 200);
    }
}

#[tokio::test]
async fn disabled_protection_never_blocks() {
    let proxy = start_proxy(&config("    enabled: false\n")).await;
    let models = format!("{}/v1/models", proxy.url);
    for _ in 0..5 {
        assert_eq!(get(&models, "wrong-key").await.0, 401);
    }
    assert_eq!(get(&models, KEY).await.0, 200);
}
