//! The steering processors end to end, through OpenAI Chat and Anthropic clients, streamed and
//! not: tool calls a model wrote as text arrive as structured calls, broken tool arguments
//! arrive repaired, `<think>` text arrives as reasoning, and reasoning is presented as the
//! `x-llmproxy-reasoning-*` headers or the client's user agent ask.

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{Proxy, client, start_proxy};
use crate::dialect::{Conversation, Dialect, read_answer};

const CLIENTS: [Dialect; 2] = [Dialect::OpenAi, Dialect::Anthropic];

/// A proxy on an OpenAI-compatible mock, with extra `session:` lines.
/// Tests here send one request several times with different scripted answers, which request
/// dedup (its own tests: limits.rs) would refuse.
async fn proxy(url: &str, session: &str) -> Proxy {
    start_proxy(&format!(
        "request_dedup_window: 0\nbackends:\n  default_backend: openai-compatible\n  openai-compatible:\n    api_url: {url}/v1\n    api_key: sk-upstream-0123456789\nsession:\n  max_sessions: 100\n{session}"
    ))
    .await
}

/// The upstream answering `pieces` of text (one chunk each when streamed).
fn text_reply(stream: bool, pieces: &[&str]) -> Reply {
    if stream {
        Reply::sse(openai::text_stream(pieces))
    } else {
        Reply::json(openai::completion(&pieces.concat()))
    }
}

/// The upstream calling `name` with `fragments` of arguments.
fn call_reply(stream: bool, name: &str, fragments: &[&str]) -> Reply {
    if !stream {
        return Reply::json(openai::tool_call_completion(
            "call_1",
            name,
            &fragments.concat(),
        ));
    }
    let mut frames = vec![openai::frame(&openai::delta_chunk(
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
        None,
    ))];
    for f in fragments {
        frames.push(openai::frame(&openai::delta_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": f}}]}),
            None,
        )));
    }
    frames.push(openai::frame(&openai::delta_chunk(
        json!({}),
        Some("tool_calls"),
    )));
    frames.push(openai::usage_frame(5, 3));
    frames.push("data: [DONE]\n\n".to_owned());
    Reply::sse(frames)
}

async fn ask(proxy: &Proxy, client_dialect: Dialect, tools: bool, stream: bool) -> Value {
    let conv = Conversation::new(client_dialect, tools, false, "Weather in Paris?");
    let resp = conv.send(proxy, stream).await;
    read_answer(client_dialect, resp, stream).await.neutral
}

fn calls(answer: &Value) -> Vec<(String, Value)> {
    answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["arguments"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_tool_call_written_as_text_arrives_as_a_structured_call() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "").await;
    for client_dialect in CLIENTS {
        for stream in [false, true] {
            up.push(text_reply(
                stream,
                &[
                    "Checking.\n<tool_",
                    "call>{\"name\": \"get_weather\", \"argu",
                    "ments\": {\"city\": \"Paris\"}}</tool_call>",
                ],
            ));
            let answer = ask(&proxy, client_dialect, true, stream).await;
            let ctx = format!("{client_dialect:?} stream={stream}: {answer}");
            assert_eq!(
                calls(&answer),
                vec![("get_weather".to_owned(), json!({"city": "Paris"}))],
                "{ctx}"
            );
            assert_eq!(answer["text"], "Checking.", "{ctx}");
            assert_eq!(answer["finish"], "tool_calls", "{ctx}");
        }
    }
}

#[tokio::test]
async fn text_that_is_no_call_of_a_defined_tool_arrives_unchanged() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "").await;
    for text in [
        "{\"name\": \"delete_repo\", \"arguments\": {}}",
        "Wrap calls in `<tool_call>` tags, e.g. <tool_call>{\"name\": \"rm\"}</tool_call>.",
    ] {
        for client_dialect in CLIENTS {
            for stream in [false, true] {
                let (a, b) = text.split_at(7);
                up.push(text_reply(stream, &[a, b]));
                let answer = ask(&proxy, client_dialect, true, stream).await;
                assert_eq!(answer["text"], text, "{client_dialect:?} {stream}");
                assert_eq!(answer["tool_calls"], json!([]));
                assert_eq!(answer["finish"], "stop");
            }
        }
    }
}

#[tokio::test]
async fn tool_call_repair_can_be_turned_off() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "  tool_call_repair_enabled: false\n").await;
    let text =
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}</tool_call>";
    up.push(text_reply(false, &[text]));
    let answer = ask(&proxy, Dialect::OpenAi, true, false).await;
    assert_eq!(answer["text"], text);
    assert_eq!(answer["tool_calls"], json!([]));
}

