//! Shared helpers: start the proxy with a config, read SSE responses.

use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_server::{AppState, app};
use serde_json::Value;

pub struct Proxy {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_proxy(yaml: &str) -> Proxy {
    let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).expect("config");
    let state = AppState::build(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
    )
    .expect("state");
    serve_state(state).await
}

/// Serves a built state on 127.0.0.1:0, with the peer address available to handlers (as the
/// binary serves it).
pub async fn serve_state(state: AppState) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, service).await.unwrap();
    });
    Proxy { url, task }
}

/// A proxy whose `openai` backend points at `upstream` (extra YAML lines appended at top level).
pub async fn proxy_for(upstream: &str, extra: &str) -> Proxy {
    start_proxy(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {upstream}/v1\n    api_key: sk-test-secret-0123456789\n{extra}"
    ))
    .await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// The JSON payloads of `data:` frames (without `[DONE]`) and whether `[DONE]` came last.
pub fn sse_data(text: &str) -> (Vec<Value>, bool) {
    let mut values = Vec::new();
    let mut done = false;
    for block in text.split("\n\n") {
        for line in block.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data == "[DONE]" {
                    done = true;
                } else {
                    values.push(serde_json::from_str(data).expect("chunk JSON"));
                }
            }
        }
    }
    (values, done)
}

pub fn chat_body(stream: bool) -> Value {
    serde_json::json!({
        "model": "gpt-4o",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "hello"}]
    })
}
