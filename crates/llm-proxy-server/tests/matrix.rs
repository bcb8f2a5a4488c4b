//! The conformance matrix: every client protocol (OpenAI chat, Anthropic, Gemini) on every
//! upstream dialect (OpenAI-compatible, Anthropic, Gemini mocks), streamed and not, for text,
//! parallel tool calls with results (one an error) on the next turn, and signed reasoning
//! carried back on the next turn. Each cell checks the client-visible answer (well-formed for
//! its protocol, equal to the expected dialect-neutral answer; non-streamed answers also
//! against golden files) and what the upstream received on both turns.

use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini, openai};
use serde_json::{Value, json};

use crate::dialect::{
    Answer, Conversation, Dialect, SYSTEM, ToolReply, proxy_on, read_answer, upstream_path,
    upstream_view,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Text,
    Tools,
    Reasoning,
}

/// Signatures each upstream dialect issues for its reasoning.
pub fn reasoning_signature(up: Dialect) -> &'static str {
    match up {
        Dialect::OpenAi => "SIG_OPENAI_reasoning",
        Dialect::Anthropic => "SIG_ANTHROPIC_EqQBCkYIBxgCKkA",
        Dialect::Gemini => "SIG_GEMINI_CiQB0e2Kb6sH0ZP1",
    }
}

/// The Gemini signature on the first function call of the tools answer.
pub const TOOL_SIGNATURE: &str = "SIG_GEMINI_TOOLS_EuYBCuMBAdHt";

fn openai_text_stream(text: &str, usage: (u64, u64)) -> Vec<String> {
    let (first, rest) = text.split_at(text.len() / 2);
    vec![
        openai::frame(&openai::delta_chunk(
            json!({"role": "assistant", "content": ""}),
            None,
        )),
        openai::frame(&openai::delta_chunk(json!({"content": first}), None)),
        openai::frame(&openai::delta_chunk(json!({"content": rest}), None)),
        openai::frame(&openai::delta_chunk(json!({}), Some("stop"))),
        openai::usage_frame(usage.0, usage.1),
        "data: [DONE]\n\n".to_owned(),
    ]
}

/// A plain text answer in `up`'s dialect.
pub fn text_reply(up: Dialect, stream: bool, text: &str) -> Reply {
    let (first, rest) = text.split_at(text.len() / 2);
    match (up, stream) {
        (Dialect::OpenAi, false) => Reply::json(openai::completion(text)),
        (Dialect::OpenAi, true) => Reply::sse(openai_text_stream(text, (11, 7))),
        (Dialect::Anthropic, false) => Reply::json(anthropic::text_message(text)),
        (Dialect::Anthropic, true) => Reply::sse(anthropic::text_stream(&[first, rest])),
        (Dialect::Gemini, false) => Reply::json(gemini::text_response(text)),
        (Dialect::Gemini, true) => Reply::sse(gemini::text_stream(&[first, rest])),
    }
}

