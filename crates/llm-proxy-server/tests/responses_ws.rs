//! WebSocket mode of the Responses frontend (`GET /v1/responses`, as Codex CLI uses it): turns
//! on one connection continued with `previous_response_id` (kept by the connection even with
//! `store: false`, and shared with HTTP when stored), tool calls, error turns that leave the
//! connection usable, Codex's `generate: false` warm-up, pings, the connection cap, the idle
//! timeout, client keys on the upgrade, and the switch.

use futures::{SinkExt, StreamExt};
use llm_proxy_test_support::{MockUpstream, Reply};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::common::{Proxy, client, start_proxy};
use crate::dialect::{
    Dialect, MODEL, SYSTEM, output_text, responses_neutral as neutral, upstream_view,
};
use crate::matrix::{Scenario, expected_answer, first_reply, rate_limit_body, text_reply};
use crate::responses::tools;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn ws_url(proxy: &Proxy, path: &str) -> String {
    format!("{}{path}", proxy.url.replacen("http://", "ws://", 1))
}

async fn connect(proxy: &Proxy) -> Ws {
    connect_async(ws_url(proxy, "/v1/responses"))
        .await
        .unwrap()
        .0
}

/// Sends one `response.create` and reads the turn's messages up to its last one: a terminal
/// event, or a failure before the first event (an `error` carrying `status`).
async fn turn(ws: &mut Ws, body: Value) -> Vec<Value> {
    let mut message = json!({"type": "response.create"});
    message
        .as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    ws.send(Message::text(message.to_string())).await.unwrap();
    let mut events = Vec::new();
    loop {
        let event: Value = match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?} after {events:?}"),
        };
        let kind = event["type"].as_str().unwrap().to_owned();
        let done = matches!(
            kind.as_str(),
            "response.completed" | "response.incomplete" | "response.failed"
        ) || (kind == "error" && event.get("status").is_some());
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The final response object of a successful turn, after checking the events are the SSE
/// stream's: `response.created` first, numbered in order, deltas adding up.
fn completed(events: &[Value]) -> Value {
    assert_eq!(events[0]["type"], "response.created", "{events:?}");
    assert_eq!(events[1]["type"], "response.in_progress", "{events:?}");
    let mut text = String::new();
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], n, "{events:?}");
        if event["type"] == "response.output_text.delta" {
            text.push_str(event["delta"].as_str().unwrap());
        }
    }
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{events:?}");
    let response = last["response"].clone();
    assert_eq!(text, output_text(&response));
    response
}

fn ask(input: Value, previous: Option<&Value>) -> Value {
    let mut body = json!({"model": MODEL, "instructions": SYSTEM, "input": input,
                          "stream": true, "store": false});
    if let Some(id) = previous {
        body["previous_response_id"] = id.clone();
    }
    body
}

fn openai_proxy_yaml(url: &str, extra: &str) -> String {
    format!(
        "backends:\n  default_backend: openai-compatible\n  openai-compatible:\n    api_url: {url}/v1\n    api_key: sk-upstream-0123456789\n{extra}"
    )
}

