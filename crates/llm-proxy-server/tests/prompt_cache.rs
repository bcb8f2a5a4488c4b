//! Prompt caching end to end: sessions from every client protocol through an Anthropic
//! upstream get cache breakpoints and see the upstream's cache reads in their own usage fields;
//! OpenAI-family upstreams get a stable `prompt_cache_key`; cache usage of OpenAI and Gemini
//! upstreams reaches Anthropic clients with Anthropic's input-token convention.

use llm_proxy_test_support::anthropic::{self as anthropic_up, Block, Tokens};
use llm_proxy_test_support::{MockUpstream, Reply, gemini as gemini_up, openai as openai_up};
use serde_json::{Value, json};

use crate::common::{client, proxy_for, sse_data, start_proxy};

const SYSTEM: &str = "You are a careful assistant.";
const SESSION: &str = "sess-cache-1";
/// Uncached input tokens and cache reads the mock reports after the first turn.
const FRESH: u64 = 50;
const READ: u64 = 900;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Chat,
    Responses,
    Gemini,
    Anthropic,
}

const CLIENTS: [Client; 4] = [
    Client::Chat,
    Client::Responses,
    Client::Gemini,
    Client::Anthropic,
];

fn tool_schema() -> Value {
    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
}

/// The request a client of `kind` sends for a conversation of alternating user / assistant
/// texts (users first), and the path it posts to.
fn client_request(kind: Client, turns: &[&str], stream: bool) -> (String, Value) {
    let role = |i: usize| {
        if i.is_multiple_of(2) {
            "user"
        } else {
            "assistant"
        }
    };
    match kind {
        Client::Chat => {
            let mut messages = vec![json!({"role": "system", "content": SYSTEM})];
            messages.extend(
                turns
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"role": role(i), "content": t})),
            );
            (
                "/v1/chat/completions".into(),
                json!({"model": "m", "stream": stream, "stream_options": {"include_usage": true},
                    "messages": messages,
                    "tools": [{"type": "function", "function": {"name": "weather", "parameters": tool_schema()}}]}),
            )
        }
        Client::Responses => {
            let input: Vec<Value> = turns
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"role": role(i), "content": t}))
                .collect();
            (
                "/v1/responses".into(),
                json!({"model": "m", "stream": stream, "store": false, "instructions": SYSTEM,
                    "input": input,
                    "tools": [{"type": "function", "name": "weather", "parameters": tool_schema()}]}),
            )
        }
        Client::Gemini => {
            let contents: Vec<Value> = turns
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let role = if i.is_multiple_of(2) { "user" } else { "model" };
                    json!({"role": role, "parts": [{"text": t}]})
                })
                .collect();
            let path = if stream {
                "/v1beta/models/m:streamGenerateContent?alt=sse"
            } else {
                "/v1beta/models/m:generateContent"
            };
            (
                path.into(),
                json!({"systemInstruction": {"parts": [{"text": SYSTEM}]}, "contents": contents,
                    "tools": [{"functionDeclarations": [{"name": "weather", "parameters": tool_schema()}]}]}),
            )
        }
        Client::Anthropic => {
            // As Claude Code does: system and the newest user turn marked.
            let last = turns.len() - 1;
            let messages: Vec<Value> = turns
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    if i == last {
                        json!({"role": role(i), "content": [
                            {"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}
                        ]})
                    } else {
                        json!({"role": role(i), "content": t})
                    }
                })
                .collect();
            (
                "/v1/messages".into(),
                json!({"model": "m", "max_tokens": 512, "stream": stream,
                    "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
                    "messages": messages,
                    "tools": [{"name": "weather", "input_schema": tool_schema()}]}),
            )
        }
    }
}

fn marked(v: &Value) -> Vec<String> {
    llm_proxy_test_support::anthropic::cache_control_paths(v)
}

/// The final usage a client got, in its own protocol's shape.
fn client_usage(kind: Client, stream: bool, text: &str) -> Value {
    if !stream {
        let v: Value = serde_json::from_str(text).unwrap();
        return match kind {
            Client::Gemini => v["usageMetadata"].clone(),
            _ => v["usage"].clone(),
        };
    }
    let (frames, _) = sse_data(text);
    let found = match kind {
        Client::Chat => frames
            .iter()
            .rev()
            .find(|f| !f["usage"].is_null())
            .map(|f| f["usage"].clone()),
        Client::Responses => frames
            .iter()
            .find(|f| f["type"] == "response.completed")
            .map(|f| f["response"]["usage"].clone()),
        Client::Gemini => frames.last().map(|f| f["usageMetadata"].clone()),
        Client::Anthropic => frames
            .iter()
            .find(|f| f["type"] == "message_delta")
            .map(|f| f["usage"].clone()),
    };
    found.unwrap_or_else(|| panic!("no usage in {text}"))
}