#[tokio::test]
async fn broken_tool_arguments_arrive_repaired() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "").await;
    for client_dialect in CLIENTS {
        for stream in [false, true] {
            up.push(call_reply(
                stream,
                "get_weather",
                &["{'city': ", "'Paris',"],
            ));
            let answer = ask(&proxy, client_dialect, true, stream).await;
            assert_eq!(
                calls(&answer),
                vec![("get_weather".to_owned(), json!({"city": "Paris"}))],
                "{client_dialect:?} stream={stream}: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn strict_json_repair_fails_an_answer_it_cannot_repair() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "  json_repair_strict_mode: true\n").await;
    up.set_fallback(call_reply(false, "get_weather", &["not json at all"]));
    let conv = Conversation::new(Dialect::OpenAi, true, false, "Weather?");
    let resp = conv.send(&proxy, false).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be repaired"),
        "{body}"
    );
}

#[tokio::test]
async fn think_tags_arrive_as_reasoning() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "  fix_think_tags_enabled: true\n").await;
    for client_dialect in CLIENTS {
        for stream in [false, true] {
            up.push(text_reply(
                stream,
                &["<thi", "nk>Let me", " see.</th", "ink>\n\nSunny."],
            ));
            let answer = ask(&proxy, client_dialect, false, stream).await;
            let ctx = format!("{client_dialect:?} stream={stream}: {answer}");
            assert_eq!(answer["text"], "Sunny.", "{ctx}");
            assert_eq!(answer["reasoning"][0]["text"], "Let me see.", "{ctx}");
        }
    }
}

/// An OpenAI client's non-streamed answer with extra request headers.
async fn ask_with(proxy: &Proxy, headers: &[(&str, &str)]) -> Value {
    let body = Conversation::new(Dialect::OpenAi, false, false, "Weather?").body(false);
    let mut req = client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn reasoning_is_presented_as_the_header_or_user_agent_asks() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "  fix_think_tags_enabled: true\n").await;
    up.set_fallback(text_reply(false, &["<think>hmm</think>Sunny."]));
    let message = |b: &Value| b["choices"][0]["message"].clone();

    let plain = message(&ask_with(&proxy, &[]).await);
    assert_eq!(plain["content"], "Sunny.");
    assert_eq!(plain["reasoning_content"], "hmm");

    let dropped = message(&ask_with(&proxy, &[("x-llmproxy-reasoning-mode", "drop")]).await);
    assert_eq!(dropped["content"], "Sunny.");
    assert!(
        dropped.get("reasoning_content").is_none_or(Value::is_null),
        "{dropped}"
    );

    // The default rule: OpenCode ignores reasoning fields, so it gets the reasoning as text.
    let coerced = message(&ask_with(&proxy, &[("user-agent", "opencode/0.9.1")]).await);
    assert_eq!(coerced["content"], "<think>\nhmm\n</think>\n\nSunny.");
    assert!(
        coerced.get("reasoning_content").is_none_or(Value::is_null),
        "{coerced}"
    );

    // The header beats the rule.
    let passed = message(
        &ask_with(
            &proxy,
            &[
                ("user-agent", "opencode/0.9.1"),
                ("x-llmproxy-reasoning-mode", "passthrough"),
            ],
        )
        .await,
    );
    assert_eq!(passed["reasoning_content"], "hmm");
}

#[tokio::test]
async fn reasoning_that_is_not_meaningful_makes_an_answer_empty_and_retried() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy(&up.base_url(), "  fix_think_tags_enabled: true\n").await;
    up.push(text_reply(false, &["<think>only thinking</think>"]));
    up.push(text_reply(false, &["Sunny."]));
    let body = ask_with(&proxy, &[("x-llmproxy-reasoning-meaningful", "false")]).await;
    assert_eq!(body["choices"][0]["message"]["content"], "Sunny.");
    assert_eq!(up.calls(), 2, "the reasoning-only answer was retried");

    // By default reasoning counts: the same answer is not retried.
    up.push(text_reply(false, &["<think>only thinking</think>"]));
    let body = ask_with(&proxy, &[]).await;
    assert_eq!(
        body["choices"][0]["message"]["reasoning_content"],
        "only thinking"
    );
    assert_eq!(up.calls(), 3);
}
