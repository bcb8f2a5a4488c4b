//! Wire capture at all four boundaries: one streamed and one non-streamed chat completion with
//! capture on leave `inbound_request`, `outbound_request`, `inbound_response` and
//! `outbound_response` under one request id, the client's bytes exactly as sent and received,
//! streamed bodies as timestamped pieces; planted secrets (provider key, client key,
//! configured header value, URL credentials) never reach the file; the file is 0600 and
//! rotates by size, keeping the configured number of rotated files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use llm_proxy_api::http::build_capture_aware_client;
use llm_proxy_server::AppState;
use llm_proxy_server::capture::{CaptureFileOptions, JsonlCaptureSink, rotated_files};
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::Value;

use crate::common::{Proxy, client, serve_state};

const PROVIDER_KEY: &str = "sk-plant-provider-key-5e1f9a7c3b";
const CLIENT_KEY: &str = "plant-client-key-b8d2f6a0";
const HEADER_SECRET: &str = "plant-header-secret-1c3e5a7b";
const URL_USER: &str = "plantuser4f6a8c";
const URL_PASSWORD: &str = "plant-url-pass-9d1b3f5e";

const SECRETS: [&str; 5] = [
    PROVIDER_KEY,
    CLIENT_KEY,
    HEADER_SECRET,
    URL_USER,
    URL_PASSWORD,
];

fn yaml(upstream: &str, capture: &Path, extra_logging: &str) -> String {
    let host = upstream.trim_start_matches("http://");
    format!(
        "logging:\n  capture_file: {}\n{extra_logging}\
         auth:\n  api_keys: [{CLIENT_KEY}]\n\
         backends:\n  default_backend: openai-compatible\n  \
           openai-compatible:\n    api_url: http://{URL_USER}:{URL_PASSWORD}@{host}/v1\n    api_key: {PROVIDER_KEY}\n    extra:\n      headers:\n        X-Custom-Auth: {HEADER_SECRET}\n",
        capture.display()
    )
}

async fn proxy_with_capture(
    upstream: &str,
    capture: &Path,
    extra_logging: &str,
) -> (Proxy, Arc<JsonlCaptureSink>) {
    let cfg = load_from_str(
        &yaml(upstream, capture, extra_logging),
        &CliOverrides::default(),
        &Env::default(),
    )
    .unwrap();
    let options = CaptureFileOptions {
        max_bytes: cfg.logging.capture_max_bytes,
        rotate_interval: cfg.logging.capture_rotate_interval,
        max_files: cfg.logging.capture_max_files,
        ..CaptureFileOptions::default()
    };
    let sink =
        JsonlCaptureSink::open_with_options(capture, cfg.scrubber().unwrap(), &options).unwrap();
    let http =
        build_capture_aware_client(reqwest::Client::builder(), Some(sink.clone()), None).unwrap();
    let state = AppState::build(cfg, Plugins::from_linked(), http).unwrap();
    (serve_state(state).await, sink)
}

