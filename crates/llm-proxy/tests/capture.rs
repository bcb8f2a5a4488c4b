//! `llm-proxy capture` against a capture the real binary wrote: `show` prints the four
//! boundaries, `export-har` writes a HAR 1.2 document with the spec's required fields, and
//! `replay` re-sends a captured request to a running proxy (the `mock` backend answers the
//! same again: exit 0; against a capture whose answer was altered: a diff and exit 1); the
//! same commands on a CBOR V2 capture written with `--cbor-capture-dir`.

use std::process::{Command, Output};

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{start_with, stop};

fn capture(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llm-proxy"))
        .env_clear()
        .arg("capture")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn post(url: &str, body: &Value) -> (String, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    (id, resp.bytes().await.unwrap().to_vec())
}

/// The fields HAR 1.2 requires (http://www.softwareishard.com/blog/har-12-spec/), with
/// their types.
fn assert_har_1_2(har: &Value) {
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert!(log["creator"]["name"].is_string() && log["creator"]["version"].is_string());
    let entries = log["entries"].as_array().expect("log.entries");
    assert!(!entries.is_empty());
    for e in entries {
        let started = e["startedDateTime"].as_str().expect("startedDateTime");
        assert!(
            started.len() >= 20 && started.as_bytes()[10] == b'T' && started.ends_with('Z'),
            "ISO 8601: {started}"
        );
        assert!(e["time"].as_f64().expect("time") >= 0.0);
        let rq = &e["request"];
        assert!(rq["method"].is_string() && rq["url"].is_string() && rq["httpVersion"].is_string());
        for key in ["cookies", "headers", "queryString"] {
            assert!(rq[key].is_array(), "request.{key}");
        }
        for h in rq["headers"].as_array().unwrap() {
            assert!(h["name"].is_string() && h["value"].is_string());
        }
        assert!(rq["headersSize"].is_i64() && rq["bodySize"].is_i64());
        if let Some(post) = rq.get("postData") {
            assert!(post["mimeType"].is_string() && post["text"].is_string());
        }
        let rs = &e["response"];
        assert!(rs["status"].is_u64() && rs["statusText"].is_string());
        assert!(rs["httpVersion"].is_string() && rs["redirectURL"].is_string());
        assert!(rs["cookies"].is_array() && rs["headers"].is_array());
        assert!(rs["content"]["size"].is_i64() && rs["content"]["mimeType"].is_string());
        assert!(rs["headersSize"].is_i64() && rs["bodySize"].is_i64());
        assert!(e["cache"].is_object());
        let t = &e["timings"];
        for key in ["send", "wait", "receive"] {
            assert!(t[key].as_f64().expect(key) >= 0.0, "timings.{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn show_export_har_and_replay_a_capture() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(openai::text_stream(&["up", "stream"])));
    let tmp = tempfile::tempdir().unwrap();
    let capture_file = tmp.path().join("wire.jsonl");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "request_dedup_window: 0\nlogging:\n  capture_file: {}\nbackends:\n  default_backend: mock\n  mock: {{}}\n  openai-compatible:\n    api_url: {}/v1\n    api_key: sk-upstream-0123456789abcdef\n",
            capture_file.display(),
            up.base_url()
        ),
    )
    .unwrap();

    let (proxy, url) = start_with(&config, &[] as &[&str]);
    let (upstream_id, _) = post(
        &url,
        &json!({"model": "openai-compatible:gpt-4o", "stream": true,
                "messages": [{"role": "user", "content": "through the upstream"}]}),
    )
    .await;
    let (mock_id, _) = post(
        &url,
        &json!({"model": "mock:echo", "messages": [{"role": "user", "content": "say it again"}]}),
    )
    .await;
    let (stream_id, streamed) = post(
        &url,
        &json!({"model": "mock:echo", "stream": true,
                "messages": [{"role": "user", "content": "stream it again"}]}),
    )
    .await;
    assert!(String::from_utf8_lossy(&streamed).contains("data: [DONE]"));
    stop(proxy);
    let file = capture_file.to_str().unwrap();

    // show: the four boundaries in order, the JSON body pretty-printed, streamed pieces listed.
    let shown = capture(&["show", file, "--request-id", &upstream_id]);
    assert!(shown.status.success(), "{shown:?}");
    let text = stdout(&shown);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in\n{text}"))
    };
    assert!(at("── inbound_request") < at("── outbound_request"));
    assert!(at("── outbound_request") < at("── inbound_response"));
    assert!(at("── inbound_response") < at("── outbound_response"));
    assert!(text.contains(&format!("request {upstream_id}")));
    assert!(
        text.contains("\"content\": \"through the upstream\""),
        "{text}"
    );
    assert!(text.contains(" chunks:"), "{text}");
    assert!(text.contains("[0] +0.000s"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "the key leaked: {text}");
    let all = stdout(&capture(&["show", file]));
    for id in [&upstream_id, &mock_id, &stream_id] {
        assert!(all.contains(&format!("request {id}")), "{all}");
    }
    let missing = capture(&["show", file, "--request-id", "req_nope"]);
    assert!(!missing.status.success());

    // export-har: valid HAR 1.2, the client and the upstream exchange as entries.
    let har_path = tmp.path().join("out.har");
    let exported = capture(&["export-har", file, "-o", har_path.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    let har: Value = serde_json::from_str(&std::fs::read_to_string(&har_path).unwrap()).unwrap();
    assert_har_1_2(&har);
    let entries = har["log"]["entries"].as_array().unwrap();
    let of_upstream: Vec<&Value> = entries
        .iter()
        .filter(|e| e["_requestId"] == upstream_id.as_str())
        .collect();
    assert_eq!(of_upstream.len(), 2, "client and upstream exchange");
    assert_eq!(of_upstream[0]["_boundary"], "client");
    assert_eq!(of_upstream[0]["request"]["method"], "POST");
    assert!(
        of_upstream[0]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/chat/completions")
    );
    assert_eq!(of_upstream[1]["_boundary"], "upstream");
    assert!(
        of_upstream[1]["response"]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("data: [DONE]")
    );
    let one = tmp.path().join("one.har");
    let exported = capture(&[
        "export-har",
        file,
        "--request-id",
        &mock_id,
        "-o",
        one.to_str().unwrap(),
    ]);
    assert!(exported.status.success());
    let one: Value = serde_json::from_str(&std::fs::read_to_string(&one).unwrap()).unwrap();
    assert_har_1_2(&one);
    assert_eq!(one["log"]["entries"].as_array().unwrap().len(), 1);

    // replay: a fresh proxy answers the mock requests the same again.
    let (proxy, url) = start_with(&config, &[] as &[&str]);
    for id in [&mock_id, &stream_id] {
        let replayed = capture(&["replay", file, "--request-id", id, "--to", &url]);
        assert!(
            replayed.status.success(),
            "{}\n{}",
            stdout(&replayed),
            String::from_utf8_lossy(&replayed.stderr)
        );
        assert!(stdout(&replayed).contains("same answer"));
    }
    // A capture whose answer differs from what the proxy says now: a diff, exit status 1.
    let altered = tmp.path().join("altered.jsonl");
    let rewritten: String = std::fs::read_to_string(&capture_file)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|mut r| {
            if r["request_id"] == mock_id.as_str() && r["direction"] == "outbound_response" {
                let p = r["payload"]
                    .as_str()
                    .unwrap()
                    .replace("say it again", "something else");
                r["payload"] = p.into();
            }
            format!("{r}\n")
        })
        .collect();
    std::fs::write(&altered, rewritten).unwrap();
    let replayed = capture(&[
        "replay",
        altered.to_str().unwrap(),
        "--request-id",
        &mock_id,
        "--to",
        &url,
    ]);
    assert_eq!(replayed.status.code(), Some(1), "{replayed:?}");
    let diff = stdout(&replayed);
    assert!(
        diff.contains("-") && diff.contains("something else"),
        "{diff}"
    );
    assert!(
        diff.contains("+") && diff.contains("say it again"),
        "{diff}"
    );
    stop(proxy);
}

/// The binary writes CBOR V2 with `--cbor-capture-dir` (over the configured JSON-lines file),
/// and `capture show`, `export-har` and `replay` read that file as they read JSON lines.
#[tokio::test(flavor = "multi_thread")]
async fn the_capture_commands_read_a_cbor_capture() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(openai::text_stream(&["cbor", "stream"])));
    let tmp = tempfile::tempdir().unwrap();
    let jsonl = tmp.path().join("not-written.jsonl");
    let dir = tmp.path().join("cbor");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "request_dedup_window: 0\nlogging:\n  capture_file: {}\nbackends:\n  default_backend: mock\n  mock: {{}}\n  openai-compatible:\n    api_url: {}/v1\n    api_key: sk-upstream-0123456789abcdef\n",
            jsonl.display(),
            up.base_url()
        ),
    )
    .unwrap();
    let (proxy, url) = start_with(
        &config,
        &[
            std::ffi::OsStr::new("--cbor-capture-dir"),
            dir.as_os_str(),
            std::ffi::OsStr::new("--cbor-capture-session"),
            std::ffi::OsStr::new("bin-run"),
        ],
    );
    let (upstream_id, _) = post(
        &url,
        &json!({"model": "openai-compatible:gpt-4o", "stream": true,
                "messages": [{"role": "user", "content": "cbor through the upstream"}]}),
    )
    .await;
    let (mock_id, _) = post(
        &url,
        &json!({"model": "mock:echo", "messages": [{"role": "user", "content": "cbor again"}]}),
    )
    .await;
    stop(proxy);
    assert!(!jsonl.exists(), "CBOR capture takes precedence");
    let path = dir.join("bin-run.cbor");
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        String::from_utf8_lossy(&bytes[..64]).contains("LLMPROXY-CAPTURE-V2"),
        "a CBOR V2 header"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let file = path.to_str().unwrap();

    let shown = capture(&["show", file, "--request-id", &upstream_id]);
    assert!(shown.status.success(), "{shown:?}");
    let text = stdout(&shown);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing in\n{text}"))
    };
    assert!(at("── inbound_request") < at("── outbound_request"));
    assert!(at("── outbound_request") < at("── inbound_response"));
    assert!(at("── inbound_response") < at("── outbound_response"));
    assert!(
        text.contains("\"content\": \"cbor through the upstream\""),
        "{text}"
    );
    assert!(
        text.contains(" chunks:") && text.contains("[0] +0.000s"),
        "{text}"
    );
    assert!(!text.contains("0123456789abcdef"), "the key leaked: {text}");

    let har_path = tmp.path().join("cbor.har");
    let exported = capture(&["export-har", file, "-o", har_path.to_str().unwrap()]);
    assert!(exported.status.success(), "{exported:?}");
    let har: Value = serde_json::from_str(&std::fs::read_to_string(&har_path).unwrap()).unwrap();
    assert_har_1_2(&har);
    let entries = har["log"]["entries"].as_array().unwrap();
    let of_upstream: Vec<&Value> = entries
        .iter()
        .filter(|e| e["_requestId"] == upstream_id.as_str())
        .collect();
    assert_eq!(of_upstream.len(), 2, "client and upstream exchange");
    assert_eq!(of_upstream[1]["_boundary"], "upstream");
    assert!(
        of_upstream[1]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/chat/completions")
    );
    assert!(
        of_upstream[0]["response"]["content"]["text"]
            .as_str()
            .unwrap()
            .contains("data: [DONE]")
    );

    let (proxy, url) = start_with(&config, &[] as &[&str]);
    let replayed = capture(&["replay", file, "--request-id", &mock_id, "--to", &url]);
    assert!(
        replayed.status.success(),
        "{}\n{}",
        stdout(&replayed),
        String::from_utf8_lossy(&replayed.stderr)
    );
    assert!(stdout(&replayed).contains("same answer"));
    stop(proxy);
}
