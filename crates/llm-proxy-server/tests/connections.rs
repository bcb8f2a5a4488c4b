//! The serve loop's connection limits and shutdown: slow or idle clients are closed, the
//! connection cap holds, and shutdown neither waits on half-sent requests nor forever on
//! streams. Timeouts are configured short and tests wait for the server to close the socket;
//! the outer `timeout`s only turn a hang into a failure.

use std::time::Duration;

use futures::StreamExt;
use llm_proxy_test_support::{MockUpstream, Reply, SseScript, openai};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Proxy, chat_body, client, proxy_for, sse_data, start_proxy};

/// Long enough that only a hang reaches it.
const HANG: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection; returns what arrived.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(HANG, read)
        .await
        .expect("the server never closed the connection");
    seen
}

/// Sends `GET /health` and reads one whole response (the body has a Content-Length).
async fn health_round_trip(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed mid-response");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= length {
                    return text;
                }
            }
        }
    };
    tokio::time::timeout(HANG, read).await.unwrap()
}

async fn shut_down(proxy: Proxy) {
    tokio::time::timeout(HANG, proxy.shut_down())
        .await
        .expect("shutdown did not finish");
}

#[tokio::test]
async fn a_header_trickle_is_closed_after_the_header_timeout() {
    let proxy = start_proxy("server:\n  header_read_timeout: 0.3\n  idle_timeout: 3600\n").await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(TcpStream::connect(proxy.addr()).await.unwrap());
    }
    let trickles = conns.into_iter().map(|mut conn| async move {
        let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        let mut buf = [0u8; 256];
        let trickle = async {
            // One byte per tick, never finishing the head: each byte must not buy more time.
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                pace.tick().await;
                if conn.write_all(&[*byte]).await.is_err() {
                    return;
                }
                match tokio::time::timeout(Duration::ZERO, conn.read(&mut buf)).await {
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(_)) => panic!("no response is due to an incomplete head"),
                    Err(_) => {}
                }
            }
        };
        tokio::time::timeout(HANG, trickle)
            .await
            .expect("the trickling connection was kept open");
    });
    futures::future::join_all(trickles).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let proxy = start_proxy("server:\n  idle_timeout: 0.3\n  header_read_timeout: 3600\n").await;
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    let response = health_round_trip(&mut conn).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        read_until_closed(&mut conn).await.is_empty(),
        "nothing more was sent"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let proxy = start_proxy("server:\n  max_connections: 1\n").await;
    let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(
        health_round_trip(&mut first)
            .await
            .starts_with("HTTP/1.1 200")
    );
    // The kernel completes the handshake; the proxy does not take the connection yet.
    let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
    second
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..20 {
        assert!(
            health_round_trip(&mut first)
                .await
                .starts_with("HTTP/1.1 200")
        );
    }
    let mut buf = [0u8; 64];
    assert!(
        matches!(second.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the second connection was served while the first was open"
    );
    drop(first);
    let mut seen = Vec::new();
    tokio::time::timeout(HANG, async {
        while !String::from_utf8_lossy(&seen).contains("\r\n\r\n") {
            let n = second.read(&mut buf).await.unwrap();
            assert!(n > 0);
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the waiting connection was never served");
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn half_sent_and_idle_connections_do_not_hold_up_shutdown() {
    let proxy = start_proxy("server:\n  header_read_timeout: 3600\n  idle_timeout: 3600\n").await;
    let mut half_sent = TcpStream::connect(proxy.addr()).await.unwrap();
    half_sent
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(
        health_round_trip(&mut idle)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let addr = proxy.addr();
    shut_down(proxy).await;
    assert!(read_until_closed(&mut half_sent).await.is_empty());
    assert!(read_until_closed(&mut idle).await.is_empty());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn a_stream_still_running_after_the_grace_ends_with_an_in_stream_error() {
    let up = MockUpstream::start().await.unwrap();
    // Everything up to "first" goes out at once; the rest would follow an hour later.
    let mut frames = openai::text_stream(&["first", "never"]);
    let split = frames.iter().position(|f| f.contains("first")).unwrap() + 1;
    let head: String = frames.drain(..split).collect();
    frames.insert(0, head);
    up.push(Reply::Sse(SseScript {
        frames,
        gap: Duration::from_secs(3600),
        ..SseScript::default()
    }));
    let proxy = proxy_for(&up.base_url(), "server:\n  shutdown_grace: 0\n").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("first") {
        let chunk = tokio::time::timeout(HANG, body.next()).await.unwrap();
        text.push_str(std::str::from_utf8(&chunk.unwrap().unwrap()).unwrap());
    }
    let shutdown = tokio::spawn(shut_down(proxy));
    let rest = tokio::time::timeout(HANG, async {
        while let Some(chunk) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
        text
    })
    .await
    .expect("the stream did not end");
    shutdown.await.unwrap();
    let (chunks, _) = sse_data(&rest);
    let error = chunks
        .iter()
        .find_map(|c| c.get("error"))
        .unwrap_or_else(|| panic!("no in-stream error: {rest}"));
    assert_eq!(error["code"], "shutting_down", "{error}");
    assert!(!rest.contains("never"));
}

#[tokio::test]
async fn a_stream_finishing_within_the_grace_completes() {
    let up = MockUpstream::start().await.unwrap();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    up.push(Reply::Sse(SseScript {
        frames: openai::text_stream(&["all", " of it"]),
        hold_before_first: Some(release.clone()),
        ..SseScript::default()
    }));
    let proxy = proxy_for(
        &up.base_url(),
        "server:\n  shutdown_grace: 3600\nfailure_handling:\n  keepalive_interval: 0.05\n",
    )
    .await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shutdown = proxy.shutdown.clone();
    let serving = tokio::spawn(shut_down(proxy));
    shutdown.begun().await;
    release.notify_one();
    let text = tokio::time::timeout(HANG, resp.text())
        .await
        .unwrap()
        .unwrap();
    let (chunks, done) = sse_data(&text);
    assert!(done, "{text}");
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "{text}");
    serving.await.unwrap();
}

#[tokio::test]
async fn a_slow_request_body_gets_408_in_the_client_envelope() {
    let proxy = start_proxy("server:\n  body_read_timeout: 0.2\n").await;
    let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
    conn.write_all(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"",
    )
    .await
    .unwrap();
    let response = String::from_utf8(read_until_closed(&mut conn).await).unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["type"], "error", "Anthropic envelope: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

#[tokio::test]
async fn with_one_slot_over_two_serving_threads_every_connection_is_served_in_turn() {
    // A slot taken before accepting would sit with a thread whose socket gets no connection,
    // while a connection handed to the other thread's socket waited forever.
    let proxy = start_proxy("server:\n  max_connections: 1\n").await;
    for _ in 0..12 {
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            health_round_trip(&mut conn)
                .await
                .starts_with("HTTP/1.1 200")
        );
    }
    shut_down(proxy).await;
}

#[tokio::test]
async fn connections_are_spread_over_the_serving_threads_and_stay_on_theirs() {
    use llm_proxy_server::config::ServerConfig;
    use llm_proxy_server::serve::{Listener, Shutdown, bind_listeners, serve_on_threads};
    let thread = || std::thread::current().name().unwrap_or_default().to_owned();
    let router = axum::Router::new().route(
        "/thread",
        axum::routing::get(move || async move { thread() }),
    );
    let sockets = bind_listeners("127.0.0.1", 0, 2).unwrap();
    let addr = sockets[0].local_addr().unwrap();
    assert!(sockets.iter().all(|s| s.local_addr().unwrap() == addr));
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve_on_threads(
        vec![Listener {
            sockets,
            app: llm_proxy_server::App::routed(router),
        }],
        2,
        ServerConfig::default(),
        shutdown.clone(),
    ));
    let ask = |client: reqwest::Client| async move {
        client
            .get(format!("http://{addr}/thread"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let mut seen = std::collections::BTreeSet::new();
    // The kernel hashes each connection to one socket: over 32 connections, both threads
    // serve some (all on one would happen once in 2^31 runs).
    for _ in 0..32 {
        let client = reqwest::Client::new();
        let first = ask(client.clone()).await;
        assert_eq!(
            ask(client).await,
            first,
            "a kept-alive connection changed threads"
        );
        seen.insert(first);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["llm-proxy-serve-0", "llm-proxy-serve-1"]
    );
    shutdown.begin();
    tokio::time::timeout(HANG, server)
        .await
        .expect("the serving threads did not stop")
        .unwrap()
        .unwrap();
}

#[test]
fn binding_a_taken_port_is_an_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = llm_proxy_server::serve::bind_listeners("127.0.0.1", port, 2).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}
