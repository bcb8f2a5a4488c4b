//! The HTTP edge: a declared oversized body is refused before it is read, and responses the
//! framework makes on its own (405, unreadable path parameters) come in the path protocol's
//! error envelope.

use std::time::Duration;

use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::AppState;
use llm_proxy_server::anthropic_app;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{client, serve_router, start_proxy};

/// The envelope of each protocol, checked by shape.
fn assert_openai(v: &Value) {
    assert!(v["error"]["message"].is_string(), "OpenAI envelope: {v}");
    assert!(v["error"]["type"].is_string(), "OpenAI envelope: {v}");
}

fn assert_anthropic(v: &Value) {
    assert_eq!(v["type"], "error", "Anthropic envelope: {v}");
    assert!(v["error"]["message"].is_string(), "Anthropic envelope: {v}");
}

fn assert_gemini(v: &Value, status: u16) {
    assert_eq!(v["error"]["code"], status, "Gemini envelope: {v}");
    assert!(v["error"]["status"].is_string(), "Gemini envelope: {v}");
}

async fn send(req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "status {status}"
    );
    let text = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, headers, v)
}

/// Sends only a head declaring `length` body bytes and returns the raw response.
async fn declare_body(addr: std::net::SocketAddr, path: &str, length: usize) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&seen);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && serde_json::from_str::<Value>(body).is_ok()
            {
                return;
            }
        }
    })
    .await
    .expect("the proxy waited for the body");
    String::from_utf8(seen).unwrap()
}

#[tokio::test]
async fn a_declared_oversized_body_is_413_before_it_is_read() {
    let proxy = start_proxy("max_request_body_bytes: 1000\n").await;
    for (path, check) in [
        ("/v1/chat/completions", assert_openai as fn(&Value)),
        ("/v1/messages", assert_anthropic),
    ] {
        let response = declare_body(proxy.addr(), path, 1_000_000).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        let body: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
        check(&body);
    }
    let response = declare_body(proxy.addr(), "/v1beta/models/m:generateContent", 1_000_000).await;
    let body: Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_gemini(&body, 413);
}

#[tokio::test]
async fn method_not_allowed_is_enveloped_and_names_the_allowed_methods() {
    let proxy = start_proxy("").await;
    let (status, headers, v) =
        send(client().get(format!("{}/v1/chat/completions", proxy.url))).await;
    assert_eq!(status, 405);
    assert_openai(&v);
    assert_eq!(v["error"]["code"], "method_not_allowed");
    assert!(
        headers["allow"].to_str().unwrap().contains("POST"),
        "{headers:?}"
    );
    let (status, _, v) = send(client().get(format!("{}/v1/messages", proxy.url))).await;
    assert_eq!(status, 405);
    assert_anthropic(&v);
    let (status, _, v) = send(client().delete(format!("{}/v1beta/models", proxy.url))).await;
    assert_eq!(status, 405);
    assert_gemini(&v, 405);
}

