//! Usage accounting end to end: a mixed run over the four client protocols, streamed and not,
//! with a failing request, against OpenAI and Anthropic mock upstreams. The stored records
//! must hold exactly the usage each client received, the failure with its status, estimates
//! flagged, cache counts carried; the stats filters, the exports and a restart on the same
//! data directory are checked on the same records.

use std::path::Path;

use llm_proxy_server::AppState;
use llm_proxy_test_support::{MockUpstream, Reply, anthropic, openai};
use serde_json::{Value, json};

use crate::common::{Proxy, client, get, get_json, serve_state, sse_data};

pub fn state_on(data_dir: &Path, openai_url: &str, anthropic_url: &str, extra: &str) -> AppState {
    let yaml = format!(
        "data_dir: {}\nbackends:\n  default_backend: openai\n  openai:\n    api_url: {openai_url}/v1\n    api_key: sk-test-secret-0123456789\n    models: [gpt-4o-mini]\n  anthropic:\n    api_url: {anthropic_url}/v1\n    api_key: sk-ant-upstream-0123456789\n{extra}",
        data_dir.display()
    );
    crate::common::state_with_stores(&yaml)
}

/// Which client protocol a request spoke.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    Chat,
    Responses,
    Anthropic,
    Gemini,
}

/// The usage a client received: (prompt incl. cache, completion incl. reasoning, cache read).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Seen {
    prompt: u64,
    completion: u64,
    cache_read: u64,
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

/// Every usage object in `v` (at any depth), in document order.
fn usage_objects<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "usage" || k == "usageMetadata" {
                    out.push(child);
                } else {
                    usage_objects(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| usage_objects(i, out)),
        _ => {}
    }
}

/// The usage the client was told, read in its own protocol (reports merged: later non-zero
/// counts win, as Anthropic streams them in pieces).
fn seen(client: Client, events: &[Value]) -> Seen {
    let mut found = Vec::new();
    for e in events {
        usage_objects(e, &mut found);
    }
    let mut s = Seen::default();
    for u in found {
        let (prompt, completion, cache_read) = match client {
            Client::Chat => (
                n(u, &["prompt_tokens"]),
                n(u, &["completion_tokens"]),
                n(u, &["prompt_tokens_details", "cached_tokens"]),
            ),
            Client::Responses => (
                n(u, &["input_tokens"]),
                n(u, &["output_tokens"]),
                n(u, &["input_tokens_details", "cached_tokens"]),
            ),
            Client::Anthropic => {
                let read = n(u, &["cache_read_input_tokens"]);
                let input = n(u, &["input_tokens"]);
                let total_in = input + read + n(u, &["cache_creation_input_tokens"]);
                (
                    if input == 0 { 0 } else { total_in },
                    n(u, &["output_tokens"]),
                    read,
                )
            }
            Client::Gemini => (
                n(u, &["promptTokenCount"]),
                n(u, &["candidatesTokenCount"]) + n(u, &["thoughtsTokenCount"]),
                n(u, &["cachedContentTokenCount"]),
            ),
        };
        if prompt != 0 {
            s.prompt = prompt;
        }
        if completion != 0 {
            s.completion = completion;
        }
        if cache_read != 0 {
            s.cache_read = cache_read;
        }
    }
    s
}

/// One request of the run and what came back.
struct Sent {
    request_id: String,
    status: u16,
    seen: Seen,
}

async fn send(
    proxy: &Proxy,
    client_kind: Client,
    stream: bool,
    model: &str,
    session: &str,
) -> Sent {
    let (path, body) = match client_kind {
        Client::Chat => (
            "/v1/chat/completions".to_owned(),
            json!({"model": model, "stream": stream, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "hello there"}]}),
        ),
        Client::Responses => (
            "/v1/responses".to_owned(),
            json!({"model": model, "stream": stream, "input": "hello there"}),
        ),
        Client::Anthropic => (
            "/v1/messages".to_owned(),
            json!({"model": model, "stream": stream, "max_tokens": 100,
                   "messages": [{"role": "user", "content": "hello there"}]}),
        ),
        Client::Gemini => (
            if stream {
                format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
            } else {
                format!("/v1beta/models/{model}:generateContent")
            },
            json!({"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}),
        ),
    };
    let resp = client()
        .post(format!("{}{path}", proxy.url))
        .header("x-session-id", session)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    let events = if stream && status == 200 {
        sse_data(&text).0
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    };
    Sent {
        request_id,
        status,
        seen: if status == 200 {
            seen(client_kind, &events)
        } else {
            Seen::default()
        },
    }
}