/// The first answer of `scenario` in `up`'s dialect.
pub fn first_reply(up: Dialect, stream: bool, scenario: Scenario) -> Reply {
    let sig = reasoning_signature(up);
    match scenario {
        Scenario::Text => text_reply(up, stream, "Hello world"),
        Scenario::Tools => match (up, stream) {
            (Dialect::OpenAi, false) => Reply::json(openai::parallel_tool_completion()),
            // Two calls whose argument fragments interleave.
            (Dialect::OpenAi, true) => Reply::sse(openai::parallel_tool_stream()),
            (Dialect::Anthropic, false) => Reply::json(anthropic::message(
                &anthropic::parallel_tool_blocks(),
                "tool_use",
                anthropic::Tokens::new(30, 12),
            )),
            (Dialect::Anthropic, true) => Reply::sse(anthropic::stream(
                &anthropic::parallel_tool_blocks(),
                "tool_use",
                anthropic::Tokens::new(30, 12),
            )),
            (Dialect::Gemini, false) => Reply::json(gemini::response(
                &gemini::parallel_call_parts(TOOL_SIGNATURE),
                "STOP",
                gemini::Tokens::new(30, 12),
            )),
            (Dialect::Gemini, true) => {
                let frames: Vec<Vec<Value>> = gemini::parallel_call_parts(TOOL_SIGNATURE)
                    .into_iter()
                    .map(|p| vec![p])
                    .collect();
                Reply::sse(gemini::stream(&frames, "STOP", gemini::Tokens::new(30, 12)))
            }
        },
        Scenario::Reasoning => match (up, stream) {
            (Dialect::OpenAi, false) => Reply::json(openai::reasoning_completion(
                "Let me think about this.",
                sig,
                "The answer is 4.",
            )),
            (Dialect::OpenAi, true) => Reply::sse(openai::reasoning_stream(
                &["Let me think ", "about this."],
                sig,
                "The answer is 4.",
            )),
            (Dialect::Anthropic, false) => Reply::json(anthropic::message(
                &anthropic::thinking_blocks(sig),
                "end_turn",
                anthropic::Tokens::new(11, 7),
            )),
            (Dialect::Anthropic, true) => Reply::sse(anthropic::stream(
                &anthropic::thinking_blocks(sig),
                "end_turn",
                anthropic::Tokens::new(11, 7),
            )),
            (Dialect::Gemini, false) => Reply::json(gemini::response(
                &gemini::thinking_parts(sig),
                "STOP",
                gemini::Tokens {
                    prompt: 11,
                    candidates: 3,
                    thoughts: 4,
                },
            )),
            (Dialect::Gemini, true) => Reply::sse(gemini::stream(
                &[
                    vec![gemini::thought("Let me think ", None)],
                    vec![gemini::thought("about this.", Some(sig))],
                    vec![gemini::text("The answer is 4.")],
                ],
                "STOP",
                gemini::Tokens {
                    prompt: 11,
                    candidates: 3,
                    thoughts: 4,
                },
            )),
        },
    }
}

/// Call ids each upstream dialect issues for the two parallel calls.
pub fn call_ids(up: Dialect) -> [&'static str; 2] {
    match up {
        Dialect::OpenAi => ["call_a", "call_b"],
        Dialect::Anthropic => ["toolu_01A", "toolu_01B"],
        Dialect::Gemini => ["call_g1", "call_g2"],
    }
}

/// The answer every client should see, dialect-neutral.
pub fn expected_answer(up: Dialect, scenario: Scenario) -> Value {
    match scenario {
        Scenario::Text => json!({"text": "Hello world", "reasoning": [], "tool_calls": [],
            "finish": "stop", "usage": {"input": 11, "output": 7}}),
        Scenario::Tools => {
            let [a, b] = call_ids(up);
            let text = if up == Dialect::OpenAi {
                ""
            } else {
                "Checking both."
            };
            json!({"text": text, "reasoning": [], "finish": "tool_calls", "usage": {"input": 30, "output": 12},
            "tool_calls": [
                {"id": a, "name": "get_weather", "arguments": {"city": "Paris"}, "signed": up == Dialect::Gemini},
                {"id": b, "name": "get_time", "arguments": {"tz": "CET"}, "signed": false}
            ]})
        }
        Scenario::Reasoning => json!({"text": "The answer is 4.",
            "reasoning": [{"text": "Let me think about this.", "signed": true}],
            "tool_calls": [], "finish": "stop", "usage": {"input": 11, "output": 7}}),
    }
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Text => "text",
        Scenario::Tools => "tools",
        Scenario::Reasoning => "reasoning",
    }
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::OpenAi => "openai",
        Dialect::Anthropic => "anthropic",
        Dialect::Gemini => "gemini",
    }
}

/// Replaces values that change on every run (ids, timestamps) so a golden file can pin the
/// rest of a non-streamed response.
fn mask_volatile(client: Dialect, mut body: Value) -> Value {
    match client {
        Dialect::OpenAi => {
            body["id"] = json!("<id>");
            body["created"] = json!(0);
        }
        Dialect::Anthropic => body["id"] = json!("<id>"),
        Dialect::Gemini => body["responseId"] = json!("<id>"),
    }
    mask_sealed(&mut body);
    body
}

/// Sealed reasoning state (a fresh nonce every time) becomes `<sealed>`: the Anthropic form
/// (`llmproxy.v1.`...) and the Gemini form (its standard base64).
pub fn mask_sealed(value: &mut Value) {
    match value {
        Value::String(s) if is_sealed(s) => *s = "<sealed>".to_owned(),
        Value::Array(items) => items.iter_mut().for_each(mask_sealed),
        Value::Object(map) => map.values_mut().for_each(mask_sealed),
        _ => {}
    }
}

