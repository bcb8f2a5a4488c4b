//! Shared helpers: start the proxy with a config, read SSE responses.

use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_server::serve::{Listener, Shutdown, bind_listeners, serve_on_threads};
use llm_proxy_server::{AppState, app};
use serde_json::Value;

pub struct Proxy {
    pub url: String,
    /// Begins the proxy's graceful shutdown.
    pub shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The serving threads end with the shutdown, not with the task that waits on them.
        self.shutdown.expire();
        self.task.abort();
    }
}

/// A state built from `yaml` with the stores its configuration opens (its `data_dir`: the
/// SQLite usage ledger and Responses store, or `database_url`), as the binary builds it.
pub fn state_with_stores(yaml: &str) -> AppState {
    let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).expect("config");
    let stores = llm_proxy_server::Stores::open(&cfg).expect("stores");
    let scrubber = cfg.scrubber().expect("scrubber");
    AppState::build_with_stores(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
        scrubber,
        stores,
    )
    .expect("state")
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

/// Serves a built state on 127.0.0.1:0 with the binary's serve loop and the configured
/// `server.*` limits.
pub async fn serve_state(state: AppState) -> Proxy {
    serve_router(app(state.clone()), &state).await
}

/// Serving threads of a test proxy: more than one, so that every test also crosses threads
/// (its mock upstreams and clients run on the test's runtime), whatever the machine.
const SERVING_THREADS: usize = 2;

/// Serves `app` (built on `state`) on 127.0.0.1:0 as the binary does: on serving threads
/// of their own, one listening socket each.
pub async fn serve_router(app: llm_proxy_server::App, state: &AppState) -> Proxy {
    let sockets = bind_listeners("127.0.0.1", 0, SERVING_THREADS).unwrap();
    let url = format!("http://{}", sockets[0].local_addr().unwrap());
    let shutdown = state.shutdown().clone();
    let task = tokio::spawn({
        let (settings, shutdown) = (state.config().server.clone(), shutdown.clone());
        async move {
            serve_on_threads(
                vec![Listener { sockets, app }],
                SERVING_THREADS,
                settings,
                shutdown,
            )
            .await
            .unwrap();
        }
    });
    Proxy {
        url,
        shutdown,
        task,
    }
}

impl Proxy {
    /// Begins the graceful shutdown and waits until the serve loop has returned.
    pub async fn shut_down(mut self) {
        self.shutdown.begin();
        (&mut self.task).await.unwrap();
    }

    /// The listening address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }
}

/// A proxy whose `openai` backend points at `upstream` (extra YAML lines appended at top level).
pub async fn proxy_for(upstream: &str, extra: &str) -> Proxy {
    start_proxy(&format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {upstream}/v1\n    api_key: sk-test-secret-0123456789\n{extra}"
    ))
    .await
}

/// `GET path` on the proxy.
pub async fn get(proxy: &Proxy, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", proxy.url))
        .send()
        .await
        .unwrap()
}

/// `GET path` on the proxy: a 200 with a JSON body.
pub async fn get_json(proxy: &Proxy, path: &str) -> Value {
    let resp = get(proxy, path).await;
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// The response's `x-llm-proxy-lossy` note (empty without one).
pub fn lossy(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("x-llm-proxy-lossy")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
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