/// Two turns on one connection: the second names the first with `previous_response_id` (the
/// connection remembers it although `store: false`), so the upstream sees the whole
/// conversation. A stored answer is shared with HTTP both ways.
#[tokio::test]
async fn turns_on_one_connection_continue_the_conversation() {
    for up in Dialect::CLASSIC {
        let mock = MockUpstream::start().await.unwrap();
        mock.push(text_reply(up, true, "Four."));
        mock.push(text_reply(up, true, "Eight."));
        let proxy = crate::dialect::proxy_on(up, &mock.base_url()).await;
        let mut ws = connect(&proxy).await;

        let first = completed(&turn(&mut ws, ask(json!("What is 2+2?"), None)).await);
        assert_eq!(output_text(&first), "Four.");
        let second = completed(
            &turn(
                &mut ws,
                ask(
                    json!([{"role": "user", "content": "And 4+4?"}]),
                    Some(&first["id"]),
                ),
            )
            .await,
        );
        assert_eq!(output_text(&second), "Eight.");
        assert_ne!(first["id"], second["id"]);
        let sent = &mock.requests()[1].body;
        let seen = upstream_view(up, sent);
        assert_eq!(seen["system"], SYSTEM, "{sent}");
        let text = sent.to_string();
        for part in ["What is 2+2?", "Four.", "And 4+4?"] {
            assert!(text.contains(part), "{part} missing from {sent}");
        }
        // `store: false`: nothing went to the shared store.
        let resp = client()
            .get(format!(
                "{}/v1/responses/{}",
                proxy.url,
                first["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }

    // Stored answers are shared: WebSocket -> HTTP -> WebSocket on a new connection.
    let mock = MockUpstream::start().await.unwrap();
    for (text, stream) in [("One.", true), ("Two.", false), ("Three.", true)] {
        mock.push(text_reply(Dialect::OpenAi, stream, text));
    }
    let proxy = start_proxy(&openai_proxy_yaml(&mock.base_url(), "")).await;
    let mut stored = ask(json!("Count."), None);
    stored["store"] = json!(true);
    let mut ws = connect(&proxy).await;
    let first = completed(&turn(&mut ws, stored).await);
    let mut over_http = ask(json!("More."), Some(&first["id"]));
    over_http["store"] = json!(true);
    over_http["stream"] = json!(false);
    let second: Value = client()
        .post(format!("{}/v1/responses", proxy.url))
        .json(&over_http)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(output_text(&second), "Two.", "{second}");
    drop(ws);
    let mut ws = connect(&proxy).await;
    let third = completed(&turn(&mut ws, ask(json!("Last."), Some(&second["id"]))).await);
    assert_eq!(output_text(&third), "Three.");
    let text = mock.requests()[2].body.to_string();
    for part in ["Count.", "One.", "More.", "Two.", "Last."] {
        assert!(text.contains(part), "{part} missing from {text}");
    }
}

/// A tool-call turn streams the calls like SSE does; the next turn sends the outputs after
/// `previous_response_id` and the upstream gets calls and results back.
#[tokio::test]
async fn tool_call_turns() {
    for up in Dialect::CLASSIC {
        let mock = MockUpstream::start().await.unwrap();
        mock.push(first_reply(up, true, Scenario::Tools));
        mock.push(text_reply(up, true, "It is sunny."));
        let proxy = crate::dialect::proxy_on(up, &mock.base_url()).await;
        let mut ws = connect(&proxy).await;
        let mut body = ask(json!("Weather and time in Paris?"), None);
        body["tools"] = tools();
        let events = turn(&mut ws, body.clone()).await;
        let first = completed(&events);
        assert_eq!(neutral(&first), expected_answer(up, Scenario::Tools));
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "response.function_call_arguments.delta"),
            "{events:?}"
        );
        let outputs: Vec<Value> = neutral(&first)["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .zip(["sunny, 21C", "unknown timezone"])
            .map(|(call, text)| json!({"type": "function_call_output", "call_id": call["id"], "output": text}))
            .collect();
        body["input"] = Value::Array(outputs);
        body["previous_response_id"] = first["id"].clone();
        let second = completed(&turn(&mut ws, body).await);
        assert_eq!(output_text(&second), "It is sunny.");
        let seen = upstream_view(up, &mock.requests()[1].body);
        assert_eq!(seen["calls"].as_array().unwrap().len(), 2, "{seen}");
        assert_eq!(seen["results"].as_array().unwrap().len(), 2, "{seen}");
    }
}

/// Failures are `error` messages and the connection carries on: an upstream 429 before the
/// first event (with its status, like an HTTP error), bad messages, an unknown
/// `previous_response_id`; a stream failing midway ends in `error` + `response.failed`.
#[tokio::test]
async fn error_turns_leave_the_connection_usable() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&openai_proxy_yaml(&mock.base_url(), "")).await;
    let mut ws = connect(&proxy).await;

    mock.push(Reply::error(429, rate_limit_body(Dialect::OpenAi)));
    let events = turn(&mut ws, ask(json!("hi"), None)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "error");
    assert_eq!(events[0]["status"], 429);
    assert_eq!(events[0]["error"]["type"], "rate_limit_error", "{events:?}");

    let events = turn(&mut ws, ask(json!("hi"), Some(&json!("resp_unknown")))).await;
    assert_eq!(events[0]["status"], 400);
    assert_eq!(events[0]["error"]["code"], "previous_response_not_found");
    assert_eq!(events[0]["error"]["param"], "previous_response_id");

    let events = turn(&mut ws, json!({"type": "session.update"})).await;
    assert_eq!(events[0]["status"], 400);
    assert_eq!(events[0]["error"]["code"], "unsupported_message_type");

    ws.send(Message::text("{\"type\": ")).await.unwrap();
    let Message::Text(text) = ws.next().await.unwrap().unwrap() else {
        panic!("expected an error message")
    };
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["error"]["code"], "invalid_json", "{event}");
    assert_eq!(mock.calls(), 1, "bad messages never reach the upstream");

    mock.push(Reply::sse(vec![
        llm_proxy_test_support::openai::frame(&llm_proxy_test_support::openai::delta_chunk(
            json!({"role": "assistant", "content": "partial"}),
            None,
        )),
        llm_proxy_test_support::openai::frame(
            &json!({"error": {"message": "Overloaded", "type": "server_error", "code": 503}}),
        ),
    ]));
    let events = turn(&mut ws, ask(json!("hi"), None)).await;
    let n = events.len();
    assert_eq!(events[n - 2]["type"], "error", "{events:?}");
    assert_eq!(events[n - 2]["message"], "Overloaded");
    assert_eq!(events[n - 1]["type"], "response.failed");
    assert_eq!(events[n - 1]["response"]["status"], "failed");

    mock.push(text_reply(Dialect::OpenAi, true, "Fine."));
    let good = completed(&turn(&mut ws, ask(json!("hi"), None)).await);
    assert_eq!(output_text(&good), "Fine.");
}

