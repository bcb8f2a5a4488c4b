//! Claude Code's real traffic through the Anthropic frontend: its `HEAD /` probe, and a
//! captured tool turn (three system blocks, system messages mid-conversation and trailing,
//! adaptive thinking, `output_config`, `context_management`, 24 tools, `cache_control`,
//! `?beta=true`) reaching OpenAI-chat, Anthropic and Gemini upstreams.

use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini, openai, responses};
use serde_json::{Value, json};

use crate::common::{client, start_proxy};
use crate::dialect::sse_events;

const TRAILING: &str = "Reminder: answer briefly.";
/// The lossy note for Claude Code's `context_management` on a non-Anthropic upstream.
const CONTEXT_NOTE: &str = "context_management edits dropped";

/// The captured Claude Code request (protocol golden fixture), streamed, with a trailing
/// system message after the tool result.
fn claude_code_request() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../llm-proxy-protocol/tests/fixtures/anthropic/claude_code_tool_turn_request.json"
    );
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    body["messages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "system", "content": TRAILING}));
    body
}

/// Posts the request as Claude Code does; returns the streamed text and the lossy header.
async fn post_as_claude_code(proxy_url: &str, body: &Value) -> (String, Option<String>) {
    let resp = client()
        .post(format!("{proxy_url}/v1/messages?beta=true"))
        .header("x-api-key", "sk-ant-dummy")
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
        )
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let lossy = resp
        .headers()
        .get("x-llm-proxy-lossy")
        .map(|v| v.to_str().unwrap().to_owned());
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("message_stop"));
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    (text, lossy)
}

fn proxy_yaml(backend: &str, api_url: &str) -> String {
    format!(
        "backends:\n  default_backend: {backend}\n  {backend}:\n    api_url: {api_url}\n    api_key: upstream-key-0123456789\n"
    )
}

fn tool_names(tools: &Value, pointer: &str) -> Vec<String> {
    tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.pointer(pointer).unwrap().as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn claude_code_tool_turn_reaches_an_openai_chat_upstream() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(openai::text_stream(&[
        "It says ",
        "tag, publish",
    ])));
    let proxy = start_proxy(&proxy_yaml("openai", &format!("{}/v1", up.base_url()))).await;
    let body = claude_code_request();
    let (text, lossy) = post_as_claude_code(&proxy.url, &body).await;
    assert_eq!(text, "It says tag, publish");
    assert!(
        lossy.as_deref().is_some_and(|l| l.contains(CONTEXT_NOTE)),
        "{lossy:?}"
    );

    let sent = &up.requests()[0].body;
    // Adaptive thinking at effort high is the upstream's own effort control.
    assert_eq!(sent["reasoning_effort"], "high");
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "system", "assistant", "tool", "system"]
    );
    let messages = &sent["messages"];
    assert!(
        messages[2]["content"]
            .as_str()
            .unwrap()
            .starts_with("Available agent types")
    );
    assert_eq!(
        messages[3]["tool_calls"][0]["function"],
        json!({"name": "Read", "arguments": "{\"file_path\":\"/work/project/notes.txt\"}"})
    );
    assert_eq!(
        messages[4]["content"],
        "1\trelease checklist: tag, publish, announce\n2\t"
    );
    assert_eq!(messages[5]["content"], TRAILING);
    assert_eq!(
        tool_names(&sent["tools"], "/function/name"),
        tool_names(&body["tools"], "/name")
    );
    assert_eq!(sent["tools"].as_array().unwrap().len(), 24);
    // Anthropic-only fields stay behind.
    for field in ["thinking", "output_config", "context_management", "system"] {
        assert!(sent.get(field).is_none(), "{field} leaked: {sent}");
    }
}

#[tokio::test]
async fn claude_code_tool_turn_reaches_an_anthropic_upstream_as_sent() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(anthropic::text_stream(&[
        "It says ",
        "tag, publish",
    ])));
    let proxy = start_proxy(&proxy_yaml("anthropic", &format!("{}/v1", up.base_url()))).await;
    let body = claude_code_request();
    let (text, lossy) = post_as_claude_code(&proxy.url, &body).await;
    assert_eq!(text, "It says tag, publish");
    assert_eq!(lossy, None);

    let sent = &up.requests()[0];
    assert_eq!(
        sent.headers["anthropic-beta"],
        "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27"
    );
    // Everything arrives as Claude Code wrote it, system messages and every cache breakpoint
    // (the tool_result's included) in place, and no breakpoint added.
    assert_eq!(sent.body, body);
    assert_eq!(sent.body["thinking"], json!({"type": "adaptive"}));
}

