//! CBOR V2 wire capture: with `cbor_capture_dir` on, one non-streamed and one streamed chat
//! completion leave a file of a header and entries, all four directions under each request
//! id, the client's exact bytes (after zlib), streamed bodies as ordered `frame` entries;
//! planted secrets never reach the file, in plain or compressed form; the file is 0600.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use llm_proxy_api::http::build_capture_aware_client;
use llm_proxy_server::AppState;
use llm_proxy_server::capture::cbor::{self, CborEntry};
use llm_proxy_server::capture::{CaptureFileOptions, CaptureFileSink, open_cbor_capture};
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::Value;

use crate::common::{Proxy, client, serve_state};

const PROVIDER_KEY: &str = "sk-cbor-provider-key-4d2f8a6c1e";
const CLIENT_KEY: &str = "cbor-client-key-a7c9e1b3";
const HEADER_SECRET: &str = "cbor-header-secret-2b4d6f8a";
const URL_PASSWORD: &str = "cbor-url-pass-8e0a2c4f";
const SECRETS: [&str; 4] = [PROVIDER_KEY, CLIENT_KEY, HEADER_SECRET, URL_PASSWORD];

async fn proxy_with_cbor(upstream: &str, dir: &Path) -> (Proxy, Arc<CaptureFileSink>) {
    let host = upstream.trim_start_matches("http://");
    let yaml = format!(
        "logging:\n  cbor_capture_dir: {}\n  cbor_capture_session_id: it-session\n\
         auth:\n  api_keys: [{CLIENT_KEY}]\n\
         backends:\n  default_backend: openai-compatible\n  \
           openai-compatible:\n    api_url: http://cboruser:{URL_PASSWORD}@{host}/v1\n    api_key: {PROVIDER_KEY}\n    extra:\n      headers:\n        X-Custom-Auth: {HEADER_SECRET}\n",
        dir.display()
    );
    let cfg = load_from_str(&yaml, &CliOverrides::default(), &Env::default()).unwrap();
    let options = CaptureFileOptions {
        flush_interval: Some(cfg.logging.cbor_capture_flush_interval),
        ..CaptureFileOptions::default()
    };
    let sink = open_cbor_capture(
        Path::new(cfg.logging.cbor_capture_dir.as_deref().unwrap()),
        cfg.logging.cbor_capture_session_id.as_deref(),
        cfg.scrubber().unwrap(),
        &options,
        BTreeMap::new(),
    )
    .unwrap();
    let http =
        build_capture_aware_client(reqwest::Client::builder(), Some(sink.clone()), None).unwrap();
    let state = AppState::build(cfg, Plugins::from_linked(), http).unwrap();
    (serve_state(state).await, sink)
}

/// Exact client bytes: odd spacing a re-serializer would not keep; `pad` makes the body
/// large enough to be compressed.
fn body_bytes(stream: bool, pad: usize) -> Vec<u8> {
    format!(
        "{{ \"stream\" : {stream},\n  \"model\":\"gpt-4o\", \"messages\": [ {{\"role\":\"user\",\"content\":\"hello  there {}\"}} ] }}",
        "pad ".repeat(pad)
    )
    .into_bytes()
}

/// The body of a synthesized raw HTTP entry (after the blank line).
fn http_body(data: &[u8]) -> &[u8] {
    let at = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a raw HTTP head");
    &data[at + 4..]
}