/// Codex's warm-up (`generate: false`) answers at once with an empty response and no upstream
/// call; the first real turn names it and sends no input of its own.
#[tokio::test]
async fn a_warm_up_names_the_conversation_without_calling_the_upstream() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&openai_proxy_yaml(&mock.base_url(), "")).await;
    let mut ws = connect(&proxy).await;
    let mut warm = ask(json!([{"role": "user", "content": "Read the file."}]), None);
    warm["generate"] = json!(false);
    let warm = completed(&turn(&mut ws, warm).await);
    assert_eq!(warm["output"], json!([]));
    assert_eq!(mock.calls(), 0);
    mock.push(text_reply(Dialect::OpenAi, true, "Done."));
    let answer = completed(&turn(&mut ws, ask(json!([]), Some(&warm["id"]))).await);
    assert_eq!(output_text(&answer), "Done.");
    let sent = &mock.requests()[0].body;
    assert!(sent.to_string().contains("Read the file."), "{sent}");
    assert!(sent.get("generate").is_none(), "{sent}");
}

#[tokio::test]
async fn pings_are_answered() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&openai_proxy_yaml(&mock.base_url(), "")).await;
    let mut ws = connect(&proxy).await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Pong(data) => assert_eq!(&data[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// Beyond `max_connections` the upgrade is a 503 in the OpenAI envelope; closing a
/// connection frees its slot.
#[tokio::test]
async fn the_connection_cap_refuses_upgrades_with_503() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&openai_proxy_yaml(
        &mock.base_url(),
        "responses_api:\n  websocket:\n    max_connections: 1\n",
    ))
    .await;
    let mut first = connect(&proxy).await;
    match connect_async(ws_url(&proxy, "/responses")).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            let body: Value = serde_json::from_slice(resp.body().as_ref().unwrap()).unwrap();
            assert_eq!(
                body["error"]["code"], "websocket_connection_limit",
                "{body}"
            );
        }
        other => panic!("expected a 503, got {:?}", other.map(|(_, r)| r.status())),
    }
    first.close(None).await.unwrap();
    // The server answers the close, then its connection task ends and frees the slot.
    while let Some(Ok(_)) = first.next().await {}
    let mut reconnected = None;
    for _ in 0..500 {
        if let Ok((ws, _)) = connect_async(ws_url(&proxy, "/v1/responses")).await {
            reconnected = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(reconnected.is_some(), "the slot was freed");
}

/// A connection silent between turns for `idle_timeout_seconds` is closed by the proxy.
#[tokio::test]
async fn idle_connections_are_closed() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&openai_proxy_yaml(
        &mock.base_url(),
        "responses_api:\n  websocket:\n    idle_timeout_seconds: 0.2\n",
    ))
    .await;
    let mut ws = connect(&proxy).await;
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.reason.as_str(), "idle timeout"),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// The upgrade passes the client-key middleware; `enabled: false` refuses it with 426 (Codex
/// then uses HTTP at once); a plain `GET` is refused in the OpenAI envelope.
#[tokio::test]
async fn upgrades_need_a_client_key_and_the_switch() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&openai_proxy_yaml(
        &mock.base_url(),
        "auth:\n  api_keys: [client-key-0123]\n",
    ))
    .await;
    match connect_async(ws_url(&proxy, "/v1/responses")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|(_, r)| r.status())),
    }
    let mut req = ws_url(&proxy, "/v1/responses")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer client-key-0123".parse().unwrap());
    req.headers_mut().insert(
        "openai-beta",
        "responses_websockets=2026-02-06".parse().unwrap(),
    );
    let (mut ws, _) = connect_async(req).await.unwrap();
    mock.push(text_reply(Dialect::OpenAi, true, "In."));
    assert_eq!(
        output_text(&completed(&turn(&mut ws, ask(json!("hi"), None)).await)),
        "In."
    );

    let plain = client()
        .get(format!("{}/v1/responses", proxy.url))
        .bearer_auth("client-key-0123")
        .send()
        .await
        .unwrap();
    assert!(plain.status().is_client_error(), "{}", plain.status());
    let v: Value = plain.json().await.unwrap();
    assert!(v["error"]["message"].is_string(), "{v}");

    let off = start_proxy(&openai_proxy_yaml(
        &mock.base_url(),
        "responses_api:\n  websocket:\n    enabled: false\n",
    ))
    .await;
    match connect_async(ws_url(&off, "/v1/responses")).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 426);
            let body: Value = serde_json::from_slice(resp.body().as_ref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "websocket_disabled", "{body}");
        }
        other => panic!("expected a 426, got {:?}", other.map(|(_, r)| r.status())),
    }
}