/// Whether a signature slot holds state the proxy sealed (either slot form).
pub fn is_sealed(s: &str) -> bool {
    use base64::Engine;
    s.starts_with("llmproxy.v1.")
        || base64::engine::general_purpose::STANDARD
            .decode(s)
            .is_ok_and(|b| b.starts_with(b"llmproxy.v1."))
}

/// Compares a non-streamed client response with its golden file
/// (`tests/fixtures/matrix/<client>_on_<upstream>_<scenario>.json`); `UPDATE_GOLDEN=1`
/// rewrites the file instead (review the diff before committing it).
fn check_golden(client: Dialect, up: Dialect, scenario: Scenario, body: &Value) {
    let path = format!(
        "{}/tests/fixtures/matrix/{}_on_{}_{}.json",
        env!("CARGO_MANIFEST_DIR"),
        dialect_name(client),
        dialect_name(up),
        scenario_name(scenario)
    );
    let actual = mask_volatile(client, body.clone());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden {path}: {e}"));
    let golden: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(actual, golden, "client response differs from {path}");
}

async fn run_cell(client: Dialect, up: Dialect, stream: bool, scenario: Scenario) {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(first_reply(up, stream, scenario));
    let follow_up = match scenario {
        Scenario::Tools => "It is sunny.",
        _ => "Eight.",
    };
    mock.push(text_reply(up, stream, follow_up));
    let proxy = proxy_on(up, &mock.base_url()).await;

    // Turn 1.
    let mut conv = Conversation::new(
        client,
        scenario == Scenario::Tools,
        scenario == Scenario::Reasoning,
        "Weather and time in Paris?",
    );
    let resp = conv.send(&proxy, stream).await;
    let answer: Answer = if stream {
        read_answer(client, resp, true).await
    } else {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        check_golden(client, up, scenario, &body);
        // Re-read through the same checks as a live response.
        let echo = reqwest_like(body);
        read_answer(client, echo, false).await
    };
    assert_eq!(
        answer.neutral,
        expected_answer(up, scenario),
        "client-visible answer"
    );

    let first = &mock.requests()[0];
    assert_eq!(first.uri, upstream_path(up, stream));
    let seen = upstream_view(up, &first.body);
    assert_eq!(seen["system"], SYSTEM);
    let tools = (scenario == Scenario::Tools).then(|| json!(["get_weather", "get_time"]));
    assert_eq!(seen["tools"], tools.unwrap_or(Value::Null));
    assert_eq!(
        seen["reasoning_requested"],
        scenario == Scenario::Reasoning,
        "{}",
        first.body
    );

    // Turn 2: the answer as the client echoes it, then tool results or a new question.
    conv.items.push(answer.echo.clone());
    match scenario {
        Scenario::Tools => {
            let calls = answer.calls();
            conv.push_tool_results(&[
                ToolReply {
                    id: calls[0].0.clone(),
                    name: calls[0].1.clone(),
                    text: "sunny, 21C".into(),
                    is_error: false,
                },
                ToolReply {
                    id: calls[1].0.clone(),
                    name: calls[1].1.clone(),
                    text: "unknown timezone".into(),
                    is_error: true,
                },
            ]);
        }
        _ => conv.push_user("And 4+4?"),
    }
    let second = read_answer(client, conv.send(&proxy, stream).await, stream).await;
    assert_eq!(second.neutral["text"], follow_up);

    let sent = &mock.requests()[1];
    let seen = upstream_view(up, &sent.body);
    match scenario {
        Scenario::Text => {
            assert_eq!(seen["calls"], json!([]));
            assert_eq!(seen["reasoning"], json!([]));
        }
        Scenario::Tools => {
            let [a, b] = call_ids(up);
            let signature = if up == Dialect::Gemini {
                json!(TOOL_SIGNATURE)
            } else {
                Value::Null
            };
            assert_eq!(
                seen["calls"],
                json!([
                    {"id": a, "name": "get_weather", "arguments": {"city": "Paris"}, "signature": signature},
                    {"id": b, "name": "get_time", "arguments": {"tz": "CET"}, "signature": null}
                ]),
                "the tool calls go back as the upstream issued them: {}",
                sent.body
            );
            let results = seen["results"].as_array().unwrap();
            assert_eq!(results.len(), 2, "{}", sent.body);
            assert_eq!(results[0]["id"], a);
            assert_eq!(results[1]["id"], b);
            assert!(
                results[0]["text"].as_str().unwrap().contains("sunny, 21C"),
                "{}",
                sent.body
            );
            assert!(
                results[1]["text"]
                    .as_str()
                    .unwrap()
                    .contains("unknown timezone"),
                "{}",
                sent.body
            );
            assert_eq!(results[0]["error"], false);
            // An OpenAI client has no error flag; its "Error: ..." text is what travels.
            let flagged = client != Dialect::OpenAi || up == Dialect::OpenAi;
            assert_eq!(results[1]["error"], flagged, "{}", sent.body);
            if up == Dialect::Gemini {
                assert_eq!(results[0]["name"], "get_weather");
                assert_eq!(results[1]["name"], "get_time");
            }
        }
        Scenario::Reasoning => {
            assert_eq!(
                seen["reasoning"],
                json!([{"text": "Let me think about this.", "signature": reasoning_signature(up)}]),
                "the upstream gets its own signed reasoning back: {}",
                sent.body
            );
        }
    }
}

