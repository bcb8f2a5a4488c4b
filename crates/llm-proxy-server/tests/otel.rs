//! OpenTelemetry traces end to end: a mock OTLP/HTTP collector on 127.0.0.1:0 decodes what the
//! proxy exports. A non-streamed, a streamed and a failed-over request each make one SERVER
//! span with the GenAI attributes (tokens equal to what the client received) and one CLIENT
//! span per attempt (the failed one in error), all in one trace; no secret reaches the
//! collector; nothing is traced with tracing off; a failed export counts its spans as dropped.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::AppState;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message as _;
use serde_json::{Value, json};

use crate::common::{client, serve_state, sse_data};

const PROVIDER_KEY: &str = "sk-planted-provider-key-0123456789";
const CLIENT_KEY: &str = "client-planted-key-0123456789abc";
const COLLECTOR_PASSWORD: &str = "collector-pass-0123456789";
const PROMPT: &str = "prompt-text-never-exported";

/// A collector that keeps every export request's body.
struct Collector {
    url: String,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn collector() -> Collector {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                ([("content-type", "application/x-protobuf")], Bytes::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Collector { url, bodies }
}

fn state(yaml: &str) -> AppState {
    let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).unwrap();
    let scrubber = cfg.scrubber().unwrap();
    AppState::build_with_scrubber(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
        scrubber,
    )
    .unwrap()
}

fn config(a: &MockUpstream, b: &MockUpstream, telemetry: &str) -> String {
    format!(
        "backends:\n  default_backend: openai.a\n  openai.a:\n    api_url: {}/v1\n    api_key: {PROVIDER_KEY}\n  openai.b:\n    api_url: {}/v1\n    api_key: {PROVIDER_KEY}\nauth:\n  api_keys: [{CLIENT_KEY}]\nrequest_dedup_window: 0\nfailure_handling:\n  min_retry_wait: 0\n{telemetry}",
        a.base_url(),
        b.base_url()
    )
}

/// Sends a chat request; returns the request id, the usage the client received and the text.
async fn chat(url: &str, model: &str, stream: bool) -> (String, (u64, u64)) {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({
            "model": model,
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": PROMPT}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let usage = if stream {
        let (chunks, done) = sse_data(&r.text().await.unwrap());
        assert!(done);
        chunks
            .iter()
            .rev()
            .find(|c| c["usage"].is_object())
            .map(|c| c["usage"].clone())
            .unwrap()
    } else {
        r.json::<Value>().await.unwrap()["usage"].clone()
    };
    let n = |k: &str| usage[k].as_u64().unwrap();
    (id, (n("prompt_tokens"), n("completion_tokens")))
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn decode(bodies: &[Bytes]) -> (Vec<Span>, Vec<String>) {
    let mut spans = Vec::new();
    let mut services = Vec::new();
    for body in bodies {
        let req = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
        for rs in req.resource_spans {
            for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
                if kv.key == "service.name"
                    && let Some(any_value::Value::StringValue(s)) =
                        kv.value.as_ref().and_then(|v| v.value.as_ref())
                {
                    services.push(s.clone());
                }
            }
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
    }
    (spans, services)
}

#[tokio::test]
async fn requests_and_attempts_become_genai_spans_without_secrets() {
    let (a, b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let otlp = collector().await;
    let endpoint = otlp
        .url
        .replace("http://", &format!("http://otel:{COLLECTOR_PASSWORD}@"));
    let state = state(&config(
        &a,
        &b,
        &format!("telemetry:\n  otlp_endpoint: {endpoint}\n  service_name: proxy-under-test\n"),
    ));
    let proxy = serve_state(state.clone()).await;

    b.push(Reply::json(openai::completion("answer-text-one")));
    let plain = chat(&proxy.url, "openai.b:m-plain", false).await;
    b.push(Reply::sse(openai::text_stream(&["answer-", "text-two"])));
    let streamed = chat(&proxy.url, "openai.b:m-stream", true).await;
    a.push(Reply::error(
        503,
        json!({"error": {"message": "a is down"}}),
    ));
    b.push(Reply::json(openai::completion("answer-text-three")));
    let failover = chat(&proxy.url, "openai.a:m-a|openai.b:m-b", false).await;
    assert_eq!((a.calls(), b.calls()), (1, 3));

    let sink = state.pipeline().trace_sink().unwrap().clone();
    sink.flush().await;
    assert_eq!((sink.exported(), sink.dropped()), (7, 0));
    let bodies = otlp.bodies.lock().unwrap().clone();
    let raw: Vec<u8> = bodies.iter().flat_map(|b| b.to_vec()).collect();
    let raw = String::from_utf8_lossy(&raw);
    // Neither secrets nor content: the prompt and the answers stay out of the spans.
    for secret in [
        PROVIDER_KEY,
        CLIENT_KEY,
        COLLECTOR_PASSWORD,
        PROMPT,
        "answer-text",
        "text-two",
    ] {
        assert!(!raw.contains(secret), "{secret} was exported");
    }
    let (spans, services) = decode(&bodies);
    assert!(services.iter().all(|s| s == "proxy-under-test") && !services.is_empty());
    assert_eq!(spans.len(), 7, "3 requests, 4 attempts");
    let mut span_ids: Vec<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
    span_ids.sort();
    span_ids.dedup();
    assert_eq!(span_ids.len(), 7, "span ids are unique");

    let cases = [
        (
            &plain,
            "openai.b:m-plain",
            "m-plain",
            vec![("m-plain", None)],
        ),
        (
            &streamed,
            "openai.b:m-stream",
            "m-stream",
            vec![("m-stream", None)],
        ),
        (
            &failover,
            "openai.a:m-a|openai.b:m-b",
            "m-b",
            vec![("m-a", Some(503)), ("m-b", None)],
        ),
    ];
    let mut trace_ids = Vec::new();
    for ((request_id, (input, output)), requested, served, attempts) in cases {
        let roots: Vec<&Span> = spans
            .iter()
            .filter(|s| text(s, "llm_proxy.request_id") == Some(request_id.as_str()))
            .collect();
        assert_eq!(roots.len(), 1, "one span for request {request_id}");
        let root = roots[0];
        assert!(root.parent_span_id.is_empty());
        assert_eq!(root.kind, span::SpanKind::Server as i32);
        assert_eq!(root.name, format!("chat {requested}"));
        assert_eq!(text(root, "gen_ai.operation.name"), Some("chat"));
        assert_eq!(text(root, "gen_ai.provider.name"), Some("openai"));
        assert_eq!(text(root, "gen_ai.request.model"), Some(requested));
        assert_eq!(text(root, "gen_ai.response.model"), Some(served));
        assert_eq!(int(root, "gen_ai.usage.input_tokens"), Some(*input as i64));
        assert_eq!(
            int(root, "gen_ai.usage.output_tokens"),
            Some(*output as i64)
        );
        assert_eq!(int(root, "http.response.status_code"), Some(200));
        assert_eq!(text(root, "server.address"), Some("127.0.0.1"));
        assert_eq!(text(root, "llm_proxy.backend"), Some("openai.b"));
        assert_eq!(text(root, "error.type"), None);
        match attr(root, "gen_ai.response.finish_reasons") {
            Some(any_value::Value::ArrayValue(a)) => assert_eq!(
                a.values
                    .iter()
                    .map(|v| v.value.clone().unwrap())
                    .collect::<Vec<_>>(),
                [any_value::Value::StringValue("stop".into())]
            ),
            other => panic!("finish reasons: {other:?}"),
        }
        assert_ne!(
            root.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        assert!(root.end_time_unix_nano >= root.start_time_unix_nano);

        let mut children: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == root.span_id)
            .collect();
        children.sort_by_key(|s| s.start_time_unix_nano);
        assert_eq!(children.len(), attempts.len(), "{request_id}");
        for (child, (model, failed_status)) in children.iter().zip(&attempts) {
            assert_eq!(child.trace_id, root.trace_id);
            assert_eq!(child.kind, span::SpanKind::Client as i32);
            assert_eq!(child.name, format!("chat {model}"));
            assert_eq!(text(child, "gen_ai.request.model"), Some(*model));
            assert_eq!(text(child, "gen_ai.provider.name"), Some("openai"));
            assert_eq!(text(child, "server.address"), Some("127.0.0.1"));
            assert!(int(child, "server.port").is_some());
            assert!(child.start_time_unix_nano >= root.start_time_unix_nano);
            assert!(child.end_time_unix_nano <= root.end_time_unix_nano);
            let code = child.status.as_ref().map_or(0, |s| s.code);
            match failed_status {
                Some(s) => {
                    assert_eq!(code, status::StatusCode::Error as i32);
                    assert_eq!(int(child, "http.response.status_code"), Some(i64::from(*s)));
                    assert!(text(child, "error.type").is_some());
                    assert_eq!(text(child, "llm_proxy.backend"), Some("openai.a"));
                }
                None => {
                    assert_ne!(code, status::StatusCode::Error as i32);
                    assert_eq!(text(child, "error.type"), None);
                    assert_eq!(text(child, "llm_proxy.backend"), Some("openai.b"));
                }
            }
        }
        trace_ids.push(root.trace_id.clone());
    }
    trace_ids.dedup();
    assert_eq!(trace_ids.len(), 3, "one trace per request");
}

#[tokio::test]
async fn a_client_traceparent_makes_the_request_span_its_child() {
    let (a, b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let otlp = collector().await;
    let state = state(&config(
        &a,
        &b,
        &format!("telemetry:\n  otlp_endpoint: {}\n", otlp.url),
    ));
    let proxy = serve_state(state.clone()).await;
    for (traceparent, traced) in [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            true,
        ),
        // The caller did not sample its trace: neither does the proxy.
        (
            "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            false,
        ),
    ] {
        a.push(Reply::json(openai::completion("ok")));
        let r = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .bearer_auth(CLIENT_KEY)
            .header("traceparent", traceparent)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let sink = state.pipeline().trace_sink().unwrap();
        sink.flush().await;
        let (spans, _) = decode(&otlp.bodies.lock().unwrap());
        let root = spans
            .iter()
            .find(|s| s.kind == span::SpanKind::Server as i32);
        if traced {
            let root = root.unwrap();
            assert_eq!(
                root.trace_id,
                [
                    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e,
                    0x0e, 0x47, 0x36
                ]
            );
            assert_eq!(
                root.parent_span_id,
                [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
            );
            assert_eq!(spans.len(), 2);
        } else {
            assert_eq!(spans.len(), 2, "nothing more was exported");
        }
    }
}

#[tokio::test]
async fn nothing_is_traced_with_tracing_off() {
    let (a, b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let state = state(&config(&a, &b, ""));
    assert!(state.pipeline().trace_sink().is_none());
    assert!(!state.pipeline().traces());
    let hooks = state.pipeline().describe()["finish_hooks"].clone();
    assert!(
        !hooks.as_array().unwrap().contains(&json!("traces")),
        "{hooks}"
    );
    let proxy = serve_state(state).await;
    a.push(Reply::json(openai::completion("ok")));
    chat(&proxy.url, "m", false).await;
}

#[tokio::test]
async fn spans_of_a_failed_export_are_counted_as_dropped() {
    let (a, b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let state = state(&config(
        &a,
        &b,
        &format!("telemetry:\n  otlp_endpoint: {dead}\n"),
    ));
    let proxy = serve_state(state.clone()).await;
    a.push(Reply::json(openai::completion("ok")));
    chat(&proxy.url, "m", false).await;
    let sink = state.pipeline().trace_sink().unwrap();
    sink.flush().await;
    assert_eq!((sink.exported(), sink.dropped()), (0, 2));
}
