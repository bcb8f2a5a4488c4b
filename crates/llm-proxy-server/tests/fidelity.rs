//! Translation fidelity: nothing dropped silently. A matched stop sequence reaches Anthropic
//! clients, `n > 1` is refused rather than answered once, strict mode (config or header)
//! refuses what a translation would drop, and what is dropped is counted in `/metrics`.

use llm_proxy_test_support::{MockUpstream, Reply, anthropic};
use serde_json::{Value, json};

use crate::common::{Proxy, client, start_proxy};
use crate::dialect::sse_events;

/// A proxy whose default backend is an Anthropic upstream at `url` (extra YAML appended).
/// Tests here send one body lax and then strict, which request dedup (its own tests:
/// limits.rs) would refuse as a repeat.
async fn proxy_on_anthropic(url: &str, extra: &str) -> Proxy {
    start_proxy(&format!(
        "request_dedup_window: 0\nbackends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {url}/v1\n    api_key: sk-ant-upstream-0123456789\n{extra}"
    ))
    .await
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "claude-x", "messages": [{"role": "user", "content": "count"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn post(proxy: &Proxy, path: &str, body: &Value, strict: bool) -> reqwest::Response {
    let mut req = client().post(format!("{}{path}", proxy.url)).json(body);
    if strict {
        req = req.header("x-llm-proxy-strict", "1");
    }
    req.send().await.unwrap()
}

/// An Anthropic answer that stopped on `sequence`.
fn stopped_message(sequence: &str) -> Value {
    let mut m = anthropic::text_message("one two");
    m["stop_reason"] = json!("stop_sequence");
    m["stop_sequence"] = json!(sequence);
    m
}

#[tokio::test]
async fn an_anthropic_client_learns_which_stop_sequence_matched() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let body = json!({"model": "claude-x", "max_tokens": 50, "stop_sequences": ["THREE"],
                      "messages": [{"role": "user", "content": "count"}]});

    up.push(Reply::json(stopped_message("THREE")));
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (&v["stop_reason"], &v["stop_sequence"]),
        (&json!("stop_sequence"), &json!("THREE"))
    );
    assert_eq!(up.requests()[0].body["stop_sequences"], json!(["THREE"]));

    // Streamed: the upstream's message_delta names the sequence, and so does the client's.
    let frames: Vec<String> = anthropic::stream(
        &[anthropic::Block::text(&["one two"])],
        "stop_sequence",
        anthropic::Tokens::new(3, 2),
    )
    .into_iter()
    .map(|f| {
        if f.contains("message_delta") {
            f.replace("\"stop_sequence\":null", "\"stop_sequence\":\"THREE\"")
        } else {
            f
        }
    })
    .collect();
    up.push(Reply::sse(frames));
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = post(&proxy, "/v1/messages", &streamed, false)
        .await
        .text()
        .await
        .unwrap();
    let delta = sse_events(&text)
        .into_iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(
        delta.1["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "THREE"})
    );

    // An OpenAI client of the same upstream gets its own finish reason.
    up.push(Reply::json(stopped_message("THREE")));
    let v: Value = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"stop": ["THREE"]})),
        false,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn n_above_one_to_an_anthropic_upstream_is_refused_naming_n() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"n": 2})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "n", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("n = 2"),
        "{v}"
    );
    assert_eq!(up.calls(), 0);

    // n = 1 is one answer: nothing to refuse.
    up.push(Reply::json(anthropic::text_message("hi")));
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"n": 1})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn strict_header_refuses_what_the_upstream_would_drop() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let body = chat(json!({"seed": 7}));

    // Lax: sent without the seed, and the header says so.
    up.push(Reply::json(anthropic::text_message("hi")));
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = resp.headers()["x-llm-proxy-lossy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(lossy.contains("seed"), "{lossy}");

    // Strict: a 400 in the client's envelope naming the field; the upstream is not called.
    let resp = post(&proxy, "/v1/chat/completions", &body, true).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "seed", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("translation would drop 'seed'"),
        "{message}"
    );
    assert!(message.contains("strict mode"), "{message}");
    assert_eq!(up.calls(), 1);

    // Strict with nothing to drop goes through.
    up.push(Reply::json(anthropic::text_message("hi")));
    let resp = post(&proxy, "/v1/chat/completions", &chat(json!({})), true).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
}

#[tokio::test]
async fn strict_config_refuses_in_each_clients_envelope() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "translation:\n  strict: true\n").await;

    // Dropped while encoding for the upstream (OpenAI client, Anthropic upstream).
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"logprobs": true})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "logprobs", "{v}");

    // Dropped by the frontend's own conversion (a Responses client's service tier).
    let body = json!({"model": "claude-x", "input": "hi", "service_tier": "flex"});
    let resp = post(&proxy, "/v1/responses", &body, false).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "service_tier", "{v}");

    // A Gemini client gets Gemini's envelope.
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                      "generationConfig": {"seed": 3}});
    let resp = post(
        &proxy,
        "/v1beta/models/claude-x:generateContent",
        &body,
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'seed'"),
        "{v}"
    );
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn what_translations_drop_is_counted_by_field() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    up.push(Reply::json(anthropic::text_message("hi")));
    let body = chat(json!({"top_logprobs": 2, "logprobs": true}));
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    let metrics = client()
        .get(format!("{}/metrics", proxy.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"llm_proxy_lossy_total{frontend="openai_chat",field="logprobs"}"#),
        "{metrics}"
    );
}