#[tokio::test]
async fn cbor_capture_holds_four_directions_exact_client_bytes_and_no_secrets() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("plain answer")));
    up.push(Reply::sse(openai::text_stream(&["str", "eam", "ed"])));
    up.push(Reply::json(openai::completion("third")));
    let dir = tempfile::tempdir().unwrap();
    let capture_dir = dir.path().join("caps");
    let (proxy, sink) = proxy_with_cbor(&up.base_url(), &capture_dir).await;
    let path = capture_dir.join("it-session.cbor");
    assert_eq!(sink.path(), path);

    let mut exchanges = Vec::new();
    for (stream, body) in [
        (false, body_bytes(false, 200)),
        (true, body_bytes(true, 0)),
        // A client that pastes the provider key: masked in the capture.
        (
            false,
            format!(
                "{{\"model\":\"gpt-4o\",\"messages\":[{{\"role\":\"user\",\"content\":\"key {PROVIDER_KEY}\"}}]}}"
            )
            .into_bytes(),
        ),
    ] {
        let resp = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .header("authorization", format!("Bearer {CLIENT_KEY}"))
            .header("content-type", "application/json")
            .header("x-session-id", "cbor-session-1")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let received = resp.bytes().await.unwrap().to_vec();
        exchanges.push((id, stream, body, received));
    }
    drop(proxy);
    assert!(sink.flush(Duration::from_secs(5)));
    sink.close();

    let bytes = std::fs::read(&path).unwrap();
    assert!(cbor::is_cbor_capture(&bytes));
    let capture = cbor::read_capture(&bytes).unwrap();
    assert_eq!(capture.header["magic"], "LLMPROXY-CAPTURE-V2");
    assert_eq!(capture.header["version"], 2);
    assert_eq!(capture.header["session_id"], "it-session");
    let seqs: Vec<u64> = capture.entries.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    // No secret, whole or in part, in the decompressed data, the metadata or the raw file.
    let raw = String::from_utf8_lossy(&bytes);
    for e in &capture.entries {
        let data = String::from_utf8_lossy(&e.data);
        let meta = Value::Object(e.meta.clone()).to_string();
        for secret in SECRETS {
            let part = &secret[secret.len() - 8..];
            for (what, text) in [("data", &*data), ("meta", &*meta), ("file", &*raw)] {
                assert!(!text.contains(part), "{secret} in the {what} of {e:?}");
            }
        }
    }

    for (id, streamed, sent, received) in &exchanges {
        let mine: Vec<&CborEntry> = capture
            .entries
            .iter()
            .filter(|e| e.meta["rid"] == id.as_str())
            .collect();
        let of = |dir: u64| -> Vec<&CborEntry> {
            mine.iter().copied().filter(|e| e.dir == dir).collect()
        };
        for dir in 0..4 {
            assert!(!of(dir).is_empty(), "direction {dir} of {id}: {mine:?}");
        }
        for e in &mine {
            assert_eq!(e.meta["sid"], "cbor-session-1", "{e:?}");
            assert_eq!(e.meta["transport"], "http");
        }
        let inbound = of(0);
        assert_eq!(inbound.len(), 1);
        assert!(
            inbound[0]
                .data
                .starts_with(b"POST /v1/chat/completions HTTP/1.1\r\n")
        );
        assert_eq!(inbound[0].meta["event"], "request");
        assert_eq!(inbound[0].meta["http_method"], "POST");
        let outbound = of(2);
        assert_eq!(outbound[0].meta["be"], "openai-compatible");
        assert!(
            outbound[0]
                .data
                .starts_with(b"POST /v1/chat/completions HTTP/1.1\r\n"),
            "{:?}",
            String::from_utf8_lossy(&outbound[0].data)
        );
        let answer = of(1);
        assert_eq!(answer[0].meta["event"], "response");
        assert_eq!(answer[0].meta["http_status"], 200);
        assert!(answer[0].meta["lat"].as_f64().is_some(), "latency known");
        if sent.windows(8).any(|w| w == &PROVIDER_KEY.as_bytes()[..8]) {
            // The pasted key is masked, the rest of the body kept.
            let body = http_body(&inbound[0].data);
            assert!(String::from_utf8_lossy(body).starts_with("{\"model\":\"gpt-4o\""));
            continue;
        }
        // The client's exact bytes, both ways (the answer as the proxy wrote it: its head's
        // body, or the frames after a stream's head).
        assert_eq!(http_body(&inbound[0].data), sent.as_slice());
        let mut got = http_body(&answer[0].data).to_vec();
        for frame in &answer[1..] {
            assert_eq!(frame.meta["event"], "frame");
            got.extend_from_slice(&frame.data);
        }
        assert_eq!(got, *received);
        if *streamed {
            assert_eq!(answer[0].meta["ss"], true);
            assert!(http_body(&answer[0].data).is_empty());
            for dir in [1, 3] {
                let frames: Vec<&CborEntry> = of(dir)
                    .into_iter()
                    .filter(|e| e.meta["event"] == "frame")
                    .collect();
                assert!(!frames.is_empty(), "frames of direction {dir}");
                for (i, f) in frames.iter().enumerate() {
                    assert_eq!(f.meta["ci"], i);
                    assert!(f.ts > 1.6e9);
                }
                assert_eq!(frames.last().unwrap().meta["se"], true);
            }
        } else {
            let upstream = of(3);
            assert_eq!(upstream.len(), 1, "a whole upstream answer is one entry");
            assert!(inbound[0].zlib, "a large client body is stored compressed");
        }
    }

    // The reader's JSON-lines view holds the same exchanges.
    let records = cbor::records(&capture);
    let (id, _, sent, received) = &exchanges[1];
    let answer = records
        .iter()
        .find(|r| r["request_id"] == id.as_str() && r["direction"] == "outbound_response")
        .unwrap();
    assert_eq!(
        answer["payload"].as_str().unwrap().as_bytes(),
        received.as_slice()
    );
    assert!(!answer["chunks"].as_array().unwrap().is_empty());
    let inbound = records
        .iter()
        .find(|r| r["request_id"] == id.as_str() && r["direction"] == "inbound_request")
        .unwrap();
    assert_eq!(
        inbound["payload"].as_str().unwrap().as_bytes(),
        sent.as_slice()
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}