/// Asserts the upstream's cache reads (`READ` of `FRESH + READ` input tokens) in the client's
/// own fields and convention.
fn assert_cache_reads(kind: Client, usage: &Value) {
    let total = FRESH + READ;
    match kind {
        Client::Chat => {
            assert_eq!(usage["prompt_tokens"], total, "{usage}");
            assert_eq!(
                usage["prompt_tokens_details"]["cached_tokens"], READ,
                "{usage}"
            );
        }
        Client::Responses => {
            assert_eq!(usage["input_tokens"], total, "{usage}");
            assert_eq!(
                usage["input_tokens_details"]["cached_tokens"], READ,
                "{usage}"
            );
        }
        Client::Gemini => {
            assert_eq!(usage["promptTokenCount"], total, "{usage}");
            assert_eq!(usage["cachedContentTokenCount"], READ, "{usage}");
        }
        Client::Anthropic => {
            assert_eq!(usage["input_tokens"], FRESH, "{usage}");
            assert_eq!(usage["cache_read_input_tokens"], READ, "{usage}");
        }
    }
}

async fn session_through_anthropic(kind: Client, stream: bool) {
    let up = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {}/v1\n    api_key: sk-ant-upstream-0123456789\n",
        up.base_url()
    ))
    .await;
    let answer = [Block::text(&["Sunny."])];
    let turns = [
        vec!["Weather in Paris?"],
        vec!["Weather in Paris?", "Sunny.", "And in Rome?"],
        vec![
            "Weather in Paris?",
            "Sunny.",
            "And in Rome?",
            "Sunny.",
            "Thanks!",
        ],
    ];
    for (turn, conversation) in turns.iter().enumerate() {
        let tokens = if turn == 0 {
            Tokens::new(FRESH + READ, 7)
        } else {
            Tokens {
                input: FRESH,
                output: 7,
                cache_read: READ,
            }
        };
        up.push(if stream {
            Reply::sse(anthropic_up::stream(&answer, "end_turn", tokens))
        } else {
            Reply::json(anthropic_up::message(&answer, "end_turn", tokens))
        });
        let (path, body) = client_request(kind, conversation, stream);
        let resp = client()
            .post(format!("{}{path}", proxy.url))
            .header("x-session-id", SESSION)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{kind:?} turn {turn}");
        let text = resp.text().await.unwrap();
        if turn > 0 {
            assert_cache_reads(kind, &client_usage(kind, stream, &text));
        }
    }

    let sent: Vec<Value> = up.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent.len(), 3);
    for (turn, body) in sent.iter().enumerate() {
        let m = marked(body);
        assert!(
            !m.is_empty(),
            "{kind:?} turn {turn}: no breakpoints in {body}"
        );
        assert!(m.len() <= 4, "{kind:?} turn {turn}: {m:?}");
        let last = body["messages"].as_array().unwrap().len() - 1;
        assert!(
            m.iter()
                .any(|p| p.starts_with(&format!(".messages[{last}]"))),
            "{kind:?} turn {turn}: the newest turn is a breakpoint: {m:?}"
        );
    }
    if kind == Client::Anthropic {
        // The client's own marks, unchanged and nothing added.
        assert_eq!(
            sent[2]["system"][0]["cache_control"],
            json!({"type": "ephemeral", "ttl": "1h"})
        );
        assert_eq!(marked(&sent[2]).len(), 2, "{:?}", marked(&sent[2]));
    } else {
        for pair in sent.windows(2) {
            // The mark closing one request's conversation is still there in the next one, so
            // the prefix it cached is read back.
            let before = marked(&pair[0]);
            let after = marked(&pair[1]);
            let last_before = pair[0]["messages"].as_array().unwrap().len() - 1;
            let kept = before
                .iter()
                .find(|p| p.starts_with(&format!(".messages[{last_before}]")))
                .unwrap();
            assert!(after.contains(kept), "{kind:?}: {kept} in {after:?}");
            for stable in [".system[0]", ".tools[0]"] {
                assert!(before.iter().any(|p| p == stable), "{kind:?}: {before:?}");
                assert!(after.iter().any(|p| p == stable), "{kind:?}: {after:?}");
            }
        }
    }
}

