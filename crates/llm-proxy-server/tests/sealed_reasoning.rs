//! Reasoning state handed to Responses clients is sealed: on an Anthropic upstream the
//! `encrypted_content` shows no signature, yet the signature reaches the upstream on the next
//! turn; a tampered or unsealed blob is dropped with a lossy note. Stored answers and the
//! sealing key survive a restart of the gateway on the same data directory.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use llm_proxy_server::AppState;
use llm_proxy_test_support::MockUpstream;
use serde_json::{Value, json};

use crate::common::{Proxy, client, serve_state, sse_data};
use crate::dialect::{Dialect, MODEL, proxy_on, upstream_view};
use crate::matrix::{Scenario, first_reply, reasoning_signature, text_reply};

const PREFIX: &str = "llmproxy.v1.";

fn first_body(stream: bool, store: bool) -> Value {
    json!({"model": MODEL, "input": [{"role": "user", "content": "What is 2+2?"}], "stream": stream,
           "store": store, "reasoning": {"effort": "medium", "summary": "auto"}})
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{url}/v1/responses"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The response object of a plain or streamed answer.
async fn answer(resp: reqwest::Response, stream: bool) -> Value {
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    if !stream {
        return serde_json::from_str(&text).unwrap();
    }
    let (events, _) = sse_data(&text);
    events
        .into_iter()
        .find(|e| e["type"] == "response.completed")
        .unwrap()["response"]
        .clone()
}

fn encrypted_contents(response: &Value) -> Vec<String> {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["encrypted_content"].as_str().map(str::to_owned))
        .collect()
}

/// The next turn's input: the first question, the answer's output, a new question.
fn next_input(output: &[Value]) -> Vec<Value> {
    let mut input = vec![json!({"role": "user", "content": "What is 2+2?"})];
    input.extend(output.iter().cloned());
    input.push(json!({"role": "user", "content": "And 4+4?"}));
    input
}

#[tokio::test]
async fn encrypted_content_is_sealed_and_the_signature_reaches_the_upstream_next_turn() {
    let up = Dialect::Anthropic;
    let signature = reasoning_signature(up);
    for stream in [false, true] {
        let mock = MockUpstream::start().await.unwrap();
        mock.push(first_reply(up, stream, Scenario::Reasoning));
        mock.push(text_reply(up, stream, "Eight."));
        let proxy = proxy_on(up, &mock.base_url()).await;
        let first = answer(post(&proxy.url, &first_body(stream, false)).await, stream).await;
        let sealed = encrypted_contents(&first);
        assert!(!sealed.is_empty(), "{first}");
        for blob in &sealed {
            let body = blob
                .strip_prefix(PREFIX)
                .unwrap_or_else(|| panic!("{blob}"));
            assert!(!blob.contains(signature), "{blob}");
            let bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
            assert!(
                serde_json::from_slice::<Value>(&bytes).is_err(),
                "not plain JSON"
            );
            assert!(!String::from_utf8_lossy(&bytes).contains(signature));
        }

        let mut next = first_body(stream, false);
        next["input"] = Value::Array(next_input(first["output"].as_array().unwrap()));
        let resp = post(&proxy.url, &next).await;
        assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
        answer(resp, stream).await;
        let sent = &mock.requests()[1].body;
        assert_eq!(
            upstream_view(up, sent)["reasoning"],
            json!([{"text": "Let me think about this.", "signature": signature}]),
            "{sent}"
        );
    }
}

#[tokio::test]
async fn tampered_foreign_or_unsealed_blobs_are_dropped_with_a_lossy_note() {
    let up = Dialect::Anthropic;
    let mock = MockUpstream::start().await.unwrap();
    mock.push(first_reply(up, false, Scenario::Reasoning));
    let proxy = proxy_on(up, &mock.base_url()).await;
    let first = answer(post(&proxy.url, &first_body(false, false)).await, false).await;
    let output = first["output"].as_array().unwrap().clone();
    let blob = encrypted_contents(&first).remove(0);

    let mut tampered = blob.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Sealed by another proxy: a valid-looking blob under another key.
    let foreign = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode([7u8; 60]));
    let forged = format!(r#"llmproxy:{{"signature":"{}"}}"#, reasoning_signature(up));
    for (i, bad) in [tampered, foreign, forged].into_iter().enumerate() {
        mock.push(text_reply(up, false, "Eight."));
        let mut items = output.clone();
        for item in &mut items {
            if item.get("encrypted_content").is_some() {
                item["encrypted_content"] = json!(bad);
            }
        }
        let mut next = first_body(false, false);
        next["input"] = Value::Array(next_input(&items));
        // The dropped blobs leave the same request each time; request dedup would refuse
        // the repeats.
        next["instructions"] = json!(format!("variant {i}"));
        let resp = post(&proxy.url, &next).await;
        let lossy = resp.headers()["x-llm-proxy-lossy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(lossy.contains("not sealed by this proxy"), "{lossy}");
        answer(resp, false).await;
        let sent = mock.requests().last().unwrap().body.clone();
        assert!(
            !sent.to_string().contains(reasoning_signature(up)),
            "no signature is sent: {sent}"
        );
        assert!(!sent.to_string().contains("llmproxy"), "{sent}");
    }
}

fn state_on(data_dir: &std::path::Path, upstream: &str) -> AppState {
    let yaml = format!(
        "data_dir: {}\nbackends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {upstream}/v1\n    api_key: sk-ant-upstream-0123456789\n",
        data_dir.display()
    );
    crate::common::state_with_stores(&yaml)
}

async fn stop(proxy: Proxy) {
    proxy.shut_down().await;
}

#[tokio::test]
async fn previous_response_id_continues_after_the_stores_are_reopened() {
    let up = Dialect::Anthropic;
    let data = tempfile::tempdir().unwrap();
    let mock = MockUpstream::start().await.unwrap();
    mock.push(first_reply(up, true, Scenario::Reasoning));
    mock.push(text_reply(up, false, "Eight."));

    let proxy = serve_state(state_on(data.path(), &mock.base_url())).await;
    let first = answer(post(&proxy.url, &first_body(true, true)).await, true).await;
    let id = first["id"].as_str().unwrap().to_owned();
    // Read back before stopping: the store has written the answer.
    let stored = client()
        .get(format!("{}/v1/responses/{id}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), 200);
    stop(proxy).await;

    let proxy = serve_state(state_on(data.path(), &mock.base_url())).await;
    let next = json!({"model": MODEL, "previous_response_id": id, "input": "And 4+4?",
                      "reasoning": {"effort": "medium", "summary": "auto"}});
    let resp = post(&proxy.url, &next).await;
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let second = answer(resp, false).await;
    assert_eq!(second["previous_response_id"], json!(id));
    let sent = mock.requests()[1].body.clone();
    // The first turn is a block now: it carries the previous turn's cache breakpoint.
    let first_turn = &sent["messages"][0]["content"];
    assert_eq!(
        first_turn
            .as_str()
            .or_else(|| first_turn[0]["text"].as_str()),
        Some("What is 2+2?"),
        "{sent}"
    );
    assert_eq!(
        upstream_view(up, &sent)["reasoning"],
        json!([{"text": "Let me think about this.", "signature": reasoning_signature(up)}]),
        "the stored, sealed reasoning opens with the key kept on disk: {sent}"
    );

    let unknown = post(
        &proxy.url,
        &json!({"model": MODEL, "previous_response_id": "resp_unknown", "input": "hi"}),
    )
    .await;
    assert_eq!(unknown.status(), 400);
    let v: Value = unknown.json().await.unwrap();
    assert_eq!(v["error"]["code"], "previous_response_not_found");
}
