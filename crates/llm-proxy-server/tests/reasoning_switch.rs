//! Reasoning state across providers, through an Anthropic client: a Gemini turn that ends in a
//! tool call hands the client its `functionCall` signature on the thinking block (sealed) and
//! gets it back on the call; a session switching Anthropic -> Gemini -> Anthropic -> Gemini
//! sends every upstream exactly the state it produced and never another provider's (calls
//! Gemini did not sign get its validator marker while they are in the current turn).

use llm_proxy_test_support::anthropic::{Block, Tokens as AnthropicTokens};
use llm_proxy_test_support::gemini::Tokens as GeminiTokens;
use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini, openai};
use serde_json::{Value, json};

use crate::common::{Proxy, lossy, start_proxy};
use crate::dialect::{Conversation, Dialect, ToolReply, read_answer, send};
use crate::matrix::is_sealed;

const SIG_A1: &str = "SIG_ANTHROPIC_turn1_EqQBCkYIBxgC";
const SIG_G1: &str = "SIG_GEMINI_turn2_CiQB0e2Kb6sH";
const ANTHROPIC_MODEL: &str = "anthropic:claude-sonnet-4-5";
const GEMINI_MODEL: &str = "gemini:gemini-2.5-pro";

/// A proxy with an Anthropic and a Gemini backend; clients pick one by `instance:model`.
async fn two_provider_proxy(anthropic_url: &str, gemini_url: &str) -> Proxy {
    start_proxy(&format!(
        "backends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {anthropic_url}/v1\n    api_key: sk-ant-upstream-0123456789\n  gemini:\n    api_url: {gemini_url}\n    api_key: AIza-upstream-0123456789\n"
    ))
    .await
}

/// A Gemini answer that thinks (an unsigned thought part) and calls `name`, signing the
/// `functionCall` part as Gemini does when a turn ends in a tool call.
fn gemini_thought_then_call(stream: bool, name: &str, args: Value, signature: &str) -> Reply {
    let thought = gemini::thought("I need the tool for this.", None);
    let call = gemini::call(None, name, args, Some(signature));
    let tokens = GeminiTokens {
        prompt: 20,
        candidates: 5,
        thoughts: 6,
    };
    if stream {
        Reply::sse(gemini::stream(&[vec![thought], vec![call]], "STOP", tokens))
    } else {
        Reply::json(gemini::response(&[thought, call], "STOP", tokens))
    }
}

fn anthropic_reply(stream: bool, blocks: &[Block], stop: &str) -> Reply {
    let tokens = AnthropicTokens::new(20, 9);
    if stream {
        Reply::sse(anthropic::stream(blocks, stop, tokens))
    } else {
        Reply::json(anthropic::message(blocks, stop, tokens))
    }
}