#[tokio::test]
async fn sessions_through_an_anthropic_upstream_cache_and_report_cache_reads() {
    for kind in CLIENTS {
        session_through_anthropic(kind, false).await;
    }
}

#[tokio::test]
async fn streamed_sessions_through_an_anthropic_upstream_report_cache_reads_at_the_end() {
    for kind in CLIENTS {
        session_through_anthropic(kind, true).await;
    }
}

#[tokio::test]
async fn auto_breakpoints_can_be_turned_off() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(anthropic_up::text_message("ok")));
    let proxy = start_proxy(&format!(
        "caching:\n  auto_breakpoints: false\nbackends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {}/v1\n    api_key: sk-ant-upstream-0123456789\n",
        up.base_url()
    ))
    .await;
    let (path, body) = client_request(Client::Chat, &["hi"], false);
    let resp = client()
        .post(format!("{}{path}", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(marked(&up.requests()[0].body).is_empty());
}

/// Posts a conversation of `kind` to an OpenAI upstream proxy and returns the
/// `prompt_cache_key` the upstream saw.
async fn key_seen(kind: Client, session: &str, turns: &[&str]) -> Value {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai_up::completion("ok")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let (path, body) = client_request(kind, turns, false);
    let resp = client()
        .post(format!("{}{path}", proxy.url))
        .header("x-session-id", session)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{kind:?}");
    up.requests()[0].body["prompt_cache_key"].clone()
}

#[tokio::test]
async fn anthropic_and_gemini_sessions_get_a_stable_prompt_cache_key_on_openai() {
    for kind in [Client::Anthropic, Client::Gemini] {
        let first = key_seen(kind, SESSION, &["Weather in Paris?"]).await;
        let later = key_seen(kind, SESSION, &["Weather in Paris?", "Sunny.", "And Rome?"]).await;
        let other = key_seen(kind, "another-session", &["Weather in Paris?"]).await;
        assert!(first.is_string(), "{kind:?}: {first}");
        assert_eq!(first, later, "{kind:?}: one key for the whole session");
        assert_ne!(first, other, "{kind:?}");
        assert!(!first.as_str().unwrap().contains(SESSION), "hashed");
    }
}

#[tokio::test]
async fn a_responses_clients_prompt_cache_key_is_passed_through() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai_up::completion("ok")));
    let proxy = proxy_for(&up.base_url(), "").await;
    let (path, mut body) = client_request(Client::Responses, &["hi"], false);
    body["prompt_cache_key"] = json!("codex-conversation-7");
    let resp = client()
        .post(format!("{}{path}", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        up.requests()[0].body["prompt_cache_key"],
        "codex-conversation-7"
    );
}

#[tokio::test]
async fn cache_reads_of_openai_and_gemini_upstreams_reach_anthropic_clients() {
    // OpenAI counts cached tokens inside prompt_tokens; Anthropic outside input_tokens.
    let up = MockUpstream::start().await.unwrap();
    let mut completion = openai_up::completion("ok");
    completion["usage"] = json!({"prompt_tokens": 1200, "completion_tokens": 7, "total_tokens": 1207,
        "prompt_tokens_details": {"cached_tokens": 1000}});
    up.set_fallback(Reply::json(completion));
    let proxy = proxy_for(&up.base_url(), "").await;
    let (path, body) = client_request(Client::Anthropic, &["hi"], false);
    let v: Value = client()
        .post(format!("{}{path}", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["input_tokens"], 200, "{v}");
    assert_eq!(v["usage"]["cache_read_input_tokens"], 1000, "{v}");
    assert_eq!(v["usage"]["output_tokens"], 7, "{v}");

    let up = MockUpstream::start().await.unwrap();
    let mut response = gemini_up::text_response("ok");
    response["usageMetadata"] = json!({"promptTokenCount": 1200, "candidatesTokenCount": 7,
        "cachedContentTokenCount": 1000, "totalTokenCount": 1207});
    up.set_fallback(Reply::json(response));
    let proxy = start_proxy(&format!(
        "backends:\n  default_backend: gemini\n  gemini:\n    api_url: {}\n    api_key: AIza-upstream-0123456789\n",
        up.base_url()
    ))
    .await;
    let (path, body) = client_request(Client::Anthropic, &["hi"], true);
    let text = client()
        .post(format!("{}{path}", proxy.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let usage = client_usage(Client::Anthropic, true, &text);
    assert_eq!(usage["input_tokens"], 200, "{text}");
    assert_eq!(usage["cache_read_input_tokens"], 1000, "{text}");
}
