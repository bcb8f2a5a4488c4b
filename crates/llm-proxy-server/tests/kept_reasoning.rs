//! Reasoning state kept in the session for OpenAI chat clients that do not send it back
//! (`translation.keep_reasoning`): the usual SDK tool loop echoes only the assistant's text and
//! tool calls, yet the upstream gets its signed thinking (Anthropic) or thought signatures
//! (Gemini) back with the calls, so Anthropic keeps thinking instead of being switched off,
//! and Gemini sees its own signature instead of the validator marker.

use llm_proxy_test_support::anthropic::{Block, Tokens};
use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini};
use serde_json::{Value, json};

use crate::common::{client, lossy, sse_data, start_proxy};
use crate::dialect::{Dialect, MODEL};
use crate::matrix::{TOOL_SIGNATURE, text_reply};

const THINKING_SIGNATURE: &str = "SIG_ANTHROPIC_kept_EqQBCkYIBxgCKkA";

fn yaml(up: Dialect, url: &str, keep: bool) -> String {
    let backend = match up {
        Dialect::Anthropic => format!(
            "  default_backend: anthropic\n  anthropic:\n    api_url: {url}/v1\n    api_key: sk-ant-upstream-0123456789\n"
        ),
        Dialect::Gemini => format!(
            "  default_backend: gemini\n  gemini:\n    api_url: {url}\n    api_key: AIza-upstream-0123456789\n"
        ),
        other => unreachable!("{other:?} is not used here"),
    };
    format!("translation:\n  keep_reasoning: {keep}\nbackends:\n{backend}")
}

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

fn first_messages() -> Vec<Value> {
    vec![json!({"role": "user", "content": "Weather in Paris?"})]
}

/// The chat answer's message (streamed answers accumulated the way SDKs do: text and calls).
async fn chat(url: &str, messages: &[Value], stream: bool) -> (Value, String) {
    let resp = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(
            &json!({"model": MODEL, "messages": messages, "tools": tools(),
                      "reasoning_effort": "high", "stream": stream}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    let text = resp.text().await.unwrap();
    if !stream {
        let body: Value = serde_json::from_str(&text).unwrap();
        return (body["choices"][0]["message"].clone(), lossy);
    }
    let (chunks, done) = sse_data(&text);
    assert!(done);
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for chunk in chunks {
        let delta = &chunk["choices"][0]["delta"];
        content.push_str(delta["content"].as_str().unwrap_or_default());
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.push(json!({"id": tc["id"], "type": "function",
                    "function": {"name": tc["function"]["name"], "arguments": ""}}));
            }
            let args = calls[i]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned()
                + tc["function"]["arguments"].as_str().unwrap_or_default();
            calls[i]["function"]["arguments"] = json!(args);
        }
    }
    (
        json!({"role": "assistant", "content": content, "tool_calls": calls}),
        lossy,
    )
}

/// The second turn as a plain SDK loop writes it: the assistant's text and calls only (no
/// `reasoning_details`, no `extra_content`), then a result per call.
fn second_messages(answer: &Value) -> Vec<Value> {
    let calls: Vec<Value> = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| json!({"id": c["id"], "type": "function", "function": c["function"]}))
        .collect();
    assert!(!calls.is_empty(), "{answer}");
    let mut messages = first_messages();
    messages.push(json!({"role": "assistant", "content": answer["content"], "tool_calls": calls}));
    for c in &calls {
        messages.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "Sunny, 21 C"}));
    }
    messages
}

fn anthropic_tool_turn(stream: bool) -> Reply {
    let blocks = [
        Block::thinking(&["The user wants ", "the weather."], THINKING_SIGNATURE),
        Block::text(&["Let me check."]),
        Block::tool_use("toolu_01A", "get_weather", &["{\"city\":", " \"Paris\"}"]),
    ];
    let tokens = Tokens::new(30, 12);
    if stream {
        Reply::sse(anthropic::stream(&blocks, "tool_use", tokens))
    } else {
        Reply::json(anthropic::message(&blocks, "tool_use", tokens))
    }
}

#[tokio::test]
async fn anthropic_keeps_thinking_through_a_chat_clients_tool_loop() {
    for stream in [false, true] {
        for keep in [true, false] {
            let mock = MockUpstream::start().await.unwrap();
            mock.push(anthropic_tool_turn(stream));
            mock.push(text_reply(Dialect::Anthropic, stream, "It is sunny."));
            let proxy = start_proxy(&yaml(Dialect::Anthropic, &mock.base_url(), keep)).await;
            let (answer, _) = chat(&proxy.url, &first_messages(), stream).await;
            let (_, lossy) = chat(&proxy.url, &second_messages(&answer), stream).await;
            let sent = &mock.requests()[1].body;
            let assistant = &sent["messages"][1];
            assert_eq!(assistant["role"], "assistant", "{sent}");
            if keep {
                assert_eq!(
                    assistant["content"][0],
                    json!({"type": "thinking", "thinking": "The user wants the weather.",
                           "signature": THINKING_SIGNATURE}),
                    "stream={stream}: {sent}"
                );
                assert_eq!(sent["thinking"]["type"], "enabled", "{sent}");
                assert!(!lossy.contains("thinking"), "{lossy}");
            } else {
                // Without the kept state Anthropic would refuse the turn: thinking is turned
                // off for it, and the client is told.
                assert_ne!(assistant["content"][0]["type"], "thinking", "{sent}");
                assert!(sent.get("thinking").is_none(), "{sent}");
                assert!(lossy.contains("thinking disabled"), "{lossy}");
            }
        }
    }
}

#[tokio::test]
async fn gemini_gets_its_own_thought_signature_back_on_the_call() {
    for stream in [false, true] {
        for keep in [true, false] {
            let mock = MockUpstream::start().await.unwrap();
            let parts = gemini::parallel_call_parts(TOOL_SIGNATURE);
            let tokens = gemini::Tokens::new(30, 12);
            mock.push(if stream {
                Reply::sse(gemini::stream(&[parts], "STOP", tokens))
            } else {
                Reply::json(gemini::response(&parts, "STOP", tokens))
            });
            mock.push(text_reply(Dialect::Gemini, stream, "It is sunny."));
            let proxy = start_proxy(&yaml(Dialect::Gemini, &mock.base_url(), keep)).await;
            let (answer, _) = chat(&proxy.url, &first_messages(), stream).await;
            chat(&proxy.url, &second_messages(&answer), stream).await;
            let sent = &mock.requests()[1].body;
            let model_turn = sent["contents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["role"] == "model")
                .unwrap_or_else(|| panic!("{sent}"));
            let first_call = model_turn["parts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p.get("functionCall").is_some())
                .unwrap_or_else(|| panic!("{sent}"));
            let signature = first_call.get("thoughtSignature").and_then(Value::as_str);
            if keep {
                assert_eq!(signature, Some(TOOL_SIGNATURE), "stream={stream}: {sent}");
            } else {
                assert_ne!(signature, Some(TOOL_SIGNATURE), "{sent}");
            }
        }
    }
}
