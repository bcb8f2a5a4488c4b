//! Streaming mechanics: keep-alives while the upstream is silent, cancellation when the client
//! leaves.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use llm_proxy_test_support::{MockUpstream, Reply, SseScript, openai};
use tokio::sync::Notify;

use crate::common::{chat_body, client, proxy_for, sse_data};

#[tokio::test]
async fn keepalives_flow_while_the_upstream_is_silent() {
    let up = MockUpstream::start().await.unwrap();
    let release = Arc::new(Notify::new());
    up.push(Reply::Sse(SseScript {
        frames: openai::text_stream(&["late"]),
        hold_before_first: Some(release.clone()),
        ..SseScript::default()
    }));
    let proxy = proxy_for(
        &up.base_url(),
        "failure_handling:\n  keepalive_interval: 0.05\n",
    )
    .await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "headers go out once the keep-alive interval passes"
    );
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    // Read until a keep-alive comment arrived, then let the upstream talk.
    while !text.contains(": keep-alive") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(!text.contains("data:"), "no data before the upstream spoke");
    release.notify_one();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let (chunks, done) = sse_data(&text);
    assert!(done);
    assert_eq!(
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect::<String>(),
        "late"
    );
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream_connection() {
    let up = MockUpstream::start().await.unwrap();
    let pieces: Vec<String> = (0..200).map(|i| format!("w{i} ")).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    up.push(Reply::Sse(SseScript {
        frames: openai::text_stream(&refs),
        gap: Duration::from_millis(20),
        ..SseScript::default()
    }));
    let proxy = proxy_for(&up.base_url(), "").await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&chat_body(true))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).unwrap().contains("data:"));
    drop(body);
    assert!(
        up.wait_for_disconnect(Duration::from_secs(10)).await,
        "the mock saw its client hang up"
    );
}

/// Waits until `hang-fixture` has seen `n` cancellations in total.
async fn hang_cancellations_reach(n: usize) -> bool {
    use llm_proxy_plugin_test_fixtures::{HANG_CANCEL_SIGNAL, HANG_CANCELLED};
    use std::sync::atomic::Ordering;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let signal = HANG_CANCEL_SIGNAL.notified();
            if HANG_CANCELLED.load(Ordering::SeqCst) >= n {
                return;
            }
            signal.await;
        }
    })
    .await
    .is_ok()
}

/// A backend's `CallContext::cancel` fires when the client goes away, streaming or not, so a
/// plugin holding resources (a subprocess, a socket of its own) can let them go.
#[tokio::test]
async fn a_client_leaving_cancels_the_backends_call_token() {
    use llm_proxy_plugin_test_fixtures::HANG_CANCELLED;
    use std::sync::atomic::Ordering;
    llm_proxy_plugin_test_fixtures::link();
    let proxy = crate::common::start_proxy(
        "backends:\n  default_backend: hang-fixture\n  hang-fixture: {}\nfailure_handling:\n  keepalive_interval: 0.05\n",
    )
    .await;
    for stream in [false, true] {
        let before = HANG_CANCELLED.load(Ordering::SeqCst);
        let mut body = chat_body(stream);
        body["model"] = "hang-fixture:m".into();
        let call = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .json(&body)
            .send();
        if stream {
            // Headers go out with the first keep-alive; then the client leaves.
            let resp = call.await.unwrap();
            assert_eq!(resp.status(), 200);
            drop(resp);
        } else {
            // The client gives up while the proxy is still waiting on the backend.
            let _ = tokio::time::timeout(Duration::from_millis(300), call).await;
        }
        assert!(
            hang_cancellations_reach(before + 1).await,
            "stream={stream}: the backend's cancellation token fired"
        );
    }
}