/// A non-streamed body already read, wrapped again so `read_answer` applies its checks.
fn reqwest_like(body: Value) -> reqwest::Response {
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap();
    reqwest::Response::from(resp)
}

macro_rules! cells {
    ($($name:ident: $client:ident on $up:ident;)*) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn text() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Text).await }
                #[tokio::test]
                async fn text_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Text).await }
                #[tokio::test]
                async fn tools() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Tools).await }
                #[tokio::test]
                async fn tools_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Tools).await }
                #[tokio::test]
                async fn reasoning() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Reasoning).await }
                #[tokio::test]
                async fn reasoning_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Reasoning).await }
            }
        )*
    };
}

cells! {
    openai_on_openai: OpenAi on OpenAi;
    openai_on_anthropic: OpenAi on Anthropic;
    openai_on_gemini: OpenAi on Gemini;
    anthropic_on_openai: Anthropic on OpenAi;
    anthropic_on_anthropic: Anthropic on Anthropic;
    anthropic_on_gemini: Anthropic on Gemini;
    gemini_on_openai: Gemini on OpenAi;
    gemini_on_anthropic: Gemini on Anthropic;
    gemini_on_gemini: Gemini on Gemini;
}

/// The events an Anthropic client gets when an OpenAI-compatible upstream streams two tool
/// calls whose argument fragments interleave: each call one whole `tool_use` block, its input
/// complete, blocks never interleaved.
#[tokio::test]
async fn interleaved_openai_fragments_reach_anthropic_clients_as_whole_tool_use_blocks() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(Reply::sse(openai::parallel_tool_stream()));
    let proxy = proxy_on(Dialect::OpenAi, &mock.base_url()).await;
    let conv = Conversation::new(
        Dialect::Anthropic,
        true,
        false,
        "Weather and time in Paris?",
    );
    let resp = conv.send(&proxy, true).await;
    assert_eq!(resp.status(), 200);
    let events: Vec<Value> = crate::dialect::sse_events(&resp.text().await.unwrap())
        .into_iter()
        .map(|(_, data)| data)
        .filter(|d| d["type"] != "ping" && d["type"] != "message_start")
        .collect();
    assert_eq!(
        events,
        vec![
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":\"CET\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 30, "output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]
    );
}