#[tokio::test]
async fn invalid_utf8_in_a_path_parameter_is_400_in_the_envelope() {
    let proxy = start_proxy("").await;
    let (status, _, v) = send(client().get(format!("{}/v1/models/%FF%FE", proxy.url))).await;
    assert_eq!(status, 400);
    assert_openai(&v);
    let (status, _, v) = send(
        client()
            .post(format!("{}/v1beta/models/%FF:generateContent", proxy.url))
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!(status, 400);
    assert_gemini(&v, 400);
}

#[tokio::test]
async fn the_anthropic_listener_envelopes_framework_errors_as_anthropic() {
    let cfg = load_from_str("", &CliOverrides::default(), &Env::default()).unwrap();
    let state = AppState::build(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
    )
    .unwrap();
    let listener = serve_router(anthropic_app(state.clone()), &state).await;
    let (status, _, v) = send(client().get(format!("{}/v1/messages", listener.url))).await;
    assert_eq!(status, 405);
    assert_anthropic(&v);
}

/// The model calls served in front of the router (`service.rs`) answer as the router does:
/// the same edge (401 without a key, the early 413, the envelope of the path's protocol) and
/// the same handler (400 for a body that is not JSON, 200 for a real call to the mock).
#[tokio::test]
async fn model_calls_served_without_the_router_answer_as_the_router_does() {
    use axum::body::Body;
    use tower::ServiceExt;
    let cfg = load_from_str(
        "auth:\n  api_keys: [edge-test-key]\nmax_request_body_bytes: 4096\n",
        &CliOverrides::default(),
        &Env::default(),
    )
    .unwrap();
    let state = AppState::build(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
    )
    .unwrap();
    let bodies = [
        (
            "/v1/chat/completions",
            r#"{"model":"mock:m","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            "/chat/completions",
            r#"{"model":"mock:m","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        ("/v1/responses", r#"{"model":"mock:m","input":"hi"}"#),
        ("/responses", r#"{"model":"mock:m","input":"hi"}"#),
        (
            "/v1/messages",
            r#"{"model":"mock:m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            "/anthropic/v1/messages",
            r#"{"model":"mock:m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            "/v1beta/models/mock:m:generateContent",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#,
        ),
        (
            "/v1beta/models/mock:m:streamGenerateContent?alt=sse",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#,
        ),
        (
            "/v1/models/mock:m:generateContent",
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#,
        ),
    ];
    let request = |path: &str, key: Option<&str>, length: Option<usize>, body: &str| {
        let mut req = http::Request::post(path).header("content-type", "application/json");
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        if let Some(length) = length {
            req = req.header("content-length", length);
        }
        req.body(Body::from(body.to_owned())).unwrap()
    };
    let answer = |response: axum::response::Response| async move {
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    };
    let main = llm_proxy_server::app(state.clone());
    for other in [
        "/v1/messages/count_tokens",
        "/v1/models",
        "/v1/chat/completions/",
        "/v1beta/models/",
        // Percent-encoded: the router decodes it (and refuses what is not UTF-8).
        "/v1beta/models/%FF:generateContent",
    ] {
        assert!(!main.serves_directly(other), "{other}");
    }
    for (app, listener) in [(main, "main"), (anthropic_app(state.clone()), "anthropic")] {
        for (path, body) in bodies {
            if listener == "anthropic" && path != "/v1/messages" {
                continue;
            }
            let path_only = path.split('?').next().unwrap_or(path);
            assert!(app.serves_directly(path_only), "{listener} {path}");
            let anthropic = path.contains("messages");
            let gemini = path.contains("models/");
            let cases = [
                (None, None, body, 401),
                (Some("edge-test-key"), Some(5000), body, 413),
                (Some("edge-test-key"), None, "{not json", 400),
                (Some("edge-test-key"), None, body, 200),
            ];
            for (key, length, body, expected) in cases {
                // Distinct calls: identical ones in quick succession are refused as duplicates.
                let tagged =
                    |tag: &str| body.replace("\"hi\"", &format!("\"hi {listener} {path} {tag}\""));
                let direct = answer(
                    app.clone()
                        .oneshot(request(path, key, length, &tagged("direct")))
                        .await
                        .unwrap(),
                )
                .await;
                let routed = answer(
                    app.router()
                        .clone()
                        .oneshot(request(path, key, length, &tagged("routed")))
                        .await
                        .unwrap(),
                )
                .await;
                assert_eq!(direct.0, expected, "{listener} {path}: {direct:?}");
                assert_eq!(routed.0, expected, "{listener} {path}: {routed:?}");
                if expected == 200 {
                    continue;
                }
                assert_eq!(direct, routed, "{listener} {path}");
                if anthropic {
                    assert_anthropic(&direct.1);
                } else if gemini {
                    assert_gemini(&direct.1, expected);
                } else {
                    assert_openai(&direct.1);
                }
            }
        }
    }
}
