//! Backend plugins end to end: the real `ollama-native` plugin crate and two misbehaving test
//! plugins are linked into this binary; discovery finds them, the proxy starts, serves chat
//! through every frontend via the plugin, captures its upstream traffic, and reports all of it
//! at `/v1/diagnostics`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ConnectInfo;
use llm_proxy_api::http::{CaptureAwareClient, build_capture_aware_client};
use llm_proxy_api::plugin::linked_entries;
use llm_proxy_server::capture::JsonlCaptureSink;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::{AccessMode, Origin, Plugins, SkipKind};
use llm_proxy_server::{AppState, app};
use llm_proxy_test_support::{MockUpstream, Reply, ollama, openai};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{chat_body, client, serve_state, sse_data};

const OLLAMA_KEY: &str = "sk-ollama-secret-0123456789";

fn link_plugins() {
    llm_proxy_plugin_ollama_native::link();
    llm_proxy_plugin_test_fixtures::link();
}

fn config(yaml: &str) -> llm_proxy_server::config::GatewayConfig {
    load_from_str(yaml, &CliOverrides::default(), &Env::default()).expect("config")
}

fn ollama_config(upstream: &str) -> String {
    format!(
        "backends:\n  default_backend: ollama-native\n  ollama-native:\n    api_url: {upstream}\n    api_key: {OLLAMA_KEY}\n    extra:\n      keep_alive: 5m\n"
    )
}

fn capture_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-proxy-plugin-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn the_reference_plugin_is_discovered_from_its_linked_crate() {
    link_plugins();
    let plugins = Plugins::from_linked();
    let origin = plugins
        .registry
        .origin("ollama-native")
        .expect("registered");
    assert_eq!(origin.origin, Origin::Plugin);
    assert_eq!(origin.distribution, "llm-proxy-plugin-ollama-native");
    assert_eq!(origin.plugin_name, "llm-proxy-plugin-ollama-native");
    let meta = &plugins.report.metadata["ollama-native"];
    assert_eq!(meta.core_min_version, "0.1.0");
    assert!(!plugins.report.core_only);
    // Core connectors came through the same mechanism.
    assert_eq!(
        plugins.registry.origin("openai").map(|o| o.origin),
        Some(Origin::Core)
    );
}

#[tokio::test]
async fn broken_and_incompatible_plugins_warn_once_each_and_the_proxy_serves() {
    link_plugins();
    let plugins = Plugins::from_linked();
    let report = &plugins.report;
    let warnings_about = |name: &str| report.warnings.iter().filter(|w| w.contains(name)).count();
    assert_eq!(warnings_about("broken-fixture"), 1, "{:?}", report.warnings);
    assert_eq!(
        warnings_about("incompatible-fixture"),
        1,
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("requires core>=99.0.0, running core is"))
    );
    let kind_of = |name: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.entry_name == name)
            .map(|s| s.kind)
    };
    assert_eq!(kind_of("broken-fixture"), Some(SkipKind::LoadFailed));
    assert_eq!(
        kind_of("incompatible-fixture"),
        Some(SkipKind::Incompatible)
    );
    assert!(!plugins.registry.contains("broken-fixture"));
    assert!(!plugins.registry.contains("incompatible-fixture"));

    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::json(openai::completion("still serving")));
    let cfg = config(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    api_key: sk-test-secret-0123456789\n",
        up.base_url()
    ));
    let state =
        AppState::build(cfg, plugins, CaptureAwareClient::plain().unwrap()).expect("starts");
    let proxy = serve_state(state).await;
    let resp: Value = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["choices"][0]["message"]["content"], "still serving");
}

