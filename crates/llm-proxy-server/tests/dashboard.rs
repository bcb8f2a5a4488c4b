//! The dashboard and the endpoints behind it: `/ui` and its files with a self-only
//! Content-Security-Policy, `/v1/usage/series` and `/v1/status` after a few requests (one
//! failing upstream opening its breaker), and who may read them. The page itself runs in
//! headless Chromium in `tests/dashboard/` (scripts/test-dashboard).

use std::net::SocketAddr;
use std::path::Path;

use axum::extract::ConnectInfo;
use llm_proxy_server::AppState;
use llm_proxy_server::ui::CONTENT_SECURITY_POLICY;
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::common::{Proxy, client, get, get_json, serve_state};

/// A proxy with a data directory (usage on), the built-in `mock` backend as default and an
/// `openai` backend at `upstream` whose breaker opens on the first failure.
fn state_on(data_dir: &Path, upstream: &str, extra: &str) -> AppState {
    let yaml = format!(
        "data_dir: {}\nbackends:\n  default_backend: mock\n  mock: {{}}\n  openai:\n    api_url: {upstream}/v1\n    api_key: sk-test-secret-0123456789\nfailure_handling:\n  min_retry_wait: 0\n  max_failover_hops: 0\nresilience:\n  circuit_breaker:\n    failure_threshold: 1\n    open_cooldown_seconds: 3600\n{extra}",
        data_dir.display()
    );
    crate::common::state_with_stores(&yaml)
}

