//! Hostile input: oversized and deeply nested bodies, invalid UTF-8, path tricks, huge
//! selectors, giant headers, slow and vanishing clients, a full parsing budget. After each,
//! the server must still answer a normal request.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Proxy, client, start_proxy};

/// The generation endpoints, one per client protocol, with a minimal valid body each; each
/// call's bodies are new (request dedup would refuse a repeat within its window).
fn endpoints() -> Vec<(&'static str, Value)> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let hi = format!(
        "hi {}",
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    vec![
        (
            "/v1/chat/completions",
            json!({"model": "mock-model", "messages": [{"role": "user", "content": hi}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "mock-model", "max_tokens": 8, "messages": [{"role": "user", "content": hi}]}),
        ),
        (
            "/v1beta/models/mock-model:generateContent",
            json!({"contents": [{"role": "user", "parts": [{"text": hi}]}]}),
        ),
    ]
}

/// Whether `v` is the error envelope of the protocol served at `path`.
fn is_envelope_for(path: &str, v: &Value) -> bool {
    if path.starts_with("/v1beta") {
        v["error"]["code"].is_u64() && v["error"]["status"].is_string()
    } else if path.contains("messages") {
        v["type"] == "error" && v["error"]["type"].is_string()
    } else {
        v["error"]["message"].is_string() && v["error"]["type"].is_string()
    }
}

async fn post_raw(proxy: &Proxy, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = client()
        .post(format!("{}{path}", proxy.url))
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every frontend still serves a normal request.
async fn assert_alive(proxy: &Proxy) {
    for (path, body) in endpoints() {
        let (status, v) = post_raw(proxy, path, serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
}

/// Writes raw bytes on a fresh connection and reads until the server closes it (requests
/// carry `connection: close`; refused ones are closed by the server).
async fn raw_exchange(proxy: &Proxy, request: &[u8]) -> String {
    let addr = proxy.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let read = stream.read_to_end(&mut out);
    // A safety net against a hung test, not a timing assertion.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), read).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A request with a raw (unnormalised) path: status and JSON body.
async fn raw_post(proxy: &Proxy, path: &str, body: &[u8]) -> (Option<u16>, Value) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let answer = raw_exchange(proxy, &request).await;
    let json = answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status_of(&answer), json)
}

fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn oversized_bodies_are_413_in_each_envelope() {
    let proxy = start_proxy("max_request_body_bytes: 4096\n").await;
    for (path, _) in endpoints() {
        let (status, v) = post_raw(&proxy, path, vec![b' '; 100_000]).await;
        assert_eq!(status, 413, "{path}: {v}");
        assert!(is_envelope_for(path, &v), "{path}: {v}");
    }
    // Announced as small, sent as large (chunked: no Content-Length at all).
    let chunks = futures::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
    );
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let proxy = start_proxy("").await;
    for (path, _) in endpoints() {
        for open in [b'[', b'{'] {
            let mut body = b"{\"model\":\"m\",\"messages\":".to_vec();
            body.extend(std::iter::repeat_n(open, 100_000));
            let (status, v) = post_raw(&proxy, path, body).await;
            assert_eq!(status, 400, "{path}: {v}");
            assert!(is_envelope_for(path, &v), "{path}: {v}");
        }
    }
    // Nesting inside a kept-but-unmodelled field is bounded the same way.
    let mut body = b"{\"model\":\"m\",\"messages\":[],\"x\":".to_vec();
    body.extend(std::iter::repeat_n(b'[', 100_000));
    let (status, _) = post_raw(&proxy, "/v1/chat/completions", body).await;
    assert_eq!(status, 400);
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn invalid_utf8_bodies_are_400() {
    let proxy = start_proxy("").await;
    for (path, _) in endpoints() {
        let mut body = br#"{"model":"mock-model","messages":[{"role":"user","content":""#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
        body.extend_from_slice(br#""}]}"#);
        let (status, v) = post_raw(&proxy, path, body).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(is_envelope_for(path, &v), "{path}: {v}");
    }
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn invalid_utf8_and_control_bytes_in_paths_are_rejected() {
    let proxy = start_proxy("").await;
    for path in [
        &b"/v1/chat/\xff\xfe"[..],
        b"/v1beta/models/\xc3\x28:generateContent",
        b"/v1/messages\x00",
    ] {
        let mut request = b"POST ".to_vec();
        request.extend_from_slice(path);
        request.extend_from_slice(
            b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
        );
        let answer = raw_exchange(&proxy, &request).await;
        let status = status_of(&answer);
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "{:?}: {answer}",
            String::from_utf8_lossy(path)
        );
    }
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn path_tricks_never_reach_another_route_or_fail_the_server() {
    let proxy = start_proxy("").await;
    let body = |path: &str| {
        endpoints()
            .into_iter()
            .find(|(p, _)| path.contains(&p[..8]))
            .map_or(json!({}), |(_, b)| b)
    };
    for path in [
        "/v1/../v1/chat/completions",
        "/v1/chat/completions/..",
        "/v1%2Fchat%2Fcompletions",
        "/v1/chat%2Fcompletions",
        "/v1/chat/completions%00",
        "/anthropic/v1/../v1/messages",
        "/anthropic/v1/messages%2F..%2F..%2Fmodels",
        "/v1/messages%00",
        "/v1beta/models/..%2F..%2Fmetrics:generateContent",
        "/v1beta/models/%2e%2e:generateContent",
        "/v1beta/models/mock-model%00:generateContent",
        "/v1beta/models/mock-model:generateContent%00",
        "/v1beta/models/../../v1/chat/completions",
        "/v1/models/..%2F..%2Fv1%2Fdiagnostics:generateContent",
        "/v1/diagnostics/backends/..%2F..%2Fmock/reactivate",
    ] {
        let b = serde_json::to_vec(&body(path)).unwrap();
        let (status, v) = raw_post(&proxy, path, &b).await;
        let Some(status) = status else {
            panic!("{path}: no answer");
        };
        assert!(status < 500, "{path}: {status} {v}");
        if status != 200 && status != 400 {
            assert!(v["error"].is_object(), "{path}: {status} {v}");
        }
    }
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn huge_selectors_are_answered_without_taking_the_server_down() {
    let proxy = start_proxy("").await;
    let selectors = [
        "mock-model|".repeat(20_000),
        format!("{}mock-model", "[weight=1]".repeat(20_000)),
        "mock:m^".repeat(20_000),
        format!("mock:m?{}", "temperature=0.1&".repeat(20_000)),
        "(".repeat(50_000),
    ];
    for selector in selectors {
        let body = json!({"model": selector, "messages": [{"role": "user", "content": "hi"}]});
        let (status, v) = post_raw(
            &proxy,
            "/v1/chat/completions",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert!(
            status == 200 || (400..500).contains(&status),
            "{status} {v}"
        );
    }
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn giant_headers_are_refused() {
    let proxy = start_proxy("").await;
    let mut request = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    request.extend_from_slice(b"\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}");
    let answer = raw_exchange(&proxy, &request).await;
    assert!(
        status_of(&answer).is_none_or(|s| (400..500).contains(&s)),
        "{answer}"
    );
    let mut many = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..10_000 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"connection: close\r\ncontent-length: 2\r\n\r\n{}");
    let answer = raw_exchange(&proxy, &many).await;
    assert!(
        status_of(&answer).is_none_or(|s| (400..500).contains(&s)),
        "{answer}"
    );
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn clients_that_stall_or_vanish_mid_body_do_not_hurt_others() {
    let proxy = start_proxy("").await;
    let addr = proxy.url.trim_start_matches("http://").to_owned();
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n{\"model\":",
        )
        .await
        .unwrap();
        stalled.push(s);
    }
    // Half of them vanish; the rest keep their connections open while others are served.
    stalled.truncate(4);
    assert_alive(&proxy).await;
    drop(stalled);
    assert_alive(&proxy).await;
}

#[tokio::test]
async fn a_full_parsing_budget_sheds_with_503_and_retry_after_in_the_clients_envelope() {
    let proxy = start_proxy(
        "max_request_body_bytes: 65536\nlimits:\n  max_parsing_bytes: 65536\n  parsing_wait_seconds: 0\n",
    )
    .await;
    // A client announces a body as large as the whole budget and sends only part of it: its
    // reservation is held while it dawdles.
    let addr = proxy.url.trim_start_matches("http://").to_owned();
    let mut holder = TcpStream::connect(&addr).await.unwrap();
    holder
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 65536\r\n\r\n{\"model\":")
        .await
        .unwrap();
    // The holder's reservation happens on the server's schedule: poll (bounded) until shed.
    let mut shed = None;
    for _ in 0..1000 {
        let (path, body) = endpoints().remove(1);
        let (status, v) = post_raw(&proxy, path, serde_json::to_vec(&body).unwrap()).await;
        if status == 503 {
            shed = Some(v);
            break;
        }
        assert_eq!(status, 200, "{v}");
        tokio::task::yield_now().await;
    }
    let v = shed.expect("a request beyond the budget is shed");
    assert!(is_envelope_for("/v1/messages", &v), "{v}");
    for (path, body) in endpoints() {
        let resp = client()
            .post(format!("{}{path}", proxy.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 503, "{path}");
        assert_eq!(resp.headers()["retry-after"], "1", "{path}");
        let v: Value = resp.json().await.unwrap();
        assert!(is_envelope_for(path, &v), "{path}: {v}");
    }
    // The holder goes away: its reservation is given back.
    drop(holder);
    let mut served = false;
    for _ in 0..1000 {
        let (path, body) = endpoints().remove(0);
        let (status, _) = post_raw(&proxy, path, serde_json::to_vec(&body).unwrap()).await;
        if status == 200 {
            served = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(served, "the budget is returned when the client goes away");
    assert_alive(&proxy).await;
}
