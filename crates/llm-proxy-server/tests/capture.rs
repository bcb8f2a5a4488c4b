//! Wire capture with a core connector: a proxy with `--capture-file` writes the upstream
//! exchange of every call (streamed or not) as JSON lines, with the key's name and never its
//! value.

use std::time::Duration;

use llm_proxy_api::http::build_capture_aware_client;
use llm_proxy_server::AppState;
use llm_proxy_server::capture::JsonlCaptureSink;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::Value;

use crate::common::{chat_body, client, serve_state};

const KEY: &str = "sk-capture-secret-0123456789";

#[tokio::test]
async fn openai_calls_are_captured_with_the_key_name_only() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("plain")));
    up.push(Reply::sse(openai::text_stream(&["str", "eamed"])));
    let path = std::env::temp_dir().join(format!(
        "llm-proxy-capture-openai-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let yaml = format!(
        "logging:\n  capture_file: {}\nbackends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    api_key: {KEY}\n",
        path.display(),
        up.base_url()
    );
    let cfg = load_from_str(&yaml, &CliOverrides::default(), &Env::default()).unwrap();
    let sink = JsonlCaptureSink::open(
        cfg.logging.capture_file.as_deref().unwrap(),
        cfg.scrubber().unwrap(),
    )
    .unwrap();
    let http =
        build_capture_aware_client(reqwest::Client::builder(), Some(sink.clone()), None).unwrap();
    let state = AppState::build(cfg, Plugins::from_linked(), http).unwrap();
    let proxy = serve_state(state).await;

    let mut ids = Vec::new();
    for stream in [false, true] {
        let resp = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .json(&chat_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        resp.bytes().await.unwrap();
    }

    assert!(sink.flush(Duration::from_secs(5)));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(KEY), "the key leaked into the capture");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in &ids {
        // The upstream side (the client side is `capture_boundaries`'s).
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["request_id"] == id.as_str())
            .filter(|r| {
                r["direction"] == "outbound_request" || r["direction"] == "inbound_response"
            })
            .collect();
        let directions: Vec<&str> = mine
            .iter()
            .filter_map(|r| r["direction"].as_str())
            .collect();
        assert_eq!(
            directions,
            ["outbound_request", "inbound_response"],
            "request {id}"
        );
        assert!(
            mine.iter()
                .all(|r| r["key_name"] == "backends.openai.api_key" && r["backend"] == "openai")
        );
        assert_eq!(mine[0]["method"], "POST");
        assert!(
            mine[0]["url"]
                .as_str()
                .unwrap()
                .ends_with("/v1/chat/completions")
        );
        assert!(
            mine[0]["headers"]["authorization"]
                .as_str()
                .unwrap()
                .starts_with("Bearer ")
        );
        assert_eq!(mine[1]["status"], 200);
    }
    let streamed: Vec<&Value> = records
        .iter()
        .filter(|r| r["request_id"] == ids[1].as_str() && r["direction"] == "inbound_response")
        .collect();
    assert!(
        streamed[0]["payload"]
            .as_str()
            .unwrap()
            .contains("data: [DONE]")
    );
    assert!(records.iter().all(|r| {
        r["timestamp_iso"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    }));
    sink.close();
    let _ = std::fs::remove_file(&path);
}