/// The request body a client sends, as exact bytes: odd spacing and key order a re-serializer
/// would not keep.
fn body_bytes(stream: bool, n: usize) -> Vec<u8> {
    format!(
        "{{ \"stream\" : {stream},\n  \"model\":\"gpt-4o\", \"messages\": [ {{\"role\":\"user\",\"content\":\"hello  there {n}\"}} ] }}"
    )
    .into_bytes()
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn payload_bytes(record: &Value) -> Vec<u8> {
    record["payload"].as_str().unwrap().as_bytes().to_vec()
}

#[tokio::test]
async fn a_request_leaves_four_boundaries_with_the_clients_exact_bytes() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("plain answer")));
    up.push(Reply::sse(openai::text_stream(&["str", "eam", "ed"])));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl");
    let (proxy, sink) = proxy_with_capture(&up.base_url(), &path, "").await;

    let mut exchanges = Vec::new();
    for stream in [false, true] {
        let sent = body_bytes(stream, 0);
        let resp = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("content-type", "application/json")
            .header("x-session-id", "capture-session-1")
            .body(sent.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let received = resp.bytes().await.unwrap().to_vec();
        exchanges.push((id, sent, received));
    }
    drop(proxy);
    assert!(sink.flush(Duration::from_secs(5)));
    let all = records(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked into the capture");
        assert!(
            !text.contains(&secret[secret.len() - 8..]),
            "part of {secret} leaked into the capture"
        );
    }

    for (i, (id, sent, received)) in exchanges.iter().enumerate() {
        let streamed = i == 1;
        let mine: Vec<&Value> = all
            .iter()
            .filter(|r| r["request_id"] == id.as_str())
            .collect();
        let by = |direction: &str| -> &Value {
            let found: Vec<&&Value> = mine
                .iter()
                .filter(|r| r["direction"] == direction)
                .collect();
            assert_eq!(found.len(), 1, "{direction} of {id}: {mine:?}");
            found[0]
        };
        let inbound = by("inbound_request");
        let outbound_req = by("outbound_request");
        let upstream_resp = by("inbound_response");
        let answer = by("outbound_response");
        assert_eq!(mine.len(), 4, "{mine:?}");

        // The client's side, byte for byte.
        assert_eq!(payload_bytes(inbound), *sent);
        assert_eq!(inbound["method"], "POST");
        assert_eq!(inbound["url"], "/v1/chat/completions");
        assert!(
            inbound["headers"]["authorization"]
                .as_str()
                .unwrap()
                .starts_with("Bearer ")
        );
        assert_eq!(inbound["session_id"], "capture-session-1");
        assert_eq!(payload_bytes(answer), *received);
        assert_eq!(answer["status"], 200);
        assert_eq!(answer["session_id"], "capture-session-1");
        assert_eq!(answer["backend"], "openai-compatible");
        assert_eq!(answer["headers"]["x-request-id"], id.as_str());

        // The upstream side.
        assert_eq!(outbound_req["method"], "POST");
        assert_eq!(outbound_req["session_id"], "capture-session-1");
        assert_eq!(upstream_resp["status"], 200);

        if streamed {
            for record in [upstream_resp, answer] {
                let chunks = record["chunks"].as_array().expect("streamed pieces");
                assert!(!chunks.is_empty());
                let mut at = 0;
                for c in chunks {
                    assert!(c["timestamp_unix"].as_f64().unwrap() > 1.6e9);
                    assert_eq!(c["offset"].as_u64().unwrap(), at);
                    at += c["length"].as_u64().unwrap();
                }
                assert_eq!(at as usize, payload_bytes(record).len());
            }
            assert!(
                String::from_utf8_lossy(received).contains("data: [DONE]"),
                "the client got an SSE stream"
            );
        } else {
            let answer_json: Value = serde_json::from_slice(received).unwrap();
            assert_eq!(
                answer_json["choices"][0]["message"]["content"],
                "plain answer"
            );
        }
    }
    sink.close();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}

#[tokio::test]
async fn the_capture_file_rotates_by_size_and_keeps_the_configured_number() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("again")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rotating.jsonl");
    let (proxy, sink) = proxy_with_capture(
        &up.base_url(),
        &path,
        "  capture_max_bytes: 2000\n  capture_max_files: 2\n",
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let resp = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("content-type", "application/json")
            .body(body_bytes(false, n))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        resp.bytes().await.unwrap();
        // The writer works the queue in order; waiting keeps each request's rotation visible.
        assert!(sink.flush(Duration::from_secs(5)));
    }
    drop(proxy);
    sink.close();
    let rotated = rotated_files(&path).unwrap();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let mut kept = records(&path);
    for file in &rotated {
        assert!(std::fs::metadata(file).unwrap().len() <= 2000);
        kept.extend(records(file));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
    }
    // The newest request is whole in what is kept; the oldest went with deleted files.
    let last = ids.last().unwrap();
    assert_eq!(
        kept.iter()
            .filter(|r| r["request_id"] == last.as_str())
            .count(),
        4
    );
    assert!(
        !kept.iter().any(|r| r["request_id"] == ids[0].as_str()),
        "the oldest rotated files are deleted"
    );
}