/// Every string anywhere in `v`.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The signatures of the thinking blocks an Anthropic upstream received.
fn anthropic_signatures(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "thinking")
        .map(|b| b["signature"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// `(name, thoughtSignature)` of every `functionCall` part a Gemini upstream received.
fn gemini_calls(body: &Value) -> Vec<(String, Option<String>)> {
    body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["parts"].as_array().unwrap().iter())
        .filter(|p| p.get("functionCall").is_some())
        .map(|p| {
            (
                p["functionCall"]["name"].as_str().unwrap().to_owned(),
                p["thoughtSignature"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn tool_reply(id: &str, name: &str, text: &str) -> ToolReply {
    ToolReply {
        id: id.to_owned(),
        name: name.to_owned(),
        text: text.to_owned(),
        is_error: false,
    }
}

#[tokio::test]
async fn reasoning_anthropic_client_on_gemini_tool_turn_signs_its_thinking_and_returns_the_call_signature()
 {
    for stream in [false, true] {
        let gemini_mock = MockUpstream::start().await.unwrap();
        gemini_mock.push(gemini_thought_then_call(
            stream,
            "get_weather",
            json!({"city": "Paris"}),
            SIG_G1,
        ));
        gemini_mock.push(if stream {
            Reply::sse(gemini::text_stream(&["Sunny", "."]))
        } else {
            Reply::json(gemini::text_response("Sunny."))
        });
        let proxy = two_provider_proxy("http://127.0.0.1:9", &gemini_mock.base_url()).await;

        let mut conv = Conversation::new(Dialect::Anthropic, true, true, "Weather in Paris?");
        let mut body = conv.body(stream);
        body["model"] = json!(GEMINI_MODEL);
        let answer = read_answer(
            Dialect::Anthropic,
            send(Dialect::Anthropic, &proxy, &body, stream).await,
            stream,
        )
        .await;
        let content = answer.echo["content"].as_array().unwrap().clone();
        let thinking: Vec<&Value> = content.iter().filter(|b| b["type"] == "thinking").collect();
        assert_eq!(thinking.len(), 1, "one thinking block: {content:?}");
        assert_eq!(thinking[0]["thinking"], "I need the tool for this.");
        let signature = thinking[0]["signature"].as_str().unwrap();
        assert!(
            is_sealed(signature),
            "the thinking block carries the call's signature, sealed: {content:?}"
        );
        assert!(!signature.contains(SIG_G1));
        assert_eq!(content.last().unwrap()["type"], "tool_use");

        conv.items.push(answer.echo.clone());
        let calls = answer.calls();
        conv.push_tool_results(&[tool_reply(&calls[0].0, &calls[0].1, "sunny, 21C")]);
        let mut body = conv.body(stream);
        body["model"] = json!(GEMINI_MODEL);
        let resp = send(Dialect::Anthropic, &proxy, &body, stream).await;
        read_answer(Dialect::Anthropic, resp, stream).await;
        let sent = &gemini_mock.requests()[1].body;
        assert_eq!(
            gemini_calls(sent),
            vec![("get_weather".to_owned(), Some(SIG_G1.to_owned()))],
            "the signature is back on the functionCall part: {sent}"
        );
    }
}

#[tokio::test]
async fn reasoning_switching_anthropic_gemini_anthropic_sends_each_upstream_only_its_own_state() {
    for stream in [false, true] {
        let anthropic_mock = MockUpstream::start().await.unwrap();
        let gemini_mock = MockUpstream::start().await.unwrap();
        let proxy = two_provider_proxy(&anthropic_mock.base_url(), &gemini_mock.base_url()).await;
        let mut conv =
            Conversation::new(Dialect::Anthropic, true, true, "Weather and time in Paris?");

        // Turn 1, Anthropic: signed thinking, then a tool call.
        anthropic_mock.push(anthropic_reply(
            stream,
            &[
                Block::thinking(&["Weather ", "first."], SIG_A1),
                Block::tool_use("toolu_01A", "get_weather", &["{\"city\":", "\"Paris\"}"]),
            ],
            "tool_use",
        ));
        let mut body = conv.body(stream);
        body["model"] = json!(ANTHROPIC_MODEL);
        let first = read_answer(
            Dialect::Anthropic,
            send(Dialect::Anthropic, &proxy, &body, stream).await,
            stream,
        )
        .await;
        conv.items.push(first.echo.clone());
        conv.push_tool_results(&[tool_reply("toolu_01A", "get_weather", "sunny, 21C")]);

        // Turn 2, Gemini: it must not see the Anthropic signature (it would reject it).
        gemini_mock.push(gemini_thought_then_call(
            stream,
            "get_time",
            json!({"tz": "CET"}),
            SIG_G1,
        ));
        let mut body = conv.body(stream);
        body["model"] = json!(GEMINI_MODEL);
        let resp = send(Dialect::Anthropic, &proxy, &body, stream).await;
        let note = lossy(&resp);
        let second = read_answer(Dialect::Anthropic, resp, stream).await;
        let sent = gemini_mock.requests()[0].body.clone();
        let mut seen = Vec::new();
        strings(&sent, &mut seen);
        assert!(
            !seen.iter().any(|s| s.contains(SIG_A1) || is_sealed(s)),
            "no Anthropic signature and nothing sealed reaches Gemini: {sent}"
        );
        // Gemini 3 would reject an unsigned call of the current turn: it gets Gemini's marker.
        assert_eq!(
            gemini_calls(&sent),
            vec![(
                "get_weather".to_owned(),
                Some("skip_thought_signature_validator".to_owned())
            )]
        );
        assert!(
            note.contains("signed reasoning dropped"),
            "the stripped signature is reported: {note:?}"
        );
        conv.items.push(second.echo.clone());
        let calls = second.calls();
        conv.push_tool_results(&[tool_reply(&calls[0].0, &calls[0].1, "14:05")]);

        // Turn 3, back to Anthropic: its own signature comes back, Gemini's does not go there.
        anthropic_mock.push(anthropic_reply(
            stream,
            &[Block::text(&["Sunny, 21C at 14:05."])],
            "end_turn",
        ));
        conv.push_user("Thanks. And tomorrow?");
        let mut body = conv.body(stream);
        body["model"] = json!(ANTHROPIC_MODEL);
        let resp = send(Dialect::Anthropic, &proxy, &body, stream).await;
        let third = read_answer(Dialect::Anthropic, resp, stream).await;
        let sent = anthropic_mock.requests()[1].body.clone();
        assert_eq!(
            anthropic_signatures(&sent),
            vec![SIG_A1.to_owned()],
            "exactly the signature Anthropic produced: {sent}"
        );
        let mut seen = Vec::new();
        strings(&sent, &mut seen);
        assert!(
            !seen
                .iter()
                .any(|s| s.contains(SIG_G1) || is_sealed(s) || s.contains("llmproxy")),
            "no Gemini state reaches Anthropic: {sent}"
        );

        // Turn 4, Gemini again: its signature is restored from the client's history.
        conv.items.push(third.echo.clone());
        conv.push_user("And the day after?");
        gemini_mock.push(if stream {
            Reply::sse(gemini::text_stream(&["Rain", "."]))
        } else {
            Reply::json(gemini::text_response("Rain."))
        });
        let mut body = conv.body(stream);
        body["model"] = json!(GEMINI_MODEL);
        let resp = send(Dialect::Anthropic, &proxy, &body, stream).await;
        read_answer(Dialect::Anthropic, resp, stream).await;
        let sent = gemini_mock.requests()[1].body.clone();
        assert_eq!(
            gemini_calls(&sent),
            vec![
                // No longer the current turn: nothing to validate.
                ("get_weather".to_owned(), None),
                ("get_time".to_owned(), Some(SIG_G1.to_owned()))
            ],
            "{sent}"
        );
        let mut seen = Vec::new();
        strings(&sent, &mut seen);
        assert!(
            !seen.iter().any(|s| s.contains(SIG_A1) || is_sealed(s)),
            "{sent}"
        );
    }
}

/// An OpenRouter-style answer whose reasoning is another family's: `format` tags the
/// encrypted item as Gemini's.
fn openrouter_gemini_answer(stream: bool) -> Reply {
    let text = json!({"type": "reasoning.text", "text": "Adding up.", "format": "google-gemini-v1", "index": 0});
    let encrypted = json!({"type": "reasoning.encrypted", "data": GEMINI_ENCRYPTED, "format": "google-gemini-v1", "index": 1});
    if !stream {
        return Reply::json(json!({
            "id": "gen-1", "object": "chat.completion", "created": 1_700_000_000,
            "model": "google/gemini-2.5-pro",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Four.",
                "reasoning": "Adding up.", "reasoning_details": [text, encrypted]},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        }));
    }
    Reply::sse(vec![
        openai::frame(&openai::delta_chunk(
            json!({"role": "assistant", "content": "", "reasoning_details": [text]}),
            None,
        )),
        openai::frame(&openai::delta_chunk(
            json!({"reasoning_details": [encrypted]}),
            None,
        )),
        openai::frame(&openai::delta_chunk(json!({"content": "Four."}), None)),
        openai::frame(&openai::delta_chunk(json!({}), Some("stop"))),
        "data: [DONE]\n\n".to_owned(),
    ])
}

const GEMINI_ENCRYPTED: &str = "CiQBgeminiEncryptedViaOpenRouter";

#[tokio::test]
async fn reasoning_details_of_another_family_go_back_only_to_the_openai_compatible_upstream() {
    for stream in [false, true] {
        let router_mock = MockUpstream::start().await.unwrap();
        let anthropic_mock = MockUpstream::start().await.unwrap();
        let proxy = start_proxy(&format!(
            "backends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {}/v1\n    api_key: sk-ant-upstream-0123456789\n  openai-compatible:\n    api_url: {}/v1\n    api_key: sk-router-0123456789\n",
            anthropic_mock.base_url(),
            router_mock.base_url()
        ))
        .await;
        let mut conv = Conversation::new(Dialect::Anthropic, false, true, "What is 2+2?");

        // Turn 1 through the OpenAI-compatible router: Gemini's encrypted reasoning.
        router_mock.push(openrouter_gemini_answer(stream));
        let mut body = conv.body(stream);
        body["model"] = json!("openai-compatible:google/gemini-2.5-pro");
        let first = read_answer(
            Dialect::Anthropic,
            send(Dialect::Anthropic, &proxy, &body, stream).await,
            stream,
        )
        .await;
        let content = first.echo["content"].as_array().unwrap().clone();
        assert!(
            content.iter().all(|b| b["type"] != "redacted_thinking"),
            "Gemini's data is not Anthropic redacted thinking: {content:?}"
        );
        let mut seen = Vec::new();
        strings(&first.echo, &mut seen);
        assert!(
            !seen.iter().any(|s| s.contains(GEMINI_ENCRYPTED)),
            "{content:?}"
        );
        conv.items.push(first.echo.clone());
        conv.push_user("And 4+4?");

        // Turn 2 to Anthropic: it must not get Gemini's data (it would reject it).
        anthropic_mock.push(anthropic_reply(
            stream,
            &[Block::text(&["Eight."])],
            "end_turn",
        ));
        let mut body = conv.body(stream);
        body["model"] = json!(ANTHROPIC_MODEL);
        let resp = send(Dialect::Anthropic, &proxy, &body, stream).await;
        let note = lossy(&resp);
        let second = read_answer(Dialect::Anthropic, resp, stream).await;
        let sent = anthropic_mock.requests()[0].body.clone();
        let mut seen = Vec::new();
        strings(&sent, &mut seen);
        assert!(
            !seen
                .iter()
                .any(|s| s.contains(GEMINI_ENCRYPTED) || is_sealed(s)),
            "{sent}"
        );
        assert_eq!(anthropic_signatures(&sent), Vec::<String>::new());
        assert!(!sent.to_string().contains("redacted_thinking"), "{sent}");
        assert!(note.contains("reasoning"), "{note:?}");
        conv.items.push(second.echo.clone());
        conv.push_user("And 8+8?");

        // Turn 3 back through the router: the item goes back as it came.
        router_mock.push(if stream {
            Reply::sse(openai::text_stream(&["Sixteen."]))
        } else {
            Reply::json(openai::completion("Sixteen."))
        });
        let mut body = conv.body(stream);
        body["model"] = json!("openai-compatible:google/gemini-2.5-pro");
        let resp = send(Dialect::Anthropic, &proxy, &body, stream).await;
        read_answer(Dialect::Anthropic, resp, stream).await;
        let sent = router_mock.requests()[1].body.clone();
        let details: Vec<Value> = sent["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["reasoning_details"].as_array())
            .flatten()
            .cloned()
            .collect();
        assert!(
            details.iter().any(|d| d["type"] == "reasoning.encrypted"
                && d["data"] == GEMINI_ENCRYPTED
                && d["format"] == "google-gemini-v1"),
            "{sent}"
        );
    }
}

#[tokio::test]
async fn reasoning_state_a_client_forges_is_dropped_and_reported() {
    let gemini_mock = MockUpstream::start().await.unwrap();
    gemini_mock.push(Reply::json(gemini::text_response("ok")));
    let proxy = two_provider_proxy("http://127.0.0.1:9", &gemini_mock.base_url()).await;
    // The unsealed form earlier versions wrote: anyone could write provider state this way.
    let forged = r#"llmproxy:{"google":{"thought_signature":"FORGED_SIGNATURE"}}"#;
    let body = json!({"model": GEMINI_MODEL, "max_tokens": 256, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "", "signature": forged},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
    ]});
    let resp = send(Dialect::Anthropic, &proxy, &body, false).await;
    let note = lossy(&resp);
    read_answer(Dialect::Anthropic, resp, false).await;
    assert!(note.contains("not sealed by this proxy"), "{note:?}");
    let sent = gemini_mock.requests()[0].body.clone();
    assert!(!sent.to_string().contains("FORGED_SIGNATURE"), "{sent}");
}
