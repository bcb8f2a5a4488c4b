//! Translation fidelity: nothing dropped silently. A matched stop sequence reaches Anthropic
//! clients, `n > 1` is refused rather than answered once, strict mode (config or header)
//! refuses what a translation would drop, and what is dropped is counted in `/metrics`.

use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini};
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

/// A proxy whose default backend is a Gemini upstream at `url`.
async fn proxy_on_gemini(url: &str) -> Proxy {
    start_proxy(&format!(
        "request_dedup_window: 0\nbackends:\n  default_backend: gemini\n  gemini:\n    api_url: {url}\n    api_key: AIza-upstream-0123456789\n"
    ))
    .await
}

async fn metrics(proxy: &Proxy) -> String {
    client()
        .get(format!("{}/metrics", proxy.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_generated_image_reaches_clients_that_can_show_it_and_is_named_elsewhere() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_gemini(&up.base_url()).await;
    let image = json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}});
    let answer = gemini::response(
        &[gemini::text("here:"), image.clone()],
        "STOP",
        gemini::Tokens::new(3, 2),
    );
    up.set_fallback(Reply::json(answer));

    // Gemini client: the part unchanged.
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "draw"}]}]});
    let resp = post(&proxy, "/v1beta/models/g:generateContent", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["candidates"][0]["content"]["parts"][1], image, "{v}");

    // Anthropic client: an image block with a base64 source.
    let body = json!({"model": "g", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "draw"}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": "iVBORw0KGgo="}}),
        "{v}"
    );

    // OpenAI chat client: no slot, so the header names it.
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "draw"}]});
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = resp.headers()["x-llm-proxy-lossy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(lossy.contains("media in the answer dropped"), "{lossy}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "here:");
}

#[tokio::test]
async fn a_streamed_generated_image_is_an_anthropic_image_block_and_counted_for_responses() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_gemini(&up.base_url()).await;
    let image = json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}});
    let frames = gemini::stream(
        &[vec![gemini::text("here:")], vec![image]],
        "STOP",
        gemini::Tokens::new(3, 2),
    );
    up.set_fallback(Reply::sse(frames));

    let body = json!({"model": "g", "max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "draw"}]});
    let text = post(&proxy, "/v1/messages", &body, false)
        .await
        .text()
        .await
        .unwrap();
    let starts: Vec<Value> = sse_events(&text)
        .into_iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| data["content_block"].clone())
        .collect();
    assert_eq!(
        starts.get(1),
        Some(
            &json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}})
        ),
        "{text}"
    );

    // Responses client (no test sends it media unstreamed, so the metric below is this
    // stream's): the header is gone by the time the image arrives; the metric counts it.
    let body = json!({"model": "g", "stream": true, "store": false, "input": "draw"});
    let text = post(&proxy, "/v1/responses", &body, false)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("here:"), "{text}");
    let m = metrics(&proxy).await;
    assert!(
        m.contains(r#"llm_proxy_lossy_total{frontend="openai_responses",field="media"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn document_citation_settings_are_named_not_dropped_silently() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    up.set_fallback(Reply::json(anthropic::text_message("summary")));
    let body = json!({"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
         "title": "Notes", "citations": {"enabled": true}},
        {"type": "text", "text": "summarise"}
    ]}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = resp.headers()["x-llm-proxy-lossy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(lossy.contains("citations"), "{lossy}");
    let sent = up.requests()[0].body["messages"].to_string();
    assert!(
        sent.contains("notes"),
        "the document's content still goes up: {sent}"
    );
    let m = metrics(&proxy).await;
    assert!(
        m.contains(r#"llm_proxy_lossy_total{frontend="anthropic",field="citations"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn citations_in_an_answer_are_named_not_dropped_silently() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let mut answer = anthropic::text_message("Paris.");
    answer["content"][0]["citations"] = json!([{"type": "char_location", "cited_text": "Paris",
        "document_index": 0, "start_char_index": 0, "end_char_index": 5}]);
    up.set_fallback(Reply::json(answer));
    let body = json!({"model": "claude-x", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "capital?"}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = resp.headers()["x-llm-proxy-lossy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(lossy.contains("citations in the answer"), "{lossy}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Paris.");

    // Streamed (to another client protocol, so the metric below is this stream's): the
    // note is counted once the stream ends.
    let frames = vec![
        r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":3,"output_tokens":0}}}"#,
        r#"event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":"","citations":[]}}"#,
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"Paris"}}}"#,
        r#"event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Paris."}}"#,
        r#"event: content_block_stop
data: {"type":"content_block_stop","index":0}"#,
        r#"event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}"#,
        r#"event: message_stop
data: {"type":"message_stop"}"#,
    ]
    .into_iter()
    .map(|f| format!("{f}\n\n"))
    .collect();
    up.set_fallback(Reply::sse(frames));
    let body = chat(json!({"stream": true}));
    let text = post(&proxy, "/v1/chat/completions", &body, false)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("Paris."), "{text}");
    let m = metrics(&proxy).await;
    assert!(
        m.contains(r#"llm_proxy_lossy_total{frontend="openai_chat",field="citations"}"#),
        "{m}"
    );
}