async fn chat(proxy: &Proxy, model: &str, stream: bool, session: &str) -> u16 {
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .header("x-session-id", session)
        .json(&json!({"model": model, "stream": stream,
                      "messages": [{"role": "user", "content": "hello dashboard"}]}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.bytes().await.unwrap();
    status
}

/// Flushes the usage writer until it holds `count` records; bounded.
async fn wait_for_records(state: &AppState, count: usize) {
    let store = state.usage().unwrap();
    for _ in 0..50 {
        store.flush().await;
        let records = store
            .recent(llm_proxy_server::usage::UsageFilter::default(), 1000)
            .await
            .unwrap();
        if records.len() >= count {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the usage writer never wrote {count} records");
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_a_self_only_policy() {
    let data = tempfile::tempdir().unwrap();
    let state = state_on(data.path(), "http://127.0.0.1:9", "");
    let proxy = serve_state(state).await;
    for (path, content_type, needle) in [
        ("/ui", "text/html; charset=utf-8", "/ui/dashboard.js"),
        ("/ui/", "text/html; charset=utf-8", "/ui/dashboard.css"),
        (
            "/ui/dashboard.js",
            "text/javascript; charset=utf-8",
            "/v1/usage/series",
        ),
        ("/ui/dashboard.css", "text/css; charset=utf-8", ".chart"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let resp = get(&proxy, path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(
            headers["content-security-policy"], CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(needle), "{path}");
    }
    // The policy: our own origin only, no inline code, no framing.
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    let missing = get(&proxy, "/ui/other.js").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().get("content-security-policy").is_none());
    proxy.shut_down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn series_and_status_show_requests_by_time_backend_and_model_and_open_breakers() {
    let upstream = MockUpstream::start().await.unwrap();
    upstream.set_fallback(Reply::error(
        503,
        openai::error("down", "server_error", None),
    ));
    let data = tempfile::tempdir().unwrap();
    let state = state_on(data.path(), &upstream.base_url(), "");
    let proxy = serve_state(state.clone()).await;

    let before = get_json(&proxy, "/v1/status").await;
    let breaker = |status: &Value, instance: &str| {
        status["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["instance"] == instance)
            .unwrap_or_else(|| panic!("{instance} in {status}"))["circuit_breaker"]["state"]
            .clone()
    };
    assert_eq!(breaker(&before, "openai"), "closed");

    assert_eq!(chat(&proxy, "mock-a", false, "s-1").await, 200);
    assert_eq!(chat(&proxy, "mock-a", true, "s-1").await, 200);
    assert_eq!(chat(&proxy, "mock-a", false, "s-2").await, 200);
    assert_eq!(chat(&proxy, "mock:mock-b", true, "s-2").await, 200);
    let failed = chat(&proxy, "openai:gpt-4o-mini", false, "s-3").await;
    assert!(failed >= 500, "{failed}");
    wait_for_records(&state, 5).await;

    // By backend: the mock served four, the failing upstream one (an error).
    let series = get_json(&proxy, "/v1/usage/series?bucket=minute&by=backend").await;
    assert_eq!(series["bucket"], "minute");
    assert_eq!(series["bucket_ms"], 60_000);
    assert_eq!(series["by"], "backend");
    let start = series["start_ms"].as_i64().unwrap();
    let end = series["end_ms"].as_i64().unwrap();
    assert_eq!(start % 60_000, 0);
    assert!(end - start > 3_600_000 - 60_000 && end - start <= 3_660_001);
    // Sums `field` over `key`'s points, checking each lies on a bucket inside the range.
    let sum = |series: &Value, by: &str, key: Value, field: &str| -> u64 {
        let (start, end) = (
            series["start_ms"].as_i64().unwrap(),
            series["end_ms"].as_i64().unwrap(),
        );
        let width = series["bucket_ms"].as_i64().unwrap();
        series["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s[by] == key)
            .flat_map(|s| s["points"].as_array().unwrap().iter())
            .map(|p| {
                let t = p["t"].as_i64().unwrap();
                assert!(t >= start && t < end && t % width == 0, "{p}");
                p[field].as_u64().unwrap()
            })
            .sum()
    };
    assert_eq!(sum(&series, "backend", json!("mock"), "requests"), 4);
    assert_eq!(sum(&series, "backend", json!("mock"), "errors"), 0);
    // It never got an answer from a backend: no backend is recorded.
    assert_eq!(sum(&series, "backend", Value::Null, "requests"), 1);
    assert_eq!(sum(&series, "backend", Value::Null, "errors"), 1);
    let stats = get_json(&proxy, "/v1/usage/stats?backend=mock").await;
    let mock_tokens = sum(&series, "backend", json!("mock"), "total_tokens");
    assert!(mock_tokens > 0);
    assert_eq!(stats["total"]["total_tokens"], mock_tokens);

    // By model, per hour and per day: the same requests.
    for bucket in ["minute", "hour", "day"] {
        let by_model = get_json(
            &proxy,
            &format!("/v1/usage/series?bucket={bucket}&by=model"),
        )
        .await;
        assert_eq!(by_model["by"], "model");
        assert_eq!(
            sum(&by_model, "model", json!("mock-a"), "requests"),
            3,
            "{bucket}"
        );
        assert_eq!(
            sum(&by_model, "model", json!("mock-b"), "requests"),
            1,
            "{bucket}"
        );
        assert_eq!(
            sum(&by_model, "model", json!("openai:gpt-4o-mini"), "requests"),
            1,
            "{bucket}"
        );
    }
    // Filters apply; a range in the future is empty.
    let only = get_json(&proxy, "/v1/usage/series?by=model&backend=mock").await;
    assert_eq!(only["series"].as_array().unwrap().len(), 2);
    let later = get_json(
        &proxy,
        "/v1/usage/series?bucket=day&start_date=2999-01-01&end_date=2999-01-10",
    )
    .await;
    assert_eq!(later["series"], json!([]));
    for bad in [
        "bucket=week",
        "by=session",
        "colour=red",
        "bucket=minute&start_date=2000-01-01",
    ] {
        let resp = get(&proxy, &format!("/v1/usage/series?{bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_usage_filter", "{bad}");
    }

    // Live status: the failing instance's breaker is open, the mock's closed.
    let status = get_json(&proxy, "/v1/status").await;
    assert_eq!(breaker(&status, "openai"), "open", "{status}");
    assert_eq!(breaker(&status, "mock"), "closed", "{status}");
    assert_eq!(status["default_backend"], "mock");
    assert_eq!(status["usage"]["enabled"], true);
    assert_eq!(status["sessions"]["store"], "memory");
    assert!(status["sessions"]["stored"].is_u64(), "{status}");
    assert!(
        !status.to_string().contains("sk-test-secret"),
        "no secret in {status}"
    );

    // What the dashboard lists as sessions in use and recent requests.
    let recent = get_json(&proxy, "/v1/usage/recent?limit=50").await;
    assert_eq!(recent["data"].as_array().unwrap().len(), 5);
    let sessions = get_json(&proxy, "/v1/usage/stats").await;
    let ids: Vec<&str> = sessions["by_session"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["session_id"].as_str())
        .collect();
    for id in ["s-1", "s-2", "s-3"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    proxy.shut_down().await;
}

#[tokio::test]
async fn with_usage_off_status_says_so_and_series_is_not_found() {
    let data = tempfile::tempdir().unwrap();
    let state = state_on(
        data.path(),
        "http://127.0.0.1:9",
        "usage:\n  enabled: false\n",
    );
    let proxy = serve_state(state).await;
    let status = get_json(&proxy, "/v1/status").await;
    assert_eq!(status["usage"]["enabled"], false);
    assert_eq!(get(&proxy, "/v1/usage/series").await.status(), 404);
    assert_eq!(get(&proxy, "/ui").await.status(), 200);
    proxy.shut_down().await;
}

/// Without client keys: everything only on loopback. With keys: the data needs one from
/// anywhere, while the page and its files (no data; a browser cannot attach a key to them)
/// are served without.
#[tokio::test]
async fn the_dashboard_follows_the_usage_access_rules() {
    let data = tempfile::tempdir().unwrap();
    let ask = |state: &AppState, path: &str, peer: &str, key: Option<&str>| {
        let mut req = axum::http::Request::builder().uri(path);
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let mut req = req.body(axum::body::Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let app = llm_proxy_server::app(state.clone());
        async move { app.oneshot(req).await.unwrap().status().as_u16() }
    };
    let data_paths = ["/v1/status", "/v1/usage/series", "/v1/usage/recent"];
    let page_paths = ["/ui", "/ui/", "/ui/dashboard.js", "/ui/dashboard.css"];

    let open = state_on(data.path(), "http://127.0.0.1:9", "");
    for path in data_paths.iter().chain(&page_paths) {
        assert_eq!(
            ask(&open, path, "127.0.0.1:5000", None).await,
            200,
            "{path}"
        );
        assert_eq!(ask(&open, path, "[::1]:5000", None).await, 200, "{path}");
        assert_eq!(
            ask(&open, path, "192.0.2.7:5000", None).await,
            403,
            "{path}"
        );
    }
    drop(open);

    let key = "client-key-0123456789";
    let keyed = state_on(
        data.path(),
        "http://127.0.0.1:9",
        &format!("auth:\n  api_keys: [{key}]\n"),
    );
    for path in data_paths {
        assert_eq!(
            ask(&keyed, path, "192.0.2.7:5000", None).await,
            401,
            "{path}"
        );
        assert_eq!(
            ask(&keyed, path, "192.0.2.7:5000", Some("wrong-key-0123456789")).await,
            401,
            "{path}"
        );
        assert_eq!(
            ask(&keyed, path, "192.0.2.7:5000", Some(key)).await,
            200,
            "{path}"
        );
    }
    for path in page_paths {
        assert_eq!(
            ask(&keyed, path, "192.0.2.7:5000", None).await,
            200,
            "{path}"
        );
    }
    // Only the embedded files are let through without a key.
    assert_eq!(
        ask(&keyed, "/ui/anything", "192.0.2.8:5000", None).await,
        401
    );
}