fn anthropic_cached_message() -> Value {
    json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Cached answer."}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 9, "cache_creation_input_tokens": 6, "cache_read_input_tokens": 30, "output_tokens": 4}
    })
}

fn openai_with_details() -> Value {
    let mut v = openai::completion("Detailed.");
    v["usage"] = json!({"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52,
        "prompt_tokens_details": {"cached_tokens": 16}, "completion_tokens_details": {"reasoning_tokens": 5}});
    v
}

fn openai_without_usage() -> Value {
    let mut v = openai::completion("No usage from me, sorry.");
    v.as_object_mut().unwrap().remove("usage");
    v
}

/// Waits until the store holds `count` records (the writer is asynchronous): flushes, then
/// reads; bounded.
pub async fn wait_for_records(
    state: &AppState,
    count: usize,
) -> Vec<llm_proxy_server::usage::UsageRecord> {
    let store = state.usage().unwrap();
    for _ in 0..50 {
        store.flush().await;
        let records = store
            .recent(llm_proxy_server::usage::UsageFilter::default(), 1000)
            .await
            .unwrap();
        if records.len() >= count {
            return records;
        }
        tokio::task::yield_now().await;
    }
    panic!("the usage writer never wrote {count} records");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_run_is_recorded_exactly_and_survives_a_restart() {
    mixed_run("").await;
}

/// What a mixed run left in the ledger.
pub struct MixedRun {
    /// `GET /v1/usage/stats` after the run (equal after the restart).
    pub stats: Value,
    /// Every record, newest first.
    pub records: Vec<llm_proxy_server::usage::UsageRecord>,
    /// `GET /v1/usage/series?bucket=day&by=model` after the run, bucket times left out.
    pub series_by_model: Vec<Value>,
}

/// The mixed run, its checks and a restart, on the store `extra` configures (SQLite in a
/// scratch data directory without it).
pub async fn mixed_run(extra: &str) -> MixedRun {
    let oa = MockUpstream::start().await.unwrap();
    let an = MockUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let state = state_on(data.path(), &oa.base_url(), &an.base_url(), extra);
    state.usage().unwrap().ready().await;
    let proxy = serve_state(state.clone()).await;
    let claude = "anthropic:claude-sonnet-4-5";

    // (client, stream, model, session, upstream reply)
    oa.push(Reply::json(openai_with_details()));
    let mut sent = vec![send(&proxy, Client::Chat, false, "gpt-4o-mini", "s-chat").await];
    oa.push(Reply::sse(openai::text_stream(&["Hel", "lo"])));
    sent.push(send(&proxy, Client::Chat, true, "gpt-4o-mini", "s-chat").await);
    an.push(Reply::json(anthropic_cached_message()));
    sent.push(send(&proxy, Client::Responses, false, claude, "s-resp").await);
    oa.push(Reply::sse(openai::text_stream(&["a", "b", "c"])));
    sent.push(send(&proxy, Client::Responses, true, "gpt-4o-mini", "s-resp").await);
    an.push(Reply::json(anthropic_cached_message()));
    sent.push(send(&proxy, Client::Anthropic, false, claude, "s-anth").await);
    oa.push(Reply::sse(openai::text_stream(&["x", "y"])));
    sent.push(send(&proxy, Client::Anthropic, true, "gpt-4o-mini", "s-anth").await);
    oa.push(Reply::json(openai_with_details()));
    sent.push(send(&proxy, Client::Gemini, false, "gpt-4o-mini", "s-gem").await);
    an.push(Reply::sse(anthropic::text_stream(&["Stre", "amed"])));
    sent.push(send(&proxy, Client::Gemini, true, claude, "s-gem").await);
    // The upstream reports no usage: the record is an estimate.
    oa.push(Reply::json(openai_without_usage()));
    let estimated = send(&proxy, Client::Chat, false, "gpt-4o-mini", "s-est").await;
    // The upstream fails (more than once: failover may retry).
    oa.set_fallback(Reply::error(
        500,
        openai::error("boom", "server_error", None),
    ));
    let failed = send(&proxy, Client::Chat, false, "gpt-4o-mini", "s-fail").await;
    assert!(failed.status >= 500, "{}", failed.status);

    let records = wait_for_records(&state, sent.len() + 2).await;
    assert_eq!(records.len(), sent.len() + 2);
    let by_id = |id: &str| records.iter().find(|r| r.request_id == id).unwrap();
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(s.status, 200, "request {i}");
        let r = by_id(&s.request_id);
        assert!(!r.estimated, "request {i}: {r:?}");
        assert_ne!(s.seen, Seen::default(), "request {i}: the client saw usage");
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens, r.cache_read_tokens),
            (s.seen.prompt, s.seen.completion, s.seen.cache_read),
            "request {i}: {r:?}"
        );
        assert_eq!(r.total_tokens, r.prompt_tokens + r.completion_tokens);
        assert_eq!(r.status, 200);
        assert_eq!(r.outcome, "ok");
    }
    let seen_prompt: u64 = sent.iter().map(|s| s.seen.prompt).sum();
    let seen_completion: u64 = sent.iter().map(|s| s.seen.completion).sum();

    // Frontends, streaming, backends, sessions and cache writes are carried.
    let first = by_id(&sent[0].request_id);
    assert_eq!(first.frontend, "openai_chat");
    assert_eq!(first.backend.as_deref(), Some("openai"));
    assert_eq!(first.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(first.session_id.as_deref(), Some("s-chat"));
    assert_eq!(first.reasoning_tokens, 5);
    assert!(first.cost_usd.is_some_and(|c| c > 0.0), "{first:?}");
    assert!(!first.stream && by_id(&sent[1].request_id).stream);
    let cached = by_id(&sent[2].request_id);
    assert_eq!(cached.frontend, "openai_responses");
    assert_eq!(cached.backend.as_deref(), Some("anthropic"));
    assert_eq!(
        (cached.cache_read_tokens, cached.cache_write_tokens),
        (30, 6)
    );
    assert_eq!(by_id(&sent[4].request_id).frontend, "anthropic");
    assert_eq!(by_id(&sent[7].request_id).frontend, "gemini");

    let est = by_id(&estimated.request_id);
    assert!(est.estimated, "{est:?}");
    assert!(
        est.prompt_tokens > 0 && est.completion_tokens > 0,
        "{est:?}"
    );
    let fail = by_id(&failed.request_id);
    assert_eq!(fail.status, failed.status);
    assert_ne!(fail.outcome, "ok");
    assert_eq!((fail.total_tokens, fail.estimated), (0, false));
    assert_eq!(fail.session_id.as_deref(), Some("s-fail"));

    // Stats: the totals are what the clients received (plus the estimate).
    let stats = get_json(&proxy, "/v1/usage/stats").await;
    let total = &stats["total"];
    assert_eq!(total["requests"], sent.len() as u64 + 2);
    assert_eq!(total["prompt_tokens"], seen_prompt + est.prompt_tokens);
    assert_eq!(
        total["completion_tokens"],
        seen_completion + est.completion_tokens
    );
    assert_eq!(
        total["cached_tokens"],
        records.iter().map(|r| r.cache_read_tokens).sum::<u64>()
    );
    assert_eq!(total["reasoning_tokens"], 10);
    let anthropic_row = stats["by_backend"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["backend"] == "anthropic")
        .unwrap();
    assert_eq!(anthropic_row["requests"], 3);
    assert!(
        stats["by_model"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["model"] == "claude-sonnet-4-5")
    );
    assert!(
        stats["by_session"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["session_id"] == "s-gem" && g["requests"] == 2)
    );

    // Filters.
    let only = get_json(&proxy, "/v1/usage/stats?backend=anthropic").await;
    assert_eq!(only["total"]["requests"], 3);
    let only = get_json(
        &proxy,
        "/v1/usage/stats?session_id=s-anth&model=gpt-4o-mini",
    )
    .await;
    assert_eq!(only["total"]["requests"], 1);
    let future = get_json(&proxy, "/v1/usage/stats?start_date=2999-01-01").await;
    assert_eq!(future["total"]["requests"], 0);
    let past = get_json(&proxy, "/v1/usage/stats?end_date=2000-01-01").await;
    assert_eq!(past["total"]["requests"], 0);
    let all = get_json(
        &proxy,
        "/v1/usage/stats?start_date=2000-01-01&end_date=2999-12-31",
    )
    .await;
    assert_eq!(all["total"]["requests"], sent.len() as u64 + 2);
    for bad in [
        "start_date=yesterday",
        "end_date=2025-13-01",
        "colour=red",
        "start_date=2025-02-01&end_date=2025-01-01",
    ] {
        let resp = get(&proxy, &format!("/v1/usage/stats?{bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{bad}: {body}"
        );
    }

    // Recent: newest first, bounded.
    let recent = get_json(&proxy, "/v1/usage/recent?limit=2").await;
    let newest = recent["data"].as_array().unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0]["request_id"], failed.request_id.as_str());
    assert_eq!(newest[1]["request_id"], estimated.request_id.as_str());
    for bad in ["limit=0", "limit=100000", "limit=x"] {
        assert_eq!(
            get(&proxy, &format!("/v1/usage/recent?{bad}"))
                .await
                .status(),
            400,
            "{bad}"
        );
    }

    // Exports: one row per request, parseable.
    let jsonl = get(&proxy, "/v1/usage/export?format=jsonl")
        .await
        .text()
        .await
        .unwrap();
    let rows: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), sent.len() + 2);
    assert_eq!(
        rows.iter()
            .map(|r| r["total_tokens"].as_u64().unwrap())
            .sum::<u64>(),
        records.iter().map(|r| r.total_tokens).sum::<u64>()
    );
    let csv = get(&proxy, "/v1/usage/export?format=csv")
        .await
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "request_id");
    let body: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(body.len(), sent.len() + 2);
    let status_col = header.iter().position(|h| *h == "status").unwrap();
    let id_col = header.iter().position(|h| *h == "request_id").unwrap();
    assert!(body.iter().all(|row| row.len() == header.len()));
    let failed_row = body
        .iter()
        .find(|row| row[id_col] == failed.request_id)
        .unwrap();
    assert_eq!(failed_row[status_col], failed.status.to_string());
    assert_eq!(
        get(&proxy, "/v1/usage/export?format=xml").await.status(),
        400
    );

    // Restart on the same data directory: the records are still there.
    proxy.shut_down().await;
    drop(state);
    let state = state_on(data.path(), &oa.base_url(), &an.base_url(), extra);
    state.usage().unwrap().ready().await;
    let proxy = serve_state(state.clone()).await;
    let again = get_json(&proxy, "/v1/usage/stats").await;
    assert_eq!(again, stats);
    let series = get_json(&proxy, "/v1/usage/series?bucket=day&by=model").await;
    let mut series_by_model: Vec<Value> = series["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{series}"))
        .iter()
        .flat_map(|group| {
            let model = group["model"].clone();
            group["points"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |p| {
                    let mut p = p.clone();
                    if let Some(point) = p.as_object_mut() {
                        point.remove("t");
                        point.insert("model".into(), model.clone());
                    }
                    p
                })
        })
        .collect();
    series_by_model.sort_by_key(|p| p.to_string());
    assert_eq!(
        series_by_model
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum::<u64>(),
        stats["total"]["requests"].as_u64().unwrap(),
        "{series}"
    );
    proxy.shut_down().await;
    MixedRun {
        stats,
        records,
        series_by_model,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_can_be_turned_off() {
    let oa = MockUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let state = state_on(
        data.path(),
        &oa.base_url(),
        &oa.base_url(),
        "usage:\n  enabled: false\n",
    );
    assert!(state.usage().is_none());
    let proxy = serve_state(state).await;
    oa.push(Reply::json(openai::completion("hi")));
    assert_eq!(
        send(&proxy, Client::Chat, false, "gpt-4o-mini", "s")
            .await
            .status,
        200
    );
    assert_eq!(get(&proxy, "/v1/usage/stats").await.status(), 404);
    assert!(!data.path().join("usage.sqlite3").exists());
    proxy.shut_down().await;
}

/// Without client keys only loopback peers are served; with keys, an authenticated client
/// from anywhere is.
#[tokio::test]
async fn usage_is_loopback_only_unless_clients_authenticate() {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use tower::ServiceExt as _;

    let data = tempfile::tempdir().unwrap();
    let ask = |state: &AppState, peer: &str, key: Option<&str>| {
        let mut req = axum::http::Request::builder().uri("/v1/usage/stats");
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let mut req = req.body(axum::body::Body::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        llm_proxy_server::app(state.clone()).oneshot(req)
    };
    let open = state_on(data.path(), "http://127.0.0.1:9", "http://127.0.0.1:9", "");
    assert_eq!(
        ask(&open, "127.0.0.1:5000", None).await.unwrap().status(),
        200
    );
    assert_eq!(ask(&open, "[::1]:5000", None).await.unwrap().status(), 200);
    let remote = ask(&open, "192.0.2.7:5000", None).await.unwrap();
    assert_eq!(remote.status(), 403);
    drop(open);

    let keyed = state_on(
        data.path(),
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        "auth:\n  api_keys: [client-key-0123456789]\n",
    );
    assert_eq!(
        ask(&keyed, "192.0.2.7:5000", None).await.unwrap().status(),
        401
    );
    let resp = ask(&keyed, "192.0.2.7:5000", Some("client-key-0123456789"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// The client key that authenticated a model call is named in its record, for every client
/// protocol (each handler takes the identity the auth layer attached to the request), each
/// protocol presenting the key its own way.
#[tokio::test]
async fn each_model_call_is_recorded_under_the_client_key_that_made_it() {
    use llm_proxy_server::session::client_label_of_key;

    let oa = MockUpstream::start().await.unwrap();
    oa.set_fallback(Reply::json(openai_with_details()));
    let data = tempfile::tempdir().unwrap();
    let keys = ["client-key-a-0123456789", "client-key-b-0123456789"];
    let state = state_on(
        data.path(),
        &oa.base_url(),
        "http://127.0.0.1:9",
        &format!("auth:\n  api_keys: [{}, {}]\n", keys[0], keys[1]),
    );
    state.usage().unwrap().ready().await;
    let proxy = serve_state(state.clone()).await;
    let user = json!([{"role": "user", "content": "hello there"}]);
    let calls = [
        (
            "/v1/chat/completions",
            "authorization",
            json!({"model": "gpt-4o-mini", "messages": user}),
        ),
        (
            "/v1/responses",
            "authorization",
            json!({"model": "gpt-4o-mini", "input": "hello there"}),
        ),
        (
            "/v1/messages",
            "x-api-key",
            json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": user}),
        ),
        (
            "/v1beta/models/gpt-4o-mini:generateContent",
            "x-goog-api-key",
            json!({"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}),
        ),
    ];
    let mut expected = Vec::new();
    for key in keys {
        for (path, header, body) in &calls {
            let value = match *header {
                "authorization" => format!("Bearer {key}"),
                _ => key.to_owned(),
            };
            let resp = client()
                .post(format!("{}{path}", proxy.url))
                .header(*header, value)
                .header("x-session-id", "one-session-id")
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path} with {key}");
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            expected.push((id, client_label_of_key(key), *path));
        }
    }
    let records = wait_for_records(&state, expected.len()).await;
    assert_eq!(records.len(), expected.len());
    for (id, label, path) in &expected {
        let r = records.iter().find(|r| &r.request_id == id).unwrap();
        assert_eq!(r.client.as_deref(), Some(label.as_str()), "{path}: {r:?}");
    }
    assert_ne!(expected[0].1, expected[calls.len()].1);
    proxy.shut_down().await;
}