/// Capture records of one request id.
/// The upstream side of a request's capture (the client side is `capture_boundaries`'s).
fn records_of<'a>(records: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["request_id"] == request_id)
        .filter(|r| r["direction"] == "outbound_request" || r["direction"] == "inbound_response")
        .collect()
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn ollama_native_serves_every_frontend_and_its_traffic_is_captured() {
    link_plugins();
    let up = MockUpstream::start().await.unwrap();
    let cfg = config(&ollama_config(&up.base_url()));
    let path = capture_path("ollama.jsonl");
    let sink = JsonlCaptureSink::open(&path, cfg.scrubber().unwrap()).unwrap();
    let http =
        build_capture_aware_client(reqwest::Client::builder(), Some(sink.clone()), None).unwrap();
    let state = AppState::build(cfg, Plugins::from_linked(), http).expect("state");
    let proxy = serve_state(state).await;
    let mut ids = Vec::new();

    // OpenAI, not streamed: one JSON object from /api/chat (stream: false).
    up.push(Reply::json(ollama::chat_response("Hi there")));
    let mut body = chat_body(false);
    body["model"] = json!("llama3.2");
    body["messages"] = json!([{"role": "user", "content": format!("my key is {OLLAMA_KEY}")}]);
    body["temperature"] = json!(0.3);
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    ids.push(request_id(&resp));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(answer["usage"]["prompt_tokens"], 11);
    assert_eq!(answer["usage"]["completion_tokens"], 7);

    // OpenAI, streamed, with reasoning: NDJSON lines become SSE chunks.
    up.push(Reply::ndjson(ollama::text_stream(
        Some("Thinking it over."),
        &["Hel", "lo"],
    )));
    let mut body = chat_body(true);
    body["model"] = json!("ollama-native:qwen3");
    body["reasoning_effort"] = json!("high");
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    ids.push(request_id(&resp));
    let (chunks, done) = sse_data(&resp.text().await.unwrap());
    assert!(done);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello");
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "Thinking it over.");
    assert_eq!(
        chunks
            .iter()
            .rev()
            .find_map(|c| c["usage"]["completion_tokens"].as_u64()),
        Some(7)
    );

    // OpenAI, streamed tool call: Ollama's object arguments reach the client as JSON text.
    up.push(Reply::ndjson(ollama::tool_call_stream(
        "get_weather",
        json!({"city": "Paris"}),
    )));
    let mut body = chat_body(true);
    body["model"] = json!("llama3.2");
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    ids.push(request_id(&resp));
    let (chunks, _) = sse_data(&resp.text().await.unwrap());
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["name"].as_str());
    assert_eq!(call, Some("get_weather"));
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));

    // Anthropic Messages, streamed.
    up.push(Reply::ndjson(ollama::text_stream(None, &["Bon", "jour"])));
    let resp = client()
        .post(format!("{}/v1/messages", proxy.url))
        .json(
            &json!({"model": "llama3.2", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "hello"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    ids.push(request_id(&resp));
    let events = resp.text().await.unwrap();
    let text: String = sse_data(&events)
        .0
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Bonjour");
    assert!(events.contains("message_stop"));

    // Gemini generateContent, not streamed.
    up.push(Reply::json(ollama::chat_response("Hallo")));
    let resp = client()
        .post(format!(
            "{}/v1beta/models/llama3.2:generateContent",
            proxy.url
        ))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    ids.push(request_id(&resp));
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"],
        "Hallo"
    );

    // What Ollama received: its native API, not OpenAI's.
    let sent = up.requests();
    assert_eq!(sent.len(), 5);
    assert!(
        sent.iter().all(|r| r.uri == "/api/chat"),
        "{:?}",
        sent.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    assert_eq!(sent[0].body["stream"], false);
    assert_eq!(sent[0].body["model"], "llama3.2");
    assert_eq!(sent[0].body["options"]["temperature"], 0.3);
    assert_eq!(sent[0].body["keep_alive"], "5m");
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Bearer {OLLAMA_KEY}")
    );
    assert_eq!(sent[1].body["stream"], true);
    assert_eq!(sent[1].body["model"], "qwen3");
    assert_eq!(sent[1].body["think"], true);
    assert_eq!(sent[2].body["tools"][0]["function"]["name"], "get_weather");

    // Every call's upstream exchange is in the capture file, with the key's name, never its
    // value (neither from the header nor from the user's message).
    assert!(sink.flush(Duration::from_secs(5)));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains(OLLAMA_KEY),
        "the key leaked into the capture"
    );
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in &ids {
        let mine = records_of(&records, id);
        let directions: Vec<&str> = mine
            .iter()
            .filter_map(|r| r["direction"].as_str())
            .collect();
        assert_eq!(
            directions,
            ["outbound_request", "inbound_response"],
            "request {id}"
        );
        for record in &mine {
            assert_eq!(record["backend"], "ollama-native");
            assert_eq!(record["key_name"], "backends.ollama-native.api_key");
        }
        assert!(mine[0]["url"].as_str().unwrap().ends_with("/api/chat"));
        assert_eq!(mine[1]["status"], 200);
    }
    let first = records_of(&records, &ids[0]);
    assert!(
        first[0]["payload"]
            .as_str()
            .unwrap()
            // Prompt redaction replaced the key before the request was built (the capture's
            // own masking would have written `[REDACTED]`).
            .contains("my key is (API_KEY_HAS_BEEN_REDACTED)")
    );
    assert!(
        first[0]["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let streamed = records_of(&records, &ids[1]);
    assert_eq!(streamed[1]["content_type"], "application/x-ndjson");
    assert!(
        streamed[1]["payload"]
            .as_str()
            .unwrap()
            .contains("\"done\":true")
    );
    assert_eq!(sink.dropped(), 0);
    sink.close();
}

#[tokio::test]
async fn diagnostics_report_plugins_to_loopback_clients_only() {
    link_plugins();
    let up = MockUpstream::start().await.unwrap();
    let cfg = config(&format!(
        "{}  openai:\n    api_url: {}/v1\n    api_key: sk-test-secret-0123456789\n",
        ollama_config(&up.base_url()),
        up.base_url()
    ));
    let state = AppState::build(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
    )
    .unwrap();

    // Over a real socket from 127.0.0.1.
    let proxy = serve_state(state.clone()).await;
    let resp = client()
        .get(format!("{}/v1/diagnostics", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["access_mode"], "single_user");
    let types = report["backend_types"].as_array().unwrap();
    let ollama = types.iter().find(|t| t["name"] == "ollama-native").unwrap();
    assert_eq!(ollama["origin"], "plugin");
    assert_eq!(ollama["distribution"], "llm-proxy-plugin-ollama-native");
    assert_eq!(ollama["version_range"], ">=0.1.0, <=0.99.0");
    let openai_type = types.iter().find(|t| t["name"] == "openai").unwrap();
    assert_eq!(openai_type["origin"], "core");
    let skipped: Vec<&str> = report["skipped_plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["entry_name"].as_str())
        .collect();
    assert!(
        skipped.contains(&"broken-fixture") && skipped.contains(&"incompatible-fixture"),
        "{skipped:?}"
    );
    let instances = report["instances"].as_array().unwrap();
    assert!(
        instances
            .iter()
            .any(|i| i["instance"] == "ollama-native" && i["available"] == true)
    );
    assert_eq!(
        report["capture"],
        json!({"enabled": false, "dropped_records": 0})
    );
    assert_eq!(report["known_plugins"][0]["linked"], true);

    // Any other peer (or none known) is refused in the OpenAI envelope.
    let remote: SocketAddr = ([10, 1, 2, 3], 40_000).into();
    for peer in [Some(remote), None] {
        let mut request = http::Request::get("/v1/diagnostics")
            .body(axum::body::Body::empty())
            .unwrap();
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let resp = app(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(resp.status(), 403);
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("loopback")
        );
    }
}

/// Discovery over the linked entries minus the reference plugin: as if the binary had been
/// built without its Cargo feature.
fn without_ollama(mode: AccessMode) -> Plugins {
    let entries: Vec<_> = linked_entries()
        .into_iter()
        .filter(|e| e.name != "ollama-native")
        .collect();
    Plugins::discover(&entries, mode, llm_proxy_api::CORE_VERSION, None)
}

#[tokio::test]
async fn a_configured_plugin_that_is_not_linked_gets_install_guidance() {
    link_plugins();
    // Only the missing plugin is configured: startup fails, naming the feature.
    let only = config(&ollama_config("http://127.0.0.1:9"));
    let Err(error) = AppState::build(
        only,
        without_ollama(AccessMode::SingleUser),
        CaptureAwareClient::plain().unwrap(),
    ) else {
        panic!("startup must fail without a viable backend");
    };
    let message = error.to_string();
    assert!(
        message.contains("missing_extracted_backends_no_viable_path"),
        "{message}"
    );
    assert!(
        message.contains("cargo build --release -p llm-proxy --features ollama-native"),
        "{message}"
    );

    // With another usable backend, startup continues and the instance explains itself.
    let up = MockUpstream::start().await.unwrap();
    let both = config(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n  ollama-native:\n    api_url: http://127.0.0.1:9\n",
        up.base_url()
    ));
    let plugins = without_ollama(AccessMode::SingleUser);
    let guidance = plugins
        .unavailable_backend_message("ollama-native")
        .expect("guidance");
    assert!(guidance.contains("--features ollama-native"), "{guidance}");
    let state =
        AppState::build(both, plugins, CaptureAwareClient::plain().unwrap()).expect("starts");
    let slot = &state.backends()["ollama-native"];
    assert_eq!(slot.backend.as_ref().err(), Some(&guidance));
    let proxy = serve_state(state).await;
    let mut body = chat_body(false);
    body["model"] = json!("ollama-native:llama3.2");
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error() || resp.status().is_server_error());
    let answer: Value = resp.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("--features ollama-native"), "{message}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn post_build_hooks_see_the_built_backends() {
    link_plugins();
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    fn hooked() -> llm_proxy_api::BackendPluginDefinition {
        llm_proxy_plugin_ollama_native::provider().with_post_build_hook(|services| {
            SEEN.lock()
                .unwrap()
                .extend(services.backend_names.iter().cloned());
            Ok(())
        })
    }
    fn failing_hook() -> llm_proxy_api::BackendPluginDefinition {
        llm_proxy_api::BackendPluginDefinition::new(
            "aaa-hook-fails",
            "hook-plugin",
            llm_proxy_api::PluginCompatibility::new("0.1.0"),
            |_args| Err(llm_proxy_api::BackendError::internal("unused")),
        )
        .with_post_build_hook(|_services| Err("hook refused".into()))
    }
    let mut entries: Vec<_> = linked_entries()
        .into_iter()
        .filter(|e| e.name != "ollama-native")
        .collect();
    let template = linked_entries()
        .into_iter()
        .find(|e| e.name == "ollama-native")
        .unwrap();
    entries.push(llm_proxy_api::plugin::BackendPluginEntry {
        provider: hooked,
        ..template
    });
    entries.push(llm_proxy_api::plugin::BackendPluginEntry {
        name: "aaa-hook-fails",
        provider: failing_hook,
        ..template
    });
    let plugins = Plugins::discover(
        &entries,
        AccessMode::SingleUser,
        llm_proxy_api::CORE_VERSION,
        None,
    );
    let up = MockUpstream::start().await.unwrap();
    let cfg = config(&ollama_config(&up.base_url()));
    let state = AppState::build(cfg, plugins, CaptureAwareClient::plain().unwrap())
        .expect("hooks are fail-open");
    let seen = SEEN.lock().unwrap().clone();
    assert!(
        seen.contains(&"ollama-native".to_owned()) && seen.contains(&"openai".to_owned()),
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "sorted: {seen:?}");
    assert_eq!(
        state.plugins().hook_warnings(),
        ["Plugin post-build hook failed for backend 'aaa-hook-fails': hook refused"]
    );
}

#[tokio::test]
async fn multi_user_mode_blocks_personal_credential_plugins_with_a_clear_error() {
    fn personal() -> llm_proxy_api::BackendPluginDefinition {
        llm_proxy_plugin_ollama_native::provider().requiring_personal_credentials()
    }
    let template = linked_entries()
        .into_iter()
        .find(|e| e.name == "ollama-native")
        .unwrap();
    let mut entries: Vec<_> = linked_entries()
        .into_iter()
        .filter(|e| e.name != "ollama-native")
        .collect();
    entries.push(llm_proxy_api::plugin::BackendPluginEntry {
        provider: personal,
        ..template
    });
    let up = MockUpstream::start().await.unwrap();
    let cfg = config(&format!(
        "{}  openai:\n    api_url: {}/v1\n",
        ollama_config(&up.base_url())
            .replace("default_backend: ollama-native", "default_backend: openai"),
        up.base_url()
    ));

    // Single-user mode: the same plugin registers and serves.
    let single = Plugins::discover(
        &entries,
        AccessMode::SingleUser,
        llm_proxy_api::CORE_VERSION,
        None,
    );
    assert!(single.registry.contains("ollama-native"));

    let multi = Plugins::discover(
        &entries,
        AccessMode::MultiUser,
        llm_proxy_api::CORE_VERSION,
        None,
    );
    assert_eq!(multi.report.blocked, ["ollama-native"]);
    let state =
        AppState::build(cfg, multi, CaptureAwareClient::plain().unwrap()).expect("openai remains");
    let why = state.backends()["ollama-native"]
        .backend
        .as_ref()
        .err()
        .cloned()
        .unwrap();
    assert!(why.contains("not available in Multi User Mode"), "{why}");
    let proxy = serve_state(state).await;
    let report: Value = client()
        .get(format!("{}/v1/diagnostics", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["access_mode"], "multi_user");
    assert_eq!(report["blocked"], json!(["ollama-native"]));
    let mut body = chat_body(false);
    body["model"] = json!("ollama-native:llama3.2");
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(!resp.status().is_success());
    let answer: Value = resp.json().await.unwrap();
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not available in Multi User Mode"),
        "{message}"
    );
    assert_eq!(up.calls(), 0);
}
