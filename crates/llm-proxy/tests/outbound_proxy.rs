//! Backends honour an outbound HTTP proxy named in the environment (`HTTP_PROXY`, ...): their
//! requests go to the proxy, in absolute form, instead of to the upstream's own address.

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::start_in;

#[tokio::test(flavor = "multi_thread")]
async fn backends_send_through_the_outbound_proxy_named_in_the_environment() {
    // The mock plays the outbound proxy; the upstream's own name does not resolve.
    let forward = MockUpstream::start().await.unwrap();
    forward.push(Reply::json(openai::completion("Through the proxy.")));
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        "backends:\n  default_backend: openai-compatible\n  openai-compatible:\n    api_url: http://upstream.invalid/v1\n    api_key: sk-upstream-0123456789\n",
    )
    .unwrap();
    let data_dir = tmp.path().join("data");
    let (_proxy, url) = start_in(
        &config,
        &[std::ffi::OsStr::new("--data-dir"), data_dir.as_os_str()],
        &[("HTTP_PROXY", &forward.base_url())],
    );
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "Hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "Through the proxy."
    );
    let sent = forward.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].uri, "http://upstream.invalid/v1/chat/completions");
    assert_eq!(sent[0].headers["host"], "upstream.invalid");
}