pub fn rate_limit_body(up: Dialect) -> Value {
    match up {
        Dialect::OpenAi => openai::error(
            "Rate limit reached for requests",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        Dialect::Anthropic => anthropic::rate_limit_error(),
        Dialect::Gemini => gemini::rate_limit_error(),
    }
}

fn overflow_body(up: Dialect) -> Value {
    match up {
        Dialect::OpenAi => openai::error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
        Dialect::Anthropic => anthropic::prompt_too_long_error(),
        Dialect::Gemini => gemini::context_length_error(),
    }
}

/// Checks an error response: status and the client's own envelope for `kind`.
async fn assert_error(
    client: Dialect,
    resp: reqwest::Response,
    status: u16,
    kind: &str,
    upstream_message: &str,
) {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    match (client, kind) {
        (Dialect::OpenAi, "rate_limit") => {
            assert_eq!(body["error"]["type"], "rate_limit_error", "{body}")
        }
        (Dialect::OpenAi, _) => {
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
            assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
            assert_eq!(body["error"]["param"], "input", "{body}");
        }
        (Dialect::Anthropic, "rate_limit") => {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
        }
        (Dialect::Anthropic, _) => {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        }
        (Dialect::Gemini, "rate_limit") => {
            assert_eq!(body["error"]["code"], 429, "{body}");
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");
        }
        (Dialect::Gemini, _) => {
            assert_eq!(body["error"]["code"], 400, "{body}");
            assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{body}");
        }
    }
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.to_lowercase().contains(upstream_message),
        "the upstream's message is kept: {body}"
    );
}

/// Upstream 429 and context overflow (400), before the first byte, streamed or not: each client
/// gets the status and its own error envelope.
#[tokio::test]
async fn upstream_errors_reach_every_client_in_its_envelope() {
    for up in Dialect::ALL {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        for client in Dialect::ALL {
            for stream in [false, true] {
                mock.push(Reply::error(429, rate_limit_body(up)));
                let conv = Conversation::new(client, false, false, "hi");
                let message = rate_limit_body(up).to_string();
                let snippet = if message.contains("exhausted") {
                    "exhausted"
                } else {
                    "rate limit"
                };
                assert_error(
                    client,
                    conv.send(&proxy, stream).await,
                    429,
                    "rate_limit",
                    snippet,
                )
                .await;
                mock.push(Reply::error(400, overflow_body(up)));
                assert_error(
                    client,
                    conv.send(&proxy, stream).await,
                    400,
                    "overflow",
                    "tokens",
                )
                .await;
            }
        }
        assert_eq!(
            mock.calls(),
            12,
            "errors are not retried on the same instance"
        );
    }
}

/// An upstream stream that fails after meaningful output: each client gets an in-stream error
/// in its own protocol after the text it already received.
#[tokio::test]
async fn errors_after_the_first_byte_are_in_stream_errors_in_every_client_protocol() {
    for up in Dialect::ALL {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        for client in Dialect::ALL {
            mock.push(Reply::sse(match up {
                Dialect::OpenAi => vec![
                    openai::frame(&openai::delta_chunk(json!({"role": "assistant", "content": "partial"}), None)),
                    openai::frame(&json!({"error": {"message": "Overloaded", "type": "server_error", "code": 503}})),
                ],
                Dialect::Anthropic => anthropic::overloaded_stream("partial"),
                Dialect::Gemini => vec![
                    format!("data: {}\r\n\r\n", json!({"candidates": [{"content": {"role": "model", "parts": [gemini::text("partial")]}, "index": 0}]})),
                    format!("data: {}\r\n\r\n", gemini::error(503, "UNAVAILABLE", "Overloaded")),
                ],
            }));
            let resp = Conversation::new(client, false, false, "hi")
                .send(&proxy, true)
                .await;
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.unwrap();
            assert!(text.contains("partial"), "{text}");
            match client {
                Dialect::OpenAi => {
                    let (chunks, done) = crate::common::sse_data(&text);
                    assert!(done);
                    let last = chunks.last().unwrap();
                    assert_eq!(last["choices"][0]["finish_reason"], "error", "{text}");
                    assert_eq!(last["error"]["message"], "Overloaded", "{text}");
                }
                Dialect::Anthropic => {
                    let events = crate::dialect::sse_events(&text);
                    let (name, data) = events.last().unwrap();
                    assert_eq!(name, "error", "{text}");
                    assert_eq!(data["error"]["message"], "Overloaded");
                    assert!(!events.iter().any(|(n, _)| n == "message_stop"), "{text}");
                }
                Dialect::Gemini => {
                    let (frames, _) = crate::common::sse_data(&text);
                    let last = frames.last().unwrap();
                    assert_eq!(last["error"]["message"], "Overloaded", "{text}");
                    assert!(last["error"]["code"].as_u64().unwrap() >= 500, "{text}");
                }
            }
        }
    }
}