#[tokio::test]
async fn claude_code_tool_turn_reaches_a_gemini_upstream() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(gemini::text_stream(&[
        "It says ",
        "tag, publish",
    ])));
    let proxy = start_proxy(&proxy_yaml("gemini", &up.base_url())).await;
    let body = claude_code_request();
    let (text, lossy) = post_as_claude_code(&proxy.url, &body).await;
    assert_eq!(text, "It says tag, publish");
    assert!(
        lossy.as_deref().is_some_and(|l| l
            .contains("system message inside the conversation sent as a user-turn note")
            && l.contains(CONTEXT_NOTE)),
        "{lossy:?}"
    );

    let sent = &up.requests()[0];
    assert!(sent.uri.contains(":streamGenerateContent"), "{}", sent.uri);
    let body_sent = &sent.body;
    // Adaptive thinking at effort high is a thinking budget.
    assert_eq!(
        body_sent["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 24576, "includeThoughts": true})
    );
    assert_eq!(
        body_sent["systemInstruction"]["parts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let contents = body_sent["contents"].as_array().unwrap();
    let roles: Vec<&str> = contents
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    let first_user = contents[0]["parts"].as_array().unwrap();
    assert!(
        first_user.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .starts_with("<system-note>\nAvailable agent types")
    );
    assert_eq!(
        contents[1]["parts"][0]["functionCall"]["args"],
        json!({"file_path": "/work/project/notes.txt"})
    );
    let last_user = contents[2]["parts"].as_array().unwrap();
    assert_eq!(
        last_user[0]["functionResponse"]["response"]["result"],
        "1\trelease checklist: tag, publish, announce\n2\t"
    );
    assert_eq!(
        last_user[1]["text"],
        format!("<system-note>\n{TRAILING}\n</system-note>")
    );
    let declarations = &body_sent["tools"][0]["functionDeclarations"];
    assert_eq!(
        tool_names(declarations, "/name"),
        tool_names(&body["tools"], "/name")
    );
}

#[tokio::test]
async fn claude_code_reasoning_controls_reach_a_responses_upstream() {
    let up = MockUpstream::start().await.unwrap();
    up.push(Reply::sse(responses::text_stream("It says tag, publish")));
    let proxy = start_proxy(&proxy_yaml(
        "openai-responses",
        &format!("{}/v1", up.base_url()),
    ))
    .await;
    let (text, lossy) = post_as_claude_code(&proxy.url, &claude_code_request()).await;
    assert_eq!(text, "It says tag, publish");
    assert!(
        lossy.as_deref().is_some_and(|l| l.contains(CONTEXT_NOTE)),
        "{lossy:?}"
    );
    let sent = &up.requests()[0].body;
    assert_eq!(
        sent["reasoning"],
        json!({"effort": "high", "summary": "auto"})
    );
    assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
    for field in ["thinking", "output_config", "context_management"] {
        assert!(sent.get(field).is_none(), "{field} leaked: {sent}");
    }
}

#[tokio::test]
async fn count_tokens_takes_the_same_body() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = start_proxy(&proxy_yaml("openai", &format!("{}/v1", up.base_url()))).await;
    let resp = client()
        .post(format!("{}/v1/messages/count_tokens?beta=true", proxy.url))
        .json(&claude_code_request())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["input_tokens"].as_u64().unwrap() > 1000, "{v}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn head_and_get_on_the_root_answer_200_even_with_client_keys() {
    let proxy = start_proxy(
        "backends:\n  default_backend: mock\nauth:\n  api_keys: [client-key-0123456789]\n",
    )
    .await;
    let head = client().head(&proxy.url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let get = client().get(&proxy.url).send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.json::<Value>().await.unwrap()["status"], "ok");
    // Everything else still needs a key.
    let models = client()
        .get(format!("{}/v1/models", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 401);
}
